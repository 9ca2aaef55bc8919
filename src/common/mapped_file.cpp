// mapped_file.cpp: mmap of a regular file; directories, devices and empty files are refused.
//
// A file mapped MAP_SHARED that another process truncates while we run turns a read of the lost
// pages into SIGBUS (MAP_PRIVATE does not help: unmodified private pages are the file's pages,
// and copying a 13-65 GB model into anonymous memory is not an option). So every live mapping
// is registered in a fixed table, and a SIGBUS handler checks the fault address against it: a
// fault inside a mapping prints one line and exits 1
//   "<program>: error: <file>: the file shrank from M to N bytes while in use (read at byte B);
//    do not modify or replace a file while a program uses it"
// on stderr (once, by whichever thread faults first); any other SIGBUS goes to the handler that
// was there before, or kills the process as it would have without us. The handler uses only
// async-signal-safe calls (stat, write, pause, _exit, a lock-free atomic flag) and reads the table
// without locks (each slot is published with a release store of its state).
#include "common/mapped_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "common/error.h"

namespace gptoss {

namespace {

// ---- the live mappings, as the SIGBUS handler sees them ----
struct Region {
  std::atomic<int> state{0};  // 0 free, 1 being filled or cleared, 2 live
  std::atomic<uintptr_t> begin{0};
  size_t bytes = 0;
  char path[480] = {};  // NUL-terminated, cut to fit
};
constexpr int kMaxRegions = 128;  // more live mappings than this are mapped without the check
Region g_regions[kMaxRegions];
std::mutex g_install_mutex;
struct sigaction g_previous {};  // the SIGBUS disposition we replaced
std::atomic_flag g_reporting = ATOMIC_FLAG_INIT;  // set by the thread that reports a lost mapping

// Appends text to buf[0..cap) at *len (async-signal-safe).
void put(char* buf, size_t cap, size_t* len, const char* s) {
  while (*s && *len + 1 < cap) buf[(*len)++] = *s++;
}
void put_u64(char* buf, size_t cap, size_t* len, unsigned long long v) {
  char d[24];
  int n = 0;
  do {
    d[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n && *len + 1 < cap) buf[(*len)++] = d[--n];
}

void on_sigbus(int sig, siginfo_t* si, void* ctx) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
  if (si->si_code > 0) {  // raised by the kernel for a memory access, not sent by kill/raise
    for (Region& r : g_regions) {
      if (r.state.load(std::memory_order_acquire) != 2) continue;
      const uintptr_t b = r.begin.load(std::memory_order_relaxed);
      if (a < b || a - b >= r.bytes) continue;
      // Threads reading the model together fault together: the first prints the one line and
      // exits; the others wait for that exit (a second line was seen under ASan's timing).
      if (g_reporting.test_and_set(std::memory_order_acq_rel))
        for (;;) ::pause();
      char msg[1024];
      size_t n = 0;
      put(msg, sizeof msg, &n, program_invocation_short_name);
      put(msg, sizeof msg, &n, ": error: ");
      put(msg, sizeof msg, &n, r.path);
      struct stat st;
      if (::stat(r.path, &st) == 0 && static_cast<uint64_t>(st.st_size) < r.bytes) {
        put(msg, sizeof msg, &n, ": the file shrank from ");
        put_u64(msg, sizeof msg, &n, r.bytes);
        put(msg, sizeof msg, &n, " to ");
        put_u64(msg, sizeof msg, &n, static_cast<unsigned long long>(st.st_size));
        put(msg, sizeof msg, &n, " bytes while in use");
      } else {
        put(msg, sizeof msg, &n, ": the file was truncated or replaced while in use");
      }
      put(msg, sizeof msg, &n, " (read at byte ");
      put_u64(msg, sizeof msg, &n, a - b);
      put(msg, sizeof msg, &n, "); do not modify or replace a file while a program uses it\n");
      ssize_t w = ::write(STDERR_FILENO, msg, n);
      (void)w;
      ::_exit(1);
    }
  }
  // Not one of ours: what would have happened without this handler.
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction) {
    g_previous.sa_sigaction(sig, si, ctx);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
             g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
  } else {
    signal(sig, SIG_DFL);
    raise(sig);  // delivered when this handler returns (a fault would also recur)
  }
}

// Installs on_sigbus unless it is the current handler (again after a library, e.g. MPI_Init,
// replaced it; the replaced handler becomes the one non-mapping faults go to).
void install_handler() {
  struct sigaction cur {};
  if (sigaction(SIGBUS, nullptr, &cur) != 0) return;
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus) return;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  g_previous = cur;
  sigaction(SIGBUS, &sa, nullptr);
}

void register_region(const uint8_t* data, size_t bytes, const std::string& path) {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  install_handler();
  for (Region& r : g_regions) {
    int expected = 0;
    if (!r.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
    r.begin.store(reinterpret_cast<uintptr_t>(data), std::memory_order_relaxed);
    r.bytes = bytes;
    size_t n = std::min(path.size(), sizeof r.path - 1);
    std::memcpy(r.path, path.data(), n);
    r.path[n] = '\0';
    r.state.store(2, std::memory_order_release);
    return;
  }
}

void unregister_region(const uint8_t* data) {
  for (Region& r : g_regions) {
    int expected = 2;
    if (r.begin.load(std::memory_order_relaxed) != reinterpret_cast<uintptr_t>(data)) continue;
    if (r.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
      r.begin.store(0, std::memory_order_relaxed);
      r.state.store(0, std::memory_order_release);
      return;
    }
  }
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CHECK_SYS(fd, "%s: cannot open", path.c_str());
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    int e = errno;
    ::close(fd);
    fail("%s: cannot stat: %s", path.c_str(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("%s: not a regular file", path.c_str());
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    fail("%s: file is empty", path.c_str());
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail("%s: cannot mmap: %s", path.c_str(), std::strerror(e));
  data_ = static_cast<const uint8_t*>(p);
  register_region(data_, size_, path_);
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
  if (!data_) return;
  unregister_region(data_);
  ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

MappedFile::MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace gptoss
