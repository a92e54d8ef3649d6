/* align: time alignment of a channel against a reference.
 *
 * The input is delayed by `delay` ms, a fractional delay read with a 32-tap
 * Kaiser-windowed sinc (1024 phases, interpolated linearly between phases):
 * flat within 0.1 dB to 0.4 fs, unlike a cubic Lagrange read, which dulls
 * the highs at half-sample positions. `invert` flips the polarity. The
 * delay is smoothed by the engine, so a change glides instead of clicking.
 *
 * The `measure` action (mixgraph.nodes.align) finds the delay: setting the
 * `capture` trigger records that many seconds of the input (summed to mono)
 * and of the `ref` port on the audio thread into a buffer allocated here;
 * when it is full the node flags it complete (release store) and the
 * control thread copies it out through the capture hook, cross-correlates
 * it and sets `delay` (and `invert`). The delay is an intentional offset,
 * not latency: the graph does not compensate it; the sinc's own 15 samples
 * of look-ahead are declared as latency and are compensated. */
#include <stdatomic.h>

#include "mg_node.h"
#include "dsp_kaiser.h"
#include "dsp_delay.h"

enum { P_DELAY, P_INVERT, P_CAPTURE };

#define MAX_DELAY_MS 500.0f
#define MAX_CAPTURE_S 8.0f
#define TAPS 32
#define HALF (TAPS / 2)
#define PHASES 1024
/* the sinc reads HALF - 1 samples ahead of its centre: declared as latency */
#define LATENCY (HALF - 1)

static const mg_param_spec params[] = {
    {"delay", "ms", "delay of the input (fractional, windowed-sinc read)", 0.0f, MAX_DELAY_MS, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"invert", "", "1: polarity inverted", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 5.0f},
    {"capture", "s", "trigger for the measure action: record this many seconds of input and reference (0 stops)", 0.0f, MAX_CAPTURE_S, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"ref", MG_PORT_IN, 1},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"captured", "", MG_MAP_LIN, 0}, /* capture progress 0..1; 1 = complete */
};

enum { CAP_IDLE, CAP_RUNNING, CAP_DONE };

typedef struct {
    double fs;
    int ch;
    dl_line line[2];
    float *table;     /* (PHASES + 1) x TAPS windowed-sinc coefficients */
    float *cap;       /* cap_max input samples, then cap_max reference samples */
    int cap_max, cap_len, cap_pos;
    _Atomic int cap_state;
} align_state;

/* Row p holds the taps for a fractional delay of p / PHASES samples: tap k
 * multiplies the sample at delay di - (HALF - 1) + k, weight h(k - (HALF - 1) - frac). */
static void build_table(float *t)
{
    /* cutoff at Nyquist: at whole-sample delays the taps are a unit impulse,
     * so an integer delay (and delay 0) is bit-transparent */
    const double beta = 8.0, cutoff = 1.0;
    for (int p = 0; p <= PHASES; p++) {
        const double frac = (double)p / PHASES;
        double sum = 0.0;
        for (int k = 0; k < TAPS; k++) {
            const double x = (double)k - (HALF - 1) - frac; /* in samples */
            const double r = x / (HALF + 0.0);                /* -1..1 over the window */
            const double w = dsp_kaiser(r, beta);
            const double a = MG_PI * cutoff * x;
            const double s = fabs(a) < 1e-12 ? 1.0 : sin(a) / a;
            t[p * TAPS + k] = (float)(cutoff * s * w);
            sum += cutoff * s * w;
        }
        for (int k = 0; k < TAPS; k++) /* unity gain at DC for every phase */
            t[p * TAPS + k] = (float)(t[p * TAPS + k] / sum);
    }
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    align_state *s = st;
    s->fs = ctx->sample_rate;
    s->ch = ctx->channels;
    const size_t frames = (size_t)ceil(MAX_DELAY_MS * 1e-3 * s->fs) + TAPS + 8;
    for (int c = 0; c < s->ch; c++)
        if (dl_alloc(&s->line[c], frames))
            return -1;
    s->table = mg_zalloc((size_t)(PHASES + 1) * TAPS, sizeof(float));
    s->cap_max = (int)ceil(MAX_CAPTURE_S * s->fs);
    s->cap = mg_zalloc((size_t)s->cap_max * 2, sizeof(float));
    if (!s->table || !s->cap)
        return -1;
    build_table(s->table);
    atomic_store(&s->cap_state, CAP_IDLE);
    return 0;
}

static void release(void *st)
{
    align_state *s = st;
    for (int c = 0; c < 2; c++)
        dl_free(&s->line[c]);
    free(s->table);
    free(s->cap);
    s->table = s->cap = NULL;
}

static void reset(void *st)
{
    align_state *s = st;
    for (int c = 0; c < s->ch; c++)
        dl_clear(&s->line[c]);
}

