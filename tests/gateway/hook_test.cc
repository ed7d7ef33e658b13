// Push hooks end to end: the real pgod, gateway and workers (stand-in docker), deliveries sent
// as a forge sends them, over a plain TCP connection to the hook listener.

#include <string>
#include <thread>

#include "gateway_fixture.h"
#include "hook_request.h"

namespace pgod::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "hook-secret-for-b-0123456789";

HttpReply http(int port, const std::string& request) { return http_exchange(port, request); }

std::string post(const std::string& path, const std::string& body, const std::vector<std::string>& headers) {
  return http_post(path, body, headers);
}

std::string push_body(const std::string& branch = "main") {
  return R"({"ref":"refs/heads/)" + branch + R"(","before":"0000","after":"1111","commits":[]})";
}

class HookTest : public GatewayTest {
 protected:
  void start_with_hooks() {
    hooks_port_ = free_loopback_port();
    // Service b (the last table) takes hooks; a has no hook_secret.
    start({"--hooks", "127.0.0.1:" + std::to_string(hooks_port_)}, std::string("hook_secret = \"") + kSecret + "\"\n");
  }

  HttpReply github_push(const std::string& service, const std::string& body, const std::string& delivery,
                        const std::string& secret = kSecret, const std::string& event = "push") {
    return http(hooks_port_, post("/hooks/" + service, body,
                                  {"X-GitHub-Event: " + event, "X-GitHub-Delivery: " + delivery,
                                   "X-Hub-Signature-256: sha256=" + gateway::hmac_sha256_hex(secret, body)}));
  }

  std::string history_of_b() { return ssh(key_b_, "b//history").out; }

  int hooks_port_ = 0;
};

TEST_F(HookTest, ASignedPushDeploysTheNewCommitAtOnceAndTheHistorySaysWhy) {
  start_with_hooks();
  const std::string pushed = pgod_.upstream("b").commit({{"compose.yaml", "services:\n  web:\n    image: web:2\n"}});
  // pgod polls every 5 minutes here: only the hook can bring the commit in time.
  const auto reply = github_push("b", push_body(), "delivery-1");
  EXPECT_EQ(reply.status, 202) << reply.text;
  EXPECT_NE(reply.text.find("pull queued"), std::string::npos) << reply.text;
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() { return history_of_b().find(pushed.substr(0, 12) + "  deployed") != std::string::npos; }, 30s))
      << history_of_b() << pgod_.log();
  const auto history = history_of_b();
  EXPECT_NE(history.find("push hook (github) from 127.0.0.1"), std::string::npos) << history;
  EXPECT_NE(pgod_.log().find("[b] push hook from 127.0.0.1 (github, delivery delivery-1): pull queued"),
            std::string::npos)
      << pgod_.log();

  // The same delivery again (a redelivery, or a replay of a captured one) does nothing more.
  const auto again = github_push("b", push_body(), "delivery-1");
  EXPECT_EQ(again.status, 200) << again.text;
  EXPECT_NE(again.text.find("delivered before"), std::string::npos) << again.text;
}

TEST_F(HookTest, WrongSignaturesAreRefusedWithA401AndLogged) {
  start_with_hooks();
  const auto wrong = github_push("b", push_body(), "delivery-2", "not-the-secret-0000000000");
  EXPECT_EQ(wrong.status, 401) << wrong.text;
  EXPECT_NE(wrong.text.find("does not match"), std::string::npos) << wrong.text;
  const auto none = http(hooks_port_, post("/hooks/b", push_body(), {"X-GitHub-Event: push"}));
  EXPECT_EQ(none.status, 401) << none.text;
  ASSERT_TRUE(PgodHarness::wait_for([&]() {
    return pgod_.log().find("[b] push hook from 127.0.0.1 refused (401): the signature does not match") !=
           std::string::npos;
  })) << pgod_.log();
  // Nothing was pulled: the history has only the first deploy.
  EXPECT_EQ(history_of_b().find("push hook"), std::string::npos) << history_of_b();
  EXPECT_EQ(pgod_.log().find("the secret"), std::string::npos);
  EXPECT_EQ(pgod_.log().find(kSecret), std::string::npos) << "the secret never reaches a log";
}

