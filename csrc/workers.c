/* mixgraph C core: the audio worker threads.
 *
 * mg_workers_run (audio thread) runs every unit of a plan's parallel form
 * (csrc/pool.c) once, on the calling thread and the workers, each unit after
 * its predecessors, after SuperCollider supernova's DSP thread queue and
 * Ardour's process graph:
 *
 * - each unit has an activation count (its predecessors); the thread that
 *   finishes a unit decrements its successors' counts, runs the first one it
 *   made ready itself and keeps the others (they read its output), queueing
 *   them for the other threads when those have nothing queued;
 * - a unit runs on the thread that ran the unit whose outputs it reads (its
 *   data predecessor, csrc/pool.c: a bus's push segment where its strips
 *   ran), handed to that thread's ready queue while it is awake: read on the
 *   other core, every line of those outputs is a transfer;
 * - the roots are dealt to the threads the same way every cycle (a
 *   thread's strips and their state stay on its core); a thread with none
 *   left and nothing handed to it takes another thread's last root, then
 *   anything queued anywhere;
 * - the ready queues are lock-free: an array and two atomic counters per
 *   thread (a unit enters one at most once per cycle, so none wraps); the
 *   roots, a word per thread (front, back) taken by compare-and-swap;
 * - a thread with nothing to run sleeps on its semaphore (a futex): it
 *   registers as idle, looks at the queues once more, then waits; a thread
 *   that gives it work takes the registration and posts once. No spinning
 *   between cycles, except when the audio thread says the next cycle
 *   follows at once (an offline render's blocks, a period's sub-blocks):
 *   then a worker waits for it spinning, for at most the spin bound, and
 *   neither pays the post (3-4 us on the audio thread) nor the wake (8-11
 *   us before the worker's first unit, on this VM);
 * - workers take the audio thread's floating-point mode and its scheduling
 *   policy, never allocate, lock or call Python, and arm the allocation hook
 *   while they work (csrc/alloc.c).
 *
 * Worker threads are created and joined on the control thread. */
#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "mg_internal.h"

enum { TEV_CYCLE = 1, TEV_START, TEV_END, TEV_POST, TEV_WAKE, TEV_SLEEP, TEV_DONE };

#define MG_MAX_WORKERS 63

/* Tracing (bench/threads_trace.py): each cycle's events with their time, so a
 * bench can tell the work from the waits. Off: one predictable branch each. */
#define TRACE_CAP (1 << 18)
typedef struct {
    uint64_t t;                       /* CLOCK_MONOTONIC ns */
    int16_t kind, thread;             /* MG_TEV_*, 0: the audio thread, i: worker i */
    int32_t arg;                      /* a unit; a post's target (0 audio, 1 a worker) */
} mg_tev;

static _Thread_local int tl_thread; /* 0 on the audio thread */
/* the workers whose cycle this thread is running (mg_par_for), or NULL */
static _Thread_local mg_workers *tl_cycle;

/* Counters (mg_engine_par_stats, bench/): per thread, on a line of its own,
 * written by that thread only (a load and a store, no locked instruction),
 * read by the control thread. Always on: two clock reads per cycle and per
 * spin, the rest increments. */
typedef struct {
    _Alignas(64) _Atomic uint64_t v[MG_PSTAT_N];
} mg_pstat;

