// moe_testutil.h: random MoE weights (host + device copies) and device buffers for the GPU MoE
// test and benchmark (tests/gpu/moe_test.cpp, tests/gpu/moe_bench.cpp). Host code only.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/bf16.h"
#include "cpu/ops.h"
#include "gpu/moe.h"
#include "gpu/vendor.h"

namespace gptoss::moetest {

// xorshift64*: fast, reproducible.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
  float sym() { return 2.0f * uniform() - 1.0f; }                                       // [-1, 1)
  float normal() {
    float u1 = std::max(uniform(), 1e-7f), u2 = uniform();
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
  }
  void bytes(uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t v = next();
      std::memcpy(p + i, &v, 8);
    }
    for (; i < n; ++i) p[i] = static_cast<uint8_t>(next());
  }
};

template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  explicit DevBuf(size_t count) : n(count) {
    void* v = nullptr;
    GPU_CHECK(gpuMalloc(&v, std::max<size_t>(count, 1) * sizeof(T)));
    p = static_cast<T*>(v);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) (void)gpuFree(p);  // destructor: nothing to do on failure
  }
  void upload(const T* h) { GPU_CHECK(gpuMemcpy(p, h, n * sizeof(T), gpuMemcpyHostToDevice)); }
  void upload(const std::vector<T>& h) { upload(h.data()); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    GPU_CHECK(gpuMemcpy(h.data(), p, n * sizeof(T), gpuMemcpyDeviceToHost));
    return h;
  }
};

struct MoeShape {
  int E, k, H, I;
  float limit;
};

// Host weights with the model file's layouts; random MXFP4 codes, scales in [118, 124]
// (2^-9 .. 2^-3: hidden activations of order 1), random bf16 biases and router.
struct HostMoe {
  MoeShape sh;
  std::vector<bf16_t> router_w, router_b, mlp1_bias, mlp2_bias;
  std::vector<uint8_t> mlp1_blocks, mlp1_scales, mlp2_blocks, mlp2_scales;

  HostMoe(const MoeShape& s, uint64_t seed) : sh(s) {
    Rng r(seed);
    const size_t E = s.E, H = s.H, I = s.I;
    router_w.resize(E * H);
    router_b.resize(E);
    for (auto& v : router_w) v = f32_to_bf16(r.normal() / std::sqrt(static_cast<float>(H)));
    for (auto& v : router_b) v = f32_to_bf16(0.5f * r.sym());
    mlp1_blocks.resize(E * 2 * I * H / 2);
    mlp1_scales.resize(E * 2 * I * H / 32);
    mlp2_blocks.resize(E * H * I / 2);
    mlp2_scales.resize(E * H * I / 32);
    r.bytes(mlp1_blocks.data(), mlp1_blocks.size());
    r.bytes(mlp2_blocks.data(), mlp2_blocks.size());
    for (auto& v : mlp1_scales) v = static_cast<uint8_t>(118 + r.next() % 7);
    for (auto& v : mlp2_scales) v = static_cast<uint8_t>(118 + r.next() % 7);
    mlp1_bias.resize(E * 2 * I);
    mlp2_bias.resize(E * H);
    for (auto& v : mlp1_bias) v = f32_to_bf16(0.5f * r.sym());
    for (auto& v : mlp2_bias) v = f32_to_bf16(0.5f * r.sym());
  }
  cpu::MoeWeights cpu() const {
    cpu::MoeWeights w;
    w.n_experts = sh.E;
    w.top_k = sh.k;
    w.hidden = sh.H;
    w.intermediate = sh.I;
    w.swiglu_limit = sh.limit;
    w.router_w = router_w.data();
    w.router_b = router_b.data();
    w.mlp1_blocks = mlp1_blocks.data();
    w.mlp1_scales = mlp1_scales.data();
    w.mlp1_bias = mlp1_bias.data();
    w.mlp2_blocks = mlp2_blocks.data();
    w.mlp2_scales = mlp2_scales.data();
    w.mlp2_bias = mlp2_bias.data();
    return w;
  }
  // Bytes of one expert's weights (both matmuls: blocks, scales, biases).
  size_t expert_bytes() const {
    const size_t H = sh.H, I = sh.I;
    return 2 * I * (H / 2 + H / 32 + 2) + H * (I / 2 + I / 32 + 2);
  }
};

struct DevMoe {
  DevBuf<uint16_t> router_w, router_b, mlp1_bias, mlp2_bias;
  DevBuf<uint8_t> mlp1_blocks, mlp1_scales, mlp2_blocks, mlp2_scales;
  gpu::MoeGpuWeights w;
  explicit DevMoe(const HostMoe& h)
      : router_w(h.router_w.size()), router_b(h.router_b.size()), mlp1_bias(h.mlp1_bias.size()),
        mlp2_bias(h.mlp2_bias.size()), mlp1_blocks(h.mlp1_blocks.size()),
        mlp1_scales(h.mlp1_scales.size()), mlp2_blocks(h.mlp2_blocks.size()),
        mlp2_scales(h.mlp2_scales.size()) {
    router_w.upload(h.router_w);
    router_b.upload(h.router_b);
    mlp1_bias.upload(h.mlp1_bias);
    mlp2_bias.upload(h.mlp2_bias);
    mlp1_blocks.upload(h.mlp1_blocks);
    mlp1_scales.upload(h.mlp1_scales);
    mlp2_blocks.upload(h.mlp2_blocks);
    mlp2_scales.upload(h.mlp2_scales);
    w.n_experts = h.sh.E;
    w.top_k = h.sh.k;
    w.hidden = h.sh.H;
    w.intermediate = h.sh.I;
    w.swiglu_limit = h.sh.limit;
    w.router_w = router_w.p;
    w.router_b = router_b.p;
    w.mlp1_blocks = mlp1_blocks.p;
    w.mlp1_scales = mlp1_scales.p;
    w.mlp1_bias = mlp1_bias.p;
    w.mlp2_blocks = mlp2_blocks.p;
    w.mlp2_scales = mlp2_scales.p;
    w.mlp2_bias = mlp2_bias.p;
  }
};

inline bool gpu_present() {
  int n = 0;
  return gpuGetDeviceCount(&n) == gpuSuccess && n > 0;
}

}  // namespace gptoss::moetest
