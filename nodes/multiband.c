/* multiband: 3- or 4-band compressor for mastering and bus work.
 *
 * Split: Linkwitz-Riley 4th-order crossovers `xover1..3` in a cascade with
 * all-pass phase compensation (csrc/dsp_crossover.h): every band has the
 * phase of AP1 AP2 AP3, so with no gain change the bands sum to a flat
 * magnitude (an all-pass of the input). Crossover frequencies are used in
 * order (xover2 reads at least xover1, xover3 at least xover2); while one
 * moves, the sections are designed every 16 samples from its ramp and glide
 * per sample in between (no zipper).
 *
 * `bands` 3 merges the top two bands: band 3's detector takes band 3 + band 4
 * (= the all-pass of everything above xover2) and band 3's gain is applied
 * to both, so the tree, its phase and its cost stay the same and a change of
 * `bands` crossfades over 10 ms. xover3 and the b4* settings then do nothing.
 *
 * Each band is the compressor node's design (Giannoulis, Massberg, Reiss,
 * JAES 2012; csrc/dsp_dynamics.h): peak or RMS level of the band, stereo
 * link toward the loudest channel, soft-knee gain computer (eq. 4), smooth
 * branching detector on the gain reduction (63% time constants), makeup.
 * Per band: solo (any soloed band mutes the others, 10 ms fade) and bypass
 * (unity gain, 10 ms fade). Global: dry/wet `mix` per band (parallel
 * compression, phase-coherent since dry and wet are the same band) and
 * `output` gain. Readouts `gr1..gr4`: the largest gain reduction of the
 * block per band and channel (<= 0 dB, makeup not included; with `bands` 3,
 * gr4 reads as gr3). Latency 0. Non-finite or absurd input samples (> 1e6)
 * read as 0. */
#include "dsp_crossover.h"
#include "dsp_dynamics.h"
#include "mg_node.h"

#define MB_BANDS 4
#define MB_MAX_CH 2
#define MB_SUB 16 /* frames per crossover design while a frequency moves */

enum { P_BANDS, P_X1, P_X2, P_X3, P_DETECT, P_WINDOW, P_LINK, P_MIX, P_OUTPUT, P_BAND0 };
enum { B_THRESH, B_RATIO, B_KNEE, B_ATTACK, B_RELEASE, B_MAKEUP, B_SOLO, B_BYPASS, B_N };

#define MB_BAND(n, thr, att, rel)                                                                   \
    {"b" #n "threshold", "dB", "band " #n " threshold: level above which the gain is reduced",         \
     -60.0f, 0.0f, thr, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},                                            \
    {"b" #n "ratio", "", "band " #n " compression ratio R:1 (1 = no compression)", 1.0f, 20.0f, 2.0f, \
     MG_MAP_LOG, MG_TAPER_LOG, 20.0f},                                                               \
    {"b" #n "knee", "dB", "band " #n " soft knee width around the threshold", 0.0f, 24.0f, 6.0f,      \
     MG_MAP_LIN, MG_TAPER_LIN, 20.0f},                                                               \
    {"b" #n "attack", "ms", "band " #n " attack time constant (63% of the change)", 0.1f, 500.0f, att, \
     MG_MAP_LOG, MG_TAPER_LOG, 0.0f},                                                                \
    {"b" #n "release", "ms", "band " #n " release time constant (63% of the change)", 5.0f, 5000.0f,  \
     rel, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},                                                           \
    {"b" #n "makeup", "dB", "band " #n " gain after compression", -24.0f, 24.0f, 0.0f, MG_MAP_LIN,   \
     MG_TAPER_LIN, 20.0f},                                                                           \
    {"b" #n "solo", "", "band " #n " solo: 1 mutes the bands not soloed (10 ms fade)", 0.0f, 1.0f,    \
     0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},                                                        \
    {"b" #n "bypass", "", "band " #n " bypass: 1 = unity gain, no compression (10 ms fade)", 0.0f,     \
     1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f}

