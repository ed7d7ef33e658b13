// The supervisor's directory operations, on real trees as root, with a real unprivileged owner
// (65534) and real bind mounts. Mounts are made in a private mount namespace of this process, so
// the rest of the system never sees them, even if a test crashes before unmounting.
#include "fs_ops.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "process.h"
#include "unique_fd.h"

namespace pgod::supervisor {
namespace {

using test::read_file;
using test::TempDir;

constexpr uid_t kUser = 65534;
constexpr gid_t kGroup = 65534;
constexpr uid_t kPreviousUser = 65533;
constexpr gid_t kPreviousGroup = 65533;

// Set-up steps throw, which GoogleTest reports as a failure of the test.
void check(int rc, const std::string& what) {
  if (rc != 0) throw std::system_error(errno, std::generic_category(), what);
}

void make_dir(const std::string& path, mode_t mode = 0755) {
  check(mkdir(path.c_str(), mode), "mkdir " + path);
  check(chmod(path.c_str(), mode), "chmod " + path);
}

std::string make_file(const std::string& path, const std::string& content = "data\n", mode_t mode = 0644) {
  const UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) throw std::system_error(errno, std::generic_category(), "create " + path);
  if (write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()))
    throw std::system_error(errno, std::generic_category(), "write " + path);
  check(fchmod(fd.get(), mode), "chmod " + path);
  return path;
}

void make_symlink(const std::string& target, const std::string& path) {
  check(symlink(target.c_str(), path.c_str()), "symlink " + path);
}

void set_owner(const std::string& path, uid_t uid, gid_t gid) {
  check(lchown(path.c_str(), uid, gid), "lchown " + path);
}

std::optional<struct stat> lstat_of(const std::string& path) {
  struct stat info {};
  if (lstat(path.c_str(), &info) != 0) return std::nullopt;
  return info;
}

bool exists(const std::string& path) { return lstat_of(path).has_value(); }

std::string real_path(const std::string& path) {
  const std::unique_ptr<char, decltype(&std::free)> real(realpath(path.c_str(), nullptr), &std::free);
  if (!real) throw std::system_error(errno, std::generic_category(), "realpath " + path);
  return real.get();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A TempDir whose root is 0755 like the supervisor's directories (mkdtemp makes 0700).
class Root : public TempDir {
 public:
  Root() { check(chmod(path().c_str(), 0755), "chmod " + path()); }
  std::string operator/(const std::string& name) const { return path() + "/" + name; }
};

// Once per process: a mount namespace of our own whose mounts do not propagate to the host's.
void enter_private_mount_namespace() {
  static const bool entered = [] {
    if (unshare(CLONE_NEWNS) != 0) return false;  // then mounts are made (and unmounted) in the host's namespace
    check(mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / private");
    return true;
  }();
  (void)entered;
}

// A real bind mount (mount --bind source target), unmounted when the object goes away. Declare
// it after the TempDirs it uses, so it is unmounted before they are removed.
class BindMount {
 public:
  BindMount(const std::string& source, const std::string& target) : target_(target) {
    enter_private_mount_namespace();
    if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) == 0)
      mounted_ = true;
    else
      error_ = errno;
  }
  ~BindMount() {
    if (mounted_ && umount2(target_.c_str(), 0) != 0) umount2(target_.c_str(), MNT_DETACH);
  }
  BindMount(const BindMount&) = delete;
  BindMount& operator=(const BindMount&) = delete;
  bool mounted() const { return mounted_; }
  int error() const { return error_; }

 private:
  std::string target_;
  bool mounted_ = false;
  int error_ = 0;
};

#define ASSERT_BIND_MOUNTED(bind)                                                                         \
  do {                                                                                                    \
    if ((bind).error() == EPERM) GTEST_SKIP() << "mount(2) is not permitted here";                        \
    ASSERT_TRUE((bind).mounted()) << "mount --bind: " << std::generic_category().message((bind).error()); \
  } while (0)

// ---------------------------------------------------------------------------------------------
// ensure_directory

