// GCC 12 at -O2 reports maybe-uninitialized inside KJ 0.9's ExceptionOr<T> (a flag-guarded
// union) for promises of std::variant/std::string-holding types: a known false positive of
// that pairing, silenced for this file only (before the includes: the reports point into them).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "service.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <kj/debug.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "audit.h"
#include "commit_signature.h"
#include "compose_policy.h"
#include "history.h"
#include "logging.h"
#include "rpc_verbs.h"
#include "safe_files.h"
#include "service_name.h"
#include "system_call.h"
#include "verb_table.h"

namespace pgod::worker {

struct Service::Normalized {
  std::string yaml;                                    // the model that passed the policy
  std::vector<std::string> referenced;                 // compose file + what it references, for the diff
  bool reload = true;                                  // x-pgo: reload
  std::optional<std::chrono::seconds> health_timeout;  // x-pgo: health_timeout
};

namespace {

using namespace std::chrono_literals;
constexpr int kFetchFailuresBeforeDiff = 3;
constexpr auto kComposeUpTimeout = 20min;
constexpr auto kComposeDownTimeout = 10min;
constexpr auto kDockerLoginTimeout = 1min;
// Read verbs each run a compose process (~50 MB for compose v1), so they are bounded. Short
// ones (ps, status, logs without -f, …) run a few at once and the rest wait their turn: a burst
// of CI jobs asking `ps` is served, slower, rather than refused. `logs -f` and `exec` may run
// for as long as their caller likes, so they have slots of their own (never starving the short
// ones) and are refused at once when those are taken: waiting behind them could be forever.
constexpr std::size_t kMaxShortReads = 8;
constexpr std::size_t kMaxWaitingReads = 128;
constexpr auto kReadWaitLimit = 30 * kj::SECONDS;
constexpr std::size_t kMaxLongReads = 16;
constexpr std::size_t kMaxComposeFileBytes = 1 << 20;
// Env values shorter than this are too likely to appear in ordinary text ("true", "prod") to
// be redacted everywhere; tokens and passwords are longer.
constexpr std::size_t kMinRedactedLength = 8;

// Who asked, for the history: the key's comment, or root (pgoctl on the host as root).
std::string caller_name(const std::string& caller) { return caller.empty() ? std::string("root") : caller; }

// For the audit log: values after '=' may be secrets (exec -e TOKEN=…).
std::string loggable_args(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& arg : args) {
    out += ' ';
    const auto eq = arg.find('=');
    out += eq == std::string::npos ? arg : arg.substr(0, eq + 1) + std::string(Secret::placeholder);
  }
  return out;
}

constexpr bool kToStdout = false;
constexpr bool kToStderr = true;

kj::Promise<void> write_text(OutputSink& output, bool to_stderr, std::string text) {
  auto bytes = kj::heapArray<kj::byte>(text.size());
  memcpy(bytes.begin(), text.data(), text.size());
  auto promise = output.write(to_stderr, bytes);
  return promise.attach(kj::mv(bytes));
}

// A verb's own exit code (0, or 1 when it failed), as opposed to a pgod status.
VerbResult exited(std::uint32_t code) { return VerbResult{code, ""}; }

// Writes what a verb has to say, then ends it with `code`.
kj::Promise<VerbResult> write_then_exit(OutputSink& output, bool to_stderr, std::string text, std::uint32_t code) {
  return write_text(output, to_stderr, std::move(text)).then([code]() { return exited(code); });
}

// One buffer for the whole stream, handed on from read to read.
kj::Promise<void> pump_with(kj::AsyncInputStream& input, OutputSink& output, bool to_stderr,
                            kj::Array<kj::byte> buffer) {
  auto read = input.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&input, &output, to_stderr, buffer = kj::mv(buffer)](std::size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    auto written = output.write(to_stderr, buffer.slice(0, n));
    return written.then([&input, &output, to_stderr, buffer = kj::mv(buffer)]() mutable {
      return pump_with(input, output, to_stderr, kj::mv(buffer));
    });
  });
}

kj::Promise<void> pump(kj::AsyncInputStream& input, OutputSink& output, bool to_stderr) {
  // Fewer, larger messages cost less on both sides of the RPC: 64 KiB ones left a third of two
  // cores idle between the hops and streamed at 0.78x sshd (gateway_bench, docs/PERFORMANCE.md).
  // stderr carries messages, not bulk: its pipe keeps the default 64 KiB, and so does its buffer.
  constexpr std::size_t kStderrChunk = std::size_t{64} << 10;
  return pump_with(input, output, to_stderr, kj::heapArray<kj::byte>(to_stderr ? kStderrChunk : kOutputChunk));
}

// The command's stdout: the pipe itself to a sink that takes it (the gateway reads it straight
// into the SSH channel, and this process neither copies the bytes nor wakes up for them), else
// pumped here.
kj::Promise<void> pump_stdout(ChildProcess& child, OutputSink& output, kj::LowLevelAsyncIoProvider& io) {
  auto kept = child.take_stdout();
  if (kept.get() < 0) return pump(child.stdout_stream(), output, false);
  kj::AutoCloseFd handed(fcntl(kept.get(), F_DUPFD_CLOEXEC, 0));
  if (handed.get() < 0) return KJ_EXCEPTION(FAILED, "cannot duplicate the command's stdout pipe", errno);
  return output.drain_stdout_pipe(kj::mv(handed))
      .catch_([&output, &io, kept = kj::mv(kept)](kj::Exception&& e) mutable -> kj::Promise<void> {
        if (e.getType() != kj::Exception::Type::UNIMPLEMENTED) return kj::mv(e);
        // Not ALREADY_NONBLOCK: KJ sets the flag again itself.
        const auto flags = kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC;
        auto input = io.wrapInputFd(kept.release(), flags);
        auto& stream = *input;
        return pump(stream, output, false).attach(kj::mv(input));
      });
}

}  // namespace

kj::Promise<void> OutputSink::drain_stdout_pipe(kj::AutoCloseFd) {
  return KJ_EXCEPTION(UNIMPLEMENTED, "this sink takes no pipe");
}

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string format_time(std::int64_t seconds) {
  if (seconds == 0) return "-";
  const std::time_t t = seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string short_hash(const std::string& hash) { return hash.empty() ? "(none)" : hash.substr(0, 12); }

std::string tail(const std::string& text) {
  constexpr std::size_t kErrorTail = 2000;
  std::string trimmed = text;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == ' ')) trimmed.pop_back();
  if (trimmed.size() > kErrorTail) trimmed = "…" + trimmed.substr(trimmed.size() - kErrorTail);
  return trimmed;
}

Service::Service(kj::AsyncIoContext& io, rpc::ServiceSettings::Reader settings, std::string path_prefix)
    : io_(io),
      settings_(settings),
      log_(service_logger(settings.getName().cStr())),
      path_prefix_(std::move(path_prefix)),
      short_reads_(io.provider->getTimer(), kMaxShortReads, kMaxWaitingReads, kReadWaitLimit),
      long_reads_(io.provider->getTimer(), kMaxLongReads, 0, kReadWaitLimit),
      queue_tail_(kj::Promise<void>(kj::READY_NOW).fork()),
      detached_(*this) {
  secrets_.emplace_back(settings.getRepository().cStr());  // whole URL: libgit2 may echo it
  for (auto var : settings.getEnv())
    if (var.getValue().size() >= kMinRedactedLength) secrets_.emplace_back(var.getValue().cStr());
  for (auto login : settings.getRegistries()) secrets_.emplace_back(login.getToken().cStr());
  docker_config_ = std::string(settings.getStateDir().cStr()) + "/docker";
  validated_file_ = std::string(settings.getStateDir().cStr()) + "/compose.validated.yaml";
  staging_dir_ = std::string(settings.getStateDir().cStr()) + "/staging";
  // The repository lives in the state directory, which no container can bind: a .git in the
  // checkout could be rewritten by any container that mounts it read-write.
  GitTrackerOptions git_options;
  git_options.repository = settings.getRepository().cStr();
  git_options.branch = settings.getBranch().cStr();
  git_options.checkout_dir = settings.getCheckoutDir().cStr();
  git_options.git_dir = std::string(settings.getStateDir().cStr()) + "/git";
  git_ = std::make_unique<GitTracker>(std::move(git_options));
}

Service::~Service() = default;

std::string Service::redacted(std::string_view text) const { return redact(text, secrets_); }

