// model_file.cpp: reader (validating mmap loader) and writer of the single-file model format.
// The byte layout is documented in docs/model-format.md; keep the two in step.
#include "model/model_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>

#include "common/error.h"

namespace gptoss {

namespace {

constexpr char kMagic[8] = {'G', 'P', 'T', 'O', 'S', 'S', 'M', 'F'};
constexpr uint64_t kFixedHeaderBytes = 120;     // magic .. end of config scalars
constexpr uint64_t kMaxMetaBytes = 64ull << 20;  // header + directory
constexpr uint32_t kMaxTensors = 1u << 20;
constexpr uint32_t kMaxDescriptionBytes = 1u << 20;
constexpr uint32_t kMaxNameBytes = 1024;
constexpr uint32_t kMaxDims = 8;

uint64_t fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Little-endian append-only encoder.
struct Enc {
  std::vector<uint8_t> b;
  void raw(const void* p, size_t n) {
    const uint8_t* q = static_cast<const uint8_t*>(p);
    b.insert(b.end(), q, q + n);
  }
  void u32(uint32_t v) { raw(&v, 4); }
  void i32(int32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void put_u64_at(size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }
};

// Bounded little-endian decoder: reading past `end` is a "truncated header" error.
struct Dec {
  const uint8_t* p;
  uint64_t pos, end;
  const std::string& path;
  const char* what;
  void need(uint64_t n) {
    if (n > end - pos)
      fail("%s: corrupt header: %s runs past the end of the header (%llu bytes)", path.c_str(),
           what, static_cast<unsigned long long>(end));
  }
  void raw(void* out, uint64_t n) {
    need(n);
    std::memcpy(out, p + pos, n);
    pos += n;
  }
  uint32_t u32() { uint32_t v; raw(&v, 4); return v; }
  int32_t i32() { int32_t v; raw(&v, 4); return v; }
  uint64_t u64() { uint64_t v; raw(&v, 8); return v; }
  int64_t i64() { int64_t v; raw(&v, 8); return v; }
  float f32() { float v; raw(&v, 4); return v; }
};

using Plan = std::vector<std::pair<std::string, std::pair<DType, std::vector<int64_t>>>>;

// Encodes header + directory (without the trailing checksum) for the given tensors.
std::vector<uint8_t> encode_meta(const Config& c, const std::string& description,
                                 const std::vector<TensorInfo>& tensors, uint64_t file_bytes,
                                 uint64_t data_offset) {
  Enc e;
  e.raw(kMagic, 8);
  e.u32(kFormatVersion);
  e.u32(0);  // flags, reserved
  e.u64(0);  // meta_bytes, patched below
  e.u64(file_bytes);
  e.u64(data_offset);
  e.u32(static_cast<uint32_t>(tensors.size()));
  e.u32(static_cast<uint32_t>(description.size()));
  for (int32_t v : {c.n_layers, c.hidden, c.intermediate, c.n_heads, c.n_kv_heads, c.head_dim,
                    c.n_experts, c.experts_per_tok, c.vocab, c.sliding_window, c.max_context,
                    c.initial_context})
    e.i32(v);
  for (float v : {c.rope_theta, c.rope_factor, c.rope_beta_fast, c.rope_beta_slow, c.rms_eps,
                  c.swiglu_limit})
    e.f32(v);
  GPTOSS_ASSERT(e.b.size() == kFixedHeaderBytes);
  e.raw(c.sliding.data(), c.sliding.size());
  e.raw(description.data(), description.size());
  for (const TensorInfo& t : tensors) {
    e.u32(static_cast<uint32_t>(t.name.size()));
    e.raw(t.name.data(), t.name.size());
    e.u32(static_cast<uint32_t>(t.dtype));
    e.u32(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) e.i64(d);
    e.u64(t.offset);
    e.u64(t.bytes);
  }
  e.put_u64_at(16, e.b.size());
  return e.b;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

// Names what a non-model file probably is, for the "not a gpt-oss model file" message.
std::string guess_foreign(const uint8_t* p, size_t n) {
  if (n >= 4 && std::memcmp(p, "GGUF", 4) == 0) return "this looks like a GGUF file";
  if (n >= 9) {
    uint64_t hl;
    std::memcpy(&hl, p, 8);
    if (hl >= 2 && hl <= n - 8 && p[8] == '{')
      return "this looks like a safetensors file; convert its checkpoint folder with export-model";
  }
  if (n >= 60) {
    int32_t h[15];
    std::memcpy(h, p, 60);
    bool plausible = h[0] > 0 && h[1] > 0 && h[2] > 0 && h[3] > 0 && h[3] <= h[2] && h[4] > 0 &&
                     h[5] > 0 && h[5] <= 1024 && h[6] > 0 && h[7] > 0 && h[8] > 0;
    if (plausible)
      return "this looks like a legacy fp32 .bin; convert it with export-model";
  }
  if (n >= 2 && p[0] == '{') return "this looks like a JSON file";
  return "bad magic";
}

}  // namespace

Plan tensor_plan(const Config& c) {
  Plan p;
  for (TensorSpec& t : tensor_schema(c)) p.push_back({std::move(t.name), {t.dtype, std::move(t.shape)}});
  return p;
}

// ---------------------------------------------------------------------------------------------
// Reader

ModelFile::ModelFile(const std::string& path) {
  const char* P = path.c_str();
  struct stat st {};
  if (::stat(P, &st) == 0) {
    if (S_ISDIR(st.st_mode))
      fail("%s: is a directory, not a gpt-oss model file (to convert a checkpoint folder use "
           "export-model)", P);
    if (!S_ISREG(st.st_mode)) fail("%s: not a regular file (a gpt-oss model file is expected)", P);
    if (st.st_size == 0) fail("%s: file is empty (not a gpt-oss model file)", P);
  }
  file_ = MappedFile(path);
  const uint8_t* p = file_.data();
  const uint64_t size = file_.size();

  if (size < 8 || std::memcmp(p, kMagic, 8) != 0) {
    if (size < 8 && std::memcmp(p, kMagic, size) == 0)
      fail("%s: truncated: the file has only %llu bytes", P, static_cast<unsigned long long>(size));
    fail("%s: not a gpt-oss model file (%s)", P, guess_foreign(p, size).c_str());
  }
  if (size < kFixedHeaderBytes)
    fail("%s: truncated: the header needs %llu bytes but the file has %llu bytes", P,
         static_cast<unsigned long long>(kFixedHeaderBytes), static_cast<unsigned long long>(size));
  Dec d{p, 8, kFixedHeaderBytes, path, "fixed header"};
  const uint32_t version = d.u32();
  if (version != kFormatVersion)
    fail("%s: unsupported model format version %u (this program reads version %u; re-export the "
         "model)", P, version, kFormatVersion);
  const uint32_t flags = d.u32();
  const uint64_t meta_bytes = d.u64();
  const uint64_t header_file_bytes = d.u64();
  const uint64_t data_offset = d.u64();
  const uint32_t n_tensors = d.u32();
  const uint32_t desc_bytes = d.u32();
  if (meta_bytes < kFixedHeaderBytes || meta_bytes > kMaxMetaBytes)
    fail("%s: corrupt header: header+directory size %llu is out of range [%llu, %llu]", P,
         static_cast<unsigned long long>(meta_bytes),
         static_cast<unsigned long long>(kFixedHeaderBytes),
         static_cast<unsigned long long>(kMaxMetaBytes));
  if (meta_bytes + 8 > size)
    fail("%s: truncated: the header and directory need %llu bytes but the file has %llu bytes", P,
         static_cast<unsigned long long>(meta_bytes + 8), static_cast<unsigned long long>(size));
  uint64_t stored_sum;
  std::memcpy(&stored_sum, p + meta_bytes, 8);
  const uint64_t sum = fnv1a64(p, meta_bytes);
  if (sum != stored_sum)
    fail("%s: corrupt header: checksum mismatch (stored %016llx, computed %016llx)", P,
         static_cast<unsigned long long>(stored_sum), static_cast<unsigned long long>(sum));
  fingerprint_ = sum;
  if (flags != 0) fail("%s: corrupt header: unknown flags 0x%x", P, flags);
  if (n_tensors > kMaxTensors)
    fail("%s: corrupt header: %u tensors is more than the limit %u", P, n_tensors, kMaxTensors);
  if (desc_bytes > kMaxDescriptionBytes)
    fail("%s: corrupt header: description of %u bytes is longer than the limit %u", P, desc_bytes,
         kMaxDescriptionBytes);
  if (data_offset != align_up(meta_bytes + 8, kTensorAlign))
    fail("%s: corrupt header: data offset %llu should be %llu", P,
         static_cast<unsigned long long>(data_offset),
         static_cast<unsigned long long>(align_up(meta_bytes + 8, kTensorAlign)));

  Config& c = config_;
  d.end = meta_bytes;
  d.what = "config";
  for (int32_t* v : {&c.n_layers, &c.hidden, &c.intermediate, &c.n_heads, &c.n_kv_heads,
                     &c.head_dim, &c.n_experts, &c.experts_per_tok, &c.vocab, &c.sliding_window,
                     &c.max_context, &c.initial_context})
    *v = d.i32();
  for (float* v : {&c.rope_theta, &c.rope_factor, &c.rope_beta_fast, &c.rope_beta_slow,
                   &c.rms_eps, &c.swiglu_limit})
    *v = d.f32();
  if (c.n_layers < 1 || c.n_layers > 1024)
    fail("%s: config n_layers = %d is out of range [1, 1024]", P, c.n_layers);
  c.sliding.resize(static_cast<size_t>(c.n_layers));
  d.what = "sliding flags";
  d.raw(c.sliding.data(), c.sliding.size());
  c.validate(path);
  d.what = "description";
  description_.resize(desc_bytes);
  d.raw(description_.data(), desc_bytes);
  if (description_.find('\0') != std::string::npos)
    fail("%s: corrupt header: description contains a NUL byte", P);

  tensors_.reserve(n_tensors);
  std::unordered_map<std::string, size_t>& index = index_;
  for (uint32_t i = 0; i < n_tensors; i++) {
    TensorInfo t;
    d.what = "tensor directory";
    const uint32_t name_bytes = d.u32();
    if (name_bytes == 0 || name_bytes > kMaxNameBytes)
      fail("%s: corrupt directory: entry %u has a name of %u bytes", P, i, name_bytes);
    t.name.resize(name_bytes);
    d.raw(t.name.data(), name_bytes);
    const char* N = t.name.c_str();
    for (char ch : t.name)
      if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e)
        fail("%s: corrupt directory: entry %u has a name with a non-printable byte", P, i);
    const uint32_t dt = d.u32();
    if (dt < 1 || dt > 3) fail("%s: corrupt directory: tensor %s has unknown dtype code %u", P, N, dt);
    t.dtype = static_cast<DType>(dt);
    const uint32_t ndim = d.u32();
    if (ndim < 1 || ndim > kMaxDims)
      fail("%s: corrupt directory: tensor %s has %u dimensions", P, N, ndim);
    uint64_t elems = 1;
    for (uint32_t k = 0; k < ndim; k++) {
      const int64_t dim = d.i64();
      if (dim < 1 || dim > (int64_t{1} << 40))
        fail("%s: corrupt directory: tensor %s has dimension %lld", P, N, static_cast<long long>(dim));
      if (elems > (uint64_t{1} << 50) / static_cast<uint64_t>(dim))
        fail("%s: corrupt directory: tensor %s is absurdly large", P, N);
      elems *= static_cast<uint64_t>(dim);
      t.shape.push_back(dim);
    }
    t.offset = d.u64();
    t.bytes = d.u64();
    if (t.bytes != elems * dtype_bytes(t.dtype))
      fail("%s: corrupt directory: tensor %s has %llu bytes but %s %s needs %llu", P, N,
           static_cast<unsigned long long>(t.bytes), dtype_name(t.dtype), shape_str(t.shape).c_str(),
           static_cast<unsigned long long>(elems * dtype_bytes(t.dtype)));
    if (t.offset % kTensorAlign != 0)
      fail("%s: corrupt directory: tensor %s offset %llu is not a multiple of %llu", P, N,
           static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(kTensorAlign));
    if (t.offset < data_offset)
      fail("%s: corrupt directory: tensor %s offset %llu lies inside the header (data starts at "
           "%llu)", P, N, static_cast<unsigned long long>(t.offset),
           static_cast<unsigned long long>(data_offset));
    if (t.offset >= size)
      fail("%s: truncated or corrupt: tensor %s starts at byte %llu but the file has %llu bytes", P,
           N, static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(size));
    if (t.bytes > size - t.offset)
      fail("%s: truncated: tensor %s ends at byte %llu but the file has %llu bytes", P, N,
           static_cast<unsigned long long>(t.offset + t.bytes), static_cast<unsigned long long>(size));
    t.data = p + t.offset;
    if (!index.emplace(t.name, tensors_.size()).second)
      fail("%s: corrupt directory: tensor %s appears twice", P, N);
    tensors_.push_back(std::move(t));
  }
  if (d.pos != meta_bytes)
    fail("%s: corrupt header: %llu unexplained bytes after the directory", P,
         static_cast<unsigned long long>(meta_bytes - d.pos));