TEST(FsOpsEnsureDirectoryTest, CreatesTheDirectoryWithOwnerAndModeThenReportsItExists) {
  Root root;
  auto created = ensure_directory(root / "svc", kUser, kGroup, 02750);
  ASSERT_TRUE(created.has_value()) << created.error();
  EXPECT_TRUE(*created);
  auto info = lstat_of(root / "svc");
  ASSERT_TRUE(info);
  EXPECT_TRUE(S_ISDIR(info->st_mode));
  EXPECT_EQ(info->st_uid, kUser);
  EXPECT_EQ(info->st_gid, kGroup);
  EXPECT_EQ(info->st_mode & 07777, 02750u) << "exact mode, set-gid kept (chown comes before chmod), umask ignored";

  auto again = ensure_directory(root / "svc/", kUser, kGroup, 02750);
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_FALSE(*again) << "an existing directory is not reported as created";
}

TEST(FsOpsEnsureDirectoryTest, CorrectsOwnerAndModeOfAnExistingDirectoryButNotItsContents) {
  Root root;
  make_dir(root / "svc", 0777);
  make_file(root / "svc/file");
  auto created = ensure_directory(root / "svc", kUser, kGroup, 0700);
  ASSERT_TRUE(created.has_value()) << created.error();
  EXPECT_FALSE(*created);
  auto info = lstat_of(root / "svc");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->st_uid, kUser);
  EXPECT_EQ(info->st_gid, kGroup);
  EXPECT_EQ(info->st_mode & 07777, 0700u);
  auto file = lstat_of(root / "svc/file");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->st_uid, 0u) << "not recursive";
}

TEST(FsOpsEnsureDirectoryTest, RefusesASymlinkInPlaceOfTheDirectoryAndLeavesItsTargetAlone) {
  Root root, outside;
  make_symlink(outside.path(), root / "svc");
  auto result = ensure_directory(root / "svc", kUser, kGroup, 0700);
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(contains(result.error(), root / "svc")) << result.error();
  EXPECT_TRUE(contains(result.error(), "symlink")) << result.error();
  auto link = lstat_of(root / "svc");
  ASSERT_TRUE(link);
  EXPECT_TRUE(S_ISLNK(link->st_mode));
  auto target = lstat_of(outside.path());
  ASSERT_TRUE(target);
  EXPECT_EQ(target->st_uid, 0u);
  EXPECT_EQ(target->st_gid, 0u);
  EXPECT_EQ(target->st_mode & 07777, 0755u);

  // A dangling symlink is not followed either: nothing is created where it points.
  make_symlink(outside / "created", root / "dangling");
  EXPECT_FALSE(ensure_directory(root / "dangling", kUser, kGroup, 0700).has_value());
  EXPECT_FALSE(exists(outside / "created"));
}

TEST(FsOpsEnsureDirectoryTest, RefusesARegularFileAndLeavesItAlone) {
  Root root;
  make_file(root / "svc", "x", 0644);
  auto result = ensure_directory(root / "svc", kUser, kGroup, 0700);
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(contains(result.error(), root / "svc")) << result.error();
  EXPECT_TRUE(contains(result.error(), "not a directory")) << result.error();
  auto file = lstat_of(root / "svc");
  ASSERT_TRUE(file);
  EXPECT_TRUE(S_ISREG(file->st_mode));
  EXPECT_EQ(file->st_uid, 0u);
  EXPECT_EQ(file->st_mode & 07777, 0644u);
}

TEST(FsOpsEnsureDirectoryTest, NeedsTheParentAndAName) {
  Root root;
  auto missing = ensure_directory(root / "absent/svc", kUser, kGroup, 0700);
  ASSERT_FALSE(missing.has_value());
  EXPECT_TRUE(contains(missing.error(), root / "absent")) << missing.error();
  EXPECT_TRUE(contains(missing.error(), "No such file or directory")) << missing.error();
  EXPECT_FALSE(exists(root / "absent"));

  EXPECT_FALSE(ensure_directory(root / "..", kUser, kGroup, 0700).has_value());
  EXPECT_FALSE(ensure_directory("/", kUser, kGroup, 0700).has_value());
  auto parent = lstat_of(root.path());
  ASSERT_TRUE(parent);
  EXPECT_EQ(parent->st_uid, 0u) << "\"..\" must not change the directory it names";
}

// ---------------------------------------------------------------------------------------------
// chown_tree

