// model_file.h: the project's single-file model format (docs/model-format.md).
//
// Layout: a header (magic, version, config, name), a tensor directory, then tensor data, each
// tensor aligned to 4 KiB so the file can be mmapped and uploaded to a device without copies.
// Experts stay MXFP4 exactly as in the checkpoint (u8 blocks + u8 E8M0 scales); every other
// tensor is bf16. Loading validates everything before anything is used; any problem is an
// Error naming the file and what is wrong.
//
// Tensor names and shapes (E experts, I intermediate, H hidden, V vocab, Q = heads*head_dim,
// R = (heads + 2 kv_heads) * head_dim):
//   embedding                 bf16 [V, H]
//   layers.L.attn_norm        bf16 [H]
//   layers.L.qkv.weight       bf16 [R, H]      rows = [Q | K | V]
//   layers.L.qkv.bias         bf16 [R]
//   layers.L.sinks            bf16 [heads]
//   layers.L.out.weight       bf16 [H, Q]
//   layers.L.out.bias         bf16 [H]
//   layers.L.mlp_norm         bf16 [H]
//   layers.L.router.weight    bf16 [E, H]
//   layers.L.router.bias      bf16 [E]
//   layers.L.mlp1.blocks      u8   [E, 2I, H/32, 16]   rows interleaved: even = gate, odd = up
//   layers.L.mlp1.scales      u8   [E, 2I, H/32]
//   layers.L.mlp1.bias        bf16 [E, 2I]
//   layers.L.mlp2.blocks      u8   [E, H, I/32, 16]
//   layers.L.mlp2.scales      u8   [E, H, I/32]
//   layers.L.mlp2.bias        bf16 [E, H]
//   norm                      bf16 [H]
//   unembedding               bf16 [V, H]
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mapped_file.h"
#include "model/config.h"

namespace gptoss {

enum class DType : uint32_t { BF16 = 1, F32 = 2, U8 = 3 };
const char* dtype_name(DType t);
size_t dtype_bytes(DType t);

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

 private:
  MappedFile file_;
  Config config_;
  std::string description_;
  uint64_t fingerprint_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_
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

// The full tensor plan (names, dtypes, shapes) for a config, in file order.
std::vector<std::pair<std::string, std::pair<DType, std::vector<int64_t>>>> tensor_plan(
    const Config& c);

}  // namespace gptoss
