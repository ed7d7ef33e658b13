// The compose policy against a corpus of compose files (tests/corpus): real-world stacks that
// must be accepted (accept/) and attacks that must be refused for the reason they name
// (refuse/). Each file is committed to a real git repository and judged by a real pgod-worker
// through its `load` verb, with this host's real compose program: v2 by default, docker-compose
// (v1 on Debian 12) when registered again with PGOD_TEST_COMPOSE=standalone.
//
// A corpus file starts with comment lines that say what it is:
//   # why: <one line>                                  required
//   # expect: <substring>                              refuse/ only, required; may repeat: all
//                                                      must appear in the worker's answer
//   # file: <relative path> <<content, \n escapes>>    another file of the commit (.env, ...)
//   # symlink: <relative path> -> <target>             a symbolic link in the commit
//   # pgo-networks: proxy,other                        the service's allowed networks
//   # only: v1|v2                                      only that compose version parses it
// "${DATADIR}" and "${CHECKOUT}" in the compose file, the other files and symlink targets are
// replaced by the service's data directory and checkout before the commit.
//
// Nothing is ever brought up, and neither an engine nor a registry is contacted:
// - each repository's first commit has no compose file: the worker's first cycle stops at
//   "no compose file" without running docker;
// - `load` runs `compose config` only. Until `load` fetches the branch head itself it judges
//   the checkout, which only a cycle moves: the test then asks `git pull` first, and that
//   cycle runs `up -d` on a file the policy accepts (Service::deploy). A stop file does not
//   help: with one, cycle() runs `down` and never fetches. So two guards make every compose
//   command but `config` inert: the worker's PATH starts with a directory whose docker and
//   docker-compose run the real program for `config` and `version` only and refuse (and
//   record) anything else; and the service's env points DOCKER_HOST at a socket nothing
//   listens on, which `config` never needs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "compose_programs.h"
#include "git_fixture.h"
#include "rpc_verbs.h"
#include "worker_harness.h"

namespace pgod::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using rpc::ServiceState;
using rpc::Verb;

// The worker caps `compose config` at 30 s (then TERM, KILL 5 s later); a case without a
// verdict by then (the alias bomb on a worker without the cap) fails, and its worker is
// restarted.
constexpr auto kVerdictLimit = 50s;
// A safety net for this machine, not part of what is tested: the worker, and through it the
// compose it runs, get at most this much address space, so an expanding YAML bomb fails
// instead of taking the host's memory while it is waited for.
constexpr rlim_t kWorkerAddressSpace = rlim_t{4} << 30;
constexpr const char* kProject = "corpus";
constexpr const char* kComposeFile = "compose.yaml";

// ---- the corpus ----------------------------------------------------------------------------

struct CorpusCase {
  std::string name;  // "refuse/privileged.yaml"
  bool accept = false;
  std::string why;
  std::vector<std::string> expected;
  std::vector<std::pair<std::string, std::string>> files;     // path, content
  std::vector<std::pair<std::string, std::string>> symlinks;  // path, target
  std::vector<std::string> networks;
  int only = 0;                       // the compose major version that can parse it; 0: any
  std::string compose;                // the file as written
  std::vector<std::string> problems;  // what is wrong with its header
};

// "\n" and "\t" in a `# file:` line; any other backslash stays as written.
std::string unescape(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[++i];
    if (next == 'n') {
      out += '\n';
    } else if (next == 't') {
      out += '\t';
    } else if (next == '\\') {
      out += '\\';
    } else {
      out += '\\';
      out += next;
    }
  }
  return out;
}

// A path of the commit: relative, and never climbing out of it.
bool is_commit_path(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  for (const auto& part : fs::path(path)) {
    if (part == ".." || part == ".git") return false;
  }
  return true;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    items.push_back(item);
  }
  return items;
}