template <class T>
kj::Promise<T> Service::serialized(kj::Function<kj::Promise<T>()> job) {
  auto done = kj::newPromiseAndFulfiller<void>();
  auto previous = queue_tail_.addBranch();
  // The next job waits for this one to finish, or to be cancelled, whichever comes first.
  queue_tail_ = queue_tail_.addBranch()
                    .then([finished = kj::mv(done.promise)]() mutable { return kj::mv(finished); })
                    .catch_([](kj::Exception&&) {})
                    .fork();
  return previous.catch_([](kj::Exception&&) {})
      .then([job = kj::mv(job)]() mutable { return job(); })
      .attach(kj::defer([fulfiller = kj::mv(done.fulfiller)]() mutable { fulfiller->fulfill(); }));
}

kj::Promise<void> Service::run_to_end(kj::Function<kj::Promise<void>()> job) {
  auto forked = serialized<void>(kj::mv(job)).fork();
  detached_.add(forked.addBranch());
  return forked.addBranch();
}

bool Service::pushed(const std::string& source) {
  if (push_waiting_) return false;
  push_waiting_ = true;
  // The gateway's words, bounded and printable: they end up in the history and the log.
  std::string trigger;
  for (char c : std::string_view(source).substr(0, 160)) trigger += (c >= 0x20 && c < 0x7f && c != '\t') ? c : '?';
  log_->info("{}: polling now", trigger);
  // Not waited on: the gateway answers the forge at once, the cycle runs in its turn.
  (void)run_to_end([this, trigger = std::move(trigger)]() {
    push_waiting_ = false;
    return cycle_for(trigger);
  });
  return true;
}

void Service::taskFailed(kj::Exception&& exception) {
  log_->error("a reconcile job failed: {}", redacted(exception.getDescription().cStr()));
}

// ---- state ---------------------------------------------------------------------------------

void Service::set_state(rpc::ServiceState state, std::string error) {
  if (state != state_)
    log_->info("state {} -> {}{}", service_state_name(state_), service_state_name(state),
               error.empty() ? "" : ": " + error);
  state_ = state;
  last_error_ = std::move(error);
}

void Service::note_deploy(const std::string& commit, std::string result, std::string detail) {
  DeployRecord record;
  record.time = now_seconds();
  record.trigger = trigger_;
  record.commit = commit;
  record.result = std::move(result);
  record.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - job_started_).count();
  record.detail = redacted(detail);
  if (!append_history(settings_.getStateDir().cStr(), record))
    log_->warn("cannot add to the deploy history in {}", settings_.getStateDir().cStr());
  // The same record in the journal, with fields of its own (proto/audit.h).
  AuditEntry entry;
  entry.kind = "deploy";
  entry.message = fmt::format("[{}] {} {}: {}{}", settings_.getName().cStr(), short_hash(commit), record.result,
                              record.trigger, record.detail.empty() ? "" : ": " + record.detail);
  entry.fields = {{"SERVICE", settings_.getName().cStr()},
                  {"COMMIT", commit},
                  {"RESULT", record.result},
                  {"TRIGGER", record.trigger},
                  {"DURATION_MS", std::to_string(record.duration_ms)}};
  if (!record.detail.empty()) entry.fields.emplace_back("DETAIL", record.detail);
  send_audit(entry);
}

void Service::broken(std::string reason) {
  reason = redacted(reason);
  if (state_ != rpc::ServiceState::BROKEN || reason != last_error_) log_->error("broken: {}", reason);
  state_ = rpc::ServiceState::BROKEN;
  last_error_ = std::move(reason);
}

// After a successful deploy: what tracking mode says the state is.
void Service::settle_state() {
  if (!pinned_hash_.empty())
    set_state(rpc::ServiceState::ROLLBACK);
  else if (frozen_)
    set_state(rpc::ServiceState::FROZEN);
  else
    set_state(rpc::ServiceState::OK);
}

void Service::load_persisted() {
  std::ifstream in(std::string(settings_.getStateDir().cStr()) + "/state");
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const auto key = line.substr(0, eq);
    const auto value = line.substr(eq + 1);
    if (key == "frozen") frozen_ = value == "1";
    if (key == "pinned") pinned_hash_ = value;
    if (key == "deployed") deployed_hash_ = value;
    if (key == "upstream") upstream_hash_ = value;
    if (key == "last_deploy") last_deploy_ = std::atoll(value.c_str());
    if (key == "good") good_hash_ = value;
    if (key == "failed") failed_hash_ = value;
    if (key == "failed_reason") failed_reason_ = value;
  }
}

