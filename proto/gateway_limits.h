// The gateway's limits: one table, read by pgod-gateway for its flags and by pgod for
// --gateway-limits, so a name, a default or a bound is written once.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "expected.h"
#include "flags.h"

namespace pgod {

struct GatewayLimits {
  std::size_t max_connections = 512;      // open at once, authenticated or not
  std::size_t max_unauthenticated = 100;  // not yet authenticated, at once
  std::chrono::nanoseconds login_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes(10);  // authenticated, no channel open
  std::size_t max_auth_tries = 10;                                   // refused keys/methods before disconnect
  std::size_t max_command_length = 16384;                            // bytes in one exec request
  std::size_t max_sessions_per_connection = 10;
  std::size_t max_commands_per_service = 100;
};

// From a second to a year: shorter drops every login at the next housekeeping pass, longer
// overflows the deadline arithmetic.
inline constexpr DurationRange kGatewayTimeoutRange{std::chrono::seconds(1), std::chrono::hours(24 * 365)};

struct GatewayLimitRow {
  std::string_view flag;  // without the dashes
  std::string_view help;
  std::variant<std::size_t GatewayLimits::*, std::chrono::nanoseconds GatewayLimits::*> field;
};

inline constexpr std::array kGatewayLimitRows = {
    GatewayLimitRow{"max-connections", "connections open at once", &GatewayLimits::max_connections},
    GatewayLimitRow{"max-unauthenticated", "connections not yet authenticated, at once",
                    &GatewayLimits::max_unauthenticated},
    GatewayLimitRow{"login-timeout", "time allowed to authenticate", &GatewayLimits::login_timeout},
    GatewayLimitRow{"idle-timeout", "an authenticated connection with no session is closed after",
                    &GatewayLimits::idle_timeout},
    GatewayLimitRow{"max-auth-tries", "refused keys or methods before disconnecting", &GatewayLimits::max_auth_tries},
    GatewayLimitRow{"max-command-length", "bytes in one command line", &GatewayLimits::max_command_length},
    GatewayLimitRow{"max-sessions", "sessions (channels) open at once on one connection",
                    &GatewayLimits::max_sessions_per_connection},
    GatewayLimitRow{"max-commands-per-service", "commands running at once for one service",
                    &GatewayLimits::max_commands_per_service},
};

// One flag per row, with its bound, writing into *limits.
void add_gateway_limit_flags(FlagSet& flags, GatewayLimits* limits);

// pgod's --gateway-limits value ("max-sessions=4,login-timeout=10s") checked against the table
// and turned into the gateway's flags ("--max-sessions=4", "--login-timeout=10s").
Expected<std::vector<std::string>, std::string> gateway_limit_args(std::string_view list);

}  // namespace pgod
