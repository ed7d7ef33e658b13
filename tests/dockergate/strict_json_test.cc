// parse_strict_json: bodies Go's encoding/json would read differently from the judge (duplicate
// keys, which Go resolves to the last; keys equal under Go's case folding) are refused, and the
// error names the key's path.
#include "strict_json.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pgod::dockergate {
namespace {

::testing::AssertionResult refused(std::string_view text, std::string_view words, int max_depth = 32) {
  auto parsed = parse_strict_json(text, max_depth);
  if (parsed) return ::testing::AssertionFailure() << "accepted: " << parsed->dump();
  if (parsed.error().find(words) == std::string::npos)
    return ::testing::AssertionFailure() << "error \"" << parsed.error() << "\" does not say \"" << words << "\"";
  return ::testing::AssertionSuccess();
}

TEST(StrictJson, ParsesAContainerCreateBody) {
  const std::string text = R"({
    "Image": "nginx:1.25",
    "Env": ["A=1", "B=\u00e9"],
    "Labels": {"com.docker.compose.project": "app"},
    "HostConfig": {"Binds": ["/srv/app/data:/data:rw"], "Memory": 536870912, "CpuShares": -1, "NanoCpus": 1.5,
                   "Privileged": false, "RestartPolicy": {"Name": "always"}, "LogConfig": null},
    "NetworkingConfig": {"EndpointsConfig": {"app_default": {"Aliases": ["web"]}}}
  })";
  auto parsed = parse_strict_json(text);
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  const Json& body = *parsed;
  EXPECT_EQ(body["Image"], "nginx:1.25");
  EXPECT_EQ(body["Env"][1], "B=\xc3\xa9");
  EXPECT_EQ(body["HostConfig"]["Memory"], 536870912);
  EXPECT_EQ(body["HostConfig"]["CpuShares"], -1);
  EXPECT_DOUBLE_EQ(body["HostConfig"]["NanoCpus"].get<double>(), 1.5);
  EXPECT_EQ(body["HostConfig"]["Privileged"], false);
  EXPECT_TRUE(body["HostConfig"]["LogConfig"].is_null());
  EXPECT_EQ(body["NetworkingConfig"]["EndpointsConfig"]["app_default"]["Aliases"][0], "web");
}

TEST(StrictJson, ParsesScalarsAtTheTop) {
  EXPECT_EQ(*parse_strict_json("  true \n"), true);
  EXPECT_EQ(*parse_strict_json("\"x\""), "x");
  EXPECT_EQ(*parse_strict_json("[]"), Json::array());
  EXPECT_EQ(*parse_strict_json("{}"), Json::object());
}

TEST(StrictJson, SameKeyInSeparateObjectsIsFine) {
  auto parsed = parse_strict_json(R"({"a": {"Name": 1}, "b": {"Name": 2}, "c": [{"Name": 3}, {"Name": 4}]})");
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  EXPECT_EQ((*parsed)["c"][1]["Name"], 4);
}

TEST(StrictJson, DuplicateKeyAtTheTop) {
  EXPECT_TRUE(refused(R"({"Image": "alpine", "Image": "evil"})", "Image: the key appears twice"));
}

TEST(StrictJson, DuplicateKeyNested) {
  EXPECT_TRUE(refused(R"({"HostConfig": {"Privileged": false, "Privileged": true}})",
                      "HostConfig.Privileged: the key appears twice"));
}

TEST(StrictJson, DuplicateKeyInsideAnArray) {
  EXPECT_TRUE(refused(R"({"Mounts": [{"Type": "volume"}, {"Type": "volume", "Type": "bind"}]})",
                      "Mounts[1].Type: the key appears twice"));
}

TEST(StrictJson, DuplicateKeySpelledWithAnEscape) {
  EXPECT_TRUE(refused(R"({"Privileged": false, "Privil\u0065ged": true})", "Privileged: the key appears twice"));
}

TEST(StrictJson, KeysDifferingOnlyInCase) {
  EXPECT_TRUE(refused(R"({"HostConfig": {"Privileged": false, "privileged": true}})",
                      "HostConfig.privileged: differs from \"Privileged\" only in case"));
}

TEST(StrictJson, KeysDifferingOnlyInCaseAtTheTop) {
  EXPECT_TRUE(refused(R"({"image": "alpine", "IMAGE": "evil"})", "IMAGE: differs from \"image\" only in case"));
}

// Go's case folding also maps U+017F (long s) to 's' and U+212A (Kelvin sign) to 'k'.
TEST(StrictJson, KeyWithLongS) {
  EXPECT_TRUE(refused("{\"HostConfig\": {\"Binds\": [], \"Bind\xc5\xbf\": [\"/:/host\"]}}",
                      "HostConfig.Bind\xc5\xbf: differs from \"Binds\" only in case"));
}

