/* noise: white noise, independent per channel, deterministic per seed. */
#include "mg_node.h"

static const mg_param_spec params[] = {
    {"level", "dB", "RMS level (dBFS)", -120.0f, 0.0f, -20.0f, MG_MAP_DB, MG_TAPER_FADER, 20.0f},
};
static const mg_port_spec ports[] = {
    {"out", MG_PORT_OUT, 0},
};

#define MG_NOISE_MAX_CH 64

/* Each channel runs NOISE_LANES independent xorshift64* generators whose
 * outputs interleave (the n-th sample since reset comes from lane
 * n % NOISE_LANES, whatever the block sizes): the lanes' state updates do
 * not wait for each other, so they run side by side in vector registers
 * instead of one serial chain per channel. */
#define NOISE_LANES 8

typedef struct {
    int channels;
    uint64_t seed;
    int pos; /* lane of the next sample (every channel is at the same one) */
    uint64_t rng[MG_NOISE_MAX_CH][NOISE_LANES];
} noise_state;

/* splitmix64: well-spread, never-zero starting states from one seed */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 1;
}

static void reset(void *st)
{
    noise_state *s = st;
    s->pos = 0;
    for (int c = 0; c < s->channels; c++) {
        uint64_t x = s->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)(c + 1) * 0xBF58476D1CE4E5B9ULL;
        for (int l = 0; l < NOISE_LANES; l++)
            s->rng[c][l] = splitmix(&x);
    }
}

static int prepare(void *st, const mg_prepare_ctx *ctx)
{
    noise_state *s = st;
    s->channels = ctx->channels;
    s->seed = ctx->seed;
    reset(st);
    return 0;
}

/* Uniform noise in [-a, a] has RMS a/sqrt(3). */
#define MG_SQRT3 1.7320508075688772f

/* Uniform in [-1, 1) from the top 32 bits of a generator's output. */
static inline float noise_next(uint64_t *r)
{
    uint64_t x = *r;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *r = x;
    return (float)(int32_t)((x * 0x2545F4914F6CDD1DULL) >> 32) * (1.0f / 2147483648.0f);
}

/* The eight lanes as two vectors of four 64-bit generators, held permuted:
 * A = lanes {0, 1, 4, 5}, B = lanes {2, 3, 6, 7} (noise_load / noise_store
 * move them between that and rng[c][0..8) once a block). noise_step runs
 * noise_next on each lane, the same operations on the same bits, so the same
 * samples: the xorshift, the 64-bit product (of which only the top 32 bits
 * are used), then one shuffle that takes the top halves of A's and B's
 * products in lane order 0..7 (the permutation is what makes it one
 * in-lane shuffle, vshufps, instead of a pack and a cross-lane permute),
 * and one multiply: h * (2^-31 g) is h * 2^-31 * g rounded once either way
 * (scaling by a power of two is exact), so the same float. Eight lanes, not
 * four: the xorshift chain is latency-bound, and one chain step yields eight
 * samples. (No function here takes or returns a vector: the ABI of a
 * 32-byte vector differs with and without AVX.) */
typedef uint64_t noise_v4u __attribute__((vector_size(32)));
typedef int32_t noise_v8i __attribute__((vector_size(32)));
typedef float noise_v8f __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) void noise_load(const uint64_t *r, noise_v4u *a,
                                                             noise_v4u *b)
{
    noise_v4u lo, hi;
    memcpy(&lo, r, sizeof lo);
    memcpy(&hi, r + 4, sizeof hi);
    *a = __builtin_shuffle(lo, hi, (noise_v4u){0, 1, 4, 5});
    *b = __builtin_shuffle(lo, hi, (noise_v4u){2, 3, 6, 7});
}

static inline __attribute__((always_inline)) void noise_store(uint64_t *r, noise_v4u a,
                                                              noise_v4u b)
{
    const noise_v4u lo = __builtin_shuffle(a, b, (noise_v4u){0, 1, 4, 5});
    const noise_v4u hi = __builtin_shuffle(a, b, (noise_v4u){2, 3, 6, 7});
    memcpy(r, &lo, sizeof lo);
    memcpy(r + 4, &hi, sizeof hi);
}

/* y[0..8) = the next eight samples times g; s = 2^-31 g */
static inline __attribute__((always_inline)) void noise_step(noise_v4u *a, noise_v4u *b,
                                                             float *y, noise_v8f s)
{
    noise_v4u x = *a, z = *b;
    x ^= x >> 12, z ^= z >> 12;
    x ^= x << 25, z ^= z << 25;
    x ^= x >> 27, z ^= z >> 27;
    *a = x, *b = z;
    const noise_v4u px = x * 0x2545F4914F6CDD1DULL, pz = z * 0x2545F4914F6CDD1DULL;
    /* the top 32 bits of each product (odd int32 elements), lanes 0..7 */
    const noise_v8i h = __builtin_shuffle((noise_v8i)px, (noise_v8i)pz,
                                          (noise_v8i){1, 3, 9, 11, 5, 7, 13, 15});
    const noise_v8f v = __builtin_convertvector(h, noise_v8f) * s;
    memcpy(y, &v, sizeof v);
}

