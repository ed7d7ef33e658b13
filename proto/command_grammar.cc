#include "command_grammar.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "service_name.h"

namespace pgod {
namespace {

constexpr std::array kVerbs = {
    VerbInfo{Verb::kUp, "up", Handler::kWorker, true, "create and start the containers (up -d)"},
    VerbInfo{Verb::kDown, "down", Handler::kWorker, true, "stop and remove the containers"},
    VerbInfo{Verb::kStop, "stop", Handler::kWorker, true, "stop the containers"},
    VerbInfo{Verb::kStart, "start", Handler::kWorker, true, "start stopped containers"},
    VerbInfo{Verb::kRestart, "restart", Handler::kWorker, true, "restart the containers"},
    VerbInfo{Verb::kPs, "ps", Handler::kWorker, false, "list the containers"},
    VerbInfo{Verb::kPull, "pull", Handler::kWorker, true, "pull the images"},
    VerbInfo{Verb::kBuild, "build", Handler::kWorker, true, "build the images"},
    VerbInfo{Verb::kLogs, "logs", Handler::kWorker, false, "show container output (-f follows)"},
    // exec changes a container, not the deployment: it need not wait for a cycle (nor hold one up).
    VerbInfo{Verb::kExec, "exec", Handler::kWorker, false, "run a command in a running container"},
    VerbInfo{Verb::kLoad, "load", Handler::kWorker, false, "validate the compose file only"},
    VerbInfo{Verb::kGitPull, "git pull", Handler::kWorker, true, "fetch and reconcile now"},
    VerbInfo{Verb::kGitHash, "git hash", Handler::kWorker, false, "print the deployed commit"},
    VerbInfo{Verb::kPing, "ping", Handler::kGateway, false, "check access (answers pong!)"},
    VerbInfo{Verb::kStatus, "status", Handler::kWorker, false, "show state, hash and last error"},
    VerbInfo{Verb::kFreeze, "freeze", Handler::kWorker, true, "stop tracking upstream"},
    VerbInfo{Verb::kUnfreeze, "unfreeze", Handler::kWorker, true, "track upstream again"},
    VerbInfo{Verb::kRollback, "rollback", Handler::kWorker, true, "pin to a commit: rollback <hash>"},
    VerbInfo{Verb::kHistory, "history", Handler::kWorker, false, "list the last deploys"},
    VerbInfo{Verb::kWorkerRestart, "worker restart", Handler::kSupervisor, true,
             "restart this service's worker process"},
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool is_valid_host(std::string_view host) {
  if (host.empty() || host.size() > 255) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
           c == '_' || c == ':' || c == '%';
  });
}

CommandError bad_request(std::string message) { return {Status::kBadRequest, std::move(message)}; }

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  for (const unsigned char c : text) {
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  return out;
}

std::span<const VerbInfo> all_verbs() { return kVerbs; }

const VerbInfo& verb_info(Verb verb) {
  for (const auto& info : kVerbs)
    if (info.verb == verb) return info;
  return kVerbs.front();  // unreachable: every enumerator has a row
}

std::string verb_list() {
  std::string out;
  for (const auto& info : kVerbs) {
    if (!out.empty()) out += ", ";
    out += info.words;
  }
  return out;
}

Expected<std::vector<std::string>, std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\0') return Unexpected{std::string("NUL byte in command line")};
    if (is_space(c)) {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\'') {
      const auto close = line.find('\'', i + 1);
      if (close == std::string_view::npos) return Unexpected{std::string("unterminated ' quote")};
      const auto quoted = line.substr(i + 1, close - i - 1);
      if (quoted.find('\0') != std::string_view::npos) return Unexpected{std::string("NUL byte in command line")};
      word += quoted;
      i = close;
    } else if (c == '"') {
      bool closed = false;
      for (++i; i < line.size(); ++i) {
        const char q = line[i];
        if (q == '\0') return Unexpected{std::string("NUL byte in command line")};
        if (q == '"') {
          closed = true;
          break;
        }
        if (q == '\\' && i + 1 < line.size() &&
            (line[i + 1] == '"' || line[i + 1] == '\\' || line[i + 1] == '$' || line[i + 1] == '`')) {
          word += line[++i];
        } else {
          word += q;
        }
      }
      if (!closed) return Unexpected{std::string("unterminated \" quote")};
    } else if (c == '\\') {
      if (i + 1 >= line.size()) return Unexpected{std::string("backslash at end of command line")};
      if (line[i + 1] == '\0') return Unexpected{std::string("NUL byte in command line")};
      word += line[++i];
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

std::string quote_words(std::span<const std::string> words) {
  std::string line;
  for (const auto& word : words) {
    if (!line.empty()) line += ' ';
    const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             std::string_view("-_./:=,+@%^").find(c) != std::string_view::npos;
    });
    if (plain) {
      line += word;
      continue;
    }
    // Single quotes keep everything literal; a ' itself is closed, escaped and reopened.
    line += '\'';
    for (const char c : word) {
      if (c == '\'')
        line += "'\\''";
      else
        line += c;
    }
    line += '\'';
  }
  return line;
}

