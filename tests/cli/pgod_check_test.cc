// `pgod --check` and pgod's flags, run as a process the way a sysadmin runs them.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "pgod_harness.h"
#include "process.h"

namespace pgod::test {
namespace {

const std::string kPgod = PGOD_BIN;

// pgod judges the config file's mode, so each test sets it rather than inherit the umask.
std::string write_config(const TempDir& dir, const std::string& text, mode_t mode = 0644) {
  const auto path = dir.write("pgo.toml", text);
  if (chmod(path.c_str(), mode) != 0) throw std::runtime_error("chmod " + path);
  return path;
}

std::string service_table(const std::string& name, const std::string& user, const std::string& repository = "/r") {
  return "[[services]]\nname = \"" + name + "\"\nuser = \"" + user + "\"\nrepository = \"" + repository + "\"\n";
}

TEST(PgodCheck, ValidConfigPrintsOneLineSummary) {
  TempDir dir;
  const auto config = write_config(dir,
                                   "[[services]]\nname = \"web\"\nuser = \"root\"\nrepository = \"/srv/git/web.git\"\n"
                                   "[[services]]\nname = \"db\"\nuser = \"root\"\nrepository = \"/srv/git/db.git\"\n");
  // -d: the host's own /var/lib/pgo, if any, holds deployed models --check would judge.
  // --docker-socket: no engine there, so the engine's line is the same on every host.
  const auto result =
      run_process({kPgod, "--check", "-c", config, "-d", dir.path(), "--docker-socket", dir.path() + "/none.sock"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  // The engine's line, with why when the docker command itself is missing (a build-only host).
  EXPECT_TRUE(result.out.starts_with("pgod: " + config + ": OK, 2 services: web, db\ndocker engine: not reachable at " +
                                     dir.path() + "/none.sock"))
      << result.out;
  EXPECT_EQ(result.err, "");
}

// As root, --check says whether the engine remaps user namespaces (the docker gate's bind race
// is contained only then): the engine pgod would use answers.
TEST(PgodCheck, AsRootSaysWhetherTheEngineRemapsUserNamespaces) {
  TempDir dir;
  const auto config = write_config(dir, "");
  const auto result = run_process({kPgod, "--check", "-c", config, "-d", dir.path()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const std::string line = result.out.substr(result.out.find('\n') + 1);
  EXPECT_TRUE(line.starts_with("docker engine: user-namespace remapping is o") ||
              line.starts_with("docker engine: not reachable at /var/run/docker.sock"))
      << result.out;
}

TEST(PgodCheck, EveryErrorWithFileLineColumnAndExit1) {
  TempDir dir;
  const auto config = write_config(dir,
                                   "[[services]]\n"
                                   "name = \"web\"\n"
                                   "user = \"pgod-no-such-user\"\n"
                                   "repository = \"/srv/git/web.git\"\n"
                                   "env = [ \"TOKEN\" ]\n"
                                   "registries = [ \"me:SuperS3cret@bad host\" ]\n",
                                   0600);
  const auto result = run_process({kPgod, "--check", "--config=" + config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err,
            config +
                ":3:8: service \"web\": key \"user\": user \"pgod-no-such-user\" does not exist on this host "
                "(create it, or name an existing user)\n" +
                config + ":5:9: service \"web\": key \"env\": item 1 is not VAR=VALUE (value not shown)\n" + config +
                ":6:16: service \"web\": key \"registries\": item 1: registry \"bad host\" is not host[:port]\n" +
                "pgod: " + config + ": 3 errors\n");
  EXPECT_EQ(result.err.find("SuperS3cret"), std::string::npos);
}

TEST(PgodCheck, SyntaxErrorNamesLineAndColumn) {
  TempDir dir;
  const auto config = write_config(dir, "[[services]]\nname = \"web\nuser = \"root\"\n");
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err.rfind(config + ":2:", 0), 0u) << result.err;
}

TEST(PgodCheck, MissingOrNonRegularFile) {
  TempDir dir;
  auto result = run_process({kPgod, "--check", "-c", dir.path() + "/absent.toml"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("absent.toml: cannot read the config file: No such file or directory"), std::string::npos)
      << result.err;
  result = run_process({kPgod, "--check", "-c", dir.path()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("not a regular file"), std::string::npos) << result.err;
}

TEST(PgodCheck, MountNeedsDatadirFlag) {
  TempDir dir;
  const auto config = write_config(dir,
                                   "[[services]]\nname = \"web\"\nuser = \"root\"\nrepository = \"/r\"\n"
                                   "mount = \"nfs://server/share\"\n");
  auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("key \"mount\": needs pgod's --datadir"), std::string::npos) << result.err;
  result = run_process({kPgod, "--check", "-c", config, "--datadir", "/srv/pgo-data"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

// StrictModes for pgo.toml: the file is root's, and its secrets are for root alone.
const std::string kWithToken = service_table("web", "root", "https://oauth2:T0kenValue@git.example.org/web.git");

TEST(PgodCheckFileMode, WorldReadableWithATokenIsRefusedSayingHowToFixIt) {
  TempDir dir;
  const auto config = write_config(dir, kWithToken, 0644);
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err, config +
                            ": mode 0644 lets other users read the secrets it holds (repository of service "
                            "\"web\"): chmod 600 " +
                            config + "\npgod: " + config + ": 1 error\n");
  EXPECT_EQ(result.err.find("T0kenValue"), std::string::npos);
}

TEST(PgodCheckFileMode, PrivateWithATokenIsAccepted) {
  TempDir dir;
  const auto config = write_config(dir, kWithToken + "env = [ \"A=1\" ]\nregistries = [ \"T0k@r.example\" ]\n", 0600);
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST(PgodCheckFileMode, WorldReadableWithoutSecretsIsAccepted) {
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "root", "https://git.example.org/web.git"), 0644);
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST(PgodCheckFileMode, GroupWritableIsRefusedEvenWithoutSecrets) {
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "root"), 0664);
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, config +
                            ": mode 0664 lets the members of its group change it, and so choose what pgod runs "
                            "as every service's user: chmod go-w " +
                            config + "\npgod: " + config + ": 1 error\n");
}

TEST(PgodCheckFileMode, AFileOfAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "root"), 0644);
  const struct passwd* daemon = getpwnam("daemon");
  ASSERT_NE(daemon, nullptr);
  ASSERT_EQ(chown(config.c_str(), daemon->pw_uid, daemon->pw_gid), 0);
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(config + ": owned by uid " + std::to_string(daemon->pw_uid) + ", not root"),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("(chown root " + config + ")"), std::string::npos) << result.err;
}

// Users no service may have (daemon, bin and nobody are in every Debian's base-passwd).
TEST(PgodCheckUsers, TheGatewaysUserIsRefused) {
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "daemon"));
  auto result = run_process({kPgod, "--check", "-c", config, "--gateway-user", "daemon"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, config +
                            ":3:8: service \"web\": key \"user\": user \"daemon\" is the gateway's user "
                            "(--gateway-user daemon), which may talk to every worker and to pgod, so it must own no "
                            "service: create a user for this service (useradd --system NAME)\n" +
                            "pgod: " + config + ": 1 error\n");
  result = run_process({kPgod, "--check", "-c", config, "--gateway-user", "bin"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST(PgodCheckUsers, NobodyIsRefused) {
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "nobody"));
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(config + ":3:8: service \"web\": key \"user\": user \"nobody\" is shared by unrelated "
                                     "daemons"),
            std::string::npos)
      << result.err;
}

TEST(PgodCheckUsers, AUserOfTwoServicesIsRefusedAtTheSecond) {
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "daemon") + service_table("db", "daemon"));
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(config + ":7:8: service \"db\": key \"user\": user \"daemon\" is already the user of "
                                     "service \"web\" (line 3): give each service a user of its own"),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("pgod: " + config + ": 1 error\n"), std::string::npos) << result.err;
}

