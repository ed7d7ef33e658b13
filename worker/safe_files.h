// Writing files where an attacker may have planted symlinks: the checkout is repository
// content, so every path component is opened with O_NOFOLLOW below a directory fd, and files
// are replaced atomically (temporary file, then rename).
#pragma once

#include <kj/exception.h>

#include <string>

#include "expected.h"

namespace pgod::worker {

// Writes `content` to root/relative_path (creating missing directories, mode 0755) unless it
// already holds exactly that. Returns whether the file changed. Fails if any component is a
// symlink or not a directory.
Expected<bool, std::string> write_file_beneath(const std::string& root, const std::string& relative_path,
                                               const std::string& content);

// Atomically replaces dir/name with content (mode `mode`).
Expected<Done, std::string> replace_file(const std::string& dir, const std::string& name, const std::string& content,
                                         int mode);

// A kj::Exception whose description is exactly `message` (for errors users read), and a
// function that throws one.
kj::Exception failure(const std::string& message);
[[noreturn]] void fail(const std::string& message);

}  // namespace pgod::worker
