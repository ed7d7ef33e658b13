#include "gate.h"

#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <semaphore>
#include <span>
#include <system_error>
#include <thread>

#include "daemon.h"
#include "daemon_owner.h"
#include "http_request.h"
#include "judge.h"
#include "routes.h"
#include "strict_json.h"
#include "system_call.h"

namespace pgod::dockergate {
namespace {

constexpr std::size_t kMaxJsonBody = 1 << 20;  // a container create with a large environment
// A parsed body takes tens of times its size: bodies are read and judged a few at a time across
// every service, so that no service can take the gate's memory; the others wait their turn (compose
// sends its creates in parallel and does not retry), for a while.
std::counting_semaphore<4> json_turns(4);
constexpr auto kJsonTurnWait = std::chrono::seconds(60);

// Held while a JSON body is read, parsed and judged.
class JsonTurn {
 public:
  explicit JsonTurn(bool wanted)
      : refused_(wanted && !json_turns.try_acquire_for(kJsonTurnWait)), held_(wanted && !refused_) {}
  ~JsonTurn() { give_back(); }
  JsonTurn(const JsonTurn&) = delete;
  JsonTurn& operator=(const JsonTurn&) = delete;
  bool refused() const { return refused_; }
  void give_back() {
    if (held_) json_turns.release();
    held_ = false;
  }

 private:
  const bool refused_;
  bool held_;
};
constexpr std::size_t kMaxRegistryHeader = 64 << 10;  // base64 JSON credentials
constexpr std::size_t kMaxListReply = 32 << 20;

std::string_view reason_phrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// docker clients show the "message" field of an error reply.
void answer(int fd, int status, const std::string& message) {
  const std::string body = Json{{"message", message}}.dump();
  const std::string reply = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", status,
      reason_phrase(status), body.size(), body);
  write_all(fd, reply);
}

void answer_json(int fd, const std::string& body) {
  write_all(fd, fmt::format("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
                            "Connection: close\r\n\r\n{}",
                            body.size(), body));
}

bool set_receive_timeout(int fd, int seconds) {
  timeval timeout{seconds, 0};
  return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0;
}

// A registry header is base64 (URL or standard alphabet) of a small JSON document: anything
// else is not passed on.
bool is_registry_header(const std::string& value) {
  if (value.empty() || value.size() > kMaxRegistryHeader) return false;
  return std::all_of(value.begin(), value.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '/' || c == '-' || c == '_' || c == '=';
  });
}

// The path sent on: the route's pattern with each {…} replaced by the resolved value, each
// segment percent-encoded (an image name keeps its slashes).
std::string build_path(const std::string& version, std::string_view pattern, const std::vector<std::string>& values) {
  std::string path = version;
  std::size_t next = 0, at = 1;
  while (at <= pattern.size()) {
    const std::size_t end = std::min(pattern.find('/', at), pattern.size());
    const std::string_view segment = pattern.substr(at, end - at);
    path += '/';
    if (!segment.empty() && segment.front() == '{') {
      const std::string& value = values.at(next++);
      std::size_t start = 0;
      while (true) {
        const std::size_t slash = value.find('/', start);
        path += encode_component(std::string_view(value).substr(start, slash - start));
        if (slash == std::string::npos) break;
        path += '/';
        start = slash + 1;
      }
    } else {
      path += segment;
    }
    at = end + 1;
  }
  return path;
}

// One request being handled: what came in, and what goes out.
struct Exchange {
  const std::string& docker_socket;
  ServedService& served;
  RequestHead head;
  RouteMatch match;
  RequestReader& reader;
  DaemonOwner owner;
  Json body;  // the parsed body, for Body::kJson
  OutgoingRequest out;
  bool filter_networks = false;
  bool filter_images = false;
};

using Prepared = Expected<Done, Refusal>;

Refusal not_found(std::string_view what, const std::string& name) {
  return Refusal{404, fmt::format("No such {}: {} (or not the project's own)", what, name)};
}

Prepared set_json(Exchange& exchange, Expected<Json, Refusal> judged) {
  if (!judged) return Unexpected{judged.error()};
  exchange.out.body = judged->dump();
  exchange.out.json_body = true;
  return Done{};
}

