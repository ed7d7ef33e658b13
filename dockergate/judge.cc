// The judges. Each request body is walked with a table per docker struct: one row per field, its
// rule and why. A field without a row is refused by name, so a field a newer docker adds is
// refused until someone has reviewed it; what goes on to dockerd is rebuilt from the rows' output
// only. The rules mirror worker/compose_policy.cc, in the daemon's vocabulary.
#include "judge.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "service_name.h"

namespace pgod::dockergate {
namespace {

// ---------------------------------------------------------------------------------------------
// Refusals

constexpr std::string_view kComposeProjectLabel = "com.docker.compose.project";
constexpr std::string_view kNotReviewed = "unknown field: not reviewed by the docker gate, refused";

using Outcome = Expected<Json, Refusal>;

// The value on one line, short, ASCII only: it goes into an error message and a log line.
std::string shown(const Json& value) {
  constexpr std::size_t kMaxShown = 100;
  std::string text = value.dump(-1, ' ', true, Json::error_handler_t::replace);
  if (text.size() > kMaxShown) text = text.substr(0, kMaxShown - 3) + "...";
  return text;
}

Unexpected<Refusal> refuse(std::string_view path, const Json& value, std::string_view why) {
  return Unexpected(Refusal{403, std::string(path) + ": " + shown(value) + ": " + std::string(why)});
}

Unexpected<Refusal> malformed(std::string_view path, const Json& value, std::string_view expected) {
  return Unexpected(
      Refusal{400, std::string(path) + ": " + shown(value) + ": malformed: expected " + std::string(expected)});
}

std::string join(std::string_view path, std::string_view name) {
  return path.empty() ? std::string(name) : std::string(path) + "." + std::string(name);
}

std::string indexed(std::string_view path, std::size_t index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

// What Go's encoder writes for a field left at its zero value: null, false, 0, "", [] or {}.
bool is_zero(const Json& value) {
  if (value.is_null()) return true;
  if (value.is_boolean()) return !value.get<bool>();
  if (value.is_number()) return value == 0;
  if (value.is_string()) return value.get_ref<const std::string&>().empty();
  return value.empty();  // array or object
}

const std::string* as_string(const Json& value) {
  return value.is_string() ? &value.get_ref<const std::string&>() : nullptr;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(separator, begin);
    parts.emplace_back(text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (end == std::string_view::npos) return parts;
    begin = end + 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Paths

using Components = std::vector<std::string>;

Components path_components(std::string_view path) {
  Components parts;
  for (auto& part : split(path, '/')) {
    if (!part.empty() && part != ".") parts.push_back(std::move(part));
  }
  return parts;
}

std::string join_path(const Components& parts) {
  if (parts.empty()) return "/";
  std::string out;
  for (const auto& part : parts) out += "/" + part;
  return out;
}

bool is_inside(const Components& path, const Components& base) {
  return path.size() >= base.size() && std::equal(base.begin(), base.end(), path.begin());
}

bool has_dot_dot(const Components& parts) { return std::find(parts.begin(), parts.end(), "..") != parts.end(); }

// compose_policy's list: the host's configuration and credentials, devices, kernel interfaces,
// the docker socket (/run, /var/run) and docker's own state, whatever the bind roots are.
constexpr std::string_view kForbiddenHostDirs[] = {"/etc",  "/root", "/dev",     "/proc",          "/sys",
                                                   "/boot", "/run",  "/var/run", "/var/lib/docker"};

// Under a forbidden directory, or above one (binding "/" or "/var" would expose it too).
bool touches_forbidden_dir(const Components& path) {
  return std::any_of(std::begin(kForbiddenHostDirs), std::end(kForbiddenHostDirs), [&](std::string_view dir) {
    const Components forbidden = path_components(dir);
    return is_inside(path, forbidden) || is_inside(forbidden, path);
  });
}

// ---------------------------------------------------------------------------------------------
// One request being judged

struct Judge {
  explicit Judge(JudgeContext& judge_context) : context(judge_context) {
    if (!context.resolve) context.resolve = resolve_bind_source;
  }

  JudgeContext& context;
  // Set while an endpoint is judged: on a network other projects share, names and addresses are
  // visible to them (compose_policy's rule for shared networks).
  bool shared_network = false;
  std::optional<std::vector<Components>> roots;  // resolved on first use

  const std::string& project() const { return context.service.project; }
  Owner& owner() { return context.owner; }

  // The bind roots as they resolve (pgod made them, but a root may sit below a symlink).
  const std::vector<Components>& bind_roots() {
    if (!roots) {
      roots.emplace();
      for (const auto& root : context.service.bind_roots) {
        const auto resolved = context.resolve(root);
        if (!resolved || resolved->empty() || resolved->front() != '/') continue;
        const Components parts = path_components(*resolved);
        if (!has_dot_dot(parts)) roots->push_back(parts);
      }
    }
    return *roots;
  }
};

bool is_own_network_name(const Judge& judge, const std::string& network) {
  return is_project_owned_name(judge.project(), network);
}

// Why a host path may not be bound, or the path it resolves to (what dockerd is then given, so
// what was judged is what is mounted).
Expected<std::string, Refusal> judge_bind_source(Judge& judge, const std::string& path, const Json& written,
                                                 const std::string& source) {
  if (source.empty() || source.front() != '/') return refuse(path, written, "a bind source must be an absolute path");
  const Components parts = path_components(source);
  if (has_dot_dot(parts)) return refuse(path, written, "a bind source with '..' cannot be judged");
  if (touches_forbidden_dir(parts))
    return refuse(path, written, "system directories (/etc, /root, /dev, /proc, /sys, /run, ...) are refused");
  const auto resolved = judge.context.resolve(source);
  if (!resolved || resolved->empty() || resolved->front() != '/')
    return refuse(path, written, "the bind source cannot be resolved (a symlink loop, or not a directory)");
  const Components real = path_components(*resolved);
  if (has_dot_dot(real)) return refuse(path, written, "the bind source cannot be resolved");
  if (touches_forbidden_dir(real))
    return refuse(path, written, "resolves (through symlinks) to " + join_path(real) + ", a system directory");
  const auto& roots = judge.bind_roots();
  if (std::none_of(roots.begin(), roots.end(), [&](const Components& root) { return is_inside(real, root); }))
    return refuse(path, written,
                  "resolves to " + join_path(real) + ", outside the service's directories (checkout, data directory)");
  return join_path(real);
}

// ---------------------------------------------------------------------------------------------
// The tables

using Check = Outcome (*)(Judge&, const std::string& path, const Json& value);

enum class Rule {
  kAllowed,   // any value: it reaches nothing outside the container or the project
  kZeroOnly,  // only at Go's zero value (null, false, 0, "", [], {}): asking for anything is refused
  kNullOnly,  // only null: even the empty value asks for something
  kChecked,   // `check` judges the value and returns what to send on
  kNested,    // null, or an object whose fields are judged by `nested`
};

struct Field {
  std::string_view name;  // exactly as docker spells it
  Rule rule;
  std::string_view why;  // the reason given when refused; otherwise why it is safe or how it is judged
  Check check = nullptr;
  const std::vector<Field>* nested = nullptr;
};

Outcome judge_fields(Judge& judge, const std::string& path, const Json& object, const std::vector<Field>& rows);

Outcome apply_row(Judge& judge, const std::string& path, const Json& value, const Field& row) {
  switch (row.rule) {
    case Rule::kAllowed:
      return value;
    case Rule::kZeroOnly:
      if (!is_zero(value)) return refuse(path, value, row.why);
      return value;
    case Rule::kNullOnly:
      if (!value.is_null()) return refuse(path, value, row.why);
      return value;
    case Rule::kChecked:
      return row.check(judge, path, value);
    case Rule::kNested:
      if (value.is_null()) return value;
      return judge_fields(judge, path, value, *row.nested);
  }
  return refuse(path, value, kNotReviewed);
}

Outcome judge_fields(Judge& judge, const std::string& path, const Json& object, const std::vector<Field>& rows) {
  if (!object.is_object()) return malformed(path, object, "an object");
  Json out = Json::object();
  for (const auto& item : object.items()) {
    // Not a structured binding: clang before 16 cannot capture one in the lambda below.
    const std::string& name = item.key();
    const Json& value = item.value();
    const std::string field_path = join(path, name);
    const auto row = std::find_if(rows.begin(), rows.end(), [&](const Field& r) { return r.name == name; });
    if (row == rows.end()) return refuse(field_path, value, kNotReviewed);
    auto judged = apply_row(judge, field_path, value, *row);
    if (!judged) return judged;
    out[name] = std::move(*judged);
  }
  return out;
}

// Calls each(path, entry) for the entries of a list (null is an empty list); the outputs make the
// list sent on.
template <class Each>
Outcome each_entry(const std::string& path, const Json& value, Each&& each) {
  if (value.is_null()) return value;
  if (!value.is_array()) return malformed(path, value, "a list");
  Json out = Json::array();
  for (std::size_t i = 0; i < value.size(); ++i) {
    auto judged = each(indexed(path, i), value[i]);
    if (!judged) return judged;
    out.push_back(std::move(*judged));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks shared by several tables

// A map of strings (labels, options): the shape only.
Outcome check_string_map(Judge&, const std::string& path, const Json& value) {
  if (value.is_null()) return value;
  if (!value.is_object()) return malformed(path, value, "an object of strings");
  for (const auto& [name, entry] : value.items()) {
    if (!entry.is_string()) return malformed(join(path, name), entry, "a string");
  }
  return value;
}

// Labels on something the project creates: compose's project label, when there, names this
// project (compose and the gate trust it to tell whose an object is).
Outcome check_labels(Judge& judge, const std::string& path, const Json& value) {
  auto judged = check_string_map(judge, path, value);
  if (!judged || value.is_null()) return judged;
  const auto project = value.find(kComposeProjectLabel);
  if (project != value.end() && *project != judge.project())
    return refuse(join(path, kComposeProjectLabel), *project,
                  "must be this service's project \"" + judge.project() + "\"");
  return value;
}

// The labels a created container, network or volume must carry: the project's, which is how the
// gate (and compose) later tell it is the project's own.
std::optional<Refusal> why_project_label_missing(const Judge& judge, const Json& body, std::string_view path) {
  const Json labels = body.is_object() && body.contains("Labels") ? body["Labels"] : Json();
  const Json project =
      labels.is_object() && labels.contains(kComposeProjectLabel) ? labels[kComposeProjectLabel] : Json();
  if (project == judge.project()) return std::nullopt;
  return refuse(join(path, kComposeProjectLabel), project,
                "the label must name this service's project \"" + judge.project() + "\"")
      .error;
}

// ulimits: compose_policy's names and ceilings (dockerd sets them as root, above the host's own
// hard limits if asked); rtprio and nice would let a container starve the host.
Outcome check_ulimits(Judge&, const std::string& path, const Json& value) {
  static const std::map<std::string, long long, std::less<>> kCeilings = {
      {"nofile", 1LL << 20},  {"nproc", 1LL << 20}, {"core", 1LL << 40},  {"memlock", 1LL << 36},
      {"stack", 1LL << 32},   {"fsize", 1LL << 40}, {"data", 1LL << 40},  {"as", 1LL << 40},
      {"rss", 1LL << 40},     {"cpu", 1LL << 32},   {"locks", 1LL << 20}, {"sigpending", 1LL << 20},
      {"msgqueue", 1LL << 30}};
  return each_entry(path, value, [&](const std::string& at, const Json& entry) -> Outcome {
    if (!entry.is_object()) return malformed(at, entry, "an object {Name, Soft, Hard}");
    const auto name = entry.find("Name");
    if (name == entry.end() || !name->is_string()) return malformed(join(at, "Name"), entry, "a ulimit name");
    const auto ceiling = kCeilings.find(name->get_ref<const std::string&>());
    if (ceiling == kCeilings.end())
      return refuse(join(at, "Name"), *name,
                    "only nofile, nproc, core, memlock, stack, fsize, data, as, rss, cpu, locks, sigpending and "
                    "msgqueue limits are allowed");
    for (const auto& [field, limit] : entry.items()) {
      if (field == "Name") continue;
      if (field != "Soft" && field != "Hard") return refuse(join(at, field), limit, kNotReviewed);
      if (!limit.is_number_integer() || limit.get<long long>() < 0 || limit.get<long long>() > ceiling->second)
        return refuse(join(at, field), limit,
                      "a ulimit must be a finite number of at most " + std::to_string(ceiling->second));
    }
    return entry;
  });
}

// ---------------------------------------------------------------------------------------------
// Container: namespaces and modes

// "container:<id or name>" of one of the project's own containers: the only way to share a
// namespace that stays inside the project. nullopt when `mode` is not of that form.
std::optional<bool> is_own_container_mode(Judge& judge, const std::string& mode) {
  constexpr std::string_view kPrefix = "container:";
  if (!mode.starts_with(kPrefix)) return std::nullopt;
  const std::string id = mode.substr(kPrefix.size());
  return !id.empty() && judge.owner().owns_container(id);
}

// A namespace mode: one of `allowed`, or container:<own> when `container` says so.
Outcome check_mode(Judge& judge, const std::string& path, const Json& value,
                   std::initializer_list<std::string_view> allowed, bool container, std::string_view why) {
  const std::string* mode = as_string(value);
  if (!mode) return malformed(path, value, "a string");
  if (std::find(allowed.begin(), allowed.end(), *mode) != allowed.end()) return value;
  if (container) {
    if (const auto own = is_own_container_mode(judge, *mode)) {
      if (*own) return value;
      return refuse(path, value, "only the project's own containers may share a namespace");
    }
  }
  return refuse(path, value, why);
}

Outcome check_pid_mode(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {""}, true,
                    "only a private PID namespace or container:<a container of this project> is allowed");
}
Outcome check_ipc_mode(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "private", "shareable", "none"}, true,
                    "the host IPC namespace is refused (private, shareable, none or container:<own>)");
}
Outcome check_cgroup(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {""}, true, "only container:<a container of this project> is allowed");
}
Outcome check_uts_mode(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {""}, false, "the host UTS namespace is refused");
}
Outcome check_userns_mode(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "private"}, false, "the host user namespace is refused");
}
Outcome check_cgroupns_mode(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "private"}, false, "only a private cgroup namespace is allowed");
}
Outcome check_isolation(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "default"}, false, "only the default isolation is allowed");
}

