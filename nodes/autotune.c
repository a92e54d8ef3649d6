/* autotune: pitch correction of a monophonic voice.
 *
 * The pitch is tracked by YIN and moved by TD-PSOLA (dsp_pitch.h): formants
 * stay, the latency is fixed (2 fs/70 + 3 samples, 28.6 ms at 48 kHz, declared
 * and compensated by the graph). For each synthesis mark (one per output
 * period) the detected pitch at that point of the (delayed) audio, as a MIDI
 * note m = 69 + 12 log2(f / reference), is pulled to the nearest note of the
 * scale: the notes of `scale` above `key`, or with scale = custom the pitch
 * classes set in `notes` (bit k: k semitones above the key; 4095 = all).
 * The target note changes only when another note is nearer by more than
 * 15 cents (hysteresis: vibrato around a midpoint does not flip notes).
 * correction = amount * (target - m), in cents; with `speed` > 0 it moves
 * towards that with a time constant of `speed` ms (slow settings let
 * vibrato through, 0 snaps hard). Unvoiced input, silence, noise and chords
 * get no correction: the output is then the input delayed by the latency,
 * sample for sample. A chord is what the detector does not call one note
 * (pd_est.mono, dsp_pitch.h): confidence under 0.95, or next to no power at
 * the detected fundamental (a chord read at a common subharmonic of its
 * notes: A4 + D#5 at 211 Hz, an A major triad at 110 Hz), or beating
 * (notes a few Hz to tens of Hz apart: a cluster, a minor second); the
 * verdict is held 100 ms. Two notes an octave apart, or a fifth that is
 * nearly just, make a periodic wave no detector tells from one note with
 * harmonics: they are corrected as one (an equal-tempered fifth by < 2
 * cents). With two channels the pitch is detected on their mean and both
 * channels move together. */
#include "mg_node.h"
#include "dsp_pitch.h"

enum { P_KEY, P_SCALE, P_NOTES, P_SPEED, P_AMOUNT, P_REFERENCE, P_N };

static const mg_param_spec params[] = {
    {"key", "", "tonic pitch class: 0 C, 1 C#, 2 D ... 11 B", 0.0f, 11.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"scale", "", "0 chromatic, 1 major, 2 minor (natural), 3 custom (`notes`)", 0.0f, 3.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"notes", "", "custom scale: bit k set = the pitch class k semitones above the key is a target (4095: all)", 0.0f, 4095.0f, 4095.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"speed", "ms", "retune time constant: 0 snaps to the note at once, larger values glide and let vibrato through", 0.0f, 1000.0f, 0.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"amount", "%", "share of the correction applied", 0.0f, 100.0f, 100.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
    {"reference", "Hz", "tuning of A4", 400.0f, 480.0f, 440.0f, MG_MAP_LIN, MG_TAPER_LIN, 20.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"pitch", "Hz", MG_MAP_LIN, 0},       /* detected pitch, 0 when unvoiced */
    {"confidence", "", MG_MAP_LIN, 0},    /* 1 - YIN CMNDF minimum (0..1) */
    {"correction", "cents", MG_MAP_LIN, 0}, /* pitch change applied now */
    {"note", "", MG_MAP_LIN, 0},          /* target MIDI note, -1 when none */
};

static const unsigned scale_mask[3] = {
    0xFFFu,                                                     /* chromatic */
    (1u << 0) | (1u << 2) | (1u << 4) | (1u << 5) | (1u << 7) | (1u << 9) | (1u << 11), /* major */
    (1u << 0) | (1u << 2) | (1u << 3) | (1u << 5) | (1u << 7) | (1u << 8) | (1u << 10), /* minor */
};

#define NO_NOTE (-1000)
#define HYST 0.15 /* semitones */

typedef struct {
    pv_voice v;
    int note;     /* current target MIDI note, NO_NOTE when none */
    double corr;  /* cents */
} at_state;

static void reset(void *st)
{
    at_state *s = st;
    pv_reset(&s->v);
    s->note = NO_NOTE;
    s->corr = 0.0;
}

static void release(void *st) { pv_free(&((at_state *)st)->v); }

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    at_state *s = st;
    s->note = NO_NOTE;
    return pv_alloc(&s->v, ctx->sample_rate, ctx->channels);
}

static int latency(const void *st)
{
    return ps_latency(&((const at_state *)st)->v.sh);
}

static int allowed(int note, int key, unsigned mask)
{
    const int pc = ((note - key) % 12 + 12) % 12;
    return (mask >> pc) & 1u;
}

