// random_model.h (tests): a small random gpt-oss model held in memory (bf16 + MXFP4 buffers) and
// ModelWeights pointing into it, plus an independent naive forward pass in double written straight
// from gpt-oss-spec.md (no code shared with the engine or kernels).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/bf16.h"
#include "backend_cpu/cpu_model.h"

namespace gptoss::testing {

inline Config small_config() {
  Config c;
  c.n_layers = 3;
  c.hidden = 64;
  c.intermediate = 32;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.n_experts = 4;
  c.experts_per_tok = 2;
  c.vocab = 96;
  c.sliding_window = 4;
  c.max_context = 256;
  c.initial_context = 4096;
  c.rope_theta = 150000;
  c.rope_factor = 32;
  c.rope_beta_fast = 32;
  c.rope_beta_slow = 1;
  c.rms_eps = 1e-5f;
  c.swiglu_limit = 7;
  c.sliding = {1, 0, 1};
  return c;
}

struct RandomModel {
  Config c;
  std::vector<bf16_t> emb, unemb, norm;
  struct Layer {
    std::vector<bf16_t> attn_norm, qkv_w, qkv_b, sinks, out_w, out_b, mlp_norm, router_w, router_b,
        mlp1_bias, mlp2_bias;
    std::vector<uint8_t> mlp1_blocks, mlp1_scales, mlp2_blocks, mlp2_scales;
  };
  std::vector<Layer> layers;

  explicit RandomModel(const Config& cfg, uint32_t seed = 1) : c(cfg) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    auto fill = [&](std::vector<bf16_t>& v, size_t n, float scale, float mean = 0) {
      v.resize(n);
      for (auto& x : v) x = f32_to_bf16(mean + scale * nd(rng));
    };
    auto fill_u8 = [&](std::vector<uint8_t>& v, size_t n, int lo, int hi) {
      v.resize(n);
      for (auto& x : v) x = static_cast<uint8_t>(lo + rng() % (hi - lo + 1));
    };
    const size_t H = c.hidden, I = c.intermediate, E = c.n_experts, V = c.vocab;
    const size_t R = c.qkv_rows(), Q = c.q_dim();
    fill(emb, V * H, 1.0f);
    fill(unemb, V * H, 0.2f);
    fill(norm, H, 0.1f, 1.0f);
    layers.resize(c.n_layers);
    for (auto& L : layers) {
      fill(L.attn_norm, H, 0.1f, 1.0f);
      fill(L.qkv_w, R * H, 0.15f);
      fill(L.qkv_b, R, 0.1f);
      fill(L.sinks, c.n_heads, 1.0f);
      fill(L.out_w, H * Q, 0.1f);
      fill(L.out_b, H, 0.1f);
      fill(L.mlp_norm, H, 0.1f, 1.0f);
      fill(L.router_w, E * H, 0.3f);
      fill(L.router_b, E, 0.1f);
      fill_u8(L.mlp1_blocks, E * 2 * I * H / 2, 0, 255);
      fill_u8(L.mlp1_scales, E * 2 * I * H / 32, 121, 124);
      fill(L.mlp1_bias, E * 2 * I, 0.3f);
      fill_u8(L.mlp2_blocks, E * H * I / 2, 0, 255);
      fill_u8(L.mlp2_scales, E * H * I / 32, 120, 123);
      fill(L.mlp2_bias, E * H, 0.1f);
    }
  }

  ModelWeights weights() const {
    ModelWeights w;
    w.config = c;
    w.embedding = emb.data();
    w.unembedding = unemb.data();
    w.norm = norm.data();
    for (const auto& L : layers) {
      LayerWeights lw;
      lw.attn_norm = L.attn_norm.data();
      lw.qkv_w = L.qkv_w.data();
      lw.qkv_b = L.qkv_b.data();
      lw.sinks = L.sinks.data();
      lw.out_w = L.out_w.data();
      lw.out_b = L.out_b.data();
      lw.mlp_norm = L.mlp_norm.data();
      moe_shapes(lw.moe, c);
      lw.moe.router_w = L.router_w.data();
      lw.moe.router_b = L.router_b.data();
      lw.moe.mlp1_blocks = L.mlp1_blocks.data();
      lw.moe.mlp1_scales = L.mlp1_scales.data();
      lw.moe.mlp1_bias = L.mlp1_bias.data();
      lw.moe.mlp2_blocks = L.mlp2_blocks.data();
      lw.moe.mlp2_scales = L.mlp2_scales.data();
      lw.moe.mlp2_bias = L.mlp2_bias.data();
      w.layers.push_back(lw);
    }
    return w;
  }
};

