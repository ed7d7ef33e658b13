#include "history.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>

#include "command_grammar.h"
#include "safe_files.h"
#include "service.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

constexpr const char* kHistoryFile = "history";
constexpr const char* kCommandsFile = "commands";
constexpr std::size_t kMaxFieldBytes = 512;

// A field on one line of the file: tabs and line breaks become spaces, control characters are
// escaped (key comments and reasons come from the repository), and it is bounded.
std::string field(const std::string& text) {
  std::string clean;
  for (const char c : text) clean += c == '\t' || c == '\n' || c == '\r' ? ' ' : c;
  clean = printable(clean);
  if (clean.size() > kMaxFieldBytes) clean = clean.substr(0, kMaxFieldBytes) + "...";
  return clean;
}

std::string line_of(const DeployRecord& record) {
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}\n", record.time, field(record.trigger), field(record.commit),
                     field(record.result), record.duration_ms, field(record.detail));
}

std::string line_of(const CommandRecord& record) {
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", record.time, field(record.command), field(record.caller),
                     field(record.commit), field(record.result), record.duration_ms, record.expendable ? 1 : 0,
                     field(record.detail));
}

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> parts;
  std::istringstream fields(line);
  for (std::string part; std::getline(fields, part, '\t');) parts.push_back(part);
  return parts;
}

// One history line: when, the commit, the result, how long, then what and why.
std::string shown(std::int64_t time, const std::string& commit, const std::string& result, std::int64_t duration_ms,
                  const std::string& what, const std::string& detail) {
  return fmt::format("{}  {}  {:<9}  {:>7.1f} s  {}{}\n", format_time(time),
                     commit.empty() ? std::string(12, '-') : commit.substr(0, 12), result,
                     static_cast<double>(duration_ms) / 1000.0, what, detail.empty() ? "" : ": " + detail);
}

// The newest kMaxCommands, the oldest expendable ones leaving first (one pass: a planted file
// may hold many lines).
void keep_newest(std::vector<CommandRecord>& records) {
  if (records.size() <= kMaxCommands) return;
  const std::size_t excess = records.size() - kMaxCommands;
  const auto expendable = static_cast<std::size_t>(
      std::count_if(records.begin(), records.end(), [](const auto& r) { return r.expendable; }));
  std::size_t drop_expendable = std::min(excess, expendable);
  std::size_t drop_others = excess - drop_expendable;
  std::vector<CommandRecord> kept;
  kept.reserve(kMaxCommands);
  for (auto& record : records) {
    auto& budget = record.expendable ? drop_expendable : drop_others;
    if (budget > 0) {
      --budget;
      continue;
    }
    kept.push_back(std::move(record));
  }
  records = std::move(kept);
}

std::vector<CommandRecord> parse_commands(const std::string& text) {
  std::vector<CommandRecord> records;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto parts = fields_of(line);
    if (parts.size() < 7) continue;
    CommandRecord record;
    record.time = std::atoll(parts[0].c_str());
    record.command = parts[1];
    record.caller = parts[2];
    record.commit = parts[3];
    record.result = parts[4];
    record.duration_ms = std::atoll(parts[5].c_str());
    record.expendable = parts[6] == "1";
    if (parts.size() > 7) record.detail = parts[7];
    records.push_back(std::move(record));
  }
  return records;
}

// dir/name if it is a regular file (never through a symlink, never waiting on a FIFO), at most
// kCommandsFileMaxBytes of it; "" when it is missing or anything else.
std::string read_regular(const std::string& dir, const char* name) {
  const UniqueFd fd(open((dir + "/" + name).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat info {};
  if (!fd || fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return "";
  std::string text;
  char buffer[65536];
  while (text.size() < kCommandsFileMaxBytes) {
    const ssize_t n = read(fd.get(), buffer, std::min(sizeof buffer, kCommandsFileMaxBytes - text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
}

// One line at the end of dir/name, a regular file (never through a symlink, never waiting on a
// FIFO), without a flush to disk: a command's line is a record, not state the worker resumes
// from, and every `ps` waiting for the disk would be slower. The file's size after it, or
// nullopt when it could not be written.
std::optional<std::size_t> append_line(const std::string& dir, const char* name, const std::string& line) {
  const UniqueFd fd(
      open((dir + "/" + name).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
  struct stat info {};
  if (!fd || fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  for (std::size_t written = 0; written < line.size();) {
    const ssize_t n = write(fd.get(), line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    written += static_cast<std::size_t>(n);
  }
  return static_cast<std::size_t>(info.st_size) + line.size();
}

}  // namespace

std::vector<CommandRecord> read_commands(const std::string& state_dir) {
  auto records = parse_commands(read_regular(state_dir, kCommandsFile));
  keep_newest(records);
  return records;
}

bool append_command(const std::string& state_dir, const CommandRecord& record) {
  const auto size = append_line(state_dir, kCommandsFile, line_of(record));
  if (!size) return false;
  if (*size <= kCommandsFileTrimBytes) return true;
  std::string kept;
  for (const auto& each : read_commands(state_dir)) kept += line_of(each);
  return replace_file(state_dir, kCommandsFile, kept, 0600).has_value();
}

std::vector<DeployRecord> read_history(const std::string& state_dir) {
  std::vector<DeployRecord> records;
  std::ifstream in(state_dir + "/" + kHistoryFile);
  for (std::string line; std::getline(in, line);) {
    const auto parts = fields_of(line);
    if (parts.size() < 5) continue;
    DeployRecord record;
    record.time = std::atoll(parts[0].c_str());
    record.trigger = parts[1];
    record.commit = parts[2];
    record.result = parts[3];
    record.duration_ms = std::atoll(parts[4].c_str());
    if (parts.size() > 5) record.detail = parts[5];
    records.push_back(std::move(record));
  }
  return records;
}

bool append_history(const std::string& state_dir, const DeployRecord& record) {
  auto records = read_history(state_dir);
  records.push_back(record);
  if (records.size() > kMaxHistory) records.erase(records.begin(), records.end() - kMaxHistory);
  std::string text;
  for (const auto& kept : records) text += line_of(kept);
  return replace_file(state_dir, kHistoryFile, text, 0600).has_value();
}

std::string format_history(const std::vector<DeployRecord>& records, const std::vector<CommandRecord>& commands) {
  if (records.empty() && commands.empty()) return "no deploys or commands recorded yet\n";
  // Both lists are oldest first; at the same second a command is the newer (it ends after the
  // deploy it asked for).
  std::string out;
  auto deploy = records.rbegin();
  auto command = commands.rbegin();
  while (deploy != records.rend() || command != commands.rend()) {
    if (command != commands.rend() && (deploy == records.rend() || command->time >= deploy->time)) {
      out += shown(command->time, command->commit, command->result, command->duration_ms,
                   command->command + " by " + command->caller, command->detail);
      ++command;
    } else {
      out += shown(deploy->time, deploy->commit, deploy->result, deploy->duration_ms, deploy->trigger, deploy->detail);
      ++deploy;
    }
  }
  return out;
}

}  // namespace pgod::worker
