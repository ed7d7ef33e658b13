// Directory operations the supervisor does as root on trees that unprivileged users control
// (`<dir>/<svc>`, `<datadir>/<svc>`). The user may race us, e.g. swap a directory for a symlink
// to /etc at any moment, so below the trusted parent nothing is reached by path: every level
// is opened with O_NOFOLLOW relative to the directory fd above it, and every change is made
// through an fd or relative to one. The parent given by the caller (its components created by
// root) is resolved normally. Errors say what failed, on which full path, and errno's text, so
// the caller can log them as "[service] <error>".
#pragma once

#include <sys/types.h>

#include <string>

#include "expected.h"

namespace pgod::supervisor {

// How many directory levels below the starting point the tree walks go before giving up, so a
// user cannot exhaust the stack (or the fds: one is open per level).
inline constexpr int kMaxTreeDepth = 256;

// Makes `path` a directory owned by uid:gid with exactly `mode` (permission bits, umask not
// applied). Its parent must exist; only the last component is created (mkdirat, first 0700 so
// it is never briefly open to others). An existing directory gets its owner and mode corrected;
// a symlink or anything else that is not a directory is refused and left untouched. Returns
// whether the directory was created.
Expected<bool, std::string> ensure_directory(const std::string& path, uid_t uid, gid_t gid, mode_t mode);

// Changes the owner of the directory `path` and of everything below it to uid:gid, like
// `chown -R --no-dereference` that stays on one mount: symlinks are changed themselves, never
// followed; entries on another mount (another st_dev or mount id, so bind mounts of the same
// filesystem count too) are left alone and not descended into. A non-directory with more than
// one hard link is never changed: a hard link is how a user (or a root container writing into
// the tree) can bring a file they do not own (e.g. /etc/shadow, where fs.protected_hardlinks is
// off) into the tree, and chowning it would hand it over; the owner of the tree's top says
// nothing, since a container can change it. Directories are changed after their contents, so a
// failed call can be retried with the same result. `path` itself must be a directory, not a
// symlink.
Expected<Done, std::string> chown_tree(const std::string& path, uid_t uid, gid_t gid);

// Removes parent/name and everything below it, like `rm -rf --one-file-system` that never
// follows a symlink below `parent` and never crosses a mount: a symlink `name` is removed as a
// link; a mount point at or below parent/name is an error naming it, and nothing on the mounted
// filesystem is touched. Mount points listed in /proc/self/mountinfo are refused before
// anything is removed; each entry is also checked (mount id and st_dev) as it is reached, for
// mounts made in between. Entries a user adds while we remove are removed too (a few passes,
// then an error). `name` is one path component. Returns false when parent/name did not exist.
Expected<bool, std::string> remove_tree(const std::string& parent, const std::string& name);

// Whether `path` (symlinks resolved) is a mount point, i.e. the mount point of an entry of
// /proc/self/mountinfo. A path that does not exist is not one. Fails when mountinfo cannot be
// read.
Expected<bool, std::string> is_mount_point(const std::string& path);

// Removes the directory `path` if it is empty (rmdir; a symlink or a file is an error). Returns
// true when it is gone (removed now, or already missing), false when it is not empty.
Expected<bool, std::string> remove_directory_if_empty(const std::string& path);

}  // namespace pgod::supervisor
