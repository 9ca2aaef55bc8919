// kernels/gpu/sample.h: token choice on the GPU (issue 5): for each row of logits, the token that
// Sampler::pick (src/backend/sampler.cpp) would choose with that row's TokenPick, so the engine
// copies back one int32 per row instead of [rows, vocab] fp32 logits.
//
// Algorithm (pick_tokens launches two kernels; a block whose row belongs to the other kernel
// returns at once):
//   greedy (temperature == 0 or top_k == 1), kPickGreedySplit blocks per row: arg-max, first id of
//     the largest logit, NaN never wins, all NaN -> 0; each block scans a piece, the last block of
//     the row merges the pieces (a total order, so the serial scan's answer). Exact.
//   sampling, one block per row:
//     with K = top_k if 0 < top_k < vocab else vocab ("candidates"):
//     (b) sorted candidates (top_k in (1, vocab) or top_p < 1), K <= kPickMaxTopK: the top K
//         (logit desc, ties lower id first) are found by an exact radix select over the 64-bit key
//         (ordered logit bits, ~id), gathered into shared memory and bitonic-sorted; p_j =
//         exp((l_j - l_max) / T) in double; the running sums, the total, top-p's prefix and the
//         draw are computed by one thread IN CANDIDATE ORDER, i.e. the very additions of the CPU.
//     (d) sorted candidates, K > kPickMaxTopK: the top kPickMaxTopK are sorted as in (b); the
//         total over all K candidates is a block sum (another order than the CPU's); the nucleus
//         (top_p < 1) or the draw (top_p == 1) must fall inside those kPickMaxTopK, else -1.
//     (c) id order (top_k off or >= vocab, top_p == 1): all ids in id order; sums per chunk of
//         8 * kWaveSize ids, the chunk holding u * total is rescanned element by element.
//   Every sampling decision is then verified against the worst-case rounding of both sides
//   (see "-1" below): a token != -1 is the CPU's token whenever the device's double exp and
//   glibc's both lie within 4 ulp of the true exp (CUDA documents 1 ulp, glibc < 1 ulp); the
//   exp arguments (double(l) - double(l_max)) / double(T) are computed with the same correctly
//   rounded operations on both sides. In (b) the sums are even bit-identical to the CPU's
//   whenever the two exps agree bit for bit.
//
// tokens[i] = -1 (the engine then copies row i's logits and calls Sampler::pick on the host)
// exactly when row i samples (temperature != 0 and top_k != 1) and one of:
//   1. temperature is not > 0 (negative or NaN), or any logit of the row is NaN or +-inf;
//   2. K > kPickMaxTopK and the answer lies beyond the kPickMaxTopK largest candidates:
//      top_p < 1: their running mass does not reach top_p * total (total over all K);
//      top_p == 1 (then top_k in (kPickMaxTopK, vocab)): u * total is not reached within them;
//   3. the decision is within rounding of a boundary: with eps = (2 K + 64) * 2^-53 (K = vocab
//      in (c)), lo(x) = x (1 - eps) - 2^-1000 and hi(x) = x (1 + eps) + 2^-1000, P(j) the device's
//      running mass up to and including candidate j (candidate order), t = u * mass, need =
//      top_p * total: the kept count is uncertain (P(keep) not clearly >= need, or P(keep - 1)
//      not clearly < need), or the pick j is uncertain: j > 0 and hi(P(j-1)) > lo(t), or j is not
//      the last kept candidate and lo(P(j)) <= hi(t). Relative width ~2.2e-13 for K = 1024,
//      ~4.5e-11 for K = 201088: a random draw lands there with probability ~1e-10 or less.
//      Exact ties between u * mass and a running sum (e.g. equal logits, u = 0.5) do give -1.
// Greedy rows never give -1.
//
// Cost: greedy reads the row once, spread over kPickGreedySplit blocks (a 201088-logit row took
// 47 us on one block on an H200). Sampling (one block of 512 threads per row): (c) reads it twice (max + finiteness, then exp sums) plus one chunk. (b)
// reads it 3-4 times for typical logits: 2-3 radix histogram passes (8-bit digits, shared-memory
// atomics; the first also checks finiteness; up to 8 passes when thousands of logits tie) and
// the gather; (d) adds the total (and, for top_k in (kPickMaxTopK, vocab), a second select).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/types.h"
#include "gpu/launch_shapes.h"
#include "gpu/vendor.h"

namespace gptoss::gpu {

// kPickMaxTopK (launch_shapes.h): the largest candidate set handled exactly on the device ((b));
// beyond it see (d).

struct PickScratch {
  // The shape the launches were set up for, the sampling kernel's dynamic shared memory, and the
  // greedy arg-max's per-piece candidates and per-row tickets (kPickGreedySplit pieces per row).
  int max_rows = 0, vocab = 0;
  size_t bytes = 0;      // device bytes allocated
  int smem_bytes = 0;    // dynamic shared memory of the sampling kernel
  float2* cand = nullptr;       // [max_rows, kPickGreedySplit] (value, index bits)
  uint32_t* tickets = nullptr;  // [max_rows], 0 between launches
};

// Sets up picking for up to max_rows rows of `vocab` logits (once; sets the kernel's shared
// memory attribute when needed). Throws Error for vocab < 1 or max_rows < 1.
PickScratch pick_scratch_create(int max_rows, int vocab);
void pick_scratch_destroy(PickScratch& s);

// tokens[i] = Sampler::pick(logits + i * vocab, vocab, picks[i]) for i < rows, or -1 as stated
// above. logits [rows, vocab] fp32, picks [rows] TokenPick, tokens [rows] int32: device pointers.
// Asynchronous on stream, no host synchronisation, no allocation, graph-capturable (two kernels,
// grid = rows each). rows <= s.max_rows, vocab == s.vocab (Error otherwise).
void pick_tokens(const float* logits, int rows, int vocab, const TokenPick* picks,
                 int32_t* tokens, PickScratch& s, gpuStream_t stream);

}  // namespace gptoss::gpu
