// GitTracker against real repositories: bare upstreams made with the git program on disk, and
// served over HTTP on loopback by lighttpd + git-http-backend with a token.
#include "git_tracker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "git_fixture.h"
#include "process.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

namespace fs = std::filesystem;
using pgod::test::git;
using pgod::test::GitHttpServer;
using pgod::test::GitUpstream;
using pgod::test::TempDir;
using Strings = std::vector<std::string>;

std::string read_file(const fs::path& file) { return pgod::test::read_file(file.string()); }

void write_file(const fs::path& file, const std::string& content) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary | std::ios::trunc) << content;
}

// Whether anything is at `path`, a dangling symlink included.
bool present(const fs::path& path) {
  std::error_code ignored;
  return fs::exists(fs::symlink_status(path, ignored));
}

// A rebuild's half-made or put-aside repository, beside the git directory.
bool leftovers(const fs::path& git_dir) {
  return present(git_dir.string() + ".pgod-new") || present(git_dir.string() + ".pgod-broken");
}

// The names in a directory (not below it), sorted.
Strings entries(const fs::path& dir) {
  Strings names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class GitTrackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(checkout);
    fs::create_directory(state);
    initial = upstream.commit({{"compose.yaml", "services:\n  web:\n    image: busybox\n"},
                               {"README.md", "hello\n"},
                               {"app.env", "A=1\n"},
                               {"conf/site.conf", "listen 80\n"}},
                              "initial");
  }

  // The worker's layout: the repository in its state directory, outside the checkout.
  GitTrackerOptions options() const { return {upstream.path(), "main", checkout.string(), git_dir.string()}; }
  // The old layout: the repository in <checkout>/.git.
  GitTrackerOptions old_layout() const { return {upstream.path(), "main", checkout.string()}; }

  // The git program on the tracker's repository and checkout, as an operator would run it.
  std::string repo_git(Strings args) const {
    args.insert(args.begin(),
                {"-C", checkout.string(), "--git-dir=" + git_dir.string(), "--work-tree=" + checkout.string()});
    return git(args);
  }

  // A commit made in the upstream's work clone by hand (symlinks, modes), pushed.
  fs::path upstream_work() const { return upstream.path() + ".work"; }

  TempDir tmp;
  GitUpstream upstream{tmp.path()};
  fs::path checkout = fs::path(tmp.path()) / "checkout";
  fs::path state = fs::path(tmp.path()) / "state";
  fs::path git_dir = state / "git";
  std::string initial;
};

TEST_F(GitTrackerTest, ClonesIntoAnEmptyExistingDirectory) {
  GitTracker tracker(options());
  EXPECT_EQ(tracker.head_hash(), "");
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, "");
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_FALSE(result->recloned);
  EXPECT_FALSE(result->force_pushed);
  EXPECT_TRUE(result->discarded.empty());
  EXPECT_EQ(tracker.head_hash(), initial);
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services:\n  web:\n    image: busybox\n");
  EXPECT_EQ(read_file(checkout / "conf/site.conf"), "listen 80\n");
  // The repository is in git_dir; the checkout holds the commit's files and nothing else.
  EXPECT_TRUE(fs::is_regular_file(git_dir / "HEAD"));
  EXPECT_EQ(entries(checkout), (Strings{"README.md", "app.env", "compose.yaml", "conf"}));
  // A normal repository for the git program too: on the branch, clean, tracking origin.
  EXPECT_EQ(repo_git({"symbolic-ref", "HEAD"}), "refs/heads/main");
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
  EXPECT_EQ(repo_git({"rev-parse", "--abbrev-ref", "main@{upstream}"}), "origin/main");
  EXPECT_FALSE(leftovers(git_dir));
}

TEST_F(GitTrackerTest, ClonesIntoAMissingDirectory) {
  auto opts = options();
  opts.checkout_dir = tmp.path() + "/not-yet";
  GitTracker tracker(opts);
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_TRUE(fs::exists(fs::path(opts.checkout_dir) / "compose.yaml"));
}

TEST_F(GitTrackerTest, SyncWithoutChangesIsANoOp) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  std::vector<double> millis;
  for (int i = 0; i < 20; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto result = tracker.sync();
    millis.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(result->previous_hash, initial);
    EXPECT_EQ(result->current_hash, initial);
    EXPECT_FALSE(result->force_pushed);
    EXPECT_TRUE(result->discarded.empty());
  }
  std::sort(millis.begin(), millis.end());
  // Informational (not a timed test): the median of 20 no-change syncs on a local upstream.
  std::cout << "no-change sync median: " << (millis[9] + millis[10]) / 2 << " ms (min " << millis.front() << ", max "
            << millis.back() << ")\n";
}

TEST_F(GitTrackerTest, FastForwardsToANewCommit) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  const auto next = upstream.commit({{"compose.yaml", "services: {}\n"}, {"README.md", std::nullopt}});
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, initial);
  EXPECT_EQ(result->current_hash, next);
  EXPECT_FALSE(result->force_pushed);
  EXPECT_FALSE(result->recloned);
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services: {}\n");
  EXPECT_FALSE(fs::exists(checkout / "README.md"));
  EXPECT_EQ(repo_git({"rev-parse", "HEAD"}), next);
  EXPECT_FALSE(present(checkout / ".git"));
}

TEST_F(GitTrackerTest, HardResetsAfterAForcePush) {
  GitTracker tracker(options());
  const auto second = upstream.commit({{"second.txt", "2\n"}});
  ASSERT_TRUE(tracker.sync());
  ASSERT_EQ(tracker.head_hash(), second);
  const auto rewritten = upstream.rewrite_last({{"third.txt", "3\n"}});
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, second);
  EXPECT_EQ(result->current_hash, rewritten);
  EXPECT_TRUE(result->force_pushed);
  EXPECT_FALSE(fs::exists(checkout / "second.txt"));
  EXPECT_EQ(read_file(checkout / "third.txt"), "3\n");
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
}

