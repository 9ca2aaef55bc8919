// kernels/cpu/ops.h: the gpt-oss ops of the CPU backend as plain functions (fp32 arithmetic over
// bf16 and MXFP4 weights). They are a real backend (OpenMP over outputs/rows, AVX2/FMA) and the
// reference every GPU kernel is compared against; each GPU op has the same contract.
//
// Conventions for every op here:
//   - Shapes are row-major; `[rows, K]` means rows contiguous vectors of K floats.
//   - Weights keep their file dtype: bf16 (raw bits, gptoss::bf16_t) or MXFP4 blocks + E8M0 scales.
//   - Batch invariance: the value computed for one row never depends on how many other rows are in
//     the call or where they are. Every reduction has ONE fixed order per row (stated below), used
//     by all code paths (single row, tiled rows, remainders). The engine relies on this to give
//     bit-identical logits whatever the batch composition.
//   - Ops marked "parallel" open their own OpenMP region (call them from serial code); ops marked
//     "serial" are meant to be called from inside the caller's parallel loop.
//   - Preconditions are checked with GPTOSS_ASSERT (a bug, not a user error) only where cheap.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/bf16.h"

namespace gptoss::cpu {

// ---------------------------------------------------------------------------------------------
// Canonical dot product order (used by every matmul here, bf16 or MXFP4 weights, and by the
// attention scores when head_dim % 8 == 0):
//   K must be a multiple of 8 (32 for MXFP4). One 8-lane fp32 accumulator a; chunk c = elements
//   [8c, 8c+8) is added with fused multiply-add a = fma(x_c, w_c, a), chunks in increasing c.
//   Then the 8 lanes are summed as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). Bias (if
//   any) is added last. Any register tiling of rows x outputs keeps this per-dot order, so a row's
//   result never depends on the other rows of the call.
// A GPU twin is not expected to reproduce these bits; it is compared with a tolerance.
// ---------------------------------------------------------------------------------------------

// Scalar dot in the canonical order (K % 8 == 0). serial.
float f32_dot_canonical(const float* x, const float* w, int K);

// y[n, m] = sum_k x[n, k] * W[m, k] + b[m] for n < rows, m < M.
//   x: [rows, K] fp32, w: [M, K] bf16, bias: [M] bf16 or nullptr, y: [rows, M] fp32 (not aliasing x).
//   K % 8 == 0. parallel (OpenMP over blocks of outputs, and over rows when outputs are few; each
//   weight row is read once per call and reused for all rows through 4-row x 3-output tiles).
void f32_bf16w_matmul(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                      int K, int M);

// Same, over outputs [m0, m1) only; y still has row stride M. serial.
void f32_bf16w_matmul_range(const float* x, const bf16_t* w, const bf16_t* bias, float* y,
                            int rows, int K, int M, int m0, int m1);

// y[n, :] = x[n, :] * rsqrt(mean(x[n, :]^2) + eps) * scale, the mean of squares accumulated in
// double in index order, the rest fp32. x: [rows, dim], scale: [dim] bf16, y may alias x. parallel.
void f32_bf16w_rmsnorm(const float* x, const bf16_t* scale, float* y, int rows, int dim,
                       float eps);

// x[n, :] = embedding[tokens[n], :] (bf16 -> fp32, exact). table: [V, H], x: [rows, H]. serial.
void bf16_embed(const bf16_t* table, const int32_t* tokens, int rows, int H, float* x);

// ---------------------------------------------------------------------------------------------
// RoPE, YaRN variant (gpt-oss-spec.md "RoPE"), no truncation of the correction range.
//   freq_i = theta^(2i/d), i in [0, d/2)
//   low  = d/2 * ln(initial_context / (beta_fast * 2 pi)) / ln(theta)
//   high = d/2 * ln(initial_context / (beta_slow * 2 pi)) / ln(theta)
//   ramp_i = clamp((i - low) / (high - low), 0, 1)
//   inv_freq_i = (1 / (factor freq_i)) * ramp_i + (1 / freq_i) * (1 - ramp_i)
//   concentration = 0.1 * ln(factor) + 1            (1 if factor <= 1)
// The table is computed in double and stored as fp32.
// ---------------------------------------------------------------------------------------------
struct RopeTable {
  int head_dim = 0;
  std::vector<float> inv_freq;  // [head_dim / 2]
  float concentration = 1.0f;
};
RopeTable rope_yarn_table(int head_dim, double theta, double factor, double initial_context,
                          double beta_fast, double beta_slow);

// cos/sin of position pos: angle_i = float(pos) * inv_freq_i (fp32 product, as the reference
// implementation), c_i = float(cos(angle_i)) * concentration, s_i likewise (cos/sin in double of
// the fp32 angle, rounded to fp32). cs: [head_dim] = [c_0..c_{d/2-1} | s_0..s_{d/2-1}]. serial.
void rope_cos_sin(const RopeTable& t, int pos, float* cs);

// Half-split rotation of n_heads vectors of head_dim, in place, all at one position:
// x = [x1 | x2] -> [x1 c - x2 s | x2 c + x1 s] (fp32, computed as written, no FMA). serial.
void f32_rope_apply(const RopeTable& t, const float* cs, float* x, int n_heads);

// ---------------------------------------------------------------------------------------------
// Attention with sinks over a KV cache (one query row, one head). serial.
// KV cache of one slot and layer: k, v: [cap, n_kv_heads, head_dim] fp32, position j stored at
// ring index j % cap (cap = window on sliding layers, = ctx on full layers).
// The query at position pos sees keys j with max(0, pos - window + 1) <= j <= pos (window 0 = full
// causal). Precondition: every visible j is still in the ring (pos - j < cap).
// Scores s_j = dot(q, k_j) * (1/sqrt(head_dim)) (canonical dot order if head_dim % 8 == 0, else
// a single scalar fma chain in index order),
// m = max(sink, max_j s_j), e_j = exp(s_j - m), den = exp(sink - m) + e_j0 + e_j0+1 + ... (fp32,
// increasing j), p_j = e_j / den, out_d = fma(p_j, v_jd, out_d) over increasing j from 0.
// The sink takes probability mass and adds no value.
// GQA: query head h reads kv head gqa_kv_head(h, n_heads, n_kv_heads) = h / (n_heads / n_kv).
// scratch: [window > 0 ? min(window, pos + 1) : pos + 1] floats (pos + 1 is always enough).
// Where position j is in the caches: row j % cap (a ring of cap rows, or cap >= pos + 1), or,
// paged (blocks != nullptr), row blocks[j / block_tokens] * block_tokens + j % block_tokens of a
// pool (the sequence's block table). The arithmetic does not depend on where the rows are.
// ---------------------------------------------------------------------------------------------
inline int gqa_kv_head(int h, int n_heads, int n_kv_heads) { return h / (n_heads / n_kv_heads); }

void f32_attention_sinks_head(const float* q, const float* k_cache, const float* v_cache, int cap,
                              int n_kv_heads, int head_dim, int kv_head, int pos, int window,
                              float sink, float* out, float* scratch,
                              const int32_t* blocks = nullptr, int block_tokens = 0);

// ---------------------------------------------------------------------------------------------
// MoE router: given router logits [E] of one row, pick the k largest (ties: the lower expert index
// wins, i.e. ranks first), output them in rank order (largest first) with softmax over those k:
// w_r = exp(l_r - l_0) / sum_{r'<k} exp(l_r' - l_0) (sum in rank order). serial.
// ---------------------------------------------------------------------------------------------
void f32_router_topk_softmax(const float* logits, int E, int k, int32_t* experts, float* weights);

// ---------------------------------------------------------------------------------------------
// MXFP4 (gpt-oss-spec.md "MXFP4 expert weights"): 32-element blocks along the input dimension,
// 16 bytes of 4-bit codes + one E8M0 scale byte. Byte b holds element 2b in its low nibble and
// element 2b+1 in its high nibble. value = LUT[code] * 2^(scale - 127),
// LUT = [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1, -1.5, -2, -3, -4, -6]. The product is exact in fp32
// (scale 0 gives subnormals, exact; scale 255 gives 2^128 = +inf, as ldexp does; exporters never
// write 255).
// ---------------------------------------------------------------------------------------------
float mxfp4_lut(uint8_t code);    // code in [0, 16)
float e8m0_to_f32(uint8_t scale);  // 2^(scale - 127)

// Decodes one weight row of K values (K % 32 == 0): blocks [K/32, 16] bytes, scales [K/32].
// Exact. serial.
void mxfp4_decode_row(const uint8_t* blocks, const uint8_t* scales, int K, float* out);
// The MXFP4 kernels use AVX-512VL where the CPU has it (same results as the AVX2 path, faster);
// set_avx512(false) forces the AVX2 path for the whole process (tests compare the two). Returns
// whether AVX-512 is in use. Not thread-safe: call before running kernels.
bool set_avx512(bool allow);

// y[n, m] = sum_k x[n, k] * decode(W)[m, k] + b[m], outputs [m0, m1), canonical dot order.
//   x: [rows, K], blocks: [M, K/32, 16], scales: [M, K/32], bias [M] bf16 or nullptr,
//   y: [rows, M] (row stride M). rows == 1: decoded on the fly, no copy. rows > 1: each weight row
//   is decoded once (into wrow, scratch of 4 * K floats) and reused for all rows. serial.
void f32_mf4w_matmul_range(const float* x, const uint8_t* blocks, const uint8_t* scales,
                           const bf16_t* bias, float* y, int rows, int K, int M, int m0, int m1,
                           float* wrow);

// Clamped SwiGLU on interleaved gate/up (even = gate, odd = up), fp32:
//   gate = min(gate, limit); up = clamp(up, -limit, limit);
//   a = gate * sigmoid(alpha * gate) * (up + 1),  alpha = 1.702, sigmoid(z) = 1 / (1 + exp(-z)).
// h: [rows, 2I], a: [rows, I]. serial.
inline constexpr float kSwigluAlpha = 1.702f;
float swiglu_clamped(float gate, float up, float limit);
void f32_swiglu_clamped(const float* h, float* a, int rows, int I, float limit);

// ---------------------------------------------------------------------------------------------
// Whole MoE block for `rows` rows (input already RMS-normalized):
//   router logits = f32_bf16w_matmul(x, router_w, router_b); top-k + softmax (above);
//   for each (row, rank r): e = expert; h = mlp1_e(x) [2I]; a = swiglu(h) [I]; y_r = mlp2_e(a) [H];
//   residual[row] += ((w_0 y_0 + w_1 y_1) + w_2 y_2) + ...   (rank order, fp32; the sum is formed
//   first, then added to the residual).
// Rows are grouped by expert so each decoded weight row serves every row routed to that expert;
// the per-row arithmetic is the same as for a batch of one. parallel.
// ---------------------------------------------------------------------------------------------
struct MoeWeights {
  int n_experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  float swiglu_limit = 0;
  const bf16_t* router_w = nullptr;     // [E, H]
  const bf16_t* router_b = nullptr;     // [E]
  const uint8_t* mlp1_blocks = nullptr; // [E, 2I, H/32, 16]
  const uint8_t* mlp1_scales = nullptr; // [E, 2I, H/32]
  const bf16_t* mlp1_bias = nullptr;    // [E, 2I]
  const uint8_t* mlp2_blocks = nullptr; // [E, H, I/32, 16]
  const uint8_t* mlp2_scales = nullptr; // [E, H, I/32]
  const bf16_t* mlp2_bias = nullptr;    // [E, H]
};
// Scratch reused across calls (grown as needed; not thread-shared between concurrent calls).
struct MoeScratch {
  std::vector<float> logits, weights, xg, h, a, y, sum, wrow;
  std::vector<int32_t> experts, order, offsets;
  // Profiling: wall seconds accumulated over calls (router + grouping, mlp1, mlp2, whole call).
  double router_s = 0, mlp1_s = 0, mlp2_s = 0, total_s = 0;
  double t_mlp1_start = 0, t_mlp1_end = 0, t_mlp2_start = 0, t_mlp2_end = 0;  // internal
};
void f32_mf4w_moe(const MoeWeights& w, const float* x, int rows, float* residual, MoeScratch& s);

// y[i] += x[i]. parallel for large n.
void f32_add_inplace(float* y, const float* x, size_t n);

// Index of the largest value; ties: lowest index. NaN never wins. serial.
int32_t f32_argmax(const float* x, int n);

}  // namespace gptoss::cpu
