/* pan: constant-power mono-to-stereo panner (sin/cos law, -3 dB centre). */
#include "../mg_node.h"

static const mg_param_spec params[] = {
    {"pan", "", "position: -1 hard left, 0 centre, +1 hard right", -1.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 1},
    {"out", MG_PORT_OUT, 2},
};

#define MG_QUARTER_PI 0.78539816339744830962

static void process(void *st, const mg_proc *p)
{
    (void)st;
    const float *x = p->in[0];
    float *l = p->out[0], *r = p->out[1];
    const mg_pv *pos = &p->pv[0];
    const int n = p->nframes;
    if (!pos->ramp) {
        const double th = ((double)pos->value + 1.0) * MG_QUARTER_PI;
        const float gl = (float)cos(th), gr = (float)sin(th);
        for (int i = 0; i < n; i++) {
            l[i] = x[i] * gl;
            r[i] = x[i] * gr;
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        const float th = (pos->ramp[i] + 1.0f) * (float)MG_QUARTER_PI;
        l[i] = x[i] * cosf(th);
        r[i] = x[i] * sinf(th);
    }
}

const mg_node_type mg_type_pan = {
    "pan", "Constant-power panner, mono in, stereo out: gL = cos(t), gR = sin(t), t = (pan+1)*pi/4.",
    1, 1, 1,
    params, MG_COUNT(params), ports, MG_COUNT(ports), NULL, 0,
    1, 0, NULL, process, NULL, NULL, NULL,
};