MG_HOT static void process(void *st, const mg_proc *p)
{
    noise_state *s = st;
    const mg_pv *lv = &p->pv[0];
    const int n = p->nframes;
    /* a steady level scales in the generating loop (the same product) */
    const float g = lv->ramp ? 1.0f : MG_SQRT3 * lv->value;
    int pos = s->pos;
    for (int c = 0; c < s->channels; c++) {
        float *restrict y = p->out[c];
        uint64_t *r = s->rng[c];
        int i = 0, l = s->pos;
        for (; i < n && l != 0; i++, l = (l + 1) % NOISE_LANES) /* up to lane 0 */
            y[i] = noise_next(&r[l]) * g;
        if (i + NOISE_LANES <= n) {
            const noise_v8f sv = (noise_v8f){0} + (1.0f / 2147483648.0f) * g;
            noise_v4u a, b;
            noise_load(r, &a, &b);
            for (; i + NOISE_LANES <= n; i += NOISE_LANES)
                noise_step(&a, &b, y + i, sv);
            noise_store(r, a, b);
        }
        for (; i < n; i++, l = (l + 1) % NOISE_LANES)
            y[i] = noise_next(&r[l]) * g;
        pos = l;
        if (lv->ramp)
            for (int j = 0; j < n; j++)
                y[j] *= MG_SQRT3 * lv->ramp[j];
    }
    s->pos = pos;
}

/* Ganged (the sources of a desk's channel strips): each channel's eight-lane
 * chain is latency-bound (three dependent shift-xors a step) and a node's
 * block is eight steps, so running alone a node mostly waits on its chain.
 * Here NOISE_CHAINS channels' chains step together, each exactly as process
 * steps it (noise_step: the same operations, so the same samples), their
 * latencies overlapping. Channels of nodes at lane 0 with a steady level and
 * a block a multiple of NOISE_LANES (every block of a 64-frame engine) go
 * through it; any other node runs process itself. */
#define NOISE_CHAINS 2

typedef struct {
    uint64_t *r; /* the channel's NOISE_LANES generators */
    float *y;
    float g;
} noise_chain;

MG_HOT static void run_chains(const noise_chain *ch, int k, int n)
{
    noise_v4u a[NOISE_CHAINS], b[NOISE_CHAINS];
    noise_v8f sv[NOISE_CHAINS];
    for (int j = 0; j < k; j++) {
        noise_load(ch[j].r, &a[j], &b[j]);
        sv[j] = (noise_v8f){0} + (1.0f / 2147483648.0f) * ch[j].g;
    }
    if (k == NOISE_CHAINS) {
        for (int i = 0; i < n; i += NOISE_LANES)
            for (int j = 0; j < NOISE_CHAINS; j++)
                noise_step(&a[j], &b[j], ch[j].y + i, sv[j]);
    } else {
        for (int j = 0; j < k; j++)
            for (int i = 0; i < n; i += NOISE_LANES)
                noise_step(&a[j], &b[j], ch[j].y + i, sv[j]);
    }
    for (int j = 0; j < k; j++)
        noise_store(ch[j].r, a[j], b[j]);
}

static void process_many(void *const *states, const mg_proc *procs, int k)
{
    noise_chain ch[NOISE_CHAINS];
    int nch = 0;
    const int n = procs[0].nframes;
    for (int j = 0; j < k; j++) {
        noise_state *s = states[j];
        const mg_proc *p = &procs[j];
        if (s->pos != 0 || n % NOISE_LANES != 0 || p->pv[0].ramp) {
            process(s, p);
            continue;
        }
        const float g = MG_SQRT3 * p->pv[0].value; /* as process's steady level */
        for (int c = 0; c < s->channels; c++) {
            ch[nch].r = s->rng[c], ch[nch].y = p->out[c], ch[nch].g = g;
            if (++nch == NOISE_CHAINS) {
                run_chains(ch, nch, n);
                nch = 0;
            }
        }
        /* s->pos stays 0: n is a multiple of NOISE_LANES */
    }
    if (nch)
        run_chains(ch, nch, n);
}

const mg_node_type mg_type_noise = {
    .name = "noise",
    .doc = "White noise (uniform), independent per channel; `level` is the RMS level in dBFS.",
    .default_channels = 1, .min_channels = 1, .max_channels = MG_NOISE_MAX_CH,
    MG_PARAMS(params),
    MG_PORTS(ports),
    .state_size = sizeof(noise_state),
    .prepare = prepare,
    .process = process,
    .process_many = process_many,
    .reset = reset,
};
