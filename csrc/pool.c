/* mixgraph C core: a finished plan as units of work for several threads.
 *
 * Control thread only. mg_par_build reads a finished plan (csrc/plan.c) and
 * works out what the audio thread and its workers (csrc/workers.c) need to
 * run it at once on several cores, with the very samples one thread makes:
 *
 * - atoms: a step, or a slice of a gang (one process_many call);
 * - dependencies between atoms (who reads whose output; output nodes, which
 *   add into the shared hardware buffers, in plan order);
 * - units: chains of atoms with one successor / one predecessor, with an
 *   activation count and a successor list each;
 * - per step, the ops one thread pushes into it, in the order it pushes them
 *   (by source step, then op): with workers they are mixed at the
 *   destination, in that order, so every sum is the same;
 * - a pool of buffers of its own, where a slot is reused only by an atom that
 *   every user of the slot's previous output happens before.
 *
 * See docs/architecture.md, "The graph on every core". */
#include <stdlib.h>

#include "mg_internal.h"

/* units beyond this: the ancestor bitsets cost too much; one thread */
#define PAR_MAX_UNITS 8192
/* roots (batches of source atoms) and push segments per thread, but none
 * smaller than a gang slice while that leaves 4 a thread: enough for a
 * thread that finishes early to take another's last root, and for the
 * threads to finish their strips close together (mix64 256 ch, 2 threads:
 * 16 roots of 16 strips; 8 roots gave 5-8% longer cycles, 32 longer again;
 * 64 ch: 8 roots of 8; a patch of a few sources: one source a root) */
#define PAR_SPLIT 8
/* free slots looked at per allocation, most recently freed first */
#define PAR_SCAN 512

typedef struct {
    const mg_node *node;
    int step;
} par_ns;

static int cmp_ns(const void *a, const void *b)
{
    const uintptr_t x = (uintptr_t)((const par_ns *)a)->node;
    const uintptr_t y = (uintptr_t)((const par_ns *)b)->node;
    return x < y ? -1 : x > y;
}

typedef struct {
    int key, m;
} par_pair;

static int cmp_pair(const void *a, const void *b)
{
    const par_pair *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->m > y->m) - (x->m < y->m);
}

void mg_par_free(mg_par *par)
{
    if (!par)
        return;
    mg_free(par->atoms);
    mg_free(par->unit_atom);
    mg_free(par->atom_list);
    mg_free(par->uatom);
    mg_free(par->succ_first);
    mg_free(par->succ);
    mg_free(par->init);
    mg_free(par->roots);
    mg_free(par->root_first);
    mg_free(par->data_pred);
    mg_free(par->ran_by);
    mg_free(par->q_mem);
    mg_free(par->pin_first);
    mg_free(par->pin);
    mg_free(par->pin_end);
    mg_free(par->pin_src);
    mg_free(par->calls);
    mg_free(par->pins);
    mg_free(par->unit_call);
    mg_free(par->unit_pin);
    mg_free(par->call_of);
    mg_free(par->pfz_mem);
    mg_free(par->pfz_of);
    mg_free((void *)par->inb);
    mg_free(par->fold_k);
    mg_free(par->fold_g);
    mg_free(par->outb);
    mg_free((void *)par->src);
    mg_free(par->pool_mem);
    mg_free((void *)par->count);
    mg_free((void *)par->queue);
    mg_free(par);
}

/* The widest group of lanes a process_many runs at once: the compressor's
 * fused groups (nodes/compressor.c, COMP_FUSED). A slice of fewer members
 * runs the group half empty at the full group's cost. */
#define PAR_LANES 32

/* Gang slice size: enough slices of a 64-member gang for every thread to
 * have two, in multiples of 8 (the EQ's and the noise's vectors); PAR_LANES
 * when the plan's largest ganged type (`members` steps in its gangs) still
 * gives every thread two slices of that. mix64 256 ch on 2 threads: 16 was
 * the old size, and the compressor's gangs of 16 cost twice what 32 cost
 * (rdtsc per type, the parallel form on one thread: 121 against 64 Mcycles
 * over 1000 blocks, the one-thread path's gangs of 64); 64 ch keeps 16. */
static int slice_size(int threads, int members)
{
    if (members / PAR_LANES >= 2 * threads)
        return PAR_LANES;
    int c = (MG_MAX_GANG + 2 * threads - 1) / (2 * threads);
    c = (c + 7) & ~7;
    return c < 8 ? 8 : c;
}

/* The most steps one node type has in gangs (csrc/plan.c makes gangs of up
 * to MG_MAX_GANG). */
static int gang_members(const mg_plan *p)
{
    enum { TYPES = 32 };
    const mg_node_type *type[TYPES];
    int count[TYPES], n = 0, best = 0;
    for (int s = 0; s < p->n_steps; s++) {
        const int g = p->steps[s].gang;
        if (g < 2)
            continue;
        const mg_node_type *t = p->steps[s].node->type;
        int i = 0;
        while (i < n && type[i] != t)
            i++;
        if (i == n) {
            if (n == TYPES)
                continue;
            type[n] = t;
            count[n++] = 0;
        }
        count[i] += g;
        best = count[i] > best ? count[i] : best;
    }
    return best;
}

static void pin_pfz(const mg_par *par, int src, mg_ppin *q);

/* The prebuilt calls and pins (mg_pcall, mg_ppin) of a built form, unit by
 * unit, and their input pointers at offset 0 (par->inb), as mg_plan_calls
 * (csrc/layout.c) makes the one-thread path's: the type's functions and the
 * flags from the step's own call (p->calls), the buffers the form's. The
 * flags and inputs the audio thread keeps are set again by refresh_ops
 * before the plan first runs. 0 ok, -1 out of memory. */
