// getp_io.h: the files of `run -m getp`: the prompt file parser (with its documented rules for
// malformed input), the crash-safe partial output (OUT.partial) and resume, the atomic final
// write of OUT, and --verify. Formats and rules are documented in src/run/README.md.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

struct PromptLine {
  int line = 0;      // 1-based line number in the input file
  std::string text;  // '\r' stripped, valid UTF-8, non-empty
};

// Size limits of a getp input, far above any real evaluation (a full 131072-token context is
// about 0.5 MiB of text); they turn a wrong file (a model, a log, /dev/zero) into a one-line
// error instead of memory exhaustion. Documented in src/run/README.md and `run --help`.
struct GetpLimits {
  uint64_t file_bytes = uint64_t{1} << 30;     // the whole file: 1 GiB
  uint64_t prompts = 1000000;                  // N on line 1
  uint64_t prompt_bytes = uint64_t{16} << 20;  // one prompt line: 16 MiB
};

// "at most 1 GiB, 1000000 prompts, 16 MiB per prompt" (for --help).
std::string getp_limits_text(const GetpLimits& limits);

// Parses the contents of a getp input file; `where` (the path) prefixes every message.
//   line 1: N, a positive integer (spaces around it allowed; a UTF-8 BOM before it is skipped)
//   lines 2..N+1: one prompt each; a trailing '\r' is stripped (CRLF files work)
// Errors: "PATH:1: ..." count not a positive integer; "PATH:L: empty prompt"; "PATH:L: invalid
// UTF-8 ..."; "PATH: expected N prompts, found M"; "PATH:L: more prompts than the N announced
// on line 1" (empty lines after the N prompts are ignored); over a limit: "PATH: the file is B
// bytes; ...", "PATH:1: N prompts announced; ...", "PATH:L: the prompt is B bytes; ...".
std::vector<PromptLine> parse_prompts(std::string_view data, const std::string& where,
                                      const GetpLimits& limits = {});
// The raw bytes of a getp input (Error naming it if unreadable or over limits.file_bytes; a pipe
// or device is read only up to the limit).
std::string read_prompt_input(const std::string& path, const GetpLimits& limits = {});
std::vector<PromptLine> read_prompt_file(const std::string& path, const GetpLimits& limits = {});

// Offset of the first invalid UTF-8 byte of s, or npos if s is valid (strict: no overlong forms,
// no surrogates, nothing above U+10FFFF).
size_t first_invalid_utf8(std::string_view s);

// One output line: ids separated by single spaces (no newline).
std::string format_ids(const std::vector<int32_t>& ids);
// Parses a line of space/tab separated non-negative ids; nullopt if anything else is in it.
std::optional<std::vector<int32_t>> parse_ids(std::string_view line);

// OUT.partial: line 1 is the header `# gptoss getp partial v1 n=N key=HEX seed=S` (key: a hash of
// the input file and of every flag that changes the outputs, the seed included; the seed also in
// clear, so --resume of a run that drew a random seed can take it again); then one line per finished prompt, in
// finishing order: `INDEX<TAB>ids` with INDEX the 0-based prompt index. Each line goes out with a
// single write(2) (O_APPEND) as soon as the prompt finishes (a killed process loses nothing
// finished); the file is fsynced at most once per sync_interval_s and when closed.
// One writer at a time: the writer holds an exclusive flock(2) on the file from open to close,
// and a second one waits for it (lock_wait_s at most): a run whose launcher has quit (mpirun
// interrupted twice) may still be appending for a moment while its --resume starts.
std::string partial_header(size_t n, uint64_t key, uint64_t seed = 1);
// The seed= of an existing OUT.partial's header; nullopt if it has none or cannot be read.
std::optional<uint64_t> partial_seed(const std::string& path);

class PartialWriter {
 public:
  // Fresh (existing = false): creates path (error if it exists) and writes the header.
  // Existing (resume): opens the file; call truncate_to() once it has been read.
  PartialWriter(const std::string& path, const std::string& header, bool existing,
                double sync_interval_s = 1.0, double lock_wait_s = 30.0);
  ~PartialWriter();
  PartialWriter(const PartialWriter&) = delete;
  PartialWriter& operator=(const PartialWriter&) = delete;
  // Resume: drops everything after keep_bytes (a torn last line); lines are appended after it.
  void truncate_to(uint64_t keep_bytes);
  void add(size_t index, const std::vector<int32_t>& ids);
  void sync();
  void close();

 private:
  std::string path_;
  int fd_ = -1;
  double sync_interval_s_;
  double last_sync_s_ = 0;
  bool dirty_ = false;
};

struct PartialState {
  std::vector<std::optional<std::vector<int32_t>>> done;  // [n]
  size_t count = 0;        // prompts done
  uint64_t valid_bytes = 0;  // file length without a torn last line
};
// Reads OUT.partial for --resume. Error if the header differs from expected_header (another
// input or other flags), or a complete line is malformed, or an index is out of range or repeats
// with other ids. A last line without '\n' (torn by a kill) is ignored.
PartialState load_partial(const std::string& path, const std::string& expected_header, size_t n);

// Writes path.tmp, fsyncs it, renames it to path and fsyncs the folder: the file appears complete
// or not at all (write_output of paths.h for a regular file).
void write_file_atomic(const std::string& path, const std::string& contents);
std::string format_output(const std::vector<std::vector<int32_t>>& outputs);

struct VerifyReport {
  size_t out_lines = 0, ref_lines = 0, matched = 0;
  bool all_match = true;
  // First divergence (when !all_match): prompt index (0-based), token position, texts of the
  // ids there ("end of line" when one side has no token there, "missing line").
  size_t prompt = 0, token = 0;
  std::string out_tok, ref_tok;
  std::string summary() const;  // one line
};
using IdRows = std::vector<std::vector<int32_t>>;
// The lines of an OUT-format file (ids separated by spaces); `where` prefixes errors
// ("REF:3: not a line of token ids").
IdRows parse_id_rows(std::string_view data, const std::string& where);
VerifyReport verify_rows(const IdRows& out, const IdRows& ref);
VerifyReport verify_outputs(const std::string& out_path, const std::string& ref_path);

// Reads a whole file ("-": stdin); Error naming it if it cannot be read or holds more than
// max_bytes ("PATH: the file is B bytes; WHAT may be at most 1 GiB").
std::string read_file(const std::string& path, uint64_t max_bytes = UINT64_MAX,
                      const char* what = "it");
bool file_exists(const std::string& path);

}  // namespace gptoss
