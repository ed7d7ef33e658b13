#include "config.h"

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "command_grammar.h"
#include "duration.h"
#include "service_name.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::config {
namespace {

constexpr std::size_t kMaxPathLength = 1024;
// A config for hundreds of services is tens of KiB; anything near this is a mistake.
constexpr off_t kMaxConfigSize = 4 << 20;
constexpr std::size_t kMaxValueLength = 4096;

constexpr std::array<std::string_view, 17> kServiceKeys = {
    "name",   "user",           "repository",  "branch",  "registries",      "compose",
    "env",    "urls",           "networks",    "import",  "reload",          "mount",
    "ignore", "health_timeout", "hook_secret", "signers", "allow_force_push"};

// Keys a signer's line may use, as ssh-keygen(1) ALLOWED SIGNERS names them.
constexpr std::array<std::string_view, 7> kSignerKeyTypes = {"ssh-ed25519",
                                                             "ssh-rsa",
                                                             "ecdsa-sha2-nistp256",
                                                             "ecdsa-sha2-nistp384",
                                                             "ecdsa-sha2-nistp521",
                                                             "sk-ssh-ed25519@openssh.com",
                                                             "sk-ecdsa-sha2-nistp256@openssh.com"};
constexpr std::size_t kMaxSigners = 100;

// A push hook's secret: long enough that guessing it is hopeless, short enough for any forge's
// form (GitHub takes any length; GitLab's token field, 255).
constexpr std::size_t kMinHookSecret = 16;
constexpr std::size_t kMaxHookSecret = 255;

// A deploy's containers get this long to be ready at most: beyond it a broken deploy keeps the
// service down (its containers replaced, not ready) for longer than anyone waits.
constexpr auto kMaxHealthTimeout = std::chrono::hours(1);

// Debian's nobody and the kernel's overflow uid: shared by unrelated daemons, the uid NFS
// squashes root to, and the user pgod's clean-up of removed services runs as.
constexpr uid_t kNobodyUid = 65534;

// Set by the worker for every compose run; an env item may not change them.
constexpr std::array<std::string_view, 6> kReservedEnv = {
    "HOME", "PATH", "DOCKER_CONFIG", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "PYTHONNOUSERSITE"};

// One line of an allowed-signers file (ssh-keygen(1)): principals, then options (only
// namespaces="git", valid-after, valid-before) or none, then a key type and its base64. Checked
// here so a mistake is a config error, not a refused deploy; ssh-keygen reads it again.
std::optional<std::string> check_signer_line(const std::string& line) {
  if (line.empty() || line.find_first_of("\r\n") != std::string::npos ||
      std::any_of(line.begin(), line.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 && c != ' '; }))
    return "is not one allowed-signers line (principal key-type base64)";
  std::vector<std::string> fields;
  std::istringstream words(line);
  for (std::string word; words >> word;) fields.push_back(word);
  std::size_t type_at = 1;
  // Four fields or more with no key type second: the second is the options field.
  if (fields.size() > 3 &&
      std::find(kSignerKeyTypes.begin(), kSignerKeyTypes.end(), fields[1]) == kSignerKeyTypes.end()) {
    // An options field: each option allowed by name.
    std::istringstream options(fields[1]);
    for (std::string option; std::getline(options, option, ',');) {
      const auto name = option.substr(0, option.find('='));
      if (name != "namespaces" && name != "valid-after" && name != "valid-before")
        return fmt::format("option \"{}\" is not one pgod accepts (namespaces, valid-after, valid-before)", name);
    }
    type_at = 2;
  }
  if (fields.size() < type_at + 2)
    return "is not principal [options] key-type base64 (as in ssh-keygen's ALLOWED SIGNERS; e.g. "
           "\"alice@example.org ssh-ed25519 AAAA...\")";
  if (std::find(kSignerKeyTypes.begin(), kSignerKeyTypes.end(), fields[type_at]) == kSignerKeyTypes.end())
    return fmt::format("key type \"{}\" is not an SSH signing key type", fields[type_at].substr(0, 40));
  const auto& blob = fields[type_at + 1];
  if (!std::all_of(blob.begin(), blob.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=';
      }))
    return "the key is not base64";
  return std::nullopt;
}

SourcePosition position_of(const toml::source_region& region) {
  return {static_cast<int>(region.begin.line), static_cast<int>(region.begin.column)};
}

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

bool is_ascii_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool has_space_or_control(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

// Quotes a value for an error message (non-secret values only), showing control characters.
std::string quote(std::string_view text) {
  std::string out = "\"";
  for (const unsigned char c : text.substr(0, 200)) {
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  if (text.size() > 200) out += "…";
  return out + "\"";
}

bool valid_port(std::string_view text) {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), is_digit)) return false;
  const int port = std::stoi(std::string(text));
  return port >= 1 && port <= 65535;
}

