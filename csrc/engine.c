/* mixgraph C core: the engine block loop.
 *
 * The audio thread (PortAudio callback, null clock thread or the offline
 * loop) calls mg_engine_process(). It drains the command ring into a
 * preallocated scheduler heap, swaps plans at block boundaries, splits the
 * block at every event's exact sample, advances parameter ramps, runs the
 * plan, and passes the hardware outputs through the safety stage. It never
 * allocates, locks, blocks or calls Python.
 */
#include <errno.h>
#include <float.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "mg_internal.h"
#include "mg_taper.h"

/* ------------------------------------------------------------------ */
/* denormals: FTZ/DAZ for the duration of one engine_process call      */

typedef struct {
    unsigned int saved;
} mg_fpu_state;

static inline void mg_fpu_enter(mg_fpu_state *s)
{
#if defined(__x86_64__) || defined(__i386__)
    s->saved = _mm_getcsr();
    _mm_setcsr(s->saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    s->saved = (unsigned int)fpcr;
    fpcr |= (1ull << 24); /* FZ */
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#else
    s->saved = 0;
#endif
}

static inline void mg_fpu_leave(const mg_fpu_state *s)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(s->saved);
#elif defined(__aarch64__)
    uint64_t fpcr = s->saved;
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#else
    (void)s;
#endif
}

/* ------------------------------------------------------------------ */
/* engine                                                               */

#define MG_MAX_RETIRE 16

/* What one cycle of the workers runs: a sub-block of a plan (audio). */
typedef struct {
    const struct mg_engine *e;
    const mg_plan *p;
    int off, n;
    uint64_t t;
} mg_cycle;

struct mg_engine {
    /* immutable after mg_engine_new */
    double sample_rate;
    int hw_in_ch, hw_out_ch;
    float **hw_in;            /* planar, MG_MAX_BLOCK each */
    float **hw_out;
    float **hw_in_ptr;        /* offset to the sub-block (audio) */
    float **hw_out_ptr;
    mg_ring cmd;              /* control -> audio */
    uint32_t push_seq;        /* [control] order of commands with the same time */
    mg_ring ev;               /* audio -> control */

    /* audio thread only */
    mg_plan *plan;
    mg_sched *heap;
    int heap_len, heap_cap;
    mg_cmd pending;           /* a command drained but not yet placed */
    int has_pending;
    mg_fifo *tap;
    mg_plan *retire[MG_MAX_RETIRE];
    int n_retire;
    float ceiling;
    uint32_t plan_gen;
    int ganging;              /* set by control before start */
    int fusing;               /* fused strip tails (mg_fuse; set by control before start) */
    int block;                /* [control] frames the pools of the plans it is
                                 handed are laid out for (mg_engine_set_block) */

    /* written by audio, read by any thread */
    _Atomic uint64_t time;
    _Atomic uint64_t blocks;
    _Atomic double load;
    _Atomic double mean_us;
    _Atomic double worst_us;       /* since the start */
    _Atomic double window_us;      /* since the last mg_engine_take_worst_us */
    _Atomic uint64_t xruns;
    _Atomic uint64_t late;
    _Atomic uint64_t nan_scrubbed;
    _Atomic uint64_t clipped;
    _Atomic uint64_t events_lost;
    _Atomic uint64_t heap_deferred;
    _Atomic double worst_swap_us;       /* most time one call spent on plan swaps */
    _Atomic double worst_swap_block_us; /* the worst call that swapped in a plan */
    _Atomic uint64_t swap_work;         /* items the last swap visited (see mg_stats) */
    _Atomic double last_swap_us;        /* the latest call that swapped: its swap time */
    _Atomic double last_swap_block_us;  /* ... and the whole call's */
    double swap_t;                      /* audio: this call's time on swaps so far */
    uint64_t swap_work_acc;             /* audio: this call's swap work so far */
    int swapped;                        /* audio: this call swapped in a plan */

    /* null backend */
    pthread_t null_thread;
    _Atomic int null_running;
    int null_block;
    int null_realtime;
    float *null_out;
    float *tap_scratch;       /* MG_MAX_BLOCK interleaved frames: the tap of a planar call */
    /* audio, one-thread steps: where a lone node's parameter ramps for the
     * sub-block are written (node_ramps), MG_RAMP_SCRATCH_PARAMS of them
     * packed by the sub-block's length: one buffer every step reuses, so a
     * moving parameter writes lines the cycle already holds, not its node's
     * own ramp_mem (a page of its own, cold and TLB-missing each cycle) */
    float *ramp_scratch;
    _Atomic(mg_midi *) midi;  /* MIDI maps and rings (csrc/midi.c); the control side frees it */

    /* several threads (csrc/workers.c): set by control before the engine runs */
    mg_workers *workers;      /* NULL: one thread, the old path */
    int threads;
    mg_cycle cycle;           /* the sub-block a cycle runs (audio) */
    /* audio: another cycle follows the current one at once (the rest of an
     * offline engine call, or of a period split at an event), so the
     * workers wait for it spinning (mg_workers_run) */
    int more_calls;           /* mg_engine_process_blocks: more blocks after this call */
    int more_chunks;          /* process_any: more frames after this chunk */
    int cycle_follows;        /* run_chunk: for run_plan */
    /* bench: each engine call's wall-clock us, while the log has room */
    _Atomic(double *) blog;
    int blog_cap;
    _Atomic int blog_n;
    /* bench (bench/jackd.py --trace): each call's timestamps and work, a
     * ring of the last ctrace_cap calls; NULL (off): one branch a call */
    _Atomic(mg_call_rec *) ctrace;
    uint32_t ctrace_cap;
    _Atomic uint64_t ctrace_n;     /* calls recorded since it was set */
    uint64_t pre_ns;               /* audio: the backend's callback began (mg_engine_call_begin) */
    uint32_t n_cmds;               /* audio: commands popped off the ring, ever */
    uint32_t n_applied;            /* audio: parameter sets and ramps applied, ever */
    uint32_t n_swaps;              /* audio: plans swapped in, ever */
    /* [control, before the audio thread runs] most "now" parameter sets and
     * ramps one call applies (mg_engine_set_cap_sets; 0: no limit) */
    uint32_t set_cap;
    _Atomic uint64_t sets_carried; /* calls that left sets for the next call */
    uint64_t tr_cpu_ns, tr_engine_ns, tr_drain_ns; /* audio: this call's, while tracing */
    uint32_t tr_cmds, tr_applied, tr_swaps;
};

/* What unconnected inputs read: mg_zeros, defined in layout.c (which points
 * the prebuilt calls at it), so that layout.c needs nothing of engine.c. */

/* Parameters a lone node may have for its ramps to go to the engine's
 * ramp_scratch (node_ramps); a node with more uses its own ramp_mem. */
#define MG_RAMP_SCRATCH_PARAMS 32
#define MG_RAMP_SCRATCH_BYTES ((size_t)MG_RAMP_SCRATCH_PARAMS * MG_MAX_BLOCK * sizeof(float))

mg_engine *mg_engine_new(double sample_rate, int hw_in_ch, int hw_out_ch,
                         int cmd_capacity, int heap_capacity)
{
    if (sample_rate < 1000.0 || sample_rate > 768000.0 || hw_in_ch < 0 ||
        hw_out_ch < 0 || hw_in_ch > 256 || hw_out_ch > 256)
        return NULL;
    mg_engine *e = mg_calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->sample_rate = sample_rate;
    e->hw_in_ch = hw_in_ch;
    e->hw_out_ch = hw_out_ch;
    e->ceiling = 1.0f;
    e->ganging = 1;
    e->fusing = 1;
    e->threads = 1;
    e->block = MG_MAX_BLOCK;
    /* read the zeros once here: their page must not fault on the audio thread */
    volatile float touch = 0.0f;
    for (size_t i = 0; i < MG_MAX_BLOCK; i += 256)
        touch += mg_zeros[i];
    (void)touch;
    e->hw_in = mg_calloc((size_t)hw_in_ch + 1, sizeof(float *));
    e->hw_out = mg_calloc((size_t)hw_out_ch + 1, sizeof(float *));
    e->hw_in_ptr = mg_calloc((size_t)hw_in_ch + 1, sizeof(float *));
    e->hw_out_ptr = mg_calloc((size_t)hw_out_ch + 1, sizeof(float *));
    for (int c = 0; c < hw_in_ch; c++)
        e->hw_in[c] = mg_calloc(MG_MAX_BLOCK, sizeof(float));
    for (int c = 0; c < hw_out_ch; c++)
        e->hw_out[c] = mg_calloc(MG_MAX_BLOCK, sizeof(float));
    e->tap_scratch = mg_calloc((size_t)MG_MAX_BLOCK * (size_t)(hw_out_ch + 1), sizeof(float));
    /* whole lines (a 64-frame ramp is 4 of them), from the node arena */
    e->ramp_scratch = mg_calloc_lines(MG_RAMP_SCRATCH_BYTES);
    e->heap_cap = heap_capacity > 16 ? heap_capacity : 16;
    e->heap = mg_calloc((size_t)e->heap_cap, sizeof(mg_sched));
    if (mg_ring_init(&e->cmd, cmd_capacity > 16 ? cmd_capacity : 16, sizeof(mg_cmd)) ||
        mg_ring_init(&e->ev, 4096, sizeof(mg_event)) || !e->heap || !e->ramp_scratch) {
        mg_engine_free(e);
        return NULL;
    }
    return e;
}

void mg_engine_free(mg_engine *e)
{
    if (!e)
        return;
    mg_null_stop(e);
    mg_workers_free(e->workers);
    for (int c = 0; c < e->hw_in_ch; c++)
        mg_free(e->hw_in[c]);
    for (int c = 0; c < e->hw_out_ch; c++)
        mg_free(e->hw_out[c]);
    mg_free(e->hw_in);
    mg_free(e->hw_out);
    mg_free(e->hw_in_ptr);
    mg_free(e->hw_out_ptr);
    mg_free(e->heap);
    mg_free(e->null_out);
    mg_free(e->tap_scratch);
    if (e->ramp_scratch)
        mg_free_lines(e->ramp_scratch, MG_RAMP_SCRATCH_BYTES);
    mg_ring_destroy(&e->cmd);
    mg_ring_destroy(&e->ev);
    /* Plans and nodes belong to the control side, which frees them. */
    mg_free(e);
}

double mg_engine_rate(mg_engine *e) { return e->sample_rate; }

/* [control] The planar hardware input buffer of channel c (engine lifetime). */
float *mg_engine_hw_in_buffer(mg_engine *e, int c)
{
    return (c >= 0 && c < e->hw_in_ch) ? e->hw_in[c] : NULL;
}

void mg_engine_set_ganging(mg_engine *e, int on)
{
    e->ganging = on != 0;
}

void mg_engine_set_fusing(mg_engine *e, int on)
{
    e->fusing = on != 0;
}

int mg_engine_set_threads(mg_engine *e, int threads)
{
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    if (threads == e->threads || atomic_load(&e->null_running))
        return e->threads;
    mg_workers_free(e->workers);
    e->workers = threads > 1 ? mg_workers_new(threads) : NULL;
    e->threads = mg_workers_threads(e->workers);
    return e->threads;
}

int mg_engine_threads(mg_engine *e) { return e->threads; }

int mg_plan_units(const mg_plan *p) { return p->par ? p->par->n_units : 0; }

int mg_plan_par_buffers(const mg_plan *p) { return p->par ? p->par->pool_slots : 0; }
int mg_plan_par_fold_buffers(const mg_plan *p) { return p->par ? p->par->fold_slots : 0; }

int mg_plan_par_folded(const mg_plan *p)
{
    int k = 0;
    for (int s = 0; p->par && s < p->n_steps; s++)
        k += p->par->fold_k[s] >= 0;
    return k;
}

int mg_plan_par_graph(const mg_plan *p, int *succ_first, int *succ, int *atom_first,
                      int *atom_step, int *atom_len, int *atom_kind, int cap)
{
    const mg_par *par = p->par;
    if (!par)
        return 0;
    if (par->succ_first[par->n_units] > cap || par->n_atoms > cap)
        return -1;
    for (int u = 0; u <= par->n_units; u++) {
        succ_first[u] = par->succ_first[u];
        atom_first[u] = par->unit_atom[u];
    }
    for (int i = 0; i < par->succ_first[par->n_units]; i++)
        succ[i] = par->succ[i];
    for (int i = 0; i < par->unit_atom[par->n_units]; i++) {
        const mg_atom *a = &par->atoms[par->atom_list[i]];
        atom_kind[i] = a->gang < 0 ? -1 : a->gang;
        atom_len[i] = a->len;
        atom_step[i] = a->first;
        if (a->gang < 0) { /* the step the segment feeds */
            const mg_mixop *op = &p->mix[par->pin[a->first]];
            int s = 0;
            while (s < p->n_steps && !(op >= &p->mix[p->steps[s].mix_first] &&
                                       op < &p->mix[p->steps[s].mix_first + p->steps[s].mix_count]))
                s++;
            atom_step[i] = s;
        }
    }
    return par->n_units;
}

int mg_plan_par_fused(const mg_plan *p, int *on)
{
    int k = 0;
    for (int i = 0; p->par && i < p->par->n_pfz; i++)
        k += p->par->pfz[i].on;
    if (on)
        *on = k;
    return p->par ? p->par->n_pfz : 0;
}

int mg_plan_fused_strips(const mg_plan *p, int *tails)
{
    int k = 0;
    for (int i = 0; i < p->n_fuse; i++)
        k += p->fuse[i].strips;
    if (tails)
        *tails = p->n_fuse;
    return k;
}

const char *mg_plan_step_type(const mg_plan *p, int step)
{
    return step >= 0 && step < p->n_steps ? p->steps[step].node->type->name : "";
}

int mg_engine_block_log(mg_engine *e, double *us, int cap)
{
    if (!us || cap < 1) {
        atomic_store(&e->blog, NULL);
        return atomic_load(&e->blog_n);
    }
    atomic_store(&e->blog, NULL);
    e->blog_cap = cap;
    atomic_store(&e->blog_n, 0);
    atomic_store(&e->blog, us);
    return 0;
}

void mg_engine_set_cap_sets(mg_engine *e, uint32_t n) { e->set_cap = n; }

uint64_t mg_engine_sets_carried(mg_engine *e) { return atomic_load(&e->sets_carried); }

