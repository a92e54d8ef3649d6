/* output: the graph into hardware output channels (summed with other outputs). */
#include "mg_node.h"

static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
};

typedef struct {
    int first, channels;
} output_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    output_state *s = st;
    s->first = ctx->hw_first;
    s->channels = ctx->channels;
    return (ctx->hw_first < 0 || ctx->hw_first + ctx->channels > ctx->hw_out_ch) ? -1 : 0;
}

static void process(void *st, const mg_proc *p)
{
    const output_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        float *d = p->hw_out[s->first + c];
        const float *x = p->in[c];
        for (int i = 0; i < p->nframes; i++)
            d[i] += x[i];
    }
}

const mg_node_type mg_type_output = {
    .name = "output",
    .doc = "Hardware outputs: channels `first` .. `first+channels-1`; the safety stage follows.",
    .default_channels = 2, .min_channels = 1, .max_channels = 64,
    MG_PORTS(ports),
    .state_size = sizeof(output_state),
    .prepare = prepare,
    .process = process,
};
