/* balance: stereo in, stereo out; turning towards one side attenuates the
 * other linearly, the near side stays at unity (a console's balance control):
 *   b <= 0: gL = 1, gR = 1 + b;   b >= 0: gL = 1 - b, gR = 1. */
#include "mg_node.h"

static const mg_param_spec params[] = {
    {"balance", "", "-1 left only, 0 both at unity, +1 right only", -1.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 2},
    {"out", MG_PORT_OUT, 2},
};

typedef struct {
    int unused;
} balance_state;

static void process(void *st, const mg_proc *p)
{
    (void)st;
    const float *restrict xl = p->in[0], *restrict xr = p->in[1];
    float *restrict l = p->out[0], *restrict r = p->out[1];
    const mg_pv *b = &p->pv[0];
    const int n = p->nframes;
    if (!b->ramp) {
        const float gl = fminf(1.0f, 1.0f - b->value), gr = fminf(1.0f, 1.0f + b->value);
        for (int i = 0; i < n; i++) {
            l[i] = xl[i] * gl;
            r[i] = xr[i] * gr;
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        const float v = b->ramp[i];
        l[i] = xl[i] * fminf(1.0f, 1.0f - v);
        r[i] = xr[i] * fminf(1.0f, 1.0f + v);
    }
}

const mg_node_type mg_type_balance = {
    .name = "balance",
    .doc = "Stereo balance: b <= 0: gL = 1, gR = 1 + b; b >= 0: gL = 1 - b, gR = 1.",
    .default_channels = 2, .min_channels = 2, .max_channels = 2,
    .params = params, .n_params = MG_COUNT(params),
    .ports = ports, .n_ports = MG_COUNT(ports),
    .state_size = sizeof(balance_state),
    .process = process,
};
