// A bounded line for read verbs (ps, logs, …): each one is a compose process, so at most
// `running` run at once; up to `waiting` more wait their turn in order, each for at most
// `wait_limit`. A caller that goes away while waiting simply leaves the line.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <cstddef>
#include <deque>
#include <string>

namespace pgod::worker {

class ReadSlots {
 public:
  // Held while a read verb runs; dropping it lets the next caller in.
  class Slot {
   public:
    explicit Slot(ReadSlots& slots) : slots_(slots) {}
    ~Slot() { slots_.release(); }
    KJ_DISALLOW_COPY(Slot);

   private:
    ReadSlots& slots_;
  };

  // A slot, or why none was given (the line is full, or the wait ran out).
  struct Grant {
    kj::Own<Slot> slot;
    std::string refusal;
  };

  ReadSlots(kj::Timer& timer, std::size_t running, std::size_t waiting, kj::Duration wait_limit);
  KJ_DISALLOW_COPY(ReadSlots);

  kj::Promise<Grant> acquire();

  std::size_t running() const { return running_; }
  std::size_t waiting();  // live waiters only

 private:
  void release();
  void drop_departed();

  kj::Timer& timer_;
  const std::size_t max_running_;
  const std::size_t max_waiting_;
  const kj::Duration wait_limit_;
  std::size_t running_ = 0;
  std::deque<kj::Own<kj::PromiseFulfiller<kj::Own<Slot>>>> waiters_;
};

}  // namespace pgod::worker
