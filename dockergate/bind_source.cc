// resolve_bind_source: where a bind source really is, found the way the kernel would walk it when
// dockerd mounts it, one component at a time from "/", never following a link without counting it.
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "judge.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::dockergate {
namespace {

constexpr int kMaxSymlinks = 40;  // the kernel's limit (ELOOP)

std::deque<std::string> split_components(const std::string& path) {
  std::deque<std::string> parts;
  std::size_t begin = 0;
  while (begin <= path.size()) {
    const std::size_t end = std::min(path.find('/', begin), path.size());
    if (end > begin) parts.push_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  return parts;
}

std::string join_components(const std::vector<std::string>& parts) {
  if (parts.empty()) return "/";
  std::string out;
  for (const auto& part : parts) out += "/" + part;
  return out;
}

// The target of the symlink `link` (an O_PATH|O_NOFOLLOW fd of the link itself, so the link read
// is the link that was opened); nullopt when it cannot be read or is empty.
std::optional<std::string> read_link(int link) {
  std::string target(PATH_MAX, '\0');
  const ssize_t length = readlinkat(link, "", target.data(), target.size());
  if (length <= 0 || static_cast<std::size_t>(length) >= target.size()) return std::nullopt;
  target.resize(static_cast<std::size_t>(length));
  return target;
}

}  // namespace

std::optional<std::string> resolve_bind_source(const std::string& path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::deque<std::string> pending = split_components(path);
  std::vector<std::string> resolved;
  // dirs[i] is the directory that holds resolved[i] (dirs[0] is "/"): a component is always
  // opened relative to the directory it was found in, never by a path walked again.
  std::vector<UniqueFd> dirs;
  dirs.emplace_back(retry_eintr([] { return open("/", O_PATH | O_DIRECTORY | O_CLOEXEC); }));
  if (!dirs.back()) return std::nullopt;
  int symlinks_followed = 0;
  while (!pending.empty()) {
    const std::string part = std::move(pending.front());
    pending.pop_front();
    if (part == ".") continue;
    if (part == "..") {
      // `resolved` holds no symlinks, so dropping its last component is the physical parent
      // (and ".." at "/" stays at "/", as the kernel does).
      if (!resolved.empty()) {
        resolved.pop_back();
        dirs.pop_back();
      }
      continue;
    }
    UniqueFd fd(retry_eintr([&] { return openat(dirs.back().get(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC); }));
    if (!fd) {
      // Anything but "does not exist" (EACCES, ENAMETOOLONG...) cannot be judged.
      if (errno != ENOENT) return std::nullopt;
      // dockerd creates what is missing, as written from here on; a ".." among it would depend on
      // what it creates.
      resolved.push_back(part);
      for (auto& rest : pending) {
        if (rest == "..") return std::nullopt;
        if (rest != ".") resolved.push_back(std::move(rest));
      }
      return join_components(resolved);
    }
    struct stat info {};
    if (fstat(fd.get(), &info) != 0) return std::nullopt;
    if (S_ISLNK(info.st_mode)) {
      if (++symlinks_followed > kMaxSymlinks) return std::nullopt;
      const auto target = read_link(fd.get());
      if (!target) return std::nullopt;
      if (target->front() == '/') {  // absolute: from "/" again
        resolved.clear();
        dirs.resize(1);
      }
      auto target_parts = split_components(*target);
      pending.insert(pending.begin(), target_parts.begin(), target_parts.end());
      continue;
    }
    // Only a directory can hold the next component (the kernel says ENOTDIR).
    if (!S_ISDIR(info.st_mode) && !pending.empty()) return std::nullopt;
    resolved.push_back(part);
    dirs.push_back(std::move(fd));
  }
  return join_components(resolved);
}

}  // namespace pgod::dockergate
