/* dsp_pitch.h: monophonic pitch detection (YIN) and a timbre-preserving
 * pitch shifter (TD-PSOLA), shared by the autotune and pitchshift nodes.
 *
 * Detector (pd_*), 70 Hz to 2.4 kHz: every hop (64 decimated samples,
 * 5.3 ms at 48 kHz) YIN runs on a decimated copy of the input (4th-order Butterworth low-pass,
 * then every D-th sample, D = round(fs / 12 kHz)): difference function over
 * W = 192 decimated samples for lags up to 1/PD_FMIN, cumulative-mean-
 * normalised difference (CMNDF), absolute threshold 0.15 then the local
 * minimum, parabolic interpolation. The period is then refined on the
 * full-rate signal: the plain difference function at the integer lags
 * within +-(D + 2) of the coarse period, and a parabola through the minimum.
 * Each estimate is stored with the centre time of its window; pd_at()
 * interpolates the track at any earlier time (the shifter asks at its
 * synthesis marks, which lag the input by the node's latency, so the pitch
 * it uses is centred on the audio it moves). Voiced: window RMS above
 * -70 dBFS and CMNDF minimum below 0.2 (0.35 to stay voiced);
 * confidence = 1 - CMNDF minimum.
 *
 * One note or a chord (pd_est.mono, what autotune corrects): YIN reads a
 * chord as one period too, at a common subharmonic of its notes (A4 + D#5 at
 * 211 Hz with confidence 0.90, an A major triad at 110 Hz with 0.99). A
 * voiced estimate is one note when (a) the full-rate difference at T over
 * the window's energy, d(T) / (e(0) + e(T)), is at most 2 %, (b) the
 * fundamental 1/T holds at least 0.1 % of the power over the last fM samples
 * (Goertzel under a Hann: pd_fund; a subharmonic of a chord holds nothing),
 * and (c) no period's energy there dips 2x below one before and one after it
 * (beating: a minor second, a cluster); a failed test holds "chord" for
 * 100 ms. Notes an octave apart (or a nearly just fifth) are one periodic
 * wave with its fundamental: no detector tells them from one note.
 *
 * Shifter (ps_*): TD-PSOLA with an overlap-add ring. Synthesis marks are
 * spaced by the output period S = Ta / ratio (Ta: detected period at the
 * mark, ratio: output / input frequency, 0.5..2); each mark takes a Hann
 * grain of half-width H = min(Ta, S) from the input centred d samples
 * earlier, where d advances by Ta - S per mark and is kept in (-1.5 Ta, 0]
 * by whole periods (a period repeated or skipped: the PSOLA pitch change;
 * the spectral envelope of each grain - the formants - stays). The first
 * voiced grain of a note (period 5 % away from the last grain's) is centred
 * on the largest sample of a period (the glottal pulse of a voice), and each
 * later one on the point, within +-6 % of a period of the predicted one,
 * whose period of waveform best matches the previous grain's (least
 * squares): the grains stay in phase whatever the detector's error, so the
 * output period is exactly S. Reads are fractional (4-point Lagrange,
 * coefficients fixed per grain).
 *
 * Why H = min(Ta, S) and a level per grain: the output's partials sample the
 * grain's spectrum at multiples of 1 / S. A grain of two periods (H = Ta)
 * has a spectrum that falls to zero one harmonic spacing from each partial
 * (any window that sums to 1 at hop Ta does: W(k / Ta) = 0), so a pure tone
 * - whose only "formant" is its own partial - shifted up by an octave
 * landed on that zero and came out silent (-131 dB at +12 semitones, -4 dB
 * at +7). Upward grains are therefore S long on each side (they sum to 1 at
 * hop S, and the partial's lobe spans 2 r f0, so the new fundamental sits at
 * most half-way down it), and each shifted grain is weighted so the output
 * keeps the input's power: the input's variance under a Hann of half-width
 * Ta (two whole periods: exact for a periodic input) over the mean square of
 * this grain repeated every S (its overlaps and their interference included),
 * square root (ps_level). A shifted grain has its window-weighted mean taken
 * off (grains repeated every S would otherwise build DC, half the output of a
 * sine moved up an octave). Peaks: the weight is held so the predicted output
 * peak stays within (1 + 0.2 |log2 r|) sqrt(max(r, 1/r)) times the input's
 * peak (a sine an octave down needs 1.63x for its level), and ps_pull_run holds
 * each output sample within 1.15x the largest bound of the shifted grains
 * over it (where grains of different shapes meet: a new note).
 *
 * Overlaps are divided by the sum of the windows wherever that exceeds 1.
 * Unvoiced input (noise, consonants, silence) and ratio 1 use d = 0 and
 * windows that sum to 1: the output is then the input delayed by the
 * latency L = 2 Hmax + 3 samples (Hmax = fs / PD_FMIN: 28.6 ms at 48 kHz),
 * sample for sample up to float rounding.
 *
 * Memory comes from mg_zalloc in pd_alloc / ps_alloc (the grain scratch
 * included); the per-sample calls do arithmetic only. */
#ifndef DSP_PITCH_H
#define DSP_PITCH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mg_node.h"

#define PD_PI 3.14159265358979323846
#define PD_FMIN 70.0    /* Hz: lowest detected pitch (sets the latency) */
#define PD_FMAX 2400.0  /* Hz: highest detected pitch */
#define PD_W 192        /* decimated samples in the YIN window */
#define PD_HOP 64       /* decimated samples between analyses (PD_W is 3 of them) */
#define PD_NEST 16      /* estimates kept for pd_at */
#define PD_RMAX 12      /* largest refine search radius */
#define PD_THRESH 0.15f /* YIN absolute threshold */
#define PD_ON 0.2f      /* CMNDF below this: voiced */
#define PD_OFF 0.35f    /* stay voiced below this */
#define PD_SILENCE 1e-7 /* mean square below this (-70 dBFS): unvoiced */
#define PD_MONO_APER 0.02  /* one note: full-rate d(T) / (e(0) + e(T)) at most this */
#define PD_MONO_FUND 1e-3f /* ... the fundamental's power share at least this */
#define PD_BEAT 2.0f       /* ... and no period whose energy is this far below one before and one after it */
#define PD_POLY_HOLD 0.1   /* s a chord verdict is held */

typedef struct {
    double t;  /* centre of the analysis window, input samples */
    float f;   /* Hz (0: unvoiced) */
    float conf;
    float fund;  /* the fundamental's share of the power (0..1), pd_fund */
    int voiced;
    int mono;    /* voiced and one note (pd_fund: not a chord or cluster) */
} pd_est;

typedef struct {
    double fs;
    int D;              /* decimation factor */
    double bq[2][5];    /* low-pass biquads: b0 b1 b2 a1 a2 */
    double z[2][2];     /* their states (transposed direct form II) */
    int dphase;
    float *dr;          /* decimated ring, doubled (2 * dM) so windows are contiguous */
    int dM, dpos;
    float *fr;          /* full-rate ring, doubled (2 * fM) */
    int fM, fpos;
    int lmin, lmax;     /* decimated lag range */
    int Wf, R, tmaxf;   /* full-rate refine window, lag search radius, longest lag */
    int hop, hcount;    /* input samples per analysis */
    float *cm;          /* CMNDF scratch, lmax + 2 */
    float *bp;          /* difference function of hop-blocks of the window: 4 slots of ntau */
    int64_t bkey[4];    /* the decimated sample each slot's block starts at (-1: none) */
    int ntau;           /* lags per slot: lmax + 1 rounded up to 64 */
    int64_t ndec;       /* decimated samples pushed */
    double *hw;         /* Hann window over the full-rate ring (fM), for pd_fund,
                           eighth-interleaved: hw[8 j + q] = w(q fM/8 + j), each
                           value a float's (the window is rounded to float) */
    double hw_sum;      /* its sum */
    float *pe;          /* per-period energies over that ring and their running maxima, fM + 4 */
    int64_t poly_until; /* input sample until which estimates are not mono */
    int64_t n;          /* input samples pushed */
    int voiced;
    pd_est est[PD_NEST];
    int ne, head;       /* estimates stored; index of the next write */
} pd_det;

static inline float pd_sane(float x)
{
    return isfinite(x) ? x : 0.0f;
}

static inline uint32_t pd_pow2(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* Sum of (a[j] - b[j])^2 over n, in eight-lane vectors (GCC/Clang vector
 * extension; two accumulators), so it vectorises without reassociation flags. */
typedef float pd_v8 __attribute__((vector_size(32)));

MG_HOT static float pd_sqdiff(const float *a, const float *b, int n)
{
    pd_v8 s0 = {0, 0, 0, 0, 0, 0, 0, 0}, s1 = s0;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        pd_v8 x0, y0, x1, y1;
        memcpy(&x0, a + j, sizeof x0);
        memcpy(&y0, b + j, sizeof y0);
        memcpy(&x1, a + j + 8, sizeof x1);
        memcpy(&y1, b + j + 8, sizeof y1);
        const pd_v8 e0 = x0 - y0, e1 = x1 - y1;
        s0 += e0 * e0;
        s1 += e1 * e1;
    }
    s0 += s1;
    float t = 0.0f;
    for (; j < n; j++) {
        const float e = a[j] - b[j];
        t += e * e;
    }
    return t + ((s0[0] + s0[4]) + (s0[1] + s0[5])) + ((s0[2] + s0[6]) + (s0[3] + s0[7]));
}

