// convert.cpp: checkpoint detection and conversion (HF, original, legacy) into our model file.
#include "export/convert.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "common/bf16.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "export/jobs.h"
#include "export/layouts.h"
#include "export/mxfp4.h"
#include "export/safetensors.h"
#include "model/model_file.h"

namespace gptoss {

namespace {

constexpr uint64_t kChunkElems = uint64_t{8} << 20;

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 31, man = h & 1023;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(man | 1024), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

// All tensors of a checkpoint folder: model.safetensors, or the shards named by
// model.safetensors.index.json.
struct TensorSet {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const StTensor*> by_name;
  std::map<std::string, std::string> file_of;
  std::string dir;
};

TensorSet open_tensor_set(const std::string& dir) {
  TensorSet s;
  s.dir = dir;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (is_file(index_path)) {
    const nlohmann::json j = read_json_file(index_path);
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object() || wm->empty())
      fail("%s: missing or empty \"weight_map\"", index_path.c_str());
    std::map<std::string, std::vector<std::string>> names_of_file;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string())
        fail("%s: weight_map entry %s is not a file name", index_path.c_str(), it.key().c_str());
      const std::string f = it->get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail("%s: weight_map names an invalid shard file '%s'", index_path.c_str(), f.c_str());
      names_of_file[f].push_back(it.key());
    }
    for (const auto& [f, names] : names_of_file) {
      const std::string path = dir + "/" + f;
      if (!is_file(path))
        fail("%s: shard %s named in the index does not exist", index_path.c_str(), f.c_str());
      s.files.push_back(std::make_unique<SafetensorsFile>(path));
      for (const std::string& n : names) {
        const StTensor* t = s.files.back()->find(n);
        if (!t)
          fail("%s: tensor %s is not in shard %s named for it by the index", path.c_str(),
               n.c_str(), f.c_str());
        s.by_name[n] = t;
        s.file_of[n] = path;
      }
    }
  } else {
    const std::string path = dir + "/model.safetensors";
    s.files.push_back(std::make_unique<SafetensorsFile>(path));
    for (const auto& [n, t] : s.files.back()->tensors()) {
      s.by_name[n] = &t;
      s.file_of[n] = path;
    }
  }
  return s;
}

// Converts `count` elements of a float tensor of dtype `dt` to bf16.
void to_bf16(const std::string& dt, const uint8_t* src, uint64_t count, uint16_t* out) {
  if (dt == "F32") {
    for (uint64_t k = 0; k < count; k++) {
      float f;
      std::memcpy(&f, src + 4 * k, 4);
      out[k] = f32_to_bf16(f);
    }
  } else {  // F16
    for (uint64_t k = 0; k < count; k++) {
      uint16_t h;
      std::memcpy(&h, src + 2 * k, 2);
      out[k] = f32_to_bf16(f16_to_f32(h));
    }
  }
}