struct mg_workers {
    int n;                            /* worker threads (threads - 1) */
    pthread_t tid[MG_MAX_WORKERS];
    int started;
    int n_sem;                        /* semaphores made (threads - 1) */
    sem_t sem[MG_MAX_WORKERS];        /* worker i + 1 sleeps on sem[i] */
    sem_t main_sem;                   /* the audio thread waits here */
    /* worker i + 1 registered to sleep, not yet posted (a line each) */
    struct {
        _Alignas(64) _Atomic int on;
    } idle[MG_MAX_WORKERS];
    _Alignas(64) _Atomic int main_idle;
    _Alignas(64) _Atomic(mg_par *) par; /* the cycle being run, or NULL */
    _Atomic uint64_t seq;             /* cycles published (before par is) */
    _Atomic int follows;              /* another cycle follows this one at once */
    _Alignas(64) _Atomic int busy;    /* workers that may be reading par */
    /* the cycle: written by the audio thread before it publishes par */
    _Alignas(64) mg_unit_fn fn;
    _Atomic uint64_t t_pub;           /* when the cycle was published (ns) */
    void *ctx;
    unsigned int fpmode;              /* the audio thread's MXCSR / FPCR */
    _Atomic int sched_gen;            /* bumped when the audio thread's policy is new */
    int policy, prio;
    pthread_t main_tid;
    int main_known;
    _Atomic int quit;
    _Atomic int next_id;              /* worker numbers, 1 .. n */
    /* mg_par_for: one job at a time. `job` is the job's number << 32 | its
     * parts << 16 | the next part to claim; a part is claimed by
     * compare-and-swap on the whole word, and only while next < parts in
     * that word. The count of parts must be in the word: read from a field of
     * its own (threads5, eb62774), a helper could pair the closed word of the
     * last job (next == its parts) with the larger count the next owner had
     * already written, and claim a part of no job before the next one opened
     * (the first job of an engine, its count up from 0, most of all): it
     * ran the part with whatever it had read and counted it done in the next
     * job, whose owner then returned before its own helper's part was
     * written (limiter.c read channel 1's detector result as NULL). fn and
     * arg are read after the claim: they cannot change until every part of
     * the job is done. */
    _Alignas(64) _Atomic uint64_t job;
    _Atomic(void (*)(void *, int)) job_fn;
    _Atomic(void *) job_arg;
    _Atomic int job_busy;             /* a thread owns the job slot */
    _Alignas(64) _Atomic int job_done; /* parts finished by helpers */
    /* scheduling (mg_workers_sched): how long a thread with nothing ready
     * spins for work within a cycle before it sleeps; the least work a
     * cycle is expected to have for the audio thread to wake workers */
    _Atomic uint64_t spin_ns;
    _Atomic int spin_adapt;           /* spin_pays may say no (mg_engine_set_spin_adapt) */
    _Atomic int64_t min_work_ns;      /* 0: always; -1: every other cycle (tests);
                                       * -2: the units, no worker woken (bench) */
    /* audio: which path is faster, measured (mg_workers_handoff) */
    double wall[2];                   /* ns per frame, moving averages: alone, on workers */
    const void *plan;                 /* the plan they were measured on */
    int best;                         /* the path taken outside trials */
    int last;                         /* the previous cycle's path */
    int trial;                        /* cycles of the other path still to run */
    unsigned cycles;
    mg_pstat pstat[MG_MAX_WORKERS + 1]; /* [thread]: 0 the audio thread */
    _Atomic int trace;                /* record events (mg_workers_trace) */
    mg_tev *tev;                      /* TRACE_CAP events, allocated by control */
    _Alignas(64) _Atomic int n_tev;
};

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* This thread's counter k += d. */
static inline void pst(mg_workers *w, int k, uint64_t d)
{
    _Atomic uint64_t *c = &w->pstat[tl_thread].v[k];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline void tev(mg_workers *w, int kind, int arg)
{
    if (__builtin_expect(!atomic_load_explicit(&w->trace, memory_order_relaxed), 1))
        return;
    const int i = atomic_fetch_add_explicit(&w->n_tev, 1, memory_order_relaxed);
    if (i < TRACE_CAP)
        w->tev[i] = (mg_tev){now_ns(), (int16_t)kind, (int16_t)tl_thread, arg};
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static inline unsigned int fp_get(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return _mm_getcsr();
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return (unsigned int)v;
#else
    return 0;
#endif
}

static inline void fp_set(unsigned int m)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(m);
#elif defined(__aarch64__)
    uint64_t v = m;
    __asm__ volatile("msr fpcr, %0" : : "r"(v));
#else
    (void)m;
#endif
}

/* Thread t's ready queue (t < par->n_q). */
static inline _Atomic uint64_t *q_slots(mg_par *par, int t)
{
    return par->queue + (size_t)t * (size_t)(par->q_mask + 1);
}

/* A unit from thread t's ready queue, or -1. Claims position r only once its
 * slot is written, so a reader never waits for a writer. A slot tagged with
 * a later position means r was read in an earlier cycle (this thread was
 * preempted): read again. Each cycle queues at most n_units positions and
 * claims all it queues, so a slot is rewritten only in a later cycle. */
static inline int pop(mg_par *par, int t)
{
    struct mg_par_q *q = &par->q[t];
    _Atomic uint64_t *slot = q_slots(par, t);
    for (;;) {
        uint64_t r = atomic_load_explicit(&q->rd, memory_order_acquire);
        if (r >= atomic_load_explicit(&q->wr, memory_order_acquire))
            return -1;
        const uint64_t v = atomic_load_explicit(&slot[r & par->q_mask], memory_order_acquire);
        if ((v >> 16) != r + 1) {
            if ((v >> 16) > r + 1)
                continue; /* a stale r */
            return -1;    /* being written: its writer wakes a sleeper after */
        }
        if (atomic_compare_exchange_weak_explicit(&q->rd, &r, r + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return (int)(v & 0xffff);
    }
}

static inline void push(mg_par *par, int t, int u)
{
    const uint64_t i = atomic_fetch_add(&par->q[t].wr, 1);
    atomic_store_explicit(&q_slots(par, t)[i & par->q_mask], (i + 1) << 16 | (uint64_t)u,
                          memory_order_seq_cst);
}

/* One of thread t's roots not yet claimed, or -1: the first (own: t's own
 * thread), else the last. */
static inline int take_root(mg_par *par, int t, int own)
{
    _Atomic uint64_t *r = &par->q[t].roots;
    uint64_t v = atomic_load_explicit(r, memory_order_acquire);
    for (;;) {
        const uint32_t f = (uint32_t)(v >> 32), b = (uint32_t)v;
        if (f >= b)
            return -1;
        const uint64_t nv = own ? (uint64_t)(f + 1) << 32 | b : (uint64_t)f << 32 | (b - 1);
        if (atomic_compare_exchange_weak_explicit(r, &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire))
            return par->roots[par->root_first[t] + (int)(own ? f : b - 1)];
    }
}

/* 1 when any thread's queue or roots hold work. */
static inline int queued(mg_par *par)
{
    for (int t = 0; t < par->n_q; t++) {
        const struct mg_par_q *q = &par->q[t];
        const uint64_t r = atomic_load_explicit(&q->roots, memory_order_acquire);
        if ((uint32_t)(r >> 32) < (uint32_t)r ||
            atomic_load_explicit(&q->rd, memory_order_acquire) <
                atomic_load_explicit(&q->wr, memory_order_acquire))
            return 1;
    }
    return 0;
}

/* This thread's queue. */
static inline int my_q(const mg_par *par)
{
    return tl_thread < par->n_q ? tl_thread : tl_thread % par->n_q;
}

/* The first root not yet claimed in the order the roots were dealt (root i
 * is thread i % n_q's (i / n_q)th), or -1: for a thread that runs alone. */
static inline int first_root(mg_par *par)
{
    for (;;) {
        int best = -1;
        uint64_t bi = UINT64_MAX, bv = 0;
        for (int t = 0; t < par->n_q; t++) {
            const uint64_t v = atomic_load_explicit(&par->q[t].roots, memory_order_acquire);
            const uint64_t f = v >> 32;
            if (f < (uint32_t)v && f * (uint64_t)par->n_q + (uint64_t)t < bi) {
                bi = f * (uint64_t)par->n_q + (uint64_t)t;
                best = t;
                bv = v;
            }
        }
        if (best < 0)
            return -1;
        if (atomic_compare_exchange_strong_explicit(&par->q[best].roots, &bv, bv + (1ull << 32),
                                                    memory_order_acq_rel, memory_order_acquire))
            return par->roots[par->root_first[best] + (int)(bv >> 32)];
    }
}

/* Work for thread `me`: what was handed to it, its own roots, another
 * thread's last root, anything queued anywhere; -1: none. Alone (solo):
 * the roots in the order they were dealt. */
static inline int next_work(mg_workers *w, mg_par *par, int me, int alone)
{
    int u;
    if ((u = pop(par, me)) >= 0)
        return u;
    if (alone && (u = first_root(par)) >= 0)
        return u;
    if ((u = take_root(par, me, 1)) >= 0)
        return u;
    for (int k = 1; k < par->n_q; k++)
        if ((u = take_root(par, (me + k) % par->n_q, 0)) >= 0) {
            pst(w, MG_PSTAT_ROOTS_OTHER, 1);
            return u;
        }
    for (int k = 1; k < par->n_q; k++)
        if ((u = pop(par, (me + k) % par->n_q)) >= 0) {
            pst(w, MG_PSTAT_POP_OTHER, 1);
            return u;
        }
    return -1;
}

static inline int solo(mg_workers *w)
{
    return atomic_load_explicit(&w->min_work_ns, memory_order_relaxed) == -2;
}

/* Wake thread t (0: the audio thread) if it is registered to sleep. */
static inline void wake(mg_workers *w, int t)
{
    if (__builtin_expect(solo(w), 0))
        return; /* solo: the parallel form on the audio thread alone (bench) */
    _Atomic int *f = t == 0 ? &w->main_idle : t <= w->n ? &w->idle[t - 1].on : NULL;
    if (f && atomic_load(f) && atomic_exchange(f, 0)) {
        tev(w, TEV_POST, t);
        pst(w, MG_PSTAT_POSTS, 1);
        sem_post(t == 0 ? &w->main_sem : &w->sem[t - 1]);
    }
}

/* 1 when thread t is not registered to sleep (and may take handed work). */
static inline int awake(mg_workers *w, int t)
{
    if (solo(w))
        return t == 0;
    return t == 0 ? !atomic_load_explicit(&w->main_idle, memory_order_relaxed)
                  : t <= w->n && !atomic_load_explicit(&w->idle[t - 1].on, memory_order_relaxed);
}

/* Wake one sleeping thread (the audio thread first), if any sleeps. */
static inline void wake_one(mg_workers *w)
{
    if (__builtin_expect(solo(w), 0))
        return;
    if (atomic_load(&w->main_idle) && atomic_exchange(&w->main_idle, 0)) {
        tev(w, TEV_POST, 0);
        pst(w, MG_PSTAT_POSTS, 1);
        sem_post(&w->main_sem);
        return;
    }
    for (int i = 0; i < w->n; i++)
        if (atomic_load(&w->idle[i].on) && atomic_exchange(&w->idle[i].on, 0)) {
            tev(w, TEV_POST, i + 1);
            pst(w, MG_PSTAT_POSTS, 1);
            sem_post(&w->sem[i]);
            return;
        }
}

/* Units a thread made ready and keeps for itself while the other threads
 * have queued work of their own: they read what this thread just wrote (a
 * bus's push segment reads its strips' outputs), which on another core
 * costs a transfer of every line (mix64 256 ch: a segment 4.3 us there,
 * 1.3 us here). Exposed on the shared queue once that runs dry. */
#define LOCAL_CAP 64
typedef struct {
    int n, first;
    int u[LOCAL_CAP];
} mg_local;

/* Run unit u, then the successors it makes ready, one after the other. */
static void run_chain(mg_workers *w, mg_par *par, int u, mg_local *lo)
{
    const mg_unit_fn fn = w->fn;
    void *ctx = w->ctx;
    for (;;) {
        /* every predecessor has counted down: ready for the next cycle */
        atomic_store_explicit(&par->count[u], par->init[u], memory_order_relaxed);
        tev(w, TEV_START, u);
        fn(ctx, u);
        tev(w, TEV_END, u);
        pst(w, MG_PSTAT_UNITS, 1);
        par->ran_by[u] = tl_thread; /* before the counts: read by whoever makes a successor ready */
        int next = -1;
        for (int i = par->succ_first[u]; i < par->succ_first[u + 1]; i++) {
            const int v = par->succ[i];
            if (atomic_fetch_sub_explicit(&par->count[v], 1, memory_order_acq_rel) == 1) {
                const int dp = par->data_pred[v];
                const int h = dp >= 0 ? par->ran_by[dp] : tl_thread;
                if (h != tl_thread && h < par->n_q && awake(w, h)) {
                    push(par, h, v); /* where its inputs were written */
                    pst(w, MG_PSTAT_HANDED, 1);
                    wake(w, h);
                } else if (next < 0) {
                    next = v;
                } else if (lo->n < LOCAL_CAP && queued(par)) {
                    lo->u[lo->n++] = v; /* the others have queued work: kept here */
                    pst(w, MG_PSTAT_KEPT, 1);
                } else {
                    push(par, my_q(par), v);
                    pst(w, MG_PSTAT_SHARED, 1);
                    wake_one(w);
                }
            }
        }
        /* the cycle ends with its last sink (the others are its ancestors,
         * and each counted its successors down before they could run) */
        if (par->succ_first[u] == par->succ_first[u + 1] &&
            atomic_fetch_sub(&par->remaining, 1) == 1)
            if (atomic_exchange(&w->main_idle, 0)) {
                tev(w, TEV_POST, 0);
                pst(w, MG_PSTAT_POSTS, 1);
                sem_post(&w->main_sem);
            }
        if (next < 0)
            return;
        u = next;
    }
}

/* Run what this thread kept and what is queued. Kept units go first, in the
 * order they were made ready; when no queue holds work, the kept units
 * beyond the next are queued, so an idle thread can take them. */
static void drain(mg_workers *w, mg_par *par)
{
    mg_local lo;
    lo.n = lo.first = 0;
    const int me = my_q(par);
    for (;;) {
        int u;
        if (lo.first < lo.n) {
            if (lo.n - lo.first > 1 && !queued(par)) {
                for (int i = lo.first + 1; i < lo.n; i++) {
                    push(par, me, lo.u[i]);
                    pst(w, MG_PSTAT_SHARED, 1);
                    wake_one(w);
                }
                lo.n = lo.first + 1;
            }
            u = lo.u[lo.first++];
            if (lo.first == lo.n)
                lo.n = lo.first = 0;
        } else if ((u = next_work(w, par, me, solo(w))) < 0) {
            return;
        }
        run_chain(w, par, u, &lo);
    }
}

#define JOB_PARTS(j) ((uint32_t)((j) >> 16) & 0xffffu)
#define JOB_NEXT(j) ((uint32_t)(j) & 0xffffu)
#define JOB_MAX_PARTS 0xffff

/* Parts of an mg_par_for job, while one is open: run them. 1 when one ran. */
static int help_job(mg_workers *w)
{
    int ran = 0;
    uint64_t j = atomic_load_explicit(&w->job, memory_order_relaxed);
    while (JOB_NEXT(j) < JOB_PARTS(j)) {
        /* the word says the job is open and this part unclaimed; the claim
         * succeeds only if it still is. Acquire: it reads the open store's
         * release sequence (the open, then claims), so fn and arg are the
         * job's; they stay until this part is counted done. */
        if (!atomic_compare_exchange_weak_explicit(&w->job, &j, j + 1, memory_order_acquire,
                                                   memory_order_relaxed))
            continue; /* j is the word now */
        void (*fn)(void *, int) = atomic_load_explicit(&w->job_fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&w->job_arg, memory_order_relaxed);
        fn(arg, (int)JOB_NEXT(j));
        atomic_fetch_add_explicit(&w->job_done, 1, memory_order_release);
        pst(w, MG_PSTAT_HELPED, 1);
        ran = 1;
        j = atomic_load_explicit(&w->job, memory_order_relaxed);
    }
    return ran;
}

#define PAR_FOR_SPIN_NS 20000

void mg_par_for(void (*fn)(void *arg, int i), void *arg, int n)
{
    mg_workers *w = tl_cycle;
    if (!w || n < 2 || n > JOB_MAX_PARTS || solo(w) ||
        atomic_exchange_explicit(&w->job_busy, 1, memory_order_acquire)) {
        for (int i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    /* the last job is closed (every part claimed and done) and no helper can
     * claim in a closed word: the descriptor is this thread's until it opens */
    atomic_store_explicit(&w->job_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&w->job_arg, arg, memory_order_relaxed);
    atomic_store_explicit(&w->job_done, 0, memory_order_relaxed);
    const uint64_t gen = (atomic_load_explicit(&w->job, memory_order_relaxed) >> 32) + 1;
    uint64_t j = gen << 32 | (uint64_t)n << 16;
    atomic_store_explicit(&w->job, j, memory_order_release); /* open */
    int mine = 0;
    while (JOB_NEXT(j) < (uint32_t)n) {
        if (atomic_compare_exchange_weak_explicit(&w->job, &j, j + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            fn(arg, (int)JOB_NEXT(j));
            mine++;
            j = atomic_load_explicit(&w->job, memory_order_relaxed);
        }
    }
    /* every part is claimed: wait for those a helper runs (it is running
     * them, not asleep: a part is claimed only by a thread that runs it).
     * But the helper may have been preempted inside its part, on a host with
     * more runnable threads than cores, perhaps onto this very core's queue:
     * after PAR_FOR_SPIN_NS of waiting, yield the core at every turn, so
     * that it can finish (this wait spun without bound: a 2-thread render
     * under load 8-10 took 20-60 ms blocks, bench/threads_sched.py). */
    uint64_t t0 = 0;
    int yielding = 0;
    for (unsigned k = 0; atomic_load_explicit(&w->job_done, memory_order_acquire) + mine < n; k++) {
        if (yielding) {
            sched_yield();
            continue;
        }
        if ((k & 31) == 0) {
            const uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > PAR_FOR_SPIN_NS)
                yielding = 1;
        }
        cpu_relax();
    }
    atomic_store_explicit(&w->job_busy, 0, memory_order_release);
}

/* The mg_par_for protocol alone (mg_par_for_selftest, tests/test_par_for.py):
 * a helper thread that does nothing but help_job, and the calling thread
 * opening `jobs` jobs of 1 .. max_parts parts one after the other, each part
 * counting its runs in the job's own row. */
typedef struct {
    _Atomic uint32_t *hits; /* the job's row: runs of each part */
    int spin;               /* a part's length (busy turns): widens the races */
} selftest_job;

static void selftest_part(void *arg, int i)
{
    const selftest_job *j = arg;
    for (volatile int k = 0; k < j->spin; k++) {
    }
    atomic_fetch_add_explicit(&j->hits[i], 1, memory_order_relaxed);
}

static void *selftest_helper(void *arg)
{
    mg_workers *w = arg;
    tl_thread = 1;
    atomic_store(&w->next_id, 1); /* started */
    while (!atomic_load_explicit(&w->quit, memory_order_relaxed))
        if (!help_job(w))
            cpu_relax();
    return NULL;
}

int mg_par_for_selftest(int jobs, int max_parts, unsigned seed, uint64_t *helped)
{
    if (jobs < 1 || max_parts < 1)
        return -1;
    mg_workers *w = mg_calloc(1, sizeof *w);
    _Atomic uint32_t *hits = mg_calloc((size_t)jobs * (size_t)max_parts, sizeof *hits);
    selftest_job *job = mg_calloc((size_t)jobs, sizeof *job);
    int *parts = mg_calloc((size_t)jobs, sizeof *parts);
    pthread_t tid;
    if (!w || !hits || !job || !parts || pthread_create(&tid, NULL, selftest_helper, w) != 0) {
        mg_free(w), mg_free(hits), mg_free(job), mg_free(parts);
        return -1;
    }
    while (!atomic_load(&w->next_id)) /* the helper is running */
        sched_yield();
    int bad = 0;
    uint32_t r = seed * 2654435761u + 1u;
    mg_workers *const saved = tl_cycle;
    tl_cycle = w; /* as inside a cycle */
    for (int i = 0; i < jobs; i++) {
        r = r * 1664525u + 1013904223u;
        parts[i] = 1 + (int)((r >> 8) % (uint32_t)max_parts);
        job[i] = (selftest_job){hits + (size_t)i * (size_t)max_parts, (int)((r >> 20) & 63)};
        mg_par_for(selftest_part, &job[i], parts[i]);
        for (int k = 0; k < parts[i]; k++) /* done at return, once each */
            if (atomic_load_explicit(&job[i].hits[k], memory_order_relaxed) != 1) {
                bad++;
                break;
            }
    }
    tl_cycle = saved;
    atomic_store(&w->quit, 1);
    pthread_join(tid, NULL);
    for (int i = 0; i < jobs; i++) /* and never again, nor beyond the job's parts */
        for (int k = 0; k < max_parts; k++)
            if (atomic_load(&job[i].hits[k]) != (k < parts[i])) {
                bad++;
                break;
            }
    if (helped)
        *helped = atomic_load(&w->pstat[1].v[MG_PSTAT_HELPED]);
    mg_free(w), mg_free(hits), mg_free(job), mg_free(parts);
    return bad;
}

/* Whether spinning pays on this host now, per thread. A spin is lost when it
 * runs out its bound, or when the thread finds itself preempted inside it (a
 * gap between two looks at the clock): on a host with more runnable threads
 * than cores, the thread holding the work the spinner waits for is itself
 * waiting for a core, and the spin only takes a core (and this process's
 * share of the machine) from it. Measured on this 2-vCPU host at load 8-9
 * (`python bench/threads_sched.py`, SCHED_OTHER, mix64 256 ch): 2 threads at
 * 0.73x one thread with the 50 us spin, 0.97x with 10 us, 1.29-1.32x with
 * none; under SCHED_FIFO (no other runnable thread ahead of ours) the spin
 * wins (1.05-1.15x against 0.92-1.01x without: the wake it saves is 13-15
 * us). So each thread keeps a score, two up for a lost spin and one down
 * for one that found work, saw its cycle end or the next one come, and
 * while the score is at SPIN_OFF it sleeps at once, but for one spin in
 * SPIN_PROBE (to see when spins pay again). */
#define SPIN_OFF 8
#define SPIN_MAX 16
#define SPIN_PROBE 16
/* a gap between two looks at the clock (32 pauses apart, ~1-2 us) longer
 * than this: the thread was not running */
#define SPIN_GAP_NS 20000
static _Thread_local int tl_spin_score;
static _Thread_local unsigned tl_spin_skips;

/* 1: spin now; 0: sleep at once (counted). */
static inline int spin_pays(mg_workers *w)
{
    if (tl_spin_score < SPIN_OFF || !atomic_load_explicit(&w->spin_adapt, memory_order_relaxed) ||
        (++tl_spin_skips % SPIN_PROBE) == 0)
        return 1;
    pst(w, MG_PSTAT_SPIN_SKIP, 1);
    return 0;
}

static inline void spin_result(mg_workers *w, int lost)
{
    if (lost) {
        tl_spin_score = tl_spin_score + 2 > SPIN_MAX ? SPIN_MAX : tl_spin_score + 2;
        pst(w, MG_PSTAT_SPIN_LOST, 1);
    } else if (tl_spin_score > 0) {
        tl_spin_score--;
    }
}

/* Nothing ready: spin (never sleep) for at most spin_ns while the cycle
 * runs, when spins pay (spin_pays). 1: work is queued; 0: the cycle is over,
 * or the bound has passed, or spinning does not pay. */
static int spin_for_work(mg_workers *w, mg_par *par)
{
    const uint64_t ns = atomic_load_explicit(&w->spin_ns, memory_order_relaxed);
    if (!ns || !spin_pays(w))
        return 0;
    const uint64_t t0 = now_ns();
    const uint64_t until = t0 + ns;
    uint64_t last = t0;
    int found = 0, lost = 0;
    for (unsigned k = 1;; k++) {
        if (queued(par)) {
            found = 1;
            break;
        }
        if (help_job(w))
            continue; /* (the clock is read every 32 turns) */
        if (atomic_load_explicit(&par->remaining, memory_order_acquire) == 0 ||
            atomic_load_explicit(&w->par, memory_order_acquire) != par)
            break;
        if ((k & 31) == 0) {
            const uint64_t t = now_ns();
            if (t >= until || t - last > SPIN_GAP_NS) {
                lost = 1;
                break;
            }
            last = t;
        }
        cpu_relax();
    }
    spin_result(w, lost);
    pst(w, MG_PSTAT_SPINS, 1);
    pst(w, MG_PSTAT_SPIN_FOUND, (uint64_t)found);
    pst(w, MG_PSTAT_SPIN_NS, now_ns() - t0);
    return found;
}

/* 1 when the cycle has queued work (workers: under busy). */
static int has_work(mg_workers *w)
{
    atomic_fetch_add(&w->busy, 1);
    mg_par *par = atomic_load(&w->par);
    const int yes = par && queued(par);
    atomic_fetch_sub(&w->busy, 1);
    return yes;
}

static __attribute__((noinline)) void prefault_stack(void)
{
    volatile unsigned char pages[128 * 1024];
    for (size_t i = 0; i < sizeof pages; i += 4096)
        pages[i] = 0;
}

/* The cycle this worker ran was followed at once by another (the audio
 * thread said so when it published it): spin until a cycle after `seen` is
 * published, for at most spin_ns. 1: one was (run it without sleeping); 0:
 * none came, or quitting (sleep). */
static int wait_next(mg_workers *w, uint64_t seen)
{
    const uint64_t ns = atomic_load_explicit(&w->spin_ns, memory_order_relaxed);
    if (!ns || !spin_pays(w))
        return 0;
    const uint64_t t0 = now_ns();
    const uint64_t until = t0 + ns;
    uint64_t last = t0;
    for (unsigned k = 1;; k++) {
        if (atomic_load_explicit(&w->seq, memory_order_acquire) != seen) {
            /* the next cycle follows a few us after this one ends (the
             * engine's work between two blocks): much later, and the audio
             * thread was not running */
            spin_result(w, now_ns() - t0 > SPIN_GAP_NS);
            return 1;
        }
        if (atomic_load_explicit(&w->quit, memory_order_relaxed))
            return 0;
        if ((k & 31) == 0) {
            const uint64_t t = now_ns();
            if (t >= until || t - last > SPIN_GAP_NS) {
                spin_result(w, 1);
                return 0;
            }
            last = t;
        }
        cpu_relax();
    }
}

static void *worker_main(void *arg)
{
    mg_workers *w = arg;
    tl_thread = atomic_fetch_add(&w->next_id, 1) + 1;
    prefault_stack();
    int sched_seen = 0;
    int next = 0; /* a cycle was published while this worker waited for it */
    for (;;) {
        /* sleep: register, look once more, wait (a waker that took the
         * registration posts: then the wait returns at once) */
        const int skip = next || (atomic_store(&w->idle[tl_thread - 1].on, 1),
                                  has_work(w) && atomic_exchange(&w->idle[tl_thread - 1].on, 0));
        next = 0;
        if (!skip) {
            tev(w, TEV_SLEEP, 0);
            pst(w, MG_PSTAT_SLEEPS, 1);
            while (sem_wait(&w->sem[tl_thread - 1]) != 0 && errno == EINTR) {
            }
            tev(w, TEV_WAKE, 0);
        }
        if (atomic_load(&w->quit))
            return NULL;
        const int sg = atomic_load_explicit(&w->sched_gen, memory_order_acquire);
        if (sg != sched_seen) { /* the audio thread's policy, once per change */
            sched_seen = sg;
            struct sched_param sp = {.sched_priority = w->prio};
            (void)sched_setscheduler(0, w->policy, &sp);
        }
        atomic_fetch_add(&w->busy, 1);
        mg_par *par = atomic_load(&w->par);
        /* the cycle's number was published before par: at least par's */
        const uint64_t seen = atomic_load(&w->seq);
        const int follows = atomic_load_explicit(&w->follows, memory_order_relaxed);
        if (par) {
            const uint64_t t0 = now_ns();
            const uint64_t pub = atomic_load_explicit(&w->t_pub, memory_order_relaxed);
            mg_audio_enter();
            if (fp_get() != w->fpmode)
                fp_set(w->fpmode);
            tl_cycle = w;
            do /* within the cycle: spin a little before sleeping again */
                drain(w, par);
            while (spin_for_work(w, par));
            tl_cycle = NULL;
            mg_audio_leave();
            pst(w, MG_PSTAT_CYCLES, 1);
            pst(w, MG_PSTAT_START_NS, t0 > pub ? t0 - pub : 0);
            pst(w, MG_PSTAT_BUSY_NS, now_ns() - t0);
        }
        atomic_fetch_sub(&w->busy, 1);
        if (par && follows)
            next = wait_next(w, seen);
    }
}

mg_workers *mg_workers_new(int threads)
{
    if (threads < 2)
        return NULL;
    if (threads > MG_MAX_WORKERS + 1)
        threads = MG_MAX_WORKERS + 1;
    mg_workers *w = mg_calloc(1, sizeof *w);
    if (!w)
        return NULL;
    int sems = 0;
    while (sems < threads - 1 && sem_init(&w->sem[sems], 0, 0) == 0)
        sems++;
    if (sems < threads - 1 || sem_init(&w->main_sem, 0, 0) != 0) {
        while (sems > 0)
            sem_destroy(&w->sem[--sems]);
        mg_free(w);
        return NULL;
    }
    w->n_sem = sems;
    w->fpmode = fp_get();
    mg_workers_sched(w, MG_SPIN_US, MG_MIN_WORK_US);
    atomic_store(&w->spin_adapt, 1);
    /* a small stack: with mlockall(MCL_FUTURE) every page of it is locked and
     * resident (the audio thread's code uses well under the 128 KiB touched) */
    pthread_attr_t attr;
    const int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr)
        (void)pthread_attr_setstacksize(&attr, 1 << 20);
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&w->tid[i], have_attr ? &attr : NULL, worker_main, w) != 0)
            break;
        w->n++;
    }
    if (have_attr)
        pthread_attr_destroy(&attr);
    if (w->n == 0) {
        mg_workers_free(w);
        return NULL;
    }
    return w;
}

void mg_workers_free(mg_workers *w)
{
    if (!w)
        return;
    atomic_store(&w->quit, 1);
    for (int i = 0; i < w->n; i++)
        sem_post(&w->sem[i]);
    for (int i = 0; i < w->n; i++)
        pthread_join(w->tid[i], NULL);
    for (int i = 0; i < w->n_sem; i++)
        sem_destroy(&w->sem[i]);
    sem_destroy(&w->main_sem);
    mg_free(w->tev);
    mg_free(w);
}

int mg_workers_threads(const mg_workers *w) { return w ? w->n + 1 : 1; }

void mg_workers_sched(mg_workers *w, double spin_us, double min_work_us)
{
    atomic_store(&w->spin_ns, (uint64_t)(spin_us > 0 ? spin_us * 1e3 : 0));
    atomic_store(&w->min_work_ns, (int64_t)(min_work_us > 0      ? min_work_us * 1e3
                                            : min_work_us <= -2 ? -2
                                            : min_work_us < 0   ? -1
                                                                : 0));
}

void mg_workers_spin_adapt(mg_workers *w, int on) { atomic_store(&w->spin_adapt, on != 0); }

/* Trials: every TRIAL_EVERY cycles (TRIAL_CLEAR while the path taken is
 * clearly the faster, by CLEAR_MARGIN), TRIAL_LEN cycles of the other path
 * (the first of them not measured: its caches are the other path's). A
 * trial's cycles are among a live run's slowest when the workers win: 8 in
 * 2048 (0.4%) stay out of the 99th percentile, 8 in 256 (3%) do not. */
#define TRIAL_EVERY 256
#define TRIAL_CLEAR 2048
#define CLEAR_MARGIN 1.25
#define TRIAL_LEN 8
/* Cycles that could take more than this share of their period on one thread
 * always run on the workers (no trials of the one-thread path: it might miss
 * its deadline). This was a fixed 200 us, which sent every cycle of a big
 * session to the workers whatever they cost: mix64 256 ch takes ~200 us of
 * a 1333 us period on one thread, and never had its one-thread path measured,
 * not even while the two vCPUs shared one core and the workers lost. */
#define TRIAL_SHARE 0.5

int mg_workers_handoff(mg_workers *w, const void *plan, int n_frames, double period_ns)
{
    const int64_t min_work = atomic_load_explicit(&w->min_work_ns, memory_order_relaxed);
    if (min_work == 0)
        return 1;
    if (min_work == -2)
        return 1;
    if (min_work < 0)
        return (w->cycles++ & 1) == 0;
    if (plan != w->plan) { /* a new plan: the workers, until measured */
        w->plan = plan;
        w->wall[0] = w->wall[1] = 0.0;
        w->best = w->last = 1;
        w->trial = 0;
        w->cycles = 0;
    }
    /* what one thread would take: measured, else the workers' time as if
     * they had scaled perfectly (an upper bound while they help at all) */
    const double one = w->wall[0] > 0.0 ? w->wall[0] : w->wall[1] * (w->n + 1);
    if (one * n_frames > TRIAL_SHARE * period_ns)
        return 1;
    /* a cycle whose one-thread time is under the minimum never wakes a worker */
    if (w->wall[0] > 0.0 && w->wall[0] * n_frames < (double)min_work)
        return 0;
    if (w->trial > 0) {
        w->trial--;
        return !w->best;
    }
    const int clear = w->wall[0] > 0.0 && w->wall[1] > 0.0 &&
                      w->wall[!w->best] > CLEAR_MARGIN * w->wall[w->best];
    if (++w->cycles % (clear ? TRIAL_CLEAR : TRIAL_EVERY) == 0) {
        w->trial = TRIAL_LEN - 1;
        return !w->best;
    }
    return w->best;
}

void mg_workers_note(mg_workers *w, int handed, uint64_t wall_ns, int n_frames)
{
    /* a forced path (the workers always, every other cycle, the parallel
     * form alone) is no measure of the adaptive choice: bench/threads_ab.py
     * alternates the form alone (slower than one thread) with the default
     * in one engine, and those cycles counted as the workers' */
    if (atomic_load_explicit(&w->min_work_ns, memory_order_relaxed) <= 0)
        return;
    handed = handed != 0;
    const int settled = handed == w->last;
    w->last = handed;
    if (n_frames <= 0 || !settled)
        return;
    double per = (double)wall_ns / n_frames;
    double *m = &w->wall[handed];
    if (*m > 0.0 && per > 2.0 * *m)
        per = 2.0 * *m; /* a preempted cycle moves the average by 12.5% at most */
    *m = *m > 0.0 ? *m + (per - *m) * 0.125 : per;
    /* the faster path, once both are known; a 5% margin against flapping */
    if (w->wall[0] > 0.0 && w->wall[1] > 0.0) {
        if (w->best && w->wall[1] > 1.05 * w->wall[0])
            w->best = 0;
        else if (!w->best && w->wall[0] > 1.05 * w->wall[1])
            w->best = 1;
    }
}

void mg_workers_run(mg_workers *w, mg_par *par, mg_unit_fn fn, void *ctx, int n_frames,
                    int follows)
{
    /* a new audio thread (another backend): workers take its policy */
    const pthread_t self = pthread_self();
    if (!w->main_known || !pthread_equal(self, w->main_tid)) {
        struct sched_param sp = {0};
        const int pol = sched_getscheduler(0);
        if (pol >= 0 && sched_getparam(0, &sp) == 0) {
            w->policy = pol;
            w->prio = sp.sched_priority;
            atomic_fetch_add_explicit(&w->sched_gen, 1, memory_order_release);
        }
        w->main_tid = self;
        w->main_known = 1;
    }
    w->fn = fn;
    w->ctx = ctx;
    w->fpmode = fp_get();
    atomic_store_explicit(&par->remaining, par->n_sinks, memory_order_release);
    for (int t = 0; t < par->n_q; t++)
        atomic_store_explicit(&par->q[t].roots,
                              (uint64_t)(par->root_first[t + 1] - par->root_first[t]),
                              memory_order_release);
    tev(w, TEV_CYCLE, par->n_roots);
    const uint64_t t0 = now_ns();
    atomic_store_explicit(&w->t_pub, t0, memory_order_relaxed);
    atomic_store_explicit(&w->follows, follows != 0, memory_order_relaxed);
    atomic_fetch_add(&w->seq, 1); /* before par: a worker that sees par sees this */
    atomic_store(&w->par, par);   /* publish the cycle */
    for (int t = 1; t <= w->n; t++) /* each worker with roots of its own */
        if (t >= par->n_q || par->root_first[t + 1] > par->root_first[t])
            wake(w, t);
    tl_cycle = w;
    drain(w, par);
    while (atomic_load_explicit(&par->remaining, memory_order_acquire) > 0) {
        if (spin_for_work(w, par)) {
            drain(w, par);
            continue;
        }
        /* nothing ready here: sleep until work is queued or the last unit ends */
        atomic_store(&w->main_idle, 1);
        if (atomic_load(&par->remaining) == 0 || queued(par)) {
            if (!atomic_exchange(&w->main_idle, 0)) {
                tev(w, TEV_SLEEP, 0);
                pst(w, MG_PSTAT_SLEEPS, 1);
                while (sem_wait(&w->main_sem) != 0 && errno == EINTR) {
                } /* taken by a waker: its post is ours */
                tev(w, TEV_WAKE, 0);
            }
        } else {
            tev(w, TEV_SLEEP, 0);
            pst(w, MG_PSTAT_SLEEPS, 1);
            while (sem_wait(&w->main_sem) != 0 && errno == EINTR) {
            }
            tev(w, TEV_WAKE, 0);
        }
        drain(w, par);
    }
    /* unpublish (a worker woken late goes back to sleep). No waiting for
     * workers still looking at the queue: they cannot claim anything of this
     * cycle, and the plan is only retired once none is (mg_workers_quiet). */
    tl_cycle = NULL;
    atomic_store(&w->par, NULL);
    pst(w, MG_PSTAT_CYCLES, 1);
    pst(w, MG_PSTAT_BUSY_NS, now_ns() - t0);

    tev(w, TEV_DONE, 0);
}

int mg_workers_stats(mg_workers *w, uint64_t *v, int cap)
{
    if (!w)
        return 0;
    for (int t = 0; t <= w->n; t++)
        for (int k = 0; k < MG_PSTAT_N && t * MG_PSTAT_N + k < cap; k++)
            v[t * MG_PSTAT_N + k] =
                atomic_load_explicit(&w->pstat[t].v[k], memory_order_relaxed);
    return w->n + 1;
}

int mg_workers_quiet(mg_workers *w)
{
    return !w || atomic_load(&w->busy) == 0;
}

int mg_workers_trace(mg_workers *w, int on)
{
    if (!w)
        return -1;
    if (on && !w->tev) {
        w->tev = mg_calloc(TRACE_CAP, sizeof(mg_tev));
        if (!w->tev)
            return -1;
    }
    atomic_store(&w->n_tev, 0);
    atomic_store(&w->trace, on != 0);
    return 0;
}

int mg_workers_trace_read(mg_workers *w, double *t, int *kind, int *thread, int *arg, int cap)
{
    if (!w || !w->tev)
        return 0;
    int n = atomic_exchange(&w->n_tev, 0);
    if (n > TRACE_CAP)
        n = TRACE_CAP;
    if (n > cap)
        n = cap;
    for (int i = 0; i < n; i++) {
        t[i] = (double)w->tev[i].t * 1e-3;
        kind[i] = w->tev[i].kind;
        thread[i] = w->tev[i].thread;
        arg[i] = w->tev[i].arg;
    }
    return n;
}
