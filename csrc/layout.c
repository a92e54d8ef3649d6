/* mixgraph C core: the layout of a finished plan's pool for the engine's
 * block (control thread, when the plan is pushed: engine.c's prepare_plan).
 *
 * mg_plan_finish (csrc/plan.c) gives each node output a slot; here the slots
 * get memory, each mg_slot_floats(block) floats (mg_internal.h: the one
 * definition csrc/pool.c uses too), and the outputs and the ops that read
 * them are pointed at it. A file of its own so that engine.c, which calls
 * it, does not depend on plan.c, which calls the engine. See
 * docs/architecture.md, "Buffers". */
#include "mg_internal.h"

int mg_plan_layout(mg_plan *p, int block)
{
    if (!p->finished)
        return 0;
    block = mg_block_frames(block);
    if (p->block == block)
        return 0;
    const size_t stride = mg_slot_floats(block);
    float *mem = mg_calloc((size_t)p->pool_slots * stride + 16, sizeof(float));
    if (!mem)
        return -1;
    mg_free(p->pool_mem);
    p->pool_mem = mem;
    p->block = block;
    float *base = (float *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    for (int k = 0; k < p->n_outputs; k++)
        if (p->slot[k] >= 0)
            p->outb[k] = base + (size_t)p->slot[k] * stride;
    for (int m = 0; m < p->mix_used; m++)
        if (p->op_out[m] >= 0)
            p->mix[m].src = p->outb[p->op_out[m]];
    return mg_plan_calls(p);
}

/* What unconnected inputs read (mg_internal.h): the prebuilt calls and the
 * engine's plan steps point at it. */
const float mg_zeros[MG_MAX_BLOCK];

/* The one-thread path's prebuilt calls (mg_call) and their input pointers at
 * offset 0 (mg_plan.inb), from the plan's steps and pool. The flags the
 * audio thread keeps (pull, fold_unity) and the inputs read in place are
 * set again by refresh_ops before the plan first runs. */
int mg_plan_calls(mg_plan *p)
{
    size_t total_in = 0;
    for (int s = 0; s < p->n_steps; s++)
        total_in += (size_t)p->steps[s].node->n_in;
    mg_call *calls = mg_calloc((size_t)p->n_steps + 1, sizeof(mg_call));
    const float **inb = mg_calloc(total_in + 1, sizeof(float *));
    if (!calls || !inb) {
        mg_free(calls);
        mg_free(inb);
        return -1;
    }
    size_t in_first = 0;
    for (int s = 0; s < p->n_steps; s++) {
        const mg_step *st = &p->steps[s];
        mg_node *nd = st->node;
        mg_call *c = &calls[s];
        const float **in = inb + in_first;
        in_first += (size_t)nd->n_in;
        for (int k = st->clear_first; k < st->clear_first + st->clear_count; k++)
            in[p->clear[k]] = mg_zeros;
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
            const mg_mixop *op = &p->mix[m];
            if (op->dst_index >= 0)
                in[op->dst_index] = op->inplace ? op->src : op->dst;
        }
        c->node = nd;
        c->state = nd->state;
        if (st->gang > 1)
            c->fn.process_many = nd->type->process_many;
        else
            c->fn.process = nd->type->process;
        c->in = in;
        c->out = p->outb + st->out_first;
        c->pv = nd->pv;
        c->readout = (float *)mg_node_readouts(nd);
        c->push_first = st->push_first;
        c->push_count = st->push_count;
        c->gang = st->gang;
        c->flags = (uint8_t)((st->inert ? MG_CALL_INERT : 0) | (st->fold ? MG_CALL_FOLD : 0) |
                             (st->pull ? MG_CALL_PULL : 0) |
                             (st->fold_unity ? MG_CALL_FOLD_UNITY : 0));
    }
    mg_plan_fuse_free(p); /* it points into the calls */
    mg_free(p->calls);
    mg_free(p->inb);
    p->calls = calls;
    p->inb = inb;
    mg_plan_fuse(p); /* out of memory: no fused tails, the steps run as they are */
    return 0;
}

