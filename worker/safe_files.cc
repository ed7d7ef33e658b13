#include "safe_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <kj/exception.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "system_call.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

Expected<Done, std::string> write_all(int fd, const std::string& content, const std::string& shown) {
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = retry_eintr([&] { return write(fd, content.data() + done, content.size() - done); });
    if (n < 0) return Unexpected{os_error("write", shown, errno)};
    done += static_cast<std::size_t>(n);
  }
  return Done{};
}

Expected<Done, std::string> replace_at(int dir, const std::string& shown, const std::string& name,
                                       const std::string& content, int mode) {
  const std::string temporary = "." + name + ".pgod-tmp";
  unlinkat(dir, temporary.c_str(), 0);
  const UniqueFd fd(openat(dir, temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return Unexpected{os_error("create", shown, errno)};
  auto written = write_all(fd.get(), content, shown);
  if (written && (fsync(fd.get()) != 0 || renameat(dir, temporary.c_str(), dir, name.c_str()) != 0))
    written = Unexpected{os_error("replace", shown, errno)};
  if (!written) unlinkat(dir, temporary.c_str(), 0);
  return written;
}

}  // namespace

kj::Exception failure(const std::string& message) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(message.c_str()));
}

void fail(const std::string& message) { kj::throwFatalException(failure(message)); }

Expected<Done, std::string> replace_file(const std::string& dir, const std::string& name, const std::string& content,
                                         int mode) {
  const UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Unexpected{os_error("open", dir, errno)};
  return replace_at(fd.get(), dir + "/" + name, name, content, mode);
}

Expected<bool, std::string> write_file_beneath(const std::string& root, const std::string& relative_path,
                                               const std::string& content) {
  UniqueFd dir(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Unexpected{os_error("open", root, errno)};
  std::string rest = relative_path;
  for (;;) {
    const auto slash = rest.find('/');
    if (slash == std::string::npos) break;
    const std::string part = rest.substr(0, slash);
    rest = rest.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") return Unexpected{fmt::format("{}: \"..\" is not allowed", relative_path)};
    if (mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST) {
      const int error = errno;
      return Unexpected{os_error("create directory", part + " of " + relative_path, error)};
    }
    UniqueFd next(openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      const int error = errno;
      return Unexpected{os_error(part + " in " + relative_path + " (a symlink is not followed)", "", error)};
    }
    dir = std::move(next);
  }
  if (rest.empty() || rest == "." || rest == "..") return Unexpected{fmt::format("{} names no file", relative_path)};

  const UniqueFd existing(openat(dir.get(), rest.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (existing) {
    struct stat info {};
    if (fstat(existing.get(), &info) == 0 && S_ISREG(info.st_mode))
      if (auto current = read_bounded(existing.get(), content.size(), relative_path); current && *current == content)
        return false;
  } else if (errno == ELOOP) {
    return Unexpected{fmt::format("{} is a symlink: not written", relative_path)};
  }
  if (auto replaced = replace_at(dir.get(), relative_path, rest, content, 0644); !replaced)
    return Unexpected{replaced.error()};
  return true;
}

}  // namespace pgod::worker
