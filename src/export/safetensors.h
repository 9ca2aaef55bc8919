// safetensors.h: a validating reader of .safetensors files (mmapped) and a streaming writer.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data; offsets are relative to
// the byte after the header.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/mapped_file.h"

namespace gptoss {

struct StTensor {
  std::string name;
  std::string dtype;            // "BF16", "F16", "F32", "U8", ...
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping
};

size_t st_dtype_bytes(const std::string& dtype);  // 0 for an unknown dtype

class SafetensorsFile {
 public:
  // Maps and validates the whole file; any problem is an Error naming the file.
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const std::map<std::string, StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;
  uint64_t file_bytes() const { return file_.size(); }

 private:
  MappedFile file_;
  std::map<std::string, StTensor> tensors_;
};

// Writes a safetensors file: the header is written at construction, data parts by offset
// (thread-safe, pwrite), so a multi-GB file never sits in memory.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(const std::string& path, const std::vector<Entry>& entries);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  uint64_t tensor_bytes(const std::string& name) const;
  void write_part(const std::string& name, uint64_t at, const void* data, size_t bytes);
  uint64_t data_bytes() const { return data_bytes_; }
  void finish();

 private:
  void write_raw(const void* data, size_t bytes, uint64_t at);
  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0, data_bytes_ = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> index_;  // name -> (begin, bytes)
};

}  // namespace gptoss
