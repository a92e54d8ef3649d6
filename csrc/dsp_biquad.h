/* Biquad helpers shared by node files: RBJ Audio EQ Cookbook designs and
 * Butterworth sections, transposed direct form II with double state.
 *
 * Coefficients are normalised (a0 = 1):
 *   y = b0 x + s1;  s1 = b1 x - a1 y + s2;  s2 = b2 x - a2 y
 * The designs are the cookbook's (R. Bristow-Johnson, "Cookbook formulae for
 * audio EQ biquad filter coefficients"), with the shelves' Q used directly
 * (alpha = sin(w0)/(2Q); Q = 1/sqrt(2) is the cookbook's S = 1 shelf). */
#ifndef MG_DSP_BIQUAD_H
#define MG_DSP_BIQUAD_H

#include <math.h>

typedef struct {
    double b0, b1, b2, a1, a2;
} mg_bq_coef;

typedef struct {
    double s1, s2;
} mg_bq_state;

enum {
    MG_BQ_BELL = 0,
    MG_BQ_LOWSHELF = 1,
    MG_BQ_HIGHSHELF = 2,
    MG_BQ_NOTCH = 3,
    MG_BQ_BANDPASS = 4, /* constant 0 dB peak gain */
    MG_BQ_LOWPASS = 5,
    MG_BQ_HIGHPASS = 6,
};

/* Q of each second-order section of an order-2n Butterworth filter:
 * Q_k = 1 / (2 sin((2k+1) pi / (4n))), k = 0..n-1. */
static inline double mg_bq_butter_q(int n_sections, int k)
{
    return 1.0 / (2.0 * sin((2.0 * k + 1.0) * 3.14159265358979323846 / (4.0 * n_sections)));
}

static inline void mg_bq_identity(mg_bq_coef *c)
{
    c->b0 = 1.0;
    c->b1 = c->b2 = c->a1 = c->a2 = 0.0;
}

/* Design one section. fs, f0 in Hz; q > 0; amp = linear gain of the band
 * (bell/shelves: the cookbook's A = sqrt(amp)). f0 is kept inside
 * (1e-4, 0.4999) * fs. */
/* The design's cos(w0) and sin(w0) for f0 (kept inside (1e-4, 0.4999) * fs);
 * fs > 0. A caller whose frequency stays while gain or Q move keeps them
 * (mg_bq_design_cs): the same coefficients without the trigonometry. */
static inline void mg_bq_trig(double fs, double f0, double *cw, double *sw)
{
    if (!(f0 > 1e-4 * fs))
        f0 = 1e-4 * fs;
    if (f0 > 0.4999 * fs)
        f0 = 0.4999 * fs;
    const double w0 = 2.0 * 3.14159265358979323846 * f0 / fs;
    *cw = cos(w0);
    *sw = sin(w0);
}

/* mg_bq_design from mg_bq_trig's cos(w0), sin(w0). */
static inline void mg_bq_design_cs(mg_bq_coef *c, int type, double cw, double sw, double q,
                                   double amp)
{
    if (!(q > 1e-3))
        q = 1e-3;
    if (!(amp > 1e-9))
        amp = 1e-9;
    const double alpha = sw / (2.0 * q);
    const double A = sqrt(amp);
    double b0, b1, b2, a0, a1, a2;
    switch (type) {
    case MG_BQ_BELL:
        b0 = 1.0 + alpha * A;
        b1 = -2.0 * cw;
        b2 = 1.0 - alpha * A;
        a0 = 1.0 + alpha / A;
        a1 = -2.0 * cw;
        a2 = 1.0 - alpha / A;
        break;
    case MG_BQ_LOWSHELF: {
        const double k = 2.0 * sqrt(A) * alpha;
        b0 = A * ((A + 1.0) - (A - 1.0) * cw + k);
        b1 = 2.0 * A * ((A - 1.0) - (A + 1.0) * cw);
        b2 = A * ((A + 1.0) - (A - 1.0) * cw - k);
        a0 = (A + 1.0) + (A - 1.0) * cw + k;
        a1 = -2.0 * ((A - 1.0) + (A + 1.0) * cw);
        a2 = (A + 1.0) + (A - 1.0) * cw - k;
        break;
    }
    case MG_BQ_HIGHSHELF: {
        const double k = 2.0 * sqrt(A) * alpha;
        b0 = A * ((A + 1.0) + (A - 1.0) * cw + k);
        b1 = -2.0 * A * ((A - 1.0) + (A + 1.0) * cw);
        b2 = A * ((A + 1.0) + (A - 1.0) * cw - k);
        a0 = (A + 1.0) - (A - 1.0) * cw + k;
        a1 = 2.0 * ((A - 1.0) - (A + 1.0) * cw);
        a2 = (A + 1.0) - (A - 1.0) * cw - k;
        break;
    }
    case MG_BQ_NOTCH:
        b0 = 1.0;
        b1 = -2.0 * cw;
        b2 = 1.0;
        a0 = 1.0 + alpha;
        a1 = -2.0 * cw;
        a2 = 1.0 - alpha;
        break;
    case MG_BQ_BANDPASS:
        b0 = alpha;
        b1 = 0.0;
        b2 = -alpha;
        a0 = 1.0 + alpha;
        a1 = -2.0 * cw;
        a2 = 1.0 - alpha;
        break;
    case MG_BQ_LOWPASS:
        b1 = 1.0 - cw;
        b0 = b2 = 0.5 * b1;
        a0 = 1.0 + alpha;
        a1 = -2.0 * cw;
        a2 = 1.0 - alpha;
        break;
    case MG_BQ_HIGHPASS:
        b1 = -(1.0 + cw);
        b0 = b2 = -0.5 * b1;
        a0 = 1.0 + alpha;
        a1 = -2.0 * cw;
        a2 = 1.0 - alpha;
        break;
    default:
        mg_bq_identity(c);
        return;
    }
    const double r = 1.0 / a0;
    c->b0 = b0 * r;
    c->b1 = b1 * r;
    c->b2 = b2 * r;
    c->a1 = a1 * r;
    c->a2 = a2 * r;
}

