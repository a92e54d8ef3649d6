/* mixgraph C core: the public API.
 *
 * This header is the single declaration of everything Python sees: the cffi
 * build reads it as its cdef (lines starting with '#' other than integer
 * #defines are skipped), so it must stay plain C declarations.
 *
 * Thread ownership is written next to every function:
 *   [control]  the Python control thread (may allocate, never concurrently
 *              with another control call on the same engine)
 *   [audio]    the audio thread only: no allocation, locks or blocking
 *   [any]      lock-free, safe from any thread
 */

#ifndef MG_API_H
#define MG_API_H
#include <stddef.h>
#include <stdint.h>

#define MG_API_VERSION 1

/* How a parameter value reaches node code (the "domain" it is smoothed in). */
#define MG_MAP_LIN 0   /* node sees the unit value; linear smoothing        */
#define MG_MAP_DB 1    /* unit is dB; node sees amplitude; geometric ramp   */
#define MG_MAP_LOG 2   /* unit value (Hz, ms...); geometric (log) smoothing */

/* Published taper for the normalised 0..1 control path. */
#define MG_TAPER_LIN 0
#define MG_TAPER_LOG 1
#define MG_TAPER_FADER 2
#define MG_TAPER_STEP 3

#define MG_PORT_IN 0
#define MG_PORT_OUT 1

/* Command kinds (control -> audio). */
#define MG_CMD_PARAM 1
#define MG_CMD_EDGE 2
#define MG_CMD_PLAN 3
#define MG_CMD_SYNC 4
#define MG_CMD_RESET 5
#define MG_CMD_TAP 6
#define MG_CMD_RAMP 7   /* index = parameter, value = target (unit), frames, curve */

/* Ramp curves (MG_CMD_RAMP), in taper position: see csrc/mg_taper.h. */
#define MG_CURVE_LINEAR 0
#define MG_CURVE_SCURVE 1
#define MG_CURVE_EXP 2

/* Event kinds (audio -> control). */
#define MG_EV_PLAN_RETIRED 1
#define MG_EV_SYNC 2
#define MG_EV_LATE 3

#define MG_TIME_NOW 0
#define MG_MAX_BLOCK 512

typedef struct mg_engine mg_engine;
typedef struct mg_node mg_node;
typedef struct mg_edge mg_edge;
typedef struct mg_plan mg_plan;
typedef struct mg_dgroup mg_dgroup;
typedef struct mg_fifo mg_fifo;
typedef struct mg_midi mg_midi;
typedef struct mg_midi_table mg_midi_table;
typedef struct mg_ctl mg_ctl;

typedef struct {
    const char *name;  /* short lowercase word, one OSC address part */
    const char *unit;  /* "dB", "Hz", "ms", "" ... */
    const char *doc;
    float min, max, def;
    int map;           /* MG_MAP_* */
    int taper;         /* MG_TAPER_* */
    float smooth_ms;   /* 0: the value jumps */
} mg_param_spec;

/* mg_node_type.param_flags. MG_PARAM_CONTROL: a control-rate parameter, one its
 * node reads at a few frames it picks (an EQ's frequency, gain and Q at each
 * coefficient design), never sample by sample. While it moves, the engine
 * writes no per-sample values: pv.ramp stays NULL, pv.ctl is set, and the
 * node evaluates the ramp where it needs it (mg_pv_ctl_at / mg_ctl_at: the exact
 * taper or smoothing formula at that frame, also past the end of the call).
 * A node whose code reads pv.ramp[i] must not set it on that parameter. */
#define MG_PARAM_CONTROL 1

/* The names of a stepped parameter's choices, one per step from min to max,
 * separated by '|': {"hpslope", "12 dB/oct|24 dB/oct|48 dB/oct"}. `param`
 * names the parameter; a '#' in it stands for a band number ("b#type" names
 * b1type, b2type ...). names == NULL declares a stepped parameter an integer
 * quantity whose number is its name (a bit mask, a word length). Every
 * MG_TAPER_STEP parameter has an entry (tests/test_choices.py); the catalog,
 * /catalog, docs/nodes.md, `mixgraph nodes`, the TouchOSC layout and the
 * name -> number of `/node/<n>/<p> <name>` all read them from here. */
typedef struct {
    const char *param;
    const char *names;
} mg_choice_spec;

typedef struct {
    const char *name;
    int dir;           /* MG_PORT_IN / MG_PORT_OUT */
    int channels;      /* 0: the node's channel count */
} mg_port_spec;

typedef struct {
    const char *name;
    const char *unit;
    int map;           /* MG_MAP_DB: stored as amplitude, shown in dB */
    int per_channel;
} mg_readout_spec;

/* A parameter as node code sees it: a per-sample ramp while smoothing,
 * otherwise ramp == NULL and the steady value. A MG_PARAM_CONTROL parameter
 * never has a ramp: while it moves, ctl is set (evaluate it with mg_pv_ctl_at
 * or mg_ctl_at) and value is its value at the call's last frame. */
typedef struct {
    const float *ramp;
    float value;
    const mg_ctl *ctl;
} mg_pv;

/* Everything process() gets for one (sub-)block. Pointers are already
 * offset to the sub-block; in[]/out[] are the node's ports flattened
 * (port 0's channels first). Inputs are read-only: an input may be the
 * upstream node's output buffer itself (a single unity-gain connection is
 * not copied), and a node must write only its outputs. */
typedef struct {
    int nframes;
    const float *const *in;
    float *const *out;
    const mg_pv *pv;
    float *readout;
    float *const *hw_in;
    float *const *hw_out;
    int hw_in_ch;
    int hw_out_ch;
    uint64_t time;
    int pv_same;               /* 1: no parameter ramps in this call and every
                                  value equals the previous call's (a node may
                                  reuse what it derived from them) */
} mg_proc;

/* What prepare() gets (control thread). */
typedef struct {
    double sample_rate;
    int channels;
    int max_block;
    int hw_first;      /* first hardware channel, 0-based (input/output) */
    int hw_in_ch;
    int hw_out_ch;
    uint64_t seed;
    mg_fifo *fifo;     /* disk streaming ring (player/recorder) or NULL */
    const void *type_data; /* the type's `data` (per-instance types, e.g. lv2) */
} mg_prepare_ctx;

