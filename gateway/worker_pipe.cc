#include "worker_pipe.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace pgod::gateway {

kj::Maybe<kj::Own<WorkerPipe>> WorkerPipe::adopt(kj::UnixEventPort& events, int fd, std::size_t capacity) {
  struct stat status {};
  if (fstat(fd, &status) != 0 || !S_ISFIFO(status.st_mode)) return nullptr;
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) != O_RDONLY) return nullptr;
  UniqueFd worker_end(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (worker_end.get() < 0) return nullptr;
  int own[2];
  if (pipe2(own, O_CLOEXEC | O_NONBLOCK) != 0) return nullptr;
  UniqueFd own_read(own[0]), own_write(own[1]);
  // As large as a read, so that one splice moves what the worker's pipe holds; refused (the
  // user's pipe allowance), it keeps the kernel's 64 KiB and only moves less at a time.
  (void)fcntl(own_write.get(), F_SETPIPE_SZ, static_cast<int>(capacity));
  return kj::heap<WorkerPipe>(std::move(worker_end), std::move(own_read), std::move(own_write), events);
}

WorkerPipe::WorkerPipe(UniqueFd worker_end, UniqueFd own_read, UniqueFd own_write, kj::UnixEventPort& events)
    : worker_end_(std::move(worker_end)),
      own_read_(std::move(own_read)),
      own_write_(std::move(own_write)),
      observer_(events, worker_end_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {}

kj::Promise<std::size_t> WorkerPipe::read(kj::ArrayPtr<kj::byte> buffer) {
  // Never read(2) on the worker's pipe: O_NONBLOCK belongs to its open file description, which
  // the worker shares and may clear at any moment, and a read that then blocked would stall the
  // gateway's one event loop, every client with it. A splice between two pipes asks per call
  // (SPLICE_F_NONBLOCK), on every kernel; the bytes then come out of our own pipe.
  for (;;) {
    const ssize_t moved =
        splice(worker_end_.get(), nullptr, own_write_.get(), nullptr, buffer.size(), SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (moved == 0) return std::size_t{0};
    if (moved > 0) {
      std::size_t got = 0;
      while (got < static_cast<std::size_t>(moved)) {
        const ssize_t n = ::read(own_read_.get(), buffer.begin() + got, static_cast<std::size_t>(moved) - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return KJ_EXCEPTION(FAILED, "reading the gateway's own pipe failed", errno);
        got += static_cast<std::size_t>(n);
      }
      return got;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return KJ_EXCEPTION(FAILED, "reading the command's stdout pipe failed", errno);
    // Edge-triggered: we took everything, so the next edge is a new write (or the last close).
    return observer_.whenBecomesReadable().then([this, buffer]() { return read(buffer); });
  }
}

}  // namespace pgod::gateway
