/* mixgraph LV2 host, control-thread side: the lilv world (loaded once,
 * LV2_PATH honoured), plugin discovery, and one node type per plugin made
 * from its description (ports, parameters, readouts, choices), which
 * nodes/lv2.c instantiates and runs.
 *
 * Built with lilv where <lilv/lilv.h> exists (build_core.py defines
 * MG_HAVE_LILV and links lilv-0); elsewhere every function says there is
 * no LV2 support. Nothing here runs on the audio thread but a plugin's
 * log:log calls from run() (log_vprintf: no formatting there). */
#include "mg_alloc.h"
#include "mg_api.h"
#include "mg_lv2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char last_error[512];

void mg_lv2_set_error(const char *what, const char *detail)
{
    snprintf(last_error, sizeof last_error, "%s%s", what, detail ? detail : "");
}

const char *mg_lv2_last_error(void) { return last_error; }

/* ---- the name and state directory of the next node made (control thread) */
static char next_name[64], next_dir[1024];

void mg_lv2_next_node(const char *name, const char *dir)
{
    snprintf(next_name, sizeof next_name, "%s", name ? name : "");
    snprintf(next_dir, sizeof next_dir, "%s", dir ? dir : "");
}

/* ---- plugin log lines: a bounded multi-producer single-consumer ring
 * (Vyukov's: a sequence number per slot, producers claim a position with one
 * compare-and-swap), so a plugin may log from the audio thread, its worker or
 * the control thread without a lock or an allocation; the control thread pops
 * the lines and writes them (server/lv2.py, rate-limited). A full ring drops the
 * line and counts it. A line logged on the audio thread is not formatted there
 * (printf's code is not bounded: long double, huge precisions, locales): its
 * format and arguments are copied, bounded, and mg_lv2_log_pop formats it. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#define LOG_SLOTS 256u
#define LOG_ARGS 16
typedef struct {
    char kind; /* i: long long, u: unsigned long long, d: double, L: long double,
                  p: pointer, s: string at strs + off */
    union {
        long long i;
        unsigned long long u;
        double d;
        long double ld;
        const void *p;
        int off;
    } v;
} log_arg;
typedef struct {
    _Atomic uint32_t seq;
    int level;
    int n_args; /* -1: msg is the line; else msg is its format and args[] follow */
    char node[64];
    char msg[256];
    log_arg args[LOG_ARGS];
    char strs[256]; /* the %s arguments, each ended by a NUL */
} log_slot;
static log_slot log_ring[LOG_SLOTS];
static uint32_t log_tail;
static _Atomic uint64_t log_lost;
static _Atomic int log_ready;

/* One conversion of a printf format at fmt[0] == '%': its parts. Returns the
 * length of the spec (0: not one this host passes on: %n, wide strings,
 * an unknown conversion). */
typedef struct {
    int flags_at, flags_len; /* offsets into the spec */
    int star_w, star_p;      /* width, precision given as * (an int argument) */
    int w_at, w_len, p_at, p_len, has_p;
    char len[3];             /* length modifier: "", hh, h, l, ll, L, j, z, t */
    char conv;
} fmt_spec;

static int parse_spec(const char *f, fmt_spec *sp)
{
    int i = 1;
    *sp = (fmt_spec){0};
    sp->flags_at = i;
    while (f[i] && (f[i] == '-' || f[i] == '+' || f[i] == ' ' || f[i] == '#' || f[i] == '0'))
        i++;
    sp->flags_len = i - sp->flags_at;
    sp->w_at = i;
    if (f[i] == '*') {
        sp->star_w = 1;
        i++;
    } else {
        while (f[i] >= '0' && f[i] <= '9')
            i++;
    }
    sp->w_len = i - sp->w_at;
    if (f[i] == '.') {
        sp->has_p = 1;
        i++;
        sp->p_at = i;
        if (f[i] == '*') {
            sp->star_p = 1;
            i++;
        } else {
            while (f[i] >= '0' && f[i] <= '9')
                i++;
        }
        sp->p_len = i - sp->p_at;
    }
    if (f[i] == 'h' || f[i] == 'l') { /* h hh l ll */
        sp->len[0] = f[i++];
        if (f[i] == sp->len[0])
            sp->len[1] = f[i++];
    } else if (f[i] == 'q') {
        sp->len[0] = sp->len[1] = 'l';
        i++;
    } else if (f[i] == 'L' || f[i] == 'j' || f[i] == 'z' || f[i] == 't') {
        sp->len[0] = f[i++];
    }
    sp->conv = f[i];
    switch (f[i]) {
    case 'd': case 'i': case 'u': case 'o': case 'x': case 'X': case 'e': case 'E':
    case 'f': case 'F': case 'g': case 'G': case 'a': case 'A': case 'p':
        return i + 1;
    case 'c': case 's':
        return sp->len[0] ? 0 : i + 1; /* %lc, %ls: wide, not passed on */
    default:
        return 0;
    }
}

#ifdef MG_HAVE_LILV
static _Atomic uint32_t log_head;

static void log_init(void)
{
    if (atomic_load(&log_ready))
        return;
    for (uint32_t i = 0; i < LOG_SLOTS; i++)
        atomic_store(&log_ring[i].seq, i);
    atomic_store(&log_ready, 1);
}

/* [any thread] a slot to fill (then log_commit), NULL when the ring is full
 * (the line is dropped and counted) */
static log_slot *log_claim(uint32_t *at)
{
    if (!atomic_load_explicit(&log_ready, memory_order_acquire)) {
        atomic_fetch_add(&log_lost, 1);
        return NULL;
    }
    uint32_t pos = atomic_load_explicit(&log_head, memory_order_relaxed);
    for (;;) {
        log_slot *sl = &log_ring[pos % LOG_SLOTS];
        const uint32_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
        const int32_t dif = (int32_t)(seq - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&log_head, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *at = pos;
                return sl;
            }
        } else if (dif < 0) {
            atomic_fetch_add_explicit(&log_lost, 1, memory_order_relaxed);
            return NULL;
        } else {
            pos = atomic_load_explicit(&log_head, memory_order_relaxed);
        }
    }
}

