// Fork-and-assert for the docker gate's confinement (dockergate/confinement.cc): each case runs
// in a forked child that becomes the gate's kind of user (its own uid and gid, and a supplementary
// group that owns the test's docker socket, as the docker group does), confines itself the gate's
// way as far as the case needs (private root, then no capabilities, then the filter), and reports
// one line through a pipe; the parent gets the line, or how the child died ("killed by SIGSYS").
//
// The tree lives under /tmp, the directory the private root's tmpfs shadows, so the sources must
// be reached through the descriptors taken before it. Needs root (to become another uid).
#include "confinement.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fd_passing.h"
#include "judge.h"
#include "unique_fd.h"

extern char** environ;

namespace pgod::dockergate {
namespace {

// The gate's stand-in identity: ids no real account uses, and a group that plays docker's part.
constexpr uid_t kGateUid = 64101;
constexpr gid_t kGateGid = 64101;
constexpr gid_t kDockerGid = 64102;

const std::string kKilledBySigsys = "killed by SIGSYS";

// A call's outcome as one word: "ok", or the errno's name ("EACCES"). Reads errno first.
std::string outcome(long rc) {
  const int error = errno;
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : "errno " + std::to_string(error);
}

void write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

struct ChildSetup {
  bool docker_group = true;              // the supplementary group that owns the socket
  std::function<std::string()> as_root;  // run before the identity change ("" = done)
};

// Empty when done, else what failed.
std::string become_gate_user(bool docker_group) {
  const gid_t groups[] = {kDockerGid};
  if (setgroups(docker_group ? 1 : 0, groups) != 0) return "setgroups: " + outcome(-1);
  if (setresgid(kGateGid, kGateGid, kGateGid) != 0) return "setresgid: " + outcome(-1);
  if (setresuid(kGateUid, kGateUid, kGateUid) != 0) return "setresuid: " + outcome(-1);
  // A uid change without exec leaves the process non-dumpable, which makes /proc/self root's and
  // the uid_map unwritable. The gate is exec'd as its user, so it is dumpable; so is this child.
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return "PR_SET_DUMPABLE: " + outcome(-1);
  return "";
}

// The child's side. Never returns, not even by an exception (into the child's copy of gtest):
// _exit only.
[[noreturn]] void child(const ChildSetup& setup, const std::function<std::string()>& body, int report) {
  alarm(30);                   // a hung call fails the test instead of hanging it
  const rlimit no_core{0, 0};  // SIGSYS would dump core
  setrlimit(RLIMIT_CORE, &no_core);
  std::string said;
  try {
    std::string failure = setup.as_root ? setup.as_root() : "";
    if (failure.empty()) failure = become_gate_user(setup.docker_group);
    said = failure.empty() ? body() : "set-up failed: " + failure;
  } catch (const std::exception& error) {
    said = std::string("threw: ") + error.what();
  } catch (...) {
    said = "threw";
  }
  write_all(report, said);
  _exit(0);
}

// Runs `body` in a forked child and returns what it reported, or how it ended when not with
// status 0.
std::string run_child(const std::function<std::string()>& body, const ChildSetup& setup = {}) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return "pipe2: " + outcome(-1);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) return "fork: " + outcome(-1);
  if (pid == 0) child(setup, body, write_end.get());
  write_end.reset();
  std::string report;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(read_end.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buffer, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return std::string("killed by SIG") + sigabbrev_np(WTERMSIG(status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "exit " + std::to_string(WEXITSTATUS(status)) + (report.empty() ? "" : ": " + report);
  return report;
}

// Every path under `dir`, depth first, without following links.
void list_tree(const std::string& dir, std::vector<std::string>& out) {
  DIR* stream = opendir(dir.c_str());
  if (stream == nullptr) {
    out.push_back("cannot list " + dir + ": " + outcome(-1));
    return;
  }
  while (const dirent* entry = readdir(stream)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = (dir == "/" ? "" : dir) + "/" + name;
    out.push_back(path);
    struct stat info {};
    if (lstat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) list_tree(path, out);
  }
  closedir(stream);
}

std::string joined(std::vector<std::string> lines) {
  std::sort(lines.begin(), lines.end());
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

class DockergateConfinement : public testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: each child becomes another uid with a docker-like group";
    std::string pattern = "/tmp/pgod-dockergate-confinement-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << outcome(-1);
    char* resolved = realpath(pattern.c_str(), nullptr);
    ASSERT_NE(resolved, nullptr);
    base_ = resolved;
    std::free(resolved);
    ASSERT_EQ(chmod(base_.c_str(), 0755), 0);  // the gate's user must walk to the sources
    namespace fs = std::filesystem;
    for (const char* dir : {"run", "srv/a/inner", "srv/b", "srv/c"}) fs::create_directories(base_ + "/" + dir);
    write_file("srv/a/file");
    write_file("srv/a/inner/x");
    write_file("srv/b/file");
    write_file("srv/c/secret");  // not a root: must not be seen
    write_file("secret");        // beside the roots: must not be seen
    fs::create_symlink("file", base_ + "/srv/a/link");
    fs::create_symlink("srv/b", base_ + "/link-to-b");
    // Writable by the gate's user, so that a refused write is the read-only mount's doing.
    for (const char* dir : {"srv/a", "srv/a/inner", "srv/b"})
      ASSERT_EQ(chown((base_ + "/" + dir).c_str(), kGateUid, kGateGid), 0);

    // The docker socket: root's, and only its group may connect, as dockerd's.
    socket_path_ = base_ + "/run/docker.sock";
    listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener_);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    ASSERT_LT(socket_path_.size(), sizeof address.sun_path);
    std::memcpy(address.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
    ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << outcome(-1);
    ASSERT_EQ(listen(listener_.get(), 16), 0);
    ASSERT_EQ(chown(socket_path_.c_str(), 0, kDockerGid), 0);
    ASSERT_EQ(chmod(socket_path_.c_str(), 0660), 0);

    roots_ = {
        base_ + "/srv/a",
        base_ + "/link-to-b",    // resolved to srv/b
        base_ + "/srv/b",        // the same again
        base_ + "/srv/a/inner",  // inside another root
        base_ + "/missing",      // skipped
    };
  }

  void TearDown() override {
    if (!base_.empty()) std::filesystem::remove_all(base_);
  }

  void write_file(const std::string& relative) {
    std::ofstream(base_ + "/" + relative) << relative << "\n";
    chmod((base_ + "/" + relative).c_str(), 0644);
  }

  // The gate's confinement in the child, as far as `steps` (1: private root, 2: no capabilities,
  // 3: the filter); "" when done, else what failed. The resolved socket goes to `socket`.
  std::string confine(int steps, std::string* socket = nullptr) const {
    auto resolved = enter_private_root(socket_path_, roots_);
    if (!resolved) return "enter_private_root: " + resolved.error();
    if (socket != nullptr) *socket = *resolved;
    if (steps >= 2) {
      if (auto dropped = drop_capabilities(); !dropped) return "drop_capabilities: " + dropped.error();
    }
    if (steps >= 3) {
      if (auto filtered = install_dockergate_filter(); !filtered)
        return "install_dockergate_filter: " + filtered.error();
    }
    return "";
  }

  // A call made by a fully confined child.
  std::string confined(const std::function<std::string()>& call) const {
    return run_child([&] {
      if (std::string failure = confine(3); !failure.empty()) return failure;
      return call();
    });
  }

  std::string base_;
  std::string socket_path_;
  std::vector<std::string> roots_;
  UniqueFd listener_;
};

std::string connect_to(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return "socket: " + outcome(-1);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), std::min(path.size() + 1, sizeof address.sun_path - 1));
  return outcome(connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address));
}

