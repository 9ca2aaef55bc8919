// export_main.cpp: the export-model program (conversion, --info, --synthetic).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "common/error.h"
#include "common/version.h"
#include "export/convert.h"
#include "export/synthetic.h"

int main(int argc, char** argv) {
  return gptoss::guarded_main("export-model", [&]() -> int {
    CLI::App app{
        "Convert a gpt-oss checkpoint to the gpt-oss model file, inspect one, or write a "
        "synthetic checkpoint.\n"
        "  export-model SRC OUT.bin       SRC = Hugging Face folder, OpenAI original/ folder or "
        "legacy fp32 .bin\n"
        "  export-model --info FILE.bin   validate and summarize a model file\n"
        "  export-model --synthetic NAME OUT_DIR [--seed S] [--layout hf|original|legacy] "
        "[--shards N]",
        "export-model"};
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.set_version_flag("--version", gptoss::version_text("export-model"));
    app.footer("Exit status: 0 ok, 1 error.");
    std::vector<std::string> args;
    std::string info, synthetic, layout = "hf";
    uint64_t seed = 1;
    int shards = 1;
    bool list = false;
    app.add_option("args", args, "SRC OUT.bin, or OUT_DIR with --synthetic")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("--info", info, "Validate a model file and print its summary");
    app.add_flag("--tensors", list, "With --info: list every tensor");
    app.add_option("--synthetic", synthetic,
                   "Write a deterministic random checkpoint: tiny, 20b, 120b (or micro)");
    app.add_option("--seed", seed, "Seed of the synthetic weights (default 1)");
    app.add_option("--layout", layout, "Synthetic layout: hf (default), original, legacy")
        ->check(CLI::IsMember({"hf", "original", "legacy"}));
    app.add_option("--shards", shards, "Synthetic: number of safetensors files (default 1)");
    try {
      app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version: printed to stdout, exit 0
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      std::string msg = e.what();
      for (char& ch : msg)
        if (ch == '\n') ch = ' ';
      gptoss::fail("%s (see --help)", msg.c_str());
    }
    if (!info.empty()) {
      if (!args.empty() || !synthetic.empty()) gptoss::fail("--info takes exactly one FILE");
      gptoss::print_model_info(info, list);
      return 0;
    }
    if (!synthetic.empty()) {
      if (args.size() != 1) gptoss::fail("--synthetic NAME needs exactly one OUT_DIR");
      gptoss::SyntheticOptions o;
      o.name = synthetic;
      o.out_dir = args[0];
      o.seed = seed;
      o.shards = shards;
      o.layout = layout == "hf"         ? gptoss::Layout::HF
                 : layout == "original" ? gptoss::Layout::Original
                                        : gptoss::Layout::Legacy;
      gptoss::write_synthetic(o);
      return 0;
    }
    if (args.size() != 2) gptoss::fail("expected SRC OUT.bin (see --help)");
    gptoss::export_model(args[0], args[1]);
    return 0;
  });
}
