/* sine: a sine oscillator, the same signal on every channel.
 *
 * A phase accumulator in double (cycles): each frame's phase is the last
 * one plus freq / fs, so a frequency change or glide keeps the phase
 * continuous (no step in the waveform); it is wrapped into [0, 1) at the end
 * of each call. sin(2 pi ph) is not a libm call per sample but, for a
 * chunk of frames at once (a loop that vectorises), r = ph - round(ph) folded
 * into [-1/4, 1/4] by sin(pi - x) = sin(x), then an odd polynomial of degree
 * 11 in r (least-squares fit to sin(2 pi r) at Chebyshev nodes, Horner in
 * double): largest error 2.1e-11 against numpy's sin over the whole period,
 * far below the float output's rounding (6e-8 at full scale), so the output
 * is the correctly rounded float of the true sine up to that 2.1e-11
 * (tests/test_nodes.py test_sine_matches_numpy_sin). */
#include "mg_node.h"

enum { P_FREQ, P_LEVEL };

static const mg_param_spec params[] = {
    {"freq", "Hz", "frequency", 1.0f, 24000.0f, 440.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"level", "dB", "peak level (dBFS)", -120.0f, 0.0f, -20.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
};
static const mg_port_spec ports[] = {
    {"out", MG_PORT_OUT, 0},
};

typedef struct {
    int channels;
    double inv_rate;
    double phase; /* cycles, [0, 1) */
} sine_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    sine_state *s = st;
    s->channels = ctx->channels;
    s->inv_rate = 1.0 / ctx->sample_rate;
    return 0;
}

static void reset(void *st)
{
    ((sine_state *)st)->phase = 0.0;
}

#define SINE_CHUNK 64

/* sin(2 pi ph) for any ph >= 0 (error 2.1e-11, see the top of the file) */
static inline double sine_2pi(double ph)
{
    double r = ph - floor(ph + 0.5); /* [-1/2, 1/2] */
    r = r > 0.25 ? 0.5 - r : r;      /* exact (Sterbenz) */
    r = r < -0.25 ? -0.5 - r : r;
    const double r2 = r * r;
    double p = -14.381221754255062;
    p = p * r2 + 42.007770137847523;
    p = p * r2 + -76.70416873318969;
    p = p * r2 + 81.605223654921929;
    p = p * r2 + -41.341702096636119;
    p = p * r2 + 6.2831853070462982;
    return p * r;
}

/* y[i] = sin(2 pi ph[i]) times the level (steady a, or amp[i] when amp) */
MG_HOT static void sine_fill(float *restrict y, const double *restrict ph,
                             const float *restrict amp, float a, int n)
{
    if (amp)
        for (int i = 0; i < n; i++)
            y[i] = (float)sine_2pi(ph[i]) * amp[i];
    else
        for (int i = 0; i < n; i++)
            y[i] = (float)sine_2pi(ph[i]) * a;
}

static void process(void *st, const mg_proc *p)
{
    sine_state *s = st;
    const mg_pv *f = &p->pv[P_FREQ], *a = &p->pv[P_LEVEL];
    float *y = p->out[0];
    double ph = s->phase;
    double pa[SINE_CHUNK];
    for (int i0 = 0; i0 < p->nframes; i0 += SINE_CHUNK) {
        const int m = p->nframes - i0 < SINE_CHUNK ? p->nframes - i0 : SINE_CHUNK;
        if (f->ramp) {
            const float *fr = f->ramp + i0;
            for (int i = 0; i < m; i++) {
                pa[i] = ph;
                ph += (double)fr[i] * s->inv_rate;
            }
        } else {
            const double inc = (double)f->value * s->inv_rate;
            for (int i = 0; i < m; i++)
                pa[i] = ph + i * inc;
            ph += m * inc;
        }
        ph -= floor(ph);
        sine_fill(y + i0, pa, a->ramp ? a->ramp + i0 : NULL, a->value, m);
    }
    s->phase = ph;
    for (int c = 1; c < s->channels; c++)
        memcpy(p->out[c], y, sizeof(float) * (size_t)p->nframes);
}

const mg_node_type mg_type_sine = {
    .name = "sine",
    .doc = "Sine oscillator; `level` is the peak level in dBFS.",
    .default_channels = 1, .min_channels = 1, .max_channels = 64,
    MG_PARAMS(params),
    MG_PORTS(ports),
    .state_size = sizeof(sine_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
};
