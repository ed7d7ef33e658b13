// The gateway's host key as pgod keeps it: made once, root-only, never replaced, and refused
// when anyone else could read or swap it.
#include "host_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "process.h"

namespace pgod::supervisor {
namespace {

TEST(HostKeyTest, AMissingKeyIsMadeOnceWithMode0600AndKept) {
  test::TempDir dir;
  const std::string path = dir.path() + "/etc-pgo/ssh_host_ed25519_key";
  auto made = ensure_host_key(path);
  ASSERT_TRUE(made) << made.error();
  EXPECT_TRUE(made->created);
  EXPECT_EQ(made->fingerprint.rfind("SHA256:", 0), 0u) << made->fingerprint;
  struct stat info {};
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir.path() + "/etc-pgo").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0755u);
  EXPECT_FALSE(std::filesystem::exists(path + ".new"));
  const auto text = test::read_file(path);
  EXPECT_NE(text.find("BEGIN OPENSSH PRIVATE KEY"), std::string::npos);
  // ssh-keygen agrees it is an ed25519 key with that fingerprint.
  auto listed = test::run_process({"/usr/bin/ssh-keygen", "-l", "-f", path});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find(made->fingerprint), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("(ED25519)"), std::string::npos) << listed.out;

  auto again = ensure_host_key(path);
  ASSERT_TRUE(again) << again.error();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->fingerprint, made->fingerprint);
  EXPECT_EQ(test::read_file(path), text);
  auto read = read_host_key(path);
  ASSERT_TRUE(read) << read.error();
  EXPECT_EQ(*read, text);
}

TEST(HostKeyTest, AKeyOthersCouldReadIsRefusedWithTheFix) {
  test::TempDir dir;
  const std::string path = dir.path() + "/key";
  ASSERT_TRUE(ensure_host_key(path));
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto refused = read_host_key(path);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("chmod 600 " + path), std::string::npos) << refused.error();
  EXPECT_FALSE(ensure_host_key(path));
}

TEST(HostKeyTest, ASymlinkADirectoryOrGarbageIsRefusedAndNothingIsReplaced) {
  test::TempDir dir;
  const std::string real = dir.path() + "/real";
  ASSERT_TRUE(ensure_host_key(real));
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  EXPECT_FALSE(read_host_key(link));
  EXPECT_FALSE(ensure_host_key(link)) << "a symlink is not followed, and not replaced";
  EXPECT_TRUE(std::filesystem::is_symlink(link));

  const std::string directory = dir.path() + "/directory";
  std::filesystem::create_directory(directory);
  EXPECT_FALSE(ensure_host_key(directory));

  const std::string garbage = dir.write("garbage", "not a key\n");
  ASSERT_EQ(chmod(garbage.c_str(), 0600), 0);
  auto refused = ensure_host_key(garbage);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("not a private key"), std::string::npos) << refused.error();
  EXPECT_EQ(test::read_file(garbage), "not a key\n");
}

}  // namespace
}  // namespace pgod::supervisor
