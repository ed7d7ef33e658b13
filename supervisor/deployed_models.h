// Before an upgrade, `pgod --check` says which services this version's compose policy would
// refuse as they run now: a worker rechecks the model it last deployed
// (DIR/.pgod/SERVICE/compose.validated.yaml) at start, and a refused one leaves the service
// BROKEN, its containers running as they are. That file is written by the service's user, so
// pgod never reads it: it starts `pgod-worker --judge-saved-model` as that user, confined like
// a worker and bounded in time and output, and reports what it printed.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "config.h"
#include "confine.h"
#include "layout.h"
#include "seccomp_filter.h"

namespace pgod::supervisor {

struct ModelJudge {
  Layout layout;  // -d and --datadir of the pgod that runs the services
  WorkerDefaults defaults;
  std::string worker_program;  // this version's pgod-worker
  const SeccompProgram* filter = nullptr;
  std::chrono::milliseconds timeout{10'000};
};

struct ModelVerdict {
  enum class Outcome {
    kNothingDeployed,  // no saved model: the next deploy is judged as it comes
    kAccepted,
    kRefused,   // the service goes BROKEN after the upgrade (its containers keep running)
    kUnjudged,  // no verdict (the user, a timeout, the judge failed): `reasons` says why
  };
  Outcome outcome = Outcome::kNothingDeployed;
  // kRefused: one reason per line the judge printed; kUnjudged: what went wrong. Printable
  // (control characters escaped) and with the service's secrets redacted.
  std::vector<std::string> reasons;
};

// The verdict of this version's policy on `service`'s deployed model. Needs root (it starts
// the judge as the service's user).
ModelVerdict judge_deployed_model(const config::Service& service, const ModelJudge& judge);

}  // namespace pgod::supervisor