/* ---- fused strip tails (mg_fuse) ---------------------------------------- */

/* A tail's arrays freed and the tail zeroed (a refused group, or a plan's). */
static void fuse_clear(mg_fuse *f)
{
    mg_free(f->pan);
    mg_free(f->fader);
    mg_free(f->send);
    mg_free(f->op);
    mg_free(f->x);
    mg_free(f->gv_mem);
    mg_free(f->nodes);
    memset(f, 0, sizeof(*f));
}

void mg_plan_fuse_free(mg_plan *p)
{
    for (int i = 0; i < p->n_fuse; i++)
        fuse_clear(&p->fuse[i]);
    mg_free(p->fuse);
    mg_free(p->fuse_of);
    p->fuse = NULL;
    p->fuse_of = NULL;
    p->n_fuse = 0;
}

/* What a step of a strip tail is (mg_fuse): a panner (steady, 1 in, 2 out),
 * a fader (steady, 2 in, 2 out) or a send (fold, 2 out, post and pre 2 each). */
enum { FZ_NONE, FZ_PAN, FZ_FADER, FZ_SEND };

static int fz_kind(const mg_plan *p, int s)
{
    const mg_step *st = &p->steps[s];
    const mg_node *nd = st->node;
    if (st->gang > 1 || st->inert || (p->calls && p->calls[s].gang != 1))
        return FZ_NONE;
    if (nd->type->steady && nd->n_in == 1 && nd->n_out == 2)
        return FZ_PAN;
    if (nd->type->steady && nd->n_in == 2 && nd->n_out == 2)
        return FZ_FADER;
    if (nd->type->fold && st->fold && nd->n_in == 4 && nd->n_out == 2)
        return FZ_SEND;
    return FZ_NONE;
}

/* The op into input channel k of step s (-1: none, or more than one). */
static int op_into(const mg_plan *p, int s, int k)
{
    const mg_step *st = &p->steps[s];
    int found = -1;
    for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++)
        if (p->mix[m].dst_index == k) {
            if (found >= 0)
                return -1;
            found = m;
        }
    return found;
}

/* Of step s's pushes, the one from output channel c (-1: none or several). */
static int push_of(const mg_plan *p, int s, int c)
{
    const mg_step *st = &p->steps[s];
    int found = -1;
    for (int q = st->push_first; q < st->push_first + st->push_count; q++)
        if (p->mix[p->push[q]].src_index == c) {
            if (found >= 0)
                return -1;
            found = p->push[q];
        }
    return found;
}

