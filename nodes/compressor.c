/* compressor: feed-forward, log-domain compressor after Giannoulis, Massberg
 * and Reiss, "Digital Dynamic Range Compressor Design" (JAES 2012).
 *
 * Per sample and channel:
 *   detector  v = key (the `key` port when `sidechain` is on, else the input),
 *             optionally high-passed (`keyhp`, 2nd-order Butterworth);
 *             level xG = 20 log10|v| (peak) or 10 log10(mean v^2) with a
 *             one-pole mean of time constant `window` (RMS);
 *   link      xG += link * (max over channels of xG - xG);
 *   computer  yG = xG + eq. 4 (soft knee of width `knee` around `threshold`);
 *             xL = xG - yG (gain reduction wanted, dB >= 0);
 *   smoothing smooth branching peak detector in the log domain (eq. 16):
 *             yL = a yL + (1 - a) xL with a = attack coefficient when
 *             xL > yL, else the release coefficient; a = exp(-1 / (tau fs)),
 *             so a step of the gain reduction reaches 63.2% of its final
 *             value (in dB) after exactly tau = `attack` (or `release`) ms;
 *   gain      g = 10^((makeup + auto * M - yL) / 20), M = xL at 0 dBFS
 *             (auto makeup: a 0 dBFS signal comes out at 0 dBFS);
 *   output    y = x * ((1 - mix) + mix * g).
 * Readout `gr`: the largest gain reduction of the block per channel (<= 0 dB,
 * makeup not included). */
#include "dsp_dynamics.h"
#include "mg_node.h"
#include "dsp_transpose.h"

#include <stddef.h>

enum {
    P_THRESH, P_RATIO, P_KNEE, P_ATTACK, P_RELEASE, P_MAKEUP, P_AUTO, P_DETECT,
    P_WINDOW, P_LINK, P_SIDECHAIN, P_KEYHP, P_KEYHPON, P_MIX,
};

static const mg_param_spec params[] = {
    {"threshold", "dB", "level above which the gain is reduced", -60.0f, 0.0f, -18.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"ratio", "", "compression ratio R:1 (50 = limiting)", 1.0f, 50.0f, 4.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"knee", "dB", "soft knee width, centred on the threshold (0 = hard knee)", 0.0f, 24.0f, 6.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"attack", "ms", "time constant of increasing gain reduction (63% of the change)", 0.05f, 500.0f, 10.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"release", "ms", "time constant of decreasing gain reduction (63% of the change)", 5.0f, 5000.0f, 100.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"makeup", "dB", "output gain after compression", -24.0f, 48.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"auto", "", "1 adds the makeup that brings a 0 dBFS level back to 0 dBFS", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 20.0f},
    {"detect", "", "level detection: 0 peak, 1 RMS", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"window", "ms", "RMS averaging time constant", 1.0f, 300.0f, 10.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"link", "%", "stereo link: 100 = all channels share the loudest channel's level", 0.0f, 100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"sidechain", "", "1 detects on the `key` input instead of the main input", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"keyhp", "Hz", "key high-pass frequency (12 dB/oct Butterworth)", 20.0f, 2000.0f, 100.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"keyhpon", "", "1 switches the key high-pass in", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"mix", "%", "dry/wet: 0 = input only, 100 = fully compressed (parallel compression)", 0.0f, 100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"key", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"gr", "dB", MG_MAP_DB, 1},
};

#define COMP_MAX_CH 8

/* gain-computer constants for threshold t, ratio r, knee w */
typedef struct {
    float t, s, hw, iw;
} comp_curve;

/* Line 0 holds what a ganged block derives from the parameters (kept while
 * they stay: mg_proc.pv_same) and the coefficients, line 1 the detector
 * states: a strip's usual block reads these two lines of its state and
 * none of its parameters (perf: blk_init's reads of the node's pv[] lines
 * missed, ~1 % of mix64). */
typedef struct {
    int ch;
    int blk_ok; /* the fields below hold blk_init's derivation of the last call's parameters */
    int mk_ok;  /* mk, mix and dry hold fused_group's derivation of them */
    unsigned char sidechain, rms, hpon, link_on, shared, nd, fus;
    comp_curve cs;
    float mk, mix, dry;
    float aa, ar, aw;     /* attack, release, RMS coefficients */
    /* smoothed gain reduction yL = v + e (dB >= 0), kept as the last
     * wanted reduction v and the error e (see process) */
    _Alignas(64) float v[COMP_MAX_CH];
    float e[COMP_MAX_CH];
    double sr;
    float attack_ms, release_ms, window_ms;
    float ms[COMP_MAX_CH]; /* RMS mean square */
    float hpz[COMP_MAX_CH][2];
    dyn_biquad hp;
    float hp_fc;
} comp_state;
_Static_assert(offsetof(comp_state, v) == 64 && offsetof(comp_state, e) == 96,
               "comp_state: the detector states in line 1");

static void update_coefs(comp_state *s)
{
    if (s->sr <= 0.0)
        return;
    s->aa = dyn_coef(s->attack_ms, s->sr);
    s->ar = dyn_coef(s->release_ms, s->sr);
    s->aw = dyn_coef(s->window_ms, s->sr);
}

static void on_param(void *st, int index, float v)
{
    comp_state *s = st;
    if (index == P_ATTACK)
        s->attack_ms = v;
    else if (index == P_RELEASE)
        s->release_ms = v;
    else if (index == P_WINDOW)
        s->window_ms = v;
    else
        return;
    update_coefs(s);
}

