#include "routes.h"

#include <fmt/format.h>

#include <charconv>

namespace pgod::dockergate {
namespace {

// Everything else (swarm, plugins, secrets, configs, services, nodes, tasks, prune, push,
// image delete, commit, export, import, load, save, container update, BuildKit's /session and
// /grpc) is refused by not being here.
const std::vector<Route> kRoutes = {
    // Host facts and health: what `docker version`, compose's start-up checks and login read.
    {"GET", "/_ping", Handler::kPlain, Body::kNone, "", false, "liveness"},
    {"HEAD", "/_ping", Handler::kPlain, Body::kNone, "", false, "liveness"},
    {"GET", "/version", Handler::kPlain, Body::kNone, "", false, "API version negotiation"},
    {"GET", "/info", Handler::kPlain, Body::kNone, "", false, "compose reads the engine's features"},
    {"POST", "/auth", Handler::kLogin, Body::kJson, "", false, "docker login checks the service's own credentials"},
    // Containers.
    {"GET", "/containers/json", Handler::kScopedList, Body::kNone, "all limit size filters before since trunc_cmd",
     false, "lists only the project's containers"},
    {"POST", "/containers/create", Handler::kContainerCreate, Body::kJson, "name platform", false,
     "judged field by field like the compose policy; the project's names and label"},
    {"GET", "/containers/{id}/json", Handler::kOwnContainer, Body::kNone, "size", false, "own containers"},
    {"GET", "/containers/{id}/logs", Handler::kOwnContainer, Body::kNone,
     "follow stdout stderr since until timestamps tail details", false, "own containers"},
    {"GET", "/containers/{id}/top", Handler::kOwnContainer, Body::kNone, "ps_args", false, "own containers"},
    {"GET", "/containers/{id}/stats", Handler::kOwnContainer, Body::kNone, "stream one-shot", false, "own containers"},
    {"POST", "/containers/{id}/start", Handler::kOwnContainerMount, Body::kNone, "detachKeys", false,
     "own containers, their bind sources judged again; a body (a HostConfig before 1.24) is refused"},
    {"POST", "/containers/{id}/stop", Handler::kOwnContainer, Body::kNone, "t signal", false, "own containers"},
    {"POST", "/containers/{id}/restart", Handler::kOwnContainerMount, Body::kNone, "t signal", false,
     "own containers, their bind sources judged again"},
    {"POST", "/containers/{id}/kill", Handler::kOwnContainer, Body::kNone, "signal", false, "own containers"},
    {"POST", "/containers/{id}/pause", Handler::kOwnContainer, Body::kNone, "", false, "own containers"},
    {"POST", "/containers/{id}/unpause", Handler::kOwnContainer, Body::kNone, "", false, "own containers"},
    {"POST", "/containers/{id}/wait", Handler::kOwnContainer, Body::kNone, "condition", false, "own containers"},
    {"POST", "/containers/{id}/rename", Handler::kRename, Body::kNone, "name", false,
     "own containers, to the project's own names (compose v2 recreates under a temporary name)"},
    {"POST", "/containers/{id}/resize", Handler::kOwnContainer, Body::kNone, "h w", false, "own containers"},
    {"POST", "/containers/{id}/attach", Handler::kOwnContainer, Body::kNone,
     "stream stdin stdout stderr logs detachKeys", true, "own containers: a raw stream"},
    {"DELETE", "/containers/{id}", Handler::kOwnContainer, Body::kNone, "v force link", false,
     "own containers (link=true, which removes a link by name, is refused; docker-py sends link=false)"},
    {"HEAD", "/containers/{id}/archive", Handler::kOwnContainerMount, Body::kNone, "path", false,
     "own containers (cp), their bind sources judged again"},
    {"GET", "/containers/{id}/archive", Handler::kOwnContainerMount, Body::kNone, "path", false,
     "own containers (cp), their bind sources judged again"},
    {"PUT", "/containers/{id}/archive", Handler::kOwnContainerMount, Body::kStream,
     "path noOverwriteDirNonDir copyUIDGID", false,
     "own containers (cp, compose's configs): files into the container only"},
    {"POST", "/containers/{id}/exec", Handler::kExecCreate, Body::kJson, "", false, "own containers, never privileged"},
    // Execs.
    {"POST", "/exec/{id}/start", Handler::kOwnExec, Body::kJson, "", true, "execs in own containers: a raw stream"},
    {"POST", "/exec/{id}/resize", Handler::kOwnExec, Body::kNone, "h w", false, "execs in own containers"},
    {"GET", "/exec/{id}/json", Handler::kOwnExec, Body::kNone, "", false, "execs in own containers"},
    // Networks.
    {"GET", "/networks", Handler::kNetworkList, Body::kNone, "filters", false,
     "own networks and the external ones pgo.toml allows"},
    {"POST", "/networks/create", Handler::kNetworkCreate, Body::kJson, "", false,
     "the project's names and label, a local bridge"},
    {"GET", "/networks/{id}", Handler::kNetworkInspect, Body::kNone, "verbose scope", false,
     "own networks and the external ones pgo.toml allows"},
    {"DELETE", "/networks/{id}", Handler::kOwnNetwork, Body::kNone, "", false, "own networks"},
    {"POST", "/networks/{id}/connect", Handler::kNetworkConnect, Body::kJson, "", false,
     "own containers to networks they may join"},
    {"POST", "/networks/{id}/disconnect", Handler::kNetworkConnect, Body::kJson, "", false,
     "own containers from networks they may join"},
    // Volumes.
    {"GET", "/volumes", Handler::kScopedList, Body::kNone, "filters", false, "lists only the project's volumes"},
    {"POST", "/volumes/create", Handler::kVolumeCreate, Body::kJson, "", false,
     "the project's names and label, the local driver, no mount options"},
    {"GET", "/volumes/{name}", Handler::kOwnVolume, Body::kNone, "", false, "own volumes"},
    {"DELETE", "/volumes/{name}", Handler::kOwnVolume, Body::kNone, "force", false, "own volumes"},
    // Images: pulled ones are shared content, read by anyone; the ones another project built or
    // tagged under its names are that project's (404, and not run here); written only under the
    // project's own names.
    {"GET", "/images/json", Handler::kImageList, Body::kNone, "all filters shared-size digests", false,
     "image metadata (compose images)"},
    {"GET", "/images/{name*}/json", Handler::kImage, Body::kNone, "", false,
     "image metadata, but not of the images another project built"},
    {"GET", "/distribution/{name*}/json", Handler::kPlain, Body::kNone, "", false, "registry metadata before a pull"},
    {"POST", "/images/create", Handler::kPull, Body::kNone, "*", false, "pulls, with the service's own credentials"},
    {"POST", "/images/{name*}/tag", Handler::kTag, Body::kNone, "*", false, "tags only under the project's own names"},
    {"POST", "/build", Handler::kBuild, Body::kStream, "*", false,
     "the classic builder; no host network, no remote context, tags only under the project's own names"},
    // Events: compose v2 follows them for logs -f and up.
    {"GET", "/events", Handler::kScopedList, Body::kNone, "since until filters", false,
     "only the project's containers' events"},
};

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

// Segment-wise match: a "{name*}" takes as many segments as leave the fixed tail.
bool matches(std::string_view pattern, const std::vector<std::string_view>& path, std::vector<std::string>& params) {
  const auto wanted = split(pattern.substr(1), '/');
  params.clear();
  std::size_t at = 0;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    const std::string_view segment = wanted[i];
    if (segment == "{name*}") {
      const std::size_t tail = wanted.size() - i - 1;
      if (path.size() < at + 1 + tail) return false;
      const std::size_t take = path.size() - at - tail;
      std::string joined;
      for (std::size_t k = 0; k < take; ++k) {
        if (path[at + k].empty()) return false;
        joined += (k ? "/" : "") + std::string(path[at + k]);
      }
      params.push_back(std::move(joined));
      at += take;
      continue;
    }
    if (at >= path.size()) return false;
    if (segment.front() == '{') {
      if (path[at].empty()) return false;
      params.emplace_back(path[at]);
    } else if (segment != path[at]) {
      return false;
    }
    ++at;
  }
  return at == path.size();
}

}  // namespace

