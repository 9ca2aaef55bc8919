// paths.h: the files `run` reads and writes, checked before anything is loaded: input files
// ("-" = stdin) and where getp's OUT goes. The rules are documented in src/run/README.md.
// (The default model and tokenizer: common/data_paths.h.)
#pragma once
#include <string>

namespace gptoss {

// Fails unless path names a readable file that is not a folder:
// "<what> PATH: No such file or directory" ("-" is stdin and always passes).
void check_input_file(const std::string& path, const char* what);
// True when both name one existing file (same device and inode; links followed).
bool same_file(const std::string& a, const std::string& b);

// Where an output goes, decided (and checked) before anything is computed:
//   File:   a regular file, new or existing; written to file + ".tmp" and renamed over `file`, so
//           it appears complete or not at all. A symlink is followed: the file it names is
//           replaced and the link stays a link.
//   Stdout: "-".
//   Direct: an existing path that is not a regular file (a device, a FIFO, a symlink to one) or
//           that leads into /proc: opened and written, never replaced; one of this process's own
//           descriptors (/dev/stdout, /dev/fd/N, /proc/self/fd/N, or a link to them) is written
//           through that descriptor, so a shell's `>> log` appends.
struct OutputTarget {
  enum class Kind { File, Stdout, Direct };
  Kind kind = Kind::File;
  std::string path;  // as given (for messages; OUT.partial is path + ".partial")
  std::string file;  // File: the regular file to replace (links resolved); Direct: path
  int fd = -1;       // Direct through one of this process's descriptors
  bool resumable() const { return kind == Kind::File; }
};
// Resolves and checks path (flag: "-o" for messages): a folder, a missing folder, or a file or
// folder that cannot be written is an error.
OutputTarget resolve_output(const std::string& path, const char* flag = "-o");
// Writes contents to the target (see OutputTarget).
void write_output(const OutputTarget& t, const std::string& contents);

// "1 prompt", "2 prompts": n and the noun, plural unless n == 1 (nouns with a plain -s plural).
std::string count_of(size_t n, const char* noun);

}  // namespace gptoss
