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
  std::size_t max_unauthenticated = 128;  // not yet authenticated, at once (early drop's "full")
  // Random early drop, as OpenSSH's MaxStartups start:rate:full: from `early_drop_start`
  // pending logins on, a new connection from a source that already has one pending is dropped
  // with a probability rising from `early_drop_rate` % to 100 % at max_unauthenticated.
  std::size_t early_drop_start = 64;
  std::size_t early_drop_rate = 30;  // percent
  // A source is an IPv4 /32 or an IPv6 /64 (PerSourceNetBlockSize); each holds at most this many
  // pending logins (PerSourceMaxStartups).
  std::size_t per_source_max_unauthenticated = 64;
  std::size_t per_source_ipv4_prefix = 32;
  std::size_t per_source_ipv6_prefix = 64;
  // PerSourcePenalties: what each way of ending unauthenticated adds to its source's penalty;
  // once that reaches penalty_min the source is refused until it has run out (at most
  // penalty_max); a refused source that keeps connecting keeps adding to it.
  std::chrono::nanoseconds penalty_no_auth = std::chrono::seconds(1);    // ended unauthenticated
  std::chrono::nanoseconds penalty_auth_fail = std::chrono::seconds(5);  // max_auth_tries reached
  std::chrono::nanoseconds penalty_timeout = std::chrono::seconds(15);   // kex or login time-out
  std::chrono::nanoseconds penalty_over_cap = std::chrono::seconds(2);   // over the per-source cap
  std::chrono::nanoseconds penalty_min = std::chrono::seconds(15);
  std::chrono::nanoseconds penalty_max = std::chrono::minutes(10);
  // Deadlines, one per phase.
  std::chrono::nanoseconds kex_timeout = std::chrono::seconds(10);    // banner and key exchange
  std::chrono::nanoseconds login_timeout = std::chrono::seconds(30);  // from accept to authenticated
  std::chrono::nanoseconds exec_timeout = std::chrono::seconds(10);   // a session with no command
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes(10);   // authenticated, no command running
  // TCP keepalive: a peer that stops answering is dropped after interval * (count + 1).
  std::chrono::nanoseconds keepalive_interval = std::chrono::seconds(15);
  std::size_t keepalive_count = 3;
  std::size_t max_auth_tries = 10;         // refused keys/methods before disconnect
  std::size_t max_command_length = 16384;  // bytes in one exec request
  std::size_t max_sessions_per_connection = 10;
  std::size_t max_connections_per_key = 64;  // authenticated with one key, at once
  std::size_t max_commands_per_key = 64;     // running at once for one key, all services together
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
    GatewayLimitRow{"early-drop-start",
                    "from this many unauthenticated connections on, drop new ones at random from sources that "
                    "already have one pending",
                    &GatewayLimits::early_drop_start},
    GatewayLimitRow{"early-drop-rate",
                    "the drop's probability at --early-drop-start, in percent (100 at --max-"
                    "unauthenticated)",
                    &GatewayLimits::early_drop_rate},
    GatewayLimitRow{"per-source-max-unauthenticated", "connections not yet authenticated from one source, at once",
                    &GatewayLimits::per_source_max_unauthenticated},
    GatewayLimitRow{"per-source-ipv4-prefix", "IPv4 prefix length that makes one source (1-32)",
                    &GatewayLimits::per_source_ipv4_prefix},
    GatewayLimitRow{"per-source-ipv6-prefix", "IPv6 prefix length that makes one source (1-128)",
                    &GatewayLimits::per_source_ipv6_prefix},
    GatewayLimitRow{"penalty-no-auth", "penalty for a connection that ended unauthenticated",
                    &GatewayLimits::penalty_no_auth},
    GatewayLimitRow{"penalty-auth-fail", "penalty for reaching --max-auth-tries", &GatewayLimits::penalty_auth_fail},
    GatewayLimitRow{"penalty-timeout", "penalty for a key-exchange or login time-out", &GatewayLimits::penalty_timeout},
    GatewayLimitRow{"penalty-over-cap", "penalty for a connection over --per-source-max-unauthenticated",
                    &GatewayLimits::penalty_over_cap},
    GatewayLimitRow{"penalty-min", "a source whose penalty reaches this is refused until it runs out",
                    &GatewayLimits::penalty_min},
    GatewayLimitRow{"penalty-max", "the longest a source is refused", &GatewayLimits::penalty_max},
    GatewayLimitRow{"kex-timeout", "time allowed for the banner and key exchange", &GatewayLimits::kex_timeout},
    GatewayLimitRow{"login-timeout", "time allowed to authenticate", &GatewayLimits::login_timeout},
    GatewayLimitRow{"exec-timeout", "a session with no command is closed after", &GatewayLimits::exec_timeout},
    GatewayLimitRow{"idle-timeout", "an authenticated connection with no command running is closed after",
                    &GatewayLimits::idle_timeout},
    GatewayLimitRow{"keepalive-interval", "TCP keepalive probes after this much silence, and this often",
                    &GatewayLimits::keepalive_interval},
    GatewayLimitRow{"keepalive-count", "unanswered keepalive probes before the connection is dropped",
                    &GatewayLimits::keepalive_count},
    GatewayLimitRow{"max-auth-tries", "refused keys or methods before disconnecting", &GatewayLimits::max_auth_tries},
    GatewayLimitRow{"max-command-length", "bytes in one command line", &GatewayLimits::max_command_length},
    GatewayLimitRow{"max-sessions", "sessions (channels) open at once on one connection",
                    &GatewayLimits::max_sessions_per_connection},
    GatewayLimitRow{"max-connections-per-key", "authenticated connections open at once with one key",
                    &GatewayLimits::max_connections_per_key},
    GatewayLimitRow{"max-commands-per-key", "commands running at once for one key",
                    &GatewayLimits::max_commands_per_key},
    GatewayLimitRow{"max-commands-per-service", "commands running at once for one service",
                    &GatewayLimits::max_commands_per_service},
};

// One flag per row, with its bound, writing into *limits.
void add_gateway_limit_flags(FlagSet& flags, GatewayLimits* limits);

// What one flag cannot check: bounds of counts and how limits relate ("" when they hold).
std::string check_gateway_limits(const GatewayLimits& limits);

// pgod's --gateway-limits value ("max-sessions=4,login-timeout=10s") checked against the table
// and turned into the gateway's flags ("--max-sessions=4", "--login-timeout=10s").
Expected<std::vector<std::string>, std::string> gateway_limit_args(std::string_view list);

}  // namespace pgod
