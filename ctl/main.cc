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
#include <cstring>

#include "client.h"
#include "command_grammar.h"
#include "flags.h"
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

pgod::Expected<std::string, std::string> read_key_file(const std::string& path) {
  pgod::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return pgod::Unexpected{fmt::format("cannot read the key {}: {}", path, std::strerror(errno))};
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd.get(), buffer, sizeof buffer);
    if (n == 0) return text;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return pgod::Unexpected{fmt::format("cannot read the key {}: {}", path, std::strerror(errno))};
    text.append(buffer, static_cast<std::size_t>(n));
  }
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

}  // namespace

int main(int argc, char** argv) {
  std::string identity;
  std::string port = "2222";
  std::string known_hosts;
  bool no_host_key_check = false;
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgoctl");
  flags.stop_at_first_positional();
  flags.add_string('i', "identity", &identity, "private key file (else $PGOCTL_ID, else ssh-agent)", "file");
  flags.add_string('p', "port", &port, "remote port", "port");
  flags.add_string(0, "known-hosts", &known_hosts, "host keys to check and record (default ~/.ssh/known_hosts)",
                   "file");
  flags.add_bool(0, "insecure-no-host-key-check", &no_host_key_check,
                 "skip the host key check (anyone on the path can then pose as the host)");
  flags.add_bool('v', "version", &version, "show version and exit");
  flags.add_bool('h', "help", &help, "show this help and exit");

  auto words = flags.parse({argv + 1, argv + argc});
  if (!words) {
    fmt::print(stderr, "pgoctl: {}\n", words.error());
    return kLocalFailure;
  }
  if (help) {
    fmt::print("{}\nCommands: {}\n{}", flags.usage(kSynopsis), pgod::verb_list(), help_text());
    return 0;
  }
  if (version) {
    fmt::print("pgoctl {} (libssh {})\n", PGOD_VERSION, ssh_version(0));
    return 0;
  }
  if (words->empty()) {
    fmt::print(stderr, "Usage: pgoctl {}\n", kSynopsis);
    return kLocalFailure;
  }
  auto command = pgod::parse_command(*words);
  if (!command) {
    fmt::print(stderr, "pgoctl: {}\n", pgod::status_line(command.error().status, command.error().message));
    if (command.error().status == pgod::Status::kNotAcceptable)
      fmt::print(stderr, "pgoctl: valid commands: {}\n", pgod::verb_list());
    return kLocalFailure;
  }
  if (command->host.empty()) {
    fmt::print(stderr, "pgoctl: no host in \"{}\" (expected host:service//command)\n", words->front());
    return kLocalFailure;
  }

  pgod::ctl::ClientOptions options;
  options.host = command->host;
  options.command_line = pgod::command_line(*command);
  options.user = local_user();
  options.check_host_key = !no_host_key_check;
  unsigned port_number = 0;
  const auto parsed = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (parsed.ec != std::errc() || parsed.ptr != port.data() + port.size() || port_number == 0 || port_number > 65535) {
    fmt::print(stderr, "pgoctl: invalid port \"{}\" (expected a number from 1 to 65535)\n", pgod::printable(port));
    return kLocalFailure;
  }
  options.port = port_number;

  if (known_hosts.empty() && options.check_host_key) {
    const auto home = home_directory();
    if (home.empty()) {
      fmt::print(stderr, "pgoctl: cannot find your home directory for ~/.ssh/known_hosts; give --known-hosts FILE\n");
      return kLocalFailure;
    }
    known_hosts = home + "/.ssh/known_hosts";
  }
  options.known_hosts = known_hosts;

  // The key: -i, else $PGOCTL_ID, else the agent; a missing source is named before connecting.
  if (!identity.empty()) {
    auto text = read_key_file(identity);
    if (!text) {
      fmt::print(stderr, "pgoctl: {}\n", text.error());
      return kLocalFailure;
    }
    options.identity = {std::move(*text), "-i " + identity, ""};
  } else if (auto from_env = env("PGOCTL_ID"); !from_env.empty()) {
    options.identity = {std::move(from_env), "$PGOCTL_ID", ""};
  } else if (auto agent = env("SSH_AUTH_SOCK"); !agent.empty()) {
    options.identity = {"", "ssh-agent", std::move(agent)};
  } else {
    fmt::print(stderr,
               "pgoctl: no key to log in with: give -i FILE, set PGOCTL_ID to the private key's text, or run "
               "ssh-agent and ssh-add the key (SSH_AUTH_SOCK is not set)\n");
    return kLocalFailure;
  }
  return pgod::ctl::run(options);
}
