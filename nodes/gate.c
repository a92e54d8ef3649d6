/* gate: noise gate with hysteresis, hold and a filtered side-chain key.
 *
 * Detector: the key is the `key` input when `sidechain` is on, else the main
 * input, through an optional high-pass and low-pass (12 dB/oct Butterworth
 * each); its level is the largest |key| over the channels (a stereo gate opens
 * and closes both sides together), compared sample by sample with two
 * thresholds, so no log is taken:
 *   closed -> open   when the level exceeds `threshold`;
 *   open   -> closed once the level has stayed below `threshold` minus
 *                    `hysteresis` for more than `hold` ms (rounded to whole
 *                    samples): after the last sample above that lower
 *                    threshold the gain stays exactly at unity for `hold`
 *                    samples, then the release starts. Hold also bridges the
 *                    zero crossings of the key, so set it longer than half a
 *                    period of the lowest key frequency (10 ms: 50 Hz).
 * Gain: a one-pole (analogue VCA style) movement in amplitude towards 1 (open)
 * or the `range` gain (closed) with time constants `attack` (opening) and
 * `release` (closing): 63.2% of the way after one time constant. Closed, the
 * gain settles at exactly `range` (the attenuation). Readouts: `gr` the gain
 * at the end of the block, `open` 1 or 0. */
#include "dsp_dynamics.h"
#include "mg_node.h"

enum {
    P_THRESH, P_HYST, P_RANGE, P_ATTACK, P_HOLD, P_RELEASE, P_SIDECHAIN, P_KEYHP, P_KEYHPON, P_KEYLP, P_KEYLPON,
};

static const mg_param_spec params[] = {
    {"threshold", "dB", "key level that opens the gate", -90.0f, 0.0f, -40.0f, MG_MAP_DB, MG_TAPER_LIN, 20.0f},
    {"hysteresis", "dB", "the gate closes this far below the threshold", 0.0f, 24.0f, 6.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"range", "dB", "gain when closed (the attenuation)", -100.0f, 0.0f, -80.0f, MG_MAP_DB, MG_TAPER_LIN, 20.0f},
    {"attack", "ms", "opening time constant (63% of the way)", 0.01f, 100.0f, 0.5f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"hold", "ms", "time the gate stays open after the key falls below threshold - hysteresis", 0.0f, 2000.0f, 10.0f, MG_MAP_LIN, MG_TAPER_LIN, 0.0f},
    {"release", "ms", "closing time constant (63% of the way)", 1.0f, 5000.0f, 100.0f, MG_MAP_LOG, MG_TAPER_LOG, 0.0f},
    {"sidechain", "", "1 detects on the `key` input instead of the main input", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"keyhp", "Hz", "key high-pass frequency (12 dB/oct Butterworth)", 20.0f, 5000.0f, 100.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"keyhpon", "", "1 switches the key high-pass in", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"keylp", "Hz", "key low-pass frequency (12 dB/oct Butterworth)", 200.0f, 20000.0f, 10000.0f, MG_MAP_LOG, MG_TAPER_LOG, 20.0f},
    {"keylpon", "", "1 switches the key low-pass in", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
    {"key", MG_PORT_IN, 0},
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"gr", "dB", MG_MAP_DB, 0},
    {"open", "", MG_MAP_LIN, 0},
};

#define GATE_MAX_CH 8
#define GATE_CNT_MAX (1 << 30)

typedef struct {
    int ch;
    double sr;
    float attack_ms, release_ms, hold_ms, hyst_db;
    float aa, ar;     /* attack, release coefficients */
    float hyst;       /* amplitude factor of the lower threshold */
    int hold_n;       /* samples */
    int open, cnt;
    float t, e;       /* gain = t + e: target (1 or range) and the decaying
                       * error, e <- a (e + t_prev - t) */
    dyn_biquad hp, lp;
    float hp_fc, lp_fc;
    float hpz[GATE_MAX_CH][2], lpz[GATE_MAX_CH][2];
    /* the last call's derivation of its parameters, kept while they stay
     * (mg_proc.pv_same): fast 1 when the gate is mono without key filters
     * and its threshold and range did not ramp; key the input (0) or the
     * key port (1); tc the lower threshold pv[threshold] * hyst */
    int fast, key;
    float tc;
} gate_state;

static void update(gate_state *s)
{
    s->hyst = powf(10.0f, -s->hyst_db / 20.0f);
    if (s->sr <= 0.0)
        return;
    s->aa = dyn_coef(s->attack_ms, s->sr);
    s->ar = dyn_coef(s->release_ms, s->sr);
    s->hold_n = (int)(s->hold_ms * 0.001 * s->sr + 0.5);
}

static void on_param(void *st, int index, float v)
{
    gate_state *s = st;
    switch (index) {
    case P_ATTACK: s->attack_ms = v; break;
    case P_RELEASE: s->release_ms = v; break;
    case P_HOLD: s->hold_ms = v; break;
    case P_HYST: s->hyst_db = v; break;
    default: return;
    }
    s->fast = 0;
    update(s);
}