static void reset(void *st)
{
    comp_state *s = st;
    memset(s->v, 0, sizeof s->v);
    memset(s->e, 0, sizeof s->e);
    memset(s->ms, 0, sizeof s->ms);
    memset(s->hpz, 0, sizeof s->hpz);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    comp_state *s = st;
    s->ch = ctx->channels;
    s->blk_ok = 0;
    s->sr = ctx->sample_rate;
    update_coefs(s);
    s->hp_fc = -1.0f;
    reset(s);
    return 0;
}

static inline comp_curve curve(float t, float r, float w)
{
    comp_curve c = {t, 1.0f / r - 1.0f, 0.5f * w, w > 0.0f ? 0.5f / w : 0.0f};
    return c;
}

/* What a block's processing keeps between its phases. */
typedef struct {
    comp_state *s;
    const mg_proc *p;
    int sidechain, rms, hpon, curve_ramp, gain_ramp, link_on, shared, nd;
    int fus; /* fusable(): the block runs in fused_group when ganged */
    comp_curve cs;
    float grmax[COMP_MAX_CH];
} comp_blk;

/* One detector for one channel of its own input, no RMS or key filter, no
 * parameter moving: a ganged block runs in fused_group, a node a lane. */
static inline int fusable(const comp_blk *b)
{
    return b->nd == 1 && b->s->ch == 1 && !b->sidechain && !b->hpon && !b->rms &&
           !b->curve_ramp && !b->gain_ramp;
}

static void blk_derive(comp_blk *b, comp_state *s, const mg_proc *p);

/* A block's start: what it derives from its parameters, from the state
 * while they stay as the last call's (mg_proc.pv_same), inline (a strip's
 * usual block), else derived again (blk_derive). */
static inline void blk_init(comp_blk *b, comp_state *s, const mg_proc *p)
{
    b->s = s;
    b->p = p;
    memset(b->grmax, 0, sizeof b->grmax);
    if (p->pv_same && s->blk_ok) { /* no ramps, every value as last time */
        b->sidechain = s->sidechain, b->rms = s->rms, b->hpon = s->hpon;
        b->curve_ramp = b->gain_ramp = 0;
        b->link_on = s->link_on, b->shared = s->shared, b->nd = s->nd;
        b->fus = s->fus;
        b->cs = s->cs;
        return;
    }
    blk_derive(b, s, p);
}

static void blk_derive(comp_blk *b, comp_state *s, const mg_proc *p)
{
    const mg_pv *pv = p->pv;
    const int ch = s->ch;
    b->sidechain = pv[P_SIDECHAIN].value >= 0.5f;
    b->rms = pv[P_DETECT].value >= 0.5f;
    b->hpon = pv[P_KEYHPON].value >= 0.5f;
    b->curve_ramp = pv[P_THRESH].ramp || pv[P_RATIO].ramp || pv[P_KNEE].ramp;
    b->gain_ramp = b->curve_ramp || pv[P_MAKEUP].ramp || pv[P_AUTO].ramp || pv[P_MIX].ramp;
    b->link_on = ch > 1 && (pv[P_LINK].ramp || pv[P_LINK].value > 0.0f);
    b->shared = b->link_on && !pv[P_LINK].ramp && pv[P_LINK].value >= 100.0f;
    /* fully linked, all channels share one detector */
    b->nd = b->link_on && b->shared ? 1 : ch;
    b->cs = curve(pv[P_THRESH].value, pv[P_RATIO].value, pv[P_KNEE].value);
    b->fus = fusable(b);
    s->fus = (unsigned char)b->fus;
    s->sidechain = (unsigned char)b->sidechain, s->rms = (unsigned char)b->rms;
    s->hpon = (unsigned char)b->hpon, s->link_on = (unsigned char)b->link_on;
    s->shared = (unsigned char)b->shared, s->nd = (unsigned char)b->nd;
    s->cs = b->cs;
    s->blk_ok = !b->gain_ramp && !pv[P_LINK].ramp; /* (gain_ramp covers the curve's) */
    s->mk_ok = 0;
}

/* Steps 1-3 over frames [o, o+m): each detector's wanted gain reduction
 * xL >= 0 into lv[0..nd). */
