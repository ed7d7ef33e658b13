#include "config.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace pgod::config {
namespace {

// Users that "exist" for these tests, with their uids; the real lookup is tested through
// pgod --check. alice2, toor, squash and gwalias are second names of another user's uid.
const std::map<std::string, uid_t>& test_users() {
  static const std::map<std::string, uid_t> users = {
      {"alice", 1000}, {"alice2", 1000},  {"bob", 1001},     {"carol", 1002},  {"root", 0},
      {"toor", 0},     {"nobody", 65534}, {"squash", 65534}, {"pgod-gw", 998}, {"gwalias", 998}};
  return users;
}

ValidationContext test_context(bool datadir_set = true) {
  ValidationContext context;
  context.user_exists = [](const std::string& user) { return test_users().count(user) > 0; };
  context.datadir_set = datadir_set;
  context.gateway_user = "pgod-gw";
  context.user_id = [](const std::string& user) -> std::optional<uid_t> {
    const auto found = test_users().find(user);
    if (found == test_users().end()) return std::nullopt;
    return found->second;
  };
  return context;
}

// Lines 1-4: a valid service. Cases append their own lines from line 5 on.
const std::string kValidService =
    "[[services]]\n"
    "name = \"web\"\n"
    "user = \"alice\"\n"
    "repository = \"https://example.org/web.git\"\n";

struct RejectCase {
  std::string label;
  std::string toml;
  int line;             // expected line of the (first) error
  std::string at;       // the error's column is where this text starts on that line
  std::string service;  // expected service in the error
  std::string key;      // expected key
  std::string message;  // expected part of the message
  std::string never;    // text that must not appear in any error (a secret), if any

