/* MIDI controllers mapped to parameters, on the audio thread.
 *
 * The JACK process callback (csrc/jack.c) hands every event of mixgraph:midi_in
 * to mg_midi_input with its frame. The decoder keeps running status, skips
 * real-time bytes, counts SysEx (one may span several events: a long one
 * comes in parts, the later ones data bytes up to its F7) and malformed
 * input (a SysEx cut by a status byte, a data byte with no status, a
 * truncated message), assembles 14-bit CCs,
 * NRPNs and pitch bend, and looks the control up in the map table the
 * control thread published. A mapped parameter is moved here, on the audio
 * thread: its value comes from the map's lookup table (the parameter's taper,
 * precomputed by the control thread: 128 entries for 7-bit controls, 16384
 * for 14-bit ones and encoders) and is scheduled in the engine at the
 * event's frame plus one period, so a control applies with a constant
 * latency of one period whenever the control thread wakes. Soft takeover
 * and encoders read the parameter's target here too.
 *
 * Every match (and, while learning, every control) goes to the control
 * thread through a lock-free ring (mg_midi_poll): it records the value in
 * the model, tells subscribers, dispatches addresses that are no parameter
 * (/cue/go ...) and sends feedback, which comes back through a second ring
 * (mg_midi_send) that the process callback writes to mixgraph:midi_out.
 *
 * Tables: the control thread builds a new table for every change and
 * publishes it (mg_midi_publish); the audio thread adopts it at the start of
 * a period and reports the generation it uses (mg_midi_adopted), after which
 * the control thread frees older tables. Per-map state (pickup, the last
 * value) lives in slots that survive table swaps. No allocation, lock or
 * blocking on the audio thread. */
#include "mg_api.h"
#include "mg_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t slot, stamp, kind, channel, number, mode, index, pickup;
    mg_node *node;
    float *lut;
    int32_t lut_n;
    float step;
} mg_midi_map;

struct mg_midi_table {
    uint32_t gen;
    int n;
    mg_midi_map maps[];
};

typedef struct {
    int32_t stamp;
    int picked;
    float last_norm;     /* the control's last position, -1: none yet */
    float last_applied;  /* the value this map last set (NAN: none) */
    uint64_t pending_until;
} mg_midi_slot;

typedef struct {
    uint8_t len;
    uint8_t b[15];
} mg_midi_msg;

struct mg_midi {
    _Atomic(mg_midi_table *) pending;  /* control -> audio */
    mg_midi_table *cur;                /* audio (the consumer of pending) */
    _Atomic uint32_t adopted;          /* generation of cur */
    mg_ring ev;                        /* audio -> control: mg_midi_event */
    mg_ring out;                       /* control -> audio: mg_midi_msg */
    _Atomic int learn;
    /* decoder state (audio) */
    uint8_t status;                    /* running status, 0: none */
    uint8_t in_sysex;                  /* 1: inside a SysEx (maybe from an earlier event) */
    uint8_t cc_msb[16][32], cc_lsb[16][32];
    int16_t nrpn_num[16];              /* -1: no NRPN selected */
    uint8_t nrpn_sel_msb[16], nrpn_sel_lsb[16], nrpn_msb[16];
    mg_midi_slot slot[MG_MIDI_MAX_MAPS];
    float current[MG_MIDI_MAX_MAPS];   /* control path: the values the model holds */
    _Atomic uint8_t held[MG_MIDI_MAX_MAPS]; /* control -> audio: the parameter is touched */
    _Atomic uint64_t n_events, n_applied, n_pickup, n_malformed, n_sysex, n_lost,
        n_sent, n_out_dropped, n_unmapped, n_held;
};

mg_midi *mg_midi_new(void)
{
    mg_midi *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (mg_ring_init(&m->ev, 8192, sizeof(mg_midi_event)) ||
        mg_ring_init(&m->out, 1024, sizeof(mg_midi_msg))) {
        mg_midi_free(m);
        return NULL;
    }
    for (int c = 0; c < 16; c++)
        m->nrpn_num[c] = -1;
    for (int s = 0; s < MG_MIDI_MAX_MAPS; s++)
        m->slot[s].stamp = -1;
    return m;
}

void mg_midi_table_free(mg_midi_table *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++)
        free(t->maps[i].lut);
    free(t);
}