MG_HOT static void chunk_levels(comp_blk *b, int o, int m, float (*lv)[DYN_CHUNK])
{
    comp_state *s = b->s;
    const mg_proc *p = b->p;
    const mg_pv *pv = p->pv;
    const int ch = s->ch;
    const float aw = s->aw;
    float tmp[DYN_CHUNK];
    if (b->hpon) {
        const float fc = pv[P_KEYHP].ramp ? pv[P_KEYHP].ramp[o] : pv[P_KEYHP].value;
        if (fc != s->hp_fc) {
            dyn_butter(&s->hp, 1, fc, s->sr);
            s->hp_fc = fc;
        }
    }
    if (ch == 1 && !b->hpon && !b->rms && !b->curve_ramp) {
        /* a mono peak detector with a steady curve (the usual channel
         * strip): steps 1 and 3 in one pass, the same expressions */
        const float *src = (b->sidechain ? p->in[1] : p->in[0]) + o;
        const comp_curve cs = b->cs;
        float *l = lv[0];
        for (int i = 0; i < m; i++)
            l[i] = -dyn_comp_gain(DYN_DB_PER_LOG2 * dyn_log2f(dyn_clean(src[i])), cs.t, cs.s, cs.hw,
                                  cs.iw);
        return;
    }
    /* 1. detector levels, dB */
    for (int c = 0; c < ch; c++) {
        const float *src = (b->sidechain ? p->in[ch + c] : p->in[c]) + o;
        float *l = lv[c];
        for (int i = 0; i < m; i++)
            tmp[i] = dyn_clean(src[i]);
        if (b->hpon)
            dyn_biquad_run(&s->hp, s->hpz[c], tmp, m);
        if (b->rms) {
            float q = s->ms[c];
            const float a = 1.0f - aw;
            for (int i = 0; i < m; i++) {
                q = aw * q + a * (tmp[i] * tmp[i]);
                tmp[i] = q;
            }
            s->ms[c] = isfinite(q) ? q : 0.0f;
            for (int i = 0; i < m; i++)
                l[i] = (0.5f * DYN_DB_PER_LOG2) * dyn_log2f(tmp[i]);
        } else {
            for (int i = 0; i < m; i++)
                l[i] = DYN_DB_PER_LOG2 * dyn_log2f(tmp[i]);
        }
    }
    /* 2. stereo link */
    if (b->link_on) {
        float mx[DYN_CHUNK];
        for (int i = 0; i < m; i++)
            mx[i] = lv[0][i];
        for (int c = 1; c < ch; c++)
            for (int i = 0; i < m; i++)
                mx[i] = dyn_max(mx[i], lv[c][i]);
        if (b->shared) {
            memcpy(lv[0], mx, sizeof(float) * (size_t)m);
        } else if (!pv[P_LINK].ramp) {
            const float k = 0.01f * pv[P_LINK].value;
            for (int c = 0; c < ch; c++)
                for (int i = 0; i < m; i++)
                    lv[c][i] += k * (mx[i] - lv[c][i]);
        } else {
            for (int c = 0; c < ch; c++)
                for (int i = 0; i < m; i++)
                    lv[c][i] += 0.01f * pv[P_LINK].ramp[o + i] * (mx[i] - lv[c][i]);
        }
    }
    /* 3. gain computer (eq. 4): wanted gain reduction xL >= 0 */
    for (int c = 0; c < b->nd; c++) {
        float *l = lv[c];
        if (!b->curve_ramp) {
            const comp_curve cs = b->cs;
            for (int i = 0; i < m; i++)
                l[i] = -dyn_comp_gain(l[i], cs.t, cs.s, cs.hw, cs.iw);
        } else {
            for (int i = 0; i < m; i++) {
                const comp_curve k = curve(mg_pv_at(&pv[P_THRESH], o + i), mg_pv_at(&pv[P_RATIO], o + i),
                                           mg_pv_at(&pv[P_KNEE], o + i));
                l[i] = -dyn_comp_gain(l[i], k.t, k.s, k.hw, k.iw);
            }
        }
    }
}

/* Output channels detector c drives. */
static inline void det_outputs(const comp_blk *b, int c, int *c0, int *c1)
{
    *c0 = b->shared ? 0 : c;
    *c1 = b->shared ? b->s->ch : c + 1;
}

/* The makeup (dB) while no gain parameter moves, manual plus auto. */
static inline float steady_makeup(const comp_blk *b)
{
    const mg_pv *pv = b->p->pv;
    const comp_curve cs = b->cs;
    return pv[P_MAKEUP].value - pv[P_AUTO].value * dyn_comp_gain(0.0f, cs.t, cs.s, cs.hw, cs.iw);
}

/* Write the outputs detector c drives over [o, o+m): input times the gain,
 * per sample from gain[] or, with gain NULL, the constant g. */
static inline void det_write(const comp_blk *b, int c, int o, int m, const float *gain, float g)
{
    int c0, c1;
    det_outputs(b, c, &c0, &c1);
    for (int k = c0; k < c1; k++) {
        const float *x = b->p->in[k] + o;
        float *out = b->p->out[k] + o;
        if (gain)
            for (int i = 0; i < m; i++)
                out[i] = dyn_clean(x[i]) * gain[i];
        else
            for (int i = 0; i < m; i++)
                out[i] = dyn_clean(x[i]) * g;
    }
}

/* Step 4, before the recursion, for detector c with levels l: returns 0 when
 * there is nothing to compress (the block is written at a constant gain);
 * else fills dv[0..m) with the level differences the recursion eats. */
MG_HOT static int det_pre(comp_blk *b, int c, int o, int m, const float *l, float *dv)
{
    comp_state *s = b->s;
    const mg_pv *pv = b->p->pv;
    const float vp = s->v[c];
    /* the differences the recursion eats, and (as dyn_peak) the largest
     * reduction wanted, in one pass */
    int32_t pk = (int32_t)dyn_bits(vp + s->e[c]);
    dv[0] = vp - l[0];
    for (int i = 0; i < m; i++) {
        const int32_t q = (int32_t)dyn_bits(l[i]);
        pk = q > pk ? q : pk;
        if (i > 0)
            dv[i] = l[i - 1] - l[i];
    }
    if (dyn_float((uint32_t)pk) == 0.0f && !b->gain_ramp) {
        const float mix = 0.01f * pv[P_MIX].value;
        det_write(b, c, o, m, NULL, (1.0f - mix) + mix * dyn_exp2f(steady_makeup(b) * DYN_LOG2_PER_DB));
        return 0;
    }
    s->v[c] = l[m - 1];
    return 1;
}

/* eq. 16, y[n] = a y[n-1] + (1 - a) v[n], as the error
 * e[n] = y[n] - v[n] = a (e[n-1] + v[n-1] - v[n]): the attack branch is
 * taken when v[n] > y[n-1], i.e. d < 0. The error form keeps the critical
 * path short (add, multiply, select) and settles on exactly v however long
 * the time constant. dv[i] in, e[i] out. */
MG_HOT static float det_recur(float e, float aa, float ar, float *dv, int m)
{
    for (int i = 0; i < m; i++) {
        const float d = e + dv[i];
        const float ea = aa * d, er = ar * d;
        e = d < 0.0f ? ea : er;
        dv[i] = e;
    }
    return e;
}

