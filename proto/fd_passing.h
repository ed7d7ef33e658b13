// Handing descriptors to another process over a unix stream socket (SCM_RIGHTS), with a message:
// how pgod gives the docker gate its settings and the services' sockets when the gate runs as a
// systemd unit of its own instead of as pgod's child.
//
// On the wire: a header (the message's length and the number of descriptors, 32 bits each,
// little-endian), the message, then one byte per batch of at most kFdsPerBatch descriptors,
// each byte carrying its batch as SCM_RIGHTS.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "expected.h"
#include "unique_fd.h"

namespace pgod {

inline constexpr std::size_t kFdsPerBatch = 200;  // under the kernel's SCM_MAX_FD (253)

// Blocking; the socket's send timeout (if any) bounds it.
Expected<Done, std::string> send_with_fds(int socket, std::string_view message, const std::vector<int>& fds);

// One byte carrying `count` descriptors (at most the kernel's SCM_MAX_FD, 253) as SCM_RIGHTS.
Expected<Done, std::string> send_byte_with_fds(int socket, char byte, const int* fds, std::size_t count);

struct ReceivedFds {
  std::string message;
  std::vector<UniqueFd> fds;  // in the order they were sent, close-on-exec
};

// Refuses a message over `max_message` bytes or more than `max_fds` descriptors.
Expected<ReceivedFds, std::string> receive_with_fds(int socket, std::size_t max_message, std::size_t max_fds);

// Asks the kernel to refuse, at the sender (EPERM), any descriptor sent to `socket`; a listening
// socket's connections inherit it. Why: a descriptor sent over a unix socket is the receiver's
// to close, the kernel closes those a read does not take inside that read, and some closes wait
// as long as the sender likes (a pipe whose lock it holds, a FUSE file): a peer could stall the
// receiver's event loop with one. Linux 6.16 and later have the option (SO_PASSRIGHTS); false
// when this kernel lacks it (errno ENOPROTOOPT), and then nothing changes.
bool refuse_descriptors(int socket);

}  // namespace pgod
