/* mixgraph C core: node instances, edges and plans.
 *
 * All of this runs on the control thread. A plan is built here, handed to
 * the audio thread through the command ring (MG_CMD_PLAN), and comes back
 * through the event ring (MG_EV_PLAN_RETIRED) to be freed here. */
#include <stdlib.h>

#include "mg_internal.h"

extern const mg_node_type *const mg_types[];
extern const int mg_n_types;

int mg_type_count(void) { return mg_n_types; }

const mg_node_type *mg_type_get(int index)
{
    return index >= 0 && index < mg_n_types ? mg_types[index] : NULL;
}

int mg_type_find(const char *name)
{
    for (int i = 0; i < mg_n_types; i++)
        if (strcmp(mg_types[i]->name, name) == 0)
            return i;
    return -1;
}

static int port_channels(const mg_port_spec *p, int channels)
{
    return p->channels > 0 ? p->channels : channels;
}

/* Channel buffers of MG_MAX_BLOCK floats into b[0..count); 0 = ok (on
 * failure the caller frees what was made). */
static int alloc_buffers(float **b, int count)
{
    for (int i = 0; i < count; i++)
        if (!(b[i] = mg_calloc(MG_MAX_BLOCK, sizeof(float))))
            return -1;
    return 0;
}

static void free_buffers(float **b, int count)
{
    if (!b)
        return;
    for (int i = 0; i < count; i++)
        mg_free(b[i]);
}

/* Error codes returned through *error: 1 unknown type, 2 bad channel
 * count, 3 out of memory, 4 prepare failed (e.g. hardware channel out of
 * range), 5 the type needs a fifo. */
mg_node *mg_node_new(mg_engine *e, int type_index, int channels, int hw_first,
                     uint64_t seed, mg_fifo *fifo, int *error)
{
    return mg_node_new_type(e, mg_type_get(type_index), channels, hw_first, seed, fifo, error);
}

/* Cache lines that `bytes` bytes from offset `at` of a line-aligned block touch. */
static size_t lines_spanned(size_t at, size_t bytes)
{
    return (at + bytes - 1) / 64 - at / 64 + 1;
}

mg_node *mg_node_new_type(mg_engine *e, const mg_node_type *t, int channels, int hw_first,
                          uint64_t seed, mg_fifo *fifo, int *error)
{
    int err_dummy;
    if (!error)
        error = &err_dummy;
    *error = 0;
    if (!t) {
        *error = 1;
        return NULL;
    }
    if (channels <= 0)
        channels = t->default_channels;
    if (channels < t->min_channels || channels > t->max_channels) {
        *error = 2;
        return NULL;
    }
    if (t->needs_fifo && !fifo) {
        *error = 5;
        return NULL;
    }
    /* the node, its small per-block arrays and its state are one allocation,
     * in the order run_plan reads them: a node's step touches a few adjacent
     * cache lines instead of one line in each of seven places. What a step
     * rarely touches (parameter ramps, the node's own block buffers, used only
     * by unfinished plans) is a second, page-mapped allocation away from the
     * heap, so the hot blocks of successive nodes lie close together (mix64
     * 64 ch: ~4% faster than with those buffers between them) */
    int n_in = 0, n_out = 0, n_readout = 0;
    for (int p = 0; p < t->n_ports; p++) {
        if (t->ports[p].dir == MG_PORT_IN)
            n_in += port_channels(&t->ports[p], channels);
        else
            n_out += port_channels(&t->ports[p], channels);
    }
    for (int r = 0; r < t->n_readouts; r++)
        n_readout += t->readouts[r].per_channel ? channels : 1;
    /* the struct (its cold line, then a step's line), then in_ptr[] (the
     * struct's last member), out_ptr[], pv[] and the readouts: what a step
     * reads of the node, in as few lines as they fit (no gaps but pv[]'s
     * alignment below). The state
     * from the next line; then the parameters (read only while one ramps or
     * is set) and the block buffers' pointers (unfinished plans) */
    const size_t np1 = (size_t)t->n_params + 1;
    const size_t o_out_ptr = sizeof(mg_node) + (size_t)n_in * sizeof(float *);
    /* pv[] and the readouts start on a line of their own when what a step
     * reads of them then spans fewer lines (every entry's ramp and value, not
     * the last one's ctl unless readouts follow: a stereo send's three
     * values, one line instead of two), since in_ptr[] and out_ptr[] are read
     * only off the one-thread path's prebuilt calls (sub-blocks, the
     * parallel form) */
    const size_t o_pv_packed = o_out_ptr + (size_t)n_out * sizeof(float *);
    const size_t pv_read =
        n_readout > 0 ? (size_t)t->n_params * sizeof(mg_pv) + (size_t)n_readout * sizeof(float)
        : t->n_params > 0
            ? (size_t)(t->n_params - 1) * sizeof(mg_pv) + offsetof(mg_pv, value) + sizeof(float)
            : 0;
    const size_t o_pv_line = (o_pv_packed + 63) & ~(size_t)63;
    const size_t o_pv =
        pv_read > 0 && lines_spanned(o_pv_line, pv_read) < lines_spanned(o_pv_packed, pv_read)
            ? o_pv_line
            : o_pv_packed;
    const size_t o_readout = o_pv + (size_t)t->n_params * sizeof(mg_pv);
    const size_t o_state =
        (o_readout + (size_t)n_readout * sizeof(_Atomic float) + 63) & ~(size_t)63;
    /* params[] on a line (mg_param is laid out by lines) */
    const size_t o_params = (o_state + (t->state_size ? t->state_size : 1) + 63) & ~(size_t)63;
    const size_t o_in_base = o_params + (size_t)t->n_params * sizeof(mg_param);
    const size_t o_out_base = o_in_base + (size_t)n_in * sizeof(float *);
    const size_t total = o_out_base + ((size_t)n_out + 1) * sizeof(float *);
    _Static_assert(sizeof(mg_pv) % sizeof(float *) == 0 && sizeof(mg_param) % 8 == 0,
                   "mg_node_new packs pv[] after the pointers and in_base after params");
    const size_t cold = (np1 + (size_t)n_in + (size_t)n_out) * MG_MAX_BLOCK * sizeof(float);
    const int fits = total < UINT32_MAX && cold < UINT32_MAX && channels <= UINT16_MAX &&
                     n_readout <= UINT16_MAX;
    char *blk = fits ? mg_calloc_lines(total) : NULL;
    if (!blk) {
        *error = 3;
        return NULL;
    }
    mg_node *n = (mg_node *)blk;
    n->block_bytes = (uint32_t)total;
    n->type = t;
    n->channels = (uint16_t)channels;
    n->sample_rate = mg_engine_rate(e);
    n->n_in = n_in;
    n->n_out = n_out;
    n->n_readout = (uint16_t)n_readout;
    n->out_ptr = (float **)(blk + o_out_ptr);
    n->pv = (mg_pv *)(blk + o_pv);
    n->in_base = (float **)(blk + o_in_base);
    n->out_base = (float **)(blk + o_out_base);
    n->params = (mg_param *)(blk + o_params);
    n->state = blk + o_state;
    n->cold_bytes = (uint32_t)cold;
    n->ramp_mem = mg_cold_alloc(n->cold_bytes);
    if (!n->ramp_mem) {
        *error = 3;
        mg_node_free(n);
        return NULL;
    }
    for (int c = 0; c < n_in; c++)
        n->in_base[c] = n->ramp_mem + (np1 + (size_t)c) * MG_MAX_BLOCK;
    for (int c = 0; c < n_out; c++)
        n->out_base[c] = n->ramp_mem + (np1 + (size_t)n_in + (size_t)c) * MG_MAX_BLOCK;
    for (int c = 0; c < n->n_in; c++)
        n->in_ptr[c] = n->in_base[c];
    for (int c = 0; c < n->n_out; c++)
        n->out_ptr[c] = n->out_base[c];
    for (int k = 0; k < t->n_params; k++)
        mg_node_init_param(n, k, t->params[k].def);
    mg_prepare_ctx ctx = {n->sample_rate, channels, MG_MAX_BLOCK, hw_first, 0, 0, seed, fifo,
                          t->data};
    extern void mg_engine_hw_channels(mg_engine *, int *, int *);
    mg_engine_hw_channels(e, &ctx.hw_in_ch, &ctx.hw_out_ch);
    if (t->prepare && t->prepare(n->state, &ctx) != 0) {
        *error = 4;
        mg_node_free(n);
        return NULL;
    }
    if (t->outputs_are_hw_in) {
        /* read the hardware input in place: downstream mixes use these pointers */
        extern float *mg_engine_hw_in_buffer(mg_engine *, int);
        for (int c = 0; c < n->n_out; c++) {
            float *hw = mg_engine_hw_in_buffer(e, hw_first + c);
            if (!hw) {
                *error = 4;
                mg_node_free(n);
                return NULL;
            }
            n->out_base[c] = n->out_ptr[c] = hw;
        }
        n->out_aliased = 1;
    }
    /* hand the initial values to the node's setter */
    if (t->on_param)
        for (int k = 0; k < t->n_params; k++)
            t->on_param(n->state, k, n->params[k].tgt);
    return n;
}

