// model_file_test.cpp: Config::validate, named configs, ModelWriter/ModelFile round trip, and one
// test per corrupt-file case: the loader's one-line message, and `export-model --info` exiting
// non-zero with exactly that message as its only stderr line. The format knowledge used to
// tamper with files (field offsets, FNV-1a checksum) comes from docs/model-format.md.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "common/error.h"
#include "model/config.h"
#include "model/model_file.h"

using namespace gptoss;

namespace {

std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string d = std::string(GPTOSS_TEST_DATA) + "/model-tests";
  ::mkdir(GPTOSS_TEST_DATA, 0755);
  ::mkdir(d.c_str(), 0755);
  d += std::string("/") + info->test_suite_name() + "." + info->name();
  ::mkdir(d.c_str(), 0755);
  return d;
}

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
void write_all(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Deterministic bytes for tensor `i` of a test file.
uint8_t test_byte(size_t tensor, uint64_t k) {
  uint64_t z = (tensor + 1) * 0x9e3779b97f4a7c15ull + k * 0xbf58476d1ce4e5b9ull;
  z ^= z >> 29;
  return static_cast<uint8_t>(z * 0x94d049bb133111ebull >> 56);
}

using Plan = std::vector<std::pair<std::string, std::pair<DType, std::vector<int64_t>>>>;

uint64_t plan_bytes(const Plan::value_type& e) {
  uint64_t n = dtype_bytes(e.second.first);
  for (int64_t d : e.second.second) n *= static_cast<uint64_t>(d);
  return n;
}

void write_model(const std::string& path, const Config& c, const Plan& plan,
                 const std::string& desc = "micro test model") {
  ModelWriter w(path, c, desc, plan);
  for (size_t i = 0; i < plan.size(); i++) {
    std::vector<uint8_t> b(plan_bytes(plan[i]));
    for (uint64_t k = 0; k < b.size(); k++) b[k] = test_byte(i, k);
    w.write(plan[i].first, b.data(), b.size());
  }
  w.finish();
}

std::string micro_file(const std::string& dir) {
  const std::string p = dir + "/micro.bin";
  const Config c = named_config("micro");
  write_model(p, c, tensor_plan(c));
  return p;
}

// --- independent reading of the documented layout, for tampering ---
uint64_t rd64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}
uint32_t rd32(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
template <class T>
void wr(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}
void fix_checksum(std::vector<uint8_t>& b) {
  const uint64_t meta = rd64(b, 16);
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < meta; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  wr(b, meta, h);
}
struct DirEntry {
  std::string name;
  size_t dtype_at, shape_at, offset_at, bytes_at;
};
std::vector<DirEntry> directory(const std::vector<uint8_t>& b) {
  const uint32_t n = rd32(b, 40), desc = rd32(b, 44);
  const int32_t layers = static_cast<int32_t>(rd32(b, 48));
  size_t at = 120 + static_cast<size_t>(layers) + desc;
  std::vector<DirEntry> v;
  for (uint32_t i = 0; i < n; i++) {
    DirEntry e;
    const uint32_t nl = rd32(b, at);
    e.name.assign(reinterpret_cast<const char*>(&b[at + 4]), nl);
    at += 4 + nl;
    e.dtype_at = at;
    const uint32_t ndim = rd32(b, at + 4);
    e.shape_at = at + 8;
    at += 8 + 8 * ndim;
    e.offset_at = at;
    e.bytes_at = at + 8;
    at += 16;
    v.push_back(e);
  }
  EXPECT_EQ(at, rd64(b, 16));
  return v;
}
const DirEntry& entry(const std::vector<DirEntry>& d, const std::string& name) {
  for (const DirEntry& e : d)
    if (e.name == name) return e;
  throw std::runtime_error("no entry " + name);
}

std::string load_error(const std::string& path) {
  try {
    ModelFile m(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without error)";
}

struct CmdResult {
  int rc;
  std::string out, err;
};
CmdResult run_cmd(const std::string& cmd, const std::string& dir) {
  const std::string o = dir + "/cmd.out", e = dir + "/cmd.err";
  const int st = std::system((cmd + " >" + o + " 2>" + e).c_str());
  auto text = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, text(o), text(e)};
}

// The loader's message starts with the path, is one line and contains `what`; export-model
// --info prints exactly that as its only stderr line and exits 1.
void expect_load_error(const std::string& path, const std::string& what) {
  const std::string msg = load_error(path);
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find(what), std::string::npos) << "message: " << msg << "\nexpected: " << what;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  const CmdResult r = run_cmd(std::string(EXPORT_MODEL_BIN) + " --info '" + path + "'",
                              path.substr(0, path.rfind('/')) == path ? "." : test_dir());
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "export-model: error: " + msg + "\n");
  EXPECT_EQ(r.out, "");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST(Config, NamedConfigsMatchTheSpec) {
  const Config a = named_config("20b");
  EXPECT_EQ(a.n_layers, 24);
  EXPECT_EQ(a.hidden, 2880);
  EXPECT_EQ(a.intermediate, 2880);
  EXPECT_EQ(a.n_heads, 64);
  EXPECT_EQ(a.n_kv_heads, 8);
  EXPECT_EQ(a.head_dim, 64);
  EXPECT_EQ(a.n_experts, 32);
  EXPECT_EQ(a.experts_per_tok, 4);
  EXPECT_EQ(a.vocab, 201088);
  EXPECT_EQ(a.sliding_window, 128);
  EXPECT_EQ(a.max_context, 131072);
  EXPECT_EQ(a.initial_context, 4096);
  EXPECT_EQ(a.rope_theta, 150000.0f);
  EXPECT_EQ(a.rope_factor, 32.0f);
  EXPECT_EQ(a.rope_beta_fast, 32.0f);
  EXPECT_EQ(a.rope_beta_slow, 1.0f);
  EXPECT_EQ(a.rms_eps, 1e-5f);
  EXPECT_EQ(a.swiglu_limit, 7.0f);
  ASSERT_EQ(a.sliding.size(), 24u);
  for (int i = 0; i < 24; i++) EXPECT_EQ(a.sliding[i], i % 2 == 0 ? 1 : 0) << i;
  const Config b = named_config("120b");
  EXPECT_EQ(b.n_layers, 36);
  EXPECT_EQ(b.n_experts, 128);
  EXPECT_EQ(b.sliding.size(), 36u);
  const Config t = named_config("tiny");
  EXPECT_EQ(t.n_layers, 4);
  EXPECT_EQ(t.hidden, 192);
  EXPECT_EQ(t.intermediate, 128);
  EXPECT_EQ(t.n_heads, 8);
  EXPECT_EQ(t.n_kv_heads, 2);
  EXPECT_EQ(t.head_dim, 64);
  EXPECT_EQ(t.n_experts, 8);
  EXPECT_EQ(t.experts_per_tok, 4);
  EXPECT_EQ(t.vocab, 201088);
  EXPECT_EQ(t.sliding_window, 16);
  EXPECT_EQ(t.sliding, (std::vector<uint8_t>{1, 0, 1, 0}));
  EXPECT_NE(t.hidden, t.n_heads * t.head_dim);
  for (const char* n : {"20b", "120b", "tiny", "micro"}) EXPECT_NO_THROW(named_config(n).validate(n));
  EXPECT_THROW(named_config("7b"), Error);
}

