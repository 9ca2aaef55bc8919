// kernels/gpu/tile.h: the per-architecture matrix pieces behind one interface (namespace tile).
// Everything else in the GEMMs (tiling, staging, epilogues) is architecture-neutral.
//
// Wave tile (both targets): a wave computes a 32 x 32 fp32 tile C[i][j] += sum_k A[i][k] B[j][k]
// from bf16 operands in shared memory, both K-contiguous (A = activations [rows][K], B = weights
// [outputs][K]): Acc, zero, mma_k16, for_each.
//   NVIDIA (sm_80+): mma.sync.m16n8k16 bf16 (2 x 4 instructions per 16-wide K step).
//   AMD gfx90a:      __builtin_amdgcn_mfma_f32_32x32x8bf16_1k (2 per 16-wide K step).
// Scalars: half_bits_to_f32 (fp16 bits -> fp32, exact, subnormals kept; both targets).
// NVIDIA only (the MoE tensor-core GEMV and grouped GEMM; HIP takes other paths):
//   mma_f16_m16n8k16 / mma_bf16_m16n8k16 (one m16n8k16 mma on register fragments), bf16x2_mul,
//   f32_to_f16_bits,
//   cp_async16 / cp_async16_zfill / cp_async16_policy / cp_async_commit / cp_async_wait (sm_80+ asynchronous
//   global -> shared copies), ldmatrix_x4 (the fast bf16 GEMM's fragments).
// Hopper section (NVIDIA sm_90a only): warpgroup MMA (wgmma.mma_async) in namespace wg, defined in
//   wgmma.h and included at the end of this header: wg::smem_desc / smem_desc_sw128,
//   wgmma_fence / wgmma_commit / wgmma_wait / wgmma_fence_acc, fence_proxy_async and the
//   m64nNk16 bf16 MMAs (the dense wgmma GEMM and the MoE wgmma kernel). Defined only where the
//   device pass has the sm_90a features (GPTOSS_WGMMA_DEVICE is then 1); elsewhere nothing of it
//   exists. wgmma.h is this header's Hopper part, not a second interface: kernels include tile.h.
// Device code only; include from .cu sources.
#pragma once
#include <cstdint>

#include "gpu/vendor.h"

namespace gptoss::gpu::tile {

inline constexpr int kWaveTileM = 32;                        // rows of C per wave
inline constexpr int kWaveTileN = 32;                        // columns of C per wave
inline constexpr int kAccPerLane = 32 * 32 / kWaveSize;     // fp32 accumulators per lane

struct Acc {
  float v[kAccPerLane];
};

__device__ __forceinline__ void zero(Acc& c) {
#pragma unroll
  for (int r = 0; r < kAccPerLane; ++r) c.v[r] = 0.0f;
}

#if defined(GPTOSS_HIP)
typedef short bf16x4_t __attribute__((ext_vector_type(4)));
typedef float f32x16_t __attribute__((ext_vector_type(16)));

// acc += A[0:32][k0:k0+16] * B[0:32][k0:k0+16]^T; A, B: bf16 bits, leading dims in elements
// (multiples of 4).
__device__ __forceinline__ void mma_k16(Acc& c, const uint16_t* a, int lda, const uint16_t* b,
                                        int ldb, int k0) {
  const int lane = threadIdx.x % kWaveSize;
  f32x16_t acc;
#pragma unroll
  for (int r = 0; r < 16; ++r) acc[r] = c.v[r];
#pragma unroll
  for (int kk = 0; kk < 16; kk += 8) {
    // lane: row/col = lane % 32, k = kk + 4 * (lane / 32) + 0..3
    const int k = k0 + kk + 4 * (lane / 32);
    bf16x4_t av = *reinterpret_cast<const bf16x4_t*>(a + (lane % 32) * lda + k);
    bf16x4_t bv = *reinterpret_cast<const bf16x4_t*>(b + (lane % 32) * ldb + k);
    acc = __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(av, bv, acc, 0, 0, 0);
  }
#pragma unroll
  for (int r = 0; r < 16; ++r) c.v[r] = acc[r];
}

// f(i, j, value) for every accumulator of this lane.
template <class F>
__device__ __forceinline__ void for_each(const Acc& c, F&& f) {
  const int lane = threadIdx.x % kWaveSize;
#pragma unroll
  for (int r = 0; r < 16; ++r) f(8 * (r / 4) + 4 * (lane / 32) + (r % 4), lane % 32, c.v[r]);
}

__device__ inline float half_bits_to_f32(uint16_t h) {
  return static_cast<float>(__builtin_bit_cast(_Float16, h));
}

#else  // NVIDIA

__device__ __forceinline__ void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Accumulator r of a lane: m-tile mt = r / 16, n-tile nt = (r / 4) % 4, element e = r % 4:
// i = 16 mt + g + 8 (e / 2), j = 8 nt + 2 t + (e % 2), g = lane / 4, t = lane % 4.
__device__ __forceinline__ void mma_k16(Acc& c, const uint16_t* a, int lda, const uint16_t* b,
                                        int ldb, int k0) {
  const int lane = threadIdx.x % kWaveSize;
  const int g = lane / 4, t = lane % 4;
  uint32_t af[2][4], bfr[4][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    const uint16_t* p = a + (16 * mt + g) * lda + k0 + 2 * t;
    af[mt][0] = *reinterpret_cast<const uint32_t*>(p);
    af[mt][1] = *reinterpret_cast<const uint32_t*>(p + 8 * lda);
    af[mt][2] = *reinterpret_cast<const uint32_t*>(p + 8);
    af[mt][3] = *reinterpret_cast<const uint32_t*>(p + 8 * lda + 8);
  }
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {
    const uint16_t* p = b + (8 * nt + g) * ldb + k0 + 2 * t;
    bfr[nt][0] = *reinterpret_cast<const uint32_t*>(p);
    bfr[nt][1] = *reinterpret_cast<const uint32_t*>(p + 8);
  }
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) mma_m16n8k16(&c.v[(mt * 4 + nt) * 4], af[mt], bfr[nt]);
}

