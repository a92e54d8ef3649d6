/* Test LV2 plugins for tests/test_lv2.py (bad input): built by the test into a
 * bundle with manifest.ttl, found through LV2_PATH.
 *   urn:mixgraph:test:nan      gain-through that writes NaN and +Inf now and then
 *   urn:mixgraph:test:fail     whose instantiate() fails
 *   urn:mixgraph:test:nonrt    a gain-through that does not say lv2:hardRTCapable
 *   urn:mixgraph:test:worker   a gain-through that asks its worker (worker:schedule)
 *                              for twice its block count every 10th run(); the
 *                              answers it got are its control output `echo`
 *   urn:mixgraph:test:needs    requires data-access, which mixgraph does not host
 *   urn:mixgraph:test:state    learns the peak of its input (state beyond its
 *                              controls: readout `learned`); saves it as a
 *                              float and in a file it makes through
 *                              state:makePath with a path that tries to leave
 *                              the directory (../../); restores from the file;
 *                              logs (log:log) at instantiate and from run(),
 *                              and the same two lines of many conversions
 *                              (log_formats) from both: the host formats
 *                              the audio thread's on its control thread */
#include <lv2/core/lv2.h>
#include <lv2/log/log.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T "urn:mixgraph:test:"

typedef struct {
    const float *in;
    float *out;
    const float *gain;
    int nan;
    unsigned long n;
    float *echo;
    LV2_Worker_Schedule *sched;
    uint32_t runs;
    float got;
    /* urn:mixgraph:test:state */
    int state;
    float peak, *learned;
    LV2_Log_Log *log;
    LV2_State_Make_Path *make_path;
    LV2_URID_Map *map;
    LV2_URID u_peak, u_file, u_float, u_path, u_note, u_warning;
} plug;

/* Two lines whose every conversion a host must pass on as printf would. */
static void log_formats(plug *p)
{
    p->log->printf(p->log->handle, p->u_note,
                   "A %s|%d|%5.2f|%-4x|%c|%lu|%lld|%%|%*d|%.*f|%hhd|%zu|%e", "str", -42,
                   3.14159, 255, 'Z', 123456789UL, -9000000000LL, 6, 7, 3, 2.5, -3,
                   (size_t)77, 1e-5);
    p->log->printf(p->log->handle, p->u_note,
                   "B %g|%#o|%+i|%Lf|%-8.3s|%05u|%hu|%jd|%G|%a|%.0e|%i\n", 1e20, 8, 5,
                   (long double)1.5, "abcdef", 42u, (unsigned short)65535, (intmax_t)-1,
                   1e-300, 0.5, 12345.678, INT_MIN);
    /* glibc's printf takes a work buffer this long from malloc */
    p->log->printf(p->log->handle, p->u_note, "C %.20000f", 1e300);
}

static LV2_Handle inst(const LV2_Descriptor *d, double rate, const char *path,
                       const LV2_Feature *const *f)
{
    if (!strcmp(d->URI, "urn:mixgraph:test:fail"))
        return NULL;
    plug *p = calloc(1, sizeof *p);
    if (p)
        p->nan = !strcmp(d->URI, "urn:mixgraph:test:nan");
    for (int i = 0; p && f && f[i]; i++) {
        if (!strcmp(f[i]->URI, LV2_WORKER__schedule))
            p->sched = f[i]->data;
        if (!strcmp(f[i]->URI, LV2_LOG__log))
            p->log = f[i]->data;
        if (!strcmp(f[i]->URI, LV2_STATE__makePath))
            p->make_path = f[i]->data;
        if (!strcmp(f[i]->URI, LV2_URID__map))
            p->map = f[i]->data;
    }
    if (p && !strcmp(d->URI, T "state")) {
        if (!p->map || !p->log || !p->make_path) {
            free(p);
            return NULL;
        }
        p->state = 1;
        LV2_URID_Map *m = p->map;
        p->u_peak = m->map(m->handle, T "peak");
        p->u_file = m->map(m->handle, T "file");
        p->u_float = m->map(m->handle, "http://lv2plug.in/ns/ext/atom#Float");
        p->u_path = m->map(m->handle, "http://lv2plug.in/ns/ext/atom#Path");
        p->u_note = m->map(m->handle, LV2_LOG__Note);
        p->u_warning = m->map(m->handle, LV2_LOG__Warning);
        p->log->printf(p->log->handle, p->u_note, "instantiated at %.0f Hz\n", rate);
        log_formats(p);
    }
    if (p && !strcmp(d->URI, "urn:mixgraph:test:worker") && !p->sched) {
        free(p);
        return NULL;
    }
    return p;
}

static void connect(LV2_Handle h, uint32_t port, void *data)
{
    plug *p = h;
    if (port == 0)
        p->in = data;
    else if (port == 1)
        p->out = data;
    else if (port == 2)
        p->gain = data;
    else if (port == 3 && p->state)
        p->learned = data;
    else if (port == 3)
        p->echo = data;
}

