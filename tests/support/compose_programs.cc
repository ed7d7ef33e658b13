#include "compose_programs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <system_error>

#include "process.h"

namespace pgod::test {
namespace {

// The major version `version` prints: "docker-compose version 1.29.2, build …" (v1),
// "Docker Compose version v2.26.1" / "2.26.1-4" (v2; Debian drops the v).
int ask_major_version(const std::vector<std::string>& program) {
  auto argv = program;
  argv.push_back("version");
  const auto result = run_process(argv);
  if (result.exit_code != 0) return 0;
  std::smatch match;
  static const std::regex kVersion("version v?([0-9]+)\\.");
  if (!std::regex_search(result.out, match, kVersion)) return 0;
  return std::stoi(match[1]);
}

// The files whose change may change what `program version` says: the program, and for the
// docker CLI the places its compose plugin is looked up.
std::string fingerprint(const std::vector<std::string>& program) {
  std::vector<std::string> files = {program.front()};
  if (program.size() > 1 && program[1] == "compose") {
    if (const char* home = std::getenv("HOME"))
      files.push_back(std::string(home) + "/.docker/cli-plugins/docker-compose");
    for (const char* dir : {"/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec"})
      files.push_back(std::string(dir) + "/docker/cli-plugins/docker-compose");
  }
  std::string key;
  for (const auto& file : files) {
    struct stat status {};
    key += file;
    if (stat(file.c_str(), &status) == 0)
      key += " " + std::to_string(status.st_dev) + ":" + std::to_string(status.st_ino) + " " +
             std::to_string(status.st_size) + " " + std::to_string(status.st_mtim.tv_sec) + "." +
             std::to_string(status.st_mtim.tv_nsec);
    key += "\n";
  }
  return key;
}

// Asking costs about a second (v1 is Python), and googletest asks at every process start, since
// suites are parameterised by what is installed and ctest starts one process per test: the
// answer is kept beside the test programs, valid while the programs' files are unchanged.
int major_version(const std::vector<std::string>& program) {
  std::error_code error;
  const auto directory = std::filesystem::read_symlink("/proc/self/exe", error).parent_path() / "compose-versions";
  std::string name;
  for (const auto& word : program) name += (name.empty() ? "" : "_") + word;
  std::replace(name.begin(), name.end(), '/', '-');
  const auto cached = directory / name;
  const auto key = fingerprint(program);
  if (!error) {
    std::ifstream in(cached);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.starts_with(key) && text.size() > key.size()) return std::atoi(text.c_str() + key.size());
  }
  const int major = ask_major_version(program);
  if (error) return major;
  std::filesystem::create_directories(directory, error);
  if (error) return major;
  // Tests run side by side: each writes its own file and renames it over the answer.
  const auto written = directory / (name + "." + std::to_string(getpid()));
  std::ofstream(written) << key << major << "\n";
  std::filesystem::rename(written, cached, error);
  return major;
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
