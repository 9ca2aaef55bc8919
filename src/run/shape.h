// shape.h: the job's shape when --dp is not given: how many data-parallel rings N ranks form
// (rings.h). A model that fits one device runs best as rings of one rank (no hops, no pipeline
// bubbles); one that does not, as rings of the fewest devices that hold it. The estimate is the
// GPU backend's own sizing (src/backend_gpu/gpu_setup.cu) per rank of a ring of P: its share of
// the layers' weights, the embedding and LM head (rank 0 holds them), its share of the KV cache
// of the sequences a ring must hold at -c, the step buffers and a reserve, against the least free
// device memory of any rank. The CPU backend keeps one ring: each rank then reads only its own
// layers' weights from its own memory. Pure: unit-tested in tests/run/test_shape.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "model/config.h"
#include "run/options.h"

namespace gptoss {

struct ShapeInput {
  int ranks = 1;
  bool gpu = false;
  uint64_t free_bytes = 0;     // the least free device memory of any rank (GPU)
  uint64_t layer_bytes = 0;    // the weights of every layer
  uint64_t ends_bytes = 0;     // embedding + final norm + LM head (rank 0 of a ring)
  uint64_t kv_slot_bytes = 0;  // KV cache of one sequence at -c over every layer
  uint64_t buffer_bytes = 0;   // step buffers + reserve, per rank
  int slots = 1;               // sequences a ring must hold
  int ctx = 0;                 // -c (for the message)
  std::string mode;            // for the message
};

struct ShapePlan {
  int dp = 1;
  std::string why;  // one line: "auto: ..." (printed by world rank 0 as "shape: ...")
};

// Device bytes per rank of a ring of p ranks (the heaviest: rank 0, with the ends).
uint64_t shape_bytes_per_rank(const ShapeInput& in, int p);
ShapePlan plan_shape(const ShapeInput& in);

// The input for a model of config c under these options (free_bytes, ranks, gpu set by caller):
// slots = -b when given; getp and serve without -b: kAutoShapeSlots; generate and chat: 1.
inline constexpr int kAutoShapeSlots = 64;
ShapeInput shape_input(const Config& c, const RunOptions& opt);

}  // namespace gptoss