// Creating a file in `dir`: "ok" (then removed), or why not.
std::string create_in(const std::string& dir) {
  const std::string path = dir + "/created-by-test";
  const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  const std::string said = outcome(fd);
  if (fd >= 0) {
    close(fd);
    unlink(path.c_str());
  }
  return said;
}

// ---------------------------------------------------------------------------------------------
// The private root

TEST_F(DockergateConfinement, ShowsOnlyTheSocketAndTheRootsAtTheirPaths) {
  const std::string seen = run_child([&] {
    std::string socket;
    if (std::string failure = confine(2, &socket); !failure.empty()) return failure;
    std::vector<std::string> paths{"socket " + socket};
    list_tree("/", paths);
    return joined(paths);
  });
  std::vector<std::string> expected{"socket " + socket_path_};
  // The directories leading to the sources, created in the tmpfs.
  for (std::size_t slash = base_.find('/', 1); slash != std::string::npos; slash = base_.find('/', slash + 1))
    expected.push_back(base_.substr(0, slash));
  expected.push_back(base_);
  for (const char* path : {"link-to-b", "run", "run/docker.sock", "srv", "srv/a", "srv/a/file", "srv/a/link",
                           "srv/a/inner", "srv/a/inner/x", "srv/b", "srv/b/file"})
    expected.push_back(base_ + "/" + path);
  EXPECT_EQ(seen, joined(expected)) << "nothing but the socket, the roots and the link on the way to one (srv/c, "
                                       "secret and the old root hidden)";
}

