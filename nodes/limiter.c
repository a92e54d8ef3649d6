/* limiter: true-peak look-ahead brickwall limiter.
 *
 * Detection runs on a 16x-oversampled reading of the input by a long
 * interpolator (64 taps per phase, see tpdet below) plus a margin for content
 * near fs/2 that no interpolator of that length reads: at every input sample
 * the needed gain is r = min(1, ceiling / estimate). (The BS.1770-4 Annex 2
 * filter of the meter node, 4x and 12 taps, reads up to 0.3 dB low at
 * 16 kHz and more towards fs/2: a limiter holding it at the ceiling let the
 * true peak over, as an independent 8x measurement sees it.) The audio is
 * delayed by D = 5 ms + 64 samples (fixed: the reported latency): the
 * detector's delay (32) and the reach before a peak (32). With
 * A = `lookahead` (samples, <= 5 ms):
 *   r is delayed by 5 ms - A + 1 samples (read as the minimum of 3
 *     neighbours, so that a changing A never skips one),
 *   h  = minimum of that over the last A + 32 + 96 + 2 samples (a sliding
 *     minimum, van Herk / Gil-Werman: per chunk of at most 64 samples, the
 *     minimum of the history part of each window by one backward scan, of
 *     the chunk part by one forward scan),
 *   h2 = h with an exponential release (instant attack, never above h),
 *   g  = moving average of h2 over the last A samples.
 * Every gain value applied from 32 samples before to 96 samples after a peak
 * is then at most the gain that peak needs, so the output's true peak stays
 * at the ceiling (a gain moving within the interpolation's reach of a peak
 * would move the peak); the gain is a smooth ramp (the moving average) that
 * starts A samples before that reach and holds until it has passed. Below
 * the ceiling g is exactly 1: the output is the input delayed by D samples.
 *
 * `lookahead` moves one sample per sample towards a new setting (no gain
 * step) and never changes the latency. `link` (%) mixes each channel's
 * needed gain towards the smallest over the channels (100 %: one gain for
 * all, the stereo image holds). */
#include <float.h>
#include <stdlib.h>

#include "mg_node.h"

/* The detector: 16x polyphase interpolation by a Kaiser-windowed sinc
 * (beta 5, cutoff fs/2, 64 taps per phase: 32 input samples either side).
 * At input time n its 16 phases read the signal at n - 32 + k/16, k = 0..15
 * (phase 0 is the sample x[n-32] itself), so consecutive estimates cover the
 * whole time axis. Between its points it reads at most 1 - cos(pi f / 16 fs)
 * low: 0.03 dB at 20 kHz, 0.04 dB at fs/2 (8x would miss 0.12 dB at 20 kHz).
 *
 * Near fs/2 no filter of finite length reads the peaks: the sinc's tails
 * decay as 1/k, and content at fs/2 - d needs about fs / (4 d) samples either
 * side to be interpolated: white noise read by this filter comes out up to
 * 0.3 dB low over a second, and single peaks up to 0.9 dB low (64 taps per
 * phase; 128 do little better: the error falls as 1/sqrt(length)). So the
 * estimate gets a margin proportional to the signal's near-Nyquist content:
 * TP_MARGIN x the envelope (instant attack, 128-sample decay) of x
 * high-passed at 0.917 x fs/2 (22 kHz at 48 kHz; 63 taps, the same delay).
 * With 1.0 no peak of 20 seeds of white noise is read more than 0.02 dB low
 * (0.8 left 0.16 dB). Music with nothing above ~20 kHz gets no margin;
 * full-band noise comes out 0.1-0.9 dB under the ceiling, clipped squares
 * 0.4 dB, a 22 kHz tone 3.5 dB, a 23 kHz tone 5.9 dB. */
#define LIM_PI 3.14159265358979323846
#define TP_TAPS 64
#define TP_PHASES 16
#define TP_DELAY 32    /* input samples from x[n] to the first point it reads */
#define TP_HP_CUT 0.4583 /* high-pass cutoff for the margin, in fs (22 kHz / 48 kHz) */
#define TP_MARGIN 1.0f
#define TP_ENV_DECAY 128.0 /* samples */
/* The gain in force at an output sample is at most the gain needed by every
 * peak from REACH_AFTER samples before it to REACH_BEFORE samples after it:
 * the interpolation of a sample is mostly made of its +-32 neighbours, so a
 * gain that moves within that reach of a peak would move the peak. */
#define REACH_BEFORE 32 /* look-ahead: adds to the latency */
#define REACH_AFTER 96  /* hold: free */

/* 16 lanes of float, 16 samples at a time (GCC vector extension: one
 * AVX-512 register in the x86-64-v4 clone, two AVX ones in the v3 clone, four
 * SSE ones in the baseline) */
#define TP_LANES 16
#define TP_HALF (TP_TAPS / 2)
typedef float tp_v8 __attribute__((vector_size(4 * TP_LANES)));
typedef int32_t tp_i8 __attribute__((vector_size(4 * TP_LANES)));

/* The interpolator is a symmetric prototype cut into phases, so phase 16 - k
 * is phase k reversed: h_{16-k}[j] = h_k[63 - j]. With a_j = x[n - j],
 * b_j = x[n - 63 + j] (the window read from both ends), p_j = a_j + b_j and
 * m_j = a_j - b_j (j < 32), and each phase's taps split into their symmetric
 * and antisymmetric halves e_k[j] = (h_k[j] + h_k[63 - j]) / 2 and
 * o_k[j] = (h_k[j] - h_k[63 - j]) / 2:
 *   phase k      = S_k + D_k,  phase 16 - k = S_k - D_k,
 *   S_k = sum e_k[j] p_j,  D_k = sum o_k[j] m_j  (j < 32),
 * so a pair of phases costs 64 multiply-adds instead of 128, and phase 8
 * (its own mirror image, o_8 = 0) 32. The detector wants the larger magnitude
 * of the pair, max(|S + D|, |S - D|) = |S| + |D| (also in floating point:
 * rounding to nearest is symmetric in sign). */
