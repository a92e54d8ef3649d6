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
    mg_free(p->calls);
    mg_free(p->inb);
    p->calls = calls;
    p->inb = inb;
    return 0;
}
