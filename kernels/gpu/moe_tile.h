// moe_tile.h: the per-architecture pieces the MoE kernels need beyond kernels/gpu/tile.h (whose
// tile32 wave tile, mma.sync bf16 on NVIDIA / MFMA on gfx90a, the tensor-core path uses):
//   half_bits_to_f32: fp16 bits -> fp32 (exact, subnormals kept), used by the MXFP4 GEMV decode.
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
#endif

}  // namespace gptoss::gpu::tile