// host[:port] of a registry or an NFS server: DNS labels, an IPv4 address or [IPv6].
bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (host.front() == '[') {
    return host.size() > 2 && host.back() == ']' && std::all_of(host.begin() + 1, host.end() - 1, [](char c) {
             return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
           });
  }
  if (host.front() == '-' || host.front() == '.' || host.back() == '.' || host.find("..") != std::string_view::npos)
    return false;
  return std::all_of(host.begin(), host.end(), [](char c) { return is_ascii_alnum(c) || c == '-' || c == '.'; });
}

bool valid_host_port(std::string_view text) {
  std::string_view host = text;
  if (const auto bracket = text.rfind(']'); text.starts_with('[') && bracket != std::string_view::npos) {
    host = text.substr(0, bracket + 1);
    const auto rest = text.substr(bracket + 1);
    if (rest.empty()) return valid_host(host);
    return rest.front() == ':' && valid_port(rest.substr(1)) && valid_host(host);
  }
  if (const auto colon = text.find(':'); colon != std::string_view::npos) {
    return valid_host(text.substr(0, colon)) && valid_port(text.substr(colon + 1));
  }
  return valid_host(host);
}

// A relative path that stays inside the checkout (lexically; the worker resolves symlinks
// when it writes) and does not reach into .git.
std::optional<std::string> check_relative_path(std::string_view path) {
  if (path.empty()) return "is empty (expected a path relative to the checkout)";
  if (path.size() > kMaxPathLength) return fmt::format("is longer than {} bytes", kMaxPathLength);
  if (path.front() == '/') return fmt::format("{} is absolute (expected a path relative to the checkout)", quote(path));
  if (std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    return fmt::format("{} contains control characters", quote(path));
  if (path.back() == '/') return fmt::format("{} names a directory (expected a file)", quote(path));
  std::size_t begin = 0;
  bool first = true;
  bool named_something = false;
  while (begin <= path.size()) {
    const auto end = std::min(path.find('/', begin), path.size());
    const auto part = path.substr(begin, end - begin);
    if (part == "..") return fmt::format("{} leaves the checkout (\"..\" is not allowed)", quote(path));
    if (first && part == ".git") return fmt::format("{} points into .git", quote(path));
    if (!part.empty() && part != ".") {
      first = false;
      named_something = true;
    }
    begin = end + 1;
  }
  if (!named_something) return fmt::format("{} names no file", quote(path));
  return std::nullopt;
}

std::optional<std::string> check_repository(std::string_view url) {
  constexpr std::string_view expected =
      "expected an https://, http://, ssh://, git:// or file:// URL, user@host:path, or an absolute path";
  if (url.empty()) return fmt::format("is empty ({})", expected);
  if (url.size() > kMaxValueLength) return fmt::format("is longer than {} bytes", kMaxValueLength);
  // The value may carry a token: describe problems without echoing it.
  if (has_space_or_control(url)) return "contains whitespace or control characters";
  if (url.front() == '-') return "starts with '-'";
  if (url.front() == '/') return std::nullopt;
  if (const auto scheme_end = url.find("://"); scheme_end != std::string_view::npos) {
    const auto scheme = url.substr(0, scheme_end);
    for (std::string_view allowed : {"https", "http", "ssh", "git", "file"}) {
      if (scheme == allowed) {
        if (url.size() == scheme_end + 3) return fmt::format("has no host or path ({})", expected);
        return std::nullopt;
      }
    }
    return fmt::format("uses the unsupported scheme {} ({})", quote(scheme), expected);
  }
  // scp-like: [user@]host:path, with no '/' before the ':'.
  const auto colon = url.find(':');
  const auto slash = url.find('/');
  if (colon != std::string_view::npos && colon > 0 && (slash == std::string_view::npos || slash > colon) &&
      colon + 1 < url.size())
    return std::nullopt;
  return fmt::format("is not a repository location ({})", expected);
}

// The subset of git-check-ref-format(1) that matters for a branch name given in a config.
std::optional<std::string> check_branch(std::string_view branch) {
  const auto bad = [&] {
    return fmt::format("{} is not a valid branch name (see git-check-ref-format(1))", quote(branch));
  };
  if (branch.empty()) return "is empty (expected a branch name such as main)";
  if (branch.size() > 255) return "is longer than 255 bytes";
  if (branch.front() == '-' || branch.front() == '/' || branch.back() == '/' || branch.back() == '.' || branch == "@" ||
      branch.ends_with(".lock"))
    return bad();
  for (std::string_view forbidden : {"..", "//", "@{", "/."})
    if (branch.find(forbidden) != std::string_view::npos) return bad();
  if (branch.front() == '.') return bad();
  for (const unsigned char c : branch)
    if (c <= 0x20 || c == 0x7f || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' || c == '[' || c == '\\')
      return bad();
  return std::nullopt;
}

bool valid_user_name(std::string_view user) {
  if (user.empty() || user.size() > 32) return false;
  if (!((user.front() >= 'a' && user.front() <= 'z') || user.front() == '_')) return false;
  for (std::size_t i = 0; i < user.size(); ++i) {
    const char c = user[i];
    const bool ok = (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-' || (c == '$' && i + 1 == user.size());
    if (!ok) return false;
  }
  return true;
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || is_digit(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return is_ascii_alnum(c) || c == '_'; });
}

// A Caddy site address: DNS labels with an optional leading "*." wildcard. Nothing else, since
// it is written into a Caddyfile (a brace or newline would inject directives).
bool valid_site_host(std::string_view host) {
  if (host.starts_with("*.")) host.remove_prefix(2);
  if (host.empty() || host.size() > 253) return false;
  std::size_t begin = 0;
  while (begin <= host.size()) {
    const auto end = std::min(host.find('.', begin), host.size());
    const auto label = host.substr(begin, end - begin);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    if (!std::all_of(label.begin(), label.end(), [](char c) { return is_ascii_alnum(c) || c == '-'; })) return false;
    begin = end + 1;
  }
  return true;
}

// Compose service and network names.
bool valid_compose_name(std::string_view name) {
  if (name.empty() || name.size() > 255 || !is_ascii_alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_ascii_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

std::optional<std::string> check_url_target(std::string_view target) {
  const auto colon = target.rfind(':');
  if (colon == std::string_view::npos || !valid_compose_name(target.substr(0, colon)) ||
      !valid_port(target.substr(colon + 1)))
    return fmt::format("target {} is not service:port (a compose service name and a port 1-65535)", quote(target));
  return std::nullopt;
}

std::optional<std::string> check_mount(std::string_view mount) {
  constexpr std::string_view expected = "expected nfs://server/path";
  if (!mount.starts_with("nfs://")) return fmt::format("{} does not start with nfs:// ({})", quote(mount), expected);
  const auto rest = mount.substr(6);
  const auto slash = rest.find('/', rest.starts_with('[') ? rest.find(']') : 0);
  if (slash == std::string_view::npos || slash == 0)
    return fmt::format("{} has no server or no path ({})", quote(mount), expected);
  if (!valid_host(rest.substr(0, slash))) return fmt::format("{} names an invalid server ({})", quote(mount), expected);
  const auto path = rest.substr(slash);
  if (path.size() > kMaxPathLength || has_space_or_control(path) || path.find(',') != std::string_view::npos)
    return fmt::format("{} has an invalid path (no whitespace, control characters or commas)", quote(mount));
  return std::nullopt;
}

// An object name that two colliding projects could both give, for the error message: with '_'
// a volume ("app_db_data": app's "db_data", app_db's "data"), with '-' a v2 container
// ("app-db-web-1": app's compose service "db-web", app-db's "web").
std::string collision_example(std::string_view shorter, std::string_view longer) {
  const auto rest = longer.substr(shorter.size() + 1);
  if (longer[shorter.size()] == '_')
    return fmt::format("\"{}_data\" would be {}'s volume \"{}_data\" and {}'s volume \"data\"", longer, shorter, rest,
                       longer);
  return fmt::format("\"{}-web-1\" would be the container of {}'s compose service \"{}-web\" and of {}'s \"web\"",
                     longer, shorter, rest, longer);
}

class Validator {
 public:
  Validator(std::string file, const ValidationContext& context)
      : file_(std::move(file)), context_(context), gateway_uid_(uid_of(context.gateway_user)) {}

  Expected<Config, ConfigErrors> run(const toml::table& root) {
    Config config;
    for (auto&& [key, node] : root) {
      if (key.str() != "services") {
        add(position_of(key.source()), "", std::string(key.str()),
            "unknown top-level key (pgo.toml holds only [[services]] tables)");
        continue;
      }
      const auto* services = node.as_array();
      if (services == nullptr) {
        add(position_of(node.source()), "", "services",
            fmt::format("is {} (expected [[services]] tables)", type_name(node.type())));
        continue;
      }
      for (std::size_t i = 0; i < services->size(); ++i) {
        const auto& element = *services->get(i);
        const auto* table = element.as_table();
        if (table == nullptr) {
          add(position_of(element.source()), fmt::format("#{}", i + 1), "services",
              fmt::format("item {} is {} (expected a table)", i + 1, type_name(element.type())));
          continue;
        }
        if (auto service = service_from(*table, i + 1)) config.services.push_back(std::move(*service));
      }
    }
    check_across_services(config);
    if (!errors_.empty()) {
      // toml++ tables iterate in key order; report in file order.
      std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
        return std::tie(a.position.line, a.position.column) < std::tie(b.position.line, b.position.column);
      });
      return Unexpected{std::move(errors_)};
    }
    return config;
  }

 private:
  void add(SourcePosition position, std::string service, std::string key, std::string message) {
    errors_.push_back({file_, position, std::move(service), std::move(key), std::move(message)});
  }

  template <class T>
  const T* typed(const toml::node& node, const std::string& service, std::string_view key,
                 std::string_view expected_type) {
    if (const auto* value = node.as<T>()) return value;
    add(position_of(node.source()), service, std::string(key),
        fmt::format("is {} (expected {})", type_name(node.type()), expected_type));
    return nullptr;
  }

  const std::string* string_value(const toml::node& node, const std::string& service, std::string_view key) {
    const auto* value = typed<toml::value<std::string>>(node, service, key, "a string");
    return value ? &value->get() : nullptr;
  }

  // Calls each(index, position, text) for each string of an array; reports non-strings.
  template <class Each>
  void each_string(const toml::node& node, const std::string& service, std::string_view key, Each each) {
    const auto* array = typed<toml::array>(node, service, key, "an array of strings");
    if (array == nullptr) return;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto& item = *array->get(i);
      if (const auto* text = item.as_string()) {
        each(i + 1, position_of(item.source()), text->get());
      } else {
        add(position_of(item.source()), service, std::string(key),
            fmt::format("item {} is {} (expected a string)", i + 1, type_name(item.type())));
      }
    }
  }

  std::optional<Service> service_from(const toml::table& table, std::size_t index) {
    Service service;
    service.position = position_of(table.source());
    const auto errors_before = errors_.size();

    // The name first, so every later error can say which service it is about.
    std::string label = fmt::format("#{}", index);
    if (const auto* node = table.get("name")) {
      if (const auto* name = string_value(*node, label, "name")) {
        if (!is_valid_service_name(*name)) {
          add(position_of(node->source()), label, "name",
              fmt::format(
                  "{} is not a valid service name (expected [a-z0-9][a-z0-9_.-]*, no \"..\", at most {} characters)",
                  quote(*name), kMaxServiceNameLength));
        } else {
          service.name = *name;
          label = *name;
        }
      }
    } else {
      add(service.position, label, "name", "missing required key (every service needs name, user and repository)");
    }

    for (auto&& [key_object, node] : table) {
      const std::string key(key_object.str());
      const auto position = position_of(node.source());
      if (std::find(kServiceKeys.begin(), kServiceKeys.end(), key) == kServiceKeys.end()) {
        std::string valid;
        for (auto k : kServiceKeys) valid += (valid.empty() ? "" : ", ") + std::string(k);
        add(position_of(key_object.source()), label, key, fmt::format("unknown key (valid keys: {})", valid));
      } else if (key == "user") {
        if (const auto* user = string_value(node, label, key)) {
          if (!valid_user_name(*user))
            add(position, label, key, fmt::format("{} is not a valid user name", quote(*user)));
          else if (context_.user_exists && !context_.user_exists(*user))
            add(position, label, key,
                fmt::format("user {} does not exist on this host (create it, or name an existing user)", quote(*user)));
          else if (auto problem = check_service_user(*user))
            add(position, label, key, *problem);
          else {
            service.user = *user;
            service.user_position = position;
          }
        }
      } else if (key == "repository") {
        if (const auto* repository = string_value(node, label, key)) {
          if (auto problem = check_repository(*repository))
            add(position, label, key, *problem);
          else
            service.repository = *repository;
        }
      } else if (key == "branch") {
        if (const auto* branch = string_value(node, label, key)) {
          if (auto problem = check_branch(*branch))
            add(position, label, key, *problem);
          else
            service.branch = *branch;
        }
      } else if (key == "compose" || key == "import") {
        if (const auto* path = string_value(node, label, key)) {
          if (auto problem = check_relative_path(*path))
            add(position, label, key, *problem);
          else
            (key == "compose" ? service.compose : service.import_path) = *path;
        }
      } else if (key == "registries") {
        read_registries(node, label, service);
      } else if (key == "env") {
        read_env(node, label, service);
      } else if (key == "urls") {
        read_urls(node, label, service);
      } else if (key == "networks") {
        each_string(node, label, key, [&](std::size_t i, SourcePosition at, const std::string& network) {
          if (!valid_compose_name(network))
            add(at, label, key, fmt::format("item {} ({}) is not a docker network name", i, quote(network)));
          else
            service.networks.push_back(network);
        });
      } else if (key == "reload") {
        if (const auto* reload = string_value(node, label, key)) check_reload(*reload, position, label, service);
      } else if (key == "mount") {
        if (const auto* mount = string_value(node, label, key)) {
          if (auto problem = check_mount(*mount))
            add(position, label, key, *problem);
          else if (!context_.datadir_set)
            add(position, label, key, "needs pgod's --datadir, where shares are mounted as <datadir>/<service>");
          else
            service.mount = *mount;
        }
      } else if (key == "ignore") {
        if (const auto* ignore = typed<toml::value<bool>>(node, label, key, "a boolean"))
          service.ignore = ignore->get();
      } else if (key == "health_timeout") {
        if (const auto* text = string_value(node, label, key)) {
          const auto timeout = parse_duration(*text);
          if (!timeout)
            add(position, label, key, timeout.error());
          else if (*timeout < std::chrono::seconds(1) || *timeout > kMaxHealthTimeout)
            add(position, label, key, fmt::format("{} is outside 1s..1h", quote(*text)));
          else
            service.health_timeout = std::chrono::duration_cast<std::chrono::seconds>(*timeout);
        }
      } else if (key == "signers") {
        each_string(node, label, key, [&](std::size_t i, SourcePosition at, const std::string& line) {
          if (auto problem = check_signer_line(line))
            add(at, label, key, fmt::format("item {}: {}", i, *problem));
          else if (service.signers.size() >= kMaxSigners)
            add(at, label, key, fmt::format("more than {} signers", kMaxSigners));
          else
            service.signers.push_back(line);
        });
      } else if (key == "allow_force_push") {
        if (const auto* allow = typed<toml::value<bool>>(node, label, key, "a boolean"))
          service.allow_force_push = allow->get();
      } else if (key == "hook_secret") {
        // A secret: errors describe it without echoing it.
        if (const auto* text = string_value(node, label, key)) {
          if (text->size() < kMinHookSecret || text->size() > kMaxHookSecret || has_space_or_control(*text))
            add(position, label, key,
                fmt::format("must be {}..{} characters without whitespace (value not shown: it is a secret; make one "
                            "with: openssl rand -hex 32)",
                            kMinHookSecret, kMaxHookSecret));
          else
            service.hook_secret = Secret(std::string(*text));
        }
      }
    }

    for (std::string_view required : {"user", "repository"})
      if (!table.contains(required))
        add(service.position, label, std::string(required),
            "missing required key (every service needs name, user and repository)");

    for (auto& login : service.registries)
      if (login.user.empty()) login.user = service.user;

    if (errors_.size() != errors_before) return std::nullopt;
    return service;
  }

  void read_registries(const toml::node& node, const std::string& label, Service& service) {
    each_string(node, label, "registries", [&](std::size_t i, SourcePosition at, const std::string& item) {
      // The item holds a token: errors describe it without echoing it.
      const auto at_sign = item.rfind('@');
      if (at_sign == std::string::npos || at_sign == 0) {
        add(at, label, "registries",
            fmt::format("item {} is not [user:]token@registry (value not shown: it holds a token)", i));
        return;
      }
      const auto credentials = std::string_view(item).substr(0, at_sign);
      const auto registry = std::string_view(item).substr(at_sign + 1);
      if (!valid_host_port(registry)) {
        add(at, label, "registries", fmt::format("item {}: registry {} is not host[:port]", i, quote(registry)));
        return;
      }
      RegistryLogin login;
      login.registry = std::string(registry);
      const auto colon = credentials.find(':');
      const auto token = colon == std::string_view::npos ? credentials : credentials.substr(colon + 1);
      if (colon != std::string_view::npos) login.user = std::string(credentials.substr(0, colon));
      if (colon == 0 || token.empty() || has_space_or_control(credentials)) {
        add(at, label, "registries",
            fmt::format("item {} for {} is not [user:]token@registry with a non-empty user and token and no "
                        "whitespace (value not shown: it holds a token)",
                        i, login.registry));
        return;
      }
      login.token = Secret(std::string(token));
      service.registries.push_back(std::move(login));
    });
  }

  void read_env(const toml::node& node, const std::string& label, Service& service) {
    std::set<std::string> seen;
    each_string(node, label, "env", [&](std::size_t i, SourcePosition at, const std::string& item) {
      const auto eq = item.find('=');
      // Only the part before '=' may be shown: the value is a secret.
      if (eq == std::string::npos) {
        add(at, label, "env", fmt::format("item {} is not VAR=VALUE (value not shown)", i));
        return;
      }
      const std::string name = item.substr(0, eq);
      if (!valid_env_name(name)) {
        add(at, label, "env",
            fmt::format("item {}: {} is not a variable name (expected [A-Za-z_][A-Za-z0-9_]* before '=')", i,
                        quote(name)));
      } else if (std::find(kReservedEnv.begin(), kReservedEnv.end(), name) != kReservedEnv.end()) {
        add(at, label, "env",
            fmt::format("item {} sets {}, which pgod sets itself (reserved: HOME, PATH, DOCKER_CONFIG, "
                        "COMPOSE_PROJECT_NAME, COMPOSE_FILE, PYTHONNOUSERSITE)",
                        i, name));
      } else if (!seen.insert(name).second) {
        add(at, label, "env", fmt::format("item {} sets {} a second time", i, name));
      } else {
        service.env.push_back({name, Secret(item.substr(eq + 1))});
      }
    });
  }

  void read_urls(const toml::node& node, const std::string& label, Service& service) {
    const auto* table = typed<toml::table>(node, label, "urls", "a table of \"host\" = \"service:port\"");
    if (table == nullptr) return;
    for (auto&& [host_key, target_node] : *table) {
      const std::string host(host_key.str());
      const auto at = position_of(target_node.source());
      if (!valid_site_host(host)) {
        add(position_of(host_key.source()), label, "urls",
            fmt::format("{} is not a host name (expected DNS labels, optionally starting with \"*.\")", quote(host)));
        continue;
      }
      const auto* target = target_node.as_string();
      if (target == nullptr) {
        add(at, label, "urls",
            fmt::format("{} maps to {} (expected a \"service:port\" string)", quote(host),
                        type_name(target_node.type())));
        continue;
      }
      if (auto problem = check_url_target(target->get())) {
        add(at, label, "urls", fmt::format("{}: {}", quote(host), *problem));
        continue;
      }
      service.urls.push_back({host, target->get()});
    }
    std::sort(service.urls.begin(), service.urls.end(), [](const Url& a, const Url& b) { return a.host < b.host; });
  }

  void check_reload(const std::string& reload, SourcePosition at, const std::string& label, Service& service) {
    constexpr std::string_view expected = "expected host:service//exec <compose-service> <command…>";
    auto command = parse_command_line(reload);
    if (!command) {
      add(at, label, "reload",
          fmt::format("{} ({})", status_line(command.error().status, command.error().message), expected));
      return;
    }
    if (command->verb != Verb::kExec || command->args.empty()) {
      add(at, label, "reload", fmt::format("{} is not an exec command ({})", quote(reload), expected));
      return;
    }
    // A worker can only exec in its own compose project.
    if (!service.name.empty() && command->service != service.name) {
      add(at, label, "reload",
          fmt::format("names service {}, but reload runs in this service's own project (use {}//exec …)",
                      quote(command->service), service.name));
      return;
    }
    service.reload = reload;
  }

  std::optional<uid_t> uid_of(const std::string& user) const {
    if (user.empty() || !context_.user_id) return std::nullopt;
    return context_.user_id(user);
  }

  // root is the documented "trust it all" mode: the rules about whose a service is do not apply.
  bool is_root(const std::string& user) const { return user == "root" || uid_of(user) == uid_t{0}; }

  // Users no service may have, whoever else has them.
  std::optional<std::string> check_service_user(const std::string& user) const {
    if (is_root(user)) return std::nullopt;
    const auto uid = uid_of(user);
    constexpr std::string_view own_user = "create a user for this service (useradd --system NAME)";
    if (user == "nobody" || uid == kNobodyUid)
      return fmt::format(
          "{} shared by unrelated daemons, NFS's squashed root and pgod's clean-up of removed "
          "services: {}",
          user == "nobody" ? std::string("user \"nobody\" is")
                           : fmt::format("user {} has uid {}, nobody's, which is", quote(user), kNobodyUid),
          own_user);
    if (!context_.gateway_user.empty() && (user == context_.gateway_user || (uid && uid == gateway_uid_)))
      return fmt::format(
          "user {} is the gateway's user (--gateway-user {}), which may talk to every worker and to "
          "pgod, so it must own no service: {}",
          quote(user), context_.gateway_user, own_user);
    if (!context_.dockergate_user.empty() &&
        (user == context_.dockergate_user || (uid && uid == uid_of(context_.dockergate_user))))
      return fmt::format(
          "user {} is the docker gate's user (--dockergate-user {}), the one user in the docker group, so it "
          "must own no service: {}",
          quote(user), context_.dockergate_user, own_user);
    return std::nullopt;
  }

  void check_across_services(const Config& config) {
    std::map<std::string, const Service*> by_name;
    std::vector<const Service*> earlier;  // the services with a unique name so far, in file order
    std::map<std::string, const Service*> by_user;
    for (const auto& service : config.services) {
      if (const auto [it, inserted] = by_name.emplace(service.name, &service); !inserted) {
        add(service.position, service.name, "name",
            fmt::format("service name {} is not unique (first defined at line {})", quote(service.name),
                        it->second->position.line));
        continue;
      }
      check_project_collision(service, earlier);
      check_shared_user(service, by_user);
      earlier.push_back(&service);
    }
  }

  // One service could otherwise bring down, or take over, the other's containers, volumes
  // and networks: compose and the docker gate know a project's objects by their name prefix.
  void check_project_collision(const Service& service, const std::vector<const Service*>& earlier) {
    const auto project = compose_project_name(service.name);
    for (const Service* other : earlier) {
      const auto other_project = compose_project_name(other->name);
      if (!project_names_may_collide(project, other_project)) continue;
      if (project == other_project) {
        add(service.position, service.name, "name",
            fmt::format("service {} and service {} (line {}) would share the compose project {}: rename one",
                        quote(service.name), quote(other->name), other->position.line, quote(project)));
      } else {
        const bool shorter_is_other = other_project.size() < project.size();
        add(service.position, service.name, "name",
            fmt::format("service {} (compose project {}) and service {} (line {}, compose project {}) could name "
                        "the same docker objects ({}): rename one",
                        quote(service.name), quote(project), quote(other->name), other->position.line,
                        quote(other_project),
                        shorter_is_other ? collision_example(other_project, project)
                                         : collision_example(project, other_project)));
      }
      return;
    }
  }

  // A service's user owns its checkout, its state and its docker configuration (with the
  // registry logins): two services of one user could read each other's tokens and change
  // each other's checkouts.
  void check_shared_user(const Service& service, std::map<std::string, const Service*>& by_user) {
    if (is_root(service.user)) return;
    const auto uid = uid_of(service.user);
    const std::string identity = uid ? fmt::format("#{}", *uid) : service.user;
    const auto [it, inserted] = by_user.emplace(identity, &service);
    if (inserted) return;
    const Service& first = *it->second;
    const auto whose = first.user == service.user
                           ? fmt::format("user {} is already the user of service {} (line {})", quote(service.user),
                                         quote(first.name), first.user_position.line)
                           : fmt::format("user {} has uid {}, as service {}'s user {} (line {})", quote(service.user),
                                         *uid, quote(first.name), quote(first.user), first.user_position.line);
    add(service.user_position, service.name, "user",
        fmt::format("{}: give each service a user of its own (a service's user owns its checkout, state and "
                    "docker config; two services sharing one can read each other's tokens and change each "
                    "other's checkouts)",
                    whose));
  }

  std::string file_;
  const ValidationContext& context_;
  std::optional<uid_t> gateway_uid_;
  ConfigErrors errors_;
};

}  // namespace

std::string ConfigError::to_string() const {
  std::string out =
      position.line > 0 ? fmt::format("{}:{}:{}: ", file, position.line, position.column) : fmt::format("{}: ", file);
  if (!service.empty()) out += fmt::format("service \"{}\": ", service);
  if (!key.empty()) out += fmt::format("key \"{}\": ", key);
  return out + message;
}

namespace {

// The passwd entry of `name`, through `use`; false when there is none.
template <class Use>
bool with_passwd_entry(const std::string& name, Use use) {
  struct passwd entry {};
  struct passwd* result = nullptr;
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(static_cast<std::size_t>(size > 0 ? size : 16384));
  int rc;
  while ((rc = getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &result)) == ERANGE)
    buffer.resize(buffer.size() * 2);
  if (rc != 0 || result == nullptr) return false;
  use(*result);
  return true;
}

// Where a config holds its first secret, for saying why its mode matters (never the value).
struct SecretPlace {
  std::string service;
  std::string key;
};

std::optional<SecretPlace> first_secret(const Config& config) {
  for (const auto& service : config.services) {
    // The project's one rule for what in a URL is a credential: what redact_url hides.
    if (redact_url(service.repository) != service.repository) return SecretPlace{service.name, "repository"};
    if (!service.registries.empty()) return SecretPlace{service.name, "registries"};
    if (!service.env.empty()) return SecretPlace{service.name, "env"};
    if (!service.hook_secret.empty()) return SecretPlace{service.name, "hook_secret"};
  }
  return std::nullopt;
}

std::string mode_text(mode_t mode) { return fmt::format("{:04o}", mode & 07777); }

ConfigError file_error(const std::string& path, std::string message) { return {path, {}, "", "", std::move(message)}; }

}  // namespace

