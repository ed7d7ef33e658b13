#include "compose_programs.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>

#include "process.h"

namespace pgod::test {
namespace {

// The major version `version` prints: "docker-compose version 1.29.2, build …" (v1),
// "Docker Compose version v2.26.1" / "2.26.1-4" (v2; Debian drops the v).
int major_version(const std::vector<std::string>& program) {
  auto argv = program;
  argv.push_back("version");
  const auto result = run_process(argv);
  if (result.exit_code != 0) return 0;
  std::smatch match;
  static const std::regex kVersion("version v?([0-9]+)\\.");
  if (!std::regex_search(result.out, match, kVersion)) return 0;
  return std::stoi(match[1]);
}

}  // namespace

const std::vector<ComposeProgram>& installed_compose_programs() {
  static const std::vector<ComposeProgram> programs = [] {
    std::vector<ComposeProgram> found;
    // v2 as the worker runs it, through the docker CLI; where there is no docker CLI (the
    // Debian 13 root the unit tests run in) the plugin's binary answers as docker-compose.
    for (const auto& candidate : {std::vector<std::string>{"/usr/bin/docker", "compose"},
                                  std::vector<std::string>{"/usr/local/libexec/docker/cli-plugins/docker-compose"},
                                  std::vector<std::string>{"/usr/libexec/docker/cli-plugins/docker-compose"}}) {
      if (access(candidate.front().c_str(), X_OK) != 0) continue;
      if (const int major = major_version(candidate); major >= 2) {
        found.push_back({"v2", candidate, major});
        break;
      }
    }
    if (access("/usr/bin/docker-compose", X_OK) == 0 && major_version({"/usr/bin/docker-compose"}) == 1)
      found.push_back({"v1", {"/usr/bin/docker-compose"}, 1});
    return found;
  }();
  return programs;
}

void PrintTo(const ComposeProgram& program, std::ostream* out) {
  *out << program.name << " (";
  for (std::size_t i = 0; i < program.argv.size(); ++i) *out << (i ? " " : "") << program.argv[i];
  *out << ")";
}

std::string debian_codename() {
  std::ifstream release("/etc/os-release");
  for (std::string line; std::getline(release, line);)
    if (line.starts_with("VERSION_CODENAME=")) return line.substr(line.find('=') + 1);
  return "";
}

std::string compose_under_test() {
  const char* chosen = std::getenv("PGOD_TEST_COMPOSE");
  return chosen != nullptr && std::string(chosen) == "standalone" ? "standalone" : "plugin";
}

int compose_major(const std::string& program) {
  if (program == "plugin") return major_version({"/usr/bin/docker", "compose"});
  return major_version({"/usr/bin/docker-compose"});
}

int compose_major_under_test() { return compose_major(compose_under_test()); }

std::string compose_container_name(int major, const std::string& project, const std::string& service) {
  return major == 1 ? project + "_" + service + "_1" : project + "-" + service + "-1";
}

}  // namespace pgod::test
