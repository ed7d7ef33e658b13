// drop_root as the gateway uses it, in forked children: root becomes a real test user (made with
// useradd for this program, removed at its end) with no way back; errors name the user and how
// to create it. Needs root for all but the unprivileged case.
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <thread>

#include "confined_child.h"
#include "confinement.h"
#include "process.h"

namespace pgod::gateway::test {
namespace {

constexpr uid_t kNobody = 65534;

bool running_as_root() { return geteuid() == 0; }

// Ids as one line: "uid 1/2/3 gid 4/5/6 groups 4" ("groups" only `with_groups`: getgroups is not
// on the gateway's allowlist).
std::string own_ids(bool with_groups = true) {
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  if (getresuid(&ruid, &euid, &suid) != 0) return "getresuid: " + outcome(-1);
  if (getresgid(&rgid, &egid, &sgid) != 0) return "getresgid: " + outcome(-1);
  std::string text = "uid " + std::to_string(ruid) + "/" + std::to_string(euid) + "/" + std::to_string(suid) + " gid " +
                     std::to_string(rgid) + "/" + std::to_string(egid) + "/" + std::to_string(sgid);
  if (!with_groups) return text;
  std::array<gid_t, 16> groups{};
  const int count = getgroups(static_cast<int>(groups.size()), groups.data());
  if (count < 0) return "getgroups: " + outcome(-1);
  text += " groups";
  for (int i = 0; i < count; ++i) text += " " + std::to_string(groups[i]);
  return text;
}

std::string ids_of(uid_t uid, gid_t gid, bool with_groups = true) {
  const auto u = std::to_string(uid), g = std::to_string(gid);
  return "uid " + u + "/" + u + "/" + u + " gid " + g + "/" + g + "/" + g + (with_groups ? " groups " + g : "");
}

class DropRootTest : public ::testing::Test {
 protected:
  // One user for the whole program, removed (with its group) when the tests end.
  static void SetUpTestSuite() {
    if (!running_as_root()) return;
    user_ = "pgt" + std::to_string(getpid() % 1000000) + "gw";
    const auto made = pgod::test::run_process({"/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir",
                                               "/nonexistent", "--shell", "/usr/sbin/nologin", user_});
    if (made.exit_code != 0) {
      setup_failure_ = "useradd " + user_ + ": " + made.err;
      user_.clear();
      return;
    }
    const passwd* entry = getpwnam(user_.c_str());
    if (entry == nullptr) {
      setup_failure_ = "useradd " + user_ + " made no user";
      return;
    }
    uid_ = entry->pw_uid;
    gid_ = entry->pw_gid;
  }
  static void TearDownTestSuite() {
    if (!user_.empty()) pgod::test::run_process({"/usr/sbin/userdel", user_});
    user_.clear();
  }
  void SetUp() override {
    if (!running_as_root()) GTEST_SKIP() << "needs root";
    ASSERT_TRUE(setup_failure_.empty()) << setup_failure_;
  }

