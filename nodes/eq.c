/* eq: console equaliser. Butterworth high-pass and low-pass (12/24/48 dB/oct)
 * and parametric bands (bell, low shelf, high shelf, notch, band-pass: RBJ
 * Audio EQ Cookbook), every channel filtered with its own state.
 *
 * Signal order: high-pass -> bands 1..N -> low-pass. Biquads are transposed
 * direct form II with double state (csrc/dsp_biquad.h). Coefficients are
 * recomputed when a value changes; while a frequency, gain or Q ramps they
 * are designed every 64 samples of the engine's clock from the ramp (read
 * there only: MG_PARAM_CONTROL) and glide linearly per sample
 * in between (no zipper), in the cascade of the unit's neighbours and, in a
 * gang, eight lanes at a time (run_lanes_glide); a unit that moves while it
 * switches on/off or crossfades a type is designed every 16 samples. An `on`
 * switch crossfades the section in and out
 * over 10 ms; a type or slope change crossfades from the outgoing design to
 * the new one (started from rest) over 10 ms. Steady sections run as one
 * sample-major cascade. Input: non-finite samples become 0, magnitudes are
 * held below 1e6; non-finite filter states are reset, tails below 1e-30 are
 * flushed to exact zero. `eq` has 4 bands, `eq8` 8 (the same parameter table,
 * which `eq` uses the first 26 entries of). */
#include "mg_node.h"
#include "dsp_biquad.h"
#include "dsp_transpose.h"

#include <stdatomic.h>
#include <stdlib.h>

#define EQ_MAX_BANDS 8
#define EQ_CHUNK 16
#define EQ_MAX_CH 64

enum { P_HPON, P_HPFREQ, P_HPSLOPE, P_LPON, P_LPFREQ, P_LPSLOPE, P_BAND0 };
enum { B_ON, B_TYPE, B_FREQ, B_GAIN, B_Q, B_NPARAMS };

#define EQ_BAND(n, type, freq)                                                                    \
    {"b" #n "on", "", "band " #n " on (1) / off (0), 10 ms crossfade", 0.0f, 1.0f, 1.0f,            \
     MG_MAP_LIN, MG_TAPER_STEP, 10.0f},                                                           \
    {"b" #n "type", "", "band " #n " type: 0 bell, 1 low shelf, 2 high shelf, 3 notch, 4 band-pass", \
     0.0f, 4.0f, type, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},                                          \
    {"b" #n "freq", "Hz", "band " #n " centre / corner frequency", 20.0f, 20000.0f, freq,          \
     MG_MAP_LOG, MG_TAPER_LOG, 20.0f},                                          \
    {"b" #n "gain", "dB", "band " #n " gain (bell and shelves)", -24.0f, 24.0f, 0.0f, MG_MAP_DB,   \
     MG_TAPER_LIN, 20.0f},                                                      \
    {"b" #n "q", "", "band " #n " Q (shelves: 0.707 is the cookbook's slope S = 1)", 0.1f, 20.0f,  \
     0.7071f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f}

static const mg_param_spec params[] = {
    {"hpon", "", "high-pass on (1) / off (0), 10 ms crossfade", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"hpfreq", "Hz", "high-pass cutoff (-3 dB)", 10.0f, 20000.0f, 80.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"hpslope", "", "high-pass slope: 0 = 12, 1 = 24, 2 = 48 dB/oct (Butterworth)", 0.0f, 2.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"lpon", "", "low-pass on (1) / off (0), 10 ms crossfade", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"lpfreq", "Hz", "low-pass cutoff (-3 dB)", 10.0f, 20000.0f, 12000.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"lpslope", "", "low-pass slope: 0 = 12, 1 = 24, 2 = 48 dB/oct (Butterworth)", 0.0f, 2.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    EQ_BAND(1, 1.0f, 100.0f),
    EQ_BAND(2, 0.0f, 400.0f),
    EQ_BAND(3, 0.0f, 2000.0f),
    EQ_BAND(4, 2.0f, 8000.0f),
    EQ_BAND(5, 0.0f, 150.0f),
    EQ_BAND(6, 0.0f, 800.0f),
    EQ_BAND(7, 0.0f, 3500.0f),
    EQ_BAND(8, 0.0f, 12000.0f),
};

/* frequencies, gains and Qs are read only at each design (MG_PARAM_CONTROL) */
#define EQ_BAND_FLAGS 0, 0, MG_PARAM_CONTROL, MG_PARAM_CONTROL, MG_PARAM_CONTROL
static const unsigned char param_flags[] = {
    0, MG_PARAM_CONTROL, 0, 0, MG_PARAM_CONTROL, 0,
    EQ_BAND_FLAGS, EQ_BAND_FLAGS, EQ_BAND_FLAGS, EQ_BAND_FLAGS,
    EQ_BAND_FLAGS, EQ_BAND_FLAGS, EQ_BAND_FLAGS, EQ_BAND_FLAGS,
};
_Static_assert(sizeof param_flags == sizeof params / sizeof params[0], "one flag per parameter");

static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};

/* A unit: the high-pass, one band, or the low-pass (up to 4 sections). */
typedef struct {
    float kf, kg, kq;  /* values the coefficients belong to */
    int ktype, nsec;   /* nsec 0: not designed yet */
    int idle;          /* 1: states are cleared (unit off or identity) */
    int ident;         /* idle because it is the identity (0 dB bell/shelf) */
    int xf;            /* samples left of a type/slope crossfade */
    int onsec;         /* sections of the outgoing design (0: identity) */
    mg_bq_coef c[4];
    mg_bq_coef oc[4];  /* the outgoing design during a crossfade */
    /* a glide (glide_design): frame k (1..m) of it runs g0 + k gd; a unit
     * that does not move this chunk has g0 = c, gd = 0 */
    mg_bq_coef g0[4], gd[4];
    /* the glide under way: frames gs .. gs + glen - 1 of the engine's clock
     * (mg_proc.time) run g0 + (frame - gs + 1) gd, reaching the design for
     * the last one, a frame on the EQ_MOVE_CHUNK grid (glen 0: none); goff is
     * frame - gs at the start of the piece being run (glide_design) */
    uint64_t gs;
    int glen;
    double goff;
    double kcw, ksw;   /* cos and sin of w0 for a band's kf (design) */
} eq_unit;

struct eq_gang;

typedef struct {
    int channels, nbands, nunits;
    double fs;
    /* changes (to a value never used before, by any node) whenever the
     * coefficients, the steady list or the states may have changed other
     * than by the ganged cascade: the key of the gang caches */
    unsigned long long stamp;
    struct eq_gang *gang; /* this node's gang cache (run_lanes), when it leads a gang */
    eq_unit unit[EQ_MAX_BANDS + 2];
    int xf_len;       /* type/slope crossfade length (10 ms) */
    /* the last block's steady list, valid while parameters stay as they were
     * and no unit ran on its own (moving, switching or crossfading) */
    int cache_ok, cache_n;
    int cache[EQ_MAX_BANDS + 2];
    int cache_ns;     /* the sections of the last block's steady list (so a
                         gang's block reads no unit to count them) */
    mg_bq_state *st;  /* [channel][unit][4] */
    mg_bq_state *ost; /* the outgoing design's states, same layout */
    float dry[MG_MAX_BLOCK];
    float old[MG_MAX_BLOCK];
} eq_state;

/* Stamps: prepare gives each node a range of 2^40 values no node has had
 * (relaxed: only uniqueness matters; never on the audio thread), and the node
 * steps through its range (restamp: at most once a block, 46 years at 750
 * blocks a second), so a gang cache's key never matches a node it was not
 * built from, even one that reuses a freed node's memory. */
static atomic_ullong eq_stamps = 1;
static inline void restamp(eq_state *s) { s->stamp++; }

static void *gang_alloc(void);

