/* denoise: STFT spectral noise reduction (Wiener gain, decision-directed SNR).
 *
 * Frames of N samples (1024 at 44.1/48 kHz, scaled with the rate: 512..4096)
 * every H = N/2 samples (50 % overlap, as RNNoise and speexdsp's
 * preprocessor; a hop of N/4 costs twice the frames for at most 0.9 dB more
 * SNR improvement on the reference tests, tests/test_node_denoise.py), sqrt-Hann analysis
 * and synthesis windows (their product, the periodic Hann, overlap-adds to
 * exactly 1 at a hop of N/2; the synthesis window carries the FFT's 1/N).
 * The latency is N - 1 samples: the output at time t is the input at
 * t - N + 1, the two frames that cover it added.
 *
 * Per bin k of a frame, with P = |X|^2 and the noise power L (learned profile
 * or tracker, times `threshold`):
 *   gamma = P / L                                  a-posteriori SNR
 *   xi = a A2 / L + (1 - a) max(gamma - 1, 0)      decision-directed a-priori
 *                                                  SNR (Ephraim-Malah, a = 0.98;
 *                                                  A2 = the previous frame's G^2 P)
 *   G = xi / (1 + xi)                              Wiener gain
 * (the maximum-likelihood term gamma - 1 uses P smoothed over 3 bins, against
 * musical noise), then the gains are smoothed across frequency (`smooth`, a
 * zero-phase one-pole pass up and down the bins), held in
 * [10^(-reduction/20), 1] and, in stereo, moved by `link` towards the larger
 * of the two channels' gains (still within that range):
 * never above 0 dB; `reduction` 0 makes every gain exactly 1 (the output is
 * the input delayed, up to float rounding of the FFT round trip).
 *
 * Noise estimate: `track` 1 follows the noise continuously by minimum
 * statistics (the minimum over ~1.5 s of the periodogram smoothed over
 * ~40 ms, in 8 sub-windows, times a bias factor measured for that smoothing);
 * `track` 0 uses the profile learned by the `learn` command (the mean
 * periodogram over the given seconds; learning silence, below -120 dBFS RMS,
 * is refused and keeps the previous profile). The learned profile is the
 * node's saved state (capture/restore): patches and autosaves keep it, so a
 * restart comes back with it. `track` 0 with no profile (a fresh node, or a
 * profile saved at another sample rate) falls back to the tracker, so noise
 * reduction never silently switches off. The tracker takes anything steady for longer
 * than its 1.5 s window for noise, sustained notes included: for music with
 * held notes, learn a profile. */
#include <float.h>
#include <pthread.h>
#include <stdatomic.h>

#include "dsp_fft.h"
#include "mg_node.h"

enum { P_REDUCTION, P_THRESHOLD, P_SMOOTH, P_TRACK, P_LINK, P_LISTEN };
enum { R_NOISE, R_GR, R_PROFILE };

