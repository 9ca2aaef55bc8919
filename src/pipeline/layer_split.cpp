// layer_split.cpp: the cost model and the layer split (layer_split.h).
#include "pipeline/layer_split.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace gptoss {

double layer_cost(const Config& c, double rows) {
  const double H = c.hidden, I = c.intermediate, E = c.n_experts, k = c.experts_per_tok;
  const double dense_w = c.qkv_rows() * H + H * c.q_dim() + E * H;  // bf16 weights
  const double expert_w = 2 * I * H + H * I;                        // MXFP4 weights per expert
  const double expert_bytes = expert_w / 2 + expert_w / 32 + (2 * I + H) * 2;
  const double touched = E * (1.0 - std::pow(1.0 - k / E, std::max(rows, 1.0)));
  const double bytes = dense_w * 2 + touched * expert_bytes;
  const double flops = rows * 2 * (dense_w + k * expert_w);
  return bytes + flops / kFlopsPerByte;
}

double head_cost(const Config& c, double rows) {
  const double w = static_cast<double>(c.vocab) * c.hidden;
  return w * 2 + rows * 2 * w / kFlopsPerByte;
}

double embed_cost(const Config& c, double rows) { return rows * c.hidden * 2.0; }

SplitRows split_rows(int decode_rows, int prompt_tokens) {
  const double d = std::max(1, decode_rows);
  if (d <= 1) return {1.0, 1.0};
  return {d + std::min<double>(d, std::max(0, prompt_tokens)), d};
}

std::vector<int> balanced_split(const Config& c, int ranks, double rows, double logit_rows) {
  if (logit_rows < 0) logit_rows = rows;
  const int L = c.n_layers;
  if (ranks < 1) fail("pipeline: %d ranks", ranks);
  if (L < ranks)
    fail("the model has %d layers: it cannot be split over %d ranks (each rank needs at least one "
         "layer); run with at most %d ranks",
         L, ranks, L);
  if (ranks == 1) return {L};
  const double lc = layer_cost(c, rows), extra = head_cost(c, logit_rows) + embed_cost(c, rows);
  int best_n0 = 1;
  double best = 1e300;
  for (int n0 = 1; n0 <= L - (ranks - 1); ++n0) {
    const int rest = L - n0, others = ranks - 1;
    const int biggest = (rest + others - 1) / others;
    const double worst = std::max(extra + n0 * lc, biggest * lc);
    if (worst <= best * (1 + 1e-12)) {  // ties: give rank 0 more layers, the others fewer
      best = std::min(best, worst);
      best_n0 = n0;
    }
  }
  std::vector<int> split(ranks);
  split[0] = best_n0;
  const int rest = L - best_n0, others = ranks - 1;
  for (int r = 1; r < ranks; ++r) split[r] = rest / others + (r > others - rest % others ? 1 : 0);
  return split;
}

HeadSplitPlan head_split_plan(const Config& c, int ranks, double rows, double logit_rows,
                              const std::vector<int>& layers) {
  if (logit_rows < 0) logit_rows = rows;
  HeadSplitPlan p;
  if (!layers.empty()) {
    GPTOSS_ASSERT(static_cast<int>(layers.size()) == ranks);
    p.layers = layers;
  } else {
    if (ranks < 1 || c.n_layers < ranks)
      fail("the model has %d layers: it cannot be split over %d ranks", c.n_layers, ranks);
    p.layers.resize(ranks);
    for (int r = 0; r < ranks; ++r)
      p.layers[r] = c.n_layers / ranks + (r >= ranks - c.n_layers % ranks ? 1 : 0);
  }
  const double lc = layer_cost(c, rows), hc = head_cost(c, logit_rows);
  std::vector<double> cost(ranks);
  for (int r = 0; r < ranks; ++r) cost[r] = p.layers[r] * lc + (r == 0 ? embed_cost(c, rows) : 0.0);
  // Water level T with sum max(0, T - cost_r) = hc.
  std::vector<double> sorted = cost;
  std::sort(sorted.begin(), sorted.end());
  double level = sorted[0] + hc, below = 0;
  for (int i = 0; i < ranks; ++i) {
    below += sorted[i];
    const double t = (hc + below) / (i + 1);  // level filling the i + 1 cheapest stages
    if (i + 1 == ranks || t <= sorted[i + 1]) {
      level = t;
      break;
    }
  }
  const double V = c.vocab;
  p.vocab_bounds.assign(ranks + 1, 0);
  double acc = 0;
  for (int r = 0; r < ranks; ++r) {
    acc += std::max(0.0, level - cost[r]);
    const double id = std::round(acc / hc * V / 64.0) * 64.0;
    p.vocab_bounds[r + 1] = std::clamp(static_cast<int>(id), p.vocab_bounds[r], c.vocab);
  }
  p.vocab_bounds[ranks] = c.vocab;
  return p;
}

double whole_head_efficiency(const Config& c, const std::vector<int>& layers, double rows,
                             double logit_rows) {
  const double lc = layer_cost(c, rows), extra = head_cost(c, logit_rows) + embed_cost(c, rows);
  double worst = 0;
  for (size_t r = 0; r < layers.size(); ++r)
    worst = std::max(worst, layers[r] * lc + (r == 0 ? extra : 0.0));
  return (c.n_layers * lc + extra) / (static_cast<double>(layers.size()) * worst);
}

double head_split_efficiency(const Config& c, const HeadSplitPlan& p, double rows,
                             double logit_rows) {
  const double lc = layer_cost(c, rows), hc = head_cost(c, logit_rows), ec = embed_cost(c, rows);
  const size_t n = p.layers.size();
  double worst = 0;
  for (size_t r = 0; r < n; ++r) {
    const double share = double(p.vocab_bounds[r + 1] - p.vocab_bounds[r]) / c.vocab;
    worst = std::max(worst, p.layers[r] * lc + share * hc + (r == 0 ? ec : 0.0));
  }
  return (c.n_layers * lc + hc + ec) / (static_cast<double>(n) * worst);
}

std::vector<int> parse_layer_split(const std::string& text, int n_layers, int ranks) {
  std::vector<int> v;
  size_t i = 0;
  while (i <= text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string tok = text.substr(i, j - i);
    if (tok.empty() || tok.size() > 6 || tok.find_first_not_of("0123456789") != std::string::npos)
      fail("--layers: '%s' is not a list of layer counts like 4,7,7,6 (bad entry '%s')",
           text.c_str(), tok.c_str());
    v.push_back(std::stoi(tok));
    i = j + 1;
  }
  if (static_cast<int>(v.size()) != ranks)
    fail("--layers %s: %zu blocks for %d ranks (give one layer count per rank)", text.c_str(),
         v.size(), ranks);
  int sum = 0;
  for (size_t r = 0; r < v.size(); ++r) {
    if (v[r] < 1)
      fail("--layers %s: rank %zu gets %d layers (each rank needs at least one)", text.c_str(), r,
           v[r]);
    sum += v[r];
  }
  if (sum != n_layers)
    fail("--layers %s: adds up to %d layers, the model has %d", text.c_str(), sum, n_layers);
  return v;
}

std::string describe_split(const std::vector<int>& layers) {
  std::string s;
  int first = 0;
  for (size_t r = 0; r < layers.size(); ++r) {
    s += strfmt("%srank %zu: layers [%d, %d)%s", r ? "; " : "", r, first, first + layers[r],
                r == 0 ? " + embedding + LM head" : "");
    first += layers[r];
  }
  return s;
}

}  // namespace gptoss
