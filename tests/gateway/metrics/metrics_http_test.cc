// serve_metrics() on a real TCP listener on 127.0.0.1 (port from the kernel), scraped with KJ's
// HTTP client or a raw socket. Time-outs run on a manual timer, so no test sleeps through them.
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/debug.h>
#include <kj/timer.h>

#include <optional>

#include "log_capture.h"
#include "metrics.h"

namespace pgod::gateway {
namespace {

// Counts accepted connections, to prove two scrapes shared one.
class CountingReceiver final : public kj::ConnectionReceiver {
 public:
  explicit CountingReceiver(kj::ConnectionReceiver& inner) : inner_(inner) {}
  kj::Promise<kj::Own<kj::AsyncIoStream>> accept() override {
    return inner_.accept().then([this](kj::Own<kj::AsyncIoStream> s) {
      ++accepted;
      return s;
    });
  }
  kj::uint getPort() override { return inner_.getPort(); }
  int accepted = 0;

 private:
  kj::ConnectionReceiver& inner_;
};

struct Reply {
  unsigned status = 0;
  std::string content_type, content_length, allow, body;
};

class ServeMetricsTest : public ::testing::Test {
 protected:
  using Snapshot = std::function<kj::Promise<std::vector<ServiceSnapshot>>()>;

  ServeMetricsTest() {
    kj::HttpHeaderTable::Builder builder;
    allow_ = builder.add("Allow");
    table_ = builder.build();
  }
  // KJ's destructors may throw (noexcept(false)); gtest's may not.
  ~ServeMetricsTest() noexcept override { server_ = nullptr; }

  void start(Snapshot snapshot, kj::Timer* timer = nullptr) {
    server_ = kj::heap(serve_metrics(receiver_, timer ? *timer : io_.provider->getTimer(), metrics_,
                                     [this, snapshot = std::move(snapshot)]() {
                                       ++scrapes_;
                                       return snapshot();
                                     })
                           .eagerlyEvaluate([](kj::Exception&& e) { ADD_FAILURE() << e.getDescription().cStr(); }));
  }
  void start_with(std::vector<ServiceSnapshot> services, kj::Timer* timer = nullptr) {
    start([services] { return kj::Promise<std::vector<ServiceSnapshot>>(services); }, timer);
  }

  kj::Own<kj::AsyncIoStream> connect() {
    return io_.provider->getNetwork()
        .parseAddress("127.0.0.1", receiver_.getPort())
        .wait(io_.waitScope)
        ->connect()
        .wait(io_.waitScope);
  }

  Reply fetch(kj::HttpClient& client, kj::HttpMethod method, kj::StringPtr url) {
    return wait(send(client, method, url));
  }
  kj::Promise<kj::HttpClient::Response> send(kj::HttpClient& client, kj::HttpMethod method, kj::StringPtr url) {
    kj::HttpHeaders headers(*table_);
    headers.set(kj::HttpHeaderId::HOST, "127.0.0.1");
    auto request = client.request(method, url, headers, uint64_t{0});
    return kj::mv(request.response);
  }
  Reply wait(kj::Promise<kj::HttpClient::Response> pending) {
    auto response = guard(kj::mv(pending));
    Reply reply;
    reply.status = response.statusCode;
    auto get = [&](kj::HttpHeaderId id) {
      KJ_IF_MAYBE (value, response.headers->get(id)) {
        return std::string(value->cStr());
      }
      return std::string();
    };
    reply.content_type = get(kj::HttpHeaderId::CONTENT_TYPE);
    reply.content_length = get(kj::HttpHeaderId::CONTENT_LENGTH);
    reply.allow = get(allow_);
    reply.body = guard(response.body->readAllText()).cStr();
    return reply;
  }

