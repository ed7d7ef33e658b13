// The docker gate as pgod runs it, against the real engine, driven by a hostile client: a real
// pgod-dockergate process (its own test user, the docker group only, its own confinement) serves
// two services' sockets, and raw HTTP/1.1 bytes are sent to service A's socket. Each escape is
// one test: the status the gate answers, the reason its message names, and what dockerd shows
// afterwards (nothing made, the other project's objects untouched). Positive tests prove the
// gate still forwards what the docker CLI and both compose programs need.
//
// The tests share one gate and one set of objects on the daemon (set up once for the suite) and
// run in the order written: the last one checks that the gate still serves after every refusal.
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "compose_programs.h"
#include "docker_env.h"
#include "dockergate_process.h"
#include "process.h"
#include "unique_fd.h"

namespace pgod::test {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr char kApi[] = "/v1.41";  // what Debian's docker CLI speaks; the gate accepts 1.24 and later
constexpr char kProjectLabel[] = "com.docker.compose.project";

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client: the bytes exactly as given, the whole reply read until the gate closes.

struct Reply {
  int status = 0;
  std::string raw;      // everything the gate sent
  std::string body;     // dechunked when the reply was chunked
  std::string message;  // the JSON "message" of an error reply
  Json json;            // the body parsed, or discarded
};

std::string dechunk(const std::string& body) {
  std::string out;
  std::size_t at = 0;
  while (at < body.size()) {
    const std::size_t line_end = body.find("\r\n", at);
    if (line_end == std::string::npos) break;
    const std::size_t size = std::stoul(body.substr(at, line_end - at), nullptr, 16);
    if (size == 0) break;
    out += body.substr(line_end + 2, size);
    at = line_end + 2 + size + 2;
  }
  return out;
}

Reply parse_reply(std::string raw) {
  Reply reply;
  reply.raw = std::move(raw);
  if (reply.raw.rfind("HTTP/1.1 ", 0) == 0 && reply.raw.size() >= 12) reply.status = std::stoi(reply.raw.substr(9, 3));
  const std::size_t head_end = reply.raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return reply;
  std::string head = reply.raw.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  reply.body = reply.raw.substr(head_end + 4);
  if (head.find("transfer-encoding: chunked") != std::string::npos) reply.body = dechunk(reply.body);
  reply.json = Json::parse(reply.body, nullptr, false);
  if (reply.json.is_object() && reply.json.contains("message") && reply.json["message"].is_string())
    reply.message = reply.json["message"].get<std::string>();
  return reply;
}

// Connects, writes `bytes` (from a thread, so that a gate that answers before reading a large
// body does not block us) and reads until the gate closes. Never half-closes: before an upgrade,
// the gate takes a client's hang-up as the end of the call.
Reply send_raw(const std::string& socket_path, const std::string& bytes) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::runtime_error(std::string("socket: ") + strerror(errno));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    return Reply{0, std::string("connect: ") + strerror(errno), "", "", Json()};
  timeval timeout{30, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::thread writer([&]() {
    std::size_t at = 0;
    while (at < bytes.size()) {
      const ssize_t sent = send(fd.get(), bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return;
      at += static_cast<std::size_t>(sent);
    }
  });
  std::string raw;
  char buffer[65536];
  while (true) {
    const ssize_t got = recv(fd.get(), buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // the end, or ECONNRESET after the reply (the gate closed with our body unread)
    raw.append(buffer, static_cast<std::size_t>(got));
  }
  shutdown(fd.get(), SHUT_RDWR);  // unblocks the writer if the gate never read the rest
  writer.join();
  return parse_reply(std::move(raw));
}

// A request as a docker client writes it.
std::string request(const std::string& method, const std::string& target, const std::string& body = "",
                    const std::string& extra_headers = "") {
  std::string text =
      method + " " + target + " HTTP/1.1\r\nHost: docker\r\nUser-Agent: hostile-client/1.0\r\n" + extra_headers;
  if (!body.empty())
    text += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  else if (method == "POST" || method == "PUT")
    text += "Content-Length: 0\r\n";
  return text + "\r\n" + body;
}

// ---------------------------------------------------------------------------------------------
// The world the suite runs in: two services, their directories and objects, and the gate.

struct World {
  std::string pid = std::to_string(getpid());
  std::string a = "hca" + pid;           // service A (the hostile client's); project name = service name
  std::string b = "hcb" + pid;           // service B (the victim)
  std::string external = "hcext" + pid;  // an external network pgo.toml lets A join
  std::string user = "hcg" + pid;        // the gate's user
  std::string dir;                       // everything on disk, removed at the end
  std::string root_a, root_b, outside;
  std::string socket_a, socket_b;  // the gate's sockets for A and B
  std::string image;
  std::string a_network = a + "_own", a_back_network = a + "_back", b_network = b + "_default",
              b_idle_network = b + "_idle";
  std::string b_volume = b + "_data";
  std::string b_image = b + "-web";
  std::string own_name = a + "-own-1", b_name = b + "-app-1", b_stopped_name = b + "-stopped-1";
  std::string own_id, b_id, b_stopped_id, b_image_id;
  uid_t uid = 0;
  gid_t gid = 0;
  bool user_made = false;
  bool image_pulled = false;
  std::unique_ptr<DockerGateProcess> gate;
};

World* world = nullptr;
std::string setup_error;

ProcessResult docker(const std::vector<std::string>& args) { return docker_environment().docker(args); }

std::string must_docker(const std::vector<std::string>& args) {
  auto result = docker(args);
  if (result.exit_code != 0) {
    std::string command;
    for (const auto& arg : args) command += " " + arg;
    throw std::runtime_error("docker" + command + " failed: " + result.err + result.out);
  }
  while (!result.out.empty() && (result.out.back() == '\n' || result.out.back() == ' ')) result.out.pop_back();
  return result.out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::string read_log() { return world && world->gate ? world->gate->log_text() : std::string(); }

void build_world(World& w) {
  auto& engine = docker_environment();
  w.image = engine.image();
  // The locally made busybox image, from the loopback registry (never the internet).
  if (docker({"image", "inspect", w.image}).exit_code != 0) {
    must_docker({"login", "-u", engine.user(), "-p", engine.token(), engine.registry()});
    must_docker({"pull", w.image});
    w.image_pulled = true;
    docker({"logout", engine.registry()});
  }

  // The gate's user: its own group, and the docker group as its only supplementary one.
  auto made = run_process({"/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                           "/usr/sbin/nologin", w.user});
  if (made.exit_code != 0) throw std::runtime_error("useradd: " + made.err);
  w.user_made = true;
  const passwd* entry = getpwnam(w.user.c_str());
  if (entry == nullptr) throw std::runtime_error("useradd made no user");
  w.uid = entry->pw_uid;
  w.gid = entry->pw_gid;

  std::string pattern = "/tmp/pgod-hostile-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
  w.dir = pattern;
  std::filesystem::permissions(w.dir, std::filesystem::perms(0755));  // the gate resolves the roots
  w.root_a = w.dir + "/root-a";
  w.root_b = w.dir + "/root-b";
  w.outside = w.dir + "/outside";
  for (const auto& path : {w.root_a, w.root_a + "/data", w.root_b, w.root_b + "/data", w.outside})
    std::filesystem::create_directories(path);
  std::ofstream(w.root_a + "/data/greeting") << "hello from A's root\n";
  std::filesystem::create_symlink("/", w.root_a + "/escape");
  std::filesystem::create_symlink(w.root_b, w.root_a + "/to-b");

  // The objects on the daemon: A's own network and container; B's network, volume, running and
  // stopped containers, image; an external network A may join.
  const std::string a_label = std::string(kProjectLabel) + "=" + w.a;
  const std::string b_label = std::string(kProjectLabel) + "=" + w.b;
  must_docker({"network", "create", w.external});
  must_docker({"network", "create", "--label", a_label, w.a_network});
  must_docker({"network", "create", "--label", a_label, w.a_back_network});
  must_docker({"network", "create", "--label", b_label, w.b_network});
  must_docker({"network", "create", "--label", b_label, w.b_idle_network});
  must_docker({"volume", "create", "--label", b_label, w.b_volume});
  w.b_id = must_docker({"run", "-d", "--name", w.b_name, "--label", b_label, "--network", w.b_network, "-v",
                        w.b_volume + ":/data", w.image, "sleep", "3600"});
  w.b_stopped_id = must_docker(
      {"create", "--name", w.b_stopped_name, "--label", b_label, "--network", w.b_network, w.image, "sleep", "3600"});
  w.own_id = must_docker(
      {"run", "-d", "--name", w.own_name, "--label", a_label, "--network", w.a_network, w.image, "sleep", "3600"});
  // B's own image: a commit, so its ID differs from the busybox image A could tag over it.
  must_docker({"commit", "--change", "LABEL owner=" + w.b, w.b_stopped_id, w.b_image + ":latest"});
  w.b_image_id = must_docker({"image", "inspect", "-f", "{{.Id}}", w.b_image + ":latest"});

  // The gate as pgod starts it (DockerGateProcess): its own user with the docker group only.
  DockerGateOptions options;
  options.program = PGOD_DOCKERGATE_BIN;
  options.socket_dir = w.dir;
  options.log = w.dir + "/gate.log";
  options.user = DockerGateUser{w.uid, w.gid};
  options.debug = true;  // each forwarded call logged: the record to read when compose fails
  w.gate = std::make_unique<DockerGateProcess>(
      options, std::vector<DockerGateService>{{w.a, w.a, {w.root_a}, {w.external}}, {w.b, w.b, {w.root_b}, {}}});
  w.socket_a = w.gate->socket(w.a);
  w.socket_b = w.gate->socket(w.b);
  w.gate->wait_ready();
}

void remove_labelled(const std::string& project) {
  const std::string filter = std::string("label=") + kProjectLabel + "=" + project;
  for (const auto& id : lines_of(docker({"ps", "-aq", "--filter", filter}).out)) docker({"rm", "-f", "-v", id});
  for (const auto& id : lines_of(docker({"network", "ls", "-q", "--filter", filter}).out))
    docker({"network", "rm", id});
  for (const auto& name : lines_of(docker({"volume", "ls", "-q", "--filter", filter}).out))
    docker({"volume", "rm", "-f", name});
}

void destroy_world(World& w) {
  w.gate.reset();  // stopped by its PID: SIGTERM, then SIGKILL
  remove_labelled(w.a);
  remove_labelled(w.b);
  // Anything an escape might have made under A's or B's names despite a refusal.
  for (const auto& name : lines_of(docker({"ps", "-aq", "--filter", "name=" + w.a}).out)) docker({"rm", "-f", name});
  for (const auto& name : lines_of(docker({"ps", "-aq", "--filter", "name=" + w.b}).out)) docker({"rm", "-f", name});
  docker({"network", "rm", w.external});
  docker({"rmi", w.b_image + ":latest"});
  if (w.image_pulled) docker({"rmi", w.image});
  if (w.user_made) run_process({"/usr/sbin/userdel", w.user});
  if (!w.dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(w.dir, ignored);
  }
}

// ---------------------------------------------------------------------------------------------
// The fixture and the checks

class HostileClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World();
    try {
      build_world(*world);
    } catch (const std::exception& error) {
      setup_error = error.what();
    }
  }
  static void TearDownTestSuite() {
    destroy_world(*world);
    delete world;
    world = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(setup_error.empty()) << setup_error;
    log_offset_ = read_log().size();
    a_containers_ = count_containers(w().a);
    b_state_ = b_container_state();
  }
  void TearDown() override {
    if (world == nullptr || !setup_error.empty()) return;
    EXPECT_EQ(waitpid(w().gate->pid(), nullptr, WNOHANG), 0) << "the gate is still running";
    if (HasFailure()) {
      const auto log = read_log();
      std::cerr << "--- the gate's log during this test:\n" << log.substr(std::min(log_offset_, log.size())) << "---\n";
    }
  }

  static World& w() { return *world; }
  static std::string name(const std::string& suffix) { return w().a + "-" + suffix; }

  static std::size_t count_containers(const std::string& project) {
    return lines_of(docker({"ps", "-aq", "--filter", std::string("label=") + kProjectLabel + "=" + project}).out)
        .size();
  }
  static bool container_exists(const std::string& id_or_name) {
    return docker({"container", "inspect", id_or_name}).exit_code == 0;
  }
  // B's running container as dockerd sees it: running, since when, its exec sessions.
  static std::string b_container_state() {
    return docker({"container", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}} {{.ExecIDs}}", w().b_id}).out;
  }

  static Reply send_a(const std::string& bytes) { return send_raw(w().socket_a, bytes); }
  static Reply call_a(const std::string& method, const std::string& path, const std::string& body = "") {
    return send_a(request(method, kApi + path, body));
  }

  // What compose v2 sends for a service of A (trimmed): labels, the project's network, a bind
  // inside A's root.
  static Json good_create() {
    return Json{{"Image", w().image},
                {"Cmd", Json::array({"sh", "-c", "echo hello-from-app; exec sleep 3600"})},
                {"Labels", {{kProjectLabel, w().a}, {"com.docker.compose.service", "app"}}},
                {"HostConfig",
                 {{"NetworkMode", w().a_network},
                  {"Binds", Json::array({w().root_a + "/data:/data:rw"})},
                  {"RestartPolicy", {{"Name", "no"}, {"MaximumRetryCount", 0}}},
                  {"LogConfig", {{"Type", ""}, {"Config", Json::object()}}}}},
                {"NetworkingConfig", {{"EndpointsConfig", {{w().a_network, {{"Aliases", Json::array({"app"})}}}}}}}};
  }

  // A create that must be refused: the status, the reason in the message, and no container.
  void expect_create_refused(const std::string& body, int status, const std::string& reason,
                             const std::string& container = "") {
    const std::string wanted = container.empty() ? name(test_name()) : container;
    const auto reply = call_a("POST", "/containers/create?name=" + wanted, body);
    EXPECT_EQ(reply.status, status) << reply.raw;
    EXPECT_NE(reply.message.find(reason), std::string::npos) << "message: " << reply.message;
    expect_nothing_made(wanted);
  }
  void expect_create_refused(const Json& body, int status, const std::string& reason) {
    expect_create_refused(body.dump(), status, reason);
  }
  void expect_nothing_made(const std::string& container) {
    EXPECT_FALSE(container_exists(container)) << container << " was created";
    EXPECT_EQ(count_containers(w().a), a_containers_) << "a container of A's project appeared";
    EXPECT_EQ(b_container_state(), b_state_) << "B's container changed";
  }

  static void expect_refused(const Reply& reply, int status, const std::string& reason) {
    EXPECT_EQ(reply.status, status) << reply.raw;
    EXPECT_NE(reply.message.find(reason), std::string::npos) << "message: " << reply.message;
  }
  static constexpr char kNotInTable[] = "is not in the docker gate's table of allowed calls";

  static std::string test_name() {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : test) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return test;
  }

  std::size_t log_offset_ = 0;
  std::size_t a_containers_ = 0;
  std::string b_state_;
};

Json with_host_config(Json body, const std::string& field, Json value) {
  body["HostConfig"][field] = std::move(value);
  return body;
}

// The gate as pgod starts it: its own user, with the docker group as its only supplementary group.
TEST_F(HostileClient, GateRunsAsItsUserWithTheDockerGroupOnly) {
  const std::string status = read_file("/proc/" + std::to_string(w().gate->pid()) + "/status");
  const std::string uid = std::to_string(w().uid);
  EXPECT_NE(status.find("\nUid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\n"), std::string::npos) << status;
  EXPECT_NE(status.find("\nGroups:\t" + std::to_string(getgrnam("docker")->gr_gid) + " \n"), std::string::npos)
      << status;
  EXPECT_NE(status.find("\nNoNewPrivs:\t1\n"), std::string::npos) << status;
}

// ---------------------------------------------------------------------------------------------
// Container create: HostConfig escapes

TEST_F(HostileClient, CreatePrivileged) {
  expect_create_refused(with_host_config(good_create(), "Privileged", true), 403,
                        "HostConfig.Privileged: true: privileged containers are refused");
}

TEST_F(HostileClient, CreateCapAddSysAdmin) {
  expect_create_refused(with_host_config(good_create(), "CapAdd", Json::array({"SYS_ADMIN"})), 403,
                        "HostConfig.CapAdd");
}

TEST_F(HostileClient, CreateDevices) {
  Json device = {{"PathOnHost", "/dev/sda"}, {"PathInContainer", "/dev/sda"}, {"CgroupPermissions", "rwm"}};
  expect_create_refused(with_host_config(good_create(), "Devices", Json::array({device})), 403, "HostConfig.Devices");
}

TEST_F(HostileClient, CreateDeviceRequestsGpus) {
  Json gpus = {{"Driver", ""}, {"Count", -1}, {"Capabilities", Json::array({Json::array({"gpu"})})}};
  expect_create_refused(with_host_config(good_create(), "DeviceRequests", Json::array({gpus})), 403,
                        "HostConfig.DeviceRequests");
}

TEST_F(HostileClient, CreateNetworkModeHost) {
  Json body = with_host_config(good_create(), "NetworkMode", "host");
  body.erase("NetworkingConfig");
  expect_create_refused(body, 403, "HostConfig.NetworkMode: \"host\": the host network is refused");
}

TEST_F(HostileClient, CreatePidModeHost) {
  expect_create_refused(with_host_config(good_create(), "PidMode", "host"), 403, "HostConfig.PidMode: \"host\"");
}

TEST_F(HostileClient, CreateIpcModeHost) {
  expect_create_refused(with_host_config(good_create(), "IpcMode", "host"), 403,
                        "HostConfig.IpcMode: \"host\": the host IPC namespace is refused");
}

TEST_F(HostileClient, CreateUtsModeHost) {
  expect_create_refused(with_host_config(good_create(), "UTSMode", "host"), 403,
                        "HostConfig.UTSMode: \"host\": the host UTS namespace is refused");
}

TEST_F(HostileClient, CreateUsernsModeHost) {
  expect_create_refused(with_host_config(good_create(), "UsernsMode", "host"), 403,
                        "HostConfig.UsernsMode: \"host\": the host user namespace is refused");
}

TEST_F(HostileClient, CreateCgroupnsModeHost) {
  expect_create_refused(with_host_config(good_create(), "CgroupnsMode", "host"), 403,
                        "HostConfig.CgroupnsMode: \"host\"");
}

TEST_F(HostileClient, CreateSecurityOptSeccompUnconfined) {
  expect_create_refused(with_host_config(good_create(), "SecurityOpt", Json::array({"seccomp=unconfined"})), 403,
                        "disables seccomp confinement");
}

TEST_F(HostileClient, CreateSecurityOptApparmorUnconfined) {
  expect_create_refused(with_host_config(good_create(), "SecurityOpt", Json::array({"apparmor=unconfined"})), 403,
                        "only apparmor=docker-default is allowed");
}

TEST_F(HostileClient, CreateSecurityOptLabelDisable) {
  expect_create_refused(with_host_config(good_create(), "SecurityOpt", Json::array({"label=disable"})), 403,
                        "only label=level:... is allowed");
}

TEST_F(HostileClient, CreateSysctlsKernel) {
  expect_create_refused(with_host_config(good_create(), "Sysctls", {{"kernel.core_pattern", "|/bin/sh"}}), 403,
                        "HostConfig.Sysctls.kernel.core_pattern");
}

TEST_F(HostileClient, CreateRuntime) {
  expect_create_refused(with_host_config(good_create(), "Runtime", "io.containerd.runc.v2"), 403,
                        "choosing the container runtime is refused");
}

TEST_F(HostileClient, CreateCgroupParent) {
  expect_create_refused(with_host_config(good_create(), "CgroupParent", "/"), 403,
                        "choosing the cgroup parent is refused");
}

TEST_F(HostileClient, CreateVolumeDriver) {
  expect_create_refused(with_host_config(good_create(), "VolumeDriver", "convoy"), 403,
                        "HostConfig.VolumeDriver: \"convoy\"");
}

// ---------------------------------------------------------------------------------------------
// Container create: what it mounts

TEST_F(HostileClient, CreateBindsHostRoot) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({"/:/host"})), 403,
                        "HostConfig.Binds[0]: \"/:/host\": system directories");
}

