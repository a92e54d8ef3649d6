/* Kaiser window helpers shared by the windowed-sinc designs (the saturator's
 * oversampling filters, align's fractional-delay table). Control thread only:
 * they run in prepare. */
#ifndef MG_DSP_KAISER_H
#define MG_DSP_KAISER_H

#include <math.h>

/* Zeroth-order modified Bessel function of the first kind, by its series. */
static inline double dsp_bessel_i0(double x)
{
    double sum = 1.0, term = 1.0;
    for (int k = 1; k < 60; k++) {
        term *= (x / (2.0 * k)) * (x / (2.0 * k));
        sum += term;
        if (term < 1e-17 * sum)
            break;
    }
    return sum;
}

/* The Kaiser window at r in -1..1 (0 outside). */
static inline double dsp_kaiser(double r, double beta)
{
    return fabs(r) >= 1.0 ? 0.0 : dsp_bessel_i0(beta * sqrt(1.0 - r * r)) / dsp_bessel_i0(beta);
}

#endif