static int prepare_n(void *stv, const mg_prepare_ctx *ctx, int nbands)
{
    eq_state *s = stv;
    s->stamp = atomic_fetch_add_explicit(&eq_stamps, 1, memory_order_relaxed) << 40;
    s->gang = gang_alloc();
    s->channels = ctx->channels;
    s->nbands = nbands;
    s->nunits = nbands + 2;
    s->fs = ctx->sample_rate;
    s->xf_len = (int)(0.010 * ctx->sample_rate + 0.5);
    if (s->xf_len < 1)
        s->xf_len = 1;
    s->st = mg_zalloc((size_t)ctx->channels * (size_t)s->nunits * 4, sizeof(mg_bq_state));
    s->ost = mg_zalloc((size_t)ctx->channels * (size_t)s->nunits * 4, sizeof(mg_bq_state));
    if (!s->st || !s->ost || !s->gang)
        return 3;
    for (int u = 0; u < s->nunits; u++)
        s->unit[u].idle = 1;
    return 0;
}

static int prepare4(void *st, const mg_prepare_ctx *ctx) { return prepare_n(st, ctx, 4); }
static int prepare8(void *st, const mg_prepare_ctx *ctx) { return prepare_n(st, ctx, EQ_MAX_BANDS); }

static void release(void *stv)
{
    eq_state *s = stv;
    free(s->st);
    free(s->ost);
    free(s->gang);
    s->st = s->ost = NULL;
    s->gang = NULL;
}

static void reset(void *stv)
{
    eq_state *s = stv;
    if (s->st)
        memset(s->st, 0, (size_t)s->channels * (size_t)s->nunits * 4 * sizeof(mg_bq_state));
    for (int u = 0; u < s->nunits; u++)
        s->unit[u].xf = 0;
    s->cache_ok = 0;
    restamp(s);
}

static inline mg_bq_state *unit_state(eq_state *s, int c, int u)
{
    return s->st + ((size_t)c * (size_t)s->nunits + (size_t)u) * 4;
}

static inline mg_bq_state *unit_ostate(eq_state *s, int c, int u)
{
    return s->ost + ((size_t)c * (size_t)s->nunits + (size_t)u) * 4;
}

static void clear_unit(eq_state *s, int u)
{
    for (int c = 0; c < s->channels; c++)
        memset(unit_state(s, c, u), 0, 4 * sizeof(mg_bq_state));
}

/* (Re)design a unit if its values changed. kind: 0 high-pass, 1 low-pass,
 * 2 band (type in `type`, 0..4). */
static void design(eq_state *s, int u, int kind, int type, float f, float g, float q)
{
    eq_unit *un = &s->unit[u];
    if (kind < 2) {
        const int nsec = type == 0 ? 1 : type == 1 ? 2 : 4;
        if (un->nsec == nsec && un->kf == f)
            return;
        if (nsec > un->nsec) /* sections coming into use start from rest */
            for (int c = 0; c < s->channels; c++)
                memset(unit_state(s, c, u) + un->nsec, 0, (size_t)(nsec - un->nsec) * sizeof(mg_bq_state));
        for (int k = 0; k < nsec; k++)
            mg_bq_design(&un->c[k], kind == 0 ? MG_BQ_HIGHPASS : MG_BQ_LOWPASS, s->fs, f,
                         mg_bq_butter_q(nsec, k), 1.0);
        un->nsec = nsec;
        un->kf = f;
        return;
    }
    if (un->nsec == 1 && un->ktype == type && un->kf == f && un->kg == g && un->kq == q)
        return;
    if (un->nsec != 1 || un->kf != f) /* (nsec 1: kcw, ksw belong to kf) */
        mg_bq_trig(s->fs, f, &un->kcw, &un->ksw);
    mg_bq_design_cs(&un->c[0], type, un->kcw, un->ksw, q, g);
    un->nsec = 1;
    un->ktype = type;
    un->kf = f;
    un->kg = g;
    un->kq = q;
}

/* Run one unit over frames [i0, i0+m) of every channel, in place; with
 * `from`, the coefficients glide from those to the unit's current ones. */
static void run_unit(eq_state *s, const mg_proc *p, int u, const mg_pv *on, int i0, int m,
                     const mg_bq_coef *from)
{
    const eq_unit *un = &s->unit[u];
    for (int c = 0; c < s->channels; c++) {
        float *buf = p->out[c] + i0;
        mg_bq_state *st = unit_state(s, c, u);
        if (on->ramp || un->xf > 0)
            memcpy(s->dry, buf, (size_t)m * sizeof(float));
        for (int k = 0; k < un->nsec; k++) {
            if (from)
                mg_bq_run_glide(&from[k], &un->c[k], &st[k], buf, m);
            else
                mg_bq_run(&un->c[k], &st[k], buf, m);
        }
        if (un->xf > 0) {
            /* type/slope change: the outgoing design fades out linearly */
            memcpy(s->old, s->dry, (size_t)m * sizeof(float));
            mg_bq_state *ost = unit_ostate(s, c, u);
            for (int k = 0; k < un->onsec; k++)
                mg_bq_run(&un->oc[k], &ost[k], s->old, m);
            const float r = 1.0f / (float)s->xf_len;
            for (int i = 0; i < m; i++) {
                const int left = un->xf - (i0 + i) - 1;
                const float w = left <= 0 ? 1.0f : 1.0f - (float)left * r;
                buf[i] = s->old[i] + w * (buf[i] - s->old[i]);
            }
        }
        if (on->ramp) {
            const float *w = on->ramp + i0;
            for (int i = 0; i < m; i++)
                buf[i] = s->dry[i] + w[i] * (buf[i] - s->dry[i]);
        }
    }
}

static void guard_unit(eq_state *s, int u)
{
    for (int c = 0; c < s->channels; c++) {
        mg_bq_state *st = unit_state(s, c, u);
        for (int k = 0; k < s->unit[u].nsec; k++)
            mg_bq_guard(&st[k]);
    }
}

#define EQ_MAX_SEC (4 * (EQ_MAX_BANDS + 2))

static inline __attribute__((always_inline)) void
cascade_n(float *buf, int n, const double *b0, const double *b1, const double *b2,
          const double *a1, const double *a2, double *s1i, double *s2i, const int ns)
{
    double s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    for (int k = 0; k < ns; k++)
        s1[k] = s1i[k], s2[k] = s2i[k];
    for (int i = 0; i < n; i++) {
        double v = buf[i];
        for (int k = 0; k < ns; k++) {
            const double y = b0[k] * v + s1[k];
            s1[k] = (b1[k] * v + s2[k]) - a1[k] * y;
            s2[k] = b2[k] * v - a2[k] * y;
            v = y;
        }
        buf[i] = (float)v;
    }
    for (int k = 0; k < ns; k++)
        s1i[k] = s1[k], s2i[k] = s2[k];
}

/* Run the steady units in `list` (in order) as one cascade, sample by
 * sample: the sections' recursions overlap in the CPU instead of each
 * running its own latency-bound loop over the block. s1 is updated as
 * (b1 x + s2) - a1 y: the term that waits for y comes last, so the
 * recursion's critical path is one multiply and one subtraction. */
