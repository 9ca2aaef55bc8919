// test_paths.cpp: where getp's OUT goes (run/paths.h): a regular file is replaced atomically
// (through a symlink, which stays one), "-" is stdout, devices, FIFOs and /dev/stdout are written
// directly and never replaced; directories, missing directories and unwritable targets are one-line
// errors before anything runs. Also input checks, same-file detection and the default data paths.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/data_paths.h"
#include "common/error.h"
#include "run/getp_io.h"
#include "run/paths.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;

struct TmpDir {
  fs::path p;
  TmpDir() {
    char tmpl[] = "/tmp/run_paths_XXXXXX";
    p = mkdtemp(tmpl);
  }
  ~TmpDir() {
    ::chmod(p.c_str(), 0755);
    fs::remove_all(p);
  }
  std::string operator/(const char* f) const { return (p / f).string(); }
};

std::string err_of(const std::string& path) {
  try {
    resolve_output(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(RunPaths, RegularFilesAreReplacedAtomically) {
  TmpDir d;
  OutputTarget t = resolve_output(d / "new.txt");
  EXPECT_EQ(t.kind, OutputTarget::Kind::File);
  EXPECT_TRUE(t.resumable());
  write_output(t, "1 2\n");
  EXPECT_EQ(read_file(d / "new.txt"), "1 2\n");
  EXPECT_FALSE(fs::exists(d / "new.txt.tmp"));
  // An existing file: replaced by a new one (readers holding the old one keep the old text).
  write_output(resolve_output(d / "new.txt"), "3\n");
  EXPECT_EQ(read_file(d / "new.txt"), "3\n");
}

TEST(RunPaths, SymlinkToARegularFileStaysALink) {
  TmpDir d;
  fs::create_directory(d / "data");
  std::ofstream(d / "data/real.txt") << "old\n";
  fs::create_symlink("data/real.txt", d / "link.txt");
  OutputTarget t = resolve_output(d / "link.txt");
  EXPECT_EQ(t.kind, OutputTarget::Kind::File);
  EXPECT_EQ(t.file, d / "data/real.txt");
  write_output(t, "new\n");
  EXPECT_TRUE(fs::is_symlink(d / "link.txt"));
  EXPECT_EQ(read_file(d / "data/real.txt"), "new\n");
  EXPECT_FALSE(fs::exists(d / "data/real.txt.tmp"));
  // A dangling link: the file it names is created, the link kept.
  fs::create_symlink("data/later.txt", d / "dangling.txt");
  t = resolve_output(d / "dangling.txt");
  EXPECT_EQ(t.file, d / "data/later.txt");
  write_output(t, "x\n");
  EXPECT_TRUE(fs::is_symlink(d / "dangling.txt"));
  EXPECT_EQ(read_file(d / "data/later.txt"), "x\n");
}

TEST(RunPaths, NonRegularOutputsAreWrittenDirectly) {
  TmpDir d;
  OutputTarget t = resolve_output("/dev/null");
  EXPECT_EQ(t.kind, OutputTarget::Kind::Direct);
  EXPECT_FALSE(t.resumable());
  write_output(t, "1\n");
  struct stat st;
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  // /dev/stdout leads into /proc: written directly whatever fd 1 is (here: a regular file), so a
  // shell's `>> log` is appended to, never replaced.
  EXPECT_EQ(resolve_output("/dev/stdout").kind, OutputTarget::Kind::Direct);
  EXPECT_EQ(resolve_output("/dev/stdout").fd, 1);
  EXPECT_EQ(resolve_output("/dev/fd/2").fd, 2);
  fs::create_symlink("/proc/self/fd/1", d / "my_stdout");
  EXPECT_EQ(resolve_output(d / "my_stdout").kind, OutputTarget::Kind::Direct);
  EXPECT_EQ(resolve_output(d / "my_stdout").fd, 1);
  // Written through the descriptor: its offset and append mode hold (no reopening at offset 0).
  {
    std::ofstream(d / "log.txt") << "first\n";
    const int fd = ::open((d / "log.txt").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    OutputTarget l = resolve_output("/dev/fd/" + std::to_string(fd));
    EXPECT_EQ(l.fd, fd);
    write_output(l, "second\n");
    ::close(fd);
    EXPECT_EQ(read_file(d / "log.txt"), "first\nsecond\n");
    const int rd = ::open((d / "log.txt").c_str(), O_RDONLY);
    EXPECT_EQ(err_of("/dev/fd/" + std::to_string(rd)),
              "-o /dev/fd/" + std::to_string(rd) + ": file descriptor " + std::to_string(rd) +
                  " is not open for writing");
    ::close(rd);
  }
  EXPECT_EQ(resolve_output("-").kind, OutputTarget::Kind::Stdout);
  // A FIFO: written directly (a reader gets the text).
  ASSERT_EQ(::mkfifo((d / "fifo").c_str(), 0644), 0);
  t = resolve_output(d / "fifo");
  EXPECT_EQ(t.kind, OutputTarget::Kind::Direct);
  std::string got;
  std::thread reader([&] { got = read_file(d / "fifo"); });
  write_output(t, "4 5 6\n");
  reader.join();
  EXPECT_EQ(got, "4 5 6\n");
  ASSERT_EQ(::lstat((d / "fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

TEST(RunPaths, BadOutputsAreOneLineErrors) {
  TmpDir d;
  fs::create_directory(d / "odir");
  EXPECT_EQ(err_of(d / "odir"), "-o " + (d / "odir") + ": is a directory (expected a file)");
  EXPECT_EQ(err_of(d / "odir/"), "-o " + (d / "odir/") + ": names a directory (expected a file)");
  EXPECT_EQ(err_of(d / "missing/out.txt"), "-o " + (d / "missing/out.txt") + ": directory " +
                                               (d / "missing") + ": No such file or directory");
  std::ofstream(d / "file") << "x";
  EXPECT_EQ(err_of(d / "file/out.txt"), "-o " + (d / "file/out.txt") + ": Not a directory");
  if (geteuid() != 0) {  // root may write anywhere
    fs::create_directory(d / "ro");
    ::chmod((d / "ro").c_str(), 0555);
    EXPECT_EQ(err_of(d / "ro/out.txt"), "-o " + (d / "ro/out.txt") +
                                            ": cannot write in directory " + (d / "ro") +
                                            ": Permission denied");
  }
  fs::create_symlink("b", d / "a");
  fs::create_symlink("a", d / "b");
  EXPECT_EQ(err_of(d / "a"), "-o " + (d / "a") + ": too many levels of symbolic links");
}

TEST(RunPaths, InputsAndSameFile) {
  TmpDir d;
  std::ofstream(d / "in.txt") << "1\nhi\n";
  check_input_file(d / "in.txt", "-i");
  check_input_file("-", "-i");
  try {
    check_input_file(d / "none.txt", "--verify");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--verify " + (d / "none.txt") + ": No such file or directory");
  }
  try {
    check_input_file(d / "", "-i");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "-i " + (d / "") + ": is a directory");
  }
  fs::create_symlink("in.txt", d / "alias.txt");
  fs::create_hard_link(d / "in.txt", d / "hard.txt");
  EXPECT_TRUE(same_file(d / "in.txt", d / "alias.txt"));
  EXPECT_TRUE(same_file(d / "in.txt", d / "hard.txt"));
  EXPECT_FALSE(same_file(d / "in.txt", d / "none.txt"));
  EXPECT_FALSE(same_file("-", "-"));
}

TEST(RunPaths, DefaultsBesideTheProgramUnlessTheEnvironmentSays) {
  // This test program lives in the build's tests/run folder.
  EXPECT_TRUE(fs::exists(program_dir() + "/test_run")) << program_dir();
  unsetenv("GPTOSS_MODEL");
  EXPECT_EQ(default_model_path(), program_dir() + "/tiny.bin");
  setenv("GPTOSS_MODEL", "/m/20b.bin", 1);
  EXPECT_EQ(default_model_path(), "/m/20b.bin");
  unsetenv("GPTOSS_MODEL");
}

TEST(RunPaths, Counts) {
  EXPECT_EQ(count_of(1, "prompt"), "1 prompt");
  EXPECT_EQ(count_of(0, "prompt"), "0 prompts");
  EXPECT_EQ(count_of(2, "prompt token"), "2 prompt tokens");
}

}  // namespace
}  // namespace gptoss