// The network a container starts on. Compose sends the network's name ("<project>_default", or
// an allowed external one), "none", or container:<id> for network_mode: service:<s>. The daemon's
// default (absent, "", "default") is the bridge every project shares (docker0), refused like
// bridge and host.
Outcome check_network_mode(Judge& judge, const std::string& path, const Json& value) {
  const std::string* mode = as_string(value);
  if (!mode) return malformed(path, value, "a string");
  const std::string lower = lowercase(*mode);
  if (lower == "host") return refuse(path, value, "the host network is refused");
  if (lower.empty() || lower == "default" || lower == "bridge")
    return refuse(path, value, "the default bridge network (docker0, shared by every project) is refused");
  if (*mode == "none") return value;
  if (const auto own = is_own_container_mode(judge, *mode)) {
    if (*own) return value;
    return refuse(path, value, "only the network of the project's own containers may be shared");
  }
  if (!judge.owner().may_join_network(*mode))
    return refuse(path, value, "a network this service may not join (its project's own, or pgo.toml networks)");
  return value;
}

// ---------------------------------------------------------------------------------------------
// Container: confinement

// security_opt as compose_policy judges it, in dockerd's forms ("seccomp=unconfined",
// "label:disable", "no-new-privileges"). no-new-privileges may not be turned off: dockerd would
// then override the host's default (compose_policy lets it pass; the gate is stricter).
std::optional<std::string> why_security_opt_refused(const std::string& written) {
  const std::string option = lowercase(written);
  const std::size_t separator = option.find_first_of("=:");
  const std::string name = option.substr(0, separator);
  const std::string value = separator == std::string::npos ? "" : option.substr(separator + 1);
  if (name == "no-new-privileges") {
    if (value.empty() || value == "true" || value == "1" || value == "t") return std::nullopt;
    return "turning no-new-privileges off is refused";
  }
  if (name == "seccomp") {
    if (value == "builtin") return std::nullopt;
    return value == "unconfined" ? "disables seccomp confinement" : "custom seccomp profiles are refused";
  }
  // A named profile may be one the host loads unconfined (Ubuntu ships many), and a chosen
  // SELinux type may be an unconfined one: docker's own profile and an MCS level only.
  if (name == "apparmor")
    return value == "docker-default" ? std::nullopt
                                     : std::optional<std::string>("only apparmor=docker-default is allowed");
  if (name == "label") {
    if (value.rfind("level:", 0) == 0) return std::nullopt;
    return "only label=level:... is allowed (other labels can choose an unconfined SELinux type)";
  }
  if (name == "systempaths") return "exposes masked kernel paths (/proc, /sys)";
  return "unknown security option";
}

