// Item 7: who may talk to a worker's socket and to the supervisor's, with pgod running as root
// and two services (a, b) run by their test users. Each connection attempt is made by a forked
// child that has become someone else (uid, gid and supplementary groups); the child hands the
// connected fd back over SCM_RIGHTS, so the parent (root) speaks Cap'n Proto on a connection
// whose peer credentials are the child's. Two layers are checked apart: the file modes
// (connect fails with EACCES for anyone outside the socket's group) and the SO_PEERCRED check
// in the server (a member of the socket's group with another uid is connected by the kernel,
// then dropped unanswered, whoever holds the fd afterwards).
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "confine.h"
#include "pgod_harness.h"
#include "rpc_peers.h"

namespace pgod::isolation {
namespace {

using test::PgodHarness;

struct Who {
  std::string what;
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

// An account-less uid: nothing on the host is configured for it.
constexpr uid_t kStranger = 59999;
constexpr uid_t kNobody = 65534;

// connect(2) as `who`, in a child; the outcome, and the connected fd when it is "ok".
Connected connect_as(const Who& who, const std::string& path) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return {"socketpair failed", UniqueFd()};
  UniqueFd mine(pair[0]), theirs(pair[1]);
  const pid_t pid = fork();
  if (pid < 0) return {"fork failed", UniqueFd()};
  if (pid == 0) {
    alarm(30);
    std::string outcome;
    UniqueFd connected;
    if (setgroups(who.groups.size(), who.groups.data()) != 0 || setresgid(who.gid, who.gid, who.gid) != 0 ||
        setresuid(who.uid, who.uid, who.uid) != 0) {
      outcome = std::string("drop failed: ") + strerrorname_np(errno);
    } else {
      auto result = connect_unix(path);
      outcome = result.outcome;
      connected = std::move(result.fd);
    }
    // The outcome as data; the fd, if any, as SCM_RIGHTS beside it.
    iovec data{outcome.data(), outcome.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    if (connected) {
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      const int fd = connected.get();
      std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
    }
    _exit(sendmsg(theirs.get(), &message, 0) < 0 ? 1 : 0);
  }
  theirs.reset();
  char text[256] = {};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec data{text, sizeof text - 1};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(mine.get(), &message, MSG_CMSG_CLOEXEC);
  int status = 0;
  waitpid(pid, &status, 0);
  if (n <= 0) return {"the child reported nothing", UniqueFd()};
  Connected result{std::string(text, static_cast<std::size_t>(n)), UniqueFd()};
  if (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr && header->cmsg_type == SCM_RIGHTS) {
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
    result.fd.reset(fd);
  }
  return result;
}

Who as_worker_of(const test::TestUser& user, const std::string& what) {
  std::string note;
  auto identity = supervisor::lookup_user(user.name, true, &note);
  if (!identity) throw std::runtime_error(identity.error());
  return {what, identity->uid, identity->gid, identity->groups};
}

enum class Socket { kWorker, kSupervisor };

class SocketPeersTest : public ::testing::TestWithParam<Socket> {
 protected:
  void SetUp() override {
    pgod.write_config(PgodHarness::service_toml("a", test::service_user_a().name, pgod.upstream("a").path()) +
                      PgodHarness::service_toml("b", test::service_user_b().name, pgod.upstream("b").path()));
    pgod.start();
    ASSERT_TRUE(pgod.wait_ready({"a", "b"})) << pgod.log();
    worker_a = pgod.worker_pid("a");
    worker_b = pgod.worker_pid("b");
  }

  std::string path() const {
    return GetParam() == Socket::kWorker ? pgod.rundir() + "/workers/a.sock" : pgod.rundir() + "/supervisor.sock";
  }
  std::string what() const { return GetParam() == Socket::kWorker ? "worker socket" : "supervisor socket"; }

