// What the audit trail shows of a command's arguments.
#include "audit.h"

#include <gtest/gtest.h>

namespace pgod {
namespace {

TEST(Audit, ValuesAfterAnEqualsSignAreHidden) {
  EXPECT_EQ(redact_arguments({"-e", "TOKEN=hunter2", "web", "env"}), "-e TOKEN=*** web env");
  EXPECT_EQ(redact_arguments({"--env=TOKEN=hunter2", "web"}), "--env=*** web");
  EXPECT_EQ(redact_arguments({"--tail", "10", "web"}), "--tail 10 web");
  EXPECT_EQ(redact_arguments({}), "");
  // A line stays a line: a newline in an argument cannot forge a second field or entry.
  EXPECT_EQ(redact_arguments({"a\nPGOD_AUDIT", "b\tc"}), "a?PGOD_AUDIT b?c");
}

}  // namespace
}  // namespace pgod
