/* leveler: rides the level slowly toward a short-term loudness target (a
 * live "loudness AGC" for a programme bus or a voice).
 *
 * Measurement (feed-forward, on the input): BS.1770-4 K-weighting and
 * channel weights (csrc/dsp_loudness.h, as the meter) on 100 ms sub-blocks
 * counted from the node's start. Every 100 ms:
 *   momentary  = the last 4 sub-blocks (400 ms);
 *   shortterm  = the last 30 (3 s), the readout `shortterm`;
 *   gate       a sub-block whose own loudness (100 ms) or momentary
 *              loudness is under `gate` LUFS is a pause: it is not measured
 *              and the gain holds until a sub-block passes again;
 *   level      = the loudness of the mean energy of the last 30 sub-blocks
 *              that passed the gate (the readout `level`);
 *   wanted     = clamp(target - level, -maxcut, +maxboost).
 * Gain (dB), per sample: it moves toward `wanted` as a one-pole of time
 * constant `time` seconds, and never faster than `speed` dB/s; it stays
 * within [-maxcut, +maxboost] at every sample; it holds (does not move) while
 * the gate is closed, while `freeze` is 1 and before anything was measured.
 * The output is the input times that gain: the output's short-term loudness
 * settles on the target for a steady programme. No look-ahead: latency 0.
 * Readouts: `shortterm` and `level` (LUFS, input; -200 when there is nothing
 * to measure), `gain` (dB, applied now), `hold` (1 while the gain holds).
 * Non-finite or absurd input samples (> 1e6) read as 0. */
#include "dsp_dynamics.h"
#include "dsp_loudness.h"
#include "mg_node.h"

enum { P_TARGET, P_MAXBOOST, P_MAXCUT, P_TIME, P_SPEED, P_GATE, P_FREEZE };

