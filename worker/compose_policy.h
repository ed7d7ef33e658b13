// The compose policy: what a service's compose file may ask docker for. It judges the
// normalised model (`docker compose config` / `docker-compose config` output), never the raw
// file, so interpolation, extends, include, anchors and merge keys cannot smuggle anything
// past it. The compose file and everything it references are attacker-controlled.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "expected.h"

namespace pgod::worker {

struct PolicyContext {
  std::string service;       // the pgo service (compose project is compose_project_name(service))
  bool root = false;         // user = "root": every restriction is bypassed
  std::string checkout_dir;  // absolute, no trailing slash
  // When checkout_dir is a staging tree of a commit not checked out yet: the live checkout,
  // whose absolute paths in the compose file stand for the same paths in the staging tree.
  std::string live_checkout_dir;
  std::string data_dir;                       // <datadir>/<service>, absolute; empty when pgod has no --datadir
  std::vector<std::string> allowed_networks;  // pgo.toml `networks`; empty: no network rule
  // Resolves a host path the way the kernel will when docker mounts it: symlinks followed;
  // for a path that does not exist yet, its longest existing prefix resolved and the rest
  // appended. The default (when empty) uses the real filesystem. "" means "cannot be
  // resolved" (a symlink loop, an unreadable directory): the path is then refused.
  std::function<std::string(const std::string&)> resolve;
};

struct Violation {
  std::string compose_service;  // the compose service, or "" for top-level keys
  std::string key;              // e.g. "privileged", "volumes", "networks.proxy.external"
  std::string value;            // the offending value as written in the normalised model
  std::string reason;           // what is refused and why, one phrase
  // "service \"web\": key \"privileged\": value \"true\": privileged containers are refused"
  std::string to_string() const;
};

// Every violation in the normalised model (empty: acceptable). An error (not YAML, not a
// mapping, no services) means the file cannot be judged and must be treated as refused.
Expected<std::vector<Violation>, std::string> check_compose_policy(std::string_view normalized_yaml,
                                                                   const PolicyContext& context);

// The host files compose reads while it builds the model, judged from the raw files: the .env
// beside the compose file, env_file and label_file (whose contents both compose versions fold
// into the model), include and extends files (scanned in turn). `compose_file` is relative to
// context.checkout_dir. Paths with ${...} are refused: their value is compose's to choose.
std::vector<Violation> check_raw_host_files(const PolicyContext& context, const std::string& compose_file);

// The allowlist as documentation: one row per key (a path like services.<s>.deploy.replicas),
// its rule (allowed, refused, refused when, judged, keys below) and why. docs/SECURITY.md
// holds the same table; a test keeps them equal.
struct PolicyRow {
  std::string key, rule, why;
};
std::vector<PolicyRow> compose_policy_table();

// The top-level `x-pgo: reload:` setting (default true). Read from the raw compose file when
// the normalised output drops extensions.
bool compose_reload_enabled(std::string_view yaml);
// x-pgo: health_timeout (a duration, 1s..1h) of the raw compose file; nullopt when absent or
// not one (pgo.toml's, or the default, then holds).
std::optional<std::chrono::seconds> compose_health_timeout(std::string_view yaml);

// Files and directories inside the checkout that the compose model references (env_file,
// bind-mount sources, build contexts and Dockerfiles), as paths relative to checkout_dir, for
// change detection. Paths outside the checkout are left out. Also reads raw compose files
// (relative paths, `build: DIR`, `extends: file:`): compose v1's normalised output folds
// env_file into `environment`, so only the raw file still names those files.
std::vector<std::string> referenced_checkout_paths(std::string_view normalized_yaml, const std::string& checkout_dir);

}  // namespace pgod::worker
