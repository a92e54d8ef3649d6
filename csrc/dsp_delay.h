/* Shared helpers for the delay, reverb and width nodes: circular delay lines
 * with fractional (cubic Lagrange / linear) reads, a click-free moving tap,
 * and second-order Butterworth sections. static inline, audio-thread safe. */
#ifndef MG_DSP_DELAY_H
#define MG_DSP_DELAY_H

#include <math.h>
#include "mg_node.h" /* mg_zalloc */
#include <stdlib.h>
#include <string.h>

#ifndef MG_PI
#define MG_PI 3.14159265358979323846
#endif

/* ---- circular buffer (length a power of two) ------------------------------- */
typedef struct {
    float *buf;
    unsigned mask;
    unsigned w; /* next write index */
} dl_line;

/* [control] allocate a line holding at least `frames` past samples */
static inline int dl_alloc(dl_line *l, size_t frames)
{
    size_t n = 8;
    while (n < frames + 8)
        n <<= 1;
    l->buf = mg_zalloc(n, sizeof(float));
    l->mask = (unsigned)(n - 1);
    l->w = 0;
    return l->buf ? 0 : -1;
}

static inline void dl_free(dl_line *l)
{
    free(l->buf);
    l->buf = NULL;
}

static inline void dl_clear(dl_line *l)
{
    if (l->buf)
        memset(l->buf, 0, sizeof(float) * ((size_t)l->mask + 1));
    l->w = 0;
}

static inline void dl_write(dl_line *l, float x)
{
    l->buf[l->w] = x;
    l->w = (l->w + 1) & l->mask;
}

/* The sample written k writes ago (k >= 1 before this sample's write). */
static inline float dl_tap_int(const dl_line *l, unsigned k)
{
    return l->buf[(l->w - k) & l->mask];
}

/* Read at a fractional delay d >= 2 (in samples, counted before the write of
 * the current sample: d = 1 is the previous sample) with 4-point (third
 * order) Lagrange interpolation. Integer d reads the sample exactly. */
static inline float dl_read_cubic(const dl_line *l, double d)
{
    const double fl = floor(d);
    const unsigned i = (unsigned)fl;
    const float f = (float)(d - fl);
    /* points at delays i-1, i, i+1, i+2; f is measured from delay i */
    const float xm1 = dl_tap_int(l, i - 1), x0 = dl_tap_int(l, i);
    const float x1 = dl_tap_int(l, i + 1), x2 = dl_tap_int(l, i + 2);
    const float fm1 = f + 1.0f, f1 = f - 1.0f, f2 = f - 2.0f;
    return -xm1 * f * f1 * f2 * (1.0f / 6.0f) + x0 * fm1 * f1 * f2 * 0.5f -
           x1 * fm1 * f * f2 * 0.5f + x2 * fm1 * f * f1 * (1.0f / 6.0f);
}

/* The same read split in two: the integer part and the four weights (shared
 * by every channel read at the same delay), then the weighted sum. */
typedef struct {
    unsigned i;
    float c[4];
} dl_pos;

static inline dl_pos dl_cubic_pos(double d)
{
    dl_pos p;
    const double fl = floor(d);
    p.i = (unsigned)fl;
    const float f = (float)(d - fl);
    const float fm1 = f + 1.0f, f1 = f - 1.0f, f2 = f - 2.0f;
    p.c[0] = -f * f1 * f2 * (1.0f / 6.0f);
    p.c[1] = fm1 * f1 * f2 * 0.5f;
    p.c[2] = -fm1 * f * f2 * 0.5f;
    p.c[3] = fm1 * f * f1 * (1.0f / 6.0f);
    return p;
}

static inline float dl_read_pos(const dl_line *l, const dl_pos *p)
{
    const unsigned j = l->w - p->i;
    return p->c[0] * l->buf[(j + 1u) & l->mask] + p->c[1] * l->buf[j & l->mask] +
           p->c[2] * l->buf[(j - 1u) & l->mask] + p->c[3] * l->buf[(j - 2u) & l->mask];
}

/* Linear interpolation at a fractional delay d >= 1. */
static inline float dl_read_lin(const dl_line *l, float d)
{
    const int i = (int)d;
    const float f = d - (float)i;
    const float a = dl_tap_int(l, (unsigned)i), b = dl_tap_int(l, (unsigned)i + 1);
    return a + f * (b - a);
}

/* ---- a tap that moves without clicks ---------------------------------------
 * Small changes of the delay (<= glide_max samples) glide at glide_rate samples
 * per sample (a slight, tape-like pitch bend); larger ones crossfade (raised-cosine,
 * equal gain) over fade_len samples from the old to the new
 * read position. A change that arrives during a fade waits for its end. */
