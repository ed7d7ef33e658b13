// pgod's command line: the flags of pgod(8), with its defaults, plus --check.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "expected.h"

namespace pgod::supervisor {

struct Options {
  std::string config = "/etc/pgo.toml";
  std::string dir = "/var/lib/pgo";
  std::string ssh = ":2222";
  std::chrono::nanoseconds duration = std::chrono::minutes(5);
  std::string datadir;  // empty: no NFS mounts, binds only inside the checkout
  std::string metrics = ":9112";
  bool debug = false;
  bool restart = true;
  bool version = false;
  bool check = false;
  bool help = false;
};

struct ParsedOptions {
  Options options;
  std::string usage;
};

// Parses and checks the flags; the error says which flag and what it expects.
Expected<ParsedOptions, std::string> parse_options(const std::vector<std::string>& args);

}  // namespace pgod::supervisor
