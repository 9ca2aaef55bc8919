// getp_io.cpp: getp prompt parser, partial output / resume, atomic final write, verify.
#include "run/getp_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/error.h"
#include "run/paths.h"

namespace gptoss {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void write_all(int fd, const std::string& s, const std::string& path) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    CHECK_SYS(w, "%s: write", path.c_str());
    off += static_cast<size_t>(w);
  }
}

// Splits on '\n'; a final line without '\n' counts as a line. Each line loses one trailing '\r'.
std::vector<std::string_view> split_lines(std::string_view data) {
  std::vector<std::string_view> lines;
  size_t i = 0;
  while (i < data.size()) {
    size_t j = data.find('\n', i);
    if (j == std::string_view::npos) j = data.size();
    std::string_view l = data.substr(i, j - i);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    i = j + 1;
  }
  return lines;
}

// "1 GiB", "16 MiB", "100 bytes": a limit in the unit that states it exactly.
std::string bytes_str(uint64_t b) {
  if (b >= (1ull << 30) && b % (1ull << 30) == 0) return strfmt("%llu GiB", (unsigned long long)(b >> 30));
  if (b >= (1ull << 20) && b % (1ull << 20) == 0) return strfmt("%llu MiB", (unsigned long long)(b >> 20));
  return strfmt("%llu bytes", (unsigned long long)b);
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) out += c;
    else out += strfmt("\\x%02x", u);
  }
  if (s.size() > 40) out += "...";
  return out;
}

}  // namespace

size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    int n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
    else return i;
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size() || (p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += static_cast<size_t>(n) + 1;
  }
  return std::string_view::npos;
}

std::string getp_limits_text(const GetpLimits& lim) {
  return strfmt("at most %s, %llu prompts, %s per prompt", bytes_str(lim.file_bytes).c_str(),
                (unsigned long long)lim.prompts, bytes_str(lim.prompt_bytes).c_str());
}

std::vector<PromptLine> parse_prompts(std::string_view data, const std::string& where,
                                      const GetpLimits& lim) {
  const char* w = where.c_str();
  if (data.size() > lim.file_bytes)
    fail("%s: the file is %zu bytes; a getp input may be at most %s", w, data.size(),
         bytes_str(lim.file_bytes).c_str());
  if (data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);
  // Lines are read one at a time (a file of a billion empty lines needs no line table).
  size_t pos = 0, line_no = 0;
  auto next_line = [&](std::string_view& l) {
    if (pos >= data.size()) return false;
    size_t j = data.find('\n', pos);
    if (j == std::string_view::npos) j = data.size();
    l = data.substr(pos, j - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    pos = j + 1;
    ++line_no;
    return true;
  };
  std::string_view line1;
  if (!next_line(line1)) fail("%s: empty file (expected the number of prompts on line 1)", w);
  std::string_view first = line1;
  while (!first.empty() && (first.front() == ' ' || first.front() == '\t')) first.remove_prefix(1);
  while (!first.empty() && (first.back() == ' ' || first.back() == '\t')) first.remove_suffix(1);
  uint64_t n = 0;
  bool ok = !first.empty() && first.size() <= 9 &&
            first.find_first_not_of("0123456789") == std::string_view::npos;
  if (ok) {
    for (char c : first) n = n * 10 + static_cast<uint64_t>(c - '0');
    ok = n > 0;
  }
  if (!ok)
    fail("%s:1: the first line must be the number of prompts, a positive integer (got '%s')", w,
         printable(line1).c_str());
  if (n > lim.prompts)
    fail("%s:1: %llu prompts announced; a getp input may hold at most %llu (split it into several "
         "files)", w, (unsigned long long)n, (unsigned long long)lim.prompts);
  std::vector<PromptLine> prompts;
  prompts.reserve(static_cast<size_t>(std::min<uint64_t>(n, data.size() / 2 + 1)));
  std::string_view l;
  while (prompts.size() < n && next_line(l)) {
    if (l.empty())
      fail("%s:%zu: empty prompt (prompt %zu of %llu)", w, line_no, prompts.size() + 1,
           (unsigned long long)n);
    if (l.size() > lim.prompt_bytes)
      fail("%s:%zu: the prompt is %zu bytes; a prompt may be at most %s", w, line_no, l.size(),
           bytes_str(lim.prompt_bytes).c_str());
    size_t bad = first_invalid_utf8(l);
    if (bad != std::string_view::npos)
      fail("%s:%zu: invalid UTF-8 at byte %zu of the line", w, line_no, bad + 1);
    prompts.push_back(PromptLine{static_cast<int>(line_no), std::string(l)});
  }
  if (prompts.size() < n)
    fail("%s: expected %llu prompts, found %zu", w, (unsigned long long)n, prompts.size());
  while (next_line(l))
    if (!l.empty())
      fail("%s:%zu: more prompts than the %llu announced on line 1", w, line_no,
           (unsigned long long)n);
  return prompts;
}

std::string read_file(const std::string& path_or_dash, uint64_t max_bytes, const char* what) {
  const bool in = path_or_dash == "-";
  const std::string path = in ? "stdin" : path_or_dash;
  int fd = in ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CHECK_SYS(fd, "%s: cannot open", path.c_str());
  auto close_fd = [&] {
    if (!in) ::close(fd);
  };
  struct stat st;
  const bool have_stat = ::fstat(fd, &st) == 0;
  if (have_stat && S_ISDIR(st.st_mode)) {
    close_fd();
    fail("%s: is a directory", path.c_str());
  }
  auto too_big = [&](const char* more_than, uint64_t bytes) {
    close_fd();
    fail("%s: the file is %s%llu bytes; %s may be at most %s", path.c_str(), more_than,
         (unsigned long long)bytes, what, bytes_str(max_bytes).c_str());
  };
  if (have_stat && S_ISREG(st.st_mode) && uint64_t(st.st_size) > max_bytes)
    too_big("", uint64_t(st.st_size));
  std::string s;
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close_fd();
      fail("%s: read: %s", path.c_str(), std::strerror(e));
    }
    if (r == 0) break;
    // A pipe, a device or a file that grows while read: stop one byte past the limit.
    if (static_cast<uint64_t>(r) > max_bytes - s.size()) too_big("more than ", max_bytes);
    s.append(buf, static_cast<size_t>(r));
  }
  close_fd();
  return s;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string read_prompt_input(const std::string& path, const GetpLimits& lim) {
  return read_file(path, lim.file_bytes, "a getp input");
}