void mg_node_free(mg_node *n)
{
    if (!n)
        return;
    if (n->type->release && n->state)
        n->type->release(n->state);
    mg_cold_free(n->ramp_mem, n->cold_bytes);
    /* with in_ptr, out_ptr, pv, in/out_base, params, readout, state */
    mg_free_lines(n, n->block_bytes);
}

void mg_node_init_param(mg_node *n, int index, float v)
{
    if (index < 0 || index >= n->type->n_params || !isfinite(v))
        return;
    const mg_param_spec *s = &n->type->params[index];
    v = v < s->min ? s->min : v > s->max ? s->max : v;
    mg_param *p = &n->params[index];
    p->spec = s;
    p->control = n->type->param_flags && (n->type->param_flags[index] & MG_PARAM_CONTROL);
    p->target_unit = v;
    p->tgt = s->map == MG_MAP_DB ? mg_db_to_amp(v) : v;
    p->cur = p->tgt;
    p->remaining = 0;
    p->ramp = 0;
    n->pv_fresh = 0;
    n->pv[index].ramp = NULL;
    n->pv[index].ctl = NULL;
    n->pv[index].value = p->tgt;
    if (n->type->on_param)
        n->type->on_param(n->state, index, p->tgt);
}

float mg_node_readout(mg_node *n, int flat_index)
{
    if (flat_index < 0 || flat_index >= n->n_readout)
        return NAN;
    return atomic_load_explicit(&mg_node_readouts(n)[flat_index], memory_order_relaxed);
}

int mg_node_n_in(mg_node *n) { return n->n_in; }

int mg_node_latency(mg_node *n)
{
    return n->type->latency ? n->type->latency(n->state) : 0;
}
int mg_node_n_out(mg_node *n) { return n->n_out; }

int mg_node_restore(mg_node *n, const float *src, int count)
{
    if (!n->type->restore || !src || count <= 0)
        return -1;
    return n->type->restore(n->state, src, count);
}

int mg_node_capture(mg_node *n, float *dst, int max)
{
    if (!n->type->capture)
        return -1;
    if (max <= 0 || !dst)
        return 0;
    return n->type->capture(n->state, dst, max);
}

mg_edge *mg_edge_new(float initial_gain)
{
    mg_edge *ed = mg_calloc(1, sizeof *ed);
    if (ed) {
        ed->gain = ed->target = ed->g0 = ed->g1 = initial_gain;
        atomic_store(&ed->published, initial_gain);
    }
    return ed;
}

void mg_edge_set_gain(mg_edge *ed, float gain)
{
    ed->gain = ed->target = ed->g0 = ed->g1 = gain;
    ed->remaining = 0;
    atomic_store(&ed->published, gain);
}

mg_edge *mg_edge_new_delayed(float initial_gain, int channels, int delay_samples)
{
    if (channels < 1 || channels > 256 || delay_samples < 0 || delay_samples > (1 << 22))
        return NULL;
    mg_edge *ed = mg_edge_new(initial_gain);
    if (!ed || delay_samples == 0)
        return ed;
    uint64_t cap = 1;
    while (cap < (uint64_t)delay_samples + MG_MAX_BLOCK)
        cap <<= 1;
    ed->delay = delay_samples;
    ed->channels = channels;
    ed->mask = cap - 1;
    ed->dl = mg_calloc((size_t)channels, sizeof(float *));
    ed->dpos = mg_calloc((size_t)channels, sizeof(uint64_t));
    int ok = ed->dl && ed->dpos;
    for (int c = 0; ok && c < channels; c++)
        ok = (ed->dl[c] = mg_calloc(cap, sizeof(float))) != NULL;
    if (!ok) {
        mg_edge_free(ed);
        return NULL;
    }
    return ed;
}

int mg_edge_delay(mg_edge *ed) { return ed->delay; }

static _Atomic int mg_dgroups_live;

mg_dgroup *mg_dgroup_new(int channels, int delay_samples)
{
    if (channels < 1 || channels > 256 || delay_samples < 1 || delay_samples > (1 << 22))
        return NULL;
    mg_dgroup *g = mg_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    atomic_fetch_add(&mg_dgroups_live, 1);
    g->channels = channels;
    g->acc = mg_calloc((size_t)channels + 1, sizeof(float *));
    g->line = mg_edge_new_delayed(1.0f, channels, delay_samples);
    int ok = g->acc && g->line && alloc_buffers(g->acc, channels) == 0;
    if (!ok) {
        mg_dgroup_free(g);
        return NULL;
    }
    return g;
}

int mg_dgroup_delay(mg_dgroup *g) { return g->line->delay; }

int mg_dgroup_channels(mg_dgroup *g) { return g->channels; }

void mg_dgroup_free(mg_dgroup *g)
{
    if (!g)
        return;
    free_buffers(g->acc, g->channels);
    mg_free(g->acc);
    mg_edge_free(g->line);
    mg_free(g);
    atomic_fetch_sub(&mg_dgroups_live, 1);
}

int mg_dgroup_live(void) { return atomic_load(&mg_dgroups_live); }

void mg_edge_free(mg_edge *ed)
{
    if (!ed)
        return;
    if (ed->dl)
        for (int c = 0; c < ed->channels; c++)
            mg_free(ed->dl[c]);
    mg_free(ed->dl);
    mg_free(ed->dpos);
    mg_free(ed);
}

float mg_edge_gain(mg_edge *ed)
{
    return atomic_load_explicit(&ed->published, memory_order_relaxed);
}

static _Atomic uint32_t mg_plan_gen_counter;

mg_plan *mg_plan_new(int n_steps, int n_mix, int n_edges)
{
    if (n_steps < 0 || n_mix < 0 || n_edges < 0)
        return NULL;
    mg_plan *p = mg_calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->gen = atomic_fetch_add(&mg_plan_gen_counter, 1) + 1;
    p->n_steps = n_steps;
    p->n_mix = n_mix;
    p->n_edges = n_edges;
    p->block = MG_MAX_BLOCK; /* unfinished plans run on the nodes' own buffers */
    p->steps = mg_calloc((size_t)n_steps + 1, sizeof(mg_step));
    /* not zeroed: add_op writes each op whole, and the audio thread reads
     * none past mix_used (a 10,000-node plan's ops are ~1.6 MB) */
    p->mix = mg_malloc((size_t)n_mix + 1, sizeof(mg_mixop));
    p->edges = mg_calloc((size_t)n_edges + 1, sizeof(mg_edge *));
    p->fading = mg_calloc((size_t)n_edges + 1, sizeof(mg_edge *));
    if (!p->steps || !p->mix || !p->edges || !p->fading) {
        mg_plan_free(p);
        return NULL;
    }
    return p;
}

void mg_plan_free(mg_plan *p)
{
    if (!p)
        return;
    mg_free(p->steps);
    mg_free(p->mix);
    mg_free(p->edges);
    mg_free(p->fading);
    mg_free(p->clear);
    mg_free(p->outb);
    mg_free(p->pool_mem);
    mg_free(p->slot);
    mg_free(p->op_out);
    mg_free(p->push);
    mg_free(p->src_step);
    mg_plan_fuse_free(p);
    mg_free(p->calls);
    mg_free(p->inb);
    mg_par_free(p->par);
    mg_free(p);
}

void mg_plan_set_step(mg_plan *p, int step, mg_node *node)
{
    if (step < 0 || step >= p->n_steps)
        return;
    p->steps[step].node = node;
    p->steps[step].mix_first = p->mix_used;
    p->steps[step].mix_count = 0;
}

/* Append one mix op to the step (ops must be added right after their step's
 * mg_plan_set_step). The first op into a buffer in its step assigns it. */
static mg_mixop *add_op(mg_plan *p, int step, float *dst, int dst_index, const float *src,
                        mg_node *src_node, int src_out, mg_edge *edge, int edge_ch)
{
    mg_step *st = &p->steps[step];
    if (st->mix_first + st->mix_count != p->mix_used || st->mix_count == UINT16_MAX ||
        dst_index > INT16_MAX || src_out > INT16_MAX || edge_ch > INT16_MAX)
        return NULL;
    mg_mixop *op = &p->mix[p->mix_used++];
    /* every field written (the array is not zeroed: mg_plan_new); assign is
     * set by assign_buffers (the first op into each destination), for all of
     * a step's ops at once: looked for here, op by op, it cost O(ops^2) */
    *op = (mg_mixop){.dst = dst, .src = src, .edge = edge, .dst_index = (int16_t)dst_index,
                     .src_index = (int16_t)src_out, .src_node = src_node, .assign = 1,
                     .edge_ch = (int16_t)edge_ch};
    st->mix_count++;
    return op;
}

static int step_ok(mg_plan *p, int step)
{
    return step >= 0 && step < p->n_steps && p->mix_used < p->n_mix && p->steps[step].node;
}

