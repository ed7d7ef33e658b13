#include "rpc_peers.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/exception.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "common.capnp.h"
#include "fd_passing.h"
#include "rpc_verbs.h"
#include "supervisor.capnp.h"
#include "worker.capnp.h"

namespace pgod::isolation {
namespace {

std::string errno_name(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : "errno " + std::to_string(error);
}

}  // namespace

Connected connect_unix(const std::string& path) {
  Connected result;
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    result.outcome = "socket: " + errno_name(errno);
    return result;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    result.outcome = "path too long";
    return result;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    result.outcome = errno_name(errno);
    return result;
  }
  result.outcome = "ok";
  result.fd = std::move(fd);
  return result;
}

RawRpcPeer::RawRpcPeer(const std::string& socket_path) {
  auto connected = connect_unix(socket_path);
  if (connected.outcome != "ok") throw std::runtime_error("connect " + socket_path + ": " + connected.outcome);
  fd_ = std::move(connected.fd);
}

RawRpcPeer::RawRpcPeer(UniqueFd fd) : fd_(std::move(fd)) {}

bool RawRpcPeer::send(capnp::MessageBuilder& message) { return send_words(to_words(message)); }

bool RawRpcPeer::send_words(const std::vector<uint64_t>& words) {
  return send_bytes(words.data(), words.size() * sizeof(uint64_t));
}

bool RawRpcPeer::send_words_with_fds(const std::vector<uint64_t>& words, const std::vector<int>& fds) {
  if (words.empty()) return false;
  const auto* bytes = reinterpret_cast<const char*>(words.data());
  if (!send_byte_with_fds(fd_.get(), bytes[0], fds.data(), fds.size())) return false;
  return send_bytes(bytes + 1, words.size() * sizeof(uint64_t) - 1);
}

bool RawRpcPeer::send_bytes(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    pollfd entry{fd_.get(), POLLOUT, 0};
    // A server that neither reads nor closes for this long fails the test instead of hanging it.
    if (poll(&entry, 1, 30'000) <= 0) return false;
    // MSG_NOSIGNAL: a server that closed gives EPIPE here, not SIGPIPE for the test.
    const ssize_t n = ::send(fd_.get(), bytes + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void RawRpcPeer::close_writing() { shutdown(fd_.get(), SHUT_WR); }

std::vector<std::string> RawRpcPeer::replies(std::chrono::milliseconds quiet) {
  std::vector<std::string> out;
  bool closed = false;
  const auto overall = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!closed && std::chrono::steady_clock::now() < overall) {
    pollfd entry{fd_.get(), POLLIN, 0};
    const int ready = poll(&entry, 1, static_cast<int>(quiet.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;  // quiet
    char buffer[65536];
    const ssize_t n = recv(fd_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // A server that closes with our bytes unread resets the connection (after what it sent).
    if (n <= 0) {
      closed = true;
    } else {
      pending_.append(buffer, static_cast<std::size_t>(n));
    }
    // Whole messages out of what has arrived.
    for (;;) {
      const std::size_t words = pending_.size() / sizeof(capnp::word);
      if (words == 0) break;
      auto copy = kj::heapArray<capnp::word>(words);
      std::memcpy(static_cast<void*>(copy.begin()), pending_.data(), words * sizeof(capnp::word));
      const std::size_t expected = capnp::expectedSizeInWordsFromPrefix(copy);
      if (expected > words) break;
      capnp::ReaderOptions options;
      options.traversalLimitInWords = 1ull << 30;
      std::string line;
      KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                     capnp::FlatArrayMessageReader reader(copy.slice(0, expected), options);
                     line = describe(reader.getRoot<capnp::rpc::Message>());
                   })) {
        line = std::string("unreadable: ") + exception->getDescription().cStr();
      }
      out.push_back(line);
      pending_.erase(0, expected * sizeof(capnp::word));
    }
  }
  if (closed) out.push_back(pending_.empty() ? "closed" : "closed (with a partial message)");
  return out;
}

std::string describe(capnp::rpc::Message::Reader message) {
  using capnp::rpc::Message;
  switch (message.which()) {
    case Message::UNIMPLEMENTED:
      return "unimplemented";
    case Message::ABORT:
      return std::string("abort: ") + message.getAbort().getReason().cStr();
    case Message::RETURN: {
      auto ret = message.getReturn();
      const std::string head = "return " + std::to_string(ret.getAnswerId());
      switch (ret.which()) {
        case capnp::rpc::Return::RESULTS:
          return head + " results";
        case capnp::rpc::Return::EXCEPTION:
          return head + " exception: " + ret.getException().getReason().cStr();
        case capnp::rpc::Return::CANCELED:
          return head + " canceled";
        default:
          return head + " other";
      }
    }
    case Message::FINISH:
      return "finish " + std::to_string(message.getFinish().getQuestionId());
    case Message::RELEASE:
      return "release";
    case Message::RESOLVE:
      return "resolve";
    case Message::DISEMBARGO:
      return "disembargo";
    case Message::BOOTSTRAP:
      return "bootstrap";
    case Message::CALL:
      return "call";
    default:
      return "message " + std::to_string(static_cast<unsigned>(message.which()));
  }
}

std::string joined(const std::vector<std::string>& replies) {
  std::string text;
  for (const auto& reply : replies) text += (text.empty() ? "" : " | ") + reply;
  return text.empty() ? "(nothing)" : text;
}

bool has_reply_starting(const std::vector<std::string>& replies, const std::string& prefix) {
  for (const auto& reply : replies)
    if (reply.starts_with(prefix)) return true;
  return false;
}

Words to_words(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  const auto flat = capnp::messageToFlatArray(segments);
  Words words(flat.size());
  std::memcpy(words.data(), static_cast<const void*>(flat.begin()), flat.size() * sizeof(capnp::word));
  return words;
}

Words to_words(capnp::MessageBuilder& message) { return to_words(message.getSegmentsForOutput()); }

uint64_t struct_pointer(int32_t offset, uint16_t data_words, uint16_t pointers) {
  return static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2) | (static_cast<uint64_t>(data_words) << 32) |
         (static_cast<uint64_t>(pointers) << 48);
}

uint64_t list_pointer(int32_t offset, uint8_t element_size, uint32_t count) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2) | 1) |
         (static_cast<uint64_t>((count << 3) | element_size) << 32);
}

