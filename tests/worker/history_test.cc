// The deploy history file: bounded, one line per deploy whatever the fields hold.
#include "history.h"

#include <gtest/gtest.h>

#include "process.h"

namespace pgod::worker {
namespace {

TEST(History, KeepsTheNewestAndReadsBackWhatWasWritten) {
  test::TempDir dir;
  for (int i = 0; i < 150; ++i) {
    DeployRecord record{1796360000 + i, "poll", "c" + std::to_string(i), "deployed", 1500, ""};
    ASSERT_TRUE(append_history(dir.path(), record));
  }
  const auto records = read_history(dir.path());
  ASSERT_EQ(records.size(), kMaxHistory);
  EXPECT_EQ(records.front().commit, "c50");
  EXPECT_EQ(records.back().commit, "c149");
  EXPECT_EQ(records.back().duration_ms, 1500);
  const auto shown = format_history(records);
  EXPECT_EQ(shown.substr(0, shown.find('\n')), "2026-12-04T04:55:49Z  c149  deployed       1.5 s  poll");
}

TEST(History, FieldsFromTheRepositoryStayOnTheirLine) {
  test::TempDir dir;
  ASSERT_TRUE(append_history(dir.path(), {1, "git pull by dev\n\tlaptop\x1b[2J", "abc", "refused", 10, "a\nb\tc"}));
  const auto records = read_history(dir.path());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].trigger, "git pull by dev  laptop\\x1b[2J");
  EXPECT_EQ(records[0].detail, "a b c");
  EXPECT_EQ(format_history({}), "no deploys recorded yet\n");
}

}  // namespace
}  // namespace pgod::worker
