#include "fd_passing.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "system_call.h"

namespace pgod {
namespace {

void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) out += static_cast<char>((value >> shift) & 0xff);
}

std::uint32_t get_u32(const char* bytes) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

Expected<Done, std::string> send_bytes(int socket, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = retry_eintr([&] { return send(socket, bytes.data(), bytes.size(), MSG_NOSIGNAL); });
    if (sent <= 0) return Unexpected{os_error("send", "the descriptor hand-over", errno)};
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return Done{};
}

}  // namespace

Expected<Done, std::string> send_byte_with_fds(int socket, char byte, const int* fds, std::size_t count) {
  iovec data{&byte, 1};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * count));
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  std::memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
  if (retry_eintr([&] { return sendmsg(socket, &message, MSG_NOSIGNAL); }) != 1)
    return Unexpected{os_error("sendmsg(SCM_RIGHTS)", "the descriptor hand-over", errno)};
  return Done{};
}

Expected<Done, std::string> send_with_fds(int socket, std::string_view message, const std::vector<int>& fds) {
  std::string head;
  put_u32(head, static_cast<std::uint32_t>(message.size()));
  put_u32(head, static_cast<std::uint32_t>(fds.size()));
  if (auto sent = send_bytes(socket, head); !sent) return sent;
  if (auto sent = send_bytes(socket, message); !sent) return sent;
  for (std::size_t at = 0; at < fds.size(); at += kFdsPerBatch)
    if (auto sent = send_byte_with_fds(socket, 'F', fds.data() + at, std::min(kFdsPerBatch, fds.size() - at)); !sent)
      return sent;
  return Done{};
}

// Every read goes through recvmsg with room for descriptors: a plain read of a byte that carries
// SCM_RIGHTS would close them unseen.
Expected<ReceivedFds, std::string> receive_with_fds(int socket, std::size_t max_message, std::size_t max_fds) {
  ReceivedFds received;
  std::string bytes;
  std::size_t wanted = 8, expected_fds = 0;
  bool have_header = false;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * kFdsPerBatch));
  std::array<char, 16384> buffer{};
  while (!have_header || bytes.size() < wanted || received.fds.size() < expected_fds) {
    // Past the message, only the marker bytes are left: read them one at a time, so that one
    // read never takes two batches (their descriptors would not fit the control buffer).
    const std::size_t room = bytes.size() < wanted ? std::min(buffer.size(), wanted - bytes.size()) : 1;
    iovec data{buffer.data(), room};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.data();
    message.msg_controllen = control.size();
    const ssize_t got = retry_eintr([&] { return recvmsg(socket, &message, MSG_CMSG_CLOEXEC); });
    if (got < 0) return Unexpected{os_error("recvmsg", "the descriptor hand-over", errno)};
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
        received.fds.emplace_back(fd);
      }
    }
    if (message.msg_flags & MSG_CTRUNC) return Unexpected{std::string("the descriptor hand-over: descriptors lost")};
    if (got == 0) return Unexpected{std::string("the descriptor hand-over ended early")};
    if (bytes.size() < wanted) bytes.append(buffer.data(), static_cast<std::size_t>(got));
    if (!have_header && bytes.size() >= 8) {
      have_header = true;
      const std::size_t length = get_u32(bytes.data());
      expected_fds = get_u32(bytes.data() + 4);
      if (length > max_message || expected_fds > max_fds)
        return Unexpected{
            fmt::format("the descriptor hand-over: {} bytes and {} descriptors is too much", length, expected_fds)};
      wanted = 8 + length;
    }
    if (received.fds.size() > expected_fds && have_header)
      return Unexpected{std::string("the descriptor hand-over: more descriptors than announced")};
  }
  received.message = bytes.substr(8, wanted - 8);
  return received;
}

// SO_PASSRIGHTS (Linux 6.16) is newer than Debian 12's and 13's headers. 83 on the
// architectures that take asm-generic/socket.h's numbers; alpha, mips, parisc and sparc have
// their own tables, and there the option is not asked for (a wrong number would set another).
#if !defined(SO_PASSRIGHTS) &&                                                                                       \
    (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__) || defined(__powerpc__) || \
     defined(__s390__) || defined(__riscv) || defined(__loongarch__))
#define SO_PASSRIGHTS 83
#endif

bool refuse_descriptors(int socket) {
#ifdef SO_PASSRIGHTS
  const int off = 0;
  return setsockopt(socket, SOL_SOCKET, SO_PASSRIGHTS, &off, sizeof off) == 0;
#else
  (void)socket;
  errno = ENOPROTOOPT;
  return false;
#endif
}

}  // namespace pgod