static const mg_param_spec params[] = {
    {.name = "reduction", .unit = "dB",
     .doc = "largest attenuation of a bin (0: transparent, the input delayed)",
     .min = 0.0f, .max = 60.0f, .def = 15.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
    {.name = "threshold", .unit = "dB",
     .doc = "offset of the noise estimate: higher removes more (and more of the signal)",
     .min = -10.0f, .max = 20.0f, .def = 0.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
    {.name = "smooth", .unit = "%", .doc = "smoothing of the gain across frequency",
     .min = 0.0f, .max = 100.0f, .def = 10.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
    {.name = "track", .unit = "",
     .doc = "1: track the noise continuously (minimum statistics over ~1.5 s: a note held "
            "longer is taken for noise); 0: use the learned profile (the tracker until one is learned)",
     .min = 0.0f, .max = 1.0f, .def = 1.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_STEP,
     .smooth_ms = 0.0f},
    {.name = "link", .unit = "%",
     .doc = "stereo link: 100 gives both channels the larger of their two gains per bin "
            "(a steady image), 0 processes them apart",
     .min = 0.0f, .max = 100.0f, .def = 100.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 20.0f},
    {.name = "listen", .unit = "s",
     .doc = "trigger of the learn action: learn the noise profile from the next this many "
            "seconds (0 cancels)",
     .min = 0.0f, .max = 30.0f, .def = 0.0f, .map = MG_MAP_LIN, .taper = MG_TAPER_LIN,
     .smooth_ms = 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"noise", "dB", MG_MAP_DB, 1}, /* RMS level of the noise estimate in use (dBFS) */
    {"gr", "dB", MG_MAP_DB, 1},    /* energy out / in of the last frame: 0 dB = none */
    {"profile", "", MG_MAP_LIN, 0}, /* 0 none, 1 learning, 2 learned, -1 last learn failed */
};

#define DN_MAX_CH 2
#define DN_OVERLAP 2           /* frames over each sample: the hop is n / DN_OVERLAP */
#define DN_U 8                 /* minimum-statistics sub-windows */
#define DN_DD_ALPHA 0.98f
#define DN_TRACK_TAU 0.040     /* s: periodogram smoothing of the tracker */
#define DN_TRACK_SPAN 1.5      /* s: minimum search window */
#define DN_TRACK_BIAS 2.63f    /* mean / minimum of the smoothed periodogram (white noise, measured) */
#define DN_FLOOR 1e-12f        /* smallest noise power per bin */
#define DN_IN_MAX 1e6f         /* inputs are held within +-1e6 (+120 dBFS) */
#define DN_SILENCE_DB -120.0

typedef struct {
    float *in;    /* 2n: the last n input samples from in + s->ioff (a sliding window:
                     moved back to the start once it reaches the end) */
    float *ola;   /* n: overlap-add accumulator, a ring: the frame adds at s->ooff */
    float *outq;  /* h: completed output samples, in the ola ring (ola + ooff) */
    float *ps;    /* k: smoothed periodogram */
    float *cmin;  /* k: minimum of ps in the current sub-window */
    float *wmin;  /* k: minimum over the stored sub-windows */
    float *mins;  /* DN_U * k: sub-window minima */
    float *prof;  /* k: learned noise power */
    float *a2;    /* k: previous frame's G^2 P (decision-directed) */
    double *acc;  /* k: learning accumulator */
    double prof_sum; /* profile_sum of prof (the `noise` readout's level) */
    float noise, gr;
} dn_chan;

/* What a frame writes before it reads it and leaves nothing in for the
 * next frame: the transform (with its scratch), the tracker's estimate and
 * the inverse's split (frame, n), the power (pw, nb + 2) and per channel the
 * spectrum and the gains (re, im, g, nb each). */
typedef struct {
    mg_fft fft;           /* over the shared tables, its scratch here */
    float *frame, *pw;
    float *re[DN_MAX_CH], *im[DN_MAX_CH], *g[DN_MAX_CH];
} dn_scratch;

#define DN_R16(x) (((size_t)(x) + 15) & ~(size_t)15) /* floats, whole cache lines */

/* floats of a dn_scratch for frame size n */
static size_t dn_scratch_floats(int n)
{
    const size_t nb = (size_t)n / 2 + 1;
    return 2 * DN_R16(n) + DN_R16(nb + 2) + 3 * DN_MAX_CH * DN_R16(nb);
}

static void dn_scratch_init(dn_scratch *sc, const mg_fft *tables, float *m, int n)
{
    const size_t nb = (size_t)n / 2 + 1;
    mg_fft_share(&sc->fft, tables, m), m += DN_R16(n);
    sc->frame = m, m += DN_R16(n);
    sc->pw = m, m += DN_R16(nb + 2);
    for (int c = 0; c < DN_MAX_CH; c++) {
        sc->re[c] = m, m += DN_R16(nb);
        sc->im[c] = m, m += DN_R16(nb);
        sc->g[c] = m, m += DN_R16(nb);
    }
}

#define DN_SETS 4 /* shared scratch sets per frame size: one per audio thread at once */

/* What every denoise node of one frame size reads and none writes, the FFT's
 * tables and the two windows, and DN_SETS scratch sets that a frame takes
 * one of while it runs (an atomic flag each; a node whose frame finds them
 * all taken uses its own). One copy per size, shared: the hard mix's eight
 * nodes run their frames in the same block, one after the other, and find
 * ~14 KB of tables and ~22 KB of scratch in the cache instead of a cold copy
 * each. Counted and freed with its last node; the list is the control
 * thread's (a mutex, never taken on the audio thread: prepare and release
 * only). */
typedef struct dn_tables {
    int n, refs;
    mg_fft fft;           /* the tables' owner (its own scratch unused) */
    float *wa, *ws;       /* analysis / synthesis windows, n each */
    float *smem;          /* the sets' memory */
    dn_scratch set[DN_SETS];
    _Atomic int busy[DN_SETS]; /* 1: a frame has set[i] */
    struct dn_tables *next;
} dn_tables;

static pthread_mutex_t dn_tables_lock = PTHREAD_MUTEX_INITIALIZER;
static dn_tables *dn_tables_list;

static void dn_tables_free(dn_tables *t)
{
    for (int i = 0; i < DN_SETS; i++)
        mg_fft_free(&t->set[i].fft);
    mg_fft_free(&t->fft);
    free(t->wa);
    free(t->smem);
    free(t);
}

/* [control] The tables for frame size n (hop n / DN_OVERLAP), made on first use;
 * NULL: no memory. */
static dn_tables *dn_tables_get(int n)
{
    pthread_mutex_lock(&dn_tables_lock);
    dn_tables *t = dn_tables_list;
    while (t && t->n != n)
        t = t->next;
    if (!t) {
        t = mg_zalloc(1, sizeof *t);
        if (t) {
            t->n = n;
            t->wa = mg_zalloc(2 * (size_t)n, sizeof(float));
            t->smem = mg_zalloc(DN_SETS * dn_scratch_floats(n), sizeof(float));
            if (!t->wa || !t->smem || mg_fft_init(&t->fft, n) != 0) {
                dn_tables_free(t);
                t = NULL;
            }
        }
        if (t) {
            const double pi = 3.14159265358979323846;
            const size_t nn = (size_t)n, h = nn / DN_OVERLAP;
            t->ws = t->wa + nn;
            /* sqrt of the periodic Hann; the product overlap-adds to n / (2 h) (1 at h = n / 2) */
            const double syn = 1.0 / (nn * (nn / (2.0 * h)));
            for (int i = 0; i < n; i++) {
                const double w = sqrt(0.5 - 0.5 * cos(2.0 * pi * i / n));
                t->wa[i] = (float)w;
                t->ws[i] = (float)(w * syn);
            }
            for (int i = 0; i < DN_SETS; i++) {
                dn_scratch_init(&t->set[i], &t->fft, t->smem + i * dn_scratch_floats(n), n);
                atomic_init(&t->busy[i], 0);
            }
            t->next = dn_tables_list;
            dn_tables_list = t;
        }
    }
    if (t)
        t->refs++;
    pthread_mutex_unlock(&dn_tables_lock);
    return t;
}

/* [control] one node less on t; the last one frees it */
static void dn_tables_put(dn_tables *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&dn_tables_lock);
    if (--t->refs == 0) {
        dn_tables **p = &dn_tables_list;
        while (*p != t)
            p = &(*p)->next;
        *p = t->next;
        dn_tables_free(t);
    }
    pthread_mutex_unlock(&dn_tables_lock);
}

typedef struct {
    int channels;
    double sr;
    int n, h, nb;         /* frame, hop, bins (n/2 + 1) */
    int pos;              /* samples of the current hop taken in */
    int ioff;             /* where the frame's n input samples start in each in[] */
    int ooff;             /* where the next frame adds in each ola ring (a multiple of h) */
    dn_tables *tab;       /* the shared tables and scratch sets of size n */
    dn_scratch own;       /* scratch when every shared set is taken (in mem) */
    float *mem;
    double *dmem;
    const float *wa, *ws; /* analysis / synthesis windows (tab's) */
    float ps_a;           /* tracker smoothing per frame */
    int sub_len, sub_n, sub_i, frames;
    int has_profile;
    _Atomic unsigned prof_gen; /* even: prof[] stable; odd: being written (audio thread) */
    int learn_req;        /* frames requested by on_param (audio thread) */
    int learn_left, learn_frames;
    float profile_state;
    float track;
    dn_chan ch[DN_MAX_CH];
} dn_state;

static void release(void *st)
{
    dn_state *s = st;
    mg_fft_free(&s->own.fft);
    dn_tables_put(s->tab);
    s->tab = NULL;
    free(s->mem);
    free(s->dmem);
    s->mem = NULL;
    s->dmem = NULL;
}

static void reset(void *st)
{
    dn_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        dn_chan *k = &s->ch[c];
        memset(k->in, 0, 2 * (size_t)s->n * sizeof(float));
        memset(k->ola, 0, (size_t)s->n * sizeof(float));
        k->outq = k->ola + s->n - s->h; /* zeros: nothing completed yet */
        memset(k->a2, 0, (size_t)s->nb * sizeof(float));
        memset(k->ps, 0, (size_t)s->nb * sizeof(float));
        for (int b = 0; b < s->nb; b++)
            k->cmin[b] = k->wmin[b] = FLT_MAX;
        for (int b = 0; b < DN_U * s->nb; b++)
            k->mins[b] = FLT_MAX;
        k->gr = 1.0f;
    }
    s->pos = 0;
    s->ioff = s->ooff = 0;
    s->sub_n = s->sub_i = s->frames = 0;
    s->learn_left = 0;
    if (s->profile_state == 1.0f)
        s->profile_state = s->has_profile ? 2.0f : 0.0f;
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    dn_state *s = st;
    if (ctx->channels < 1 || ctx->channels > DN_MAX_CH)
        return -1;
    s->channels = ctx->channels;
    s->sr = ctx->sample_rate;
    int n = 1024;
    while (n < 4096 && ctx->sample_rate > 66000.0 * (n / 1024))
        n *= 2;
    while (n > 512 && ctx->sample_rate < 33000.0 * (n / 1024))
        n /= 2;
    s->n = n;
    s->h = n / DN_OVERLAP;
    s->nb = n / 2 + 1;
    s->tab = dn_tables_get(n);
    if (!s->tab)
        return -1;
    const size_t nb = (size_t)s->nb, nn = (size_t)n;
    const size_t per = 3 * nn + (5 + DN_U) * nb;
    s->mem = mg_zalloc(dn_scratch_floats(n) + per * (size_t)s->channels, sizeof(float));
    s->dmem = mg_zalloc(nb * (size_t)s->channels, sizeof(double));
    if (!s->mem || !s->dmem)
        return -1;
    float *m = s->mem;
    dn_scratch_init(&s->own, &s->tab->fft, m, n), m += dn_scratch_floats(n);
    s->wa = s->tab->wa;
    s->ws = s->tab->ws;
    for (int c = 0; c < s->channels; c++) {
        dn_chan *k = &s->ch[c];
        k->in = m, m += 2 * nn;
        k->ola = m, m += nn;
        k->ps = m, m += nb;
        k->cmin = m, m += nb;
        k->wmin = m, m += nb;
        k->prof = m, m += nb;
        k->a2 = m, m += nb;
        k->mins = m, m += DN_U * nb;
        k->acc = s->dmem + nb * (size_t)c;
    }
    s->ps_a = (float)exp(-(double)s->h / (DN_TRACK_TAU * s->sr));
    s->sub_len = (int)lround(DN_TRACK_SPAN * s->sr / s->h / DN_U);
    if (s->sub_len < 1)
        s->sub_len = 1;
    reset(st);
    return 0;
}

static void on_param(void *st, int index, float target)
{
    dn_state *s = st;
    if (index == P_TRACK)
        s->track = target;
    if (index == P_LISTEN && s->sr > 0.0) {
        if (target > 0.0f) {
            int f = (int)ceil(target * s->sr / s->h);
            s->learn_req = f < 1 ? 1 : f;
        } else {
            s->learn_req = -1; /* cancel a measurement under way */
        }
    }
}

/* eight floats (GCC vector extension), unaligned loads and stores */
typedef float dn_v8 __attribute__((vector_size(32)));
typedef int dn_i8 __attribute__((vector_size(32)));

#define dn_load(p) __extension__({ dn_v8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define dn_store(p, v) do { const dn_v8 v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)

/* Noise power per bin -> RMS level (amplitude) of that noise in the time domain:
 * sum over the full spectrum of |X|^2 = n * sum (w x)^2 = n * sigma^2 * n / 2.
 * sum: the powers of bins 0..n/2 summed, the end bins halved. */
static float level_from_sum(const dn_state *s, double sum)
{
    const double var = 2.0 * (2.0 * sum) / ((double)s->n * s->n);
    return (float)sqrt(var > 0.0 ? var : 0.0);
}

/* The same sum over a learned profile (computed once per learn or restore) */
static double profile_sum(const float *lam, int nb)
{
    double sum = 0.5 * ((double)lam[0] + lam[nb - 1]);
    for (int b = 1; b < nb - 1; b++)
        sum += lam[b];
    return sum;
}

/* eight lanes of m ? a : b (m: a vector comparison's lanes, all ones or zeros) */
#define dn_sel(m, a, b) __extension__({ const dn_i8 m_ = (m); \
    (dn_v8)(((dn_i8)(a) & m_) | ((dn_i8)(b) & ~m_)); })

