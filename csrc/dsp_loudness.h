/* Loudness after ITU-R BS.1770-4 / EBU R 128 (Tech 3341, Tech 3342).
 *
 * - K-weighting: the pre-filter (high shelf) and the RLB high-pass as two
 *   biquads designed for any sample rate from the analogue prototypes fitted
 *   by B. De Man to the 48 kHz coefficients of BS.1770 (the same design as
 *   libebur128 and pyloudnorm's filter_class='DeMan'); at 48 kHz they give the
 *   Recommendation's Table 1/2 coefficients. Double precision, transposed
 *   direct form II.
 * - Gating statistics without unbounded memory: a fixed histogram of block
 *   loudness, 0.01 LU bins from -70 LUFS (the absolute gate) to +30 LUFS,
 *   holding per bin the number of blocks and the sum of their energies. The
 *   gated mean (integrated loudness) is then exact up to the blocks that fall
 *   in the one bin straddling the relative gate; percentiles (loudness range)
 *   are resolved to the mean loudness of the bin holding them (< 0.01 LU).
 *   Adding a block is O(1); reading a statistic scans at most MG_LH_BINS bins
 *   (done once per 100 ms block on the audio thread: arithmetic only).
 */
#ifndef DSP_LOUDNESS_H
#define DSP_LOUDNESS_H

#include <math.h>
#include "mg_node.h" /* mg_zalloc */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MG_LUFS_FLOOR (-200.0) /* reported when there is nothing to measure */
#define MG_LH_MIN (-70.0)      /* absolute gate, LUFS */
#define MG_LH_RES 100.0        /* bins per LU */
#define MG_LH_BINS 10000       /* -70 .. +30 LUFS */

typedef struct {
    double b0, b1, b2, a1, a2;
} mg_bq;

typedef struct {
    double s1, s2;
} mg_bq_state;

/* The two K-weighting stages for sample rate sr. */
static inline void mg_kweight_design(double sr, mg_bq *shelf, mg_bq *hp)
{
    const double pi = 3.14159265358979323846;
    /* stage 1: high shelf, +4 dB above ~1.7 kHz */
    double f0 = 1681.9744509555319, G = 3.99984385397, Q = 0.7071752369554193;
    double K = tan(pi * f0 / sr);
    double Vh = pow(10.0, G / 20.0);
    double Vb = pow(Vh, 0.499666774155);
    double a0 = 1.0 + K / Q + K * K;
    shelf->b0 = (Vh + Vb * K / Q + K * K) / a0;
    shelf->b1 = 2.0 * (K * K - Vh) / a0;
    shelf->b2 = (Vh - Vb * K / Q + K * K) / a0;
    shelf->a1 = 2.0 * (K * K - 1.0) / a0;
    shelf->a2 = (1.0 - K / Q + K * K) / a0;
    /* stage 2: RLB high-pass at ~38 Hz */
    f0 = 38.13547087613982;
    Q = 0.5003270373253953;
    K = tan(pi * f0 / sr);
    a0 = 1.0 + K / Q + K * K;
    hp->b0 = 1.0;
    hp->b1 = -2.0;
    hp->b2 = 1.0;
    hp->a1 = 2.0 * (K * K - 1.0) / a0;
    hp->a2 = (1.0 - K / Q + K * K) / a0;
}

/* K-weight n samples of x (st[0], st[1]: the two stages' states) and return
 * the sum of the squared weighted samples. Non-finite input restarts the
 * filters and contributes nothing. */
