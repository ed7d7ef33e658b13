// gather_more, the docker gate's wait for more of a long reply (dockergate/gate.cc), on a real
// socket pair standing in for dockerd's connection: what it adds, in order, and that it never
// waits for more than its two short pauses.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "gate.h"
#include "unique_fd.h"

namespace pgod::dockergate {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct SocketPair {
  SocketPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0) {
      daemon = UniqueFd(fds[0]);
      writer = UniqueFd(fds[1]);
    }
  }
  UniqueFd daemon;  // the gate's end
  UniqueFd writer;  // dockerd's end
};

void write_text(int fd, std::string_view text) {
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
}

std::string pending(int fd) {
  std::array<char, 65536> rest{};
  const ssize_t n = recv(fd, rest.data(), rest.size(), MSG_DONTWAIT);
  return n > 0 ? std::string(rest.data(), static_cast<std::size_t>(n)) : std::string();
}

TEST(GatherMore, AddsWhatComesDuringThePauseAfterThePieceInOrder) {
  SocketPair pair;
  ASSERT_TRUE(pair.daemon && pair.writer);
  std::array<char, 65536> buffer{};
  const std::string_view first = "line 1\n";
  std::copy(first.begin(), first.end(), buffer.begin());
  write_text(pair.writer.get(), "line 2\nline 3\n");
  const std::size_t length = gather_more(pair.daemon.get(), buffer, first.size());
  EXPECT_EQ(std::string_view(buffer.data(), length), "line 1\nline 2\nline 3\n");
}

TEST(GatherMore, TakesWhatArrivesWhileItWaits) {
  SocketPair pair;
  ASSERT_TRUE(pair.daemon && pair.writer);
  std::array<char, 65536> buffer{};
  std::thread late([&] {
    std::this_thread::sleep_for(200us);
    write_text(pair.writer.get(), "late\n");
  });
  std::size_t length = 0;
  const auto deadline = Clock::now() + 5s;  // the writer may run late on a busy host
  while (length == 0 && Clock::now() < deadline) length = gather_more(pair.daemon.get(), buffer, 0);
  late.join();
  EXPECT_EQ(std::string_view(buffer.data(), length), "late\n");
}

TEST(GatherMore, WithNothingMoreItReturnsThePieceAfterItsPausesNotLater) {
  SocketPair pair;
  ASSERT_TRUE(pair.daemon && pair.writer);
  std::array<char, 65536> buffer{};
  buffer[0] = 'x';
  const auto started = Clock::now();
  EXPECT_EQ(gather_more(pair.daemon.get(), buffer, 1), 1u);
  const auto took = Clock::now() - started;
  EXPECT_GE(took, 500us) << "it did not wait for more";
  EXPECT_LT(took, 1s) << "it waited past its pauses";  // two pauses of 0.5 ms, on a busy host
}

TEST(GatherMore, APieceLongEnoughIsSentWithoutWaitingOrReading) {
  SocketPair pair;
  ASSERT_TRUE(pair.daemon && pair.writer);
  std::array<char, 65536> buffer{};
  write_text(pair.writer.get(), "next piece\n");
  EXPECT_EQ(gather_more(pair.daemon.get(), buffer, kGatherEnough), kGatherEnough);
  EXPECT_EQ(pending(pair.daemon.get()), "next piece\n") << "it waited and read what the next turn should";
}

TEST(GatherMore, AFullBufferIsNotReadInto) {
  SocketPair pair;
  ASSERT_TRUE(pair.daemon && pair.writer);
  std::array<char, 16> small{};
  write_text(pair.writer.get(), "more\n");
  EXPECT_EQ(gather_more(pair.daemon.get(), small, small.size()), small.size());
  EXPECT_EQ(pending(pair.daemon.get()), "more\n");
}

TEST(GatherMore, TheEndIsLeftForTheNextRecv) {
  SocketPair pair;
  ASSERT_TRUE(pair.daemon && pair.writer);
  std::array<char, 65536> buffer{};
  write_text(pair.writer.get(), "last\n");
  pair.writer.reset();  // dockerd closes after its last bytes
  EXPECT_EQ(gather_more(pair.daemon.get(), buffer, 0), 5u);
  EXPECT_EQ(std::string_view(buffer.data(), 5), "last\n");
  std::array<char, 8> after{};
  EXPECT_EQ(recv(pair.daemon.get(), after.data(), after.size(), MSG_DONTWAIT), 0) << "the end was swallowed";
}

}  // namespace
}  // namespace pgod::dockergate
