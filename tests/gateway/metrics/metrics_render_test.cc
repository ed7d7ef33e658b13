// Metrics::render() read back line by line: exact names, labels, values, HELP and TYPE lines.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>

#include "log_capture.h"
#include "metrics.h"

namespace pgod::gateway {
namespace {

// One exposition split into its parts; every line must be a comment or `series value`.
struct Exposition {
  std::map<std::string, std::string> help, type;  // by family name
  std::map<std::string, std::string> samples;     // `name{labels}` → value, as written
  std::vector<std::string> series;                // in output order

  explicit Exposition(const std::string& text) {
    static const std::regex sample_line(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?) (-?[0-9.e+]+)$)");
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (line.rfind("# HELP ", 0) == 0) {
        auto rest = line.substr(7);
        help[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
      } else if (line.rfind("# TYPE ", 0) == 0) {
        auto rest = line.substr(7);
        type[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
      } else if (std::regex_match(line, m, sample_line)) {
        EXPECT_FALSE(samples.count(m[1])) << "duplicate series " << line;
        samples[m[1]] = m[3];
        series.push_back(m[1]);
      } else {
        ADD_FAILURE() << "not a valid exposition line: " << line;
      }
    }
    EXPECT_TRUE(text.empty() || text.back() == '\n');
  }

