/* limiter: true-peak look-ahead brickwall limiter.
 *
 * Detection runs on the 4x-oversampled signal of BS.1770-4 Annex 2
 * (dsp_truepeak.h): at every input sample the needed gain is
 * r = min(1, ceiling / true-peak estimate). The audio is delayed by
 * D = 5 ms + 12 samples (fixed: the reported latency). With A = `lookahead`
 * (samples, <= 5 ms):
 *   r is delayed by 5 ms - A + 1 samples (read as the minimum of 3
 *     neighbours, so that a changing A never skips one),
 *   h  = minimum of that over the last A + 14 samples (a monotonic deque),
 *   h2 = h with an exponential release (instant attack, never above h),
 *   g  = moving average of h2 over the last A samples.
 * Every gain value applied within 6 samples of a peak (the reach of the
 * interpolation filter) is then at most the gain that peak needs, so the
 * output's true peak stays at the ceiling; the gain is a smooth ramp (the
 * moving average) that starts A samples before the peak and holds until
 * it has passed. Below the ceiling g is exactly 1: the output is the input
 * delayed by D samples.
 *
 * `lookahead` moves one sample per sample towards a new setting (no gain
 * step) and never changes the latency. `link` (%) mixes each channel's
 * needed gain towards the smallest over the channels (100 %: one gain for
 * all, the stereo image holds). */
#include <float.h>
#include <stdlib.h>

#include "dsp_truepeak.h"
#include "mg_node.h"

enum { P_CEILING, P_LOOKAHEAD, P_RELEASE, P_LINK };

#define LIM_MAX_LOOKAHEAD_MS 5.0

static const mg_param_spec params[] = {
    {.name = "ceiling", .unit = "dB", .doc = "highest true-peak level of the output (dBTP)",
     .min = -24.0f, .max = 0.0f, .def = -1.0f, .map = MG_MAP_DB, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
    {.name = "lookahead", .unit = "ms",
     .doc = "attack ramp before a peak, within the fixed 5 ms look-ahead (latency unchanged)",
     .min = 0.1f, .max = 5.0f, .def = 5.0f, .map = MG_MAP_LOG, .taper = MG_TAPER_LOG,
     .smooth_ms = 0.0f},
    {.name = "release", .unit = "ms", .doc = "gain recovery time constant",
     .min = 1.0f, .max = 2000.0f, .def = 60.0f, .map = MG_MAP_LOG, .taper = MG_TAPER_LOG,
     .smooth_ms = 20.0f},
    {.name = "link", .unit = "%", .doc = "channel link: 100 applies one gain to all channels",
     .min = 0.0f, .max = 100.0f, .def = 100.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"gr", "dB", MG_MAP_DB, 1}, /* gain applied: 0 dB = no reduction */
};

#define LIM_MAX_CH 64
#define LIM_FIX 1099511627776.0 /* 2^40: the moving average sums integers (no drift) */

typedef struct {
    float *delay;  /* dmask + 1 */
    int64_t *avg;  /* amask + 1: the h2 history, in 2^-40 units */
    float *rr;     /* rmask + 1: the needed gains, for the detection delay */
    float *qv;     /* deque of (value, time), qmask + 1 */
    uint32_t *qt;
    int qh, qn;    /* head, length */
    double h2;
    int64_t sum;
    mg_tp tp;
} lim_chan;

typedef struct {
    int channels;
    double sr;
    int amax, dlat;              /* samples: max look-ahead, delay D */
    int a, a_target;             /* current / wanted attack (moving-average length) */
    uint32_t dmask, amask, qmask, rmask;
    uint32_t t;                  /* sample counter (wraps; used modulo the ring sizes) */
    float *mem;
    float *est;                  /* channels x MG_MAX_BLOCK: true-peak estimates */
    lim_chan ch[LIM_MAX_CH];
} lim_state;

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static void release(void *st)
{
    lim_state *s = st;
    free(s->mem);
    free(s->est);
    s->mem = NULL;
    s->est = NULL;
}

static void reset(void *st)
{
    lim_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        lim_chan *k = &s->ch[c];
        memset(k->delay, 0, (s->dmask + 1) * sizeof *k->delay);
        for (uint32_t i = 0; i <= s->amask; i++)
            k->avg[i] = (int64_t)LIM_FIX;
        for (uint32_t i = 0; i <= s->rmask; i++)
            k->rr[i] = 1.0f;
        k->qh = k->qn = 0;
        k->h2 = 1.0;
        k->sum = (int64_t)s->a * (int64_t)LIM_FIX;
        mg_tp_reset(&k->tp);
    }
}

