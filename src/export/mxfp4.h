// mxfp4.h: MXFP4 (OCP microscaling FP4, E2M1 codes with an E8M0 block scale) decode and exact
// re-packing of fp32 values. A 32-element block = 16 bytes (element 2b in the low nibble of byte
// b, 2b+1 in the high nibble) + one scale byte s; value = LUT[code] * 2^(s - 127).
#pragma once
#include <cmath>
#include <cstdint>

namespace gptoss {

inline constexpr float kMxfp4Lut[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                        -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

// Decodes one block: blocks16 [16], scale -> out [32].
inline void mxfp4_decode_block(const uint8_t* blocks16, uint8_t scale, float* out) {
  const float mul = std::ldexp(1.0f, static_cast<int>(scale) - 127);
  for (int b = 0; b < 16; b++) {
    out[2 * b] = kMxfp4Lut[blocks16[b] & 15] * mul;
    out[2 * b + 1] = kMxfp4Lut[blocks16[b] >> 4] * mul;
  }
}

// Packs 32 values exactly. The scale is canonical: the smallest s with max|v| <= 6 * 2^(s-127)
// (if any scale represents the block exactly, this one does). An all-zero block gets s = 127.
// Returns -1 on success, else the index of the first value that is not exactly representable.
inline int mxfp4_pack_block(const float* v, uint8_t* blocks16, uint8_t* scale) {
  float max_abs = 0;
  for (int i = 0; i < 32; i++) {
    if (!std::isfinite(v[i])) return i;
    max_abs = std::fmax(max_abs, std::fabs(v[i]));
  }
  int s = 127;
  if (max_abs > 0) {
    int e;
    std::frexp(max_abs / 6.0f, &e);  // max_abs/6 = m * 2^e, m in [0.5, 1)
    s = e + 127;                     // 2^e >= max_abs/6
    if (s >= 1 && std::ldexp(6.0f, s - 1 - 127) >= max_abs) s -= 1;  // smallest such s
    if (s < 0) s = 0;
    if (s > 254) return 0;
  }
  const float inv = std::ldexp(1.0f, 127 - s);
  for (int i = 0; i < 16; i++) blocks16[i] = 0;
  for (int i = 0; i < 32; i++) {
    const float q = v[i] * inv;  // exact: power-of-two scaling (may be inexact if subnormal)
    int code = -1;
    for (int c = 0; c < 16; c++)
      if (kMxfp4Lut[c] == q && std::signbit(kMxfp4Lut[c]) == std::signbit(q)) {
        code = c;
        break;
      }
    if (code < 0 || kMxfp4Lut[code] * std::ldexp(1.0f, s - 127) != v[i]) return i;
    blocks16[i / 2] |= static_cast<uint8_t>(code << ((i & 1) * 4));
  }
  *scale = static_cast<uint8_t>(s);
  return -1;
}

}  // namespace gptoss
