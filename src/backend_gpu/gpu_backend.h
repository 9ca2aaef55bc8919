// gpu_backend.h: the GPU backend (CUDA or HIP build, one GPU): backend.h's Backend over the kernels
// of kernels/gpu. Include it only in a GPU build (GPU_BACKEND=CUDA|HIP, link target
// gptoss_gpu_engine); the header itself names no GPU API.
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/engine.h"

namespace gptoss {

// Layers [first, last) (and with `ends` the embedding, final norm and LM head) on GPU opt.device:
// only those tensors are uploaded, and only those layers' KV cache (bf16, or f32 with
// --kv-cache f32) is allocated, for opt.ctx positions x opt.max_slots sequences (0: as many as
// free memory holds, at most opt.max_auto_slots). model must outlive the backend. Payloads are
// device memory. Throws a one-line Error when no GPU is present, when the model does not fit
// ("needs X GiB, Y GiB free"), or when the model's shape is unsupported. Prints one line to
// stderr with the device, the upload time and the KV-cache size.
std::unique_ptr<Backend> make_gpu_backend(const ModelFile& model, const BackendOptions& opt,
                                          int first, int last, bool ends);
// The whole model on one GPU, as an Engine (tests, tools).
std::unique_ptr<Engine> make_gpu_engine(const ModelFile& model, const BackendOptions& opt);

// True when the GPU runtime sees at least one device.
bool gpu_device_present();
// Devices the GPU runtime sees (0 without any).
int gpu_device_count();
// Free memory of GPU `device` now (makes it the current device).
size_t gpu_free_bytes(int device);
// Starts (true) or stops (false) the profiler's collection (cudaProfilerStart/Stop), so that a
// profiler run with collection off at start (ncu --profile-from-start off) sees one chosen range.
void gpu_profiler_range(bool start);

}  // namespace gptoss
