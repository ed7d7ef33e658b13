// Which services accept which public keys: the gateway's half of authorisation. The workers
// parse their repositories' ssh/*.pub (untrusted input); here every key is parsed once more by
// libssh and kept in its canonical form, so a key is "the same" exactly when libssh's public
// blobs are equal, whatever the spelling in the repository.
#pragma once

#include <libssh/libssh.h>

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pgod::gateway {

struct ListedKey {
  std::string type;     // as written in the .pub file
  std::string base64;   // the blob as written
  std::string comment;  // for log lines
  std::string file;     // ssh/<name>.pub
};

// "SHA256:<base64>" of a canonical key ("type base64"), as ssh-keygen -l prints it; "unknown"
// when the base64 does not decode.
std::string key_fingerprint(const std::string& canonical_key);

class KeyIndex {
 public:
  // Replaces the keys `service` accepts. Keys libssh cannot parse are skipped and counted in
  // the return value (the worker already reported why).
  std::size_t set_service_keys(const std::string& service, const std::vector<ListedKey>& keys);
  void remove_service(const std::string& service);

  // The canonical form of a key presented by a client ("type blob"); nullopt if libssh cannot
  // export it.
  static std::optional<std::string> canonical(ssh_key key);

  // Step one, at auth: does any service list this key?
  bool listed_anywhere(const std::string& canonical_key) const;
  // Step two, at exec: does `service` list it? Returns which file listed it (for the log).
  std::optional<std::string> listed_by(const std::string& service, const std::string& canonical_key) const;

  std::size_t key_count() const { return services_by_key_.size(); }

 private:
  struct Listing {
    std::string file;
    std::string comment;
  };
  // canonical key → service → where it was listed
  std::map<std::string, std::map<std::string, Listing>, std::less<>> services_by_key_;
  std::map<std::string, std::set<std::string>, std::less<>> keys_by_service_;
};

}  // namespace pgod::gateway