typedef struct {
    /* per tap pair j: ea = e_1..e_4, o_1..o_4; eb = e_5..e_8, o_5..o_7, 0 */
    float ea[TP_HALF][8], eb[TP_HALF][8];
    /* the margin's high-pass, tap j on x[n - j] */
    float hp[TP_TAPS];
    float env_dec;
} tpdet_coefs;

/* Per channel: the last 63 input samples, then room for a block. */
typedef struct {
    float buf[TP_TAPS - 1 + MG_MAX_BLOCK];
    float env;
} tpdet;

static double bessel_i0(double x)
{
    double s = 1.0, t = 1.0;
    for (int k = 1; k < 60; k++) {
        t *= (x / (2.0 * k)) * (x / (2.0 * k));
        s += t;
        if (t < 1e-17 * s)
            break;
    }
    return s;
}

static double sincd(double x)
{
    return fabs(x) < 1e-12 ? 1.0 : sin(LIM_PI * x) / (LIM_PI * x);
}

/* [control] The interpolator and the high-pass (sample-rate independent). */
static void tpdet_design(tpdet_coefs *t)
{
    const int m = TP_TAPS * TP_PHASES, mid = m / 2;
    const double beta = 5.0, i0b = bessel_i0(beta);
    memset(t, 0, sizeof *t);
    for (int k = 1; k <= TP_PHASES / 2; k++) {
        double h[TP_TAPS], sum = 0.0;
        for (int j = 0; j < TP_TAPS; j++) {
            const int idx = TP_PHASES * j + k;
            const double u = (double)(idx - mid) / mid;
            const double w = bessel_i0(beta * sqrt(fmax(0.0, 1.0 - u * u))) / i0b;
            h[j] = sincd((double)(idx - mid) / TP_PHASES) * w;
            sum += h[j];
        }
        for (int j = 0; j < TP_TAPS; j++)
            h[j] /= sum; /* each phase passes DC at 1 */
        for (int j = 0; j < TP_HALF; j++) {
            const double e = 0.5 * (h[j] + h[TP_TAPS - 1 - j]), o = 0.5 * (h[j] - h[TP_TAPS - 1 - j]);
            if (k <= 4) {
                t->ea[j][k - 1] = (float)e;
                t->ea[j][k + 3] = (float)o;
            } else {
                t->eb[j][k - 5] = (float)e; /* e_8 at [3] */
                if (k < 8)
                    t->eb[j][k - 1] = (float)o;
            }
        }
    }
    /* high-pass: the sample at the centre minus a 63-tap Kaiser low-pass */
    double lp[TP_TAPS], sum = 0.0;
    const double bh = 6.0, i0h = bessel_i0(bh);
    lp[0] = 0.0;
    for (int j = 1; j < TP_TAPS; j++) {
        const double u = (double)(j - TP_DELAY) / (TP_DELAY);
        const double w = bessel_i0(bh * sqrt(fmax(0.0, 1.0 - u * u))) / i0h;
        lp[j] = 2.0 * TP_HP_CUT * sincd(2.0 * TP_HP_CUT * (j - TP_DELAY)) * w;
        sum += lp[j];
    }
    for (int j = 0; j < TP_TAPS; j++)
        t->hp[j] = (float)((j == TP_DELAY ? 1.0 : 0.0) - lp[j] / sum);
    t->env_dec = (float)exp(-1.0 / TP_ENV_DECAY);
}

/* |v| and the lane-wise max (exact, by masks) on vectors of type VT with
 * integer lanes IT; macros, so that no 32-byte vector crosses a function
 * boundary (its ABI differs with and without AVX) */
#define TPDET_ABS(IT, VT, v) ((VT)((IT)(v) & 0x7fffffff))
#define TPDET_MAX(IT, VT, a, b) ((VT)(((IT)(a) & ((a) > (b))) | ((IT)(b) & ~((a) > (b)))))

/* Eight-lane vectors: one AVX register. The v3 (AVX2) clone runs the
 * detector on these: with the sixteen-lane type each vector is two AVX
 * registers, the 9 accumulators of a pass take 18 of the 16 there are, and
 * GCC 12 spills every one through the stack and back by 64-bit halves at
 * every tap pair (about 6x the instructions). The lanes' expressions are the
 * same whatever the width, so both paths give the same bits. */
typedef float tp_v8n __attribute__((vector_size(32)));
typedef int32_t tp_i8n __attribute__((vector_size(32)));

/* 1 when the CPU has AVX-512 (sixteen floats in a register): set at load.
 * MIXGRAPH_TP_NARROW=1 in the environment takes the eight-lane path on any
 * CPU (tests/test_limiter*.py compare the two). */
static int tp_wide;
__attribute__((constructor)) static void tp_cpu(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    tp_wide = __builtin_cpu_supports("avx512f");
#endif
    const char *narrow = getenv("MIXGRAPH_TP_NARROW");
    if (narrow && narrow[0] == '1')
        tp_wide = 0;
}

/* One group of L samples from w0 (w0[-j] = x[i0 + lane - j]): the peak
 * estimates into est, the margin's high-pass into acc. In two passes over
 * the tap pairs (each with at most 9 accumulators, registers in either
 * width's clone): phases 1..4 and 12..15; then 5..11 and the high-pass. */
