// Signed commits through the real pgod: the worker confined as in production (its user, its
// seccomp allowlist) runs ssh-keygen to check each new head of a service with signers.
#include <sstream>

#include "gateway_fixture.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;

class SignedCommitPgodTest : public GatewayTest {};

TEST_F(SignedCommitPgodTest, AConfinedWorkerDeploysSignedHeadsAndRefusesOthers) {
  const std::string alice = make_key(pgod_.root(), "alice-signing");
  std::istringstream public_key(read_file(alice + ".pub"));
  std::string type, blob;
  public_key >> type >> blob;
  // b's first commit (the compose file) is unsigned; the head start() pushes is signed.
  pgod_.upstream("b").sign_commits(alice);
  start({}, "signers = [ \"alice@example.org " + type + " " + blob + "\" ]\n");

  auto pull = ssh(key_b_, "b//git pull");
  EXPECT_EQ(pull.exit_code, 0) << pull.out << pull.err << pgod_.log();
  EXPECT_NE(pgod_.log().find("is signed by alice@example.org"), std::string::npos) << pgod_.log();

  pgod_.upstream("b").sign_commits("");
  const auto unsigned_commit = pgod_.upstream("b").commit({{"README", "unsigned\n"}});
  pull = ssh(key_b_, "b//git pull");
  EXPECT_NE(pull.exit_code, 0);
  EXPECT_NE((pull.out + pull.err).find("commit " + unsigned_commit.substr(0, 12) + " is not signed"), std::string::npos)
      << pull.out << pull.err;
  const auto hash = ssh(key_b_, "b//git hash");
  EXPECT_EQ(hash.out.find(unsigned_commit.substr(0, 12)), std::string::npos) << hash.out;

  pgod_.upstream("b").sign_commits(alice);
  const auto signed_commit = pgod_.upstream("b").commit({{"README", "signed\n"}});
  pull = ssh(key_b_, "b//git pull");
  EXPECT_EQ(pull.exit_code, 0) << pull.out << pull.err;
  EXPECT_NE(ssh(key_b_, "b//git hash").out.find(signed_commit.substr(0, 12)), std::string::npos);
  // Service a has no signers: its unsigned commits deploy as before.
  EXPECT_EQ(ssh(key_a_, "a//git pull").exit_code, 0);
}

}  // namespace
}  // namespace pgod::test
