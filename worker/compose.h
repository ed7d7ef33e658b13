// How the worker runs docker compose: which program (the `docker compose` plugin or
// `docker-compose`), always `-p <project> -f <file>` with the checkout as working directory,
// and a minimal environment: PATH, HOME, DOCKER_CONFIG private to the service, the service's
// own `env`, and every COMPOSE_*/DOCKER_* variable that would let the repository's .env
// steer compose pinned to its default. Nothing else of the worker's environment reaches
// compose.
#pragma once

#include <string>
#include <vector>

#include "compose_policy.h"
#include "settings.capnp.h"

namespace pgod::worker {

// The compose file names tried, in order, when pgo.toml names none.
inline constexpr const char* kComposeFileNames[] = {"compose.yaml", "compose.yml", "docker-compose.yml",
                                                    "docker-compose.yaml"};

struct ComposeSetup {
  std::string project;               // -p
  std::string checkout_dir;          // cwd
  std::string compose_path;          // -f: absolute
  std::vector<std::string> program;  // {"docker", "compose"} or {"docker-compose"}
  std::vector<std::string> environment;
  std::string docker_config;  // DOCKER_CONFIG
};

// The environment every docker and compose process of this service gets. `path_prefix`
// (tests only: a directory with stand-in programs) goes before the fixed PATH.
std::vector<std::string> compose_environment(rpc::ServiceSettings::Reader settings, const std::string& docker_config,
                                             const std::string& path_prefix = "");

// The configured compose file, or the first standard name present in the checkout; empty when
// there is none.
std::string find_compose_file(rpc::ServiceSettings::Reader settings);
// The same in another tree with the checkout's layout (the staging tree of a commit).
std::string find_compose_file(rpc::ServiceSettings::Reader settings, const std::string& checkout);

// The policy's view of this service: its live checkout, or `root` (a staging tree of a commit
// being judged, whose paths stand for the checkout's). A root service bypasses every rule.
PolicyContext policy_context(rpc::ServiceSettings::Reader settings, const std::string& root = "");

// argv for one compose invocation: program, -p, -f, then `args`.
std::vector<std::string> compose_argv(const ComposeSetup& setup, const std::vector<std::string>& args);

}  // namespace pgod::worker