static inline double mg_kweight_energy(const mg_bq *restrict f1, const mg_bq *restrict f2,
                                       mg_bq_state *restrict st, const float *restrict x, int n)
{
    double a1 = st[0].s1, a2 = st[0].s2, c1 = st[1].s1, c2 = st[1].s2, sum = 0.0;
    for (int i = 0; i < n; i++) {
        const double v = x[i];
        const double u = f1->b0 * v + a1;
        a1 = f1->b1 * v - f1->a1 * u + a2;
        a2 = f1->b2 * v - f1->a2 * u;
        const double y = f2->b0 * u + c1;
        c1 = f2->b1 * u - f2->a1 * y + c2;
        c2 = f2->b2 * u - f2->a2 * y;
        sum += y * y;
    }
    if (!isfinite(sum) || !isfinite(a1 + a2 + c1 + c2)) {
        a1 = a2 = c1 = c2 = 0.0;
        sum = 0.0;
    }
    st[0].s1 = a1;
    st[0].s2 = a2;
    st[1].s1 = c1;
    st[1].s2 = c2;
    return sum;
}

/* mg_kweight_energy on two channels at once (the same arithmetic for each,
 * so the same results): their recursions run side by side instead of one
 * latency-bound loop after the other. */
static inline void mg_kweight_energy2(const mg_bq *restrict f1, const mg_bq *restrict f2,
                                      mg_bq_state *restrict st0, mg_bq_state *restrict st1,
                                      const float *restrict x0, const float *restrict x1, int n,
                                      double *e0, double *e1)
{
    double a1 = st0[0].s1, a2 = st0[0].s2, c1 = st0[1].s1, c2 = st0[1].s2, sum = 0.0;
    double p1 = st1[0].s1, p2 = st1[0].s2, q1 = st1[1].s1, q2 = st1[1].s2, sun = 0.0;
    for (int i = 0; i < n; i++) {
        const double v = x0[i], w = x1[i];
        const double u = f1->b0 * v + a1, t = f1->b0 * w + p1;
        a1 = f1->b1 * v - f1->a1 * u + a2;
        p1 = f1->b1 * w - f1->a1 * t + p2;
        a2 = f1->b2 * v - f1->a2 * u;
        p2 = f1->b2 * w - f1->a2 * t;
        const double y = f2->b0 * u + c1, z = f2->b0 * t + q1;
        c1 = f2->b1 * u - f2->a1 * y + c2;
        q1 = f2->b1 * t - f2->a1 * z + q2;
        c2 = f2->b2 * u - f2->a2 * y;
        q2 = f2->b2 * t - f2->a2 * z;
        sum += y * y;
        sun += z * z;
    }
    if (!isfinite(sum) || !isfinite(a1 + a2 + c1 + c2)) {
        a1 = a2 = c1 = c2 = 0.0;
        sum = 0.0;
    }
    if (!isfinite(sun) || !isfinite(p1 + p2 + q1 + q2)) {
        p1 = p2 = q1 = q2 = 0.0;
        sun = 0.0;
    }
    st0[0].s1 = a1, st0[0].s2 = a2, st0[1].s1 = c1, st0[1].s2 = c2;
    st1[0].s1 = p1, st1[0].s2 = p2, st1[1].s1 = q1, st1[1].s2 = q2;
    *e0 = sum;
    *e1 = sun;
}

/* Loudness of a (channel-weighted) mean square, BS.1770 eq. 2. */
static inline double mg_lufs(double z)
{
    if (!(z > 0.0))
        return MG_LUFS_FLOOR;
    double l = -0.691 + 10.0 * log10(z);
    return l < MG_LUFS_FLOOR ? MG_LUFS_FLOOR : l;
}

/* BS.1770-4 channel weights: 5.0 (L R C Ls Rs) and 5.1 (L R C LFE Ls Rs)
 * get 1.41 on the surrounds and 0 on the LFE; any other layout weighs 1. */
static inline double mg_loud_weight(int channels, int c)
{
    if (channels == 5)
        return c >= 3 ? 1.41 : 1.0;
    if (channels == 6)
        return c == 3 ? 0.0 : c >= 4 ? 1.41 : 1.0;
    return 1.0;
}

/* ---- histogram of block loudness ---- */

typedef struct {
    uint32_t *n;  /* blocks per bin */
    double *e;    /* sum of the blocks' mean squares per bin */
    double sum_e; /* over all blocks above the absolute gate */
    uint64_t count;
} mg_lhist;

