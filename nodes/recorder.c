/* recorder: streams its input to a sound file through the disk worker.
 *
 * The node copies frames into the fifo; the worker (server/diskio.py)
 * writes and flushes the file. When the fifo is full (the disk does not
 * keep up) the missing frames are counted in `dropped`, never hidden. */

#include "dsp_stream.h"

enum { P_RECORD };
enum { R_RECORDED, R_DROPPED };

static const mg_param_spec params[] = {
    {"record", "", "1 records, 0 pauses", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
};
static const mg_port_spec ports[] = {
    {"in", MG_PORT_IN, 0},
};
static const mg_readout_spec readouts[] = {
    {"recorded", "s", MG_MAP_LIN, 0},
    {"dropped", "frames", MG_MAP_LIN, 0},
};

typedef struct {
    mg_stream io; /* first: fifo, scratch, channels, rate */
    uint64_t recorded;
} recorder_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    return mg_stream_prepare(&((recorder_state *)st)->io, ctx);
}

static void release(void *st)
{
    mg_stream_release(&((recorder_state *)st)->io);
}

static void process(void *st, const mg_proc *p)
{
    recorder_state *s = st;
    const int n = p->nframes, ch = s->io.channels;
    const int rec = p->pv[P_RECORD].value >= 0.5f;
    mg_fifo_set_flags(s->io.fifo, rec ? MG_FIFO_FLAG_ACTIVE : 0u);
    if (rec) {
        for (int c = 0; c < ch; c++) {
            const float *x = p->in[c];
            for (int i = 0; i < n; i++)
                s->io.scratch[(size_t)i * (size_t)ch + (size_t)c] = x[i];
        }
        int w = mg_fifo_write(s->io.fifo, s->io.scratch, n);
        if (w < n)
            mg_fifo_add_dropped(s->io.fifo, (uint64_t)(n - w));
        s->recorded += (uint64_t)w;
    }
    p->readout[R_RECORDED] = (float)((double)s->recorded / s->io.rate);
    p->readout[R_DROPPED] = (float)mg_fifo_dropped(s->io.fifo);
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"record", "pause|record"},
};

const mg_node_type mg_type_recorder = {
    .name = "recorder",
    .doc = "Sound-file recorder (WAV/FLAC) streamed to disk by a worker thread; counts dropped frames.",
    .default_channels = 2, .min_channels = 1, .max_channels = 64,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(recorder_state),
    .needs_fifo = 1,
    .prepare = prepare,
    .process = process,
    .release = release,
};
