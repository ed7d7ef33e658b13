// The health gate of a deploy and the way back to the last good one (service.h, Service).
// GCC at -O2 reports maybe-uninitialized inside KJ's ExceptionOr<T> for promises of
// string-holding types: the false positive service.cc silences too (before the includes).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <fmt/format.h>

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "compose_policy.h"
#include "safe_files.h"
#include "service.h"
#include "service_name.h"

namespace pgod::worker {
namespace {

using namespace std::chrono_literals;

constexpr auto kDefaultHealthTimeout = 2min;
// A container without a healthcheck must stay up this long after its start: one that exits
// at once (a crash, a missing file) is caught before the deploy counts as good.
constexpr auto kSettle = 3s;
constexpr auto kGatePoll = 1 * kj::SECONDS;
constexpr auto kGateCommandTimeout = 1min;
constexpr auto kRevertUpTimeout = 20min;
constexpr const char* kLastGoodFile = "last-good.yaml";

}  // namespace

struct Service::GateOutcome {
  GateVerdict verdict;
  std::vector<ContainerState> containers;
};

// pgo.toml's timeout (or the default) is the most a deploy gets: the compose file, which the
// repository's authors write, may shorten it, never lengthen it (the gate holds the queue).
std::chrono::seconds Service::health_timeout(std::optional<std::chrono::seconds> from_compose_file) const {
  const auto configured = std::chrono::nanoseconds(settings_.getHealthTimeoutNs());
  const std::chrono::seconds ceiling =
      configured > 0ns ? std::chrono::duration_cast<std::chrono::seconds>(configured) : kDefaultHealthTimeout;
  return from_compose_file ? std::min(*from_compose_file, ceiling) : ceiling;
}

kj::Promise<Service::GateOutcome> Service::health_gate(std::chrono::seconds timeout) {
  const auto deadline = io_.provider->getTimer().now() + timeout.count() * kj::SECONDS;
  return gate_round(deadline, timeout);
}

// One look at the project's containers: `compose ps -a -q` for their ids, `docker inspect` for
// their state; again a second later while some are not ready and there is time.
kj::Promise<Service::GateOutcome> Service::gate_round(kj::TimePoint deadline, std::chrono::seconds timeout) {
  const auto command_timeout = std::chrono::duration_cast<std::chrono::seconds>(kGateCommandTimeout);
  return compose_collect({"ps", "-a", "-q"}, command_timeout)
      .then([this, deadline, timeout, command_timeout](CollectedOutput listed) -> kj::Promise<GateOutcome> {
        if (listed.exit.code != 0)
          return GateOutcome{{GateVerdict::Kind::kFailed,
                              fmt::format("compose ps failed (exit {}): {}", listed.exit.code, tail(listed.err))},
                             {}};
        std::vector<std::string> argv = {"docker", "inspect"};
        std::istringstream ids(listed.out);
        for (std::string id; ids >> id;) argv.push_back(id);
        if (argv.size() == 2) return GateOutcome{};  // no containers: nothing to wait for
        return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
                           docker_spec(std::move(argv), command_timeout))
            .then([this, deadline, timeout](CollectedOutput inspected) -> kj::Promise<GateOutcome> {
              GateOutcome outcome;
              if (inspected.exit.code != 0) {
                // A container replaced between ps and inspect ("No such object"): look again.
                outcome.verdict = {GateVerdict::Kind::kWaiting,
                                   fmt::format("cannot read the containers' state (exit {}): {}", inspected.exit.code,
                                               tail(inspected.err))};
              } else {
                auto containers = parse_inspect(inspected.out);
                if (!containers) return GateOutcome{{GateVerdict::Kind::kFailed, containers.error()}, {}};
                outcome = {judge_containers(*containers, now_seconds(), kSettle), std::move(*containers)};
              }
              if (outcome.verdict.kind != GateVerdict::Kind::kWaiting) return outcome;
              auto& timer = io_.provider->getTimer();
              if (timer.now() >= deadline) {
                outcome.verdict = {GateVerdict::Kind::kFailed,
                                   fmt::format("not ready after {} s: {}", timeout.count(), outcome.verdict.reason)};
                return outcome;
              }
              // The last look comes at the deadline itself: the containers get all their time.
              const auto wait = kj::min(kGatePoll, deadline - timer.now());
              return timer.afterDelay(wait).then([this, deadline, timeout]() { return gate_round(deadline, timeout); });
            });
      });
}

kj::Promise<void> Service::gate_deploy(std::string model, std::chrono::seconds timeout) {
  log_->info("health gate: waiting up to {} s for the containers of {}", timeout.count(), short_hash(hash_));
  return health_gate(timeout).then([this, model = std::move(model)](GateOutcome outcome) mutable -> kj::Promise<void> {
    if (outcome.verdict.kind == GateVerdict::Kind::kPassed) {
      // Kept before the state says deployed: whoever waits for it finds the deploy complete.
      return keep_as_last_good(std::move(model), std::move(outcome.containers)).then([this]() {
        CollectedOutput up;
        up.exit.code = 0;  // `up` itself had exited 0 before the gate
        record_deploy(up);
      });
    }
    return revert_to_last_good(redacted(outcome.verdict.reason));
  });
}