template <class F>
__device__ __forceinline__ void for_each(const Acc& c, F&& f) {
  const int lane = threadIdx.x % kWaveSize;
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int r = 0; r < 32; ++r) {
    const int mt = r / 16, nt = (r / 4) % 4, e = r % 4;
    f(16 * mt + g + 8 * (e / 2), 8 * nt + 2 * t + (e % 2), c.v[r]);
  }
}

__device__ inline float half_bits_to_f32(uint16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

// d += A (16 x 16 fp16, row) * B (16 x 8 fp16, col), fp32 accumulators, the fragment layout of
// the bf16 mma above (a0..a3: rows g / g + 8, k 2t.. / 2t + 8..).
__device__ __forceinline__ void mma_f16_m16n8k16(float (&d)[4], uint32_t a0, uint32_t a1,
                                                 uint32_t a2, uint32_t a3, uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// The same with bf16 operands (a0..a3, b0, b1 bf16 pairs in the layout above).
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], uint32_t a0, uint32_t a1,
                                                  uint32_t a2, uint32_t a3, uint32_t b0,
                                                  uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// bf16x2 a * b, round to nearest (fma with -0: exact products stay exact, +0 stays +0;
// subnormal operands and results are kept).
__device__ __forceinline__ uint32_t bf16x2_mul(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
  return d;
}
// fp32 -> fp16 bits, round to nearest even.
__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) {
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
// Asynchronous global -> shared copies (sm_80+):
//   cp_async16: 16 bytes, both addresses 16-byte aligned, bypassing L1 (.cg);
//   cp_async_commit: closes the group of copies issued so far by this thread;
//   cp_async_wait<N>: waits until at most N of this thread's groups are still in flight.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
// cp_async16 with an L2 cache policy (createpolicy; e.g. l2_policy_evict_first for data read once).
__device__ __forceinline__ void cp_async16_policy(void* smem, const void* gmem, uint64_t policy) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "l"(policy)
               : "memory");
}
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// cp_async16 that writes 16 zero bytes instead when !valid (gmem is then not read; it must still
// be a valid address expression).
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n)
               : "memory");
}
// ldmatrix.x4: four 8 x 8 b16 matrices from shared memory; lane l gives the address of row
// l % 8 of matrix l / 8 (16 bytes, 16-byte aligned); r[i] = this lane's pair of matrix i
// (row lane / 4, columns 2 (lane % 4), + 1): the mma.sync fragment layout.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
// The same, transposed: r[i] = this lane's pair (rows 2 (lane % 4), + 1; column lane / 4) of
// matrix i (a row-major [k][n] tile read as the col-major B fragment).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
#endif

}  // namespace gptoss::gpu::tile

// The Hopper section (namespace wg; empty outside an sm_90a device pass).
#include "gpu/wgmma.h"
