// The compose policy (worker/compose_policy) on normalised YAML, which a repository's owner
// controls: any bytes are judged or refused as unreadable, never a crash; the paths found for
// change detection stay inside the checkout. No filesystem is touched (paths resolve to
// themselves).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "compose_policy.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);
  pgod::worker::PolicyContext context;
  context.service = "web";
  context.checkout_dir = "/var/lib/pgo/web";
  context.data_dir = size % 2 == 1 ? "/var/lib/pgo-data/web" : "";
  context.allowed_networks = {"reverseproxy"};
  context.resolve = [](const std::string& path) { return path; };
  auto verdict = pgod::worker::check_compose_policy(yaml, context);
  if (verdict) {
    for (const auto& violation : *verdict) {
      FUZZ_CHECK(!violation.reason.empty(), "a violation without a reason");
      FUZZ_CHECK(!violation.to_string().empty(), "an empty violation message");
    }
  } else {
    FUZZ_CHECK(!verdict.error().empty(), "an unreadable file without a reason");
  }
  pgod::worker::compose_reload_enabled(yaml);
  for (const auto& path : pgod::worker::referenced_checkout_paths(yaml, context.checkout_dir)) {
    FUZZ_CHECK(!path.empty() && path.front() != '/', "a referenced path is not relative");
    FUZZ_CHECK(path != ".." && path.rfind("../", 0) != 0 && path.find("/../") == std::string::npos,
               "a referenced path leaves the checkout");
  }
  return 0;
}