static void log_commit(log_slot *sl, uint32_t pos)
{
    atomic_store_explicit(&sl->seq, pos + 1, memory_order_release);
}

/* a bounded copy that stops at the NUL: no libc on the audio thread */
static int copy_str(char *dst, int cap, const char *src)
{
    int n = 0;
    while (src && n < cap - 1 && src[n]) {
        dst[n] = src[n];
        n++;
    }
    dst[n] = 0;
    return n;
}

/* [audio thread] the format and its arguments into sl, unformatted: a
 * conversion past LOG_ARGS arguments, or one not passed on, ends the format
 * there. Returns the format's length. */
static int log_defer(log_slot *sl, const char *fmt, va_list ap)
{
    const int n = copy_str(sl->msg, (int)sizeof sl->msg, fmt);
    int na = 0, str_used = 0;
    for (int i = 0; i < n; i++) {
        if (sl->msg[i] != '%')
            continue;
        if (sl->msg[i + 1] == '%') {
            i++;
            continue;
        }
        fmt_spec sp;
        const int len = parse_spec(sl->msg + i, &sp);
        if (!len || na + sp.star_w + sp.star_p + 1 > LOG_ARGS) {
            sl->msg[i] = 0;
            break;
        }
        if (sp.star_w)
            sl->args[na++] = (log_arg){'i', {.i = va_arg(ap, int)}};
        if (sp.star_p)
            sl->args[na++] = (log_arg){'i', {.i = va_arg(ap, int)}};
        log_arg *a = &sl->args[na++];
        const char l0 = sp.len[0], l1 = sp.len[1];
        switch (sp.conv) {
        case 'd': case 'i': case 'c':
            a->kind = 'i';
            a->v.i = (l0 == 'l' && l1 == 'l') || l0 == 'L' ? va_arg(ap, long long)
                     : l0 == 'l'            ? va_arg(ap, long)
                     : l0 == 'j'            ? (long long)va_arg(ap, intmax_t)
                     : l0 == 'z' || l0 == 't' ? (long long)va_arg(ap, ptrdiff_t)
                     : l0 == 'h' && l1 == 'h' ? (signed char)va_arg(ap, int)
                     : l0 == 'h'            ? (short)va_arg(ap, int)
                                            : va_arg(ap, int);
            break;
        case 'u': case 'o': case 'x': case 'X':
            a->kind = 'u';
            a->v.u = (l0 == 'l' && l1 == 'l') || l0 == 'L' ? va_arg(ap, unsigned long long)
                     : l0 == 'l'            ? va_arg(ap, unsigned long)
                     : l0 == 'j'            ? (unsigned long long)va_arg(ap, uintmax_t)
                     : l0 == 'z' || l0 == 't' ? (unsigned long long)va_arg(ap, size_t)
                     : l0 == 'h' && l1 == 'h' ? (unsigned char)va_arg(ap, unsigned)
                     : l0 == 'h'            ? (unsigned short)va_arg(ap, unsigned)
                                            : va_arg(ap, unsigned);
            break;
        case 'p':
            a->kind = 'p';
            a->v.p = va_arg(ap, void *);
            break;
        case 's':
            a->kind = 's';
            a->v.off = str_used;
            str_used += copy_str(sl->strs + str_used, (int)sizeof sl->strs - str_used,
                                 va_arg(ap, const char *)) + 1;
            if (str_used >= (int)sizeof sl->strs)
                str_used = (int)sizeof sl->strs - 1; /* the rest: empty strings */
            break;
        default: /* e f g a, either case */
            if (l0 == 'L') {
                a->kind = 'L';
                a->v.ld = va_arg(ap, long double);
            } else {
                a->kind = 'd';
                a->v.d = va_arg(ap, double);
            }
        }
        i += len - 1;
    }
    sl->n_args = na;
    return n;
}

#endif

/* [control] a deferred line formatted into out (cap bytes): each conversion
 * by snprintf with its one argument (and * values written into the spec) */
static void log_format(const log_slot *sl, char *out, int cap)
{
    int o = 0, na = 0;
    const char *f = sl->msg;
    out[0] = 0;
    for (int i = 0; f[i] && o < cap - 1;) {
        if (f[i] != '%' || f[i + 1] == '%') {
            out[o++] = f[i];
            i += f[i] == '%' ? 2 : 1;
            continue;
        }
        fmt_spec sp;
        const int len = parse_spec(f + i, &sp);
        if (!len || na + sp.star_w + sp.star_p + 1 > sl->n_args)
            break;
        char spec[64];
        int k = 0;
        spec[k++] = '%';
        k += snprintf(spec + k, sizeof spec - (size_t)k, "%.*s", sp.flags_len, f + i + sp.flags_at);
        if (sp.star_w)
            k += snprintf(spec + k, sizeof spec - (size_t)k, "%lld", sl->args[na++].v.i);
        else
            k += snprintf(spec + k, sizeof spec - (size_t)k, "%.*s", sp.w_len, f + i + sp.w_at);
        if (sp.star_p) {
            const long long pr = sl->args[na++].v.i;
            if (pr >= 0) /* a negative precision is as if none were given */
                k += snprintf(spec + k, sizeof spec - (size_t)k, ".%lld", pr);
        } else if (sp.has_p) {
            k += snprintf(spec + k, sizeof spec - (size_t)k, ".%.*s", sp.p_len, f + i + sp.p_at);
        }
        if (k > (int)sizeof spec - 4)
            break;
        const log_arg *a = &sl->args[na++];
        if (a->kind == 'i' || a->kind == 'u') {
            if (sp.conv != 'c') {
                spec[k++] = 'l';
                spec[k++] = 'l';
            }
        } else if (a->kind == 'L') {
            spec[k++] = 'L';
        }
        spec[k++] = sp.conv;
        spec[k] = 0;
        const size_t room = (size_t)(cap - o);
        int w;
        switch (a->kind) {
        case 'i': w = sp.conv == 'c' ? snprintf(out + o, room, spec, (int)a->v.i)
                                     : snprintf(out + o, room, spec, a->v.i); break;
        case 'u': w = snprintf(out + o, room, spec, a->v.u); break;
        case 'L': w = snprintf(out + o, room, spec, a->v.ld); break;
        case 'p': w = snprintf(out + o, room, spec, a->v.p); break;
        case 's': w = snprintf(out + o, room, spec, sl->strs + a->v.off); break;
        default: w = snprintf(out + o, room, spec, a->v.d);
        }
        o += w < 0 ? 0 : w;
        if (o > cap - 1)
            o = cap - 1;
        i += len;
    }
    out[o] = 0;
}

