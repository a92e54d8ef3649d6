/* Real-input FFT for STFT nodes (static inline; header-only).
 *
 * mg_fft_forward: n real samples -> bins 0..n/2 (re[], im[], n/2 + 1 each),
 *   X[k] = sum_t x[t] exp(-2 pi i k t / n)   (unnormalised, numpy.fft.rfft).
 * mg_fft_inverse: bins 0..n/2 -> n real samples, unnormalised:
 *   returns n * irfft(X) (the imaginary parts of bins 0 and n/2 are ignored).
 *
 * Method: the n real samples are read as m = n/2 complex ones
 * z[j] = x[2j] + i x[2j+1]; a radix-2 decimation-in-time complex FFT of m
 * points gives Z; the spectra of the even and odd samples are
 *   E[k] = (Z[k] + conj Z[m-k]) / 2,   O[k] = (Z[k] - conj Z[m-k]) / 2i,
 * and X[k] = E[k] + W^k O[k], X[m-k] = conj(E[k] - W^k O[k]), W = exp(-2 pi i/n).
 * The inverse undoes that split (into the output buffer, as planar complex
 * scratch: the m re, then the m im), runs the same complex FFT with
 * conjugated twiddles and interleaves the result.
 *
 * The complex FFT works on split re/im arrays in eight-float vectors (GCC
 * vector extension; AVX2/AVX-512 clones through MG_HOT). Its first three
 * stages are one 8-point DFT per group of 8 outputs; that pass reads the
 * interleaved input directly in the order the bit reversal wants: for
 * r = 0..m/8-1, group rev(r) (reversal of log2(m/8) bits) holds the DFT of
 * z[r + t m/8], t = 0..7, so eight consecutive r are one vector per t
 * (eight 8-point DFTs at once, across the lanes), transposed 8x8 on the way
 * out. No separate bit-reversal pass. The later stages (half-size h = 8 ..
 * m/2) run over whole vectors: log2(m/8) mod 3 radix-2 stages (one, or a
 * pair on four vectors), then radix-8 passes (three stages each: seven
 * twiddle products and an 8-point DFT per eight points, against twelve
 * products for three radix-2 stages; two passes over the data instead of
 * three at n = 1024); forward and inverse run the same passes, the inverse with the
 * twiddles conjugated. The split into X[k] and X[m-k] runs eight bins a step
 * (the m-k side through a lane reversal).
 *
 * n is a power of two, 128..65536 (the STFT nodes use 512..4096). Twiddles are
 * computed in double at init. mg_fft_init allocates (control thread);
 * forward/inverse only compute (audio thread) and use the struct's scratch,
 * so one mg_fft serves one caller at a time; mg_fft_share makes another
 * mg_fft over the same read-only tables with scratch of its own. */
#ifndef MG_DSP_FFT_H
#define MG_DSP_FFT_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "mg_node.h"

typedef struct {
    int n, m;          /* real size, complex size m = n/2 */
    uint32_t *grp;     /* m/8: group of the first pass's r, rev(r) over log2(m/8) bits */
    int h8;            /* half-size of the first radix-8 pass (the radix-2 stages below it) */
    float *tw_re;      /* MG_FFT_TW2: radix-2 stage with half-size h (8, 16) uses entries */
    float *tw_im;      /*   h-1 .. 2h-2, exp(-2 pi i j / (2h)), j < h                     */
    float *tw_imc;     /* MG_FFT_TW2: -tw_im (inverse transform) */
    float *t8_re;      /* the radix-8 passes' twiddles, pass after pass (h = h8, 8 h8, ..): */
    float *t8_im;      /*   7 h each, [(r - 1) h + j] = exp(-2 pi i r j / (8h)), r = 1..7 */
    float *rt_re;      /* m/2 + 1: W^k = exp(-2 pi i k / n), k = 0..m/2 */
    float *rt_im;
    float *zr, *zi;    /* m each: scratch */
    int shared;        /* 1: the tables are another mg_fft's (mg_fft_share), the scratch the caller's */
} mg_fft;

/* eight floats; loads and stores through memcpy (no alignment assumed) */
typedef float mg_fv8 __attribute__((vector_size(32)));

#define MG_FFT_TW2 32 /* radix-2 twiddles kept: half-sizes 8 and 16 */
typedef int mg_iv8 __attribute__((vector_size(32)));

