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

}  // namespace pgod