CorpusCase parse_case(const fs::path& file, bool accept) {
  CorpusCase c;
  c.name = file.parent_path().filename().string() + "/" + file.filename().string();
  c.accept = accept;
  c.compose = read_file(file.string());
  static const std::regex kDirective(R"(^# ([a-z-]+): (.*)$)");
  std::istringstream lines(c.compose);
  for (std::string line; std::getline(lines, line) && line.starts_with("#");) {
    std::smatch match;
    if (!std::regex_match(line, match, kDirective)) continue;  // an ordinary comment
    const std::string key = match[1], value = match[2];
    if (key == "why") {
      c.why = value;
    } else if (key == "expect") {
      c.expected.push_back(value);
    } else if (key == "file") {
      const auto open = value.find(" <<");
      if (open == std::string::npos || !value.ends_with(">>")) {
        c.problems.push_back("`# file:` needs `<path> <<content>>`: " + value);
        continue;
      }
      c.files.emplace_back(value.substr(0, open), unescape(value.substr(open + 3, value.size() - open - 5)));
    } else if (key == "symlink") {
      const auto arrow = value.find(" -> ");
      if (arrow == std::string::npos) {
        c.problems.push_back("`# symlink:` needs `<path> -> <target>`: " + value);
        continue;
      }
      c.symlinks.emplace_back(value.substr(0, arrow), value.substr(arrow + 4));
    } else if (key == "pgo-networks") {
      c.networks = split_list(value);
    } else if (key == "only") {
      if (value == "v1" || value == "v2")
        c.only = value == "v1" ? 1 : 2;
      else
        c.problems.push_back("`# only:` must be v1 or v2, not " + value);
    } else {
      c.problems.push_back("unknown directive `# " + key + ":`");
    }
  }
  if (c.why.empty()) c.problems.push_back("no `# why:` line");
  if (accept && !c.expected.empty()) c.problems.push_back("an accepted file has no `# expect:`");
  if (!accept && c.expected.empty()) c.problems.push_back("a refused file needs at least one `# expect:`");
  for (const auto& expected : c.expected)
    if (expected.empty()) c.problems.push_back("an empty `# expect:`");
  for (const auto& network : c.networks)
    if (network.empty()) c.problems.push_back("an empty name in `# pgo-networks:`");
  for (const auto& [path, content] : c.files)
    if (!is_commit_path(path) || path == kComposeFile) c.problems.push_back("not a path for another file: " + path);
  for (const auto& [path, target] : c.symlinks)
    if (!is_commit_path(path) || target.empty()) c.problems.push_back("not a symlink of the commit: " + path);
  return c;
}

// Every *.yaml of accept/ or refuse/, in name order.
std::vector<CorpusCase> load_corpus(const std::string& kind) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(std::string(PGOD_CORPUS_DIR) + "/" + kind))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<CorpusCase> cases;
  for (const auto& file : files) cases.push_back(parse_case(file, kind == "accept"));
  return cases;
}

std::string substituted(std::string text, const std::string& data_dir, const std::string& checkout) {
  for (const auto& [placeholder, value] : {std::pair<std::string, std::string>{"${DATADIR}", data_dir},
                                           std::pair<std::string, std::string>{"${CHECKOUT}", checkout}}) {
    for (auto at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder, at + value.size()))
      text.replace(at, placeholder.size(), value);
  }
  return text;
}

// ---- the service: repository, guard, worker -------------------------------------------------

std::string one_line(std::string text, std::size_t limit = 300) {
  std::replace(text.begin(), text.end(), '\0', ' ');
  std::replace(text.begin(), text.end(), '\n', ' ');
  if (text.size() > limit) text = text.substr(0, limit) + "…";
  return text;
}

// PIDs of the live processes whose command line holds `text`.
std::vector<pid_t> processes_mentioning(const std::string& text) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (pid != getpid() && read_file(entry.path().string() + "/cmdline").find(text) != std::string::npos)
      found.push_back(pid);
  }
  return found;
}

// A bare repository and a work clone; each commit replaces the whole tree (symlinks included,
// which GitUpstream cannot make).
class CorpusRepository {
 public:
  explicit CorpusRepository(const std::string& root) : bare_(root + "/corpus.git"), work_(root + "/corpus.work") {
    git({"init", "-q", "--bare", bare_});
    git({"-C", bare_, "symbolic-ref", "HEAD", "refs/heads/main"});
    git({"init", "-q", "-b", "main", work_});
    git({"-C", work_, "remote", "add", "origin", bare_});
  }
  const std::string& url() const { return bare_; }

  void commit(const std::vector<std::pair<std::string, std::string>>& files,
              const std::vector<std::pair<std::string, std::string>>& symlinks, const std::string& message) {
    for (const auto& entry : fs::directory_iterator(work_)) {
      if (entry.path().filename() == ".git") continue;
      // A link (data -> /) is removed itself, never followed.
      if (entry.is_symlink())
        fs::remove(entry.path());
      else
        fs::remove_all(entry.path());
    }
    for (const auto& [path, content] : files) {
      const fs::path file = fs::path(work_) / path;
      fs::create_directories(file.parent_path());
      std::ofstream(file, std::ios::binary) << content;
    }
    for (const auto& [path, target] : symlinks) {
      const fs::path link = fs::path(work_) / path;
      fs::create_directories(link.parent_path());
      fs::create_symlink(target, link);
    }
    git({"-C", work_, "add", "-A"});
    git({"-C", work_, "commit", "-q", "--allow-empty", "-m", message});
    git({"-C", work_, "push", "-q", "origin", "HEAD:refs/heads/main"});
  }