/* Wiener gains with the decision-directed a-priori SNR. The maximum-likelihood
 * term uses the periodogram smoothed over 3 bins (1/4, 1/2, 1/4): a lone noise
 * bin that happens to peak (the cause of "musical noise") no longer opens its
 * gain, while a partial, whose window main lobe spans those bins, keeps its SNR.
 * pw: nb + 2 floats, the frame's power |X[k]|^2 at pw[k + 1] (spectrum_pass);
 * pw[0] and pw[nb + 1] are the mirrored neighbours of the end bins. */
MG_HOT static void frame_gains(float *restrict g, float *restrict a2, float *restrict pw,
                               const float *restrict lam, float thr, int nb)
{
    const float a = DN_DD_ALPHA, b = 1.0f - DN_DD_ALPHA;
    pw[0] = pw[2];
    pw[nb + 1] = pw[nb - 1];
    int k = 0;
    /* eight bins a step, each lane the scalar loop's expressions below (GCC's
     * own vectorisation of that loop read pw[k], pw[k + 2] one float at a time) */
    const dn_v8 z8 = {0, 0, 0, 0, 0, 0, 0, 0}, one8 = z8 + 1.0f, fl8 = z8 + DN_FLOOR;
    for (; k + 8 <= nb; k += 8) {
        const dn_v8 p = dn_load(pw + k + 1);
        const dn_v8 ps = 0.25f * (dn_load(pw + k) + dn_load(pw + k + 2)) + 0.5f * p;
        dn_v8 l = dn_load(lam + k) * thr;
        l = dn_sel(l > DN_FLOOR, l, fl8);
        const dn_v8 il = 1.0f / l;
        const dn_v8 gm1 = ps * il - 1.0f;
        const dn_v8 xi = a * dn_load(a2 + k) * il + b * dn_sel(gm1 > 0.0f, gm1, z8);
        dn_v8 gk = xi / (one8 + xi);
        gk = dn_sel(gk > 0.0f, gk, z8); /* NaN -> 0 */
        dn_store(a2 + k, gk * gk * p);
        dn_store(g + k, gk);
    }
    for (; k < nb; k++) {
        const float p = pw[k + 1];
        const float ps = 0.25f * (pw[k] + pw[k + 2]) + 0.5f * p;
        float l = lam[k] * thr;
        l = l > DN_FLOOR ? l : DN_FLOOR;
        const float il = 1.0f / l;
        const float gm1 = ps * il - 1.0f;
        const float xi = a * a2[k] * il + b * (gm1 > 0.0f ? gm1 : 0.0f);
        float gk = xi / (1.0f + xi);
        gk = gk > 0.0f ? gk : 0.0f; /* NaN -> 0 */
        a2[k] = gk * gk * p;
        g[k] = gk;
    }
}

