#include "status.h"

#include <fmt/format.h>

namespace pgod {

std::string_view status_text(Status status) {
  switch (status) {
    case Status::kOk:
      return "";
    case Status::kBadRequest:
      return "Bad Request";
    case Status::kUnauthorized:
      return "Unauthorized";
    case Status::kNotFound:
      return "Not Found";
    case Status::kNotAcceptable:
      return "Not Acceptable";
    case Status::kInternalServerError:
      return "Internal Server Error";
  }
  return "Unknown Status";
}

std::string status_line(Status status, std::string_view message) {
  return fmt::format("{}: {}", status_text(status), message);
}

int client_exit_code(std::uint32_t remote_status) {
  if (remote_status <= 255) return static_cast<int>(remote_status);
  const auto wrapped = static_cast<int>(remote_status % 256);
  // A wrapped 0 would report success for a failure.
  return wrapped == 0 ? 255 : wrapped;
}

std::string unauthorized_message(std::string_view user, std::string_view service) {
  return fmt::format("Key for user \"{}\" does not match any for name {}", user, service);
}

std::string not_found_message(std::string_view service) {
  return fmt::format("No service found with name \"{}\"", service);
}

std::string not_acceptable_message(std::string_view command) {
  return fmt::format("Command \"{}\" does not match any route", command);
}

}  // namespace pgod
