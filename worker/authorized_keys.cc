#include "authorized_keys.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "system_call.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

constexpr std::array<std::string_view, 8> kKeyTypes = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
};

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Decodes standard base64 (with padding); nullopt when malformed.
std::optional<std::string> decode_base64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int padding = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        v[j] = 0;
        ++padding;
      } else {
        if (padding > 0) return std::nullopt;
        v[j] = base64_value(c);
        if (v[j] < 0) return std::nullopt;
      }
    }
    const unsigned triple = (unsigned(v[0]) << 18) | (unsigned(v[1]) << 12) | (unsigned(v[2]) << 6) | unsigned(v[3]);
    out += static_cast<char>((triple >> 16) & 0xff);
    if (padding < 2) out += static_cast<char>((triple >> 8) & 0xff);
    if (padding < 1) out += static_cast<char>(triple & 0xff);
  }
  return out;
}

// The blob starts with the key type as an SSH string: a cheap check that the line is coherent.
bool blob_names_type(const std::string& blob, std::string_view type) {
  if (blob.size() < 4) return false;
  const std::uint32_t length = (std::uint32_t(std::uint8_t(blob[0])) << 24) |
                               (std::uint32_t(std::uint8_t(blob[1])) << 16) |
                               (std::uint32_t(std::uint8_t(blob[2])) << 8) | std::uint32_t(std::uint8_t(blob[3]));
  return length == type.size() && blob.size() >= 4 + length && std::string_view(blob).substr(4, length) == type;
}

std::string printable(std::string_view text, std::size_t limit) {
  std::string out;
  for (const unsigned char c : text.substr(0, limit)) out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  return out;
}

}  // namespace

KeyScan parse_public_keys(std::string_view text, const std::string& file) {
  KeyScan scan;
  std::size_t line_number = 0;
  std::size_t begin = 0;
  while (begin < text.size()) {
    const auto end = std::min(text.find('\n', begin), text.size());
    std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;

    const auto problem = [&](std::string what) {
      scan.problems.push_back(fmt::format("{}:{}: {}", file, line_number, what));
    };
    const auto type_end = line.find_first_of(" \t");
    const auto type = line.substr(0, type_end);
    if (std::find(kKeyTypes.begin(), kKeyTypes.end(), type) == kKeyTypes.end()) {
      problem(fmt::format("unknown key type \"{}\" (options before the key are not supported)", printable(type, 64)));
      continue;
    }
    if (type_end == std::string_view::npos) {
      problem("no key after the type");
      continue;
    }
    auto rest = line.substr(type_end);
    rest.remove_prefix(std::min(rest.find_first_not_of(" \t"), rest.size()));
    const auto blob_end = rest.find_first_of(" \t");
    const auto base64 = rest.substr(0, blob_end);
    const auto blob = decode_base64(base64);
    if (!blob || !blob_names_type(*blob, type)) {
      problem(fmt::format("the {} key is not valid base64 of that key type", type));
      continue;
    }
    std::string_view comment;
    if (blob_end != std::string_view::npos) {
      comment = rest.substr(blob_end);
      comment.remove_prefix(std::min(comment.find_first_not_of(" \t"), comment.size()));
    }
    if (scan.keys.size() >= kMaxKeys) {
      problem(fmt::format("more than {} keys: the rest are ignored", kMaxKeys));
      break;
    }
    scan.keys.push_back({std::string(type), std::string(base64), printable(comment, 256), file});
  }
  return scan;
}

KeyScan read_authorized_keys(const std::string& checkout_dir) {
  KeyScan scan;
  const UniqueFd checkout(open(checkout_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!checkout) {
    scan.problems.push_back(fmt::format("cannot open the checkout: {}", errno_text(errno)));
    return scan;
  }
  UniqueFd ssh_dir(openat(checkout.get(), "ssh", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!ssh_dir) {
    if (errno != ENOENT)
      scan.problems.push_back(fmt::format("ssh/: {} (a symlink is not followed)", errno_text(errno)));
    return scan;
  }
  // fdopendir takes the fd over when it succeeds; closedir then closes both.
  std::unique_ptr<DIR, int (*)(DIR*)> directory(fdopendir(ssh_dir.get()), &closedir);
  if (!directory) {
    scan.problems.push_back(fmt::format("ssh/: {}", errno_text(errno)));
    return scan;
  }
  ssh_dir.release();
  DIR* dir = directory.get();
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name.size() > 4 && name.ends_with(".pub") && name.front() != '.') names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  if (names.size() > kMaxKeyFiles) {
    scan.problems.push_back(
        fmt::format("ssh/ holds {} .pub files: only the first {} are read", names.size(), kMaxKeyFiles));
    names.resize(kMaxKeyFiles);
  }
  for (const auto& name : names) {
    const std::string file = "ssh/" + name;
    // O_NONBLOCK: a FIFO planted in the repository must not hang the worker.
    const UniqueFd fd(openat(dirfd(dir), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat info {};
    if (!fd || fstat(fd.get(), &info) != 0) {
      scan.problems.push_back(fmt::format("{}: {} (a symlink is not followed)", file, errno_text(errno)));
      continue;
    }
    if (!S_ISREG(info.st_mode)) {
      scan.problems.push_back(fmt::format("{}: not a regular file", file));
      continue;
    }
    if (static_cast<std::size_t>(info.st_size) > kMaxKeyFileBytes) {
      scan.problems.push_back(fmt::format("{}: larger than {} bytes, ignored", file, kMaxKeyFileBytes));
      continue;
    }
    std::string text(static_cast<std::size_t>(info.st_size), '\0');
    const ssize_t n = retry_eintr([&] { return pread(fd.get(), text.data(), text.size(), 0); });
    if (n < 0) {
      scan.problems.push_back(fmt::format("{}: {}", file, errno_text(errno)));
      continue;
    }
    text.resize(static_cast<std::size_t>(n));
    auto parsed = parse_public_keys(text, file);
    for (auto& key : parsed.keys) {
      if (scan.keys.size() >= kMaxKeys) break;
      scan.keys.push_back(std::move(key));
    }
    scan.problems.insert(scan.problems.end(), parsed.problems.begin(), parsed.problems.end());
  }
  return scan;
}

KeyScan keys_from_files(const std::vector<std::pair<std::string, std::string>>& files) {
  KeyScan scan;
  std::size_t read = 0;
  for (const auto& [name, text] : files) {
    if (name.size() <= 4 || !name.ends_with(".pub") || name.front() == '.') continue;
    if (++read > kMaxKeyFiles) break;
    auto parsed = parse_public_keys(text, "ssh/" + name);
    for (auto& problem : parsed.problems) scan.problems.push_back(std::move(problem));
    for (auto& key : parsed.keys) {
      if (scan.keys.size() >= kMaxKeys) break;
      scan.keys.push_back(std::move(key));
    }
  }
  return scan;
}

}  // namespace pgod::worker