/* Whether steps [a, b) are one strip tail; fills f (its arrays allocated). */
static int fz_group(const mg_plan *p, int a, int pans_end, const int *op_step,
                    const int *n_readers, mg_fuse *f)
{
    const int strips = pans_end - a;
    if (strips < 2)
        return 0;
    /* the sends: what reads the first strip's fader besides its push */
    int fd0 = -1;
    for (int m = 0; m < p->mix_used; m++)
        if (p->op_out[m] == p->steps[a].out_first)
            fd0 = op_step[m];
    if (fd0 < 0 || fz_kind(p, fd0) != FZ_FADER)
        return 0;
    const int S = n_readers[p->steps[fd0].out_first] - 1, T = 2 + 2 * S;
    if (S < 0 || S > MG_FUSE_SENDS)
        return 0;
    int b = a;
    f->first = a;
    f->strips = strips;
    f->sends = S;
    f->pan = mg_calloc((size_t)strips, sizeof(int));
    f->fader = mg_calloc((size_t)strips, sizeof(int));
    f->send = mg_calloc((size_t)strips * (size_t)S + 1, sizeof(int));
    f->op = mg_calloc((size_t)strips * (size_t)T, sizeof(int));
    f->x = mg_calloc((size_t)strips, sizeof(float *));
    f->gv_mem = mg_calloc((size_t)strips * (size_t)(4 + S) * 8 + 8, sizeof(float));
    if (!f->pan || !f->fader || !f->send || !f->op || !f->x || !f->gv_mem)
        return -1;
    f->gv = (float *)(((uintptr_t)f->gv_mem + 31) & ~(uintptr_t)31);
    int k = 0;
    for (int s = a; s < pans_end; s++) {
        /* the panner: its two outputs read only by one fader's inputs 0, 1 */
        const mg_step *ps = &p->steps[s];
        if (ps->push_count || ps->mix_count != 1 || ps->clear_count)
            return 0;
        const int o = ps->out_first;
        if (n_readers[o] != 1 || n_readers[o + 1] != 1)
            return 0;
        int fd = -1;
        for (int m = 0; m < p->mix_used; m++)
            if (p->op_out[m] == o)
                fd = op_step[m];
        if (fd < a || fz_kind(p, fd) != FZ_FADER)
            return 0;
        const int i0 = op_into(p, fd, 0), i1 = op_into(p, fd, 1);
        if (i0 < 0 || i1 < 0 || p->op_out[i0] != o || p->op_out[i1] != o + 1 ||
            p->steps[fd].mix_count != 2 || p->mix[i0].push || p->mix[i1].push)
            return 0;
        /* the fader: pushes from outputs 0 and 1, the rest read by its sends' post */
        const mg_step *fs = &p->steps[fd];
        if (fs->push_count != 2)
            return 0;
        int *op = f->op + (size_t)k * (size_t)T;
        op[0] = push_of(p, fd, 0);
        op[1] = push_of(p, fd, 1);
        const int fo = fs->out_first;
        if (op[0] < 0 || op[1] < 0 || n_readers[fo] != 1 + S || n_readers[fo + 1] != 1 + S)
            return 0;
        int j = 0;
        for (int m = 0; m < p->mix_used; m++) {
            if (p->op_out[m] != fo || p->mix[m].push)
                continue;
            const int sd = op_step[m];
            if (sd < a || fz_kind(p, sd) != FZ_SEND || j >= S)
                return 0;
            const mg_step *ss = &p->steps[sd];
            const int j0 = op_into(p, sd, 0), j1 = op_into(p, sd, 1);
            if (j0 < 0 || j1 < 0 || p->op_out[j0] != fo || p->op_out[j1] != fo + 1 ||
                ss->mix_count != 2 || ss->push_count != 2 || p->mix[j0].push || p->mix[j1].push)
                return 0;
            const int q0 = push_of(p, sd, 0), q1 = push_of(p, sd, 1);
            if (q0 < 0 || q1 < 0)
                return 0;
            /* sends in the order of their buses in the first strip */
            int slot = j;
            if (k > 0) {
                slot = -1;
                for (int t = 0; t < S; t++)
                    if (f->dst[2 + 2 * t] == p->mix[q0].dst)
                        slot = t;
                if (slot < 0 || f->send[(size_t)k * (size_t)S + (size_t)slot])
                    return 0;
            }
            f->send[(size_t)k * (size_t)S + (size_t)slot] = sd;
            op[2 + 2 * slot] = q0;
            op[3 + 2 * slot] = q1;
            j++;
            if (k == 0) {
                f->dst[2 + 2 * slot] = p->mix[q0].dst;
                f->dst[3 + 2 * slot] = p->mix[q1].dst;
            }
        }
        if (j != S)
            return 0;
        if (k == 0) {
            f->dst[0] = p->mix[op[0]].dst;
            f->dst[1] = p->mix[op[1]].dst;
        }
        f->pan[k] = s;
        f->fader[k] = fd;
        b = fd + 1 > b ? fd + 1 : b;
        for (int t = 0; t < S; t++)
            b = f->send[(size_t)k * (size_t)S + (size_t)t] + 1 > b
                    ? f->send[(size_t)k * (size_t)S + (size_t)t] + 1
                    : b;
        /* every strip writes the same bus channels; only the first assigns;
         * each bus's writers (the fader, or the send) in strip order */
        for (int t = 0; t < T; t++) {
            const mg_mixop *q = &p->mix[op[t]];
            if (q->dst != f->dst[t] || (q->dst_index < 0 && !q->to_acc) || (k > 0 && q->assign))
                return 0;
            if (k == 0)
                f->assign[t] = q->assign;
            const int w = t < 2 ? fd : f->send[(size_t)k * (size_t)S + (size_t)(t / 2 - 1)];
            const int w0 = k == 0 ? -1
                                  : (t < 2 ? f->fader[k - 1]
                                           : f->send[(size_t)(k - 1) * (size_t)S + (size_t)(t / 2 - 1)]);
            if (w <= w0)
                return 0;
        }
        k++;
    }
    for (int t = 0; t < T; t++)
        for (int u = t + 1; u < T; u++)
            if (f->dst[t] == f->dst[u])
                return 0;
    /* no step is two strips' */
    char *seen = mg_calloc((size_t)(b - a), 1);
    if (!seen)
        return -1;
    int all = 1;
    for (int i = 0; i < strips; i++) {
        all &= !seen[f->pan[i] - a]++;
        all &= !seen[f->fader[i] - a]++;
        for (int t = 0; t < S; t++)
            all &= !seen[f->send[(size_t)i * (size_t)S + (size_t)t] - a]++;
    }
    /* the other steps among them run as they are, after the fused pass: none
     * may feed a member, nor write a bus channel the pass writes before the
     * members' last add into it (its order would change); after it (a strip
     * that does not fuse, later in the plan) it adds after the pass as before */
    for (int s = a; all && s < b; s++) {
        if (seen[s - a])
            continue;
        const mg_step *st = &p->steps[s];
        const int o0 = st->out_first, o1 = o0 + st->node->n_out;
        for (int m = 0; all && m < p->mix_used; m++) {
            const int from_s = p->op_out[m] >= o0 && p->op_out[m] < o1;
            if (from_s && op_step[m] >= a && op_step[m] < b && seen[op_step[m] - a])
                all = 0; /* it feeds a member */
            for (int t = 0; t < T; t++) {
                /* the last strip's writer of term t: the last member add into it */
                const int last = t < 2 ? f->fader[strips - 1]
                                       : f->send[(size_t)(strips - 1) * (size_t)S + (size_t)(t / 2 - 1)];
                if (p->mix[m].dst == f->dst[t] && s < last &&
                    (from_s || (op_step[m] == s && !p->mix[m].push)))
                    all = 0; /* it adds into a bus of the pass among the members' adds */
            }
        }
    }
    f->n_nodes = 0;
    for (int s = a; s < b; s++)
        f->n_nodes += seen[s - a] != 0;
    if (!all) {
        mg_free(seen);
        return 0;
    }
    f->end = b;
    f->nodes = mg_calloc((size_t)f->n_nodes + 1, sizeof(mg_node *));
    if (!f->nodes) {
        mg_free(seen);
        return -1;
    }
    for (int s = a, i = 0; s < b; s++)
        if (seen[s - a]) {
            f->nodes[i++] = p->steps[s].node;
            if (s > a)
                p->calls[s].flags |= MG_CALL_FUSED;
        }
    mg_free(seen);
    return 1;
}