 private:
  std::string bare_, work_;
};

// docker and docker-compose as the worker finds them first in its PATH: the real program for
// `config` and `version`, nothing else. The subcommand is the first word after the global
// options the worker gives (-p NAME -f FILE).
constexpr const char* kGuardScript = R"(#!/bin/sh
# The policy corpus test's docker and docker-compose: the real program for `config` and
# `version` only. Anything else (up, pull, build, down, login) is refused and recorded.
program=${0##*/}
subcommand=
skip=
for arg in "$@"; do
  if [ -n "$skip" ]; then skip=; continue; fi
  case $arg in
    compose) if [ "$program" = docker ] && [ -z "$in_compose" ]; then in_compose=1; continue; fi ;;
    -p|-f|--project-name|--file|--project-directory|--env-file|--profile) skip=1; continue ;;
    -*) continue ;;
  esac
  subcommand=$arg
  break
done
case $subcommand in
  config|version)
    PATH=${PATH#*:}
    export PATH
    exec "$program" "$@" ;;
esac
printf '%s\n' "$program $*" >> "${0%/*}/refused.log"
echo "policy corpus test: refused: $program $*" >&2
exit 97
)";

enum class LoadMode { kUnknown, kJudgesHead, kJudgesCheckout };

// A verb's answer: its exit status and output, or the exception the call failed with.
struct Answer {
  RunOutcome outcome;
  std::string exception;  // set when the worker threw instead of answering
};

struct Verdict {
  bool answered = false;
  RunOutcome load;
  std::string exception;  // `load` failed with an RPC exception instead of an exit status
  std::string pull;       // what `git pull` printed, when it ran
  std::chrono::milliseconds took{0};
};

// One pgod-worker for one setting of `networks`, judging the cases committed one after the other.
class CorpusService {
 public:
  // `pull_first`: ask `git pull` before each `load` even when `load` judges the head.
  CorpusService(const std::vector<std::string>& networks, bool pull_first)
      : repository_(root_.path()), data_dir_(root_.path() + "/data/" + kProject), guard_dir_(root_.path() + "/guard") {
    if (pull_first) mode_ = LoadMode::kJudgesCheckout;
    fs::create_directories(data_dir_);
    fs::create_directories(guard_dir_);
    for (const char* name : {"docker", "docker-compose"}) {
      const auto path = guard_dir_ + "/" + name;
      std::ofstream(path) << kGuardScript;
      fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
    }
    repository_.commit({{"README.md", "no compose file yet\n"}}, {}, "no compose file");
    worker_ = std::make_unique<WorkerHarness>(
        repository_.url(),
        [&](rpc::ServiceSettings::Builder s) {
          s.setName(kProject);
          s.setDataDir(data_dir_);
          auto env = s.initEnv(1);
          env[0].setName("DOCKER_HOST");
          env[0].setValue("unix://" + root_.path() + "/no-engine.sock");
          auto allowed = s.initNetworks(static_cast<unsigned>(networks.size()));
          for (unsigned i = 0; i < networks.size(); ++i) allowed.set(i, networks[i]);
        },
        /*standin=*/false);
    start();
  }

  const std::string& checkout() const { return worker_->checkout_dir(); }
  LoadMode mode() const { return mode_; }
  // What the first cycle (no compose file) left: BROKEN, as a failed deploy does.
  ServiceState first_cycle_state() const { return first_cycle_state_; }
  // Every docker or compose command the guard refused, one a line.
  std::string refused_commands() const { return read_file(guard_dir_ + "/refused.log"); }

  void commit(const CorpusCase& c) {
    std::vector<std::pair<std::string, std::string>> files{
        {kComposeFile, substituted(c.compose, data_dir_, checkout())}};
    for (const auto& [path, content] : c.files) files.emplace_back(path, substituted(content, data_dir_, checkout()));
    auto symlinks = c.symlinks;
    for (auto& [path, target] : symlinks) target = substituted(target, data_dir_, checkout());
    repository_.commit(files, symlinks, c.name);
  }

