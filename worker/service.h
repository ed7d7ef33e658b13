// One service, as its worker sees it: the checkout, the state (OK / FROZEN / ROLLBACK /
// BROKEN / DIFF / STOPPED), the reconcile cycle, the verbs, and the key index the gateway
// reads. Mutating verbs and the cycle run one at a time (a queue); read verbs (ps, logs,
// status, git hash) run alongside them (verb_table.h, Turn).
#pragma once

#include <kj/async-io.h>
#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "authorized_keys.h"
#include "blocking_thread.h"
#include "child_process.h"
#include "command_grammar.h"
#include "common.capnp.h"
#include "compose.h"
#include "compose_policy.h"
#include "git_tracker.h"
#include "health_gate.h"
#include "read_slots.h"
#include "secret.h"
#include "settings.capnp.h"
#include "verb_table.h"

namespace pgod::worker {

// Where a command's output goes: the RPC client's stream, or the log.
class OutputSink {
 public:
  virtual ~OutputSink() noexcept(false) = default;
  // Resolves when more may be written (flow control); rejects when the reader is gone. `data`
  // is the caller's again once the promise resolves (pump reuses its buffer): copy it, or be
  // done with it, by then.
  virtual kj::Promise<void> write(bool to_stderr, kj::ArrayPtr<const kj::byte> data) = 0;
  // Hands the reader the command's stdout pipe itself (`read_end`, a duplicate of it), to read
  // to EOF; resolves then. Rejects with UNIMPLEMENTED, having read nothing, when this sink
  // cannot take one: the caller pumps the pipe into write() instead.
  virtual kj::Promise<void> drain_stdout_pipe(kj::AutoCloseFd read_end);
};

struct VerbResult {
  std::uint32_t exit_status = 0;  // the compose code, or a pgod status (400/406/500)
  std::string message;            // why, for pgod statuses
};

// Who asked for a verb, as the gateway says: "user@address:port (the file listing the key)" (for
// the log, and for triggers such as "git pull by …"), and the key's fingerprint. Both empty: root
// (a test, or a tool on the host speaking to the worker's socket).
struct Caller {
  std::string comment;
  std::string fingerprint;
};

// One verb asked for, its arguments checked against its row: what a verb handler is given.
struct VerbCall {
  const WorkerVerb& row;
  CheckedArguments arguments;
  OutputSink& output;
  const std::string& caller;  // the key's comment, "" for root
};

// Small text helpers the service's files share.
std::int64_t now_seconds();
std::string short_hash(const std::string& hash);  // 12 hex digits, or "(none)"
std::string format_time(std::int64_t seconds);    // UTC, RFC 3339; "-" for 0
std::string tail(const std::string& text);        // the end of a command's stderr, for a message

class Service final : private kj::TaskSet::ErrorHandler {
 public:
  // `settings` must outlive the Service (main keeps the message). `path_prefix`: see
  // compose_environment().
  Service(kj::AsyncIoContext& io, rpc::ServiceSettings::Reader settings, std::string path_prefix = "");
  ~Service();
  KJ_DISALLOW_COPY(Service);

  // Loads the persisted state, finds the compose program, runs the first cycle and keeps
  // cycling every duration + jitter. The promise never resolves while the service runs.
  kj::Promise<void> run();

  // Runs one verb for a caller: checks its arguments against its row of the verb table, hands
  // it to the row's handler, and adds it to the history when it ends (or its caller leaves).
  kj::Promise<VerbResult> run_verb(Verb verb, std::vector<std::string> args, OutputSink& output, const Caller& caller);

  // One-shot, for a service removed from the config: `compose down --remove-orphans` of the
  // service's compose project, without reading the checkout. Resolves to compose's exit code.
  kj::Promise<int> retire();

  void fill_status(rpc::ServiceStatus::Builder status) const;
  rpc::ServiceState state() const { return state_; }
  const std::string& head_hash() const { return hash_; }  // the checkout's commit

