// pgo.toml: parse with toml++ and validate every key of pgod(8) before anything is touched.
// Every error names the file, line and column, the service and the key, and says what is
// expected; values that hold secrets (registry tokens, env values) are never echoed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "expected.h"
#include "secret.h"

namespace pgod::config {

struct SourcePosition {
  int line = 0;
  int column = 0;
};

struct RegistryLogin {
  std::string user;  // the service's user when the item names none
  Secret token;
  std::string registry;  // host[:port]
};

struct EnvVar {
  std::string name;
  Secret value;
};

struct Url {
  std::string host;    // example.org
  std::string target;  // compose-service:port
};

struct Service {
  std::string name;
  std::string user;
  std::string repository;  // may hold a token: log through redact_url()
  std::string branch = "main";
  std::string compose;  // relative to the checkout; empty: the standard names
  std::vector<RegistryLogin> registries;
  std::vector<EnvVar> env;
  std::vector<Url> urls;  // sorted by host
  std::vector<std::string> networks;
  std::string import_path;
  std::string reload;  // a validated "host:service//exec …" line
  std::string mount;   // nfs://host/path
  bool ignore = false;
  std::chrono::seconds health_timeout{0};  // 0: the worker's default
  Secret hook_secret;                      // empty: no push hooks for this service
  std::vector<std::string> signers;        // allowed-signers lines; set: only signed commits deploy
  bool allow_force_push = false;           // with signers: follow a head that does not descend
  SourcePosition position;                 // of the [[services]] table
  SourcePosition user_position;            // of its user value
};

struct Config {
  std::vector<Service> services;
};

struct ConfigError {
  std::string file;
  SourcePosition position;
  std::string service;  // the service's name, or "#N" before a name is known; empty at top level
  std::string key;      // empty for TOML syntax errors
  std::string message;  // what is wrong and what is expected

  // "FILE:LINE:COLUMN: service \"web\": key \"env\": MESSAGE"
  std::string to_string() const;
};

using ConfigErrors = std::vector<ConfigError>;

struct ValidationContext {
  // Whether a user exists on this host; the default asks the system's user database.
  std::function<bool(const std::string&)> user_exists;
  // Whether pgod runs with --datadir (a `mount` needs somewhere to mount).
  bool datadir_set = false;
  // The gateway's user (pgod --gateway-user): it may be no service's user.
  std::string gateway_user;
  // The docker gate's user (pgod --dockergate-user): it holds the docker group, so it may be no
  // service's user either.
  std::string dockergate_user;
  // A user's uid, so that two names of one uid count as one user (nobody's 65534, the
  // gateway's, another service's). Unset, or nullopt for a user it does not know: names only.
  std::function<std::optional<uid_t>(const std::string&)> user_id;
};

bool user_exists_on_host(const std::string& name);
std::optional<uid_t> user_id_on_host(const std::string& name);
ValidationContext host_validation_context(bool datadir_set, std::string gateway_user, std::string dockergate_user = "");

// Parses and validates a document; `file` is only used in error messages.
Expected<Config, ConfigErrors> parse_config(std::string_view text, const std::string& file,
                                            const ValidationContext& context);

// The file's owner and permission bits, as load_config's fstat of the opened file saw them.
struct FileAccess {
  uid_t owner = 0;
  mode_t mode = 0;  // the permission bits (07777)
  gid_t group = 0;
};

// Who may change the file: whoever can decides what pgod runs as every service's user. Its
// owner must be root or pgod's own user (pgod_uid), and neither its group nor other users may
// write it. Each problem is one error naming the file, the mode or owner, and the fix.
ConfigErrors check_file_writers(const std::string& path, const FileAccess& file, uid_t pgod_uid);

// Who may read the secrets: a config holding any (credentials in a repository URL, registry
// tokens, env values) must give other users no permission at all. The error names the first
// secret's service and key, never its value. Its group may read it only when that is root's
// group: any other (docker, adm, a team's) has members who are not root.
std::optional<ConfigError> check_file_readers(const std::string& path, const FileAccess& file, const Config& config);

// Reads `path` and parses it. An unreadable file is one error naming the path and errno; a
// file others may change, or others may read while it holds secrets, is refused (above).
Expected<Config, ConfigErrors> load_config(const std::string& path, const ValidationContext& context);

}  // namespace pgod::config