TEST(PgodCheckUsers, RootMayRunSeveralServices) {
  TempDir dir;
  const auto config = write_config(dir, service_table("web", "root") + service_table("db", "root"));
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST(PgodCheckProjects, ProjectsThatMayNameTheSameObjectsAreRefused) {
  TempDir dir;
  const auto config = write_config(dir, service_table("app", "root") + service_table("app.db", "root"));
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(config + ":5:1: service \"app.db\": key \"name\": service \"app.db\" (compose project "
                                     "\"app_db\") and service \"app\" (line 1, compose project \"app\") could name "
                                     "the same docker objects"),
            std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("rename one"), std::string::npos) << result.err;
}

// Before an upgrade, --check judges what each service runs now (the model its worker saved in
// DIR/.pgod/SERVICE) by this version's policy: pgod-worker --judge-saved-model, run as the
// service's user by the pgod beside it (programs_dir(): a directory the test users may enter).
class PgodCheckDeployedModels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the models are judged as each service's user: needs root";
    std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
    std::filesystem::create_directory(dir.path() + "/.pgod");
  }

  // The model as a worker leaves it: its user's file, 0600, in its user's 0700 state directory.
  void save_model(const std::string& service, const TestUser& user, const std::string& yaml,
                  uid_t file_owner = static_cast<uid_t>(-1)) const {
    const auto state = dir.path() + "/.pgod/" + service;
    std::filesystem::create_directory(state);
    ASSERT_EQ(chown(state.c_str(), user.uid, user.gid), 0);
    ASSERT_EQ(chmod(state.c_str(), 0700), 0);
    const auto file = dir.write(".pgod/" + service + "/compose.validated.yaml", yaml);
    const uid_t owner = file_owner == static_cast<uid_t>(-1) ? user.uid : file_owner;
    ASSERT_EQ(chown(file.c_str(), owner, owner == user.uid ? user.gid : 0), 0);
    ASSERT_EQ(chmod(file.c_str(), 0600), 0);
  }

  ProcessResult check(const std::string& config_text) const {
    const auto config = write_config(dir, config_text, 0600);
    return run_process({programs_dir() + "/pgod", "--check", "-c", config, "-d", dir.path()});
  }

  TempDir dir;
};