  // The worker's verdict on the branch head: `load`, after `git pull` while `load` judges the
  // checkout. A case without an answer in time restarts the worker, so that the next case
  // does not queue behind the compose it still runs.
  Verdict judge() {
    const auto started = std::chrono::steady_clock::now();
    Verdict verdict;
    const auto finish = [&]() {
      verdict.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      if (!verdict.answered) restart();
      return verdict;
    };
    if (mode_ != LoadMode::kJudgesCheckout) {
      auto load = run_within(Verb::LOAD);
      if (!load) return finish();
      if (mode_ == LoadMode::kUnknown) {
        // The head has a compose file; the checkout (still the first commit) has none.
        const auto said = load->outcome.out + load->outcome.err + load->exception;
        mode_ = said.find("no compose file") != std::string::npos ? LoadMode::kJudgesCheckout : LoadMode::kJudgesHead;
      }
      if (mode_ == LoadMode::kJudgesHead) {
        verdict.answered = true;
        verdict.load = std::move(load->outcome);
        verdict.exception = std::move(load->exception);
        return finish();
      }
    }
    auto pull = run_within(Verb::GIT_PULL);
    if (!pull) return finish();
    verdict.pull = pull->outcome.out + pull->outcome.err + pull->exception;
    auto load = run_within(Verb::LOAD);
    if (!load) return finish();
    verdict.answered = true;
    verdict.load = std::move(load->outcome);
    verdict.exception = std::move(load->exception);
    return finish();
  }

 private:
  void start() {
    // The worker's log is appended to across restarts: this start's first cycle is the next
    // mention of the missing compose file.
    const auto mentions = [&]() {
      const auto log = worker_->worker_log();
      std::size_t count = 0;
      for (auto at = log.find("no compose file"); at != std::string::npos; at = log.find("no compose file", at + 1))
        ++count;
      return count;
    };
    const auto before = mentions();
    worker_->start({"--path-prefix", guard_dir_});
    const rlimit limit{kWorkerAddressSpace, kWorkerAddressSpace};
    if (prlimit(worker_->pid(), RLIMIT_AS, &limit, nullptr) != 0)
      ADD_FAILURE() << "cannot limit the worker's address space: " << std::strerror(errno);
    // The first commit has no compose file: the first cycle ends there, having run no docker.
    ASSERT_TRUE(worker_->wait_for([&] { return mentions() > before; }, 120s)) << worker_->worker_log();
    first_cycle_state_ = worker_->state();
  }

  void restart() {
    worker_->stop();
    // A compose the worker did not stop with itself would run on (the alias bomb, expanding):
    // found by this worker's directory in its command line, stopped by its PID.
    const auto base = fs::path(worker_->state_dir()).parent_path().parent_path().string() + "/";
    for (const auto pid : processes_mentioning(base)) {
      ADD_FAILURE() << "process " << pid << " outlived its stopped worker: "
                    << one_line(read_file("/proc/" + std::to_string(pid) + "/cmdline"));
      kill(pid, SIGKILL);
    }
    repository_.commit({{"README.md", "no compose file again\n"}}, {}, "no compose file");
    start();
  }

  // A verb with a deadline; nullopt when there was no answer in time (the call is then
  // dropped, which asks the worker to cancel it).
  std::optional<Answer> run_within(Verb verb) {
    // The sink writes into `outcome` for as long as the worker holds it: an abandoned call's
    // outcome stays alive until the worker (and the connection) is gone.
    auto outcome = std::make_unique<RunOutcome>();
    Answer result;
    auto request = worker_->client().runRequest();
    request.setVerb(verb);
    request.initArgs(0);
    request.setOutput(kj::heap<CollectingSink>(outcome->out, outcome->err));
    request.setCaller("policy-corpus");
    auto answer = request.send().then([&outcome = *outcome](capnp::Response<rpc::Worker::RunResults>&& response) {
      outcome.exit_status = response.getExitStatus();
      outcome.message = response.getMessage();
      return true;
    });
    auto limit =
        worker_->io().provider->getTimer().afterDelay(kVerdictLimit.count() * kj::SECONDS).then([]() { return false; });
    bool answered = true;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   answered = answer.exclusiveJoin(kj::mv(limit)).wait(worker_->io().waitScope);
                 })) {
      result.exception = exception->getDescription().cStr();
    }
    if (!answered) {
      abandoned_.push_back(std::move(outcome));
      return std::nullopt;
    }
    result.outcome = *outcome;
    return result;
  }

  TempDir root_;
  CorpusRepository repository_;
  std::string data_dir_, guard_dir_;
  std::vector<std::unique_ptr<RunOutcome>> abandoned_;  // destroyed after the worker
  std::unique_ptr<WorkerHarness> worker_;
  LoadMode mode_ = LoadMode::kUnknown;
  ServiceState first_cycle_state_ = ServiceState::STARTING;
};