static int par_calls(const mg_plan *p, mg_par *par)
{
    const int S = p->n_steps, nu = par->n_units;
    size_t total_in = 0, n_calls = 0, n_pins = 0;
    int *in_first = mg_calloc((size_t)S + 1, sizeof(int));
    if (!in_first)
        return -1;
    for (int s = 0; s < S; s++) {
        in_first[s] = (int)total_in;
        total_in += (size_t)p->steps[s].node->n_in;
    }
    for (int i = 0; i < par->n_atoms; i++) {
        const mg_atom *a = &par->uatom[i];
        if (a->gang < 0) {
            n_calls++;
            n_pins += (size_t)a->len;
            continue;
        }
        n_calls += (size_t)a->len;
        for (int s = a->first; s < a->first + a->len; s++)
            n_pins += (size_t)(par->pin_end[s] - par->pin_first[s]);
    }
    par->calls = mg_calloc(n_calls + 1, sizeof(mg_pcall));
    par->pins = mg_calloc(n_pins + 1, sizeof(mg_ppin));
    par->unit_call = mg_calloc((size_t)nu + 1, sizeof(int));
    par->unit_pin = mg_calloc((size_t)nu + 1, sizeof(int));
    par->call_of = mg_calloc((size_t)S + 1, sizeof(int));
    par->inb = mg_calloc(total_in + 1, sizeof(float *));
    if (!par->calls || !par->pins || !par->unit_call || !par->unit_pin || !par->call_of ||
        !par->inb) {
        mg_free(in_first);
        return -1;
    }
    for (int s = 0; s < S; s++) {
        const mg_step *st = &p->steps[s];
        const float **in = par->inb + in_first[s];
        par->call_of[s] = -1;
        for (int k = st->clear_first; k < st->clear_first + st->clear_count; k++)
            in[p->clear[k]] = mg_zeros;
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++) {
            const mg_mixop *op = &p->mix[m];
            if (op->dst_index >= 0)
                in[op->dst_index] = op->inplace ? par->src[m] : op->dst;
        }
    }
    int nc = 0, np = 0;
#define PIN(q)                                                                       \
    do {                                                                             \
        const int m_ = par->pin[q], ss_ = par->pin_src[q];                           \
        const int f_ = ss_ >= 0 && p->steps[ss_].fold;                               \
        par->pins[np++] = (mg_ppin){&p->mix[m_], par->src[m_],                        \
                                   f_ ? par->inb + in_first[ss_] + p->mix[m_].src_index \
                                      : NULL,                                        \
                                   f_ ? ss_ : -1, 0, NULL, 0, 0, 0};                 \
        pin_pfz(par, ss_, &par->pins[np - 1]);                                   \
    } while (0)
    for (int u = 0; u < nu; u++) {
        par->unit_call[u] = nc;
        par->unit_pin[u] = np;
        for (int i = par->unit_atom[u]; i < par->unit_atom[u + 1]; i++) {
            const mg_atom *a = &par->uatom[i];
            if (a->gang < 0) {
                /* grouped by destination, each one's pins in one thread's
                 * order (engine.c, seg_run: a pass per destination) */
                const int qa = a->first, qb = a->first + a->len;
                const int np0 = np;
                for (int q = qa; q < qb; q++) {
                    const float *dq = p->mix[par->pin[q]].dst;
                    int seen = 0;
                    for (int r = qa; r < q && !seen; r++)
                        seen = p->mix[par->pin[r]].dst == dq;
                    for (int r = q; !seen && r < qb; r++)
                        if (p->mix[par->pin[r]].dst == dq)
                            PIN(r);
                }
                /* the runs: one destination's pins, a new one at an op that
                 * assigns or after MG_SEG_RUN */
                for (int i = np0; i < np;) {
                    int j = i + 1;
                    while (j < np && j - i < MG_SEG_RUN && par->pins[j].op->dst == par->pins[i].op->dst &&
                           !par->pins[j].op->assign)
                        j++;
                    par->pins[i].run = j - i;
                    i = j;
                }
                par->calls[nc++] = (mg_pcall){.step = -1, .pin_count = (uint16_t)a->len,
                                              .gang = 1, .flags = MG_CALL_SEG};
                continue;
            }
            for (int j = 0; j < a->len; j++) {
                const int s = a->first + j;
                const mg_step *st = &p->steps[s];
                mg_node *nd = st->node;
                const mg_call *oc = &p->calls[s];
                mg_pcall *c = &par->calls[nc];
                for (int q = par->pin_first[s]; q < par->pin_end[s]; q++)
                    PIN(q);
                c->node = nd;
                c->state = oc->state;
                if (a->gang && j == 0)
                    c->fn.process_many = nd->type->process_many;
                else
                    c->fn.process = nd->type->process;
                c->in = par->inb + in_first[s];
                c->out = par->outb + st->out_first;
                c->pv = oc->pv;
                c->readout = oc->readout;
                c->step = s;
                c->pin_count = (uint16_t)(par->pin_end[s] - par->pin_first[s]);
                c->gang = (uint8_t)(a->gang ? (j == 0 ? a->len : 0) : 1);
                c->flags = (uint8_t)(oc->flags & (MG_CALL_FOLD | MG_CALL_PULL | MG_CALL_FOLD_UNITY));
                if (par->pfz_of[s] >= 0)
                    c->flags |= par->pfz[par->pfz_of[s]].pan == s ? MG_CALL_PFZ_HEAD : MG_CALL_PFZ;
                par->call_of[s] = nc++;
            }
        }
    }
#undef PIN
    par->unit_call[nu] = nc;
    par->unit_pin[nu] = np;
    mg_free(in_first);
    return 0;
}

/* The strips of the plan's fused tails (mg_fuse) the parallel form may fuse
 * (mg_pfz): each whose panner, fader and sends are atoms of their own (no
 * gang slice), with no pins into the fader or a send, and whose fader and
 * sends push nothing but the tail's terms. par->pfz_of maps their steps.
 * 0 ok (maybe none), -1 out of memory. */