int mg_plan_add_mix(mg_plan *p, int step, int dst_in, mg_node *src, int src_out, mg_edge *edge,
                    int edge_ch)
{
    if (!step_ok(p, step) || !edge || !src)
        return -1;
    if (edge->delay > 0 && (edge_ch < 0 || edge_ch >= edge->channels))
        return -1;
    mg_node *nd = p->steps[step].node;
    if (dst_in < 0 || dst_in >= nd->n_in || src_out < 0 || src_out >= src->n_out)
        return -1;
    return add_op(p, step, nd->in_base[dst_in], dst_in, src->out_base[src_out], src, src_out,
                  edge, edge_ch)
               ? 0
               : -1;
}

int mg_plan_add_group_mix(mg_plan *p, int step, mg_dgroup *g, int g_ch, mg_node *src,
                          int src_out, mg_edge *edge)
{
    if (!step_ok(p, step) || !g || !edge || !src || g_ch < 0 || g_ch >= g->channels ||
        src_out < 0 || src_out >= src->n_out || edge->delay > 0)
        return -1;
    mg_mixop *op = add_op(p, step, g->acc[g_ch], -1, src->out_base[src_out], src, src_out,
                          edge, 0);
    if (!op)
        return -1;
    op->to_acc = 1;
    return 0;
}

int mg_plan_add_group_out(mg_plan *p, int step, int dst_in, mg_dgroup *g, int g_ch)
{
    if (!step_ok(p, step) || !g || g_ch < 0 || g_ch >= g->channels)
        return -1;
    mg_node *nd = p->steps[step].node;
    if (dst_in < 0 || dst_in >= nd->n_in)
        return -1;
    return add_op(p, step, nd->in_base[dst_in], dst_in, g->acc[g_ch], NULL, -1, g->line, g_ch)
               ? 0
               : -1;
}

/* Precompute which inputs have no connection (zeroed every block); the
 * first connection into an input is copied, later ones added. */
int mg_plan_step_gang(const mg_plan *p, int step)
{
    return step >= 0 && step < p->n_steps ? p->steps[step].gang : -1;
}

typedef struct {
    const mg_node *node;
    int step;
} node_step;

/* Steps that run as one unit from step s: its gang, or s alone. */
static int unit_len(const mg_plan *p, int s)
{
    return p->steps[s].gang > 1 ? p->steps[s].gang : 1;
}

static int cmp_node_step(const void *a, const void *b)
{
    const uintptr_t x = (uintptr_t)((const node_step *)a)->node;
    const uintptr_t y = (uintptr_t)((const node_step *)b)->node;
    return x < y ? -1 : x > y;
}

/* What building and finishing a plan read of a node: gathered once per node
 * (mg_pin keeps it from the node's creation on, so a build reads no node: a
 * big graph's nodes outgrow the cache, and every read of one would miss). A
 * node's input and output channel buffers are consecutive blocks of
 * MG_MAX_BLOCK floats (mg_node_new), but for the hardware buffers an input
 * node's outputs are (aliased: read through the node's out_base). */
typedef struct {
    const mg_node_type *type;
    float **out_base;
    float *in0, *out0;
    int n_in, n_out, aliased, inert;
} step_info;

static step_info node_info(const mg_node *nd)
{
    return (step_info){nd->type, nd->out_base, nd->n_in > 0 ? nd->in_base[0] : NULL,
                       nd->n_out > 0 ? nd->out_base[0] : NULL, nd->n_in, nd->n_out,
                       nd->out_aliased,
                       nd->type->outputs_are_hw_in && nd->n_in == 0 &&
                           nd->type->n_params == 0 && nd->n_readout == 0};
}

static inline float *info_in(const step_info *i, int c)
{
    return i->in0 + (size_t)c * MG_MAX_BLOCK;
}

static inline float *info_out(const step_info *i, int c)
{
    return i->aliased ? i->out_base[c] : i->out0 + (size_t)c * MG_MAX_BLOCK;
}

/* Scratch memory for building a plan, which never reaches the audio thread:
 * carved from one block that an mg_pin keeps from build to build (a build
 * allocates ~30 arrays; fresh ones cost a page fault per page and an
 * unmap each time), or from calloc without an arena. Zeroed. A build that
 * needs more than the block holds gets the rest from calloc, and the next
 * build finds the block grown to what this one needed. */
typedef struct {
    char *mem;
    size_t cap, used, want;
} arena;

/* Scratch of n * size bytes, not zeroed: for arrays written in full before
 * they are read. */
static void *tmp_alloc(arena *a, size_t n, size_t size)
{
    const size_t bytes = ((n ? n : 1) * size + 63) & ~(size_t)63;
    if (!a)
        return malloc(bytes);
    a->want += bytes;
    if (a->used + bytes > a->cap)
        return malloc(bytes);
    void *p = a->mem + a->used;
    a->used += bytes;
    return p;
}

/* Zeroed scratch: tmp_alloc, then zeroed. */
static void *tmp_calloc(arena *a, size_t n, size_t size)
{
    void *p = tmp_alloc(a, n, size);
    if (p)
        memset(p, 0, (n ? n : 1) * size);
    return p;
}

static void tmp_free(arena *a, void *p)
{
    if (!a || (char *)p < a->mem || (char *)p >= a->mem + a->cap)
        free(p);
}

/* Start a build: the block is as large as the last build needed. */
static void arena_reset(arena *a)
{
    if (a->want > a->cap) {
        const size_t cap = a->want + a->want / 4;
        char *m = malloc(cap);
        if (m) {
            free(a->mem);
            a->mem = m;
            a->cap = cap;
        }
    }
    a->used = a->want = 0;
}

