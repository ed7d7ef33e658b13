#include "compose_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <deque>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "duration.h"
#include "service_name.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

// ---------------------------------------------------------------------------------------------
// Small string and YAML helpers

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool starts_with_ci(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && lowercase(text.substr(0, prefix.size())) == prefix;
}

bool is_scalar(const YAML::Node& node) { return node.IsDefined() && node.IsScalar(); }

bool is_absolute(std::string_view path) { return !path.empty() && path.front() == '/'; }

// A key whose value is null or an empty list/mapping asks docker for nothing.
bool asks_for_something(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return false;
  if (node.IsSequence() || node.IsMap()) return node.size() > 0;
  return true;
}

// The value as written, on one line, for messages.
std::string render(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "null";
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.good() ? std::string(out.c_str()) : std::string("<unprintable>");
}

// Whether a boolean-ish value is clearly false. Anything else (true, yes, 1, garbage) counts
// as true, so an unexpected spelling is refused rather than waved through.
bool is_clearly_false(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return true;
  if (!node.IsScalar()) return false;
  const std::string value = lowercase(node.Scalar());
  return value == "false" || value == "no" || value == "off" || value == "n" || value == "0";
}

// The value of `key` in a mapping, found by walking the entries so that a non-mapping never
// throws; undefined when absent.
YAML::Node get(const YAML::Node& map, std::string_view key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& entry : map) {
    if (entry.first.IsScalar() && entry.first.Scalar() == key) return entry.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string scalar_or_empty(const YAML::Node& node) { return is_scalar(node) ? node.Scalar() : std::string(); }

// ---------------------------------------------------------------------------------------------
// Paths

using Components = std::vector<std::string>;

Components split_path(std::string_view path) {
  Components parts;
  std::size_t begin = 0;
  while (begin <= path.size()) {
    const std::size_t end = std::min(path.find('/', begin), path.size());
    if (end > begin) parts.emplace_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  return parts;
}

std::string join_path(const Components& parts) {
  if (parts.empty()) return "/";
  std::string out;
  for (const auto& part : parts) out += "/" + part;
  return out;
}

// Absolute path components with "." dropped; nullopt for a relative path or one with "..",
// whose meaning depends on symlinks the lexical form cannot see.
std::optional<Components> absolute_components(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  Components parts;
  for (auto& part : split_path(path)) {
    if (part == "..") return std::nullopt;
    if (part != ".") parts.push_back(std::move(part));
  }
  return parts;
}

// Lexically cleaned absolute path components ("." dropped, ".." removes the one before), as Go's
// filepath.Join does for a Dockerfile beside its context; nullopt when relative or above "/".
std::optional<Components> cleaned_components(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  Components parts;
  for (auto& part : split_path(path)) {
    if (part == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
    } else if (part != ".") {
      parts.push_back(std::move(part));
    }
  }
  return parts;
}

// Equal to or below, component-wise (/srv/pgo/web2 is not inside /srv/pgo/web).
bool is_inside(const Components& path, const Components& base) {
  return path.size() >= base.size() && std::equal(base.begin(), base.end(), path.begin());
}

// Resolves like the kernel: each existing component's symlinks are followed (targets may use
// ".." relative to where the link sits); from the first component that does not exist, the
// rest is appended as written, since docker will create it so. "" when it cannot be judged.
std::string resolve_on_filesystem(const std::string& path) {
  if (path.empty() || path.front() != '/') return {};
  constexpr int kMaxSymlinks = 40;  // the kernel's limit (ELOOP)
  std::deque<std::string> pending;
  for (auto& part : split_path(path)) pending.push_back(std::move(part));
  Components resolved;
  int symlinks_followed = 0;
  while (!pending.empty()) {
    std::string part = std::move(pending.front());
    pending.pop_front();
    if (part == ".") continue;
    if (part == "..") {
      if (!resolved.empty()) resolved.pop_back();  // `resolved` holds no symlinks, so this is physical
      continue;
    }
    resolved.push_back(part);
    const std::string candidate = join_path(resolved);
    struct stat info {};
    if (lstat(candidate.c_str(), &info) != 0) {
      if (errno != ENOENT && errno != ENOTDIR) return {};  // unreadable: cannot be judged
      for (auto& rest : pending) {
        if (rest == "..") return {};
        if (rest != ".") resolved.push_back(std::move(rest));
      }
      return join_path(resolved);
    }
    if (!S_ISLNK(info.st_mode)) continue;
    if (++symlinks_followed > kMaxSymlinks) return {};
    std::string target(PATH_MAX, '\0');
    const ssize_t length = readlink(candidate.c_str(), target.data(), target.size());
    if (length <= 0 || static_cast<std::size_t>(length) >= target.size()) return {};
    target.resize(static_cast<std::size_t>(length));
    resolved.pop_back();
    if (target.front() == '/') resolved.clear();
    const Components target_parts = split_path(target);
    pending.insert(pending.begin(), target_parts.begin(), target_parts.end());
  }
  return join_path(resolved);
}

bool is_remote_build_context(std::string_view context) {
  for (std::string_view scheme : {"http://", "https://", "git://", "git@"}) {
    if (starts_with_ci(context, scheme)) return true;
  }
  return false;
}

// System directories no container may see, whatever the allowed directories are (data_dir "/"
// must not open them): the host's configuration and credentials, devices, kernel interfaces,
// the docker socket (/run) and docker's own state.
const std::vector<std::string_view> kForbiddenHostDirs = {"/etc",  "/root", "/dev",     "/proc",          "/sys",
                                                          "/boot", "/run",  "/var/run", "/var/lib/docker"};

// Under a forbidden directory, or above one (mounting "/" or "/var" would expose it too).
bool touches_forbidden_dir(const Components& path) {
  for (std::string_view dir : kForbiddenHostDirs) {
    const Components forbidden = split_path(dir);
    if (is_inside(path, forbidden) || is_inside(forbidden, path)) return true;
  }
  return false;
}

bool is_external_definition(const YAML::Node& definition) {
  const YAML::Node external = get(definition, "external");
  return external.IsMap() || !is_clearly_false(external);
}

// ---------------------------------------------------------------------------------------------
// The model being judged, and the violations found so far

class Judge {
 public:
  Judge(const YAML::Node& model, const PolicyContext& context)
      : context_(context), project_(compose_project_name(context.service)) {
    resolve_ = context.resolve ? context.resolve : resolve_on_filesystem;
    for (const auto& entry : get(model, "services")) service_names_.insert(entry.first.Scalar());
    for (const auto& entry : get(model, "volumes")) volume_keys_.insert(entry.first.Scalar());
    networks_ = get(model, "networks");
    for (const auto& entry : networks_) network_keys_.insert(entry.first.Scalar());
    if (auto checkout = resolved_base(context.checkout_dir)) {
      checkout_root_ = *checkout;
      checkout_bases_.push_back(*checkout);
      host_bases_.push_back(*checkout);
    }
    if (auto data = resolved_base(context.data_dir)) host_bases_.push_back(*data);
  }

  const PolicyContext& context() const { return context_; }
  const std::string& project() const { return project_; }
  bool is_service(const std::string& name) const { return service_names_.count(name) > 0; }
  bool is_declared_volume(const std::string& key) const { return volume_keys_.count(key) > 0; }
  bool is_declared_network(const std::string& key) const { return network_keys_.count(key) > 0; }
  bool is_allowed_network(const std::string& name) const {
    const auto& allowed = context_.allowed_networks;
    return std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  }
  // A network other projects are on: an external one (only allowed ones pass) or one named
  // like an allowed network.
  bool is_shared_network(const std::string& key) const {
    const YAML::Node definition = get(networks_, key);
    if (!definition.IsDefined()) return false;
    if (definition.IsMap() && is_external_definition(definition)) return true;
    const std::string name = scalar_or_empty(get(definition, "name"));
    return !name.empty() && is_allowed_network(name);
  }

  // Bind sources seen so far (already judged allowed), for the nesting rule.
  struct Bind {
    std::string service, key, written;
    Components resolved;
    bool read_only = false;
  };
  void add_bind(const std::string& service, const std::string& key, std::string written, const std::string& source,
                bool read_only) {
    if (auto resolved = absolute_components(resolve_(staged(source))))
      binds_.push_back({service, key, std::move(written), std::move(*resolved), read_only});
  }
  const std::vector<Bind>& binds() const { return binds_; }
  const Components& checkout_root() const { return checkout_root_; }

  void refuse(const std::string& service, std::string key, const YAML::Node& value, std::string reason) {
    refuse(service, std::move(key), render(value), std::move(reason));
  }
  void refuse(const std::string& service, std::string key, std::string value, std::string reason) {
    violations_.push_back({service, std::move(key), std::move(value), std::move(reason)});
  }
  std::vector<Violation> take_violations() { return std::move(violations_); }

  // Which directories a host path may be in.
  enum class Allowed { kCheckout, kCheckoutOrDataDir };
  // Which directory a relative path is relative to: compose's (the checkout) or none (a path
  // handed to the daemon, which would resolve it against its own working directory).
  enum class Relative { kToCheckout, kRefused };

  // A path in the live checkout, judged in the staging tree when that is what is judged.
  std::string staged(const std::string& path) const {
    const std::string& live = context_.live_checkout_dir;
    if (live.empty() || path.compare(0, live.size(), live) != 0) return path;
    if (path.size() != live.size() && path[live.size()] != '/') return path;
    return context_.checkout_dir + path.substr(live.size());
  }

  // Why a host path may not be used, or nullopt when it may.
  std::optional<std::string> why_host_path_refused(std::string path, Allowed allowed, Relative relative) const {
    if (path.empty()) return "an empty path cannot be judged";
    if (path.front() == '~') return "a home-relative path cannot be judged";
    if (path.front() != '/') {
      if (relative == Relative::kRefused) return "a relative path is resolved by the daemon, not by compose";
      path = context_.checkout_dir + "/" + path;
    }
    path = staged(path);
    const auto written = absolute_components(path);
    if (!written) return "a path with '..' cannot be judged";
    if (touches_forbidden_dir(*written))
      return "system directories (/etc, /root, /dev, /proc, /sys, /run, ...) are refused";
    const auto resolved = absolute_components(resolve_(path));
    if (!resolved) return "the path cannot be resolved";
    if (touches_forbidden_dir(*resolved)) {
      return "resolves (through symlinks) to " + join_path(*resolved) + ", a system directory";
    }
    const auto& bases = allowed == Allowed::kCheckout ? checkout_bases_ : host_bases_;
    if (std::none_of(bases.begin(), bases.end(), [&](const Components& base) { return is_inside(*resolved, base); })) {
      const std::string where = allowed == Allowed::kCheckout ? "the checkout" : "the checkout and the data directory";
      return "resolves to " + join_path(*resolved) + ", outside " + where;
    }
    return std::nullopt;
  }

 private:
  std::optional<Components> resolved_base(const std::string& dir) const {
    if (dir.empty()) return std::nullopt;
    return absolute_components(resolve_(dir));
  }

  const PolicyContext& context_;
  const std::string project_;
  std::function<std::string(const std::string&)> resolve_;
  std::set<std::string> service_names_, volume_keys_, network_keys_;
  std::vector<Components> checkout_bases_, host_bases_;
  Components checkout_root_;
  YAML::Node networks_;
  std::vector<Bind> binds_;
  std::vector<Violation> violations_;
};

// ---------------------------------------------------------------------------------------------
// The allowlist. Every key of the normalised model has a row: what is allowed, what is refused,
// what is judged, and why. A key without a row is refused by name, so a key a newer compose
// adds is refused until someone has reviewed it. `x-` extensions are ignored by compose and
// allowed everywhere.

constexpr char kCannotJudgeList[] = "cannot be judged: expected a list";
constexpr char kNotReviewed[] = "not reviewed by pgod's policy: refused until it is";

using Predicate = bool (*)(const Judge&, const YAML::Node&);
using Check = void (*)(Judge&, const std::string& service, const std::string& key, const YAML::Node&);

enum class Rule {
  kAllowed,      // any value: it reaches nothing outside the container
  kRefused,      // any value that asks for something
  kRefusedWhen,  // refused when `refused` says so
  kChecked,      // `check` judges the value and gives its own reasons
  kNested,       // a mapping whose keys are judged by `nested`
};

struct Row {
  std::string_view key;
  Rule rule;
  std::string_view why;  // the reason given when refused; otherwise why it is safe or how it is judged
  Predicate refused = nullptr;
  Check check = nullptr;
  const std::vector<Row>* nested = nullptr;
};

void judge_keys(Judge& judge, const std::string& service, const std::string& prefix, const YAML::Node& mapping,
                const std::vector<Row>& rows);

void apply_row(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value,
               const Row& row) {
  if (!asks_for_something(value)) return;
  switch (row.rule) {
    case Rule::kAllowed:
      return;
    case Rule::kRefused:
      return judge.refuse(service, key, value, std::string(row.why));
    case Rule::kRefusedWhen:
      if (row.refused(judge, value)) judge.refuse(service, key, value, std::string(row.why));
      return;
    case Rule::kChecked:
      return row.check(judge, service, key, value);
    case Rule::kNested:
      return judge_keys(judge, service, key, value, *row.nested);
  }
}

void judge_keys(Judge& judge, const std::string& service, const std::string& prefix, const YAML::Node& mapping,
                const std::vector<Row>& rows) {
  if (!mapping.IsMap()) return judge.refuse(service, prefix, mapping, "cannot be judged: expected a mapping");
  for (const auto& entry : mapping) {
    const std::string& name = entry.first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (name.rfind("x-", 0) == 0) continue;
    const auto row = std::find_if(rows.begin(), rows.end(), [&](const Row& r) { return r.key == name; });
    if (row == rows.end()) {
      judge.refuse(service, key, entry.second, kNotReviewed);
      continue;
    }
    apply_row(judge, service, key, entry.second, *row);
  }
}

template <class EachEntry>
void for_each_entry(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value,
                    EachEntry&& each) {
  if (!value.IsSequence()) return judge.refuse(service, key, value, kCannotJudgeList);
  for (const auto& entry : value) each(entry);
}

// ---------------------------------------------------------------------------------------------
// Predicates for kRefusedWhen rows

bool is_true(const Judge&, const YAML::Node& value) { return !is_clearly_false(value); }
bool is_host(const Judge&, const YAML::Node& value) { return !is_scalar(value) || lowercase(value.Scalar()) == "host"; }
bool is_not_private(const Judge&, const YAML::Node& value) { return !is_scalar(value) || value.Scalar() != "private"; }
bool is_not_default(const Judge&, const YAML::Node& value) { return !is_scalar(value) || value.Scalar() != "default"; }
bool is_negative(const Judge&, const YAML::Node& value) {
  if (!is_scalar(value)) return true;
  try {
    std::size_t used = 0;
    const long long number = std::stoll(value.Scalar(), &used);
    return used != value.Scalar().size() || number < 0;
  } catch (const std::exception&) {
    return true;  // not a number: cannot be judged
  }
}
// `service:<a service of this project>`: the only way to share a namespace that stays inside
// the project.
bool is_not_own_service_namespace(const Judge& judge, const YAML::Node& value) {
  if (!is_scalar(value)) return true;
  const std::string& mode = value.Scalar();
  return mode.rfind("service:", 0) != 0 || !judge.is_service(mode.substr(std::string_view("service:").size()));
}
// network_mode: `none` (no network at all) or a service of this project; host, bridge (docker0,
// shared by every project) and container:<any> are not.
bool is_not_none_or_own_service(const Judge& judge, const YAML::Node& value) {
  if (is_scalar(value) && value.Scalar() == "none") return false;
  return is_not_own_service_namespace(judge, value);
}
// Mount propagation other than private would let mounts cross between host and container.
bool is_shared_propagation(const Judge&, const YAML::Node& value) {
  if (!is_scalar(value)) return true;
  const std::string mode = lowercase(value.Scalar());
  return !(mode.empty() || mode == "private" || mode == "rprivate");
}

// ---------------------------------------------------------------------------------------------
// Checks for keys whose value is a list or a structure

// security_opt: the options that keep confinement on; everything else (unconfined profiles,
// custom seccomp profiles that may allow anything, unknown options) is refused.
std::optional<std::string> why_security_opt_refused(const YAML::Node& entry) {
  if (!is_scalar(entry)) return "cannot be judged: expected a string";
  const std::string option = lowercase(entry.Scalar());
  const std::size_t separator = option.find_first_of("=:");
  const std::string name = option.substr(0, separator);
  const std::string value = separator == std::string::npos ? "" : option.substr(separator + 1);
  if (name == "no-new-privileges") return std::nullopt;
  if (name == "seccomp") {
    if (value == "builtin") return std::nullopt;
    return value == "unconfined" ? "disables seccomp confinement" : "custom seccomp profiles are refused";
  }
  if (name == "apparmor")
    return value == "unconfined" ? std::optional<std::string>("disables AppArmor confinement") : std::nullopt;
  if (name == "label") {
    const bool unconfined = value == "disable" || value.find("spc_t") != std::string::npos ||
                            value.find("unconfined_t") != std::string::npos;
    return unconfined ? std::optional<std::string>("disables SELinux confinement") : std::nullopt;
  }
  if (name == "systempaths") return "exposes masked kernel paths (/proc, /sys)";
  return "unknown security option";
}

void check_security_opt(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_entry(judge, service, key, value, [&](const YAML::Node& entry) {
    if (auto why = why_security_opt_refused(entry)) judge.refuse(service, key, entry, *why);
  });
  if (value.IsSequence() && value.size() > 1)
    judge.refuse(service, key, value, "more than one security_opt is refused");
}

// Calls judge_name(name, written) for each name of a mapping, or of a list of "name=value"
// strings (labels, sysctls and the like come in both shapes).
template <class JudgeName>
void for_each_name(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value,
                   JudgeName&& judge_name) {
  if (value.IsMap()) {
    for (const auto& entry : value) judge_name(entry.first.Scalar(), entry.first);
  } else if (value.IsSequence()) {
    for (const auto& entry : value) {
      if (!is_scalar(entry)) return judge.refuse(service, key, entry, "cannot be judged: expected name=value");
      judge_name(entry.Scalar().substr(0, entry.Scalar().find('=')), entry);
    }
  } else {
    judge.refuse(service, key, value, "cannot be judged: expected a mapping or a list");
  }
}

// Labels: compose's own say which project a container, volume or network belongs to, and
// compose itself trusts them.
void check_labels(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_name(judge, service, key, value, [&](const std::string& name, const YAML::Node& written) {
    if (starts_with_ci(name, "com.docker.compose."))
      judge.refuse(service, key, written, "com.docker.compose.* labels are compose's own (they name the project)");
  });
}

// The sysctls docker itself knows to be namespaced (net.*, IPC and mqueue); the rest would be
// the host's.
void check_sysctls(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  static const std::set<std::string, std::less<>> kIpc = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                                          "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                                          "kernel.shmmni", "kernel.shm_rmid_forced"};
  for_each_name(judge, service, key, value, [&](const std::string& name, const YAML::Node& written) {
    if (name.rfind("net.", 0) == 0 || name.rfind("fs.mqueue.", 0) == 0 || kIpc.count(name) > 0) return;
    judge.refuse(service, key, written, "only namespaced sysctls (net.*, fs.mqueue.*, kernel IPC limits) are allowed");
  });
}

// ulimits: known names, finite values under a ceiling (dockerd sets them as root, above the
// host's own hard limits if asked). Real-time priority and nice would let a container starve
// the host.
void check_ulimits(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  static const std::map<std::string, long long, std::less<>> kCeilings = {
      {"nofile", 1LL << 20},  {"nproc", 1LL << 20}, {"core", 1LL << 40},  {"memlock", 1LL << 36},
      {"stack", 1LL << 32},   {"fsize", 1LL << 40}, {"data", 1LL << 40},  {"as", 1LL << 40},
      {"rss", 1LL << 40},     {"cpu", 1LL << 32},   {"locks", 1LL << 20}, {"sigpending", 1LL << 20},
      {"msgqueue", 1LL << 30}};
  if (!value.IsMap()) return judge.refuse(service, key, value, "cannot be judged: expected a mapping");
  for (const auto& entry : value) {
    const std::string& name = entry.first.Scalar();
    const auto ceiling = kCeilings.find(name);
    if (ceiling == kCeilings.end()) {
      judge.refuse(service, key + "." + name, entry.second,
                   "only nofile, nproc, core, memlock, stack, fsize, data, as, "
                   "rss, cpu, locks, sigpending and msgqueue limits are allowed");
      continue;
    }
    std::vector<YAML::Node> numbers;
    if (entry.second.IsMap()) {
      for (const auto& limit : entry.second) {
        if (limit.first.Scalar() != "soft" && limit.first.Scalar() != "hard") {
          judge.refuse(service, key + "." + name + "." + limit.first.Scalar(), limit.second, kNotReviewed);
          continue;
        }
        numbers.push_back(limit.second);
      }
    } else {
      numbers.push_back(entry.second);
    }
    const auto too_large = [&](const YAML::Node& number) {
      return is_negative(judge, number) || std::stoll(number.Scalar()) > ceiling->second;
    };
    const auto refused = std::find_if(numbers.begin(), numbers.end(), too_large);
    if (refused != numbers.end()) {
      judge.refuse(service, key + "." + name, *refused,
                   "a ulimit must be a finite number of at most " + std::to_string(ceiling->second));
    }
  }
}

// Drivers that keep logs on this host; the others send them to network addresses or other
// daemons.
void check_logging_driver(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  static const std::set<std::string, std::less<>> kLocal = {"json-file", "local", "journald", "none"};
  if (!is_scalar(value) || kLocal.count(value.Scalar()) == 0)
    judge.refuse(service, key, value, "only the json-file, local, journald and none logging drivers are allowed");
}

// A name compose uses on the daemon (container_name) or on a network (hostname, aliases):
// it must be the project's own.
bool is_own_name(const Judge& judge, const std::string& name) {
  return name == judge.project() || is_project_owned_name(judge.project(), name);
}

void check_project_owned(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  if (!is_scalar(value) || !is_own_name(judge, value.Scalar()))
    judge.refuse(service, key, value,
                 "must start with \"" + judge.project() + "-\" or \"" + judge.project() +
                     "_\" (names are shared on the daemon)");
}

void check_each_project_owned(Judge& judge, const std::string& service, const std::string& key,
                              const YAML::Node& value) {
  for_each_entry(judge, service, key, value,
                 [&](const YAML::Node& entry) { check_project_owned(judge, service, key, entry); });
}

// links: services of this project ("db" or "db:alias").
void check_links(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_entry(judge, service, key, value, [&](const YAML::Node& entry) {
    if (!is_scalar(entry) || !judge.is_service(entry.Scalar().substr(0, entry.Scalar().find(':'))))
      judge.refuse(service, key, entry, "links may only name services of this project");
  });
}

const std::vector<Row> kDependsOnRows = {
    {"condition", Rule::kAllowed, "when to start: inside the project"},
    {"required", Rule::kAllowed, "compose's own bookkeeping"},
    {"restart", Rule::kAllowed, "compose's own bookkeeping"},
};

void check_depends_on(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  if (value.IsSequence()) return;  // names; compose refuses unknown ones
  if (!value.IsMap()) return judge.refuse(service, key, value, "cannot be judged: expected a list or a mapping");
  for (const auto& entry : value) {
    if (asks_for_something(entry.second))
      judge_keys(judge, service, key + "." + entry.first.Scalar(), entry.second, kDependsOnRows);
  }
}

// Lifecycle hooks (post_start, pre_stop): an exec in the container, privileged is refused like
// `exec --privileged`.
const std::vector<Row> kHookRows = {
    {"command", Rule::kAllowed, "runs inside the container"},
    {"user", Rule::kAllowed, "a user inside the container"},
    {"working_dir", Rule::kAllowed, "inside the container"},
    {"environment", Rule::kAllowed, "inside the container"},
    {"privileged", Rule::kRefusedWhen, "privileged hooks are refused (a privileged exec)", is_true},
};

void check_hooks(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_entry(judge, service, key, value,
                 [&](const YAML::Node& entry) { judge_keys(judge, service, key, entry, kHookRows); });
}

// ---------------------------------------------------------------------------------------------
// Host paths: volumes, env files, build contexts

// A service volume in either shape: v1's "SRC:TARGET[:MODE]" strings or the long form.
struct Mount {
  std::string type;    // "bind", "volume", or what the long form says
  std::string source;  // empty for an anonymous volume
  bool read_only = false;
};

std::optional<Mount> parse_mount(const YAML::Node& entry) {
  if (is_scalar(entry)) {
    const std::string& spec = entry.Scalar();
    const std::size_t colon = spec.find(':');
    if (colon == std::string::npos) return Mount{"volume", "", false};  // anonymous: "/target"
    std::string source = spec.substr(0, colon);
    if (source.empty()) return std::nullopt;
    const std::size_t mode_colon = spec.find(':', colon + 1);
    const std::string mode = mode_colon == std::string::npos ? "" : "," + spec.substr(mode_colon + 1) + ",";
    const bool read_only = mode.find(",ro,") != std::string::npos;
    // Compose's own rule: a source starting with '.', '/' or '~' is a host path.
    const bool host_path = source.front() == '/' || source.front() == '.' || source.front() == '~';
    return Mount{host_path ? "bind" : "volume", std::move(source), read_only};
  }
  if (!entry.IsMap()) return std::nullopt;
  const YAML::Node type = get(entry, "type");
  const YAML::Node source = get(entry, "source");
  if (!is_scalar(type)) return std::nullopt;
  if (source.IsDefined() && !source.IsNull() && !is_scalar(source)) return std::nullopt;
  return Mount{type.Scalar(), scalar_or_empty(source), !is_clearly_false(get(entry, "read_only"))};
}

const std::vector<Row> kBindOptionRows = {
    {"propagation", Rule::kRefusedWhen, "mount propagation other than private is refused", is_shared_propagation},
    {"create_host_path", Rule::kAllowed, "the path is judged before it is created"},
    {"selinux", Rule::kAllowed, "relabels the judged source"},
    {"recursive", Rule::kAllowed, "how submounts of the judged source are seen"},
};
const std::vector<Row> kVolumeOptionRows = {
    {"nocopy", Rule::kAllowed, "inside the volume"},
    {"subpath", Rule::kAllowed, "a path inside the project's own volume"},
};
const std::vector<Row> kTmpfsOptionRows = {
    {"size", Rule::kAllowed, "memory of the container"},
    {"mode", Rule::kAllowed, "inside the container"},
};
const std::vector<Row> kMountRows = {
    {"type", Rule::kAllowed, "bind, volume or tmpfs (judged with the source)"},
    {"source", Rule::kAllowed, "judged by the type's rule: bind sources inside the allowed directories"},
    {"target", Rule::kAllowed, "a path inside the container"},
    {"read_only", Rule::kAllowed, "narrows access"},
    {"consistency", Rule::kAllowed, "ignored on Linux"},
    {"bind", Rule::kNested, "bind options", nullptr, nullptr, &kBindOptionRows},
    {"volume", Rule::kNested, "volume options", nullptr, nullptr, &kVolumeOptionRows},
    {"tmpfs", Rule::kNested, "tmpfs options", nullptr, nullptr, &kTmpfsOptionRows},
};

// The options after a short volume's second colon ("./a:/a:ro,z"): the long form's rows, as an
// allowlist; shared or slave propagation would let mounts cross between host and container.
std::optional<std::string> why_short_mode_refused(const std::string& spec) {
  static const std::set<std::string, std::less<>> kAllowed = {
      "ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "cached", "delegated", "consistent"};
  static const std::set<std::string, std::less<>> kPropagation = {"shared", "rshared", "slave", "rslave"};
  const std::size_t colon = spec.find(':');
  const std::size_t mode_colon = colon == std::string::npos ? colon : spec.find(':', colon + 1);
  if (mode_colon == std::string::npos) return std::nullopt;
  std::string_view options = std::string_view(spec).substr(mode_colon + 1);
  while (!options.empty()) {
    const auto comma = options.find(',');
    const auto option = options.substr(0, comma);
    if (kPropagation.count(option) != 0) return "mount propagation other than private is refused";
    if (kAllowed.count(option) == 0) return "volume option \"" + std::string(option) + "\" " + kNotReviewed;
    options = comma == std::string_view::npos ? std::string_view() : options.substr(comma + 1);
  }
  return std::nullopt;
}

void check_volumes(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_entry(judge, service, key, value, [&](const YAML::Node& entry) {
    const auto mount = parse_mount(entry);
    if (!mount) return judge.refuse(service, key, entry, "cannot be judged: unexpected volume shape");
    if (entry.IsMap()) judge_keys(judge, service, key, entry, kMountRows);
    if (is_scalar(entry))
      if (auto why = why_short_mode_refused(entry.Scalar())) return judge.refuse(service, key, entry, *why);
    if (mount->type == "bind") {
      if (mount->source.empty()) return judge.refuse(service, key, entry, "a bind mount without a source");
      // config resolves every relative source; one it left (c:/etc is a Windows path to compose)
      // would be resolved by the daemon, not in the checkout.
      if (!is_absolute(mount->source))
        return judge.refuse(service, key, entry, "bind source is not an absolute path after compose config");
      const auto why =
          judge.why_host_path_refused(mount->source, Judge::Allowed::kCheckoutOrDataDir, Judge::Relative::kToCheckout);
      if (why) return judge.refuse(service, key, entry, "bind source " + *why);
      judge.add_bind(service, key, render(entry), mount->source, mount->read_only);
    } else if (mount->type == "volume") {
      // A name compose does not declare is a raw docker volume, possibly another project's.
      if (!mount->source.empty() && !judge.is_declared_volume(mount->source))
        judge.refuse(service, key, entry, "named volume not declared in the top-level volumes");
    } else if (mount->type != "tmpfs") {
      judge.refuse(service, key, entry, "only volumes of type bind, volume or tmpfs are allowed");
    }
  });
}

// volumes_from: another service of this project ("db", "db:ro", v1's "service:db:rw"); a
// "container:..." or an unknown name reads another project's container.
void check_volumes_from(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_entry(judge, service, key, value, [&](const YAML::Node& entry) {
    if (!is_scalar(entry)) return judge.refuse(service, key, entry, "cannot be judged: expected a string");
    std::string source = entry.Scalar();
    if (starts_with_ci(source, "container:"))
      return judge.refuse(service, key, entry, "volumes from containers outside the project are refused");
    if (source.rfind("service:", 0) == 0) source.erase(0, std::string_view("service:").size());
    if (source.size() > 3 && (source.ends_with(":ro") || source.ends_with(":rw"))) source.resize(source.size() - 3);
    if (!judge.is_service(source)) judge.refuse(service, key, entry, "not a service of this project");
  });
}

// env_file and label_file: v2 writes a list of strings or of {path, required}; both versions
// usually fold the files into the model, so the raw files are judged too (host_file_violations).
void check_host_files(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  const auto check_one = [&](const YAML::Node& entry) {
    const YAML::Node path = entry.IsMap() ? get(entry, "path") : entry;
    if (!is_scalar(path)) return judge.refuse(service, key, entry, "cannot be judged: expected a path");
    const auto why =
        judge.why_host_path_refused(path.Scalar(), Judge::Allowed::kCheckoutOrDataDir, Judge::Relative::kToCheckout);
    if (why) judge.refuse(service, key, entry, "file " + *why);
  };
  if (value.IsSequence()) {
    for (const auto& entry : value) check_one(entry);
  } else {
    check_one(value);
  }
}

// ---------------------------------------------------------------------------------------------
// build

// Judged by check_build with the context: its rows only say so.
void judged_with_build(Judge&, const std::string&, const std::string&, const YAML::Node&) {}

bool is_host_or_container_network(const Judge&, const YAML::Node& value) {
  return !is_scalar(value) || lowercase(value.Scalar()) == "host" || starts_with_ci(value.Scalar(), "container:");
}

// cache_from may name registries; a local cache is a host path the build client reads.
void check_cache_from(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  for_each_entry(judge, service, key, value, [&](const YAML::Node& entry) {
    if (!is_scalar(entry) || lowercase(entry.Scalar()).find("type=local") != std::string::npos)
      judge.refuse(service, key, entry, "local build caches (host paths) are refused");
  });
}

// <project>-pgod-* names the images of the last good deploy (worker/deploy_gate.cc): a build
// that took one would change what going back to it runs.
constexpr char kPgodsOwnImage[] = "the names \"<project>-pgod-...\" are pgod's own (the last good deploy's images)";

bool is_pgods_own_image(const Judge& judge, std::string_view repository) {
  return repository.starts_with(judge.project() + "-pgod-");
}

void check_build_tags(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  check_each_project_owned(judge, service, key, value);
  for_each_entry(judge, service, key, value, [&](const YAML::Node& entry) {
    if (is_scalar(entry) && is_pgods_own_image(judge, entry.Scalar()))
      judge.refuse(service, key, entry, kPgodsOwnImage);
  });
}

const std::vector<Row> kBuildRows = {
    {"context", Rule::kChecked, "inside the checkout after resolving symlinks, or a remote URL", nullptr,
     judged_with_build},
    {"dockerfile", Rule::kChecked, "inside the checkout after resolving symlinks", nullptr, judged_with_build},
    {"additional_contexts", Rule::kChecked, "local ones inside the checkout; images, URLs and services", nullptr,
     judged_with_build},
    {"dockerfile_inline", Rule::kAllowed, "the Dockerfile's text"},
    {"args", Rule::kAllowed, "build arguments, inside the build"},
    {"target", Rule::kAllowed, "a stage of the Dockerfile"},
    {"labels", Rule::kChecked, "image labels; compose's own are refused", nullptr, check_labels},
    {"cache_from", Rule::kChecked, "registries only; local caches are host paths", nullptr, check_cache_from},
    {"cache_to", Rule::kRefused, "exporting build caches (host paths, registries) is refused"},
    {"no_cache", Rule::kAllowed, "build behaviour"},
    {"pull", Rule::kAllowed, "build behaviour"},
    {"platforms", Rule::kAllowed, "build behaviour"},
    {"shm_size", Rule::kAllowed, "memory of the build container"},
    {"extra_hosts", Rule::kAllowed, "/etc/hosts inside the build"},
    {"isolation", Rule::kRefusedWhen, "only the default isolation is allowed", is_not_default},
    {"network", Rule::kRefusedWhen, "builds on the host's or another container's network are refused",
     is_host_or_container_network},
    {"privileged", Rule::kRefusedWhen, "privileged builds are refused", is_true},
    {"entitlements", Rule::kRefused, "build entitlements (host network, insecure) are refused"},
    {"ssh", Rule::kRefused, "forwarding ssh keys into builds is refused"},
    {"secrets", Rule::kRefused, "build secrets are host files or the worker's environment: refused"},
    {"tags", Rule::kChecked, "every tag the project's own image name, not pgod's", nullptr, check_build_tags},
    {"ulimits", Rule::kChecked, "finite, under a ceiling", nullptr, check_ulimits},
};

// build: a context (v1 raw files may give it as the whole value) and the Dockerfile must be in
// the checkout unless the context is remote.
void check_build(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value) {
  if (!value.IsMap() && !value.IsScalar()) return judge.refuse(service, key, value, "cannot be judged");
  const YAML::Node context_node = value.IsMap() ? get(value, "context") : value;
  if (context_node.IsDefined() && !context_node.IsNull() && !is_scalar(context_node))
    return judge.refuse(service, key + ".context", context_node, "cannot be judged: expected a path or URL");
  const std::string context = context_node.IsDefined() && !context_node.IsNull() ? context_node.Scalar() : ".";
  const bool remote = is_remote_build_context(context);
  // Whether `path` is inside the checkout; refuses it under `sub_key` when not.
  const auto inside_checkout = [&](const std::string& sub_key, const std::string& path, const YAML::Node& written) {
    const auto why = judge.why_host_path_refused(path, Judge::Allowed::kCheckout, Judge::Relative::kToCheckout);
    if (why) judge.refuse(service, key + "." + sub_key, written, *why);
    return !why;
  };
  const bool context_inside =
      !remote && inside_checkout("context", context, context_node.IsDefined() ? context_node : YAML::Node(context));
  if (value.IsMap()) judge_keys(judge, service, key, value, kBuildRows);

  // Without a dockerfile key the client reads <context>/Dockerfile (Compose v1's config leaves
  // the default out of the model; v2 writes it in), judged once the context itself passed.
  const bool inline_text = value.IsMap() && asks_for_something(get(value, "dockerfile_inline"));
  const YAML::Node given = value.IsMap() ? get(value, "dockerfile") : YAML::Node();
  const bool use_default = !asks_for_something(given) && !inline_text && context_inside;
  const YAML::Node dockerfile = use_default ? YAML::Node("Dockerfile") : given;
  // The docker CLI's builder falls back to a lowercase `dockerfile` when `Dockerfile` is missing.
  if (use_default && !remote) inside_checkout("dockerfile", context + "/dockerfile", YAML::Node("dockerfile"));
  if (asks_for_something(dockerfile) && !remote) {
    if (!is_scalar(dockerfile)) return judge.refuse(service, key + ".dockerfile", dockerfile, "cannot be judged");
    // The Dockerfile is read by the compose client, which joins it to the context lexically
    // ("../Dockerfile.app" beside a sub-directory context is common); symlinks still resolve.
    const std::string& file = dockerfile.Scalar();
    const std::string base = is_absolute(context) ? context : judge.context().checkout_dir + "/" + context;
    const auto joined = cleaned_components(is_absolute(file) ? file : base + "/" + file);
    if (!joined) return judge.refuse(service, key + ".dockerfile", dockerfile, "a path above / cannot be judged");
    inside_checkout("dockerfile", join_path(*joined), dockerfile);
  }
  if (!value.IsMap()) return;
  // More build contexts: local ones follow the context's rule (the build client reads them,
  // as the service's user, after the registry login); images and URLs are fine.
  const YAML::Node additional = get(value, "additional_contexts");
  if (asks_for_something(additional)) {
    if (!additional.IsMap() && !additional.IsSequence())
      return judge.refuse(service, key + ".additional_contexts", additional, "cannot be judged");
    for (const auto& entry : additional) {
      const YAML::Node target = additional.IsMap() ? entry.second : entry;
      std::string path = is_scalar(target) ? target.Scalar() : "";
      if (additional.IsSequence()) path = path.substr(path.find('=') == std::string::npos ? 0 : path.find('=') + 1);
      if (path.empty()) {
        judge.refuse(service, key + ".additional_contexts", target, "cannot be judged");
      } else if (!is_remote_build_context(path) && path.rfind("docker-image://", 0) != 0 &&
                 path.rfind("service:", 0) != 0) {
        inside_checkout("additional_contexts", path, target);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// deploy, healthcheck, logging, develop, networks

const std::vector<Row> kLimitRows = {
    {"cpus", Rule::kAllowed, "a limit"},
    {"memory", Rule::kAllowed, "a limit"},
    {"pids", Rule::kAllowed, "a limit"},
};
const std::vector<Row> kReservationRows = {
    {"cpus", Rule::kAllowed, "a scheduling hint"},
    {"memory", Rule::kAllowed, "a scheduling hint"},
    {"devices", Rule::kRefused, "host devices (GPUs) are refused"},
    {"generic_resources", Rule::kRefused, "host devices are refused"},
};
const std::vector<Row> kResourceRows = {
    {"limits", Rule::kNested, "resource limits", nullptr, nullptr, &kLimitRows},
    {"reservations", Rule::kNested, "reservations", nullptr, nullptr, &kReservationRows},
};
const std::vector<Row> kDeployRows = {
    {"mode", Rule::kAllowed, "replicated or global: how many containers"},
    {"replicas", Rule::kAllowed, "how many containers"},
    {"endpoint_mode", Rule::kAllowed, "swarm only"},
    {"labels", Rule::kChecked, "compose's own labels are refused", nullptr, check_labels},
    {"placement", Rule::kAllowed, "swarm only"},
    {"resources", Rule::kNested, "limits and reservations", nullptr, nullptr, &kResourceRows},
    {"restart_policy", Rule::kAllowed, "when to restart"},
    {"rollback_config", Rule::kAllowed, "swarm only"},
    {"update_config", Rule::kAllowed, "swarm only"},
};
const std::vector<Row> kHealthcheckRows = {
    {"test", Rule::kAllowed, "runs inside the container"},
    {"interval", Rule::kAllowed, "timing"},
    {"timeout", Rule::kAllowed, "timing"},
    {"retries", Rule::kAllowed, "timing"},
    {"start_period", Rule::kAllowed, "timing"},
    {"start_interval", Rule::kAllowed, "timing"},
    {"disable", Rule::kAllowed, "turns the check off"},
};
const std::vector<Row> kLoggingRows = {
    {"driver", Rule::kChecked, "json-file, local, journald or none: logs stay on this host", nullptr,
     check_logging_driver},
    {"options", Rule::kAllowed, "options of a local driver"},
};
const std::vector<Row> kDevelopRows = {
    {"watch", Rule::kAllowed, "used by compose watch only, which pgod never runs"},
};
const std::vector<Row> kServiceNetworkRows = {
    {"aliases", Rule::kAllowed, "judged with the network: the project's own names on shared networks"},
    {"ipv4_address", Rule::kAllowed, "on the project's own networks (judged with the network: not on shared ones)"},
    {"ipv6_address", Rule::kAllowed, "on the project's own networks (judged with the network: not on shared ones)"},
    {"link_local_ips", Rule::kAllowed, "on the project's own networks (judged with the network: not on shared ones)"},
    {"priority", Rule::kAllowed, "order of the networks"},
    {"gw_priority", Rule::kAllowed, "which network is the default gateway"},
    {"interface_name", Rule::kAllowed, "the interface's name inside the container"},
    {"mac_address", Rule::kRefused, "a fixed MAC address can take another container's on a shared network"},
    {"driver_opts", Rule::kRefused, "network driver options are refused"},
};

// Networks are judged even when the key is absent: the service is then on `default`.
void check_service_networks(Judge& judge, const std::string& service, const YAML::Node& definition) {
  const YAML::Node networks = get(definition, "networks");
  std::vector<std::string> names;
  if (!networks.IsDefined() || networks.IsNull()) {
    names.push_back("default");
  } else if (networks.IsMap()) {
    for (const auto& entry : networks) {
      const std::string& name = entry.first.Scalar();
      names.push_back(name);
      if (!asks_for_something(entry.second)) continue;
      judge_keys(judge, service, "networks." + name, entry.second, kServiceNetworkRows);
      // On a network other projects share, a name is an address others may route to.
      if (judge.is_shared_network(name)) {
        const YAML::Node aliases = get(entry.second, "aliases");
        if (asks_for_something(aliases))
          check_each_project_owned(judge, service, "networks." + name + ".aliases", aliases);
        for (const char* fixed : {"ipv4_address", "ipv6_address", "link_local_ips"}) {
          const YAML::Node address = get(entry.second, fixed);
          if (asks_for_something(address))
            judge.refuse(service, "networks." + name + "." + fixed, address,
                         "a fixed address on a shared network can take another project's");
        }
      }
    }
  } else if (networks.IsSequence()) {
    for (const auto& entry : networks) {
      if (!is_scalar(entry)) return judge.refuse(service, "networks", networks, "cannot be judged: unexpected shape");
      names.push_back(entry.Scalar());
    }
  } else {
    return judge.refuse(service, "networks", networks, "cannot be judged: unexpected shape");
  }
  for (const auto& name : names) {
    if (name != "default" && !judge.is_declared_network(name))
      judge.refuse(service, "networks", name, "network not declared in the top-level networks");
  }
  const bool shared =
      std::any_of(names.begin(), names.end(), [&](const std::string& name) { return judge.is_shared_network(name); });
  const YAML::Node hostname = get(definition, "hostname");
  if (shared && asks_for_something(hostname)) check_project_owned(judge, service, "hostname", hostname);
  // With an allowed list, a service must not sit on the shared (proxy) network alone. A
  // service in another's network namespace (network_mode, judged above) has none of its own.
  if (!judge.context().allowed_networks.empty() && names.size() < 2 &&
      !asks_for_something(get(definition, "network_mode"))) {
    judge.refuse(service, "networks", networks.IsDefined() ? render(networks) : std::string("default"),
                 "at least two networks are required (one of the project's own besides the shared ones)");
  }
}

// A built image gets the name in `image:`; naming another project's (or a public) image would
// replace it on this daemon, and the other service's next `up` would run this build.
void check_built_image(Judge& judge, const std::string& service, const YAML::Node& definition) {
  if (!asks_for_something(get(definition, "build"))) return;
  const YAML::Node image = get(definition, "image");
  if (!asks_for_something(image)) return;  // compose names it <project>-<service>
  if (!is_scalar(image)) return judge.refuse(service, "image", image, "cannot be judged: expected a name");
  std::string repository = image.Scalar().substr(0, image.Scalar().find('@'));
  const std::size_t tag = repository.rfind(':');
  if (tag != std::string::npos && repository.find('/', tag) == std::string::npos) repository.resize(tag);
  if (!is_own_name(judge, repository))
    judge.refuse(service, "image", image,
                 "a built image must be named \"" + judge.project() +
                     "-...\" (it would replace that image for everyone on this daemon)");
  else if (is_pgods_own_image(judge, repository))
    judge.refuse(service, "image", image, kPgodsOwnImage);
}

const std::vector<Row> kServiceRows = {
    {"annotations", Rule::kRefused, "OCI annotations reach the runtime, which may act on them"},
    {"attach", Rule::kAllowed, "compose's output only"},
    {"blkio_config", Rule::kRefused, "block I/O settings name host devices"},
    {"build", Rule::kChecked, "context, Dockerfile and local contexts inside the checkout; see the build rows", nullptr,
     check_build},
    {"cap_add", Rule::kRefused, "adding capabilities is refused"},
    {"cap_drop", Rule::kAllowed, "narrows the container"},
    {"cgroup", Rule::kRefusedWhen, "only cgroup: private is allowed (host shares the host's cgroup namespace)",
     is_not_private},
    {"cgroup_parent", Rule::kRefused, "choosing the cgroup parent is refused"},
    {"command", Rule::kAllowed, "runs inside the container"},
    {"configs", Rule::kRefused, "configs are refused (they mount host files)"},
    {"container_name", Rule::kChecked, "the project's own name (container names are global on the daemon)", nullptr,
     check_project_owned},
    {"cpu_count", Rule::kAllowed, "a limit"},
    {"cpu_percent", Rule::kAllowed, "a limit"},
    {"cpu_period", Rule::kAllowed, "a limit"},
    {"cpu_quota", Rule::kAllowed, "a limit"},
    {"cpu_rt_period", Rule::kRefused, "real-time scheduling is refused"},
    {"cpu_rt_runtime", Rule::kRefused, "real-time scheduling is refused"},
    {"cpu_shares", Rule::kAllowed, "a weight"},
    {"cpus", Rule::kAllowed, "a limit"},
    {"cpuset", Rule::kAllowed, "which CPUs"},
    {"credential_spec", Rule::kRefused, "Windows credential specs name host files or registry keys"},
    {"depends_on", Rule::kChecked, "services of this project", nullptr, check_depends_on},
    {"deploy", Rule::kNested, "see the deploy rows", nullptr, nullptr, &kDeployRows},
    {"develop", Rule::kNested, "see the develop rows", nullptr, nullptr, &kDevelopRows},
    {"device_cgroup_rules", Rule::kRefused, "device cgroup rules are refused"},
    {"devices", Rule::kRefused, "host devices are refused"},
    {"dns", Rule::kAllowed, "resolver inside the container"},
    {"dns_opt", Rule::kAllowed, "resolver inside the container"},
    {"dns_search", Rule::kAllowed, "resolver inside the container"},
    {"domainname", Rule::kAllowed, "inside the container"},
    {"entrypoint", Rule::kAllowed, "runs inside the container"},
    {"env_file", Rule::kChecked, "files inside the checkout or data directory after resolving symlinks", nullptr,
     check_host_files},
    {"environment", Rule::kAllowed, "inside the container"},
    {"expose", Rule::kAllowed, "documentation: publishes nothing"},
    {"extends", Rule::kRefused, "extends must be resolved by compose config"},
    {"external_links", Rule::kRefused, "links to containers outside the project are refused"},
    {"extra_hosts", Rule::kAllowed, "/etc/hosts inside the container"},
    {"gpus", Rule::kRefused, "host devices (GPUs) are refused"},
    {"group_add", Rule::kAllowed, "groups inside the container"},
    {"healthcheck", Rule::kNested, "see the healthcheck rows", nullptr, nullptr, &kHealthcheckRows},
    {"hostname", Rule::kAllowed,
     "inside the container; the project's own name on a shared network (judged with networks)"},
    {"image", Rule::kAllowed, "any image to run; a built one must be the project's own name (judged with build)"},
    {"init", Rule::kAllowed, "docker's init inside the container"},
    {"ipc", Rule::kRefused, "sharing IPC namespaces is refused"},
    {"isolation", Rule::kRefusedWhen, "only the default isolation is allowed", is_not_default},
    {"label_file", Rule::kChecked, "files inside the checkout or data directory after resolving symlinks", nullptr,
     check_host_files},
    {"labels", Rule::kChecked, "compose's own labels are refused", nullptr, check_labels},
    {"links", Rule::kChecked, "services of this project", nullptr, check_links},
    {"logging", Rule::kNested, "see the logging rows", nullptr, nullptr, &kLoggingRows},
    {"mac_address", Rule::kRefused, "a fixed MAC address can take another container's on a shared network"},
    {"mem_limit", Rule::kAllowed, "a limit"},
    {"mem_reservation", Rule::kAllowed, "a scheduling hint"},
    {"mem_swappiness", Rule::kAllowed, "inside the container's limit"},
    {"memswap_limit", Rule::kAllowed, "a limit"},
    {"network_mode", Rule::kRefusedWhen, "only network_mode: none or service:<a service of this project> is allowed",
     is_not_none_or_own_service},
    {"networks", Rule::kAllowed, "declared networks; external ones only from pgo.toml's list (judged with networks)"},
    {"oom_kill_disable", Rule::kRefusedWhen, "a container the OOM killer may not kill can exhaust the host's memory",
     is_true},
    {"oom_score_adj", Rule::kRefusedWhen, "a negative oom_score_adj is refused", is_negative},
    {"pid", Rule::kRefusedWhen, "only pid: service:<a service of this project> may share a PID namespace",
     is_not_own_service_namespace},
    {"pids_limit", Rule::kAllowed, "a limit"},
    {"platform", Rule::kAllowed, "which image variant"},
    {"ports", Rule::kRefused, "published ports are refused: use pgoctl or the proxy"},
    {"post_start", Rule::kChecked, "an exec in the container, never privileged", nullptr, check_hooks},
    {"pre_stop", Rule::kChecked, "an exec in the container, never privileged", nullptr, check_hooks},
    {"privileged", Rule::kRefusedWhen, "privileged containers are refused", is_true},
    {"profiles", Rule::kAllowed, "which services start"},
    {"provider", Rule::kRefused, "provider services run a program on the host"},
    {"pull_policy", Rule::kAllowed, "when to pull"},
    {"read_only", Rule::kAllowed, "narrows the container"},
    {"restart", Rule::kAllowed, "when to restart"},
    {"runtime", Rule::kRefused, "choosing the container runtime is refused"},
    {"scale", Rule::kAllowed, "how many containers"},
    {"secrets", Rule::kRefused, "secrets are refused (they mount host files)"},
    {"security_opt", Rule::kChecked, "one option that keeps confinement on", nullptr, check_security_opt},
    {"shm_size", Rule::kAllowed, "memory of the container"},
    {"stdin_open", Rule::kAllowed, "inside the container"},
    {"stop_grace_period", Rule::kAllowed, "timing"},
    {"stop_signal", Rule::kAllowed, "inside the container"},
    {"storage_opt", Rule::kRefused, "storage options are refused"},
    {"sysctls", Rule::kChecked, "namespaced sysctls only", nullptr, check_sysctls},
    {"tmpfs", Rule::kAllowed, "memory of the container"},
    {"tty", Rule::kAllowed, "inside the container"},
    {"ulimits", Rule::kChecked, "finite, under a ceiling", nullptr, check_ulimits},
    {"use_api_socket", Rule::kRefused, "mounts the docker socket, which is root on the host"},
    {"user", Rule::kAllowed, "a user inside the container"},
    {"userns_mode", Rule::kRefusedWhen, "the host user namespace is refused", is_host},
    {"uts", Rule::kRefusedWhen, "the host UTS namespace is refused", is_host},
    {"volume_driver", Rule::kRefused, "volume drivers other than local are refused"},
    {"volumes", Rule::kChecked, "bind sources inside the checkout or data directory; declared volumes; tmpfs", nullptr,
     check_volumes},
    {"volumes_from", Rule::kChecked, "services of this project", nullptr, check_volumes_from},
    {"working_dir", Rule::kAllowed, "inside the container"},
};

// ---------------------------------------------------------------------------------------------
// Top-level keys

// The local driver's bind form only: type none or bind, o bind[,ro], device a judged host path.
// Every other form (proc, overlay, tmpfs, nfs, block devices) makes dockerd mount something
// as root.
void check_volume_driver_opts(Judge& judge, const std::string&, const std::string& key, const YAML::Node& options) {
  if (!options.IsMap()) return judge.refuse("", key, options, "cannot be judged: expected a mapping");
  const std::string type = lowercase(scalar_or_empty(get(options, "type")));
  if (type != "none" && type != "bind")
    judge.refuse("", key + ".type", get(options, "type"), "only the bind form (type: none, o: bind) is allowed");
  bool binds = false;
  bool read_only = false;
  std::string o = lowercase(scalar_or_empty(get(options, "o")));
  std::size_t begin = 0;
  while (begin <= o.size()) {
    const std::size_t end = std::min(o.find(',', begin), o.size());
    const std::string option = o.substr(begin, end - begin);
    if (option == "bind" || option == "rbind")
      binds = true;
    else if (option == "ro")
      read_only = true;
    else if (option != "rw" && !option.empty())
      judge.refuse("", key + ".o", get(options, "o"), "only the options bind, rbind, ro and rw are allowed");
    begin = end + 1;
  }
  if (!binds) judge.refuse("", key + ".o", get(options, "o"), "the local driver must bind (o: bind)");
  for (const auto& entry : options) {
    const std::string& name = entry.first.Scalar();
    if (name != "type" && name != "o" && name != "device")
      judge.refuse("", key + "." + name, entry.second, kNotReviewed);
  }
  const YAML::Node device = get(options, "device");
  if (!is_scalar(device)) return judge.refuse("", key + ".device", device, "cannot be judged: expected a path");
  const auto why =
      judge.why_host_path_refused(device.Scalar(), Judge::Allowed::kCheckoutOrDataDir, Judge::Relative::kRefused);
  if (why) return judge.refuse("", key + ".device", device, "volume device " + *why);
  judge.add_bind("", key, device.Scalar(), device.Scalar(), read_only);
}

void check_volume_driver(Judge& judge, const std::string&, const std::string& key, const YAML::Node& driver) {
  if (!is_scalar(driver) || driver.Scalar() != "local")
    judge.refuse("", key, driver, "only the local volume driver is allowed");
}

void check_volume_name(Judge& judge, const std::string&, const std::string& key, const YAML::Node& name) {
  if (!is_scalar(name) || !is_project_owned_name(judge.project(), name.Scalar()))
    judge.refuse("", key, name,
                 "volume names must start with \"" + judge.project() + "_\" (volumes are shared on the daemon)");
}

const std::vector<Row> kVolumeRows = {
    {"name", Rule::kAllowed, "the project's own name (judged with the volume)"},
    {"driver", Rule::kChecked, "local only", nullptr, check_volume_driver},
    {"driver_opts", Rule::kChecked, "the bind form only, the device inside the allowed directories", nullptr,
     check_volume_driver_opts},
    {"external", Rule::kRefusedWhen, "external volumes are refused (they may belong to another service)", is_true},
    {"labels", Rule::kChecked, "compose's own labels are refused", nullptr, check_labels},
};

void check_top_volumes(Judge& judge, const std::string&, const std::string&, const YAML::Node& volumes) {
  if (!volumes.IsMap()) return judge.refuse("", "volumes", volumes, "cannot be judged: expected a mapping");
  for (const auto& entry : volumes) {
    if (!asks_for_something(entry.second)) continue;
    const std::string key = "volumes." + entry.first.Scalar();
    judge_keys(judge, "", key, entry.second, kVolumeRows);
    const YAML::Node name = get(entry.second, "name");
    if (name.IsDefined() && !is_external_definition(entry.second)) check_volume_name(judge, "", key + ".name", name);
  }
}

void check_network_driver(Judge& judge, const std::string&, const std::string& key, const YAML::Node& driver) {
  // Host-attached drivers (host, macvlan, ipvlan) put containers on the host's networks.
  if (!is_scalar(driver) || (driver.Scalar() != "bridge" && driver.Scalar() != "overlay"))
    judge.refuse("", key, driver, "only the bridge and overlay network drivers are allowed");
}

void check_network_driver_opts(Judge& judge, const std::string&, const std::string& key, const YAML::Node& options) {
  // Bridge options can name a host bridge (docker0) or change the host's firewall rules.
  if (!options.IsMap()) return judge.refuse("", key, options, "cannot be judged: expected a mapping");
  for (const auto& entry : options) {
    if (entry.first.Scalar() != "com.docker.network.driver.mtu")
      judge.refuse("", key + "." + entry.first.Scalar(), entry.second,
                   "network driver options other than the MTU are refused");
  }
}

const std::vector<Row> kIpamRows = {
    {"driver", Rule::kRefusedWhen, "only the default IPAM driver is allowed", is_not_default},
    {"config", Rule::kAllowed, "subnets of the project's network"},
    {"options", Rule::kRefused, "IPAM driver options are refused"},
};

const std::vector<Row> kNetworkRows = {
    {"name", Rule::kAllowed, "the project's own name or an allowed network (judged with the network)"},
    {"driver", Rule::kChecked, "bridge or overlay", nullptr, check_network_driver},
    {"driver_opts", Rule::kChecked, "the MTU only", nullptr, check_network_driver_opts},
    {"external", Rule::kAllowed, "only networks pgo.toml allows (judged with the network)"},
    {"attachable", Rule::kAllowed, "swarm only"},
    {"enable_ipv4", Rule::kAllowed, "addressing of the project's network"},
    {"enable_ipv6", Rule::kAllowed, "addressing of the project's network"},
    {"internal", Rule::kAllowed, "narrows the network"},
    {"ipam", Rule::kNested, "see the ipam rows", nullptr, nullptr, &kIpamRows},
    {"labels", Rule::kChecked, "compose's own labels are refused", nullptr, check_labels},
};

// A network's real name and where it comes from: an external network must be in pgo.toml's
// list; any other network the project's own or an allowed one.
void check_network_name(Judge& judge, const std::string& network_key, const YAML::Node& definition) {
  const std::string key = "networks." + network_key;
  const YAML::Node external = get(definition, "external");
  // An explicit name (or, in old files, external.name) is the docker network's real name.
  YAML::Node name = get(definition, "name");
  if (external.IsMap() && get(external, "name").IsDefined()) name = get(external, "name");
  if (name.IsDefined() && !is_scalar(name))
    return judge.refuse("", key + ".name", name, "cannot be judged: expected a string");
  const std::string real_name = name.IsDefined() ? name.Scalar() : network_key;
  for (const char* host_network : {"host", "bridge"}) {
    if (lowercase(real_name) != host_network) continue;
    const std::string where = name.IsDefined() ? ".name" : ".external";
    return judge.refuse(
        "", key + where, real_name,
        std::string("the ") +
            (host_network == std::string("host") ? "host network" : "default bridge network (docker0)") +
            " is refused");
  }
  if (is_external_definition(definition)) {
    if (external.IsMap()) {
      for (const auto& entry : external)
        if (entry.first.Scalar() != "name")
          judge.refuse("", key + ".external." + entry.first.Scalar(), entry.second, kNotReviewed);
    }
    if (!judge.is_allowed_network(real_name))
      judge.refuse("", key + ".external", real_name,
                   "external network not in this service's allowed networks (pgo.toml networks)");
    return;
  }
  if (name.IsDefined() && !is_project_owned_name(judge.project(), real_name) && !judge.is_allowed_network(real_name))
    judge.refuse("", key + ".name", name,
                 "network names must start with \"" + judge.project() + "_\" or be an allowed network");
}

void check_top_networks(Judge& judge, const std::string&, const std::string&, const YAML::Node& networks) {
  if (!networks.IsMap()) return judge.refuse("", "networks", networks, "cannot be judged: expected a mapping");
  for (const auto& entry : networks) {
    if (!asks_for_something(entry.second)) continue;
    judge_keys(judge, "", "networks." + entry.first.Scalar(), entry.second, kNetworkRows);
    check_network_name(judge, entry.first.Scalar(), entry.second);
  }
}

void judged_per_service(Judge&, const std::string&, const std::string&, const YAML::Node&) {}

const std::vector<Row> kTopLevelRows = {
    {"name", Rule::kAllowed, "the project's name, which pgod gives with -p"},
    {"version", Rule::kAllowed, "the file format (compose v1)"},
    {"services", Rule::kChecked, "see the service rows", nullptr, judged_per_service},
    {"volumes", Rule::kChecked, "see the volume rows", nullptr, check_top_volumes},
    {"networks", Rule::kChecked, "see the network rows", nullptr, check_top_networks},
    {"configs", Rule::kRefused, "configs are refused (they mount host files)"},
    {"secrets", Rule::kRefused, "secrets are refused (they mount host files)"},
    {"include", Rule::kRefused, "include must be resolved by compose config first"},
    {"models", Rule::kRefused, "models run a model runner on the host"},
};

// Read-write binds that would let a container plant a symlink another bind then follows: the
// checkout root (the repository's own files, and every bind source in it) and any directory
// that holds another bind source.
void check_bind_nesting(Judge& judge) {
  const auto& binds = judge.binds();
  for (const auto& bind : binds) {
    if (bind.read_only) continue;
    if (bind.resolved == judge.checkout_root()) {
      judge.refuse(bind.service, bind.key, bind.written,
                   "a read-write bind of the checkout root is refused (a container could change the repository's "
                   "files and plant symlinks): bind a sub-directory, or add :ro");
      continue;
    }
    for (const auto& other : binds) {
      if (&other == &bind || other.resolved.size() <= bind.resolved.size()) continue;
      if (is_inside(other.resolved, bind.resolved)) {
        judge.refuse(bind.service, bind.key, bind.written,
                     "a read-write bind of a directory that holds another bind source (" + join_path(other.resolved) +
                         ") is refused: a container could replace that source with a symlink");
        break;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Structure: what must hold before anything can be judged

// Every mapping key a unique scalar, no unresolved merge key, bounded depth and size (aliases
// share nodes, so a small document can expand enormously). The error says what and where.
std::optional<std::string> structure_error(const YAML::Node& node, const std::string& where, int depth,
                                           std::size_t& budget) {
  constexpr int kMaxDepth = 64;
  if (depth > kMaxDepth) return "nested too deeply at " + where;
  if (budget == 0) return "too large (at " + where + ")";
  --budget;
  if (node.IsSequence()) {
    for (const auto& entry : node) {
      if (auto error = structure_error(entry, where + "[]", depth + 1, budget)) return error;
    }
  } else if (node.IsMap()) {
    std::set<std::string> keys;
    for (const auto& entry : node) {
      if (!entry.first.IsScalar()) return "a mapping key that is not a string at " + where;
      const std::string& key = entry.first.Scalar();
      const std::string path = where.empty() ? key : where + "." + key;
      if (key == "<<") return "an unresolved merge key (<<) at " + path + ": not a normalised model";
      if (!keys.insert(key).second) return "duplicate key " + path;
      if (auto error = structure_error(entry.second, path, depth + 1, budget)) return error;
    }
  }
  return std::nullopt;
}

// Whether `text` holds a `$` compose would interpolate ("$$" is an escaped one).
bool has_unescaped_dollar(const std::string& text) {
  for (std::size_t at = text.find('$'); at != std::string::npos; at = text.find('$', at + 2)) {
    if (at + 1 >= text.size() || text[at + 1] != '$') return true;
  }
  return false;
}

// Compose reads the saved model again when it runs it, and interpolates it again: a `$` the
// judged text still holds would become something else then (docker-compose 1.29 drops the
// escape of "$${A-..}" in volume and security_opt strings). Only environment values may keep
// one: they reach nothing but the container. "" when there is none.
std::string unescaped_dollar_at(const YAML::Node& node, const std::string& where, int depth) {
  if (depth > 64) return {};
  if (node.IsScalar()) return has_unescaped_dollar(node.Scalar()) ? (where.empty() ? "." : where) : "";
  if (node.IsSequence()) {
    for (const auto& entry : node) {
      if (auto at = unescaped_dollar_at(entry, where + "[]", depth + 1); !at.empty()) return at;
    }
  } else if (node.IsMap()) {
    for (const auto& entry : node) {
      const std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "";
      const std::string path = where.empty() ? key : where + "." + key;
      if (has_unescaped_dollar(key)) return path;
      const bool environment =
          where.rfind("services.", 0) == 0 && key == "environment" && std::count(where.begin(), where.end(), '.') == 1;
      if (environment) continue;
      if (auto at = unescaped_dollar_at(entry.second, path, depth + 1); !at.empty()) return at;
    }
  }
  return {};
}

std::optional<std::string> model_error(const YAML::Node& model) {
  if (!model.IsMap()) return "the compose model is not a mapping";
  std::size_t budget = 100'000;  // normalised models have hundreds of nodes
  if (auto error = structure_error(model, "", 0, budget)) return "the compose model has " + *error;
  if (auto at = unescaped_dollar_at(model, "", 0); !at.empty())
    return "the compose model still holds a $ at " + at +
           ", which compose would interpolate again when it runs the model";
  const YAML::Node services = get(model, "services");
  if (!services.IsMap() || services.size() == 0) return "the compose model has no services mapping";
  for (const auto& entry : services) {
    if (!entry.second.IsMap()) return "compose service \"" + entry.first.Scalar() + "\" is not a mapping";
  }
  for (std::string_view section : {"volumes", "networks"}) {
    const YAML::Node definitions = get(model, section);
    if (!definitions.IsDefined() || definitions.IsNull()) continue;
    if (!definitions.IsMap()) return "top-level " + std::string(section) + " is not a mapping";
    for (const auto& entry : definitions) {
      if (!entry.second.IsNull() && !entry.second.IsMap()) {
        return std::string(section) + " \"" + entry.first.Scalar() + "\" is not a mapping";
      }
    }
  }
  return std::nullopt;
}

std::optional<YAML::Node> load_yaml(std::string_view text) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
}

void append_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {  // keeps a refusal on one line
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string Violation::to_string() const {
  std::string out;
  if (!compose_service.empty()) {
    out += "service \"";
    append_escaped(out, compose_service);
    out += "\": ";
  }
  out += "key \"";
  append_escaped(out, key);
  out += "\": value \"";
  append_escaped(out, value);
  out += "\": ";
  out += reason;
  return out;
}

Expected<std::vector<Violation>, std::string> check_compose_policy(std::string_view normalized_yaml,
                                                                   const PolicyContext& context) {
  try {
    YAML::Node model;
    try {
      model = YAML::Load(std::string(normalized_yaml));
    } catch (const YAML::Exception& e) {
      return Unexpected{std::string("the compose model is not valid YAML: ") + e.what()};
    }
    if (auto error = model_error(model)) return Unexpected{*error};
    if (context.root) return std::vector<Violation>{};

    Judge judge(model, context);
    judge_keys(judge, "", "", model, kTopLevelRows);
    for (const auto& entry : get(model, "services")) {
      const std::string service = entry.first.Scalar();
      judge_keys(judge, service, "", entry.second, kServiceRows);
      check_service_networks(judge, service, entry.second);
      check_built_image(judge, service, entry.second);
    }
    check_bind_nesting(judge);
    return judge.take_violations();
  } catch (const std::exception& e) {
    // A shape this code did not foresee, or a failing resolver: cannot be judged.
    return Unexpected{std::string("the compose model cannot be judged: ") + e.what()};
  }
}

namespace {

std::string_view rule_name(Rule rule) {
  switch (rule) {
    case Rule::kAllowed:
      return "allowed";
    case Rule::kRefused:
      return "refused";
    case Rule::kRefusedWhen:
      return "refused when";
    case Rule::kChecked:
      return "judged";
    case Rule::kNested:
      return "keys below";
  }
  return "";
}

void add_rows(std::vector<PolicyRow>& out, const std::string& prefix, const std::vector<Row>& rows) {
  for (const auto& row : rows) {
    const std::string key = prefix + std::string(row.key);
    out.push_back({key, std::string(rule_name(row.rule)), std::string(row.why)});
    if (row.rule == Rule::kNested) add_rows(out, key + ".", *row.nested);
  }
}

}  // namespace

std::vector<PolicyRow> compose_policy_table() {
  std::vector<PolicyRow> out;
  add_rows(out, "", kTopLevelRows);
  add_rows(out, "services.<s>.", kServiceRows);
  add_rows(out, "services.<s>.build.", kBuildRows);
  add_rows(out, "services.<s>.depends_on.<s>.", kDependsOnRows);
  add_rows(out, "services.<s>.networks.<n>.", kServiceNetworkRows);
  add_rows(out, "services.<s>.post_start[].", kHookRows);
  add_rows(out, "services.<s>.pre_stop[].", kHookRows);
  add_rows(out, "services.<s>.volumes[].", kMountRows);
  add_rows(out, "volumes.<v>.", kVolumeRows);
  add_rows(out, "networks.<n>.", kNetworkRows);
  return out;
}

namespace {

// The paths a raw compose file names for compose to read: env_file and label_file (any
// service, any x- anchor they may be merged from), include entries and extends files.
struct RawReference {
  std::string key;            // env_file, label_file, include, extends.file
  std::string path;           // as written
  bool compose_file = false;  // a compose file to scan in turn
};

void collect_paths(const YAML::Node& value, const std::string& key, bool compose_file, std::vector<RawReference>& out) {
  const auto add = [&](const YAML::Node& node) {
    if (is_scalar(node)) out.push_back({key, node.Scalar(), compose_file});
  };
  if (value.IsSequence()) {
    for (const auto& entry : value) add(entry.IsMap() ? get(entry, "path") : YAML::Node(entry));
  } else {
    add(value.IsMap() ? get(value, "path") : value);
  }
}

void collect_raw_references(const YAML::Node& node, int depth, std::size_t& budget, std::vector<RawReference>& out) {
  if (depth > 64 || budget == 0) return;
  --budget;
  if (node.IsSequence()) {
    for (const auto& entry : node) collect_raw_references(entry, depth + 1, budget, out);
    return;
  }
  if (!node.IsMap()) return;
  for (const auto& entry : node) {
    const std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "";
    if (key == "env_file" || key == "label_file") {
      collect_paths(entry.second, key, false, out);
    } else if (key == "include" && depth == 0) {
      for (const auto& include : entry.second) {
        if (include.IsMap()) {
          collect_paths(get(include, "path"), "include", true, out);
          collect_paths(get(include, "env_file"), "include.env_file", false, out);
          collect_paths(get(include, "project_directory"), "include.project_directory", false, out);
        } else {
          collect_paths(include, "include", true, out);
        }
      }
    } else if (key == "extends" && entry.second.IsMap()) {
      collect_paths(get(entry.second, "file"), "extends.file", true, out);
    } else {
      collect_raw_references(entry.second, depth + 1, budget, out);
    }
  }
}

// nullopt when it cannot be opened or read, or is larger than 1 MiB.
std::optional<std::string> read_small_file(const std::string& path) {
  constexpr std::size_t kMaxRawFile = 1 << 20;
  const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return std::nullopt;
  auto text = read_bounded(fd.get(), kMaxRawFile, path);
  if (!text) return std::nullopt;
  return std::move(*text);
}

}  // namespace

std::vector<Violation> check_raw_host_files(const PolicyContext& context, const std::string& compose_file) {
  if (context.root) return {};
  Judge judge(YAML::Node(YAML::NodeType::Map), context);
  const auto refuse = [&](const std::string& key, const std::string& value, const std::string& why) {
    judge.refuse("", key, value, why);
  };
  // Compose reads a .env for interpolation from the project directory (the checkout) and from
  // each compose file's directory (a configured file in a sub-directory, an included file, an
  // include's project_directory).
  std::set<std::string> env_dirs;
  const auto judge_dot_env = [&](const std::string& directory) {
    if (!env_dirs.insert(directory).second) return;
    const std::string dot_env = directory + "/.env";
    struct stat info {};
    if (lstat(dot_env.c_str(), &info) != 0) return;
    if (auto why = judge.why_host_path_refused(dot_env, Judge::Allowed::kCheckout, Judge::Relative::kToCheckout))
      refuse(".env", dot_env.substr(std::min(dot_env.size(), context.checkout_dir.size() + 1)), *why);
  };
  judge_dot_env(context.checkout_dir);
  // The compose file itself, through symlinks.
  if (auto why = judge.why_host_path_refused(compose_file, Judge::Allowed::kCheckout, Judge::Relative::kToCheckout))
    refuse("compose file", compose_file, *why);
  std::deque<std::string> pending = {compose_file};
  std::set<std::string> scanned;
  constexpr std::size_t kMaxComposeFiles = 32;
  while (!pending.empty()) {
    const std::string file = pending.front();
    pending.pop_front();
    if (!scanned.insert(file).second) continue;
    if (scanned.size() > kMaxComposeFiles) {
      refuse("include", file, "more than 32 compose files cannot be judged");
      break;
    }
    const std::string absolute = file.front() == '/' ? file : context.checkout_dir + "/" + file;
    const std::string directory = absolute.substr(0, absolute.rfind('/'));
    judge_dot_env(directory);
    const auto text = read_small_file(absolute);
    if (!text) continue;  // compose reports what it cannot read
    const auto model = load_yaml(*text);
    if (!model) {
      refuse("include", file, "the file is not YAML pgod can read, so what it names cannot be judged");
      continue;
    }
    std::vector<RawReference> references;
    std::size_t budget = 100'000;
    collect_raw_references(*model, 0, budget, references);
    std::set<std::pair<std::string, std::string>> judged;  // an alias is walked once per use
    for (const auto& reference : references) {
      if (!judged.emplace(reference.key, reference.path).second) continue;
      if (reference.path.find('$') != std::string::npos) {
        refuse(reference.key, reference.path, "a file path with ${...} cannot be judged before compose reads it");
        continue;
      }
      const std::string path = reference.path.front() == '/' ? reference.path : directory + "/" + reference.path;
      const bool in_data_dir_too = !reference.compose_file && reference.key != "include.project_directory";
      const auto why = judge.why_host_path_refused(
          path, in_data_dir_too ? Judge::Allowed::kCheckoutOrDataDir : Judge::Allowed::kCheckout,
          Judge::Relative::kToCheckout);
      if (why) {
        refuse(reference.key, reference.path, "file " + *why);
      } else if (reference.compose_file) {
        pending.push_back(path);
      } else if (reference.key == "include.project_directory") {
        judge_dot_env(path);
      }
    }
  }
  return judge.take_violations();
}

std::optional<std::chrono::seconds> compose_health_timeout(std::string_view yaml) {
  try {
    const auto model = load_yaml(yaml);
    if (!model) return std::nullopt;
    const YAML::Node timeout = get(get(*model, "x-pgo"), "health_timeout");
    if (!is_scalar(timeout)) return std::nullopt;
    const auto parsed = parse_duration(timeout.Scalar());
    if (!parsed || *parsed < std::chrono::seconds(1) || *parsed > std::chrono::hours(1)) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::seconds>(*parsed);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool compose_reload_enabled(std::string_view yaml) {
  try {
    const auto model = load_yaml(yaml);
    if (!model) return true;
    const YAML::Node reload = get(get(*model, "x-pgo"), "reload");
    if (!is_scalar(reload)) return true;
    const std::string value = lowercase(reload.Scalar());
    return !(value == "false" || value == "no" || value == "off");
  } catch (const std::exception&) {
    return true;
  }
}

namespace {

// The path relative to the checkout when it is lexically inside it ("." for the checkout itself).
std::optional<std::string> relative_to_checkout(const std::string& path, const std::string& checkout_dir) {
  if (path.empty() || path.front() == '~') return std::nullopt;
  const auto parts = cleaned_components(is_absolute(path) ? path : checkout_dir + "/" + path);
  const auto base = cleaned_components(checkout_dir);
  if (!parts || !base || !is_inside(*parts, *base)) return std::nullopt;
  std::string relative;
  for (std::size_t i = base->size(); i < parts->size(); ++i) relative += (relative.empty() ? "" : "/") + (*parts)[i];
  return relative.empty() ? "." : relative;
}

}  // namespace

std::vector<std::string> referenced_checkout_paths(std::string_view normalized_yaml, const std::string& checkout_dir) {
  std::set<std::string> paths;
  try {
    const auto model = load_yaml(normalized_yaml);
    if (!model || !model->IsMap()) return {};
    const auto add = [&](const std::string& path) {
      if (auto relative = relative_to_checkout(path, checkout_dir)) paths.insert(*relative);
    };
    for (const auto& named_service : get(*model, "services")) {
      const YAML::Node& service = named_service.second;
      if (!service.IsMap()) continue;
      const YAML::Node env_file = get(service, "env_file");
      const auto add_env_file = [&](const YAML::Node& entry) {
        const YAML::Node path = entry.IsMap() ? get(entry, "path") : entry;
        if (is_scalar(path)) add(path.Scalar());
      };
      if (env_file.IsSequence()) {
        for (const auto& entry : env_file) add_env_file(entry);
      } else {
        add_env_file(env_file);
      }
      const YAML::Node volumes = get(service, "volumes");
      if (volumes.IsSequence()) {
        for (const auto& entry : volumes) {
          const auto mount = parse_mount(entry);
          if (mount && mount->type == "bind") add(mount->source);
        }
      }
      const YAML::Node build = get(service, "build");
      const YAML::Node context_node = build.IsMap() ? get(build, "context") : build;
      if (build.IsDefined() && !build.IsNull() && (!context_node.IsDefined() || is_scalar(context_node))) {
        const std::string context = is_scalar(context_node) ? context_node.Scalar() : ".";
        if (!is_remote_build_context(context)) {
          add(context);
          const YAML::Node given = build.IsMap() ? get(build, "dockerfile") : YAML::Node();
          const YAML::Node dockerfile = is_scalar(given) ? given : YAML::Node("Dockerfile");
          if (is_scalar(dockerfile) && !dockerfile.Scalar().empty()) {
            const std::string& file = dockerfile.Scalar();
            const std::string base = is_absolute(context) ? context : checkout_dir + "/" + context;
            add(is_absolute(file) ? file : base + "/" + file);
          }
        }
      }
      // Raw files only (config resolves them): the file an `extends` reads.
      const YAML::Node extends_file = get(get(service, "extends"), "file");
      if (is_scalar(extends_file)) add(extends_file.Scalar());
    }
  } catch (const std::exception&) {
    return {};
  }
  return {paths.begin(), paths.end()};
}

}  // namespace pgod::worker