const std::string kPrivileged = "services:\n  app:\n    image: busybox\n    privileged: true\n";
const std::string kPlain = "services:\n  app:\n    image: busybox\n";

TEST_F(PgodCheckDeployedModels, ListsTheServicesTheNewPolicyRefusesWithTheReasonsAndStillExits0) {
  const TestUser root{"root", 0, 0};
  save_model("web", service_user_a(), kPrivileged);
  save_model("db", service_user_b(), kPlain);
  save_model("admin", root, kPrivileged);  // user root: the policy does not apply
  const auto result = check(service_table("web", service_user_a().name) + service_table("db", service_user_b().name) +
                            service_table("admin", "root") + service_table("new", service_user_c().name));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "");
  EXPECT_NE(result.out.find("OK, 4 services: web, db, admin, new\n"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("service \"web\": the deployed compose model is refused by this version's policy: "
                            "service \"app\": key \"privileged\": value \"true\""),
            std::string::npos)
      << result.out;
  EXPECT_EQ(result.out.find("service \"db\""), std::string::npos) << "accepted: not listed\n" << result.out;
  EXPECT_EQ(result.out.find("service \"admin\""), std::string::npos) << "root's: not listed\n" << result.out;
  EXPECT_EQ(result.out.find("service \"new\""), std::string::npos) << "nothing deployed: not listed\n" << result.out;
  EXPECT_NE(result.out.find("pgod: 1 service would go BROKEN after the upgrade (it keeps running as deployed): web\n"),
            std::string::npos)
      << result.out;
}