static int cmp_ptr(const void *a, const void *b)
{
    const uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* A step's op m by where it writes: sorted by (dst, m), the ops into one
 * input (or one group accumulator) side by side in op order. */
typedef struct {
    uintptr_t dst;
    int m;
} dst_op;

static int cmp_dst_op(const void *a, const void *b)
{
    const dst_op *x = a, *y = b;
    if (x->dst != y->dst)
        return x->dst < y->dst ? -1 : 1;
    return (x->m > y->m) - (x->m < y->m);
}

/* The first of the n sorted ops that writes at or after dst. */
static int dst_lower(const dst_op *d, int n, uintptr_t dst)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (d[mid].dst < dst)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Where each op reads, then the buffers.
 *
 * Push: an op summing into an input with several connections (a bus) runs
 * right after its source's step, while the source's output is hot, instead
 * of at the destination's step; the destination's input then accumulates
 * over the plan. The first op to run into an input assigns it, the rest add.
 * A delay group's members are pushed the same way, into the group's
 * accumulator (its first push assigns it); the group's delay line and the
 * add of its sum into the input stay at the destination's step, as do ops
 * read in place (alias) and delayed edges.
 *
 * Liveness: each node output gets a buffer of the plan's pool for the span
 * from its step to its last reader, and the buffer is then reused by a
 * later step, so a session touches a few hot buffers per block instead of
 * one per output (a 64-strip mix has ~700 outputs). A gang is one unit: all
 * its members' inputs are fed before any of them runs, so no member's
 * output may take a buffer a member reads. Outputs of hardware input nodes
 * stay the engine's buffers. Rewrites every op's src. 0 = ok. */
static int assign_buffers(mg_plan *p, const step_info *info, arena *sc)
{
    int n_out = 0;
    for (int s = 0; s < p->n_steps; s++) {
        p->steps[s].out_first = n_out;
        n_out += info[s].n_out;
    }
    int *last = tmp_alloc(sc, (size_t)n_out + 1, sizeof(int));      /* unit end of last use */
    int *slot = mg_malloc((size_t)n_out + 1, sizeof(int));         /* kept: p->slot */
    int *freed = tmp_alloc(sc, (size_t)n_out + 1, sizeof(int));     /* free list (a stack) */
    int *order = tmp_alloc(sc, (size_t)n_out + 1, sizeof(int));     /* outputs by last use */
    int *first = tmp_calloc(sc, (size_t)p->n_steps + 2, sizeof(int));
    node_step *ns = tmp_alloc(sc, (size_t)p->n_steps + 1, sizeof(node_step));
    int *src_step = tmp_alloc(sc, (size_t)p->mix_used + 1, sizeof(int));
    /* a step's ops grouped by destination, and its inputs that some op covers:
     * each step's ops are looked at O(ops log ops), not op by op against every
     * other (a 4094-input fan took 53 ms) */
    int max_ops = 0, max_in = 0;
    for (int s = 0; s < p->n_steps; s++) {
        max_ops = p->steps[s].mix_count > max_ops ? p->steps[s].mix_count : max_ops;
        max_in = info[s].n_in > max_in ? info[s].n_in : max_in;
    }
    dst_op *by_dst = tmp_alloc(sc, (size_t)max_ops + 1, sizeof *by_dst);
    unsigned char *covered = tmp_calloc(sc, (size_t)max_in + 1, 1);
    p->outb = mg_calloc((size_t)n_out + 1, sizeof(float *));
    p->push = mg_calloc((size_t)p->mix_used + 1, sizeof(int));
    p->op_out = mg_malloc((size_t)p->mix_used + 1, sizeof(int));
    int rc = -1;
    if (!last || !slot || !freed || !order || !first || !ns || !src_step || !by_dst || !covered ||
        !p->outb || !p->push || !p->op_out)
        goto out;
    /* steps by node, to find each op's source step */
    for (int s = 0; s < p->n_steps; s++) {
        ns[s].node = p->steps[s].node;
        ns[s].step = s;
    }
    /* mg_plan_build leaves each op's source step (p->src_step): no search */
    if (!p->src_step)
        qsort(ns, (size_t)p->n_steps, sizeof *ns, cmp_node_step);
    /* one pass over the steps and their ops (a big plan's ops outgrow the
     * cache: each pass over them would miss again): the step's unconnected
     * inputs and which ops are read in place, then where each op reads, the
     * outputs' last readers, which ops are pushed and which assign */
    int unit_end = 0; /* one past the last step of s's unit (gang or single step) */
    int k_clear = 0, n_go = 0;
    for (int s = 0; s < p->n_steps; s++) {
        if (s >= unit_end)
            unit_end = s + unit_len(p, s);
        mg_step *st = &p->steps[s];
        const int end = st->mix_first + st->mix_count;
        st->inert = info[s].inert;
        st->clear_first = k_clear;
        const int n_in = info[s].n_in;
        for (int m = st->mix_first; m < end; m++)
            if (p->mix[m].dst_index >= 0 && p->mix[m].dst_index < n_in)
                covered[p->mix[m].dst_index] = 1;
        for (int c = 0; c < n_in; c++) {
            if (!covered[c])
                p->clear[k_clear++] = c;
            covered[c] = 0;
        }
        st->clear_count = k_clear - st->clear_first;
        const int n_ops = st->mix_count;
        for (int i = 0; i < n_ops; i++)
            by_dst[i] = (dst_op){(uintptr_t)p->mix[st->mix_first + i].dst, st->mix_first + i};
        if (n_ops > 1)
            qsort(by_dst, (size_t)n_ops, sizeof *by_dst, cmp_dst_op);
        /* read in place: the one op into its input */
        for (int i = 0, j; i < n_ops; i = j) {
            for (j = i + 1; j < n_ops && by_dst[j].dst == by_dst[i].dst; j++)
                ;
            for (int k = i; k < j; k++) {
                mg_mixop *op = &p->mix[by_dst[k].m];
                op->alias = !op->to_acc && j - i == 1;
            }
        }
        for (int m = st->mix_first; m < end; m++) {
            mg_mixop *op = &p->mix[m];
            if (op->src_node != NULL)
                continue;
            /* a group's out op reads its accumulator: every member op must
             * come first (and at least one, or it reads stale sums) */
            int before = 0, after = 0;
            for (int k = dst_lower(by_dst, n_ops, (uintptr_t)op->src);
                 k < n_ops && by_dst[k].dst == (uintptr_t)op->src; k++)
                if (p->mix[by_dst[k].m].to_acc) {
                    before += by_dst[k].m < m;
                    after += by_dst[k].m > m;
                }
            if (before == 0 || after > 0)
                goto out;
            n_go++;
        }
        for (int c = 0; c < info[s].n_out; c++)
            last[st->out_first + c] = unit_end - 1; /* unread: free after its unit */
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
            mg_mixop *op = &p->mix[m];
            src_step[m] = -1;
            op->push = 0;
            if (!op->src_node)
                continue;
            int from;
            if (p->src_step) {
                from = p->src_step[m];
            } else {
                node_step key = {op->src_node, 0};
                const node_step *f =
                    bsearch(&key, ns, (size_t)p->n_steps, sizeof *ns, cmp_node_step);
                from = f ? f->step : s;
            }
            if (from < 0 || from >= s || p->steps[from].node != op->src_node)
                goto out; /* a source must run before its reader */
            src_step[m] = from;
            /* a delay group's member adds into the group's accumulator as
             * its source runs too (the group's line runs at the step, after
             * every push into it) */
            op->push = !op->alias && (op->to_acc || op->dst_index >= 0) && op->edge->delay == 0;
            if (op->push) {
                if (p->steps[from].push_count == UINT16_MAX)
                    goto out; /* more than mg_step holds */
                p->steps[from].push_count++;
                continue; /* read at its source's own step */
            }
            const int k = p->steps[from].out_first + op->src_index;
            if (last[k] < unit_end - 1)
                last[k] = unit_end - 1;
        }
        /* into each input, the first op to run assigns: the pushed op of the
         * earliest source (ops of one source run in op order), else the
         * first op at the destination's step */
        for (int i = 0, j; i < n_ops; i = j) {
            int lead = -1; /* the pushed op of the earliest (source step, op) */
            for (j = i; j < n_ops && by_dst[j].dst == by_dst[i].dst; j++) {
                const int q = by_dst[j].m;
                if (p->mix[q].push &&
                    (lead < 0 || src_step[q] < src_step[lead] ||
                     (src_step[q] == src_step[lead] && q < lead)))
                    lead = q;
            }
            if (lead < 0) /* none pushed: the first op at the step assigns */
                lead = by_dst[i].m;
            for (int k = i; k < j; k++)
                p->mix[by_dst[k].m].assign = by_dst[k].m == lead;
        }
    }
    /* a group channel's delay line runs once per block: one output op each
     * (the group outputs' accumulators sorted, no two alike) */
    if (n_go > 1) {
        uintptr_t *acc = tmp_alloc(sc, (size_t)n_go, sizeof *acc);
        if (!acc)
            goto out;
        for (int m = 0, j = 0; m < p->mix_used; m++)
            if (p->mix[m].src_node == NULL)
                acc[j++] = (uintptr_t)p->mix[m].src;
        qsort(acc, (size_t)n_go, sizeof *acc, cmp_ptr);
        int dup = 0;
        for (int j = 1; j < n_go; j++)
            dup |= acc[j] == acc[j - 1];
        tmp_free(sc, acc);
        if (dup)
            goto out;
    }
    /* the pushed ops, grouped by source step (counted above), in op order:
     * placed in the pass that points the ops at their sources' buffers */
    for (int s = 0, at = 0; s < p->n_steps; s++) {
        p->steps[s].push_first = at;
        at += p->steps[s].push_count;
        p->steps[s].push_count = 0;
    }
    /* outputs bucketed by the step after which they are given back */
    for (int k = 0; k < n_out; k++)
        first[last[k] + 1]++;
    for (int s = 1; s <= p->n_steps; s++)
        first[s] += first[s - 1];
    for (int k = 0; k < n_out; k++)
        order[--first[last[k] + 1]] = k;
    /* first[s + 1] .. first[s + 2] - 1 now index the outputs freed after step s */
    int n_free = 0, n_slots = 0;
    unit_end = 0;
    for (int s = 0; s < p->n_steps; s++) {
        if (s >= unit_end) {
            unit_end = s + unit_len(p, s);
            for (int j = s; j < unit_end; j++)
                for (int c = 0; c < info[j].n_out; c++)
                    slot[p->steps[j].out_first + c] =
                        info[j].aliased ? -1 : n_free > 0 ? freed[--n_free] : n_slots++;
        }
        const int end = s + 2 <= p->n_steps ? first[s + 2] : n_out;
        for (int q = first[s + 1]; q < end; q++)
            if (slot[order[q]] >= 0)
                freed[n_free++] = slot[order[q]];
    }
    /* the pool itself is laid out for the engine's block when the plan goes
     * to it (mg_plan_layout): here the hardware buffers, and the ops by source */
    p->pool_slots = n_slots;
    p->slot = slot;
    p->n_outputs = n_out;
    slot = NULL;
    p->block = 0;
    for (int s = 0; s < p->n_steps; s++) {
        const mg_step *st = &p->steps[s];
        for (int c = 0; c < info[s].n_out; c++)
            if (p->slot[st->out_first + c] < 0)
                p->outb[st->out_first + c] = info_out(&info[s], c);
    }
    for (int m = 0; m < p->mix_used; m++) {
        mg_mixop *op = &p->mix[m];
        p->op_out[m] = -1;
        if (!op->src_node)
            continue;
        mg_step *ps = &p->steps[src_step[m]];
        p->op_out[m] = ps->out_first + op->src_index;
        if (op->push)
            p->push[ps->push_first + ps->push_count++] = m;
    }
    /* a step may fold (engine.c, fold_step) when its type can and every op
     * reading its outputs is pushed */
    for (int s = 0; s < p->n_steps; s++)
        p->steps[s].fold = info[s].type->fold && p->steps[s].gang == 1 && p->steps[s].push_count > 0;
    for (int m = 0; m < p->mix_used; m++)
        if (src_step[m] >= 0 && !p->mix[m].push)
            p->steps[src_step[m]].fold = 0;
    rc = 0;
out:
    tmp_free(sc, last);
    mg_free(slot);
    tmp_free(sc, freed);
    tmp_free(sc, order);
    tmp_free(sc, first);
    tmp_free(sc, ns);
    tmp_free(sc, src_step);
    tmp_free(sc, by_dst);
    tmp_free(sc, covered);
    return rc;
}

