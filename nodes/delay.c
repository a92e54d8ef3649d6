/* delay: a stereo (or mono) echo with feedback, loop filters and ping-pong.
 *
 * Signal flow per channel (the "tap" is the delayed read):
 *   wet   = LC(HC(tap))            (low-cut / high-cut in the loop, each on/off)
 *   write = in + fb * wet          (ping-pong: L line <- (inL+inR)/2 + fb*wetR,
 *                                   R line <- fb*wetL)
 *   out   = (1 - mix) * in + mix * wet
 * so without filters the impulse response has echoes at n*T with gain fb^(n-1)
 * (n = 1, 2, ...), alternating L, R, L... with ping-pong.
 *
 * The delay T is `time` ms, or with `sync` on, `division` of a bar at `bpm`
 * (quarter note = one beat); at most 4 s (the buffer allocated in prepare).
 * Reads are fractional (4-point Lagrange interpolation, exact at integer
 * delays). Changing the delay never jumps the read position: a change of up to
 * 64 samples glides at 1/16 sample per sample; a larger one crossfades
 * (raised cosine, 40 ms) from the old tap to the new one. */
#include "mg_node.h"
#include "dsp_delay.h"

enum { P_TIME, P_SYNC, P_BPM, P_DIVISION, P_FEEDBACK, P_LOWCUT, P_LOWCUTON, P_HIGHCUT,
       P_HIGHCUTON, P_PINGPONG, P_MIX, P_N };

static const mg_param_spec params[] = {
    {"time", "ms", "delay time (when sync is off)", 1.0f, 4000.0f, 250.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"sync", "", "1: the delay is `division` at `bpm` instead of `time`", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"bpm", "", "tempo for sync, beats (quarter notes) per minute", 20.0f, 300.0f, 120.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"division", "", "note value for sync: 0 1/1, 1 1/2, 2 1/4, 3 1/8, 4 1/16, 5 1/32, "
     "6 1/2 dotted, 7 1/4 dotted, 8 1/8 dotted, 9 1/16 dotted, "
     "10 1/2 triplet, 11 1/4 triplet, 12 1/8 triplet, 13 1/16 triplet", 0.0f, 13.0f, 2.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"feedback", "%", "level of each repeat relative to the previous one", 0.0f, 99.0f, 35.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"lowcut", "Hz", "high-pass in the loop (Butterworth 12 dB/oct, state-variable form)", 20.0f, 2000.0f, 100.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"lowcuton", "", "1: the low-cut is in the loop", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"highcut", "Hz", "low-pass in the loop (Butterworth 12 dB/oct)", 1000.0f, 20000.0f, 8000.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"highcuton", "", "1: the high-cut is in the loop", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"pingpong", "", "1: repeats alternate left and right (stereo only)", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"mix", "%", "wet share: out = (1-mix) dry + mix wet", 0.0f, 100.0f, 30.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"effective", "ms", MG_MAP_LIN, 0}, /* the delay in use: sync resolved, clamped to 4 s */
};

static const double beats[14] = {4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 3.0, 1.5, 0.75, 0.375,
                                 4.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0};

#define SUB 16
#define MAX_S 4.0

typedef struct {
    double fs, maxd;
    int ch, fresh;
    dl_line line[2];
    dl_tap tap;
    dl_pos pos;   /* read position of tap.cur */
    double pos_d; /* the delay pos belongs to (-1: none) */
    float par[P_N]; /* latest targets (node domain) */
    svf_coef lc, hc;
    float lcf, hcf; /* frequencies of lc / hc */
    svf_state lcs[2], hcs[2];
} delay_state;

static void set_target(delay_state *s)
{
    double ms = s->par[P_TIME];
    if (s->par[P_SYNC] >= 0.5f) {
        int d = (int)(s->par[P_DIVISION] + 0.5f);
        d = d < 0 ? 0 : d > 13 ? 13 : d;
        ms = beats[d] * 60000.0 / s->par[P_BPM];
    }
    double t = ms * 0.001 * s->fs;
    t = t < 2.0 ? 2.0 : t > s->maxd ? s->maxd : t;
    if (s->fresh)
        dl_tap_init(&s->tap, t, s->tap.fade_len, s->tap.glide_max, s->tap.glide_rate);
    else
        s->tap.tgt = t;
}

