// safetensors.cpp: safetensors parsing with full validation, and the streaming writer.
#include "export/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace gptoss {

size_t st_dtype_bytes(const std::string& d) {
  if (d == "BF16" || d == "F16" || d == "I16" || d == "U16") return 2;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "U8" || d == "I8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const char* P = path.c_str();
  const uint8_t* p = file_.data();
  const uint64_t size = file_.size();
  if (size < 8) fail("%s: not a safetensors file (only %llu bytes)", P, (unsigned long long)size);
  uint64_t header_bytes;
  std::memcpy(&header_bytes, p, 8);
  if (header_bytes < 2 || header_bytes > (100ull << 20) || header_bytes > size - 8)
    fail("%s: not a valid safetensors file (header length %llu, file size %llu)", P,
         (unsigned long long)header_bytes, (unsigned long long)size);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(p + 8, p + 8 + header_bytes);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    fail("%s: safetensors header is not valid JSON (%s)", P, msg.c_str());
  }
  if (!j.is_object()) fail("%s: safetensors header is not a JSON object", P);
  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_size = size - data_start;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const char* N = name.c_str();
    const auto& v = it.value();
    if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string() ||
        !v.contains("shape") || !v["shape"].is_array() || !v.contains("data_offsets") ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      fail("%s: safetensors entry %s lacks dtype, shape or data_offsets", P, N);
    StTensor t;
    t.name = name;
    t.dtype = v["dtype"].get<std::string>();
    const size_t esize = st_dtype_bytes(t.dtype);
    if (esize == 0) fail("%s: tensor %s has unknown dtype %s", P, N, t.dtype.c_str());
    uint64_t elems = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40))
        fail("%s: tensor %s has an invalid shape", P, N);
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && elems > (1ull << 50) / dim) fail("%s: tensor %s is absurdly large", P, N);
      elems *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& o = v["data_offsets"];
    if (!o[0].is_number_unsigned() || !o[1].is_number_unsigned())
      fail("%s: tensor %s has invalid data_offsets", P, N);
    const uint64_t b = o[0].get<uint64_t>(), e = o[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail("%s: truncated or corrupt: tensor %s data [%llu, %llu) lies outside the %llu data bytes",
           P, N, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
    if (e - b != elems * esize)
      fail("%s: tensor %s has %llu bytes but %s of %llu elements needs %llu", P, N,
           (unsigned long long)(e - b), t.dtype.c_str(), (unsigned long long)elems,
           (unsigned long long)(elems * esize));
    t.bytes = e - b;
    t.data = p + data_start + b;
    if (t.bytes) ranges.push_back({b, e});
    tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    if (ranges[i - 1].second > ranges[i].first)
      fail("%s: corrupt safetensors file: two tensors overlap at data byte %llu", P,
           (unsigned long long)ranges[i].first);
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, const std::vector<Entry>& entries)
    : path_(path) {
  nlohmann::json j = nlohmann::json::object();
  j["__metadata__"] = {{"format", "pt"}};
  uint64_t at = 0;
  for (const Entry& e : entries) {
    uint64_t n = st_dtype_bytes(e.dtype);
    GPTOSS_ASSERT(n != 0);
    for (int64_t d : e.shape) n *= static_cast<uint64_t>(d);
    j[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {at, at + n}}};
    index_[e.name] = {at, n};
    at += n;
  }
  data_bytes_ = at;
  std::string header = j.dump();
  while (header.size() % 8 != 0) header += ' ';
  data_start_ = 8 + header.size();
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK_SYS(fd_, "%s: cannot create", path.c_str());
  CHECK_SYS(::ftruncate(fd_, static_cast<off_t>(data_start_ + data_bytes_)), "%s: cannot size",
            path.c_str());
  uint64_t hl = header.size();
  std::string head(reinterpret_cast<const char*>(&hl), 8);
  head += header;
  write_raw(head.data(), head.size(), 0);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t SafetensorsWriter::tensor_bytes(const std::string& name) const {
  auto it = index_.find(name);
  GPTOSS_ASSERT(it != index_.end());
  return it->second.second;
}

void SafetensorsWriter::write_raw(const void* data, size_t bytes, uint64_t at) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    ssize_t w = ::pwrite(fd_, p, std::min<size_t>(bytes, 1u << 30), static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    CHECK_SYS(w, "%s: write failed", path_.c_str());
    p += w;
    at += static_cast<uint64_t>(w);
    bytes -= static_cast<size_t>(w);
  }
}

void SafetensorsWriter::write_part(const std::string& name, uint64_t at, const void* data,
                                   size_t bytes) {
  auto it = index_.find(name);
  GPTOSS_ASSERT(it != index_.end());
  GPTOSS_ASSERT(at <= it->second.second && bytes <= it->second.second - at);
  write_raw(data, bytes, data_start_ + it->second.first + at);
}

void SafetensorsWriter::finish() {
  CHECK_SYS(::close(fd_), "%s: close failed", path_.c_str());
  fd_ = -1;
}

}  // namespace gptoss
