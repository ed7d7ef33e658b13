// The one system-call idiom: interrupted calls retried, errors told as "what where: reason",
// whole reads bounded.
#include "system_call.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "unique_fd.h"

namespace pgod {
namespace {

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  UniqueFd read_end, write_end;
};

TEST(SystemCall, AnErrorSaysWhatWhereAndWhy) {
  EXPECT_EQ(os_error("open", "/etc/x", ENOENT), "open /etc/x: No such file or directory");
  EXPECT_EQ(os_error("uname", "", EPERM), "uname: Operation not permitted");
  EXPECT_EQ(errno_text(EACCES), "Permission denied");
}

TEST(SystemCall, CheckCallPassesAnythingButMinusOne) {
  EXPECT_TRUE(check_call(0, "close").has_value());
  EXPECT_TRUE(check_call(7, "open", "/x").has_value());
  errno = EBADF;
  auto failed = check_call(-1, "fstat", "fd 99");
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error(), "fstat fd 99: Bad file descriptor");
}

TEST(SystemCall, RetryEintrCallsAgainOnlyWhileInterrupted) {
  int calls = 0;
  const int result = retry_eintr([&] {
    ++calls;
    if (calls < 3) {
      errno = EINTR;
      return -1;
    }
    return 42;
  });
  EXPECT_EQ(result, 42);
  EXPECT_EQ(calls, 3);
  calls = 0;
  const int failed = retry_eintr([&] {
    ++calls;
    errno = EIO;
    return -1;
  });
  EXPECT_EQ(failed, -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(calls, 1);
}

TEST(SystemCall, ReadBoundedReadsToTheEndWithinTheBound) {
  Pipe pipe;
  const std::string text(40000, 'x');  // more than one read's buffer
  std::thread writer([&] {
    EXPECT_EQ(write(pipe.write_end.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    pipe.write_end.reset();
  });
  auto read = read_bounded(pipe.read_end.get(), text.size(), "the pipe");
  writer.join();
  ASSERT_TRUE(read.has_value()) << read.error();
  EXPECT_EQ(*read, text);
}

TEST(SystemCall, ReadBoundedRefusesOneByteOverTheBound) {
  Pipe pipe;
  ASSERT_EQ(write(pipe.write_end.get(), "12345", 5), 5);
  pipe.write_end.reset();
  auto read = read_bounded(pipe.read_end.get(), 4, "the key");
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error(), "the key: larger than 4 bytes");
}

TEST(SystemCall, ReadBoundedSaysWhichReadFailed) {
  UniqueFd directory(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(directory);
  auto read = read_bounded(directory.get(), 100, "/");
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error(), "reading /: Is a directory");
}

TEST(SystemCall, WipeOverwritesEveryByteInPlace) {
  std::string secret = "-----BEGIN OPENSSH PRIVATE KEY-----";
  const char* bytes = secret.data();
  wipe(secret);
  EXPECT_EQ(secret.data(), bytes) << "the same storage";
  EXPECT_EQ(secret, std::string(35, '\0'));
}

}  // namespace
}  // namespace pgod
