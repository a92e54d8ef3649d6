/* Control a mixgraph server from C with liblo (Debian: liblo-dev).
 *
 *   cc -O2 -Wall -o mixgraph_lo mixgraph_lo.c $(pkg-config --cflags --libs liblo)
 *   ./mixgraph_lo [HOST] [PORT] [NODE_NAME]
 *
 * Adds a gain node, sets its gain to -6 dB, queries it, reads /status and
 * removes the node, printing every reply as `address arg arg ...`.
 * Replies go to the address and port a command came from, so commands are
 * sent from our own liblo server's socket (lo_send_from) and the replies are
 * received on it. Every command waits for the reply that matches it:
 * `/done <address> ...`, `/fail <address> ... <reason>` or the address itself.
 */
#include <lo/lo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *want;   /* the address of the command awaiting its reply */
static int got, failed;
static float last_value;

static void print_arg(char type, lo_arg *a)
{
    switch (type) {
    case 'i': printf(" %d", a->i); break;
    case 'h': printf(" %lld", (long long)a->h); break;
    case 'f': printf(" %g", a->f); break;
    case 'd': printf(" %g", a->d); break;
    case 's': case 'S': printf(" %s", &a->s); break;
    case 'T': printf(" true"); break;
    case 'F': printf(" false"); break;
    case 'b': printf(" <blob %d>", lo_blob_datasize((lo_blob)a)); break;
    default: printf(" <%c>", type);
    }
}

static int on_message(const char *path, const char *types, lo_arg **argv, int argc,
                      lo_message msg, void *user)
{
    (void)msg; (void)user;
    int reply = (!strcmp(path, "/done") || !strcmp(path, "/fail")) && argc > 0 &&
                types[0] == 's' && !strcmp(&argv[0]->s, want);
    int answer = !strcmp(path, want) ||
                 (!strncmp(path, want, strlen(want)) && !strcmp(path + strlen(want), ".reply"));
    if (!reply && !answer)
        return 0; /* feedback or a stray reply: not ours */
    printf("%s", path);
    for (int i = 0; i < argc; i++)
        print_arg(types[i], argv[i]);
    printf("\n");
    fflush(stdout);
    if (answer && argc > 0 && types[0] == 'f')
        last_value = argv[0]->f;
    failed = !strcmp(path, "/fail");
    got = 1;
    return 0;
}

/* send (already built) msg to `address`, wait up to 3 s for its reply */
static int call(lo_server s, lo_address dst, const char *address, lo_message m)
{
    want = address;
    got = failed = 0;
    if (lo_send_message_from(dst, s, address, m) < 0) {
        fprintf(stderr, "send %s: %s\n", address, lo_address_errstr(dst));
        return -1;
    }
    lo_message_free(m);
    for (int waited = 0; !got && waited < 3000; waited += 50)
        lo_server_recv_noblock(s, 50);
    if (!got) {
        fprintf(stderr, "no reply to %s\n", address);
        return -1;
    }
    return failed ? -1 : 0;
}

static lo_message msg_ss(const char *a, const char *b)
{
    lo_message m = lo_message_new();
    lo_message_add_string(m, a);
    if (b)
        lo_message_add_string(m, b);
    return m;
}

int main(int argc, char **argv)
{
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    const char *port = argc > 2 ? argv[2] : "8000";
    const char *name = argc > 3 ? argv[3] : "c_g";
    char param[128];
    snprintf(param, sizeof param, "/node/%s/gain", name);

    lo_server s = lo_server_new(NULL, NULL); /* any free UDP port */
    lo_address dst = lo_address_new(host, port);
    if (!s || !dst) {
        fprintf(stderr, "cannot open a UDP socket\n");
        return 2;
    }
    lo_server_add_method(s, NULL, NULL, on_message, NULL);

    int rc = 0;
    rc |= call(s, dst, "/graph/add", msg_ss("gain", name));
    lo_message m = lo_message_new();
    lo_message_add_float(m, -6.0f);
    rc |= call(s, dst, param, m);
    rc |= call(s, dst, param, lo_message_new()); /* a query: no arguments */
    printf("# gain is %g dB\n", last_value);
    rc |= call(s, dst, "/status", lo_message_new());
    rc |= call(s, dst, "/graph/remove", msg_ss(name, NULL));

    lo_address_free(dst);
    lo_server_free(s);
    return rc ? 1 : 0;
}
