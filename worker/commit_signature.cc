// GCC 12 at -O2 reports maybe-uninitialized inside KJ 0.9's ExceptionOr<T> for promises of
// std::string-holding types: a known false positive of that pairing, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "commit_signature.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "child_process.h"
#include "safe_files.h"

namespace pgod::worker {
namespace {

SignatureVerdict refused(std::string why) { return {std::move(why), ""}; }

constexpr auto kVerifyTimeout = std::chrono::seconds(20);
constexpr std::size_t kVerifyOutputLimit = 64 << 10;
constexpr const char* kSshSignatureArmour = "-----BEGIN SSH SIGNATURE-----";

std::string last_line(const std::string& text) {
  std::string trimmed = text;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r')) trimmed.pop_back();
  const auto newline = trimmed.rfind('\n');
  std::string line = newline == std::string::npos ? trimmed : trimmed.substr(newline + 1);
  for (auto& c : line)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return line.substr(0, 300);
}

ChildSpec keygen_spec(const SignatureCheck& check, std::vector<std::string> args) {
  ChildSpec spec;
  spec.argv = {"ssh-keygen"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + check.home, "LC_ALL=C"};
  spec.cwd = check.work_dir;
  spec.timeout = kVerifyTimeout;
  spec.output_limit = kVerifyOutputLimit;
  return spec;
}

}  // namespace

kj::Promise<SignatureVerdict> verify_commit_signature(kj::AsyncIoContext& io, const SignatureCheck& check,
                                                      std::string short_commit, std::string signature,
                                                      std::string signed_data) {
  if (signature.empty())
    return refused(
        fmt::format("commit {} is not signed, and this service deploys only commits signed by one of "
                    "its signers (pgo.toml): sign it (git config gpg.format ssh; git commit -S)",
                    short_commit));
  if (!signature.starts_with(kSshSignatureArmour))
    return refused(
        fmt::format("commit {} carries a GPG or X.509 signature: this service checks SSH signatures "
                    "against its signers only",
                    short_commit));
  if (mkdir(check.work_dir.c_str(), 0700) != 0 && errno != EEXIST)
    return refused(fmt::format("cannot create {} to check the signature of {}", check.work_dir, short_commit));
  // Files of this check alone: two checks may overlap (the key refresh and the cycle).
  static unsigned serial = 0;
  const std::string allowed_file = fmt::format("allowed_signers.{}", ++serial);
  const std::string signature_file = fmt::format("commit.sig.{}", serial);
  std::string allowed;
  for (const auto& line : check.signers) allowed += line + "\n";
  if (auto written = replace_file(check.work_dir, allowed_file, allowed, 0600); !written)
    return refused("cannot write the allowed signers: " + written.error());
  if (auto written = replace_file(check.work_dir, signature_file, signature, 0600); !written)
    return refused("cannot write the signature: " + written.error());
  auto remove_files = kj::defer([dir = check.work_dir, allowed_file, signature_file]() {
    unlink((dir + "/" + allowed_file).c_str());
    unlink((dir + "/" + signature_file).c_str());
  });

  auto& provider = *io.lowLevelProvider;
  auto& events = io.unixEventPort;
  auto& timer = io.provider->getTimer();
  // Who signed, by key: the principal -Y verify then checks the signature for.
  auto find = keygen_spec(check, {"-Y", "find-principals", "-f", allowed_file, "-s", signature_file});
  return run_collect(provider, events, timer, find, kVerifyOutputLimit)
      .then([&provider, &events, &timer, check, short_commit, allowed_file, signature_file,
             signed_data = std::move(signed_data)](CollectedOutput found) mutable -> kj::Promise<SignatureVerdict> {
        if (found.exit.code != 0 || found.out.empty())
          return refused(fmt::format("commit {} is signed by a key that is not one of this service's signers{}",
                                     short_commit, found.err.empty() ? "" : " (" + last_line(found.err) + ")"));
        // The first principal of the first matching line ("a@x,b@y" names two).
        std::string principal = found.out.substr(0, found.out.find('\n'));
        principal = principal.substr(0, principal.find(','));
        auto verify = keygen_spec(
            check, {"-Y", "verify", "-f", allowed_file, "-I", principal, "-n", "git", "-s", signature_file});
        verify.stdin_text = std::move(signed_data);
        return run_collect(provider, events, timer, verify, kVerifyOutputLimit)
            .then([short_commit, principal](CollectedOutput verified) -> SignatureVerdict {
              if (verified.exit.code != 0)
                return {fmt::format("the signature of commit {} by {} does not verify: {}", short_commit, principal,
                                    last_line(verified.err.empty() ? verified.out : verified.err)),
                        ""};
              return {std::nullopt, principal};
            });
      })
      .attach(kj::mv(remove_files));
}

}  // namespace pgod::worker