typedef struct mg_node_type {
    const char *name;
    const char *doc;
    int default_channels, min_channels, max_channels;
    const mg_param_spec *params;
    int n_params;
    const mg_port_spec *ports;
    int n_ports;
    const mg_readout_spec *readouts;
    int n_readouts;
    size_t state_size;
    int needs_fifo;    /* 1: the node streams through an mg_fifo */
    /* [control] allocate and compute constants; 0 = ok, else an error code */
    int (*prepare)(void *state, const mg_prepare_ctx *ctx);
    /* [audio] arithmetic only */
    void (*process)(void *state, const mg_proc *p);
    /* [audio] clear internal history */
    void (*reset)(void *state);
    /* [control] free what prepare allocated */
    void (*release)(void *state);
    /* [audio] optional setter: a parameter got a new target (node domain) */
    void (*on_param)(void *state, int index, float target);
    /* [control] optional: the node's latency in samples (look-ahead, FFT
     * frames), fixed after prepare; the graph delays parallel paths by it */
    int (*latency)(const void *state);
    /* [control] optional: copy up to n floats the node captured on the audio
     * thread (a measurement window it has flagged complete) into dst; returns
     * how many. Python node actions read it (mixgraph.server.actions). */
    int (*capture)(void *state, float *dst, int n);
    /* 1: the node's outputs are the engine's planar hardware input buffers
     * (channels hw_first..): nothing is copied (the input node) */
    int outputs_are_hw_in;
    /* [control] optional: load state that `capture` gave (a learned noise
     * profile) into a node not yet in any plan; 0 = ok, -1 = refused (wrong
     * size, e.g. saved at another sample rate). With it, `capture` is the
     * node's saved state: patches and autosaves keep it. */
    int (*restore)(void *state, const float *src, int n);
    /* [audio] optional: run k nodes of this type at once, e.g. SIMD across
     * the nodes of 64 channel strips. The plan hands it nodes that sit next
     * to each other in its order and do not feed each other (a gang, at most
     * MG_MAX_GANG); states[j] and procs[j] are what process would get. The
     * outputs must equal, bit for bit, k calls of process. */
    void (*process_many)(void *const *states, const mg_proc *procs, int k);
    /* the choice names of the stepped parameters (MG_CHOICES(choices)) */
    const mg_choice_spec *choices;
    int n_choices;
    /* what prepare needs beyond the tables (ctx->type_data): NULL for the
     * built-in types; a type made at run time (an LV2 plugin's, by
     * csrc/lv2host.c) points it at its own description */
    const void *data;
    /* [audio] optional: whether process would, with these parameter values
     * (pv as process gets them), write each output channel c as
     * out[c][i] = in[k + c][i] * gain, one rounded product and nothing else
     * (an aux send at a steady level). Returns k and sets *gain, or -1 when
     * not. A node whose outputs only ever go into buses then need not run:
     * the engine adds in[k + c] * gain into the buses itself, the same
     * samples bit for bit (csrc/engine.c, fold_step). */
    int (*fold)(const void *state, const mg_pv *pv, float *gain);
    /* optional: n_params MG_PARAM_* flags, one per parameter (NULL: none) */
    const unsigned char *param_flags;
    /* [audio] optional: whether process would, with these parameter values,
     * write each output channel c as out[c][i] = in[c % n_in][i] * gain[c],
     * one rounded product and nothing else (a panner or a fader at rest).
     * Returns 0 and sets gain[0 .. n_out-1], or -1 when not. It may update
     * the state as process would (a cache of the gains). The engine then
     * runs a channel strip's tail as one fused kernel (csrc/engine.c,
     * fuse_run; the same samples bit for bit). */
    int (*steady)(void *state, const mg_pv *pv, float *gain);
} mg_node_type;

#define MG_MAX_GANG 64

typedef struct {
    uint64_t time;     /* sample time; MG_TIME_NOW = at the next block */
    int32_t kind;
    int32_t index;
    float value;
    uint32_t seq;
    void *ptr;
    int32_t frames;    /* MG_CMD_RAMP: its length in samples */
    int32_t curve;     /* MG_CMD_RAMP: MG_CURVE_* */
} mg_cmd;

typedef struct {
    uint64_t time;
    int32_t kind;
    int32_t index;
    int64_t value;
    void *ptr;
} mg_event;

typedef struct {
    uint64_t time;          /* samples processed so far */
    uint64_t blocks;        /* engine_process calls */
    double load;            /* smoothed DSP load, fraction of the block time */
    double mean_us;         /* smoothed cost of one engine_process call */
    double worst_us;        /* worst call since the start */
    uint64_t xruns;
    uint64_t late;          /* events applied late */
    uint64_t nan_scrubbed;  /* non-finite output samples replaced by 0 */
    uint64_t clipped;       /* output samples held at the ceiling */
    uint64_t events_lost;   /* audio->control events dropped (ring full) */
    uint64_t rt_allocs;     /* engine allocations seen on the audio thread */
    uint64_t heap_deferred; /* commands left in the ring: scheduler full */
    int running;            /* null clock: 0 stopped, 1 running, 2 running SCHED_FIFO */
    double worst_swap_us;   /* since the start: most time one call spent swapping
                               in plans (apply_plan and the op refresh it causes) */
    double worst_swap_block_us; /* since the start: the worst call that swapped
                                   in a plan (worst_us is over every call) */
    uint64_t swap_work;     /* nodes, edges and ops the last swap visited */
    double last_swap_us;    /* the latest call that swapped in a plan: its swap time */
    double last_swap_block_us; /* ... and that whole call's time */
} mg_stats;

/* ---- node types (the C tables are the catalog) ---- [any] */
int mg_type_count(void);
const mg_node_type *mg_type_get(int index);
int mg_type_find(const char *name);

/* ---- engine ---- */
mg_engine *mg_engine_new(double sample_rate, int hw_in_ch, int hw_out_ch,
                         int cmd_capacity, int heap_capacity);     /* [control] */
void mg_engine_free(mg_engine *e);                                /* [control] */
/* Process nframes of interleaved float32 audio; in may be NULL. [audio] */
void mg_engine_process(mg_engine *e, const float *in, float *out,
                       unsigned long nframes);
