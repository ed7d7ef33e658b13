// The deploy history file: bounded, one line per deploy whatever the fields hold.
#include "history.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

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
  EXPECT_EQ(format_history({}), "no deploys or commands recorded yet\n");
}

CommandRecord command(std::int64_t time, const std::string& what, bool expendable) {
  return {time, what, "dev@192.0.2.7:4000 (dev@laptop), key SHA256:abc", "c0ffee", "exit 0", 240, "", expendable};
}

// A monitor's `ps` every minute must not push out who ran `down`: read-only commands make room
// first, and only when there are none does the oldest command go.
TEST(History, ReadOnlyCommandsMakeRoomFirst) {
  test::TempDir dir;
  ASSERT_TRUE(append_command(dir.path(), command(1, "down", false)));
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(append_command(dir.path(), command(2 + i, "ps", true)));
  auto records = read_commands(dir.path());
  ASSERT_EQ(records.size(), kMaxCommands);
  EXPECT_EQ(records.front().command, "down");
  EXPECT_EQ(records[1].time, 2 + 300 - static_cast<std::int64_t>(kMaxCommands) + 1) << "the newest ps are kept";
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(append_command(dir.path(), command(1000 + i, "up", false)));
  records = read_commands(dir.path());
  ASSERT_EQ(records.size(), kMaxCommands);
  EXPECT_EQ(records.front().time, 1000 + 300 - static_cast<std::int64_t>(kMaxCommands));
  EXPECT_EQ(records.back().command, "up");
  EXPECT_EQ(records.back().caller, "dev@192.0.2.7:4000 (dev@laptop), key SHA256:abc");
  EXPECT_EQ(records.back().duration_ms, 240);
  EXPECT_FALSE(records.back().expendable);
}

TEST(History, DeploysAndCommandsInterleaveNewestFirst) {
  const std::vector<DeployRecord> deploys = {{100, "poll", "aaaa", "deployed", 2000, ""},
                                             {300, "git pull by dev", "bbbb", "failed", 1000, "exited 3"}};
  auto pull = command(300, "git pull", false);
  pull.result = "exit 1";
  auto refused = command(200, "exec web sh", false);
  refused.result = "exit 406";
  refused.detail = "exec --privileged is not allowed";
  const auto shown = format_history(deploys, {refused, pull});
  EXPECT_EQ(shown,
            "1970-01-01T00:05:00Z  c0ffee  exit 1         0.2 s  git pull by dev@192.0.2.7:4000 (dev@laptop), key "
            "SHA256:abc\n"
            "1970-01-01T00:05:00Z  bbbb  failed         1.0 s  git pull by dev: exited 3\n"
            "1970-01-01T00:03:20Z  c0ffee  exit 406       0.2 s  exec web sh by dev@192.0.2.7:4000 (dev@laptop), "
            "key SHA256:abc: exec --privileged is not allowed\n"
            "1970-01-01T00:01:40Z  aaaa  deployed       2.0 s  poll\n");
}

// The file is the service user's: a FIFO or a symlink there is refused at once, never waited
// on or followed, and a huge file is read only as far as the bound.
TEST(History, ACommandsFileThatIsNotARegularFileIsLeftAlone) {
  test::TempDir dir;
  ASSERT_EQ(mkfifo((dir.path() + "/commands").c_str(), 0600), 0);
  EXPECT_FALSE(append_command(dir.path(), command(1, "down", false)));
  EXPECT_TRUE(read_commands(dir.path()).empty());
  std::filesystem::remove(dir.path() + "/commands");
  dir.write("elsewhere", "");
  std::filesystem::create_symlink(dir.path() + "/elsewhere", dir.path() + "/commands");
  EXPECT_FALSE(append_command(dir.path(), command(1, "down", false)));
  EXPECT_EQ(std::filesystem::file_size(dir.path() + "/elsewhere"), 0u);
  std::filesystem::remove(dir.path() + "/commands");
  // Over the trim size the file is cut back to kMaxCommands lines.
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(append_command(dir.path(), command(i, "up", i % 2 == 0)));
  EXPECT_LE(std::filesystem::file_size(dir.path() + "/commands"), kCommandsFileTrimBytes);
  const auto kept = read_commands(dir.path());
  ASSERT_EQ(kept.size(), kMaxCommands);
  EXPECT_EQ(kept.back().time, 2999);
}

// A refusal before anything ran makes room first, as a read does: a flood of refused commands
// cannot push out who ran `down`.
TEST(History, RefusedCommandsMakeRoomFirst) {
  test::TempDir dir;
  ASSERT_TRUE(append_command(dir.path(), command(1, "down", false)));
  auto refused = command(2, "down --x", true);
  refused.result = "exit 406";
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(append_command(dir.path(), refused));
  EXPECT_EQ(read_commands(dir.path()).front().command, "down");
}

TEST(History, ACommandsFieldsStayOnTheirLine) {
  test::TempDir dir;
  auto hostile = command(5, "exec web sh -c 'a\nb'", false);
  hostile.caller = "x\ty\x1b[2J";
  hostile.detail = std::string(2000, 'd');
  ASSERT_TRUE(append_command(dir.path(), hostile));
  const auto records = read_commands(dir.path());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].command, "exec web sh -c 'a b'");
  EXPECT_EQ(records[0].caller, "x y\\x1b[2J");
  EXPECT_LT(records[0].detail.size(), 600u);
}

}  // namespace
}  // namespace pgod::worker
