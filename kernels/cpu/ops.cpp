// kernels/cpu/ops.cpp: the CPU ops declared in ops.h (AVX2/FMA, OpenMP). Contracts live in ops.h.
#include "ops.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace gptoss::cpu {

// ============================================================================ canonical dot
namespace {

inline __m256 load_bf16x8(const bf16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
inline float hsum_canonical(__m256 s) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

// Weight loaders for a tile of C consecutive output rows: load(c, k) = W[m + c, k..k+8).
struct Bf16Rows {
  const bf16_t* w;  // row m
  size_t K;
  __m256 load(int c, int k) const { return load_bf16x8(w + c * K + k); }
};
struct F32Rows {
  const float* w;  // row m (decoded)
  size_t K;
  __m256 load(int c, int k) const { return _mm256_loadu_ps(w + c * K + k); }
};

// y[r * y_stride + c] = dot(x[r, :], W[c, :]) (+ bias[c]) for r < R, c < C: R x C register tile,
// one accumulator per (row, output), chunks of 8 in increasing k (the canonical order).
template <int R, int C, class W>
inline void tile(const float* x, size_t K, const W& w, const float* bias, float* y,
                 size_t y_stride) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (size_t k = 0; k < K; k += 8) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = w.load(c, static_cast<int>(k));
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * K + k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float v = hsum_canonical(acc[r][c]);
      if (bias) v = v + bias[c];
      y[r * y_stride + c] = v;
    }
}

constexpr int kTileR = 4, kTileC = 3;

template <int C, class W>
inline void tile_rows(const float* x, int rows, size_t K, const W& w, const float* bias, float* y,
                      size_t y_stride) {
  int n = 0;
  for (; n + kTileR <= rows; n += kTileR)
    tile<kTileR, C>(x + n * K, K, w, bias, y + n * y_stride, y_stride);
  switch (rows - n) {
    case 1: tile<1, C>(x + n * K, K, w, bias, y + n * y_stride, y_stride); break;
    case 2: tile<2, C>(x + n * K, K, w, bias, y + n * y_stride, y_stride); break;
    case 3: tile<3, C>(x + n * K, K, w, bias, y + n * y_stride, y_stride); break;
    default: break;
  }
}

// Outputs [m0, m1) of y[rows, M] for weights given by make(m) -> loader of rows m.. (C of them).
template <class Make>
inline void gemm_range(const float* x, int rows, int K, const bf16_t* bias, float* y, int M,
                       int m0, int m1, Make make) {
  for (int m = m0; m < m1; m += kTileC) {
    const int c = std::min(kTileC, m1 - m);
    float b[kTileC] = {};
    if (bias)
      for (int i = 0; i < c; ++i) b[i] = bf16_to_f32(bias[m + i]);
    const float* bp = bias ? b : nullptr;
    auto w = make(m, c);
    if (c == 3) tile_rows<3>(x, rows, K, w, bp, y + m, M);
    else if (c == 2) tile_rows<2>(x, rows, K, w, bp, y + m, M);
    else tile_rows<1>(x, rows, K, w, bp, y + m, M);
  }
}

}  // namespace