uint64_t mg_engine_call_trace(mg_engine *e, mg_call_rec *rec, uint32_t cap)
{
    if (!rec || cap < 1) {
        atomic_store(&e->ctrace, NULL);
        return atomic_load(&e->ctrace_n);
    }
    atomic_store(&e->ctrace, NULL);
    e->ctrace_cap = cap;
    atomic_store(&e->ctrace_n, 0);
    atomic_store(&e->ctrace, rec);
    return 0;
}

static inline uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* a system call: only while tracing */
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The CPU this thread runs on, for the trace: Linux keeps it in TSC_AUX
 * (cpu | node << 12), which rdtscp reads without a system call; -1 elsewhere. */
static inline int trace_cpu(void)
{
#if defined(__x86_64__)
    unsigned int aux = 0;
    (void)__builtin_ia32_rdtscp(&aux);
    return (int)(aux & 0xfff);
#else
    return -1;
#endif
}

static inline uint64_t trace_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void mg_engine_call_begin(mg_engine *e)
{
    if (__builtin_expect(atomic_load_explicit(&e->ctrace, memory_order_relaxed) == NULL, 1))
        return;
    e->pre_ns = trace_ns();
    e->tr_cpu_ns = thread_cpu_ns();
    e->tr_cmds = e->n_cmds;
    e->tr_applied = e->n_applied;
    e->tr_swaps = e->n_swaps;
}

/* process_any's part of the call trace: at its start (t0_ns) ... */
static void trace_enter(mg_engine *e, uint64_t t0_ns)
{
    if (!e->pre_ns) /* no backend callback marked the start: the call's */
        mg_engine_call_begin(e);
    e->tr_engine_ns = t0_ns;
    e->tr_drain_ns = 0;
}

/* ... and at its end: one record */
static void trace_leave(mg_engine *e, mg_call_rec *ring, unsigned long nframes)
{
    const uint64_t end = trace_ns(), cpu = thread_cpu_ns();
    const uint64_t k = atomic_load_explicit(&e->ctrace_n, memory_order_relaxed);
    mg_call_rec *r = &ring[k % e->ctrace_cap];
    const uint64_t s = e->pre_ns ? e->pre_ns : e->tr_engine_ns;
    r->start_ns = s;
    r->engine_ns = (uint32_t)(e->tr_engine_ns > s ? e->tr_engine_ns - s : 0);
    r->drain_ns = (uint32_t)(e->tr_drain_ns > s ? e->tr_drain_ns - s : 0);
    r->end_ns = (uint32_t)(end - s);
    r->cpu_ns = (uint32_t)(cpu - e->tr_cpu_ns);
    r->cmds = e->n_cmds - e->tr_cmds;
    r->applied = e->n_applied - e->tr_applied;
    r->swaps = e->n_swaps - e->tr_swaps;
    r->frames = (uint16_t)nframes;
    r->cpu = (int16_t)trace_cpu();
    atomic_store_explicit(&e->ctrace_n, k + 1, memory_order_release);
    e->pre_ns = 0;
}

void mg_engine_quiesce(mg_engine *e)
{
    while (!mg_workers_quiet(e->workers))
        sched_yield();
}

int mg_engine_set_sched(mg_engine *e, double spin_us, double min_work_us)
{
    if (!e->workers)
        return -1;
    mg_workers_sched(e->workers, spin_us, min_work_us);
    return 0;
}

int mg_engine_set_spin_adapt(mg_engine *e, int on)
{
    if (!e->workers)
        return -1;
    mg_workers_spin_adapt(e->workers, on);
    return 0;
}

int mg_engine_par_stats(mg_engine *e, uint64_t *v, int cap)
{
    return e->workers ? mg_workers_stats(e->workers, v, cap) : 0;
}

int mg_engine_trace(mg_engine *e, int on) { return e->workers ? mg_workers_trace(e->workers, on) : -1; }

int mg_engine_trace_read(mg_engine *e, double *t, int *kind, int *thread, int *arg, int cap)
{
    return e->workers ? mg_workers_trace_read(e->workers, t, kind, thread, arg, cap) : -1;
}

/* [control] A plan about to go to the engine: its pool laid out for the
 * engine's block (mg_plan_layout), and with workers its parallel form
 * (csrc/pool.c), once. Without one (too many units, no memory) it runs on
 * one thread. 0 ok, -1 no memory for the pool. */
static int prepare_plan(mg_engine *e, int kind, void *ptr)
{
    if (kind != MG_CMD_PLAN || !ptr)
        return 0;
    mg_plan *p = ptr;
    if (!p->finished)
        return 0;
    if (p->block != mg_block_frames(e->block)) {
        if (mg_plan_layout(p, e->block) != 0)
            return -1;
        mg_par_free(p->par); /* laid out for the old pool's block */
        p->par = NULL;
    }
    if (e->workers && !p->par)
        p->par = mg_par_build(p, e->threads);
    return 0;
}

int mg_engine_set_block(mg_engine *e, int frames)
{
    e->block = mg_block_frames(frames);
    return e->block;
}

int mg_engine_block(mg_engine *e) { return e->block; }

void mg_engine_hw_channels(mg_engine *e, int *in, int *out)
{
    *in = e->hw_in_ch;
    *out = e->hw_out_ch;
}

uint64_t mg_engine_time(mg_engine *e)
{
    return atomic_load_explicit(&e->time, memory_order_acquire);
}

void mg_engine_set_ceiling(mg_engine *e, float amplitude)
{
    /* +Inf: no ceiling (offline renders to float files); FLT_MAX keeps the
     * safety stage's check failing on Inf, so NaN and Inf are still scrubbed */
    if (isinf(amplitude) && amplitude > 0.0f)
        e->ceiling = FLT_MAX;
    else if (isfinite(amplitude) && amplitude > 0.0f)
        e->ceiling = amplitude;
}

int mg_lock_memory(void)
{
    return mlockall(MCL_CURRENT | MCL_FUTURE) == 0 ? 0 : errno;
}

void mg_engine_add_xruns(mg_engine *e, uint64_t n)
{
    atomic_fetch_add_explicit(&e->xruns, n, memory_order_relaxed);
}

int mg_push(mg_engine *e, const mg_cmd *cmd)
{
    if (prepare_plan(e, cmd->kind, cmd->ptr) != 0)
        return -1; /* no memory for the plan's pool: not a full ring */
    return mg_ring_push(&e->cmd, cmd);
}

int mg_push_cmd(mg_engine *e, uint64_t time, int kind, int index, float value, void *ptr)
{
    if (prepare_plan(e, kind, ptr) != 0)
        return -1; /* no memory for the plan's pool: not a full ring */
    mg_cmd c = {time, kind, index, value, ++e->push_seq, ptr, 0, 0};
    return mg_ring_push(&e->cmd, &c);
}

int mg_push_ramp(mg_engine *e, uint64_t time, void *ptr, int index, float target,
                 int frames, int curve)
{
    mg_cmd c = {time, MG_CMD_RAMP, index, target, ++e->push_seq, ptr, frames, curve};
    return mg_ring_push(&e->cmd, &c);
}

double mg_taper_value(int taper, double lo, double hi, double norm)
{
    return mg_taper_to_value(taper, lo, hi, norm);
}

double mg_taper_norm(int taper, double lo, double hi, double value)
{
    return mg_taper_to_norm(taper, lo, hi, value);
}

double mg_ramp_curve(int curve, double t)
{
    return mg_curve_at(curve, t);
}

double mg_node_param_now(mg_node *n, int index)
{
    if (index < 0 || index >= n->type->n_params)
        return 0.0;
    const mg_param_spec *s = &n->type->params[index];
    const mg_param *p = &n->params[index];
    if (p->remaining <= 0)
        return p->target_unit;
    if (p->ramp)
        return mg_taper_to_value(s->taper, s->min, s->max, p->pos);
    return mg_node_to_unit(s->map, p->cur);
}

int mg_cmd_space(mg_engine *e)
{
    return mg_ring_space(&e->cmd);
}

int mg_poll(mg_engine *e, mg_event *ev)
{
    return mg_ring_pop(&e->ev, ev);
}

void mg_engine_stats(mg_engine *e, mg_stats *o)
{
    o->time = atomic_load(&e->time);
    o->blocks = atomic_load(&e->blocks);
    o->load = atomic_load(&e->load);
    o->mean_us = atomic_load(&e->mean_us);
    o->worst_us = atomic_load(&e->worst_us);
    o->xruns = atomic_load(&e->xruns);
    o->late = atomic_load(&e->late);
    o->nan_scrubbed = atomic_load(&e->nan_scrubbed);
    o->clipped = atomic_load(&e->clipped);
    o->events_lost = atomic_load(&e->events_lost);
    o->rt_allocs = mg_rt_alloc_count();
    o->heap_deferred = atomic_load(&e->heap_deferred);
    o->worst_swap_us = atomic_load(&e->worst_swap_us);
    o->worst_swap_block_us = atomic_load(&e->worst_swap_block_us);
    o->swap_work = atomic_load(&e->swap_work);
    o->last_swap_us = atomic_load(&e->last_swap_us);
    o->last_swap_block_us = atomic_load(&e->last_swap_block_us);
    o->running = atomic_load(&e->null_running) ? (e->null_realtime ? 2 : 1) : 0;
}

double mg_engine_take_worst_us(mg_engine *e)
{
    return atomic_exchange(&e->window_us, 0.0);
}

/* ---- audio thread helpers ---------------------------------------- */

static inline double mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void post_event(mg_engine *e, int32_t kind, int32_t index, int64_t value, void *ptr)
{
    mg_event ev = {atomic_load_explicit(&e->time, memory_order_relaxed), kind, index, value, ptr};
    if (!mg_ring_push(&e->ev, &ev))
        atomic_fetch_add_explicit(&e->events_lost, 1, memory_order_relaxed);
}

static void retire_plan(mg_engine *e, mg_plan *old)
{
    if (!old)
        return;
    if (!mg_workers_quiet(e->workers)) { /* a worker still leaving a cycle */
        if (e->n_retire < MG_MAX_RETIRE)
            e->retire[e->n_retire++] = old; /* retried next block */
        else
            atomic_fetch_add_explicit(&e->events_lost, 1, memory_order_relaxed);
        return;
    }
    mg_event ev = {atomic_load_explicit(&e->time, memory_order_relaxed),
                   MG_EV_PLAN_RETIRED, 0, (int64_t)old->gen, old};
    if (!mg_ring_push(&e->ev, &ev)) {
        if (e->n_retire < MG_MAX_RETIRE)
            e->retire[e->n_retire++] = old; /* retried next block */
        else
            atomic_fetch_add_explicit(&e->events_lost, 1, memory_order_relaxed);
    }
}

static void flush_retired(mg_engine *e)
{
    if (e->n_retire > 0 && !mg_workers_quiet(e->workers))
        return;
    while (e->n_retire > 0) {
        mg_plan *p = e->retire[0];
        mg_event ev = {atomic_load_explicit(&e->time, memory_order_relaxed),
                       MG_EV_PLAN_RETIRED, 0, (int64_t)p->gen, p};
        if (!mg_ring_push(&e->ev, &ev))
            return;
        for (int i = 1; i < e->n_retire; i++)
            e->retire[i - 1] = e->retire[i];
        e->n_retire--;
    }
}

static inline int sched_less(const mg_cmd *a, const mg_cmd *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void heap_push(mg_engine *e, const mg_cmd *c)
{
    int i = e->heap_len++;
    e->heap[i].cmd = *c;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!sched_less(&e->heap[i].cmd, &e->heap[parent].cmd))
            break;
        mg_sched t = e->heap[i];
        e->heap[i] = e->heap[parent];
        e->heap[parent] = t;
        i = parent;
    }
}

static void heap_sift_down(mg_engine *e, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_len && sched_less(&e->heap[l].cmd, &e->heap[m].cmd))
            m = l;
        if (r < e->heap_len && sched_less(&e->heap[r].cmd, &e->heap[m].cmd))
            m = r;
        if (m == i)
            return;
        mg_sched t = e->heap[i];
        e->heap[i] = e->heap[m];
        e->heap[m] = t;
        i = m;
    }
}

static void heap_pop(mg_engine *e)
{
    e->heap[0] = e->heap[--e->heap_len];
    heap_sift_down(e, 0);
}

static void heap_rebuild(mg_engine *e)
{
    for (int i = e->heap_len / 2 - 1; i >= 0; i--)
        heap_sift_down(e, i);
}

static void apply_param(mg_engine *e, mg_node *n, int index, float v);

void mg_engine_set_midi(mg_engine *e, mg_midi *m) { atomic_store(&e->midi, m); }

mg_midi *mg_engine_midi(mg_engine *e) { return atomic_load_explicit(&e->midi, memory_order_acquire); }

float mg_node_param_target(const mg_node *n, int index)
{
    if (index < 0 || index >= n->type->n_params)
        return 0.0f;
    return n->params[index].target_unit;
}

int mg_engine_schedule_param(mg_engine *e, mg_node *n, int index, float v, uint64_t time)
{
    if (!e->plan || n->live_gen != e->plan->gen)
        return -1; /* not (or no longer) playing: nothing to move */
    const uint64_t now = atomic_load_explicit(&e->time, memory_order_relaxed);
    if (time <= now || e->heap_len >= e->heap_cap) {
        apply_param(e, n, index, v);
        return 0;
    }
    mg_cmd c = {.time = time, .kind = MG_CMD_PARAM, .index = index, .value = v,
                .seq = UINT32_MAX, .ptr = n};
    heap_push(e, &c);
    return 1;
}

/* Apply a parameter target: clamp, map to the node domain, set up the ramp. */
static void apply_param(mg_engine *e, mg_node *n, int index, float v)
{
    if (index < 0 || index >= n->type->n_params || !isfinite(v))
        return;
    e->n_applied++;
    const mg_param_spec *s = &n->type->params[index];
    if (v < s->min)
        v = s->min;
    if (v > s->max)
        v = s->max;
    mg_param *p = &n->params[index];
    n->pv_fresh = 0;
    n->pv_dirty |= index < 64 ? 1ull << index : 0;
    p->target_unit = v;
    float tgt = s->map == MG_MAP_DB ? mg_db_to_amp(v) : v;
    int ns = (int)(s->smooth_ms * 0.001 * e->sample_rate + 0.5);
    if (p->remaining > 0)
        n->n_ramping--;
    p->ramp = 0; /* a set takes over from a ramp where it has got to (cur) */
    p->tgt = tgt;
    if (ns <= 1 || p->cur == tgt) {
        p->cur = tgt;
        p->remaining = 0;
    } else {
        int geo = (s->map == MG_MAP_DB || s->map == MG_MAP_LOG) && p->cur > 0.0f && tgt > 0.0f;
        p->geometric = geo;
        p->step = geo ? pow((double)tgt / p->cur, 1.0 / ns) : ((double)tgt - p->cur) / ns;
        p->remaining = ns;
        p->total = ns;
        p->base = p->cur;
        if (geo) { /* samples 1..4 of the ramp, one chain each (node_ramps) */
            p->lane[0] = p->cur * p->step;
            p->lane[1] = p->lane[0] * p->step;
            p->lane[2] = p->lane[1] * p->step;
            p->lane[3] = p->lane[2] * p->step;
            p->step4 = (p->step * p->step) * (p->step * p->step);
        }
        n->n_ramping++;
    }
    if (n->type->on_param)
        n->type->on_param(n->state, index, tgt);
}

