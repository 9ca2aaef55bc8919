// gpu_backend.cu: the GPU backend's Backend calls (backend.h; class in gpu_backend_impl.h): run
// (embed or take the received hidden states, then the layers in device steps of <= step_rows_
// rows), head and head_pick (final norm + LM head on the logit rows; the token choice on the
// device), device-time accounting, and the factories.
#if !defined(GPTOSS_HIP)
#include <cuda_profiler_api.h>
#endif
#include <algorithm>
#include <cstring>
#include <string>

#include "backend/sampler.h"
#include "backend_gpu/gpu_backend.h"
#include "backend_gpu/gpu_backend_impl.h"
#include "kernels/gpu/ops.h"

namespace gptoss {
namespace gpu_backend {

void GpuBackend::run(std::span<const int32_t> tokens, std::span<const RowPos> rows,
                     const float* in, float* out) {
  const size_t H = static_cast<size_t>(cfg_.hidden);
  const bool embed = !tokens.empty();
  GPTOSS_ASSERT(embed ? ends_ && tokens.size() == rows.size() && !in : in != nullptr);
  begin_busy();
  for (size_t r0 = 0, r1; r0 < rows.size(); r0 = r1) {
    // Without out the result stays in d_x_: one device step, which the caller (the Engine) has
    // already cut to both limits with the same pass_end; with out, cut here.
    r1 = out ? pass_end(r0, rows.size(), step_rows_, kSeqStepRows,
                        [&](size_t i) { return rows[i].slot; })
             : rows.size();
    GPTOSS_ASSERT(r1 - r0 <= size_t(step_rows_));
    const size_t n = r1 - r0;
    int32_t* meta = next_meta();
    if (embed) std::copy_n(tokens.data() + r0, n, meta + kMetaToken * step_rows_);
    fill_tiles(meta, rows.subspan(r0, n));
    if (!embed && in + r0 * H != d_x_)
      GPU_CHECK(gpuMemcpyAsync(d_x_, in + r0 * H, n * H * sizeof(float), gpuMemcpyDeviceToDevice,
                               stream_));
    run_step(meta, static_cast<int>(n), embed);
    if (out)
      GPU_CHECK(gpuMemcpyAsync(out + r0 * H, d_x_, n * H * sizeof(float), gpuMemcpyDeviceToDevice,
                               stream_));
  }
  end_busy();
}

void GpuBackend::head(const float* x, std::span<const int32_t> logit_rows, float* logits) {
  if (!x) x = d_x_;
  const size_t V = static_cast<size_t>(cfg_.vocab);
  begin_busy(true);
  for (size_t i0 = 0; i0 < logit_rows.size(); i0 += kHeadRows) {
    const size_t nl = std::min<size_t>(kHeadRows, logit_rows.size() - i0);
    enqueue_head(x, logit_rows.subspan(i0, nl));
    GPU_CHECK(gpuMemcpyAsync(logits + i0 * V, d_logits_, nl * V * sizeof(float),
                             gpuMemcpyDeviceToHost, stream_));
  }
  end_busy();
  GPU_CHECK(gpuStreamSynchronize(stream_));
}

void GpuBackend::head_pick(const float* x, std::span<const int32_t> logit_rows,
                           std::span<const TokenPick> picks, std::vector<int32_t>& tokens) {
  GPTOSS_ASSERT(picks.size() == logit_rows.size());
  if (!x) x = d_x_;
  tokens.resize(logit_rows.size());
  for (size_t i0 = 0; i0 < logit_rows.size(); i0 += kHeadRows) {
    const size_t nl = std::min<size_t>(kHeadRows, logit_rows.size() - i0);
    begin_busy(true);  // ended by pick_into after the pick kernel, before its sync
    enqueue_head(x, logit_rows.subspan(i0, nl));
    pick_into(static_cast<int>(nl), picks, i0, tokens);
  }
}

// Tokens are chosen on the device (gpu::pick_tokens = Sampler::pick) and only their ids come
// back. A row the device leaves undecided (-1: a draw within rounding of a boundary, or a nucleus
// beyond the device's candidate cap; see sample.h) has its logits copied to the host for
// Sampler::pick, so the result is always Sampler::pick's.
void GpuBackend::pick_into(int nl, std::span<const TokenPick> picks, size_t before,
                           std::vector<int32_t>& tokens) {
  const size_t V = static_cast<size_t>(cfg_.vocab);
  std::memcpy(h_picks_, picks.data() + before, size_t(nl) * sizeof(TokenPick));
  GPU_CHECK(gpuMemcpyAsync(d_picks_, h_picks_, size_t(nl) * sizeof(TokenPick),
                           gpuMemcpyHostToDevice, stream_));
  gpu::pick_tokens(d_logits_, nl, cfg_.vocab, d_picks_, d_tokens_, pick_scratch_, stream_);
  end_busy();
  GPU_CHECK(gpuMemcpyAsync(h_tokens_, d_tokens_, size_t(nl) * sizeof(int32_t),
                           gpuMemcpyDeviceToHost, stream_));
  GPU_CHECK(gpuStreamSynchronize(stream_));
  for (int i = 0; i < nl; ++i) {
    int32_t t = h_tokens_[i];
    if (t < 0) {
      ++host_picks_;
      row_logits_.resize(V);
      GPU_CHECK(gpuMemcpy(row_logits_.data(), d_logits_ + size_t(i) * V, V * sizeof(float),
                          gpuMemcpyDeviceToHost));
      t = Sampler::pick(row_logits_.data(), static_cast<int>(V), picks[before + i]);
    }
    tokens[before + i] = t;
  }
}

// Sums the device time of completed (start, end) pairs; wait: all of them.
void GpuBackend::harvest_busy(bool wait) {
  size_t done = 0;
  for (; done < busy_ev_.size(); ++done) {
    const BusyEvents& e = busy_ev_[done];
    if (wait) GPU_CHECK(gpuEventSynchronize(e.end));
    else if (gpuEventQuery(e.end) == gpuErrorNotReady) break;
    float ms = 0;
    GPU_CHECK(gpuEventElapsedTime(&ms, e.start, e.end));
    busy_us_ += 1e3 * ms;
    if (e.head) head_busy_us_ += 1e3 * ms;
    busy_free_.push_back(busy_ev_[done]);
  }
  busy_ev_.erase(busy_ev_.begin(), busy_ev_.begin() + static_cast<std::ptrdiff_t>(done));
}

void GpuBackend::begin_busy(bool head) {
  harvest_busy(false);
  BusyEvents ev;
  if (busy_free_.empty()) {
    GPU_CHECK(gpuEventCreate(&ev.start));
    GPU_CHECK(gpuEventCreate(&ev.end));
  } else {
    ev = busy_free_.back();
    busy_free_.pop_back();
  }
  ev.head = head;
  GPU_CHECK(gpuEventRecord(ev.start, stream_));
  busy_ev_.push_back(ev);
}

void GpuBackend::end_busy() { GPU_CHECK(gpuEventRecord(busy_ev_.back().end, stream_)); }

double GpuBackend::device_busy_us() {
  harvest_busy(true);
  return busy_us_;
}

}  // namespace gpu_backend

std::unique_ptr<Backend> make_gpu_backend(const ModelFile& model, const BackendOptions& opt,
                                          int first, int last, bool ends) {
  return std::make_unique<gpu_backend::GpuBackend>(model, opt, first, last, ends);
}

std::unique_ptr<Engine> make_gpu_engine(const ModelFile& model, const BackendOptions& opt) {
  return std::make_unique<Engine>(make_gpu_backend(model, opt, 0, model.config().n_layers, true));
}

bool gpu_device_present() { return gpu::device_present(); }

int gpu_device_count() {
  int n = 0;
  if (!gpu::device_present()) return 0;
  GPU_CHECK(gpuGetDeviceCount(&n));
  return n;
}

// The read-bandwidth probe (kernels/gpu/ops.h) over a buffer of up to 2 GiB (what is free
// allows, at least 256 MiB), the best of 5 reads.
double gpu_backend::GpuBackend::measure_read_gbs() {
  GPU_CHECK(gpuSetDevice(device_));
  size_t free_b = 0, total_b = 0;
  GPU_CHECK(gpuMemGetInfo(&free_b, &total_b));
  size_t n = std::min<size_t>(size_t(2) << 30, free_b / 2) / 16 * 16;
  if (n < (size_t(256) << 20)) return 0;
  void* buf = nullptr;
  float* partial = nullptr;
  gpuDeviceProp prop;
  GPU_CHECK(gpuGetDeviceProperties(&prop, device_));
  const int blocks = 4 * prop.multiProcessorCount;
  GPU_CHECK(gpuMalloc(&buf, n));
  GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&partial), blocks * sizeof(float)));
  GPU_CHECK(gpuMemset(buf, 0, n));
  gpuStream_t s = static_cast<gpuStream_t>(stream());
  gpuEvent_t a, b;
  GPU_CHECK(gpuEventCreate(&a));
  GPU_CHECK(gpuEventCreate(&b));
  float best_ms = 0;
  for (int i = 0; i < 6; ++i) {  // the first is a warm-up
    GPU_CHECK(gpuEventRecord(a, s));
    gpu::read_bandwidth_probe(buf, n, blocks, partial, s);
    GPU_CHECK(gpuEventRecord(b, s));
    GPU_CHECK(gpuEventSynchronize(b));
    float ms = 0;
    GPU_CHECK(gpuEventElapsedTime(&ms, a, b));
    if (i > 0 && (best_ms == 0 || ms < best_ms)) best_ms = ms;
  }
  GPU_CHECK(gpuEventDestroy(a));
  GPU_CHECK(gpuEventDestroy(b));
  GPU_CHECK(gpuFree(partial));
  GPU_CHECK(gpuFree(buf));
  return best_ms > 0 ? double(n) / (best_ms * 1e-3) / 1e9 : 0;
}

