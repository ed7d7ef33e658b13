#include "rpc_verbs.h"

#include <array>
#include <utility>

namespace pgod {
namespace {

constexpr std::array<std::pair<Verb, rpc::Verb>, 18> kWorkerVerbs = {{
    {Verb::kUp, rpc::Verb::UP},
    {Verb::kDown, rpc::Verb::DOWN},
    {Verb::kStop, rpc::Verb::STOP},
    {Verb::kStart, rpc::Verb::START},
    {Verb::kRestart, rpc::Verb::RESTART},
    {Verb::kPs, rpc::Verb::PS},
    {Verb::kPull, rpc::Verb::PULL},
    {Verb::kBuild, rpc::Verb::BUILD},
    {Verb::kLogs, rpc::Verb::LOGS},
    {Verb::kExec, rpc::Verb::EXEC},
    {Verb::kLoad, rpc::Verb::LOAD},
    {Verb::kGitPull, rpc::Verb::GIT_PULL},
    {Verb::kGitHash, rpc::Verb::GIT_HASH},
    {Verb::kStatus, rpc::Verb::STATUS},
    {Verb::kFreeze, rpc::Verb::FREEZE},
    {Verb::kUnfreeze, rpc::Verb::UNFREEZE},
    {Verb::kRollback, rpc::Verb::ROLLBACK},
    {Verb::kHistory, rpc::Verb::HISTORY},
}};

}  // namespace

std::optional<rpc::Verb> to_rpc_verb(Verb verb) {
  for (const auto& [grammar, rpc] : kWorkerVerbs)
    if (grammar == verb) return rpc;
  return std::nullopt;
}

std::optional<Verb> from_rpc_verb(rpc::Verb verb) {
  for (const auto& [grammar, rpc] : kWorkerVerbs)
    if (rpc == verb) return grammar;
  return std::nullopt;
}

const char* worker_state_name(rpc::ServiceInfo::WorkerState state) {
  switch (state) {
    case rpc::ServiceInfo::WorkerState::RUNNING:
      return "running";
    case rpc::ServiceInfo::WorkerState::BACKING_OFF:
      return "backing-off";
    case rpc::ServiceInfo::WorkerState::STOPPED:
      return "stopped";
  }
  return "unknown";
}

const char* service_state_name(rpc::ServiceState state) {
  switch (state) {
    case rpc::ServiceState::OK:
      return "OK";
    case rpc::ServiceState::FROZEN:
      return "FROZEN";
    case rpc::ServiceState::ROLLBACK:
      return "ROLLBACK";
    case rpc::ServiceState::BROKEN:
      return "BROKEN";
    case rpc::ServiceState::DIFF:
      return "DIFF";
    case rpc::ServiceState::STOPPED:
      return "STOPPED";
    case rpc::ServiceState::STARTING:
      return "STARTING";
    case rpc::ServiceState::REVERTED:
      return "REVERTED";
  }
  return "UNKNOWN";
}

}  // namespace pgod