TEST_F(HostileClient, CreateBindsDockerSocket) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({"/var/run/docker.sock:/s"})), 403,
                        "system directories");
}

TEST_F(HostileClient, CreateBindsOutsideTheRoots) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({w().outside + ":/x"})), 403,
                        "outside the service's directories");
}

TEST_F(HostileClient, CreateBindsOfTheOtherServicesRoot) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({w().root_b + "/data:/x"})), 403,
                        "outside the service's directories");
}

TEST_F(HostileClient, CreateBindsWithDotDot) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({w().root_a + "/../root-b:/x"})), 403,
                        "a bind source with '..' cannot be judged");
}

TEST_F(HostileClient, CreateBindsSymlinkInOwnRootToHostRoot) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({w().root_a + "/escape:/host"})), 403,
                        "resolves (through symlinks) to /, a system directory");
}

// The create is judged; then the service's user swaps the bind source for a symlink to "/" (it
// owns the directory). dockerd mounts the source again at every start and for a copy out of a
// stopped container: the gate judges the sources again there, and refuses.
TEST_F(HostileClient, ABindSourceSwappedForASymlinkAfterTheCreateIsRefusedAtStartAndCopy) {
  const std::string dir = w().root_a + "/swap";
  std::filesystem::create_directory(dir);
  const std::string container = name("swapped");
  const auto created = call_a("POST", "/containers/create?name=" + container,
                              with_host_config(good_create(), "Binds", Json::array({dir + ":/h"})).dump());
  ASSERT_EQ(created.status, 201) << created.raw;
  std::filesystem::rename(dir, dir + ".old");
  std::filesystem::create_directory_symlink("/", dir);
  expect_refused(call_a("POST", "/containers/" + container + "/start"), 403, "resolves (through symlinks) to /");
  expect_refused(call_a("POST", "/containers/" + container + "/restart"), 403, "resolves (through symlinks) to /");
  expect_refused(call_a("GET", "/containers/" + container + "/archive?path=%2Fh%2Fetc%2Fshadow"), 403,
                 "resolves (through symlinks) to /");
  EXPECT_EQ(docker({"container", "inspect", "-f", "{{.State.Running}}", container}).out, "false\n")
      << "dockerd never started it";
  // Put back, the same container starts: the check is of the source, not of the container.
  std::filesystem::remove(dir);
  std::filesystem::rename(dir + ".old", dir);
  const auto started = call_a("POST", "/containers/" + container + "/start");
  EXPECT_EQ(started.status, 204) << started.raw;
  docker({"rm", "-f", container});
  std::filesystem::remove(dir);
}