TEST(FsOpsChownTreeTest, ChangesEveryEntryNestedOnesAndSymlinksThemselves) {
  Root root, outside;
  make_file(outside / "target", "secret", 0640);
  make_dir(outside / "dir");
  make_dir(root / "svc");
  make_file(root / "svc/file");
  make_dir(root / "svc/a");
  make_dir(root / "svc/a/b");
  make_dir(root / "svc/a/b/c", 0000);
  make_file(root / "svc/a/b/c/deep", "deep", 0000);
  make_dir(root / "svc/a/b/empty");
  check(mkfifo((root / "svc/a/fifo").c_str(), 0600), "mkfifo");
  make_symlink(outside / "target", root / "svc/link-to-file");
  make_symlink(outside / "dir", root / "svc/a/link-to-dir");
  make_symlink("/nonexistent", root / "svc/dangling");

  auto result = chown_tree(root / "svc", kUser, kGroup);
  ASSERT_TRUE(result.has_value()) << result.error();
  for (const char* entry : {"svc", "svc/file", "svc/a", "svc/a/b", "svc/a/b/c", "svc/a/b/c/deep", "svc/a/b/empty",
                            "svc/a/fifo", "svc/link-to-file", "svc/a/link-to-dir", "svc/dangling"}) {
    auto info = lstat_of(root / entry);
    ASSERT_TRUE(info) << entry;
    EXPECT_EQ(info->st_uid, kUser) << entry;
    EXPECT_EQ(info->st_gid, kGroup) << entry;
  }
  EXPECT_EQ(lstat_of(root / "svc/a/b/c")->st_mode & 07777, 0000u) << "modes are not touched";
  for (const char* entry : {"target", "dir"}) {
    auto info = lstat_of(outside / entry);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->st_uid, 0u) << entry << ": a symlink's target outside the tree keeps its owner";
    EXPECT_EQ(info->st_gid, 0u) << entry;
  }
  EXPECT_EQ(read_file(outside / "target"), "secret");
}

TEST(FsOpsChownTreeTest, LeavesAHardLinkToAForeignFileAlone) {
  Root root, outside;
  make_file(outside / "shadow", "root:x\n", 0600);
  make_dir(root / "svc");
  make_file(root / "svc/mine");
  check(link((root / "svc/mine").c_str(), (root / "svc/mine-too").c_str()), "link");
  make_file(root / "svc/single");
  set_owner(root / "svc", kPreviousUser, kPreviousGroup);
  set_owner(root / "svc/mine", kPreviousUser, kPreviousGroup);
  // What the previous owner could plant where fs.protected_hardlinks is off.
  check(link((outside / "shadow").c_str(), (root / "svc/planted").c_str()), "link");

  auto result = chown_tree(root / "svc", kUser, kGroup);
  ASSERT_TRUE(result.has_value()) << result.error();
  EXPECT_EQ(lstat_of(outside / "shadow")->st_uid, 0u) << "a hard-linked file of someone else is not handed over";
  EXPECT_EQ(lstat_of(outside / "shadow")->st_gid, 0u);
  EXPECT_EQ(lstat_of(root / "svc/mine")->st_uid, kPreviousUser)
      << "no hard-linked file moves: the tree's owner cannot tell whose it is (a container may have changed it)";
  EXPECT_EQ(lstat_of(root / "svc/single")->st_uid, kUser) << "a singly linked file moves whoever owned it";
  EXPECT_EQ(lstat_of(root / "svc")->st_uid, kUser);
}

TEST(FsOpsChownTreeTest, LeavesAMountedDirectoryAndItsContentsAlone) {
  Root root, mounted;
  make_file(mounted / "inner");
  make_dir(root / "svc");
  make_dir(root / "svc/mnt");
  make_file(root / "svc/sibling");
  BindMount bind(mounted.path(), root / "svc/mnt");
  ASSERT_BIND_MOUNTED(bind);
  ASSERT_EQ(lstat_of(root / "svc")->st_dev, lstat_of(root / "svc/mnt")->st_dev)
      << "the test wants a same-filesystem bind mount, which st_dev alone does not reveal";

  auto result = chown_tree(root / "svc", kUser, kGroup);
  ASSERT_TRUE(result.has_value()) << result.error();
  EXPECT_EQ(lstat_of(root / "svc/sibling")->st_uid, kUser);
  EXPECT_EQ(lstat_of(root / "svc")->st_uid, kUser);
  EXPECT_EQ(lstat_of(root / "svc/mnt")->st_uid, 0u) << "the mount's root is on the other mount";
  EXPECT_EQ(lstat_of(root / "svc/mnt/inner")->st_uid, 0u) << "not descended into";
}