static int par_pfz(const mg_plan *p, mg_par *par, const mg_atom *patoms, const int *patom)
{
    const int S = p->n_steps;
    par->pfz_of = mg_calloc((size_t)S + 1, sizeof(int));
    if (!par->pfz_of)
        return -1;
    for (int s = 0; s < S; s++)
        par->pfz_of[s] = -1;
    int total = 0;
    for (int i = 0; p->calls && i < p->n_fuse; i++)
        total += p->fuse[i].strips;
    if (!total)
        return 0;
    par->pfz_mem = mg_calloc((size_t)total + 1, sizeof(mg_pfz) + 64);
    if (!par->pfz_mem)
        return -1;
    par->pfz = (mg_pfz *)(((uintptr_t)par->pfz_mem + 63) & ~(uintptr_t)63);
#define SINGLE(s) (patom[s] >= 0 && patoms[patom[s]].len == 1 && !patoms[patom[s]].gang)
#define NO_PINS(s) (par->pin_first[(s) + 1] == par->pin_first[s])
    int n = 0;
    for (int i = 0; i < p->n_fuse; i++) {
        const mg_fuse *f = &p->fuse[i];
        const int SN = f->sends, T = 2 + 2 * SN;
        for (int k = 0; k < f->strips; k++) {
            const int pan = f->pan[k], fad = f->fader[k];
            int ok = SINGLE(pan) && SINGLE(fad) && NO_PINS(fad) && par->pfz_of[pan] < 0 &&
                     par->pfz_of[fad] < 0;
            /* the fader's and the sends' pushes: the tail's terms, no other */
            ok &= p->steps[fad].push_count == 2;
            for (int j = 0; ok && j < SN; j++) {
                const int sd = f->send[k * SN + j];
                ok = SINGLE(sd) && NO_PINS(sd) && par->pfz_of[sd] < 0 &&
                     p->steps[sd].push_count == 2;
            }
            if (!ok)
                continue;
            mg_pfz *z = &par->pfz[n];
            z->pan = pan;
            z->fader = fad;
            z->sends = SN;
            z->nodes[0] = p->steps[pan].node;
            z->nodes[1] = p->steps[fad].node;
            for (int j = 0; j < SN; j++) {
                z->send[j] = f->send[k * SN + j];
                z->nodes[2 + j] = p->steps[z->send[j]].node;
            }
            for (int t = 0; t < T; t++)
                z->op[t] = &p->mix[f->op[k * T + t]];
            par->pfz_of[pan] = par->pfz_of[fad] = n;
            for (int j = 0; j < SN; j++)
                par->pfz_of[z->send[j]] = n;
            n++;
        }
    }
#undef SINGLE
#undef NO_PINS
    par->n_pfz = n;
    return 0;
}

/* The atoms that read a fused strip's (mg_pfz, panner d) outputs: the
 * panner's, the fader's and the sends' readers (rs_first: per step). */
static int pfz_readers(const mg_par *par, const int *rs_first, int d)
{
    const mg_pfz *z = &par->pfz[par->pfz_of[d]];
    int k = rs_first[d + 1] - rs_first[d] + rs_first[z->fader + 1] - rs_first[z->fader];
    for (int j = 0; j < z->sends; j++)
        k += rs_first[z->send[j] + 1] - rs_first[z->send[j]];
    return k;
}

/* A pin's part in a fused strip (mg_ppin.fz): op m is term t of strip z
 * (the fader's push from its channel t, or send (t - 2) / 2's from channel
 * t % 2). */
static void pin_pfz(const mg_par *par, int src, mg_ppin *q)
{
    if (src < 0 || !par->pfz || par->pfz_of[src] < 0)
        return;
    const mg_pfz *z = &par->pfz[par->pfz_of[src]];
    const int T = 2 + 2 * z->sends;
    for (int t = 0; t < T; t++)
        if (z->op[t] == q->op && (t < 2 ? src == z->fader : src == z->send[(t - 2) / 2])) {
            q->fz = z;
            q->fz_c = (uint8_t)(t & 1);
            q->fz_n = (uint8_t)(t < 2 ? 2 : 3);
            q->fz_j = (uint8_t)(t < 2 ? 0 : 2 + (t - 2) / 2);
            return;
        }
}