float f32_dot_canonical(const float* x, const float* w, int K) {
  GPTOSS_ASSERT(K % 8 == 0);
  float a[8] = {};
  for (int c = 0; c < K / 8; ++c)
    for (int l = 0; l < 8; ++l) a[l] = std::fma(x[8 * c + l], w[8 * c + l], a[l]);
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// ============================================================================ bf16 matmul
void f32_bf16w_matmul_range(const float* x, const bf16_t* w, const bf16_t* bias, float* y,
                            int rows, int K, int M, int m0, int m1) {
  gemm_range(x, rows, K, bias, y, M, m0, m1, [&](int m, int) {
    return Bf16Rows{w + static_cast<size_t>(m) * K, static_cast<size_t>(K)};
  });
}

void f32_bf16w_matmul(const float* x, const bf16_t* w, const bf16_t* bias, float* y, int rows,
                      int K, int M) {
  GPTOSS_ASSERT(K % 8 == 0 && rows >= 0 && M >= 0);
  if (rows == 0 || M == 0) return;
  constexpr int kBlockM = 24;  // a multiple of the tile width
  const int n_mb = (M + kBlockM - 1) / kBlockM;
  const int threads = omp_get_max_threads();
  // Few output blocks (router, small M): also split rows so every thread has work. Splitting rows
  // never changes a row's arithmetic.
  int row_chunk = rows;
  if (n_mb < 4 * threads && rows > 1) {
    int want_rb = std::min(rows, (4 * threads + n_mb - 1) / n_mb);
    row_chunk = (rows + want_rb - 1) / want_rb;
    row_chunk = (row_chunk + kTileR - 1) / kTileR * kTileR;
  }
  const int n_rb = (rows + row_chunk - 1) / row_chunk;
  const long tasks = static_cast<long>(n_mb) * n_rb;
#pragma omp parallel for schedule(static)
  for (long t = 0; t < tasks; ++t) {
    int rb = static_cast<int>(t % n_rb), mb = static_cast<int>(t / n_rb);
    int r0 = rb * row_chunk, r1 = std::min(rows, r0 + row_chunk);
    int mm0 = mb * kBlockM, mm1 = std::min(M, mm0 + kBlockM);
    f32_bf16w_matmul_range(x + static_cast<size_t>(r0) * K, w, bias,
                           y + static_cast<size_t>(r0) * M, r1 - r0, K, M, mm0, mm1);
  }
}

// ============================================================================ norms, embedding
void f32_bf16w_rmsnorm(const float* x, const bf16_t* scale, float* y, int rows, int dim,
                       float eps) {
#pragma omp parallel for schedule(static) if (rows > 4)
  for (int n = 0; n < rows; ++n) {
    const float* xr = x + static_cast<size_t>(n) * dim;
    float* yr = y + static_cast<size_t>(n) * dim;
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    float mean = static_cast<float>(ss / dim);
    float r = 1.0f / std::sqrt(mean + eps);
    for (int i = 0; i < dim; ++i) yr[i] = (xr[i] * r) * bf16_to_f32(scale[i]);
  }
}

void bf16_embed(const bf16_t* table, const int32_t* tokens, int rows, int H, float* x) {
  for (int n = 0; n < rows; ++n) {
    const bf16_t* src = table + static_cast<size_t>(tokens[n]) * H;
    for (int i = 0; i < H; ++i) x[static_cast<size_t>(n) * H + i] = bf16_to_f32(src[i]);
  }
}

// ============================================================================ RoPE
RopeTable rope_yarn_table(int head_dim, double theta, double factor, double initial_context,
                          double beta_fast, double beta_slow) {
  GPTOSS_ASSERT(head_dim > 0 && head_dim % 2 == 0 && theta > 1);
  RopeTable t;
  t.head_dim = head_dim;
  const int half = head_dim / 2;
  const double two_pi = 2.0 * M_PI;
  double low = half * std::log(initial_context / (beta_fast * two_pi)) / std::log(theta);
  double high = half * std::log(initial_context / (beta_slow * two_pi)) / std::log(theta);
  if (high == low) high = low + 0.001;  // degenerate range: a step (never for real configs)
  t.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    double freq = std::pow(theta, 2.0 * i / head_dim);
    double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    double f = factor > 0 ? factor : 1.0;
    t.inv_freq[i] = static_cast<float>((1.0 / (f * freq)) * ramp + (1.0 / freq) * (1.0 - ramp));
  }
  t.concentration = factor > 1 ? static_cast<float>(0.1 * std::log(factor) + 1.0) : 1.0f;
  return t;
}

