// The gateway's links to its workers (Backends), against a supervisor and a worker the test
// plays on their sockets. A worker that floods its calls, past the windows of its streams,
// holds at most Backends::kWorkerCallBytes of the gateway's memory: past that the gateway
// stops reading its link (so what comes after the flood waits too), and reads again once the
// calls are answered.
#include "backends.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "key_index.h"
#include "process.h"
#include "rpc_listener.h"

namespace pgod::gateway {
namespace {

constexpr std::size_t kCallBytes = 64 << 10;

class OneService final : public rpc::Supervisor::Server {
 protected:
  kj::Promise<void> listServices(ListServicesContext context) override {
    auto service = context.getResults().initServices(1)[0];
    service.setName("a");
    service.setWorkerState(rpc::ServiceInfo::WorkerState::RUNNING);
    service.setWorkerPid(1);
    return kj::READY_NOW;
  }
};

// Answers run() at once, after sending `calls` stdout calls of kCallBytes each without waiting
// for any: what a worker taken over may do. Its key list never comes.
class FloodingWorker final : public rpc::Worker::Server {
 public:
  explicit FloodingWorker(std::size_t calls) : calls_(calls) {}

 protected:
  kj::Promise<void> authorizedKeys(AuthorizedKeysContext) override { return kj::NEVER_DONE; }
  kj::Promise<void> run(RunContext context) override {
    auto output = context.getParams().getOutput();
    for (std::size_t i = 0; i < calls_; ++i) {
      auto request = output.stdoutRequest();
      request.initData(kCallBytes);
      sent_.add(request.send());  // ignored: a streaming call's promise is only its window
    }
    context.getResults().setExitStatus(0);
    return kj::READY_NOW;
  }

 private:
  class Ignore final : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  std::size_t calls_;
  Ignore ignore_;
  kj::TaskSet sent_{ignore_};
};

// Counts stdout calls, and leaves them unanswered until let go, as for an SSH client that stops
// reading; then answers every one.
struct SinkState {
  std::size_t calls = 0;
  bool holding = true;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> held;
  void let_go() {
    holding = false;
    for (auto& call : held) call->fulfill();
    held.clear();
  }
};

class HoldingSink final : public rpc::OutputSink::Server {
 public:
  explicit HoldingSink(std::shared_ptr<SinkState> state) : state_(std::move(state)) {}

 protected:
  kj::Promise<void> stdout(StdoutContext) override {
    ++state_->calls;
    if (!state_->holding) return kj::READY_NOW;
    auto held = kj::newPromiseAndFulfiller<void>();
    state_->held.add(kj::mv(held.fulfiller));
    return kj::mv(held.promise);
  }
  kj::Promise<void> done(DoneContext) override { return kj::READY_NOW; }

 private:
  std::shared_ptr<SinkState> state_;
};

// The test's event loop, the sockets it serves and the gateway's Backends on them (held by
// pointer: KJ's destructors may throw, a test fixture's may not).
struct World {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  test::TempDir rundir;
  KeyIndex keys;
  Backends backends{io, rundir.path(), keys};
  kj::Own<kj::ConnectionReceiver> supervisor_listener, worker_listener;
  kj::Promise<void> supervisor = nullptr, worker = nullptr;
};

class BackendsTest : public ::testing::Test {
 protected:
  // Serves the supervisor's and a's worker's sockets, the worker flooding `calls`.
  void serve(std::size_t calls) {
    auto& w = *world_;
    std::filesystem::create_directories(w.rundir.path() + "/workers");
    const auto listen = [&w](const std::string& path) {
      return w.io.provider->getNetwork().parseAddress(kj::str("unix:", path.c_str())).wait(w.io.waitScope)->listen();
    };
    w.supervisor_listener = listen(w.rundir.path() + "/supervisor.sock");
    w.worker_listener = listen(w.rundir.path() + "/workers/a.sock");
    w.supervisor =
        serve_unix_rpc(*w.supervisor_listener, kj::heap<OneService>(), getuid(), "supervisor").eagerlyEvaluate(nullptr);
    w.worker = serve_unix_rpc(*w.worker_listener, kj::heap<FloodingWorker>(calls), getuid(), "worker")
                   .eagerlyEvaluate(nullptr);
    w.backends.refresh().wait(w.io.waitScope);
    ASSERT_TRUE(w.backends.has_service("a"));
  }

  // Runs a command whose output goes into a HoldingSink; the run's answer, once it comes.
  kj::ForkedPromise<void> run(std::shared_ptr<SinkState> sink) {
    auto request = world_->backends.worker("a").runRequest();
    request.setVerb(rpc::Verb::LOGS);
    request.setOutput(kj::heap<HoldingSink>(kj::mv(sink)));
    return request.send().ignoreResult().fork();
  }

  // Whether `answer` comes within `wait`, the loop running meanwhile.
  bool answered_within(kj::ForkedPromise<void>& answer, kj::Duration wait) {
    return answer.addBranch()
        .then([]() { return true; })
        .exclusiveJoin(world_->io.provider->getTimer().afterDelay(wait).then([]() { return false; }))
        .wait(world_->io.waitScope);
  }

  void run_loop_for(kj::Duration wait) { world_->io.provider->getTimer().afterDelay(wait).wait(world_->io.waitScope); }

  std::unique_ptr<World> world_ = std::make_unique<World>();
};

TEST_F(BackendsTest, AWorkerFloodingItsCallsIsReadNoFurtherThanTheLimitUntilTheyAreAnswered) {
  const std::size_t calls = Backends::kWorkerCallBytes / kCallBytes + 32;  // 2 MiB past the limit
  serve(calls);
  auto sink = std::make_shared<SinkState>();
  auto answer = run(sink);
  EXPECT_FALSE(answered_within(answer, 2 * kj::SECONDS))
      << "the run's answer, sent after the flood, came: the gateway read past " << (Backends::kWorkerCallBytes >> 20)
      << " MiB of calls it had not answered";
  sink->let_go();  // the client reads again
  EXPECT_TRUE(answered_within(answer, 30 * kj::SECONDS)) << "reading resumed";
  for (int i = 0; i < 1000 && sink->calls < calls; ++i) run_loop_for(10 * kj::MILLISECONDS);
  EXPECT_EQ(sink->calls, calls) << "every call arrived, in the end";
}

// The control: the same, 2 MiB below the limit. The answer comes while every call is held.
TEST_F(BackendsTest, BelowTheLimitTheLinkIsReadWhileCallsWait) {
  serve(Backends::kWorkerCallBytes / kCallBytes - 32);
  auto sink = std::make_shared<SinkState>();
  auto answer = run(sink);
  EXPECT_TRUE(answered_within(answer, 10 * kj::SECONDS));
  EXPECT_GE(sink->calls, 1u);
  sink->let_go();
}

}  // namespace
}  // namespace pgod::gateway
