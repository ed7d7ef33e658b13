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
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
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
  std::vector<std::string> argv{
      "/usr/bin/git",         "-c", "user.name=pgod test",     "-c", "user.email=test@pgod.invalid", "-c",
      "commit.gpgsign=false", "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"};
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
  commit_work(message);
  git({"-C", work_, "push", "-q", "origin", "HEAD:refs/heads/" + branch_});
  return git({"-C", work_, "rev-parse", "HEAD"});
}

void GitUpstream::sign_commits(const std::string& private_key) { signing_key_ = private_key; }

void GitUpstream::commit_work(const std::string& message) {
  if (signing_key_.empty()) {
    git({"-C", work_, "commit", "-q", "--allow-empty", "-m", message});
    return;
  }
  git({"-C", work_, "-c", "gpg.format=ssh", "-c", "user.signingkey=" + signing_key_, "commit", "-S", "-q",
       "--allow-empty", "-m", message});
}

std::string GitUpstream::commit_symlink(const std::string& path, const std::string& target,
                                        const std::string& message) {
  const std::filesystem::path link = std::filesystem::path(work_) / path;
  std::filesystem::remove_all(link);
  std::filesystem::create_directories(link.parent_path());
  std::filesystem::create_symlink(target, link);
  return commit({}, message);
}

std::string GitUpstream::rewrite_last(const std::map<std::string, std::optional<std::string>>& files,
                                      const std::string& message) {
  git({"-C", work_, "reset", "-q", "--hard", "HEAD~1"});
  write_files(work_, files);
  git({"-C", work_, "add", "-A"});
  commit_work(message);
  git({"-C", work_, "push", "-q", "--force", "origin", "HEAD:refs/heads/" + branch_});
  return git({"-C", work_, "rev-parse", "HEAD"});
}

std::string GitUpstream::head() const { return git({"-C", bare_, "rev-parse", "refs/heads/" + branch_}); }

namespace {

// Whether a server could bind 127.0.0.1:`port` (0: any; the port taken is returned).
int bind_loopback(int port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0) return -1;
  socklen_t size = sizeof address;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &size) < 0) {
    throw std::system_error(errno, std::generic_category(), "getsockname");
  }
  return ntohs(address.sin_port);
}

}  // namespace

// Below the kernel's ephemeral range: outgoing connections (the tests' own clients) take their
// source ports from it, and one took a port handed out by bind(0) before pgod could bind it.
int free_loopback_port() {
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  constexpr int kLowest = 10000;
  if (ephemeral_low > kLowest + 1000) {
    // Never the same port twice in one process: fixtures take two or three in a row.
    static std::mutex handed_out_mutex;
    static std::set<int> handed_out;
    thread_local std::mt19937 random{std::random_device{}()};
    std::uniform_int_distribution<int> ports(kLowest, ephemeral_low - 1);
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int candidate = ports(random);
      const std::lock_guard lock(handed_out_mutex);
      if (handed_out.count(candidate) != 0) continue;
      const int port = bind_loopback(candidate);
      if (port <= 0) continue;
      handed_out.insert(port);
      return port;
    }
  }
  const int port = bind_loopback(0);
  if (port < 0) throw std::system_error(errno, std::generic_category(), "bind");
  return port;
}

