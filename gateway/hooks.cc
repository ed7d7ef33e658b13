// GCC 12 at -O2 reports maybe-uninitialized inside KJ 0.9's ExceptionOr<T> for promises of
// std::string-holding types: a known false positive of that pairing, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "hooks.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <kj/compat/http.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <map>
#include <optional>
#include <set>
#include <string>

#include "backends.h"
#include "hook_request.h"
#include "service_name.h"

namespace pgod::gateway {
namespace {

// A forge sends one delivery per connection and waits up to 10 s (GitHub) for the answer;
// slow or idle connections are not worth holding (KJ 0.9 keeps a connection open after the
// answer even when the request said Connection: close, until this idle time-out).
constexpr std::size_t kMaxHookConnections = 16;
constexpr kj::Duration kHeaderTimeout = 5 * kj::SECONDS;
constexpr kj::Duration kIdleTimeout = 1 * kj::SECONDS;
constexpr kj::Duration kBodyDeadline = 10 * kj::SECONDS;
constexpr kj::Duration kAnswerDeadline = 10 * kj::SECONDS;
// Pushes a service's worker is poked for: five at once, then one every 12 s (the worker folds
// pokes that arrive while one waits into it anyway). A push past that is not lost: one poke is
// held back until the next 12 s have passed, and later pushes join it.
constexpr unsigned kPushBurst = 5;
constexpr auto kPushRefill = std::chrono::seconds(12);
// Deliveries that fail to authenticate: past twenty a minute a service's hook answers 429
// without asking the supervisor for its secret, and the log says so once.
constexpr unsigned kFailureBurst = 20;
constexpr auto kFailureRefill = std::chrono::seconds(3);

struct Peer {
  std::string address = "unknown";
  bool loopback = false;
};

// The last address of an X-Forwarded-For list, when it is one.
std::optional<std::string> forwarded_client(std::string_view list) {
  const auto comma = list.rfind(',');
  std::string last(comma == std::string_view::npos ? list : list.substr(comma + 1));
  last.erase(0, last.find_first_not_of(' '));
  last.erase(last.find_last_not_of(' ') + 1);
  in6_addr v6{};
  in_addr v4{};
  if (last.empty() || (inet_pton(AF_INET, last.c_str(), &v4) != 1 && inet_pton(AF_INET6, last.c_str(), &v6) != 1))
    return std::nullopt;
  return last;
}

Peer peer_of(kj::AsyncIoStream& stream) {
  sockaddr_storage address{};
  kj::uint length = sizeof address;
  Peer peer;
  stream.getpeername(reinterpret_cast<sockaddr*>(&address), &length);
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    peer.address = text;
    peer.loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  } else if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    peer.address = text;
    peer.loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr) != 0;
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      peer.address = peer.address.substr(peer.address.rfind(':') + 1);
      peer.loopback = v6->sin6_addr.s6_addr[12] == 127;
    }
  }
  return peer;
}

// The headers a delivery is judged by, registered once.
struct HeaderIds {
  explicit HeaderIds(kj::HttpHeaderTable::Builder& builder)
      : github_event(builder.add("X-GitHub-Event")),
        gitea_event(builder.add("X-Gitea-Event")),
        forgejo_event(builder.add("X-Forgejo-Event")),
        gitlab_event(builder.add("X-Gitlab-Event")),
        github_delivery(builder.add("X-GitHub-Delivery")),
        gitea_delivery(builder.add("X-Gitea-Delivery")),
        forgejo_delivery(builder.add("X-Forgejo-Delivery")),
        gitlab_delivery(builder.add("X-Gitlab-Event-UUID")),
        hub_signature_256(builder.add("X-Hub-Signature-256")),
        gitea_signature(builder.add("X-Gitea-Signature")),
        forgejo_signature(builder.add("X-Forgejo-Signature")),
        gitlab_token(builder.add("X-Gitlab-Token")),
        forwarded_proto(builder.add("X-Forwarded-Proto")),
        forwarded_for(builder.add("X-Forwarded-For")),
        allow(builder.add("Allow")) {}

  kj::HttpHeaderId github_event, gitea_event, forgejo_event, gitlab_event;
  kj::HttpHeaderId github_delivery, gitea_delivery, forgejo_delivery, gitlab_delivery;
  kj::HttpHeaderId hub_signature_256, gitea_signature, forgejo_signature, gitlab_token;
  kj::HttpHeaderId forwarded_proto, forwarded_for, allow;