TEST_F(HostileClient, CreateBindsSymlinkInOwnRootToOtherRoot) {
  expect_create_refused(with_host_config(good_create(), "Binds", Json::array({w().root_a + "/to-b/data:/x"})), 403,
                        "resolves to " + w().root_b + "/data, outside the service's directories");
}

TEST_F(HostileClient, CreateMountsBindHostRoot) {
  Json mount = {{"Type", "bind"}, {"Source", "/"}, {"Target", "/host"}};
  expect_create_refused(with_host_config(good_create(), "Mounts", Json::array({mount})), 403,
                        "HostConfig.Mounts[0].Source: \"/\": system directories");
}

TEST_F(HostileClient, CreateMountsBindDockerSocket) {
  Json mount = {{"Type", "bind"}, {"Source", "/run/docker.sock"}, {"Target", "/s"}};
  expect_create_refused(with_host_config(good_create(), "Mounts", Json::array({mount})), 403,
                        "HostConfig.Mounts[0].Source: \"/run/docker.sock\": system directories");
}

TEST_F(HostileClient, CreateMountsVolumeWithDriverOptions) {
  Json mount = {
      {"Type", "volume"},
      {"Source", w().a + "_etc"},
      {"Target", "/etc-host"},
      {"VolumeOptions",
       {{"DriverConfig", {{"Name", "local"}, {"Options", {{"type", "none"}, {"o", "bind"}, {"device", "/etc"}}}}}}}};
  expect_create_refused(with_host_config(good_create(), "Mounts", Json::array({mount})), 403,
                        "volume driver options are refused");
  EXPECT_NE(docker({"volume", "inspect", w().a + "_etc"}).exit_code, 0) << "no volume was made";
}

