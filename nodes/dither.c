/* dither: TPDF dither and quantisation to a word length (16 or 24 bit).
 *
 * Full scale is +/-1; the quantisation step is q = 2^-(bits-1), and the
 * output takes the values k q with -2^(bits-1) <= k <= 2^(bits-1) - 1 (the
 * integer codes of a `bits`-bit converter, exactly representable in float32
 * for bits <= 24). The dither is the sum of two independent uniform values of
 * +/-q/2 (triangular over +/-q, variance q^2/6); rounding the dithered signal
 * to the grid adds an error uniform over +/-q/2 and independent of the
 * signal (variance q^2/12), so the total error has power q^2/4 and no
 * distortion or noise modulation. Independent per channel, deterministic
 * per seed. `on` = 0 passes the signal through untouched. */
#include "mg_node.h"

enum { P_BITS, P_ON };

static const mg_param_spec params[] = {
    {.name = "bits", .unit = "", .doc = "word length: 16 or 24 (values below 20 mean 16)",
     .min = 16.0f, .max = 24.0f, .def = 24.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_STEP,
     .smooth_ms = 0.0f},
    {.name = "on", .unit = "", .doc = "1: dither and quantise; 0: pass the signal through",
     .min = 0.0f, .max = 1.0f, .def = 1.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_STEP,
     .smooth_ms = 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};

#define DITHER_MAX_CH 64

typedef struct {
    int channels;
    int on;
    double scale; /* 1/q */
    double kmax;  /* largest code */
    uint64_t seed;
    uint64_t rng[DITHER_MAX_CH];
} dither_state;

static void set_bits(dither_state *s, float bits)
{
    const int b = bits < 20.0f ? 16 : 24;
    s->scale = ldexp(1.0, b - 1);
    s->kmax = s->scale - 1.0;
}

static void reset(void *st)
{
    dither_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        uint64_t x = s->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)(c + 1) * 0xD1B54A32D192ED03ULL;
        s->rng[c] = x ? x : 1;
    }
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    dither_state *s = st;
    s->channels = ctx->channels;
    s->seed = ctx->seed;
    if (s->scale == 0.0) {
        set_bits(s, 24.0f);
        s->on = 1;
    }
    reset(st);
    return 0;
}

static void on_param(void *st, int index, float target)
{
    dither_state *s = st;
    if (index == P_BITS)
        set_bits(s, target);
    else if (index == P_ON)
        s->on = target >= 0.5f;
}

/* Uniform in [-0.5, 0.5) from the top 53 bits. */
static inline double half_uniform(uint64_t *r)
{
    return (double)(mg_rng_next(r) >> 11) * (1.0 / 9007199254740992.0) - 0.5;
}

static void process(void *st, const mg_proc *p)
{
    dither_state *s = st;
    const int n = p->nframes;
    if (!s->on) {
        for (int c = 0; c < s->channels; c++)
            if (p->out[c] != p->in[c])
                memcpy(p->out[c], p->in[c], (size_t)n * sizeof(float));
        return;
    }
    const double scale = s->scale, inv = 1.0 / scale, kmax = s->kmax, kmin = -scale;
    for (int c = 0; c < s->channels; c++) {
        const float *x = p->in[c];
        float *y = p->out[c];
        uint64_t *r = &s->rng[c];
        for (int i = 0; i < n; i++) {
            const double d = half_uniform(r) + half_uniform(r); /* TPDF, in steps */
            double k = floor((double)x[i] * scale + d + 0.5);
            if (!(k >= kmin)) /* also NaN */
                k = k > 0.0 ? kmax : (k < 0.0 ? kmin : 0.0);
            if (k > kmax)
                k = kmax;
            y[i] = (float)(k * inv);
        }
    }
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"bits", NULL},
    {"on", "off|on"},
};

const mg_node_type mg_type_dither = {
    .name = "dither",
    .doc = "TPDF dither and quantisation to 16 or 24 bit (`bits`); the output lies on the "
           "grid of that word length (full scale +/-1) and the added error has power q^2/4 "
           "(q = 2^-(bits-1)). Deterministic per seed; `on` 0 bypasses.",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = DITHER_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    .state_size = sizeof(dither_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .on_param = on_param,
};
