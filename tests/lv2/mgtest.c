/* Test LV2 plugins for tests/test_lv2.py (bad input): built by the test into a
 * bundle with manifest.ttl, found through LV2_PATH.
 *   urn:mixgraph:test:nan      gain-through that writes NaN and +Inf now and then
 *   urn:mixgraph:test:fail     whose instantiate() fails
 *   urn:mixgraph:test:nonrt    a gain-through that does not say lv2:hardRTCapable */
#include <lv2/core/lv2.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *in;
    float *out;
    const float *gain;
    int nan;
    unsigned long n;
} plug;

static LV2_Handle inst(const LV2_Descriptor *d, double rate, const char *path,
                       const LV2_Feature *const *f)
{
    if (!strcmp(d->URI, "urn:mixgraph:test:fail"))
        return NULL;
    plug *p = calloc(1, sizeof *p);
    if (p)
        p->nan = !strcmp(d->URI, "urn:mixgraph:test:nan");
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
}

static void cleanup(LV2_Handle h) { free(h); }

static const LV2_Descriptor descs[] = {
    {"urn:mixgraph:test:nan", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:fail", inst, connect, NULL, run, NULL, cleanup, NULL},
    {"urn:mixgraph:test:nonrt", inst, connect, NULL, run, NULL, cleanup, NULL},
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index)
{
    return index < 3 ? &descs[index] : NULL;
}