  // Series of one family, e.g. every `pgo_service_state{...}`.
  std::size_t count(const std::string& family) const {
    std::size_t n = 0;
    for (const auto& s : series) n += s == family || s.rfind(family + "{", 0) == 0;
    return n;
  }
  std::string value(const std::string& series_name) const {
    auto it = samples.find(series_name);
    return it == samples.end() ? "<absent>" : it->second;
  }
};

ServiceSnapshot service(std::string name, std::string state, bool answered = true, std::string worker = "running",
                        std::string hash = "0123abcd", std::uint32_t restarts = 0) {
  return {std::move(name), std::move(worker), restarts, answered, std::move(state), std::move(hash)};
}

TEST(MetricsRender, EveryFamilyHasHelpAndType) {
  Metrics metrics;
  metrics.count_command("web", "ps", "", false);
  Exposition e(metrics.render({service("web", "ok")}));
  const std::map<std::string, std::string> families = {{"pgo_command_count", "counter"},
                                                       {"pgo_command_error_count", "counter"},
                                                       {"pgod_gateway_rejected_total", "counter"},
                                                       {"pgod_gateway_connections", "gauge"},
                                                       {"pgod_gateway_unauthenticated", "gauge"},
                                                       {"pgod_gateway_refused_sources", "gauge"},
                                                       {"pgo_service_state", "gauge"},
                                                       {"pgo_service_git_info", "gauge"},
                                                       {"pgod_worker_restarts_total", "counter"},
                                                       {"pgod_worker_up", "gauge"}};
  for (const auto& [name, type] : families) {
    EXPECT_EQ(e.type[name], type) << name;
    EXPECT_FALSE(e.help[name].empty()) << name;
    EXPECT_GT(e.count(name), 0u) << name;
  }
  EXPECT_EQ(e.type.size(), families.size());
}

TEST(MetricsRender, FreshStateHasTheFixedSeriesOnly) {
  Metrics metrics;
  Exposition e(metrics.render({}));
  // Families without samples are left out entirely, as prometheus-cpp does for its own.
  EXPECT_EQ(e.type.size(), 4u);
  EXPECT_EQ(e.value("pgod_gateway_connections"), "0");
  EXPECT_EQ(e.value("pgod_gateway_unauthenticated"), "0");
  EXPECT_EQ(e.value("pgod_gateway_refused_sources"), "0");
  // The fixed set of reasons exists from the start, at 0.
  EXPECT_EQ(e.count("pgod_gateway_rejected_total"), 12u);
  for (const char* reason : {"auth", "bad_request", "not_found", "unauthorized", "not_acceptable", "limit", "source",
                             "penalty", "early_drop", "evicted", "timeout", "other"})
    EXPECT_EQ(e.value(std::string("pgod_gateway_rejected_total{reason=\"") + reason + "\"}"), "0") << reason;
}

TEST(MetricsRender, CommandCountersKeepTheOriginalNamesWithoutTotalSuffix) {
  Metrics metrics;
  metrics.count_command("web", "git", "pull", false);
  metrics.count_command("web", "git", "pull", false);
  metrics.count_command("web", "ps", "", true);
  metrics.count_command("db", "up", "", true);
  metrics.count_command("db", "up", "", false);
  const auto text = metrics.render({});
  Exposition e(text);
  EXPECT_EQ(e.value(R"(pgo_command_count{cmd="git",service="web",subcmd="pull"})"), "2");
  EXPECT_EQ(e.value(R"(pgo_command_error_count{cmd="git",service="web",subcmd="pull"})"), "0");
  EXPECT_EQ(e.value(R"(pgo_command_count{cmd="ps",service="web",subcmd=""})"), "1");
  EXPECT_EQ(e.value(R"(pgo_command_error_count{cmd="ps",service="web",subcmd=""})"), "1");
  EXPECT_EQ(e.value(R"(pgo_command_count{cmd="up",service="db",subcmd=""})"), "2");
  EXPECT_EQ(e.value(R"(pgo_command_error_count{cmd="up",service="db",subcmd=""})"), "1");
  EXPECT_EQ(e.count("pgo_command_count"), 3u);
  EXPECT_EQ(e.count("pgo_command_error_count"), 3u);
  EXPECT_EQ(text.find("pgo_command_count_total"), std::string::npos);
  EXPECT_EQ(text.find("pgo_command_error_count_total"), std::string::npos);
  EXPECT_NE(text.find("# TYPE pgo_command_count counter\n"), std::string::npos);
  // Sorted by labels, so two scrapes of the same state are byte for byte the same.
  EXPECT_EQ(e.series[0], R"(pgo_command_count{cmd="git",service="web",subcmd="pull"})");
  EXPECT_EQ(metrics.render({}), text);
}

TEST(MetricsRender, UnknownRejectReasonCountsAsOther) {
  Metrics metrics;
  metrics.count_rejected("auth");
  metrics.count_rejected("limit");
  metrics.count_rejected("limit");
  metrics.count_rejected("no-such-reason");
  metrics.count_rejected("");
  metrics.count_rejected("AUTH");
  Exposition e(metrics.render({}));
  EXPECT_EQ(e.value(R"(pgod_gateway_rejected_total{reason="auth"})"), "1");
  EXPECT_EQ(e.value(R"(pgod_gateway_rejected_total{reason="limit"})"), "2");
  EXPECT_EQ(e.value(R"(pgod_gateway_rejected_total{reason="other"})"), "3");
  EXPECT_EQ(e.count("pgod_gateway_rejected_total"), 12u);
}

TEST(MetricsRender, ConnectionsGaugeFollowsTheLastValue) {
  Metrics metrics;
  metrics.set_connections(5);
  metrics.set_connections(3);
  EXPECT_EQ(Exposition(metrics.render({})).value("pgod_gateway_connections"), "3");
  metrics.set_pending(7, 2);
  Exposition e(metrics.render({}));
  EXPECT_EQ(e.value("pgod_gateway_unauthenticated"), "7");
  EXPECT_EQ(e.value("pgod_gateway_refused_sources"), "2");
}

TEST(MetricsRender, ServiceStateIsOneSeriesPerStateWithOneSet) {
  Metrics metrics;
  Exposition e(metrics.render({service("web", "ok"), service("db", "frozen", true, "backing-off"),
                               service("mute", "ok", /*answered=*/false), service("odd", "exploded")}));
  const std::vector<std::string> states = {"ok",   "frozen",  "rollback", "broken",
                                           "diff", "stopped", "starting", "unknown"};
  const std::map<std::string, std::string> current = {
      {"web", "ok"}, {"db", "frozen"}, {"mute", "unknown"}, {"odd", "unknown"}};
  for (const auto& [name, expected] : current) {
    for (const auto& state : states)
      EXPECT_EQ(e.value("pgo_service_state{service=\"" + name + "\",state=\"" + state + "\"}"),
                state == expected ? "1" : "0")
          << name << " " << state;
  }
  EXPECT_EQ(e.count("pgo_service_state"), 4 * states.size());
  EXPECT_EQ(e.value(R"(pgod_worker_up{service="web"})"), "1");
  EXPECT_EQ(e.value(R"(pgod_worker_up{service="db"})"), "0");    // backing off
  EXPECT_EQ(e.value(R"(pgod_worker_up{service="mute"})"), "0");  // running but silent
  EXPECT_EQ(e.value(R"(pgod_worker_up{service="odd"})"), "1");
}

TEST(MetricsRender, GitInfoAndRestarts) {
  Metrics metrics;
  Exposition e(metrics.render(
      {service("web", "ok", true, "running", "4f2a9c0e11", 3), service("new", "starting", true, "running", "", 0)}));
  EXPECT_EQ(e.value(R"(pgo_service_git_info{service="web",hash="4f2a9c0e11"})"), "1");
  EXPECT_EQ(e.count("pgo_service_git_info"), 1u);  // no hash, no info series
  EXPECT_EQ(e.value(R"(pgod_worker_restarts_total{service="web"})"), "3");
  EXPECT_EQ(e.value(R"(pgod_worker_restarts_total{service="new"})"), "0");
}

TEST(MetricsRender, ServiceListedTwiceAppearsOnce) {
  Metrics metrics;
  Exposition e(metrics.render({service("web", "ok"), service("web", "broken")}));
  EXPECT_EQ(e.count("pgod_worker_up"), 1u);
  EXPECT_EQ(e.value(R"(pgo_service_state{service="web",state="ok"})"), "1");
}

TEST(MetricsRender, LabelValuesAreEscaped) {
  Metrics metrics;
  metrics.count_command("q\"b\\s\nn", "ps", "", false);
  const auto text = metrics.render({service("a\"b\\c\nd", "ok", true, "running", "h\"\\\n")});
  Exposition e(text);  // fails on any line a raw newline split
  EXPECT_EQ(e.value(R"(pgo_command_count{cmd="ps",service="q\"b\\s\nn",subcmd=""})"), "1");
  EXPECT_EQ(e.value(R"(pgod_worker_up{service="a\"b\\c\nd"})"), "1");
  EXPECT_EQ(e.value(R"(pgo_service_git_info{service="a\"b\\c\nd",hash="h\"\\\n"})"), "1");
  EXPECT_EQ(e.value(R"(pgo_service_state{service="a\"b\\c\nd",state="ok"})"), "1");
}

TEST(MetricsRender, CommandLabelSetsAreCappedAndTheCapLoggedOnce) {
  LogCapture log;
  Metrics metrics;
  for (int i = 0; i < 10'000; ++i) metrics.count_command("web", "cmd" + std::to_string(i), "", false);
  metrics.count_command("web", "one-too-many", "", true);
  metrics.count_command("web", "two-too-many", "", true);
  metrics.count_command("web", "cmd0", "", true);  // an existing set keeps counting
  Exposition e(metrics.render({}));
  EXPECT_EQ(e.count("pgo_command_count"), 10'000u);
  EXPECT_EQ(e.count("pgo_command_error_count"), 10'000u);
  EXPECT_EQ(e.value(R"(pgo_command_count{cmd="one-too-many",service="web",subcmd=""})"), "<absent>");
  EXPECT_EQ(e.value(R"(pgo_command_count{cmd="cmd0",service="web",subcmd=""})"), "2");
  EXPECT_EQ(e.value(R"(pgo_command_error_count{cmd="cmd0",service="web",subcmd=""})"), "1");
  EXPECT_EQ(log.count("command label sets reached"), 1) << log.text();
}

}  // namespace
}  // namespace pgod::gateway