// ---- judging and reporting -------------------------------------------------------------------

struct Row {
  std::string name;
  std::string result;  // PASS, FAIL or SKIP
  std::string detail;
  std::chrono::milliseconds took{0};
};

// Empty when the verdict is the one the case expects; else why not, in one line.
std::string mismatch(const CorpusCase& c, const Verdict& verdict) {
  if (!verdict.answered)
    return "no verdict within " + std::to_string(kVerdictLimit.count()) + " s (compose config not capped in time)";
  if (!verdict.exception.empty()) {
    // No exit status and no output: a caller sees a failed call, not the verdict.
    bool named = !c.accept;
    for (const auto& expected : c.expected) named = named && verdict.exception.find(expected) != std::string::npos;
    return std::string("load failed with an RPC exception instead of an exit status") +
           (named ? " (its text names the expected reason)" : "") + ": " + one_line(verdict.exception);
  }
  const auto& load = verdict.load;
  const std::string said = load.out + load.err + load.message;
  if (c.accept) {
    if (load.exit_status == 0 && load.out.find(std::string(kComposeFile) + ": OK") != std::string::npos) return "";
    return "refused: " + one_line(said);
  }
  if (load.exit_status == 0) return "accepted: " + one_line(said);
  std::string missing;
  for (const auto& expected : c.expected)
    if (said.find(expected) == std::string::npos) missing += (missing.empty() ? "" : ", ") + expected;
  if (missing.empty()) return "";
  return "refused without [" + missing + "]: " + one_line(said);
}

std::string expected_verdict(const CorpusCase& c) {
  if (c.accept) return std::string("accepted (exit 0, \"") + kComposeFile + ": OK\")";
  std::string text = "refused (exit non-zero) with";
  for (const auto& expected : c.expected) text += " [" + expected + "]";
  return text;
}

std::string compose_label() { return compose_under_test() + " (v" + std::to_string(compose_major_under_test()) + ")"; }

void print_table(const std::string& title, const std::vector<std::string>& notes, const std::vector<Row>& rows) {
  std::size_t passed = 0, failed = 0, skipped = 0;
  std::ostringstream table;
  for (const auto& row : rows) {
    (row.result == "PASS" ? passed : row.result == "FAIL" ? failed : skipped) += 1;
    char line[160];
    std::snprintf(line, sizeof line, "%-4s %6.1fs  %-50s ", row.result.c_str(), row.took.count() / 1000.0,
                  row.name.c_str());
    table << line << row.detail << "\n";
  }
  std::ostringstream text;
  text << title << ": " << passed << " pass, " << failed << " fail, " << skipped << " skipped\n";
  for (const auto& note : notes) text << "  " << note << "\n";
  text << table.str() << "\n";
  std::printf("\n%s", text.str().c_str());
  // PGOD_CORPUS_REPORT=FILE: the table appended there too, for reports.
  if (const char* report = std::getenv("PGOD_CORPUS_REPORT"); report != nullptr && *report != '\0')
    std::ofstream(report, std::ios::app) << text.str();
}

const char* mode_name(LoadMode mode) {
  switch (mode) {
    case LoadMode::kJudgesHead:
      return "load judges the branch head";
    case LoadMode::kJudgesCheckout:
      return "load judges the checkout: git pull before each load";
    default:
      return "load never answered";
  }
}