static const mg_param_spec params[] = {
    {"bands", "", "number of bands: 3 (xover1, xover2) or 4 (xover1..3); 10 ms crossfade", 3.0f, 4.0f,
     4.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"xover1", "Hz", "crossover between bands 1 and 2 (Linkwitz-Riley 24 dB/oct)", 20.0f, 20000.0f,
     120.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"xover2", "Hz", "crossover between bands 2 and 3 (at least xover1)", 20.0f, 20000.0f, 1000.0f,
     MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"xover3", "Hz", "crossover between bands 3 and 4 (at least xover2; 4 bands only)", 20.0f,
     20000.0f, 6000.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"detect", "", "level detection: 0 peak, 1 RMS", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"window", "ms", "RMS averaging time constant", 1.0f, 300.0f, 10.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"link", "%", "stereo link: 100 = both channels share the louder channel's level (per band)", 0.0f,
     100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"mix", "%", "dry/wet per band: 0 = uncompressed bands, 100 = fully compressed", 0.0f, 100.0f,
     100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"output", "dB", "output gain", -24.0f, 24.0f, 0.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
    MB_BAND(1, -18.0f, 30.0f, 300.0f),
    MB_BAND(2, -18.0f, 15.0f, 200.0f),
    MB_BAND(3, -18.0f, 8.0f, 150.0f),
    MB_BAND(4, -18.0f, 4.0f, 100.0f),
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"gr1", "dB", MG_MAP_DB, 1},
    {"gr2", "dB", MG_MAP_DB, 1},
    {"gr3", "dB", MG_MAP_DB, 1},
    {"gr4", "dB", MG_MAP_DB, 1},
};

#define PB(k, f) (P_BAND0 + (k) * B_N + (f))

typedef struct {
    int ch;
    double sr;
    float att_ms[MB_BANDS], rel_ms[MB_BANDS], win_ms;
    float aa[MB_BANDS], ar[MB_BANDS], aw;
    /* smoothed gain reduction (dB >= 0) as last wanted value v + error e */
    float v[MB_BANDS][MB_MAX_CH], e[MB_BANDS][MB_MAX_CH];
    float ms[MB_BANDS][MB_MAX_CH];
    int designed;
    mg_xo_coef xc[MG_XO_MAX];
    mg_xo_tree tree[MB_MAX_CH];
    mg_xo_tree spare; /* mono: the second lane's (silent) states */
} mb_state;

static void update_coefs(mb_state *s)
{
    if (s->sr <= 0.0)
        return;
    for (int k = 0; k < MB_BANDS; k++) {
        s->aa[k] = dyn_coef(s->att_ms[k], s->sr);
        s->ar[k] = dyn_coef(s->rel_ms[k], s->sr);
    }
    s->aw = dyn_coef(s->win_ms, s->sr);
}

static void on_param(void *st, int index, float v)
{
    mb_state *s = st;
    if (index == P_WINDOW) {
        s->win_ms = v;
    } else if (index >= P_BAND0) {
        const int k = (index - P_BAND0) / B_N, f = (index - P_BAND0) % B_N;
        if (f == B_ATTACK)
            s->att_ms[k] = v;
        else if (f == B_RELEASE)
            s->rel_ms[k] = v;
        else
            return;
    } else {
        return;
    }
    update_coefs(s);
}

static void reset(void *st)
{
    mb_state *s = st;
    memset(s->v, 0, sizeof s->v);
    memset(s->e, 0, sizeof s->e);
    memset(s->ms, 0, sizeof s->ms);
    memset(s->tree, 0, sizeof s->tree);
    memset(&s->spare, 0, sizeof s->spare);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    mb_state *s = st;
    s->ch = ctx->channels;
    s->sr = ctx->sample_rate;
    for (int k = 0; k < MB_BANDS; k++) {
        s->att_ms[k] = params[PB(k, B_ATTACK)].def;
        s->rel_ms[k] = params[PB(k, B_RELEASE)].def;
    }
    s->win_ms = params[P_WINDOW].def;
    update_coefs(s);
    s->designed = 0;
    reset(s);
    return 0;
}

