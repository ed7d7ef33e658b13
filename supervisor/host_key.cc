#include "host_key.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <libssh/libssh.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "system_call.h"
#include "unique_fd.h"

namespace pgod::supervisor {
namespace {

constexpr std::size_t kMaxKeyBytes = 64 * 1024;

struct KeyFree {
  void operator()(ssh_key key) const { ssh_key_free(key); }
};
using OwnedKey = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

Expected<OwnedKey, std::string> parse_key(const std::string& text, const std::string& path) {
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_base64(text.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK || key == nullptr)
    return Unexpected{fmt::format("{}: not a private key (or one with a passphrase)", path)};
  return OwnedKey(key);
}

std::string fingerprint(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t length = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) != 0) return "unknown";
  char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, length);
  ssh_clean_pubkey_hash(&hash);
  std::string result = text ? text : "unknown";
  ssh_string_free_char(text);
  return result;
}

Expected<Done, std::string> write_new_key(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string directory = path.substr(0, slash);
    if (mkdir(directory.c_str(), 0755) != 0 && errno != EEXIST) return Unexpected{os_error("mkdir", directory, errno)};
  }
  ssh_key raw = nullptr;
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &raw) != SSH_OK)
    return Unexpected{std::string("cannot generate an ed25519 key")};
  OwnedKey key(raw);
  char* text = nullptr;
  if (ssh_pki_export_privkey_base64(key.get(), nullptr, nullptr, nullptr, &text) != SSH_OK || text == nullptr)
    return Unexpected{std::string("cannot encode the new host key")};
  std::unique_ptr<char, void (*)(char*)> owned(text, ssh_string_free_char);
  // Written beside and renamed, so a crash never leaves half a key under the real name.
  const std::string temporary = path + ".new";
  unlink(temporary.c_str());
  UniqueFd fd(open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return Unexpected{os_error("create", temporary, errno)};
  const std::size_t length = std::strlen(text);
  std::size_t done = 0;
  while (done < length) {
    const ssize_t wrote = retry_eintr([&] { return write(fd.get(), text + done, length - done); });
    if (wrote <= 0) return Unexpected{os_error("write", temporary, errno)};
    done += static_cast<std::size_t>(wrote);
  }
  if (auto synced = check_call(fsync(fd.get()), "fsync", temporary); !synced) return synced;
  // link() fails if a key appeared meanwhile: never replace one.
  if (link(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    unlink(temporary.c_str());
    return Unexpected{os_error("link", path, error)};
  }
  unlink(temporary.c_str());
  return Done{};
}

}  // namespace

namespace {

struct LoadedKey {
  std::string text;
  OwnedKey key;
};

// The checks of read_host_key(), and the parsed key so that it is parsed once.
Expected<LoadedKey, std::string> load_host_key(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Unexpected{os_error("open", path, errno)};
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) return Unexpected{os_error("fstat", path, errno)};
  if (!S_ISREG(info.st_mode)) return Unexpected{fmt::format("{}: not a regular file", path)};
  if (info.st_uid != geteuid())
    return Unexpected{fmt::format("{}: owned by uid {}, not {}; chown it", path, info.st_uid, geteuid())};
  if ((info.st_mode & 077) != 0)
    return Unexpected{
        fmt::format("{}: mode {:o} lets others read or change it; chmod 600 {}", path, info.st_mode & 0777, path)};
  if (static_cast<std::size_t>(info.st_size) > kMaxKeyBytes)
    return Unexpected{fmt::format("{}: too large for a key", path)};
  auto text = read_bounded(fd.get(), kMaxKeyBytes, path);
  if (!text) return Unexpected{text.error()};
  auto key = parse_key(*text, path);
  if (!key) {
    wipe(*text);
    return Unexpected{key.error()};
  }
  return LoadedKey{std::move(*text), std::move(*key)};
}

}  // namespace

Expected<std::string, std::string> read_host_key(const std::string& path) {
  auto loaded = load_host_key(path);
  if (!loaded) return Unexpected{loaded.error()};
  return std::move(loaded->text);
}

Expected<HostKeyReady, std::string> ensure_host_key(const std::string& path) {
  HostKeyReady ready;
  struct stat info {};
  if (lstat(path.c_str(), &info) != 0) {
    if (errno != ENOENT) return Unexpected{os_error("stat", path, errno)};
    auto written = write_new_key(path);
    if (!written) return Unexpected{written.error()};
    ready.created = true;
  }
  auto loaded = load_host_key(path);
  if (!loaded) return Unexpected{loaded.error()};
  ready.fingerprint = fingerprint(loaded->key.get());
  wipe(loaded->text);
  return ready;
}

}  // namespace pgod::supervisor