static inline void mg_bq_design(mg_bq_coef *c, int type, double fs, double f0, double q, double amp)
{
    if (!(fs > 0.0)) {
        mg_bq_identity(c);
        return;
    }
    double cw, sw;
    mg_bq_trig(fs, f0, &cw, &sw);
    mg_bq_design_cs(c, type, cw, sw, q, amp);
}

static inline double mg_bq_tick(const mg_bq_coef *c, mg_bq_state *s, double x)
{
    const double y = c->b0 * x + s->s1;
    s->s1 = c->b1 * x - c->a1 * y + s->s2;
    s->s2 = c->b2 * x - c->a2 * y;
    return y;
}

/* Filter n samples in place. */
static inline void mg_bq_run(const mg_bq_coef *c, mg_bq_state *s, float *buf, int n)
{
    const double b0 = c->b0, b1 = c->b1, b2 = c->b2, a1 = c->a1, a2 = c->a2;
    double s1 = s->s1, s2 = s->s2;
    for (int i = 0; i < n; i++) {
        const double x = buf[i];
        const double y = b0 * x + s1;
        s1 = b1 * x - a1 * y + s2;
        s2 = b2 * x - a2 * y;
        buf[i] = (float)y;
    }
    s->s1 = s1;
    s->s2 = s2;
}

/* Filter n samples in place while the coefficients move linearly from c0
 * (before the first sample) to c1 (at the last): a per-sample glide between
 * two designs. The stable region of (a1, a2) is a triangle, so every
 * intermediate filter of two stable ones is stable. */
static inline void mg_bq_run_glide(const mg_bq_coef *c0, const mg_bq_coef *c1, mg_bq_state *s,
                                   float *buf, int n)
{
    const double r = 1.0 / n;
    const double db0 = (c1->b0 - c0->b0) * r, db1 = (c1->b1 - c0->b1) * r;
    const double db2 = (c1->b2 - c0->b2) * r, da1 = (c1->a1 - c0->a1) * r;
    const double da2 = (c1->a2 - c0->a2) * r;
    double s1 = s->s1, s2 = s->s2;
    for (int i = 0; i < n; i++) {
        const double k = i + 1;
        const double b0 = c0->b0 + k * db0, b1 = c0->b1 + k * db1, b2 = c0->b2 + k * db2;
        const double a1 = c0->a1 + k * da1, a2 = c0->a2 + k * da2;
        const double x = buf[i];
        const double y = b0 * x + s1;
        s1 = b1 * x - a1 * y + s2;
        s2 = b2 * x - a2 * y;
        buf[i] = (float)y;
    }
    s->s1 = s1;
    s->s2 = s2;
}

/* Filter n samples in place, crossfading with the input: x + w (f(x) - x). */
static inline void mg_bq_run_mix(const mg_bq_coef *c, mg_bq_state *s, float *buf, const float *w, int n)
{
    const double b0 = c->b0, b1 = c->b1, b2 = c->b2, a1 = c->a1, a2 = c->a2;
    double s1 = s->s1, s2 = s->s2;
    for (int i = 0; i < n; i++) {
        const double x = buf[i];
        const double y = b0 * x + s1;
        s1 = b1 * x - a1 * y + s2;
        s2 = b2 * x - a2 * y;
        buf[i] = (float)(x + (double)w[i] * (y - x));
    }
    s->s1 = s1;
    s->s2 = s2;
}

/* Reset a state that became non-finite; flush a tail that decayed to the
 * denormal range to exact zero. */
static inline void mg_bq_guard(mg_bq_state *s)
{
    if (!isfinite(s->s1) || !isfinite(s->s2)) {
        s->s1 = s->s2 = 0.0;
        return;
    }
    if (fabs(s->s1) < 1e-30 && fabs(s->s2) < 1e-30)
        s->s1 = s->s2 = 0.0;
}

#endif
