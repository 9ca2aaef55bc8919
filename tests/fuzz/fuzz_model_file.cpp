// fuzz_model_file.cpp: the model-file loader (ModelFile, docs/model-format.md) on arbitrary bytes.
// The first input byte holds two flags, the rest is the file:
//   bit 0: store the right FNV-1a checksum at meta_bytes (else nearly every mutation of the header
//          stops at the checksum check, step 5, and steps 6-9 would never be reached)
//   bit 1: extend the file with zeros to the header's file_bytes (at most 4 MiB), so a seed that
//          is only the header + directory of a model is a complete model (zero weights)
// Property: either a gptoss::Error, or a file whose every tensor lies inside the file, is
// 4 KiB aligned, has bytes = product(shape) * dtype size, and can be read to its last byte.
#include <unistd.h>

#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "model/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::vector<uint8_t> file(data + 1, data + size);
  auto u64_at = [&](size_t at) {
    uint64_t v = 0;
    std::memcpy(&v, file.data() + at, 8);
    return v;
  };
  if ((flags & 1) && file.size() >= 24) {
    const uint64_t meta = u64_at(16);
    if (meta >= 120 && meta <= file.size() && file.size() - meta >= 8) {
      uint64_t h = 0xcbf29ce484222325ull;
      for (uint64_t i = 0; i < meta; ++i) h = (h ^ file[i]) * 0x100000001b3ull;
      std::memcpy(file.data() + meta, &h, 8);
    }
  }
  if ((flags & 2) && file.size() >= 32) {
    const uint64_t want = u64_at(24);
    if (want > file.size() && want <= (4u << 20)) file.resize(want, 0);
  }
  const std::string& path = fuzz::write_scratch("model", file.data(), file.size());
  fuzz::expect_clean([&] {
    ModelFile m(path);
    unsigned sum = 0;
    for (const TensorInfo& t : m.tensors()) {
      uint64_t n = dtype_bytes(t.dtype);
      for (int64_t d : t.shape) {
        if (d < 0) fuzz::finding("negative dimension accepted");
        n *= uint64_t(d);
      }
      if (n != t.bytes) fuzz::finding("tensor bytes != product(shape) * dtype size");
      if (t.offset % kTensorAlign) fuzz::finding("tensor offset not aligned");
      if (t.offset > m.file_bytes() || t.bytes > m.file_bytes() - t.offset)
        fuzz::finding("tensor outside the file");
      if (m.find(t.name) != &t) fuzz::finding("find() does not return the tensor");
      if (t.bytes) sum += t.data[0] + t.data[t.bytes - 1];  // touch both ends
    }
    (void)m.description();
    (void)m.config();
    asm volatile("" ::"r"(sum));
  });
  unlink(path.c_str());
  return 0;
}
