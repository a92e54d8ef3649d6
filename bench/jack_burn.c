/* A JACK client that costs a fixed time per cycle: the load-matched peer of
 * bench/jackd.py. Its process callback spins on CLOCK_THREAD_CPUTIME_ID until
 * it has used `burn_us` of CPU (so a preempted thread still does the full
 * work once it runs again, as a DSP client would), then returns. On a shared
 * virtual machine a stall of the host lands in whichever client is running;
 * a client that runs longer per cycle is hit more often, so the fair peer of
 * mixgraph's late-cycle count is a client that runs as long as mixgraph does.
 *
 * With a fourth argument `midi` it also has a MIDI input port `midi_in`,
 * read every cycle (its event count): connected from the bench's MIDI
 * client, JACK runs it after that client, at mixgraph's place in the graph
 * (a depth-matched peer).
 *
 * With `touch=KB` it also reads and writes one word of every 64-byte line of
 * a KB buffer of its own (locked, prefaulted) at the start of every cycle,
 * counted in burn_us: a peer with mixgraph's memory footprint as well as
 * its time (a live mix64 cycle touches ~6,000 lines, ~400 KB, evicted by the
 * machine's other work between cycles).
 *
 * usage: jack_burn <client name> <burn_us> <seconds> [midi] [touch=KB]  */
#define _POSIX_C_SOURCE 200809L
#include <jack/jack.h>
#include <jack/midiport.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double burn_ns;
static jack_port_t *midi_in;
static volatile uint32_t midi_events; /* read, so the port is really used */
static volatile uint64_t *mem;         /* touch=KB: the footprint, in 8-byte words */
static size_t mem_words;

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int process_cb(jack_nframes_t n, void *arg)
{
    (void)arg;
    if (midi_in)
        midi_events += jack_midi_get_event_count(jack_port_get_buffer(midi_in, n));
    const double end = cpu_ns() + burn_ns;
    for (size_t i = 0; i < mem_words; i += 8) /* one word per 64-byte line */
        mem[i] += 1;
    while (cpu_ns() < end)
        ;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: jack_burn <client name> <burn_us> <seconds> [midi] "
                        "[touch=KB]\n");
        return 2;
    }
    int want_midi = 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "midi") == 0) {
            want_midi = 1;
        } else if (strncmp(argv[i], "touch=", 6) == 0) {
            const size_t bytes = (size_t)atol(argv[i] + 6) * 1024;
            mem = malloc(bytes ? bytes : 64);
            if (!mem)
                return 1;
            memset((void *)mem, 0, bytes);
            mem_words = bytes / 8;
        }
    }
    mlockall(MCL_CURRENT | MCL_FUTURE); /* as mixgraph's serve (best effort) */
    burn_ns = atof(argv[2]) * 1e3;
    jack_client_t *c = jack_client_open(argv[1], JackNoStartServer, NULL);
    if (!c) {
        fprintf(stderr, "jack_burn: no JACK server\n");
        return 1;
    }
    if (want_midi)
        midi_in = jack_port_register(c, "midi_in", JACK_DEFAULT_MIDI_TYPE, JackPortIsInput, 0);
    jack_set_process_callback(c, process_cb, NULL);
    if (jack_activate(c)) {
        fprintf(stderr, "jack_burn: cannot activate\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    sleep((unsigned)atoi(argv[3]));
    jack_client_close(c);
    return 0;
}