/* The same with one buffer per channel (JACK's port buffers); in and out
 * may be NULL (silence in, nothing out), the buffers they list may not. [audio] */
void mg_engine_process_planar(mg_engine *e, const float *const *in, float *const *out,
                              unsigned long nframes);
/* The same, as a sequence of calls of `block` frames (offline renders). [audio] */
void mg_engine_process_blocks(mg_engine *e, const float *in, float *out,
                              unsigned long nframes, int block);
/* The PortAudio stream callback: userData is the engine. [audio] */
int mg_pa_callback(const void *input, void *output, unsigned long frames,
                   const void *time_info, unsigned long status_flags,
                   void *user_data);
/* [control] 1 = queued, 0 = the ring is full, -1 = no memory to lay out a
 * plan's pool for the engine's block (the command is not queued) */
int mg_push(mg_engine *e, const mg_cmd *cmd);
/* The same from its fields, numbered in push order (one call from Python). */
int mg_push_cmd(mg_engine *e, uint64_t time, int kind, int index, float value, void *ptr);
int mg_cmd_space(mg_engine *e);                     /* [control] */
/* A taper ramp (MG_CMD_RAMP): parameter `index` of node `ptr` moves to
 * `target` (unit domain) over `frames` samples from sample `time` (0: the
 * next block), along curve (MG_CURVE_*) in its taper's position, from where
 * it is (a ramp or a smoothing under way included); a later set or ramp takes
 * over from where this one has got to. [control] 1 = queued */
int mg_push_ramp(mg_engine *e, uint64_t time, void *ptr, int index, float target,
                 int frames, int curve);
/* The C tapers and curves (csrc/mg_taper.h), for tests against server/tapers.py. [any] */
double mg_taper_value(int taper, double lo, double hi, double norm);
double mg_taper_norm(int taper, double lo, double hi, double value);
double mg_ramp_curve(int curve, double t);
/* A moving MG_PARAM_CONTROL parameter's value (node domain) at frame i of
 * the current call (i >= 0; past the ramp's end: its target), evaluated in
 * closed form from the ramp's formula. [audio: node code, during its call] */
double mg_ctl_at(const mg_ctl *c, int i);
/* For tests: parameter `index` of node n at frame `ahead` from now, as
 * mg_ctl_at gives it to a node (any parameter; a steady one: its value). [control] */
double mg_param_ahead(mg_node *n, int index, int ahead);
/* A parameter's value now, unit domain (a ramp's or smoothing's current point). [any] */
double mg_node_param_now(mg_node *n, int index);
int mg_poll(mg_engine *e, mg_event *ev);            /* [control] 1 = got one */
void mg_engine_stats(mg_engine *e, mg_stats *out);  /* [any] */
/* the worst call since the previous take (the start for the first), and a new window [any] */
double mg_engine_take_worst_us(mg_engine *e);
uint64_t mg_engine_time(mg_engine *e);              /* [any] */
double mg_engine_rate(mg_engine *e);                /* [any] */
/* The safety stage's hard ceiling on the hardware outputs (amplitude, default
 * 1.0); +INFINITY: no ceiling, non-finite samples still scrubbed to 0. */
void mg_engine_set_ceiling(mg_engine *e, float amplitude);  /* [control] before start */
/* 0: run every node by itself even where its type has process_many or fold
 * (tests compare the two); 1 (the default): gangs run together, steady sends
 * fold into their buses. [control] before start */
void mg_engine_set_ganging(mg_engine *e, int on);
/* 0: run a channel strip's tail (panner, fader, folded sends; mg_fuse in
 * csrc/mg_internal.h) step by step even where it could run fused; 1 (the
 * default, with ganging on): fused. The same samples either way (tests
 * compare the two). [control] before start */
void mg_engine_set_fusing(mg_engine *e, int on);
/* [control, before the engine runs] Run plans on `threads` threads: the
 * calling audio thread and threads - 1 workers (csrc/workers.c); 1: one
 * thread, the plan's steps in order. Plans pushed afterwards get their
 * parallel form. Returns the threads it runs (1 if workers cannot start). */
int mg_engine_set_threads(mg_engine *e, int threads);
/* [control] The longest sub-block the engine runs a plan on: the pools of
 * the plans pushed from now on hold that many frames per buffer (the period
 * of the backend: JACK's buffer size, the null clock's block), rounded up to
 * 16 in 16..MG_MAX_BLOCK; returns it. A call of more frames runs in chunks
 * of that many. Default MG_MAX_BLOCK. */
int mg_engine_set_block(mg_engine *e, int frames);
int mg_engine_block(mg_engine *e);
/* Bench A/B: 0 allocates later nodes' blocks with posix_memalign instead
 * of from the node arena of huge pages (csrc/alloc.c); default 1. */
void mg_node_arena(int on);
int mg_engine_threads(mg_engine *e);                               /* [any] */
/* [control] a pushed plan's units of work and its parallel pool's buffers
 * (0: it runs on one thread) */
int mg_plan_units(const mg_plan *p);
int mg_plan_par_buffers(const mg_plan *p);
/* [control] of those, the folding steps' (aux sends written only in a
 * cycle they cannot fold), laid out after the rest (csrc/pool.c) */
int mg_plan_par_fold_buffers(const mg_plan *p);
/* [control, engine not running] steps of a pushed plan's parallel form that
 * folded (engine.c, fold_step) in its last cycle on the workers' path */
int mg_plan_par_folded(const mg_plan *p);
/* [control] A pushed plan's units (bench/threads_trace.py): succ[succ_first[u]
 * .. succ_first[u + 1]) are unit u's successors, its atoms are
 * atom_step/atom_len/atom_kind[atom_first[u] .. atom_first[u + 1]) (kind 0 a
 * step, 1 a gang slice of len steps, -1 a push segment into step atom_step).
 * Arrays of n_units + 1, n_units * n_units and n_atoms; returns n_units (0:
 * one thread), -1 when cap (the length of succ and atom_*) is too short. */
int mg_plan_par_graph(const mg_plan *p, int *succ_first, int *succ, int *atom_first,
                      int *atom_step, int *atom_len, int *atom_kind, int cap);
