/* A JACK client pair that measures MIDI in -> parameter applied, in frames
 * (bench/midi_latency.py builds and runs it).
 *
 * "mgprobe-tx" sends a steady DC level on its audio port `src` and, every
 * `every` periods, a CC (channel 1, number 7, alternating 0 and 127) on its
 * MIDI port `ctl` at a pseudo-random frame of the period; it notes the
 * event's absolute frame (jack_last_frame_time + offset). "mgprobe-rx"
 * watches its audio port `in` (mixgraph's output: src through a gain the CC
 * moves) and notes the absolute frame of the first sample that differs from
 * the steady level. Two clients, so that JACK orders tx -> mixgraph -> rx in
 * one cycle and no feedback loop adds a period. Prints one latency per line.
 *
 * usage: midi_probe <mixgraph client name> <seconds> <every>  */
#include <jack/jack.h>
#include <jack/midiport.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXLAT 100000

static jack_client_t *tx, *rx;
static jack_port_t *ctl, *src, *in;
static int every = 8;
static uint32_t rng = 12345;
static unsigned long cycles;
static _Atomic uint64_t sent_at;   /* absolute frame of the pending event, 0: none */
static _Atomic int value;          /* the CC value sent last */
static float steady = -1.0f;
static uint64_t lat[MAXLAT];
static _Atomic int n_lat;
static _Atomic int missed;
static _Atomic int ready;         /* rx sees a steady level: tx may send */

static int tx_cb(jack_nframes_t n, void *arg)
{
    (void)arg;
    float *s = jack_port_get_buffer(src, n);
    for (jack_nframes_t i = 0; i < n; i++)
        s[i] = 0.5f;
    void *mb = jack_port_get_buffer(ctl, n);
    jack_midi_clear_buffer(mb);
    cycles++;
    if (cycles > 50 && cycles % (unsigned long)every == 0 && atomic_load(&sent_at) == 0 &&
        atomic_load(&ready)) {
        rng = rng * 1103515245u + 12345u;
        jack_nframes_t f = (rng >> 8) % n;
        int v = atomic_load(&value) ? 0 : 127;
        unsigned char msg[3] = {0xB0, 7, (unsigned char)v};
        if (jack_midi_event_write(mb, f, msg, 3) == 0) {
            atomic_store(&value, v);
            atomic_store(&ready, 0);
            atomic_store(&sent_at, (uint64_t)jack_last_frame_time(tx) + f);
        }
    }
    return 0;
}

static int rx_cb(jack_nframes_t n, void *arg)
{
    (void)arg;
    const float *x = jack_port_get_buffer(in, n);
    const uint64_t t0 = jack_last_frame_time(rx);
    const uint64_t at = atomic_load(&sent_at);
    for (jack_nframes_t i = 0; i < n; i++) {
        if (steady < 0.0f)
            break;
        if (fabsf(x[i] - steady) > 1e-7f) {
            if (at && t0 + i >= at) {
                int k = atomic_load(&n_lat);
                if (k < MAXLAT) {
                    lat[k] = t0 + i - at;
                    atomic_store(&n_lat, k + 1);
                }
                atomic_store(&sent_at, 0);
            }
            steady = -1.0f; /* settle: the level is taken again once it is still */
            break;
        }
    }
    if (steady < 0.0f) { /* steady again once a whole period holds one value */
        jack_nframes_t i = 1;
        while (i < n && x[i] == x[0])
            i++;
        if (i == n)
            steady = x[0];
    }
    if (steady >= 0.0f && !at)
        atomic_store(&ready, 1);
    /* an event that moved nothing within 0.5 s: count it and go on */
    if (at && t0 > at + 24000) {
        atomic_fetch_add(&missed, 1);
        atomic_store(&sent_at, 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s <mixgraph client> <seconds> <every>\n", argv[0]);
        return 2;
    }
    const char *mg = argv[1];
    int seconds = atoi(argv[2]);
    every = atoi(argv[3]) > 0 ? atoi(argv[3]) : 8;
    tx = jack_client_open("mgprobe-tx", JackNoStartServer, NULL);
    rx = jack_client_open("mgprobe-rx", JackNoStartServer, NULL);
    if (!tx || !rx) {
        fprintf(stderr, "no JACK server\n");
        return 1;
    }
    ctl = jack_port_register(tx, "ctl", JACK_DEFAULT_MIDI_TYPE, JackPortIsOutput, 0);
    src = jack_port_register(tx, "src", JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
    in = jack_port_register(rx, "in", JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
    jack_set_process_callback(tx, tx_cb, NULL);
    jack_set_process_callback(rx, rx_cb, NULL);
    if (jack_activate(tx) || jack_activate(rx)) {
        fprintf(stderr, "cannot activate\n");
        return 1;
    }
    char a[256], b[256];
    snprintf(b, sizeof b, "%s:midi_in", mg);
    int bad = jack_connect(tx, "mgprobe-tx:ctl", b);
    snprintf(b, sizeof b, "%s:in_1", mg);
    bad |= jack_connect(tx, "mgprobe-tx:src", b);
    snprintf(a, sizeof a, "%s:out_1", mg);
    bad |= jack_connect(rx, a, "mgprobe-rx:in");
    if (bad) {
        fprintf(stderr, "cannot connect to %s's ports\n", mg);
        return 1;
    }
    sleep((unsigned)seconds);
    jack_deactivate(tx);
    jack_deactivate(rx);
    printf("period %u rate %u missed %d\n", jack_get_buffer_size(tx), jack_get_sample_rate(tx),
           atomic_load(&missed));
    for (int k = 0; k < atomic_load(&n_lat); k++)
        printf("%llu\n", (unsigned long long)lat[k]);
    jack_client_close(tx);
    jack_client_close(rx);
    return 0;
}