/* the crossover frequencies in force at frame j, kept in order */
static inline void xo_freqs(const mg_pv *pv, int j, double *f)
{
    double a = mg_pv_at(&pv[P_X1], j), b = mg_pv_at(&pv[P_X2], j), c = mg_pv_at(&pv[P_X3], j);
    b = b < a ? a : b;
    c = c < b ? b : c;
    f[0] = a;
    f[1] = b;
    f[2] = c;
}

static inline void pv_fill(float *d, const mg_pv *pv, int o, int m)
{
    if (pv->ramp)
        memcpy(d, pv->ramp + o, sizeof(float) * (size_t)m);
    else
        for (int i = 0; i < m; i++)
            d[i] = pv->value;
}

static inline float clamp01(float x) { return dyn_min(dyn_max(x, 0.0f), 1.0f); }

MG_HOT static void process(void *st, const mg_proc *p)
{
    mb_state *s = st;
    const int ch = s->ch, n = p->nframes;
    const mg_pv *pv = p->pv;
    const int rms = pv[P_DETECT].value >= 0.5f;
    const int xramp = pv[P_X1].ramp || pv[P_X2].ramp || pv[P_X3].ramp;
    const int link_on = ch > 1 && (pv[P_LINK].ramp || pv[P_LINK].value > 0.0f);
    const int shared = link_on && !pv[P_LINK].ramp && pv[P_LINK].value >= 100.0f;
    const int nd = shared ? 1 : ch; /* detectors per band */
    /* per-band gain terms change per sample when any of these ramps */
    int gramp = pv[P_MIX].ramp || pv[P_BANDS].ramp;
    for (int k = 0; k < MB_BANDS; k++)
        gramp |= pv[PB(k, B_MAKEUP)].ramp || pv[PB(k, B_SOLO)].ramp || pv[PB(k, B_BYPASS)].ramp;
    const float wsteady = clamp01(4.0f - pv[P_BANDS].value); /* 1: bands 3 */
    float grmax[MB_BANDS][MB_MAX_CH] = {{0}};

    float buf[MB_MAX_CH][MB_BANDS][DYN_CHUNK];
    float acc[MB_MAX_CH][DYN_CHUNK];
    float xl[MB_BANDS][MB_MAX_CH][DYN_CHUNK]; /* levels -> wanted -> smoothed reduction -> gain */
    float wv[DYN_CHUNK];            /* merge weight per frame */
    float zb[MB_BANDS][DYN_CHUNK];  /* mono: the unused second lane */
    if (ch == 1)
        memset(zb, 0, sizeof zb);

    for (int o = 0; o < n; o += DYN_CHUNK) {
        const int m = n - o < DYN_CHUNK ? n - o : DYN_CHUNK;
        /* 1. split */
        for (int c = 0; c < ch; c++) {
            const float *x = p->in[c] + o;
            for (int i = 0; i < m; i++)
                buf[c][3][i] = dyn_clean(x[i]);
        }
        const int sub = xramp ? MB_SUB : m;
        for (int q = 0; q < m; q += sub) {
            const int len = m - q < sub ? m - q : sub;
            double f[MG_XO_MAX];
            xo_freqs(pv, o + q + len - 1, f);
            mg_xo_coef c0[MG_XO_MAX];
            unsigned glide = 0; /* crossovers that moved: they glide, the rest run in lanes */
            for (int k = 0; k < MG_XO_MAX; k++) {
                c0[k] = s->xc[k];
                if (!s->designed || f[k] != s->xc[k].fc) {
                    mg_xo_design(&s->xc[k], s->sr, f[k]);
                    glide |= (unsigned)s->designed << k;
                }
            }
            s->designed = 1;
            /* both channels in the lanes of one vector (mono: a silent second lane) */
            float *const *b1 = ch > 1 ? (float *const[MB_BANDS]){buf[1][0] + q, buf[1][1] + q, buf[1][2] + q, buf[1][3] + q}
                                      : (float *const[MB_BANDS]){zb[0], zb[1], zb[2], zb[3]};
            float *const b0[MB_BANDS] = {buf[0][0] + q, buf[0][1] + q, buf[0][2] + q, buf[0][3] + q};
            mg_xo_split_pair(c0, s->xc, glide, MG_XO_MAX, &s->tree[0], ch > 1 ? &s->tree[1] : &s->spare,
                             b0, b1, len, ch);
        }
        for (int c = 0; c < ch; c++)
            memset(acc[c], 0, sizeof(float) * (size_t)m);
        pv_fill(wv, &pv[P_BANDS], o, m);
        for (int i = 0; i < m; i++)
            wv[i] = clamp01(4.0f - wv[i]);
        const int merge = pv[P_BANDS].ramp || wsteady > 0.0f;

        /* solo: S = the most soloed band's value; band k passes 1 - S + solo_k */
        float sol[MB_BANDS][DYN_CHUNK], smax[DYN_CHUNK];
        for (int k = 0; k < MB_BANDS; k++)
            pv_fill(sol[k], &pv[PB(k, B_SOLO)], o, m);
        for (int i = 0; i < m; i++) {
            const float s4 = (1.0f - wv[i]) * sol[3][i];
            smax[i] = dyn_max(dyn_max(sol[0][i], sol[1][i]), dyn_max(sol[2][i], s4));
        }

        /* 2a. per band: detector, link, gain computer -> wanted reduction xL >= 0 */
        int quiet[MB_BANDS];
        for (int k = 0; k < MB_BANDS; k++) {
            const mg_pv *bp = &pv[PB(k, 0)];
            float (*lv)[DYN_CHUNK] = xl[k];
            /* detector magnitudes: |x| (peak) or the mean square (RMS) */
            for (int c = 0; c < ch; c++) {
                float tmp[DYN_CHUNK];
                const float *src = buf[c][k];
                if (k == 2 && merge) {
                    for (int i = 0; i < m; i++)
                        tmp[i] = buf[c][2][i] + wv[i] * buf[c][3][i];
                    src = tmp;
                }
                float *l = lv[c];
                if (rms) {
                    float qv = s->ms[k][c];
                    const float a = s->aw, b = 1.0f - s->aw;
                    for (int i = 0; i < m; i++) {
                        qv = a * qv + b * (src[i] * src[i]);
                        l[i] = qv;
                    }
                    s->ms[k][c] = isfinite(qv) ? qv : 0.0f;
                } else {
                    for (int i = 0; i < m; i++)
                        l[i] = fabsf(src[i]);
                }
            }
            /* fully linked: the louder channel's magnitude (the log is monotonic) */
            if (shared)
                for (int c = 1; c < ch; c++)
                    for (int i = 0; i < m; i++)
                        lv[0][i] = dyn_max(lv[0][i], lv[c][i]);
            const float scale = rms ? 0.5f * DYN_DB_PER_LOG2 : DYN_DB_PER_LOG2;
            const int cramp = bp[B_THRESH].ramp || bp[B_RATIO].ramp || bp[B_KNEE].ramp;
            const float t = bp[B_THRESH].value, sl = 1.0f / bp[B_RATIO].value - 1.0f;
            const float kw = bp[B_KNEE].value, hw = 0.5f * kw, iw = kw > 0.0f ? 0.5f / kw : 0.0f;
            /* the whole chunk under the knee (the link only moves levels toward
             * the loudest): no reduction wanted, no logarithms needed */
            quiet[k] = 0;
            if (!cramp) {
                float mx = 0.0f; /* magnitudes are >= 0: an integer max that vectorises */
                for (int c = 0; c < nd; c++)
                    mx = dyn_peak(lv[c], m, mx);
                quiet[k] = scale * dyn_log2f(mx) < t - hw;
            }
            if (quiet[k]) {
                for (int c = 0; c < nd; c++)
                    memset(lv[c], 0, sizeof(float) * (size_t)m);
                continue;
            }
            for (int c = 0; c < nd; c++)
                for (int i = 0; i < m; i++)
                    lv[c][i] = scale * dyn_log2f(lv[c][i]);
            if (link_on && !shared) {
                float mx[DYN_CHUNK];
                for (int i = 0; i < m; i++)
                    mx[i] = lv[0][i];
                for (int c = 1; c < ch; c++)
                    for (int i = 0; i < m; i++)
                        mx[i] = dyn_max(mx[i], lv[c][i]);
                for (int c = 0; c < ch; c++)
                    for (int i = 0; i < m; i++)
                        lv[c][i] += 0.01f * mg_pv_at(&pv[P_LINK], o + i) * (mx[i] - lv[c][i]);
            }
            for (int c = 0; c < nd; c++) {
                float *l = lv[c];
                if (!cramp) {
                    for (int i = 0; i < m; i++)
                        l[i] = -dyn_comp_gain(l[i], t, sl, hw, iw);
                } else {
                    for (int i = 0; i < m; i++) {
                        const int j = o + i;
                        const float tj = mg_pv_at(&bp[B_THRESH], j);
                        const float sj = 1.0f / mg_pv_at(&bp[B_RATIO], j) - 1.0f;
                        const float w = mg_pv_at(&bp[B_KNEE], j);
                        l[i] = -dyn_comp_gain(l[i], tj, sj, 0.5f * w, w > 0.0f ? 0.5f / w : 0.0f);
                    }
                }
            }
        }
        /* 2b. smoothing (error form of Giannoulis eq. 16, as the compressor),
         * the four bands' recursions interleaved in one loop:
         * e[n] = a (e[n-1] + v[n-1] - v[n]) with a = attack when negative */
        float pkall[MB_BANDS] = {0};
        for (int c = 0; c < nd; c++) {
            int rest = 1;
            for (int k = 0; k < MB_BANDS; k++)
                rest &= quiet[k] && s->v[k][c] == 0.0f && s->e[k][c] == 0.0f;
            if (rest)
                continue; /* nothing wanted, nothing left: yL = 0 */
            float e[MB_BANDS], vp[MB_BANDS];
            for (int k = 0; k < MB_BANDS; k++) {
                e[k] = s->e[k][c];
                vp[k] = s->v[k][c];
            }
            for (int i = 0; i < m; i++)
                for (int k = 0; k < MB_BANDS; k++) {
                    const float x = xl[k][c][i];
                    const float d = e[k] + (vp[k] - x);
                    vp[k] = x;
                    e[k] = dyn_sel(d < 0.0f, s->aa[k] * d, s->ar[k] * d);
                    xl[k][c][i] = x + e[k];
                }
            for (int k = 0; k < MB_BANDS; k++) {
                float ek = e[k];
                if (!(fabsf(ek) > 1e-6f) || !(fabsf(ek) < 1e4f))
                    ek = 0.0f; /* settled (or NaN): exactly on v */
                s->v[k][c] = vp[k];
                s->e[k][c] = ek;
                const float pk = dyn_peak(xl[k][c], m, 0.0f);
                if (pk > grmax[k][c])
                    grmax[k][c] = pk;
                pkall[k] = pk > pkall[k] ? pk : pkall[k];
            }
        }
        /* 2c. gain = B + A 2^((makeup - yL)/6.02), A = mute (1 - byp) mix,
         * B = mute (byp + (1 - byp)(1 - mix)); sum of the bands */
        for (int k = 0; k < MB_BANDS; k++) {
            const mg_pv *bp = &pv[PB(k, 0)];
            float (*lv)[DYN_CHUNK] = xl[k];
            if (!gramp) {
                const float mute = clamp01(1.0f - smax[0] + sol[k][0]);
                const float byp = bp[B_BYPASS].value, mix = 0.01f * pv[P_MIX].value;
                const float A = mute * (1.0f - byp) * mix, B = mute * (byp + (1.0f - byp) * (1.0f - mix));
                const float mk = bp[B_MAKEUP].value;
                if (pkall[k] == 0.0f) { /* no reduction in this chunk: one gain */
                    const float g = B + A * dyn_exp2f(mk * DYN_LOG2_PER_DB);
                    for (int c = 0; c < nd; c++)
                        for (int i = 0; i < m; i++)
                            lv[c][i] = g;
                } else {
                    for (int c = 0; c < nd; c++)
                        for (int i = 0; i < m; i++)
                            lv[c][i] = B + A * dyn_exp2f((mk - lv[c][i]) * DYN_LOG2_PER_DB);
                }
            } else {
                for (int c = 0; c < nd; c++)
                    for (int i = 0; i < m; i++) {
                        const int j = o + i;
                        const float mute = clamp01(1.0f - smax[i] + sol[k][i]);
                        const float byp = mg_pv_at(&bp[B_BYPASS], j), mix = 0.01f * mg_pv_at(&pv[P_MIX], j);
                        const float A = mute * (1.0f - byp) * mix;
                        const float B = mute * (byp + (1.0f - byp) * (1.0f - mix));
                        lv[c][i] = B + A * dyn_exp2f((mg_pv_at(&bp[B_MAKEUP], j) - lv[c][i]) * DYN_LOG2_PER_DB);
                    }
            }
            if (k == 3 && merge) /* bands 3: band 4 takes band 3's gain */
                for (int c = 0; c < nd; c++)
                    for (int i = 0; i < m; i++)
                        lv[c][i] += wv[i] * (xl[2][c][i] - lv[c][i]);
            for (int c = 0; c < ch; c++) {
                const float *g = lv[shared ? 0 : c], *b = buf[c][k];
                float *a = acc[c];
                for (int i = 0; i < m; i++)
                    a[i] += g[i] * b[i];
            }
        }
        /* 3. output gain */
        for (int c = 0; c < ch; c++) {
            float *y = p->out[c] + o;
            if (pv[P_OUTPUT].ramp) {
                for (int i = 0; i < m; i++)
                    y[i] = acc[c][i] * pv[P_OUTPUT].ramp[o + i];
            } else {
                const float g = pv[P_OUTPUT].value;
                for (int i = 0; i < m; i++)
                    y[i] = acc[c][i] * g;
            }
        }
    }
    for (int c = 0; c < ch; c++)
        mg_xo_guard(&s->tree[c], MG_XO_MAX);
    if (shared)
        for (int k = 0; k < MB_BANDS; k++)
            for (int c = 1; c < ch; c++) {
                s->v[k][c] = s->v[k][0];
                s->e[k][c] = s->e[k][0];
                grmax[k][c] = grmax[k][0];
            }
    for (int k = 0; k < MB_BANDS; k++)
        for (int c = 0; c < ch; c++) {
            const float gr = (k == 3 && wsteady >= 0.5f) ? grmax[2][c] : grmax[k][c];
            p->readout[k * ch + c] = dyn_exp2f(-gr * DYN_LOG2_PER_DB);
        }
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"bands", "3 bands|4 bands"},
    {"detect", "peak|RMS"},
    {"b#solo", "off|on"},
    {"b#bypass", "off|on"},
};

const mg_node_type mg_type_multiband = {
    .name = "multiband",
    .doc = "Multiband compressor, 3 or 4 bands (`bands`): Linkwitz-Riley 24 dB/oct crossovers "
           "`xover1..3` with all-pass phase compensation, so the bands sum flat (an all-pass of the "
           "input) when nothing is compressed; crossovers move live without zipper. Per band "
           "`bN*`: the compressor node's soft-knee gain computer and smooth branching detector "
           "(threshold, ratio, knee, attack, release, makeup), solo and bypass (10 ms fades). "
           "Global peak/RMS detection, stereo link, dry/wet mix and output gain. Readouts "
           "`gr1..gr4` per channel (dB <= 0). Mono or stereo; latency 0.",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = MB_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(mb_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .on_param = on_param,
};