/* dv[k] = pd_sqdiff(a, b + k, n) for k < nl, bit for bit: the lags four at
 * a time over one pass of a (each a vector loaded once for the four), each
 * lag with pd_sqdiff's own two accumulators, samples and sums in its order.
 * The lags' accumulator chains are independent, so they run side by side
 * instead of one lag's chain after another's. */
MG_HOT static void pd_sqdiff_lags(float *restrict dv, const float *a, const float *b, int n,
                                  int nl)
{
    int k = 0;
    for (; k + 4 <= nl; k += 4) {
        pd_v8 s0[4], s1[4];
        for (int l = 0; l < 4; l++)
            s0[l] = s1[l] = (pd_v8){0, 0, 0, 0, 0, 0, 0, 0};
        int j = 0;
        for (; j + 16 <= n; j += 16) {
            pd_v8 x0, x1;
            memcpy(&x0, a + j, sizeof x0);
            memcpy(&x1, a + j + 8, sizeof x1);
            for (int l = 0; l < 4; l++) {
                pd_v8 y0, y1;
                memcpy(&y0, b + k + l + j, sizeof y0);
                memcpy(&y1, b + k + l + j + 8, sizeof y1);
                const pd_v8 e0 = x0 - y0, e1 = x1 - y1;
                s0[l] += e0 * e0;
                s1[l] += e1 * e1;
            }
        }
        for (int l = 0; l < 4; l++) {
            const pd_v8 v = s0[l] + s1[l];
            float t = 0.0f;
            for (int i = j; i < n; i++) {
                const float e = a[i] - b[k + l + i];
                t += e * e;
            }
            dv[k + l] = t + ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
        }
    }
    for (; k < nl; k++)
        dv[k] = pd_sqdiff(a, b + k, n);
}

/* Sum of a[j]^2 over n, in eight float lanes (the period energies of the
 * beating test, compared by factors of 2). */
MG_HOT static float pd_sqsum(const float *a, int n)
{
    pd_v8 s0 = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        pd_v8 x0;
        memcpy(&x0, a + j, sizeof x0);
        s0 += x0 * x0;
    }
    float t = 0.0f;
    for (; j < n; j++)
        t += a[j] * a[j];
    return t + ((s0[0] + s0[4]) + (s0[1] + s0[5])) + ((s0[2] + s0[6]) + (s0[3] + s0[7]));
}

/* Sum of a[j]^2 over n in double, four partial sums (independent chains,
 * the lanes of one 4-double vector: partial sum k takes j = k mod 4). */
typedef double pd_d4 __attribute__((vector_size(32)));
typedef float pd_f4 __attribute__((vector_size(16)));
typedef int pd_i4 __attribute__((vector_size(16)));

static inline double pd_sqsum_d(const float *a, int n)
{
    pd_d4 p = {0.0, 0.0, 0.0, 0.0};
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        pd_f4 xf;
        memcpy(&xf, a + j, sizeof xf);
        const pd_d4 x = __builtin_convertvector(xf, pd_d4);
        p += x * x;
    }
    double p0 = p[0];
    for (; j < n; j++)
        p0 += (double)a[j] * a[j];
    return (p0 + p[1]) + (p[2] + p[3]);
}

/* p[tau] = sum over j < PD_HOP of (x[j] - x[j + tau])^2, tau = 0..ntau-1 (a
 * multiple of 64): 64 lags at a time in eight 8-lane accumulators, the
 * samples in order (each lag's sum runs over j in order). */
MG_HOT static void pd_block_diff(float *restrict p, const float *restrict x, int ntau)
{
    for (int t0 = 0; t0 < ntau; t0 += 64) {
        pd_v8 a[8];
        for (int g = 0; g < 8; g++)
            a[g] = (pd_v8){0, 0, 0, 0, 0, 0, 0, 0};
        for (int j = 0; j < PD_HOP; j++) {
            const float xj = x[j];
            for (int g = 0; g < 8; g++) {
                pd_v8 y;
                memcpy(&y, x + j + t0 + 8 * g, sizeof y);
                const pd_v8 e = xj - y;
                a[g] += e * e;
            }
        }
        memcpy(p + t0, a, sizeof a);
    }
}

static inline void pd_lowpass(double *c, double fc, double fs, double q)
{
    const double w = 2.0 * PD_PI * fc / fs, cw = cos(w), al = sin(w) / (2.0 * q);
    const double a0 = 1.0 + al;
    c[0] = (1.0 - cw) / 2.0 / a0;
    c[1] = (1.0 - cw) / a0;
    c[2] = c[0];
    c[3] = -2.0 * cw / a0;
    c[4] = (1.0 - al) / a0;
}

static inline void pd_reset(pd_det *s)
{
    memset(s->z, 0, sizeof s->z);
    memset(s->dr, 0, 2 * (size_t)s->dM * sizeof *s->dr);
    memset(s->fr, 0, 2 * (size_t)s->fM * sizeof *s->fr);
    s->dphase = s->dpos = s->fpos = s->hcount = 0;
    s->n = 0;
    s->poly_until = 0;
    s->voiced = 0;
    s->ne = s->head = 0;
    s->ndec = 0;
    for (int k = 0; k < 4; k++)
        s->bkey[k] = -1;
}

/* [control] 0 = ok */
static inline int pd_alloc(pd_det *s, double fs)
{
    s->fs = fs;
    s->D = (int)lround(fs / 12000.0);
    if (s->D < 1)
        s->D = 1;
    const double fsd = fs / s->D;
    const double fc = fsd / 3.0;
    pd_lowpass(s->bq[0], fc, fs, 0.54119610);
    pd_lowpass(s->bq[1], fc, fs, 1.30656296);
    s->lmax = (int)ceil(fsd / PD_FMIN) + 1;
    s->lmin = (int)floor(fsd / PD_FMAX);
    if (s->lmin < 2)
        s->lmin = 2;
    s->dM = (int)pd_pow2((uint32_t)(PD_W + s->lmax + 2));
    s->Wf = PD_W * s->D;
    s->R = s->D + 2 > PD_RMAX ? PD_RMAX : s->D + 2;
    s->tmaxf = (int)ceil(fs / PD_FMIN) + 3 * s->D + s->R + 8;
    s->fM = (int)pd_pow2((uint32_t)(s->Wf + s->tmaxf + 2));
    s->hop = PD_HOP * s->D;
    s->ntau = (s->lmax + 1 + 63) / 64 * 64;
    /* pd_block_diff reads up to ntau - lmax samples past the window's end */
    s->dr = mg_zalloc(2 * (size_t)s->dM + (size_t)s->ntau, sizeof(float));
    s->bp = mg_zalloc(4 * (size_t)s->ntau, sizeof(float));
    s->fr = mg_zalloc(2 * (size_t)s->fM, sizeof(float));
    s->cm = mg_zalloc((size_t)s->lmax + 2, sizeof(float));
    s->hw = mg_zalloc((size_t)s->fM, sizeof(double));
    s->pe = mg_zalloc((size_t)s->fM + 4, sizeof(float));
    if (!s->dr || !s->fr || !s->cm || !s->hw || !s->pe || !s->bp)
        return -1;
    /* hw eighth-interleaved for pd_fund: hw[8 j + q] = w(q fM/8 + j) */
    s->hw_sum = 0.0;
    for (int j = 0; j < s->fM; j++) {
        const float w = (float)(0.5 - 0.5 * cos(2.0 * PD_PI * (j + 0.5) / s->fM));
        s->hw[8 * (j % (s->fM / 8)) + j / (s->fM / 8)] = w;
        s->hw_sum += w;
    }
    pd_reset(s);
    return 0;
}

static inline void pd_free(pd_det *s)
{
    free(s->dr);
    free(s->fr);
    free(s->cm);
    free(s->bp);
    s->bp = NULL;
    free(s->hw);
    free(s->pe);
    s->dr = s->fr = s->cm = s->pe = NULL;
    s->hw = NULL;
}

static inline void pd_store(pd_det *s, double t, float f, float conf, float fund, int voiced,
                            int mono)
{
    s->est[s->head] = (pd_est){t, voiced ? f : 0.0f, conf, fund, voiced, voiced && mono};
    s->head = (s->head + 1) % PD_NEST;
    if (s->ne < PD_NEST)
        s->ne++;
}

/* The share of the power the fundamental 1/T holds over the full-rate ring
 * (the latest fM samples, 43 ms at 48 kHz, Hann: main lobe +-2 fs/fM, so the
 * second harmonic of the lowest pitch is outside it). A monophonic voice or
 * instrument has a partial at its fundamental; a chord read at a common
 * subharmonic of its notes (A4 + D#5 at 211 Hz, an A major triad at 110 Hz)
 * has next to nothing there. */