int mg_lv2_log_pop(int *level, char *node, int node_len, char *msg, int msg_len)
{
    if (!atomic_load(&log_ready))
        return 0;
    log_slot *sl = &log_ring[log_tail % LOG_SLOTS];
    const uint32_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
    if ((int32_t)(seq - (log_tail + 1)) < 0)
        return 0;
    *level = sl->level;
    snprintf(node, (size_t)node_len, "%s", sl->node);
    if (sl->n_args < 0) {
        snprintf(msg, (size_t)msg_len, "%s", sl->msg);
    } else {
        char line[512];
        log_format(sl, line, (int)sizeof line);
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        snprintf(msg, (size_t)msg_len, "%s", line);
    }
    atomic_store_explicit(&sl->seq, log_tail + LOG_SLOTS, memory_order_release);
    log_tail++;
    return 1;
}

uint64_t mg_lv2_log_dropped(void) { return atomic_load(&log_lost); }

/* ---- a placeholder for a plugin that is missing (a patch names a plugin this
 * machine lacks): its saved ports and parameters, audio passed through (input
 * k to output k, outputs past the inputs silent), nothing run. Made by
 * mg_lv2_placeholder below; works in builds without lilv too. */
typedef struct {
    int n_in, n_out;
} placeholder_state;

static int placeholder_prepare(void *st, const mg_prepare_ctx *ctx)
{
    const mg_lv2_hole *h = ctx->type_data;
    placeholder_state *s = st;
    s->n_in = h ? h->n_in : 0;
    s->n_out = h ? h->n_out : 0;
    return 0;
}

static void placeholder_process(void *st, const mg_proc *p)
{
    const placeholder_state *s = st;
    for (int k = 0; k < s->n_out; k++) {
        if (k < s->n_in)
            memcpy(p->out[k], p->in[k], (size_t)p->nframes * sizeof(float));
        else
            memset(p->out[k], 0, (size_t)p->nframes * sizeof(float));
    }
}

static const mg_node_type placeholder_template = {
    .name = "lv2",
    .default_channels = 1, .min_channels = 1, .max_channels = 1,
    .state_size = sizeof(placeholder_state),
    .prepare = placeholder_prepare,
    .process = placeholder_process,
};

/* the comma-separated names of s, each strdup'ed, into out (room for max); how many */
static int split_names(const char *s, char **out, int max)
{
    int n = 0;
    while (s && *s && n < max) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len) {
            char *w = malloc(len + 1);
            if (!w)
                break;
            memcpy(w, s, len);
            w[len] = 0;
            out[n++] = w;
        }
        s = e ? e + 1 : NULL;
    }
    return n;
}

const mg_node_type *mg_lv2_placeholder(const char *doc, const char *ins, const char *outs,
                                       const char *params, const float *defs)
{
    enum { MAXN = 1024 };
    char **in = calloc(MAXN, sizeof(char *)), **out = calloc(MAXN, sizeof(char *)),
         **par = calloc(MAXN, sizeof(char *));
    mg_node_type *t = calloc(1, sizeof *t);
    mg_lv2_hole *h = calloc(1, sizeof *h);
    if (!in || !out || !par || !t || !h) {
        free(in), free(out), free(par), free(t), free(h);
        return NULL;
    }
    const int ni = split_names(ins, in, MAXN), no = split_names(outs, out, MAXN),
              np = split_names(params, par, MAXN);
    mg_port_spec *ports = calloc((size_t)(ni + no) + 1, sizeof *ports);
    mg_param_spec *ps = calloc((size_t)np + 1, sizeof *ps);
    if (!ports || !ps) {
        free(ports), free(ps), free(t), free(h);
        return NULL; /* (the names leak: out of memory anyway) */
    }
    /* `name*N`: a port of N channels (a grouped plugin's `in*2`) */
    int ch_in = 0, ch_out = 0;
    for (int k = 0; k < ni + no; k++) {
        char *name = k < ni ? in[k] : out[k - ni];
        char *star = strchr(name, '*');
        int ch = 1;
        if (star) {
            *star = 0;
            ch = atoi(star + 1);
            ch = ch < 1 ? 1 : ch > 64 ? 64 : ch;
        }
        ports[k] = (mg_port_spec){name, k < ni ? MG_PORT_IN : MG_PORT_OUT, ch};
        *(k < ni ? &ch_in : &ch_out) += ch;
    }
    for (int k = 0; k < np; k++)
        ps[k] = (mg_param_spec){par[k], "", "kept from the patch (the plugin is missing)",
                                -1e30f, 1e30f, defs ? defs[k] : 0.0f, MG_MAP_LIN,
                                MG_TAPER_LIN, 0.0f};
    free(in), free(out), free(par);
    *t = placeholder_template;
    t->doc = strdup(doc ? doc : "");
    t->ports = ports;
    t->n_ports = ni + no;
    t->params = ps;
    t->n_params = np;
    h->n_in = ch_in;
    h->n_out = ch_out;
    t->data = h;
    return t;
}