void convert_safetensors(const Config& c, Layout layout, const TensorSet& set, ModelWriter& w,
                         std::vector<Job>& jobs) {
  const char* kind = layout == Layout::HF ? "Hugging Face" : "original";
  for (const SourcePiece& p : source_pieces(c, layout)) {
    auto it = set.by_name.find(p.src_name);
    if (it == set.by_name.end() && p.u8 && layout == Layout::HF) {
      const std::string base = p.src_name.substr(0, p.src_name.rfind('_'));  // ..._proj
      if (set.by_name.count(base))
        fail("%s: tensor %s is not quantized (%s): only MXFP4 expert checkpoints are supported",
             set.dir.c_str(), base.c_str(), set.by_name.at(base)->dtype.c_str());
    }
    if (it == set.by_name.end())
      fail("%s: missing tensor %s (expected in a %s checkpoint of this config)", set.dir.c_str(),
           p.src_name.c_str(), kind);
    const StTensor* t = it->second;
    const std::string& file = set.file_of.at(p.src_name);
    if (t->shape != p.src_shape)
      fail("%s: tensor %s has shape %s, expected %s from the config", file.c_str(),
           p.src_name.c_str(), shape_str(t->shape).c_str(), shape_str(p.src_shape).c_str());
    if (p.u8 && t->dtype != "U8")
      fail("%s: tensor %s has dtype %s, expected U8 (MXFP4)", file.c_str(), p.src_name.c_str(),
           t->dtype.c_str());
    if (!p.u8 && t->dtype != "BF16" && t->dtype != "F32" && t->dtype != "F16")
      fail("%s: tensor %s has dtype %s, expected BF16, F16 or F32", file.c_str(),
           p.src_name.c_str(), t->dtype.c_str());
    const size_t es = st_dtype_bytes(t->dtype);
    for_chunks(p.elems, kChunkElems, [&](uint64_t b, uint64_t n) {
      jobs.push_back({n * (p.u8 ? 1 : 2), [&w, p, t, es, b, n] {
                        const uint8_t* src = t->data + b * es;
                        if (p.u8) {
                          w.write_part(p.dst_name, p.dst_elem + b, src, n);
                        } else if (t->dtype == "BF16") {
                          w.write_part(p.dst_name, 2 * (p.dst_elem + b), src, 2 * n);
                        } else {
                          std::vector<uint16_t> buf(n);
                          to_bf16(t->dtype, src, n, buf.data());
                          w.write_part(p.dst_name, 2 * (p.dst_elem + b), buf.data(), 2 * n);
                        }
                      }});
    });
  }
}

void convert_legacy(const Config& c, const MappedFile& f, ModelWriter& w, std::vector<Job>& jobs) {
  const std::string& path = f.path();
  for (const LegacyPiece& p : legacy_pieces(c)) {
    const uint8_t* base = f.data() + p.file_offset;
    if (!p.expert) {
      for_chunks(p.elems, kChunkElems, [&, base](uint64_t b, uint64_t n) {
        jobs.push_back({2 * n, [&w, p, &path, base, b, n] {
                          std::vector<uint16_t> out(n);
                          for (uint64_t k = 0; k < n; k++) {
                            float v;
                            std::memcpy(&v, base + 4 * (b + k), 4);
                            if (!std::isfinite(v))
                              fail("%s: legacy tensor %s element %llu is not finite (%g)",
                                   path.c_str(), p.dst_name.c_str(),
                                   static_cast<unsigned long long>(b + k), static_cast<double>(v));
                            out[k] = f32_to_bf16(v);
                          }
                          w.write_part(p.dst_name, 2 * b, out.data(), 2 * n);
                        }});
      });
      continue;
    }
    const uint64_t cols = static_cast<uint64_t>(p.cols);
    const uint64_t total_rows = static_cast<uint64_t>(p.experts * p.rows);
    const uint64_t rows_per_job = std::max<uint64_t>(1, kChunkElems / cols);
    for_chunks(total_rows, rows_per_job, [&, base, cols](uint64_t r0, uint64_t nr) {
      jobs.push_back({nr * cols / 32 * 17, [&w, p, &path, base, cols, r0, nr] {
                        const uint64_t bpr = cols / 32;  // blocks per row
                        std::vector<uint8_t> blocks(nr * bpr * 16), scales(nr * bpr);
                        float v[32];
                        for (uint64_t r = 0; r < nr; r++)
                          for (uint64_t k = 0; k < bpr; k++) {
                            std::memcpy(v, base + 4 * ((r0 + r) * cols + 32 * k), 128);
                            const uint64_t bi = r * bpr + k;
                            const int bad = mxfp4_pack_block(v, &blocks[16 * bi], &scales[bi]);
                            if (bad >= 0) {
                              const uint64_t row = r0 + r;
                              fail("%s: %s weight: expert %llu row %llu block %llu: value %.9g "
                                   "(element %llu of the block) is not exactly representable in "
                                   "MXFP4 with the block's scale",
                                   path.c_str(), p.dst_name.c_str(),
                                   static_cast<unsigned long long>(row / p.rows),
                                   static_cast<unsigned long long>(row % p.rows),
                                   static_cast<unsigned long long>(k), static_cast<double>(v[bad]),
                                   static_cast<unsigned long long>(bad));
                            }
                          }
                        w.write_part(p.dst_name + ".blocks", r0 * bpr * 16, blocks.data(),
                                     blocks.size());
                        w.write_part(p.dst_name + ".scales", r0 * bpr, scales.data(),
                                     scales.size());
                      }});
    });
  }
}