int mg_plan_buffers(const mg_plan *p) { return p->pool_slots; }

int mg_plan_block(const mg_plan *p) { return p->block; }

/* mg_plan_finish with what it needs of each step's node in info (by step). */
static int finish(mg_plan *p, const step_info *info, arena *sc)
{
    int rc = -1, total = 0;
    for (int s = 0; s < p->n_steps; s++)
        total += info[s].n_in;
    p->clear = mg_calloc((size_t)total + 1, sizeof(int));
    if (!p->clear)
        goto out;
    /* gangs: runs of one type with process_many, none fed by another member */
    for (int s = 0; s < p->n_steps;) {
        const mg_node_type *t = info[s].type;
        int g = 1;
        while (t->process_many && s + g < p->n_steps && g < MG_MAX_GANG &&
               info[s + g].type == t) {
            const mg_step *nx = &p->steps[s + g];
            int fed = 0;
            for (int m = nx->mix_first; m < nx->mix_first + nx->mix_count && !fed; m++)
                for (int j = s; j < s + g; j++)
                    fed |= p->mix[m].src_node == p->steps[j].node;
            if (fed)
                break;
            g++;
        }
        for (int j = s; j < s + g; j++) {
            p->steps[j].gang = j == s ? g : 0;
            p->steps[j].push_count = 0; /* counted by assign_buffers */
        }
        s += g;
    }
    if (assign_buffers(p, info, sc) != 0)
        goto out;
    p->finished = 1;
    rc = 0;
out:
    return rc;
}

int mg_plan_finish(mg_plan *p)
{
    /* what the passes need of each node, read once: a big graph's nodes
     * outgrow the cache, and every pass over them would miss again */
    step_info *info = tmp_alloc(NULL, (size_t)p->n_steps + 1, sizeof *info);
    if (!info)
        return -1;
    int rc = -1;
    for (int s = 0; s < p->n_steps; s++) {
        const mg_node *nd = p->steps[s].node;
        if (!nd)
            goto out;
        if (s + 8 < p->n_steps)
            __builtin_prefetch(p->steps[s + 8].node);
        info[s] = node_info(nd);
    }
    rc = finish(p, info, NULL);
out:
    free(info);
    return rc;
}

void mg_plan_add_edge(mg_plan *p, mg_edge *edge)
{
    if (p->edges_used < p->n_edges)
        p->edges[p->edges_used++] = edge;
}

/* ---- one-call plan building (server/planner.py) ------------------------- */

