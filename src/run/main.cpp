// main.cpp: `run [MODEL] -m generate|chat|getp ...` (see src/run/README.md).
#include "common/error.h"
#include "run/modes.h"
#include "run/options.h"

int main(int argc, char** argv) {
  return gptoss::guarded_main("run", [&]() -> int {
    gptoss::RunOptions opt;
    int rc = gptoss::parse_cli(argc, argv, opt);
    if (rc >= 0) return rc;
    switch (opt.mode) {
      case gptoss::Mode::Generate: return gptoss::run_generate(opt);
      case gptoss::Mode::Chat: return gptoss::run_chat(opt);
      case gptoss::Mode::Getp: return gptoss::run_getp(opt);
    }
    return 1;
  });
}