Words single_segment(const Words& segment) {
  Words words = {static_cast<uint64_t>(segment.size()) << 32};  // segment count - 1 = 0, then the size
  words.insert(words.end(), segment.begin(), segment.end());
  return words;
}

// ---------------------------------------------------------------------------------------------

namespace {

// One bootstrap and one call on `connected`, with a fresh event loop (the tests fork: none may
// outlive the call).
template <class Call>
std::string with_client(UniqueFd connected, Call call) {
  if (!connected) return "failed: not connected";
  auto io = kj::setupAsyncIo();
  std::string said;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 auto stream = io.lowLevelProvider->wrapSocketFd(connected.release(),
                                                                 kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
                 capnp::TwoPartyClient client(*stream);
                 said = call(client.bootstrap(), io);
               })) {
    said = std::string("failed: ") + exception->getDescription().cStr();
  }
  return said;
}

UniqueFd connected_to(const std::string& path) { return connect_unix(path).fd; }

}  // namespace

std::string worker_status(UniqueFd connected) {
  return with_client(std::move(connected), [](capnp::Capability::Client bootstrap, kj::AsyncIoContext& io) {
    auto request = bootstrap.castAs<rpc::Worker>().statusRequest();
    auto response = io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, request.send()).wait(io.waitScope);
    auto status = response.getStatus();
    const auto names = capnp::Schema::from<rpc::ServiceState>().getEnumerants();
    const auto state = names[static_cast<unsigned>(status.getState())];
    return "state=" + std::string(state.getProto().getName().cStr()) + " hash=" + status.getHash().cStr();
  });
}

std::string worker_status(const std::string& socket_path) { return worker_status(connected_to(socket_path)); }

std::string supervisor_services(UniqueFd connected) {
  return with_client(std::move(connected), [](capnp::Capability::Client bootstrap, kj::AsyncIoContext& io) {
    auto request = bootstrap.castAs<rpc::Supervisor>().listServicesRequest();
    auto response = io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, request.send()).wait(io.waitScope);
    std::string text;
    for (auto info : response.getServices()) {
      text += (text.empty() ? "" : " ") + std::string(info.getName().cStr()) + ":" +
              worker_state_name(info.getWorkerState()) + ":" + std::to_string(info.getWorkerPid());
    }
    return text;
  });
}

std::string supervisor_services(const std::string& socket_path) {
  return supervisor_services(connected_to(socket_path));
}

}  // namespace pgod::isolation