// ---------------------------------------------------------------------------------------------
// Container create: the other project's containers

TEST_F(HostileClient, CreateNetworkModeOfOtherContainer) {
  Json body = with_host_config(good_create(), "NetworkMode", "container:" + w().b_name);
  body.erase("NetworkingConfig");
  expect_create_refused(body, 403, "only the network of the project's own containers may be shared");
}

TEST_F(HostileClient, CreatePidModeOfOtherContainer) {
  expect_create_refused(with_host_config(good_create(), "PidMode", "container:" + w().b_id), 403,
                        "only the project's own containers may share a namespace");
}

TEST_F(HostileClient, CreateIpcModeOfOtherContainer) {
  expect_create_refused(with_host_config(good_create(), "IpcMode", "container:" + w().b_name), 403,
                        "only the project's own containers may share a namespace");
}

TEST_F(HostileClient, CreateVolumesFromOtherContainer) {
  expect_create_refused(with_host_config(good_create(), "VolumesFrom", Json::array({w().b_name + ":rw"})), 403,
                        "volumes from containers outside the project are refused");
}

// ---------------------------------------------------------------------------------------------
// Container create: spelling tricks and the project's names

TEST_F(HostileClient, CreateLowerCasePrivileged) {
  expect_create_refused(with_host_config(good_create(), "privileged", true), 403,
                        "HostConfig.privileged: true: unknown field");
}

TEST_F(HostileClient, CreateDuplicateKeys) {
  const std::string body = R"({"Image":")" + w().image + R"(","Labels":{")" + kProjectLabel + R"(":")" + w().a +
                           R"("},"HostConfig":{"NetworkMode":")" + w().a_network +
                           R"(","Privileged":false,"Privileged":true}})";
  expect_create_refused(body, 400, "HostConfig.Privileged: the key appears twice in one object");
}

TEST_F(HostileClient, CreateKeysDifferingInCase) {
  const std::string body = R"({"Image":")" + w().image + R"(","Labels":{")" + kProjectLabel + R"(":")" + w().a +
                           R"("},"HostConfig":{"NetworkMode":")" + w().a_network +
                           R"(","Privileged":false,"PRIVILEGED":true}})";
  expect_create_refused(body, 400, "differs from \"Privileged\" only in case");
}

TEST_F(HostileClient, CreateUnknownTopLevelField) {
  Json body = good_create();
  body["HostConfigOverride"] = Json{{"Privileged", true}};
  expect_create_refused(body, 403, "HostConfigOverride: {\"Privileged\":true}: unknown field");
}

TEST_F(HostileClient, CreateWithoutProjectLabel) {
  Json body = good_create();
  body["Labels"].erase(kProjectLabel);
  expect_create_refused(body, 403, "Labels.com.docker.compose.project: null: the label must name this service's");
}

TEST_F(HostileClient, CreateWithOtherProjectsLabel) {
  Json body = good_create();
  body["Labels"][kProjectLabel] = w().b;
  expect_create_refused(body, 403, "Labels.com.docker.compose.project: \"" + w().b + "\"");
  EXPECT_EQ(count_containers(w().b), 2u) << "B's project gained no container";
}

TEST_F(HostileClient, CreateWithOtherProjectsName) {
  expect_create_refused(good_create().dump(), 403, "query name: \"" + w().b + "-app-2\": a container must be named",
                        w().b + "-app-2");
}

TEST_F(HostileClient, CreateWithoutName) {
  const auto reply = call_a("POST", "/containers/create", good_create().dump());
  expect_refused(reply, 403, "query name: \"\": a container must be named");
  expect_nothing_made(name("no-such-container"));
}

// ---------------------------------------------------------------------------------------------
// Execs

TEST_F(HostileClient, ExecCreatePrivileged) {
  const std::string before = docker({"container", "inspect", "-f", "{{.ExecIDs}}", w().own_id}).out;
  const auto reply = call_a("POST", "/containers/" + w().own_name + "/exec",
                            Json{{"Cmd", {"id"}}, {"Privileged", true}, {"AttachStdout", true}}.dump());
  expect_refused(reply, 403, "Privileged: true: privileged execs are refused");
  EXPECT_EQ(docker({"container", "inspect", "-f", "{{.ExecIDs}}", w().own_id}).out, before);
}

TEST_F(HostileClient, ExecIntoOtherContainer) {
  const auto reply =
      call_a("POST", "/containers/" + w().b_name + "/exec", Json{{"Cmd", {"id"}}, {"AttachStdout", true}}.dump());
  expect_refused(reply, 404, "No such container: " + w().b_name);
  EXPECT_EQ(b_container_state(), b_state_) << "no exec in B's container";
}

// ---------------------------------------------------------------------------------------------
// The other project's container

TEST_F(HostileClient, InspectOtherContainer) {
  expect_refused(call_a("GET", "/containers/" + w().b_name + "/json"), 404, "No such container");
}

TEST_F(HostileClient, LogsOfOtherContainer) {
  expect_refused(call_a("GET", "/containers/" + w().b_id + "/logs?stdout=1&stderr=1"), 404, "No such container");
}

TEST_F(HostileClient, KillOtherContainer) {
  expect_refused(call_a("POST", "/containers/" + w().b_name + "/kill?signal=KILL"), 404, "No such container");
  EXPECT_EQ(b_container_state(), b_state_);
}

TEST_F(HostileClient, DeleteOtherContainer) {
  expect_refused(call_a("DELETE", "/containers/" + w().b_stopped_name + "?force=1&v=1"), 404, "No such container");
  EXPECT_TRUE(container_exists(w().b_stopped_id));
}

TEST_F(HostileClient, StartOtherContainer) {
  expect_refused(call_a("POST", "/containers/" + w().b_stopped_id.substr(0, 12) + "/start"), 404, "No such container");
  EXPECT_EQ(docker({"container", "inspect", "-f", "{{.State.Status}}", w().b_stopped_id}).out, "created\n");
}

// ---------------------------------------------------------------------------------------------
// Networks and volumes

std::string networks_of(const std::string& container) {
  return docker({"container", "inspect", "-f", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
                 container})
      .out;
}

TEST_F(HostileClient, NetworkConnectToOtherProjectsNetwork) {
  const auto before = networks_of(w().own_id);
  const auto reply = call_a("POST", "/networks/" + w().b_network + "/connect", Json{{"Container", w().own_id}}.dump());
  expect_refused(reply, 404, "No such network: " + w().b_network);
  EXPECT_EQ(networks_of(w().own_id), before);
}

