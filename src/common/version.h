// version.h: what the programs print for --version: the source version (git describe of the
// checkout at build time, or the commit a `git archive` tarball records), the build type and the
// GPU backend with its architecture. Built by src/common/version.cmake (library gptoss_version).
#pragma once
#include <string>

namespace gptoss {

// e.g. "f582adb1c2-dirty (2026-12-03)"; "unknown (...)" when the source says nothing.
const char* source_version();
// "PROGRAM VERSION\nbuild: Release; GPU backend: CUDA (sm_90)" (no final newline)
std::string version_text(const char* program);

}  // namespace gptoss
