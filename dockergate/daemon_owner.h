// Who owns an object on the daemon, asked of dockerd itself: a container, volume or network is
// a project's when it carries the label com.docker.compose.project with the project's name
// (compose sets it on everything it makes, and the gate forces it at create). The answers give
// the object's full ID, which the gate then sends on instead of the name the client wrote, so a
// name that moves to another object between the question and the request changes nothing.
#pragma once

#include <optional>
#include <string>

#include "judge.h"

namespace pgod::dockergate {

class DaemonOwner final : public Owner {
 public:
  DaemonOwner(std::string docker_socket, const GateService& service)
      : docker_socket_(std::move(docker_socket)), service_(service) {}

  // The full ID of the project's container `id_or_name`, or nullopt (none, or another's).
  std::optional<std::string> own_container(const std::string& id_or_name);
  // The project's container's inspect JSON, or nullopt.
  std::optional<Json> own_container_json(const std::string& id_or_name);
  // The full ID of an exec whose container is the project's.
  std::optional<std::string> own_exec(const std::string& id);
  // The full ID of the project's network; with `or_allowed`, also of pgo.toml's `networks`.
  std::optional<std::string> network(const std::string& id_or_name, bool or_allowed);
  // Whether `reference` (a name or an ID) is an image another served project built or tagged
  // (is_other_projects_image); an image dockerd does not know is nobody's.
  bool is_other_projects_image(const std::string& reference);
  // The volume's name when it is the project's.
  std::optional<std::string> own_volume(const std::string& name);

  bool owns_container(const std::string& id_or_name) override { return own_container(id_or_name).has_value(); }
  bool owns_volume(const std::string& name) override { return own_volume(name).has_value(); }
  bool may_join_network(const std::string& id_or_name) override { return network(id_or_name, true).has_value(); }

 private:
  std::optional<Json> inspect(const std::string& path);
  bool labelled_own(const Json& labels) const;

  std::string docker_socket_;
  const GateService& service_;
};

}  // namespace pgod::dockergate