/* eight lanes of a < b ? a : b (NaN in a: b), as the scalar rule */
#define dn_min(a, b) __extension__({ const dn_v8 a_ = (a), b_ = (b); \
    const dn_i8 k_ = a_ < b_; \
    (dn_v8)(((dn_i8)a_ & k_) | ((dn_i8)b_ & ~k_)); })

/* One pass over the frame's bins, eight a step: the power P = |X|^2 into
 * pw[b + 1] (frame_gains' input); with `warm`, the tracker's smoothed
 * periodogram ps = pa ps + (1 - pa) P and its running minimum cmin; with lam
 * not NULL, the tracker's noise estimate lam = min(wmin, cmin) (after this
 * frame's update) and the return value sum over b of lam[b] in double, the
 * end bins halved (level_from_sum's input). */
MG_HOT static double spectrum_pass(float *restrict pw, float *restrict ps, float *restrict cmin,
                                   const float *restrict wmin, float *restrict lam,
                                   const float *restrict re, const float *restrict im, float pa,
                                   int warm, int nb)
{
    typedef double d4 __attribute__((vector_size(32)));
    typedef float f4 __attribute__((vector_size(16)));
    const float pb = 1.0f - pa;
    d4 acc = {0.0, 0.0, 0.0, 0.0};
    int b = 0;
    for (; b + 8 <= nb; b += 8) {
        const dn_v8 r = dn_load(re + b), i = dn_load(im + b);
        const dn_v8 p = r * r + i * i;
        dn_store(pw + b + 1, p);
        if (warm) {
            const dn_v8 q = pa * dn_load(ps + b) + pb * p;
            dn_store(ps + b, q);
            dn_store(cmin + b, dn_min(q, dn_load(cmin + b)));
        }
        if (lam) {
            const dn_v8 l = dn_min(dn_load(wmin + b), dn_load(cmin + b));
            dn_store(lam + b, l);
            const f4 lo = {l[0], l[1], l[2], l[3]}, hi = {l[4], l[5], l[6], l[7]};
            acc += __builtin_convertvector(lo, d4) + __builtin_convertvector(hi, d4);
        }
    }
    double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; b < nb; b++) {
        const float p = re[b] * re[b] + im[b] * im[b];
        pw[b + 1] = p;
        if (warm) {
            const float q = pa * ps[b] + pb * p;
            ps[b] = q;
            cmin[b] = q < cmin[b] ? q : cmin[b];
        }
        if (lam) {
            lam[b] = wmin[b] < cmin[b] ? wmin[b] : cmin[b];
            sum += lam[b];
        }
    }
    if (lam)
        sum -= 0.5 * ((double)lam[0] + lam[nb - 1]);
    return sum;
}

