// test_getp_io.cpp: getp prompt parser (each malformed case with its exact message), the UTF-8
// check, OUT.partial writing / loading (torn last line, foreign header, one writer at a time, the
// seed in the header), atomic write, --verify.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "common/error.h"
#include "run/getp_io.h"

namespace gptoss {
namespace {

std::string parse_error(std::string_view data) {
  try {
    parse_prompts(data, "in.txt");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(RunGetpParse, WellFormed) {
  auto p = parse_prompts("3\nHello\nsecond line\n  spaces kept  \n", "in.txt");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].text, "Hello");
  EXPECT_EQ(p[0].line, 2);
  EXPECT_EQ(p[2].text, "  spaces kept  ");
  EXPECT_EQ(p[2].line, 4);
}

TEST(RunGetpParse, NoFinalNewlineCrlfBomAndCountSpaces) {
  auto p = parse_prompts("\xEF\xBB\xBF 2 \r\nfirst\r\nsecond", "in.txt");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].text, "first");  // '\r' stripped
  EXPECT_EQ(p[1].text, "second");
}

TEST(RunGetpParse, TrailingEmptyLinesAreIgnored) {
  auto p = parse_prompts("1\nonly\n\n\r\n", "in.txt");
  ASSERT_EQ(p.size(), 1u);
}

TEST(RunGetpParse, CountLineErrors) {
  EXPECT_EQ(parse_error(""), "in.txt: empty file (expected the number of prompts on line 1)");
  EXPECT_EQ(parse_error("abc\nx\n"),
            "in.txt:1: the first line must be the number of prompts, a positive integer (got 'abc')");
  EXPECT_EQ(parse_error("0\n"),
            "in.txt:1: the first line must be the number of prompts, a positive integer (got '0')");
  EXPECT_EQ(parse_error("-3\na\n"),
            "in.txt:1: the first line must be the number of prompts, a positive integer (got '-3')");
  EXPECT_EQ(parse_error("2.5\na\n"),
            "in.txt:1: the first line must be the number of prompts, a positive integer (got '2.5')");
  EXPECT_EQ(parse_error("9999999999\na\n"),
            "in.txt:1: the first line must be the number of prompts, a positive integer (got "
            "'9999999999')");
  EXPECT_EQ(parse_error("\nhello\n"),
            "in.txt:1: the first line must be the number of prompts, a positive integer (got '')");
}

TEST(RunGetpParse, FewerPrompts) {
  EXPECT_EQ(parse_error("3\na\nb\n"), "in.txt: expected 3 prompts, found 2");
  EXPECT_EQ(parse_error("1\n"), "in.txt: expected 1 prompts, found 0");
}

TEST(RunGetpParse, MorePrompts) {
  EXPECT_EQ(parse_error("1\na\nb\n"), "in.txt:3: more prompts than the 1 announced on line 1");
  EXPECT_EQ(parse_error("1\na\n\nc\n"), "in.txt:4: more prompts than the 1 announced on line 1");
}

TEST(RunGetpParse, EmptyPrompt) {
  EXPECT_EQ(parse_error("3\na\n\nc\n"), "in.txt:3: empty prompt (prompt 2 of 3)");
  EXPECT_EQ(parse_error("2\na\n\r\nc\n"), "in.txt:3: empty prompt (prompt 2 of 2)");
}

TEST(RunGetpParse, InvalidUtf8) {
  EXPECT_EQ(parse_error("2\nok\nab\xff" "cd\n"), "in.txt:3: invalid UTF-8 at byte 3 of the line");
  EXPECT_EQ(parse_error("1\n\xc3\n"), "in.txt:2: invalid UTF-8 at byte 1 of the line");
}

