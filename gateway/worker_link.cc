#include "worker_link.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <iterator>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "eventfd.h"
#include "unique_fd.h"

namespace pgod::gateway {
namespace {

// What the relay buffers each way: a Cap'n Proto message of any size passes in pieces.
constexpr std::size_t kBufferBytes = 64 * 1024;
// Room for descriptors in one read: a worker sends one with a message. More than this are closed
// by the kernel inside recvmsg, on this thread too; what a stuck relay holds stays bounded.
constexpr std::size_t kRoomForDescriptors = 8;

std::atomic<std::size_t> running_relays{0};

// A kept descriptor whose call has not come for this long never will (it was cancelled): it is
// not handed out (inode numbers are recycled), and goes when the next one is kept.
constexpr auto kKeptFor = std::chrono::seconds(60);

struct Kept {
  std::uint64_t inode = 0;
  std::chrono::steady_clock::time_point since;
  UniqueFd fd;
};

// Given back at once by every Held (kKeptDescriptors are kept, kMaxReaders read): with room
// reserved for more, ~Held never allocates.
constexpr std::size_t kGivenBackRoom = 2 * (WorkerLink::kKeptDescriptors + WorkerPipe::kMaxReaders);

}  // namespace

// The relay never logs: it may outlive everything at exit, and spdlog with it.
struct WorkerLink::Shared {
  UniqueFd wake;                     // eventfd, loop → relay: a descriptor to close, or the loop is done
  int loop_end = -1;                 // the loop's end of the pair, closed by the relay once the loop is gone
  std::weak_ptr<const int> running;  // expires as the relay thread ends (it holds the only owner)
  std::mutex mutex;                  // guards what follows; nothing is closed while it is held
  std::deque<Kept> kept;             // taken off the link, not yet taken by the loop
  std::size_t lent = 0;              // Helds holding a descriptor
  std::vector<UniqueFd> to_close;    // given back by the loop
  bool loop_gone = false;
  std::vector<UniqueFd> closing;  // the relay's alone: swapped with to_close, so both keep their room
};

namespace {

struct Buffer {
  std::array<char, kBufferBytes> bytes;
  std::size_t start = 0;
  std::size_t end = 0;
  bool empty() const { return start == end; }
};

bool set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Non-blocking: a worker whose backlog is full (it does not accept) is not waited for; the
// link ends and the gateway tries again later.
UniqueFd connect_to(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) return UniqueFd();
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!socket) return UniqueFd();
  int connected = -1;
  do {
    connected = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  } while (connected != 0 && errno == EINTR);
  if (connected != 0) return UniqueFd();
  return socket;
}

// Closes what the loop gave back; true once the loop is done with the link.
bool close_given_back(WorkerLink::Shared& s) {
  bool gone = false;
  {
    const std::lock_guard lock(s.mutex);
    s.closing.swap(s.to_close);
    gone = s.loop_gone;
  }
  s.closing.clear();  // here, outside the lock
  return gone;
}

