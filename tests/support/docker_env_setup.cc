// Linked into the end-to-end test programs: one docker engine (and registry) per program, set
// up before the first test and stopped after the last, through a googletest Environment.
#include <gtest/gtest.h>

#include "docker_env.h"

namespace pgod::test {
namespace {

DockerEnvironment* engine = nullptr;

class DockerEnvironmentSetup : public ::testing::Environment {
 public:
  void SetUp() override {
    engine = new DockerEnvironment();
    share_docker_environment(engine);
  }
  void TearDown() override {
    share_docker_environment(nullptr);
    delete engine;
    engine = nullptr;
  }
};
const auto* const registered = ::testing::AddGlobalTestEnvironment(new DockerEnvironmentSetup);

}  // namespace

DockerEnvironment& docker_environment() { return *engine; }

}  // namespace pgod::test