void rope_cos_sin(const RopeTable& t, int pos, float* cs) {
  const int half = t.head_dim / 2;
  for (int i = 0; i < half; ++i) {
    float angle = static_cast<float>(pos) * t.inv_freq[i];
    cs[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * t.concentration;
    cs[half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * t.concentration;
  }
}

void f32_rope_apply(const RopeTable& t, const float* cs, float* x, int n_heads) {
  const int d = t.head_dim, half = d / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * d;
    for (int i = 0; i < half; ++i) {
      float x1 = v[i], x2 = v[half + i], c = cs[i], s = cs[half + i];
      float a = x1 * c, b = x2 * s, e = x2 * c, f = x1 * s;
      v[i] = a - b;
      v[half + i] = e + f;
    }
  }
}

// ============================================================================ attention
void f32_attention_sinks_head(const float* q, const float* k_cache, const float* v_cache, int cap,
                              int n_kv_heads, int head_dim, int kv_head, int pos, int window,
                              float sink, float* out, float* scratch, const int32_t* blocks,
                              int block_tokens) {
  const bool simd = head_dim % 8 == 0;
  const int j0 = window > 0 ? std::max(0, pos - window + 1) : 0;
  GPTOSS_ASSERT(blocks ? block_tokens > 0 : pos - j0 < cap);
  auto row = [&](int j) -> size_t {
    if (!blocks) return static_cast<size_t>(j % cap);
    return static_cast<size_t>(blocks[j / block_tokens]) * block_tokens + j % block_tokens;
  };
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const size_t row_stride = static_cast<size_t>(n_kv_heads) * head_dim;
  const size_t head_off = static_cast<size_t>(kv_head) * head_dim;
  float m = sink;
  for (int j = j0; j <= pos; ++j) {
    const float* kj = k_cache + row(j) * row_stride + head_off;
    if (!simd) {
      float dot = 0.0f;
      for (int k = 0; k < head_dim; ++k) dot = std::fma(q[k], kj[k], dot);
      scratch[j - j0] = dot * scale;
      m = std::max(m, scratch[j - j0]);
      continue;
    }
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < head_dim; k += 8)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + k), _mm256_loadu_ps(kj + k), acc);
    float s = hsum_canonical(acc) * scale;
    scratch[j - j0] = s;
    m = std::max(m, s);
  }
  float den = std::exp(sink - m);
  for (int j = j0; j <= pos; ++j) {
    float e = std::exp(scratch[j - j0] - m);
    scratch[j - j0] = e;
    den = den + e;
  }
  for (int d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int j = j0; j <= pos; ++j) {
    const float p = scratch[j - j0] / den;
    const float* vj = v_cache + row(j) * row_stride + head_off;
    if (!simd) {
      for (int d = 0; d < head_dim; ++d) out[d] = std::fma(p, vj[d], out[d]);
      continue;
    }
    const __m256 pv = _mm256_set1_ps(p);
    for (int d = 0; d < head_dim; d += 8)
      _mm256_storeu_ps(out + d, _mm256_fmadd_ps(pv, _mm256_loadu_ps(vj + d),
                                                _mm256_loadu_ps(out + d)));
  }
}

// ============================================================================ router
void f32_router_topk_softmax(const float* logits, int E, int k, int32_t* experts, float* weights) {
  GPTOSS_ASSERT(k >= 1 && k <= E && E <= 1024);
  bool taken[1024] = {};
  for (int r = 0; r < k; ++r) {
    int best = -1;
    for (int e = 0; e < E; ++e) {
      if (taken[e]) continue;
      if (best < 0 || logits[e] > logits[best]) best = e;  // strict: lower index wins ties
    }
    taken[best] = true;
    experts[r] = best;
  }
  const float mx = logits[experts[0]];
  float sum = 0.0f;
  for (int r = 0; r < k; ++r) {
    weights[r] = std::exp(logits[experts[r]] - mx);
    sum = sum + weights[r];
  }
  for (int r = 0; r < k; ++r) weights[r] = weights[r] / sum;
}

