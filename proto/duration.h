// Durations written the way Go writes them ("5m0s", "30s", "1h", "1.5h", "300ms"), because the
// original pgod's flags take them and sysadmins' unit files already contain them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "expected.h"

namespace pgod {

// Parses Go's time.ParseDuration syntax: an optional sign, then one or more decimal numbers
// each with a unit (ns, us, µs, ms, s, m, h); "0" alone is zero. The error says what is wrong.
Expected<std::chrono::nanoseconds, std::string> parse_duration(std::string_view text);

// Formats like Go's Duration.String(): "5m0s", "1h0m0s", "1.5s", "300ms", "0s".
std::string format_duration(std::chrono::nanoseconds duration);

}  // namespace pgod