#define TPDET_GROUP(VT, IT, w0, co, est, acc)                                                     \
    do {                                                                                          \
        VT s1 = {0.0f}, s2 = {0.0f}, s3 = {0.0f}, s4 = {0.0f};                                    \
        VT d1 = {0.0f}, d2 = {0.0f}, d3 = {0.0f}, d4 = {0.0f};                                    \
        for (int j = 0; j < TP_HALF; j++) {                                                       \
            VT va, vb;                                                                            \
            memcpy(&va, (w0) - j, sizeof va);                                                     \
            memcpy(&vb, (w0) - (TP_TAPS - 1) + j, sizeof vb);                                     \
            const VT pj = va + vb, mj = va - vb;                                                  \
            const float *c = (co)->ea[j];                                                         \
            s1 += c[0] * pj, s2 += c[1] * pj, s3 += c[2] * pj, s4 += c[3] * pj;                   \
            d1 += c[4] * mj, d2 += c[5] * mj, d3 += c[6] * mj, d4 += c[7] * mj;                   \
        }                                                                                         \
        VT m = TPDET_ABS(IT, VT, s1) + TPDET_ABS(IT, VT, d1);                                     \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s2) + TPDET_ABS(IT, VT, d2));                  \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s3) + TPDET_ABS(IT, VT, d3));                  \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s4) + TPDET_ABS(IT, VT, d4));                  \
        VT s5 = {0.0f}, s6 = {0.0f}, s7 = {0.0f}, s8 = {0.0f};                                    \
        VT d5 = {0.0f}, d6 = {0.0f}, d7 = {0.0f}, ha = {0.0f}, hb = {0.0f};                       \
        for (int j = 0; j < TP_HALF; j++) {                                                       \
            VT va, vb;                                                                            \
            memcpy(&va, (w0) - j, sizeof va);                                                     \
            memcpy(&vb, (w0) - (TP_TAPS - 1) + j, sizeof vb);                                     \
            const VT pj = va + vb, mj = va - vb;                                                  \
            const float *c = (co)->eb[j];                                                         \
            s5 += c[0] * pj, s6 += c[1] * pj, s7 += c[2] * pj, s8 += c[3] * pj;                   \
            d5 += c[4] * mj, d6 += c[5] * mj, d7 += c[6] * mj;                                    \
            ha += (co)->hp[j] * va, hb += (co)->hp[TP_TAPS - 1 - j] * vb;                         \
        }                                                                                         \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s5) + TPDET_ABS(IT, VT, d5));                  \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s6) + TPDET_ABS(IT, VT, d6));                  \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s7) + TPDET_ABS(IT, VT, d7));                  \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, s8));                                          \
        VT x0;                                                                                    \
        memcpy(&x0, (w0) - TP_DELAY, sizeof x0); /* phase 0: the sample itself */                 \
        m = TPDET_MAX(IT, VT, m, TPDET_ABS(IT, VT, x0));                                          \
        const VT hp = ha + hb;                                                                    \
        memcpy((est), &m, sizeof m);                                                              \
        memcpy((acc), &hp, sizeof hp);                                                            \
    } while (0)

/* Run n <= MG_MAX_BLOCK input samples: est[i] = the peak estimate (absolute
 * value, margin not yet included: tpdet_margin adds it) over [i-32, i-31],
 * acc[i] the margin's high-pass output. Non-finite input samples count as 0;
 * the returned pointer holds the input as used (n samples). */
_Static_assert(MG_MAX_BLOCK % TP_LANES == 0, "tpdet_run rounds n up to TP_LANES");

MG_HOT static const float *tpdet_run(tpdet *restrict t, const tpdet_coefs *restrict co,
                                   const float *restrict x, int n, float *restrict est,
                                   float *restrict acc)
{
    float *restrict b = t->buf + TP_TAPS - 1;
    for (int i = 0; i < n; i++) {
        const float v = x[i];
        b[i] = fabsf(v) <= FLT_MAX ? v : 0.0f;
    }
    /* TP_LANES (or 8) samples at a time; n is rounded up to that
     * (MG_MAX_BLOCK is a multiple of it): the extra results read stale
     * samples and are not used. */
    if (tp_wide)
        for (int i0 = 0; i0 < n; i0 += TP_LANES)
            TPDET_GROUP(tp_v8, tp_i8, b + i0, co, est + i0, acc + i0);
    else
        for (int i0 = 0; i0 < n; i0 += 8)
            TPDET_GROUP(tp_v8n, tp_i8n, b + i0, co, est + i0, acc + i0);
    memmove(t->buf, t->buf + n, (TP_TAPS - 1) * sizeof(float));
    return b; /* valid until the next call: the caller uses it at once */
}

/* The margin: est[i] += TP_MARGIN x the envelope of |acc| (instant attack,
 * TP_ENV_DECAY decay). The envelope is a serial recursion (a multiply and a
 * max a sample), so two channels' recursions run side by side (t1 non-NULL),
 * each with the same operations as alone. */
MG_HOT static void tpdet_margin(tpdet *restrict t0, tpdet *restrict t1, const float *acc0,
                                const float *acc1, float *restrict est0, float *restrict est1,
                                int n, float dec)
{
    float e0 = t0->env;
    if (!t1) {
        for (int i = 0; i < n; i++) {
            const float a0 = fabsf(acc0[i]);
            e0 *= dec;
            e0 = a0 > e0 ? a0 : e0;
            est0[i] += TP_MARGIN * e0;
        }
        t0->env = e0 < 1e-30f ? 0.0f : e0;
        return;
    }
    float e1 = t1->env;
    for (int i = 0; i < n; i++) {
        const float a0 = fabsf(acc0[i]), a1 = fabsf(acc1[i]);
        e0 *= dec;
        e1 *= dec;
        e0 = a0 > e0 ? a0 : e0;
        e1 = a1 > e1 ? a1 : e1;
        est0[i] += TP_MARGIN * e0;
        est1[i] += TP_MARGIN * e1;
    }
    t0->env = e0 < 1e-30f ? 0.0f : e0;
    t1->env = e1 < 1e-30f ? 0.0f : e1;
}

enum { P_CEILING, P_LOOKAHEAD, P_RELEASE, P_LINK };