  HookHeaders read(const kj::HttpHeaders& headers) const {
    auto get = [&headers](kj::HttpHeaderId id) {
      KJ_IF_MAYBE (value, headers.get(id)) {
        return std::string(value->cStr(), value->size());
      }
      return std::string();
    };
    return {get(github_event),      get(gitea_event),     get(forgejo_event),     get(gitlab_event),
            get(github_delivery),   get(gitea_delivery),  get(forgejo_delivery),  get(gitlab_delivery),
            get(hub_signature_256), get(gitea_signature), get(forgejo_signature), get(gitlab_token),
            get(forwarded_proto)};
  }
};

class LoggedErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    spdlog::warn("push hook: a held-back pull failed: {}", printable_prefix(e.getDescription().cStr(), 300));
  }
};

// What every connection shares: the tables, the limits, the backends.
struct Desk {
  Desk(kj::Timer& timer_in, Backends& backends_in) : timer(timer_in), backends(backends_in), ids(builder) {
    table = builder.build();
  }

  kj::Timer& timer;
  Backends& backends;
  kj::HttpHeaderTable::Builder builder;
  HeaderIds ids;
  kj::Own<kj::HttpHeaderTable> table;
  RecentDeliveries deliveries;
  RateLimiter pushes{kPushBurst, kPushRefill};
  RateLimiter failures{kFailureBurst, kFailureRefill};
  std::map<std::string, bool, std::less<>> failures_logged;  // service → "refusing" said
  std::set<std::string, std::less<>> held_back;              // services with a poke waiting for the limit
  LoggedErrors errors;
  kj::TaskSet later{errors};  // last: its tasks use everything above

  // The worker's poke for `service`, `kPushRefill` from now, unless one already waits: whether
  // this call queued it.
  bool hold_back(const std::string& service, std::string source) {
    if (!held_back.insert(service).second) return false;
    later.add(timer.afterDelay(std::chrono::duration_cast<std::chrono::seconds>(kPushRefill).count() * kj::SECONDS)
                  .then([this, service, source = std::move(source)]() {
                    held_back.erase(service);
                    if (!backends.has_service(service)) return kj::Promise<void>(kj::READY_NOW);
                    auto request = backends.worker(service).pushedRequest();
                    request.setSource(source);
                    spdlog::info("[{}] push hook: the pull held back by the rate limit is queued now", service);
                    return request.send().ignoreResult();
                  }));
    return true;
  }
};

struct Answer {
  unsigned status;
  kj::StringPtr reason;
  std::string body;
};

Answer answer(unsigned status, kj::StringPtr reason, std::string body) {
  return {status, reason, std::move(body) + "\n"};
}