bool Service::persist() const {
  // One line per key: a reason's line breaks become spaces.
  std::string reason = failed_reason_;
  std::replace_if(
      reason.begin(), reason.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  const std::string text = fmt::format(
      "frozen={}\npinned={}\ndeployed={}\nlast_deploy={}\nupstream={}\ngood={}\nfailed={}\nfailed_reason={}\n",
      frozen_ ? 1 : 0, pinned_hash_, deployed_hash_, last_deploy_, upstream_hash_, good_hash_, failed_hash_, reason);
  if (auto written = replace_file(settings_.getStateDir().cStr(), "state", text, 0600); !written) {
    log_->error("cannot save state in {}: {}", settings_.getStateDir().cStr(), written.error());
    return false;
  }
  return true;
}

bool Service::save_validated(const std::string& yaml) {
  auto written = replace_file(settings_.getStateDir().cStr(), "compose.validated.yaml", yaml, 0600);
  if (!written) log_->error("cannot save the validated compose model: {}", written.error());
  return written.has_value();
}

bool Service::has_validated_model() const {
  struct stat info {};
  return stat(validated_file_.c_str(), &info) == 0;
}

std::optional<std::string> Service::recheck_validated(const std::string& root) {
  auto refusals = validated_model_refusals(root);
  if (!refusals) return refusals.error();
  if (refusals->empty()) return std::nullopt;
  return redacted("refused: " + fmt::format("{}", fmt::join(*refusals, "; ")));
}

Expected<std::vector<std::string>, std::string> Service::validated_model_refusals(const std::string& root) const {
  if (!has_validated_model()) return std::vector<std::string>();
  std::ifstream in(validated_file_);
  if (!in) return Unexpected(std::string("cannot read the saved compose model ") + validated_file_);
  std::stringstream text;
  text << in.rdbuf();
  auto verdict = check_compose_policy(text.str(), policy_context(root));
  if (!verdict) return Unexpected(std::string("cannot judge the compose file: ") + verdict.error());
  std::vector<std::string> refusals;
  for (const auto& violation : *verdict) refusals.push_back(violation.to_string());
  return refusals;
}

std::optional<std::string> Service::refusals_new_in(const std::string& root) const {
  // Only what the new tree adds counts: a running model an upgraded policy (or a network
  // removed from pgo.toml) refuses in the live checkout too must not block the commit that
  // fixes it. The bind sources the containers mount resolve the same in both trees otherwise.
  auto staged = validated_model_refusals(root);
  if (!staged) return staged.error();
  auto judged_live = validated_model_refusals();
  const auto live = judged_live ? *judged_live : std::vector<std::string>();
  // What a path resolves to is not in every refusal's words ("cannot be resolved"), and the
  // containers mount what it resolved to when they were created: a refusal about where a path
  // leads always counts, whatever the live tree says.
  const auto about_the_tree = [](const std::string& refusal) {
    return refusal.find("resolve") != std::string::npos ||
           refusal.find("holds another bind source") != std::string::npos;
  };
  std::vector<std::string> added;
  for (const auto& refusal : *staged)
    if (about_the_tree(refusal) || std::find(live.begin(), live.end(), refusal) == live.end()) added.push_back(refusal);
  if (added.empty()) return std::nullopt;
  return redacted("refused: " + fmt::format("{}", fmt::join(added, "; ")));
}

bool Service::stop_file_exists() const {
  struct stat info {};
  return lstat(settings_.getStopFile().cStr(), &info) == 0;
}

kj::Promise<void> Service::refresh_keys() {
  // The keys of the tracked branch's head, whatever the checkout holds (a rollback to an old
  // commit must not bring back keys removed since) or a container wrote into it. Before the
  // first fetch of this repository: the checkout's.
  if (upstream_hash_.empty()) {
    if (settings_.getSigners().size() == 0)
      apply_keys(read_authorized_keys(settings_.getCheckoutDir().cStr()));
    else if (key_generation_ == 0)
      apply_keys(KeyScan{});  // nothing verified yet: no keys
    return kj::READY_NOW;
  }
  if (settings_.getSigners().size() == 0) return read_keys_at(upstream_hash_);
  // With signers, who may run commands is decided by signed commits only, and only forward: an
  // unsigned head (pushed by whoever can push) adds no key, nor does an older signed commit
  // force-pushed back (it may list a key removed since). Until a head qualifies, the keys last
  // applied stay; a restarted worker starts from the checkout's commit, if it verifies.
  const std::string upstream = upstream_hash_;
  return verify_signature(upstream)
      .then([this, upstream](std::optional<std::string> refusal) -> kj::Promise<bool> {
        if (refusal) return false;
        return keys_may_move_to(upstream);
      })
      .then([this, upstream](bool usable) -> kj::Promise<void> {
        if (usable) {
          keys_commit_ = upstream;
          return read_keys_at(upstream);
        }
        if (key_generation_ != 0) return kj::READY_NOW;
        return git_thread_.run<std::string>([git = git_.get()]() { return git->head_hash(); })
            .then([this](std::string head) -> kj::Promise<void> {
              if (head.empty()) {
                apply_keys(KeyScan{});
                return kj::READY_NOW;
              }
              return verify_signature(head).then([this, head](std::optional<std::string> refusal) {
                if (refusal) {
                  apply_keys(KeyScan{});
                  return kj::Promise<void>(kj::READY_NOW);
                }
                keys_commit_ = head;
                return read_keys_at(head);
              });
            });
      });
}

kj::Promise<bool> Service::keys_may_move_to(const std::string& commit) {
  const std::string& base = !keys_commit_.empty() ? keys_commit_ : !hash_.empty() ? hash_ : deployed_hash_;
  // The checkout's commit was accepted (forward, or by an operator's rollback): its keys count.
  if (settings_.getAllowForcePush() || base.empty() || base == commit || commit == hash_) return true;
  return git_thread_
      .run<Expected<bool, GitError>>([git = git_.get(), commit, base]() { return git->descends_from(commit, base); })
      .then([](Expected<bool, GitError> descends) { return descends && *descends; });
}

kj::Promise<void> Service::read_keys_at(const std::string& commit) {
  using Files = std::vector<std::pair<std::string, std::string>>;
  const bool from_checkout = settings_.getSigners().size() == 0;  // the fallback, only without signers
  return git_thread_
      .run<Expected<Files, GitError>>(
          [git = git_.get(), commit]() { return git->read_directory(commit, "ssh", kMaxKeyFiles, kMaxKeyFileBytes); })
      .then([this, commit, from_checkout](Expected<Files, GitError> files) {
        if (!files) {
          log_->warn("authorized keys: cannot read ssh/ of {}: {}", short_hash(commit),
                     redacted(files.error().message));
          if (key_generation_ == 0)
            apply_keys(from_checkout ? read_authorized_keys(settings_.getCheckoutDir().cStr()) : KeyScan{});
          return;
        }
        apply_keys(keys_from_files(*files));
      })
      .catch_([this, from_checkout](kj::Exception&& e) {
        log_->warn("authorized keys: {}", redacted(e.getDescription().cStr()));
        if (key_generation_ == 0)
          apply_keys(from_checkout ? read_authorized_keys(settings_.getCheckoutDir().cStr()) : KeyScan{});
      });
}

void Service::apply_keys(KeyScan scan) {
  for (const auto& problem : scan.problems) log_->warn("authorized keys: {}", problem);
  if (scan.keys == keys_ && key_generation_ != 0) return;
  keys_ = std::move(scan.keys);
  ++key_generation_;
  log_->info("{} authorized key{} from ssh/*.pub", keys_.size(), keys_.size() == 1 ? "" : "s");
  for (auto& waiter : key_waiters_) waiter->fulfill();
  key_waiters_.clear();
}

kj::Promise<void> Service::wait_for_keys(std::uint64_t after) {
  // Generation 0 is "not read yet" (the tracked head's keys come from the git thread): never an
  // answer, or a gateway would drop the keys it has for an empty list.
  if (key_generation_ != 0 && after != key_generation_) return kj::READY_NOW;
  // Long polls the gateway gave up on are still listed: drop them before adding one.
  key_waiters_.erase(
      std::remove_if(key_waiters_.begin(), key_waiters_.end(), [](auto& waiter) { return !waiter->isWaiting(); }),
      key_waiters_.end());
  auto pair = kj::newPromiseAndFulfiller<void>();
  key_waiters_.push_back(kj::mv(pair.fulfiller));
  return kj::mv(pair.promise);
}

std::string Service::describe_status() const {
  return fmt::format(
      "state:       {}\ncommit:      {}\nupstream:    {}\npinned:      {}\ndeployed:    {}\nlast change: {}\n"
      "last deploy: {}\ncompose:     {}\nerror:       {}\n",
      service_state_name(state_), hash_.empty() ? "-" : hash_, upstream_hash_.empty() ? "-" : upstream_hash_,
      pinned_hash_.empty() ? "-" : pinned_hash_, deployed_hash_.empty() ? "-" : deployed_hash_,
      format_time(last_change_), format_time(last_deploy_),
      [&] {
        const auto file = find_compose_file(settings_);
        return file.empty() ? std::string("-") : file;
      }(),
      last_error_.empty() ? "-" : last_error_);
}

void Service::fill_status(rpc::ServiceStatus::Builder status) const {
  status.setState(state_);
  status.setHash(hash_);
  status.setUpstreamHash(upstream_hash_);
  status.setPinnedHash(pinned_hash_);
  status.setLastChange(last_change_);
  status.setLastDeploy(last_deploy_);
  status.setLastError(last_error_);
  status.setComposeFile(find_compose_file(settings_));
}

// ---- running docker ------------------------------------------------------------------------

ComposeSetup Service::compose_setup(bool raw_file) const {
  ComposeSetup setup;
  setup.project = compose_project_name(settings_.getName().cStr());
  setup.checkout_dir = settings_.getCheckoutDir().cStr();
  if (!raw_file && has_validated_model())
    setup.compose_path = validated_file_;
  else
    setup.compose_path = setup.checkout_dir + "/" + find_compose_file(settings_);
  setup.program = compose_program_;
  setup.docker_config = docker_config_;
  setup.environment = compose_environment(settings_, docker_config_, path_prefix_);
  return setup;
}

ChildSpec Service::docker_spec(std::vector<std::string> argv, std::chrono::seconds timeout) const {
  ChildSpec spec;
  spec.argv = std::move(argv);
  spec.env = compose_environment(settings_, docker_config_, path_prefix_);
  spec.cwd = settings_.getCheckoutDir().cStr();
  spec.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  return spec;
}

kj::Promise<CollectedOutput> Service::compose_collect(std::vector<std::string> args, std::chrono::seconds timeout,
                                                      bool raw_file) {
  const auto setup = compose_setup(raw_file);
  return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
                     docker_spec(compose_argv(setup, args), timeout));
}

kj::Promise<int> Service::stream_compose(std::vector<std::string> compose_args,
                                         std::optional<std::chrono::seconds> timeout, OutputSink& output) {
  const auto setup = compose_setup();
  auto spec = docker_spec(compose_argv(setup, compose_args), timeout.value_or(0s));
  if (!timeout) spec.timeout.reset();
  auto child = kj::heap<ChildProcess>(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(), spec);
  // A reader that goes away must stop the command at once, even while the other stream idles
  // (logs -f): the first pump failure wins over waiting for both.
  auto failure = kj::newPromiseAndFulfiller<void>();
  auto* failed = failure.fulfiller.get();
  auto on_error = [failed](kj::Exception&& e) { failed->reject(kj::mv(e)); };
  auto pumps = kj::joinPromises(kj::arr(pump_stdout(*child, output, *io_.lowLevelProvider).catch_(on_error),
                                        pump(child->stderr_stream(), output, true).catch_(on_error)));
  auto& child_ref = *child;
  auto finished = pumps.exclusiveJoin(kj::mv(failure.promise))
                      .then([&child_ref]() { return child_ref.exited(); })
                      .then([&output, timeout](ChildExit exit) -> kj::Promise<int> {
                        if (!exit.timed_out) return exit.code;
                        return write_text(output, true,
                                          fmt::format("pgod: the command ran longer than {}s and was stopped\n",
                                                      timeout ? timeout->count() : 0))
                            .then([code = exit.code]() { return code; });
                      });
  if (timeout) {
    // A reader that stopped reading must not hold the verb (and the queue) past its limit.
    finished = finished.exclusiveJoin(
        io_.provider->getTimer().afterDelay((timeout->count() + 15) * kj::SECONDS).then([]() { return 124; }));
  }
  return finished.attach(kj::mv(child), kj::mv(failure.fulfiller));
}

