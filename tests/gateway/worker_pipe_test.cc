// What the gateway takes as a command's stdout from a worker (OutputSink.stdoutPipe): the read
// end of a pipe and nothing else.
#include "worker_pipe.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "unique_fd.h"

namespace pgod::gateway {
namespace {

bool adopted(int fd) {
  auto io = kj::setupAsyncIo();
  return adopt_worker_pipe(*io.lowLevelProvider, fd) != nullptr;
}

TEST(WorkerPipeTest, ThePipesReadEndIsTakenAndReadsWhatTheCommandWrote) {
  auto io = kj::setupAsyncIo();
  int ends[2];
  ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  auto input = adopt_worker_pipe(*io.lowLevelProvider, read_end.get());
  ASSERT_TRUE(input != nullptr);
  // The gateway reads its own duplicate: the worker's copy may close at once.
  read_end.reset();
  const std::string text = "web-1 | hello\n";
  ASSERT_EQ(write(write_end.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  write_end.reset();
  KJ_IF_MAYBE (stream, input) {
    auto all = (*stream)->readAllText().wait(io.waitScope);
    EXPECT_EQ(std::string(all.cStr()), text);
  }
}

TEST(WorkerPipeTest, TheWriteEndIsRefused) {
  int ends[2];
  ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
  UniqueFd read_end(ends[0]), write_end(ends[1]);
  EXPECT_FALSE(adopted(write_end.get()));
}

TEST(WorkerPipeTest, ASocketIsRefused) {
  int ends[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  UniqueFd one(ends[0]), other(ends[1]);
  EXPECT_FALSE(adopted(one.get()));
}

TEST(WorkerPipeTest, AFileOrADirectoryIsRefused) {
  UniqueFd file(open("/etc/passwd", O_RDONLY | O_CLOEXEC));
  ASSERT_GE(file.get(), 0);
  EXPECT_FALSE(adopted(file.get()));
  UniqueFd directory(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_GE(directory.get(), 0);
  EXPECT_FALSE(adopted(directory.get()));
}

TEST(WorkerPipeTest, ANamedPipeOpenForWritingTooIsRefused) {
  char dir_template[] = "/tmp/pgod-worker-pipe-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string fifo = std::string(dir_template) + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  {
    UniqueFd both_ways(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_GE(both_ways.get(), 0);
    EXPECT_FALSE(adopted(both_ways.get()));
  }
  unlink(fifo.c_str());
  rmdir(dir_template);
}

TEST(WorkerPipeTest, AClosedDescriptorIsRefused) {
  int ends[2];
  ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
  close(ends[0]);
  close(ends[1]);
  EXPECT_FALSE(adopted(ends[0]));
  EXPECT_FALSE(adopted(-1));
}

}  // namespace
}  // namespace pgod::gateway
