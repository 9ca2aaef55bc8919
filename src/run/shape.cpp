// shape.cpp: the automatic shape (shape.h).
#include "run/shape.h"

#include <algorithm>

#include "backend/backend.h"
#include "common/error.h"
#include "model/schema.h"

namespace gptoss {

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
}  // namespace

ShapeInput shape_input(const Config& c, const RunOptions& opt) {
  ShapeInput in;
  for (const TensorSpec& t : tensor_schema(c))
    (is_layer_kind(t.kind) ? in.layer_bytes : in.ends_bytes) += t.bytes();
  const uint64_t elem = opt.kv_cache == "f32" ? 4 : 2;
  for (int l = 0; l < c.n_layers; ++l) {
    const bool sliding = c.sliding[static_cast<size_t>(l)] != 0 && c.sliding_window > 0;
    const uint64_t cap =
        sliding ? std::min(opt.ctx, c.sliding_window + kGpuSeqStepRows) : opt.ctx;
    in.kv_slot_bytes += 2 * cap * static_cast<uint64_t>(c.kv_dim()) * elem;
  }
  // Step buffers as the GPU backend sizes them (activations of a device step, logits of a head
  // pass, expert intermediates), plus its 512 MiB reserve.
  const uint64_t H = c.hidden, R = c.qkv_rows(), Q = c.q_dim(), V = c.vocab;
  const uint64_t S = static_cast<uint64_t>(opt.step_rows);
  in.buffer_bytes = 4 * (S * (2 * H + R + Q) + 512ull * V) +  // 512: the head's rows per pass
                    2ull * S * c.experts_per_tok * (H + c.intermediate) * 4 + (512ull << 20);
  const bool many = opt.mode == Mode::Getp || opt.mode == Mode::Serve || opt.mode == Mode::Bench;
  in.slots = !many ? 1 : opt.batch_given || opt.mode == Mode::Bench ? opt.max_slots
                                                                     : kAutoShapeSlots;
  in.ctx = opt.ctx;
  in.mode = mode_name(opt.mode);
  return in;
}

uint64_t shape_bytes_per_rank(const ShapeInput& in, int p) {
  const uint64_t P = static_cast<uint64_t>(std::max(1, p));
  return (in.layer_bytes + P - 1) / P + in.ends_bytes +
         (in.kv_slot_bytes * static_cast<uint64_t>(in.slots) + P - 1) / P + in.buffer_bytes;
}

ShapePlan plan_shape(const ShapeInput& in) {
  ShapePlan plan;
  const int N = std::max(1, in.ranks);
  if (N == 1) {
    plan.why = "one rank";
    return plan;
  }
  if (!in.gpu) {
    plan.why = "auto: CPU backend, each rank reads only its own layers' weights; --dp R makes R "
               "rings";
    return plan;
  }
  const std::string what =
      strfmt("weights + KV cache of %d sequence%s at -c %d", in.slots, in.slots == 1 ? "" : "s",
             in.ctx);
  for (int p = 1; p <= N; ++p) {
    if (N % p != 0) continue;
    const uint64_t need = shape_bytes_per_rank(in, p);
    if (need > in.free_bytes) continue;
    plan.dp = N / p;
    if (p == 1)
      plan.why = strfmt("auto: one GPU holds the %s: %.1f GiB, %.1f GiB free; --dp R overrides",
                        what.c_str(), need / kGiB, in.free_bytes / kGiB);
    else
      plan.why = strfmt("auto: %d GPUs are the fewest that hold the %s: %.1f GiB per GPU, %.1f "
                        "GiB free (one GPU would need %.1f); --dp R overrides",
                        p, what.c_str(), need / kGiB, in.free_bytes / kGiB,
                        shape_bytes_per_rank(in, 1) / kGiB);
    return plan;
  }
  plan.why = strfmt("auto: even %d GPUs need %.1f GiB each for the %s, %.1f GiB free", N,
                    shape_bytes_per_rank(in, N) / kGiB, what.c_str(), in.free_bytes / kGiB);
  return plan;
}

}  // namespace gptoss