TEST(FsOpsChownTreeTest, RefusesASymlinkAsTheTreeAndNamesThePath) {
  Root root, outside;
  make_file(outside / "file");
  make_symlink(outside.path(), root / "svc");
  auto result = chown_tree(root / "svc", kUser, kGroup);
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(contains(result.error(), root / "svc")) << result.error();
  EXPECT_EQ(lstat_of(outside.path())->st_uid, 0u);
  EXPECT_EQ(lstat_of(outside / "file")->st_uid, 0u);
  EXPECT_EQ(lstat_of(root / "svc")->st_uid, 0u) << "not even the link";

  auto missing = chown_tree(root / "absent", kUser, kGroup);
  ASSERT_FALSE(missing.has_value());
  EXPECT_TRUE(contains(missing.error(), root / "absent")) << missing.error();
  EXPECT_TRUE(contains(missing.error(), "No such file or directory")) << missing.error();
}

// A chain of `levels` directories "d/d/d/..." below dir, made through fds (the path gets long).
void make_deep_chain(const std::string& dir, int levels) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i < levels; ++i) {
    check(mkdirat(fd.get(), "d", 0755), "mkdirat");
    fd = UniqueFd(openat(fd.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::generic_category(), "openat");
  }
}

TEST(FsOpsTreeDepthTest, ChownAndRemoveStopAtTheDepthLimit) {
  Root root;
  make_dir(root / "svc");
  make_deep_chain(root / "svc", kMaxTreeDepth + 1);
  auto chowned = chown_tree(root / "svc", kUser, kGroup);
  ASSERT_FALSE(chowned.has_value());
  EXPECT_TRUE(contains(chowned.error(), "more than 256 directory levels")) << chowned.error();
  EXPECT_TRUE(contains(chowned.error(), root / "svc/d/d/")) << chowned.error();
  auto removed = remove_tree(root.path(), "svc");
  ASSERT_FALSE(removed.has_value());
  EXPECT_TRUE(contains(removed.error(), "more than 256 directory levels")) << removed.error();

  // Exactly at the limit both work.
  make_dir(root / "ok");
  make_deep_chain(root / "ok", kMaxTreeDepth);
  auto chowned_ok = chown_tree(root / "ok", kUser, kGroup);
  EXPECT_TRUE(chowned_ok.has_value()) << chowned_ok.error();
  auto removed_ok = remove_tree(root.path(), "ok");
  ASSERT_TRUE(removed_ok.has_value()) << removed_ok.error();
  EXPECT_FALSE(exists(root / "ok"));
}

// ---------------------------------------------------------------------------------------------
// remove_tree

TEST(FsOpsRemoveTreeTest, RemovesANestedTreeOfEveryKindOfEntryButNoSymlinkTarget) {
  Root root, outside;
  make_file(outside / "target", "keep me", 0644);
  make_file(outside / "hard", "linked", 0644);
  make_dir(outside / "dir");
  make_file(outside / "dir/inside", "keep me too");
  make_dir(root / "svc");
  make_file(root / "svc/file");
  make_dir(root / "svc/a");
  make_dir(root / "svc/a/b");
  make_file(root / "svc/a/b/deep");
  make_dir(root / "svc/a/b/empty");
  check(mkfifo((root / "svc/a/fifo").c_str(), 0600), "mkfifo");
  make_symlink(outside / "target", root / "svc/a/link-to-file");
  make_symlink(outside / "dir", root / "svc/link-to-dir");
  make_symlink("/nonexistent", root / "svc/dangling");
  check(link((outside / "hard").c_str(), (root / "svc/hard").c_str()), "link");
  make_dir(root / "svc/locked");
  make_dir(root / "svc/locked/inner");
  make_file(root / "svc/locked/inner/file", "x", 0000);
  check(chmod((root / "svc/locked/inner").c_str(), 0000), "chmod");
  check(chmod((root / "svc/locked").c_str(), 0000), "chmod");
  for (const char* entry : {"svc", "svc/a", "svc/a/b", "svc/file", "svc/locked"})
    set_owner(root / entry, kUser, kGroup);  // the user's tree, partly

  auto removed = remove_tree(root.path(), "svc");
  ASSERT_TRUE(removed.has_value()) << removed.error();
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(exists(root / "svc"));
  EXPECT_EQ(read_file(outside / "target"), "keep me");
  EXPECT_EQ(read_file(outside / "dir/inside"), "keep me too");
  EXPECT_EQ(read_file(outside / "hard"), "linked");
  EXPECT_EQ(lstat_of(outside / "hard")->st_nlink, 1u);
  EXPECT_TRUE(exists(root.path())) << "the parent stays";
}

