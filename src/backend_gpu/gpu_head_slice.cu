// gpu_head_slice.cu: the GPU backend's slice of the vocab-parallel LM head (the pipeline's head
// split: backend.h head_slice_*, src/backend/head_split.h for the rules; class in
// gpu_backend_impl.h). Everything stays on the device: the payload's HeadRows are made and merged
// there (kernels/gpu/head_slice.h) and only rank 0's final read copies them to the host; logits
// never leave the GPU. All work is enqueued on the backend's stream without a host wait (the
// pipeline posts the payload after it on the same stream; the one wait is a later rank's upload
// of its slice, once), outside graphs: these calls run once per micro-batch on its second lap, a
// few launches each.
//
// A slice's logits are the whole head's, bit for bit, for rows on the same kernel path: the final
// norm and matmul are enqueue_head's kernels for that many rows (the decode kernel with the norm
// fused for <= gpu::kDecodeMaxRows rows, else RMSNorm + the dense matmul in the backend's
// precision) over rows [v0, v1) of the LM head, and each output's reduction order depends on K
// only (ops.h, decode.h). Precision fast with the GEMM's K split on (gemm_split_k, off by default)
// is the exception: its split count depends on the slice width.
//
// Device memory: rank 0 (the ends) uses its LM head, final norm and d_logits_ ([kHeadRows, V]).
// A rank without the ends uploads the final norm and its rows of the LM head from the model file
// on first use and keeps a logits scratch [kHeadRows, v1 - v0]: (v1 - v0) x (2 H + 2048) bytes,
// e.g. 0.73 GiB for half of 20b's vocabulary. The backend's set-up does not know about them yet,
// so that allocation is checked against free memory here (docs/pipeline.md).
#include <algorithm>

#include "backend_gpu/gpu_backend_impl.h"
#include "gpu/head_slice.h"

namespace gptoss::gpu_backend {

struct GpuBackend::HeadSliceState {
  int32_t* d_idx = nullptr;   // [2 kHeadRows]: head_slice_first's x rows, then k, per step
  // A rank without the ends (rank 0 uses norm_, unemb_ and d_logits_):
  int v0 = 0, v1 = 0;         // the LM head rows held: ids [v0, v1)
  bf16_t* d_unemb = nullptr;  // [v1 - v0, H] bf16
  bf16_t* d_norm = nullptr;   // [H] bf16, the final norm
  float* d_logits = nullptr;  // [kHeadRows, v1 - v0] fp32
};

void GpuBackend::free_head_slice(HeadSliceState* s) {
  if (!s) return;
  for (void* p : {static_cast<void*>(s->d_idx), static_cast<void*>(s->d_unemb),
                  static_cast<void*>(s->d_norm), static_cast<void*>(s->d_logits)})
    if (p) (void)gpuFree(p);
  delete s;
}

GpuBackend::HeadSliceState& GpuBackend::head_slice_state() {
  if (!head_slice_) {
    head_slice_ = {new HeadSliceState{}, &GpuBackend::free_head_slice};
    GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&head_slice_->d_idx),
                        2 * size_t(kHeadRows) * sizeof(int32_t)));
  }
  return *head_slice_;
}

bool GpuBackend::can_head_slice() const { return true; }

void GpuBackend::head_slice_first(const float* x, std::span<const int32_t> x_rows,
                                  std::span<const int32_t> k, int vocab_begin, int vocab_end,
                                  void* out) {
  GPTOSS_ASSERT(k.size() == x_rows.size());
  if (!x) x = d_x_;
  const size_t n = x_rows.size(), H = static_cast<size_t>(cfg_.hidden);
  HeadRow* rows = head_rows(out);
  float* xo = head_x(out, n);
  HeadSliceState& s = head_slice_state();
  begin_busy(true);
  for (size_t i0 = 0; i0 < n; i0 += kHeadRows) {
    const size_t m = std::min<size_t>(kHeadRows, n - i0);
    int32_t* meta = next_meta();  // pinned, free once its previous upload is done
    for (size_t i = 0; i < m; ++i) {
      GPTOSS_ASSERT(k[i0 + i] >= 1 && k[i0 + i] <= kHeadSplitMaxK);
      meta[i] = x_rows[i0 + i];
      meta[m + i] = k[i0 + i];
    }
    GPU_CHECK(gpuMemcpyAsync(s.d_idx, meta, 2 * m * sizeof(int32_t), gpuMemcpyHostToDevice,
                             stream_));
    GPU_CHECK(gpuEventRecord(meta_ev_[(meta - h_meta_) / (kMetaSlices * step_rows_)], stream_));
    gpu::head_rows_init(x, s.d_idx, s.d_idx + m, static_cast<int>(m), static_cast<int>(H),
                        rows + i0, xo + i0 * H, stream_);
  }
  merge_head_slice(rows, xo, static_cast<int>(n), vocab_begin, vocab_end);
  end_busy();
}

