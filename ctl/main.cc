// pgoctl: the user's client. The command line is checked locally with the shared grammar (an
// unknown command is caught before connecting); client.cc does the SSH part.
#include <fcntl.h>
#include <fmt/format.h>
#include <libssh/libssh.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "client.h"
#include "command_grammar.h"
#include "flags.h"
#include "system_call.h"
#include "unique_fd.h"

namespace {

using pgod::ctl::kLocalFailure;

constexpr std::string_view kSynopsis = "[-i IDENTITY] [-p PORT] [--] host:service//command [args...]";

std::string help_text() {
  using pgod::Status;
  const auto code = [](Status status) { return pgod::client_exit_code(static_cast<std::uint32_t>(status)); };
  return fmt::format(
      "\nRuns one command for a service on a pgod(8) host over SSH and prints its output as it\n"
      "arrives, the remote stdout and stderr kept apart. Standard input is not sent. Options go\n"
      "before host:service//command; everything after it is the command's (host:web//logs -f).\n"
      "\n"
      "Key: -i FILE, else $PGOCTL_ID (the private key's text, for CI), else ssh-agent\n"
      "($SSH_AUTH_SOCK). pgoctl never asks for a passphrase: load such a key into ssh-agent. The\n"
      "login name is your local user name. The service's repository must list the public key in\n"
      "ssh/*.pub.\n"
      "\n"
      "Host keys: checked against ~/.ssh/known_hosts (or --known-hosts FILE) and\n"
      "/etc/ssh/ssh_known_hosts. A host seen for the first time is added (like OpenSSH's\n"
      "StrictHostKeyChecking=accept-new); a changed key is refused. ~/.ssh/config is not read:\n"
      "host, port and key come from this command line only.\n"
      "\n"
      "Exit status: the remote command's own (0-255). pgod's refusals print their message and exit\n"
      "with the status modulo 256, as ssh does: {} Bad Request, {} Unauthorized, {} Not Found,\n"
      "{} Not Acceptable, {} Internal Server Error. 255: pgoctl's own failure (usage, connection,\n"
      "login, host key). 128+N after signal N (130 for Ctrl-C, which also ends the remote command).\n",
      code(Status::kBadRequest), code(Status::kUnauthorized), code(Status::kNotFound), code(Status::kNotAcceptable),
      code(Status::kInternalServerError));
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// The local user, as the original sends it; CI containers may run as a uid with no passwd entry.
std::string local_user() {
  if (const passwd* entry = getpwuid(getuid()); entry != nullptr && entry->pw_name != nullptr) return entry->pw_name;
  if (auto user = env("USER"); !user.empty()) return user;
  return std::to_string(getuid());
}

// ~ the way ssh finds it: the passwd entry first, then $HOME.
std::string home_directory() {
  if (const passwd* entry = getpwuid(getuid()); entry != nullptr && entry->pw_dir != nullptr && *entry->pw_dir != 0)
    return entry->pw_dir;
  return env("HOME");
}

// No key file is anywhere near this; the bound only keeps a wrong path (a device, a huge file)
// from filling memory.
constexpr std::size_t kMaxKeyFileBytes = 1024 * 1024;

pgod::Expected<std::string, std::string> read_key_file(const std::string& path) {
  pgod::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return pgod::Unexpected{pgod::os_error("cannot read the key", path, errno)};
  return pgod::read_bounded(fd.get(), kMaxKeyFileBytes, "the key " + path);
}

// Says why pgoctl cannot go on before connecting; the exit status.
int local_failure(std::string_view message) {
  fmt::print(stderr, "pgoctl: {}\n", message);
  return kLocalFailure;
}

// What the command line gives, before it is checked.
struct Flags {
  std::string identity;
  std::string port = "2222";
  std::string known_hosts;
  bool no_host_key_check = false;
  std::vector<std::string> words;  // host:service//command [args...]
};

// The flags, or the exit status when there is nothing to run: 0 after --help or --version,
// kLocalFailure after a usage error (printed).
pgod::Expected<Flags, int> parse_flags(int argc, char** argv) {
  Flags given;
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgoctl");
  flags.stop_at_first_positional();
  flags.add_string('i', "identity", &given.identity, "private key file (else $PGOCTL_ID, else ssh-agent)", "file");
  flags.add_string('p', "port", &given.port, "remote port", "port");
  flags.add_string(0, "known-hosts", &given.known_hosts, "host keys to check and record (default ~/.ssh/known_hosts)",
                   "file");
  flags.add_bool(0, "insecure-no-host-key-check", &given.no_host_key_check,
                 "skip the host key check (anyone on the path can then pose as the host)");
  flags.add_bool('v', "version", &version, "show version and exit");
  flags.add_bool('h', "help", &help, "show this help and exit");
  auto words = flags.parse({argv + 1, argv + argc});
  if (!words) return pgod::Unexpected{local_failure(words.error())};
  if (help) {
    fmt::print("{}\nCommands: {}\n{}", flags.usage(kSynopsis), pgod::verb_list(), help_text());
    return pgod::Unexpected{0};
  }
  if (version) {
    fmt::print("pgoctl {} (libssh {})\n", PGOD_VERSION, ssh_version(0));
    return pgod::Unexpected{0};
  }
  if (words->empty()) {
    fmt::print(stderr, "Usage: pgoctl {}\n", kSynopsis);
    return pgod::Unexpected{kLocalFailure};
  }
  given.words = std::move(*words);
  return given;
}

// host:service//command [args...], checked with the grammar the gateway uses: an unknown
// command is caught before connecting.
pgod::Expected<pgod::Command, int> parse_target(const std::vector<std::string>& words) {
  auto command = pgod::parse_command(words);
  if (!command) {
    const int code = local_failure(pgod::status_line(command.error().status, command.error().message));
    if (command.error().status == pgod::Status::kNotAcceptable) local_failure("valid commands: " + pgod::verb_list());
    return pgod::Unexpected{code};
  }
  if (command->host.empty())
    return pgod::Unexpected{
        local_failure(fmt::format("no host in \"{}\" (expected host:service//command)", words.front()))};
  return std::move(*command);
}

pgod::Expected<unsigned, int> parse_port(const std::string& port) {
  unsigned number = 0;
  const auto parsed = std::from_chars(port.data(), port.data() + port.size(), number);
  if (parsed.ec != std::errc() || parsed.ptr != port.data() + port.size() || number == 0 || number > 65535)
    return pgod::Unexpected{
        local_failure(fmt::format("invalid port \"{}\" (expected a number from 1 to 65535)", pgod::printable(port)))};
  return number;
}

// --known-hosts, else ~/.ssh/known_hosts when host keys are checked.
pgod::Expected<std::string, int> known_hosts_file(const Flags& flags) {
  if (!flags.known_hosts.empty() || flags.no_host_key_check) return flags.known_hosts;
  const auto home = home_directory();
  if (home.empty())
    return pgod::Unexpected{
        local_failure("cannot find your home directory for ~/.ssh/known_hosts; give --known-hosts FILE")};
  return home + "/.ssh/known_hosts";
}

// The key: -i, else $PGOCTL_ID, else the agent; a missing source is named before connecting.
pgod::Expected<pgod::ctl::Identity, int> choose_identity(const std::string& file) {
  if (!file.empty()) {
    auto text = read_key_file(file);
    if (!text) return pgod::Unexpected{local_failure(text.error())};
    return pgod::ctl::Identity{std::move(*text), "-i " + file, ""};
  }
  if (auto from_env = env("PGOCTL_ID"); !from_env.empty())
    return pgod::ctl::Identity{std::move(from_env), "$PGOCTL_ID", ""};
  if (auto agent = env("SSH_AUTH_SOCK"); !agent.empty()) return pgod::ctl::Identity{"", "ssh-agent", std::move(agent)};
  return pgod::Unexpected{local_failure(
      "no key to log in with: give -i FILE, set PGOCTL_ID to the private key's text, or run ssh-agent and ssh-add "
      "the key (SSH_AUTH_SOCK is not set)")};
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = parse_flags(argc, argv);
  if (!flags) return flags.error();
  auto command = parse_target(flags->words);
  if (!command) return command.error();

  pgod::ctl::ClientOptions options;
  options.host = command->host;
  options.command_line = pgod::command_line(*command);
  options.user = local_user();
  options.check_host_key = !flags->no_host_key_check;
  auto port = parse_port(flags->port);
  if (!port) return port.error();
  options.port = *port;
  auto known_hosts = known_hosts_file(*flags);
  if (!known_hosts) return known_hosts.error();
  options.known_hosts = std::move(*known_hosts);
  auto identity = choose_identity(flags->identity);
  if (!identity) return identity.error();
  options.identity = std::move(*identity);
  return pgod::ctl::run(options);
}
