// kernels/gpu/moe_ws_gemm.cu: the grouped MoE GEMM on Hopper's wgmma (sm_90a; MoeOptions::wgmma),
// warp-specialised. The folded-scale arithmetic of moe_tc_kernel (moe_grouped_gemm.cu, mode
// fast_bf16: bf16 weights with each MXFP4 block's E8M0 scale folded in, x as bf16, fp32 sums, K in
// a fixed order), with the weights decoded per lane into wgmma's A registers and x in shared
// memory as B, in the structure public Hopper MXFP4 MoE kernels use (docs/performance.md,
// 2026-12-07):
//   - 384 threads: warpgroup 0 only copies (the producer), warpgroups 1 and 2 only compute (the
//     consumers), so copies are issued continuously instead of between a block-wide barrier and
//     the math of every stage;
//   - a ring of kMoeWsStages stages with an mbarrier pair per slot: `full` completes when the 128
//     producer threads have seen their cp.async copies of the stage land (each keeps
//     kMoeWsStages - 2 stages in flight, then waits for the oldest, fences it into the async
//     proxy for the wgmmas and arrives), `empty` when the 8 consumer warps have retired the
//     wgmmas that read it;
//   - a block tile of kMoeTcBM (256) weight rows x kMoeWsBN (128) grouped rows (tiles of the tile
//     list built with kMoeWsBN rows);
//   - registers moved from the producer (56) to the consumers (224) with setmaxnreg: a consumer
//     holds 2 x 64 fp32 accumulators (two m64 halves x N <= 128) and two MXFP4 blocks of A.
// Consumer warpgroup c owns weight rows 128 c .. 128 c + 127 as two m64 halves; warp wi of it rows
// 64 h + 16 wi + {g, g + 8} of half h (wgmma.h's A layout). Per MXFP4 block b of a stage each lane
// decodes its A words for both halves and both k16 steps, the warpgroup issues the 4 wgmmas
// m64 x N x k16 (N = 16 ceil(rows / 16)) and commits them as one group; before decoding the next
// block into the same registers it waits for the group two blocks back, so a block's decode runs
// while the previous block's wgmmas multiply. A stage's slot is released once both its groups are
// done (during the next stage). The wgmmas are issued whatever the rows (a branch around them
// made ptxas serialise every wgmma of an earlier kernel): warps without rows feed zeros.
// x (B) per row and MXFP4 block b: 64 bytes, 16-byte chunk q = the words q of lanes t = 0..3 =
// bf16 pairs (8t + q, 8t + q + 4), the logical k 0..7 of the A fragments' pairs q (the A decode
// produces element pairs (q, q + 4)); moe_stage_x_kernel writes it in mode fast_wgmma, mlp1's
// epilogue for mlp2, in blocks of 128 bytes per row (the other 64 unused: the exact mode's lo
// halves in the shared layout).
// Shared memory per stage (kMoeWsStageBytes, 1024-byte aligned): the weights, kMoeTcBM rows x 2
// MXFP4 blocks of 16 bytes (block slot b of row r at b ^ ((r >> 2) & 1), as moe_tc_kernel), then
// x, kMoeWsBN rows of 128 bytes in the 128-byte swizzle (wgmma.h smem_desc_sw128: chunk j = 4 b + q
// of row n at slot j ^ (n % 8); k16 step s of block b's descriptor starts at 64 b + 32 s); after
// the ring the E8M0 scales of the block's rows, copied once (with stage 0).
// Results: a row's outputs depend on that row only (the columns of a wgmma are independent and
// the K order is fixed), whatever the other rows of the step; on an H100 (2026-12-08) they equal
// moe_tc_kernel's fast_bf16 bits.
#include "gpu/moe_kernels.h"
#include "gpu/tile.h"

