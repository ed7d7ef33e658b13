// Push hook deliveries (gateway/hook_request): the body of a correctly signed delivery is
// attacker-chosen bytes once the secret leaks, and the headers always are. Never a crash, never
// a push without the tracked branch's ref, never a push with a wrong signature.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "hook_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view secret = "fuzz-hook-secret-0123456789";
  const unsigned mode = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  // "event\nbody": the event header from the input, the body after the first newline.
  const auto newline = rest.find('\n');
  const std::string event(rest.substr(0, newline == std::string_view::npos ? 0 : std::min<std::size_t>(newline, 64)));
  const std::string_view body = newline == std::string_view::npos ? rest : rest.substr(newline + 1);

  pgod::gateway::HookHeaders headers;
  const bool signed_right = (mode & 1) != 0;
  if ((mode & 6) == 0) {
    headers.github_event = event;
    headers.hub_signature_256 = "sha256=" + pgod::gateway::hmac_sha256_hex(signed_right ? secret : "wrong", body);
  } else if ((mode & 6) == 2) {
    headers.gitea_event = event;
    headers.gitea_signature = pgod::gateway::hmac_sha256_hex(signed_right ? secret : "wrong", body);
  } else {
    headers.gitlab_event = event;
    headers.gitlab_token = signed_right ? std::string(secret) : std::string(rest.substr(0, 40));
    headers.forwarded_proto = (mode & 8) ? "https" : "http";
  }
  const auto judged = pgod::gateway::judge_hook(headers, body, secret, "main", (mode & 16) != 0);
  const auto ref = pgod::gateway::push_ref(body);
  if (judged.verdict == pgod::gateway::HookVerdict::kPush) {
    FUZZ_CHECK(ref && *ref == "refs/heads/main", "a push without the tracked branch's ref");
    FUZZ_CHECK(signed_right || headers.gitlab_token == secret, "a push with a wrong signature");
  }
  for (unsigned char c : judged.detail) FUZZ_CHECK(c >= 0x20 && c != 0x7f, "a control character in the detail");
  FUZZ_CHECK(judged.delivery.size() <= 80, "a delivery id over 80 characters");
  return 0;
}
