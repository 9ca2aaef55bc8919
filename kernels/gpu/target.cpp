// kernels/gpu/target.cpp: launch records checked against a target's limits (target.h).
#include "gpu/target.h"

#include "common/error.h"

namespace gptoss::gpu {

std::string launch_limit_error(const KernelLaunch& l, const GpuTarget& t) {
  const char* k = l.kernel ? l.kernel : "?";
  if (l.threads < 1 || l.threads > t.max_threads_per_block)
    return strfmt("%s: %d threads per block, %s allows 1..%d", k, l.threads, t.name,
                  t.max_threads_per_block);
  if (l.threads % t.wave_size != 0)
    return strfmt("%s: %d threads per block is not a whole number of %s's %d-lane waves", k,
                  l.threads, t.name, t.wave_size);
  const size_t smem = l.dyn_smem_bytes + l.static_smem_bytes;
  if (smem > t.max_smem_per_block)
    return strfmt("%s: %zu bytes of shared memory per block (%zu dynamic + %zu static), %s allows "
                  "%zu",
                  k, smem, l.dyn_smem_bytes, l.static_smem_bytes, t.name, t.max_smem_per_block);
  if (l.grid_x < 1 || l.grid_y < 1 || l.grid_z < 1 || l.grid_y > t.max_grid_yz ||
      l.grid_z > t.max_grid_yz)
    return strfmt("%s: grid %d x %d x %d outside %s's limits (x >= 1, y and z in 1..%d)", k,
                  l.grid_x, l.grid_y, l.grid_z, t.name, t.max_grid_yz);
  return "";
}

const GpuTarget* find_target(const std::string& name) {
  for (const GpuTarget* t : kAllTargets)
    if (name == t->name) return t;
  return nullptr;
}

}  // namespace gptoss::gpu
