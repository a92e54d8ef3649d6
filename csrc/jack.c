/* mixgraph as a native JACK client.
 *
 * The engine's process function is JACK's process callback: it takes the
 * port buffers (planar, one per channel) and runs mg_engine_process_planar on
 * JACK's real-time thread. No allocation, no lock, no Python on that thread.
 * The other callbacks only set atomics the control thread reads:
 *   xrun         -> the engine's xrun count (and ours)
 *   buffer size  -> the current period (the engine takes any frame count,
 *                   so nothing is re-prepared and no state is lost)
 *   shutdown     -> `lost`: the control thread moves the engine to the null
 *                   clock and retries the server (server/devices.py)
 *   latency      -> the graph's latency (set by the control thread) added to
 *                   what the ports on the other side report
 * The MIDI ports midi_in/midi_out are read and written in the process
 * callback too, before the engine runs the period (midi_cycle, csrc/midi.c).
 * With a CPU set (mg_jack_set_cpu, --jack-cpu) the thread-init callback pins
 * JACK's process thread to that CPU, once, on that thread, before its first
 * period (a system call there, none in steady state); the daemon keeps its
 * other threads off it (server/jack.py).
 *
 * Built only where <jack/jack.h> exists (build_core.py defines MG_HAVE_JACK
 * and links libjack); elsewhere every function is a stub that says so. */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET */
#include "mg_api.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MG_HAVE_JACK
#include <errno.h>
#include <jack/jack.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <jack/midiport.h>

struct mg_jack {
    jack_client_t *client;
    mg_engine *e;
    int n_in, n_out;
    jack_port_t *in[256], *out[256];
    jack_port_t *midi_in, *midi_out;  /* MIDI controllers (csrc/midi.c) */
    const float *in_buf[256];   /* audio thread: this period's port buffers */
    float *out_buf[256];
    _Atomic int lost;           /* the server went away (shutdown callback) */
    _Atomic int in_process;     /* 1 while the process callback runs */
    _Atomic uint32_t period;    /* frames per period, from the buffer-size callback */
    _Atomic uint64_t xruns;
    _Atomic uint64_t period_changes;
    _Atomic uint32_t latency;   /* the graph's latency in frames (control thread) */
    int cpu;                    /* pin the process thread to this CPU; -1: never */
    _Atomic int pinned;         /* 1 pinned, 0 not asked (yet), -errno: refused */
    _Atomic long tid;           /* the process thread's kernel id, 0: not started yet */
    char reason[256];           /* why the server shut us down */
};

/* jack_client_open prints to stderr on every failed attempt; while the
 * control thread retries a missing server every 2 s that is noise. */
static _Atomic int quiet;

/* 1 on JACK's process thread (set by thread_init_cb). libjack reports errors
 * from that thread too (the server going away: "JackSocketClientChannel read
 * fail"), and stdio may lock and allocate: there they are only counted.
 * initial-exec: static TLS, never allocated lazily on the thread's first use. */
static _Thread_local int on_rt_thread __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t rt_errors;

static void on_error(const char *msg)
{
    if (on_rt_thread) {
        atomic_fetch_add_explicit(&rt_errors, 1, memory_order_relaxed);
        return;
    }
    if (!atomic_load(&quiet))
        fprintf(stderr, "JACK: %s\n", msg);
}

uint64_t mg_jack_rt_errors(void) { return atomic_load(&rt_errors); }

static void on_info(const char *msg)
{
    (void)msg;
}

int mg_jack_available(void) { return 1; }

/* MIDI of this period, before the engine runs it: every event of midi_in
 * is matched at its frame and a mapped parameter scheduled one period later
 * (csrc/midi.c); feedback queued by the control thread goes out on midi_out
 * at the period's first frame. */
static void midi_cycle(mg_jack *j, jack_nframes_t n)
{
    void *out = jack_port_get_buffer(j->midi_out, n);
    jack_midi_clear_buffer(out);
    void *in = jack_port_get_buffer(j->midi_in, n);
    mg_midi *m = mg_engine_midi(j->e);
    if (!m)
        return;
    mg_midi_begin(m);
    const uint64_t t0 = mg_engine_time(j->e);
    const uint32_t count = jack_midi_get_event_count(in);
    for (uint32_t i = 0; i < count; i++) {
        jack_midi_event_t ev;
        if (jack_midi_event_get(&ev, in, i) == 0)
            mg_midi_input(m, j->e, ev.buffer, (int)ev.size, t0 + ev.time, n);
    }
    uint8_t msg[16];
    int len;
    while ((len = mg_midi_next_out(m, msg)) > 0) {
        if (jack_midi_event_write(out, 0, msg, (size_t)len) != 0) {
            mg_midi_count_out_dropped(m, 1); /* the port's buffer is full this period */
            break;
        }
    }
}