GitHttpServer::GitHttpServer(const std::string& project_root, const std::string& user, const std::string& token) {
  const std::string root = dir_.path();
  const std::string log = root + "/requests.log";
  fs::create_directories(root + "/www");
  // The CGI: refuse anything but the expected Basic credentials, then hand over to git.
  const std::string script = root + "/git.cgi";
  write_file(script,
             "#!/bin/sh\n"
             "if [ \"$HTTP_AUTHORIZATION\" != \"Basic " +
                 base64(user + ":" + token) +
                 "\" ]; then\n"
                 "  echo refused >> '" +
                 log +
                 "'\n"
                 "  printf 'Status: 401 Unauthorized\\r\\nWWW-Authenticate: Basic realm=\"git\"\\r\\n"
                 "Content-Type: text/plain\\r\\n\\r\\nunauthorized\\n'\n"
                 "  exit 0\n"
                 "fi\n"
                 "echo ok >> '" +
                 log +
                 "'\n"
                 "GIT_PROJECT_ROOT='" +
                 project_root + "' GIT_HTTP_EXPORT_ALL=1 exec /usr/lib/git-core/git-http-backend\n");
  fs::permissions(script, fs::perms::owner_all);

  port_ = free_loopback_port();
  const std::string config = root + "/lighttpd.conf";
  write_file(config, "server.document-root = \"" + root +
                         "/www\"\n"
                         "server.bind = \"127.0.0.1\"\n"
                         "server.port = " +
                         std::to_string(port_) +
                         "\n"
                         "server.modules = (\"mod_alias\", \"mod_cgi\", \"mod_redirect\")\n"
                         "server.errorlog = \"" +
                         root +
                         "/error.log\"\n"
                         "alias.url = (\"/git\" => \"" +
                         script +
                         "\")\n"
                         "cgi.assign = (\"\" => \"\")\n"
                         // /moved/<repo> redirects to the same server under another name (localhost).
                         "url.redirect = (\"^/moved/(.*)$\" => \"http://localhost:" +
                         std::to_string(port_) + "/git/$1\")\n");

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

// ---------------------------------------------------------------------------------------------
// TLS on loopback

namespace pgod::test {
namespace {

void must_run(const std::vector<std::string>& argv, const std::string& what) {
  const auto result = run_process(argv);
  if (result.exit_code != 0) throw std::runtime_error(what + " failed: " + result.err + result.out);
}

// openssl req/x509 read their extensions from a config file: one per certificate, written
// beside it, so nothing of the host's openssl.cnf is used.
std::string certificate_config(const std::string& path, const std::string& name, const std::string& extensions) {
  write_file(path, "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = " + name + "\n[extensions]\n" + extensions);
  return path;
}

const std::vector<std::string> kNewKey = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};

}  // namespace

TestCertificateAuthority::TestCertificateAuthority(const std::string& name) {
  certificate_ = dir_.path() + "/ca.pem";
  key_ = dir_.path() + "/ca.key";
  const auto config = certificate_config(dir_.path() + "/ca.cnf", name,
                                         "basicConstraints = critical,CA:TRUE\n"
                                         "keyUsage = critical,keyCertSign,cRLSign\n"
                                         "subjectKeyIdentifier = hash\n");
  std::vector<std::string> argv = {"/usr/bin/openssl", "req", "-x509", "-config", config, "-extensions", "extensions"};
  argv.insert(argv.end(), kNewKey.begin(), kNewKey.end());
  argv.insert(argv.end(), {"-keyout", key_, "-out", certificate_, "-days", "2"});
  must_run(argv, "openssl req (the test CA)");
  // Readable by the test users a confined child runs as.
  fs::permissions(dir_.path(), fs::perms(0755));
  fs::permissions(certificate_, fs::perms(0644));
}

TestCertificateAuthority::Issued TestCertificateAuthority::issue(const std::string& name,
                                                                 const std::vector<std::string>& alt_names) const {
  static int serial = 1;
  const std::string base = dir_.path() + "/server" + std::to_string(serial);
  std::string alt;
  for (const auto& entry : alt_names) alt += (alt.empty() ? "" : ",") + entry;
  const auto config = certificate_config(base + ".cnf", name,
                                         "basicConstraints = CA:FALSE\n"
                                         "keyUsage = critical,digitalSignature\n"
                                         "extendedKeyUsage = serverAuth\n"
                                         "authorityKeyIdentifier = keyid\n" +
                                             (alt.empty() ? std::string() : "subjectAltName = " + alt + "\n"));
  Issued issued{base + ".pem", base + ".key"};
  std::vector<std::string> request = {"/usr/bin/openssl", "req", "-new", "-config", config};
  request.insert(request.end(), kNewKey.begin(), kNewKey.end());
  request.insert(request.end(), {"-keyout", issued.key, "-out", base + ".csr"});
  must_run(request, "openssl req (a server certificate)");
  // A serial of its own per certificate (and per process): clients may cache by issuer+serial.
  must_run({"/usr/bin/openssl", "x509", "-req", "-in", base + ".csr", "-CA", certificate_, "-CAkey", key_,
            "-set_serial", std::to_string(getpid()) + std::to_string(1000 + serial++), "-days", "1", "-extfile", config,
            "-extensions", "extensions", "-out", issued.certificate},
           "openssl x509 (signing a server certificate)");
  return issued;
}

namespace {

// One thread per connection: the handshake (logged), then bytes both ways until either side
// closes. select() cannot see TLS data already decrypted inside the ssl object: pending() can.
constexpr const char* kProxyScript = R"(import os, select, socket, ssl, sys, threading
backend_port = int(sys.argv[1])
certificate, key, port_file, log_file = sys.argv[2:6]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
lock = threading.Lock()

def log(line):
    with lock, open(log_file, "a") as out:
        out.write(line.replace("\n", " ") + "\n")

def serve(raw):
    try:
        tls = context.wrap_socket(raw, server_side=True)
    except Exception as error:
        log("failed: %s" % error)
        raw.close()
        return
    log("ok")
    backend = socket.create_connection(("127.0.0.1", backend_port))
    try:
        while True:
            readable = [tls] if tls.pending() else select.select([tls, backend], [], [])[0]
            if tls in readable:
                data = tls.recv(65536)
                if not data:
                    break
                backend.sendall(data)
            if backend in readable:
                data = backend.recv(65536)
                if not data:
                    break
                tls.sendall(data)
    except Exception:
        pass
    finally:
        backend.close()
        tls.close()

with open(port_file + ".new", "w") as out:
    out.write(str(listener.getsockname()[1]))
os.rename(port_file + ".new", port_file)
while True:
    connection, _ = listener.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
)";

}  // namespace

