// fake_gpu.cpp: the CPU stand-in runtime of fake_gpu/gpu/vendor.h and the CPU versions of the
// IPC transport's kernels (comm/ipc_kernels.h). Test-only (comm_ipc_transport_fake_test).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <set>
#include <thread>

#include "comm/ipc_kernels.h"
#include "gpu/vendor.h"

namespace {
std::atomic<uint64_t> g_device_ops{0};  // fake_gpu_device_ops()
}  // namespace

struct FakeStream {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::function<void()>> q;
  bool busy = false, stop = false;
  std::thread worker;
  FakeStream() {
    worker = std::thread([this] {
      std::unique_lock<std::mutex> lk(m);
      for (;;) {
        cv.wait(lk, [&] { return stop || !q.empty(); });
        if (q.empty()) return;  // stop
        auto f = std::move(q.front());
        q.pop_front();
        busy = true;
        lk.unlock();
        f();
        lk.lock();
        busy = false;
        cv.notify_all();
      }
    });
  }
  void push(std::function<void()> f) {
    g_device_ops.fetch_add(1);
    std::lock_guard<std::mutex> lk(m);
    q.push_back(std::move(f));
    cv.notify_all();
  }
  void sync() {
    std::unique_lock<std::mutex> lk(m);
    cv.wait(lk, [&] { return q.empty() && !busy; });
  }
  ~FakeStream() {
    {
      std::lock_guard<std::mutex> lk(m);
      stop = true;
      cv.notify_all();
    }
    worker.join();  // runs what is queued first
  }
};

struct FakeEvent {
  std::atomic<uint64_t> recorded{0}, done{0};
};

