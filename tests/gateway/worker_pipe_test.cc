// What the gateway takes as a command's stdout from a worker (OutputSink.stdoutPipe): the read
// end of a pipe and nothing else, read on a thread of its own so that the event loop never
// waits on anything the worker holds.
#include "worker_pipe.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "pipe_lock_holder.h"
#include "unique_fd.h"

namespace pgod::gateway {
namespace {

// Lends a reader a duplicate of `fd` (closed when the reader lets go), as a worker link's relay
// lends what it kept; -1 when `fd` is not open.
std::unique_ptr<LentFd> lend(int fd) {
  struct Duplicate final : LentFd {
    UniqueFd owned;
    int fd() const override { return owned.get(); }
  };
  auto lent = std::make_unique<Duplicate>();
  if (fd >= 0) lent->owned.reset(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  return lent;
}

// Whether the gateway reads `fd` as a command's stdout. A refusal comes from the reader thread,
// as read()'s failure, and nothing is read.
bool adopted(int fd) {
  auto io = kj::setupAsyncIo();
  KJ_IF_MAYBE (reader, WorkerPipe::adopt(io.unixEventPort, lend(fd), 256 * 1024)) {
    auto reading = (*reader)->read();
    io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
    if (!reading.poll(io.waitScope)) {
      EXPECT_TRUE(WorkerPipe::acceptable(fd));
      return true;  // waiting for bytes: taken
    }
    KJ_IF_MAYBE (refusal, kj::runCatchingExceptions([&]() { reading.wait(io.waitScope); })) {
      EXPECT_TRUE(std::string(refusal->getDescription().cStr()).find("not the read end of a pipe") != std::string::npos)
          << refusal->getDescription().cStr();
      EXPECT_FALSE(WorkerPipe::acceptable(fd));
      return false;
    }
    return true;
  }
  ADD_FAILURE() << "no reader thread";
  return false;
}

std::string text_of(kj::ArrayPtr<const kj::byte> bytes) { return std::string(bytes.asChars().begin(), bytes.size()); }

// Waits (on the event loop, which keeps turning) until fewer reader threads run than `limit`.
bool readers_drop_below(std::size_t limit, kj::Timer& timer, kj::WaitScope& wait) {
  for (int tries = 0; tries < 500; ++tries) {
    if (WorkerPipe::readers_running() < limit) return true;
    timer.afterDelay(10 * kj::MILLISECONDS).wait(wait);
  }
  return false;
}

TEST(WorkerPipeTest, ThePipesReadEndIsTakenAndReadsWhatTheCommandWroteThenEof) {
  auto io = kj::setupAsyncIo();
  PipeEnds pipe;
  ASSERT_TRUE(readers_drop_below(1, io.provider->getTimer(), io.waitScope));
  const std::size_t readers_before = 0;
  auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, lend(pipe.read_end.get()), 256 * 1024);
  ASSERT_TRUE(adopted_pipe != nullptr);
  EXPECT_EQ(WorkerPipe::readers_running(), readers_before + 1);
  // The gateway reads its own duplicate: the worker's copy may close at once.
  pipe.read_end.reset();
  const std::string text = "web-1 | hello\n";
  ASSERT_EQ(write(pipe.write_end.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  KJ_IF_MAYBE (reader, adopted_pipe) {
    EXPECT_EQ(text_of((*reader)->read().wait(io.waitScope)), text);
    pipe.write_end.reset();
    EXPECT_EQ((*reader)->read().wait(io.waitScope).size(), 0u) << "EOF once the writer has closed";
  }
  EXPECT_TRUE(readers_drop_below(readers_before + 1, io.provider->getTimer(), io.waitScope))
      << "the reader thread ends at EOF";
}

// Many reads' worth, handed from the thread to the loop two reads at a time: every byte
// arrives, in order, none twice.
TEST(WorkerPipeTest, ALongStreamArrivesWholeAndInOrder) {
  auto io = kj::setupAsyncIo();
  PipeEnds pipe;
  constexpr std::size_t kChunk = 4096;
  auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, lend(pipe.read_end.get()), kChunk);
  ASSERT_TRUE(adopted_pipe != nullptr);
  pipe.read_end.reset();
  constexpr std::size_t kBytes = 8 << 20;
  std::thread writer([fd = pipe.write_end.get()]() {
    std::string block(65536, '\0');
    for (std::size_t sent = 0; sent < kBytes; sent += block.size()) {
      for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(((sent + i) * 7) % 251);
      for (std::size_t done = 0; done < block.size();) {
        const ssize_t n = write(fd, block.data() + done, block.size() - done);
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
      }
    }
  });
  std::size_t got = 0;
  bool in_order = true;
  KJ_IF_MAYBE (reader, adopted_pipe) {
    for (;;) {
      auto bytes = (*reader)->read().wait(io.waitScope);
      if (bytes.size() == 0) break;
      EXPECT_LE(bytes.size(), kChunk);
      for (std::size_t i = 0; i < bytes.size() && in_order; ++i)
        in_order = bytes[i] == static_cast<kj::byte>(((got + i) * 7) % 251);
      got += bytes.size();
      if (got == kBytes) pipe.write_end.reset();
    }
  }
  writer.join();
  EXPECT_EQ(got, kBytes);
  EXPECT_TRUE(in_order);
}

// O_NONBLOCK belongs to the open file description, which the worker shares and may clear:
// the gateway's loop never reads the worker's pipe, so it never blocks on it either.
TEST(WorkerPipeTest, AnEmptyPipeWhoseNonBlockingFlagTheWorkerClearedNeverBlocksTheLoop) {
  alarm(20);  // a blocking read would hang here: fail instead
  auto io = kj::setupAsyncIo();
  PipeEnds pipe;
  auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, lend(pipe.read_end.get()), 256 * 1024);
  ASSERT_TRUE(adopted_pipe != nullptr);
  KJ_IF_MAYBE (reader, adopted_pipe) {
    for (int round = 0; round < 3; ++round) {
      ASSERT_EQ(fcntl(pipe.read_end.get(), F_SETFL, 0), 0);  // as a hostile worker would
      ASSERT_EQ(fcntl(pipe.read_end.get(), F_GETFL) & O_NONBLOCK, 0);
      auto reading = (*reader)->read();
      EXPECT_FALSE(reading.poll(io.waitScope)) << "round " << round << ": nothing written, nothing read";
      ASSERT_EQ(write(pipe.write_end.get(), "x", 1), 1);
      EXPECT_EQ(text_of(reading.wait(io.waitScope)), "x") << "round " << round;
    }
  }
  alarm(0);
}

// The lock held, the reader thread waits for it; the event loop does not, and goes on serving.
// Once the lock is free the bytes arrive; a reader dropped meanwhile lets its thread go then.
TEST(WorkerPipeTest, AWorkerHoldingThePipesLockStallsOnlyThatStreamsThreadNeverTheLoop) {
  alarm(60);  // the loop stalled: fail instead of hanging
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  // Earlier tests' readers have ended: each one counted below is this test's.
  ASSERT_TRUE(readers_drop_below(1, timer, io.waitScope));
  const std::size_t readers_before = 0;
  PipeEnds pipe;
  ASSERT_EQ(write(pipe.write_end.get(), "abc", 3), 3);  // readable: the reader goes for the lock
  {
    PipeLockHolder holder(pipe.write_end.get());
    auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, lend(pipe.read_end.get()), 256 * 1024);
    ASSERT_TRUE(adopted_pipe != nullptr);
    KJ_IF_MAYBE (reader, adopted_pipe) {
      auto reading = (*reader)->read();
      const auto started = timer.now();
      timer.afterDelay(200 * kj::MILLISECONDS).wait(io.waitScope);
      EXPECT_LT(timer.now() - started, 2 * kj::SECONDS) << "the loop went on turning";
      EXPECT_FALSE(reading.poll(io.waitScope)) << "the reader thread waits for the lock";
      EXPECT_EQ(holder.release(), 100);
      const std::string got = text_of(reading.wait(io.waitScope));
      EXPECT_EQ(got.substr(0, 3), "abc");
    }
  }
  ASSERT_TRUE(readers_drop_below(readers_before + 1, timer, io.waitScope));
  ASSERT_EQ(write(pipe.write_end.get(), "def", 3), 3);
  {
    PipeLockHolder holder(pipe.write_end.get());
    auto adopted_pipe = WorkerPipe::adopt(io.unixEventPort, lend(pipe.read_end.get()), 256 * 1024);
    ASSERT_TRUE(adopted_pipe != nullptr);
    timer.afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope);
    adopted_pipe = nullptr;  // the client went: never waits for the stuck thread
    EXPECT_GE(WorkerPipe::readers_running(), readers_before + 1) << "still stuck, still counted";
    holder.release();
    EXPECT_TRUE(readers_drop_below(readers_before + 1, timer, io.waitScope)) << "let go, the thread ends";
  }
  EXPECT_TRUE(readers_drop_below(readers_before + 1, timer, io.waitScope));
  alarm(0);
}

