#include "safe_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <kj/exception.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "unique_fd.h"

namespace pgod::worker {
namespace {

std::string error_text(const std::string& what) { return fmt::format("{}: {}", what, std::strerror(errno)); }

// Reads a small file through an fd; nullopt on error or beyond `limit` bytes.
std::optional<std::string> read_fd(int fd, std::size_t limit) {
  std::string text;
  char buffer[8192];
  for (;;) {
    if (text.size() > limit) return std::nullopt;
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

Expected<bool, std::string> replace_at(int dir, const std::string& shown, const std::string& name,
                                       const std::string& content, int mode) {
  const std::string temporary = "." + name + ".pgod-tmp";
  unlinkat(dir, temporary.c_str(), 0);
  const UniqueFd fd(openat(dir, temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return Unexpected{error_text("create " + shown)};
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const auto message = error_text("write " + shown);
      unlinkat(dir, temporary.c_str(), 0);
      return Unexpected{message};
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd.get()) != 0 || renameat(dir, temporary.c_str(), dir, name.c_str()) != 0) {
    const auto message = error_text("replace " + shown);
    unlinkat(dir, temporary.c_str(), 0);
    return Unexpected{message};
  }
  return true;
}

}  // namespace

kj::Exception failure(const std::string& message) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message.c_str()));
}

void fail(const std::string& message) { kj::throwFatalException(failure(message)); }

Expected<bool, std::string> replace_file(const std::string& dir, const std::string& name, const std::string& content,
                                         int mode) {
  const UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Unexpected{error_text("open " + dir)};
  return replace_at(fd.get(), dir + "/" + name, name, content, mode);
}

Expected<bool, std::string> write_file_beneath(const std::string& root, const std::string& relative_path,
                                               const std::string& content) {
  UniqueFd dir(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Unexpected{error_text("open " + root)};
  std::string rest = relative_path;
  for (;;) {
    const auto slash = rest.find('/');
    if (slash == std::string::npos) break;
    const std::string part = rest.substr(0, slash);
    rest = rest.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") return Unexpected{fmt::format("{}: \"..\" is not allowed", relative_path)};
    if (mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST)
      return Unexpected{error_text("create directory " + part + " of " + relative_path)};
    UniqueFd next(openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return Unexpected{error_text(part + " in " + relative_path + " (a symlink is not followed)")};
    dir = std::move(next);
  }
  if (rest.empty() || rest == "." || rest == "..") return Unexpected{fmt::format("{} names no file", relative_path)};

  const UniqueFd existing(openat(dir.get(), rest.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (existing) {
    struct stat info {};
    if (fstat(existing.get(), &info) == 0 && S_ISREG(info.st_mode))
      if (auto current = read_fd(existing.get(), content.size()); current && *current == content) return false;
  } else if (errno == ELOOP) {
    return Unexpected{fmt::format("{} is a symlink: not written", relative_path)};
  }
  return replace_at(dir.get(), relative_path, rest, content, 0644);
}

}  // namespace pgod::worker