namespace gptoss::gpu {
#if !defined(GPTOSS_HIP)
namespace {

constexpr int kProducerRegs = 56, kConsumerRegs = 224;
static_assert(128 * kProducerRegs + 256 * kConsumerRegs <= 65536, "one block per SM");
static_assert(kMoeWsThreads == 384 && kMoeTcBM == 256 && kMoeTcKB == 2, "warpgroup roles");
static_assert(kMoeWsStageBytes % 1024 == 0 && (kMoeTcBM * kMoeTcWRow) % 1024 == 0, "swizzle alignment");

// kProbe: 0 in every launch the engine makes. Nonzero only for timing probes (MoeOptions::ws_probe,
// bench-moe --ws-probe; results meaningless): 1 the consumers skip the MXFP4 decode (raw words
// into the wgmmas), 2 they issue no wgmma (the decode is kept alive by a sink), 3 they only wait
// for each stage and release it (the producer's stream alone), 4 no epilogue stores, 5 the
// producer copies nothing (each stage is published at once: the consumers' decode and wgmmas
// alone), 6 and 7 as 3 with only x (6) or only the weights (7) copied. Probes compute every tile
// at N = 128 (see the dispatch at the end).
template <bool kMlp1, int kProbe = 0>
__global__ __launch_bounds__(kMoeWsThreads, 1) void moe_ws_kernel(MoeExpertArgs a) {
#if defined(GPTOSS_WGMMA_DEVICE)
  constexpr bool kIdle = kProbe == 3 || kProbe == 6 || kProbe == 7;  // consumers only release stages
  constexpr bool kDecode = kProbe != 1 && !kIdle, kMma = kProbe != 2 && !kIdle;
  constexpr bool kStores = kProbe != 4, kCopyW = kProbe != 5 && kProbe != 6, kCopyX = kProbe != 5 && kProbe != 7;
  constexpr int S = kMoeWsStages;
  constexpr int kXOff = kMoeTcBM * kMoeTcWRow;  // x's offset in a stage
  extern __shared__ uint4 ws_smem4[];
  constexpr int kAhead = S - 2;  // stages a producer thread keeps in flight before publishing one
  __shared__ uint64_t bars[2 * S];  // full[S], empty[S]
  unsigned char* smem = reinterpret_cast<unsigned char*>(ws_smem4);
  smem += (1024u - (wg::smem_addr(smem) & 1023u)) & 1023u;
  const int tile = blockIdx.x;
  if (tile >= a.meta[1]) return;  // uniform per block
  const int tid = threadIdx.x, wgi = tid / 128;
  const int e = a.tile_expert[tile], s0 = a.tile_slot0[tile];
  const int nrows = min(kMoeWsBN, a.offsets[e + 1] - s0);
  const int K = a.K, M = a.M, nb = K / 32, nk = nb / kMoeTcKB;
  const int m0 = blockIdx.y * kMoeTcBM;
  const int mrows = min(kMoeTcBM, M - m0);  // a multiple of 32 (moe_plan's shape check)
  unsigned char* scs = smem + S * kMoeWsStageBytes;  // [mrows][nb] E8M0 bytes
  uint64_t* full = bars;
  uint64_t* empty = bars + S;
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      wg::mbar_init(full + s, 128);
      wg::mbar_init(empty + s, 8);
    }
    wg::fence_mbarrier_init();
  }
  __syncthreads();

