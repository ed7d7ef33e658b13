// The one way the programs call the system: a call interrupted by a signal is retried, a
// failure is told as "what where: reason", and a file or pipe is read whole only up to a bound.
#pragma once

#include <cerrno>
#include <cstddef>
#include <string>
#include <string_view>

#include "expected.h"

namespace pgod {

// Runs a system call again while a signal interrupts it (EINTR); returns its last result, with
// errno as the call left it.
template <class Call>
auto retry_eintr(Call&& call) -> decltype(call()) {
  for (;;) {
    auto result = call();
    if (result != -1 || errno != EINTR) return result;
  }
}

// The reason for an errno value ("No such file or directory").
std::string errno_text(int error);

// "what where: reason", or "what: reason" when where is empty. Pass the errno saved right after
// the failing call: building the arguments may change it.
std::string os_error(std::string_view what, std::string_view where, int error);

// A system call's -1 turned into an error that says what failed, where and why; any other result
// is success. Use it as `if (auto ok = check_call(fchown(fd, uid, gid), "chown", path); !ok)`.
inline Expected<Done, std::string> check_call(long result, std::string_view what, std::string_view where = {}) {
  if (result != -1) return Done{};
  const int error = errno;
  return Unexpected{os_error(what, where, error)};
}

// Overwrites a secret's bytes (a key's text) before the string is freed or reused; unlike a
// plain fill, the compiler may not drop the stores as dead.
void wipe(std::string& secret);

// Everything `fd` gives until end of file, retrying interrupted reads. More than `max` bytes is
// an error naming `what` and the bound, read no further.
Expected<std::string, std::string> read_bounded(int fd, std::size_t max, std::string_view what);

}  // namespace pgod