TEST_F(GitTrackerTest, UnrelatedCommitChangesNoComposePath) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  const auto next = upstream.commit({{"README.md", "changed\n"}, {"docs/notes.md", "new\n"}});
  auto result = tracker.sync();
  ASSERT_TRUE(result);
  auto changed = tracker.changed_paths(result->previous_hash, result->current_hash,
                                       {"compose.yaml", "app.env", "conf", "conf/site.conf"});
  ASSERT_TRUE(changed) << changed.error().message;
  EXPECT_EQ(*changed, Strings{});
  // The same commits, asked about the paths that did change.
  changed = tracker.changed_paths(initial, next, {"README.md", "docs", "compose.yaml"});
  ASSERT_TRUE(changed) << changed.error().message;
  EXPECT_EQ(*changed, (Strings{"README.md", "docs"}));
}

TEST_F(GitTrackerTest, DetectsChangesToTheComposeFileAndReferencedPaths) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  const Strings referenced{"compose.yaml", "app.env", "conf/", "./conf/site.conf"};
  auto ask = [&](const std::string& from, const std::string& to) {
    EXPECT_TRUE(tracker.fetch());  // the new commits must be in the checkout's repository
    auto changed = tracker.changed_paths(from, to, referenced);
    EXPECT_TRUE(changed) << changed.error().message;
    return changed ? *changed : Strings{"<error>"};
  };
  const auto compose = upstream.commit({{"compose.yaml", "services: {}\n"}});
  EXPECT_EQ(ask(initial, compose), Strings{"compose.yaml"});
  const auto env = upstream.commit({{"app.env", "A=2\n"}});
  EXPECT_EQ(ask(compose, env), Strings{"app.env"});
  // Exact files match exactly: app.env.example is not app.env, conf.d is not conf.
  const auto similar = upstream.commit({{"app.env.example", "A=\n"}, {"conf.d/x", "x\n"}});
  EXPECT_EQ(ask(env, similar), Strings{});
  const auto below = upstream.commit({{"conf/nested/extra.conf", "x\n"}});
  EXPECT_EQ(ask(similar, below), Strings{"conf/"});
  const auto deleted = upstream.commit({{"conf/site.conf", std::nullopt}});
  EXPECT_EQ(ask(below, deleted), (Strings{"conf/", "./conf/site.conf"}));
  const auto renamed = upstream.commit({{"app.env", std::nullopt}, {"other.env", "A=2\n"}});
  EXPECT_EQ(ask(deleted, renamed), Strings{"app.env"});
  // Over several commits at once, and in the other direction.
  EXPECT_EQ(ask(initial, renamed), referenced);
  EXPECT_EQ(ask(renamed, initial), referenced);
  // "." is the whole checkout; paths outside it never change.
  auto changed = tracker.changed_paths(env, similar, {".", "../outside", "/etc/passwd"});
  ASSERT_TRUE(changed);
  EXPECT_EQ(*changed, Strings{"."});
}

TEST_F(GitTrackerTest, EmptyFromCountsThePathsPresentInTheTarget) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  auto changed = tracker.changed_paths("", initial, {"compose.yaml", "missing.yaml", "conf", "conf/site.conf", "../x"});
  ASSERT_TRUE(changed) << changed.error().message;
  EXPECT_EQ(*changed, (Strings{"compose.yaml", "conf", "conf/site.conf"}));
  // Abbreviated hashes work there too; unknown commits are errors.
  changed = tracker.changed_paths(initial.substr(0, 8), initial, {"compose.yaml"});
  ASSERT_TRUE(changed) << changed.error().message;
  EXPECT_EQ(*changed, Strings{});
  EXPECT_FALSE(tracker.changed_paths(std::string(40, '0'), initial, {"compose.yaml"}));
}

TEST_F(GitTrackerTest, DiscardsLocalEditsButKeepsUntrackedFiles) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(checkout / "compose.yaml", "services:\n  evil:\n    privileged: true\n");
  fs::remove(checkout / "app.env");
  write_file(checkout / "Caddyfile.import", "generated\n");  // untracked: kept
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_EQ(result->discarded, (Strings{"app.env", "compose.yaml"}));
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services:\n  web:\n    image: busybox\n");
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");
  EXPECT_EQ(read_file(checkout / "Caddyfile.import"), "generated\n");

  // A staged edit, together with an upstream change.
  write_file(checkout / "README.md", "local\n");
  repo_git({"add", "README.md"});
  const auto next = upstream.commit({{"app.env", "A=3\n"}});
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, next);
  EXPECT_EQ(result->discarded, Strings{"README.md"});
  EXPECT_EQ(read_file(checkout / "README.md"), "hello\n");
  EXPECT_EQ(read_file(checkout / "Caddyfile.import"), "generated\n");
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "?? Caddyfile.import");
}

TEST_F(GitTrackerTest, OverwritesAnUntrackedFileInTheWayAndSaysSo) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(checkout / "new.txt", "local\n");
  write_file(checkout / "same.txt", "same\n");  // already what upstream will have: nothing lost
  upstream.commit({{"new.txt", "upstream\n"}, {"same.txt", "same\n"}});
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->discarded, Strings{"new.txt"});
  EXPECT_EQ(read_file(checkout / "new.txt"), "upstream\n");
}

