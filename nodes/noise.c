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

/* The eight lanes in one vector (one AVX-512 register, two AVX2 ones):
 * noise_next on each, the same operations (so the same samples), eight at a
 * time, into y[0..8) times g. Eight lanes, not four: the xorshift chain is
 * latency-bound, and one chain step now yields eight samples. (No function
 * here takes or returns a vector: the ABI of a 32-byte vector differs with
 * and without AVX.) */
typedef uint64_t noise_vu __attribute__((vector_size(8 * NOISE_LANES)));
typedef int32_t noise_vi __attribute__((vector_size(4 * NOISE_LANES)));
typedef float noise_vf __attribute__((vector_size(4 * NOISE_LANES)));

static inline __attribute__((always_inline)) void noise_nextv(noise_vu *r, float *y, float g)
{
    noise_vu x = *r;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *r = x;
    /* the top 32 bits of each product, as int32 (truncating the shifted
     * 64-bit value keeps exactly those bits) */
    const noise_vi h = __builtin_convertvector((x * 0x2545F4914F6CDD1DULL) >> 32, noise_vi);
    const noise_vf v = __builtin_convertvector(h, noise_vf) * (1.0f / 2147483648.0f) * g;
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
        noise_vu rv;
        memcpy(&rv, r, sizeof rv);
        for (; i + NOISE_LANES <= n; i += NOISE_LANES)
            noise_nextv(&rv, y + i, g);
        memcpy(r, &rv, sizeof rv);
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
 * steps it (noise_nextv: the same operations, so the same samples), their
 * latencies overlapping. Channels of nodes at lane 0 with a steady level and
 * a block a multiple of NOISE_LANES (every block of a 64-frame engine) go
 * through it; any other node runs process itself. */
#define NOISE_CHAINS 4

typedef struct {
    uint64_t *r; /* the channel's NOISE_LANES generators */
    float *y;
    float g;
} noise_chain;

MG_HOT static void run_chains(const noise_chain *ch, int k, int n)
{
    noise_vu rv[NOISE_CHAINS];
    for (int j = 0; j < k; j++)
        memcpy(&rv[j], ch[j].r, sizeof rv[j]);
    if (k == NOISE_CHAINS) {
        for (int i = 0; i < n; i += NOISE_LANES)
            for (int j = 0; j < NOISE_CHAINS; j++)
                noise_nextv(&rv[j], ch[j].y + i, ch[j].g);
    } else {
        for (int j = 0; j < k; j++)
            for (int i = 0; i < n; i += NOISE_LANES)
                noise_nextv(&rv[j], ch[j].y + i, ch[j].g);
    }
    for (int j = 0; j < k; j++)
        memcpy(ch[j].r, &rv[j], sizeof rv[j]);
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
