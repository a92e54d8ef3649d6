/* mixgraph C core: structures shared by engine.c, plan.c and ring.c.
 * Every field says which thread owns it. */
#ifndef MG_INTERNAL_H
#define MG_INTERNAL_H

#include <stdatomic.h>
#include <pthread.h>

#include "mg_alloc.h"
#include "mg_node.h"

/* A generic single-producer / single-consumer ring of fixed-size items. */
typedef struct {
    _Atomic uint64_t head;  /* written by the producer */
    _Atomic uint64_t tail;  /* written by the consumer */
    uint64_t mask;          /* capacity - 1 (power of two); immutable */
    size_t item;            /* item size in bytes; immutable */
    unsigned char *buf;
} mg_ring;

int mg_ring_init(mg_ring *r, int capacity, size_t item);
void mg_ring_destroy(mg_ring *r);
int mg_ring_push(mg_ring *r, const void *item);
int mg_ring_pop(mg_ring *r, void *item);
int mg_ring_space(mg_ring *r);

struct mg_ctl {
    /* Laid out for node_ramps (csrc/engine.c): a moving parameter is visited
     * every call, and a smoothing (the OSC fader moves) reads and writes only
     * the first line, plus the second when geometric (lane[]); the third
     * holds what the call never reads. Aligned to a line (mg_node_new puts
     * params[] on one): 152 bytes at any alignment spanned 3-4 lines, of
     * which a geometric smoothing touched 3. */
    /* first line: every call while it moves (audio) */
    _Alignas(64) int remaining; /* samples left in the ramp (audio) */
    int control;        /* MG_PARAM_CONTROL (immutable after mg_node_new) */
    int ramp;           /* 1: `remaining` counts down a taper ramp (audio) */
    int geometric;      /* 1: cur *= step (audio) */
    int total;          /* its length in samples */
    float tgt;          /* target, node domain (audio) */
    double cur;         /* current value, node domain (audio); double so a
                         * ramp does not depend on where blocks split it */
    /* smoothing (ramp == 0), laid out so that its samples are independent
     * chains, not one multiply or add per sample waiting on the previous
     * (node_ramps): sample k of the ramp (1..total) is base + step * k when
     * linear; when geometric, lane[k % 4] holds it before it is written and
     * times step4 after, so four products are in flight at once. Both
     * depend only on k, never on where blocks split the ramp. (audio) */
    double step4;       /* geometric: step^4 */
    double base;        /* linear: the value the ramp started from */
    double step;        /* linear increment or geometric ratio (audio) */
    int curve;          /* its MG_CURVE_* */
    /* a MG_PARAM_CONTROL parameter (node_ramps, mg_ctl_at): what the current
     * call evaluates from, as it was at the call's start */
    int at_taper;       /* 1: a taper ramp, 0: a smoothing */
    /* second line: a geometric smoothing's chains, a taper ramp's positions */
    double lane[4];     /* geometric: the next value of each chain, by k % 4 */
    double p0, p1;      /* its start and end taper positions */
    double pos;         /* the taper position it has reached */
    int at0;            /* `remaining` at the call's start */
    /* control thread writes before the node is published, audio after */
    float target_unit;  /* last target, unit domain */
    /* third line */
    const mg_param_spec *spec; /* immutable after mg_node_new */
};
typedef struct mg_ctl mg_param;

_Static_assert(offsetof(mg_param, lane) == 64 && sizeof(mg_param) == 192,
               "mg_param: a moving parameter's fields in its first line, chains in its second");

