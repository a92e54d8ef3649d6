/* input: hardware input channels into the graph. */
#include "../mg_node.h"

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
    const input_state *s = st;
    for (int c = 0; c < s->channels; c++)
        memcpy(p->out[c], p->hw_in[s->first + c], sizeof(float) * (size_t)p->nframes);
}

const mg_node_type mg_type_input = {
    "input", "Hardware inputs: channels `first` .. `first+channels-1` of the audio interface.",
    1, 1, 64,
    NULL, 0, ports, MG_COUNT(ports), NULL, 0,
    sizeof(input_state), 0, prepare, process, NULL, NULL, NULL, NULL,
};
