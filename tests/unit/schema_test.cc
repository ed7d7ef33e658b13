// The contract's messages survive serialisation, and the two verb lists agree.
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "rpc_verbs.h"
#include "settings.capnp.h"
#include "supervisor.capnp.h"

namespace pgod {
namespace {

TEST(Schema, SettingsRoundTrip) {
  capnp::MallocMessageBuilder builder;
  auto settings = builder.initRoot<rpc::ServiceSettings>();
  settings.setName("web");
  settings.setUid(1001);
  settings.setRepository("https://oauth2:tok@h/x.git");
  auto env = settings.initEnv(1);
  env[0].setName("A");
  env[0].setValue("1");
  auto registries = settings.initRegistries(1);
  registries[0].setToken("t");
  registries[0].setRegistry("127.0.0.1:5000");
  settings.setPollIntervalNs(300'000'000'000ULL);
  settings.setComposeProgram(rpc::ServiceSettings::ComposeProgram::STANDALONE);

  const auto words = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(words.asPtr());
  auto read = reader.getRoot<rpc::ServiceSettings>();
  EXPECT_EQ(std::string(read.getName().cStr()), "web");
  EXPECT_EQ(read.getUid(), 1001u);
  EXPECT_EQ(std::string(read.getEnv()[0].getValue().cStr()), "1");
  EXPECT_EQ(std::string(read.getRegistries()[0].getRegistry().cStr()), "127.0.0.1:5000");
  EXPECT_EQ(read.getPollIntervalNs(), 300'000'000'000ULL);
  EXPECT_EQ(read.getComposeProgram(), rpc::ServiceSettings::ComposeProgram::STANDALONE);
}

TEST(Schema, EveryWorkerVerbMapsBothWays) {
  int worker_verbs = 0;
  for (const auto& info : all_verbs()) {
    const auto rpc = to_rpc_verb(info.verb);
    EXPECT_EQ(rpc.has_value(), info.handler == Handler::kWorker) << info.words;
    if (!rpc) continue;
    ++worker_verbs;
    EXPECT_EQ(from_rpc_verb(*rpc), info.verb) << info.words;
  }
  // A value this build does not know maps to nothing, never to a default verb.
  EXPECT_EQ(from_rpc_verb(static_cast<rpc::Verb>(999)), std::nullopt);
  // Every enumerant of the schema's Verb is covered by the grammar.
  const auto schema = capnp::Schema::from<rpc::Verb>();
  EXPECT_EQ(static_cast<int>(schema.getEnumerants().size()), worker_verbs);
}

TEST(Schema, ServiceInfoDefaults) {
  capnp::MallocMessageBuilder builder;
  auto info = builder.initRoot<rpc::ServiceInfo>();
  EXPECT_EQ(info.getWorkerState(), rpc::ServiceInfo::WorkerState::RUNNING);
  EXPECT_EQ(info.getRestarts(), 0u);
}

}  // namespace
}  // namespace pgod
