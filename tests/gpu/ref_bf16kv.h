// ref_bf16kv.h: a CPU reference forward with a bf16 KV cache (kernels/cpu ops, one row at a
// time), the oracle of the GPU engine's numerics (the GPU engine stores K/V as bf16; the CPU
// engine keeps them fp32). Used by tests/gpu/engine_test.cu and by check-top1
// (tests/gpu/check_top1.cu). Host code only.
#pragma once
#include <span>
#include <string>
#include <vector>

#include "common/bf16.h"
#include "cpu/ops.h"
#include "backend/engine.h"
#include "model/config.h"
#include "model/model_file.h"

namespace gptoss {

// The CPU reference with a bf16 KV cache: one row at a time, in order (a row only sees earlier
// positions of its own slot, so row order within a step is all that matters). It has Engine's
// forward() but is written independently of every backend (an oracle, not a backend).
class RefBf16Kv final {
 public:
  RefBf16Kv(const ModelFile& m, int ctx, int slots) : m_(m), c_(m.config()), ctx_(ctx), slots_(slots) {
    rope_ = cpu::rope_yarn_table(c_.head_dim, c_.rope_theta, c_.rope_factor, c_.initial_context,
                                 c_.rope_beta_fast, c_.rope_beta_slow);
    kv_.assign(size_t(c_.n_layers) * slots * ctx * c_.kv_dim() * 2, 0.0f);
  }
  const Config& config() const { return c_; }
  int ctx() const { return ctx_; }
  int max_slots() const { return slots_; }
  size_t kv_cache_bytes() const { return kv_.size() * 2; }
  void forward(std::span<const Row> rows, std::vector<float>& logits) {
    const int H = c_.hidden, R = c_.qkv_rows(), Q = c_.q_dim(), V = c_.vocab, hd = c_.head_dim;
    const int E = c_.n_experts, I = c_.intermediate, kvd = c_.kv_dim();
    auto B = [&](const std::string& n, std::vector<int64_t> shape) {
      return m_.data<bf16_t>(n, DType::BF16, shape);
    };
    auto U = [&](const std::string& n, std::vector<int64_t> shape) {
      return m_.data<uint8_t>(n, DType::U8, shape);
    };
    logits.clear();
    std::vector<float> x(H), xn(H), qkv(R), att(Q), t(H), cs(hd), scratch(ctx_ + 1);
    for (const Row& row : rows) {
      cpu::bf16_embed(B("embedding", {V, H}), &row.token, 1, H, x.data());
      cpu::rope_cos_sin(rope_, row.pos, cs.data());
      for (int L = 0; L < c_.n_layers; ++L) {
        const std::string p = "layers." + std::to_string(L) + ".";
        cpu::f32_bf16w_rmsnorm(x.data(), B(p + "attn_norm", {H}), xn.data(), 1, H, c_.rms_eps);
        cpu::f32_bf16w_matmul(xn.data(), B(p + "qkv.weight", {R, H}), B(p + "qkv.bias", {R}),
                              qkv.data(), 1, H, R);
        cpu::f32_rope_apply(rope_, cs.data(), qkv.data(), c_.n_heads + c_.n_kv_heads);
        float* kc = kv_.data() + (size_t(L) * slots_ + row.slot) * ctx_ * kvd * 2;
        float* vc = kc + size_t(ctx_) * kvd;
        for (int i = 0; i < kvd; ++i) {
          kc[size_t(row.pos) * kvd + i] = bf16_to_f32(f32_to_bf16(qkv[Q + i]));
          vc[size_t(row.pos) * kvd + i] = bf16_to_f32(f32_to_bf16(qkv[Q + kvd + i]));
        }
        const int window = c_.sliding[size_t(L)] ? c_.sliding_window : 0;
        const bf16_t* sinks = B(p + "sinks", {c_.n_heads});
        for (int h = 0; h < c_.n_heads; ++h)
          cpu::f32_attention_sinks_head(qkv.data() + size_t(h) * hd, kc, vc, ctx_, c_.n_kv_heads,
                                        hd, cpu::gqa_kv_head(h, c_.n_heads, c_.n_kv_heads),
                                        row.pos, window, bf16_to_f32(sinks[h]),
                                        att.data() + size_t(h) * hd, scratch.data());
        cpu::f32_bf16w_matmul(att.data(), B(p + "out.weight", {H, Q}), B(p + "out.bias", {H}),
                              t.data(), 1, Q, H);
        cpu::f32_add_inplace(x.data(), t.data(), H);
        cpu::f32_bf16w_rmsnorm(x.data(), B(p + "mlp_norm", {H}), xn.data(), 1, H, c_.rms_eps);
        cpu::MoeWeights mw;
        mw.n_experts = E, mw.top_k = c_.experts_per_tok, mw.hidden = H, mw.intermediate = I;
        mw.swiglu_limit = c_.swiglu_limit;
        mw.router_w = B(p + "router.weight", {E, H});
        mw.router_b = B(p + "router.bias", {E});
        mw.mlp1_blocks = U(p + "mlp1.blocks", {E, 2 * I, H / 32, 16});
        mw.mlp1_scales = U(p + "mlp1.scales", {E, 2 * I, H / 32});
        mw.mlp1_bias = B(p + "mlp1.bias", {E, 2 * I});
        mw.mlp2_blocks = U(p + "mlp2.blocks", {E, H, I / 32, 16});
        mw.mlp2_scales = U(p + "mlp2.scales", {E, H, I / 32});
        mw.mlp2_bias = B(p + "mlp2.bias", {E, H});
        cpu::f32_mf4w_moe(mw, xn.data(), 1, x.data(), moe_scratch_);
      }
      if (row.flags & Row::kLogits) {
        cpu::f32_bf16w_rmsnorm(x.data(), B("norm", {H}), xn.data(), 1, H, c_.rms_eps);
        const size_t o = logits.size();
        logits.resize(o + V);
        cpu::f32_bf16w_matmul(xn.data(), B("unembedding", {V, H}), nullptr, logits.data() + o, 1,
                              H, V);
      }
    }
  }

 private:
  const ModelFile& m_;
  Config c_;
  int ctx_, slots_;
  cpu::RopeTable rope_;
  std::vector<float> kv_;  // [layers, slots, {k, v}, ctx, kv_dim], bf16 values
  cpu::MoeScratch moe_scratch_;
};


}  // namespace gptoss
