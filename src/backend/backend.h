// stage.h: what one pipeline stage computes, behind one small interface so the ring code does not
// care which backend runs it: run (rank 0's first stage embeds token ids; every stage runs its
// contiguous block of layers on a micro-batch, using and updating only those layers' KV cache)
// and head (final norm + LM head on the rows that need logits, rank 0 only; or the token choice
// itself, on the device, for a stage that can).
//
// Backends: the CPU stage (make_cpu_stage over CpuModel; host payloads, MPI ring) and the GPU
// stage (src/engine_gpu, make_gpu_stage; device payloads, the GPU IPC ring of comm/ipc_transport.h).
// A GPU stage enqueues its work on its stream() and returns at once; the ring orders payloads
// against that stream (post_on / receive_on / release_on in comm/transport.h).
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "comm/transport.h"
#include "backend_cpu/cpu_model.h"
#include "backend/engine.h"
#include "backend/sampler.h"
#include "model/config.h"

namespace gptoss {

class Stage {
 public:
  virtual ~Stage() = default;
  virtual const Config& config() const = 0;
  virtual int first_layer() const = 0;  // this stage's layers are [first_layer, last_layer)
  virtual int last_layer() const = 0;
  virtual size_t kv_cache_bytes() const = 0;
  // Sequences its KV cache holds (a GPU stage made with max_slots 0 sizes it from free memory).
  virtual int max_slots() const = 0;
  // Where run/head expect x: host memory for the CPU backend, device memory for the GPU.
  virtual comm::MemoryKind payload_memory() const { return comm::MemoryKind::Host; }
  // COLLECTIVE: the ring for this backend's payloads (every rank's stage is of one backend).
  virtual std::unique_ptr<comm::Ring> open_ring(MPI_Comm comm, const comm::LinkSpec& spec) {
    return comm::open_ring(comm, spec);
  }
  // The GPU stream the stage's work goes to (a gpuStream_t), nullptr for host stages.
  virtual void* stream() { return nullptr; }
  // Micro-seconds a blocking ring wait spins before it sleeps between polls (latency vs. a core).
  virtual double link_spin_us() const { return 50; }

  // Layers [first_layer, last_layer) on a micro-batch of rows.size() rows, out [rows, hidden]
  // fp32. Rank 0's first stage passes the token ids (tokens.size() == rows.size(), in == nullptr)
  // and embeds them first; later stages pass in (the received hidden states; in may equal out)
  // and no tokens. Rows of one slot come in increasing consecutive positions, continuing what
  // earlier micro-batches stored.
  virtual void run(std::span<const int32_t> tokens, std::span<const RowPos> rows, const float* in,
                   float* out) = 0;
  // logits[i, :] = LM head of final-norm(x[logit_rows[i]]). x: [rows, hidden] (payload memory),
  // logits: host [logit_rows.size(), vocab]. Complete on return.
  virtual void head(const float* x, std::span<const int32_t> logit_rows, float* logits) = 0;
  // True when head_pick chooses tokens on the device (only ids come back to the host).
  virtual bool picks_on_device() const { return false; }
  // tokens[i] = Sampler::pick(head logits of row logit_rows[i], picks[i]). Complete on return.
  // Default: head() to host logits, then Sampler::pick. (Inline: Stage has no key function, so
  // a backend library needs only this header.)
  virtual void head_pick(const float* x, std::span<const int32_t> logit_rows,
                         std::span<const TokenPick> picks, std::vector<int32_t>& tokens) {
    const size_t V = static_cast<size_t>(config().vocab);
    std::vector<float> logits(logit_rows.size() * V);
    head(x, logit_rows, logits.data());
    tokens.resize(logit_rows.size());
    for (size_t i = 0; i < logit_rows.size(); ++i)
      tokens[i] = Sampler::pick(logits.data() + i * V, static_cast<int>(V), picks[i]);
  }
  // Time the stage's device spent on its work so far, in us, or < 0 when the stage computes on
  // the calling thread (the pipeline then times the calls). Waits for work in flight.
  virtual double device_busy_us() { return -1; }
  // The part of device_busy_us() spent in head()/head_pick() (rank 0); -1 if not measured.
  virtual double device_head_busy_us() { return -1; }
};

// Makes this rank's stage for layers [first, last); rank0 says whether it also owns the
// embedding and the head. Called once per rank by the pipeline, after the split is known.
using StageFactory = std::function<std::unique_ptr<Stage>(int first, int last, bool rank0)>;

// The CPU stage: a CpuModel owning the KV cache of layers [first, last) only. w's pointers must
// outlive the stage. Throws Error on bad options (e.g. a KV cache that does not fit in memory).
std::unique_ptr<Stage> make_cpu_stage(const ModelWeights& w, int ctx, int max_slots, int first,
                                      int last);

}  // namespace gptoss
