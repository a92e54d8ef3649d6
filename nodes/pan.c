/* pan: mono-to-stereo panner with a choice of pan law.
 *
 * With x = (pan + 1) / 2 in [0, 1] and t = x * pi / 2:
 *   law 0  -3 dB, constant power (default): gL = cos t,             gR = sin t
 *   law 1  -4.5 dB (geometric mean of 0 and 2): gL = sqrt((1-x) cos t), gR = sqrt(x sin t)
 *   law 2  -6 dB, linear sum (gL + gR = 1):  gL = 1 - x,            gR = x
 *   law 3  0 dB, linear (centre at unity):   gL = min(1, 2(1-x)),   gR = min(1, 2x)
 * Centre gains: -3.01, -4.52, -6.02, 0 dB. The law is a stepped choice whose
 * changes are crossfaded over 10 ms (the gains move continuously from one law
 * to the next), so switching it live does not click. */
#include "mg_node.h"

enum { P_PAN, P_LAW };

static const mg_param_spec params[] = {
    {"pan", "", "position: -1 hard left, 0 centre, +1 hard right", -1.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"law", "", "pan law: 0 = -3 dB constant power, 1 = -4.5 dB, 2 = -6 dB linear sum, 3 = 0 dB linear", 0.0f, 3.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 1},
    {"out", MG_PORT_OUT, 2},
};

#define MG_QUARTER_PI 0.78539816339744830962

typedef struct {
    float pos, law; /* what the cached gains belong to (NAN: none yet) */
    float gl, gr;
} pan_state;

static void law_gains(int law, double pos, double *gl, double *gr)
{
    const double th = (pos + 1.0) * MG_QUARTER_PI, x = (pos + 1.0) * 0.5;
    switch (law) {
    case 1:
        *gl = sqrt((1.0 - x) * cos(th));
        *gr = sqrt(x * sin(th));
        break;
    case 2:
        *gl = 1.0 - x;
        *gr = x;
        break;
    case 3:
        *gl = fmin(1.0, 2.0 * (1.0 - x));
        *gr = fmin(1.0, 2.0 * x);
        break;
    default:
        *gl = cos(th);
        *gr = sin(th);
        break;
    }
}

/* law may be fractional while it is crossfaded */
static void gains(double law, double pos, float *gl, float *gr)
{
    if (!(law >= 0.0))
        law = 0.0;
    if (law > 3.0)
        law = 3.0;
    int a = (int)law;
    double f = law - a, l0, r0;
    law_gains(a, pos, &l0, &r0);
    if (f > 0.0) {
        double l1, r1;
        law_gains(a + 1, pos, &l1, &r1);
        l0 += f * (l1 - l0);
        r0 += f * (r1 - r0);
    }
    *gl = (float)l0;
    *gr = (float)r0;
}

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
    const mg_pv *pos = &p->pv[P_PAN], *law = &p->pv[P_LAW];
    const int n = p->nframes;
    if (!pos->ramp && !law->ramp) {
        if (pos->value != s->pos || law->value != s->law) {
            gains(law->value, pos->value, &s->gl, &s->gr);
            s->pos = pos->value;
            s->law = law->value;
        }
        const float gl = s->gl, gr = s->gr;
        MG_LOOP_N(i, n, (l[i] = x[i] * gl, r[i] = x[i] * gr));
        return;
    }
    /* the same arithmetic as the steady path, so a position gives the same
     * gains whether or not it is reached by a ramp (renders do not depend on
     * where blocks split) */
    for (int i = 0; i < n; i++) {
        float gl, gr;
        gains(mg_pv_at(law, i), mg_pv_at(pos, i), &gl, &gr);
        l[i] = x[i] * gl;
        r[i] = x[i] * gr;
    }
}

/* While neither parameter moves, process writes l = x * gl, r = x * gr with
 * the gains it caches here: the engine may fuse the strip's tail (mg_node_type.steady). */
static int steady(void *st, const mg_pv *pv, float *g)
{
    pan_state *s = st;
    const mg_pv *pos = &pv[P_PAN], *law = &pv[P_LAW];
    if (pos->ramp || law->ramp)
        return -1;
    if (pos->value != s->pos || law->value != s->law) {
        gains(law->value, pos->value, &s->gl, &s->gr);
        s->pos = pos->value;
        s->law = law->value;
    }
    g[0] = s->gl;
    g[1] = s->gr;
    return 0;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"law", "-3 dB|-4.5 dB|-6 dB|0 dB"},
};

const mg_node_type mg_type_pan = {
    .name = "pan",
    .doc = "Panner, mono in, stereo out. x = (pan+1)/2, t = x*pi/2; law 0 (-3 dB, default): "
           "gL = cos t, gR = sin t; law 1 (-4.5 dB): gL = sqrt((1-x) cos t), gR = sqrt(x sin t); "
           "law 2 (-6 dB): gL = 1-x, gR = x; law 3 (0 dB): gL = min(1, 2(1-x)), gR = min(1, 2x).",
    .default_channels = 1, .min_channels = 1, .max_channels = 1,
    .params = params, .n_params = MG_COUNT(params),
    MG_CHOICES(choices),
    .ports = ports, .n_ports = MG_COUNT(ports),
    .state_size = sizeof(pan_state),
    .prepare = prepare, .process = process,
    .steady = steady,
};
