// kernels/gpu/moe_gemv.cu: the MoE expert GEMVs (steps of few rows: an expert's rows are the
// columns of one pass over its MXFP4 weights), with the SwiGLU epilogue on mlp1 and the bias on
// mlp2. moe_gemv_kernel: scalar fp32 FMAs on both targets (default); moe_gemv_mma_kernel: fp16
// tensor cores (NVIDIA, MoeOptions::gemv_tensor_cores). One kernel per scratch for every row
// count (batch invariance, moe.h).
#include "gpu/moe_kernels.h"

namespace gptoss::gpu {
namespace {

// grid (min(E, pairs), ceil(M / (kWaves * kMoeGemvRowsW))); each wave computes kMoeGemvRowsW = 4
// consecutive weight rows (mlp1: two gate/up pairs) for every row of its expert, RB rows at a
// time. Lane l takes whole MXFP4 blocks (16-byte loads + their scale byte): blocks l, l + W,
// l + 2W, ... (W = kWaveSize) of each of the 4 weight rows, so a wave reads contiguous 512-byte
// runs per row and all kGemvU x 4 loads of a lane are in flight before the first use (K = 2880:
// 90 blocks, one pass, 12 x 16 B per lane, ~48 KB in flight per block). The weight loads are
// issued before the block stages its x rows into shared memory (fp32, padded to 36 floats per
// 32 so the lanes' float4 reads of different blocks hit different banks); x is read from shared
// memory once per 8 elements and reused for the 4 weight rows. Dynamic shared memory:
// moe_gemv_smem_bytes(RB, K).
constexpr int kGemvU = (96 + kWaveSize - 1) / kWaveSize;  // block slots per lane per pass
template <int RB, bool kMlp1>
__global__ __launch_bounds__(kMoeThreads) void moe_gemv_kernel(MoeExpertArgs a) {
  extern __shared__ float4 gemv_xs4[];  // [RB][K / 32][kMoeXPad] fp32
  float* xs = reinterpret_cast<float*>(gemv_xs4);
  const int j = blockIdx.x;
  if (j >= a.meta[0]) return;  // uniform per block
  const int e = a.active[j];
  const int g0 = a.offsets[e], cnt = a.offsets[e + 1] - g0;
  if (cnt > a.max_cnt) return;  // uniform per block
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int mw = (blockIdx.y * kWaves + wave) * kMoeGemvRowsW;
  const bool wave_ok = mw < a.M;  // M % 4 == 0; no early return: the block synchronises below
  const int m0 = wave_ok ? mw : 0;
  const int K = a.K, nb = K / 32, row_bytes = K / 2, xstride = nb * kMoeXPad;
  const size_t wrow0 = static_cast<size_t>(e) * a.M + m0;
  const uint8_t* wb = a.blocks + wrow0 * row_bytes;
  const uint8_t* wsc = a.scales + wrow0 * nb;

  for (int c0 = 0; c0 < cnt; c0 += RB) {
    float acc[kMoeGemvRowsW][RB];
#pragma unroll
    for (int w = 0; w < kMoeGemvRowsW; ++w)
#pragma unroll
      for (int r = 0; r < RB; ++r) acc[w][r] = 0.0f;

    for (int b0 = 0; b0 < nb; b0 += kGemvU * kWaveSize) {
      uint4 wv[kGemvU][kMoeGemvRowsW];
      uint32_t sv[kGemvU][kMoeGemvRowsW];
#pragma unroll
      for (int u = 0; u < kGemvU; ++u) {
        const int b = b0 + u * kWaveSize + lane;
        const bool ok = wave_ok && b < nb;
#pragma unroll
        for (int w = 0; w < kMoeGemvRowsW; ++w) {
          wv[u][w] = ok ? *reinterpret_cast<const uint4*>(wb + static_cast<size_t>(w) * row_bytes + 16 * b)
                        : make_uint4(0, 0, 0, 0);
          sv[u][w] = ok ? wsc[w * nb + b] : 127u;
        }
      }
      if (b0 == 0) {  // stage x rows c0 .. c0 + RB - 1 (clamped) while the weights are in flight
        __syncthreads();  // the previous chunk's readers are done
        for (int r = 0; r < RB; ++r) {
          const int g = g0 + min(c0 + r, cnt - 1);
          const int row = kMlp1 ? a.slot_pair[g] / a.top_k : g;
          const float4* xr = reinterpret_cast<const float4*>(a.x + static_cast<size_t>(row) * K);
          for (int i = threadIdx.x; i < K / 4; i += kMoeThreads)
            *reinterpret_cast<float4*>(xs + r * xstride + (i / 8) * kMoeXPad + 4 * (i % 8)) = xr[i];
        }
        __syncthreads();
      }
#pragma unroll
      for (int u = 0; u < kGemvU; ++u) {
        const int b = b0 + u * kWaveSize + lane;
        if (!wave_ok || b >= nb) continue;
        float part[kMoeGemvRowsW][RB];
#pragma unroll
        for (int w = 0; w < kMoeGemvRowsW; ++w)
#pragma unroll
          for (int r = 0; r < RB; ++r) part[w][r] = 0.0f;
#pragma unroll
        for (int q = 0; q < 4; ++q) {  // word q of the block: elements 8q .. 8q + 7
          float xv[RB][8];
#pragma unroll
          for (int r = 0; r < RB; ++r) {
            const float* xp = xs + r * xstride + b * kMoeXPad + 8 * q;
            const float4 lo = *reinterpret_cast<const float4*>(xp);
            const float4 hi = *reinterpret_cast<const float4*>(xp + 4);
            xv[r][0] = lo.x; xv[r][1] = lo.y; xv[r][2] = lo.z; xv[r][3] = lo.w;
            xv[r][4] = hi.x; xv[r][5] = hi.y; xv[r][6] = hi.z; xv[r][7] = hi.w;
          }
#pragma unroll
          for (int w = 0; w < kMoeGemvRowsW; ++w) {
            const uint32_t word = q == 0 ? wv[u][w].x : q == 1 ? wv[u][w].y : q == 2 ? wv[u][w].z : wv[u][w].w;
            float raw[8];
            mxfp4_decode8_raw(word, raw);
#pragma unroll
            for (int r = 0; r < RB; ++r) {
              float d = part[w][r];
#pragma unroll
              for (int i = 0; i < 8; ++i) d = fmaf(raw[i], xv[r][i], d);
              part[w][r] = d;
            }
          }
        }
#pragma unroll
        for (int w = 0; w < kMoeGemvRowsW; ++w) {
          const float sc = e8m0_to_f32(sv[u][w]);
#pragma unroll
          for (int r = 0; r < RB; ++r) acc[w][r] = fmaf(part[w][r] * 16384.0f, sc, acc[w][r]);  // raw = LUT * 2^-14
        }
      }
    }
#pragma unroll
    for (int w = 0; w < kMoeGemvRowsW; ++w)
#pragma unroll
      for (int r = 0; r < RB; ++r) acc[w][r] = wave_sum(acc[w][r]);
    if (lane == 0 && wave_ok) {
      const uint16_t* bias = a.bias + wrow0;
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        if (c0 + r >= cnt) continue;
        const int g = g0 + c0 + r;
        if (kMlp1) {
#pragma unroll
          for (int w = 0; w < kMoeGemvRowsW; w += 2)
            a.out[static_cast<size_t>(g) * (a.M / 2) + (m0 + w) / 2] =
                swiglu(acc[w][r] + bf16_bits_to_f32(bias[w]), acc[w + 1][r] + bf16_bits_to_f32(bias[w + 1]), a.limit);
        } else {
          float* o = a.out + static_cast<size_t>(a.slot_pair[g]) * a.M + m0;
#pragma unroll
          for (int w = 0; w < kMoeGemvRowsW; ++w) o[w] = acc[w][r] + bf16_bits_to_f32(bias[w]);
        }
      }
    }
  }
}

#if !defined(GPTOSS_HIP)
// ---- GEMV on tensor cores (NVIDIA; the default decode path there) ----------------------------
// Why: the scalar GEMV above converts every MXFP4 element to fp32 (one cvt + one FMA per element)
// and measured ~0.23 of HBM bandwidth on H100 at 1 row (decode-instruction bound, rows 1 and 8
// alike). Here the codes become fp16 pairs with 2-3 integer ops per 2 elements (the exact fp16
// placement of mxfp4_decode8_raw: LUT * 2^-14) and the tensor cores do the multiply-adds:
// mma.sync m16n8k16 f16 x f16 -> f32, A = 16 weight rows, B = up to 8 activation rows (the
// columns), so 1..8 rows of an expert cost the same instructions.
// x enters as two fp16 halves hi = f16(x), lo = f16(x - hi) (x to ~2^-22 relative; |x| must
// stay below 65504, true for RMSNorm outputs and the SwiGLU outputs, which are bounded by
// limit * (limit + 1)); products are exact in fp32, so the result is fp32-quality like the
// scalar path.
// Layout: a wave owns 16 weight rows (g and g + 8 for lane (g = lane / 4, t = lane % 4)); one
// MXFP4 block (32 codes) is one k32 step = two mma k16 steps; lane t holds word t (codes
// 8t .. 8t+7) of its two rows, as fp16 pairs (8t + q, 8t + q + 4), q = 0..3, which fixes the k
// order (the same for A and B, any order is a valid dot product). The block's partial sums D
// (fp32, rows g, g + 8, columns 2t, 2t + 1) are scaled by the rows' E8M0 scales into fp32
// accumulators, so no cross-lane reduction is needed.
// x staging in shared memory: per activation row n, block b, lane t: uint4 of the 4 fp16 pairs,
// hi and lo, row stride padded to 16 (mod 32) words so the 8 lanes of an LDS.128 phase hit
// distinct banks (moe_gemv_mma_row_words). Dynamic shared memory: moe_gemv_mma_smem_bytes(NR, K).
constexpr int kMmaGemvUnroll = 16;     // MXFP4 blocks loaded ahead per lane

// NR: activation rows per chunk (1 for decode at batch 1: only column 0 is staged, the other
// columns are zero registers; else kMoeMmaGemvRows).
template <int NR, bool kMlp1>
__global__ __launch_bounds__(kMoeThreads) void moe_gemv_mma_kernel(MoeExpertArgs a) {
  extern __shared__ uint4 gemv_mma_xs[];
  uint32_t* xs = reinterpret_cast<uint32_t*>(gemv_mma_xs);  // [2 (hi, lo)][NR rows][row_words]
  const int j = blockIdx.x;
  if (j >= a.meta[0]) return;  // uniform per block
  const int e = a.active[j];
  const int g0 = a.offsets[e], cnt = a.offsets[e + 1] - g0;
  if (cnt > a.max_cnt) return;  // uniform per block
  const int wave = threadIdx.x / kWaveSize, lane = threadIdx.x % kWaveSize;
  const int g = lane / 4, t = lane % 4;
  const int mw = (blockIdx.y * kWaves + wave) * kMoeMmaGemvWaveRows;
  const bool wave_ok = mw < a.M;  // M % 16 == 0 (checked by the launcher)
  const int m0 = wave_ok ? mw : 0;
  const int K = a.K, nb = K / 32, row_bytes = K / 2, rw = moe_gemv_mma_row_words(K);
  const size_t r0 = static_cast<size_t>(e) * a.M + m0 + g, r1 = r0 + 8;
  const uint32_t* wb0 = reinterpret_cast<const uint32_t*>(a.blocks + r0 * row_bytes) + t;
  const uint32_t* wb1 = reinterpret_cast<const uint32_t*>(a.blocks + r1 * row_bytes) + t;
  const uint8_t* sc0 = a.scales + r0 * nb;
  const uint8_t* sc1 = a.scales + r1 * nb;

  for (int c0 = 0; c0 < cnt; c0 += NR) {
    const int nrows = min(NR, cnt - c0);
    __syncthreads();  // the previous chunk's readers are done
    // Stage: item (n, b, t') -> 4 pairs (8t' + q, 8t' + q + 4), hi and lo; rows >= nrows are 0.
    for (int it = threadIdx.x; it < NR * nb * 4; it += kMoeThreads) {
      const int n = it / (nb * 4), rem = it % (nb * 4), b = rem / 4, tt = rem % 4;
      uint4 hi = make_uint4(0, 0, 0, 0), lo = make_uint4(0, 0, 0, 0);
      if (n < nrows) {
        const int gg = g0 + c0 + n;
        const int row = kMlp1 ? a.slot_pair[gg] / a.top_k : gg;
        const float* xp = a.x + static_cast<size_t>(row) * K + 32 * b + 8 * tt;
        const float4 v0 = *reinterpret_cast<const float4*>(xp);
        const float4 v1 = *reinterpret_cast<const float4*>(xp + 4);
        f16_hilo8(v0, v1, hi, lo);
      }
      *reinterpret_cast<uint4*>(xs + n * rw + 16 * b + 4 * tt) = hi;
      *reinterpret_cast<uint4*>(xs + (NR + n) * rw + 16 * b + 4 * tt) = lo;
    }
    __syncthreads();

    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const bool col_ok = g < nrows;  // this lane's B column (activation row) exists
    const uint32_t* xh = xs + min(g, NR - 1) * rw + 4 * t;
    const uint32_t* xl = xs + (NR + min(g, NR - 1)) * rw + 4 * t;
    if (wave_ok) {
      for (int b0 = 0; b0 < nb; b0 += kMmaGemvUnroll) {
        uint32_t w0[kMmaGemvUnroll], w1[kMmaGemvUnroll], s0[kMmaGemvUnroll], s1[kMmaGemvUnroll];
#pragma unroll
        for (int u = 0; u < kMmaGemvUnroll; ++u) {
          const int b = b0 + u;
          const bool ok = b < nb;
          w0[u] = ok ? wb0[4 * b] : 0u;
          w1[u] = ok ? wb1[4 * b] : 0u;
          s0[u] = ok ? sc0[b] : 127u;
          s1[u] = ok ? sc1[b] : 127u;
        }
#pragma unroll
        for (int u = 0; u < kMmaGemvUnroll; ++u) {
          const int b = b0 + u;
          if (b >= nb) break;
          uint4 bh = make_uint4(0, 0, 0, 0), bl = make_uint4(0, 0, 0, 0);
          if (col_ok) {
            bh = *reinterpret_cast<const uint4*>(xh + 16 * b);
            bl = *reinterpret_cast<const uint4*>(xl + 16 * b);
          }
          const uint32_t p00 = mxfp4_pair_f16(w0[u], 0), p01 = mxfp4_pair_f16(w0[u], 1),
                         p02 = mxfp4_pair_f16(w0[u], 2), p03 = mxfp4_pair_f16(w0[u], 3);
          const uint32_t p10 = mxfp4_pair_f16(w1[u], 0), p11 = mxfp4_pair_f16(w1[u], 1),
                         p12 = mxfp4_pair_f16(w1[u], 2), p13 = mxfp4_pair_f16(w1[u], 3);
          float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          tile::mma_f16_m16n8k16(d, p00, p10, p01, p11, bl.x, bl.y);
          tile::mma_f16_m16n8k16(d, p02, p12, p03, p13, bl.z, bl.w);
          tile::mma_f16_m16n8k16(d, p00, p10, p01, p11, bh.x, bh.y);
          tile::mma_f16_m16n8k16(d, p02, p12, p03, p13, bh.z, bh.w);
          const float f0 = e8m0_to_f32(s0[u]) * 16384.0f, f1 = e8m0_to_f32(s1[u]) * 16384.0f;
          acc[0] = fmaf(d[0], f0, acc[0]);
          acc[1] = fmaf(d[1], f0, acc[1]);
          acc[2] = fmaf(d[2], f1, acc[2]);
          acc[3] = fmaf(d[3], f1, acc[3]);
        }
      }
    }
    // acc: rows m0 + g (acc 0, 1) and m0 + g + 8 (acc 2, 3), activation rows 2t, 2t + 1.
    const uint16_t* bias = a.bias + static_cast<size_t>(e) * a.M + m0;
    if (kMlp1) {
      // gate/up pairs are rows (2i, 2i + 1): the up value comes from lane + 4 (row g + 1).
      float up[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) up[i] = gpu_shfl_down(acc[i], 4);
      if (wave_ok && (g % 2) == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {      // row g (h = 0) or g + 8 (h = 1)
          const int mr = g + 8 * h;
#pragma unroll
          for (int c = 0; c < 2; ++c) {    // activation row 2t + c
            const int n = 2 * t + c;
            if (n >= nrows) continue;
            const float gate = acc[2 * h + c] + bf16_bits_to_f32(bias[mr]);
            const float upv = up[2 * h + c] + bf16_bits_to_f32(bias[mr + 1]);
            a.out[static_cast<size_t>(g0 + c0 + n) * (a.M / 2) + (m0 + mr) / 2] = swiglu(gate, upv, a.limit);
          }
        }
      }
    } else if (wave_ok) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int mr = g + 8 * h;
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int n = 2 * t + c;
          if (n >= nrows) continue;
          a.out[static_cast<size_t>(a.slot_pair[g0 + c0 + n]) * a.M + m0 + mr] =
              acc[2 * h + c] + bf16_bits_to_f32(bias[mr]);
        }
      }
    }
  }
}