namespace {
std::mutex g_mu;
struct Mapping {
  std::string name;
  size_t bytes;
  bool owner;
};
std::map<void*, Mapping> g_maps;  // device allocations and opened handles
std::atomic<unsigned> g_counter{0};

void* map_shm(const std::string& name, size_t bytes, bool create) {
  int fd = shm_open(name.c_str(), create ? (O_CREAT | O_EXCL | O_RDWR) : O_RDWR, 0600);
  if (fd < 0) return nullptr;
  if (create && ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    close(fd);
    return nullptr;
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return p == MAP_FAILED ? nullptr : p;
}
}  // namespace

const char* gpuGetErrorString(gpuError_t e) {
  return e == gpuSuccess ? "no error" : e == gpuErrorNotReady ? "not ready" : "fake GPU failure";
}
gpuError_t gpuGetLastError() { return gpuSuccess; }
gpuError_t gpuGetDeviceCount(int* n) {
  const char* v = std::getenv("GPTOSS_FAKE_GPU_COUNT");
  *n = v ? std::atoi(v) : 1;
  return *n > 0 ? gpuSuccess : gpuErrorFake;
}
gpuError_t gpuSetDevice(int) { return gpuSuccess; }
gpuError_t gpuGetDevice(int* d) {
  *d = 0;
  return gpuSuccess;
}
gpuError_t gpuDeviceGetPCIBusId(char* id, int len, int) {
  std::snprintf(id, static_cast<size_t>(len), "fake:%d", static_cast<int>(getpid()));
  return gpuSuccess;
}
gpuError_t gpuDeviceGetByPCIBusId(int* d, const char* id) {
  char mine[32];
  gpuDeviceGetPCIBusId(mine, sizeof mine, 0);
  if (std::strcmp(mine, id) != 0) return gpuErrorFake;  // another process's: "not visible"
  *d = 0;
  return gpuSuccess;
}
gpuError_t gpuDeviceCanAccessPeer(int* ok, int, int) {
  *ok = 1;
  return gpuSuccess;
}
gpuError_t gpuMalloc(void** p, size_t n) {
  char name[56];
  std::snprintf(name, sizeof name, "/gptoss-fakegpu-%d-%u", static_cast<int>(getpid()),
                g_counter.fetch_add(1));
  *p = map_shm(name, n, true);
  if (!*p) return gpuErrorFake;
  std::lock_guard<std::mutex> lk(g_mu);
  g_maps[*p] = Mapping{name, n, true};
  return gpuSuccess;
}
gpuError_t gpuMallocSignal(void** p, size_t n) { return gpuMalloc(p, n); }
// Live streams: gpuFree waits for all of them first, as cudaFree / hipFree synchronise the device
// (without it a stream thread could still run a queued copy into memory being unmapped).
std::mutex g_streams_mu;
std::set<FakeStream*> g_streams;
gpuError_t gpuFree(void* p) {
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    for (FakeStream* st : g_streams) st->sync();
  }
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_maps.find(p);
  if (it == g_maps.end() || !it->second.owner) return gpuErrorFake;
  munmap(p, it->second.bytes);
  shm_unlink(it->second.name.c_str());
  g_maps.erase(it);
  return gpuSuccess;
}
gpuError_t gpuHostAlloc(void** p, size_t n) {
  *p = std::calloc(1, n);
  return *p ? gpuSuccess : gpuErrorFake;
}
gpuError_t gpuHostAllocMapped(void** p, size_t n) { return gpuHostAlloc(p, n); }
gpuError_t gpuFreeHost(void* p) {
  std::free(p);
  return gpuSuccess;
}
gpuError_t gpuHostGetDevicePointer(void** d, void* h) {
  *d = h;
  return gpuSuccess;
}
gpuError_t gpuHostRegister(void*, size_t) { return gpuSuccess; }
gpuError_t gpuHostUnregister(void*) { return gpuSuccess; }
gpuError_t gpuMemcpy(void* dst, const void* src, size_t n, gpuMemcpyKind) {
  std::memmove(dst, src, n);
  return gpuSuccess;
}
gpuError_t gpuMemcpyAsync(void* dst, const void* src, size_t n, gpuMemcpyKind k, gpuStream_t s) {
  if (!s) return gpuMemcpy(dst, src, n, k);
  s->push([=] { std::memmove(dst, src, n); });
  return gpuSuccess;
}
gpuError_t gpuMemset(void* p, int v, size_t n) {
  std::memset(p, v, n);
  return gpuSuccess;
}
gpuError_t gpuMemsetAsync(void* p, int v, size_t n, gpuStream_t s) {
  if (!s) return gpuMemset(p, v, n);
  s->push([=] { std::memset(p, v, n); });
  return gpuSuccess;
}
gpuError_t gpuDeviceSynchronize() { return gpuSuccess; }
gpuError_t gpuStreamCreate(gpuStream_t* s) {
  *s = new FakeStream;
  std::lock_guard<std::mutex> lk(g_streams_mu);
  g_streams.insert(*s);
  return gpuSuccess;
}
gpuError_t gpuStreamCreateNonBlocking(gpuStream_t* s) { return gpuStreamCreate(s); }
gpuError_t gpuStreamDestroy(gpuStream_t s) {
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    g_streams.erase(s);
  }
  delete s;
  return gpuSuccess;
}
gpuError_t gpuStreamSynchronize(gpuStream_t s) {
  if (s) s->sync();
  return gpuSuccess;
}
gpuError_t gpuEventCreateNoTiming(gpuEvent_t* e) {
  *e = new FakeEvent;
  return gpuSuccess;
}
gpuError_t gpuEventDestroy(gpuEvent_t e) {
  delete e;
  return gpuSuccess;
}
gpuError_t gpuEventRecord(gpuEvent_t e, gpuStream_t s) {
  const uint64_t gen = ++e->recorded;
  if (!s) {
    g_device_ops.fetch_add(1);
    e->done = gen;
    return gpuSuccess;
  }
  s->push([e, gen] { e->done.store(gen, std::memory_order_release); });
  return gpuSuccess;
}
gpuError_t gpuEventQuery(gpuEvent_t e) {
  return e->done.load(std::memory_order_acquire) >= e->recorded.load() ? gpuSuccess
                                                                        : gpuErrorNotReady;
}
gpuError_t gpuEventSynchronize(gpuEvent_t e) {
  while (gpuEventQuery(e) == gpuErrorNotReady) std::this_thread::yield();
  return gpuSuccess;
}
// Work enqueued on s after this waits until the work recorded in e (at the time of this call)
// has run; an event never recorded is complete.
gpuError_t gpuStreamWaitEvent(gpuStream_t s, gpuEvent_t e, unsigned) {
  const uint64_t gen = e->recorded.load();
  if (!s) return gpuEventSynchronize(e);
  s->push([e, gen] {
    while (e->done.load(std::memory_order_acquire) < gen) std::this_thread::yield();
  });
  return gpuSuccess;
}
uint64_t fake_gpu_device_ops() { return g_device_ops.load(); }
void fake_gpu_gate(gpuStream_t s, const std::atomic<bool>* open) {
  s->push([open] {
    while (!open->load(std::memory_order_acquire)) std::this_thread::yield();
  });
}
gpuError_t gpuIpcGetMemHandle(gpuIpcMemHandle_t* h, void* p) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_maps.find(p);
  if (it == g_maps.end() || !it->second.owner) return gpuErrorFake;
  std::memset(h, 0, sizeof *h);
  std::snprintf(h->name, sizeof h->name, "%s", it->second.name.c_str());
  h->bytes = it->second.bytes;
  return gpuSuccess;
}
gpuError_t gpuIpcOpenMemHandle(void** p, const gpuIpcMemHandle_t& h) {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    for (auto& [ptr, m] : g_maps)
      if (m.owner && m.name == h.name) return gpuErrorFake;  // own handle: CUDA refuses too
  }
  *p = map_shm(h.name, h.bytes, false);
  if (!*p) return gpuErrorFake;
  std::lock_guard<std::mutex> lk(g_mu);
  g_maps[*p] = Mapping{h.name, h.bytes, false};
  return gpuSuccess;
}
gpuError_t gpuIpcCloseMemHandle(void* p) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_maps.find(p);
  if (it == g_maps.end() || it->second.owner) return gpuErrorFake;
  munmap(p, it->second.bytes);
  g_maps.erase(it);
  return gpuSuccess;
}

