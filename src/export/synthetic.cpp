// synthetic.cpp: canonical random values and the three synthetic checkpoint writers.
#include "export/synthetic.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "common/bf16.h"
#include "common/error.h"
#include "export/jobs.h"
#include "export/mxfp4.h"
#include "export/safetensors.h"

namespace gptoss {

namespace {

inline uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t tensor_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return splitmix64(seed ^ splitmix64(h));
}

// i-th random word of a tensor's stream.
inline uint64_t rnd(uint64_t key, uint64_t i) { return splitmix64(key + i * 0x9e3779b97f4a7c15ull); }
// Uniform in [-1, 1).
inline float unif(uint64_t r) { return static_cast<float>(r >> 40) * (2.0f / 16777216.0f) - 1.0f; }

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// E8M0 scale so that random MXFP4 codes (rms of the LUT = sqrt(8.5625)) with the +-1 exponent
// jitter (mean square factor (1/4 + 1 + 4) / 3 = 1.75) give std ~ 1/sqrt(fan_in).
int base_scale(int fan_in) {
  const double target =
      1.0 / std::sqrt(static_cast<double>(fan_in)) / std::sqrt(8.5625) / std::sqrt(1.75);
  return static_cast<int>(std::lround(std::log2(target))) + 127;
}

}  // namespace

std::string synthetic_name(const std::string& name, uint64_t seed) {
  return name + ", seed " + std::to_string(seed);
}

void synth_bf16(const Config& c, uint64_t seed, const std::string& dst, uint64_t first, uint64_t n,
                uint16_t* out) {
  const uint64_t key = tensor_key(seed, dst);
  const float sqrt3 = std::sqrt(3.0f);
  enum { Uniform, Norm, Sinks } kind = Uniform;
  float amp = 0.1f;  // biases: uniform in [-0.1, 0.1)
  if (dst == "embedding") {
    amp = sqrt3;  // std 1: rows of unit rms, like a residual stream
  } else if (dst == "unembedding") {
    amp = sqrt3 / std::sqrt(static_cast<float>(c.hidden));  // logits of std ~1
  } else if (ends_with(dst, "norm")) {
    kind = Norm;  // 1 +- 0.1
  } else if (ends_with(dst, "sinks")) {
    kind = Sinks;  // sum of three uniforms: mean 0, std 1
  } else if (ends_with(dst, "qkv.weight")) {
    amp = sqrt3 / std::sqrt(static_cast<float>(c.hidden));
  } else if (ends_with(dst, "out.weight")) {
    amp = sqrt3 / std::sqrt(static_cast<float>(c.q_dim()));
  } else if (ends_with(dst, "router.weight")) {
    amp = 2 * sqrt3 / std::sqrt(static_cast<float>(c.hidden));  // logits of std ~2: clear top-k
  } else if (!ends_with(dst, "bias")) {
    fail("internal error: no synthetic distribution for tensor %s", dst.c_str());
  }
  for (uint64_t k = 0; k < n; k++) {
    const uint64_t i = first + k;
    float v;
    if (kind == Norm) {
      v = 1.0f + 0.1f * unif(rnd(key, i));
    } else if (kind == Sinks) {
      v = unif(rnd(key, 3 * i)) + unif(rnd(key, 3 * i + 1)) + unif(rnd(key, 3 * i + 2));
    } else {
      v = amp * unif(rnd(key, i));
    }
    out[k] = f32_to_bf16(v);
  }
}

void synth_u8(const Config& c, uint64_t seed, const std::string& dst, uint64_t first, uint64_t n,
              uint8_t* out) {
  const uint64_t key = tensor_key(seed, dst);
  if (ends_with(dst, ".blocks")) {  // uniform random 4-bit codes
    // Byte i is byte (i % 8) of random word i / 8; whole words are stored 8 bytes at a time.
    uint64_t k = 0;
    for (; k < n && ((first + k) & 7) != 0; k++)
      out[k] = static_cast<uint8_t>(rnd(key, (first + k) >> 3) >> (8 * ((first + k) & 7)));
    for (; k + 8 <= n; k += 8) {
      const uint64_t w = rnd(key, (first + k) >> 3);
      for (int b = 0; b < 8; b++) out[k + b] = static_cast<uint8_t>(w >> (8 * b));
    }
    for (; k < n; k++)
      out[k] = static_cast<uint8_t>(rnd(key, (first + k) >> 3) >> (8 * ((first + k) & 7)));
  } else if (ends_with(dst, ".scales")) {  // base scale +- 1
    const int base = base_scale(ends_with(dst, "mlp1.scales") ? c.hidden : c.intermediate);
    for (uint64_t k = 0; k < n; k++)
      out[k] = static_cast<uint8_t>(base + static_cast<int>(rnd(key, first + k) % 3) - 1);
  } else {
    fail("internal error: %s is not a u8 tensor", dst.c_str());
  }
}

