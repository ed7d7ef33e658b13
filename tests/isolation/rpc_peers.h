// Two kinds of Cap'n Proto peers for pgod's unix sockets. A raw one, at the byte level, for
// handing a server what no well-behaved client sends: raw bytes, hand-made segment tables and
// words, or messages built with capnp's own rpc.capnp schema; it reads back, message by
// message, what the server answers until it closes the connection or goes quiet. And the
// well-behaved one (capnp's TwoPartyClient), whose correct answer shows a server still serves.
#pragma once

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <kj/array.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "unique_fd.h"

namespace pgod::isolation {

// connect(2) to a unix socket as the calling process; "ok" or the errno's name, and the fd.
struct Connected {
  std::string outcome;
  UniqueFd fd;
};
Connected connect_unix(const std::string& path);

class RawRpcPeer {
 public:
  explicit RawRpcPeer(const std::string& socket_path);  // throws when it cannot connect
  explicit RawRpcPeer(UniqueFd fd);

  // Each returns false when the server has stopped reading (it closed the connection).
  bool send(capnp::MessageBuilder& message);
  bool send_words(const std::vector<uint64_t>& words);
  bool send_bytes(const void* data, std::size_t size);
  // `fds` ride along with the message's first byte (SCM_RIGHTS), as a link that passes
  // descriptors sends them.
  bool send_words_with_fds(const std::vector<uint64_t>& words, const std::vector<int>& fds);
  void close_writing();  // shutdown(SHUT_WR): the server sees end of stream

  // What the server sent, one entry per complete message ("abort: <reason>", "return 0
  // results", "return 1 exception: <reason>", "unimplemented", …), and finally "closed" when it
  // closed the connection (end of stream or reset). Stops when nothing arrives for `quiet`.
  std::vector<std::string> replies(std::chrono::milliseconds quiet = std::chrono::seconds(2));

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::string pending_;  // received bytes not yet a whole message
};

// One line for a message a server sent.
std::string describe(capnp::rpc::Message::Reader message);

// The replies joined with " | ", for failure messages.
std::string joined(const std::vector<std::string>& replies);
bool has_reply_starting(const std::vector<std::string>& replies, const std::string& prefix);

// Messages as the 64-bit words on the wire (the host is little-endian, as the wire format is):
// copyable, unlike capnp::word, and writable word by word where the schema cannot express
// what a test sends.
using Words = std::vector<uint64_t>;
Words to_words(capnp::MessageBuilder& message);  // segment table included
Words to_words(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);
uint64_t struct_pointer(int32_t offset, uint16_t data_words, uint16_t pointers);
uint64_t list_pointer(int32_t offset, uint8_t element_size, uint32_t count);
// A one-segment message: the segment table, then `segment`.
Words single_segment(const Words& segment);

// ---------------------------------------------------------------------------------------------
// Well-behaved clients: one call each, bounded by a time-out. "failed: <why>" when no answer.

// The worker's status(): "state=<n> hash=<commit>".
std::string worker_status(const std::string& socket_path);
std::string worker_status(UniqueFd connected);
// The supervisor's listServices(): "<name>:<state>:<pid>" per service, space-separated.
std::string supervisor_services(const std::string& socket_path);
std::string supervisor_services(UniqueFd connected);

}  // namespace pgod::isolation