  // The accepted keys and their generation; wait_for_keys resolves when the generation
  // differs from `after`.
  const std::vector<AuthorizedKey>& keys() const { return keys_; }
  std::uint64_t key_generation() const { return key_generation_; }
  kj::Promise<void> wait_for_keys(std::uint64_t after);

  // A push hook verified at the gateway: a cycle now, as a poll, with `source` as its trigger.
  // False when a cycle queued by an earlier push has not started yet (it serves this one too).
  bool pushed(const std::string& source);

 private:
  struct Normalized;
  struct CredentialsGuard;
  struct DeployPlan;

  // The verb table (verb_table.cc) names the handlers below.
  friend const WorkerVerb* find_worker_verb(Verb verb);

  // The verb handlers: one per kind of row in the verb table.
  kj::Promise<VerbResult> answer_status(VerbCall call);
  kj::Promise<VerbResult> answer_git_hash(VerbCall call);
  kj::Promise<VerbResult> answer_load(VerbCall call);
  kj::Promise<VerbResult> answer_git_pull(VerbCall call);
  kj::Promise<VerbResult> answer_freeze(VerbCall call);
  kj::Promise<VerbResult> answer_unfreeze(VerbCall call);
  kj::Promise<VerbResult> answer_rollback(VerbCall call);
  kj::Promise<VerbResult> answer_history(VerbCall call);
  kj::Promise<VerbResult> answer_compose(VerbCall call);
  // run_verb without the history: the row, the arguments' check, the handler.
  kj::Promise<VerbResult> dispatch_verb(Verb verb, std::vector<std::string> args, OutputSink& output,
                                        const std::string& caller);

  // Runs a verb's job when its row's Turn lets it: at once, in the queue, or in a read slot.
  // (kToTheEnd verbs run their job through run_to_end and answer after it.)
  kj::Promise<VerbResult> in_turn(const WorkerVerb& row, bool follow, kj::Function<kj::Promise<VerbResult>()> job);
  kj::Promise<VerbResult> in_read_slot(bool long_running, kj::Function<kj::Promise<VerbResult>()> job);

  // The queue: jobs start in order, one at a time.
  template <class T>
  kj::Promise<T> serialized(kj::Function<kj::Promise<T>()> job);