/* Start a taper ramp (MG_CMD_RAMP): from the parameter's taper position now
 * (a ramp's exact position, else the value it has reached) to the target's,
 * over `frames` samples; node_ramps evaluates the taper at every sample. */
static void apply_ramp(mg_engine *e, mg_node *n, int index, float v, int frames, int curve)
{
    if (index < 0 || index >= n->type->n_params || !isfinite(v))
        return;
    const mg_param_spec *s = &n->type->params[index];
    if (frames <= 0 || s->taper == MG_TAPER_STEP) {
        apply_param(e, n, index, v);
        return;
    }
    mg_param *p = &n->params[index];
    double p0;
    if (p->remaining > 0 && p->ramp)
        p0 = p->pos;
    else if (p->remaining > 0)
        p0 = mg_taper_to_norm(s->taper, s->min, s->max, mg_node_to_unit(s->map, p->cur));
    else
        p0 = mg_taper_to_norm(s->taper, s->min, s->max, p->target_unit);
    v = v < s->min ? s->min : v > s->max ? s->max : v;
    e->n_applied++;
    n->pv_fresh = 0;
    n->pv_dirty |= index < 64 ? 1ull << index : 0;
    if (p->remaining <= 0)
        n->n_ramping++;
    p->target_unit = v;
    p->tgt = s->map == MG_MAP_DB ? mg_db_to_amp(v) : v;
    p->ramp = 1;
    p->curve = curve;
    p->total = frames;
    p->remaining = frames;
    p->p0 = p0;
    p->pos = p0;
    p->p1 = mg_taper_to_norm(s->taper, s->min, s->max, v);
    if (n->type->on_param)
        n->type->on_param(n->state, index, p->tgt);
}

/* How far ahead apply_plan fetches the nodes and edges it visits. */
#define MG_SWAP_AHEAD 16

static void apply_plan(mg_engine *e, mg_plan *p)
{
    const double t0 = mono_us();
    uint64_t work = 0;
    mg_plan *old = e->plan;
    e->plan = p;
    e->n_swaps++;
    if (p) {
        /* nodes and edges are separate allocations, cold here on a big
         * graph (its nodes outgrow the cache, and a steady block reads no
         * edge): fetch a few ahead, so the swap is not one miss at a time */
        for (int i = 0; i < p->n_steps; i++) {
            if (i + MG_SWAP_AHEAD < p->n_steps)
                __builtin_prefetch(&p->steps[i + MG_SWAP_AHEAD].node->live_gen, 1);
            p->steps[i].node->live_gen = p->gen;
        }
        p->n_fading = 0;
        for (int i = 0; i < p->edges_used; i++) {
            if (i + MG_SWAP_AHEAD < p->edges_used)
                __builtin_prefetch(p->edges[i + MG_SWAP_AHEAD], 1);
            mg_edge *ed = p->edges[i];
            ed->live_gen = p->gen;
            ed->listed = ed->remaining > 0 || ed->g0 != ed->gain || ed->g1 != ed->gain ||
                         ed->ramp_n > 0;
            if (ed->listed)
                p->fading[p->n_fading++] = ed;
        }
        p->ops_stale = 1;
        /* drop scheduled events for nodes that left the graph */
        int w = 0;
        for (int i = 0; i < e->heap_len; i++) {
            const mg_cmd *c = &e->heap[i].cmd;
            if ((c->kind == MG_CMD_PARAM || c->kind == MG_CMD_RESET ||
                 c->kind == MG_CMD_RAMP) &&
                ((mg_node *)c->ptr)->live_gen != p->gen)
                continue;
            e->heap[w++] = e->heap[i];
        }
        if (w != e->heap_len) {
            e->heap_len = w;
            heap_rebuild(e);
        }
        work += (uint64_t)p->n_steps + (uint64_t)p->edges_used;
    }
    retire_plan(e, old);
    e->swapped = 1;
    e->swap_work_acc = work;
    e->swap_t += mono_us() - t0;
}

static void apply_now(mg_engine *e, const mg_cmd *c)
{
    switch (c->kind) {
    case MG_CMD_PARAM:
        apply_param(e, (mg_node *)c->ptr, c->index, c->value);
        break;
    case MG_CMD_RAMP:
        apply_ramp(e, (mg_node *)c->ptr, c->index, c->value, c->frames, c->curve);
        break;
    case MG_CMD_RESET: {
        mg_node *n = (mg_node *)c->ptr;
        if (n->type->reset)
            n->type->reset(n->state);
        break;
    }
    case MG_CMD_SYNC:
        post_event(e, MG_EV_SYNC, c->index, 0, NULL);
        break;
    default:
        break;
    }
}

/* Drain the command ring at a block boundary. Timed events go to the
 * scheduler; edges, plans and taps apply at once. */
static void drain_commands(mg_engine *e, uint64_t now)
{
    uint32_t sets = 0; /* "now" parameter sets and ramps taken in this call */
    for (;;) {
        mg_cmd c;
        if (e->has_pending) {
            c = e->pending;
        } else if (!mg_ring_pop(&e->cmd, &c)) {
            return;
        } else {
            e->n_cmds++;
        }
        e->has_pending = 0;
        if (e->set_cap && c.time == MG_TIME_NOW &&
            (c.kind == MG_CMD_PARAM || c.kind == MG_CMD_RAMP) && ++sets > e->set_cap) {
            /* this call has applied its share: the rest waits for the next
             * call, in order (a plan or edge behind them waits too) */
            e->pending = c;
            e->has_pending = 1;
            atomic_fetch_add_explicit(&e->sets_carried, 1, memory_order_relaxed);
            return;
        }
        switch (c.kind) {
        case MG_CMD_EDGE: {
            mg_edge *ed = (mg_edge *)c.ptr;
            int ns = c.index > 0 ? c.index : 1;
            ed->target = c.value;
            ed->step = (c.value - ed->gain) / (float)ns;
            ed->remaining = ns;
            /* time = frames to hold the gain first (see MG_CMD_EDGE) */
            ed->hold = c.time > (uint64_t)(1 << 24) ? (1 << 24) : (int)c.time;
            /* an edge not in the current plan is listed when its plan comes */
            if (!ed->listed && e->plan && ed->live_gen == e->plan->gen &&
                e->plan->n_fading < e->plan->n_edges) {
                ed->listed = 1;
                e->plan->fading[e->plan->n_fading++] = ed;
                e->plan->ops_stale = 1;
            }
            break;
        }
        case MG_CMD_PLAN:
            apply_plan(e, (mg_plan *)c.ptr);
            break;
        case MG_CMD_TAP:
            e->tap = (mg_fifo *)c.ptr;
            break;
        default:
            if (c.time != MG_TIME_NOW && c.time < now) {
                atomic_fetch_add_explicit(&e->late, 1, memory_order_relaxed);
                post_event(e, MG_EV_LATE, c.kind, (int64_t)(now - c.time), c.ptr);
                c.time = now;
            }
            if (c.time == MG_TIME_NOW)
                c.time = now;
            if (e->heap_len >= e->heap_cap && c.time <= now) {
                /* scheduler full of later events, and this one is due now:
                 * apply what is due before it (in order), then it, so that
                 * future events can never hold up a command for now */
                while (e->heap_len > 0 && e->heap[0].cmd.time <= now) {
                    mg_cmd d = e->heap[0].cmd;
                    heap_pop(e);
                    apply_now(e, &d);
                }
                if (e->heap_len >= e->heap_cap) {
                    apply_now(e, &c);
                    break;
                }
            }
            if (e->heap_len >= e->heap_cap) {
                /* scheduler full: keep it and stop draining (FIFO order kept) */
                e->pending = c;
                e->has_pending = 1;
                atomic_fetch_add_explicit(&e->heap_deferred, 1, memory_order_relaxed);
                return;
            }
            heap_push(e, &c);
            break;
        }
    }
}

/* A taper ramp's values for the n frames of this sub-block into r (node
 * domain); returns the last. Sample j of the ramp (1..total) is the taper at
 * position p0 + (p1 - p0) * curve(j / total); the last sample is the target.
 * A linear-curve stretch that stays within one segment of the taper is a
 * geometric (dB or log value) or arithmetic sequence: its ends are evaluated
 * exactly and the samples between follow the sequence (the same values to
 * within double rounding); anything else is evaluated at every sample. */
static double taper_ramp(mg_node *nd, int k, mg_param *pr, float *r, int n)
{
    const mg_param_spec *s = &nd->type->params[k];
    const double lo = s->min, hi = s->max, p0 = pr->p0, dp = pr->p1 - pr->p0;
    const double tot = (double)pr->total;
    const int m = pr->remaining < n ? pr->remaining : n; /* ramp samples in this call */
    const int last = m == pr->remaining;                 /* the ramp ends here */
    const int mm = last ? m - 1 : m;                     /* samples from the formula */
    const int j0 = pr->total - pr->remaining;            /* ramp samples already done */
    double cur = pr->cur;
    int done = 0;
    if (pr->curve == MG_CURVE_LINEAR && mm >= 3) {
        const double pa = p0 + dp * ((double)(j0 + 1) / tot);
        const double pb = p0 + dp * ((double)(j0 + mm) / tot);
        int same = 1;
        if (s->taper == MG_TAPER_FADER) {
            double ns[6];
            double ds[6];
            int np = mg_fader_law(lo, hi, ns, ds);
            int sa = 0, sb = 0;
            while (sa < np - 2 && ns[sa + 1] <= pa)
                sa++;
            while (sb < np - 2 && ns[sb + 1] <= pb)
                sb++;
            same = sa == sb;
        }
        if (same) {
            const double va = mg_unit_to_node(s->map, mg_taper_to_value(s->taper, lo, hi, pa));
            const double vb = mg_unit_to_node(s->map, mg_taper_to_value(s->taper, lo, hi, pb));
            const int geo = s->map == MG_MAP_DB || (s->taper == MG_TAPER_LOG && lo > 0.0);
            if (!geo) {
                const double step = (vb - va) / (double)(mm - 1);
                for (int i = 0; i < mm; i++)
                    r[i] = (float)(va + step * (double)i);
                cur = vb;
                done = 1;
            } else if (va > 0.0 && vb > 0.0) {
                const double q = pow(vb / va, 1.0 / (double)(mm - 1));
                double x = va;
                for (int i = 0; i < mm - 1; i++, x *= q)
                    r[i] = (float)x;
                r[mm - 1] = (float)vb;
                cur = vb;
                done = 1;
            }
        }
    }
    if (!done && s->taper == MG_TAPER_FADER && hi > lo) {
        /* mg_taper_to_value's fader branch, its breakpoints built once */
        double ns[6];
        double ds[6];
        const int np = mg_fader_law(lo, hi, ns, ds);
        for (int i = 0; i < mm; i++) {
            double pos = p0 + dp * mg_curve_at(pr->curve, (double)(j0 + 1 + i) / tot);
            pos = pos < 0.0 ? 0.0 : pos > 1.0 ? 1.0 : pos;
            cur = mg_unit_to_node(s->map, mg_interp(pos, ns, ds, np));
            r[i] = (float)cur;
        }
        done = 1;
    }
    if (!done) {
        for (int i = 0; i < mm; i++) {
            double pos = p0 + dp * mg_curve_at(pr->curve, (double)(j0 + 1 + i) / tot);
            cur = mg_unit_to_node(s->map, mg_taper_to_value(s->taper, lo, hi, pos));
            r[i] = (float)cur;
        }
    }
    pr->remaining -= m;
    if (last) {
        pr->pos = pr->p1;
        cur = pr->tgt;
        r[m - 1] = pr->tgt;
        pr->ramp = 0;
        nd->n_ramping--;
        for (int i = m; i < n; i++)
            r[i] = pr->tgt;
    } else {
        pr->pos = p0 + dp * mg_curve_at(pr->curve, (double)(j0 + m) / tot);
    }
    pr->cur = cur;
    return cur;
}

/* A smoothing ramp's values for the n frames of this sub-block into r (node
 * domain); returns the last. Sample k of the ramp (1..total) is base + step
 * * k (linear) or the geometric sequence cur * step^k kept as four chains
 * (mg_param's lane); its last sample is the target exactly, and the frames
 * after it hold the target. Each sample depends on k alone, so the values do
 * not depend on where blocks split the ramp, and no sample waits on the one
 * before it (one chain of n dependent multiplies per parameter was the
 * cost of a fader move). */
typedef double mg_v4d __attribute__((vector_size(32)));
typedef float mg_v4f __attribute__((vector_size(16)));

MG_HOT static double smooth_ramp(mg_node *nd, mg_param *pr, float *r, int n)
{
    const int m = pr->remaining < n ? pr->remaining : n; /* ramp samples here */
    const int k0 = pr->total - pr->remaining;            /* samples already done */
    double cur = pr->cur;
    if (pr->geometric) {
        const double s4 = pr->step4;
        int i = 0;
        /* to a chain boundary (k0 + i a multiple of 4), one sample at a time */
        for (; i < m && ((k0 + i) & 3); i++) {
            double *l = &pr->lane[(k0 + i) & 3];
            cur = *l;
            r[i] = (float)cur;
            *l = cur * s4;
        }
        /* the four chains side by side: one multiply, one conversion and
         * one store per four samples (each conversion rounds as (float) does) */
        mg_v4d v = {pr->lane[0], pr->lane[1], pr->lane[2], pr->lane[3]};
        for (; i + 4 <= m; i += 4) {
            const mg_v4f f = __builtin_convertvector(v, mg_v4f);
            memcpy(r + i, &f, sizeof f);
            cur = v[3];
            v *= s4;
        }
        pr->lane[0] = v[0], pr->lane[1] = v[1], pr->lane[2] = v[2], pr->lane[3] = v[3];
        for (; i < m; i++) {
            double *l = &pr->lane[(k0 + i) & 3];
            cur = *l;
            r[i] = (float)cur;
            *l = cur * s4;
        }
    } else {
        const double base = pr->base, step = pr->step;
        for (int i = 0; i < m; i++)
            r[i] = (float)(base + step * (double)(k0 + i + 1));
        if (m > 0)
            cur = base + step * (double)(k0 + m);
    }
    pr->remaining -= m;
    if (pr->remaining == 0) {
        cur = pr->tgt; /* the last sample is the target, exactly */
        if (m > 0)
            r[m - 1] = pr->tgt;
        nd->n_ramping--;
    }
    for (int i = m; i < n; i++)
        r[i] = pr->tgt;
    pr->cur = cur;
    return cur;
}