  RejectCase(std::string label, std::string toml, int line, std::string at, std::string service, std::string key,
             std::string message, std::string never = "")
      : label(std::move(label)),
        toml(std::move(toml)),
        line(line),
        at(std::move(at)),
        service(std::move(service)),
        key(std::move(key)),
        message(std::move(message)),
        never(std::move(never)) {}
};

std::string line_of(const std::string& text, int line) {
  std::size_t begin = 0;
  for (int i = 1; i < line; ++i) begin = text.find('\n', begin) + 1;
  return text.substr(begin, text.find('\n', begin) - begin);
}

class ConfigRejects : public ::testing::TestWithParam<RejectCase> {};

TEST_P(ConfigRejects, NamesFileLineColumnServiceAndKey) {
  const auto& c = GetParam();
  auto result = parse_config(c.toml, "pgo.toml", test_context());
  ASSERT_FALSE(result.has_value()) << "accepted:\n" << c.toml;
  const auto& errors = result.error();
  const auto found = std::find_if(errors.begin(), errors.end(), [&](const ConfigError& e) { return e.key == c.key; });
  ASSERT_NE(found, errors.end()) << "no error for key '" << c.key << "'; first: " << errors.front().to_string();
  const auto& error = *found;
  const auto text = line_of(c.toml, c.line);
  const auto column = c.at == "<end of line>" ? text.size() : text.find(c.at);
  ASSERT_NE(column, std::string::npos) << "test bug: '" << c.at << "' not on line " << c.line;
  EXPECT_EQ(error.file, "pgo.toml");
  EXPECT_EQ(error.position.line, c.line) << error.to_string();
  EXPECT_EQ(error.position.column, static_cast<int>(column) + 1) << error.to_string();
  EXPECT_EQ(error.service, c.service) << error.to_string();
  EXPECT_EQ(error.key, c.key) << error.to_string();
  EXPECT_NE(error.message.find(c.message), std::string::npos) << error.to_string();
  if (!c.never.empty()) {
    for (const auto& e : errors) EXPECT_EQ(e.to_string().find(c.never), std::string::npos) << e.to_string();
  }
}

const std::string V = kValidService;
// Lines 1-3: a service still missing its repository, which cases add on line 4.
const std::string R = "[[services]]\nname = \"web\"\nuser = \"alice\"\n";
// Lines 1-3: a service still missing its user, which cases add on line 4.
const std::string U = "[[services]]\nname = \"web\"\nrepository = \"/r\"\n";

void PrintTo(const RejectCase& c, std::ostream* out) { *out << c.label; }

INSTANTIATE_TEST_SUITE_P(
    Keys, ConfigRejects,
    ::testing::Values(
        // Structure and syntax.
        RejectCase{"toml_syntax", V + "branch = \"main\n", 5, "<end of line>", "", "", "unescaped control characters"},
        RejectCase{"unknown_top_level_key", "colour = \"red\"\n" + V, 1, "colour", "", "colour",
                   "unknown top-level key"},
        RejectCase{"services_is_a_table", "[services]\nname = \"web\"\n", 1, "[services]", "", "services",
                   "expected [[services]] tables"},
        RejectCase{"services_item_not_table", "services = [ 1 ]\n", 1, "1 ]", "#1", "services",
                   "item 1 is an integer (expected a table)"},
        RejectCase{"unknown_service_key", V + "colour = \"red\"\n", 5, "colour", "web", "colour",
                   "unknown key (valid keys: name, user, repository"},
        RejectCase{"old_ports_key_is_unknown", V + "ports = [\"8000/10\"]\n", 5, "ports", "web", "ports",
                   "unknown key"},
        // name
        RejectCase{"name_missing", "[[services]]\nuser = \"alice\"\nrepository = \"/srv/x\"\n", 1, "[[services]]", "#1",
                   "name", "missing required key"},
        RejectCase{"name_not_string", "[[services]]\nname = 5\n", 2, "5", "#1", "name",
                   "is an integer (expected a string)"},
        RejectCase{"name_uppercase", "[[services]]\nname = \"Web\"\n", 2, "\"Web\"", "#1", "name",
                   "\"Web\" is not a valid service name"},
        RejectCase{"name_dotdot", "[[services]]\nname = \"a..b\"\n", 2, "\"a..b\"", "#1", "name",
                   "not a valid service name"},
        RejectCase{"name_slash", "[[services]]\nname = \"a/b\"\n", 2, "\"a/b\"", "#1", "name",
                   "not a valid service name"},
        RejectCase{"name_leading_dash", "[[services]]\nname = \"-a\"\n", 2, "\"-a\"", "#1", "name",
                   "not a valid service name"},
        RejectCase{"name_leading_dot", "[[services]]\nname = \".a\"\n", 2, "\".a\"", "#1", "name",
                   "not a valid service name"},
        RejectCase{"name_too_long", "[[services]]\nname = \"" + std::string(65, 'a') + "\"\n", 2, "\"aaa", "#1", "name",
                   "at most 64 characters"},
        RejectCase{"name_duplicate", V + "\n" + V, 6, "[[services]]", "web", "name",
                   "service name \"web\" is not unique (first defined at line 1)"},
        RejectCase{"name_project_collision",
                   V + "\n[[services]]\nname = \"w.b\"\nuser = \"alice\"\nrepository = \"/r\"\n"
                       "\n[[services]]\nname = \"w_b\"\nuser = \"alice\"\nrepository = \"/r\"\n",
                   11, "[[services]]", "w_b", "name", "would share the compose project \"w_b\""},
        // One project a prefix of the other, joined by '_' (v1 and volumes) or '-' (v2 containers).
        RejectCase{"name_project_prefix_underscore",
                   "[[services]]\nname = \"app\"\nuser = \"alice\"\nrepository = \"/r\"\n"
                   "\n[[services]]\nname = \"app.db\"\nuser = \"bob\"\nrepository = \"/r\"\n",
                   6, "[[services]]", "app.db", "name",
                   "service \"app.db\" (compose project \"app_db\") and service \"app\" (line 1, compose project "
                   "\"app\") could name the same docker objects (\"app_db_data\" would be app's volume \"db_data\" "
                   "and app_db's volume \"data\"): rename one"},
        RejectCase{"name_project_prefix_dash_shorter_second",
                   "[[services]]\nname = \"app-db\"\nuser = \"alice\"\nrepository = \"/r\"\n"
                   "\n[[services]]\nname = \"app\"\nuser = \"bob\"\nrepository = \"/r\"\n",
                   6, "[[services]]", "app", "name",
                   "service \"app\" (compose project \"app\") and service \"app-db\" (line 1, compose project "
                   "\"app-db\") could name the same docker objects (\"app-db-web-1\" would be the container of app's "
                   "compose service \"db-web\" and of app-db's \"web\"): rename one"},
        // user
        RejectCase{"user_missing", "[[services]]\nname = \"web\"\nrepository = \"/r\"\n", 1, "[[services]]", "web",
                   "user", "missing required key"},
        RejectCase{"user_unknown_on_host", "[[services]]\nname = \"web\"\nrepository = \"/r\"\nuser = \"mallory\"\n", 4,
                   "\"mallory\"", "web", "user", "user \"mallory\" does not exist on this host"},
        RejectCase{"user_invalid", "[[services]]\nname = \"web\"\nrepository = \"/r\"\nuser = \"Bad User\"\n", 4,
                   "\"Bad User\"", "web", "user", "is not a valid user name"},
        // users no service may have, and a user of two services
        RejectCase{"user_nobody", U + "user = \"nobody\"\n", 4, "\"nobody\"", "web", "user",
                   "user \"nobody\" is shared by unrelated daemons, NFS's squashed root and pgod's clean-up of "
                   "removed services: create a user for this service"},
        RejectCase{"user_with_nobodys_uid", U + "user = \"squash\"\n", 4, "\"squash\"", "web", "user",
                   "user \"squash\" has uid 65534, nobody's, which is shared by unrelated daemons"},
        RejectCase{"user_gateway", U + "user = \"pgod-gw\"\n", 4, "\"pgod-gw\"", "web", "user",
                   "user \"pgod-gw\" is the gateway's user (--gateway-user pgod-gw), which may talk to every worker "
                   "and to pgod, so it must own no service"},
        RejectCase{"user_with_gateways_uid", U + "user = \"gwalias\"\n", 4, "\"gwalias\"", "web", "user",
                   "user \"gwalias\" is the gateway's user (--gateway-user pgod-gw)"},
        RejectCase{"user_shared", V + "\n[[services]]\nname = \"db\"\nuser = \"alice\"\nrepository = \"/r\"\n", 8,
                   "\"alice\"", "db", "user",
                   "user \"alice\" is already the user of service \"web\" (line 3): give each service a user of "
                   "its own (a service's user owns its checkout, state and docker config; two services sharing "
                   "one can read each other's tokens and change each other's checkouts)"},
        RejectCase{"user_shared_by_uid", V + "\n[[services]]\nname = \"db\"\nuser = \"alice2\"\nrepository = \"/r\"\n",
                   8, "\"alice2\"", "db", "user",
                   "user \"alice2\" has uid 1000, as service \"web\"'s user \"alice\" (line 3): give each service"},
        // repository
        RejectCase{"repository_missing", "[[services]]\nname = \"web\"\nuser = \"alice\"\n", 1, "[[services]]", "web",
                   "repository", "missing required key"},
        RejectCase{"repository_scheme", R + "repository = \"ftp://example.org/x\"\n", 4, "\"ftp", "web", "repository",
                   "unsupported scheme \"ftp\""},
        RejectCase{"repository_relative", R + "repository = \"some/dir\"\n", 4, "\"some", "web", "repository",
                   "is not a repository location"},
        RejectCase{"repository_space_hides_token", R + "repository = \"https://u:S3cr3tTok@h/ x\"\n", 4, "\"https",
                   "web", "repository", "whitespace", "S3cr3tTok"},
        RejectCase{"repository_dash", R + "repository = \"-uhttps://x\"\n", 4, "\"-u", "web", "repository",
                   "starts with '-'"},
        RejectCase{"repository_empty", R + "repository = \"\"\n", 4, "\"\"", "web", "repository", "is empty"},
        // branch
        RejectCase{"branch_dotdot", V + "branch = \"a..b\"\n", 5, "\"a..b\"", "web", "branch",
                   "is not a valid branch name"},
        RejectCase{"branch_dash", V + "branch = \"-f\"\n", 5, "\"-f\"", "web", "branch", "not a valid branch name"},
        RejectCase{"branch_lock", V + "branch = \"x.lock\"\n", 5, "\"x.lock\"", "web", "branch",
                   "not a valid branch name"},
        RejectCase{"branch_space", V + "branch = \"a b\"\n", 5, "\"a b\"", "web", "branch", "not a valid branch name"},
        RejectCase{"branch_type", V + "branch = true\n", 5, "true", "web", "branch",
                   "is a boolean (expected a string)"},
        // registries: the token never appears in an error.
        RejectCase{"registries_not_array", V + "registries = \"tok@r\"\n", 5, "\"tok", "web", "registries",
                   "is a string (expected an array of strings)"},
        RejectCase{"registries_item_type", V + "registries = [ 7 ]\n", 5, "7 ]", "web", "registries",
                   "item 1 is an integer (expected a string)"},
        RejectCase{"registries_no_at", V + "registries = [ \"u:Tok3nValue\" ]\n", 5, "\"u:", "web", "registries",
                   "item 1 is not [user:]token@registry", "Tok3nValue"},
        RejectCase{"registries_bad_host", V + "registries = [ \"u:Tok3nValue@bad host!\" ]\n", 5, "\"u:", "web",
                   "registries", "registry \"bad host!\" is not host[:port]", "Tok3nValue"},
        RejectCase{"registries_bad_port", V + "registries = [ \"Tok3nValue@r.example:99999\" ]\n", 5, "\"Tok", "web",
                   "registries", "is not host[:port]", "Tok3nValue"},
        RejectCase{"registries_empty_user", V + "registries = [ \":Tok3nValue@r.example\" ]\n", 5, "\":", "web",
                   "registries", "non-empty user and token", "Tok3nValue"},
        RejectCase{"registries_empty_token", V + "registries = [ \"u:@r.example\" ]\n", 5, "\"u:", "web", "registries",
                   "non-empty user and token"},
        RejectCase{"registries_second_item", V + "registries = [ \"a@r.example\", \"Tok3nValue\" ]\n", 5, "\"Tok3n",
                   "web", "registries", "item 2", "Tok3nValue"},
        // compose and import: relative, inside the checkout, not in .git.
        RejectCase{"compose_absolute", V + "compose = \"/etc/compose.yaml\"\n", 5, "\"/etc", "web", "compose",
                   "is absolute"},
        RejectCase{"compose_escapes", V + "compose = \"sub/../../x.yaml\"\n", 5, "\"sub", "web", "compose",
                   "leaves the checkout"},
        RejectCase{"compose_git", V + "compose = \"./.git/config\"\n", 5, "\"./", "web", "compose", "points into .git"},
        RejectCase{"compose_directory", V + "compose = \"deploy/\"\n", 5, "\"deploy", "web", "compose",
                   "names a directory"},
        RejectCase{"import_absolute", V + "import = \"/tmp/Caddyfile\"\n", 5, "\"/tmp", "web", "import", "is absolute"},
        RejectCase{"import_dotdot", V + "import = \"..\"\n", 5, "\"..\"", "web", "import", "leaves the checkout"},
        RejectCase{"import_dot", V + "import = \".\"\n", 5, "\".\"", "web", "import", "names no file"},
        RejectCase{"import_control", V + "import = \"a\\nb\"\n", 5, "\"a", "web", "import", "control characters"},
        // env: VAR=VALUE; values never echoed.
        RejectCase{"env_no_equals", V + "env = [ \"S3cretOnly\" ]\n", 5, "\"S3", "web", "env",
                   "item 1 is not VAR=VALUE", "S3cretOnly"},
        RejectCase{"env_bad_name", V + "env = [ \"1X=S3cretValue\" ]\n", 5, "\"1X", "web", "env",
                   "\"1X\" is not a variable name", "S3cretValue"},
        RejectCase{"env_reserved", V + "env = [ \"OK=1\", \"HOME=/S3cretValue\" ]\n", 5, "\"HOME", "web", "env",
                   "item 2 sets HOME, which pgod sets itself", "S3cretValue"},
        RejectCase{"env_duplicate", V + "env = [ \"A=1\", \"A=S3cretValue\" ]\n", 5, "\"A=S3", "web", "env",
                   "item 2 sets A a second time", "S3cretValue"},
        RejectCase{"env_not_array", V + "env = { A = \"1\" }\n", 5, "{", "web", "env", "is a table"},
        // urls
        RejectCase{"urls_not_table", V + "urls = [ \"x\" ]\n", 5, "[", "web", "urls", "is an array"},
        RejectCase{"urls_bad_host", V + "urls = { \"a{b}.org\" = \"web:80\" }\n", 5, "\"a{b}", "web", "urls",
                   "is not a host name"},
        RejectCase{"urls_host_newline", V + "urls = { \"a.org\\nimport x\" = \"web:80\" }\n", 5, "\"a.org", "web",
                   "urls", "is not a host name"},
        RejectCase{"urls_target_type", V + "urls = { \"a.org\" = 80 }\n", 5, "80", "web", "urls", "maps to an integer"},
        RejectCase{"urls_target_no_port", V + "urls = { \"a.org\" = \"web\" }\n", 5, "\"web\"", "web", "urls",
                   "is not service:port"},
        RejectCase{"urls_target_port_zero", V + "urls = { \"a.org\" = \"web:0\" }\n", 5, "\"web:0\"", "web", "urls",
                   "is not service:port"},
        RejectCase{"urls_target_port_big", V + "urls = { \"a.org\" = \"web:65536\" }\n", 5, "\"web:", "web", "urls",
                   "is not service:port"},
        // networks
        RejectCase{"networks_not_array", V + "networks = \"proxy\"\n", 5, "\"proxy\"", "web", "networks",
                   "expected an array of strings"},
        RejectCase{"networks_bad_name", V + "networks = [ \"proxy\", \"bad net\" ]\n", 5, "\"bad", "web", "networks",
                   "item 2 (\"bad net\") is not a docker network name"},
        // reload: the pgoctl grammar, an exec, in this service.
        RejectCase{"reload_grammar", V + "reload = \"localhost:web\"\n", 5, "\"localhost", "web", "reload",
                   "Bad Request: expected [host:]service//command"},
        RejectCase{"reload_unknown_command", V + "reload = \"localhost:web//frob\"\n", 5, "\"localhost", "web",
                   "reload", "Not Acceptable: Command \"frob\" does not match any route"},
        RejectCase{"reload_not_exec", V + "reload = \"localhost:web//ps\"\n", 5, "\"localhost", "web", "reload",
                   "is not an exec command"},
        RejectCase{"reload_exec_without_service", V + "reload = \"localhost:web//exec\"\n", 5, "\"localhost", "web",
                   "reload", "is not an exec command"},
        RejectCase{"reload_other_service", V + "reload = \"localhost:caddy//exec caddy caddy reload\"\n", 5,
                   "\"localhost", "web", "reload", "names service \"caddy\""},
        RejectCase{"reload_unterminated_quote", V + "reload = \"web//exec caddy 'x\"\n", 5, "\"web", "web", "reload",
                   "unterminated ' quote"},
        // mount
        RejectCase{"mount_scheme", V + "mount = \"smb://server/share\"\n", 5, "\"smb", "web", "mount",
                   "does not start with nfs://"},
        RejectCase{"mount_no_path", V + "mount = \"nfs://server\"\n", 5, "\"nfs", "web", "mount",
                   "has no server or no path"},
        RejectCase{"mount_bad_server", V + "mount = \"nfs://bad_server!/x\"\n", 5, "\"nfs", "web", "mount",
                   "invalid server"},
        RejectCase{"mount_comma", V + "mount = \"nfs://server/a,b\"\n", 5, "\"nfs", "web", "mount", "invalid path"},
        // ignore
        RejectCase{"ignore_type", V + "ignore = \"yes\"\n", 5, "\"yes\"", "web", "ignore",
                   "is a string (expected a boolean)"},
        // health_timeout
        RejectCase{"health_timeout_word", V + "health_timeout = \"fast\"\n", 5, "\"fast\"", "web", "health_timeout",
                   "fast"},
        RejectCase{"health_timeout_long", V + "health_timeout = \"2h\"\n", 5, "\"2h\"", "web", "health_timeout",
                   "outside 1s..1h"},
        RejectCase{"health_timeout_type", V + "health_timeout = 30\n", 5, "30", "web", "health_timeout",
                   "expected a string"},
        // hook_secret: a secret, never echoed
        RejectCase{"hook_secret_short", V + "hook_secret = \"Sh0rtS3cret\"\n", 5, "\"Sh0rtS3cret\"", "web",
                   "hook_secret", "16..255 characters", "Sh0rtS3cret"},
        RejectCase{"hook_secret_space", V + "hook_secret = \"a long secret with spaces in it\"\n", 5, "\"a long secret",
                   "web", "hook_secret", "without whitespace", "spaces in it"},
        RejectCase{"hook_secret_type", V + "hook_secret = 1234567890123456789\n", 5, "1234567890123456789", "web",
                   "hook_secret", "expected a string"},
        // signers: allowed-signers lines
        RejectCase{"signers_type", V + "signers = \"alice ssh-ed25519 AAAA\"\n", 5, "\"alice", "web", "signers",
                   "expected an array of strings"},
        RejectCase{"signers_key_type", V + "signers = [ \"alice ssh-dss AAAAB3\" ]\n", 5, "\"alice", "web", "signers",
                   "item 1: key type \"ssh-dss\" is not an SSH signing key type"},
        RejectCase{"signers_no_key", V + "signers = [ \"alice ssh-ed25519\" ]\n", 5, "\"alice", "web", "signers",
                   "is not principal [options] key-type base64"},
        RejectCase{"signers_option", V + "signers = [ \"alice cert-authority ssh-ed25519 AAAAC3\" ]\n", 5, "\"alice",
                   "web", "signers", "option \"cert-authority\" is not one pgod accepts"},
        RejectCase{"signers_blob", V + "signers = [ \"alice ssh-ed25519 AAAA$(x)\" ]\n", 5, "\"alice", "web", "signers",
                   "the key is not base64"},
        RejectCase{"signers_newline", V + "signers = [ \"alice ssh-ed25519 AAAA\\nbob ssh-ed25519 AAAA\" ]\n", 5,
                   "\"alice", "web", "signers", "is not one allowed-signers line"},
        RejectCase{"allow_force_push_type", V + "allow_force_push = \"yes\"\n", 5, "\"yes\"", "web", "allow_force_push",
                   "expected a boolean"}),
    [](const ::testing::TestParamInfo<RejectCase>& info) { return info.param.label; });

TEST(Config, HealthTimeoutIsADuration) {
  auto result = parse_config(V + "health_timeout = \"45s\"\n", "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
  EXPECT_EQ(result->services.front().health_timeout, std::chrono::seconds(45));
  result = parse_config(V, "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->services.front().health_timeout, std::chrono::seconds(0)) << "the worker's default";
}

TEST(Config, HookSecretIsASecret) {
  auto result = parse_config(V + "hook_secret = \"0123456789abcdef0123\"\n", "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
  EXPECT_EQ(result->services.front().hook_secret.reveal(), "0123456789abcdef0123");
  EXPECT_EQ(fmt::format("{}", result->services.front().hook_secret), "[redacted]");
  const auto readable = check_file_readers("/etc/pgo.toml", {0, 0644}, *result);
  ASSERT_TRUE(readable.has_value());
  EXPECT_NE(readable->message.find("(hook_secret of service \"web\")"), std::string::npos) << readable->to_string();
}

TEST(Config, SignersAreAllowedSignersLines) {
  auto result =
      parse_config(V + "signers = [ \"alice@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk= laptop\", "
                       "\"ci namespaces=\\\"git\\\" ecdsa-sha2-nistp256 AAAAE2VjZHNh\" ]\nallow_force_push = true\n",
                   "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
  ASSERT_EQ(result->services.front().signers.size(), 2u);
  EXPECT_EQ(result->services.front().signers[0], "alice@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk= laptop");
  EXPECT_TRUE(result->services.front().allow_force_push);
  result = parse_config(V, "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->services.front().signers.empty());
  EXPECT_FALSE(result->services.front().allow_force_push);
}

TEST(Config, MountNeedsDatadir) {
  auto result = parse_config(V + "mount = \"nfs://server/share\"\n", "pgo.toml", test_context(false));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().front().key, "mount");
  EXPECT_NE(result.error().front().message.find("--datadir"), std::string::npos);
}

TEST(Config, ReportsEveryErrorNotJustTheFirst) {
  const std::string text =
      "[[services]]\n"
      "name = \"web\"\n"
      "user = \"mallory\"\n"
      "repository = \"ftp://x\"\n"
      "env = [ \"nope\" ]\n"
      "bogus = 1\n"
      "[[services]]\n"
      "name = \"Bad\"\n";
  auto result = parse_config(text, "pgo.toml", test_context());
  ASSERT_FALSE(result.has_value());
  std::set<std::string> keys;
  for (const auto& error : result.error()) keys.insert(error.service + "/" + error.key);
  EXPECT_EQ(keys, (std::set<std::string>{"web/user", "web/repository", "web/env", "web/bogus", "#2/name", "#2/user",
                                         "#2/repository"}));
}

TEST(Config, ErrorStringNamesFileLineColumnServiceKey) {
  auto result = parse_config(V + "branch = \"a..b\"\n", "/etc/pgo.toml", test_context());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().front().to_string(),
            "/etc/pgo.toml:5:10: service \"web\": key \"branch\": \"a..b\" is not a valid branch name "
            "(see git-check-ref-format(1))");
}

TEST(Config, AcceptsTheManualsExample) {
  const std::string text = R"(
[[services]]
name = "pgo"
user = "alice"
repository = "https://oauth2:T0ken@gitlab.example.org/group/pgo.git"
branch = "production"
registries = [ "bob:RegT0ken@registry.example.org", "AnonT0ken@127.0.0.1:5000" ]
compose = "my-compose.yaml"
env = [ "MYVAR=VALUE", "OTHER=a=b" ]
urls = { "example.org" = "pgo:5006", "*.b.example.org" = "web:80" }
networks = [ "reverse_proxy", "internal" ]
import = "caddy/Caddyfile-import"
reload = "localhost:pgo//exec caddy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile"
mount = "nfs://server.example.org/share"
ignore = true

[[services]]
name = "caddy.proxy"
user = "root"
repository = "git@github.com:example/caddy.git"
)";
  auto result = parse_config(text, "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
  ASSERT_EQ(result->services.size(), 2u);
  const auto& pgo = result->services[0];
  EXPECT_EQ(pgo.name, "pgo");
  EXPECT_EQ(pgo.user, "alice");
  EXPECT_EQ(pgo.branch, "production");
  ASSERT_EQ(pgo.registries.size(), 2u);
  EXPECT_EQ(pgo.registries[0].user, "bob");
  EXPECT_EQ(pgo.registries[0].token.reveal(), "RegT0ken");
  EXPECT_EQ(pgo.registries[0].registry, "registry.example.org");
  EXPECT_EQ(pgo.registries[1].user, "alice") << "a registry without a user uses the service's user";
  EXPECT_EQ(pgo.registries[1].registry, "127.0.0.1:5000");
  EXPECT_EQ(pgo.compose, "my-compose.yaml");
  ASSERT_EQ(pgo.env.size(), 2u);
  EXPECT_EQ(pgo.env[1].name, "OTHER");
  EXPECT_EQ(pgo.env[1].value.reveal(), "a=b");
  ASSERT_EQ(pgo.urls.size(), 2u);
  EXPECT_EQ(pgo.urls[0].host, "*.b.example.org");
  EXPECT_EQ(pgo.urls[1].target, "pgo:5006");
  EXPECT_EQ(pgo.networks, (std::vector<std::string>{"reverse_proxy", "internal"}));
  EXPECT_EQ(pgo.import_path, "caddy/Caddyfile-import");
  EXPECT_TRUE(pgo.reload.starts_with("localhost:pgo//exec caddy"));
  EXPECT_EQ(pgo.mount, "nfs://server.example.org/share");
  EXPECT_TRUE(pgo.ignore);
  EXPECT_EQ(pgo.position.line, 2);
  const auto& caddy = result->services[1];
  EXPECT_EQ(caddy.branch, "main") << "branch defaults to main";
  EXPECT_FALSE(caddy.ignore);
}

TEST(Config, AcceptsEveryRepositoryForm) {
  for (const std::string repository :
       {"https://example.org/x.git", "http://127.0.0.1:8080/git/x.git", "ssh://git@example.org/x.git",
        "git://example.org/x.git", "file:///srv/git/x.git", "/srv/git/x.git", "git@example.org:group/x.git"}) {
    auto result = parse_config("[[services]]\nname = \"x\"\nuser = \"alice\"\nrepository = \"" + repository + "\"\n",
                               "pgo.toml", test_context());
    EXPECT_TRUE(result.has_value()) << repository << ": " << result.error().front().to_string();
  }
}

TEST(Config, EmptyFileHasNoServices) {
  auto result = parse_config("", "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->services.empty());
}

TEST(Config, UnreadableFileSaysWhichAndWhy) {
  auto result = load_config("/nonexistent/pgo.toml", test_context());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().front().to_string(),
            "/nonexistent/pgo.toml: cannot read the config file: No such file or directory (give another with -c)");
}

TEST(Config, RealUserLookup) {
  EXPECT_TRUE(user_exists_on_host("root"));
  EXPECT_FALSE(user_exists_on_host("no-such-user-pgod-test"));
  EXPECT_EQ(user_id_on_host("root"), uid_t{0});
  EXPECT_EQ(user_id_on_host("no-such-user-pgod-test"), std::nullopt);
}

// A [[services]] table for the cases below.
std::string service_table(const std::string& name, const std::string& user, const std::string& extra = "") {
  return "[[services]]\nname = \"" + name + "\"\nuser = \"" + user + "\"\nrepository = \"/srv/git/" + name +
         ".git\"\n" + extra + "\n";
}

TEST(ConfigUsers, RootMayRunSeveralServices) {
  // root is the documented "trust it all" mode: sharing it is the operator's stated choice.
  auto result = parse_config(service_table("web", "root") + service_table("db", "root") + service_table("ci", "toor"),
                             "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
  EXPECT_EQ(result->services.size(), 3u);
}

TEST(ConfigUsers, DistinctUsersAreAccepted) {
  auto result = parse_config(service_table("web", "alice") + service_table("db", "bob") + service_table("ci", "carol"),
                             "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
  EXPECT_EQ(result->services[1].user_position.line, 8);
}

TEST(ConfigUsers, EveryFurtherServiceOfAUserNamesTheFirst) {
  auto result =
      parse_config(service_table("web", "alice") + service_table("db", "alice") + service_table("ci", "alice"),
                   "pgo.toml", test_context());
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 2u);
  for (const auto& error : result.error()) {
    EXPECT_EQ(error.key, "user");
    EXPECT_NE(error.message.find("already the user of service \"web\" (line 3)"), std::string::npos)
        << error.to_string();
  }
  EXPECT_EQ(result.error()[0].service, "db");
  EXPECT_EQ(result.error()[1].service, "ci");
}

TEST(ConfigUsers, TheGatewaysUserIsWhatTheContextNames) {
  auto context = test_context();
  context.gateway_user = "carol";
  auto result = parse_config(service_table("web", "pgod-gw") + service_table("db", "carol"), "pgo.toml", context);
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u) << result.error().front().to_string();
  EXPECT_EQ(result.error().front().service, "db");
  EXPECT_NE(result.error().front().message.find("--gateway-user carol"), std::string::npos);
}

TEST(ConfigUsers, WithoutUidsNamesAloneDecide) {
  auto context = test_context();
  context.user_id = nullptr;
  EXPECT_TRUE(parse_config(service_table("web", "alice") + service_table("db", "alice2"), "pgo.toml", context));
  EXPECT_FALSE(parse_config(service_table("web", "nobody"), "pgo.toml", context));
  EXPECT_FALSE(parse_config(service_table("web", "pgod-gw"), "pgo.toml", context));
}

TEST(ConfigProjects, NamesThatOnlyStartAlikeAreAccepted) {
  auto result = parse_config(
      service_table("app", "alice") + service_table("apple", "bob") + service_table("application.db", "carol"),
      "pgo.toml", test_context());
  ASSERT_TRUE(result.has_value()) << result.error().front().to_string();
}

TEST(ConfigProjects, EachServiceNamesItsFirstCollision) {
  auto result =
      parse_config(service_table("app", "alice") + service_table("app_db", "bob") + service_table("app-web", "carol"),
                   "pgo.toml", test_context());
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 2u);
  EXPECT_EQ(result.error()[0].service, "app_db");
  EXPECT_EQ(result.error()[1].service, "app-web");
  EXPECT_NE(result.error()[1].message.find("and service \"app\" (line 1"), std::string::npos)
      << result.error()[1].to_string();
}

// The config file's owner and mode. -----------------------------------------------------------

Config config_with(const std::string& extra, const std::string& repository = "/srv/git/web.git") {
  auto result =
      parse_config("[[services]]\nname = \"web\"\nuser = \"alice\"\nrepository = \"" + repository + "\"\n" + extra,
                   "pgo.toml", test_context());
  if (!result) throw std::runtime_error(result.error().front().to_string());
  return std::move(*result);
}

TEST(ConfigFileAccess, RootsOrPgodsOwnFileWithoutOtherWritersPasses) {
  EXPECT_TRUE(check_file_writers("/etc/pgo.toml", {0, 0600}, 0).empty());
  EXPECT_TRUE(check_file_writers("/etc/pgo.toml", {0, 0644}, 0).empty());
  EXPECT_TRUE(check_file_writers("/home/t/pgo.toml", {1000, 0644}, 1000).empty()) << "pgod's own user (tests)";
  EXPECT_TRUE(check_file_writers("/home/t/pgo.toml", {0, 0644}, 1000).empty()) << "root is always trusted";
}

TEST(ConfigFileAccess, AnotherOwnerIsRefused) {
  auto errors = check_file_writers("/etc/pgo.toml", {1000, 0600}, 0);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].to_string(),
            "/etc/pgo.toml: owned by uid 1000, not root: its owner chooses what pgod runs as every service's user "
            "(chown root /etc/pgo.toml)");
  errors = check_file_writers("/home/t/pgo.toml", {1001, 0600}, 1000);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message.find("owned by uid 1001, not root or uid 1000 (pgod's own)"), std::string::npos)
      << errors[0].to_string();
}

