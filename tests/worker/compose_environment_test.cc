// The environment the worker gives compose, against the real compose programs of this host
// (Compose v2, and v1 on Debian 12): a repository's .env may feed interpolation, but it cannot
// choose the files, profiles, project, container naming or remote resources compose uses.
#include "compose.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "compose_programs.h"
#include "git_fixture.h"
#include "process.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

using test::ComposeProgram;

// A loopback listener nobody should reach: compose fetching a remote include would connect.
// Each connection is counted and closed at once, so a fetch fails fast instead of waiting.
class Tripwire {
 public:
  Tripwire() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (!fd_ || bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 || listen(fd_.get(), 8) != 0 ||
        getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      throw std::runtime_error("cannot listen on loopback");
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] {
      for (;;) {
        const UniqueFd connection(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!connection && errno != EINTR) return;  // shut down
        if (connection) ++connections_;
      }
    });
  }
  ~Tripwire() {
    shutdown(fd_.get(), SHUT_RDWR);  // wakes accept
    acceptor_.join();
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

 private:
  UniqueFd fd_;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread acceptor_;
};

class ComposeEnvironment : public ::testing::TestWithParam<ComposeProgram> {
 protected:
  ComposeEnvironment() : checkout_(std::filesystem::canonical(temp_.path()).string()) {
    auto settings = message_.initRoot<rpc::ServiceSettings>();
    settings.setName("web");
    settings.setHome(checkout_);
    settings.setCheckoutDir(checkout_);
  }
  ~ComposeEnvironment() noexcept override = default;  // capnp's builder may throw; gtest's may not

  // `compose -p web -f compose.yaml config` in the checkout, with exactly the environment the
  // worker gives compose (or, for the control, the same without the pins).
  test::ProcessResult config(bool pinned = true) {
    auto environment = compose_environment(message_.getRoot<rpc::ServiceSettings>().asReader(), checkout_ + "/.docker");
    if (!pinned) {
      std::erase_if(environment, [](const std::string& entry) {
        return entry.starts_with("COMPOSE_") || (entry.starts_with("DOCKER_") && !entry.starts_with("DOCKER_CONFIG="));
      });
    }
    std::vector<std::string> argv = {"/usr/bin/env", "-i", "--chdir=" + checkout_};
    argv.insert(argv.end(), environment.begin(), environment.end());
    argv.insert(argv.end(), GetParam().argv.begin(), GetParam().argv.end());
    argv.insert(argv.end(), {"-p", "web", "-f", checkout_ + "/compose.yaml", "config"});
    return test::run_process(argv);
  }

  test::TempDir temp_;
  const std::string checkout_;
  capnp::MallocMessageBuilder message_;
};

TEST_P(ComposeEnvironment, TheRepositorysEnvFileFeedsInterpolationButChoosesNothingElse) {
  temp_.write(".env",
              "TAG=from-dotenv\n"
              "COMPOSE_FILE=evil.yml\n"
              "COMPOSE_PATH_SEPARATOR=;\n"
              "COMPOSE_PROFILES=evil\n"
              "COMPOSE_PROJECT_NAME=evil\n"
              "COMPOSE_DISABLE_ENV_FILE=true\n"
              "COMPOSE_CONVERT_WINDOWS_PATHS=true\n");
  temp_.write("compose.yaml",
              "services:\n"
              "  web:\n    image: busybox:${TAG}\n"
              "  evil:\n    image: busybox\n    profiles: [evil]\n    privileged: true\n");
  temp_.write("evil.yml", "services:\n  other:\n    image: busybox\n    privileged: true\n");
  const auto result = config();
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("image: busybox:from-dotenv"), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find("other"), std::string::npos) << "a file chosen by .env:\n" << result.out;
  if (GetParam().major >= 2) {
    // (v1's config lists every service whatever the profiles; v2 only the active ones.)
    EXPECT_EQ(result.out.find("evil"), std::string::npos) << "a profile chosen by .env:\n" << result.out;
    EXPECT_NE(result.out.find("name: web\n"), std::string::npos) << result.out;
    // The control: without the pins, this compose takes the profile from .env.
    EXPECT_NE(config(/*pinned=*/false).out.find("evil"), std::string::npos)
        << "the control did not take the profile: the test no longer proves the pin";
  }
}

// Compose v2 fetches `include` from git when COMPOSE_EXPERIMENTAL_GIT_REMOTE says so (from .env
// in 2.26, by default since 2.34): pinned off, nothing leaves the host, and the file is refused.
TEST_P(ComposeEnvironment, ARemoteIncludeIsNeverFetched) {
  Tripwire tripwire;
  const std::string remote = "http://127.0.0.1:" + std::to_string(tripwire.port()) + "/x.git";
  temp_.write(".env", "COMPOSE_EXPERIMENTAL_GIT_REMOTE=true\nCOMPOSE_EXPERIMENTAL_OCI_REMOTE=true\n");
  temp_.write("compose.yaml", "include:\n  - " + remote + "\nservices:\n  web:\n    image: busybox\n");
  const auto result = config();
  EXPECT_NE(result.exit_code, 0) << result.out;
  EXPECT_EQ(tripwire.connections(), 0) << "compose fetched " << remote;
  if (GetParam().major >= 2) {
    // The control: without the pins, this compose does fetch it (so the check above can fail).
    config(/*pinned=*/false);
    EXPECT_GT(tripwire.connections(), 0) << "the control did not fetch: the test no longer proves the pin";
  }
}

INSTANTIATE_TEST_SUITE_P(Installed, ComposeEnvironment, ::testing::ValuesIn(test::installed_compose_programs()),
                         [](const ::testing::TestParamInfo<ComposeProgram>& info) { return info.param.name; });

}  // namespace
}  // namespace pgod::worker