std::vector<PromptLine> read_prompt_file(const std::string& path, const GetpLimits& lim) {
  return parse_prompts(read_prompt_input(path, lim), path, lim);
}

std::string format_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

std::optional<std::vector<int32_t>> parse_ids(std::string_view line) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < line.size()) {
    if (line[i] == ' ' || line[i] == '\t') { ++i; continue; }
    size_t j = i;
    int64_t v = 0;
    while (j < line.size() && line[j] >= '0' && line[j] <= '9' && j - i < 10) {
      v = v * 10 + (line[j] - '0');
      ++j;
    }
    if (j == i || v > INT32_MAX || (j < line.size() && line[j] != ' ' && line[j] != '\t'))
      return std::nullopt;
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

std::string partial_header(size_t n, uint64_t key, uint64_t seed) {
  return strfmt("# gptoss getp partial v1 n=%zu key=%016llx seed=%llu", n, (unsigned long long)key,
                (unsigned long long)seed);
}

std::optional<uint64_t> partial_seed(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[256];
  ssize_t r = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (r <= 0) return std::nullopt;
  std::string_view head(buf, static_cast<size_t>(r));
  head = head.substr(0, head.find('\n'));
  const size_t at = head.find(" seed=");
  if (head.rfind("# gptoss getp partial ", 0) != 0 || at == std::string_view::npos)
    return std::nullopt;
  std::string_view digits = head.substr(at + 6);
  if (digits.empty() || digits.size() > 20 ||
      digits.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  uint64_t v = 0;
  for (char c : digits) {
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

PartialWriter::PartialWriter(const std::string& path, const std::string& header, bool existing,
                             double sync_interval_s, double lock_wait_s)
    : path_(path), sync_interval_s_(sync_interval_s) {
  if (existing) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    CHECK_SYS(fd_, "%s: cannot open for appending", path.c_str());
  } else {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno == EEXIST)
      fail("%s: exists (left by an interrupted run): use --resume to continue it, or delete it",
           path.c_str());
    CHECK_SYS(fd_, "%s: cannot create", path.c_str());
  }
  // The lock: another process may still hold it for a moment (see getp_io.h).
  const double t0 = now_s();
  bool told = false;
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e == EINTR) continue;
    if (e != EWOULDBLOCK) {
      ::close(fd_);
      fd_ = -1;
      fail("%s: lock: %s", path.c_str(), std::strerror(e));
    }
    if (now_s() - t0 >= lock_wait_s) {
      ::close(fd_);
      fd_ = -1;
      fail("%s: still being written by another run after %g s (an interrupted job whose "
           "processes have not ended?); try again once it has ended",
           path.c_str(), lock_wait_s);
    }
    if (!told && now_s() - t0 >= 0.5) {
      std::fprintf(stderr, "getp: %s is still being written by another run; waiting for it to end\n",
                   path.c_str());
      told = true;
    }
    ::usleep(20000);
  }
  if (!existing) {
    write_all(fd_, header + "\n", path_);
    sync();
  }
  last_sync_s_ = now_s();
}

void PartialWriter::truncate_to(uint64_t keep_bytes) {
  GPTOSS_ASSERT(fd_ >= 0);
  CHECK_SYS(::ftruncate(fd_, static_cast<off_t>(keep_bytes)), "%s: truncate", path_.c_str());
}

PartialWriter::~PartialWriter() {
  try {
    close();
  } catch (...) {
  }
}