namespace {

constexpr uint64_t kChunkElems = uint64_t{8} << 20;

void make_dir(const std::string& d) {
  const size_t slash = d.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    struct stat pst {};
    if (::stat(d.substr(0, slash).c_str(), &pst) < 0) make_dir(d.substr(0, slash));
  }
  if (::mkdir(d.c_str(), 0755) < 0 && errno != EEXIST)
    fail("%s: cannot create directory: %s", d.c_str(), std::strerror(errno));
  struct stat st {};
  if (::stat(d.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    fail("%s: exists and is not a directory", d.c_str());
}

void write_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("%s: cannot create: %s", tmp.c_str(), std::strerror(errno));
    f << text;
    if (!f.flush()) fail("%s: write failed", tmp.c_str());
  }
  if (std::rename(tmp.c_str(), path.c_str()) < 0)
    fail("%s: cannot rename: %s", path.c_str(), std::strerror(errno));
}

// Safetensors checkpoint (HF or original names), split into `shards` files of similar size.
void write_safetensors_layout(const Config& c, const SyntheticOptions& o, const std::string& dir) {
  const std::vector<SourcePiece> pieces = source_pieces(c, o.layout);
  const int shards = o.shards;
  if (shards < 1 || static_cast<size_t>(shards) > pieces.size())
    fail("--shards %d: must be between 1 and %zu", shards, pieces.size());
  uint64_t total = 0;
  for (const SourcePiece& p : pieces) total += p.elems * (p.u8 ? 1 : 2);
  // Contiguous split: shard k takes pieces until it passes (k+1)/shards of the bytes, leaving at
  // least one piece for each later shard.
  std::vector<int> shard_of(pieces.size());
  {
    uint64_t acc = 0;
    int k = 0;
    for (size_t i = 0; i < pieces.size(); i++) {
      shard_of[i] = k;
      acc += pieces[i].elems * (pieces[i].u8 ? 1 : 2);
      const size_t left = pieces.size() - 1 - i;
      if (k < shards - 1 && (acc * shards >= total * (k + 1) || left == size_t(shards - 1 - k))) k++;
    }
  }
  std::vector<std::string> files;
  for (int k = 0; k < shards; k++)
    files.push_back(shards == 1 ? "model.safetensors"
                                : strfmt("model-%05d-of-%05d.safetensors", k + 1, shards));
  std::vector<std::unique_ptr<SafetensorsWriter>> writers;
  nlohmann::json weight_map = nlohmann::json::object();
  for (int k = 0; k < shards; k++) {
    std::vector<SafetensorsWriter::Entry> entries;
    for (size_t i = 0; i < pieces.size(); i++)
      if (shard_of[i] == k) {
        entries.push_back({pieces[i].src_name, pieces[i].u8 ? "U8" : "BF16", pieces[i].src_shape});
        weight_map[pieces[i].src_name] = files[static_cast<size_t>(k)];
      }
    writers.push_back(std::make_unique<SafetensorsWriter>(dir + "/" + files[k], entries));
  }
  std::vector<Job> jobs;
  for (size_t i = 0; i < pieces.size(); i++) {
    const SourcePiece& p = pieces[i];
    SafetensorsWriter* w = writers[static_cast<size_t>(shard_of[i])].get();
    for_chunks(p.elems, kChunkElems, [&](uint64_t b, uint64_t n) {
      jobs.push_back({n * (p.u8 ? 1 : 2), [&c, &o, &p, w, b, n] {
                        if (p.u8) {
                          std::vector<uint8_t> buf(n);
                          synth_u8(c, o.seed, p.dst_name, p.dst_elem + b, n, buf.data());
                          w->write_part(p.src_name, b, buf.data(), n);
                        } else {
                          std::vector<uint16_t> buf(n);
                          synth_bf16(c, o.seed, p.dst_name, p.dst_elem + b, n, buf.data());
                          w->write_part(p.src_name, 2 * b, buf.data(), 2 * n);
                        }
                      }});
    });
  }
  run_jobs(jobs, "synthetic");
  for (auto& w : writers) w->finish();
  if (shards > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
  }
}

