// moe_tile.h: the per-architecture pieces the MoE kernels need beyond kernels/gpu/tile.h (whose
// tile32 wave tile, mma.sync bf16 on NVIDIA / MFMA on gfx90a, the tensor-core path uses):
//   half_bits_to_f32: fp16 bits -> fp32 (exact, subnormals kept), used by the MXFP4 GEMV decode;
//   (NVIDIA) mma_f16_m16n8k16 and f32_to_f16_bits for the tensor-core MoE GEMV and grouped GEMM,
//   cp_async16 / cp_async_commit / cp_async_wait for the grouped GEMM's shared-memory pipeline.
// Device code only; include from .cu sources after vendor.h.
#pragma once
#include <cstdint>

#include "vendor.h"

namespace gptoss::gpu::tile {

#if defined(GPTOSS_HIP)
__device__ inline float half_bits_to_f32(uint16_t h) {
  return static_cast<float>(__builtin_bit_cast(_Float16, h));
}
#else  // CUDA, sm_80+
__device__ inline float half_bits_to_f32(uint16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
// The tensor-core MoE GEMV's pieces (NVIDIA only; HIP uses the scalar GEMV):
//   mma_f16_m16n8k16: d += A (16 x 16 fp16, row) * B (16 x 8 fp16, col), fp32 accumulators, the
//     fragment layout of tile.h's bf16 mma (a0..a3: rows g / g + 8, k 2t.. / 2t + 8..).
//   f32_to_f16_bits: round to nearest even.
__device__ __forceinline__ void mma_f16_m16n8k16(float (&d)[4], uint32_t a0, uint32_t a1,
                                                 uint32_t a2, uint32_t a3, uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) {
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
// Asynchronous global -> shared copies (sm_80+) for the MoE grouped GEMM's multi-stage pipeline:
//   cp_async16: 16 bytes, both addresses 16-byte aligned, bypassing L1 (.cg);
//   cp_async_commit: closes the group of copies issued so far by this thread;
//   cp_async_wait<N>: waits until at most N of this thread's groups are still in flight.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

}  // namespace gptoss::gpu::tile
