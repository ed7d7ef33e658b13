// What the gateway takes as a command's stdout from a worker (OutputSink.stdoutPipe): the read
// end of a pipe and nothing else, read without ever blocking.
#include "worker_pipe.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
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
  return WorkerPipe::adopt(io.unixEventPort, fd, 256 * 1024) != nullptr;
}

struct PipeEnds {
  PipeEnds() {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) std::abort();
    read_end.reset(ends[0]);
    write_end.reset(ends[1]);
  }
  UniqueFd read_end, write_end;
};

TEST(WorkerPipeTest, ThePipesReadEndIsTakenAndReadsWhatTheCommandWroteThenEof) {
  auto io = kj::setupAsyncIo();
  PipeEnds pipe;
  auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, pipe.read_end.get(), 256 * 1024);
  ASSERT_TRUE(adopted_pipe != nullptr);
  // The gateway reads its own duplicate: the worker's copy may close at once.
  pipe.read_end.reset();
  const std::string text = "web-1 | hello\n";
  ASSERT_EQ(write(pipe.write_end.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  KJ_IF_MAYBE (reader, adopted_pipe) {
    char buffer[64];
    auto bytes = kj::arrayPtr(reinterpret_cast<kj::byte*>(buffer), sizeof buffer);
    const auto got = (*reader)->read(bytes).wait(io.waitScope);
    EXPECT_EQ(std::string(buffer, got), text);
    pipe.write_end.reset();
    EXPECT_EQ((*reader)->read(bytes).wait(io.waitScope), 0u) << "EOF once the writer has closed";
  }
}

// O_NONBLOCK belongs to the open file description, which the worker shares and may clear: a
// read that then blocked would stall the gateway's event loop, every client with it.
TEST(WorkerPipeTest, AnEmptyPipeWhoseNonBlockingFlagTheWorkerClearedNeverBlocksTheLoop) {
  alarm(20);  // a blocking read would hang here: fail instead
  auto io = kj::setupAsyncIo();
  PipeEnds pipe;
  auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, pipe.read_end.get(), 256 * 1024);
  ASSERT_TRUE(adopted_pipe != nullptr);
  KJ_IF_MAYBE (reader, adopted_pipe) {
    for (int round = 0; round < 3; ++round) {
      ASSERT_EQ(fcntl(pipe.read_end.get(), F_SETFL, 0), 0);  // as a hostile worker would
      ASSERT_EQ(fcntl(pipe.read_end.get(), F_GETFL) & O_NONBLOCK, 0);
      char buffer[64];
      auto reading = (*reader)->read(kj::arrayPtr(reinterpret_cast<kj::byte*>(buffer), sizeof buffer));
      EXPECT_FALSE(reading.poll(io.waitScope)) << "round " << round << ": nothing written, nothing read";
      ASSERT_EQ(write(pipe.write_end.get(), "x", 1), 1);
      ASSERT_TRUE(reading.poll(io.waitScope)) << "round " << round;
      EXPECT_EQ(reading.wait(io.waitScope), 1u);
      EXPECT_EQ(buffer[0], 'x');
    }
  }
  alarm(0);
}

TEST(WorkerPipeTest, TheWriteEndIsRefused) {
  PipeEnds pipe;
  EXPECT_FALSE(adopted(pipe.write_end.get()));
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
