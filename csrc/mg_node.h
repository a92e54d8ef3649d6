/* mixgraph node contract: what a node type's file, nodes/<type>.c, includes.
 *
 * A node type is one C file holding a state struct (audio thread only), a
 * const parameter table, a port table, prepare/process/reset, and one
 * `const mg_node_type mg_type_<name>` that the build registers. */
#ifndef MG_NODE_H
#define MG_NODE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mg_api.h"

#define MG_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Table fields of an mg_node_type, with their counts: `MG_PARAMS(params),` */
#define MG_PARAMS(t) .params = (t), .n_params = MG_COUNT(t)
#define MG_PORTS(t) .ports = (t), .n_ports = MG_COUNT(t)
#define MG_READOUTS(t) .readouts = (t), .n_readouts = MG_COUNT(t)
#define MG_CHOICES(t) .choices = (t), .n_choices = MG_COUNT(t)

/* Hot loops get x86-64-v4 (AVX-512) and x86-64-v3 (AVX2 and FMA) clones,
 * one chosen at load time (GCC function multiversioning through an ifunc);
 * other x86-64 CPUs run the baseline SSE2 code. Both clones contract
 * a * b + c into fused multiply-adds (build_core.py), the same way, so they
 * agree bit for bit (wider vectors do not reorder a sum: nothing is
 * reassociated); the baseline differs from them in the last bits. A node
 * whose scalar and ganged paths must agree bit for bit keeps both in MG_HOT
 * functions with the same expressions, which GCC fuses the same way
 * (tests/test_gang.py). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define MG_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MG_HOT
#endif

/* [control] Zeroed memory for a node's state (prepare only; free() in release).
 * Every page is touched here, so the audio thread never takes the page faults
 * of lazily mapped zero pages (calloc of a large block maps them on first use). */
static inline void *mg_zalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* [audio] fn(arg, i) for every i in [0, n), in any order and possibly at
 * once on several audio threads: parts of one node's block that touch
 * disjoint state and memory (a limiter's per-channel detectors). Inside a
 * cycle of the plan's parallel form (csrc/workers.c) an audio thread with
 * nothing else to do while it spins takes parts; the caller takes the
 * rest and returns when every part is done. Elsewhere (one thread, no idle
 * thread) the parts run here in order. Each part must give the same
 * samples wherever it runs, so the output is the same as in order. */
void mg_par_for(void (*fn)(void *arg, int i), void *arg, int n);

/* The value of parameter pv at frame i of this sub-block (not for a moving
 * MG_PARAM_CONTROL parameter: that gives its value at the call's last frame;
 * use mg_pv_ctl_at). Kept as it was: every node inlines it in its hot loops,
 * and a branch more there changes how GCC fuses their arithmetic (the
 * reverb's output moved in its last bits). */
static inline float mg_pv_at(const mg_pv *pv, int i)
{
    return pv->ramp ? pv->ramp[i] : pv->value;
}

/* mg_pv_at for a parameter that may be MG_PARAM_CONTROL: a moving one is
 * evaluated from its ramp's formula at frame i, which may lie past the call. */
static inline float mg_pv_ctl_at(const mg_pv *pv, int i)
{
    return pv->ramp ? pv->ramp[i] : pv->ctl ? (float)mg_ctl_at(pv->ctl, i) : pv->value;
}

/* 1 while parameter pv moves in this call (a ramp or a smoothing). */
static inline int mg_pv_moving(const mg_pv *pv)
{
    return pv->ramp || pv->ctl;
}

static inline float mg_db_to_amp(float db)
{
    return db <= -120.0f ? 0.0f : powf(10.0f, db / 20.0f);
}

/* `for (int i = 0; i < n; i++) body` with a separate copy for n == 64 (a
 * 64-frame engine's every sub-block): with the trip count known, GCC
 * vectorises it without the prologue, remainder loops and trip-count
 * arithmetic that otherwise take most of a short loop's instructions. Each
 * element's operations are the same in both copies, so the same results. */
#define MG_LOOP_N(i, n, body)                                                                     \
    do {                                                                                          \
        if ((n) == 64) {                                                                          \
            for (int i = 0; i < 64; i++)                                                          \
                body;                                                                             \
        } else {                                                                                  \
            for (int i = 0; i < (n); i++)                                                         \
                body;                                                                             \
        }                                                                                         \
    } while (0)

/* out = in * g, with g either steady or a per-sample ramp. */
static inline void mg_scale(float *restrict out, const float *restrict in, const mg_pv *g, int n)
{
    if (g->ramp) {
        for (int i = 0; i < n; i++)
            out[i] = in[i] * g->ramp[i];
    } else {
        const float v = g->value;
        MG_LOOP_N(i, n, out[i] = in[i] * v);
    }
}

/* Small deterministic RNG (xorshift64*), for noise and dither. */
static inline uint64_t mg_rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [-1, 1). */
static inline float mg_rng_uniform(uint64_t *s)
{
    return (float)((double)(mg_rng_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

#endif