/* (macros: a function taking or returning a 32-byte vector would change the
 * ABI of the baseline build, -Wpsabi) */
#define mg_fv8_load(p) __extension__({ mg_fv8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define mg_fv8_store(p, v) do { const mg_fv8 v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)

static inline void mg_fft_free(mg_fft *f)
{
    if (!f->shared) {
        free(f->grp);
        free(f->tw_re);
        free(f->t8_re);
        free(f->rt_re);
        free(f->zr);
    }
    f->shared = 0;
    f->grp = NULL;
    f->tw_re = f->tw_im = f->tw_imc = NULL;
    f->t8_re = f->t8_im = NULL;
    f->rt_re = f->rt_im = NULL;
    f->zr = f->zi = NULL;
    f->n = f->m = 0;
}

/* [control] 0 = ok; -1: n not a power of two in 128..65536 or no memory. */
static inline int mg_fft_init(mg_fft *f, int n)
{
    f->grp = NULL;
    f->tw_re = f->t8_re = f->rt_re = f->zr = NULL;
    f->shared = 0;
    if (n < 128 || n > 65536 || (n & (n - 1)))
        return -1;
    const int m = n / 2, m8 = m / 8;
    int bits = 0;
    while ((1 << bits) < m8)
        bits++;
    f->n = n;
    f->m = m;
    f->grp = mg_zalloc((size_t)m8, sizeof(uint32_t));
    /* the stages after the first pass: radix-2 for log2(m/8) mod 3 of them
     * (one radix-2 stage, or a pair), then radix-8 passes */
    int nst = 0;
    for (int k = 8; k < m; k <<= 1)
        nst++;
    f->h8 = 8 << (nst % 3);
    f->tw_re = mg_zalloc((size_t)3 * MG_FFT_TW2, sizeof(float));
    f->t8_re = mg_zalloc((size_t)2 * m, sizeof(float));
    f->rt_re = mg_zalloc((size_t)2 * (m / 2 + 1), sizeof(float));
    f->zr = mg_zalloc((size_t)2 * m, sizeof(float));
    if (!f->grp || !f->tw_re || !f->t8_re || !f->rt_re || !f->zr) {
        mg_fft_free(f);
        return -1;
    }
    f->tw_im = f->tw_re + MG_FFT_TW2;
    f->tw_imc = f->tw_re + 2 * MG_FFT_TW2;
    f->t8_im = f->t8_re + m;
    f->rt_im = f->rt_re + (m / 2 + 1);
    f->zi = f->zr + m;
    for (int j = 0; j < m8; j++) {
        uint32_t r = 0;
        for (int b = 0; b < bits; b++)
            r |= (uint32_t)((j >> b) & 1) << (bits - 1 - b);
        f->grp[j] = r;
    }
    const double pi = 3.14159265358979323846;
    for (int h = 1; h < f->h8; h <<= 1)
        for (int j = 0; j < h; j++) {
            const double a = -pi * j / h;
            f->tw_re[h - 1 + j] = (float)cos(a);
            f->tw_im[h - 1 + j] = (float)sin(a);
            f->tw_imc[h - 1 + j] = -(float)sin(a);
        }
    /* 7 h per pass, h = h8 .. m/8: at most m - 1 in all */
    size_t o = 0;
    for (int h = f->h8; h < m; h *= 8)
        for (int r = 1; r < 8; r++)
            for (int j = 0; j < h; j++, o++) {
                const double a = -pi * r * j / (4.0 * h);
                f->t8_re[o] = (float)cos(a);
                f->t8_im[o] = (float)sin(a);
            }
    for (int k = 0; k <= m / 2; k++) {
        const double a = -2.0 * pi * k / n;
        f->rt_re[k] = 4 * k == n ? 0.0f : (float)cos(a);
        f->rt_im[k] = (float)sin(a);
    }
    return 0;
}

/* [control] f as `from` (an mg_fft_init'ed transform, which must outlive f:
 * free f first), with its read-only tables shared and `scratch` (n floats,
 * the caller's) as its own scratch: several STFT nodes of one size keep one
 * copy of the twiddles in the cache, not one each. The same products and sums
 * as from's own transform. */
static inline void mg_fft_share(mg_fft *f, const mg_fft *from, float *scratch)
{
    *f = *from;
    f->zr = scratch;
    f->zi = scratch + f->m;
    f->shared = 1;
}