// ============================================================================ MXFP4
namespace {
constexpr float kMxfp4Lut[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
struct E8m0Table {
  float v[256];
  E8m0Table() {
    for (int s = 0; s < 256; ++s) v[s] = std::ldexp(1.0f, s - 127);
  }
};
const E8m0Table kE8m0;
}  // namespace

float mxfp4_lut(uint8_t code) { return kMxfp4Lut[code & 15]; }
float e8m0_to_f32(uint8_t scale) { return kE8m0.v[scale]; }

namespace {
// Decodes one block (32 values) into 4 vectors of 8, exactly. Vector g holds elements 8g..8g+7,
// the 8 nibbles of little-endian dword g (nibble j = element 8g + j: low nibble of a byte first).
// The dword is broadcast to all lanes and shifted so that lane j's nibble sits in bits 28..31:
// bits 28..30 index the magnitude table, bit 31 is the sign. One shuffle per 8 values.
struct Mxfp4Decoder {
  const __m256 lut = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256i shifts = _mm256_setr_epi32(28, 24, 20, 16, 12, 8, 4, 0);
  const __m256i sign_mask = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  inline void block(const uint8_t* blk16, uint8_t scale, __m256 v[4]) const {
    // The table is scaled once per block (LUT * 2^(s-127) is exact, see ops.h), then each lane
    // picks its magnitude and gets its sign.
    const __m256 lut_s = _mm256_mul_ps(lut, _mm256_set1_ps(kE8m0.v[scale]));
    for (int g = 0; g < 4; ++g) {
      int32_t d;
      std::memcpy(&d, blk16 + 4 * g, 4);
      const __m256i t = _mm256_sllv_epi32(_mm256_set1_epi32(d), shifts);
      const __m256 mag = _mm256_permutevar8x32_ps(lut_s, _mm256_srli_epi32(t, 28));
      v[g] = _mm256_xor_ps(mag, _mm256_castsi256_ps(_mm256_and_si256(t, sign_mask)));
    }
  }
};
}  // namespace

namespace {
// Same values with AVX-512VL on 256-bit registers (used when the CPU has it; results are
// bit-identical to the AVX2 path: same exact decoded values, same canonical order). vpermt2ps
// looks the whole nibble up in a 16-entry table [LUT * S | -LUT * S], so a lane needs one shift
// and one permute.
#define GPTOSS_AVX512VL __attribute__((target("avx2,fma,avx512f,avx512vl")))

struct Mxfp4Avx512Tables {
  __m256 lo, hi;
};
GPTOSS_AVX512VL inline Mxfp4Avx512Tables mxfp4_tables(uint8_t scale) {
  const __m256 lut = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256 lo = _mm256_mul_ps(lut, _mm256_set1_ps(kE8m0.v[scale]));
  const __m256 hi = _mm256_xor_ps(lo, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))));
  return {lo, hi};
}
GPTOSS_AVX512VL inline __m256 mxfp4_chunk(const uint8_t* dword, const Mxfp4Avx512Tables& t,
                                          __m256i shifts) {
  int32_t d;
  std::memcpy(&d, dword, 4);
  const __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32(d), shifts);
  return _mm256_permutex2var_ps(t.lo, idx, t.hi);
}

GPTOSS_AVX512VL void mxfp4_decode_row_avx512(const uint8_t* blocks, const uint8_t* scales, int K,
                                              float* out) {
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  for (int b = 0; b < K / 32; ++b) {
    const Mxfp4Avx512Tables t = mxfp4_tables(scales[b]);
    for (int g = 0; g < 4; ++g)
      _mm256_storeu_ps(out + 32 * b + 8 * g, mxfp4_chunk(blocks + 16 * b + 4 * g, t, shifts));
  }
}

