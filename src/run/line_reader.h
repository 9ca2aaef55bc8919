// line_reader.h: the user's messages for `run -m chat`. On a terminal: libedit (Debian's
// libedit-dev): line editing, history (up/down arrows), and no length limit (libedit reads the
// terminal byte by byte, so the 4 KiB limit of the terminal's own line editing does not cut a long
// pasted line). Otherwise plain lines from stdin, any length. Either way a line that ends in a
// backslash continues on the next one ("... " prompt); the message has a newline in its place.
#pragma once
#include <memory>
#include <string>

namespace gptoss {

class LineReader {
 public:
  enum class Result {
    Message,      // message holds one message (continuation lines joined; may be empty)
    End,          // end of input (Ctrl-D on an empty line)
    Interrupted,  // a signal (Ctrl-C) stopped the read; the message being typed is dropped
  };
  // terminal: edit on the terminal of stdin with libedit; the prompt goes to stdout, or to stderr
  // when stdout is not a terminal. Otherwise lines are read from stdin, with no prompt.
  explicit LineReader(bool terminal);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  // typed: with Interrupted, whether any text had been typed for the message.
  Result read(std::string& message, bool& typed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptoss
