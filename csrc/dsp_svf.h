/* Trapezoidal (topology-preserving) state-variable filter, A. Simper
 * (Cytomic, "Linear Trapezoidal Integrated SVF", 2013) / V. Zavalishin ("The
 * Art of VA Filter Design"), with float states and coefficients, matched
 * exactly to the RBJ Audio EQ Cookbook designs of csrc/dsp_biquad.h: the
 * same analog prototypes through the same bilinear transform prewarped at
 * f0 (g = tan(pi f0 / fs)), so the magnitude and phase are the cookbook
 * biquad's (to float rounding), including the shelves' Q (alpha = sin(w0)/2Q:
 * k = 1/Q, the cookbook's S = 1 at Q = 1/sqrt 2) and Butterworth sections.
 *
 * Per sample, with states s1 = ic1eq, s2 = ic2eq (the two trapezoidal
 * integrators' states) and input x:
 *   v3 = x - s2
 *   w1 = A2 v3 + A1 s1            (= 2 v1, the band-pass state)
 *   y  = m0 x + (M1 w1 + m2 s2)   (= m0 x + m1 v1 + m2 v2, v2 = s2 + g v1)
 *   s2 = (s2 + A2 s1) + A3 v3     (= 2 v2 - s2)
 *   s1 = w1 - s1                  (= 2 v1 - s1)
 * with a1 = 1/(1 + g (g + k)), a2 = g a1, a3 = g a2 and the stored
 * A1 = 2 a1, A2 = 2 a2, A3 = 2 a3, M1 = (m1 + m2 g) / 2.
 *
 * Why float is enough here and not for a direct-form biquad: the biquad's
 * recursion coefficients at 80 Hz / 48 kHz are a1 ~ -2, a2 ~ 1 and the pole
 * radius lives in their difference (float rounding moves a pole by ~1e-7 of
 * 2, as much as the pole's own distance from the unit circle), while the
 * SVF's g ~ 0.005 is stored with float's relative precision and the
 * integrators' states carry the signal itself (tests/test_eq_svf.py measures
 * the noise floor against a float64 reference).
 *
 * Stability while coefficients move: with x = 0 the update of (s1, s2) is
 *   M = [[2 a1 - 1, -2 a2], [2 a2, 1 - 2 a3]],
 * the Cayley transform of the analog SVF's matrix, which is dissipative, so
 * ||M||_2 <= 1 for every g > 0, k >= 0. M is affine in (A1, A2, A3) and the
 * spectral norm is convex, so every coefficient set on the straight line
 * between two designs also has ||M||_2 <= 1: a per-sample linear glide of
 * the stored coefficients can never make the states grow, however fast it
 * moves (the output mix m0, M1, m2 does not touch the states). */
#ifndef MG_DSP_SVF_H
#define MG_DSP_SVF_H

#include "dsp_biquad.h" /* MG_BQ_* types, mg_bq_butter_q */

#include <math.h>

enum { MG_SV_A1, MG_SV_A2, MG_SV_A3, MG_SV_M0, MG_SV_M1, MG_SV_M2, MG_SV_NC };

typedef struct {
    float v[MG_SV_NC];
} mg_sv_coef;

typedef struct {
    float s1, s2;
} mg_sv_state;

/* One sample through a section: x in, y out (x replaced), states updated.
 * A macro so the same expressions serve scalars and vectors (GCC vector
 * extensions), so a lane of a vector computes what the scalar does. */
#define MG_SV_TICK(x, s1, s2, A1, A2, A3, m0, M1, m2)                                             \
    do {                                                                                          \
        const __typeof__(x) v3_ = (x) - (s2);                                                     \
        const __typeof__(x) w1_ = (A2) * v3_ + (A1) * (s1);                                       \
        const __typeof__(x) y_ = (m0) * (x) + ((M1) * w1_ + (m2) * (s2));                          \
        (s2) = ((s2) + (A2) * (s1)) + (A3) * v3_;                                                 \
        (s1) = w1_ - (s1);                                                                        \
        (x) = y_;                                                                                 \
    } while (0)

static inline void mg_sv_identity(mg_sv_coef *c)
{
    for (int j = 0; j < MG_SV_NC; j++)
        c->v[j] = 0.0f;
    c->v[MG_SV_M0] = 1.0f;
}

/* tan(pi f0 / fs), f0 kept inside (1e-4, 0.4999) fs as mg_bq_trig does. A
 * caller whose frequency stays while gain or Q move keeps it. */
