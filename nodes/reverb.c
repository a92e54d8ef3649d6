/* reverb: a 16-line feedback delay network, stereo in/out.
 *
 * Line lengths: P_i * (0.3 + 1.4 size) rounded to whole samples, P_i distinct
 * primes spread geometrically from 29 ms to 83 ms (mutually prime at size
 * 50 %). Lines 0, 5, 10 and 15 are slowly modulated (triangle, +-0.17 ms,
 * 0.11..0.9 Hz, each its own rate): the modes keep moving, so no fixed comb,
 * no metallic ringing. Fractional reads use a first-order allpass (Thiran)
 * interpolator, which is lossless (a Lagrange or linear one would shorten the
 * high-frequency decay) and exact at whole-sample lengths.
 * Feedback matrix: 16x16 Hadamard / 4 (orthogonal, lossless). Per-line gain
 * g_i = 10^(-3 d_i / (RT60 fs)), so every path loses 60 dB in RT60 seconds.
 * Damping: a one-pole low-pass per line with DC gain g_i and Nyquist gain
 * g_i^(1/a), a = 1 - 0.9 damping: RT60 at Nyquist is a * RT60 (exact at DC and
 * Nyquist; damping 0 is no filter). Input: pre-delay, four Schroeder allpass
 * diffusers per side (dense from the start), then L into the even lines and R
 * into the odd ones (alternating signs); output: L from even lines, R from odd
 * ones, then mid/side width; out = (1 - mix) dry + mix wet.
 * Nothing clicks when parameters move: size changes slew every length sample
 * by sample (the longest by at most 1/20 sample per sample), loop gains and
 * damping poles glide per sample while decay/damping ramp, pre-delay changes
 * glide or crossfade. The diffusers ring at most half as long as the reverb
 * (their gains drop for short decays). Denormals: the engine runs with FTZ/DAZ and every loop
 * value decays geometrically, so the silent tail reaches exact zero. */
#include "mg_node.h"
#include "dsp_delay.h"
#include "dsp_transpose.h"

enum { P_DECAY, P_SIZE, P_PREDELAY, P_DAMPING, P_WIDTH, P_MIX, P_N };

static const mg_param_spec params[] = {
    {"decay", "s", "RT60: time to decay by 60 dB (at low and mid frequencies)", 0.1f, 20.0f, 2.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"size", "%", "room size: line lengths x (0.3 + 1.4 size)", 0.0f, 100.0f, 50.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"predelay", "ms", "delay before the reverberation starts", 0.0f, 250.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"damping", "%", "high-frequency damping: RT60 at Nyquist = (1 - 0.9 damping) RT60", 0.0f, 100.0f, 30.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"width", "%", "stereo width of the reverberation (0 mono)", 0.0f, 100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"mix", "%", "wet share: out = (1-mix) dry + mix wet", 0.0f, 100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 2},
    {"out", MG_PORT_OUT, 2},
};

#define NL 16
#define SUB 16
#define MOD_MS 0.17
#define ND 4

/* input diffusers: Schroeder allpasses (lengths after Dattorro's plate) */
static const double diff_ms[2][ND] = {{4.77, 3.60, 12.73, 9.31}, {5.13, 3.37, 11.87, 8.69}};
static const float diff_g[ND] = {0.75f, 0.75f, 0.625f, 0.625f};

typedef struct {
    double fs;
    int ready, fresh; /* fresh: nothing processed since prepare/reset */
    float *mem;     /* NL lines of `stride` samples, one shared write index */
    unsigned stride, mask, w;
    dl_line pre[2];
    dl_line ap_line[2][ND]; /* input diffusers */
    unsigned ap_len[2][ND];
    dl_tap ptap;
    float base[NL];      /* prime lengths (samples) at scale 1 */
    float mod[NL], dmod[NL], depth;
    float len[NL], len_tgt[NL], len_step[NL]; /* line lengths now / target (integers) */
    int moving;                                /* some length is still slewing */
    int sub_moving; /* the mode of the current sub-block: s->moving as it was at
                     * the sub-block's first sample. Slewing (per-sample read
                     * positions) or steady (per-sub-block ones) is decided once a
                     * sub-block, on the node's clock, so a slew that ends or
                     * starts mid-sub-block does not switch the modulators' stepping
                     * at a call boundary: their phase, and the whole tail after a
                     * size move, would depend on the block size */
    float g[NL], gb[NL], b[NL], y[NL]; /* gain*(1-b), pole, one-pole state */
    /* a coefficient glide: designed at a sub-block's first sample (tgb, tb,
     * tdg: where gb, b and dg arrive at its end), approached by the per-sample
     * steps dgb, dbb, ddg, glide_left samples of it still to run. On the
     * node's clock like the read positions, so a call boundary inside the
     * sub-block changes nothing */
    float tgb[NL], tb[NL], dgb[NL], dbb[NL];
    float tdg[ND], ddg[ND];
    int glide_left;
    float ap[NL];                      /* allpass interpolator state */
    unsigned M[NL];                    /* line read positions of this sub-block */
    float eta[NL];                     /* and their allpass coefficients */
    int sub_pos; /* samples into the sub-block: sub-blocks are SUB samples of the
                  * node's own clock, so a call that ends mid-sub-block leaves the
                  * read positions where they were and the output does not depend
                  * on how the host splits the signal into calls */
    float coef_decay, coef_damp; /* what g/b were computed for */
    float dg[ND];                /* diffuser gains */
    float wet_gain;
    /* process_split's block of intermediates (prepare): the FDN side's
     * Hadamard outputs (NL a frame, before the 1/4 and the diffused input)
     * and wet sums, then, a line apart, the input side's dry and diffused
     * samples; MG_MAX_BLOCK frames each */
    float *split;
} reverb_state;

/* process_split's arrays in reverb_state.split */
#define SPLIT_V(s) ((s)->split)
#define SPLIT_WL(s) ((s)->split + (size_t)MG_MAX_BLOCK * NL)
#define SPLIT_WR(s) (SPLIT_WL(s) + MG_MAX_BLOCK)
#define SPLIT_XL(s) (SPLIT_WR(s) + MG_MAX_BLOCK + 16)
#define SPLIT_XR(s) (SPLIT_XL(s) + MG_MAX_BLOCK)
#define SPLIT_IL(s) (SPLIT_XR(s) + MG_MAX_BLOCK)
#define SPLIT_IR(s) (SPLIT_IL(s) + MG_MAX_BLOCK)
#define SPLIT_FLOATS ((size_t)MG_MAX_BLOCK * (NL + 6) + 16)

static int is_prime(int n)
{
    if (n < 2)
        return 0;
    for (int k = 2; (long)k * k <= n; k++)
        if (n % k == 0)
            return 0;
    return 1;
}

static float size_scale(float size) { return 0.3f + 1.4f * size * 0.01f; }

