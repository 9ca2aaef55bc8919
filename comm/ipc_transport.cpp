// ipc_transport.cpp: the ring for device payloads (open_gpu_ring, GPU builds): per link GPU IPC
// (ipc_links.h) or host-staged MPI (staged_links.h), chosen at open; one rank: the loopback
// (loopback_transport.h) with device slots.
//
// Start-up (collective, identical decision on both ends of every link; docs/transport.md):
//  1. every rank publishes host name + boot id, its GPU's PCI bus id and whether it allows IPC
//     (LinkSpec::allow_ipc), and its peer-access row towards the others' GPUs (a GPU it cannot
//     see counts as "try");
//  2. link a -> a+1 is tried as IPC when both ranks allow it, are on one host and reach each
//     other's GPU both ways (or share one); the ends are created and their handles exchanged;
//  3. each rank opens its peers' handles and publishes which opens failed: such a link becomes
//     host-staged MPI on both ends. The shm segments are unlinked after the final barrier.
// A rank without any GPU gets plain MPI links with host payloads.
#include "comm/ipc_transport.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "comm/ipc_common.h"
#include "comm/ipc_links.h"
#include "comm/loopback_transport.h"
#include "comm/mpi_check.h"
#include "comm/mpi_transport.h"
#include "comm/staged_links.h"
#include "comm/world.h"
#include "gpu/vendor.h"

namespace gptoss::comm {

namespace {

using namespace detail;

// This process's current GPU, or -1 without one (the runtime's error is cleared).
int current_gpu() {
  int count = 0, dev = -1;
  if (gpuGetDeviceCount(&count) == gpuSuccess && count > 0 && gpuGetDevice(&dev) == gpuSuccess)
    return dev;
  (void)gpuGetLastError();  // clear the no-device error
  return -1;
}

// What every rank tells the others before the per-link choice.
struct RankInfo {
  char host[128];
  char boot_id[48];
  char bus_id[32];  // PCI bus id of this rank's GPU ("" without one)
  int32_t has_gpu;
  int32_t ipc_disabled;
};

void read_boot_id(char* out, size_t n) {
  std::memset(out, 0, n);
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    if (!std::fgets(out, static_cast<int>(n), f)) out[0] = 0;
    std::fclose(f);
  }
}

class GpuRing final : public Ring {
 public:
  GpuRing(MPI_Comm comm, const LinkSpec& spec) : spec_(spec) {
    CHECK_MPI(MPI_Comm_rank(comm, &rank_));
    CHECK_MPI(MPI_Comm_size(comm, &size_));
    const uint64_t words[6] = {static_cast<uint64_t>(spec.slots),
                               spec.max_rows,
                               spec.max_payload_bytes,
                               static_cast<uint64_t>(spec.payload_memory),
                               static_cast<uint64_t>(spec.channel),
                               0x6970636eull};
    uint64_t hsh = 0xcbf29ce484222325ull;
    for (uint64_t w : words) hsh = (hsh ^ w) * 0x100000001b3ull;
    check_same_on_all_ranks("ring transport spec", hsh, describe_spec(), comm);
    CHECK_MPI(MPI_Comm_dup(comm, &comm_));
    CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    const int n = size_, me = rank_, next = (me + 1) % n, prev = (me + n - 1) % n;

    // 1. Who is where, and which GPU can reach which.
    RankInfo mine{};
    gethostname(mine.host, sizeof mine.host - 1);
    read_boot_id(mine.boot_id, sizeof mine.boot_id);
    mine.ipc_disabled = !spec.allow_ipc;
    const int dev = current_gpu();
    if (dev >= 0) {
      mine.has_gpu = 1;
      GPU_CHECK(gpuDeviceGetPCIBusId(mine.bus_id, sizeof mine.bus_id - 1, dev));
    }
    std::vector<RankInfo> all(static_cast<size_t>(n));
    CHECK_MPI(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, comm_));
    // can[a*n+b]: 0 rank a's GPU cannot reach rank b's, 1 it can (same GPU, or peer access),
    // 2 unknown (b's GPU is not visible to a, e.g. narrowed CUDA_VISIBLE_DEVICES: IPC may still
    // work, so it is tried).
    std::vector<uint8_t> row(static_cast<size_t>(n), 0), can(static_cast<size_t>(n) * n, 0);
    for (int j = 0; j < n; ++j) {
      const RankInfo& o = all[static_cast<size_t>(j)];
      if (!mine.has_gpu || !o.has_gpu || std::strcmp(o.host, mine.host) != 0 ||
          std::strcmp(o.boot_id, mine.boot_id) != 0)
        continue;
      if (std::strcmp(o.bus_id, mine.bus_id) == 0) {
        row[static_cast<size_t>(j)] = 1;  // the same GPU (or this rank itself)
        continue;
      }
      int other = -1, ok = 0;
      if (gpuDeviceGetByPCIBusId(&other, o.bus_id) != gpuSuccess) {
        (void)gpuGetLastError();
        row[static_cast<size_t>(j)] = 2;
        continue;
      }
      if (gpuDeviceCanAccessPeer(&ok, dev, other) != gpuSuccess) {
        (void)gpuGetLastError();
        ok = 0;
      }
      row[static_cast<size_t>(j)] = ok ? 1 : 0;
    }
    CHECK_MPI(MPI_Allgather(row.data(), n, MPI_BYTE, can.data(), n, MPI_BYTE, comm_));
    // Why link a -> a+1 cannot use IPC ("" = it can try); the same answer on every rank.
    auto no_ipc_reason = [&](int a) -> std::string {
      const int b = (a + 1) % n;
      const RankInfo &ra = all[static_cast<size_t>(a)], &rb = all[static_cast<size_t>(b)];
      if (ra.ipc_disabled || rb.ipc_disabled) return "IPC disabled";
      if (!ra.has_gpu || !rb.has_gpu) return "no GPU";
      if (std::strcmp(ra.host, rb.host) != 0 || std::strcmp(ra.boot_id, rb.boot_id) != 0)
        return "different hosts";
      if (!can[static_cast<size_t>(a) * n + b] || !can[static_cast<size_t>(b) * n + a])
        return "no peer access";
      return "";
    };
    send_why_ = no_ipc_reason(me);
    recv_why_ = no_ipc_reason(prev);
    has_gpu_ = mine.has_gpu != 0;