// The deploy that passed, kept so that a later one can go back to it: its commit, and its model
// with every service's image named so that it stays this image (a repository digest, or a tag of
// the project's own for images built here), whatever the tags in the compose file point at later.
kj::Promise<void> Service::keep_as_last_good(std::string model, std::vector<ContainerState> containers) {
  std::map<std::string, std::string> image_of_service;
  std::set<std::string> ids;
  for (const auto& container : containers) {
    if (container.one_off || container.service.empty() || container.image_id.empty()) continue;
    image_of_service.emplace(container.service, container.image_id);
    ids.insert(container.image_id);
  }
  if (ids.empty()) return pin_last_good(std::move(model), {}, {});
  std::vector<std::string> argv = {"docker", "image", "inspect"};
  argv.insert(argv.end(), ids.begin(), ids.end());
  return run_collect(
             *io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
             docker_spec(std::move(argv), std::chrono::duration_cast<std::chrono::seconds>(kGateCommandTimeout)))
      .then([this, model = std::move(model),
             image_of_service = std::move(image_of_service)](CollectedOutput out) mutable -> kj::Promise<void> {
        std::map<std::string, ImageNames> images;
        auto parsed = out.exit.code == 0 ? parse_image_inspect(out.out)
                                         : Expected<std::vector<ImageNames>, std::string>(Unexpected(tail(out.err)));
        if (parsed)
          for (auto& image : *parsed) images.emplace(image.id, std::move(image));
        else
          log_->warn("cannot name the good images for good (their tags stay): {}", redacted(parsed.error()));
        return pin_last_good(std::move(model), std::move(image_of_service), std::move(images));
      });
}

// Each service's image named for good: its repository digest, or (built here, so only under
// the project's names) a tag of the project's own that nothing else moves.
kj::Promise<void> Service::pin_last_good(std::string model, std::map<std::string, std::string> image_of_service,
                                         std::map<std::string, ImageNames> images) {
  const std::string project = compose_project_name(settings_.getName().cStr());
  std::map<std::string, std::string> pinned;
  std::vector<std::pair<std::string, std::string>> to_tag;  // image id, tag
  for (const auto& [service, id] : image_of_service) {
    const auto image = images.find(id);
    if (image == images.end()) continue;
    if (auto digest = digest_reference(image->second, ""); !digest.empty()) {
      pinned[service] = digest;
      continue;
    }
    const auto& tags = image->second.tags;
    const bool built_here = std::any_of(tags.begin(), tags.end(), [&](const std::string& tag) {
      return is_project_owned_name(project, tag.substr(0, tag.rfind(':')));
    });
    if (!built_here) continue;  // neither a digest nor a name of ours: the compose file's reference stays
    const std::string tag = fmt::format("{}-pgod-good:s{}", project, to_tag.size());
    to_tag.emplace_back(id, tag);
    pinned[service] = tag;
  }
  kj::Promise<void> tagged = kj::READY_NOW;
  for (const auto& [id, tag] : to_tag) {
    tagged = tagged.then([this, id = id, tag = tag]() {
      return run_collect(*io_.lowLevelProvider, io_.unixEventPort, io_.provider->getTimer(),
                         docker_spec({"docker", "tag", id, tag},
                                     std::chrono::duration_cast<std::chrono::seconds>(kGateCommandTimeout)))
          .then([this, tag](CollectedOutput out) {
            if (out.exit.code != 0) log_->warn("cannot tag the good image {}: {}", tag, redacted(tail(out.err)));
          });
    });
  }
  return tagged.then([this, model = std::move(model), pinned = std::move(pinned)]() {
    auto pinned_model = pin_images(model, pinned);
    if (!pinned_model) {
      log_->warn("cannot keep {} as the last good deploy: {}", short_hash(hash_), pinned_model.error());
      return;
    }
    if (auto written = replace_file(settings_.getStateDir().cStr(), kLastGoodFile, *pinned_model, 0600); !written) {
      log_->warn("cannot keep {} as the last good deploy: {}", short_hash(hash_), written.error());
      return;
    }
    good_hash_ = hash_;
    persist();
    log_->info("health gate passed: {} is the last good deploy", short_hash(hash_));
  });
}