/* Step 4 after the recursion (e: its last value, dv[0..m): the
 * errors) and step 5: the gain and the output. */
MG_HOT static void det_post(comp_blk *b, int c, int o, int m, float *l, const float *dv,
                     float e)
{
    comp_state *s = b->s;
    const mg_pv *pv = b->p->pv;
    int c0, c1;
    det_outputs(b, c, &c0, &c1);
    float any;
    int written = 0;
    if (!b->gain_ramp && c1 == c0 + 1) {
        /* one output at a steady gain law (a mono strip): the reduction, its
         * peak (as dyn_peak), the gain and the output in one pass, the
         * expressions of the general path below */
        const float mk = steady_makeup(b);
        const float mix = 0.01f * pv[P_MIX].value;
        const float dry = 1.0f - mix;
        const float *x = b->p->in[c0] + o;
        float *out = b->p->out[c0] + o;
        int32_t pk = 0;
        for (int i = 0; i < m; i++) {
            const float r = l[i] + dv[i];
            const int32_t q = (int32_t)dyn_bits(r);
            pk = q > pk ? q : pk;
            out[i] = dyn_clean(x[i]) * (dry + mix * dyn_exp2f((mk - r) * DYN_LOG2_PER_DB));
        }
        any = dyn_float((uint32_t)pk);
        written = 1;
    } else {
        for (int i = 0; i < m; i++)
            l[i] += dv[i];
        any = dyn_peak(l, m, 0.0f);
    }
    if (!(fabsf(e) > 1e-6f)) /* settled (or NaN): exactly on v */
        e = 0.0f;
    if (!(fabsf(e) < 1e4f))
        e = 0.0f;
    s->e[c] = e;
    if (any > b->grmax[c])
        b->grmax[c] = any;
    if (written)
        return;
    /* l becomes the gain: wet part with makeup, plus the dry part */
    if (!b->gain_ramp) {
        const float mk = steady_makeup(b);
        const float mix = 0.01f * pv[P_MIX].value;
        const float dry = 1.0f - mix;
        for (int i = 0; i < m; i++)
            l[i] = dry + mix * dyn_exp2f((mk - l[i]) * DYN_LOG2_PER_DB);
    } else {
        for (int i = 0; i < m; i++) {
            const int j = o + i;
            const comp_curve k = curve(mg_pv_at(&pv[P_THRESH], j), mg_pv_at(&pv[P_RATIO], j),
                                       mg_pv_at(&pv[P_KNEE], j));
            const float mk = mg_pv_at(&pv[P_MAKEUP], j) -
                             mg_pv_at(&pv[P_AUTO], j) * dyn_comp_gain(0.0f, k.t, k.s, k.hw, k.iw);
            const float mix = 0.01f * mg_pv_at(&pv[P_MIX], j);
            l[i] = (1.0f - mix) + mix * dyn_exp2f((mk - l[i]) * DYN_LOG2_PER_DB);
        }
    }
    det_write(b, c, o, m, l, 0.0f);
}

/* One chunk of one node, its detectors one after the other. */
static void chunk_alone(comp_blk *b, int o, int m)
{
    comp_state *s = b->s;
    float lv[COMP_MAX_CH][DYN_CHUNK];
    float dv[DYN_CHUNK];
    chunk_levels(b, o, m, lv);
    for (int c = 0; c < b->nd; c++)
        if (det_pre(b, c, o, m, lv[c], dv))
            det_post(b, c, o, m, lv[c], dv, det_recur(s->e[c], s->aa, s->ar, dv, m));
}

/* The end of a block: a shared detector's state to every channel. */
static void blk_share(comp_blk *b)
{
    comp_state *s = b->s;
    if (b->shared)
        for (int c = 1; c < s->ch; c++) {
            s->v[c] = s->v[0];
            s->e[c] = s->e[0];
            b->grmax[c] = b->grmax[0];
        }
}

static void blk_finish(comp_blk *b)
{
    blk_share(b);
    for (int c = 0; c < b->s->ch; c++)
        b->p->readout[c] = dyn_exp2f(-b->grmax[c] * DYN_LOG2_PER_DB);
}

static void process(void *st, const mg_proc *p)
{
    comp_blk b;
    blk_init(&b, st, p);
    for (int o = 0; o < p->nframes; o += DYN_CHUNK)
        chunk_alone(&b, o, p->nframes - o < DYN_CHUNK ? p->nframes - o : DYN_CHUNK);
    blk_finish(&b);
}

/* Ganged: the recursion of step 4, the serial part, runs for COMP_LANES
 * single-detector nodes at once, one per lane of a float vector, with the
 * scalar code's expressions, both in MG_HOT code (so the output is
 * bit-identical); everything else runs per node. */
typedef float comp_v8f __attribute__((vector_size(32)));
typedef int32_t comp_v8i __attribute__((vector_size(32)));
#define COMP_LANES 8

MG_HOT static void recur_lanes(float *dv, int m, const float *e0, const float *aa,
                               const float *ar, float *e_out)
{
    comp_v8f e, va, vr;
    memcpy(&e, e0, sizeof e);
    memcpy(&va, aa, sizeof va);
    memcpy(&vr, ar, sizeof vr);
    const comp_v8f zero = {0};
    for (int i = 0; i < m; i++) {
        comp_v8f x;
        memcpy(&x, dv + i * COMP_LANES, sizeof x);
        const comp_v8f d = e + x;
        const comp_v8f ea = va * d, er = vr * d;
        const comp_v8i lt = d < zero;
        e = (comp_v8f)(((comp_v8i)ea & lt) | ((comp_v8i)er & ~lt));
        memcpy(dv + i * COMP_LANES, &e, sizeof e);
    }
    memcpy(e_out, &e, sizeof e);
}

