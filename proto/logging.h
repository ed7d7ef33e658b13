// One logging set-up for all four programs. Every line is one event with a "[name]" prefix:
// the service a line is about, or the program itself. On a terminal lines carry a timestamp
// and colour; otherwise (systemd, a pipe) they start with a syslog priority "<N>" and no
// timestamp, which journald turns into the entry's priority and time.
//
// The rule on secrets: tokens and env values are held as pgod::Secret, which formats as
// "[redacted]"; repository URLs are logged through redact_url(); text from libraries or child
// processes that might echo a credential goes through redact() first.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string_view>

namespace pgod {

// Sets the default logger ("[program] …") and the level (debug or info) for this process.
// Writes to stderr. Safe to call again (tests reconfigure).
void setup_logging(std::string_view program, bool debug);

// A logger whose lines start with "[service]", sharing the default logger's sink and level.
std::shared_ptr<spdlog::logger> service_logger(std::string_view service);

// The pattern setup_logging() uses, by whether stderr is a terminal (exposed for tests).
std::unique_ptr<spdlog::formatter> make_log_formatter(bool terminal);

}  // namespace pgod
