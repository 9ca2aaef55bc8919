// line_reader.cpp: chat input through libedit on a terminal, plain lines otherwise (line_reader.h).
#include "run/line_reader.h"

#include <histedit.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace gptoss {

namespace {

enum class LineResult { Line, End, Interrupted };

// Plain lines from a file descriptor: any length, a signal interrupts the read (no SA_RESTART).
class FdLines {
 public:
  explicit FdLines(int fd) : fd_(fd) {}
  LineResult next(std::string& line, bool& typed) {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return LineResult::Line;
      }
      if (eof_) {
        if (buf_.empty()) return LineResult::End;
        line.swap(buf_);
        buf_.clear();
        return LineResult::Line;
      }
      char chunk[1 << 16];
      const ssize_t r = ::read(fd_, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) {  // nothing is typed here: what was read stays
        typed = false;
        return LineResult::Interrupted;
      }
      CHECK_SYS(r, "stdin: read");
      if (r == 0)
        eof_ = true;
      else
        buf_.append(chunk, static_cast<size_t>(r));
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

// libedit on the terminal of stdin.
class EditLines {
 public:
  EditLines() {
    // libedit decodes what is typed with the locale's character set; chat text is UTF-8 whatever
    // the environment says (a bare container runs in the C locale).
    if (!std::setlocale(LC_CTYPE, "C.UTF-8")) std::setlocale(LC_CTYPE, "");
    el_ = el_init("run", stdin, isatty(STDOUT_FILENO) ? stdout : stderr, stderr);
    if (!el_) fail("chat: cannot start the line editor (libedit) on this terminal");
    hist_ = history_init();
    HistEvent ev;
    history(hist_, &ev, H_SETSIZE, 1000);
    history(hist_, &ev, H_SETUNIQUE, 1);
    el_set(el_, EL_CLIENTDATA, this);
    el_set(el_, EL_PROMPT, &EditLines::prompt_of);
    el_set(el_, EL_EDITOR, "emacs");
    el_set(el_, EL_HIST, history, hist_);
    el_source(el_, nullptr);  // the user's ~/.editrc, if any
  }
  ~EditLines() {
    el_end(el_);
    history_end(hist_);
  }
  EditLines(const EditLines&) = delete;
  EditLines& operator=(const EditLines&) = delete;

  LineResult next(std::string& line, bool& typed, bool continuation) {
    prompt_ = continuation ? "... " : "> ";
    int count = 0;
    errno = 0;
    const char* got = el_gets(el_, &count);
    if (!got) {
      if (count < 0 && errno == EINTR) {
        const LineInfo* li = el_line(el_);
        typed = li && li->lastchar > li->buffer;
        return LineResult::Interrupted;
      }
      return LineResult::End;
    }
    line.assign(got, static_cast<size_t>(count));
    if (!line.empty() && line.back() == '\n') line.pop_back();
    if (!line.empty()) {
      HistEvent ev;
      history(hist_, &ev, H_ENTER, line.c_str());
    }
    return LineResult::Line;
  }

 private:
  static char* prompt_of(EditLine* el) {
    void* self = nullptr;
    el_get(el, EL_CLIENTDATA, &self);
    return const_cast<char*>(static_cast<EditLines*>(self)->prompt_);
  }
  EditLine* el_ = nullptr;
  History* hist_ = nullptr;
  const char* prompt_ = "> ";
};

}  // namespace

struct LineReader::Impl {
  std::unique_ptr<EditLines> edit;
  std::unique_ptr<FdLines> plain;
  LineResult next(std::string& line, bool& typed, bool continuation) {
    return edit ? edit->next(line, typed, continuation) : plain->next(line, typed);
  }
};

LineReader::LineReader(bool terminal) : impl_(std::make_unique<Impl>()) {
  if (terminal)
    impl_->edit = std::make_unique<EditLines>();
  else
    impl_->plain = std::make_unique<FdLines>(STDIN_FILENO);
}

LineReader::~LineReader() = default;

LineReader::Result LineReader::read(std::string& message, bool& typed) {
  message.clear();
  typed = false;
  std::string line;
  for (bool continuation = false;; continuation = true) {
    bool line_typed = false;
    switch (impl_->next(line, line_typed, continuation)) {
      case LineResult::Interrupted:
        typed = continuation || line_typed;
        message.clear();
        return Result::Interrupted;
      case LineResult::End:
        // End of input inside a continued message: what was given is the message.
        return continuation ? Result::Message : Result::End;
      case LineResult::Line:
        break;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.back() != '\\') {
      message += line;
      return Result::Message;
    }
    line.pop_back();
    message += line;
    message += '\n';
  }
}

}  // namespace gptoss
