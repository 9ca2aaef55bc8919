// kernels/gpu/attention_prefill.cu: flash attention with sinks and a sliding window for prompt
// tiles (kernels/gpu/ops.h: f32_bf16kv_attention_sinks_tiles / f32_f32kv_attention_sinks_tiles).
// Decode rows keep the split-K kernel of attention.cu; a prompt tile (up to kAttnTileRows
// consecutive positions of one sequence) is computed here so that every K/V tile is staged once
// for all of the tile's rows and the G query heads of a kv head.
//
// Block = (tile, kv head, chunk of kPfM query vectors). The tile's query vectors are numbered
// u = row_in_tile * G + head_in_group (consecutive rows, so a chunk covers few rows and its causal
// key range is short); a chunk has kPfM = kPfWaves x 32 of them, each wave owns 32 (one tile
// wave tile of rows). Per key tile of kPfKeys keys (keys j_lo .. j_hi of the chunk's rows):
//   1. stage K as [key][dim] and V transposed as [dim][key] in bf16 (fp32 cache: hi + lo halves);
//   2. S = Q K^T on tensor cores (tile::mma_k16), Q as bf16 hi + mid + lo (x3 MMAs; fp32 cache:
//      K as hi + mid + lo too, the 6 products of order <= 2^-16: x6), scaled by 1/8 and masked
//      (causal, window per row) into shared memory (fp32);
//   3. online softmax, one lane (NVIDIA) or two (AMD) per query vector: running max m and sum l
//      start at the sink (m = sink, l = exp(0) = 1), p = exp(s - m) written in place over the row
//      as bf16 hi + lo, alpha = exp(m_old - m_new) for the output rescale;
//   4. O = alpha O + P V on tensor cores (P hi + lo x V: x2; fp32 cache: x V hi + lo, x4).
// Finally out = O / l. Products are exact bf16 x bf16 in fp32. Why three parts for the scores and
// two for P V: a two-part split keeps x to 2^-16 relative, which on the scores is an absolute
// error ~2^-17 |q| |k| / 8 that grows with the logit scale, while on P it is a relative error of
// each weight that averages out. A CPU emulation of this kernel against an fp64 reference, on
// the test's cases (sharp rows: |q| x 3, logits up to ~10): rel L2 per row, worst
//   Q, P two parts (the first version):    bf16 cache 7.6e-6, fp32 cache 1.7e-5
//   this kernel (Q three parts; fp32 cache: K three parts, V two): bf16 cache 2.8e-6, fp32 4.0e-6
//   (Q and P both three parts would give 1.7e-6 at one more MMA per PV step: not worth it)
// so the scores' split was the error; the split-K path (all fp32) is at ~1e-6.
// Shared memory: NVIDIA (4 waves of 32, 64-key tiles) 108.5 KiB (bf16 cache: 2 blocks per H100
// SM) / 135.5 KiB (fp32: 1 block); AMD gfx90a (2 waves of 64, 32-key tiles, within the 64 KiB LDS)
// 46.75 / 60.75 KiB.
#include <type_traits>

#include "gpu/device_utils.h"
#include "gpu/ops.h"
#include "gpu/tile.h"