TEST_F(HookTest, WhatIsNoSignedPushToTheTrackedBranchTriggersNothing) {
  start_with_hooks();
  // a has no hook_secret; z does not exist: both look the same from outside.
  EXPECT_EQ(github_push("a", push_body(), "d-a").status, 404);
  EXPECT_EQ(github_push("z", push_body(), "d-z").status, 404);
  EXPECT_EQ(github_push("../etc", push_body(), "d-x").status, 404);
  EXPECT_EQ(http(hooks_port_, "GET /hooks/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, 405);
  EXPECT_EQ(http(hooks_port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, 404);
  const auto ping = github_push("b", R"({"zen":"Keep it logically awesome."})", "d-ping", kSecret, "ping");
  EXPECT_EQ(ping.status, 200) << ping.text;
  EXPECT_NE(ping.text.find("pong"), std::string::npos);
  const auto other_branch = github_push("b", push_body("feature"), "d-feature");
  EXPECT_EQ(other_branch.status, 200) << other_branch.text;
  EXPECT_NE(other_branch.text.find("ignored: a push to refs/heads/feature"), std::string::npos) << other_branch.text;
  const auto not_json = github_push("b", "ref=refs/heads/main", "d-form");
  EXPECT_EQ(not_json.status, 400) << not_json.text;
  // Over 1 MiB is refused from its Content-Length, before it is read.
  const auto large = http(hooks_port_,
                          "POST /hooks/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                          "2000000\r\nX-GitHub-Event: push\r\n\r\n{");
  EXPECT_EQ(large.status, 413) << large.text;
  EXPECT_EQ(history_of_b().find("push hook"), std::string::npos) << history_of_b();
}

TEST_F(HookTest, AGitlabTokenCountsOnlyFromATlsProxyOnThisHost) {
  start_with_hooks();
  pgod_.upstream("b").commit({{"compose.yaml", "services:\n  web:\n    image: web:3\n"}});
  const std::vector<std::string> gitlab = {"X-Gitlab-Event: Push Hook", std::string("X-Gitlab-Token: ") + kSecret,
                                           "X-Gitlab-Event-UUID: 0f4c1d9e-1111-2222-3333-444455556666"};
  const auto plain = http(hooks_port_, post("/hooks/b", push_body(), gitlab));
  EXPECT_EQ(plain.status, 403) << plain.text;
  EXPECT_NE(plain.text.find("only over TLS"), std::string::npos) << plain.text;
  auto proxied = gitlab;
  proxied.push_back("X-Forwarded-Proto: https");
  // The client's own list first, the proxy's address for it last: only that one counts.
  proxied.push_back("X-Forwarded-For: 203.0.113.66, 192.0.2.7");
  const auto through_proxy = http(hooks_port_, post("/hooks/b", push_body(), proxied));
  EXPECT_EQ(through_proxy.status, 202) << through_proxy.text;
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() { return history_of_b().find("push hook (gitlab) from 192.0.2.7 via 127.0.0.1") != std::string::npos; },
      30s))
      << history_of_b() << pgod_.log();
  EXPECT_EQ(history_of_b().find("203.0.113.66"), std::string::npos)
      << "the client's own X-Forwarded-For is not believed";
}

// Past five pushes at once, a push is not lost: one pull is held back until the limit allows
// it (12 s), and the pushes after it join that one.
TEST_F(HookTest, PushesPastTheRateLimitAreHeldBackNotLost) {
  start_with_hooks();
  int at_once = 0, held_back = 0, joined = 0;
  for (int i = 0; i < 8; ++i) {
    const auto reply = github_push("b", push_body(), "burst-" + std::to_string(i));
    EXPECT_EQ(reply.status, 202) << reply.text;
    held_back += reply.text.find("pull queued in 12 s (rate limit)") != std::string::npos;
    joined += reply.text.find("a pull was already queued in 12 s") != std::string::npos;
    at_once += reply.text.find("rate limit") == std::string::npos;
  }
  EXPECT_EQ(at_once, 5);
  EXPECT_EQ(held_back, 1);
  EXPECT_EQ(joined, 2);
  // The held-back pull reaches the worker when the limit allows: a commit pushed once the
  // burst's pulls are done is deployed by it, with no further push and no poll.
  std::this_thread::sleep_for(6s);
  const std::string late = pgod_.upstream("b").commit({{"compose.yaml", "services:\n  web:\n    image: web:9\n"}});
  ASSERT_TRUE(PgodHarness::wait_for(
      [&]() { return history_of_b().find(late.substr(0, 12) + "  deployed") != std::string::npos; }, 30s))
      << history_of_b() << pgod_.log();
  const auto log = pgod_.log();
  const auto released = log.find("[b] push hook: the pull held back by the rate limit is queued now");
  ASSERT_NE(released, std::string::npos) << log;
  EXPECT_LT(released, log.find("[b] deployed " + late.substr(0, 12))) << log;
}

TEST_F(HookTest, AFloodOfBadSignaturesIsCutOffWithout401s) {
  start_with_hooks();
  int unauthorized = 0, limited = 0;
  for (int i = 0; i < 25; ++i) {
    const auto reply = github_push("b", push_body(), "bad-" + std::to_string(i), "wrong-secret-000000000000");
    unauthorized += reply.status == 401;
    limited += reply.status == 429;
  }
  EXPECT_EQ(unauthorized, 20);
  EXPECT_EQ(limited, 5);
  EXPECT_NE(pgod_.log().find("[b] push hook: too many deliveries failed to authenticate"), std::string::npos);
}

}  // namespace
}  // namespace pgod::test