kj::Promise<void> Service::registry_login() {
  kj::Promise<void> chain = kj::READY_NOW;
  for (auto login : settings_.getRegistries()) {
    auto spec =
        docker_spec({"docker", "login", "-u", login.getUser().cStr(), "--password-stdin", login.getRegistry().cStr()},
                    kDockerLoginTimeout);
    spec.stdin_text = std::string(login.getToken().cStr());  // never on argv
    std::string registry = login.getRegistry().cStr();
    chain = chain.then([this, spec = std::move(spec), registry]() {
      return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(), spec)
          .then([this, registry](CollectedOutput out) {
            if (out.exit.code == 0)
              log_->debug("logged in to {}", registry);
            else
              log_->error("docker login to {} failed (exit {}): {}", registry, out.exit.code, redacted(tail(out.err)));
          });
    });
  }
  return chain;
}

// Credentials live in DOCKER_CONFIG/config.json only while a job that needs them runs: the
// guard removes the file on every way out (a cancelled job never reaches its logout).
struct Service::CredentialsGuard {
  std::string config_json;
  ~CredentialsGuard() {
    if (!config_json.empty()) unlink(config_json.c_str());
  }
};

kj::Own<Service::CredentialsGuard> Service::credentials_guard() const {
  auto guard = kj::heap<CredentialsGuard>();
  if (settings_.getRegistries().size() > 0) guard->config_json = docker_config_ + "/config.json";
  return guard;
}

kj::Promise<void> Service::registry_logout() {
  kj::Promise<void> chain = kj::READY_NOW;
  for (auto login : settings_.getRegistries()) {
    std::string registry = login.getRegistry().cStr();
    chain = chain.then([this, registry]() {
      return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
                         docker_spec({"docker", "logout", registry}, kDockerLoginTimeout))
          .then([this, registry](CollectedOutput out) {
            if (out.exit.code != 0) log_->warn("docker logout from {} failed: {}", registry, redacted(tail(out.err)));
          });
    });
  }
  return chain;
}

// ---- the cycle -----------------------------------------------------------------------------

kj::Promise<void> Service::run() {
  load_persisted();
  if (mkdir(docker_config_.c_str(), 0700) != 0 && errno != EEXIST)
    log_->error("cannot create {}: {}", docker_config_, errno_text(errno));

  // The keys of the tracked head as last fetched (or whatever is checked out): a worker
  // restarted during a git outage still lets the developers in.
  detached_.add(refresh_keys());
  auto detected = detect_compose_program().fork();
  auto known = detected.addBranch();
  compose_detected_ = kj::mv(detected);
  return known
      .then([this]() {
        log_->info("tracking {} branch {} with {}", redact_url(settings_.getRepository().cStr()),
                   settings_.getBranch().cStr(), fmt::join(compose_program_, " "));
        return serialized<void>([this]() { return cycle_for("start"); }).catch_([this](kj::Exception&& e) {
          log_->error("the cycle failed: {}", redacted(e.getDescription().cStr()));
        });
      })
      .then([this]() { return schedule_cycles(); });
}

kj::Promise<void> Service::detect_compose_program() {
  // Which compose program: the plugin when it answers, else docker-compose.
  const auto program = settings_.getComposeProgram();
  if (program == rpc::ServiceSettings::ComposeProgram::PLUGIN) {
    compose_program_ = {"docker", "compose"};
    return kj::READY_NOW;
  }
  if (program == rpc::ServiceSettings::ComposeProgram::STANDALONE) {
    compose_program_ = {"docker-compose"};
    return kj::READY_NOW;
  }
  return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
                     docker_spec({"docker", "compose", "version"}, 30s))
      .then(
          [this](CollectedOutput out) {
            compose_program_ = out.exit.code == 0 ? std::vector<std::string>{"docker", "compose"}
                                                  : std::vector<std::string>{"docker-compose"};
          },
          [this](kj::Exception&&) { compose_program_ = {"docker-compose"}; });
}

kj::Promise<int> Service::retire() {
  // The checkout of a removed service is untrusted and may be half gone: bring the project down
  // with a compose file of our own, so nothing of the repository is read. Its one service never
  // exists, so every container of the project is an orphan that `--remove-orphans` removes;
  // the service is there because compose only removes the default network of a project that
  // has one. `down` never pulls its image.
  return detect_compose_program().then([this]() {
    constexpr const char* kRetireProject =
        "version: \"3.8\"\nservices:\n  pgod-retire:\n    image: pgod-retire:never-pulled\n";
    auto written = replace_file(settings_.getStateDir().cStr(), "compose.retire.yaml", kRetireProject, 0600);
    if (!written) fail(fmt::format("cannot write the compose file for down: {}", written.error()));
    auto setup = compose_setup();
    setup.compose_path = std::string(settings_.getStateDir().cStr()) + "/compose.retire.yaml";
    log_->info("service removed from the config: compose down --remove-orphans");
    return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
                       docker_spec(compose_argv(setup, {"down", "--remove-orphans"}), kComposeDownTimeout))
        .then([this](CollectedOutput out) {
          if (out.exit.code != 0)
            log_->error("compose down failed (exit {}): {}", out.exit.code, redacted(tail(out.err)));
          else
            log_->info("compose down done");
          return out.exit.code;
        });
  });
}

kj::Promise<void> Service::schedule_cycles() {
  // What the cycle used for a while (the fetch, YAML, compose's output) goes back to the system
  // before the worker idles for a poll interval: an idle worker is mostly heap.
  malloc_trim(0);
  const auto interval = std::chrono::nanoseconds(settings_.getPollIntervalNs());
  static thread_local std::mt19937_64 random{std::random_device{}()};
  // Jitter up to half the interval, as the original, so many hosts do not fetch in step.
  const auto jitter = std::uniform_int_distribution<std::int64_t>(0, interval.count() / 2)(random);
  const auto delay = interval.count() + jitter;
  return io_.provider->getTimer()
      .afterDelay(delay * kj::NANOSECONDS)
      .then([this]() {
        return serialized<void>([this]() { return cycle_for("poll"); }).catch_([this](kj::Exception&& e) {
          log_->error("the cycle failed: {}", redacted(e.getDescription().cStr()));
        });
      })
      .then([this]() { return schedule_cycles(); });
}

kj::Promise<void> Service::cycle_for(std::string trigger) {
  trigger_ = std::move(trigger);
  job_started_ = std::chrono::steady_clock::now();
  return cycle();
}

kj::Promise<void> Service::cycle() {
  sync_error_.clear();
  if (stop_file_exists()) {
    if (state_ == rpc::ServiceState::STOPPED) return kj::READY_NOW;
    log_->info("{} exists: bringing the service down", settings_.getStopFile().cStr());
    return compose_collect({"down"}, kComposeDownTimeout).then([this](CollectedOutput out) {
      if (out.exit.code != 0)
        broken(fmt::format("compose down for the stop file failed (exit {}): {}", out.exit.code, tail(out.err)));
      else
        set_state(rpc::ServiceState::STOPPED);
    });
  }
  if (state_ == rpc::ServiceState::STOPPED) log_->info("stop file removed: bringing the service up");

  return fetch_upstream().then([this](bool fetched) {
    return refresh_keys().then([this, fetched]() -> kj::Promise<void> {
      if (frozen_ || !pinned_hash_.empty()) {
        // Not tracking upstream: deploy what the checkout holds. Right after the repository
        // moved out of the checkout (an upgrade) nothing is checked out by it yet: the pin, or
        // what was deployed, is judged and checked out first.
        return git_thread_.run<std::string>([git = git_.get()]() { return git->head_hash(); })
            .then([this](std::string head) -> kj::Promise<void> {
              hash_ = std::move(head);
              if (!hash_.empty()) return deploy_if_signed();
              const std::string target = pinned_hash_.empty() ? deployed_hash_ : pinned_hash_;
              if (target.empty()) return kj::READY_NOW;
              return advance_to(target).then([this](bool moved) -> kj::Promise<void> {
                if (!moved) return kj::READY_NOW;
                return deploy();
              });
            });
      }
      if (!failed_hash_.empty()) {
        // A commit that failed its health gate is not tried again until upstream moves on.
        if (upstream_hash_ == failed_hash_) return stay_reverted();
        if (fetched) log_->info("upstream moved past {}, which failed its health gate", short_hash(failed_hash_));
      }
      if (!fetched) return kj::READY_NOW;  // git trouble never touches the containers
      // HEAD as the repository says (a restarted worker knows it from there): a commit already
      // checked out was judged when it moved there.
      return git_thread_.run<std::string>([git = git_.get()]() { return git->head_hash(); })
          .then([this](std::string head) {
            if (!head.empty()) hash_ = std::move(head);
            return forward_only(upstream_hash_);
          })
          .then([this](bool forward) -> kj::Promise<bool> {
            if (!forward) return false;
            return advance_to(upstream_hash_);
          })
          .then([this](bool moved) -> kj::Promise<void> {
            if (!moved) return kj::READY_NOW;
            return deploy();
          });
    });
  });
}