Prepared set_query(Exchange& exchange, Expected<Query, Refusal> judged) {
  if (!judged) return Unexpected{judged.error()};
  exchange.out.query = std::move(*judged);
  return Done{};
}

// The first {…} resolved to the object's full ID by `resolve`, then the path rebuilt.
template <class Resolve>
Prepared resolve_first(Exchange& exchange, std::string_view what, Resolve resolve) {
  auto values = exchange.match.params;
  auto resolved = resolve(values.at(0));
  if (!resolved) return Unexpected{not_found(what, values.at(0))};
  values[0] = *resolved;
  exchange.out.path = build_path(exchange.match.version, exchange.match.route->pattern, values);
  return Done{};
}

Prepared prepare_login(Exchange& exchange) {
  static constexpr const char* kFields[] = {"username",      "password",      "email",
                                            "serveraddress", "identitytoken", "registrytoken"};
  if (!exchange.body.is_object()) return Unexpected{Refusal{400, "the login body must be a JSON object"}};
  Json out = Json::object();
  for (const auto& [key, value] : exchange.body.items()) {
    if (std::find(std::begin(kFields), std::end(kFields), key) == std::end(kFields))
      return Unexpected{Refusal{403, fmt::format("{}: not a login field", key)}};
    if (!value.is_string()) return Unexpected{Refusal{400, fmt::format("{}: expected a string", key)}};
    out[key] = value;
  }
  return set_json(exchange, std::move(out));
}

Prepared prepare_exec_start(Exchange& exchange) {
  if (!exchange.body.is_object()) return Unexpected{Refusal{400, "the exec start body must be a JSON object"}};
  Json out = Json::object();
  for (const auto& [key, value] : exchange.body.items()) {
    if ((key == "Detach" || key == "Tty") && value.is_boolean()) {
      out[key] = value;
    } else if (key == "ConsoleSize" &&
               (value.is_null() || (value.is_array() && value.size() == 2 && value[0].is_number_unsigned() &&
                                    value[1].is_number_unsigned()))) {
      out[key] = value;
    } else {
      return Unexpected{Refusal{403, fmt::format("{}: {}: not an exec start field", key, value.dump())}};
    }
  }
  return set_json(exchange, std::move(out));
}

Prepared prepare_network_list(Exchange& exchange) {
  exchange.filter_networks = true;
  return Done{};
}

// DELETE /containers/{id}?link=true removes a link (by its name, which may be another project's
// container's) instead of the container: only link=false, as docker-py always sends, passes.
Prepared refuse_link_removal(const RequestHead& head) {
  for (const auto& value : head.query_values("link"))
    if (value != "0" && value != "false" && value != "False")
      return Unexpected{Refusal{403, fmt::format("link={}: removing links is refused", value)}};
  return Done{};
}