TEST(RunGetpParse, Utf8Validator) {
  EXPECT_EQ(first_invalid_utf8("plain"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("\xc0\xaf"), 0u);            // overlong '/'
  EXPECT_EQ(first_invalid_utf8("ab\xe0\x80\xaf"), 2u);      // overlong 3-byte
  EXPECT_EQ(first_invalid_utf8("\xed\xa0\x80"), 0u);        // surrogate U+D800
  EXPECT_EQ(first_invalid_utf8("\xf4\x90\x80\x80"), 0u);    // above U+10FFFF
  EXPECT_EQ(first_invalid_utf8("x\xe2\x82"), 1u);           // truncated
  EXPECT_EQ(first_invalid_utf8("\x80"), 0u);                // stray continuation
}

TEST(RunGetpParse, ReadsFileAndNamesIt) {
  try {
    read_prompt_file("/nonexistent/in.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/in.txt: cannot open: No such file or directory");
  }
}

// The size limits (GetpLimits): each a one-line error naming the file (and the line where there
// is one); small limits here, the real defaults below on a sparse file and in memory.
TEST(RunGetpParse, LimitsNameFileAndLine) {
  auto err = [](std::string_view data, const GetpLimits& lim) {
    try {
      parse_prompts(data, "in.txt", lim);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  GetpLimits lim{.file_bytes = 12, .prompts = 3, .prompt_bytes = 5};
  EXPECT_EQ(err("3\nabcde\nb\nc\n", lim), "(no error)");  // exactly at every limit
  EXPECT_EQ(err("3\nabcde\nb\nc\n\n", lim),
            "in.txt: the file is 13 bytes; a getp input may be at most 12 bytes");
  lim.file_bytes = 100;
  EXPECT_EQ(err("4\na\nb\nc\nd\n", lim),
            "in.txt:1: 4 prompts announced; a getp input may hold at most 3 (split it into several files)");
  EXPECT_EQ(err("2\nab\nabcdef\n", lim), "in.txt:3: the prompt is 6 bytes; a prompt may be at most 5 bytes");
  EXPECT_EQ(err("1\nabcde\r\n", lim), "(no error)");  // the stripped '\r' does not count
  // The defaults: 1000000 prompts, 16 MiB per prompt.
  const GetpLimits def;
  EXPECT_EQ(def.prompts, 1000000u);
  EXPECT_EQ(err("1000001\na\n", def),
            "in.txt:1: 1000001 prompts announced; a getp input may hold at most 1000000 (split it "
            "into several files)");
  std::string big = "2\nfirst\n" + std::string((16u << 20) + 1, 'x') + "\n";
  EXPECT_EQ(err(big, def), "in.txt:3: the prompt is 16777217 bytes; a prompt may be at most 16 MiB");
  big.pop_back(), big.pop_back();  // exactly 16 MiB
  EXPECT_EQ(parse_prompts(big, "in.txt").at(1).text.size(), size_t{16} << 20);
  EXPECT_EQ(getp_limits_text(def), "at most 1 GiB, 1000000 prompts, 16 MiB per prompt");
}

TEST(RunGetpParse, FileOverOneGiBIsRefusedBeforeReading) {
  char tmpl[] = "/tmp/run_test_big_XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, (off_t{1} << 30) + 1), 0);  // sparse: no disk space used
  close(fd);
  try {
    read_prompt_file(tmpl);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), std::string(tmpl) +
                                         ": the file is 1073741825 bytes; a getp input may be at "
                                         "most 1 GiB");
  }
  unlink(tmpl);
  // A device is read only up to the limit: /dev/zero stops one read past it.
  try {
    read_prompt_file("/dev/zero", GetpLimits{.file_bytes = 100000});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "/dev/zero: the file is more than 100000 bytes; a getp input may be at most 100000 bytes");
  }
}

TEST(RunGetpIds, FormatAndParse) {
  EXPECT_EQ(format_ids({1, 200002, 3}), "1 200002 3");
  EXPECT_EQ(*parse_ids("1 200002 3"), (std::vector<int32_t>{1, 200002, 3}));
  EXPECT_FALSE(parse_ids("1 x 3").has_value());
  EXPECT_FALSE(parse_ids("1 -2").has_value());
  EXPECT_FALSE(parse_ids("99999999999").has_value());
}

struct TmpDir {
  std::filesystem::path p;
  TmpDir() {
    char tmpl[] = "/tmp/run_test_XXXXXX";
    p = mkdtemp(tmpl);
  }
  ~TmpDir() { std::filesystem::remove_all(p); }
  std::string operator/(const char* f) const { return (p / f).string(); }
};

