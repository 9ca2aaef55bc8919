// rings.h: the shape of the job. N world ranks form R data-parallel rings of N/R consecutive
// ranks each (--dp R; ring k = world ranks [k N/R, (k+1) N/R)); each ring is a pipeline
// (src/pipeline) over its own communicator. World rank 0 leads ring 0 and owns the tokenizer,
// the prompts and the output; the first rank of every other ring (its leader) runs that ring's
// scheduler and takes prompts or requests from world rank 0 (rings_jobs.h). getp and serve use
// every ring; chat, generate and bench run on ring 0 while the ranks of the other rings wait
// (wait_for_end).
#pragma once
#include <mpi.h>

#include <string>

namespace gptoss {

struct Rings {
  int dp = 1;         // R: rings
  int ring = 0;       // this rank's ring
  int ring_size = 1;  // ranks per ring
  int ring_rank = 0;  // this rank's place in its ring (0: the ring's leader)
  int world_rank = 0, world_size = 1;
  MPI_Comm ring_comm = MPI_COMM_WORLD;  // this ring (the world, comm::world_comm(), when R = 1)
  MPI_Comm leaders = MPI_COMM_NULL;     // the R ring leaders, world rank 0 first (R > 1, leaders)
  std::string why;  // how R was chosen ("--dp 2", "auto: ..."), for the start-up line
  bool leader() const { return ring_rank == 0; }
  // "2 rings x 2 ranks" / "one ring of 4 ranks" / "one rank"
  std::string describe() const;
};

// COLLECTIVE over the world (comm::world_comm()): splits it into `dp` rings (dp must divide the
// world size: otherwise every rank throws the same comm::WorldError) and makes them this
// process's shape.
const Rings& make_rings(int dp, const std::string& why = "");
// This process's shape (one ring of the whole world before make_rings).
const Rings& rings();

// The end of a job with several rings (COLLECTIVE over the world, no-op with one ring):
// every rank calls it once when it is done; it returns when every rank has. Waits by polling
// with short sleeps, so an idle ring's ranks take no CPU from the working ones.
void wait_for_end();

}  // namespace gptoss
