/* mixgraph C core: lock-free single-producer / single-consumer rings.
 *
 * mg_ring carries fixed-size items (commands, events); mg_fifo carries
 * interleaved audio frames (disk streaming, output taps). Indices are
 * free-running 64-bit counters; the producer owns the write index and the
 * consumer the read index, each published with release/acquire. */
#include <stdlib.h>

#include "mg_internal.h"

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t c = 1;
    while (c < n)
        c <<= 1;
    return c;
}

int mg_ring_init(mg_ring *r, int capacity, size_t item)
{
    uint64_t cap = pow2_at_least(capacity > 2 ? (uint64_t)capacity : 2);
    r->buf = mg_calloc(cap, item);
    if (!r->buf)
        return -1;
    r->mask = cap - 1;
    r->item = item;
    atomic_store(&r->head, 0);
    atomic_store(&r->tail, 0);
    return 0;
}

void mg_ring_destroy(mg_ring *r)
{
    mg_free(r->buf);
    r->buf = NULL;
}

int mg_ring_push(mg_ring *r, const void *item)
{
    const uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    const uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail > r->mask)
        return 0;
    memcpy(r->buf + (head & r->mask) * r->item, item, r->item);
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return 1;
}

int mg_ring_pop(mg_ring *r, void *item)
{
    const uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    const uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (head == tail)
        return 0;
    memcpy(item, r->buf + (tail & r->mask) * r->item, r->item);
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    return 1;
}

int mg_ring_space(mg_ring *r)
{
    const uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    const uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    return (int)(r->mask + 1 - (head - tail));
}

/* ---- audio frame fifo ------------------------------------------- */

mg_fifo *mg_fifo_new(int channels, int frames)
{
    if (channels < 1 || channels > 256 || frames < 1 || frames > (1 << 24))
        return NULL;
    mg_fifo *f = mg_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    uint64_t cap = pow2_at_least((uint64_t)frames);
    f->buf = mg_calloc(cap * (uint64_t)channels, sizeof(float));
    if (!f->buf) {
        mg_free(f);
        return NULL;
    }
    f->channels = channels;
    f->mask = cap - 1;
    return f;
}

void mg_fifo_free(mg_fifo *f)
{
    if (!f)
        return;
    mg_free(f->buf);
    mg_free(f);
}

int mg_fifo_channels(mg_fifo *f) { return f->channels; }

int mg_fifo_readable(mg_fifo *f)
{
    return (int)(atomic_load_explicit(&f->wr, memory_order_acquire) -
                 atomic_load_explicit(&f->rd, memory_order_relaxed));
}

int mg_fifo_writable(mg_fifo *f)
{
    return (int)(f->mask + 1 -
                 (atomic_load_explicit(&f->wr, memory_order_relaxed) -
                  atomic_load_explicit(&f->rd, memory_order_acquire)));
}

/* Copy todo frames between the ring (from index `at0`) and a flat buffer,
 * in at most two runs around the wrap. */
static void fifo_copy(mg_fifo *f, uint64_t at0, float *flat, uint64_t todo, int to_ring)
{
    const uint64_t ch = (uint64_t)f->channels;
    for (uint64_t k = 0; k < todo;) {
        uint64_t at = (at0 + k) & f->mask;
        uint64_t run = f->mask + 1 - at;
        if (run > todo - k)
            run = todo - k;
        if (to_ring)
            memcpy(f->buf + at * ch, flat + k * ch, sizeof(float) * run * ch);
        else
            memcpy(flat + k * ch, f->buf + at * ch, sizeof(float) * run * ch);
        k += run;
    }
}

int mg_fifo_write(mg_fifo *f, const float *frames, int n)
{
    const uint64_t wr = atomic_load_explicit(&f->wr, memory_order_relaxed);
    const uint64_t rd = atomic_load_explicit(&f->rd, memory_order_acquire);
    const uint64_t space = f->mask + 1 - (wr - rd);
    uint64_t todo = n < 0 ? 0 : (uint64_t)n;
    if (todo > space)
        todo = space;
    fifo_copy(f, wr, (float *)frames, todo, 1);
    atomic_store_explicit(&f->wr, wr + todo, memory_order_release);
    return (int)todo;
}