// ------------------------------------------------------------------ naive reference (double)
namespace ref {

inline double bf(bf16_t h) { return bf16_to_f32(h); }

// MXFP4 element k of weight row m: blocks [M, K/32, 16], scales [M, K/32].
inline double mxfp4(const uint8_t* blocks, const uint8_t* scales, int K, int m, int k) {
  static const double lut[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6};
  const uint8_t byte = blocks[static_cast<size_t>(m) * (K / 2) + k / 2];
  const int code = (k % 2 == 0) ? (byte & 15) : (byte >> 4);
  return lut[code] * std::ldexp(1.0, static_cast<int>(scales[static_cast<size_t>(m) * (K / 32) + k / 32]) - 127);
}

inline std::vector<double> rmsnorm(const std::vector<double>& x, const bf16_t* scale, double eps) {
  double ms = 0;
  for (double v : x) ms += v * v;
  ms /= x.size();
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + eps) * bf(scale[i]);
  return y;
}

inline std::vector<double> linear(const std::vector<double>& x, const bf16_t* w, const bf16_t* b,
                                  int M) {
  const size_t K = x.size();
  std::vector<double> y(M);
  for (int m = 0; m < M; ++m) {
    double s = b ? bf(b[m]) : 0.0;
    for (size_t k = 0; k < K; ++k) s += bf(w[m * K + k]) * x[k];
    y[m] = s;
  }
  return y;
}