/* [control] The type name of a finished plan's step. */
const char *mg_plan_step_type(const mg_plan *p, int step);
/* [control] the strips of a laid-out plan's fused strip tails (mg_fuse,
 * csrc/layout.c), and the number of tails (*tails, may be NULL) */
int mg_plan_fused_strips(const mg_plan *p, int *tails);
/* [control, engine not running] the strips a pushed plan's parallel form may
 * run fused (mg_pfz, csrc/pool.c), and of those, the ones that ran fused in
 * its last cycle on the workers' path (*on, may be NULL) */
int mg_plan_par_fused(const mg_plan *p, int *on);
/* [control, engine not running] Trace the worker threads' cycles (on 1, off
 * 0; bench/threads_trace.py): each event's time (us, CLOCK_MONOTONIC), kind
 * (1 cycle published, arg roots; 2/3 a unit starts/ends, arg the unit; 4 a
 * post, arg 0 to the audio thread, 1 to a worker; 5 a thread wakes from its
 * semaphore; 6 a thread goes to sleep; 7 the cycle is over), thread (0 the
 * audio thread, i worker i) and arg. read returns the events since the last
 * read (at most cap, and at most 2^18 are kept). -1: no workers. */
int mg_engine_trace(mg_engine *e, int on);
/* [control] How the threads share a cycle (docs/architecture.md): a thread
 * with nothing ready spins up to spin_us for more before it sleeps (within a
 * cycle only; 0: sleeps at once). Each cycle runs on the workers or on the
 * audio thread alone (the one-thread path), whichever has been faster,
 * measured; a cycle whose one-thread time is under min_work_us never wakes a
 * worker. min_work_us 0: always the workers; < 0: every other cycle (tests);
 * <= -2: the workers' path on the audio thread alone, no worker woken (bench:
 * what the parallel form itself costs on one core). Defaults 50 and 20. Returns -1 without workers. */
int mg_engine_set_sched(mg_engine *e, double spin_us, double min_work_us);
/* [control] Whether each audio thread stops spinning while its spins are
 * lost (run out their bound, or preempted: a host with more runnable threads
 * than cores; csrc/workers.c, spin_pays): 1, the default; 0: always spin up
 * to the bound (tests that need a thread spinning). -1 without workers. */
int mg_engine_set_spin_adapt(mg_engine *e, int on);
/* [control; bench] The audio threads' counters since the engine was made
 * (csrc/workers.c): MG_PSTAT_N values per thread (0 the audio thread, i
 * worker i) into v[t * MG_PSTAT_N + k], at most cap values. Returns the
 * threads, 0 without workers. Each thread writes its own; read while the
 * engine runs they are a moment's values. */
#define MG_PSTAT_CYCLES 0      /* cycles it took part in (ran the workers' path) */
#define MG_PSTAT_UNITS 1       /* units it ran */
#define MG_PSTAT_HANDED 2      /* units it made ready and handed to another thread */
#define MG_PSTAT_SHARED 3      /* units it made ready and queued for any thread */
#define MG_PSTAT_KEPT 4        /* units it made ready and kept for itself */
#define MG_PSTAT_ROOTS_OTHER 5 /* another thread's roots it took */
#define MG_PSTAT_POP_OTHER 6   /* units it took from another thread's queue */
#define MG_PSTAT_SPINS 7       /* times it spun for work within a cycle */
#define MG_PSTAT_SPIN_FOUND 8  /* spins that found work */
#define MG_PSTAT_SPIN_NS 9     /* ns spent spinning */
#define MG_PSTAT_SLEEPS 10     /* semaphore waits (audio thread: within a cycle) */
#define MG_PSTAT_POSTS 11      /* semaphore posts it made (wakes) */
#define MG_PSTAT_BUSY_NS 12    /* ns inside cycles (units, spins, scheduling) */
#define MG_PSTAT_START_NS 13   /* workers: ns from a cycle's publication to joining it */
#define MG_PSTAT_HELPED 14     /* parts of another thread's mg_par_for it ran */
#define MG_PSTAT_SPIN_LOST 15  /* spins that ran out their bound or were preempted */
#define MG_PSTAT_SPIN_SKIP 16  /* spins not made: its recent spins were lost */
#define MG_PSTAT_N 17
int mg_engine_par_stats(mg_engine *e, uint64_t *v, int cap);
/* [control, tests] The protocol by which mg_par_for shares a job's parts,
 * alone: a helper thread and this one run `jobs` jobs of 1 .. max_parts
 * parts (a seeded pseudo-random count each). Returns the jobs in which a part
 * had not run exactly once when mg_par_for returned, or ran later, or a part
 * beyond the job's ran (0: none); -1 when it could not start. *helped: the
 * parts the helper ran. */
int mg_par_for_selftest(int jobs, int max_parts, unsigned seed, uint64_t *helped);
/* [control, the audio thread stopped] Wait until no worker thread may still
 * be reading a plan of the last cycle (one preempted while it left the
 * cycle), before plans the engine has run are freed (Session.close). */
void mg_engine_quiesce(mg_engine *e);
/* [control; bench] Log each engine call's wall-clock time (us) into us[0 ..
 * cap) from now on, as long as there is room (a live backend's blocks);
 * us NULL: stop, and return how many were logged. A call under way may still
 * write one entry after the stop, so the caller keeps us alive until the audio
 * thread has stopped (bench/mix64.py: after null_stop) or a block has passed. */
int mg_engine_block_log(mg_engine *e, double *us, int cap);
/* [control; bench] The call trace (bench/jackd.py --trace): from now on each
 * engine call writes one record into rec[n % cap] (a ring: the last cap calls
 * are kept), n counted from 0; rec NULL: stop. Returns the calls recorded
 * since the trace was set (read it while it runs, or after it is stopped).
 * A call under way may still write one record after the stop: the caller
 * keeps rec alive until a period has passed. Off (the default) it costs one
 * predictable branch per call and per chunk. Times are CLOCK_MONOTONIC ns. */
