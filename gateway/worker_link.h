// The gateway's connection to one worker's socket, carried by a thread of its own (the relay)
// between the worker and a socket pair whose other end is the event loop's.
//
// Why: a descriptor sent with a message over a unix socket is the receiver's to close, and the
// kernel closes those a read(2) does not take inside that read. Some closes wait: the last close
// of a pipe takes the pipe's lock, which a worker sharing the pipe can hold as long as it likes
// (see worker_pipe.h). Were the event loop reading the worker's socket, one descriptor from a
// worker taken over would freeze every client of every service. The relay takes every descriptor
// off the link itself, keeps the first of a message for OutputSink.stdoutPipe and closes the
// rest; the loop's end carries bytes only, and the loop
// never closes the last reference to anything a worker sent. A stall holds this relay, so this
// one service's link, and nothing else.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "unique_fd.h"

namespace pgod::gateway {

class WorkerLink : public std::enable_shared_from_this<WorkerLink> {
 public:
  // Descriptors kept for stdoutPipe calls not served yet; past this, one more is closed at once
  // (the worker then streams through messages).
  static constexpr std::size_t kHeldDescriptors = 4;

  struct Shared;
  class Held;

  // Starts a relay that connects to the worker's socket at `path`. `loop_end` receives the
  // event loop's end of the link: it ends (EOF) when the worker's does, or when the worker's
  // socket cannot be reached. nullptr if the socket pair or the thread cannot be made.
  static std::shared_ptr<WorkerLink> open(const std::string& path, UniqueFd& loop_end);

  explicit WorkerLink(std::shared_ptr<Shared> shared);
  // Tells the relay the loop is done with it. Never waits: the relay closes what it holds and
  // ends on its own, once whatever a hostile worker holds is let go.
  ~WorkerLink();
  WorkerLink(const WorkerLink&) = delete;
  WorkerLink& operator=(const WorkerLink&) = delete;

  // The oldest descriptor the worker sent that nobody has taken yet (nullptr if none). The
  // messages that carried them have all reached the loop's end already. Use it, or duplicate
  // it, while the Held lives; it is closed on the relay thread, never on the caller's.
  std::unique_ptr<Held> take();

  // Relay threads running now, those of live links and those still closing a stuck descriptor.
  static std::size_t relays_running();

 private:
  std::shared_ptr<Shared> shared_;
};

class WorkerLink::Held {
 public:
  Held(std::shared_ptr<WorkerLink> link, int fd) : link_(std::move(link)), fd_(fd) {}
  ~Held();
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  int fd() const { return fd_; }

 private:
  std::shared_ptr<WorkerLink> link_;
  int fd_;
};

}  // namespace pgod::gateway
