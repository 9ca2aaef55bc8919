// ipc_kernels.cu: the device side of the GPU IPC transport (see ipc_kernels.h). Built with the
// GPU compiler for CUDA and HIP alike (gptoss_gpu_sources); names only the gpu* aliases.
#include "comm/ipc_kernels.h"

#include "gpu/vendor.h"

namespace gptoss::comm::ipc {

namespace {

constexpr int kThreads = 256;

// Spins (with short sleeps) until *flag >= value or timeout_ns passes; true when it came.
__device__ bool wait_at_least(const volatile uint64_t* flag, uint64_t value, uint64_t timeout_ns) {
  if (*flag >= value) return true;
  const unsigned long long t0 = gpu_wall_clock_ns();
  while (*flag < value) {
    if (gpu_wall_clock_ns() - t0 > timeout_ns) return false;
    gpu_sleep_briefly();
  }
  return true;
}

__global__ void send_kernel(SendArgs a) {
  __shared__ int ok;
  if (threadIdx.x == 0) {
    ok = 1;
    if (a.credit_needed > 0 && !wait_at_least(a.credit, a.credit_needed, a.timeout_ns)) {
      *reinterpret_cast<volatile uint32_t*>(a.error_word) = kErrCreditWaitTimedOut;
      __threadfence_system();
      ok = 0;
    }
    // Acquire: the receiver's reads of the old payload are ordered before our writes.
    __threadfence_system();
  }
  __syncthreads();
  if (!ok) return;  // the host reports the error; the flag is never published
  const uint64_t n16 = a.bytes / 16;
  const uint4* src = static_cast<const uint4*>(a.src);
  uint4* dst = static_cast<uint4*>(a.dst);
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n16;
       i += stride)
    dst[i] = src[i];
  if (blockIdx.x == 0) {  // the last bytes % 16 bytes
    const uint64_t tail = a.bytes - n16 * 16;
    if (threadIdx.x < tail)
      static_cast<uint8_t*>(a.dst)[n16 * 16 + threadIdx.x] =
          static_cast<const uint8_t*>(a.src)[n16 * 16 + threadIdx.x];
  }
  // Every thread's stores are made visible system-wide before its block reports done.
  __threadfence_system();
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned int prev = atomicAdd(a.blocks_done, 1u);
    if (prev == gridDim.x - 1) {  // last block: all payload stores are fenced
      *a.blocks_done = 0;         // ready for this slot's next message (ordered by the credit)
      __threadfence_system();
      *reinterpret_cast<volatile uint64_t*>(a.ready) = a.ready_value;  // release
      __threadfence_system();
    }
  }
}

__global__ void wait_kernel(const uint64_t* flag, uint64_t value, uint64_t timeout_ns,
                            uint32_t* error_word, uint32_t error_code) {
  if (!wait_at_least(flag, value, timeout_ns)) {
    *reinterpret_cast<volatile uint32_t*>(error_word) = error_code;
  }
  __threadfence_system();  // acquire: later kernels on the stream see the payload
}

__global__ void signal_kernel(uint64_t* flag, uint64_t value) {
  __threadfence_system();  // release: the stream's earlier work (reads of the slot) is done
  *reinterpret_cast<volatile uint64_t*>(flag) = value;
  __threadfence_system();
}

}  // namespace

void launch_send(void* stream, const SendArgs& a) {
  const uint64_t per_block = static_cast<uint64_t>(kThreads) * 16 * 4;  // 16 KiB per block
  uint64_t blocks = (a.bytes + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > static_cast<uint64_t>(a.max_blocks)) blocks = static_cast<uint64_t>(a.max_blocks);
  send_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<gpuStream_t>(stream)>>>(a);
  GPU_CHECK_LAUNCH();
}

void launch_wait(void* stream, const uint64_t* flag, uint64_t value, uint64_t timeout_ns,
                 uint32_t* error_word, uint32_t error_code) {
  wait_kernel<<<1, 1, 0, static_cast<gpuStream_t>(stream)>>>(flag, value, timeout_ns, error_word,
                                                             error_code);
  GPU_CHECK_LAUNCH();
}

void launch_signal(void* stream, uint64_t* flag, uint64_t value) {
  signal_kernel<<<1, 1, 0, static_cast<gpuStream_t>(stream)>>>(flag, value);
  GPU_CHECK_LAUNCH();
}

}  // namespace gptoss::comm::ipc
