// Authorized-key parsing: a repository's ssh/*.pub as the worker reads it
// (worker/authorized_keys), then each accepted key as the gateway indexes it with libssh
// (gateway/key_index). Bounded, printable, and never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "authorized_keys.h"
#include "fuzz_check.h"
#include "key_index.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto scan = pgod::worker::parse_public_keys(text, "ssh/fuzz.pub");
  FUZZ_CHECK(scan.keys.size() <= pgod::worker::kMaxKeys, "more keys than the limit");
  std::vector<pgod::gateway::ListedKey> listed;
  for (const auto& key : scan.keys) {
    FUZZ_CHECK(!key.type.empty() && !key.base64.empty(), "a key without a type or blob");
    FUZZ_CHECK(key.comment.size() <= 256, "a comment over 256 bytes");
    for (unsigned char c : key.comment) FUZZ_CHECK(c >= 0x20 && c != 0x7f, "a comment with a control character");
    FUZZ_CHECK(key.file == "ssh/fuzz.pub", "a key from another file");
    listed.push_back({key.type, key.base64, key.comment, key.file});
  }
  pgod::gateway::KeyIndex index;
  const auto skipped = index.set_service_keys("web", listed);
  FUZZ_CHECK(skipped <= listed.size(), "more keys skipped than given");
  FUZZ_CHECK(index.key_count() + skipped <= listed.size(), "more keys indexed than given");
  return 0;
}
