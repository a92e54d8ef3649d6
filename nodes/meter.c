/* meter: sample peak, RMS, true peak (BS.1770-4 Annex 2), loudness
 * (BS.1770-4 / EBU R 128: momentary, short-term, integrated, loudness range)
 * and stereo correlation.
 *
 * Loudness runs on 100 ms sub-blocks (round(0.1 fs) samples, counted from
 * the node's start or its last reset): momentary = the last 4 (400 ms),
 * short-term = the last 30 (3 s), both updated every 100 ms. Integrated
 * loudness gates the 400 ms blocks with 75 % overlap (-70 LUFS absolute,
 * -10 LU relative); the loudness range takes the 3 s blocks every 100 ms
 * (-70 LUFS absolute, -20 LU relative, 10th to 95th percentile). Both keep
 * fixed histograms (see dsp_loudness.h): the measurement can run for ever.
 *
 * `reset` is a trigger: every command setting it to 1 (even when it already
 * reads 1) restarts the integrated loudness, the loudness range and the
 * true-peak maxima at that sample; 0 does nothing. Its stored value has no
 * other meaning. */
#include <float.h>

#include "dsp_loudness.h"
#include "dsp_truepeak.h"
#include "mg_node.h"

enum { P_RESET };

static const mg_param_spec params[] = {
    {.name = "reset", .unit = "",
     .doc = "trigger: setting 1 restarts integrated loudness, loudness range and true-peak maxima",
     .min = 0.0f, .max = 1.0f, .def = 0.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_STEP,
     .smooth_ms = 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
};

enum { R_PEAK, R_RMS, R_TRUEPEAK, R_MOMENTARY, R_SHORTTERM, R_INTEGRATED, R_LRA, R_CORR };

static const mg_readout_spec readouts[] = {
    {"peak", "dBFS", MG_MAP_DB, 1},
    {"rms", "dBFS", MG_MAP_DB, 1},
    {"truepeak", "dBTP", MG_MAP_DB, 1},
    {"momentary", "LUFS", MG_MAP_LIN, 0},
    {"shortterm", "LUFS", MG_MAP_LIN, 0},
    {"integrated", "LUFS", MG_MAP_LIN, 0},
    {"lra", "LU", MG_MAP_LIN, 0},
    {"correlation", "", MG_MAP_LIN, 0},
};

#define MG_METER_MAX_CH 64
#define SUBS_M 4   /* 400 ms */
#define SUBS_S 30  /* 3 s */

typedef struct {
    int channels;
    float fall;   /* per-sample peak decay factor */
    float alpha;  /* RMS one-pole coefficient */
    float peak[MG_METER_MAX_CH];
    double ms[MG_METER_MAX_CH];
    /* true peak */
    mg_tp tp[MG_METER_MAX_CH];
    float tpmax[MG_METER_MAX_CH];
    int tpskip; /* after a reset: outputs that interpolate before it */
    /* loudness */
    mg_bq kw1, kw2;
    mg_bq_state kst[MG_METER_MAX_CH][2];
    double weight[MG_METER_MAX_CH];
    int hop;            /* samples per 100 ms sub-block */
    int pos;            /* samples into the current sub-block */
    double acc;         /* weighted energy of the current sub-block */
    double ring[SUBS_S]; /* weighted energies of the last 30 sub-blocks */
    int ri;
    long subs;          /* sub-blocks since the last reset */
    double mom, st, integ, lra;
    mg_lhist gate, range;
    /* correlation (channels 1 and 2) over 400 ms */
    double cxy, cxx, cyy;
    double cring[SUBS_M][3];
    int ci;
    float corr;
    int pending_reset;
} meter_state;

static void reset_stats(meter_state *s)
{
    for (int c = 0; c < s->channels; c++)
        s->tpmax[c] = 0.0f;
    s->tpskip = MG_TP_DELAY;
    mg_lhist_clear(&s->gate);
    mg_lhist_clear(&s->range);
    s->integ = MG_LUFS_FLOOR;
    s->lra = 0.0;
    /* the 100 ms grid restarts here, so the gated blocks are those of a fresh start */
    s->subs = 0;
    s->pos = 0;
    s->acc = 0.0;
    s->cxy = s->cxx = s->cyy = 0.0;
}

static void reset(void *st)
{
    meter_state *s = st;
    memset(s->peak, 0, sizeof s->peak);
    memset(s->ms, 0, sizeof s->ms);
    for (int c = 0; c < s->channels; c++)
        mg_tp_reset(&s->tp[c]);
    memset(s->kst, 0, sizeof s->kst);
    memset(s->ring, 0, sizeof s->ring);
    memset(s->cring, 0, sizeof s->cring);
    s->ri = 0;
    s->mom = s->st = MG_LUFS_FLOOR;
    s->corr = 0.0f;
    reset_stats(s);
}

static void release(void *st)
{
    meter_state *s = st;
    mg_lhist_free(&s->gate);
    mg_lhist_free(&s->range);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    meter_state *s = st;
    s->channels = ctx->channels;
    s->fall = (float)pow(10.0, -20.0 / 20.0 / (1.7 * ctx->sample_rate));
    s->alpha = (float)(1.0 - exp(-1.0 / (0.300 * ctx->sample_rate)));
    mg_kweight_design(ctx->sample_rate, &s->kw1, &s->kw2);
    for (int c = 0; c < s->channels; c++)
        s->weight[c] = mg_loud_weight(s->channels, c);
    s->hop = (int)lround(0.1 * ctx->sample_rate);
    if (s->hop < 1)
        s->hop = 1;
    if (mg_lhist_alloc(&s->gate) || mg_lhist_alloc(&s->range))
        return -1; /* release() frees what was allocated */
    reset(st);
    return 0;
}

static void on_param(void *st, int index, float target)
{
    meter_state *s = st;
    if (index == P_RESET && target >= 0.5f)
        s->pending_reset = 1;
}

/* A 100 ms sub-block is complete: update momentary, short-term, gating. */
static void end_subblock(meter_state *s)
{
    s->ring[s->ri] = s->acc;
    double *cr = s->cring[s->ci];
    s->ci = (s->ci + 1) % SUBS_M;
    cr[0] = s->cxy;
    cr[1] = s->cxx;
    cr[2] = s->cyy;
    s->ri = (s->ri + 1) % SUBS_S;
    s->acc = 0.0;
    s->cxy = s->cxx = s->cyy = 0.0;
    s->subs++;
    double zm = 0.0, zs = 0.0;
    for (int k = 0; k < SUBS_S; k++) {
        const double v = s->ring[(s->ri - 1 - k + 2 * SUBS_S) % SUBS_S];
        zs += v;
        if (k < SUBS_M)
            zm += v;
    }
    zm /= (double)SUBS_M * s->hop;
    zs /= (double)SUBS_S * s->hop;
    s->mom = mg_lufs(zm);
    s->st = mg_lufs(zs);
    if (s->subs >= SUBS_M) {
        mg_lhist_add(&s->gate, zm);
        s->integ = mg_lhist_gated(&s->gate, -10.0);
    }
    if (s->subs >= SUBS_S) {
        mg_lhist_add(&s->range, zs);
        s->lra = mg_lhist_range(&s->range);
    }
    double xy = 0.0, xx = 0.0, yy = 0.0;
    for (int k = 0; k < SUBS_M; k++) {
        xy += s->cring[k][0];
        xx += s->cring[k][1];
        yy += s->cring[k][2];
    }
    const double d = sqrt(xx * yy);
    double r = d > 1e-30 ? xy / d : 0.0;
    r = r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
    s->corr = isfinite(r) ? (float)r : 0.0f;
}

/* The sample and true peaks and the mean squares of every channel, and
 * their readouts. */
MG_HOT static void levels(meter_state *s, const mg_proc *p, int skip)
{
    const int n = p->nframes, nc = s->channels;
    float est[MG_MAX_BLOCK];
    /* peak and mean square: serial recursions per channel, so a stereo
     * meter runs its two side by side (the same arithmetic) */
    float pks[MG_METER_MAX_CH];
    double mss[MG_METER_MAX_CH];
    const double a = s->alpha;
    const float fall = s->fall;
    if (nc == 2) {
        const float *x0 = p->in[0], *x1 = p->in[1];
        float pk0 = s->peak[0], pk1 = s->peak[1];
        double ms0 = s->ms[0], ms1 = s->ms[1];
        for (int i = 0; i < n; i++) {
            const float v0 = fabsf(x0[i]), v1 = fabsf(x1[i]);
            pk0 *= fall;
            pk1 *= fall;
            if (v0 > pk0 || !(pk0 == pk0))
                pk0 = v0;
            if (v1 > pk1 || !(pk1 == pk1))
                pk1 = v1;
            ms0 += a * ((double)x0[i] * x0[i] - ms0);
            ms1 += a * ((double)x1[i] * x1[i] - ms1);
        }
        pks[0] = pk0, pks[1] = pk1, mss[0] = ms0, mss[1] = ms1;
    } else {
        for (int c = 0; c < nc; c++) {
            const float *x = p->in[c];
            float pk = s->peak[c];
            double ms = s->ms[c];
            for (int i = 0; i < n; i++) {
                const float v = fabsf(x[i]);
                pk *= fall;
                if (v > pk || !(pk == pk))
                    pk = v;
                ms += a * ((double)x[i] * x[i] - ms);
            }
            pks[c] = pk, mss[c] = ms;
        }
    }
    for (int c = 0; c < nc; c++) {
        const float *x = p->in[c];
        float pk = pks[c];
        double ms = mss[c];
        mg_tp_run(&s->tp[c], x, n, est);
        float tpm = s->tpmax[c];
        for (int i = skip; i < n; i++)
            tpm = est[i] > tpm ? est[i] : tpm;
        if (!isfinite(pk))
            pk = 0.0f;
        if (tpm > FLT_MAX) /* finite samples near FLT_MAX overflow the interpolator: the */
            tpm = FLT_MAX; /* maximum held +inf until a reset (attack6) */
        if (!isfinite(ms))
            ms = 0.0;
        s->peak[c] = pk;
        s->ms[c] = ms;
        s->tpmax[c] = tpm;
        p->readout[c] = pk;
        p->readout[nc + c] = (float)sqrt(ms);
        p->readout[2 * nc + c] = tpm;
    }
}

/* Loudness and correlation, split at the 100 ms grid. */
MG_HOT static void loudness(meter_state *s, const mg_proc *p)
{
    const int n = p->nframes, nc = s->channels;
    const float *cl = p->in[0], *cr = p->in[nc > 1 ? 1 : 0];
    for (int i = 0; i < n;) {
        int m = s->hop - s->pos;
        if (m > n - i)
            m = n - i;
        if (nc == 2 && s->weight[0] != 0.0 && s->weight[1] != 0.0) {
            double e0, e1;
            mg_kweight_energy2(&s->kw1, &s->kw2, s->kst[0], s->kst[1], p->in[0] + i, p->in[1] + i,
                               m, &e0, &e1);
            s->acc += s->weight[0] * e0;
            s->acc += s->weight[1] * e1;
        } else {
            for (int c = 0; c < nc; c++) {
                if (s->weight[c] == 0.0)
                    continue;
                s->acc += s->weight[c] * mg_kweight_energy(&s->kw1, &s->kw2, s->kst[c],
                                                           p->in[c] + i, m);
            }
        }
        double xy = 0.0, xx = 0.0, yy = 0.0;
        for (int j = i; j < i + m; j++) {
            const double l = cl[j], r = cr[j];
            xy += l * r;
            xx += l * l;
            yy += r * r;
        }
        if (isfinite(xy) && isfinite(xx) && isfinite(yy)) {
            s->cxy += xy;
            s->cxx += xx;
            s->cyy += yy;
        }
        s->pos += m;
        i += m;
        if (s->pos >= s->hop) {
            s->pos = 0;
            end_subblock(s);
        }
    }
}

typedef struct {
    meter_state *s;
    const mg_proc *p;
    int skip;
} meter_job;

static void meter_part(void *arg, int i)
{
    const meter_job *d = arg;
    if (i == 0)
        loudness(d->s, d->p);
    else
        levels(d->s, d->p, d->skip);
}

/* The levels and the loudness read the input and write state and readouts
 * of their own: the two parts of an mg_par_for job, so that in a plan's
 * parallel form the master meter (the last node of mix64's serial tail)
 * runs on both threads; in order elsewhere (the same samples either way). */
MG_HOT static void process(void *st, const mg_proc *p)
{
    meter_state *s = st;
    const int n = p->nframes, nc = s->channels;
    if (s->pending_reset) {
        s->pending_reset = 0;
        reset_stats(s);
    }
    const int skip = s->tpskip;
    s->tpskip = skip > n ? skip - n : 0;
    const meter_job d = {s, p, skip};
    mg_par_for(meter_part, (void *)&d, 2);
    const int b = 3 * nc;
    p->readout[b + 0] = (float)s->mom;
    p->readout[b + 1] = (float)s->st;
    p->readout[b + 2] = (float)s->integ;
    p->readout[b + 3] = (float)s->lra;
    p->readout[b + 4] = s->corr;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"reset", "idle|reset"},
};

const mg_node_type mg_type_meter = {
    .name = "meter",
    .doc = "Level meter: `peak` (instant attack, 20 dB per 1.7 s fall) and `rms` (300 ms) per "
           "channel in dBFS; `truepeak` per channel (BS.1770-4 Annex 2, 4x oversampled, maximum "
           "since reset) in dBTP; EBU R 128 loudness `momentary` (400 ms), `shortterm` (3 s), "
           "`integrated` (gated, since reset) in LUFS and `lra` (EBU Tech 3342) in LU, updated "
           "every 100 ms, -200 LUFS when there is nothing to measure; 5 channels are taken as "
           "L R C Ls Rs and 6 as L R C LFE Ls Rs; `correlation` of channels 1 and 2 over 400 ms "
           "(-1..1, 0 when either is silent). `reset` is a trigger: each set to 1 restarts the "
           "integrated loudness, loudness range and true-peak maxima.",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = MG_METER_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(meter_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .release = release,
    .on_param = on_param,
};
