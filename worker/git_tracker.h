// Tracks one service's repository with libgit2 (no git program): clone, fetch, write a commit
// into a staging directory to be judged, move the checkout to it, and tell which paths changed
// between two commits.
//
// The checkout is attacker-writable (containers may bind-mount it read-write), so the git
// directory lives outside it, in git_dir, and is only ever opened by that path with the work
// tree set explicitly: nothing a container writes into the checkout (a .git with core.worktree,
// hooks, http.proxy...) is ever read as repository data.
//
// The repository URL may carry a token in its userinfo: no message from here ever contains
// it (errors go through redact_url()/redact()).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
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
  // The repository (a bare git directory whose work tree is checkout_dir), somewhere no
  // container can reach: the worker passes <state_dir>/git. Empty: the old layout, with the
  // repository in <checkout_dir>/.git, which a container that mounts the checkout can rewrite.
  std::string git_dir = {};
  // Network limits for http, https and git:// remotes (libgit2 1.5 has no timeouts of its own):
  // a connection that stays silent for io_timeout, or a clone/fetch still running after
  // operation_timeout, fails with "timed out".
  std::chrono::milliseconds io_timeout = std::chrono::seconds(60);
  std::chrono::milliseconds operation_timeout = std::chrono::minutes(10);
};

struct SyncResult {
  std::string previous_hash;  // HEAD before (empty on a fresh clone)
  std::string current_hash;   // HEAD after
  bool recloned = false;      // the repository was broken and rebuilt (since the last move)
  bool force_pushed = false;  // the commit was not a descendant of HEAD: hard reset
  // Local edits thrown away (paths), for the log: tracked files changed in the work tree or
  // index, untracked files overwritten by a file the new commit adds; after a clone into a
  // non-empty directory or a rebuild, the files that differed from the commit; ".git" when a
  // .git planted in the checkout was removed (with git_dir set; not on the first move, which
  // removes the repository of the old layout).
  std::vector<std::string> discarded;
};

class GitTracker {
 public:
  explicit GitTracker(GitTrackerOptions options);
  ~GitTracker();
  GitTracker(const GitTracker&) = delete;
  GitTracker& operator=(const GitTracker&) = delete;

  // fetch() then move_to(origin/<branch>), without a judge in between (tests, old callers):
  // clones, repairs, discards local edits as below. Untracked files stay unless the commit
  // brings a file at their path. Touches nothing but checkout_dir, git_dir and, while building
  // a repository, <git_dir>.pgod-new and <git_dir>.pgod-broken beside it.
  Expected<SyncResult, GitError> sync();

  // Fetches origin/<branch> and returns its full hash, without touching the checkout. Clones
  // first when there is no repository yet (so that fetch, stage, judge, move works from a first
  // start), and rebuilds a damaged one beside it and swaps it in. With git_dir set, a
  // <checkout>/.git of the old layout is never read: its config may have been rewritten by a
  // container; the first move removes it. A failed fetch changes nothing.
  Expected<std::string, GitError> fetch();

  // Writes the tree of a local commit into staging_dir (emptied first, without following
  // symlinks; created 0700 when missing; its parent must exist), symlinks as symlinks and
  // without filters, so the judge sees the exact bytes move_to() will put in the checkout. The
  // checkout, index and HEAD are untouched. Returns staging_dir.
  Expected<std::string, GitError> stage(const std::string& commit_hash, const std::string& staging_dir);

  // Moves the checkout in place (containers bind-mount its files) to a local commit, normally
  // one fetch() returned and the worker judged: a fast-forward when it descends from HEAD, else
  // a hard reset (force_pushed). Local edits are discarded as listed in SyncResult.
  Expected<SyncResult, GitError> move_to(const std::string& commit_hash);

  // Moves the checkout to a commit that exists locally (rollback / pin): move_to() without
  // calling a rewind a force-push.
  Expected<SyncResult, GitError> checkout(const std::string& commit_hash);

  // HEAD's full hash; empty when there is no repository yet, or it has not been moved yet.
  std::string head_hash() const;

  // Which of `paths` (relative to the checkout; a directory stands for everything below it)
  // differ between two commits, by a tree diff. Empty `from` means "everything is new".
  Expected<std::vector<std::string>, GitError> changed_paths(const std::string& from, const std::string& to,
                                                             const std::vector<std::string>& paths) const;

  // A local commit's signature and the bytes it signs (the commit object without its gpgsig
  // header), as `git verify-commit` hands them to the verifier. Both empty: the commit is not
  // signed.
  struct Signature {
    std::string signature;
    std::string signed_data;
  };
  Expected<Signature, GitError> commit_signature(const std::string& commit_hash) const;

  // Whether local commit `commit` is `ancestor` or descends from it.
  Expected<bool, GitError> descends_from(const std::string& commit, const std::string& ancestor) const;

  // Whether `hash` (full or abbreviated, at least 4 hex digits) names a commit in the repo;
  // returns the full hash.
  Expected<std::string, GitError> resolve_commit(const std::string& hash) const;

  // The regular files (modes 100644 and 100755: no symlinks, no subdirectories) directly in
  // `directory` (relative to the repository root, e.g. "ssh") of a local commit, read from the
  // object database rather than the checkout, as (name, content) sorted by name: the first
  // max_files of those no larger than max_bytes_per_file. Empty when the commit has no such
  // directory. The worker reads the tracked branch's ssh/*.pub this way, whatever the checkout
  // is pinned to or a container wrote into it.
  Expected<std::vector<std::pair<std::string, std::string>>, GitError> read_directory(
      const std::string& commit_hash, const std::string& directory, std::size_t max_files,
      std::size_t max_bytes_per_file) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgod::worker