/* A taper ramp's position (unclamped) at sample j of its ramp (1..total). */
static inline double ctl_taper_pos(const mg_param *pr, long j)
{
    return pr->p0 + (pr->p1 - pr->p0) * mg_curve_at(pr->curve, (double)j / (double)pr->total);
}

/* A taper ramp's value (node domain) at position pos (ctl_taper_pos). */
static inline double ctl_taper_value(const mg_param *pr, double pos)
{
    const mg_param_spec *s = pr->spec;
    pos = pos < 0.0 ? 0.0 : pos > 1.0 ? 1.0 : pos;
    return mg_unit_to_node(s->map, mg_taper_to_value(s->taper, s->min, s->max, pos));
}

/* A moving parameter's value (node domain) at sample j of its ramp or
 * smoothing (1..total; at or past total: the target), in closed form: the
 * taper at position p0 + (p1 - p0) * curve(j / total) for a taper ramp (as
 * taper_ramp's formula), base + step * j or base * step^j for a smoothing.
 * Depends on j alone, so not on where calls split the ramp. */
static double ctl_value(const mg_param *pr, int taper, long j)
{
    if (j >= pr->total)
        return pr->tgt;
    if (j < 0)
        j = 0;
    if (taper)
        return ctl_taper_value(pr, ctl_taper_pos(pr, j));
    if (pr->geometric)
        return pr->base * pow(pr->step, (double)j);
    return pr->base + pr->step * (double)j;
}

double mg_ctl_at(const mg_ctl *c, int i)
{
    const mg_param *pr = c;
    return ctl_value(pr, pr->at_taper, (long)pr->total - pr->at0 + 1 + i);
}

double mg_param_ahead(mg_node *n, int index, int ahead)
{
    if (index < 0 || index >= n->type->n_params)
        return NAN;
    const mg_param *pr = &n->params[index];
    if (pr->remaining <= 0)
        return pr->cur;
    return ctl_value(pr, pr->ramp, (long)pr->total - pr->remaining + 1 + ahead);
}

/* A MG_PARAM_CONTROL parameter's ramp over a call of n frames: no values are
 * written, the call's start is kept for mg_ctl_at, and the ramp advances to
 * the call's last frame (returned: pv.value). Its cost is one evaluation of
 * the formula a call, whatever n. */
static double ctl_advance(mg_node *nd, mg_param *pr, int n)
{
    const int m = pr->remaining < n ? pr->remaining : n;
    const long j = (long)pr->total - pr->remaining + m; /* the call's last ramp sample */
    pr->at0 = pr->remaining;
    pr->at_taper = pr->ramp;
    pr->remaining -= m;
    double cur;
    if (pr->remaining == 0) {
        cur = pr->tgt;
        if (pr->ramp)
            pr->pos = pr->p1;
        pr->ramp = 0;
        nd->n_ramping--;
    } else if (pr->ramp) { /* (0 <= j < total) the position once, for the value and pos */
        pr->pos = ctl_taper_pos(pr, j);
        cur = ctl_taper_value(pr, pr->pos);
    } else {
        cur = ctl_value(pr, 0, j);
    }
    pr->cur = cur;
    return cur;
}

/* One parameter's pv[] entry for a sub-block of n frames (node_ramps):
 * steady, or its ramp's values (a MG_PARAM_CONTROL one: evaluated where the
 * node reads it). Returns 1 when it moves in this call. */
static inline int param_step(mg_node *nd, int k, int n, float *base, size_t stride)
{
    mg_param *pr = &nd->params[k];
    nd->pv[k].ramp = NULL;
    nd->pv[k].ctl = NULL;
    if (pr->remaining <= 0) {
        nd->pv[k].value = (float)pr->cur;
        return 0;
    }
    if (pr->control) {
        nd->pv[k].ctl = pr;
        nd->pv[k].value = (float)ctl_advance(nd, pr, n);
        return 1;
    }
    float *r = base + (size_t)k * stride;
    double cur;
    if (pr->ramp)
        cur = taper_ramp(nd, k, pr, r, n);
    else
        cur = smooth_ramp(nd, pr, r, n);
    nd->pv[k].ramp = r;
    nd->pv[k].value = (float)cur;
    return 1;
}

/* Advance a node's parameter ramps for a sub-block of n frames (run_plan
 * calls it at the node's step, where its struct is being read anyway). The
 * ramp values (pv[k].ramp, read only by this step's process or fold) go to
 * `scratch` when given and the node has at most MG_RAMP_SCRATCH_PARAMS
 * parameters, packed at a stride of n rounded up to whole lines; else to
 * the node's own ramp_mem (gang members, whose ramps must all live until
 * their one call, and the parallel form's threads). */
static inline void node_ramps(mg_node *nd, int n, float *scratch)
{
    if (nd->n_ramping == 0) {
        nd->pv_same = nd->pv_fresh;
        if (!nd->pv_fresh) {
            const int np = nd->type->n_params;
            for (int k = 0; k < np; k++) {
                nd->pv[k].ramp = NULL;
                nd->pv[k].ctl = NULL;
                nd->pv[k].value = (float)nd->params[k].cur;
            }
            nd->pv_fresh = 1;
            nd->pv_dirty = 0;
        }
        return;
    }
    nd->pv_same = 0;
    nd->pv_fresh = 0;
    const int np = nd->type->n_params;
    const int packed = scratch && np <= MG_RAMP_SCRATCH_PARAMS;
    const size_t stride = packed ? ((size_t)n + 15) & ~(size_t)15 : MG_MAX_BLOCK;
    float *const base = packed ? scratch : nd->ramp_mem;
    /* the parameters to visit: with at most 64, those set or moving since
     * their pv[] entry was last made steady (a whole-desk fade moves 9 of an
     * eq8's 46: the others' mg_param, a cache line each, stay untouched) */
    if (np <= 64) {
        uint64_t left = nd->pv_dirty, keep = 0;
        while (left) {
            const int k = __builtin_ctzll(left);
            left &= left - 1;
            if (param_step(nd, k, n, base, stride))
                keep |= 1ull << k; /* its pv[] entry moves this call */
        }
        nd->pv_dirty = keep;
    } else {
        for (int k = 0; k < np; k++)
            param_step(nd, k, n, base, stride);
    }
}

/* Advance the edge fades for a sub-block of n frames: only the edges on the
 * plan's fading list; one that has settled (g0 == g1 == gain) leaves it. */
static void advance_fades(mg_plan *p, int n)
{
    for (int k = 0; k < p->n_fading;) {
        mg_edge *ed = p->fading[k];
        ed->g0 = ed->gain;
        ed->ramp_n = 0;
        if (ed->remaining > 0) {
            int h = ed->hold < n ? ed->hold : n; /* the fade waits h more frames */
            ed->hold -= h;
            int m = ed->remaining < n - h ? ed->remaining : n - h;
            if (m > 0) {
                ed->remaining -= m;
                ed->ramp_at = h;
                ed->ramp_n = m;
                ed->gain = ed->remaining == 0 ? ed->target : ed->gain + ed->step * (float)m;
                atomic_store_explicit(&ed->published, ed->gain, memory_order_relaxed);
            }
        }
        ed->g1 = ed->gain;
        if (ed->remaining <= 0 && ed->ramp_n == 0) {
            ed->listed = 0;
            p->fading[k] = p->fading[--p->n_fading];
            p->ops_stale = 1;
            continue;
        }
        k++;
    }
}

/* Whether a fused strip tail (mg_fuse) may run fused while its members are
 * at rest: every member's inputs read in place where the plan put them
 * (nothing pulled), the faders' pushes steady at unity, the sends' too
 * (their fold_unity). refresh_ops, after the calls' flags and inputs. */
static void fuse_check(const mg_plan *p, mg_fuse *f)
{
    const mg_call *calls = p->calls;
    const int S = f->sends, T = 2 + 2 * S;
    int ok = calls != NULL;
    for (int k = 0; ok && k < f->strips; k++) {
        const mg_call *pc = &calls[f->pan[k]], *fc = &calls[f->fader[k]];
        ok &= !(pc->flags & MG_CALL_PULL) && !(fc->flags & MG_CALL_PULL);
        ok &= fc->in[0] == pc->out[0] && fc->in[1] == pc->out[1];
        for (int j = 0; j < S; j++) {
            const mg_call *sc = &calls[f->send[k * S + j]];
            ok &= !(sc->flags & MG_CALL_PULL) && (sc->flags & MG_CALL_FOLD_UNITY) &&
                  (sc->flags & MG_CALL_FOLD);
            ok &= sc->in[0] == fc->out[0] && sc->in[1] == fc->out[1];
        }
        for (int t = 0; t < T; t++) {
            const mg_mixop *op = &p->mix[f->op[k * T + t]];
            ok &= op->fast && op->g == 1.0f && op->push;
        }
    }
    f->ok = ok;
    f->cached = 0; /* its inputs may read elsewhere now */
}

/* fuse_check for a strip the parallel form may fuse (mg_pfz), on the form's
 * prebuilt calls: read in place as planned, nothing pulled, the fader's and
 * the sends' pushes steady at unity. refresh_ops, after the calls' flags. */
static void pfz_check(const mg_par *par, mg_pfz *z)
{
    const mg_pcall *pc = &par->calls[par->call_of[z->pan]];
    const mg_pcall *fc = &par->calls[par->call_of[z->fader]];
    int ok = !(pc->flags & MG_CALL_PULL) && !(fc->flags & MG_CALL_PULL);
    ok &= fc->in[0] == pc->out[0] && fc->in[1] == pc->out[1];
    for (int j = 0; j < z->sends; j++) {
        const mg_pcall *sc = &par->calls[par->call_of[z->send[j]]];
        ok &= !(sc->flags & MG_CALL_PULL) && (sc->flags & MG_CALL_FOLD_UNITY) &&
              (sc->flags & MG_CALL_FOLD);
        ok &= sc->in[0] == fc->out[0] && sc->in[1] == fc->out[1];
    }
    for (int t = 0; t < 2 + 2 * z->sends; t++)
        ok &= z->op[t]->fast && z->op[t]->g == 1.0f && z->op[t]->push;
    z->ok = ok;
    z->cached = 0; /* its input may read elsewhere now */
}

/* Copy each op's edge gain into the op while the edge is steady: O(ops),
 * once per change of the fading list (a plan swap, a fade starting or
 * ending), so that blocks without fades never load an edge. */
static uint64_t refresh_ops(mg_plan *p)
{
    for (int m = 0; m < p->mix_used; m++) {
        mg_mixop *op = &p->mix[m];
        const mg_edge *ed = op->edge;
        op->fast = !ed->listed && ed->delay == 0 && ed->remaining <= 0 && ed->ramp_n == 0 &&
                   ed->g0 == ed->g1;
        op->g = ed->g0;
        op->inplace = p->finished && op->alias && op->fast && op->g == 1.0f;
    }
    for (int s = 0; s < p->n_steps; s++) {
        mg_step *st = &p->steps[s];
        mg_call *c = p->calls ? &p->calls[s] : NULL; /* the prebuilt call (mg_plan_calls) */
        const float **in = c ? (const float **)c->in : NULL;
        int pull = 0;
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
            const mg_mixop *op = &p->mix[m];
            pull |= !op->push && !op->inplace;
            if (in && op->dst_index >= 0) /* its input at offset 0, as feed_step sets it */
                in[op->dst_index] = op->inplace ? op->src : op->dst;
        }
        st->pull = (unsigned)pull;
        st->fold_unity = st->fold;
        for (int q = st->push_first; st->fold && q < st->push_first + st->push_count; q++) {
            const mg_mixop *op = &p->mix[p->push[q]];
            st->fold_unity &= op->fast && op->g == 1.0f;
        }
        const uint8_t keep = (uint8_t)((st->pull ? MG_CALL_PULL : 0) |
                                       (st->fold_unity ? MG_CALL_FOLD_UNITY : 0));
        if (c)
            c->flags = (uint8_t)((c->flags & ~(MG_CALL_PULL | MG_CALL_FOLD_UNITY)) | keep);
        /* the parallel form's prebuilt call of this step: the same, with its
         * own buffers (an op read in place reads par->src) */
        const mg_par *par = p->par;
        if (par && par->calls && par->call_of[s] >= 0) {
            mg_pcall *pc = &par->calls[par->call_of[s]];
            const float **pin = (const float **)pc->in;
            for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
                const mg_mixop *op = &p->mix[m];
                if (op->dst_index >= 0)
                    pin[op->dst_index] = op->inplace ? par->src[m] : op->dst;
            }
            pc->flags = (uint8_t)((pc->flags & ~(MG_CALL_PULL | MG_CALL_FOLD_UNITY)) | keep);
        }
    }
    for (int i = 0; i < p->n_fuse; i++)
        fuse_check(p, &p->fuse[i]);
    if (p->par && p->par->calls)
        for (int i = 0; i < p->par->n_pfz; i++)
            pfz_check(p->par, &p->par->pfz[i]);
    /* the parallel form's push segments: which runs may add in one pass */
    if (p->par && p->par->pins) {
        mg_ppin *const pins = p->par->pins;
        const int n_pins = p->par->unit_pin[p->par->n_units];
        for (int i = 0; i < n_pins; i++) {
            const int k = pins[i].run & (MG_SEG_OK - 1);
            if (!k)
                continue;
            int ok = 1;
            for (int j = i; j < i + k; j++)
                ok &= pins[j].op->fast && pins[j].op->g == 1.0f;
            pins[i].run = k | (ok ? MG_SEG_OK : 0);
        }
    }
    p->epoch++; /* input pointers set before may now be wrong */
    p->ops_stale = 0;
    return (uint64_t)p->mix_used + (uint64_t)p->n_steps;
}