/* What strips of one tail share, from panner step s: its fader's bus
 * channels and sends (0: not a strip tail). Consecutive panners with the same
 * signature are tried as one tail (fz_group checks the rest), so that strips
 * with other buses (another delay group: an insert with latency) or other
 * sends split the run instead of refusing all of it. */
static uintptr_t fz_signature(const mg_plan *p, int s, const int *op_step, const int *n_readers)
{
    const int o = p->steps[s].out_first;
    int fd = -1;
    for (int m = 0; m < p->mix_used; m++)
        if (p->op_out[m] == o)
            fd = op_step[m];
    if (fd < 0 || fz_kind(p, fd) != FZ_FADER)
        return 0;
    const int fo = p->steps[fd].out_first, q = push_of(p, fd, 0);
    if (q < 0)
        return 0;
    uintptr_t sig = (uintptr_t)p->mix[q].dst + (uintptr_t)n_readers[fo] * 0x9e3779b9u;
    for (int m = 0; m < p->mix_used; m++) {
        if (p->op_out[m] != fo || p->mix[m].push)
            continue;
        const int sq = push_of(p, op_step[m], 0);
        if (sq >= 0)
            sig ^= (uintptr_t)p->mix[sq].dst * 31u; /* the set, not the order */
    }
    return sig ? sig : 1;
}

