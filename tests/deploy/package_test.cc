// The .deb on a machine booted with real systemd (tests/deploy/package_test.sh), its service's
// container on the real engine the end-to-end tests share.
#include <gtest/gtest.h>

#include <iostream>

#include "docker_env.h"
#include "process.h"

namespace pgod::test {
namespace {

TEST(Package, InstallsWithDpkgAndRunsUnderSystemd) {
  auto& docker = docker_environment();
  // The image in the engine under its registry name, as a service's compose file names it.
  TempDir config;
  const std::vector<std::string> env = {"DOCKER_CONFIG=" + config.path()};
  ASSERT_EQ(
      run_with_env(env, {"docker", "login", "-u", docker.user(), "--password-stdin", docker.registry()}, docker.token())
          .exit_code,
      0);
  ASSERT_EQ(run_with_env(env, {"docker", "pull", docker.image()}).exit_code, 0);
  const auto result = run_process({PGOD_PACKAGE_TEST, PGOD_PACKAGE, docker.image()});
  std::cout << result.out;
  EXPECT_EQ(result.exit_code, 0) << result.err;
  run_with_env(env, {"docker", "rmi", docker.image()});
}

}  // namespace
}  // namespace pgod::test
