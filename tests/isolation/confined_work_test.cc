// What a worker must still be able to do under its confinement (item 3 of the isolation
// suite): each case runs in a child that drops to a test service user (its groups plus
// docker, as pgod computes them), sets no_new_privs and installs the real worker filter, and
// then runs the worker's own code: GitTracker for clone and fetch over file://, http:// and
// https:// on loopback, and worker/child_process with the worker's environment for
// docker-compose. Each child also reports its uid, Seccomp and NoNewPrivs fields, so that a
// pass cannot come from a child that was not confined.
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "compose.h"
#include "compose_programs.h"
#include "git_fixture.h"
#include "git_tracker.h"
#include "pgod_harness.h"
#include "settings.capnp.h"
#include "worker_confinement.h"

namespace pgod::isolation {
namespace {

namespace fs = std::filesystem;
using test::GitHttpServer;
using test::GitUpstream;
using test::HttpsProxy;
using test::TempDir;
using test::TestCertificateAuthority;

// Where Debian's libgit2 (mbedTLS) reads the CA certificates it trusts, once, in
// git_libgit2_init: compiled in, no option or environment variable of the worker changes it.
constexpr char kSystemCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";

constexpr char kHttpUser[] = "deploy";
constexpr char kHttpToken[] = "isolation-token";

// Runs as root in the child before the drop: a private mount namespace in which `ca` stands
// where the system's bundle is, so the worker's unchanged libgit2 set-up trusts exactly that CA
// (nothing outside the child sees the mount).
std::function<std::string()> trust_only(const std::string& ca) {
  return [ca] {
    if (unshare(CLONE_NEWNS) != 0) return "unshare(CLONE_NEWNS): " + std::string(strerrorname_np(errno));
    // Private first, or the bind mount would propagate to the host's namespace.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return "making / private: " + std::string(strerrorname_np(errno));
    if (mount(ca.c_str(), kSystemCaBundle, nullptr, MS_BIND, nullptr) != 0)
      return std::string("bind-mounting the test CA over ") + kSystemCaBundle + ": " + strerrorname_np(errno);
    return std::string();
  };
}

class ConfinedWorkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::permissions(root.path(), fs::perms(0755));
    fs::create_directory(repos);
    upstream = std::make_unique<GitUpstream>(repos, "service.git");
    first = upstream->commit({{"compose.yaml", "services:\n  web:\n    image: pgod-isolation:never-pulled\n"}});
    // The worker's user reads the upstream (file://) as any user would.
    test::run_process({"/bin/chmod", "-R", "a+rX", repos});
    // <dir>/<service> as the supervisor prepares it: owned by the service's user.
    fs::create_directory(checkout);
    ASSERT_EQ(chown(checkout.c_str(), identity.uid, identity.gid), 0);
  }

  // GitTracker::sync() in a confined child: "<confinement> head=<hash>" or "… error: <why>".
  std::string confined_sync(const std::string& url, const std::function<std::string()>& before_drop = {}) {
    return run_as_worker({identity, Filter::kInstalled, before_drop}, [&] {
      worker::GitTracker tracker({url, "main", checkout});
      auto synced = tracker.sync();
      return own_confinement() + (synced ? " head=" + synced->current_hash : " error: " + synced.error().message);
    });
  }

  // GitTracker::fetch() then sync() on the existing checkout, in a confined child.
  std::string confined_fetch(const std::string& url, const std::function<std::string()>& before_drop = {}) {
    return run_as_worker({identity, Filter::kInstalled, before_drop}, [&] {
      worker::GitTracker tracker({url, "main", checkout});
      auto fetched = tracker.fetch();
      if (!fetched) return own_confinement() + " fetch error: " + fetched.error().message;
      auto synced = tracker.sync();
      return own_confinement() + " fetched=" + *fetched +
             (synced ? " head=" + synced->current_hash : " sync error: " + synced.error().message);
    });
  }

  std::string confined_as() const { return "uid=" + std::to_string(identity.uid) + " seccomp=2 nnp=1"; }

  TempDir root;
  const std::string repos = root.path() + "/repos";
  const std::string checkout = root.path() + "/checkout";
  const supervisor::Identity identity = worker_identity(test::service_user_a().name);
  std::unique_ptr<GitUpstream> upstream;
  std::string first;
};

// ---------------------------------------------------------------------------------------------
// libgit2 through the worker's GitTracker, per transport

enum class Transport { kFile, kHttp, kHttps };

class GitUnderTheWorkerFilterTest : public ConfinedWorkTest, public ::testing::WithParamInterface<Transport> {};

