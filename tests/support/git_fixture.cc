#include "git_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "unique_fd.h"

extern char** environ;

namespace pgod::test {
namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& file, const std::string& content) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

std::string base64(const std::string& text) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, text.size() - i);
    unsigned value = 0;
    for (std::size_t j = 0; j < 3; ++j) value = (value << 8) | (j < n ? static_cast<unsigned char>(text[i + j]) : 0u);
    for (std::size_t j = 0; j < 4; ++j) out += j <= n ? alphabet[(value >> (18 - 6 * j)) & 63] : '=';
  }
  return out;
}

bool port_answers(int port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

}  // namespace

std::string git(const std::vector<std::string>& args) {
  // A fixed identity and defaults, whatever the host's ~/.gitconfig says.
  std::vector<std::string> argv{"/usr/bin/git",
                                "-c", "user.name=pgod test",
                                "-c", "user.email=test@pgod.invalid",
                                "-c", "commit.gpgsign=false",
                                "-c", "init.defaultBranch=main",
                                "-c", "advice.detachedHead=false"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto result = run_process(argv);
  if (result.exit_code != 0) {
    std::string command;
    for (const auto& arg : args) command += " " + arg;
    throw std::runtime_error("git" + command + " failed (" + std::to_string(result.exit_code) + "): " + result.err);
  }
  std::string out = result.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

GitUpstream::GitUpstream(const std::string& root, const std::string& name, const std::string& branch)
    : bare_(root + "/" + name), work_(root + "/" + name + ".work"), branch_(branch) {
  git({"init", "-q", "--bare", bare_});
  // A bare repository's HEAD may name another branch than the one pushed: clones would then
  // have nothing checked out.
  git({"-C", bare_, "symbolic-ref", "HEAD", "refs/heads/" + branch_});
  git({"-C", bare_, "config", "http.receivepack", "true"});
  git({"init", "-q", "-b", branch_, work_});
  git({"-C", work_, "remote", "add", "origin", bare_});
}

namespace {

void write_files(const std::string& work, const std::map<std::string, std::optional<std::string>>& files) {
  for (const auto& [path, content] : files) {
    const fs::path file = fs::path(work) / path;
    if (content) {
      write_file(file, *content);
    } else {
      fs::remove_all(file);
    }
  }
}

}  // namespace

std::string GitUpstream::commit(const std::map<std::string, std::optional<std::string>>& files,
                                const std::string& message) {
  write_files(work_, files);
  git({"-C", work_, "add", "-A"});
  git({"-C", work_, "commit", "-q", "--allow-empty", "-m", message});
  git({"-C", work_, "push", "-q", "origin", "HEAD:refs/heads/" + branch_});
  return git({"-C", work_, "rev-parse", "HEAD"});
}

std::string GitUpstream::rewrite_last(const std::map<std::string, std::optional<std::string>>& files,
                                      const std::string& message) {
  git({"-C", work_, "reset", "-q", "--hard", "HEAD~1"});
  write_files(work_, files);
  git({"-C", work_, "add", "-A"});
  git({"-C", work_, "commit", "-q", "--allow-empty", "-m", message});
  git({"-C", work_, "push", "-q", "--force", "origin", "HEAD:refs/heads/" + branch_});
  return git({"-C", work_, "rev-parse", "HEAD"});
}

std::string GitUpstream::head() const { return git({"-C", bare_, "rev-parse", "refs/heads/" + branch_}); }

int free_loopback_port() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0) {
    throw std::system_error(errno, std::generic_category(), "bind");
  }
  socklen_t size = sizeof address;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &size) < 0) {
    throw std::system_error(errno, std::generic_category(), "getsockname");
  }
  return ntohs(address.sin_port);
}

GitHttpServer::GitHttpServer(const std::string& project_root, const std::string& user, const std::string& token) {
  const std::string root = dir_.path();
  const std::string log = root + "/requests.log";
  fs::create_directories(root + "/www");
  // The CGI: refuse anything but the expected Basic credentials, then hand over to git.
  const std::string script = root + "/git.cgi";
  write_file(script,
             "#!/bin/sh\n"
             "if [ \"$HTTP_AUTHORIZATION\" != \"Basic " + base64(user + ":" + token) + "\" ]; then\n"
             "  echo refused >> '" + log + "'\n"
             "  printf 'Status: 401 Unauthorized\\r\\nWWW-Authenticate: Basic realm=\"git\"\\r\\n"
             "Content-Type: text/plain\\r\\n\\r\\nunauthorized\\n'\n"
             "  exit 0\n"
             "fi\n"
             "echo ok >> '" + log + "'\n"
             "GIT_PROJECT_ROOT='" + project_root + "' GIT_HTTP_EXPORT_ALL=1 exec /usr/lib/git-core/git-http-backend\n");
  fs::permissions(script, fs::perms::owner_all);

  port_ = free_loopback_port();
  const std::string config = root + "/lighttpd.conf";
  write_file(config,
             "server.document-root = \"" + root + "/www\"\n"
             "server.bind = \"127.0.0.1\"\n"
             "server.port = " + std::to_string(port_) + "\n"
             "server.modules = (\"mod_alias\", \"mod_cgi\", \"mod_redirect\")\n"
             "server.errorlog = \"" + root + "/error.log\"\n"
             "alias.url = (\"/git\" => \"" + script + "\")\n"
             "cgi.assign = (\"\" => \"\")\n"
             // /moved/<repo> redirects to the same server under another name (localhost).
             "url.redirect = (\"^/moved/(.*)$\" => \"http://localhost:" + std::to_string(port_) + "/git/$1\")\n");

  posix_spawn_file_actions_t actions;
  if (posix_spawn_file_actions_init(&actions) != 0) throw std::runtime_error("posix_spawn_file_actions_init");
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, (root + "/lighttpd.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<std::string> args{"/usr/sbin/lighttpd", "-D", "-f", config};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn lighttpd");

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!port_answers(port_)) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::ifstream out(root + "/lighttpd.out");
      std::stringstream text;
      text << out.rdbuf();
      throw std::runtime_error("lighttpd exited at start: " + text.str());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      throw std::runtime_error("lighttpd does not answer on port " + std::to_string(port_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

GitHttpServer::~GitHttpServer() { stop(); }

void GitHttpServer::stop() {
  // lighttpd stops at once on SIGTERM; SIGKILL (same PID) only if it does not.
  stop_child(pid_, std::chrono::seconds(5));
  pid_ = -1;
}

std::string GitHttpServer::url(const std::string& repository, const std::string& userinfo,
                               const std::string& prefix) const {
  return "http://" + (userinfo.empty() ? "" : userinfo + "@") + "127.0.0.1:" + std::to_string(port_) + "/" + prefix +
         "/" + repository;
}

std::vector<std::string> GitHttpServer::log_lines() const {
  std::vector<std::string> lines;
  std::ifstream in(dir_.path() + "/requests.log");
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

int GitHttpServer::requests() const { return static_cast<int>(log_lines().size()); }

int GitHttpServer::refused() const {
  int count = 0;
  for (const auto& line : log_lines()) count += line == "refused";
  return count;
}

}  // namespace pgod::test