#ifdef MG_HAVE_LILV
#include <math.h>
#include <pthread.h>

#include <lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/port-props/port-props.h>
#include <lv2/presets/presets.h>
#include <lv2/state/state.h>
#include <lv2/units/units.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>
#include <stdarg.h>

static LilvWorld *world;
static const LilvPlugin **plugins;
static int n_plugins = -1;
static struct {
    LilvNode *audio, *control, *input, *output, *atom, *cv, *toggled, *integer, *enumeration,
        *logarithmic, *latency, *reports_latency, *designation, *unit, *unit_symbol, *hard_rt,
        *optional, *preset, *label, *side_chain, *sample_rate, *pg_group, *pg_side_chain_of;
} U;

/* ---- urid:map / unmap: a growing table, behind a mutex (plugins map URIs
 * while they are instantiated, on the control thread) ---- */
static pthread_mutex_t urid_lock = PTHREAD_MUTEX_INITIALIZER;
static char **urids;
static uint32_t n_urids, cap_urids;

static LV2_URID urid_map(LV2_URID_Map_Handle h, const char *uri)
{
    (void)h;
    if (!uri)
        return 0;
    pthread_mutex_lock(&urid_lock);
    for (uint32_t i = 0; i < n_urids; i++)
        if (!strcmp(urids[i], uri)) {
            pthread_mutex_unlock(&urid_lock);
            return i + 1;
        }
    if (n_urids == cap_urids) {
        uint32_t cap = cap_urids ? cap_urids * 2 : 256;
        char **p = realloc(urids, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&urid_lock);
            return 0;
        }
        urids = p;
        cap_urids = cap;
    }
    char *s = strdup(uri);
    if (!s) {
        pthread_mutex_unlock(&urid_lock);
        return 0;
    }
    urids[n_urids++] = s;
    LV2_URID id = n_urids;
    pthread_mutex_unlock(&urid_lock);
    return id;
}

static const char *urid_unmap(LV2_URID_Unmap_Handle h, LV2_URID id)
{
    (void)h;
    pthread_mutex_lock(&urid_lock);
    const char *s = id >= 1 && id <= n_urids ? urids[id - 1] : NULL;
    pthread_mutex_unlock(&urid_lock);
    return s;
}

uint32_t mg_lv2_urid(const char *uri) { return urid_map(NULL, uri); }

const char *mg_lv2_unurid(uint32_t id) { return urid_unmap(NULL, id); }

/* ---- log:log: a plugin's line, queued (any thread). Off the audio thread
 * it is formatted at once; on it (a plugin logging from run()) its format and
 * arguments are queued and the control thread formats them (log_defer). */
static LV2_URID log_error, log_warning, log_note, log_trace;

static int log_vprintf(LV2_Log_Handle h, LV2_URID type, const char *fmt, va_list ap)
{
    const mg_lv2_features *f = h;
    const int level = type == log_error ? 0 : type == log_warning ? 1 : type == log_note ? 2 : 3;
    uint32_t pos;
    log_slot *sl = log_claim(&pos);
    if (!sl)
        return 0;
    sl->level = level;
    copy_str(sl->node, (int)sizeof sl->node, f ? f->name : "");
    int n;
    if (mg_audio_thread()) {
        n = log_defer(sl, fmt, ap);
    } else {
        n = vsnprintf(sl->msg, sizeof sl->msg, fmt, ap);
        size_t len = strlen(sl->msg);
        while (len && (sl->msg[len - 1] == '\n' || sl->msg[len - 1] == '\r'))
            sl->msg[--len] = 0;
        sl->n_args = -1;
    }
    log_commit(sl, pos);
    return n;
}

static int log_printf(LV2_Log_Handle h, LV2_URID type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int n = log_vprintf(h, type, fmt, ap);
    va_end(ap);
    return n;
}

static LV2_URID_Map map_data = {NULL, urid_map};
static LV2_URID_Unmap unmap_data = {NULL, urid_unmap};
static const LV2_Feature f_map = {LV2_URID__map, &map_data};
static const LV2_Feature f_unmap = {LV2_URID__unmap, &unmap_data};
static const LV2_Feature f_bounded = {LV2_BUF_SIZE__boundedBlockLength, NULL};

/* The host features a plugin may require (lv2:requiredFeature); the plugin
 * properties that some list there too are accepted as well. */
static const char *const supported[] = {
    LV2_URID__map, LV2_URID__unmap, LV2_OPTIONS__options, LV2_BUF_SIZE__boundedBlockLength,
    LV2_CORE__isLive, LV2_CORE__inPlaceBroken, LV2_CORE__hardRTCapable, LV2_WORKER__schedule,
    LV2_LOG__log, LV2_STATE__makePath, LV2_STATE__mapPath, LV2_STATE__freePath,
    NULL,
};