  static inline std::string user_;
  static inline std::string setup_failure_;
  static inline uid_t uid_ = 0;
  static inline gid_t gid_ = 0;
};

TEST_F(DropRootTest, BecomesTheUserWithOnlyItsOwnGroup) {
  const std::string user = user_;
  EXPECT_EQ(run_child([&user] {
              const gid_t root_group = 0;  // a supplementary group the drop must take away
              if (setgroups(1, &root_group) != 0) return "setgroups: " + outcome(-1);
              auto dropped = drop_root(user);
              return dropped ? own_ids() : "drop_root: " + dropped.error();
            }),
            ids_of(uid_, gid_));
}

TEST_F(DropRootTest, RootCannotBeRegainedAndNoCapabilityIsLeft) {
  const std::string user = user_;
  EXPECT_EQ(run_child([&user] {
              if (auto dropped = drop_root(user); !dropped) return "drop_root: " + dropped.error();
              const std::string setuid_0 = outcome(setuid(0));
              const std::string setgid_0 = outcome(setgid(0));
              const std::string setresuid_0 = outcome(setresuid(0, 0, 0));
              __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
              std::array<__user_cap_data_struct, 2> caps{};
              if (syscall(SYS_capget, &header, caps.data()) != 0) return "capget: " + outcome(-1);
              const bool none =
                  caps[0].effective == 0 && caps[0].permitted == 0 && caps[1].effective == 0 && caps[1].permitted == 0;
              return setuid_0 + " " + setgid_0 + " " + setresuid_0 + (none ? " no capabilities" : " capabilities left");
            }),
            "EPERM EPERM EPERM no capabilities");
}

TEST_F(DropRootTest, AThreadThatAlreadyRanIsDroppedToo) {
  // glibc applies set*id to every thread; a thread left as root would undo the drop.
  const std::string user = user_;
  EXPECT_EQ(run_child([&user] {
              int fds[2];
              if (pipe(fds) != 0) return "pipe: " + outcome(-1);
              std::string seen;
              std::thread early([&seen, fd = fds[0]] {
                char byte = 0;
                while (read(fd, &byte, 1) < 0 && errno == EINTR) {
                }
                uid_t r = 0, e = 0, s = 0;
                seen = syscall(SYS_getresuid, &r, &e, &s) == 0
                           ? std::to_string(r) + "/" + std::to_string(e) + "/" + std::to_string(s)
                           : "getresuid: " + outcome(-1);
              });
              auto dropped = drop_root(user);
              const char byte = 'x';
              const bool told = write(fds[1], &byte, 1) == 1;
              early.join();
              if (!dropped) return "drop_root: " + dropped.error();
              return told ? seen : "write: " + outcome(-1);
            }),
            std::to_string(uid_) + "/" + std::to_string(uid_) + "/" + std::to_string(uid_));
}

TEST_F(DropRootTest, TheGatewayOrderDropThenFilterWorks) {
  // The gateway drops root first, then installs the filter (no_new_privs set by the latter).
  const std::string user = user_;
  EXPECT_EQ(run_child([&user] {
              if (auto dropped = drop_root(user); !dropped) return "drop_root: " + dropped.error();
              if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
              return own_ids(false);
            }),
            ids_of(uid_, gid_, false));
  EXPECT_EQ(run_child([&user] {
              if (auto dropped = drop_root(user); !dropped) return "drop_root: " + dropped.error();
              if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;
              return outcome(setuid(0));
            }),
            "killed by SIGSYS");
}

TEST_F(DropRootTest, AMissingUserIsNamedWithHowToCreateIt) {
  EXPECT_EQ(run_child([] {
              auto dropped = drop_root("pgod-no-such-user");
              if (dropped) return std::string("dropped");
              return dropped.error() + " | still " + (geteuid() == 0 ? "root" : "not root");
            }),
            "the gateway's user \"pgod-no-such-user\" does not exist (create it with `useradd --system "
            "--no-create-home --shell /usr/sbin/nologin pgod-no-such-user`) | still root");
}

TEST_F(DropRootTest, AUserWithUidZeroIsRefused) {
  EXPECT_EQ(run_child([] {
              auto dropped = drop_root("root");
              return dropped ? std::string("dropped") : dropped.error();
            }),
            "the gateway's user \"root\" has uid 0: refusing to run as root");
}

TEST_F(DropRootTest, AUserWhosePrimaryGroupIsRootIsRefused) {
  // The root group opens files root-group-readable; the gateway has no use for it.
  const std::string name = "pgt" + std::to_string(getpid() % 1000000) + "g0";
  const auto made = pgod::test::run_process({"/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir",
                                             "/nonexistent", "--shell", "/usr/sbin/nologin", "--gid", "0", name});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string said = run_child([&name] {
    auto dropped = drop_root(name);
    return dropped ? std::string("dropped") : dropped.error() + (geteuid() == 0 ? " | still root" : " | not root");
  });
  const auto removed = pgod::test::run_process({"/usr/sbin/userdel", name});
  EXPECT_EQ(said, "the gateway's user \"" + name + "\" has the root group (gid 0): refusing | still root");
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
}

// Not a fixture test: needs no user, and runs unprivileged.
TEST(DropRootUnprivilegedTest, DoesNothingWhenNotRoot) {
  EXPECT_EQ(run_child([] {
              if (geteuid() == 0) {
                if (setgroups(0, nullptr) != 0) return "setgroups: " + outcome(-1);
                if (setresgid(kNobody, kNobody, kNobody) != 0) return "setresgid: " + outcome(-1);
                if (setresuid(kNobody, kNobody, kNobody) != 0) return "setresuid: " + outcome(-1);
              }
              const std::string before = own_ids();
              auto dropped = drop_root("pgod-no-such-user");  // not even looked up
              if (!dropped) return "drop_root: " + dropped.error();
              return own_ids() == before ? std::string("unchanged") : "changed: " + before + " -> " + own_ids();
            }),
            "unchanged");
}

}  // namespace
}  // namespace pgod::gateway::test