int mg_fifo_read(mg_fifo *f, float *frames, int n)
{
    const uint64_t rd = atomic_load_explicit(&f->rd, memory_order_relaxed);
    const uint64_t wr = atomic_load_explicit(&f->wr, memory_order_acquire);
    uint64_t todo = n < 0 ? 0 : (uint64_t)n;
    if (todo > wr - rd)
        todo = wr - rd;
    fifo_copy(f, rd, frames, todo, 0);
    atomic_store_explicit(&f->rd, rd + todo, memory_order_release);
    return (int)todo;
}

uint64_t mg_fifo_dropped(mg_fifo *f) { return atomic_load(&f->dropped); }

void mg_fifo_add_dropped(mg_fifo *f, uint64_t n)
{
    atomic_fetch_add_explicit(&f->dropped, n, memory_order_relaxed);
}

uint32_t mg_fifo_rewind_request(mg_fifo *f)
{
    return atomic_load_explicit(&f->rewind_req, memory_order_acquire);
}

void mg_fifo_rewind_ack(mg_fifo *f, uint32_t gen)
{
    atomic_store_explicit(&f->ack_pos, atomic_load_explicit(&f->wr, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&f->rewind_ack, gen, memory_order_release);
}

uint32_t mg_fifo_flags(mg_fifo *f)
{
    return atomic_load_explicit(&f->flags, memory_order_acquire);
}

/* ---- self test: one producer thread, one consumer, order checked --- */

typedef struct {
    mg_ring *ring;
    int n;
} stress_arg;

static void *stress_producer(void *arg)
{
    stress_arg *a = (stress_arg *)arg;
    for (uint64_t i = 0; i < (uint64_t)a->n;) {
        if (mg_ring_push(a->ring, &i))
            i++;
    }
    return NULL;
}

int mg_ring_stress(int n_items, int capacity)
{
    mg_ring r;
    if (mg_ring_init(&r, capacity, sizeof(uint64_t)))
        return -1;
    stress_arg a = {&r, n_items};
    pthread_t th;
    if (pthread_create(&th, NULL, stress_producer, &a)) {
        mg_ring_destroy(&r);
        return -1;
    }
    int bad = 0;
    for (uint64_t want = 0; want < (uint64_t)n_items;) {
        uint64_t got;
        if (mg_ring_pop(&r, &got)) {
            if (got != want)
                bad++;
            want++;
        }
    }
    pthread_join(th, NULL);
    mg_ring_destroy(&r);
    return bad;
}

void mg_fifo_set_flags(mg_fifo *f, uint32_t flags)
{
    atomic_store_explicit(&f->flags, flags, memory_order_release);
}

void mg_fifo_request_rewind(mg_fifo *f)
{
    atomic_fetch_add_explicit(&f->rewind_req, 1, memory_order_release);
}

int mg_fifo_rewind_sync(mg_fifo *f, uint32_t *synced_gen)
{
    const uint32_t req = atomic_load_explicit(&f->rewind_req, memory_order_relaxed);
    const uint32_t ack = atomic_load_explicit(&f->rewind_ack, memory_order_acquire);
    if (ack != req)
        return 0;
    if (*synced_gen != req) {
        atomic_store_explicit(&f->rd, atomic_load_explicit(&f->ack_pos, memory_order_relaxed),
                              memory_order_release);
        *synced_gen = req;
    }
    return 1;
}

void mg_fifo_set_status(mg_fifo *f, uint32_t status)
{
    atomic_store_explicit(&f->status, status, memory_order_release);
}

uint32_t mg_fifo_status(mg_fifo *f)
{
    return atomic_load_explicit(&f->status, memory_order_acquire);
}

void mg_fifo_set_length(mg_fifo *f, uint64_t frames)
{
    atomic_store_explicit(&f->length, frames, memory_order_relaxed);
}

uint64_t mg_fifo_length(mg_fifo *f)
{
    return atomic_load_explicit(&f->length, memory_order_relaxed);
}
