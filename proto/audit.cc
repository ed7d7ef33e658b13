#include "audit.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include <errno.h>  // program_invocation_short_name
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <mutex>

#include "system_call.h"

namespace pgod {
namespace {

// A field at most this long: the entry fits one datagram, which the journal takes whole.
constexpr std::size_t kMaxFieldBytes = 8192;

constexpr char kJournalSocket[] = "/run/systemd/journal/socket";

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
// nothing past U+10FFFF) at the start of `text`, or 0.
std::size_t utf8_sequence(std::string_view text) {
  const auto byte = [&text](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the second byte's range
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i)
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  return length;
}

// Whether a well-formed UTF-8 sequence shows as the text it is: not a C1 control (U+0080 to
// U+009F, which journalctl also shows as "blob data"), a line or paragraph separator, or a
// bidirectional override or isolate, which would show the rest of a line in another order.
bool shown_as_text(std::string_view sequence) {
  const auto byte = [&sequence](std::size_t i) { return static_cast<unsigned char>(sequence[i]); };
  if (sequence.size() == 2) return !(byte(0) == 0xc2 && byte(1) <= 0x9f);
  if (sequence.size() == 3 && byte(0) == 0xe2 && byte(1) == 0x80) return byte(2) < 0xa8 || byte(2) > 0xae;
  if (sequence.size() == 3 && byte(0) == 0xe2 && byte(1) == 0x81) return byte(2) < 0xa6 || byte(2) > 0xa9;
  return true;
}

// A field's value on one line: the journal keeps newlines, a reader of `-o short` would not.
// Control characters (C0 and C1), bytes that are not UTF-8 and what shown_as_text refuses
// become '?': journalctl shows a field that is not valid UTF-8, or holds a control character, as
// "[… blob data]", which would hide a command from its default output. A sequence cut at the
// limit is not valid either.
std::string one_line(std::string_view text) {
  std::string out;
  text = text.substr(0, kMaxFieldBytes);
  out.reserve(text.size());
  while (!text.empty()) {
    const auto c = static_cast<unsigned char>(text.front());
    std::size_t taken = 1;
    if (c < 0x20 || c == 0x7f) {
      out += '?';
    } else if (c < 0x80) {
      out += text.front();
    } else if (const std::size_t length = utf8_sequence(text); length > 0) {
      const std::string_view sequence = text.substr(0, length);
      out += shown_as_text(sequence) ? sequence : std::string_view("?");
      taken = length;
    } else {
      out += '?';
    }
    text.remove_prefix(taken);
  }
  return out;
}

}  // namespace

std::string journal_datagram(const AuditEntry& entry) {
  // The journal's native protocol: NAME=value lines, one entry per datagram. Every value is one
  // line (one_line), so no field needs the protocol's length-prefixed form.
  std::string datagram = "MESSAGE=" + one_line(entry.message) + "\nPRIORITY=6\nPGOD_AUDIT=" + one_line(entry.kind) +
                         "\nSYSLOG_IDENTIFIER=" + one_line(program_invocation_short_name) + "\n";
  for (const auto& [name, value] : entry.fields) {
    // Names are the callers' constants; one that is not a journal field name is left out rather
    // than let shape the datagram.
    const bool field_name = !name.empty() && name.front() != '_' && std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
    if (field_name) datagram += name + "=" + one_line(value) + "\n";
  }
  return datagram;
}

bool send_audit(const AuditEntry& entry) {
  // sendto on a datagram socket of our own rather than libsystemd's sd_journal_sendv, which
  // sends with sendmsg: the gateway's allowlist refuses sendmsg, the one call that can pass a
  // descriptor. Like libsystemd's, the socket is opened on first use and kept, close-on-exec.
  // Never closed, on purpose (as libsystemd's is not): closed at exit, its number could be
  // reused under a thread still sending.
  static std::mutex opening;
  static int journal = -1;
  int fd = -1;
  {
    const std::lock_guard lock(opening);
    if (journal < 0) journal = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    fd = journal;
  }
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, kJournalSocket, sizeof kJournalSocket);
  const std::string datagram = journal_datagram(entry);
  const ssize_t sent = retry_eintr([&] {
    return sendto(fd, datagram.data(), datagram.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address),
                  sizeof address);
  });
  return sent == static_cast<ssize_t>(datagram.size());
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
