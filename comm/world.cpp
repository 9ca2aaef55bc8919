// world.cpp: MPI init/finalize, rank placement, clean abort, file fingerprints and the
// world-consistency check behind world.h.
#include "comm/world.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <vector>

#include "comm/mpi_check.h"

namespace gptoss::comm {

namespace {
World* g_world = nullptr;

bool mpi_active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

// "rank 2/4 (node17)", or "" before MPI is up.
std::string rank_label() {
  if (g_world)
    return strfmt("rank %d/%d (%s)", g_world->rank(), g_world->size(), g_world->host().c_str());
  if (mpi_active()) {
    int r = 0, n = 1;
    MPI_Comm_rank(world_comm(), &r);
    MPI_Comm_size(world_comm(), &n);
    return strfmt("rank %d/%d", r, n);
  }
  return "";
}

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}
}  // namespace

void fail_mpi(const char* call, int code, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING + 1] = {0};
  int len = 0;
  if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
    std::snprintf(msg, sizeof msg, "code %d", code);
  std::string who = rank_label();
  fail("%s failed%s%s: %s (%s:%d)", call, who.empty() ? "" : " on ", who.c_str(), msg, file, line);
}

MPI_Comm world_comm() { return g_world ? g_world->comm() : MPI_COMM_WORLD; }

World::World(int* argc, char*** argv, int thread_level) {
  // Started by hand (no mpirun, no srun): a singleton. Open MPI then tries to start its own
  // daemon, which fails where the installed orted/PMIx differ from the library the binary was
  // built against (seen on the GPU machine). An isolated singleton needs no daemon.
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMIX_RANK") &&
      !std::getenv("SLURM_STEP_ID") && !std::getenv("PMI_RANK"))
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
  int provided = 0;
  int rc = MPI_Init_thread(argc, argv, thread_level, &provided);
  if (rc != MPI_SUCCESS)
    fail("MPI_Init_thread failed (code %d): is the MPI runtime installed?", rc);
  g_world = this;
  CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  char name[MPI_MAX_PROCESSOR_NAME + 1] = {0};
  int len = 0;
  CHECK_MPI(MPI_Get_processor_name(name, &len));
  host_.assign(name, static_cast<size_t>(len));
  describe_place();
  if (provided < thread_level)
    fail("rank %d: the MPI library provides thread level %d, the program needs %d", rank_, provided,
         thread_level);
}