/* X *= G; the frame's energy before and after (for the `gr` readout), summed
 * in eight lanes. */
MG_HOT static void apply_gains(float *restrict re, float *restrict im, const float *restrict g,
                               int nb, float *ein, float *eout)
{
    dn_v8 vi = {0, 0, 0, 0, 0, 0, 0, 0}, vo = vi;
    int b = 0;
    for (; b + 8 <= nb; b += 8) {
        const dn_v8 r = dn_load(re + b), i = dn_load(im + b), gv = dn_load(g + b);
        const dn_v8 p = r * r + i * i;
        vi += p;
        vo += p * gv * gv;
        dn_store(re + b, r * gv);
        dn_store(im + b, i * gv);
    }
    float ei = ((vi[0] + vi[4]) + (vi[1] + vi[5])) + ((vi[2] + vi[6]) + (vi[3] + vi[7]));
    float eo = ((vo[0] + vo[4]) + (vo[1] + vo[5])) + ((vo[2] + vo[6]) + (vo[3] + vo[7]));
    for (; b < nb; b++) {
        const float p = re[b] * re[b] + im[b] * im[b];
        ei += p;
        eo += p * g[b] * g[b];
        re[b] *= g[b];
        im[b] *= g[b];
    }
    *ein = ei;
    *eout = eo;
}

/* The gains smoothed across frequency by a one-pole, y[b] = c0 g[b] + c1 y[b-1]
 * from y[0] = g[0] (smooth_up), then the same downwards from the top bin
 * (smooth_down): zero phase, so a partial's gain is not shifted in frequency.
 * Eight bins a step: the step's own part of the recursion (from zero) is a
 * prefix scan in the vector (three shifted multiply-adds by c1, c1^2, c1^4),
 * and y before the step joins each lane j through one multiply-add by
 * c1^(j+1); the recursion's critical path is one multiply-add per 8 bins. */
MG_HOT static void smooth_up(float *restrict g, int nb, float c0, float c1)
{
    const float c2 = c1 * c1, c4 = c2 * c2;
    dn_v8 kp; /* c1^(j+1) */
    float k = c1;
    for (int j = 0; j < 8; j++, k *= c1)
        kp[j] = k;
    const dn_v8 z = {0, 0, 0, 0, 0, 0, 0, 0};
    const dn_i8 s1 = {8, 0, 1, 2, 3, 4, 5, 6}, s2 = {8, 8, 0, 1, 2, 3, 4, 5},
                s4 = {8, 8, 8, 8, 0, 1, 2, 3};
    float y = g[0];
    int b = 1;
    for (; b + 8 <= nb; b += 8) {
        dn_v8 p = c0 * dn_load(g + b);
        p += c1 * __builtin_shuffle(p, z, s1);
        p += c2 * __builtin_shuffle(p, z, s2);
        p += c4 * __builtin_shuffle(p, z, s4);
        const dn_v8 v = p + kp * y;
        dn_store(g + b, v);
        y = v[7];
    }
    for (; b < nb; b++)
        g[b] = y = c0 * g[b] + c1 * y;
}

