// A command's stdout pipe, handed over by its worker (OutputSink.stdoutPipe), taken only once
// it has been checked, and read without ever blocking.
#pragma once

#include <kj/async-unix.h>

#include <cstddef>

#include "unique_fd.h"

namespace pgod::gateway {

class WorkerPipe {
 public:
  // The worker is less trusted than the gateway: what it hands over as a command's stdout must
  // be the read end of a pipe, not a socket to talk on, a file to read or a write end. nullptr
  // when `fd` is not, or when the gateway's own descriptors for it cannot be made.
  static kj::Maybe<kj::Own<WorkerPipe>> adopt(kj::UnixEventPort& events, int fd, std::size_t capacity);

  WorkerPipe(UniqueFd worker_end, UniqueFd own_read, UniqueFd own_write, kj::UnixEventPort& events);

  // Up to buffer.size() bytes once some are there; 0 at EOF.
  kj::Promise<std::size_t> read(kj::ArrayPtr<kj::byte> buffer);

 private:
  UniqueFd worker_end_;            // a duplicate of what the worker handed over
  UniqueFd own_read_, own_write_;  // a pipe of our own, which no one else holds
  kj::UnixEventPort::FdObserver observer_;
};

}  // namespace pgod::gateway
