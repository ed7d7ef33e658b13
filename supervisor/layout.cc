#include "layout.h"

#include <capnp/serialize.h>
#include <fmt/format.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "settings.capnp.h"

namespace pgod::supervisor {
namespace {

void set_identity(rpc::ServiceSettings::Builder settings, const std::string& name, const Identity& identity,
                  const Layout& layout, const WorkerDefaults& defaults) {
  settings.setName(name);
  settings.setUser(identity.user);
  settings.setUid(identity.uid);
  settings.setGid(identity.gid);
  settings.setHome(identity.home);
  settings.setCheckoutDir(layout.checkout(name));
  settings.setDataDir(layout.data(name));
  settings.setStateDir(layout.state(name));
  settings.setStopFile(layout.stop_file(name));
  settings.setPollIntervalNs(static_cast<std::uint64_t>(defaults.poll_interval.count()));
  settings.setGatewayUid(defaults.gateway_uid);
  settings.setDebug(defaults.debug);
  settings.setComposeProgram(defaults.compose_program);
  // A service run as root (the policy does not apply to it) reaches dockerd as root always could.
  if (defaults.docker_gate && identity.uid != 0) settings.setDockerHost("unix://" + layout.docker_socket(name));
}

// pgo.toml's networks: the external networks the compose policy allows.
void set_networks(rpc::ServiceSettings::Builder settings, const config::Service& service) {
  auto networks = settings.initNetworks(static_cast<unsigned>(service.networks.size()));
  for (unsigned i = 0; i < service.networks.size(); ++i) networks.set(i, service.networks[i]);
}

}  // namespace

std::string caddy_import(const config::Config& config) {
  std::vector<std::pair<std::string, std::string>> sites;
  for (const auto& service : config.services)
    for (const auto& url : service.urls) sites.emplace_back(url.host, url.target);
  std::sort(sites.begin(), sites.end());
  std::string content;
  for (const auto& [host, target] : sites) content += fmt::format("{} {{\n\treverse_proxy {}\n}}\n", host, target);
  return content;
}

kj::Array<capnp::word> worker_settings(const config::Service& service, const Identity& identity, const Layout& layout,
                                       const WorkerDefaults& defaults, const std::string& caddy) {
  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<rpc::ServiceSettings>();
  set_identity(settings, service.name, identity, layout, defaults);
  settings.setRepository(service.repository);
  settings.setBranch(service.branch);
  settings.setComposeFile(service.compose);
  auto env = settings.initEnv(static_cast<unsigned>(service.env.size()));
  for (unsigned i = 0; i < service.env.size(); ++i) {
    env[i].setName(service.env[i].name);
    env[i].setValue(service.env[i].value.reveal());
  }
  auto registries = settings.initRegistries(static_cast<unsigned>(service.registries.size()));
  for (unsigned i = 0; i < service.registries.size(); ++i) {
    registries[i].setUser(service.registries[i].user);
    registries[i].setToken(service.registries[i].token.reveal());
    registries[i].setRegistry(service.registries[i].registry);
  }
  auto urls = settings.initUrls(static_cast<unsigned>(service.urls.size()));
  for (unsigned i = 0; i < service.urls.size(); ++i) {
    urls[i].setHost(service.urls[i].host);
    urls[i].setTarget(service.urls[i].target);
  }
  set_networks(settings, service);
  settings.setImportPath(service.import_path);
  if (!service.import_path.empty()) settings.setImportContent(caddy);
  settings.setReload(service.reload);
  settings.setIgnore(service.ignore);
  settings.setHealthTimeoutNs(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(service.health_timeout).count()));
  auto signers = settings.initSigners(static_cast<unsigned>(service.signers.size()));
  for (unsigned i = 0; i < service.signers.size(); ++i) signers.set(i, service.signers[i]);
  settings.setAllowForcePush(service.allow_force_push);
  return capnp::messageToFlatArray(message);
}

kj::Array<capnp::word> judge_settings(const config::Service& service, const Identity& identity, const Layout& layout,
                                      const WorkerDefaults& defaults) {
  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<rpc::ServiceSettings>();
  set_identity(settings, service.name, identity, layout, defaults);
  set_networks(settings, service);
  return capnp::messageToFlatArray(message);
}

kj::Array<capnp::word> retire_settings(const std::string& name, const Identity& identity, const Layout& layout,
                                       const WorkerDefaults& defaults, const std::string& work_dir) {
  capnp::MallocMessageBuilder message;
  auto settings = message.initRoot<rpc::ServiceSettings>();
  set_identity(settings, name, identity, layout, defaults);
  settings.setCheckoutDir(work_dir);
  settings.setStateDir(work_dir);
  return capnp::messageToFlatArray(message);
}

}  // namespace pgod::supervisor