struct mg_node {
    /* Laid out for run_plan (docs/architecture.md "Buffers"): the first
     * cache line holds what a step never reads (immutable or cold fields);
     * the second everything a step reads and writes of the node itself
     * (node_ramps, feed_step, step_proc, the process call), and right after
     * it, at the struct's end, in_ptr[], then out_ptr[], pv[] and the
     * readouts (mg_node_new packs them with no gaps), so that a step touches
     * the node's line 2 and the few lines of its pointers and values, and no
     * line it does not use. The parameters, and the node's own block buffers'
     * pointers (unfinished plans), come after its state. */
    /* immutable after mg_node_new; cold */
    double sample_rate;
    float *ramp_mem;          /* n_params * MG_MAX_BLOCK, then the in_base and
                                 out_base buffers: one mg_cold_alloc block */
    float **in_base;          /* n_in buffers of MG_MAX_BLOCK */
    float **out_base;         /* n_out buffers of MG_MAX_BLOCK */
    uint32_t cold_bytes;      /* ramp_mem's size (mg_node_new refuses more) */
    uint32_t block_bytes;     /* this block's size (mg_calloc_lines) */
    int n_in, n_out;          /* flattened channel counts */
    uint32_t live_gen;        /* generation of the plan that last held it (audio) */
    uint16_t channels;        /* (mg_node_new refuses more than UINT16_MAX) */
    uint16_t n_readout;
    /* audio thread, only while a parameter is set or moves (node_ramps) */
    uint64_t pv_dirty;        /* parameters 0..63 set or moving since their pv[]
                                 entry was last made steady (audio): node_ramps
                                 visits only these while others ramp (a node
                                 with more parameters visits every one) */
    /* second line: a step's */
    _Alignas(64) const mg_node_type *type; /* immutable */
    void *state;              /* immutable */
    mg_pv *pv;                /* audio thread only (set up by control before
                                 publishing), as all below */
    mg_param *params;
    float **out_ptr;          /* = in_ptr + n_in */
    int n_ramping;
    uint8_t pv_fresh;         /* pv[] holds the steady values: nothing to refresh */
    uint8_t pv_same;          /* this call's pv[] is steady and as the last call's */
    uint8_t out_aliased;      /* out_base are the engine's hw input buffers */
    uint16_t in_off;          /* finished plans: in_ptr[] is set for this offset, */
    uint16_t out_off;         /* sub-block offset out_ptr[] currently points at */
    uint32_t in_gen;          /* plan (gen) and */
    uint32_t in_epoch;        /* its ops' epoch (see mg_plan.epoch) */
    uint32_t out_gen;         /* plan whose buffers out_ptr[] points into (0: the
                                 node's own, for unfinished plans) */
    float *in_ptr[];          /* n_in: in_base + sub-block offset, or the plan's */
};

/* The node's readouts (n_readout, written by audio, read by any thread):
 * right after pv[] (mg_node_new), found from the step's line and the type. */
static inline _Atomic float *mg_node_readouts(const mg_node *nd)
{
    return (_Atomic float *)(nd->pv + nd->type->n_params);
}

_Static_assert(offsetof(mg_node, type) == 64 && offsetof(mg_node, in_ptr) == 128,
               "mg_node: one cold line, then one line of a step's fields");

struct mg_edge {
    /* audio thread only after the edge is in a plan. The fields every block
     * touches (advance_ramps, mix_into) come first: they share one cache line */
    float gain;
    float target;
    float step;
    int remaining;
    float g0, g1;             /* gain at the start / end of this sub-block */
    int ramp_n;               /* frames of this sub-block still on the fade */
    int ramp_at;              /* frame of this sub-block where the fade starts
                                 (valid while ramp_n > 0) */
    int hold;                 /* frames to hold the gain before the queued fade
                               * starts (aligns fades of edges whose signals are
                               * delayed differently before they meet) */
    int listed;               /* in the current plan's fading list (audio) */
    uint32_t live_gen;        /* generation of the plan that last held it (audio) */
    /* latency compensation: one delay line per channel, fixed at creation */
    int delay;                /* samples */
    /* mirror for any thread */
    _Atomic float published;
    int channels;
    uint64_t mask;            /* ring capacity - 1 */
    float **dl;               /* channels rings; NULL when delay == 0 */
    uint64_t *dpos;           /* write position per channel (audio) */
};

/* A delay group: the connections into one input port that need the same
 * latency compensation. Each member edge mixes its source (with its own gain
 * and fades) into acc; the sum then goes through ONE delay line per channel
 * and is added to the destination input, so compensation costs one delay
 * line per (destination, port, delay) however many connections share it.
 * Created and freed on the control thread; owned like an edge (a plan that
 * uses it holds a reference), so its rings persist across plan swaps. */
struct mg_dgroup {
    int channels;             /* immutable */
    float **acc;              /* channels accumulators of MG_MAX_BLOCK (audio) */
    mg_edge *line;            /* the delay lines: a unity edge that is never
                                 faded, delay = the group's delay (audio) */
};