TEST_F(GitTrackerTest, RebuildsWhenTheObjectsAreGone) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(checkout / "Caddyfile.import", "generated\n");
  const auto mode = fs::status(checkout / "compose.yaml").permissions();
  fs::remove_all(git_dir / "objects");
  const auto next = upstream.commit({{"app.env", "A=2\n"}});
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->recloned);
  EXPECT_EQ(result->previous_hash, "");
  EXPECT_EQ(result->current_hash, next);
  EXPECT_EQ(tracker.head_hash(), next);
  // The work tree stayed in place, now at the new commit; untracked files survive.
  EXPECT_EQ(read_file(checkout / "app.env"), "A=2\n");
  EXPECT_EQ(fs::status(checkout / "compose.yaml").permissions(), mode);
  EXPECT_EQ(read_file(checkout / "Caddyfile.import"), "generated\n");
  EXPECT_EQ(result->discarded, Strings{"app.env"});  // it differed from the new commit
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "?? Caddyfile.import");
  EXPECT_FALSE(leftovers(git_dir));
  // And it keeps working afterwards.
  auto again = tracker.sync();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(again->recloned);
  EXPECT_EQ(again->previous_hash, next);
}

TEST_F(GitTrackerTest, RebuildsWhenObjectsAreMissingFromAnIntactLayout) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  // The repository still opens; reading HEAD's commit fails.
  for (const auto& entry : fs::recursive_directory_iterator(git_dir / "objects")) {
    if (entry.is_regular_file()) fs::remove(entry.path());
  }
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->recloned);
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_EQ(repo_git({"fsck", "--no-progress"}), "");
}

TEST_F(GitTrackerTest, ADamagedCheckoutWaitsForAReachableUpstream) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(git_dir / "HEAD", "garbage\n");
  fs::rename(upstream.path(), upstream.path() + ".gone");
  auto result = tracker.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("is damaged"), std::string::npos) << result.error().message;
  // Nothing was swapped: the damaged repository is still there, the work tree untouched.
  EXPECT_EQ(read_file(git_dir / "HEAD"), "garbage\n");
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");
  EXPECT_FALSE(leftovers(git_dir));
  fs::rename(upstream.path() + ".gone", upstream.path());
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->recloned);
  EXPECT_EQ(result->current_hash, initial);
}

TEST_F(GitTrackerTest, RebuildsWhenHeadIsGarbage) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(git_dir / "HEAD", "garbage\n");
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->recloned);
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_TRUE(result->discarded.empty());
  EXPECT_EQ(repo_git({"rev-parse", "HEAD"}), initial);
  EXPECT_FALSE(leftovers(git_dir));
}

TEST_F(GitTrackerTest, RebuildsWhenTheIndexIsGarbage) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(git_dir / "index", "this is not an index, not at all, it is garbage\n");
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->recloned);
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
}

TEST_F(GitTrackerTest, RebuildsWhenTheCheckoutHasFilesButNoRepository) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(checkout / "compose.yaml", "local\n");
  fs::remove_all(git_dir);
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_FALSE(result->recloned);  // nothing was broken: there was no repository
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_EQ(result->discarded, Strings{"compose.yaml"});
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
}

TEST_F(GitTrackerTest, UnreachableUpstreamLeavesTheCheckoutUntouched) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(checkout / "compose.yaml", "local edit\n");
  fs::rename(upstream.path(), upstream.path() + ".gone");
  auto result = tracker.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("'main'"), std::string::npos) << result.error().message;
  EXPECT_NE(result.error().message.find("does not exist"), std::string::npos) << result.error().message;
  EXPECT_EQ(tracker.head_hash(), initial);
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "local edit\n");  // not even local edits go
  EXPECT_FALSE(leftovers(git_dir));
  EXPECT_FALSE(tracker.fetch());

  // Nothing listens there: the same over http.
  auto opts = options();
  opts.repository = "http://127.0.0.1:" + std::to_string(pgod::test::free_loopback_port()) + "/git/x.git";
  GitTracker http(opts);
  result = http.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("could not connect"), std::string::npos) << result.error().message;
  EXPECT_EQ(tracker.head_hash(), initial);
  EXPECT_FALSE(leftovers(git_dir));
}

TEST_F(GitTrackerTest, NamesABranchMissingUpstream) {
  auto opts = options();
  opts.branch = "release-2";
  GitTracker missing(opts);
  auto result = missing.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("branch 'release-2' does not exist"), std::string::npos)
      << result.error().message;
  EXPECT_FALSE(present(git_dir));
  EXPECT_FALSE(leftovers(git_dir));
  EXPECT_EQ(entries(checkout), Strings{});

  // An existing checkout switched to a missing branch stays where it was.
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  result = missing.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("release-2"), std::string::npos) << result.error().message;
  EXPECT_EQ(tracker.head_hash(), initial);

  opts.branch = "bad..name";
  EXPECT_FALSE(GitTracker(opts).sync());
}

TEST_F(GitTrackerTest, SwitchesToAnotherBranch) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  const auto main_tip = upstream.commit({{"main-only.txt", "m\n"}});
  git({"-C", upstream.path(), "branch", "dev", initial});
  auto opts = options();
  opts.branch = "dev";
  GitTracker dev(opts);
  auto result = dev.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_EQ(repo_git({"symbolic-ref", "HEAD"}), "refs/heads/dev");
  EXPECT_FALSE(fs::exists(checkout / "main-only.txt"));
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, main_tip);
  EXPECT_EQ(repo_git({"symbolic-ref", "HEAD"}), "refs/heads/main");
}

TEST_F(GitTrackerTest, RollsBackToAnAbbreviatedCommit) {
  GitTracker tracker(options());
  const auto next = upstream.commit({{"compose.yaml", "services: {}\n"}});
  ASSERT_TRUE(tracker.sync());
  auto full = tracker.resolve_commit(initial.substr(0, 7));
  ASSERT_TRUE(full) << full.error().message;
  EXPECT_EQ(*full, initial);
  EXPECT_EQ(*tracker.resolve_commit(initial), initial);
  EXPECT_FALSE(tracker.resolve_commit(initial.substr(0, 3)));  // too short
  EXPECT_FALSE(tracker.resolve_commit("xyz12"));
  EXPECT_FALSE(tracker.resolve_commit(std::string(40, 'f')));
  const auto tree = git({"-C", upstream.path(), "rev-parse", next + "^{tree}"});
  EXPECT_FALSE(tracker.resolve_commit(tree));  // an object, but not a commit

  auto result = tracker.checkout(*full);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, next);
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_EQ(tracker.head_hash(), initial);
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services:\n  web:\n    image: busybox\n");
  EXPECT_FALSE(tracker.checkout("0000000"));

  // Back to upstream: a fast-forward from the rolled-back commit.
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, initial);
  EXPECT_EQ(result->current_hash, next);
  EXPECT_FALSE(result->force_pushed);
}

