// fault_probe.cpp: an MPI program that injects faults into a running ring, for the fault tests
// (tests/comm/expect_job_fails.sh checks that the whole job ends quickly with a message naming
// the rank and the cause):
//   fault_probe kill R     rank R SIGKILLs itself after 50 messages of a relay around the ring
//   fault_probe throw R    rank R throws an Error after 50 messages
//   fault_probe stall R    rank R stops taking part (sleeps) after 50 messages; peers time out (2
//   s) fault_probe model A B R   every rank checks model file A (format 1), rank R checks file B
//   fault_probe ok         relays 200 messages and exits 0
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "comm/transport.h"
#include "comm/world.h"

using namespace gptoss;
using namespace gptoss::comm;

namespace {

// Rank 0 keeps 3 micro-batches circulating; others receive, forward, release. `fault(count)` is
// called on every rank after each message it handled.
template <class Fault>
void relay(const World& w, uint64_t total, double timeout_s, Fault&& fault) {
  LinkSpec spec;
  spec.slots = 3;
  spec.max_rows = 4;
  spec.max_payload_bytes = 4 * 2880 * 4;
  spec.timeout_s = timeout_s;
  auto ring = open_ring(w.comm(), spec);
  uint64_t injected = 0, done = 0;
  while (done < total) {
    if (w.rank() == 0) {
      while (injected < total && injected - done < 3) {
        Slot& s = ring->next().acquire();
        s.header->rows = 4;
        s.header->payload_bytes = 4 * 2880 * 4;
        s.header->micro_batch_id = static_cast<uint32_t>(injected);
        ring->next().post(s);
        ++injected;
      }
      const Slot& r = ring->prev().receive();
      if (r.header->micro_batch_id != static_cast<uint32_t>(done)) fail("relay out of order");
      ring->prev().release(r);
    } else {
      const Slot& in = ring->prev().receive();
      Slot& out = ring->next().acquire();
      std::memcpy(out.header, in.header, sizeof(MsgHeader));
      std::memcpy(out.payload, in.payload, in.header->payload_bytes);
      ring->next().post(out);
      ring->prev().release(in);
    }
    ++done;
    fault(done);
  }
  ring->next().drain();
}

}  // namespace

int main(int argc, char** argv) {
  return mpi_guarded_main("fault_probe", &argc, &argv, [&](World& w) {
    const std::string mode = argc > 1 ? argv[1] : "";
    const int target = argc > 2 ? std::atoi(argv[argc - 1]) : -1;
    if (mode == "ok") {
      relay(w, 200, 30, [](uint64_t) {});
    } else if (mode == "kill") {
      relay(w, 1000000000, 600, [&](uint64_t n) {
        if (w.rank() == target && n == 50) raise(SIGKILL);
      });
    } else if (mode == "throw") {
      relay(w, 1000000000, 600, [&](uint64_t n) {
        if (w.rank() == target && n == 50)
          fail("injected failure after %llu messages", (unsigned long long)n);
      });
    } else if (mode == "stall") {
      relay(w, 1000000000, 2, [&](uint64_t n) {
        if (w.rank() == target && n == 50) sleep(1000);
      });
    } else if (mode == "model" && argc == 5) {
      const char* path = w.rank() == target ? argv[3] : argv[2];
      check_same_model_on_all_ranks(path, 1);
      if (w.rank() == 0) std::printf("fault_probe: all %d ranks have the same model\n", w.size());
    } else {
      fail("usage: fault_probe ok | kill R | throw R | stall R | model A B R");
    }
    return 0;
  });
}