static int attack_samples(const lim_state *s, float ms)
{
    int a = (int)lround(ms * 0.001 * s->sr);
    return a < 1 ? 1 : a > s->amax ? s->amax : a;
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    lim_state *s = st;
    s->channels = ctx->channels;
    s->sr = ctx->sample_rate;
    s->amax = (int)lround(LIM_MAX_LOOKAHEAD_MS * 0.001 * ctx->sample_rate);
    if (s->amax < 1)
        s->amax = 1;
    s->dlat = s->amax + 2 * MG_TP_DELAY;
    s->dmask = pow2_at_least((uint32_t)s->dlat + 1) - 1;
    s->amask = pow2_at_least((uint32_t)s->amax + 1) - 1;
    s->qmask = pow2_at_least((uint32_t)s->amax + 16) - 1;
    s->rmask = pow2_at_least((uint32_t)s->amax + 4) - 1;
    const size_t per = (s->dmask + 1) * sizeof(float) + (s->amask + 1) * sizeof(int64_t) +
                       (s->qmask + 1) * (sizeof(float) + sizeof(uint32_t)) +
                       (s->rmask + 1) * sizeof(float);
    s->mem = mg_zalloc((size_t)s->channels, per);
    s->est = mg_zalloc((size_t)s->channels * MG_MAX_BLOCK, sizeof(float));
    if (!s->mem || !s->est)
        return -1;
    char *m = (char *)s->mem;
    for (int c = 0; c < s->channels; c++) {
        lim_chan *k = &s->ch[c];
        k->avg = (int64_t *)m;
        m += (s->amask + 1) * sizeof(int64_t);
        k->delay = (float *)m;
        m += (s->dmask + 1) * sizeof(float);
        k->qv = (float *)m;
        m += (s->qmask + 1) * sizeof(float);
        k->qt = (uint32_t *)m;
        m += (s->qmask + 1) * sizeof(uint32_t);
        k->rr = (float *)m;
        m += (s->rmask + 1) * sizeof(float);
    }
    if (s->a_target <= 0)
        s->a_target = s->amax;
    s->a = s->a_target = s->a_target > s->amax ? s->amax : s->a_target;
    reset(st);
    return 0;
}

static void on_param(void *st, int index, float target)
{
    lim_state *s = st;
    if (index == P_LOOKAHEAD && s->sr > 0.0) {
        s->a_target = attack_samples(s, target);
        if (s->t == 0) { /* not started: the history is all 1, take it at once */
            s->a = s->a_target;
            for (int c = 0; c < s->channels; c++)
                s->ch[c].sum = (int64_t)s->a * (int64_t)LIM_FIX;
        }
    }
}

