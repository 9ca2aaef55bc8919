// vendor.h: the ONLY file that includes a GPU runtime header or names the CUDA/HIP API.
// Kernels and host code use the gpu* names below; the same sources build with nvcc (CUDA) and with
// hipcc (HIP, gfx90a). Wave size is a per-target constant (kWaveSize), never a literal 32.
// Per-target limits (shared memory / LDS per block, threads per block, wave size): kTarget, one of
// target.h's GpuTargets (kept there, free of the runtime, so the CPU build's tests see both).
#pragma once
#include "gpu/target.h"


#if defined(GPTOSS_HIP)
#include <hip/hip_runtime.h>
#if __has_include(<hip/hip_bf16.h>)  // absent from Debian's HIP 5.2; the kernels use raw bf16 bits
#include <hip/hip_bf16.h>
#endif
#define GPU_RT_NAME "HIP"
using gpuError_t = hipError_t;
using gpuStream_t = hipStream_t;
using gpuEvent_t = hipEvent_t;
using gpuGraph_t = hipGraph_t;
using gpuGraphExec_t = hipGraphExec_t;
using gpuDeviceProp = hipDeviceProp_t;
using gpuIpcMemHandle_t = hipIpcMemHandle_t;
#define gpuSuccess hipSuccess
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuSetDevice hipSetDevice
#define gpuGetDevice hipGetDevice
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuHostAlloc(p, n) hipHostMalloc((p), (n), hipHostMallocDefault)
#define gpuFreeHost hipHostFree
#define gpuMemcpy hipMemcpy
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemset hipMemset
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemGetInfo hipMemGetInfo
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuStreamCreate hipStreamCreate
#define gpuStreamCreateNonBlocking(s) hipStreamCreateWithFlags((s), hipStreamNonBlocking)
#define gpuStreamDestroy hipStreamDestroy
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuDeviceSynchronize hipDeviceSynchronize
#define gpuEventCreate hipEventCreate
#define gpuEventDestroy hipEventDestroy
#define gpuEventRecord hipEventRecord
#define gpuEventSynchronize hipEventSynchronize
#define gpuEventElapsedTime hipEventElapsedTime
#define gpuStreamWaitEvent hipStreamWaitEvent
#define gpuStreamBeginCapture(s) hipStreamBeginCapture((s), hipStreamCaptureModeThreadLocal)
#define gpuStreamEndCapture hipStreamEndCapture
#define gpuGraphInstantiate(e, g) hipGraphInstantiate((e), (g), nullptr, nullptr, 0)
#define gpuGraphLaunch hipGraphLaunch
#define gpuGraphDestroy hipGraphDestroy
#define gpuGraphExecDestroy hipGraphExecDestroy
#define gpuFuncSetAttribute(f, a, v) hipFuncSetAttribute(reinterpret_cast<const void*>(f), (a), (v))
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define gpuIpcGetMemHandle hipIpcGetMemHandle
#define gpuIpcOpenMemHandle(p, h) hipIpcOpenMemHandle((p), (h), hipIpcMemLazyEnablePeerAccess)
#define gpuIpcCloseMemHandle hipIpcCloseMemHandle
// Added for the IPC transport (comm/ipc_transport.cpp): peers, events, mapped host memory.
#define gpuErrorNotReady hipErrorNotReady
#define gpuEventQuery hipEventQuery
#define gpuEventCreateNoTiming(e) hipEventCreateWithFlags((e), hipEventDisableTiming)
#define gpuDeviceCanAccessPeer hipDeviceCanAccessPeer
#define gpuDeviceGetPCIBusId hipDeviceGetPCIBusId
#define gpuDeviceGetByPCIBusId hipDeviceGetByPCIBusId
#define gpuHostAllocMapped(p, n) hipHostMalloc((p), (n), hipHostMallocMapped)
#define gpuHostGetDevicePointer(d, h) hipHostGetDevicePointer((d), (h), 0)
#define gpuHostRegister(p, n) hipHostRegister((p), (n), hipHostRegisterDefault)
#define gpuHostUnregister hipHostUnregister
// Device memory that kernels poll while another device writes it (flags): fine-grained on AMD.
#define gpuMallocSignal(p, n) hipExtMallocWithFlags((p), (n), hipDeviceMallocFinegrained)
// Device side: a wall clock in ns (s_memrealtime counts at a constant 100 MHz on gfx9/gfx90a) and
// a short sleep for polling loops.
#if defined(__HIPCC__)  // hipcc (host and device passes); not host-compiler HOST sources
__device__ inline unsigned long long gpu_wall_clock_ns() {
  return static_cast<unsigned long long>(__builtin_amdgcn_s_memrealtime()) * 10ull;
}
__device__ inline void gpu_sleep_briefly() { __builtin_amdgcn_s_sleep(8); }
#endif
namespace gptoss::gpu {
inline constexpr const GpuTarget& kTarget = kGfx90a;
}
inline constexpr int kWaveSize = gptoss::gpu::kGfx90a.wave_size;  // 64
using gpu_lane_mask_t = unsigned long long;
inline constexpr gpu_lane_mask_t kAllLanes = ~0ull;
// HIP's shuffles take no mask.
#define gpu_shfl_xor(v, m) __shfl_xor((v), (m), kWaveSize)
#define gpu_shfl(v, l) __shfl((v), (l), kWaveSize)
#define gpu_shfl_down(v, d) __shfl_down((v), (d), kWaveSize)