TEST_P(GitUnderTheWorkerFilterTest, TheWorkersGitCodeClonesAndThenFetchesANewCommit) {
  std::unique_ptr<GitHttpServer> http;
  std::unique_ptr<TestCertificateAuthority> ca;
  std::unique_ptr<HttpsProxy> https;
  std::function<std::string()> before_drop;
  std::string url = "file://" + upstream->path();
  if (GetParam() != Transport::kFile) {
    http = std::make_unique<GitHttpServer>(repos, kHttpUser, kHttpToken);
    url = http->url("service.git", std::string(kHttpUser) + ":" + kHttpToken);
  }
  if (GetParam() == Transport::kHttps) {
    ca = std::make_unique<TestCertificateAuthority>();
    https = std::make_unique<HttpsProxy>(http->port(), ca->issue("127.0.0.1", {"IP:127.0.0.1", "DNS:127.0.0.1"}));
    url = "https://" + std::string(kHttpUser) + ":" + kHttpToken + "@127.0.0.1:" + std::to_string(https->port()) +
          "/git/service.git";
    before_drop = trust_only(ca->certificate());
  }

  EXPECT_EQ(confined_sync(url, before_drop), confined_as() + " head=" + first) << "the clone";
  EXPECT_TRUE(fs::exists(checkout + "/compose.yaml"));

  const std::string second = upstream->commit({{"compose.yaml", "services:\n  web:\n    image: pgod-isolation:v2\n"}});
  EXPECT_EQ(confined_fetch(url, before_drop), confined_as() + " fetched=" + second + " head=" + second) << "the fetch";
  EXPECT_NE(test::read_file(checkout + "/compose.yaml").find("pgod-isolation:v2"), std::string::npos);

  if (http) {
    EXPECT_GT(http->requests(), 0) << "the clone went through the HTTP server";
  }
  if (https) {
    const auto handshakes = https->handshakes();
    EXPECT_FALSE(handshakes.empty()) << "the clone went through TLS";
    for (const auto& line : handshakes) EXPECT_EQ(line, "ok");
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, GitUnderTheWorkerFilterTest,
                         ::testing::Values(Transport::kFile, Transport::kHttp, Transport::kHttps),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           switch (info.param) {
                             case Transport::kFile:
                               return std::string("file");
                             case Transport::kHttp:
                               return std::string("http");
                             case Transport::kHttps:
                               return std::string("https");
                           }
                           return std::string("unknown");
                         });

// The negative controls of the https case: the same confined clone, with a certificate the
// worker must not accept. Nothing may reach the server behind TLS (the URL's token included),
// and nothing is checked out.
TEST_F(ConfinedWorkTest, AnHttpsUpstreamWithACertificateTheWorkerDoesNotTrustIsRefused) {
  GitHttpServer http(repos, kHttpUser, kHttpToken);
  const TestCertificateAuthority ca;
  const TestCertificateAuthority impostor;  // the same name as `ca`, another key
  struct Case {
    const char* what;
    TestCertificateAuthority::Issued certificate;
    std::function<std::string()> before_drop;
    const char* reason;  // mbedTLS's words, as libgit2 passes them on
  };
  const Case cases[] = {
      {"signed by a CA that is not in the system's bundle (the worker's trust as installed)",
       ca.issue("127.0.0.1", {"IP:127.0.0.1", "DNS:127.0.0.1"}),
       {},
       "not correctly signed by the trusted CA"},
      {"signed by another CA of the same name", impostor.issue("127.0.0.1", {"IP:127.0.0.1", "DNS:127.0.0.1"}),
       trust_only(ca.certificate()), "not correctly signed by the trusted CA"},
      {"trusted CA, but issued for another host name", ca.issue("pgod.invalid", {"DNS:pgod.invalid"}),
       trust_only(ca.certificate()), "does not match"},
  };
  for (const auto& c : cases) {
    HttpsProxy https(http.port(), c.certificate);
    const std::string url = "https://" + std::string(kHttpUser) + ":" + kHttpToken +
                            "@127.0.0.1:" + std::to_string(https.port()) + "/git/service.git";
    const std::string said = confined_sync(url, c.before_drop);
    EXPECT_TRUE(said.starts_with(confined_as() + " error: ")) << c.what << ": " << said;
    EXPECT_NE(said.find("the SSL certificate is invalid"), std::string::npos) << c.what << ": " << said;
    EXPECT_NE(said.find(c.reason), std::string::npos) << c.what << ": " << said;
    EXPECT_EQ(said.find(kHttpToken), std::string::npos) << "no token in messages: " << said;
    // libgit2 checks the certificate once the handshake is done (mbedTLS's optional mode), then
    // hangs up before sending anything: the server sees a handshake, and no request.
    EXPECT_FALSE(https.handshakes().empty()) << c.what << ": the worker reached the TLS server";
    EXPECT_FALSE(fs::exists(checkout + "/.git")) << c.what;
  }
  EXPECT_EQ(http.requests(), 0) << "no request (and no token) crossed an untrusted connection";
}

// ---------------------------------------------------------------------------------------------
// docker-compose, as the worker runs it