/* One sample of one gain chain: needed gain r in, gain out. */
static inline float chain_step(lim_chan *restrict k, const lim_state *restrict s, float rin,
                               uint32_t t, uint32_t det, uint32_t hold, int a, int grow,
                               int shrink, double inv, double arel)
{
    const uint32_t am = s->amask, qm = s->qmask, rm = s->rmask;
    k->rr[t & rm] = rin;
    float rc = k->rr[(t - det) & rm];
    const float r0 = k->rr[(t - det - 1) & rm], r1 = k->rr[(t - det + 1) & rm];
    rc = r0 < rc ? r0 : rc;
    rc = r1 < rc ? r1 : rc;
    /* sliding minimum over the last `hold` samples */
    while (k->qn > 0 && k->qv[(k->qh + k->qn - 1) & qm] >= rc)
        k->qn--;
    k->qv[(k->qh + k->qn) & qm] = rc;
    k->qt[(k->qh + k->qn) & qm] = t;
    k->qn++;
    while (t - k->qt[k->qh & qm] >= hold) {
        k->qh = (k->qh + 1) & (int)qm;
        k->qn--;
    }
    const double h = k->qv[k->qh & qm];
    /* instant attack, exponential release, never above h */
    double h2 = k->h2;
    if (h <= h2)
        h2 = h;
    else {
        h2 += (h - h2) * arel;
        if (h - h2 < 1e-9)
            h2 = h;
    }
    k->h2 = h2;
    /* moving average of h2 over the last a samples, in 2^-40 units */
    const int64_t q = (int64_t)(h2 * LIM_FIX);
    int64_t sum = k->sum + q;
    if (!grow)
        sum -= k->avg[(t - (uint32_t)a) & am];
    if (shrink)
        sum -= k->avg[(t - (uint32_t)a + 1) & am];
    k->avg[t & am] = q;
    k->sum = sum;
    double g = (double)sum * inv;
    g = g > 1.0 ? 1.0 : g;
    return (float)g;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    lim_state *s = st;
    const int n = p->nframes, nc = s->channels;
    const mg_pv *pc = &p->pv[P_CEILING], *pl = &p->pv[P_LINK];
    const float rel_ms = mg_pv_at(&p->pv[P_RELEASE], n - 1);
    const double arel = 1.0 - exp(-1.0 / (rel_ms * 0.001 * s->sr));
    const uint32_t dm = s->dmask, dl = (uint32_t)s->dlat;
    float r[LIM_MAX_CH];
    float gmin[LIM_MAX_CH];
    const float *xs[LIM_MAX_CH];
    for (int c = 0; c < nc; c++) {
        gmin[c] = 1.0f;
        xs[c] = mg_tp_run(&s->ch[c].tp, p->in[c], n, s->est + (size_t)c * MG_MAX_BLOCK);
    }
    uint32_t t = s->t;
    int a = s->a;
    double inva = 1.0 / ((double)a * LIM_FIX);
    for (int i = 0; i < n; i++, t++) {
        const float ceil_ = mg_pv_at(pc, i);
        const float link = mg_pv_at(pl, i) * 0.01f;
        float rmin = 1.0f;
        for (int c = 0; c < nc; c++) {
            s->ch[c].delay[t & dm] = xs[c][i]; /* NaN / Inf were made silence */
            const float d = s->est[(size_t)c * MG_MAX_BLOCK + i];
            const float rc = d > ceil_ ? ceil_ / d : 1.0f;
            r[c] = rc;
            rmin = rc < rmin ? rc : rmin;
        }
        /* the attack length walks one sample per sample towards its setting */
        const int grow = a < s->a_target, shrink = a > s->a_target;
        const double inv =
            (grow | shrink) ? 1.0 / ((double)(a + grow - shrink) * LIM_FIX) : inva;
        /* detection delay and min-hold window for the look-ahead in use */
        const uint32_t det = (uint32_t)(s->amax - a + 1), hold = (uint32_t)(a + 14);
        for (int c = 0; c < nc; c++) {
            const float gc = chain_step(&s->ch[c], s, r[c] + link * (rmin - r[c]), t, det, hold,
                                        a, grow, shrink, inv, arel);
            gmin[c] = gc < gmin[c] ? gc : gmin[c];
            p->out[c][i] = s->ch[c].delay[(t - dl) & dm] * gc;
        }
        if (grow | shrink) {
            a += grow - shrink;
            inva = inv;
        }
    }
    s->t = t;
    s->a = a;
    for (int c = 0; c < nc; c++) {
        if (!isfinite(s->ch[c].h2))
            s->ch[c].h2 = 1.0;
        p->readout[c] = gmin[c];
    }
}

static int latency(const void *st)
{
    return ((const lim_state *)st)->dlat;
}

const mg_node_type mg_type_limiter = {
    .name = "limiter",
    .doc = "True-peak look-ahead limiter: the output's true peak (BS.1770-4, 4x oversampled) "
           "stays at `ceiling` dBTP. Latency 5 ms + 12 samples (fixed); `lookahead` is the "
           "attack ramp inside it; `release` is the recovery time constant; `link` % shares "
           "the gain between channels. Below the ceiling the output is the input, delayed. "
           "Readout `gr`: the lowest gain of the last block per channel (dB).",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = LIM_MAX_CH,
    MG_PARAMS(params),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(lim_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .release = release,
    .on_param = on_param,
    .latency = latency,
};