static void reset(void *st)
{
    gate_state *s = st;
    s->open = 0;
    s->cnt = GATE_CNT_MAX;
    s->t = -1.0f; /* start closed, at the range gain (set in process) */
    s->e = 0.0f;
    s->fast = 0;
    memset(s->hpz, 0, sizeof s->hpz);
    memset(s->lpz, 0, sizeof s->lpz);
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    gate_state *s = st;
    s->ch = ctx->channels;
    s->sr = ctx->sample_rate;
    s->hp_fc = s->lp_fc = -1.0f;
    update(s);
    reset(s);
    return 0;
}

/* A block of one chunk that process_one would run as its steady open path
 * with the key scan (fully open, the hold cannot run out, mono, no key
 * filters, no ramps): the same expressions on the same values, reading
 * only the state's first lines and none of the parameters (kept by the
 * last call, whose values these are: mg_proc.pv_same). 1 when it ran. */
static inline __attribute__((always_inline)) int steady_open_block(gate_state *s, const mg_proc *p)
{
    const int m = p->nframes;
    if (!p->pv_same || !s->fast || !s->open || s->e != 0.0f || m > DYN_CHUNK ||
        s->cnt + m > s->hold_n)
        return 0;
    const float tc = s->tc;
    const float *key = p->in[s->key];
    int last = m - 1;
    while (last >= 0 && !(fabsf(key[last]) >= tc))
        last--;
    s->cnt = last >= 0 ? m - 1 - last : s->cnt + m;
    const float *x = p->in[0];
    float *y = p->out[0];
    MG_LOOP_N(i, m, y[i] = dyn_clean(x[i]));
    const float tp = s->t < 0.0f ? p->pv[P_RANGE].value : s->t;
    s->t = tp;
    s->e = 0.0f; /* (a -0.0 error becomes +0.0, as process_one's settle does) */
    p->readout[0] = tp + 0.0f;
    p->readout[1] = 1.0f;
    return 1;
}

