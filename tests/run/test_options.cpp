// test_options.cpp: the `run` command line: mode defaults (the model and tokenizer found at run
// time), --help and --version, a repeated flag, the fresh seed, and the one-line errors for bad
// values.
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/data_paths.h"
#include "common/error.h"
#include "run/options.h"

namespace gptoss {
namespace {

int parse(std::vector<const char*> args, RunOptions& o) {
  args.insert(args.begin(), "run");
  return parse_cli(static_cast<int>(args.size()), args.data(), o);
}
std::string err(std::vector<const char*> args) {
  RunOptions o;
  try {
    parse(args, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(RunOptions, ModeDefaults) {
  RunOptions g;
  EXPECT_EQ(parse({"m.bin", "-m", "generate", "-i", "hi"}, g), -1);
  EXPECT_EQ(g.model_path, "m.bin");
  EXPECT_EQ(g.max_new, 256);
  EXPECT_EQ(g.temperature, 1.0f);
  EXPECT_EQ(g.max_slots, 1);
  EXPECT_EQ(g.ctx, 4096);
  EXPECT_EQ(g.stop_ids, (std::vector<int32_t>{199999, 200002, 200012}));
  RunOptions c;
  EXPECT_EQ(parse({"-m", "chat"}, c), -1);
  EXPECT_EQ(c.max_new, 1024);
  EXPECT_EQ(c.reasoning, "medium");
  // The defaults are found at run time: beside the program, unless the environment says.
  unsetenv("GPTOSS_MODEL");
  unsetenv("GPTOSS_TOKENIZER");
  RunOptions d;
  EXPECT_EQ(parse({"-m", "chat"}, d), -1);
  EXPECT_EQ(d.model_path, program_dir() + "/tiny.bin");
  EXPECT_EQ(d.tokenizer_path, program_dir() + "/tokenizer.bin");
  setenv("GPTOSS_MODEL", "/data/20b.bin", 1);
  setenv("GPTOSS_TOKENIZER", "/data/tok.bin", 1);
  RunOptions e;
  EXPECT_EQ(parse({"-m", "chat"}, e), -1);
  EXPECT_EQ(e.model_path, "/data/20b.bin");
  EXPECT_EQ(e.tokenizer_path, "/data/tok.bin");
  unsetenv("GPTOSS_MODEL");
  unsetenv("GPTOSS_TOKENIZER");
  EXPECT_FALSE(c.seed_given);
  RunOptions p;
  EXPECT_EQ(parse({"-m", "getp", "-i", "in", "-o", "out"}, p), -1);
  EXPECT_EQ(p.max_new, 256);
  EXPECT_EQ(p.temperature, 0.0f);
  EXPECT_EQ(p.max_slots, 32);
}

TEST(RunOptions, ExplicitValues) {
  RunOptions o;
  EXPECT_EQ(parse({"-m", "getp", "-i", "in", "-o", "out", "-n", "5", "-T", "0.7", "-p", "0.9",
                   "--top-k", "40", "-s", "7", "-c", "512", "-b", "3", "-t", "2", "--stop",
                   "1,2", "--chunk", "16", "--resume", "--verify", "ref"},
                  o),
            -1);
  EXPECT_EQ(o.max_new, 5);
  EXPECT_FLOAT_EQ(o.temperature, 0.7f);
  EXPECT_FLOAT_EQ(o.top_p, 0.9f);
  EXPECT_EQ(o.top_k, 40);
  EXPECT_EQ(o.seed, 7u);
  EXPECT_EQ(o.ctx, 512);
  EXPECT_EQ(o.max_slots, 3);
  EXPECT_EQ(o.threads, 2);
  EXPECT_EQ(o.chunk_tokens, 16);
  EXPECT_EQ(o.stop_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_TRUE(o.resume);
  EXPECT_EQ(o.verify_path, "ref");
  RunOptions n;
  EXPECT_EQ(parse({"-i", "x", "--stop", "none", "-s", "18446744073709551615"}, n), -1);
  EXPECT_EQ(n.seed, 18446744073709551615ull);
  EXPECT_TRUE(n.stop_ids.empty());
  RunOptions p;
  EXPECT_EQ(parse({"-i", "x"}, p), -1);
  EXPECT_EQ(p.precision, "");  // the backend's default (GPU: kGpuDefaultPrecision)
  EXPECT_EQ(parse({"-i", "x", "--precision", "exact"}, p), -1);
  EXPECT_EQ(p.precision, "exact");
}

TEST(RunOptions, HelpExitsZero) {
  RunOptions o;
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse({"--help"}, o), 0);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("--max-new"), std::string::npos);
  EXPECT_NE(out.find("getp, serve: max concurrent sequences"), std::string::npos);
  EXPECT_NE(out.find("-m serve"), std::string::npos);
  EXPECT_NE(out.find("run [MODEL] -m bench"), std::string::npos);
  EXPECT_NE(out.find("-m,--mode TEXT=generate     generate | chat | getp | bench"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("MODEL is $GPTOSS_MODEL, else tiny.bin beside this program"), std::string::npos);
  EXPECT_NE(out.find("Exit status: 0 ok; 1 error; 2 getp --verify found a difference; 130 "
                     "interrupted by\nSIGINT (Ctrl-C), 143 by SIGTERM."),
            std::string::npos);
}

TEST(RunOptions, VersionExitsZero) {
  RunOptions o;
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse({"--version"}, o), 0);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.rfind("run ", 0), 0u) << out;
  EXPECT_NE(out.find("\nbuild: "), std::string::npos) << out;
  EXPECT_NE(out.find("; GPU backend: "), std::string::npos) << out;
}

// A flag given twice takes its last value, as in most tools.
TEST(RunOptions, RepeatedFlagTakesTheLastValue) {
  RunOptions o;
  EXPECT_EQ(parse({"-i", "a", "-n", "5", "-n", "7", "-T", "0.5", "--temp", "0", "--ignore-eos",
                   "--ignore-eos", "-m", "chat", "-m", "generate"},
                  o),
            -1);
  EXPECT_EQ(o.max_new, 7);
  EXPECT_EQ(o.temperature, 0.0f);
  EXPECT_TRUE(o.ignore_eos);
  EXPECT_EQ(o.mode, Mode::Generate);
  RunOptions p;
  EXPECT_EQ(parse({"-m", "getp", "-i", "a", "-o", "b", "-o", "c", "-b", "2", "-b", "9"}, p), -1);
  EXPECT_EQ(p.output, "c");
  EXPECT_EQ(p.max_slots, 9);
}

TEST(RunOptions, SeedGivenOrFresh) {
  RunOptions o;
  EXPECT_EQ(parse({"-i", "a", "-s", "5"}, o), -1);
  EXPECT_TRUE(o.seed_given);
  EXPECT_EQ(pick_fresh_seed(o), "");  // -s given: kept
  EXPECT_EQ(o.seed, 5u);
  RunOptions g;
  EXPECT_EQ(parse({"-i", "a", "-T", "0"}, g), -1);
  EXPECT_EQ(pick_fresh_seed(g), "");  // greedy: no seed needed
  RunOptions a, b;
  EXPECT_EQ(parse({"-i", "a"}, a), -1);
  EXPECT_EQ(parse({"-i", "a"}, b), -1);
  const std::string note = pick_fresh_seed(a);
  pick_fresh_seed(b);
  EXPECT_NE(a.seed, b.seed);  // 2^-64 to fail by chance
  EXPECT_EQ(note, "seed: " + std::to_string(a.seed) + " (random; -s " + std::to_string(a.seed) +
                      " repeats this run)");
}

TEST(RunOptions, BadValues) {
  EXPECT_EQ(err({"-i", "x", "-n", "0"}), "-n: max new tokens must be in [1, 131072], got 0");
  EXPECT_EQ(err({"-i", "x", "-n", "-5"}), "-n: max new tokens must be in [1, 131072], got -5");
  EXPECT_EQ(err({"-i", "x", "-n", "99999999"}),
            "-n: max new tokens must be in [1, 131072], got 99999999");
  EXPECT_EQ(err({"-i", "x", "-T", "-1"}), "-T: temperature must be in [0, 100], got -1");
  EXPECT_EQ(err({"-i", "x", "-T", "nan"}), "-T: temperature must be in [0, 100], got nan");
  EXPECT_EQ(err({"-i", "x", "-s", "-1"}), "-s: the seed must be an integer in [0, 2^64), got '-1'");
  EXPECT_EQ(err({"-i", "x", "-s", "18446744073709551616"}),
            "-s: the seed must be an integer in [0, 2^64), got '18446744073709551616'");
  EXPECT_EQ(err({"-i", "x", "-p", "0"}), "-p: top-p must be in (0, 1], got 0");
  EXPECT_EQ(err({"-i", "x", "--top-k", "-1"}), "--top-k: must be >= 0, got -1");
  EXPECT_EQ(err({"-i", "x", "-c", "200000"}), "-c: context must be in [2, 131072], got 200000");
  EXPECT_EQ(err({"-m", "getp", "-i", "a", "-o", "b", "-b", "0"}),
            "-b: max concurrent sequences must be in [1, 16384], got 0");
  EXPECT_EQ(err({"-i", "x", "--chunk", "0"}),
            "--chunk: per-step token budget must be in [1, 65536], got 0");
  EXPECT_EQ(err({"-i", "x", "--step-rows", "256"}),
            "--step-rows: rows per device step must be in [512, 4096], got 256");
  EXPECT_EQ(err({"-i", "x", "--step-rows", "8192"}),
            "--step-rows: rows per device step must be in [512, 4096], got 8192");
  EXPECT_EQ(err({"-i", "x", "--step-rows", "2048"}), "(no error)");
  EXPECT_EQ(err({"-i", "x", "-t", "-2"}), "-t: threads must be in [0, 4096], got -2");
  EXPECT_EQ(err({"-i", "x", "--stop", "1,abc"}),
            "--stop: 'abc' is not a token id (expected ids like 199999,200002)");
  EXPECT_EQ(err({"-i", "x", "--backend", "tpu"}), "--backend: expected auto, cpu or gpu, got 'tpu'");
  EXPECT_EQ(err({"-i", "x", "--precision", "half"}), "--precision: expected exact or fast, got 'half'");
  EXPECT_EQ(err({"-m", "chat", "--reasoning", "max"}),
            "--reasoning: expected low, medium or high, got 'max'");
  EXPECT_EQ(err({"-m", "train"}),
            "-m: unknown mode 'train' (expected generate, chat, getp, bench or serve)");
  EXPECT_NE(err({"-i", "x", "-n", "abc"}).find("(see --help)"), std::string::npos);
  EXPECT_NE(err({"-i", "x", "--bogus"}).find("(see --help)"), std::string::npos);
}

TEST(RunOptions, GpuBackendNotInThisBuild) {
#ifndef GPTOSS_HAVE_GPU
  EXPECT_EQ(err({"-i", "x", "--backend", "gpu"}),
            "--backend gpu: this build has no GPU backend (configure with -DGPU_BACKEND=CUDA or HIP)");
#endif
}

TEST(RunOptions, ModeSpecificFlags) {
  EXPECT_EQ(err({"-m", "generate", "-i", "x", "-f", "p.txt"}), "-i and -f both give the prompt: use one");
  EXPECT_EQ(err({"-m", "getp", "-i", "a", "-o", "b", "-f", "p.txt"}), "-f applies to -m generate only");
  EXPECT_EQ(err({"-m", "getp", "-o", "out"}), "-m getp needs the prompt file: -i IN (- = stdin)");
  EXPECT_EQ(err({"-m", "getp", "-i", "in"}), "-m getp needs the output file: -o OUT (- = stdout)");
  EXPECT_EQ(err({"-m", "getp", "-i", "f", "-o", "f"}), "-o: output file must differ from the input file");
  EXPECT_EQ(err({"-m", "getp", "-i", "-", "-o", "-"}), "(no error)");
  EXPECT_EQ(err({"-m", "getp", "-i", "a", "-o", "-", "--resume"}),
            "--resume needs -o to be a file (not stdout)");
  EXPECT_EQ(err({"-m", "getp", "-i", "a", "-o", "x", "--verify", "x"}),
            "--verify: the reference must be another file than -o x");
  EXPECT_EQ(err({"-m", "getp", "-i", "-", "-o", "x", "--verify", "-"}),
            "-i - and --verify -: stdin can be read once only");
  EXPECT_EQ(err({"-m", "getp", "-i", "a", "-o", "b", "--progress", "-1"}),
            "--progress: must be a number of seconds >= 0, got -1");
  EXPECT_EQ(err({"-i", "a", "--progress", "1"}), "--progress applies to -m getp only");
  EXPECT_EQ(err({"-i", "x", "-o", "out"}), "-o applies to -m getp only");
  EXPECT_EQ(err({"-i", "x", "-b", "4"}), "-b applies to -m getp, bench and serve only");
  EXPECT_EQ(err({"-i", "x", "--resume"}), "--resume applies to -m getp only");
  EXPECT_EQ(err({"-i", "x", "-y", "be nice"}), "-y applies to -m chat only");
  EXPECT_EQ(err({"-m", "chat", "-i", "x"}),
            "-i does not apply to -m chat (type the user messages on stdin, one per line)");
  EXPECT_EQ(err({"-i", "x", "--port", "9000"}), "--port applies to -m serve only");
  EXPECT_EQ(err({"-m", "getp", "-i", "a", "-o", "b", "--api-key", "k"}),
            "--api-key applies to -m serve only");
  EXPECT_EQ(err({"-m", "serve", "-i", "x"}),
            "-i does not apply to -m serve (clients send the prompts)");
  EXPECT_EQ(err({"-m", "serve", "--port", "-1"}), "--port: must be in [0, 65535], got -1");
}

TEST(RunOptions, ServeDefaults) {
  RunOptions o;
  ASSERT_EQ(parse({"-m", "serve", "-c", "1024"}, o), -1);
  EXPECT_EQ(o.mode, Mode::Serve);
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 8080);
  EXPECT_EQ(o.max_slots, kDefaultSlotsServe);
  EXPECT_EQ(o.max_new, 1024);  // a request without max_tokens may use what the context leaves
  EXPECT_EQ(o.temperature, 1.0f);
  EXPECT_EQ(o.max_queue, 64);
  ASSERT_EQ(parse({"-m", "serve", "-b", "16", "--reasoning", "high", "--api-key", "k", "--port", "0"},
                  o),
            -1);
  EXPECT_EQ(o.max_slots, 16);
  EXPECT_EQ(o.reasoning, "high");
  EXPECT_EQ(o.api_key, "k");
  EXPECT_EQ(o.port, 0);
}

TEST(RunOptions, ChecksAgainstModel) {
  Config c;
  c.vocab = 1000;
  c.max_context = 2048;
  RunOptions o;
  o.stop_ids = {5};
  o.ctx = 4096;
  try {
    check_against_model(o, c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "-c: context 4096 is larger than the model's maximum 2048");
  }
  o.ctx = 1024;
  o.stop_ids = {200002};
  try {
    check_against_model(o, c);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--stop: token id 200002 is outside the vocabulary [0, 1000)");
  }
}

}  // namespace
}  // namespace gptoss
