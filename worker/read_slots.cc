#include "read_slots.h"

#include <fmt/format.h>

namespace pgod::worker {

ReadSlots::ReadSlots(kj::Timer& timer, std::size_t running, std::size_t waiting, kj::Duration wait_limit)
    : timer_(timer), max_running_(running), max_waiting_(waiting), wait_limit_(wait_limit) {}

void ReadSlots::drop_departed() {
  std::erase_if(waiters_, [](kj::Own<kj::PromiseFulfiller<kj::Own<Slot>>>& waiter) { return !waiter->isWaiting(); });
}

std::size_t ReadSlots::waiting() {
  drop_departed();
  return waiters_.size();
}

kj::Promise<ReadSlots::Grant> ReadSlots::acquire() {
  drop_departed();
  if (running_ < max_running_ && waiters_.empty()) {
    ++running_;
    return Grant{kj::heap<Slot>(*this), ""};
  }
  if (waiters_.size() >= max_waiting_)
    return Grant{kj::Own<Slot>(), fmt::format("too many commands at once for this service ({} running, {} waiting)",
                                              max_running_, max_waiting_)};
  // The turn carries the slot itself, so a caller that leaves between being handed the slot
  // and taking it gives it back.
  auto turn = kj::newPromiseAndFulfiller<kj::Own<Slot>>();
  waiters_.push_back(kj::mv(turn.fulfiller));
  auto granted = turn.promise.then([](kj::Own<Slot> slot) { return Grant{kj::mv(slot), ""}; });
  auto gave_up = timer_.afterDelay(wait_limit_).then([this]() {
    return Grant{kj::Own<Slot>(),
                 fmt::format("too many commands at once for this service ({} running; waited {} s for one "
                             "to finish)",
                             max_running_, wait_limit_ / kj::SECONDS)};
  });
  return granted.exclusiveJoin(kj::mv(gave_up));
}

void ReadSlots::release() {
  --running_;
  drop_departed();
  if (running_ < max_running_ && !waiters_.empty()) {
    ++running_;  // handed straight to the first in line, so no newcomer can overtake it
    auto first = kj::mv(waiters_.front());
    waiters_.pop_front();  // out of the line before anything else can touch it
    first->fulfill(kj::heap<Slot>(*this));
  }
}

}  // namespace pgod::worker