MG_HOT static float pd_fund(const pd_det *s, double T, int *beat)
{
    const float *x = s->fr + s->fpos;
    const int n = s->fM;
    /* beating (two or more notes a few Hz to a few tens of Hz apart): a
     * period whose energy dips PD_BEAT times below a period before it and a
     * period after it; an onset or a decay only rises or falls */
    {
        int P = (int)lround(T);
        P = P < 2 ? 2 : P;
        const int K = n / P;
        float *e = s->pe;
        for (int k = 0; k < K; k++)
            e[k] = pd_sqsum(x + n - (K - k) * P, P);
        /* the largest energy before each period (pm), then after it (after) */
        float *pm = s->pe + n / 2 + 2;
        float before = 0.0f;
        for (int k = 0; k < K; k++) {
            pm[k] = before;
            before = e[k] > before ? e[k] : before;
        }
        float after = 0.0f;
        *beat = 0;
        for (int k = K - 1; k >= 0 && !*beat; k--) {
            const float lim = PD_BEAT * e[k];
            *beat = pm[k] >= lim && after >= lim && lim > 0.0f;
            after = e[k] > after ? e[k] : after;
        }
    }
    /* Goertzel at w = 2 pi / T, as eight independent recursions over the
     * eight eighths of the ring (two vectors of four: their chains
     * interleave): eighth q, of length L from q L, ends with
     * Y_q = s1 - e^-iw s2 = e^iw(L-1) X_q, and X = sum_q e^-iw q L X_q, so
     * |X|^2 = |sum_q e^-iw q L Y_q|^2 */
    const double wf = 2.0 * PD_PI / T, cw = 2.0 * cos(wf);
    const int L = n / 8;
    double s1[8], s2[8], sxq[8];
    {
        /* the eight recursions are the lanes of two 4-double vectors (a:
         * eighths 0-3, b: 4-7); the window is stored eighth-interleaved
         * (hw[8 j + q] = w(q L + j)) */
        pd_d4 a1 = {0.0, 0.0, 0.0, 0.0}, a2 = a1, axx = a1, b1 = a1, b2 = a1, bxx = a1;
        /* four j a step: one 4-float load per eighth, transposed 4x4 (per
         * four eighths) into the lanes {x0[j], x1[j], x2[j], x3[j]} and
         * {x4[j] .. x7[j]} (L is a multiple of 4) */
        const pd_i4 ulo = {0, 4, 1, 5}, uhi = {2, 6, 3, 7};
        const pd_i4 plo = {0, 1, 4, 5}, phi = {2, 3, 6, 7};
        for (int j = 0; j < L; j += 4) {
            pd_f4 xa[4], xb[4];
            for (int h = 0; h < 2; h++) {
                pd_f4 q[4];
                for (int r = 0; r < 4; r++)
                    memcpy(&q[r], x + (4 * h + r) * L + j, sizeof q[r]);
                const pd_f4 t0 = __builtin_shuffle(q[0], q[1], ulo);
                const pd_f4 t1 = __builtin_shuffle(q[0], q[1], uhi);
                const pd_f4 t2 = __builtin_shuffle(q[2], q[3], ulo);
                const pd_f4 t3 = __builtin_shuffle(q[2], q[3], uhi);
                pd_f4 *o = h ? xb : xa;
                o[0] = __builtin_shuffle(t0, t2, plo);
                o[1] = __builtin_shuffle(t0, t2, phi);
                o[2] = __builtin_shuffle(t1, t3, plo);
                o[3] = __builtin_shuffle(t1, t3, phi);
            }
            for (int i = 0; i < 4; i++) {
                const pd_d4 xva = __builtin_convertvector(xa[i], pd_d4);
                const pd_d4 xvb = __builtin_convertvector(xb[i], pd_d4);
                pd_d4 wa, wb;
                memcpy(&wa, s->hw + 8 * (j + i), sizeof wa);
                memcpy(&wb, s->hw + 8 * (j + i) + 4, sizeof wb);
                const pd_d4 va = wa * xva, vb = wb * xvb;
                const pd_d4 sa = va + cw * a1 - a2, sb = vb + cw * b1 - b2;
                a2 = a1;
                a1 = sa;
                b2 = b1;
                b1 = sb;
                axx += va * xva;
                bxx += vb * xvb;
            }
        }
        for (int q = 0; q < 4; q++) {
            s1[q] = a1[q];
            s2[q] = a2[q];
            sxq[q] = axx[q];
            s1[q + 4] = b1[q];
            s2[q + 4] = b2[q];
            sxq[q + 4] = bxx[q];
        }
    }
    double xr = 0.0, xi = 0.0;
    {
        const double cwf = cos(wf), swf = sin(wf);
        const double cl = cos(wf * L), sl = -sin(wf * L); /* e^-iw L */
        double c = 1.0, sn = 0.0;                          /* e^-iw q L */
        for (int q = 0; q < 8; q++) {
            const double yr = s1[q] - cwf * s2[q], yi = swf * s2[q]; /* s1 - e^-iw s2 */
            xr += c * yr - sn * yi;
            xi += c * yi + sn * yr;
            const double nc = c * cl - sn * sl;
            sn = sn * cl + c * sl;
            c = nc;
        }
    }
    const double sw = s->hw_sum;
    const double sxx = ((sxq[0] + sxq[1]) + (sxq[2] + sxq[3])) +
                       ((sxq[4] + sxq[5]) + (sxq[6] + sxq[7]));
    const double re2 = xr * xr + xi * xi; /* |X(1/T)|^2 */
    if (!(sxx > 0.0 && sw > 0.0))
        return 0.0f;
    const double p1 = 2.0 * re2 / (sw * sw); /* A^2 / 2 with A = 2 |X| / sum w */
    const double r = p1 / (sxx / sw);
    return r < 0.0 ? 0.0f : r > 1.0 ? 1.0f : (float)r;
}

/* One analysis over the latest samples (end = s->n). */
MG_HOT static void pd_analyse(pd_det *s)
{
    const int W = PD_W, lmax = s->lmax, N = W + lmax + 1;
    const float *x = s->dr + s->dpos + s->dM - N;
    const double end = (double)s->n;
    const double e = pd_sqsum_d(x, N);
    if (!(e / N >= PD_SILENCE)) {
        s->voiced = 0;
        pd_store(s, end - 0.5 * N * s->D, 0.0f, 0.0f, 0.0f, 0, 0);
        return;
    }
    /* the difference function d(tau) = sum over the window's three hop-blocks
     * of each block's own sum: a block's sum depends only on its samples and
     * those after it, so it is computed once, when it is the newest block,
     * and kept for the next two analyses (slots keyed by where it starts) */
    const float *bd[PD_W / PD_HOP];
    for (int b = 0; b < PD_W / PD_HOP; b++) {
        const int64_t key = s->ndec - N + (int64_t)PD_HOP * b;
        const int slot = (int)(((uint64_t)(key + ((int64_t)1 << 40)) / PD_HOP) & 3u);
        float *p = s->bp + (size_t)slot * s->ntau;
        if (s->bkey[slot] != key) {
            pd_block_diff(p, x + PD_HOP * b, s->ntau);
            s->bkey[slot] = key;
        }
        bd[b] = p;
    }
    float *cm = s->cm;
    float run = 0.0f;
    cm[0] = 1.0f;
    for (int tau = 1; tau <= lmax; tau++) {
        const float d = (bd[0][tau] + bd[1][tau]) + bd[2][tau];
        run += d;
        cm[tau] = run > 0.0f ? d * (float)tau / run : 1.0f;
    }
    int best = -1;
    for (int tau = s->lmin; tau < lmax; tau++)
        if (cm[tau] < PD_THRESH) {
            while (tau + 1 < lmax && cm[tau + 1] < cm[tau])
                tau++;
            best = tau;
            break;
        }
    if (best < 0) {
        best = s->lmin;
        for (int tau = s->lmin + 1; tau < lmax; tau++)
            if (cm[tau] < cm[best])
                best = tau;
    }
    const float cmin = cm[best];
    double tc = best;
    if (best > s->lmin && best < lmax) {
        const double a = cm[best - 1], b = cm[best], c = cm[best + 1];
        const double den = a - 2.0 * b + c;
        if (den > 0.0) {
            const double off = 0.5 * (a - c) / den;
            if (off > -1.0 && off < 1.0)
                tc += off;
        }
    }
    /* refine at the full rate: the plain difference function around tc * D */
    const int R = s->R;
    int t0 = (int)lround(tc * s->D);
    if (t0 > s->tmaxf - R - 1)
        t0 = s->tmaxf - R - 1;
    const int tmax = t0 + R + 1;
    const float *y = s->fr + s->fpos + s->fM - (s->Wf + tmax);
    float dv[2 * PD_RMAX + 1];
    int tb = -1;
    {
        /* the lags t >= 2 (k >= k2) in one pass (pd_sqdiff_lags) */
        const int k2 = 2 - (t0 - R) > 0 ? 2 - (t0 - R) : 0;
        for (int k = 0; k < k2 && k <= 2 * R; k++)
            dv[k] = INFINITY;
        if (k2 <= 2 * R)
            pd_sqdiff_lags(dv + k2, y, y + t0 - R + k2, s->Wf, 2 * R + 1 - k2);
    }
    for (int k = 0; k <= 2 * R; k++) {
        const int t = t0 - R + k;
        if (t >= 2 && (tb < 0 || dv[k] < dv[tb]))
            tb = k;
    }
    double T = tc * s->D;
    double aper = 1.0; /* full-rate aperiodicity: d(T) / (e(0) + e(T)) */
    if (tb >= 0) {
        T = t0 - R + tb;
        double dmin = dv[tb];
        if (tb > 0 && tb < 2 * R && isfinite(dv[tb - 1])) {
            const double a = dv[tb - 1], b = dv[tb], c = dv[tb + 1];
            const double den = a - 2.0 * b + c;
            if (den > 0.0) {
                const double off = 0.5 * (a - c) / den;
                if (off > -1.0 && off < 1.0) {
                    T += off;
                    dmin = b - 0.25 * (a - c) * off;
                }
            }
        }
        const int ti = t0 - R + tb;
        const double e0 = pd_sqsum_d(y, s->Wf), e1 = pd_sqsum_d(y + ti, s->Wf);
        aper = e0 + e1 > 0.0 ? (dmin > 0.0 ? dmin : 0.0) / (e0 + e1) : 1.0;
    }
    const float conf = cmin < 0.0f ? 1.0f : cmin > 1.0f ? 0.0f : 1.0f - cmin;
    int v = cmin < (s->voiced ? PD_OFF : PD_ON);
    if (!(T >= s->fs / PD_FMAX * 0.97 && T <= s->fs / PD_FMIN))
        v = 0;
    s->voiced = v;
    float fund = 0.0f;
    int mono = 0;
    if (v) {
        int beat = 0;
        fund = pd_fund(s, T, &beat);
        /* one note: the period repeats at the full rate to within 2 % of the
         * power (steady and vibrato tones here: < 0.05 %; the chords of the
         * tests: 2.4 % to 22 %, or caught below), the fundamental holds at
         * least 0.1 % of it (a formant-filtered voice: 0.8 %; a chord read at
         * a common subharmonic: < 0.005 %), and no beating (a minor second,
         * a cluster); a chord holds the verdict for PD_POLY_HOLD seconds */
        if (!(aper <= PD_MONO_APER && fund >= PD_MONO_FUND) || beat)
            s->poly_until = s->n + (int64_t)(PD_POLY_HOLD * s->fs);
        mono = s->n >= s->poly_until;
    }
    pd_store(s, end - (s->Wf + tmax) + 0.5 * (s->Wf + T), v ? (float)(s->fs / T) : 0.0f, conf,
             fund, v, mono);
}

