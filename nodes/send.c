/* send: feeds an aux bus from a channel, pre or post fader.
 *
 * Connect the fader's input to `pre` and the fader's output to `post`; the
 * send's `out` goes to the aux bus:  out = on * level * (post or pre).
 * `mode` (0 post-fader, 1 pre-fader) and `on` are crossfaded over 10 ms by the
 * engine's smoothing, `level` over 20 ms, so switching never clicks. */
#include "mg_node.h"

enum { P_LEVEL, P_MODE, P_ON };

static const mg_param_spec params[] = {
    {"level", "dB", "send level", -120.0f, 12.0f, 0.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
    {"mode", "", "0 post-fader (taps `post`), 1 pre-fader (taps `pre`)", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
    {"on", "", "1 send on, 0 off (10 ms fade)", 0.0f, 1.0f, 1.0f, MG_MAP_LIN, MG_TAPER_STEP, 10.0f},
};
static const mg_port_spec ports[] = {
    {"post", MG_PORT_IN, 0},
    {"pre", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};

typedef struct {
    int channels;
} send_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    ((send_state *)st)->channels = ctx->channels;
    return 0;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    const send_state *s = st;
    const int ch = s->channels, n = p->nframes;
    const mg_pv *lv = &p->pv[P_LEVEL], *md = &p->pv[P_MODE], *on = &p->pv[P_ON];
    if (!lv->ramp && !md->ramp && !on->ramp) {
        const float g = lv->value * on->value, m = md->value;
        for (int c = 0; c < ch; c++) {
            const float *restrict x = m >= 0.5f ? p->in[ch + c] : p->in[c];
            float *restrict y = p->out[c];
            if (g == 0.0f)
                memset(y, 0, sizeof(float) * (size_t)n);
            else
                for (int i = 0; i < n; i++)
                    y[i] = x[i] * g;
        }
        return;
    }
    for (int c = 0; c < ch; c++) {
        const float *restrict post = p->in[c], *restrict pre = p->in[ch + c];
        float *restrict y = p->out[c];
        for (int i = 0; i < n; i++) {
            const float m = mg_pv_at(md, i);
            y[i] = mg_pv_at(lv, i) * mg_pv_at(on, i) * (post[i] + m * (pre[i] - post[i]));
        }
    }
}

/* While no parameter moves, process writes out[c] = in[k + c] * g (the
 * steady path above): the engine may add that into the bus itself. */
static int fold(const void *st, const mg_pv *pv, float *gain)
{
    const mg_pv *lv = &pv[P_LEVEL], *md = &pv[P_MODE], *on = &pv[P_ON];
    if (lv->ramp || md->ramp || on->ramp)
        return -1;
    *gain = lv->value * on->value;
    return md->value >= 0.5f ? ((const send_state *)st)->channels : 0;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"mode", "post-fader|pre-fader"},
    {"on", "off|on"},
};

const mg_node_type mg_type_send = {
    .name = "send",
    .doc = "Aux send: out = on * level * (post-fader input, or the pre-fader input when "
           "mode = 1); connect the fader's input to `pre`, its output to `post`, `out` to the aux bus.",
    .default_channels = 1, .min_channels = 1, .max_channels = 64,
    .params = params, .n_params = MG_COUNT(params),
    MG_CHOICES(choices),
    .ports = ports, .n_ports = MG_COUNT(ports),
    .state_size = sizeof(send_state),
    .prepare = prepare, .process = process,
    .fold = fold,
};
