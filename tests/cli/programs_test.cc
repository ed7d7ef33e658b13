// The other three programs' command lines, as processes.
#include <gtest/gtest.h>

#include "process.h"

namespace pgod::test {
namespace {

TEST(Pgoctl, UnknownCommandIsCaughtLocallyWithTheList) {
  const auto result = run_process({PGOCTL_BIN, "localhost:web//frob"});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_EQ(result.err,
            "pgoctl: Not Acceptable: Command \"frob\" does not match any route\n"
            "pgoctl: valid commands: up, down, stop, start, restart, ps, pull, build, logs, exec, load, git pull, "
            "git hash, ping, status, freeze, unfreeze, rollback, history, worker restart\n");
}

TEST(Pgoctl, UsageAndHostRequired) {
  auto result = run_process({PGOCTL_BIN});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_NE(result.err.find("Usage: pgoctl [-i IDENTITY] [-p PORT] [--] host:service//command"), std::string::npos);

  result = run_process({PGOCTL_BIN, "web//ps"});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_EQ(result.err, "pgoctl: no host in \"web//ps\" (expected host:service//command)\n");

  result = run_process({PGOCTL_BIN, "--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("Commands: up, down"), std::string::npos);

  result = run_process({PGOCTL_BIN, "-q", "h:web//ps"});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_EQ(result.err, "pgoctl: unknown flag -q (see pgoctl --help)\n");
}

TEST(PgodWorker, RejectsMissingOrGarbageSettings) {
  auto result = run_process({PGOD_WORKER_BIN});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "pgod-worker: --settings FILE is required (or --settings-fd N)\n");

  TempDir dir;
  result = run_process({PGOD_WORKER_BIN, "--settings", dir.path() + "/s"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "pgod-worker: --socket PATH is required (or --listen-fd N)\n");

  const auto garbage = dir.write("settings.bin", "this is not a capnp message at all");
  result = run_process({PGOD_WORKER_BIN, "--settings", garbage, "--socket", dir.path() + "/w.sock"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("not a settings message"), std::string::npos) << result.err;
}

TEST(PgodWorker, TheDocumentedSettingsExampleEncodes) {
  // The README's way to run a worker by hand must match the schema.
  const std::string source = PGOD_SOURCE_DIR;
  const auto text = read_file(source + "/deploy/examples/worker-settings.txt");
  ASSERT_FALSE(text.empty());
  const auto encoded = run_process(
      {"/usr/bin/capnp", "encode", "-I/usr/include", source + "/proto/settings.capnp", "ServiceSettings"}, text);
  EXPECT_EQ(encoded.exit_code, 0) << encoded.err;
  EXPECT_FALSE(encoded.out.empty());
}

TEST(PgodGateway, RejectsBadAddresses) {
  const auto result = run_process({PGOD_GATEWAY_BIN, "-s", "nope"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("invalid address \"nope\""), std::string::npos) << result.err;
  EXPECT_EQ(run_process({PGOD_GATEWAY_BIN, "--help"}).exit_code, 0);
}

TEST(Pgod, MakeHostKeyCreatesOnceThenReportsIt) {
  TempDir dir;
  const std::string key = dir.path() + "/etc-pgo/ssh_host_ed25519_key";
  auto first = run_process({PGOD_BIN, "--make-host-key", "--host-key", key});
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out.rfind(key + " created (SHA256:", 0), 0u) << first.out;
  auto second = run_process({PGOD_BIN, "--make-host-key", "--host-key", key});
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out.rfind(key + " exists (SHA256:", 0), 0u) << second.out;
  EXPECT_EQ(first.out.substr(first.out.find('(')), second.out.substr(second.out.find('(')));
}

}  // namespace
}  // namespace pgod::test
