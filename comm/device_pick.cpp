// device_pick.cpp: local rank from the launcher's environment and the device choice from it.
#include "comm/device_pick.h"

#include <cstdlib>

#include "comm/world.h"

namespace gptoss::comm {

int local_rank_from_env() {
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"}) {
    const char* v = std::getenv(name);
    if (!v || !*v) continue;
    char* end = nullptr;
    long r = std::strtol(v, &end, 10);
    if (*end == '\0' && r >= 0 && r < (1 << 20)) return static_cast<int>(r);
  }
  return -1;
}

int pick_local_device(int device_count, int local_rank) {
  if (device_count <= 0) return -1;
  if (device_count == 1) return 0;
  if (local_rank < 0) local_rank = 0;
  return local_rank % device_count;
}

int pick_local_device(int device_count) {
  const World* w = World::current();
  return pick_local_device(device_count, w ? w->local_rank() : local_rank_from_env());
}

}  // namespace gptoss::comm