static void coefs(reverb_state *s, float decay, float damp)
{
    const double a = 1.0 - 0.9 * (double)damp * 0.01;
    for (int i = 0; i < NL; i++) {
        const double d = (double)s->len[i];
        const double g = pow(10.0, -3.0 * d / ((double)decay * s->fs));
        /* Nyquist gain / DC gain; kept >= 0.02 so the pole stays <= 0.96
         * (a pole at 1 would hold its state forever when g underflows) */
        const double r = fmax(pow(g, 1.0 / a - 1.0), 0.02);
        const double b = (1.0 - r) / (1.0 + r);
        s->tb[i] = (float)b;
        s->tgb[i] = (float)(g * (1.0 - b));
        s->g[i] = (float)g;
    }
    /* the diffusers' own ringing must die at least twice as fast as the
     * reverberation, or they would set the decay of short settings */
    for (int k = 0; k < ND; k++) {
        const double m = diff_ms[0][k] * 0.001 * s->fs;
        s->tdg[k] = (float)fmin(diff_g[k], pow(10.0, -3.0 * m / (0.5 * (double)decay * s->fs)));
    }
    s->coef_decay = decay;
    s->coef_damp = damp;
}

/* The glide ends: the coefficients at their targets exactly, no steps. */
static void glide_arrive(reverb_state *s)
{
    memcpy(s->gb, s->tgb, sizeof s->gb);
    memcpy(s->b, s->tb, sizeof s->b);
    memcpy(s->dg, s->tdg, sizeof s->dg);
    memset(s->dgb, 0, sizeof s->dgb);
    memset(s->dbb, 0, sizeof s->dbb);
    memset(s->ddg, 0, sizeof s->ddg);
    s->glide_left = 0;
}

/* After a call's piece of a sub-block: the glide's coefficients where the
 * piece left them, or at their targets when the glide is over. */
static inline void glide_step(reverb_state *s, int len, const float *gb, const float *bb,
                              const float *dg)
{
    s->glide_left -= len;
    if (s->glide_left <= 0) {
        glide_arrive(s);
        return;
    }
    memcpy(s->gb, gb, sizeof s->gb);
    memcpy(s->b, bb, sizeof s->b);
    memcpy(s->dg, dg, sizeof s->dg);
}

static void clear_state(reverb_state *s)
{
    if (s->mem)
        memset(s->mem, 0, sizeof(float) * (size_t)s->stride * NL);
    s->w = 0;
    s->sub_pos = 0;
    s->sub_moving = 0;
    for (int i = 0; i < NL; i++) {
        s->y[i] = 0.0f;
        s->ap[i] = 0.0f;
    }
    dl_clear(&s->pre[0]);
    dl_clear(&s->pre[1]);
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < ND; k++)
            dl_clear(&s->ap_line[c][k]);
}

static void reset(void *st)
{
    reverb_state *s = st;
    clear_state(s);
    memcpy(s->len, s->len_tgt, sizeof s->len);
    s->moving = 0;
    if (s->ready)
        glide_arrive(s);
    s->ptap.cur = s->ptap.nxt = s->ptap.tgt;
    s->ptap.fade = 0;
    s->fresh = 1;
}

static void on_param(void *st, int index, float v)
{
    reverb_state *s = st;
    if (!s->ready)
        return;
    if (index == P_SIZE) {
        for (int k = 0; k < NL; k++)
            s->len_tgt[k] = floorf(s->base[k] * size_scale(v) + 0.5f);
        if (s->fresh)
            memcpy(s->len, s->len_tgt, sizeof s->len);
        else
            s->moving = 1;
    } else if (index == P_PREDELAY) {
        s->ptap.tgt = floor((double)v * 0.001 * s->fs + 0.5);
        if (s->fresh)
            dl_tap_init(&s->ptap, s->ptap.tgt, s->ptap.fade_len, 64.0, 1.0 / 16.0);
    }
}

static void release(void *st)
{
    reverb_state *s = st;
    free(s->mem);
    s->mem = NULL;
    free(s->split);
    s->split = NULL;
    dl_free(&s->pre[0]);
    dl_free(&s->pre[1]);
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < ND; k++)
            dl_free(&s->ap_line[c][k]);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    reverb_state *s = st;
    s->fs = ctx->sample_rate;
    s->depth = (float)(MOD_MS * 0.001 * s->fs);
    int last = 0;
    for (int i = 0; i < NL; i++) {
        const double ms = 29.0 * pow(83.0 / 29.0, i / (double)(NL - 1));
        int n = (int)(ms * 0.001 * s->fs);
        if (n <= last)
            n = last + 1;
        while (!is_prime(n))
            n++;
        last = n;
        s->base[i] = (float)n;
        /* triangle rates 0.11 .. 0.9 Hz, staggered phases */
        const double hz = 0.11 + 0.79 * ((i * 7) % NL) / (double)(NL - 1);
        s->dmod[i] = (float)(4.0 * s->depth * hz / s->fs) * ((i & 1) ? -1.0f : 1.0f);
        s->mod[i] = s->depth * (float)(((i * 5) % NL) / (double)NL * 2.0 - 1.0);
        if (i % 4 != i / 4) { /* only lines 0, 5, 10, 15 are modulated */
            s->dmod[i] = 0.0f;
            s->mod[i] = 0.0f;
        }
    }
    const size_t need = (size_t)(s->base[NL - 1] * size_scale(100.0f) + 2.0f * s->depth + 8.0f);
    unsigned pow2 = 8;
    while (pow2 < need)
        pow2 <<= 1;
    s->mask = pow2 - 1;
    /* lines one power of two apart would put the 16 writes of every sample in
     * the same L1 cache set (4K aliasing); 80 extra floats spread them */
    s->stride = pow2 + 80;
    s->mem = mg_zalloc((size_t)s->stride * NL, sizeof(float));
    if (!s->mem)
        return 1;
    s->split = mg_zalloc(SPLIT_FLOATS, sizeof(float));
    if (!s->split)
        return 1;
    for (int c = 0; c < 2; c++)
        if (dl_alloc(&s->pre[c], (size_t)(0.25 * s->fs) + 8) != 0)
            return 1;
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < ND; k++) {
            s->ap_len[c][k] = (unsigned)(diff_ms[c][k] * 0.001 * s->fs + 0.5);
            if (dl_alloc(&s->ap_line[c][k], s->ap_len[c][k] + 2) != 0)
                return 1;
        }
    dl_tap_init(&s->ptap, 0.0, (int)(0.020 * s->fs), 64.0, 1.0 / 16.0);
    for (int k = 0; k < NL; k++) {
        s->len[k] = s->len_tgt[k] = floorf(s->base[k] * size_scale(params[P_SIZE].def) + 0.5f);
        /* the longest line moves by at most 1/20 sample per sample, the others
         * in proportion, so all arrive together */
        s->len_step[k] = 0.05f * s->base[k] / s->base[NL - 1];
    }
    /* the longest line moves by at most 1/20 sample per sample */
    s->wet_gain = 1.0f / sqrtf(NL / 2);
    s->ready = 1;
    s->fresh = 1;
    coefs(s, params[P_DECAY].def, params[P_DAMPING].def);
    glide_arrive(s);
    return 0;
}

/* in-place 16-point Walsh-Hadamard transform, scaled by 1/4 (orthogonal) */
static inline void wht_stage(float *v, int h)
{
    for (int i = 0; i < NL; i += 2 * h)
        for (int j = i; j < i + h; j++) {
            const float a = v[j], b = v[j + h];
            v[j] = a + b;
            v[j + h] = a - b;
        }
}

