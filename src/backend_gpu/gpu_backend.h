// gpu_engine.h: the GPU engine (CUDA or HIP build, one GPU): the Engine interface of
// engine/engine.h over the kernels of kernels/gpu. Include it only in a GPU build
// (GPU_BACKEND=CUDA|HIP, link target gptoss_gpu_engine); the header itself names no GPU API.
#pragma once
#include <memory>

#include "backend/engine.h"

namespace gptoss {

class Stage;

// Uploads the model's weights to the current GPU (device 0 of what the process sees) and sizes
// the KV cache for opt.ctx positions x opt.max_slots sequences (bf16). model must outlive the
// engine. Throws a one-line Error when no GPU is present, when the model does not fit ("needs X
// GiB, Y GiB free"), or when the model's shape is unsupported. Prints one line to stderr with
// the device, the upload time and the KV-cache size.
std::unique_ptr<Engine> make_gpu_engine(const ModelFile& model, const EngineOptions& opt);

// The pipeline stage (pipeline/stage.h) for layers [first, last) on GPU opt.device: only those
// layers' weights and KV cache are uploaded (and on rank0 the embedding, final norm and LM head).
// Payloads are device memory, the ring is comm/ipc_transport.h's (GPU IPC within a host).
std::unique_ptr<Stage> make_gpu_stage(const ModelFile& model, const EngineOptions& opt, int first,
                                      int last, bool rank0);

// True when the GPU runtime sees at least one device.
bool gpu_device_present();
// Devices the GPU runtime sees (0 without any).
int gpu_device_count();

}  // namespace gptoss
