/* eq: console equaliser. Butterworth high-pass and low-pass (12/24/48 dB/oct)
 * and parametric bands (bell, low shelf, high shelf, notch, band-pass: RBJ
 * Audio EQ Cookbook), every channel filtered with its own state.
 *
 * Signal order: high-pass -> bands 1..N -> low-pass. Every section is a
 * trapezoidal state-variable filter (csrc/dsp_svf.h: Simper / Zavalishin)
 * with float states and coefficients, matched exactly to the cookbook's
 * biquad designs (same analog prototypes, same prewarped bilinear
 * transform); channels run eight at a time in the eight floats of one AVX2
 * vector (a node's own channels alone, several nodes' channels in a gang).
 * Coefficients are recomputed when a value changes; while a frequency, gain
 * or Q ramps they are designed every 64 samples of the engine's clock from
 * the ramp (read there only: MG_PARAM_CONTROL) and the stored SVF
 * coefficients glide linearly per sample in between (no zipper; every
 * filter on the way is stable, csrc/dsp_svf.h), in the cascade of the
 * unit's neighbours, eight lanes at a time (run_lanes_glide); a unit that
 * moves while it switches on/off or crossfades a type is designed every 16
 * samples. An `on` switch crossfades the section in and out over 10 ms; a
 * type or slope change crossfades from the outgoing design to the new one
 * (started from rest) over 10 ms. Steady sections run as one sample-major
 * cascade. Input: non-finite samples become 0, magnitudes are held below
 * 1e6; non-finite filter states are reset, tails below 1e-30 are flushed to
 * exact zero. `eq` has 4 bands, `eq8` 8 (the same parameter table, which
 * `eq` uses the first 26 entries of). */
#include "mg_node.h"
#include "dsp_svf.h"
#include "dsp_transpose.h"

#include <stdatomic.h>
#include <stddef.h>
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

/* A unit: the high-pass, one band, or the low-pass (up to 4 sections).
 * Laid out by use (7 lines, 64-aligned): a gliding band (one section) reads
 * and writes line 0 (the bookkeeping and the glide's frames), line 1 (its
 * design c[0]) and line 2 (its glide gl[0]) and nothing else, so a whole-desk
 * fade touches 3 lines a moving band instead of 6 (attack4's A11: 400 eq8
 * gliding stream their units through the cache every block). */
typedef struct {
    float kf, kg, kq;  /* values the coefficients belong to */
    int ktype, nsec;   /* nsec 0: not designed yet */
    int idle;          /* 1: states are cleared (unit off or identity) */
    int ident;         /* idle because it is the identity (0 dB bell/shelf) */
    int xf;            /* samples left of a type/slope crossfade */
    int onsec;         /* sections of the outgoing design (0: identity) */
    /* the glide under way: frames gs .. gs + glen - 1 of the engine's clock
     * (mg_proc.time) run g0 + (frame - gs + 1) gd, reaching the design for
     * the last one, a frame on the EQ_MOVE_CHUNK grid (glen 0: none); goff is
     * frame - gs at the start of the piece being run (glide_design) */
    int glen;
    float goff;
    uint64_t gs;
    double kt;         /* tan(pi kf / fs) for a band's kf (design) */
    mg_sv_coef c[4];
    /* a glide (glide_design): frame k (1..m) of it runs g0 + k gd; a unit
     * that does not move this chunk has g0 = c, gd = 0 (sections < nsec) */
    struct {
        mg_sv_coef g0, gd;
    } gl[4];
    mg_sv_coef oc[4];  /* the outgoing design during a crossfade */
} __attribute__((aligned(64))) eq_unit;
_Static_assert(sizeof(eq_unit) == 7 * 64, "eq_unit: 7 lines");

struct eq_gang;

/* Line 0 holds all that a gang's usual block reads of a node (process_many,
 * units_block's steady path, run_lanes' cache key): one line a node, where
 * cache_ok sat at the end of the units (perf: its load missed, ~0.4 % of
 * mix64 on that one instruction). The steady list itself is read only when a
 * gang cache is (re)built. */
typedef struct {
    int channels, nunits;
    /* changes (to a value never used before, by any node) whenever the
     * coefficients, the steady list or the states may have changed other
     * than by the ganged cascade: the key of the gang caches */
    unsigned long long stamp;
    struct eq_gang *gang; /* this node's gang cache (run_lanes), when it leads a gang */
    /* the last block's steady list, valid while parameters stay as they were
     * and no unit ran on its own (moving, switching or crossfading) */
    int cache_ok, cache_n;
    int cache_ns;     /* the sections of the last block's steady list (so a
                         gang's block reads no unit to count them) */
    eq_unit unit[EQ_MAX_BANDS + 2];
    int cache[EQ_MAX_BANDS + 2]; /* the list */
    int nbands;
    double fs;
    int xf_len;       /* type/slope crossfade length (10 ms) */
    mg_sv_state *st;  /* [channel][unit][4] */
    mg_sv_state *ost; /* the outgoing design's states, same layout */
    float dry[MG_MAX_BLOCK];
    float old[MG_MAX_BLOCK];
} eq_state;
_Static_assert(offsetof(eq_state, unit) == 64, "eq_state: the steady block's fields in line 0");

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
    s->st = mg_zalloc((size_t)ctx->channels * (size_t)s->nunits * 4, sizeof(mg_sv_state));
    s->ost = mg_zalloc((size_t)ctx->channels * (size_t)s->nunits * 4, sizeof(mg_sv_state));
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
        memset(s->st, 0, (size_t)s->channels * (size_t)s->nunits * 4 * sizeof(mg_sv_state));
    for (int u = 0; u < s->nunits; u++)
        s->unit[u].xf = 0;
    s->cache_ok = 0;
    restamp(s);
}