/* The first three stages: for r = 0..m/8-1, the 8-point DFT of the complex
 * samples xc[r + t m/8] (t = 0..7; xc interleaved re, im; times win[] when
 * win is not NULL; planar: xc holds the m re, then the m im, and win is NULL)
 * into zr/zi [8 grp[r] .. 8 grp[r] + 7], eight r at once (one lane each).
 * s = Im W4: -1 forward, +1 inverse. */
static inline __attribute__((always_inline)) void
mg_fft_first_body_(const uint32_t *restrict grp, int m, const float *restrict xc,
                   const float *restrict win, const int planar, float *restrict zr,
                   float *restrict zi, float s)
{
    const int m8 = m / 8;
    const float c = 0.70710678118654752f; /* W8 = c + i s c, W8^3 = -c + i s c */
    /* re and im of the eight complex samples r = q .. q+7 (two 8-float loads):
     * one in-lane shuffle each (vshufps), which leaves lane l holding
     * r = q + pi[l]; the DFT is the same in every lane, so only the stores
     * below follow pi */
    const mg_iv8 ev = {0, 2, 8, 10, 4, 6, 12, 14}, od = {1, 3, 9, 11, 5, 7, 13, 15};
    static const int pv[8] = {0, 1, 4, 5, 2, 3, 6, 7}, pid[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const int *pi = planar ? pid : pv; /* planar input: lane l holds r = q + l */
    const mg_iv8 lo1 = {0, 8, 1, 9, 4, 12, 5, 13}, hi1 = {2, 10, 3, 11, 6, 14, 7, 15};
    const mg_iv8 lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const mg_iv8 lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    for (int q = 0; q < m8; q += 8) {
        mg_fv8 vr[8], vi[8];
        for (int t = 0; t < 8 && planar; t++) {
            vr[t] = mg_fv8_load(xc + t * m8 + q);
            vi[t] = mg_fv8_load(xc + m + t * m8 + q);
        }
        for (int t = 0; t < 8 && !planar; t++) {
            const float *p = xc + 2 * (t * m8 + q);
            mg_fv8 a = mg_fv8_load(p), b = mg_fv8_load(p + 8);
            if (win) {
                /* the window as window() applied it: one rounded product */
                const float *wp = win + 2 * (t * m8 + q);
                a = a * mg_fv8_load(wp);
                b = b * mg_fv8_load(wp + 8);
            }
            vr[t] = __builtin_shuffle(a, b, ev);
            vi[t] = __builtin_shuffle(a, b, od);
        }
        /* stage h = 1: (t, t + 4) at positions (0,1) (2,3) (4,5) (6,7): order 0 4 2 6 1 5 3 7 */
        mg_fv8 ar[8], ai[8];
        for (int j = 0; j < 4; j++) {
            const int t = (j & 1) * 2 + (j >> 1); /* 0 2 1 3 */
            ar[2 * j] = vr[t] + vr[t + 4];
            ai[2 * j] = vi[t] + vi[t + 4];
            ar[2 * j + 1] = vr[t] - vr[t + 4];
            ai[2 * j + 1] = vi[t] - vi[t + 4];
        }
        /* stage h = 2: w = 1 at (0,2) (4,6); w = W4 = i s at (1,3) (5,7) */
        mg_fv8 br[8], bi[8];
        for (int b = 0; b < 8; b += 4) {
            br[b] = ar[b] + ar[b + 2];
            bi[b] = ai[b] + ai[b + 2];
            br[b + 2] = ar[b] - ar[b + 2];
            bi[b + 2] = ai[b] - ai[b + 2];
            const mg_fv8 er = -s * ai[b + 3], ei = s * ar[b + 3];
            br[b + 1] = ar[b + 1] + er;
            bi[b + 1] = ai[b + 1] + ei;
            br[b + 3] = ar[b + 1] - er;
            bi[b + 3] = ai[b + 1] - ei;
        }
        /* stage h = 4: w = W8^j at (j, j + 4) */
        mg_fv8 yr[8], yi[8];
        {
            yr[0] = br[0] + br[4];
            yi[0] = bi[0] + bi[4];
            yr[4] = br[0] - br[4];
            yi[4] = bi[0] - bi[4];
            const mg_fv8 t1r = c * br[5] - (s * c) * bi[5], t1i = (s * c) * br[5] + c * bi[5];
            yr[1] = br[1] + t1r;
            yi[1] = bi[1] + t1i;
            yr[5] = br[1] - t1r;
            yi[5] = bi[1] - t1i;
            const mg_fv8 t2r = -s * bi[6], t2i = s * br[6];
            yr[2] = br[2] + t2r;
            yi[2] = bi[2] + t2i;
            yr[6] = br[2] - t2r;
            yi[6] = bi[2] - t2i;
            const mg_fv8 t3r = -c * br[7] - (s * c) * bi[7], t3i = (s * c) * br[7] - c * bi[7];
            yr[3] = br[3] + t3r;
            yi[3] = bi[3] + t3i;
            yr[7] = br[3] - t3r;
            yi[7] = bi[3] - t3i;
        }
        /* transpose: lane l of yr[k] -> element k of group grp[q + pi[l]] */
        for (int part = 0; part < 2; part++) {
            mg_fv8 *y = part ? yi : yr;
            float *dst = part ? zi : zr;
            mg_fv8 u[8], w[8];
            for (int j = 0; j < 8; j += 2) {
                u[j] = __builtin_shuffle(y[j], y[j + 1], lo1);
                u[j + 1] = __builtin_shuffle(y[j], y[j + 1], hi1);
            }
            for (int j = 0; j < 8; j += 4) {
                w[j] = __builtin_shuffle(u[j], u[j + 2], lo2);
                w[j + 1] = __builtin_shuffle(u[j], u[j + 2], hi2);
                w[j + 2] = __builtin_shuffle(u[j + 1], u[j + 3], lo2);
                w[j + 3] = __builtin_shuffle(u[j + 1], u[j + 3], hi2);
            }
            for (int j = 0; j < 4; j++) {
                mg_fv8_store(dst + 8 * (size_t)grp[q + pi[j]],
                             __builtin_shuffle(w[j], w[j + 4], lo4));
                mg_fv8_store(dst + 8 * (size_t)grp[q + pi[j + 4]],
                             __builtin_shuffle(w[j], w[j + 4], hi4));
            }
        }
    }
}

/* (the body with the input's layout a constant: interleaved with the
 * forward transform's window, or planar from the inverse split) */
MG_HOT static void mg_fft_first_(const uint32_t *restrict grp, int m, const float *restrict xc,
                                 const float *restrict win, float *restrict zr,
                                 float *restrict zi, float s)
{
    mg_fft_first_body_(grp, m, xc, win, 0, zr, zi, s);
}

MG_HOT static void mg_fft_first_planar_(const uint32_t *restrict grp, int m,
                                        const float *restrict xc, float *restrict zr,
                                        float *restrict zi, float s)
{
    mg_fft_first_body_(grp, m, xc, NULL, 1, zr, zi, s);
}

/* One radix-8 pass, in place: the eight h-point transforms of each block of
 * 8h (slot e holds the one of the samples r = rev3(e) mod 8 of the block's
 * 8h-point transform: the order the bit reversal left) combined into the
 * 8h-point one, X[j + q h] = sum_r W8^(r q) T_r, T_r = W_8h^(r j) Y_r[j]:
 * seven twiddle products, then an 8-point DFT over r (radix 2 within it;
 * W8 = c + i s c, W4 = i s), eight j a step. s = Im W4: -1 forward, +1
 * inverse (the twiddles conjugated through s). */
static inline __attribute__((always_inline)) void
mg_fft_r8_body_(int m, int h, float *restrict zr, float *restrict zi, const float *restrict wr,
                const float *restrict wi, float s)
{
    const float c = 0.70710678118654752f, sc = s * c;
    const float sw = -s; /* the table holds the forward twiddles */
    for (int b = 0; b < m; b += 8 * h) {
        float *r0 = zr + b, *i0 = zi + b;
        for (int j = 0; j < h; j += 8) {
            mg_fv8 tr[8], ti[8];
            tr[0] = mg_fv8_load(r0 + j);
            ti[0] = mg_fv8_load(i0 + j);
            for (int r = 1; r < 8; r++) {
                const int e = ((r & 1) << 2) | (r & 2) | ((r >> 2) & 1); /* rev3(r) */
                const mg_fv8 ar = mg_fv8_load(r0 + j + e * h), ai = mg_fv8_load(i0 + j + e * h);
                const mg_fv8 cr = mg_fv8_load(wr + (r - 1) * h + j);
                const mg_fv8 ci = sw * mg_fv8_load(wi + (r - 1) * h + j);
                tr[r] = ar * cr - ai * ci;
                ti[r] = ar * ci + ai * cr;
            }
            /* a_r = T_r + T_(r+4), b_r = (T_r - T_(r+4)) W8^r, r < 4 */
            mg_fv8 ar[4], ai[4], br[4], bi[4];
            for (int r = 0; r < 4; r++) {
                ar[r] = tr[r] + tr[r + 4];
                ai[r] = ti[r] + ti[r + 4];
                br[r] = tr[r] - tr[r + 4];
                bi[r] = ti[r] - ti[r + 4];
            }
            {
                /* W8 = c + i s c; W8^2 = i s; W8^3 = -c + i s c */
                const mg_fv8 xr = br[1], xi = bi[1];
                br[1] = c * xr - sc * xi;
                bi[1] = c * xi + sc * xr;
                const mg_fv8 yr = br[2];
                br[2] = -s * bi[2];
                bi[2] = s * yr;
                const mg_fv8 zr3 = br[3], zi3 = bi[3];
                br[3] = -c * zr3 - sc * zi3;
                bi[3] = sc * zr3 - c * zi3;
            }
            /* X[2p] = DFT4(a)[p], X[2p + 1] = DFT4(b)[p], stored at slot q */
            for (int o = 0; o < 2; o++) {
                const mg_fv8 *xr = o ? br : ar, *xi = o ? bi : ai;
                const mg_fv8 e0r = xr[0] + xr[2], e0i = xi[0] + xi[2];
                const mg_fv8 e1r = xr[1] + xr[3], e1i = xi[1] + xi[3];
                const mg_fv8 f0r = xr[0] - xr[2], f0i = xi[0] - xi[2];
                const mg_fv8 f1r = -s * (xi[1] - xi[3]), f1i = s * (xr[1] - xr[3]);
                mg_fv8_store(r0 + j + (0 + o) * h, e0r + e1r);
                mg_fv8_store(i0 + j + (0 + o) * h, e0i + e1i);
                mg_fv8_store(r0 + j + (4 + o) * h, e0r - e1r);
                mg_fv8_store(i0 + j + (4 + o) * h, e0i - e1i);
                mg_fv8_store(r0 + j + (2 + o) * h, f0r + f1r);
                mg_fv8_store(i0 + j + (2 + o) * h, f0i + f1i);
                mg_fv8_store(r0 + j + (6 + o) * h, f0r - f1r);
                mg_fv8_store(i0 + j + (6 + o) * h, f0i - f1i);
            }
        }
    }
}

/* (the body with h a constant at the sizes the STFT nodes use: the compiler
 * folds the eight slots' offsets) */
MG_HOT static void mg_fft_r8_(int m, int h, float *restrict zr, float *restrict zi,
                              const float *restrict wr, const float *restrict wi, float s)
{
    if (h == 8)
        mg_fft_r8_body_(m, 8, zr, zi, wr, wi, s);
    else if (h == 64)
        mg_fft_r8_body_(m, 64, zr, zi, wr, wi, s);
    else
        mg_fft_r8_body_(m, h, zr, zi, wr, wi, s);
}

/* The later stages (h = 8 .. m/2), in place, eight butterflies a step: the
 * radix-2 stages below h8 (one alone, or a pair on four vectors), then
 * radix-8 passes (three stages each: mg_fft_r8_). twi: the radix-2
 * twiddles' imaginary parts for this direction; s as mg_fft_r8_. */
MG_HOT static void mg_fft_stages_(const mg_fft *f, float *restrict zr, float *restrict zi,
                                  const float *restrict twi, float s)
{
    const int m = f->m;
    const float *twr = f->tw_re;
    if (f->h8 == 16) {
        const int h = 8;
        const float *wr = twr + h - 1, *wi = twi + h - 1;
        const mg_fv8 cr = mg_fv8_load(wr), ci = mg_fv8_load(wi);
        for (int b = 0; b < m; b += 16) {
            const mg_fv8 xr = mg_fv8_load(zr + b + 8), xi = mg_fv8_load(zi + b + 8);
            const mg_fv8 pr = mg_fv8_load(zr + b), pi = mg_fv8_load(zi + b);
            const mg_fv8 tr = xr * cr - xi * ci, ti = xr * ci + xi * cr;
            mg_fv8_store(zr + b + 8, pr - tr);
            mg_fv8_store(zi + b + 8, pi - ti);
            mg_fv8_store(zr + b, pr + tr);
            mg_fv8_store(zi + b, pi + ti);
        }
    } else if (f->h8 == 32) {
        /* stage h: (0, 1) and (2, 3) with w_h^j; stage 2h: (0, 2) with
         * w_2h^j, (1, 3) with w_2h^(j+h); element e at b + j + e h */
        const int h = 8;
        const float *w1r = twr + h - 1, *w1i = twi + h - 1;
        const float *w2r = twr + 2 * h - 1, *w2i = twi + 2 * h - 1;
        for (int b = 0; b < m; b += 4 * h) {
            float *r0 = zr + b, *i0 = zi + b;
            for (int j = 0; j < h; j += 8) {
                const mg_fv8 c1r = mg_fv8_load(w1r + j), c1i = mg_fv8_load(w1i + j);
                const mg_fv8 a0r = mg_fv8_load(r0 + j), a0i = mg_fv8_load(i0 + j);
                const mg_fv8 a1r = mg_fv8_load(r0 + j + h), a1i = mg_fv8_load(i0 + j + h);
                const mg_fv8 a2r = mg_fv8_load(r0 + j + 2 * h), a2i = mg_fv8_load(i0 + j + 2 * h);
                const mg_fv8 a3r = mg_fv8_load(r0 + j + 3 * h), a3i = mg_fv8_load(i0 + j + 3 * h);
                const mg_fv8 t1r = a1r * c1r - a1i * c1i, t1i = a1r * c1i + a1i * c1r;
                const mg_fv8 t3r = a3r * c1r - a3i * c1i, t3i = a3r * c1i + a3i * c1r;
                const mg_fv8 b0r = a0r + t1r, b0i = a0i + t1i, b1r = a0r - t1r, b1i = a0i - t1i;
                const mg_fv8 b2r = a2r + t3r, b2i = a2i + t3i, b3r = a2r - t3r, b3i = a2i - t3i;
                const mg_fv8 c2r = mg_fv8_load(w2r + j), c2i = mg_fv8_load(w2i + j);
                const mg_fv8 c3r = mg_fv8_load(w2r + j + h), c3i = mg_fv8_load(w2i + j + h);
                const mg_fv8 u2r = b2r * c2r - b2i * c2i, u2i = b2r * c2i + b2i * c2r;
                const mg_fv8 u3r = b3r * c3r - b3i * c3i, u3i = b3r * c3i + b3i * c3r;
                mg_fv8_store(r0 + j, b0r + u2r);
                mg_fv8_store(i0 + j, b0i + u2i);
                mg_fv8_store(r0 + j + 2 * h, b0r - u2r);
                mg_fv8_store(i0 + j + 2 * h, b0i - u2i);
                mg_fv8_store(r0 + j + h, b1r + u3r);
                mg_fv8_store(i0 + j + h, b1i + u3i);
                mg_fv8_store(r0 + j + 3 * h, b1r - u3r);
                mg_fv8_store(i0 + j + 3 * h, b1i - u3i);
            }
        }
    }
    const float *w8r = f->t8_re, *w8i = f->t8_im;
    for (int h = f->h8; h < m; h *= 8) {
        mg_fft_r8_(m, h, zr, zi, w8r, w8i, s);
        w8r += 7 * h;
        w8i += 7 * h;
    }
}

static const mg_iv8 mg_fft_rev8_ = {7, 6, 5, 4, 3, 2, 1, 0};

/* X from Z (forward split), bins 1..m/2 and m/2..m-1, eight a step. */
MG_HOT static void mg_fft_split_(int m, const float *restrict zr, const float *restrict zi,
                                 const float *restrict rt_re, const float *restrict rt_im,
                                 float *restrict re, float *restrict im)
{
    for (int k = 1; k <= m / 2; k += 8) {
        /* lanes k .. k+7; the mirrored side m-k .. m-k-7 read as m-k-7 .. m-k reversed */
        const int mk = m - k - 7;
        const mg_fv8 ar = mg_fv8_load(zr + k), ai = mg_fv8_load(zi + k);
        const mg_fv8 br = __builtin_shuffle(mg_fv8_load(zr + mk), mg_fft_rev8_);
        const mg_fv8 bi = -__builtin_shuffle(mg_fv8_load(zi + mk), mg_fft_rev8_);
        const mg_fv8 er = 0.5f * (ar + br), ei = 0.5f * (ai + bi);
        /* O = (a - b) / 2i = (ai - bi)/2 - i (ar - br)/2 */
        const mg_fv8 or_ = 0.5f * (ai - bi), oi = -0.5f * (ar - br);
        const mg_fv8 wr = mg_fv8_load(rt_re + k), wi = mg_fv8_load(rt_im + k);
        const mg_fv8 tr = wr * or_ - wi * oi, ti = wr * oi + wi * or_;
        mg_fv8_store(re + k, er + tr);
        mg_fv8_store(im + k, ei + ti);
        /* the last step's k + 7 = m/2 = m - k - 7 + 7... both sides write the same value there */
        mg_fv8_store(re + mk, __builtin_shuffle(er - tr, mg_fft_rev8_));
        mg_fv8_store(im + mk, __builtin_shuffle(-(ei - ti), mg_fft_rev8_));
    }
}

/* Z' from X (inverse split) into xc, planar (re at xc[k], im at xc[m + k]:
 * mg_fft_first_planar_'s input), bins 1..m-1, eight a step:
 * Z'[k] = E' + i O', E' = X[k] + conj X[m-k], O' = (X[k] - conj X[m-k]) conj(W^k);
 * Z'[m-k] = conj E' + i conj O'. */
MG_HOT static void mg_fft_unsplit_(int m, const float *restrict re, const float *restrict im,
                                   const float *restrict rt_re, const float *restrict rt_im,
                                   float *restrict xc)
{
    for (int k = 1; k <= m / 2; k += 8) {
        const int mk = m - k - 7;
        const mg_fv8 xr = mg_fv8_load(re + k), xi = mg_fv8_load(im + k);
        const mg_fv8 yr = __builtin_shuffle(mg_fv8_load(re + mk), mg_fft_rev8_);
        const mg_fv8 yi = -__builtin_shuffle(mg_fv8_load(im + mk), mg_fft_rev8_);
        const mg_fv8 er = xr + yr, ei = xi + yi;
        const mg_fv8 dr = xr - yr, di = xi - yi;
        const mg_fv8 wr = mg_fv8_load(rt_re + k), wi = -mg_fv8_load(rt_im + k);
        const mg_fv8 or_ = dr * wr - di * wi, oi = dr * wi + di * wr;
        const mg_fv8 pr = er - oi, pi = ei + or_;
        const mg_fv8 qr = __builtin_shuffle(er + oi, mg_fft_rev8_);
        const mg_fv8 qi = __builtin_shuffle(or_ - ei, mg_fft_rev8_);
        mg_fv8_store(xc + k, pr);
        mg_fv8_store(xc + m + k, pi);
        mg_fv8_store(xc + mk, qr);
        mg_fv8_store(xc + m + mk, qi);
    }
}

/* x[2j] = zr[j], x[2j+1] = zi[j] */
MG_HOT static void mg_fft_interleave_(int m, const float *restrict zr, const float *restrict zi,
                                      float *restrict x)
{
    const mg_iv8 lo = {0, 8, 1, 9, 2, 10, 3, 11}, hi = {4, 12, 5, 13, 6, 14, 7, 15};
    for (int j = 0; j < m; j += 8) {
        const mg_fv8 a = mg_fv8_load(zr + j), b = mg_fv8_load(zi + j);
        mg_fv8_store(x + 2 * j, __builtin_shuffle(a, b, lo));
        mg_fv8_store(x + 2 * j + 8, __builtin_shuffle(a, b, hi));
    }
}

/* ola[2j] += zr[j] w[2j], ola[2j+1] += zi[j] w[2j+1]: the interleaved
 * output times a synthesis window, added into an overlap-add buffer */
MG_HOT static void mg_fft_interleave_ola_(int m, const float *restrict zr,
                                          const float *restrict zi, const float *restrict w,
                                          float *restrict ola)
{
    const mg_iv8 lo = {0, 8, 1, 9, 2, 10, 3, 11}, hi = {4, 12, 5, 13, 6, 14, 7, 15};
    for (int j = 0; j < m; j += 8) {
        const mg_fv8 a = mg_fv8_load(zr + j), b = mg_fv8_load(zi + j);
        const mg_fv8 y0 = __builtin_shuffle(a, b, lo), y1 = __builtin_shuffle(a, b, hi);
        mg_fv8_store(ola + 2 * j, mg_fv8_load(ola + 2 * j) + y0 * mg_fv8_load(w + 2 * j));
        mg_fv8_store(ola + 2 * j + 8,
                     mg_fv8_load(ola + 2 * j + 8) + y1 * mg_fv8_load(w + 2 * j + 8));
    }
}

/* [audio] mg_fft_forward of x times the window w (n floats each; NULL: no
 * window): the product as x[i] * w[i] rounded, taken in by the first pass
 * (no windowed copy). */
static inline void mg_fft_forward_win(mg_fft *f, const float *restrict x, const float *restrict w,
                                      float *restrict re, float *restrict im)
{
    const int m = f->m;
    float *zr = f->zr, *zi = f->zi;
    mg_fft_first_(f->grp, m, x, w, zr, zi, -1.0f);
    mg_fft_stages_(f, zr, zi, f->tw_im, -1.0f);
    re[0] = zr[0] + zi[0];
    im[0] = 0.0f;
    re[m] = zr[0] - zi[0];
    im[m] = 0.0f;
    mg_fft_split_(m, zr, zi, f->rt_re, f->rt_im, re, im);
}

/* [audio] X = rfft(x): re/im hold n/2 + 1 bins. */
static inline void mg_fft_forward(mg_fft *f, const float *restrict x, float *restrict re,
                                  float *restrict im)
{
    mg_fft_forward_win(f, x, NULL, re, im);
}

/* The inverse up to its interleave: the complex transform of the unsplit
 * spectrum in f->zr / f->zi (x, n floats: the split's scratch). */
static inline void mg_fft_inverse_z_(mg_fft *f, const float *restrict re, const float *restrict im,
                                     float *restrict x)
{
    const int m = f->m;
    x[0] = re[0] + re[m];
    x[m] = re[0] - re[m];
    mg_fft_unsplit_(m, re, im, f->rt_re, f->rt_im, x);
    mg_fft_first_planar_(f->grp, m, x, f->zr, f->zi, 1.0f);
    mg_fft_stages_(f, f->zr, f->zi, f->tw_imc, 1.0f);
}

/* [audio] x = n * irfft(X) (unnormalised inverse of mg_fft_forward); x (n
 * floats) also serves as the scratch of the split. */
static inline void mg_fft_inverse(mg_fft *f, const float *restrict re, const float *restrict im,
                                  float *restrict x)
{
    mg_fft_inverse_z_(f, re, im, x);
    mg_fft_interleave_(f->m, f->zr, f->zi, x);
}

/* [audio] ola[i] += mg_fft_inverse(X)[i] * w[i], i < n: the inverse
 * transform overlap-added through a synthesis window w (n floats), the same
 * products and sums as mg_fft_inverse then ola += x w; x (n floats) is the
 * split's scratch. */
static inline void mg_fft_inverse_ola(mg_fft *f, const float *restrict re, const float *restrict im,
                                      float *restrict x, const float *restrict w,
                                      float *restrict ola)
{
    mg_fft_inverse_z_(f, re, im, x);
    mg_fft_interleave_ola_(f->m, f->zr, f->zi, w, ola);
}

/* [audio] mg_fft_inverse_ola into a ring of n floats from position o (a
 * multiple of 16, < n): ola[(o + i) mod n] += mg_fft_inverse(X)[i] * w[i],
 * the same products and sums, so no frame has to be moved along a linear
 * accumulator. */
static inline void mg_fft_inverse_ola_ring(mg_fft *f, const float *restrict re,
                                           const float *restrict im, float *restrict x,
                                           const float *restrict w, float *restrict ola, int o)
{
    mg_fft_inverse_z_(f, re, im, x);
    const int m1 = (f->n - o) / 2; /* complex samples before the ring wraps */
    mg_fft_interleave_ola_(m1, f->zr, f->zi, w, ola + o);
    if (m1 < f->m)
        mg_fft_interleave_ola_(f->m - m1, f->zr + m1, f->zi + m1, w + 2 * m1, ola);
}

#endif