void PartialWriter::add(size_t index, const std::vector<int32_t>& ids) {
  GPTOSS_ASSERT(fd_ >= 0);
  write_all(fd_, std::to_string(index) + "\t" + format_ids(ids) + "\n", path_);
  dirty_ = true;
  if (now_s() - last_sync_s_ >= sync_interval_s_) sync();
}

void PartialWriter::sync() {
  if (fd_ < 0) return;
  CHECK_SYS(::fsync(fd_), "%s: fsync", path_.c_str());
  dirty_ = false;
  last_sync_s_ = now_s();
}

void PartialWriter::close() {
  if (fd_ < 0) return;
  if (dirty_) sync();
  ::close(fd_);
  fd_ = -1;
}

PartialState load_partial(const std::string& path, const std::string& expected_header, size_t n) {
  std::string data = read_file(path);
  const char* p = path.c_str();
  PartialState st;
  st.done.resize(n);
  size_t nl = data.find('\n');
  if (nl == std::string::npos || data.substr(0, nl) != expected_header)
    fail("%s: was written by another run (different input, model or output-changing flags); "
         "delete it to start over",
         p);
  size_t i = nl + 1;
  int line_no = 1;
  st.valid_bytes = i;
  while (i < data.size()) {
    size_t j = data.find('\n', i);
    ++line_no;
    if (j == std::string::npos) break;  // torn last line: ignored
    std::string_view l(data.data() + i, j - i);
    size_t tab = l.find('\t');
    std::optional<std::vector<int32_t>> idx, ids;
    if (tab != std::string_view::npos) {
      idx = parse_ids(l.substr(0, tab));
      ids = parse_ids(l.substr(tab + 1));
    }
    if (!idx || idx->size() != 1 || !ids || ids->empty())
      fail("%s:%d: malformed line (expected INDEX<TAB>ids)", p, line_no);
    size_t k = static_cast<size_t>((*idx)[0]);
    if (k >= n) fail("%s:%d: prompt index %zu out of range (N = %zu)", p, line_no, k, n);
    if (st.done[k]) {
      if (*st.done[k] != *ids) fail("%s:%d: prompt %zu appears twice with different ids", p, line_no, k);
    } else {
      st.done[k] = std::move(*ids);
      ++st.count;
    }
    i = j + 1;
    st.valid_bytes = i;
  }
  return st;
}

std::string format_output(const std::vector<std::vector<int32_t>>& outputs) {
  std::string s;
  for (const auto& o : outputs) {
    s += format_ids(o);
    s += '\n';
  }
  return s;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  OutputTarget t;
  t.kind = OutputTarget::Kind::File;
  t.path = t.file = path;
  write_output(t, contents);
}

std::string VerifyReport::summary() const {
  size_t n = std::max(out_lines, ref_lines);
  std::string s = strfmt("%zu/%zu prompts match", matched, n);
  if (out_lines != ref_lines) s += strfmt(" (OUT has %zu lines, REF %zu)", out_lines, ref_lines);
  if (!all_match)
    s += strfmt("; first divergence: prompt %zu (0-based), token %zu: OUT %s, REF %s", prompt,
                token, out_tok.c_str(), ref_tok.c_str());
  return s;
}

IdRows parse_id_rows(std::string_view data, const std::string& where) {
  IdRows rows;
  int line_no = 0;
  for (std::string_view l : split_lines(data)) {
    ++line_no;
    auto ids = parse_ids(l);
    if (!ids) fail("%s:%d: not a line of token ids", where.c_str(), line_no);
    rows.push_back(std::move(*ids));
  }
  return rows;
}

VerifyReport verify_rows(const IdRows& out, const IdRows& ref) {
  VerifyReport r;
  r.out_lines = out.size();
  r.ref_lines = ref.size();
  for (size_t i = 0; i < std::max(out.size(), ref.size()); ++i) {
    bool match = i < out.size() && i < ref.size() && out[i] == ref[i];
    if (match) { ++r.matched; continue; }
    if (!r.all_match) continue;
    r.all_match = false;
    r.prompt = i;
    if (i >= out.size() || i >= ref.size()) {
      r.token = 0;
      r.out_tok = i < out.size() ? "a line" : "missing line";
      r.ref_tok = i < ref.size() ? "a line" : "missing line";
      continue;
    }
    const auto &a = out[i], &b = ref[i];
    size_t j = 0;
    while (j < a.size() && j < b.size() && a[j] == b[j]) ++j;
    r.token = j;
    r.out_tok = j < a.size() ? std::to_string(a[j]) : "end of line";
    r.ref_tok = j < b.size() ? std::to_string(b[j]) : "end of line";
  }
  return r;
}

VerifyReport verify_outputs(const std::string& out_path, const std::string& ref_path) {
  return verify_rows(parse_id_rows(read_file(out_path), out_path),
                     parse_id_rows(read_file(ref_path), ref_path));
}

}  // namespace gptoss