MG_HOT static void run_cascade(eq_state *s, const mg_proc *p, const int *list, int nl)
{
    double b0[EQ_MAX_SEC], b1[EQ_MAX_SEC], b2[EQ_MAX_SEC], a1[EQ_MAX_SEC], a2[EQ_MAX_SEC];
    double s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    int ns = 0;
    for (int l = 0; l < nl; l++) {
        const eq_unit *un = &s->unit[list[l]];
        for (int k = 0; k < un->nsec; k++, ns++) {
            b0[ns] = un->c[k].b0, b1[ns] = un->c[k].b1, b2[ns] = un->c[k].b2;
            a1[ns] = un->c[k].a1, a2[ns] = un->c[k].a2;
        }
    }
    const int n = p->nframes;
    for (int c = 0; c < s->channels; c++) {
        int j = 0;
        for (int l = 0; l < nl; l++) {
            const mg_bq_state *st = unit_state(s, c, list[l]);
            for (int k = 0; k < s->unit[list[l]].nsec; k++, j++)
                s1[j] = st[k].s1, s2[j] = st[k].s2;
        }
        float *buf = p->out[c];
        switch (ns) { /* constant counts unroll: the states live in registers */
#define EQ_CASE(N) case N: cascade_n(buf, n, b0, b1, b2, a1, a2, s1, s2, N); break;
        EQ_CASE(1) EQ_CASE(2) EQ_CASE(3) EQ_CASE(4) EQ_CASE(5) EQ_CASE(6)
#undef EQ_CASE
        default:
            cascade_n(buf, n, b0, b1, b2, a1, a2, s1, s2, ns);
            break;
        }
        j = 0;
        for (int l = 0; l < nl; l++) {
            mg_bq_state *st = unit_state(s, c, list[l]);
            for (int k = 0; k < s->unit[list[l]].nsec; k++, j++)
                st[k].s1 = s1[j], st[k].s2 = s2[j];
        }
    }
    for (int l = 0; l < nl; l++)
        guard_unit(s, list[l]);
}

/* Moving units. A unit whose frequency, gain or Q ramps (and that is not
 * switching on/off or crossfading a type change) runs in one cascade with
 * its steady neighbours: it is designed at the frames of the engine's clock
 * (mg_proc.time) on a grid of EQ_MOVE_CHUNK, from its values at that frame
 * (MG_PARAM_CONTROL parameters: the engine evaluates the ramp's formula
 * there, even when the frame lies in a later call, and writes no per-sample
 * values), and its coefficients glide linearly per sample from the previous
 * design to it (the stable region of (a1, a2) is a triangle, so every filter
 * on the way between two stable ones is stable). A glide, once designed,
 * runs to its grid frame whatever the calls and whether or not the ramps
 * end before it: frame F of it runs g0 + (F - gs + 1) gd, so the output does
 * not depend on where calls split the signal (tests/test_call_split.py).
 * Only the moving units are designed; a band whose frequency stays keeps
 * its cos/sin. In a gang (process_many) a block within one grid chunk runs
 * its moving nodes' lanes eight at a time like the steady ones
 * (run_lanes_glide), the same expressions as the scalar cascade_glide, so
 * ganged and alone agree bit for bit. Once the ramps end, the last design
 * is the settled one. */
#define EQ_MOVE_CHUNK 64 /* a power of two */

/* How to design a moving unit of a run: kind < 0 for a steady one. */
typedef struct {
    int kind, type, had; /* had: coefficients to glide from */
    const mg_pv *f, *g, *q;
} eq_move;

/* A parameter's value at frame i of a call of n frames; i may lie past the
 * call (the grid frame of a glide): MG_PARAM_CONTROL parameters evaluate it
 * (at the call's last frame: pv.value, the same value), a per-sample ramp
 * (none of the EQ's) holds its last. */
static inline float eq_val(const mg_pv *pv, int i, int n)
{
    if (pv->ramp)
        return pv->ramp[i < n ? i : n - 1];
    if (pv->ctl && i != n - 1)
        return (float)mg_ctl_at(pv->ctl, i);
    return pv->value;
}

/* 1 while a unit's glide has frames left at or after frame t. */
static inline int gliding(const eq_unit *un, uint64_t t)
{
    return un->glen > 0 && un->gs + (uint64_t)un->glen > t;
}

/* The call's frame (offset from its start) of the grid frame that ends the
 * chunk holding frame i. */
static inline int grid_end(const mg_proc *p, int i)
{
    return i + (EQ_MOVE_CHUNK - 1) - (int)((p->time + (uint64_t)i) & (EQ_MOVE_CHUNK - 1));
}

/* Set every unit of `list` for frames i0 .. ie of the call (one grid chunk
 * or its start: ie may lie past the call): a moving unit without a glide
 * that covers frame i0 is designed at the grid frame ie and glides to it
 * from frame i0; steady units get gd = 0. */
static void glide_design(eq_state *s, const mg_proc *p, const int *list, int nl, eq_move *mv,
                         int i0, int ie)
{
    const uint64_t f0 = p->time + (uint64_t)i0;
    for (int l = 0; l < nl; l++) {
        eq_unit *un = &s->unit[list[l]];
        eq_move *v = &mv[list[l]];
        if (v->kind < 0) {
            memcpy(un->g0, un->c, sizeof un->g0);
            memset(un->gd, 0, sizeof un->gd);
            un->goff = 0.0;
            continue;
        }
        if (gliding(un, f0)) { /* designed in an earlier call: it ends at ie too */
            un->goff = (double)(f0 - un->gs);
            continue;
        }
        mg_bq_coef from[4];
        memcpy(from, un->c, sizeof from);
        const int had = v->had ? un->nsec : 0;
        const int n = p->nframes;
        design(s, list[l], v->kind, v->type, eq_val(v->f, ie, n), v->g ? eq_val(v->g, ie, n) : 1.0f,
               v->q ? eq_val(v->q, ie, n) : 0.7071f);
        v->had = 1;
        un->gs = f0;
        un->glen = ie - i0 + 1;
        un->goff = 0.0;
        const double r = 1.0 / un->glen;
        for (int k = 0; k < un->nsec; k++) {
            const mg_bq_coef *c0 = had == un->nsec ? &from[k] : &un->c[k];
            un->g0[k] = *c0;
            un->gd[k].b0 = (un->c[k].b0 - c0->b0) * r, un->gd[k].b1 = (un->c[k].b1 - c0->b1) * r;
            un->gd[k].b2 = (un->c[k].b2 - c0->b2) * r, un->gd[k].a1 = (un->c[k].a1 - c0->a1) * r;
            un->gd[k].a2 = (un->c[k].a2 - c0->a2) * r;
        }
    }
}

/* The glide's coefficients of ns sections: g[0..4] the start (b0 b1 b2 a1
 * a2), g[5..9] the step per frame, g[10] the frames of the glide already
 * run (goff); frame i runs start + (g[10] + i + 1) step. */
MG_HOT static void cascade_glide(float *buf, int n, const double (*g)[EQ_MAX_SEC], double *s1i,
                                 double *s2i, int ns)
{
    double s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    for (int k = 0; k < ns; k++)
        s1[k] = s1i[k], s2[k] = s2i[k];
    for (int i = 0; i < n; i++) {
        const double ti = i + 1;
        double v = buf[i];
        for (int k = 0; k < ns; k++) {
            const double t = g[10][k] + ti;
            const double b0 = g[0][k] + t * g[5][k], b1 = g[1][k] + t * g[6][k];
            const double b2 = g[2][k] + t * g[7][k], a1 = g[3][k] + t * g[8][k];
            const double a2 = g[4][k] + t * g[9][k];
            const double y = b0 * v + s1[k];
            s1[k] = (b1 * v + s2[k]) - a1 * y;
            s2[k] = b2 * v - a2 * y;
            v = y;
        }
        buf[i] = (float)v;
    }
    for (int k = 0; k < ns; k++)
        s1i[k] = s1[k], s2i[k] = s2[k];
}

/* Frames [i0, i0+m) of every channel through the units of `list` on their
 * glides (glide_design), one cascade. */