class ConfinedComposeTest : public ConfinedWorkTest {
 protected:
  void SetUp() override {
    ConfinedWorkTest::SetUp();
    // A file that needs compose's own work to normalise: interpolation from the service's env
    // and a merge key.
    std::ofstream(checkout + "/compose.yaml") << "x-base: &base\n"
                                                 "  image: pgod-isolation:never-pulled\n"
                                                 "services:\n"
                                                 "  web:\n"
                                                 "    <<: *base\n"
                                                 "    environment:\n"
                                                 "      GREETING: ${GREETING}\n";
    fs::create_directory(state);
    ASSERT_EQ(chown(state.c_str(), identity.uid, identity.gid), 0);
    capnp::MallocMessageBuilder message;  // only while the environment is computed
    auto settings = message.initRoot<rpc::ServiceSettings>();
    settings.setHome(identity.home);
    auto env = settings.initEnv(1);
    env[0].setName("GREETING");
    env[0].setValue("hello-from-the-service-env");
    environment = worker::compose_environment(settings.asReader(), state + "/docker");
  }

  // argv the worker would run for `args` with `program` ({"docker-compose"} or {"docker", "compose"}).
  std::vector<std::string> compose(const std::vector<std::string>& program, const std::vector<std::string>& args) {
    worker::ComposeSetup setup;
    setup.project = "pgodisolation";
    setup.checkout_dir = checkout;
    setup.compose_path = checkout + "/compose.yaml";
    setup.program = program;
    setup.environment = environment;
    return worker::compose_argv(setup, args);
  }

  std::string confined_run(const std::vector<std::string>& argv, Filter filter = Filter::kInstalled) {
    return run_as_worker({identity, filter, {}},
                         [&] { return own_confinement() + "\n" + run_like_the_worker(argv, environment, checkout); });
  }

  std::string confined_header(Filter filter) const {
    return "uid=" + std::to_string(identity.uid) + (filter == Filter::kInstalled ? " seccomp=2" : " seccomp=0") +
           " nnp=1\n";
  }

  const std::string state = root.path() + "/state";
  std::vector<std::string> environment;
};

// Each compose program the worker may run here: `docker compose` (v2) and, on Debian 12,
// `docker-compose` (v1).
TEST_F(ConfinedComposeTest, DockerComposeNormalisesTheComposeFileUnderTheWorkerFilter) {
  for (const auto& installed : test::installed_compose_programs()) {
    const auto program = installed.major == 1 ? std::vector<std::string>{"docker-compose"}
                                              : std::vector<std::string>{"docker", "compose"};
    const std::string said = confined_run(compose(program, {"config"}));
    ASSERT_TRUE(said.starts_with(confined_header(Filter::kInstalled) + "exit 0\n")) << installed.name << said;
    EXPECT_NE(said.find("GREETING: hello-from-the-service-env"), std::string::npos) << "interpolated\n" << said;
    EXPECT_NE(said.find("image: pgod-isolation:never-pulled"), std::string::npos) << "merge key resolved\n" << said;
  }
}

// The worker picks `docker compose` when `docker compose version` exits 0, else docker-compose
// (Service::detect_compose_program). The filter must not change that answer, and the program
// it picks must normalise under the filter. install-deps.sh gives both releases Compose v2 as
// the plugin, so the plugin is the answer here.
TEST_F(ConfinedComposeTest, TheComposeProgramTheWorkerDetectsIsTheSameAndWorksUnderTheFilter) {
  const std::vector<std::string> probe = {"docker", "compose", "version"};
  const std::string confined = confined_run(probe, Filter::kInstalled);
  const std::string unconfined = confined_run(probe, Filter::kNone);
  ASSERT_TRUE(confined.starts_with(confined_header(Filter::kInstalled) + "exit ")) << confined;
  ASSERT_TRUE(unconfined.starts_with(confined_header(Filter::kNone) + "exit ")) << unconfined;
  const bool plugin = unconfined.starts_with(confined_header(Filter::kNone) + "exit 0\n");
  EXPECT_TRUE(plugin) << "no Compose v2 plugin: run deploy/install-deps.sh test\n" << unconfined;
  EXPECT_EQ(confined.starts_with(confined_header(Filter::kInstalled) + "exit 0\n"), plugin)
      << "under the filter:\n"
      << confined << "\nwithout:\n"
      << unconfined;

  const std::vector<std::string> program =
      plugin ? std::vector<std::string>{"docker", "compose"} : std::vector<std::string>{"docker-compose"};
  std::cout << "compose program the worker detects here: " << program.front() << (plugin ? " compose" : "") << "\n";
  const std::string said = confined_run(compose(program, {"config"}));
  ASSERT_TRUE(said.starts_with(confined_header(Filter::kInstalled) + "exit 0\n")) << said;
  EXPECT_NE(said.find("hello-from-the-service-env"), std::string::npos) << said;
}

}  // namespace
}  // namespace pgod::isolation
