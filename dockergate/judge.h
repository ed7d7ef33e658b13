// The docker gate's judges: one function per request body (or query) that can change what runs.
// Each takes what the client sent, judges every field against the same rules as the compose
// policy (worker/compose_policy.cc), and returns what goes to dockerd, re-emitted from the judged
// values only: a field no rule knows is refused by name, never passed on. A refusal names the
// field, the value and the rule.
//
// Field names are matched exactly as docker spells them: Go would also accept "privileged" for
// "Privileged", so any other spelling is an unknown field, refused (parse_strict_json has already
// refused two spellings of one key).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "expected.h"
#include "gate_service.h"
#include "strict_json.h"

namespace pgod::dockergate {

// What the judges need to know about objects on the daemon; the gate answers from dockerd, tests
// from a table. Names or IDs as the client wrote them.
class Owner {
 public:
  virtual ~Owner() = default;
  virtual bool owns_container(const std::string& id_or_name) = 0;  // labelled with the project
  virtual bool owns_volume(const std::string& name) = 0;           // labelled with the project
  // A network the project may join: its own (labelled) or one of pgo.toml's `networks`.
  virtual bool may_join_network(const std::string& id_or_name) = 0;
};

// How a bind source is resolved: component by component from `/`, as dockerd's mount would,
// returning the resolved absolute path, or nullopt when it cannot be resolved (a loop, a
// component that is not a directory). Components that do not exist yet are appended as written
// (dockerd creates them). The gate uses resolve_bind_source; tests may stub it.
using ResolvePath = std::function<std::optional<std::string>(const std::string& path)>;
std::optional<std::string> resolve_bind_source(const std::string& path);

struct JudgeContext {
  const GateService& service;
  Owner& owner;
  ResolvePath resolve = resolve_bind_source;
};

// POST /containers/create?name=…: the body (Config, HostConfig, NetworkingConfig) and the name.
// The name must be the project's own (is_project_owned_name); the label
// com.docker.compose.project must be the project. Binds and Mounts are re-emitted with their
// resolved source.
Expected<Json, Refusal> judge_container_create(JudgeContext& context, const Json& body, const std::string& name);

// A container name the project may give: its own (is_project_owned_name), or compose v2's while
// it recreates one, "<12 hex digits>_<its own name>".
bool is_own_container_name(const std::string& project, const std::string& name);

// POST /containers/{id}/exec: never privileged; the rest is the container's own business.
Expected<Json, Refusal> judge_exec_create(JudgeContext& context, const Json& body);

// POST /networks/create: the project's own name and label, a local driver, judged options.
Expected<Json, Refusal> judge_network_create(JudgeContext& context, const Json& body);

// POST /networks/{id}/connect and /disconnect: the container must be the project's own.
// `network` is the {id} as the client wrote it: on a network whose name is not the project's
// own (or when it is not given), the endpoint is judged as on a shared one (no fixed addresses,
// only the project's own aliases).
Expected<Json, Refusal> judge_network_connect(JudgeContext& context, const Json& body, const std::string& network = {});

// POST /volumes/create: the project's own name and label, the local driver, no driver options
// that mount anything (the same rule as compose_policy's volume driver_opts).
Expected<Json, Refusal> judge_volume_create(JudgeContext& context, const Json& body);

// Before dockerd mounts a container's binds again (start, restart, a copy in or out of a
// stopped container): each bind source in `inspected` (its inspect JSON, "Mounts") must still
// resolve to itself inside the service's directories. The service's user owns them and could
// have put a symlink in a source's path since the create was judged. (dockerd's own restarts,
// by restart policy or at its start, do not come through the gate: SECURITY.md says so.)
Expected<Done, Refusal> judge_bind_sources_unmoved(JudgeContext& context, const Json& inspected);

// Whether an image, by its tags ("repo:tag" as inspect and list give them), is another served
// project's: at least one tag is named for another project and none for this one. Pulled images
// (no project's name) are nobody's.
bool is_other_projects_image(const GateService& service, const std::vector<std::string>& repo_tags);

using Query = std::vector<std::pair<std::string, std::string>>;

// POST /build: the query parameters judged (no remote context, no host network, the classic
// builder only, tags only under the project's own names, ulimits like compose's); returns the
// query to send on.
Expected<Query, Refusal> judge_build_query(JudgeContext& context, const Query& query);

// POST /images/{name}/tag?repo=…&tag=…: only to the project's own names.
Expected<Query, Refusal> judge_tag_query(JudgeContext& context, const Query& query);

// POST /images/create?fromImage=…&tag=…: a pull (fromSrc, an import, is refused).
Expected<Query, Refusal> judge_pull_query(JudgeContext& context, const Query& query);

// A list or events query: the client's `filters` (JSON) with the project's label forced in,
// so dockerd answers only with the project's objects. Other parameters are copied when known.
Expected<Query, Refusal> scope_list_query(JudgeContext& context, const Query& query);

}  // namespace pgod::dockergate