TEST(RunGetpPartial, WriteThenLoad) {
  TmpDir d;
  std::string path = d / "out.txt.partial", h = partial_header(3, 0xabc);
  {
    PartialWriter w(path, h, false);
    w.add(2, {5, 6});
    w.add(0, {7});
  }
  EXPECT_EQ(read_file(path), h + "\n2\t5 6\n0\t7\n");
  PartialState st = load_partial(path, h, 3);
  EXPECT_EQ(st.count, 2u);
  EXPECT_EQ(*st.done[2], (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(*st.done[0], (std::vector<int32_t>{7}));
  EXPECT_FALSE(st.done[1].has_value());
  // A fresh writer refuses to overwrite it.
  try {
    PartialWriter w(path, h, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": exists (left by an interrupted run): use --resume to continue it, or delete it");
  }
}

TEST(RunGetpPartial, TornLastLineIsDroppedOnResume) {
  TmpDir d;
  std::string path = d / "o.partial", h = partial_header(3, 1);
  std::ofstream(path) << h << "\n1\t4 5\n2\t9 9";  // killed in the middle of a line
  PartialState st = load_partial(path, h, 3);
  EXPECT_EQ(st.count, 1u);
  EXPECT_EQ(st.valid_bytes, h.size() + 1 + 6);
  {
    PartialWriter w(path, h, true);
    w.truncate_to(st.valid_bytes);
    w.add(2, {8});
  }
  EXPECT_EQ(read_file(path), h + "\n1\t4 5\n2\t8\n");
}

// One writer at a time: a second writer of the same file waits for the first to close it, and
// gives up with a one-line error after lock_wait_s.
TEST(RunGetpPartial, SecondWriterWaitsForTheFirst) {
  TmpDir d;
  std::string path = d / "o.partial", h = partial_header(4, 1);
  auto first = std::make_unique<PartialWriter>(path, h, false);
  first->add(0, {1});
  try {
    PartialWriter w(path, h, true, 1.0, /*lock_wait_s=*/0.2);
    FAIL() << "a second writer got the lock";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": still being written by another run after 0.2 s (an interrupted job whose "
                     "processes have not ended?); try again once it has ended");
  }
  // The first writer ends while the second waits: the second then appends after its lines.
  std::thread ender([&] {
    usleep(300 * 1000);
    first->add(1, {2});
    first.reset();
  });
  {
    PartialWriter w(path, h, true, 1.0, /*lock_wait_s=*/10);
    PartialState st = load_partial(path, h, 4);
    EXPECT_EQ(st.count, 2u);  // read after the lock: everything the first one wrote
    w.truncate_to(st.valid_bytes);
    w.add(2, {3});
  }
  ender.join();
  EXPECT_EQ(read_file(path), h + "\n0\t1\n1\t2\n2\t3\n");
}

TEST(RunGetpPartial, SeedInTheHeader) {
  TmpDir d;
  std::string path = d / "o.partial";
  const uint64_t seed = 18446744073709551557ull;
  std::ofstream(path) << partial_header(3, 0xabc, seed) << "\n0\t1\n";
  EXPECT_EQ(partial_header(3, 0xabc, seed),
            "# gptoss getp partial v1 n=3 key=0000000000000abc seed=18446744073709551557");
  EXPECT_EQ(partial_seed(path), std::optional<uint64_t>(seed));
  std::ofstream(path, std::ios::trunc) << "# gptoss getp partial v1 n=3 key=0000000000000abc\n";
  EXPECT_EQ(partial_seed(path), std::nullopt);
  EXPECT_EQ(partial_seed(d / "missing"), std::nullopt);
}

TEST(RunGetpPartial, LoadErrors) {
  TmpDir d;
  std::string path = d / "o.partial", h = partial_header(2, 1);
  auto err = [&](const std::string& contents, const std::string& header) -> std::string {
    std::ofstream(path, std::ios::trunc) << contents;
    try {
      load_partial(path, header, 2);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(err(h + "\n", partial_header(2, 2)),
            path + ": was written by another run (different input, model or output-changing "
                   "flags); delete it to start over");
  EXPECT_EQ(err(h + "\n0 1 2\n", h), path + ":2: malformed line (expected INDEX<TAB>ids)");
  EXPECT_EQ(err(h + "\n5\t1\n", h), path + ":2: prompt index 5 out of range (N = 2)");
  EXPECT_EQ(err(h + "\n1\t1\n1\t2\n", h), path + ":3: prompt 1 appears twice with different ids");
  EXPECT_EQ(err(h + "\n1\t1\n1\t1\n", h), "(no error)");
}

TEST(RunGetpFiles, AtomicWriteReplacesAndLeavesNoTmp) {
  TmpDir d;
  std::string path = d / "out.txt";
  std::ofstream(path) << "old\n";
  write_file_atomic(path, format_output({{1, 2}, {3}}));
  EXPECT_EQ(read_file(path), "1 2\n3\n");
  EXPECT_FALSE(file_exists(path + ".tmp"));
}

TEST(RunGetpVerify, Reports) {
  TmpDir d;
  std::string out = d / "out", ref = d / "ref";
  std::ofstream(ref) << "1 2 3\n4 5\n6\n";
  std::ofstream(out) << "1 2 3\n4 5\n6\n";
  VerifyReport r = verify_outputs(out, ref);
  EXPECT_TRUE(r.all_match);
  EXPECT_EQ(r.summary(), "3/3 prompts match");

  std::ofstream(out, std::ios::trunc) << "1 2 3\n4 7 8\n6 1\n";
  r = verify_outputs(out, ref);
  EXPECT_FALSE(r.all_match);
  EXPECT_EQ(r.matched, 1u);
  EXPECT_EQ(r.summary(),
            "1/3 prompts match; first divergence: prompt 1 (0-based), token 1: OUT 7, REF 5");

  std::ofstream(out, std::ios::trunc) << "1 2 3\n4 5\n6 1\n";
  EXPECT_EQ(verify_outputs(out, ref).summary(),
            "2/3 prompts match; first divergence: prompt 2 (0-based), token 1: OUT 1, REF end of line");

  std::ofstream(out, std::ios::trunc) << "1 2 3\n4 5\n";
  EXPECT_EQ(verify_outputs(out, ref).summary(),
            "2/3 prompts match (OUT has 2 lines, REF 3); first divergence: prompt 2 (0-based), "
            "token 0: OUT missing line, REF a line");

  // The in-memory form compares what getp computed with REF's rows.
  EXPECT_EQ(verify_rows({{1, 2, 3}, {4, 5}, {6}}, parse_id_rows("1 2 3\n4 5\n6\n", "REF")).summary(),
            "3/3 prompts match");

  std::ofstream(out, std::ios::trunc) << "1 2 x\n";
  try {
    verify_outputs(out, ref);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), out + ":1: not a line of token ids");
  }
}

}  // namespace
}  // namespace gptoss