typedef struct {
    uint64_t start_ns;  /* the backend's callback began (mg_engine_call_begin), else the call */
    uint32_t engine_ns; /* from start_ns: the engine call began (the backend's MIDI before) */
    uint32_t drain_ns;  /* from start_ns: commands drained and due events applied, 1st chunk */
    uint32_t end_ns;    /* from start_ns: the call ended */
    uint32_t cpu_ns;    /* the thread's CPU time over the same span (CLOCK_THREAD_CPUTIME_ID) */
    uint32_t cmds;      /* commands taken off the control ring in this call */
    uint32_t applied;   /* parameter sets and ramps applied (MIDI's included) */
    uint32_t swaps;     /* plans swapped in */
    uint16_t frames;
    int16_t cpu;        /* the CPU the call ended on (rdtscp's TSC_AUX; -1: unknown) */
} mg_call_rec;
uint64_t mg_engine_call_trace(mg_engine *e, mg_call_rec *rec, uint32_t cap);
/* [control, before the audio thread runs] Bounded work per block: at most n
 * parameter sets and ramps queued for "now" (MG_TIME_NOW) are taken off the
 * command ring in one block (an engine call, or each chunk of a call longer
 * than the plan's block); the rest stay queued, in order with everything
 * behind them, for the next blocks. 0 (the default, offline
 * renders): no limit. A live daemon sets MG_SET_CAP_LIVE. */
#define MG_SET_CAP_LIVE 128
void mg_engine_set_cap_sets(mg_engine *e, uint32_t n);
/* [any] How many blocks left "now" sets for the next block (the cap above). */
uint64_t mg_engine_sets_carried(mg_engine *e);
/* [audio] A backend's callback begins (csrc/jack.c, before its MIDI): the
 * call trace's start; a no-op while the trace is off. */
void mg_engine_call_begin(mg_engine *e);
int mg_engine_trace_read(mg_engine *e, double *t, int *kind, int *thread, int *arg, int cap);
/* [audio] mg_engine_process_blocks, with each call's wall-clock time in
 * us[0 .. ceil(nframes / block)) (microseconds; bench/mix64.py) */
void mg_engine_process_blocks_timed(mg_engine *e, const float *in, float *out,
                                    unsigned long nframes, int block, double *us);
/* Null backend: a C thread paced by CLOCK_MONOTONIC. [control] */
int mg_null_start(mg_engine *e, int block_frames);
void mg_null_stop(mg_engine *e);
void mg_engine_add_xruns(mg_engine *e, uint64_t n);  /* [any] */
/* [control] mlockall(current and future): no page of the process is reclaimed,
 * so the audio thread never faults memory back in. 0, or the errno. */
int mg_lock_memory(void);

/* ---- native JACK client (csrc/jack.c) ---- [control] unless marked */
typedef struct mg_jack mg_jack;
int mg_jack_available(void);      /* 1 when built with libjack (MG_HAVE_JACK) */
/* A client with ports in_1..in_<n_in>, out_1..out_<n_out> whose process
 * callback runs the engine; never starts a server (server_name NULL or "":
 * the default one). NULL on failure, the reason in err. Not yet active. */
mg_jack *mg_jack_open(mg_engine *e, const char *client_name, const char *server_name,
                      int n_in, int n_out, char *err, int err_len);
/* 1 when the server runs (its rate and period filled in), else 0. */
int mg_jack_probe(const char *server_name, uint32_t *rate, uint32_t *period);
int mg_jack_activate(mg_jack *j); /* 0, or -1 */
/* Before activation: pin JACK's process thread to `cpu` (-1: leave it to the
 * scheduler), done once by the thread itself before its first period. */
void mg_jack_set_cpu(mg_jack *j, int cpu);
int mg_jack_pinned(mg_jack *j);   /* [any] 1 pinned, 0 not asked (yet), -errno: refused */
long mg_jack_thread_id(mg_jack *j); /* [any] the process thread's kernel id (0: not yet) */
void mg_jack_close(mg_jack *j);   /* deactivate, close, free (also after the server went) */
int mg_jack_lost(mg_jack *j);     /* [any] 1 once the server has shut the client down */
int mg_jack_busy(mg_jack *j);     /* [any] 1 while the process callback runs */
const char *mg_jack_lost_reason(mg_jack *j);
const char *mg_jack_client_name(mg_jack *j);
uint32_t mg_jack_rate(mg_jack *j);
uint32_t mg_jack_period(mg_jack *j);           /* [any] frames per period, now */
uint64_t mg_jack_period_changes(mg_jack *j);   /* [any] buffer-size changes seen */
uint64_t mg_jack_xruns(mg_jack *j);            /* [any] xrun callbacks */
/* [any] libjack errors reported on its process thread: counted, never printed there */
uint64_t mg_jack_rt_errors(void);
int mg_jack_realtime(mg_jack *j);              /* 1 when JACK runs its thread SCHED_FIFO */
/* The graph's latency in frames, added to the ports' latency ranges. */
void mg_jack_set_latency(mg_jack *j, uint32_t frames);
int mg_jack_connect(mg_jack *j, const char *src, const char *dst);  /* 0 (or already), -1 */
/* Audio (midi 0) or MIDI (midi 1) ports matching a regular expression
 * (JackPortFlags), one per line in buf; returns how many matched. */
int mg_jack_ports(mg_jack *j, const char *pattern, unsigned long flags, int midi, char *buf,
                  int len);

/* ---- MIDI maps (csrc/midi.c) ----
 * An engine has at most one mg_midi (mg_engine_set_midi, set once); the JACK
 * process callback feeds it midi_in's events. The control side frees it
 * after the engine has stopped (server/engine.py's free). */
#define MG_MIDI_MAX_MAPS 512
#define MG_MIDI_CC 1
#define MG_MIDI_CC14 2
#define MG_MIDI_NRPN 3
#define MG_MIDI_PB 4
#define MG_MIDI_NOTE 5
#define MG_MIDI_PC 6
#define MG_MIDI_ENC_R 7
#define MG_MIDI_ENC_L 8
#define MG_MIDI_ENC_2 9
#define MG_MIDI_ENC_B 10
#define MG_MIDI_MOMENTARY 0
#define MG_MIDI_TOGGLE 1
#define MG_MIDI_TRIGGER 2
#define MG_MIDI_F_APPLIED 1   /* the audio thread set the parameter (at applied_at) */
#define MG_MIDI_F_DISPATCH 2  /* the control thread acts: no parameter, or no engine */
#define MG_MIDI_F_PICKUP 4    /* ignored: soft takeover waits for the control */
#define MG_MIDI_F_OFF 8       /* a note off (learn) */

