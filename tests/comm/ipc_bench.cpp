// ipc_bench.cpp: one-way time and bandwidth of the ring transport between two ranks (mpirun -np 2,
// one GPU each), printed by rank 0 as a markdown table:
//   ping-pong: rank 0 posts a message of R rows x 2880 fp32 to rank 1, which forwards it back with
//     no host synchronisation (receive_on + post_on on one stream: the send waits for the payload
//     on the device); rank 0 waits until the payload is back (receive_on + stream sync).
//     one-way us = median round trip / 2 (host API calls, launches, device waits and the copy).
//   streaming: rank 0 posts `iters` messages back to back (K slots in flight) to rank 1, which
//     receives, waits for each payload on its stream and releases; GB/s = bytes / time at rank 1.
// Usage: ipc_bench [--rows 1,16,64,256,512] [--iters N] [--slots K] [--transport auto|mpi]
// [--copy-blocks N]. --transport mpi (LinkSpec::allow_ipc = false) measures the MPI (host-staged)
// fallback instead; --copy-blocks caps the IPC copy kernel's grid (LinkSpec::copy_blocks, 64).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm/device_pick.h"
#include "comm/ipc_transport.h"
#include "comm/world.h"
#include "gpu/vendor.h"

using namespace gptoss;
using namespace gptoss::comm;