namespace gptoss::gpu {

namespace {
constexpr int kHD = kAttnHeadDim;  // 64
constexpr int kWT = tile::kWaveTileM;  // 32 query vectors per wave (rows of a wave tile)
static_assert(tile::kWaveTileN == kWT, "square wave tiles");
// Block shape and shared-memory layout per target: launch_shapes.h (AttnTilesDims / AttnTilesSmem),
// the same numbers the launch and the launch-limit test use.
using Dims = AttnTilesDims<kWaveSize>;
constexpr int kPfWaves = Dims::waves;  // waves per block
constexpr int kPfKeys = Dims::keys;    // keys per staged tile
constexpr int kPfM = Dims::m;          // query vectors per block
constexpr int kPfThreads = Dims::threads;
constexpr int kQLd = Dims::q_ld;       // bf16 per staged Q / K row ([vector or key][dim])
constexpr int kVtLd = Dims::vt_ld;     // bf16 per staged V^T row ([dim][key])
constexpr int kSLd = Dims::s_ld;       // floats per score row; as bf16: P hi [0, kPfKeys), lo after
constexpr int kPLd = 2 * kSLd;     // the same row in bf16 elements
constexpr int kLanesPerRow = kWaveSize / kWT;  // softmax lanes per query vector (1 or 2)
constexpr int kKeysPerLane = kPfKeys / kLanesPerRow;
static_assert(kPfM == kPfWaves * kWT && kPfThreads == kPfWaves * kWaveSize, "a wave tile per wave");
static_assert(kPfKeys % kWT == 0 && kPfKeys % 16 == 0 && kKeysPerLane % 4 == 0, "key tile");
static_assert(kLanesPerRow == 1 || kLanesPerRow == 2, "wave size 32 or 64");

// Byte offsets of the shared-memory regions (all 16-byte aligned).
template <bool kSplit>
using PfSmem = AttnTilesSmem<kWaveSize, kSplit>;
static_assert(PfSmem<true>::bytes <= kTarget.max_smem_per_block, "shared memory per block");

// x = hi + mid + lo in bf16: hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid) (each
// difference exact in fp32): hi + mid keeps x to 2^-16, hi + mid + lo to 2^-24 relative.
__device__ __forceinline__ void split3(float x, uint16_t& hi, uint16_t& mid, uint16_t& lo) {
  hi = f32_to_bf16_bits(x);
  const float r = x - bf16_bits_to_f32(hi);
  mid = f32_to_bf16_bits(r);
  lo = f32_to_bf16_bits(r - bf16_bits_to_f32(mid));
}

// 8 consecutive cache elements -> bf16 hi, mid, lo bits. A bf16 cache is exact: mid = lo = 0
// (and not used).
__device__ __forceinline__ void split8(const uint16_t* p, uint16_t* hi, uint16_t* mid,
                                       uint16_t* lo) {
  const uint4 w = *reinterpret_cast<const uint4*>(p);
  const uint32_t a[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    hi[2 * e] = static_cast<uint16_t>(a[e] & 0xffffu);
    hi[2 * e + 1] = static_cast<uint16_t>(a[e] >> 16);
    mid[2 * e] = mid[2 * e + 1] = lo[2 * e] = lo[2 * e + 1] = 0;
  }
}
__device__ __forceinline__ void split8(const float* p, uint16_t* hi, uint16_t* mid,
                                       uint16_t* lo) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  const float x[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int e = 0; e < 8; ++e) split3(x[e], hi[e], mid[e], lo[e]);
}

__device__ __forceinline__ uint4 pack8(const uint16_t* h) {
  return make_uint4(h[0] | (uint32_t(h[1]) << 16), h[2] | (uint32_t(h[3]) << 16),
                    h[4] | (uint32_t(h[5]) << 16), h[6] | (uint32_t(h[7]) << 16));
}

// c[i][j] *= f[i] for every accumulator of this lane. tile::for_each visits this lane's
// accumulators in register order r = 0, 1, ... on both architectures, so the r-th call of the
// lambda belongs to c.v[r] (the value is read before it is replaced).
__device__ __forceinline__ void scale_rows(tile::Acc& c, const float* f) {
  int r = 0;
  tile::for_each(c, [&](int i, int, float v) {
    c.v[r] = v * f[i];
    ++r;
  });
}
}  // namespace