/* [audio] one input sample (finite) */
static inline void pd_push(pd_det *s, float x)
{
    s->fr[s->fpos] = x;
    s->fr[s->fpos + s->fM] = x;
    s->fpos = (s->fpos + 1) & (s->fM - 1);
    /* low-pass (two biquads, transposed direct form II) */
    double v = x;
    for (int k = 0; k < 2; k++) {
        const double *c = s->bq[k];
        double *z = s->z[k];
        const double o = c[0] * v + z[0];
        z[0] = c[1] * v - c[3] * o + z[1];
        z[1] = c[2] * v - c[4] * o;
        v = o;
    }
    if (++s->dphase >= s->D) {
        s->dphase = 0;
        const float dv = (float)v;
        s->dr[s->dpos] = dv;
        s->dr[s->dpos + s->dM] = dv;
        s->dpos = (s->dpos + 1) & (s->dM - 1);
        s->ndec++;
    }
    s->n++;
    if (++s->hcount >= s->hop) {
        s->hcount = 0;
        if (!(isfinite(s->z[0][0]) && isfinite(s->z[0][1]) && isfinite(s->z[1][0]) &&
              isfinite(s->z[1][1])))
            memset(s->z, 0, sizeof s->z);
        pd_analyse(s);
    }
}

/* dst[(k0 + j) mod M] and its double dst[(k0 + j) mod M + M] = x[j], j < m
 * <= M: a doubled ring written in at most two contiguous stretches */
static inline void pd_ring_put(float *restrict dst, int M, int k0, const float *restrict x, int m)
{
    const int n1 = m < M - k0 ? m : M - k0;
    memcpy(dst + k0, x, (size_t)n1 * sizeof(float));
    memcpy(dst + k0 + M, x, (size_t)n1 * sizeof(float));
    memcpy(dst, x + n1, (size_t)(m - n1) * sizeof(float));
    memcpy(dst + M, x + n1, (size_t)(m - n1) * sizeof(float));
}

/* [audio] m input samples (finite) that complete no hop (s->hcount + m <
 * s->hop): pd_push's work for a run of samples, the same arithmetic in the
 * same order (not MG_HOT: the low-pass stays as pd_push rounds it, without
 * fused multiply-adds), with no analysis among them. */
static inline void pd_push_run(pd_det *s, const float *restrict x, int m)
{
    const int fmask = s->fM - 1, dmask = s->dM - 1;
    int dp = s->dpos, ph = s->dphase;
    pd_ring_put(s->fr, s->fM, s->fpos, x, m);
    const int fp = (s->fpos + m) & fmask;
    const double b00 = s->bq[0][0], b01 = s->bq[0][1], b02 = s->bq[0][2], b03 = s->bq[0][3],
                 b04 = s->bq[0][4];
    const double b10 = s->bq[1][0], b11 = s->bq[1][1], b12 = s->bq[1][2], b13 = s->bq[1][3],
                 b14 = s->bq[1][4];
    double z00 = s->z[0][0], z01 = s->z[0][1], z10 = s->z[1][0], z11 = s->z[1][1];
    for (int j = 0; j < m; j++) {
        const double v = x[j];
        const double o0 = b00 * v + z00;
        z00 = b01 * v - b03 * o0 + z01;
        z01 = b02 * v - b04 * o0;
        const double o1 = b10 * o0 + z10;
        z10 = b11 * o0 - b13 * o1 + z11;
        z11 = b12 * o0 - b14 * o1;
        if (++ph >= s->D) {
            ph = 0;
            const float dv = (float)o1;
            s->dr[dp] = dv;
            s->dr[dp + s->dM] = dv;
            dp = (dp + 1) & dmask;
            s->ndec++;
        }
    }
    s->z[0][0] = z00;
    s->z[0][1] = z01;
    s->z[1][0] = z10;
    s->z[1][1] = z11;
    s->fpos = fp;
    s->dpos = dp;
    s->dphase = ph;
    s->n += m;
    s->hcount += m;
}

/* The track at time t (input samples): interpolated between the estimates
 * around t, the latest one held beyond it. Returns voiced; *f in Hz. */
static inline int pd_at(const pd_det *s, double t, double *f, float *conf)
{
    if (s->ne == 0) {
        *f = 0.0;
        *conf = 0.0f;
        return 0;
    }
    const int newest = (s->head + PD_NEST - 1) % PD_NEST;
    int i = newest, k = 0;
    while (k < s->ne - 1 && s->est[i].t > t) {
        i = (i + PD_NEST - 1) % PD_NEST;
        k++;
    }
    const pd_est *a = &s->est[i];
    if (i == newest || a->t > t) {
        *f = a->f;
        *conf = a->conf;
        return a->voiced;
    }
    const pd_est *b = &s->est[(i + 1) % PD_NEST];
    const double w = b->t > a->t ? (t - a->t) / (b->t - a->t) : 1.0;
    if (a->voiced && b->voiced) {
        *f = a->f + w * (b->f - a->f);
        *conf = (float)(a->conf + w * (b->conf - a->conf));
        return 1;
    }
    const pd_est *c = w < 0.5 ? a : b;
    *f = c->f;
    *conf = c->conf;
    return c->voiced;
}

/* The one-note verdict (pd_est.mono) of the estimate nearest time t. */
static inline int pd_mono_at(const pd_det *s, double t)
{
    if (s->ne == 0)
        return 0;
    int i = (s->head + PD_NEST - 1) % PD_NEST, k = 0, best = i;
    double bd = fabs(s->est[i].t - t);
    while (k < s->ne - 1) {
        i = (i + PD_NEST - 1) % PD_NEST;
        k++;
        if (fabs(s->est[i].t - t) < bd) {
            bd = fabs(s->est[i].t - t);
            best = i;
        }
    }
    return s->est[best].mono;
}

/* ---- TD-PSOLA shifter ------------------------------------------------------ */

#define PS_MAXCH 2
#define PS_RMAX 16 /* largest waveform-matching search, samples */
#define PS_PEAK 0.2         /* shifted peak bound: (1 + PS_PEAK |log2 r|) sqrt(max(r, 1/r)) input peaks */
#define PS_PEAK_MARGIN 1.15f /* output held within this times that bound */

typedef struct {
    double fs;
    int ch;
    float *in[PS_MAXCH];  /* input rings (mask iM - 1), doubled: 2 iM, windows contiguous */
    float *mono;          /* what grains are matched on: in[0], or the mean of two channels */
    float *acc[PS_MAXCH]; /* overlap-add rings (mask oM - 1) */
    float *wacc;          /* sum of windows */
    float *pacc;          /* the largest peak bound of the shifted grains here (0: none) */
    float *gw, *gx[PS_MAXCH]; /* one grain's window and input samples (2 Hmax + 4) */
    double *ly;           /* ps_level's output period, sampled (2 Hmax + 4) */
    double *lw, *lv;      /* ps_level's three windows (3 Hmax + 16 each, one after
                             another) and grid terms (3 Hmax + 16) */
    float *lf;            /* ps_level's interpolated grain, or its grid's fractions and
                             indices (2 (3 Hmax + 16) floats) */
    int iM, oM;
    int Hmax, L, Tu;
    int64_t n;            /* input samples pushed */
    double ts, d;         /* next synthesis mark; its source offset */
    double src_prev;      /* source centre of the previous grain */
    double Ta_prev;       /* its period */
    int prev_voiced;
} ps_shift;