// The handler of each row (see routes.h).
Prepared prepare(Exchange& exchange) {
  const GateService& service = exchange.served.service;
  JudgeContext context{service, exchange.owner};
  switch (exchange.match.route->handler) {
    case Handler::kPlain:
      return Done{};
    case Handler::kImageList:
      exchange.filter_images = true;
      return Done{};
    case Handler::kImage:
      if (exchange.owner.is_other_projects_image(exchange.match.params.at(0)))
        return Unexpected{not_found("image", exchange.match.params.at(0))};
      return Done{};
    case Handler::kLogin:
      return prepare_login(exchange);
    case Handler::kScopedList:
      return set_query(exchange, scope_list_query(context, exchange.head.query));
    case Handler::kNetworkList:
      return prepare_network_list(exchange);
    case Handler::kContainerCreate: {
      // Another project's built image may hold what it baked in (its .env, its keys).
      if (const auto image = exchange.body.find("Image");
          exchange.body.is_object() && image != exchange.body.end() && image->is_string() &&
          exchange.owner.is_other_projects_image(image->get<std::string>()))
        return Unexpected{Refusal{403, "Image: " + image->dump() + ": another project's image is refused"}};
      const auto names = exchange.head.query_values("name");
      return set_json(exchange, judge_container_create(context, exchange.body, names.empty() ? "" : names.front()));
    }
    case Handler::kOwnContainer:
      if (auto link = refuse_link_removal(exchange.head); !link) return link;
      return resolve_first(exchange, "container",
                           [&](const std::string& id) { return exchange.owner.own_container(id); });
    case Handler::kRename: {
      const auto names = exchange.head.query_values("name");
      if (names.size() != 1 || !is_own_container_name(service.project, names.front()))
        return Unexpected{Refusal{403, "query name: a container may only be renamed to its project's own names"}};
      return resolve_first(exchange, "container",
                           [&](const std::string& id) { return exchange.owner.own_container(id); });
    }
    case Handler::kOwnContainerMount: {
      std::optional<Json> inspected;
      if (auto own = resolve_first(exchange, "container",
                                   [&](const std::string& id) -> std::optional<std::string> {
                                     inspected = exchange.owner.own_container_json(id);
                                     if (!inspected) return std::nullopt;
                                     return inspected->value("Id", std::string());
                                   });
          !own)
        return own;
      if (auto unmoved = judge_bind_sources_unmoved(context, *inspected); !unmoved) return Unexpected{unmoved.error()};
      return Done{};
    }
    case Handler::kExecCreate:
      if (auto own = resolve_first(exchange, "container",
                                   [&](const std::string& id) { return exchange.owner.own_container(id); });
          !own)
        return own;
      return set_json(exchange, judge_exec_create(context, exchange.body));
    case Handler::kOwnExec:
      if (auto own = resolve_first(exchange, "exec instance",
                                   [&](const std::string& id) { return exchange.owner.own_exec(id); });
          !own)
        return own;
      return exchange.match.route->body == Body::kJson ? prepare_exec_start(exchange) : Prepared(Done{});
    case Handler::kNetworkCreate:
      return set_json(exchange, judge_network_create(context, exchange.body));
    case Handler::kNetworkInspect:
      return resolve_first(exchange, "network",
                           [&](const std::string& id) { return exchange.owner.network(id, true); });
    case Handler::kOwnNetwork:
      return resolve_first(exchange, "network",
                           [&](const std::string& id) { return exchange.owner.network(id, false); });
    case Handler::kNetworkConnect: {
      const std::string written = exchange.match.params.at(0);  // as the client named it: judged by that name
      if (auto may = resolve_first(exchange, "network",
                                   [&](const std::string& id) { return exchange.owner.network(id, true); });
          !may)
        return may;
      return set_json(exchange, judge_network_connect(context, exchange.body, written));
    }
    case Handler::kVolumeCreate:
      return set_json(exchange, judge_volume_create(context, exchange.body));
    case Handler::kOwnVolume:
      return resolve_first(exchange, "volume",
                           [&](const std::string& name) { return exchange.owner.own_volume(name); });
    case Handler::kBuild:
      return set_query(exchange, judge_build_query(context, exchange.head.query));
    case Handler::kTag:
      if (exchange.owner.is_other_projects_image(exchange.match.params.at(0)))
        return Unexpected{not_found("image", exchange.match.params.at(0))};
      return set_query(exchange, judge_tag_query(context, exchange.head.query));
    case Handler::kPull:
      return set_query(exchange, judge_pull_query(context, exchange.head.query));
  }
  return Unexpected{Refusal{500, "no handler"}};
}

// Query keys outside the row's list are refused before any handler runs.
Prepared check_query_keys(const Route& route, const RequestHead& head) {
  if (route.query == "*") return Done{};
  for (const auto& [key, value] : head.query) {
    bool listed = false;
    std::string_view keys = route.query;
    while (!keys.empty() && !listed) {
      const std::size_t space = keys.find(' ');
      listed = keys.substr(0, space) == key;
      keys = space == std::string_view::npos ? std::string_view() : keys.substr(space + 1);
    }
    if (!listed)
      return Unexpected{Refusal{
          403, fmt::format("{} {}: the query parameter \"{}\" is not allowed", route.method, route.pattern, key)}};
  }
  return Done{};
}

