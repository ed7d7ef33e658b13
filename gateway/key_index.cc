#include "key_index.h"

#include <openssl/evp.h>

#include <memory>

namespace pgod::gateway {
namespace {

struct KeyFree {
  void operator()(ssh_key key) const { ssh_key_free(key); }
};
using OwnedKey = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

}  // namespace

std::string key_fingerprint(const std::string& canonical_key) {
  const auto space = canonical_key.find(' ');
  const std::string blob = space == std::string::npos ? canonical_key : canonical_key.substr(space + 1);
  if (blob.empty() || blob.size() % 4 != 0 || blob.size() > 64 * 1024) return "unknown";
  std::string decoded(blob.size() / 4 * 3, '\0');
  const int length =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                      reinterpret_cast<const unsigned char*>(blob.data()), static_cast<int>(blob.size()));
  if (length < 0) return "unknown";
  // EVP_DecodeBlock counts the padding's zero bytes: take them off.
  std::size_t size = static_cast<std::size_t>(length);
  for (auto it = blob.rbegin(); it != blob.rend() && *it == '=' && size > 0; ++it) --size;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_length = 0;
  if (EVP_Digest(decoded.data(), size, digest, &digest_length, EVP_sha256(), nullptr) != 1) return "unknown";
  std::string encoded(4 * ((digest_length + 2) / 3) + 1, '\0');
  const int written =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()), digest, static_cast<int>(digest_length));
  encoded.resize(static_cast<std::size_t>(written));
  while (!encoded.empty() && encoded.back() == '=') encoded.pop_back();
  return "SHA256:" + encoded;
}

std::optional<std::string> KeyIndex::canonical(ssh_key key) {
  char* blob = nullptr;
  if (key == nullptr || ssh_pki_export_pubkey_base64(key, &blob) != SSH_OK || blob == nullptr) return std::nullopt;
  std::string text = std::string(ssh_key_type_to_char(ssh_key_type(key))) + " " + blob;
  ssh_string_free_char(blob);
  return text;
}

std::size_t KeyIndex::set_service_keys(const std::string& service, const std::vector<ListedKey>& keys) {
  remove_service(service);
  std::size_t unusable = 0;
  auto& own = keys_by_service_[service];
  for (const auto& listed : keys) {
    const auto type = ssh_key_type_from_name(listed.type.c_str());
    ssh_key raw = nullptr;
    if (type == SSH_KEYTYPE_UNKNOWN || ssh_pki_import_pubkey_base64(listed.base64.c_str(), type, &raw) != SSH_OK) {
      ++unusable;
      continue;
    }
    OwnedKey key(raw);
    // The blob must say what the line says: an ed25519 blob labelled ssh-rsa is not a key.
    auto text = canonical(key.get());
    if (!text || ssh_key_type(key.get()) != type) {
      ++unusable;
      continue;
    }
    services_by_key_[*text].emplace(service, Listing{listed.file, listed.comment});
    own.insert(*text);
  }
  return unusable;
}

void KeyIndex::remove_service(const std::string& service) {
  auto found = keys_by_service_.find(service);
  if (found == keys_by_service_.end()) return;
  for (const auto& key : found->second) {
    auto entry = services_by_key_.find(key);
    if (entry == services_by_key_.end()) continue;
    entry->second.erase(service);
    if (entry->second.empty()) services_by_key_.erase(entry);
  }
  keys_by_service_.erase(found);
}

bool KeyIndex::listed_anywhere(const std::string& canonical_key) const {
  return services_by_key_.count(canonical_key) > 0;
}

std::optional<std::string> KeyIndex::listed_by(const std::string& service, const std::string& canonical_key) const {
  auto entry = services_by_key_.find(canonical_key);
  if (entry == services_by_key_.end()) return std::nullopt;
  auto listing = entry->second.find(service);
  if (listing == entry->second.end()) return std::nullopt;
  return listing->second.file;
}

}  // namespace pgod::gateway