typedef struct {
    uint64_t time;        /* engine sample time of the frame it arrived in */
    uint64_t applied_at;  /* sample time the value applies (MG_MIDI_F_APPLIED) */
    int32_t slot;         /* the map's slot, -1: no map (learning) */
    int32_t kind, channel, number, value;  /* channel 0-15; value raw (encoders: ticks) */
    float out;            /* the value in the parameter's units (or the map's range) */
    int32_t flags;        /* MG_MIDI_F_* */
} mg_midi_event;

mg_midi *mg_midi_new(void);                                    /* [control] */
void mg_midi_free(mg_midi *m);                                 /* [control] */
void mg_engine_set_midi(mg_engine *e, mg_midi *m);             /* [control] once */
mg_midi *mg_engine_midi(mg_engine *e);                         /* [any] */
/* A table of n maps, generation gen; maps added in order. [control] */
mg_midi_table *mg_midi_table_new(int n, uint32_t gen);
void mg_midi_table_free(mg_midi_table *t);
/* node NULL: not a parameter (the control thread dispatches); lut: lut_n
 * values in the parameter's units, control position 0..1 evenly; step:
 * encoders, position per tick. 0, or -1 for bad arguments. */
int mg_midi_table_add(mg_midi_table *t, int slot, int stamp, int kind, int channel,
                      int number, int mode, mg_node *node, int index, int pickup,
                      const float *lut, int lut_n, float step);
/* Hand a table to the audio thread; returns the one it replaced before the
 * audio thread took it (the caller frees it), or NULL. [control] */
mg_midi_table *mg_midi_publish(mg_midi *m, mg_midi_table *t);
uint32_t mg_midi_adopted(mg_midi *m);      /* [any] generation the audio thread uses */
void mg_midi_set_learn(mg_midi *m, int on);  /* [any] 1: unmapped controls are posted */
/* Control path (no JACK): the value the model holds for a map's parameter. */
void mg_midi_set_current(mg_midi *m, int slot, float value);
void mg_midi_set_held(mg_midi *m, int slot, int on);  /* [control] 1: touched, ignore the control */
int mg_midi_poll(mg_midi *m, mg_midi_event *ev);               /* [control] 1 = got one */
int mg_midi_send(mg_midi *m, const uint8_t *bytes, int len);   /* [control] 1 = queued */
/* events, applied, pickup_waits, malformed, sysex, lost, sent, out_dropped, unmapped */
/* [any] the counters in the order of server/midi.py STATS: writes at most max,
 * returns how many there are */
int mg_midi_stats(mg_midi *m, uint64_t *out, int max);
/* [audio] adopt a published table (at the start of a period) */
void mg_midi_begin(mg_midi *m);
/* [audio] raw bytes of one event at sample time `time`: decoded, matched and
 * applied at time + delay. e NULL (the control thread's ALSA path): nothing
 * is applied, matches are posted MG_MIDI_F_DISPATCH. */
void mg_midi_input(mg_midi *m, mg_engine *e, const uint8_t *b, int len, uint64_t time,
                   uint64_t delay);
int mg_midi_next_out(mg_midi *m, uint8_t *bytes);  /* [audio] next feedback message: its length */
void mg_midi_count_out_dropped(mg_midi *m, uint64_t n);  /* [audio] */
/* [audio] schedule a parameter target at sample time `time` in the engine's
 * scheduler (at once when due or the scheduler is full): 1 scheduled, 0
 * applied now, -1 the node is not in the running plan. */
int mg_engine_schedule_param(mg_engine *e, mg_node *n, int index, float v, uint64_t time);
float mg_node_param_target(const mg_node *n, int index);  /* [audio] its target, in units */

/* ---- nodes ---- [control] */
mg_node *mg_node_new(mg_engine *e, int type_index, int channels, int hw_first,
                     uint64_t seed, mg_fifo *fifo, int *error);
/* The same for a type that is not in the registry: one made at run time from
 * a description (an LV2 plugin's: mg_lv2_type), which outlives the node. */
mg_node *mg_node_new_type(mg_engine *e, const mg_node_type *t, int channels, int hw_first,
                          uint64_t seed, mg_fifo *fifo, int *error);
void mg_node_free(mg_node *n);
/* Set a parameter before the node is in any plan (no smoothing). */
void mg_node_init_param(mg_node *n, int index, float unit_value);
float mg_node_readout(mg_node *n, int flat_index);  /* [any] */
int mg_node_n_in(mg_node *n);
int mg_node_n_out(mg_node *n);
int mg_node_latency(mg_node *n);                    /* samples */
/* Copy up to max floats of the node's captured data (its `capture` hook);
 * -1 when the type has none. */
int mg_node_capture(mg_node *n, float *dst, int max);
/* Load saved state into a node that is in no plan yet (its `restore` hook);
 * -1 when the type has none or refuses it. */
int mg_node_restore(mg_node *n, const float *src, int count);

/* ---- edges and plans ---- [control] */
mg_edge *mg_edge_new(float initial_gain);
/* Set the gain of an edge that no plan has used yet (no command may reach it). */
void mg_edge_set_gain(mg_edge *edge, float gain);
/* An edge that delays its signal by delay_samples (latency compensation). */
mg_edge *mg_edge_new_delayed(float initial_gain, int channels, int delay_samples);
int mg_edge_delay(mg_edge *edge);
void mg_edge_free(mg_edge *edge);
float mg_edge_gain(mg_edge *edge);                  /* [any] */
mg_plan *mg_plan_new(int n_steps, int n_mix, int n_edges);
void mg_plan_free(mg_plan *p);
void mg_plan_set_step(mg_plan *p, int step, mg_node *node);
int mg_plan_add_mix(mg_plan *p, int step, int dst_in, mg_node *src,
                    int src_out, mg_edge *edge, int edge_ch);
