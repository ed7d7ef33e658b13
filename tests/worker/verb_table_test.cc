#include "verb_table.h"

#include <gtest/gtest.h>

#include "rpc_verbs.h"

namespace pgod::worker {
namespace {

using Args = std::vector<std::string>;

struct AllowCase {
  Verb verb;
  Args args;
  Args compose_args;
};

void PrintTo(const AllowCase& c, std::ostream* out) {
  *out << verb_info(c.verb).words;
  for (const auto& a : c.args) *out << ' ' << a;
}

class VerbAllows : public ::testing::TestWithParam<AllowCase> {};

TEST_P(VerbAllows, PassesOnWhatIsAllowed) {
  const auto& c = GetParam();
  auto checked = check_arguments(*find_worker_verb(c.verb), c.args);
  ASSERT_TRUE(checked.has_value()) << checked.error();
  EXPECT_EQ(checked->compose_args, c.compose_args);
}

INSTANTIATE_TEST_SUITE_P(
    Table, VerbAllows,
    ::testing::Values(
        AllowCase{Verb::kUp, {}, {"up", "-d"}},
        AllowCase{Verb::kUp, {"-d", "--force-recreate", "web"}, {"up", "-d", "--force-recreate", "web"}},
        AllowCase{Verb::kUp, {"-t", "5", "--remove-orphans"}, {"up", "-d", "--timeout", "5", "--remove-orphans"}},
        AllowCase{Verb::kDown, {"--timeout=3", "-v"}, {"down", "--timeout", "3", "--volumes"}},
        AllowCase{Verb::kPs, {"-a", "web", "db"}, {"ps", "--all", "web", "db"}},
        AllowCase{Verb::kLogs, {"-f", "--tail", "10", "web"}, {"logs", "--follow", "--tail", "10", "web"}},
        AllowCase{Verb::kLogs, {"--since=2024-01-01T00:00:00"}, {"logs", "--since", "2024-01-01T00:00:00"}},
        AllowCase{Verb::kExec,
                  {"web", "ls", "-la", "--privileged", "-f", "/etc"},
                  {"exec", "-T", "web", "ls", "-la", "--privileged", "-f", "/etc"}},
        AllowCase{Verb::kExec,
                  {"-T", "-e", "A=1", "-u", "nobody", "web", "id"},
                  {"exec", "-T", "--env", "A=1", "--user", "nobody", "web", "id"}},
        AllowCase{Verb::kBuild, {"--build-arg", "V=2", "--no-cache"}, {"build", "--build-arg", "V=2", "--no-cache"}},
        AllowCase{Verb::kPull, {"-q"}, {"pull", "--quiet"}}, AllowCase{Verb::kRestart, {"web"}, {"restart", "web"}},
        AllowCase{Verb::kRollback, {"0123abcd"}, {"0123abcd"}}, AllowCase{Verb::kStatus, {}, {}}));

struct RefuseCase {
  Verb verb;
  Args args;
  std::string message;
};

void PrintTo(const RefuseCase& c, std::ostream* out) {
  *out << verb_info(c.verb).words;
  for (const auto& a : c.args) *out << ' ' << a;
}

class VerbRefuses : public ::testing::TestWithParam<RefuseCase> {};

TEST_P(VerbRefuses, With406Message) {
  const auto& c = GetParam();
  auto checked = check_arguments(*find_worker_verb(c.verb), c.args);
  ASSERT_FALSE(checked.has_value());
  EXPECT_EQ(checked.error(), c.message);
}

INSTANTIATE_TEST_SUITE_P(
    Table, VerbRefuses,
    ::testing::Values(
        RefuseCase{Verb::kExec,
                   {"--privileged", "web", "sh"},
                   "flag \"--privileged\" is not allowed for exec (privileged containers are refused) (allowed: "
                   "-T/--no-TTY, -d/--detach, -e/--env, -w/--workdir, -u/--user, --index)"},
        RefuseCase{Verb::kUp,
                   {"-f", "/etc/other.yaml"},
                   "flag \"-f\" is not allowed for up (allowed: -d/--detach, --no-color, --quiet-pull, --no-deps, "
                   "--force-recreate, --always-recreate-deps, --no-recreate, --no-build, --no-start, --build, "
                   "--remove-orphans, -V/--renew-anon-volumes, -t/--timeout, --wait)"},
        RefuseCase{Verb::kUp,
                   {"web", "--file=/x"},
                   "flag \"--file\" is not allowed for up (allowed: -d/--detach, "
                   "--no-color, --quiet-pull, --no-deps, --force-recreate, --always-recreate-deps, --no-recreate, "
                   "--no-build, --no-start, --build, --remove-orphans, -V/--renew-anon-volumes, -t/--timeout, --wait)"},
        RefuseCase{Verb::kPs,
                   {"--project-directory", "/"},
                   "flag \"--project-directory\" is not allowed for ps (allowed: -a/--all, -q/--quiet, --services, "
                   "--filter, --format)"},
        RefuseCase{Verb::kPs,
                   {"-p", "other"},
                   "flag \"-p\" is not allowed for ps (allowed: -a/--all, -q/--quiet, --services, --filter, --format)"},
        RefuseCase{Verb::kDown,
                   {"--env-file", "/etc/shadow"},
                   "flag \"--env-file\" is not allowed for down (allowed: --remove-orphans, -v/--volumes, --rmi, "
                   "-t/--timeout)"},
        RefuseCase{Verb::kStart, {"-H", "tcp://x"}, "flag \"-H\" is not allowed for start (allowed: none)"},
        RefuseCase{Verb::kLogs, {"--", "-f"}, "\"--\" is not allowed for logs"},
        RefuseCase{Verb::kUp, {"-t", "soon"}, "flag \"-t\" needs a number"},
        RefuseCase{Verb::kUp, {"-t"}, "flag \"-t\" needs a value"},
        RefuseCase{Verb::kLogs, {"--tail", "-f"}, "flag \"--tail\" needs a value that does not start with '-'"},
        RefuseCase{Verb::kUp, {"--build=yes"}, "flag \"--build\" takes no value"},
        RefuseCase{Verb::kExec, {"-e", "=x", "web", "id"}, "flag \"-e\" needs NAME=VALUE"},
        // NAME alone would copy pgo.toml's secret of that name into the container.
        RefuseCase{Verb::kExec, {"-e", "REGISTRY_TOKEN", "web", "printenv"}, "flag \"-e\" needs NAME=VALUE"},
        RefuseCase{Verb::kBuild, {"--build-arg", "TOKEN"}, "flag \"--build-arg\" needs NAME=VALUE"},
        RefuseCase{Verb::kUp, {"web\x1b[2J"}, "\"web\\x1b[2J\" is not a compose service name"},
        RefuseCase{Verb::kExec, {"web"}, "exec needs a service and a command: exec SERVICE COMMAND [ARGS...]"},
        RefuseCase{Verb::kExec, {"../x", "id"}, "\"../x\" is not a compose service name"},
        RefuseCase{Verb::kUp, {"we b"}, "\"we b\" is not a compose service name"},
        RefuseCase{Verb::kDown, {"web"}, "down takes no arguments, got \"web\""},
        RefuseCase{Verb::kGitPull, {"--force"}, "flag \"--force\" is not allowed for git pull (allowed: none)"},
        RefuseCase{Verb::kRollback, {}, "rollback needs one commit hash (4 to 40 hex digits)"},
        RefuseCase{Verb::kRollback, {"HEAD~1"}, "rollback needs one commit hash (4 to 40 hex digits)"},
        RefuseCase{Verb::kRollback, {"abc"}, "rollback needs one commit hash (4 to 40 hex digits)"}));

TEST(VerbTable, EveryWorkerVerbHasARow) {
  for (const auto& info : all_verbs()) {
    if (info.handler != Handler::kWorker) continue;
    const auto* row = find_worker_verb(info.verb);
    ASSERT_NE(row, nullptr) << info.words;
    EXPECT_TRUE(to_rpc_verb(info.verb).has_value()) << info.words;
    // Only logs -f may run without a limit, and that is decided per call.
    EXPECT_TRUE(row->timeout.has_value()) << info.words;
  }
  EXPECT_EQ(find_worker_verb(Verb::kPing), nullptr);
}

// A verb that changes what runs waits behind the reconcile cycle; only compose's read verbs
// take read slots, and every compose verb has compose's handler.
TEST(VerbTable, TurnsAgreeWithTheGrammar) {
  for (const auto& info : all_verbs()) {
    const auto* row = find_worker_verb(info.verb);
    if (row == nullptr) continue;
    const bool queued = row->turn == Turn::kQueued || row->turn == Turn::kToTheEnd;
    EXPECT_TRUE(queued || !info.mutates) << info.words;
    const bool reads = row->turn == Turn::kRead || row->turn == Turn::kLongRead;
    EXPECT_TRUE(!reads || !row->compose_subcommand.empty()) << info.words;
    EXPECT_TRUE(row->compose_subcommand.empty() || info.mutates == !reads) << info.words;
    EXPECT_NE(row->handler, nullptr) << info.words;
  }
}

TEST(VerbTable, LogsFollowIsMarked) {
  auto follow = check_arguments(*find_worker_verb(Verb::kLogs), Args{"-f"});
  ASSERT_TRUE(follow.has_value());
  EXPECT_TRUE(follow->follow);
  auto once = check_arguments(*find_worker_verb(Verb::kLogs), Args{"--tail", "5"});
  ASSERT_TRUE(once.has_value());
  EXPECT_FALSE(once->follow);
}

}  // namespace
}  // namespace pgod::worker
