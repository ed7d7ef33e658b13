#include "compose.h"

#include <sys/stat.h>

#include <algorithm>
#include <string_view>
#include <utility>

#include "service_name.h"

namespace pgod::worker {
namespace {
// Enough to find docker, docker-compose and the helpers they run; nothing user-writable.
constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Every variable through which compose (v1 1.29, v2 2.26, 5.x), or the docker CLI and buildx
// that it drives, lets a .env file choose what it does beyond interpolation: the daemon, the
// files, profiles and project, remote resources. Compose reads the repository's .env and takes
// its values for variables the process environment lacks, and v2 up to 2.39 copies them into
// its own environment, which its children inherit; a variable set here, even empty, wins.
// Each value is compose's own default where the versions agree (COMPOSE_PARALLEL_LIMIT: v1's
// 64, where v2 has no limit), so a repository without a .env sees no difference. (The project
// name is pinned to -p's in compose_environment.) pgo.toml's env may set the others: the admin
// is trusted, the repository is not.
struct Pin {
  std::string_view name, value;
};
constexpr Pin kComposePins[] = {
    // Which daemon, and how to reach it.
    {"DOCKER_HOST", "unix:///var/run/docker.sock"},
    {"DOCKER_CONTEXT", "default"},
    {"DOCKER_TLS", ""},
    {"DOCKER_TLS_VERIFY", ""},
    {"DOCKER_CERT_PATH", ""},
    {"DOCKER_API_VERSION", ""},
    {"COMPOSE_API_VERSION", ""},    // v1
    {"COMPOSE_TLS_VERSION", ""},    // v1
    {"COMPOSE_PARAMIKO_SSH", "0"},  // v1: ssh:// daemons
    {"COMPOSE_HTTP_TIMEOUT", "60"},
    // Which files and services make the model: -f and -p are always given.
    {"COMPOSE_FILE", ""},
    {"COMPOSE_PATH_SEPARATOR", ":"},
    {"COMPOSE_PROFILES", ""},
    {"COMPOSE_ENV_FILES", ""},
    {"COMPOSE_DISABLE_ENV_FILE", "false"},  // "" is an error in v2
    {"COMPOSE_CONVERT_WINDOWS_PATHS", "false"},
    {"COMPOSE_FORCE_WINDOWS_HOST", "false"},  // v1: c:/… read as a Windows path
    {"COMPOSE_COMPATIBILITY", "false"},       // v2: v1's container names
    // Resources from outside the checkout: include/extends from git or OCI (off by default in
    // 2.26, on by default since 2.34 and in 5.x, where "" means on).
    {"COMPOSE_EXPERIMENTAL_GIT_REMOTE", "false"},
    {"COMPOSE_EXPERIMENTAL_OCI_REMOTE", "false"},
    {"COMPOSE_EXPERIMENTAL", "false"},
    // What up and down do beyond the model.
    {"COMPOSE_IGNORE_ORPHANS", "false"},
    {"COMPOSE_REMOVE_ORPHANS", "false"},
    {"COMPOSE_PARALLEL_LIMIT", "64"},  // v1 refuses < 2, v2 refuses ""
    {"COMPOSE_INTERACTIVE_NO_CLI", ""},
    {"COMPOSE_DOCKER_CLI_BUILD", "1"},
    {"COMPOSE_MENU", "false"},
    {"COMPOSE_ANSI", "auto"},
    {"COMPOSE_PROGRESS", "auto"},
    {"DOCKER_DEFAULT_PLATFORM", ""},
    {"DOCKER_BUILDKIT", ""},
    {"BUILDX_BUILDER", ""},
    {"BUILDX_CONFIG", ""},
    {"BUILDKIT_PROGRESS", "auto"},
    {"DOCKER_CLI_HINTS", "false"},
};

bool is_regular_file(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}
}  // namespace

std::vector<std::string> compose_environment(rpc::ServiceSettings::Reader settings, const std::string& docker_config,
                                             const std::string& path_prefix) {
  std::vector<std::string> env = {"PATH=" + (path_prefix.empty() ? std::string() : path_prefix + ":") + kPath,
                                  std::string("HOME=") + settings.getHome().cStr(), "DOCKER_CONFIG=" + docker_config};
  const std::string gate = settings.getDockerHost().cStr();
  for (auto var : settings.getEnv()) {
    const std::string name = var.getName().cStr();
    // Behind the docker gate, the daemon and the builder are pgod's choice, not even the admin's:
    // the worker cannot reach another daemon, and BuildKit's streams cannot be judged.
    if (!gate.empty() && (name == "DOCKER_HOST" || name == "DOCKER_BUILDKIT" || name == "DOCKER_CONTEXT")) continue;
    env.push_back(name + "=" + var.getValue().cStr());
  }
  if (!gate.empty()) env.insert(env.end(), {"DOCKER_HOST=" + gate, "DOCKER_BUILDKIT=0"});
  // Real environment variables win over a .env file, and the repository owns .env: without
  // these, a committed `DOCKER_HOST=tcp://elsewhere` would send compose (and the registry
  // credentials it carries) to a daemon of the author's choosing.
  const std::string project = compose_project_name(settings.getName().cStr());
  auto pin = [&env](std::string_view name, std::string_view value) {
    const bool configured = std::any_of(env.begin(), env.end(), [&](const std::string& entry) {
      return entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=';
    });
    if (!configured) env.push_back(std::string(name) + "=" + std::string(value));
  };
  for (const auto& [name, value] : kComposePins) pin(name, value);
  pin("COMPOSE_PROJECT_NAME", project);
  // docker-compose v1 is Python: without this, a usercustomize.py in the user's home would run
  // inside it, with the docker group.
  env.push_back("PYTHONNOUSERSITE=1");
  return env;
}

std::string find_compose_file(rpc::ServiceSettings::Reader settings) {
  return find_compose_file(settings, settings.getCheckoutDir().cStr());
}

std::string find_compose_file(rpc::ServiceSettings::Reader settings, const std::string& checkout) {
  if (settings.getComposeFile().size() > 0) {
    const std::string configured = settings.getComposeFile().cStr();
    return is_regular_file(checkout + "/" + configured) ? configured : "";
  }
  for (const char* name : kComposeFileNames)
    if (is_regular_file(checkout + "/" + name)) return name;
  return "";
}

PolicyContext policy_context(rpc::ServiceSettings::Reader settings, const std::string& root) {
  PolicyContext context;
  context.service = settings.getName().cStr();
  context.root = settings.getUid() == 0;
  context.checkout_dir = root.empty() ? std::string(settings.getCheckoutDir().cStr()) : root;
  if (!root.empty()) context.live_checkout_dir = settings.getCheckoutDir().cStr();
  context.data_dir = settings.getDataDir().cStr();
  for (auto network : settings.getNetworks()) context.allowed_networks.emplace_back(network.cStr());
  return context;
}

std::vector<std::string> compose_argv(const ComposeSetup& setup, const std::vector<std::string>& args) {
  std::vector<std::string> argv = setup.program;
  argv.insert(argv.end(), {"-p", setup.project, "-f", setup.compose_path});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace pgod::worker