typedef struct {
    /* 48 bytes (was 72): a cycle reads every pushed op (a 64-strip mix's
     * ~400), in plan order */
    float *dst;               /* a node input, or a group's accumulator */
    const float *src;
    mg_edge *edge;
    mg_node *src_node;
    /* audio thread: a copy of the edge's gain while it is steady, so a block
     * with no fades reads no edge (refreshed when the plan's fading list
     * changes, see refresh_ops) */
    float g;
    int16_t dst_index;        /* flattened input channel of the step's node */
    int16_t src_index;        /* (add_op refuses channels past INT16_MAX) */
    int16_t edge_ch;          /* which of the edge's delay lines (-1: none) */
    uint8_t assign;           /* first op into dst in its step: dst = src */
    uint8_t alias;            /* the only op into dst: at unity gain the node
                                 reads src in place, nothing is copied */
    uint8_t to_acc;           /* dst is a delay group's accumulator (dst_index -1);
                                 its assign flag holds even in unfinished plans */
    uint8_t fast;             /* edge steady (g0 == g1 == g) and undelayed */
    uint8_t push;             /* finished plans: mixed right after its source
                                 runs (while the source is hot), not at its
                                 destination's step; see mg_plan_finish */
    uint8_t inplace;          /* audio, finished plans: alias at a steady unity
                                 gain, the node reads src (refresh_ops) */
} mg_mixop;

_Static_assert(sizeof(mg_mixop) == 48, "mg_mixop: 48 bytes");

typedef struct {
    /* 32 bytes (run_plan reads every step of the plan each cycle: the steps
     * of a 522-node plan were 457 lines at 56 bytes, are 261) */
    mg_node *node;
    int mix_first;
    int push_first;           /* ops mixed after this step runs: */
    int out_first;            /* finished plans: the node's output buffers are
                                 plan->outb[out_first ..] */
    int clear_first;          /* inputs with no connection (p->clear) */
    uint16_t mix_count;       /* (add_op refuses more than UINT16_MAX) */
    uint16_t push_count;      /* plan->push[push_first ..] (op indices; a plan
                                 with more from one step is refused) */
    uint16_t clear_count;     /* (at most the node's n_in) */
    uint8_t gang;             /* >1: this step and the next gang-1 run through
                                 the type's process_many; 1 alone; 0 inside a
                                 gang (at most MG_MAX_GANG) */
    unsigned inert : 1;       /* nothing to run: no inputs, no parameters, outputs
                                 are the hardware input buffers (input nodes) */
    unsigned pull : 1;        /* audio, finished plans: some ops are mixed at
                                 this step (neither pushed nor read in place;
                                 refresh_ops) */
    unsigned fold : 1;        /* finished plans: the node's type has `fold` and
                                 every op reading its outputs is pushed (no
                                 one else reads them): see fold_step */
    unsigned fold_unity : 1;  /* audio: a folding step whose pushes are all
                                 steady at unity (refresh_ops) */
} mg_step;

_Static_assert(sizeof(mg_step) == 32, "mg_step: 32 bytes");

/* mg_call.flags */
#define MG_CALL_INERT 1       /* mg_step.inert */
#define MG_CALL_FOLD 2        /* mg_step.fold */
#define MG_CALL_PULL 4        /* mg_step.pull (audio: refresh_ops) */
#define MG_CALL_FOLD_UNITY 8  /* mg_step.fold_unity (audio: refresh_ops) */
#define MG_CALL_FUSE 16       /* the first step of a fused strip tail (mg_fuse) */
#define MG_CALL_FUSED 32      /* another member of one (run_calls skips it while
                                 its tail ran fused) */

/* A step of a finished plan as the one-thread path calls it on a sub-block
 * at offset 0 (every block that no timed command splits): what the process
 * call gets, prebuilt when the plan is laid out (mg_plan_layout), so that
 * run_plan's loop reads one line per step, in order, and calls. Its input
 * pointers are the plan's (mg_plan.inb: offset 0), its outputs the pool's
 * (mg_plan.outb); a sub-block at another offset, and the parallel form, set
 * the node's own in_ptr[] and out_ptr[] (feed_step, feed_par) instead. */