// A root written through a symlink (link-to-b) leads inside the private root where it leads on
// the host, so the bind-source resolver sees the links a request's path crosses there: the one
// that leaves the root (escape -> /etc) is followed, and the judge sees /etc, not a path that
// merely starts with the root as written.
TEST_F(DockergateConfinement, ARootsPathAsWrittenLeadsWhereItDoesOnTheHost) {
  std::filesystem::create_symlink("/etc", base_ + "/srv/b/escape");
  EXPECT_EQ(confined([&] {
              const std::string through_link = base_ + "/link-to-b";
              std::string said;
              for (const std::string& path :
                   {through_link, through_link + "/file", through_link + "/escape/passwd", through_link + "/new/dir"}) {
                const auto resolved = resolve_bind_source(path);
                said += (resolved ? *resolved : std::string("unresolved")) + "\n";
              }
              return said;
            }),
            base_ + "/srv/b\n" + base_ + "/srv/b/file\n/etc/passwd\n" + base_ + "/srv/b/new/dir\n");
  EXPECT_EQ(confined([&] {
              char target[64] = {};
              const ssize_t length = readlink((base_ + "/link-to-b").c_str(), target, sizeof target - 1);
              return length < 0 ? "readlink: " + outcome(-1) : std::string(target);
            }),
            "srv/b")
      << "the link as the host has it";
}

TEST_F(DockergateConfinement, RootsAndTheNewRootAreReadOnly) {
  // The control: the gate's user may write there on the host.
  EXPECT_EQ(run_child([&] { return create_in(base_ + "/srv/a") + " " + create_in(base_ + "/srv/b"); }), "ok ok");
  EXPECT_EQ(run_child([&] {
              if (std::string failure = confine(2); !failure.empty()) return failure;
              return create_in(base_ + "/srv/a") + " " + create_in(base_ + "/srv/a/inner") + " " +
                     create_in(base_ + "/srv/b") + " " + create_in("/") + " " + create_in(base_ + "/run") + " " +
                     outcome(mkdir("/tmp/new", 0755));
            }),
            "EROFS EROFS EROFS EROFS EROFS EROFS");
}

// Mounts inside a root (pgod's NFS mounts) and a root that is a mount itself, with flags the user
// namespace locks (noatime, nodev, nosuid): read-only all the same, and the remount keeps them.
TEST_F(DockergateConfinement, MountsInsideRootsAreReadOnlyToo) {
  ChildSetup setup;
  setup.as_root = [&]() -> std::string {
    if (unshare(CLONE_NEWNS) != 0) return "unshare(CLONE_NEWNS): " + outcome(-1);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return "private: " + outcome(-1);
    if (mount("tmpfs", (base_ + "/srv/a/inner").c_str(), "tmpfs", MS_NOATIME | MS_NOSUID, "mode=0777") != 0)
      return "tmpfs on inner: " + outcome(-1);
    if (mount("tmpfs", (base_ + "/srv/b").c_str(), "tmpfs", MS_NOATIME | MS_NODEV, "mode=0777") != 0)
      return "tmpfs on b: " + outcome(-1);
    return "";
  };
  EXPECT_EQ(run_child([&] { return create_in(base_ + "/srv/a/inner") + " " + create_in(base_ + "/srv/b"); }, setup),
            "ok ok");
  EXPECT_EQ(run_child(
                [&] {
                  if (std::string failure = confine(2); !failure.empty()) return failure;
                  return create_in(base_ + "/srv/a/inner") + " " + create_in(base_ + "/srv/b");
                },
                setup),
            "EROFS EROFS");
}