  if (wgi == 0) {
    // ---- producer: thread p copies weight rows p / 2 + 64 i (block slot p % 2) and x row p.
    wg::setmaxnreg_dec<kProducerRegs>();
    const int p = tid;
    // The scales join stage 0's copies (byte stores when unaligned: released by the same arrive).
    const uint8_t* ssrc = a.scales + (static_cast<size_t>(e) * M + m0) * nb;
    const int sbytes = kCopyW ? mrows * nb : 0;
    if ((reinterpret_cast<uintptr_t>(ssrc) & 15u) == 0 && sbytes % 16 == 0) {
      for (int i = p; i < sbytes / 16; i += 128) tile::cp_async16(scs + 16 * i, ssrc + 16 * i);
    } else {  // uniform per block
      for (int i = p; i < sbytes; i += 128) scs[i] = ssrc[i];
    }
    const int ar = p / 2, ab = p % 2;
    const unsigned char* asrc = a.blocks + ((static_cast<size_t>(e) * M + m0 + ar) * nb + ab) * 16;
    const size_t astep = static_cast<size_t>(64) * nb * 16;  // 64 rows further
    const int adst = ar * kMoeTcWRow + ((ab ^ ((ar >> 2) & 1)) << 4);
    const unsigned char* xsrc = nullptr;  // the row's staged x (nb blocks of 128 bytes), or none
    if (p < nrows) {
      const int gs = s0 + p;
      const int src_row = kMlp1 ? a.slot_pair[gs] / a.top_k : gs;
      xsrc = reinterpret_cast<const unsigned char*>(a.xq) + static_cast<size_t>(src_row) * nb * 128;
    }
    const int xdst = kXOff + 128 * p, xsw = p & 7;
    for (int kt = 0; kt < nk; ++kt) {
      const int s = kt % S;
      if (kt >= S) wg::mbar_wait(empty + s, ((kt / S) - 1) & 1);
      unsigned char* base = smem + s * kMoeWsStageBytes;
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (kCopyW && ar + 64 * i < mrows)
          tile::cp_async16(base + adst + i * 64 * kMoeTcWRow, asrc + i * astep + static_cast<size_t>(kt) * kMoeTcKB * 16);
      if (kCopyX && xsrc != nullptr) {
        const unsigned char* src = xsrc + static_cast<size_t>(kt) * kMoeTcKB * 128;
#pragma unroll
        for (int j = 0; j < 8; ++j)  // chunk q = j % 4 of block b = j / 4: the block's 64 used bytes
          tile::cp_async16(base + xdst + ((j ^ xsw) << 4), src + 128 * (j / 4) + 16 * (j % 4));
      }
      tile::cp_async_commit();
      if (kt >= kAhead) {  // stage kt - kAhead landed: make it visible to the wgmmas, then publish
        tile::cp_async_wait<kAhead>();
        wg::fence_proxy_async();
        wg::mbar_arrive(full + (kt - kAhead) % S);
      }
    }
    tile::cp_async_wait<0>();
    wg::fence_proxy_async();
    for (int kt = nk > kAhead ? nk - kAhead : 0; kt < nk; ++kt) wg::mbar_arrive(full + kt % S);
    return;
  }

  // ---- consumers
  wg::setmaxnreg_inc<kConsumerRegs>();
  const int c = wgi - 1, ct = tid - 128;
  const int warp = ct / kWaveSize, lane = ct % kWaveSize, wi = warp % 4;
  const int g = lane / 4, t = lane % 4;
  // Whether this warp's 16 rows of each half exist (a warp without rows feeds zeros to the wgmmas
  // and writes nothing).
  bool rows_on[2];
  uint32_t amask[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    rows_on[h] = 128 * c + 64 * h + 16 * wi < mrows;
    amask[h] = rows_on[h] ? ~0u : 0u;
  }
  const uint16_t* bias = a.bias + static_cast<size_t>(e) * M + m0;