/* (smooth_down also clamps what it stores to [gmin, 1], as frame's clamp
 * loop: min then max, NaN -> 1; the recursion runs on the unclamped values) */
#define dn_clamp(v, lo) __extension__({ const dn_v8 m_ = dn_min((v), one8); \
    const dn_i8 k_ = m_ > (lo); (dn_v8)(((dn_i8)m_ & k_) | ((dn_i8)(lo) & ~k_)); })

MG_HOT static void smooth_down(float *restrict g, int nb, float c0, float c1, float gmin)
{
    const dn_v8 one8 = {1, 1, 1, 1, 1, 1, 1, 1}, lo8 = one8 * gmin;
    const float c2 = c1 * c1, c4 = c2 * c2;
    dn_v8 kp; /* lane j of the step g[b-7 .. b]: c1^(8-j) */
    float k = c1;
    for (int j = 7; j >= 0; j--, k *= c1)
        kp[j] = k;
    const dn_v8 z = {0, 0, 0, 0, 0, 0, 0, 0};
    const dn_i8 s1 = {1, 2, 3, 4, 5, 6, 7, 8}, s2 = {2, 3, 4, 5, 6, 7, 8, 8},
                s4 = {4, 5, 6, 7, 8, 8, 8, 8};
    float y = g[nb - 1];
    {
        const float v = y < 1.0f ? y : 1.0f;
        g[nb - 1] = v > gmin ? v : gmin;
    }
    int b = nb - 2;
    for (; b - 7 >= 0; b -= 8) {
        dn_v8 p = c0 * dn_load(g + b - 7);
        p += c1 * __builtin_shuffle(p, z, s1);
        p += c2 * __builtin_shuffle(p, z, s2);
        p += c4 * __builtin_shuffle(p, z, s4);
        const dn_v8 v = p + kp * y;
        dn_store(g + b - 7, dn_clamp(v, lo8));
        y = v[0];
    }
    for (; b >= 0; b--) {
        y = c0 * g[b] + c1 * y;
        const float v = y < 1.0f ? y : 1.0f;
        g[b] = v > gmin ? v : gmin;
    }
}

/* the tracker's noise estimate: the smaller of the stored sub-windows'
 * minimum and the current one's (after a sub-window ends; spectrum_pass
 * takes it otherwise); returns its sum as spectrum_pass does */
static double noise_min(float *restrict dst, const float *restrict wmin,
                        const float *restrict cmin, int nb)
{
    for (int b = 0; b < nb; b++)
        dst[b] = wmin[b] < cmin[b] ? wmin[b] : cmin[b];
    return profile_sum(dst, nb);
}