static int process_cb(jack_nframes_t n, void *arg)
{
    mg_jack *j = (mg_jack *)arg;
    atomic_store_explicit(&j->in_process, 1, memory_order_relaxed);
    mg_engine_call_begin(j->e); /* the call trace's start, when it is on */
    for (int c = 0; c < j->n_in; c++)
        j->in_buf[c] = (const float *)jack_port_get_buffer(j->in[c], n);
    for (int c = 0; c < j->n_out; c++)
        j->out_buf[c] = (float *)jack_port_get_buffer(j->out[c], n);
    midi_cycle(j, n);
    mg_engine_process_planar(j->e, j->n_in ? j->in_buf : NULL, j->n_out ? j->out_buf : NULL,
                             (unsigned long)n);
    atomic_store_explicit(&j->in_process, 0, memory_order_release);
    return 0;
}

static int xrun_cb(void *arg)
{
    mg_jack *j = (mg_jack *)arg;
    atomic_fetch_add_explicit(&j->xruns, 1, memory_order_relaxed);
    mg_engine_add_xruns(j->e, 1);
    return 0;
}

static int buffer_size_cb(jack_nframes_t n, void *arg)
{
    mg_jack *j = (mg_jack *)arg;
    if (atomic_exchange(&j->period, (uint32_t)n) != (uint32_t)n)
        atomic_fetch_add_explicit(&j->period_changes, 1, memory_order_relaxed);
    return 0;
}

static void shutdown_cb(jack_status_t code, const char *reason, void *arg)
{
    mg_jack *j = (mg_jack *)arg;
    (void)code;
    snprintf(j->reason, sizeof j->reason, "%s", reason ? reason : "");
    atomic_store(&j->in_process, 0);
    atomic_store(&j->lost, 1);
}

/* Touch the first 128 KiB of the real-time thread's stack before the first
 * period, so a deep call never page-faults there (as the null clock does). */
static __attribute__((noinline)) void thread_init_cb(void *arg)
{
    mg_jack *j = (mg_jack *)arg;
    on_rt_thread = 1;
    atomic_store(&j->tid, (long)syscall(SYS_gettid));
    if (j->cpu >= 0 && j->cpu < CPU_SETSIZE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(j->cpu, &set);
        const int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        atomic_store(&j->pinned, r == 0 ? 1 : -r);
    }
    volatile unsigned char pages[128 * 1024];
    for (size_t i = 0; i < sizeof pages; i += 4096)
        pages[i] = 0;
}

static void ports_range(jack_port_t *const *ports, int n, jack_latency_callback_mode_t mode,
                        jack_latency_range_t *r)
{
    r->min = r->max = 0;
    int first = 1;
    for (int c = 0; c < n; c++) {
        jack_latency_range_t x;
        jack_port_get_latency_range(ports[c], mode, &x);
        if (first || x.min < r->min)
            r->min = x.min;
        if (first || x.max > r->max)
            r->max = x.max;
        first = 0;
    }
}

/* JACK's latency protocol: in capture mode a client sets its outputs' capture
 * latency (what its inputs see, plus its own); in playback mode its inputs'
 * playback latency (what its outputs see, plus its own). */
static void latency_cb(jack_latency_callback_mode_t mode, void *arg)
{
    mg_jack *j = (mg_jack *)arg;
    const uint32_t own = atomic_load(&j->latency);
    jack_latency_range_t r;
    if (mode == JackCaptureLatency) {
        ports_range(j->in, j->n_in, mode, &r);
        r.min += own;
        r.max += own;
        for (int c = 0; c < j->n_out; c++)
            jack_port_set_latency_range(j->out[c], mode, &r);
    } else {
        ports_range(j->out, j->n_out, mode, &r);
        r.min += own;
        r.max += own;
        for (int c = 0; c < j->n_in; c++)
            jack_port_set_latency_range(j->in[c], mode, &r);
    }
}

