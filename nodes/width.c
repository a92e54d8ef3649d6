/* width: mid/side stereo width with bass mono.
 *   M = (L + R) / 2,  S = (L - R) / 2,  L' = M + w S',  R' = M - w S'
 * S' = S with bass mono off; with it on, S' = LR4(S): the side signal through a
 * 4th-order Linkwitz-Riley high-pass at `monofreq` (two cascaded 2nd-order
 * Butterworth sections, state-variable form), so everything below the crossover is mono. Switching
 * bass mono crossfades S and LR4(S) over 10 ms; the crossover frequency is
 * smoothed and the coefficients follow the ramp every 16 samples. Non-finite
 * input samples are taken as 0. */
#include "mg_node.h"
#include "dsp_delay.h"

enum { P_WIDTH, P_BASSMONO, P_MONOFREQ };

static const mg_param_spec params[] = {
    {"width", "", "side gain: 0 mono, 1 unchanged, 2 twice the side signal", 0.0f, 2.0f, 1.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"bassmono", "", "1: the side signal below monofreq is removed (LR4 high-pass on S)", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"monofreq", "Hz", "bass mono crossover frequency (Linkwitz-Riley 24 dB/oct)", 20.0f, 500.0f, 120.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 2},
    {"out", MG_PORT_OUT, 2},
};

#define SUB 16

typedef struct {
    double fs;
    svf_coef c;
    svf_state s1, s2;
    float cfreq; /* frequency of c */
    int active;  /* filter state is live */
} width_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    width_state *s = st;
    s->fs = ctx->sample_rate;
    s->cfreq = 120.0f;
    s->c = svf_butter2(120.0, s->fs);
    return 0;
}

static void on_param(void *st, int index, float v)
{
    width_state *s = st;
    if (index == P_MONOFREQ && s->fs > 0.0) {
        s->cfreq = v;
        s->c = svf_butter2(v, s->fs);
    }
}

static void reset(void *st)
{
    width_state *s = st;
    s->s1 = (svf_state){0, 0};
    s->s2 = (svf_state){0, 0};
}

static void process(void *st, const mg_proc *p)
{
    width_state *s = st;
    const float *restrict xl = p->in[0], *restrict xr = p->in[1];
    float *restrict l = p->out[0], *restrict r = p->out[1];
    const mg_pv *w = &p->pv[P_WIDTH], *bm = &p->pv[P_BASSMONO], *fq = &p->pv[P_MONOFREQ];
    const int n = p->nframes;
    if (!bm->ramp && bm->value == 0.0f) {
        if (s->active) {
            reset(s);
            s->active = 0;
        }
        if (!w->ramp) {
            const float g = w->value;
            for (int i = 0; i < n; i++) {
                const float m = (dl_sane(xl[i]) + dl_sane(xr[i])) * 0.5f, sd = (dl_sane(xl[i]) - dl_sane(xr[i])) * 0.5f * g;
                l[i] = m + sd;
                r[i] = m - sd;
            }
        } else {
            for (int i = 0; i < n; i++) {
                const float m = (dl_sane(xl[i]) + dl_sane(xr[i])) * 0.5f;
                const float sd = (dl_sane(xl[i]) - dl_sane(xr[i])) * 0.5f * w->ramp[i];
                l[i] = m + sd;
                r[i] = m - sd;
            }
        }
        return;
    }
    s->active = 1;
    for (int i0 = 0; i0 < n; i0 += SUB) {
        const int i1 = i0 + SUB < n ? i0 + SUB : n;
        if (fq->ramp && fq->ramp[i0] != s->cfreq) {
            s->cfreq = fq->ramp[i0];
            s->c = svf_butter2(s->cfreq, s->fs);
        }
        for (int i = i0; i < i1; i++) {
            const float m = (dl_sane(xl[i]) + dl_sane(xr[i])) * 0.5f, sd = (dl_sane(xl[i]) - dl_sane(xr[i])) * 0.5f;
            double h1, h;
            svf_run(&s->c, &s->s1, sd, &h1);
            svf_run(&s->c, &s->s2, h1, &h);
            const float b = mg_pv_at(bm, i);
            const float so = mg_pv_at(w, i) * (sd + b * ((float)h - sd));
            l[i] = m + so;
            r[i] = m - so;
        }
    }
    if (!svf_finite(&s->s1) || !svf_finite(&s->s2))
        reset(s);
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"bassmono", "off|on"},
};

const mg_node_type mg_type_width = {
    .name = "width",
    .doc = "Stereo width: M = (L+R)/2, S = (L-R)/2, L' = M + w S, R' = M - w S; bass mono "
           "high-passes S at monofreq (Linkwitz-Riley 24 dB/oct) so the low end is mono.",
    .default_channels = 2, .min_channels = 2, .max_channels = 2,
    .params = params, .n_params = MG_COUNT(params),
    MG_CHOICES(choices),
    .ports = ports, .n_ports = MG_COUNT(ports),
    .state_size = sizeof(width_state),
    .prepare = prepare, .process = process, .reset = reset, .on_param = on_param,
};
