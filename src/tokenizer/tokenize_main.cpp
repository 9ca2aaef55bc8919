// tokenize_main.cpp: the `tokenize` program: text -> ids, ids -> text, and building the
// tokenizer file from o200k_base.tiktoken or a Hugging Face tokenizer.json.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "common/data_paths.h"
#include "common/error.h"
#include "common/version.h"
#include "tokenizer/tokenizer.h"

using namespace gptoss;

static std::string read_stdin() {
  std::string s;
  char buf[1 << 16];
  size_t k;
  while ((k = std::fread(buf, 1, sizeof buf, stdin)) > 0) s.append(buf, k);
  if (std::ferror(stdin)) fail("stdin: read error");
  return s;
}

// Ids on one line: integers separated by spaces, tabs or commas (brackets are ignored, so a
// JSON array or a getp output line both work).
static std::vector<int32_t> parse_ids(const std::string& line, size_t line_no, int vocab) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < line.size()) {
    char c = line[i];
    if (c == ' ' || c == '\t' || c == ',' || c == '[' || c == ']' || c == '\r') { ++i; continue; }
    if (c < '0' || c > '9')
      fail("stdin:%zu: expected token ids, found '%c' at column %zu", line_no, c, i + 1);
    int64_t v = 0;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') {
      v = v * 10 + (line[i] - '0');
      if (v >= vocab) fail("stdin:%zu: token id out of range (vocab %d) at column %zu", line_no, vocab, i + 1);
      ++i;
    }
    ids.push_back(int32_t(v));
  }
  return ids;
}

int main(int argc, char** argv) {
  return guarded_main("tokenize", [&] {
    CLI::App app{
        "tokenize: o200k_harmony tokenizer.\n"
        "  tokenize [-z TOK] [--special]    UTF-8 text on stdin -> ids on one line\n"
        "  tokenize --decode [-z TOK]       ids on stdin (one sequence per line) -> text,\n"
        "                                   one output line per input line\n"
        "  tokenize --make SRC OUT          build the tokenizer file OUT from SRC, an\n"
        "                                   o200k_base.tiktoken file or a Hugging Face\n"
        "                                   tokenizer.json, adding the harmony specials"};
    app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app.set_version_flag("--version", version_text("tokenize"));
    app.footer("Exit status: 0 ok, 1 error.");
    std::string tok_path = default_tokenizer_path();
    bool special = false, decode = false;
    std::vector<std::string> make;
    app.add_option("-z,--tokenizer", tok_path,
                   "tokenizer file (default: $GPTOSS_TOKENIZER, else tokenizer.bin beside this "
                   "program)")
        ->capture_default_str();
    app.add_flag("--special", special,
                 "encode special-token texts such as <|start|> as their ids (default: as text)");
    app.add_flag("--decode", decode, "decode ids to text");
    app.add_option("--make", make, "build a tokenizer file: --make SRC OUT")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    try {
      app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version: printed to stdout, exit 0
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      std::string msg = e.what();
      for (char& ch : msg)
        if (ch == '\n') ch = ' ';
      fail("%s (see --help)", msg.c_str());
    }
    if (!make.empty()) {
      if (make.size() != 2) fail("--make takes two files: --make SRC OUT (see --help)");
      if (decode || special) fail("--make cannot be combined with --decode or --special");
      TokenTable t = make_token_table(make[0]);
      write_tokenizer_file(make[1], t);
      std::fprintf(stderr, "tokenize: wrote %s (%zu tokens)\n", make[1].c_str(), t.tokens.size());
      return 0;
    }
    Tokenizer tok(tok_path);
    std::string in = read_stdin();
    std::string out;
    if (decode) {
      if (special) fail("--special only applies to encoding");
      size_t pos = 0, line_no = 0;
      while (pos < in.size()) {
        size_t eol = in.find('\n', pos);
        if (eol == std::string::npos) eol = in.size();
        ++line_no;
        out += tok.decode(parse_ids(in.substr(pos, eol - pos), line_no, tok.vocab_size()));
        out += '\n';
        pos = eol + 1;
      }
    } else {
      std::vector<int32_t> ids = tok.encode(in, special);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out += ' ';
        out += std::to_string(ids[i]);
      }
      out += '\n';
    }
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0)
      fail("stdout: write error");
    return 0;
  });
}