static int cmp_int(const void *a, const void *b)
{
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Stable counting sort of idx[0..n) by key[idx[i]] (keys 0..n_keys-1), via tmp. */
static void sort_by_key(int *idx, int n, const int *key, int n_keys, int *count, int *tmp)
{
    memset(count, 0, sizeof(int) * ((size_t)n_keys + 1));
    for (int i = 0; i < n; i++)
        count[key[idx[i]] + 1]++;
    for (int k = 0; k < n_keys; k++)
        count[k + 1] += count[k];
    for (int i = 0; i < n; i++)
        tmp[count[key[idx[i]]]++] = idx[i];
    memcpy(idx, tmp, sizeof(int) * (size_t)n);
}

/* Kahn's waves in build: the waiting nodes of rank r into out[], in the order
 * they came to wait; the list is then empty. Returns how many. */
static int release(int r, int *whead, const int *wnext, int *wcount, int *out)
{
    int k = 0;
    for (int u = whead[r]; u >= 0; u = wnext[u])
        out[k++] = u;
    whead[r] = -1;
    wcount[r] = 0;
    return k;
}

/* mg_plan_add_mix, mg_plan_add_group_mix and mg_plan_add_group_out with what
 * they read of the nodes in step_info (the same checks, the same ops). */
static int mix(mg_plan *p, int step, const step_info *di, int dst_in, mg_node *src,
               const step_info *si, int src_out, mg_edge *edge, int edge_ch)
{
    if (!step_ok(p, step) || !edge || !src)
        return -1;
    if (edge->delay > 0 && (edge_ch < 0 || edge_ch >= edge->channels))
        return -1;
    if (dst_in < 0 || dst_in >= di->n_in || src_out < 0 || src_out >= si->n_out)
        return -1;
    return add_op(p, step, info_in(di, dst_in), dst_in, info_out(si, src_out), src, src_out,
                  edge, edge_ch)
               ? 0
               : -1;
}

static int group_mix(mg_plan *p, int step, mg_dgroup *g, int g_ch, mg_node *src,
                     const step_info *si, int src_out, mg_edge *edge)
{
    if (!step_ok(p, step) || !g || !edge || !src || g_ch < 0 || g_ch >= g->channels ||
        src_out < 0 || src_out >= si->n_out || edge->delay > 0)
        return -1;
    mg_mixop *op = add_op(p, step, g->acc[g_ch], -1, info_out(si, src_out), src, src_out,
                          edge, 0);
    if (!op)
        return -1;
    op->to_acc = 1;
    return 0;
}

static int group_out(mg_plan *p, int step, const step_info *di, int dst_in, mg_dgroup *g,
                     int g_ch)
{
    if (!step_ok(p, step) || !g || g_ch < 0 || g_ch >= g->channels)
        return -1;
    if (dst_in < 0 || dst_in >= di->n_in)
        return -1;
    return add_op(p, step, info_in(di, dst_in), dst_in, g->acc[g_ch], NULL, -1, g->line, g_ch)
               ? 0
               : -1;
}

/* mg_plan_build with what it reads of each node in ninfo (by node index). */
static mg_plan *build(int n_nodes, mg_node *const *nodes, const step_info *ninfo,
                      const int *rank, int n_ranks, int n_edges, const int *src,
                      const int *dst, mg_edge *const *eptr, const int *group, const int *wire,
                      int n_groups, mg_dgroup *const *gptr, const int *gbase, int *order,
                      int *err, arena *sc)
{
    int err_dummy;
    if (!err)
        err = &err_dummy;
    *err = 2;
    if (n_nodes < 0 || n_edges < 0 || n_groups < 0 || n_ranks < 1)
        return NULL;
    mg_plan *p = NULL;
    const size_t nn = (size_t)n_nodes + 1, ne = (size_t)n_edges + 1;
    int *indeg = tmp_calloc(sc, nn, sizeof(int));
    int *out_first = tmp_calloc(sc, nn + 1, sizeof(int)); /* edges by source (CSR) */
    int *in_first = tmp_calloc(sc, nn + 1, sizeof(int));  /* edges by destination */
    int *out_e = tmp_alloc(sc, ne, sizeof(int));
    int *in_e = tmp_alloc(sc, ne, sizeof(int));
    int *ready = tmp_alloc(sc, nn, sizeof(int));
    int *tmp = tmp_alloc(sc, ne > nn ? ne : nn, sizeof(int));
    int *count = tmp_calloc(sc, (size_t)n_ranks + (size_t)n_groups + 2, sizeof(int));
    int *gmark = tmp_calloc(sc, (size_t)n_groups + 1, sizeof(int)); /* step + 1 that listed it */
    int *gl = tmp_alloc(sc, ne, sizeof(int)); /* a step's groups, first appearance order */
    int *left = tmp_calloc(sc, (size_t)n_ranks + 1, sizeof(int)); /* gang types: not placed */
    int *nready = tmp_calloc(sc, (size_t)n_ranks + 1, sizeof(int)); /* and ready, per rank */
    int *wnext = tmp_alloc(sc, nn, sizeof(int)); /* waiting nodes: a list per rank */
    int *whead = tmp_alloc(sc, (size_t)n_ranks + 1, sizeof(int));
    int *wtail = tmp_alloc(sc, (size_t)n_ranks + 1, sizeof(int));
    int *wcount = tmp_calloc(sc, (size_t)n_ranks + 1, sizeof(int));
    char *goes = tmp_calloc(sc, (size_t)n_ranks + 1, 1); /* per rank, this wave */
    if (!indeg || !out_first || !in_first || !out_e || !in_e || !ready || !tmp || !count ||
        !gmark || !gl || !left || !nready || !wnext || !whead || !wtail || !wcount || !goes)
        goto out;
    for (int r = 0; r <= n_ranks; r++)
        whead[r] = -1;
    *err = 3;
    for (int i = 0; i < n_nodes; i++)
        if (rank[i] < 0 || rank[i] >= n_ranks || !nodes[i])
            goto out;
    int n_mix = 0;
    for (int i = 0; i < n_edges; i++) {
        if (src[i] < 0 || src[i] >= n_nodes || dst[i] < 0 || dst[i] >= n_nodes || !eptr[i] ||
            group[i] < -1 || group[i] >= n_groups || wire[4 * i + 2] < 0)
            goto out;
        out_first[src[i] + 1]++;
        in_first[dst[i] + 1]++;
        indeg[dst[i]]++;
        n_mix += wire[4 * i + 2];
        if (group[i] >= 0 && !gmark[group[i]]) {
            gmark[group[i]] = 1;
            n_mix += gptr[group[i]]->channels;
        }
    }
    memset(gmark, 0, sizeof(int) * ((size_t)n_groups + 1));
    for (int v = 0; v < n_nodes; v++) {
        out_first[v + 1] += out_first[v];
        in_first[v + 1] += in_first[v];
    }
    /* edge lists in edge order (tmp: fill positions) */
    memcpy(tmp, out_first, sizeof(int) * (size_t)n_nodes);
    for (int i = 0; i < n_edges; i++)
        out_e[tmp[src[i]]++] = i;
    memcpy(tmp, in_first, sizeof(int) * (size_t)n_nodes);
    for (int i = 0; i < n_edges; i++)
        in_e[tmp[dst[i]]++] = i;
    /* Kahn's algorithm in waves (every node whose inputs are all in earlier
     * waves), each wave sorted by type rank, stably, so nodes of one type sit
     * together where they can run as a gang (finish). A ready node of a type
     * with process_many waits while more nodes of its type are still to come
     * and other nodes can be placed: a strip with a node more at its head
     * (denoise before the gate) reaches its equaliser a wave later than the
     * other strips, and the equalisers would otherwise make two gangs (54 and
     * 10 of 64: 9 vectors of 8 lanes instead of 8). When only waiting nodes
     * are ready, the type with most of them goes. */
    int n_ready = 0, n_waiting = 0, done = 0;
    for (int v = 0; v < n_nodes; v++) {
        if (indeg[v] == 0)
            ready[n_ready++] = v;
        left[rank[v]] += ninfo[v].type->process_many != NULL;
    }
    /* Waiting nodes are kept per rank (a list each, in the order they came to
     * wait) and not looked at again until fresh nodes of their rank are ready
     * or nothing else can go: a wave costs its fresh nodes (and the ranks when
     * only waiting nodes are left), not every node that waits (a long strip
     * beside many waiting equalisers was O(n^2): bench/plan_build.py late).
     * ready[] holds the fresh nodes of a wave. */
    while (n_ready > 0 || n_waiting > 0) {
        if (n_ready > 1) /* a chain's waves are single nodes: nothing to sort */
            sort_by_key(ready, n_ready, rank, n_ranks, count, tmp);
        /* nready[r]: gang nodes of rank r fresh; with wcount[r] those ready */
        for (int i = 0; i < n_ready; i++)
            nready[rank[ready[i]]] += ninfo[ready[i]].type->process_many != NULL;
        /* can a node go: not of a gang type, or all of its type left are ready
         * (a rank waits while fewer are, and only fresh nodes add to them) */
        int any = 0, best = -1;
        for (int i = 0; i < n_ready; i++) {
            const int r = rank[ready[i]];
            goes[r] = wcount[r] + nready[r] == left[r];
            any |= goes[r] || !ninfo[ready[i]].type->process_many;
        }
        int n_wave = 0, late = 0;
        if (!any) { /* only waiting nodes: the most numerous type goes, its
                     * waiting nodes first (as in the ready nodes sorted by rank) */
            for (int r = 0; r < n_ranks; r++)
                if (wcount[r] + nready[r] > 0 &&
                    (best < 0 || wcount[r] + nready[r] > wcount[best] + nready[best]))
                    best = r;
            for (int i = 0; i < n_ready; i++)
                goes[rank[ready[i]]] = 0;
            goes[best] = 1;
            late = wcount[best] > 0;
            n_wave = release(best, whead, wnext, wcount, order + done);
            n_waiting -= n_wave;
        }
        /* the wave in the order of the ready nodes sorted by rank (a rank's
         * waiting nodes before its fresh ones); the rest wait */
        for (int i = 0; i < n_ready; i++) {
            const int v = ready[i], r = rank[v];
            if (goes[r] && wcount[r] > 0) { /* at the first fresh node of r */
                const int k = release(r, whead, wnext, wcount, order + done + n_wave);
                n_wave += k;
                n_waiting -= k;
                late = 1;
            }
            if (goes[r] || (any && !ninfo[v].type->process_many)) {
                order[done + n_wave++] = v;
            } else { /* waits: at the end of its rank's list */
                wnext[v] = -1;
                if (wcount[r]++ > 0)
                    wnext[wtail[r]] = v;
                else
                    whead[r] = v;
                wtail[r] = v;
                n_waiting++;
            }
        }
        for (int i = 0; i < n_ready; i++)
            nready[rank[ready[i]]] = goes[rank[ready[i]]] = 0;
        if (best >= 0)
            goes[best] = 0;
        /* a wave with nodes that waited: by type, then in the nodes' order (a
         * gang's lanes in strip order, as when all arrive in one wave) */
        if (late) {
            qsort(order + done, (size_t)n_wave, sizeof(int), cmp_int);
            sort_by_key(order + done, n_wave, rank, n_ranks, count, ready); /* ready: scratch */
        }
        for (int w = done; w < done + n_wave; w++)
            left[rank[order[w]]] -= ninfo[order[w]].type->process_many != NULL;
        const int wave_start = done;
        done += n_wave;
        n_ready = 0;
        for (int w = wave_start; w < done; w++) {
            const int v = order[w];
            for (int k = out_first[v]; k < out_first[v + 1]; k++) {
                const int u = dst[out_e[k]];
                if (--indeg[u] == 0)
                    ready[n_ready++] = u;
            }
        }
    }
    if (done != n_nodes) {
        *err = 1;
        goto out;
    }
    *err = 2;
    p = mg_plan_new(n_nodes, n_mix, n_edges);
    if (!p)
        goto out;
    p->src_step = tmp_alloc(sc, (size_t)n_mix + 1, sizeof(int));
    if (!p->src_step)
        goto fail;
    for (int s = 0; s < n_nodes; s++)
        indeg[order[s]] = s; /* indeg is spent: now each node's step */
    *err = 3;
    for (int s = 0; s < n_nodes; s++) {
        const int v = order[s];
        mg_plan_set_step(p, s, nodes[v]);
        const int a = in_first[v], b = in_first[v + 1];
        /* the delay groups into this node, in the order of their first member */
        int n_gl = 0;
        for (int k = a; k < b; k++) {
            const int g = group[in_e[k]];
            if (g >= 0 && gmark[g] != s + 1) {
                gmark[g] = s + 1;
                gl[n_gl++] = g;
            }
        }
        /* members first: each group sums them before its delay line runs */
        for (int j = 0; j < n_gl; j++) {
            const int g = gl[j];
            for (int k = a; k < b; k++) {
                const int i = in_e[k];
                if (group[i] != g)
                    continue;
                const int *w = wire + 4 * i;
                for (int c = 0; c < w[2]; c++) {
                    if (group_mix(p, s, gptr[g], c, nodes[src[i]], &ninfo[src[i]],
                                  w[1] + (w[3] ? c : 0), eptr[i]) != 0)
                        goto fail;
                    p->src_step[p->mix_used - 1] = indeg[src[i]];
                }
            }
        }
        for (int k = a; k < b; k++) {
            const int i = in_e[k];
            if (group[i] >= 0)
                continue;
            const int *w = wire + 4 * i;
            for (int c = 0; c < w[2]; c++) {
                if (mix(p, s, &ninfo[v], w[0] + c, nodes[src[i]], &ninfo[src[i]],
                        w[1] + (w[3] ? c : 0), eptr[i], c) != 0)
                    goto fail;
                p->src_step[p->mix_used - 1] = indeg[src[i]];
            }
        }
        for (int j = 0; j < n_gl; j++) {
            const int g = gl[j];
            for (int c = 0; c < gptr[g]->channels; c++)
                if (group_out(p, s, &ninfo[v], gbase[g] + c, gptr[g], c) != 0)
                    goto fail;
        }
    }
    for (int i = 0; i < n_edges; i++)
        mg_plan_add_edge(p, eptr[i]);
    *err = 4;
    {
        step_info *info = tmp_alloc(sc, nn, sizeof *info); /* by step */
        if (!info)
            goto fail;
        for (int s = 0; s < n_nodes; s++)
            info[s] = ninfo[order[s]];
        const int rc = finish(p, info, sc);
        tmp_free(sc, info);
        if (rc != 0)
            goto fail;
    }
    tmp_free(sc, p->src_step);
    p->src_step = NULL;
    *err = 0;
    goto out;
fail:
    if (p) {
        tmp_free(sc, p->src_step);
        p->src_step = NULL;
    }
    mg_plan_free(p);
    p = NULL;
out:
    tmp_free(sc, indeg);
    tmp_free(sc, out_first);
    tmp_free(sc, in_first);
    tmp_free(sc, out_e);
    tmp_free(sc, in_e);
    tmp_free(sc, ready);
    tmp_free(sc, tmp);
    tmp_free(sc, count);
    tmp_free(sc, gmark);
    tmp_free(sc, gl);
    tmp_free(sc, left);
    tmp_free(sc, nready);
    tmp_free(sc, wnext);
    tmp_free(sc, whead);
    tmp_free(sc, wtail);
    tmp_free(sc, wcount);
    tmp_free(sc, goes);
    return p;
}

mg_plan *mg_plan_build(int n_nodes, mg_node *const *nodes, const int *rank, int n_ranks,
                       int n_edges, const int *src, const int *dst, mg_edge *const *eptr,
                       const int *group, const int *wire, int n_groups,
                       mg_dgroup *const *gptr, const int *gbase, int *order, int *err)
{
    int err_dummy;
    if (!err)
        err = &err_dummy;
    *err = 2;
    if (n_nodes < 0)
        return NULL;
    step_info *ninfo = tmp_alloc(NULL, (size_t)n_nodes + 1, sizeof *ninfo);
    if (!ninfo)
        return NULL;
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i])
            ninfo[i] = node_info(nodes[i]);
    mg_plan *p = build(n_nodes, nodes, ninfo, rank, n_ranks, n_edges, src, dst, eptr, group,
                       wire, n_groups, gptr, gbase, order, err, NULL);
    free(ninfo);
    return p;
}

