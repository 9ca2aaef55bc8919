// kernels/gpu/moe_grouped_gemm.cu: the grouped tensor-core GEMM (NVIDIA sm_80+): every expert of
// steps of >= MoeOptions::grouped_from_rows rows, 256 weight rows x one 64-row tile of the tile
// list per block, cp.async pipeline, MXFP4 decoded in registers. Arithmetic by MoeTcMode
// (moe_plan.h): exact = fp16 weights, x as fp16 hi + lo, per-block scale FMAs; fast_f16 = the
// same with x as fp16 hi; fast_bf16 = bf16 weights with the E8M0 scale folded in, x as bf16, the
// MMAs accumulating directly (moe_stage_x_kernel stages x; mlp1's epilogue writes mlp2's operand
// in the same layout). moe_stage_x_kernel also stages x for the wgmma kernel (moe_ws_gemm.cu,
// mode fast_wgmma).
// On HIP this file defines no kernel (moe_plan never picks the grouped GEMM on AMD).
#include "gpu/moe_kernels.h"
#include "gpu/tile.h"

namespace gptoss::gpu {
#if !defined(GPTOSS_HIP)
namespace {

// ---- grouped GEMM on tensor cores (NVIDIA; every expert of steps of > kMoeStepGemvMaxRows rows) --
// The tensor-core GEMV's arithmetic (weights = A as exact fp16 placements LUT * 2^-14, x = B as
// fp16 hi + lo, mma.sync m16n8k16 f16 -> f32, each MXFP4 block's partial sums scaled by the
// rows' E8M0 scales into fp32 accumulators) on a GEMM tile with a cp.async pipeline:
//   block = kMoeTcBM (256) weight rows x kMoeTcBN (64 = kMoeTileRows, one tile of the tile list) grouped
//   rows; warp w owns weight rows 32w .. 32w + 31 (two m16 tiles) x all 64 columns (8 n8 tiles,
//   only ceil(rows / 8) of them computed: the count is uniform per block).
//   K advances kMoeTcKB (2) MXFP4 blocks per stage, kTcStages (4) stages in flight: per stage the raw
//   MXFP4 bytes (256 rows x 32 B) and the B operand (64 rows x 256 B of pre-staged hi/lo pairs)
//   arrive by cp.async; the scales of the block's rows for all K are copied once at the start.
//   No decode to shared memory: each lane turns its own 2 words per m16 tile into 8 fp16 pairs
//   (2-3 integer ops per pair) and feeds 8 n-tiles x 4 mma with them.
// B comes pre-staged (moe_stage_x_kernel for mlp1; mlp1's epilogue for mlp2) as, per row and
// MXFP4 block b, 128 bytes: [hi: lanes t = 0..3 x 4 words][lo: same], word q of lane t = the fp16
// pair (32b + 8t + q, 32b + 8t + q + 4): the B fragment of lane (g, t) is one 16-byte load.
// Results: a row's outputs depend on that row only (columns of an mma are independent, the K
// order is fixed), so they do not depend on the other rows of the step or on the tiling.
// Shared stage: weights [kMoeTcBM rows][kMoeTcKB blocks x 16 B], block slot b of row r at
// b ^ ((r >> 2) & 1); B [kMoeTcBN rows][16 chunks of 16 B], chunk j of row n at j ^ (4 (n & 1)).
// The XOR swizzles make the fragment reads conflict-free without padding. Configurations
// (template kStages, kMinBlocks): 3 stages + scales = 95 KB with registers capped at 128 (two
// blocks per SM), or 4 / 6 stages = 119 / 167 KB, uncapped (one block per SM);
// MoeOptions::grouped_config 1 / 2 pick those. The fast modes read only B's hi chunks, so
// configurations 3 / 4 (two blocks per SM with 4 / 5 stages: kHiB, fast modes only) stage just
// those: B rows of 128 bytes per stage (chunk 4b + t of row n at (4b + t) ^ (4 (n & 1)); the 8
// lanes of a 16-byte read phase, rows n and n + 1, take the two halves of the 32 banks), 16 KB
// stages, 87 / 103 KB with the scales: more bytes in flight at the same two blocks per SM.
// Dynamic shared memory moe_tc_smem_bytes(K, stages, hi_b).
static_assert(kMoeTcKB == 2, "the swizzles assume two MXFP4 blocks per stage");
static_assert(kMoeTcBN == kMoeTileRows, "one block per tile of the tile list");
static_assert(kMoeTcBM == 32 * kWaves && kMoeThreads == 256, "warp w owns weight rows 32w..32w+31");

// [rows, K] fp32 -> [rows, K / 32, 2 (hi, lo), 4 (t), 4 (q)] fp16-pair words (see above).
// mode (MoeTcMode) exact: hi and lo; fast_f16: hi only (the GEMM reads no lo words); fast_bf16:
// the hi words as bf16 pairs instead.
__global__ __launch_bounds__(kMoeThreads) void moe_stage_x_kernel(const float* __restrict__ x, int rows,
                                                               int K, uint32_t* __restrict__ xq,
                                                               int mode) {
  const int nb = K / 32;
  const size_t item = static_cast<size_t>(blockIdx.x) * kMoeThreads + threadIdx.x;
  if (item >= static_cast<size_t>(rows) * nb * 4) return;
  const int n = static_cast<int>(item / (nb * 4)), rem = static_cast<int>(item % (nb * 4));
  const int b = rem / 4, tt = rem % 4;
  const float* xp = x + static_cast<size_t>(n) * K + 32 * b + 8 * tt;
  const float4 v0 = *reinterpret_cast<const float4*>(xp), v1 = *reinterpret_cast<const float4*>(xp + 4);
  uint32_t* o = xq + static_cast<size_t>(n) * nb * 32 + 32 * b + 4 * tt;
  if (mode == static_cast<int>(MoeTcMode::fast_bf16)) {
    *reinterpret_cast<uint4*>(o) = bf16_pairs8(v0, v1);
    return;
  }
  if (mode == static_cast<int>(MoeTcMode::fast_wgmma)) {  // word q of lane tt at 4 q + tt
    const uint4 w = bf16_pairs8(v0, v1);
    uint32_t* ob = xq + static_cast<size_t>(n) * nb * 32 + 32 * b + tt;
    ob[0] = w.x, ob[4] = w.y, ob[8] = w.z, ob[12] = w.w;
    return;
  }
  uint4 hi, lo;
  f16_hilo8(v0, v1, hi, lo);
  *reinterpret_cast<uint4*>(o) = hi;
  if (mode == static_cast<int>(MoeTcMode::exact)) *reinterpret_cast<uint4*>(o + 16) = lo;
}

// The E8M0 scales of a block's weight rows (one contiguous span of the [E, M, nb] array) into
// shared memory: cp.async when aligned, else byte by byte (both grouped GEMM kernels).
__device__ __forceinline__ void copy_block_scales(const uint8_t* src, int nbytes, unsigned char* scs,
                                                  int tid) {
  if ((reinterpret_cast<uintptr_t>(src) & 15u) == 0 && nbytes % 16 == 0) {
    for (int i = tid; i < nbytes / 16; i += kMoeThreads) tile::cp_async16(scs + 16 * i, src + 16 * i);
  } else {
    for (int i = tid; i < nbytes; i += kMoeThreads) scs[i] = src[i];
  }
}

// kMode (MoeTcMode): exact (x as fp16 hi + lo, two MMAs per product), fast_f16 (x as fp16 hi
// only, 2^-11 relative; one MMA per product; the lo chunks are neither loaded nor written),
// fast_bf16 (as fast_f16 with bf16 x, 2^-8, and the scale folded into the bf16 weights: each
// lane multiplies its decoded pairs by the bf16 2^(s - 1) of its rows' scales, exactly, and the
// MMAs accumulate into the fp32 sums without per-block partials).
template <bool kMlp1, int kTcStages, int kMinBlocks, int kMode>
__global__ __launch_bounds__(kMoeThreads, kMinBlocks) void moe_tc_kernel(MoeExpertArgs a) {
  constexpr bool kLo = kMode == static_cast<int>(MoeTcMode::exact);
  constexpr bool kFold = kMode == static_cast<int>(MoeTcMode::fast_bf16);
  // Two blocks per SM with more than 3 stages: B staged hi chunks only (configurations 3, 4).
  constexpr bool kHiB = moe_tc_hi_b(kTcStages, kMinBlocks);
  static_assert(!(kHiB && kLo), "the exact mode reads the lo chunks: no hi-only staging");
  constexpr int kXRow = kHiB ? kMoeTcXRow / 2 : kMoeTcXRow;  // B bytes per row per stage
  constexpr int kStageBytes = kMoeTcBM * kMoeTcWRow + kMoeTcBN * kXRow;
  constexpr int kXChunk = kHiB ? 4 : 8;  // B chunks per MXFP4 block in a staged row
  extern __shared__ uint4 tc_smem4[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(tc_smem4);
  const int tile = blockIdx.x;
  if (tile >= a.meta[1]) return;  // uniform per block
  const int tid = threadIdx.x, warp = tid / kWaveSize, lane = tid % kWaveSize;
  const int g = lane / 4, t = lane % 4;
  const int e = a.tile_expert[tile], s0 = a.tile_slot0[tile];
  const int nrows = min(kMoeTcBN, a.offsets[e + 1] - s0);
  const int K = a.K, M = a.M, nb = K / 32, nk = nb / kMoeTcKB;
  const int m0 = blockIdx.y * kMoeTcBM;
  const int mrows = min(kMoeTcBM, M - m0);  // a multiple of 32 (moe_plan's shape check)
  unsigned char* scs = smem + kTcStages * kStageBytes;  // [mrows][nb] E8M0 bytes

  copy_block_scales(a.scales + (static_cast<size_t>(e) * M + m0) * nb, mrows * nb, scs, tid);
  // Loader roles. A: kMoeTcBM rows x kMoeTcKB blocks of 16 B = 2 chunks per thread; B: kMoeTcBN rows x
  // 16 chunks of 16 B = 4 chunks per thread (kHiB: 8 chunks, 2 per thread). Weight rows past M
  // are not loaded (their warps do not compute); B rows past the tile's rows are not loaded
  // either (only their columns' outputs, which are dropped, read them).
  // Kept compact (registers): thread tid copies weight rows r = tid / 2 + 128 i (block tid % 2)
  // and B rows n = tid / 16 + 16 i (chunk tid % 16; kHiB: tid / 8 + 32 i, chunk tid % 8); the
  // swizzle bits are the same for all i.
  constexpr int kBRowChunks = kMoeTcKB * kXChunk;  // B chunks per staged row
  constexpr int kAChunks = kMoeTcBM * kMoeTcKB / kMoeThreads, kBChunks = kMoeTcBN * kBRowChunks / kMoeThreads;
  constexpr int kBRowStep = kMoeThreads / kBRowChunks;  // rows between a thread's B chunks
  static_assert(kAChunks == 2 && kBChunks == (kHiB ? 2 : 4), "loader mapping");
  const int ar = tid / 2, ab = tid % 2;
  const unsigned char* asrc = a.blocks + ((static_cast<size_t>(e) * M + m0 + ar) * nb + ab) * 16;
  const size_t astep = static_cast<size_t>(128) * nb * 16;  // 128 rows further
  const int adst = ar * kMoeTcWRow + ((ab ^ ((ar >> 2) & 1)) << 4);
  const int bn = tid / kBRowChunks, bj = tid % kBRowChunks;
  const int bdst = kMoeTcBM * kMoeTcWRow + bn * kXRow + ((bj ^ ((bn & 1) << 2)) << 4);
  // xq holds 8 chunks per row and MXFP4 block (4 hi, 4 lo): staged chunk bj is xq chunk bj
  // (kHiB: block bj / 4's hi chunk bj % 4).
  const int bsrc = kHiB ? 8 * (bj / 4) + bj % 4 : bj;
  uint32_t boff[kBChunks];  // byte offset of the chunk's row in xq / 16, or ~0u: not loaded
#pragma unroll
  for (int i = 0; i < kBChunks; ++i) {
    const int n = bn + kBRowStep * i;
    boff[i] = ~0u;
    if (n < nrows && (kLo || kHiB || bj % 8 < 4)) {  // chunks 8b + 4 .. 8b + 7: block b's lo words
      const int gs = s0 + n;
      const int src_row = kMlp1 ? a.slot_pair[gs] / a.top_k : gs;
      boff[i] = static_cast<uint32_t>(src_row) * static_cast<uint32_t>(nb * 8) + bsrc;
    }
  }
  const uint4* xq = reinterpret_cast<const uint4*>(a.xq);
  auto load_stage = [&](int kt, int st) {
    unsigned char* base = smem + st * kStageBytes;
#pragma unroll
    for (int i = 0; i < kAChunks; ++i)
      if (ar + 128 * i < mrows)
        tile::cp_async16(base + adst + i * 128 * kMoeTcWRow, asrc + i * astep + static_cast<size_t>(kt) * kMoeTcKB * 16);
#pragma unroll
    for (int i = 0; i < kBChunks; ++i)
      if (boff[i] != ~0u)
        tile::cp_async16(base + bdst + i * kBRowStep * kXRow, xq + boff[i] + static_cast<size_t>(kt) * kMoeTcKB * 8);
  };
#pragma unroll
  for (int st = 0; st < kTcStages - 1; ++st) {
    if (st < nk) load_stage(st, st);
    tile::cp_async_commit();
  }

  const int wm = 32 * warp;  // the warp's first weight row in the block
  const bool wact = wm < mrows;
  const uint16_t* bias = a.bias + static_cast<size_t>(e) * M + m0 + wm;

  // The main loop and epilogue for NT computed n8 tiles (NT = ceil(rows / 8), uniform per block):
  // a compile-time count keeps all 2 x NT accumulator chains in one basic block, so the mma of
  // different tiles interleave (a run-time `break` per tile serialised them: 2 chains in flight).
  auto run = [&]<int NT>() {
    float acc[2][NT][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;

    for (int kt = 0; kt < nk; ++kt) {
      tile::cp_async_wait<kTcStages - 2>();
      __syncthreads();  // stage kt (and the scales) visible; stage kt - 1 free for reuse
      {
        const int nx = kt + kTcStages - 1;
        if (nx < nk) load_stage(nx, nx % kTcStages);
        tile::cp_async_commit();
      }
      if (!wact) continue;
      const unsigned char* Ws = smem + (kt % kTcStages) * kStageBytes;
      const unsigned char* Xs = Ws + kMoeTcBM * kMoeTcWRow;
#pragma unroll
      for (int b = 0; b < kMoeTcKB; ++b) {
        const int bg = kt * kMoeTcKB + b;
        if constexpr (kFold) {
          uint32_t ap[2][8];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            const int r = wm + 16 * mt + g;  // rows r and r + 8 have the same (r >> 2) & 1
            const int wo = ((b ^ ((r >> 2) & 1)) << 4) + 4 * t;
            const uint32_t w0 = *reinterpret_cast<const uint32_t*>(Ws + r * kMoeTcWRow + wo);
            const uint32_t w1 = *reinterpret_cast<const uint32_t*>(Ws + (r + 8) * kMoeTcWRow + wo);
            const uint32_t s0 = mxfp4_fold_scale_bf16x2(scs[r * nb + bg]);
            const uint32_t s1 = mxfp4_fold_scale_bf16x2(scs[(r + 8) * nb + bg]);
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              ap[mt][q] = tile::bf16x2_mul(mxfp4_pair_bf16(w0, q), s0);
              ap[mt][4 + q] = tile::bf16x2_mul(mxfp4_pair_bf16(w1, q), s1);
            }
          }
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            const int n = 8 * nt + g;
            const unsigned char* xr = Xs + n * kXRow;
            const uint4 bh = *reinterpret_cast<const uint4*>(xr + (((kXChunk * b + t) ^ ((n & 1) << 2)) << 4));
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
              tile::mma_bf16_m16n8k16(acc[mt][nt], ap[mt][0], ap[mt][4], ap[mt][1], ap[mt][5], bh.x, bh.y);
              tile::mma_bf16_m16n8k16(acc[mt][nt], ap[mt][2], ap[mt][6], ap[mt][3], ap[mt][7], bh.z, bh.w);
            }
          }
        } else {
          uint32_t ap[2][8];
          float sc[2][2];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            const int r = wm + 16 * mt + g;  // rows r and r + 8 have the same (r >> 2) & 1
            const int wo = ((b ^ ((r >> 2) & 1)) << 4) + 4 * t;
            const uint32_t w0 = *reinterpret_cast<const uint32_t*>(Ws + r * kMoeTcWRow + wo);
            const uint32_t w1 = *reinterpret_cast<const uint32_t*>(Ws + (r + 8) * kMoeTcWRow + wo);
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              ap[mt][q] = mxfp4_pair_f16(w0, q);
              ap[mt][4 + q] = mxfp4_pair_f16(w1, q);
            }
            sc[mt][0] = e8m0_to_f32(scs[r * nb + bg]) * 16384.0f;
            sc[mt][1] = e8m0_to_f32(scs[(r + 8) * nb + bg]) * 16384.0f;
          }
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            const int n = 8 * nt + g;
            const unsigned char* xr = Xs + n * kXRow;
            const int sw = (n & 1) << 2;
            const uint4 bh = *reinterpret_cast<const uint4*>(xr + (((kXChunk * b + t) ^ sw) << 4));
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
              float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
              if constexpr (kLo) {
                const uint4 bl = *reinterpret_cast<const uint4*>(xr + (((8 * b + 4 + t) ^ sw) << 4));
                tile::mma_f16_m16n8k16(d, ap[mt][0], ap[mt][4], ap[mt][1], ap[mt][5], bl.x, bl.y);
                tile::mma_f16_m16n8k16(d, ap[mt][2], ap[mt][6], ap[mt][3], ap[mt][7], bl.z, bl.w);
              }
              tile::mma_f16_m16n8k16(d, ap[mt][0], ap[mt][4], ap[mt][1], ap[mt][5], bh.x, bh.y);
              tile::mma_f16_m16n8k16(d, ap[mt][2], ap[mt][6], ap[mt][3], ap[mt][7], bh.z, bh.w);
              acc[mt][nt][0] = fmaf(d[0], sc[mt][0], acc[mt][nt][0]);
              acc[mt][nt][1] = fmaf(d[1], sc[mt][0], acc[mt][nt][1]);
              acc[mt][nt][2] = fmaf(d[2], sc[mt][1], acc[mt][nt][2]);
              acc[mt][nt][3] = fmaf(d[3], sc[mt][1], acc[mt][nt][3]);
            }
          }
        }
      }
    }
    if (!wact) return;

    // acc[mt][nt]: weight rows m0 + wm + 16 mt + g (0, 1) / + 8 (2, 3), grouped rows 8 nt + 2t
    // (0, 2) / + 1 (1, 3).
    if (kMlp1) {
      // gate/up pairs are rows (2i, 2i + 1): the up value comes from lane + 4 (row g + 1). The
      // SwiGLU output goes out as fp16 hi/lo pairs in mlp2's B layout (K = I = M / 2).
      const int I = M / 2;
      uint16_t* outq = a.outq;
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          float up[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) up[i] = gpu_shfl_down(acc[mt][nt][i], 4);
          if (g % 2 != 0) continue;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int mr = 16 * mt + g + 8 * h;
            const float bgate = bf16_bits_to_f32(bias[mr]), bup = bf16_bits_to_f32(bias[mr + 1]);
            const int io = (m0 + wm + mr) / 2;  // SwiGLU output index = mlp2's k
            const int ob = io / 32, oe = io % 32, ot = oe / 8, oq = oe % 4, ohalf = (oe % 8) / 4;
            const size_t opos = static_cast<size_t>(ob) * 64 + ot * 8 + oq * 2 + ohalf;
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int n = 8 * nt + 2 * t + c;
              if (n >= nrows) continue;
              const float v = swiglu(acc[mt][nt][2 * h + c] + bgate, up[2 * h + c] + bup, a.limit);
              uint16_t* o = outq + static_cast<size_t>(s0 + n) * (2 * I) + opos;
              if constexpr (kFold) {
                o[0] = static_cast<uint16_t>(f32_to_bf16_bits(v));
              } else {
                const uint16_t vh = tile::f32_to_f16_bits(v);
                o[0] = vh;
                if constexpr (kLo) o[32] = tile::f32_to_f16_bits(v - tile::half_bits_to_f32(vh));
              }
            }
          }
        }
    } else {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int mr = 16 * mt + g + 8 * h;
            const float bv = bf16_bits_to_f32(bias[mr]);
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int n = 8 * nt + 2 * t + c;
              if (n >= nrows) continue;
              a.out[static_cast<size_t>(a.slot_pair[s0 + n]) * M + m0 + wm + mr] = acc[mt][nt][2 * h + c] + bv;
            }
          }
    }
  };
  switch ((nrows + 7) / 8) {
    case 1: run.template operator()<1>(); break;
    case 2: run.template operator()<2>(); break;
    case 3: run.template operator()<3>(); break;
    case 4: run.template operator()<4>(); break;
    case 5: run.template operator()<5>(); break;
    case 6: run.template operator()<6>(); break;
    case 7: run.template operator()<7>(); break;
    default: run.template operator()<8>(); break;
  }
  tile::cp_async_wait<0>();
}

}  // namespace