void write_legacy(const Config& c, const SyntheticOptions& o, const std::string& path) {
  const std::vector<LegacyPiece> pieces = legacy_pieces(c);
  const uint64_t file_bytes = legacy_file_bytes(c);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK_SYS(fd, "%s: cannot create", path.c_str());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  CHECK_SYS(::ftruncate(fd, static_cast<off_t>(file_bytes)), "%s: cannot size", path.c_str());
  auto put = [&](const void* data, size_t bytes, uint64_t at) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (bytes > 0) {
      ssize_t w = ::pwrite(fd, p, bytes, static_cast<off_t>(at));
      if (w < 0 && errno == EINTR) continue;
      CHECK_SYS(w, "%s: write failed", path.c_str());
      p += w, at += static_cast<uint64_t>(w), bytes -= static_cast<size_t>(w);
    }
  };
  uint8_t header[60];
  legacy_header(c, header);
  put(header, 60, 0);
  std::vector<Job> jobs;
  for (const LegacyPiece& p : pieces) {
    if (!p.expert) {
      for_chunks(p.elems, kChunkElems, [&](uint64_t b, uint64_t n) {
        jobs.push_back({4 * n, [&, b, n] {
                          std::vector<uint16_t> h(n);
                          synth_bf16(c, o.seed, p.dst_name, b, n, h.data());
                          std::vector<float> f(n);
                          for (uint64_t k = 0; k < n; k++) f[k] = bf16_to_f32(h[k]);
                          put(f.data(), 4 * n, p.file_offset + 4 * b);
                        }});
      });
    } else {
      // Rows of all experts: [E * rows, cols] fp32 = dequantized canonical blocks and scales.
      const uint64_t total_rows = static_cast<uint64_t>(p.experts * p.rows);
      const uint64_t cols = static_cast<uint64_t>(p.cols);
      const uint64_t rows_per_job = std::max<uint64_t>(1, kChunkElems / cols);
      for_chunks(total_rows, rows_per_job, [&](uint64_t r0, uint64_t nr) {
        jobs.push_back({4 * nr * cols, [&, r0, nr, cols] {
                          const uint64_t nb = nr * cols / 32;
                          std::vector<uint8_t> blocks(nb * 16), scales(nb);
                          synth_u8(c, o.seed, p.dst_name + ".blocks", r0 * cols / 2, nb * 16,
                                   blocks.data());
                          synth_u8(c, o.seed, p.dst_name + ".scales", r0 * cols / 32, nb,
                                   scales.data());
                          std::vector<float> f(nr * cols);
                          for (uint64_t b = 0; b < nb; b++)
                            mxfp4_decode_block(&blocks[16 * b], scales[b], &f[32 * b]);
                          put(f.data(), 4 * f.size(), p.file_offset + 4 * r0 * cols);
                        }});
      });
    }
  }
  run_jobs(jobs, "synthetic");
}

}  // namespace

void write_synthetic(const SyntheticOptions& o) {
  const Config c = named_config(o.name);
  const double t0 = now_seconds();
  make_dir(o.out_dir);
  const std::string label = synthetic_name(o.name, o.seed);
  std::string what;
  uint64_t bytes = 0;
  if (o.layout == Layout::HF) {
    write_text(o.out_dir + "/config.json", hf_config_json(c, label).dump(2) + "\n");
    write_safetensors_layout(c, o, o.out_dir);
    what = "Hugging Face MXFP4 layout";
  } else if (o.layout == Layout::Original) {
    const std::string dir = o.out_dir + "/original";
    make_dir(dir);
    write_text(dir + "/config.json", original_config_json(c, label).dump(2) + "\n");
    write_safetensors_layout(c, o, dir);
    what = "OpenAI original layout";
  } else {
    if (o.shards != 1) fail("--shards applies to the hf and original layouts only");
    const std::string path = o.out_dir + "/model.bin";
    write_text(path + ".gptoss.json", nlohmann::json{{"gptoss_synthetic", label}}.dump() + "\n");
    write_legacy(c, o, path);
    what = "legacy fp32 .bin";
  }
  for (const auto& p : source_pieces(c, Layout::HF)) bytes += p.elems * (p.u8 ? 1 : 2);
  if (o.layout == Layout::Legacy) bytes = legacy_file_bytes(c);
  const double dt = now_seconds() - t0;
  std::printf("wrote synthetic %s (%s, random weights) to %s: %.2f GB in %.1f s (%.0f MB/s)\n",
              o.name.c_str(), what.c_str(), o.out_dir.c_str(), bytes / 1e9, dt,
              bytes / 1e6 / (dt + 1e-9));
}

}  // namespace gptoss
