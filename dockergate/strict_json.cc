#include "strict_json.h"

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "command_grammar.h"

namespace pgod::dockergate {
namespace {

// A key as Go's encoding/json matches it against a field name: ASCII letters without case, and
// the two non-ASCII letters Go's case folding maps onto ASCII ones (U+017F long s is 's', U+212A
// Kelvin sign is 'k'), so "Bindſ" is caught as a second spelling of "Binds".
std::string folded(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (std::size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    if (key.substr(i, 2) == "\xc5\xbf") {  // U+017F
      out += 's';
      ++i;
    } else if (key.substr(i, 3) == "\xe2\x84\xaa") {  // U+212A
      out += 'k';
      i += 2;
    } else {
      out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  return out;
}

// A key in an error message: escaped, and cut short.
std::string shown_key(std::string_view key) {
  constexpr std::size_t kMax = 64;
  if (key.size() <= kMax) return printable(key);
  return printable(key.substr(0, kMax)) + "…";
}

// Builds the value as nlohmann's own DOM builder would, and refuses as it goes: it sees every key
// of an object before the object is complete, which a finished json object cannot show (it has
// kept one of two duplicates).
class StrictBuilder final : public nlohmann::json_sax<Json> {
 public:
  explicit StrictBuilder(int max_depth) : max_depth_(max_depth) {}

  bool null() override { return scalar(Json(nullptr)); }
  bool boolean(bool value) override { return scalar(Json(value)); }
  bool number_integer(number_integer_t value) override { return scalar(Json(value)); }
  bool number_unsigned(number_unsigned_t value) override { return scalar(Json(value)); }
  bool number_float(number_float_t value, const string_t&) override { return scalar(Json(value)); }
  bool string(string_t& value) override { return scalar(Json(std::move(value))); }
  bool binary(binary_t&) override { return refuse("binary values are not JSON"); }

  bool start_object(std::size_t) override { return open(Json::object()); }
  bool start_array(std::size_t) override { return open(Json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& key) override {
    Frame& frame = frames_.back();
    const auto [seen, inserted] = frame.folded_keys.emplace(folded(key), key);
    if (!inserted) {
      frame.key = key;
      if (seen->second == key) return refuse("the key appears twice in one object");
      return refuse(
          fmt::format("differs from \"{}\" only in case (Go reads both as one field)", shown_key(seen->second)));
    }
    frame.key = key;
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) override {
    if (error_.empty()) error_ = fmt::format("{} (byte {}): {}", path(), position, printable(error.what()));
    return false;
  }

  const std::string& error() const { return error_; }
  Json take() { return std::move(root_); }

 private:
  struct Frame {
    Json* value;
    std::string key;                                 // the key being read, in an object
    std::map<std::string, std::string> folded_keys;  // folded key -> the key as written
  };

  // Where the value being read sits: "HostConfig.Binds[1]", or "the top level".
  std::string path() const {
    std::string out;
    for (const Frame& frame : frames_) {
      if (frame.value->is_object()) {
        if (frame.key.empty() && frame.folded_keys.empty()) break;
        if (!out.empty()) out += '.';
        out += shown_key(frame.key);
      } else {
        // The element being read is the last one pushed, or the next one.
        out += fmt::format("[{}]", frame.value->empty() ? 0 : frame.value->size() - 1);
      }
    }
    return out.empty() ? std::string("the top level") : out;
  }

  bool refuse(std::string what) {
    error_ = fmt::format("{}: {}", path(), what);
    return false;
  }

  bool scalar(Json&& value) {
    put(std::move(value));
    return true;
  }

  // Places a value where the parser is: the root, the next array element, or the current key.
  Json* put(Json&& value) {
    if (frames_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    Frame& frame = frames_.back();
    if (frame.value->is_array()) {
      frame.value->push_back(std::move(value));
      return &frame.value->back();
    }
    Json& slot = (*frame.value)[frame.key];
    slot = std::move(value);
    return &slot;
  }

  bool open(Json&& container) {
    if (static_cast<int>(frames_.size()) >= max_depth_) {
      put(std::move(container));  // so that the path names it
      return refuse(fmt::format("nesting deeper than {} levels", max_depth_));
    }
    Json* placed = put(std::move(container));
    frames_.push_back(Frame{placed, {}, {}});
    return true;
  }

  bool close() {
    frames_.pop_back();
    return true;
  }

  const int max_depth_;
  Json root_;
  std::vector<Frame> frames_;
  std::string error_;
};

}  // namespace

Expected<Json, std::string> parse_strict_json(std::string_view text, int max_depth) {
  // RFC 8259 forbids a byte order mark and Go's decoder refuses one; nlohmann skips it.
  if (text.starts_with("\xef\xbb\xbf")) return Unexpected(std::string("JSON: a byte order mark is refused"));
  // nlohmann's lexer takes a NUL byte for the end of the input, so "{}\0{...}" would parse as {}.
  // JSON has no place for a raw NUL (in a string it must be escaped).
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos)
    return Unexpected(fmt::format("JSON: a NUL byte at byte {}", nul));
  StrictBuilder builder(max_depth);
  // strict: nothing but blanks may follow the value.
  bool parsed = false;
  try {
    parsed = Json::sax_parse(text, &builder, Json::input_format_t::json, true);
  } catch (const Json::exception& error) {  // the SAX parser reports through parse_error; this is a backstop
    return Unexpected(fmt::format("JSON: {}", printable(error.what())));
  }
  if (!parsed || !builder.error().empty())
    return Unexpected("JSON: " + (builder.error().empty() ? std::string("not valid") : builder.error()));
  return builder.take();
}

}  // namespace pgod::dockergate
