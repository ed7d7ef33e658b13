#include "audit.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include <sys/uio.h>
#include <systemd/sd-journal.h>

namespace pgod {
namespace {

// A field at most this long: a datagram the journal takes whole (past its size libsystemd
// would hand the entry over in a memfd, which the gateway's allowlist does not allow).
constexpr std::size_t kMaxFieldBytes = 8192;

// A field's value on one line: the journal keeps newlines, a reader of `-o short` would not.
std::string one_line(std::string_view text) {
  std::string out;
  text = text.substr(0, kMaxFieldBytes);
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

namespace {

// NAME=value as an environment assignment: a letter or '_' first, then letters, digits, '_'.
bool is_assignment(std::string_view arg) {
  const auto equals = arg.find('=');
  if (equals == 0 || equals == std::string_view::npos) return false;
  const auto name = arg.substr(0, equals);
  const auto first = static_cast<unsigned char>(name.front());
  if (!(std::isalpha(first) || first == '_')) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// Where the value of an environment assignment starts in `arg`, when it holds one: NAME=value
// itself, or glued to a flag as compose reads it (-eNAME=value, -e=NAME=value, --env=NAME=value,
// --build-arg=NAME=value).
std::optional<std::size_t> assignment_value_at(std::string_view arg) {
  std::size_t start = 0;
  if (arg.starts_with("--")) {
    start = arg.find('=');
    if (start == std::string_view::npos) return std::nullopt;
    ++start;
  } else if (arg.starts_with("-") && arg.size() > 2) {
    start = arg[2] == '=' ? 3 : 2;
  }
  const auto rest = arg.substr(start);
  if (!is_assignment(rest)) return std::nullopt;
  return start + rest.find('=') + 1;
}

// An argument as a shell would read it back: quoted when it holds anything but plain characters.
std::string quoted(std::string_view arg) {
  const bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("-_./:=@,+*%").find(c) != std::string_view::npos;
  });
  if (plain) return std::string(arg);
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string redact_arguments(const std::vector<std::string>& args) {
  std::string out;
  bool after_env_flag = false;
  for (const auto& arg : args) {
    std::string shown = arg;
    // The values of environment assignments are secrets (exec -e TOKEN=…, env FOO=…); any other
    // argument is shown whole, so that no command can hide behind an '='.
    if (const auto value = assignment_value_at(arg))
      shown = arg.substr(0, *value) + "***";
    else if (after_env_flag && arg.find('=') != std::string::npos)
      shown = arg.substr(0, arg.find('=') + 1) + "***";
    after_env_flag = arg == "-e" || arg == "--env" || arg == "--build-arg";
    if (!out.empty()) out += ' ';
    out += one_line(quoted(shown));
    if (out.size() > kMaxFieldBytes) {
      out.resize(kMaxFieldBytes);
      return out + "...";
    }
  }
  return out;
}

}  // namespace pgod
