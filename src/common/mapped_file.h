// mapped_file.h: read-only memory map of a whole file (RAII). Errors name the file. A file
// truncated by another process while mapped is reported, not a crash: a read of the lost pages
// prints "<program>: error: <file>: the file shrank from M to N bytes while in use ..." and
// exits 1 (a SIGBUS handler that knows every live mapping; mapped_file.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace gptoss {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming path on failure
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();  // unmaps (and forgets the mapping in the SIGBUS check)

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace gptoss
