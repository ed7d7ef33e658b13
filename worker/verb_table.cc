#include "verb_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "service.h"

namespace pgod::worker {
namespace {

using namespace std::chrono_literals;
using V = ValueKind;
using sv = std::string_view;

constexpr std::array<sv, 1> kDetach = {"-d"};
constexpr std::array<sv, 1> kNoTty = {"-T"};
constexpr std::span<const sv> kNothingForced;

constexpr std::array kUpFlags = {
    FlagRule{'d', "detach", V::kNone, true}, FlagRule{0, "no-color", V::kNone},
    FlagRule{0, "quiet-pull", V::kNone},     FlagRule{0, "no-deps", V::kNone},
    FlagRule{0, "force-recreate", V::kNone}, FlagRule{0, "always-recreate-deps", V::kNone},
    FlagRule{0, "no-recreate", V::kNone},    FlagRule{0, "no-build", V::kNone},
    FlagRule{0, "no-start", V::kNone},       FlagRule{0, "build", V::kNone},
    FlagRule{0, "remove-orphans", V::kNone}, FlagRule{'V', "renew-anon-volumes", V::kNone},
    FlagRule{'t', "timeout", V::kNumber},    FlagRule{0, "wait", V::kNone},
};
constexpr std::array kDownFlags = {
    FlagRule{0, "remove-orphans", V::kNone},
    FlagRule{'v', "volumes", V::kNone},
    FlagRule{0, "rmi", V::kText},
    FlagRule{'t', "timeout", V::kNumber},
};
constexpr std::array kTimeoutFlag = {FlagRule{'t', "timeout", V::kNumber}};
constexpr std::span<const FlagRule> kNoFlags;
constexpr std::array kPsFlags = {
    FlagRule{'a', "all", V::kNone},  FlagRule{'q', "quiet", V::kNone}, FlagRule{0, "services", V::kNone},
    FlagRule{0, "filter", V::kText}, FlagRule{0, "format", V::kText},
};
constexpr std::array kPullFlags = {
    FlagRule{'q', "quiet", V::kNone},
    FlagRule{0, "ignore-pull-failures", V::kNone},
    FlagRule{0, "include-deps", V::kNone},
};
constexpr std::array kBuildFlags = {
    FlagRule{0, "no-cache", V::kNone},      FlagRule{0, "pull", V::kNone},     FlagRule{'q', "quiet", V::kNone},
    FlagRule{0, "build-arg", V::kKeyValue}, FlagRule{0, "progress", V::kText}, FlagRule{0, "parallel", V::kNone},
};
constexpr std::array kLogsFlags = {
    FlagRule{'f', "follow", V::kNone},      FlagRule{'t', "timestamps", V::kNone}, FlagRule{0, "tail", V::kText},
    FlagRule{0, "no-color", V::kNone},      FlagRule{0, "since", V::kText},        FlagRule{0, "until", V::kText},
    FlagRule{0, "no-log-prefix", V::kNone},
};
// Not here, on purpose: --privileged (root in the host's eyes), and a tty (-T is forced).
constexpr std::array kExecFlags = {
    FlagRule{'T', "no-TTY", V::kNone, true}, FlagRule{'d', "detach", V::kNone}, FlagRule{'e', "env", V::kKeyValue},
    FlagRule{'w', "workdir", V::kText},      FlagRule{'u', "user", V::kText},   FlagRule{0, "index", V::kNumber},
};

bool is_compose_name(sv name) {
  if (name.empty() || name.size() > 255) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  return alnum(name.front()) &&
         std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool is_printable(sv text) {
  return std::none_of(text.begin(), text.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

std::optional<std::string> check_value(const FlagRule& rule, sv spelled, sv value) {
  switch (rule.value) {
    case V::kNone:
      return std::nullopt;
    case V::kNumber:
      if (!value.empty() && value.size() <= 6 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
      return fmt::format("flag \"{}\" needs a number", spelled);
    case V::kText:
      if (!value.empty() && value.front() != '-' && value.size() <= 256 && is_printable(value)) return std::nullopt;
      return fmt::format("flag \"{}\" needs a value that does not start with '-'", spelled);
    case V::kKeyValue: {
      const auto eq = value.find('=');
      const auto name = value.substr(0, eq);
      const bool valid_name =
          !name.empty() && !(name.front() >= '0' && name.front() <= '9') &&
          std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
          });
      // NAME alone would make compose copy NAME from its own environment: pgo.toml's secrets.
      if (valid_name && eq != sv::npos && value.size() <= 4096) return std::nullopt;
      return fmt::format("flag \"{}\" needs NAME=VALUE", spelled);
    }
  }
  return "unreachable";
}

std::string allowed_list(const WorkerVerb& verb) {
  std::string out;
  for (const auto& rule : verb.flags) {
    if (!out.empty()) out += ", ";
    out += rule.short_name ? fmt::format("-{}/--{}", rule.short_name, rule.long_name)
                           : fmt::format("--{}", rule.long_name);
  }
  return out.empty() ? "none" : out;
}

// What the arguments say once read: the allowed flags (long form), the positionals, logs -f.
struct ReadArguments {
  std::vector<std::string> flags;
  std::vector<std::string> positionals;
  bool follow = false;
};

// The verb's rule for the flag `arg` (nullptr: not allowed), with the flag as spelled (for
// messages) and a value written into the same word.
const FlagRule* find_flag(const WorkerVerb& verb, const std::string& arg, std::string& spelled,
                          std::optional<std::string>& inline_value) {
  const FlagRule* rule = nullptr;
  if (arg.starts_with("--")) {
    const auto eq = arg.find('=');
    spelled = arg.substr(0, eq);
    for (const auto& r : verb.flags)
      if (spelled.substr(2) == r.long_name) rule = &r;
    if (eq != std::string::npos) inline_value = arg.substr(eq + 1);
  } else {
    spelled = arg.substr(0, 2);
    for (const auto& r : verb.flags)
      if (r.short_name != 0 && arg[1] == r.short_name) rule = &r;
    if (arg.size() > 2) inline_value = arg.substr(2);
  }
  return rule;
}

// The flag at args[i] (-x, -xVALUE, --long, --long=VALUE, or a value in the next word, which
// moves i past it), added to `read` in its long form; the error is the 406 message.
std::optional<std::string> read_flag(const WorkerVerb& verb, std::span<const std::string> args, std::size_t& i,
                                     ReadArguments& read) {
  const auto words = verb_info(verb.verb).words;
  const std::string& arg = args[i];
  if (arg == "--") return fmt::format("\"--\" is not allowed for {}", words);
  std::string spelled;
  std::optional<std::string> inline_value;
  const FlagRule* rule = find_flag(verb, arg, spelled, inline_value);
  if (rule == nullptr) {
    const std::string why = spelled == "--privileged" ? " (privileged containers are refused)" : "";
    return fmt::format("flag \"{}\" is not allowed for {}{} (allowed: {})", printable(spelled), words, why,
                       allowed_list(verb));
  }
  if (rule->value == V::kNone) {
    if (inline_value) return fmt::format("flag \"{}\" takes no value", spelled);
    if (!rule->drop) read.flags.push_back("--" + std::string(rule->long_name));
    if (verb.verb == Verb::kLogs && rule->long_name == "follow") read.follow = true;
    return std::nullopt;
  }
  if (!inline_value) {
    if (i + 1 >= args.size()) return fmt::format("flag \"{}\" needs a value", spelled);
    inline_value = args[++i];
  }
  if (auto problem = check_value(*rule, spelled, *inline_value)) return problem;
  if (!rule->drop) {
    read.flags.push_back("--" + std::string(rule->long_name));
    read.flags.push_back(*inline_value);
  }
  return std::nullopt;
}

bool is_commit_hash(const std::vector<std::string>& positionals) {
  return positionals.size() == 1 && positionals[0].size() >= 4 && positionals[0].size() <= 40 &&
         std::all_of(positionals[0].begin(), positionals[0].end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The positionals against the verb's rule; the error is the 406 message.
std::optional<std::string> check_positionals(const WorkerVerb& verb, const std::vector<std::string>& positionals) {
  const auto words = verb_info(verb.verb).words;
  switch (verb.positionals) {
    case Positionals::kNone:
      if (!positionals.empty())
        return fmt::format("{} takes no arguments, got \"{}\"", words, printable(positionals.front()));
      break;
    case Positionals::kServices:
      for (const auto& name : positionals)
        if (!is_compose_name(name)) return fmt::format("\"{}\" is not a compose service name", printable(name));
      break;
    case Positionals::kExec:
      if (positionals.size() < 2)
        return std::string("exec needs a service and a command: exec SERVICE COMMAND [ARGS...]");
      if (!is_compose_name(positionals.front()))
        return fmt::format("\"{}\" is not a compose service name", printable(positionals.front()));
      break;
    case Positionals::kHash:
      if (!is_commit_hash(positionals)) return fmt::format("{} needs one commit hash (4 to 40 hex digits)", words);
      break;
  }
  return std::nullopt;
}

}  // namespace

const WorkerVerb* find_worker_verb(Verb verb) {
  // A local table: its handlers are Service's private members, and this function is its friend.
  // clang-format off
  static constexpr std::array kVerbs = {
    //         verb               compose    forced          flags         positionals             login  timeout turn               handler
    WorkerVerb{Verb::kUp,        "up",      kDetach,        kUpFlags,     Positionals::kServices, true,  20min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kDown,      "down",    kNothingForced, kDownFlags,   Positionals::kNone,     false, 10min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kStop,      "stop",    kNothingForced, kTimeoutFlag, Positionals::kServices, false, 10min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kStart,     "start",   kNothingForced, kNoFlags,     Positionals::kServices, false, 10min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kRestart,   "restart", kNothingForced, kTimeoutFlag, Positionals::kServices, false, 10min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kPs,        "ps",      kNothingForced, kPsFlags,     Positionals::kServices, false, 2min,  Turn::kRead,     &Service::answer_compose},
    WorkerVerb{Verb::kPull,      "pull",    kNothingForced, kPullFlags,   Positionals::kServices, true,  20min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kBuild,     "build",   kNothingForced, kBuildFlags,  Positionals::kServices, true,  30min, Turn::kQueued,   &Service::answer_compose},
    WorkerVerb{Verb::kLogs,      "logs",    kNothingForced, kLogsFlags,   Positionals::kServices, false, 10min, Turn::kRead,     &Service::answer_compose},
    WorkerVerb{Verb::kExec,      "exec",    kNoTty,         kExecFlags,   Positionals::kExec,     false, 30min, Turn::kLongRead, &Service::answer_compose},
    WorkerVerb{Verb::kLoad,      "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 2min,  Turn::kQueued,   &Service::answer_load},
    WorkerVerb{Verb::kGitPull,   "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 30min, Turn::kToTheEnd, &Service::answer_git_pull},
    WorkerVerb{Verb::kGitHash,   "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 1min,  Turn::kAtOnce,   &Service::answer_git_hash},
    WorkerVerb{Verb::kStatus,    "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 1min,  Turn::kAtOnce,   &Service::answer_status},
    WorkerVerb{Verb::kFreeze,    "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 1min,  Turn::kQueued,   &Service::answer_freeze},
    WorkerVerb{Verb::kUnfreeze,  "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 30min, Turn::kToTheEnd, &Service::answer_unfreeze},
    WorkerVerb{Verb::kRollback,  "",        kNothingForced, kNoFlags,     Positionals::kHash,     false, 30min, Turn::kToTheEnd, &Service::answer_rollback},
    WorkerVerb{Verb::kHistory,   "",        kNothingForced, kNoFlags,     Positionals::kNone,     false, 1min,  Turn::kAtOnce,   &Service::answer_history},
  };
  // clang-format on
  for (const auto& row : kVerbs)
    if (row.verb == verb) return &row;
  return nullptr;
}

Expected<CheckedArguments, std::string> check_arguments(const WorkerVerb& verb, std::span<const std::string> args) {
  ReadArguments read;
  bool exec_command_started = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (exec_command_started || arg.size() < 2 || arg[0] != '-') {
      read.positionals.push_back(arg);
      // After exec's SERVICE, everything is the command and belongs to it.
      if (verb.positionals == Positionals::kExec) exec_command_started = true;
      continue;
    }
    if (auto problem = read_flag(verb, args, i, read)) return Unexpected{*problem};
  }
  if (auto problem = check_positionals(verb, read.positionals)) return Unexpected{*problem};

  CheckedArguments checked;
  checked.follow = read.follow;
  if (!verb.compose_subcommand.empty()) {
    checked.compose_args.emplace_back(verb.compose_subcommand);
    for (auto forced : verb.forced) checked.compose_args.emplace_back(forced);
  }
  checked.compose_args.insert(checked.compose_args.end(), read.flags.begin(), read.flags.end());
  checked.compose_args.insert(checked.compose_args.end(), read.positionals.begin(), read.positionals.end());
  return checked;
}

}  // namespace pgod::worker
