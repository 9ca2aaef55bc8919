// model_file.h: the project's single-file model format (docs/model-format.md).
//
// Layout: a header (magic, version, config, name), a tensor directory, then tensor data, each
// tensor aligned to 4 KiB so the file can be mmapped and uploaded to a device without copies.
// Experts stay MXFP4 exactly as in the checkpoint (u8 blocks + u8 E8M0 scales); every other
// tensor is bf16. Loading validates everything before anything is used; any problem is an
// Error naming the file and what is wrong.
//
// The tensors (names, dtypes, shapes) are those of model/schema.h, in its order.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mapped_file.h"
#include "model/config.h"
#include "model/schema.h"

namespace gptoss {

inline constexpr uint64_t kTensorAlign = 4096;
inline constexpr uint32_t kFormatVersion = 1;

struct TensorInfo {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // from the start of the file, multiple of kTensorAlign
  uint64_t bytes = 0;   // = product(shape) * dtype_bytes
  const uint8_t* data = nullptr;  // into the mapping (reader side)
};

// Read side: mmaps and validates the file at construction.
class ModelFile {
 public:
  explicit ModelFile(const std::string& path);

  const Config& config() const { return config_; }
  const std::string& path() const { return file_.path(); }
  // Free-form description stored by the exporter, e.g. "gpt-oss-20b (synthetic random weights,
  // seed 1)". Synthetic models say so here and every program prints it at load.
  const std::string& description() const { return description_; }
  // 64-bit fingerprint of header + directory: ranks compare it to refuse mismatched files.
  uint64_t fingerprint() const { return fingerprint_; }
  size_t file_bytes() const { return file_.size(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  // The tensor, checked for dtype and shape; Error naming the file and tensor otherwise.
  const TensorInfo& get(const std::string& name, DType dtype,
                        const std::vector<int64_t>& shape) const;
  // Convenience typed pointer after get().
  template <class T>
  const T* data(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
    return reinterpret_cast<const T*>(get(name, dtype, shape).data);
  }

  // A tensor of the schema (model/schema.h), whose dtype and shape were checked at load:
  // `layer` in [0, n_layers) for per-layer kinds, -1 for the global ones.
  const TensorInfo& tensor(TensorKind kind, int layer = -1) const;
  // Its data as T, whose size must be the schema dtype's (bf16_t for BF16, uint8_t for U8).
  template <class T>
  const T* data(TensorKind kind, int layer = -1) const {
    return static_cast<const T*>(typed_data(kind, layer, sizeof(T)));
  }

 private:
  const void* typed_data(TensorKind kind, int layer, size_t elem_bytes) const;

  MappedFile file_;
  Config config_;
  std::string description_;
  uint64_t fingerprint_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
  // Schema slot -> position in tensors_: slot = kind for global kinds, (layer + 1) *
  // kTensorKinds + kind for per-layer kinds. [(n_layers + 1) * kTensorKinds]
  std::vector<size_t> by_kind_;
};

// Write side: add tensors (any order), then finish(). Data is written as it is added, so a
// 14 GB model never needs to be in memory. The file appears under its final name only after
// finish() succeeds (written to PATH.tmp, then renamed).
class ModelWriter {
 public:
  ModelWriter(const std::string& path, const Config& config, const std::string& description,
              const std::vector<std::pair<std::string, std::pair<DType, std::vector<int64_t>>>>&
                  tensor_plan);
  ~ModelWriter();  // an unfinished writer removes PATH.tmp
  ModelWriter(const ModelWriter&) = delete;
  ModelWriter& operator=(const ModelWriter&) = delete;
  // Writes the bytes of a tensor named in the plan; bytes.size() must match. Thread-safe:
  // different tensors may be written from different threads.
  void write(const std::string& name, const void* data, size_t bytes);
  // Writes part of a tensor at byte offset `at` (for streaming conversions). Thread-safe.
  void write_part(const std::string& name, uint64_t at, const void* data, size_t bytes);
  void finish();  // checks every tensor was fully written, fsyncs, renames into place

 private:
  struct Impl;
  Impl* impl_;
};

// The full tensor plan (names, dtypes, shapes) for a config, in file order: tensor_schema(c) in
// the form ModelWriter takes.
std::vector<std::pair<std::string, std::pair<DType, std::vector<int64_t>>>> tensor_plan(
    const Config& c);

}  // namespace gptoss