static inline double mg_sv_tan(double fs, double f0)
{
    if (!(f0 > 1e-4 * fs))
        f0 = 1e-4 * fs;
    if (f0 > 0.4999 * fs)
        f0 = 0.4999 * fs;
    return tan(3.14159265358979323846 * f0 / fs);
}

/* Design one section of `type` (MG_BQ_*) from t = mg_sv_tan(fs, f0); q > 0;
 * amp = the band's linear gain (the cookbook's A = sqrt(amp)). Computed in
 * double, stored in float. */
static inline void mg_sv_design_t(mg_sv_coef *c, int type, double t, double q, double amp)
{
    if (!(q > 1e-3))
        q = 1e-3;
    if (!(amp > 1e-9))
        amp = 1e-9;
    const double A = sqrt(amp);
    double g = t, k = 1.0 / q, m0, m1, m2;
    switch (type) {
    case MG_BQ_BELL:
        k = 1.0 / (q * A);
        m0 = 1.0, m1 = k * (amp - 1.0), m2 = 0.0;
        break;
    case MG_BQ_LOWSHELF:
        g = t / sqrt(A);
        m0 = 1.0, m1 = k * (A - 1.0), m2 = amp - 1.0;
        break;
    case MG_BQ_HIGHSHELF:
        g = t * sqrt(A);
        m0 = amp, m1 = k * (1.0 - A) * A, m2 = 1.0 - amp;
        break;
    case MG_BQ_NOTCH:
        m0 = 1.0, m1 = -k, m2 = 0.0;
        break;
    case MG_BQ_BANDPASS:
        m0 = 0.0, m1 = k, m2 = 0.0;
        break;
    case MG_BQ_LOWPASS:
        m0 = 0.0, m1 = 0.0, m2 = 1.0;
        break;
    case MG_BQ_HIGHPASS:
        m0 = 1.0, m1 = -k, m2 = -1.0;
        break;
    default:
        mg_sv_identity(c);
        return;
    }
    const double a1 = 1.0 / (1.0 + g * (g + k)), a2 = g * a1, a3 = g * a2;
    c->v[MG_SV_A1] = (float)(2.0 * a1);
    c->v[MG_SV_A2] = (float)(2.0 * a2);
    c->v[MG_SV_A3] = (float)(2.0 * a3);
    c->v[MG_SV_M0] = (float)m0;
    c->v[MG_SV_M1] = (float)(0.5 * (m1 + m2 * g));
    c->v[MG_SV_M2] = (float)m2;
}

static inline void mg_sv_design(mg_sv_coef *c, int type, double fs, double f0, double q, double amp)
{
    if (!(fs > 0.0)) {
        mg_sv_identity(c);
        return;
    }
    mg_sv_design_t(c, type, mg_sv_tan(fs, f0), q, amp);
}

/* Filter n samples in place; with c0, the coefficients glide linearly from
 * c0 (before the first sample) to c (at the last): frame i runs
 * c0 + (i + 1) (c - c0) / n. */
static inline void mg_sv_run(const mg_sv_coef *c0, const mg_sv_coef *c, mg_sv_state *s, float *buf,
                             int n)
{
    float s1 = s->s1, s2 = s->s2;
    if (!c0) {
        const float *k = c->v;
        for (int i = 0; i < n; i++) {
            float x = buf[i];
            MG_SV_TICK(x, s1, s2, k[0], k[1], k[2], k[3], k[4], k[5]);
            buf[i] = x;
        }
    } else {
        float d[MG_SV_NC];
        const float r = 1.0f / (float)n;
        for (int j = 0; j < MG_SV_NC; j++)
            d[j] = (c->v[j] - c0->v[j]) * r;
        for (int i = 0; i < n; i++) {
            const float t = (float)(i + 1);
            float k[MG_SV_NC];
            for (int j = 0; j < MG_SV_NC; j++)
                k[j] = c0->v[j] + t * d[j];
            float x = buf[i];
            MG_SV_TICK(x, s1, s2, k[0], k[1], k[2], k[3], k[4], k[5]);
            buf[i] = x;
        }
    }
    s->s1 = s1;
    s->s2 = s2;
}

/* Reset a state that became non-finite; flush a tail that decayed below
 * 1e-30 to exact zero. */
static inline void mg_sv_guard(mg_sv_state *s)
{
    if (!isfinite(s->s1) || !isfinite(s->s2)) {
        s->s1 = s->s2 = 0.0f;
        return;
    }
    if (fabsf(s->s1) < 1e-30f && fabsf(s->s2) < 1e-30f)
        s->s1 = s->s2 = 0.0f;
}

#endif