TEST_F(GitTrackerTest, FollowsAChangedRepositoryUrl) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  GitUpstream moved(tmp.path(), "moved.git");
  const auto other = moved.commit({{"compose.yaml", "services: {}\n"}}, "unrelated history");
  auto opts = options();
  opts.repository = moved.path();
  GitTracker follower(opts);
  auto result = follower.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, other);
  EXPECT_TRUE(result->force_pushed);  // not a descendant of what we had
  EXPECT_FALSE(result->recloned);
  EXPECT_EQ(repo_git({"remote", "get-url", "origin"}), moved.path());
  EXPECT_FALSE(fs::exists(checkout / "app.env"));
}

TEST_F(GitTrackerTest, FetchDoesNotMoveTheCheckout) {
  GitTracker tracker(options());
  // A first fetch clones into git_dir and leaves the checkout alone.
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(*fetched, initial);
  EXPECT_EQ(tracker.head_hash(), "");
  EXPECT_EQ(entries(checkout), Strings{});
  EXPECT_TRUE(fs::is_regular_file(git_dir / "HEAD"));
  EXPECT_FALSE(leftovers(git_dir));
  // The first move after it checks the commit out.
  auto moved = tracker.move_to(*fetched);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(moved->previous_hash, "");
  EXPECT_EQ(moved->current_hash, initial);
  EXPECT_TRUE(moved->discarded.empty());
  EXPECT_EQ(tracker.head_hash(), initial);
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");

  const auto next = upstream.commit({{"app.env", "A=9\n"}});
  fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(*fetched, next);
  EXPECT_EQ(tracker.head_hash(), initial);
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");
  EXPECT_EQ(repo_git({"rev-parse", "origin/main"}), next);
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
  // changed_paths works on fetched commits before the checkout moves.
  auto changed = tracker.changed_paths(initial, *fetched, {"app.env", "compose.yaml"});
  ASSERT_TRUE(changed);
  EXPECT_EQ(*changed, Strings{"app.env"});
}

// ---------------------------------------------------------------------------------------------
// The repository outside the checkout: what a container writes there is never repository data.

TEST_F(GitTrackerTest, KeepsTheRepositoryOutOfTheCheckout) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_TRUE(fs::is_directory(git_dir / "objects"));
  // The work tree is set by the tracker each time, never stored for the git directory to name.
  EXPECT_EQ(read_file(git_dir / "config").find("worktree"), std::string::npos);
  const auto next = upstream.commit({{"app.env", "A=2\n"}});
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, next);
  EXPECT_TRUE(result->discarded.empty());
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_EQ(entries(checkout), (Strings{"README.md", "app.env", "compose.yaml", "conf"}));

  // A git directory inside the checkout would defeat the point: refused.
  auto inside = options();
  inside.git_dir = (checkout / "sub/git").string();
  auto refused = GitTracker(inside).sync();
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("inside the checkout"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(present(checkout / "sub"));
}

TEST_F(GitTrackerTest, APlantedDotGitIsRemovedAndNeverRead) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  // What a container with the checkout mounted read-write can do: a whole repository whose
  // config sends the work tree elsewhere.
  const fs::path elsewhere = fs::path(tmp.path()) / "elsewhere";
  fs::create_directory(elsewhere);
  git({"init", "-q", "--bare", (checkout / ".git").string()});
  git({"--git-dir=" + (checkout / ".git").string(), "config", "core.bare", "false"});
  git({"--git-dir=" + (checkout / ".git").string(), "config", "core.worktree", elsewhere.string()});
  const auto next = upstream.commit({{"compose.yaml", "services: {}\n"}, {"new.txt", "new\n"}});
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, next);
  EXPECT_EQ(result->discarded, Strings{".git"});
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_EQ(read_file(checkout / "new.txt"), "new\n");
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services: {}\n");
  EXPECT_EQ(entries(elsewhere), Strings{});

  // A gitlink file naming another git directory, before a judged move: the same.
  write_file(checkout / ".git", "gitdir: " + git_dir.string() + "\n");
  const auto third = upstream.commit({{"app.env", "A=3\n"}});
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_TRUE(present(checkout / ".git"));  // fetching does not touch the checkout
  auto moved = tracker.move_to(*fetched);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(moved->current_hash, third);
  EXPECT_EQ(moved->discarded, Strings{".git"});
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_TRUE(fs::is_directory(git_dir / "objects"));
  EXPECT_EQ(entries(elsewhere), Strings{});
}

TEST_F(GitTrackerTest, ASymlinkedDotGitIsRemovedAsALink) {
  const fs::path target = fs::path(tmp.path()) / "target";
  write_file(target / "config", "[core]\n\tworktree = " + (fs::path(tmp.path()) / "elsewhere").string() + "\n");
  write_file(target / "keep.txt", "keep\n");
  fs::create_directory_symlink(target, checkout / ".git");
  GitTracker tracker(options());
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_EQ(entries(target), (Strings{"config", "keep.txt"}));
  EXPECT_EQ(read_file(target / "keep.txt"), "keep\n");
  EXPECT_FALSE(present(fs::path(tmp.path()) / "elsewhere"));

  // Planted later, it is a local edit like any other.
  fs::create_directory_symlink(target, checkout / ".git");
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->discarded, Strings{".git"});
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_EQ(entries(target), (Strings{"config", "keep.txt"}));
}