void moe_grouped_kernel_fns(std::vector<MoeKernelFn>& out) {
#define GPTOSS_TC(M1, S, B, MODE) \
  out.push_back(moe_kernel_fn("moe_tc_kernel<" #M1 ", " #S ", " #B ", " #MODE ">", moe_tc_kernel<M1, S, B, MODE>))
#define GPTOSS_TC_MODES(M1, S, B) \
  GPTOSS_TC(M1, S, B, 0);         \
  GPTOSS_TC(M1, S, B, 1);         \
  GPTOSS_TC(M1, S, B, 2)
  GPTOSS_TC_MODES(true, 3, 2);
  GPTOSS_TC_MODES(false, 3, 2);
  GPTOSS_TC_MODES(true, 4, 1);
  GPTOSS_TC_MODES(false, 4, 1);
  GPTOSS_TC_MODES(true, 6, 1);
  GPTOSS_TC_MODES(false, 6, 1);
  GPTOSS_TC(true, 4, 2, 1);  // hi-only B (configurations 3, 4): the fast modes only
  GPTOSS_TC(true, 4, 2, 2);
  GPTOSS_TC(false, 4, 2, 1);
  GPTOSS_TC(false, 4, 2, 2);
  GPTOSS_TC(true, 5, 2, 1);
  GPTOSS_TC(true, 5, 2, 2);
  GPTOSS_TC(false, 5, 2, 1);
  GPTOSS_TC(false, 5, 2, 2);
#undef GPTOSS_TC_MODES
#undef GPTOSS_TC
}

void moe_launch_stage_x(const MoePlan& p, const float* x, int rows, int H, uint32_t* xq,
                        gpuStream_t stream) {
  const KernelLaunch& l = p.stage_x_k;
  moe_stage_x_kernel<<<moe_grid(l), l.threads, l.dyn_smem_bytes, stream>>>(x, rows, H, xq,
                                                                          static_cast<int>(p.tc_mode));
  GPU_CHECK_LAUNCH();
}

void moe_launch_grouped(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream) {
  const KernelLaunch& l = p.mlp_k[m];
  const dim3 g = moe_grid(l);
  auto go = [&]<bool kMlp1, int kMode>() {
    if constexpr (kMode != static_cast<int>(MoeTcMode::exact)) {  // configurations 3, 4
      if (p.tc_min_blocks == 2 && p.tc_stages == 4) {
        moe_tc_kernel<kMlp1, 4, 2, kMode><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
        return;
      }
      if (p.tc_min_blocks == 2 && p.tc_stages == 5) {
        moe_tc_kernel<kMlp1, 5, 2, kMode><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
        return;
      }
    }
    if (p.tc_stages == 4)
      moe_tc_kernel<kMlp1, 4, 1, kMode><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
    else if (p.tc_stages == 6)
      moe_tc_kernel<kMlp1, 6, 1, kMode><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
    else
      moe_tc_kernel<kMlp1, 3, 2, kMode><<<g, l.threads, l.dyn_smem_bytes, stream>>>(a);
  };
  auto by_mode = [&]<bool kMlp1>() {
    switch (p.tc_mode) {
      case MoeTcMode::exact: go.template operator()<kMlp1, 0>(); break;
      case MoeTcMode::fast_f16: go.template operator()<kMlp1, 1>(); break;
      case MoeTcMode::fast_bf16: go.template operator()<kMlp1, 2>(); break;
      case MoeTcMode::fast_wgmma: fail("moe: fast_wgmma runs on moe_ws_kernel (moe_launch_ws)"); break;
    }
  };
  if (m == 0)
    by_mode.template operator()<true>();
  else
    by_mode.template operator()<false>();
  GPU_CHECK_LAUNCH();
}

#else  // HIP

void moe_grouped_kernel_fns(std::vector<MoeKernelFn>&) {}
void moe_launch_stage_x(const MoePlan&, const float*, int, int, uint32_t*, gpuStream_t) {
  fail("moe: the grouped GEMM is NVIDIA only");
}
void moe_launch_grouped(const MoePlan&, int, const MoeExpertArgs&, gpuStream_t) {
  fail("moe: the grouped GEMM is NVIDIA only");
}

#endif
}  // namespace gptoss::gpu
