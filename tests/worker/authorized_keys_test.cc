#include "authorized_keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "process.h"

namespace pgod::worker {
namespace {

// Real keys, made with ssh-keygen for these tests (public halves only).
const std::string kEd25519 =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPRbE6PfrAhKDwL7mRe6WEE3NAeCewiD8eIh6iLKFrug alice@laptop";
const std::string kEd25519Blob = "AAAAC3NzaC1lZDI1NTE5AAAAIPRbE6PfrAhKDwL7mRe6WEE3NAeCewiD8eIh6iLKFrug";

TEST(AuthorizedKeys, ParsesKeysSkippingCommentsAndBlankLines) {
  const auto scan = parse_public_keys("# deploy keys\n\n" + kEd25519 + "\r\n  " + kEd25519 + "  \n", "ssh/a.pub");
  ASSERT_EQ(scan.keys.size(), 2u);
  EXPECT_EQ(scan.keys[0].type, "ssh-ed25519");
  EXPECT_EQ(scan.keys[0].base64, kEd25519Blob);
  EXPECT_EQ(scan.keys[0].comment, "alice@laptop");
  EXPECT_EQ(scan.keys[0].file, "ssh/a.pub");
  EXPECT_TRUE(scan.problems.empty());
}

TEST(AuthorizedKeys, ReportsMalformedLinesAndKeepsTheRest) {
  const auto scan = parse_public_keys("command=\"/bin/sh\" " + kEd25519 +
                                          "\n"                        // options are not a .pub thing
                                          "ssh-ed25519\n"             // no blob
                                          "ssh-ed25519 not*base64\n"  // bad base64
                                          "ssh-rsa " +
                                          kEd25519Blob +
                                          "\n"  // blob of another type
                                          "ssh-ed25519 " +
                                          kEd25519Blob + " evil\x1b[2Jcomment\n" +  // control characters in the comment
                                          kEd25519 + "\n",
                                      "ssh/x.pub");
  ASSERT_EQ(scan.keys.size(), 2u);
  EXPECT_EQ(scan.keys[0].comment, "evil?[2Jcomment");
  ASSERT_EQ(scan.problems.size(), 4u);
  EXPECT_EQ(scan.problems[0],
            "ssh/x.pub:1: unknown key type \"command=\"/bin/sh\"\" (options before the key are not supported)");
  EXPECT_EQ(scan.problems[1], "ssh/x.pub:2: no key after the type");
  EXPECT_EQ(scan.problems[2], "ssh/x.pub:3: the ssh-ed25519 key is not valid base64 of that key type");
  EXPECT_EQ(scan.problems[3], "ssh/x.pub:4: the ssh-rsa key is not valid base64 of that key type");
}

TEST(AuthorizedKeys, ReadsOnlyRegularPubFilesWithoutFollowingSymlinks) {
  test::TempDir checkout;
  checkout.write("ssh/b.pub", kEd25519 + "\n");
  checkout.write("ssh/a.pub", "ssh-ed25519 " + kEd25519Blob + " first\n");
  checkout.write("ssh/notes.txt", kEd25519 + "\n");
  checkout.write("outside.pub", kEd25519 + " outside\n");
  ASSERT_EQ(symlink((checkout.path() + "/outside.pub").c_str(), (checkout.path() + "/ssh/link.pub").c_str()), 0);
  ASSERT_EQ(mkfifo((checkout.path() + "/ssh/fifo.pub").c_str(), 0600), 0);
  checkout.write("ssh/big.pub", std::string(kMaxKeyFileBytes + 1, '#'));

  const auto scan = read_authorized_keys(checkout.path());
  ASSERT_EQ(scan.keys.size(), 2u);
  EXPECT_EQ(scan.keys[0].file, "ssh/a.pub");
  EXPECT_EQ(scan.keys[0].comment, "first");
  EXPECT_EQ(scan.keys[1].file, "ssh/b.pub");
  ASSERT_EQ(scan.problems.size(), 3u);
  EXPECT_EQ(scan.problems[0], "ssh/big.pub: larger than 65536 bytes, ignored");
  EXPECT_EQ(scan.problems[1], "ssh/fifo.pub: not a regular file");
  EXPECT_EQ(scan.problems[2], "ssh/link.pub: Too many levels of symbolic links (a symlink is not followed)");
}

TEST(AuthorizedKeys, SymlinkedSshDirectoryIsNotFollowed) {
  test::TempDir elsewhere;
  elsewhere.write("k.pub", kEd25519 + "\n");
  test::TempDir checkout;
  ASSERT_EQ(symlink(elsewhere.path().c_str(), (checkout.path() + "/ssh").c_str()), 0);
  const auto scan = read_authorized_keys(checkout.path());
  EXPECT_TRUE(scan.keys.empty());
  ASSERT_EQ(scan.problems.size(), 1u);
  EXPECT_NE(scan.problems[0].find("ssh/: Not a directory (a symlink is not followed)"), std::string::npos)
      << scan.problems[0];
}

TEST(AuthorizedKeys, NoSshDirectoryIsNoKeysAndNoProblem) {
  test::TempDir checkout;
  const auto scan = read_authorized_keys(checkout.path());
  EXPECT_TRUE(scan.keys.empty());
  EXPECT_TRUE(scan.problems.empty());
}

}  // namespace
}  // namespace pgod::worker
