#include "metrics.h"

#include <kj/compat/http.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <set>
#include <sstream>

// Only prometheus-cpp's core (metric model, text serializer) is used: its pull Exposer would
// open an AF_INET socket and start threads, both of which the gateway's seccomp filter forbids.
// The core path allocates and locks a mutex, nothing more (no threads, no files).

namespace pgod::gateway {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Ten thousand label sets are a few MB at most; far above what any real configuration produces.
constexpr std::size_t kMaxCommandSeries = 10'000;

constexpr std::array<std::string_view, 12> kRejectReasons = {
    "auth",   "bad_request", "not_found",  "unauthorized", "not_acceptable", "limit",
    "source", "penalty",     "early_drop", "evicted",      "timeout",        "other"};
constexpr std::array<std::string_view, 8> kServiceStates = {"ok",   "frozen",  "rollback", "broken",
                                                            "diff", "stopped", "starting", "unknown"};

// HTTP side. Prometheus keeps one connection per target and scrapes every 15 s by default, so
// the idle time-out outlasts one interval; the request and snapshot deadlines stay under its
// default 10 s scrape time-out plus margin.
constexpr std::size_t kMaxScrapeConnections = 16;
constexpr kj::Duration kHeaderTimeout = 5 * kj::SECONDS;
constexpr kj::Duration kIdleTimeout = 20 * kj::SECONDS;
constexpr kj::Duration kSnapshotDeadline = 10 * kj::SECONDS;
constexpr kj::Duration kWriteDeadline = 10 * kj::SECONDS;

ClientMetric sample(std::vector<ClientMetric::Label> labels, MetricType type, double value) {
  ClientMetric metric;
  metric.label = std::move(labels);
  (type == MetricType::Counter ? metric.counter.value : metric.gauge.value) = value;
  return metric;
}

}  // namespace

struct Metrics::State {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& commands =
      prometheus::BuildCounter()
          .Name("pgo_command_count")
          .Help("Commands executed, by service, command and subcommand.")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& command_errors =
      prometheus::BuildCounter()
          .Name("pgo_command_error_count")
          .Help("Commands that ended with a non-zero exit status, by service, command and subcommand.")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& rejected =
      prometheus::BuildCounter()
          .Name("pgod_gateway_rejected_total")
          .Help("Requests refused before they reached a service, by reason.")
          .Register(registry);
  prometheus::Gauge& connections = prometheus::BuildGauge()
                                       .Name("pgod_gateway_connections")
                                       .Help("SSH connections open now, authenticated or not.")
                                       .Register(registry)
                                       .Add({});
  prometheus::Gauge& pending = prometheus::BuildGauge()
                                   .Name("pgod_gateway_unauthenticated")
                                   .Help("SSH connections not yet authenticated (pending logins) now.")
                                   .Register(registry)
                                   .Add({});
  prometheus::Gauge& refused_sources = prometheus::BuildGauge()
                                           .Name("pgod_gateway_refused_sources")
                                           .Help("Source addresses refused now for their penalty.")
                                           .Register(registry)
                                           .Add({});
  std::array<prometheus::Counter*, kRejectReasons.size()> rejected_by_reason{};

  std::mutex mutex;  // guards the two below; prometheus-cpp locks its own parts
  std::size_t command_series = 0;
  bool cap_logged = false;
};

Metrics::Metrics() : state_(std::make_unique<State>()) {
  // Every reason exists from the start, so rate() and alerts see a 0 rather than no series.
  for (std::size_t i = 0; i < kRejectReasons.size(); ++i)
    state_->rejected_by_reason[i] = &state_->rejected.Add({{"reason", std::string(kRejectReasons[i])}});
}

Metrics::~Metrics() = default;

void Metrics::count_command(std::string_view service, std::string_view cmd, std::string_view subcmd, bool error) {
  const prometheus::Labels labels{
      {"service", std::string(service)}, {"cmd", std::string(cmd)}, {"subcmd", std::string(subcmd)}};
  std::lock_guard lock(state_->mutex);
  if (!state_->commands.Has(labels)) {
    // Past the cap a new label set is not counted at all (existing ones keep counting): a wrong
    // total for a bug's flood of label sets beats unbounded memory. Logged once.
    if (state_->command_series >= kMaxCommandSeries) {
      if (!state_->cap_logged)
        spdlog::warn("metrics: {} command label sets reached; new ones are not counted", kMaxCommandSeries);
      state_->cap_logged = true;
      return;
    }
    ++state_->command_series;
    state_->command_errors.Add(labels);  // the error series starts at 0 beside its total
  }
  state_->commands.Add(labels).Increment();
  if (error) state_->command_errors.Add(labels).Increment();
}