MG_HOT static void frame(dn_state *s, float red_db, float thr_db, float smooth, float link,
                         int learning)
{
    const int n = s->n, nb = s->nb, h = s->h;
    const float gmin = red_db <= 0.0f ? 1.0f : powf(10.0f, -red_db / 20.0f);
    const float thr = powf(10.0f, thr_db / 10.0f);
    const float c1 = 0.8f * smooth, c0 = 1.0f - c1;
    /* no profile learned yet: the tracker stands in (see the top of the file) */
    const int track = s->track >= 0.5f || !s->has_profile;
    /* tracker bookkeeping shared by the channels */
    const int sub_end = ++s->sub_n >= s->sub_len;
    /* the first frames hold the zeros before the start: the tracker skips them */
    const int warm = s->frames >= n / h - 1;
    const int first = s->frames == n / h - 1;
    /* a shared scratch set (hot: the node before used it), else the node's own */
    dn_tables *tab = s->tab;
    dn_scratch *sc = &s->own;
    int slot = -1;
    for (int i = 0; i < DN_SETS && slot < 0; i++)
        if (!atomic_load_explicit(&tab->busy[i], memory_order_relaxed) &&
            !atomic_exchange_explicit(&tab->busy[i], 1, memory_order_acquire)) {
            slot = i;
            sc = &tab->set[i];
        }
    for (int c = 0; c < s->channels; c++) {
        dn_chan *k = &s->ch[c];
        float *re = sc->re[c], *im = sc->im[c], *g = sc->g[c];
        mg_fft_forward_win(&sc->fft, k->in + s->ioff, s->wa, re, im); /* rfft(in wa) */
        /* the power into pw; tracker: smoothed periodogram, running minimum;
         * and, unless a sub-window ends here (below), the tracker's noise
         * estimate into the frame (free until the inverse FFT) and its sum */
        const int fused = track && !sub_end;
        const double tsum = spectrum_pass(sc->pw, k->ps, k->cmin, k->wmin,
                                          fused ? sc->frame : NULL, re, im,
                                          first ? 0.0f : s->ps_a, warm, nb);
        if (learning)
            for (int b = 0; b < nb; b++)
                k->acc[b] += (double)re[b] * re[b] + (double)im[b] * im[b];
        if (sub_end) {
            float *slot = k->mins + (size_t)s->sub_i * nb;
            for (int b = 0; b < nb; b++) {
                slot[b] = k->cmin[b];
                k->cmin[b] = FLT_MAX;
            }
            for (int b = 0; b < nb; b++) {
                float w = k->mins[b];
                for (int u = 1; u < DN_U; u++) {
                    const float v = k->mins[(size_t)u * nb + b];
                    w = v < w ? v : w;
                }
                k->wmin[b] = w;
            }
        }
        /* the noise estimate in use */
        const float *lam = k->prof;
        float lscale = 1.0f;
        double lsum = k->prof_sum;
        if (track) {
            lam = sc->frame;
            lscale = DN_TRACK_BIAS;
            lsum = fused ? tsum : noise_min(sc->frame, k->wmin, k->cmin, nb);
        }
        /* the tracker has an estimate once its first real frame is in */
        const int have = track ? warm : s->has_profile;
        k->noise = have ? level_from_sum(s, lsum) * sqrtf(lscale) : 0.0f;
        if (gmin >= 1.0f || !have) {
            /* transparent: every gain exactly 1; the decision-directed state follows */
            for (int b = 0; b < nb; b++) {
                g[b] = 1.0f;
                k->a2[b] = sc->pw[b + 1];
            }
        } else {
            frame_gains(g, k->a2, sc->pw, lam, thr * lscale, nb);
            if (c1 > 0.0f) {
                smooth_up(g, nb, c0, c1);
                smooth_down(g, nb, c0, c1, gmin); /* and the clamp below */
            } else {
                for (int b = 0; b < nb; b++) {
                    float v = g[b] < 1.0f ? g[b] : 1.0f;
                    g[b] = v > gmin ? v : gmin;
                }
            }
        }
    }
    if (s->channels == 2 && link > 0.0f) {
        float *g0 = sc->g[0], *g1 = sc->g[1];
        for (int b = 0; b < nb; b++) {
            const float mx = g0[b] > g1[b] ? g0[b] : g1[b];
            g0[b] += link * (mx - g0[b]);
            g1[b] += link * (mx - g1[b]);
        }
    }
    for (int c = 0; c < s->channels; c++) {
        dn_chan *k = &s->ch[c];
        float *re = sc->re[c], *im = sc->im[c], *g = sc->g[c];
        float ein = 0.0f, eout = 0.0f;
        apply_gains(re, im, g, nb, &ein, &eout);
        k->gr = ein > 1e-20f ? sqrtf(eout / ein) : 1.0f;
        /* the last frame's completed samples (output during this hop) are
         * the ring's h before ooff: zeroed, they take this frame's tail */
        memset(k->ola + (s->ooff + n - h) % n, 0, (size_t)h * sizeof(float));
        /* ola += irfft ws from ooff, around the ring */
        mg_fft_inverse_ola_ring(&sc->fft, re, im, sc->frame, s->ws, k->ola, s->ooff);
        k->outq = k->ola + s->ooff;
    }
    if (slot >= 0)
        atomic_store_explicit(&tab->busy[slot], 0, memory_order_release);
    s->ooff = (s->ooff + h) % n;
    s->ioff += h;
    if (s->ioff > n) { /* the next hop would pass the end: the window back to the start */
        for (int c = 0; c < s->channels; c++)
            memmove(s->ch[c].in, s->ch[c].in + s->ioff, (size_t)(n - h) * sizeof(float));
        s->ioff = 0;
    }
    if (sub_end) {
        s->sub_n = 0;
        s->sub_i = (s->sub_i + 1) % DN_U;
    }
    s->frames++;
}

static void learn_step(dn_state *s, int *learning)
{
    /* a request from on_param starts a new measurement */
    if (s->learn_req > 0) {
        s->learn_left = s->learn_frames = s->learn_req;
        for (int c = 0; c < s->channels; c++)
            memset(s->ch[c].acc, 0, (size_t)s->nb * sizeof(double));
        s->profile_state = 1.0f;
    } else if (s->learn_req < 0 && s->learn_left > 0) {
        s->learn_left = 0;
        s->profile_state = s->has_profile ? 2.0f : 0.0f;
    }
    s->learn_req = 0;
    *learning = s->learn_left > 0;
}

static void learn_finish(dn_state *s)
{
    if (--s->learn_left > 0)
        return;
    const double inv = 1.0 / s->learn_frames;
    double hi = -INFINITY; /* the loudest channel: one dead channel does not fail it */
    for (int c = 0; c < s->channels; c++) {
        double *acc = s->ch[c].acc;
        double sum = 0.5 * (acc[0] + acc[s->nb - 1]);
        for (int b = 1; b < s->nb - 1; b++)
            sum += acc[b];
        const double var = 4.0 * sum * inv / ((double)s->n * s->n);
        const double db = var > 0.0 ? 10.0 * log10(var) : -INFINITY;
        hi = db > hi ? db : hi;
    }
    if (!(hi > DN_SILENCE_DB)) { /* silence (or nothing finite): keep the old profile */
        s->profile_state = -1.0f;
        return;
    }
    const unsigned gen = atomic_load_explicit(&s->prof_gen, memory_order_relaxed);
    atomic_store_explicit(&s->prof_gen, gen + 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int c = 0; c < s->channels; c++) {
        for (int b = 0; b < s->nb; b++)
            s->ch[c].prof[b] = (float)(s->ch[c].acc[b] * inv);
        s->ch[c].prof_sum = profile_sum(s->ch[c].prof, s->nb);
    }
    s->has_profile = 1;
    atomic_store_explicit(&s->prof_gen, gen + 2u, memory_order_release);
    s->profile_state = 2.0f;
}