bool user_exists_on_host(const std::string& name) {
  return with_passwd_entry(name, [](const struct passwd&) {});
}

std::optional<uid_t> user_id_on_host(const std::string& name) {
  std::optional<uid_t> uid;
  with_passwd_entry(name, [&](const struct passwd& entry) { uid = entry.pw_uid; });
  return uid;
}

ValidationContext host_validation_context(bool datadir_set, std::string gateway_user, std::string dockergate_user) {
  ValidationContext context;
  context.user_exists = &user_exists_on_host;
  context.datadir_set = datadir_set;
  context.gateway_user = std::move(gateway_user);
  context.dockergate_user = std::move(dockergate_user);
  context.user_id = &user_id_on_host;
  return context;
}

ConfigErrors check_file_writers(const std::string& path, const FileAccess& file, uid_t pgod_uid) {
  ConfigErrors errors;
  if (file.owner != 0 && file.owner != pgod_uid) {
    const auto trusted = pgod_uid == 0 ? std::string("root") : fmt::format("root or uid {} (pgod's own)", pgod_uid);
    errors.push_back(file_error(
        path, fmt::format("owned by uid {}, not {}: its owner chooses what pgod runs as every service's user "
                          "(chown root {})",
                          file.owner, trusted, path)));
  }
  if (file.mode & (S_IWGRP | S_IWOTH)) {
    const auto who = (file.mode & S_IWOTH) ? "every user" : "the members of its group";
    errors.push_back(
        file_error(path, fmt::format("mode {} lets {} change it, and so choose what pgod runs as every service's user: "
                                     "chmod go-w {}",
                                     mode_text(file.mode), who, path)));
  }
  return errors;
}

