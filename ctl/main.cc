// pgoctl: the user's client. This part: the command line, checked locally with the
// shared grammar (an unknown command is caught before connecting); the SSH client follows.
#include <fmt/format.h>
#include <libssh/libssh.h>

#include "command_grammar.h"
#include "flags.h"

namespace {
// pgoctl's own failures (usage, connection) exit 255, as OpenSSH's ssh does.
constexpr int kLocalFailure = 255;
}  // namespace

int main(int argc, char** argv) {
  std::string identity;
  std::string port = "2222";
  bool help = false;
  bool version = false;
  pgod::FlagSet flags("pgoctl");
  flags.add_string('i', "identity", &identity, "private key file (else $PGOCTL_ID, else ssh-agent)", "file");
  flags.add_string('p', "port", &port, "remote port", "port");
  flags.add_bool('v', "version", &version, "show version and exit");
  flags.add_bool('h', "help", &help, "show this help and exit");
  const std::string synopsis = "[-i IDENTITY] [-p PORT] [--] host:service//command [args...]";

  auto words = flags.parse({argv + 1, argv + argc});
  if (!words) {
    fmt::print(stderr, "pgoctl: {}\n", words.error());
    return kLocalFailure;
  }
  if (help) {
    fmt::print("{}\nCommands: {}\n", flags.usage(synopsis), pgod::verb_list());
    return 0;
  }
  if (version) {
    fmt::print("pgoctl {} (libssh {})\n", PGOD_VERSION, ssh_version(0));
    return 0;
  }
  if (words->empty()) {
    fmt::print(stderr, "Usage: pgoctl {}\n", synopsis);
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
  fmt::print(stderr, "pgoctl: connecting to {} is not implemented yet (would send: {})\n", command->host,
             pgod::command_line(*command));
  return kLocalFailure;
}