  // A well-behaved call on `connected`, and the answer it must get.
  std::string answer(UniqueFd connected) {
    return GetParam() == Socket::kWorker ? worker_status(std::move(connected))
                                         : supervisor_services(std::move(connected));
  }
  std::string correct_answer() {
    return GetParam() == Socket::kWorker
               ? "state=ok hash=" + pgod.upstream("a").head()
               : "a:running:" + std::to_string(worker_a) + " b:running:" + std::to_string(worker_b);
  }

  void expect_nothing_restarted() {
    EXPECT_EQ(pgod.worker_pid("a"), worker_a);
    EXPECT_EQ(pgod.worker_pid("b"), worker_b);
    EXPECT_EQ(pgod.worker("a")->restarts, 0u);
  }

  Who gateway() const {
    // As the gateway runs: its uid and gid, no other group.
    return {"the gateway's user", test::gateway_user().uid, test::gateway_user().gid, {}};
  }

  PgodHarness pgod;
  pid_t worker_a = 0, worker_b = 0;
};

TEST_P(SocketPeersTest, OtherUidsCannotConnectWhileTheGatewaysUidIsServed) {
  const std::vector<Who> refused = {
      as_worker_of(test::service_user_b(), "service b's user, with its groups and docker"),
      as_worker_of(test::service_user_a(), "service a's own user, with its groups and docker"),
      {"an account-less uid", kStranger, kStranger, {}},
      {"nobody", kNobody, kNobody, {}},
  };
  for (const auto& who : refused) {
    auto connected = connect_as(who, path());
    EXPECT_EQ(connected.outcome, "EACCES") << who.what << " connecting to the " << what();
  }

  // The positive control: the gateway's uid connects and gets the right answer.
  auto connected = connect_as(gateway(), path());
  ASSERT_EQ(connected.outcome, "ok") << "the gateway connecting to the " << what();
  EXPECT_EQ(answer(std::move(connected.fd)), correct_answer()) << "the gateway's connection is served";
  // And root, the only other peer allowed.
  EXPECT_EQ(answer(connect_unix(path()).fd), correct_answer()) << "root's connection is served";
  expect_nothing_restarted();
}

TEST_P(SocketPeersTest, AMemberOfTheSocketsGroupWithAnotherUidIsDroppedByThePeerCredentialCheck) {
  const gid_t socket_group = test::gateway_user().gid;
  const std::vector<Who> members = {
      {"service b's user, also in the gateway's group",
       test::service_user_b().uid,
       test::service_user_b().gid,
       {test::service_user_b().gid, test::docker_group(), socket_group}},
      {"an account-less uid in the gateway's group", kStranger, kStranger, {socket_group}},
  };
  for (const auto& who : members) {
    auto connected = connect_as(who, path());
    ASSERT_EQ(connected.outcome, "ok") << who.what << ": the file modes let a member of the group connect";
    // Root sends a proper bootstrap on the member's connection: the server judged the peer at
    // accept, by the credentials of whoever connected, and closes without a word.
    RawRpcPeer peer(std::move(connected.fd));
    capnp::MallocMessageBuilder bootstrap;
    bootstrap.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
    peer.send(bootstrap);
    const auto replies = peer.replies();
    EXPECT_EQ(replies, std::vector<std::string>{"closed"}) << who.what << ": " << joined(replies);
    const std::string refusal = what() + ": refused a connection from uid " + std::to_string(who.uid) +
                                " (only root and uid " + std::to_string(test::gateway_user().uid) + " may connect)";
    EXPECT_TRUE(PgodHarness::wait_for([&] { return pgod.log().find(refusal) != std::string::npos; }))
        << who.what << ": no \"" << refusal << "\" in\n"
        << pgod.log();
  }
  EXPECT_EQ(answer(connect_unix(path()).fd), correct_answer()) << "still serving";
  expect_nothing_restarted();
}

INSTANTIATE_TEST_SUITE_P(Sockets, SocketPeersTest, ::testing::Values(Socket::kWorker, Socket::kSupervisor),
                         [](const ::testing::TestParamInfo<Socket>& info) {
                           return std::string(info.param == Socket::kWorker ? "worker" : "supervisor");
                         });

}  // namespace
}  // namespace pgod::isolation