TEST(Config, ValidateNamesTheBadField) {
  struct Case {
    std::function<void(Config&)> edit;
    std::string msg;
  };
  const std::vector<Case> cases = {
      {[](Config& c) { c.hidden = 100; }, "x: config hidden = 100 is not a multiple of 32"},
      {[](Config& c) { c.intermediate = 40; }, "x: config intermediate = 40 is not a multiple of 32"},
      {[](Config& c) { c.n_kv_heads = 3; }, "x: config n_heads = 64 is not a multiple of n_kv_heads = 3"},
      {[](Config& c) { c.experts_per_tok = 0; }, "x: config experts_per_tok = 0 is out of range [1, 32]"},
      {[](Config& c) { c.experts_per_tok = 33; }, "x: config experts_per_tok = 33 is out of range [1, 32]"},
      {[](Config& c) { c.vocab = (1 << 24) + 1; }, "x: config vocab = 16777217 is out of range [1, 16777216]"},
      {[](Config& c) { c.vocab = 0; }, "x: config vocab = 0 is out of range"},
      {[](Config& c) { c.n_layers = 1025; }, "x: config n_layers = 1025 is out of range [1, 1024]"},
      {[](Config& c) { c.sliding_window = 0; }, "x: config sliding_window = 0 is out of range"},
      {[](Config& c) { c.hidden = 1 << 30; }, "x: config hidden = 1073741824 is out of range [32, 65536]"},
      {[](Config& c) { c.rope_theta = NAN; }, "x: config rope_theta = nan is not a finite value"},
      {[](Config& c) { c.rms_eps = 0; }, "x: config rms_eps = 0 is not a finite value"},
      {[](Config& c) { c.swiglu_limit = -7; }, "x: config swiglu_limit = -7 is not a finite value"},
      {[](Config& c) { c.rope_factor = INFINITY; }, "x: config rope_factor = inf is not a finite value"},
      {[](Config& c) { c.sliding.pop_back(); }, "x: config has 23 per-layer sliding flags for 24 layers"},
      {[](Config& c) { c.sliding[3] = 2; }, "x: config sliding flag of layer 3 is 2 (must be 0 or 1)"},
      {[](Config& c) { c.head_dim = 63; }, "x: config head_dim = 63 is odd"},
  };
  for (const Case& k : cases) {
    Config c = named_config("20b");
    k.edit(c);
    try {
      c.validate("x");
      ADD_FAILURE() << "accepted: " << k.msg;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(k.msg, 0), 0u) << e.what() << " vs " << k.msg;
    }
  }
}