mg_par *mg_par_build(const mg_plan *p, int threads)
{
    if (!p || !p->finished || p->n_steps < 1 || threads < 2)
        return NULL;
    const int S = p->n_steps, M = p->mix_used;
    int n_out = 0;
    for (int s = 0; s < S; s++)
        n_out += p->steps[s].node->n_out;
    mg_par *par = mg_calloc(1, sizeof *par);
    int *src_step = mg_calloc((size_t)M + 1, sizeof(int));
    int *op_step = mg_calloc((size_t)M + 1, sizeof(int));
    par_ns *ns = mg_calloc((size_t)S + 1, sizeof(par_ns));
    int *atom_of = mg_calloc((size_t)S + 1, sizeof(int));
    /* atom edges (a -> b), at most one per op plus one per output node */
    /* atoms: at most a step or a push segment each; edges: at most two per op
     * and two per step */
    const size_t A = (size_t)S + (size_t)M + 1, E = 2 * ((size_t)S + (size_t)M) + 1;
    int *ea = mg_calloc(E, sizeof(int));
    int *eb = mg_calloc(E, sizeof(int));
    int *stamp = mg_calloc(A, sizeof(int));
    int *npred = mg_calloc(A, sizeof(int));
    int *nsucc = mg_calloc(A, sizeof(int));
    int *e_first = mg_calloc(A + 1, sizeof(int)); /* an atom's edges in */
    int *unit_of = mg_calloc(A, sizeof(int));
    int *next = mg_calloc(A, sizeof(int));   /* next atom in its unit */
    int *head = mg_calloc(A, sizeof(int));   /* unit -> first atom */
    int *tail = mg_calloc(A, sizeof(int));
    int *ue_a = mg_calloc(E, sizeof(int)); /* unit edges */
    int *ue_b = mg_calloc(E, sizeof(int));
    mg_atom *patoms = mg_calloc((size_t)S + 1, sizeof(mg_atom)); /* steps' atoms */
    int *patom = mg_calloc((size_t)S + 1, sizeof(int));  /* step -> its patoms index */
    int *seg_d = mg_calloc((size_t)M + 1, sizeof(int));  /* push segments: step fed, */
    int *seg_a = mg_calloc((size_t)M + 1, sizeof(int));  /* pin range, */
    int *seg_b = mg_calloc((size_t)M + 1, sizeof(int));
    int *seg_after = mg_calloc((size_t)M + 1, sizeof(int)); /* patom it follows, */
    int *seg_atom = mg_calloc((size_t)M + 1, sizeof(int));  /* its atom */
    int *op_seg = mg_calloc((size_t)M + 1, sizeof(int));    /* a pushed op's segment */
    int *aseg = mg_calloc(A, sizeof(int));                  /* atom -> segment or -1 */
    int *last_seg = mg_calloc((size_t)S + 1, sizeof(int));  /* step -> its last segment */
    int *r_first = mg_calloc((size_t)n_out + 2, sizeof(int)); /* readers per output */
    int *r_atom = NULL; /* (sized below) */
    int *rs_first = mg_calloc((size_t)S + 2, sizeof(int)); /* reader atoms per step */
    int *rs_atom = mg_calloc((size_t)M + 1, sizeof(int));
    int *prod = mg_calloc((size_t)n_out + 1, sizeof(int));    /* producing atom */
    int *last = mg_calloc((size_t)n_out + 1, sizeof(int));    /* last user atom */
    int *slot = mg_calloc((size_t)n_out + 1, sizeof(int));
    int *l_first = mg_calloc(A + 1, sizeof(int));             /* outputs by last user */
    int *l_out = mg_calloc((size_t)n_out + 1, sizeof(int));
    int *freel = mg_calloc((size_t)n_out + 1, sizeof(int));   /* free outputs (stack) */
    int *freel_f = mg_calloc((size_t)n_out + 1, sizeof(int)); /* the folding steps' */
    char *is_fold = mg_calloc((size_t)n_out + 1, 1);          /* an output of a folding step */
    par_pair *pairs = mg_calloc((size_t)M + 1, sizeof(par_pair));
    uint64_t *anc = NULL;
    int ok = par && src_step && op_step && ns && atom_of && ea && eb && stamp && npred &&
             nsucc && e_first && unit_of && next && head && tail && ue_a && ue_b && r_first &&
             rs_first && rs_atom && prod && last && slot && l_first && l_out && freel && freel_f &&
             is_fold && pairs && patoms &&
             patom && seg_d && seg_a && seg_b && seg_after && seg_atom && op_seg && aseg &&
             last_seg;
    if (!ok)
        goto fail;
    par->atoms = mg_calloc(A, sizeof(mg_atom));
    par->outb = mg_calloc((size_t)n_out + 1, sizeof(float *));
    par->src = mg_calloc((size_t)M + 1, sizeof(float *));
    par->pin_first = mg_calloc((size_t)S + 2, sizeof(int));
    par->pin_end = mg_calloc((size_t)S + 1, sizeof(int));
    par->pin = mg_calloc((size_t)M + 1, sizeof(int));
    par->pin_src = mg_calloc((size_t)M + 1, sizeof(int));
    par->fold_k = mg_calloc((size_t)S + 1, sizeof(int));
    par->fold_g = mg_calloc((size_t)S + 1, sizeof(float));
    if (!par->atoms || !par->outb || !par->src || !par->pin_first || !par->pin ||
        !par->pin_end || !par->pin_src || !par->fold_k || !par->fold_g)
        goto fail;
    for (int s = 0; s < S; s++)
        par->fold_k[s] = -1;

    /* each op's source step (-1: a delay group's sum) and own step */
    for (int s = 0; s < S; s++) {
        ns[s].node = p->steps[s].node;
        ns[s].step = s;
        for (int m = p->steps[s].mix_first; m < p->steps[s].mix_first + p->steps[s].mix_count; m++)
            op_step[m] = s;
    }
    qsort(ns, (size_t)S, sizeof *ns, cmp_ns);
    for (int m = 0; m < M; m++) {
        src_step[m] = -1;
        if (!p->mix[m].src_node)
            continue;
        par_ns key = {p->mix[m].src_node, 0};
        const par_ns *f = bsearch(&key, ns, (size_t)S, sizeof *ns, cmp_ns);
        if (!f || f->step >= op_step[m])
            goto fail;
        src_step[m] = f->step;
    }

    /* the ops one thread pushes into each step, in the order it pushes them */
    for (int s = 0, at = 0; s < S; s++) {
        const mg_step *st = &p->steps[s];
        int k = 0;
        for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++)
            if (p->mix[m].push)
                pairs[k++] = (par_pair){src_step[m], m};
        qsort(pairs, (size_t)k, sizeof *pairs, cmp_pair);
        par->pin_first[s] = at;
        for (int i = 0; i < k; i++) {
            par->pin_src[at] = pairs[i].key;
            par->pin[at++] = pairs[i].m;
        }
        par->pin_first[s + 1] = at;
    }

    /* atoms of steps: steps, gang slices; input nodes are no work */
    const int slice = slice_size(threads, gang_members(p));
    int na = 0;
    for (int s = 0; s < S;) {
        const mg_step *st = &p->steps[s];
        const int g = st->gang > 1 ? st->gang : 1;
        if (g > 1) {
            for (int j = 0; j < g; j += slice) {
                const int len = g - j < slice ? g - j : slice;
                patoms[na] = (mg_atom){s + j, len, len > 1};
                for (int q = 0; q < len; q++)
                    patom[s + j + q] = na;
                na++;
            }
            s += g;
            continue;
        }
        if (st->inert) {
            patom[s] = -1;
        } else {
            patoms[na] = (mg_atom){s, 1, 0};
            patom[s] = na++;
        }
        s++;
    }
    const int n_patoms = na;
    if (par_pfz(p, par, patoms, patom) != 0)
        goto fail;

    /* push segments. One thread adds a bus's sources into it as each runs;
     * here a bus fed by many atoms gets those adds in segments of `per`
     * source atoms, in one thread's order, each an atom of its own after its
     * last source and after the segment before it: the sum is the same, it
     * grows while later strips still run, and each source's buffer is free
     * after its segment instead of at the bus. */
    int n_seg = 0;
    for (int d = 0; d < S; d++) {
        const int a = par->pin_first[d], b = par->pin_first[d + 1];
        last_seg[d] = -1;
        par->pin_end[d] = b;
        int distinct = 0, prev = -1, ok = patom[d] >= 0, steps = 0;
        for (int q = a; q < b && ok; q++) {
            const int ss = src_step[par->pin[q]];
            ok = ss >= 0 && patom[ss] >= 0;
            if (ok && patom[ss] != prev) {
                distinct++;
                steps += patoms[patom[ss]].len;
            }
            prev = ok ? patom[ss] : prev;
        }
        if (!ok || distinct < 2)
            continue;
        /* rounded down: mix64's master bus (256 faders, then the reverb and
         * the delay) on 2 threads gets segments of 16 faders, one per root
         * unit of 16 strips, and a last one of the two returns alone, so the
         * faders' adds need not wait for the reverb (rounded up: 17, each
         * segment waiting for two root units, and some faders after the
         * reverb) */
        const int split = PAR_SPLIT * threads;
        /* at least a gang slice of source steps (as the roots) per segment */
        const int per_min = (int)(((int64_t)slice * distinct + steps - 1) / (steps > 0 ? steps : 1));
        int per = distinct / split > 1 ? distinct / split : 1;
        const int per_cap = distinct / (split / 2); /* 4 a thread at most */
        if (per < per_min)
            per = per_min < per_cap ? per_min : per_cap > per ? per_cap : per;
        int start = a, cnt = 0;
        prev = -1;
        for (int q = a; q <= b; q++) {
            const int pa = q < b ? patom[src_step[par->pin[q]]] : -2;
            if (pa == prev)
                continue;
            if (cnt == per || q == b) {
                seg_d[n_seg] = d;
                seg_a[n_seg] = start;
                seg_b[n_seg] = q;
                seg_after[n_seg] = prev;
                for (int r = start; r < q; r++)
                    op_seg[par->pin[r]] = n_seg + 1; /* + 1: 0 is none */
                n_seg++;
                start = q;
                cnt = 0;
            }
            cnt++;
            prev = pa;
        }
        par->pin_end[d] = a; /* mixed by its segments, not at its step */
    }
    /* the atoms: each step atom, then the segments that follow it */
    int *seg_order = seg_atom; /* segments by the atom they follow (stable) */
    memset(e_first, 0, sizeof(int) * (A + 1));
    for (int g = 0; g < n_seg; g++)
        e_first[seg_after[g] + 1]++;
    for (int i = 0; i < n_patoms; i++)
        e_first[i + 1] += e_first[i];
    memcpy(tail, e_first, sizeof(int) * (size_t)n_patoms);
    for (int g = 0; g < n_seg; g++)
        seg_order[tail[seg_after[g]]++] = g;
    int *seg_at = l_first; /* scratch: segment -> atom */
    na = 0;
    for (int i = 0; i < n_patoms; i++) {
        par->atoms[na] = patoms[i];
        aseg[na] = -1;
        head[i] = na++; /* scratch: patom -> atom */
        for (int q = e_first[i]; q < e_first[i + 1]; q++) {
            const int g = seg_order[q];
            par->atoms[na] = (mg_atom){seg_a[g], seg_b[g] - seg_a[g], -1};
            aseg[na] = g;
            seg_at[g] = na++;
        }
    }
    for (int g = 0; g < n_seg; g++)
        seg_atom[g] = seg_at[g];
    for (int s = 0; s < S; s++)
        atom_of[s] = patom[s] >= 0 ? head[patom[s]] : -1;
    memset(e_first, 0, sizeof(int) * (A + 1));
    memset(l_first, 0, sizeof(int) * (A + 1));
    memset(head, 0, sizeof(int) * A);
    memset(tail, 0, sizeof(int) * A);
    par->n_atoms = na;

    /* atom dependencies; the output nodes in plan order */
    int ne = 0, last_output = -1;
