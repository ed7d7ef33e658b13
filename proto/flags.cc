#include "flags.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "duration.h"

namespace pgod {
namespace {

// 8760h rather than Go's 8760h0m0s, in an error a person reads.
std::string brief_duration(std::chrono::nanoseconds duration) {
  std::string text = format_duration(duration);
  if (text.ends_with("h0m0s")) text.resize(text.size() - 4);
  if (text.ends_with("m0s")) text.resize(text.size() - 2);
  return text;
}

}  // namespace

void FlagSet::add_string(char short_name, std::string long_name, std::string* target, std::string help,
                         std::string value_name) {
  std::string default_text = target->empty() ? "" : fmt::format("\"{}\"", *target);
  flags_.push_back(
      {short_name, std::move(long_name), target, std::move(help), std::move(value_name), std::move(default_text), {}});
}

void FlagSet::add_bool(char short_name, std::string long_name, bool* target, std::string help) {
  flags_.push_back({short_name, std::move(long_name), target, std::move(help), "", *target ? "true" : "", {}});
}

void FlagSet::add_duration(char short_name, std::string long_name, std::chrono::nanoseconds* target, std::string help) {
  flags_.push_back(
      {short_name, std::move(long_name), target, std::move(help), "duration", format_duration(*target), {}});
}

void FlagSet::add_duration(char short_name, std::string long_name, std::chrono::nanoseconds* target, std::string help,
                           DurationRange range) {
  add_duration(short_name, std::move(long_name), target, std::move(help));
  flags_.back().range = range;
}

void FlagSet::add_count(char short_name, std::string long_name, std::size_t* target, std::string help,
                        std::string value_name) {
  flags_.push_back(
      {short_name, std::move(long_name), target, std::move(help), std::move(value_name), std::to_string(*target), {}});
}

Expected<bool, std::string> parse_bool(std::string_view text) {
  for (std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"})
    if (text == yes) return true;
  for (std::string_view no : {"0", "f", "F", "FALSE", "false", "False"})
    if (text == no) return false;
  return Unexpected{fmt::format("\"{}\" is not a boolean (use true or false)", text)};
}

const FlagSet::Flag* FlagSet::find_long(std::string_view name) const {
  for (const auto& flag : flags_)
    if (flag.long_name == name) return &flag;
  return nullptr;
}

const FlagSet::Flag* FlagSet::find_short(char name) const {
  for (const auto& flag : flags_)
    if (flag.short_name != 0 && flag.short_name == name) return &flag;
  return nullptr;
}

std::string FlagSet::display_name(const Flag& flag) {
  if (flag.short_name != 0) return fmt::format("-{}, --{}", flag.short_name, flag.long_name);
  return "--" + flag.long_name;
}

Expected<Done, std::string> FlagSet::assign(const Flag& flag, std::string_view value) {
  const auto invalid = [&](std::string_view why) {
    return Unexpected{fmt::format("invalid value for {}: {}", display_name(flag), why)};
  };
  if (auto* text = std::get_if<std::string*>(&flag.target)) {
    **text = std::string(value);
  } else if (auto* boolean = std::get_if<bool*>(&flag.target)) {
    auto parsed = parse_bool(value);
    if (!parsed) return invalid(parsed.error());
    **boolean = *parsed;
  } else if (auto* count = std::get_if<std::size_t*>(&flag.target)) {
    std::size_t number = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
    if (error != std::errc() || end != value.data() + value.size() || number == 0)
      return invalid(fmt::format("\"{}\" is not a positive number", value));
    **count = number;
  } else {
    auto parsed = parse_duration(value);
    if (!parsed) return invalid(parsed.error());
    if (flag.range && (*parsed < flag.range->min || *parsed > flag.range->max))
      return invalid(fmt::format("\"{}\" is not a duration from {} to {}, like 30s", value,
                                 brief_duration(flag.range->min), brief_duration(flag.range->max)));
    *std::get<std::chrono::nanoseconds*>(flag.target) = *parsed;
  }
  return Done{};
}

Expected<std::vector<std::string>, std::string> FlagSet::parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      if (stop_at_first_positional_) {
        positional.insert(positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
        break;
      }
      positional.push_back(arg);
      continue;
    }

    const Flag* flag = nullptr;
    std::optional<std::string> inline_value;
    std::string spelled;
    if (arg.starts_with("--")) {
      const auto eq = arg.find('=');
      spelled = arg.substr(0, eq);
      flag = find_long(std::string_view(spelled).substr(2));
      if (eq != std::string::npos) inline_value = arg.substr(eq + 1);
    } else {
      spelled = arg.substr(0, 2);
      flag = find_short(arg[1]);
      if (arg.size() > 2) inline_value = arg[2] == '=' ? arg.substr(3) : arg.substr(2);
    }
    if (flag == nullptr) return Unexpected{fmt::format("unknown flag {} (see {} --help)", spelled, program_)};

    if (std::holds_alternative<bool*>(flag->target) && !inline_value) {
      *std::get<bool*>(flag->target) = true;
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size())
        return Unexpected{fmt::format("flag {} needs a {} value", display_name(*flag), flag->value_name)};
      inline_value = args[++i];
    }
    if (auto assigned = assign(*flag, *inline_value); !assigned) return Unexpected{assigned.error()};
  }
  return positional;
}

std::string FlagSet::usage(std::string_view synopsis) const {
  std::string out = fmt::format("Usage: {} {}\n\nOptions:\n", program_, synopsis);
  const auto left_of = [](const Flag& flag) {
    std::string left = (flag.short_name == 0 ? "      " : "  ") + display_name(flag);
    if (!flag.value_name.empty()) left += " " + flag.value_name;
    return left;
  };
  std::size_t width = 30;  // widened so the longest flag still leaves its help aligned
  for (const auto& flag : flags_) width = std::max(width, left_of(flag).size());
  for (const auto& flag : flags_) {
    std::string line = fmt::format("{:<{}} {}", left_of(flag), width, flag.help);
    if (!flag.default_text.empty()) line += fmt::format(" (default {})", flag.default_text);
    out += line + "\n";
  }
  return out;
}

}  // namespace pgod