kj::Promise<bool> Service::fetch_upstream() {
  const bool tracking = !frozen_ && pinned_hash_.empty();
  return git_thread_.run<Expected<std::string, GitError>>([git = git_.get()]() { return git->fetch(); })
      .then([this, tracking](Expected<std::string, GitError> fetched) {
        if (!fetched) {
          const auto message = redacted(fetched.error().message);
          sync_error_ = message;
          if (!tracking) {
            log_->warn("git: {}", message);
            return false;
          }
          ++fetch_failures_;
          log_->warn("git: {} ({} in a row)", message, fetch_failures_);
          if (fetch_failures_ >= kFetchFailuresBeforeDiff || hash_.empty()) set_state(rpc::ServiceState::DIFF, message);
          return false;
        }
        fetch_failures_ = 0;
        if (*fetched != upstream_hash_) {
          upstream_hash_ = *fetched;
          persist();
        }
        if (state_ == rpc::ServiceState::DIFF) {
          last_error_.clear();
          set_state(rpc::ServiceState::OK);
        }
        return true;
      });
}

kj::Promise<std::optional<std::string>> Service::judge_commit(const std::string& commit) {
  return verify_signature(commit).then([this, commit](std::optional<std::string> refusal) {
    if (refusal) return kj::Promise<std::optional<std::string>>(kj::mv(refusal));
    return judge_tree(commit);
  });
}

kj::Promise<std::optional<std::string>> Service::verify_signature(const std::string& commit) {
  if (settings_.getSigners().size() == 0) return std::optional<std::string>();
  if (commit.empty()) return std::optional<std::string>("no commit to check the signature of");
  if (commit == signature_verified_) return std::optional<std::string>();
  return git_thread_
      .run<Expected<GitTracker::Signature, GitError>>(
          [git = git_.get(), commit]() { return git->commit_signature(commit); })
      .then([this, commit](Expected<GitTracker::Signature, GitError> found) -> kj::Promise<std::optional<std::string>> {
        if (!found) return std::optional<std::string>(redacted("cannot read the signature: " + found.error().message));
        SignatureCheck check;
        for (auto line : settings_.getSigners()) check.signers.emplace_back(line.cStr());
        check.work_dir = std::string(settings_.getStateDir().cStr()) + "/signatures";
        check.home = settings_.getHome().cStr();
        return verify_commit_signature(io_, check, short_hash(commit), std::move(found->signature),
                                       std::move(found->signed_data))
            .then([this, commit](SignatureVerdict verdict) {
              if (!verdict.refusal) {
                log_->info("commit {} is signed by {}", short_hash(commit), verdict.signer);
                signature_verified_ = commit;
              }
              return verdict.refusal;
            });
      });
}

kj::Promise<std::optional<std::string>> Service::judge_tree(const std::string& commit) {
  return git_thread_
      .run<Expected<std::string, GitError>>(
          [git = git_.get(), commit, staging = staging_dir_]() { return git->stage(commit, staging); })
      .then([this](Expected<std::string, GitError> staged) -> kj::Promise<std::optional<std::string>> {
        if (!staged) return std::optional<std::string>(redacted("cannot stage the commit: " + staged.error().message));
        // The running containers' bind sources are resolved again whenever one restarts: the new
        // tree must not turn them into something else (data/ into a symlink to /, even when the
        // new compose file no longer binds it).
        return normalize(*staged).then(
            [this, root = *staged](Normalized) -> std::optional<std::string> {
              if (auto refused = refusals_new_in(root))
                return "the model the containers run would be refused in this commit: " + *refused;
              return std::nullopt;
            },
            [this, root = *staged](kj::Exception&& e) {
              // Compose ran in the staging tree: its paths are named as the checkout's, which is
              // where the commit would land.
              std::string text = e.getDescription().cStr();
              const std::string live = settings_.getCheckoutDir().cStr();
              for (auto at = text.find(root); at != std::string::npos; at = text.find(root, at + live.size()))
                text.replace(at, root.size(), live);
              return std::optional<std::string>(redacted(text));
            });
      });
}

kj::Promise<void> Service::deploy_if_signed() {
  return verify_signature(hash_).then([this](std::optional<std::string> refusal) -> kj::Promise<void> {
    if (!refusal) return deploy();
    broken(fmt::format("the checkout's commit {} is not deployed: {}", short_hash(hash_), *refusal));
    return kj::READY_NOW;
  });
}

kj::Promise<bool> Service::forward_only(const std::string& commit) {
  // Only a service with signers holds its history fixed: a force-push could otherwise put an
  // older signed commit (with a known hole) back in place of the deployed one.
  // What runs is the floor: the checkout's commit, or (a repository rebuilt, an upgrade) the
  // one last deployed.
  const std::string floor = hash_.empty() ? deployed_hash_ : hash_;
  if (settings_.getSigners().size() == 0 || settings_.getAllowForcePush() || floor.empty() || commit == floor)
    return true;
  return git_thread_
      .run<Expected<bool, GitError>>([git = git_.get(), commit, floor]() { return git->descends_from(commit, floor); })
      .then([this, commit, floor](Expected<bool, GitError> descends) {
        if (descends && *descends) return true;
        const std::string why =
            descends ? fmt::format(
                           "upstream {} does not descend from the deployed {} (a force-push): with signers set "
                           "it is deployed only when an operator says so (pgoctl {}//rollback {}, then "
                           "unfreeze) or with allow_force_push = true",
                           short_hash(commit), short_hash(hash_), settings_.getName().cStr(), short_hash(commit))
                     : redacted(descends.error().message);
        if (last_error_ != why) note_deploy(commit, "refused", why);
        broken(why);
        return false;
      });
}

kj::Promise<bool> Service::advance_to(const std::string& commit, bool going_back) {
  // A new commit is judged in the staging tree before the checkout moves: a refused one leaves
  // the checkout (which running containers mount), the containers and the state as they were.
  kj::Promise<std::optional<std::string>> verdict = std::optional<std::string>();
  if (commit != hash_)
    verdict = judge_commit(commit);
  else
    verdict = verify_signature(commit);  // signers added since it was checked out: it must pass them too
  return verdict.then([this, commit, going_back](std::optional<std::string> refusal) -> kj::Promise<bool> {
    if (refusal) {
      // Right after an upgrade nothing is checked out by the new repository yet: what runs is
      // what was deployed.
      const std::string& current = hash_.empty() ? deployed_hash_ : hash_;
      broken(fmt::format("commit {} refused (the checkout stays at {}): {}", short_hash(commit), short_hash(current),
                         *refusal));
      note_deploy(commit, "refused", *refusal);
      return false;
    }
    return git_thread_
        .run<Expected<SyncResult, GitError>>([git = git_.get(), commit]() { return git->move_to(commit); })
        .then([this, going_back](Expected<SyncResult, GitError> result) {
          if (!result) {
            const auto message = redacted(result.error().message);
            sync_error_ = message;
            log_->warn("git: {}", message);
            set_state(rpc::ServiceState::DIFF, message);
            return false;
          }
          if (result->recloned) log_->warn("the repository was broken and has been rebuilt");
          if (result->force_pushed && !going_back) log_->warn("upstream was force-pushed: checkout reset to it");
          for (const auto& path : result->discarded) log_->warn("discarded local change to {}", path);
          if (result->current_hash != hash_) {
            if (!hash_.empty()) log_->info("moved {} -> {}", short_hash(hash_), short_hash(result->current_hash));
            last_change_ = now_seconds();
          }
          hash_ = result->current_hash;
          return true;
        });
  });
}

PolicyContext Service::policy_context(const std::string& root) const { return worker::policy_context(settings_, root); }

namespace {
std::string refusal_text(const std::string& compose_file, const std::vector<Violation>& violations) {
  std::string reasons;
  for (const auto& violation : violations) reasons += (reasons.empty() ? "" : "; ") + violation.to_string();
  return fmt::format("{} refused: {}", compose_file, reasons);
}
}  // namespace

