/* expander: downward expander, the expander form of the Giannoulis, Massberg,
 * Reiss (JAES 2012) log-domain design.
 *
 * Per sample: level xG = 20 log10 max|x| over the channels (peak, linked);
 * gain computer with ratio 1:n (slope n below the threshold) and a soft knee
 * mirrored from eq. 4:
 *   xG >= T + W/2:      yG = xG
 *   |xG - T| < W/2:     yG = xG - (n - 1) (xG - T - W/2)^2 / (2W)
 *   xG <= T - W/2:      yG = T + n (xG - T)
 * wanted reduction xL = min(xG - yG, -range) (range: the largest attenuation);
 * smoothing: smooth branching detector in dB, yL = a yL + (1 - a) xL with
 * a = attack coefficient when the reduction falls (the signal got louder:
 * the expander opens), else the release coefficient; a = exp(-1/(tau fs)),
 * 63.2% of a step after tau. Gain 10^(-yL/20). Readout `gr` (dB <= 0). */
#include "dsp_dynamics.h"
#include "mg_node.h"

enum { P_THRESH, P_RATIO, P_KNEE, P_ATTACK, P_RELEASE, P_RANGE };

static const mg_param_spec params[] = {
    {"threshold", "dB", "level below which the gain falls", -90.0f, 0.0f, -40.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"ratio", "", "expansion ratio 1:n: below the threshold the output falls n dB per dB", 1.0f, 20.0f, 2.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"knee", "dB", "soft knee width, centred on the threshold (0 = hard knee)", 0.0f, 24.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"attack", "ms", "opening time constant (reduction falling, 63% of the change)", 0.05f, 500.0f, 1.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"release", "ms", "closing time constant (reduction growing, 63% of the change)", 5.0f, 5000.0f, 100.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"range", "dB", "largest attenuation", -100.0f, 0.0f, -40.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"gr", "dB", MG_MAP_DB, 0},
};

#define EXP_MAX_CH 8

typedef struct {
    int ch;
    double sr;
    float attack_ms, release_ms;
    float aa, ar;
    float v, e; /* smoothed reduction yL = v + e, dB >= 0 (as in compressor.c) */
} exp_state;

static void update(exp_state *s)
{
    if (s->sr <= 0.0)
        return;
    s->aa = dyn_coef(s->attack_ms, s->sr);
    s->ar = dyn_coef(s->release_ms, s->sr);
}

static void on_param(void *st, int index, float v)
{
    exp_state *s = st;
    if (index == P_ATTACK)
        s->attack_ms = v;
    else if (index == P_RELEASE)
        s->release_ms = v;
    else
        return;
    update(s);
}

static void reset(void *st)
{
    ((exp_state *)st)->v = 0.0f;
    ((exp_state *)st)->e = 0.0f;
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    exp_state *s = st;
    s->ch = ctx->channels;
    s->sr = ctx->sample_rate;
    update(s);
    reset(s);
    return 0;
}

static void process(void *st, const mg_proc *p)
{
    exp_state *s = st;
    const int ch = s->ch;
    const mg_pv *pv = p->pv;
    const int ramp = pv[P_THRESH].ramp || pv[P_RATIO].ramp || pv[P_KNEE].ramp || pv[P_RANGE].ramp;
    const float aa = s->aa, ar = s->ar;
    float vp = s->v, e = s->e, grmax = 0.0f;
    float lv[DYN_CHUNK];
    for (int o = 0; o < p->nframes; o += DYN_CHUNK) {
        const int m = p->nframes - o < DYN_CHUNK ? p->nframes - o : DYN_CHUNK;
        for (int i = 0; i < m; i++)
            lv[i] = fabsf(dyn_clean(p->in[0][o + i]));
        for (int c = 1; c < ch; c++)
            for (int i = 0; i < m; i++)
                lv[i] = dyn_max(lv[i], fabsf(dyn_clean(p->in[c][o + i])));
        if (!ramp) {
            const float t = pv[P_THRESH].value, sl = pv[P_RATIO].value - 1.0f, w = pv[P_KNEE].value;
            const float hw = 0.5f * w, iw = w > 0.0f ? 0.5f / w : 0.0f, rg = -pv[P_RANGE].value;
            for (int i = 0; i < m; i++)
                lv[i] = dyn_min(-dyn_exp_gain(DYN_DB_PER_LOG2 * dyn_log2f(lv[i]), t, sl, hw, iw), rg);
        } else {
            for (int i = 0; i < m; i++) {
                const int j = o + i;
                const float w = mg_pv_at(&pv[P_KNEE], j);
                const float hw = 0.5f * w, iw = w > 0.0f ? 0.5f / w : 0.0f;
                lv[i] = dyn_min(-dyn_exp_gain(DYN_DB_PER_LOG2 * dyn_log2f(lv[i]), mg_pv_at(&pv[P_THRESH], j),
                                            mg_pv_at(&pv[P_RATIO], j) - 1.0f, hw, iw),
                              -mg_pv_at(&pv[P_RANGE], j));
            }
        }
        /* error form of the branching detector (see compressor.c); the
         * attack (opening) branch is taken when v[n] < y[n-1], i.e. d > 0 */
        float dv[DYN_CHUNK];
        dv[0] = vp - lv[0];
        for (int i = 1; i < m; i++)
            dv[i] = lv[i - 1] - lv[i];
        vp = lv[m - 1];
        for (int i = 0; i < m; i++) {
            const float d = e + dv[i];
            const float ea = aa * d, er = ar * d;
            e = d > 0.0f ? ea : er;
            dv[i] = e;
        }
        for (int i = 0; i < m; i++)
            lv[i] += dv[i];
        grmax = dyn_peak(lv, m, grmax);
        if (!(fabsf(e) > 1e-6f) || !(fabsf(e) < 1e4f)) /* settled, or NaN */
            e = 0.0f;
        for (int i = 0; i < m; i++)
            lv[i] = dyn_exp2f(-lv[i] * DYN_LOG2_PER_DB);
        for (int c = 0; c < ch; c++) {
            const float *x = p->in[c] + o;
            float *out = p->out[c] + o;
            for (int i = 0; i < m; i++)
                out[i] = dyn_clean(x[i]) * lv[i];
        }
    }
    s->v = vp;
    s->e = e;
    p->readout[0] = dyn_exp2f(-grmax * DYN_LOG2_PER_DB);
}

const mg_node_type mg_type_expander = {
    .name = "expander",
    .doc = "Downward expander (expander form of the Giannoulis et al. 2012 gain computer): ratio "
           "1:n below `threshold`, soft knee, attenuation limited to `range`, attack (opening) and "
           "release (closing) as 63% time constants of the smoothed reduction; readout `gr`.",
    .default_channels = 1,
    .min_channels = 1,
    .max_channels = EXP_MAX_CH,
    MG_PARAMS(params),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(exp_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .on_param = on_param,
};
