#include "history.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
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
                     field(record.commit), field(record.result), record.duration_ms, record.reads_only ? 1 : 0,
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

}  // namespace

namespace {

// The newest kMaxCommands, the oldest read-only ones leaving first.
void keep_newest(std::vector<CommandRecord>& records) {
  while (records.size() > kMaxCommands) {
    const auto reader = std::find_if(records.begin(), records.end(), [](const auto& r) { return r.reads_only; });
    records.erase(reader != records.end() ? reader : records.begin());
  }
}

std::vector<CommandRecord> parse_commands(std::istream& in) {
  std::vector<CommandRecord> records;
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
    record.reads_only = parts[6] == "1";
    if (parts.size() > 7) record.detail = parts[7];
    records.push_back(std::move(record));
  }
  return records;
}

// One line at the end of dir/name (never through a symlink), without a flush to disk: a
// command's line is a record, not state the worker resumes from, and every `ps` waiting for
// the disk would be slower.
bool append_line(const std::string& dir, const char* name, const std::string& line) {
  const UniqueFd fd(open((dir + "/" + name).c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return false;
  for (std::size_t written = 0; written < line.size();) {
    const ssize_t n = write(fd.get(), line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

std::vector<CommandRecord> read_commands(const std::string& state_dir) {
  std::ifstream in(state_dir + "/" + kCommandsFile);
  auto records = parse_commands(in);
  keep_newest(records);
  return records;
}

bool append_command(const std::string& state_dir, const CommandRecord& record) {
  if (!append_line(state_dir, kCommandsFile, line_of(record))) return false;
  // The file is cut back to kMaxCommands when it holds twice that.
  std::ifstream in(state_dir + "/" + kCommandsFile);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) <= 2 * kMaxCommands) return true;
  std::istringstream lines(text);
  auto records = parse_commands(lines);
  keep_newest(records);
  std::string kept;
  for (const auto& each : records) kept += line_of(each);
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
