// modes.h: the modes of `run`; each returns the process exit code.
#pragma once
#include "run/options.h"

namespace gptoss {

int run_generate(const RunOptions& opt);
int run_chat(const RunOptions& opt);
int run_getp(const RunOptions& opt);
int run_bench(const RunOptions& opt);
int run_serve(const RunOptions& opt);

}  // namespace gptoss
