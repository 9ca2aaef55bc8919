// bench_tokenizer.cpp: single-threaded encode speed of our tokenizer and (in the same run, on
// the same text) of gpt-tokenizer under node; prints one JSON line.
#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <unistd.h>
#include <string>
#include <vector>

#include "common/data_paths.h"
#include "common/error.h"
#include "tokenizer/tokenizer.h"

using namespace gptoss;

// Deterministic mixed text: English prose, code, Cyrillic, CJK, digits, emoji, whitespace.
static std::string make_text(size_t bytes) {
  static const char* words[] = {
      "the", "tokenizer", "model", "The", "quick", "brown", "fox", "jumps", "over", "lazy",
      "dog's", "we'll", "isn't", "HTTPServer", "parseJSON", "data", "value", "return", "int",
      "for", "(int i = 0; i < n; ++i)", "{", "}", "x->next", "std::vector<float>", "//",
      "привет", "мир", "Москва", "данные", "日本語", "の", "テキスト", "中文", "数据", "模型",
      "हिन्दी", "नमस्ते", "😀", "👨‍👩‍👧", "🚀", "2024", "3.14159", "1000000", "ΑΒΓ", "αβγ",
      "éàü", "naïve", "café", "\n", "\n\n", "    ", "\t", "\r\n", "!!", "...", "?", "—"};
  const size_t nw = sizeof(words) / sizeof(words[0]);
  std::string s;
  s.reserve(bytes + 64);
  uint64_t x = 0x2545F4914F6CDD1Dull;
  while (s.size() < bytes) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    s += words[x % nw];
    if ((x >> 20) % 4) s += ' ';
  }
  return s;
}

int main(int argc, char** argv) {
  return guarded_main("bench-tokenizer", [&] {
    CLI::App app{"bench-tokenizer: encode MB/s of our tokenizer and of gpt-tokenizer (node)"};
    std::string tok_path = default_tokenizer_path();
    std::string text_path, node_dir, node_script;
    double mb = 8;
    int reps = 3;
    app.add_option("-z,--tokenizer", tok_path, "tokenizer file")->capture_default_str();
    app.add_option("--text", text_path, "UTF-8 text file to encode (default: generated mixed text)");
    app.add_option("--mb", mb, "size of the generated text in MB")->capture_default_str();
    app.add_option("--reps", reps, "timed repetitions (best is reported)")->capture_default_str();
    app.add_option("--node-dir", node_dir, "folder with node_modules/gpt-tokenizer (runs node too)");
    app.add_option("--node-script", node_script, "bench_gpt_tokenizer.js (with --node-dir)");
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    std::string text;
    if (!text_path.empty()) {
      std::ifstream f(text_path, std::ios::binary);
      if (!f) fail("%s: cannot open", text_path.c_str());
      text.assign(std::istreambuf_iterator<char>(f), {});
    } else {
      text = make_text(size_t(mb * 1e6));
      text_path = "/tmp/bench-tokenizer-" + std::to_string(getpid()) + ".txt";
      std::ofstream(text_path, std::ios::binary) << text;
    }
    Tokenizer tok(tok_path);
    // Wall time and this thread's CPU time (the CPU number stays meaningful on a busy machine).
    auto cpu_now = [] {
      timespec ts;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return double(ts.tv_sec) + ts.tv_nsec * 1e-9;
    };
    double best_s = 1e30, best_cpu_s = 1e30;
    size_t ntok = 0;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      double c0 = cpu_now();
      std::vector<int32_t> ids = tok.encode(text);
      best_cpu_s = std::min(best_cpu_s, cpu_now() - c0);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best_s = std::min(best_s, s);
      ntok = ids.size();
    }
    double ours = text.size() / 1e6 / best_s, ours_cpu = text.size() / 1e6 / best_cpu_s;
    std::string node_json = "null";
    if (!node_dir.empty()) {
      if (node_script.empty()) fail("--node-dir needs --node-script");
      std::string cmd = "NODE_PATH='" + node_dir + "/node_modules' node '" + node_script + "' '" +
                        text_path + "' " + std::to_string(reps);
      FILE* p = popen(cmd.c_str(), "r");
      if (!p) fail("cannot run node");
      std::string out;
      char buf[4096];
      size_t k;
      while ((k = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
      if (pclose(p) != 0) fail("node benchmark failed: %s", out.c_str());
      while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
      node_json = out;
    }
    std::printf("{\"bytes\": %zu, \"tokens\": %zu, \"ours\": {\"mb_s\": %.2f, \"cpu_mb_s\": %.2f}, "
                "\"gpt_tokenizer\": %s}\n",
                text.size(), ntok, ours, ours_cpu, node_json.c_str());
    return 0;
  });
}
