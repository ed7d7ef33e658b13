// pgod: the root supervisor. This part: flags and `--check`; the process supervision
// itself (workers, gateway, reload) follows in supervisor.cc.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "config.h"
#include "logging.h"
#include "options.h"

namespace {

int check(const pgod::supervisor::Options& options) {
  auto config = pgod::config::load_config(options.config, pgod::config::host_validation_context(!options.datadir.empty()));
  if (!config) {
    for (const auto& error : config.error()) fmt::print(stderr, "{}\n", error.to_string());
    fmt::print(stderr, "pgod: {}: {} error{}\n", options.config, config.error().size(),
               config.error().size() == 1 ? "" : "s");
    return 1;
  }
  std::string names;
  for (const auto& service : config->services) names += (names.empty() ? "" : ", ") + service.name;
  fmt::print("pgod: {}: OK, {} service{}{}{}\n", options.config, config->services.size(),
             config->services.size() == 1 ? "" : "s", names.empty() ? "" : ": ", names);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = pgod::supervisor::parse_options({argv + 1, argv + argc});
  if (!parsed) {
    fmt::print(stderr, "pgod: {}\n", parsed.error());
    return 1;
  }
  const auto& options = parsed->options;
  if (options.help) {
    fmt::print("{}", parsed->usage);
    return 0;
  }
  if (options.version) {
    fmt::print("pgod {}\n", PGOD_VERSION);
    return 0;
  }
  if (options.check) return check(options);

  pgod::setup_logging("pgod", options.debug);
  spdlog::error("running services is not implemented yet; only --check works in this version");
  return 1;
}