static inline mg_sv_state *unit_state(eq_state *s, int c, int u)
{
    return s->st + ((size_t)c * (size_t)s->nunits + (size_t)u) * 4;
}

static inline mg_sv_state *unit_ostate(eq_state *s, int c, int u)
{
    return s->ost + ((size_t)c * (size_t)s->nunits + (size_t)u) * 4;
}

static void clear_unit(eq_state *s, int u)
{
    for (int c = 0; c < s->channels; c++)
        memset(unit_state(s, c, u), 0, 4 * sizeof(mg_sv_state));
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
                memset(unit_state(s, c, u) + un->nsec, 0, (size_t)(nsec - un->nsec) * sizeof(mg_sv_state));
        for (int k = 0; k < nsec; k++)
            mg_sv_design(&un->c[k], kind == 0 ? MG_BQ_HIGHPASS : MG_BQ_LOWPASS, s->fs, f,
                         mg_bq_butter_q(nsec, k), 1.0);
        un->nsec = nsec;
        un->kf = f;
        return;
    }
    if (un->nsec == 1 && un->ktype == type && un->kf == f && un->kg == g && un->kq == q)
        return;
    if (un->nsec != 1 || un->kf != f) /* (nsec 1: kt belongs to kf) */
        un->kt = mg_sv_tan(s->fs, f);
    mg_sv_design_t(&un->c[0], type, un->kt, q, g);
    un->nsec = 1;
    un->ktype = type;
    un->kf = f;
    un->kg = g;
    un->kq = q;
}

/* Run one unit over frames [i0, i0+m) of every channel, in place; with
 * `from`, the coefficients glide from those to the unit's current ones.
 * Scalar: this path (switching on/off, crossfading a type) is the same for
 * a node alone and in a gang. */
