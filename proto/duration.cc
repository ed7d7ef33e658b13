#include "duration.h"

#include <cstdint>
#include <limits>

namespace pgod {
namespace {

struct Unit {
  std::string_view name;
  std::int64_t nanoseconds;
};

// Longer names first where one is a prefix of another ("ms" before "m").
constexpr Unit kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // U+00B5 micro sign
    {"\xCE\xBCs", 1'000},  // U+03BC Greek small mu
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

Expected<std::chrono::nanoseconds, std::string> parse_duration(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  std::string_view rest = text;
  bool negative = false;
  if (!rest.empty() && (rest.front() == '-' || rest.front() == '+')) {
    negative = rest.front() == '-';
    rest.remove_prefix(1);
  }
  if (rest == "0") return std::chrono::nanoseconds(0);
  if (rest.empty()) return Unexpected{"invalid duration " + quoted + ": empty"};

  // Accumulate in unsigned 64 bits and check against the signed limit, as Go does.
  constexpr std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t total = 0;
  while (!rest.empty()) {
    std::uint64_t whole = 0;
    std::size_t whole_digits = 0;
    while (!rest.empty() && is_digit(rest.front())) {
      if (whole > (limit - (rest.front() - '0')) / 10) return Unexpected{"invalid duration " + quoted + ": too large"};
      whole = whole * 10 + static_cast<std::uint64_t>(rest.front() - '0');
      rest.remove_prefix(1);
      ++whole_digits;
    }
    std::uint64_t fraction = 0;
    std::uint64_t fraction_scale = 1;
    std::size_t fraction_digits = 0;
    if (!rest.empty() && rest.front() == '.') {
      rest.remove_prefix(1);
      while (!rest.empty() && is_digit(rest.front())) {
        // Digits beyond what 64 bits hold cannot change the result by a nanosecond: drop them.
        if (fraction_scale <= limit / 10) {
          fraction = fraction * 10 + static_cast<std::uint64_t>(rest.front() - '0');
          fraction_scale *= 10;
        }
        rest.remove_prefix(1);
        ++fraction_digits;
      }
    }
    if (whole_digits == 0 && fraction_digits == 0)
      return Unexpected{"invalid duration " + quoted + ": expected a number"};

    const Unit* unit = nullptr;
    for (const auto& candidate : kUnits) {
      if (rest.starts_with(candidate.name) && (unit == nullptr || candidate.name.size() > unit->name.size()))
        unit = &candidate;
    }
    if (unit == nullptr) {
      if (rest.empty()) return Unexpected{"missing unit in duration " + quoted + " (use ns, us, ms, s, m or h)"};
      return Unexpected{"unknown unit in duration " + quoted + " (use ns, us, ms, s, m or h)"};
    }
    rest.remove_prefix(unit->name.size());

    const auto scale = static_cast<std::uint64_t>(unit->nanoseconds);
    if (whole > limit / scale) return Unexpected{"invalid duration " + quoted + ": too large"};
    std::uint64_t value = whole * scale;
    if (fraction > 0) {
      // fraction/fraction_scale of one unit, computed without overflowing.
      const long double part = static_cast<long double>(fraction) *
                               (static_cast<long double>(scale) / static_cast<long double>(fraction_scale));
      value += static_cast<std::uint64_t>(part);
      if (value > limit) return Unexpected{"invalid duration " + quoted + ": too large"};
    }
    if (total > limit - value) return Unexpected{"invalid duration " + quoted + ": too large"};
    total += value;
  }
  const auto signed_total = static_cast<std::int64_t>(total);
  return std::chrono::nanoseconds(negative ? -signed_total : signed_total);
}

namespace {

// Appends value/10^digits with trailing zeros (and a bare point) removed.
void append_fraction(std::string& out, std::uint64_t value, int digits) {
  std::uint64_t scale = 1;
  for (int i = 0; i < digits; ++i) scale *= 10;
  out += std::to_string(value / scale);
  std::uint64_t rest = value % scale;
  if (rest == 0) return;
  std::string fraction = std::to_string(rest);
  fraction.insert(0, static_cast<std::size_t>(digits) - fraction.size(), '0');
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  out += '.';
  out += fraction;
}

}  // namespace

std::string format_duration(std::chrono::nanoseconds duration) {
  const std::int64_t count = duration.count();
  if (count == 0) return "0s";
  std::string out;
  // Negate in unsigned arithmetic so INT64_MIN does not overflow.
  std::uint64_t magnitude = static_cast<std::uint64_t>(count);
  if (count < 0) {
    out += '-';
    magnitude = ~magnitude + 1;
  }
  if (magnitude < 1'000'000'000) {
    if (magnitude < 1'000) {
      out += std::to_string(magnitude) + "ns";
    } else if (magnitude < 1'000'000) {
      append_fraction(out, magnitude, 3);
      out += "\xC2\xB5s";
    } else {
      append_fraction(out, magnitude, 6);
      out += "ms";
    }
    return out;
  }
  const std::uint64_t hours = magnitude / 3'600'000'000'000ULL;
  magnitude %= 3'600'000'000'000ULL;
  const std::uint64_t minutes = magnitude / 60'000'000'000ULL;
  magnitude %= 60'000'000'000ULL;
  if (hours > 0) out += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  append_fraction(out, magnitude, 9);
  out += 's';
  return out;
}

}  // namespace pgod
