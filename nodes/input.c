/* input: hardware input channels into the graph.
 *
 * The node's outputs are the engine's planar hardware input buffers
 * themselves (outputs_are_hw_in): the engine de-interleaves the interface's
 * input once per block and every reader takes it in place, so process has
 * nothing to copy. */
#include "mg_node.h"

static const mg_port_spec ports[] = {
    {"out", MG_PORT_OUT, 0},
};

typedef struct {
    int first, channels;
} input_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    input_state *s = st;
    s->first = ctx->hw_first;
    s->channels = ctx->channels;
    return (ctx->hw_first < 0 || ctx->hw_first + ctx->channels > ctx->hw_in_ch) ? -1 : 0;
}

static void process(void *st, const mg_proc *p)
{
    (void)st;
    (void)p; /* the outputs are the hardware input buffers */
}

const mg_node_type mg_type_input = {
    .name = "input",
    .doc = "Hardware inputs: channels `first` .. `first+channels-1` of the audio interface.",
    .default_channels = 1, .min_channels = 1, .max_channels = 64,
    MG_PORTS(ports),
    .state_size = sizeof(input_state),
    .prepare = prepare,
    .process = process,
    .outputs_are_hw_in = 1,
};