void GpuBackend::head_slice_next(const void* in, void* out, int n, int vocab_begin,
                                 int vocab_end) {
  const size_t H = static_cast<size_t>(cfg_.hidden);
  begin_busy(true);
  if (in != out && n > 0)
    GPU_CHECK(gpuMemcpyAsync(out, in, head_payload_bytes(static_cast<size_t>(n), H),
                             gpuMemcpyDeviceToDevice, stream_));
  merge_head_slice(head_rows(out), head_x(out, static_cast<size_t>(n)), n, vocab_begin, vocab_end);
  end_busy();
}

void GpuBackend::head_rows_read(const void* payload, int n, HeadRow* rows) {
  if (n <= 0) return;
  GPU_CHECK(gpuMemcpyAsync(rows, payload, static_cast<size_t>(n) * sizeof(HeadRow),
                           gpuMemcpyDeviceToHost, stream_));
  GPU_CHECK(gpuStreamSynchronize(stream_));
}

void GpuBackend::merge_head_slice(HeadRow* rows, const float* x, int n, int v0, int v1) {
  if (n <= 0 || v0 == v1) return;
  const Config& c = cfg_;
  if (v0 < 0 || v1 > c.vocab || v0 > v1)
    fail("gpu %d: head slice [%d, %d) outside the vocabulary [0, %d)", device_, v0, v1, c.vocab);
  const int width = v1 - v0, H = c.hidden;
  const bf16_t *norm = norm_, *w = nullptr;
  float* logits = d_logits_;
  if (ends_) {
    w = unemb_ + size_t(v0) * H;
  } else {
    HeadSliceState& s = head_slice_state();
    // First use; the pipeline's slice never changes (another one, in tests, frees the buffers
    // held, which waits for the device).
    if (!s.d_unemb || v0 < s.v0 || v1 > s.v1) {
      if (!model_)
        fail("gpu %d: the head split needs the model file on a rank without the LM head, and "
             "this backend was made without it (GpuBackend::model_)", device_);
      const TensorInfo& un = model_->tensor(TensorKind::Unembedding);
      const TensorInfo& nm = model_->tensor(TensorKind::Norm);
      const size_t w_bytes = size_t(width) * H * sizeof(bf16_t);
      const size_t logit_bytes = size_t(kHeadRows) * width * sizeof(float);
      const size_t need = w_bytes + logit_bytes + size_t(H) * sizeof(bf16_t);
      for (void* p : {static_cast<void*>(s.d_unemb), static_cast<void*>(s.d_norm),
                      static_cast<void*>(s.d_logits)})
        if (p) GPU_CHECK(gpuFree(p));
      s.d_unemb = s.d_norm = nullptr;
      s.d_logits = nullptr;
      size_t free_b = 0, total_b = 0;
      GPU_CHECK(gpuMemGetInfo(&free_b, &total_b));
      if (need > free_b)
        fail("gpu %d: the head split's slice (vocab ids [%d, %d): LM head rows and logits, %.2f "
             "GiB) does not fit in the %.2f GiB free; give -b a smaller batch or use --head-split "
             "off", device_, v0, v1, need / kGiB, free_b / kGiB);
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&s.d_unemb), w_bytes));
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&s.d_norm), size_t(H) * sizeof(bf16_t)));
      GPU_CHECK(gpuMalloc(reinterpret_cast<void**>(&s.d_logits), logit_bytes));
      // On a stream of its own that waits for nothing else (the backend's stream may still wait
      // for this micro-batch's payload, and the null stream would wait for the links' streams):
      // the upload is complete before any merge is enqueued, and the host waits for it alone.
      gpuStream_t up = nullptr;
      GPU_CHECK(gpuStreamCreateNonBlocking(&up));
      GPU_CHECK(gpuMemcpyAsync(s.d_unemb, un.data + size_t(v0) * H * sizeof(bf16_t), w_bytes,
                               gpuMemcpyHostToDevice, up));
      GPU_CHECK(gpuMemcpyAsync(s.d_norm, nm.data, size_t(H) * sizeof(bf16_t),
                               gpuMemcpyHostToDevice, up));
      GPU_CHECK(gpuStreamSynchronize(up));
      GPU_CHECK(gpuStreamDestroy(up));
      s.v0 = v0;
      s.v1 = v1;
    }
    norm = s.d_norm;
    w = s.d_unemb + size_t(v0 - s.v0) * H;
    logits = s.d_logits;
  }
  for (int i0 = 0; i0 < n; i0 += kHeadRows) {
    const int m = std::min(kHeadRows, n - i0);
    enqueue_norm_head(x + size_t(i0) * H, nullptr, m, norm, w, width, logits);
    gpu::f32_head_rows_merge(logits, m, width, v0, rows + i0, stream_);
  }
}

}  // namespace gptoss::gpu_backend
