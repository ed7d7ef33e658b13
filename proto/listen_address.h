// Listen addresses as Go writes them: ":2222" (every address), "127.0.0.1:2222",
// "[::1]:2222", "localhost:9112".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "expected.h"
#include "unique_fd.h"

namespace pgod {

struct ListenAddress {
  std::string host;  // empty: all addresses; IPv6 without brackets
  std::uint16_t port = 0;
};

Expected<ListenAddress, std::string> parse_listen_address(std::string_view text);

// Binds and listens on a TCP address (close-on-exec, blocking); an empty host means every
// address (IPv6 and IPv4 when the host has IPv6). `flag` names the address's origin in errors
// ("-s/--ssh"). pgod binds the gateway's listeners with it (so a port below 1024 needs no
// privilege in the gateway), and the gateway when it runs on its own.
Expected<UniqueFd, std::string> bind_listen_address(const ListenAddress& address, const std::string& flag);

}  // namespace pgod
