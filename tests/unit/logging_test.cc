#include "logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "secret.h"

namespace pgod {
namespace {

std::string capture(bool terminal, const std::function<void(spdlog::logger&)>& log) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  sink->set_formatter(make_log_formatter(terminal));
  spdlog::logger logger("web", sink);
  logger.set_level(spdlog::level::trace);
  log(logger);
  return out.str();
}

TEST(Logging, JournaldLinesCarryPriorityAndServicePrefix) {
  const auto text = capture(false, [](spdlog::logger& l) {
    l.debug("d");
    l.info("i");
    l.warn("w");
    l.error("e");
    l.critical("c");
  });
  EXPECT_EQ(text, "<7>[web] d\n<6>[web] i\n<4>[web] w\n<3>[web] e\n<2>[web] c\n");
}

TEST(Logging, TerminalLinesCarryTimeLevelAndPrefix) {
  const auto text = capture(true, [](spdlog::logger& l) { l.info("deployed {}", "abc123"); });
  EXPECT_NE(text.find("info"), std::string::npos) << text;
  EXPECT_NE(text.find("[web] deployed abc123"), std::string::npos) << text;
  EXPECT_EQ(text.find('<'), std::string::npos) << text;
}

TEST(Logging, SecretsNeverReachALine) {
  const Secret token("glpat-SECRET");
  const auto text = capture(false, [&](spdlog::logger& l) {
    l.info("login with {} to {}", token, redact_url("https://oauth2:glpat-SECRET@gitlab.example.org/x.git"));
  });
  EXPECT_EQ(text.find("glpat-SECRET"), std::string::npos) << text;
  EXPECT_EQ(text, "<6>[web] login with [redacted] to https://[redacted]@gitlab.example.org/x.git\n");
}

TEST(Logging, AMessageCannotStartALineOfItsOwn) {
  const auto text = capture(false, [](spdlog::logger& l) {
    l.error("compose said: {}", "bad key \"x\n<0>[pgod] all is well\r\x1b[2J\"\tend");
  });
  EXPECT_EQ(text, "<3>[web] compose said: bad key \"x\\n<0>[pgod] all is well\\r\\x1b[2J\"\tend\n");
  const auto terminal = capture(true, [](spdlog::logger& l) { l.info("a\nb"); });
  EXPECT_NE(terminal.find("[web] a\\nb\n"), std::string::npos) << terminal;
}

TEST(Logging, ServiceLoggersFollowTheProgramLevel) {
  setup_logging("pgod", false);
  EXPECT_EQ(spdlog::default_logger()->name(), "pgod");
  EXPECT_EQ(service_logger("web")->level(), spdlog::level::info);
  EXPECT_EQ(service_logger("web")->name(), "web");
  setup_logging("pgod", true);
  EXPECT_EQ(service_logger("web")->level(), spdlog::level::debug);
}

}  // namespace
}  // namespace pgod
