#!/usr/bin/env python3
"""chat_pty.py: `run -m chat` on a pseudo-terminal, as a person at a terminal uses it.

usage: chat_pty.py CASE RUN MODEL TOKENIZER WORKDIR
  stop     Ctrl-C while a turn is generated stops that turn and the prompt comes back; what was
           generated stays in the context (the context counts add up, and the next turn feeds the
           same closing tokens as after a -n cut); Ctrl-C at the empty prompt ends the chat with
           its summary, exit 130
  twice    two Ctrl-C within a second while generating end the chat at once (summary, exit 130)
  editor   the line editor: a 6 000-character line arrives whole (the terminal's 4 KiB line limit
           does not apply), a trailing backslash continues a message, the up arrow recalls the
           last line, non-ASCII text, Ctrl-C on a typed line only clears it; Ctrl-D ends (exit 0).
           Every turn's prompt tokens equal those of the same messages piped in.
  generate `run -m generate` with a terminal on stdin and no prompt: a one-line error
The child's stdin and stdout are the terminal; its stderr goes to a file, which is parsed.
"""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

case = sys.argv[1]
RUN, MODEL, TOK, W = (os.path.abspath(a) for a in sys.argv[2:6])
os.makedirs(W, exist_ok=True)
os.chdir(W)
ENV = dict(os.environ, TERM="xterm", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))


def fail(msg, child=None):
    print(f"FAIL ({case}): {msg}")
    if child is not None:
        print("--- terminal output (last 2000 bytes)")
        print(child.out[-2000:].decode("utf-8", "replace"))
        print("--- stderr")
        print(child.err())
        child.kill()
    sys.exit(1)


