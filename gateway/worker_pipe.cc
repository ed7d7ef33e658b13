#include "worker_pipe.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

#include "eventfd.h"
#include "unique_fd.h"

namespace pgod::gateway {
namespace {

// Two reads in flight: the thread fills one while the event loop sends the other.
constexpr std::size_t kSlots = 2;

// Shared::error when the worker handed over something else than a pipe's read end.
constexpr int kNotAPipe = -1;

std::atomic<std::size_t> running_readers{0};

}  // namespace

struct WorkerPipe::Shared {
  std::unique_ptr<LentFd> worker_end;  // what the worker handed over; only the thread reads it
  UniqueFd ready;                      // eventfd, thread → loop: bytes, EOF or an error
  UniqueFd wake;                       // eventfd, loop → thread: a slot is free again, or stop
  std::size_t chunk = 0;
  std::array<kj::Array<kj::byte>, kSlots> slots;

  std::mutex mutex;  // guards what follows; never held across a syscall
  std::array<std::size_t, kSlots> sizes{};
  std::size_t first = 0;   // the oldest filled slot
  std::size_t filled = 0;  // slots holding bytes the loop has not released
  bool eof = false;
  int error = 0;
  bool stop = false;
};

namespace {

// Waits for `fd` (and for `wake`, which means "look again"). False on a poll failure.
bool wait_for(int fd, int wake, bool& woken) {
  std::array<pollfd, 2> watched{pollfd{fd, POLLIN, 0}, pollfd{wake, POLLIN, 0}};
  const nfds_t count = fd == wake ? 1 : 2;
  for (;;) {
    if (poll(watched.data(), count, -1) >= 0) break;
    if (errno != EINTR) return false;
  }
  woken = watched[count - 1].revents != 0;
  if (woken) clear_eventfd(wake);
  return true;
}

void read_until_done(std::shared_ptr<WorkerPipe::Shared> shared) {
  auto& s = *shared;
  (void)prctl(PR_SET_NAME, "pgod-gw-pipe", 0, 0, 0);
  auto fail = [&s](int error) {
    {
      const std::lock_guard lock(s.mutex);
      s.error = error;
    }
    signal_eventfd(s.ready.get());
  };
  // Judged here, not on the loop: fstat of a FIFO on FUSE or NFS asks the file system's server.
  if (!WorkerPipe::acceptable(s.worker_end->fd())) fail(kNotAPipe);
  for (;;) {
    if (s.error != 0) break;  // only this thread sets it
    std::size_t slot = kSlots;
    {
      const std::lock_guard lock(s.mutex);
      if (s.stop) break;
      if (s.filled < kSlots) slot = (s.first + s.filled) % kSlots;
    }
    bool woken = false;
    if (slot == kSlots) {  // both slots wait for the client: wait for one to come back
      if (!wait_for(s.wake.get(), s.wake.get(), woken)) {
        fail(errno);
        break;
      }
      continue;
    }
    if (!wait_for(s.worker_end->fd(), s.wake.get(), woken)) {
      fail(errno);
      break;
    }
    if (woken) continue;
    // May block if the worker cleared O_NONBLOCK and took the bytes itself, or holds the lock:
    // this thread waits, nothing else does.
    const ssize_t got = ::read(s.worker_end->fd(), s.slots[slot].begin(), s.chunk);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      fail(errno);
      break;
    }
    {
      const std::lock_guard lock(s.mutex);
      if (got == 0) {
        s.eof = true;
      } else {
        s.sizes[slot] = static_cast<std::size_t>(got);
        ++s.filled;
      }
    }
    signal_eventfd(s.ready.get());
    if (got == 0) break;
  }
  // The worker's pipe is let go of here, before the count drops: the limit bounds descriptors too.
  s.worker_end.reset();
  shared.reset();
  running_readers.fetch_sub(1);
}

}  // namespace

std::size_t WorkerPipe::readers_running() { return running_readers.load(); }

namespace {

// Gives a reader's place back unless told it is taken.
struct ReaderPlace {
  bool taken() {
    if (running_readers.fetch_add(1) < WorkerPipe::kMaxReaders) return held = true;
    running_readers.fetch_sub(1);
    return false;
  }
  ~ReaderPlace() {
    if (held) running_readers.fetch_sub(1);
  }
  bool held = false;
};

}  // namespace

bool WorkerPipe::acceptable(int fd) {
  struct stat status {};
  if (fstat(fd, &status) != 0 || !S_ISFIFO(status.st_mode)) return false;
  const int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & O_ACCMODE) == O_RDONLY;
}

kj::Maybe<kj::Own<WorkerPipe>> WorkerPipe::adopt(kj::UnixEventPort& events, std::unique_ptr<LentFd> lent,
                                                 std::size_t chunk) {
  ReaderPlace place;
  if (!place.taken()) return nullptr;
  auto shared = std::make_shared<Shared>();
  shared->ready.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  shared->wake.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (shared->ready.get() < 0 || shared->wake.get() < 0) return nullptr;
  shared->worker_end = std::move(lent);
  shared->chunk = chunk;
  for (auto& slot : shared->slots) slot = kj::heapArray<kj::byte>(chunk);
  // Everything that can fail first (the observer's epoll_ctl too): a thread, once started, is
  // always told to stop by the destructor.
  auto pipe = kj::heap<WorkerPipe>(shared, events);
  try {
    std::thread(read_until_done, std::move(shared)).detach();
  } catch (const std::exception&) {
    return nullptr;  // the destructor signals a thread that never ran: harmless
  }
  place.held = false;  // the thread gives it back
  return kj::mv(pipe);
}

WorkerPipe::WorkerPipe(std::shared_ptr<Shared> shared, kj::UnixEventPort& events)
    : shared_(std::move(shared)), ready_(events, shared_->ready.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {}

WorkerPipe::~WorkerPipe() {
  {
    const std::lock_guard lock(shared_->mutex);
    shared_->stop = true;
  }
  signal_eventfd(shared_->wake.get());
}

kj::Promise<kj::ArrayPtr<const kj::byte>> WorkerPipe::read() {
  if (holding_) {
    holding_ = false;
    {
      const std::lock_guard lock(shared_->mutex);
      shared_->first = (shared_->first + 1) % kSlots;
      --shared_->filled;
    }
    signal_eventfd(shared_->wake.get());
  }
  // Cleared before looking: a signal after the look is a new edge for the observer.
  clear_eventfd(shared_->ready.get());
  {
    const std::lock_guard lock(shared_->mutex);
    auto& s = *shared_;
    if (s.filled > 0) {
      holding_ = true;
      return s.slots[s.first].slice(0, s.sizes[s.first]).asConst();
    }
    if (s.error == kNotAPipe) return KJ_EXCEPTION(FAILED, "the worker's stdout is not the read end of a pipe");
    if (s.error != 0) return KJ_EXCEPTION(FAILED, "reading the command's stdout pipe failed", s.error);
    if (s.eof) return kj::ArrayPtr<const kj::byte>();
  }
  return ready_.whenBecomesReadable().then([this]() { return read(); });
}

}  // namespace pgod::gateway