#define EDGE(a, b)                                  \
    do {                                            \
        if ((a) >= 0 && (a) != (b) && stamp[a] != (b) + 1) { \
            stamp[a] = (b) + 1;                     \
            ea[ne] = (a);                           \
            eb[ne++] = (b);                         \
        }                                           \
    } while (0)
    for (int b = 0; b < na; b++) {
        const mg_atom *at = &par->atoms[b];
        if (at->gang < 0) { /* a push segment: its sources, the segment before */
            const int g = aseg[b], d = seg_d[g];
            for (int q = at->first; q < at->first + at->len; q++)
                EDGE(atom_of[src_step[par->pin[q]]], b);
            EDGE(last_seg[d], b);
            last_seg[d] = b;
            continue;
        }
        for (int s = at->first; s < at->first + at->len; s++) {
            const mg_step *st = &p->steps[s];
            for (int m = st->mix_first; m < st->mix_first + st->mix_count; m++)
                if (!op_seg[m] && src_step[m] >= 0)
                    EDGE(atom_of[src_step[m]], b);
            EDGE(last_seg[s], b);
            if (strcmp(st->node->type->name, "output") == 0) {
                EDGE(last_output, b);
                last_output = b;
            }
        }
    }
#undef EDGE
    for (int i = 0; i < ne; i++) { /* made in the order of eb */
        nsucc[ea[i]]++;
        npred[eb[i]]++;
        e_first[eb[i] + 1]++;
    }
    for (int b = 0; b < na; b++)
        e_first[b + 1] += e_first[b];

    /* units. An atom joins the unit of its predecessors when they are all in
     * one unit: always when it is its one predecessor's one successor (a
     * chain), else while the unit is under `cap` atoms (a fan-out: a gang
     * slice's strips, a fader's sends). Atoms with no predecessor (sources)
     * are batched, `roots_per` to a unit. So edges into a unit always reach
     * its head, and units numbered in the order of their heads are in
     * dependency order. The caps keep a few units per thread. */
    int n_src = 0;
    for (int b = 0; b < na; b++)
        n_src += npred[b] == 0;
    const int cap = na / (2 * threads) > 1 ? na / (2 * threads) : 1;
    const int split_roots = PAR_SPLIT * threads;
    int roots_per = (n_src + split_roots - 1) / split_roots;
    /* no root smaller than a gang slice (the slice after it would wait for
     * several roots), as long as every thread still gets 4 */
    const int roots_cap = (n_src + split_roots / 2 - 1) / (split_roots / 2);
    if (roots_per < slice)
        roots_per = slice < roots_cap ? slice : roots_cap > roots_per ? roots_cap : roots_per;
    memset(stamp, 0, sizeof(int) * A); /* atoms per unit */
    int nu = 0, src_unit = -1;
    for (int b = 0; b < na; b++) {
        next[b] = -1;
        int u = -1;
        if (npred[b] == 0) {
            if (src_unit >= 0 && stamp[src_unit] < roots_per)
                u = src_unit;
        } else {
            int one = -1, same = 1;
            for (int i = e_first[b]; i < e_first[b + 1] && same; i++) {
                const int pu = unit_of[ea[i]];
                same = one < 0 || pu == one;
                one = pu;
                if (npred[b] == 1 && nsucc[ea[i]] == 1)
                    u = pu; /* a chain */
            }
            if (u < 0 && same && stamp[one] < cap)
                u = one;
        }
        if (u < 0) {
            u = nu++;
            head[u] = tail[u] = b;
            if (npred[b] == 0)
                src_unit = u;
        } else {
            next[tail[u]] = b;
            tail[u] = b;
        }
        unit_of[b] = u;
        stamp[u]++;
    }
    if (nu > PAR_MAX_UNITS)
        goto fail;
    par->n_units = nu;
    par->unit_atom = mg_calloc((size_t)nu + 1, sizeof(int));
    par->atom_list = mg_calloc((size_t)na + 1, sizeof(int));
    par->succ_first = mg_calloc((size_t)nu + 2, sizeof(int));
    par->init = mg_calloc((size_t)nu + 1, sizeof(int));
    par->roots = mg_calloc((size_t)nu + 1, sizeof(int));
    par->count = mg_calloc((size_t)nu + 1, sizeof(_Atomic int));
    size_t q_slots = 2;
    while (q_slots <= (size_t)nu)
        q_slots *= 2;
    par->q_mask = q_slots - 1;
    par->n_q = threads;
    par->queue = mg_calloc(q_slots * (size_t)threads, sizeof(_Atomic uint64_t));
    par->q_mem = mg_calloc(sizeof(struct mg_par_q) * (size_t)threads + 64, 1);
    par->q = par->q_mem ? (struct mg_par_q *)(((uintptr_t)par->q_mem + 63) & ~(uintptr_t)63)
                        : NULL;
    par->root_first = mg_calloc((size_t)threads + 1, sizeof(int));
    par->data_pred = mg_calloc((size_t)nu + 1, sizeof(int));
    par->ran_by = mg_calloc((size_t)nu + 1, sizeof(int));
    const size_t words = ((size_t)nu + 63) / 64;
    anc = mg_calloc((size_t)nu * words + 1, sizeof(uint64_t));
    if (!par->unit_atom || !par->atom_list || !par->succ_first || !par->init || !par->roots ||
        !par->count || !par->queue || !par->q || !par->root_first || !par->data_pred ||
        !par->ran_by || !anc)
        goto fail;
    for (int u = 0, k = 0; u < nu; u++) {
        par->unit_atom[u] = k;
        for (int b = head[u]; b >= 0; b = next[b])
            par->atom_list[k++] = b;
        par->unit_atom[u + 1] = k;
    }
    /* the atoms again in the order units run them: par_unit reads them in
     * a row, not through atom_list (one dependent load less an atom) */
    par->uatom = mg_calloc((size_t)na + 1, sizeof(mg_atom));
    if (!par->uatom)
        goto fail;
    for (int i = 0; i < na; i++)
        par->uatom[i] = par->atoms[par->atom_list[i]];
    /* unit edges, deduplicated (all edges into a unit come from its head) */
    int nue = 0;
    memset(stamp, 0, sizeof(int) * A);
    for (int i = 0; i < ne; i++) {
        const int ua = unit_of[ea[i]], ub = unit_of[eb[i]];
        if (ua == ub || stamp[ua] == ub + 1)
            continue;
        stamp[ua] = ub + 1;
        ue_a[nue] = ua;
        ue_b[nue++] = ub;
    }
    par->succ = mg_calloc((size_t)nue + 1, sizeof(int));
    if (!par->succ)
        goto fail;
    for (int i = 0; i < nue; i++) {
        par->succ_first[ue_a[i] + 1]++;
        par->init[ue_b[i]]++;
    }
    for (int u = 0; u < nu; u++)
        par->succ_first[u + 1] += par->succ_first[u];
    memcpy(tail, par->succ_first, sizeof(int) * (size_t)nu);
    for (int i = 0; i < nue; i++)
        par->succ[tail[ue_a[i]]++] = ue_b[i];
    for (int u = 0; u < nu; u++) {
        atomic_store_explicit(&par->count[u], par->init[u], memory_order_relaxed);
        par->n_roots += par->init[u] == 0;
        par->n_sinks += par->succ_first[u] == par->succ_first[u + 1];
    }
    /* the roots dealt to the threads in turn (root i to thread i % threads),
     * so that units finish in about their order on every thread and the
     * push segments, which follow them in order, run as they finish; the
     * same each cycle, so a thread's strips stay on its core */
    for (int t = 0, k = 0; t < threads; t++) {
        par->root_first[t] = k;
        for (int u = 0, i = 0; u < nu; u++)
            if (par->init[u] == 0 && i++ % threads == t)
                par->roots[k++] = u;
        par->root_first[t + 1] = k;
    }
    /* each unit's data predecessor: the one with the most atom edges into
     * it (all reach its head), when one has more than every other */
    memset(stamp, 0, sizeof(int) * A); /* edges per predecessor unit */
    for (int u = 0; u < nu; u++) {
        const int h = head[u];
        int best = -1, best_n = 0, tie = 0;
        for (int i = e_first[h]; i < e_first[h + 1]; i++)
            stamp[unit_of[ea[i]]]++;
        for (int i = e_first[h]; i < e_first[h + 1]; i++) {
            const int pu = unit_of[ea[i]];
            const int c = stamp[pu];
            stamp[pu] = 0; /* counted: each predecessor once */
            if (pu == u || c == 0)
                continue;
            if (c > best_n) {
                best = pu;
                best_n = c;
                tie = 0;
            } else if (c == best_n && pu != best) {
                tie = 1;
            }
        }
        par->data_pred[u] = tie ? -1 : best;
    }
    /* ancestors: unit edges go from lower to higher unit numbers */
    for (int i = 0; i < nue; i++) {
        uint64_t *d = anc + (size_t)ue_b[i] * words;
        const uint64_t *a = anc + (size_t)ue_a[i] * words;
        for (size_t w = 0; w < words; w++)
            d[w] |= a[w];
        d[ue_a[i] / 64] |= 1ull << (ue_a[i] % 64);
    }
    /* the edges were made in the order of their destination atom, and unit
     * numbers grow with head atoms, so each unit's ancestors are complete
     * before any edge out of it is read above */


    /* buffers: who makes and who reads each output */
    for (int s = 0; s < S; s++) {
        const mg_step *st = &p->steps[s];
        for (int c = 0; c < st->node->n_out; c++) {
            prod[st->out_first + c] = atom_of[s];
            last[st->out_first + c] = atom_of[s];
        }
    }
    /* the atoms that read each step's outputs (where its ops are mixed) */