  // No two tensors may share bytes.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); i++) {
    const TensorInfo* a = by_offset[i - 1];
    const TensorInfo* b = by_offset[i];
    if (a->offset + a->bytes > b->offset)
      fail("%s: corrupt directory: tensors %s and %s overlap (bytes %llu..%llu and %llu..%llu)", P,
           a->name.c_str(), b->name.c_str(), static_cast<unsigned long long>(a->offset),
           static_cast<unsigned long long>(a->offset + a->bytes),
           static_cast<unsigned long long>(b->offset),
           static_cast<unsigned long long>(b->offset + b->bytes));
  }
  if (header_file_bytes != size) {
    if (header_file_bytes > size)
      fail("%s: truncated: the header says the file has %llu bytes but it has %llu", P,
           static_cast<unsigned long long>(header_file_bytes), static_cast<unsigned long long>(size));
    fail("%s: corrupt file: %llu bytes of trailing data after the %llu bytes the header declares",
         P, static_cast<unsigned long long>(size - header_file_bytes),
         static_cast<unsigned long long>(header_file_bytes));
  }

  // Every tensor of the schema, with its dtype and shape; nothing else.
  const std::vector<TensorSpec> schema = tensor_schema(c);
  by_kind_.assign(static_cast<size_t>(c.n_layers + 1) * kTensorKinds, SIZE_MAX);
  for (const TensorSpec& s : schema) {
    get(s.name, s.dtype, s.shape);
    const size_t slot = is_layer_kind(s.kind)
                            ? static_cast<size_t>(s.layer + 1) * kTensorKinds + size_t(s.kind)
                            : size_t(s.kind);
    by_kind_[slot] = index_.at(s.name);
  }
  if (tensors_.size() != schema.size()) {
    std::unordered_map<std::string, int> wanted;
    for (const TensorSpec& s : schema) wanted[s.name] = 1;
    for (const TensorInfo& t : tensors_)
      if (!wanted.count(t.name)) fail("%s: unexpected tensor %s", P, t.name.c_str());
  }
}

const TensorInfo& ModelFile::tensor(TensorKind kind, int layer) const {
  const bool per_layer = is_layer_kind(kind);
  GPTOSS_ASSERT(per_layer ? layer >= 0 && layer < config_.n_layers : layer == -1);
  const size_t slot = per_layer ? static_cast<size_t>(layer + 1) * kTensorKinds + size_t(kind)
                                : size_t(kind);
  GPTOSS_ASSERT(slot < by_kind_.size() && by_kind_[slot] < tensors_.size());
  return tensors_[by_kind_[slot]];
}

const void* ModelFile::typed_data(TensorKind kind, int layer, size_t elem_bytes) const {
  const TensorInfo& t = tensor(kind, layer);
  GPTOSS_ASSERT(elem_bytes == dtype_bytes(t.dtype));
  return t.data;
}

const TensorInfo* ModelFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& ModelFile::get(const std::string& name, DType dtype,
                                 const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(name);
  if (!t) fail("%s: missing tensor %s", path().c_str(), name.c_str());
  if (t->dtype != dtype)
    fail("%s: tensor %s has dtype %s, expected %s", path().c_str(), name.c_str(),
         dtype_name(t->dtype), dtype_name(dtype));
  if (t->shape != shape)
    fail("%s: tensor %s has shape %s, expected %s", path().c_str(), name.c_str(),
         shape_str(t->shape).c_str(), shape_str(shape).c_str());
  return *t;
}

// ---------------------------------------------------------------------------------------------
// Writer

struct ModelWriter::Impl {
  std::string path, tmp_path;
  int fd = -1;
  bool finished = false;
  Config config;
  std::string description;
  std::vector<TensorInfo> tensors;
  std::unique_ptr<std::atomic<uint64_t>[]> written;  // bytes written per tensor
  std::unordered_map<std::string, size_t> index;
  uint64_t file_bytes = 0;
  std::vector<uint8_t> meta;  // header + directory + checksum
};

ModelWriter::ModelWriter(const std::string& path, const Config& config,
                         const std::string& description, const Plan& plan)
    : impl_(new Impl) {
  Impl& m = *impl_;
  m.path = path;
  m.tmp_path = path + ".tmp";
  m.config = config;
  m.description = description;
  config.validate(path);
  if (description.size() > kMaxDescriptionBytes) fail("%s: description too long", path.c_str());
  for (const auto& [name, ts] : plan) {
    TensorInfo t;
    t.name = name;
    t.dtype = ts.first;
    t.shape = ts.second;
    uint64_t elems = 1;
    for (int64_t dim : t.shape) {
      GPTOSS_ASSERT(dim >= 1);
      elems *= static_cast<uint64_t>(dim);
    }
    t.bytes = elems * dtype_bytes(t.dtype);
    if (!m.index.emplace(name, m.tensors.size()).second)
      fail("%s: tensor %s planned twice", path.c_str(), name.c_str());
    m.tensors.push_back(std::move(t));
  }
  // Offsets do not change the directory size, so encode once to learn it, then lay out.
  const uint64_t meta_bytes = encode_meta(config, description, m.tensors, 0, 0).size();
  const uint64_t data_offset = align_up(meta_bytes + 8, kTensorAlign);
  uint64_t at = data_offset;
  for (TensorInfo& t : m.tensors) {
    t.offset = at;
    at = align_up(at + t.bytes, kTensorAlign);
  }
  // The last tensor needs no padding after it.
  m.file_bytes = m.tensors.empty() ? data_offset : m.tensors.back().offset + m.tensors.back().bytes;
  m.meta = encode_meta(config, description, m.tensors, m.file_bytes, data_offset);
  const uint64_t sum = fnv1a64(m.meta.data(), m.meta.size());
  m.meta.resize(m.meta.size() + 8);
  std::memcpy(m.meta.data() + m.meta.size() - 8, &sum, 8);
  m.written.reset(new std::atomic<uint64_t>[m.tensors.size()]);
  for (size_t i = 0; i < m.tensors.size(); i++) m.written[i] = 0;

  m.fd = ::open(m.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK_SYS(m.fd, "%s: cannot create", m.tmp_path.c_str());
  if (::ftruncate(m.fd, static_cast<off_t>(m.file_bytes)) < 0) {
    int e = errno;
    ::close(m.fd);
    ::unlink(m.tmp_path.c_str());
    m.fd = -1;
    fail("%s: cannot size the file to %llu bytes: %s", m.tmp_path.c_str(),
         static_cast<unsigned long long>(m.file_bytes), std::strerror(e));
  }
}

ModelWriter::~ModelWriter() {
  if (impl_->fd >= 0) ::close(impl_->fd);
  if (!impl_->finished) ::unlink(impl_->tmp_path.c_str());
  delete impl_;
}

static void pwrite_all(int fd, const void* data, size_t bytes, uint64_t at, const std::string& path) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    const size_t n = std::min<size_t>(bytes, size_t{1} << 30);
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    CHECK_SYS(w, "%s: write failed", path.c_str());
    if (w == 0) fail("%s: write failed (no progress)", path.c_str());
    p += w;
    at += static_cast<uint64_t>(w);
    bytes -= static_cast<size_t>(w);
  }
}