/* ---- plan inputs kept across plans (server/planner.py) ----------------- */

/* One region of entries of a kind, in the order they were put there: slots
 * hold the entries, dropped or moved ones leave holes, squeezed out when they
 * outnumber the rest. */
typedef struct {
    void **ptr; /* by slot; NULL: a hole */
    int *hnd;   /* by slot: its handle */
    int *data;  /* by slot: width ints */
    int n_slots, n_live, cap;
} pin_seq;

/* A kind of entry (nodes, edges or groups): its regions, read one after the
 * other (nodes: live, removed and still running; edges: live, bypass
 * stand-ins, removed and fading; as the session lists them), and where each
 * handle's entry is (a handle names an entry for its life, never reused). */
typedef struct {
    pin_seq r[3];
    int n_regions, width;
    int *reg, *slot; /* by handle: its region and slot; slot -1 dropped */
    int n_hnd, hcap;
} pin_fam;

struct mg_pin {
    pin_fam f[3]; /* nodes (rank), edges (src, dst, group, wire[4]), groups (gbase) */
    int *order;   /* node handle of each step of the last plan built */
    int n_order;
    step_info *info; /* by node handle: what a build reads of the node, read
                        once when it is added (a build touches no node) */
    char *wait;      /* by node handle: 1 while it waits to join the plans
                        (mg_pin_wait), with every edge into or out of it */
    int info_cap;
    arena scratch;   /* the builds' temporary arrays */
};

mg_pin *mg_pin_new(void)
{
    mg_pin *pin = mg_calloc(1, sizeof *pin);
    if (pin) {
        pin->f[0].width = 1;
        pin->f[0].n_regions = 2;
        pin->f[1].width = 7;
        pin->f[1].n_regions = 3;
        pin->f[2].width = 1;
        pin->f[2].n_regions = 1;
    }
    return pin;
}

void mg_pin_free(mg_pin *pin)
{
    if (!pin)
        return;
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r < 3; r++) {
            mg_free(pin->f[k].r[r].ptr);
            mg_free(pin->f[k].r[r].hnd);
            mg_free(pin->f[k].r[r].data);
        }
        mg_free(pin->f[k].reg);
        mg_free(pin->f[k].slot);
    }
    mg_free(pin->order);
    mg_free(pin->info);
    mg_free(pin->wait);
    free(pin->scratch.mem);
    mg_free(pin);
}

/* old's first `used` bytes in a new zeroed block of `want` (old freed); NULL
 * and old kept when out of memory. */
static void *grow(void *old, size_t used, size_t want)
{
    void *p = mg_calloc(want, 1);
    if (p && old)
        memcpy(p, old, used);
    if (p)
        mg_free(old);
    return p;
}

/* Squeeze region q's holes out, keeping the order (O(slots), amortised over
 * the drops that made the holes). */
static void seq_compact(pin_fam *f, pin_seq *q)
{
    int w = 0;
    for (int s = 0; s < q->n_slots; s++) {
        if (!q->ptr[s])
            continue;
        q->ptr[w] = q->ptr[s];
        q->hnd[w] = q->hnd[s];
        memmove(q->data + (size_t)w * f->width, q->data + (size_t)s * f->width,
                sizeof(int) * (size_t)f->width);
        f->slot[q->hnd[w]] = w;
        w++;
    }
    q->n_slots = w;
}

/* Put handle h's entry at the end of region r; 0 ok, -1 out of memory. */
static int fam_put(pin_fam *f, int r, int h, void *ptr, const int *data)
{
    pin_seq *q = &f->r[r];
    if (q->n_slots == q->cap && q->n_live < q->cap / 2)
        seq_compact(f, q);
    if (q->n_slots == q->cap) {
        const size_t c = (size_t)q->cap, n = c ? 2 * c : 64, w = (size_t)f->width;
        void **np = grow(q->ptr, c * sizeof(void *), n * sizeof(void *));
        if (!np)
            return -1;
        q->ptr = np;
        int *nh = grow(q->hnd, c * sizeof(int), n * sizeof(int));
        if (!nh)
            return -1;
        q->hnd = nh;
        int *nd = grow(q->data, c * w * sizeof(int), n * w * sizeof(int));
        if (!nd)
            return -1;
        q->data = nd;
        q->cap = (int)n;
    }
    const int s = q->n_slots++;
    q->ptr[s] = ptr;
    q->hnd[s] = h;
    memcpy(q->data + (size_t)s * f->width, data, sizeof(int) * (size_t)f->width);
    f->reg[h] = r;
    f->slot[h] = s;
    q->n_live++;
    return 0;
}

static int fam_add(pin_fam *f, int r, void *ptr, const int *data)
{
    if (!ptr || r < 0 || r >= f->n_regions)
        return -1;
    if (f->n_hnd == f->hcap) {
        const size_t c = (size_t)f->hcap, n = c ? 2 * c : 64;
        int *ns = grow(f->slot, c * sizeof(int), n * sizeof(int));
        if (!ns)
            return -1;
        f->slot = ns;
        int *nr = grow(f->reg, c * sizeof(int), n * sizeof(int));
        if (!nr)
            return -1;
        f->reg = nr;
        f->hcap = (int)n;
    }
    const int h = f->n_hnd;
    if (fam_put(f, r, h, ptr, data) != 0)
        return -1;
    f->n_hnd++;
    return h;
}

/* The slot of handle h, -1 if dropped or never made. */
static int fam_slot(const pin_fam *f, int h)
{
    return h >= 0 && h < f->n_hnd ? f->slot[h] : -1;
}

static void *fam_ptr(const pin_fam *f, int h)
{
    const int s = fam_slot(f, h);
    return s < 0 ? NULL : f->r[f->reg[h]].ptr[s];
}

static void fam_drop(pin_fam *f, int h)
{
    const int s = fam_slot(f, h);
    if (s < 0)
        return;
    pin_seq *q = &f->r[f->reg[h]];
    q->ptr[s] = NULL;
    q->n_live--;
    f->slot[h] = -1;
}

int mg_pin_add_node(mg_pin *pin, mg_node *node, int rank)
{
    if (!node)
        return -1;
    const int h = pin->f[0].n_hnd;
    if (h >= pin->info_cap) {
        const size_t c = (size_t)pin->info_cap, n = c ? 2 * c : 64;
        step_info *ni = grow(pin->info, c * sizeof *ni, n * sizeof *ni);
        if (!ni)
            return -1;
        pin->info = ni;
        char *nw = grow(pin->wait, c, n);
        if (!nw)
            return -1;
        pin->wait = nw;
        pin->info_cap = (int)n;
    }
    pin->info[h] = node_info(node);
    return fam_add(&pin->f[0], 0, node, &rank);
}

void mg_pin_wait(mg_pin *pin, int node, int on)
{
    if (node >= 0 && node < pin->f[0].n_hnd)
        pin->wait[node] = on != 0;
}

void mg_pin_set_rank(mg_pin *pin, int node, int rank)
{
    const int s = fam_slot(&pin->f[0], node);
    if (s >= 0)
        pin->f[0].r[pin->f[0].reg[node]].data[s] = rank;
}

int mg_pin_add_group(mg_pin *pin, mg_dgroup *g, int gbase)
{
    return fam_add(&pin->f[2], 0, g, &gbase);
}

int mg_pin_add_edge(mg_pin *pin, mg_edge *edge, int region, int src, int dst, int group,
                    const int *wire)
{
    const int d[7] = {src, dst, group, wire[0], wire[1], wire[2], wire[3]};
    return fam_add(&pin->f[1], region, edge, d);
}