#define LIM_MAX_LOOKAHEAD_MS 5.0

static const mg_param_spec params[] = {
    {.name = "ceiling", .unit = "dB", .doc = "highest true-peak level of the output (dBTP)",
     .min = -24.0f, .max = 0.0f, .def = -1.0f, .map = MG_MAP_DB, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
    {.name = "lookahead", .unit = "ms",
     .doc = "attack ramp before a peak, within the fixed 5 ms look-ahead (latency unchanged)",
     .min = 0.1f, .max = 5.0f, .def = 5.0f, .map = MG_MAP_LOG, .taper = MG_TAPER_LOG,
     .smooth_ms = 0.0f},
    {.name = "release", .unit = "ms", .doc = "gain recovery time constant",
     .min = 1.0f, .max = 2000.0f, .def = 60.0f, .map = MG_MAP_LOG, .taper = MG_TAPER_LOG,
     /* not smoothed (as the compressor's attack/release): a time constant that
      * steps makes no click, and the coefficient is derived once a call from
      * the value, so a 20 ms ramp of it stepped at call boundaries (the block
      * size's: 2.6e-5..1.7e-4 apart between renders at 64 and 100 frames) */
     .smooth_ms = 0.0f},
    {.name = "link", .unit = "%", .doc = "channel link: 100 applies one gain to all channels",
     .min = 0.0f, .max = 100.0f, .def = 100.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"gr", "dB", MG_MAP_DB, 1}, /* gain applied: 0 dB = no reduction */
};

#define LIM_MAX_CH 64
#define LIM_FIX 1099511627776.0 /* 2^40: the moving average sums integers (no drift) */
#define LIM_ONES_CAP (1 << 30)

/* The needed gains and their 3-sample minima are kept as linear histories:
 * rr[0 .. rr_h) holds the needed gains of the rr_h samples before the block,
 * rr[rr_h ..] the block's; rc likewise with rc_h samples (the longest min-hold
 * window but one). After a block each history moves down by the block. */
typedef struct {
    float *delay;  /* dmask + 1 */
    int64_t *avg;  /* amask + 1: the h2 history, in 2^-40 units */
    float *rr;     /* rr_h + MG_MAX_BLOCK: the needed gains, for the detection delay */
    float *rc;     /* rc_h + MG_MAX_BLOCK: their 3-sample minima, for the min-hold */
    double h2;
    int64_t sum;
    int ones;      /* how many of the latest rr values are 1 (capped) */
    int rc_ones;   /* how many of the latest rc values are 1 (capped) */
    tpdet tp;
} lim_chan;

typedef struct {
    int channels;
    double sr;
    int amax, dlat;              /* samples: max look-ahead, delay D */
    int a, a_target;             /* current / wanted attack (moving-average length) */
    uint32_t dmask, amask;
    int rr_h, rc_h;              /* history lengths of rr and rc */
    uint32_t t;                  /* sample counter (wraps; used modulo the ring sizes) */
    float *mem;
    float *est;                  /* channels x MG_MAX_BLOCK: true-peak estimates */
    float *acc;                  /* channels x MG_MAX_BLOCK: the margin's high-pass */
    tpdet_coefs co;
    lim_chan ch[LIM_MAX_CH];
} lim_state;

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static void release(void *st)
{
    lim_state *s = st;
    free(s->mem);
    free(s->est);
    free(s->acc);
    s->mem = NULL;
    s->est = NULL;
    s->acc = NULL;
}

static void reset(void *st)
{
    lim_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        lim_chan *k = &s->ch[c];
        memset(k->delay, 0, (s->dmask + 1) * sizeof *k->delay);
        for (uint32_t i = 0; i <= s->amask; i++)
            k->avg[i] = (int64_t)LIM_FIX;
        /* a history of 1 (no gain needed) reads as none: every gain is <= 1 */
        for (int i = 0; i < s->rr_h + MG_MAX_BLOCK; i++)
            k->rr[i] = 1.0f;
        for (int i = 0; i < s->rc_h + MG_MAX_BLOCK; i++)
            k->rc[i] = 1.0f;
        k->h2 = 1.0;
        k->sum = (int64_t)s->a * (int64_t)LIM_FIX;
        k->ones = LIM_ONES_CAP;
        k->rc_ones = LIM_ONES_CAP;
        memset(&k->tp, 0, sizeof k->tp);
    }
}

static int attack_samples(const lim_state *s, float ms)
{
    int a = (int)lround(ms * 0.001 * s->sr);
    return a < 1 ? 1 : a > s->amax ? s->amax : a;
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    lim_state *s = st;
    s->channels = ctx->channels;
    s->sr = ctx->sample_rate;
    s->amax = (int)lround(LIM_MAX_LOOKAHEAD_MS * 0.001 * ctx->sample_rate);
    if (s->amax < 1)
        s->amax = 1;
    s->dlat = s->amax + TP_DELAY + REACH_BEFORE;
    tpdet_design(&s->co);
    s->dmask = pow2_at_least((uint32_t)s->dlat + 1) - 1;
    s->amask = pow2_at_least((uint32_t)s->amax + 1) - 1;
    /* rc reads rr back to det + 1 <= amax + 1 samples; h reads rc back to
     * hold - 1 <= amax + 129 samples (hold = a + REACH_BEFORE + REACH_AFTER + 2) */
    s->rr_h = s->amax + 2;
    s->rc_h = s->amax + REACH_BEFORE + REACH_AFTER + 1;
    const size_t per = (s->dmask + 1) * sizeof(float) + (s->amask + 1) * sizeof(int64_t) +
                       ((size_t)s->rr_h + (size_t)s->rc_h + 2 * MG_MAX_BLOCK) * sizeof(float);
    s->mem = mg_zalloc((size_t)s->channels, per);
    s->est = mg_zalloc((size_t)s->channels * MG_MAX_BLOCK, sizeof(float));
    s->acc = mg_zalloc((size_t)s->channels * MG_MAX_BLOCK, sizeof(float));
    if (!s->mem || !s->est || !s->acc)
        return -1;
    char *m = (char *)s->mem;
    for (int c = 0; c < s->channels; c++) {
        lim_chan *k = &s->ch[c];
        k->avg = (int64_t *)m;
        m += (s->amask + 1) * sizeof(int64_t);
        k->delay = (float *)m;
        m += (s->dmask + 1) * sizeof(float);
        k->rr = (float *)m;
        m += ((size_t)s->rr_h + MG_MAX_BLOCK) * sizeof(float);
        k->rc = (float *)m;
        m += ((size_t)s->rc_h + MG_MAX_BLOCK) * sizeof(float);
    }
    if (s->a_target <= 0)
        s->a_target = s->amax;
    s->a = s->a_target = s->a_target > s->amax ? s->amax : s->a_target;
    reset(st);
    return 0;
}