Outcome check_security_opt(Judge&, const std::string& path, const Json& value) {
  if (value.is_array() && value.size() > 1) return refuse(path, value, "more than one security option is refused");
  return each_entry(path, value, [](const std::string& at, const Json& entry) -> Outcome {
    const std::string* option = as_string(entry);
    if (!option) return malformed(at, entry, "a string");
    if (auto why = why_security_opt_refused(*option)) return refuse(at, entry, *why);
    return entry;
  });
}

// The sysctls docker itself knows to be namespaced (net.*, IPC and mqueue); the rest are the
// host's.
Outcome check_sysctls(Judge& judge, const std::string& path, const Json& value) {
  static const std::set<std::string, std::less<>> kIpc = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                                          "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                                          "kernel.shmmni", "kernel.shm_rmid_forced"};
  auto judged = check_string_map(judge, path, value);
  if (!judged || value.is_null()) return judged;
  for (const auto& [name, setting] : value.items()) {
    if (name.starts_with("net.") || name.starts_with("fs.mqueue.") || kIpc.count(name) > 0) continue;
    return refuse(join(path, name), setting,
                  "only namespaced sysctls (net.*, fs.mqueue.*, kernel IPC limits) are allowed");
  }
  return value;
}

Outcome check_oom_score_adj(Judge&, const std::string& path, const Json& value) {
  if (!value.is_number_integer()) return malformed(path, value, "an integer");
  if (value.get<long long>() < 0) return refuse(path, value, "a negative OomScoreAdj is refused");
  return value;
}

// Drivers that keep logs on this host. Options are the local driver's own; with Type "" they
// would go to the daemon's default driver, whatever the host chose, so they cannot be judged.
Outcome check_log_config(Judge& judge, const std::string& path, const Json& value) {
  static const std::set<std::string, std::less<>> kLocal = {"", "json-file", "local", "journald", "none"};
  if (value.is_null()) return value;
  if (!value.is_object()) return malformed(path, value, "an object {Type, Config}");
  for (const auto& [name, field] : value.items()) {
    if (name != "Type" && name != "Config") return refuse(join(path, name), field, kNotReviewed);
  }
  const Json type = value.contains("Type") ? value["Type"] : Json("");
  if (!type.is_string()) return malformed(join(path, "Type"), type, "a string");
  if (kLocal.count(type.get_ref<const std::string&>()) == 0)
    return refuse(join(path, "Type"), type, "only the json-file, local, journald and none logging drivers are allowed");
  const Json config = value.contains("Config") ? value["Config"] : Json();
  if (auto judged = check_string_map(judge, join(path, "Config"), config); !judged) return judged;
  if (type == "" && !is_zero(config))
    return refuse(join(path, "Config"), config, "options for the daemon's default logging driver cannot be judged");
  return value;
}

// ---------------------------------------------------------------------------------------------
// Container: other containers

// The container part of "name[:suffix]", with the leading "/" docker's names carry.
std::string container_of(const std::string& entry) { return entry.substr(0, entry.find(':')); }

// VolumesFrom: "<container>[:ro|:rw]" of the project's own.
Outcome check_volumes_from(Judge& judge, const std::string& path, const Json& value) {
  return each_entry(path, value, [&](const std::string& at, const Json& entry) -> Outcome {
    const std::string* spec = as_string(entry);
    if (!spec) return malformed(at, entry, "a string");
    const std::string container = container_of(*spec);
    if (container.empty() || !judge.owner().owns_container(container))
      return refuse(at, entry, "volumes from containers outside the project are refused");
    return entry;
  });
}

// Links: "<container>[:alias]" of the project's own.
Outcome check_links(Judge& judge, const std::string& path, const Json& value) {
  return each_entry(path, value, [&](const std::string& at, const Json& entry) -> Outcome {
    const std::string* spec = as_string(entry);
    if (!spec) return malformed(at, entry, "a string");
    const std::string container = container_of(*spec);
    if (container.empty() || !judge.owner().owns_container(container))
      return refuse(at, entry, "links to containers outside the project are refused");
    return entry;
  });
}

// ---------------------------------------------------------------------------------------------
// Container: mounts

// Bind options dockerd accepts in a Binds entry's third part; propagation other than private
// would let mounts cross between host and container.
std::optional<std::string> why_bind_mode_refused(const std::string& mode) {
  static const std::set<std::string, std::less<>> kAllowed = {
      "ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "cached", "delegated", "consistent"};
  static const std::set<std::string, std::less<>> kPropagation = {"shared", "rshared", "slave", "rslave"};
  for (const auto& option : split(mode, ',')) {
    if (kPropagation.count(option) > 0) return "mount propagation other than private is refused";
    if (kAllowed.count(option) == 0) return "unknown bind option \"" + option + "\"";
  }
  return std::nullopt;
}

// Binds: "src:dst[:mode]". An absolute src is a host path (judged, then sent on resolved); any
// other src names a volume, which must be the project's own; "dst" alone is an anonymous volume.
Outcome check_binds(Judge& judge, const std::string& path, const Json& value) {
  return each_entry(path, value, [&](const std::string& at, const Json& entry) -> Outcome {
    const std::string* spec = as_string(entry);
    if (!spec) return malformed(at, entry, "a string \"src:dst[:mode]\"");
    const auto parts = split(*spec, ':');
    if (parts.size() == 1) return entry;
    if (parts.size() > 3) return malformed(at, entry, "\"src:dst[:mode]\"");
    const std::string& source = parts[0];
    if (source.empty()) return refuse(at, entry, "a bind without a source cannot be judged");
    if (parts.size() == 3) {
      if (auto why = why_bind_mode_refused(parts[2])) return refuse(at, entry, *why);
    }
    if (source.front() != '/') {
      if (!judge.owner().owns_volume(source)) return refuse(at, entry, "a volume that is not the project's own");
      return entry;
    }
    auto resolved = judge_bind_source(judge, at, entry, source);
    if (!resolved) return Unexpected(std::move(resolved.error()));
    std::string out = *resolved + ":" + parts[1];
    if (parts.size() == 3) out += ":" + parts[2];
    return Json(std::move(out));
  });
}

Outcome check_propagation(Judge&, const std::string& path, const Json& value) {
  const std::string* mode = as_string(value);
  if (!mode) return malformed(path, value, "a string");
  if (!mode->empty() && *mode != "private" && *mode != "rprivate")
    return refuse(path, value, "mount propagation other than private is refused");
  return value;
}

// A path inside a volume: relative, never climbing out of it.
Outcome check_subpath(Judge&, const std::string& path, const Json& value) {
  const std::string* subpath = as_string(value);
  if (!subpath) return malformed(path, value, "a string");
  const auto parts = split(*subpath, '/');
  if ((!subpath->empty() && subpath->front() == '/') || std::find(parts.begin(), parts.end(), "..") != parts.end())
    return refuse(path, value, "a subpath must stay inside the volume (relative, no '..')");
  return value;
}

// A volume created on the fly by a mount: the local driver without options (options are how the
// local driver mounts host paths, devices or NFS as root).
Outcome check_volume_driver_config(Judge&, const std::string& path, const Json& value) {
  if (value.is_null()) return value;
  if (!value.is_object()) return malformed(path, value, "an object {Name, Options}");
  for (const auto& [name, field] : value.items()) {
    if (name == "Name") {
      if (field != "" && field != "local")
        return refuse(join(path, name), field, "only the local volume driver is allowed");
    } else if (name == "Options") {
      if (!is_zero(field)) return refuse(join(path, name), field, "volume driver options are refused");
    } else {
      return refuse(join(path, name), field, kNotReviewed);
    }
  }
  return value;
}

const std::vector<Field> kBindOptionRows = {
    {"Propagation", Rule::kChecked, "private or rprivate only: other modes let mounts cross", check_propagation},
    {"NonRecursive", Rule::kAllowed, "shows less of the judged source"},
    {"CreateMountpoint", Rule::kZeroOnly, "creating the bind source on the host is refused for mounts"},
    {"ReadOnlyNonRecursive", Rule::kAllowed, "how read-only the judged source is"},
    {"ReadOnlyForceRecursive", Rule::kAllowed, "how read-only the judged source is"},
};
const std::vector<Field> kVolumeOptionRows = {
    {"NoCopy", Rule::kAllowed, "inside the volume"},
    {"Labels", Rule::kChecked, "labels of a volume created on the fly: the project's label only", check_labels},
    {"Subpath", Rule::kChecked, "a path inside the project's own volume", check_subpath},
    {"DriverConfig", Rule::kChecked, "the local driver without options", check_volume_driver_config},
};
const std::vector<Field> kTmpfsOptionRows = {
    {"SizeBytes", Rule::kAllowed, "memory of the container"},
    {"Mode", Rule::kAllowed, "inside the container"},
    {"Options", Rule::kAllowed, "tmpfs flags, inside the container"},
};
const std::vector<Field> kMountRows = {
    {"Type", Rule::kAllowed, "bind, volume or tmpfs (judged with the source)"},
    {"Source", Rule::kAllowed, "judged by the type's rule"},
    {"Target", Rule::kAllowed, "a path inside the container"},
    {"ReadOnly", Rule::kAllowed, "narrows access"},
    {"Consistency", Rule::kAllowed, "ignored on Linux"},
    {"BindOptions", Rule::kNested, "bind options", nullptr, &kBindOptionRows},
    {"VolumeOptions", Rule::kNested, "volume options", nullptr, &kVolumeOptionRows},
    {"TmpfsOptions", Rule::kNested, "tmpfs options", nullptr, &kTmpfsOptionRows},
    {"ImageOptions", Rule::kZeroOnly, "image mounts are refused"},
    {"ClusterOptions", Rule::kZeroOnly, "swarm cluster volumes are refused"},
};

Outcome check_mounts(Judge& judge, const std::string& path, const Json& value) {
  return each_entry(path, value, [&](const std::string& at, const Json& entry) -> Outcome {
    auto judged = judge_fields(judge, at, entry, kMountRows);
    if (!judged) return judged;
    const Json type = entry.value("Type", Json(""));
    const Json source = entry.value("Source", Json(""));
    if (!source.is_string()) return malformed(join(at, "Source"), source, "a string");
    const std::string& name = source.get_ref<const std::string&>();
    if (type == "bind") {
      auto resolved = judge_bind_source(judge, join(at, "Source"), source, name);
      if (!resolved) return Unexpected(std::move(resolved.error()));
      (*judged)["Source"] = *resolved;
    } else if (type == "volume") {
      // An empty source is an anonymous volume; a name the project does not own is another's.
      if (!name.empty() && !judge.owner().owns_volume(name))
        return refuse(join(at, "Source"), source, "a volume that is not the project's own");
    } else if (type == "tmpfs") {
      if (!name.empty()) return refuse(join(at, "Source"), source, "a tmpfs mount has no source");
    } else {
      return refuse(join(at, "Type"), type, "only mounts of type bind, volume or tmpfs are allowed");
    }
    return judged;
  });
}

// ---------------------------------------------------------------------------------------------
// Container: networks

// Fixed addresses: on a network other projects share, an address can take another project's
// (compose_policy's rule); on the project's own networks they are its business. Compose copies
// ipv4_address into IPAddress and ipv6_address into IPv6Gateway as well as into IPAMConfig.
Outcome check_fixed_address(Judge& judge, const std::string& path, const Json& value) {
  bool empty = is_zero(value);
  if (value.is_object())
    empty = std::all_of(value.begin(), value.end(), [](const Json& field) { return is_zero(field); });
  if (judge.shared_network && !empty)
    return refuse(path, value, "a fixed address on a shared network can take another project's");
  return value;
}

// Aliases are names others on the network resolve. On a network other projects share, only the
// project's own names go on: compose adds the service's bare name ("web") on every network
// itself, so refusing it would refuse every shared network; it is dropped instead, as
// compose_policy refuses such names when the compose file asks for them.
Outcome check_aliases(Judge& judge, const std::string& path, const Json& value) {
  if (value.is_null()) return value;
  if (!value.is_array()) return malformed(path, value, "a list");
  Json out = Json::array();
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string* alias = as_string(value[i]);
    if (!alias) return malformed(indexed(path, i), value[i], "a string");
    if (judge.shared_network && !is_project_owned_name(judge.project(), *alias)) continue;
    out.push_back(value[i]);
  }
  return out;
}

