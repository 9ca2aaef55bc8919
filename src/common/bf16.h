// bf16.h: bfloat16 <-> fp32 conversions (round to nearest even, NaN kept quiet).
#pragma once
#include <cstdint>
#include <cstring>

namespace gptoss {

using bf16_t = uint16_t;  // raw bfloat16 bits

inline float bf16_to_f32(bf16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<bf16_t>(u >> 16);
}

}  // namespace gptoss
