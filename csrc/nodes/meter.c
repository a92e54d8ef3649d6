/* meter: peak (instant attack, 20 dB / 1.7 s fall) and RMS (300 ms) per channel. */
#include "../mg_node.h"

static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
};
static const mg_readout_spec readouts[] = {
    {"peak", "dBFS", MG_MAP_DB, 1},
    {"rms", "dBFS", MG_MAP_DB, 1},
};

#define MG_METER_MAX_CH 64

typedef struct {
    int channels;
    float fall;   /* per-sample peak decay factor */
    float alpha;  /* RMS one-pole coefficient */
    float peak[MG_METER_MAX_CH];
    double ms[MG_METER_MAX_CH];
} meter_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    meter_state *s = st;
    s->channels = ctx->channels;
    s->fall = (float)pow(10.0, -20.0 / 20.0 / (1.7 * ctx->sample_rate));
    s->alpha = (float)(1.0 - exp(-1.0 / (0.300 * ctx->sample_rate)));
    return 0;
}

static void reset(void *st)
{
    meter_state *s = st;
    memset(s->peak, 0, sizeof s->peak);
    memset(s->ms, 0, sizeof s->ms);
}

static void process(void *st, const mg_proc *p)
{
    meter_state *s = st;
    for (int c = 0; c < s->channels; c++) {
        const float *x = p->in[c];
        float pk = s->peak[c];
        double ms = s->ms[c];
        const double a = s->alpha;
        for (int i = 0; i < p->nframes; i++) {
            const float v = fabsf(x[i]);
            pk *= s->fall;
            if (v > pk || !(pk == pk))
                pk = v;
            ms += a * ((double)x[i] * x[i] - ms);
        }
        if (!isfinite(pk))
            pk = 0.0f;
        if (!isfinite(ms))
            ms = 0.0;
        s->peak[c] = pk;
        s->ms[c] = ms;
        p->readout[c] = pk;
        p->readout[s->channels + c] = (float)sqrt(ms);
    }
}

const mg_node_type mg_type_meter = {
    "meter", "Level meter: `peak` (instant attack, 20 dB per 1.7 s fall) and `rms` (300 ms) per channel, in dBFS.",
    2, 1, MG_METER_MAX_CH,
    NULL, 0, ports, MG_COUNT(ports), readouts, MG_COUNT(readouts),
    sizeof(meter_state), 0, prepare, process, reset, NULL, NULL, NULL,
};