HttpsProxy::HttpsProxy(int backend_port, const TestCertificateAuthority::Issued& server_certificate) {
  const std::string root = dir_.path();
  const std::string script = root + "/proxy.py", port_file = root + "/port";
  write_file(script, kProxyScript);
  write_file(root + "/handshakes.log", "");
  posix_spawn_file_actions_t actions;
  if (posix_spawn_file_actions_init(&actions) != 0) throw std::runtime_error("posix_spawn_file_actions_init");
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, (root + "/proxy.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // Debian's python3, not whatever python3 comes first in PATH (docker-compose depends on it).
  std::vector<std::string> args{"/usr/bin/python3",
                                "-I",
                                script,
                                std::to_string(backend_port),
                                server_certificate.certificate,
                                server_certificate.key,
                                port_file,
                                root + "/handshakes.log"};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn python3");

  // The port file appears after listen(): no probing connection, which would log a handshake.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    std::ifstream in(port_file);
    if (in >> port_ && port_ > 0) break;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("the TLS proxy exited at start: " + read_file(root + "/proxy.out"));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop_child(pid_, std::chrono::seconds(5));
      pid_ = -1;
      throw std::runtime_error("the TLS proxy does not answer: " + read_file(root + "/proxy.out"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

HttpsProxy::~HttpsProxy() {
  // python3 ends at once on SIGTERM; SIGKILL (same PID) only if it does not.
  stop_child(pid_, std::chrono::seconds(5));
}

std::vector<std::string> HttpsProxy::handshakes() const {
  std::vector<std::string> lines;
  std::ifstream in(dir_.path() + "/handshakes.log");
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace pgod::test
