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
    return 0;
}