static void run_glide(eq_state *s, const mg_proc *p, const int *list, int nl, int i0, int m)
{
    double g[11][EQ_MAX_SEC], s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    int ns = 0;
    for (int l = 0; l < nl; l++) {
        const eq_unit *un = &s->unit[list[l]];
        for (int k = 0; k < un->nsec; k++, ns++) {
            g[0][ns] = un->g0[k].b0, g[1][ns] = un->g0[k].b1, g[2][ns] = un->g0[k].b2;
            g[3][ns] = un->g0[k].a1, g[4][ns] = un->g0[k].a2;
            g[5][ns] = un->gd[k].b0, g[6][ns] = un->gd[k].b1, g[7][ns] = un->gd[k].b2;
            g[8][ns] = un->gd[k].a1, g[9][ns] = un->gd[k].a2, g[10][ns] = un->goff;
        }
    }
    for (int c = 0; c < s->channels; c++) {
        int j = 0;
        for (int l = 0; l < nl; l++) {
            const mg_bq_state *st = unit_state(s, c, list[l]);
            for (int k = 0; k < s->unit[list[l]].nsec; k++, j++)
                s1[j] = st[k].s1, s2[j] = st[k].s2;
        }
        cascade_glide(p->out[c] + i0, m, (const double(*)[EQ_MAX_SEC])g, s1, s2, ns);
        j = 0;
        for (int l = 0; l < nl; l++) {
            mg_bq_state *st = unit_state(s, c, list[l]);
            for (int k = 0; k < s->unit[list[l]].nsec; k++, j++)
                st[k].s1 = s1[j], st[k].s2 = s2[j];
        }
    }
}

/* A run of units with moving ones among them, over the whole block: a
 * piece per grid chunk the call touches. */
static void run_moving(eq_state *s, const mg_proc *p, const int *list, int nl, eq_move *mv)
{
    for (int i0 = 0; i0 < p->nframes;) {
        const int ie = grid_end(p, i0);
        const int m = (ie < p->nframes ? ie + 1 : p->nframes) - i0;
        glide_design(s, p, list, nl, mv, i0, ie);
        run_glide(s, p, list, nl, i0, m);
        i0 += m;
    }
    for (int l = 0; l < nl; l++)
        guard_unit(s, list[l]);
}

/* Everything of a block but the last run of steady units: the sanitised
 * copy of the input, designs, crossfades and moving units. Returns how many
 * units are left in `steady` (in order) for the caller to run as one
 * cascade: process runs them itself, process_many with other nodes' lanes. */
static inline float sanitise(float v)
{
    v = v > 1e6f ? 1e6f : v < -1e6f ? -1e6f : v;
    return v == v ? v : 0.0f;
}

static void sanitised_copy(eq_state *s, const mg_proc *p)
{
    for (int c = 0; c < s->channels; c++) {
        const float *x = p->in[c];
        float *y = p->out[c];
        for (int i = 0; i < p->nframes; i++)
            y[i] = sanitise(x[i]);
    }
}

/* With `deferred` non-NULL, a block that only runs steady units (the usual
 * one) skips the sanitised copy and sets *deferred: the caller's gang reads
 * the input and sanitises it on the way in (lanes_in), one pass less. With
 * `glide` non-NULL, a last run with moving units in a block of at most
 * EQ_MOVE_CHUNK frames is designed but not run: it is returned, *glide set,
 * for the caller to run on its glides (run_lanes_glide). */
MG_HOT static int units_block(eq_state *s, const mg_proc *p, int *steady, int *deferred,
                              int *glide, int *nsec)
{
    const int n = p->nframes;
    if (deferred)
        *deferred = 0;
    if (glide)
        *glide = 0;
    if (p->pv_same && s->cache_ok) { /* nothing to redesign or switch */
        if (deferred && s->cache_n > 0)
            *deferred = 1;
        else
            sanitised_copy(s, p);
        memcpy(steady, s->cache, sizeof s->cache); /* (a fixed size: inlined, no call) */
        if (nsec)
            *nsec = s->cache_ns;
        return s->cache_n;
    }
    /* sanitised copy: non-finite input becomes 0, magnitudes held below 1e6 */
    sanitised_copy(s, p);
    restamp(s); /* designs, the steady list or states may change */
    int nsteady = 0, alone = 0, nmoving = 0;
    eq_move mv[EQ_MAX_BANDS + 2];
    for (int u = 0; u < s->nunits; u++) {
        int kind, type, base;
        const mg_pv *on, *f, *g = NULL, *q = NULL;
        if (u == 0) {
            kind = 0, base = P_HPON;
            on = &p->pv[P_HPON], f = &p->pv[P_HPFREQ];
            type = (int)(p->pv[P_HPSLOPE].value + 0.5f);
        } else if (u == s->nunits - 1) {
            kind = 1, base = P_LPON;
            on = &p->pv[P_LPON], f = &p->pv[P_LPFREQ];
            type = (int)(p->pv[P_LPSLOPE].value + 0.5f);
        } else {
            kind = 2, base = P_BAND0 + (u - 1) * B_NPARAMS;
            on = &p->pv[base + B_ON], f = &p->pv[base + B_FREQ];
            g = &p->pv[base + B_GAIN], q = &p->pv[base + B_Q];
            type = (int)(p->pv[base + B_TYPE].value + 0.5f);
        }
        (void)base;
        eq_unit *un = &s->unit[u];
        if (!on->ramp && on->value <= 0.0f) {
            if (!un->idle) {
                clear_unit(s, u);
                un->idle = 1;
            }
            un->ident = 0;
            un->xf = 0;
            un->glen = 0;
            continue;
        }
        /* moving: a value moves, or a glide designed earlier has frames left */
        const int moving = mg_pv_moving(f) || (g && mg_pv_moving(g)) || (q && mg_pv_moving(q)) ||
                           gliding(un, p->time);
        int was_idle = un->idle;
        /* a type or slope change crossfades from the outgoing design */
        const int nsec = kind < 2 ? (type == 0 ? 1 : type == 1 ? 2 : 4) : 1;
        if ((!was_idle && un->nsec > 0 && (kind == 2 ? type != un->ktype : nsec != un->nsec)) ||
            (un->ident && type != un->ktype)) {
            un->onsec = was_idle ? 0 : un->nsec;
            memcpy(un->oc, un->c, sizeof un->oc);
            for (int c = 0; c < s->channels; c++) {
                memcpy(unit_ostate(s, c, u), unit_state(s, c, u), 4 * sizeof(mg_bq_state));
                memset(unit_state(s, c, u), 0, 4 * sizeof(mg_bq_state));
            }
            un->nsec = 0; /* redesign from rest */
            un->xf = s->xf_len;
            was_idle = 1;
        }
        /* a bell or shelf at 0 dB is the identity: its state stays zero */
        if (kind == 2 && type <= MG_BQ_HIGHSHELF && !moving && !on->ramp && g->value == 1.0f &&
            un->xf == 0) {
            if (!un->idle) {
                clear_unit(s, u);
                un->idle = 1;
            }
            un->ident = 1;
            un->ktype = type;
            un->glen = 0;
            continue;
        }
        un->idle = 0;
        un->ident = 0;
        if (!moving && !on->ramp && un->xf == 0) {
            un->glen = 0;
            design(s, u, kind, type, f->value, g ? g->value : 1.0f, q ? q->value : 0.7071f);
            mv[u].kind = -1;
            steady[nsteady++] = u; /* run later, with its steady neighbours */
            continue;
        }
        if (!on->ramp && un->xf == 0) { /* moving: glides in the run of its neighbours */
            mv[u] = (eq_move){kind, type, !was_idle, f, g, q};
            steady[nsteady++] = u;
            nmoving++;
            continue;
        }
        alone = 1;
        un->glen = 0; /* switching on/off or crossfading: designed every EQ_CHUNK frames */
        if (nmoving)
            run_moving(s, p, steady, nsteady, mv);
        else if (nsteady)
            run_cascade(s, p, steady, nsteady);
        nsteady = nmoving = 0;
        if (!moving) {
            design(s, u, kind, type, f->value, g ? g->value : 1.0f, q ? q->value : 0.7071f);
            run_unit(s, p, u, on, 0, n, NULL);
        } else {
            /* design at the end of every 16 frames, glide per sample between */
            for (int i0 = 0; i0 < n; i0 += EQ_CHUNK) {
                const int m = n - i0 < EQ_CHUNK ? n - i0 : EQ_CHUNK;
                const int ie = i0 + m - 1;
                mg_bq_coef from[4];
                const int had = was_idle ? 0 : un->nsec;
                memcpy(from, un->c, sizeof from);
                design(s, u, kind, type, eq_val(f, ie, n), g ? eq_val(g, ie, n) : 1.0f,
                       q ? eq_val(q, ie, n) : 0.7071f);
                run_unit(s, p, u, on, i0, m, had == un->nsec ? from : NULL);
                was_idle = 0;
            }
        }
        guard_unit(s, u);
        if (un->xf > 0) {
            un->xf = un->xf > n ? un->xf - n : 0;
            for (int c = 0; c < s->channels; c++)
                for (int k = 0; k < un->onsec; k++)
                    mg_bq_guard(&unit_ostate(s, c, u)[k]);
        }
    }
    if (nmoving) { /* the last run glides: in the caller's gang when it can */
        alone = 1;
        if (glide && grid_end(p, 0) >= n - 1) { /* the call lies in one grid chunk */
            glide_design(s, p, steady, nsteady, mv, 0, grid_end(p, 0));
            *glide = 1;
        } else {
            run_moving(s, p, steady, nsteady, mv);
            nsteady = 0;
        }
    }
    s->cache_ok = !alone;
    s->cache_n = nsteady;
    memcpy(s->cache, steady, sizeof(int) * (size_t)nsteady);
    int ns = 0;
    for (int u = 0; u < nsteady; u++)
        ns += s->unit[steady[u]].nsec;
    s->cache_ns = ns;
    if (nsec)
        *nsec = ns;
    return nsteady;
}

