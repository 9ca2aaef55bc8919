// data_paths.cpp: default model and tokenizer paths (see data_paths.h).
#include "common/data_paths.h"

#include <limits.h>
#include <unistd.h>

#include <cstdlib>

namespace gptoss {

namespace {
std::string env_or(const char* var, const std::string& fallback) {
  const char* v = std::getenv(var);
  return v && *v ? std::string(v) : fallback;
}
}  // namespace

std::string program_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf);
  if (n <= 0) return ".";
  std::string exe(buf, static_cast<size_t>(n));
  const size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : exe.substr(0, slash);
}

std::string default_model_path() { return env_or("GPTOSS_MODEL", program_dir() + "/tiny.bin"); }

std::string default_tokenizer_path() {
  return env_or("GPTOSS_TOKENIZER", program_dir() + "/tokenizer.bin");
}

}  // namespace gptoss