// grid (max_tiles, n_kv, ceil(kAttnTileRows * G / kPfM)), block kPfThreads, dynamic shared memory
// PfSmem<split>::bytes (attn_tiles_launch, launch_shapes.h). KvT: uint16_t (bf16 bits) or float.
template <class KvT>
__global__ void __launch_bounds__(kPfThreads)
    f32_kv_attention_tiles_kernel(const float* __restrict__ qkv, const KvT* __restrict__ k_cache,
                                  const KvT* __restrict__ v_cache,
                                  const uint16_t* __restrict__ sinks,
                                  const int32_t* __restrict__ pos,
                                  const int32_t* __restrict__ slot,
                                  const AttnTile* __restrict__ tiles,
                                  const int32_t* __restrict__ n_tiles, int n_heads, int n_kv,
                                  int cap, KvPages pages, int window,
                                  float* __restrict__ out) {
  constexpr bool kSplit = std::is_same_v<KvT, float>;
  using L = PfSmem<kSplit>;
  const int tix = blockIdx.x, kvh = blockIdx.y, chunk = blockIdx.z;
  if (tix >= *n_tiles) return;
  const AttnTile tile = tiles[tix];
  const int G = n_heads / n_kv;
  const int u_begin = chunk * kPfM, u_total = tile.n_rows * G;
  if (u_begin >= u_total) return;

  extern __shared__ __align__(16) unsigned char pf_smem[];
  uint16_t* q_hi = reinterpret_cast<uint16_t*>(pf_smem + L::q_hi);  // [kPfM][kQLd]
  uint16_t* q_mid = reinterpret_cast<uint16_t*>(pf_smem + L::q_mid);  // [kPfM][kQLd]
  uint16_t* q_lo = reinterpret_cast<uint16_t*>(pf_smem + L::q_lo);  // [kPfM][kQLd]
  uint16_t* k_hi = reinterpret_cast<uint16_t*>(pf_smem + L::k_hi);  // [kPfKeys][kQLd]
  uint16_t* k_mid = reinterpret_cast<uint16_t*>(pf_smem + L::k_mid);  // fp32 cache only
  uint16_t* k_lo = reinterpret_cast<uint16_t*>(pf_smem + L::k_lo);  // fp32 cache only
  uint16_t* vt_hi = reinterpret_cast<uint16_t*>(pf_smem + L::vt_hi);  // [kHD][kVtLd]
  uint16_t* vt_lo = reinterpret_cast<uint16_t*>(pf_smem + L::vt_lo);  // fp32 cache only: V - hi
  float* sp = reinterpret_cast<float*>(pf_smem + L::sp);  // [kPfM][kSLd] scores, then P hi|lo
  float* m_run = reinterpret_cast<float*>(pf_smem + L::m_run);  // [kPfM]
  float* l_run = reinterpret_cast<float*>(pf_smem + L::l_run);  // [kPfM]
  float* alpha = reinterpret_cast<float*>(pf_smem + L::alpha);  // [kPfM]
  int* jmin = reinterpret_cast<int*>(pf_smem + L::jmin);  // [kPfM] first visible key
  int* jmax = reinterpret_cast<int*>(pf_smem + L::jmax);  // [kPfM] last visible key (-1: none)

  const size_t R = static_cast<size_t>(n_heads + 2 * n_kv) * kHD;
  const int pos0 = pos[tile.row0];
  const int sl = slot[tile.row0];

  // Q of the chunk's query vectors as bf16 hi + mid + lo; padding vectors are zero.
  for (int c = threadIdx.x; c < kPfM * (kHD / 4); c += kPfThreads) {
    const int u = c / (kHD / 4), d4 = c % (kHD / 4);
    const int ug = u_begin + u;
    float4 q = make_float4(0.f, 0.f, 0.f, 0.f);
    if (ug < u_total) {
      const int r = ug / G, g = ug % G;
      q = *reinterpret_cast<const float4*>(qkv + static_cast<size_t>(tile.row0 + r) * R +
                                           static_cast<size_t>(kvh * G + g) * kHD + 4 * d4);
    }
    const float x[4] = {q.x, q.y, q.z, q.w};
    uint16_t h[4], m[4], l[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) split3(x[e], h[e], m[e], l[e]);
    *reinterpret_cast<uint2*>(q_hi + u * kQLd + 4 * d4) =
        make_uint2(h[0] | (uint32_t(h[1]) << 16), h[2] | (uint32_t(h[3]) << 16));
    *reinterpret_cast<uint2*>(q_mid + u * kQLd + 4 * d4) =
        make_uint2(m[0] | (uint32_t(m[1]) << 16), m[2] | (uint32_t(m[3]) << 16));
    *reinterpret_cast<uint2*>(q_lo + u * kQLd + 4 * d4) =
        make_uint2(l[0] | (uint32_t(l[1]) << 16), l[2] | (uint32_t(l[3]) << 16));
  }
  for (int u = threadIdx.x; u < kPfM; u += kPfThreads) {
    const int ug = u_begin + u;
    if (ug < u_total) {
      const int p = pos0 + ug / G;
      jmin[u] = window > 0 ? max(0, p - window + 1) : 0;
      jmax[u] = p;
      m_run[u] = bf16_bits_to_f32(sinks[kvh * G + ug % G]);  // the sink: first "key", value 0
    } else {
      jmin[u] = 0;
      jmax[u] = -1;
      m_run[u] = 0.0f;
    }
    l_run[u] = 1.0f;  // exp(sink - m_run)
  }

  // Keys any of the chunk's rows sees.
  const int r_first = u_begin / G, r_last = (min(u_total, u_begin + kPfM) - 1) / G;
  const int j_hi = pos0 + r_last;
  const int j_lo = window > 0 ? max(0, pos0 + r_first - window + 1) : 0;

  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const bool wave_active = u_begin + wave * kWT < u_total;  // block-uniform loop, per-wave work
  const float scale = 1.0f / sqrtf(static_cast<float>(kHD));
  tile::Acc o[kHD / kWT];
#pragma unroll
  for (int dh = 0; dh < kHD / kWT; ++dh) tile::zero(o[dh]);

  for (int t0 = j_lo; t0 <= j_hi; t0 += kPfKeys) {
    __syncthreads();  // previous tile's K/V and P consumed (and Q, stats written on the first)
    // 1. Stage K [key][dim] and V^T [dim][key]; keys past j_hi are zero (never NaN garbage).
    for (int c = threadIdx.x; c < kPfKeys * (kHD / 8); c += kPfThreads) {
      const int key = c / (kHD / 8), d8 = c % (kHD / 8);
      const int j = t0 + key;
      uint16_t kh[8], km[8], kl[8], vh[8], vm[8], vl[8];
      if (j <= j_hi) {
        const size_t off = (kv_cache_row(pages, sl, cap, j) * n_kv + kvh) * kHD + 8 * d8;
        split8(k_cache + off, kh, km, kl);
        split8(v_cache + off, vh, vm, vl);  // V: hi + mid (= bf16(v - hi)) only
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) kh[e] = km[e] = kl[e] = vh[e] = vm[e] = vl[e] = 0;
      }
      *reinterpret_cast<uint4*>(k_hi + key * kQLd + 8 * d8) = pack8(kh);
      if constexpr (kSplit) {
        *reinterpret_cast<uint4*>(k_mid + key * kQLd + 8 * d8) = pack8(km);
        *reinterpret_cast<uint4*>(k_lo + key * kQLd + 8 * d8) = pack8(kl);
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        vt_hi[(8 * d8 + e) * kVtLd + key] = vh[e];
        if constexpr (kSplit) vt_lo[(8 * d8 + e) * kVtLd + key] = vm[e];
      }
    }
    __syncthreads();
    // 2. S = Q K^T (this wave's 32 query vectors x kPfKeys keys), scaled, masked.
    if (wave_active) {
      const uint16_t* qh = q_hi + wave * kWT * kQLd;
      const uint16_t* qm = q_mid + wave * kWT * kQLd;
      const uint16_t* ql = q_lo + wave * kWT * kQLd;
#pragma unroll
      for (int nt = 0; nt < kPfKeys / kWT; ++nt) {
        tile::Acc s;
        tile::zero(s);
        const uint16_t* kb = k_hi + nt * kWT * kQLd;
        // Small products first; every product of order <= 2^-16 relative (fp32 cache: all hi/mid/lo
        // pairs with i + j <= 2), so a score is exact to ~2^-24 |q| |k| before fp32 summation.
#pragma unroll
        for (int k0 = 0; k0 < kHD; k0 += 16) {
          if constexpr (kSplit) {
            const uint16_t* km = k_mid + nt * kWT * kQLd;
            const uint16_t* kl = k_lo + nt * kWT * kQLd;
            tile::mma_k16(s, qh, kQLd, kl, kQLd, k0);
            tile::mma_k16(s, qm, kQLd, km, kQLd, k0);
            tile::mma_k16(s, qh, kQLd, km, kQLd, k0);
          }
          tile::mma_k16(s, ql, kQLd, kb, kQLd, k0);
          tile::mma_k16(s, qm, kQLd, kb, kQLd, k0);
          tile::mma_k16(s, qh, kQLd, kb, kQLd, k0);
        }
        tile::for_each(s, [&](int i, int jj, float v) {
          const int u = wave * kWT + i, key = t0 + nt * kWT + jj;
          sp[u * kSLd + nt * kWT + jj] = (key >= jmin[u] && key <= jmax[u]) ? v * scale : -INFINITY;
        });
      }
    }
    __syncthreads();
    // 3. Online softmax over the tile: kLanesPerRow lanes per query vector, the scores read into
    //    registers before the row is overwritten with P hi (bf16 [0, kPfKeys)) and lo (after).
    if (wave_active) {
      const int u = wave * kWT + lane % kWT, part = lane / kWT;
      float* row = sp + u * kSLd;
      float sv[kKeysPerLane];
#pragma unroll
      for (int e = 0; e < kKeysPerLane; e += 4) {
        const float4 v = *reinterpret_cast<const float4*>(row + part * kKeysPerLane + e);
        sv[e] = v.x, sv[e + 1] = v.y, sv[e + 2] = v.z, sv[e + 3] = v.w;
      }
      float mt = -INFINITY;
#pragma unroll
      for (int e = 0; e < kKeysPerLane; ++e) mt = fmaxf(mt, sv[e]);
      if constexpr (kLanesPerRow == 2) mt = fmaxf(mt, gpu_shfl_xor(mt, kWT));
      const float m_old = m_run[u];
      const float m_new = fmaxf(m_old, mt);
      uint16_t* prow = reinterpret_cast<uint16_t*>(row);
      float sum = 0.0f;
#pragma unroll
      for (int e = 0; e < kKeysPerLane; ++e) {
        const float pe = expf(sv[e] - m_new);  // masked: exp(-inf) = 0
        sum += pe;
        const uint16_t h = f32_to_bf16_bits(pe);
        prow[part * kKeysPerLane + e] = h;
        prow[kPfKeys + part * kKeysPerLane + e] = f32_to_bf16_bits(pe - bf16_bits_to_f32(h));
      }
      if constexpr (kLanesPerRow == 2) sum += gpu_shfl_xor(sum, kWT);
      if (part == 0) {
        const float a = expf(m_old - m_new);
        alpha[u] = a;
        l_run[u] = l_run[u] * a + sum;
        m_run[u] = m_new;
      }
    }
    __syncthreads();
    // 4. O = alpha O + P V.
    if (wave_active) {
      const uint16_t* ph = reinterpret_cast<const uint16_t*>(sp + wave * kWT * kSLd);
      const uint16_t* pl = ph + kPfKeys;
#pragma unroll
      for (int dh = 0; dh < kHD / kWT; ++dh) {
        scale_rows(o[dh], alpha + wave * kWT);
        const uint16_t* vb = vt_hi + dh * kWT * kVtLd;
#pragma unroll
        for (int k0 = 0; k0 < kPfKeys; k0 += 16) {
          tile::mma_k16(o[dh], ph, kPLd, vb, kVtLd, k0);
          tile::mma_k16(o[dh], pl, kPLd, vb, kVtLd, k0);
          if constexpr (kSplit) {
            tile::mma_k16(o[dh], ph, kPLd, vt_lo + dh * kWT * kVtLd, kVtLd, k0);
            tile::mma_k16(o[dh], pl, kPLd, vt_lo + dh * kWT * kVtLd, kVtLd, k0);
          }
        }
      }
    }
  }
  // out = O / l for the chunk's real query vectors (l_run final since the last barrier).
  if (wave_active) {
#pragma unroll
    for (int dh = 0; dh < kHD / kWT; ++dh) {
      tile::for_each(o[dh], [&](int i, int jj, float v) {
        const int u = wave * kWT + i, ug = u_begin + u;
        if (ug < u_total) {
          const int r = ug / G, g = ug % G;
          out[(static_cast<size_t>(tile.row0 + r) * n_heads + kvh * G + g) * kHD + dh * kWT + jj] =
              v / l_run[u];
        }
      });
    }
  }
}

