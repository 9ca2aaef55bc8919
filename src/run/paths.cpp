// paths.cpp: default data paths, input checks, output targets (see paths.h).
#include "run/paths.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace gptoss {

namespace {

std::string dir_of(const std::string& path) {
  size_t p = path.rfind('/');
  if (p == std::string::npos) return ".";
  if (p == 0) return "/";
  return path.substr(0, p);
}

void write_all(int fd, const std::string& s, const std::string& what) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    CHECK_SYS(w, "%s: write", what.c_str());
    off += static_cast<size_t>(w);
  }
}

// N when path is /proc/self/fd/N or /dev/fd/N (one of this process's descriptors), else -1.
int own_descriptor(const std::string& path) {
  for (const char* prefix : {"/proc/self/fd/", "/dev/fd/"}) {
    const size_t n = std::strlen(prefix);
    if (path.compare(0, n, prefix) != 0 || path.size() == n || path.size() > n + 6) continue;
    if (path.find_first_not_of("0123456789", n) != std::string::npos) continue;
    return std::atoi(path.c_str() + n);
  }
  return -1;
}

// Follows symlinks from path to the name they end at (which may not exist yet). Sets via_proc when
// a step leads into /proc (a file descriptor's magic link such as /dev/stdout -> /proc/self/fd/1),
// and fd when a step names one of this process's descriptors (/dev/stdout, /dev/fd/2).
std::string follow_links(const std::string& given, bool& via_proc, int& fd, const char* flag) {
  std::string path = given;
  via_proc = path.rfind("/proc/", 0) == 0;
  fd = -1;
  for (int hops = 0; hops < 40; ++hops) {
    if ((fd = own_descriptor(path)) >= 0) return path;
    char buf[PATH_MAX];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) return path;  // not a link (or missing)
    std::string target(buf, static_cast<size_t>(n));
    path = target.front() == '/' ? target : dir_of(path) + "/" + target;
    if (path.rfind("/proc/", 0) == 0) via_proc = true;
  }
  fail("%s %s: too many levels of symbolic links", flag, given.c_str());
}

// The directory `file` would be created in must exist and be writable.
void check_dir_writable(const std::string& file, const std::string& given, const char* flag) {
  const std::string d = dir_of(file);
  struct stat st;
  if (::stat(d.c_str(), &st) != 0)
    fail("%s %s: directory %s: %s", flag, given.c_str(), d.c_str(), std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail("%s %s: %s is not a directory", flag, given.c_str(), d.c_str());
  if (::access(d.c_str(), W_OK | X_OK) != 0)
    fail("%s %s: cannot write in directory %s: %s", flag, given.c_str(), d.c_str(),
         std::strerror(errno));
}

}  // namespace

void check_input_file(const std::string& path, const char* what) {
  if (path == "-") return;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail("%s %s: %s", what, path.c_str(), std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("%s %s: is a directory", what, path.c_str());
  if (::access(path.c_str(), R_OK) != 0)
    fail("%s %s: %s", what, path.c_str(), std::strerror(errno));
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  if (a == "-" || b == "-") return false;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

OutputTarget resolve_output(const std::string& path, const char* flag) {
  OutputTarget t;
  t.path = path;
  if (path == "-") {
    t.kind = OutputTarget::Kind::Stdout;
    return t;
  }
  if (path.empty()) fail("%s: empty path", flag);
  if (path.back() == '/') fail("%s %s: names a directory (expected a file)", flag, path.c_str());
  bool via_proc = false;
  int fd = -1;
  const std::string final_path = follow_links(path, via_proc, fd, flag);
  if (fd >= 0) {
    // One of our descriptors (e.g. a shell's `>> log` as /dev/stdout): written through it, so
    // its offset and append mode hold. Reopening the name would start at offset 0.
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
      fail("%s %s: file descriptor %d is not open for writing", flag, path.c_str(), fd);
    t.kind = OutputTarget::Kind::Direct;
    t.file = path;
    t.fd = fd;
    return t;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("%s %s: is a directory (expected a file)", flag, path.c_str());
    if (::access(path.c_str(), W_OK) != 0)
      fail("%s %s: cannot write: %s", flag, path.c_str(), std::strerror(errno));
    if (!S_ISREG(st.st_mode) || via_proc) {
      t.kind = OutputTarget::Kind::Direct;
      t.file = path;
      return t;
    }
  } else if (errno != ENOENT) {
    fail("%s %s: %s", flag, path.c_str(), std::strerror(errno));
  } else if (via_proc) {
    fail("%s %s: %s does not exist", flag, path.c_str(), final_path.c_str());
  }
  t.kind = OutputTarget::Kind::File;
  t.file = final_path;
  check_dir_writable(final_path, path, flag);
  return t;
}

void write_output(const OutputTarget& t, const std::string& contents) {
  switch (t.kind) {
    case OutputTarget::Kind::Stdout:
      std::fflush(stdout);
      write_all(STDOUT_FILENO, contents, "stdout");
      return;
    case OutputTarget::Kind::Direct: {
      if (t.fd >= 0) {
        if (t.fd == STDOUT_FILENO) std::fflush(stdout);
        if (t.fd == STDERR_FILENO) std::fflush(stderr);
        write_all(t.fd, contents, t.path);
        return;
      }
      int fd = ::open(t.file.c_str(), O_WRONLY | O_CLOEXEC);
      CHECK_SYS(fd, "%s: cannot open for writing", t.path.c_str());
      try {
        write_all(fd, contents, t.path);
      } catch (...) {
        ::close(fd);
        throw;
      }
      ::close(fd);
      return;
    }
    case OutputTarget::Kind::File: {
      const std::string tmp = t.file + ".tmp";
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      CHECK_SYS(fd, "%s: cannot create", tmp.c_str());
      try {
        write_all(fd, contents, tmp);
        CHECK_SYS(::fsync(fd), "%s: fsync", tmp.c_str());
      } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
      }
      ::close(fd);
      if (::rename(tmp.c_str(), t.file.c_str()) < 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        fail("%s: rename from %s: %s", t.file.c_str(), tmp.c_str(), std::strerror(e));
      }
      int dfd = ::open(dir_of(t.file).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
      }
      return;
    }
  }
}

std::string count_of(size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

}  // namespace gptoss