void mg_midi_free(mg_midi *m)
{
    if (!m)
        return;
    mg_midi_table_free(atomic_load(&m->pending));
    mg_midi_table_free(m->cur);
    mg_ring_destroy(&m->ev);
    mg_ring_destroy(&m->out);
    free(m);
}

mg_midi_table *mg_midi_table_new(int n, uint32_t gen)
{
    if (n < 0 || n > MG_MIDI_MAX_MAPS)
        return NULL;
    mg_midi_table *t = calloc(1, sizeof *t + (size_t)n * sizeof(mg_midi_map));
    if (!t)
        return NULL;
    t->gen = gen;
    t->n = 0;
    return t;
}

int mg_midi_table_add(mg_midi_table *t, int slot, int stamp, int kind, int channel,
                      int number, int mode, mg_node *node, int index, int pickup,
                      const float *lut, int lut_n, float step)
{
    if (slot < 0 || slot >= MG_MIDI_MAX_MAPS || lut_n < 2 || lut_n > 16384 ||
        channel < 0 || channel > 15)
        return -1;
    mg_midi_map *mp = &t->maps[t->n];
    mp->lut = malloc(sizeof(float) * (size_t)lut_n);
    if (!mp->lut)
        return -1;
    memcpy(mp->lut, lut, sizeof(float) * (size_t)lut_n);
    mp->slot = slot;
    mp->stamp = stamp;
    mp->kind = kind;
    mp->channel = channel;
    mp->number = number;
    mp->mode = mode;
    mp->node = node;
    mp->index = index;
    mp->pickup = pickup;
    mp->lut_n = lut_n;
    mp->step = step;
    t->n++;
    return 0;
}

mg_midi_table *mg_midi_publish(mg_midi *m, mg_midi_table *t)
{
    return atomic_exchange_explicit(&m->pending, t, memory_order_acq_rel);
}

uint32_t mg_midi_adopted(mg_midi *m) { return atomic_load(&m->adopted); }

void mg_midi_set_learn(mg_midi *m, int on) { atomic_store(&m->learn, on); }

void mg_midi_set_current(mg_midi *m, int slot, float value)
{
    if (slot >= 0 && slot < MG_MIDI_MAX_MAPS)
        m->current[slot] = value;
}

void mg_midi_set_held(mg_midi *m, int slot, int on)
{
    if (slot >= 0 && slot < MG_MIDI_MAX_MAPS)
        atomic_store_explicit(&m->held[slot], (uint8_t)(on != 0), memory_order_release);
}

int mg_midi_poll(mg_midi *m, mg_midi_event *ev) { return mg_ring_pop(&m->ev, ev); }

int mg_midi_send(mg_midi *m, const uint8_t *bytes, int len)
{
    if (len < 1 || len > 15)
        return 0;
    mg_midi_msg msg = {.len = (uint8_t)len};
    memcpy(msg.b, bytes, (size_t)len);
    if (!mg_ring_push(&m->out, &msg)) {
        atomic_fetch_add_explicit(&m->n_out_dropped, 1, memory_order_relaxed);
        return 0;
    }
    return 1;
}

int mg_midi_next_out(mg_midi *m, uint8_t *bytes)
{
    mg_midi_msg msg;
    if (!mg_ring_pop(&m->out, &msg))
        return 0;
    memcpy(bytes, msg.b, msg.len);
    atomic_fetch_add_explicit(&m->n_sent, 1, memory_order_relaxed);
    return msg.len;
}

void mg_midi_count_out_dropped(mg_midi *m, uint64_t n)
{
    atomic_fetch_add_explicit(&m->n_out_dropped, n, memory_order_relaxed);
}

int mg_midi_stats(mg_midi *m, uint64_t *out, int max)
{
    const uint64_t all[] = {
        atomic_load(&m->n_events),    atomic_load(&m->n_applied), atomic_load(&m->n_pickup),
        atomic_load(&m->n_malformed), atomic_load(&m->n_sysex),   atomic_load(&m->n_lost),
        atomic_load(&m->n_sent),      atomic_load(&m->n_out_dropped),
        atomic_load(&m->n_unmapped),  atomic_load(&m->n_held)};
    const int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n && i < max; i++)
        out[i] = all[i];
    return n;
}

/* ---- audio side -------------------------------------------------------------- */