  auto run = [&]<int NT>() {  // N = 8 NT columns
    constexpr int ND = 4 * NT;
    float acc[2][ND];  // set by the first k16 step (accumulate 0)
    if constexpr (!kMma)
#pragma unroll
      for (int i = 0; i < ND; ++i) acc[0][i] = acc[1][i] = 0.0f;
    [[maybe_unused]] uint32_t af[kMoeTcKB][2][2][4];  // [block of the stage][half][k16 step][A register]
    [[maybe_unused]] uint32_t sink = 0;  // probe 2: the decoded words, so the decode stays
    for (int kt = 0; kt < nk; ++kt) {
      const int s = kt % S;
      wg::mbar_wait(full + s, (kt / S) & 1);  // stage kt (and with stage 0 the scales) landed
      __syncwarp();  // the warp converged again before the .aligned wgmma instructions
      const unsigned char* Ws = smem + s * kMoeWsStageBytes;
      [[maybe_unused]] const unsigned char* Xs = Ws + kXOff;
#pragma unroll
      for (int b = 0; b < kMoeTcKB; ++b) {
        [[maybe_unused]] const int bg = kt * kMoeTcKB + b;
        if constexpr (kIdle) {  // the stream alone: release the stage, nothing else
          if (b == 0 && kt > 0) {
            __syncwarp();
            if (lane == 0) wg::mbar_arrive(empty + (kt - 1) % S);
          }
        } else {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = 128 * c + 64 * h + 16 * wi + g;  // rows r, r + 8: same (r >> 2) & 1
            const int wo = ((b ^ ((r >> 2) & 1)) << 4) + 4 * t;
            const uint32_t w0 = *reinterpret_cast<const uint32_t*>(Ws + r * kMoeTcWRow + wo) & amask[h];
            const uint32_t w1 = *reinterpret_cast<const uint32_t*>(Ws + (r + 8) * kMoeTcWRow + wo) & amask[h];
            if constexpr (!kDecode) {  // probe 1: the raw words
#pragma unroll
              for (int st = 0; st < 2; ++st) {
                af[b][h][st][0] = af[b][h][st][2] = w0;
                af[b][h][st][1] = af[b][h][st][3] = w1;
              }
            } else {
              const uint32_t f0 = mxfp4_fold_scale_bf16x2(scs[r * nb + bg]) & amask[h];
              const uint32_t f1 = mxfp4_fold_scale_bf16x2(scs[(r + 8) * nb + bg]) & amask[h];
#pragma unroll
              for (int st = 0; st < 2; ++st) {
                af[b][h][st][0] = tile::bf16x2_mul(mxfp4_pair_bf16(w0, 2 * st), f0);
                af[b][h][st][1] = tile::bf16x2_mul(mxfp4_pair_bf16(w1, 2 * st), f1);
                af[b][h][st][2] = tile::bf16x2_mul(mxfp4_pair_bf16(w0, 2 * st + 1), f0);
                af[b][h][st][3] = tile::bf16x2_mul(mxfp4_pair_bf16(w1, 2 * st + 1), f1);
              }
            }
          }
          if constexpr (!kMma) {  // probe 2: keep the decode, release the stage as the wgmmas would
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
              for (int st = 0; st < 2; ++st)
#pragma unroll
                for (int i = 0; i < 4; ++i) sink ^= af[b][h][st][i];
            if (b == 0 && kt > 0) {
              __syncwarp();
              if (lane == 0) wg::mbar_arrive(empty + (kt - 1) % S);
            }
          } else {
            wg::wgmma_fence();
#pragma unroll
            for (int st = 0; st < 2; ++st) {
              const uint64_t desc = wg::smem_desc_sw128(Xs + 64 * b + 32 * st);  // chunks 4b + 2st, + 1
#pragma unroll
              for (int h = 0; h < 2; ++h) wg::wgmma_bf16_rs<8 * NT>(acc[h], af[b][h][st], desc, bg > 0 || st > 0);
            }
            wg::wgmma_commit();
            // The group of block bg - 1 done: its A registers (af[b ^ 1]) may take the next block
            // while this block's wgmmas run. At b = 0 that was stage kt - 1's last group: release it.
            wg::wgmma_wait<1>();
            if (b == 0 && kt > 0) {
              __syncwarp();
              if (lane == 0) wg::mbar_arrive(empty + (kt - 1) % S);
            }
          }
        }
      }
    }
    if constexpr (kMma) {
      wg::wgmma_wait<0>();
      wg::wgmma_fence_acc<ND>(acc[0]);
      wg::wgmma_fence_acc<ND>(acc[1]);
    }
    if constexpr (!kMma) acc[0][0] += sink == 0x9e3779b9u ? 1.0f : 0.0f;  // (probe 2's sink)