// ---- the kernels of comm/ipc_kernels.h, run by the stream's thread ----
namespace gptoss::comm::ipc {
namespace {
bool wait_at_least(const uint64_t* flag, uint64_t value, uint64_t timeout_ns) {
  std::atomic_ref<const uint64_t> w(*flag);
  const auto t0 = std::chrono::steady_clock::now();
  while (w.load(std::memory_order_acquire) < value) {
    if (static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now() - t0)
                                  .count()) > timeout_ns)
      return false;
    std::this_thread::yield();
  }
  return true;
}
void set_error(uint32_t* w, uint32_t code) {
  std::atomic_ref<uint32_t>(*w).store(code, std::memory_order_release);
}
}  // namespace

void launch_send(void* stream, const SendArgs& a) {
  static_cast<FakeStream*>(stream)->push([a] {
    if (a.credit_needed > 0 && !wait_at_least(a.credit, a.credit_needed, a.timeout_ns)) {
      set_error(a.error_word, kErrCreditWaitTimedOut);
      return;
    }
    std::memcpy(a.dst, a.src, a.bytes);
    std::atomic_ref<uint64_t>(*a.ready).store(a.ready_value, std::memory_order_release);
  });
}
void launch_wait(void* stream, const uint64_t* flag, uint64_t value, uint64_t timeout_ns,
                 uint32_t* error_word, uint32_t error_code) {
  static_cast<FakeStream*>(stream)->push([=] {
    if (!wait_at_least(flag, value, timeout_ns)) set_error(error_word, error_code);
  });
}
void launch_signal(void* stream, uint64_t* flag, uint64_t value) {
  static_cast<FakeStream*>(stream)->push(
      [=] { std::atomic_ref<uint64_t>(*flag).store(value, std::memory_order_release); });
}
}  // namespace gptoss::comm::ipc
