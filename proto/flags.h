// Command-line flags the way Go's pflag reads them, since pgod's flags come from the Go
// original: "-c FILE", "-cFILE", "--config FILE", "--config=FILE", booleans as "--debug" or
// "--restart=false", durations as "5m0s", and "--" ending the flags.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "expected.h"

namespace pgod {

struct DurationRange {
  std::chrono::nanoseconds min;
  std::chrono::nanoseconds max;
};

class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  // short_name 0: long form only. The target holds the default and receives the value.
  void add_string(char short_name, std::string long_name, std::string* target, std::string help,
                  std::string value_name = "string");
  void add_bool(char short_name, std::string long_name, bool* target, std::string help);
  void add_duration(char short_name, std::string long_name, std::chrono::nanoseconds* target, std::string help);
  // A duration that must lie within [range.min, range.max].
  void add_duration(char short_name, std::string long_name, std::chrono::nanoseconds* target, std::string help,
                    DurationRange range);
  // A positive whole number.
  void add_count(char short_name, std::string long_name, std::size_t* target, std::string help,
                 std::string value_name = "n");

  // Everything from the first positional argument on is positional, flags included (pflag's
  // SetInterspersed(false)): `pgoctl host:web//logs -f` passes -f to the command, as ssh does.
  void stop_at_first_positional() { stop_at_first_positional_ = true; }

  // Parses args (argv without the program name); returns the positional arguments, or an error
  // naming the flag and what it expects.
  Expected<std::vector<std::string>, std::string> parse(const std::vector<std::string>& args);

  // "Usage: …" plus one line per flag with its default, in the order added.
  std::string usage(std::string_view synopsis) const;

 private:
  struct Flag {
    char short_name;
    std::string long_name;
    std::variant<std::string*, bool*, std::chrono::nanoseconds*, std::size_t*> target;
    std::string help;
    std::string value_name;
    std::string default_text;
    std::optional<DurationRange> range;  // durations only
  };

  const Flag* find_long(std::string_view name) const;
  const Flag* find_short(char name) const;
  static std::string display_name(const Flag& flag);
  static Expected<Done, std::string> assign(const Flag& flag, std::string_view value);

  std::string program_;
  std::vector<Flag> flags_;
  bool stop_at_first_positional_ = false;
};

// pgflag's accepted spellings of a boolean.
Expected<bool, std::string> parse_bool(std::string_view text);

}  // namespace pgod