TEST_F(GitTrackerTest, MigratesAnOldCheckoutWithoutTrustingItsRepository) {
  // A checkout of the old layout, whose .git a container has rewritten: the work tree sent
  // elsewhere, origin pointed at another repository.
  git({"clone", "-q", upstream.path(), checkout.string()});
  write_file(checkout / "Caddyfile.import", "generated\n");
  const fs::path elsewhere = fs::path(tmp.path()) / "elsewhere";
  fs::create_directory(elsewhere);
  GitUpstream evil(tmp.path(), "evil.git");
  evil.commit({{"compose.yaml", "services:\n  x:\n    privileged: true\n"}}, "evil");
  git({"-C", checkout.string(), "config", "core.worktree", elsewhere.string()});
  git({"-C", checkout.string(), "config", "remote.origin.url", evil.path()});
  const auto next = upstream.commit({{"app.env", "A=2\n"}, {"README.md", std::nullopt}});

  // Upstream unreachable: nothing changes, the next sync tries again.
  fs::rename(upstream.path(), upstream.path() + ".gone");
  GitTracker tracker(options());
  auto result = tracker.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("does not exist"), std::string::npos) << result.error().message;
  EXPECT_TRUE(fs::is_directory(checkout / ".git"));
  EXPECT_FALSE(present(git_dir));
  EXPECT_FALSE(leftovers(git_dir));
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");
  fs::rename(upstream.path() + ".gone", upstream.path());

  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, next);
  EXPECT_FALSE(result->recloned);
  // The old repository is gone (not a local edit: the layout changed); only what differed
  // from the new commit is reported.
  EXPECT_EQ(result->discarded, Strings{"app.env"});
  EXPECT_FALSE(present(checkout / ".git"));
  EXPECT_TRUE(fs::is_directory(git_dir / "objects"));
  EXPECT_EQ(tracker.head_hash(), next);
  EXPECT_EQ(read_file(checkout / "app.env"), "A=2\n");
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services:\n  web:\n    image: busybox\n");
  EXPECT_EQ(read_file(checkout / "Caddyfile.import"), "generated\n");
  EXPECT_EQ(entries(elsewhere), Strings{});
  EXPECT_EQ(repo_git({"remote", "get-url", "origin"}), upstream.path());
  // README.md was a file of the old commit the new tracker never knew: it stays, untracked.
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "?? Caddyfile.import\n?? README.md");
}

TEST_F(GitTrackerTest, TheOldLayoutStillWorks) {
  GitTracker tracker(old_layout());
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, initial);
  EXPECT_TRUE(fs::is_directory(checkout / ".git"));
  EXPECT_FALSE(present(git_dir));
  EXPECT_EQ(git({"-C", checkout.string(), "status", "--porcelain"}), "");
  const auto next = upstream.commit({{"app.env", "A=2\n"}});
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, next);
  EXPECT_EQ(git({"-C", checkout.string(), "rev-parse", "HEAD"}), next);
  // Its core.worktree is not honoured either: the work tree is always set by the tracker.
  const fs::path elsewhere = fs::path(tmp.path()) / "elsewhere";
  fs::create_directory(elsewhere);
  git({"-C", checkout.string(), "config", "core.worktree", elsewhere.string()});
  const auto third = upstream.rewrite_last({{"third.txt", "3\n"}});
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, third);
  EXPECT_TRUE(result->force_pushed);
  EXPECT_EQ(read_file(checkout / "third.txt"), "3\n");
  EXPECT_EQ(entries(elsewhere), Strings{});
  write_file(checkout / ".git/HEAD", "garbage\n");
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_TRUE(result->recloned);
  EXPECT_EQ(git({"-C", checkout.string(), "rev-parse", "HEAD"}), third);
  EXPECT_FALSE(leftovers(checkout / ".git"));
}

// ---------------------------------------------------------------------------------------------
// Judge before moving: stage, move_to, read_directory.