#endif  // !GPTOSS_HIP

}  // namespace

void moe_gemv_kernel_fns(std::vector<MoeKernelFn>& out) {
  out.push_back(moe_kernel_fn("moe_gemv_kernel<1, true>", moe_gemv_kernel<1, true>));
  out.push_back(moe_kernel_fn("moe_gemv_kernel<1, false>", moe_gemv_kernel<1, false>));
  out.push_back(moe_kernel_fn("moe_gemv_kernel<4, true>", moe_gemv_kernel<4, true>));
  out.push_back(moe_kernel_fn("moe_gemv_kernel<4, false>", moe_gemv_kernel<4, false>));
#if !defined(GPTOSS_HIP)
  out.push_back(moe_kernel_fn("moe_gemv_mma_kernel<1, true>", moe_gemv_mma_kernel<1, true>));
  out.push_back(moe_kernel_fn("moe_gemv_mma_kernel<1, false>", moe_gemv_mma_kernel<1, false>));
  out.push_back(moe_kernel_fn("moe_gemv_mma_kernel<8, true>", moe_gemv_mma_kernel<kMoeMmaGemvRows, true>));
  out.push_back(moe_kernel_fn("moe_gemv_mma_kernel<8, false>", moe_gemv_mma_kernel<kMoeMmaGemvRows, false>));
#endif
}

void moe_launch_gemv(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream) {
  const KernelLaunch& l = p.mlp_k[m];
  const dim3 g = moe_grid(l);
  auto go = [&]<bool kMlp1>() {
#if !defined(GPTOSS_HIP)
    if (p.gemv_tensor_cores) {
      if (p.gemv_rows == 1)
        moe_gemv_mma_kernel<1, kMlp1><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
      else
        moe_gemv_mma_kernel<kMoeMmaGemvRows, kMlp1><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
      return;
    }
#endif
    if (p.gemv_rows == 1)
      moe_gemv_kernel<1, kMlp1><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
    else
      moe_gemv_kernel<4, kMlp1><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
  };
  if (m == 0)
    go.template operator()<true>();
  else
    go.template operator()<false>();
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::gpu
