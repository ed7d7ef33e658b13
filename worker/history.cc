#include "history.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "command_grammar.h"
#include "safe_files.h"
#include "service.h"

namespace pgod::worker {
namespace {

constexpr const char* kHistoryFile = "history";
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

}  // namespace

std::vector<DeployRecord> read_history(const std::string& state_dir) {
  std::vector<DeployRecord> records;
  std::ifstream in(state_dir + "/" + kHistoryFile);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> parts;
    std::istringstream fields(line);
    for (std::string part; std::getline(fields, part, '\t');) parts.push_back(part);
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

std::string format_history(const std::vector<DeployRecord>& records) {
  if (records.empty()) return "no deploys recorded yet\n";
  std::string out;
  for (auto record = records.rbegin(); record != records.rend(); ++record) {
    out += fmt::format("{}  {}  {:<9}  {:>7.1f} s  {}", format_time(record->time),
                       record->commit.empty() ? std::string(12, '-') : record->commit.substr(0, 12), record->result,
                       static_cast<double>(record->duration_ms) / 1000.0, record->trigger);
    if (!record->detail.empty()) out += ": " + record->detail;
    out += "\n";
  }
  return out;
}

}  // namespace pgod::worker