static inline int ps_latency(const ps_shift *s)
{
    return s->L;
}

static inline void ps_reset(ps_shift *s)
{
    for (int c = 0; c < s->ch; c++) {
        memset(s->in[c], 0, 2 * (size_t)s->iM * sizeof(float));
        memset(s->acc[c], 0, (size_t)s->oM * sizeof(float));
    }
    memset(s->wacc, 0, (size_t)s->oM * sizeof(float));
    memset(s->pacc, 0, (size_t)s->oM * sizeof(float));
    if (s->ch > 1)
        memset(s->mono, 0, 2 * (size_t)s->iM * sizeof(float));
    s->src_prev = 0.0;
    s->Ta_prev = 0.0;
    s->prev_voiced = 0;
    s->n = 0;
    s->ts = 0.0;
    s->d = 0.0;
}

static inline int ps_alloc(ps_shift *s, double fs, int ch)
{
    s->fs = fs;
    s->ch = ch < 1 ? 1 : ch > PS_MAXCH ? PS_MAXCH : ch;
    s->Hmax = (int)ceil(fs / PD_FMIN);
    s->L = 2 * s->Hmax + 3;
    s->Tu = (int)lround(fs * 0.005);
    if (s->Tu < 2)
        s->Tu = 2;
    s->iM = (int)pd_pow2((uint32_t)(6 * s->Hmax + 64));
    s->oM = (int)pd_pow2((uint32_t)(2 * s->Hmax + 16));
    for (int c = 0; c < s->ch; c++) {
        s->in[c] = mg_zalloc(2 * (size_t)s->iM, sizeof(float));
        s->acc[c] = mg_zalloc((size_t)s->oM, sizeof(float));
        if (!s->in[c] || !s->acc[c])
            return -1;
    }
    s->wacc = mg_zalloc((size_t)s->oM, sizeof(float));
    s->pacc = mg_zalloc((size_t)s->oM, sizeof(float));
    if (!s->pacc)
        return -1;
    const size_t gn = 2 * (size_t)s->Hmax + 4;
    s->gw = mg_zalloc(gn, sizeof(float));
    s->ly = mg_zalloc(gn, sizeof(double));
    const size_t ln = 3 * (size_t)s->Hmax + 16;
    s->lw = mg_zalloc(3 * ln, sizeof(double)); /* ps_level's three windows */
    s->lv = mg_zalloc(ln, sizeof(double));
    s->lf = mg_zalloc(2 * ln, sizeof(float));
    if (!s->ly || !s->lw || !s->lv || !s->lf)
        return -1;
    for (int c = 0; c < s->ch; c++)
        if (!(s->gx[c] = mg_zalloc(gn, sizeof(float))))
            return -1;
    if (!s->gw)
        return -1;
    s->mono = s->ch > 1 ? mg_zalloc(2 * (size_t)s->iM, sizeof(float)) : s->in[0];
    if (!s->wacc || !s->mono)
        return -1;
    ps_reset(s);
    return 0;
}

static inline void ps_free(ps_shift *s)
{
    if (s->mono && s->mono != s->in[0])
        free(s->mono);
    for (int c = 0; c < PS_MAXCH; c++) {
        free(s->in[c]);
        free(s->acc[c]);
        s->in[c] = s->acc[c] = NULL;
    }
    free(s->wacc);
    free(s->pacc);
    s->pacc = NULL;
    free(s->gw);
    free(s->ly);
    s->ly = NULL;
    free(s->lw);
    free(s->lv);
    free(s->lf);
    s->lw = s->lv = NULL;
    s->lf = NULL;
    for (int c = 0; c < PS_MAXCH; c++) {
        free(s->gx[c]);
        s->gx[c] = NULL;
    }
    s->wacc = s->mono = s->gw = NULL;
}

/* [audio] one input frame (finite samples, s->ch of them) and their mean */
static inline void ps_push(ps_shift *s, const float *x, float mean)
{
    const int k = (int)(s->n & (s->iM - 1));
    for (int c = 0; c < s->ch; c++)
        s->in[c][k] = s->in[c][k + s->iM] = x[c];
    if (s->ch > 1)
        s->mono[k] = s->mono[k + s->iM] = mean;
    s->n++;
}

/* 1 when the next synthesis mark can be placed (its input has arrived). */
static inline int ps_due(const ps_shift *s)
{
    return s->ts <= (double)(s->n - 1 - s->Hmax - 2);
}

/* ps_due as it was when n input samples had been pushed (a run of
 * samples pushed at once places its grains afterwards: pv_push_run). */
static inline int ps_due_n(const ps_shift *s, int64_t n)
{
    return s->ts <= (double)(n - 1 - s->Hmax - 2);
}

/* The first j in [j0, m) with ps_due_n(s, n0 + j + 1), else m: where a
 * run's frame-by-frame scan for due marks first stops (ts moves only when a
 * grain is placed), found at once: ts <= n0 + j - Hmax - 2 exactly when
 * j >= ceil(ts) - (n0 - Hmax - 2), integers held exactly in a double. */
static inline int ps_next_due(const ps_shift *s, int64_t n0, int j0, int m)
{
    const double c = ceil(s->ts) - (double)(n0 - s->Hmax - 2);
    if (!(c < (double)m))
        return m;
    return c <= (double)j0 ? j0 : (int)c;
}

/* The time of the next mark (ask the pitch track there). */
static inline double ps_mark(const ps_shift *s)
{
    return s->ts;
}

/* y[j] = c0 x[j] + c1 x[j + 1] + c2 x[j + 2] + c3 x[j + 3], j < n: a
 * fractional read with one set of 4-point Lagrange weights (ps_place's
 * grain, ps_level's grain mean), eight points a step. (inline: it takes the
 * caller's clone) */
static inline void ps_lagrange_run(float *restrict y, const float *restrict x, int n, float c0,
                                   float c1, float c2, float c3)
{
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        pd_v8 x0, x1, x2, x3;
        memcpy(&x0, x + j, sizeof x0);
        memcpy(&x1, x + j + 1, sizeof x1);
        memcpy(&x2, x + j + 2, sizeof x2);
        memcpy(&x3, x + j + 3, sizeof x3);
        const pd_v8 v = c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3;
        memcpy(y + j, &v, sizeof v);
    }
    for (; j < n; j++)
        y[j] = c0 * x[j] + c1 * x[j + 1] + c2 * x[j + 2] + c3 * x[j + 3];
}

/* One channel's grain samples: gx[j] = the input at q0 + j + d (x: the
 * doubled ring from sample q0 + floor(d) - 1, so x[j + 1] is that sample;
 * c0..c3 the Lagrange weights, fr == 0: the samples themselves); returns
 * sum w[j] gx[j] (four partial sums) when `sum`, else 0. */
MG_HOT static double ps_grain_samples(float *restrict gx, const float *restrict x,
                                      const float *restrict w, int n, int frac, int sum,
                                      float c0, float c1, float c2, float c3)
{
    if (frac) {
        ps_lagrange_run(gx, x, n, c0, c1, c2, c3);
    } else {
        memcpy(gx, x + 1, (size_t)n * sizeof(float));
    }
    if (!sum)
        return 0.0;
    /* four partial sums (k = j mod 4) as the lanes of one vector */
    pd_d4 p = {0.0, 0.0, 0.0, 0.0};
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        pd_f4 wf, xf;
        memcpy(&wf, w + j, sizeof wf);
        memcpy(&xf, gx + j, sizeof xf);
        p += __builtin_convertvector(wf, pd_d4) * __builtin_convertvector(xf, pd_d4);
    }
    double p0 = p[0];
    for (; j < n; j++)
        p0 += (double)w[j] * gx[j];
    return (p0 + p[1]) + (p[2] + p[3]);
}

/* acc[j] += g w[j] (gx[j] - mu) over one contiguous stretch of the ring */
MG_HOT static void ps_grain_add(float *restrict acc, const float *restrict w,
                                const float *restrict gx, int n, float g, float mu)
{
    for (int j = 0; j < n; j++)
        acc[j] += g * w[j] * (gx[j] - mu);
}

/* wacc[j] += v w[j]; pacc[j] = max(pacc[j], pmax) */
MG_HOT static void ps_window_add(float *restrict wacc, float *restrict pacc,
                                 const float *restrict w, int n, float v, float pmax)
{
    for (int j = 0; j < n; j++) {
        wacc[j] += v * w[j];
        pacc[j] = pmax > pacc[j] ? pmax : pacc[j];
    }
}

/* Overlap-add one grain: output positions |q - ts| < H get window w(q - ts)
 * times the input at q + d, times g. A shifted grain (pmax > 0: its peak
 * bound) has its window-weighted mean taken off first (repeated grains make
 * no DC) and marks its bound in the peak ring (ps_pull_run). The window comes
 * from four rotations a step apart (independent chains). */