typedef struct {
    mg_node *node;
    void *state;              /* node->state */
    union {                   /* the type's process; a gang's first: process_many */
        void (*process)(void *state, const mg_proc *p);
        void (*process_many)(void *const *states, const mg_proc *procs, int k);
    } fn;
    const float *const *in;   /* p->inb + the step's first input */
    float *const *out;        /* p->outb + out_first */
    const mg_pv *pv;          /* node->pv */
    float *readout;           /* mg_node_readouts(node) */
    int push_first;           /* as mg_step */
    uint16_t push_count;
    uint8_t gang;             /* as mg_step */
    uint8_t flags;            /* MG_CALL_* */
} mg_call;

_Static_assert(sizeof(mg_call) == 64, "mg_call: one line");

/* A fused strip tail (csrc/layout.c, mg_plan_fuse; csrc/engine.c, fuse_run):
 * steps in [first, end) of the one-thread path (first: the first of its
 * consecutive panners) that are, for
 * each of `strips` channel strips, a mono-to-stereo node with `steady` (a
 * panner), the stereo node with `steady` it alone feeds, in place (a fader),
 * whose two outputs are pushed into two bus channels, and `sends` folding
 * nodes (aux sends) each reading the fader's outputs in place and pushing
 * into two more bus channels. Every strip writes the same 2 + 2 * sends bus
 * channels (dst), each bus's adds in strip order in the plan, and only the
 * first strip's op into a bus may assign. While every member is at rest and
 * every op steady at unity (ok, refresh_ops), the buses get the same sums
 * from one pass that keeps their samples in registers and never writes the
 * members' outputs; otherwise the steps run as they are. The other steps in
 * [first, end) (a bus its faders complete) run as they are after the pass:
 * none feeds a member or adds into one of its bus channels. A bus channel
 * may be a delay group's accumulator (latency compensation). The ranges of
 * two tails may interleave (a run of strips split where their buses or sends
 * differ): each step's tail is mg_plan.fuse_of (mg_fuse_step). */
#define MG_FUSE_SENDS 3
#define MG_FUSE_TERMS (2 + 2 * MG_FUSE_SENDS)
typedef struct {
    int first, end;           /* the steps it replaces */
    int strips, sends;
    int ok;                   /* audio: refresh_ops found the ops steady, unity,
                                 read in place as planned, nothing pulled */
    float *dst[MG_FUSE_TERMS];          /* term 2j + c: bus channel of pair j,
                                           from the fader's channel c */
    uint8_t assign[MG_FUSE_TERMS];      /* the first strip's op assigns */
    int *pan, *fader, *send;            /* steps: per strip; send: strips x sends */
    int *op;                            /* per strip, its terms' ops (strips x terms) */
    /* audio scratch of fuse_run: per strip its gains, each broadcast to 8
     * floats (pan l, r, fader l, r, then each send's), and its input */
    float *gv;                /* 32-byte aligned, in gv_mem */
    const float **x;
    void *gv_mem;
    /* audio: gv and x hold what every member's pv[] gives while cached and
     * epoch is the plan's fuse_epoch: no other path has run the members
     * (their node_ramps) since, and a member whose pv_fresh is still 1 has
     * not been set (apply_param clears it) */
    int cached;
    uint32_t epoch;
    mg_node **nodes;          /* every member, for that check */
    int n_nodes;
    int ran;                  /* audio: it ran fused in this block (run_calls) */
} mg_fuse;

/* Per step of a plan with fused strip tails (mg_plan.fuse_of): the tail it
 * is a member of (-1: none) and the first step after it that is not a
 * member of that tail, so that run_calls skips a run of consecutive members
 * of a tail that ran fused in one jump (tails' step ranges may interleave:
 * a run ends where another tail's member or a non-member comes). */
typedef struct {
    int fuse;
    int next;
} mg_fuse_step;

/* [control] Find the plan's fused strip tails (mg_fuse) from its steps, ops
 * and prebuilt calls (mg_plan_calls calls it). 0 ok, -1 out of memory (then
 * none: the steps run as they are). */
int mg_plan_fuse(mg_plan *p);
/* [control] free them */
void mg_plan_fuse_free(mg_plan *p);

/* What unconnected inputs read (engine.c). */
extern const float mg_zeros[MG_MAX_BLOCK];