std::string read_label_sidecar(const std::string& path) {
  if (!is_file(path)) return "";
  return synthetic_label(read_json_file(path));
}

std::string describe(const std::string& synthetic, const std::string& from, const Config& c) {
  if (!synthetic.empty())
    return "synthetic random weights (" + synthetic + "), exported from " + from;
  return strfmt("gpt-oss (%d layers, %d experts), exported from %s", c.n_layers, c.n_experts,
                from.c_str());
}

std::string base_name(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

}  // namespace

void export_model(const std::string& src, const std::string& out) {
  const double t0 = now_seconds();
  const char* S = src.c_str();
  Config c;
  std::string description;
  std::unique_ptr<TensorSet> set;
  std::unique_ptr<MappedFile> legacy;
  Layout layout;
  struct stat st {};
  if (::stat(S, &st) < 0) fail("%s: cannot open: %s", S, std::strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    const bool hf = is_file(src + "/config.json") &&
                    (is_file(src + "/model.safetensors") ||
                     is_file(src + "/model.safetensors.index.json"));
    std::string dir = src;
    nlohmann::json cfg;
    if (hf) {
      cfg = read_json_file(src + "/config.json");
      // OpenAI's original/ folder itself also holds config.json + model.safetensors.
      layout = cfg.contains("num_experts") && !cfg.contains("num_local_experts") ? Layout::Original
                                                                                 : Layout::HF;
    } else if (is_file(src + "/original/config.json")) {
      dir = src + "/original";
      cfg = read_json_file(dir + "/config.json");
      layout = Layout::Original;
    } else {
      fail("%s: not a checkpoint folder (expected config.json with model.safetensors or "
           "model.safetensors.index.json, or an original/ folder)", S);
    }
    if (layout == Layout::HF)
      c = parse_hf_config(cfg, dir + "/config.json");
    else
      c = parse_original_config(cfg, dir + "/config.json");
    set = std::make_unique<TensorSet>(open_tensor_set(dir));
    const size_t n = set->files.size();
    const bool sharded = is_file(dir + "/model.safetensors.index.json");
    std::printf("detected: %s checkpoint%s, %zu safetensors %s%s\n",
                layout == Layout::HF ? "Hugging Face" : "OpenAI original",
                layout == Layout::Original && dir != src ? " (original/ folder)" : "", n,
                sharded ? "shard" : "file", n == 1 ? "" : "s");
    description = describe(synthetic_label(cfg),
                           std::string(layout == Layout::HF ? "Hugging Face" : "OpenAI original") +
                               " checkpoint " + base_name(src),
                           c);
  } else if (S_ISREG(st.st_mode)) {
    legacy = std::make_unique<MappedFile>(src);
    const uint8_t* p = legacy->data();
    const uint64_t size = legacy->size();
    if (size >= 8 && std::memcmp(p, "GPTOSSMF", 8) == 0)
      fail("%s: already a gpt-oss model file (see export-model --info)", S);
    if (size >= 4 && std::memcmp(p, "GGUF", 4) == 0)
      fail("%s: GGUF files are not supported (give a Hugging Face checkpoint folder)", S);
    if (size >= 9 && p[8] == '{')
      fail("%s: a single safetensors file; give the checkpoint folder that holds it and its "
           "config.json", S);
    if (size < kLegacyHeaderBytes)
      fail("%s: not a checkpoint (a %llu-byte file; expected a folder or a legacy fp32 .bin)", S,
           static_cast<unsigned long long>(size));
    c = parse_legacy_header(p, src);
    const uint64_t want = legacy_file_bytes(c);
    if (size != want)
      fail("%s: legacy fp32 .bin of this header must have %llu bytes but has %llu%s", S,
           static_cast<unsigned long long>(want), static_cast<unsigned long long>(size),
           size < want ? " (truncated)" : "");
    layout = Layout::Legacy;
    std::printf("detected: legacy fp32 .bin (llama2.c course format), %d layers, %d experts\n",
                c.n_layers, c.n_experts);
    description = describe(read_label_sidecar(src + ".gptoss.json"),
                           "legacy fp32 file " + base_name(src), c);
  } else {
    fail("%s: not a checkpoint folder or file", S);
  }

  ModelWriter w(out, c, description, tensor_plan(c));
  std::vector<Job> jobs;
  if (layout == Layout::Legacy)
    convert_legacy(c, *legacy, w, jobs);
  else
    convert_safetensors(c, layout, *set, w, jobs);
  run_jobs(jobs, "export");
  w.finish();
  const ModelFile check(out);  // the written file must load
  const double dt = now_seconds() - t0;
  std::printf("wrote %s: %zu tensors, %.2f GB in %.1f s (%.0f MB/s)\n", out.c_str(),
              check.tensors().size(), check.file_bytes() / 1e9, dt,
              check.file_bytes() / 1e6 / (dt + 1e-9));
  std::printf("description: %s\n", check.description().c_str());
}

