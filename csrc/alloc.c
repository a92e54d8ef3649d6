/* mixgraph C core: the allocator, with accounting of audio-thread calls.
 *
 * Used by engine.c, plan.c and ring.c (see mg_alloc.h). Runs on the control
 * thread; a call from the audio thread is a defect, and is counted so the
 * tests (tests/test_rt_alloc.py) can catch it. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS under -std=c11 */
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

void *mg_calloc_lines(size_t bytes)
{
    count_if_audio();
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0)
        return NULL;
    memset(p, 0, bytes);
    return p;
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
