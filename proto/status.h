// The status codes pgod answers with, in the original's words (HTTP status texts, as the Go
// pgod used net/http's). Carried as the SSH exit-status, a uint32.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pgod {

enum class Status : std::uint32_t {
  kOk = 0,
  kBadRequest = 400,           // the command line does not parse
  kUnauthorized = 401,         // the key is not listed by the named service
  kNotFound = 404,             // no such service
  kNotAcceptable = 406,        // unknown command, or an argument the verb does not allow
  kInternalServerError = 500,  // the worker failed or is unreachable
};

// "Bad Request", "Unauthorized", ...; empty for kOk.
std::string_view status_text(Status status);

// The line a client sees on stderr: "Not Found: No service found with name \"x\"".
std::string status_line(Status status, std::string_view message);

// pgoctl's exit code for a remote exit status. A command's own code (0..255) passes through;
// pgod's codes map to status % 256 (400→144, 401→145, 404→148, 406→150, 500→244), which is
// exactly what OpenSSH's ssh exits with, so scripts see one code whichever client they use.
int client_exit_code(std::uint32_t remote_status);

// The original's messages, shared so the gateway and tests use the same words.
std::string unauthorized_message(std::string_view user, std::string_view service);
std::string not_found_message(std::string_view service);
std::string not_acceptable_message(std::string_view command);

}  // namespace pgod