TEST(ConfigFileAccess, GroupOrWorldWritableIsAlwaysRefused) {
  auto errors = check_file_writers("/etc/pgo.toml", {0, 0660}, 0);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].to_string(),
            "/etc/pgo.toml: mode 0660 lets the members of its group change it, and so choose what pgod runs as "
            "every service's user: chmod go-w /etc/pgo.toml");
  errors = check_file_writers("/etc/pgo.toml", {0, 0602}, 0);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message.find("mode 0602 lets every user change it"), std::string::npos);
  EXPECT_EQ(check_file_writers("/etc/pgo.toml", {1000, 0666}, 0).size(), 2u) << "both problems, each with its fix";
}

TEST(ConfigFileAccess, SecretsReadableByOthersAreRefusedNamingWhereTheyAre) {
  const auto error = check_file_readers("/etc/pgo.toml", {0, 0644}, config_with("", "https://u:T0ken@h.example/x.git"));
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->to_string(),
            "/etc/pgo.toml: mode 0644 lets other users read the secrets it holds (repository of service \"web\"): "
            "chmod 600 /etc/pgo.toml");
  EXPECT_EQ(error->to_string().find("T0ken"), std::string::npos);

  const auto token_only =
      check_file_readers("/etc/pgo.toml", {0, 0604}, config_with("", "https://T0ken@h.example/x.git"));
  ASSERT_TRUE(token_only.has_value()) << "https sends a bare token as the user name";

  const auto registry =
      check_file_readers("/etc/pgo.toml", {0, 0644}, config_with("registries = [ \"T0k@r.example\" ]\n"));
  ASSERT_TRUE(registry.has_value());
  EXPECT_NE(registry->message.find("(registries of service \"web\")"), std::string::npos);

  const auto env = check_file_readers("/etc/pgo.toml", {0, 0601}, config_with("env = [ \"DB_PASSWORD=S3cret\" ]\n"));
  ASSERT_TRUE(env.has_value());
  EXPECT_NE(env->message.find("mode 0601 gives other users access to the secrets it holds (env of service \"web\")"),
            std::string::npos)
      << env->to_string();
}