// rows == 1 fused decode + dot over outputs [m0, m1) (see f32_mf4w_matmul_range).
GPTOSS_AVX512VL void mf4_gemv_avx512(const float* x, const uint8_t* blocks, const uint8_t* scales,
                                     const bf16_t* bias, float* y, int K, int m0, int m1) {
  const size_t row_bytes = static_cast<size_t>(K) / 2, row_scales = static_cast<size_t>(K) / 32;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  int m = m0;
  for (; m + 4 <= m1; m += 4) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int b = 0; b < K / 32; ++b) {
      const __m256 x0 = _mm256_loadu_ps(x + 32 * b), x1 = _mm256_loadu_ps(x + 32 * b + 8);
      const __m256 x2 = _mm256_loadu_ps(x + 32 * b + 16), x3 = _mm256_loadu_ps(x + 32 * b + 24);
      for (int c = 0; c < 4; ++c) {
        const uint8_t* blk = blocks + (m + c) * row_bytes + 16 * b;
        const Mxfp4Avx512Tables t = mxfp4_tables(scales[(m + c) * row_scales + b]);
        acc[c] = _mm256_fmadd_ps(x0, mxfp4_chunk(blk, t, shifts), acc[c]);
        acc[c] = _mm256_fmadd_ps(x1, mxfp4_chunk(blk + 4, t, shifts), acc[c]);
        acc[c] = _mm256_fmadd_ps(x2, mxfp4_chunk(blk + 8, t, shifts), acc[c]);
        acc[c] = _mm256_fmadd_ps(x3, mxfp4_chunk(blk + 12, t, shifts), acc[c]);
      }
    }
    for (int c = 0; c < 4; ++c) {
      float r = hsum_canonical(acc[c]);
      if (bias) r = r + bf16_to_f32(bias[m + c]);
      y[m + c] = r;
    }
  }
  for (; m < m1; ++m) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < K / 32; ++b) {
      const Mxfp4Avx512Tables t = mxfp4_tables(scales[m * row_scales + b]);
      for (int g = 0; g < 4; ++g)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + 32 * b + 8 * g),
                              mxfp4_chunk(blocks + m * row_bytes + 16 * b + 4 * g, t, shifts), acc);
    }
    float r = hsum_canonical(acc);
    if (bias) r = r + bf16_to_f32(bias[m]);
    y[m] = r;
  }
}

const bool kHaveAvx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
bool kUseAvx512 = kHaveAvx512;  // set_avx512(false) forces the AVX2 path
}  // namespace

bool set_avx512(bool allow) {
  kUseAvx512 = allow && kHaveAvx512;
  return kUseAvx512;
}

void mxfp4_decode_row(const uint8_t* blocks, const uint8_t* scales, int K, float* out) {
  if (kUseAvx512) return mxfp4_decode_row_avx512(blocks, scales, K, out);
  const Mxfp4Decoder dec;
  for (int b = 0; b < K / 32; ++b) {
    __m256 v[4];
    dec.block(blocks + 16 * b, scales[b], v);
    for (int g = 0; g < 4; ++g) _mm256_storeu_ps(out + 32 * b + 8 * g, v[g]);
  }
}

void f32_mf4w_matmul_range(const float* x, const uint8_t* blocks, const uint8_t* scales,
                           const bf16_t* bias, float* y, int rows, int K, int M, int m0, int m1,
                           float* wrow) {
  const size_t row_bytes = static_cast<size_t>(K) / 2, row_scales = static_cast<size_t>(K) / 32;
  if (rows == 1 && kUseAvx512) return mf4_gemv_avx512(x, blocks, scales, bias, y, K, m0, m1);
  if (rows == 1) {
    // Fused decode + dot (the batch-1 decode path), 4 output rows at a time for independent FMA
    // chains; each output's chunks still go into one accumulator in increasing k (canonical).
    const Mxfp4Decoder dec;
    int m = m0;
    for (; m + 4 <= m1; m += 4) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
      for (int b = 0; b < K / 32; ++b) {
        const __m256 x0 = _mm256_loadu_ps(x + 32 * b), x1 = _mm256_loadu_ps(x + 32 * b + 8);
        const __m256 x2 = _mm256_loadu_ps(x + 32 * b + 16), x3 = _mm256_loadu_ps(x + 32 * b + 24);
        for (int c = 0; c < 4; ++c) {
          __m256 v[4];
          dec.block(blocks + (m + c) * row_bytes + 16 * b, scales[(m + c) * row_scales + b], v);
          acc[c] = _mm256_fmadd_ps(x0, v[0], acc[c]);
          acc[c] = _mm256_fmadd_ps(x1, v[1], acc[c]);
          acc[c] = _mm256_fmadd_ps(x2, v[2], acc[c]);
          acc[c] = _mm256_fmadd_ps(x3, v[3], acc[c]);
        }
      }
      for (int c = 0; c < 4; ++c) {
        float r = hsum_canonical(acc[c]);
        if (bias) r = r + bf16_to_f32(bias[m + c]);
        y[m + c] = r;
      }
    }
    for (; m < m1; ++m) {
      __m256 acc = _mm256_setzero_ps();
      for (int b = 0; b < K / 32; ++b) {
        __m256 v[4];
        dec.block(blocks + m * row_bytes + 16 * b, scales[m * row_scales + b], v);
        for (int g = 0; g < 4; ++g)
          acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + 32 * b + 8 * g), v[g], acc);
      }
      float r = hsum_canonical(acc);
      if (bias) r = r + bf16_to_f32(bias[m]);
      y[m] = r;
    }
    return;
  }
  // Several rows: decode up to kTileC weight rows into wrow, then register tiles over the rows.
  gemm_range(x, rows, K, bias, y, M, m0, m1, [&](int m, int c) {
    for (int i = 0; i < c; ++i)
      mxfp4_decode_row(blocks + (m + i) * row_bytes, scales + (m + i) * row_scales, K,
                       wrow + static_cast<size_t>(i) * K);
    return F32Rows{wrow, static_cast<size_t>(K)};
  });
}

