#include "hook_request.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

namespace pgod::gateway {
namespace {

using Digest = std::array<unsigned char, 32>;

// A push payload is an object of objects and arrays a few levels deep; a body nested past this
// is not one (and a parser need not follow it down).
constexpr std::size_t kMaxJsonDepth = 32;

Digest hmac_sha256(std::string_view secret, std::string_view body) {
  Digest digest{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest.data(), &length);
  return digest;
}

std::optional<Digest> from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    unsigned value = 0;
    for (char c : hex.substr(2 * i, 2)) {
      value <<= 4;
      if (c >= '0' && c <= '9')
        value |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        value |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        value |= static_cast<unsigned>(c - 'A' + 10);
      else
        return std::nullopt;
    }
    out[i] = static_cast<unsigned char>(value);
  }
  return out;
}

// Equal strings, in time that depends on neither's content or length: both are hashed first.
bool same_secret(std::string_view received, std::string_view secret) {
  const auto a = hmac_sha256("pgod-token-compare", received);
  const auto b = hmac_sha256("pgod-token-compare", secret);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// A delivery id worth remembering and logging: a UUID or a forge's decimal id.
std::string usable_delivery(std::string_view id) {
  if (id.empty() || id.size() > 80) return "";
  const bool plain = std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
  return plain ? std::string(id) : "";
}

// Reads only the top-level "ref": every other value is skipped as it streams past.
class RefFinder final : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::optional<std::string> ref;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t& text) override {
    if (depth_ == 1 && top_key_ == "ref" && !ref) ref = text;
    return value();
  }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return enter(true); }
  bool end_object() override { return leave(); }
  bool start_array(std::size_t) override { return enter(false); }
  bool end_array() override { return leave(); }
  bool key(string_t& text) override {
    if (depth_ == 1) top_key_ = text;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

  bool top_is_object() const { return top_is_object_; }

 private:
  bool value() {
    if (depth_ == 1) top_key_.clear();
    return depth_ > 0;  // a bare value at the top is not a payload
  }
  bool enter(bool object) {
    if (depth_ == 0) top_is_object_ = object;
    if (depth_ == 1) top_key_.clear();
    return ++depth_ <= kMaxJsonDepth;
  }
  bool leave() {
    --depth_;
    return true;
  }

  std::size_t depth_ = 0;
  std::string top_key_;
  bool top_is_object_ = false;
};

HookJudgement judged(HookVerdict verdict, std::string forge, std::string delivery, std::string detail) {
  return {verdict, std::move(forge), std::move(delivery), std::move(detail)};
}

HookJudgement judge_gitlab(const HookHeaders& headers, std::string_view body, std::string_view secret,
                           std::string_view branch, bool peer_is_loopback) {
  const std::string delivery = usable_delivery(headers.gitlab_delivery);
  if (headers.gitlab_token.empty())
    return judged(HookVerdict::kUnsigned, "gitlab", delivery, "no X-Gitlab-Token header");
  // The token is the secret itself: over plain HTTP anyone on the path has it. Only a proxy on
  // this host that terminated TLS (and says so) may hand it on.
  if (!peer_is_loopback || headers.forwarded_proto != "https")
    return judged(HookVerdict::kNeedsTls, "gitlab", delivery,
                  "a GitLab token is accepted only over TLS, from a proxy on this host that sets "
                  "X-Forwarded-Proto: https");
  if (!same_secret(headers.gitlab_token, secret))
    return judged(HookVerdict::kBadSignature, "gitlab", delivery, "X-Gitlab-Token does not match hook_secret");
  if (headers.gitlab_event != "Push Hook")
    return judged(HookVerdict::kIgnored, "gitlab", delivery,
                  fmt::format("event \"{}\" is not a push", printable_prefix(headers.gitlab_event)));
  auto ref = push_ref(body);
  if (!ref) return judged(HookVerdict::kMalformed, "gitlab", delivery, "the body has no top-level \"ref\"");
  if (*ref != fmt::format("refs/heads/{}", branch))
    return judged(HookVerdict::kIgnored, "gitlab", delivery,
                  fmt::format("a push to {}, this service tracks {}", printable_prefix(*ref, 120), branch));
  return judged(HookVerdict::kPush, "gitlab", delivery, fmt::format("a push to {}", branch));
}

}  // namespace

std::string hmac_sha256_hex(std::string_view secret, std::string_view body) {
  std::string out;
  for (unsigned char byte : hmac_sha256(secret, body)) out += fmt::format("{:02x}", byte);
  return out;
}

