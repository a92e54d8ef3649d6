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

/* ---- steady coefficients, two channels at once ----
 *
 * The per-section loops above are bound by each section's recursion (a
 * multiply and two adds per sample). For fixed coefficients the split runs
 * faster with two channels in the two lanes of a double vector and the four
 * sections of a crossover (LP, LP, HP, HP: two independent chains) in one
 * sample loop, then the phase compensation (one or two independent all-pass
 * chains). Same arithmetic in double; between the two cascaded sections of a
 * crossover the value stays double (the per-section path rounds to float
 * there: the two differ by float rounding only). GCC/Clang vector
 * extensions: SSE2 on x86-64, NEON on AArch64, scalar code elsewhere. */
typedef double mg_xo_v2 __attribute__((vector_size(16)));

typedef struct {
    mg_xo_v2 b0, b1, b2, a1, a2;
} mg_xo_vc;

static inline mg_xo_vc mg_xo_vcoef(const mg_bq_coef *c)
{
    mg_xo_vc v = {{c->b0, c->b0}, {c->b1, c->b1}, {c->b2, c->b2}, {c->a1, c->a1}, {c->a2, c->a2}};
    return v;
}

static inline mg_xo_v2 mg_xo_vload(const mg_bq_state *a, const mg_bq_state *b, int second)
{
    mg_xo_v2 v = {second ? a->s2 : a->s1, second ? b->s2 : b->s1};
    return v;
}

static inline void mg_xo_vstore(mg_bq_state *a, mg_bq_state *b, mg_xo_v2 s1, mg_xo_v2 s2)
{
    a->s1 = s1[0];
    a->s2 = s2[0];
    b->s1 = s1[1];
    b->s2 = s2[1];
}

/* one transposed direct form II step; s1 = (b1 x + s2) - a1 y keeps the
 * recursion through y at a multiply and an add */
#define MG_XO_STEP(c, x, y, s1, s2)                   \
    do {                                              \
        y = (c).b0 * (x) + s1;                        \
        s1 = ((c).b1 * (x) + s2) - (c).a1 * y;        \
        s2 = (c).b2 * (x) - (c).a2 * y;               \
    } while (0)

/* crossover k of two channels' trees: lo = LP4(rest), rest = HP4(rest) */
static inline void mg_xo_pair_stage(const mg_xo_coef *c, int k, mg_xo_tree *t0, mg_xo_tree *t1,
                                    float *r0, float *r1, float *l0, float *l1, int n)
{
    const mg_xo_vc L = mg_xo_vcoef(&c->lp), H = mg_xo_vcoef(&c->hp);
    mg_xo_v2 la1 = mg_xo_vload(&t0->lp[k][0], &t1->lp[k][0], 0), la2 = mg_xo_vload(&t0->lp[k][0], &t1->lp[k][0], 1);
    mg_xo_v2 lb1 = mg_xo_vload(&t0->lp[k][1], &t1->lp[k][1], 0), lb2 = mg_xo_vload(&t0->lp[k][1], &t1->lp[k][1], 1);
    mg_xo_v2 ha1 = mg_xo_vload(&t0->hp[k][0], &t1->hp[k][0], 0), ha2 = mg_xo_vload(&t0->hp[k][0], &t1->hp[k][0], 1);
    mg_xo_v2 hb1 = mg_xo_vload(&t0->hp[k][1], &t1->hp[k][1], 0), hb2 = mg_xo_vload(&t0->hp[k][1], &t1->hp[k][1], 1);
    for (int i = 0; i < n; i++) {
        const mg_xo_v2 x = {r0[i], r1[i]};
        mg_xo_v2 u, y, v, z;
        MG_XO_STEP(L, x, u, la1, la2);
        MG_XO_STEP(H, x, v, ha1, ha2);
        MG_XO_STEP(L, u, y, lb1, lb2);
        MG_XO_STEP(H, v, z, hb1, hb2);
        l0[i] = (float)y[0];
        l1[i] = (float)y[1];
        r0[i] = (float)z[0];
        r1[i] = (float)z[1];
    }
    mg_xo_vstore(&t0->lp[k][0], &t1->lp[k][0], la1, la2);
    mg_xo_vstore(&t0->lp[k][1], &t1->lp[k][1], lb1, lb2);
    mg_xo_vstore(&t0->hp[k][0], &t1->hp[k][0], ha1, ha2);
    mg_xo_vstore(&t0->hp[k][1], &t1->hp[k][1], hb1, hb2);
}