  // Waits for a promise, but fails the test after 5 s of real time instead of hanging.
  template <typename T>
  T guard(kj::Promise<T> promise) {
    return io_.provider->getTimer().timeoutAfter(5 * kj::SECONDS, kj::mv(promise)).wait(io_.waitScope);
  }
  // True when the peer closed the stream (EOF or reset) within 5 s; false if it sent bytes first.
  bool closed_by_server(kj::AsyncIoStream& stream) {
    char byte;
    try {
      return guard(stream.tryRead(&byte, 1, 1)) == 0;
    } catch (const kj::Exception& e) {
      return e.getType() == kj::Exception::Type::DISCONNECTED;
    }
  }
  // True when the stream is still open and silent after a moment of real time.
  bool still_open(kj::AsyncIoStream& stream) {
    char byte;
    auto read = stream.tryRead(&byte, 1, 1).then([](size_t) { return false; });
    return io_.provider->getTimer()
        .afterDelay(200 * kj::MILLISECONDS)
        .then([] { return true; })
        .exclusiveJoin(kj::mv(read))
        .wait(io_.waitScope);
  }
  // Lets the server run for a moment of real time (accepts, reads, closes).
  void settle() { io_.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).wait(io_.waitScope); }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  kj::Own<kj::ConnectionReceiver> listener_ =
      io_.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io_.waitScope)->listen();
  CountingReceiver receiver_{*listener_};
  kj::TimerImpl manual_timer_{kj::origin<kj::TimePoint>()};
  kj::Own<kj::HttpHeaderTable> table_;
  kj::HttpHeaderId allow_ = kj::HttpHeaderId::HOST;
  Metrics metrics_;
  int scrapes_ = 0;
  // Last: dropped first. On the heap: GCC 14 takes a promise held in place (std::optional,
  // kj::Maybe) for uninitialised in this destructor.
  kj::Own<kj::Promise<void>> server_;
};

const std::vector<ServiceSnapshot> kServices = {{"web", "running", 1, true, "ok", "4f2a9c0e11"}};

TEST_F(ServeMetricsTest, GetMetricsAnswersTheRenderedExposition) {
  metrics_.count_command("web", "ps", "", false);
  start_with(kServices);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  auto reply = fetch(*client, kj::HttpMethod::GET, "/metrics");
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(reply.body, metrics_.render(kServices));
  EXPECT_NE(reply.body.find("pgo_service_git_info{service=\"web\",hash=\"4f2a9c0e11\"} 1\n"), std::string::npos);
  EXPECT_EQ(scrapes_, 1);
}

