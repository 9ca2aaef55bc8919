// test_getp_runner.cpp: the getp job on the fake engine: OUT equals the reference for any -b;
// an interruption leaves OUT.partial holding exactly the finished prompts (and no OUT); --resume
// completes it into the same OUT as an uninterrupted run, also after a torn last line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "fake_engine.h"
#include "run/getp_io.h"
#include "run/getp_runner.h"

namespace gptoss {
namespace {

constexpr int kVocab = 64;

struct Fixture {
  std::filesystem::path dir;
  std::vector<std::vector<int32_t>> prompts;
  Fixture() {
    char tmpl[] = "/tmp/run_getp_XXXXXX";
    dir = mkdtemp(tmpl);
    for (int i = 0; i < 30; ++i) {
      std::vector<int32_t> p;
      for (int k = 0; k < 1 + (i * 5) % 17; ++k) p.push_back((i * 13 + k * 7) % kVocab);
      prompts.push_back(p);
    }
  }
  ~Fixture() { std::filesystem::remove_all(dir); }
  std::string out() const { return (dir / "out.txt").string(); }
  GetpJob job(int slots, bool resume) const {
    GetpJob j;
    j.out = resolve_output(out());
    j.partial_path = out() + ".partial";
    j.header = partial_header(prompts.size(), 42);
    j.resume = resume;
    j.max_new = 20;
    j.sched.max_slots = slots;
    j.sched.chunk_tokens = 8;
    j.sched.ctx = 4096;
    j.sched.stop_ids = {7};
    j.sync_interval_s = 0;
    return j;
  }
  GetpResult run(int slots, bool resume, int stop_after_steps = -1) const {
    test::FakeEngine eng(kVocab, slots, 4096);
    int steps = 0;
    return run_getp_job(eng, test::fake_factory(true), prompts, job(slots, resume),
                        [&] { return stop_after_steps >= 0 && steps++ >= stop_after_steps; });
  }
  std::vector<int32_t> ref(size_t i) const {
    return test::reference_tokens(prompts[i], i, 20, 4096, {7}, false, true, kVocab);
  }
  std::string expected_out() const {
    std::string s;
    for (size_t i = 0; i < prompts.size(); ++i) s += format_ids(ref(i)) + "\n";
    return s;
  }
};

TEST(RunGetpJob, OutputEqualsReferenceForAnyBatch) {
  Fixture f;
  for (int slots : {1, 4, 32}) {
    GetpResult r = f.run(slots, false);
    EXPECT_FALSE(r.interrupted);
    EXPECT_EQ(r.done, f.prompts.size());
    EXPECT_EQ(read_file(f.out()), f.expected_out()) << "slots " << slots;
    EXPECT_FALSE(file_exists(f.out() + ".partial"));
    EXPECT_FALSE(file_exists(f.out() + ".tmp"));
  }
}

TEST(RunGetpJob, InterruptionKeepsFinishedPromptsAndResumeCompletes) {
  Fixture f;
  GetpResult r = f.run(4, false, 25);
  ASSERT_TRUE(r.interrupted);
  ASSERT_GT(r.done, 0u);
  ASSERT_LT(r.done, f.prompts.size());
  EXPECT_FALSE(file_exists(f.out()));  // OUT appears complete or not at all
  // OUT.partial: header, then exactly the finished prompts, each equal to its reference.
  std::string h = f.job(4, false).header;
  PartialState st = load_partial(f.out() + ".partial", h, f.prompts.size());
  EXPECT_EQ(st.count, r.done);
  EXPECT_EQ(st.valid_bytes, read_file(f.out() + ".partial").size());
  for (size_t i = 0; i < f.prompts.size(); ++i)
    if (st.done[i]) {
      EXPECT_EQ(*st.done[i], f.ref(i)) << "prompt " << i;
    }

  // Without --resume the partial file is not overwritten.
  EXPECT_THROW(f.run(4, false), Error);
  // Resume with another -b: same OUT as an uninterrupted run.
  GetpResult r2 = f.run(7, true);
  EXPECT_FALSE(r2.interrupted);
  EXPECT_EQ(r2.done_before, r.done);
  EXPECT_EQ(r2.done, f.prompts.size());
  EXPECT_EQ(read_file(f.out()), f.expected_out());
  EXPECT_FALSE(file_exists(f.out() + ".partial"));
}

TEST(RunGetpJob, ResumeAfterTornLine) {
  Fixture f;
  f.run(2, false, 10);
  std::string partial = f.out() + ".partial";
  { std::ofstream(partial, std::ios::app) << "29\t1 2"; }  // a kill mid-write
  GetpResult r = f.run(3, true);
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(read_file(f.out()), f.expected_out());
}

// OUT through a symlink: the file it names is replaced, the link stays a link.
TEST(RunGetpJob, SymlinkedOutputStaysALink) {
  Fixture f;
  const std::string real = (f.dir / "real.txt").string();
  std::ofstream(real) << "old\n";
  std::filesystem::create_symlink("real.txt", f.out());
  GetpResult r = f.run(4, false);
  EXPECT_FALSE(r.interrupted);
  EXPECT_TRUE(std::filesystem::is_symlink(f.out()));
  EXPECT_EQ(read_file(real), f.expected_out());
  EXPECT_EQ(r.outputs.size(), f.prompts.size());
}

TEST(RunGetpJob, ResumeWithoutPartialRunsEverything) {
  Fixture f;
  GetpResult r = f.run(5, true);
  EXPECT_EQ(r.done_before, 0u);
  EXPECT_EQ(read_file(f.out()), f.expected_out());
}

}  // namespace
}  // namespace gptoss
