// Fault: an invalid pgo.toml on reload. SupervisorTest.ABadConfigOnReloadLeavesEveryWorkerAlone
// (tests/supervisor) covers a table naming an unknown user, noticed through inotify; this is the
// fault suite's own check with other breakage (a TOML syntax error, then a duplicate service)
// through both inotify and SIGHUP: the old config stays in force, every worker keeps its PID and
// answers, and the next valid config is applied as usual.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "fault_support.h"
#include "pgod_harness.h"

namespace pgod::test::faults {
namespace {

using namespace std::chrono_literals;

TEST(ConfigFaultTest, AnInvalidConfigOnReloadKeepsTheOldConfigAndEveryWorker) {
  PgodHarness pgod;
  const auto a = PgodHarness::service_toml("a", service_user_a().name, pgod.upstream("a").path());
  const auto b = PgodHarness::service_toml("b", service_user_b().name, pgod.upstream("b").path());
  pgod.write_config(a + b);
  pgod.start();
  ASSERT_TRUE(pgod.wait_ready({"a", "b"})) << pgod.log();
  const pid_t worker_a = pgod.worker_pid("a"), worker_b = pgod.worker_pid("b");
  const std::string refused = "invalid config; the running services are left as they are";

  const auto still_as_before = [&](const std::string& when) {
    EXPECT_EQ(pgod.worker_pid("a"), worker_a) << when;
    EXPECT_EQ(pgod.worker_pid("b"), worker_b) << when;
    EXPECT_EQ(pgod.workers().size(), 2u) << when;
    for (const auto& name : {"a", "b"}) {
      const auto answer = worker_status(pgod.rundir() + "/workers/" + name + ".sock", 5s);
      EXPECT_EQ(answer.state, "OK") << when << ": " << name << " " << answer.failure;
    }
  };

  // A syntax error, noticed through inotify.
  pgod.write_config(a + b + "[[services]]\nname = \"c\n");
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return count(pgod.log(), refused) == 1; })) << pgod.log();
  still_as_before("after a syntax error");
  // The same file again on SIGHUP.
  pgod.send_signal(SIGHUP);
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return count(pgod.log(), refused) == 2; })) << pgod.log();
  still_as_before("after SIGHUP with the syntax error");
  // Well-formed TOML that names a service twice, one of them with new settings.
  pgod.write_config(a + b + PgodHarness::service_toml("b", service_user_c().name, pgod.upstream("b").path()));
  ASSERT_TRUE(PgodHarness::wait_for([&]() { return count(pgod.log(), refused) == 3; })) << pgod.log();
  still_as_before("after a duplicate service");
  std::this_thread::sleep_for(300ms);
  still_as_before("a moment later");
  EXPECT_EQ(pgod.calls().find(" down"), std::string::npos) << "nothing was brought down";

  // pgod still reloads: the next valid config is applied, and only what changed moves.
  pgod.write_config(a + b + PgodHarness::service_toml("c", service_user_c().name, pgod.upstream("c").path()));
  ASSERT_TRUE(pgod.wait_ready({"c"})) << pgod.log();
  EXPECT_EQ(pgod.worker_pid("a"), worker_a);
  EXPECT_EQ(pgod.worker_pid("b"), worker_b);
}

}  // namespace
}  // namespace pgod::test::faults
