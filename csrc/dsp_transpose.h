/* An 8x8 float transpose in registers (eight-float vectors: one AVX register
 * in the x86-64-v3 and v4 clones, two SSE ones in the baseline): pure data
 * movement, for loops that turn channel-major blocks into the time-major
 * vectors a SIMD-across-channels recursion runs on, and back.
 *
 * out[j][i] = in[i][j] for i, j < 8, through pointers (rows need not be
 * aligned, and may be rows of a larger matrix); always inlined, so that no
 * 32-byte vector crosses a function boundary (its ABI differs with and
 * without AVX). */
#ifndef MG_DSP_TRANSPOSE_H
#define MG_DSP_TRANSPOSE_H

#include <stdint.h>
#include <string.h>

typedef float mg_t8f __attribute__((vector_size(32)));
typedef int32_t mg_t8i __attribute__((vector_size(32)));

/* An 8x8 transpose of vectors held in registers: r[j] becomes the vector of
 * element j of every r[i] (three stages of shuffles). */
static inline __attribute__((always_inline)) void mg_tr8x8_regs(mg_t8f r[8])
{
    const mg_t8i lo = {0, 8, 2, 10, 4, 12, 6, 14}, hi = {1, 9, 3, 11, 5, 13, 7, 15};
    const mg_t8f t0 = __builtin_shuffle(r[0], r[1], lo), t1 = __builtin_shuffle(r[0], r[1], hi);
    const mg_t8f t2 = __builtin_shuffle(r[2], r[3], lo), t3 = __builtin_shuffle(r[2], r[3], hi);
    const mg_t8f t4 = __builtin_shuffle(r[4], r[5], lo), t5 = __builtin_shuffle(r[4], r[5], hi);
    const mg_t8f t6 = __builtin_shuffle(r[6], r[7], lo), t7 = __builtin_shuffle(r[6], r[7], hi);
    const mg_t8i lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const mg_t8f u0 = __builtin_shuffle(t0, t2, lo2), u2 = __builtin_shuffle(t0, t2, hi2);
    const mg_t8f u1 = __builtin_shuffle(t1, t3, lo2), u3 = __builtin_shuffle(t1, t3, hi2);
    const mg_t8f u4 = __builtin_shuffle(t4, t6, lo2), u6 = __builtin_shuffle(t4, t6, hi2);
    const mg_t8f u5 = __builtin_shuffle(t5, t7, lo2), u7 = __builtin_shuffle(t5, t7, hi2);
    const mg_t8i lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    r[0] = __builtin_shuffle(u0, u4, lo4), r[4] = __builtin_shuffle(u0, u4, hi4);
    r[1] = __builtin_shuffle(u1, u5, lo4), r[5] = __builtin_shuffle(u1, u5, hi4);
    r[2] = __builtin_shuffle(u2, u6, lo4), r[6] = __builtin_shuffle(u2, u6, hi4);
    r[3] = __builtin_shuffle(u3, u7, lo4), r[7] = __builtin_shuffle(u3, u7, hi4);
}

static inline __attribute__((always_inline)) void mg_tr8x8(const float *const in[8],
                                                           float *const out[8])
{
    mg_t8f r[8];
    /* unrolled, so that each row is one 32-byte load into a register: as
     * plain loops GCC copied the rows through the stack in 16-byte halves,
     * and each 32-byte reload of a row stalled on its two stores (perf: ~5%
     * of mix64 in the eq's and the reverb's transposes) */
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        memcpy(&r[i], in[i], sizeof r[i]);
    mg_tr8x8_regs(r);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        memcpy(out[j], &r[j], sizeof r[j]);
}

/* Eight floats from each of rows[0..8) at frame f, transposed: r[j] holds
 * frame f + j of every row (a row a lane). */
static inline __attribute__((always_inline)) void mg_tr8x8_load(const float *const rows[8], int f,
                                                                mg_t8f r[8])
{
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        memcpy(&r[i], rows[i] + f, sizeof r[i]);
    mg_tr8x8_regs(r);
}

/* The way back: frame f + j of row i is r[j][i] (r is clobbered). */
static inline __attribute__((always_inline)) void mg_tr8x8_store(mg_t8f r[8], float *const rows[8],
                                                                 int f)
{
    mg_tr8x8_regs(r);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        memcpy(rows[i] + f, &r[i], sizeof r[i]);
}

#endif