static void on_param(void *st, int index, float target)
{
    lim_state *s = st;
    if (index == P_LOOKAHEAD && s->sr > 0.0) {
        s->a_target = attack_samples(s, target);
        if (s->t == 0) { /* not started: the history is all 1, take it at once */
            s->a = s->a_target;
            for (int c = 0; c < s->channels; c++)
                s->ch[c].sum = (int64_t)s->a * (int64_t)LIM_FIX;
        }
    }
}

/* Latest-run count of a value 1 after a block of v[0..n): how many of the
 * latest values are 1 (capped), as a per-sample count would have it. */
static inline int ones_after(int ones, const float *v, int n)
{
    int last = -1; /* the last value that is not 1 (NaN neither): a max, so it vectorises */
    for (int i = 0; i < n; i++) {
        const int k = v[i] != 1.0f ? i : -1;
        last = k > last ? k : last;
    }
    if (last >= 0)
        return n - 1 - last;
    return ones < LIM_ONES_CAP - n ? ones + n : LIM_ONES_CAP;
}

/* The look-ahead's walk over a block, per sample: the detection delay and the
 * min-hold length in force there (the attack length a walks one sample per
 * sample towards a_target). */
typedef struct {
    int det[MG_MAX_BLOCK], hold[MG_MAX_BLOCK];
} lim_walk;

static inline int lim_det(const lim_state *s, int a) { return s->amax - a + 1; }
static inline int lim_hold(int a) { return a + REACH_BEFORE + REACH_AFTER + 2; }

#define LIM_CHUNK 64 /* samples per sliding-minimum pass: less than any hold */
_Static_assert(LIM_CHUNK < REACH_BEFORE + REACH_AFTER + 3, "a window reaches before its chunk");

/* One channel's minima over a block, from its needed gains rin[0..n):
 *   rc[i] = the smallest of the needed gains det, det + 1 and det - 1
 *           samples back (in that order, det the detection delay at i),
 *   h[i]  = the smallest rc over the last hold samples (i included),
 * with det and hold from w, or dc and hc throughout when w is NULL. Every
 * gain is in [0, 1] (never NaN, never -0), so a minimum is the same value
 * whatever the order it is taken in, and compares as the float's bits do
 * as integers: h is what the monotonic deque of an earlier version gave,
 * without its data-dependent branches (its window was always exactly the
 * last hold samples: hold moves by at most one a sample). The window of each
 * sample of a chunk of at
 * most LIM_CHUNK samples reaches back before the chunk: its minimum is that
 * of the part before the chunk (a backward scan from the chunk's start,
 * shared by the chunk's windows) and of the part in it (a forward scan).
 * Then the histories move on by the block. */
MG_HOT static void minima(lim_chan *restrict k, const lim_state *restrict s,
                          const float *restrict rin, int n, const lim_walk *w, int dc, int hc,
                          float *restrict h)
{
    const int rh = s->rr_h, ch = s->rc_h;
    float *restrict rr = k->rr, *restrict rc = k->rc;
    memcpy(rr + rh, rin, sizeof(float) * (size_t)n);
    k->ones = ones_after(k->ones, rin, n);
    float *restrict rcb = rc + ch;
    if (!w) {
        const float *a0 = rr + rh - dc - 1, *a1 = rr + rh - dc, *a2 = rr + rh - dc + 1;
        for (int i = 0; i < n; i++) {
            const float r0 = a0[i], r1 = a2[i];
            float v = a1[i];
            v = r0 < v ? r0 : v;
            v = r1 < v ? r1 : v;
            rcb[i] = v;
        }
    } else {
        for (int i = 0; i < n; i++) {
            const float *q = rr + rh + i - w->det[i];
            const float r0 = q[-1], r1 = q[1];
            float v = q[0];
            v = r0 < v ? r0 : v;
            v = r1 < v ? r1 : v;
            rcb[i] = v;
        }
    }
    k->rc_ones = ones_after(k->rc_ones, rcb, n);
    for (int c0 = 0; c0 < n; c0 += LIM_CHUNK) {
        const int m = n - c0 < LIM_CHUNK ? n - c0 : LIM_CHUNK;
        const float *restrict base = rcb + c0; /* the chunk; its history at base[-1], ... */
        /* sample j's window starts at base[1 + j - hold_j] (non-decreasing in j) */
        const int l0 = 1 - (w ? w->hold[c0] : hc);
        const int lm = m - (w ? w->hold[c0 + m - 1] : hc);
        /* the smallest of base[lm + 1 .. -1] (as bits: values >= 0 order so) */
        int32_t mb = INT32_MAX;
        const float *restrict hist = base + lm + 1;
        const int nh = -(lm + 1);
        for (int x = 0; x < nh; x++) {
            int32_t b;
            memcpy(&b, &hist[x], sizeof b);
            mb = b < mb ? b : mb;
        }
        /* the scans compare bits too: an integer minimum is one cycle */
        int32_t cur = mb, suf[2 * LIM_CHUNK];
        if (!w) {
            /* windows of one length: sample j's starts at l0 + j, so the
             * backward scan over the history and the forward one over the
             * chunk have m steps each: one loop, two chains in flight */
            int32_t pre = INT32_MAX, pf[LIM_CHUNK];
            for (int j = 0; j < m; j++) {
                int32_t b, f;
                memcpy(&b, &base[lm - j], sizeof b);
                memcpy(&f, &base[j], sizeof f);
                cur = b < cur ? b : cur;
                pre = f < pre ? f : pre;
                suf[m - 1 - j] = cur;
                pf[j] = pre;
            }
            for (int j = 0; j < m; j++) {
                const int32_t v = pf[j] < suf[j] ? pf[j] : suf[j];
                memcpy(&h[c0 + j], &v, sizeof v);
            }
            continue;
        }
        for (int x = lm; x >= l0; x--) {
            int32_t b;
            memcpy(&b, &base[x], sizeof b);
            cur = b < cur ? b : cur;
            suf[x - l0] = cur;
        }
        int32_t pre = INT32_MAX;
        for (int j = 0; j < m; j++) {
            int32_t f;
            memcpy(&f, &base[j], sizeof f);
            pre = f < pre ? f : pre;
            const int32_t sv = suf[1 + j - w->hold[c0 + j] - l0];
            const int32_t v = pre < sv ? pre : sv;
            memcpy(&h[c0 + j], &v, sizeof v);
        }
    }
    memmove(rr, rr + n, sizeof(float) * (size_t)rh);
    memmove(rc, rc + n, sizeof(float) * (size_t)ch);
}