static inline void hadamard16(float *v)
{
    /* constant strides per stage, so the compiler unrolls every loop */
    wht_stage(v, 8);
    wht_stage(v, 4);
    wht_stage(v, 2);
    wht_stage(v, 1);
    for (int i = 0; i < NL; i++)
        v[i] *= 0.25f;
}

/* advance the modulation by adv samples; integer delays M and the allpass
 * interpolation coefficients of every line */
/* One sample into the pre-delay and through the input diffusers, for both paths of
 * process (the sub-block fast path and the general one): the scrubbed dry input
 * (xl, xr) and the diffused pair (il, ir) that feeds the FDN. The pre-delay is
 * written first (delay 0 is the current sample); the diffusers' gains glide by ddg. */
static inline void front(reverb_state *s, float inl, float inr, float *dg, const float *ddg,
                         float *xl_out, float *xr_out, float *il_out, float *ir_out)
{
    const float xl = dl_sane(inl), xr = dl_sane(inr);
    dl_write(&s->pre[0], xl);
    dl_write(&s->pre[1], xr);
    const float a = dl_tap_step(&s->ptap);
    float il = dl_read_lin(&s->pre[0], (float)s->ptap.cur + 1.0f);
    float ir = dl_read_lin(&s->pre[1], (float)s->ptap.cur + 1.0f);
    if (a > 0.0f) {
        il += a * (dl_read_lin(&s->pre[0], (float)s->ptap.nxt + 1.0f) - il);
        ir += a * (dl_read_lin(&s->pre[1], (float)s->ptap.nxt + 1.0f) - ir);
    }
    for (int k = 0; k < ND; k++) {
        dl_line *la = &s->ap_line[0][k], *ra = &s->ap_line[1][k];
        const float g = dg[k] += ddg[k];
        const float dla = dl_tap_int(la, s->ap_len[0][k]);
        const float dra = dl_tap_int(ra, s->ap_len[1][k]);
        const float wla = il + g * dla, wra = ir + g * dra;
        dl_write(la, wla);
        dl_write(ra, wra);
        il = dla - g * wla;
        ir = dra - g * wra;
    }
    *xl_out = xl, *xr_out = xr, *il_out = il, *ir_out = ir;
}

/* m samples from x into line l (advancing its write index); a whole
 * sub-block that does not wrap as one fixed-size copy (inlined: a copy of a
 * variable size would be a library call) */
static inline void ring_write(dl_line *l, const float *x, int m)
{
    const unsigned w = l->w;
    if (m == SUB && w + SUB <= l->mask + 1u)
        memcpy(l->buf + w, x, sizeof(float) * SUB);
    else
        for (int i = 0; i < m; i++)
            l->buf[(w + (unsigned)i) & l->mask] = x[i];
    l->w = (w + (unsigned)m) & l->mask;
}

/* y[i] = the sample written `back` writes before the write index, then the
 * next m - 1 */
static inline void ring_read(const dl_line *l, unsigned back, float *y, int m)
{
    const unsigned j = (l->w - back) & l->mask;
    if (m == SUB && j + SUB <= l->mask + 1u) {
        memcpy(y, l->buf + j, sizeof(float) * SUB);
        return;
    }
    for (int i = 0; i < m; i++)
        y[i] = l->buf[(j + (unsigned)i) & l->mask];
}

/* front() for a whole sub-block of m samples while the pre-delay tap is at
 * rest: the pre-delay sample by sample; each diffuser stage over the
 * sub-block at once (its delay is longer than a sub-block, so the stage's
 * reads all precede its writes). Every sample gets front()'s expressions on
 * the same values, so the same results. Returns 0 (nothing done) when the
 * tap moves or a diffuser is not longer than m. Inlined into process, so
 * that its multiply-adds fuse as front()'s do there. */
static inline __attribute__((always_inline)) int front_block(reverb_state *s, const float *inl, const float *inr, int m, float *dg,
                       const float *ddg, float *xl, float *xr, float *il, float *ir)
{
    const dl_tap *tp = &s->ptap;
    if (tp->fade > 0 || tp->tgt != tp->cur)
        return 0; /* dl_tap_step would move it */
    for (int k = 0; k < ND; k++)
        if (s->ap_len[0][k] <= (unsigned)m || s->ap_len[1][k] <= (unsigned)m)
            return 0;
    /* the pre-delay sample by sample, as front() does (scalar stores and
     * the loads that follow them: a vector read of what was just written,
     * at another offset, waits until the stores have reached the cache) */
    const float d = (float)tp->cur + 1.0f;
    for (int i = 0; i < m; i++) {
        const float x0 = dl_sane(inl[i]), x1 = dl_sane(inr[i]);
        xl[i] = x0, xr[i] = x1;
        dl_write(&s->pre[0], x0);
        dl_write(&s->pre[1], x1);
        il[i] = dl_read_lin(&s->pre[0], d);
        ir[i] = dl_read_lin(&s->pre[1], d);
    }
    float a[2][SUB];
    for (int k = 0; k < ND; k++) {
        float g[SUB], wl[SUB], wr[SUB];
        float gk = dg[k];
        for (int i = 0; i < m; i++)
            g[i] = gk += ddg[k];
        dg[k] = gk;
        ring_read(&s->ap_line[0][k], s->ap_len[0][k], a[0], m);
        ring_read(&s->ap_line[1][k], s->ap_len[1][k], a[1], m);
        for (int i = 0; i < m; i++) {
            wl[i] = il[i] + g[i] * a[0][i];
            wr[i] = ir[i] + g[i] * a[1][i];
            il[i] = a[0][i] - g[i] * wl[i];
            ir[i] = a[1][i] - g[i] * wr[i];
        }
        ring_write(&s->ap_line[0][k], wl, m);
        ring_write(&s->ap_line[1][k], wr, m);
    }
    return 1;
}

static inline void positions(reverb_state *s, int adv, unsigned *M, float *eta)
{
    for (int k = 0; k < NL; k++) {
        float m = s->mod[k] + s->dmod[k] * (float)adv;
        if (m > s->depth || m < -s->depth) {
            s->dmod[k] = -s->dmod[k];
            m = s->mod[k] + s->dmod[k] * (float)adv;
        }
        s->mod[k] = m;
        const float d = s->len[k] + m;
        const float mi = floorf(d - 0.5f), delta = d - mi; /* delta in [0.5, 1.5) */
        M[k] = (unsigned)mi;
        eta[k] = (1.0f - delta) / (1.0f + delta); /* 0 at integer lengths: exact */
    }
}

/* The FDN of one sub-block with the 16 lines in the 16 lanes of a vector
 * (one AVX-512 register in the x86-64-v4 clone), sample by sample: every
 * line's read positions stay whole sub-block ahead of the writes (lines are
 * longer than SUB samples: see process), so all reads of the sub-block are
 * gathered first, time-major. Lane k computes line k's expressions of the
 * scalar loop in process, in the same order (the Hadamard butterflies as
 * a + b and b' - a' per pair, the output sums in the scalar order), so the
 * result is the scalar loop's, bit for bit. il/ir: the diffused inputs;
 * wl/wr: the wet outputs (before the wet gain). */
typedef float rv_f __attribute__((vector_size(64)));
typedef int32_t rv_i __attribute__((vector_size(64)));

/* One butterfly stage: each lane with its partner (lane ^ h, by perm),
 * a + b in the lower lane of a pair, a - b in the upper one. A macro, so that
 * no 64-byte vector crosses a function boundary (its ABI differs with and
 * without AVX-512). */
