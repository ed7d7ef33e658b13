// A command's stdout pipe, handed over by its worker (OutputSink.stdoutPipe), taken only once
// it has been checked, and read on a thread of its own.
//
// Why a thread: the worker shares the pipe, and every read of a pipe first takes the pipe's
// lock, which a worker taken over can hold as long as it likes (a blocking splice into the
// pipe from an empty socket of its own). Neither O_NONBLOCK (the worker shares that flag too)
// nor SPLICE_F_NONBLOCK stops a wait for the lock. Read on the event loop, the pipe would let a
// worker freeze every client of every service; read here, a stall holds only this one stream
// and this one thread. The event loop touches nothing the worker holds: it takes the bytes
// from memory, and is woken through an eventfd only it and the thread hold.
#pragma once

#include <kj/async-unix.h>

#include <cstddef>
#include <memory>

namespace pgod::gateway {

// A descriptor lent to a reader: open while this object lives. Letting go is the lender's
// business: a worker link's relay closes it on its own thread (worker_link.h), since even a
// close that is not the last can wait (every close of a FUSE file asks its server).
class LentFd {
 public:
  virtual ~LentFd() = default;
  virtual int fd() const = 0;
};

class WorkerPipe {
 public:
  // Reader threads at once, across all streams. A thread stuck on a hostile worker's pipe lock
  // lives (and counts) until the worker lets go; past the limit a pipe is refused and the
  // worker streams through messages, as it does without a pipe.
  static constexpr std::size_t kMaxReaders = 32;

  // The worker is less trusted than the gateway: what it hands over as a command's stdout must
  // be the read end of a pipe, not a socket to talk on, a file to read or a write end. May
  // wait (see adopt), so it is asked on the reader thread.
  static bool acceptable(int fd);

  // A reader of `lent`, which the thread lets go of when it is done: nothing on the calling
  // thread asks anything of the file or closes it, since even fstat can wait (a FIFO on FUSE or
  // NFS asks its server; F_GETPIPE_SZ takes the pipe's lock). The thread judges it with
  // acceptable() first, and if it is not, read() fails and nothing is read. nullptr (and
  // `lent` let go of here) when kMaxReaders are running, or when the thread or the descriptors
  // it needs cannot be made.
  static kj::Maybe<kj::Own<WorkerPipe>> adopt(kj::UnixEventPort& events, std::unique_ptr<LentFd> lent,
                                              std::size_t chunk);

  // Reader threads running now: those of live WorkerPipes, and those still stuck after theirs
  // went.
  static std::size_t readers_running();

  struct Shared;
  WorkerPipe(std::shared_ptr<Shared> shared, kj::UnixEventPort& events);
  // Tells the thread to stop and never waits for it: it exits at once unless it is stuck on
  // the worker's lock, and then once the worker lets go.
  ~WorkerPipe();
  KJ_DISALLOW_COPY(WorkerPipe);

  // The next bytes the command wrote (at most `chunk`), once there are some; empty at EOF. They
  // stay valid until the next read() or the end of this object.
  kj::Promise<kj::ArrayPtr<const kj::byte>> read();

 private:
  std::shared_ptr<Shared> shared_;
  kj::UnixEventPort::FdObserver ready_;
  bool holding_ = false;  // the last read()'s bytes are still the caller's
};

}  // namespace pgod::gateway