TEST_F(HostileClient, NetworkConnectToBridge) {
  const auto before = networks_of(w().own_id);
  const auto reply = call_a("POST", "/networks/bridge/connect", Json{{"Container", w().own_id}}.dump());
  expect_refused(reply, 404, "No such network: bridge");
  EXPECT_EQ(networks_of(w().own_id), before);
}

TEST_F(HostileClient, NetworkConnectToHost) {
  const auto before = networks_of(w().own_id);
  const auto reply = call_a("POST", "/networks/host/connect", Json{{"Container", w().own_id}}.dump());
  expect_refused(reply, 404, "No such network: host");
  EXPECT_EQ(networks_of(w().own_id), before);
}

TEST_F(HostileClient, NetworkConnectOtherContainerToAllowedNetwork) {
  const auto before = networks_of(w().b_id);
  const auto reply = call_a("POST", "/networks/" + w().external + "/connect", Json{{"Container", w().b_id}}.dump());
  expect_refused(reply, 403, "only the project's own containers may be connected");
  EXPECT_EQ(networks_of(w().b_id), before);
}

// What compose v2 does for a service on a second network: connect with the service's name as an
// alias. On the project's own network the alias must survive (on a shared one it is dropped).
TEST_F(HostileClient, NetworkConnectToOwnNetworkKeepsAliases) {
  const auto reply =
      call_a("POST", "/networks/" + w().a_back_network + "/connect",
             Json{{"Container", w().own_id}, {"EndpointConfig", {{"Aliases", Json::array({"app"})}}}}.dump());
  EXPECT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(docker({"container", "inspect", "-f",
                    "{{range (index .NetworkSettings.Networks \"" + w().a_back_network + "\").Aliases}}{{.}} {{end}}",
                    w().own_id})
                .out.find("app "),
            0u)
      << "the alias \"app\" is on the project's own network";
  EXPECT_EQ(
      call_a("POST", "/networks/" + w().a_back_network + "/disconnect", Json{{"Container", w().own_id}}.dump()).status,
      200);
}

TEST_F(HostileClient, NetworkCreateWithNonLocalDriver) {
  const std::string network = w().a + "_overlay";
  const auto reply =
      call_a("POST", "/networks/create",
             Json{{"Name", network}, {"Driver", "overlay"}, {"Attachable", true}, {"Labels", {{kProjectLabel, w().a}}}}
                 .dump());
  expect_refused(reply, 403, "Driver: \"overlay\": only the bridge network driver is allowed");
  EXPECT_NE(docker({"network", "inspect", network}).exit_code, 0);
}

TEST_F(HostileClient, NetworkCreateMacvlan) {
  const std::string network = w().a + "_macvlan";
  const auto reply = call_a("POST", "/networks/create",
                            Json{{"Name", network},
                                 {"Driver", "macvlan"},
                                 {"Options", {{"parent", "eth0"}}},
                                 {"Labels", {{kProjectLabel, w().a}}}}
                                .dump());
  expect_refused(reply, 403, "Driver: \"macvlan\": only the bridge network driver is allowed");
  EXPECT_NE(docker({"network", "inspect", network}).exit_code, 0);
}

TEST_F(HostileClient, VolumeCreateBindingEtc) {
  const std::string volume = w().a + "_etc";
  const auto reply = call_a("POST", "/volumes/create",
                            Json{{"Name", volume},
                                 {"Driver", "local"},
                                 {"DriverOpts", {{"type", "none"}, {"o", "bind"}, {"device", "/etc"}}},
                                 {"Labels", {{kProjectLabel, w().a}}}}
                                .dump());
  expect_refused(reply, 403,
                 "DriverOpts: {\"device\":\"/etc\",\"o\":\"bind\",\"type\":\"none\"}: volume driver "
                 "options are refused");
  EXPECT_NE(docker({"volume", "inspect", volume}).exit_code, 0);
}

TEST_F(HostileClient, VolumeInspectOtherProjectsVolume) {
  expect_refused(call_a("GET", "/volumes/" + w().b_volume), 404, "No such volume: " + w().b_volume);
}

TEST_F(HostileClient, VolumeDeleteOtherProjectsVolume) {
  expect_refused(call_a("DELETE", "/volumes/" + w().b_volume + "?force=1"), 404, "No such volume");
  EXPECT_EQ(docker({"volume", "inspect", w().b_volume}).exit_code, 0);
}

// ---------------------------------------------------------------------------------------------
// Images and builds

TEST_F(HostileClient, ImageTagOverOtherProjectsImage) {
  const auto reply = call_a("POST", "/images/" + w().image + "/tag?repo=" + w().b_image + "&tag=latest");
  expect_refused(reply, 403,
                 "query repo: \"" + w().b_image + "\": an image name must be \"" + w().a + "-...\" with no registry");
  EXPECT_EQ(must_docker({"image", "inspect", "-f", "{{.Id}}", w().b_image + ":latest"}), w().b_image_id);
}

// B's image (B built it: it is named for B) is B's: A does not see it, run it, or tag from it.
// A pulled image (no project's name) is everyone's.
TEST_F(HostileClient, AnotherProjectsImageIsNeitherSeenNorRunNorTagged) {
  expect_refused(call_a("GET", "/images/" + w().b_image + ":latest/json"), 404, "No such image");
  expect_refused(call_a("GET", "/images/" + w().b_image_id + "/json"), 404, "No such image");
  const auto listed_a = call_a("GET", "/images/json");
  ASSERT_EQ(listed_a.status, 200) << listed_a.raw;
  EXPECT_EQ(listed_a.body.find(w().b_image), std::string::npos) << "A's list shows B's image";
  EXPECT_NE(listed_a.body.find(w().image), std::string::npos) << "A's list shows the pulled image";
  const auto listed_b = send_raw(w().socket_b, request("GET", std::string(kApi) + "/images/json"));
  EXPECT_NE(listed_b.body.find(w().b_image), std::string::npos) << "B sees its own image";
  Json body = good_create();
  body["Image"] = w().b_image + ":latest";
  expect_create_refused(body, 403, "another project's image is refused");
  expect_refused(call_a("POST", "/images/" + w().b_image + ":latest/tag?repo=" + w().a + "-copy&tag=1"), 404,
                 "No such image");
  EXPECT_NE(docker({"image", "inspect", w().a + "-copy:1"}).exit_code, 0) << "no copy was made";
  const auto pulled = call_a("GET", "/images/" + w().image + "/json");
  EXPECT_EQ(pulled.status, 200) << pulled.raw;
}

std::string build(const std::string& query) {
  return request("POST", std::string(kApi) + "/build?" + query, "", "Content-Type: application/x-tar\r\n");
}

TEST_F(HostileClient, BuildWithHostNetwork) {
  expect_refused(send_a(build("networkmode=host&t=" + w().a + "-web")), 403,
                 "query networkmode: \"host\": builds on the host's");
}

TEST_F(HostileClient, BuildFromRemoteContext) {
  expect_refused(send_a(build("remote=https%3A%2F%2Fexample.invalid%2Fctx.git&t=" + w().a + "-web")), 403,
                 "remote build contexts are refused");
}

TEST_F(HostileClient, BuildWithBuildKit) {
  expect_refused(send_a(build("version=2&t=" + w().a + "-web")), 403,
                 "query version: \"2\": only the classic builder (version 1) is allowed");
}

TEST_F(HostileClient, BuildTaggedAsOtherProjectsImage) {
  expect_refused(
      send_a(build("t=" + w().b_image + "%3Alatest")), 403,
      "query t: \"" + w().b_image + ":latest\": an image name must be \"" + w().a + "-...\" with no registry");
  EXPECT_EQ(must_docker({"image", "inspect", "-f", "{{.Id}}", w().b_image + ":latest"}), w().b_image_id);
}

