// Push hook judging: signatures and tokens, events, branches, hostile bodies, the delivery and
// rate tables.
#include "hook_request.h"

#include <gtest/gtest.h>

#include <string>

namespace pgod::gateway {
namespace {

constexpr std::string_view kSecret = "s3cret-for-hooks-0123";
const std::string kPushMain = R"({"ref":"refs/heads/main","before":"a","after":"b","commits":[{"id":"b"}]})";

HookHeaders github(const std::string& body, const std::string& event = "push", std::string_view secret = kSecret) {
  HookHeaders headers;
  headers.github_event = event;
  headers.github_delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
  headers.hub_signature_256 = "sha256=" + hmac_sha256_hex(secret, body);
  return headers;
}

HookHeaders gitlab(std::string token = std::string(kSecret), std::string event = "Push Hook") {
  HookHeaders headers;
  headers.gitlab_event = std::move(event);
  headers.gitlab_token = std::move(token);
  headers.gitlab_delivery = "3c0b4b2a-1c39-4b0c-9a4c-0d1b1a4f6c2e";
  headers.forwarded_proto = "https";
  return headers;
}

TEST(HookRequest, HmacMatchesAKnownVector) {
  // RFC 4231 test case 2.
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HookRequest, AGithubPushToTheTrackedBranchIsAPush) {
  const auto judged = judge_hook(github(kPushMain), kPushMain, kSecret, "main", false);
  EXPECT_EQ(judged.verdict, HookVerdict::kPush) << judged.detail;
  EXPECT_EQ(judged.forge, "github");
  EXPECT_EQ(judged.delivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
}

TEST(HookRequest, UppercaseHexSignaturesVerifyToo) {
  auto headers = github(kPushMain);
  for (auto& c : headers.hub_signature_256)
    if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
  headers.hub_signature_256.replace(0, 7, "sha256=");
  EXPECT_EQ(judge_hook(headers, kPushMain, kSecret, "main", false).verdict, HookVerdict::kPush);
}

TEST(HookRequest, GiteaAndForgejoSignaturesUnderTheirOwnNames) {
  HookHeaders gitea;
  gitea.gitea_event = "push";
  gitea.gitea_signature = hmac_sha256_hex(kSecret, kPushMain);
  auto judged = judge_hook(gitea, kPushMain, kSecret, "main", false);
  EXPECT_EQ(judged.verdict, HookVerdict::kPush) << judged.detail;
  EXPECT_EQ(judged.forge, "gitea");

  HookHeaders forgejo;
  forgejo.forgejo_event = "push";
  forgejo.gitea_event = "push";
  forgejo.forgejo_signature = hmac_sha256_hex(kSecret, kPushMain);
  judged = judge_hook(forgejo, kPushMain, kSecret, "main", false);
  EXPECT_EQ(judged.verdict, HookVerdict::kPush) << judged.detail;
  EXPECT_EQ(judged.forge, "forgejo");
}

TEST(HookRequest, AWrongSecretAChangedBodyOrNoSignatureIsRefused) {
  EXPECT_EQ(judge_hook(github(kPushMain, "push", "another-secret-000000"), kPushMain, kSecret, "main", false).verdict,
            HookVerdict::kBadSignature);
  auto changed = kPushMain;
  changed[changed.find("main")] = 'M';
  EXPECT_EQ(judge_hook(github(kPushMain), changed, kSecret, "main", false).verdict, HookVerdict::kBadSignature);
  auto unsigned_headers = github(kPushMain);
  unsigned_headers.hub_signature_256.clear();
  EXPECT_EQ(judge_hook(unsigned_headers, kPushMain, kSecret, "main", false).verdict, HookVerdict::kUnsigned);
  // The old SHA-1 header alone is not enough, nor a prefix, nor a truncated digest.
  auto sha1 = github(kPushMain);
  sha1.hub_signature_256 = "sha1=" + hmac_sha256_hex(kSecret, kPushMain);
  EXPECT_EQ(judge_hook(sha1, kPushMain, kSecret, "main", false).verdict, HookVerdict::kBadSignature);
  auto truncated = github(kPushMain);
  truncated.hub_signature_256.resize(truncated.hub_signature_256.size() - 2);
  EXPECT_EQ(judge_hook(truncated, kPushMain, kSecret, "main", false).verdict, HookVerdict::kBadSignature);
  auto empty_secret = github(kPushMain, "push", "");
  EXPECT_EQ(judge_hook(empty_secret, kPushMain, kSecret, "main", false).verdict, HookVerdict::kBadSignature);
}

TEST(HookRequest, PingsOtherEventsAndOtherBranchesTriggerNothing) {
  EXPECT_EQ(judge_hook(github(kPushMain, "ping"), kPushMain, kSecret, "main", false).verdict, HookVerdict::kPing);
  auto judged = judge_hook(github(kPushMain, "issues"), kPushMain, kSecret, "main", false);
  EXPECT_EQ(judged.verdict, HookVerdict::kIgnored);
  EXPECT_NE(judged.detail.find("issues"), std::string::npos);
  judged = judge_hook(github(kPushMain), kPushMain, kSecret, "production", false);
  EXPECT_EQ(judged.verdict, HookVerdict::kIgnored);
  EXPECT_NE(judged.detail.find("refs/heads/main"), std::string::npos);
  // A tag is not the branch, even with the branch's name.
  const std::string tag = R"({"ref":"refs/tags/main"})";
  EXPECT_EQ(judge_hook(github(tag), tag, kSecret, "main", false).verdict, HookVerdict::kIgnored);
}

TEST(HookRequest, ASignedBodyThatIsNoPushPayloadIsMalformed) {
  for (const std::string body : {"", "not json", "[]", R"("refs/heads/main")", R"({"ref":1})",
                                 R"({"nested":{"ref":"refs/heads/main"}})", R"({"ref":"refs/heads/main")"}) {
    const auto judged = judge_hook(github(body), body, kSecret, "main", false);
    EXPECT_EQ(judged.verdict, HookVerdict::kMalformed) << body;
  }
}

TEST(HookRequest, DeepNestingIsRefusedWithoutRecursion) {
  std::string deep(500000, '[');
  EXPECT_FALSE(push_ref(deep).has_value());
  std::string body = R"({"ref":"refs/heads/main","x":)" + std::string(40, '[') + std::string(40, ']') + "}";
  EXPECT_FALSE(push_ref(body).has_value());
  body = R"({"ref":"refs/heads/main","x":)" + std::string(20, '[') + std::string(20, ']') + "}";
  EXPECT_EQ(push_ref(body), "refs/heads/main");
}

TEST(HookRequest, TheFirstTopLevelRefCounts) {
  EXPECT_EQ(push_ref(R"({"a":{"ref":"refs/heads/x"},"ref":"refs/heads/main","ref":"refs/heads/other"})"),
            "refs/heads/main");
  EXPECT_EQ(push_ref(R"({"commits":[{"ref":"refs/heads/x"}],"ref":"refs/heads/main"})"), "refs/heads/main");
}

TEST(HookRequest, AGitlabTokenOnlyThroughATlsProxyOnThisHost) {
  EXPECT_EQ(judge_hook(gitlab(), kPushMain, kSecret, "main", true).verdict, HookVerdict::kPush);
  EXPECT_EQ(judge_hook(gitlab(), kPushMain, kSecret, "main", false).verdict, HookVerdict::kNeedsTls);
  auto plain = gitlab();
  plain.forwarded_proto = "http";
  EXPECT_EQ(judge_hook(plain, kPushMain, kSecret, "main", true).verdict, HookVerdict::kNeedsTls);
  EXPECT_EQ(judge_hook(gitlab("wrong-token-0000000000"), kPushMain, kSecret, "main", true).verdict,
            HookVerdict::kBadSignature);
  EXPECT_EQ(judge_hook(gitlab(std::string(kSecret) + "x"), kPushMain, kSecret, "main", true).verdict,
            HookVerdict::kBadSignature);
  EXPECT_EQ(judge_hook(gitlab(""), kPushMain, kSecret, "main", true).verdict, HookVerdict::kUnsigned);
  EXPECT_EQ(judge_hook(gitlab(std::string(kSecret), "Tag Push Hook"), kPushMain, kSecret, "main", true).verdict,
            HookVerdict::kIgnored);
}

TEST(HookRequest, OddDeliveryIdsAreNotKept) {
  auto headers = github(kPushMain);
  headers.github_delivery = "id with spaces\n";
  EXPECT_EQ(judge_hook(headers, kPushMain, kSecret, "main", false).delivery, "");
  headers.github_delivery = std::string(81, 'a');
  EXPECT_EQ(judge_hook(headers, kPushMain, kSecret, "main", false).delivery, "");
}

TEST(HookRequest, RecentDeliveriesForgetTheOldest) {
  RecentDeliveries recent(2);
  EXPECT_TRUE(recent.remember("a", "1"));
  EXPECT_FALSE(recent.remember("a", "1"));
  EXPECT_TRUE(recent.remember("b", "1"));  // per service
  EXPECT_TRUE(recent.remember("a", "2"));  // forgets a/1
  EXPECT_TRUE(recent.remember("a", "1"));
  EXPECT_TRUE(recent.remember("a", ""));
  EXPECT_TRUE(recent.remember("a", ""));
}

TEST(HookRequest, TheRateLimiterRefillsOverTime) {
  RateLimiter limiter(2, std::chrono::seconds(10));
  const auto start = RateLimiter::Clock::now();
  EXPECT_TRUE(limiter.allow("a", start));
  EXPECT_TRUE(limiter.allow("a", start));
  EXPECT_FALSE(limiter.allow("a", start));
  EXPECT_TRUE(limiter.allow("b", start));
  EXPECT_FALSE(limiter.allow("a", start + std::chrono::seconds(9)));
  EXPECT_TRUE(limiter.allow("a", start + std::chrono::seconds(11)));
  EXPECT_TRUE(limiter.allow("a", start + std::chrono::seconds(100), false));  // looking spends nothing
  EXPECT_TRUE(limiter.allow("a", start + std::chrono::seconds(100)));
  EXPECT_TRUE(limiter.allow("a", start + std::chrono::seconds(100)));
  EXPECT_FALSE(limiter.allow("a", start + std::chrono::seconds(100)));
}

TEST(HookRequest, PrintablePrefixBoundsWhatALogLineShows) {
  EXPECT_EQ(printable_prefix("push\r\nX: y"), "push??X: y");
  EXPECT_EQ(printable_prefix(std::string(70, 'a'), 64), std::string(64, 'a') + "...");
}

}  // namespace
}  // namespace pgod::gateway
