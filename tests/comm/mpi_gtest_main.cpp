// mpi_gtest_main.cpp: main() for GoogleTest binaries that run as several MPI ranks.
// Every rank runs every test. Rank 0 prints gtest's usual report; the other ranks print only
// their failures, prefixed with the rank. After each test all ranks agree on pass/fail (rank 0
// names the failing ranks), and the exit code is non-zero on every rank if any rank failed.
// Arguments other than GoogleTest's are kept for the tests (mpi_gtest_main.h).
#include "mpi_gtest_main.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/world.h"

namespace {
std::vector<std::string> g_args;
}  // namespace

namespace gptoss::comm::testing_args {
const std::vector<std::string>& args() { return g_args; }
bool has(const std::string& arg) { return std::find(g_args.begin(), g_args.end(), arg) != g_args.end(); }
}  // namespace gptoss::comm::testing_args

namespace {
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                   r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

class AgreeOnResult : public testing::EmptyTestEventListener {
 public:
  AgreeOnResult(int rank, int size) : rank_(rank), size_(size) {}
  void OnTestEnd(const testing::TestInfo& info) override {
    int failed = info.result()->Failed() ? 1 : 0;
    std::vector<int> all(static_cast<size_t>(size_));
    MPI_Allgather(&failed, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD);
    for (int r = 0; r < size_; ++r) {
      if (all[static_cast<size_t>(r)]) any_failed_ = true;
      if (rank_ == 0 && r != 0 && all[static_cast<size_t>(r)])
        std::printf("[  FAILED  ] %s.%s on rank %d\n", info.test_suite_name(), info.name(), r);
    }
  }
  bool any_failed() const { return any_failed_; }

 private:
  int rank_, size_;
  bool any_failed_ = false;
};
}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) g_args.emplace_back(argv[i]);
  return gptoss::comm::mpi_guarded_main("comm_test", &argc, &argv, [&](gptoss::comm::World& w) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    if (w.rank() != 0) {
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new RankFailurePrinter(w.rank()));
    }
    auto* agree = new AgreeOnResult(w.rank(), w.size());
    listeners.Append(agree);
    int rc = RUN_ALL_TESTS();
    return (rc != 0 || agree->any_failed()) ? 1 : 0;
  });
}
