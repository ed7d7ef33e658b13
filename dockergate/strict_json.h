// Request bodies as JSON, parsed strictly before anything judges them: dockerd decodes with Go's
// encoding/json, which takes the last of duplicate keys and matches field names without regard
// to case, so a body with `"Privileged": false, "privileged": true` would be judged as one thing
// and run as another. Such bodies are refused, not interpreted.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "expected.h"

namespace pgod::dockergate {

using Json = nlohmann::json;

// Parses `text` as one JSON value (RFC 8259, UTF-8, nothing after it) and refuses: a key that
// appears twice in one object, two keys that differ only in ASCII case, nesting deeper than
// `max_depth`, and anything that is not JSON. The error says what and where (the key's path).
Expected<Json, std::string> parse_strict_json(std::string_view text, int max_depth = 32);

}  // namespace pgod::dockergate
