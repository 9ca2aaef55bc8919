// link_common.h: what the MPI and the GPU IPC transports share (not part of the transport
// interface): slot sizes, the LinkSpec checks both make, and the blocking wait with its timeout
// (which the pipeline also uses for rank 0's bounded wait in a chat turn).
#pragma once
#include <time.h>

#include <chrono>
#include <cstddef>

#include "comm/transport.h"
#include "common/error.h"

namespace gptoss::comm::detail {

inline size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// One slot's header: the message header and max_rows row headers.
inline size_t header_capacity_bytes(const LinkSpec& s) {
  return sizeof(MsgHeader) + sizeof(RowHeader) * static_cast<size_t>(s.max_rows);
}

// The checks every transport makes (its own, e.g. the payload memory kind, come after).
inline void check_common_spec(const LinkSpec& s) {
  if (s.slots < 1 || s.slots > 64) fail("transport: slots must be 1..64 (got %d)", s.slots);
  if (s.max_rows < 1) fail("transport: max_rows must be at least 1");
  if (s.channel < 0 || s.channel > 63) fail("transport: channel must be 0..63 (got %d)", s.channel);
  if (!(s.timeout_s > 0)) fail("transport: timeout_s must be positive");
}

using Clock = std::chrono::steady_clock;
inline double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// Blocking wait: calls ready() (which must drive the link's progress) until it returns true;
// spins for spec.spin_us, then sleeps 20 us between polls (ranks may share cores). Adds the time
// waited to *wait_us; throws Error(what()) after spec.timeout_s.
template <class Ready, class What>
void wait_until(const LinkSpec& spec, double* wait_us, Ready&& ready, What&& what) {
  if (ready()) return;
  const auto t0 = Clock::now();
  for (;;) {
    if (ready()) break;
    const double el = us_since(t0);
    if (el > spec.timeout_s * 1e6) {
      *wait_us += el;
      throw Error(what());
    }
    if (el > spec.spin_us) {
      struct timespec ts {
        0, 20000
      };
      nanosleep(&ts, nullptr);
    }
  }
  *wait_us += us_since(t0);
}

}  // namespace gptoss::comm::detail