void mg_midi_begin(mg_midi *m)
{
    mg_midi_table *t = atomic_exchange_explicit(&m->pending, NULL, memory_order_acq_rel);
    if (t) {
        m->cur = t;
        atomic_store_explicit(&m->adopted, t->gen, memory_order_release);
    }
}

static void post(mg_midi *m, const mg_midi_event *ev)
{
    if (!mg_ring_push(&m->ev, ev))
        atomic_fetch_add_explicit(&m->n_lost, 1, memory_order_relaxed);
}

/* The control position (0..1) nearest to value v in a monotonic table. */
static float lut_norm(const float *lut, int n, float v)
{
    const int up = lut[n - 1] >= lut[0];
    int lo = 0, hi = n - 1;
    while (lo < hi) { /* first index whose value reaches v */
        int mid = (lo + hi) / 2;
        if (up ? lut[mid] < v : lut[mid] > v)
            lo = mid + 1;
        else
            hi = mid;
    }
    int best = lo;
    if (lo > 0 && fabsf(lut[lo - 1] - v) <= fabsf(lut[lo] - v))
        best = lo - 1;
    return (float)best / (float)(n - 1);
}

static inline float lut_at(const mg_midi_map *mp, float norm)
{
    if (norm < 0.0f)
        norm = 0.0f;
    if (norm > 1.0f)
        norm = 1.0f;
    return mp->lut[(int)lrintf(norm * (float)(mp->lut_n - 1))];
}

static int close_enough(float a, float b)
{
    return fabsf(a - b) <= 1e-5f * (1.0f + fabsf(a));
}

/* One mapped control moved: norm is its position (absolute kinds), delta its
 * ticks (encoders), on its note state (notes). */
static void apply_map(mg_midi *m, mg_engine *e, const mg_midi_map *mp, int value, int on,
                      uint64_t time, uint64_t delay, int number_seen)
{
    mg_midi_slot *st = &m->slot[mp->slot];
    if (st->stamp != mp->stamp) {
        st->stamp = mp->stamp;
        st->picked = !mp->pickup;
        st->last_norm = -1.0f;
        st->last_applied = NAN;
        st->pending_until = 0;
    }
    if (atomic_load_explicit(&m->held[mp->slot], memory_order_acquire)) {
        /* a client's finger is on the parameter (/touch): the control is ignored,
         * and one without a motor must pick the value up again once it is let go */
        st->picked = !mp->pickup;
        atomic_fetch_add_explicit(&m->n_held, 1, memory_order_relaxed);
        return;
    }
    mg_midi_event ev = {.time = time, .slot = mp->slot, .kind = mp->kind,
                        .channel = mp->channel, .number = number_seen, .value = value};
    const int param = mp->node != NULL;
    float cur = NAN;
    if (param)
        cur = e ? mg_node_param_target(mp->node, mp->index) : m->current[mp->slot];
    float out;
    int act = 1;
    switch (mp->kind) {
    case MG_MIDI_NOTE:
        if (mp->mode == MG_MIDI_TOGGLE) {
            if (!on) {
                act = 0;
                break;
            }
            const float lo = mp->lut[0], hi = mp->lut[mp->lut_n - 1];
            const float ref = param ? cur : st->last_applied;
            /* nearer the top: go to the bottom, else to the top */
            out = (!isnan(ref) && fabsf(ref - hi) < fabsf(ref - lo)) ? lo : hi;
        } else if (mp->mode == MG_MIDI_TRIGGER) {
            if (!on) {
                act = 0;
                break;
            }
            out = mp->lut[mp->lut_n - 1];
        } else {
            out = on ? mp->lut[mp->lut_n - 1] : mp->lut[0];
        }
        break;
    case MG_MIDI_PC:
        out = (float)value;
        break;
    case MG_MIDI_ENC_R:
    case MG_MIDI_ENC_L:
    case MG_MIDI_ENC_2:
    case MG_MIDI_ENC_B: {
        int d;
        if (mp->kind == MG_MIDI_ENC_R)
            d = (value & 0x40) ? (value & 0x3f) : -(value & 0x3f);
        else if (mp->kind == MG_MIDI_ENC_L)
            d = (value & 0x40) ? -(value & 0x3f) : (value & 0x3f);
        else if (mp->kind == MG_MIDI_ENC_2)
            d = value < 64 ? value : value - 128;
        else
            d = value - 64;
        ev.value = d;
        float base = param ? cur : st->last_applied;
        float n0 = isnan(base) ? 0.0f : lut_norm(mp->lut, mp->lut_n, base);
        out = lut_at(mp, n0 + (float)d * mp->step);
        break;
    }
    default: { /* absolute: cc, cc14, nrpn, pb */
        const int maxv = mp->kind == MG_MIDI_CC ? 127 : 16383;
        const float norm = (float)value / (float)maxv;
        out = lut_at(mp, norm);
        if (param && mp->pickup) {
            /* moved from elsewhere since this map last set it: take over again */
            if (st->picked && !isnan(st->last_applied) && time >= st->pending_until &&
                !close_enough(cur, st->last_applied))
                st->picked = 0;
            if (!st->picked) {
                const float cn = lut_norm(mp->lut, mp->lut_n, cur);
                const float tol = 1.5f / (float)maxv;
                const float ln = st->last_norm;
                if (fabsf(norm - cn) <= tol || close_enough(out, cur) ||
                    (ln >= 0.0f && (ln - cn) * (norm - cn) <= 0.0f))
                    st->picked = 1;
            }
            st->last_norm = norm;
            if (!st->picked) {
                ev.flags = MG_MIDI_F_PICKUP;
                ev.out = out;
                atomic_fetch_add_explicit(&m->n_pickup, 1, memory_order_relaxed);
                post(m, &ev);
                return;
            }
        }
        break;
    }
    }
    if (!act)
        return;
    ev.out = out;
    if (param && e) {
        const uint64_t at = time + delay;
        if (mg_engine_schedule_param(e, mp->node, mp->index, out, at) >= 0) {
            ev.flags = MG_MIDI_F_APPLIED;
            ev.applied_at = at;
            st->pending_until = at;
            atomic_fetch_add_explicit(&m->n_applied, 1, memory_order_relaxed);
        } else {
            return; /* the node left the graph: the next table drops the map */
        }
    } else {
        ev.flags = MG_MIDI_F_DISPATCH;
    }
    st->last_applied = out;
    post(m, &ev);
}