void ModelWriter::write(const std::string& name, const void* data, size_t bytes) {
  auto it = impl_->index.find(name);
  if (it == impl_->index.end())
    fail("%s: internal error: tensor %s is not in the plan", impl_->path.c_str(), name.c_str());
  const TensorInfo& t = impl_->tensors[it->second];
  if (bytes != t.bytes)
    fail("%s: internal error: tensor %s written with %zu bytes, expected %llu", impl_->path.c_str(),
         name.c_str(), bytes, static_cast<unsigned long long>(t.bytes));
  write_part(name, 0, data, bytes);
}

void ModelWriter::write_part(const std::string& name, uint64_t at, const void* data, size_t bytes) {
  Impl& m = *impl_;
  auto it = m.index.find(name);
  if (it == m.index.end())
    fail("%s: internal error: tensor %s is not in the plan", m.path.c_str(), name.c_str());
  const TensorInfo& t = m.tensors[it->second];
  if (at > t.bytes || bytes > t.bytes - at)
    fail("%s: internal error: write of %zu bytes at %llu past the end of tensor %s (%llu bytes)",
         m.path.c_str(), bytes, static_cast<unsigned long long>(at), name.c_str(),
         static_cast<unsigned long long>(t.bytes));
  if (m.fd < 0) fail("%s: internal error: write after finish", m.path.c_str());
  pwrite_all(m.fd, data, bytes, t.offset + at, m.tmp_path);
  m.written[it->second] += bytes;
}

void ModelWriter::finish() {
  Impl& m = *impl_;
  if (m.fd < 0) fail("%s: internal error: finish called twice", m.path.c_str());
  for (size_t i = 0; i < m.tensors.size(); i++)
    if (m.written[i] != m.tensors[i].bytes)
      fail("%s: internal error: tensor %s got %llu of its %llu bytes", m.path.c_str(),
           m.tensors[i].name.c_str(), static_cast<unsigned long long>(m.written[i].load()),
           static_cast<unsigned long long>(m.tensors[i].bytes));
  pwrite_all(m.fd, m.meta.data(), m.meta.size(), 0, m.tmp_path);
  CHECK_SYS(::fsync(m.fd), "%s: fsync failed", m.tmp_path.c_str());
  CHECK_SYS(::close(m.fd), "%s: close failed", m.tmp_path.c_str());
  m.fd = -1;
  CHECK_SYS(::rename(m.tmp_path.c_str(), m.path.c_str()), "%s: cannot rename to %s",
            m.tmp_path.c_str(), m.path.c_str());
  m.finished = true;
}

}  // namespace gptoss
