// The health gate of a deploy: after `up -d`, the project's containers as `docker inspect`
// reports them, judged until each one is running (and healthy, where it has a healthcheck) or
// a one-shot that exited 0. Compose's own `up --wait` cannot do this on both versions: v1 has no
// --wait, and Compose 2.26's exits 1 when a one-shot service exits 0.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "expected.h"

namespace pgod::worker {

// One container, from `docker inspect`: only what the gate reads.
struct ContainerState {
  std::string id;
  std::string name;     // without docker's leading '/'
  std::string service;  // the com.docker.compose.service label
  std::string image_id;
  std::string status;         // created, running, restarting, exited, paused, dead, removing
  std::string health;         // starting, healthy, unhealthy; empty without a healthcheck
  std::string health_output;  // the last check's output, for the reason
  int exit_code = 0;
  bool one_off = false;         // a `compose run` container: not part of the deploy
  std::int64_t started_at = 0;  // unix seconds; 0 when never started
};

// `docker inspect`'s array; an error when it is not one.
Expected<std::vector<ContainerState>, std::string> parse_inspect(std::string_view json);

struct GateVerdict {
  enum class Kind { kPassed, kWaiting, kFailed } kind = Kind::kPassed;
  std::string reason;  // kFailed: which container, which check; kWaiting: who is not ready yet
};

// An image as `docker image inspect` names it.
struct ImageNames {
  std::string id;
  std::vector<std::string> digests;  // RepoDigests: "registry/app@sha256:..."
  std::vector<std::string> tags;     // RepoTags
};
Expected<std::vector<ImageNames>, std::string> parse_image_inspect(std::string_view json);

// The image reference that names exactly `image` for as long as it exists: a repository digest
// (of `reference`'s repository when it has one), else nothing (the caller tags it).
std::string digest_reference(const ImageNames& image, const std::string& reference);

// The validated model with each listed compose service's image replaced by the reference given
// (its build: dropped: the image is there already). For going back to a good deploy, whatever
// its tags point at since.
Expected<std::string, std::string> pin_images(std::string_view validated_yaml,
                                              const std::map<std::string, std::string>& image_by_service);

// The containers judged at `now` (unix seconds). A container without a healthcheck passes once
// it has been running for `settle` since its last start (it may still exit at once; one that
// crash-loops under a restart policy keeps starting again, or is seen restarting).
GateVerdict judge_containers(const std::vector<ContainerState>& containers, std::int64_t now,
                             std::chrono::seconds settle);

}  // namespace pgod::worker