/* [control] */
static inline int mg_lhist_alloc(mg_lhist *h)
{
    h->n = mg_zalloc(MG_LH_BINS, sizeof *h->n);
    h->e = mg_zalloc(MG_LH_BINS, sizeof *h->e);
    h->sum_e = 0.0;
    h->count = 0;
    return h->n && h->e ? 0 : -1;
}

static inline void mg_lhist_free(mg_lhist *h)
{
    free(h->n);
    free(h->e);
    h->n = NULL;
    h->e = NULL;
}

static inline void mg_lhist_clear(mg_lhist *h)
{
    if (h->count) {
        memset(h->n, 0, MG_LH_BINS * sizeof *h->n);
        memset(h->e, 0, MG_LH_BINS * sizeof *h->e);
    }
    h->sum_e = 0.0;
    h->count = 0;
}

static inline int mg_lhist_bin(double l)
{
    double k = floor((l - MG_LH_MIN) * MG_LH_RES);
    if (!(k >= 0.0))
        return 0;
    return k >= MG_LH_BINS - 1 ? MG_LH_BINS - 1 : (int)k;
}

/* Add a block of mean square z (channel-weighted); blocks under the
 * absolute gate (-70 LUFS) are not kept. */
static inline void mg_lhist_add(mg_lhist *h, double z)
{
    const double l = mg_lufs(z);
    if (!(l >= MG_LH_MIN) || !isfinite(z))
        return;
    const int k = mg_lhist_bin(l);
    h->n[k]++;
    h->e[k] += z;
    h->sum_e += z;
    h->count++;
}

/* The first bin above the relative gate `rel` LU under the ungated mean; *partial
 * tells whether bin k-1 straddles it and is in (by its mean loudness). */
static inline int mg_lhist_gate_bin(const mg_lhist *h, double rel)
{
    const double gate = mg_lufs(h->sum_e / (double)h->count) + rel;
    int k = mg_lhist_bin(gate);
    /* the straddling bin is in when its blocks' mean loudness is above the gate */
    if (h->n[k] && mg_lufs(h->e[k] / h->n[k]) <= gate)
        k++;
    return k;
}

/* Integrated loudness: mean of the blocks above the absolute gate and above
 * the relative gate (`rel` = -10 LU for BS.1770-4). */
static inline double mg_lhist_gated(const mg_lhist *h, double rel)
{
    if (!h->count)
        return MG_LUFS_FLOOR;
    double e = 0.0;
    uint64_t n = 0;
    for (int k = mg_lhist_gate_bin(h, rel); k < MG_LH_BINS; k++) {
        e += h->e[k];
        n += h->n[k];
    }
    return n ? mg_lufs(e / (double)n) : MG_LUFS_FLOOR;
}

/* The loudness of the idx-th (0-based, ascending) block from bin k0 on. */
static inline double mg_lhist_nth(const mg_lhist *h, int k0, uint64_t idx)
{
    uint64_t seen = 0;
    for (int k = k0; k < MG_LH_BINS; k++) {
        seen += h->n[k];
        if (seen > idx)
            return mg_lufs(h->e[k] / h->n[k]);
    }
    return MG_LUFS_FLOOR;
}

/* Loudness range (EBU Tech 3342): short-term blocks above the absolute gate
 * and 20 LU under their mean, 95th minus 10th percentile (indices as in the
 * Tech 3342 reference code: round((n-1) p)). */
static inline double mg_lhist_range(const mg_lhist *h)
{
    if (!h->count)
        return 0.0;
    const int k0 = mg_lhist_gate_bin(h, -20.0);
    uint64_t n = 0;
    for (int k = k0; k < MG_LH_BINS; k++)
        n += h->n[k];
    if (n < 2)
        return 0.0;
    const double lo = mg_lhist_nth(h, k0, (uint64_t)llround((double)(n - 1) * 0.10));
    const double hi = mg_lhist_nth(h, k0, (uint64_t)llround((double)(n - 1) * 0.95));
    return hi - lo;
}

#endif
