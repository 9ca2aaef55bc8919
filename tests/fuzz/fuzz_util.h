// fuzz_util.h: shared helpers of the fuzz targets (tests/fuzz): the one acceptable failure is a
// gptoss::Error (a clear one-line message); any other exception, a crash or a sanitizer report is
// a finding. Inputs that must be files are written to a per-process scratch file.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/error.h"

namespace gptoss::fuzz {

// Runs body; a gptoss::Error is an accepted outcome (its message must be one non-empty line),
// anything else aborts so libFuzzer (or the replay test) reports it.
template <class F>
void expect_clean(F&& body) {
  try {
    body();
  } catch (const gptoss::Error& e) {
    std::string m = e.what();
    if (m.empty() || m.find('\n') != std::string::npos) {
      std::fprintf(stderr, "fuzz: error message is not one non-empty line: '%s'\n", m.c_str());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: unexpected exception (not gptoss::Error): %s\n", e.what());
    std::abort();
  }
}

// A scratch file path unique to this process (in $TMPDIR or /tmp).
inline const std::string& scratch_path(const char* tag) {
  static const std::string p = [&] {
    const char* d = std::getenv("TMPDIR");
    return std::string(d && *d ? d : "/tmp") + "/gptoss-fuzz-" + tag + "-" +
           std::to_string(getpid());
  }();
  return p;
}

// Writes data to the scratch file; aborts if the write fails (not a finding of the target).
inline const std::string& write_scratch(const char* tag, const uint8_t* data, size_t size) {
  const std::string& p = scratch_path(tag);
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(p.c_str());
    std::abort();
  }
  return p;
}

[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "fuzz: %s\n", what);
  std::abort();
}

}  // namespace gptoss::fuzz