// The body as the row wants it: none, a strictly parsed JSON document, or a stream read later.
Prepared read_request_body(Exchange& exchange) {
  const RequestHead& head = exchange.head;
  const bool has_body = head.chunked || head.content_length.value_or(0) > 0;
  switch (exchange.match.route->body) {
    case Body::kNone:
      if (has_body) return Unexpected{Refusal{400, "this call takes no body"}};
      return Done{};
    case Body::kStream:
      return Done{};
    case Body::kJson: {
      if (!has_body) {
        exchange.body = Json::object();
        return Done{};
      }
      auto text = exchange.reader.read_whole_body(kMaxJsonBody);
      if (!text) return Unexpected{text.error()};
      auto parsed = parse_strict_json(*text);
      if (!parsed) return Unexpected{Refusal{400, "the body: " + parsed.error()}};
      exchange.body = std::move(*parsed);
      return Done{};
    }
  }
  return Done{};
}

// Credentials and build settings travel in headers: passed on only where the row uses them.
Prepared pass_headers(Exchange& exchange) {
  const Handler handler = exchange.match.route->handler;
  for (const char* name : {"x-registry-auth", "x-registry-config"}) {
    const std::string* value = exchange.head.header(name);
    if (value == nullptr) continue;
    const bool wanted =
        (std::string_view(name) == "x-registry-auth" && (handler == Handler::kPull || handler == Handler::kPlain)) ||
        (std::string_view(name) == "x-registry-config" && handler == Handler::kBuild);
    if (!wanted) continue;  // dropped: this call has no use for it
    if (!is_registry_header(*value)) return Unexpected{Refusal{400, fmt::format("{}: not base64", name)}};
    exchange.out.headers.emplace_back(
        std::string_view(name) == "x-registry-auth" ? "X-Registry-Auth" : "X-Registry-Config", *value);
  }
  return Done{};
}

// Streams the client's body to dockerd in chunks of our own making.
bool stream_body(RequestReader& reader, int daemon) {
  std::string piece;
  while (true) {
    auto more = reader.read_body(piece);
    if (!more) return false;
    if (!piece.empty() && !write_all(daemon, fmt::format("{:x}\r\n", piece.size()) + piece + "\r\n")) return false;
    if (!*more) return write_all(daemon, "0\r\n\r\n");
  }
}

// dockerd flushes a log stream a line at a time. Relayed piece by piece, each few KiB cost the
// gate a poll, a recv and a send and woke the client once more: the gate used three times the
// CPU of a stream relayed in larger pieces, and `docker logs` of 64 MiB ran at 0.72-0.84x of
// dockerd's socket (dockergate_bench 1 64 5 1 1). So once a reply is long (past kLongReply: a
// log, an export, a pull's progress, a large list), a short piece waits up to twice
// kGatherPause for more before it is sent: when dockerd is the slower side, waiting costs
// nothing but that latency, and when it is the faster one, pieces are long and nothing waits.
// Streams after a 101 (attach, exec) are interactive and never wait.
constexpr std::size_t kLongReply = std::size_t{256} << 10;
constexpr timespec kGatherPause{0, 500'000};
constexpr int kGatherPauses = 2;

}  // namespace

std::size_t gather_more(int daemon, std::span<char> buffer, std::size_t got) {
  for (int pause = 0; pause < kGatherPauses && got < kGatherEnough && got < buffer.size(); ++pause) {
    if (ppoll(nullptr, 0, &kGatherPause, nullptr) < 0 && errno != EINTR) break;
    const ssize_t more =
        retry_eintr([&] { return recv(daemon, buffer.data() + got, buffer.size() - got, MSG_DONTWAIT); });
    if (more <= 0) break;
    got += static_cast<std::size_t>(more);
  }
  return got;
}

