/* Shared dynamics DSP: fast exact-enough log2/exp2, the Giannoulis et al.
 * gain computers, one-pole coefficients and a small biquad for key filters.
 *
 * Reference: D. Giannoulis, M. Massberg, J. D. Reiss, "Digital Dynamic Range
 * Compressor Design - A Tutorial and Analysis", JAES 60(6), 2012.
 *
 * The level detector and gain computer work in the log domain (dB). To keep
 * per-sample cost low, log2/exp2 are computed with bit manipulation and short
 * series that GCC vectorises (no libm calls, no branches):
 *   dyn_log2f: |error| < 1e-6 (= 6e-6 dB) for normal floats;
 *   dyn_exp2f: relative error < 2e-7 for |x| <= 126.
 * Both return finite values for any input bits (NaN, Inf, denormals). */
#ifndef MG_DSP_DYNAMICS_H
#define MG_DSP_DYNAMICS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define DYN_DB_PER_LOG2 6.02059991327962390f /* 20*log10(2) */
#define DYN_LOG2_PER_DB 0.16609640474436813f /* 1/(20*log10(2)) */
#define DYN_CHUNK 64                          /* frames per inner pass */

/* Float bits <-> float. */
static inline uint32_t dyn_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float dyn_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* c ? a : b as a bit-mask blend. Without -fno-trapping-math (never set
 * here) GCC neither if-converts a float `?:` whose result feeds arithmetic
 * nor inlines fmaxf/fminf, and such loops stay scalar; integer masks
 * vectorise. */
static inline float dyn_sel(int c, float a, float b)
{
    const uint32_t m = -(uint32_t)(c != 0);
    return dyn_float((dyn_bits(a) & m) | (dyn_bits(b) & ~m));
}

/* max/min; a NaN in `a` yields b. */
static inline float dyn_max(float a, float b) { return dyn_sel(a > b, a, b); }
static inline float dyn_min(float a, float b) { return dyn_sel(a < b, a, b); }

/* Largest of x[0..n) and m, for non-negative values (gain reductions):
 * their bit patterns order like signed integers, and an integer max
 * reduction vectorises where a float one (without -ffast-math) does not.
 * A negative value (rounding just below 0) reads as less than any
 * non-negative one. */
static inline float dyn_peak(const float *x, int n, float m)
{
    int32_t a = (int32_t)dyn_bits(m);
    for (int i = 0; i < n; i++) {
        const int32_t b = (int32_t)dyn_bits(x[i]);
        a = b > a ? b : a;
    }
    return dyn_float((uint32_t)a);
}

/* log2|x|, with |x| clamped to [2^-126, FLT_MAX] (NaN reads as FLT_MAX). */
static inline float dyn_log2f(float x)
{
    uint32_t u = dyn_bits(x) & 0x7fffffffu;
    u = u < 0x00800000u ? 0x00800000u : u;
    u = u > 0x7f7fffffu ? 0x7f7fffffu : u;
    /* split x = 2^e * m with m in [sqrt(1/2), sqrt(2)) */
    const int32_t e = (int32_t)(u - 0x3f3504f3u) >> 23;
    const float m = dyn_float(u - ((uint32_t)e << 23));
    const float s = (m - 1.0f) / (m + 1.0f);
    const float s2 = s * s;
    /* 2/ln2 * atanh(s) = log2(m); |s| <= 0.1716, next term < 5e-8 */
    const float p = 2.88539008177792681f +
                    s2 * (0.96179669392597560f + s2 * (0.57707801635558536f + s2 * 0.41219858311113240f));
    return (float)e + s * p;
}

/* 2^x for x clamped to [-126, 126] (NaN -> 2^-126). */
static inline float dyn_exp2f(float x)
{
    x = dyn_min(dyn_max(x, -126.0f), 126.0f);
    const int32_t k = (int32_t)(x + 126.5f) - 126; /* round to nearest */
    const float f = x - (float)k;                  /* [-0.5, 0.5] */
    /* Taylor series of e^(f ln2) to degree 6: relative error < 2e-7 */
    const float p =
        1.0f + f * (0.69314718055994531f +
                    f * (0.24022650695910071f +
                         f * (0.05550410866482158f +
                              f * (0.00961812910762848f + f * (0.00133335581464284f + f * 0.00015403530393381f)))));
    return p * dyn_float((uint32_t)(k + 127) << 23);
}