kj::Promise<Service::Normalized> Service::normalize(const std::string& root) {
  // Every refusal, the early ones too, as a rejected promise: callers attach their handlers to
  // what this returns.
  return kj::evalNow([this, root]() { return normalize_now(root); });
}

kj::Promise<Service::Normalized> Service::normalize_now(const std::string& root) {
  const std::string dir = root.empty() ? std::string(settings_.getCheckoutDir().cStr()) : root;
  const auto compose_file = find_compose_file(settings_, dir);
  if (compose_file.empty()) {
    const std::string configured = settings_.getComposeFile().cStr();
    fail(configured.empty() ? std::string("no compose file in the checkout (looked for compose.yaml, compose.yml, "
                                          "docker-compose.yml, docker-compose.yaml)")
                            : "the configured compose file " + configured + " is not in the checkout");
  }
  // The files compose would read while it builds the model (.env, env_file, include, ...) are
  // judged before compose reads any of them.
  const auto context = policy_context(root);
  if (auto host_files = check_raw_host_files(context, compose_file); !host_files.empty())
    fail(refusal_text(compose_file, host_files));
  auto setup = compose_setup(/*raw_file=*/true);
  setup.checkout_dir = dir;
  setup.compose_path = dir + "/" + compose_file;
  auto spec = docker_spec(compose_argv(setup, {"config"}), kComposeConfigTimeLimit);
  spec.cwd = dir;
  limit_as_compose_config(spec);
  return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(), spec)
      .then([compose_file, context](CollectedOutput out) {
        if (out.exit.timed_out)
          fail(fmt::format("compose config ran longer than {} s and was stopped", kComposeConfigTimeLimit.count()));
        if (out.exit.output_limit_exceeded)
          fail(fmt::format("compose config printed more than {} MiB and was stopped", kComposeConfigOutputLimit >> 20));
        if (out.exit.code != 0) fail(fmt::format("compose config failed (exit {}): {}", out.exit.code, tail(out.err)));
        auto verdict = check_compose_policy(out.out, context);
        if (!verdict) fail("cannot judge the compose file: " + verdict.error());
        if (!verdict->empty()) fail(refusal_text(compose_file, *verdict));
        // compose v1's `config` drops x- extensions and folds env_file into environment: the raw
        // file is read too, for x-pgo and for what it references.
        std::ifstream raw(context.checkout_dir + "/" + compose_file);
        std::string text(kMaxComposeFileBytes, '\0');
        raw.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<std::size_t>(raw.gcount()));
        Normalized normalized;
        normalized.yaml = out.out;
        normalized.referenced = referenced_checkout_paths(out.out, context.checkout_dir);
        for (auto& path : referenced_checkout_paths(text, context.checkout_dir)) normalized.referenced.push_back(path);
        normalized.referenced.push_back(compose_file);
        std::sort(normalized.referenced.begin(), normalized.referenced.end());
        normalized.referenced.erase(std::unique(normalized.referenced.begin(), normalized.referenced.end()),
                                    normalized.referenced.end());
        normalized.reload = compose_reload_enabled(text);
        normalized.health_timeout = compose_health_timeout(text);
        return normalized;
      });
}

// What a deploy carries from stage to stage.
struct Service::DeployPlan {
  Normalized model;
  bool down_first = false;      // the compose file or a file it references changed: down, then up
  bool import_changed = false;  // the Caddy import was rewritten: reload once up
};

// The checkout's model judged, the down decided, the Caddy import written, compose down (when
// decided) and up with registry credentials, then the reload if the import changed. Any failure
// leaves the service BROKEN with the reason.
kj::Promise<void> Service::deploy() {
  if (stop_file_exists()) return kj::READY_NOW;  // the next cycle brings it down
  auto owned_plan = kj::heap<DeployPlan>();
  auto& plan = *owned_plan;
  return normalize()
      .then([this, &plan](Normalized model) { return plan_deploy(plan, kj::mv(model)); })
      .then([this]() { return write_caddy_import(); })
      .then([&plan](bool import_changed) { plan.import_changed = import_changed; })
      .then([this, &plan]() { return compose_down_up(plan); })
      .then([this, &plan]() { return reload_if_import_changed(plan); })
      .attach(kj::mv(owned_plan))
      .catch_([this](kj::Exception&& e) {
        broken(e.getDescription().cStr());
        if (hash_ != deployed_hash_) note_deploy(hash_, "broken", last_error_);
      });
}

// Whether this deploy brings the containers down first: when what the model reads changed
// since the deployed commit, unless x-pgo says reload: false or the service says ignore.
kj::Promise<void> Service::plan_deploy(DeployPlan& plan, Normalized model) {
  plan.model = kj::mv(model);
  kj::Promise<bool> changed = deployed_hash_ != hash_;
  if (deployed_hash_ != hash_ && !deployed_hash_.empty()) {
    changed = git_thread_
                  .run<Expected<std::vector<std::string>, GitError>>(
                      [git = git_.get(), from = deployed_hash_, to = hash_, paths = plan.model.referenced]() {
                        return git->changed_paths(from, to, paths);
                      })
                  .then([this](Expected<std::vector<std::string>, GitError> paths) {
                    if (!paths) {
                      log_->warn("cannot compare commits, treating as changed: {}", redacted(paths.error().message));
                      return true;
                    }
                    if (!paths->empty()) log_->info("changed: {}", fmt::join(*paths, ", "));
                    return !paths->empty();
                  });
  }
  return changed.then([this, &plan](bool changed) {
    plan.down_first = changed && !deployed_hash_.empty() && plan.model.reload && !settings_.getIgnore();
  });
}

// Registry credentials exist only from the login to the logout (or the guard, if cancelled).
kj::Promise<void> Service::compose_down_up(DeployPlan& plan) {
  auto guard = credentials_guard();
  return registry_login()
      .then([this, &plan]() { return down_before_up(plan); })
      .then([this, &plan]() { return compose_up(plan); })
      .then([this]() { return registry_logout(); })
      .attach(kj::mv(guard));
}

kj::Promise<void> Service::down_before_up(const DeployPlan& plan) {
  if (!plan.down_first) return kj::READY_NOW;
  log_->info("compose file or a file it references changed: down, then up");
  // Down with the model that brought the containers up.
  return compose_collect({"down"}, kComposeDownTimeout).then([this](CollectedOutput out) {
    if (out.exit.code != 0) log_->error("compose down failed (exit {}): {}", out.exit.code, redacted(tail(out.err)));
  });
}

// A new commit's `up` goes through the health gate; the same commit's (every cycle's `up -d`)
// does not: it was judged when it came.
kj::Promise<void> Service::compose_up(DeployPlan& plan) {
  if (!save_validated(plan.model.yaml)) fail("cannot save the validated compose model");
  const bool new_commit = hash_ != deployed_hash_;
  return compose_collect({"up", "-d"}, kComposeUpTimeout)
      .then([this, new_commit, model = plan.model.yaml,
             timeout = health_timeout(plan.model.health_timeout)](CollectedOutput up) -> kj::Promise<void> {
        if (up.exit.code != 0 || !new_commit) {
          record_deploy(up);
          return kj::READY_NOW;
        }
        return gate_deploy(model, timeout);
      });
}

void Service::record_deploy(const CollectedOutput& up) {
  if (up.exit.code != 0) {
    broken(fmt::format("compose up failed (exit {}): {}", up.exit.code, tail(up.err)));
    note_deploy(hash_, "failed", last_error_);
    return;
  }
  if (deployed_hash_ != hash_) {
    log_->info("deployed {}", short_hash(hash_));
    note_deploy(hash_, "deployed");
  }
  if (!failed_hash_.empty() && hash_ != failed_hash_) {
    failed_hash_.clear();  // a newer commit is up: the failed one is history
    failed_reason_.clear();
  }
  deployed_hash_ = hash_;
  last_deploy_ = now_seconds();
  persist();
  settle_state();
}

kj::Promise<void> Service::reload_if_import_changed(const DeployPlan& plan) {
  if (plan.import_changed && settings_.getReload().size() > 0 && state_ != rpc::ServiceState::BROKEN)
    return run_reload();
  return kj::READY_NOW;
}

kj::Promise<bool> Service::write_caddy_import() {
  if (settings_.getImportPath().size() == 0) return false;
  auto written = write_file_beneath(settings_.getCheckoutDir().cStr(), settings_.getImportPath().cStr(),
                                    settings_.getImportContent().cStr());
  if (!written) {
    log_->error("cannot write the Caddy import {}: {}", settings_.getImportPath().cStr(), written.error());
    return false;
  }
  if (*written) log_->info("wrote the Caddy import {}", settings_.getImportPath().cStr());
  return *written;
}

