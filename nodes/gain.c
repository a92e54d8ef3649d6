/* gain: a channel fader with mute and polarity. */
#include "mg_node.h"

enum { P_GAIN, P_MUTE, P_POLARITY, P_VCA };

static const mg_param_spec params[] = {
    {"gain", "dB", "level change", -120.0f, 24.0f, 0.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
    {"mute", "", "1 silences the output (10 ms fade)", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"polarity", "", "1 inverts the signal (10 ms crossfade)", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"vca", "dB", "sum of the levels of the VCAs this fader belongs to (set by vca nodes)", -120.0f, 24.0f, 0.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};

typedef struct {
    int channels;
} gain_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    ((gain_state *)st)->channels = ctx->channels;
    return 0;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    const gain_state *s = st;
    const mg_pv *g = &p->pv[P_GAIN], *m = &p->pv[P_MUTE], *pol = &p->pv[P_POLARITY];
    const mg_pv *v = &p->pv[P_VCA];
    const int n = p->nframes;
    if (!g->ramp && !m->ramp && !pol->ramp && !v->ramp) {
        mg_pv k = {NULL, g->value * v->value * (1.0f - m->value) * (1.0f - 2.0f * pol->value)};
        for (int c = 0; c < s->channels; c++)
            mg_scale(p->out[c], p->in[c], &k, n);
        return;
    }
    for (int c = 0; c < s->channels; c++) {
        const float *x = p->in[c];
        float *y = p->out[c];
        for (int i = 0; i < n; i++)
            y[i] = x[i] * mg_pv_at(g, i) * mg_pv_at(v, i) * (1.0f - mg_pv_at(m, i)) *
                   (1.0f - 2.0f * mg_pv_at(pol, i));
    }
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"mute", "off|on"},
    {"polarity", "normal|inverted"},
};

const mg_node_type mg_type_gain = {
    .name = "gain",
    .doc = "Fader: gain in dB with click-free mute and polarity invert.",
    .default_channels = 1, .min_channels = 1, .max_channels = 64,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    .state_size = sizeof(gain_state),
    .prepare = prepare,
    .process = process,
};
