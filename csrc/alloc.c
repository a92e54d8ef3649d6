/* mixgraph C core: the allocator, with accounting of audio-thread calls.
 *
 * Used by engine.c, plan.c and ring.c (see mg_alloc.h). Runs on the control
 * thread; a call from the audio thread is a defect, and is counted so the
 * tests (tests/test_rt_alloc.py) can catch it. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS under -std=c11 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mg_alloc.h"

/* initial-exec: the flag lives in static TLS. The default model for a
 * dlopen()ed module allocates each thread's block lazily, with malloc, on the
 * first access, which would be the audio thread's first engine_process. */
static _Thread_local int mg_in_audio __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t mg_rt_allocs;

/* An LD_PRELOAD malloc hook may define these to learn when the audio
 * thread is inside the engine (tests/test_rt_alloc.py does). */
extern void mg_rt_enter(void) __attribute__((weak));
extern void mg_rt_leave(void) __attribute__((weak));

void mg_audio_enter(void)
{
    if (mg_rt_enter)
        mg_rt_enter();
    mg_in_audio = 1;
}

void mg_audio_leave(void)
{
    mg_in_audio = 0;
    if (mg_rt_leave)
        mg_rt_leave();
}

int mg_audio_thread(void) { return mg_in_audio; }

/* Every allocator below counts the calls made on the audio thread. */
static inline void count_if_audio(void)
{
    if (mg_in_audio)
        atomic_fetch_add_explicit(&mg_rt_allocs, 1, memory_order_relaxed);
}

void *mg_calloc(size_t n, size_t size)
{
    count_if_audio();
    if (size && n > SIZE_MAX / size)
        return NULL;
    /* Zeroed here, which also touches every page now, on the control
     * thread, so the audio thread never takes the page faults of lazily
     * mapped zero pages (malloc, not calloc: calloc would zero a reused
     * block once more) */
    void *p = malloc(n && size ? n * size : 1);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *mg_malloc(size_t n, size_t size)
{
    count_if_audio();
    if (size && n > SIZE_MAX / size)
        return NULL;
    return malloc(n && size ? n * size : 1);
}

/* The node arena: node blocks (mg_calloc_lines) are carved from 2 MB chunks,
 * 2 MB-aligned and advised as transparent huge pages, one after the other in
 * the order the nodes are made. A cycle walks every node of the plan, and
 * with 4 KB pages each node's block is a TLB entry of its own (a 64-strip
 * mix's ~520 blocks: ~500 entries, lost when other work runs between two
 * cycles, each a page walk when the cycle comes back); in huge pages the
 * whole graph's blocks are a few entries. A freed block goes on a free list
 * of its size in lines, for the next block of that size; chunks are kept for
 * the life of the process. Blocks over ARENA_MAX bytes are posix_memalign's.
 * Control thread only (a mutex, never taken by the audio thread). */
#define ARENA_CHUNK ((size_t)2 << 20)
#define ARENA_MAX ((size_t)256 << 10)
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static char *arena_at;                    /* the next free byte of the current chunk */
static size_t arena_left;
static void *arena_free[ARENA_MAX / 64 + 1]; /* by size in lines: freed blocks, linked */
static _Atomic int arena_on = 1;
static char **arena_chunks;               /* every chunk, to tell arena blocks on free */
static size_t arena_n, arena_cap;

static int arena_owns(const void *p)
{
    for (size_t i = 0; i < arena_n; i++)
        if ((const char *)p >= arena_chunks[i] && (const char *)p < arena_chunks[i] + ARENA_CHUNK)
            return 1;
    return 0;
}

void mg_node_arena(int on) { atomic_store(&arena_on, on != 0); }

static void *arena_chunk(void)
{
    if (arena_n == arena_cap) {
        const size_t cap = arena_cap ? 2 * arena_cap : 16;
        char **c = realloc(arena_chunks, cap * sizeof *c);
        if (!c)
            return NULL;
        arena_chunks = c;
        arena_cap = cap;
    }
    /* twice the size, then the aligned 2 MB kept. Mapped PROT_NONE first and
     * made writable after the MADV_HUGEPAGE hint: under mlockall(MCL_FUTURE)
     * (serve --mlock) a writable mapping is populated at once, with 4 KB pages
     * before the hint could apply, and khugepaged later collapsed those into a
     * huge page while the audio thread ran on them: a page fault there, and a
     * wait for the copy (seen in bench/jackd.py as rt_thread_faults and
     * /proc/vmstat thp_collapse_alloc). mprotect() of a locked mapping
     * populates it after the hint, with a huge page from the start. */
    char *m = mmap(NULL, 2 * ARENA_CHUNK, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)m + ARENA_CHUNK - 1) & ~(uintptr_t)(ARENA_CHUNK - 1));
    if (a > m)
        munmap(m, (size_t)(a - m));
    if (a + ARENA_CHUNK < m + 2 * ARENA_CHUNK)
        munmap(a + ARENA_CHUNK, (size_t)(m + 2 * ARENA_CHUNK - (a + ARENA_CHUNK)));
#ifdef MADV_HUGEPAGE
    madvise(a, ARENA_CHUNK, MADV_HUGEPAGE); /* a hint: without THP, 4 KB pages */
#endif
    if (mprotect(a, ARENA_CHUNK, PROT_READ | PROT_WRITE) != 0) {
        munmap(a, ARENA_CHUNK);
        return NULL;
    }
    arena_chunks[arena_n++] = a;
    return a;
}

void *mg_calloc_lines(size_t bytes)
{
    count_if_audio();
    const size_t lines = (bytes + 63) / 64 ? (bytes + 63) / 64 : 1;
    void *p = NULL;
    if (lines * 64 <= ARENA_MAX && atomic_load(&arena_on)) {
        pthread_mutex_lock(&arena_lock);
        if (arena_free[lines]) {
            p = arena_free[lines];
            arena_free[lines] = *(void **)p;
        } else {
            if (arena_left < lines * 64) {
                char *c = arena_chunk();
                if (c) {
                    arena_at = c;
                    arena_left = ARENA_CHUNK;
                }
            }
            if (arena_left >= lines * 64) {
                p = arena_at;
                arena_at += lines * 64;
                arena_left -= lines * 64;
            }
        }
        pthread_mutex_unlock(&arena_lock);
    }
    if (!p && posix_memalign(&p, 64, lines * 64) != 0)
        return NULL;
    memset(p, 0, lines * 64); /* also faults the pages in here, on the control thread */
    return p;
}

void mg_free_lines(void *p, size_t bytes)
{
    if (!p)
        return;
    count_if_audio();
    const size_t lines = (bytes + 63) / 64 ? (bytes + 63) / 64 : 1;
    int mine = 0;
    if (lines * 64 <= ARENA_MAX) {
        /* an arena block, or posix_memalign's (the arena full or off) */
        pthread_mutex_lock(&arena_lock);
        mine = arena_owns(p);
        if (mine) {
            *(void **)p = arena_free[lines];
            arena_free[lines] = p;
        }
        pthread_mutex_unlock(&arena_lock);
    }
    if (!mine)
        free(p);
}

void mg_free(void *p)
{
    if (p)
        count_if_audio();
    free(p);
}

void *mg_cold_alloc(size_t bytes)
{
    count_if_audio();
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, bytes); /* fault the pages in now, on the control thread */
    return p;
}

void mg_cold_free(void *p, size_t bytes)
{
    if (p) {
        count_if_audio();
        munmap(p, bytes);
    }
}

uint64_t mg_rt_alloc_count(void)
{
    return atomic_load(&mg_rt_allocs);
}