static void process(void *stv, const mg_proc *p)
{
    eq_state *s = stv;
    int steady[EQ_MAX_BANDS + 2];
    const int nsteady = units_block(s, p, steady, NULL, NULL, NULL);
    restamp(s); /* the states move outside any gang */
    if (nsteady)
        run_cascade(s, p, steady, nsteady);
}

/* Ganged cascades: eight lanes (a channel of one node each) run in the
 * eight doubles of one vector (one AVX-512 register in the x86-64-v4 clone,
 * two AVX registers in the v3 one: two independent recursions in flight),
 * each lane with its own coefficients and states. The lanes' samples are
 * first interleaved (frame-major, eight floats a frame) so the loop loads and
 * stores whole vectors. The arithmetic is the scalar cascade's, expression
 * for expression and in MG_HOT code like it (so fused the same way), so a
 * lane's result is bit-identical to running its node alone. */
typedef double eq_vd __attribute__((vector_size(64)));
typedef float eq_vf __attribute__((vector_size(32)));
#define EQ_LANES 8

typedef struct {
    eq_state *s;
    const float *src; /* the input: buf itself, or the node's input, sanitised on the way in */
    float *buf;
    int c;
    const int *list;
    int nl;
} eq_lane;

static inline __attribute__((always_inline)) void
cascade_v(eq_vf *x, int n, const eq_vd *b0, const eq_vd *b1, const eq_vd *b2,
          const eq_vd *a1, const eq_vd *a2, eq_vd *s1i, eq_vd *s2i, const int ns)
{
    eq_vd s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    for (int k = 0; k < ns; k++)
        s1[k] = s1i[k], s2[k] = s2i[k];
    for (int i = 0; i < n; i++) {
        eq_vd v = __builtin_convertvector(x[i], eq_vd);
        for (int k = 0; k < ns; k++) {
            const eq_vd y = b0[k] * v + s1[k];
            s1[k] = (b1[k] * v + s2[k]) - a1[k] * y;
            s2[k] = b2[k] * v - a2[k] * y;
            v = y;
        }
        x[i] = __builtin_convertvector(v, eq_vf);
    }
    for (int k = 0; k < ns; k++)
        s1i[k] = s1[k], s2i[k] = s2[k];
}

/* cascade_v on lanes [4h, 4h+4) only, in four-double vectors: for CPUs
 * without AVX-512, where an eight-double vector is two AVX registers and the
 * states of a five-section cascade (20 registers) no longer fit in the 16
 * there are, so every section would spill its states to memory and back each
 * sample. Each lane's expressions are cascade_v's: the same results. */
typedef double eq_vd4 __attribute__((vector_size(32)));
typedef float eq_vf4 __attribute__((vector_size(16)));

/* (no function returning a vector: its ABI differs with and without AVX) */
#define EQ_HALF(dst, v, h) memcpy(&(dst), (const double *)(v) + 4 * (h), sizeof(dst))

static inline __attribute__((always_inline)) void
cascade_h(eq_vf *x, int n, int h, const eq_vd *b0v, const eq_vd *b1v, const eq_vd *b2v,
          const eq_vd *a1v, const eq_vd *a2v, eq_vd *s1i, eq_vd *s2i, const int ns)
{
    eq_vd4 b0[EQ_MAX_SEC], b1[EQ_MAX_SEC], b2[EQ_MAX_SEC], a1[EQ_MAX_SEC], a2[EQ_MAX_SEC];
    eq_vd4 s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    for (int k = 0; k < ns; k++) {
        EQ_HALF(b0[k], &b0v[k], h), EQ_HALF(b1[k], &b1v[k], h), EQ_HALF(b2[k], &b2v[k], h);
        EQ_HALF(a1[k], &a1v[k], h), EQ_HALF(a2[k], &a2v[k], h);
        EQ_HALF(s1[k], &s1i[k], h), EQ_HALF(s2[k], &s2i[k], h);
    }
    for (int i = 0; i < n; i++) {
        eq_vf4 xf;
        memcpy(&xf, (const float *)&x[i] + 4 * h, sizeof xf);
        eq_vd4 v = __builtin_convertvector(xf, eq_vd4);
        for (int k = 0; k < ns; k++) {
            const eq_vd4 y = b0[k] * v + s1[k];
            s1[k] = (b1[k] * v + s2[k]) - a1[k] * y;
            s2[k] = b2[k] * v - a2[k] * y;
            v = y;
        }
        xf = __builtin_convertvector(v, eq_vf4);
        memcpy((float *)&x[i] + 4 * h, &xf, sizeof xf);
    }
    for (int k = 0; k < ns; k++) {
        memcpy((double *)&s1i[k] + 4 * h, &s1[k], sizeof s1[k]);
        memcpy((double *)&s2i[k] + 4 * h, &s2[k], sizeof s2[k]);
    }
}

/* 1 when the CPU has AVX-512 (eight doubles in a register): set at load.
 * MIXGRAPH_EQ_NARROW=1 in the environment takes the four-double path on any
 * CPU (tests/test_gang.py runs it so on machines with AVX-512). */
static int eq_wide;
__attribute__((constructor)) static void eq_cpu(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    eq_wide = __builtin_cpu_supports("avx512f");
#endif
    const char *narrow = getenv("MIXGRAPH_EQ_NARROW");
    if (narrow && narrow[0] == '1')
        eq_wide = 0;
}

/* Frames [0, returned) of eight full lanes into x, eight frames at a time:
 * each 8x8 tile (8 frames of the 8 lanes) is transposed in registers
 * (csrc/dsp_transpose.h), then the frames' vectors are sanitised as
 * units_block does (NaN -> 0, then held within +-1e6: the same values as
 * sanitise(), -0.0 and +-inf included); on a lane already sanitised this
 * changes nothing. */