TEST(ModelFile, RoundTrip) {
  const std::string dir = test_dir();
  const Config c = named_config("micro");
  const Plan plan = tensor_plan(c);
  // The writer accepts tensors in any order and from several threads.
  const std::string p = dir + "/rt.bin";
  ::unlink(p.c_str());
  {
    ModelWriter w(p, c, "round trip \xe2\x9c\x93", plan);
#pragma omp parallel for
    for (long i = static_cast<long>(plan.size()) - 1; i >= 0; i--) {
      std::vector<uint8_t> b(plan_bytes(plan[i]));
      for (uint64_t k = 0; k < b.size(); k++) b[k] = test_byte(i, k);
      // in two parts, second part first
      const size_t half = b.size() / 2;
      w.write_part(plan[i].first, half, b.data() + half, b.size() - half);
      w.write_part(plan[i].first, 0, b.data(), half);
    }
    struct stat st {};
    EXPECT_NE(::stat(p.c_str(), &st), 0) << "final name must not exist before finish()";
    w.finish();
  }
  struct stat st {};
  EXPECT_NE(::stat((p + ".tmp").c_str(), &st), 0);
  const ModelFile m(p);
  EXPECT_EQ(m.description(), "round trip \xe2\x9c\x93");
  EXPECT_EQ(m.config().hidden, c.hidden);
  EXPECT_EQ(m.config().sliding, c.sliding);
  EXPECT_EQ(m.config().rms_eps, c.rms_eps);
  ASSERT_EQ(m.tensors().size(), plan.size());
  const std::vector<uint8_t> raw = read_all(p);
  ASSERT_EQ(raw.size(), m.file_bytes());
  for (size_t i = 0; i < plan.size(); i++) {
    const TensorInfo& t = m.get(plan[i].first, plan[i].second.first, plan[i].second.second);
    EXPECT_EQ(t.offset % kTensorAlign, 0u);
    EXPECT_EQ(t.data, raw.data() - raw.data() + m.tensors()[0].data - m.tensors()[0].offset + t.offset);
    ASSERT_EQ(t.bytes, plan_bytes(plan[i]));
    bool same = true;
    for (uint64_t k = 0; k < t.bytes; k++) same &= raw[t.offset + k] == test_byte(i, k) && t.data[k] == raw[t.offset + k];
    EXPECT_TRUE(same) << plan[i].first;
  }
  // Fingerprint = FNV-1a 64 of header + directory, stored after them.
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < rd64(raw, 16); i++) h = (h ^ raw[i]) * 0x100000001b3ull;
  EXPECT_EQ(m.fingerprint(), h);
  EXPECT_EQ(rd64(raw, rd64(raw, 16)), h);
  EXPECT_EQ(m.find("nope"), nullptr);
  EXPECT_THROW(m.get("norm", DType::F32, {c.hidden}), Error);
  EXPECT_THROW(m.get("norm", DType::BF16, {c.hidden, 1}), Error);
  // Same content, other description: other fingerprint.
  write_model(dir + "/rt2.bin", c, plan, "other");
  EXPECT_NE(ModelFile(dir + "/rt2.bin").fingerprint(), m.fingerprint());
}

