// A command's stdout pipe, handed over by its worker (OutputSink.stdoutPipe), taken only once
// it has been checked.
#pragma once

#include <kj/async-io.h>

namespace pgod::gateway {

// The worker is less trusted than the gateway: what it hands over as a command's stdout must be
// the read end of a pipe, not a socket to talk on, a file to read or a write end. On success, a
// stream over a duplicate of `fd` (close-on-exec, non-blocking); nullptr when refused or when
// it cannot be duplicated.
kj::Maybe<kj::Own<kj::AsyncInputStream>> adopt_worker_pipe(kj::LowLevelAsyncIoProvider& io, int fd);

}  // namespace pgod::gateway