const std::vector<Field> kEndpointIpamRows = {
    {"IPv4Address", Rule::kAllowed, "judged with the network: not on shared ones"},
    {"IPv6Address", Rule::kAllowed, "judged with the network: not on shared ones"},
    {"LinkLocalIPs", Rule::kAllowed, "judged with the network: not on shared ones"},
};

Outcome check_endpoint_ipam(Judge& judge, const std::string& path, const Json& value) {
  if (value.is_null()) return value;
  auto judged = judge_fields(judge, path, value, kEndpointIpamRows);
  if (!judged) return judged;
  return check_fixed_address(judge, path, value);
}

constexpr std::string_view kOperational = "operational data the daemon fills in: only its zero value is sent";

const std::vector<Field> kEndpointRows = {
    {"IPAMConfig", Rule::kChecked, "fixed addresses on the project's own networks", check_endpoint_ipam},
    {"Links", Rule::kChecked, "the project's own containers", check_links},
    {"Aliases", Rule::kChecked, "names on the network: the project's own on shared networks", check_aliases},
    {"MacAddress", Rule::kZeroOnly, "a fixed MAC address can take another container's on a shared network"},
    {"DriverOpts", Rule::kZeroOnly, "network driver options are refused"},
    {"GwPriority", Rule::kAllowed, "which network is the default gateway"},
    {"IPAddress", Rule::kChecked, "compose's copy of ipv4_address: judged like IPAMConfig", check_fixed_address},
    {"IPv6Gateway", Rule::kChecked, "compose's copy of ipv6_address: judged like IPAMConfig", check_fixed_address},
    {"NetworkID", Rule::kZeroOnly, kOperational},
    {"EndpointID", Rule::kZeroOnly, kOperational},
    {"Gateway", Rule::kZeroOnly, kOperational},
    {"IPPrefixLen", Rule::kZeroOnly, kOperational},
    {"GlobalIPv6Address", Rule::kZeroOnly, kOperational},
    {"GlobalIPv6PrefixLen", Rule::kZeroOnly, kOperational},
    {"DNSNames", Rule::kZeroOnly, kOperational},
};

// A network a container joins: one the project may join; never host or the shared bridge,
// whatever a lookup says. Its endpoint settings judged as on a shared network unless the name is
// the project's own.
Outcome judge_endpoint(Judge& judge, const std::string& path, const std::string& network, const Json& settings) {
  const std::string lower = lowercase(network);
  if (lower == "host" || lower == "bridge" || lower == "default" || network.empty())
    return refuse(path, Json(network), "the host and default bridge networks are refused");
  if (network != "none" && !judge.owner().may_join_network(network))
    return refuse(path, Json(network), "a network this service may not join (its project's own, or pgo.toml networks)");
  if (settings.is_null()) return settings;
  judge.shared_network = !is_own_network_name(judge, network);
  auto judged = judge_fields(judge, path, settings, kEndpointRows);
  judge.shared_network = false;
  return judged;
}