/* Latency compensation: push n samples of src into the edge's delay line
 * for this channel and return the delayed samples: in place in the ring,
 * or (when they wrap around its end) copied to scratch. All of this call's
 * samples are written before any is read, so a delay shorter than n reads
 * some of them. */
static const float *delay_edge(mg_edge *ed, int ch, const float *src, int n, float *scratch)
{
    float *restrict buf = ed->dl[ch];
    const size_t cap = (size_t)ed->mask + 1, len = (size_t)n;
    const uint64_t w = ed->dpos[ch];
    const size_t wi = (size_t)(w & ed->mask), ri = (size_t)((w - (uint64_t)ed->delay) & ed->mask);
    const size_t wk = cap - wi < len ? cap - wi : len;
    memcpy(buf + wi, src, sizeof(float) * wk);
    memcpy(buf, src + wk, sizeof(float) * (len - wk));
    ed->dpos[ch] = w + (uint64_t)n;
    if (ri + len <= cap)
        return buf + ri;
    const size_t rk = cap - ri;
    memcpy(scratch, buf + ri, sizeof(float) * rk);
    memcpy(scratch + rk, buf, sizeof(float) * (len - rk));
    return scratch;
}

/* `for (i < n) body` with a separate copy for n == 64 (mg_node.h's
 * MG_LOOP_N, the nodes' form of it): the same sums, without the prologue and
 * remainder loops of a 64-sample mix op. */
#define MG_MIX_LOOP(n, body) MG_LOOP_N(i, n, body)

/* One connection channel: dst (+)= gain * src over [off, off+n); src is
 * op->src, or where the op reads in the plan's parallel form. */
MG_HOT static void mix_from(const mg_mixop *op, const float *src, int off, int n, int assign)
{
    float *restrict d = op->dst + off;
    const float *restrict x = src + off;
    const mg_edge *ed = op->edge;
    float g0, g1;
    float scratch[MG_MAX_BLOCK];
    if (op->fast) { /* steady and undelayed: the op's copy, the edge not read */
        g0 = g1 = op->g;
    } else {
        if (ed->delay > 0)
            x = delay_edge(op->edge, op->edge_ch, x, n, scratch);
        g0 = ed->g0;
        g1 = ed->g1;
    }
    if (g0 == 1.0f && g1 == 1.0f) {
        if (assign)
            memcpy(d, x, sizeof(float) * (size_t)n);
        else
            MG_MIX_LOOP(n, d[i] += x[i]);
    } else if (g0 == g1) {
        const float g = g0;
        if (assign)
            MG_MIX_LOOP(n, d[i] = g * x[i]);
        else
            MG_MIX_LOOP(n, d[i] += g * x[i]);
    } else {
        /* a fade holds g0 for ramp_at frames (its queued wait), moves one
         * step per frame for ramp_n frames, then holds g1: its length does not
         * depend on the block size */
        const float dg = ed->step;
        const int h = ed->ramp_at, e = h + ed->ramp_n - 1;
        int i = 0;
        if (assign) {
            for (; i < h; i++)
                d[i] = g0 * x[i];
            for (; i < e; i++)
                d[i] = (g0 + dg * (float)(i - h + 1)) * x[i];
            for (; i < n; i++)
                d[i] = g1 * x[i];
        } else {
            for (; i < h; i++)
                d[i] += g0 * x[i];
            for (; i < e; i++)
                d[i] += (g0 + dg * (float)(i - h + 1)) * x[i];
            for (; i < n; i++)
                d[i] += g1 * x[i];
        }
    }
}

/* mix_from's steady case (op->fast: g0 == g1 == g, not NaN, undelayed) in a
 * function of its own: the same loops, so the same sums, without the frame
 * mix_from sets up for fades and delay lines (a unity push of 64 samples
 * spent more instructions entering and leaving mix_from than adding). */
MG_HOT static void mix_steady(float *restrict d, const float *restrict x, float g, int n,
                              int assign)
{
    if (g == 1.0f) {
        if (assign)
            memcpy(d, x, sizeof(float) * (size_t)n);
        else
            MG_MIX_LOOP(n, d[i] += x[i]);
    } else if (assign) {
        MG_MIX_LOOP(n, d[i] = g * x[i]);
    } else {
        MG_MIX_LOOP(n, d[i] += g * x[i]);
    }
}

static inline void mix_into(const mg_mixop *op, int off, int n, int assign)
{
    if (op->fast)
        mix_steady(op->dst + off, op->src + off, op->g, n, assign);
    else
        mix_from(op, op->src, off, n, assign);
}

/* Set up step st's inputs for frames [off, off+n): clear the unconnected
 * ones, mix the connections in (or point at a lone unity source in place). */
static inline void feed_step(const mg_plan *p, const mg_step *st, int off, int n)
{
    mg_node *nd = st->node;
    if (p->finished) {
        /* every input is either unconnected or has ops, which point it at
         * their destination (or, read in place, at the source): fixed for a
         * given plan, ops epoch and offset, so set only when one changes */
        if (nd->in_off != off || nd->in_gen != p->gen || nd->in_epoch != p->epoch) {
            /* nodes never write their inputs: all share one buffer of zeros */
            for (int k = st->clear_first; k < st->clear_first + st->clear_count; k++)
                nd->in_ptr[p->clear[k]] = (float *)mg_zeros + off;
            for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
                const mg_mixop *op = &p->mix[m];
                if (op->dst_index >= 0)
                    nd->in_ptr[op->dst_index] = (op->inplace ? (float *)op->src : op->dst) + off;
            }
            nd->in_off = off;
            nd->in_gen = p->gen;
            nd->in_epoch = p->epoch;
        }
        if (nd->out_off != off || nd->out_gen != p->gen) { /* the plan's pool buffers */
            float *const *ob = p->outb + st->out_first;
            for (int c = 0; c < nd->n_out; c++)
                nd->out_ptr[c] = ob[c] + off;
            nd->out_off = off;
            nd->out_gen = p->gen;
        }
        if (st->pull) /* the rest were pushed after their sources ran, or are read in place */
            for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
                const mg_mixop *op = &p->mix[m];
                if (!op->push && !op->inplace)
                    mix_into(op, off, n, op->assign);
            }
        return;
    }
    for (int c = 0; c < nd->n_in; c++) {
        nd->in_ptr[c] = nd->in_base[c] + off;
        memset(nd->in_ptr[c], 0, sizeof(float) * (size_t)n);
    }
    if (nd->out_off != off || nd->out_gen != 0) {
        for (int c = 0; c < nd->n_out; c++)
            nd->out_ptr[c] = nd->out_base[c] + off;
        nd->out_off = off;
        nd->out_gen = 0;
    }
    /* an accumulator is never cleared: its first op always assigns */
    for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
        const mg_mixop *op = &p->mix[m];
        mix_into(op, off, n, op->to_acc && op->assign);
    }
}

static inline mg_proc step_proc(const mg_engine *e, const mg_node *nd, int n, uint64_t t)
{
    mg_proc pr = {n, (const float *const *)nd->in_ptr, nd->out_ptr, nd->pv,
                  (float *)mg_node_readouts(nd),
                  e->hw_in_ptr, e->hw_out_ptr, e->hw_in_ch, e->hw_out_ch, t, nd->pv_same};
    return pr;
}

/* The ops pushed from step st: into their destinations' inputs, now that
 * st's outputs are written (and hot). */
static inline void push_step(const mg_plan *p, const mg_step *st, int off, int n)
{
    for (int q = st->push_first; q < st->push_first + st->push_count; q++) {
        const mg_mixop *op = &p->mix[p->push[q]];
        mix_into(op, off, n, op->assign);
    }
}

/* d (+)= x * g with the product rounded on its own (no fused multiply-add):
 * what a node writing out = in * g, and a unity push adding out into d, give */
MG_HOT __attribute__((optimize("fp-contract=off"))) static void
mix_product(float *restrict d, const float *restrict x, float g, int n, int assign)
{
    if (assign)
        MG_MIX_LOOP(n, d[i] = x[i] * g);
    else
        MG_MIX_LOOP(n, d[i] += x[i] * g);
}

/* Whether a folding step (mg_step.fold) may fold this sub-block: its node
 * is a steady gain g of its inputs from channel k on (the type's fold) and
 * every push out of it is steady at unity (mg_step.fold_unity, which
 * refresh_ops keeps). Returns k, or -1: it must run. */
static inline int fold_gain(const mg_step *st, const mg_node *nd, float *g)
{
    if (!st->fold_unity) /* a push fades or has a gain (refresh_ops) */
        return -1;
    const int k = nd->type->fold(nd->state, nd->pv, g);
    if (k < 0 || *g == 0.0f) /* (a zero gain writes +0, whatever the input) */
        return -1;
    return k;
}

/* A folding step whose node may fold (fold_gain): instead of the node
 * writing out = in * g and the pushes adding out into their buses, the buses
 * get in * g directly, the same samples without the node's pass (an aux
 * send into its bus). Returns 0, having done nothing, when the node must
 * run. The parallel form folds the same way: par_unit decides at the step,
 * pin_mix adds the products where the pushes are mixed. */
static int fold_step(const mg_plan *p, const mg_step *st, const mg_node *nd, int off, int n)
{
    float g;
    const int k = fold_gain(st, nd, &g);
    if (k < 0)
        return 0;
    for (int q = st->push_first; q < st->push_first + st->push_count; q++) {
        const mg_mixop *op = &p->mix[p->push[q]];
        mix_product(op->dst + off, nd->in_ptr[k + op->src_index], g, n, op->assign);
    }
    return 1;
}

/* The lines of a node's allocation a step reads: the struct's second (its
 * first holds nothing a step reads: mg_internal.h), then its input and output
 * pointers, parameter values and readouts (mg_node_new packs them there). */
static inline void prefetch_node(const mg_node *nd)
{
    const char *b = (const char *)nd;
    __builtin_prefetch(b + 64);
    __builtin_prefetch(b + 128);
    __builtin_prefetch(b + 192);
}

/* ---- the plan on several threads (csrc/pool.c, csrc/workers.c) ---------- */

/* Pin entry q (an op one thread pushes) mixed into its destination: from
 * where the op reads, or, when its source step folded this cycle, its
 * source's input times the step's gain, as fold_step adds it. */
static inline void pin_mix(const mg_plan *p, const mg_par *par, int q, int off, int n)
{
    const int m = par->pin[q], ss = par->pin_src[q];
    const mg_mixop *op = &p->mix[m];
    if (ss >= 0 && par->fold_k[ss] >= 0)
        mix_product(op->dst + off, p->steps[ss].node->in_ptr[par->fold_k[ss] + op->src_index],
                    par->fold_g[ss], n, op->assign);
    else
        mix_from(op, par->src[m], off, n, op->assign);
}

/* feed_par's pull at offset 0: the step's ops mixed at the step (neither
 * pushed nor read in place), from where they read in the parallel form. */
static inline void pull_par(const mg_plan *p, const mg_par *par, const mg_step *st, int n)
{
    for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
        const mg_mixop *op = &p->mix[m];
        if (!op->push && !op->inplace)
            mix_from(op, par->src[m], 0, n, op->assign);
    }
}

/* feed_step for the plan's parallel form: its buffers (par->outb, par->src),
 * and the ops one thread pushes into this step mixed here, in the order one
 * thread pushes them, then the rest as one thread mixes them: every input
 * is the same sum of the same products in the same order. */
static inline void feed_par(const mg_plan *p, const mg_par *par, int s, int off, int n)
{
    const mg_step *st = &p->steps[s];
    mg_node *nd = st->node;
    const uint32_t tag = ~p->gen; /* not the one-thread pointers of this plan */
    if (nd->in_off != off || nd->in_gen != tag || nd->in_epoch != p->epoch) {
        for (int k = st->clear_first; k < st->clear_first + st->clear_count; k++)
            nd->in_ptr[p->clear[k]] = (float *)mg_zeros + off;
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
            const mg_mixop *op = &p->mix[m];
            if (op->dst_index >= 0)
                nd->in_ptr[op->dst_index] = (op->inplace ? (float *)par->src[m] : op->dst) + off;
        }
        nd->in_off = off;
        nd->in_gen = tag;
        nd->in_epoch = p->epoch;
    }
    if (nd->out_off != off || nd->out_gen != tag) {
        float *const *ob = par->outb + st->out_first;
        for (int c = 0; c < nd->n_out; c++)
            nd->out_ptr[c] = ob[c] + off;
        nd->out_off = off;
        nd->out_gen = tag;
    }
    for (int q = par->pin_first[s]; q < par->pin_end[s]; q++)
        pin_mix(p, par, q, off, n);
    if (st->pull)
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
            const mg_mixop *op = &p->mix[m];
            if (!op->push && !op->inplace)
                mix_from(op, par->src[m], off, n, op->assign);
        }
}

/* d (+)= ((x * g0) * g1) [* g[k]]: a fused strip's push (mg_pfz) as the
 * panner, the fader and a folded send would write and add it, each product
 * rounded on its own (no fused multiply-add); k 0: the fader's push. */
MG_HOT __attribute__((optimize("fp-contract=off"))) static void
mix_chain(float *restrict d, const float *restrict x, const float *g, int k, int n, int assign)
{
    const float g0 = g[0], g1 = g[1], g2 = g[k];
    if (!k) {
        if (assign)
            MG_MIX_LOOP(n, d[i] = x[i] * g0 * g1);
        else
            MG_MIX_LOOP(n, d[i] += x[i] * g0 * g1);
    } else {
        if (assign)
            MG_MIX_LOOP(n, d[i] = x[i] * g0 * g1 * g2);
        else
            MG_MIX_LOOP(n, d[i] += x[i] * g0 * g1 * g2);
    }
}

/* A prebuilt pin (mg_ppin) mixed at offset 0: pin_mix without the lookups,
 * a steady op through mix_steady as the one-thread path's push_call; the
 * push of a strip that ran fused this cycle from its panner's input. */
static inline void pin_call(const mg_par *par, const mg_ppin *q, int n)
{
    const mg_mixop *op = q->op;
    if (q->fz && q->fz->on) {
        const mg_pfz *z = q->fz;
        mix_chain(op->dst, z->x, z->g[q->fz_c], q->fz_n == 2 ? 0 : q->fz_j, n, op->assign);
        return;
    }
    if (q->fold_step >= 0) {
        const int k = par->fold_k[q->fold_step];
        if (k >= 0) {
            mix_product(op->dst, q->fold_in[k], par->fold_g[q->fold_step], n, op->assign);
            return;
        }
    }
    if (op->fast)
        mix_steady(op->dst, q->src, op->g, n, op->assign);
    else
        mix_from(op, q->src, 0, n, op->assign);
}