/* Immutable once pushed to the audio thread (but for the fading list). */
struct mg_plan {
    uint32_t gen;
    int n_steps, n_mix, n_edges;
    int mix_used, edges_used;
    mg_step *steps;
    mg_mixop *mix;
    mg_edge **edges;
    int finished;             /* mg_plan_finish ran: assign/clear lists valid */
    int *clear;               /* unconnected inputs (channel index in its step's
                                 node): they read the engine's zero buffer */
    /* audio thread only, while this is the current plan: the edges whose
     * gain moves (a fade, or one sub-block after it ends); every other edge
     * has g0 == g1 == gain. Capacity n_edges. */
    mg_edge **fading;
    int n_fading;
    int ops_stale;            /* the fading list changed: refresh mix[].g/fast */
    uint32_t epoch;           /* audio: counts refresh_ops; a node whose in_ptr[]
                                 was set at this (gen, epoch) and offset keeps them */
    /* finished plans: every node output is a buffer of the plan's pool, given
     * back for reuse after its last reader (see assign_buffers) */
    float **outb;             /* per step, node->n_out pointers (hw input nodes:
                                 the engine's buffers) */
    float *pool_mem;          /* the pool's allocation (mg_plan_layout) */
    int *push;                /* pushed ops by source step (see mg_step) */
    int pool_slots;
    int *slot;                /* per node output: its pool slot (-1: the engine's
                                 hardware buffer), as assign_buffers gave them */
    int n_outputs;            /* their count */
    int block;                /* frames each pool slot holds: the longest sub-block
                                 the engine may run this plan on (MG_MAX_BLOCK for
                                 unfinished plans; 0 until mg_plan_layout) */
    int *op_out;              /* per op: the node output it reads (an index of
                                 outb), -1 for a delay group's output */
    /* finished plans, once laid out (mg_plan_layout): the one-thread path's
     * prebuilt calls (mg_call), per step, and their input pointers at
     * offset 0: per step, node->n_in pointers (mg_zeros, an op's destination,
     * or the source an op reads in place: refresh_ops keeps these) */
    mg_call *calls;
    const float **inb;
    mg_fuse *fuse;            /* the fused strip tails, in step order (mg_plan_fuse) */
    int n_fuse;
    mg_fuse_step *fuse_of;    /* per step, the tail it is a member of and how far
                                 its members run from there (mg_fuse_step) */
    uint32_t fuse_epoch;      /* audio: counts the cycles that ran this plan other
                                 than through run_calls with fusing (mg_fuse.epoch) */
    int *src_step;            /* control, while mg_plan_build builds it: each op's
                                 source step (NULL: mg_plan_finish searches) */
    struct mg_par *par;       /* the plan on several threads (csrc/pool.c), or NULL:
                                 built by the control thread when the plan is
                                 pushed to an engine with workers; freed with it */
};

/* ---- the layout of a plan's buffers (csrc/plan.c, csrc/pool.c) ----------
 *
 * A plan's channel buffers are slots of one pool, each holding `block`
 * frames: the engine's period (mg_engine_set_block), not MG_MAX_BLOCK, so a
 * 64-frame cycle touches whole slots and the pool spans a few pages instead
 * of ~2 KB per slot. Slots are packed (rounded up to whole cache lines): a
 * block's slots then fill the L1 sets evenly. A slot of a whole number of KB
 * gets one line more, so that the first lines of slots in use together (a
 * plan laid out for long blocks run on shorter sub-blocks) do not all fall
 * into the same few sets. */
static inline size_t mg_slot_floats(int block)
{
    size_t f = ((size_t)block + 15) & ~(size_t)15;
    return f % 256 == 0 ? f + 16 : f;
}

/* [control] Lay out (again) a finished plan's pool for sub-blocks of at most
 * `block` frames (16 .. MG_MAX_BLOCK), before it goes to the audio thread:
 * allocates the pool, points the outputs and the ops reading them at it.
 * 0 ok (nothing to do when it is laid out so already), -1 out of memory
 * (the old layout is kept). */
int mg_plan_layout(mg_plan *p, int block);
/* [control] (Re)build a laid-out plan's prebuilt calls (mg_plan.calls,
 * mg_plan.inb; mg_plan_layout does it). 0 ok, -1 out of memory (the plan
 * keeps what it had: without calls it runs as an unprepared plan does). */
int mg_plan_calls(mg_plan *p);
/* The frames a plan's pool is laid out for, from what an engine asks. */
static inline int mg_block_frames(int frames)
{
    if (frames < 16)
        frames = 16;
    if (frames > MG_MAX_BLOCK)
        frames = MG_MAX_BLOCK;
    return (frames + 15) & ~15;
}