TEST(ModelFile, WriterRefusesIncompleteAndLeavesNoFile) {
  const std::string dir = test_dir();
  const Config c = named_config("micro");
  const Plan plan = tensor_plan(c);
  const std::string p = dir + "/incomplete.bin";
  {
    ModelWriter w(p, c, "", plan);
    std::vector<uint8_t> b(plan_bytes(plan[0]));
    w.write(plan[0].first, b.data(), b.size());
    EXPECT_THROW(w.write(plan[1].first, b.data(), 3), Error);
    EXPECT_THROW(w.write_part(plan[1].first, 1, b.data(), plan_bytes(plan[1])), Error);
    EXPECT_THROW(w.write("not.a.tensor", b.data(), 1), Error);
    try {
      w.finish();
      ADD_FAILURE() << "finish accepted a missing tensor";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor layers.0.attn_norm got 0 of its"), std::string::npos) << e.what();
    }
  }
  struct stat st {};
  EXPECT_NE(::stat(p.c_str(), &st), 0);
  EXPECT_NE(::stat((p + ".tmp").c_str(), &st), 0);
}

TEST(ModelFile, InfoSummarizesAValidFile) {
  const std::string dir = test_dir();
  const std::string p = micro_file(dir);
  const CmdResult r = run_cmd(std::string(EXPORT_MODEL_BIN) + " --info " + p, dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("description: micro test model\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("config: layers 2, hidden 64, intermediate 96, heads 4, kv_heads 2, head_dim 16, experts 4 (top 2), vocab 1024"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tensors: 33,"), std::string::npos) << r.out;
}

// --- corrupt files: one test per case -------------------------------------------------------

class Corrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test_dir();
    good = micro_file(dir);
    bytes = read_all(good);
    path = dir + "/bad.bin";
  }
  void save() { write_all(path, bytes); }
  std::string dir, good, path;
  std::vector<uint8_t> bytes;
};

TEST_F(Corrupt, Truncated) {
  const auto d = directory(bytes);
  const TensorInfo last = ModelFile(good).tensors().back();
  bytes.resize(bytes.size() - 100);
  save();
  expect_load_error(path, "truncated: tensor unembedding ends at byte " +
                              std::to_string(last.offset + last.bytes) + " but the file has " +
                              std::to_string(bytes.size()) + " bytes");
}