static void on_param(void *st, int index, float v)
{
    delay_state *s = st;
    if (index < 0 || index >= P_N)
        return;
    s->par[index] = v;
    if (s->fs <= 0.0)
        return; /* before prepare */
    if (index <= P_DIVISION)
        set_target(s);
    else if (index == P_LOWCUT) {
        s->lcf = v;
        s->lc = svf_butter2(v, s->fs);
    } else if (index == P_HIGHCUT) {
        s->hcf = v;
        s->hc = svf_butter2(v, s->fs);
    }
}

static void reset(void *st)
{
    delay_state *s = st;
    for (int c = 0; c < 2; c++) {
        dl_clear(&s->line[c]);
        s->lcs[c] = (svf_state){0, 0};
        s->hcs[c] = (svf_state){0, 0};
    }
    s->fresh = 1;
    if (s->fs > 0.0)
        set_target(s);
}

static void release(void *st)
{
    delay_state *s = st;
    dl_free(&s->line[0]);
    dl_free(&s->line[1]);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    delay_state *s = st;
    s->fs = ctx->sample_rate;
    s->ch = ctx->channels;
    s->maxd = MAX_S * s->fs;
    for (int c = 0; c < s->ch; c++)
        if (dl_alloc(&s->line[c], (size_t)s->maxd + 4) != 0)
            return 1;
    dl_tap_init(&s->tap, 0.25 * s->fs, (int)(0.040 * s->fs), 64.0, 1.0 / 16.0);
    s->fresh = 1;
    s->pos_d = -1.0;
    for (int k = 0; k < P_N; k++)
        s->par[k] = params[k].def;
    s->lcf = s->par[P_LOWCUT];
    s->hcf = s->par[P_HIGHCUT];
    s->lc = svf_butter2(s->lcf, s->fs);
    s->hc = svf_butter2(s->hcf, s->fs);
    set_target(s);
    return 0;
}


/* dl_read_pos as it reads k writes from now (the line's samples up to then
 * already written). */
static inline float read_ahead(const dl_line *l, const dl_pos *p, unsigned k)
{
    const unsigned j = l->w + k - p->i;
    return p->c[0] * l->buf[(j + 1u) & l->mask] + p->c[1] * l->buf[j & l->mask] +
           p->c[2] * l->buf[(j - 1u) & l->mask] + p->c[3] * l->buf[(j - 2u) & l->mask];
}

/* The usual block: the tap at rest and every parameter steady, and the
 * delay longer than the block plus the interpolator's reach, so no read of
 * the block touches a sample the block writes. Then the per-sample loop's
 * steps run block-wise, each a pass of its own: every read, the loop
 * filters (per sample, the channels side by side), then the writes and the
 * output, with the per-sample loop's expressions, in MG_HOT code like it
 * (so fused the same way: the same samples).
 * Returns 0, having done nothing, when the block is not such a block. */
