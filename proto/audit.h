// The audit trail: every command (written by the gateway, which knows the key and the address)
// and every deploy (written by the worker, which knows the commit and the trigger) is one
// journald entry with fields of its own, so that
//   journalctl -o verbose PGOD_AUDIT=command PGOD_AUDIT=deploy
// lists them, and `journalctl SERVICE=web PGOD_AUDIT=command` one service's commands. Sent as one
// datagram in the journal's native protocol on its socket; without a journal (a container, a
// test machine) the entry is dropped and the plain log line (the caller's) remains.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgod {

struct AuditEntry {
  std::string kind;     // PGOD_AUDIT: "command" or "deploy"
  std::string message;  // MESSAGE: one line, as the log says it
  // Further fields, NAME (A-Z, 0-9, _) and value: SERVICE, KEY_FINGERPRINT, VERB, ARGS, EXIT,
  // COMMIT, TRIGGER, SOURCE, RESULT, DURATION_MS.
  std::vector<std::pair<std::string, std::string>> fields;
};

// Sends the entry; false when the journal did not take it (none running, or an error).
bool send_audit(const AuditEntry& entry);

// The datagram send_audit sends: NAME=value lines (MESSAGE, PRIORITY, PGOD_AUDIT,
// SYSLOG_IDENTIFIER, then the entry's fields), every value cut to one line.
std::string journal_datagram(const AuditEntry& entry);

// Command arguments as the audit shows them: the value of every environment assignment
// replaced by *** (NAME=value, the argument after -e/--env, --env=NAME=value), everything else
// whole, each argument quoted as a shell would need it, control characters escaped; at most
// 8 KiB.
std::string redact_arguments(const std::vector<std::string>& args);

}  // namespace pgod