static void ps_place(ps_shift *s, double ts, double d, double H, float g, float v, float pmax)
{
    const int dc = pmax > 0.0f;
    const int q0 = (int)ceil(ts - H), q1 = (int)floor(ts + H);
    const double dfl = floor(d);
    const int di = (int)dfl;
    const float fr = (float)(d - dfl);
    const int imask = s->iM - 1, omask = s->oM - 1;
    const double dth = PD_PI / H, th0 = (q0 - ts) * dth;
    /* 4-point Lagrange at points -1, 0, 1, 2 (fr = 0: the sample itself) */
    const float f = fr;
    const float c0 = -f * (f - 1.0f) * (f - 2.0f) / 6.0f;
    const float c1 = (f + 1.0f) * (f - 1.0f) * (f - 2.0f) / 2.0f;
    const float c2 = -(f + 1.0f) * f * (f - 2.0f) / 2.0f;
    const float c3 = (f + 1.0f) * f * (f - 1.0f) / 6.0f;
    const int n = q1 - q0 + 1;
    if (n <= 0)
        return;
    float *gw = s->gw;
    double sw = 0.0;
    {
        const double c4 = cos(4.0 * dth), s4 = sin(4.0 * dth);
        /* the four rotations are the lanes of 4-double vectors (each lane the
         * arithmetic its scalar chain had) */
        pd_d4 wc, ws;
        for (int k = 0; k < 4; k++) {
            wc[k] = cos(th0 + k * dth);
            ws[k] = sin(th0 + k * dth);
        }
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            const pd_f4 w = __builtin_convertvector(0.5 + 0.5 * wc, pd_f4);
            for (int k = 0; k < 4; k++)
                gw[j + k] = w[k] > 0.0f ? w[k] : 0.0f;
            const pd_d4 nc = wc * c4 - ws * s4;
            ws = ws * c4 + wc * s4;
            wc = nc;
        }
        for (int k = 0; j < n; j++, k++) {
            const float w = (float)(0.5 + 0.5 * wc[k]);
            gw[j] = w > 0.0f ? w : 0.0f;
        }
        for (j = 0; j < n; j++)
            sw += gw[j];
    }
    /* the window-weighted sums only for a shifted grain (its mean is taken off) */
    double sx[PS_MAXCH] = {0.0, 0.0};
    for (int c = 0; c < s->ch; c++)
        sx[c] = ps_grain_samples(s->gx[c], s->in[c] + ((q0 + di - 1) & imask), gw, n,
                                 fr != 0.0f, dc, c0, c1, c2, c3);
    float mu[PS_MAXCH] = {0.0f, 0.0f};
    if (dc && sw > 0.0)
        for (int c = 0; c < s->ch; c++)
            mu[c] = (float)(sx[c] / sw);
    /* the output ring is not doubled: at most two stretches */
    const int o0 = q0 & omask;
    const int n1 = n < s->oM - o0 ? n : s->oM - o0;
    for (int c = 0; c < s->ch; c++) {
        ps_grain_add(s->acc[c] + o0, gw, s->gx[c], n1, g, mu[c]);
        ps_grain_add(s->acc[c], gw + n1, s->gx[c] + n1, n - n1, g, mu[c]);
    }
    ps_window_add(s->wacc + o0, s->pacc + o0, gw, n1, v, pmax);
    ps_window_add(s->wacc, s->pacc, gw + n1, n - n1, v, pmax);
}

/* Pitch-mark refinement by waveform matching: the source offset within
 * +-R samples of d (and <= 0) whose period of input is most like the
 * previous grain's source (least squared difference over one period,
 * parabola through the minimum). Consecutive grains then hold the same
 * waveform (their sources a whole number of true periods apart) whatever
 * the error of the detected period, so the output period is the mark
 * spacing S. */
static double ps_match(const ps_shift *s, double d, double Ta)
{
    const int N = (int)Ta, mask = s->iM - 1;
    int R = (int)(0.06 * Ta);
    R = R < 2 ? 2 : R > PS_RMAX ? PS_RMAX : R;
    const double rpos = s->src_prev, cpos = s->ts + d;
    const int64_t r0 = (int64_t)llround(rpos), c0 = (int64_t)llround(cpos);
    int hi = (int)floor(-d - (double)(c0 - cpos));
    hi = hi > R ? R : hi;
    if (hi < -R)
        return d;
    const float *a = s->mono + ((r0 - N / 2) & mask);
    const float *b = s->mono + ((c0 - R - N / 2) & mask);
    float dv[2 * PS_RMAX + 1];
    int kb = 0;
    pd_sqdiff_lags(dv, a, b, N, R + hi + 1);
    for (int k = 0; k <= R + hi; k++)
        if (dv[k] < dv[kb])
            kb = k;
    double off = 0.0;
    if (dv[kb] > 0.0f && kb > 0 && kb < R + hi) {
        const double p = dv[kb - 1], q = dv[kb], r = dv[kb + 1];
        const double den = p - 2.0 * q + r;
        if (den > 0.0)
            off = 0.5 * (p - r) / den;
        off = off < -0.5 ? -0.5 : off > 0.5 ? 0.5 : off;
    }
    const double dn = (double)(c0 - R + kb - s->ts) + off + (rpos - (double)r0);
    return dn > 0.0 ? 0.0 : dn;
}

/* The first voiced grain is centred on the largest |sample| of the period
 * before the mark (for a voice, the glottal pulse): a grain centred on an
 * excitation holds a smooth spectrum, the formant envelope. Later grains
 * keep that phase through ps_match. */
static double ps_epoch(const ps_shift *s, double Ta)
{
    const int64_t t1 = (int64_t)floor(s->ts);
    const int N = (int)Ta, mask = s->iM - 1;
    int64_t best = t1;
    float bv = -1.0f;
    for (int64_t j = t1 - N + 1; j <= t1; j++) {
        const float v = fabsf(s->mono[j & mask]);
        if (v > bv) {
            bv = v;
            best = j;
        }
    }
    return (double)best - s->ts;
}

typedef double ps_d4 __attribute__((vector_size(32)));
typedef float ps_f4 __attribute__((vector_size(16)));

/* Three Hann windows by rotation, w_i[k] = 0.5 + 0.5 cos(a_i + k d_i),
 * k < n_i (n_i <= 0: none): each as four rotations a step apart
 * (independent chains; the first four angles come from a_i by single steps,
 * as one chain has them), and the three windows' chains side by side while
 * all three have four weights left (one chain's latency, not three), then
 * each finishes alone. */
static inline void ps_hann_rot3(double *restrict w0, int n0, double a0, double d0,
                                double *restrict w1, int n1, double a1, double d1,
                                double *restrict w2, int n2, double a2, double d2)
{
    double *const wv[3] = {w0, w1, w2};
    const int nn[3] = {n0 > 0 ? n0 : 0, n1 > 0 ? n1 : 0, n2 > 0 ? n2 : 0};
    const double aa[3] = {a0, a1, a2}, dd[3] = {d0, d1, d2};
    ps_d4 wc[3], ws[3], c4[3], s4[3];
    for (int i = 0; i < 3; i++) {
        const double cs = cos(dd[i]), sn = sin(dd[i]);
        c4[i] = (ps_d4){0.0, 0.0, 0.0, 0.0} + cos(4.0 * dd[i]);
        s4[i] = (ps_d4){0.0, 0.0, 0.0, 0.0} + sin(4.0 * dd[i]);
        wc[i][0] = cos(aa[i]);
        ws[i][0] = sin(aa[i]);
        for (int l = 1; l < 4; l++) {
            wc[i][l] = wc[i][l - 1] * cs - ws[i][l - 1] * sn;
            ws[i][l] = ws[i][l - 1] * cs + wc[i][l - 1] * sn;
        }
    }
    int nmin = nn[0] < nn[1] ? nn[0] : nn[1];
    nmin = nmin < nn[2] ? nmin : nn[2];
    int k = 0;
    for (; k + 4 <= nmin; k += 4) {
        for (int i = 0; i < 3; i++) {
            const ps_d4 w = 0.5 + 0.5 * wc[i];
            memcpy(wv[i] + k, &w, sizeof w);
            const ps_d4 nc = wc[i] * c4[i] - ws[i] * s4[i];
            ws[i] = ws[i] * c4[i] + wc[i] * s4[i];
            wc[i] = nc;
        }
    }
    for (int i = 0; i < 3; i++) {
        ps_d4 c = wc[i], sv = ws[i];
        int j = k;
        for (; j + 4 <= nn[i]; j += 4) {
            const ps_d4 w = 0.5 + 0.5 * c;
            memcpy(wv[i] + j, &w, sizeof w);
            const ps_d4 nc = c * c4[i] - sv * s4[i];
            sv = sv * c4[i] + c * s4[i];
            c = nc;
        }
        for (int l = 0; j < nn[i]; j++, l++)
            wv[i][j] = 0.5 + 0.5 * c[l];
    }
}

