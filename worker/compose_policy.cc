#include "compose_policy.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <deque>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "service_name.h"

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

// ---------------------------------------------------------------------------------------------
// The model being judged, and the violations found so far

class Judge {
 public:
  Judge(const YAML::Node& model, const PolicyContext& context)
      : context_(context), project_(compose_project_name(context.service)) {
    resolve_ = context.resolve ? context.resolve : resolve_on_filesystem;
    for (const auto& entry : get(model, "services")) service_names_.insert(entry.first.Scalar());
    for (const auto& entry : get(model, "volumes")) volume_keys_.insert(entry.first.Scalar());
    for (const auto& entry : get(model, "networks")) network_keys_.insert(entry.first.Scalar());
    if (auto checkout = resolved_base(context.checkout_dir)) {
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

  // Why a host path may not be used, or nullopt when it may.
  std::optional<std::string> why_host_path_refused(std::string path, Allowed allowed, Relative relative) const {
    if (path.empty()) return "an empty path cannot be judged";
    if (path.front() == '~') return "a home-relative path cannot be judged";
    if (path.front() != '/') {
      if (relative == Relative::kRefused) return "a relative path is resolved by the daemon, not by compose";
      path = context_.checkout_dir + "/" + path;
    }
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
  std::vector<Violation> violations_;
};

// ---------------------------------------------------------------------------------------------
// Per-entry checks for keys whose value is a list or a structure

constexpr char kCannotJudgeList[] = "cannot be judged: expected a list";

template <class EachEntry>
void for_each_entry(Judge& judge, const std::string& service, const std::string& key, const YAML::Node& value,
                    EachEntry&& each) {
  if (!value.IsSequence()) return judge.refuse(service, key, value, kCannotJudgeList);
  for (const auto& entry : value) each(entry);
}

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

void check_security_opt(Judge& judge, const std::string& service, const YAML::Node& value) {
  for_each_entry(judge, service, "security_opt", value, [&](const YAML::Node& entry) {
    if (auto why = why_security_opt_refused(entry)) judge.refuse(service, "security_opt", entry, *why);
  });
  if (value.IsSequence() && value.size() > 1) {
    judge.refuse(service, "security_opt", value, "more than one security_opt is refused");
  }
}

// A service volume in either shape: v1's "SRC:TARGET[:MODE]" strings or the long form.
struct Mount {
  std::string type;    // "bind", "volume", or what the long form says
  std::string source;  // empty for an anonymous volume
};

std::optional<Mount> parse_mount(const YAML::Node& entry) {
  if (is_scalar(entry)) {
    const std::string& spec = entry.Scalar();
    const std::size_t colon = spec.find(':');
    if (colon == std::string::npos) return Mount{"volume", ""};  // anonymous: "/target"
    std::string source = spec.substr(0, colon);
    if (source.empty()) return std::nullopt;
    // Compose's own rule: a source starting with '.', '/' or '~' is a host path.
    const bool host_path = source.front() == '/' || source.front() == '.' || source.front() == '~';
    return Mount{host_path ? "bind" : "volume", std::move(source)};
  }
  if (!entry.IsMap()) return std::nullopt;
  const YAML::Node type = get(entry, "type");
  const YAML::Node source = get(entry, "source");
  if (!is_scalar(type)) return std::nullopt;
  if (source.IsDefined() && !source.IsNull() && !is_scalar(source)) return std::nullopt;
  return Mount{type.Scalar(), scalar_or_empty(source)};
}

void check_volumes(Judge& judge, const std::string& service, const YAML::Node& value) {
  for_each_entry(judge, service, "volumes", value, [&](const YAML::Node& entry) {
    const auto mount = parse_mount(entry);
    if (!mount) return judge.refuse(service, "volumes", entry, "cannot be judged: unexpected volume shape");
    if (mount->type == "bind") {
      if (mount->source.empty()) return judge.refuse(service, "volumes", entry, "a bind mount without a source");
      const auto why =
          judge.why_host_path_refused(mount->source, Judge::Allowed::kCheckoutOrDataDir, Judge::Relative::kToCheckout);
      if (why) judge.refuse(service, "volumes", entry, "bind source " + *why);
    } else if (mount->type == "volume") {
      // A name compose does not declare is a raw docker volume, possibly another project's.
      if (!mount->source.empty() && !judge.is_declared_volume(mount->source)) {
        judge.refuse(service, "volumes", entry, "named volume not declared in the top-level volumes");
      }
    } else {
      judge.refuse(service, "volumes", entry, "only volumes of type bind or volume are allowed");
    }
  });
}

// volumes_from: another service of this project ("db", "db:ro", v1's "service:db:rw"); a
// "container:..." or an unknown name reads another project's container.
void check_volumes_from(Judge& judge, const std::string& service, const YAML::Node& value) {
  for_each_entry(judge, service, "volumes_from", value, [&](const YAML::Node& entry) {
    if (!is_scalar(entry)) return judge.refuse(service, "volumes_from", entry, "cannot be judged: expected a string");
    std::string source = entry.Scalar();
    if (starts_with_ci(source, "container:")) {
      return judge.refuse(service, "volumes_from", entry, "volumes from containers outside the project are refused");
    }
    if (source.rfind("service:", 0) == 0) source.erase(0, std::string_view("service:").size());
    if (source.size() > 3 && (source.ends_with(":ro") || source.ends_with(":rw"))) source.resize(source.size() - 3);
    if (!judge.is_service(source)) {
      judge.refuse(service, "volumes_from", entry, "not a service of this project");
    }
  });
}

// env_file: v2 writes a list of strings or of {path, required}; v1 folds the files into
// `environment` and drops the key. Compose reads these files as the user.
void check_env_file(Judge& judge, const std::string& service, const YAML::Node& value) {
  const auto check_one = [&](const YAML::Node& entry) {
    const YAML::Node path = entry.IsMap() ? get(entry, "path") : entry;
    if (!is_scalar(path)) return judge.refuse(service, "env_file", entry, "cannot be judged: expected a path");
    const auto why =
        judge.why_host_path_refused(path.Scalar(), Judge::Allowed::kCheckoutOrDataDir, Judge::Relative::kToCheckout);
    if (why) judge.refuse(service, "env_file", entry, "env file " + *why);
  };
  if (value.IsSequence()) {
    for (const auto& entry : value) check_one(entry);
  } else {
    check_one(value);
  }
}

// build: a context (v1 raw files may give it as the whole value) and the Dockerfile must be in
// the checkout unless the context is remote.
void check_build(Judge& judge, const std::string& service, const YAML::Node& value) {
  if (!value.IsMap() && !value.IsScalar()) return judge.refuse(service, "build", value, "cannot be judged");
  const YAML::Node context_node = value.IsMap() ? get(value, "context") : value;
  if (context_node.IsDefined() && !context_node.IsNull() && !is_scalar(context_node)) {
    return judge.refuse(service, "build.context", context_node, "cannot be judged: expected a path or URL");
  }
  const std::string context = context_node.IsDefined() && !context_node.IsNull() ? context_node.Scalar() : ".";
  const bool remote = is_remote_build_context(context);
  const auto inside_checkout = [&](const std::string& key, const std::string& path, const YAML::Node& written) {
    const auto why = judge.why_host_path_refused(path, Judge::Allowed::kCheckout, Judge::Relative::kToCheckout);
    if (why) judge.refuse(service, key, written, *why);
  };
  if (!remote) inside_checkout("build.context", context, context_node.IsDefined() ? context_node : YAML::Node(context));
  if (!value.IsMap()) return;

  const YAML::Node dockerfile = get(value, "dockerfile");
  if (asks_for_something(dockerfile) && !remote) {
    if (!is_scalar(dockerfile)) return judge.refuse(service, "build.dockerfile", dockerfile, "cannot be judged");
    // The Dockerfile is read by the compose client, which joins it to the context lexically
    // ("../Dockerfile.app" beside a sub-directory context is common); symlinks still resolve.
    const std::string& file = dockerfile.Scalar();
    const std::string base = is_absolute(context) ? context : judge.context().checkout_dir + "/" + context;
    const auto joined = cleaned_components(is_absolute(file) ? file : base + "/" + file);
    if (!joined) return judge.refuse(service, "build.dockerfile", dockerfile, "a path above / cannot be judged");
    inside_checkout("build.dockerfile", join_path(*joined), dockerfile);
  }
  // Build containers run with these too: the same rules as for the service itself.
  const YAML::Node network = get(value, "network");
  if (is_scalar(network) && (lowercase(network.Scalar()) == "host" || starts_with_ci(network.Scalar(), "container:"))) {
    judge.refuse(service, "build.network", network, "builds on the host's or another container's network are refused");
  }
  const YAML::Node privileged = get(value, "privileged");
  if (!is_clearly_false(privileged)) {
    judge.refuse(service, "build.privileged", privileged, "privileged builds are refused");
  }
  const YAML::Node entitlements = get(value, "entitlements");
  if (asks_for_something(entitlements)) {
    judge.refuse(service, "build.entitlements", entitlements,
                 "build entitlements (host network, insecure) are refused");
  }
  // More build contexts: local ones follow the context's rule (the build client reads them,
  // as the service's user, after the registry login); images and URLs are fine.
  const YAML::Node additional = get(value, "additional_contexts");
  if (asks_for_something(additional)) {
    if (!additional.IsMap() && !additional.IsSequence())
      return judge.refuse(service, "build.additional_contexts", additional, "cannot be judged");
    for (const auto& entry : additional) {
      const YAML::Node target = additional.IsMap() ? entry.second : entry;
      std::string path = is_scalar(target) ? target.Scalar() : "";
      if (additional.IsSequence()) path = path.substr(path.find('=') == std::string::npos ? 0 : path.find('=') + 1);
      if (path.empty()) {
        judge.refuse(service, "build.additional_contexts", target, "cannot be judged");
      } else if (!is_remote_build_context(path) && path.rfind("docker-image://", 0) != 0 &&
                 path.rfind("service:", 0) != 0) {
        inside_checkout("build.additional_contexts", path, target);
      }
    }
  }
  // ssh forwards an agent or key files into the build: the worker has no agent, and key
  // files would be the service user's.
  const YAML::Node ssh = get(value, "ssh");
  if (asks_for_something(ssh)) judge.refuse(service, "build.ssh", ssh, "forwarding ssh keys into builds is refused");
}

// ---------------------------------------------------------------------------------------------
// The rules, per compose service key. A rule sees the key's value only when it asks for
// something (not null, not an empty list or mapping).

using Predicate = bool (*)(const Judge&, const YAML::Node&);
using EntryCheck = void (*)(Judge&, const std::string& service, const YAML::Node&);

bool always(const Judge&, const YAML::Node&) { return true; }
bool is_true(const Judge&, const YAML::Node& value) { return !is_clearly_false(value); }
bool is_host(const Judge&, const YAML::Node& value) { return !is_scalar(value) || lowercase(value.Scalar()) == "host"; }
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
// network_mode may only join another service of this project ("service:db", case as docker
// reads it); host, container:..., bridge, none and network names are refused.
// `none` (no network at all) and a service of this project are fine; host, bridge (docker0,
// shared by every project) and container:<any> are not.
bool is_not_own_service(const Judge& judge, const YAML::Node& value) {
  if (!is_scalar(value)) return true;
  const std::string& mode = value.Scalar();
  if (mode == "none") return false;
  return mode.rfind("service:", 0) != 0 || !judge.is_service(mode.substr(std::string_view("service:").size()));
}

struct ServiceRule {
  std::string_view key;
  Predicate refused;        // a rule on the whole value, with `reason`,
  std::string_view reason;  //
  EntryCheck check;         // or one that judges the entries and gives its own reasons
};

const ServiceRule kServiceRules[] = {
    {"privileged", is_true, "privileged containers are refused", nullptr},
    {"network_mode", is_not_own_service, "only network_mode: none or service:<a service of this project> is allowed", nullptr},
    {"ipc", always, "sharing IPC namespaces is refused", nullptr},
    {"pid", always, "sharing PID namespaces is refused", nullptr},
    {"userns_mode", is_host, "the host user namespace is refused", nullptr},
    {"uts", is_host, "the host UTS namespace is refused", nullptr},
    {"cgroup", is_host, "the host cgroup namespace is refused", nullptr},
    {"cgroup_parent", always, "choosing the cgroup parent is refused", nullptr},
    {"device_cgroup_rules", always, "device cgroup rules are refused", nullptr},
    {"runtime", always, "choosing the container runtime is refused", nullptr},
    {"oom_score_adj", is_negative, "a negative oom_score_adj is refused", nullptr},
    {"cap_add", always, "adding capabilities is refused", nullptr},
    {"devices", always, "host devices are refused", nullptr},
    {"gpus", always, "host devices (GPUs) are refused", nullptr},
    {"storage_opt", always, "storage options are refused", nullptr},
    {"ports", always, "published ports are refused: use pgoctl or the proxy", nullptr},
    {"security_opt", nullptr, "", check_security_opt},
    {"volumes", nullptr, "", check_volumes},
    {"volumes_from", nullptr, "", check_volumes_from},
    {"env_file", nullptr, "", check_env_file},
    {"build", nullptr, "", check_build},
};

// Networks are judged even when the key is absent: the service is then on `default`.
void check_service_networks(Judge& judge, const std::string& service, const YAML::Node& definition) {
  const YAML::Node networks = get(definition, "networks");
  std::vector<std::string> names;
  if (!networks.IsDefined() || networks.IsNull()) {
    names.push_back("default");
  } else if (networks.IsMap()) {
    for (const auto& entry : networks) names.push_back(entry.first.Scalar());
  } else if (networks.IsSequence()) {
    for (const auto& entry : networks) {
      if (!is_scalar(entry)) return judge.refuse(service, "networks", networks, "cannot be judged: unexpected shape");
      names.push_back(entry.Scalar());
    }
  } else {
    return judge.refuse(service, "networks", networks, "cannot be judged: unexpected shape");
  }
  for (const auto& name : names) {
    if (name != "default" && !judge.is_declared_network(name)) {
      judge.refuse(service, "networks", name, "network not declared in the top-level networks");
    }
  }
  // With an allowed list, a service must not sit on the shared (proxy) network alone. A
  // service in another's network namespace (network_mode, judged above) has none of its own.
  if (!judge.context().allowed_networks.empty() && names.size() < 2 &&
      !asks_for_something(get(definition, "network_mode"))) {
    judge.refuse(service, "networks", networks.IsDefined() ? render(networks) : std::string("default"),
                 "at least two networks are required (one of the project's own besides the shared ones)");
  }
}

// ---------------------------------------------------------------------------------------------
// Top-level keys

bool is_external(const YAML::Node& definition) {
  const YAML::Node external = get(definition, "external");
  return external.IsMap() || !is_clearly_false(external);
}

void check_top_volumes(Judge& judge, const std::string&, const YAML::Node& volumes) {
  for (const auto& entry : volumes) {
    const std::string key = "volumes." + entry.first.Scalar();
    const YAML::Node& definition = entry.second;
    if (is_external(definition)) {
      judge.refuse("", key + ".external", get(definition, "external"),
                   "external volumes are refused (they may belong to another service)");
    } else if (const YAML::Node name = get(definition, "name"); name.IsDefined()) {
      if (!is_scalar(name) || name.Scalar().rfind(judge.project() + "_", 0) != 0) {
        judge.refuse("", key + ".name", name, "volume names must start with \"" + judge.project() + "_\"");
      }
    }
    const YAML::Node driver = get(definition, "driver");
    if (asks_for_something(driver) && !(is_scalar(driver) && driver.Scalar() == "local")) {
      judge.refuse("", key + ".driver", driver, "only the local volume driver is allowed");
    }
    const YAML::Node options = get(definition, "driver_opts");
    if (!asks_for_something(options)) continue;
    if (!options.IsMap()) {
      judge.refuse("", key + ".driver_opts", options, "cannot be judged: expected a mapping");
      continue;
    }
    // The local driver mounts `device` as root: a bind (o=bind, type none/bind) or any host
    // path (a block device) gets the bind-source rule.
    const YAML::Node device = get(options, "device");
    const std::string type = lowercase(scalar_or_empty(get(options, "type")));
    const std::string mount_options = "," + lowercase(scalar_or_empty(get(options, "o"))) + ",";
    const bool binds = type == "none" || type == "bind" || mount_options.find(",bind,") != std::string::npos ||
                       mount_options.find(",rbind,") != std::string::npos;
    if (!device.IsDefined() || device.IsNull()) continue;
    if (!is_scalar(device)) {
      judge.refuse("", key + ".driver_opts.device", device, "cannot be judged: expected a path");
    } else if (binds || device.Scalar().rfind('/', 0) == 0) {
      const auto why =
          judge.why_host_path_refused(device.Scalar(), Judge::Allowed::kCheckoutOrDataDir, Judge::Relative::kRefused);
      if (why) judge.refuse("", key + ".driver_opts.device", device, "volume device " + *why);
    }
  }
}

void check_top_networks(Judge& judge, const std::string&, const YAML::Node& networks) {
  const bool restricted = !judge.context().allowed_networks.empty();
  for (const auto& entry : networks) {
    const std::string& network_key = entry.first.Scalar();
    const std::string key = "networks." + network_key;
    const YAML::Node& definition = entry.second;
    const YAML::Node external = get(definition, "external");
    // An explicit name (or, in old files, external.name) is the docker network's real name.
    YAML::Node name = get(definition, "name");
    if (external.IsMap() && get(external, "name").IsDefined()) name = get(external, "name");
    if (name.IsDefined() && !is_scalar(name)) {
      judge.refuse("", key + ".name", name, "cannot be judged: expected a string");
      continue;
    }
    if (name.IsDefined() && lowercase(name.Scalar()) == "host") {
      judge.refuse("", key + ".name", name, "the host network is refused");
      continue;
    }
    if (is_external(definition)) {
      const std::string real_name = name.IsDefined() ? name.Scalar() : network_key;
      if (lowercase(real_name) == "host") {
        judge.refuse("", key + ".external", real_name, "the host network is refused");
      } else if (restricted && !judge.is_allowed_network(real_name)) {
        judge.refuse("", key + ".external", real_name, "external network not in this service's allowed networks");
      }
      continue;
    }
    if (name.IsDefined() && restricted && name.Scalar().rfind(judge.project() + "_", 0) != 0 &&
        !judge.is_allowed_network(name.Scalar())) {
      judge.refuse("", key + ".name", name,
                   "network names must start with \"" + judge.project() + "_\" or be an allowed network");
    }
    // Host-attached drivers (host, macvlan, ipvlan) put containers on the host's networks.
    const YAML::Node driver = get(definition, "driver");
    if (asks_for_something(driver) &&
        !(is_scalar(driver) && (driver.Scalar() == "bridge" || driver.Scalar() == "overlay"))) {
      judge.refuse("", key + ".driver", driver, "only the bridge and overlay network drivers are allowed");
    }
  }
}

struct TopLevelRule {
  std::string_view key;
  std::string_view reason;  // when set: any value is refused
  EntryCheck check;         // otherwise: judges the entries
};

const TopLevelRule kTopLevelRules[] = {
    {"configs", "configs are refused (they mount host files)", nullptr},
    {"secrets", "secrets are refused (they mount host files)", nullptr},
    {"include", "include must be resolved by compose config first", nullptr},
    {"volumes", "", check_top_volumes},
    {"networks", "", check_top_networks},
};

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

std::optional<std::string> model_error(const YAML::Node& model) {
  if (!model.IsMap()) return "the compose model is not a mapping";
  std::size_t budget = 100'000;  // normalised models have hundreds of nodes
  if (auto error = structure_error(model, "", 0, budget)) return "the compose model has " + *error;
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
    for (const auto& entry : get(model, "services")) {
      const std::string service = entry.first.Scalar();
      const YAML::Node& definition = entry.second;
      for (const auto& rule : kServiceRules) {
        const YAML::Node value = get(definition, rule.key);
        if (!asks_for_something(value)) continue;
        if (rule.check) {
          rule.check(judge, service, value);
        } else if (rule.refused(judge, value)) {
          judge.refuse(service, std::string(rule.key), value, std::string(rule.reason));
        }
      }
      check_service_networks(judge, service, definition);
    }
    for (const auto& rule : kTopLevelRules) {
      const YAML::Node value = get(model, rule.key);
      if (!asks_for_something(value)) continue;
      if (rule.check) {
        rule.check(judge, "", value);
      } else {
        judge.refuse("", std::string(rule.key), value, std::string(rule.reason));
      }
    }
    return judge.take_violations();
  } catch (const std::exception& e) {
    // A shape this code did not foresee, or a failing resolver: cannot be judged.
    return Unexpected{std::string("the compose model cannot be judged: ") + e.what()};
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
          const YAML::Node dockerfile = get(build, "dockerfile");
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