// Logits [T, V] for every position of one sequence, recomputing everything from scratch.
inline std::vector<std::vector<double>> forward(const RandomModel& mdl,
                                                const std::vector<int>& tokens) {
  const Config& c = mdl.c;
  const int T = static_cast<int>(tokens.size()), H = c.hidden, I = c.intermediate;
  const int nh = c.n_heads, nkv = c.n_kv_heads, d = c.head_dim, Q = c.q_dim(), KVD = c.kv_dim();
  // YaRN inverse frequencies and concentration, straight from the spec.
  std::vector<double> inv_freq(d / 2);
  const double two_pi = 2 * M_PI;
  const double low = d / 2.0 * std::log(c.initial_context / (c.rope_beta_fast * two_pi)) /
                     std::log(c.rope_theta);
  const double high = d / 2.0 * std::log(c.initial_context / (c.rope_beta_slow * two_pi)) /
                      std::log(c.rope_theta);
  for (int i = 0; i < d / 2; ++i) {
    double freq = std::pow(static_cast<double>(c.rope_theta), 2.0 * i / d);
    double ramp = std::min(1.0, std::max(0.0, (i - low) / (high - low)));
    inv_freq[i] = (1 / (c.rope_factor * freq)) * ramp + (1 / freq) * (1 - ramp);
  }
  const double conc = 0.1 * std::log(static_cast<double>(c.rope_factor)) + 1;
  auto rope = [&](double* v, int pos) {
    for (int i = 0; i < d / 2; ++i) {
      double cs = std::cos(pos * inv_freq[i]) * conc, sn = std::sin(pos * inv_freq[i]) * conc;
      double x1 = v[i], x2 = v[i + d / 2];
      v[i] = x1 * cs - x2 * sn;
      v[i + d / 2] = x2 * cs + x1 * sn;
    }
  };

  std::vector<std::vector<double>> x(T, std::vector<double>(H));
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i) x[t][i] = bf(mdl.emb[static_cast<size_t>(tokens[t]) * H + i]);

  for (int l = 0; l < c.n_layers; ++l) {
    const auto& L = mdl.layers[l];
    const bool sliding = c.sliding[l] != 0;
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int t = 0; t < T; ++t) {
      auto qkv = linear(rmsnorm(x[t], L.attn_norm.data(), c.rms_eps), L.qkv_w.data(),
                        L.qkv_b.data(), c.qkv_rows());
      q[t].assign(qkv.begin(), qkv.begin() + Q);
      k[t].assign(qkv.begin() + Q, qkv.begin() + Q + KVD);
      v[t].assign(qkv.begin() + Q + KVD, qkv.end());
      for (int h = 0; h < nh; ++h) rope(&q[t][h * d], t);
      for (int h = 0; h < nkv; ++h) rope(&k[t][h * d], t);
    }
    for (int t = 0; t < T; ++t) {
      std::vector<double> att(Q, 0.0);
      for (int h = 0; h < nh; ++h) {
        const int g = h / (nh / nkv);
        const double sink = bf(L.sinks[h]);
        std::vector<double> s;
        std::vector<int> js;
        for (int j = 0; j <= t; ++j) {
          if (sliding && !(t - c.sliding_window < j)) continue;
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += q[t][h * d + e] * k[j][g * d + e];
          s.push_back(dot / std::sqrt(static_cast<double>(d)));
          js.push_back(j);
        }
        double m = sink;
        for (double z : s) m = std::max(m, z);
        double den = std::exp(sink - m);
        for (double z : s) den += std::exp(z - m);
        for (size_t a = 0; a < s.size(); ++a) {
          double p = std::exp(s[a] - m) / den;
          for (int e = 0; e < d; ++e) att[h * d + e] += p * v[js[a]][g * d + e];
        }
      }
      auto o = linear(att, L.out_w.data(), L.out_b.data(), H);
      for (int i = 0; i < H; ++i) x[t][i] += o[i];
    }
    // MoE.
    for (int t = 0; t < T; ++t) {
      auto xn = rmsnorm(x[t], L.mlp_norm.data(), c.rms_eps);
      auto rl = linear(xn, L.router_w.data(), L.router_b.data(), c.n_experts);
      std::vector<int> idx(c.n_experts);
      for (int e = 0; e < c.n_experts; ++e) idx[e] = e;
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return rl[a] > rl[b]; });
      idx.resize(c.experts_per_tok);
      double den = 0;
      for (int e : idx) den += std::exp(rl[e] - rl[idx[0]]);
      std::vector<double> out(H, 0.0);
      for (int e : idx) {
        const double we = std::exp(rl[e] - rl[idx[0]]) / den;
        const uint8_t* b1 = L.mlp1_blocks.data() + static_cast<size_t>(e) * 2 * I * H / 2;
        const uint8_t* s1 = L.mlp1_scales.data() + static_cast<size_t>(e) * 2 * I * H / 32;
        const uint8_t* b2 = L.mlp2_blocks.data() + static_cast<size_t>(e) * H * I / 2;
        const uint8_t* s2 = L.mlp2_scales.data() + static_cast<size_t>(e) * H * I / 32;
        std::vector<double> a(I);
        for (int i = 0; i < I; ++i) {
          double gate = bf(L.mlp1_bias[static_cast<size_t>(e) * 2 * I + 2 * i]);
          double up = bf(L.mlp1_bias[static_cast<size_t>(e) * 2 * I + 2 * i + 1]);
          for (int kk = 0; kk < H; ++kk) {
            gate += mxfp4(b1, s1, H, 2 * i, kk) * xn[kk];
            up += mxfp4(b1, s1, H, 2 * i + 1, kk) * xn[kk];
          }
          const double lim = c.swiglu_limit;
          gate = std::min(gate, lim);
          up = std::min(std::max(up, -lim), lim);
          a[i] = gate / (1 + std::exp(-1.702 * gate)) * (up + 1);
        }
        for (int o = 0; o < H; ++o) {
          double y = bf(L.mlp2_bias[static_cast<size_t>(e) * H + o]);
          for (int i = 0; i < I; ++i) y += mxfp4(b2, s2, I, o, i) * a[i];
          out[o] += we * y;
        }
      }
      for (int i = 0; i < H; ++i) x[t][i] += out[i];
    }
  }
  std::vector<std::vector<double>> logits(T);
  for (int t = 0; t < T; ++t)
    logits[t] = linear(rmsnorm(x[t], mdl.norm.data(), c.rms_eps), mdl.unemb.data(), nullptr,
                       c.vocab);
  return logits;
}

}  // namespace ref
}  // namespace gptoss::testing
