#include "fs_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "system_call.h"
#include "unique_fd.h"

namespace pgod::supervisor {
namespace {

// A user adding entries while we remove them gets this many passes before removal gives up.
constexpr int kRemovePasses = 8;
// mountinfo is a few KiB, a few hundred KiB with many containers; more is not a mount table.
constexpr std::size_t kMaxMountinfoSize = 64 << 20;

std::string join(const std::string& dir, std::string_view name) {
  return !dir.empty() && dir.back() == '/' ? fmt::format("{}{}", dir, name) : fmt::format("{}/{}", dir, name);
}

bool is_component(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

struct SplitPath {
  std::string parent;
  std::string name;
};

// "a/b/c/" -> {"a/b", "c"}; the last component must name an entry (not "", "." or "..").
Expected<SplitPath, std::string> split_path(const std::string& path) {
  std::string_view trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.remove_suffix(1);
  const auto slash = trimmed.rfind('/');
  SplitPath split;
  if (slash == std::string_view::npos) {
    split.parent = ".";
    split.name = std::string(trimmed);
  } else {
    split.parent = slash == 0 ? "/" : std::string(trimmed.substr(0, slash));
    split.name = std::string(trimmed.substr(slash + 1));
  }
  if (!is_component(split.name)) return Unexpected{fmt::format("\"{}\" does not name a directory entry", path)};
  return split;
}

// The caller's parent directory: its components are root's, so it is resolved normally.
Expected<UniqueFd, std::string> open_trusted_directory(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Unexpected{os_error("open directory", path, errno)};
  return fd;
}

// What the walks need to know about an entry, from statx on an fd (so it describes exactly
// the inode we then act on, whatever the user renames meanwhile).
struct Node {
  mode_t mode = 0;
  nlink_t nlink = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  dev_t dev = 0;
  std::uint64_t mount_id = 0;
};

Expected<Node, std::string> inspect(int fd, const std::string& shown) {
  struct statx x {};
  const unsigned mask = STATX_TYPE | STATX_MODE | STATX_NLINK | STATX_UID | STATX_GID | STATX_MNT_ID;
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, mask, &x) != 0)
    return Unexpected{os_error("stat", shown, errno)};
  // A bind mount of the same filesystem has the same st_dev: only the mount id tells it apart.
  if ((x.stx_mask & STATX_MNT_ID) == 0)
    return Unexpected{fmt::format("stat {}: the kernel reports no mount id (Linux 5.8 or later is needed)", shown)};
  Node node;
  node.mode = x.stx_mode;
  node.nlink = x.stx_nlink;
  node.uid = x.stx_uid;
  node.gid = x.stx_gid;
  node.dev = makedev(x.stx_dev_major, x.stx_dev_minor);
  node.mount_id = x.stx_mnt_id;
  return node;
}

bool same_mount(const Node& a, const Node& b) { return a.dev == b.dev && a.mount_id == b.mount_id; }

// The entry itself, never what a symlink points to; O_PATH so a fifo does not block us and
// nothing of the file is read.
UniqueFd open_entry(int dir, const std::string& name) {
  return UniqueFd(openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
}

// A readable fd for the directory an O_PATH fd refers to: the same inode, with no lookup by name.
Expected<UniqueFd, std::string> reopen_directory(int path_fd, const std::string& shown) {
  UniqueFd fd(openat(path_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Unexpected{os_error("open directory", shown, errno)};
  return fd;
}

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};

// The names in a directory, read through a duplicate fd (closedir closes it), all at once so the
// walks hold one fd per level and can change the directory while going through the names.
Expected<std::vector<std::string>, std::string> list_directory(int dir_fd, const std::string& shown) {
  UniqueFd copy(fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return Unexpected{os_error("duplicate fd of", shown, errno)};
  std::unique_ptr<DIR, DirCloser> dir(fdopendir(copy.get()));
  if (!dir) return Unexpected{os_error("read directory", shown, errno)};
  copy.release();
  // The duplicate shares the file offset with dir_fd, which an earlier listing left at the end.
  rewinddir(dir.get());
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = readdir(dir.get());
    if (entry == nullptr) break;
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return Unexpected{os_error("read directory", shown, errno)};
  return names;
}

std::string too_deep(const std::string& shown) {
  return fmt::format("{}: more than {} directory levels: not followed further", shown, kMaxTreeDepth);
}

std::string decode_mountinfo_field(std::string_view field) {
  // The kernel writes space, tab, newline and backslash as \ooo (octal).
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) && octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

// The mount points of /proc/self/mountinfo (field 5), decoded.
Expected<std::vector<std::string>, std::string> read_mount_points() {
  const std::string path = "/proc/self/mountinfo";
  const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Unexpected{os_error("open", path, errno)};
  const auto text = read_bounded(fd.get(), kMaxMountinfoSize, path);
  if (!text) return Unexpected{text.error()};
  std::vector<std::string> mount_points;
  std::string_view rest = *text;
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (line.empty()) continue;
    // "36 35 98:0 /root /mount/point options ...": the fifth space-separated field.
    std::string_view field = line;
    for (int skip = 0; skip < 4; ++skip) {
      const auto space = field.find(' ');
      if (space == std::string_view::npos) return Unexpected{fmt::format("{}: malformed line \"{}\"", path, line)};
      field.remove_prefix(space + 1);
    }
    mount_points.push_back(decode_mountinfo_field(field.substr(0, field.find(' '))));
  }
  return mount_points;
}

// realpath(3) of a path, or its errno (callers decide what a missing path means).
Expected<std::string, int> resolve(const std::string& path) {
  const std::unique_ptr<char, decltype(&std::free)> real(realpath(path.c_str(), nullptr), &std::free);
  if (!real) return Unexpected{errno};
  return std::string(real.get());
}

struct ChownJob {
  uid_t uid;
  gid_t gid;
  Node home;  // the mount the tree is on
};

Expected<Done, std::string> chown_contents(int dir, const std::string& shown, const ChownJob& job, int depth) {
  auto names = list_directory(dir, shown);
  if (!names) return Unexpected{names.error()};
  for (const auto& name : *names) {
    const std::string path = join(shown, name);
    const UniqueFd entry = open_entry(dir, name);
    if (!entry) {
      if (errno == ENOENT) continue;  // removed meanwhile: nothing to change
      return Unexpected{os_error("open", path, errno)};
    }
    auto node = inspect(entry.get(), path);
    if (!node) return Unexpected{node.error()};
    if (!same_mount(*node, job.home)) continue;  // another mount is left alone
    if (S_ISDIR(node->mode)) {
      if (depth > kMaxTreeDepth) return Unexpected{too_deep(path)};
      auto child = reopen_directory(entry.get(), path);
      if (!child) return Unexpected{child.error()};
      if (auto done = chown_contents(child->get(), path, job, depth + 1); !done) return done;
      if ((node->uid != job.uid || node->gid != job.gid) && fchown(child->get(), job.uid, job.gid) != 0)
        return Unexpected{os_error("change owner of", path, errno)};
      continue;
    }
    if (node->nlink > 1) continue;  // possibly a planted hard link to a file outside (see the header)
    if (node->uid == job.uid && node->gid == job.gid) continue;
    // Through the O_PATH fd: a symlink itself, and exactly the inode inspected above.
    if (fchownat(entry.get(), "", job.uid, job.gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
      return Unexpected{os_error("change owner of", path, errno)};
  }
  return Done{};
}

Expected<Done, std::string> remove_entry(int dir, const std::string& name, const std::string& shown, const Node& home,
                                         int depth);

// Removes everything inside `dir`.
Expected<Done, std::string> empty_directory(int dir, const std::string& shown, const Node& home, int depth) {
  auto names = list_directory(dir, shown);
  if (!names) return Unexpected{names.error()};
  for (const auto& name : *names)
    if (auto done = remove_entry(dir, name, join(shown, name), home, depth); !done) return done;
  return Done{};
}

// Removes dir/name (shown as `shown`) and, for a directory, its contents first. An entry the
// user swaps for another type meanwhile is left to the next pass of the directory above.
Expected<Done, std::string> remove_entry(int dir, const std::string& name, const std::string& shown, const Node& home,
                                         int depth) {
  UniqueFd entry = open_entry(dir, name);
  if (!entry) {
    if (errno == ENOENT) return Done{};
    return Unexpected{os_error("open", shown, errno)};
  }
  auto node = inspect(entry.get(), shown);
  if (!node) return Unexpected{node.error()};
  if (!same_mount(*node, home))
    return Unexpected{fmt::format("{} is a mount point: not removed, nor anything on the mounted filesystem", shown)};
  if (!S_ISDIR(node->mode)) {
    if (unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT || errno == EISDIR) return Done{};
    return Unexpected{os_error("remove", shown, errno)};
  }
  if (depth > kMaxTreeDepth) return Unexpected{too_deep(shown)};
  auto opened = reopen_directory(entry.get(), shown);
  if (!opened) return Unexpected{opened.error()};
  entry.reset();
  for (int pass = 0; pass < kRemovePasses; ++pass) {
    if (auto done = empty_directory(opened->get(), shown, home, depth + 1); !done) return done;
    if (unlinkat(dir, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT || errno == ENOTDIR) return Done{};
    // Not empty (POSIX allows EEXIST for it): entries were added since the listing; go again.
    if (errno != ENOTEMPTY && errno != EEXIST) return Unexpected{os_error("remove directory", shown, errno)};
  }
  return Unexpected{fmt::format("remove directory {}: new entries keep appearing in it", shown)};
}

}  // namespace

Expected<bool, std::string> ensure_directory(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  auto split = split_path(path);
  if (!split) return Unexpected{split.error()};
  auto parent = open_trusted_directory(split->parent);
  if (!parent) return Unexpected{parent.error()};
  bool created = true;
  if (mkdirat(parent->get(), split->name.c_str(), 0700) != 0) {
    if (errno != EEXIST) return Unexpected{os_error("create directory", path, errno)};
    created = false;
  }
  const UniqueFd dir(openat(parent->get(), split->name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    const int error = errno;
    // O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR, not ELOOP: look at the entry to say which.
    struct stat info {};
    if ((error == ELOOP || error == ENOTDIR) &&
        fstatat(parent->get(), split->name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0) {
      const char* what = S_ISLNK(info.st_mode) ? "is a symlink, not followed" : "exists and is not a directory";
      return Unexpected{fmt::format("{} {}: left as it is", path, what)};
    }
    return Unexpected{os_error("open directory", path, error)};
  }
  // Owner before mode: chown may clear set-id bits that `mode` asks for.
  if (fchown(dir.get(), uid, gid) != 0) return Unexpected{os_error("change owner of", path, errno)};
  if (fchmod(dir.get(), mode & 07777) != 0) return Unexpected{os_error("change mode of", path, errno)};
  return created;
}

Expected<Done, std::string> chown_tree(const std::string& path, uid_t uid, gid_t gid) {
  const UniqueFd top(open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!top) return Unexpected{os_error("open", path, errno)};
  auto node = inspect(top.get(), path);
  if (!node) return Unexpected{node.error()};
  if (S_ISLNK(node->mode)) return Unexpected{fmt::format("{} is a symlink: not followed, owner not changed", path)};
  if (!S_ISDIR(node->mode)) return Unexpected{fmt::format("{} is not a directory: owner not changed", path)};
  auto dir = reopen_directory(top.get(), path);
  if (!dir) return Unexpected{dir.error()};
  const ChownJob job{uid, gid, *node};
  if (auto done = chown_contents(dir->get(), path, job, 1); !done) return done;
  if (fchown(dir->get(), uid, gid) != 0) return Unexpected{os_error("change owner of", path, errno)};
  return Done{};
}

Expected<bool, std::string> remove_tree(const std::string& parent, const std::string& name) {
  const std::string shown = join(parent, name);
  if (!is_component(name)) return Unexpected{fmt::format("remove {}: \"{}\" is not one path component", shown, name)};
  auto dir = open_trusted_directory(parent);
  if (!dir) return Unexpected{dir.error()};
  struct stat info {};
  if (fstatat(dir->get(), name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    return Unexpected{os_error("stat", shown, errno)};
  }
  auto home = inspect(dir->get(), parent);
  if (!home) return Unexpected{home.error()};

  // Refuse up front, with nothing removed, when a mount below is already known; remove_entry
  // checks each entry anyway, for mounts made after this look.
  auto real_parent = resolve(parent);
  if (!real_parent) return Unexpected{os_error("resolve", parent, real_parent.error())};
  const std::string real = join(*real_parent, name);
  auto mount_points = read_mount_points();
  if (!mount_points) return Unexpected{mount_points.error()};
  for (const auto& mount_point : *mount_points)
    if (mount_point == real || mount_point.starts_with(real + "/"))
      return Unexpected{fmt::format("remove {}: {} is a mount point: nothing removed", shown, mount_point)};

  if (auto done = remove_entry(dir->get(), name, shown, *home, 0); !done) return Unexpected{done.error()};
  return true;
}

Expected<bool, std::string> is_mount_point(const std::string& path) {
  auto mount_points = read_mount_points();
  if (!mount_points) return Unexpected{mount_points.error()};
  // Only the parent is resolved: stat(2) of a hard-mounted NFS share whose server is gone
  // never returns, and would freeze pgod. The last component is taken as it is.
  std::string trimmed = path;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
  const auto slash = trimmed.rfind('/');
  const std::string last = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
  if (slash != std::string::npos && !last.empty() && last != "." && last != "..") {
    auto parent = resolve(slash == 0 ? "/" : trimmed.substr(0, slash));
    if (!parent) {
      if (parent.error() == ENOENT || parent.error() == ENOTDIR) return false;
      return Unexpected{os_error("resolve", path, parent.error())};
    }
    const std::string target = join(*parent, last);
    for (const auto& mount_point : *mount_points)
      if (mount_point == target) return true;
    return false;
  }
  auto real = resolve(path);
  if (!real) {
    if (real.error() == ENOENT || real.error() == ENOTDIR) return false;
    return Unexpected{os_error("resolve", path, real.error())};
  }
  for (const auto& mount_point : *mount_points)
    if (mount_point == *real) return true;
  return false;
}

Expected<bool, std::string> remove_directory_if_empty(const std::string& path) {
  auto split = split_path(path);
  if (!split) return Unexpected{split.error()};
  const UniqueFd parent(open(split->parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent) {
    if (errno == ENOENT) return true;  // no parent, no directory
    return Unexpected{os_error("open directory", split->parent, errno)};
  }
  if (unlinkat(parent.get(), split->name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return true;
  if (errno == ENOTEMPTY || errno == EEXIST) return false;
  return Unexpected{os_error("remove directory", path, errno)};
}

}  // namespace pgod::supervisor