/* Two groups of COMP_LANES at once: two independent recursions in flight
 * (the loop is latency-bound), each lane's expressions those of
 * recur_lanes. */
MG_HOT static void recur_lanes2(float *dv0, float *dv1, int m, const float *e0, const float *aa,
                                const float *ar, float *e_out)
{
    comp_v8f e, va, vr, f, wa, wr;
    memcpy(&e, e0, sizeof e), memcpy(&f, e0 + COMP_LANES, sizeof f);
    memcpy(&va, aa, sizeof va), memcpy(&wa, aa + COMP_LANES, sizeof wa);
    memcpy(&vr, ar, sizeof vr), memcpy(&wr, ar + COMP_LANES, sizeof wr);
    const comp_v8f zero = {0};
    for (int i = 0; i < m; i++) {
        comp_v8f x, y;
        memcpy(&x, dv0 + i * COMP_LANES, sizeof x);
        memcpy(&y, dv1 + i * COMP_LANES, sizeof y);
        const comp_v8f d = e + x, g = f + y;
        const comp_v8f ea = va * d, er = vr * d, fa = wa * g, fr = wr * g;
        const comp_v8i lt = d < zero, lu = g < zero;
        e = (comp_v8f)(((comp_v8i)ea & lt) | ((comp_v8i)er & ~lt));
        f = (comp_v8f)(((comp_v8i)fa & lu) | ((comp_v8i)fr & ~lu));
        memcpy(dv0 + i * COMP_LANES, &e, sizeof e);
        memcpy(dv1 + i * COMP_LANES, &f, sizeof f);
    }
    memcpy(e_out, &e, sizeof e);
    memcpy(e_out + COMP_LANES, &f, sizeof f);
}

/* An 8x8 transpose in registers: out[j][i] = in[i][j] (csrc/dsp_transpose.h). */
#define tr8x8 mg_tr8x8

/* The recursion's output dv[i * COMP_LANES + l] (frame-major) back into
 * rows[l][i] (lane-major), eight frames at a time, so det_post adds a row
 * with contiguous (vector) loads instead of a strided scalar walk. Pure data
 * movement: the values are unchanged. */
MG_HOT static void lanes_to_rows(const float *dv, int m, float (*rows)[DYN_CHUNK])
{
    int i = 0;
    for (; i + COMP_LANES <= m; i += COMP_LANES) {
        const float *q = dv + i * COMP_LANES;
        const float *const in[COMP_LANES] = {q, q + 8, q + 16, q + 24, q + 32, q + 40, q + 48, q + 56};
        float *const out[COMP_LANES] = {rows[0] + i, rows[1] + i, rows[2] + i, rows[3] + i,
                                        rows[4] + i, rows[5] + i, rows[6] + i, rows[7] + i};
        tr8x8(in, out);
    }
    for (; i < m; i++)
        for (int l = 0; l < COMP_LANES; l++)
            rows[l][i] = dv[i * COMP_LANES + l];
}

/* The way in: rows[l][i] (det_pre's contiguous output) into
 * dv[i * COMP_LANES + l] for the recursion. */
MG_HOT static void rows_to_lanes(float (*rows)[DYN_CHUNK], int m, float *dv)
{
    int i = 0;
    for (; i + COMP_LANES <= m; i += COMP_LANES) {
        float *q = dv + i * COMP_LANES;
        const float *const in[COMP_LANES] = {rows[0] + i, rows[1] + i, rows[2] + i, rows[3] + i,
                                             rows[4] + i, rows[5] + i, rows[6] + i, rows[7] + i};
        float *const out[COMP_LANES] = {q, q + 8, q + 16, q + 24, q + 32, q + 40, q + 48, q + 56};
        tr8x8(in, out);
    }
    for (; i < m; i++)
        for (int l = 0; l < COMP_LANES; l++)
            dv[i * COMP_LANES + l] = rows[l][i];
}

typedef struct {
    comp_blk *b;
    float l[DYN_CHUNK];
} comp_lane;

#define COMP_GROUPS 2 /* groups of COMP_LANES whose recursions run together */

static void run_lanes(comp_lane *ln, int nl, float (*d)[DYN_CHUNK], float (*dv)[DYN_CHUNK * COMP_LANES],
                      int o, int m)
{
    float e0[COMP_GROUPS * COMP_LANES] = {0}, aa[COMP_GROUPS * COMP_LANES] = {0};
    float ar[COMP_GROUPS * COMP_LANES] = {0}, e1[COMP_GROUPS * COMP_LANES];
    const int ng = (nl + COMP_LANES - 1) / COMP_LANES;
    for (int l = 0; l < nl; l++) {
        const comp_state *s = ln[l].b->s;
        e0[l] = s->e[0], aa[l] = s->aa, ar[l] = s->ar;
    }
    for (int l = nl; l < ng * COMP_LANES; l++) /* empty lanes: zeros in, zeros out */
        memset(d[l], 0, sizeof(float) * (size_t)m);
    for (int g = 0; g < ng; g++)
        rows_to_lanes(d + g * COMP_LANES, m, dv[g]);
    if (ng == 2)
        recur_lanes2(dv[0], dv[1], m, e0, aa, ar, e1);
    else
        recur_lanes(dv[0], m, e0, aa, ar, e1);
    for (int g = 0; g < ng; g++)
        lanes_to_rows(dv[g], m, d + g * COMP_LANES);
    for (int l = 0; l < nl; l++)
        det_post(ln[l].b, 0, o, m, ln[l].l, d[l], e1[l]);
}

