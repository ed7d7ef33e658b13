// Which compose program a worker runs, as pgod --compose and pgod-worker --compose name it.
#pragma once

#include <optional>
#include <string_view>

#include "settings.capnp.h"

namespace pgod {

using ComposeProgram = rpc::ServiceSettings::ComposeProgram;

// "auto" (the plugin when `docker compose version` answers, else docker-compose), "plugin"
// (docker compose) or "standalone" (docker-compose); nothing else.
std::optional<ComposeProgram> parse_compose_program(std::string_view name);

inline constexpr const char* kComposeProgramChoices = "auto, plugin or standalone";

}  // namespace pgod