MG_HOT static int steady_block(delay_state *s, const mg_proc *p)
{
    const int n = p->nframes, ch = s->ch;
    const mg_pv *pv = p->pv;
    for (int k = P_FEEDBACK; k < P_N; k++)
        if (pv[k].ramp)
            return 0;
    if (s->tap.fade != 0 || s->tap.tgt != s->tap.cur || s->tap.cur != s->pos_d ||
        s->pos.i < (unsigned)n + 2u)
        return 0;
    const float fb = pv[P_FEEDBACK].value * 0.01f, mix = pv[P_MIX].value * 0.01f;
    const int use_lc = pv[P_LOWCUTON].value > 0.0f, use_hc = pv[P_HIGHCUTON].value > 0.0f;
    const float lk = pv[P_LOWCUTON].value, hk = pv[P_HIGHCUTON].value, q = pv[P_PINGPONG].value;
    float wet[2][MG_MAX_BLOCK];
    for (int c = 0; c < ch; c++)
        for (int i = 0; i < n; i++)
            wet[c][i] = read_ahead(&s->line[c], &s->pos, (unsigned)i);
    if (use_hc || use_lc)
        for (int i = 0; i < n; i++)
            for (int c = 0; c < ch; c++) {
                float w = wet[c][i];
                if (use_hc) {
                    double hp;
                    const float h = (float)svf_run(&s->hc, &s->hcs[c], w, &hp);
                    w += hk * (h - w);
                }
                if (use_lc) {
                    double hp;
                    svf_run(&s->lc, &s->lcs[c], w, &hp);
                    const float h = (float)hp;
                    w += lk * (h - w);
                }
                wet[c][i] = w;
            }
    if (ch == 2) {
        const float *inl = p->in[0], *inr = p->in[1];
        float *bl = s->line[0].buf, *br = s->line[1].buf;
        const unsigned ml = s->line[0].mask, mr = s->line[1].mask;
        unsigned wl0 = s->line[0].w, wr0 = s->line[1].w;
        for (int i = 0; i < n; i++) {
            const float x0 = dl_sane(inl[i]), x1 = dl_sane(inr[i]);
            float wl = x0, wr = x1, fl = wet[0][i], fr = wet[1][i];
            if (q > 0.0f) {
                wl += q * 0.5f * (x1 - x0);
                wr -= q * x1;
                fl += q * (wet[1][i] - wet[0][i]);
                fr += q * (wet[0][i] - wet[1][i]);
            }
            bl[(wl0 + (unsigned)i) & ml] = dl_sane(wl + fb * fl);
            br[(wr0 + (unsigned)i) & mr] = dl_sane(wr + fb * fr);
            p->out[0][i] = x0 + mix * (wet[0][i] - x0);
            p->out[1][i] = x1 + mix * (wet[1][i] - x1);
        }
        s->line[0].w = (wl0 + (unsigned)n) & ml;
        s->line[1].w = (wr0 + (unsigned)n) & mr;
    } else {
        const float *in = p->in[0];
        float *b = s->line[0].buf;
        const unsigned mk = s->line[0].mask, w0 = s->line[0].w;
        for (int i = 0; i < n; i++) {
            const float x = dl_sane(in[i]);
            b[(w0 + (unsigned)i) & mk] = dl_sane(x + fb * wet[0][i]);
            p->out[0][i] = x + mix * (wet[0][i] - x);
        }
        s->line[0].w = (w0 + (unsigned)n) & mk;
    }
    return 1;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    delay_state *s = st;
    const int n = p->nframes, ch = s->ch;
    const mg_pv *fbp = &p->pv[P_FEEDBACK], *mixp = &p->pv[P_MIX];
    const mg_pv *lcon = &p->pv[P_LOWCUTON], *hcon = &p->pv[P_HIGHCUTON];
    const mg_pv *lcf = &p->pv[P_LOWCUT], *hcf = &p->pv[P_HIGHCUT], *pp = &p->pv[P_PINGPONG];
    const int use_lc = lcon->ramp || lcon->value > 0.0f;
    const int use_hc = hcon->ramp || hcon->value > 0.0f;
    const int stereo = ch == 2;
    s->fresh = 0;
    if (!steady_block(s, p)) { /* the general case, sample by sample */
        for (int i0 = 0; i0 < n; i0 += SUB) {
            const int i1 = i0 + SUB < n ? i0 + SUB : n;
            if (use_lc && lcf->ramp && lcf->ramp[i0] != s->lcf) {
                s->lcf = lcf->ramp[i0];
                s->lc = svf_butter2(s->lcf, s->fs);
            }
            if (use_hc && hcf->ramp && hcf->ramp[i0] != s->hcf) {
                s->hcf = hcf->ramp[i0];
                s->hc = svf_butter2(s->hcf, s->fs);
            }
            for (int i = i0; i < i1; i++) {
                const float a = dl_tap_step(&s->tap);
                /* read positions: recomputed only when the tap moves */
                if (s->tap.cur != s->pos_d) {
                    s->pos_d = s->tap.cur;
                    s->pos = dl_cubic_pos(s->pos_d);
                }
                dl_pos pn;
                if (a > 0.0f)
                    pn = dl_cubic_pos(s->tap.nxt);
                const float fb = mg_pv_at(fbp, i) * 0.01f, mix = mg_pv_at(mixp, i) * 0.01f;
                float wet[2], x[2];
                for (int c = 0; c < ch; c++) {
                    x[c] = dl_sane(p->in[c][i]);
                    float w = dl_read_pos(&s->line[c], &s->pos);
                    if (a > 0.0f)
                        w += a * (dl_read_pos(&s->line[c], &pn) - w);
                    if (use_hc) {
                        double hp;
                        const float h = (float)svf_run(&s->hc, &s->hcs[c], w, &hp);
                        w += mg_pv_at(hcon, i) * (h - w);
                    }
                    if (use_lc) {
                        double hp;
                        svf_run(&s->lc, &s->lcs[c], w, &hp);
                        const float h = (float)hp;
                        w += mg_pv_at(lcon, i) * (h - w);
                    }
                    wet[c] = w;
                }
                if (stereo) {
                    const float q = mg_pv_at(pp, i);
                    float wl = x[0], wr = x[1], fl = wet[0], fr = wet[1];
                    if (q > 0.0f) {
                        wl += q * 0.5f * (x[1] - x[0]);
                        wr -= q * x[1];
                        fl += q * (wet[1] - wet[0]);
                        fr += q * (wet[0] - wet[1]);
                    }
                    dl_write(&s->line[0], dl_sane(wl + fb * fl));
                    dl_write(&s->line[1], dl_sane(wr + fb * fr));
                } else {
                    dl_write(&s->line[0], dl_sane(x[0] + fb * wet[0]));
                }
                for (int c = 0; c < ch; c++)
                    p->out[c][i] = x[c] + mix * (wet[c] - x[c]);
            }
        }
    }
    for (int c = 0; c < ch; c++) {
        if (!svf_finite(&s->lcs[c]))
            s->lcs[c] = (svf_state){0, 0};
        if (!svf_finite(&s->hcs[c]))
            s->hcs[c] = (svf_state){0, 0};
        if (!use_lc)
            s->lcs[c] = (svf_state){0, 0};
        if (!use_hc)
            s->hcs[c] = (svf_state){0, 0};
    }
    p->readout[0] = (float)(s->tap.tgt * 1000.0 / s->fs);
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"sync", "off|on"},
    {"division", "1/1|1/2|1/4|1/8|1/16|1/32|1/2 dotted|1/4 dotted|1/8 dotted|1/16 dotted|1/2 triplet|1/4 triplet|1/8 triplet|1/16 triplet"},
    {"lowcuton", "off|on"},
    {"highcuton", "off|on"},
    {"pingpong", "off|on"},
};

const mg_node_type mg_type_delay = {
    .name = "delay",
    .doc = "Echo: time in ms or tempo-synced, fractional (Lagrange) reads that glide or "
           "crossfade on changes, feedback with low-cut/high-cut in the loop, ping-pong, mix. "
           "Echo n (n >= 1) at n*T with gain fb^(n-1); buffer 4 s.",
    .default_channels = 2, .min_channels = 1, .max_channels = 2,
    .params = params, .n_params = MG_COUNT(params),
    MG_CHOICES(choices),
    .ports = ports, .n_ports = MG_COUNT(ports),
    .readouts = readouts, .n_readouts = MG_COUNT(readouts),
    .state_size = sizeof(delay_state),
    .prepare = prepare, .process = process, .reset = reset, .release = release,
    .on_param = on_param,
};
