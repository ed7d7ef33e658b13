// The compose programs on this host, for tests that must hold under each: Compose v2 (the
// docker CLI plugin, or the plugin's binary run as docker-compose) and, on Debian 12,
// docker-compose v1. install-deps.sh installs both; which one a test suite drives is chosen by
// PGOD_TEST_COMPOSE (plugin, the default, or standalone).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace pgod::test {

struct ComposeProgram {
  std::string name;               // "v2" or "v1": a test parameter's name
  std::vector<std::string> argv;  // {"docker", "compose"}, or one program
  int major = 0;                  // 1 or 2 (2 also for 5.x's "v2" command line)
};
// For googletest's messages: the name and the command.
void PrintTo(const ComposeProgram& program, std::ostream* out);

// v2 first, then v1 when this host has it.
const std::vector<ComposeProgram>& installed_compose_programs();

// The release this host runs ("bookworm", "trixie", ...), from /etc/os-release.
std::string debian_codename();

// What pgod and pgod-worker are told to run in the end-to-end suites: "plugin" unless
// PGOD_TEST_COMPOSE says "standalone".
std::string compose_under_test();
// The major version of "plugin" or "standalone" on this host (docker-compose is v1 on
// Debian 12), and of the one under test.
int compose_major(const std::string& program);
int compose_major_under_test();

// The name compose gives a service's first container: proj_web_1 (v1) or proj-web-1 (v2).
std::string compose_container_name(int major, const std::string& project, const std::string& service);

}  // namespace pgod::test