typedef float mg_fz8 __attribute__((vector_size(32), aligned(4)));

/* A run of k pins into one destination (mg_ppin.run) on frames [0, n), n a
 * multiple of 8, 64 frames at a time summed in eight registers in pin order
 * (the rest 8 at a time): each pin adds its source (a unity steady op, as
 * mix_steady: d += x, or assigning d = x) or, when its source step folded
 * this cycle, the step's input times its gain (mix_product's separately
 * rounded x * g: no fused multiply-add). The same operations per sample in
 * the same order as pin_call's one pass per pin, so the same sums, with the
 * destination loaded and stored once instead of once a pin. */
#define MG_SEG_BODY(W)                                                                            \
    do {                                                                                          \
        mg_fz8 acc[W];                                                                            \
        int j = 0;                                                                                \
        if (assign) {                                                                             \
            const mg_pfz *z = q[0].fz;                                                            \
            if (z && z->on) {                                                                     \
                const float *x0 = z->x + i, *g = z->g[q[0].fz_c];                                  \
                const float g0 = g[0], g1 = g[1], g2 = q[0].fz_n == 2 ? 1.0f : g[q[0].fz_j];       \
                if (q[0].fz_n == 2) {                                                             \
                    _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                         \
                        acc[c] = *(const mg_fz8 *)(x0 + 8 * c) * g0 * g1;                         \
                } else {                                                                          \
                    _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                         \
                        acc[c] = *(const mg_fz8 *)(x0 + 8 * c) * g0 * g1 * g2;                    \
                }                                                                                 \
            } else {                                                                              \
                const int fs = q[0].fold_step, fk = fs >= 0 ? par->fold_k[fs] : -1;               \
                const float *x0 = (fk >= 0 ? q[0].fold_in[fk] : q[0].src) + i;                    \
                const float g0 = fk >= 0 ? par->fold_g[fs] : 1.0f;                                 \
                _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                             \
                    acc[c] = fk >= 0 ? *(const mg_fz8 *)(x0 + 8 * c) * g0                         \
                                     : *(const mg_fz8 *)(x0 + 8 * c);                             \
            }                                                                                     \
            j = 1;                                                                                \
        } else {                                                                                  \
            _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                                 \
                acc[c] = *(const mg_fz8 *)(dst + i + 8 * c);                                      \
        }                                                                                         \
        for (; j < k; j++) {                                                                      \
            const mg_pfz *z = q[j].fz;                                                            \
            if (z && z->on) {                                                                     \
                const float *xj = z->x + i, *g = z->g[q[j].fz_c];                                  \
                const float g0 = g[0], g1 = g[1];                                                 \
                if (q[j].fz_n == 2) {                                                             \
                    _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                         \
                        acc[c] += *(const mg_fz8 *)(xj + 8 * c) * g0 * g1;                        \
                } else {                                                                          \
                    const float g2 = g[q[j].fz_j];                                                \
                    _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                         \
                        acc[c] += *(const mg_fz8 *)(xj + 8 * c) * g0 * g1 * g2;                   \
                }                                                                                 \
                continue;                                                                         \
            }                                                                                     \
            const int fs = q[j].fold_step, fk = fs >= 0 ? par->fold_k[fs] : -1;                   \
            if (fk >= 0) {                                                                        \
                const float *xj = q[j].fold_in[fk] + i;                                           \
                const float gj = par->fold_g[fs];                                                 \
                _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                             \
                    acc[c] += *(const mg_fz8 *)(xj + 8 * c) * gj;                                 \
            } else {                                                                              \
                const float *xj = q[j].src + i;                                                   \
                _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                             \
                    acc[c] += *(const mg_fz8 *)(xj + 8 * c);                                      \
            }                                                                                     \
        }                                                                                         \
        _Pragma("GCC unroll 8") for (int c = 0; c < (W); c++)                                     \
            *(mg_fz8 *)(dst + i + 8 * c) = acc[c];                                                \
    } while (0)

MG_HOT __attribute__((optimize("fp-contract=off"))) static void
seg_accumulate(const mg_par *par, const mg_ppin *q, int k, int n)
{
    float *const dst = q->op->dst;
    const int assign = q->op->assign;
    int i = 0;
    for (; i + 64 <= n; i += 64)
        MG_SEG_BODY(8);
    for (; i < n; i += 8)
        MG_SEG_BODY(1);
}

/* A push segment's pins (par_calls groups them by destination, each
 * destination's in one thread's order) run by run (mg_ppin.run): through
 * seg_accumulate while refresh_ops found every op of the run steady at
 * unity, else pin by pin (pin_call). Pins into different destinations are
 * independent, so only each one's order counts. */
static void seg_run(const mg_par *par, const mg_ppin *q, int len, int n)
{
    const mg_ppin *const end = q + len;
    while (q < end) {
        const int k = q->run & (MG_SEG_OK - 1);
        if (q->run & MG_SEG_OK)
            seg_accumulate(par, q, k, n);
        else
            for (const mg_ppin *t = q; t < q + k; t++)
                pin_call(par, t, n);
        q += k;
    }
}

/* A fused strip's (mg_pfz) gains and input for this cycle, read from its
 * members at rest: 0 when one is not (a parameter moves, a send is
 * pre-fader or off), having done nothing but node_ramps on nodes at rest,
 * which the steps repeat to the same effect (fuse_read's test, per strip). */
static int pfz_read(const mg_par *par, mg_pfz *z, int n)
{
    const int S = z->sends;
    for (int i = 0; i < 2 + S; i++)
        if (z->nodes[i]->n_ramping)
            return 0;
    const mg_pcall *pc = &par->calls[par->call_of[z->pan]];
    const mg_pcall *fc = &par->calls[par->call_of[z->fader]];
    float g[4 + MG_FUSE_SENDS];
    node_ramps(z->nodes[0], n, NULL);
    node_ramps(z->nodes[1], n, NULL);
    if (z->nodes[0]->type->steady(pc->state, pc->pv, g) < 0 ||
        z->nodes[1]->type->steady(fc->state, fc->pv, g + 2) < 0)
        return 0;
    for (int j = 0; j < S; j++) {
        const mg_pcall *sc = &par->calls[par->call_of[z->send[j]]];
        node_ramps(z->nodes[2 + j], n, NULL);
        /* a zero gain: the send writes +0 (it does not fold) */
        if (z->nodes[2 + j]->type->fold(sc->state, sc->pv, &g[4 + j]) != 0 || g[4 + j] == 0.0f)
            return 0;
    }
    z->x = pc->in[0];
    for (int c = 0; c < 2; c++) {
        z->g[c][0] = g[c];
        z->g[c][1] = g[2 + c];
        for (int j = 0; j < S; j++)
            z->g[c][2 + j] = g[4 + j];
    }
    return 1;
}

/* Whether a strip the parallel form may fuse (mg_pfz) runs fused this cycle
 * (its panner's atom decides; the call's pins, none, ran): ok (refresh_ops)
 * and its members at rest; the gains read at rest are kept while no member
 * is set and no other path runs them (mg_pfz.cached, as fuse_run). The
 * sends' fold_k/fold_g are noted as their atoms would (mg_plan_par_folded). */
static int pfz_run(const mg_par *par, mg_pfz *z, int n)
{
    if (!z->ok) {
        z->cached = 0;
        return 0;
    }
    int fresh = z->cached && z->epoch == par->fz_epoch;
    if (fresh) { /* node_ramps would do nothing but what it did when read */
        unsigned all = 1;
        for (int i = 0; i < 2 + z->sends; i++)
            all &= z->nodes[i]->pv_fresh;
        fresh = all != 0;
    }
    if (!fresh) {
        z->cached = pfz_read(par, z, n);
        if (!z->cached)
            return 0;
        z->epoch = par->fz_epoch;
    }
    for (int j = 0; j < z->sends; j++) {
        par->fold_k[z->send[j]] = 0;
        par->fold_g[z->send[j]] = z->g[0][2 + j];
    }
    return 1;
}

/* par_unit over the unit's prebuilt calls (mg_pcall) at offset 0, as
 * run_calls runs the one-thread path's: the same calls in the same order as
 * par_unit's loop below, setting no node pointer. */
static void par_unit_calls(const mg_cycle *cy, const mg_par *par, int u)
{
    const mg_engine *e = cy->e;
    const mg_plan *p = cy->p;
    const int n = cy->n;
    const uint64_t t = cy->t;
    float *const *const hw_in = e->hw_in_ptr, *const *const hw_out = e->hw_out_ptr;
    const int hw_in_ch = e->hw_in_ch, hw_out_ch = e->hw_out_ch;
    const mg_pcall *c = par->calls + par->unit_call[u];
    const mg_pcall *const end = par->calls + par->unit_call[u + 1];
    const mg_ppin *q = par->pins + par->unit_pin[u];
    const int fused = e->fusing && !(n & 7); /* push segments through seg_run */
    while (c < end) {
        if (c->flags & (MG_CALL_PFZ_HEAD | MG_CALL_PFZ)) {
            /* a strip that may run fused (mg_pfz): its panner decides, the
             * pins that mix its pushes read its input (no pins of its own) */
            mg_pfz *z = &par->pfz[par->pfz_of[c->step]];
            if (c->flags & MG_CALL_PFZ_HEAD)
                z->on = e->fusing && pfz_run(par, z, n);
            if (z->on) {
                c++;
                continue;
            }
        }
        const int g = c->gang;
        if (c->flags & MG_CALL_SEG) { /* a push segment: adds into a bus, in one thread's order */
            if (fused) {
                seg_run(par, q, c->pin_count, n);
                q += c->pin_count;
            } else {
                for (const mg_ppin *qe = q + c->pin_count; q < qe; q++)
                    pin_call(par, q, n);
            }
            c++;
            continue;
        }
        const mg_pcall *const nx = c + (g > 1 ? g : 1); /* the next atom's */
        if (nx < end && nx->node)
            prefetch_node(nx->node);
        if (g > 1) {
            void *states[MG_MAX_GANG];
            mg_proc procs[MG_MAX_GANG];
            for (int j = 0; j < g; j++) {
                mg_node *nd = c[j].node;
                if (j + 1 < g)
                    prefetch_node(c[j + 1].node);
                node_ramps(nd, n, NULL);
                for (const mg_ppin *qe = q + c[j].pin_count; q < qe; q++)
                    pin_call(par, q, n);
                if (c[j].flags & MG_CALL_PULL)
                    pull_par(p, par, &p->steps[c[j].step], n);
                states[j] = c[j].state;
                procs[j] = (mg_proc){n, c[j].in, c[j].out, c[j].pv, c[j].readout, hw_in, hw_out,
                                     hw_in_ch, hw_out_ch, t, nd->pv_same};
            }
            c->fn.process_many(states, procs, g);
            c += g;
            continue;
        }
        mg_node *nd = c->node;
        node_ramps(nd, n, NULL);
        for (const mg_ppin *qe = q + c->pin_count; q < qe; q++)
            pin_call(par, q, n);
        if (c->flags & MG_CALL_PULL)
            pull_par(p, par, &p->steps[c->step], n);
        if (c->flags & MG_CALL_FOLD) { /* pin_call adds its pushes: in * g, or its outputs */
            float g1 = 0.0f;
            int k = -1;
            if (c->flags & MG_CALL_FOLD_UNITY) {
                k = nd->type->fold(c->state, c->pv, &g1);
                if (k < 0 || g1 == 0.0f) /* (a zero gain writes +0, whatever the input) */
                    k = -1;
            }
            par->fold_k[c->step] = k;
            par->fold_g[c->step] = g1;
            if (k >= 0) {
                c++;
                continue;
            }
        }
        const mg_proc pr = {n, c->in, c->out, c->pv, c->readout, hw_in, hw_out,
                            hw_in_ch, hw_out_ch, t, nd->pv_same};
        c->fn.process(c->state, &pr);
        c++;
    }
}

/* One unit of the parallel form (mg_unit_fn): its atoms in order, a gang
 * slice through process_many as run_plan runs a gang. At offset 0 (with
 * ganging on) its prebuilt calls (par_unit_calls). */
static void par_unit(void *ctx, int u)
{
    const mg_cycle *c = ctx;
    const mg_engine *e = c->e;
    const mg_plan *p = c->p;
    const mg_par *par = p->par;
    const int off = c->off, n = c->n;
    if (off == 0 && par->calls && e->ganging) {
        par_unit_calls(c, par, u);
        return;
    }
    const int end = par->unit_atom[u + 1];
    for (int i = par->unit_atom[u]; i < end; i++) {
        const mg_atom *a = &par->uatom[i];
        if (a->gang < 0) { /* a push segment: adds into a bus, in one thread's order */
            for (int q = a->first; q < a->first + a->len; q++)
                pin_mix(p, par, q, off, n);
            continue;
        }
        const mg_step *st = &p->steps[a->first];
        if (i + 1 < end && a[1].gang >= 0)
            prefetch_node(p->steps[a[1].first].node);
        if (a->gang && e->ganging) {
            void *states[MG_MAX_GANG];
            mg_proc procs[MG_MAX_GANG];
            for (int j = 0; j < a->len; j++) {
                if (j + 1 < a->len)
                    prefetch_node(st[j + 1].node);
                node_ramps(st[j].node, n, NULL);
                feed_par(p, par, a->first + j, off, n);
                states[j] = st[j].node->state;
                procs[j] = step_proc(e, st[j].node, n, c->t);
            }
            st->node->type->process_many(states, procs, a->len);
            continue;
        }
        for (int j = 0; j < a->len; j++) {
            mg_node *nd = st[j].node;
            node_ramps(nd, n, NULL);
            feed_par(p, par, a->first + j, off, n);
            if (st[j].fold) { /* pin_mix adds its pushes: in * g, or its outputs */
                float g = 0.0f;
                const int k = e->ganging ? fold_gain(&st[j], nd, &g) : -1;
                par->fold_k[a->first + j] = k;
                par->fold_g[a->first + j] = g;
                if (k >= 0)
                    continue;
            }
            mg_proc pr = step_proc(e, nd, n, c->t);
            nd->type->process(nd->state, &pr);
        }
    }
}

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The ops pushed from a prebuilt call's step (push_step at offset 0). */
static inline void push_call(const mg_plan *p, const mg_call *c, int n)
{
    const int *q = p->push + c->push_first, *const end = q + c->push_count;
    for (; q < end; q++) {
        const mg_mixop *op = &p->mix[*q];
        mix_into(op, 0, n, op->assign);
    }
}

