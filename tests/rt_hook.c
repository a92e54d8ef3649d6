/* An LD_PRELOAD allocation counter for tests/test_rt_alloc.py.
 *
 * Wraps malloc/calloc/realloc/free (and the aligned variants) and counts
 * every call made by a thread while it is "armed". The engine arms the
 * audio thread through the weak hooks mg_rt_enter/mg_rt_leave it calls
 * around mg_engine_process; a test can also arm its own thread with
 * rt_hook_arm() to check that the counter works.
 *
 * dlsym() may itself call calloc before the real functions are known:
 * those early requests are served from a small static arena and never
 * freed to the real allocator. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef int (*memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_fn)(size_t, size_t);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static free_fn real_free;
static memalign_fn real_posix_memalign;
static aligned_fn real_aligned_alloc;

/* initial-exec: no lazy TLS allocation when a thread first touches it */
static __thread int armed __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t count;
static _Atomic uint64_t enters;
static _Atomic int resolving;

static unsigned char arena[1 << 16];
static _Atomic size_t arena_used;

static int in_arena(const void *p)
{
    return (const unsigned char *)p >= arena && (const unsigned char *)p < arena + sizeof arena;
}

static void *arena_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    size_t at = atomic_fetch_add(&arena_used, n);
    if (at + n > sizeof arena)
        return NULL;
    return arena + at;
}

static void resolve(void)
{
    if (real_free)
        return;
    atomic_store(&resolving, 1);
    real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
    real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
    real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = (memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (aligned_fn)dlsym(RTLD_NEXT, "aligned_alloc");
    real_free = (free_fn)dlsym(RTLD_NEXT, "free");
    atomic_store(&resolving, 0);
}

static inline void note(void)
{
    if (armed)
        atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
    if (!real_malloc) {
        if (atomic_load(&resolving))
            return arena_alloc(n);
        resolve();
    }
    note();
    return real_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    if (!real_calloc) {
        if (atomic_load(&resolving))
            return arena_alloc(n * size); /* static arena is zeroed */
        resolve();
    }
    note();
    return real_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    if (!real_realloc)
        resolve();
    note();
    if (in_arena(p)) {
        void *q = real_malloc(n);
        size_t avail = (size_t)(arena + sizeof arena - (unsigned char *)p);
        if (q)
            memcpy(q, p, n < avail ? n : avail);
        return q;
    }
    return real_realloc(p, n);
}

void free(void *p)
{
    if (!p || in_arena(p))
        return;
    if (!real_free)
        resolve();
    note();
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (!real_posix_memalign)
        resolve();
    note();
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    if (!real_aligned_alloc)
        resolve();
    note();
    return real_aligned_alloc(align, n);
}

/* the engine's weak hooks */
/* page faults taken on an armed thread (RUSAGE_THREAD: this thread only) */
static _Atomic uint64_t faults;
static __thread long fault_mark __attribute__((tls_model("initial-exec")));

static long thread_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

void mg_rt_enter(void)
{
    atomic_fetch_add_explicit(&enters, 1, memory_order_relaxed);
    fault_mark = thread_faults();
    armed = 1;
}

void mg_rt_leave(void)
{
    armed = 0;
    atomic_fetch_add_explicit(&faults, (uint64_t)(thread_faults() - fault_mark),
                              memory_order_relaxed);
}

/* for the test (through ctypes) */
void rt_hook_arm(int on) { armed = on; }
uint64_t rt_hook_count(void) { return atomic_load(&count); }
uint64_t rt_hook_enters(void) { return atomic_load(&enters); }
uint64_t rt_hook_faults(void) { return atomic_load(&faults); }
void rt_hook_reset(void)
{
    atomic_store(&faults, 0);
    atomic_store(&count, 0);
    atomic_store(&enters, 0);
}