kj::Promise<void> Service::run_reload() {
  auto command = parse_command_line(settings_.getReload().cStr());
  if (!command || command->verb != Verb::kExec) return kj::READY_NOW;  // validated by pgod already
  auto checked = check_arguments(*find_worker_verb(Verb::kExec), command->args);
  if (!checked) {
    log_->error("reload refused: {}", checked.error());
    return kj::READY_NOW;
  }
  return compose_collect(checked->compose_args, 2min).then([this](CollectedOutput out) {
    if (out.exit.code == 0)
      log_->info("reload ran");
    else
      log_->error("reload failed (exit {}): {}", out.exit.code, redacted(tail(out.err)));
  });
}

// ---- verbs ---------------------------------------------------------------------------------

namespace {

// A command's history line, written when it ends: with its answer, or as abandoned when its
// caller went away first (the call is dropped, and this with it).
class CommandEntry {
 public:
  CommandEntry(std::string state_dir, std::shared_ptr<spdlog::logger> log, CommandRecord record)
      : state_dir_(std::move(state_dir)), log_(std::move(log)), record_(std::move(record)) {}
  ~CommandEntry() {
    // Its call was dropped: the client went away, or the worker is stopping. (A destructor must
    // not throw.)
    if (!written_) try {
        write("abandoned", "ended before it answered (its client went away, or the worker stopped)", record_.commit);
      } catch (...) {
      }
  }
  KJ_DISALLOW_COPY(CommandEntry);

  // `detail` is already redacted (Service::redacted).
  void write(std::string result, std::string detail, const std::string& commit) {
    written_ = true;
    // A refusal before anything ran makes room first, as a read does.
    if (result == "exit 400" || result == "exit 406") record_.expendable = true;
    record_.result = std::move(result);
    record_.detail = std::move(detail);
    record_.commit = commit;
    record_.time = now_seconds();
    record_.duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
    if (!append_command(state_dir_, record_)) log_->warn("cannot add to the command history in {}", state_dir_);
  }

 private:
  std::string state_dir_;
  std::shared_ptr<spdlog::logger> log_;
  CommandRecord record_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool written_ = false;
};

// "key SHA256:…, deploy@192.0.2.7:51234 (ssh/ci.pub)", or root: the fingerprint first, where no
// user name can push it out of the bounded field.
std::string caller_description(const Caller& caller) {
  return (caller.fingerprint.empty() ? "" : "key " + caller.fingerprint + ", ") + caller_name(caller.comment);
}

}  // namespace

kj::Promise<VerbResult> Service::run_verb(Verb verb, std::vector<std::string> args, OutputSink& output,
                                          const Caller& caller) {
  const auto* row = find_worker_verb(verb);
  CommandRecord record;
  const std::string arguments = redact_arguments(args);
  record.command = redacted(std::string(verb_info(verb).words) + (arguments.empty() ? "" : " " + arguments));
  record.caller = caller_description(caller);
  record.commit = hash_;
  record.expendable = row != nullptr && (row->turn == Turn::kAtOnce || row->turn == Turn::kRead);
  auto entry = kj::heap<CommandEntry>(settings_.getStateDir().cStr(), log_, std::move(record));
  auto& written = *entry;
  return dispatch_verb(verb, std::move(args), output, caller.comment)
      .then(
          [this, &written](VerbResult result) {
            written.write(fmt::format("exit {}", result.exit_status), redacted(result.message), hash_);
            return result;
          },
          [this, &written](kj::Exception&& e) -> VerbResult {
            written.write("error", redacted(e.getDescription().cStr()), hash_);
            kj::throwFatalException(kj::mv(e));
          })
      .attach(kj::mv(entry));
}

kj::Promise<VerbResult> Service::dispatch_verb(Verb verb, std::vector<std::string> args, OutputSink& output,
                                               const std::string& caller) {
  // A worker that has just started serves at once, but may not know its compose program yet.
  if (compose_program_.empty())
    KJ_IF_MAYBE (detected, compose_detected_) {
      return detected->addBranch().then([this, verb, args = std::move(args), &output, caller]() mutable {
        return dispatch_verb(verb, std::move(args), output, caller);
      });
    }
  const auto* row = find_worker_verb(verb);
  if (row == nullptr)
    return VerbResult{static_cast<std::uint32_t>(Status::kNotAcceptable),
                      not_acceptable_message(verb_info(verb).words)};
  auto checked = check_arguments(*row, args);
  if (!checked) return VerbResult{static_cast<std::uint32_t>(Status::kNotAcceptable), checked.error()};
  log_->info("{}: {}{}", caller.empty() ? "root" : caller, verb_info(verb).words, loggable_args(args));
  return (this->*row->handler)(VerbCall{*row, std::move(*checked), output, caller});
}

kj::Promise<VerbResult> Service::in_turn(const WorkerVerb& row, bool follow,
                                         kj::Function<kj::Promise<VerbResult>()> job) {
  switch (row.turn) {
    case Turn::kAtOnce:
      return job();
    case Turn::kQueued:
      return serialized<VerbResult>(kj::mv(job));
    case Turn::kRead:
      return in_read_slot(follow, kj::mv(job));
    case Turn::kLongRead:
      return in_read_slot(true, kj::mv(job));
    case Turn::kToTheEnd:
      break;
  }
  KJ_FAIL_REQUIRE("a run-to-the-end verb runs its job through run_to_end", std::string(verb_info(row.verb).words));
}

kj::Promise<VerbResult> Service::in_read_slot(bool long_running, kj::Function<kj::Promise<VerbResult>()> job) {
  auto& slots = long_running ? long_reads_ : short_reads_;
  return slots.acquire().then([job = kj::mv(job),
                               long_running](ReadSlots::Grant grant) mutable -> kj::Promise<VerbResult> {
    if (!grant.slot) {
      auto refusal = long_running
                         ? fmt::format("too many logs -f and exec at once for this service (at most {})", kMaxLongReads)
                         : grant.refusal;
      return VerbResult{static_cast<std::uint32_t>(Status::kInternalServerError), std::move(refusal)};
    }
    return job().attach(kj::mv(grant.slot));
  });
}

kj::Promise<VerbResult> Service::answer_status(VerbCall call) {
  return in_turn(call.row, false,
                 [this, &output = call.output]() { return write_then_exit(output, kToStdout, describe_status(), 0); });
}

kj::Promise<VerbResult> Service::answer_history(VerbCall call) {
  return in_turn(call.row, false, [this, &output = call.output]() {
    const std::string state_dir = settings_.getStateDir().cStr();
    return write_then_exit(output, kToStdout, format_history(read_history(state_dir), read_commands(state_dir)), 0);
  });
}

kj::Promise<VerbResult> Service::answer_git_hash(VerbCall call) {
  return in_turn(call.row, false, [this, &output = call.output]() {
    return write_then_exit(output, kToStdout, (hash_.empty() ? "-" : hash_) + "\n", 0);
  });
}

// The tracked branch's head, freshly fetched when the remote answers: what the next deploy
// would run, judged in the staging tree whether or not it has deployed.
kj::Promise<VerbResult> Service::answer_load(VerbCall call) {
  return in_turn(call.row, false, [this, &output = call.output]() {
    return git_thread_.run<Expected<std::string, GitError>>([git = git_.get()]() { return git->fetch(); })
        .then([this, &output](Expected<std::string, GitError> fetched) {
          return judge_fetched_head(output, kj::mv(fetched));
        });
  });
}

kj::Promise<VerbResult> Service::judge_fetched_head(OutputSink& output, Expected<std::string, GitError> fetched) {
  std::string note;
  if (fetched)
    upstream_hash_ = *fetched;
  else
    note = "pgod: the fetch failed, judging the last fetched commit: " + redacted(fetched.error().message) + "\n";
  if (upstream_hash_.empty()) return write_then_exit(output, kToStderr, note + "pgod: nothing fetched yet\n", 1);
  return judge_commit(upstream_hash_).then([this, &output, note](std::optional<std::string> refusal) {
    if (refusal) return write_then_exit(output, kToStderr, note + *refusal + "\n", 1);
    const auto file = find_compose_file(settings_, staging_dir_);
    return write_text(output, kToStderr, note).then([&output, file]() {
      return write_then_exit(output, kToStdout, file + ": OK\n", 0);
    });
  });
}

