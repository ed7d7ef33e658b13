#include "secret.h"

#include <gtest/gtest.h>

#include <sstream>

namespace pgod {
namespace {

TEST(Secret, NeverFormatsItsValue) {
  const Secret token("hunter2-token");
  EXPECT_EQ(fmt::format("{}", token), "[redacted]");
  EXPECT_EQ(fmt::format("token={:>12}", token), "token=  [redacted]");
  std::ostringstream out;
  out << token;
  EXPECT_EQ(out.str(), "[redacted]");
  EXPECT_EQ(token.reveal(), "hunter2-token");
}

TEST(Secret, RedactsUrlCredentials) {
  EXPECT_EQ(redact_url("https://oauth2:glpat-XYZ@gitlab.example.org/g/p.git"),
            "https://[redacted]@gitlab.example.org/g/p.git");
  EXPECT_EQ(redact_url("https://ghp_TOKEN@github.com/o/r"), "https://[redacted]@github.com/o/r");
  EXPECT_EQ(redact_url("http://u:p@127.0.0.1:8080/git/x.git"), "http://[redacted]@127.0.0.1:8080/git/x.git");
  EXPECT_EQ(redact_url("ssh://git:pw@host/x.git"), "ssh://git:[redacted]@host/x.git");
  EXPECT_EQ(redact_url("ssh://git@host/x.git"), "ssh://git@host/x.git");
  EXPECT_EQ(redact_url("https://host/a@b"), "https://host/a@b") << "an @ in the path is not userinfo";
  EXPECT_EQ(redact_url("https://u:p@ss@host/x"), "https://[redacted]@host/x") << "the last @ ends the userinfo";
  EXPECT_EQ(redact_url("/srv/git/x.git"), "/srv/git/x.git");
  EXPECT_EQ(redact_url("git@github.com:o/r.git"), "git@github.com:o/r.git");
}

TEST(Secret, RedactsKnownValuesInText) {
  const std::vector<Secret> secrets{Secret("tok"), Secret(""), Secret("pass word")};
  EXPECT_EQ(redact("failed for tok and tok: pass word!", secrets), "failed for [redacted] and [redacted]: [redacted]!");
  EXPECT_EQ(redact("nothing here", secrets), "nothing here");
}

}  // namespace
}  // namespace pgod