TEST_F(DockergateConfinement, TheSocketAcceptsTheDockerGroupOnly) {
  EXPECT_EQ(confined([&] {
              // Under the filter, as the gate connects (socket_path_ is resolved already).
              return connect_to(socket_path_);
            }),
            "ok");
  ChildSetup without_group;
  without_group.docker_group = false;
  EXPECT_EQ(run_child(
                [&] {
                  if (std::string failure = confine(3); !failure.empty()) return failure;
                  return connect_to(socket_path_);
                },
                without_group),
            "EACCES")
      << "without the group, the socket's permissions refuse: the group is what lets the gate in";
}

TEST_F(DockergateConfinement, ReturnsTheResolvedSocket) {
  const std::string link = base_ + "/docker-link.sock";
  std::filesystem::create_symlink(socket_path_, link);
  socket_path_ = link;
  EXPECT_EQ(run_child([&] {
              std::string socket;
              if (std::string failure = confine(1, &socket); !failure.empty()) return failure;
              return socket + " " + connect_to(socket) + " " + outcome(access(link.c_str(), F_OK));
            }),
            base_ + "/run/docker.sock ok ENOENT");
}

TEST_F(DockergateConfinement, NoCapabilitiesAreLeft) {
  EXPECT_EQ(run_child([&] {
              if (std::string failure = confine(1); !failure.empty()) return failure;
              __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
              std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
              if (syscall(SYS_capget, &header, data.data()) != 0) return "capget: " + outcome(-1);
              if (data[0].effective == 0) return std::string("the new user namespace gave no capabilities");
              if (auto dropped = drop_capabilities(); !dropped) return "drop_capabilities: " + dropped.error();
              header = {_LINUX_CAPABILITY_VERSION_3, 0};
              if (syscall(SYS_capget, &header, data.data()) != 0) return "capget: " + outcome(-1);
              for (const auto& word : data) {
                if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0)
                  return std::string("capabilities left");
              }
              for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
                if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0) return "bounding set has " + std::to_string(cap);
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) != 0)
                  return "ambient set has " + std::to_string(cap);
              }
              return outcome(mount("tmpfs", "/tmp", "tmpfs", 0, nullptr)) + " " + outcome(unshare(CLONE_NEWNS));
            }),
            "EPERM EPERM");
}

TEST_F(DockergateConfinement, RefusesAMissingSocketByName) {
  socket_path_ = base_ + "/run/gone.sock";
  const std::string said = run_child([&] { return confine(1); });
  EXPECT_NE(said.find(socket_path_), std::string::npos) << said;
  EXPECT_NE(said.find("does not exist"), std::string::npos) << said;
}

TEST_F(DockergateConfinement, SaysWhyAThreadedProcessCannotEnter) {
  const std::string said = run_child([&] {
    std::thread sleeper([] { std::this_thread::sleep_for(std::chrono::milliseconds(200)); });
    const std::string failure = confine(1);
    sleeper.join();
    return failure;
  });
  EXPECT_NE(said.find("single thread"), std::string::npos) << said;
}

// ---------------------------------------------------------------------------------------------
// The filter: what the gate does still works; the rest kills or fails as the table says.