TEST_F(Corrupt, TruncatedInsideHeader) {
  bytes.resize(100);
  save();
  expect_load_error(path, "truncated: the header needs 120 bytes but the file has 100 bytes");
  bytes.resize(4);
  save();
  expect_load_error(path, "truncated: the file has only 4 bytes");
}

TEST_F(Corrupt, TruncatedInsideDirectory) {
  bytes.resize(rd64(bytes, 16) - 10);
  save();
  expect_load_error(path, "truncated: the header and directory need ");
}

TEST_F(Corrupt, BadMagic) {
  bytes[3] ^= 0x20;
  save();
  expect_load_error(path, "not a gpt-oss model file (bad magic)");
}

TEST_F(Corrupt, WrongVersion) {
  wr<uint32_t>(bytes, 8, 2);
  fix_checksum(bytes);
  save();
  expect_load_error(path, "unsupported model format version 2 (this program reads version 1");
}

TEST_F(Corrupt, ChecksumMismatch) {
  bytes[125] ^= 1;  // a description byte
  save();
  expect_load_error(path, "corrupt header: checksum mismatch");
  bytes = read_all(good);
  wr<uint64_t>(bytes, rd64(bytes, 16), 0);  // the checksum itself
  save();
  expect_load_error(path, "corrupt header: checksum mismatch (stored 0000000000000000");
}

TEST_F(Corrupt, OffsetPastTheEnd) {
  const auto d = directory(bytes);
  const uint64_t off = (bytes.size() / 4096 + 10) * 4096;
  wr<uint64_t>(bytes, entry(d, "norm").offset_at, off);
  fix_checksum(bytes);
  save();
  expect_load_error(path, "truncated or corrupt: tensor norm starts at byte " + std::to_string(off) +
                              " but the file has " + std::to_string(bytes.size()) + " bytes");
  const uint64_t huge = ~uint64_t{0} / 4096 * 4096;  // offset + bytes would overflow
  wr<uint64_t>(bytes, entry(d, "norm").offset_at, huge);
  fix_checksum(bytes);
  save();
  expect_load_error(path, "truncated or corrupt: tensor norm starts at byte " + std::to_string(huge));
}

TEST_F(Corrupt, MisalignedOffset) {
  const auto d = directory(bytes);
  const size_t at = entry(d, "layers.1.sinks").offset_at;
  wr<uint64_t>(bytes, at, rd64(bytes, at) + 64);
  fix_checksum(bytes);
  save();
  expect_load_error(path, "corrupt directory: tensor layers.1.sinks offset " +
                              std::to_string(rd64(bytes, at)) + " is not a multiple of 4096");
}

TEST_F(Corrupt, OverlappingTensors) {
  const auto d = directory(bytes);
  wr<uint64_t>(bytes, entry(d, "layers.0.qkv.bias").offset_at,
               rd64(bytes, entry(d, "layers.0.qkv.weight").offset_at));
  fix_checksum(bytes);
  save();
  expect_load_error(path, "overlap");
  expect_load_error(path, "layers.0.qkv.weight");
}

TEST_F(Corrupt, OffsetInsideHeader) {
  const auto d = directory(bytes);
  wr<uint64_t>(bytes, entry(d, "embedding").offset_at, 0);
  fix_checksum(bytes);
  save();
  expect_load_error(path, "corrupt directory: tensor embedding offset 0 lies inside the header");
}

TEST_F(Corrupt, BytesDisagreeWithShape) {
  const auto d = directory(bytes);
  wr<uint64_t>(bytes, entry(d, "norm").bytes_at, 64);
  fix_checksum(bytes);
  save();
  expect_load_error(path, "corrupt directory: tensor norm has 64 bytes but bf16 [64] needs 128");
}