typedef int32_t eq_vi __attribute__((vector_size(32)));
static inline int lanes_in(const eq_lane *ln, int nln, eq_vf *x, int n)
{
    if (nln != EQ_LANES)
        return 0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *const in[8] = {ln[0].src + i, ln[1].src + i, ln[2].src + i, ln[3].src + i,
                                    ln[4].src + i, ln[5].src + i, ln[6].src + i, ln[7].src + i};
        float *const out[8] = {(float *)&x[i],     (float *)&x[i + 1], (float *)&x[i + 2],
                               (float *)&x[i + 3], (float *)&x[i + 4], (float *)&x[i + 5],
                               (float *)&x[i + 6], (float *)&x[i + 7]};
        mg_tr8x8(in, out);
    }
    const eq_vf hi = {1e6f, 1e6f, 1e6f, 1e6f, 1e6f, 1e6f, 1e6f, 1e6f}, lo = -hi;
    for (int j = 0; j < i; j++) {
        eq_vf v = (eq_vf)((eq_vi)x[j] & (x[j] == x[j])); /* NaN -> +0 */
        v = (eq_vf)(((eq_vi)hi & (v > hi)) | ((eq_vi)v & ~(v > hi)));
        v = (eq_vf)(((eq_vi)lo & (v < lo)) | ((eq_vi)v & ~(v < lo)));
        x[j] = v;
    }
    return i;
}

/* The way back: frames [0, returned) of x into eight full lanes. */
static inline int lanes_out(const eq_lane *ln, int nln, const eq_vf *x, int n)
{
    if (nln != EQ_LANES)
        return 0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *const in[8] = {(const float *)&x[i],     (const float *)&x[i + 1],
                                    (const float *)&x[i + 2], (const float *)&x[i + 3],
                                    (const float *)&x[i + 4], (const float *)&x[i + 5],
                                    (const float *)&x[i + 6], (const float *)&x[i + 7]};
        float *const out[8] = {ln[0].buf + i, ln[1].buf + i, ln[2].buf + i, ln[3].buf + i,
                               ln[4].buf + i, ln[5].buf + i, ln[6].buf + i, ln[7].buf + i};
        mg_tr8x8(in, out);
    }
    return i;
}

/* mg_bq_guard on every lane of ns sections at once: non-finite states are
 * reset, a tail below 1e-30 is flushed to exact zero (the same rule, so the
 * same states, as the scalar guard). The tests are integer compares of the
 * magnitudes' bits (which order like the magnitudes, NaN above infinity),
 * first as one OR over every state: in the usual block nothing is non-finite
 * or tiny, and the states are not touched. The compares run on halves of
 * four lanes: GCC lowers compares of eight 64-bit integers to scalar code
 * (set/insert per lane) in the x86-64-v3 clone, and in every clone once
 * inlined, where compares of four vectorise in both. */
typedef long long eq_vl4 __attribute__((vector_size(32)));
#define EQ_HALF_L(dst, v, h) memcpy(&(dst), (const char *)(v) + 32 * (h), sizeof(dst))
static inline void guard_v(eq_vd *s1, eq_vd *s2, int ns)
{
    const eq_vl4 zero = {0}, mag = zero + 0x7fffffffffffffffLL;
    const eq_vl4 inf = zero + 0x7ff0000000000000LL; /* bits of +infinity */
    const eq_vl4 tinyb = zero + 0x39b4484bfeebc2a0LL; /* bits of 1e-30 */
    eq_vl4 bad = zero;
    for (int k = 0; k < ns; k++)
        for (int h = 0; h < 2; h++) {
            eq_vl4 a, b;
            EQ_HALF_L(a, &s1[k], h), EQ_HALF_L(b, &s2[k], h);
            const eq_vl4 ua = a & mag, ub = b & mag;
            bad |= (ua >= inf) | (ub >= inf) | ((ua < tinyb) & (ub < tinyb));
        }
    if (!(bad[0] | bad[1] | bad[2] | bad[3]))
        return;
    for (int k = 0; k < ns; k++)
        for (int h = 0; h < 2; h++) {
            eq_vl4 a, b;
            EQ_HALF_L(a, &s1[k], h), EQ_HALF_L(b, &s2[k], h);
            const eq_vl4 ua = a & mag, ub = b & mag;
            const eq_vl4 finite = (ua < inf) & (ub < inf);
            const eq_vl4 tiny = (ua < tinyb) & (ub < tinyb);
            const eq_vl4 keep = finite & ~tiny;
            a &= keep, b &= keep;
            memcpy((char *)&s1[k] + 32 * h, &a, sizeof a);
            memcpy((char *)&s2[k] + 32 * h, &b, sizeof b);
        }
}

/* A gang cache: a gang's coefficients and states as vectors, with what
 * they were gathered from. It belongs to the node of the gang's first lane;
 * while every lane's node keeps its stamp, the next block finds everything
 * in place and gathers nothing (the states go back to each node's own
 * layout after every block all the same, so the node can run alone at any
 * time). Building one restamps its lanes' nodes, so at most one cache holds
 * a node's current stamp: states a node ran with elsewhere are never read
 * back from a stale cache. Cascades longer than EQ_GANG_SEC are not cached. */
#define EQ_GANG_SEC 8
struct eq_gang {
    eq_vd b0[EQ_GANG_SEC], b1[EQ_GANG_SEC], b2[EQ_GANG_SEC], a1[EQ_GANG_SEC], a2[EQ_GANG_SEC];
    eq_vd s1[EQ_GANG_SEC], s2[EQ_GANG_SEC];
    int valid, nln, ns;
    const eq_state *ks[EQ_LANES];
    int kc[EQ_LANES];
    unsigned long long kst[EQ_LANES];
    mg_bq_state *sp[EQ_LANES][EQ_GANG_SEC]; /* where each lane's states live */
};

static void *gang_alloc(void)
{
    const size_t size = (sizeof(struct eq_gang) + 63) & ~(size_t)63;
    void *g = aligned_alloc(64, size);
    if (g)
        memset(g, 0, size);
    return g;
}

