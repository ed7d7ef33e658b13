#include "safe_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "process.h"

namespace pgod::worker {
namespace {

using test::read_file;

TEST(SafeFiles, WritesCreatesDirectoriesAndReportsChange) {
  test::TempDir root;
  auto first = write_file_beneath(root.path(), "caddy/sub/import", "a\n");
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_TRUE(*first);
  EXPECT_EQ(read_file(root.path() + "/caddy/sub/import"), "a\n");
  auto same = write_file_beneath(root.path(), "caddy/sub/import", "a\n");
  ASSERT_TRUE(same.has_value());
  EXPECT_FALSE(*same) << "unchanged content is not rewritten";
  auto changed = write_file_beneath(root.path(), "./caddy/sub/import", "b\n");
  ASSERT_TRUE(changed.has_value());
  EXPECT_TRUE(*changed);
  EXPECT_EQ(read_file(root.path() + "/caddy/sub/import"), "b\n");
}

TEST(SafeFiles, NeverFollowsASymlinkPlantedInTheRepository) {
  test::TempDir root, elsewhere;
  ASSERT_EQ(symlink(elsewhere.path().c_str(), (root.path() + "/caddy").c_str()), 0);
  auto through_dir = write_file_beneath(root.path(), "caddy/import", "x");
  EXPECT_FALSE(through_dir.has_value());
  EXPECT_NE(through_dir.error().find("a symlink is not followed"), std::string::npos) << through_dir.error();
  EXPECT_EQ(access((elsewhere.path() + "/import").c_str(), F_OK), -1) << "nothing written outside";

  ASSERT_EQ(symlink((elsewhere.path() + "/target").c_str(), (root.path() + "/import").c_str()), 0);
  auto as_file = write_file_beneath(root.path(), "import", "x");
  EXPECT_FALSE(as_file.has_value());
  EXPECT_EQ(access((elsewhere.path() + "/target").c_str(), F_OK), -1);
  EXPECT_FALSE(write_file_beneath(root.path(), "a/../b", "x").has_value());
}

TEST(SafeFiles, ReplaceFileIsAtomicAndPrivate) {
  test::TempDir dir;
  ASSERT_TRUE(replace_file(dir.path(), "state", "frozen=1\n", 0600).has_value());
  EXPECT_EQ(read_file(dir.path() + "/state"), "frozen=1\n");
  struct stat info {};
  ASSERT_EQ(stat((dir.path() + "/state").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_TRUE(replace_file(dir.path(), "state", "frozen=0\n", 0600).has_value());
  EXPECT_EQ(read_file(dir.path() + "/state"), "frozen=0\n");
  EXPECT_FALSE(replace_file(dir.path() + "/missing", "state", "x", 0600).has_value());
}

}  // namespace
}  // namespace pgod::worker