#define RV_STAGE(v, perm, lower)                                                                  \
    do {                                                                                          \
        const rv_f o_ = __builtin_shuffle(v, perm);                                               \
        const rv_f sum_ = v + o_, dif_ = o_ - v;                                                  \
        v = (rv_f)(((rv_i)sum_ & (lower)) | ((rv_i)dif_ & ~(lower)));                             \
    } while (0)

/* Halves of eight lanes (one AVX register): CPUs without AVX-512 run the
 * FDN on these (rv_wide 0). In sixteen-lane vectors the v3 (AVX2) clone got
 * every shuffle of the butterflies and output sums lowered to lane-by-lane
 * moves through the stack. Each lane's expressions are the wide loop's: the
 * same bits. MIXGRAPH_RV_NARROW=1 in the environment takes this path on any
 * CPU. */
typedef float rv_h __attribute__((vector_size(32)));
typedef int32_t rv_hi __attribute__((vector_size(32)));
#define RV_SPLIT(lo, hi, v)                                                                       \
    (memcpy(&(lo), (const float *)&(v), sizeof(lo)), memcpy(&(hi), (const float *)&(v) + 8, sizeof(hi)))
#define RV_JOIN(v, lo, hi)                                                                        \
    (memcpy((float *)&(v), &(lo), sizeof(lo)), memcpy((float *)&(v) + 8, &(hi), sizeof(hi)))
#define RV_HSTAGE(v, perm, lower)                                                                 \
    do {                                                                                          \
        const rv_h o_ = __builtin_shuffle(v, perm);                                               \
        const rv_h sum_ = v + o_, dif_ = o_ - v;                                                  \
        v = (rv_h)(((rv_hi)sum_ & (lower)) | ((rv_hi)dif_ & ~(lower)));                           \
    } while (0)

static int rv_wide, rv_nosplit;
__attribute__((constructor)) static void rv_cpu(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    rv_wide = __builtin_cpu_supports("avx512f");
#endif
    const char *narrow = getenv("MIXGRAPH_RV_NARROW");
    if (narrow && narrow[0] == '1')
        rv_wide = 0;
    const char *whole = getenv("MIXGRAPH_RV_NOSPLIT"); /* process_split off (tests) */
    rv_nosplit = whole && whole[0] == '1';
}

