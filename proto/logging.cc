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
      case spdlog::level::debug:
        priority = "7";
        break;
      case spdlog::level::info:
        priority = "6";
        break;
      case spdlog::level::warn:
        priority = "4";
        break;
      case spdlog::level::err:
        priority = "3";
        break;
      case spdlog::level::critical:
        priority = "2";
        break;
      default:
        break;
    }
    dest.append(std::string_view(priority));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<SyslogPriorityFlag>(); }
};

// "%&" → the message with control characters escaped, so a line stays one event: text that
// ends up in a message (compose's stderr echoing a repository's YAML) could otherwise start a
// new journal line of its own, with a priority and a "[pgod]" prefix of its choosing.
class EscapedMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    constexpr char kHex[] = "0123456789abcdef";
    for (const char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto byte = static_cast<unsigned char>(c);
      if (c == '\n') {
        dest.append(std::string_view("\\n"));
      } else if (c == '\r') {
        dest.append(std::string_view("\\r"));
      } else if ((byte < 0x20 && c != '\t') || byte == 0x7f) {
        const char escaped[] = {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xf]};
        dest.append(escaped, escaped + sizeof escaped);
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<EscapedMessageFlag>(); }
};

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

}  // namespace

std::unique_ptr<spdlog::formatter> make_log_formatter(bool terminal) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (terminal) {
    formatter->add_flag<EscapedMessageFlag>('&').set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %&");
  } else {
    formatter->add_flag<SyslogPriorityFlag>('*').add_flag<EscapedMessageFlag>('&').set_pattern("<%*>[%n] %&");
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
  auto logger = std::make_shared<spdlog::logger>(std::string(service), base->sinks().begin(), base->sinks().end());
  logger->set_level(base->level());
  logger->flush_on(spdlog::level::trace);
  return logger;
}

}  // namespace pgod