#define READER(m) (op_seg[m] ? seg_atom[op_seg[m] - 1] : atom_of[op_step[m]])
    for (int m = 0; m < M; m++)
        if (src_step[m] >= 0)
            rs_first[src_step[m] + 1]++;
    for (int s = 0; s < S; s++)
        rs_first[s + 1] += rs_first[s];
    memcpy(tail, rs_first, sizeof(int) * (size_t)S);
    for (int m = 0; m < M; m++)
        if (src_step[m] >= 0)
            rs_atom[tail[src_step[m]]++] = READER(m);
    /* a folding step's pushes may read its inputs instead of its outputs
     * (engine.c, pin_mix): whatever feeds a folding step is read by its
     * outputs' readers too */
    /* and a fused strip's (mg_pfz) pins read its panner's input: whatever
     * feeds the panner is read by the readers of the panner's, the fader's
     * and the sends' outputs too */
#define RS(d) (rs_first[(d) + 1] - rs_first[d])
#define PFZ_MORE(d)                                                                     \
    (par->pfz_of[d] >= 0 && par->pfz[par->pfz_of[d]].pan == (d) ? pfz_readers(par, rs_first, d) : 0)
    size_t n_reads = 0;
    for (int m = 0; m < M; m++)
        if (src_step[m] >= 0) {
            const int d = op_step[m];
            const int more = (p->steps[d].fold ? RS(d) : 0) + PFZ_MORE(d);
            r_first[p->steps[src_step[m]].out_first + p->mix[m].src_index + 1] += 1 + more;
            n_reads += 1 + (size_t)more;
        }
    r_atom = mg_calloc(n_reads + 1, sizeof(int));
    if (!r_atom)
        goto fail;
    for (int k = 0; k < n_out; k++)
        r_first[k + 1] += r_first[k];
    memcpy(slot, r_first, sizeof(int) * (size_t)n_out);
    for (int m = 0; m < M; m++)
        if (src_step[m] >= 0) {
            const int k = p->steps[src_step[m]].out_first + p->mix[m].src_index;
            const int d = op_step[m];
            const int b = READER(m);
            r_atom[slot[k]++] = b;
            if (b > last[k])
                last[k] = b;
            for (int i = rs_first[d]; p->steps[d].fold && i < rs_first[d + 1]; i++) {
                r_atom[slot[k]++] = rs_atom[i];
                if (rs_atom[i] > last[k])
                    last[k] = rs_atom[i];
            }
            if (PFZ_MORE(d)) {
                const mg_pfz *z = &par->pfz[par->pfz_of[d]];
                for (int j = -2; j < z->sends; j++) {
                    const int r = j == -2 ? d : j == -1 ? z->fader : z->send[j];
                    for (int i = rs_first[r]; i < rs_first[r + 1]; i++) {
                        r_atom[slot[k]++] = rs_atom[i];
                        if (rs_atom[i] > last[k])
                            last[k] = rs_atom[i];
                    }
                }
            }
        }