    // 2. Create this rank's IPC ends and export them.
    static std::atomic<unsigned> opened{0};
    Exports ex{};
    std::unique_ptr<IpcRecvLink> ipc_recv;
    std::unique_ptr<IpcSendLink> ipc_send;
    if (recv_why_.empty()) {
      std::snprintf(ex.shm_name, sizeof ex.shm_name, "/gptoss-ipc-%d-%d-%d-%u", (int)getpid(), me,
                    spec.channel, opened.fetch_add(1));
      ipc_recv = std::make_unique<IpcRecvLink>(me, prev, spec, ex.shm_name);
      ipc_recv->export_to(ex);
    }
    if (send_why_.empty()) {
      ipc_send = std::make_unique<IpcSendLink>(me, next, spec);
      ipc_send->export_to(ex);
    }
    std::vector<Exports> exs(static_cast<size_t>(n));
    CHECK_MPI(MPI_Allgather(&ex, sizeof ex, MPI_BYTE, exs.data(), sizeof ex, MPI_BYTE, comm_));

    // 3. Open the peers' ends. An open that fails turns that link into an MPI link on both ends.
    struct Opened {
      int32_t send_ok, recv_ok;  // this rank opened its send link's / receive link's peer end
      char why[96];
    };
    Opened op{};
    if (ipc_recv) {
      try {
        ipc_recv->connect(exs[static_cast<size_t>(prev)].sync);
        op.recv_ok = 1;
      } catch (const Error& e) {
        (void)gpuGetLastError();
        std::snprintf(op.why, sizeof op.why, "%s", e.what());
      }
    }
    if (ipc_send) {
      const Exports& theirs = exs[static_cast<size_t>(next)];
      try {
        ipc_send->connect(theirs.shm_name, theirs.slots, theirs.ready);
        op.send_ok = 1;
      } catch (const Error& e) {
        (void)gpuGetLastError();
        std::snprintf(op.why, sizeof op.why, "%s", e.what());
      }
    }
    std::vector<Opened> ops(static_cast<size_t>(n));
    CHECK_MPI(MPI_Allgather(&op, sizeof op, MPI_BYTE, ops.data(), sizeof op, MPI_BYTE, comm_));
    auto open_failed = [&](int a) -> std::string {  // link a -> a+1 after the attempt
      const int b = (a + 1) % n;
      const Opened &oa = ops[static_cast<size_t>(a)], &ob = ops[static_cast<size_t>(b)];
      if (oa.send_ok && ob.recv_ok) return "";
      return strfmt("IPC open failed on rank %d: %s", oa.send_ok ? b : a,
                    oa.send_ok ? ob.why : oa.why);
    };
    if (send_why_.empty()) send_why_ = open_failed(me);
    if (recv_why_.empty()) recv_why_ = open_failed(prev);