TEST(FsOpsRemoveTreeTest, RemovesASymlinkNameAsALink) {
  Root root, outside;
  make_dir(outside / "dir");
  make_file(outside / "dir/inside", "intact");
  make_symlink(outside / "dir", root / "svc");
  auto removed = remove_tree(root.path(), "svc");
  ASSERT_TRUE(removed.has_value()) << removed.error();
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(exists(root / "svc"));
  EXPECT_EQ(read_file(outside / "dir/inside"), "intact");
  EXPECT_TRUE(S_ISDIR(lstat_of(outside / "dir")->st_mode));
}

TEST(FsOpsRemoveTreeTest, RemovesAFileNameAndAMissingNameIsSuccess) {
  Root root;
  make_file(root / "svc.stop");
  auto file = remove_tree(root.path(), "svc.stop");
  ASSERT_TRUE(file.has_value()) << file.error();
  EXPECT_TRUE(*file);
  EXPECT_FALSE(exists(root / "svc.stop"));

  auto missing = remove_tree(root.path(), "svc");
  ASSERT_TRUE(missing.has_value()) << missing.error();
  EXPECT_FALSE(*missing) << "nothing was there";

  auto no_parent = remove_tree(root / "absent", "svc");
  ASSERT_FALSE(no_parent.has_value()) << "a missing parent is the caller's mistake";
  EXPECT_TRUE(contains(no_parent.error(), root / "absent")) << no_parent.error();
}

TEST(FsOpsRemoveTreeTest, RefusesNamesThatAreNotOnePathComponent) {
  Root root;
  make_dir(root / "a");
  make_dir(root / "a/b");
  for (const char* name : {"", ".", "..", "a/b", "a/", "/"}) {
    auto result = remove_tree(root / "a", name);
    EXPECT_FALSE(result.has_value()) << '"' << name << '"';
  }
  auto nested = remove_tree(root.path(), "a/b");
  EXPECT_FALSE(nested.has_value());
  EXPECT_TRUE(exists(root / "a/b"));
  EXPECT_TRUE(exists(root.path()));
}

TEST(FsOpsRemoveTreeTest, RefusesATreeWithABindMountInsideAndLeavesTheMountedContentIntact) {
  Root root, mounted;
  make_file(mounted / "precious", "do not delete");
  make_dir(mounted / "sub");
  make_file(mounted / "sub/also", "nor this");
  make_dir(root / "svc");
  make_file(root / "svc/keep", "sibling");
  for (int i = 0; i < 16; ++i) make_file(root / ("svc/sibling" + std::to_string(i)));  // some come before data/
  make_dir(root / "svc/data");
  make_dir(root / "svc/data/mnt");
  BindMount bind(mounted.path(), root / "svc/data/mnt");
  ASSERT_BIND_MOUNTED(bind);

  auto result = remove_tree(root.path(), "svc");
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(contains(result.error(), real_path(root / "svc/data/mnt"))) << result.error();
  EXPECT_TRUE(contains(result.error(), "mount point")) << result.error();
  EXPECT_EQ(read_file(root / "svc/data/mnt/precious"), "do not delete");
  EXPECT_EQ(read_file(mounted / "sub/also"), "nor this");
  EXPECT_EQ(read_file(root / "svc/keep"), "sibling") << "refused before anything is removed";
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(exists(root / ("svc/sibling" + std::to_string(i)))) << i;
  auto still_mounted = is_mount_point(root / "svc/data/mnt");
  ASSERT_TRUE(still_mounted.has_value()) << still_mounted.error();
  EXPECT_TRUE(*still_mounted);
}