/* The usual strip's compressor (mono, peak detection on its own input, no
 * key filter, no parameter moving: `fusable`) runs ganged, a node a lane of
 * an eight-float vector (one AVX register), in one pass over the block per
 * group of eight: eight frames of the eight inputs are loaded and
 * transposed in registers (csrc/dsp_transpose.h), each frame's vector goes
 * through the level, the gain computer, the difference, the recursion, the
 * gain and the output at once, with the detector states (last level,
 * recursion error, the two peaks) and the parameters in registers through
 * the block, and the eight output vectors are transposed back and stored.
 * No intermediate array is written. The recursion is latency-bound, but a
 * frame's other work (log2, exp2) is independent of it and overlaps it.
 *
 * Each lane's operations are the scalar path's (chunk_levels' mono path,
 * det_pre, det_recur, det_post's mono path), expression for expression and
 * in the same order, in MG_HOT code like them (the vector helpers below are
 * dsp_dynamics.h's functions written on vectors, each lane the scalar
 * function's IEEE operations), so the samples, states and readouts are the
 * same bit for bit (tests/test_gang.py; `python bench/callgrind_mix.py
 * --hash`). A lane whose block has nothing to compress (det_pre's
 * constant-gain case: every level and the smoothed reduction exactly 0)
 * goes through the same loop: its reduction stays exactly +0 there, so its
 * gain is det_pre's constant one; its detector state is left as det_pre
 * leaves it. */
#define COMP_FUSED 8
typedef comp_v8f comp_vf;
typedef comp_v8i comp_vi;
typedef uint32_t comp_vu __attribute__((vector_size(32)));
#define COMP_INLINE static inline __attribute__((always_inline))

/* dyn_sel, dyn_max, dyn_min and dyn_clean on vectors (c: a lane mask, all
 * ones or zero). Macros and pointer arguments: no 32-byte vector crosses a
 * function boundary (its ABI differs with and without AVX). */
#define V_SEL(c, a, b) ((comp_vf)(((comp_vi)(a) & (c)) | ((comp_vi)(b) & ~(c))))
#define V_CLEAN(x) V_SEL((comp_vf)((comp_vi)(x) & 0x7fffffff) <= 1e6f, x, (comp_vf){0})

/* Signed 32-bit max and min per lane, written per element so that GCC
 * turns them into one vpmaxsd / vpminsd (a mask blend in vector code is a
 * compare and a blend). */
COMP_INLINE void v_imax(comp_vi *r, const comp_vi *a, const comp_vi *b)
{
    comp_vi t;
    for (int l = 0; l < 8; l++)
        t[l] = (*a)[l] > (*b)[l] ? (*a)[l] : (*b)[l];
    *r = t;
}
COMP_INLINE void v_imin(comp_vi *r, const comp_vi *a, const comp_vi *b)
{
    comp_vi t;
    for (int l = 0; l < 8; l++)
        t[l] = (*a)[l] < (*b)[l] ? (*a)[l] : (*b)[l];
    *r = t;
}

/* *r = *a > *b ? *a : *b and *r = *a < *b ? *a : *b per lane (dyn_max and
 * dyn_min: V_SEL's values, NaN and signed zeros alike), written per element
 * so that GCC makes each one vmaxps / vminps, whose IEEE rule is exactly
 * that (the second operand when unordered or equal), instead of a compare
 * and a blend. */
COMP_INLINE void v_fmax(comp_vf *r, const comp_vf *a, const comp_vf *b)
{
    comp_vf t;
#pragma GCC unroll 1 /* left as a loop for the vectoriser (unrolled, it stays scalar) */
    for (int l = 0; l < 8; l++)
        t[l] = (*a)[l] > (*b)[l] ? (*a)[l] : (*b)[l];
    *r = t;
}
COMP_INLINE void v_fmin(comp_vf *r, const comp_vf *a, const comp_vf *b)
{
    comp_vf t;
#pragma GCC unroll 1 /* left as a loop for the vectoriser (unrolled, it stays scalar) */
    for (int l = 0; l < 8; l++)
        t[l] = (*a)[l] < (*b)[l] ? (*a)[l] : (*b)[l];
    *r = t;
}

/* *y = dyn_log2f(*x) per lane. Its unsigned clamps are signed ones here:
 * u < 2^31 once the sign is cleared, so both compare alike. */
COMP_INLINE void v_log2(comp_vf *y, const comp_vf *x)
{
    const comp_vi lo = (comp_vi){0} + 0x00800000, hi = (comp_vi){0} + 0x7f7fffff;
    comp_vi u = (comp_vi)*x & 0x7fffffff;
    v_imax(&u, &u, &lo);
    v_imin(&u, &u, &hi);
    const comp_vi e = (u - 0x3f3504f3) >> 23; /* no overflow: u - c is in int32 */
    const comp_vf m = (comp_vf)((comp_vu)u - ((comp_vu)e << 23));
    const comp_vf s = (m - 1.0f) / (m + 1.0f);
    const comp_vf s2 = s * s;
    const comp_vf p = 2.88539008177792681f +
                      s2 * (0.96179669392597560f + s2 * (0.57707801635558536f + s2 * 0.41219858311113240f));
    *y = __builtin_convertvector(e, comp_vf) + s * p;
}

/* *y = dyn_exp2f(*x) per lane */
COMP_INLINE void v_exp2(comp_vf *y, const comp_vf *x0)
{
    const comp_vf lo = (comp_vf){0} - 126.0f, hi = (comp_vf){0} + 126.0f;
    comp_vf x1, x;
    v_fmax(&x1, x0, &lo);
    v_fmin(&x, &x1, &hi);
    const comp_vi k = __builtin_convertvector(x + 126.5f, comp_vi) - 126;
    const comp_vf f = x - __builtin_convertvector(k, comp_vf);
    const comp_vf p =
        1.0f + f * (0.69314718055994531f +
                    f * (0.24022650695910071f +
                         f * (0.05550410866482158f +
                              f * (0.00961812910762848f + f * (0.00133335581464284f + f * 0.00015403530393381f)))));
    *y = p * (comp_vf)((comp_vu)(k + 127) << 23);
}