/* sum w[k], sum w[k] x[k], sum w[k] x[k]^2 over n, four double lanes */
static inline void ps_wsums(const double *restrict w, const float *restrict x, int n,
                            double *sw, double *sx, double *sxx)
{
    ps_d4 aw = {0.0, 0.0, 0.0, 0.0}, ax = aw, axx = aw;
    int k = 0;
    for (; k + 4 <= n; k += 4) {
        ps_f4 xf;
        ps_d4 wv;
        memcpy(&xf, x + k, sizeof xf);
        memcpy(&wv, w + k, sizeof wv);
        const ps_d4 xv = __builtin_convertvector(xf, ps_d4);
        aw += wv;
        ax += wv * xv;
        axx += wv * xv * xv;
    }
    double tw = 0.0, tx = 0.0, txx = 0.0;
    for (; k < n; k++) {
        tw += w[k];
        tx += w[k] * x[k];
        txx += w[k] * x[k] * x[k];
    }
    *sw = tw + ((aw[0] + aw[1]) + (aw[2] + aw[3]));
    *sx = tx + ((ax[0] + ax[1]) + (ax[2] + ax[3]));
    *sxx = txx + ((axx[0] + axx[1]) + (axx[2] + axx[3]));
}

/* The largest |x[k]| over n (finite samples: their magnitudes' bit patterns
 * order as the values do, and an integer maximum vectorises) */
static inline float ps_absmax(const float *restrict x, int n)
{
    uint32_t m = 0;
    for (int k = 0; k < n; k++) {
        uint32_t b;
        memcpy(&b, x + k, sizeof b);
        b &= 0x7fffffffu;
        m = b > m ? b : m;
    }
    float r;
    memcpy(&r, &m, sizeof r);
    return r;
}

/* The grain weight that keeps the level: the input's mean square (Hann of
 * half-width Ta around the grain's source: two whole periods, exact for any
 * periodic input) over the mean square of the output this grain makes when
 * repeated every S (the steady state of a steady tone: the grains' sum over
 * one output period, the overlaps and their interference included), square
 * root, held within [1/16, 16]. Each sum runs as vector loops over the
 * doubled rings (no mask per sample), its window from four rotations a step
 * apart (ps_hann_rot3: the three windows' rotations side by side) into the
 * scratch s->lw. */
MG_HOT static float ps_level(const ps_shift *s, double src, double Ta, double S, double H, float *pmx)
{
    const int mask = s->iM - 1;
    const int64_t c = (int64_t)llround(src);
    const int h = (int)floor(Ta);
    /* the three windows below (ps_hann_rot3: their rotations side by side),
     * from what each block needs: the input's (n1), the grain's (n2) and the
     * output grid's (N, k from klo) */
    const size_t ln = 3 * (size_t)s->Hmax + 16;
    double *W1 = s->lw, *W2 = s->lw + ln, *W3 = s->lw + 2 * ln;
    const int n1 = 2 * h + 1;
    const int q0 = (int)ceil(-H), q1 = (int)floor(H);
    const int n2 = q1 - q0 + 1;
    int ns = (int)ceil(S);
    ns = ns < 8 ? 8 : ns;
    const double du = S / ns;
    const int imax = (int)ceil(H / du);
    /* the grid's terms with u in (-H, H): k in [klo, khi] (u falls with k) */
    int klo = 0, khi = 2 * imax;
    while (klo <= khi && !((imax - klo) * du < H))
        klo++;
    while (khi >= klo && !((imax - khi) * du > -H))
        khi--;
    const int N = khi - klo + 1;
    {
        const double st1 = PD_PI / Ta, st2 = PD_PI / H, st3 = PD_PI * du / H;
        ps_hann_rot3(W1, n1, -h * st1, st1, W2, n2, q0 * st2, st2, W3, N, (imax - klo) * st3,
                     -st3);
    }
    double sw0, sx0, sxx;
    float pk = 0.0f;
    {
        /* Hann weights cos(pi j / Ta), j = -h .. h; the rings are doubled, so
         * the 2 h + 1 samples from c - h are contiguous */
        ps_wsums(W1, s->mono + ((c - h) & mask), n1, &sw0, &sx0, &sxx);
        for (int ch = 0; ch < s->ch; ch++) {
            const float a = ps_absmax(s->in[ch] + ((c - h) & mask), n1);
            pk = a > pk ? a : pk;
        }
    }
    /* its variance (the mean taken off, as from the grains) */
    const double pin = sw0 > 0.0 ? sxx / sw0 - (sx0 / sw0) * (sx0 / sw0) : 0.0;
    /* the grain's window-weighted mean, as ps_place takes it off: its samples
     * src + q (q integer) share one fractional part, so one set of Lagrange
     * weights (4-point Lagrange, as ps_place) serves them all */
    double sw, sx;
    {
        const double fl = floor(src);
        const float f = (float)(src - fl);
        const float a0 = -f * (f - 1.0f) * (f - 2.0f) / 6.0f;
        const float a1 = (f + 1.0f) * (f - 1.0f) * (f - 2.0f) / 2.0f;
        const float a2 = (f + 1.0f) * f * (f - 2.0f) / 2.0f;
        const float a3 = (f + 1.0f) * f * (f - 1.0f) / 6.0f;
        /* the ring is doubled: the 2 H + 4 samples from here are contiguous */
        const float *x = s->mono + (((int64_t)fl + q0 - 1) & mask);
        float *F = s->lf;
        ps_lagrange_run(F, x, n2, a0, a1, -a2, a3);
        double sxx2;
        ps_wsums(W2, F, n2, &sw, &sx, &sxx2);
    }
    const double mu = sw > 0.0 ? sx / sw : 0.0;
    /* The output over one period, at t_j = j S / ns (j < ns): y_j = sum over k
     * of the grain at t_j - k S, i.e. of w(u) (x(src + u) - mu) at u = t_j - k S
     * in (-H, H). Those u are the grid u_i = i S / ns, each used once (by
     * j = i mod ns): the grid's terms in vector loops (index k = imax - i:
     * from the top, the order of k upwards), then folded into ly[] in that
     * order. */
    double *ly = s->ly;
    for (int j = 0; j < ns; j++)
        ly[j] = 0.0;
    {
        const double *W = W3;
        if (N > 0) {
            /* samples from b0: every read below is within 2 H + 8 of it */
            const int64_t b0 = (int64_t)floor(src + (imax - khi) * du) - 2;
            const float *xb = s->mono + (b0 & mask);
            double *V = s->lv;
            float *fr = s->lf;
            int *ix = (int *)(void *)(s->lf + (N + 7) / 8 * 8);
            const double b0d = (double)b0;
            /* positions: fractions and indices from b0 (vectorises) */
            for (int k = 0; k < N; k++) {
                const double u = (imax - klo - k) * du;
                const double t = src + u;
                const double fl = floor(t);
                fr[k] = (float)(t - fl);
                ix[k] = (int)(fl - b0d);
            }
            /* the Lagrange reads, four points a step, then the rest one by
             * one: each point's four samples are one 4-float load, the four
             * loads transposed into the vectors of samples -1, 0, 1, 2 */
            const pd_i4 ulo = {0, 4, 1, 5}, uhi = {2, 6, 3, 7};
            const pd_i4 plo = {0, 1, 4, 5}, phi = {2, 3, 6, 7};
            int k = 0;
            for (; k + 4 <= N; k += 4) {
                pd_f4 f, a[4];
                memcpy(&f, fr + k, sizeof f);
                for (int l = 0; l < 4; l++)
                    memcpy(&a[l], xb + ix[k + l] - 1, sizeof a[l]);
                const pd_f4 t0 = __builtin_shuffle(a[0], a[1], ulo);
                const pd_f4 t1 = __builtin_shuffle(a[0], a[1], uhi);
                const pd_f4 t2 = __builtin_shuffle(a[2], a[3], ulo);
                const pd_f4 t3 = __builtin_shuffle(a[2], a[3], uhi);
                const pd_f4 x0 = __builtin_shuffle(t0, t2, plo), x1 = __builtin_shuffle(t0, t2, phi);
                const pd_f4 x2 = __builtin_shuffle(t1, t3, plo), x3 = __builtin_shuffle(t1, t3, phi);
                const pd_f4 v = -f * (f - 1.0f) * (f - 2.0f) / 6.0f * x0 +
                                (f + 1.0f) * (f - 1.0f) * (f - 2.0f) / 2.0f * x1 -
                                (f + 1.0f) * f * (f - 2.0f) / 2.0f * x2 +
                                (f + 1.0f) * f * (f - 1.0f) / 6.0f * x3;
                for (int l = 0; l < 4; l++)
                    V[k + l] = v[l] - mu;
            }
            for (; k < N; k++) {
                const float f = fr[k];
                const int i = ix[k];
                const float v = -f * (f - 1.0f) * (f - 2.0f) / 6.0f * xb[i - 1] +
                                (f + 1.0f) * (f - 1.0f) * (f - 2.0f) / 2.0f * xb[i] -
                                (f + 1.0f) * f * (f - 2.0f) / 2.0f * xb[i + 1] +
                                (f + 1.0f) * f * (f - 1.0f) / 6.0f * xb[i + 2];
                V[k] = v - mu;
            }
            /* term k goes to ly[j], j falling from (imax - klo) mod ns with k
             * and wrapping to ns - 1: runs of consecutive k in reverse over
             * ly (vector loops; each ly[j] still gets its terms in k order) */
            int j = (((imax - klo) % ns) + ns) % ns;
            for (int k = 0; k < N;) {
                const int run = N - k < j + 1 ? N - k : j + 1;
                double *restrict yj = ly + j;
                const double *restrict wk = W + k, *restrict vk = V + k;
                for (int t = 0; t < run; t++)
                    yj[-t] += wk[t] * vk[t];
                k += run;
                j = ns - 1;
            }
        }
    }
    double acc = 0.0, ypk = 0.0;
    for (int j = 0; j < ns; j++) {
        acc += ly[j] * ly[j];
        ypk = fabs(ly[j]) > ypk ? fabs(ly[j]) : ypk;
    }
    const double pout = acc / ns;
    /* and its peak within (1 + PS_PEAK |log2 r|) sqrt(max(r, 1 / r)) input peaks */
    const double pmax = (1.0 + PS_PEAK * fabs(log2(Ta / S))) * sqrt(S > Ta ? S / Ta : Ta / S) * pk;
    *pmx = (float)pmax;
    if (!(pin > 1e-20 && pout > 1e-20))
        return 1.0f;
    double g = sqrt(pin / pout);
    if (g * ypk > pmax)
        g = pmax / ypk;
    g = g < 0.0625 ? 0.0625 : g > 16.0 ? 16.0 : g;
    return (float)g;
}

