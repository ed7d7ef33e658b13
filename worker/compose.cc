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

constexpr std::pair<std::string_view, std::string_view> kDockerEndpoint[] = {
    {"DOCKER_HOST", "unix:///var/run/docker.sock"},
    {"DOCKER_CONTEXT", "default"},
    {"DOCKER_TLS_VERIFY", ""},
    {"DOCKER_CERT_PATH", ""},
};

bool is_regular_file(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}
}  // namespace

std::vector<std::string> compose_environment(rpc::ServiceSettings::Reader settings, const std::string& docker_config,
                                             const std::string& path_prefix) {
  std::vector<std::string> env = {"PATH=" + (path_prefix.empty() ? std::string() : path_prefix + ":") + kPath,
                                  std::string("HOME=") + settings.getHome().cStr(),
                                  "DOCKER_CONFIG=" + docker_config};
  for (auto var : settings.getEnv()) env.push_back(std::string(var.getName().cStr()) + "=" + var.getValue().cStr());
  // Real environment variables win over a .env file, and the repository owns .env: without
  // these, a committed `DOCKER_HOST=tcp://elsewhere` would send compose (and the registry
  // credentials it carries) to a daemon of the author's choosing. pgo.toml may set them.
  for (const auto& endpoint : kDockerEndpoint) {
    const auto& name = endpoint.first;  // (clang 14 cannot capture a structured binding)
    const auto& value = endpoint.second;
    const bool configured = std::any_of(env.begin(), env.end(), [&](const std::string& entry) {
      return entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=';
    });
    if (!configured) env.push_back(std::string(name) + "=" + std::string(value));
  }
  // docker-compose v1 is Python: without this, a usercustomize.py in the user's home would run
  // inside it, with the docker group.
  env.push_back("PYTHONNOUSERSITE=1");
  return env;
}

std::string find_compose_file(rpc::ServiceSettings::Reader settings) {
  const std::string checkout = settings.getCheckoutDir().cStr();
  if (settings.getComposeFile().size() > 0) {
    const std::string configured = settings.getComposeFile().cStr();
    return is_regular_file(checkout + "/" + configured) ? configured : "";
  }
  for (const char* name : kComposeFileNames)
    if (is_regular_file(checkout + "/" + name)) return name;
  return "";
}

std::vector<std::string> compose_argv(const ComposeSetup& setup, const std::vector<std::string>& args) {
  std::vector<std::string> argv = setup.program;
  argv.insert(argv.end(), {"-p", setup.project, "-f", setup.compose_path});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace pgod::worker