template <class KvT>
static void attention_tiles(const float* qkv, const KvT* k_cache, const KvT* v_cache,
                            const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                            const AttnTile* tiles, const int32_t* n_tiles, int max_tiles,
                            int n_heads, int n_kv_heads, int head_dim, int cap,
                            const KvPages& pages, int window, float* out, gpuStream_t stream) {
  if (max_tiles <= 0) return;
  GPTOSS_ASSERT(head_dim == kHD && n_kv_heads > 0 && n_heads % n_kv_heads == 0 &&
                n_heads / n_kv_heads <= kAttnMaxGroup);
  const KernelLaunch l = attn_tiles_launch(kTarget, std::is_same_v<KvT, float>, max_tiles, n_heads,
                                           n_kv_heads);
  // The shared-memory opt-in, once per device (not again inside a graph capture of later steps).
  opt_in_dynamic_smem(reinterpret_cast<const void*>(f32_kv_attention_tiles_kernel<KvT>),
                      l.dyn_smem_bytes);
  f32_kv_attention_tiles_kernel<KvT><<<dim3(l.grid_x, l.grid_y, l.grid_z), l.threads,
                                       l.dyn_smem_bytes, stream>>>(
      qkv, k_cache, v_cache, sinks, pos, slot, tiles, n_tiles, n_heads, n_kv_heads, cap, pages,
      window, out);
  GPU_CHECK_LAUNCH();
}