void mg_lv2_features_init(mg_lv2_features *f, double rate)
{
    memset(f, 0, sizeof *f);
    f->rate = (float)rate;
    f->min_block = 1;
    f->max_block = MG_MAX_BLOCK;
    f->nominal_block = MG_MAX_BLOCK;
    const LV2_URID atom_int = urid_map(NULL, LV2_ATOM__Int);
    const LV2_URID atom_float = urid_map(NULL, LV2_ATOM__Float);
    LV2_Options_Option *o = f->opts;
    o[0] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, urid_map(NULL, LV2_BUF_SIZE__minBlockLength),
                                sizeof(int32_t), atom_int, &f->min_block};
    o[1] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, urid_map(NULL, LV2_BUF_SIZE__maxBlockLength),
                                sizeof(int32_t), atom_int, &f->max_block};
    o[2] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0,
                                urid_map(NULL, LV2_BUF_SIZE__nominalBlockLength),
                                sizeof(int32_t), atom_int, &f->nominal_block};
    o[3] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0,
                                urid_map(NULL, "http://lv2plug.in/ns/ext/parameters#sampleRate"),
                                sizeof(float), atom_float, &f->rate};
    o[4] = (LV2_Options_Option){LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, NULL};
    f->f_opts = (LV2_Feature){LV2_OPTIONS__options, f->opts};
    snprintf(f->name, sizeof f->name, "%s", next_name);
    snprintf(f->dir, sizeof f->dir, "%s", next_dir);
    next_name[0] = next_dir[0] = 0; /* one node's */
    f->log = (LV2_Log_Log){f, log_printf, log_vprintf};
    f->f_log = (LV2_Feature){LV2_LOG__log, &f->log};
    int k = 0;
    f->list[k++] = &f_map;
    f->list[k++] = &f_unmap;
    f->list[k++] = &f->f_opts;
    f->list[k++] = &f_bounded;
    f->list[k++] = &f->f_log;
    f->list[k] = NULL;
}

int mg_lv2_available(void) { return 1; }

int mg_lv2_load(char *err, int err_len)
{
    if (n_plugins >= 0)
        return n_plugins;
    world = lilv_world_new();
    if (!world) {
        snprintf(err, (size_t)err_len, "lilv could not make a world");
        return -1;
    }
    lilv_world_load_all(world); /* LV2_PATH, or the default search path */
    log_init();
    log_error = urid_map(NULL, LV2_LOG__Error);
    log_warning = urid_map(NULL, LV2_LOG__Warning);
    log_note = urid_map(NULL, LV2_LOG__Note);
    log_trace = urid_map(NULL, LV2_LOG__Trace);
#define URI(field, u) U.field = lilv_new_uri(world, u)
    URI(audio, LV2_CORE__AudioPort);
    URI(control, LV2_CORE__ControlPort);
    URI(input, LV2_CORE__InputPort);
    URI(output, LV2_CORE__OutputPort);
    URI(atom, LV2_ATOM__AtomPort);
    URI(cv, LV2_CORE__CVPort);
    URI(toggled, LV2_CORE__toggled);
    URI(integer, LV2_CORE__integer);
    URI(enumeration, LV2_CORE__enumeration);
    URI(logarithmic, LV2_PORT_PROPS__logarithmic);
    URI(latency, LV2_CORE__latency);
    URI(reports_latency, LV2_CORE__reportsLatency);
    URI(designation, LV2_CORE__designation);
    URI(unit, LV2_UNITS__unit);
    URI(unit_symbol, LV2_UNITS__symbol);
    URI(hard_rt, LV2_CORE__hardRTCapable);
    URI(optional, LV2_CORE__connectionOptional);
    URI(preset, LV2_PRESETS__Preset);
    URI(label, "http://www.w3.org/2000/01/rdf-schema#label");
    URI(side_chain, "http://lv2plug.in/ns/lv2core#isSideChain");
    URI(pg_group, "http://lv2plug.in/ns/ext/port-groups#group");
    URI(pg_side_chain_of, "http://lv2plug.in/ns/ext/port-groups#sideChainOf");
    URI(sample_rate, LV2_CORE__sampleRate);
#undef URI
    const LilvPlugins *all = lilv_world_get_all_plugins(world);
    int n = (int)lilv_plugins_size(all);
    plugins = calloc((size_t)n + 1, sizeof *plugins);
    if (!plugins) {
        snprintf(err, (size_t)err_len, "out of memory");
        return -1;
    }
    int k = 0;
    LILV_FOREACH (plugins, i, all)
        plugins[k++] = lilv_plugins_get(all, i);
    n_plugins = k;
    return n_plugins;
}

const char *mg_lv2_uri(int index)
{
    if (index < 0 || index >= n_plugins)
        return NULL;
    return lilv_node_as_uri(lilv_plugin_get_uri(plugins[index]));
}

/* ---- per-plugin node types ---- */
typedef struct made {
    mg_node_type type;
    mg_lv2_plugin pl;
    char **presets;   /* URI, label pairs */
    struct made *grouped; /* the variant with grouped main ports (mg_lv2_grouped) */
    int is_variant;       /* this is such a variant */
    struct made *next;
} made;
static made *made_types;

static char *dup_node(const LilvNode *n)
{
    const char *s = n ? lilv_node_as_string(n) : "";
    return strdup(s ? s : "");
}

static char *take_string(LilvNode *n)
{
    char *s = dup_node(n);
    lilv_node_free(n);
    return s;
}

/* the symbol of a port's unit (units:unit -> units:symbol), "" if none */
static char *unit_of(const LilvPlugin *p, const LilvPort *port)
{
    LilvNodes *units = lilv_port_get_value(p, port, U.unit);
    char *s = NULL;
    if (units && lilv_nodes_size(units)) {
        const LilvNode *u = lilv_nodes_get_first(units);
        LilvNode *sym = lilv_world_get(world, u, U.unit_symbol, NULL);
        if (sym)
            s = take_string(sym);
    }
    lilv_nodes_free(units);
    return s ? s : strdup("");
}

/* Choice names of a stepped parameter from its scale points: one per whole
 * step from min to max, or NULL (an integer quantity) when the points do not
 * name every step or two names would collide. */
