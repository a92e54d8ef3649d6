/* noise: white noise, independent per channel, deterministic per seed. */
#include "../mg_node.h"

static const mg_param_spec params[] = {
    {"level", "dB", "RMS level (dBFS)", -120.0f, 0.0f, -20.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
};
static const mg_port_spec ports[] = {
    {"out", MG_PORT_OUT, 0},
};

#define MG_NOISE_MAX_CH 64

typedef struct {
    int channels;
    uint64_t seed;
    uint64_t rng[MG_NOISE_MAX_CH];
} noise_state;

static void reset(void *st)
{
    noise_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        uint64_t x = s->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)(c + 1) * 0xBF58476D1CE4E5B9ULL;
        s->rng[c] = x ? x : 1;
    }
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    noise_state *s = st;
    s->channels = ctx->channels;
    s->seed = ctx->seed;
    reset(st);
    return 0;
}

/* Uniform noise in [-a, a] has RMS a/sqrt(3). */
#define MG_SQRT3 1.7320508075688772f

static void process(void *st, const mg_proc *p)
{
    noise_state *s = st;
    const mg_pv *lv = &p->pv[0];
    for (int c = 0; c < s->channels; c++) {
        float *y = p->out[c];
        uint64_t *r = &s->rng[c];
        for (int i = 0; i < p->nframes; i++)
            y[i] = mg_rng_uniform(r) * MG_SQRT3 * mg_pv_at(lv, i);
    }
}

const mg_node_type mg_type_noise = {
    .name = "noise",
    .doc = "White noise (uniform), independent per channel; `level` is the RMS level in dBFS.",
    .default_channels = 1, .min_channels = 1, .max_channels = MG_NOISE_MAX_CH,
    MG_PARAMS(params),
    MG_PORTS(ports),
    .state_size = sizeof(noise_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
};
