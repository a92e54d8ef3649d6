/* A test's JACK clients: one plays a signal, another records what comes
 * back, both indexed by JACK's frame clock (jack_last_frame_time), so that the
 * recording is aligned with what was played to the frame: the lag of the
 * returned signal is the path's latency, exactly. Two clients rather than one
 * with an output and an input, so that the path out and back is not a
 * feedback loop in the JACK graph (JACK would add a period to break it).
 *
 *   jack_probe SERVER NAME SIGNAL.f32 RECORD.f32 TAIL NCH DEST_1..DEST_N SRC_1..SRC_N
 *
 * SIGNAL.f32: raw float32, NCH channels interleaved, played out of
 * NAME_tx:out_<c> (connected to DEST_c) from the first cycle after every
 * connection is made. RECORD.f32: what reached NAME_rx:in_<c> (connected from
 * SRC_c) from that same frame on, len(SIGNAL) + TAIL frames, interleaved.
 * Prints "period <n> xruns <n>" on success. Built by the test that uses it
 * (tests/test_netjack.py) with `cc jack_probe.c -ljack`. */
#define _POSIX_C_SOURCE 200809L
#include <jack/jack.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXCH 16

static jack_client_t *tx, *rx;
static jack_port_t *out_port[MAXCH], *in_port[MAXCH];
static int nch;
static float *sig, *rec;
static size_t sig_len, rec_len;  /* frames */
static atomic_int go, started, done;
static _Atomic jack_nframes_t start; /* frame time of the first played frame */
static atomic_int xruns;

static int play(jack_nframes_t n, void *arg)
{
    (void)arg;
    const jack_nframes_t now = jack_last_frame_time(tx);
    if (atomic_load(&go) && !atomic_load(&started)) {
        atomic_store(&start, now);
        atomic_store(&started, 1);
    }
    const size_t at = atomic_load(&started) ? (size_t)(jack_nframes_t)(now - atomic_load(&start))
                                            : (size_t)-1;
    for (int c = 0; c < nch; c++) {
        float *out = jack_port_get_buffer(out_port[c], n);
        for (jack_nframes_t i = 0; i < n; i++) {
            const size_t k = at + i;
            out[i] = at != (size_t)-1 && k < sig_len ? sig[k * (size_t)nch + (size_t)c] : 0.0f;
        }
    }
    return 0;
}

static int record(jack_nframes_t n, void *arg)
{
    (void)arg;
    if (!atomic_load(&started) || atomic_load(&done))
        return 0;
    const jack_nframes_t now = jack_last_frame_time(rx);
    const size_t at = (size_t)(jack_nframes_t)(now - atomic_load(&start));
    if (at > rec_len)  /* a cycle before the first one played */
        return 0;
    for (int c = 0; c < nch; c++) {
        const float *in = jack_port_get_buffer(in_port[c], n);
        for (jack_nframes_t i = 0; i < n && at + i < rec_len; i++)
            rec[(at + i) * (size_t)nch + (size_t)c] = in[i];
    }
    if (at + n >= rec_len)
        atomic_store(&done, 1);
    return 0;
}

static int on_xrun(void *arg)
{
    (void)arg;
    atomic_fetch_add(&xruns, 1);
    return 0;
}

static jack_client_t *open_client(const char *server, const char *name)
{
    jack_status_t status;
    jack_client_t *c = jack_client_open(name, JackNoStartServer | JackServerName, &status,
                                        server);
    if (!c)
        fprintf(stderr, "cannot open client %s on JACK server %s (status 0x%x)\n", name, server,
                (unsigned)status);
    return c;
}

int main(int argc, char **argv)
{
    if (argc < 7 || (nch = atoi(argv[6])) < 1 || nch > MAXCH || argc != 7 + 2 * nch) {
        fprintf(stderr, "usage: %s SERVER NAME SIGNAL.f32 RECORD.f32 TAIL NCH DEST.. SRC..\n",
                argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    sig_len = (size_t)ftell(f) / sizeof(float) / (size_t)nch;
    fseek(f, 0, SEEK_SET);
    rec_len = sig_len + (size_t)atol(argv[5]);
    sig = calloc(sig_len * (size_t)nch + 1, sizeof *sig);
    rec = calloc(rec_len * (size_t)nch + 1, sizeof *rec);
    if (!sig || !rec || fread(sig, sizeof *sig, sig_len * (size_t)nch, f) != sig_len * (size_t)nch) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 2;
    }
    fclose(f);

    char name[300];
    snprintf(name, sizeof name, "%s_tx", argv[2]);
    tx = open_client(argv[1], name);
    snprintf(name, sizeof name, "%s_rx", argv[2]);
    rx = open_client(argv[1], name);
    if (!tx || !rx)
        return 1;
    for (int c = 0; c < nch; c++) {
        snprintf(name, sizeof name, "out_%d", c + 1);
        out_port[c] = jack_port_register(tx, name, JACK_DEFAULT_AUDIO_TYPE, JackPortIsOutput, 0);
        snprintf(name, sizeof name, "in_%d", c + 1);
        in_port[c] = jack_port_register(rx, name, JACK_DEFAULT_AUDIO_TYPE, JackPortIsInput, 0);
        if (!out_port[c] || !in_port[c]) {
            fprintf(stderr, "cannot register ports\n");
            return 1;
        }
    }
    if (jack_set_process_callback(tx, play, NULL) || jack_set_process_callback(rx, record, NULL) ||
        jack_set_xrun_callback(rx, on_xrun, NULL) || jack_activate(tx) || jack_activate(rx)) {
        fprintf(stderr, "cannot set up the clients\n");
        return 1;
    }
    for (int c = 0; c < nch; c++) {
        snprintf(name, sizeof name, "%s:out_%d", jack_get_client_name(tx), c + 1);
        if (jack_connect(tx, name, argv[7 + c])) {
            fprintf(stderr, "cannot connect %s -> %s\n", name, argv[7 + c]);
            return 1;
        }
        snprintf(name, sizeof name, "%s:in_%d", jack_get_client_name(rx), c + 1);
        if (jack_connect(rx, argv[7 + nch + c], name)) {
            fprintf(stderr, "cannot connect %s -> %s\n", argv[7 + nch + c], name);
            return 1;
        }
    }
    atomic_store(&go, 1);
    /* a generous bound against a stalled server: 20x the recording's length + 10 s */
    const double limit = 20.0 * (double)rec_len / jack_get_sample_rate(tx) + 10.0;
    const struct timespec step = {0, 10 * 1000 * 1000};
    for (double waited = 0; !atomic_load(&done); waited += 0.01) {
        if (waited > limit) {
            fprintf(stderr, "the recording did not finish within %.0f s\n", limit);
            return 1;
        }
        nanosleep(&step, NULL);
    }
    const unsigned period = jack_get_buffer_size(tx);
    jack_deactivate(rx);
    jack_deactivate(tx);
    jack_client_close(rx);
    jack_client_close(tx);
    f = fopen(argv[4], "wb");
    if (!f || fwrite(rec, sizeof *rec, rec_len * (size_t)nch, f) != rec_len * (size_t)nch ||
        fclose(f)) {
        perror(argv[4]);
        return 1;
    }
    printf("period %u xruns %d\n", period, atomic_load(&xruns));
    return 0;
}