class HookService final : public kj::HttpService {
 public:
  HookService(Desk& desk, Peer peer) : desk_(desk), peer_(std::move(peer)) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream& body, Response& response) override {
    std::string_view path(url.cStr(), url.size());
    path = path.substr(0, path.find('?'));
    if (!path.starts_with("/hooks/")) return send(response, answer(404, "Not Found", "not found"));
    const std::string service(path.substr(7));
    if (!is_valid_service_name(service)) return send(response, answer(404, "Not Found", "not found"));
    if (method != kj::HttpMethod::POST) {
      kj::HttpHeaders allow(*desk_.table);
      allow.set(desk_.ids.allow, "POST");
      return send(response, answer(405, "Method Not Allowed", "POST only"), kj::mv(allow));
    }
    KJ_IF_MAYBE (length, body.tryGetLength()) {
      if (*length > kMaxHookBody)
        return refuse(response, service, answer(413, "Payload Too Large", "the body is over 1 MiB"),
                      "its body is over 1 MiB");
    }
    auto hook_headers = desk_.ids.read(headers);
    source_ = peer_.address;
    KJ_IF_MAYBE (forwarded, headers.get(desk_.ids.forwarded_for)) {
      // Only a proxy on this host is believed about who it forwards for, and only in what it
      // added itself: the last address of the list (the client wrote the ones before it).
      const auto client = forwarded_client(std::string_view(forwarded->cStr(), forwarded->size()));
      if (peer_.loopback && client) source_ = *client + " via " + peer_.address;
    }
    auto read = desk_.timer.timeoutAfter(kBodyDeadline, body.readAllBytes(kMaxHookBody + 1));
    return read.then(
        [this, service, hook_headers = kj::mv(hook_headers), &response](kj::Array<kj::byte> bytes) mutable {
          if (bytes.size() > kMaxHookBody)
            return refuse(response, service, answer(413, "Payload Too Large", "the body is over 1 MiB"),
                          "its body is over 1 MiB");
          std::string text(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
          return handle(service, kj::mv(hook_headers), kj::mv(text), response);
        });
  }

 private:
  kj::Promise<void> handle(std::string service, HookHeaders headers, std::string body, Response& response) {
    // The service first: the tables below are keyed by service, and only names from the config
    // may add to them (any other name would let a stranger grow them without end).
    auto known = desk_.backends.has_service(service) ? kj::Promise<void>(kj::READY_NOW) : desk_.backends.refresh_soon();
    return known.then([this, service = kj::mv(service), headers = kj::mv(headers), body = kj::mv(body),
                       &response]() mutable -> kj::Promise<void> {
      if (!desk_.backends.has_service(service))
        return refuse(response, service, answer(404, "Not Found", "no push hook for this service"), "no such service");
      // Only failures spend from this bucket (refuse() below); while it is empty the service's
      // hook answers 429 before its secret is asked for, and the log says so once.
      if (!desk_.failures.allow(service, RateLimiter::Clock::now(), false)) {
        if (!desk_.failures_logged[service])
          spdlog::warn("[{}] push hook: too many deliveries failed to authenticate; answering 429 for a while",
                       service);
        desk_.failures_logged[service] = true;
        return send(response, answer(429, "Too Many Requests", "too many failed deliveries: try again later"));
      }
      if (desk_.failures_logged[service]) spdlog::info("[{}] push hook: taking deliveries again", service);
      desk_.failures_logged[service] = false;
      auto request = desk_.backends.supervisor().hookSettingsRequest();
      request.setName(service);
      return request.send().then([this, service, headers = kj::mv(headers), body = kj::mv(body),
                                  &response](auto reply) mutable -> kj::Promise<void> {
        auto bytes = reply.getSecret();
        std::string secret(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
        if (secret.empty())
          return refuse(response, service, answer(404, "Not Found", "no push hook for this service"),
                        "it has no hook_secret");
        const auto judged = judge_hook(headers, body, secret, reply.getBranch().cStr(), peer_.loopback);
        std::fill(secret.begin(), secret.end(), '\0');
        return act(service, judged, response);
      });
    });
  }

  kj::Promise<void> act(const std::string& service, const HookJudgement& judged, Response& response) {
    const std::string what = fmt::format("{}{}{}", judged.forge.empty() ? "unknown forge" : judged.forge,
                                         judged.delivery.empty() ? "" : ", delivery ", judged.delivery);
    switch (judged.verdict) {
      case HookVerdict::kUnsigned:
      case HookVerdict::kBadSignature:
        return refuse(response, service, answer(401, "Unauthorized", judged.detail),
                      fmt::format("{} ({})", judged.detail, what));
      case HookVerdict::kNeedsTls:
        return refuse(response, service, answer(403, "Forbidden", judged.detail),
                      fmt::format("{} ({})", judged.detail, what));
      default:
        break;
    }
    if (judged.verdict == HookVerdict::kMalformed) {
      spdlog::warn("[{}] push hook from {} ({}): {}", service, source_, what, judged.detail);
      return send(response, answer(400, "Bad Request", judged.detail));
    }
    if (judged.verdict == HookVerdict::kPing) {
      spdlog::info("[{}] push hook from {} ({}): ping", service, source_, what);
      return send(response, answer(200, "OK", "pong"));
    }
    if (judged.verdict == HookVerdict::kIgnored) {
      spdlog::info("[{}] push hook from {} ({}): ignored: {}", service, source_, what, judged.detail);
      return send(response, answer(200, "OK", "ignored: " + judged.detail));
    }
    if (!desk_.deliveries.remember(service, judged.delivery)) {
      spdlog::info("[{}] push hook from {} ({}): delivered before, not acted on again", service, source_, what);
      return send(response, answer(200, "OK", "delivered before: nothing to do"));
    }
    const std::string trigger = fmt::format("push hook ({}) from {}", judged.forge, source_);
    if (!desk_.pushes.allow(service, RateLimiter::Clock::now())) {
      const bool queued = desk_.hold_back(service, trigger);
      const auto note = fmt::format("{} in {} s (rate limit)", queued ? "pull queued" : "a pull was already queued",
                                    kPushRefill.count());
      spdlog::warn("[{}] push hook from {} ({}): over the rate limit: {}", service, source_, what, note);
      return send(response, answer(202, "Accepted", note));
    }
    auto request = desk_.backends.worker(service).pushedRequest();
    request.setSource(trigger);
    return request.send().then(
        [this, service, what, &response](auto reply) {
          const bool queued = reply.getQueued();
          spdlog::info("[{}] push hook from {} ({}): {}", service, source_, what,
                       queued ? "pull queued" : "a pull was already waiting");
          return send(response, answer(202, "Accepted", queued ? "pull queued" : "a pull was already waiting"));
        },
        [this, service, &response](kj::Exception&& e) {
          spdlog::error("[{}] push hook: the worker did not take it: {}", service,
                        printable_prefix(e.getDescription().cStr(), 300));
          return send(response, answer(503, "Service Unavailable", "the service's worker is not running"));
        });
  }

  // A refusal: logged and, for a service of the config, counted against its failure bucket. A
  // name no service has is only a debug line: anyone can make them up.
  kj::Promise<void> refuse(Response& response, const std::string& service, Answer refusal, const std::string& why) {
    const std::string& from = source_.empty() ? peer_.address : source_;
    if (desk_.backends.has_service(service)) {
      desk_.failures.allow(service, RateLimiter::Clock::now());
      spdlog::warn("[{}] push hook from {} refused ({}): {}", service, from, refusal.status, why);
    } else {
      spdlog::debug("push hook for \"{}\" from {} refused ({}): {}", service, from, refusal.status, why);
    }
    return send(response, kj::mv(refusal));
  }

  kj::Promise<void> send(Response& response, Answer reply) {
    return send(response, kj::mv(reply), kj::HttpHeaders(*desk_.table));
  }
  kj::Promise<void> send(Response& response, Answer reply, kj::HttpHeaders headers) {
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; charset=utf-8");
    auto stream = response.send(reply.status, reply.reason, headers, reply.body.size());
    auto owned = kj::heap<std::string>(std::move(reply.body));
    auto write = stream->write(owned->data(), owned->size()).attach(kj::mv(stream), kj::mv(owned));
    return desk_.timer.timeoutAfter(kAnswerDeadline, kj::mv(write));
  }

  Desk& desk_;
  Peer peer_;
  std::string source_;
};

class QuietErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    spdlog::debug("hooks: connection ended: {}", e.getDescription().cStr());
  }
};

