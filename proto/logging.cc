#include "logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace pgod {
namespace {

// "%*" → the syslog priority journald reads from a "<N>" line prefix (sd-daemon(3)).
class SyslogPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* priority = "6";
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug: priority = "7"; break;
      case spdlog::level::info: priority = "6"; break;
      case spdlog::level::warn: priority = "4"; break;
      case spdlog::level::err: priority = "3"; break;
      case spdlog::level::critical: priority = "2"; break;
      default: break;
    }
    dest.append(std::string_view(priority));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

}  // namespace

std::unique_ptr<spdlog::formatter> make_log_formatter(bool terminal) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (terminal) {
    formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  } else {
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("<%*>[%n] %v");
  }
  return formatter;
}

void setup_logging(std::string_view program, bool debug) {
  auto sink = shared_sink();
  sink->set_formatter(make_log_formatter(isatty(STDERR_FILENO) == 1));
  auto logger = std::make_shared<spdlog::logger>(std::string(program), sink);
  logger->set_level(debug ? spdlog::level::debug : spdlog::level::info);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::shared_ptr<spdlog::logger> service_logger(std::string_view service) {
  auto base = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(std::string(service), base->sinks().begin(),
                                                 base->sinks().end());
  logger->set_level(base->level());
  logger->flush_on(spdlog::level::trace);
  return logger;
}

}  // namespace pgod
