// Wake-ups between the event loop and the threads that touch what workers hand over.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace pgod::gateway {

// Eventfds are counters: a write never blocks short of 2^64 - 2 unread wake-ups.
inline void signal_eventfd(int eventfd) {
  const std::uint64_t one = 1;
  while (::write(eventfd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

inline void clear_eventfd(int eventfd) {
  std::uint64_t count = 0;
  while (::read(eventfd, &count, sizeof count) < 0 && errno == EINTR) {
  }
}

}  // namespace pgod::gateway
