// The gateway's key index: keys compared as libssh parses them, per service, with no key of one
// service ever answering for another.
#include "key_index.h"

#include <gtest/gtest.h>

#include <memory>

#include "process.h"

namespace pgod::gateway {
namespace {

struct KeyFree {
  void operator()(ssh_key key) const { ssh_key_free(key); }
};
using OwnedKey = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

struct MadeKey {
  std::string type, base64, canonical;
};

MadeKey make_key(const test::TempDir& dir, const std::string& name, const std::string& type) {
  const std::string path = dir.path() + "/" + name;
  auto made = test::run_process({"/usr/bin/ssh-keygen", "-q", "-t", type, "-N", "", "-C", name, "-f", path});
  if (made.exit_code != 0) throw std::runtime_error(made.err);
  const auto line = test::read_file(path + ".pub");
  MadeKey key;
  key.type = line.substr(0, line.find(' '));
  const auto start = line.find(' ') + 1;
  key.base64 = line.substr(start, line.find(' ', start) - start);
  ssh_key raw = nullptr;
  if (ssh_pki_import_pubkey_file((path + ".pub").c_str(), &raw) != SSH_OK) throw std::runtime_error("import");
  OwnedKey owned(raw);
  key.canonical = *KeyIndex::canonical(owned.get());
  return key;
}

class KeyIndexTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    ed_ = make_key(*dir_, "ed", "ed25519");
    rsa_ = make_key(*dir_, "rsa", "rsa");
    ecdsa_ = make_key(*dir_, "ecdsa", "ecdsa");
  }
  static void TearDownTestSuite() { delete dir_; }
  static test::TempDir* dir_;
  static MadeKey ed_, rsa_, ecdsa_;
};
test::TempDir* KeyIndexTest::dir_ = nullptr;
MadeKey KeyIndexTest::ed_, KeyIndexTest::rsa_, KeyIndexTest::ecdsa_;

TEST_F(KeyIndexTest, AKeyIsListedByExactlyTheServicesThatListIt) {
  KeyIndex index;
  EXPECT_EQ(index.set_service_keys("a", {{ed_.type, ed_.base64, "dev", "ssh/dev.pub"}}), 0u);
  EXPECT_EQ(index.set_service_keys("b", {{rsa_.type, rsa_.base64, "ci", "ssh/ci.pub"},
                                         {ecdsa_.type, ecdsa_.base64, "ops", "ssh/ops.pub"}}),
            0u);
  EXPECT_TRUE(index.listed_anywhere(ed_.canonical));
  EXPECT_TRUE(index.listed_anywhere(rsa_.canonical));
  EXPECT_TRUE(index.listed_anywhere(ecdsa_.canonical));
  EXPECT_EQ(index.listed_by("a", ed_.canonical), "ssh/dev.pub");
  EXPECT_EQ(index.listed_by("b", ed_.canonical), std::nullopt);
  EXPECT_EQ(index.listed_by("a", rsa_.canonical), std::nullopt);
  EXPECT_EQ(index.listed_by("b", ecdsa_.canonical), "ssh/ops.pub");
  EXPECT_EQ(index.listed_by("nosuch", ed_.canonical), std::nullopt);
}

TEST_F(KeyIndexTest, AKeyBothListStaysWhenOneDropsIt) {
  KeyIndex index;
  ASSERT_EQ(index.set_service_keys("a", {{ed_.type, ed_.base64, "", "ssh/x.pub"}}), 0u);
  ASSERT_EQ(index.set_service_keys("b", {{ed_.type, ed_.base64, "", "ssh/y.pub"}}), 0u);
  EXPECT_EQ(index.key_count(), 1u);
  index.set_service_keys("a", {});
  EXPECT_EQ(index.listed_by("a", ed_.canonical), std::nullopt);
  EXPECT_EQ(index.listed_by("b", ed_.canonical), "ssh/y.pub");
  EXPECT_TRUE(index.listed_anywhere(ed_.canonical));
  index.remove_service("b");
  EXPECT_FALSE(index.listed_anywhere(ed_.canonical));
  EXPECT_EQ(index.key_count(), 0u);
}

TEST_F(KeyIndexTest, MislabelledOrBrokenKeysAreSkippedAndCounted) {
  KeyIndex index;
  const auto unusable =
      index.set_service_keys("a", {{"ssh-rsa", ed_.base64, "", "ssh/liar.pub"},  // an ed25519 blob called rsa
                                   {"ssh-ed25519", "AAAA!!notbase64", "", "ssh/bad.pub"},
                                   {"ssh-unknown", ed_.base64, "", "ssh/odd.pub"},
                                   {ed_.type, ed_.base64.substr(0, 20), "", "ssh/short.pub"},
                                   {ecdsa_.type, ecdsa_.base64, "", "ssh/good.pub"}});
  EXPECT_EQ(unusable, 4u);
  EXPECT_FALSE(index.listed_anywhere(ed_.canonical));
  EXPECT_EQ(index.listed_by("a", ecdsa_.canonical), "ssh/good.pub");
}

TEST_F(KeyIndexTest, CanonicalFormIgnoresTheCommentAndTheFile) {
  KeyIndex index;
  ASSERT_EQ(index.set_service_keys("a", {{ed_.type, ed_.base64, "a different comment", "ssh/renamed.pub"}}), 0u);
  EXPECT_EQ(index.listed_by("a", ed_.canonical), "ssh/renamed.pub");
  EXPECT_EQ(ed_.canonical, ed_.type + " " + ed_.base64);
  EXPECT_EQ(KeyIndex::canonical(nullptr), std::nullopt);
}

// The audit's KEY_FINGERPRINT is what ssh-keygen -l shows for the same key (every key type:
// blob lengths that need one, two or no padding characters).
TEST_F(KeyIndexTest, FingerprintsAreSshKeygens) {
  for (const auto* name : {"ed", "rsa", "ecdsa"}) {
    const auto shown =
        test::run_process({"/usr/bin/ssh-keygen", "-l", "-E", "sha256", "-f", dir_->path() + "/" + name + ".pub"}).out;
    const auto start = shown.find("SHA256:");
    ASSERT_NE(start, std::string::npos) << shown;
    const MadeKey& key = std::string(name) == "ed" ? ed_ : std::string(name) == "rsa" ? rsa_ : ecdsa_;
    EXPECT_EQ(key_fingerprint(key.canonical), shown.substr(start, shown.find(' ', start) - start)) << name;
  }
  EXPECT_EQ(key_fingerprint("ssh-ed25519 not*base64"), "unknown");
  EXPECT_EQ(key_fingerprint(""), "unknown");
}

}  // namespace
}  // namespace pgod::gateway