void print_model_info(const std::string& path, bool list) {
  const ModelFile m(path);
  const Config& c = m.config();
  uint64_t tensor_bytes = 0;
  for (const TensorInfo& t : m.tensors()) tensor_bytes += t.bytes;
  std::string sliding;
  for (size_t i = 0; i < c.sliding.size(); i++)
    if (c.sliding[i]) {
      if (!sliding.empty()) sliding += ",";
      sliding += std::to_string(i);
    }
  std::printf("file: %s\n", path.c_str());
  std::printf("format: gpt-oss model file version %u, fingerprint %016llx\n", kFormatVersion,
              static_cast<unsigned long long>(m.fingerprint()));
  std::printf("description: %s\n", m.description().c_str());
  std::printf("config: layers %d, hidden %d, intermediate %d, heads %d, kv_heads %d, head_dim %d, "
              "experts %d (top %d), vocab %d\n",
              c.n_layers, c.hidden, c.intermediate, c.n_heads, c.n_kv_heads, c.head_dim,
              c.n_experts, c.experts_per_tok, c.vocab);
  std::printf("attention: sliding_window %d on layers [%s], max_context %d, rope_theta %g, "
              "yarn factor %g, beta_fast %g, beta_slow %g, initial_context %d\n",
              c.sliding_window, sliding.c_str(), c.max_context, c.rope_theta, c.rope_factor,
              c.rope_beta_fast, c.rope_beta_slow, c.initial_context);
  std::printf("other: rms_eps %g, swiglu_limit %g\n", c.rms_eps, c.swiglu_limit);
  std::printf("tensors: %zu, tensor bytes %llu, file bytes %zu\n", m.tensors().size(),
              static_cast<unsigned long long>(tensor_bytes), m.file_bytes());
  if (list)
    for (const TensorInfo& t : m.tensors())
      std::printf("  %-28s %-4s %-24s offset %llu bytes %llu\n", t.name.c_str(),
                  dtype_name(t.dtype), shape_str(t.shape).c_str(),
                  static_cast<unsigned long long>(t.offset),
                  static_cast<unsigned long long>(t.bytes));
}

}  // namespace gptoss
