#include "daemon.h"

#include <fmt/format.h>
#include <http_parser.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "system_call.h"

namespace pgod::dockergate {

std::string encode_component(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string encode_query(const Query& query) {
  std::string out;
  for (const auto& [key, value] : query) {
    out += out.empty() ? "" : "&";
    out += encode_component(key) + "=" + encode_component(value);
  }
  return out;
}

std::string render_request(const OutgoingRequest& request) {
  std::string head = request.method + " " + request.path;
  if (!request.query.empty()) head += "?" + encode_query(request.query);
  // The Host dockerd sees is fixed: nothing of the client's reaches the daemon unjudged.
  head += " HTTP/1.1\r\nHost: docker\r\nUser-Agent: pgod-dockergate\r\n";
  for (const auto& [name, value] : request.headers) head += name + ": " + value + "\r\n";
  if (request.upgrade)
    head += "Connection: Upgrade\r\nUpgrade: tcp\r\n";
  else
    head += "Connection: close\r\n";
  if (request.stream_body) {
    head += "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n";
    return head;
  }
  if (request.json_body) head += "Content-Type: application/json\r\n";
  if (request.json_body || request.method == "POST" || request.method == "PUT")
    head += fmt::format("Content-Length: {}\r\n", request.body.size());
  head += "\r\n";
  head += request.body;
  return head;
}

Expected<UniqueFd, std::string> connect_unix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return Unexpected{fmt::format("{}: the path is too long", path)};
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Unexpected{os_error("socket(AF_UNIX)", path, errno)};
  if (retry_eintr([&] { return connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address); }) != 0)
    return Unexpected{os_error("connect", path, errno)};
  return fd;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t wrote = retry_eintr([&] { return send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL); });
    if (wrote <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(wrote));
  }
  return true;
}

namespace {

struct ReplyState {
  DaemonReply reply;
  std::size_t max_body = 0;
  bool too_large = false;
  bool complete = false;
};

int on_body(http_parser* parser, const char* at, std::size_t length) {
  auto* state = static_cast<ReplyState*>(parser->data);
  if (state->reply.body.size() + length > state->max_body) {
    state->too_large = true;
    return 1;
  }
  state->reply.body.append(at, length);
  return 0;
}

int on_complete(http_parser* parser) {
  auto* state = static_cast<ReplyState*>(parser->data);
  state->reply.status = static_cast<int>(parser->status_code);
  state->complete = true;
  return 0;
}

}  // namespace

Expected<DaemonReply, std::string> read_reply(int fd, std::size_t max_body) {
  http_parser_settings settings{};
  settings.on_body = on_body;
  settings.on_message_complete = on_complete;
  http_parser parser{};
  http_parser_init(&parser, HTTP_RESPONSE);
  ReplyState state;
  state.max_body = max_body;
  parser.data = &state;
  std::array<char, 16384> buffer{};
  while (!state.complete) {
    const ssize_t got = retry_eintr([&] { return recv(fd, buffer.data(), buffer.size(), 0); });
    if (got < 0) return Unexpected{os_error("recv", "the docker socket", errno)};
    // At end of stream the parser is told too: a reply without a length ends there.
    const std::size_t used = http_parser_execute(&parser, &settings, buffer.data(), static_cast<std::size_t>(got));
    if (state.too_large) return Unexpected{fmt::format("dockerd's reply is larger than {} bytes", max_body)};
    if (parser.http_errno != HPE_OK || used != static_cast<std::size_t>(got))
      return Unexpected{fmt::format("dockerd's reply: {}", http_errno_description(HTTP_PARSER_ERRNO(&parser)))};
    if (got == 0 && !state.complete) return Unexpected{std::string("dockerd closed the connection before replying")};
  }
  return std::move(state.reply);
}

Expected<DaemonReply, std::string> ask_daemon(const std::string& socket_path, const std::string& path,
                                              std::size_t max_body) {
  auto fd = connect_unix(socket_path);
  if (!fd) return Unexpected{fd.error()};
  OutgoingRequest request;
  request.method = "GET";
  request.path = path;
  if (!write_all(fd->get(), render_request(request))) return Unexpected{os_error("send", socket_path, errno)};
  return read_reply(fd->get(), max_body);
}

}  // namespace pgod::dockergate
