// The gateway's connection to one worker's socket, carried by a thread of its own (the relay)
// between the worker and a socket pair whose other end is the event loop's.
//
// Why: a descriptor sent with a message over a unix socket is the receiver's to close, and the
// kernel closes those a read(2) does not take inside that read. Some closes wait: the last close
// of a pipe takes the pipe's lock, which a worker sharing the pipe can hold as long as it likes
// (see worker_pipe.h); every close of a FUSE file asks its server. Were the event loop reading
// the worker's socket, one descriptor from a worker taken over would freeze every client of
// every service. The relay takes every descriptor off the link itself, keeps the first of a
// message, by its inode number, for the OutputSink.stdoutPipe call that names it, and closes
// the rest. The loop's end carries bytes only, and the loop closes nothing a worker sent, nor
// the socket pair (a unix socket's close can collect other sockets' descriptors in flight, on
// kernels before 6.8): the relay closes them all, on its own thread. A close that waits holds
// this relay, so this one service's link, and nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "worker_pipe.h"

namespace pgod::gateway {

class WorkerLink : public std::enable_shared_from_this<WorkerLink> {
 public:
  // Descriptors kept for stdoutPipe calls not served yet (a worker runs at most 24 streaming
  // commands at once); one more pushes out the oldest, left by a call that never came, and one
  // kept for a minute is not handed out and goes.
  static constexpr std::size_t kKeptDescriptors = 32;
  // Descriptors lent out at once, each to a reader thread (worker_pipe.h) until it is done. A
  // service has at most two links with running relays (backends.cc), and a Held keeps its
  // link's relay running, so one worker, however hostile, holds at most 8 of the gateway's
  // kMaxReaders threads, stuck or not; the rest stay for the other services.
  static constexpr std::size_t kLentAtOnce = 4;

  struct Shared;
  class Held;

  // Starts a relay that connects to the worker's socket at `path`. `loop_end` is set to the
  // event loop's end of the link: the loop reads and writes it but never closes it (the relay
  // does, once this object is gone). It ends (EOF) when the worker's does, or when the worker's
  // socket cannot be reached. nullptr if the socket pair or the thread cannot be made.
  static std::shared_ptr<WorkerLink> open(const std::string& path, int& loop_end);

  explicit WorkerLink(std::shared_ptr<Shared> shared);
  // Tells the relay the loop is done with it. Never waits: the relay closes what it holds and
  // ends on its own, once whatever a hostile worker holds is let go.
  ~WorkerLink();
  WorkerLink(const WorkerLink&) = delete;
  WorkerLink& operator=(const WorkerLink&) = delete;

  // The descriptor kept with inode number `inode`: the worker names its pipe in the stdoutPipe
  // call that carried it, so a descriptor goes to its own call whatever the order the calls are
  // served in. Open while the Held lives; closed on the relay's thread. nullptr if none is kept
  // by that number, or if kLentAtOnce are out already (then the relay closes it; the worker
  // streams the command's output through messages instead).
  std::unique_ptr<Held> take(std::uint64_t inode);

  // Whether this link's relay thread is still running (a stuck one may outlive the link).
  std::weak_ptr<const void> relay_running() const;

  // Relay threads running now, those of live links and those still closing a stuck descriptor.
  static std::size_t relays_running();

 private:
  std::shared_ptr<Shared> shared_;
};

class WorkerLink::Held final : public LentFd {
 public:
  // Hands the descriptor back to the relay, which closes it.
  ~Held() override;
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  int fd() const override { return fd_; }

 private:
  friend class WorkerLink;
  // Only take() makes one: it counts what it lends.
  Held(std::shared_ptr<WorkerLink> link, int fd) : link_(std::move(link)), fd_(fd) {}
  std::shared_ptr<WorkerLink> link_;
  int fd_;
};

}  // namespace pgod::gateway