Outcome check_endpoints(Judge& judge, const std::string& path, const Json& value) {
  if (value.is_null()) return value;
  if (!value.is_object()) return malformed(path, value, "an object of networks");
  Json out = Json::object();
  for (const auto& [network, settings] : value.items()) {
    auto judged = judge_endpoint(judge, join(path, network), network, settings);
    if (!judged) return judged;
    out[network] = std::move(*judged);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Container: the rows

const std::vector<Field> kHealthcheckRows = {
    {"Test", Rule::kAllowed, "runs inside the container"},
    {"Interval", Rule::kAllowed, "timing"},
    {"Timeout", Rule::kAllowed, "timing"},
    {"StartPeriod", Rule::kAllowed, "timing"},
    {"StartInterval", Rule::kAllowed, "timing"},
    {"Retries", Rule::kAllowed, "timing"},
};
const std::vector<Field> kRestartPolicyRows = {
    {"Name", Rule::kAllowed, "when to restart"},
    {"MaximumRetryCount", Rule::kAllowed, "when to restart"},
};

constexpr std::string_view kNoDevices = "host devices are refused";
constexpr std::string_view kNoBlkioDevices = "block I/O settings name host devices";

const std::vector<Field> kHostConfigRows = {
    {"Binds", Rule::kChecked, "host paths inside the service's directories (sent resolved); its own volumes",
     check_binds},
    {"ContainerIDFile", Rule::kZeroOnly, "a host file: refused"},
    {"LogConfig", Rule::kChecked, "json-file, local, journald or none: logs stay on this host", check_log_config},
    {"NetworkMode", Rule::kChecked, "none, a network the project may join, or container:<own>", check_network_mode},
    {"PortBindings", Rule::kZeroOnly, "published ports are refused: use pgoctl or the proxy"},
    {"RestartPolicy", Rule::kNested, "when to restart", nullptr, &kRestartPolicyRows},
    {"AutoRemove", Rule::kAllowed, "the container's own lifetime"},
    {"VolumeDriver", Rule::kZeroOnly, "volume drivers other than local are refused"},
    {"VolumesFrom", Rule::kChecked, "the project's own containers", check_volumes_from},
    {"ConsoleSize", Rule::kAllowed, "the container's terminal"},
    {"Annotations", Rule::kZeroOnly, "OCI annotations reach the runtime, which may act on them"},
    {"CapAdd", Rule::kZeroOnly, "adding capabilities is refused"},
    {"CapDrop", Rule::kAllowed, "narrows the container"},
    {"CgroupnsMode", Rule::kChecked, "private only", check_cgroupns_mode},
    {"Dns", Rule::kAllowed, "resolver inside the container"},
    {"DnsOptions", Rule::kAllowed, "resolver inside the container"},
    {"DnsSearch", Rule::kAllowed, "resolver inside the container"},
    {"ExtraHosts", Rule::kAllowed, "/etc/hosts inside the container"},
    {"GroupAdd", Rule::kAllowed, "groups inside the container"},
    {"IpcMode", Rule::kChecked, "private, shareable, none or container:<own>", check_ipc_mode},
    {"Cgroup", Rule::kChecked, "container:<own> only", check_cgroup},
    {"Links", Rule::kChecked, "the project's own containers", check_links},
    {"OomScoreAdj", Rule::kChecked, "not negative", check_oom_score_adj},
    {"PidMode", Rule::kChecked, "private or container:<own>", check_pid_mode},
    {"Privileged", Rule::kZeroOnly, "privileged containers are refused"},
    {"PublishAllPorts", Rule::kZeroOnly, "published ports are refused: use pgoctl or the proxy"},
    {"ReadonlyRootfs", Rule::kAllowed, "narrows the container"},
    {"SecurityOpt", Rule::kChecked, "one option that keeps confinement on", check_security_opt},
    {"StorageOpt", Rule::kZeroOnly, "storage options are refused"},
    {"Tmpfs", Rule::kAllowed, "memory of the container"},
    {"UTSMode", Rule::kChecked, "private only", check_uts_mode},
    {"UsernsMode", Rule::kChecked, "never the host's", check_userns_mode},
    {"ShmSize", Rule::kAllowed, "memory of the container"},
    {"Sysctls", Rule::kChecked, "namespaced sysctls only", check_sysctls},
    {"Runtime", Rule::kZeroOnly, "choosing the container runtime is refused"},
    {"Isolation", Rule::kChecked, "the default only", check_isolation},
    // Resources, inlined by Go.
    {"CpuShares", Rule::kAllowed, "a weight"},
    {"Memory", Rule::kAllowed, "a limit"},
    {"NanoCpus", Rule::kAllowed, "a limit"},
    {"CgroupParent", Rule::kZeroOnly, "choosing the cgroup parent is refused"},
    {"BlkioWeight", Rule::kAllowed, "a weight"},
    {"BlkioWeightDevice", Rule::kZeroOnly, kNoBlkioDevices},
    {"BlkioDeviceReadBps", Rule::kZeroOnly, kNoBlkioDevices},
    {"BlkioDeviceWriteBps", Rule::kZeroOnly, kNoBlkioDevices},
    {"BlkioDeviceReadIOps", Rule::kZeroOnly, kNoBlkioDevices},
    {"BlkioDeviceWriteIOps", Rule::kZeroOnly, kNoBlkioDevices},
    {"CpuPeriod", Rule::kAllowed, "a limit"},
    {"CpuQuota", Rule::kAllowed, "a limit"},
    {"CpuRealtimePeriod", Rule::kZeroOnly, "real-time scheduling is refused"},
    {"CpuRealtimeRuntime", Rule::kZeroOnly, "real-time scheduling is refused"},
    {"CpusetCpus", Rule::kAllowed, "which CPUs"},
    {"CpusetMems", Rule::kAllowed, "which memory nodes"},
    {"Devices", Rule::kZeroOnly, kNoDevices},
    {"DeviceCgroupRules", Rule::kZeroOnly, "device cgroup rules are refused"},
    {"DeviceRequests", Rule::kZeroOnly, "host devices (GPUs) are refused"},
    {"KernelMemory", Rule::kZeroOnly, "deprecated kernel memory limits are not reviewed"},
    {"KernelMemoryTCP", Rule::kZeroOnly, "deprecated kernel memory limits are not reviewed"},
    {"MemoryReservation", Rule::kAllowed, "a scheduling hint"},
    {"MemorySwap", Rule::kAllowed, "a limit"},
    {"MemorySwappiness", Rule::kAllowed, "inside the container's limit"},
    {"OomKillDisable", Rule::kZeroOnly, "a container the OOM killer may not kill can exhaust the host's memory"},
    {"PidsLimit", Rule::kAllowed, "a limit"},
    {"Ulimits", Rule::kChecked, "finite, under a ceiling", check_ulimits},
    {"CpuCount", Rule::kAllowed, "a limit (Windows)"},
    {"CpuPercent", Rule::kAllowed, "a limit (Windows)"},
    {"IOMaximumIOps", Rule::kAllowed, "a limit (Windows)"},
    {"IOMaximumBandwidth", Rule::kAllowed, "a limit (Windows)"},
    // After Resources.
    {"Mounts", Rule::kChecked, "bind sources inside the service's directories (sent resolved); own volumes; tmpfs",
     check_mounts},
    // null keeps docker's masks; [] would unmask /proc and /sys.
    {"MaskedPaths", Rule::kNullOnly, "changing the masked paths is refused (even [] unmasks /proc)"},
    {"ReadonlyPaths", Rule::kNullOnly, "changing the read-only paths is refused (even [] makes /proc writable)"},
    {"Init", Rule::kAllowed, "docker's init inside the container"},
};

const std::vector<Field> kNetworkingConfigRows = {
    {"EndpointsConfig", Rule::kChecked, "networks the project may join, with judged settings", check_endpoints},
};

// Config is inlined at the top of a create body, beside HostConfig and NetworkingConfig.
const std::vector<Field> kContainerCreateRows = {
    {"Hostname", Rule::kAllowed, "inside the container; the project's own name on a shared network (judged after)"},
    {"Domainname", Rule::kAllowed, "inside the container"},
    {"User", Rule::kAllowed, "a user inside the container"},
    {"AttachStdin", Rule::kAllowed, "the client's streams"},
    {"AttachStdout", Rule::kAllowed, "the client's streams"},
    {"AttachStderr", Rule::kAllowed, "the client's streams"},
    {"ExposedPorts", Rule::kAllowed, "documentation: publishes nothing without PortBindings or PublishAllPorts"},
    {"Tty", Rule::kAllowed, "inside the container"},
    {"OpenStdin", Rule::kAllowed, "inside the container"},
    {"StdinOnce", Rule::kAllowed, "inside the container"},
    {"Env", Rule::kAllowed, "inside the container"},
    {"Cmd", Rule::kAllowed, "runs inside the container"},
    {"Healthcheck", Rule::kNested, "runs inside the container", nullptr, &kHealthcheckRows},
    {"ArgsEscaped", Rule::kAllowed, "how Cmd is quoted (Windows)"},
    {"Image", Rule::kAllowed, "any image to run"},
    {"Volumes", Rule::kAllowed, "anonymous volumes"},
    {"WorkingDir", Rule::kAllowed, "inside the container"},
    {"Entrypoint", Rule::kAllowed, "runs inside the container"},
    {"NetworkDisabled", Rule::kAllowed, "narrows the container"},
    {"MacAddress", Rule::kZeroOnly, "a fixed MAC address can take another container's on a shared network"},
    {"OnBuild", Rule::kAllowed, "image metadata"},
    {"Labels", Rule::kChecked, "this project's label (required)", check_labels},
    {"StopSignal", Rule::kAllowed, "inside the container"},
    {"StopTimeout", Rule::kAllowed, "timing"},
    {"Shell", Rule::kAllowed, "image metadata"},
    {"HostConfig", Rule::kNested, "see the HostConfig rows", nullptr, &kHostConfigRows},
    {"NetworkingConfig", Rule::kNested, "see the NetworkingConfig rows", nullptr, &kNetworkingConfigRows},
};

// The networks a judged container is on, by the names the client gave.
std::vector<std::string> networks_of(const Json& judged) {
  std::vector<std::string> names;
  const Json mode = judged.contains("HostConfig") && judged["HostConfig"].is_object()
                        ? judged["HostConfig"].value("NetworkMode", Json(""))
                        : Json("");
  if (mode.is_string() && mode != "none" && !mode.get_ref<const std::string&>().starts_with("container:"))
    names.push_back(mode.get<std::string>());
  if (judged.contains("NetworkingConfig") && judged["NetworkingConfig"].is_object()) {
    const Json endpoints = judged["NetworkingConfig"].value("EndpointsConfig", Json());
    if (endpoints.is_object()) {
      for (const auto& [network, settings] : endpoints.items()) names.push_back(network);
    }
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// Exec, networks, volumes

const std::vector<Field> kExecRows = {
    {"AttachStdin", Rule::kAllowed, "the client's streams"},
    {"AttachStdout", Rule::kAllowed, "the client's streams"},
    {"AttachStderr", Rule::kAllowed, "the client's streams"},
    {"ConsoleSize", Rule::kAllowed, "the client's terminal"},
    {"DetachKeys", Rule::kAllowed, "the client's terminal"},
    {"Detach", Rule::kAllowed, "the client's streams"},
    {"Tty", Rule::kAllowed, "inside the container"},
    {"Env", Rule::kAllowed, "inside the container"},
    {"Privileged", Rule::kZeroOnly, "privileged execs are refused"},
    {"User", Rule::kAllowed, "a user inside the container"},
    {"WorkingDir", Rule::kAllowed, "inside the container"},
    {"Cmd", Rule::kAllowed, "runs inside the container"},
};

// Bridge options can name a host bridge (docker0) or change the host's firewall rules.
Outcome check_network_options(Judge& judge, const std::string& path, const Json& value) {
  auto judged = check_string_map(judge, path, value);
  if (!judged || value.is_null()) return judged;
  for (const auto& [name, option] : value.items()) {
    if (name != "com.docker.network.driver.mtu")
      return refuse(join(path, name), option, "network driver options other than the MTU are refused");
  }
  return value;
}

// Host-attached drivers (host, macvlan, ipvlan) put containers on the host's networks.
Outcome check_network_driver(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "bridge"}, false, "only the bridge network driver is allowed");
}

Outcome check_ipam_driver(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "default"}, false, "only the default IPAM driver is allowed");
}