// ============================================================================ SwiGLU
float swiglu_clamped(float gate, float up, float limit) {
  gate = std::min(gate, limit);
  up = std::clamp(up, -limit, limit);
  float z = kSwigluAlpha * gate;
  float sig = 1.0f / (1.0f + std::exp(-z));
  return (gate * sig) * (up + 1.0f);
}

void f32_swiglu_clamped(const float* h, float* a, int rows, int I, float limit) {
  for (int n = 0; n < rows; ++n)
    for (int i = 0; i < I; ++i)
      a[static_cast<size_t>(n) * I + i] =
          swiglu_clamped(h[static_cast<size_t>(n) * 2 * I + 2 * i],
                         h[static_cast<size_t>(n) * 2 * I + 2 * i + 1], limit);
}

// ============================================================================ MoE
void f32_mf4w_moe(const MoeWeights& w, const float* x, int rows, float* residual, MoeScratch& s) {
  const int E = w.n_experts, k = w.top_k, H = w.hidden, I = w.intermediate;
  GPTOSS_ASSERT(H % 32 == 0 && I % 32 == 0 && k >= 1 && k <= E);
  if (rows == 0) return;
  const int pairs = rows * k;
  s.logits.resize(static_cast<size_t>(rows) * E);
  s.experts.resize(pairs);
  s.weights.resize(pairs);
  const double t_start = omp_get_wtime();
  f32_bf16w_matmul(x, w.router_w, w.router_b, s.logits.data(), rows, H, E);
  for (int n = 0; n < rows; ++n)
    f32_router_topk_softmax(s.logits.data() + static_cast<size_t>(n) * E, E, k,
                            s.experts.data() + n * k, s.weights.data() + n * k);

  // Group (row, rank) pairs by expert: order[g] = pair index, rows ascending within an expert.
  s.offsets.assign(E + 1, 0);
  for (int p = 0; p < pairs; ++p) s.offsets[s.experts[p] + 1]++;
  for (int e = 0; e < E; ++e) s.offsets[e + 1] += s.offsets[e];
  s.order.resize(pairs);
  std::vector<int32_t> fill(s.offsets.begin(), s.offsets.end() - 1);
  std::vector<int32_t> group_of(pairs);  // pair -> grouped index
  for (int p = 0; p < pairs; ++p) {
    int g = fill[s.experts[p]]++;
    s.order[g] = p;
    group_of[p] = g;
  }
  s.xg.resize(static_cast<size_t>(pairs) * H);
  s.h.resize(static_cast<size_t>(pairs) * 2 * I);
  s.a.resize(static_cast<size_t>(pairs) * I);
  s.y.resize(static_cast<size_t>(pairs) * H);
  const int threads = omp_get_max_threads();
  s.wrow.resize(static_cast<size_t>(threads) * 4 * std::max(H, I));

  // Tasks: (expert, block of outputs).
  constexpr int kBlock = 48;  // outputs per task: a multiple of the tile widths (3 and 4)
  std::vector<int32_t> active;
  for (int e = 0; e < E; ++e)
    if (s.offsets[e + 1] > s.offsets[e]) active.push_back(e);
  const int nb1 = (2 * I + kBlock - 1) / kBlock, nb2 = (H + kBlock - 1) / kBlock;
  const int n_active = static_cast<int>(active.size());
  const size_t mlp1_row_bytes = static_cast<size_t>(H) / 2, mlp1_row_scales = H / 32;
  const size_t mlp2_row_bytes = static_cast<size_t>(I) / 2, mlp2_row_scales = I / 32;

#pragma omp parallel
  {
    float* wrow = s.wrow.data() + static_cast<size_t>(omp_get_thread_num()) * 4 * std::max(H, I);
#pragma omp for schedule(static)
    for (int g = 0; g < pairs; ++g)
      std::memcpy(s.xg.data() + static_cast<size_t>(g) * H,
                  x + static_cast<size_t>(s.order[g] / k) * H, sizeof(float) * H);
#pragma omp master
    s.t_mlp1_start = omp_get_wtime();
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_active * nb1; ++t) {
      const int e = active[t / nb1], blk = t % nb1;
      const int g0 = s.offsets[e], cnt = s.offsets[e + 1] - g0;
      const size_t er = static_cast<size_t>(e) * 2 * I;
      f32_mf4w_matmul_range(s.xg.data() + static_cast<size_t>(g0) * H,
                            w.mlp1_blocks + er * mlp1_row_bytes, w.mlp1_scales + er * mlp1_row_scales,
                            w.mlp1_bias + er, s.h.data() + static_cast<size_t>(g0) * 2 * I, cnt, H,
                            2 * I, blk * kBlock, std::min(2 * I, (blk + 1) * kBlock), wrow);
    }
#pragma omp master
    s.t_mlp1_end = omp_get_wtime();
#pragma omp for schedule(static)
    for (int g = 0; g < pairs; ++g)
      f32_swiglu_clamped(s.h.data() + static_cast<size_t>(g) * 2 * I,
                         s.a.data() + static_cast<size_t>(g) * I, 1, I, w.swiglu_limit);
#pragma omp master
    s.t_mlp2_start = omp_get_wtime();
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < n_active * nb2; ++t) {
      const int e = active[t / nb2], blk = t % nb2;
      const int g0 = s.offsets[e], cnt = s.offsets[e + 1] - g0;
      const size_t er = static_cast<size_t>(e) * H;
      f32_mf4w_matmul_range(s.a.data() + static_cast<size_t>(g0) * I,
                            w.mlp2_blocks + er * mlp2_row_bytes, w.mlp2_scales + er * mlp2_row_scales,
                            w.mlp2_bias + er, s.y.data() + static_cast<size_t>(g0) * H, cnt, I, H,
                            blk * kBlock, std::min(H, (blk + 1) * kBlock), wrow);
    }
