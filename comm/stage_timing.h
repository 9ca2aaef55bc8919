// stage_timing.h: per-rank pipeline timing (busy / idle time, bytes and messages sent), gathered
// to rank 0 and formatted there, so the pipeline bubble is visible at the end of a run. The
// lines are what launch/sweep.py parses (docs/transport.md, "Timing report").
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/transport.h"

namespace gptoss::comm {

struct StageTiming {
  double busy_us = 0;          // time computing (the stage's own work)
  double idle_us = 0;          // time blocked waiting for input or credits (LinkStats::wait_us)
  uint64_t bytes_sent = 0;     // header + payload bytes posted to the next stage
  uint64_t messages_sent = 0;  // messages posted to the next stage
};

// Fills idle_us, bytes_sent and messages_sent from the ring's link statistics; busy_us is left
// as given (the pipeline measures its compute).
StageTiming timing_from_ring(Ring& ring, double busy_us);

// Collective over comm: every rank passes its timing; rank 0 gets all of them, rank order
// (index = stage = rank). Other ranks get an empty vector.
std::vector<StageTiming> gather_stage_timing(const StageTiming& mine, MPI_Comm comm);

// The report rank 0 prints, one line per stage, e.g.
//   "stage 1 busy 91.0% idle 9.0% sent 12.3 MB in 400 messages"
// busy% = busy / (busy + idle). Empty input -> "".
std::string format_stage_report(const std::vector<StageTiming>& stages);

// busy% per stage, for the machine-readable getp line ("stage_busy_pct": [...]).
std::vector<double> stage_busy_pct(const std::vector<StageTiming>& stages);

}  // namespace gptoss::comm