TEST_F(Corrupt, AbsurdConfig) {
  struct Case {
    size_t at;
    int32_t v;
    std::string msg;
  };
  for (const Case& k : std::vector<Case>{
           {52, 16, "config hidden = 16 is out of range [32, 65536]"},
           {52, 96 + 1, "config hidden = 97 is not a multiple of 32"},
           {48, 0, "config n_layers = 0 is out of range [1, 1024]"},
           {48, 100000, "config n_layers = 100000 is out of range [1, 1024]"},
           {80, 1 << 30, "config vocab = 1073741824 is out of range [1, 16777216]"},
           {76, 9, "config experts_per_tok = 9 is out of range [1, 4]"},
           {64, 3, "config n_heads = 4 is not a multiple of n_kv_heads = 3"},
       }) {
    bytes = read_all(good);
    wr<int32_t>(bytes, k.at, k.v);
    fix_checksum(bytes);
    save();
    expect_load_error(path, k.msg);
  }
  bytes = read_all(good);
  wr<float>(bytes, 96, NAN);  // rope_theta
  fix_checksum(bytes);
  save();
  expect_load_error(path, "config rope_theta = nan is not a finite value");
}

TEST_F(Corrupt, WrongDtypeTensor) {
  const Config c = named_config("micro");
  Plan plan = tensor_plan(c);
  for (auto& e : plan)
    if (e.first == "layers.1.router.weight") e.second.first = DType::F32;
  write_model(path, c, plan);
  expect_load_error(path, "tensor layers.1.router.weight has dtype f32, expected bf16");
}

TEST_F(Corrupt, WrongShapeTensor) {
  const Config c = named_config("micro");
  Plan plan = tensor_plan(c);
  for (auto& e : plan)
    if (e.first == "layers.0.mlp1.scales") e.second.second = {4, 96, 2};
  write_model(path, c, plan);
  expect_load_error(path, "tensor layers.0.mlp1.scales has shape [4, 96, 2], expected [4, 192, 2]");
}

TEST_F(Corrupt, MissingAndUnexpectedTensor) {
  const Config c = named_config("micro");
  Plan plan = tensor_plan(c);
  Plan missing;
  for (auto& e : plan)
    if (e.first != "layers.1.mlp2.bias") missing.push_back(e);
  write_model(path, c, missing);
  expect_load_error(path, "missing tensor layers.1.mlp2.bias");
  plan.push_back({"extra.weight", {DType::BF16, {3}}});
  write_model(path, c, plan);
  expect_load_error(path, "unexpected tensor extra.weight");
}

TEST_F(Corrupt, TrailingData) {
  bytes.resize(bytes.size() + 7, 0);
  save();
  expect_load_error(path, "7 bytes of trailing data");
}

TEST_F(Corrupt, NotAModelFile) {
  expect_load_error(dir, "is a directory, not a gpt-oss model file");
  const std::string devnull = "/dev/null";
  EXPECT_EQ(load_error(devnull), "/dev/null: not a regular file (a gpt-oss model file is expected)");
  write_all(path, {});
  expect_load_error(path, "file is empty");
  write_all(path, {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_load_error(path, "not a gpt-oss model file (this looks like a GGUF file)");
  // A plain safetensors file: u64 header length, JSON.
  std::string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  std::vector<uint8_t> st(8);
  wr<uint64_t>(st, 0, json.size());
  st.insert(st.end(), json.begin(), json.end());
  st.insert(st.end(), 4, 0);
  write_all(path, st);
  expect_load_error(path, "not a gpt-oss model file (this looks like a safetensors file");
  write_all(path, std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  expect_load_error(path, "not a gpt-oss model file (bad magic)");
  expect_load_error(dir + "/does-not-exist.bin", "cannot open: No such file or directory");
}

TEST(ModelFile, DevNullViaInfo) {
  const std::string dir = test_dir();
  const CmdResult r = run_cmd(std::string(EXPORT_MODEL_BIN) + " --info /dev/null", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "export-model: error: /dev/null: not a regular file (a gpt-oss model file is expected)\n");
}
