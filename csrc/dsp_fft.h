/* Real-input FFT for STFT nodes (static inline; header-only).
 *
 * mg_fft_forward: n real samples -> bins 0..n/2 (re[], im[], n/2 + 1 each),
 *   X[k] = sum_t x[t] exp(-2 pi i k t / n)   (unnormalised, numpy.fft.rfft).
 * mg_fft_inverse: bins 0..n/2 -> n real samples, unnormalised:
 *   returns n * irfft(X) (the imaginary parts of bins 0 and n/2 are ignored).
 *
 * Method: the n real samples are read as m = n/2 complex ones
 * z[j] = x[2j] + i x[2j+1]; a radix-2 decimation-in-time complex FFT of m
 * points (bit reversal done while loading, split re/im arrays so the
 * butterflies of the later stages vectorise, one contiguous twiddle table per
 * stage) gives Z; the spectra of the even and odd samples are
 *   E[k] = (Z[k] + conj Z[m-k]) / 2,   O[k] = (Z[k] - conj Z[m-k]) / 2i,
 * and X[k] = E[k] + W^k O[k], X[m-k] = conj(E[k] - W^k O[k]), W = exp(-2 pi i/n).
 * The inverse undoes that split, runs the same complex FFT with conjugated
 * twiddles and interleaves the result.
 *
 * n is a power of two, 16..65536 (the STFT nodes use 256..4096). Twiddles are
 * computed in double at init. mg_fft_init allocates (control thread);
 * forward/inverse only compute (audio thread) and use the struct's scratch,
 * so one mg_fft serves one caller at a time. */
#ifndef MG_DSP_FFT_H
#define MG_DSP_FFT_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "mg_node.h"

typedef struct {
    int n, m;          /* real size, complex size m = n/2 */
    uint32_t *rev;     /* m: bit reversal of log2(m) bits */
    float *tw_re;      /* m - 1: stage with half-size h uses entries h-1 .. 2h-2, */
    float *tw_im;      /*        exp(-2 pi i j / (2h)), j < h                     */
    float *tw_imc;     /* m - 1: -tw_im (inverse transform) */
    float *rt_re;      /* m/2 + 1: W^k = exp(-2 pi i k / n), k = 0..m/2 */
    float *rt_im;
    float *zr, *zi;    /* m each: scratch */
} mg_fft;

static inline void mg_fft_free(mg_fft *f)
{
    free(f->rev);
    free(f->tw_re);
    free(f->rt_re);
    free(f->zr);
    f->rev = NULL;
    f->tw_re = f->tw_im = f->tw_imc = NULL;
    f->rt_re = f->rt_im = NULL;
    f->zr = f->zi = NULL;
    f->n = f->m = 0;
}

/* [control] 0 = ok; -1: n not a power of two in 16..65536 or no memory. */
static inline int mg_fft_init(mg_fft *f, int n)
{
    f->rev = NULL;
    f->tw_re = f->rt_re = f->zr = NULL;
    if (n < 16 || n > 65536 || (n & (n - 1)))
        return -1;
    const int m = n / 2;
    int bits = 0;
    while ((1 << bits) < m)
        bits++;
    f->n = n;
    f->m = m;
    f->rev = mg_zalloc((size_t)m, sizeof(uint32_t));
    f->tw_re = mg_zalloc((size_t)3 * m, sizeof(float));
    f->rt_re = mg_zalloc((size_t)2 * (m / 2 + 1), sizeof(float));
    f->zr = mg_zalloc((size_t)2 * m, sizeof(float));
    if (!f->rev || !f->tw_re || !f->rt_re || !f->zr) {
        mg_fft_free(f);
        return -1;
    }
    f->tw_im = f->tw_re + m;
    f->tw_imc = f->tw_re + 2 * m;
    f->rt_im = f->rt_re + (m / 2 + 1);
    f->zi = f->zr + m;
    for (int j = 0; j < m; j++) {
        uint32_t r = 0;
        for (int b = 0; b < bits; b++)
            r |= (uint32_t)((j >> b) & 1) << (bits - 1 - b);
        f->rev[j] = r;
    }
    const double pi = 3.14159265358979323846;
    for (int h = 1; h < m; h <<= 1)
        for (int j = 0; j < h; j++) {
            const double a = -pi * j / h;
            f->tw_re[h - 1 + j] = (float)cos(a);
            f->tw_im[h - 1 + j] = (float)sin(a);
            f->tw_imc[h - 1 + j] = -(float)sin(a);
        }
    for (int k = 0; k <= m / 2; k++) {
        const double a = -2.0 * pi * k / n;
        f->rt_re[k] = 4 * k == n ? 0.0f : (float)cos(a);
        f->rt_im[k] = (float)sin(a);
    }
    return 0;
}

