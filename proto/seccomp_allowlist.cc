#include "seccomp_allowlist.h"

#include <fmt/format.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <vector>

#include <cerrno>
#include <memory>
#include <string_view>

#include "system_call.h"

namespace pgod::seccomp {
namespace {

struct ReleaseFilter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using FilterContext = std::unique_ptr<void, ReleaseFilter>;

// libseccomp returns -errno.
std::string failed_seccomp(std::string_view call, int rc) { return os_error(call, "", -rc); }

std::uint32_t action_of(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAllow:
      return SCMP_ACT_ALLOW;
    case Verdict::kEacces:
      return SCMP_ACT_ERRNO(EACCES);
    case Verdict::kEnosys:
      return SCMP_ACT_ERRNO(ENOSYS);
    case Verdict::kEnotty:
      return SCMP_ACT_ERRNO(ENOTTY);
    case Verdict::kEperm:
      return SCMP_ACT_ERRNO(EPERM);
  }
  return SCMP_ACT_KILL_PROCESS;
}

// The table mistake libseccomp would not report (see Rule).
Expected<Done, std::string> check_table(std::span<const Rule> rules) {
  for (const Rule& rule : rules) {
    if (rule.check_count != 0) continue;
    for (const Rule& other : rules) {
      if (&other != &rule && std::string_view(other.syscall) == rule.syscall)
        return Unexpected{fmt::format("the allowlist has an unconditional rule for {} among others", rule.syscall)};
    }
  }
  return Done{};
}

Expected<Done, std::string> add_rules(scmp_filter_ctx ctx, std::span<const Rule> rules) {
  const auto own_pid = static_cast<std::uint64_t>(getpid());  // fixed from here on: no fork
  for (const Rule& rule : rules) {
    const int number = seccomp_syscall_resolve_name(rule.syscall);
    if (number == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: stays forbidden
    std::array<scmp_arg_cmp, 2> comparisons{};
    for (unsigned i = 0; i < rule.check_count; ++i) {
      const Check& check = rule.checks[i];
      comparisons[i] = scmp_arg_cmp{check.arg, check.op, check.own_pid ? own_pid : check.datum, check.value};
    }
    if (const int rc =
            seccomp_rule_add_array(ctx, action_of(rule.verdict), number, rule.check_count, comparisons.data());
        rc != 0)
      return Unexpected{failed_seccomp(fmt::format("seccomp_rule_add({})", rule.syscall), rc)};
  }
  return Done{};
}

}  // namespace

Expected<Done, std::string> install_allowlist(std::span<const Rule> own_rules) {
  std::vector<Rule> rules(own_rules.begin(), own_rules.end());
  rules.insert(rules.end(), std::begin(kServerCommonRules), std::end(kServerCommonRules));
  if (auto table = check_table(rules); !table) return table;
  // Required for an unprivileged process to install a filter, and keeps exec (were it ever
  // possible) from granting privileges. Its own step, so no libseccomp side effect is relied on.
  if (auto set = check_call(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)"); !set) return set;
  const FilterContext ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
  if (!ctx) return Unexpected{std::string("seccomp_init(SCMP_ACT_KILL_PROCESS) failed")};
  // Other ABIs on x86_64 (i386 through int 0x80, x32) number their syscalls differently: none
  // is allowed, and the whole process dies (libseccomp's default would kill only the thread).
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0)
    return Unexpected{failed_seccomp("seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH)", rc)};
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc != 0)
    return Unexpected{failed_seccomp("seccomp_attr_set(SCMP_FLTATR_CTL_NNP)", rc)};
  // Every thread of the process, not only the caller's: libraries may have started threads.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1); rc != 0)
    return Unexpected{failed_seccomp("seccomp_attr_set(SCMP_FLTATR_CTL_TSYNC)", rc)};
  if (auto added = add_rules(ctx.get(), rules); !added) return added;
  if (const int rc = seccomp_load(ctx.get()); rc != 0) return Unexpected{failed_seccomp("seccomp_load", rc)};
  return Done{};
}

}  // namespace pgod::seccomp
