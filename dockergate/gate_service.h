// What the docker gate knows about one service: enough to judge its requests, nothing else
// (no secrets, no repository content).
#pragma once

#include <string>
#include <vector>

namespace pgod::dockergate {

struct GateService {
  std::string name;     // the service's name in pgo.toml
  std::string project;  // its compose project name (compose_project_name)
  // Directories bind sources may be in (the checkout and the data directory), absolute, as
  // pgod made them. A bind source must resolve inside one of them.
  std::vector<std::string> bind_roots;
  std::vector<std::string> allowed_networks;  // pgo.toml `networks`: external networks it may join
  // The compose projects of the other services the gate serves: images named for them (what
  // they build) are theirs, and this service neither sees nor runs them.
  std::vector<std::string> other_projects;
};

// Why a request was refused: the HTTP status the client gets and a message that names the
// field, its value and the rule ("HostConfig.Privileged: true: privileged containers are
// refused").
struct Refusal {
  int status = 403;
  std::string reason;
};

}  // namespace pgod::dockergate