static const mg_param_spec params[] = {
    {"target", "LUFS", "short-term loudness to ride toward", -40.0f, 0.0f, -18.0f, MG_MAP_LIN,
     MG_TAPER_LIN, 0.0f},
    {"maxboost", "dB", "largest gain the leveler may apply", 0.0f, 24.0f, 12.0f, MG_MAP_LIN,
     MG_TAPER_LIN, 20.0f},
    {"maxcut", "dB", "largest attenuation the leveler may apply", 0.0f, 24.0f, 12.0f, MG_MAP_LIN,
     MG_TAPER_LIN, 20.0f},
    {"time", "s", "response time constant toward the wanted gain", 0.5f, 60.0f, 3.0f, MG_MAP_LOG,
     MG_TAPER_LOG, 0.0f},
    {"speed", "dB/s", "fastest gain change", 0.1f, 20.0f, 2.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"gate", "LUFS", "loudness (100 ms or 400 ms) under which the input is a pause: the gain holds", -80.0f,
     -20.0f, -50.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"freeze", "", "1 holds the gain where it is", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
enum { R_SHORTTERM, R_LEVEL, R_GAIN, R_HOLD };
static const mg_readout_spec readouts[] = {
    {"shortterm", "LUFS", MG_MAP_LIN, 0},
    {"level", "LUFS", MG_MAP_LIN, 0},
    {"gain", "dB", MG_MAP_DB, 0},
    {"hold", "", MG_MAP_LIN, 0},
};

#define LV_MAX_CH 8
#define LV_SUBS_M 4
#define LV_SUBS_S 30

typedef struct {
    int channels;
    double sr;
    mg_bq kw1, kw2;
    mg_bq_state kst[LV_MAX_CH][2];
    double weight[LV_MAX_CH];
    float clean[LV_MAX_CH][MG_MAX_BLOCK]; /* the input with absurd samples read as 0 */
    int hop, pos;
    double acc;                /* weighted energy of the current sub-block */
    double ring[LV_SUBS_S];    /* energies of the last 30 sub-blocks */
    uint8_t pass[LV_SUBS_S];   /* 1: that sub-block passed the gate */
    int ri;
    double st, level;          /* LUFS */
    int open;                  /* the gate passed the latest sub-block */
    int measured;              /* level is valid */
    double gdb;                /* applied gain, dB (double: a float one-pole
                                  with a time constant of seconds stalls up
                                  to ulp/(1 - a) away from its goal) */
    double wanted;             /* dB */
    double kt;                 /* one-pole coefficient per sample (1 - a) */
    float time_s, speed;
} lv_state;

static void update(lv_state *s)
{
    if (s->sr <= 0.0)
        return;
    s->kt = 1.0 - exp(-1.0 / (s->time_s * s->sr));
}

static void on_param(void *st, int index, float v)
{
    lv_state *s = st;
    if (index == P_TIME) {
        s->time_s = v;
        update(s);
    } else if (index == P_SPEED) {
        s->speed = v;
    }
}

static void reset(void *st)
{
    lv_state *s = st;
    memset(s->kst, 0, sizeof s->kst);
    memset(s->ring, 0, sizeof s->ring);
    memset(s->pass, 0, sizeof s->pass);
    s->ri = 0;
    s->pos = 0;
    s->acc = 0.0;
    s->st = s->level = MG_LUFS_FLOOR;
    s->open = 0;
    s->measured = 0;
    s->gdb = 0.0;
    s->wanted = 0.0;
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    lv_state *s = st;
    s->channels = ctx->channels;
    s->sr = ctx->sample_rate;
    mg_kweight_design(ctx->sample_rate, &s->kw1, &s->kw2);
    for (int c = 0; c < s->channels; c++)
        s->weight[c] = mg_loud_weight(s->channels, c);
    s->hop = (int)lround(0.1 * ctx->sample_rate);
    if (s->hop < 1)
        s->hop = 1;
    s->time_s = params[P_TIME].def;
    s->speed = params[P_SPEED].def;
    update(s);
    reset(s);
    return 0;
}

/* mg_kweight_energy for two channels at once, in the lanes of a double
 * vector (GCC/Clang vector extensions): the same arithmetic per lane; each
 * lane's energy is weighted by w0, w1. A lane that became non-finite
 * restarts its filters and contributes nothing, as in mg_kweight_energy. */
typedef double lv_v2 __attribute__((vector_size(16)));

static inline double kweight_pair(const mg_bq *f1, const mg_bq *f2, mg_bq_state *s0,
                                  mg_bq_state *s1, const float *x0, const float *x1, int n,
                                  double w0, double w1)
{
    const lv_v2 p0 = {f1->b0, f1->b0}, p1 = {f1->b1, f1->b1}, p2 = {f1->b2, f1->b2};
    const lv_v2 pa1 = {f1->a1, f1->a1}, pa2 = {f1->a2, f1->a2};
    const lv_v2 q0 = {f2->b0, f2->b0}, q1 = {f2->b1, f2->b1}, q2 = {f2->b2, f2->b2};
    const lv_v2 qa1 = {f2->a1, f2->a1}, qa2 = {f2->a2, f2->a2};
    lv_v2 a1 = {s0[0].s1, s1[0].s1}, a2 = {s0[0].s2, s1[0].s2};
    lv_v2 c1 = {s0[1].s1, s1[1].s1}, c2 = {s0[1].s2, s1[1].s2};
    lv_v2 sum = {0.0, 0.0};
    for (int i = 0; i < n; i++) {
        const lv_v2 v = {x0[i], x1[i]};
        const lv_v2 u = p0 * v + a1;
        a1 = (p1 * v + a2) - pa1 * u;
        a2 = p2 * v - pa2 * u;
        const lv_v2 y = q0 * u + c1;
        c1 = (q1 * u + c2) - qa1 * y;
        c2 = q2 * u - qa2 * y;
        sum += y * y;
    }
    double e = 0.0;
    mg_bq_state *st[2] = {s0, s1};
    const double w[2] = {w0, w1};
    for (int l = 0; l < 2; l++) {
        if (!isfinite(sum[l]) || !isfinite(a1[l] + a2[l] + c1[l] + c2[l])) {
            st[l][0].s1 = st[l][0].s2 = st[l][1].s1 = st[l][1].s2 = 0.0;
            continue;
        }
        st[l][0].s1 = a1[l];
        st[l][0].s2 = a2[l];
        st[l][1].s1 = c1[l];
        st[l][1].s2 = c2[l];
        e += w[l] * sum[l];
    }
    return e;
}

/* a 100 ms sub-block is complete */
static void end_subblock(lv_state *s, float gate)
{
    s->ring[s->ri] = s->acc;
    s->acc = 0.0;
    double zm = 0.0, zs = 0.0, zg = 0.0;
    int ng = 0;
    for (int k = 0; k < LV_SUBS_M; k++)
        zm += s->ring[(s->ri - k + LV_SUBS_S) % LV_SUBS_S];
    const double mom = mg_lufs(zm / ((double)LV_SUBS_M * s->hop));
    const double own = mg_lufs(s->ring[s->ri] / (double)s->hop);
    s->open = mom >= gate && own >= gate;
    s->pass[s->ri] = (uint8_t)s->open;
    for (int k = 0; k < LV_SUBS_S; k++) {
        zs += s->ring[k];
        if (s->pass[k]) {
            zg += s->ring[k];
            ng++;
        }
    }
    s->ri = (s->ri + 1) % LV_SUBS_S;
    s->st = mg_lufs(zs / ((double)LV_SUBS_S * s->hop));
    if (ng) {
        s->level = mg_lufs(zg / ((double)ng * s->hop));
        s->measured = s->level > MG_LUFS_FLOOR;
    }
}

static void process(void *st, const mg_proc *p)
{
    lv_state *s = st;
    const int n = p->nframes, nc = s->channels;
    const mg_pv *pv = p->pv;
    const float target = pv[P_TARGET].value, gate = pv[P_GATE].value;
    const int freeze = pv[P_FREEZE].value >= 0.5f;
    const double kt = s->kt, slew = s->speed / s->sr;
    float gd[MG_MAX_BLOCK];
    int held = 0;
    /* the measurement and the output both take the cleaned input: one spike of
     * 1e7 must not read as +90 LUFS and duck the programme for seconds */
    for (int c = 0; c < nc; c++) {
        const float *x = p->in[c];
        float *xc = s->clean[c];
        for (int i = 0; i < n; i++)
            xc[i] = dyn_clean(x[i]);
    }
    for (int i = 0; i < n;) {
        int m = s->hop - s->pos;
        if (m > n - i)
            m = n - i;
        /* gain for frames i..i+m, from the measurement so far */
        const int hold = freeze || !s->open || !s->measured;
        held |= hold;
        double g = s->gdb;
        for (int j = i; j < i + m; j++) {
            const double hi = mg_pv_at(&pv[P_MAXBOOST], j), lo = -mg_pv_at(&pv[P_MAXCUT], j);
            if (!hold) {
                const double w = s->wanted < lo ? lo : s->wanted > hi ? hi : s->wanted;
                const double d = kt * (w - g);
                g += d < -slew ? -slew : d > slew ? slew : d;
            }
            g = g < lo ? lo : g > hi ? hi : g;
            gd[j] = (float)g;
        }
        s->gdb = isfinite(g) ? g : 0.0;
        int c = 0;
        for (; c + 1 < nc; c += 2)
            s->acc += kweight_pair(&s->kw1, &s->kw2, s->kst[c], s->kst[c + 1], s->clean[c] + i,
                                   s->clean[c + 1] + i, m, s->weight[c], s->weight[c + 1]);
        if (c < nc && s->weight[c] != 0.0)
            s->acc += s->weight[c] * mg_kweight_energy(&s->kw1, &s->kw2, s->kst[c],
                                                       s->clean[c] + i, m);
        s->pos += m;
        i += m;
        if (s->pos >= s->hop) {
            s->pos = 0;
            end_subblock(s, gate);
            s->wanted = target - s->level;
        }
    }
    for (int i = 0; i < n; i++)
        gd[i] = dyn_exp2f(gd[i] * DYN_LOG2_PER_DB);
    for (int c = 0; c < nc; c++) {
        const float *xc = s->clean[c];
        float *y = p->out[c];
        for (int i = 0; i < n; i++)
            y[i] = xc[i] * gd[i];
    }
    p->readout[R_SHORTTERM] = (float)s->st;
    p->readout[R_LEVEL] = (float)s->level;
    p->readout[R_GAIN] = gd[n - 1];
    p->readout[R_HOLD] = (float)held;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"freeze", "off|on"},
};

const mg_node_type mg_type_leveler = {
    .name = "leveler",
    .doc = "Slow loudness rider: measures the input's short-term loudness (BS.1770 K-weighting, "
           "3 s, sub-blocks under the `gate` LUFS left out) and moves the gain toward `target` "
           "LUFS with a `time` constant, at most `speed` dB/s, within +`maxboost` / -`maxcut` dB; "
           "holds in pauses (100 ms or momentary loudness under `gate`) and while `freeze` is 1. Readouts "
           "`shortterm`, `level` (gated) LUFS, `gain` dB, `hold`. Latency 0.",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = LV_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(lv_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .on_param = on_param,
};