    // MPI links: host slots, wrapped into device slots (host-staged) when this rank has a GPU.
    LinkSpec host_spec = spec;
    host_spec.payload_memory = MemoryKind::Host;
    StagedRecvLink* staged_recv = nullptr;
    StagedSendLink* staged_send = nullptr;
    if (recv_why_.empty()) {
      recv_ = std::move(ipc_recv);
    } else if (mine.has_gpu) {
      auto r = std::make_unique<StagedRecvLink>(open_mpi_recv_link(comm_, prev, host_spec), spec);
      staged_recv = r.get();
      recv_ = std::move(r);
    } else {
      recv_ = open_mpi_recv_link(comm_, prev, host_spec);
    }
    if (send_why_.empty()) {
      send_ = std::move(ipc_send);
    } else if (mine.has_gpu) {
      auto t = std::make_unique<StagedSendLink>(open_mpi_send_link(comm_, next, host_spec), spec);
      staged_send = t.get();
      send_ = std::move(t);
    } else {
      send_ = open_mpi_send_link(comm_, next, host_spec);
    }
    if (staged_recv || staged_send) {
      std::function<bool()> hook = [staged_send, staged_recv] {
        const bool a = staged_send ? staged_send->forward() : true;
        const bool b = staged_recv ? staged_recv->forward() : true;
        return a && b;
      };
      if (auto* l = dynamic_cast<IpcSendLink*>(send_.get())) l->progress.hook = hook;
      if (auto* l = dynamic_cast<IpcRecvLink*>(recv_.get())) l->progress.hook = hook;
      if (staged_send) staged_send->progress.hook = hook;
      if (staged_recv) staged_recv->progress.hook = hook;
    }
    // Every mapping is open and every MPI receive of the first K messages posted.
    CHECK_MPI(MPI_Barrier(comm_));
    ipc_send.reset();  // ends of links that fell back to MPI
    ipc_recv.reset();
    if (auto* r = dynamic_cast<IpcRecvLink*>(recv_.get())) r->unlink_shm();
  }
  ~GpuRing() override {
    send_.reset();
    recv_.reset();
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  SendLink& next() override { return *send_; }
  RecvLink& prev() override { return *recv_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
    return strfmt("send %d->%d %s, receive %d->%d %s; %s", rank_, next, kind(send_why_).c_str(),
                  prev, rank_, kind(recv_why_).c_str(), describe_spec().c_str());
  }

 private:
  std::string kind(const std::string& why) const {
    if (why.empty()) return "gpu-ipc (device slots, peer copy)";
    return (has_gpu_ ? "mpi (host-staged: " : "mpi (host payload: ") + why + ")";
  }
  std::string describe_spec() const {
    return strfmt("%d slots x %u rows x %zu payload bytes, channel %d", spec_.slots, spec_.max_rows,
                  spec_.max_payload_bytes, spec_.channel);
  }
  LinkSpec spec_;
  int rank_ = 0, size_ = 1;
  std::string send_why_, recv_why_;  // why a link is not IPC ("" = it is)
  bool has_gpu_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::unique_ptr<SendLink> send_;
  std::unique_ptr<RecvLink> recv_;
};

}  // namespace

std::unique_ptr<Ring> open_gpu_ring(MPI_Comm comm, const LinkSpec& spec) {
  check_gpu_spec(spec);
  if (spec.device >= 0) {
    const gpuError_t e = gpuSetDevice(spec.device);
    if (e != gpuSuccess)
      fail("transport: cannot select GPU %d for the ring's links: %s", spec.device,
           gpuGetErrorString(e));
  }
  int size = 0;
  CHECK_MPI(MPI_Comm_size(comm, &size));
  if (size == 1) {
    if (current_gpu() >= 0)
      return open_loopback_ring(spec, device_loopback_payloads(spec), ", device slots");
    LinkSpec host = spec;
    host.payload_memory = MemoryKind::Host;
    return open_loopback_ring(host, host_loopback_payloads(host), ", host payload: no GPU");
  }
  return std::make_unique<GpuRing>(comm, spec);
}

}  // namespace gptoss::comm