// Keeps `fd` for take(), by its inode number; stale kept ones, and the oldest if there are
// kKeptDescriptors already, go to `closing`. fstat here, not on the loop: on FUSE it asks the server.
void keep(WorkerLink::Shared& s, UniqueFd fd, std::vector<UniqueFd>& closing) {
  struct stat status {};
  if (fstat(fd.get(), &status) != 0) {
    closing.push_back(std::move(fd));
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  const std::lock_guard lock(s.mutex);
  while (!s.kept.empty() && (s.kept.size() >= WorkerLink::kKeptDescriptors || now - s.kept.front().since > kKeptFor)) {
    closing.push_back(std::move(s.kept.front().fd));
    s.kept.pop_front();
  }
  s.kept.push_back(Kept{static_cast<std::uint64_t>(status.st_ino), now, std::move(fd)});
}

// One read's bytes from the worker into `to_loop`, the first descriptor of it kept and any
// others put in `closing`. False when the link has ended.
bool receive(WorkerLink::Shared& s, int worker, Buffer& to_loop, std::vector<UniqueFd>& closing) {
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kRoomForDescriptors)> control{};
  iovec into{to_loop.bytes.data(), to_loop.bytes.size()};
  msghdr message{};
  message.msg_iov = &into;
  message.msg_iovlen = 1;
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  const ssize_t got = recvmsg(worker, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (got < 0) return errno == EAGAIN || errno == EINTR;
  bool first = true;
  for (cmsghdr* part = CMSG_FIRSTHDR(&message); part != nullptr; part = CMSG_NXTHDR(&message, part)) {
    if (part->cmsg_level != SOL_SOCKET || part->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (part->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(part) + i * sizeof(int), sizeof fd);
      if (first) {
        keep(s, UniqueFd(fd), closing);
        first = false;
      } else {
        closing.emplace_back(fd);
      }
    }
  }
  to_loop.start = 0;
  to_loop.end = static_cast<std::size_t>(got);
  return got > 0;
}

// Sends what `from` holds to `to`, as much as fits. False when `to` has ended.
bool send_some(int to, Buffer& from) {
  if (from.empty()) return true;
  const ssize_t sent = ::send(to, from.bytes.data() + from.start, from.end - from.start, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent < 0) return errno == EAGAIN || errno == EINTR;
  from.start += static_cast<std::size_t>(sent);
  return true;
}

// Reads what `from` has into the empty `into`. False when `from` has ended.
bool read_some(int from, Buffer& into) {
  const ssize_t got = ::recv(from, into.bytes.data(), into.bytes.size(), MSG_DONTWAIT);
  if (got < 0) return errno == EAGAIN || errno == EINTR;
  into.start = 0;
  into.end = static_cast<std::size_t>(got);
  return got > 0;
}

// Carries bytes both ways until either side ends or the loop is done with the link. Every step
// is non-blocking, and each side is watched only for what the relay can do next, so a side that
// has hung up is never polled in a loop.
void pump(WorkerLink::Shared& s, int worker, int loop) {
  // Not zeroed: an idle link touches a page of each, not 64 KiB (100 links cost the gateway
  // 14 MiB of PSS zeroed).
  auto to_loop = std::make_unique_for_overwrite<Buffer>();
  auto to_worker = std::make_unique_for_overwrite<Buffer>();
  for (;;) {
    std::array<pollfd, 3> watched{pollfd{worker, 0, 0}, pollfd{loop, 0, 0}, pollfd{s.wake.get(), POLLIN, 0}};
    watched[0].events = static_cast<short>((to_loop->empty() ? POLLIN : 0) | (to_worker->empty() ? 0 : POLLOUT));
    watched[1].events = static_cast<short>((to_worker->empty() ? POLLIN : 0) | (to_loop->empty() ? 0 : POLLOUT));
    for (auto& side : watched)
      if (side.events == 0) side.fd = -1;
    if (poll(watched.data(), watched.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (watched[2].revents != 0) {
      clear_eventfd(s.wake.get());
      if (close_given_back(s)) return;
    }
    // Reads only where poll saw something; sends are always tried (one that cannot go on yet
    // answers EAGAIN).
    std::vector<UniqueFd> closing;
    if (to_loop->empty() && watched[0].revents != 0 && !receive(s, worker, *to_loop, closing)) return;
    // The bytes go on before a descriptor beside them is closed: if that close waits, what came
    // before it has reached the loop.
    if (!send_some(loop, *to_loop)) return;
    closing.clear();
    if (to_worker->empty() && watched[1].revents != 0 && !read_some(loop, *to_worker)) return;
    if (!send_some(worker, *to_worker)) return;
  }
}

void relay(std::shared_ptr<WorkerLink::Shared> shared, std::string path, UniqueFd relay_side,
           std::shared_ptr<const int> running) {
  (void)prctl(PR_SET_NAME, "pgod-gw-link", 0, 0, 0);
  auto& s = *shared;
  {
    UniqueFd worker = connect_to(path);
    if (worker && set_nonblocking(relay_side.get())) pump(s, worker.get(), relay_side.get());
    // The worker's socket closes here: descriptors still queued on it close with it, here.
  }
  relay_side.reset();  // the loop sees the link end
  // Never before the loop is done: until then it may still use its end, and give back.
  while (!close_given_back(s)) {
    pollfd wake{s.wake.get(), POLLIN, 0};
    if (poll(&wake, 1, -1) < 0 && errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    clear_eventfd(s.wake.get());
  }
  UniqueFd loop_end(s.loop_end);  // the loop has let go of its end: closed here, with the rest
  std::deque<Kept> kept;
  std::vector<UniqueFd> given_back;
  {
    const std::lock_guard lock(s.mutex);
    kept.swap(s.kept);
    given_back.swap(s.to_close);
  }
  kept.clear();
  given_back.clear();
  loop_end.reset();
  shared.reset();
  running_relays.fetch_sub(1);
  running.reset();
}

}  // namespace

std::shared_ptr<WorkerLink> WorkerLink::open(const std::string& path, int& loop_end) {
  auto shared = std::make_shared<Shared>();
  shared->wake.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!shared->wake) return nullptr;
  shared->to_close.reserve(kGivenBackRoom);
  shared->closing.reserve(kGivenBackRoom);
  std::array<int, 2> ends{-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends.data()) != 0) return nullptr;
  UniqueFd loop_side(ends[0]);
  UniqueFd relay_side(ends[1]);
  auto link = std::make_shared<WorkerLink>(shared);
  shared->loop_end = loop_side.get();
  auto running = std::make_shared<const int>(0);
  shared->running = running;
  running_relays.fetch_add(1);
  try {
    std::thread(relay, shared, path, std::move(relay_side), std::move(running)).detach();
  } catch (const std::exception&) {
    running_relays.fetch_sub(1);
    shared->loop_end = -1;  // no relay to close it: `loop_side` does, and no one has used it
    return nullptr;
  }
  loop_end = loop_side.release();
  return link;
}

WorkerLink::WorkerLink(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

WorkerLink::~WorkerLink() {
  {
    const std::lock_guard lock(shared_->mutex);
    shared_->loop_gone = true;
  }
  signal_eventfd(shared_->wake.get());
}

std::unique_ptr<WorkerLink::Held> WorkerLink::take(std::uint64_t inode) {
  std::unique_ptr<Held> held(new Held(shared_from_this(), -1));  // made before anything is taken off
  {
    const std::lock_guard lock(shared_->mutex);
    auto& kept = shared_->kept;
    // The newest of that number, and not a stale one: inode numbers are recycled, and this
    // call's own descriptor was kept just before its message reached the loop.
    const auto now = std::chrono::steady_clock::now();
    const auto found = std::find_if(kept.rbegin(), kept.rend(), [inode](const Kept& k) { return k.inode == inode; });
    if (found == kept.rend() || now - found->since > kKeptFor) return nullptr;
    held->fd_ = found->fd.release();
    kept.erase(std::next(found).base());
    if (++shared_->lent > kLentAtOnce) return nullptr;  // ~Held hands it back: the relay closes it
  }
  return held;
}

std::weak_ptr<const void> WorkerLink::relay_running() const { return shared_->running; }

WorkerLink::Held::~Held() {
  if (fd_ < 0) return;
  auto& s = *link_->shared_;
  {
    const std::lock_guard lock(s.mutex);
    --s.lent;
    try {
      s.to_close.emplace_back(fd_);
      fd_ = -1;
    } catch (const std::bad_alloc&) {
    }
  }
  if (fd_ >= 0) ::close(fd_);  // beyond the room reserved and out of memory: the last resort
  signal_eventfd(s.wake.get());
}

std::size_t WorkerLink::relays_running() { return running_relays.load(); }

}  // namespace pgod::gateway
