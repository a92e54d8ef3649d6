/* Shared by the disk-streaming nodes (player, recorder): the fifo to the
 * disk worker and a block of interleaved scratch frames. */
#ifndef MG_DSP_STREAM_H
#define MG_DSP_STREAM_H

#include <stdlib.h>

#include "mg_node.h"

typedef struct {
    int channels;
    double rate;
    mg_fifo *fifo;
    float *scratch; /* MG_MAX_BLOCK interleaved frames */
} mg_stream;

/* [control] check the fifo matches the node and allocate the scratch block */
static inline int mg_stream_prepare(mg_stream *s, const mg_prepare_ctx *ctx)
{
    s->channels = ctx->channels;
    s->rate = ctx->sample_rate;
    s->fifo = ctx->fifo;
    if (!s->fifo || mg_fifo_channels(s->fifo) != ctx->channels)
        return -1;
    s->scratch = mg_zalloc((size_t)MG_MAX_BLOCK * (size_t)ctx->channels, sizeof(float));
    return s->scratch ? 0 : -1;
}

static inline void mg_stream_release(mg_stream *s)
{
    free(s->scratch);
    s->scratch = NULL;
}

#endif
