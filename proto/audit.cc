#include "audit.h"

#include <sys/uio.h>
#include <systemd/sd-journal.h>

namespace pgod {
namespace {

// A field's value on one line: the journal keeps newlines, a reader of `-o short` would not.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out;
}

}  // namespace

bool send_audit(const AuditEntry& entry) {
  std::vector<std::string> lines = {"MESSAGE=" + one_line(entry.message), "PRIORITY=6", "PGOD_AUDIT=" + entry.kind};
  for (const auto& [name, value] : entry.fields) lines.push_back(name + "=" + one_line(value));
  std::vector<iovec> vectors;
  vectors.reserve(lines.size());
  for (auto& line : lines) vectors.push_back({line.data(), line.size()});
  return sd_journal_sendv(vectors.data(), static_cast<int>(vectors.size())) >= 0;
}

std::string redact_arguments(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& arg : args) {
    if (!out.empty()) out += ' ';
    const auto equals = arg.find('=');
    out += one_line(equals == std::string::npos ? arg : arg.substr(0, equals + 1) + "***");
  }
  return out;
}

}  // namespace pgod