/* Giannoulis eq. 4, as the gain change in dB (<= 0) for an input level x
 * (dB): threshold t, slope s = 1/R - 1 (<= 0), knee width w (dB), with
 * hw = w/2 and iw = 1/(2w) precomputed (0 when w == 0). Written with min/max
 * only, so loops over it vectorise:
 *   u = clamp(x - t + w/2, 0, w)
 *   gain = s (u^2 / (2w) + max(x - t - w/2, 0))
 * which is 0 below the knee, s (x - t + w/2)^2 / (2w) inside it (eq. 4) and
 * s (x - t) = (t + (x - t)/R) - x above it (u^2/(2w) = w/2 there). */
static inline float dyn_comp_gain(float x, float t, float s, float hw, float iw)
{
    const float d = x - t;
    const float u = dyn_min(dyn_max(d + hw, 0.0f), 2.0f * hw);
    return s * (u * u * iw + dyn_max(d - hw, 0.0f));
}

/* The downward expander form of the same computer: below the threshold the
 * output level falls n times faster (ratio 1:n, slope s = n - 1 >= 0); the
 * knee is the mirror image of eq. 4:
 *   x >= t + w/2:        y = x
 *   |x - t| < w/2:       y = x - (n - 1) (x - t - w/2)^2 / (2w)
 *   x <= t - w/2:        y = t + n (x - t)
 * returns y - x (<= 0), as -s (u^2/(2w) + max(t - w/2 - x, 0)) with
 * u = clamp(t + w/2 - x, 0, w). */
static inline float dyn_exp_gain(float x, float t, float s, float hw, float iw)
{
    const float d = t - x;
    const float u = dyn_min(dyn_max(d + hw, 0.0f), 2.0f * hw);
    return -s * (u * u * iw + dyn_max(d - hw, 0.0f));
}

/* One-pole coefficient for a time constant of ms at rate sr: the response to
 * a step reaches 1 - 1/e (63.2%) after exactly ms milliseconds. */
static inline float dyn_coef(double ms, double sr)
{
    const double n = ms * 0.001 * sr;
    return n < 1e-3 ? 0.0f : (float)exp(-1.0 / n);
}

/* Input guard: non-finite or absurd (> +120 dBFS) samples read as silence. */
static inline float dyn_clean(float x)
{
    return dyn_sel(fabsf(x) <= 1e6f, x, 0.0f);
}

/* A second-order Butterworth section (RBJ cookbook, Q = 1/sqrt 2), transposed
 * direct form II, for key (side-chain) filters. */
typedef struct {
    float b0, b1, b2, a1, a2;
} dyn_biquad;

static inline void dyn_butter(dyn_biquad *f, int highpass, double fc, double sr)
{
    if (fc > 0.45 * sr)
        fc = 0.45 * sr;
    const double w = 2.0 * 3.14159265358979323846 * fc / sr;
    const double cw = cos(w), alpha = sin(w) / (2.0 * 0.70710678118654752);
    const double a0 = 1.0 + alpha;
    const double b1 = highpass ? -(1.0 + cw) : (1.0 - cw);
    const double b0 = highpass ? (1.0 + cw) / 2.0 : (1.0 - cw) / 2.0;
    f->b0 = (float)(b0 / a0);
    f->b1 = (float)(b1 / a0);
    f->b2 = (float)(b0 / a0);
    f->a1 = (float)(-2.0 * cw / a0);
    f->a2 = (float)((1.0 - alpha) / a0);
}

/* Filter n samples in place; z[2] is the state (reset when non-finite). */
static inline void dyn_biquad_run(const dyn_biquad *f, float *z, float *x, int n)
{
    float z1 = z[0], z2 = z[1];
    const float b0 = f->b0, b1 = f->b1, b2 = f->b2, a1 = f->a1, a2 = f->a2;
    for (int i = 0; i < n; i++) {
        const float v = x[i];
        const float y = b0 * v + z1;
        z1 = b1 * v - a1 * y + z2;
        z2 = b2 * v - a2 * y;
        x[i] = y;
    }
    if (!(fabsf(z1) < 1e30f && fabsf(z2) < 1e30f))
        z1 = z2 = 0.0f;
    z[0] = z1;
    z[1] = z2;
}

#endif
