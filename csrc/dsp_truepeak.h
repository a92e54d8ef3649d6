/* True-peak estimation after ITU-R BS.1770-4 Annex 2: 4x oversampling by a
 * 48-tap polyphase FIR (the coefficients printed in the Annex, 4 phases of 12
 * taps), absolute value, maximum.
 *
 * The prototype is symmetric with its centre between taps 23 and 24, so no
 * phase reproduces the input samples: at input time n the four phases
 * interpolate the signal at n-5.875, n-5.625, n-5.375 and n-5.125 (input
 * samples). mg_tp_run() also folds in |x[n-6]|, so the value it returns
 * covers the interval [n-6, n-5.125]: a true peak is never read lower than
 * the sample peak.
 *
 * Float arithmetic only, a block at a time (the loop over samples vectorises);
 * state is the last 11 samples per channel. */
#ifndef DSP_TRUEPEAK_H
#define DSP_TRUEPEAK_H

#include <float.h>
#include <math.h>
#include <string.h>

#include "mg_api.h" /* MG_MAX_BLOCK */

#define MG_TP_TAPS 12
#define MG_TP_PHASES 4
#define MG_TP_DELAY 6 /* input samples from x[n] to the interval the output covers */

/* BS.1770-4 Annex 2, the interpolating filter as the Recommendation prints
 * it: row j = tap j, column k = phase k (prototype coefficient h[4j + k]). */
typedef struct {
    float c[MG_TP_TAPS][MG_TP_PHASES];
} mg_tp_table;

static const mg_tp_table mg_tp_bytap = {{
    {0.0017089843750f, -0.0291748046875f, -0.0189208984375f, -0.0083007812500f},
    {0.0109863281250f, 0.0292968750000f, 0.0330810546875f, 0.0148925781250f},
    {-0.0196533203125f, -0.0517578125000f, -0.0582275390625f, -0.0266113281250f},
    {0.0332031250000f, 0.0891113281250f, 0.1015625000000f, 0.0476074218750f},
    {-0.0594482421875f, -0.1665039062500f, -0.2003173828125f, -0.1022949218750f},
    {0.1373291015625f, 0.4650878906250f, 0.7797851562500f, 0.9721679687500f},
    {0.9721679687500f, 0.7797851562500f, 0.4650878906250f, 0.1373291015625f},
    {-0.1022949218750f, -0.2003173828125f, -0.1665039062500f, -0.0594482421875f},
    {0.0476074218750f, 0.1015625000000f, 0.0891113281250f, 0.0332031250000f},
    {-0.0266113281250f, -0.0582275390625f, -0.0517578125000f, -0.0196533203125f},
    {0.0148925781250f, 0.0330810546875f, 0.0292968750000f, 0.0109863281250f},
    {-0.0083007812500f, -0.0189208984375f, -0.0291748046875f, 0.0017089843750f},
}};

/* Per channel: the last 11 input samples, then room for a block. */
typedef struct {
    float buf[MG_TP_TAPS - 1 + MG_MAX_BLOCK];
} mg_tp;

static inline void mg_tp_reset(mg_tp *t)
{
    memset(t, 0, sizeof *t);
}

/* Run n <= MG_MAX_BLOCK input samples: est[i] = the true-peak estimate
 * (absolute value) over [i-6, i-5.125]. Non-finite input samples count as 0;
 * the returned pointer holds the input as used (n samples). */
static inline const float *mg_tp_run(mg_tp *restrict t, const float *restrict x, int n,
                                     float *restrict est)
{
    float *restrict b = t->buf + MG_TP_TAPS - 1;
    for (int i = 0; i < n; i++) {
        const float v = x[i];
        b[i] = fabsf(v) <= FLT_MAX ? v : 0.0f;
    }
    for (int i = 0; i < n; i++) {
        const float *w = b + i; /* w[-j] = x[i-j] */
        float y0 = 0.0f, y1 = 0.0f, y2 = 0.0f, y3 = 0.0f;
        for (int j = 0; j < MG_TP_TAPS; j++) {
            const float v = w[-j];
            y0 += mg_tp_bytap.c[j][0] * v;
            y1 += mg_tp_bytap.c[j][1] * v;
            y2 += mg_tp_bytap.c[j][2] * v;
            y3 += mg_tp_bytap.c[j][3] * v;
        }
        float m = fabsf(w[-MG_TP_DELAY]);
        y0 = fabsf(y0);
        y1 = fabsf(y1);
        y2 = fabsf(y2);
        y3 = fabsf(y3);
        m = y0 > m ? y0 : m;
        m = y1 > m ? y1 : m;
        m = y2 > m ? y2 : m;
        m = y3 > m ? y3 : m;
        est[i] = m;
    }
    memmove(t->buf, t->buf + n, (MG_TP_TAPS - 1) * sizeof(float));
    return b; /* valid until the next call: the caller uses it at once */
}

#endif
