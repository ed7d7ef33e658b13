#include "flags.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "gateway_limits.h"
#include "options.h"

namespace pgod {
namespace {

using namespace std::chrono_literals;
using Args = std::vector<std::string>;

TEST(Flags, PflagSpellings) {
  for (const Args& args : {Args{"-c", "x.toml"}, Args{"-cx.toml"}, Args{"-c=x.toml"}, Args{"--config", "x.toml"},
                           Args{"--config=x.toml"}}) {
    auto parsed = supervisor::parse_options(args);
    ASSERT_TRUE(parsed.has_value()) << parsed.error();
    EXPECT_EQ(parsed->options.config, "x.toml");
  }
}

TEST(Flags, PgodDefaultsAreTheManuals) {
  auto parsed = supervisor::parse_options({});
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  const auto& o = parsed->options;
  EXPECT_EQ(o.config, "/etc/pgo.toml");
  EXPECT_EQ(o.dir, "/var/lib/pgo");
  EXPECT_EQ(o.ssh, ":2222");
  EXPECT_EQ(o.duration, 5min);
  EXPECT_EQ(o.metrics, ":9112");
  EXPECT_TRUE(o.datadir.empty());
  EXPECT_TRUE(o.restart);
  EXPECT_FALSE(o.debug);
  EXPECT_FALSE(o.check);
  for (const char* documented : {"--config", "--dir", "--ssh", "--duration", "--datadir", "--debug", "--restart",
                                 "--version", "--metrics", "--check", "(default 5m0s)", "(default true)",
                                 "(default \"/etc/pgo.toml\")", "(default \":2222\")", "(default \":9112\")"})
    EXPECT_NE(parsed->usage.find(documented), std::string::npos) << documented;
}

TEST(Flags, EveryPgodFlag) {
  auto parsed = supervisor::parse_options({"-c", "/x/pgo.toml", "-d", "/srv/pgo", "-s", "127.0.0.1:2200", "-t", "1h30m",
                                           "--datadir", "/srv/data", "--debug", "--restart=false", "-m", "[::1]:9000",
                                           "--check", "--compose", "standalone"});
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  const auto& o = parsed->options;
  EXPECT_EQ(o.config, "/x/pgo.toml");
  EXPECT_EQ(o.dir, "/srv/pgo");
  EXPECT_EQ(o.ssh, "127.0.0.1:2200");
  EXPECT_EQ(o.duration, 90min);
  EXPECT_EQ(o.datadir, "/srv/data");
  EXPECT_TRUE(o.debug);
  EXPECT_FALSE(o.restart);
  EXPECT_EQ(o.metrics, "[::1]:9000");
  EXPECT_TRUE(o.check);
  EXPECT_EQ(o.compose, "standalone");
}

TEST(Flags, BooleanSpellings) {
  for (const char* yes : {"1", "t", "T", "true", "TRUE", "True"}) EXPECT_TRUE(*parse_bool(yes));
  for (const char* no : {"0", "f", "F", "false", "FALSE", "False"}) EXPECT_FALSE(*parse_bool(no));
  EXPECT_FALSE(parse_bool("yes").has_value());
}

struct BadCase {
  Args args;
  std::string error;
};

void PrintTo(const BadCase& c, std::ostream* out) {
  for (const auto& arg : c.args) *out << arg << ' ';
}

class PgodFlagRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(PgodFlagRejects, WithClearError) {
  auto parsed = supervisor::parse_options(GetParam().args);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error(), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    Errors, PgodFlagRejects,
    ::testing::Values(
        BadCase{{"--bogus"}, "unknown flag --bogus (see pgod --help)"},
        BadCase{{"-x"}, "unknown flag -x (see pgod --help)"}, BadCase{{"-c"}, "flag -c, --config needs a file value"},
        BadCase{{"-t", "5"},
                "invalid value for -t, --duration: missing unit in duration \"5\" (use ns, us, ms, s, m or h)"},
        BadCase{{"-t", "0s"}, "-t/--duration must be positive, got 0s"},
        BadCase{{"--compose", "v2"}, "--compose must be auto, plugin or standalone, got \"v2\""},
        BadCase{{"-t", "-5m"}, "-t/--duration must be positive, got -5m0s"},
        BadCase{{"--restart=maybe"}, "invalid value for --restart: \"maybe\" is not a boolean (use true or false)"},
        BadCase{{"-d", "/"}, "-d/--dir may not be /"},
        BadCase{{"-d", "relative"}, "-d/--dir must be an absolute path, got \"relative\""},
        BadCase{{"--datadir", "data"}, "--datadir must be an absolute path, got \"data\""},
        BadCase{{"-s", "2222"},
                "-s/--ssh: invalid address \"2222\": no port (expected [host]:port, e.g. :2222 or 127.0.0.1:2222)"},
        BadCase{{"-s", ":99999"},
                "-s/--ssh: invalid address \":99999\": port out of range (expected [host]:port, e.g. :2222 or "
                "127.0.0.1:2222)"},
        BadCase{{"-m", "::1:9112"},
                "-m/--metrics: invalid address \"::1:9112\": an IPv6 address needs [ ] (expected [host]:port, e.g. "
                ":2222 or 127.0.0.1:2222)"},
        BadCase{{"--mount-with-systemd", "--mount-program", "/bin/true"},
                "--mount-with-systemd chooses the mount programs: drop --mount-program and --umount-program"},
        BadCase{{"--gateway-limits", "max-sessions=0"},
                "--gateway-limits: invalid value for --max-sessions: \"0\" is not a positive number"},
        BadCase{{"--gateway-limits", "login-timeout=5"},
                "--gateway-limits: invalid value for --login-timeout: missing unit in duration \"5\" (use ns, us, ms, "
                "s, m or "
                "h)"},
        BadCase{{"--gateway-limits", "idle-timeout=500us"},
                "--gateway-limits: invalid value for --idle-timeout: \"500us\" is not a duration from 1s to 8760h, "
                "like 30s"},
        BadCase{{"--gateway-limits", "max-sessions=2,"}, "--gateway-limits: an empty item (use name=value,name=value)"},
        BadCase{{"--gateway-limits", ",max-sessions=2"}, "--gateway-limits: an empty item (use name=value,name=value)"},
        BadCase{{"--gateway-limits", "user=root"},
                "--gateway-limits: unknown limit \"user\" (known: max-connections, max-unauthenticated, "
                "early-drop-start, early-drop-rate, per-source-max-unauthenticated, per-source-ipv4-prefix, "
                "per-source-ipv6-prefix, penalty-no-auth, penalty-auth-fail, penalty-timeout, penalty-over-cap, "
                "penalty-min, penalty-max, kex-timeout, login-timeout, exec-timeout, idle-timeout, keepalive-interval, "
                "keepalive-count, max-auth-tries, max-command-length, max-sessions, max-connections-per-key, "
                "max-commands-per-key, max-commands-per-service)"},
        BadCase{{"--no-gateway", "--gateway-limits", "max-sessions=2"},
                "--gateway-limits is for the gateway pgod starts: with --no-gateway, give the limits to pgod-gateway "
                "itself"},
        BadCase{{"stray"}, "unexpected argument \"stray\" (see pgod --help)"}));

TEST(Flags, CountsArePositiveWholeNumbers) {
  std::size_t sessions = 10;
  FlagSet flags("test");
  flags.add_count(0, "max-sessions", &sessions, "sessions at once");
  EXPECT_NE(flags.usage("").find("--max-sessions n"), std::string::npos) << flags.usage("");
  EXPECT_NE(flags.usage("").find("(default 10)"), std::string::npos) << flags.usage("");
  ASSERT_TRUE(flags.parse({"--max-sessions=4"}).has_value());
  EXPECT_EQ(sessions, 4u);
  for (const char* bad : {"0", "-1", "4x", "", "99999999999999999999999"}) {
    auto parsed = flags.parse({std::string("--max-sessions=") + bad});
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error(), fmt::format("invalid value for --max-sessions: \"{}\" is not a positive number", bad));
    EXPECT_EQ(sessions, 4u) << "a refused value leaves the last good one";
  }
}

TEST(Flags, ABoundedDurationRefusesWhatIsOutsideItsRange) {
  std::chrono::nanoseconds timeout = 30s;
  FlagSet flags("test");
  flags.add_duration(0, "login-timeout", &timeout, "time to log in", DurationRange{1s, 8760h});
  ASSERT_TRUE(flags.parse({"--login-timeout", "10m"}).has_value());
  EXPECT_EQ(timeout, 10min);
  for (const char* bad : {"500ms", "8761h"}) {
    auto parsed = flags.parse({"--login-timeout", bad});
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(
        parsed.error(),
        fmt::format("invalid value for --login-timeout: \"{}\" is not a duration from 1s to 8760h, like 30s", bad));
  }
  EXPECT_EQ(timeout, 10min);
}

TEST(Flags, TheGatewayLimitTableIsOneFlagPerRow) {
  GatewayLimits limits;
  FlagSet flags("pgod-gateway");
  add_gateway_limit_flags(flags, &limits);
  std::vector<std::string> args;
  for (const auto& row : kGatewayLimitRows) {
    EXPECT_NE(flags.usage("").find(fmt::format("--{} ", row.flag)), std::string::npos) << row.flag;
    args.push_back(
        fmt::format("--{}={}", row.flag, std::holds_alternative<std::size_t GatewayLimits::*>(row.field) ? "7" : "7s"));
  }
  ASSERT_TRUE(flags.parse(args).has_value());
  EXPECT_EQ(limits.max_connections, 7u);
  EXPECT_EQ(limits.max_unauthenticated, 7u);
  EXPECT_EQ(limits.max_auth_tries, 7u);
  EXPECT_EQ(limits.max_command_length, 7u);
  EXPECT_EQ(limits.max_sessions_per_connection, 7u);
  EXPECT_EQ(limits.max_commands_per_service, 7u);
  EXPECT_EQ(limits.login_timeout, 7s);
  EXPECT_EQ(limits.idle_timeout, 7s);
  // pgod's --gateway-limits takes exactly the same names and bounds.
  std::string list;
  for (const auto& arg : args) list += (list.empty() ? "" : ",") + arg.substr(2);
  auto passed = gateway_limit_args(list);
  ASSERT_TRUE(passed.has_value()) << passed.error();
  EXPECT_EQ(*passed, args);
}

TEST(Flags, GatewayLimitsThatCannotHoldAreRefusedByName) {
  for (const auto& [list, why] : std::vector<std::pair<std::string, std::string>>{
           {"per-source-ipv4-prefix=33", "--per-source-ipv4-prefix: at most 32"},
           {"per-source-ipv6-prefix=129", "--per-source-ipv6-prefix: at most 128"},
           {"early-drop-rate=101", "--early-drop-rate: a percentage, at most 100"},
           {"penalty-min=20m", "--penalty-min is above --penalty-max: no source would ever be refused"},
           {"keepalive-count=128", "--keepalive-count: at most 127"},
           {"keepalive-interval=10h", "--keepalive-interval: at most 32767s"}}) {
    auto refused = gateway_limit_args(list);
    ASSERT_FALSE(refused.has_value()) << list;
    EXPECT_EQ(refused.error(), "--gateway-limits: " + why);
  }
  GatewayLimits defaults;
  EXPECT_EQ(check_gateway_limits(defaults), "");
  EXPECT_TRUE(gateway_limit_args("per-source-ipv6-prefix=48,penalty-min=20m,penalty-max=1h").has_value());
}

TEST(Flags, GatewayLimitsBecomeTheGatewaysFlags) {
  auto parsed =
      supervisor::parse_options({"--gateway-limits", "max-sessions=4,login-timeout=10s,max-command-length=100"});
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  EXPECT_EQ(parsed->options.gateway_limit_args,
            (Args{"--max-sessions=4", "--login-timeout=10s", "--max-command-length=100"}));
  EXPECT_TRUE(supervisor::parse_options({})->options.gateway_limit_args.empty());
}

// <datadir>/<service> is a bind root: a --datadir that holds or sits in -d (checkouts, the
// state directories with their git directories) or --rundir (the gate's sockets) is refused.
TEST(Flags, ADatadirOverlappingPgodsOwnDirectoriesIsRefused) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-d", "/srv/pgo", "--datadir", "/srv/pgo/.pgod"},
           {"-d", "/srv/pgo", "--datadir", "/srv/pgo/"},
           {"-d", "/srv/pgo/", "--datadir", "/srv"},
           {"-d", "/srv/pgo", "--datadir", "/srv/pgo/../pgo/data"},
           {"--rundir", "/run/pgod", "--datadir", "/run"},
       }) {
    auto parsed = supervisor::parse_options(args);
    ASSERT_FALSE(parsed.has_value()) << args[3];
    EXPECT_NE(parsed.error().find("overlap"), std::string::npos) << parsed.error();
  }
  // A name that is / in the end is /.
  auto root = supervisor::parse_options({"--datadir", "/srv/.."});
  ASSERT_FALSE(root.has_value());
  EXPECT_EQ(root.error(), "--datadir may not be /");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-d", "/srv/pgo", "--datadir", "/srv/pgo-data"},
           {"-d", "/srv/pgo", "--datadir", "/mnt/nfs"},
       }) {
    auto parsed = supervisor::parse_options(args);
    EXPECT_TRUE(parsed.has_value()) << args[3] << ": " << parsed.error();
  }
}

TEST(Flags, DoubleDashEndsFlags) {
  bool debug = false;
  FlagSet flags("t");
  flags.add_bool(0, "debug", &debug, "");
  auto positional = flags.parse({"--", "--debug", "-x"});
  ASSERT_TRUE(positional.has_value());
  EXPECT_FALSE(debug);
  EXPECT_EQ(*positional, (Args{"--debug", "-x"}));
}

TEST(Flags, StopAtFirstPositionalLeavesTheRestToTheCommand) {
  bool debug = false;
  std::string port = "2222";
  FlagSet flags("t");
  flags.add_bool(0, "debug", &debug, "");
  flags.add_string('p', "port", &port, "");
  flags.stop_at_first_positional();
  auto positional = flags.parse({"-p", "2200", "host:web//logs", "-f", "--debug"});
  ASSERT_TRUE(positional.has_value()) << positional.error();
  EXPECT_EQ(port, "2200");
  EXPECT_FALSE(debug);
  EXPECT_EQ(*positional, (Args{"host:web//logs", "-f", "--debug"}));
}

}  // namespace
}  // namespace pgod
