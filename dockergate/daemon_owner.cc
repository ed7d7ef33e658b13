#include "daemon_owner.h"

#include <algorithm>

#include "daemon.h"

namespace pgod::dockergate {
namespace {
constexpr char kProjectLabel[] = "com.docker.compose.project";

std::string string_at(const Json& object, const char* key) {
  if (!object.is_object()) return {};
  const auto found = object.find(key);
  return found != object.end() && found->is_string() ? found->get<std::string>() : std::string();
}
}  // namespace

// dockerd's answers are trusted to be JSON, but parsed without exceptions all the same.
std::optional<Json> DaemonOwner::inspect(const std::string& path) {
  auto reply = ask_daemon(docker_socket_, path);
  if (!reply || reply->status != 200) return std::nullopt;
  Json parsed = Json::parse(reply->body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  return parsed;
}

bool DaemonOwner::labelled_own(const Json& labels) const {
  return labels.is_object() && string_at(labels, kProjectLabel) == service_.project;
}

std::optional<Json> DaemonOwner::own_container_json(const std::string& id_or_name) {
  auto found = inspect("/containers/" + encode_component(id_or_name) + "/json");
  if (!found) return std::nullopt;
  const auto config = found->find("Config");
  if (config == found->end() || !config->is_object() || !labelled_own(config->value("Labels", Json())))
    return std::nullopt;
  if (string_at(*found, "Id").empty()) return std::nullopt;
  return found;
}

std::optional<std::string> DaemonOwner::own_container(const std::string& id_or_name) {
  auto found = own_container_json(id_or_name);
  if (!found) return std::nullopt;
  return string_at(*found, "Id");
}

std::optional<std::string> DaemonOwner::own_exec(const std::string& id) {
  auto found = inspect("/exec/" + encode_component(id) + "/json");
  if (!found) return std::nullopt;
  const std::string container = string_at(*found, "ContainerID");
  if (container.empty() || !own_container(container)) return std::nullopt;
  const std::string exec_id = string_at(*found, "ID");
  return exec_id.empty() ? std::nullopt : std::optional<std::string>(exec_id);
}

std::optional<std::string> DaemonOwner::network(const std::string& id_or_name, bool or_allowed) {
  auto found = inspect("/networks/" + encode_component(id_or_name));
  if (!found) return std::nullopt;
  const std::string name = string_at(*found, "Name");
  const auto& allowed = service_.allowed_networks;
  const bool is_allowed = or_allowed && std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  if (!is_allowed && !labelled_own(found->value("Labels", Json()))) return std::nullopt;
  const std::string id = string_at(*found, "Id");
  return id.empty() ? std::nullopt : std::optional<std::string>(id);
}

bool DaemonOwner::is_other_projects_image(const std::string& reference) {
  std::string path;  // a name keeps its slashes; each segment is encoded
  for (std::size_t start = 0; start <= reference.size();) {
    const std::size_t slash = std::min(reference.find('/', start), reference.size());
    path += "/" + encode_component(std::string_view(reference).substr(start, slash - start));
    start = slash + 1;
  }
  auto found = inspect("/images" + path + "/json");
  if (!found) return false;
  std::vector<std::string> tags;
  if (const auto listed = found->find("RepoTags"); listed != found->end() && listed->is_array())
    for (const auto& tag : *listed)
      if (tag.is_string()) tags.push_back(tag.get<std::string>());
  return dockergate::is_other_projects_image(service_, tags);
}

std::optional<std::string> DaemonOwner::own_volume(const std::string& name) {
  auto found = inspect("/volumes/" + encode_component(name));
  if (!found || !labelled_own(found->value("Labels", Json()))) return std::nullopt;
  const std::string real_name = string_at(*found, "Name");
  return real_name.empty() ? std::nullopt : std::optional<std::string>(real_name);
}

}  // namespace pgod::dockergate
