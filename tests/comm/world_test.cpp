// world_test.cpp: world.h and device_pick.h: file fingerprints, the world-consistency check,
// local-rank device choice. Runs as 1 and 3 ranks (comm_world_np1/np3).
#include "comm/world.h"

#include <gtest/gtest.h>
#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "comm/device_pick.h"
#include "comm/stage_timing.h"

using namespace gptoss;
using namespace gptoss::comm;

namespace {

std::string temp_file(const std::string& tag, const std::vector<char>& bytes) {
  std::string path = testing::TempDir() + "comm_world_" + tag + "_" + std::to_string(getpid());
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::vector<char> pattern(size_t n, unsigned seed) {
  std::vector<char> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : v) c = static_cast<char>((x = x * 1664525u + 1013904223u) >> 24);
  return v;
}

TEST(Fingerprint, SameBytesSameValueDifferentBytesDifferentValue) {
  if (World::current()->rank() != 0) GTEST_SKIP() << "file I/O on rank 0 only";
  const size_t n = 6u << 20;  // 6 MiB: head (4 MiB), sampled middle and tail (1 MiB) all exist
  auto a = pattern(n, 1);
  std::string pa = temp_file("a", a), pa2 = temp_file("a2", a);
  EXPECT_EQ(fingerprint_file(pa), fingerprint_file(pa2));
  auto head = a;
  head[100] ^= 1;  // a byte in the header region
  auto tail = a;
  tail[n - 10] ^= 1;  // a byte in the last MiB
  auto mid = a;
  mid[4u << 20] ^= 1;  // the first sampled block of the middle
  auto shorter = a;
  shorter.pop_back();
  for (auto* v : {&head, &tail, &mid, &shorter}) {
    std::string p = temp_file("b", *v);
    EXPECT_NE(fingerprint_file(p), fingerprint_file(pa));
    std::remove(p.c_str());
  }
  std::string small = temp_file("s", pattern(10, 3));
  EXPECT_NE(fingerprint_file(small), fingerprint_file(pa));
  std::remove(small.c_str());
  std::remove(pa.c_str());
  std::remove(pa2.c_str());
}

TEST(Fingerprint, MissingFileNamesIt) {
  try {
    fingerprint_file("/nonexistent/model.bin");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.bin"), std::string::npos);
  }
}

TEST(WorldCheck, EqualValuesPass) {
  EXPECT_NO_THROW(check_same_on_all_ranks("model file", 42, "m.bin (format 1)", MPI_COMM_WORLD));
}

TEST(WorldCheck, DifferentValueOnLastRankIsNamedOnEveryRank) {
  const int n = World::current()->size(), me = World::current()->rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  const bool odd = me == n - 1;
  try {
    check_same_on_all_ranks("model file", odd ? 7 : 42,
                            odd ? "/b/m.bin (format 2)" : "/a/m.bin (format 3)", MPI_COMM_WORLD);
    ADD_FAILURE() << "mismatch not detected";
  } catch (const WorldError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model file differs between ranks"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank " + std::to_string(n - 1) + " has /b/m.bin (format 2"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("/a/m.bin (format 3"), std::string::npos) << msg;
  }
}

TEST(WorldCheck, ModelVersionCounts) {
  const int n = World::current()->size(), me = World::current()->rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  // Same file everywhere (rank 0 writes it), different format version on rank 1.
  std::string path = testing::TempDir() + "comm_world_model_shared.bin";
  if (me == 0) {
    auto bytes = pattern(1000, 5);
    std::ofstream(path, std::ios::binary).write(bytes.data(), 1000);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  EXPECT_NO_THROW(check_same_model_on_all_ranks(path, 3));
  EXPECT_THROW(check_same_model_on_all_ranks(path, me == 1 ? 4 : 3), WorldError);
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) std::remove(path.c_str());
}

TEST(World, RanksAndLocalRanks) {
  const World& w = *World::current();
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  EXPECT_EQ(w.size(), n);
  EXPECT_EQ(w.next(), (w.rank() + 1) % n);
  EXPECT_EQ(w.prev(), (w.rank() + n - 1) % n);
  // All ranks of these tests run on one node: local rank == rank.
  EXPECT_EQ(w.local_size(), n);
  EXPECT_EQ(w.local_rank(), w.rank());
  const int env = local_rank_from_env();
  if (env >= 0) {
    EXPECT_EQ(env, w.local_rank());
  }
}

TEST(DevicePick, FromLocalRank) {
  EXPECT_EQ(pick_local_device(0, 3), -1);
  EXPECT_EQ(pick_local_device(1, 5), 0);  // wrapper narrowed visibility to one device
  EXPECT_EQ(pick_local_device(8, 0), 0);
  EXPECT_EQ(pick_local_device(8, 7), 7);
  EXPECT_EQ(pick_local_device(8, 9), 1);   // more ranks than devices: round-robin
  EXPECT_EQ(pick_local_device(4, -1), 0);  // no launcher
  EXPECT_EQ(pick_local_device(8), World::current()->local_rank() % 8);
}

TEST(DevicePick, EnvironmentOrder) {
  const char* saved = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  std::string keep = saved ? saved : "";
  const char* saved2 = getenv("SLURM_LOCALID");
  std::string keep2 = saved2 ? saved2 : "";
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  setenv("SLURM_LOCALID", "5", 1);
  EXPECT_EQ(local_rank_from_env(), 5);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2", 1);
  EXPECT_EQ(local_rank_from_env(), 2);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x", 1);
  EXPECT_EQ(local_rank_from_env(), 5);  // not a number: next variable
  if (saved)
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", keep.c_str(), 1);
  else
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (saved2)
    setenv("SLURM_LOCALID", keep2.c_str(), 1);
  else
    unsetenv("SLURM_LOCALID");
}

}  // namespace

namespace {
TEST(StageTiming, GatheredOnRankZeroAndFormatted) {
  const int n = World::current()->size(), me = World::current()->rank();
  StageTiming mine{1000.0 * (me + 1), 1000.0 * (n - me), uint64_t(me) * 1000000, uint64_t(me) + 7};
  auto all = gather_stage_timing(mine, MPI_COMM_WORLD);
  if (me != 0) {
    EXPECT_TRUE(all.empty());
    return;
  }
  ASSERT_EQ(all.size(), size_t(n));
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(all[r].busy_us, 1000.0 * (r + 1));
    EXPECT_EQ(all[r].idle_us, 1000.0 * (n - r));
    EXPECT_EQ(all[r].bytes_sent, uint64_t(r) * 1000000);
    EXPECT_EQ(all[r].messages_sent, uint64_t(r) + 7);
  }
  // busy% = busy / (busy + idle) = (r+1) / (n+1)
  const auto pct = stage_busy_pct(all);
  for (int r = 0; r < n; ++r) EXPECT_NEAR(pct[r], 100.0 * (r + 1) / (n + 1), 1e-9);
  const std::string rep = format_stage_report(all);
  EXPECT_NE(rep.find(strfmt("stage 0 busy %.1f%% idle %.1f%% sent 0.0 MB in 7 messages\n",
                            100.0 / (n + 1), 100.0 - 100.0 / (n + 1))),
            std::string::npos)
      << rep;
}
}  // namespace
