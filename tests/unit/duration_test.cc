#include "duration.h"

#include <gtest/gtest.h>

#include <limits>

namespace pgod {
namespace {

using std::chrono::nanoseconds;
using namespace std::chrono_literals;

struct GoodCase {
  std::string text;
  nanoseconds expected;
};

void PrintTo(const GoodCase& c, std::ostream* out) { *out << c.text; }

class DurationParses : public ::testing::TestWithParam<GoodCase> {};

TEST_P(DurationParses, AsGoDoes) {
  auto parsed = parse_duration(GetParam().text);
  ASSERT_TRUE(parsed.has_value()) << GetParam().text << ": " << parsed.error();
  EXPECT_EQ(parsed->count(), GetParam().expected.count()) << GetParam().text;
}

// Expected values from Go's time.ParseDuration.
INSTANTIATE_TEST_SUITE_P(
    Go, DurationParses,
    ::testing::Values(GoodCase{"0", 0ns}, GoodCase{"-0", 0ns}, GoodCase{"5m0s", 5min}, GoodCase{"5m", 5min},
                      GoodCase{"30s", 30s}, GoodCase{"1h", 1h}, GoodCase{"1h30m", 90min}, GoodCase{"1.5h", 90min},
                      GoodCase{"+2s", 2s}, GoodCase{"-1.5s", -1500ms}, GoodCase{"300ms", 300ms}, GoodCase{"10us", 10us},
                      GoodCase{"10\xC2\xB5s", 10us}, GoodCase{"10\xCE\xBCs", 10us}, GoodCase{"7ns", 7ns},
                      GoodCase{".5s", 500ms}, GoodCase{"1.s", 1s},
                      GoodCase{"1h2m3s4ms5us6ns", 1h + 2min + 3s + 4ms + 5us + 6ns}, GoodCase{"0.000000001s", 1ns},
                      GoodCase{"2562047h47m16.854775807s", nanoseconds(std::numeric_limits<std::int64_t>::max())},
                      GoodCase{"1.0000000000000000000001s", 1s}));

class DurationRejects : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(DurationRejects, WithReason) {
  auto parsed = parse_duration(GetParam().first);
  ASSERT_FALSE(parsed.has_value()) << GetParam().first;
  EXPECT_NE(parsed.error().find(GetParam().second), std::string::npos) << parsed.error();
  EXPECT_NE(parsed.error().find("\"" + GetParam().first + "\""), std::string::npos) << "names the input";
}

INSTANTIATE_TEST_SUITE_P(Go, DurationRejects,
                         ::testing::Values(std::pair<std::string, std::string>{"", "empty"},
                                           std::pair<std::string, std::string>{"-", "empty"},
                                           std::pair<std::string, std::string>{"5", "missing unit"},
                                           std::pair<std::string, std::string>{"5x", "unknown unit"},
                                           std::pair<std::string, std::string>{"5 m", "unknown unit"},
                                           std::pair<std::string, std::string>{"m", "expected a number"},
                                           std::pair<std::string, std::string>{".s", "expected a number"},
                                           std::pair<std::string, std::string>{"1d", "unknown unit"},
                                           std::pair<std::string, std::string>{"3000000h", "too large"},
                                           std::pair<std::string, std::string>{"9223372036854775808ns", "too large"},
                                           std::pair<std::string, std::string>{"2562047h47m16.854775808s",
                                                                               "too large"}));

TEST(Duration, FormatsAsGoDoes) {
  EXPECT_EQ(format_duration(0ns), "0s");
  EXPECT_EQ(format_duration(5min), "5m0s");
  EXPECT_EQ(format_duration(1h), "1h0m0s");
  EXPECT_EQ(format_duration(90min), "1h30m0s");
  EXPECT_EQ(format_duration(30s), "30s");
  EXPECT_EQ(format_duration(1500ms), "1.5s");
  EXPECT_EQ(format_duration(300ms), "300ms");
  EXPECT_EQ(format_duration(1500us), "1.5ms");
  EXPECT_EQ(format_duration(10us), "10\xC2\xB5s");
  EXPECT_EQ(format_duration(7ns), "7ns");
  EXPECT_EQ(format_duration(-90s), "-1m30s");
  EXPECT_EQ(format_duration(1h + 1ns), "1h0m0.000000001s");
  EXPECT_EQ(format_duration(nanoseconds(std::numeric_limits<std::int64_t>::min())), "-2562047h47m16.854775808s");
}

TEST(Duration, FormatThenParseIsIdentity) {
  for (const nanoseconds d : {nanoseconds(1), nanoseconds(999), nanoseconds(1234567), nanoseconds(61'000'000'001),
                              nanoseconds(std::numeric_limits<std::int64_t>::max())}) {
    auto parsed = parse_duration(format_duration(d));
    ASSERT_TRUE(parsed.has_value()) << format_duration(d);
    EXPECT_EQ(parsed->count(), d.count()) << format_duration(d);
  }
}

}  // namespace
}  // namespace pgod