/* The chain after the minima, per sample: h2 (instant attack, exponential
 * release, never above h), its moving average over the attack length a
 * (walking towards a_target when `walking`), the gain, the delayed input
 * times it. The state is held in locals for the block (stored back at its
 * end), so the recursion runs through registers. Returns the smallest gain. */
static inline __attribute__((always_inline)) float
chain_loop(lim_chan *restrict k, const lim_state *restrict s, const float *restrict hv,
           const float *restrict x, float *restrict y, int n, uint32_t t, int a, double inva,
           double arel, const int walking)
{
    const uint32_t am = s->amask, dm = s->dmask;
    const uint32_t dl = (uint32_t)s->dlat;
    const int a_target = s->a_target;
    float *restrict delay = k->delay;
    int64_t *restrict avg = k->avg;
    double h2 = k->h2;
    int64_t sum = k->sum;
    float gmin = 1.0f;
    for (int i = 0; i < n; i++, t++) {
        const int grow = walking && a < a_target, shrink = walking && a > a_target;
        const double inv =
            (grow | shrink) ? 1.0 / ((double)(a + grow - shrink) * LIM_FIX) : inva;
        const double h = hv[i];
        /* instant attack, exponential release, never above h: both ways
         * computed and one selected (no branch on the signal) */
        const double hr = h2 + (h - h2) * arel;
        const double hn = h - hr < 1e-9 ? h : hr;
        h2 = h <= h2 ? h : hn;
        /* moving average of h2 over the last a samples, in 2^-40 units */
        const int64_t q = (int64_t)(h2 * LIM_FIX);
        sum += q;
        if (!grow)
            sum -= avg[(t - (uint32_t)a) & am];
        if (shrink)
            sum -= avg[(t - (uint32_t)a + 1) & am];
        avg[t & am] = q;
        double g = (double)sum * inv;
        g = g > 1.0 ? 1.0 : g;
        const float gc = (float)g;
        gmin = gc < gmin ? gc : gmin;
        delay[t & dm] = x[i]; /* NaN / Inf were made silence */
        y[i] = delay[(t - dl) & dm] * gc;
        if (grow | shrink) {
            a += grow - shrink;
            inva = inv;
        }
    }
    k->h2 = h2;
    k->sum = sum;
    return gmin;
}

/* One channel's chain over a block (minima's h in): chain_loop with the
 * walk's terms constant when the attack length is settled (the usual
 * block). */
MG_HOT static float chain_run(lim_chan *restrict k, const lim_state *restrict s,
                              const float *restrict hv, const float *restrict x,
                              float *restrict y, int n, uint32_t t, int a, double inva,
                              double arel)
{
    if (a == s->a_target)
        return chain_loop(k, s, hv, x, y, n, t, a, inva, arel, 0);
    return chain_loop(k, s, hv, x, y, n, t, a, inva, arel, 1);
}

/* Two channels' chains side by side with the attack length settled: each
 * channel's operations are chain_loop's, in its order (two independent
 * recursions in flight: the per-sample chain is latency-bound). */