void World::describe_place() {
  CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
  CHECK_MPI(MPI_Comm_size(comm_, &size_));
  // Local rank = index among the ranks sharing this node's memory.
  MPI_Comm node = MPI_COMM_NULL;
  CHECK_MPI(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  CHECK_MPI(MPI_Comm_rank(node, &local_rank_));
  CHECK_MPI(MPI_Comm_size(node, &local_size_));
  CHECK_MPI(MPI_Comm_free(&node));
}

World::~World() {
  if (g_world == this) g_world = nullptr;
  if (mpi_active()) MPI_Finalize();
}

World* World::current() { return g_world; }

void abort_job(const char* prog, const std::string& cause) {
  std::string who = rank_label();
  std::fprintf(stderr, "%s: error: %s%s%s\n", prog, who.c_str(), who.empty() ? "" : ": ",
               cause.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (mpi_active()) MPI_Abort(world_comm(), 1);
  std::_Exit(1);
}

namespace detail {
void report_world_error(const char* prog, const WorldError& e) {
  if (!g_world || g_world->rank() == 0) {
    std::fprintf(stderr, "%s: error: %s\n", prog, e.what());
    std::fflush(stderr);
  }
}

WorldHolder::WorldHolder(const char* prog, int* argc, char*** argv, int thread_level) {
  try {
    world_ = new World(argc, argv, thread_level);
  } catch (const std::exception& e) {
    abort_job(prog, e.what());
  }
}

WorldHolder::~WorldHolder() { delete world_; }
}  // namespace detail

uint64_t fingerprint_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CHECK_SYS(fd, "%s: cannot open", path.c_str());
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    int e = errno;
    ::close(fd);
    fail("%s: cannot stat: %s", path.c_str(), std::strerror(e));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t h = fnv1a(kFnvOffset, &size, sizeof size);
  std::vector<uint8_t> buf(4u << 20);  // [4 MiB] read buffer
  auto mix_range = [&](uint64_t off, uint64_t len) {
    while (len > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
      ssize_t got = ::pread(fd, buf.data(), n, static_cast<off_t>(off));
      if (got <= 0) {
        int e = errno;
        ::close(fd);
        fail("%s: read failed at byte %llu: %s", path.c_str(), (unsigned long long)off,
             got < 0 ? std::strerror(e) : "unexpected end of file");
      }
      h = fnv1a(h, buf.data(), static_cast<size_t>(got));
      off += static_cast<uint64_t>(got);
      len -= static_cast<uint64_t>(got);
    }
  };
  const uint64_t head = std::min<uint64_t>(size, 4u << 20);
  mix_range(0, head);
  if (size > head) {
    const uint64_t tail = std::min<uint64_t>(size - head, 1u << 20);
    const uint64_t mid_begin = head, mid_end = size - tail;
    constexpr uint64_t kBlock = 4096, kBlocks = 64;
    if (mid_end > mid_begin) {
      for (uint64_t i = 0; i < kBlocks; ++i) {
        uint64_t off = mid_begin + (mid_end - mid_begin) * i / kBlocks;
        mix_range(off, std::min<uint64_t>(kBlock, mid_end - off));
      }
    }
    mix_range(mid_end, tail);
  }
  ::close(fd);
  return h;
}

void check_same_on_all_ranks(const char* what, uint64_t value, const std::string& description,
                             MPI_Comm comm) {
  int size = 1;
  CHECK_MPI(MPI_Comm_size(comm, &size));
  std::vector<uint64_t> values(static_cast<size_t>(size));  // [size]
  CHECK_MPI(MPI_Allgather(&value, 1, MPI_UINT64_T, values.data(), 1, MPI_UINT64_T, comm));
  bool same = true;
  for (uint64_t v : values) same = same && v == values[0];
  if (same) return;

  constexpr int kDescBytes = 240;
  char mine[kDescBytes] = {0};
  std::snprintf(mine, sizeof mine, "%s (fingerprint %016llx)", description.c_str(),
                (unsigned long long)value);
  std::vector<char> all(static_cast<size_t>(size) * kDescBytes);  // [size, kDescBytes]
  CHECK_MPI(MPI_Allgather(mine, kDescBytes, MPI_CHAR, all.data(), kDescBytes, MPI_CHAR, comm));
  // Group ranks by value, in order of first appearance.
  std::vector<std::pair<uint64_t, std::vector<int>>> groups;
  for (int r = 0; r < size; ++r) {
    bool found = false;
    for (auto& g : groups)
      if (g.first == values[static_cast<size_t>(r)]) g.second.push_back(r), found = true;
    if (!found) groups.push_back({values[static_cast<size_t>(r)], {r}});
  }
  std::string msg = strfmt("%s differs between ranks:", what);
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& ranks = groups[gi].second;
    std::string list;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (i) list += ',';
      list += std::to_string(ranks[i]);
    }
    const char* desc = &all[static_cast<size_t>(ranks[0]) * kDescBytes];
    msg += strfmt("%s rank%s %s %s %.*s", gi ? ";" : "", ranks.size() > 1 ? "s" : "", list.c_str(),
                  ranks.size() > 1 ? "have" : "has", kDescBytes, desc);
  }
  msg += "; every rank must be given the same file";
  throw WorldError(msg);
}

void check_same_model_on_all_ranks(const std::string& model_path, uint32_t format_version) {
  uint64_t value = fingerprint_file(model_path);
  value = fnv1a(value, &format_version, sizeof format_version);
  check_same_on_all_ranks("model file", value,
                          strfmt("%s, format %u", model_path.c_str(), format_version),
                          world_comm());
}

}  // namespace gptoss::comm
