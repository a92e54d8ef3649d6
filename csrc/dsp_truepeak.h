/* True-peak estimation after ITU-R BS.1770-4 Annex 2: 4x oversampling by a
 * 48-tap polyphase FIR (the coefficients printed in the Annex, 4 phases of 12
 * taps), absolute value, maximum.
 *
 * The prototype is symmetric with its centre between taps 23 and 24, so no
 * phase reproduces the input samples: at input time n the four phases
 * interpolate the signal at n-5.875, n-5.625, n-5.375 and n-5.125 (input
 * samples). mg_tp_push() also folds in |x[n-6]|, so the value it returns
 * covers the interval [n-6, n-5.125]: a true peak is never read lower than
 * the sample peak.
 *
 * Float arithmetic only; state is one 24-float history per channel (the 12
 * last samples, written twice so the window is always contiguous). */
#ifndef DSP_TRUEPEAK_H
#define DSP_TRUEPEAK_H

#include <math.h>
#include <string.h>

#define MG_TP_TAPS 12
#define MG_TP_PHASES 4
#define MG_TP_DELAY 6 /* input samples from x[n] to the interval the output covers */

/* BS.1770-4 Annex 2, Table: phase k, tap j (coefficient h[4j+k] of the prototype). */
static const float mg_tp_coef[MG_TP_PHASES][MG_TP_TAPS] = {
    {0.0017089843750f, 0.0109863281250f, -0.0196533203125f, 0.0332031250000f,
     -0.0594482421875f, 0.1373291015625f, 0.9721679687500f, -0.1022949218750f,
     0.0476074218750f, -0.0266113281250f, 0.0148925781250f, -0.0083007812500f},
    {-0.0291748046875f, 0.0292968750000f, -0.0517578125000f, 0.0891113281250f,
     -0.1665039062500f, 0.4650878906250f, 0.7797851562500f, -0.2003173828125f,
     0.1015625000000f, -0.0582275390625f, 0.0330810546875f, -0.0189208984375f},
    {-0.0189208984375f, 0.0330810546875f, -0.0582275390625f, 0.1015625000000f,
     -0.2003173828125f, 0.7797851562500f, 0.4650878906250f, -0.1665039062500f,
     0.0891113281250f, -0.0517578125000f, 0.0292968750000f, -0.0291748046875f},
    {-0.0083007812500f, 0.0148925781250f, -0.0266113281250f, 0.0476074218750f,
     -0.1022949218750f, 0.9721679687500f, 0.1373291015625f, -0.0594482421875f,
     0.0332031250000f, -0.0196533203125f, 0.0109863281250f, 0.0017089843750f},
};

typedef struct {
    float h[2 * MG_TP_TAPS]; /* h[pos..pos+11]: newest first */
    int pos;
} mg_tp;

static inline void mg_tp_reset(mg_tp *t)
{
    memset(t, 0, sizeof *t);
}

/* Push one input sample (finite); returns the true-peak estimate (absolute
 * value) over the interval [n-6, n-5.125]. */
static inline float mg_tp_push(mg_tp *t, float x)
{
    int p = t->pos - 1;
    if (p < 0)
        p = MG_TP_TAPS - 1;
    t->pos = p;
    t->h[p] = x;
    t->h[p + MG_TP_TAPS] = x;
    const float *w = t->h + p; /* w[j] = x[n-j] */
    float y0 = 0.0f, y1 = 0.0f, y2 = 0.0f, y3 = 0.0f;
    for (int j = 0; j < MG_TP_TAPS; j++) {
        const float v = w[j];
        y0 += mg_tp_coef[0][j] * v;
        y1 += mg_tp_coef[1][j] * v;
        y2 += mg_tp_coef[2][j] * v;
        y3 += mg_tp_coef[3][j] * v;
    }
    float m = fabsf(w[MG_TP_DELAY]);
    y0 = fabsf(y0);
    y1 = fabsf(y1);
    y2 = fabsf(y2);
    y3 = fabsf(y3);
    if (y0 > m)
        m = y0;
    if (y1 > m)
        m = y1;
    if (y2 > m)
        m = y2;
    if (y3 > m)
        m = y3;
    return m;
}

#endif