void f32_bf16kv_attention_sinks_tiles(const float* qkv, const bf16_t* k_cache,
                                      const bf16_t* v_cache, const bf16_t* sinks,
                                      const int32_t* pos, const int32_t* slot,
                                      const AttnTile* tiles, const int32_t* n_tiles, int max_tiles,
                                      int n_heads, int n_kv_heads, int head_dim, int cap,
                                      const KvPages& pages, int window, float* out,
                                      gpuStream_t stream) {
  attention_tiles<uint16_t>(qkv, k_cache, v_cache, sinks, pos, slot, tiles, n_tiles, max_tiles,
                            n_heads, n_kv_heads, head_dim, cap, pages, window, out, stream);
}

void f32_f32kv_attention_sinks_tiles(const float* qkv, const float* k_cache, const float* v_cache,
                                     const bf16_t* sinks, const int32_t* pos, const int32_t* slot,
                                     const AttnTile* tiles, const int32_t* n_tiles, int max_tiles,
                                     int n_heads, int n_kv_heads, int head_dim, int cap,
                                     const KvPages& pages, int window, float* out,
                                     gpuStream_t stream) {
  attention_tiles<float>(qkv, k_cache, v_cache, sinks, pos, slot, tiles, n_tiles, max_tiles,
                         n_heads, n_kv_heads, head_dim, cap, pages, window, out, stream);
}

}  // namespace gptoss::gpu