  kj::Promise<void> detect_compose_program();
  kj::Promise<void> cycle();
  kj::Promise<void> cycle_for(std::string trigger);  // the cycle, for the history's trigger
  // Fetches origin/<branch> into upstream_hash_; false when the fetch failed (counted towards
  // DIFF while tracking).
  kj::Promise<bool> fetch_upstream();
  // Checks `commit`'s signature (with signers set), then writes it into the staging tree and
  // judges it there: nullopt when accepted, else why.
  kj::Promise<std::optional<std::string>> judge_commit(const std::string& commit);
  kj::Promise<std::optional<std::string>> verify_signature(const std::string& commit);
  kj::Promise<std::optional<std::string>> judge_tree(const std::string& commit);
  // With signers set (and no allow_force_push): false, and BROKEN saying why, when `commit` does
  // not descend from the checkout's HEAD.
  kj::Promise<bool> forward_only(const std::string& commit);
  // Moves the checkout to `commit` once it is judged (a new commit) or at once (HEAD itself,
  // to discard local edits); false when refused or git failed (the state says why).
  kj::Promise<bool> advance_to(const std::string& commit, bool going_back = false);
  // The deploy, stage by stage (service.cc, Service::deploy).
  kj::Promise<void> deploy();
  kj::Promise<void> plan_deploy(DeployPlan& plan, Normalized model);
  kj::Promise<void> compose_down_up(DeployPlan& plan);
  kj::Promise<void> down_before_up(const DeployPlan& plan);
  kj::Promise<void> compose_up(DeployPlan& plan);
  void record_deploy(const CollectedOutput& up);
  // The health gate (deploy_gate.cc): after `up` of a new commit, the containers watched until
  // ready or `timeout`; a deploy that passes is kept as the last good one, one that fails is
  // replaced by it (REVERTED) or, with none to go back to, left BROKEN.
  struct GateOutcome;
  std::chrono::seconds health_timeout(std::optional<std::chrono::seconds> from_compose_file) const;
  kj::Promise<GateOutcome> health_gate(std::chrono::seconds timeout);
  kj::Promise<GateOutcome> gate_round(kj::TimePoint deadline, std::chrono::seconds timeout);
  kj::Promise<void> gate_deploy(std::string model, std::chrono::seconds timeout);
  kj::Promise<void> keep_as_last_good(std::string model, std::vector<ContainerState> containers);
  kj::Promise<void> pin_last_good(std::string model, std::map<std::string, std::string> image_of_service,
                                  std::map<std::string, ImageNames> images);
  kj::Promise<void> revert_to_last_good(std::string reason);
  kj::Promise<void> up_last_good(std::string why, std::chrono::seconds timeout);
  // A cycle while upstream is still at the failed commit: the last good deploy kept up (or the
  // way back to it finished, after a worker restart); a failed way back stays BROKEN.
  kj::Promise<void> stay_reverted();
  bool running_last_good() const;  // the checkout at the good commit, its saved model up
  kj::Promise<void> reload_if_import_changed(const DeployPlan& plan);
  // `rollback`'s job: the commit resolved, judged, checked out, pinned and deployed; `error`
  // says why not, for the caller.
  kj::Promise<void> roll_back_to(std::string wanted, std::shared_ptr<std::string> error);
  kj::Promise<std::string> judged_rollback_target(Expected<std::string, GitError> resolved,
                                                  std::shared_ptr<std::string> error);
  kj::Promise<void> pin_and_deploy(Expected<SyncResult, GitError> checked_out, std::shared_ptr<std::string> error);
  // `load`'s job once the fetch has answered: the tracked head judged in the staging tree.
  kj::Promise<VerbResult> judge_fetched_head(OutputSink& output, Expected<std::string, GitError> fetched);
  // Runs compose config in `root` (the checkout when empty, or the staging tree) and judges the
  // model and the host files it reads; rejects with the refusal.
  kj::Promise<Normalized> normalize(const std::string& root = "");
  kj::Promise<Normalized> normalize_now(const std::string& root);
  kj::Promise<void> schedule_cycles();
  // Runs a queued job to its end even if the caller goes away (a cancelled `git pull` must not
  // stop a cycle between down and up); the caller waits on a branch.
  kj::Promise<void> run_to_end(kj::Function<kj::Promise<void>()> job);
  void taskFailed(kj::Exception&& exception) override;
  // The compose model that passed the policy: what compose runs (so the files in the checkout,
  // which containers may be able to change, are not read again between check and use).
  bool save_validated(const std::string& yaml);
  bool has_validated_model() const;  // compose.validated.yaml exists: a model passed the policy
  // The saved model judged again, in the checkout or (root) a staging tree; why it is refused.
  std::optional<std::string> recheck_validated(const std::string& root = "");
  // Each refusal of the saved model in the checkout or (root) a staging tree, as text.
  Expected<std::vector<std::string>, std::string> validated_model_refusals(const std::string& root = "") const;
  // The saved model's refusals in the staging tree `root` that the live checkout does not have:
  // what a new commit would do to the running containers' bind sources.
  std::optional<std::string> refusals_new_in(const std::string& root) const;

  // A compose verb's job, in its turn: the model judged (as the verb needs), then compose.
  kj::Promise<VerbResult> run_compose_verb(const WorkerVerb& row, std::vector<std::string> compose_args,
                                           std::optional<std::chrono::seconds> timeout, OutputSink& output);
  kj::Promise<void> judge_model_for(Verb verb);
  kj::Promise<int> stream_compose(std::vector<std::string> compose_args, std::optional<std::chrono::seconds> timeout,
                                  OutputSink& output);
  kj::Promise<CollectedOutput> compose_collect(std::vector<std::string> args, std::chrono::seconds timeout,
                                               bool raw_file = false);
  kj::Own<CredentialsGuard> credentials_guard() const;
  PolicyContext policy_context(const std::string& root = "") const;
  kj::Promise<void> registry_login();
  kj::Promise<void> registry_logout();
  kj::Promise<bool> write_caddy_import();
  kj::Promise<void> run_reload();