/* The lane parameters and detector states of a group, in vectors. */
typedef struct {
    comp_vf t, sl, hw, hw2, iw, mk, mix, dry, aa, ar;
    comp_vf vp, e;   /* last level, recursion error */
    comp_vi pk, pk2; /* peaks (as dyn_peak): wanted, then smoothed reduction */
} comp_gang;

/* A frame's three stages on the eight lanes. Within a tile of eight frames
 * each stage runs for all eight frames before the next one: the level and
 * gain stages are long dependency chains with no dependency between frames,
 * and only the recursion carries one from frame to frame, so the core has
 * eight independent chains in flight where it would otherwise wait out each
 * frame's whole latency (a frame at a time ran slower natively than the
 * five-pass form it replaced, with fewer instructions). */

/* chunk_levels' mono path: *x becomes dyn_clean(*x), *L the wanted
 * reduction -dyn_comp_gain(level) */
COMP_INLINE void gang_level(const comp_gang *g, comp_vf *x, comp_vf *L)
{
    const comp_vf zero = {0};
    const comp_vf xc = V_CLEAN(*x);
    *x = xc;
    comp_vf lg;
    v_log2(&lg, &xc);
    const comp_vf lv = DYN_DB_PER_LOG2 * lg;
    const comp_vf d0 = lv - g->t;
    const comp_vf u0 = d0 + g->hw;
    comp_vf u1, u, dkp;
    v_fmax(&u1, &u0, &zero);
    v_fmin(&u, &u1, &g->hw2);
    const comp_vf dk = d0 - g->hw;
    v_fmax(&dkp, &dk, &zero);
    *L = -(g->sl * (u * u * g->iw + dkp));
}

/* det_pre's difference and peak, and det_recur: *r becomes L + e (det_post's
 * smoothed reduction) */
COMP_INLINE void gang_recur(comp_gang *g, const comp_vf *L, comp_vf *r)
{
    const comp_vf zero = {0};
    const comp_vf dv = g->vp - *L;
    g->vp = *L;
    const comp_vi q = (comp_vi)*L;
    v_imax(&g->pk, &q, &g->pk);
    const comp_vf d = g->e + dv;
    const comp_vf ea = g->aa * d, er = g->ar * d;
    g->e = V_SEL(d < zero, ea, er);
    *r = *L + g->e;
}

/* det_post's mono path: its peak, the gain and the output (*x: the clean
 * input in, the output out) */
COMP_INLINE void gang_out(comp_gang *g, const comp_vf *r, comp_vf *x)
{
    const comp_vi q2 = (comp_vi)*r;
    v_imax(&g->pk2, &q2, &g->pk2);
    const comp_vf a = (g->mk - *r) * DYN_LOG2_PER_DB;
    comp_vf ex;
    v_exp2(&ex, &a);
    *x = *x * (g->dry + g->mix * ex);
}

/* Frames [o, o+m) of nl <= COMP_FUSED fusable nodes. */
MG_HOT static void fused_group(comp_blk *const *bl, int nl, int o, int m)
{
    static const float zrow[DYN_CHUNK]; /* an empty lane's input */
    float sink[DYN_CHUNK];              /* and its output */
    float t[8], sl[8], hw[8], iw[8], mk[8], mix[8], dry[8], aa[8], ar[8], vp[8], e[8];
    const float *in[8];
    float *out[8];
    for (int l = 0; l < COMP_FUSED; l++) {
        if (l < nl) {
            const comp_blk *b = bl[l];
            comp_state *st = b->s;
            t[l] = b->cs.t, sl[l] = b->cs.s, hw[l] = b->cs.hw, iw[l] = b->cs.iw;
            if (!st->mk_ok) { /* derived here, in MG_HOT code as det_post does */
                st->mk = steady_makeup(b);
                st->mix = 0.01f * b->p->pv[P_MIX].value;
                st->dry = 1.0f - st->mix;
                st->mk_ok = st->blk_ok;
            }
            mk[l] = st->mk, mix[l] = st->mix, dry[l] = st->dry;
            aa[l] = st->aa, ar[l] = st->ar, vp[l] = st->v[0], e[l] = st->e[0];
            in[l] = b->p->in[0] + o;
            out[l] = b->p->out[0] + o;
        } else { /* an empty lane: zeros through, nothing kept */
            t[l] = sl[l] = hw[l] = iw[l] = mk[l] = mix[l] = aa[l] = ar[l] = vp[l] = e[l] = 0.0f;
            dry[l] = 1.0f;
            in[l] = zrow;
            out[l] = sink;
        }
    }
    comp_gang g;
    memcpy(&g.t, t, sizeof g.t), memcpy(&g.sl, sl, sizeof g.sl);
    memcpy(&g.hw, hw, sizeof g.hw), memcpy(&g.iw, iw, sizeof g.iw);
    g.hw2 = 2.0f * g.hw; /* dyn_comp_gain's 2 hw: exact */
    memcpy(&g.mk, mk, sizeof g.mk), memcpy(&g.mix, mix, sizeof g.mix);
    memcpy(&g.dry, dry, sizeof g.dry), memcpy(&g.aa, aa, sizeof g.aa);
    memcpy(&g.ar, ar, sizeof g.ar), memcpy(&g.vp, vp, sizeof g.vp);
    memcpy(&g.e, e, sizeof g.e);
    g.pk = (comp_vi)(g.vp + g.e); /* det_pre's start: dyn_bits(v + e) */
    g.pk2 = (comp_vi){0};
    int f0 = 0;
    for (; f0 + 8 <= m; f0 += 8) {
        mg_t8f x[8], r[8];
        mg_tr8x8_load(in, f0, x);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            gang_level(&g, &x[j], &r[j]);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            gang_recur(&g, &r[j], &r[j]);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            gang_out(&g, &r[j], &x[j]);
        mg_tr8x8_store(x, out, f0);
    }
    for (; f0 < m; f0++) { /* the last frames of a chunk not a multiple of 8 */
        comp_vf x, r;
        for (int l = 0; l < 8; l++)
            x[l] = in[l][f0];
        gang_level(&g, &x, &r);
        gang_recur(&g, &r, &r);
        gang_out(&g, &r, &x);
        for (int l = 0; l < 8; l++)
            out[l][f0] = x[l];
    }
    int32_t pk[8], pk2[8];
    memcpy(vp, &g.vp, sizeof vp), memcpy(e, &g.e, sizeof e);
    memcpy(pk, &g.pk, sizeof pk), memcpy(pk2, &g.pk2, sizeof pk2);
    /* the detector states: det_pre's (nothing to compress: unchanged) or det_post's */
    for (int l = 0; l < nl; l++) {
        comp_blk *b = bl[l];
        if (dyn_float((uint32_t)pk[l]) == 0.0f)
            continue;
        b->s->v[0] = vp[l];
        float el = e[l];
        if (!(fabsf(el) > 1e-6f)) /* settled (or NaN): exactly on v */
            el = 0.0f;
        if (!(fabsf(el) < 1e4f))
            el = 0.0f;
        b->s->e[0] = el;
        const float any = dyn_float((uint32_t)pk2[l]);
        if (any > b->grmax[0])
            b->grmax[0] = any;
    }
}