TEST_F(GitTrackerTest, StagesACommitWithoutTouchingTheCheckout) {
  GitTracker tracker(options());
  const auto with_data = upstream.commit({{"data/file.txt", "data\n"}});
  ASSERT_TRUE(tracker.sync());
  // data becomes a symlink to /: the judge must see the link, not what it points to.
  fs::remove_all(upstream_work() / "data");
  fs::create_directory_symlink("/", upstream_work() / "data");
  const auto linked = upstream.commit({}, "data is a link");
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  ASSERT_EQ(*fetched, linked);
  const std::string index_before = read_file(git_dir / "index");
  const auto index_time = fs::last_write_time(git_dir / "index");

  const fs::path staging = state / "staging";
  auto staged = tracker.stage(linked, staging.string());
  ASSERT_TRUE(staged) << staged.error().message;
  EXPECT_EQ(*staged, staging.string());
  EXPECT_TRUE(fs::is_symlink(staging / "data"));
  EXPECT_EQ(fs::read_symlink(staging / "data"), fs::path("/"));
  EXPECT_EQ(read_file(staging / "compose.yaml"), "services:\n  web:\n    image: busybox\n");
  EXPECT_EQ(read_file(staging / "conf/site.conf"), "listen 80\n");
  EXPECT_EQ(entries(staging), (Strings{"README.md", "app.env", "compose.yaml", "conf", "data"}));
  EXPECT_EQ(fs::status(staging).permissions() & fs::perms::all, fs::perms::owner_all);  // created 0700
  // The checkout, HEAD and the index are as they were.
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(checkout / "data")));
  EXPECT_EQ(read_file(checkout / "data/file.txt"), "data\n");
  EXPECT_EQ(tracker.head_hash(), with_data);
  EXPECT_EQ(repo_git({"rev-parse", "HEAD"}), with_data);
  EXPECT_EQ(read_file(git_dir / "index"), index_before);
  EXPECT_EQ(fs::last_write_time(git_dir / "index"), index_time);
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
  EXPECT_FALSE(present(checkout / ".git"));

  // A second stage leaves only the second commit's files: what the first wrote, a stray file,
  // a link planted to the outside (removed as a link, its target untouched).
  const auto later = upstream.commit({{"README.md", std::nullopt}, {"new.txt", "new\n"}});
  ASSERT_TRUE(tracker.fetch());
  const fs::path outside = fs::path(tmp.path()) / "outside";
  write_file(outside / "precious.txt", "precious\n");
  write_file(staging / "stray.txt", "stray\n");
  fs::create_directory_symlink(outside, staging / "escape");
  staged = tracker.stage(later, staging.string());
  ASSERT_TRUE(staged) << staged.error().message;
  EXPECT_EQ(entries(staging), (Strings{"app.env", "compose.yaml", "conf", "data", "new.txt"}));
  EXPECT_EQ(read_file(staging / "new.txt"), "new\n");
  EXPECT_EQ(read_file(outside / "precious.txt"), "precious\n");
  // Back to an older commit: data is a directory again, the later files are gone.
  staged = tracker.stage(initial.substr(0, 10), staging.string());
  ASSERT_TRUE(staged) << staged.error().message;
  EXPECT_EQ(entries(staging), (Strings{"README.md", "app.env", "compose.yaml", "conf"}));
  EXPECT_EQ(tracker.head_hash(), with_data);

  // A staging path that is a symlink is replaced by a directory, its target left alone.
  const fs::path linked_staging = state / "linked";
  fs::create_directory_symlink(outside, linked_staging);
  staged = tracker.stage(linked, linked_staging.string());
  ASSERT_TRUE(staged) << staged.error().message;
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(linked_staging)));
  EXPECT_EQ(entries(outside), Strings{"precious.txt"});
  EXPECT_FALSE(tracker.stage(std::string(40, 'e'), staging.string()));
}

TEST_F(GitTrackerTest, TheJudgedBytesAreTheDeployedBytes) {
  // No filters on either side: .gitattributes (which a container can rewrite in the checkout)
  // cannot make the checkout differ from what was staged and judged.
  const auto filtered = upstream.commit({{".gitattributes", "*.txt ident eol=crlf\n"}, {"id.txt", "a $Id$\nb\n"}});
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  const fs::path staging = state / "staging";
  ASSERT_TRUE(tracker.stage(filtered, staging.string()));
  EXPECT_EQ(read_file(staging / "id.txt"), "a $Id$\nb\n");
  EXPECT_EQ(read_file(checkout / "id.txt"), "a $Id$\nb\n");
  auto again = tracker.sync();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->discarded.empty());
}

TEST_F(GitTrackerTest, StagesFromAFirstFetchBeforeAnyMove) {
  GitTracker tracker(options());
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  const fs::path staging = state / "staging";
  auto staged = tracker.stage(*fetched, staging.string());
  ASSERT_TRUE(staged) << staged.error().message;
  EXPECT_EQ(entries(staging), (Strings{"README.md", "app.env", "compose.yaml", "conf"}));
  EXPECT_EQ(entries(checkout), Strings{});
  EXPECT_EQ(tracker.head_hash(), "");
  auto moved = tracker.move_to(*fetched);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(entries(checkout), (Strings{"README.md", "app.env", "compose.yaml", "conf"}));
}

TEST_F(GitTrackerTest, MoveToFastForwardsOrResets) {
  GitTracker tracker(options());
  EXPECT_FALSE(tracker.move_to(initial));  // no repository yet
  ASSERT_TRUE(tracker.sync());
  const auto next = upstream.commit({{"compose.yaml", "services: {}\n"}, {"README.md", std::nullopt}});
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  write_file(checkout / "app.env", "local\n");
  auto result = tracker.move_to(*fetched);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, initial);
  EXPECT_EQ(result->current_hash, next);
  EXPECT_FALSE(result->force_pushed);
  EXPECT_FALSE(result->recloned);
  EXPECT_EQ(result->discarded, Strings{"app.env"});
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services: {}\n");
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");
  EXPECT_FALSE(fs::exists(checkout / "README.md"));
  EXPECT_EQ(repo_git({"rev-parse", "HEAD"}), next);

  const auto rewritten = upstream.rewrite_last({{"third.txt", "3\n"}});
  fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(*fetched, rewritten);
  EXPECT_EQ(tracker.head_hash(), next);  // fetched, not moved
  result = tracker.move_to(rewritten.substr(0, 12));
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, next);
  EXPECT_EQ(result->current_hash, rewritten);
  EXPECT_TRUE(result->force_pushed);
  EXPECT_EQ(read_file(checkout / "third.txt"), "3\n");
  EXPECT_EQ(read_file(checkout / "compose.yaml"), "services:\n  web:\n    image: busybox\n");
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
  EXPECT_EQ(repo_git({"symbolic-ref", "HEAD"}), "refs/heads/main");

  // Moving to where HEAD is already is a no-op; unknown commits are errors.
  result = tracker.move_to(rewritten);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->previous_hash, rewritten);
  EXPECT_FALSE(result->force_pushed);
  EXPECT_TRUE(result->discarded.empty());
  EXPECT_FALSE(tracker.move_to(std::string(40, 'a')));
  EXPECT_FALSE(tracker.move_to("not-a-hash"));
  EXPECT_EQ(tracker.head_hash(), rewritten);
}