MG_HOT static void fdn_block(reverb_state *s, int len, const unsigned *M, const float *eta,
                             float *gb, float *bb, const float *dgb, const float *dbb, int glide,
                             float *yk, float *ap, const float *il, const float *ir, float *wl,
                             float *wr)
{
    rv_f x[SUB + 1]; /* x[t][k]: line k at (w - M[k] - 1 + t) */
    float *restrict mem = s->mem;
    const size_t stride = s->stride;
    const unsigned w0 = s->w, mask = s->mask;
    /* a full sub-block: the lines' reads that do not wrap around the ring,
     * 8x8 tiles at a time through register transposes */
    int whole = 0; /* bit k: line k's first SUB reads went through a tile */
    if (len == SUB) {
        const float *row[NL];
        for (int k = 0; k < NL; k++) {
            const unsigned j0 = (w0 - M[k] - 1u) & mask;
            row[k] = mem + (size_t)k * stride + j0;
            whole |= (j0 + SUB <= mask) << k; /* the extra read at SUB too */
        }
        for (int kb = 0; kb < NL; kb += 8) {
            if (((whole >> kb) & 0xff) != 0xff) {
                whole &= ~(0xff << kb);
                continue;
            }
            for (int tb = 0; tb < SUB; tb += 8) {
                const float *const in[8] = {row[kb] + tb,     row[kb + 1] + tb, row[kb + 2] + tb,
                                            row[kb + 3] + tb, row[kb + 4] + tb, row[kb + 5] + tb,
                                            row[kb + 6] + tb, row[kb + 7] + tb};
                float *const o[8] = {&x[tb][kb],     &x[tb + 1][kb], &x[tb + 2][kb],
                                     &x[tb + 3][kb], &x[tb + 4][kb], &x[tb + 5][kb],
                                     &x[tb + 6][kb], &x[tb + 7][kb]};
                mg_tr8x8(in, o);
            }
            for (int k = kb; k < kb + 8; k++)
                x[SUB][k] = row[k][SUB];
        }
    }
    for (int k = 0; k < NL; k++) {
        if ((whole >> k) & 1)
            continue;
        const float *buf = mem + (size_t)k * stride;
        const unsigned j0 = w0 - M[k] - 1u;
        for (int t = 0; t <= len; t++)
            x[t][k] = buf[(j0 + (unsigned)t) & mask];
    }
    rv_f ve, vg, vb, vdg, vdb, vy, va;
    memcpy(&ve, eta, sizeof ve), memcpy(&vg, gb, sizeof vg), memcpy(&vb, bb, sizeof vb);
    memcpy(&vdg, dgb, sizeof vdg), memcpy(&vdb, dbb, sizeof vdb);
    memcpy(&vy, yk, sizeof vy), memcpy(&va, ap, sizeof va);
    const rv_i p8 = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
    const rv_i p4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
    const rv_i p2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
    const rv_i p1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
    const rv_i l8 = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_i l4 = {-1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0};
    const rv_i l2 = {-1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0};
    const rv_i l1 = {-1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0};
    /* lanes 0 and 1 (the rest unused) from lanes 2 and 3, 4 and 5, ... */
    const rv_i q2 = {2, 3, 0, 0, 6, 7, 0, 0, 10, 11, 0, 0, 14, 15, 0, 0};
    const rv_i q4 = {4, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_i q8 = {8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_i q12 = {12, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_f zero = {0.0f};
    rv_f out[SUB];
    if (rv_wide)
        for (int i = 0; i < len; i++) {
            if (glide) {
                vg += vdg;
                vb += vdb;
            }
            /* first-order allpass (Thiran) interpolation, then the damping pole */
            const rv_f r = ve * (x[i + 1] - va) + x[i];
            va = r;
            const rv_f y = vg * r + vb * vy;
            vy = y;
            /* the output sums of the scalar loop, a += y[k] - y[k + 2] and
             * b += y[k + 1] - y[k + 3] for k = 0, 4, 8, 12 in that order, in
             * lanes 0 and 1 */
            const rv_f d = y - __builtin_shuffle(y, q2);
            rv_f ab = zero + d;
            ab += __builtin_shuffle(d, q4);
            ab += __builtin_shuffle(d, q8);
            ab += __builtin_shuffle(d, q12);
            wl[i] = ab[0], wr[i] = ab[1];
            rv_f v = y;
            RV_STAGE(v, p8, l8);
            RV_STAGE(v, p4, l4);
            RV_STAGE(v, p2, l2);
            RV_STAGE(v, p1, l1);
            v *= 0.25f;
            const float pl = il[i], pr = ir[i];
            const rv_f in = {pl, pr, -pl, -pr, pl, pr, -pl, -pr, pl, pr, -pl, -pr, pl, pr, -pl, -pr};
            out[i] = v + in;
        }
    else {
        /* the same lanes as two halves of eight (lines 0-7, 8-15) */
        rv_h e0, e1, g0, g1, b0, b1, dg0, dg1, db0, db1, y0, y1, a0, a1;
        RV_SPLIT(e0, e1, ve), RV_SPLIT(g0, g1, vg), RV_SPLIT(b0, b1, vb);
        RV_SPLIT(dg0, dg1, vdg), RV_SPLIT(db0, db1, vdb), RV_SPLIT(y0, y1, vy);
        RV_SPLIT(a0, a1, va);
        const rv_hi h4 = {4, 5, 6, 7, 0, 1, 2, 3}, h2 = {2, 3, 0, 1, 6, 7, 4, 5};
        const rv_hi h1 = {1, 0, 3, 2, 5, 4, 7, 6};
        const rv_hi k4 = {-1, -1, -1, -1, 0, 0, 0, 0}, k2 = {-1, -1, 0, 0, -1, -1, 0, 0};
        const rv_hi k1 = {-1, 0, -1, 0, -1, 0, -1, 0};
        const rv_hi r2 = {2, 3, 0, 0, 6, 7, 0, 0};
        for (int i = 0; i < len; i++) {
            if (glide) {
                g0 += dg0, g1 += dg1;
                b0 += db0, b1 += db1;
            }
            rv_h xa0, xa1, xb0, xb1;
            RV_SPLIT(xa0, xa1, x[i]), RV_SPLIT(xb0, xb1, x[i + 1]);
            const rv_h r0 = e0 * (xb0 - a0) + xa0, r1 = e1 * (xb1 - a1) + xa1;
            a0 = r0, a1 = r1;
            const rv_h q0 = g0 * r0 + b0 * y0, q1 = g1 * r1 + b1 * y1;
            y0 = q0, y1 = q1;
            /* the output sums, in the order of the wide loop: lanes 0 and 1
             * of d, then 4 and 5, 8 and 9, 12 and 13 */
            const rv_h d0 = q0 - __builtin_shuffle(q0, r2), d1 = q1 - __builtin_shuffle(q1, r2);
            float ab0 = 0.0f + d0[0], ab1 = 0.0f + d0[1];
            ab0 += d0[4], ab1 += d0[5];
            ab0 += d1[0], ab1 += d1[1];
            ab0 += d1[4], ab1 += d1[5];
            wl[i] = ab0, wr[i] = ab1;
            /* stage 8: lane k and k + 8 are the halves' lane k */
            rv_h v0 = q0 + q1, v1 = q0 - q1;
            RV_HSTAGE(v0, h4, k4);
            RV_HSTAGE(v1, h4, k4);
            RV_HSTAGE(v0, h2, k2);
            RV_HSTAGE(v1, h2, k2);
            RV_HSTAGE(v0, h1, k1);
            RV_HSTAGE(v1, h1, k1);
            v0 *= 0.25f, v1 *= 0.25f;
            const float pl = il[i], pr = ir[i];
            const rv_h in = {pl, pr, -pl, -pr, pl, pr, -pl, -pr};
            v0 += in, v1 += in;
            memcpy(&out[i], &v0, sizeof v0);
            memcpy((float *)&out[i] + 8, &v1, sizeof v1);
        }
        RV_JOIN(vg, g0, g1), RV_JOIN(vb, b0, b1), RV_JOIN(vy, y0, y1), RV_JOIN(va, a0, a1);
    }
    if (len == SUB && (w0 & mask) + SUB <= mask + 1) { /* the writes do not wrap */
        for (int kb = 0; kb < NL; kb += 8)
            for (int tb = 0; tb < SUB; tb += 8) {
                const float *const in[8] = {&out[tb][kb],     &out[tb + 1][kb], &out[tb + 2][kb],
                                            &out[tb + 3][kb], &out[tb + 4][kb], &out[tb + 5][kb],
                                            &out[tb + 6][kb], &out[tb + 7][kb]};
                float *const b = mem + (size_t)kb * stride + (w0 & mask) + tb;
                float *const o[8] = {b,              b + stride,     b + 2 * stride,
                                     b + 3 * stride, b + 4 * stride, b + 5 * stride,
                                     b + 6 * stride, b + 7 * stride};
                mg_tr8x8(in, o);
            }
    } else {
        for (int k = 0; k < NL; k++) {
            float *buf = mem + (size_t)k * stride;
            for (int i = 0; i < len; i++)
                buf[(w0 + (unsigned)i) & mask] = out[i][k];
        }
    }
    s->w = (w0 + (unsigned)len) & mask;
    memcpy(gb, &vg, sizeof vg), memcpy(bb, &vb, sizeof vb);
    memcpy(yk, &vy, sizeof vy), memcpy(ap, &va, sizeof va);
}

/* fdn_block in two halves, for process_split: fdn_read does its reads,
 * interpolators, damping, output sums and Hadamard for a sub-block whose
 * first read is at write index w0 (every read of the block precedes its
 * writes), with the gains steady (no glide), and leaves each frame's
 * Hadamard output in v (NL floats a frame, before the 1/4); fdn_write then
 * adds the diffused inputs (v / 4 + in, fused as fdn_block fuses it) and
 * writes the lines. Each lane's expressions are fdn_block's: the same bits. */
MG_HOT static void fdn_read(const reverb_state *s, unsigned w0, int len, const unsigned *M,
                            const float *eta, const float *gb, const float *bb, float *yk,
                            float *ap, float *v_out, float *wl, float *wr)
{
    rv_f x[SUB + 1]; /* x[t][k]: line k at (w0 - M[k] - 1 + t) */
    const float *restrict mem = s->mem;
    const size_t stride = s->stride;
    const unsigned mask = s->mask;
    int whole = 0;
    if (len == SUB) {
        const float *row[NL];
        for (int k = 0; k < NL; k++) {
            const unsigned j0 = (w0 - M[k] - 1u) & mask;
            row[k] = mem + (size_t)k * stride + j0;
            whole |= (j0 + SUB <= mask) << k;
        }
        for (int kb = 0; kb < NL; kb += 8) {
            if (((whole >> kb) & 0xff) != 0xff) {
                whole &= ~(0xff << kb);
                continue;
            }
            for (int tb = 0; tb < SUB; tb += 8) {
                const float *const in[8] = {row[kb] + tb,     row[kb + 1] + tb, row[kb + 2] + tb,
                                            row[kb + 3] + tb, row[kb + 4] + tb, row[kb + 5] + tb,
                                            row[kb + 6] + tb, row[kb + 7] + tb};
                float *const o[8] = {&x[tb][kb],     &x[tb + 1][kb], &x[tb + 2][kb],
                                     &x[tb + 3][kb], &x[tb + 4][kb], &x[tb + 5][kb],
                                     &x[tb + 6][kb], &x[tb + 7][kb]};
                mg_tr8x8(in, o);
            }
            for (int k = kb; k < kb + 8; k++)
                x[SUB][k] = row[k][SUB];
        }
    }
    for (int k = 0; k < NL; k++) {
        if ((whole >> k) & 1)
            continue;
        const float *buf = mem + (size_t)k * stride;
        const unsigned j0 = w0 - M[k] - 1u;
        for (int t = 0; t <= len; t++)
            x[t][k] = buf[(j0 + (unsigned)t) & mask];
    }
    rv_f ve, vg, vb, vy, va;
    memcpy(&ve, eta, sizeof ve), memcpy(&vg, gb, sizeof vg), memcpy(&vb, bb, sizeof vb);
    memcpy(&vy, yk, sizeof vy), memcpy(&va, ap, sizeof va);
    const rv_i p8 = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
    const rv_i p4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
    const rv_i p2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
    const rv_i p1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
    const rv_i l8 = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_i l4 = {-1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0};
    const rv_i l2 = {-1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0};
    const rv_i l1 = {-1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0};
    const rv_i q2 = {2, 3, 0, 0, 6, 7, 0, 0, 10, 11, 0, 0, 14, 15, 0, 0};
    const rv_i q4 = {4, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_i q8 = {8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_i q12 = {12, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const rv_f zero = {0.0f};
    if (rv_wide)
        for (int i = 0; i < len; i++) {
            const rv_f r = ve * (x[i + 1] - va) + x[i];
            va = r;
            const rv_f y = vg * r + vb * vy;
            vy = y;
            const rv_f d = y - __builtin_shuffle(y, q2);
            rv_f ab = zero + d;
            ab += __builtin_shuffle(d, q4);
            ab += __builtin_shuffle(d, q8);
            ab += __builtin_shuffle(d, q12);
            wl[i] = ab[0], wr[i] = ab[1];
            rv_f v = y;
            RV_STAGE(v, p8, l8);
            RV_STAGE(v, p4, l4);
            RV_STAGE(v, p2, l2);
            RV_STAGE(v, p1, l1);
            memcpy(v_out + (size_t)i * NL, &v, sizeof v);
        }
    else {
        rv_h e0, e1, g0, g1, b0, b1, y0, y1, a0, a1;
        RV_SPLIT(e0, e1, ve), RV_SPLIT(g0, g1, vg), RV_SPLIT(b0, b1, vb);
        RV_SPLIT(y0, y1, vy), RV_SPLIT(a0, a1, va);
        const rv_hi h4 = {4, 5, 6, 7, 0, 1, 2, 3}, h2 = {2, 3, 0, 1, 6, 7, 4, 5};
        const rv_hi h1 = {1, 0, 3, 2, 5, 4, 7, 6};
        const rv_hi k4 = {-1, -1, -1, -1, 0, 0, 0, 0}, k2 = {-1, -1, 0, 0, -1, -1, 0, 0};
        const rv_hi k1 = {-1, 0, -1, 0, -1, 0, -1, 0};
        const rv_hi r2 = {2, 3, 0, 0, 6, 7, 0, 0};
        for (int i = 0; i < len; i++) {
            rv_h xa0, xa1, xb0, xb1;
            RV_SPLIT(xa0, xa1, x[i]), RV_SPLIT(xb0, xb1, x[i + 1]);
            const rv_h r0 = e0 * (xb0 - a0) + xa0, r1 = e1 * (xb1 - a1) + xa1;
            a0 = r0, a1 = r1;
            const rv_h q0 = g0 * r0 + b0 * y0, q1 = g1 * r1 + b1 * y1;
            y0 = q0, y1 = q1;
            const rv_h d0 = q0 - __builtin_shuffle(q0, r2), d1 = q1 - __builtin_shuffle(q1, r2);
            float ab0 = 0.0f + d0[0], ab1 = 0.0f + d0[1];
            ab0 += d0[4], ab1 += d0[5];
            ab0 += d1[0], ab1 += d1[1];
            ab0 += d1[4], ab1 += d1[5];
            wl[i] = ab0, wr[i] = ab1;
            rv_h v0 = q0 + q1, v1 = q0 - q1;
            RV_HSTAGE(v0, h4, k4);
            RV_HSTAGE(v1, h4, k4);
            RV_HSTAGE(v0, h2, k2);
            RV_HSTAGE(v1, h2, k2);
            RV_HSTAGE(v0, h1, k1);
            RV_HSTAGE(v1, h1, k1);
            memcpy(v_out + (size_t)i * NL, &v0, sizeof v0);
            memcpy(v_out + (size_t)i * NL + 8, &v1, sizeof v1);
        }
        RV_JOIN(vy, y0, y1), RV_JOIN(va, a0, a1);
    }
    memcpy(yk, &vy, sizeof vy), memcpy(ap, &va, sizeof va);
}

MG_HOT static void fdn_write(reverb_state *s, int len, const float *v_in, const float *il,
                             const float *ir)
{
    float *restrict mem = s->mem;
    const size_t stride = s->stride;
    const unsigned w0 = s->w, mask = s->mask;
    rv_f out[SUB];
    if (rv_wide)
        for (int i = 0; i < len; i++) {
            rv_f v;
            memcpy(&v, v_in + (size_t)i * NL, sizeof v);
            v *= 0.25f;
            const float pl = il[i], pr = ir[i];
            const rv_f in = {pl, pr, -pl, -pr, pl, pr, -pl, -pr, pl, pr, -pl, -pr, pl, pr, -pl, -pr};
            out[i] = v + in;
        }
    else
        for (int i = 0; i < len; i++) {
            rv_h v0, v1;
            memcpy(&v0, v_in + (size_t)i * NL, sizeof v0);
            memcpy(&v1, v_in + (size_t)i * NL + 8, sizeof v1);
            v0 *= 0.25f, v1 *= 0.25f;
            const float pl = il[i], pr = ir[i];
            const rv_h in = {pl, pr, -pl, -pr, pl, pr, -pl, -pr};
            v0 += in, v1 += in;
            memcpy(&out[i], &v0, sizeof v0);
            memcpy((float *)&out[i] + 8, &v1, sizeof v1);
        }
    if (len == SUB && (w0 & mask) + SUB <= mask + 1) {
        for (int kb = 0; kb < NL; kb += 8)
            for (int tb = 0; tb < SUB; tb += 8) {
                const float *const in[8] = {&out[tb][kb],     &out[tb + 1][kb], &out[tb + 2][kb],
                                            &out[tb + 3][kb], &out[tb + 4][kb], &out[tb + 5][kb],
                                            &out[tb + 6][kb], &out[tb + 7][kb]};
                float *const b = mem + (size_t)kb * stride + (w0 & mask) + tb;
                float *const o[8] = {b,              b + stride,     b + 2 * stride,
                                     b + 3 * stride, b + 4 * stride, b + 5 * stride,
                                     b + 6 * stride, b + 7 * stride};
                mg_tr8x8(in, o);
            }
    } else {
        for (int k = 0; k < NL; k++) {
            float *buf = mem + (size_t)k * stride;
            for (int i = 0; i < len; i++)
                buf[(w0 + (unsigned)i) & mask] = out[i][k];
        }
    }
    s->w = (w0 + (unsigned)len) & mask;
}

/* Fetch the cache lines of a ring's next `count` samples from index j0 (a
 * hint only: nothing is read or written). The lines' reads are their writes
 * of 30-100 ms ago: by the reverb's turn in a mix the rest of the block has
 * pushed them out of the near caches, and the sub-blocks' row loads waited
 * on them (perf: mg_tr8x8's loads, ~2.5% of mix64). */
static inline void rv_prefetch(const float *buf, unsigned j0, unsigned mask, int count, int write)
{
    for (int i = 0; i < count + 16; i += 16) {
        const float *a = buf + ((j0 + (unsigned)i) & mask);
        if (write)
            __builtin_prefetch(a, 1);
        else
            __builtin_prefetch(a, 0);
    }
}

/* The rings this block reads and writes: the FDN lines at their read
 * positions (as the last sub-block left them; the modulation moves them by
 * a fraction of a sample) and write index, the diffusers' likewise. */
static void rv_prefetch_block(const reverb_state *s, int n)
{
    if (!s->mem)
        return;
    for (int k = 0; k < NL; k++) {
        const float *buf = s->mem + (size_t)k * s->stride;
        rv_prefetch(buf, s->w - s->M[k] - 1u, s->mask, n + 2, 0);
        rv_prefetch(buf, s->w, s->mask, n, 1);
    }
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < ND; k++) {
            const dl_line *l = &s->ap_line[c][k];
            if (!l->buf)
                continue;
            rv_prefetch(l->buf, l->w - s->ap_len[c][k], l->mask, n, 0);
            rv_prefetch(l->buf, l->w, l->mask, n, 1);
        }
}

/* The usual block of a steady reverb in two sides that do not depend on
 * each other: the FDN's reads (lines written at least a block ago), loop
 * filters and Hadamard, which need none of this block's input, and the
 * input side (pre-delay, diffusers), which needs nothing of the FDN; then
 * the lines' writes and the output mix, in order. The two sides are the two
 * parts of an mg_par_for job, so inside a cycle of the plan's parallel form
 * a thread with nothing to do (in mix64's tail, the one that ran the delay
 * return) takes the input side while the reverb's thread runs the FDN's.
 * Taken when no parameter of the loop glides (decay, damping and size
 * steady) and every line is longer than the block and its modulation, so
 * that every read of the block precedes its writes; each sample gets
 * process's expressions on the same values, in the same sub-blocks: the
 * output is the general path's, bit for bit (tests/test_threads.py, the
 * render hashes of bench/callgrind_mix.py; tests/test_node_reverb.py against
 * MIXGRAPH_RV_NOSPLIT=1, which turns it off), on one thread or two. */
static int split_ok(const reverb_state *s, const mg_proc *p)
{
    const mg_pv *dec = &p->pv[P_DECAY], *dmp = &p->pv[P_DAMPING];
    if (rv_nosplit || !s->split || s->moving || (s->sub_pos && s->sub_moving) || s->glide_left ||
        dec->ramp || dmp->ramp || dec->value != s->coef_decay ||
        dmp->value != s->coef_damp)
        return 0;
    const float need = (float)(p->nframes > SUB ? p->nframes : SUB);
    for (int k = 0; k < NL; k++)
        if (!(s->len[k] - s->depth - 2.0f > need))
            return 0;
    return 1;
}

typedef struct {
    reverb_state *s;
    const mg_proc *p;
} rv_split;

/* The FDN side over the block: read positions, reads, filters, sums. */
MG_HOT static void split_fdn(reverb_state *s, int n)
{
    float yk[NL], ap[NL], gb[NL], bb[NL];
    memcpy(yk, s->y, sizeof yk);
    memcpy(ap, s->ap, sizeof ap);
    memcpy(gb, s->gb, sizeof gb);
    memcpy(bb, s->b, sizeof bb);
    int sp = s->sub_pos;
    for (int i0 = 0, i1; i0 < n; i0 = i1) {
        i1 = i0 + (SUB - sp) < n ? i0 + (SUB - sp) : n;
        if (sp == 0)
            positions(s, SUB, s->M, s->eta);
        sp = (sp + (i1 - i0)) % SUB;
        fdn_read(s, s->w + (unsigned)i0, i1 - i0, s->M, s->eta, gb, bb, yk, ap,
                 SPLIT_V(s) + (size_t)i0 * NL, SPLIT_WL(s) + i0, SPLIT_WR(s) + i0);
    }
    memcpy(s->y, yk, sizeof yk);
    memcpy(s->ap, ap, sizeof ap);
}

/* The input side over the block: pre-delay and diffusers, per sub-block as
 * process runs them. */
MG_HOT static void split_front(reverb_state *s, const mg_proc *p)
{
    const int n = p->nframes;
    float *fxl = SPLIT_XL(s), *fxr = SPLIT_XR(s), *fil = SPLIT_IL(s), *fir = SPLIT_IR(s);
    int sp = s->sub_pos;
    for (int i0 = 0, i1; i0 < n; i0 = i1) {
        i1 = i0 + (SUB - sp) < n ? i0 + (SUB - sp) : n;
        sp = (sp + (i1 - i0)) % SUB;
        float dg[ND], ddg[ND] = {0};
        memcpy(dg, s->dg, sizeof dg);
        if (!front_block(s, p->in[0] + i0, p->in[1] + i0, i1 - i0, dg, ddg, fxl + i0, fxr + i0,
                         fil + i0, fir + i0))
            for (int i = i0; i < i1; i++)
                front(s, p->in[0][i], p->in[1][i], dg, ddg, &fxl[i], &fxr[i], &fil[i], &fir[i]);
    }
}

static void split_part(void *arg, int i)
{
    const rv_split *d = arg;
    if (i == 0)
        split_fdn(d->s, d->p->nframes);
    else
        split_front(d->s, d->p);
}

MG_HOT static void process_split(reverb_state *s, const mg_proc *p)
{
    const int n = p->nframes;
    const rv_split d = {s, p};
    mg_par_for(split_part, (void *)&d, 2);
    const mg_pv *wd = &p->pv[P_WIDTH], *mx = &p->pv[P_MIX];
    const float *fxl = SPLIT_XL(s), *fxr = SPLIT_XR(s), *fil = SPLIT_IL(s), *fir = SPLIT_IR(s);
    const float *fwl = SPLIT_WL(s), *fwr = SPLIT_WR(s);
    for (int i0 = 0, i1; i0 < n; i0 = i1) {
        i1 = i0 + (SUB - s->sub_pos) < n ? i0 + (SUB - s->sub_pos) : n;
        s->sub_pos = (s->sub_pos + (i1 - i0)) % SUB;
        fdn_write(s, i1 - i0, SPLIT_V(s) + (size_t)i0 * NL, fil + i0, fir + i0);
        for (int i = i0; i < i1; i++) {
            const float xl = fxl[i], xr = fxr[i];
            const float wl = fwl[i] * s->wet_gain, wr = fwr[i] * s->wet_gain;
            const float wdt = mg_pv_at(wd, i) * 0.01f;
            const float mid = 0.5f * (wl + wr), side = 0.5f * (wl - wr) * wdt;
            const float mix = mg_pv_at(mx, i) * 0.01f;
            p->out[0][i] = xl + mix * (mid + side - xl);
            p->out[1][i] = xr + mix * (mid - side - xr);
        }
    }
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    reverb_state *s = st;
    const int n = p->nframes;
    rv_prefetch_block(s, n);
    const mg_pv *dec = &p->pv[P_DECAY], *dmp = &p->pv[P_DAMPING];
    const mg_pv *wd = &p->pv[P_WIDTH], *mx = &p->pv[P_MIX];
    s->fresh = 0;
    if (split_ok(s, p)) {
        s->sub_moving = 0; /* every sub-block it runs is steady */
        process_split(s, p);
        goto check;
    }
    for (int i0 = 0, i1; i0 < n; i0 = i1) {
        i1 = i0 + (SUB - s->sub_pos) < n ? i0 + (SUB - s->sub_pos) : n;
        const int at_start = s->sub_pos == 0;
        if (at_start)
            s->sub_moving = s->moving;
        s->sub_pos = (s->sub_pos + (i1 - i0)) % SUB;
        const float dv = mg_pv_at(dec, i0), mv = mg_pv_at(dmp, i0);
        /* line read positions: the modulation moves by ~0.01 sample per
         * sub-block, so steady state computes them once per sub-block; while
         * the size slews (up to 0.05 sample per sample) they follow per sample */
        const int len = i1 - i0;
        const int moving = s->sub_moving;
        const unsigned *M = s->M;
        const float *eta = s->eta;
        /* loop gains and damping poles: designed at the sub-block's first
         * sample for the values there and approached linearly sample by
         * sample over the sub-block (no zipper while decay, damping or size
         * move); a ramp is followed a sub-block behind, and reached */
        if (at_start && (dv != s->coef_decay || mv != s->coef_damp || moving)) {
            coefs(s, dv, mv);
            const float inv = 1.0f / (float)SUB;
            for (int k = 0; k < NL; k++) {
                s->dgb[k] = (s->tgb[k] - s->gb[k]) * inv;
                s->dbb[k] = (s->tb[k] - s->b[k]) * inv;
            }
            for (int k = 0; k < ND; k++)
                s->ddg[k] = (s->tdg[k] - s->dg[k]) * inv;
            s->glide_left = SUB;
        }
        const int glide = s->glide_left > 0;
        float yk[NL], gb[NL], bb[NL], ap[NL], dg[ND];
        const float *dgb = s->dgb, *dbb = s->dbb, *ddg = s->ddg;
        memcpy(yk, s->y, sizeof yk);
        memcpy(ap, s->ap, sizeof ap);
        memcpy(gb, s->gb, sizeof gb);
        memcpy(bb, s->b, sizeof bb);
        memcpy(dg, s->dg, sizeof dg);
        int fast = !moving; /* every line longer than a sub-block (and its modulation) */
        for (int k = 0; k < NL; k++)
            fast &= s->len[k] - s->depth - 2.0f > (float)SUB;
        if (fast) {
            float fxl[SUB], fxr[SUB], fil[SUB], fir[SUB], fwl[SUB], fwr[SUB];
            if (!front_block(s, p->in[0] + i0, p->in[1] + i0, len, dg, ddg, fxl, fxr, fil, fir))
                for (int i = i0; i < i1; i++) {
                    float xl, xr, il, ir;
                    front(s, p->in[0][i], p->in[1][i], dg, ddg, &xl, &xr, &il, &ir);
                    fxl[i - i0] = xl, fxr[i - i0] = xr, fil[i - i0] = il, fir[i - i0] = ir;
                }
            if (at_start)
                positions(s, SUB, s->M, s->eta);
            fdn_block(s, len, M, eta, gb, bb, dgb, dbb, glide, yk, ap, fil, fir, fwl, fwr);
            for (int i = i0; i < i1; i++) {
                const float xl = fxl[i - i0], xr = fxr[i - i0];
                const float wl = fwl[i - i0] * s->wet_gain, wr = fwr[i - i0] * s->wet_gain;
                const float wdt = mg_pv_at(wd, i) * 0.01f;
                const float mid = 0.5f * (wl + wr), side = 0.5f * (wl - wr) * wdt;
                const float mix = mg_pv_at(mx, i) * 0.01f;
                p->out[0][i] = xl + mix * (mid + side - xl);
                p->out[1][i] = xr + mix * (mid - side - xr);
            }
            memcpy(s->y, yk, sizeof yk);
            memcpy(s->ap, ap, sizeof ap);
            if (glide)
                glide_step(s, len, gb, bb, dg);
            continue;
        }
        float *restrict mem = s->mem;
        const size_t stride = s->stride;
        for (int i = i0; i < i1; i++) {
            float xl, xr, il, ir;
            front(s, p->in[0][i], p->in[1][i], dg, ddg, &xl, &xr, &il, &ir);
            if (moving || (i == i0 && at_start)) {
                const int adv = moving ? 1 : SUB;
                if (moving) {
                    int still = 0;
                    for (int k = 0; k < NL; k++) {
                        const float df = s->len_tgt[k] - s->len[k], st = s->len_step[k];
                        s->len[k] += df > st ? st : df < -st ? -st : df;
                        still |= s->len[k] != s->len_tgt[k];
                    }
                    s->moving = still;
                }
                positions(s, adv, s->M, s->eta);
            }
            if (glide)
                for (int k = 0; k < NL; k++) {
                    gb[k] += dgb[k];
                    bb[k] += dbb[k];
                }
            float v[NL];
            float wl = 0.0f, wr = 0.0f;
            const unsigned w = s->w, mask = s->mask;
            for (int k = 0; k < NL; k++) {
                const float *restrict buf = mem + (size_t)k * stride;
                const unsigned j = w - M[k];
                /* first-order allpass (Thiran) interpolation: lossless */
                const float r = eta[k] * (buf[j & mask] - ap[k]) + buf[(j - 1u) & mask];
                ap[k] = r;
                const float y = gb[k] * r + bb[k] * yk[k];
                yk[k] = y;
                v[k] = y;
            }
            for (int k = 0; k < NL; k += 4) {
                wl += v[k] - v[k + 2];
                wr += v[k + 1] - v[k + 3];
            }
            hadamard16(v);
            for (int k = 0; k < NL; k += 4) {
                mem[(size_t)k * stride + w] = v[k] + il;
                mem[(size_t)(k + 1) * stride + w] = v[k + 1] + ir;
                mem[(size_t)(k + 2) * stride + w] = v[k + 2] - il;
                mem[(size_t)(k + 3) * stride + w] = v[k + 3] - ir;
            }
            s->w = (w + 1) & mask;
            wl *= s->wet_gain;
            wr *= s->wet_gain;
            const float wdt = mg_pv_at(wd, i) * 0.01f;
            const float mid = 0.5f * (wl + wr), side = 0.5f * (wl - wr) * wdt;
            const float mix = mg_pv_at(mx, i) * 0.01f;
            p->out[0][i] = xl + mix * (mid + side - xl);
            p->out[1][i] = xr + mix * (mid - side - xr);
        }
        memcpy(s->y, yk, sizeof yk);
        memcpy(s->ap, ap, sizeof ap);
        if (glide)
            glide_step(s, len, gb, bb, dg);
    }
check:;
    int ok = 1;
    for (int k = 0; k < NL; k++)
        ok &= isfinite(s->y[k]) && fabsf(s->y[k]) < 1e25f && isfinite(s->ap[k]);
    if (!ok)
        clear_state(s);
}

const mg_node_type mg_type_reverb = {
    .name = "reverb",
    .doc = "Reverb: 16-line feedback delay network (Hadamard, prime modulated lengths), "
           "RT60 decay, size, pre-delay, damping, width, mix; stereo in and out.",
    .default_channels = 2, .min_channels = 2, .max_channels = 2,
    .params = params, .n_params = MG_COUNT(params),
    .ports = ports, .n_ports = MG_COUNT(ports),
    .state_size = sizeof(reverb_state),
    .prepare = prepare, .process = process, .reset = reset, .release = release,
    .on_param = on_param,
};