void mg_plan_add_edge(mg_plan *p, mg_edge *edge);
int mg_plan_finish(mg_plan *p);  /* after all steps and mixes; 0 = ok */
/* A whole plan in one call, finished: the nodes in topological order (Kahn's
 * waves, each sorted stably by rank[], the node's type order, so that nodes of
 * a type sit together where they can run as a gang), then for each node the
 * delay groups' member ops (groups in the order of their first member edge),
 * its other connections' ops in edge order, and the groups' outputs. Edge i
 * runs from node src[i] to node dst[i] into group[i] (-1: none); wire[4i..]
 * is (first input channel of the port it feeds, first output channel of its
 * source port, channels of the input, 1 if each channel reads its own source
 * channel or 0 if a mono source fans out). Group j is gptr[j], feeding input
 * channels gbase[j].. of its node. order[] gets the node index of each step;
 * *err: 0 ok, 1 the edges close a cycle, 2 out of memory, 3 bad wiring,
 * 4 mg_plan_finish refused the plan. */
mg_plan *mg_plan_build(int n_nodes, mg_node *const *nodes, const int *rank, int n_ranks,
                       int n_edges, const int *src, const int *dst, mg_edge *const *eptr,
                       const int *group, const int *wire, int n_groups,
                       mg_dgroup *const *gptr, const int *gbase, int *order, int *err);
/* ---- plan inputs kept across plans ---- [control]
 * The nodes, edges and delay groups the next plan is built from, updated per
 * edit instead of listed whole for every plan: mg_pin_build builds exactly
 * what mg_plan_build builds from arrays of them in this order: each kind's
 * regions one after the other (nodes: 0 live, 1 removed and still running;
 * edges: 0 live, 1 bypass stand-ins, 2 removed and fading), each region in
 * the order its entries were put there. Each add returns a handle (never
 * reused; -1 out of memory). An edge runs from node handle src to node
 * handle dst into group handle group (-1: none), with wire[4] as in
 * mg_plan_build; an edge whose node was dropped is left out. A group feeds
 * input channels gbase.. of its node. kind: 0 node, 1 edge, 2 group. */
typedef struct mg_pin mg_pin;
mg_pin *mg_pin_new(void);
void mg_pin_free(mg_pin *pin);
int mg_pin_add_node(mg_pin *pin, mg_node *node, int rank);
void mg_pin_set_rank(mg_pin *pin, int node, int rank);
/* on: node (a handle) waits to join the plans: mg_pin_build leaves it and its
 * edges out, in its place; off: it is in the next plan built. */
void mg_pin_wait(mg_pin *pin, int node, int on);
int mg_pin_add_group(mg_pin *pin, mg_dgroup *g, int gbase);
int mg_pin_add_edge(mg_pin *pin, mg_edge *edge, int region, int src, int dst, int group,
                    const int *wire);
/* Move an entry to the end of a region of its kind (0 ok, -1 no such entry). */
int mg_pin_move(mg_pin *pin, int kind, int handle, int region);
/* Exchange the places of two entries of a kind (a replacement takes the
 * place of what it replaces). */
int mg_pin_swap(mg_pin *pin, int kind, int a, int b);
void mg_pin_drop(mg_pin *pin, int kind, int handle);
int mg_pin_count(const mg_pin *pin, int kind);  /* entries held now */
/* The plan of everything held now (*err as mg_plan_build's); NULL on failure. */
mg_plan *mg_pin_build(mg_pin *pin, int n_ranks, int *err);
/* The node handle at step `step` of the last plan mg_pin_build made (-1 none). */
int mg_pin_step_node(const mg_pin *pin, int step);
/* 1 if two finished plans run the same steps with the same mix operations in
 * the same order (buffers of their own pools aside): tests. */
int mg_plan_same(const mg_plan *a, const mg_plan *b);
/* After finish: the gangs (first step, size) of more than one node; returns
 * how many there are (only the first max are written). */
int mg_plan_gangs(const mg_plan *p, int *steps, int *sizes, int max);
/* After finish: how many steps from `step` run as one gang (1 alone, 0 inside one). */
int mg_plan_step_gang(const mg_plan *p, int step);
/* After finish: how many channel buffers the plan's outputs share (each
 * output holds one from its step to its last reader, then it is reused). */
int mg_plan_buffers(const mg_plan *p);
/* The frames each of those buffers holds: the block of the engine the plan
 * was pushed to (mg_engine_set_block); 0 before, for a finished plan. */
int mg_plan_block(const mg_plan *p);
/* MG_CMD_EDGE: index = fade length in frames, value = target gain, time =
 * frames to hold the current gain before the fade starts (0: at once; used
 * to meet, at the output, the fade of a connection delayed differently). */

/* ---- delay groups (shared latency compensation) ---- [control]
 * Connections into one input port that need the same compensation delay
 * mix into a group (each with its own edge gain and fades, applied where
 * the signal enters the group); the group delays the sum once and adds it to
 * the input. A group lives as long as a plan or a member edge uses it. */
mg_dgroup *mg_dgroup_new(int channels, int delay_samples);  /* NULL if bad/no memory */
int mg_dgroup_delay(mg_dgroup *g);
int mg_dgroup_channels(mg_dgroup *g);
void mg_dgroup_free(mg_dgroup *g);
int mg_dgroup_live(void);  /* [any] groups allocated and not yet freed (all engines) */
/* A member connection channel: group channel g_ch (+)= edge gain * src.
 * Add every member op of a group before the group's out ops, in the same
 * step as the destination node. */
int mg_plan_add_group_mix(mg_plan *p, int step, mg_dgroup *g, int g_ch, mg_node *src,
                          int src_out, mg_edge *edge);
/* The group's channel g_ch, delayed, into input channel dst_in of the step's node. */
int mg_plan_add_group_out(mg_plan *p, int step, int dst_in, mg_dgroup *g, int g_ch);

/* ---- sample fifo (disk streaming, taps) ---- [any: one producer, one consumer] */
mg_fifo *mg_fifo_new(int channels, int frames);     /* [control] */
void mg_fifo_free(mg_fifo *f);                      /* [control] */
int mg_fifo_channels(mg_fifo *f);
int mg_fifo_readable(mg_fifo *f);                   /* frames */
int mg_fifo_writable(mg_fifo *f);                   /* frames */
int mg_fifo_write(mg_fifo *f, const float *frames, int n);
int mg_fifo_read(mg_fifo *f, float *frames, int n);
uint64_t mg_fifo_dropped(mg_fifo *f);
void mg_fifo_add_dropped(mg_fifo *f, uint64_t n);
/* Player rewind handshake: the audio side bumps the request counter; the
 * disk side answers with the write position where the new data starts. */