TEST(FsOpsRemoveTreeTest, RefusesANameThatIsItselfAMountPoint) {
  Root root, mounted;
  make_file(mounted / "precious", "do not delete");
  make_dir(root / "svc");
  BindMount bind(mounted.path(), root / "svc");
  ASSERT_BIND_MOUNTED(bind);
  auto result = remove_tree(root.path(), "svc");
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(contains(result.error(), "mount point")) << result.error();
  EXPECT_EQ(read_file(mounted / "precious"), "do not delete");
}

// A user swapping a directory of the tree with a symlink to a directory outside, as fast as it
// can, while root removes or chowns the tree: nothing outside may be touched.
class Swapper {
 public:
  Swapper(std::string a, std::string b) : a_(std::move(a)), b_(std::move(b)), thread_([this] { run(); }) {}
  ~Swapper() {
    stop_ = true;
    thread_.join();
  }
  long swaps() const { return swaps_; }

 private:
  void run() {
    while (!stop_)
      if (renameat2(AT_FDCWD, a_.c_str(), AT_FDCWD, b_.c_str(), RENAME_EXCHANGE) == 0) ++swaps_;
  }
  std::string a_, b_;
  std::atomic<bool> stop_{false};
  std::atomic<long> swaps_{0};
  std::thread thread_;
};

void make_racy_tree(const Root& root, const std::string& outside) {
  make_dir(root / "svc");
  make_dir(root / "svc/x");
  for (int i = 0; i < 20; ++i) {
    make_dir(root / ("svc/x/d" + std::to_string(i)));
    make_file(root / ("svc/x/d" + std::to_string(i) + "/f"));
  }
  make_symlink(outside, root / "svc/y");
}

void expect_outside_untouched(const Root& outside) {
  for (int i = 0; i < 20; ++i) {
    const auto path = outside / ("d" + std::to_string(i) + "/f");
    auto info = lstat_of(path);
    ASSERT_TRUE(info) << path << " was removed through a swapped-in symlink";
    EXPECT_EQ(info->st_uid, 0u) << path;
    EXPECT_EQ(read_file(path), "outside\n");
  }
}

TEST(FsOpsRaceTest, SwappingADirectoryForASymlinkNeverReachesOutside) {
  Root outside;
  for (int i = 0; i < 20; ++i) {
    make_dir(outside / ("d" + std::to_string(i)));
    make_file(outside / ("d" + std::to_string(i) + "/f"), "outside\n");
  }
  // Rounds until 30 of them saw the swapper at work while the tree was walked: on a fast
  // filesystem a round takes well under a millisecond, and a busy machine may not run the
  // swapper's thread within one.
  int raced = 0, rounds = 0;
  for (; raced < 30 && rounds < 2000; ++rounds) {
    Root root;
    make_racy_tree(root, outside.path());
    {
      Swapper swapper(root / "svc/x", root / "svc/y");
      while (swapper.swaps() == 0) std::this_thread::yield();  // it runs before the walk starts
      const long before = swapper.swaps();
      auto chowned = chown_tree(root / "svc", kUser, kGroup);  // may fail on a vanished entry: that is fine
      (void)chowned;
      auto removed = remove_tree(root.path(), "svc");
      (void)removed;
      if (swapper.swaps() > before) ++raced;
    }
    ASSERT_NO_FATAL_FAILURE(expect_outside_untouched(outside)) << "round " << rounds;
    auto top = lstat_of(outside.path());
    ASSERT_TRUE(top);
    EXPECT_EQ(top->st_uid, 0u);
  }
  EXPECT_EQ(raced, 30) << "the race happened in only " << raced << " of " << rounds << " rounds";
}

// ---------------------------------------------------------------------------------------------
// is_mount_point

TEST(FsOpsMountPointTest, RootIsAMountPoint) {
  auto root = is_mount_point("/");
  ASSERT_TRUE(root.has_value()) << root.error();
  EXPECT_TRUE(*root);
}