static void run_unit(eq_state *s, const mg_proc *p, int u, const mg_pv *on, int i0, int m,
                     const mg_sv_coef *from)
{
    const eq_unit *un = &s->unit[u];
    for (int c = 0; c < s->channels; c++) {
        float *buf = p->out[c] + i0;
        mg_sv_state *st = unit_state(s, c, u);
        if (on->ramp || un->xf > 0)
            memcpy(s->dry, buf, (size_t)m * sizeof(float));
        for (int k = 0; k < un->nsec; k++)
            mg_sv_run(from ? &from[k] : NULL, &un->c[k], &st[k], buf, m);
        if (un->xf > 0) {
            /* type/slope change: the outgoing design fades out linearly */
            memcpy(s->old, s->dry, (size_t)m * sizeof(float));
            mg_sv_state *ost = unit_ostate(s, c, u);
            for (int k = 0; k < un->onsec; k++)
                mg_sv_run(NULL, &un->oc[k], &ost[k], s->old, m);
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
        mg_sv_state *st = unit_state(s, c, u);
        for (int k = 0; k < s->unit[u].nsec; k++)
            mg_sv_guard(&st[k]);
    }
}

#define EQ_MAX_SEC (4 * (EQ_MAX_BANDS + 2))

/* Lanes: eight channels (of one node alone, or of several nodes in a gang)
 * run in the eight floats of one vector (one AVX2 register), each lane with
 * its own coefficients and states. The lanes' samples are first interleaved
 * (frame-major, eight floats a frame) so the loops load and store whole
 * vectors. Every cascade of the node (steady or gliding, alone or ganged)
 * runs through these kernels, so a lane's result does not depend on which
 * lanes run beside it: ganged and alone agree bit for bit. */
typedef float eq_vf __attribute__((vector_size(32)));
typedef int32_t eq_vi __attribute__((vector_size(32)));
#define EQ_LANES 8
#define EQ_NC MG_SV_NC

typedef struct {
    eq_state *s;
    const float *src; /* the input: buf itself, or the node's input, sanitised on the way in */
    float *buf;
    int c;
    const int *list;
    int nl;
} eq_lane;

/* A pass: sections [0, ns) of a cascade over n frames, sample by sample
 * (the sections' recursions overlap in the CPU instead of each running its
 * own latency-bound loop over the block), the states in registers. */
static inline __attribute__((always_inline)) void
pass_v(eq_vf *x, int n, const eq_vf (*c)[EQ_NC], eq_vf *s1i, eq_vf *s2i, const int ns)
{
    eq_vf s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    for (int k = 0; k < ns; k++)
        s1[k] = s1i[k], s2[k] = s2i[k];
    for (int i = 0; i < n; i++) {
        eq_vf v = x[i];
        for (int k = 0; k < ns; k++)
            MG_SV_TICK(v, s1[k], s2[k], c[k][0], c[k][1], c[k][2], c[k][3], c[k][4], c[k][5]);
        x[i] = v;
    }
    for (int k = 0; k < ns; k++)
        s1i[k] = s1[k], s2i[k] = s2[k];
}

/* pass_v as a wavefront: step i runs section k on frame i - k, so the ns
 * sections of one step are independent of each other (section k takes what
 * section k - 1 gave in the step before, held in p[k]) and the CPU overlaps
 * them without a window that spans ns frames of the cascade (pass_v's frame
 * waits on the frame's own chain through every section: perf showed the loop
 * stalled on it). Each section sees the same frames in the same order and
 * runs the same expressions: the result is pass_v's bit for bit. Steps
 * 0..ns-2 fill the pipe and the last ns - 1 drain it; n >= ns. */
static inline __attribute__((always_inline)) void
pass_skew_v(eq_vf *x, int n, const eq_vf (*c)[EQ_NC], eq_vf *s1i, eq_vf *s2i, const int ns)
{
    eq_vf s1[EQ_MAX_SEC], s2[EQ_MAX_SEC], p[EQ_MAX_SEC];
    for (int k = 0; k < ns; k++)
        s1[k] = s1i[k], s2[k] = s2i[k];
#define EQ_SKEW_STEP(K)                                                                           \
    do {                                                                                          \
        eq_vf v_ = p[K];                                                                          \
        MG_SV_TICK(v_, s1[K], s2[K], c[K][0], c[K][1], c[K][2], c[K][3], c[K][4], c[K][5]);      \
        if ((K) == ns - 1)                                                                        \
            x[i - (K)] = v_;                                                                      \
        else                                                                                      \
            p[(K) + 1] = v_;                                                                      \
    } while (0)
    int i = 0;
    for (; i < ns - 1; i++) { /* fill: sections 0..i */
        p[0] = x[i];
#pragma GCC unroll 8
        for (int k = ns - 1; k >= 0; k--)
            if (k <= i)
                EQ_SKEW_STEP(k);
    }
    for (; i < n; i++) { /* every section busy */
        p[0] = x[i];
#pragma GCC unroll 8
        for (int k = ns - 1; k >= 0; k--)
            EQ_SKEW_STEP(k);
    }
    for (; i < n + ns - 1; i++) { /* drain: sections i-n+1..ns-1 */
#pragma GCC unroll 8
        for (int k = ns - 1; k >= 0; k--)
            if (k >= i - n + 1)
                EQ_SKEW_STEP(k);
    }
#undef EQ_SKEW_STEP
    for (int k = 0; k < ns; k++)
        s1i[k] = s1[k], s2i[k] = s2[k];
}

/* The same with the coefficients gliding: section k of frame i runs
 * c0 + (off + i + 1) d (off: the frames of the glide already run, per lane;
 * a steady section has d = 0, and c0 + t 0 is c0 exactly: the steady
 * pass's result). t is a whole number below 2^24, so stepping it by 1 a
 * frame gives (float)(off + i + 1) exactly; with `uniform` (every section's
 * off the same, as when a node's moving units were designed together) one
 * t serves every section of the frame. With `fixm` (EQ_GLIDE_A: m0 and m2
 * hold still in every section and lane of the pass, as they do for bells,
 * notches, band-passes and the filters, whatever moves), c0's m0 and m2
 * are used as they are: the caller has made them c0 + d (d = +-0 there, so
 * that is c0 + t d for any t > 0, bit for bit, fused or not). */
static inline __attribute__((always_inline)) void
pass_glide_v(eq_vf *x, int n, const eq_vf (*c0)[EQ_NC], const eq_vf (*d)[EQ_NC], const eq_vf *off,
             eq_vf *s1i, eq_vf *s2i, const int ns, const int uniform, const int fixm)
{
    eq_vf s1[EQ_MAX_SEC], s2[EQ_MAX_SEC], t[EQ_MAX_SEC];
    const eq_vf zero = {0}, one = zero + 1.0f;
    for (int k = 0; k < ns; k++)
        s1[k] = s1i[k], s2[k] = s2i[k], t[k] = off[uniform ? 0 : k] + one;
    for (int i = 0; i < n; i++) {
        eq_vf v = x[i];
        for (int k = 0; k < ns; k++) {
            const eq_vf tk = t[uniform ? 0 : k];
            eq_vf c[EQ_NC];
            for (int j = 0; j < EQ_NC; j++)
                c[j] = fixm && (j == MG_SV_M0 || j == MG_SV_M2) ? c0[k][j] : c0[k][j] + tk * d[k][j];
            MG_SV_TICK(v, s1[k], s2[k], c[0], c[1], c[2], c[3], c[4], c[5]);
        }
        x[i] = v;
        for (int k = 0; k < (uniform ? 1 : ns); k++)
            t[k] += one;
    }
    for (int k = 0; k < ns; k++)
        s1i[k] = s1[k], s2i[k] = s2[k];
}

/* At most this many sections a pass: their states (2 vectors each) and the
 * frame's value stay in the 16 AVX registers; a longer cascade runs in
 * passes over the block, as even as they can be. */
#define EQ_PASS 5

static inline int pass_len(int left)
{
    const int passes = (left + EQ_PASS - 1) / EQ_PASS;
    return (left + passes - 1) / passes;
}

static inline __attribute__((always_inline)) void cascade_v(eq_vf *x, int n, const eq_vf (*c)[EQ_NC], eq_vf *s1, eq_vf *s2,
                             int ns)
{
    for (int k0 = 0; k0 < ns;) {
        const int m = pass_len(ns - k0);
        switch (m) { /* constant counts unroll: the states live in registers */
#define EQ_CASE(N)                                                                                \
    case N:                                                                                       \
        if (n >= N)                                                                               \
            pass_skew_v(x, n, c + k0, s1 + k0, s2 + k0, N);                                       \
        else                                                                                      \
            pass_v(x, n, c + k0, s1 + k0, s2 + k0, N);                                            \
        break;
        EQ_CASE(1) EQ_CASE(2) EQ_CASE(3) EQ_CASE(4) EQ_CASE(5)
#undef EQ_CASE
        }
        k0 += m;
    }
}

/* 1 when sections [0, ns) have the same off in every lane */
static inline __attribute__((always_inline)) int same_off(const eq_vf *off, int ns)
{
    eq_vi ne = {0};
    for (int k = 1; k < ns; k++)
        ne |= off[k] != off[0];
    int any = 0;
    for (int l = 0; l < EQ_LANES; l++)
        any |= ne[l];
    return !any;
}

/* What a glide moves, per section (the same in all lanes: or of the
 * lanes): which of a section's coefficients have d != 0 (NaN counts as
 * moving). */
enum { EQ_GLIDE_NONE, EQ_GLIDE_A, EQ_GLIDE_ALL };

/* 0: the new paths (a pass's sections that do not move run the steady
 * kernel, m0/m2 that hold still are not recomputed every frame);
 * MIXGRAPH_EQ_GLIDE_PLAIN=1 in the environment: every gliding pass computes
 * every coefficient every frame, as before (the tests compare the two). */
static int eq_glide_plain;
__attribute__((constructor)) static void eq_glide_env(void)
{
    const char *plain = getenv("MIXGRAPH_EQ_GLIDE_PLAIN");
    eq_glide_plain = plain && plain[0] == '1';
}

static inline __attribute__((always_inline)) int glide_class(const eq_vf *d)
{
    const eq_vf zero = {0};
    eq_vi a = (d[MG_SV_A1] != zero) | (d[MG_SV_A2] != zero) | (d[MG_SV_A3] != zero) |
              (d[MG_SV_M1] != zero);
    eq_vi m = (d[MG_SV_M0] != zero) | (d[MG_SV_M2] != zero);
    int any_a = 0, any_m = 0;
    for (int l = 0; l < EQ_LANES; l++)
        any_a |= a[l], any_m |= m[l];
    return any_m ? EQ_GLIDE_ALL : any_a ? EQ_GLIDE_A : EQ_GLIDE_NONE;
}

/* The gliding cascade, in passes as cascade_v's. A pass whose sections
 * all hold still (every d = +-0: steady units in the run of moving ones)
 * runs the steady kernel (pass_v; not pass_skew_v: the glide hash showed
 * its bits differ from pass_v's here) on c0 + d, which is what c0 + t d is
 * for every frame; a pass whose m0 and m2 hold still glides
 * the other four (fixm). Which sections share a pass does not change any
 * section's arithmetic: the output is the plain glide's bit for bit.
 * c0 is changed in place (the held coefficients become c0 + d). */
static inline __attribute__((always_inline)) void
cascade_glide_v(eq_vf *x, int n, eq_vf (*c0)[EQ_NC], const eq_vf (*d)[EQ_NC], const eq_vf *off,
                eq_vf *s1, eq_vf *s2, int ns)
{
    for (int k0 = 0; k0 < ns;) {
        const int m = pass_len(ns - k0);
        int cls = EQ_GLIDE_ALL;
        if (!eq_glide_plain) {
            cls = EQ_GLIDE_NONE;
            for (int k = k0; k < k0 + m; k++) {
                const int ck = glide_class(d[k]);
                cls = ck > cls ? ck : cls;
            }
            if (cls == EQ_GLIDE_NONE) {
                for (int k = k0; k < k0 + m; k++)
                    for (int j = 0; j < EQ_NC; j++)
                        c0[k][j] += d[k][j];
            } else if (cls == EQ_GLIDE_A) {
                for (int k = k0; k < k0 + m; k++)
                    c0[k][MG_SV_M0] += d[k][MG_SV_M0], c0[k][MG_SV_M2] += d[k][MG_SV_M2];
            }
        }
        const eq_vf(*c)[EQ_NC] = (const eq_vf(*)[EQ_NC])c0;
        switch (m) {
#define EQ_CASE(N)                                                                                \
    case N:                                                                                       \
        if (cls == EQ_GLIDE_NONE) {                                                               \
            pass_v(x, n, c + k0, s1 + k0, s2 + k0, N);                                            \
        } else if (same_off(off + k0, N)) {                                                       \
            if (cls == EQ_GLIDE_A)                                                                \
                pass_glide_v(x, n, c + k0, d + k0, off + k0, s1 + k0, s2 + k0, N, 1, 1);          \
            else                                                                                  \
                pass_glide_v(x, n, c + k0, d + k0, off + k0, s1 + k0, s2 + k0, N, 1, 0);          \
        } else {                                                                                  \
            if (cls == EQ_GLIDE_A)                                                                \
                pass_glide_v(x, n, c + k0, d + k0, off + k0, s1 + k0, s2 + k0, N, 0, 1);          \
            else                                                                                  \
                pass_glide_v(x, n, c + k0, d + k0, off + k0, s1 + k0, s2 + k0, N, 0, 0);          \
        }                                                                                         \
        break;
        EQ_CASE(1) EQ_CASE(2) EQ_CASE(3) EQ_CASE(4) EQ_CASE(5)
#undef EQ_CASE
        }
        k0 += m;
    }
}

static inline float sanitise(float v)
{
    v = v > 1e6f ? 1e6f : v < -1e6f ? -1e6f : v;
    return v == v ? v : 0.0f;
}

/* Frames [0, returned) of eight full lanes into x, eight frames at a time:
 * each 8x8 tile (8 frames of the 8 lanes) is transposed in registers
 * (csrc/dsp_transpose.h), then the frames' vectors are sanitised as
 * units_block does (NaN -> 0, then held within +-1e6: the same values as
 * sanitise(), -0.0 and +-inf included); on a lane already sanitised this
 * changes nothing. */
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

/* The lanes' input into x (empty lanes: zeros), sanitised. */
static inline void lanes_load(const eq_lane *ln, int nln, eq_vf *x, int n)
{
    if (nln < EQ_LANES) /* empty lanes: zero coefficients over zeros */
        memset(x, 0, sizeof(eq_vf) * (size_t)n);
    const int tiles = lanes_in(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        const float *src = ln[l].src;
        for (int i = tiles; i < n; i++)
            x[i][l] = sanitise(src[i]);
    }
}

static inline void lanes_store(const eq_lane *ln, int nln, const eq_vf *x, int n)
{
    const int done = lanes_out(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        float *dst = ln[l].buf;
        for (int i = done; i < n; i++)
            dst[i] = x[i][l];
    }
}

/* mg_sv_guard on every lane of ns sections at once: non-finite states are
 * reset, a tail below 1e-30 is flushed to exact zero (the same rule, so the
 * same states, as the scalar guard). The tests are integer compares of the
 * magnitudes' bits (which order like the magnitudes, NaN above infinity),
 * first as one OR over every state: in the usual block nothing is non-finite
 * or tiny, and the states are not touched. */
static inline void guard_v(eq_vf *s1, eq_vf *s2, int ns)
{
    const eq_vi zero = {0}, mag = zero + 0x7fffffff;
    const eq_vi inf = zero + 0x7f800000;  /* bits of +infinity */
    const eq_vi tinyb = zero + 0x0da24260; /* bits of 1e-30f */
    eq_vi bad = zero;
    for (int k = 0; k < ns; k++) {
        const eq_vi ua = (eq_vi)s1[k] & mag, ub = (eq_vi)s2[k] & mag;
        bad |= (ua >= inf) | (ub >= inf) | ((ua < tinyb) & (ub < tinyb));
    }
    int any = 0;
    for (int l = 0; l < EQ_LANES; l++)
        any |= bad[l];
    if (!any)
        return;
    for (int k = 0; k < ns; k++) {
        const eq_vi a = (eq_vi)s1[k], b = (eq_vi)s2[k];
        const eq_vi ua = a & mag, ub = b & mag;
        const eq_vi finite = (ua < inf) & (ub < inf);
        const eq_vi tiny = (ua < tinyb) & (ub < tinyb);
        const eq_vi keep = finite & ~tiny;
        s1[k] = (eq_vf)(a & keep), s2[k] = (eq_vf)(b & keep);
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
    eq_vf c[EQ_GANG_SEC][EQ_NC];
    eq_vf s1[EQ_GANG_SEC], s2[EQ_GANG_SEC];
    int valid, nln, ns;
    const eq_state *ks[EQ_LANES];
    int kc[EQ_LANES];
    unsigned long long kst[EQ_LANES];
    mg_sv_state *sp[EQ_LANES][EQ_GANG_SEC]; /* where each lane's states live */
};

static void *gang_alloc(void)
{
    const size_t size = (sizeof(struct eq_gang) + 63) & ~(size_t)63;
    void *g = aligned_alloc(64, size);
    if (g)
        memset(g, 0, size);
    return g;
}

/* Run up to EQ_LANES lanes whose cascades have ns sections each, with the
 * gang cache of the first lane's node when `cached`. */
MG_HOT static void run_lanes(const eq_lane *ln, int nln, int ns, int n, int cached)
{
    eq_vf lc[EQ_MAX_SEC][EQ_NC], ls1[EQ_MAX_SEC], ls2[EQ_MAX_SEC];
    struct eq_gang *g = cached && ns <= EQ_GANG_SEC ? ln[0].s->gang : NULL;
    eq_vf(*c)[EQ_NC] = g ? g->c : lc;
    eq_vf *s1 = g ? g->s1 : ls1, *s2 = g ? g->s2 : ls2;
    eq_vf x[MG_MAX_BLOCK];
    int hit = g && g->valid && g->nln == nln && g->ns == ns;
    for (int l = 0; hit && l < nln; l++)
        hit = g->ks[l] == ln[l].s && g->kc[l] == ln[l].c && g->kst[l] == ln[l].s->stamp;
    lanes_load(ln, nln, x, n);
    if (!hit) {
        memset(c, 0, sizeof(eq_vf) * EQ_NC * (size_t)ns);
        memset(s1, 0, sizeof(eq_vf) * (size_t)ns), memset(s2, 0, sizeof(eq_vf) * (size_t)ns);
        for (int l = 0; l < nln; l++) {
            if (g)
                restamp(ln[l].s); /* other caches of this node go stale */
            int j = 0;
            for (int u = 0; u < ln[l].nl; u++) {
                const eq_unit *un = &ln[l].s->unit[ln[l].list[u]];
                mg_sv_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
                for (int k = 0; k < un->nsec; k++, j++) {
                    for (int r = 0; r < EQ_NC; r++)
                        c[j][r][l] = un->c[k].v[r];
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
    cascade_v(x, n, (const eq_vf(*)[EQ_NC])c, s1, s2, ns);
    guard_v(s1, s2, ns);
    lanes_store(ln, nln, x, n);
    for (int l = 0; l < nln; l++) {
        if (g) {
            for (int j = 0; j < ns; j++)
                g->sp[l][j]->s1 = s1[j][l], g->sp[l][j]->s2 = s2[j][l];
            continue;
        }
        int j = 0;
        for (int u = 0; u < ln[l].nl; u++) {
            mg_sv_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
            for (int k = 0; k < ln[l].s->unit[ln[l].list[u]].nsec; k++, j++)
                st[k].s1 = s1[j][l], st[k].s2 = s2[j][l];
        }
    }
}

/* run_lanes for lanes whose runs glide (glide_design): each lane's
 * coefficients move per frame from g0 by gd, so a node stays in a gang
 * while its values move. No gang cache: the coefficients change every
 * block. With eight lanes, each section's g0 and gd (12 floats side by side
 * in the unit) come over as two 8x8 transposes of the lanes' rows instead
 * of 96 scalar copies; the states' places are noted on the way in, for the
 * way back. */
MG_HOT static void run_lanes_glide(const eq_lane *ln, int nln, int ns, int n)
{
    eq_vf c0[EQ_MAX_SEC][EQ_NC], d[EQ_MAX_SEC][EQ_NC], off[EQ_MAX_SEC];
    eq_vf s1[EQ_MAX_SEC], s2[EQ_MAX_SEC];
    eq_vf x[MG_MAX_BLOCK];
    const float *gp[EQ_MAX_SEC][EQ_LANES]; /* section j of lane l: its unit's gl[k] */
    mg_sv_state *sp[EQ_MAX_SEC][EQ_LANES];
    lanes_load(ln, nln, x, n);
    if (nln < EQ_LANES) {
        memset(c0, 0, sizeof(eq_vf) * EQ_NC * (size_t)ns);
        memset(d, 0, sizeof(eq_vf) * EQ_NC * (size_t)ns);
        memset(off, 0, sizeof(eq_vf) * (size_t)ns);
        memset(s1, 0, sizeof(eq_vf) * (size_t)ns), memset(s2, 0, sizeof(eq_vf) * (size_t)ns);
    }
    for (int l = 0; l < nln; l++) {
        int j = 0;
        for (int u = 0; u < ln[l].nl; u++) {
            const eq_unit *un = &ln[l].s->unit[ln[l].list[u]];
            mg_sv_state *st = unit_state(ln[l].s, ln[l].c, ln[l].list[u]);
            const float goff = un->goff;
            for (int k = 0; k < un->nsec; k++, j++) {
                gp[j][l] = un->gl[k].g0.v;
                sp[j][l] = &st[k];
                off[j][l] = goff;
                s1[j][l] = st[k].s1, s2[j][l] = st[k].s2;
            }
        }
    }
    if (nln == EQ_LANES) {
        /* rows of 8 floats: g0[0..5] gd[0..1], then gd[2..5] and 4 floats
         * after them (the next section's, or oc[0] after gl[3]: inside the
         * unit, not used) */
        _Static_assert(offsetof(eq_unit, oc) == offsetof(eq_unit, gl) + sizeof(((eq_unit *)0)->gl),
                       "a row read past gl[3] stays in the unit");
        for (int j = 0; j < ns; j++) {
            mg_t8f r[8];
            mg_tr8x8_load(gp[j], 0, r);
            for (int q = 0; q < EQ_NC; q++)
                c0[j][q] = r[q];
            d[j][0] = r[6], d[j][1] = r[7];
            mg_tr8x8_load(gp[j], 8, r);
            for (int q = 2; q < EQ_NC; q++)
                d[j][q] = r[q - 2];
        }
    } else {
        for (int l = 0; l < nln; l++)
            for (int j = 0; j < ns; j++)
                for (int r = 0; r < EQ_NC; r++)
                    c0[j][r][l] = gp[j][l][r], d[j][r][l] = gp[j][l][EQ_NC + r];
    }
    cascade_glide_v(x, n, c0, (const eq_vf(*)[EQ_NC])d, off, s1, s2, ns);
    guard_v(s1, s2, ns);
    lanes_store(ln, nln, x, n);
    for (int l = 0; l < nln; l++)
        for (int j = 0; j < ns; j++)
            sp[j][l]->s1 = s1[j][l], sp[j][l]->s2 = s2[j][l];
}

static inline int list_sections(const eq_state *s, const int *list, int nl)
{
    int ns = 0;
    for (int l = 0; l < nl; l++)
        ns += s->unit[list[l]].nsec;
    return ns;
}

/* A node's own channels, eight lanes at a time, through the units of
 * `list` over frames [i0, i0+m): steady (run_lanes, no gang cache) or on
 * their glides (run_lanes_glide). */
static void run_own(eq_state *s, const mg_proc *p, const int *list, int nl, int i0, int m,
                    int glide)
{
    const int ns = list_sections(s, list, nl);
    if (ns == 0)
        return;
    for (int c0 = 0; c0 < s->channels; c0 += EQ_LANES) {
        eq_lane ln[EQ_LANES];
        const int nln = s->channels - c0 < EQ_LANES ? s->channels - c0 : EQ_LANES;
        for (int l = 0; l < nln; l++) {
            float *buf = p->out[c0 + l] + i0;
            ln[l] = (eq_lane){s, buf, buf, c0 + l, list, nl};
        }
        if (glide)
            run_lanes_glide(ln, nln, ns, m);
        else
            run_lanes(ln, nln, ns, m, 0);
    }
}

/* Run the steady units in `list` (in order) as one cascade. */
static void run_cascade(eq_state *s, const mg_proc *p, const int *list, int nl)
{
    run_own(s, p, list, nl, 0, p->nframes, 0);
}

/* Moving units. A unit whose frequency, gain or Q ramps (and that is not
 * switching on/off or crossfading a type change) runs in one cascade with
 * its steady neighbours: it is designed at the frames of the engine's clock
 * (mg_proc.time) on a grid of EQ_MOVE_CHUNK, from its values at that frame
 * (MG_PARAM_CONTROL parameters: the engine evaluates the ramp's formula
 * there, even when the frame lies in a later call, and writes no per-sample
 * values), and its SVF coefficients glide linearly per sample from the
 * previous design to it (every filter on the way is stable: csrc/dsp_svf.h).
 * A glide, once designed, runs to its grid frame whatever the calls and
 * whether or not the ramps end before it: frame F of it runs
 * g0 + (F - gs + 1) gd, so the output does not depend on where calls split
 * the signal (tests/test_call_split.py). Only the moving units are
 * designed; a band whose frequency stays keeps its tan. Alone and in a
 * gang (process_many) the glides run eight lanes at a time
 * (run_lanes_glide), so ganged and alone agree bit for bit. Once the ramps
 * end, the last design is the settled one. */
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

/* Ask for the cache lines of the states the run's glide will read
 * (run_lanes_glide's gather: every channel's states of the listed units,
 * contiguous from the first listed unit to the last): in a whole-desk fade
 * they were evicted since the node's last block (perf, 400 eq8 fading: a
 * third of run_lanes_glide's time sat on the first state load), and a gang
 * runs its lanes only after the next nodes' bookkeeping, which the misses
 * now overlap. A hint only: nothing computed changes. */
static inline void glide_prefetch(const eq_state *s, const int *list, int nl)
{
    if (nl == 0)
        return;
    const int last = list[nl - 1];
    const size_t span = (size_t)((last - list[0]) * 4 + s->unit[last].nsec) * sizeof(mg_sv_state);
    for (int c = 0; c < s->channels; c++) {
        const char *a = (const char *)(s->st + ((size_t)c * (size_t)s->nunits + (size_t)list[0]) * 4);
        for (size_t b = 0; b < span; b += 64)
            __builtin_prefetch(a + b, 1, 3);
        __builtin_prefetch(a + span - 1, 1, 3);
    }
}

/* Set every unit of `list` for frames i0 .. ie of the call (one grid chunk
 * or its start: ie may lie past the call): a moving unit without a glide
 * that covers frame i0 is designed at the grid frame ie and glides to it
 * from frame i0; steady units get gd = 0. */
__attribute__((flatten)) /* design inlined: a fade designs every moving band every 64 frames */
static void glide_design(eq_state *s, const mg_proc *p, const int *list, int nl, eq_move *mv,
                         int i0, int ie)
{
    const uint64_t f0 = p->time + (uint64_t)i0;
    for (int l = 0; l < nl; l++) {
        eq_unit *un = &s->unit[list[l]];
        eq_move *v = &mv[list[l]];
        if (v->kind < 0) {
            for (int k = 0; k < un->nsec; k++) {
                un->gl[k].g0 = un->c[k];
                memset(&un->gl[k].gd, 0, sizeof un->gl[k].gd);
            }
            un->goff = 0.0f;
            continue;
        }
        if (gliding(un, f0)) { /* designed in an earlier call: it ends at ie too */
            un->goff = (float)(f0 - un->gs);
            continue;
        }
        /* the glide starts from the design before (g0, read where had ==
         * nsec), else from the new one (gd = (c - c) r) */
        const int had = v->had ? un->nsec : 0;
        for (int k = 0; k < had; k++)
            un->gl[k].g0 = un->c[k];
        const int n = p->nframes;
        design(s, list[l], v->kind, v->type, eq_val(v->f, ie, n), v->g ? eq_val(v->g, ie, n) : 1.0f,
               v->q ? eq_val(v->q, ie, n) : 0.7071f);
        v->had = 1;
        un->gs = f0;
        un->glen = ie - i0 + 1;
        un->goff = 0.0f;
        const float r = 1.0f / (float)un->glen;
        const int from = had == un->nsec;
        for (int k = 0; k < un->nsec; k++) {
            if (!from)
                un->gl[k].g0 = un->c[k];
            for (int j = 0; j < EQ_NC; j++)
                un->gl[k].gd.v[j] = (un->c[k].v[j] - un->gl[k].g0.v[j]) * r;
        }
    }
    glide_prefetch(s, list, nl);
}

/* A run of units with moving ones among them, over the whole block: a
 * piece per grid chunk the call touches. */
static void run_moving(eq_state *s, const mg_proc *p, const int *list, int nl, eq_move *mv)
{
    for (int i0 = 0; i0 < p->nframes;) {
        const int ie = grid_end(p, i0);
        const int m = (ie < p->nframes ? ie + 1 : p->nframes) - i0;
        glide_design(s, p, list, nl, mv, i0, ie);
        run_own(s, p, list, nl, i0, m, 1);
        i0 += m;
    }
}

/* Everything of a block but the last run of steady units: the sanitised
 * copy of the input, designs, crossfades and moving units. Returns how many
 * units are left in `steady` (in order) for the caller to run as one
 * cascade: process runs them itself, process_many with other nodes' lanes. */
static void sanitised_copy(eq_state *s, const mg_proc *p)
{
    for (int c = 0; c < s->channels; c++) {
        const float *x = p->in[c];
        float *y = p->out[c];
        for (int i = 0; i < p->nframes; i++)
            y[i] = sanitise(x[i]);
    }
}

/* The block's units: returns how many run last (steady or gliding), and in
 * *list where their indices are (steady[] as filled here, or the node's
 * cached list when nothing changed, which this does not read).
 * With `deferred` non-NULL, a block whose only run is its last one (steady
 * units, the usual block, or moving ones on their glides: a scene fade)
 * skips the sanitised copy and sets *deferred: the caller's gang reads the
 * input and sanitises it on the way in (lanes_in), one pass less. With
 * `glide` non-NULL, a last run with moving units in a block of at most
 * EQ_MOVE_CHUNK frames is designed but not run: it is returned, *glide set,
 * for the caller to run on its glides (run_lanes_glide). */
MG_HOT static int units_block(eq_state *s, const mg_proc *p, int *steady, const int **list,
                              int *deferred, int *glide, int *nsec)
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
        *list = s->cache; /* not read here: line 0 only */
        if (nsec)
            *nsec = s->cache_ns;
        return s->cache_n;
    }
    /* the sanitised copy (non-finite input becomes 0, magnitudes held below
     * 1e6) is made before the first unit runs on the output; a block whose
     * only run is the last one (steady or gliding: the caller's gang) defers
     * it to the gang as above */
    int copied = 0;
#define EQ_COPY() (copied ? (void)0 : (sanitised_copy(s, p), (void)(copied = 1)))
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
                memcpy(unit_ostate(s, c, u), unit_state(s, c, u), 4 * sizeof(mg_sv_state));
                memset(unit_state(s, c, u), 0, 4 * sizeof(mg_sv_state));
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
        EQ_COPY();
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
                mg_sv_coef from[4];
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
                    mg_sv_guard(&unit_ostate(s, c, u)[k]);
        }
    }
    if (nmoving) { /* the last run glides: in the caller's gang when it can */
        alone = 1;
        if (glide && grid_end(p, 0) >= n - 1) { /* the call lies in one grid chunk */
            glide_design(s, p, steady, nsteady, mv, 0, grid_end(p, 0));
            *glide = 1;
        } else {
            EQ_COPY();
            run_moving(s, p, steady, nsteady, mv);
            nsteady = 0;
        }
    }
    if (deferred && nsteady > 0 && !copied)
        *deferred = 1;
    else
        EQ_COPY();
#undef EQ_COPY
    s->cache_ok = !alone;
    s->cache_n = nsteady;
    memcpy(s->cache, steady, sizeof(int) * (size_t)nsteady);
    *list = steady;
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
    const int *list;
    const int nsteady = units_block(s, p, steady, &list, NULL, NULL, NULL);
    restamp(s); /* the states move outside any gang */
    if (nsteady)
        run_cascade(s, p, list, nsteady);
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
        const int *list;
        if (procs[j].pv_same && s->cache_ok && s->cache_n > 0) {
            /* units_block's first branch, without the call: nothing to
             * redesign or switch, the steady list of the last block runs on
             * the input as it comes (deferred) */
            nst[j] = s->cache_n, list = s->cache, ns = s->cache_ns;
            deferred = 1, gl = 0;
        } else {
            nst[j] = units_block(s, &procs[j], steady[j], &list, &deferred, &gl, &ns);
        }
        if (ns == 0)
            continue;
        for (int c = 0; c < s->channels; c++) {
            eq_lane *q = &pend[gl][ns][npend[gl][ns]++];
            q->s = s, q->buf = procs[j].out[c], q->c = c, q->list = list, q->nl = nst[j];
            q->src = deferred ? procs[j].in[c] : q->buf;
            if (npend[gl][ns] == EQ_LANES) {
                if (gl)
                    run_lanes_glide(pend[1][ns], EQ_LANES, ns, n);
                else
                    run_lanes(pend[0][ns], EQ_LANES, ns, n, 1);
                npend[gl][ns] = 0;
            }
        }
    }
    for (int ns = 1; ns <= EQ_MAX_SEC; ns++) { /* guarded there */
        if (npend[0][ns])
            run_lanes(pend[0][ns], npend[0][ns], ns, n, 1);
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
           "(bell, low shelf, high shelf, notch, band-pass; RBJ cookbook responses, run as "
           "trapezoidal state-variable filters in float).",
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