// Threads stuck on hostile workers' pipes are bounded: past kMaxReaders a pipe is refused (the
// worker then streams through messages), and a reader that ends frees its place.
TEST(WorkerPipeTest, ReaderThreadsAreBoundedAndAnEndedOneFreesItsPlace) {
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  ASSERT_TRUE(readers_drop_below(1, timer, io.waitScope));
  std::vector<PipeEnds> pipes(WorkerPipe::kMaxReaders + 1);
  std::vector<kj::Own<WorkerPipe>> readers;
  for (std::size_t i = 0; i < WorkerPipe::kMaxReaders; ++i) {
    KJ_IF_MAYBE (reader, WorkerPipe::adopt(io.unixEventPort, lend(pipes[i].read_end.get()), 4096)) {
      readers.push_back(kj::mv(*reader));
    } else {
      ADD_FAILURE() << "reader " << i << " refused";
    }
  }
  EXPECT_EQ(WorkerPipe::readers_running(), WorkerPipe::kMaxReaders);
  const int last = pipes.back().read_end.get();
  EXPECT_TRUE(WorkerPipe::adopt(io.unixEventPort, lend(last), 4096) == nullptr) << "one more than the limit";
  EXPECT_TRUE(WorkerPipe::acceptable(last)) << "refused for the limit, not for what it is";
  readers.pop_back();
  ASSERT_TRUE(readers_drop_below(WorkerPipe::kMaxReaders, timer, io.waitScope));
  EXPECT_TRUE(WorkerPipe::adopt(io.unixEventPort, lend(last), 4096) != nullptr) << "a place came free";
  readers.clear();
  EXPECT_TRUE(readers_drop_below(1, timer, io.waitScope));
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
