#include "compose_program.h"

namespace pgod {

std::optional<ComposeProgram> parse_compose_program(std::string_view name) {
  if (name == "auto") return ComposeProgram::AUTO;
  if (name == "plugin") return ComposeProgram::PLUGIN;
  if (name == "standalone") return ComposeProgram::STANDALONE;
  return std::nullopt;
}

}  // namespace pgod