uint32_t mg_fifo_rewind_request(mg_fifo *f);
void mg_fifo_rewind_ack(mg_fifo *f, uint32_t gen);
uint32_t mg_fifo_flags(mg_fifo *f);                 /* node -> worker flags */
void mg_fifo_set_flags(mg_fifo *f, uint32_t flags);  /* [audio] */
void mg_fifo_request_rewind(mg_fifo *f);             /* [audio] */
/* [audio] 1 when the fifo holds data for the latest rewind request */
int mg_fifo_rewind_sync(mg_fifo *f, uint32_t *synced_gen);
void mg_fifo_set_status(mg_fifo *f, uint32_t status); /* [disk worker] */
uint32_t mg_fifo_status(mg_fifo *f);                 /* [audio] */
void mg_fifo_set_length(mg_fifo *f, uint64_t frames); /* [disk worker] player's file */
uint64_t mg_fifo_length(mg_fifo *f);                 /* [audio] 0 when unknown */

#define MG_FIFO_FLAG_LOOP 1
#define MG_FIFO_FLAG_ACTIVE 2
#define MG_FIFO_STATUS_EOF 1

/* ---- LV2 plugins through lilv (csrc/lv2host.c) ---- [control]
 * Built where <lilv/lilv.h> exists (MG_HAVE_LILV); elsewhere mg_lv2_available
 * is 0 and the rest say so. The world is loaded once (LV2_PATH honoured). */
typedef struct {
    const char *uri;
    const char *name;
    const char *klass;      /* the plugin class's label ("Reverb Plugin") */
    const char *author;
    int hard_rt;            /* lv2:hardRTCapable */
    int n_audio_in, n_audio_out;
    int latency_readout;    /* index of the readout reporting latency, or -1 */
    int n_presets;
} mg_lv2_info;
int mg_lv2_available(void);
/* Load the world (once); the number of plugins, or -1 (reason in err). */
int mg_lv2_load(char *err, int err_len);
const char *mg_lv2_uri(int index);          /* the index-th plugin's URI, or NULL */
/* The node type of a plugin (made once per URI, kept for the process's life):
 * NULL with the reason in err (unknown URI, a required feature the host lacks,
 * a port kind it cannot connect). */
const mg_node_type *mg_lv2_type(const char *uri, char *err, int err_len);
int mg_lv2_describe(const mg_node_type *t, mg_lv2_info *out);  /* 0, or -1: no LV2 type */
/* The plugin's type with its main audio inputs as one port `in` of as many
 * channels and its audio outputs as one port `out` (side chains stay mono
 * ports by symbol); t itself when there is nothing to group (mono in and out,
 * or a side chain named in/out). Made once per plugin. The node's channel
 * buffers are the same, in the same order, as t's. */
const mg_node_type *mg_lv2_grouped(const mg_node_type *t);
/* A placeholder type for a plugin this machine lacks (any build, with or without
 * lilv): mono ports named in ins and outs, parameters named in params (values
 * in defs, any value accepted), all comma-separated; audio passes through
 * (input k to output k). A new type each call, kept for the process's life. */
const mg_node_type *mg_lv2_placeholder(const char *doc, const char *ins, const char *outs,
                                       const char *params, const float *defs);
/* The reason the last lv2 node's prepare failed ("" if none). */
const char *mg_lv2_last_error(void);
/* Presets of a plugin: the index-th preset's URI and label (NULL past the end). */
const char *mg_lv2_preset(const mg_node_type *t, int index, const char **label);
/* The control values a preset sets, by parameter index, into values[0..n) (NaN
 * where the preset names no value); how many it set, or -1 (no such preset). */
int mg_lv2_preset_values(const mg_node_type *t, const char *preset_uri, float *values, int n);

/* ---- LV2 state, files and log (nodes/lv2.c, csrc/lv2host.c) ---- [control] */
/* The name and state directory of the next lv2 node made (state:makePath puts
 * its files there, sandboxed; log lines carry the name). */
void mg_lv2_next_node(const char *name, const char *dir);
/* The plugin's state (LV2_State_Interface save) into buf as records of
 * [key urid u32][type urid u32][flags u32][size u32][bytes, padded to 8]: the
 * bytes used, -1 (no state interface or not an lv2 node), -2 (more than cap or
 * the plugin failed: reason in mg_lv2_last_error). */
int mg_lv2_state_save(mg_node *n, uint8_t *buf, int cap);
/* Restore such records into a node in no plan yet; waits (at most timeout_ms)
 * for the work the plugin scheduled while restoring: 0, -1 as above, or the
 * plugin's LV2_State_Status (reason in mg_lv2_last_error). */
int mg_lv2_state_restore(mg_node *n, const uint8_t *buf, int len, int timeout_ms);
/* A URI's URID (urid:map; 0 without lilv) and back (urid:unmap, NULL if unknown). */
uint32_t mg_lv2_urid(const char *uri);
const char *mg_lv2_unurid(uint32_t id);
/* The oldest log line a plugin wrote (any thread; a lock-free ring): 1 with
 * level (0 error, 1 warning, 2 note, 3 trace), node name and text, 0 if none. */
int mg_lv2_log_pop(int *level, char *node, int node_len, char *msg, int msg_len);
/* Log lines lost because the ring was full. */
uint64_t mg_lv2_log_dropped(void);

/* ---- self tests (used by the pytest suite) ---- */
int mg_ring_stress(int n_items, int capacity);      /* 0 = ok */
uint64_t mg_rt_alloc_count(void);
/* dsp_fft.h's real FFT of n samples (a power of two, 128..65536): re/im = rfft(x)
 * (n/2 + 1 bins each), back = n * irfft(re + i im) (n samples). 0, or -1 for
 * a bad n or no memory. */
int mg_fft_check(int n, const float *x, float *re, float *im, float *back);
/* The same with a window: re/im = rfft(x w) (mg_fft_forward_win), then
 * ola[i] += n * irfft(re + i im)[i] * w[i] (mg_fft_inverse_ola). */
int mg_fft_check_win(int n, const float *x, const float *w, float *re, float *im, float *ola);

#endif
