// The health gate's judgement of `docker inspect` output, and the last good model's images.
#include "health_gate.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

namespace pgod::worker {
namespace {

using namespace std::chrono_literals;
using Kind = GateVerdict::Kind;

constexpr std::int64_t kNow = 1796360000;

ContainerState container(const std::string& status, const std::string& health = "", int exit_code = 0,
                         std::int64_t started = kNow - 600) {
  ContainerState state;
  state.id = "c1";
  state.name = "web-app-1";
  state.service = "app";
  state.status = status;
  state.health = health;
  state.exit_code = exit_code;
  state.started_at = started;
  return state;
}

TEST(HealthGate, ParsesWhatTheGateReadsFromDockerInspect) {
  const auto parsed = parse_inspect(R"([{
    "Id": "abc", "Name": "/web-app-1", "Image": "sha256:1234",
    "Config": {"Labels": {"com.docker.compose.service": "app", "com.docker.compose.oneoff": "False"}},
    "State": {"Status": "running", "ExitCode": 0, "StartedAt": "2026-12-04T05:00:00.123456789Z",
              "Health": {"Status": "unhealthy", "Log": [{"Output": "first"}, {"Output": "curl: (7) refused\n\tagain\n"}]}}
  }, {
    "Id": "def", "Name": "/web-run-1", "Config": {"Labels": {"com.docker.compose.oneoff": "True"}},
    "State": {"Status": "exited", "ExitCode": 2, "StartedAt": "0001-01-01T00:00:00Z"}
  }])");
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  ASSERT_EQ(parsed->size(), 2u);
  const auto& first = parsed->front();
  EXPECT_EQ(first.id, "abc");
  EXPECT_EQ(first.name, "web-app-1");
  EXPECT_EQ(first.service, "app");
  EXPECT_EQ(first.image_id, "sha256:1234");
  EXPECT_EQ(first.status, "running");
  EXPECT_EQ(first.health, "unhealthy");
  EXPECT_EQ(first.health_output, "curl: (7) refused  again") << "the last check, on one line";
  EXPECT_EQ(first.started_at, 1796360400);
  EXPECT_FALSE(first.one_off);
  EXPECT_TRUE(parsed->back().one_off);
  EXPECT_EQ(parsed->back().exit_code, 2);
  EXPECT_EQ(parsed->back().started_at, 0) << "docker's zero time";
}

TEST(HealthGate, AnythingButAListOfContainersIsAnError) {
  for (const char* text :
       {"", "{}", "[1]", "[{\"Id\": \"x\"}]", "not json", "[{\"State\": {\"Status\": \"running\"}}]"})
    EXPECT_FALSE(parse_inspect(text).has_value()) << text;
  EXPECT_TRUE(parse_inspect("[]").has_value());
}

TEST(HealthGate, RunningHealthyAndDoneOneShotsPass) {
  EXPECT_EQ(judge_containers({container("running")}, kNow, 3s).kind, Kind::kPassed);
  EXPECT_EQ(judge_containers({container("running", "healthy", 0, kNow)}, kNow, 3s).kind, Kind::kPassed)
      << "a healthcheck's verdict needs no settling";
  EXPECT_EQ(judge_containers({container("exited", "", 0)}, kNow, 3s).kind, Kind::kPassed) << "a one-shot that is done";
  EXPECT_EQ(judge_containers({}, kNow, 3s).kind, Kind::kPassed);
}

TEST(HealthGate, StartingOnesAreWaitedFor) {
  for (const auto& state :
       {container("running", "", 0, kNow - 1), container("running", "starting"), container("created")}) {
    const auto verdict = judge_containers({container("running"), state}, kNow, 3s);
    EXPECT_EQ(verdict.kind, Kind::kWaiting) << state.status << "/" << state.health;
    EXPECT_NE(verdict.reason.find("web-app-1"), std::string::npos) << verdict.reason;
  }
}

TEST(HealthGate, FailuresNameTheContainerAndTheCheck) {
  const struct {
    ContainerState state;
    std::string reason;
  } cases[] = {
      {container("exited", "", 3), "container web-app-1 (service \"app\") exited with code 3"},
      {container("restarting", "", 1), "is restarting (it exited with code 1)"},
      {container("dead"), "is dead"},
      {container("paused"), "is paused"},
      {[] {
         auto state = container("running", "unhealthy");
         state.health_output = "curl: (7) refused";
         return state;
       }(),
       "is unhealthy: its healthcheck says: curl: (7) refused"},
  };
  for (const auto& c : cases) {
    const auto verdict = judge_containers({container("running"), c.state}, kNow, 3s);
    EXPECT_EQ(verdict.kind, Kind::kFailed) << c.reason;
    EXPECT_NE(verdict.reason.find(c.reason), std::string::npos) << verdict.reason;
  }
}

TEST(HealthGate, OneOffContainersAreNotPartOfTheDeploy) {
  auto run = container("exited", "", 1);
  run.one_off = true;
  EXPECT_EQ(judge_containers({container("running"), run}, kNow, 3s).kind, Kind::kPassed);
}

TEST(HealthGate, ADigestNamesAnImageForGood) {
  ImageNames image{"sha256:1", {"reg:5000/other@sha256:aa", "reg:5000/app@sha256:bb"}, {"reg:5000/app:1.0"}};
  EXPECT_EQ(digest_reference(image, "reg:5000/app:1.0"), "reg:5000/app@sha256:bb");
  EXPECT_EQ(digest_reference(image, ""), "reg:5000/other@sha256:aa");
  EXPECT_EQ(digest_reference(ImageNames{"sha256:2", {}, {"web-app:latest"}}, "web-app"), "") << "built here";
  const auto parsed = parse_image_inspect(
      R"([{"Id": "sha256:1", "RepoTags": ["reg:5000/app:1.0"], "RepoDigests": ["reg:5000/app@sha256:bb"]}])");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->front().digests, std::vector<std::string>{"reg:5000/app@sha256:bb"});
  EXPECT_EQ(parsed->front().tags, std::vector<std::string>{"reg:5000/app:1.0"});
}

TEST(HealthGate, PinnedModelNamesEachImageAndBuildsNothing) {
  const auto pinned = pin_images(R"(name: web
services:
  app:
    build:
      context: /srv/pgo/web
    image: web-app
    environment:
      V: "1"
      FLAG: "yes"
      PRICE: $$5
  db:
    image: reg:5000/db:16
)",
                                 {{"app", "web-pgod-good:s0"}, {"db", "reg:5000/db@sha256:cc"}});
  ASSERT_TRUE(pinned.has_value()) << pinned.error();
  const YAML::Node model = YAML::Load(*pinned);
  EXPECT_EQ(model["services"]["app"]["image"].as<std::string>(), "web-pgod-good:s0");
  EXPECT_FALSE(model["services"]["app"]["build"].IsDefined());
  EXPECT_EQ(model["services"]["db"]["image"].as<std::string>(), "reg:5000/db@sha256:cc");
  // Strings stay strings (compose v1 reads YAML 1.1: an unquoted yes would be a boolean).
  EXPECT_NE(pinned->find("V: \"1\""), std::string::npos) << *pinned;
  EXPECT_NE(pinned->find("FLAG: \"yes\""), std::string::npos) << *pinned;
  EXPECT_NE(pinned->find("$$5"), std::string::npos) << *pinned;
  EXPECT_FALSE(pin_images("services:\n  app:\n    image: a\n", {{"gone", "x"}}).has_value());
}

}  // namespace
}  // namespace pgod::worker