int mg_plan_fuse(mg_plan *p)
{
    mg_plan_fuse_free(p);
    if (!p->finished || !p->calls)
        return 0;
    int rc = -1, n_out = p->n_outputs;
    mg_fuse_step *fuse_of = NULL;
    int *op_step = mg_calloc((size_t)p->mix_used + 1, sizeof(int));
    int *n_readers = mg_calloc((size_t)n_out + 1, sizeof(int));
    mg_fuse *fz = mg_calloc((size_t)p->n_steps / 4 + 1, sizeof(mg_fuse));
    int n_fz = 0;
    if (!op_step || !n_readers || !fz)
        goto out;
    for (int s = 0; s < p->n_steps; s++)
        for (int m = p->steps[s].mix_first; m < p->steps[s].mix_first + p->steps[s].mix_count; m++)
            op_step[m] = s;
    for (int m = 0; m < p->mix_used; m++)
        if (p->op_out[m] >= 0)
            n_readers[p->op_out[m]]++;
    for (int s = 0; s < p->n_steps;) {
        if (fz_kind(p, s) != FZ_PAN) {
            s++;
            continue;
        }
        int run = s;
        while (run < p->n_steps && fz_kind(p, run) == FZ_PAN)
            run++;
        /* the run in pieces of one signature; a piece refused as a whole is
         * tried again without its first strip */
        for (int b; s < run; s = b) {
            const uintptr_t sig = fz_signature(p, s, op_step, n_readers);
            b = s + 1;
            while (sig && b < run && fz_signature(p, b, op_step, n_readers) == sig)
                b++;
            for (int a = s; sig && b - a >= 2; a++) {
                mg_fuse *f = &fz[n_fz];
                const int r = fz_group(p, a, b, op_step, n_readers, f);
                if (r < 0) {
                    p->fuse = fz;
                    p->n_fuse = n_fz + 1;
                    mg_plan_fuse_free(p);
                    fz = NULL;
                    goto out;
                }
                if (r > 0) {
                    p->calls[a].flags |= MG_CALL_FUSE;
                    n_fz++;
                    break;
                }
                fuse_clear(f);
            }
        }
    }
    fuse_of = mg_malloc((size_t)p->n_steps + 1, sizeof(mg_fuse_step));
    if (!fuse_of) {
        p->fuse = fz;
        p->n_fuse = n_fz;
        mg_plan_fuse_free(p);
        fz = NULL;
        goto out;
    }
    for (int s = 0; s < p->n_steps; s++)
        fuse_of[s] = (mg_fuse_step){-1, s + 1};
    for (int i = 0; i < n_fz; i++) {
        const mg_fuse *f = &fz[i];
        for (int k = 0; k < f->strips; k++) {
            fuse_of[f->pan[k]].fuse = i;
            fuse_of[f->fader[k]].fuse = i;
            for (int j = 0; j < f->sends; j++)
                fuse_of[f->send[(size_t)k * (size_t)f->sends + (size_t)j]].fuse = i;
        }
    }
    /* from the back: each member's run of its tail's members */
    for (int s = p->n_steps - 2; s >= 0; s--)
        if (fuse_of[s].fuse >= 0 && fuse_of[s + 1].fuse == fuse_of[s].fuse)
            fuse_of[s].next = fuse_of[s + 1].next;
    p->fuse_of = fuse_of;
    p->fuse = fz;
    p->n_fuse = n_fz;
    fz = NULL;
    rc = 0;
out:
    mg_free(fz);
    mg_free(op_step);
    mg_free(n_readers);
    return rc;
}
