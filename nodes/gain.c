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

/* The factor of a fader at rest: process's and steady's, one expression. */
static inline float steady_factor(const mg_pv *pv)
{
    return pv[P_GAIN].value * pv[P_VCA].value * (1.0f - pv[P_MUTE].value) *
           (1.0f - 2.0f * pv[P_POLARITY].value);
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    const gain_state *s = st;
    const mg_pv *g = &p->pv[P_GAIN], *m = &p->pv[P_MUTE], *pol = &p->pv[P_POLARITY];
    const mg_pv *v = &p->pv[P_VCA];
    const int n = p->nframes;
    if (!g->ramp && !m->ramp && !pol->ramp && !v->ramp) {
        mg_pv k = {NULL, steady_factor(p->pv), NULL};
        for (int c = 0; c < s->channels; c++)
            mg_scale(p->out[c], p->in[c], &k, n);
        return;
    }
    /* a moving fader: the gain of each frame once, f = g * vca * (1 - mute)
     * * (1 - 2 polarity), a steady factor of 1 skipped; then every channel
     * times f. No branch per sample, so both loops vectorise. */
    float f[MG_MAX_BLOCK];
    if (g->ramp)
        memcpy(f, g->ramp, sizeof(float) * (size_t)n);
    else
        for (int i = 0; i < n; i++)
            f[i] = g->value;
    if (v->ramp)
        for (int i = 0; i < n; i++)
            f[i] *= v->ramp[i];
    else if (v->value != 1.0f)
        for (int i = 0; i < n; i++)
            f[i] *= v->value;
    if (m->ramp)
        for (int i = 0; i < n; i++)
            f[i] *= 1.0f - m->ramp[i];
    else if (m->value != 0.0f)
        for (int i = 0; i < n; i++)
            f[i] *= 1.0f - m->value;
    if (pol->ramp)
        for (int i = 0; i < n; i++)
            f[i] *= 1.0f - 2.0f * pol->ramp[i];
    else if (pol->value != 0.0f)
        for (int i = 0; i < n; i++)
            f[i] *= 1.0f - 2.0f * pol->value;
    for (int c = 0; c < s->channels; c++) {
        const float *restrict x = p->in[c];
        float *restrict y = p->out[c];
        for (int i = 0; i < n; i++)
            y[i] = x[i] * f[i];
    }
}

/* While nothing moves, process writes out[c] = in[c] * f (mg_node_type.steady). */
static int steady(void *st, const mg_pv *pv, float *gain)
{
    const gain_state *s = st;
    if (pv[P_GAIN].ramp || pv[P_MUTE].ramp || pv[P_POLARITY].ramp || pv[P_VCA].ramp)
        return -1;
    const float f = steady_factor(pv);
    for (int c = 0; c < s->channels; c++)
        gain[c] = f;
    return 0;
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
    .steady = steady,
};