#pragma omp master
    s.t_mlp2_end = omp_get_wtime();
#pragma omp for schedule(static)
    for (int n = 0; n < rows; ++n) {
      float* res = residual + static_cast<size_t>(n) * H;
      const float* y0 = s.y.data() + static_cast<size_t>(group_of[n * k]) * H;
      const float w0 = s.weights[n * k];
      for (int i = 0; i < H; ++i) {
        float acc = w0 * y0[i];
        for (int r = 1; r < k; ++r) {
          float t = s.weights[n * k + r] * s.y[static_cast<size_t>(group_of[n * k + r]) * H + i];
          acc = acc + t;
        }
        res[i] = res[i] + acc;
      }
    }
  }
  const double t_end = omp_get_wtime();
  s.router_s += s.t_mlp1_start - t_start;
  s.mlp1_s += s.t_mlp1_end - s.t_mlp1_start;
  s.mlp2_s += s.t_mlp2_end - s.t_mlp2_start;
  s.total_s += t_end - t_start;
}

// ============================================================================ misc
void f32_add_inplace(float* y, const float* x, size_t n) {
#pragma omp parallel for schedule(static) if (n > (1u << 16))
  for (size_t i = 0; i < n; ++i) y[i] = y[i] + x[i];
}

int32_t f32_argmax(const float* x, int n) {
  int32_t best = -1;
  for (int i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    if (best < 0 || x[i] > x[best]) best = i;
  }
  return best < 0 ? 0 : best;
}

}  // namespace gptoss::cpu