namespace {
constexpr uint32_t kHidden = 2880;
double now_us() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

int main(int argc, char** argv) {
  return mpi_guarded_main("ipc_bench", &argc, &argv, [&](World& w) {
    std::vector<uint32_t> rows_list = {1, 16, 64, 256, 512};
    int iters = 2000, slots = 4, copy_blocks = 64;
    bool allow_ipc = true;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--rows" && i + 1 < argc) {
        rows_list.clear();
        for (const char* p = argv[++i]; *p;) {
          rows_list.push_back(static_cast<uint32_t>(std::strtoul(p, const_cast<char**>(&p), 10)));
          if (*p == ',') ++p;
        }
      } else if (a == "--iters" && i + 1 < argc) {
        iters = std::atoi(argv[++i]);
      } else if (a == "--slots" && i + 1 < argc) {
        slots = std::atoi(argv[++i]);
      } else if (a == "--copy-blocks" && i + 1 < argc) {
        copy_blocks = std::atoi(argv[++i]);
      } else if (a == "--transport" && i + 1 < argc) {
        const std::string t = argv[++i];
        if (t != "auto" && t != "mpi") fail("ipc_bench: --transport must be auto or mpi (got %s)", t.c_str());
        allow_ipc = t == "auto";
      } else {
        fail("ipc_bench: unknown argument %s (usage: ipc_bench [--rows 1,64] [--iters N] "
             "[--slots K] [--transport auto|mpi] [--copy-blocks N])",
             a.c_str());
      }
    }
    if (w.size() != 2) fail("ipc_bench: run with exactly 2 ranks (mpirun -np 2)");
    int count = 0;
    if (gpuGetDeviceCount(&count) != gpuSuccess || count < 1) fail("ipc_bench: no GPU present");
    const int dev = pick_local_device(count);
    gpuDeviceProp prop;
    GPU_CHECK(gpuGetDeviceProperties(&prop, dev));
    const uint32_t max_rows = *std::max_element(rows_list.begin(), rows_list.end());
    LinkSpec spec;
    spec.slots = slots;
    spec.max_rows = max_rows;
    spec.max_payload_bytes = size_t(max_rows) * kHidden * sizeof(float);
    spec.payload_memory = MemoryKind::Device;
    spec.timeout_s = 60;
    spec.spin_us = 1e7;  // measure the transport, not the sleep granularity of blocking waits
    spec.device = dev;   // open_gpu_ring selects it
    spec.allow_ipc = allow_ipc;
    spec.copy_blocks = copy_blocks;
    auto ring = open_gpu_ring(w.comm(), spec);
    const std::string desc = ring->describe();
    {
      char mine[512] = {}, all[2][512] = {};
      std::snprintf(mine, sizeof mine, "%s", desc.c_str());
      MPI_Gather(mine, 512, MPI_CHAR, all, 512, MPI_CHAR, 0, w.comm());
      if (w.rank() == 0)
        std::printf("rank 0 (%s): %s\nrank 1: %s\n", prop.name, all[0], all[1]);
    }
    gpuStream_t st;
    GPU_CHECK(gpuStreamCreateNonBlocking(&st));
    const bool dev_next = ring->next().spec().payload_memory == MemoryKind::Device;
    if (w.rank() == 0) {
      std::printf("\n| transport | rows | bytes | one-way us (median) | one-way us (p90) | "
                  "GB/s one-way | streaming GB/s |\n|---|---|---|---|---|---|---|\n");
    }
    for (uint32_t rows : rows_list) {
      const size_t bytes = size_t(rows) * kHidden * sizeof(float);
      const int n = std::max(20, rows >= 256 ? iters / 4 : iters);
      std::vector<double> rtt;
      MPI_Barrier(w.comm());
      // Ping-pong (the first 10 round trips are warm-up).
      for (int it = 0; it < n + 10; ++it) {
        if (w.rank() == 0) {
          const double t0 = now_us();
          Slot& s = ring->next().acquire();
          s.header->rows = rows;
          s.header->payload_bytes = bytes;
          ring->next().post_on(s, st);
          const Slot& r = ring->prev().receive_on(st);
          if (r.header->rows != rows) fail("ipc_bench: wrong message back");
          GPU_CHECK(gpuStreamSynchronize(st));  // the payload is here
          const double t1 = now_us();
          ring->prev().release_on(r, st);
          if (it >= 10) rtt.push_back(t1 - t0);
        } else {
          const Slot& in = ring->prev().receive_on(st);
          Slot& out = ring->next().acquire();
          std::memcpy(out.header, in.header, sizeof(MsgHeader));
          if (out.payload_memory == MemoryKind::Host && in.payload_memory == MemoryKind::Host)
            std::memcpy(out.payload, in.payload, in.header->payload_bytes);
          ring->next().post_on(out, st);
          ring->prev().release_on(in, st);
        }
      }
      ring->next().drain();
      GPU_CHECK(gpuStreamSynchronize(st));
      MPI_Barrier(w.comm());
      // Streaming 0 -> 1.
      double stream_gbs = 0;
      const int ns = std::max(20, rows >= 256 ? iters / 4 : iters);
      if (w.rank() == 0) {
        for (int it = 0; it < ns; ++it) {
          Slot& s = ring->next().acquire();
          s.header->rows = rows;
          s.header->payload_bytes = bytes;
          ring->next().post_on(s, st);
        }
        ring->next().drain();
        MPI_Recv(&stream_gbs, 1, MPI_DOUBLE, 1, 7, w.comm(), MPI_STATUS_IGNORE);
      } else {
        double t0 = 0;
        for (int it = 0; it < ns; ++it) {
          const Slot& in = ring->prev().receive_on(st);
          if (it == 0) {
            GPU_CHECK(gpuStreamSynchronize(st));
            t0 = now_us();  // from the first payload's arrival
          }
          ring->prev().release_on(in, st);
        }
        GPU_CHECK(gpuStreamSynchronize(st));
        const double t1 = now_us();
        stream_gbs = double(bytes) * (ns - 1) / ((t1 - t0) * 1e3);
        MPI_Send(&stream_gbs, 1, MPI_DOUBLE, 0, 7, w.comm());
      }
      ring->next().drain();
      MPI_Barrier(w.comm());
      if (w.rank() == 0) {
        std::sort(rtt.begin(), rtt.end());
        const double med = rtt[rtt.size() / 2] / 2, p90 = rtt[rtt.size() * 9 / 10] / 2;
        std::printf("| %s | %u | %zu | %.1f | %.1f | %.2f | %.2f |\n",
                    dev_next ? "gpu-ipc" : "mpi host-staged", rows, bytes, med, p90,
                    double(bytes) / (med * 1e3), stream_gbs);
        std::fflush(stdout);
      }
    }
    (void)gpuStreamDestroy(st);
    return 0;
  });
}
