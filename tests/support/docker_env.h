// A real docker engine for end-to-end tests, on this machine only: dockerd is started when
// none answers (and stopped again at the end), a busybox image is made locally with
// `docker import`, and a loopback registry (Debian's docker-registry, htpasswd auth) holds it
// so that login and pull are real. No image name can resolve to a public registry.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "process.h"

namespace pgod::test {

// Runs a program with extra "NAME=VALUE" environment entries (through env(1)).
ProcessResult run_with_env(const std::vector<std::string>& env, const std::vector<std::string>& argv,
                           const std::string& stdin_text = "");

class DockerEnvironment {
 public:
  DockerEnvironment();   // starts whatever is missing; throws with the reason when it cannot
  ~DockerEnvironment();  // stops what it started
  DockerEnvironment(const DockerEnvironment&) = delete;
  DockerEnvironment& operator=(const DockerEnvironment&) = delete;

  const std::string& registry() const { return registry_; }  // 127.0.0.1:PORT
  const std::string& user() const { return user_; }
  const std::string& token() const { return token_; }
  const std::string& image() const { return image_; }  // in the registry, not pulled yet

  // `docker` with the given args (Debian's client), as root with a private DOCKER_CONFIG.
  ProcessResult docker(const std::vector<std::string>& args) const;
  // IDs of the running containers of a compose project (with `all`, stopped ones too).
  std::vector<std::string> containers(const std::string& project, bool all = false) const;

 private:
  TempDir dir_;
  pid_t dockerd_ = -1;
  pid_t registry_pid_ = -1;
  std::string registry_, user_ = "deploy", token_ = "pgod-e2e-token", image_;
};

// The engine shared by every test of an end-to-end program (link support/docker_env_setup.cc):
// started before the first test, stopped after the last.
DockerEnvironment& docker_environment();

// That engine while it is up, for code in the support libraries that programs with and without
// an engine link (the worker harness puts a docker gate in front of it); nullptr in a program
// that does not link support/docker_env_setup.cc, or before its set-up and after its tear-down.
DockerEnvironment* shared_docker_environment();
void share_docker_environment(DockerEnvironment* engine);

}  // namespace pgod::test
