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

typedef struct {
    float pos;   /* position the cached gains belong to (NAN: none yet) */
    float gl, gr;
} pan_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    (void)ctx;
    ((pan_state *)st)->pos = NAN;
    return 0;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    pan_state *s = st;
    const float *restrict x = p->in[0];
    float *restrict l = p->out[0];
    float *restrict r = p->out[1];
    const mg_pv *pos = &p->pv[0];
    const int n = p->nframes;
    if (!pos->ramp) {
        if (pos->value != s->pos) {
            const double th = ((double)pos->value + 1.0) * MG_QUARTER_PI;
            s->gl = (float)cos(th);
            s->gr = (float)sin(th);
            s->pos = pos->value;
        }
        const float gl = s->gl, gr = s->gr;
        for (int i = 0; i < n; i++) {
            l[i] = x[i] * gl;
            r[i] = x[i] * gr;
        }
        return;
    }
    /* the same arithmetic as the steady path, so a position gives the same
     * gains whether or not it is reached by a ramp (renders do not depend on
     * where blocks split) */
    for (int i = 0; i < n; i++) {
        const double th = ((double)pos->ramp[i] + 1.0) * MG_QUARTER_PI;
        l[i] = x[i] * (float)cos(th);
        r[i] = x[i] * (float)sin(th);
    }
}

const mg_node_type mg_type_pan = {
    "pan", "Constant-power panner, mono in, stereo out: gL = cos(t), gR = sin(t), t = (pan+1)*pi/4.",
    1, 1, 1,
    params, MG_COUNT(params), ports, MG_COUNT(ports), NULL, 0,
    sizeof(pan_state), 0, prepare, process, NULL, NULL, NULL, NULL,
};