  // One line of the deploy history: `commit` with its result, the trigger and the time since
  // the cycle or verb that deployed it began.
  void note_deploy(const std::string& commit, std::string result, std::string detail = "");
  void set_state(rpc::ServiceState state, std::string error = "");
  void broken(std::string reason);
  void settle_state();
  kj::Promise<void> refresh_keys();
  kj::Promise<void> read_keys_at(const std::string& commit);  // ssh/*.pub of a local commit
  // With signers: whether keys may come from `commit` (a descendant of the commit they came
  // from last, or allow_force_push).
  kj::Promise<bool> keys_may_move_to(const std::string& commit);
  // The frozen or pinned checkout's commit deployed, when it passes the signers (BROKEN if not).
  kj::Promise<void> deploy_if_signed();
  void apply_keys(KeyScan scan);
  void load_persisted();
  bool persist() const;
  bool stop_file_exists() const;
  std::string redacted(std::string_view text) const;
  std::string describe_status() const;
  ComposeSetup compose_setup(bool raw_file = false) const;
  ChildSpec docker_spec(std::vector<std::string> argv, std::chrono::seconds timeout) const;

  kj::AsyncIoContext& io_;
  rpc::ServiceSettings::Reader settings_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<Secret> secrets_;  // everything that must never be echoed
  std::vector<std::string> compose_program_;
  kj::Maybe<kj::ForkedPromise<void>> compose_detected_;  // set by run(): compose_program_ is known
  std::string docker_config_;
  std::string path_prefix_;

  std::string validated_file_;
  std::string staging_dir_;  // <state>/staging: a commit being judged
  ReadSlots short_reads_;    // read verbs in flight, bounded (see service.cc)
  ReadSlots long_reads_;     // logs -f and exec

  // Declared before the thread, so the thread (joined in its destructor) is gone first.
  std::unique_ptr<GitTracker> git_;
  BlockingThread git_thread_;

  rpc::ServiceState state_ = rpc::ServiceState::STARTING;
  std::string hash_;                // HEAD of the checkout
  std::string upstream_hash_;       // origin/<branch> at the last fetch
  std::string deployed_hash_;       // the commit last brought up (persisted)
  std::string pinned_hash_;         // rollback target (persisted)
  std::string good_hash_;           // the last deploy that passed the health gate (persisted; model in last-good.yaml)
  std::string failed_hash_;         // a commit that failed it, not tried again until upstream moves (persisted)
  std::string failed_reason_;       // why, for the REVERTED state (persisted)
  std::string trigger_ = "poll";    // what started the job deploying now, for the history
  bool push_waiting_ = false;       // a cycle queued by a push hook has not started yet
  std::string signature_verified_;  // the last commit whose signature verified (not checked again)
  std::string keys_commit_;         // with signers: the commit the keys were last read from
  std::chrono::steady_clock::time_point job_started_ = std::chrono::steady_clock::now();
  bool frozen_ = false;  // (persisted)
  std::string last_error_;
  std::int64_t last_change_ = 0;
  std::int64_t last_deploy_ = 0;
  int fetch_failures_ = 0;
  std::string sync_error_;     // why this cycle's fetch failed; empty when it worked or did not run
  std::string import_digest_;  // what we last wrote to the Caddy import

  std::vector<AuthorizedKey> keys_;
  std::uint64_t key_generation_ = 0;
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> key_waiters_;

  kj::ForkedPromise<void> queue_tail_;
  kj::TaskSet detached_;  // run_to_end's jobs, and the first key refresh
};

}  // namespace pgod::worker