bool signature_matches(std::string_view secret, std::string_view body, std::string_view received) {
  const auto wanted = hmac_sha256(secret, body);
  const auto given = from_hex(received);
  return given && CRYPTO_memcmp(wanted.data(), given->data(), wanted.size()) == 0;
}

std::optional<std::string> push_ref(std::string_view body) {
  RefFinder finder;
  const bool parsed = nlohmann::json::sax_parse(body.begin(), body.end(), &finder);
  if (!parsed || !finder.top_is_object()) return std::nullopt;
  return finder.ref;
}

HookJudgement judge_hook(const HookHeaders& headers, std::string_view body, std::string_view secret,
                         std::string_view branch, bool peer_is_loopback) {
  if (!headers.gitlab_token.empty() || !headers.gitlab_event.empty())
    return judge_gitlab(headers, body, secret, branch, peer_is_loopback);

  // GitHub, Gitea and Forgejo: an HMAC-SHA256 of the body. Gitea and Forgejo send it under
  // their own names too; the first present is the one checked.
  std::string forge = !headers.github_event.empty()    ? "github"
                      : !headers.forgejo_event.empty() ? "forgejo"
                      : !headers.gitea_event.empty()   ? "gitea"
                                                       : "";
  const std::string& event = !headers.github_event.empty()    ? headers.github_event
                             : !headers.forgejo_event.empty() ? headers.forgejo_event
                                                              : headers.gitea_event;
  const std::string delivery = usable_delivery(!headers.github_delivery.empty()    ? headers.github_delivery
                                               : !headers.forgejo_delivery.empty() ? headers.forgejo_delivery
                                                                                   : headers.gitea_delivery);
  std::string_view signature;
  if (!headers.hub_signature_256.empty()) {
    signature = headers.hub_signature_256;
    if (!signature.starts_with("sha256="))
      return judged(HookVerdict::kBadSignature, forge, delivery, "X-Hub-Signature-256 does not start with sha256=");
    signature.remove_prefix(7);
  } else if (!headers.gitea_signature.empty()) {
    signature = headers.gitea_signature;
  } else if (!headers.forgejo_signature.empty()) {
    signature = headers.forgejo_signature;
  } else {
    return judged(HookVerdict::kUnsigned, forge, delivery,
                  "no X-Hub-Signature-256 (or X-Gitea-Signature, X-Forgejo-Signature, X-Gitlab-Token) header: set "
                  "the hook's secret to the service's hook_secret");
  }
  if (!signature_matches(secret, body, signature))
    return judged(HookVerdict::kBadSignature, forge, delivery, "the signature does not match hook_secret");
  if (event == "ping") return judged(HookVerdict::kPing, forge, delivery, "ping");
  if (event != "push")
    return judged(HookVerdict::kIgnored, forge, delivery,
                  event.empty() ? std::string("no event header")
                                : fmt::format("event \"{}\" is not a push", printable_prefix(event)));
  auto ref = push_ref(body);
  if (!ref) return judged(HookVerdict::kMalformed, forge, delivery, "the body has no top-level \"ref\"");
  if (*ref != fmt::format("refs/heads/{}", branch))
    return judged(HookVerdict::kIgnored, forge, delivery,
                  fmt::format("a push to {}, this service tracks {}", printable_prefix(*ref, 120), branch));
  return judged(HookVerdict::kPush, forge, delivery, fmt::format("a push to {}", branch));
}

bool RecentDeliveries::remember(const std::string& service, const std::string& id) {
  if (id.empty()) return true;
  std::string entry = service + "\n" + id;
  if (seen_.contains(entry)) return false;
  seen_.insert(entry);
  order_.push_back(std::move(entry));
  while (order_.size() > capacity_) {
    seen_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}

bool RateLimiter::allow(const std::string& key, Clock::time_point now, bool spend) {
  auto [it, added] = buckets_.try_emplace(key, Bucket{static_cast<double>(burst_), now});
  Bucket& bucket = it->second;
  if (!added && now > bucket.updated) {
    const double earned = std::chrono::duration<double>(now - bucket.updated) / refill_;
    bucket.tokens = std::min(static_cast<double>(burst_), bucket.tokens + earned);
    bucket.updated = now;
  }
  if (bucket.tokens < 1.0) return false;
  if (spend) bucket.tokens -= 1.0;
  return true;
}

std::string printable_prefix(std::string_view text, std::size_t limit) {
  std::string out;
  for (char c : text.substr(0, limit)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > limit) out += "...";
  return out;
}

}  // namespace pgod::gateway