TEST_F(ServeMetricsTest, HeadAnswersHeadersOnly) {
  start_with(kServices);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  auto reply = fetch(*client, kj::HttpMethod::HEAD, "/metrics");
  EXPECT_EQ(reply.status, 200u);
  EXPECT_EQ(reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(reply.content_length, std::to_string(metrics_.render(kServices).size()));
  EXPECT_EQ(reply.body, "");
  // The connection is still in step: a GET after the HEAD works.
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").body, metrics_.render(kServices));
}

TEST_F(ServeMetricsTest, OtherPathsAreNotFound) {
  start_with(kServices);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  for (const char* path : {"/", "/metric", "/metrics/", "/metrics/x", "/favicon.ico"}) {
    auto reply = fetch(*client, kj::HttpMethod::GET, path);
    EXPECT_EQ(reply.status, 404u) << path;
    EXPECT_EQ(reply.body, "not found\n") << path;
  }
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics?x=1").status, 200u);
  EXPECT_EQ(scrapes_, 1);
}

TEST_F(ServeMetricsTest, OtherMethodsAreNotAllowed) {
  start_with(kServices);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  for (auto method : {kj::HttpMethod::POST, kj::HttpMethod::PUT, kj::HttpMethod::DELETE, kj::HttpMethod::OPTIONS}) {
    auto reply = fetch(*client, method, "/metrics");
    EXPECT_EQ(reply.status, 405u) << kj::str(method).cStr();
    EXPECT_EQ(reply.allow, "GET, HEAD");
  }
  EXPECT_EQ(scrapes_, 0);
}

TEST_F(ServeMetricsTest, SnapshotFailureAnswers500AndLogsOncePerRun) {
  LogCapture log;
  bool fail = true;
  start([&fail]() -> kj::Promise<std::vector<ServiceSnapshot>> {
    if (fail) return KJ_EXCEPTION(FAILED, "supervisor gone");
    return kServices;
  });
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  for (int i = 0; i < 2; ++i) {
    auto reply = fetch(*client, kj::HttpMethod::GET, "/metrics");
    EXPECT_EQ(reply.status, 500u);
    EXPECT_EQ(reply.body, "service snapshot failed\n");
  }
  EXPECT_EQ(log.count("scrape failed"), 1) << log.text();
  EXPECT_EQ(log.count("supervisor gone"), 1) << log.text();
  fail = false;
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").status, 200u);
  EXPECT_EQ(log.count("scrapes work again"), 1) << log.text();
}

TEST_F(ServeMetricsTest, SnapshotThatThrowsAnswers500) {
  LogCapture log;
  start([]() -> kj::Promise<std::vector<ServiceSnapshot>> { throw std::runtime_error("no snapshot"); });
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").status, 500u);
  EXPECT_EQ(log.count("no snapshot"), 1) << log.text();
}

TEST_F(ServeMetricsTest, SnapshotThatNeverAnswersTimesOutWith500) {
  LogCapture log;
  start([]() -> kj::Promise<std::vector<ServiceSnapshot>> { return kj::NEVER_DONE; }, &manual_timer_);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  auto pending = send(*client, kj::HttpMethod::GET, "/metrics");
  for (int i = 0; i < 100 && scrapes_ == 0; ++i) settle();
  ASSERT_EQ(scrapes_, 1);
  manual_timer_.advanceTo(manual_timer_.now() + 11 * kj::SECONDS);
  EXPECT_EQ(wait(kj::mv(pending)).status, 500u);
  EXPECT_EQ(log.count("timed out"), 1) << log.text();
}

TEST_F(ServeMetricsTest, TwoScrapesOnOneConnectionSeeTheCountersMove) {
  start_with(kServices);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  metrics_.count_command("web", "git", "pull", false);
  auto first = fetch(*client, kj::HttpMethod::GET, "/metrics");
  metrics_.count_command("web", "git", "pull", true);
  metrics_.set_connections(2);
  auto second = fetch(*client, kj::HttpMethod::GET, "/metrics");
  EXPECT_EQ(receiver_.accepted, 1);
  EXPECT_EQ(scrapes_, 2);
  const std::string count = "pgo_command_count{cmd=\"git\",service=\"web\",subcmd=\"pull\"} ";
  const std::string errors = "pgo_command_error_count{cmd=\"git\",service=\"web\",subcmd=\"pull\"} ";
  EXPECT_NE(first.body.find(count + "1\n"), std::string::npos) << first.body;
  EXPECT_NE(first.body.find(errors + "0\n"), std::string::npos);
  EXPECT_NE(first.body.find("pgod_gateway_connections 0\n"), std::string::npos);
  EXPECT_NE(second.body.find(count + "2\n"), std::string::npos) << second.body;
  EXPECT_NE(second.body.find(errors + "1\n"), std::string::npos);
  EXPECT_NE(second.body.find("pgod_gateway_connections 2\n"), std::string::npos);
}

TEST_F(ServeMetricsTest, SilentClientIsClosedAfterTheHeaderTimeout) {
  start_with(kServices, &manual_timer_);
  auto stream = connect();
  settle();
  ASSERT_EQ(receiver_.accepted, 1);
  manual_timer_.advanceTo(manual_timer_.now() + 4 * kj::SECONDS);
  EXPECT_TRUE(still_open(*stream));
  manual_timer_.advanceTo(manual_timer_.now() + 2 * kj::SECONDS);
  EXPECT_TRUE(closed_by_server(*stream));
}

TEST_F(ServeMetricsTest, IdleKeepAliveIsClosedAfterTheIdleTimeout) {
  start_with(kServices, &manual_timer_);
  auto stream = connect();
  auto client = kj::newHttpClient(*table_, *stream);
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").status, 200u);
  settle();
  manual_timer_.advanceTo(manual_timer_.now() + 19 * kj::SECONDS);  // within one scrape interval
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").status, 200u);
  settle();
  manual_timer_.advanceTo(manual_timer_.now() + 19 * kj::SECONDS);
  EXPECT_TRUE(still_open(*stream));
  manual_timer_.advanceTo(manual_timer_.now() + 2 * kj::SECONDS);
  EXPECT_TRUE(closed_by_server(*stream));
  EXPECT_EQ(receiver_.accepted, 1);
}

TEST_F(ServeMetricsTest, ConnectionsPastTheLimitAreClosedAtOnce) {
  start_with(kServices);
  std::vector<kj::Own<kj::AsyncIoStream>> held;
  for (int i = 0; i < 16; ++i) held.push_back(connect());
  auto extra = connect();
  EXPECT_TRUE(closed_by_server(*extra));
  EXPECT_EQ(receiver_.accepted, 17);
  {  // the held ones are served
    auto client = kj::newHttpClient(*table_, *held[0]);
    EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").status, 200u);
  }
  held.pop_back();  // one closes: room for one more
  settle();
  auto next = connect();
  auto client = kj::newHttpClient(*table_, *next);
  EXPECT_EQ(fetch(*client, kj::HttpMethod::GET, "/metrics").status, 200u);
}

}  // namespace
}  // namespace pgod::gateway
