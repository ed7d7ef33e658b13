// `pgod --check` and pgod's flags, run as a process the way a sysadmin runs them.
#include <gtest/gtest.h>

#include "process.h"

namespace pgod::test {
namespace {

const std::string kPgod = PGOD_BIN;

TEST(PgodCheck, ValidConfigPrintsOneLineSummary) {
  TempDir dir;
  const auto config = dir.write("pgo.toml",
                                "[[services]]\nname = \"web\"\nuser = \"root\"\nrepository = \"/srv/git/web.git\"\n"
                                "[[services]]\nname = \"db\"\nuser = \"root\"\nrepository = \"/srv/git/db.git\"\n");
  const auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "pgod: " + config + ": OK, 2 services: web, db\n");
  EXPECT_EQ(result.err, "");
}

TEST(PgodCheck, EveryErrorWithFileLineColumnAndExit1) {
  TempDir dir;
  const auto config = dir.write("pgo.toml",
                                "[[services]]\n"
                                "name = \"web\"\n"
                                "user = \"pgod-no-such-user\"\n"
                                "repository = \"/srv/git/web.git\"\n"
                                "env = [ \"TOKEN\" ]\n"
                                "registries = [ \"me:SuperS3cret@bad host\" ]\n");
  const auto result = run_process({kPgod, "--check", "--config=" + config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err,
            config + ":3:8: service \"web\": key \"user\": user \"pgod-no-such-user\" does not exist on this host "
                     "(create it, or name an existing user)\n" +
                config + ":5:9: service \"web\": key \"env\": item 1 is not VAR=VALUE (value not shown)\n" +
                config + ":6:16: service \"web\": key \"registries\": item 1: registry \"bad host\" is not host[:port]\n" +
                "pgod: " + config + ": 3 errors\n");
  EXPECT_EQ(result.err.find("SuperS3cret"), std::string::npos);
}

TEST(PgodCheck, SyntaxErrorNamesLineAndColumn) {
  TempDir dir;
  const auto config = dir.write("pgo.toml", "[[services]]\nname = \"web\nuser = \"root\"\n");
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
  const auto config = dir.write("pgo.toml",
                                "[[services]]\nname = \"web\"\nuser = \"root\"\nrepository = \"/r\"\n"
                                "mount = \"nfs://server/share\"\n");
  auto result = run_process({kPgod, "--check", "-c", config});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("key \"mount\": needs pgod's --datadir"), std::string::npos) << result.err;
  result = run_process({kPgod, "--check", "-c", config, "--datadir", "/srv/pgo-data"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
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