mg_jack *mg_jack_open(mg_engine *e, const char *client_name, const char *server_name,
                      int n_in, int n_out, char *err, int err_len)
{
    err[0] = '\0';
    if (n_in < 0 || n_out < 0 || n_in > 256 || n_out > 256) {
        snprintf(err, (size_t)err_len, "bad port counts %d in / %d out", n_in, n_out);
        return NULL;
    }
    jack_set_error_function(on_error);
    jack_set_info_function(on_info);
    mg_jack *j = calloc(1, sizeof *j);
    if (!j) {
        snprintf(err, (size_t)err_len, "out of memory");
        return NULL;
    }
    j->e = e;
    j->cpu = -1;
    j->n_in = n_in;
    j->n_out = n_out;
    jack_options_t opts = JackNoStartServer;
    if (server_name && server_name[0])
        opts |= JackServerName;
    jack_status_t status = 0;
    atomic_store(&quiet, 1);
    j->client = jack_client_open(client_name, opts, &status, server_name);
    atomic_store(&quiet, 0);
    if (!j->client) {
        snprintf(err, (size_t)err_len, "%s",
                 (status & JackServerFailed) ? "no JACK server is running"
                 : (status & JackNameNotUnique) ? "the client name is taken"
                 : (status & JackVersionError) ? "the JACK server's protocol version differs"
                 : "cannot open a JACK client");
        free(j);
        return NULL;
    }
    const double rate = (double)jack_get_sample_rate(j->client);
    if (rate != mg_engine_rate(e)) {
        snprintf(err, (size_t)err_len,
                 "the JACK server runs at %g Hz but the engine (and its patch) at %g Hz: "
                 "start mixgraph with --rate %g or the server at %g Hz",
                 rate, mg_engine_rate(e), rate, mg_engine_rate(e));
        jack_client_close(j->client);
        free(j);
        return NULL;
    }
    char name[32];
    for (int c = 0; c < n_in; c++) {
        snprintf(name, sizeof name, "in_%d", c + 1);
        j->in[c] = jack_port_register(j->client, name, JACK_DEFAULT_AUDIO_TYPE,
                                      JackPortIsInput, 0);
        if (!j->in[c])
            goto port_failed;
    }
    for (int c = 0; c < n_out; c++) {
        snprintf(name, sizeof name, "out_%d", c + 1);
        j->out[c] = jack_port_register(j->client, name, JACK_DEFAULT_AUDIO_TYPE,
                                       JackPortIsOutput, 0);
        if (!j->out[c])
            goto port_failed;
    }
    j->midi_in = jack_port_register(j->client, "midi_in", JACK_DEFAULT_MIDI_TYPE,
                                    JackPortIsInput, 0);
    j->midi_out = jack_port_register(j->client, "midi_out", JACK_DEFAULT_MIDI_TYPE,
                                     JackPortIsOutput, 0);
    if (!j->midi_in || !j->midi_out) {
        snprintf(name, sizeof name, "midi_in/out");
        goto port_failed;
    }
    atomic_store(&j->period, (uint32_t)jack_get_buffer_size(j->client));
    if (jack_set_process_callback(j->client, process_cb, j) ||
        jack_set_xrun_callback(j->client, xrun_cb, j) ||
        jack_set_buffer_size_callback(j->client, buffer_size_cb, j) ||
        jack_set_thread_init_callback(j->client, thread_init_cb, j) ||
        jack_set_latency_callback(j->client, latency_cb, j)) {
        snprintf(err, (size_t)err_len, "cannot set the JACK callbacks");
        jack_client_close(j->client);
        free(j);
        return NULL;
    }
    jack_on_info_shutdown(j->client, shutdown_cb, j);
    return j;
port_failed:
    snprintf(err, (size_t)err_len, "cannot register the JACK port %s", name);
    jack_client_close(j->client);
    free(j);
    return NULL;
}

int mg_jack_probe(const char *server_name, uint32_t *rate, uint32_t *period)
{
    jack_set_error_function(on_error);
    jack_set_info_function(on_info);
    jack_options_t opts = JackNoStartServer;
    if (server_name && server_name[0])
        opts |= JackServerName;
    jack_status_t status = 0;
    atomic_store(&quiet, 1);
    jack_client_t *c = jack_client_open("mixgraph-probe", opts, &status, server_name);
    atomic_store(&quiet, 0);
    if (!c)
        return 0;
    *rate = (uint32_t)jack_get_sample_rate(c);
    *period = (uint32_t)jack_get_buffer_size(c);
    jack_client_close(c);
    return 1;
}

int mg_jack_activate(mg_jack *j) { return jack_activate(j->client) == 0 ? 0 : -1; }

void mg_jack_set_cpu(mg_jack *j, int cpu) { j->cpu = cpu < 0 ? -1 : cpu; }
int mg_jack_pinned(mg_jack *j) { return atomic_load(&j->pinned); }
long mg_jack_thread_id(mg_jack *j) { return atomic_load(&j->tid); }