static char *choice_names(const LilvPlugin *p, const LilvPort *port, float min, float max)
{
    LilvScalePoints *sp = lilv_port_get_scale_points(p, port);
    const int steps = (int)lrintf(max - min) + 1;
    if (!sp || steps < 1 || steps > 256 || (int)lilv_scale_points_size(sp) != steps) {
        lilv_scale_points_free(sp);
        return NULL;
    }
    char **names = calloc((size_t)steps, sizeof *names);
    float *vals = calloc((size_t)steps, sizeof *vals);
    int ok = names && vals;
    LILV_FOREACH (scale_points, i, sp) {
        if (!ok)
            break;
        const LilvScalePoint *pt = lilv_scale_points_get(sp, i);
        float v = lilv_node_as_float(lilv_scale_point_get_value(pt));
        int k = (int)lrintf(v - min);
        if (k < 0 || k >= steps || fabsf(v - (min + (float)k)) > 1e-4f || names[k]) {
            ok = 0;
            break;
        }
        names[k] = dup_node(lilv_scale_point_get_label(pt));
        if (!names[k] || !names[k][0] || strchr(names[k], '|'))
            ok = 0;
    }
    char *out = NULL;
    if (ok) {
        size_t len = 1;
        for (int k = 0; k < steps; k++)
            len += strlen(names[k]) + 1;
        out = malloc(len);
        if (out) {
            out[0] = 0;
            for (int k = 0; k < steps; k++) {
                if (k)
                    strcat(out, "|");
                strcat(out, names[k]);
            }
        }
    }
    for (int k = 0; names && k < steps; k++)
        free(names[k]);
    free(names);
    free(vals);
    lilv_scale_points_free(sp);
    return out;
}

/* lv2:isSideChain, or a member of a port group that is pg:sideChainOf another
 * (LSP marks its side chains that way) */
static int is_side_chain(const LilvPlugin *p, const LilvPort *port)
{
    if (lilv_port_has_property(p, port, U.side_chain))
        return 1;
    int sc = 0;
    LilvNodes *groups = lilv_port_get_value(p, port, U.pg_group);
    LILV_FOREACH (nodes, i, groups)
        sc |= lilv_world_ask(world, lilv_nodes_get(groups, i), U.pg_side_chain_of, NULL);
    lilv_nodes_free(groups);
    return sc;
}

static const LilvPlugin *find(const char *uri)
{
    for (int i = 0; i < n_plugins; i++)
        if (!strcmp(mg_lv2_uri(i), uri))
            return plugins[i];
    return NULL;
}

static void refuse(char *err, int len, const char *fmt, const char *a, const char *b)
{
    snprintf(err, (size_t)len, fmt, a, b);
}

