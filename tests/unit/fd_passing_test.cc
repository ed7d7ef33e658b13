// The descriptor hand-over between pgod and the docker gate's unit: the message and every
// descriptor arrive, in order, across more than one SCM_RIGHTS batch; what is over its limits
// or cut short is refused.
#include "fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
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

// A listening socket that refuses descriptors: its connections inherit that, and a peer sending
// one gets EPERM before anything reaches the receiver, while plain bytes pass. On a kernel
// without SO_PASSRIGHTS (before 6.16) the call says so (ENOPROTOOPT) and descriptors still pass.
TEST(FdPassing, ASocketThatRefusesDescriptorsTurnsThemAwayAtTheSender) {
  char dir[] = "/tmp/pgod-refuse.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/s";
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const bool refusing = refuse_descriptors(listener.get());
  const int why = errno;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener.get(), 4), 0);
  UniqueFd peer(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(connect(peer.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted);
  UniqueFd null_device(open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int sent_fd = null_device.get();
  const auto sent = send_byte_with_fds(peer.get(), 'x', &sent_fd, 1);
  if (refusing) {
    ASSERT_FALSE(sent.has_value()) << "a descriptor reached a socket that refuses them";
    EXPECT_NE(sent.error().find("not permitted"), std::string::npos) << sent.error();
  } else {
    EXPECT_EQ(why, ENOPROTOOPT) << "refuse_descriptors failed for another reason: " << std::strerror(why);
    EXPECT_TRUE(sent.has_value());
  }
  ASSERT_EQ(send(peer.get(), "y", 1, MSG_NOSIGNAL), 1);
  // A read stops after the bytes that carried descriptors: read until both could have come.
  std::string received;
  const std::string expected = refusing ? "y" : "xy";
  while (received.size() < expected.size()) {
    pollfd readable{accepted.get(), POLLIN, 0};
    if (poll(&readable, 1, 2000) != 1) break;
    char got[2] = {};
    const ssize_t n = recv(accepted.get(), got, sizeof got, MSG_DONTWAIT);
    if (n <= 0) break;
    received.append(got, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(received, expected);
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace pgod