void mg_jack_close(mg_jack *j)
{
    if (!j)
        return;
    if (!atomic_load(&j->lost))
        jack_deactivate(j->client);
    jack_client_close(j->client);
    free(j);
}

int mg_jack_lost(mg_jack *j) { return atomic_load(&j->lost); }
int mg_jack_busy(mg_jack *j) { return atomic_load(&j->in_process); }
const char *mg_jack_lost_reason(mg_jack *j) { return j->reason; }
const char *mg_jack_client_name(mg_jack *j) { return jack_get_client_name(j->client); }
uint32_t mg_jack_rate(mg_jack *j) { return (uint32_t)jack_get_sample_rate(j->client); }
uint32_t mg_jack_period(mg_jack *j) { return atomic_load(&j->period); }
uint64_t mg_jack_period_changes(mg_jack *j) { return atomic_load(&j->period_changes); }
uint64_t mg_jack_xruns(mg_jack *j) { return atomic_load(&j->xruns); }
int mg_jack_realtime(mg_jack *j) { return jack_is_realtime(j->client); }

void mg_jack_set_latency(mg_jack *j, uint32_t frames)
{
    if (atomic_exchange(&j->latency, frames) != frames && !atomic_load(&j->lost))
        jack_recompute_total_latencies(j->client);
}

int mg_jack_connect(mg_jack *j, const char *src, const char *dst)
{
    int r = jack_connect(j->client, src, dst);
    return r == 0 || r == EEXIST ? 0 : -1;
}

int mg_jack_ports(mg_jack *j, const char *pattern, unsigned long flags, int midi, char *buf,
                  int len)
{
    const char **ports = jack_get_ports(j->client, pattern,
                                        midi ? JACK_DEFAULT_MIDI_TYPE : JACK_DEFAULT_AUDIO_TYPE,
                                        flags);
    int n = 0, used = 0;
    buf[0] = '\0';
    for (; ports && ports[n]; n++) {
        int w = snprintf(buf + used, (size_t)(len - used), "%s\n", ports[n]);
        if (w < 0 || w >= len - used) {
            buf[used] = '\0';
            break;
        }
        used += w;
    }
    if (ports)
        jack_free(ports);
    return n;
}

#else /* no <jack/jack.h> at build time */

struct mg_jack {
    int unused;
};

int mg_jack_available(void) { return 0; }

mg_jack *mg_jack_open(mg_engine *e, const char *client_name, const char *server_name,
                      int n_in, int n_out, char *err, int err_len)
{
    (void)e, (void)client_name, (void)server_name, (void)n_in, (void)n_out;
    snprintf(err, (size_t)err_len,
             "mixgraph was built without JACK (install libjack-jackd2-dev and rebuild)");
    return NULL;
}
int mg_jack_probe(const char *server_name, uint32_t *rate, uint32_t *period)
{
    (void)server_name, (void)rate, (void)period;
    return 0;
}
int mg_jack_activate(mg_jack *j) { (void)j; return -1; }
void mg_jack_set_cpu(mg_jack *j, int cpu) { (void)j, (void)cpu; }
int mg_jack_pinned(mg_jack *j) { (void)j; return 0; }
long mg_jack_thread_id(mg_jack *j) { (void)j; return 0; }
void mg_jack_close(mg_jack *j) { (void)j; }
int mg_jack_lost(mg_jack *j) { (void)j; return 1; }
int mg_jack_busy(mg_jack *j) { (void)j; return 0; }
const char *mg_jack_lost_reason(mg_jack *j) { (void)j; return ""; }
const char *mg_jack_client_name(mg_jack *j) { (void)j; return ""; }
uint32_t mg_jack_rate(mg_jack *j) { (void)j; return 0; }
uint32_t mg_jack_period(mg_jack *j) { (void)j; return 0; }
uint64_t mg_jack_period_changes(mg_jack *j) { (void)j; return 0; }
uint64_t mg_jack_xruns(mg_jack *j) { (void)j; return 0; }
uint64_t mg_jack_rt_errors(void) { return 0; }
int mg_jack_realtime(mg_jack *j) { (void)j; return 0; }
void mg_jack_set_latency(mg_jack *j, uint32_t frames) { (void)j, (void)frames; }
int mg_jack_connect(mg_jack *j, const char *src, const char *dst)
{
    (void)j, (void)src, (void)dst;
    return -1;
}
int mg_jack_ports(mg_jack *j, const char *pattern, unsigned long flags, int midi, char *buf,
                  int len)
{
    (void)j, (void)pattern, (void)flags, (void)midi, (void)len;
    buf[0] = '\0';
    return 0;
}

#endif
