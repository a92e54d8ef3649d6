/* bus: every connection into its input is summed; one gain for the sum. */
#include "mg_node.h"

static const mg_param_spec params[] = {
    {"gain", "dB", "level of the summed signal", -120.0f, 24.0f, 0.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};

typedef struct {
    int channels;
} bus_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    ((bus_state *)st)->channels = ctx->channels;
    return 0;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    const bus_state *s = st;
    for (int c = 0; c < s->channels; c++)
        mg_scale(p->out[c], p->in[c], &p->pv[0], p->nframes);
}

const mg_node_type mg_type_bus = {
    .name = "bus",
    .doc = "Summing bus: all connections into `in` are added, then scaled by `gain`.",
    .default_channels = 2, .min_channels = 1, .max_channels = 64,
    MG_PARAMS(params),
    MG_PORTS(ports),
    .state_size = sizeof(bus_state),
    .prepare = prepare,
    .process = process,
};