MG_HOT static void chain_pair(lim_chan *restrict k0, lim_chan *restrict k1,
                              const lim_state *restrict s, const float *restrict h0v,
                              const float *restrict h1v, const float *restrict x0,
                              const float *restrict x1, float *restrict y0, float *restrict y1,
                              int n, uint32_t t, int a, double inva, double arel, float *gmin)
{
    const uint32_t am = s->amask, dm = s->dmask;
    const uint32_t dl = (uint32_t)s->dlat;
    float *restrict d0 = k0->delay, *restrict d1 = k1->delay;
    int64_t *restrict v0 = k0->avg, *restrict v1 = k1->avg;
    double h20 = k0->h2, h21 = k1->h2;
    int64_t sum0 = k0->sum, sum1 = k1->sum;
    float gm0 = 1.0f, gm1 = 1.0f;
    for (int i = 0; i < n; i++, t++) {
        const double h0 = h0v[i], h1 = h1v[i];
        const double hr0 = h20 + (h0 - h20) * arel;
        const double hr1 = h21 + (h1 - h21) * arel;
        const double hn0 = h0 - hr0 < 1e-9 ? h0 : hr0;
        const double hn1 = h1 - hr1 < 1e-9 ? h1 : hr1;
        h20 = h0 <= h20 ? h0 : hn0;
        h21 = h1 <= h21 ? h1 : hn1;
        const int64_t q0 = (int64_t)(h20 * LIM_FIX);
        const int64_t q1 = (int64_t)(h21 * LIM_FIX);
        sum0 += q0;
        sum1 += q1;
        sum0 -= v0[(t - (uint32_t)a) & am];
        sum1 -= v1[(t - (uint32_t)a) & am];
        v0[t & am] = q0;
        v1[t & am] = q1;
        double g0 = (double)sum0 * inva, g1 = (double)sum1 * inva;
        g0 = g0 > 1.0 ? 1.0 : g0;
        g1 = g1 > 1.0 ? 1.0 : g1;
        const float gc0 = (float)g0, gc1 = (float)g1;
        gm0 = gc0 < gm0 ? gc0 : gm0;
        gm1 = gc1 < gm1 ? gc1 : gm1;
        d0[t & dm] = x0[i];
        d1[t & dm] = x1[i];
        y0[i] = d0[(t - dl) & dm] * gc0;
        y1[i] = d1[(t - dl) & dm] * gc1;
    }
    k0->h2 = h20, k1->h2 = h21;
    k0->sum = sum0, k1->sum = sum1;
    gmin[0] = gm0 < gmin[0] ? gm0 : gmin[0];
    gmin[1] = gm1 < gmin[1] ? gm1 : gmin[1];
}

/* A block in which nothing is limited, nor was within reach: the attack
 * length is settled, every channel's gain chain is at rest (h2 = 1, the
 * minima of the min-hold window all 1, the moving average's window all 1, the
 * needed gains the detection delay still holds all 1) and no estimate of the
 * block is over the ceiling. Then every needed gain of the block is 1, and
 * the block is what the per-sample chain would do, done in bulk: the same
 * histories and ring writes, the input delayed times the constant gain
 * sum / (a 2^40) (so the output is the same, bit for bit).
 * Returns 0, having changed nothing, when the block is not idle. */
MG_HOT static int idle_block(lim_state *s, const mg_proc *p, int n, double inva,
                             const float *const *xs, float *gmin)
{
    const int nc = s->channels;
    if (s->a != s->a_target)
        return 0;
    const int det = lim_det(s, s->a), hold = lim_hold(s->a);
    const int64_t full = (int64_t)s->a * (int64_t)LIM_FIX;
    for (int c = 0; c < nc; c++) {
        const lim_chan *k = &s->ch[c];
        if (!(k->h2 == 1.0 && k->rc_ones >= hold && k->sum == full && k->ones >= det + 1))
            return 0;
    }
    const mg_pv *pc = &p->pv[P_CEILING];
    for (int c = 0; c < nc; c++) {
        const float *d = s->est + (size_t)c * MG_MAX_BLOCK;
        int over = 0;
        if (pc->ramp)
            for (int i = 0; i < n; i++)
                over |= d[i] > pc->ramp[i];
        else
            for (int i = 0; i < n; i++)
                over |= d[i] > pc->value;
        if (over)
            return 0;
    }
    const uint32_t t0 = s->t, dm = s->dmask, am = s->amask, dl = (uint32_t)s->dlat;
    const int64_t q = (int64_t)LIM_FIX;
    for (int c = 0; c < nc; c++) {
        lim_chan *k = &s->ch[c];
        double g = (double)k->sum * inva;
        g = g > 1.0 ? 1.0 : g;
        const float gc = (float)g;
        const float *x = xs[c]; /* the input as tpdet_run used it */
        float *y = p->out[c];
        for (int i = 0; i < n; i++) {
            const uint32_t t = t0 + (uint32_t)i;
            k->delay[t & dm] = x[i];
            y[i] = k->delay[(t - dl) & dm] * gc;
            k->avg[t & am] = q;
        }
        /* the histories: n more gains of 1 and their minima, 1 */
        for (int i = 0; i < n; i++)
            k->rr[s->rr_h + i] = k->rc[s->rc_h + i] = 1.0f;
        memmove(k->rr, k->rr + n, sizeof(float) * (size_t)s->rr_h);
        memmove(k->rc, k->rc + n, sizeof(float) * (size_t)s->rc_h);
        k->ones = k->ones < LIM_ONES_CAP - n ? k->ones + n : LIM_ONES_CAP;
        k->rc_ones = k->rc_ones < LIM_ONES_CAP - n ? k->rc_ones + n : LIM_ONES_CAP;
        gmin[c] = gc < gmin[c] ? gc : gmin[c];
    }
    return 1;
}

/* One channel's true-peak detector over the block (mg_par_for): it reads
 * that channel only and writes that channel's state and rows. */
typedef struct {
    lim_state *s;
    const mg_proc *p;
    const float **xs;
} lim_detect;

static void detect_channel(void *arg, int c)
{
    const lim_detect *d = arg;
    lim_state *s = d->s;
    d->xs[c] = tpdet_run(&s->ch[c].tp, &s->co, d->p->in[c], d->p->nframes,
                         s->est + (size_t)c * MG_MAX_BLOCK, s->acc + (size_t)c * MG_MAX_BLOCK);
}

/* The minima of channels c and c + 1 (mg_par_for): each reads its own
 * needed gains and writes its own histories and h row. */
typedef struct {
    lim_state *s;
    const lim_walk *w;
    int n, c, dc, hc;
    float (*hb)[MG_MAX_BLOCK];
} lim_minima;