/* Run up to EQ_LANES lanes whose cascades have ns sections each. */
MG_HOT static void run_lanes(const eq_lane *ln, int nln, int ns, int n)
{
    eq_vd lb0[EQ_MAX_SEC], lb1[EQ_MAX_SEC], lb2[EQ_MAX_SEC], la1[EQ_MAX_SEC], la2[EQ_MAX_SEC];
    eq_vd ls1[EQ_MAX_SEC], ls2[EQ_MAX_SEC];
    struct eq_gang *g = ns <= EQ_GANG_SEC ? ln[0].s->gang : NULL;
    eq_vd *b0 = g ? g->b0 : lb0, *b1 = g ? g->b1 : lb1, *b2 = g ? g->b2 : lb2;
    eq_vd *a1 = g ? g->a1 : la1, *a2 = g ? g->a2 : la2, *s1 = g ? g->s1 : ls1, *s2 = g ? g->s2 : ls2;
    eq_vf x[MG_MAX_BLOCK];
    int hit = g && g->valid && g->nln == nln && g->ns == ns;
    for (int l = 0; hit && l < nln; l++)
        hit = g->ks[l] == ln[l].s && g->kc[l] == ln[l].c && g->kst[l] == ln[l].s->stamp;
    if (nln < EQ_LANES) /* empty lanes: zero coefficients over zeros */
        memset(x, 0, sizeof(eq_vf) * (size_t)n);
    const int tiles = lanes_in(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        const float *src = ln[l].src;
        for (int i = tiles; i < n; i++)
            x[i][l] = sanitise(src[i]);
    }
    if (!hit) {
        const size_t used = sizeof(eq_vd) * (size_t)ns;
        memset(b0, 0, used), memset(b1, 0, used), memset(b2, 0, used);
        memset(a1, 0, used), memset(a2, 0, used), memset(s1, 0, used), memset(s2, 0, used);
        for (int l = 0; l < nln; l++) {
            if (g)
                restamp(ln[l].s); /* other caches of this node go stale */
            int j = 0;
            for (int u = 0; u < ln[l].nl; u++) {
                const eq_unit *un = &ln[l].s->unit[ln[l].list[u]];
                mg_bq_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
                for (int k = 0; k < un->nsec; k++, j++) {
                    b0[j][l] = un->c[k].b0, b1[j][l] = un->c[k].b1, b2[j][l] = un->c[k].b2;
                    a1[j][l] = un->c[k].a1, a2[j][l] = un->c[k].a2;
                    s1[j][l] = st[k].s1, s2[j][l] = st[k].s2;
                    if (g)
                        g->sp[l][j] = &st[k];
                }
            }
        }
        if (g) {
            for (int l = 0; l < nln; l++) /* after every restamp (a node may have two lanes) */
                g->ks[l] = ln[l].s, g->kc[l] = ln[l].c, g->kst[l] = ln[l].s->stamp;
            g->valid = 1, g->nln = nln, g->ns = ns;
        }
    }
    if (eq_wide || nln <= 4) {
        switch (ns) {
#define EQ_CASE(N) case N: cascade_v(x, n, b0, b1, b2, a1, a2, s1, s2, N); break;
        EQ_CASE(1) EQ_CASE(2) EQ_CASE(3) EQ_CASE(4) EQ_CASE(5) EQ_CASE(6)
#undef EQ_CASE
        default:
            cascade_v(x, n, b0, b1, b2, a1, a2, s1, s2, ns);
            break;
        }
    } else {
        for (int h = 0; h < 2; h++)
            switch (ns) {
#define EQ_CASE(N) case N: cascade_h(x, n, h, b0, b1, b2, a1, a2, s1, s2, N); break;
            EQ_CASE(1) EQ_CASE(2) EQ_CASE(3) EQ_CASE(4) EQ_CASE(5) EQ_CASE(6)
#undef EQ_CASE
            default:
                cascade_h(x, n, h, b0, b1, b2, a1, a2, s1, s2, ns);
                break;
            }
    }
    guard_v(s1, s2, ns);
    const int done = lanes_out(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        float *dst = ln[l].buf;
        for (int i = done; i < n; i++)
            dst[i] = x[i][l];
        if (g) {
            for (int j = 0; j < ns; j++)
                g->sp[l][j]->s1 = s1[j][l], g->sp[l][j]->s2 = s2[j][l];
            continue;
        }
        int j = 0;
        for (int u = 0; u < ln[l].nl; u++) {
            mg_bq_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
            for (int k = 0; k < ln[l].s->unit[ln[l].list[u]].nsec; k++, j++)
                st[k].s1 = s1[j][l], st[k].s2 = s2[j][l];
        }
    }
}

/* cascade_glide on eight lanes: the same expressions, lane by lane (each
 * lane's sections with their own goff), for n <= EQ_MOVE_CHUNK frames (one
 * grid chunk). Section by section over every frame, the frames' values
 * between sections kept in double (as the scalar cascade's v), so each
 * section's coefficients and states stay in registers and its recursion is
 * the only chain: frame by frame through all sections, the eleven glide
 * vectors and two states of each section were loaded every frame, and the
 * sections' chain waited on itself (the moving path was ~3x a steady
 * block's cost). The order of the sections' work changes, not one
 * operation: the results are the scalar cascade_glide's bit for bit. */
static inline __attribute__((always_inline)) void
cascade_glide_v(eq_vf *x, int n, const eq_vd (*g)[EQ_MAX_SEC], eq_vd *s1i, eq_vd *s2i, int ns)
{
    eq_vd v[EQ_MOVE_CHUNK];
    const eq_vd zero = {0};
    for (int i = 0; i < n; i++)
        v[i] = __builtin_convertvector(x[i], eq_vd);
    for (int k = 0; k < ns; k++) {
        const eq_vd g0 = g[0][k], g1 = g[1][k], g2 = g[2][k], g3 = g[3][k], g4 = g[4][k];
        const eq_vd d0 = g[5][k], d1 = g[6][k], d2 = g[7][k], d3 = g[8][k], d4 = g[9][k];
        const eq_vd off = g[10][k];
        eq_vd s1 = s1i[k], s2 = s2i[k];
        for (int i = 0; i < n; i++) {
            const eq_vd ti = zero + (double)(i + 1);
            const eq_vd t = off + ti;
            const eq_vd b0 = g0 + t * d0, b1 = g1 + t * d1;
            const eq_vd b2 = g2 + t * d2, a1 = g3 + t * d3;
            const eq_vd a2 = g4 + t * d4;
            const eq_vd xv = v[i];
            const eq_vd y = b0 * xv + s1;
            s1 = (b1 * xv + s2) - a1 * y;
            s2 = b2 * xv - a2 * y;
            v[i] = y;
        }
        s1i[k] = s1, s2i[k] = s2;
    }
    for (int i = 0; i < n; i++)
        x[i] = __builtin_convertvector(v[i], eq_vf);
}

/* cascade_glide_v on lanes [4h, 4h+4) only, in four-double vectors (CPUs
 * without AVX-512, as cascade_h: GCC moves eight-double vectors through
 * general registers there, lane by lane). The same expressions: the same
 * results. */
static inline __attribute__((always_inline)) void
cascade_glide_h(eq_vf *x, int n, int h, const eq_vd (*g)[EQ_MAX_SEC], eq_vd *s1i, eq_vd *s2i,
                int ns)
{
    eq_vd4 v[EQ_MOVE_CHUNK];
    const eq_vd4 zero = {0};
    for (int i = 0; i < n; i++) {
        eq_vf4 xf;
        memcpy(&xf, (const float *)&x[i] + 4 * h, sizeof xf);
        v[i] = __builtin_convertvector(xf, eq_vd4);
    }
    for (int k = 0; k < ns; k++) {
        eq_vd4 c[11];
        for (int r = 0; r < 11; r++)
            EQ_HALF(c[r], &g[r][k], h);
        const eq_vd4 g0 = c[0], g1 = c[1], g2 = c[2], g3 = c[3], g4 = c[4];
        const eq_vd4 d0 = c[5], d1 = c[6], d2 = c[7], d3 = c[8], d4 = c[9], off = c[10];
        eq_vd4 s1, s2;
        EQ_HALF(s1, &s1i[k], h), EQ_HALF(s2, &s2i[k], h);
        for (int i = 0; i < n; i++) {
            const eq_vd4 ti = zero + (double)(i + 1);
            const eq_vd4 t = off + ti;
            const eq_vd4 b0 = g0 + t * d0, b1 = g1 + t * d1;
            const eq_vd4 b2 = g2 + t * d2, a1 = g3 + t * d3;
            const eq_vd4 a2 = g4 + t * d4;
            const eq_vd4 xv = v[i];
            const eq_vd4 y = b0 * xv + s1;
            s1 = (b1 * xv + s2) - a1 * y;
            s2 = b2 * xv - a2 * y;
            v[i] = y;
        }
        memcpy((double *)&s1i[k] + 4 * h, &s1, sizeof s1);
        memcpy((double *)&s2i[k] + 4 * h, &s2, sizeof s2);
    }
    for (int i = 0; i < n; i++) {
        const eq_vf4 xf = __builtin_convertvector(v[i], eq_vf4);
        memcpy((float *)&x[i] + 4 * h, &xf, sizeof xf);
    }
}

/* cascade_glide_h on both halves at once: two independent recursions in
 * flight (one half alone waits on its own chain, two FMA latencies a frame
 * and section). The same expressions lane by lane: the same results. */