typedef struct {
    double cur, nxt, tgt;
    int fade, fade_len;
    double glide_max, glide_rate;
} dl_tap;

static inline void dl_tap_init(dl_tap *t, double d, int fade_len, double glide_max,
                               double glide_rate)
{
    t->cur = t->nxt = t->tgt = d;
    t->fade = 0;
    t->fade_len = fade_len < 1 ? 1 : fade_len;
    t->glide_max = glide_max;
    t->glide_rate = glide_rate;
}

/* Advance one sample; returns the crossfade weight of nxt (0 when not fading). */
static inline float dl_tap_step(dl_tap *t)
{
    if (t->fade > 0) {
        t->fade--;
        if (t->fade == 0) {
            t->cur = t->nxt;
            return 0.0f;
        }
        const double a = 1.0 - (double)t->fade / t->fade_len;
        return (float)(0.5 - 0.5 * cos(MG_PI * a));
    }
    const double diff = t->tgt - t->cur;
    if (diff != 0.0) {
        if (fabs(diff) <= t->glide_max) {
            t->cur += diff > t->glide_rate ? t->glide_rate
                    : diff < -t->glide_rate ? -t->glide_rate : diff;
        } else {
            t->nxt = t->tgt;
            t->fade = t->fade_len;
        }
    }
    return 0.0f;
}

/* ---- second-order sections (TDF-II, double state) ----------------------------- */
typedef struct {
    double b0, b1, b2, a1, a2;
} bq_coef;
typedef struct {
    double z1, z2;
} bq_state;

/* Butterworth (Q = 1/sqrt 2) low-pass / high-pass by the bilinear transform
 * with pre-warping: the same as scipy.signal.butter(2, f, fs=fs). */
static inline bq_coef bq_butter2(double f, double fs, int highpass)
{
    bq_coef c;
    if (f > 0.49 * fs)
        f = 0.49 * fs;
    if (f < 1.0)
        f = 1.0;
    const double k = tan(MG_PI * f / fs), k2 = k * k, r2 = 1.4142135623730951 * k;
    const double n = 1.0 / (1.0 + r2 + k2);
    if (highpass) {
        c.b0 = n;
        c.b1 = -2.0 * n;
    } else {
        c.b0 = k2 * n;
        c.b1 = 2.0 * k2 * n;
    }
    c.b2 = c.b0;
    c.a1 = 2.0 * (k2 - 1.0) * n;
    c.a2 = (1.0 - r2 + k2) * n;
    return c;
}

static inline double bq_run(const bq_coef *c, bq_state *s, double x)
{
    const double y = c->b0 * x + s->z1;
    s->z1 = c->b1 * x - c->a1 * y + s->z2;
    s->z2 = c->b2 * x - c->a2 * y;
    return y;
}

static inline int bq_finite(const bq_state *s)
{
    return isfinite(s->z1) && isfinite(s->z2);
}

/* ---- state-variable filter (Zavalishin's TPT form) --------------------------
 * With k = sqrt 2 its low-pass and high-pass outputs are exactly the bilinear
 * (pre-warped) 2nd-order Butterworth of bq_butter2 / scipy.signal.butter, and
 * unlike a direct form it stays well-behaved when its frequency moves fast. */
typedef struct {
    double a1, a2, a3, k;
} svf_coef;
typedef struct {
    double ic1, ic2;
} svf_state;

static inline svf_coef svf_butter2(double f, double fs)
{
    if (f > 0.49 * fs)
        f = 0.49 * fs;
    if (f < 1.0)
        f = 1.0;
    svf_coef c;
    const double g = tan(MG_PI * f / fs);
    c.k = 1.4142135623730951;
    c.a1 = 1.0 / (1.0 + g * (g + c.k));
    c.a2 = g * c.a1;
    c.a3 = g * c.a2;
    return c;
}

/* one sample; returns the low-pass output, *hp gets the high-pass one */
static inline double svf_run(const svf_coef *c, svf_state *s, double x, double *hp)
{
    const double v3 = x - s->ic2;
    const double v1 = c->a1 * s->ic1 + c->a2 * v3;
    const double v2 = s->ic2 + c->a2 * s->ic1 + c->a3 * v3;
    s->ic1 = 2.0 * v1 - s->ic1;
    s->ic2 = 2.0 * v2 - s->ic2;
    *hp = x - c->k * v1 - v2;
    return v2;
}

static inline int svf_finite(const svf_state *s)
{
    return isfinite(s->ic1) && isfinite(s->ic2);
}

/* A sample that is not finite (or absurdly large) becomes 0. */
static inline float dl_sane(float x)
{
    return fabsf(x) <= 1e20f ? x : 0.0f;
}

#endif
