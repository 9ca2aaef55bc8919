// convert.h: `export-model SRC OUT.bin` (detect the checkpoint kind, convert to our format) and
// `export-model --info FILE` (validate and summarize one of our files).
#pragma once
#include <string>

namespace gptoss {

// Prints "detected: ..." and a final summary on stdout; progress on a terminal's stderr.
void export_model(const std::string& src, const std::string& out);
// Loads (fully validating) and prints a summary; with `list`, one line per tensor.
void print_model_info(const std::string& path, bool list);

}  // namespace gptoss
