#include "command_grammar.h"

#include <gtest/gtest.h>

namespace pgod {
namespace {

using Words = std::vector<std::string>;

struct ParseCase {
  std::string line;
  std::string host;
  std::string service;
  Verb verb;
  Words args;
};

void PrintTo(const ParseCase& c, std::ostream* out) { *out << c.line; }

class GrammarAccepts : public ::testing::TestWithParam<ParseCase> {};

TEST_P(GrammarAccepts, Parses) {
  const auto& c = GetParam();
  auto command = parse_command_line(c.line);
  ASSERT_TRUE(command.has_value()) << c.line << ": " << command.error().message;
  EXPECT_EQ(command->host, c.host);
  EXPECT_EQ(command->service, c.service);
  EXPECT_EQ(command->verb, c.verb);
  EXPECT_EQ(command->args, c.args);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, GrammarAccepts,
    ::testing::Values(
        ParseCase{"pgo//ps", "", "pgo", Verb::kPs, {}},
        ParseCase{"localhost:pgo//up", "localhost", "pgo", Verb::kUp, {}},
        ParseCase{"host.example.org:my-svc_1.x//logs -f --tail 10",
                  "host.example.org",
                  "my-svc_1.x",
                  Verb::kLogs,
                  {"-f", "--tail", "10"}},
        ParseCase{"[::1]:pgo//ping", "::1", "pgo", Verb::kPing, {}},
        ParseCase{"::1:pgo//ping", "::1", "pgo", Verb::kPing, {}},
        ParseCase{"127.0.0.1:pgo//down", "127.0.0.1", "pgo", Verb::kDown, {}},
        ParseCase{"pgo//git pull", "", "pgo", Verb::kGitPull, {}},
        ParseCase{"pgo//git hash", "", "pgo", Verb::kGitHash, {}},
        ParseCase{"pgo//worker restart", "", "pgo", Verb::kWorkerRestart, {}},
        ParseCase{"pgo//history", "", "pgo", Verb::kHistory, {}},
        ParseCase{"pgo//rollback 0123abcd", "", "pgo", Verb::kRollback, {"0123abcd"}},
        ParseCase{"  pgo//stop\tweb  ", "", "pgo", Verb::kStop, {"web"}},
        ParseCase{"pgo//exec web sh -c \"echo hi\"", "", "pgo", Verb::kExec, {"web", "sh", "-c", "echo hi"}},
        ParseCase{
            "pgo//exec web sh -c 'echo \"$HOME\"'", "", "pgo", Verb::kExec, {"web", "sh", "-c", "echo \"$HOME\""}},
        ParseCase{
            "pgo//exec web echo \"a\\\"b\\\\c\\$d\\`e\\n\"", "", "pgo", Verb::kExec, {"web", "echo", "a\"b\\c$d`e\\n"}},
        ParseCase{"pgo//exec web echo a\\ b ''", "", "pgo", Verb::kExec, {"web", "echo", "a b", ""}},
        ParseCase{"pgo//exec web echo x'y'\"z\"", "", "pgo", Verb::kExec, {"web", "echo", "xyz"}},
        ParseCase{"pgo//exec web echo $(id) ; rm -rf /",
                  "",
                  "pgo",
                  Verb::kExec,
                  {"web", "echo", "$(id)", ";", "rm", "-rf", "/"}},
        ParseCase{"pgo//status", "", "pgo", Verb::kStatus, {}}, ParseCase{"pgo//freeze", "", "pgo", Verb::kFreeze, {}},
        ParseCase{"pgo//unfreeze", "", "pgo", Verb::kUnfreeze, {}}, ParseCase{"pgo//load", "", "pgo", Verb::kLoad, {}},
        ParseCase{"pgo//build", "", "pgo", Verb::kBuild, {}}, ParseCase{"pgo//pull", "", "pgo", Verb::kPull, {}},
        ParseCase{"pgo//restart", "", "pgo", Verb::kRestart, {}},
        ParseCase{"pgo//start", "", "pgo", Verb::kStart, {}}));

struct ErrorCase {
  std::string line;
  Status status;
  std::string message;
};

void PrintTo(const ErrorCase& c, std::ostream* out) { *out << c.line.substr(0, c.line.find('\0')); }

class GrammarRejects : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(GrammarRejects, WithStatusAndWords) {
  const auto& c = GetParam();
  auto command = parse_command_line(c.line);
  ASSERT_FALSE(command.has_value()) << c.line;
  EXPECT_EQ(command.error().status, c.status) << command.error().message;
  EXPECT_EQ(command.error().message, c.message);
}

INSTANTIATE_TEST_SUITE_P(
    Errors, GrammarRejects,
    ::testing::Values(
        ErrorCase{"", Status::kBadRequest, "no command given (expected [host:]service//command)"},
        ErrorCase{"   ", Status::kBadRequest, "no command given (expected [host:]service//command)"},
        ErrorCase{"pgo", Status::kBadRequest, "expected [host:]service//command, got \"pgo\""},
        ErrorCase{"pgo/ps", Status::kBadRequest, "expected [host:]service//command, got \"pgo/ps\""},
        ErrorCase{"pgo//", Status::kBadRequest,
                  "no command after // (expected one of: up, down, stop, start, restart, ps, pull, build, logs, exec, "
                  "load, git pull, git hash, ping, status, freeze, unfreeze, rollback, history, worker restart)"},
        ErrorCase{"//ps", Status::kBadRequest,
                  "invalid service name \"\" (expected [a-z0-9][a-z0-9_.-]*, at most 64 characters)"},
        ErrorCase{"host://ps", Status::kBadRequest,
                  "invalid service name \"\" (expected [a-z0-9][a-z0-9_.-]*, at most 64 characters)"},
        ErrorCase{":pgo//ps", Status::kBadRequest, "invalid host \"\""},
        ErrorCase{"ho st:pgo//ps", Status::kBadRequest, "expected [host:]service//command, got \"ho\""},
        ErrorCase{"h/x:pgo//ps", Status::kBadRequest, "invalid host \"h/x\""},
        ErrorCase{"[::1:pgo//ps", Status::kBadRequest, "expected [address]:service before //, got \"[::1:pgo\""},
        ErrorCase{"../etc//ps", Status::kBadRequest,
                  "invalid service name \"../etc\" (expected [a-z0-9][a-z0-9_.-]*, at most 64 characters)"},
        ErrorCase{"Pgo//ps", Status::kBadRequest,
                  "invalid service name \"Pgo\" (expected [a-z0-9][a-z0-9_.-]*, at most 64 characters)"},
        ErrorCase{"a\x1b[31m//ps", Status::kBadRequest,
                  "invalid service name \"a\\x1b[31m\" (expected [a-z0-9][a-z0-9_.-]*, at most 64 characters)"},
        ErrorCase{"pgo//frob", Status::kNotAcceptable, "Command \"frob\" does not match any route"},
        ErrorCase{"pgo//PS", Status::kNotAcceptable, "Command \"PS\" does not match any route"},
        ErrorCase{"pgo//git", Status::kNotAcceptable, "Command \"git\" does not match any route"},
        ErrorCase{"pgo//git push", Status::kNotAcceptable, "Command \"git push\" does not match any route"},
        ErrorCase{"pgo//worker", Status::kNotAcceptable, "Command \"worker\" does not match any route"},
        ErrorCase{"pgo//worker stop", Status::kNotAcceptable, "Command \"worker stop\" does not match any route"},
        ErrorCase{"pgo//exec web 'oops", Status::kBadRequest, "unterminated ' quote"},
        ErrorCase{"pgo//exec web \"oops", Status::kBadRequest, "unterminated \" quote"},
        ErrorCase{"pgo//exec web oops\\", Status::kBadRequest, "backslash at end of command line"},
        ErrorCase{std::string("pgo//exec web a\0b", 17), Status::kBadRequest, "NUL byte in command line"},
        ErrorCase{std::string("pgo//exec web 'a\0b'", 19), Status::kBadRequest, "NUL byte in command line"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::to_string(info.index); });

TEST(Grammar, WordsRoundTripThroughQuoting) {
  const std::vector<Words> cases = {
      {"pgo//exec", "web", "sh", "-c", "echo 'hi' \"there\"; exit 3"},
      {"pgo//exec", "web", "", "a b", "\\", "$HOME", "`id`", "it's", "tab\there", "new\nline"},
      {"pgo//logs", "-f", "--tail=10"},
      {"pgo//exec", "web", "ünïcödé", "*", "?", "[x]", "~", "#c", "a&b|c>d<e"},
  };
  for (const auto& words : cases) {
    const auto line = quote_words(words);
    auto split = split_words(line);
    ASSERT_TRUE(split.has_value()) << line;
    EXPECT_EQ(*split, words) << line;
  }
}

TEST(Grammar, CommandLineDropsHostAndRoundTrips) {
  auto command = parse_command(Words{"host:pgo//git", "pull"});
  ASSERT_TRUE(command.has_value());
  EXPECT_EQ(command_line(*command), "pgo//git pull");

  auto exec = parse_command(Words{"h:pgo//exec", "web", "sh", "-c", "echo hi; exit 2"});
  ASSERT_TRUE(exec.has_value());
  const auto line = command_line(*exec);
  EXPECT_EQ(line, "pgo//exec web sh -c 'echo hi; exit 2'");
  auto back = parse_command_line(line);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->service, "pgo");
  EXPECT_EQ(back->verb, Verb::kExec);
  EXPECT_EQ(back->args, exec->args);
  EXPECT_TRUE(back->host.empty());
}

TEST(Grammar, VerbTableIsComplete) {
  // Every verb has exactly one row and is reachable by its words.
  for (const auto& info : all_verbs()) {
    EXPECT_EQ(verb_info(info.verb).words, info.words);
    auto command = parse_command_line("svc//" + std::string(info.words));
    ASSERT_TRUE(command.has_value()) << info.words;
    EXPECT_EQ(command->verb, info.verb);
  }
  EXPECT_EQ(all_verbs().size(), 20u);
  EXPECT_EQ(verb_info(Verb::kPing).handler, Handler::kGateway);
  EXPECT_EQ(verb_info(Verb::kWorkerRestart).handler, Handler::kSupervisor);
  EXPECT_FALSE(verb_info(Verb::kPs).mutates);
  EXPECT_TRUE(verb_info(Verb::kUp).mutates);
}

TEST(Status, WordsAndClientExitCodes) {
  EXPECT_EQ(status_line(Status::kUnauthorized, unauthorized_message("miek", "pgo")),
            "Unauthorized: Key for user \"miek\" does not match any for name pgo");
  EXPECT_EQ(status_line(Status::kNotFound, not_found_message("x")), "Not Found: No service found with name \"x\"");
  EXPECT_EQ(status_line(Status::kNotAcceptable, not_acceptable_message("frob")),
            "Not Acceptable: Command \"frob\" does not match any route");
  EXPECT_EQ(status_text(Status::kBadRequest), "Bad Request");
  EXPECT_EQ(status_text(Status::kInternalServerError), "Internal Server Error");
  // A command's own code passes through; pgod's codes wrap as OpenSSH's ssh wraps them.
  EXPECT_EQ(client_exit_code(0), 0);
  EXPECT_EQ(client_exit_code(3), 3);
  EXPECT_EQ(client_exit_code(255), 255);
  EXPECT_EQ(client_exit_code(400), 144);
  EXPECT_EQ(client_exit_code(401), 145);
  EXPECT_EQ(client_exit_code(404), 148);
  EXPECT_EQ(client_exit_code(406), 150);
  EXPECT_EQ(client_exit_code(500), 244);
  EXPECT_EQ(client_exit_code(512), 255) << "a wrapped 0 must not look like success";
}

}  // namespace
}  // namespace pgod