// ---------------------------------------------------------------------------------------------
// Calls outside the table

TEST_F(HostileClient, SwarmInit) {
  expect_refused(call_a("POST", "/swarm/init", Json{{"ListenAddr", "0.0.0.0:2377"}}.dump()), 403, kNotInTable);
  EXPECT_EQ(must_docker({"info", "-f", "{{.Swarm.LocalNodeState}}"}), "inactive");
}

TEST_F(HostileClient, Plugins) { expect_refused(call_a("GET", "/plugins"), 403, kNotInTable); }

TEST_F(HostileClient, PluginInstall) {
  expect_refused(call_a("POST", "/plugins/pull?remote=vieux%2Fsshfs", "[]"), 403, kNotInTable);
}

TEST_F(HostileClient, SecretsCreate) {
  expect_refused(call_a("POST", "/secrets/create", Json{{"Name", "x"}, {"Data", "eA=="}}.dump()), 403, kNotInTable);
}

TEST_F(HostileClient, ConfigsCreate) {
  expect_refused(call_a("POST", "/configs/create", Json{{"Name", "x"}, {"Data", "eA=="}}.dump()), 403, kNotInTable);
}

TEST_F(HostileClient, ServicesCreate) {
  expect_refused(call_a("POST", "/services/create", Json{{"Name", "x"}}.dump()), 403, kNotInTable);
}

TEST_F(HostileClient, Nodes) { expect_refused(call_a("GET", "/nodes"), 403, kNotInTable); }

TEST_F(HostileClient, ContainersPrune) {
  expect_refused(call_a("POST", "/containers/prune"), 403, kNotInTable);
  EXPECT_TRUE(container_exists(w().b_stopped_id)) << "B's stopped container is still there";
}

TEST_F(HostileClient, ImagesPrune) {
  expect_refused(call_a("POST", "/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D"), 403, kNotInTable);
  EXPECT_EQ(must_docker({"image", "inspect", "-f", "{{.Id}}", w().b_image + ":latest"}), w().b_image_id);
}

TEST_F(HostileClient, VolumesPrune) {
  expect_refused(call_a("POST", "/volumes/prune"), 403, kNotInTable);
  EXPECT_EQ(docker({"volume", "inspect", w().b_volume}).exit_code, 0);
}

TEST_F(HostileClient, NetworksPrune) {
  expect_refused(call_a("POST", "/networks/prune"), 403, kNotInTable);
  EXPECT_EQ(docker({"network", "inspect", w().b_idle_network}).exit_code, 0) << "B's idle network is still there";
}

TEST_F(HostileClient, ImagePush) {
  expect_refused(call_a("POST", "/images/" + w().b_image + "/push?tag=latest"), 403, kNotInTable);
}

TEST_F(HostileClient, ImageDelete) {
  expect_refused(call_a("DELETE", "/images/" + w().b_image + ":latest?force=1"), 403, kNotInTable);
  EXPECT_EQ(must_docker({"image", "inspect", "-f", "{{.Id}}", w().b_image + ":latest"}), w().b_image_id);
}

TEST_F(HostileClient, Session) {
  expect_refused(send_a(request("POST", std::string(kApi) + "/session", "",
                                "Connection: Upgrade\r\nUpgrade: h2c\r\nX-Docker-Expose-Session-Uuid: x\r\n")),
                 400, "Upgrade \"h2c\"");
  expect_refused(call_a("POST", "/session"), 403, kNotInTable);
}

TEST_F(HostileClient, Grpc) { expect_refused(call_a("POST", "/grpc"), 403, kNotInTable); }

TEST_F(HostileClient, Commit) {
  expect_refused(call_a("POST", "/commit?container=" + w().own_id + "&repo=" + w().b_image + "&tag=latest"), 403,
                 kNotInTable);
  EXPECT_EQ(must_docker({"image", "inspect", "-f", "{{.Id}}", w().b_image + ":latest"}), w().b_image_id);
}

TEST_F(HostileClient, ContainerUpdate) {
  expect_refused(call_a("POST", "/containers/" + w().own_id + "/update", Json{{"Memory", 0}}.dump()), 403, kNotInTable);
}

TEST_F(HostileClient, ContainerExport) {
  expect_refused(call_a("GET", "/containers/" + w().own_id + "/export"), 403, kNotInTable);
}

// ---------------------------------------------------------------------------------------------
// API versions before 1.24 (a start could still carry a HostConfig)

TEST_F(HostileClient, ApiVersion1_23) {
  const auto reply = send_a(request("POST", "/v1.23/containers/" + w().own_id + "/start",
                                    Json{{"Privileged", true}, {"Binds", {"/:/host"}}}.dump()));
  expect_refused(reply, 400, "API version 1.23 is refused");
}

TEST_F(HostileClient, ApiVersion1_12) {
  Json body = with_host_config(good_create(), "Privileged", true);
  const auto reply = send_a(request("POST", "/v1.12/containers/create?name=" + name("old-api"), body.dump()));
  expect_refused(reply, 400, "API version 1.12 is refused");
  expect_nothing_made(name("old-api"));
}

// ---------------------------------------------------------------------------------------------
// Parser tricks

// CVE-2024-41110: a body sent with Content-Length 0 reached dockerd while an authorisation
// plugin judged an empty one.
TEST_F(HostileClient, ContentLengthZeroFollowedByABody) {
  const std::string container = name("cve");
  const std::string body = with_host_config(good_create(), "Privileged", true).dump();
  const auto reply = send_a(request("POST", std::string(kApi) + "/containers/create?name=" + container, "",
                                    "Content-Type: application/json\r\n") +
                            body);
  // The gate judges the empty body it was told of (no label): refused before the bytes after it
  // could be read as anything.
  expect_refused(reply, 403, "Labels.com.docker.compose.project: null");
  expect_nothing_made(container);
}

