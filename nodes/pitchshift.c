/* pitchshift: transpose a monophonic voice or instrument, keeping its formants.
 *
 * TD-PSOLA (dsp_pitch.h) with pitch marks from a YIN detector (70 Hz to
 * 2.4 kHz): ratio 2^((semitones + cents / 100) / 12), read at every
 * synthesis mark (once per output period), so moving the controls glides
 * without steps. Each grain is weighted so the output keeps the input's
 * level (pure tones, harmonic tones and voices alike, within a peak bound
 * of 1.7x the input's at an octave; see dsp_pitch.h). Unvoiced
 * sounds (consonants, noise) are passed unchanged, as TD-PSOLA does; the
 * shifter does not transpose polyphonic material. out = (1 - mix) dry +
 * mix shifted, the dry path delayed by the same latency (2 fs/70 + 3
 * samples, 28.6 ms at 48 kHz, declared and compensated by the graph). With
 * two channels the pitch is detected on their mean and both move together. */
#include "mg_node.h"
#include "dsp_pitch.h"

enum { P_SEMITONES, P_CENTS, P_MIX, P_N };

static const mg_param_spec params[] = {
    {"semitones", "", "transposition in semitones", -12.0f, 12.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"cents", "cents", "fine transposition, added to semitones (the sum is held within one octave either way)", -100.0f, 100.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"mix", "%", "shifted share: out = (1-mix) dry + mix shifted (dry delayed alike)", 0.0f, 100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"pitch", "Hz", MG_MAP_LIN, 0},    /* detected input pitch, 0 when unvoiced */
    {"confidence", "", MG_MAP_LIN, 0}, /* 1 - YIN CMNDF minimum (0..1) */
};

typedef struct {
    pv_voice v;
} psh_state;

static void reset(void *st) { pv_reset(&((psh_state *)st)->v); }
static void release(void *st) { pv_free(&((psh_state *)st)->v); }

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    return pv_alloc(&((psh_state *)st)->v, ctx->sample_rate, ctx->channels);
}

static int latency(const void *st)
{
    return ps_latency(&((const psh_state *)st)->v.sh);
}

/* Place the due mark, with the controls at frame i of this call. */
static void grain(pv_voice *vc, const mg_proc *p, int i)
{
    double f;
    float conf;
    const int v = pd_at(&vc->det, ps_mark(&vc->sh), &f, &conf);
    const double st_ = mg_pv_at(&p->pv[P_SEMITONES], i) + 0.01 * mg_pv_at(&p->pv[P_CENTS], i);
    const double ratio = st_ == 0.0 ? 1.0 : exp2(st_ / 12.0);
    if (v && f > 0.0)
        ps_grain(&vc->sh, 1, vc->fs / f, ratio);
    else
        ps_grain(&vc->sh, 0, 0.0, 1.0);
}

static void process(void *st, const mg_proc *p)
{
    pv_voice *vc = &((psh_state *)st)->v;
    const int n = p->nframes, ch = vc->ch;
    const mg_pv *mixp = &p->pv[P_MIX];
    /* frames in runs (pv_push_run, as autotune): push, place the grains due
     * after each frame of the run, pull the run's output, then the dry mix */
    for (int i = 0; i < n;) {
        const int64_t n0 = vc->sh.n;
        const int m = pv_push_run(vc, p->in, i, n - i);
        for (int j = ps_next_due(&vc->sh, n0, 0, m); j < m;
             j = ps_next_due(&vc->sh, n0, j + 1, m))
            while (ps_due_n(&vc->sh, n0 + j + 1))
                grain(vc, p, i + j);
        ps_pull_run(&vc->sh, p->out, i, m);
        for (int j = 0; j < m; j++) {
            const float mix = mg_pv_at(mixp, i + j) * 0.01f;
            if (mix >= 1.0f)
                continue;
            for (int c = 0; c < ch; c++) {
                const float dry = ps_dry_n(&vc->sh, c, n0 + j + 1);
                const float y = p->out[c][i + j];
                p->out[c][i + j] = dry + mix * (y - dry);
            }
        }
        i += m;
    }
    pv_readout(vc, &p->readout[0], &p->readout[1]);
}

const mg_node_type mg_type_pitchshift = {
    .name = "pitchshift",
    .doc = "Transposition by semitones and cents that keeps the formants and the level "
           "(TD-PSOLA with YIN pitch marks, 70 Hz to 2.4 kHz), for monophonic voices and "
           "instruments, pure tones included; unvoiced sounds pass unchanged; mix with the "
           "dry signal. Latency 28.6 ms (compensated).",
    .default_channels = 1, .min_channels = 1, .max_channels = 2,
    MG_PARAMS(params), MG_PORTS(ports), MG_READOUTS(readouts),
    .state_size = sizeof(psh_state),
    .prepare = prepare, .process = process, .reset = reset, .release = release,
    .latency = latency,
};