/* Apply every map this reading of a message hits; 1 if any did. One message can
 * be read several ways (a CC below 64 is also half of a 14-bit CC, CC 6/38 also
 * an NRPN's data): message() counts it unmapped once, when no reading hit. */
static int match(mg_midi *m, mg_engine *e, int kind, int ch, int number, int value, int on,
                 uint64_t time, uint64_t delay)
{
    const mg_midi_table *t = m->cur;
    int found = 0;
    if (t) {
        for (int i = 0; i < t->n; i++) {
            const mg_midi_map *mp = &t->maps[i];
            if (mp->channel != ch)
                continue;
            int k = mp->kind;
            int hit;
            if (k >= MG_MIDI_ENC_R && k <= MG_MIDI_ENC_B)
                hit = kind == MG_MIDI_CC && mp->number == number;
            else if (k == MG_MIDI_PB || k == MG_MIDI_PC)
                hit = kind == k;
            else
                hit = kind == k && mp->number == number;
            if (hit) {
                found = 1;
                apply_map(m, e, mp, value, on, time, delay, number);
            }
        }
    }
    if (!found) {
        if (atomic_load_explicit(&m->learn, memory_order_relaxed)) {
            mg_midi_event ev = {.time = time, .slot = -1, .kind = kind, .channel = ch,
                                .number = number, .value = value,
                                .flags = on ? 0 : MG_MIDI_F_OFF};
            post(m, &ev);
        }
    }
    return found;
}