// Dense bf16 matrix peaks, TFLOP/s, from the vendors' data sheets (one MI250/MI250X GCD: half the
// card). 0 for a card not listed.
double gpu_backend::GpuBackend::matrix_peak_tflops() const {
  gpuDeviceProp prop;
  GPU_CHECK(gpuGetDeviceProperties(&prop, device_));
  const std::string name = prop.name;
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200")) return 989.4;
  if (has("H100")) return has("PCIe") ? 756.0 : 989.4;
  if (has("A100")) return 312.0;
  if (has("MI250X")) return 191.5;
  if (has("MI250")) return 181.0;
  if (has("MI300X")) return 1307.4;
  return 0;
}

size_t gpu_free_bytes(int device) {
  size_t free_b = 0, total_b = 0;
  GPU_CHECK(gpuSetDevice(device));
  GPU_CHECK(gpuMemGetInfo(&free_b, &total_b));
  return free_b;
}

void gpu_profiler_range(bool start) {
  GPU_CHECK(gpuDeviceSynchronize());
#if defined(GPTOSS_HIP)
  GPU_CHECK(start ? hipProfilerStart() : hipProfilerStop());
#else
  GPU_CHECK(start ? cudaProfilerStart() : cudaProfilerStop());
#endif
}

}  // namespace gptoss