#else  // CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define GPU_RT_NAME "CUDA"
using gpuError_t = cudaError_t;
using gpuStream_t = cudaStream_t;
using gpuEvent_t = cudaEvent_t;
using gpuGraph_t = cudaGraph_t;
using gpuGraphExec_t = cudaGraphExec_t;
using gpuDeviceProp = cudaDeviceProp;
using gpuIpcMemHandle_t = cudaIpcMemHandle_t;
#define gpuSuccess cudaSuccess
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuSetDevice cudaSetDevice
#define gpuGetDevice cudaGetDevice
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuHostAlloc(p, n) cudaHostAlloc((p), (n), cudaHostAllocDefault)
#define gpuFreeHost cudaFreeHost
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemset cudaMemset
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemGetInfo cudaMemGetInfo
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuStreamCreate cudaStreamCreate
#define gpuStreamCreateNonBlocking(s) cudaStreamCreateWithFlags((s), cudaStreamNonBlocking)
#define gpuStreamDestroy cudaStreamDestroy
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuDeviceSynchronize cudaDeviceSynchronize
#define gpuEventCreate cudaEventCreate
#define gpuEventDestroy cudaEventDestroy
#define gpuEventRecord cudaEventRecord
#define gpuEventSynchronize cudaEventSynchronize
#define gpuEventElapsedTime cudaEventElapsedTime
#define gpuStreamWaitEvent cudaStreamWaitEvent
#define gpuStreamBeginCapture(s) cudaStreamBeginCapture((s), cudaStreamCaptureModeThreadLocal)
#define gpuStreamEndCapture cudaStreamEndCapture
#define gpuGraphInstantiate(e, g) cudaGraphInstantiate((e), (g), 0)
#define gpuGraphLaunch cudaGraphLaunch
#define gpuGraphDestroy cudaGraphDestroy
#define gpuGraphExecDestroy cudaGraphExecDestroy
#define gpuFuncSetAttribute(f, a, v) cudaFuncSetAttribute((f), (a), (v))
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define gpuIpcGetMemHandle cudaIpcGetMemHandle
#define gpuIpcOpenMemHandle(p, h) cudaIpcOpenMemHandle((p), (h), cudaIpcMemLazyEnablePeerAccess)
#define gpuIpcCloseMemHandle cudaIpcCloseMemHandle
// Added for the IPC transport (comm/ipc_transport.cpp): peers, events, mapped host memory.
#define gpuErrorNotReady cudaErrorNotReady
#define gpuEventQuery cudaEventQuery
#define gpuEventCreateNoTiming(e) cudaEventCreateWithFlags((e), cudaEventDisableTiming)
#define gpuDeviceCanAccessPeer cudaDeviceCanAccessPeer
#define gpuDeviceGetPCIBusId cudaDeviceGetPCIBusId
#define gpuDeviceGetByPCIBusId cudaDeviceGetByPCIBusId
#define gpuHostAllocMapped(p, n) cudaHostAlloc((p), (n), cudaHostAllocMapped)
#define gpuHostGetDevicePointer(d, h) cudaHostGetDevicePointer((d), (h), 0)
#define gpuHostRegister(p, n) cudaHostRegister((p), (n), cudaHostRegisterDefault)
#define gpuHostUnregister cudaHostUnregister
// Device memory that kernels poll while another device writes it (flags): plain on NVIDIA.
#define gpuMallocSignal(p, n) cudaMalloc((p), (n))
// Device side: the global nanosecond timer and a short sleep for polling loops (sm_70+).
#if defined(__CUDACC__)
__device__ inline unsigned long long gpu_wall_clock_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ inline void gpu_sleep_briefly() { __nanosleep(100); }
#endif
namespace gptoss::gpu {
inline constexpr const GpuTarget& kTarget = kSm90;  // also what sm_80 builds check against
}
inline constexpr int kWaveSize = gptoss::gpu::kSm90.wave_size;  // 32
using gpu_lane_mask_t = unsigned int;
inline constexpr gpu_lane_mask_t kAllLanes = ~0u;
#define gpu_shfl_xor(v, m) __shfl_xor_sync(kAllLanes, (v), (m), kWaveSize)
#define gpu_shfl(v, l) __shfl_sync(kAllLanes, (v), (l), kWaveSize)
#define gpu_shfl_down(v, d) __shfl_down_sync(kAllLanes, (v), (d), kWaveSize)
#endif