TEST(ConfigFileAccess, SecretsAreFineForOwnerAndGroup) {
  const auto secrets =
      config_with("env = [ \"A=1\" ]\nregistries = [ \"T0k@r.example\" ]\n", "https://u:T0ken@h.example/x.git");
  EXPECT_FALSE(check_file_readers("/etc/pgo.toml", {0, 0600}, secrets));
  EXPECT_FALSE(check_file_readers("/etc/pgo.toml", {0, 0640, 0}, secrets)) << "root's own group";
  const auto group = check_file_readers("/etc/pgo.toml", {0, 0640, 999}, secrets);
  ASSERT_TRUE(group);
  EXPECT_NE(group->message.find("lets the members of group 999 read"), std::string::npos) << group->message;
}

TEST(ConfigFileAccess, WithoutSecretsOthersMayRead) {
  EXPECT_FALSE(check_file_readers("/etc/pgo.toml", {0, 0644}, config_with("")));
  EXPECT_FALSE(check_file_readers("/etc/pgo.toml", {0, 0644}, config_with("", "ssh://git@h.example/x.git")))
      << "a user name in an ssh URL is no secret";
  EXPECT_FALSE(check_file_readers("/etc/pgo.toml", {0, 0644}, config_with("", "git@h.example:x.git")));
}

