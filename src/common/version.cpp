// version.cpp: --version text (see version.h). version_git.h is written at build time.
#include "common/version.h"

#include "version_git.h"  // GPTOSS_SOURCE_VERSION

namespace gptoss {

const char* source_version() { return GPTOSS_SOURCE_VERSION; }

std::string version_text(const char* program) {
  return std::string(program) + " " + GPTOSS_SOURCE_VERSION +
         "\nbuild: " GPTOSS_BUILD_TYPE "; GPU backend: " GPTOSS_GPU_DESC;
}

}  // namespace gptoss
