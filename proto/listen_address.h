// Listen addresses as Go writes them: ":2222" (every address), "127.0.0.1:2222",
// "[::1]:2222", "localhost:9112".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "expected.h"

namespace pgod {

struct ListenAddress {
  std::string host;  // empty: all addresses; IPv6 without brackets
  std::uint16_t port = 0;
};

Expected<ListenAddress, std::string> parse_listen_address(std::string_view text);

}  // namespace pgod