static void on_param(void *st, int index, float v)
{
    align_state *s = st;
    if (index != P_CAPTURE || !s->cap)
        return;
    if (v <= 0.0f) {
        atomic_store_explicit(&s->cap_state, CAP_IDLE, memory_order_relaxed);
        return;
    }
    int n = (int)lround((double)v * s->fs);
    s->cap_len = n < 1 ? 1 : n > s->cap_max ? s->cap_max : n;
    s->cap_pos = 0;
    atomic_store_explicit(&s->cap_state, CAP_RUNNING, memory_order_relaxed);
}

/* The sample `d` samples before the newest one written (d >= 0, fractional). */
/* The taps for delay d (samples): the two nearest table rows interpolated;
 * *di gets the whole-sample part. */
static inline void sinc_taps(const align_state *s, double d, float *restrict h, unsigned *di)
{
    const double whole = floor(d);
    const double pos = (d - whole) * PHASES;
    const int p = (int)pos;
    const float mu = (float)(pos - p);
    const float *restrict a = s->table + (size_t)p * TAPS, *restrict b = a + TAPS;
    for (int k = 0; k < TAPS; k++)
        h[k] = a[k] + mu * (b[k] - a[k]);
    *di = (unsigned)whole;
}

/* The newest sample written, delayed by di whole samples through taps h. */
static inline float read_sinc(const dl_line *l, const float *restrict h, unsigned di)
{
    /* tap k reads the sample at delay di - (HALF - 1) + k counted back from w */
    const unsigned base = l->w - 1u - di + (HALF - 1);
    float acc = 0.0f;
    for (int k = 0; k < TAPS; k++)
        acc += h[k] * l->buf[(base - (unsigned)k) & l->mask];
    return acc;
}

static void capture_block(align_state *s, const mg_proc *p)
{
    if (atomic_load_explicit(&s->cap_state, memory_order_relaxed) != CAP_RUNNING)
        return;
    const int n = p->nframes;
    int take = s->cap_len - s->cap_pos;
    if (take > n)
        take = n;
    float *restrict xin = s->cap + s->cap_pos, *restrict xref = s->cap + s->cap_max + s->cap_pos;
    const float *ref = p->in[s->ch];
    for (int i = 0; i < take; i++) {
        float m = 0.0f;
        for (int c = 0; c < s->ch; c++)
            m += dl_sane(p->in[c][i]);
        xin[i] = m;
        xref[i] = dl_sane(ref[i]);
    }
    s->cap_pos += take;
    if (s->cap_pos >= s->cap_len)
        atomic_store_explicit(&s->cap_state, CAP_DONE, memory_order_release);
}

static void process(void *st, const mg_proc *p)
{
    align_state *s = st;
    const int n = p->nframes;
    const mg_pv *dly = &p->pv[P_DELAY], *inv = &p->pv[P_INVERT];
    const double per_ms = s->fs * 1e-3;
    capture_block(s, p);
    float h[TAPS];
    unsigned di = 0;
    if (!dly->ramp) /* a steady delay: the taps once per block, not per sample */
        sinc_taps(s, (double)dly->value * per_ms + LATENCY, h, &di);
    for (int c = 0; c < s->ch; c++) {
        dl_line *l = &s->line[c];
        const float *restrict x = p->in[c];
        float *restrict y = p->out[c];
        for (int i = 0; i < n; i++) {
            dl_write(l, dl_sane(x[i]));
            if (dly->ramp)
                sinc_taps(s, (double)dly->ramp[i] * per_ms + LATENCY, h, &di);
            const float pol = 1.0f - 2.0f * mg_pv_at(inv, i);
            y[i] = pol * read_sinc(l, h, di);
        }
    }
    const int st_now = atomic_load_explicit(&s->cap_state, memory_order_relaxed);
    p->readout[0] = st_now == CAP_DONE ? 1.0f
                    : st_now == CAP_RUNNING ? (float)s->cap_pos / (float)s->cap_len : 0.0f;
}

static int latency(const void *st)
{
    (void)st;
    return LATENCY;
}

/* [control] input then reference, cap_len samples each, once complete. */
static int capture(void *st, float *dst, int n)
{
    align_state *s = st;
    if (atomic_load_explicit(&s->cap_state, memory_order_acquire) != CAP_DONE)
        return 0;
    int len = s->cap_len;
    if (2 * len > n)
        len = n / 2;
    memcpy(dst, s->cap, sizeof(float) * (size_t)len);
    memcpy(dst + len, s->cap + s->cap_max, sizeof(float) * (size_t)len);
    return 2 * len;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"invert", "normal|inverted"},
};

const mg_node_type mg_type_align = {
    .name = "align",
    .doc = "time alignment: fractional delay of a channel, measured against the `ref` input by cross-correlation (action measure)",
    .default_channels = 1, .min_channels = 1, .max_channels = 2,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(align_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .release = release,
    .on_param = on_param,
    .capture = capture,
    .latency = latency,
};