static void message(mg_midi *m, mg_engine *e, uint8_t status, uint8_t d1, uint8_t d2,
                    uint64_t time, uint64_t delay)
{
    const int ch = status & 0x0f;
    int hit = 0;
    atomic_fetch_add_explicit(&m->n_events, 1, memory_order_relaxed);
    switch (status & 0xf0) {
    case 0x80:
    case 0x90: {
        const int on = (status & 0xf0) == 0x90 && d2 > 0;
        hit |= match(m, e, MG_MIDI_NOTE, ch, d1, d2, on, time, delay);
        break;
    }
    case 0xB0:
        if (d1 < 32) {
            m->cc_msb[ch][d1] = d2;
            m->cc_lsb[ch][d1] = 0;
            hit |= match(m, e, MG_MIDI_CC14, ch, d1, (d2 << 7), 1, time, delay);
        } else if (d1 < 64) {
            m->cc_lsb[ch][d1 - 32] = d2;
            hit |= match(m, e, MG_MIDI_CC14, ch, d1 - 32,
                         (m->cc_msb[ch][d1 - 32] << 7) | d2, 1, time, delay);
        }
        if (d1 == 99) {
            m->nrpn_sel_msb[ch] = d2;
            m->nrpn_num[ch] = (int16_t)((d2 << 7) | m->nrpn_sel_lsb[ch]);
        } else if (d1 == 98) {
            m->nrpn_sel_lsb[ch] = d2;
            m->nrpn_num[ch] = (int16_t)((m->nrpn_sel_msb[ch] << 7) | d2);
        } else if (d1 == 101 || d1 == 100) {
            m->nrpn_num[ch] = -1; /* an RPN is selected now */
        } else if (d1 == 6 && m->nrpn_num[ch] >= 0) {
            m->nrpn_msb[ch] = d2;
            hit |= match(m, e, MG_MIDI_NRPN, ch, m->nrpn_num[ch], d2 << 7, 1, time, delay);
        } else if (d1 == 38 && m->nrpn_num[ch] >= 0) {
            hit |= match(m, e, MG_MIDI_NRPN, ch, m->nrpn_num[ch],
                         (m->nrpn_msb[ch] << 7) | d2, 1, time, delay);
        }
        hit |= match(m, e, MG_MIDI_CC, ch, d1, d2, 1, time, delay);
        break;
    case 0xC0:
        hit |= match(m, e, MG_MIDI_PC, ch, 0, d1, 1, time, delay);
        break;
    case 0xE0:
        hit |= match(m, e, MG_MIDI_PB, ch, 0, (d2 << 7) | d1, 1, time, delay);
        break;
    default: /* poly and channel pressure: not mapped */
        break;
    }
    if (!hit)
        atomic_fetch_add_explicit(&m->n_unmapped, 1, memory_order_relaxed);
}

static void malformed(mg_midi *m)
{
    atomic_fetch_add_explicit(&m->n_malformed, 1, memory_order_relaxed);
}

void mg_midi_input(mg_midi *m, mg_engine *e, const uint8_t *b, int len, uint64_t time,
                   uint64_t delay)
{
    int i = 0;
    while (i < len) {
        uint8_t s = b[i];
        if (s >= 0xF8) { /* real-time: no effect on running status */
            i++;
            continue;
        }
        if (m->in_sysex) { /* SysEx: its data bytes, here or in later events, to F7 */
            if (s < 0x80) {
                i++;
                continue;
            }
            m->in_sysex = 0;
            if (s == 0xF7) {
                atomic_fetch_add_explicit(&m->n_sysex, 1, memory_order_relaxed);
                i++;
                continue;
            }
            malformed(m); /* a status byte cut it short: that byte starts afresh */
        }
        if (s == 0xF0) { /* SysEx: counted at its F7, never mapped; clears running status */
            m->in_sysex = 1;
            m->status = 0;
            i++;
            continue;
        }
        if (s >= 0xF1) { /* system common: skipped; clears running status */
            const int need = s == 0xF2 ? 2 : (s == 0xF1 || s == 0xF3) ? 1 : 0;
            if (s == 0xF7 || s == 0xF4 || s == 0xF5)
                malformed(m);
            m->status = 0;
            i += 1 + need;
            continue;
        }
        uint8_t status;
        if (s >= 0x80) {
            status = s;
            i++;
        } else if (m->status) {
            status = m->status; /* running status */
        } else {
            malformed(m); /* a data byte with no status */
            i++;
            continue;
        }
        const int need = ((status & 0xf0) == 0xC0 || (status & 0xf0) == 0xD0) ? 1 : 2;
        uint8_t d[2] = {0, 0};
        int got = 0;
        while (got < need && i < len && (b[i] < 0x80 || b[i] >= 0xF8)) {
            if (b[i] < 0x80) /* real-time bytes may come inside a message */
                d[got++] = b[i];
            i++;
        }
        if (got < need) {
            malformed(m); /* truncated: the next status byte (if any) starts afresh */
            m->status = 0;
            continue;
        }
        m->status = status;
        message(m, e, status, d[0], d[1], time, delay);
    }
}
