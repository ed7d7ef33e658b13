#include "worker_pipe.h"

#include <fcntl.h>
#include <sys/stat.h>

namespace pgod::gateway {

kj::Maybe<kj::Own<kj::AsyncInputStream>> adopt_worker_pipe(kj::LowLevelAsyncIoProvider& io, int fd) {
  struct stat status {};
  if (fstat(fd, &status) != 0 || !S_ISFIFO(status.st_mode)) return nullptr;
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) != O_RDONLY) return nullptr;
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return nullptr;
  return io.wrapInputFd(own,
                        kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
}

}  // namespace pgod::gateway