const mg_node_type *mg_lv2_type(const char *uri, char *err, int err_len)
{
    err[0] = 0;
    if (mg_lv2_load(err, err_len) < 0)
        return NULL;
    for (made *m = made_types; m; m = m->next)
        if (!m->is_variant && !strcmp(m->pl.info.uri, uri))
            return &m->type;
    const LilvPlugin *p = find(uri);
    if (!p) {
        refuse(err, err_len, "no LV2 plugin with URI %s%s", uri, "");
        return NULL;
    }
    /* a required feature the host lacks: refused, naming it */
    LilvNodes *req = lilv_plugin_get_required_features(p);
    LILV_FOREACH (nodes, i, req) {
        const char *f = lilv_node_as_uri(lilv_nodes_get(req, i));
        int ok = 0;
        for (int k = 0; supported[k]; k++)
            ok |= !strcmp(f, supported[k]);
        if (!ok) {
            refuse(err, err_len, "%s requires the LV2 feature %s, which mixgraph does not host",
                   uri, f);
            lilv_nodes_free(req);
            return NULL;
        }
    }
    lilv_nodes_free(req);

    const uint32_t np = lilv_plugin_get_num_ports(p);
    made *m = calloc(1, sizeof *m);
    mg_lv2_port *ports = calloc(np + 1, sizeof *ports);
    mg_param_spec *params = calloc(np + 1, sizeof *params);
    mg_port_spec *nports = calloc(np + 1, sizeof *nports);
    mg_readout_spec *readouts = calloc(np + 1, sizeof *readouts);
    mg_choice_spec *choices = calloc(np + 1, sizeof *choices);
    int *param_port = calloc(np + 1, sizeof(int)), *readout_port = calloc(np + 1, sizeof(int));
    if (!m || !ports || !params || !nports || !readouts || !choices || !param_port ||
        !readout_port) {
        refuse(err, err_len, "out of memory%s%s", "", "");
        free(m), free(ports), free(params), free(nports), free(readouts), free(choices);
        free(param_port), free(readout_port);
        return NULL;
    }
    float *mins = calloc(np, sizeof(float)), *maxs = calloc(np, sizeof(float)),
          *defs = calloc(np, sizeof(float));
    lilv_plugin_get_port_ranges_float(p, mins, maxs, defs);
    int n_main_in = 0, n_ain = 0, n_aout = 0, n_params = 0, n_readouts = 0, n_choices = 0, n_atom = 0;
    int latency_port = -1, latency_readout = -1;
    /* audio ports: main inputs, side chains, then outputs (main first) */
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t i = 0; i < np; i++) {
            const LilvPort *port = lilv_plugin_get_port_by_index(p, i);
            if (!lilv_port_is_a(p, port, U.audio))
                continue;
            int in = lilv_port_is_a(p, port, U.input);
            int sc = is_side_chain(p, port);
            if ((pass == 0 && !(in && !sc)) || (pass == 1 && !(in && sc)) || (pass == 2 && in))
                continue;
            n_main_in += pass == 0;
            int k = n_ain + n_aout;
            nports[k].name = dup_node(lilv_port_get_symbol(p, port));
            nports[k].dir = in ? MG_PORT_IN : MG_PORT_OUT;
            nports[k].channels = 1;
            ports[i].kind = in ? MG_LV2_AUDIO_IN : MG_LV2_AUDIO_OUT;
            ports[i].index = in ? n_ain++ : n_aout++;
        }
    }
    const char *bad = NULL;
    for (uint32_t i = 0; i < np && !bad; i++) {
        const LilvPort *port = lilv_plugin_get_port_by_index(p, i);
        const char *sym = lilv_node_as_string(lilv_port_get_symbol(p, port));
        int in = lilv_port_is_a(p, port, U.input);
        if (lilv_port_is_a(p, port, U.audio))
            continue;
        if (lilv_port_is_a(p, port, U.control) && in) {
            mg_param_spec *s = &params[n_params];
            float lo = isnan(mins[i]) ? 0.0f : mins[i], hi = isnan(maxs[i]) ? 1.0f : maxs[i];
            if (!(hi > lo))
                hi = lo + 1.0f;
            float d = isnan(defs[i]) ? lo : defs[i];
            d = d < lo ? lo : d > hi ? hi : d;
            int stepped = 0;
            if (lilv_port_has_property(p, port, U.toggled)) {
                lo = 0.0f, hi = 1.0f, d = d >= 0.5f ? 1.0f : 0.0f, stepped = 1;
                choices[n_choices].names = strdup("off|on");
            } else if (lilv_port_has_property(p, port, U.integer) ||
                       lilv_port_has_property(p, port, U.enumeration)) {
                lo = ceilf(lo), hi = floorf(hi), d = rintf(d);
                if (!(hi > lo))
                    hi = lo + 1.0f;
                stepped = 1;
                choices[n_choices].names = choice_names(p, port, lo, hi);
            }
            s->name = strdup(sym);
            s->unit = unit_of(p, port);
            s->doc = take_string(lilv_port_get_name(p, port));
            s->min = lo, s->max = hi, s->def = d;
            s->map = MG_MAP_LIN;
            s->taper = stepped ? MG_TAPER_STEP
                       : lilv_port_has_property(p, port, U.logarithmic) && lo > 0.0f
                           ? MG_TAPER_LOG
                           : MG_TAPER_LIN;
            s->smooth_ms = 0.0f; /* LV2 controls are set as given; smoothing is the plugin's */
            if (stepped)
                choices[n_choices++].param = s->name;
            ports[i].kind = MG_LV2_CONTROL_IN;
            ports[i].index = n_params;
            param_port[n_params++] = (int)i;
        } else if (lilv_port_is_a(p, port, U.control)) {
            readouts[n_readouts].name = strdup(sym);
            readouts[n_readouts].unit = unit_of(p, port);
            readouts[n_readouts].map = MG_MAP_LIN;
            int lat = lilv_port_has_property(p, port, U.reports_latency);
            LilvNodes *des = lilv_port_get_value(p, port, U.designation);
            LILV_FOREACH (nodes, k, des)
                lat |= lilv_node_equals(lilv_nodes_get(des, k), U.latency);
            lilv_nodes_free(des);
            if (lat && latency_port < 0) {
                latency_port = (int)i;
                latency_readout = n_readouts;
            }
            ports[i].kind = MG_LV2_CONTROL_OUT;
            ports[i].index = n_readouts;
            readout_port[n_readouts++] = (int)i;
        } else if (lilv_port_is_a(p, port, U.atom)) {
            ports[i].kind = in ? MG_LV2_ATOM_IN : MG_LV2_ATOM_OUT;
            ports[i].index = n_atom++;
        } else if (lilv_port_is_a(p, port, U.cv)) {
            ports[i].kind = in ? MG_LV2_CV_IN : MG_LV2_CV_OUT;
        } else if (lilv_port_has_property(p, port, U.optional)) {
            ports[i].kind = MG_LV2_NULL;
        } else {
            bad = sym;
        }
    }
    free(mins), free(maxs), free(defs);
    if (bad) {
        refuse(err, err_len, "%s: port %s is of a kind mixgraph cannot connect", uri, bad);
        free(m), free(ports), free(params), free(nports), free(readouts), free(choices);
        free(param_port), free(readout_port);
        return NULL;
    }
    mg_lv2_plugin *pl = &m->pl;
    pl->plugin = p;
    pl->n_ports = np;
    pl->ports = ports;
    pl->n_params = n_params;
    pl->n_readouts = n_readouts;
    pl->param_port = param_port;
    pl->readout_port = readout_port;
    pl->latency_port = latency_port;
    pl->n_atom = n_atom;
    pl->n_main_in = n_main_in;
    {
        LilvNode *ws = lilv_new_uri(world, LV2_WORKER__schedule);
        pl->worker = lilv_plugin_has_feature(p, ws);
        lilv_node_free(ws);
    }
    mg_lv2_info *info = &pl->info;
    info->uri = strdup(uri);
    info->name = take_string(lilv_plugin_get_name(p));
    info->klass = dup_node(lilv_plugin_class_get_label(lilv_plugin_get_class(p)));
    info->author = take_string(lilv_plugin_get_author_name(p));
    info->hard_rt = lilv_plugin_has_feature(p, U.hard_rt);
    info->n_audio_in = n_ain;
    info->n_audio_out = n_aout;
    info->latency_readout = latency_readout;
    /* presets: URI and label pairs */
    LilvNodes *pre = lilv_plugin_get_related(p, U.preset);
    int npre = pre ? (int)lilv_nodes_size(pre) : 0;
    m->presets = calloc((size_t)npre * 2 + 2, sizeof(char *));
    int k = 0;
    LILV_FOREACH (nodes, i, pre) {
        const LilvNode *pr = lilv_nodes_get(pre, i);
        lilv_world_load_resource(world, pr);
        LilvNode *label = lilv_world_get(world, pr, U.label, NULL);
        if (m->presets) {
            m->presets[2 * k] = dup_node(pr);
            m->presets[2 * k + 1] = label ? take_string(label) : dup_node(pr);
            k++;
        } else {
            lilv_node_free(label);
        }
    }
    lilv_nodes_free(pre);
    info->n_presets = k;

    /* the registered template (nodes/lv2.c): its process, prepare, release,
     * latency and on_param hooks */
    m->type = *mg_type_get(mg_type_find("lv2"));
    m->type.doc = info->name;
    m->type.default_channels = m->type.min_channels = m->type.max_channels = 1;
    m->type.params = params;
    m->type.n_params = n_params;
    m->type.ports = nports;
    m->type.n_ports = n_ain + n_aout;
    /* and one of the host's own: output samples that were NaN or Inf (scrubbed) */
    readouts[n_readouts].name = "nonfinite";
    readouts[n_readouts].unit = "";
    readouts[n_readouts].map = MG_MAP_LIN;
    m->type.readouts = readouts;
    m->type.n_readouts = n_readouts + 1;
    m->type.choices = choices;
    m->type.n_choices = n_choices;
    m->type.data = pl;
    m->next = made_types;
    made_types = m;
    return &m->type;
}