static void run(LV2_Handle h, uint32_t n)
{
    plug *p = h;
    for (uint32_t i = 0; i < n; i++, p->n++) {
        float y = p->in[i] * *p->gain;
        if (p->nan && p->n % 1000 == 500)
            y = NAN;
        if (p->nan && p->n % 1000 == 700)
            y = INFINITY;
        p->out[i] = y;
        if (p->state && fabsf(p->in[i]) > p->peak)
            p->peak = fabsf(p->in[i]);
    }
    if (p->learned)
        *p->learned = p->peak;
    if (p->state && p->runs % 100 == 0) /* and after a host's warm-up */
        log_formats(p);
    if (p->state && p->runs++ % 100 == 0) /* from the audio thread */
        p->log->printf(p->log->handle, p->u_warning, "run %u: peak %.4f", p->runs, p->peak);
    if (p->sched && ++p->runs % 10 == 0) {
        uint32_t v = p->runs;
        p->sched->schedule_work(p->sched->handle, sizeof v, &v);
    }
    if (p->echo)
        *p->echo = p->got;
}

static LV2_Worker_Status work(LV2_Handle h, LV2_Worker_Respond_Function respond,
                              LV2_Worker_Respond_Handle rh, uint32_t size, const void *data)
{
    uint32_t v = *(const uint32_t *)data * 2;
    return respond(rh, sizeof v, &v);
}

static LV2_Worker_Status work_response(LV2_Handle h, uint32_t size, const void *body)
{
    ((plug *)h)->got = (float)*(const uint32_t *)body;
    return LV2_WORKER_SUCCESS;
}

static const LV2_Worker_Interface worker_iface = {work, work_response, NULL};

static LV2_State_Status save(LV2_Handle h, LV2_State_Store_Function store,
                             LV2_State_Handle sh, uint32_t flags,
                             const LV2_Feature *const *features)
{
    plug *p = h;
    LV2_State_Map_Path *mp = NULL;
    for (int i = 0; features && features[i]; i++)
        if (!strcmp(features[i]->URI, LV2_STATE__mapPath))
            mp = features[i]->data;
    if (!mp)
        return LV2_STATE_ERR_NO_FEATURE;
    char *path = p->make_path->path(p->make_path->handle, "../../escape/peak.txt");
    FILE *fh = path ? fopen(path, "w") : NULL;
    if (!fh) {
        free(path);
        return LV2_STATE_ERR_UNKNOWN;
    }
    fprintf(fh, "%.9g\n", p->peak);
    fclose(fh);
    char *abs = mp->abstract_path(mp->handle, path);
    store(sh, p->u_file, abs, strlen(abs) + 1, p->u_path,
          LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
    store(sh, p->u_peak, &p->peak, sizeof p->peak, p->u_float,
          LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
    free(abs);
    free(path);
    return LV2_STATE_SUCCESS;
}

/* the peak comes back from the file (the float is checked against it) */
static LV2_State_Status restore(LV2_Handle h, LV2_State_Retrieve_Function retrieve,
                                LV2_State_Handle sh, uint32_t flags,
                                const LV2_Feature *const *features)
{
    plug *p = h;
    LV2_State_Map_Path *mp = NULL;
    for (int i = 0; features && features[i]; i++)
        if (!strcmp(features[i]->URI, LV2_STATE__mapPath))
            mp = features[i]->data;
    size_t size;
    uint32_t type, fl;
    const char *rel = retrieve(sh, p->u_file, &size, &type, &fl);
    const float *pk = retrieve(sh, p->u_peak, &size, &type, &fl);
    if (!mp || !rel || !pk || type != p->u_float)
        return LV2_STATE_ERR_NO_PROPERTY;
    char *path = mp->absolute_path(mp->handle, rel);
    FILE *fh = path ? fopen(path, "r") : NULL;
    free(path);
    float v;
    if (!fh)
        return LV2_STATE_ERR_UNKNOWN;
    const int ok = fscanf(fh, "%f", &v) == 1;
    fclose(fh);
    if (!ok || v != *pk)
        return LV2_STATE_ERR_UNKNOWN;
    p->peak = v;
    return LV2_STATE_SUCCESS;
}

static const LV2_State_Interface state_iface = {save, restore};

static const void *extension(const char *uri)
{
    return !strcmp(uri, LV2_WORKER__interface) ? (const void *)&worker_iface : NULL;
}

static const void *state_extension(const char *uri)
{
    return !strcmp(uri, LV2_STATE__interface) ? (const void *)&state_iface : NULL;
}

static void cleanup(LV2_Handle h) { free(h); }

static const LV2_Descriptor descs[] = {
    {"urn:mixgraph:test:nan", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:fail", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:nonrt", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:worker", inst, connect, NULL, run, NULL, cleanup, extension},
    {"urn:mixgraph:test:needs", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:state", inst, connect, NULL, run, NULL, cleanup, state_extension},
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index)
{
    return index < 6 ? &descs[index] : NULL;
}
