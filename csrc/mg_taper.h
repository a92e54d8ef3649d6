/* Published tapers and ramp curves in C: the audio thread's copy of
 * server/tapers.py (same formulas, in double), for taper ramps
 * (MG_CMD_RAMP). tests/test_ramp.py checks them against the Python ones. */
#ifndef MG_TAPER_H
#define MG_TAPER_H
#include <math.h>
#include "mg_api.h"

/* The fader law's breakpoints (norm, dB), as FADER_POINTS in server/tapers.py. */
static const double mg_fader_pts[4][2] = {{0.0625, -60.0}, {0.25, -30.0}, {0.5, -10.0}, {0.75, 0.0}};

/* The fader law's breakpoints for a range: (0, lo), the inner points with
 * lo < dB < hi, (1, hi). Returns how many (2..6). */
static inline int mg_fader_law(double lo, double hi, double *ns, double *ds)
{
    int k = 0;
    ns[k] = 0.0;
    ds[k++] = lo;
    for (int i = 0; i < 4; i++)
        if (lo < mg_fader_pts[i][1] && mg_fader_pts[i][1] < hi) {
            ns[k] = mg_fader_pts[i][0];
            ds[k++] = mg_fader_pts[i][1];
        }
    ns[k] = 1.0;
    ds[k++] = hi;
    return k;
}

/* Piecewise linear interpolation, as tapers._interp (xs ascending). */
static inline double mg_interp(double x, const double *xs, const double *ys, int n)
{
    int i = 0; /* bisect_right(xs, x) - 1, clamped to 0..n-2 */
    while (i < n && xs[i] <= x)
        i++;
    i -= 1;
    if (i < 0)
        i = 0;
    if (i > n - 2)
        i = n - 2;
    double x0 = xs[i], x1 = xs[i + 1], y0 = ys[i], y1 = ys[i + 1];
    if (x1 == x0)
        return y0;
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

/* tapers.to_value: the value (unit domain) at control position n. */
static inline double mg_taper_to_value(int taper, double lo, double hi, double n)
{
    n = n < 0.0 ? 0.0 : n > 1.0 ? 1.0 : n;
    if (hi <= lo)
        return lo;
    if (taper == MG_TAPER_FADER) {
        double ns[6], ds[6];
        int k = mg_fader_law(lo, hi, ns, ds);
        return mg_interp(n, ns, ds, k);
    }
    if (taper == MG_TAPER_LOG && lo > 0.0)
        return lo * pow(hi / lo, n);
    double v = lo + (hi - lo) * n;
    if (taper == MG_TAPER_STEP) {
        v = nearbyint(v);
        v = v < ceil(lo) ? ceil(lo) : v > floor(hi) ? floor(hi) : v;
    }
    return v;
}

/* tapers.to_norm: the control position (0..1) of a value. */
static inline double mg_taper_to_norm(int taper, double lo, double hi, double v)
{
    if (hi <= lo)
        return 0.0;
    v = v < lo ? lo : v > hi ? hi : v;
    if (taper == MG_TAPER_FADER) {
        double ns[6], ds[6];
        int k = mg_fader_law(lo, hi, ns, ds);
        return mg_interp(v, ds, ns, k);
    }
    if (taper == MG_TAPER_LOG && lo > 0.0)
        return log(v / lo) / log(hi / lo);
    return (v - lo) / (hi - lo);
}

/* A ramp's shape: the fraction of the way (0..1) at time fraction t (0..1).
 * linear: t; scurve: 3t^2 - 2t^3 (smoothstep); exp: (e^(4t) - 1) / (e^4 - 1),
 * slow then fast. */
static inline double mg_curve_at(int curve, double t)
{
    if (curve == MG_CURVE_SCURVE)
        return t * t * (3.0 - 2.0 * t);
    if (curve == MG_CURVE_EXP)
        return (exp(4.0 * t) - 1.0) / (exp(4.0) - 1.0);
    return t;
}

/* A unit-domain value in the node domain (MG_MAP_DB: amplitude, in double;
 * at or below -120 dB: 0, as mg_db_to_amp). */
static inline double mg_unit_to_node(int map, double v)
{
    if (map == MG_MAP_DB)
        return v <= -120.0 ? 0.0 : exp(v * 0.11512925464970229); /* 10^(v/20) */
    return v;
}

/* The inverse (amplitude 0 -> -120 dB). */
static inline double mg_node_to_unit(int map, double x)
{
    if (map == MG_MAP_DB)
        return x <= 1e-6 ? -120.0 : 20.0 * log10(x);
    return x;
}
#endif