#undef READER
#undef RS
#undef PFZ_MORE
    for (int k = 0; k < n_out; k++) {
        slot[k] = -1; /* until its atom takes one (never, for hardware buffers) */
        if (last[k] >= 0)
            l_first[last[k] + 1]++;
    }
    for (int b = 0; b < na; b++)
        l_first[b + 1] += l_first[b];
    memcpy(tail, l_first, sizeof(int) * (size_t)na);
    for (int k = 0; k < n_out; k++)
        if (last[k] >= 0)
            l_out[tail[last[k]]++] = k;
    /* a before x: the same unit and earlier, or a unit that is an ancestor */
#define BEFORE(a, x)                                                                     \
    ((a) != (x) && (unit_of[a] == unit_of[x]                                             \
                        ? (a) < (x)                                                      \
                        : ((anc[(size_t)unit_of[x] * words + (size_t)unit_of[a] / 64] >> \
                            ((unsigned)unit_of[a] % 64)) & 1u)))
    /* Two regions: the folding steps' outputs (an aux send's, written only
     * in a cycle it cannot fold: mix64 256 ch, 1024 of its outputs) take
     * slots of their own after every other output's, so the slots a
     * cycle touches while the sends fold are one compact run, as the
     * one-thread pool's are. [1]: the folding steps' free list and count. */
    int n_free[2] = {0, 0}, n_slots[2] = {0, 0};
    int *fl[2] = {freel, freel_f};
    for (int x = 0; x < na; x++) {
        const mg_atom *at = &par->atoms[x];
        for (int s = at->first; at->gang >= 0 && s < at->first + at->len; s++) {
            const mg_step *st = &p->steps[s];
            /* a fused strip's (mg_pfz) panner and fader, written only in a
             * cycle the strip cannot fuse, with the sends' */
            const int f = st->fold != 0 || par->pfz_of[s] >= 0;
            for (int c = 0; c < st->node->n_out; c++) {
                const int k = st->out_first + c;
                if (st->node->out_aliased)
                    continue;
                int got = -1, *fr = fl[f];
                for (int i = n_free[f] - 1; i >= 0 && i >= n_free[f] - PAR_SCAN && got < 0; i--) {
                    const int o = fr[i];
                    int free_here = BEFORE(prod[o], x);
                    for (int r = r_first[o]; r < r_first[o + 1] && free_here; r++)
                        free_here = BEFORE(r_atom[r], x);
                    if (free_here) {
                        got = slot[o];
                        memmove(fr + i, fr + i + 1, sizeof(int) * (size_t)(n_free[f] - 1 - i));
                        n_free[f]--;
                    }
                }
                slot[k] = got >= 0 ? got : n_slots[f]++;
                is_fold[k] = (char)f;
            }
        }
        for (int i = l_first[x]; i < l_first[x + 1]; i++) {
            const int o = l_out[i], f = is_fold[o];
            if (slot[o] >= 0)
                fl[f][n_free[f]++] = o;
        }
    }