/* ---- the plan on several threads (csrc/pool.c builds, csrc/workers.c and
 * engine.c run) ---------------------------------------------------------- */

/* An atom: one step, a slice of a gang run by one process_many call, or a
 * push segment (ops one thread pushes into a bus, in its order). */
typedef struct {
    int first;                /* its first step; a segment: its first pin index */
    int len;                  /* its steps; a segment: its ops */
    int gang;                 /* 1: len > 1 members of a gang (process_many);
                                 -1: a push segment, par->pin[first .. first + len) */
} mg_atom;

/* The parallel form's prebuilt calls (csrc/pool.c, mg_par_calls), unit by
 * unit in the order par_unit runs their atoms: what mg_call is to the
 * one-thread path, so that a cycle at offset 0 (every block no timed command
 * splits) reads one line per step and calls, setting no node pointer.
 *
 * mg_pcall: a step (alone, or a member of a gang slice: the slice's first
 * has gang = its members and process_many), or a push segment (flags
 * MG_CALL_SEG, node NULL). Its pin_count prebuilt pins (mg_ppin) come first,
 * in the pins' own array: the ops one thread pushes into it, mixed before it
 * runs (a segment: its ops). */
#define MG_CALL_SEG 16
#define MG_CALL_PFZ_HEAD 32   /* a strip's panner (mg_pfz): decides the strip */
#define MG_CALL_PFZ 64        /* its fader or a send: runs nothing while it is on */

typedef struct {
    mg_node *node;
    void *state;
    union {
        void (*process)(void *state, const mg_proc *p);
        void (*process_many)(void *const *states, const mg_proc *procs, int k);
    } fn;
    const float *const *in;   /* par->inb + the step's first input */
    float *const *out;        /* par->outb + out_first */
    const mg_pv *pv;
    float *readout;
    int step;
    uint16_t pin_count;
    uint8_t gang;             /* >1: the first of a slice of this many (process_many);
                                 1: alone; 0: inside a slice */
    uint8_t flags;            /* MG_CALL_*: FOLD, and PULL / FOLD_UNITY as the step's
                                 own call has them (refresh_ops keeps both) */
} mg_pcall;

_Static_assert(sizeof(mg_pcall) == 64, "mg_pcall: one line");

/* A strip of a fused strip tail (mg_fuse) as the parallel form runs it
 * (csrc/pool.c, mg_par_build; engine.c, pfz_run): its panner's atom decides
 * each cycle at offset 0 whether the strip runs fused (on): then the panner,
 * the fader and the sends run nothing, and the pins that mix the fader's and
 * the sends' pushes (mg_ppin.fz) add x * pan gain * fader gain [* send gain]
 * from the panner's input, each product rounded in that order, as the steps
 * would write and fold_step would add them: the same samples. The strip's
 * members are single steps with no pins of their own but the panner's, in
 * the units as before; the panner's input stays live until those pins ran
 * (mg_par_build counts their atoms as its readers). */
typedef struct mg_pfz {
    /* run time, written by the panner's atom, read by the pins after it */
    _Alignas(64) int on;      /* this cycle: the members ran nothing */
    int cached;               /* x and g hold what the members' pv[] give, while
                                 epoch is mg_par.fz_epoch and every member's
                                 pv_fresh is still 1 (as mg_fuse.cached) */
    uint32_t epoch;
    int ok;                   /* refresh_ops: read in place as planned, nothing
                                 pulled, the pushes steady at unity */
    const float *x;           /* the panner's input */
    float g[2][2 + MG_FUSE_SENDS]; /* per channel: pan, fader, each send's gain */
    /* built */
    int pan, fader, sends;    /* steps */
    int send[MG_FUSE_SENDS];
    mg_node *nodes[2 + MG_FUSE_SENDS]; /* pan, fader, sends */
    const mg_mixop *op[MG_FUSE_TERMS]; /* the fader's two pushes, each send's two */
} mg_pfz;

/* A pin entry prebuilt (engine.c, pin_call): the op, where it reads in the
 * parallel form, and, when its source step folds, that step's inputs. */
