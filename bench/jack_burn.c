/* A JACK client that costs a fixed time per cycle: the load-matched peer of
 * bench/jackd.py. Its process callback spins on CLOCK_THREAD_CPUTIME_ID until
 * it has used `burn_us` of CPU (so a preempted thread still does the full
 * work once it runs again, as a DSP client would), then returns. On a shared
 * virtual machine a stall of the host lands in whichever client is running;
 * a client that runs longer per cycle is hit more often, so the fair peer of
 * mixgraph's late-cycle count is a client that runs as long as mixgraph does.
 *
 * usage: jack_burn <client name> <burn_us> <seconds>  */
#define _POSIX_C_SOURCE 200809L
#include <jack/jack.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double burn_ns;

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int process_cb(jack_nframes_t n, void *arg)
{
    (void)n, (void)arg;
    const double end = cpu_ns() + burn_ns;
    while (cpu_ns() < end)
        ;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: jack_burn <client name> <burn_us> <seconds>\n");
        return 2;
    }
    burn_ns = atof(argv[2]) * 1e3;
    jack_client_t *c = jack_client_open(argv[1], JackNoStartServer, NULL);
    if (!c) {
        fprintf(stderr, "jack_burn: no JACK server\n");
        return 1;
    }
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
