// kernels/gpu/head_slice.h: the vocab-parallel LM head's candidates on the device (the pipeline's
// head split; the rules and the host twin, head_row_merge, are in src/backend/head_split.h). A GPU
// rank computes the logits of its vocabulary slice for the split rows, then merges each row's best
// candidates into the HeadRow the payload carries, so only HeadRows travel, never logits.
//
// Algorithm (f32_head_rows_merge: one block of kHeadSliceThreads per row, static shared memory
// only, no scratch, no atomics outside the block):
//   k = 1 (greedy): one pass, the block's arg-max of the slice (each thread scans its strided ids,
//     then wave butterflies, then waves in order) under a total order, larger value first, ties
//     lower id, NaN never wins: the first id of the largest logit, as the host's serial scan; an
//     all-NaN slice gives its first id. Then the host's cross-slice rule, by one thread.
//   k >= 2: candidates are ordered by a 64-bit key (ordered logit bits with -0 read as +0, then
//     ~slice index: larger key = earlier candidate, unique per id). Pass 1 checks finiteness (a
//     NaN or an infinity sets kHeadRowNonFinite and leaves the candidates as they are, as the host
//     does) and takes each thread's largest key; the take-th largest of those 512 maxima
//     (take = min(k, width)) is a lower bound of the answer, since take distinct keys reach it.
//     Pass 2 gathers the keys at or above it into shared memory (for ordinary logits barely more
//     than take: ~70 of 100544 ids for take 64); only when more than kHeadSliceGather tie there
//     (rows of thousands of equal logits) an exact radix select over 8-bit digits (shared-memory
//     histograms, up to 8 more passes) narrows the boundary first. The gathered keys are
//     bitonic-sorted and one thread merges the first take with the row's candidates exactly as
//     the host does (its comparisons on the floats, values re-read from the slice so that a -0
//     stays -0). The result is the host's bit for bit: same candidates, order, count and flags.
// Cost: k = 1 reads the slice once, k >= 2 twice (plus the radix passes in the tie fallback);
// one block per row: a 100k-id slice at batch 1 leaves most of the GPU idle; at the batches the
// split is meant for (>= 2 rows per micro-batch, usually hundreds) every SM has rows.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/head_row.h"
#include "gpu/vendor.h"

namespace gptoss::gpu {

inline constexpr int kHeadSliceThreads = 512;    // per block (f32_head_rows_merge), a row each
inline constexpr int kHeadSliceGather = 1024;    // keys gathered for the final sort, at most
inline constexpr int kHeadInitThreads = 256;     // head_rows_init, a row each

// For i < n: rows[i] = head_row_init(k[i]) (every byte as the host's: zero but k) and
// xo[i, :] = x[x_rows[i], :]. x [*, H] fp32, x_rows [n] int32, k [n] int32 (1..kHeadSplitMaxK),
// rows [n] HeadRow, xo [n, H] fp32: device pointers; xo must not overlap x.
void head_rows_init(const float* x, const int32_t* x_rows, const int32_t* k, int n, int H,
                    HeadRow* rows, float* xo, gpuStream_t stream);

// For i < n: head_row_merge(rows[i], logits + i * width, v0, width) (src/backend/head_split.h),
// bit for bit. logits [n, width] fp32 (row stride width), rows [n] HeadRow (k in 1..kHeadSplitMaxK;
// a row with another k is left alone): device pointers. Slices must come in ascending id order,
// as on the host. Nothing happens for n <= 0 or width <= 0. Asynchronous, no allocation,
// graph-capturable.
void f32_head_rows_merge(const float* logits, int n, int width, int v0, HeadRow* rows,
                         gpuStream_t stream);

}  // namespace gptoss::gpu
