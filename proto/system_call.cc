#include "system_call.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>

namespace pgod {

std::string errno_text(int error) { return std::generic_category().message(error); }

std::string os_error(std::string_view what, std::string_view where, int error) {
  if (where.empty()) return fmt::format("{}: {}", what, errno_text(error));
  return fmt::format("{} {}: {}", what, where, errno_text(error));
}

void wipe(std::string& secret) { explicit_bzero(secret.data(), secret.size()); }

Expected<std::string, std::string> read_bounded(int fd, std::size_t max, std::string_view what) {
  // Secrets (a host key) are read through here: no copy is left behind in a reallocated string
  // (up to 64 KiB is reserved at once), in the stack buffer (cleared on every return) or in what
  // was read before a failure (wiped).
  std::string text;
  text.reserve(std::min<std::size_t>(max, 64 * 1024));
  char buffer[16384];
  struct Clear {
    char* data;
    std::size_t size;
    ~Clear() { explicit_bzero(data, size); }
  } clear{buffer, sizeof buffer};
  for (;;) {
    const ssize_t got = retry_eintr([&] { return ::read(fd, buffer, sizeof buffer); });
    if (got < 0) {
      const int error = errno;
      wipe(text);
      return Unexpected{os_error("reading", what, error)};
    }
    if (got == 0) return text;
    if (static_cast<std::size_t>(got) > max - text.size()) {
      wipe(text);
      return Unexpected{fmt::format("{}: larger than {} bytes", what, max)};
    }
    text.append(buffer, static_cast<std::size_t>(got));
  }
}

}  // namespace pgod