/* Inputs as the frames take them: non-finite -> 0, held within +-DN_IN_MAX. */
MG_HOT static void take_in(float *restrict dst, const float *restrict x, int m)
{
    for (int i = 0; i < m; i++) {
        const float v = x[i];
        const float f = v - v == 0.0f ? v : 0.0f;
        dst[i] = f > DN_IN_MAX ? DN_IN_MAX : f < -DN_IN_MAX ? -DN_IN_MAX : f;
    }
}

static void process(void *st, const mg_proc *p)
{
    dn_state *s = st;
    const int n = p->nframes, nc = s->channels, h = s->h;
    int i = 0;
    while (i < n) {
        const int pos = s->pos;
        const int m = n - i < h - pos ? n - i : h - pos;
        for (int c = 0; c < nc; c++) {
            dn_chan *k = &s->ch[c];
            take_in(k->in + s->ioff + s->n - h + pos, p->in[c] + i, m);
            /* output sample j of the hop is outq[j + 1]; the hop's last one is the
             * first of the next frame's (latency n - 1) */
            const int last = pos + m == h ? m - 1 : m;
            memcpy(p->out[c] + i, k->outq + pos + 1, (size_t)last * sizeof(float));
        }
        s->pos += m;
        i += m;
        if (s->pos == h) {
            const int at = i - 1;
            int learning;
            learn_step(s, &learning);
            frame(s, mg_pv_at(&p->pv[P_REDUCTION], at), mg_pv_at(&p->pv[P_THRESHOLD], at),
                  mg_pv_at(&p->pv[P_SMOOTH], at) * 0.01f, mg_pv_at(&p->pv[P_LINK], at) * 0.01f,
                  learning);
            if (learning)
                learn_finish(s);
            for (int c = 0; c < nc; c++)
                p->out[c][at] = s->ch[c].outq[0];
            s->pos = 0;
        }
    }
    for (int c = 0; c < nc; c++) {
        p->readout[R_NOISE * nc + c] = s->ch[c].noise;
        p->readout[R_GR * nc + c] = s->ch[c].gr;
    }
    p->readout[2 * nc] = s->profile_state;
}

/* [control] The learned profile: per channel, the mean noise power of bins
 * 0..n/2 (|rfft(w x)|^2 with the sqrt-Hann analysis window w); read it once
 * the `profile` readout says 2 (the audio thread writes it when a learn ends). */
static int capture(void *st, float *dst, int n)
{
    dn_state *s = st;
    const unsigned g0 = atomic_load_explicit(&s->prof_gen, memory_order_acquire);
    if (g0 == 0u || (g0 & 1u))
        return 0; /* nothing learned yet, or being written */
    int got = 0;
    for (int c = 0; c < s->channels; c++)
        for (int b = 0; b < s->nb && got < n; b++)
            dst[got++] = s->ch[c].prof[b];
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&s->prof_gen, memory_order_relaxed) != g0)
        return 0; /* a newer learn finished meanwhile: read again */
    return got;
}

/* [control] A profile that capture gave, into a node in no plan yet: the
 * saved state of a patch or an autosave, so a restart keeps what was learned. */
static int restore(void *st, const float *src, int n)
{
    dn_state *s = st;
    if (n != s->channels * s->nb)
        return -1; /* saved at another sample rate or channel count */
    for (int i = 0; i < n; i++)
        if (!(src[i] >= 0.0f && src[i] < FLT_MAX))
            return -1;
    for (int c = 0; c < s->channels; c++) {
        memcpy(s->ch[c].prof, src + (size_t)c * s->nb, (size_t)s->nb * sizeof(float));
        s->ch[c].prof_sum = profile_sum(s->ch[c].prof, s->nb);
    }
    s->has_profile = 1;
    atomic_store_explicit(&s->prof_gen, 2u, memory_order_release);
    s->profile_state = 2.0f;
    return 0;
}

static int latency(const void *st)
{
    return ((const dn_state *)st)->n - 1;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"track", "learned|tracking"},
};

const mg_node_type mg_type_denoise = {
    .name = "denoise",
    .doc = "Spectral noise reduction (STFT 1024 / 512 hop at 48 kHz, Wiener gain with "
           "decision-directed SNR smoothing). `track` 1 follows the noise floor continuously; "
           "`/node/<name>/learn <seconds>` learns a profile and switches to it (`track` 0). `reduction` "
           "is the largest attenuation (0: the input, delayed). Latency n - 1 samples "
           "(1023 at 44.1/48 kHz). Readouts: `noise` level of the noise estimate (dBFS RMS), "
           "`gr` energy change of the last frame, `profile` 0 none / 1 learning / 2 learned / "
           "-1 last learn failed (silence). `link` % ties the two channels' gains.",
    .default_channels = 1,
    .min_channels = 1,
    .max_channels = DN_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(dn_state),
    .prepare = prepare,
    .process = process,
    .reset = reset,
    .release = release,
    .on_param = on_param,
    .latency = latency,
    .capture = capture,
    .restore = restore,
};