#include "common/error.h"

// GPU_CHECK(call): a failing runtime call throws gptoss::Error naming the call, file and line.
#define GPU_CHECK(call)                                                                         \
  do {                                                                                          \
    gpuError_t e_ = (call);                                                                     \
    if (e_ != gpuSuccess)                                                                       \
      throw ::gptoss::Error(::gptoss::strfmt("%s error %s in %s (%s:%d)", GPU_RT_NAME,          \
                                             gpuGetErrorString(e_), #call, __FILE__, __LINE__)); \
  } while (0)
// After a kernel launch.
#define GPU_CHECK_LAUNCH() GPU_CHECK(gpuGetLastError())

// ---- Launch overlap (NVIDIA sm_90: programmatic dependent launch; HIP: plain launches) ----
// gpu_launch(kernel, grid, block, smem, stream, args...) launches with the overlap attribute when
// launch_overlap() is on: the kernel's blocks may start while the stream's previous kernel is still
// running (on SMs it leaves free, or as its blocks finish), so their launch, their set-up and their
// first loads of constant data (weights) hide under its tail. The contract, for every kernel
// launched this way:
//   - before gpu_grid_wait() it reads only data no kernel writes (weights, its arguments) and
//     writes nothing; prefetch hints (gpu_prefetch_l2) may name anything;
//   - gpu_grid_wait() returns once the previous kernel has finished and its writes are visible;
//   - gpu_grid_trigger() (called right after the wait) lets the next overlapped launch start. As
//     every kernel triggers only after its own wait, a kernel that starts knows the kernel two
//     launches back has finished.
// A kernel that calls neither runs exactly as a plain launch. The flag is process-wide (set by the
// GPU backend from BackendOptions::launch_overlap, on by default, before it captures any graph);
// off until then, so a program that only calls kernels (the kernel tests) launches plainly unless
// it sets it.
namespace gptoss::gpu {
inline bool& launch_overlap_flag() {
  static bool on = false;
  return on;
}
inline bool launch_overlap() { return launch_overlap_flag(); }
inline void set_launch_overlap(bool on) { launch_overlap_flag() = on; }
}  // namespace gptoss::gpu

#if defined(__CUDACC__) || defined(__HIPCC__)
__device__ __forceinline__ void gpu_grid_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void gpu_grid_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// A hint that brings the 128-byte line holding p into L2 (NVIDIA); nothing on HIP.
__device__ __forceinline__ void gpu_prefetch_l2(const void* p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

// The same hint with the evict-last priority (the line should outlive the lines streamed past it
// before its use); NVIDIA only (the fused MoE decode kernel).
__device__ __forceinline__ void gpu_prefetch_l2_evict_last(const void* p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

template <class... Params, class... Args>
void gpu_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, gpuStream_t stream,
                Args... args) {
#if defined(GPTOSS_HIP)
  kernel<<<grid, block, smem, stream>>>(args...);
#else
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = ::gptoss::gpu::launch_overlap() ? 1 : 0;
  GPU_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...));
#endif
  GPU_CHECK_LAUNCH();
}
#endif