/* A step's ops mixed at the step (neither pushed nor read in place), at
 * offset 0: feed_step's pull. */
static inline void pull_step(const mg_plan *p, const mg_step *st, int n)
{
    for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
        const mg_mixop *op = &p->mix[m];
        if (!op->push && !op->inplace)
            mix_into(op, 0, n, op->assign);
    }
}

/* fold_step for a prebuilt call (offset 0, its inputs c->in). */
static inline int fold_call(const mg_plan *p, const mg_call *c, const mg_node *nd, int n)
{
    if (!(c->flags & MG_CALL_FOLD_UNITY)) /* a push fades or has a gain (refresh_ops) */
        return 0;
    float g;
    const int k = nd->type->fold(c->state, c->pv, &g);
    if (k < 0 || g == 0.0f) /* (a zero gain writes +0, whatever the input) */
        return 0;
    const int *q = p->push + c->push_first, *const end = q + c->push_count;
    for (; q < end; q++) {
        const mg_mixop *op = &p->mix[*q];
        mix_product(op->dst, c->in[k + op->src_index], g, n, op->assign);
    }
    return 1;
}

/* ---- fused strip tails (mg_fuse) ---------------------------------------- */

/* The tail of `strips` strips with J bus pairs (the fader's, then J - 1
 * sends') on frames [0, n), n a multiple of 8: for each 8 frames, the pairs'
 * bus samples stay in registers while every strip in plan order adds
 *   l = x * gl, r = x * gr (the panner), l *= fl, r *= fr (the fader),
 *   bus 0 += l, r (the fader's unity pushes), bus j += l * sj, r * sj (a
 *   folded send: mix_product's separately rounded product),
 * the first strip assigning where its op assigns (d = v: keeps -0). The same
 * operations as the steps, in the same order per bus, no fused multiply-add
 * (fp-contract off, as mix_product): the same samples. gv: per strip 4 + J - 1
 * gains broadcast to 8 lanes. */
#define MG_FUSE_BODY(J)                                                                           \
    do {                                                                                          \
        const int G = 3 + (J);                                                                    \
        for (int i = 0; i < n; i += 8) {                                                          \
            mg_fz8 acc[2 * (J)];                                                                  \
            const mg_fz8 *g = gv;                                                                 \
            {                                                                                     \
                const mg_fz8 x0 = *(const mg_fz8 *)(x[0] + i);                                    \
                const mg_fz8 l = x0 * g[0] * g[2], r = x0 * g[1] * g[3];                          \
                _Pragma("GCC unroll 8") for (int t = 0; t < 2 * (J); t++)                         \
                {                                                                                 \
                    const mg_fz8 v = t < 2 ? (t & 1 ? r : l) : (t & 1 ? r : l) * g[3 + t / 2];    \
                    acc[t] = assign[t] ? v : *(const mg_fz8 *)(dst[t] + i) + v;                   \
                }                                                                                 \
            }                                                                                     \
            for (int k = 1; k < strips; k++) {                                                    \
                g += G;                                                                           \
                const mg_fz8 xk = *(const mg_fz8 *)(x[k] + i);                                    \
                const mg_fz8 l = xk * g[0] * g[2], r = xk * g[1] * g[3];                          \
                acc[0] += l;                                                                      \
                acc[1] += r;                                                                      \
                _Pragma("GCC unroll 8") for (int t = 2; t < 2 * (J); t++)                         \
                    acc[t] += (t & 1 ? r : l) * g[3 + t / 2];                                      \
            }                                                                                     \
            _Pragma("GCC unroll 8") for (int t = 0; t < 2 * (J); t++)                             \
                *(mg_fz8 *)(dst[t] + i) = acc[t];                                                 \
        }                                                                                         \
    } while (0)

#define MG_FUSE_FN(J)                                                                             \
    MG_HOT __attribute__((optimize("fp-contract=off"))) static void fuse_tail##J(                 \
        float *const *dst, const uint8_t *assign, const float *const *x, const mg_fz8 *gv,       \
        int strips, int n)                                                                        \
    {                                                                                             \
        MG_FUSE_BODY(J);                                                                          \
    }
MG_FUSE_FN(1)
MG_FUSE_FN(2)
MG_FUSE_FN(3)
MG_FUSE_FN(4)
_Static_assert(MG_FUSE_SENDS == 3, "fuse_tail1..4: one per count of sends");

/* A fused strip tail's gains and inputs for this block, read from its
 * members at rest (f->gv, f->x): 0 when one is not (a parameter moves, a
 * send is pre-fader or off), having done nothing but node_ramps on nodes at
 * rest, which the steps repeat to the same effect. */
static int fuse_read(const mg_plan *p, mg_fuse *f, int n)
{
    const mg_call *calls = p->calls;
    const int S = f->sends, N = f->strips, G = 4 + S;
    for (int i = 0; i < f->n_nodes; i++)
        if (f->nodes[i]->n_ramping)
            return 0;
    for (int k = 0; k < N; k++) {
        const mg_call *pc = &calls[f->pan[k]], *fc = &calls[f->fader[k]];
        float g[4 + MG_FUSE_SENDS];
        node_ramps(pc->node, n, NULL);
        node_ramps(fc->node, n, NULL);
        if (pc->node->type->steady(pc->state, pc->pv, g) < 0 ||
            fc->node->type->steady(fc->state, fc->pv, g + 2) < 0)
            return 0;
        for (int j = 0; j < S; j++) {
            const mg_call *sc = &calls[f->send[k * S + j]];
            node_ramps(sc->node, n, NULL);
            /* a zero gain: the send writes +0 (fold_call does not fold it) */
            if (sc->node->type->fold(sc->state, sc->pv, &g[4 + j]) != 0 || g[4 + j] == 0.0f)
                return 0;
        }
        f->x[k] = pc->in[0];
        for (int m = 0; m < G; m++) {
            float *v = f->gv + ((size_t)k * (size_t)G + (size_t)m) * 8;
            for (int i = 0; i < 8; i++)
                v[i] = g[m];
        }
    }
    return 1;
}

/* A fused strip tail on frames [0, n) of a prebuilt-calls block: 1 when it
 * ran fused, 0 when its steps must run as they are: a member's parameter
 * moves, a send is pre-fader or off (fuse_read), an op fades or has a gain
 * (fuse_check), or n is not a multiple of 8. The gains read at rest are kept
 * while no member is set and no other path runs them (mg_fuse.cached). */
static int fuse_run(const mg_plan *p, mg_fuse *f, int n)
{
    if (!f->ok || (n & 7)) {
        f->cached = 0;
        return 0;
    }
    int fresh = f->cached && f->epoch == p->fuse_epoch;
    if (fresh) { /* node_ramps would do nothing but what it did when read */
        unsigned all = 1;
        for (int i = 0; i < f->n_nodes; i++)
            all &= f->nodes[i]->pv_fresh;
        fresh = all != 0;
    }
    if (!fresh) {
        f->cached = fuse_read(p, f, n);
        if (!f->cached)
            return 0;
        f->epoch = p->fuse_epoch;
    }
    const mg_fz8 *v = (const mg_fz8 *)f->gv;
    const int N = f->strips;
    switch (f->sends) {
    case 0:
        fuse_tail1(f->dst, f->assign, f->x, v, N, n);
        break;
    case 1:
        fuse_tail2(f->dst, f->assign, f->x, v, N, n);
        break;
    case 2:
        fuse_tail3(f->dst, f->assign, f->x, v, N, n);
        break;
    default:
        fuse_tail4(f->dst, f->assign, f->x, v, N, n);
        break;
    }
    return 1;
}

/* The one-thread path over a finished plan's prebuilt calls (mg_call) on
 * frames [0, n) of the block: run_plan's loop below without setting any
 * pointer, the same calls in the same order (the same samples). */
static void run_calls(const mg_engine *e, const mg_plan *p, int n, uint64_t t)
{
    const mg_call *const calls = p->calls;
    const int n_steps = p->n_steps;
    float *const *const hw_in = e->hw_in_ptr, *const *const hw_out = e->hw_out_ptr;
    const int hw_in_ch = e->hw_in_ch, hw_out_ch = e->hw_out_ch;
    float *const scratch = e->ramp_scratch;
    /* each tail's first step runs it fused or not (ran), before its members;
     * a run of consecutive members of a tail that ran is skipped at once */
    const mg_fuse_step *const fuse_of = e->fusing ? p->fuse_of : NULL;
    for (int s = 0; s < n_steps;) {
        const mg_call *c = &calls[s];
        if (__builtin_expect((c->flags & (MG_CALL_FUSE | MG_CALL_FUSED)) && fuse_of, 0)) {
            const mg_fuse_step fs = fuse_of[s];
            mg_fuse *fz = &p->fuse[fs.fuse];
            if (c->flags & MG_CALL_FUSE)
                fz->ran = fuse_run(p, fz, n);
            if (fz->ran) {
                s = fs.next;
                continue;
            }
        }
        const int g = c->gang;
        if (g > 1) {
            /* a gang: every member's inputs first (none feeds another), then
             * one call for all of them */
            void *states[MG_MAX_GANG];
            mg_proc procs[MG_MAX_GANG];
            for (int j = 0; j < g; j++) {
                mg_node *nd = c[j].node;
                if (j + 1 < g)
                    prefetch_node(c[j + 1].node);
                node_ramps(nd, n, NULL);
                if (c[j].flags & MG_CALL_PULL)
                    pull_step(p, &p->steps[s + j], n);
                states[j] = c[j].state;
                procs[j] = (mg_proc){n, c[j].in, c[j].out, c[j].pv, c[j].readout, hw_in, hw_out,
                                     hw_in_ch, hw_out_ch, t, nd->pv_same};
            }
            c->fn.process_many(states, procs, g);
            for (int j = 0; j < g; j++)
                push_call(p, &c[j], n);
            s += g;
            continue;
        }
        if (c->flags & MG_CALL_INERT) { /* an input node: downstream reads the hardware buffers */
            push_call(p, c, n);
            s++;
            continue;
        }
        mg_node *nd = c->node;
        if (s + 1 < n_steps) /* nodes are separate allocations: fetch the next early */
            prefetch_node(c[1].node);
        node_ramps(nd, n, scratch);
        if (c->flags & MG_CALL_PULL)
            pull_step(p, &p->steps[s], n);
        if ((c->flags & MG_CALL_FOLD) && fold_call(p, c, nd, n)) {
            s++;
            continue;
        }
        const mg_proc pr = {n, c->in, c->out, c->pv, c->readout, hw_in, hw_out,
                            hw_in_ch, hw_out_ch, t, nd->pv_same};
        c->fn.process(c->state, &pr);
        push_call(p, c, n);
        s++;
    }
}

/* Run the plan over frames [off, off+n) of the current block. */
static void run_plan(mg_engine *e, int off, int n, uint64_t t)
{
    for (int c = 0; c < e->hw_in_ch; c++)
        e->hw_in_ptr[c] = e->hw_in[c] + off;
    for (int c = 0; c < e->hw_out_ch; c++) {
        e->hw_out_ptr[c] = e->hw_out[c] + off;
        memset(e->hw_out_ptr[c], 0, sizeof(float) * (size_t)n);
    }
    mg_plan *p = e->plan;
    if (!p)
        return;
    advance_fades(p, n);
    if (p->ops_stale) {
        if (e->swapped) { /* the refresh a swap causes is part of the swap */
            const double t0 = mono_us();
            e->swap_work_acc += refresh_ops(p);
            e->swap_t += mono_us() - t0;
        } else {
            refresh_ops(p);
        }
    }
    /* several threads when the cycle is worth it (csrc/workers.c); else the
     * one-thread path, timed, for the estimate: the same samples either way */
    uint64_t t0 = 0;
    if (p->par && e->workers) {
        const int handed = mg_workers_handoff(e->workers, p, n, n * 1e9 / e->sample_rate);
        t0 = mono_ns();
        if (handed) {
            e->cycle.e = e;
            e->cycle.p = p;
            e->cycle.off = off;
            e->cycle.n = n;
            e->cycle.t = t;
            mg_workers_run(e->workers, p->par, par_unit, &e->cycle, n, e->cycle_follows);
            mg_workers_note(e->workers, 1, mono_ns() - t0, n);
            p->fuse_epoch++; /* the members ran elsewhere (mg_fuse.epoch) */
            /* and par_unit's loop ran them, when not its prebuilt calls with
             * fusing (mg_pfz.epoch) */
            p->par->fz_epoch += !(off == 0 && p->par->calls && e->ganging && e->fusing);
            return;
        }
    }
    if (p->par)
        p->par->fz_epoch++; /* the one-thread path ran the members (mg_pfz.epoch) */
    if (off == 0 && p->calls && e->ganging) { /* a block's start: the prebuilt calls */
        p->fuse_epoch += !e->fusing;
        run_calls(e, p, n, t);
        if (t0)
            mg_workers_note(e->workers, 0, mono_ns() - t0, n);
        return;
    }
    const int gangs = p->finished && e->ganging;
    p->fuse_epoch++;
    for (int s = 0; s < p->n_steps;) {
        const mg_step *st = &p->steps[s];
        const int g = gangs ? st->gang : 1;
        if (g > 1) {
            /* a gang: every member's inputs first (none feeds another), then
             * one call for all of them */
            void *states[MG_MAX_GANG];
            mg_proc procs[MG_MAX_GANG];
            for (int j = 0; j < g; j++) {
                if (j + 1 < g)
                    prefetch_node(st[j + 1].node);
                node_ramps(st[j].node, n, NULL);
                feed_step(p, st + j, off, n);
                states[j] = st[j].node->state;
                procs[j] = step_proc(e, st[j].node, n, t);
            }
            st->node->type->process_many(states, procs, g);
            for (int j = 0; j < g; j++)
                push_step(p, st + j, off, n);
            s += g;
            continue;
        }
        if (st->inert) { /* an input node: downstream reads the hardware buffers */
            push_step(p, st, off, n);
            s++;
            continue;
        }
        mg_node *nd = st->node;
        if (s + 1 < p->n_steps) /* nodes are separate allocations: fetch the next early */
            prefetch_node(p->steps[s + 1].node);
        node_ramps(nd, n, e->ramp_scratch);
        feed_step(p, st, off, n);
        if (st->fold && gangs && fold_step(p, st, nd, off, n)) {
            s++;
            continue;
        }
        mg_proc pr = step_proc(e, nd, n, t);
        nd->type->process(nd->state, &pr);
        push_step(p, st, off, n);
        s++;
    }
    if (t0)
        mg_workers_note(e->workers, 0, mono_ns() - t0, n);
}

