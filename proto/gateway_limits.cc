#include "gateway_limits.h"

#include <fmt/format.h>

namespace pgod {

void add_gateway_limit_flags(FlagSet& flags, GatewayLimits* limits) {
  for (const auto& row : kGatewayLimitRows) {
    if (auto* count = std::get_if<std::size_t GatewayLimits::*>(&row.field))
      flags.add_count(0, std::string(row.flag), &(limits->**count), std::string(row.help));
    else
      flags.add_duration(0, std::string(row.flag),
                         &(limits->*std::get<std::chrono::nanoseconds GatewayLimits::*>(row.field)),
                         std::string(row.help), kGatewayTimeoutRange);
  }
}

std::string check_gateway_limits(const GatewayLimits& limits) {
  if (limits.per_source_ipv4_prefix > 32) return "--per-source-ipv4-prefix: at most 32";
  if (limits.per_source_ipv6_prefix > 128) return "--per-source-ipv6-prefix: at most 128";
  if (limits.early_drop_rate > 100) return "--early-drop-rate: a percentage, at most 100";
  if (limits.penalty_min > limits.penalty_max)
    return "--penalty-min is above --penalty-max: no source would ever be refused";
  // The kernel's bounds for TCP_KEEPCNT and TCP_KEEPINTVL.
  if (limits.keepalive_count > 127) return "--keepalive-count: at most 127";
  if (limits.keepalive_interval > std::chrono::seconds(32767)) return "--keepalive-interval: at most 32767s";
  return "";
}

Expected<std::vector<std::string>, std::string> gateway_limit_args(std::string_view list) {
  const auto refuse = [](std::string_view why) { return Unexpected{fmt::format("--gateway-limits: {}", why)}; };
  GatewayLimits scratch;
  FlagSet flags("pgod");
  add_gateway_limit_flags(flags, &scratch);
  std::vector<std::string> args;
  std::string_view rest = list;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty() || (comma != std::string_view::npos && rest.empty()))
      return refuse("an empty item (use name=value,name=value)");
    const std::string_view name = item.substr(0, item.find('='));
    bool known = false;
    for (const auto& row : kGatewayLimitRows) known = known || row.flag == name;
    if (!known) {
      std::string names;
      for (const auto& row : kGatewayLimitRows) names += fmt::format("{}{}", names.empty() ? "" : ", ", row.flag);
      return refuse(fmt::format("unknown limit \"{}\" (known: {})", name, names));
    }
    std::string arg = fmt::format("--{}", item);
    if (item.find('=') == std::string_view::npos) arg += "=";  // a value is required: "" is refused below
    if (auto parsed = flags.parse({arg}); !parsed) return refuse(parsed.error());
    args.push_back(std::move(arg));
  }
  if (auto wrong = check_gateway_limits(scratch); !wrong.empty()) return refuse(wrong);
  return args;
}

}  // namespace pgod
