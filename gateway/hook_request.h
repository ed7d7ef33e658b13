// Push hooks, judged: which forge sent a delivery, whether its signature or token matches the
// service's secret, what it is (a push, a ping, something else) and which branch it moved.
// Pure functions and small bounded tables, so the unit tests and the fuzzer can drive them; the
// HTTP side is hooks.cc. Every byte here comes from the network: the body is not parsed before
// its signature verifies.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace pgod::gateway {

// A delivery's body may not be larger: a push event lists at most 20 commits (GitHub) or a few
// hundred (GitLab), far below this.
inline constexpr std::size_t kMaxHookBody = 1 << 20;

// The headers that matter, as received (absent: empty). The caller reads them.
struct HookHeaders {
  std::string github_event, gitea_event, forgejo_event, gitlab_event;
  std::string github_delivery, gitea_delivery, forgejo_delivery, gitlab_delivery;
  std::string hub_signature_256;  // "sha256=<hex>" (GitHub, Gitea 1.19+, Forgejo)
  std::string gitea_signature;    // "<hex>" (Gitea, Forgejo)
  std::string forgejo_signature;  // "<hex>" (Forgejo)
  std::string gitlab_token;       // the secret itself (GitLab)
  std::string forwarded_proto;    // X-Forwarded-Proto, set by a TLS proxy in front
};

enum class HookVerdict {
  kPush,          // a push to the tracked branch: trigger a pull
  kPing,          // the forge's test delivery: answer, trigger nothing
  kIgnored,       // another event, or a push to another branch: answer, trigger nothing
  kUnsigned,      // no signature or token header at all
  kBadSignature,  // a signature or token that does not match
  kNeedsTls,      // a GitLab token over plain HTTP (it is the secret itself)
  kMalformed,     // signed correctly, but not a push event the gateway can read
};

struct HookJudgement {
  HookVerdict verdict = HookVerdict::kUnsigned;
  std::string forge;     // github, gitea, forgejo, gitlab; empty when unknown
  std::string delivery;  // the forge's delivery id, when it gave a usable one
  std::string detail;    // why, for the answer and the log (never the secret or the body)
};

// Judges one delivery. `secret` is the service's hook_secret, `branch` the one it tracks,
// `peer_is_loopback` whether the connection came from this host (a TLS proxy in front).
HookJudgement judge_hook(const HookHeaders& headers, std::string_view body, std::string_view secret,
                         std::string_view branch, bool peer_is_loopback);

// HMAC-SHA256 of `body` under `secret`, as lowercase hex.
std::string hmac_sha256_hex(std::string_view secret, std::string_view body);

// Whether `received` (hex, either case) is the HMAC of `body`, compared in constant time.
bool signature_matches(std::string_view secret, std::string_view body, std::string_view received);

// The top-level "ref" of a JSON push payload ("refs/heads/main"), without building the
// document: nullopt when the body is not JSON, is nested deeper than a push payload is, or has
// no string "ref" at the top.
std::optional<std::string> push_ref(std::string_view body);

// Delivery ids seen lately, per service: a delivery redelivered (by the forge or a replay) is
// answered but not acted on again. Bounded: the oldest ids are forgotten first.
class RecentDeliveries {
 public:
  explicit RecentDeliveries(std::size_t capacity = 256) : capacity_(capacity) {}
  // True when `id` is new (and now remembered); an empty id is always new.
  bool remember(const std::string& service, const std::string& id);

 private:
  std::size_t capacity_;
  std::deque<std::string> order_;  // "service\nid", oldest first
  std::set<std::string, std::less<>> seen_;
};

// A token bucket per key: `burst` events at once, then one per `refill`. Keys are service names
// (bounded by the config), so the table stays small.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(unsigned burst, std::chrono::milliseconds refill) : burst_(burst), refill_(refill) {}
  // True when an event for `key` may happen now (and, with `spend`, counts it).
  bool allow(const std::string& key, Clock::time_point now = Clock::now(), bool spend = true);

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };
  unsigned burst_;
  std::chrono::milliseconds refill_;
  std::map<std::string, Bucket, std::less<>> buckets_;
};

// What a log line may say of a header's value: printable ASCII, at most `limit` characters.
std::string printable_prefix(std::string_view text, std::size_t limit = 64);

}  // namespace pgod::gateway