Expected<Command, CommandError> parse_command(std::span<const std::string> words) {
  if (words.empty() || words.front().empty())
    return Unexpected{bad_request("no command given (expected [host:]service//command)")};

  const std::string_view first = words.front();
  const auto slashes = first.find("//");
  if (slashes == std::string_view::npos)
    return Unexpected{bad_request(fmt::format("expected [host:]service//command, got \"{}\"", printable(first)))};

  Command command;
  std::string_view target = first.substr(0, slashes);
  if (target.starts_with('[')) {
    const auto close = target.find("]:");
    if (close == std::string_view::npos)
      return Unexpected{
          bad_request(fmt::format("expected [address]:service before //, got \"{}\"", printable(target)))};
    command.host = std::string(target.substr(1, close - 1));
    target.remove_prefix(close + 2);
    if (!is_valid_host(command.host))
      return Unexpected{bad_request(fmt::format("invalid host \"{}\"", printable(command.host)))};
  } else if (const auto colon = target.rfind(':'); colon != std::string_view::npos) {
    command.host = std::string(target.substr(0, colon));
    target.remove_prefix(colon + 1);
    if (!is_valid_host(command.host))
      return Unexpected{bad_request(fmt::format("invalid host \"{}\"", printable(command.host)))};
  }
  if (!is_valid_service_name(target))
    return Unexpected{
        bad_request(fmt::format("invalid service name \"{}\" (expected [a-z0-9][a-z0-9_.-]*, at most {} characters)",
                                printable(target), kMaxServiceNameLength))};
  command.service = std::string(target);

  const std::string_view verb_word = first.substr(slashes + 2);
  if (verb_word.empty()) return Unexpected{bad_request("no command after // (expected one of: " + verb_list() + ")")};

  std::size_t args_begin = 1;
  std::string typed(verb_word);
  if (verb_word == "git" || verb_word == "worker") {
    if (words.size() > 1) {
      typed += ' ';
      typed += words[1];
      args_begin = 2;
    }
  }
  const auto known =
      std::find_if(kVerbs.begin(), kVerbs.end(), [&](const VerbInfo& info) { return info.words == typed; });
  if (known == kVerbs.end())
    return Unexpected{CommandError{Status::kNotAcceptable, not_acceptable_message(printable(typed))}};
  command.verb = known->verb;
  command.args.assign(words.begin() + static_cast<std::ptrdiff_t>(args_begin), words.end());
  return command;
}

Expected<Command, CommandError> parse_command_line(std::string_view line) {
  auto words = split_words(line);
  if (!words) return Unexpected{bad_request(words.error())};
  return parse_command(*words);
}

std::string command_line(const Command& command) {
  const auto& info = verb_info(command.verb);
  std::vector<std::string> words;
  const auto space = info.words.find(' ');
  words.push_back(command.service + "//" + std::string(info.words.substr(0, space)));
  if (space != std::string_view::npos) words.emplace_back(info.words.substr(space + 1));
  words.insert(words.end(), command.args.begin(), command.args.end());
  return quote_words(words);
}

}  // namespace pgod