// load_config on real files: the mode it judges is the opened file's.
class LoadConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "pgod-config-test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& text, mode_t mode) {
    const auto path = dir_ + "/pgo.toml";
    std::ofstream(path, std::ios::trunc) << text;
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

TEST_F(LoadConfigFile, WorldReadableWithSecretsIsRefused) {
  const auto path = write(service_table("web", "alice", "env = [ \"DB_PASSWORD=S3cret\" ]"), 0644);
  auto result = load_config(path, test_context());
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 1u);
  EXPECT_EQ(result.error()[0].to_string(), path +
                                               ": mode 0644 lets other users read the secrets it holds (env of "
                                               "service \"web\"): chmod 600 " +
                                               path);
}

TEST_F(LoadConfigFile, PrivateWithSecretsOrWorldReadableWithoutIsAccepted) {
  auto result =
      load_config(write(service_table("web", "alice", "env = [ \"DB_PASSWORD=S3cret\" ]"), 0600), test_context());
  EXPECT_TRUE(result.has_value()) << result.error().front().to_string();
  result = load_config(write(service_table("web", "alice"), 0644), test_context());
  EXPECT_TRUE(result.has_value()) << result.error().front().to_string();
}

TEST_F(LoadConfigFile, GroupWritableIsRefusedAlongWithEveryOtherError) {
  const auto path = write(service_table("web", "mallory"), 0664);
  auto result = load_config(path, test_context());
  ASSERT_FALSE(result.has_value());
  ASSERT_EQ(result.error().size(), 2u);
  EXPECT_NE(result.error()[0].message.find("mode 0664 lets the members of its group change it"), std::string::npos);
  EXPECT_EQ(result.error()[1].key, "user");
}

}  // namespace
}  // namespace pgod::config