struct Server {
  Server(kj::ConnectionReceiver& listener_in, kj::Timer& timer, Backends& backends)
      : listener(listener_in), desk(timer, backends) {}
  kj::ConnectionReceiver& listener;
  Desk desk;
  std::size_t open = 0;
  QuietErrors errors;
  kj::TaskSet connections{errors};
};

kj::HttpServerSettings http_settings() {
  kj::HttpServerSettings settings;
  settings.headerTimeout = kHeaderTimeout;
  settings.pipelineTimeout = kIdleTimeout;
  return settings;
}

kj::Promise<void> accept_loop(Server& server) {
  return server.listener.accept().then([&server](kj::Own<kj::AsyncIoStream> stream) {
    if (server.open >= kMaxHookConnections) {
      spdlog::debug("hooks: refused a connection, {} are open", server.open);
    } else {
      ++server.open;
      // One service and one HTTP server per connection: each knows its peer's address.
      auto service = kj::heap<HookService>(server.desk, peer_of(*stream));
      auto http = kj::heap<kj::HttpServer>(server.desk.timer, *server.desk.table, *service, http_settings());
      auto served = http->listenHttp(kj::mv(stream));
      server.connections.add(
          served.attach(kj::mv(http), kj::mv(service)).attach(kj::defer([&server] { --server.open; })));
    }
    return accept_loop(server);
  });
}

}  // namespace

kj::Promise<void> serve_hooks(kj::ConnectionReceiver& listener, kj::Timer& timer, Backends& backends) {
  auto server = kj::heap<Server>(listener, timer, backends);
  auto& ref = *server;
  return accept_loop(ref).attach(kj::mv(server));
}

}  // namespace pgod::gateway
