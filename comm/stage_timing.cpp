// stage_timing.cpp: gathering and formatting per-stage timing (stage_timing.h).
#include "comm/stage_timing.h"

#include "comm/mpi_check.h"

namespace gptoss::comm {

StageTiming timing_from_ring(Ring& ring, double busy_us) {
  StageTiming t;
  t.busy_us = busy_us;
  t.idle_us = ring.next().stats().wait_us + ring.prev().stats().wait_us;
  t.bytes_sent = ring.next().stats().payload_bytes + ring.next().stats().header_bytes;
  t.messages_sent = ring.next().stats().messages;
  return t;
}

std::vector<StageTiming> gather_stage_timing(const StageTiming& mine, MPI_Comm comm) {
  int rank = 0, size = 1;
  CHECK_MPI(MPI_Comm_rank(comm, &rank));
  CHECK_MPI(MPI_Comm_size(comm, &size));
  const double v[4] = {mine.busy_us, mine.idle_us, static_cast<double>(mine.bytes_sent),
                       static_cast<double>(mine.messages_sent)};
  std::vector<double> all(rank == 0 ? 4 * static_cast<size_t>(size) : 0);  // [size, 4]
  CHECK_MPI(MPI_Gather(v, 4, MPI_DOUBLE, all.data(), 4, MPI_DOUBLE, 0, comm));
  std::vector<StageTiming> out;
  if (rank != 0) return out;
  for (int r = 0; r < size; ++r) {
    const double* p = &all[4 * static_cast<size_t>(r)];
    out.push_back({p[0], p[1], static_cast<uint64_t>(p[2]), static_cast<uint64_t>(p[3])});
  }
  return out;
}

std::vector<double> stage_busy_pct(const std::vector<StageTiming>& stages) {
  std::vector<double> pct;
  for (const auto& s : stages) {
    const double total = s.busy_us + s.idle_us;
    pct.push_back(total > 0 ? 100.0 * s.busy_us / total : 0.0);
  }
  return pct;
}

std::string format_stage_report(const std::vector<StageTiming>& stages) {
  std::string out;
  const auto pct = stage_busy_pct(stages);
  for (size_t i = 0; i < stages.size(); ++i) {
    out += strfmt("stage %zu busy %.1f%% idle %.1f%% sent %.1f MB in %llu messages\n", i, pct[i],
                  stages[i].busy_us + stages[i].idle_us > 0 ? 100.0 - pct[i] : 0.0,
                  static_cast<double>(stages[i].bytes_sent) / 1e6,
                  static_cast<unsigned long long>(stages[i].messages_sent));
  }
  return out;
}

}  // namespace gptoss::comm
