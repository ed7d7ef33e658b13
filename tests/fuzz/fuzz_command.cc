// The command grammar (proto/command_grammar): an SSH exec line from anyone holding a key.
// Any bytes parse or are refused with a 4xx; what parses survives a round trip through
// command_line(); quote_words() and split_words() are inverses.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "command_grammar.h"
#include "fuzz_check.h"
#include "service_name.h"
#include "status.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  auto words = pgod::split_words(line);
  if (words) {
    auto again = pgod::split_words(pgod::quote_words(*words));
    FUZZ_CHECK(again && *again == *words, "split_words(quote_words(w)) != w");
  }
  auto parsed = pgod::parse_command_line(line);
  if (!parsed) {
    const auto code = static_cast<int>(parsed.error().status);
    FUZZ_CHECK(code >= 400 && code < 500, "a refused line is not a 4xx");
    FUZZ_CHECK(!parsed.error().message.empty(), "a refusal without a message");
    return 0;
  }
  FUZZ_CHECK(pgod::is_valid_service_name(parsed->service), "an accepted service name is invalid");
  auto round_trip = pgod::parse_command_line(pgod::command_line(*parsed));
  FUZZ_CHECK(round_trip.has_value(), "command_line() of an accepted command does not parse");
  FUZZ_CHECK(
      round_trip->service == parsed->service && round_trip->verb == parsed->verb && round_trip->args == parsed->args,
      "command_line() does not round-trip");
  return 0;
}