// Compose v1 folds env_file into the saved model, which then looks clean: the checkout's own
// compose file is judged for the host files it reads, as the new worker will at its first deploy.
TEST_F(PgodCheckDeployedModels, HostFilesTheCheckoutsComposeFileReadsAreJudgedToo) {
  save_model("web", service_user_a(), kPlain);
  save_model("db", service_user_b(), kPlain);
  for (const auto& [service, user] : {std::pair{"web", service_user_a()}, std::pair{"db", service_user_b()}}) {
    const auto checkout = dir.path() + "/" + service;
    std::filesystem::create_directory(checkout);
    const auto compose = std::string("services:\n  app:\n    image: busybox\n") +
                         (std::string(service) == "web" ? "    env_file: /etc/passwd\n" : "");
    const auto file = dir.write(std::string(service) + "/compose.yaml", compose);
    ASSERT_EQ(chown(checkout.c_str(), user.uid, user.gid), 0);
    ASSERT_EQ(chown(file.c_str(), user.uid, user.gid), 0);
  }
  const auto result = check(service_table("web", service_user_a().name) + service_table("db", service_user_b().name));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("service \"web\": the deployed compose model is refused by this version's policy: "
                            "key \"env_file\": value \"/etc/passwd\""),
            std::string::npos)
      << result.out;
  EXPECT_EQ(result.out.find("service \"db\""), std::string::npos) << "accepted: not listed\n" << result.out;
}

TEST_F(PgodCheckDeployedModels, NothingDeployedAddsNothingToTheSummary) {
  save_model("web", service_user_a(), kPlain);
  const auto config =
      write_config(dir, service_table("web", service_user_a().name) + service_table("db", service_user_b().name), 0600);
  const auto result = run_process({programs_dir() + "/pgod", "--check", "-c", config, "-d", dir.path(),
                                   "--docker-socket", dir.path() + "/none.sock"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  // The engine's line, with why when the docker command itself is missing (a build-only host).
  EXPECT_TRUE(result.out.starts_with("pgod: " + config + ": OK, 2 services: web, db\ndocker engine: not reachable at " +
                                     dir.path() + "/none.sock"))
      << result.out;
}

TEST_F(PgodCheckDeployedModels, TheModelIsReadAsTheServicesUserNeverAsRoot) {
  save_model("web", service_user_a(), kPrivileged, /*file_owner=*/0);  // root's, 0600
  const auto result = check(service_table("web", service_user_a().name));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("service \"web\": the deployed compose model was not judged: cannot read " + dir.path() +
                            "/.pgod/web/compose.validated.yaml: Permission denied\n"),
            std::string::npos)
      << result.out;
  EXPECT_EQ(result.out.find("BROKEN"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("pgod: 1 service not judged: web\n"), std::string::npos) << result.out;
}

TEST_F(PgodCheckDeployedModels, SecretsInTheReasonsAreRedactedAndControlCharactersEscaped) {
  save_model("web", service_user_a(),
             "services:\n  app:\n    image: busybox\n    cap_add: [ \"T0kenValue42\" ]\n"
             "    devices: [ \"/dev/\\e[2Jx:/dev/x\" ]\n");
  const auto result = check(service_table("web", service_user_a().name) + "env = [ \"TOKEN=T0kenValue42\" ]\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("key \"cap_add\""), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find("T0kenValue42"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("[redacted]"), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find('\x1b'), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("key \"devices\""), std::string::npos) << result.out;
}

TEST(PgodFlags, HelpVersionAndBadFlags) {
  auto result = run_process({kPgod, "--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("-t, --duration duration"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("(default 5m0s)"), std::string::npos);

  result = run_process({kPgod, "-v"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.rfind("pgod ", 0), 0u) << result.out;

  result = run_process({kPgod, "--frobnicate"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "pgod: unknown flag --frobnicate (see pgod --help)\n");

  result = run_process({kPgod, "--check", "-t", "5 minutes"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("invalid value for -t, --duration"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace pgod::test
