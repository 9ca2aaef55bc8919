// rings.cpp: splitting the world into data-parallel rings (rings.h).
#include "run/rings.h"

#include <time.h>

#include "comm/world.h"
#include "common/error.h"

namespace gptoss {

namespace {
Rings g_rings;
bool g_ended = false;
}  // namespace

std::string Rings::describe() const {
  if (dp > 1) return strfmt("%d rings x %d rank%s", dp, ring_size, ring_size == 1 ? "" : "s");
  return ring_size == 1 ? "one rank" : strfmt("one ring of %d ranks", ring_size);
}

const Rings& make_rings(int dp, const std::string& why) {
  Rings r;
  r.why = why;
  MPI_Comm_rank(comm::world_comm(), &r.world_rank);
  MPI_Comm_size(comm::world_comm(), &r.world_size);
  if (dp < 1 || dp > r.world_size || r.world_size % dp != 0)
    throw comm::WorldError(strfmt("--dp %d: the %d rank%s must form rings of equal size "
                                  "(--dp must divide the number of ranks)",
                                  dp, r.world_size, r.world_size == 1 ? "" : "s"));
  r.dp = dp;
  r.ring_size = r.world_size / dp;
  r.ring = r.world_rank / r.ring_size;
  r.ring_rank = r.world_rank % r.ring_size;
  r.ring_comm = comm::world_comm();
  if (dp > 1) {
    MPI_Comm_split(comm::world_comm(), r.ring, r.ring_rank, &r.ring_comm);
    MPI_Comm_split(comm::world_comm(), r.leader() ? 0 : MPI_UNDEFINED, r.ring, &r.leaders);
  }
  g_rings = r;
  return g_rings;
}

const Rings& rings() { return g_rings; }

void wait_for_end() {
  if (g_rings.dp == 1 || g_ended) return;
  g_ended = true;
  MPI_Request req;
  MPI_Ibarrier(comm::world_comm(), &req);
  for (;;) {
    int done = 0;
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return;
    const timespec ts{0, 2'000'000};  // 2 ms
    nanosleep(&ts, nullptr);
  }
}

}  // namespace gptoss