void Metrics::count_rejected(std::string_view reason) {
  const auto* found = std::find(kRejectReasons.begin(), kRejectReasons.end(), reason);
  if (found == kRejectReasons.end()) found = kRejectReasons.end() - 1;  // "other": the set stays fixed
  state_->rejected_by_reason[static_cast<std::size_t>(found - kRejectReasons.begin())]->Increment();
}

void Metrics::set_connections(std::int64_t open) { state_->connections.Set(static_cast<double>(open)); }

void Metrics::set_pending(std::int64_t pending, std::int64_t refused_sources) {
  state_->pending.Set(static_cast<double>(pending));
  state_->refused_sources.Set(static_cast<double>(refused_sources));
}

std::string Metrics::render(const std::vector<ServiceSnapshot>& services) const {
  std::vector<MetricFamily> families = state_->registry.Collect();
  // prometheus-cpp collects from a hash map; sorted, consecutive scrapes diff cleanly.
  for (auto& family : families)
    std::sort(family.metric.begin(), family.metric.end(),
              [](const ClientMetric& a, const ClientMetric& b) { return a.label < b.label; });

  MetricFamily state{"pgo_service_state",
                     "The service's state: 1 for the current one, 0 for the others; unknown when "
                     "its worker did not answer.",
                     MetricType::Gauge,
                     {}};
  MetricFamily git{
      "pgo_service_git_info", "The commit the service's checkout is at (always 1).", MetricType::Gauge, {}};
  MetricFamily restarts{
      "pgod_worker_restarts_total", "Times the supervisor restarted the service's worker.", MetricType::Counter, {}};
  MetricFamily up{
      "pgod_worker_up", "1 when the service's worker is running and answered this scrape.", MetricType::Gauge, {}};
  std::set<std::string_view> seen;  // a service listed twice would make the whole scrape invalid
  for (const auto& service : services) {
    if (!seen.insert(service.name).second) continue;
    // Any word outside the fixed set counts as unknown, so the label's values stay bounded.
    std::string_view current = "unknown";
    if (service.worker_answered &&
        std::find(kServiceStates.begin(), kServiceStates.end(), service.state) != kServiceStates.end())
      current = service.state;
    for (auto word : kServiceStates)
      state.metric.push_back(sample({{"service", service.name}, {"state", std::string(word)}}, MetricType::Gauge,
                                    word == current ? 1 : 0));
    if (!service.hash.empty())
      git.metric.push_back(sample({{"service", service.name}, {"hash", service.hash}}, MetricType::Gauge, 1));
    restarts.metric.push_back(sample({{"service", service.name}}, MetricType::Counter, service.worker_restarts));
    up.metric.push_back(sample({{"service", service.name}}, MetricType::Gauge,
                               service.worker_state == "running" && service.worker_answered ? 1 : 0));
  }
  for (auto* family : {&state, &git, &restarts, &up}) families.push_back(std::move(*family));
  // As prometheus-cpp's own families: no samples, no HELP and TYPE either.
  std::erase_if(families, [](const MetricFamily& family) { return family.metric.empty(); });

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

namespace {

using Snapshot = std::function<kj::Promise<std::vector<ServiceSnapshot>>()>;

class MetricsService final : public kj::HttpService {
 public:
  MetricsService(kj::Timer& timer, const Metrics& metrics, Snapshot snapshot)
      : timer_(timer), metrics_(metrics), snapshot_(std::move(snapshot)) {
    kj::HttpHeaderTable::Builder builder;
    allow_ = builder.add("Allow");
    table_ = builder.build();
  }

  const kj::HttpHeaderTable& table() const { return *table_; }

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&, kj::AsyncInputStream&,
                            Response& response) override {
    std::string_view path(url.cStr(), url.size());
    path = path.substr(0, path.find('?'));
    if (path != "/metrics") return send(response, 404, "Not Found", "not found\n");
    if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD) {
      kj::HttpHeaders headers(*table_);
      headers.set(allow_, "GET, HEAD");
      return send(response, 405, "Method Not Allowed", "method not allowed\n", kj::mv(headers));
    }
    auto services = timer_.timeoutAfter(kSnapshotDeadline, kj::evalNow([this] { return snapshot_(); }));
    return services.then(
        [this, method, &response](std::vector<ServiceSnapshot> services) {
          if (failing_) spdlog::info("metrics: scrapes work again");
          failing_ = false;
          kj::HttpHeaders headers(*table_);
          headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
          return send(response, 200, "OK", metrics_.render(services), kj::mv(headers), method == kj::HttpMethod::HEAD);
        },
        [this, &response](kj::Exception&& e) {
          // One line per run of failures, not one per scrape: Prometheus retries every interval.
          if (!failing_) spdlog::warn("metrics: scrape failed: {}", e.getDescription().cStr());
          failing_ = true;
          return send(response, 500, "Internal Server Error", "service snapshot failed\n");
        });
  }

 private:
  kj::Promise<void> send(Response& response, unsigned status, kj::StringPtr text, std::string body) {
    return send(response, status, text, kj::mv(body), kj::HttpHeaders(*table_));
  }
  kj::Promise<void> send(Response& response, unsigned status, kj::StringPtr text, std::string body,
                         kj::HttpHeaders headers, bool head = false) {
    if (status != 200) headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; charset=utf-8");
    auto stream = response.send(status, text, headers, body.size());
    if (head) return kj::READY_NOW;  // KJ sends Content-Length and no body for HEAD
    // On the heap: moving a short std::string would move its bytes away from the write.
    auto owned = kj::heap<std::string>(std::move(body));
    auto write = stream->write(owned->data(), owned->size()).attach(kj::mv(stream), kj::mv(owned));
    // A client that stops reading must not hold the connection past the deadline.
    return timer_.timeoutAfter(kWriteDeadline, kj::mv(write));
  }

  kj::Timer& timer_;
  const Metrics& metrics_;
  Snapshot snapshot_;
  kj::Own<kj::HttpHeaderTable> table_;
  kj::HttpHeaderId allow_ = kj::HttpHeaderId::HOST;  // replaced in the constructor
  bool failing_ = false;
};

class QuietErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    spdlog::debug("metrics: connection ended: {}", e.getDescription().cStr());
  }
};

struct Server {
  static kj::HttpServerSettings settings() {
    kj::HttpServerSettings settings;
    settings.headerTimeout = kHeaderTimeout;
    settings.pipelineTimeout = kIdleTimeout;
    return settings;
  }
  Server(kj::ConnectionReceiver& listener_in, kj::Timer& timer, const Metrics& metrics, Snapshot snapshot)
      : listener(listener_in),
        service(timer, metrics, std::move(snapshot)),
        http(timer, service.table(), service, settings()) {}

  kj::ConnectionReceiver& listener;
  MetricsService service;
  kj::HttpServer http;
  std::size_t open = 0;
  QuietErrors errors;
  kj::TaskSet connections{errors};  // last: its connections use everything above
};

kj::Promise<void> accept_loop(Server& server) {
  return server.listener.accept().then([&server](kj::Own<kj::AsyncIoStream> stream) {
    if (server.open >= kMaxScrapeConnections) {
      // Dropping the stream closes it: a scraper sees a failed scrape, the gateway no cost.
      spdlog::debug("metrics: refused a connection, {} are open", server.open);
    } else {
      ++server.open;
      server.connections.add(server.http.listenHttp(kj::mv(stream)).attach(kj::defer([&server] { --server.open; })));
    }
    return accept_loop(server);
  });
}

}  // namespace

kj::Promise<void> serve_metrics(kj::ConnectionReceiver& listener, kj::Timer& timer, const Metrics& metrics,
                                std::function<kj::Promise<std::vector<ServiceSnapshot>>()> snapshot) {
  auto server = kj::heap<Server>(listener, timer, metrics, std::move(snapshot));
  auto& ref = *server;
  return accept_loop(ref).attach(kj::mv(server));
}

}  // namespace pgod::gateway
