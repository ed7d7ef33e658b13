#include "read_slots.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <memory>

namespace pgod::worker {
namespace {

class ReadSlotsTest : public ::testing::Test {
 protected:
  std::unique_ptr<kj::AsyncIoContext> io_owner = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  kj::AsyncIoContext& io = *io_owner;
  kj::Timer& timer = io.provider->getTimer();
};

TEST_F(ReadSlotsTest, GrantsUpToTheLimitAtOnceThenQueuesInOrder) {
  ReadSlots slots(timer, 2, 10, 5 * kj::SECONDS);
  auto a = slots.acquire().wait(io.waitScope);
  auto b = slots.acquire().wait(io.waitScope);
  ASSERT_TRUE(a.slot && b.slot);
  EXPECT_EQ(slots.running(), 2u);

  auto c = slots.acquire();
  auto d = slots.acquire();
  EXPECT_FALSE(c.poll(io.waitScope));
  EXPECT_EQ(slots.waiting(), 2u);

  a.slot = nullptr;  // the first in line gets it, the second still waits
  ASSERT_TRUE(c.poll(io.waitScope));
  auto c_grant = c.wait(io.waitScope);
  EXPECT_TRUE(c_grant.slot);
  EXPECT_FALSE(d.poll(io.waitScope));
  EXPECT_EQ(slots.running(), 2u);

  b.slot = nullptr;
  auto d_grant = d.wait(io.waitScope);
  EXPECT_TRUE(d_grant.slot);
  c_grant.slot = nullptr;
  d_grant.slot = nullptr;
  EXPECT_EQ(slots.running(), 0u);
}

TEST_F(ReadSlotsTest, ANewcomerDoesNotOvertakeTheLine) {
  ReadSlots slots(timer, 1, 10, 5 * kj::SECONDS);
  auto held = slots.acquire().wait(io.waitScope);
  auto first = slots.acquire();
  held.slot = nullptr;  // handed to `first` before anyone else can ask
  auto newcomer = slots.acquire();
  auto first_grant = first.wait(io.waitScope);
  EXPECT_TRUE(first_grant.slot);
  EXPECT_FALSE(newcomer.poll(io.waitScope));
}

TEST_F(ReadSlotsTest, AFullLineIsRefusedWithTheNumbers) {
  ReadSlots slots(timer, 1, 2, 5 * kj::SECONDS);
  auto held = slots.acquire().wait(io.waitScope);
  auto w1 = slots.acquire();
  auto w2 = slots.acquire();
  auto refused = slots.acquire().wait(io.waitScope);
  EXPECT_FALSE(refused.slot);
  EXPECT_EQ(refused.refusal, "too many commands at once for this service (1 running, 2 waiting)");
}

TEST_F(ReadSlotsTest, AWaitThatRunsOutIsRefusedAndLeavesTheLine) {
  ReadSlots slots(timer, 1, 5, 50 * kj::MILLISECONDS);
  auto held = slots.acquire().wait(io.waitScope);
  auto late = slots.acquire().wait(io.waitScope);
  EXPECT_FALSE(late.slot);
  EXPECT_EQ(late.refusal.rfind("too many commands at once for this service (1 running; waited", 0), 0u) << late.refusal;
  EXPECT_EQ(slots.waiting(), 0u);
  held.slot = nullptr;
  EXPECT_EQ(slots.running(), 0u);
}

TEST_F(ReadSlotsTest, ACallerWhoLeavesGivesUpItsPlaceAndItsSlot) {
  ReadSlots slots(timer, 1, 5, 5 * kj::SECONDS);
  auto held = slots.acquire().wait(io.waitScope);
  {
    auto gone = slots.acquire();  // dropped while waiting
  }
  auto next = slots.acquire();
  EXPECT_EQ(slots.waiting(), 1u);
  {
    auto handed_but_gone = kj::mv(next);
    held.slot = nullptr;  // handed to a caller who then leaves before taking it
  }
  EXPECT_EQ(slots.running(), 0u);
  EXPECT_EQ(slots.waiting(), 0u);
  EXPECT_TRUE(slots.acquire().wait(io.waitScope).slot);
}

}  // namespace
}  // namespace pgod::worker