static void process_many(void *const *states, const mg_proc *procs, int k)
{
    comp_blk b[MG_MAX_GANG];
    comp_lane ln[COMP_GROUPS * COMP_LANES];
    float dv[COMP_GROUPS][DYN_CHUNK * COMP_LANES];
    float d[COMP_GROUPS * COMP_LANES][DYN_CHUNK]; /* each lane's level differences, then its errors */
    for (int j = 0; j < k; j++)
        blk_init(&b[j], states[j], &procs[j]);
    const int n = procs[0].nframes;
    for (int o = 0; o < n; o += DYN_CHUNK) {
        const int m = n - o < DYN_CHUNK ? n - o : DYN_CHUNK;
        int nl = 0, nf = 0;
        comp_blk *fl[COMP_FUSED];
        for (int j = 0; j < k; j++) {
            if (b[j].fus) {
                fl[nf++] = &b[j];
                if (nf == COMP_FUSED) {
                    fused_group(fl, nf, o, m);
                    nf = 0;
                }
                continue;
            }
            if (b[j].nd != 1) {
                chunk_alone(&b[j], o, m);
                continue;
            }
            float (*lv)[DYN_CHUNK] = &ln[nl].l;
            if (b[j].s->ch > 1) { /* linked: the levels of every channel first */
                float all[COMP_MAX_CH][DYN_CHUNK];
                chunk_levels(&b[j], o, m, all);
                memcpy(ln[nl].l, all[0], sizeof(float) * (size_t)m);
            } else {
                chunk_levels(&b[j], o, m, lv);
            }
            if (!det_pre(&b[j], 0, o, m, ln[nl].l, d[nl]))
                continue;
            ln[nl++].b = &b[j];
            if (nl == COMP_GROUPS * COMP_LANES) {
                run_lanes(ln, nl, d, dv, o, m);
                nl = 0;
            }
        }
        if (nl)
            run_lanes(ln, nl, d, dv, o, m);
        if (nf)
            fused_group(fl, nf, o, m);
    }
    /* blk_finish for every member, the readouts' exp2 as one loop that GCC
     * vectorises (this function is not MG_HOT: baseline code like
     * process's, without FMA, so each value is blk_finish's bit for bit) */
    float gr[MG_MAX_GANG * COMP_MAX_CH];
    float *ro[MG_MAX_GANG * COMP_MAX_CH];
    int nr = 0;
    for (int j = 0; j < k; j++) {
        blk_share(&b[j]);
        for (int c = 0; c < b[j].s->ch; c++) {
            gr[nr] = -b[j].grmax[c] * DYN_LOG2_PER_DB;
            ro[nr++] = &b[j].p->readout[c];
        }
    }
    for (int i = 0; i < nr; i++)
        gr[i] = dyn_exp2f(gr[i]);
    for (int i = 0; i < nr; i++)
        *ro[i] = gr[i];
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"auto", "off|on"},
    {"detect", "peak|RMS"},
    {"sidechain", "main|key"},
    {"keyhpon", "off|on"},
};

const mg_node_type mg_type_compressor = {
    .name = "compressor",
    .doc = "Feed-forward log-domain compressor (Giannoulis, Massberg, Reiss 2012): soft-knee gain "
           "computer (eq. 4), smooth branching peak detector on the gain reduction (attack/release "
           "are 63% time constants), peak or RMS detection, stereo link, side-chain `key` input "
           "with high-pass, makeup (manual and auto), dry/wet mix; readout `gr`.",
    .default_channels = 1,
    .min_channels = 1,
    .max_channels = COMP_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(comp_state),
    .prepare = prepare,
    .process = process,
    .process_many = process_many,
    .reset = reset,
    .on_param = on_param,
};