int mg_pin_move(mg_pin *pin, int kind, int handle, int region)
{
    if (kind < 0 || kind > 2)
        return -1;
    pin_fam *f = &pin->f[kind];
    const int s = fam_slot(f, handle);
    if (s < 0 || region < 0 || region >= f->n_regions)
        return -1;
    pin_seq *q = &f->r[f->reg[handle]];
    int d[7];
    memcpy(d, q->data + (size_t)s * f->width, sizeof(int) * (size_t)f->width);
    void *ptr = q->ptr[s];
    q->ptr[s] = NULL; /* the old place is a hole (first: putting may squeeze q) */
    q->n_live--;
    f->slot[handle] = -1;
    return fam_put(f, region, handle, ptr, d); /* out of memory: dropped */
}

int mg_pin_swap(mg_pin *pin, int kind, int a, int b)
{
    if (kind < 0 || kind > 2)
        return -1;
    pin_fam *f = &pin->f[kind];
    const int sa = fam_slot(f, a), sb = fam_slot(f, b);
    if (sa < 0 || sb < 0)
        return -1;
    const int ra = f->reg[a], rb = f->reg[b], w = f->width;
    pin_seq *qa = &f->r[ra], *qb = &f->r[rb];
    void *tp = qa->ptr[sa];
    qa->ptr[sa] = qb->ptr[sb];
    qb->ptr[sb] = tp;
    qa->hnd[sa] = b;
    qb->hnd[sb] = a;
    int td[7];
    memcpy(td, qa->data + (size_t)sa * w, sizeof(int) * (size_t)w);
    memcpy(qa->data + (size_t)sa * w, qb->data + (size_t)sb * w, sizeof(int) * (size_t)w);
    memcpy(qb->data + (size_t)sb * w, td, sizeof(int) * (size_t)w);
    f->reg[a] = rb;
    f->slot[a] = sb;
    f->reg[b] = ra;
    f->slot[b] = sa;
    return 0;
}

void mg_pin_drop(mg_pin *pin, int kind, int handle)
{
    if (kind >= 0 && kind <= 2)
        fam_drop(&pin->f[kind], handle);
}

int mg_pin_count(const mg_pin *pin, int kind)
{
    if (kind < 0 || kind > 2)
        return -1;
    int n = 0;
    for (int r = 0; r < pin->f[kind].n_regions; r++)
        n += pin->f[kind].r[r].n_live;
    return n;
}

int mg_pin_step_node(const mg_pin *pin, int step)
{
    return step >= 0 && step < pin->n_order ? pin->order[step] : -1;
}

mg_plan *mg_pin_build(mg_pin *pin, int n_ranks, int *err)
{
    int err_dummy;
    if (!err)
        err = &err_dummy;
    *err = 2;
    for (int k = 0; k < 3; k++)
        for (int r = 0; r < pin->f[k].n_regions; r++)
            if (pin->f[k].r[r].n_slots > 2 * pin->f[k].r[r].n_live + 64)
                seq_compact(&pin->f[k], &pin->f[k].r[r]);
    arena *sc = &pin->scratch;
    arena_reset(sc);
    const pin_fam *fn = &pin->f[0], *fe = &pin->f[1], *fg = &pin->f[2];
    const size_t nn = (size_t)mg_pin_count(pin, 0) + 1, ne = (size_t)mg_pin_count(pin, 1) + 1;
    const size_t ng_max = (size_t)mg_pin_count(pin, 2) + 1;
    mg_plan *p = NULL;
    mg_node **nodes = tmp_alloc(sc, nn, sizeof *nodes);
    int *rank = tmp_alloc(sc, nn, sizeof(int));
    int *nh = tmp_alloc(sc, nn, sizeof(int));                      /* node index -> handle */
    int *pos = tmp_alloc(sc, (size_t)fn->n_hnd + 1, sizeof(int));  /* node handle -> index */
    mg_edge **eptr = tmp_alloc(sc, ne, sizeof *eptr);
    int *src = tmp_alloc(sc, ne, sizeof(int)), *dst = tmp_alloc(sc, ne, sizeof(int));
    int *group = tmp_alloc(sc, ne, sizeof(int)), *wire = tmp_alloc(sc, 4 * ne, sizeof(int));
    int *gidx = tmp_calloc(sc, (size_t)fg->n_hnd + 1, sizeof(int)); /* group handle -> index + 1 */
    mg_dgroup **gptr = tmp_alloc(sc, ng_max, sizeof *gptr);
    int *gbase = tmp_alloc(sc, ng_max, sizeof(int));
    int *order = tmp_alloc(sc, nn, sizeof(int));
    int *hord = mg_calloc(nn, sizeof(int)) /* kept: pin->order */;
    step_info *ninfo = tmp_alloc(sc, nn, sizeof *ninfo);
    if (!nodes || !rank || !nh || !pos || !eptr || !src || !dst || !group || !wire || !gidx ||
        !gptr || !gbase || !order || !hord || !ninfo)
        goto out;
    int n = 0, m = 0, ng = 0;
    for (int r = 0; r < fn->n_regions; r++)
        for (int s = 0; s < fn->r[r].n_slots; s++)
            if (fn->r[r].ptr[s] && !pin->wait[fn->r[r].hnd[s]]) {
                nodes[n] = fn->r[r].ptr[s];
                rank[n] = fn->r[r].data[s];
                nh[n] = fn->r[r].hnd[s];
                pos[nh[n]] = n;
                ninfo[n] = pin->info[nh[n]];
                n++;
            }
    for (int r = 0; r < fe->n_regions; r++)
        for (int s = 0; s < fe->r[r].n_slots; s++) {
            if (!fe->r[r].ptr[s])
                continue;
            const int *d = fe->r[r].data + (size_t)s * 7;
            if (fam_slot(fn, d[0]) < 0 || fam_slot(fn, d[1]) < 0 || pin->wait[d[0]] ||
                pin->wait[d[1]])
                continue; /* an edge of a node not in the plan */
            int gi = -1;
            if (d[2] >= 0) {
                mg_dgroup *g = fam_ptr(fg, d[2]);
                if (!g) {
                    *err = 3;
                    goto out;
                }
                if (!gidx[d[2]]) {
                    gptr[ng] = g;
                    gbase[ng] = fg->r[fg->reg[d[2]]].data[fam_slot(fg, d[2])];
                    gidx[d[2]] = ++ng;
                }
                gi = gidx[d[2]] - 1;
            }
            eptr[m] = fe->r[r].ptr[s];
            src[m] = pos[d[0]];
            dst[m] = pos[d[1]];
            group[m] = gi;
            memcpy(wire + 4 * m, d + 3, sizeof(int) * 4);
            m++;
        }
    p = build(n, nodes, ninfo, rank, n_ranks, m, src, dst, eptr, group, wire, ng, gptr, gbase,
              order, err, sc);
    if (p) {
        for (int k = 0; k < n; k++)
            hord[k] = nh[order[k]];
        mg_free(pin->order);
        pin->order = hord;
        pin->n_order = n;
        hord = NULL;
    }
out:
    tmp_free(sc, nodes);
    tmp_free(sc, rank);
    tmp_free(sc, nh);
    tmp_free(sc, pos);
    tmp_free(sc, eptr);
    tmp_free(sc, src);
    tmp_free(sc, dst);
    tmp_free(sc, group);
    tmp_free(sc, wire);
    tmp_free(sc, gidx);
    tmp_free(sc, gptr);
    tmp_free(sc, gbase);
    tmp_free(sc, order);
    tmp_free(sc, hord);
    tmp_free(sc, ninfo);
    return p;
}

int mg_plan_same(const mg_plan *a, const mg_plan *b)
{
    if (a->n_steps != b->n_steps || a->mix_used != b->mix_used ||
        a->edges_used != b->edges_used || a->pool_slots != b->pool_slots)
        return 0;
    for (int s = 0; s < a->n_steps; s++) {
        const mg_step *x = &a->steps[s], *y = &b->steps[s];
        if (x->node != y->node || x->mix_first != y->mix_first ||
            x->mix_count != y->mix_count || x->gang != y->gang ||
            x->push_first != y->push_first || x->push_count != y->push_count)
            return 0;
    }
    for (int m = 0; m < a->mix_used; m++) {
        const mg_mixop *x = &a->mix[m], *y = &b->mix[m];
        if (x->dst != y->dst || x->edge != y->edge || x->dst_index != y->dst_index ||
            x->src_index != y->src_index || x->src_node != y->src_node ||
            x->assign != y->assign || x->edge_ch != y->edge_ch || x->alias != y->alias ||
            x->to_acc != y->to_acc || x->push != y->push ||
            (!x->src_node && x->src != y->src) || a->push[m] != b->push[m])
            return 0;
    }
    for (int i = 0; i < a->edges_used; i++)
        if (a->edges[i] != b->edges[i])
            return 0;
    return 1;
}

int mg_plan_gangs(const mg_plan *p, int *steps, int *sizes, int max)
{
    int k = 0;
    for (int s = 0; s < p->n_steps; s++)
        if (p->steps[s].gang > 1) {
            if (k < max) {
                steps[k] = s;
                sizes[k] = p->steps[s].gang;
            }
            k++;
        }
    return k;
}