typedef struct {
    const mg_mixop *op;
    const float *src;              /* par->src[op] */
    const float *const *fold_in;   /* a folding source: par->inb + its first input
                                      + op->src_index; NULL: none */
    int fold_step;                 /* that step (par->fold_k), or -1 */
    int run;                       /* a push segment's pins are grouped by destination
                                      (pool.c, par_calls): the first of a run of one
                                      destination's, none but the first assigning,
                                      holds its length (at most MG_SEG_RUN), plus
                                      MG_SEG_OK while every op of the run is steady
                                      at unity (refresh_ops); 0: any other pin */
    const mg_pfz *fz;              /* a fader's or a send's push of a strip the
                                      parallel form may fuse (mg_pfz), or NULL */
    uint8_t fz_c;                  /* its channel (the fader's output it follows) */
    uint8_t fz_n;                  /* gains: 2 (the fader's), 3 (a send's) */
    uint8_t fz_j;                  /* a send's: 2 + its index in mg_pfz.g */
} mg_ppin;

#define MG_SEG_RUN 32          /* pins in one pass of engine.c's seg_accumulate */
#define MG_SEG_OK (1 << 16)

struct mg_par_q {
    _Alignas(64) _Atomic uint64_t rd;
    _Atomic uint64_t wr;
    _Alignas(64) _Atomic uint64_t roots;
};

/* Immutable after mg_par_build (control), but for the run-time counters. */
typedef struct mg_par {
    int n_units, n_atoms, n_roots, n_sinks; /* sinks: units with no successor */
    mg_atom *atoms;           /* in step order */
    int *unit_atom;           /* unit u runs atom_list[unit_atom[u] .. unit_atom[u+1]) */
    int *atom_list;
    mg_atom *uatom;           /* atoms[atom_list[i]] for every i: what units run, in a row */
    int *succ_first, *succ;   /* unit u's successors: succ[succ_first[u] .. [u+1]) */
    int *init;                /* activation count: predecessors per unit */
    int *roots;               /* units with none, by their thread: thread t's
                                 are roots[root_first[t] .. root_first[t + 1]) */
    int n_q;                  /* threads the form was built for: one ready queue
                                 and one list of roots each */
    int *root_first;          /* n_q + 1 */
    int *data_pred;           /* per unit: the predecessor unit whose outputs it
                                 reads most (a bus's push segment: its strips'
                                 unit), -1: none stands out. It runs on the
                                 thread that ran that one (csrc/workers.c) */
    int *pin_first, *pin;     /* per step: the ops one thread pushes into it,
                                 by (source step, op): pin[pin_first[s] .. [s+1]) */
    int *pin_end;             /* per step: those mixed at the step are pin[pin_first[s]
                                 .. pin_end[s]); none when push segments mix them */
    int *pin_src;             /* per pin entry: its op's source step (-1: a delay
                                 group's sum) */
    float **outb;             /* per node output (mg_step.out_first): its buffer */
    const float **src;        /* per op: where it reads */
    /* the prebuilt calls (mg_pcall, mg_ppin; NULL: par_unit sets the nodes'
     * pointers at every offset) and their input pointers at offset 0: per
     * step, node->n_in pointers (mg_zeros, an op's destination, or par->src
     * of an op read in place: refresh_ops keeps these) */
    mg_pcall *calls;          /* n_calls + 1 (the last: zeros) */
    mg_ppin *pins;
    int *unit_call;           /* unit u: calls[unit_call[u] .. unit_call[u + 1]) */
    int *unit_pin;            /* unit u: its first pin */
    int *call_of;             /* per step: its call (-1: an inert step) */
    const float **inb;
    mg_pfz *pfz;              /* the strips it may fuse (n_pfz; 64-byte aligned,
                                 in pfz_mem), or NULL */
    void *pfz_mem;
    int n_pfz;
    int *pfz_of;              /* per step: its strip's mg_pfz, -1: none */
    uint32_t fz_epoch;        /* audio: counts the cycles that ran this plan other
                                 than through par_unit_calls with fusing (mg_pfz) */
    float *pool_mem;
    int pool_slots;           /* of which the last fold_slots are the folding
                                 steps' outputs (csrc/pool.c) */
    int fold_slots;
    /* run time: audio thread and workers, one cycle at a time */
    int *fold_k;              /* per step: a folding step (mg_step.fold) that did
                                 not run this cycle: the input channel its pushes
                                 read (fold_step's k); -1: it ran. Written by the
                                 step's atom, read by the atoms after it that mix
                                 its pushes (engine.c, pin_mix) */
    float *fold_g;            /* per step: that cycle's gain, when fold_k >= 0 */
    _Atomic int *count;       /* per unit: predecessors still to finish */
    int *ran_by;              /* per unit: the thread that ran it this cycle */
    /* per thread t < n_q, the ready queue of units handed to it: positions
     * rd < wr grow for ever (never reset, so a thread that looked at it in
     * an earlier cycle cannot claim a stale slot); slot
     * queue[t * (q_mask + 1) + (pos & q_mask)] holds (pos + 1) << 16 | unit */
    _Atomic uint64_t *queue;
    uint64_t q_mask;          /* slots - 1: a power of two > n_units */
    struct mg_par_q *q;       /* n_q: rd, wr; and the roots not yet claimed:
                                 front << 32 | back, the owner takes the front,
                                 another thread the back */
    void *q_mem;              /* q's allocation (q: its first line) */
    _Alignas(64) _Atomic int remaining; /* sinks of this cycle still to finish */
} mg_par;

