// The worker's verbs as one table: what each runs, whether it mutates (and so is serialised
// with the reconcile cycle), which flags it allows, what positional arguments it takes, and
// its time limit. Adding a verb is one row; reviewing them is one screen (verb_table.cc).
//
// Anything not in a verb's allowlist is refused with 406 before any program runs: compose's
// global flags (-f, -p, --project-directory, --env-file, -H, --context), `exec --privileged`,
// and every flag nobody has thought about yet.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "command_grammar.h"
#include "expected.h"

namespace pgod::worker {

enum class ValueKind : std::uint8_t {
  kNone,      // a switch
  kNumber,    // 0-999999
  kText,      // a word that does not start with '-' (e.g. --since 2024-01-01)
  kKeyValue,  // NAME=VALUE (exec -e, build --build-arg)
};

struct FlagRule {
  char short_name;  // 0: long form only
  std::string_view long_name;
  ValueKind value;
  bool drop = false;  // accepted but not passed on (already forced, e.g. up -d)
};

enum class Positionals : std::uint8_t {
  kNone,
  kServices,  // compose service names
  kExec,      // SERVICE COMMAND [ARGS…]: after the service everything is the command, verbatim
  kHash,      // exactly one commit hash (4-40 hex digits)
};

struct WorkerVerb {
  Verb verb;
  std::string_view compose_subcommand;       // empty: not a compose command
  std::span<const std::string_view> forced;  // flags always passed (up -d, exec -T)
  std::span<const FlagRule> flags;
  Positionals positionals;
  bool registry_login;                          // docker login before, logout after
  std::optional<std::chrono::seconds> timeout;  // nullopt: until the caller cancels (logs -f)
};

const WorkerVerb* find_worker_verb(Verb verb);

struct CheckedArguments {
  std::vector<std::string> compose_args;  // subcommand, forced flags, the allowed flags, positionals
  bool follow = false;                    // logs -f: no time limit
};

// Checks args against the verb's allowlist; the error is the 406 message.
Expected<CheckedArguments, std::string> check_arguments(const WorkerVerb& verb, std::span<const std::string> args);

}  // namespace pgod::worker