/* One chunk of at most MG_MAX_BLOCK frames, hardware buffers planar; returns
 * the frames it ran: fewer than n when the plan's buffers hold fewer (its
 * pool is laid out for the engine's block, mg_plan_layout), the chunk then
 * ending where that plan came in. */
static int run_chunk(mg_engine *e, int n)
{
    uint64_t start = atomic_load_explicit(&e->time, memory_order_relaxed);
    flush_retired(e);
    drain_commands(e, start);
    if (__builtin_expect(atomic_load_explicit(&e->ctrace, memory_order_relaxed) != NULL, 0) &&
        !e->tr_drain_ns)
        e->tr_drain_ns = trace_ns();
    const int n_asked = n;
    int pos = 0;
    while (pos < n) {
        uint64_t now = start + (uint64_t)pos;
        while (e->heap_len > 0 && e->heap[0].cmd.time <= now) {
            mg_cmd c = e->heap[0].cmd;
            heap_pop(e);
            apply_now(e, &c);
        }
        const int cap = e->plan ? e->plan->block : MG_MAX_BLOCK;
        if (n > cap) { /* sub-blocks of this plan must end within its slots */
            if (pos >= cap)
                break;
            n = cap;
        }
        int len = n - pos;
        if (e->heap_len > 0 && e->heap[0].cmd.time < start + (uint64_t)n)
            len = (int)(e->heap[0].cmd.time - now);
        e->cycle_follows = e->more_chunks || pos + len < n_asked;
        run_plan(e, pos, len, now);
        pos += len;
    }
    atomic_store_explicit(&e->time, start + (uint64_t)pos, memory_order_release);
    return pos;
}

/* Interleaved frames to planar channels. The source is read in order, four
 * frames at a time, and each 4x4 tile (4 frames x 4 channels) is transposed
 * in registers: an offline render streams the input from memory, and a
 * channel-major walk over it would fetch every cache line four times. */
static void deinterleave(float *const *dst, const float *src, int ch, int n)
{
    int i = 0;
#if defined(__SSE__)
    for (; i + 4 <= n; i += 4) {
        const float *r = src + (size_t)i * (size_t)ch;
        int c = 0;
        for (; c + 4 <= ch; c += 4) {
            __m128 a = _mm_loadu_ps(r + c), b = _mm_loadu_ps(r + ch + c);
            __m128 x = _mm_loadu_ps(r + 2 * ch + c), y = _mm_loadu_ps(r + 3 * ch + c);
            _MM_TRANSPOSE4_PS(a, b, x, y);
            _mm_storeu_ps(dst[c] + i, a);
            _mm_storeu_ps(dst[c + 1] + i, b);
            _mm_storeu_ps(dst[c + 2] + i, x);
            _mm_storeu_ps(dst[c + 3] + i, y);
        }
        for (; c < ch; c++)
            for (int k = 0; k < 4; k++)
                dst[c][i + k] = r[k * ch + c];
    }
#endif
    for (; i < n; i++) {
        const float *r = src + (size_t)i * (size_t)ch;
        for (int c = 0; c < ch; c++)
            dst[c][i] = r[c];
    }
}

/* 1 when every sample is finite and within +-ceiling (NaN compares false). */
MG_HOT static int all_within(const float *restrict s, int n, float ceiling)
{
    int ok = 1;
    for (int i = 0; i < n; i++)
        ok &= fabsf(s[i]) <= ceiling;
    return ok;
}


/* One call of the audio thread. Input and output are either interleaved
 * (in, out: PortAudio, the null clock, offline renders) or planar (in_pl,
 * out_pl: one buffer per channel, as JACK hands them over); either may be
 * NULL (silence in, nothing out). */
static void process_any(mg_engine *e, const float *in, const float *const *in_pl, float *out,
                        float *const *out_pl, unsigned long nframes)
{
    mg_audio_enter();
    mg_fpu_state fpu;
    mg_fpu_enter(&fpu);
    const double t0 = mono_us();
    mg_call_rec *ctrace = atomic_load_explicit(&e->ctrace, memory_order_acquire);
    if (__builtin_expect(ctrace != NULL, 0))
        trace_enter(e, (uint64_t)(t0 * 1e3));
    const int ci = e->hw_in_ch, co = e->hw_out_ch;
    const float ceil_ = e->ceiling;
    uint64_t nan_count = 0, clip_count = 0;
    unsigned long done = 0;
    while (done < nframes) {
        int n = (int)(nframes - done > MG_MAX_BLOCK ? MG_MAX_BLOCK : nframes - done);
        if (in) {
            /* frames outer, channels inner: sequential reads, ci write streams */
            deinterleave(e->hw_in, in + done * (unsigned long)ci, ci, n);
        } else if (in_pl) {
            for (int c = 0; c < ci; c++)
                memcpy(e->hw_in[c], in_pl[c] + done, sizeof(float) * (size_t)n);
        } else {
            for (int c = 0; c < ci; c++)
                memset(e->hw_in[c], 0, sizeof(float) * (size_t)n);
        }
        e->more_chunks = e->more_calls || done + (unsigned long)n < nframes;
        n = run_chunk(e, n);
        /* safety stage: scrub non-finite samples, hold the hard ceiling */
        for (int c = 0; c < co; c++) {
            float *s = e->hw_out[c];
            if (all_within(s, n, ceil_))
                continue; /* the usual case, checked without branches */
            for (int i = 0; i < n; i++) {
                float x = s[i];
                if (!isfinite(x)) {
                    x = 0.0f;
                    nan_count++;
                } else if (x > ceil_) {
                    x = ceil_;
                    clip_count++;
                } else if (x < -ceil_) {
                    x = -ceil_;
                    clip_count++;
                }
                s[i] = x;
            }
        }
        if (out) {
            float *restrict d = out + done * (unsigned long)co;
            const float *const *restrict src = (const float *const *)e->hw_out;
            for (int i = 0; i < n; i++, d += co)
                for (int c = 0; c < co; c++)
                    d[c] = src[c][i];
            if (e->tap) {
                const float *chunk = out + done * (unsigned long)co;
                int w = mg_fifo_write(e->tap, chunk, n);
                if (w < n)
                    mg_fifo_add_dropped(e->tap, (uint64_t)(n - w));
            }
        } else if (out_pl) {
            for (int c = 0; c < co; c++)
                memcpy(out_pl[c] + done, e->hw_out[c], sizeof(float) * (size_t)n);
            if (e->tap) {
                float *restrict d = e->tap_scratch;
                const float *const *restrict src = (const float *const *)e->hw_out;
                for (int i = 0; i < n; i++, d += co)
                    for (int c = 0; c < co; c++)
                        d[c] = src[c][i];
                int w = mg_fifo_write(e->tap, e->tap_scratch, n);
                if (w < n)
                    mg_fifo_add_dropped(e->tap, (uint64_t)(n - w));
            }
        }
        done += (unsigned long)n;
    }
    if (nan_count)
        atomic_fetch_add_explicit(&e->nan_scrubbed, nan_count, memory_order_relaxed);
    if (clip_count)
        atomic_fetch_add_explicit(&e->clipped, clip_count, memory_order_relaxed);
    const double dt = mono_us() - t0;
    const double budget = (double)nframes / e->sample_rate * 1e6;
    double mean = atomic_load_explicit(&e->mean_us, memory_order_relaxed);
    double load = atomic_load_explicit(&e->load, memory_order_relaxed);
    atomic_store_explicit(&e->mean_us, mean + 0.01 * (dt - mean), memory_order_relaxed);
    if (budget > 0.0)
        atomic_store_explicit(&e->load, load + 0.01 * (dt / budget - load), memory_order_relaxed);
    if (dt > atomic_load_explicit(&e->worst_us, memory_order_relaxed))
        atomic_store_explicit(&e->worst_us, dt, memory_order_relaxed);
    /* the window's worst: the control side exchanges it for 0, so a lost
     * update costs at most one block's figure in one window */
    if (dt > atomic_load_explicit(&e->window_us, memory_order_relaxed))
        atomic_store_explicit(&e->window_us, dt, memory_order_relaxed);
    double *blog = atomic_load_explicit(&e->blog, memory_order_acquire);
    if (blog) {
        const int i = atomic_load_explicit(&e->blog_n, memory_order_relaxed);
        if (i < e->blog_cap) {
            blog[i] = dt;
            atomic_store_explicit(&e->blog_n, i + 1, memory_order_release);
        }
    }
    if (e->swapped) {
        if (e->swap_t > atomic_load_explicit(&e->worst_swap_us, memory_order_relaxed))
            atomic_store_explicit(&e->worst_swap_us, e->swap_t, memory_order_relaxed);
        if (dt > atomic_load_explicit(&e->worst_swap_block_us, memory_order_relaxed))
            atomic_store_explicit(&e->worst_swap_block_us, dt, memory_order_relaxed);
        atomic_store_explicit(&e->swap_work, e->swap_work_acc, memory_order_relaxed);
        atomic_store_explicit(&e->last_swap_us, e->swap_t, memory_order_relaxed);
        atomic_store_explicit(&e->last_swap_block_us, dt, memory_order_relaxed);
        e->swapped = 0;
        e->swap_t = 0.0;
    }
    atomic_fetch_add_explicit(&e->blocks, 1, memory_order_relaxed);
    if (__builtin_expect(ctrace != NULL, 0))
        trace_leave(e, ctrace, nframes);
    mg_fpu_leave(&fpu);
    mg_audio_leave();
}

void mg_engine_process(mg_engine *e, const float *in, float *out, unsigned long nframes)
{
    process_any(e, in, NULL, out, NULL, nframes);
}

void mg_engine_process_planar(mg_engine *e, const float *const *in, float *const *out,
                              unsigned long nframes)
{
    process_any(e, NULL, in, NULL, out, nframes);
}

void mg_engine_process_blocks(mg_engine *e, const float *in, float *out,
                              unsigned long nframes, int block)
{
    if (block < 1)
        block = 64;
    const size_t ci = (size_t)e->hw_in_ch, co = (size_t)e->hw_out_ch;
    for (unsigned long done = 0; done < nframes;) {
        unsigned long n = nframes - done < (unsigned long)block ? nframes - done
                                                                : (unsigned long)block;
        e->more_calls = done + n < nframes; /* the workers wait for the next block */
        mg_engine_process(e, in ? in + done * ci : NULL, out ? out + done * co : NULL, n);
        done += n;
    }
    e->more_calls = 0;
}

void mg_engine_process_blocks_timed(mg_engine *e, const float *in, float *out,
                                    unsigned long nframes, int block, double *us)
{
    if (block < 1)
        block = 64;
    const size_t ci = (size_t)e->hw_in_ch, co = (size_t)e->hw_out_ch;
    size_t k = 0;
    for (unsigned long done = 0; done < nframes; k++) {
        unsigned long n = nframes - done < (unsigned long)block ? nframes - done
                                                                : (unsigned long)block;
        e->more_calls = done + n < nframes; /* as mg_engine_process_blocks */
        const double t0 = mono_us();
        mg_engine_process(e, in ? in + done * ci : NULL, out ? out + done * co : NULL, n);
        us[k] = mono_us() - t0;
        done += n;
    }
    e->more_calls = 0;
}

/* PortAudio's paInputUnderflow | paInputOverflow | paOutputUnderflow | paOutputOverflow */
#define MG_PA_XRUN_FLAGS 0x0Fu

int mg_pa_callback(const void *input, void *output, unsigned long frames,
                   const void *time_info, unsigned long status_flags, void *user_data)
{
    (void)time_info;
    mg_engine *e = (mg_engine *)user_data;
    if (status_flags & MG_PA_XRUN_FLAGS)
        atomic_fetch_add_explicit(&e->xruns, 1, memory_order_relaxed);
    mg_engine_process(e, (const float *)input, (float *)output, frames);
    return 0; /* paContinue */
}

/* ------------------------------------------------------------------ */
/* null backend: a real-time-paced clock with no hardware               */

/* Touch the first 128 KiB of this thread's stack once, before the clock
 * starts, so deeper calls later (a delayed edge's scratch block, a node's
 * locals) never page-fault on the audio thread. */
static __attribute__((noinline)) void prefault_stack(void)
{
    volatile unsigned char pages[128 * 1024];
    for (size_t i = 0; i < sizeof pages; i += 4096)
        pages[i] = 0;
}

static void *null_main(void *arg)
{
    mg_engine *e = (mg_engine *)arg;
    prctl(PR_SET_NAME, "mg-audio"); /* top -H, /proc/<pid>/task/<tid>/comm */
    prefault_stack();
    const long long block_ns = (long long)((double)e->null_block * 1e9 / e->sample_rate + 0.5);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (atomic_load_explicit(&e->null_running, memory_order_acquire)) {
        mg_engine_process(e, NULL, e->null_out, (unsigned long)e->null_block);
        long long ns = (long long)next.tv_nsec + block_ns;
        next.tv_sec += (time_t)(ns / 1000000000LL);
        next.tv_nsec = (long)(ns % 1000000000LL);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long late = ((long long)now.tv_sec - (long long)next.tv_sec) * 1000000000LL +
                         ((long long)now.tv_nsec - (long long)next.tv_nsec);
        if (late > block_ns) {
            /* missed a whole block: count it and re-anchor the clock */
            atomic_fetch_add_explicit(&e->xruns, 1, memory_order_relaxed);
            next = now;
            continue;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
    }
    return NULL;
}

int mg_null_start(mg_engine *e, int block_frames)
{
    if (atomic_load(&e->null_running) || block_frames < 1 || block_frames > 8192)
        return -1;
    mg_free(e->null_out);
    e->null_block = block_frames;
    e->null_out = mg_calloc((size_t)block_frames * (size_t)(e->hw_out_ch + 1), sizeof(float));
    if (!e->null_out)
        return -1;
    atomic_store(&e->null_running, 1);
    if (pthread_create(&e->null_thread, NULL, null_main, e) != 0) {
        atomic_store(&e->null_running, 0);
        return -1;
    }
    /* A real-time priority when the system grants one (root, rtprio limit);
     * otherwise the clock runs at normal priority and xruns are counted. */
    struct sched_param sp = {.sched_priority = 70};
    e->null_realtime = pthread_setschedparam(e->null_thread, SCHED_FIFO, &sp) == 0;
    return 0;
}

void mg_null_stop(mg_engine *e)
{
    if (atomic_exchange(&e->null_running, 0))
        pthread_join(e->null_thread, NULL);
}