TEST_F(GitTrackerTest, AMoveThatFindsDamageLeavesTheRebuildToTheNextFetch) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  const auto next = upstream.commit({{"app.env", "A=2\n"}});
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  write_file(git_dir / "index", "garbage, not an index\n");
  EXPECT_FALSE(tracker.move_to(*fetched));
  fetched = tracker.fetch();  // rebuilds
  ASSERT_TRUE(fetched) << fetched.error().message;
  auto moved = tracker.move_to(*fetched);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_TRUE(moved->recloned);
  EXPECT_EQ(moved->current_hash, next);
  EXPECT_EQ(moved->discarded, Strings{"app.env"});  // the rebuilt index knew nothing of it
  EXPECT_EQ(repo_git({"status", "--porcelain"}), "");
  moved = tracker.move_to(*fetched);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_FALSE(moved->recloned);
  EXPECT_FALSE(leftovers(git_dir));
}

TEST_F(GitTrackerTest, ReadsTheRegularFilesOfADirectoryAtACommit) {
  GitTracker tracker(options());
  ASSERT_TRUE(tracker.sync());
  write_file(upstream_work() / "ssh/b.pub", "ssh-ed25519 BBBB b\n");
  write_file(upstream_work() / "ssh/a.pub", "ssh-ed25519 AAAA a\n");
  write_file(upstream_work() / "ssh/run.sh", "#!/bin/sh\n");
  fs::permissions(upstream_work() / "ssh/run.sh", fs::perms::owner_exec, fs::perm_options::add);
  write_file(upstream_work() / "ssh/big.pub", std::string(200, 'x'));
  write_file(upstream_work() / "ssh/sub/c.pub", "ssh-ed25519 CCCC c\n");
  fs::create_symlink("a.pub", upstream_work() / "ssh/link.pub");
  fs::create_symlink("/etc/passwd", upstream_work() / "ssh/passwd.pub");
  const auto keys = upstream.commit({}, "keys");
  const auto changed = upstream.commit({{"ssh/a.pub", "ssh-ed25519 ZZZZ changed\n"}});
  ASSERT_TRUE(tracker.fetch());
  write_file(checkout / "ssh/a.pub", "ssh-ed25519 EVIL local\n");  // the checkout is not read

  using Files = std::vector<std::pair<std::string, std::string>>;
  auto files = tracker.read_directory(keys, "ssh", 10, 100);
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(*files,
            (Files{{"a.pub", "ssh-ed25519 AAAA a\n"}, {"b.pub", "ssh-ed25519 BBBB b\n"}, {"run.sh", "#!/bin/sh\n"}}));
  files = tracker.read_directory(changed, "ssh/", 10, 100);
  ASSERT_TRUE(files) << files.error().message;
  ASSERT_EQ(files->size(), 3u);
  EXPECT_EQ(files->front(), (std::pair<std::string, std::string>{"a.pub", "ssh-ed25519 ZZZZ changed\n"}));
  // The first max_files by name; the size limit is inclusive.
  files = tracker.read_directory(keys, "ssh", 2, 100);
  ASSERT_TRUE(files);
  EXPECT_EQ(*files, (Files{{"a.pub", "ssh-ed25519 AAAA a\n"}, {"b.pub", "ssh-ed25519 BBBB b\n"}}));
  files = tracker.read_directory(keys, "ssh", 10, 200);
  ASSERT_TRUE(files);
  EXPECT_EQ(files->size(), 4u);
  EXPECT_EQ((*files)[2].first, "big.pub");
  files = tracker.read_directory(keys, "ssh/sub", 10, 100);
  ASSERT_TRUE(files);
  EXPECT_EQ(*files, (Files{{"c.pub", "ssh-ed25519 CCCC c\n"}}));
  // No such directory, or not a directory: nothing. At the repository's root: its files.
  files = tracker.read_directory(initial, "ssh", 10, 100);
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_TRUE(files->empty());
  files = tracker.read_directory(keys, "ssh/a.pub", 10, 100);
  ASSERT_TRUE(files);
  EXPECT_TRUE(files->empty());
  files = tracker.read_directory(keys, ".", 10, 100);
  ASSERT_TRUE(files);
  EXPECT_EQ(files->size(), 3u);  // README.md, app.env, compose.yaml
  EXPECT_FALSE(tracker.read_directory(keys, "../ssh", 10, 100));
  EXPECT_FALSE(tracker.read_directory(std::string(40, 'b'), "ssh", 10, 100));
  EXPECT_FALSE(GitTracker(options()).read_directory(keys, "ssh", 10, 100) ? false : true);
}

// ---------------------------------------------------------------------------------------------
// Over HTTP on loopback, with a token.

constexpr const char* kToken = "s3cr3t-T0ken-4f9a";

class GitHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(checkout);
    initial = upstream.commit({{"compose.yaml", "services: {}\n"}}, "initial");
  }

  GitTrackerOptions options(const std::string& userinfo) const {
    return {server.url("repo.git", userinfo), "main", checkout.string(), git_dir.string()};
  }

  TempDir tmp;
  GitUpstream upstream{tmp.path(), "repo.git"};
  GitHttpServer server{tmp.path(), "oauth2", kToken};
  fs::path checkout = fs::path(tmp.path()) / "checkout";
  fs::path git_dir = fs::path(tmp.path()) / "state/git";
  std::string initial;
};

TEST_F(GitHttpTest, ClonesAndFetchesWithATokenInTheUrl) {
  GitTracker tracker(options(std::string("oauth2:") + kToken));
  auto result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, initial);
  const auto next = upstream.commit({{"app.env", "A=1\n"}});
  auto fetched = tracker.fetch();
  ASSERT_TRUE(fetched) << fetched.error().message;
  EXPECT_EQ(*fetched, next);
  result = tracker.sync();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->current_hash, next);
  EXPECT_EQ(read_file(checkout / "app.env"), "A=1\n");
  // The token is not written into the repository (nor is the repository in the checkout).
  EXPECT_EQ(read_file(git_dir / "config").find(kToken), std::string::npos);
  EXPECT_EQ(git({"--git-dir=" + git_dir.string(), "remote", "get-url", "origin"}), server.url("repo.git", ""));
  EXPECT_FALSE(present(checkout / ".git"));
}