TEST_F(HostileClient, ContentLengthAndTransferEncoding) {
  const std::string container = name("clte");
  const std::string body = with_host_config(good_create(), "Privileged", true).dump();
  std::ostringstream chunked;
  chunked << std::hex << body.size() << "\r\n" << body << "\r\n0\r\n\r\n";
  const auto reply = send_a(request("POST", std::string(kApi) + "/containers/create?name=" + container, "",
                                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n") +
                            chunked.str());
  expect_refused(reply, 400, "both Content-Length and Transfer-Encoding");
  expect_nothing_made(container);
}

TEST_F(HostileClient, DuplicateContentLength) {
  const std::string container = name("dupcl");
  const std::string body = with_host_config(good_create(), "Privileged", true).dump();
  const auto reply = send_a("POST " + std::string(kApi) + "/containers/create?name=" + container +
                            " HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                            "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body);
  expect_refused(reply, 400, "header \"content-length\" appears twice");
  expect_nothing_made(container);
}

TEST_F(HostileClient, PipelinedRequestAfterPing) {
  const std::string container = name("pipelined");
  const std::string second = request("POST", std::string(kApi) + "/containers/create?name=" + container,
                                     with_host_config(good_create(), "Privileged", true).dump());
  const auto reply = send_a(request("GET", "/_ping") + second);
  expect_refused(reply, 400, "one request per connection");
  EXPECT_EQ(reply.raw.find("HTTP/1.1", 1), std::string::npos) << "one reply only: " << reply.raw;
  expect_nothing_made(container);
}

TEST_F(HostileClient, OversizedBody) {
  const std::string container = name("oversized");
  Json body = good_create();
  body["Env"] = Json::array({"FILL=" + std::string(5 << 20, 'x')});
  const auto reply = call_a("POST", "/containers/create?name=" + container, body.dump());
  expect_refused(reply, 413, "over the limit of 1048576");
  expect_nothing_made(container);
}

TEST_F(HostileClient, OversizedChunkedBody) {
  const std::string container = name("oversized-chunked");
  Json body = good_create();
  body["Env"] = Json::array({"FILL=" + std::string(5 << 20, 'x')});
  const std::string text = body.dump();
  std::ostringstream chunked;
  for (std::size_t at = 0; at < text.size(); at += 65536) {
    const std::string piece = text.substr(at, 65536);
    chunked << std::hex << piece.size() << "\r\n" << piece << "\r\n";
  }
  chunked << "0\r\n\r\n";
  const auto reply = send_a("POST " + std::string(kApi) + "/containers/create?name=" + container +
                            " HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n" +
                            chunked.str());
  expect_refused(reply, 413, "over the limit of 1048576");
  expect_nothing_made(container);
}

TEST_F(HostileClient, HeaderWithObsFold) {
  const auto reply = send_a("GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Note: a\r\n b\r\n\r\n");
  expect_refused(reply, 400, "obs-fold is refused");
}

TEST_F(HostileClient, ObsFoldHidingContentLength) {
  const std::string container = name("fold");
  const std::string body = with_host_config(good_create(), "Privileged", true).dump();
  const auto reply = send_a("POST " + std::string(kApi) + "/containers/create?name=" + container +
                            " HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 0\r\n" +
                            " " + std::to_string(body.size()) + "\r\n\r\n" + body);
  expect_refused(reply, 400, "obs-fold is refused");
  expect_nothing_made(container);
}

TEST_F(HostileClient, RequestWithNul) {
  using namespace std::string_literals;
  const auto reply = send_a("GET /v1.41/containers/" + w().b_name + "\0/json HTTP/1.1\r\nHost: docker\r\n\r\n"s);
  expect_refused(reply, 400, "a NUL byte in the request head");
}

TEST_F(HostileClient, PathWithEncodedSlash) {
  const auto reply = call_a("GET", "/containers/" + w().own_name + "%2F..%2F" + w().b_name + "/json");
  expect_refused(reply, 400, "an encoded slash (%2F) is refused");
}

TEST_F(HostileClient, PathWithDotDot) {
  const auto reply = call_a("POST", "/containers/" + w().own_name + "/../" + w().b_name + "/kill");
  expect_refused(reply, 400, "a \"..\" segment is refused");
  EXPECT_EQ(b_container_state(), b_state_);
}

// ---------------------------------------------------------------------------------------------
// What the gate must forward

ProcessResult docker_through(const std::string& socket, std::vector<std::string> args) {
  args.insert(args.begin(), {"-H", "unix://" + socket});
  return docker(args);
}

TEST_F(HostileClient, DockerCliVersionAndPs) {
  const auto version = docker_through(w().socket_a, {"version"});
  EXPECT_EQ(version.exit_code, 0) << version.out << version.err;
  const auto ps = docker_through(w().socket_a, {"ps", "-a", "--format", "{{.Names}}"});
  EXPECT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_EQ(lines_of(ps.out), std::vector<std::string>{w().own_name}) << "A sees its own container only";
  const auto ps_b = docker_through(w().socket_b, {"ps", "-a", "--format", "{{.Names}}"});
  EXPECT_EQ(ps_b.exit_code, 0) << ps_b.err;
  EXPECT_EQ(lines_of(ps_b.out).size(), 2u) << ps_b.out;
}

TEST_F(HostileClient, ComposeLikeCreateIsForwardedAndStaysInTheProject) {
  const std::string container = w().a + "-app-1";
  const auto created = call_a("POST", "/containers/create?name=" + container, good_create().dump());
  ASSERT_EQ(created.status, 201) << created.raw;
  const std::string id = created.json.value("Id", "");
  ASSERT_FALSE(id.empty()) << created.raw;

  const auto started = call_a("POST", "/containers/" + container + "/start");
  EXPECT_EQ(started.status, 204) << started.raw;
  EXPECT_EQ(docker({"container", "inspect", "-f", "{{.State.Running}} {{.HostConfig.Privileged}}", id}).out,
            "true false\n");

  const auto listed = docker_through(w().socket_a, {"ps", "--format", "{{.Names}}"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find(container), std::string::npos) << listed.out;
  const auto listed_b = docker_through(w().socket_b, {"ps", "-a", "--format", "{{.Names}}"});
  EXPECT_EQ(listed_b.exit_code, 0) << listed_b.err;
  EXPECT_EQ(listed_b.out.find(container), std::string::npos) << "B does not see A's container: " << listed_b.out;
  EXPECT_NE(docker_through(w().socket_b, {"logs", id}).exit_code, 0) << "B cannot read A's logs";

  bool logged = false;
  for (int i = 0; i < 50 && !logged; ++i) {
    const auto logs = docker_through(w().socket_a, {"logs", id});
    logged = logs.exit_code == 0 && logs.out == "hello-from-app\n";
    if (!logged) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(logged) << docker_through(w().socket_a, {"logs", id}).err;
  const auto hi = docker_through(w().socket_a, {"exec", id, "echo", "hi"});
  EXPECT_EQ(hi.exit_code, 0) << hi.err;
  EXPECT_EQ(hi.out, "hi\n");
  const auto bound =
      docker_through(w().socket_a, {"exec", container, "sh", "-c", "read line < /data/greeting; echo \"$line\""});
  EXPECT_EQ(bound.out, "hello from A's root\n") << bound.err;

  const auto removed = call_a("DELETE", "/containers/" + container + "?force=1&v=1");
  EXPECT_EQ(removed.status, 204) << removed.raw;
  EXPECT_FALSE(container_exists(id));
}

// Docker's multiplexed log frames (8-byte header: stream, 0, 0, 0, big-endian length) joined.
std::string demultiplex(const std::string& frames) {
  std::string out;
  std::size_t at = 0;
  while (at + 8 <= frames.size()) {
    const std::size_t size = (static_cast<std::size_t>(static_cast<unsigned char>(frames[at + 4])) << 24) |
                             (static_cast<std::size_t>(static_cast<unsigned char>(frames[at + 5])) << 16) |
                             (static_cast<std::size_t>(static_cast<unsigned char>(frames[at + 6])) << 8) |
                             static_cast<std::size_t>(static_cast<unsigned char>(frames[at + 7]));
    if (at + 8 + size > frames.size()) break;
    out.append(frames, at + 8, size);
    at += 8 + size;
  }
  return out;
}

// dockerd's RFC 3339 time stamp of a log line (what `timestamps=1` puts first), as a time point.
std::optional<std::chrono::system_clock::time_point> parse_stamp(const std::string& stamp) {
  std::tm tm{};
  const char* rest = strptime(stamp.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return std::nullopt;
  auto point = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (*rest == '.') {
    std::string digits;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest) digits += *rest;
    digits = (digits + "000000000").substr(0, 9);
    point +=
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(std::stoll(digits)));
  }
  if (std::string_view(rest) != "Z") return std::nullopt;  // dockerd writes UTC
  return point;
}

// Once a reply is long, the gate gathers dockerd's short pieces before it relays them
// (dockergate/gate.cc, gather_more): a long followed log must still reach the client whole and
// in order, and a line must come through when dockerd has it, not when more follows: two lines
// written 3 s apart after the burst each arrive within 2 s of their time stamps (a gate that held
// a short piece until more came would deliver the first with the second, 3 s late, and the
// second never). The burst's own lines are not timed: dockerd's follow may lag on them.
TEST_F(HostileClient, ALongFollowedLogArrivesWholeAndALateLineAtOnce) {
  const std::string container = name("chatty");
  constexpr int kLines = 150000;  // ~1 MiB of numbered lines, four times the gate's "long reply"
  const std::string last_line = std::to_string(kLines);
  Json body = good_create();
  body["Cmd"] = Json::array(
      {"sh", "-c",
       "busybox seq 1 " + last_line + "; sleep 3; echo late-line-1; sleep 3; echo late-line-2; exec sleep 3600"});
  const auto created = call_a("POST", "/containers/create?name=" + container, body.dump());
  ASSERT_EQ(created.status, 201) << created.raw;
  struct Removed {  // whatever the test ends with
    std::string container;
    ~Removed() { docker({"rm", "-f", container}); }
  } removed{container};
  const auto started = call_a("POST", "/containers/" + container + "/start");
  ASSERT_EQ(started.status, 204) << started.raw;

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, w().socket_a.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), 0) << strerror(errno);
  const std::string ask =
      request("GET", std::string(kApi) + "/containers/" + container + "/logs?follow=1&stdout=1&timestamps=1");
  ASSERT_EQ(send(fd.get(), ask.data(), ask.size(), MSG_NOSIGNAL), static_cast<ssize_t>(ask.size()));

  // Read until the second late line is in, noting when each came.
  const std::vector<std::string> watched = {" late-line-1\n", " late-line-2\n"};
  std::map<std::string, std::chrono::system_clock::time_point> arrived;
  std::string raw;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (arrived.size() < watched.size() && std::chrono::steady_clock::now() < deadline) {
    pollfd watch{fd.get(), POLLIN, 0};
    if (poll(&watch, 1, 1000) <= 0) continue;
    char buffer[65536];
    const ssize_t got = recv(fd.get(), buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    ASSERT_GT(got, 0) << "the gate ended the followed log; so far:\n" << raw.substr(0, 400);
    const auto now = std::chrono::system_clock::now();
    const std::size_t searched = raw.size() > 64 ? raw.size() - 64 : 0;  // a line may span two reads
    raw.append(buffer, static_cast<std::size_t>(got));
    for (const auto& line : watched)
      if (!arrived.contains(line) && raw.find(line, searched) != std::string::npos) arrived[line] = now;
  }
  ASSERT_EQ(arrived.size(), watched.size()) << "not every line within 60 s; " << raw.size() << " bytes came";

  const Reply reply = parse_reply(raw);
  ASSERT_EQ(reply.status, 200) << raw.substr(0, 400);
  std::string expected;
  for (int line = 1; line <= kLines; ++line) expected += std::to_string(line) + "\n";
  expected += "late-line-1\nlate-line-2\n";
  std::string text;                            // the lines without their time stamps
  std::map<std::string, std::string> stamped;  // watched line -> its time stamp
  for (const auto& line : lines_of(demultiplex(reply.body))) {
    const std::size_t space = line.find(' ');
    ASSERT_NE(space, std::string::npos) << "a line without a time stamp: " << line;
    text += line.substr(space + 1) + "\n";
    const std::string key = " " + line.substr(space + 1) + "\n";
    if (std::find(watched.begin(), watched.end(), key) != watched.end()) stamped[key] = line.substr(0, space);
  }
  EXPECT_TRUE(text == expected) << "the log came through changed: " << text.size() << " bytes of lines, "
                                << expected.size() << " expected";
  for (const auto& line : watched) {
    const auto written = parse_stamp(stamped[line]);
    ASSERT_TRUE(written) << "no time stamp on" << line << ": '" << stamped[line] << "'";
    // The gate adds about a millisecond; seconds mean a piece was held until more came.
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(arrived[line] - *written);
    EXPECT_LT(took, 2000ms) << "the line" << line << "took " << took.count() << " ms to come through the gate";
  }
}

// compose through the gate, as the worker runs it: DOCKER_HOST is A's socket.
void compose_through_the_gate(const ComposeProgram& program) {
  World& wd = *world;
  const std::string dir = wd.dir + "/compose-" + program.name;
  std::filesystem::create_directories(dir);
  std::filesystem::create_directories(wd.root_a + "/compose-" + program.name);
  std::ofstream(dir + "/compose.yaml") << "services:\n  app:\n    image: " << wd.image
                                       << "\n    command: [\"sleep\", \"3600\"]\n    volumes:\n      - " << wd.root_a
                                       << "/compose-" << program.name << ":/data\n";
  const std::vector<std::string> env = {"DOCKER_HOST=unix://" + wd.socket_a, "DOCKER_CONFIG=" + dir + "/config",
                                        "COMPOSE_PROJECT_NAME=", "COMPOSE_FILE="};
  auto compose = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = program.argv;
    argv.insert(argv.end(), {"-p", wd.a, "-f", dir + "/compose.yaml"});
    argv.insert(argv.end(), args.begin(), args.end());
    return run_with_env(env, argv);
  };
  const std::size_t log_offset = read_log().size();
  const auto up = compose({"up", "-d"});
  EXPECT_EQ(up.exit_code, 0) << "up -d:\n" << up.out << up.err;
  const auto ps = compose({"ps"});
  EXPECT_EQ(ps.exit_code, 0) << "ps:\n" << ps.out << ps.err;
  EXPECT_NE(ps.out.find(compose_container_name(program.major, wd.a, "app")), std::string::npos) << ps.out;
  const auto logs = compose({"logs"});
  EXPECT_EQ(logs.exit_code, 0) << "logs:\n" << logs.out << logs.err;
  const auto exec = compose({"exec", "-T", "app", "echo", "hi"});
  EXPECT_EQ(exec.exit_code, 0) << "exec:\n" << exec.out << exec.err;
  EXPECT_EQ(exec.out, "hi\n");
  const auto down = compose({"down"});
  EXPECT_EQ(down.exit_code, 0) << "down:\n" << down.out << down.err;
  const std::string service_filter = "label=com.docker.compose.service=app";
  const std::string project_filter = std::string("label=") + kProjectLabel + "=" + wd.a;
  EXPECT_TRUE(lines_of(docker({"ps", "-aq", "--filter", service_filter, "--filter", project_filter}).out).empty())
      << "down removed the container:\n"
      << down.out << down.err;
  EXPECT_NE(docker({"network", "inspect", wd.a + "_default"}).exit_code, 0) << "down removed the network";
  // What the gate refused meanwhile (compose asks for objects before making them: a 404 for a
  // network that does not exist yet is dockerd's own answer too), for the record.
  std::cout << "the gate's refusals during compose " << program.name << ":\n";
  for (const auto& line : lines_of(read_log().substr(log_offset)))
    if (line.find("refused") != std::string::npos) std::cout << "  " << line << "\n";
  // Whatever happened, nothing of the compose project is left for the next test.
  for (const auto& id : lines_of(docker({"ps", "-aq", "--filter", service_filter, "--filter", project_filter}).out))
    docker({"rm", "-f", id});
  docker({"network", "rm", wd.a + "_default"});
}

const ComposeProgram* find_compose(const std::string& name) {
  for (const auto& program : installed_compose_programs())
    if (program.name == name) return &program;
  return nullptr;
}

TEST_F(HostileClient, ComposeV2ThroughTheGate) {
  const auto* program = find_compose("v2");
  if (program == nullptr) GTEST_SKIP() << "no compose v2 on this host";
  compose_through_the_gate(*program);
}

TEST_F(HostileClient, ComposeV1ThroughTheGate) {
  const auto* program = find_compose("v1");
  if (program == nullptr) GTEST_SKIP() << "no docker-compose 1.x on this host";
  compose_through_the_gate(*program);
}

// Last: every refusal above left the gate serving.
TEST_F(HostileClient, StillServingAfterEveryRefusal) {
  const auto ping = send_a(request("GET", "/_ping"));
  EXPECT_EQ(ping.status, 200) << ping.raw;
  EXPECT_EQ(ping.body, "OK");
  EXPECT_EQ(send_raw(w().socket_b, request("GET", "/_ping")).status, 200);
}

}  // namespace
}  // namespace pgod::test