mg_par *mg_par_build(const mg_plan *p, int threads); /* [control] NULL: one thread */
void mg_par_free(mg_par *par);                       /* [control] */

/* The worker threads (csrc/workers.c). */
typedef struct mg_workers mg_workers;
typedef void (*mg_unit_fn)(void *ctx, int unit);
mg_workers *mg_workers_new(int threads);  /* [control] threads - 1 workers */
void mg_workers_free(mg_workers *w);      /* [control] */
int mg_workers_threads(const mg_workers *w);
/* [audio] Run every unit of par once, fn(ctx, unit) on this thread and the
 * workers, each after its predecessors; returns when all are done. follows:
 * the next cycle comes at once (more blocks in this engine call): the
 * workers wait for it spinning (at most the spin bound), not sleeping. */
void mg_workers_run(mg_workers *w, mg_par *par, mg_unit_fn fn, void *ctx, int n_frames,
                    int follows);
/* [control] see mg_engine_set_sched; the defaults: */
#define MG_SPIN_US 50.0
#define MG_MIN_WORK_US 20.0
void mg_workers_sched(mg_workers *w, double spin_us, double min_work_us);
void mg_workers_spin_adapt(mg_workers *w, int on); /* [control] see mg_engine_set_spin_adapt */
/* [audio] 1: run this cycle on the workers; 0: on this thread alone, the
 * one-thread path: whichever has been faster (wall-clock ns per frame,
 * measured by mg_workers_note; the other path is tried 8 cycles in 256, in
 * 2048 while one is 25% faster), never the workers for a cycle under the
 * minimum work, and always the workers for a cycle one thread might take
 * half its period (period_ns: n_frames at the sample rate) for. */
int mg_workers_handoff(mg_workers *w, const void *plan, int n_frames, double period_ns);
/* [audio] a cycle's wall-clock time on the path mg_workers_handoff chose */
void mg_workers_note(mg_workers *w, int handed, uint64_t wall_ns, int n_frames);
/* [audio, between cycles] 1 when no worker may be reading the last cycle's
 * plan: only then may it be retired (its memory goes back to control). */
int mg_workers_quiet(mg_workers *w);
int mg_workers_stats(mg_workers *w, uint64_t *v, int cap); /* [control] see mg_engine_par_stats */
int mg_workers_trace(mg_workers *w, int on);   /* [control] see mg_engine_trace */
int mg_workers_trace_read(mg_workers *w, double *t, int *kind, int *thread, int *arg, int cap);

struct mg_fifo {
    int channels;             /* immutable */
    uint64_t mask;            /* capacity in frames - 1; immutable */
    float *buf;
    _Atomic uint64_t wr;      /* producer */
    _Atomic uint64_t rd;      /* consumer */
    _Atomic uint64_t dropped;
    _Atomic uint32_t rewind_req;  /* player: audio -> disk */
    _Atomic uint32_t rewind_ack;  /* player: disk -> audio */
    _Atomic uint64_t ack_pos;     /* player: write index of the fresh data */
    _Atomic uint32_t flags;       /* node -> disk worker, e.g. loop/playing */
    _Atomic uint32_t status;      /* disk worker -> node, e.g. end of file */
    _Atomic uint64_t length;      /* player: the file's frames, 0 unknown; disk -> node */
};

typedef struct {
    mg_cmd cmd;
} mg_sched;

#endif