static inline __attribute__((always_inline)) void process_one(void *st, const mg_proc *p)
{
    gate_state *s = st;
    if (steady_open_block(s, p))
        return;
    const int ch = s->ch;
    const mg_pv *pv = p->pv;
    const int sidechain = pv[P_SIDECHAIN].value >= 0.5f;
    const int hpon = pv[P_KEYHPON].value >= 0.5f;
    const int lpon = pv[P_KEYLPON].value >= 0.5f;
    const int filt = hpon || lpon;
    const float aa = s->aa, ar = s->ar, hyst = s->hyst;
    const int hold = s->hold_n;
    const int ramp = pv[P_THRESH].ramp || pv[P_RANGE].ramp;
    s->fast = ch == 1 && !filt && !ramp;
    s->key = sidechain;
    s->tc = pv[P_THRESH].value * hyst;
    int open = s->open, cnt = s->cnt;
    float tp = s->t < 0.0f ? pv[P_RANGE].value : s->t, e = s->e;

    float lvl[DYN_CHUNK], tmp[DYN_CHUNK];
    /* chunks on the engine's clock (frames k*DYN_CHUNK .. k*DYN_CHUNK + 63 of
     * mg_proc.time), not from the call's start: the key filters' designs and
     * the settle below happen at the same samples whatever the block size */
    const int lead = (int)(p->time % DYN_CHUNK);
    for (int o = 0, m; o < p->nframes; o += m) {
        m = DYN_CHUNK - (o ? 0 : lead);
        m = p->nframes - o < m ? p->nframes - o : m;
        /* the key filters are designed at the first frame of a chunk of the
         * grid (a call that starts inside one keeps the design made at its
         * start), or at once when there is none yet */
        const int grid = o || !lead;
        if (hpon) {
            const float fc = pv[P_KEYHP].ramp ? pv[P_KEYHP].ramp[o] : pv[P_KEYHP].value;
            if (fc != s->hp_fc && (grid || s->hp_fc < 0.0f)) {
                dyn_butter(&s->hp, 1, fc, s->sr);
                s->hp_fc = fc;
            }
        }
        if (lpon) {
            const float fc = pv[P_KEYLP].ramp ? pv[P_KEYLP].ramp[o] : pv[P_KEYLP].value;
            if (fc != s->lp_fc && (grid || s->lp_fc < 0.0f)) {
                dyn_butter(&s->lp, 0, fc, s->sr);
                s->lp_fc = fc;
            }
        }
        /* fully open and the hold cannot run out within this chunk: the gain
         * stays exactly 1, only the hold counter moves (see below) */
        const int steady_open = !ramp && open && e == 0.0f && cnt + m <= hold;
        /* which a mono gate without key filters finds from the key itself:
         * its level is |key|, and the filters (whose states must move) are
         * off, so the level pass is skipped */
        const int key_scan = steady_open && ch == 1 && !filt;
        /* key level: max |key| over the channels */
        for (int c = 0; c < ch && !key_scan; c++) {
            const float *src = (sidechain ? p->in[ch + c] : p->in[c]) + o;
            if (filt) {
                for (int i = 0; i < m; i++)
                    tmp[i] = dyn_clean(src[i]);
                if (hpon)
                    dyn_biquad_run(&s->hp, s->hpz[c], tmp, m);
                if (lpon)
                    dyn_biquad_run(&s->lp, s->lpz[c], tmp, m);
                src = tmp;
            }
            if (c == 0)
                MG_LOOP_N(i, m, lvl[i] = fabsf(src[i]));
            else
                MG_LOOP_N(i, m, lvl[i] = dyn_max(lvl[i], fabsf(src[i])));
        }
        /* state machine and gain, into lvl[] */
        int unity = 0;
        if (steady_open) {
            /* the last sample at or above the lower threshold restarts the
             * hold count */
            const float tc = pv[P_THRESH].value * hyst;
            int last = m - 1;
            if (key_scan) {
                const float *key = (sidechain ? p->in[1] : p->in[0]) + o;
                while (last >= 0 && !(fabsf(key[last]) >= tc))
                    last--;
            } else {
                while (last >= 0 && !(lvl[last] >= tc))
                    last--;
            }
            cnt = last >= 0 ? m - 1 - last : cnt + m;
            unity = 1;
        } else if (!ramp && !open && e == 0.0f && tp == pv[P_RANGE].value &&
                   dyn_peak(lvl, m, 0.0f) <= pv[P_THRESH].value) {
            /* fully closed and nothing opens it: a constant gain (the hold
             * counter only matters once open, and opening resets it) */
            for (int i = 0; i < m; i++)
                lvl[i] = tp;
        } else if (!ramp) {
            const float to = pv[P_THRESH].value, tc = to * hyst, rg = pv[P_RANGE].value;
            for (int i = 0; i < m; i++) {
                const float v = lvl[i]; /* NaN compares false: reads as silence */
                cnt = v >= tc ? 0 : (cnt < GATE_CNT_MAX ? cnt + 1 : cnt);
                open = open ? cnt <= hold : v > to;
                /* one-pole towards 1 (open) or rg (closed), as the error e
                 * to the target: it decays to exactly 0 */
                const float t = open ? 1.0f : rg;
                e = (open ? aa : ar) * (e + (tp - t));
                tp = t;
                lvl[i] = t + e;
            }
        } else {
            for (int i = 0; i < m; i++) {
                const float to = mg_pv_at(&pv[P_THRESH], o + i), tc = to * hyst;
                const float v = lvl[i];
                cnt = v >= tc ? 0 : (cnt < GATE_CNT_MAX ? cnt + 1 : cnt);
                open = open ? cnt <= hold : v > to;
                const float t = open ? 1.0f : mg_pv_at(&pv[P_RANGE], o + i);
                e = (open ? aa : ar) * (e + (tp - t));
                tp = t;
                lvl[i] = t + e;
            }
        }
        /* settle on the target once within 1e-6 (-120 dB) of it: long
         * releases would otherwise take minutes to reach exact zero. Only at
         * the end of a chunk of the clock's grid (a call that ends inside one
         * leaves it to the next call), so where it settles does not depend
         * on where calls begin */
        if (!(fabsf(e) > 1e-6f * tp) && (p->time + (uint64_t)(o + m)) % DYN_CHUNK == 0)
            e = 0.0f; /* (NaN too) */
        for (int c = 0; c < ch; c++) {
            const float *x = p->in[c] + o;
            float *y = p->out[c] + o;
            if (unity)
                MG_LOOP_N(i, m, y[i] = dyn_clean(x[i]));
            else
                MG_LOOP_N(i, m, y[i] = dyn_clean(x[i]) * lvl[i]);
        }
    }
    s->open = open;
    s->cnt = cnt;
    s->t = tp;
    s->e = e;
    p->readout[0] = tp + e;
    p->readout[1] = (float)open;
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    process_one(st, p);
}

/* Ganged (the strip's gates run as one step of the plan, as its EQs and
 * compressors do): each member's block as process runs it, in one call. */
MG_HOT static void process_many(void *const *states, const mg_proc *procs, int k)
{
    for (int j = 0; j < k; j++)
        process_one(states[j], &procs[j]);
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"sidechain", "main|key"},
    {"keyhpon", "off|on"},
    {"keylpon", "off|on"},
};

const mg_node_type mg_type_gate = {
    .name = "gate",
    .doc = "Noise gate: opens above `threshold`, closes `hold` ms after the key stays below "
           "threshold - `hysteresis`; attack/release are 63% time constants of the gain; closed "
           "gain = `range`; side-chain `key` input with high-pass and low-pass; readouts `gr`, `open`.",
    .default_channels = 1,
    .min_channels = 1,
    .max_channels = GATE_MAX_CH,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(gate_state),
    .prepare = prepare,
    .process = process,
    .process_many = process_many,
    .reset = reset,
    .on_param = on_param,
};
