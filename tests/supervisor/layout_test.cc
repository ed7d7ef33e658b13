// What a worker is told: the settings message built from one pgo.toml service.
#include "layout.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "settings.capnp.h"

namespace pgod::supervisor {
namespace {

TEST(WorkerSettings, CarryTheSignersAndTheForcePushRuleButNeverTheHookSecret) {
  config::Service service;
  service.name = "web";
  service.user = "web";
  service.repository = "https://example.org/web.git";
  service.signers = {"alice@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "bob ssh-ed25519 AAAAC3NzaC1lZDI1NTE6"};
  service.allow_force_push = true;
  service.hook_secret = Secret("hook-secret-0123456789abcdef");
  Identity identity;
  identity.user = "web";
  identity.uid = 1000;
  identity.gid = 1000;
  const Layout layout{"/var/lib/pgo", "", "/run/pgod"};
  const auto words = worker_settings(service, identity, layout, WorkerDefaults{}, "");
  capnp::FlatArrayMessageReader message(words);
  const auto settings = message.getRoot<rpc::ServiceSettings>();
  ASSERT_EQ(settings.getSigners().size(), 2u);
  EXPECT_STREQ(settings.getSigners()[0].cStr(), "alice@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5");
  EXPECT_STREQ(settings.getSigners()[1].cStr(), "bob ssh-ed25519 AAAAC3NzaC1lZDI1NTE6");
  EXPECT_TRUE(settings.getAllowForcePush());
  // The worker has no use for the hook secret: it is the gateway's, through the supervisor.
  const auto bytes = words.asBytes();
  const std::string raw(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  EXPECT_EQ(raw.find("hook-secret-0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace pgod::supervisor
