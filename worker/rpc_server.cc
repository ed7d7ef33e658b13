#include "rpc_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <optional>

#include "capnp_compat.h"
#include "rpc_listener.h"
#include "rpc_verbs.h"
#include "worker.capnp.h"

namespace pgod::worker {
namespace {

constexpr std::size_t kMaxArgs = 256;
constexpr std::size_t kMaxArgBytes = 64 * 1024;

// Carries a pipe's read end to the sink: Cap'n Proto sends getFd()'s descriptor along with the
// capability (SCM_RIGHTS) where the link passes descriptors; this copy closes with the object.
class PipeEnd final : public rpc::PipeEnd::Server {
 public:
  explicit PipeEnd(kj::AutoCloseFd fd) : fd_(kj::mv(fd)) {}
  kj::Maybe<int> getFd() override { return fd_.get(); }

 private:
  kj::AutoCloseFd fd_;
};

class RpcOutput final : public OutputSink {
 public:
  explicit RpcOutput(rpc::OutputSink::Client client) : client_(kj::mv(client)) {}
  ~RpcOutput() noexcept(false) override = default;  // a capability's destructor may throw
  kj::Promise<void> write(bool to_stderr, kj::ArrayPtr<const kj::byte> data) override {
    if (to_stderr) {
      auto request = client_.stderrRequest();
      request.setData(data);
      return request.send();
    }
    auto request = client_.stdoutRequest();
    request.setData(data);
    return request.send();
  }
  kj::Promise<void> drain_stdout_pipe(kj::AutoCloseFd read_end) override {
    struct stat status {};
    // Unnamed, the pipe could not be paired with this call: pumped here instead.
    if (fstat(read_end.get(), &status) != 0) return KJ_EXCEPTION(UNIMPLEMENTED, "fstat of the stdout pipe", errno);
    auto request = client_.stdoutPipeRequest();
    request.setInode(static_cast<std::uint64_t>(status.st_ino));
    request.setPipe(kj::heap<PipeEnd>(kj::mv(read_end)));
    return request.send().ignoreResult();
  }
  // Waits until every write has been taken by the reader (see OutputSink.done).
  kj::Promise<void> finish() { return client_.doneRequest().send().ignoreResult(); }

 private:
  rpc::OutputSink::Client client_;
};

class WorkerImpl final : public rpc::Worker::Server {
 public:
  explicit WorkerImpl(Service& service) : service_(service) {}

  kj::Promise<void> run(RunContext context) override {
    // A dropped `logs -f` must end, and with it the compose process group.
    allow_cancellation(context);
    auto params = context.getParams();
    const auto verb = from_rpc_verb(params.getVerb());
    if (!verb) {
      const auto number = static_cast<unsigned>(params.getVerb());
      spdlog::warn("refused verb number {}: unknown to this worker", number);
      auto results = context.getResults();
      results.setExitStatus(static_cast<std::uint32_t>(Status::kNotAcceptable));
      results.setMessage(not_acceptable_message(fmt::format("verb #{}", number)));
      return kj::READY_NOW;
    }
    std::vector<std::string> args;
    std::size_t bytes = 0;
    for (auto arg : params.getArgs()) {
      bytes += arg.size();
      args.emplace_back(arg.cStr(), arg.size());
    }
    if (args.size() > kMaxArgs || bytes > kMaxArgBytes) {
      auto results = context.getResults();
      results.setExitStatus(static_cast<std::uint32_t>(Status::kBadRequest));
      results.setMessage("command line too long");
      return kj::READY_NOW;
    }
    auto output = kj::heap<RpcOutput>(params.getOutput());
    const Caller caller{params.getCaller().cStr(), params.getKeyFingerprint().cStr()};
    auto& sink = *output;
    return service_.run_verb(*verb, std::move(args), sink, caller)
        .then([&sink](VerbResult result) {
          // The answer goes after the output: a reader that has gone is no reason to fail.
          return sink.finish().catch_([](kj::Exception&&) {}).then([result = std::move(result)]() { return result; });
        })
        .then([this, context](VerbResult result) mutable {
          auto results = context.getResults();
          results.setExitStatus(result.exit_status);
          results.setMessage(result.message);
          results.setCommit(service_.head_hash());
        })
        .attach(kj::mv(output));
  }

  kj::Promise<void> status(StatusContext context) override {
    service_.fill_status(context.getResults().initStatus());
    return kj::READY_NOW;
  }

  kj::Promise<void> authorizedKeys(AuthorizedKeysContext context) override {
    allow_cancellation(context);  // a long poll: the gateway may give up waiting
    const auto after = context.getParams().getAfter();
    return service_.wait_for_keys(after).then([this, context]() mutable {
      auto results = context.getResults();
      results.setGeneration(service_.key_generation());
      const auto& keys = service_.keys();
      auto list = results.initKeys(static_cast<unsigned>(keys.size()));
      for (unsigned i = 0; i < keys.size(); ++i) {
        list[i].setType(keys[i].type);
        list[i].setBase64(keys[i].base64);
        list[i].setComment(keys[i].comment);
        list[i].setFile(keys[i].file);
      }
    });
  }

  kj::Promise<void> pushed(PushedContext context) override {
    context.getResults().setQueued(service_.pushed(context.getParams().getSource().cStr()));
    return kj::READY_NOW;
  }

 private:
  Service& service_;
};

}  // namespace

kj::Promise<void> serve_worker(kj::ConnectionReceiver& listener, Service& service, uid_t gateway_uid) {
  // One descriptor a message: the stdout pipe goes out that way (OutputSink.stdoutPipe); what the
  // gateway might send in is closed unread.
  return serve_unix_rpc(listener, kj::heap<WorkerImpl>(service), gateway_uid, "worker socket", 1);
}

}  // namespace pgod::worker
