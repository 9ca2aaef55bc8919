// ipc_common.cpp: the shared pieces of ipc_common.h that are not inline: open_gpu_ring's spec
// check, the POSIX shared-memory segment of a link's host plane, and a link end's error word.
#include "comm/ipc_common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gptoss::comm::detail {

void check_gpu_spec(const LinkSpec& s) {
  check_common_spec(s);
  if (s.payload_memory != MemoryKind::Device)
    fail("transport: open_gpu_ring is for device payloads (payload_memory Device); host payloads "
         "use open_ring");
  if (s.copy_blocks < 1) fail("transport: copy_blocks must be at least 1 (got %d)", s.copy_blocks);
}

// ---- ShmSegment ----
ShmSegment::~ShmSegment() {
  if (base_) munmap(base_, bytes_);
  unlink();
}

void ShmSegment::create(const std::string& name, size_t bytes) {
  name_ = name;
  bytes_ = bytes;
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) fail("transport: shm_open(%s) failed: %s", name.c_str(), std::strerror(errno));
  owner_ = true;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    int e = errno;
    close(fd);
    fail("transport: cannot size shared memory %s to %zu bytes: %s", name.c_str(), bytes,
         std::strerror(e));
  }
  map(fd);
}

void ShmSegment::open(const std::string& name, size_t bytes) {
  name_ = name;
  bytes_ = bytes;
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0)
    fail("transport: cannot open the peer's shared memory %s: %s", name.c_str(),
         std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != bytes) {
    close(fd);
    fail("transport: the peer's shared memory %s has the wrong size", name.c_str());
  }
  map(fd);
}

void ShmSegment::unlink() {
  if (owner_) shm_unlink(name_.c_str());
  owner_ = false;
}

void ShmSegment::map(int fd) {
  base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    fail("transport: mmap of shared memory %s failed: %s", name_.c_str(), std::strerror(errno));
  }
}

// ---- ErrorWord ----
ErrorWord::ErrorWord() {
  void* p = nullptr;
  GPU_CHECK(gpuHostAllocMapped(&p, 64));
  host = static_cast<uint32_t*>(p);
  *host = 0;
  void* d = nullptr;
  GPU_CHECK(gpuHostGetDevicePointer(&d, p));
  dev = static_cast<uint32_t*>(d);
}

ErrorWord::~ErrorWord() {
  if (host) (void)gpuFreeHost(host);
}

}  // namespace gptoss::comm::detail