/* The target note for MIDI pitch m, keeping `cur` unless another is nearer by HYST. */
static int pick(double m, int key, unsigned mask, int cur)
{
    if (!(mask & 0xFFFu))
        return NO_NOTE;
    const int r = (int)lround(m);
    int best = NO_NOTE;
    double bd = 1e9;
    for (int k = r - 7; k <= r + 7; k++)
        if (allowed(k, key, mask) && fabs(k - m) < bd) {
            bd = fabs(k - m);
            best = k;
        }
    if (cur != NO_NOTE && allowed(cur, key, mask) && fabs(cur - m) < bd + HYST)
        return cur;
    return best;
}

/* Place the due mark, with the parameters at frame i of this call. */
static void grain(at_state *s, const mg_proc *p, int i, int key, unsigned mask, float speed)
{
    pv_voice *vc = &s->v;
    double f;
    float conf;
    const int v = pd_at(&vc->det, ps_mark(&vc->sh), &f, &conf);
    const int mono = pd_mono_at(&vc->det, ps_mark(&vc->sh));
    if (!v || !mono || !(f > 0.0)) {
        s->note = NO_NOTE;
        s->corr = 0.0;
        ps_grain(&vc->sh, 0, 0.0, 1.0);
        return;
    }
    const double ref = mg_pv_at(&p->pv[P_REFERENCE], i);
    const double m = 69.0 + 12.0 * log2(f / ref);
    s->note = pick(m, key, mask, s->note);
    const double Ta = vc->fs / f;
    double want = 0.0;
    if (s->note != NO_NOTE)
        want = (s->note - m) * 100.0 * (mg_pv_at(&p->pv[P_AMOUNT], i) * 0.01);
    if (speed <= 0.0f)
        s->corr = want;
    else
        s->corr += (want - s->corr) * (1.0 - exp(-Ta / (speed * 0.001 * vc->fs)));
    if (!isfinite(s->corr))
        s->corr = 0.0;
    ps_grain(&vc->sh, 1, Ta, exp2(s->corr / 1200.0));
}

static void process(void *st, const mg_proc *p)
{
    at_state *s = st;
    pv_voice *vc = &s->v;
    const int n = p->nframes;
    int key = (int)lroundf(p->pv[P_KEY].value);
    key = key < 0 ? 0 : key > 11 ? 11 : key;
    int sc = (int)lroundf(p->pv[P_SCALE].value);
    unsigned mask;
    if (sc >= 3) {
        const float nv = p->pv[P_NOTES].value;
        mask = nv >= 0.0f && nv <= 4095.0f ? (unsigned)lroundf(nv) : 0xFFFu;
    } else {
        mask = scale_mask[sc < 0 ? 0 : sc];
    }
    const float speed = p->pv[P_SPEED].value;
    /* frames in runs (pv_push_run): push, place the grains due after each
     * frame of the run, pull the run's output */
    for (int i = 0; i < n;) {
        const int64_t n0 = vc->sh.n;
        const int m = pv_push_run(vc, p->in, i, n - i);
        for (int j = ps_next_due(&vc->sh, n0, 0, m); j < m;
             j = ps_next_due(&vc->sh, n0, j + 1, m))
            while (ps_due_n(&vc->sh, n0 + j + 1))
                grain(s, p, i + j, key, mask, speed);
        ps_pull_run(&vc->sh, p->out, i, m);
        i += m;
    }
    pv_readout(vc, &p->readout[0], &p->readout[1]);
    p->readout[2] = (float)s->corr;
    p->readout[3] = s->note == NO_NOTE ? -1.0f : (float)s->note;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"key", "C|C#|D|D#|E|F|F#|G|G#|A|A#|B"},
    {"scale", "chromatic|major|minor|custom"},
    {"notes", NULL},
};

const mg_node_type mg_type_autotune = {
    .name = "autotune",
    .doc = "Pitch correction of a monophonic voice: YIN detection, nearest note of a key and "
           "scale (chromatic, major, minor, custom set), retune speed, amount; TD-PSOLA "
           "shifting keeps the formants and the level. Latency 28.6 ms (compensated); "
           "unvoiced input, noise and chords (dyads, triads, clusters: not one periodic "
           "note with its fundamental) pass through unchanged.",
    .default_channels = 1, .min_channels = 1, .max_channels = 2,
    MG_PARAMS(params), MG_PORTS(ports), MG_READOUTS(readouts),
    MG_CHOICES(choices),
    .state_size = sizeof(at_state),
    .prepare = prepare, .process = process, .reset = reset, .release = release,
    .latency = latency,
};
