// Real git repositories for tests, built with the `git` program: a bare upstream with a work
// clone to commit and push from, and a loopback HTTP server (lighttpd + git-http-backend)
// that asks for a Basic-auth token.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "process.h"

namespace pgod::test {

// Runs /usr/bin/git with a fixed identity and no dependence on the host's git config; throws
// std::runtime_error (with git's stderr) when it fails. Returns stdout without the final newline.
std::string git(const std::vector<std::string>& args);

// A bare repository `<root>/<name>` whose HEAD names `branch`, plus a work clone beside it.
class GitUpstream {
 public:
  explicit GitUpstream(const std::string& root, const std::string& name = "upstream.git",
                       const std::string& branch = "main");

  const std::string& path() const { return bare_; }  // usable as a repository URL
  const std::string& branch() const { return branch_; }

  // Writes `files` (path -> content; nullopt deletes) in the work clone, commits and pushes.
  // Returns the new commit's hash.
  std::string commit(const std::map<std::string, std::optional<std::string>>& files,
                     const std::string& message = "change");

  // Replaces `path` (a file or a whole directory) by a symlink to `target`, commits and pushes.
  std::string commit_symlink(const std::string& path, const std::string& target,
                             const std::string& message = "symlink");

  // Rewrites history: drops the branch's last commit, commits `files` instead and force-pushes.
  std::string rewrite_last(const std::map<std::string, std::optional<std::string>>& files,
                           const std::string& message = "rewritten");

  // The branch's tip in the bare repository.
  std::string head() const;

  // Signs the commits made from now on with this SSH private key (git's gpg.format ssh);
  // an empty path: unsigned again.
  void sign_commits(const std::string& private_key);

 private:
  void commit_work(const std::string& message);  // signed when sign_commits said so

  std::string bare_, work_, branch_;
  std::string signing_key_;  // empty: commits are not signed
};

// A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range where the
// kernel can (lighttpd cannot bind port 0).
int free_loopback_port();

// lighttpd on 127.0.0.1 serving the bare repositories below `project_root` at
// http://127.0.0.1:<port>/git/<name>, for Basic auth `user:token` only (else 401 with
// WWW-Authenticate). Stopped by its PID when the object goes away.
class GitHttpServer {
 public:
  GitHttpServer(const std::string& project_root, const std::string& user, const std::string& token);
  ~GitHttpServer();
  GitHttpServer(const GitHttpServer&) = delete;
  GitHttpServer& operator=(const GitHttpServer&) = delete;

  int port() const { return port_; }
  // http://<userinfo>@127.0.0.1:<port>/<prefix>/<repository> (no '@' when userinfo is empty).
  // Under the prefix "moved", requests are redirected to http://localhost:<port>/git/....
  std::string url(const std::string& repository, const std::string& userinfo, const std::string& prefix = "git") const;
  // Requests the CGI saw so far, and how many of them it refused.
  int requests() const;
  int refused() const;

 private:
  void stop();
  std::vector<std::string> log_lines() const;

  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A throwaway certificate authority made with openssl(1) in a temporary directory (openssl
// comes with ca-certificates, which docker-compose's Python libraries depend on), and server
// certificates it signs: for TLS on loopback that a client trusts only when told to.
class TestCertificateAuthority {
 public:
  explicit TestCertificateAuthority(const std::string& name = "pgod test CA");
  const std::string& certificate() const { return certificate_; }  // PEM

  struct Issued {
    std::string certificate;  // PEM file
    std::string key;          // PEM file, unencrypted
  };
  // A server certificate for `alt_names` (subjectAltName entries such as "IP:127.0.0.1",
  // "DNS:localhost"), valid from now for a day.
  Issued issue(const std::string& name, const std::vector<std::string>& alt_names) const;

 private:
  TempDir dir_;
  std::string certificate_, key_;
};

// TLS on 127.0.0.1 in front of a plain HTTP server on loopback (python3's ssl module, a thread
// per connection; Debian's lighttpd has no TLS without an extra package): what a client sends
// to https://127.0.0.1:<port>/... reaches http://127.0.0.1:<backend_port>/... unchanged.
// Stopped by its PID when the object goes away.
class HttpsProxy {
 public:
  HttpsProxy(int backend_port, const TestCertificateAuthority::Issued& server_certificate);
  ~HttpsProxy();
  HttpsProxy(const HttpsProxy&) = delete;
  HttpsProxy& operator=(const HttpsProxy&) = delete;

  int port() const { return port_; }
  // One line per TLS handshake: "ok", or "failed: <python's reason>" (e.g. a client that did
  // not trust the certificate aborts with an alert).
  std::vector<std::string> handshakes() const;

 private:
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace pgod::test