    // acc[h][4 nt + i]: weight rows m0 + rb + g (i = 0, 1) / + 8 (2, 3), grouped rows 8 nt + 2t
    // (0, 2) / + 1 (1, 3); rb = 128 c + 64 h + 16 wi.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (!rows_on[h] || !kStores) continue;  // (probe 4: no stores)
      const int rb = 128 * c + 64 * h + 16 * wi;
      if (kMlp1) {
        // gate/up pairs are rows (2i, 2i + 1): the up value comes from lane + 4 (row g + 1). The
        // SwiGLU output goes out as bf16 in mlp2's B layout (K = I = M / 2; words in (q, t) order).
        const int I = M / 2;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          float up[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) up[i] = gpu_shfl_down(acc[h][4 * nt + i], 4);
          if (g % 2 != 0) continue;
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const int mr = rb + g + 8 * hh;
            const float bgate = bf16_bits_to_f32(bias[mr]), bup = bf16_bits_to_f32(bias[mr + 1]);
            const int io = (m0 + mr) / 2;  // SwiGLU output index = mlp2's k
            const int ob = io / 32, oe = io % 32, ot = oe / 8, oq = oe % 4, ohalf = (oe % 8) / 4;
            const size_t opos = static_cast<size_t>(ob) * 64 + oq * 8 + ot * 2 + ohalf;
#pragma unroll
            for (int cc = 0; cc < 2; ++cc) {
              const int n = 8 * nt + 2 * t + cc;
              if (n >= nrows) continue;
              const float v = swiglu(acc[h][4 * nt + 2 * hh + cc] + bgate, up[2 * hh + cc] + bup, a.limit);
              a.outq[static_cast<size_t>(s0 + n) * (2 * I) + opos] = static_cast<uint16_t>(f32_to_bf16_bits(v));
            }
          }
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            const int mr = rb + g + 8 * hh;
            const float bv = bf16_bits_to_f32(bias[mr]);
#pragma unroll
            for (int cc = 0; cc < 2; ++cc) {
              const int n = 8 * nt + 2 * t + cc;
              if (n >= nrows) continue;
              a.out[static_cast<size_t>(a.slot_pair[s0 + n]) * M + m0 + mr] = acc[h][4 * nt + 2 * hh + cc] + bv;
            }
          }
      }
    }
  };
  // The probes run every tile at N = 128 (one instantiation each instead of eight: CI's compile
  // time); at 4096 rows nearly every tile is full, which is where they are read.
  switch (kProbe != 0 ? 8 : (nrows + 15) / 16) {
    case 1: run.template operator()<2>(); break;
    case 2: run.template operator()<4>(); break;
    case 3: run.template operator()<6>(); break;
    case 4: run.template operator()<8>(); break;
    case 5: run.template operator()<10>(); break;
    case 6: run.template operator()<12>(); break;
    case 7: run.template operator()<14>(); break;
    default: run.template operator()<16>(); break;
  }
#else
  (void)a;
  __trap();  // never launched: moe_scratch_create refuses MoeOptions::wgmma without GPTOSS_WGMMA
#endif
}

template <int P>
void ws_fns(std::vector<MoeKernelFn>& out) {
  out.push_back(moe_kernel_fn(moe_ws_kernel_name(true, P), moe_ws_kernel<true, P>));
  out.push_back(moe_kernel_fn(moe_ws_kernel_name(false, P), moe_ws_kernel<false, P>));
}
template <int P>
void ws_launch(const KernelLaunch& l, int m, const MoeExpertArgs& a, gpuStream_t stream) {
  if (m == 0)
    moe_ws_kernel<true, P><<<moe_grid(l), l.threads, l.dyn_smem_bytes, stream>>>(a);
  else
    moe_ws_kernel<false, P><<<moe_grid(l), l.threads, l.dyn_smem_bytes, stream>>>(a);
}

}  // namespace

void moe_ws_kernel_fns(std::vector<MoeKernelFn>& out) {
  ws_fns<0>(out), ws_fns<1>(out), ws_fns<2>(out), ws_fns<3>(out), ws_fns<4>(out), ws_fns<5>(out);
  ws_fns<6>(out), ws_fns<7>(out);
}

void moe_launch_ws(const MoePlan& p, int m, const MoeExpertArgs& a, gpuStream_t stream) {
  const KernelLaunch& l = p.mlp_k[m];
  switch (p.ws_probe) {
    case 0: ws_launch<0>(l, m, a, stream); break;
    case 1: ws_launch<1>(l, m, a, stream); break;
    case 2: ws_launch<2>(l, m, a, stream); break;
    case 3: ws_launch<3>(l, m, a, stream); break;
    case 4: ws_launch<4>(l, m, a, stream); break;
    case 5: ws_launch<5>(l, m, a, stream); break;
    case 6: ws_launch<6>(l, m, a, stream); break;
    default: ws_launch<7>(l, m, a, stream); break;
  }
  GPU_CHECK_LAUNCH();
}

#else  // HIP

void moe_ws_kernel_fns(std::vector<MoeKernelFn>&) {}
void moe_launch_ws(const MoePlan&, int, const MoeExpertArgs&, gpuStream_t) {
  fail("moe: the warp-specialised grouped GEMM is NVIDIA (sm_90a) only");
}

#endif
}  // namespace gptoss::gpu