/* Place the due mark: voiced with analysis period Ta (samples) and pitch
 * ratio (output / input frequency), or unvoiced (copied: d = 0). */
static inline void ps_grain(ps_shift *s, int voiced, double Ta, double ratio)
{
    if (!(ratio >= 0.5))
        ratio = 0.5;
    if (ratio > 2.0)
        ratio = 2.0;
    if (!voiced || !(Ta >= 2.0 && Ta <= s->Hmax)) {
        s->d = 0.0;
        s->prev_voiced = 0;
        ps_place(s, s->ts, 0.0, s->Tu, 1.0f, 1.0f, 0.0f);
        s->ts += s->Tu;
            return;
    }
    if (ratio == 1.0) {
        /* no change: the input copied with the current offset (windows summing to 1) */
        while (s->d > 0.0)
            s->d -= Ta;
        ps_place(s, s->ts, s->d, s->Tu, 1.0f, 1.0f, 0.0f);
        s->src_prev = s->ts + s->d;
        s->prev_voiced = 1;
        s->ts += s->Tu;
            return;
    }
    double d = s->d;
    while (d > 0.0)
        d -= Ta;
    while (d <= -1.5 * Ta)
        d += Ta;
    double S = Ta / ratio;
    if (S > 1.9 * s->Hmax)
        S = 1.9 * s->Hmax;
    const double H = S < Ta ? S : Ta;
    /* a new note (period 5 % away from the last grain's) starts on its epoch */
    const int same = s->prev_voiced && fabs(Ta - s->Ta_prev) < 0.05 * Ta;
    d = same ? ps_match(s, d, Ta) : ps_epoch(s, Ta);
    s->Ta_prev = Ta;
    float pmax = 0.0f;
    const float g = ps_level(s, s->ts + d, Ta, S, H, &pmax);
    ps_place(s, s->ts, d, H, g, 1.0f, pmax > 0.0f ? pmax : 1e-30f);
    s->src_prev = s->ts + d;
    s->prev_voiced = 1;
    s->d = d + Ta - S;
    s->ts += S;
}

/* The output frames at ring positions o .. o + m - 1 (no wrap), channel c
 * into y: the overlap-add divided by the sum of the windows where that
 * exceeds 1, held within PS_PEAK_MARGIN times the largest peak bound of the
 * shifted grains there (where shifted grains meet grains of another shape, a
 * new note or a detector jump, their sum can pass the bound a steady tone
 * keeps); the positions are cleared for the next pass of the ring (the
 * window and bound sums with the last channel). */
MG_HOT static void ps_pull_span(float *restrict acc, float *restrict wacc, float *restrict pacc,
                                float *restrict y, int m, int last)
{
    for (int j = 0; j < m; j++) {
        const float w = wacc[j];
        const float pm = PS_PEAK_MARGIN * pacc[j];
        float v = w > 1.0f ? acc[j] / w : acc[j];
        if (pm > 0.0f)
            v = v > pm ? pm : v < -pm ? -pm : v;
        y[j] = v;
        acc[j] = 0.0f;
        if (last) {
            wacc[j] = 0.0f;
            pacc[j] = 0.0f;
        }
    }
}

/* [audio] The output frames (latency L) for the last m input samples pushed
 * (after their grains are placed): out[c][i0 + j] is the frame of the
 * input's sample n - m + j. Placing a run's grains before pulling any of its frames gives
 * the same frames as the per-sample order: a grain due at sample n_d starts
 * at ceil(ts - H) > n_d - 1 - L, after every frame pulled before it. */
static inline void ps_pull_run(ps_shift *s, float *const *out, int i0, int m)
{
    const int mask = s->oM - 1;
    int o = (int)((s->n - m - s->L) & mask), j = 0;
    while (j < m) {
        const int k = m - j < s->oM - o ? m - j : s->oM - o;
        for (int c = 0; c < s->ch; c++)
            ps_pull_span(s->acc[c] + o, s->wacc + o, s->pacc + o, out[c] + i0 + j, k,
                         c == s->ch - 1);
        j += k;
        o = (o + k) & mask;
    }
}

/* The input delayed by the latency (the dry path of a mix) as it was when n
 * input samples had been pushed. */
static inline float ps_dry_n(const ps_shift *s, int c, int64_t n)
{
    return s->in[c][(n - 1 - s->L) & (s->iM - 1)];
}

/* ---- a pitch voice: the detector and the shifter a node drives together -- */

/* What autotune and pitchshift share: mono or stereo input (stereo is
 * detected on its mean and shifted together), one detector, one shifter. */
typedef struct {
    double fs;
    int ch;
    pd_det det;
    ps_shift sh;
} pv_voice;

/* [control] 0 = ok, -1 = no memory. */
static inline int pv_alloc(pv_voice *v, double fs, int ch)
{
    v->fs = fs;
    v->ch = ch;
    return pd_alloc(&v->det, fs) != 0 || ps_alloc(&v->sh, fs, ch) != 0 ? -1 : 0;
}

static inline void pv_free(pv_voice *v)
{
    pd_free(&v->det);
    ps_free(&v->sh);
}

static inline void pv_reset(pv_voice *v)
{
    pd_reset(&v->det);
    ps_reset(&v->sh);
}

/* [audio] Frame i of the node's inputs into the detector and the shifter
 * (non-finite samples become 0); then the caller places the due grains. */
static inline void pv_push(pv_voice *v, const float *const *in, int i)
{
    float x[PS_MAXCH];
    float mono = 0.0f;
    for (int c = 0; c < v->ch; c++) {
        x[c] = pd_sane(in[c][i]);
        mono += x[c];
    }
    pd_push(&v->det, v->ch == 2 ? 0.5f * mono : mono);
    ps_push(&v->sh, x, v->ch == 2 ? 0.5f * mono : mono);
}

#define PV_RUN 64 /* most samples pv_push_run takes at once */

/* [audio] Frames i.. of the node's inputs (avail of them) into the detector
 * and the shifter, as pv_push would one at a time: either the one frame
 * whose push completes the detector's hop (its analysis runs), or up to
 * PV_RUN frames that complete none. Returns how many. The caller then
 * places the grains due after each of them (ps_due_n) and pulls their
 * frames (ps_pull_run): no analysis falls between those grains, so they see
 * the pitch track pv_push's order gives them. */
static inline int pv_push_run(pv_voice *v, const float *const *in, int i, int avail)
{
    const int k = v->det.hop - v->det.hcount - 1; /* pushes before the one that analyses */
    if (k <= 0) {
        pv_push(v, in, i);
        return 1;
    }
    int m = avail < k ? avail : k;
    m = m < PV_RUN ? m : PV_RUN;
    ps_shift *sh = &v->sh;
    float mono[PV_RUN];
    const int imask = sh->iM - 1;
    const int k0 = (int)(sh->n & imask);
    for (int c = 0; c < v->ch; c++) {
        const float *x = in[c] + i;
        float xs[PV_RUN];
        for (int j = 0; j < m; j++) {
            const float xv = pd_sane(x[j]);
            xs[j] = xv;
            mono[j] = c == 0 ? 0.0f + xv : mono[j] + xv;
        }
        pd_ring_put(sh->in[c], sh->iM, k0, xs, m);
    }
    if (v->ch == 2) {
        for (int j = 0; j < m; j++)
            mono[j] = 0.5f * mono[j];
        pd_ring_put(sh->mono, sh->iM, k0, mono, m);
    }
    sh->n += m;
    pd_push_run(&v->det, mono, m);
    return m;
}

/* [audio] The newest estimate: pitch (Hz, 0 when none yet) and confidence. */
static inline void pv_readout(const pv_voice *v, float *pitch, float *conf)
{
    const pd_est *e = &v->det.est[(v->det.head + PD_NEST - 1) % PD_NEST];
    *pitch = v->det.ne ? e->f : 0.0f;
    *conf = v->det.ne ? e->conf : 0.0f;
}

#endif
