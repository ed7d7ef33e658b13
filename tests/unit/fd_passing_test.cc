// The descriptor hand-over between pgod and the docker gate's unit: the message and every
// descriptor arrive, in order, across more than one SCM_RIGHTS batch; what is over its limits
// or cut short is refused.
#include "fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

namespace pgod {
namespace {

struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    sender = UniqueFd(fds[0]);
    receiver = UniqueFd(fds[1]);
  }
  UniqueFd sender, receiver;
};

ino_t inode_of(int fd) {
  struct stat info {};
  EXPECT_EQ(fstat(fd, &info), 0);
  return info.st_ino;
}

TEST(FdPassing, TheMessageAndEveryDescriptorArriveInOrderAcrossBatches) {
  Pair pair;
  // More than one batch (kFdsPerBatch) and a message larger than one read.
  std::vector<UniqueFd> pipes;
  std::vector<int> sent;
  for (std::size_t i = 0; i < kFdsPerBatch + 50; ++i) {
    int ends[2];
    ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
    pipes.emplace_back(ends[0]);
    pipes.emplace_back(ends[1]);
    sent.push_back(ends[0]);
  }
  const std::string message(100000, 'm');
  std::thread writer([&]() { EXPECT_TRUE(send_with_fds(pair.sender.get(), message, sent)); });
  auto received = receive_with_fds(pair.receiver.get(), 1 << 20, 1000);
  writer.join();
  ASSERT_TRUE(received) << received.error();
  EXPECT_EQ(received->message, message);
  ASSERT_EQ(received->fds.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(inode_of(received->fds[i].get()), inode_of(sent[i])) << i;
    EXPECT_EQ(fcntl(received->fds[i].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "close-on-exec: " << i;
  }
}

TEST(FdPassing, MoreThanAnnouncedLimitsIsRefused) {
  Pair pair;
  const std::vector<int> fds = {pair.sender.get(), pair.sender.get()};
  ASSERT_TRUE(send_with_fds(pair.sender.get(), "settings", fds));
  auto received = receive_with_fds(pair.receiver.get(), 1 << 20, 1);
  ASSERT_FALSE(received);
  EXPECT_NE(received.error().find("too much"), std::string::npos) << received.error();
}

TEST(FdPassing, AHandOverCutShortIsRefused) {
  Pair pair;
  // A header announcing 100 bytes and 1 descriptor, then the end.
  const std::string head = std::string("\x64\0\0\0\x01\0\0\0", 8) + "short";
  ASSERT_EQ(write(pair.sender.get(), head.data(), head.size()), static_cast<ssize_t>(head.size()));
  pair.sender = UniqueFd();
  auto received = receive_with_fds(pair.receiver.get(), 1 << 20, 10);
  ASSERT_FALSE(received);
  EXPECT_NE(received.error().find("ended early"), std::string::npos) << received.error();
}

}  // namespace
}  // namespace pgod