kj::Promise<VerbResult> Service::answer_git_pull(VerbCall call) {
  if (frozen_ || !pinned_hash_.empty())
    return write_then_exit(call.output, kToStderr,
                           fmt::format("{}: not pulling (unfreeze first)\n", frozen_ ? "FROZEN" : "ROLLBACK"), 1);
  // The state forgives a failed fetch or two (DIFF after three in a row), but whoever asked
  // for this pull is told at once. Shared with the cycle, which runs on if the caller leaves.
  auto fetch_error = std::make_shared<std::string>();
  return run_to_end([this, fetch_error, trigger = "git pull by " + caller_name(call.caller)]() {
           return cycle_for(trigger).then([this, fetch_error]() { *fetch_error = sync_error_; });
         })
      .then([this, &output = call.output, fetch_error]() {
        const bool good = state_ == rpc::ServiceState::OK && fetch_error->empty();
        auto text = describe_status();
        if (!fetch_error->empty() && *fetch_error != last_error_)
          text += "pgod: the fetch failed: " + *fetch_error + "\n";
        return write_then_exit(output, !good, text, good ? 0 : 1);
      });
}

kj::Promise<VerbResult> Service::answer_freeze(VerbCall call) {
  return in_turn(call.row, false, [this, &output = call.output]() {
    frozen_ = true;
    if (!persist()) {
      frozen_ = false;
      return write_then_exit(output, kToStderr, "pgod: cannot save the frozen state (see the worker's log)\n", 1);
    }
    if (state_ == rpc::ServiceState::OK) set_state(rpc::ServiceState::FROZEN);
    return write_then_exit(output, kToStdout, fmt::format("frozen at {}\n", short_hash(hash_)), 0);
  });
}

kj::Promise<VerbResult> Service::answer_unfreeze(VerbCall call) {
  return run_to_end([this, trigger = "unfreeze by " + caller_name(call.caller)]() {
           frozen_ = false;
           pinned_hash_.clear();
           // The operator says: track upstream again, a commit that failed its gate included.
           failed_hash_.clear();
           failed_reason_.clear();
           persist();
           // Tracking again; the cycle says whether that works.
           if (state_ == rpc::ServiceState::FROZEN || state_ == rpc::ServiceState::ROLLBACK ||
               state_ == rpc::ServiceState::REVERTED)
             set_state(rpc::ServiceState::OK);
           return cycle_for(trigger);
         })
      .then([this, &output = call.output]() { return write_then_exit(output, kToStdout, describe_status(), 0); });
}

kj::Promise<VerbResult> Service::answer_rollback(VerbCall call) {
  std::string wanted = call.arguments.compose_args.front();
  // An error for the caller, empty on success. Shared with the job, which runs on (and may
  // still set it) after a caller that went away has dropped its side.
  auto error = std::make_shared<std::string>();
  return run_to_end([this, wanted = std::move(wanted), error, trigger = "rollback by " + caller_name(call.caller)]() {
           trigger_ = trigger;
           job_started_ = std::chrono::steady_clock::now();
           return roll_back_to(wanted, error);
         })
      .then([this, &output = call.output, error]() {
        if (!error->empty()) return write_then_exit(output, kToStderr, *error + "\n", 1);
        const bool good = state_ == rpc::ServiceState::ROLLBACK;
        return write_then_exit(output, !good, describe_status(), good ? 0 : 1);
      });
}

kj::Promise<void> Service::roll_back_to(std::string wanted, std::shared_ptr<std::string> error) {
  return git_thread_
      .run<Expected<std::string, GitError>>([git = git_.get(), wanted]() { return git->resolve_commit(wanted); })
      .then([this, error](Expected<std::string, GitError> resolved) {
        return judged_rollback_target(kj::mv(resolved), error);
      })
      .then([this](std::string commit) {
        return git_thread_.run<Expected<SyncResult, GitError>>(
            [git = git_.get(), commit]() -> Expected<SyncResult, GitError> {
              if (commit.empty()) return Unexpected{GitError{""}};  // refused: the error says why
              return git->checkout(commit);
            });
      })
      .then([this, error](Expected<SyncResult, GitError> checked_out) {
        return pin_and_deploy(kj::mv(checked_out), error);
      });
}

// The full hash of the rollback target if it passes the policy, else empty with `error` set.
kj::Promise<std::string> Service::judged_rollback_target(Expected<std::string, GitError> resolved,
                                                         std::shared_ptr<std::string> error) {
  if (!resolved) {
    *error = redacted(resolved.error().message);
    return std::string();
  }
  return judge_commit(*resolved).then([this, error, commit = *resolved](std::optional<std::string> refusal) {
    if (!refusal) return commit;
    *error = fmt::format("pgod: commit {} is refused, the checkout stays at {}: {}", short_hash(commit),
                         short_hash(hash_), *refusal);
    return std::string();
  });
}

kj::Promise<void> Service::pin_and_deploy(Expected<SyncResult, GitError> checked_out,
                                          std::shared_ptr<std::string> error) {
  if (!checked_out) {
    if (error->empty()) *error = redacted(checked_out.error().message);
    return kj::READY_NOW;
  }
  hash_ = pinned_hash_ = checked_out->current_hash;
  last_change_ = now_seconds();
  if (!persist()) *error = "pgod: cannot save the rollback pin (see the worker's log)";
  return refresh_keys().then([this]() { return deploy(); });
}

kj::Promise<VerbResult> Service::answer_compose(VerbCall call) {
  if (find_compose_file(settings_).empty())
    return write_then_exit(call.output, kToStderr, "pgod: no compose file in the checkout\n", 1);
  const Verb verb = call.row.verb;
  const bool starts_containers = verb == Verb::kUp || verb == Verb::kStart || verb == Verb::kRestart;
  if (starts_containers && stop_file_exists())
    return write_then_exit(
        call.output, kToStderr,
        fmt::format("pgod: {} exists: remove it to bring the service up\n", settings_.getStopFile().cStr()), 1);
  const bool follow = call.arguments.follow;
  const auto timeout = follow ? std::nullopt : call.row.timeout;
  return in_turn(call.row, follow,
                 [this, &row = call.row, &output = call.output, compose_args = std::move(call.arguments.compose_args),
                  timeout]() mutable { return run_compose_verb(row, std::move(compose_args), timeout, output); });
}

// Commands that create containers or fetch images judge the compose file first and then run the
// model they judged; start and restart judge the saved model again (bind sources are resolved
// anew when a container starts).
kj::Promise<void> Service::judge_model_for(Verb verb) {
  if (verb == Verb::kUp || verb == Verb::kPull || verb == Verb::kBuild) {
    return normalize().then([this](Normalized normalized) {
      if (!save_validated(normalized.yaml)) fail("cannot save the validated compose model");
    });
  }
  if (!has_validated_model()) {
    // Nothing judged to run it on: the checkout's own file was never accepted, and compose
    // would read its .env and everything it names unjudged.
    return kj::Promise<void>(
        failure("no compose file of this service has passed the policy yet (see status): nothing to run this on"));
  }
  if (verb == Verb::kStart || verb == Verb::kRestart)
    if (auto refused = recheck_validated()) return kj::Promise<void>(failure(*refused));
  return kj::READY_NOW;
}

kj::Promise<VerbResult> Service::run_compose_verb(const WorkerVerb& row, std::vector<std::string> compose_args,
                                                  std::optional<std::chrono::seconds> timeout, OutputSink& output) {
  auto judged = judge_model_for(row.verb);
  auto guard = row.registry_login ? credentials_guard() : kj::Own<CredentialsGuard>();
  return judged
      .then([this, &row]() { return row.registry_login ? registry_login() : kj::Promise<void>(kj::READY_NOW); })
      .then([this, &output, compose_args = std::move(compose_args), timeout]() mutable {
        return stream_compose(std::move(compose_args), timeout, output);
      })
      .then([this, &row](int code) {
        return (row.registry_login ? registry_logout() : kj::Promise<void>(kj::READY_NOW)).then([code]() {
          return exited(static_cast<std::uint32_t>(code));
        });
      })
      .catch_([this, &output](kj::Exception&& e) -> kj::Promise<VerbResult> {
        if (e.getType() == kj::Exception::Type::DISCONNECTED) return kj::mv(e);  // the caller left
        const std::string message = redacted(e.getDescription().cStr());
        return write_then_exit(output, kToStderr, "pgod: " + message + "\n", 1);
      })
      .attach(kj::mv(guard));
}

}  // namespace pgod::worker
