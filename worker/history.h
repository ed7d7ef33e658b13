// The service's deploy history: one line per deploy (when, what triggered it, the commit, the
// result, how long it took), kept in the state directory across restarts and bounded.
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

// Newest first, one line each, for `history`.
std::string format_history(const std::vector<DeployRecord>& records);

}  // namespace pgod::worker