namespace {

// Copies dockerd's reply (and, after a 101, the client's stream the other way) until one side
// ends. The client's side is watched even when it should send nothing: its hang-up ends the
// call on dockerd (a followed log, an attach).
void relay(int client, int daemon, std::string client_early, bool upgrade) {
  std::array<char, 65536> buffer{};
  bool client_open = true;  // still reading from the client
  bool upgraded = false;    // dockerd said 101: the client's bytes go to dockerd
  std::string first_line;   // dockerd's status line, to see the 101
  std::size_t relayed = 0;  // bytes of dockerd's reply so far
  while (true) {
    // A client whose stdin ended is not watched again (its hang-up would be reported on every
    // poll); a write to it that fails ends the relay instead.
    std::array<pollfd, 2> fds{{{daemon, POLLIN, 0}, {client_open ? client : -1, POLLIN | POLLRDHUP, 0}}};
    if (retry_eintr([&] { return poll(fds.data(), fds.size(), -1); }) < 0) return;
    if (fds[1].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
      if (!upgraded) {
        // Before an upgrade the client has nothing to say: bytes or a hang-up both end it.
        return;
      }
      const ssize_t got = retry_eintr([&] { return recv(client, buffer.data(), buffer.size(), 0); });
      if (got <= 0) {
        client_open = false;
        shutdown(daemon, SHUT_WR);  // stdin ended: the container sees EOF
        if (got < 0) return;
      } else if (!write_all(daemon, std::string_view(buffer.data(), static_cast<std::size_t>(got)))) {
        return;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t got = retry_eintr([&] { return recv(daemon, buffer.data(), buffer.size(), 0); });
      if (got <= 0) return;  // the reply (or the stream) ended
      std::size_t length = static_cast<std::size_t>(got);
      if (!upgraded && relayed >= kLongReply) length = gather_more(daemon, buffer, length);
      relayed += length;
      const std::string_view bytes(buffer.data(), length);
      if (upgrade && !upgraded && first_line.find('\n') == std::string::npos) {
        first_line.append(bytes.substr(0, 64));
        if (first_line.find('\n') != std::string::npos && first_line.rfind("HTTP/1.1 101", 0) == 0) {
          upgraded = true;
          if (!client_early.empty() && !write_all(daemon, client_early)) return;
        }
      }
      if (!write_all(client, bytes)) return;
    }
  }
}

// The list entries carry their name and labels: the project's own networks and the external
// ones pgo.toml allows stay, the others are not shown.
Json visible_networks(const GateService& service, const Json& list) {
  Json kept = Json::array();
  const auto& allowed = service.allowed_networks;
  for (const auto& network : list) {
    if (!network.is_object()) continue;
    const auto name = network.find("Name");
    const auto labels = network.find("Labels");
    const bool own = labels != network.end() && labels->is_object() &&
                     labels->value("com.docker.compose.project", Json()) == Json(service.project);
    const bool listed = name != network.end() && name->is_string() &&
                        std::find(allowed.begin(), allowed.end(), name->get<std::string>()) != allowed.end();
    if (own || listed) kept.push_back(network);
  }
  return kept;
}

// The images another served project built or tagged under its names are not shown.
Json visible_images(const GateService& service, const Json& list) {
  Json kept = Json::array();
  for (const auto& image : list) {
    if (!image.is_object()) continue;
    std::vector<std::string> tags;
    if (const auto listed = image.find("RepoTags"); listed != image.end() && listed->is_array())
      for (const auto& tag : *listed)
        if (tag.is_string()) tags.push_back(tag.get<std::string>());
    if (!is_other_projects_image(service, tags)) kept.push_back(image);
  }
  return kept;
}

void finish(Exchange& exchange, int client) {
  auto daemon = connect_unix(exchange.docker_socket);
  if (!daemon) {
    exchange.served.log->error("the docker socket: {}", daemon.error());
    return answer(client, 502, "the docker gate cannot reach dockerd");
  }
  if (!write_all(daemon->get(), render_request(exchange.out))) return answer(client, 502, "dockerd went away");
  if (exchange.out.stream_body && !stream_body(exchange.reader, daemon->get())) return;
  if (exchange.filter_images) {
    auto reply = read_reply(daemon->get(), kMaxListReply);
    if (!reply || reply->status != 200) return answer(client, 502, "dockerd did not list the images");
    Json list = Json::parse(reply->body, nullptr, false);
    if (!list.is_array()) return answer(client, 502, "dockerd did not list the images");
    return answer_json(client, visible_images(exchange.served.service, list).dump());
  }
  if (exchange.filter_networks) {
    auto reply = read_reply(daemon->get(), kMaxListReply);
    if (!reply || reply->status != 200) return answer(client, 502, "dockerd did not list the networks");
    Json list = Json::parse(reply->body, nullptr, false);
    if (!list.is_array()) return answer(client, 502, "dockerd did not list the networks");
    return answer_json(client, visible_networks(exchange.served.service, list).dump());
  }
  auto early = exchange.reader.take_leftover();
  if (!early) return answer(client, early.error().status, early.error().reason);
  relay(client, daemon->get(), std::move(*early), exchange.out.upgrade);
}

}  // namespace

void serve_connection(const std::string& docker_socket, ServedService& served, UniqueFd client,
                      const GateLimits& limits) {
  const int fd = client.get();
  set_receive_timeout(fd, limits.head_timeout_seconds);
  RequestReader reader(
      [fd](char* buffer, std::size_t size) -> long { return retry_eintr([&] { return recv(fd, buffer, size, 0); }); });
  auto head = reader.read_head();
  if (!head) {
    served.log->warn("refused a request: {}", head.error().reason);
    return answer(fd, head.error().status, head.error().reason);
  }
  // Copied: the head moves into the exchange below, and later refusals still name the call.
  const std::string method = head->method, path = head->path;
  auto refuse = [&](const Refusal& refusal) {
    served.log->warn("refused {} {}: {}", method, path, refusal.reason);
    answer(fd, refusal.status, refusal.reason);
  };
  auto match = match_route(head->method, head->path);
  if (!match) return refuse(match.error());
  Exchange exchange{docker_socket,
                    served,
                    std::move(*head),
                    std::move(*match),
                    reader,
                    DaemonOwner(docker_socket, served.service),
                    Json(),
                    OutgoingRequest(),
                    false,
                    false};
  const Route& route = *exchange.match.route;
  exchange.out.method = std::string(route.method);
  exchange.out.path = build_path(exchange.match.version, route.pattern, exchange.match.params);
  exchange.out.query = exchange.head.query;
  exchange.out.stream_body = route.body == Body::kStream;
  exchange.out.upgrade = route.upgrade && exchange.head.upgrade;
  if (exchange.head.upgrade && !route.upgrade) return refuse(Refusal{400, "this call cannot switch protocols"});
  if (auto listed = check_query_keys(route, exchange.head); !listed) return refuse(listed.error());
  JsonTurn turn(route.body == Body::kJson);
  if (turn.refused()) return refuse(Refusal{503, "the docker gate is judging other requests: try again"});
  if (auto read = read_request_body(exchange); !read) return refuse(read.error());
  if (auto passed = pass_headers(exchange); !passed) return refuse(passed.error());
  if (auto prepared = prepare(exchange); !prepared) return refuse(prepared.error());
  exchange.body = Json();  // judged and re-emitted as text: the parsed tree goes, and the turn
  turn.give_back();
  set_receive_timeout(fd, 0);  // from here the relay waits with poll, for as long as the call lasts
  served.log->debug("{} {}", exchange.out.method, exchange.out.path);
  finish(exchange, fd);
}

void accept_one(const std::string& docker_socket, ServedService& served, int listener, const GateLimits& limits) {
  UniqueFd client(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!client) return;
  if (served.connections.fetch_add(1) >= limits.max_connections_per_service) {
    served.connections.fetch_sub(1);
    served.log->warn("more than {} connections at once: refused one", limits.max_connections_per_service);
    return answer(client.get(), 503, "too many connections to the docker gate at once");
  }
  // The thread owns the connection once it runs; until then this does (a thread may not be had).
  const int fd = client.release();
  try {
    std::thread([&docker_socket, &served, &limits, fd]() {
      serve_connection(docker_socket, served, UniqueFd(fd), limits);
      served.connections.fetch_sub(1);
    }).detach();
  } catch (const std::system_error& error) {
    const UniqueFd owned(fd);
    served.connections.fetch_sub(1);
    served.log->error("cannot start a thread for a connection: {}", error.what());
    answer(fd, 503, "the docker gate cannot take the call now: try again");
  }
}

}  // namespace pgod::dockergate