TEST_F(GitHttpTest, WrongTokenFailsOnceWithoutShowingIt) {
  const std::string wrong = "wr0ng-T0ken-77e1";
  GitTracker tracker(options("oauth2:" + wrong));
  const auto start = std::chrono::steady_clock::now();
  auto result = tracker.sync();
  ASSERT_FALSE(result);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  const auto& message = result.error().message;
  EXPECT_EQ(message.find(wrong), std::string::npos) << message;
  EXPECT_NE(message.find("authentication"), std::string::npos) << message;
  EXPECT_NE(message.find("[redacted]@127.0.0.1"), std::string::npos) << message;
  // One try without credentials, one with them: no loop.
  EXPECT_LE(server.refused(), 3);
  EXPECT_FALSE(present(git_dir));
  EXPECT_FALSE(leftovers(git_dir));

  // No credentials at all.
  GitTracker anonymous(options(""));
  result = anonymous.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("no credentials"), std::string::npos) << result.error().message;
}

TEST_F(GitHttpTest, TheTokenNeverAppearsInMessages) {
  const std::string userinfo = std::string("oauth2:") + kToken;
  std::vector<std::string> messages;
  auto keep = [&](const auto& result) {
    if (!result) messages.push_back(result.error().message);
  };
  // Errors on every path that mentions the repository.
  auto missing_repo = options(userinfo);
  missing_repo.repository = server.url("nothing-here.git", userinfo);
  keep(GitTracker(missing_repo).sync());
  auto missing_branch = options(userinfo);
  missing_branch.branch = "nope";
  keep(GitTracker(missing_branch).sync());
  keep(GitTracker(missing_repo).fetch());
  GitTracker tracker(options(userinfo));
  ASSERT_TRUE(tracker.sync());
  keep(tracker.checkout("deadbeef"));
  keep(tracker.move_to("deadbeef"));
  keep(tracker.stage("deadbeef", tmp.path() + "/staging"));
  keep(tracker.read_directory("deadbeef", "ssh", 10, 1000));
  keep(tracker.resolve_commit("zz"));
  keep(GitTracker(missing_branch).fetch());
  ASSERT_EQ(messages.size(), 9u);
  for (const auto& message : messages) {
    EXPECT_EQ(message.find(kToken), std::string::npos) << message;
  }
  // A percent-encoded token (with '@', '/' and ':' in it) is decoded before use and hidden in
  // both forms.
  const std::string odd = "p@ss/w:rd";
  GitHttpServer odd_server(tmp.path(), "oauth2", odd);
  auto opts = options("");
  opts.repository = odd_server.url("repo.git", "oauth2:p%40ss%2Fw%3Ard");
  opts.checkout_dir = tmp.path() + "/odd";
  opts.git_dir = tmp.path() + "/odd.git";
  auto result = GitTracker(opts).sync();
  ASSERT_TRUE(result) << result.error().message;
  opts.branch = "nope";
  result = GitTracker(opts).sync();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message.find("p%40ss"), std::string::npos) << result.error().message;
  EXPECT_EQ(result.error().message.find(odd), std::string::npos) << result.error().message;
}

TEST_F(GitHttpTest, TheTokenDoesNotFollowARedirectToAnotherHost) {
  GitTracker tracker(
      {server.url("repo.git", std::string("oauth2:") + kToken, "moved"), "main", checkout.string(), git_dir.string()});
  auto result = tracker.sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("refusing to send the repository's credentials to localhost:"),
            std::string::npos)
      << result.error().message;
  EXPECT_EQ(result.error().message.find(kToken), std::string::npos) << result.error().message;
}

TEST(GitTrackerTimeout, ASilentServerTimesOut) {
  // Accepts connections (the kernel's backlog does) but never answers.
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener.get(), 8), 0);
  socklen_t size = sizeof address;
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &size), 0);

  TempDir tmp;
  GitTrackerOptions options{"http://oauth2:tok@127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/git/x.git",
                            "main", tmp.path() + "/checkout"};
  options.io_timeout = std::chrono::milliseconds(300);
  GitTracker tracker(options);
  const auto start = std::chrono::steady_clock::now();
  auto result = tracker.sync();
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("timed out"), std::string::npos) << result.error().message;
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(5));

  // The overall limit applies even when each wait is shorter than the io timeout.
  options.io_timeout = std::chrono::seconds(30);
  options.operation_timeout = std::chrono::milliseconds(400);
  const auto again = std::chrono::steady_clock::now();
  result = GitTracker(options).sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("time limit"), std::string::npos) << result.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - again, std::chrono::seconds(5));

  // https: TLS runs over the same timed socket (no TLS server needed to see it time out).
  options.repository = "https://oauth2:tok@127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/git/x.git";
  options.io_timeout = std::chrono::milliseconds(300);
  options.operation_timeout = std::chrono::minutes(1);
  const auto tls = std::chrono::steady_clock::now();
  result = GitTracker(options).sync();
  EXPECT_LT(std::chrono::steady_clock::now() - tls, std::chrono::seconds(5));
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("no progress for 300ms"), std::string::npos) << result.error().message;
}

TEST(GitTrackerSsh, AnSshUrlFailsCleanly) {
  // No ssh server and no agent here: the point is an error, not a crash or a hang.
  TempDir tmp;
  const auto port = std::to_string(pgod::test::free_loopback_port());
  GitTrackerOptions options{"ssh://git@127.0.0.1:" + port + "/x.git", "main", tmp.path() + "/checkout"};
  auto result = GitTracker(options).sync();
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("'main'"), std::string::npos) << result.error().message;
}

}  // namespace
}  // namespace pgod::worker
