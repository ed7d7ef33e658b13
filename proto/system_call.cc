#include "system_call.h"

#include <fmt/format.h>
#include <unistd.h>

#include <system_error>

namespace pgod {

std::string errno_text(int error) { return std::generic_category().message(error); }

std::string os_error(std::string_view what, std::string_view where, int error) {
  if (where.empty()) return fmt::format("{}: {}", what, errno_text(error));
  return fmt::format("{} {}: {}", what, where, errno_text(error));
}

Expected<std::string, std::string> read_bounded(int fd, std::size_t max, std::string_view what) {
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t got = retry_eintr([&] { return ::read(fd, buffer, sizeof buffer); });
    if (got < 0) return Unexpected{os_error("reading", what, errno)};
    if (got == 0) return text;
    if (static_cast<std::size_t>(got) > max - text.size())
      return Unexpected{fmt::format("{}: larger than {} bytes", what, max)};
    text.append(buffer, static_cast<std::size_t>(got));
  }
}

}  // namespace pgod