Outcome check_network_scope(Judge& judge, const std::string& path, const Json& value) {
  return check_mode(judge, path, value, {"", "local"}, false, "only local networks are allowed (no swarm scope)");
}

// dockerd routes a bridge's subnet on the host without checking it against the host's own
// routes: a chosen subnet (a LAN range, an NFS server's or a DNS resolver's address) would take
// the host's and every other project's traffic for it. The daemon's pools only.
const std::vector<Field> kIpamConfigRows = {
    {"Subnet", Rule::kZeroOnly, "a chosen subnet can take over the host's routes: dockerd's pools only"},
    {"IPRange", Rule::kZeroOnly, "a chosen subnet can take over the host's routes: dockerd's pools only"},
    {"Gateway", Rule::kZeroOnly, "a chosen subnet can take over the host's routes: dockerd's pools only"},
    {"AuxiliaryAddresses", Rule::kZeroOnly, "a chosen subnet can take over the host's routes: dockerd's pools only"},
};

Outcome check_ipam_configs(Judge& judge, const std::string& path, const Json& value) {
  return each_entry(path, value, [&](const std::string& at, const Json& entry) {
    return judge_fields(judge, at, entry, kIpamConfigRows);
  });
}

const std::vector<Field> kIpamRows = {
    {"Driver", Rule::kChecked, "the default IPAM driver only", check_ipam_driver},
    {"Config", Rule::kChecked, "subnets of the project's network", check_ipam_configs},
    {"Options", Rule::kZeroOnly, "IPAM driver options are refused"},
};

const std::vector<Field> kNetworkCreateRows = {
    {"Name", Rule::kAllowed, "the project's own name (judged first)"},
    {"CheckDuplicate", Rule::kAllowed, "deprecated: the daemon always checks"},
    {"Driver", Rule::kChecked, "bridge only", check_network_driver},
    {"Scope", Rule::kChecked, "local only", check_network_scope},
    {"EnableIPv4", Rule::kAllowed, "addressing of the project's network"},
    {"EnableIPv6", Rule::kAllowed, "addressing of the project's network"},
    {"IPAM", Rule::kNested, "the default driver with the project's subnets", nullptr, &kIpamRows},
    {"Internal", Rule::kAllowed, "narrows the network"},
    {"Attachable", Rule::kAllowed, "swarm only"},
    {"Ingress", Rule::kZeroOnly, "swarm ingress networks are refused"},
    {"ConfigOnly", Rule::kZeroOnly, "configuration-only networks are refused"},
    {"ConfigFrom", Rule::kZeroOnly, "networks built from another's configuration are refused"},
    {"Options", Rule::kChecked, "the MTU only", check_network_options},
    {"Labels", Rule::kChecked, "this project's label (required)", check_labels},
};

const std::vector<Field> kNetworkConnectRows = {
    {"Container", Rule::kAllowed, "the project's own container (judged first)"},
    {"EndpointConfig", Rule::kAllowed, "judged like a create's endpoints"},
    {"Force", Rule::kAllowed, "disconnect: the project's own container"},
};

Outcome check_volume_driver_name(Judge&, const std::string& path, const Json& value) {
  if (value != "" && value != "local") return refuse(path, value, "only the local volume driver is allowed");
  return value;
}

const std::vector<Field> kVolumeCreateRows = {
    {"Name", Rule::kAllowed, "the project's own name (judged first)"},
    {"Driver", Rule::kChecked, "local only", check_volume_driver_name},
    // The local driver's options are how it mounts host paths, devices, tmpfs or NFS as root.
    // compose_policy allows the bind form with a judged device; the gate refuses all of them: the
    // bind form is a host bind, and it is simpler and safe to ask for one as a bind mount.
    {"DriverOpts", Rule::kZeroOnly, "volume driver options are refused (use a bind mount)"},
    {"Labels", Rule::kChecked, "this project's label (required)", check_labels},
    {"ClusterVolumeSpec", Rule::kZeroOnly, "swarm cluster volumes are refused"},
};

// The owned-name rule for objects the project creates: names are global on the daemon.
std::optional<Refusal> why_name_refused(const Judge& judge, std::string_view path, const Json& name) {
  const std::string* text = as_string(name);
  if (text && is_project_owned_name(judge.project(), *text)) return std::nullopt;
  return refuse(path, name,
                "must start with \"" + judge.project() + "_\" or \"" + judge.project() +
                    "-\" (names are shared on the daemon)")
      .error;
}

// ---------------------------------------------------------------------------------------------
// Queries

// A query's values by name. A parameter that may appear once must: Go reads the first of
// several, so a second one could be judged while the first runs.
struct QueryParams {
  std::map<std::string, std::vector<std::string>, std::less<>> values;

  explicit QueryParams(const Query& query) {
    for (const auto& [name, value] : query) values[name].push_back(value);
  }
};

Unexpected<Refusal> refuse_param(std::string_view name, std::string_view value, std::string_view why) {
  return refuse(std::string("query ") + std::string(name), Json(std::string(value)), why);
}

// A repository name without its tag or digest ("app-web:1.0" -> "app-web"; a registry port stays).
std::string repository_of(const std::string& reference) {
  std::string repository = reference.substr(0, reference.find('@'));
  const std::size_t colon = repository.rfind(':');
  if (colon != std::string::npos && repository.find('/', colon) == std::string::npos) repository.resize(colon);
  return repository;
}

// A built or tagged image replaces the name on this daemon for everyone: only the project's own.
std::optional<Refusal> why_repository_refused(const Judge& judge, std::string_view name, const std::string& reference) {
  const std::string repository = repository_of(reference);
  // A slash makes the rest a registry and namespace ("app-registry.example/team/web"): the name
  // would no longer be the project's, it would be anyone's image of that registry.
  const bool local = repository.find('/') == std::string::npos;
  if (local && (repository == judge.project() || is_project_owned_name(judge.project(), repository)))
    return std::nullopt;
  return refuse_param(name, reference,
                      "an image name must be \"" + judge.project() +
                          "-...\" with no registry or namespace (it would replace that image for everyone on this "
                          "daemon)")
      .error;
}