/* In-place complex FFT of bit-reversed data (decimation in time). */
MG_HOT static void mg_fft_complex_(int m, float *restrict zr, float *restrict zi,
                                   const float *restrict twr, const float *restrict twi)
{
    /* stages 1 and 2 together (radix 4, twiddles 1 and -/+i) */
    const float s = twi[2]; /* Im W4: -1 forward (W4 = -i), +1 inverse */
    for (int b = 0; b < m; b += 4) {
        const float ar = zr[b] + zr[b + 1], ai = zi[b] + zi[b + 1];
        const float br = zr[b] - zr[b + 1], bi = zi[b] - zi[b + 1];
        const float cr = zr[b + 2] + zr[b + 3], ci = zi[b + 2] + zi[b + 3];
        const float dr = zr[b + 2] - zr[b + 3], di = zi[b + 2] - zi[b + 3];
        /* d * W4: (dr + i di)(i s) = -s di + i s dr */
        const float er = -s * di, ei = s * dr;
        zr[b] = ar + cr;
        zi[b] = ai + ci;
        zr[b + 2] = ar - cr;
        zi[b + 2] = ai - ci;
        zr[b + 1] = br + er;
        zi[b + 1] = bi + ei;
        zr[b + 3] = br - er;
        zi[b + 3] = bi - ei;
    }
    for (int h = 4; h < m; h <<= 1) {
        const float *wr = twr + h - 1, *wi = twi + h - 1;
        for (int b = 0; b < m; b += 2 * h) {
            float *restrict ar = zr + b, *restrict ai = zi + b;
            float *restrict br = zr + b + h, *restrict bi = zi + b + h;
            for (int j = 0; j < h; j++) {
                const float tr = br[j] * wr[j] - bi[j] * wi[j];
                const float ti = br[j] * wi[j] + bi[j] * wr[j];
                br[j] = ar[j] - tr;
                bi[j] = ai[j] - ti;
                ar[j] = ar[j] + tr;
                ai[j] = ai[j] + ti;
            }
        }
    }
}

/* [audio] X = rfft(x): re/im hold n/2 + 1 bins. */
static inline void mg_fft_forward(mg_fft *f, const float *restrict x, float *restrict re,
                                  float *restrict im)
{
    const int m = f->m;
    float *zr = f->zr, *zi = f->zi;
    for (int j = 0; j < m; j++) {
        const uint32_t r = f->rev[j];
        zr[r] = x[2 * j];
        zi[r] = x[2 * j + 1];
    }
    mg_fft_complex_(m, zr, zi, f->tw_re, f->tw_im);
    re[0] = zr[0] + zi[0];
    im[0] = 0.0f;
    re[m] = zr[0] - zi[0];
    im[m] = 0.0f;
    for (int k = 1; k <= m / 2; k++) {
        const float ar = zr[k], ai = zi[k], br = zr[m - k], bi = -zi[m - k];
        const float er = 0.5f * (ar + br), ei = 0.5f * (ai + bi);
        /* O = (a - b) / 2i = (ai - bi)/2 - i (ar - br)/2 */
        const float or_ = 0.5f * (ai - bi), oi = -0.5f * (ar - br);
        const float wr = f->rt_re[k], wi = f->rt_im[k];
        const float tr = wr * or_ - wi * oi, ti = wr * oi + wi * or_;
        re[k] = er + tr;
        im[k] = ei + ti;
        re[m - k] = er - tr;
        im[m - k] = -(ei - ti);
    }
}

/* [audio] x = n * irfft(X) (unnormalised inverse of mg_fft_forward). */
static inline void mg_fft_inverse(mg_fft *f, const float *restrict re, const float *restrict im,
                                  float *restrict x)
{
    const int m = f->m;
    float *zr = f->zr, *zi = f->zi;
    const uint32_t *rev = f->rev;
    /* Z'[k] = E' + i O', E' = X[k] + conj X[m-k], O' = (X[k] - conj X[m-k]) conj(W^k);
     * Z'[m-k] = conj E' + i conj O'. Stored at bit-reversed positions. */
    {
        const float e = re[0] + re[m], o = re[0] - re[m];
        zr[0] = e;
        zi[0] = o;
    }
    for (int k = 1; k <= m / 2; k++) {
        const float xr = re[k], xi = im[k], yr = re[m - k], yi = -im[m - k];
        const float er = xr + yr, ei = xi + yi;
        const float dr = xr - yr, di = xi - yi;
        const float wr = f->rt_re[k], wi = -f->rt_im[k];
        const float or_ = dr * wr - di * wi, oi = dr * wi + di * wr;
        /* Z'[k] = (er - oi) + i (ei + or);  Z'[m-k] = (er + oi) + i (or - ei) */
        zr[rev[k]] = er - oi;
        zi[rev[k]] = ei + or_;
        zr[rev[m - k]] = er + oi;
        zi[rev[m - k]] = or_ - ei;
    }
    mg_fft_complex_(m, zr, zi, f->tw_re, f->tw_imc);
    for (int j = 0; j < m; j++) {
        x[2 * j] = zr[j];
        x[2 * j + 1] = zi[j];
    }
}

#endif