TEST_F(DockergateConfinement, TheGatesOwnCallsWork) {
  EXPECT_EQ(confined([&] {
              int pair[2];
              if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return "socketpair: " + outcome(-1);
              UniqueFd left(pair[0]), right(pair[1]);
              const timeval timeout{1, 0};
              if (setsockopt(left.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0)
                return "SO_RCVTIMEO: " + outcome(-1);
              std::string thread_said = "not run";
              std::thread([&] { thread_said = outcome(write(right.get(), "x", 1)); }).join();
              pollfd wait{left.get(), POLLIN, 0};
              if (poll(&wait, 1, 1000) != 1) return "poll: " + outcome(-1);
              char byte = 0;
              if (read(left.get(), &byte, 1) != 1) return "read: " + outcome(-1);
              const int tty = isatty(STDERR_FILENO);
              const std::string tty_said = tty == 0 && errno == ENOTTY ? "not a tty" : "isatty: " + outcome(-1);
              return "thread " + thread_said + ", " + tty_said + ", " + std::string(1, byte);
            }),
            "thread ok, not a tty, x");
}

TEST_F(DockergateConfinement, FilesOpenOnlyWithOPath) {
  const std::string file = base_ + "/srv/a/file";
  const std::string link = base_ + "/srv/a/link";
  EXPECT_EQ(run_child([&] {
              if (std::string failure = confine(2); !failure.empty()) return failure;
              const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
              if (fd >= 0) close(fd);
              return outcome(fd);
            }),
            "ok")
      << "the control: readable before the filter";
  EXPECT_EQ(confined([&] {
              return outcome(open(file.c_str(), O_RDONLY | O_CLOEXEC)) + " " +
                     outcome(openat(AT_FDCWD, file.c_str(), O_WRONLY | O_CLOEXEC)) + " " +
                     outcome(open(base_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) + " " +
                     outcome(syscall(SYS_open, file.c_str(), O_PATH | O_CLOEXEC));
            }),
            "EACCES EACCES EACCES EACCES");
  // What the bind-source resolver does: O_PATH opens, fstat, readlinkat on the link itself.
  EXPECT_EQ(confined([&] {
              UniqueFd fd(open(link.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
              if (!fd) return "open(O_PATH): " + outcome(-1);
              struct stat info {};
              if (fstat(fd.get(), &info) != 0) return "fstat: " + outcome(-1);
              if (!S_ISLNK(info.st_mode)) return std::string("not a link");
              char target[64] = {};
              if (readlinkat(fd.get(), "", target, sizeof target - 1) < 0) return "readlinkat: " + outcome(-1);
              UniqueFd dir(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
              if (!dir) return "open(/): " + outcome(-1);
              const std::string relative = file.substr(1);
              UniqueFd child(openat(dir.get(), relative.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
              if (!child) return "openat(O_PATH): " + outcome(-1);
              return std::string(target) + " " + outcome(stat(file.c_str(), &info)) + " " +
                     outcome(read(child.get(), target, 1));
            }),
            "file ok EBADF");
}

TEST_F(DockergateConfinement, ExecKills) {
  EXPECT_EQ(confined([] {
              char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
              return "execve: " + outcome(execve(argv[0], argv, environ));
            }),
            kKilledBySigsys);
}

TEST_F(DockergateConfinement, ForkKills) {
  EXPECT_EQ(confined([] {
              const pid_t pid = fork();
              if (pid == 0) _exit(0);
              return "fork: " + outcome(pid);
            }),
            kKilledBySigsys);
  EXPECT_EQ(confined([] { return "clone: " + outcome(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0)); }), kKilledBySigsys);
}

// The gate sends no descriptor, and cannot: pgod closes its hand-over connection unread, so
// one queued there would be closed on pgod's loop.
TEST_F(DockergateConfinement, SendmsgFailsSoNoDescriptorCanBeSent) {
  EXPECT_EQ(confined([] {
              int pair[2];
              if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return "socketpair: " + outcome(-1);
              const UniqueFd a(pair[0]), b(pair[1]);
              const int descriptor = a.get();
              const auto sent = send_byte_with_fds(a.get(), 'x', &descriptor, 1);
              return sent ? std::string("sent") : sent.error();
            }),
            "sendmsg(SCM_RIGHTS) the descriptor hand-over: Operation not permitted");
}

TEST_F(DockergateConfinement, InetSocketsKill) {
  EXPECT_EQ(confined([] { return "socket(AF_INET): " + outcome(socket(AF_INET, SOCK_STREAM, 0)); }), kKilledBySigsys);
  EXPECT_EQ(confined([] { return "socket(AF_INET6): " + outcome(socket(AF_INET6, SOCK_DGRAM, 0)); }), kKilledBySigsys);
}

TEST_F(DockergateConfinement, MountAndNamespacesKill) {
  EXPECT_EQ(confined([] { return "mount: " + outcome(mount("tmpfs", "/tmp", "tmpfs", 0, nullptr)); }), kKilledBySigsys);
  EXPECT_EQ(confined([] { return "unshare: " + outcome(unshare(CLONE_NEWUSER)); }), kKilledBySigsys);
  EXPECT_EQ(confined([] { return "umount2: " + outcome(umount2("/", MNT_DETACH)); }), kKilledBySigsys);
  EXPECT_EQ(confined([] {
              return "clone(CLONE_THREAD | CLONE_NEWNS): " +
                     outcome(syscall(SYS_clone, CLONE_THREAD | CLONE_SIGHAND | CLONE_VM | CLONE_NEWNS, 0, 0, 0, 0));
            }),
            kKilledBySigsys);
}

}  // namespace
}  // namespace pgod::dockergate
