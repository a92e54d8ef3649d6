/* sine: a sine oscillator, the same signal on every channel. */
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

#define MG_TWO_PI 6.28318530717958647692

static void process(void *st, const mg_proc *p)
{
    sine_state *s = st;
    const mg_pv *f = &p->pv[P_FREQ], *a = &p->pv[P_LEVEL];
    float *y = p->out[0];
    double ph = s->phase;
    for (int i = 0; i < p->nframes; i++) {
        y[i] = (float)sin(MG_TWO_PI * ph) * mg_pv_at(a, i);
        ph += (double)mg_pv_at(f, i) * s->inv_rate;
        ph -= floor(ph);
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
