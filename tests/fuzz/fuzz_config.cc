// pgo.toml parsing and validation (supervisor/config): any bytes give a config or errors,
// never a crash; an accepted config holds only valid, distinct service names; every error
// names the file and says something.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "config.h"
#include "fuzz_check.h"
#include "service_name.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  pgod::config::ValidationContext context;
  context.user_exists = [](const std::string& name) { return name == "root" || name == "web"; };
  context.datadir_set = size % 2 == 1;
  auto parsed = pgod::config::parse_config(text, "fuzz.toml", context);
  if (parsed) {
    std::set<std::string> names;
    for (const auto& service : parsed->services) {
      FUZZ_CHECK(pgod::is_valid_service_name(service.name), "an accepted service name is invalid");
      FUZZ_CHECK(names.insert(service.name).second, "two services share a name");
      FUZZ_CHECK(service.user == "root" || service.user == "web", "an accepted user does not exist");
    }
  } else {
    FUZZ_CHECK(!parsed.error().empty(), "a refusal without an error");
    for (const auto& error : parsed.error()) {
      FUZZ_CHECK(!error.message.empty(), "an error without a message");
      FUZZ_CHECK(error.to_string().rfind("fuzz.toml:", 0) == 0, "an error that does not name the file");
    }
  }
  return 0;
}