TEST(StrictJson, KeyWithKelvinSign) {
  EXPECT_TRUE(refused(R"({"KernelMemory": 1, "\u212aernelMemory": 2})", "only in case"));
}

TEST(StrictJson, DeepNestingRefused) {
  EXPECT_TRUE(refused("[[[[1]]]]", "[0][0][0]: nesting deeper than 3 levels", 3));
  EXPECT_TRUE(refused(R"({"a": {"b": {"c": {}}}})", "a.b.c: nesting deeper than 3 levels", 3));
  EXPECT_TRUE(parse_strict_json("[[[1]]]", 3).has_value());
}

TEST(StrictJson, DefaultDepthIs32) {
  const std::string deep32 = std::string(32, '[') + std::string(32, ']');
  const std::string deep33 = std::string(33, '[') + std::string(33, ']');
  EXPECT_TRUE(parse_strict_json(deep32).has_value());
  EXPECT_TRUE(refused(deep33, "nesting deeper than 32 levels"));
}

TEST(StrictJson, VeryDeepNestingDoesNotExhaustTheStack) {
  EXPECT_TRUE(refused(std::string(1000000, '['), "nesting deeper than 32 levels"));
}

TEST(StrictJson, InvalidJson) {
  EXPECT_TRUE(refused("", "JSON"));
  EXPECT_TRUE(refused("{", "JSON"));
  EXPECT_TRUE(refused(R"({"a":})", "a (byte"));
  EXPECT_TRUE(refused("tru", "JSON"));
  EXPECT_TRUE(refused("{'a': 1}", "JSON"));
  EXPECT_TRUE(refused(R"({"a": 1,})", "JSON"));
  EXPECT_TRUE(refused("[1, 2,]", "JSON"));
  EXPECT_TRUE(refused("NaN", "JSON"));
  EXPECT_TRUE(refused(R"({"a": Infinity})", "JSON"));
  EXPECT_TRUE(refused("01", "JSON"));
}

TEST(StrictJson, CommentsRefused) {
  EXPECT_TRUE(refused("// x\n{}", "JSON"));
  EXPECT_TRUE(refused("{/* x */}", "JSON"));
}

TEST(StrictJson, TrailingData) {
  EXPECT_TRUE(refused("{} {}", "JSON"));
  EXPECT_TRUE(refused("{}x", "JSON"));
  EXPECT_TRUE(parse_strict_json("{} \r\n\t").has_value());
}

// nlohmann's lexer stops at a NUL byte as if the input ended there.
TEST(StrictJson, NulByteDoesNotEndTheInput) {
  EXPECT_TRUE(refused(std::string("{}\0", 3), "a NUL byte at byte 2"));
  EXPECT_TRUE(refused(std::string("{\"Privileged\":false}\0{\"Privileged\":true}", 41), "a NUL byte at byte 20"));
  EXPECT_TRUE(refused(std::string("\"a\0b\"", 5), "a NUL byte at byte 2"));
}

TEST(StrictJson, InvalidUtf8) {
  EXPECT_TRUE(refused("\"\xff\"", "JSON"));
  EXPECT_TRUE(refused("\"\xc0\xaf\"", "JSON"));      // overlong '/'
  EXPECT_TRUE(refused("\"\xed\xa0\x80\"", "JSON"));  // a surrogate, encoded
  EXPECT_TRUE(refused("{\"a\xff\": 1}", "JSON"));
}

TEST(StrictJson, LoneSurrogateEscape) {
  EXPECT_TRUE(refused(R"("\ud800")", "JSON"));
  EXPECT_TRUE(refused(R"("\udc00x")", "JSON"));
}

TEST(StrictJson, RawControlCharacterInAString) { EXPECT_TRUE(refused("\"a\tb\"", "JSON")); }

TEST(StrictJson, ByteOrderMark) { EXPECT_TRUE(refused("\xef\xbb\xbf{}", "byte order mark")); }

TEST(StrictJson, NumberOutOfRange) { EXPECT_TRUE(refused(R"({"Memory": 1e400})", "Memory")); }

TEST(StrictJson, HostileKeyIsEscapedInTheError) {
  auto parsed = parse_strict_json(R"({"\u001b[31m": 1, "\u001b[31m": 2})");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().find('\x1b'), std::string::npos) << parsed.error();
  EXPECT_NE(parsed.error().find("\\x1b[31m"), std::string::npos) << parsed.error();
}

}  // namespace
}  // namespace pgod::dockergate
