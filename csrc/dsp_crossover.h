/* Linkwitz-Riley 4th-order (LR4) crossovers and multiband split trees.
 *
 * One LR4 crossover at fc is a 2nd-order Butterworth section (Q = 1/sqrt 2,
 * RBJ cookbook = bilinear transform prewarped at fc, the same filter as
 * scipy.signal.butter(2, fc, fs=fs)) applied twice:
 *   LP4 = LP2^2,  HP4 = HP2^2;  in the analogue prototype
 *   LP4(s) + HP4(s) = (1 + s^4) / B(s)^2 = (s^2 - sqrt2 s + 1) / (s^2 + sqrt2 s + 1)
 * (B(s) = s^2 + sqrt2 s + 1): the two outputs are in phase at every
 * frequency and sum to a 2nd-order all-pass AP with the same poles. The
 * bilinear transform maps the identity exactly, so the digital LP4 + HP4
 * equals the digital all-pass designed here (one biquad).
 *
 * A multiband split of nx crossovers f1 <= f2 <= ... (nx + 1 bands) runs as
 * a cascade: band k is the low-pass of what is above the crossovers before
 * it, and every band already split off is passed through the all-pass of
 * each later crossover ("the lower band through the higher crossover's
 * all-pass equivalent"), so all bands share the same phase and
 *   sum of bands = AP1 AP2 ... APnx x     (flat magnitude, exactly).
 * Sections: 4 per crossover + nx (nx - 1) / 2 all-passes (15 for 4 bands).
 *
 * Coefficients may glide per sample between two designs (frequencies moved
 * live): see mg_xo_split. Uses csrc/dsp_biquad.h (double state, TDF II). */
#ifndef MG_DSP_CROSSOVER_H
#define MG_DSP_CROSSOVER_H

#include <math.h>
#include <string.h>

#include "dsp_biquad.h"

#define MG_XO_MAX 3 /* crossovers (4 bands) */

typedef struct {
    double fc;         /* the frequency designed for (Hz) */
    mg_bq_coef lp, hp; /* Butterworth sections, each applied twice */
    mg_bq_coef ap;     /* LP4 + HP4: the 2nd-order all-pass */
} mg_xo_coef;

/* The all-pass (Q = 1/sqrt 2) whose poles are the Butterworth section's:
 * H(z) = (a2 + a1 z^-1 + z^-2) / (1 + a1 z^-1 + a2 z^-2). */
static inline void mg_xo_design(mg_xo_coef *c, double fs, double fc)
{
    const double q = 0.70710678118654752;
    c->fc = fc;
    mg_bq_design(&c->lp, MG_BQ_LOWPASS, fs, fc, q, 1.0);
    mg_bq_design(&c->hp, MG_BQ_HIGHPASS, fs, fc, q, 1.0);
    c->ap.b0 = c->lp.a2;
    c->ap.b1 = c->lp.a1;
    c->ap.b2 = 1.0;
    c->ap.a1 = c->lp.a1;
    c->ap.a2 = c->lp.a2;
}

/* Filter states of one channel's split tree. */
typedef struct {
    mg_bq_state lp[MG_XO_MAX][2], hp[MG_XO_MAX][2];
    mg_bq_state ap[MG_XO_MAX][MG_XO_MAX]; /* [crossover k][band j < k] */
} mg_xo_tree;

static inline void mg_xo_section(const mg_bq_coef *c0, const mg_bq_coef *c1, mg_bq_state *s,
                                 float *buf, int n, int glide)
{
    if (glide)
        mg_bq_run_glide(c0, c1, s, buf, n);
    else
        mg_bq_run(c1, s, buf, n);
}

/* Split n samples of `in` (n <= the bands' length) into nx + 1 bands
 * (`in` may be band[nx] itself: the split then runs in place):
 * band[0] lowest. c0/c1: each crossover's design before the first and at the
 * last sample (glide != 0: the coefficients move linearly in between;
 * glide == 0: c1 throughout, c0 unused). */
static inline void mg_xo_split(const mg_xo_coef *c0, const mg_xo_coef *c1, int nx, int glide,
                               mg_xo_tree *t, const float *in, float *const *band, int n)
{
    float *rest = band[nx];
    if (rest != in)
        memcpy(rest, in, sizeof(float) * (size_t)n);
    for (int k = 0; k < nx; k++) {
        const mg_xo_coef *a = glide ? &c0[k] : &c1[k], *b = &c1[k];
        for (int j = 0; j < k; j++) /* phase compensation of the bands below */
            mg_xo_section(&a->ap, &b->ap, &t->ap[k][j], band[j], n, glide);
        memcpy(band[k], rest, sizeof(float) * (size_t)n);
        mg_xo_section(&a->lp, &b->lp, &t->lp[k][0], band[k], n, glide);
        mg_xo_section(&a->lp, &b->lp, &t->lp[k][1], band[k], n, glide);
        mg_xo_section(&a->hp, &b->hp, &t->hp[k][0], rest, n, glide);
        mg_xo_section(&a->hp, &b->hp, &t->hp[k][1], rest, n, glide);
    }
}

/* Reset non-finite states, flush decayed tails to exact zero. */
static inline void mg_xo_guard(mg_xo_tree *t, int nx)
{
    for (int k = 0; k < nx; k++) {
        mg_bq_guard(&t->lp[k][0]);
        mg_bq_guard(&t->lp[k][1]);
        mg_bq_guard(&t->hp[k][0]);
        mg_bq_guard(&t->hp[k][1]);
        for (int j = 0; j < k; j++)
            mg_bq_guard(&t->ap[k][j]);
    }
}

#endif