const mg_node_type *mg_lv2_grouped(const mg_node_type *t)
{
    made *m = made_types;
    while (m && &m->type != t)
        m = m->next;
    if (!m)
        return NULL;
    if (m->is_variant)
        return t;
    if (m->grouped)
        return &m->grouped->type;
    const int nmi = m->pl.n_main_in, nsc = m->pl.info.n_audio_in - nmi,
              no = m->pl.info.n_audio_out;
    if (nmi < 2 && no < 2)
        return t;
    /* a side chain named `in` or `out` would collide with the groups' names */
    for (int k = nmi; k < nmi + nsc; k++)
        if (!strcmp(t->ports[k].name, "in") || !strcmp(t->ports[k].name, "out"))
            return t;
    made *g = calloc(1, sizeof *g);
    mg_port_spec *ports = calloc((size_t)(nmi + nsc + no) + 1, sizeof *ports);
    if (!g || !ports) {
        free(g), free(ports);
        return NULL;
    }
    *g = *m;
    int k = 0;
    if (nmi >= 2)
        ports[k++] = (mg_port_spec){"in", MG_PORT_IN, nmi};
    else if (nmi == 1)
        ports[k++] = t->ports[0];
    for (int j = 0; j < nsc; j++)
        ports[k++] = t->ports[nmi + j];
    if (no >= 2)
        ports[k++] = (mg_port_spec){"out", MG_PORT_OUT, no};
    else if (no == 1)
        ports[k++] = t->ports[nmi + nsc];
    g->type.ports = ports;
    g->type.n_ports = k;
    g->type.data = &g->pl;
    g->grouped = NULL;
    g->is_variant = 1;
    m->grouped = g;
    g->next = made_types;
    made_types = g;
    return &g->type;
}

int mg_lv2_describe(const mg_node_type *t, mg_lv2_info *out)
{
    for (made *m = made_types; m; m = m->next)
        if (&m->type == t) {
            *out = m->pl.info;
            return 0;
        }
    return -1;
}

const char *mg_lv2_preset(const mg_node_type *t, int index, const char **label)
{
    for (made *m = made_types; m; m = m->next)
        if (&m->type == t) {
            if (index < 0 || index >= m->pl.info.n_presets || !m->presets)
                return NULL;
            *label = m->presets[2 * index + 1];
            return m->presets[2 * index];
        }
    return NULL;
}

typedef struct {
    const mg_node_type *t;
    float *values;
    int n, set;
} preset_sink;

static void preset_value(const char *symbol, void *ud, const void *value, uint32_t size,
                         uint32_t type)
{
    preset_sink *ps = ud;
    double v;
    if (type == urid_map(NULL, LV2_ATOM__Float) && size == sizeof(float))
        v = *(const float *)value;
    else if (type == urid_map(NULL, LV2_ATOM__Double) && size == sizeof(double))
        v = *(const double *)value;
    else if (type == urid_map(NULL, LV2_ATOM__Int) && size == sizeof(int32_t))
        v = *(const int32_t *)value;
    else if (type == urid_map(NULL, LV2_ATOM__Long) && size == sizeof(int64_t))
        v = (double)*(const int64_t *)value;
    else
        return;
    for (int k = 0; k < ps->t->n_params && k < ps->n; k++)
        if (!strcmp(ps->t->params[k].name, symbol)) {
            ps->values[k] = (float)v;
            ps->set++;
            return;
        }
}

int mg_lv2_preset_values(const mg_node_type *t, const char *preset_uri, float *values, int n)
{
    int found = 0;
    for (made *m = made_types; m; m = m->next)
        if (&m->type == t)
            for (int k = 0; k < m->pl.info.n_presets && m->presets; k++)
                found |= !strcmp(m->presets[2 * k], preset_uri);
    if (!found)
        return -1;
    LilvNode *node = lilv_new_uri(world, preset_uri);
    LilvState *st = node ? lilv_state_new_from_world(world, &map_data, node) : NULL;
    lilv_node_free(node);
    if (!st)
        return -1;
    for (int k = 0; k < n; k++)
        values[k] = NAN;
    preset_sink ps = {t, values, n, 0};
    lilv_state_emit_port_values(st, preset_value, &ps);
    lilv_state_free(st);
    return ps.set;
}

#else /* no <lilv/lilv.h> at build time */

int mg_lv2_available(void) { return 0; }

int mg_lv2_load(char *err, int err_len)
{
    snprintf(err, (size_t)err_len, "this build of mixgraph has no LV2 support "
             "(liblilv-dev was missing when it was built)");
    return -1;
}

const char *mg_lv2_uri(int index) { return NULL; }

const mg_node_type *mg_lv2_type(const char *uri, char *err, int err_len)
{
    mg_lv2_load(err, err_len);
    return NULL;
}

int mg_lv2_describe(const mg_node_type *t, mg_lv2_info *out) { return -1; }

const mg_node_type *mg_lv2_grouped(const mg_node_type *t) { return NULL; }

const char *mg_lv2_preset(const mg_node_type *t, int index, const char **label) { return NULL; }

int mg_lv2_preset_values(const mg_node_type *t, const char *preset_uri, float *values, int n)
{
    return -1;
}

uint32_t mg_lv2_urid(const char *uri) { return 0; }

const char *mg_lv2_unurid(uint32_t id) { return NULL; }

#endif
