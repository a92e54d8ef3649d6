/* player: plays a sound file streamed from disk by the worker thread.
 *
 * The disk worker (server/diskio.py) fills the fifo from the file; this
 * node only copies frames out of it. `play` 1 starts, 0 stops and rewinds
 * to the start; `loop` makes the worker wrap at the end of the file. */

#include "dsp_stream.h"

enum { P_PLAY, P_LOOP, P_LEVEL };
enum { R_POSITION, R_UNDERRUNS };

static const mg_param_spec params[] = {
    {"play", "", "1 plays, 0 stops and rewinds", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"loop", "", "1 loops at the end of the file", 0.0f, 1.0f, 0.0f, MG_MAP_LIN, MG_TAPER_STEP, 0.0f},
    {"level", "dB", "playback level", -120.0f, 24.0f, 0.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
};
static const mg_port_spec ports[] = {
    {"out", MG_PORT_OUT, 0},
};
static const mg_readout_spec readouts[] = {
    {"position", "s", MG_MAP_LIN, 0},
    {"underruns", "frames", MG_MAP_LIN, 0},
};

typedef struct {
    mg_stream io; /* first: fifo, scratch, channels, rate */
    uint32_t synced_gen;
    int was_playing;
    uint64_t played;       /* frames since the last rewind (across loops) */
    uint64_t underruns;
} player_state;

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    return mg_stream_prepare(&((player_state *)st)->io, ctx);
}

static void release(void *st)
{
    mg_stream_release(&((player_state *)st)->io);
}

static void process(void *st, const mg_proc *p)
{
    player_state *s = st;
    const int n = p->nframes, ch = s->io.channels;
    const int playing = p->pv[P_PLAY].value >= 0.5f;
    const uint32_t flags = (p->pv[P_LOOP].value >= 0.5f ? MG_FIFO_FLAG_LOOP : 0u) |
                           (playing ? MG_FIFO_FLAG_ACTIVE : 0u);
    mg_fifo_set_flags(s->io.fifo, flags);
    int got = 0;
    if (playing) {
        if (mg_fifo_rewind_sync(s->io.fifo, &s->synced_gen)) {
            got = mg_fifo_read(s->io.fifo, s->io.scratch, n);
            if (got < n && !(mg_fifo_status(s->io.fifo) & MG_FIFO_STATUS_EOF))
                s->underruns += (uint64_t)(n - got);
        }
        s->played += (uint64_t)got;
    } else {
        if (s->was_playing) {
            mg_fifo_request_rewind(s->io.fifo);
            s->played = 0;
        }
        /* stopped: drop the old frames as soon as the worker has rewound, so
         * it can refill the fifo from the start before play resumes */
        mg_fifo_rewind_sync(s->io.fifo, &s->synced_gen);
    }
    s->was_playing = playing;
    const mg_pv *lv = &p->pv[P_LEVEL];
    for (int c = 0; c < ch; c++) {
        float *y = p->out[c];
        for (int i = 0; i < got; i++)
            y[i] = s->io.scratch[(size_t)i * (size_t)ch + (size_t)c] * mg_pv_at(lv, i);
        for (int i = got; i < n; i++)
            y[i] = 0.0f;
    }
    /* the position in the file: a loop wraps it to the start (the end of the
     * file reads as its length, not 0) */
    const uint64_t len = mg_fifo_length(s->io.fifo);
    const uint64_t at = len && s->played > len ? (s->played - 1) % len + 1 : s->played;
    p->readout[R_POSITION] = (float)((double)at / s->io.rate);
    p->readout[R_UNDERRUNS] = (float)s->underruns;
}

/* names of the stepped parameters' choices, one per step from min (mg_choice_spec) */
static const mg_choice_spec choices[] = {
    {"play", "stop|play"},
    {"loop", "off|on"},
};

const mg_node_type mg_type_player = {
    .name = "player",
    .doc = "Sound-file player (WAV/FLAC) streamed from disk by a worker thread; `play` 0 rewinds.",
    .default_channels = 2, .min_channels = 1, .max_channels = 64,
    MG_PARAMS(params),
    MG_CHOICES(choices),
    MG_PORTS(ports),
    MG_READOUTS(readouts),
    .state_size = sizeof(player_state),
    .needs_fifo = 1,
    .prepare = prepare,
    .process = process,
    .release = release,
};
