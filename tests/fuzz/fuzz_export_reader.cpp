// fuzz_export_reader.cpp: the readers of export-model on arbitrary bytes. The first input byte
// picks the reader, the rest is the file:
//   0: a .safetensors file (SafetensorsFile: header length, JSON header, offsets, dtypes)
//   1: config.json of a Hugging Face checkpoint (read_json_file + parse_hf_config)
//   2: config.json of an original checkpoint (read_json_file + parse_original_config)
// Property: a gptoss::Error or a consistent result (tensors inside the file, sizes that match).
#include <unistd.h>

#include "export/layouts.h"
#include "export/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  if (size < 1) return 0;
  const int mode = data[0] % 3;
  const std::string& path = fuzz::write_scratch("export", data + 1, size - 1);
  fuzz::expect_clean([&] {
    if (mode == 0) {
      SafetensorsFile f(path);
      unsigned sum = 0;
      for (const auto& [name, t] : f.tensors()) {
        uint64_t n = st_dtype_bytes(t.dtype);
        if (n == 0) fuzz::finding("unknown dtype accepted");
        for (int64_t d : t.shape) {
          if (d < 0) fuzz::finding("negative dimension accepted");
          n *= uint64_t(d);
        }
        if (n != t.bytes) fuzz::finding("tensor bytes != product(shape) * dtype size");
        const uint8_t* base = t.data;
        if (t.bytes && (!base || t.bytes > f.file_bytes())) fuzz::finding("tensor outside the file");
        if (t.bytes) sum += base[0] + base[t.bytes - 1];
        if (f.find(name) != &t) fuzz::finding("find() does not return the tensor");
      }
      asm volatile("" ::"r"(sum));
    } else {
      const nlohmann::json j = read_json_file(path);
      Config c = mode == 1 ? parse_hf_config(j, path) : parse_original_config(j, path);
      (void)c;
    }
  });
  unlink(path.c_str());
  return 0;
}
