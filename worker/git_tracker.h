// Tracks one service's repository with libgit2 (no git program): clone, fetch, move the
// checkout to origin/<branch>, and tell which paths changed between two commits.
//
// The repository URL may carry a token in its userinfo: no message from here ever contains
// it (errors go through redact_url()/redact()).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "expected.h"

namespace pgod::worker {

struct GitError {
  std::string message;  // what failed and libgit2's reason, credentials redacted
};

struct GitTrackerOptions {
  std::string repository;    // URL or path, possibly with credentials
  std::string branch;        // tracked branch
  std::string checkout_dir;  // <dir>/<service>: owned by the worker's user, may be empty
  // Network limits for http, https and git:// remotes (libgit2 1.5 has no timeouts of its own):
  // a connection that stays silent for io_timeout, or a clone/fetch still running after
  // operation_timeout, fails with "timed out".
  std::chrono::milliseconds io_timeout = std::chrono::seconds(60);
  std::chrono::milliseconds operation_timeout = std::chrono::minutes(10);
};

struct SyncResult {
  std::string previous_hash;   // HEAD before (empty on a fresh clone)
  std::string current_hash;    // HEAD after
  bool recloned = false;       // the repository was broken and rebuilt
  bool force_pushed = false;   // upstream was not a descendant: hard reset
  // Local edits thrown away (paths), for the log: tracked files changed in the work tree or
  // index, untracked files overwritten by a file the new commit adds; after a clone into a
  // non-empty directory or a rebuild, the files that differed from the commit.
  std::vector<std::string> discarded;
};

class GitTracker {
 public:
  explicit GitTracker(GitTrackerOptions options);
  ~GitTracker();
  GitTracker(const GitTracker&) = delete;
  GitTracker& operator=(const GitTracker&) = delete;

  // Clones when there is no usable repository (a corrupted .git is rebuilt beside the work
  // tree and swapped in, the work tree left in place), else fetches; then moves the checkout
  // to origin/<branch> (fast-forward, or hard reset after a force-push), discarding local
  // edits. Untracked files stay unless the commit brings a file at their path. Never touches
  // anything outside checkout_dir.
  Expected<SyncResult, GitError> sync();

  // Fetches only and returns origin/<branch>'s hash (does not move the checkout).
  Expected<std::string, GitError> fetch();

  // Moves the checkout to a commit that exists locally (rollback / pin).
  Expected<SyncResult, GitError> checkout(const std::string& commit_hash);

  // HEAD's full hash; empty when there is no repository yet.
  std::string head_hash() const;

  // Which of `paths` (relative to the checkout; a directory stands for everything below it)
  // differ between two commits, by a tree diff. Empty `from` means "everything is new".
  Expected<std::vector<std::string>, GitError> changed_paths(const std::string& from, const std::string& to,
                                                             const std::vector<std::string>& paths) const;

  // Whether `hash` (full or abbreviated, at least 4 hex digits) names a commit in the repo;
  // returns the full hash.
  Expected<std::string, GitError> resolve_commit(const std::string& hash) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgod::worker
