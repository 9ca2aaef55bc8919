// error.h: the one error type of the project and the checked-call macros.
// User-facing failures throw gptoss::Error with a one-line message that says what was wrong
// and where; each program's main() catches it, prints "<program>: error: <message>" and exits 1.
#pragma once
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace gptoss {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// printf-style formatting into a std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrfmt(const char* fmt, va_list ap);

// Throws Error(printf-formatted message).
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Runs body, catching Error (and std::exception) into "prog: error: msg" on stderr; returns the
// process exit code. Every main() goes through it so no exception escapes as a crash.
template <class F>
int guarded_main(const char* prog, F&& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", prog, e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of host memory\n", prog);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", prog, e.what());
  }
  return 1;
}

}  // namespace gptoss

// System call check: CHECK_SYS(expr, "what") fails with "what: strerror(errno)" if expr < 0.
#define CHECK_SYS(expr, ...)                                                                    \
  do {                                                                                          \
    if ((expr) < 0) {                                                                           \
      int e_ = errno;                                                                           \
      throw ::gptoss::Error(::gptoss::strfmt(__VA_ARGS__) + ": " + std::strerror(e_));          \
    }                                                                                           \
  } while (0)

// Internal invariant: a failure is a bug, reported with file and line.
#define GPTOSS_ASSERT(cond)                                                                     \
  do {                                                                                          \
    if (!(cond))                                                                                \
      throw ::gptoss::Error(::gptoss::strfmt("internal error: %s (%s:%d)", #cond, __FILE__,     \
                                             __LINE__));                                        \
  } while (0)