TEST(FsOpsMountPointTest, ABindMountIsOneAndAPlainDirectoryIsNot) {
  Root root, mounted;
  make_dir(root / "mnt");
  make_dir(root / "plain");
  auto before = is_mount_point(root / "mnt");
  ASSERT_TRUE(before.has_value()) << before.error();
  EXPECT_FALSE(*before);
  {
    BindMount bind(mounted.path(), root / "mnt");
    ASSERT_BIND_MOUNTED(bind);
    for (const auto& path : {root / "mnt", root / "mnt/", root / "plain/../mnt"}) {
      auto during = is_mount_point(path);
      ASSERT_TRUE(during.has_value()) << during.error();
      EXPECT_TRUE(*during) << path;
    }
    for (const auto& path : {root / "plain", root.path(), root / "mn", root / "absent"}) {
      auto other = is_mount_point(path);
      ASSERT_TRUE(other.has_value()) << other.error();
      EXPECT_FALSE(*other) << path;
    }
  }
  auto after = is_mount_point(root / "mnt");
  ASSERT_TRUE(after.has_value()) << after.error();
  EXPECT_FALSE(*after) << "unmounted";
}

TEST(FsOpsMountPointTest, DecodesTheEscapesOfMountinfo) {
  Root root, mounted;
  make_dir(root / "a b");
  make_dir(root / "a\\040b");  // literally backslash-0-4-0: what an undecoded "a b" would look like
  make_dir(root / "a");
  make_dir(root / "tab\there");
  make_dir(root / "back\\slash");
  BindMount space(mounted.path(), root / "a b");
  ASSERT_BIND_MOUNTED(space);
  BindMount tab(mounted.path(), root / "tab\there");
  ASSERT_BIND_MOUNTED(tab);
  BindMount backslash(mounted.path(), root / "back\\slash");
  ASSERT_BIND_MOUNTED(backslash);
  for (const char* name : {"a b", "tab\there", "back\\slash"}) {
    auto result = is_mount_point(root / name);
    ASSERT_TRUE(result.has_value()) << result.error();
    EXPECT_TRUE(*result) << name;
  }
  for (const char* name : {"a\\040b", "a"}) {
    auto result = is_mount_point(root / name);
    ASSERT_TRUE(result.has_value()) << result.error();
    EXPECT_FALSE(*result) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// remove_directory_if_empty

TEST(FsOpsRemoveDirectoryIfEmptyTest, RemovesAnEmptyDirectory) {
  Root root;
  make_dir(root / "svc");
  auto result = remove_directory_if_empty(root / "svc");
  ASSERT_TRUE(result.has_value()) << result.error();
  EXPECT_TRUE(*result);
  EXPECT_FALSE(exists(root / "svc"));
}

TEST(FsOpsRemoveDirectoryIfEmptyTest, AMissingDirectoryIsGoneAlready) {
  Root root;
  for (const auto& path : {root / "svc", root / "absent/svc"}) {
    auto result = remove_directory_if_empty(path);
    ASSERT_TRUE(result.has_value()) << result.error();
    EXPECT_TRUE(*result) << path;
  }
}

TEST(FsOpsRemoveDirectoryIfEmptyTest, KeepsANonEmptyDirectoryWithoutAnError) {
  Root root;
  make_dir(root / "svc");
  make_file(root / "svc/file", "still here");
  auto result = remove_directory_if_empty(root / "svc");
  ASSERT_TRUE(result.has_value()) << result.error();
  EXPECT_FALSE(*result);
  EXPECT_EQ(read_file(root / "svc/file"), "still here");
}

TEST(FsOpsRemoveDirectoryIfEmptyTest, RefusesASymlinkAndAFile) {
  Root root, outside;
  make_symlink(outside.path(), root / "link");
  make_file(root / "file");
  for (const char* name : {"link", "file"}) {
    auto result = remove_directory_if_empty(root / name);
    ASSERT_FALSE(result.has_value()) << name;
    EXPECT_TRUE(contains(result.error(), root / name)) << result.error();
    EXPECT_TRUE(contains(result.error(), "Not a directory")) << result.error();
    EXPECT_TRUE(exists(root / name));
  }
  EXPECT_TRUE(exists(outside.path())) << "the link's empty target directory is not removed";
}

}  // namespace
}  // namespace pgod::supervisor
