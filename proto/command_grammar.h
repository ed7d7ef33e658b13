// The command grammar shared by pgoctl, the gateway and pgo.toml's `reload`:
//
//   [host:]service//command [args…]
//
// where command is one word, or two for "git pull", "git hash" and "worker restart". Words are
// split like a POSIX shell splits them without expansions (whitespace separates; '…' is
// literal; "…" allows \" \\ \$ \` escapes; a backslash outside quotes escapes the next
// character), so `ssh host 'svc//exec web sh -c "echo hi"'` means what it looks like, and
// quote_words() produces a line that splits back to the same words.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "expected.h"
#include "status.h"

namespace pgod {

enum class Verb : std::uint8_t {
  kUp,
  kDown,
  kStop,
  kStart,
  kRestart,
  kPs,
  kPull,
  kBuild,
  kLogs,
  kExec,
  kLoad,
  kGitPull,
  kGitHash,
  kPing,
  kStatus,
  kFreeze,
  kUnfreeze,
  kRollback,
  kHistory,
  kWorkerRestart,
};

// Who answers a verb: the gateway itself (ping), the supervisor (worker restart) or the
// service's worker (everything else).
enum class Handler : std::uint8_t { kGateway, kSupervisor, kWorker };

struct VerbInfo {
  Verb verb;
  std::string_view words;  // as typed: "ps", "git pull"
  Handler handler;
  bool mutates;              // serialised with the reconcile cycle
  std::string_view summary;  // one line for help texts
};

// Every verb, in the order help texts list them.
std::span<const VerbInfo> all_verbs();
const VerbInfo& verb_info(Verb verb);
// "up, down, stop, …": for "unknown command" messages.
std::string verb_list();

struct Command {
  std::string host;  // empty when the line names none
  std::string service;
  Verb verb;
  std::vector<std::string> args;
};

struct CommandError {
  Status status;
  std::string message;  // without the "Bad Request: " prefix; see status_line()
};

// Shell-like word splitting (see above). Fails on an unterminated quote or a NUL byte.
Expected<std::vector<std::string>, std::string> split_words(std::string_view line);

// Quotes words so that split_words() returns exactly them.
std::string quote_words(std::span<const std::string> words);

// Parses already-split words: words[0] is "[host:]service//command", the rest are the
// command's arguments (the second word of a two-word command comes first).
Expected<Command, CommandError> parse_command(std::span<const std::string> words);

// split_words() then parse_command(): what the gateway does with an SSH exec request.
Expected<Command, CommandError> parse_command_line(std::string_view line);

// The line to send over SSH for a command: "service//command args…", host left out.
std::string command_line(const Command& command);

// User input echoed in a message, with control characters shown as \xNN (messages end up on
// terminals).
std::string printable(std::string_view text);

}  // namespace pgod