static inline __attribute__((always_inline)) void
cascade_glide_hh(eq_vf *x, int n, const eq_vd (*g)[EQ_MAX_SEC], eq_vd *s1i, eq_vd *s2i, int ns)
{
    eq_vd4 v[2][EQ_MOVE_CHUNK];
    const eq_vd4 zero = {0};
    for (int i = 0; i < n; i++)
        for (int h = 0; h < 2; h++) {
            eq_vf4 xf;
            memcpy(&xf, (const float *)&x[i] + 4 * h, sizeof xf);
            v[h][i] = __builtin_convertvector(xf, eq_vd4);
        }
    for (int k = 0; k < ns; k++) {
        eq_vd4 c[2][11], s1[2], s2[2];
        for (int h = 0; h < 2; h++) {
            for (int r = 0; r < 11; r++)
                EQ_HALF(c[h][r], &g[r][k], h);
            EQ_HALF(s1[h], &s1i[k], h), EQ_HALF(s2[h], &s2i[k], h);
        }
        for (int i = 0; i < n; i++) {
            const eq_vd4 ti = zero + (double)(i + 1);
            for (int h = 0; h < 2; h++) {
                const eq_vd4 t = c[h][10] + ti;
                const eq_vd4 b0 = c[h][0] + t * c[h][5], b1 = c[h][1] + t * c[h][6];
                const eq_vd4 b2 = c[h][2] + t * c[h][7], a1 = c[h][3] + t * c[h][8];
                const eq_vd4 a2 = c[h][4] + t * c[h][9];
                const eq_vd4 xv = v[h][i];
                const eq_vd4 y = b0 * xv + s1[h];
                s1[h] = (b1 * xv + s2[h]) - a1 * y;
                s2[h] = b2 * xv - a2 * y;
                v[h][i] = y;
            }
        }
        for (int h = 0; h < 2; h++) {
            memcpy((double *)&s1i[k] + 4 * h, &s1[h], sizeof s1[h]);
            memcpy((double *)&s2i[k] + 4 * h, &s2[h], sizeof s2[h]);
        }
    }
    for (int i = 0; i < n; i++)
        for (int h = 0; h < 2; h++) {
            const eq_vf4 xf = __builtin_convertvector(v[h][i], eq_vf4);
            memcpy((float *)&x[i] + 4 * h, &xf, sizeof xf);
        }
}

/* run_lanes for lanes whose runs glide (units_block set *glide): each
 * lane's coefficients move per frame from g0 by gd (glide_design), so a
 * node stays in a gang while its values move. No gang cache: the
 * coefficients change every block. */
MG_HOT static void run_lanes_glide(const eq_lane *ln, int nln, int ns, int n)
{
    eq_vd g[11][EQ_MAX_SEC], s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    eq_vf x[MG_MAX_BLOCK];
    if (nln < EQ_LANES) /* empty lanes: zero coefficients over zeros */
        memset(x, 0, sizeof(eq_vf) * (size_t)n);
    const int tiles = lanes_in(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        const float *src = ln[l].src;
        for (int i = tiles; i < n; i++)
            x[i][l] = sanitise(src[i]);
    }
    for (int r = 0; r < 11; r++)
        memset(g[r], 0, sizeof(eq_vd) * (size_t)ns);
    memset(s1, 0, sizeof(eq_vd) * (size_t)ns), memset(s2, 0, sizeof(eq_vd) * (size_t)ns);
    for (int l = 0; l < nln; l++) {
        int j = 0;
        for (int u = 0; u < ln[l].nl; u++) {
            const eq_unit *un = &ln[l].s->unit[ln[l].list[u]];
            const mg_bq_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
            for (int k = 0; k < un->nsec; k++, j++) {
                g[0][j][l] = un->g0[k].b0, g[1][j][l] = un->g0[k].b1, g[2][j][l] = un->g0[k].b2;
                g[3][j][l] = un->g0[k].a1, g[4][j][l] = un->g0[k].a2;
                g[5][j][l] = un->gd[k].b0, g[6][j][l] = un->gd[k].b1, g[7][j][l] = un->gd[k].b2;
                g[8][j][l] = un->gd[k].a1, g[9][j][l] = un->gd[k].a2, g[10][j][l] = un->goff;
                s1[j][l] = st[k].s1, s2[j][l] = st[k].s2;
            }
        }
    }
    if (eq_wide)
        cascade_glide_v(x, n, (const eq_vd(*)[EQ_MAX_SEC])g, s1, s2, ns);
    else if (nln > 4)
        cascade_glide_hh(x, n, (const eq_vd(*)[EQ_MAX_SEC])g, s1, s2, ns);
    else
        cascade_glide_h(x, n, 0, (const eq_vd(*)[EQ_MAX_SEC])g, s1, s2, ns);
    guard_v(s1, s2, ns);
    const int done = lanes_out(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        float *dst = ln[l].buf;
        for (int i = done; i < n; i++)
            dst[i] = x[i][l];
        int j = 0;
        for (int u = 0; u < ln[l].nl; u++) {
            mg_bq_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
            for (int k = 0; k < ln[l].s->unit[ln[l].list[u]].nsec; k++, j++)
                st[k].s1 = s1[j][l], st[k].s2 = s2[j][l];
        }
    }
}

/* Several eq nodes at once: each does its block's bookkeeping alone, then
 * the steady cascades of all their channels run EQ_LANES at a time, lanes
 * grouped by section count. */
static void process_many(void *const *states, const mg_proc *procs, int k)
{
    int steady[MG_MAX_GANG][EQ_MAX_BANDS + 2];
    int nst[MG_MAX_GANG];
    eq_lane pend[2][EQ_MAX_SEC + 1][EQ_LANES]; /* [gliding] */
    int npend[2][EQ_MAX_SEC + 1] = {{0}};
    const int n = procs[0].nframes;
    for (int j = 0; j < k; j++) {
        eq_state *s = states[j];
        int deferred, gl;
        int ns;
        nst[j] = units_block(s, &procs[j], steady[j], &deferred, &gl, &ns);
        if (ns == 0)
            continue;
        for (int c = 0; c < s->channels; c++) {
            eq_lane *q = &pend[gl][ns][npend[gl][ns]++];
            q->s = s, q->buf = procs[j].out[c], q->c = c, q->list = steady[j], q->nl = nst[j];
            q->src = deferred ? procs[j].in[c] : q->buf;
            if (npend[gl][ns] == EQ_LANES) {
                if (gl)
                    run_lanes_glide(pend[1][ns], EQ_LANES, ns, n);
                else
                    run_lanes(pend[0][ns], EQ_LANES, ns, n);
                npend[gl][ns] = 0;
            }
        }
    }
    for (int ns = 1; ns <= EQ_MAX_SEC; ns++) { /* guarded there */
        if (npend[0][ns])
            run_lanes(pend[0][ns], npend[0][ns], ns, n);
        if (npend[1][ns])
            run_lanes_glide(pend[1][ns], npend[1][ns], ns, n);
    }
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"hpon", "off|on"},
    {"hpslope", "12 dB/oct|24 dB/oct|48 dB/oct"},
    {"lpon", "off|on"},
    {"lpslope", "12 dB/oct|24 dB/oct|48 dB/oct"},
    {"b#on", "off|on"},
    {"b#type", "bell|low shelf|high shelf|notch|band-pass"},
};

const mg_node_type mg_type_eq = {
    .name = "eq",
    .doc = "Equaliser: Butterworth high-pass / low-pass (12/24/48 dB/oct) and 4 bands "
           "(bell, low shelf, high shelf, notch, band-pass; RBJ cookbook).",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = EQ_MAX_CH,
    .params = params,
    .n_params = P_BAND0 + 4 * B_NPARAMS,
    MG_CHOICES(choices),
    MG_PORTS(ports),
    .state_size = sizeof(eq_state),
    .prepare = prepare4,
    .process = process,
    .process_many = process_many,
    .reset = reset,
    .release = release,
    .param_flags = param_flags,
};

const mg_node_type mg_type_eq8 = {
    .name = "eq8",
    .doc = "The `eq` with 8 bands.",
    .default_channels = 2,
    .min_channels = 1,
    .max_channels = EQ_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    .state_size = sizeof(eq_state),
    .prepare = prepare8,
    .process = process,
    .process_many = process_many,
    .reset = reset,
    .release = release,
    .param_flags = param_flags,
};