// Every case of accept/ or refuse/ through the worker, one worker per `pgo-networks` setting.
// PGOD_CORPUS_FILTER=TEXT runs only the files whose name holds TEXT; PGOD_CORPUS_GIT_PULL=1
// asks `git pull` before every `load`, as for a worker whose `load` judges the checkout (the
// guard then stops the `up -d` of each accepted file).
void judge_corpus(const std::string& kind) {
  const auto cases = load_corpus(kind);
  ASSERT_FALSE(cases.empty()) << "no corpus files in " << PGOD_CORPUS_DIR << "/" << kind;
  const int major = compose_major_under_test();
  ASSERT_GT(major, 0) << "the compose program under test (" << compose_under_test() << ") does not answer `version`";
  // The standalone pass is the v1 pass where the release ships v1: never v2 a second time.
  if (compose_under_test() == "standalone" && debian_codename() == "bookworm") {
    ASSERT_EQ(major, 1) << "Debian 12's docker-compose must be v1 for the standalone corpus pass";
  }
  const char* filter = std::getenv("PGOD_CORPUS_FILTER");
  const char* pull_first = std::getenv("PGOD_CORPUS_GIT_PULL");

  std::map<std::vector<std::string>, std::vector<const CorpusCase*>> by_networks;
  std::vector<Row> rows;
  for (const auto& c : cases) {
    if (filter != nullptr && c.name.find(filter) == std::string::npos) continue;
    if (!c.problems.empty()) {
      rows.push_back({c.name, "FAIL", "malformed: " + c.problems.front()});
      ADD_FAILURE() << c.name << ": malformed corpus file: " << c.problems.front();
    } else if (c.only != 0 && c.only != major) {
      rows.push_back({c.name, "SKIP", "only v" + std::to_string(c.only)});
    } else {
      by_networks[c.networks].push_back(&c);
    }
  }

  std::vector<std::string> notes;
  for (const auto& [networks, group] : by_networks) {
    CorpusService service(networks, pull_first != nullptr && std::string(pull_first) == "1");
    if (::testing::Test::HasFatalFailure()) return;
    for (const auto* c : group) {
      service.commit(*c);
      const auto verdict = service.judge();
      if (::testing::Test::HasFatalFailure()) return;  // the worker did not come back
      const auto wrong = mismatch(*c, verdict);
      // A refusal that passes shows what the worker said, to check it refused for the reason.
      const auto said = c->accept ? std::string() : one_line(verdict.load.out + verdict.load.err, 200);
      rows.push_back({c->name, wrong.empty() ? "PASS" : "FAIL", wrong.empty() ? said : wrong, verdict.took});
      if (wrong.empty()) continue;
      ADD_FAILURE() << c->name << " under " << compose_label() << "\n  why: " << c->why
                    << "\n  expected: " << expected_verdict(*c) << "\n  received: "
                    << (!verdict.answered ? "no answer within " + std::to_string(kVerdictLimit.count()) + " s"
                        : !verdict.exception.empty()
                            ? "an RPC exception: " + verdict.exception
                            : "exit " + std::to_string(verdict.load.exit_status) + "\n  stdout: " + verdict.load.out +
                                  "\n  stderr: " + verdict.load.err + "\n  message: " + verdict.load.message)
                    << (verdict.pull.empty() ? "" : "\n  git pull said: " + one_line(verdict.pull, 2000));
    }
    std::string label = networks.empty() ? "no networks setting" : "networks = ";
    for (std::size_t i = 0; i < networks.size(); ++i) label += (i ? "," : "") + networks[i];
    notes.push_back(label + ": " + mode_name(service.mode()));
    if (service.first_cycle_state() != ServiceState::BROKEN)
      notes.push_back(std::string("  the first cycle (no compose file) left the state ") +
                      service_state_name(service.first_cycle_state()) + ", not BROKEN");
    const auto refused = service.refused_commands();
    if (service.mode() == LoadMode::kJudgesHead) {
      EXPECT_EQ(refused, "") << "load ran docker or compose for more than config";
    } else if (!refused.empty()) {
      const auto count = std::count(refused.begin(), refused.end(), '\n');
      notes.push_back("  " + std::to_string(count) + " command(s) of the git pull cycles stopped by the guard, e.g. " +
                      one_line(refused.substr(0, refused.find('\n')), 200));
    }
  }
  print_table("policy corpus " + kind + "/ under " + compose_label(), notes, rows);
}

TEST(PolicyCorpus, IsWellFormed) {
  std::size_t accepted = 0, refused = 0;
  for (const std::string kind : {"accept", "refuse"}) {
    for (const auto& c : load_corpus(kind)) {
      (c.accept ? accepted : refused) += 1;
      for (const auto& problem : c.problems) ADD_FAILURE() << c.name << ": " << problem;
    }
  }
  EXPECT_GE(accepted, 50u) << "real-world stacks that must be accepted";
  EXPECT_GE(refused, 50u) << "attacks that must be refused";
}

TEST(PolicyCorpus, RealWorldStacksAreAccepted) { judge_corpus("accept"); }

TEST(PolicyCorpus, AttacksAreRefusedForTheirReason) { judge_corpus("refuse"); }

}  // namespace
}  // namespace pgod::test
