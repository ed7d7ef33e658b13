// pgoctl's exit-status mapping: what a script sees for each remote status.
#include <gtest/gtest.h>

#include "client.h"

namespace pgod::ctl {
namespace {

TEST(RemoteExit, CommandCodesPassThroughWithoutANote) {
  for (std::uint32_t status : {0u, 1u, 3u, 42u, 144u, 255u}) {
    const auto result = remote_exit(status);
    EXPECT_EQ(result.code, static_cast<int>(status));
    EXPECT_EQ(result.note, "") << status;
  }
}

TEST(RemoteExit, PgodCodesWrapLikeSshAndAreNamed) {
  struct Case {
    std::uint32_t status;
    int code;
    const char* note;
  };
  for (const auto& c :
       {Case{400, 144, "remote exit status 400 (Bad Request)"}, Case{401, 145, "remote exit status 401 (Unauthorized)"},
        Case{404, 148, "remote exit status 404 (Not Found)"}, Case{406, 150, "remote exit status 406 (Not Acceptable)"},
        Case{500, 244, "remote exit status 500 (Internal Server Error)"}}) {
    const auto result = remote_exit(c.status);
    EXPECT_EQ(result.code, c.code) << c.status;
    EXPECT_EQ(result.note, c.note);
  }
}

TEST(RemoteExit, AWrappedZeroIsNeverSuccess) {
  EXPECT_EQ(remote_exit(256).code, 255);
  EXPECT_EQ(remote_exit(512).code, 255);
  EXPECT_EQ(remote_exit(256).note, "remote exit status 256 (Unknown Status)");
  // The largest uint32 (what libssh's int -1 casts back to) still maps and is named.
  EXPECT_EQ(remote_exit(4294967295u).code, 255);
  EXPECT_EQ(remote_exit(4294967295u).note, "remote exit status 4294967295 (Unknown Status)");
}

}  // namespace
}  // namespace pgod::ctl