kj::Promise<void> Service::revert_to_last_good(std::string reason) {
  const std::string failed = hash_;
  std::string why = fmt::format("deploy of {} failed its health gate: {}", short_hash(failed), reason);
  const std::string last_good = std::string(settings_.getStateDir().cStr()) + "/" + kLastGoodFile;
  struct stat info {};
  const bool have_last_good = !good_hash_.empty() && good_hash_ != failed && stat(last_good.c_str(), &info) == 0;
  if (!pinned_hash_.empty() || !have_last_good) {
    // A pinned commit is the operator's choice; a first deploy has nothing to go back to.
    broken(why + (pinned_hash_.empty() ? "; no earlier good deploy to go back to" : "; pinned: not reverted"));
    note_deploy(failed, "broken", last_error_);
    return kj::READY_NOW;
  }
  log_->warn("{}; going back to {}", why, short_hash(good_hash_));
  failed_hash_ = failed;
  failed_reason_ = why + "; running " + short_hash(good_hash_) + " again until upstream moves";
  persist();
  // The good deploy gets the service's own time, not the failed file's.
  return advance_to(good_hash_, /*going_back=*/true).then([this, why](bool moved) -> kj::Promise<void> {
    if (!moved) return kj::READY_NOW;  // refused or git failed: the state says why
    return up_last_good(why, health_timeout(std::nullopt));
  });
}

bool Service::running_last_good() const {
  if (hash_ != good_hash_ || deployed_hash_ != good_hash_) return false;
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return in ? text.str() : std::string();
  };
  const auto last_good = read(std::string(settings_.getStateDir().cStr()) + "/" + kLastGoodFile);
  return !last_good.empty() && read(validated_file_) == last_good;
}

kj::Promise<void> Service::stay_reverted() {
  if (state_ == rpc::ServiceState::BROKEN) return kj::READY_NOW;  // the way back failed: it says why
  if (hash_.empty()) {
    // A restarted worker: where the checkout is, from the repository, first.
    return git_thread_.run<std::string>([git = git_.get()]() { return git->head_hash(); })
        .then([this](std::string head) -> kj::Promise<void> {
          if (head.empty()) return broken(failed_reason_ + "; the checkout is at no commit"), kj::READY_NOW;
          hash_ = std::move(head);
          return stay_reverted();
        });
  }
  if (!running_last_good()) {
    log_->info("finishing the way back to {}", short_hash(good_hash_));
    return advance_to(good_hash_, /*going_back=*/true).then([this](bool moved) -> kj::Promise<void> {
      if (!moved) return kj::READY_NOW;
      return up_last_good(failed_reason_, health_timeout(std::nullopt));
    });
  }
  // The cycle's self-heal, on the saved (pinned) model.
  return compose_collect({"up", "-d"}, std::chrono::duration_cast<std::chrono::seconds>(kRevertUpTimeout))
      .then([this](CollectedOutput up) {
        if (up.exit.code != 0)
          broken(fmt::format("{}; compose up of the last good deploy failed (exit {}): {}", failed_reason_,
                             up.exit.code, tail(up.err)));
        else if (state_ != rpc::ServiceState::REVERTED)
          set_state(rpc::ServiceState::REVERTED, failed_reason_);
      });
}

kj::Promise<void> Service::up_last_good(std::string why, std::chrono::seconds timeout) {
  std::ifstream in(std::string(settings_.getStateDir().cStr()) + "/" + kLastGoodFile);
  std::stringstream model;
  model << in.rdbuf();
  if (!in) {
    broken(why + "; cannot read the last good deploy's model");
    return kj::READY_NOW;
  }
  // Judged again as any model is before it runs: the policy or pgod's settings may have moved.
  auto verdict = check_compose_policy(model.str(), policy_context());
  if (!verdict || !verdict->empty()) {
    broken(why + "; the last good deploy's model is refused now: " +
           (verdict ? (verdict->front().to_string()) : verdict.error()));
    return kj::READY_NOW;
  }
  if (!save_validated(model.str())) {
    broken(why + "; cannot save the last good deploy's model");
    return kj::READY_NOW;
  }
  return compose_collect({"up", "-d", "--remove-orphans"},
                         std::chrono::duration_cast<std::chrono::seconds>(kRevertUpTimeout))
      .then([this, why, timeout](CollectedOutput up) -> kj::Promise<void> {
        if (up.exit.code != 0) {
          broken(fmt::format("{}; going back to {} failed too: compose up (exit {}): {}", why, short_hash(good_hash_),
                             up.exit.code, tail(up.err)));
          note_deploy(failed_hash_, "broken", last_error_);
          return kj::READY_NOW;
        }
        return health_gate(timeout).then([this, why](GateOutcome outcome) {
          if (outcome.verdict.kind != GateVerdict::Kind::kPassed) {
            broken(fmt::format("{}; the last good deploy {} failed its health gate too: {}", why,
                               short_hash(good_hash_), redacted(outcome.verdict.reason)));
            note_deploy(failed_hash_, "broken", last_error_);
            return;
          }
          deployed_hash_ = hash_;
          last_deploy_ = now_seconds();
          persist();
          set_state(rpc::ServiceState::REVERTED, failed_reason_);
          note_deploy(failed_hash_, "reverted", failed_reason_);
        });
      });
}

}  // namespace pgod::worker
