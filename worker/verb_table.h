// The worker's verbs as one table: what each runs, which flags it allows, what positional
// arguments it takes, its time limit, how it waits its turn (behind the reconcile cycle, or
// beside it), and the Service member that answers it. Adding a verb is one row and one handler;
// reviewing them is one screen (verb_table.cc).
//
// Anything not in a verb's allowlist is refused with 406 before any program runs: compose's
// global flags (-f, -p, --project-directory, --env-file, -H, --context), `exec --privileged`,
// and every flag nobody has thought about yet.
#pragma once

#include <kj/async.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "command_grammar.h"
#include "expected.h"

namespace pgod::worker {

class Service;
struct VerbCall;
struct VerbResult;

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

// How a verb waits its turn (Service::in_turn). The queue is the deploy lock: the reconcile
// cycle and the verbs that change what runs take it one at a time.
enum class Turn : std::uint8_t {
  kAtOnce,    // answered from what the worker knows, beside the queue (status, git hash)
  kQueued,    // waits in the queue; a caller that goes away cancels it
  kToTheEnd,  // waits in the queue and runs to its end even if the caller goes away (a cycle)
  kRead,      // beside the queue in a bounded short-read slot (a long one with logs -f)
  kLongRead,  // beside the queue in a long-read slot: may run as long as its caller likes
};

// The Service member that answers a verb, given its checked arguments.
using VerbHandler = kj::Promise<VerbResult> (Service::*)(VerbCall call);

struct WorkerVerb {
  Verb verb;
  std::string_view compose_subcommand;       // empty: not a compose command
  std::span<const std::string_view> forced;  // flags always passed (up -d, exec -T)
  std::span<const FlagRule> flags;
  Positionals positionals;
  bool registry_login;                          // docker login before, logout after
  std::optional<std::chrono::seconds> timeout;  // nullopt: until the caller cancels (logs -f)
  Turn turn;
  VerbHandler handler;
};

// The verb's row; nullptr for verbs the worker does not run (ping, worker restart).
const WorkerVerb* find_worker_verb(Verb verb);

struct CheckedArguments {
  std::vector<std::string> compose_args;  // subcommand, forced flags, the allowed flags, positionals
  bool follow = false;                    // logs -f: no time limit
};

// Checks args against the verb's allowlist; the error is the 406 message.
Expected<CheckedArguments, std::string> check_arguments(const WorkerVerb& verb, std::span<const std::string> args);

}  // namespace pgod::worker