bool is_sane_tag(const std::string& tag) {
  return !tag.empty() && tag.size() <= 128 && std::all_of(tag.begin(), tag.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

using ParamCheck = std::optional<Refusal> (*)(Judge&, std::string_view name, const std::string& value);

struct Param {
  std::string_view name;
  bool repeatable;  // t, extrahosts: docker reads every value
  std::string_view why;
  ParamCheck check = nullptr;  // nullptr: any value
};

std::optional<Refusal> judge_params(Judge& judge, const Query& query, const std::vector<Param>& params) {
  const QueryParams grouped(query);
  for (const auto& entry : grouped.values) {
    const std::string& name = entry.first;
    const std::vector<std::string>& values = entry.second;
    const auto param = std::find_if(params.begin(), params.end(), [&](const Param& p) { return p.name == name; });
    if (param == params.end()) return refuse_param(name, values.front(), "unknown parameter: refused").error;
    if (!param->repeatable && values.size() > 1)
      return refuse_param(name, values[1], "given twice: docker would read only the first").error;
    if (!param->check) continue;
    for (const auto& value : values) {
      if (auto why = param->check(judge, name, value)) return why;
    }
  }
  return std::nullopt;
}

std::optional<Refusal> only_empty(Judge&, std::string_view name, const std::string& value) {
  if (value.empty()) return std::nullopt;
  if (name == "remote") return refuse_param(name, value, "remote build contexts are refused").error;
  if (name == "session") return refuse_param(name, value, "BuildKit sessions are refused").error;
  if (name == "outputs") return refuse_param(name, value, "build outputs (host paths) are refused").error;
  if (name == "cgroupparent") return refuse_param(name, value, "choosing the cgroup parent is refused").error;
  return refuse_param(name, value, "only an empty value is allowed").error;
}

std::optional<Refusal> check_build_network(Judge&, std::string_view name, const std::string& value) {
  if (value.empty() || value == "default" || value == "bridge" || value == "none") return std::nullopt;
  return refuse_param(name, value, "builds on the host's, another container's or a named network are refused").error;
}

std::optional<Refusal> check_build_version(Judge&, std::string_view name, const std::string& value) {
  if (value.empty() || value == "1") return std::nullopt;
  return refuse_param(name, value, "only the classic builder (version 1) is allowed; BuildKit is refused").error;
}

std::optional<Refusal> check_build_tag(Judge& judge, std::string_view name, const std::string& value) {
  return why_repository_refused(judge, name, value);
}

// The Dockerfile's path inside the context.
std::optional<Refusal> check_dockerfile(Judge&, std::string_view name, const std::string& value) {
  const auto parts = split(value, '/');
  if ((!value.empty() && value.front() == '/') || std::find(parts.begin(), parts.end(), "..") != parts.end())
    return refuse_param(name, value, "the Dockerfile must be inside the context (relative, no '..')").error;
  return std::nullopt;
}

std::optional<Refusal> check_build_isolation(Judge&, std::string_view name, const std::string& value) {
  if (value.empty() || value == "default") return std::nullopt;
  return refuse_param(name, value, "only the default isolation is allowed").error;
}

std::optional<Json> parse_json(const std::string& text) {
  Json value = Json::parse(text, nullptr, false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

std::optional<Refusal> malformed_param(std::string_view name, const std::string& value, std::string_view expected) {
  return malformed(std::string("query ") + std::string(name), Json(value), expected).error;
}

std::optional<Refusal> check_json_string_map(Judge&, std::string_view name, const std::string& value) {
  const auto parsed = parse_json(value);
  if (!parsed || !parsed->is_object()) return malformed_param(name, value, "a JSON object");
  for (const auto& [key, entry] : parsed->items()) {
    if (!entry.is_string() && !entry.is_null()) return malformed_param(name, value, "a JSON object of strings");
  }
  return std::nullopt;
}

std::optional<Refusal> check_json_string_list(Judge&, std::string_view name, const std::string& value) {
  const auto parsed = parse_json(value);
  if (!parsed || !parsed->is_array() ||
      !std::all_of(parsed->begin(), parsed->end(), [](const Json& entry) { return entry.is_string(); }))
    return malformed_param(name, value, "a JSON list of strings");
  return std::nullopt;
}

std::optional<Refusal> check_build_ulimits(Judge& judge, std::string_view name, const std::string& value) {
  const auto parsed = parse_json(value);
  if (!parsed) return malformed_param(name, value, "a JSON list of ulimits");
  auto judged = check_ulimits(judge, "query " + std::string(name), *parsed);
  if (!judged) return judged.error();
  return std::nullopt;
}

const std::vector<Param> kBuildParams = {
    {"t", true, "tags: the project's own image names", check_build_tag},
    {"extrahosts", true, "/etc/hosts inside the build"},
    {"securityopt", true, "build security options are refused", only_empty},
    {"remote", false, "remote build contexts are refused", only_empty},
    {"session", false, "BuildKit sessions are refused", only_empty},
    {"outputs", false, "build outputs (host paths) are refused", only_empty},
    {"cgroupparent", false, "choosing the cgroup parent is refused", only_empty},
    {"networkmode", false, "default, bridge or none", check_build_network},
    {"version", false, "the classic builder only", check_build_version},
    {"dockerfile", false, "inside the context", check_dockerfile},
    {"isolation", false, "the default only", check_build_isolation},
    {"buildargs", false, "build arguments, inside the build", check_json_string_map},
    {"labels", false, "image labels", check_json_string_map},
    {"cachefrom", false, "images to take cache from", check_json_string_list},
    {"ulimits", false, "finite, under a ceiling", check_build_ulimits},
    {"target", false, "a stage of the Dockerfile"},
    {"pull", false, "build behaviour"},
    {"rm", false, "build behaviour"},
    {"forcerm", false, "build behaviour"},
    {"nocache", false, "build behaviour"},
    {"q", false, "build output"},
    {"platform", false, "which image variant"},
    {"squash", false, "build behaviour"},
    {"buildid", false, "a name for cancelling the build"},
    {"shmsize", false, "memory of the build container"},
    {"memory", false, "a limit"},
    {"memswap", false, "a limit"},
    {"cpushares", false, "a weight"},
    {"cpusetcpus", false, "which CPUs"},
    {"cpusetmems", false, "which memory nodes"},
    {"cpuperiod", false, "a limit"},
    {"cpuquota", false, "a limit"},
};

std::optional<Refusal> check_tag_repo(Judge& judge, std::string_view name, const std::string& value) {
  if (value.find(':') != std::string::npos && repository_of(value) != value)
    return refuse_param(name, value, "the tag goes in the tag parameter").error;
  return why_repository_refused(judge, name, value);
}

std::optional<Refusal> check_tag_tag(Judge&, std::string_view name, const std::string& value) {
  if (value.empty() || is_sane_tag(value)) return std::nullopt;
  return refuse_param(name, value, "a tag is [A-Za-z0-9_.-], at most 128 characters").error;
}

const std::vector<Param> kTagParams = {
    {"repo", false, "the project's own image names", check_tag_repo},
    {"tag", false, "a plain tag", check_tag_tag},
};

std::optional<Refusal> refused_pull_param(Judge&, std::string_view name, const std::string& value) {
  return refuse_param(name, value, "importing an image from a tarball or URL is refused (pull only)").error;
}

const std::vector<Param> kPullParams = {
    {"fromImage", false, "the image to pull"},
    {"tag", false, "its tag or digest"},
    {"platform", false, "which image variant"},
    {"fromSrc", false, "imports are refused", refused_pull_param},
    {"repo", false, "imports are refused", refused_pull_param},
    {"message", false, "imports are refused", refused_pull_param},
    {"changes", false, "imports are refused", refused_pull_param},
};

const std::vector<Param> kListParams = {
    {"all", false, "which objects"},
    {"limit", false, "how many"},
    {"size", false, "sizes"},
    {"since", false, "which objects"},
    {"until", false, "which objects"},
    {"before", false, "which objects"},
    {"digests", false, "image digests"},
    {"filters", false, "judged below"},
    {"dangling", false, "which objects"},
    {"shared-size", false, "image sizes"},
    {"trunc_cmd", false, "docker-py's output format"},
};

// A client's filters in either of docker's forms ({"label": ["a=b"]} or the older
// {"label": {"a=b": true}}), as the list form.
Expected<Json, Refusal> list_form_filters(const std::string& text) {
  const Json none = Json::object();
  if (text.empty()) return none;
  const auto parsed = parse_json(text);
  if (!parsed || !parsed->is_object()) return malformed("query filters", Json(text), "a JSON object of filters");
  Json out = Json::object();
  for (const auto& [name, values] : parsed->items()) {
    Json list = Json::array();
    if (values.is_array()) {
      for (const auto& value : values) {
        if (!value.is_string()) return malformed("query filters." + name, values, "a list of strings");
        list.push_back(value);
      }
    } else if (values.is_object()) {
      for (const auto& [value, enabled] : values.items()) {
        if (enabled != true) return malformed("query filters." + name, values, "an object of {\"value\": true}");
        list.push_back(value);
      }
    } else {
      return malformed("query filters." + name, values, "a list of strings");
    }
    out[name] = std::move(list);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The judges

// A project's container name: its own, or compose v2's name while it recreates one
// ("<12 hex digits of the old ID>_<its own name>", renamed once the old one is gone).
bool is_own_container_name(const std::string& project, const std::string& name) {
  constexpr std::size_t kIdPrefix = 12;
  const bool recreating = name.size() > kIdPrefix + 1 && name[kIdPrefix] == '_' &&
                          std::all_of(name.begin(), name.begin() + kIdPrefix,
                                      [](unsigned char c) { return std::isdigit(c) || (c >= 'a' && c <= 'f'); });
  return is_project_owned_name(project, recreating ? name.substr(kIdPrefix + 1) : name);
}

Expected<Json, Refusal> judge_container_create(JudgeContext& context, const Json& body, const std::string& name) {
  Judge judge{context};
  if (!is_own_container_name(judge.project(), name))
    return refuse("query name", Json(name),
                  "a container must be named \"" + judge.project() + "-...\" or \"" + judge.project() +
                      "_...\" (names are shared on the daemon)");
  if (!body.is_object()) return malformed("body", body, "an object");
  if (auto why = why_project_label_missing(judge, body, "Labels")) return Unexpected(std::move(*why));
  // Absent, the daemon's default network is the bridge every project shares.
  const Json host_config = body.value("HostConfig", Json());
  if (!host_config.is_object() || !host_config.contains("NetworkMode"))
    return refuse("HostConfig.NetworkMode", Json(),
                  "the network must be given: the daemon's default is the bridge every project shares (docker0)");
  auto judged = judge_fields(judge, "", body, kContainerCreateRows);
  if (!judged) return judged;
  // On a network other projects share, the hostname is a name they resolve (docker 26 gives it
  // as a DNS name on every user-defined network).
  const Json hostname = body.value("Hostname", Json(""));
  if (!is_zero(hostname)) {
    const auto networks = networks_of(*judged);
    const bool shared = std::any_of(networks.begin(), networks.end(),
                                    [&](const std::string& network) { return !is_own_network_name(judge, network); });
    if (shared && (!hostname.is_string() || !is_project_owned_name(judge.project(), hostname.get<std::string>())))
      return refuse("Hostname", hostname,
                    "on a shared network the hostname must start with \"" + judge.project() + "-\" or \"" +
                        judge.project() + "_\" (others resolve it)");
  }
  return judged;
}

Expected<Json, Refusal> judge_exec_create(JudgeContext& context, const Json& body) {
  Judge judge{context};
  return judge_fields(judge, "", body, kExecRows);
}

Expected<Json, Refusal> judge_network_create(JudgeContext& context, const Json& body) {
  Judge judge{context};
  if (!body.is_object()) return malformed("body", body, "an object");
  if (auto why = why_name_refused(judge, "Name", body.value("Name", Json()))) return Unexpected(std::move(*why));
  if (auto why = why_project_label_missing(judge, body, "Labels")) return Unexpected(std::move(*why));
  return judge_fields(judge, "", body, kNetworkCreateRows);
}

Expected<Json, Refusal> judge_network_connect(JudgeContext& context, const Json& body, const std::string& network) {
  Judge judge{context};
  auto judged = judge_fields(judge, "", body, kNetworkConnectRows);
  if (!judged) return judged;
  const Json container = body.value("Container", Json());
  const std::string* id = as_string(container);
  if (!id || id->empty() || !judge.owner().owns_container(*id))
    return refuse("Container", container, "only the project's own containers may be connected or disconnected");
  if (body.contains("EndpointConfig") && !body["EndpointConfig"].is_null()) {
    // Without the network's name, its endpoint is judged as on a shared network.
    judge.shared_network = network.empty() || !is_own_network_name(judge, network);
    auto endpoint = judge_fields(judge, "EndpointConfig", body["EndpointConfig"], kEndpointRows);
    if (!endpoint) return endpoint;
    (*judged)["EndpointConfig"] = std::move(*endpoint);
  }
  return judged;
}

Expected<Json, Refusal> judge_volume_create(JudgeContext& context, const Json& body) {
  Judge judge{context};
  if (!body.is_object()) return malformed("body", body, "an object");
  if (auto why = why_name_refused(judge, "Name", body.value("Name", Json()))) return Unexpected(std::move(*why));
  if (auto why = why_project_label_missing(judge, body, "Labels")) return Unexpected(std::move(*why));
  return judge_fields(judge, "", body, kVolumeCreateRows);
}

Expected<Query, Refusal> judge_build_query(JudgeContext& context, const Query& query) {
  Judge judge{context};
  if (auto why = judge_params(judge, query, kBuildParams)) return Unexpected(std::move(*why));
  return query;
}

Expected<Query, Refusal> judge_tag_query(JudgeContext& context, const Query& query) {
  Judge judge{context};
  if (auto why = judge_params(judge, query, kTagParams)) return Unexpected(std::move(*why));
  const bool has_repo =
      std::any_of(query.begin(), query.end(), [](const auto& param) { return param.first == "repo"; });
  if (!has_repo) return refuse_param("repo", "", "the repository to tag into must be given");
  return query;
}

Expected<Query, Refusal> judge_pull_query(JudgeContext& context, const Query& query) {
  Judge judge{context};
  if (auto why = judge_params(judge, query, kPullParams)) return Unexpected(std::move(*why));
  return query;
}

Expected<Query, Refusal> scope_list_query(JudgeContext& context, const Query& query) {
  Judge judge{context};
  if (auto why = judge_params(judge, query, kListParams)) return Unexpected(std::move(*why));
  Query out;
  std::string filters_text;
  for (const auto& [name, value] : query) {
    if (name == "filters")
      filters_text = value;
    else
      out.emplace_back(name, value);
  }
  auto filters = list_form_filters(filters_text);
  if (!filters) return Unexpected(std::move(filters.error()));
  // dockerd ANDs label filters: whatever the client asked, only the project's objects answer.
  (*filters)["label"].push_back(std::string(kComposeProjectLabel) + "=" + judge.project());
  out.emplace_back("filters", filters->dump());
  return out;
}

Expected<Done, Refusal> judge_bind_sources_unmoved(JudgeContext& context, const Json& inspected) {
  Judge judge(context);
  const auto mounts = inspected.is_object() ? inspected.find("Mounts") : inspected.end();
  if (!inspected.is_object() || mounts == inspected.end() || !mounts->is_array()) return Done{};
  for (std::size_t i = 0; i < mounts->size(); ++i) {
    const Json& mount = (*mounts)[i];
    if (!mount.is_object() || mount.value("Type", std::string()) != "bind") continue;
    const std::string source = mount.value("Source", std::string());
    const std::string path = "Mounts[" + std::to_string(i) + "].Source";
    auto judged = judge_bind_source(judge, path, Json(source), source);
    if (!judged) return Unexpected{judged.error()};
    if (*judged != source)
      return Unexpected{Refusal{403, path + ": " + source + " now resolves to " + *judged +
                                         ": a symlink was put in its path since the container was created"}};
  }
  return Done{};
}

bool is_other_projects_image(const GateService& service, const std::vector<std::string>& repo_tags) {
  bool others = false;
  for (const auto& tag : repo_tags) {
    const std::string repository = repository_of(tag);
    if (repository == service.project || is_project_owned_name(service.project, repository)) return false;
    for (const auto& other : service.other_projects)
      others = others || repository == other || is_project_owned_name(other, repository);
  }
  return others;
}

}  // namespace pgod::dockergate