std::optional<ConfigError> check_file_readers(const std::string& path, const FileAccess& file, const Config& config) {
  const bool group_access = (file.mode & S_IRWXG) != 0 && file.group != 0;
  if ((file.mode & S_IRWXO) == 0 && !group_access) return std::nullopt;
  const auto secret = first_secret(config);
  if (!secret) return std::nullopt;
  const auto access = (file.mode & S_IRWXO) == 0 ? fmt::format("lets the members of group {} read", file.group)
                      : (file.mode & S_IROTH)    ? std::string("lets other users read")
                                                 : std::string("gives other users access to");
  return file_error(path, fmt::format("mode {} {} the secrets it holds ({} of service \"{}\"): chmod 600 {}",
                                      mode_text(file.mode), access, secret->key, secret->service, path));
}

Expected<Config, ConfigErrors> parse_config(std::string_view text, const std::string& file,
                                            const ValidationContext& context) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& error) {
    return Unexpected{ConfigErrors{{file, position_of(error.source()), "", "", std::string(error.description())}}};
  }
  return Validator(file, context).run(root);
}

Expected<Config, ConfigErrors> load_config(const std::string& path, const ValidationContext& context) {
  const auto failure = [&](std::string why) {
    return Unexpected{
        ConfigErrors{{path, {}, "", "", fmt::format("cannot read the config file: {} (give another with -c)", why)}}};
  };
  const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return failure(errno_text(errno));
  // Owner and mode from the opened file: the one read below, whatever the path names by then.
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) return failure(errno_text(errno));
  if (!S_ISREG(info.st_mode)) return failure("not a regular file");
  if (info.st_size > kMaxConfigSize) return failure(fmt::format("larger than {} bytes", kMaxConfigSize));
  // Bounded again while reading: the file may grow after fstat.
  const auto text = read_bounded(fd.get(), static_cast<std::size_t>(kMaxConfigSize), path);
  if (!text) return failure(text.error());
  const FileAccess access{info.st_uid, static_cast<mode_t>(info.st_mode & 07777), info.st_gid};
  auto errors = check_file_writers(path, access, geteuid());
  auto config = parse_config(*text, path, context);
  if (!config) {
    errors.insert(errors.end(), config.error().begin(), config.error().end());
    return Unexpected{std::move(errors)};
  }
  if (auto readers = check_file_readers(path, access, *config)) errors.push_back(std::move(*readers));
  if (!errors.empty()) return Unexpected{std::move(errors)};
  return config;
}

}  // namespace pgod::config