const std::vector<Route>& gate_routes() { return kRoutes; }

Expected<RouteMatch, Refusal> match_route(std::string_view method, std::string_view path) {
  RouteMatch match;
  std::string_view rest = path;
  if (rest.size() > 2 && rest.substr(0, 2) == "/v" && rest[2] >= '0' && rest[2] <= '9') {
    const std::size_t end = rest.find('/', 1);
    const std::string_view version = rest.substr(2, end == std::string_view::npos ? rest.size() - 2 : end - 2);
    int major = 0, minor = 0;
    const std::size_t dot = version.find('.');
    const auto number = [](std::string_view digits, int& out) {
      if (digits.empty() || digits.size() > 3) return false;
      auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
      return ec == std::errc() && ptr == digits.data() + digits.size();
    };
    if (dot == std::string_view::npos || !number(version.substr(0, dot), major) ||
        !number(version.substr(dot + 1), minor))
      return Unexpected{Refusal{404, fmt::format("{}: not a Docker API version", path)}};
    if (major != 1 || minor < kMinimumApiMinor)
      return Unexpected{Refusal{400, fmt::format("API version {}.{} is refused: the docker gate accepts 1.{} and later "
                                                 "(before it, a container's start could carry host settings)",
                                                 major, minor, kMinimumApiMinor)}};
    match.version = std::string(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
  }
  if (rest.empty() || rest.front() != '/') return Unexpected{Refusal{400, fmt::format("{}: not a path", path)}};
  const auto segments = split(rest.substr(1), '/');
  for (const Route& route : kRoutes) {
    if (route.method != method) continue;
    if (matches(route.pattern, segments, match.params)) {
      match.route = &route;
      return match;
    }
  }
  return Unexpected{
      Refusal{403, fmt::format("{} {} is not in the docker gate's table of allowed calls", method, rest)}};
}

}  // namespace pgod::dockergate