class Child:
    """The program on a pseudo-terminal; stderr in a file."""

    def __init__(self, args, err_path):
        self.err_path = err_path
        self.out = b""
        pid, fd = pty.fork()
        if pid == 0:
            e = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(e, 2)
            try:
                os.execve(args[0], args, ENV)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        self.status = None

    def err(self):
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def pump(self, seconds):
        """Reads the terminal for `seconds` (the child never blocks on its output)."""
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0:
                return
            r, _, _ = select.select([self.fd], [], [], min(left, 0.05))
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    time.sleep(min(left, 0.05))
                self.out += data

    def expect_out(self, pattern, timeout=60, start=0):
        """Waits until the terminal output after byte `start` matches; returns the match end."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            m = rx.search(self.out, start)
            if m:
                return m.end()
            self.pump(0.05)
            if self.exited():
                m = rx.search(self.out, start)
                if m:
                    return m.end()
                fail(f"exited ({self.status}) before the terminal showed {pattern!r}", self)
        fail(f"the terminal did not show {pattern!r} in {timeout} s", self)

    def expect_err(self, pattern, timeout=60, count=1):
        """Waits until stderr has `count` matches of pattern; returns them."""
        rx = re.compile(pattern, re.M)
        end = time.time() + timeout
        while time.time() < end:
            found = rx.findall(self.err())
            if len(found) >= count:
                return found
            self.pump(0.05)
            if self.exited() and len(rx.findall(self.err())) < count:
                fail(f"exited ({self.status}) before stderr had {count} x {pattern!r}", self)
        fail(f"stderr did not have {count} x {pattern!r} in {timeout} s", self)

    def send(self, data):
        for i in range(0, len(data), 512):  # in pieces, draining the output meanwhile
            os.write(self.fd, data[i:i + 512])
            self.pump(0.01)

    def exited(self):
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
        return self.status is not None

    def wait_exit(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            self.pump(0.05)
            if self.exited():
                return self.status
        fail(f"did not exit within {timeout} s", self)

    def kill(self):
        if not self.exited():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


TURN = re.compile(r"^\[turn (\d+): (\d+) new prompt tokens?, (\d+) generated in .*, context (\d+)/(\d+)\]$", re.M)


def turns(err):
    return [tuple(int(x) for x in m) for m in TURN.findall(err)]


def piped(lines, extra):
    """The same messages piped in: each turn's new prompt tokens."""
    r = subprocess.run([RUN, MODEL, "-z", TOK, "-m", "chat", *extra], input="".join(l + "\n" for l in lines).encode(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, timeout=120)
    if r.returncode != 0:
        fail(f"piped chat exit {r.returncode}: {r.stderr.decode()}")
    return turns(r.stderr.decode())


chat = [RUN, MODEL, "-z", TOK, "-m", "chat", "-T", "0", "--ignore-eos"]

if case == "stop":
    c = Child(chat + ["-n", "100000"], "stop.err")
    at = c.expect_out(rb"> ")
    c.send(b"Hello there\r")
    c.expect_err(r"^loaded in ")
    c.pump(1.5)  # generating (a turn of up to 100 000 tokens)
    os.write(c.fd, b"\x03")
    c.expect_err(r"^chat: turn stopped by Ctrl-C after \d+ tokens?; they stay in the context$")
    at = c.expect_out(rb"> ", start=at)  # the prompt again: the chat goes on
    c.send(b"Second\r")
    c.expect_err(r"^\[turn 1: ")
    c.pump(1.0)
    os.write(c.fd, b"\x03")
    c.expect_err(r"^\[turn \d+: ", count=2)
    c.expect_out(rb"> ", start=at)
    c.pump(1.2)  # more than a second after the last Ctrl-C
    os.write(c.fd, b"\x03")  # at the empty prompt: ends the chat
    st = c.wait_exit()
    err = c.err()
    if st != 130:
        fail(f"exit {st} after Ctrl-C at the prompt (expected 130)", c)
    if not re.search(r"^chat: 2 turns \(2 stopped by Ctrl-C\), \d+ prompt tokens fed, \d+ tokens generated in .* tok/s\), context \d+/4096; ended by Ctrl-C$", err, re.M):
        fail("no session summary", c)
    (n1, p1, g1, c1, _), (n2, p2, g2, c2, _) = turns(err)
    if not (g1 >= 1 and g2 >= 1 and g1 < 100000):
        fail(f"turns generated {g1}, {g2}", c)
    # What was generated stays in the context: all but the last token are cached after the turn,
    # the next turn feeds that last token and <|end|> first, as after a -n cut.
    if c1 != p1 + g1 - 1 or c2 != c1 + p2 + g2 - 1:
        fail(f"context counts: turn 1 {p1}+{g1} -> {c1}, turn 2 {p2}+{g2} -> {c2}", c)
    ref = piped(["Hello there", "Second"], ["-T", "0", "--ignore-eos", "-n", "3"])
    if p2 != ref[1][1]:
        fail(f"turn 2 fed {p2} tokens; after a -n cut it feeds {ref[1][1]}", c)
    print(f"turn 1: {p1} fed, stopped after {g1}; turn 2: {p2} fed, stopped after {g2}; context {c2}")

elif case == "twice":
    c = Child(chat + ["-n", "100000"], "twice.err")
    c.expect_out(rb"> ")
    c.send(b"Hello there\r")
    c.expect_err(r"^loaded in ")
    c.pump(1.0)
    os.write(c.fd, b"\x03")
    time.sleep(0.1)
    os.write(c.fd, b"\x03")
    st = c.wait_exit()
    if st != 130:
        fail(f"exit {st} after two Ctrl-C (expected 130)", c)
    if not re.search(r"^chat: 1 turn \(1 stopped by Ctrl-C\), .*; ended by Ctrl-C$", c.err(), re.M):
        fail("no session summary after two Ctrl-C", c)

elif case == "editor":
    # 6 000 characters (the terminal's own line editing keeps 4 095), 360 tokens.
    long_line = "responsibilities" + " responsibilities" * 360
    assert len(long_line) > 6000
    c = Child(chat + ["-n", "2"], "editor.err")
    at = c.expect_out(rb"> ")
    c.send(long_line.encode() + b"\r")
    c.expect_err(r"^\[turn 1: ", timeout=120)
    at = c.expect_out(rb"> ", start=at)
    c.send(b"first part \\\r")
    at = c.expect_out(rb"\.\.\. ", start=at)  # the continuation prompt
    c.send(b"second part\r")
    c.expect_err(r"^\[turn \d+: ", count=2)
    at = c.expect_out(rb"> ", start=at)
    c.send("Hello history 日本語\r".encode())
    c.expect_err(r"^\[turn \d+: ", count=3)
    at = c.expect_out(rb"> ", start=at)
    c.send(b"\x1b[A")  # up arrow: the last line again
    c.expect_out("Hello history 日本語".encode(), start=at)
    c.send(b"\r")
    c.expect_err(r"^\[turn \d+: ", count=4)
    at = c.expect_out(rb"> ", start=at)
    c.send(b"typed, then cleared")
    c.pump(0.3)
    os.write(c.fd, b"\x03")  # clears the line; the chat goes on
    at = c.expect_out(rb"> ", start=at)
    c.pump(1.2)
    os.write(c.fd, b"\x04")  # Ctrl-D at the empty prompt: the end
    st = c.wait_exit()
    if st != 0:
        fail(f"exit {st} after Ctrl-D (expected 0)", c)
    got = turns(c.err())
    if not re.search(r"^chat: 4 turns, \d+ prompt tokens fed, 8 tokens generated in .*, context \d+/4096$", c.err(), re.M):
        fail("no session summary (4 turns)", c)
    ref = piped([long_line, "first part \\", "second part", "Hello history 日本語", "Hello history 日本語"],
                ["-T", "0", "--ignore-eos", "-n", "2"])
    if [t[1] for t in got] != [t[1] for t in ref] or len(got) != 4:
        fail(f"prompt tokens per turn {[t[1] for t in got]}, piped {[t[1] for t in ref]}", c)
    print(f"prompt tokens per turn {[t[1] for t in got]} (the {len(long_line)}-character line whole)")

elif case == "generate":
    c = Child([RUN, MODEL, "-z", TOK, "-m", "generate"], "gen.err")
    st = c.wait_exit()
    err = c.err()
    if st != 1 or err != "run: error: -m generate needs a prompt: -i \"text\", -f FILE, or the text on stdin\n":
        fail(f"exit {st}: {err!r}", c)

else:
    fail("unknown case")
print(f"PASS {case}")
