/* Test LV2 plugins for tests/test_lv2.py (bad input): built by the test into a
 * bundle with manifest.ttl, found through LV2_PATH.
 *   urn:mixgraph:test:nan      gain-through that writes NaN and +Inf now and then
 *   urn:mixgraph:test:fail     whose instantiate() fails
 *   urn:mixgraph:test:nonrt    a gain-through that does not say lv2:hardRTCapable
 *   urn:mixgraph:test:worker   a gain-through that asks its worker (worker:schedule)
 *                              for twice its block count every 10th run(); the
 *                              answers it got are its control output `echo`
 *   urn:mixgraph:test:needs    requires state:makePath, which mixgraph does not host */
#include <lv2/core/lv2.h>
#include <lv2/worker/worker.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
} plug;

static LV2_Handle inst(const LV2_Descriptor *d, double rate, const char *path,
                       const LV2_Feature *const *f)
{
    if (!strcmp(d->URI, "urn:mixgraph:test:fail"))
        return NULL;
    plug *p = calloc(1, sizeof *p);
    if (p)
        p->nan = !strcmp(d->URI, "urn:mixgraph:test:nan");
    for (int i = 0; p && f && f[i]; i++)
        if (!strcmp(f[i]->URI, LV2_WORKER__schedule))
            p->sched = f[i]->data;
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
    }
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

static const void *extension(const char *uri)
{
    return !strcmp(uri, LV2_WORKER__interface) ? &worker_iface : NULL;
}

static void cleanup(LV2_Handle h) { free(h); }

static const LV2_Descriptor descs[] = {
    {"urn:mixgraph:test:nan", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:fail", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:nonrt", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:worker", inst, connect, NULL, run, NULL, cleanup, extension},
    {"urn:mixgraph:test:needs", inst, connect, NULL, run, NULL, cleanup, NULL},
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index)
{
    return index < 5 ? &descs[index] : NULL;
}