/* all-pass of crossover k on band j of two channels */
static inline void mg_xo_pair_ap(const mg_xo_coef *c, int k, int j, mg_xo_tree *t0, mg_xo_tree *t1,
                                 float *b0, float *b1, int n)
{
    const mg_xo_vc A = mg_xo_vcoef(&c->ap);
    mg_xo_v2 s1 = mg_xo_vload(&t0->ap[k][j], &t1->ap[k][j], 0), s2 = mg_xo_vload(&t0->ap[k][j], &t1->ap[k][j], 1);
    for (int i = 0; i < n; i++) {
        const mg_xo_v2 x = {b0[i], b1[i]};
        mg_xo_v2 y;
        MG_XO_STEP(A, x, y, s1, s2);
        b0[i] = (float)y[0];
        b1[i] = (float)y[1];
    }
    mg_xo_vstore(&t0->ap[k][j], &t1->ap[k][j], s1, s2);
}

/* two all-pass chains of crossover k (bands j and j + 1) in one loop */
static inline void mg_xo_pair_ap2(const mg_xo_coef *c, int k, int j, mg_xo_tree *t0, mg_xo_tree *t1,
                                  float *a0, float *a1, float *b0, float *b1, int n)
{
    const mg_xo_vc A = mg_xo_vcoef(&c->ap);
    mg_xo_v2 p1 = mg_xo_vload(&t0->ap[k][j], &t1->ap[k][j], 0), p2 = mg_xo_vload(&t0->ap[k][j], &t1->ap[k][j], 1);
    mg_xo_v2 q1 = mg_xo_vload(&t0->ap[k][j + 1], &t1->ap[k][j + 1], 0);
    mg_xo_v2 q2 = mg_xo_vload(&t0->ap[k][j + 1], &t1->ap[k][j + 1], 1);
    for (int i = 0; i < n; i++) {
        const mg_xo_v2 x = {a0[i], a1[i]}, w = {b0[i], b1[i]};
        mg_xo_v2 y, z;
        MG_XO_STEP(A, x, y, p1, p2);
        MG_XO_STEP(A, w, z, q1, q2);
        a0[i] = (float)y[0];
        a1[i] = (float)y[1];
        b0[i] = (float)z[0];
        b1[i] = (float)z[1];
    }
    mg_xo_vstore(&t0->ap[k][j], &t1->ap[k][j], p1, p2);
    mg_xo_vstore(&t0->ap[k][j + 1], &t1->ap[k][j + 1], q1, q2);
}

/* mg_xo_split for two channels (trees t0, t1; bands b0[], b1[], input in
 * place in b0[nx], b1[nx]). Crossover k with bit k of `glide` set moves from
 * c0[k] to c[k] over these n samples (per-section loops, each channel on its
 * own; `lanes` 1 skips the second channel there); the others run steady on c
 * with both channels in vector lanes. For one channel, pass a scratch tree
 * and scratch (silent) bands as the second. */
static inline void mg_xo_split_pair(const mg_xo_coef *c0, const mg_xo_coef *c, unsigned glide, int nx,
                                    mg_xo_tree *t0, mg_xo_tree *t1, float *const *b0,
                                    float *const *b1, int n, int lanes)
{
    mg_xo_tree *t[2] = {t0, t1};
    float *const *b[2] = {b0, b1};
    for (int k = 0; k < nx; k++) {
        if (glide >> k & 1u) {
            for (int l = 0; l < lanes; l++) {
                for (int j = 0; j < k; j++)
                    mg_bq_run_glide(&c0[k].ap, &c[k].ap, &t[l]->ap[k][j], b[l][j], n);
                memcpy(b[l][k], b[l][nx], sizeof(float) * (size_t)n);
                mg_bq_run_glide(&c0[k].lp, &c[k].lp, &t[l]->lp[k][0], b[l][k], n);
                mg_bq_run_glide(&c0[k].lp, &c[k].lp, &t[l]->lp[k][1], b[l][k], n);
                mg_bq_run_glide(&c0[k].hp, &c[k].hp, &t[l]->hp[k][0], b[l][nx], n);
                mg_bq_run_glide(&c0[k].hp, &c[k].hp, &t[l]->hp[k][1], b[l][nx], n);
            }
            continue;
        }
        int j = 0;
        for (; j + 1 < k; j += 2)
            mg_xo_pair_ap2(&c[k], k, j, t0, t1, b0[j], b1[j], b0[j + 1], b1[j + 1], n);
        if (j < k)
            mg_xo_pair_ap(&c[k], k, j, t0, t1, b0[j], b1[j], n);
        mg_xo_pair_stage(&c[k], k, t0, t1, b0[nx], b1[nx], b0[k], b1[k], n);
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
