// A service name ends up in paths (<dir>/<name>), socket names (workers/<name>.sock), compose
// project names and log prefixes, so one rule decides what is safe everywhere.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pgod {

// Leaves room for "/run/pgod/workers/" + name + ".sock" inside sun_path's 108 bytes.
inline constexpr std::size_t kMaxServiceNameLength = 64;

// [a-z0-9][a-z0-9_.-]*, at most kMaxServiceNameLength, and no "..".
bool is_valid_service_name(std::string_view name);

// The docker compose project name for a service. Compose v2 refuses dots and compose v1 drops
// them, so they become '_'; the config check refuses two services whose project names collide
// (one service could otherwise bring down the other's containers).
std::string compose_project_name(std::string_view service_name);

// Whether `name` (a volume, network, container or built image name) belongs to `project`:
// "<project>_<rest>" or "<project>-<rest>", the forms compose itself gives them (v1 joins with
// '_', v2 containers and images with '-'). The planned docker gate
// will apply the same rule.
bool is_project_owned_name(std::string_view project, std::string_view name);

// Whether two projects could ever name the same object: equal, or one is the other followed by
// '_' or '-' ("app" with volume "db_data" and "app_db" with volume "data" both make
// "app_db_data"). The config check refuses such pairs of services.
bool project_names_may_collide(std::string_view a, std::string_view b);

}  // namespace pgod