static void minima_channel(void *arg, int j)
{
    const lim_minima *m = arg;
    const int c = m->c + j;
    minima(&m->s->ch[c], m->s, m->s->est + (size_t)c * MG_MAX_BLOCK, m->n, m->w, m->dc, m->hc,
           m->hb[j]);
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    lim_state *s = st;
    const int n = p->nframes, nc = s->channels;
    const mg_pv *pc = &p->pv[P_CEILING], *pl = &p->pv[P_LINK];
    const float rel_ms = mg_pv_at(&p->pv[P_RELEASE], n - 1);
    const double arel = 1.0 - exp(-1.0 / (rel_ms * 0.001 * s->sr));
    float gmin[LIM_MAX_CH];
    const float *xs[LIM_MAX_CH];
    for (int c = 0; c < nc; c++)
        gmin[c] = 1.0f;
    /* the detectors are most of the limiter's work (16x, 64 taps a phase)
     * and each reads its own channel: on the idle audio threads beside this
     * one when the plan runs on several (the master limiter is in the
     * cycle's serial tail), in order otherwise */
    lim_detect det = {s, p, xs};
    mg_par_for(detect_channel, &det, nc);
    for (int c = 0; c < nc; c += 2) {
        const int two = c + 1 < nc, d = two ? c + 1 : c;
        tpdet_margin(&s->ch[c].tp, two ? &s->ch[d].tp : NULL, s->acc + (size_t)c * MG_MAX_BLOCK,
                     s->acc + (size_t)d * MG_MAX_BLOCK, s->est + (size_t)c * MG_MAX_BLOCK,
                     s->est + (size_t)d * MG_MAX_BLOCK, n, s->co.env_dec);
    }
    uint32_t t = s->t;
    int a = s->a;
    double inva = 1.0 / ((double)a * LIM_FIX);
    if (idle_block(s, p, n, inva, xs, gmin)) {
        t += (uint32_t)n;
        goto done;
    }
    /* the needed gains of every channel first (they depend on the estimates
     * only: each replaces its estimate in s->est), a channel at a time (the
     * same expressions as sample by sample, in vectors), then each channel's
     * chain over the block */
    float rmin[MG_MAX_BLOCK];
    for (int i = 0; i < n; i++)
        rmin[i] = 1.0f;
    for (int c = 0; c < nc; c++) {
        float *restrict e = s->est + (size_t)c * MG_MAX_BLOCK;
        if (pc->ramp)
            for (int i = 0; i < n; i++)
                e[i] = e[i] > pc->ramp[i] ? pc->ramp[i] / e[i] : 1.0f;
        else
            for (int i = 0; i < n; i++)
                e[i] = e[i] > pc->value ? pc->value / e[i] : 1.0f;
        for (int i = 0; i < n; i++)
            rmin[i] = e[i] < rmin[i] ? e[i] : rmin[i];
    }
    for (int c = 0; c < nc; c++) {
        float *restrict e = s->est + (size_t)c * MG_MAX_BLOCK;
        if (pl->ramp)
            for (int i = 0; i < n; i++)
                e[i] = e[i] + pl->ramp[i] * 0.01f * (rmin[i] - e[i]);
        else
            for (int i = 0; i < n; i++)
                e[i] = e[i] + pl->value * 0.01f * (rmin[i] - e[i]);
    }
    /* the look-ahead's walk over the block, when it moves */
    lim_walk wk;
    const lim_walk *w = NULL;
    if (a != s->a_target) {
        int aw = a;
        for (int i = 0; i < n; i++) {
            wk.det[i] = lim_det(s, aw);
            wk.hold[i] = lim_hold(aw);
            aw += (aw < s->a_target) - (aw > s->a_target);
        }
        w = &wk;
    }
    /* each channel's minima, then the chains, two channels side by side */
    for (int c = 0; c < nc; c += 2) {
        float hb[2][MG_MAX_BLOCK];
        const int two = c + 1 < nc;
        /* the two channels' minima at once where a thread is idle (the
         * master limiter, in the serial tail), in order otherwise */
        const lim_minima mj = {s, w, n, c, lim_det(s, a), lim_hold(a), hb};
        mg_par_for(minima_channel, (void *)&mj, 1 + two);
        if (two && !w) {
            chain_pair(&s->ch[c], &s->ch[c + 1], s, hb[0], hb[1], xs[c], xs[c + 1], p->out[c],
                       p->out[c + 1], n, t, a, inva, arel, gmin + c);
            continue;
        }
        for (int j = 0; j <= two; j++) {
            const float gc = chain_run(&s->ch[c + j], s, hb[j], xs[c + j], p->out[c + j], n, t,
                                       a, inva, arel);
            gmin[c + j] = gc < gmin[c + j] ? gc : gmin[c + j];
        }
    }
    /* the attack length's walk over the block, as each chain walked it */
    for (int i = 0; i < n; i++, t++) {
        const int grow = a < s->a_target, shrink = a > s->a_target;
        a += grow - shrink;
    }
done:
    s->t = t;
    s->a = a;
    for (int c = 0; c < nc; c++) {
        if (!isfinite(s->ch[c].h2))
            s->ch[c].h2 = 1.0;
        p->readout[c] = gmin[c];
    }
}

static int latency(const void *st)
{
    return ((const lim_state *)st)->dlat;
}

const mg_node_type mg_type_limiter = {
    .name = "limiter",
    .doc = "True-peak look-ahead limiter: the output's true peak, as an 8x (or ideal) "
           "interpolation reads it, stays at `ceiling` dBTP (within 0.1 dB; content near fs/2 "
           "is limited with a margin). Latency 5 ms + 64 samples (fixed); `lookahead` is the "
           "attack ramp inside it; `release` is the recovery time constant; `link` % shares "
           "the gain between channels. Below the ceiling the output is the input, delayed. "
           "Readout `gr`: the lowest gain of the last block per channel (dB).",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = LIM_MAX_CH,
    MG_PARAMS(params),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(lim_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .release = release,
    .on_param = on_param,
    .latency = latency,
};
