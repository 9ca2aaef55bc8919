// fake_gpu/gpu/vendor.h: a CPU stand-in for kernels/gpu/vendor.h, used ONLY by the test target
// comm_ipc_transport_fake_test, so that the IPC transport's host protocol (shared-memory headers,
// sequence and credit words, per-slot ready/credit words, wraparound, back-pressure, the
// host-staged MPI fallback, the ring's start-up) runs on CPU-only machines and in CI.
//  - device memory: a POSIX shm segment per allocation (so "IPC handles" can be opened by the
//    other process of the link); host memory: malloc.
//  - streams: one worker thread each, running enqueued work in order; events: markers in it.
//  - kernels (fake_gpu.cpp implements comm/ipc_kernels.h): host functions run by the stream's
//    thread with std::atomic_ref acquire/release on the flag words.
//  - test hooks (no real runtime has them, hence GPTOSS_FAKE_GPU): a count of the device work
//    enqueued, and a gate that holds a stream until the test opens it.
// It does not model GPU memory ordering or performance: that is what the GPU run checks.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/error.h"

#define GPU_RT_NAME "fake GPU"
#define GPTOSS_FAKE_GPU 1
using gpuError_t = int;
struct FakeStream;
struct FakeEvent;
using gpuStream_t = FakeStream*;
using gpuEvent_t = FakeEvent*;
struct gpuIpcMemHandle_t {
  char name[56];
  uint64_t bytes;
};
enum gpuMemcpyKind { gpuMemcpyHostToDevice, gpuMemcpyDeviceToHost, gpuMemcpyDeviceToDevice };
inline constexpr gpuError_t gpuSuccess = 0;
inline constexpr gpuError_t gpuErrorNotReady = 600;
inline constexpr gpuError_t gpuErrorFake = 1;

const char* gpuGetErrorString(gpuError_t e);
gpuError_t gpuGetLastError();
gpuError_t gpuGetDeviceCount(int* n);  // 1, or GPTOSS_FAKE_GPU_COUNT
gpuError_t gpuSetDevice(int d);
gpuError_t gpuGetDevice(int* d);
gpuError_t gpuDeviceGetPCIBusId(char* id, int len, int d);  // unique per process
gpuError_t gpuDeviceGetByPCIBusId(int* d, const char* id);  // only its own: others "not visible"
gpuError_t gpuDeviceCanAccessPeer(int* ok, int d, int peer);
gpuError_t gpuMalloc(void** p, size_t n);
gpuError_t gpuMallocSignal(void** p, size_t n);
gpuError_t gpuFree(void* p);
gpuError_t gpuHostAlloc(void** p, size_t n);
gpuError_t gpuHostAllocMapped(void** p, size_t n);
gpuError_t gpuFreeHost(void* p);
gpuError_t gpuHostGetDevicePointer(void** d, void* h);
gpuError_t gpuHostRegister(void* p, size_t n);
gpuError_t gpuHostUnregister(void* p);
gpuError_t gpuMemcpy(void* dst, const void* src, size_t n, gpuMemcpyKind k);
gpuError_t gpuMemcpyAsync(void* dst, const void* src, size_t n, gpuMemcpyKind k, gpuStream_t s);
gpuError_t gpuMemset(void* p, int v, size_t n);
gpuError_t gpuMemsetAsync(void* p, int v, size_t n, gpuStream_t s);
gpuError_t gpuDeviceSynchronize();
gpuError_t gpuStreamCreate(gpuStream_t* s);
gpuError_t gpuStreamCreateNonBlocking(gpuStream_t* s);
gpuError_t gpuStreamDestroy(gpuStream_t s);
gpuError_t gpuStreamSynchronize(gpuStream_t s);
gpuError_t gpuEventCreateNoTiming(gpuEvent_t* e);
gpuError_t gpuEventDestroy(gpuEvent_t e);
gpuError_t gpuEventRecord(gpuEvent_t e, gpuStream_t s);
gpuError_t gpuEventQuery(gpuEvent_t e);
gpuError_t gpuEventSynchronize(gpuEvent_t e);
gpuError_t gpuStreamWaitEvent(gpuStream_t s, gpuEvent_t e, unsigned flags);
gpuError_t gpuIpcGetMemHandle(gpuIpcMemHandle_t* h, void* p);
gpuError_t gpuIpcOpenMemHandle(void** p, const gpuIpcMemHandle_t& h);
gpuError_t gpuIpcCloseMemHandle(void* p);

// Test hooks. fake_gpu_device_ops(): operations enqueued on streams (copies, memsets, kernels,
// event records, event waits) plus events recorded on the null stream, by this process so far.
// fake_gpu_gate(s, open): enqueues on s a wait until *open is true (later work on s waits too).
uint64_t fake_gpu_device_ops();
void fake_gpu_gate(gpuStream_t s, const std::atomic<bool>* open);

#define GPU_CHECK(call)                                                                         \
  do {                                                                                          \
    gpuError_t e_ = (call);                                                                     \
    if (e_ != gpuSuccess)                                                                       \
      throw ::gptoss::Error(::gptoss::strfmt("%s error %s in %s (%s:%d)", GPU_RT_NAME,          \
                                             gpuGetErrorString(e_), #call, __FILE__, __LINE__)); \
  } while (0)
#define GPU_CHECK_LAUNCH() GPU_CHECK(gpuGetLastError())
