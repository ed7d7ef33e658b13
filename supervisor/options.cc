#include "options.h"

#include <fmt/format.h>

#include "duration.h"
#include "flags.h"
#include "listen_address.h"

namespace pgod::supervisor {
namespace {

std::optional<std::string> check_directory(std::string_view flag, const std::string& path) {
  if (path.empty() || path.front() != '/') return fmt::format("{} must be an absolute path, got \"{}\"", flag, path);
  if (path.find_first_not_of('/') == std::string::npos) return fmt::format("{} may not be /", flag);
  return std::nullopt;
}

}  // namespace

Expected<ParsedOptions, std::string> parse_options(const std::vector<std::string>& args) {
  ParsedOptions parsed;
  Options& o = parsed.options;
  FlagSet flags("pgod");
  flags.add_string('c', "config", &o.config, "config file to read", "file");
  flags.add_string('d', "dir", &o.dir, "directory to check out the git repositories in (kept across reboots)", "dir");
  flags.add_string('s', "ssh", &o.ssh, "ssh address to listen on", "addr");
  flags.add_duration('t', "duration", &o.duration, "duration between pulls (plus up to half of it as jitter)");
  flags.add_string(0, "datadir", &o.datadir, "directory where NFS shares are mounted, as <datadir>/<service>", "dir");
  flags.add_bool(0, "debug", &o.debug, "enable debug logging");
  flags.add_bool(0, "restart", &o.restart, "reload the config when the file changes");
  flags.add_string('m', "metrics", &o.metrics, "address for the Prometheus /metrics endpoint", "addr");
  flags.add_bool(0, "check", &o.check, "validate the config file, print a summary or every error, and exit");
  flags.add_bool('v', "version", &o.version, "show version and exit");
  flags.add_bool('h', "help", &o.help, "show this help and exit");
  parsed.usage = flags.usage("[OPTION]... [-c CONFIG]");

  auto positional = flags.parse(args);
  if (!positional) return Unexpected{positional.error()};
  if (o.help || o.version) return parsed;
  if (!positional->empty()) return Unexpected{fmt::format("unexpected argument \"{}\" (see pgod --help)", positional->front())};

  if (o.config.empty()) return Unexpected{std::string("-c/--config must name a file")};
  if (o.duration <= std::chrono::nanoseconds::zero())
    return Unexpected{fmt::format("-t/--duration must be positive, got {}", format_duration(o.duration))};
  if (auto problem = check_directory("-d/--dir", o.dir)) return Unexpected{*problem};
  if (!o.datadir.empty())
    if (auto problem = check_directory("--datadir", o.datadir)) return Unexpected{*problem};
  for (auto [flag, value] : {std::pair{"-s/--ssh", &o.ssh}, std::pair{"-m/--metrics", &o.metrics}}) {
    if (auto address = parse_listen_address(*value); !address)
      return Unexpected{fmt::format("{}: {}", flag, address.error())};
  }
  return parsed;
}

}  // namespace pgod::supervisor