#undef BEFORE
    for (int k = 0; k < n_out; k++) /* the folding steps' region after the rest */
        if (slot[k] >= 0 && is_fold[k])
            slot[k] += n_slots[0];
    par->fold_slots = n_slots[1];
    const int n_all = n_slots[0] + n_slots[1];
    /* slots as the plan's own (mg_slot_floats), for the block it is laid out for */
    const size_t stride = mg_slot_floats(p->block);
    par->pool_mem = mg_calloc((size_t)n_all * stride + 16, sizeof(float));
    if (!par->pool_mem)
        goto fail;
    par->pool_slots = n_all;
    float *base = (float *)(((uintptr_t)par->pool_mem + 63) & ~(uintptr_t)63);
    for (int s = 0; s < S; s++) {
        const mg_step *st = &p->steps[s];
        for (int c = 0; c < st->node->n_out; c++) {
            const int k = st->out_first + c;
            /* inert steps have no atom: their outputs are the hardware's */
            par->outb[k] = st->node->out_aliased || atom_of[s] < 0
                               ? st->node->out_base[c]
                               : base + (size_t)slot[k] * stride;
        }
    }
    for (int m = 0; m < M; m++)
        par->src[m] = src_step[m] >= 0
                          ? par->outb[p->steps[src_step[m]].out_first + p->mix[m].src_index]
                          : p->mix[m].src;
    if (p->calls && par_calls(p, par) != 0)
        goto fail;
    goto done;
fail:
    mg_par_free(par);
    par = NULL;
done:
    mg_free(src_step);
    mg_free(op_step);
    mg_free(ns);
    mg_free(atom_of);
    mg_free(ea);
    mg_free(eb);
    mg_free(stamp);
    mg_free(npred);
    mg_free(nsucc);
    mg_free(e_first);
    mg_free(unit_of);
    mg_free(next);
    mg_free(head);
    mg_free(tail);
    mg_free(ue_a);
    mg_free(ue_b);
    mg_free(r_first);
    mg_free(r_atom);
    mg_free(rs_first);
    mg_free(rs_atom);
    mg_free(prod);
    mg_free(last);
    mg_free(slot);
    mg_free(l_first);
    mg_free(l_out);
    mg_free(freel);
    mg_free(freel_f);
    mg_free(is_fold);
    mg_free(pairs);
    mg_free(anc);
    mg_free(patoms);
    mg_free(patom);
    mg_free(seg_d);
    mg_free(seg_a);
    mg_free(seg_b);
    mg_free(seg_after);
    mg_free(seg_atom);
    mg_free(op_seg);
    mg_free(aseg);
    mg_free(last_seg);
    return par;
}
