// Fork-and-assert as a worker: a body runs in a forked child that takes on a service user's
// identity as the supervisor computes it (lookup_user: the user's groups plus docker), drops to
// it in confine.cc's order (bounding set, groups, gid, uid, no_new_privs) and installs the real
// worker filter (build_worker_filter), then reports one string through a pipe and _exits. What
// the child can still do is what a worker's code can do.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "confine.h"

namespace pgod::isolation {

// The identity pgod gives the worker of a service run by `user` (throws when there is none).
// Without the docker group only for controls.
supervisor::Identity worker_identity(const std::string& user, bool with_docker_group = true);

enum class Filter { kInstalled, kNone };

struct ChildSpec {
  supervisor::Identity identity;
  Filter filter = Filter::kInstalled;
  // Runs as root before the drop (e.g. a private mount); returns "" or why it failed.
  std::function<std::string()> before_drop;
};

// Runs `body` as described and returns what it returned, or "killed by SIGx" / "exit N: …"
// when the child ended otherwise, or "set-up failed: …".
std::string run_as_worker(const ChildSpec& spec, const std::function<std::string()>& body);

// "uid=U seccomp=S nnp=N" of the calling process, from /proc/self/status: a child's proof
// that it is confined as intended.
std::string own_confinement();

// Inside a child: runs argv the way the worker runs docker and compose (worker/child_process:
// PATH looked up in `env`, exactly `env`, its own process group, a deadline of a minute), in
// `cwd`; returns "exit N\n" + stdout + stderr.
std::string run_like_the_worker(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                const std::string& cwd);

}  // namespace pgod::isolation
