// The service's history: one line per deploy (when, what triggered it, the commit, the result,
// how long it took) and one per command run on it (what, who, the outcome), kept in the state
// directory across restarts and bounded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgod::worker {

struct DeployRecord {
  std::int64_t time = 0;  // unix seconds, when the deploy ended
  std::string trigger;    // poll, "git pull by <key>", "rollback by <key>", ...
  std::string commit;
  std::string result;  // deployed, refused, failed, reverted, broken
  std::int64_t duration_ms = 0;
  std::string detail;  // why, for anything but deployed
};

// The newest kMaxHistory records are kept; the file is rewritten when it grows past twice that.
constexpr std::size_t kMaxHistory = 100;

// Appends `record` to <state_dir>/history; false when the file cannot be written.
bool append_history(const std::string& state_dir, const DeployRecord& record);

// The records, oldest first (a line that cannot be read is skipped).
std::vector<DeployRecord> read_history(const std::string& state_dir);

// One command a caller ran on the service (the gateway's audit entry, as the worker saw it).
struct CommandRecord {
  std::int64_t time = 0;  // unix seconds, when it ended
  std::string command;    // the verb's words and arguments, values of environment assignments hidden
  std::string caller;     // "key <fingerprint>, user@address:port (the file listing it)", or root
  std::string commit;     // the checkout's commit when it ended
  std::string result;     // "exit N", "error", or "abandoned" (ended before it answered)
  std::int64_t duration_ms = 0;
  std::string detail;  // pgod's message (why a 406), if any
  // Read-only (ps, logs, status, history, git hash), or refused before it ran (400, 406):
  // these make room first.
  bool expendable = false;
};

// The newest kMaxCommands are shown; when there are more, the oldest expendable command goes
// first, so that a monitor's `ps` every minute (or a flood of refused commands) does not push
// out who ran `down`. The file is appended to, and cut back to that when it grows past
// kCommandsFileTrimBytes; more than kCommandsFileMaxBytes of it is never read.
constexpr std::size_t kMaxCommands = 200;
constexpr std::size_t kCommandsFileTrimBytes = 256 * 1024;
constexpr std::size_t kCommandsFileMaxBytes = 1024 * 1024;

// Appends `record` to <state_dir>/commands; false when the file cannot be written.
bool append_command(const std::string& state_dir, const CommandRecord& record);

// The commands, oldest first (a line that cannot be read is skipped).
std::vector<CommandRecord> read_commands(const std::string& state_dir);

// Newest first, one line each, deploys and commands interleaved by time, for `history`.
std::string format_history(const std::vector<DeployRecord>& records, const std::vector<CommandRecord>& commands = {});

}  // namespace pgod::worker
