// The docker gate's judges: what compose v1 and v2 really send passes; every way out of the
// project is refused by name. Bind sources are resolved on real directory trees.
#include "judge.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <utility>

namespace pgod::dockergate {
namespace {

// The daemon as a table: which objects carry this project's label.
class TableOwner : public Owner {
 public:
  std::set<std::string> containers = {"app-web-1", "app-db-1", "0123456789ab"};
  std::set<std::string> volumes = {"app_data", "app_cache"};
  std::set<std::string> networks = {"app_default", "app_back", "proxy"};

  bool owns_container(const std::string& id) override { return containers.count(id) > 0; }
  bool owns_volume(const std::string& name) override { return volumes.count(name) > 0; }
  bool may_join_network(const std::string& id) override { return networks.count(id) > 0; }
};

// A temporary tree: <root>/checkout and <root>/data are the bind roots, <root>/outside is not.
class TempTree {
 public:
  TempTree() {
    std::string pattern = (std::filesystem::temp_directory_path() / "judge-test-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    root_ = pattern;
    for (const char* dir : {"checkout", "checkout/conf", "data", "outside"})
      std::filesystem::create_directory(root_ + "/" + dir);
  }
  ~TempTree() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  const std::string& root() const { return root_; }
  std::string path(const std::string& relative) const { return root_ + "/" + relative; }
  void symlink(const std::string& target, const std::string& link) const {
    if (::symlink(target.c_str(), path(link).c_str()) != 0) throw std::runtime_error("symlink failed: " + link);
  }
  void file(const std::string& relative) const {
    FILE* out = fopen(path(relative).c_str(), "w");
    if (!out) throw std::runtime_error("fopen failed: " + relative);
    fclose(out);
  }

 private:
  std::string root_;
};

std::string reason(const Expected<Json, Refusal>& result) { return result ? std::string() : result.error().reason; }
std::string reason(const Expected<Query, Refusal>& result) { return result ? std::string() : result.error().reason; }

template <class Result>
void expect_refused(const Result& result, const std::string& part, int status = 403) {
  ASSERT_FALSE(result) << "expected a refusal containing: " << part;
  EXPECT_EQ(result.error().status, status) << result.error().reason;
  EXPECT_NE(result.error().reason.find(part), std::string::npos) << result.error().reason;
}

template <class Result>
void expect_passed(const Result& result) {
  EXPECT_TRUE(result) << reason(result);
}

class JudgeTest : public ::testing::Test {
 protected:
  JudgeTest() : service{"app", "app", {tree.path("checkout"), tree.path("data")}, {"proxy"}, {"other"}} {}

  // What compose v2 2.26 (the moby v26 client) sends for `web: {image: nginx, volumes:
  // [./conf:/etc/nginx/conf.d:ro, data:/data], restart: unless-stopped}`: every field Go
  // marshals, zero-valued ones included.
  Json compose_v2_body() const {
    Json body = Json::parse(R"({
      "Hostname": "", "Domainname": "", "User": "",
      "AttachStdin": false, "AttachStdout": true, "AttachStderr": true,
      "Tty": false, "OpenStdin": false, "StdinOnce": false,
      "Env": ["TZ=UTC"], "Cmd": null, "Image": "nginx:1.25", "Volumes": null, "WorkingDir": "",
      "Entrypoint": null, "OnBuild": null,
      "Labels": {
        "com.docker.compose.config-hash": "5d1c0e",
        "com.docker.compose.container-number": "1",
        "com.docker.compose.depends_on": "",
        "com.docker.compose.image": "sha256:aa11",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project": "app",
        "com.docker.compose.project.config_files": "/srv/app/compose.yaml",
        "com.docker.compose.project.working_dir": "/srv/app",
        "com.docker.compose.service": "web",
        "com.docker.compose.version": "2.26.1"
      },
      "HostConfig": {
        "Binds": ["CHECKOUT/conf:/etc/nginx/conf.d:ro"],
        "ContainerIDFile": "",
        "LogConfig": {"Type": "", "Config": null},
        "NetworkMode": "app_default",
        "PortBindings": {},
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
        "CapAdd": null, "CapDrop": null, "CgroupnsMode": "", "Dns": null, "DnsOptions": null,
        "DnsSearch": null, "ExtraHosts": [], "GroupAdd": null, "IpcMode": "", "Cgroup": "",
        "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
        "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
        "BlkioWeight": 0, "BlkioWeightDevice": null, "BlkioDeviceReadBps": null,
        "BlkioDeviceWriteBps": null, "BlkioDeviceReadIOps": null, "BlkioDeviceWriteIOps": null,
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": null, "DeviceCgroupRules": null,
        "DeviceRequests": null, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null,
        "OomKillDisable": false, "PidsLimit": null, "Ulimits": null, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Mounts": [{"Type": "volume", "Source": "app_data", "Target": "/data", "VolumeOptions": {}}],
        "MaskedPaths": null, "ReadonlyPaths": null
      },
      "NetworkingConfig": {
        "EndpointsConfig": {
          "app_default": {
            "IPAMConfig": null, "Links": null, "Aliases": ["app-web-1", "web"], "MacAddress": "",
            "DriverOpts": null, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": null
          }
        }
      }
    })");
    body["HostConfig"]["Binds"][0] = tree.path("checkout") + "/conf:/etc/nginx/conf.d:ro";
    return body;
  }

  // What compose v1 1.29 (docker-py) sends: only the keys it sets, None values dropped.
  Json compose_v1_body() const {
    Json body = Json::parse(R"({
      "Image": "nginx:1.25", "Tty": false, "OpenStdin": false, "StdinOnce": false,
      "AttachStdin": false, "AttachStdout": false, "AttachStderr": false, "NetworkDisabled": false,
      "Env": ["TZ=UTC"], "Volumes": {"/data": {}},
      "Labels": {"com.docker.compose.project": "app", "com.docker.compose.service": "web",
                 "com.docker.compose.oneoff": "False", "com.docker.compose.container-number": "1",
                 "com.docker.compose.version": "1.29.2", "com.docker.compose.config-hash": "ab12"},
      "HostConfig": {
        "NetworkMode": "app_default", "Binds": ["app_data:/data:rw"], "Links": [],
        "LogConfig": {"Type": "", "Config": {}}, "PortBindings": {}, "VolumesFrom": [],
        "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}, "ExtraHosts": []
      },
      "NetworkingConfig": {"EndpointsConfig": {"app_default": {"Aliases": ["web"], "IPAMConfig": {}, "Links": []}}}
    })");
    return body;
  }

  Expected<Json, Refusal> create(const Json& body, const std::string& name = "app-web-1") {
    return judge_container_create(context, body, name);
  }
  // The compose v2 body with one HostConfig field set.
  Expected<Json, Refusal> create_with(const std::string& field, const Json& value) {
    Json body = compose_v2_body();
    body["HostConfig"][field] = value;
    return create(body);
  }
  Expected<Json, Refusal> bind(const std::string& spec) { return create_with("Binds", Json::array({spec})); }
  Expected<Json, Refusal> mount(const Json& mount) { return create_with("Mounts", Json::array({mount})); }

  TempTree tree;
  GateService service;
  TableOwner owner;
  JudgeContext context{service, owner};
};

// ---------------------------------------------------------------------------------------------
// What compose sends passes, re-emitted from the judged fields

TEST_F(JudgeTest, ComposeV2SimpleServicePasses) {
  const Json body = compose_v2_body();
  const auto result = create(body);
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(*result, body);
}

TEST_F(JudgeTest, ComposeV1ServicePasses) {
  const Json body = compose_v1_body();
  const auto result = create(body, "app_web_1");
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(*result, body);
}

TEST_F(JudgeTest, NetworkModeNoneAndOwnContainerPass) {
  expect_passed(create_with("NetworkMode", "none"));
  expect_passed(create_with("NetworkMode", "container:0123456789ab"));
  expect_passed(create_with("PidMode", "container:app-db-1"));
  expect_passed(create_with("IpcMode", "container:app-db-1"));
  expect_passed(create_with("IpcMode", "shareable"));
}

TEST_F(JudgeTest, ConfinementThatStaysOnPasses) {
  expect_passed(create_with("SecurityOpt", Json::array({"no-new-privileges:true"})));
  expect_passed(create_with("SecurityOpt", Json::array({"no-new-privileges"})));
  expect_passed(create_with("SecurityOpt", Json::array({"apparmor=docker-default"})));
  expect_passed(create_with("SecurityOpt", Json::array({"label=level:s0:c100,c200"})));
  expect_passed(create_with("CapDrop", Json::array({"ALL"})));
  expect_passed(create_with("Sysctls", Json::parse(R"({"net.core.somaxconn": "1024", "kernel.shmmax": "1"})")));
  expect_passed(create_with("Ulimits", Json::parse(R"([{"Name": "nofile", "Soft": 1024, "Hard": 65536}])")));
  expect_passed(create_with("LogConfig", Json::parse(R"({"Type": "json-file", "Config": {"max-size": "10m"}})")));
  expect_passed(create_with("OomScoreAdj", 500));
  expect_passed(create_with("Isolation", "default"));
  expect_passed(create_with("Tmpfs", Json::parse(R"({"/run": "size=64m"})")));
}

// ---------------------------------------------------------------------------------------------
// One refusal per way out, by field

struct Escape {
  const char* field;  // in HostConfig
  const char* value;  // JSON
  const char* reason;
};

void PrintTo(const Escape& escape, std::ostream* out) { *out << escape.field << "=" << escape.value; }

class HostConfigEscapeTest : public JudgeTest, public ::testing::WithParamInterface<Escape> {};

TEST_P(HostConfigEscapeTest, IsRefusedByName) {
  const Escape& escape = GetParam();
  const auto result = create_with(escape.field, Json::parse(escape.value));
  expect_refused(result, std::string("HostConfig.") + escape.field);
  expect_refused(result, escape.reason);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, HostConfigEscapeTest,
    ::testing::Values(
        Escape{"Privileged", "true", "privileged containers are refused"},
        Escape{"CapAdd", R"(["SYS_ADMIN"])", "adding capabilities is refused"},
        Escape{"CapAdd", R"(["ALL"])", "adding capabilities is refused"},
        Escape{"Devices", R"([{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}])",
               "host devices are refused"},
        Escape{"DeviceRequests", R"([{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}])", "GPUs"},
        Escape{"DeviceCgroupRules", R"(["c *:* rwm"])", "device cgroup rules are refused"},
        Escape{"CgroupParent", R"("/")", "cgroup parent"}, Escape{"Runtime", R"("runc-unconfined")", "runtime"},
        Escape{"VolumeDriver", R"("nfs")", "volume drivers"},
        Escape{"PortBindings", R"({"80/tcp": [{"HostIp": "", "HostPort": "80"}]})", "published ports"},
        Escape{"PublishAllPorts", "true", "published ports"}, Escape{"MaskedPaths", "[]", "even [] unmasks /proc"},
        Escape{"ReadonlyPaths", "[]", "read-only paths"}, Escape{"OomKillDisable", "true", "OOM killer"},
        Escape{"CpuRealtimeRuntime", "950000", "real-time"}, Escape{"CpuRealtimePeriod", "1000000", "real-time"},
        Escape{"BlkioDeviceReadBps", R"([{"Path": "/dev/sda", "Rate": 1}])", "host devices"},
        Escape{"BlkioWeightDevice", R"([{"Path": "/dev/sda", "Weight": 10}])", "host devices"},
        Escape{"StorageOpt", R"({"size": "1T"})", "storage options"},
        Escape{"ContainerIDFile", R"("/etc/cid")", "host file"},
        Escape{"Annotations", R"({"io.kubernetes.cri.container-type": "sandbox"})", "annotations"},
        Escape{"Isolation", R"("hyperv")", "default isolation"}, Escape{"KernelMemory", "1024", "kernel memory"},
        Escape{"NetworkMode", R"("host")", "host network"}, Escape{"NetworkMode", R"("bridge")", "docker0"},
        Escape{"NetworkMode", R"("default")", "docker0"}, Escape{"NetworkMode", R"("")", "docker0"},
        Escape{"NetworkMode", R"("container:other-db-1")", "own containers"},
        Escape{"NetworkMode", R"("other_default")", "may not join"}, Escape{"PidMode", R"("host")", "PID namespace"},
        Escape{"PidMode", R"("container:other-db-1")", "own containers"}, Escape{"IpcMode", R"("host")", "host IPC"},
        Escape{"IpcMode", R"("container:other-db-1")", "own containers"}, Escape{"UTSMode", R"("host")", "host UTS"},
        Escape{"UsernsMode", R"("host")", "host user namespace"},
        Escape{"CgroupnsMode", R"("host")", "private cgroup namespace"},
        Escape{"Cgroup", R"("container:other-db-1")", "own containers"},
        Escape{"SecurityOpt", R"(["seccomp=unconfined"])", "disables seccomp"},
        Escape{"SecurityOpt", R"(["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"])", "custom seccomp"},
        Escape{"SecurityOpt", R"(["apparmor=unconfined"])", "only apparmor=docker-default"},
        Escape{"SecurityOpt", R"(["apparmor:unconfined"])", "only apparmor=docker-default"},
        // A profile the host may load with flags=(unconfined), and an unconfined SELinux type.
        Escape{"SecurityOpt", R"(["apparmor=unprivileged_userns"])", "only apparmor=docker-default"},
        Escape{"SecurityOpt", R"(["label=disable"])", "only label=level"},
        Escape{"SecurityOpt", R"(["label:type:spc_t"])", "only label=level"},
        Escape{"SecurityOpt", R"(["label=type:kernel_t"])", "only label=level"},
        Escape{"SecurityOpt", R"(["systempaths=unconfined"])", "masked kernel paths"},
        Escape{"SecurityOpt", R"(["no-new-privileges=false"])", "no-new-privileges off"},
        Escape{"SecurityOpt", R"(["writable-cgroups=true"])", "unknown security option"},
        Escape{"SecurityOpt", R"(["no-new-privileges", "apparmor=docker-default"])", "more than one"},
        Escape{"Sysctls", R"({"kernel.core_pattern": "|/tmp/x"})", "namespaced sysctls"},
        Escape{"Sysctls", R"({"vm.overcommit_memory": "1"})", "namespaced sysctls"},
        Escape{"Ulimits", R"([{"Name": "rtprio", "Soft": 99, "Hard": 99}])", "only nofile"},
        Escape{"Ulimits", R"([{"Name": "nofile", "Soft": -1, "Hard": -1}])", "finite"},
        Escape{"Ulimits", R"([{"Name": "nofile", "Soft": 1024, "Hard": 4294967296}])", "finite"},
        Escape{"LogConfig", R"({"Type": "syslog", "Config": {"syslog-address": "tcp://evil:514"}})", "logging drivers"},
        Escape{"LogConfig", R"({"Type": "", "Config": {"syslog-address": "tcp://evil:514"}})", "default logging"},
        Escape{"LogConfig", R"({"Type": "json-file", "Driver": "gelf"})", "unknown field"},
        Escape{"VolumesFrom", R"(["other-db-1:ro"])", "outside the project"},
        Escape{"Links", R"(["other-db-1:db"])", "outside the project"}, Escape{"OomScoreAdj", "-1000", "negative"},
        Escape{"privileged", "true", "unknown field"}, Escape{"Privileged ", "true", "unknown field"},
        Escape{"Binds", R"(["/var/run/docker.sock:/var/run/docker.sock"])", "system directories"},
        Escape{"Binds", R"(["/run/docker.sock:/var/run/docker.sock"])", "system directories"},
        Escape{"Binds", R"(["/:/host"])", "system directories"},
        Escape{"Binds", R"(["/var:/host"])", "system directories"},
        Escape{"Binds", R"(["/proc/1/root:/host"])", "system directories"},
        Escape{"Binds", R"(["/home:/host"])", "outside the service's directories"},
        Escape{"Binds", R"(["other_data:/data"])", "not the project's own"},
        Escape{"Binds", R"(["relative/dir:/data"])", "not the project's own"},
        Escape{"Mounts", R"([{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"}])",
               "system directories"},
        Escape{"Mounts", R"([{"Type": "bind", "Source": "/", "Target": "/host"}])", "system directories"},
        Escape{"Mounts", R"([{"Type": "volume", "Source": "other_data", "Target": "/data"}])", "not the project's own"},
        Escape{"Mounts", R"([{"Type": "npipe", "Source": "//./pipe/docker_engine", "Target": "/s"}])",
               "bind, volume or tmpfs"},
        Escape{"Mounts", R"([{"Type": "image", "Source": "alpine", "Target": "/i"}])", "bind, volume or tmpfs"},
        Escape{"Mounts", R"([{"Type": "tmpfs", "Source": "/etc", "Target": "/t"}])", "no source"},
        Escape{"Mounts", R"([{"Type": "volume", "Target": "/v", "VolumeOptions": {"DriverConfig":
               {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}])",
               "volume driver options"},
        Escape{"Mounts",
               R"([{"Type": "volume", "Target": "/v", "VolumeOptions": {"DriverConfig": {"Name": "rexray"}}}])",
               "local volume driver"},
        Escape{"Mounts", R"([{"Type": "volume", "Source": "app_data", "Target": "/v", "VolumeOptions":
               {"Subpath": "../../other_data"}}])",
               "inside the volume"},
        Escape{"Mounts", R"([{"Type": "volume", "Target": "/v", "VolumeOptions":
               {"Labels": {"com.docker.compose.project": "other"}}}])",
               "this service's project"},
        Escape{"Mounts", R"([{"Type": "volume", "Source": "app_data", "Target": "/v", "source": "other_data"}])",
               "unknown field"}));

// ---------------------------------------------------------------------------------------------
// Binds and mounts on real trees

TEST_F(JudgeTest, BindSourceIsSentResolved) {
  tree.symlink("conf", "checkout/current");
  const auto result = bind(tree.path("checkout/current") + ":/etc/nginx/conf.d:ro");
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ((*result)["HostConfig"]["Binds"][0], tree.path("checkout/conf") + ":/etc/nginx/conf.d:ro");
}

TEST_F(JudgeTest, BindSourcesInTheDataDirectoryAndMissingOnesPass) {
  expect_passed(bind(tree.path("data") + ":/data"));
  const auto result = bind(tree.path("data/not/yet") + ":/data:rw,z");
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ((*result)["HostConfig"]["Binds"][0], tree.path("data/not/yet") + ":/data:rw,z");
  expect_passed(bind("app_cache:/cache:nocopy"));
  expect_passed(bind("/anonymous"));
}

TEST_F(JudgeTest, SymlinkLeadingOutOfTheCheckoutIsRefused) {
  tree.symlink("/etc", "checkout/etc-link");
  expect_refused(bind(tree.path("checkout/etc-link") + ":/x"), "a system directory");
  tree.symlink("/", "checkout/root-link");
  expect_refused(bind(tree.path("checkout/root-link") + ":/x"), "a system directory");
  tree.symlink("../../outside", "checkout/conf/out");
  expect_refused(bind(tree.path("checkout/conf/out") + ":/x"), "outside the service's directories");
  tree.symlink("/run/docker.sock", "data/sock");
  expect_refused(mount({{"Type", "bind"}, {"Source", tree.path("data/sock")}, {"Target", "/s"}}), "a system directory");
}

TEST_F(JudgeTest, SymlinkLoopCannotBeJudged) {
  tree.symlink("b", "checkout/a");
  tree.symlink("a", "checkout/b");
  expect_refused(bind(tree.path("checkout/a") + ":/x"), "cannot be resolved");
}

TEST_F(JudgeTest, DotDotInABindSourceIsRefused) {
  expect_refused(bind(tree.path("checkout") + "/../outside:/x"), "'..'");
}

TEST_F(JudgeTest, SharedPropagationIsRefused) {
  expect_refused(bind(tree.path("data") + ":/data:rshared"), "propagation");
  expect_refused(bind(tree.path("data") + ":/data:ro,slave"), "propagation");
  expect_refused(bind(tree.path("data") + ":/data:exec"), "unknown bind option");
  expect_refused(mount({{"Type", "bind"},
                        {"Source", tree.path("data")},
                        {"Target", "/d"},
                        {"BindOptions", {{"Propagation", "rshared"}}}}),
                 "propagation");
  expect_refused(mount({{"Type", "bind"},
                        {"Source", tree.path("data/new")},
                        {"Target", "/d"},
                        {"BindOptions", {{"CreateMountpoint", true}}}}),
                 "CreateMountpoint");
}

TEST_F(JudgeTest, MountsPassAndBindsAreSentResolved) {
  tree.symlink(tree.path("data"), "checkout/data-link");
  const auto result = mount({{"Type", "bind"},
                             {"Source", tree.path("checkout/data-link")},
                             {"Target", "/d"},
                             {"ReadOnly", true},
                             {"BindOptions", {{"Propagation", "rprivate"}}}});
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ((*result)["HostConfig"]["Mounts"][0]["Source"], tree.path("data"));
  expect_passed(mount({{"Type", "tmpfs"}, {"Target", "/tmp"}, {"TmpfsOptions", {{"SizeBytes", 1 << 20}}}}));
  expect_passed(mount({{"Type", "volume"}, {"Target", "/anon"}}));
  expect_passed(mount({{"Type", "volume"},
                       {"Source", "app_data"},
                       {"Target", "/v"},
                       {"VolumeOptions", {{"NoCopy", true}, {"Subpath", "sub/dir"}}}}));
}

// ---------------------------------------------------------------------------------------------
// Names, labels, unknown fields, networks

TEST_F(JudgeTest, NameAndLabelMustBeTheProjects) {
  expect_refused(create(compose_v2_body(), "other-web-1"), "query name");
  expect_refused(create(compose_v2_body(), ""), "query name");
  expect_refused(create(compose_v2_body(), "app"), "query name");
  Json body = compose_v2_body();
  body["Labels"]["com.docker.compose.project"] = "other";
  expect_refused(create(body), "Labels.com.docker.compose.project");
  body["Labels"].erase("com.docker.compose.project");
  expect_refused(create(body), "Labels.com.docker.compose.project");
  body.erase("Labels");
  expect_refused(create(body), "Labels.com.docker.compose.project");
}

TEST_F(JudgeTest, UnknownFieldsAreRefusedByName) {
  Json body = compose_v2_body();
  body["Runtime"] = "nvidia";  // docker-py's spelling at the top: not a Config field
  expect_refused(create(body), "Runtime");
  body = compose_v2_body();
  body["image"] = "other";  // Go would take it for Image
  expect_refused(create(body), "image: \"other\": unknown field");
  body = compose_v2_body();
  body["hostConfig"] = Json::object();
  expect_refused(create(body), "hostConfig");
  body = compose_v2_body();
  body["Healthcheck"] = {{"Test", {"CMD", "true"}}, {"Privileged", true}};
  expect_refused(create(body), "Healthcheck.Privileged");
}

TEST_F(JudgeTest, MissingNetworkModeIsTheSharedBridge) {
  Json body = compose_v2_body();
  body["HostConfig"].erase("NetworkMode");
  expect_refused(create(body), "HostConfig.NetworkMode");
  body.erase("HostConfig");
  expect_refused(create(body), "HostConfig.NetworkMode");
}

TEST_F(JudgeTest, EndpointsOnlyOnNetworksTheProjectMayJoin) {
  Json body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["other_default"] = Json::object();
  expect_refused(create(body), "NetworkingConfig.EndpointsConfig.other_default");
  body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["host"] = nullptr;
  expect_refused(create(body), "host and default bridge");
  body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["app_default"]["MacAddress"] = "02:42:ac:11:00:02";
  expect_refused(create(body), "MAC address");
  body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["app_default"]["DriverOpts"] = {{"com.docker.network.x", "1"}};
  expect_refused(create(body), "driver options");
  body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["app_default"]["Links"] = {"other-db-1:db"};
  expect_refused(create(body), "outside the project");
}

TEST_F(JudgeTest, SharedNetworksGetOnlyTheProjectsNames) {
  Json body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["proxy"] = {{"Aliases", {"app-web-1", "web", "db"}}};
  const auto result = create(body);
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ((*result)["NetworkingConfig"]["EndpointsConfig"]["proxy"]["Aliases"], Json({"app-web-1"}));
  EXPECT_EQ((*result)["NetworkingConfig"]["EndpointsConfig"]["app_default"]["Aliases"], Json({"app-web-1", "web"}));

  body["NetworkingConfig"]["EndpointsConfig"]["proxy"]["IPAMConfig"] = {{"IPv4Address", "172.30.0.5"}};
  expect_refused(create(body), "fixed address on a shared network");
  body["NetworkingConfig"]["EndpointsConfig"]["proxy"].erase("IPAMConfig");
  body["NetworkingConfig"]["EndpointsConfig"]["proxy"]["IPAddress"] = "172.30.0.5";
  expect_refused(create(body), "fixed address on a shared network");

  body = compose_v2_body();
  body["NetworkingConfig"]["EndpointsConfig"]["app_default"]["IPAMConfig"] = {{"IPv4Address", "172.30.0.5"}};
  body["NetworkingConfig"]["EndpointsConfig"]["app_default"]["IPAddress"] = "172.30.0.5";
  expect_passed(create(body));
}

TEST_F(JudgeTest, HostnameOnASharedNetworkMustBeTheProjects) {
  Json body = compose_v2_body();
  body["Hostname"] = "db";
  expect_passed(create(body));
  body["NetworkingConfig"]["EndpointsConfig"]["proxy"] = nullptr;
  expect_refused(create(body), "Hostname");
  body["Hostname"] = "app-web";
  expect_passed(create(body));
}

// ---------------------------------------------------------------------------------------------
// resolve_bind_source on real trees

TEST_F(JudgeTest, ResolveFollowsLinksLikeTheKernel) {
  const std::string root = tree.root();
  EXPECT_EQ(resolve_bind_source(root + "/checkout/conf"), root + "/checkout/conf");
  EXPECT_EQ(resolve_bind_source(root + "//checkout/./conf/"), root + "/checkout/conf");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/missing/a/b"), root + "/checkout/missing/a/b");
  EXPECT_EQ(resolve_bind_source("/"), "/");
  EXPECT_EQ(resolve_bind_source("/.."), "/");

  tree.symlink("/", "checkout/to-root");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/to-root"), "/");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/to-root/etc"), resolve_bind_source("/etc"));

  tree.symlink("conf", "checkout/relative");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/relative/x"), root + "/checkout/conf/x");

  tree.symlink(root + "/data", "checkout/absolute");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/absolute"), root + "/data");

  // ".." in a link's target is taken from where the link is, physically.
  tree.symlink("../../outside", "checkout/conf/up");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/conf/up"), root + "/outside");
  // A link pointing back inside, through a link.
  tree.symlink("../relative/../conf", "checkout/conf/back");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/conf/back"), root + "/checkout/conf");
  // ".." after a link is the link target's parent, not the link's.
  EXPECT_EQ(resolve_bind_source(root + "/checkout/absolute/.."), root);

  // A dangling link: its target, created as written.
  tree.symlink(root + "/outside/new", "checkout/dangling");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/dangling/x"), root + "/outside/new/x");
}

TEST_F(JudgeTest, ResolveRefusesWhatCannotBeJudged) {
  const std::string root = tree.root();
  tree.symlink("loop-b", "checkout/loop-a");
  tree.symlink("loop-a", "checkout/loop-b");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/loop-a"), std::nullopt);
  tree.symlink("self/x", "checkout/self");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/self"), std::nullopt);
  tree.file("checkout/file");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/file"), root + "/checkout/file");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/file/x"), std::nullopt);
  EXPECT_EQ(resolve_bind_source(root + "/checkout/missing/../x"), std::nullopt);
  EXPECT_EQ(resolve_bind_source("relative/path"), std::nullopt);
  EXPECT_EQ(resolve_bind_source(""), std::nullopt);
  // 40 links are followed, the 41st is not (ELOOP).
  for (int i = 0; i < 41; ++i) tree.symlink("chain" + std::to_string(i + 1), "checkout/chain" + std::to_string(i));
  std::filesystem::create_directory(tree.path("checkout/chain41"));
  EXPECT_EQ(resolve_bind_source(root + "/checkout/chain1"), root + "/checkout/chain41");
  EXPECT_EQ(resolve_bind_source(root + "/checkout/chain0"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Exec

TEST_F(JudgeTest, ExecIsNeverPrivileged) {
  const Json body = Json::parse(R"({"User": "", "Privileged": false, "Tty": true, "ConsoleSize": [24, 80],
      "AttachStdin": true, "AttachStderr": true, "AttachStdout": true, "Detach": false, "DetachKeys": "",
      "Env": null, "WorkingDir": "", "Cmd": ["sh"]})");
  const auto result = judge_exec_create(context, body);
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(*result, body);
  Json privileged = body;
  privileged["Privileged"] = true;
  expect_refused(judge_exec_create(context, privileged), "Privileged: true: privileged execs are refused");
  Json lower = body;
  lower["privileged"] = true;
  expect_refused(judge_exec_create(context, lower), "privileged: true: unknown field");
  expect_refused(judge_exec_create(context, Json::array()), "malformed", 400);
}

// ---------------------------------------------------------------------------------------------
// Networks and volumes

Json network_body() {
  return Json::parse(R"({"Name": "app_default", "CheckDuplicate": true, "Driver": "bridge", "Scope": "",
      "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": []}, "Internal": false,
      "Attachable": false,
      "Ingress": false, "ConfigOnly": false, "ConfigFrom": null, "Options": {"com.docker.network.driver.mtu": "1400"},
      "Labels": {"com.docker.compose.network": "default", "com.docker.compose.project": "app",
      "com.docker.compose.version": "2.26.1"}})");
}

TEST_F(JudgeTest, NetworkCreateAsComposeSendsItPasses) {
  const Json body = network_body();
  const auto result = judge_network_create(context, body);
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(*result, body);
  // compose v1: driver omitted, no IPAM.
  expect_passed(judge_network_create(
      context,
      Json::parse(R"({"Name": "app_back", "Labels": {"com.docker.compose.project": "app"}, "Internal": true})")));
}

TEST_F(JudgeTest, NetworkCreateEscapesAreRefused) {
  const auto with = [&](const std::string& field, const Json& value) {
    Json body = network_body();
    body[field] = value;
    return judge_network_create(context, body);
  };
  expect_refused(with("Name", "other_default"), "Name: \"other_default\"");
  expect_refused(with("Name", "proxy"), "Name");
  expect_refused(with("Labels", {{"com.docker.compose.project", "other"}}), "Labels.com.docker.compose.project");
  expect_refused(with("Driver", "macvlan"), "bridge network driver");
  expect_refused(with("Driver", "host"), "bridge network driver");
  expect_refused(with("Options", {{"com.docker.network.bridge.name", "docker0"}}), "MTU");
  expect_refused(with("Options", {{"parent", "eth0"}}), "MTU");
  expect_refused(with("Ingress", true), "ingress");
  expect_refused(with("ConfigOnly", true), "configuration-only");
  expect_refused(with("ConfigFrom", {{"Network", "other_cfg"}}), "another's configuration");
  expect_refused(with("Scope", "swarm"), "local networks");
  expect_refused(with("IPAM", {{"Driver", "dhcp"}}), "default IPAM driver");
  expect_refused(with("IPAM", {{"Options", {{"x", "y"}}}}), "IPAM driver options");
  // A chosen subnet is routed on the host: it could take a LAN range, a resolver or NFS server.
  for (const char* field : {"Subnet", "IPRange", "Gateway"})
    expect_refused(with("IPAM", {{"Config", Json::array({{{field, "10.0.5.20/30"}}})}}), "dockerd's pools only");
  expect_refused(with("driver", "macvlan"), "unknown field");
}

TEST_F(JudgeTest, NetworkConnectOnlyTheProjectsContainers) {
  const Json body = Json::parse(R"({"Container": "app-web-1", "EndpointConfig": {"Aliases": ["web", "app-web-1"],
      "IPAMConfig": {"IPv4Address": "172.30.0.9"}}})");
  const auto own = judge_network_connect(context, body, "app_back");
  ASSERT_TRUE(own) << reason(own);
  EXPECT_EQ(*own, body);
  Json other = body;
  other["Container"] = "other-web-1";
  expect_refused(judge_network_connect(context, other, "app_back"), "Container");
  expect_refused(judge_network_connect(context, body, "proxy"), "fixed address on a shared network");
  expect_refused(judge_network_connect(context, body), "fixed address on a shared network");
  Json shared = body;
  shared["EndpointConfig"].erase("IPAMConfig");
  const auto on_proxy = judge_network_connect(context, shared, "proxy");
  ASSERT_TRUE(on_proxy) << reason(on_proxy);
  EXPECT_EQ((*on_proxy)["EndpointConfig"]["Aliases"], Json({"app-web-1"}));
  expect_passed(judge_network_connect(context, Json::parse(R"({"Container": "app-web-1", "Force": false})")));
}

TEST_F(JudgeTest, VolumeCreate) {
  const Json body = Json::parse(R"({"Name": "app_data", "Driver": "local", "DriverOpts": {},
      "Labels": {"com.docker.compose.project": "app", "com.docker.compose.volume": "data"}})");
  const auto result = judge_volume_create(context, body);
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(*result, body);
  const auto with = [&](const std::string& field, const Json& value) {
    Json changed = body;
    changed[field] = value;
    return judge_volume_create(context, changed);
  };
  expect_refused(with("Name", "other_data"), "Name");
  expect_refused(with("Name", ""), "Name");
  expect_refused(with("Labels", Json::object()), "Labels.com.docker.compose.project");
  expect_refused(with("Driver", "rexray"), "local volume driver");
  expect_refused(with("DriverOpts", {{"type", "none"}, {"o", "bind"}, {"device", "/etc"}}), "driver options");
  expect_refused(with("DriverOpts", {{"type", "nfs"}, {"o", "addr=10.0.0.1"}, {"device", ":/export"}}),
                 "driver options");
  expect_refused(with("ClusterVolumeSpec", {{"Group", "x"}}), "cluster volumes");
}

// ---------------------------------------------------------------------------------------------
// Queries

TEST_F(JudgeTest, ClassicBuildAsComposeSendsItPasses) {
  const Query query = {{"t", "app-web"},
                       {"t", "app-web:1.2"},
                       {"rm", "1"},
                       {"dockerfile", "docker/Dockerfile"},
                       {"networkmode", ""},
                       {"buildargs", R"({"VERSION":"1","EMPTY":null})"},
                       {"labels", R"({"com.docker.compose.project":"app"})"},
                       {"cachefrom", R"(["app-web:latest"])"},
                       {"ulimits", R"([{"Name":"nofile","Hard":1024,"Soft":1024}])"},
                       {"pull", "1"},
                       {"memory", "0"},
                       {"cgroupparent", ""},
                       {"securityopt", ""},
                       {"version", "1"},
                       {"platform", "linux/amd64"}};
  const auto result = judge_build_query(context, query);
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(*result, query);
}

TEST_F(JudgeTest, BuildEscapesAreRefused) {
  const auto build = [&](Query query) { return judge_build_query(context, query); };
  expect_refused(build({{"version", "2"}}), "BuildKit");
  expect_refused(build({{"session", "abc"}}), "BuildKit");
  expect_refused(build({{"remote", "https://example.com/ctx.tar"}}), "remote build contexts");
  expect_refused(build({{"remote", ""}, {"remote", "git://example.com/r"}}), "given twice");
  expect_refused(build({{"networkmode", "host"}}), "host's");
  expect_refused(build({{"networkmode", "container:other-db-1"}}), "host's");
  expect_refused(build({{"t", "app-web"}, {"t", "other-web:latest"}}), "query t: \"other-web:latest\"");
  expect_refused(build({{"t", "nginx:1.25"}}), "replace that image");
  expect_refused(build({{"t", "registry.example.com/app-web"}}), "replace that image");
  expect_refused(build({{"dockerfile", "../Dockerfile"}}), "inside the context");
  expect_refused(build({{"dockerfile", "/etc/passwd"}}), "inside the context");
  expect_refused(build({{"outputs", R"([{"Type":"local","Attrs":{"dest":"/"}}])"}}), "build outputs");
  expect_refused(build({{"cgroupparent", "/"}}), "cgroup parent");
  expect_refused(build({{"isolation", "hyperv"}}), "default isolation");
  expect_refused(build({{"ulimits", R"([{"Name":"rtprio","Hard":99,"Soft":99}])"}}), "only nofile");
  expect_refused(build({{"buildargs", "not json"}}), "malformed", 400);
  expect_refused(build({{"Remote", "https://example.com"}}), "unknown parameter");
}

TEST_F(JudgeTest, TagOnlyIntoTheProjectsNames) {
  expect_passed(judge_tag_query(context, {{"repo", "app-web"}, {"tag", "v1.2"}}));
  expect_passed(judge_tag_query(context, {{"repo", "app_web"}}));
  expect_refused(judge_tag_query(context, {{"repo", "other-web"}, {"tag", "latest"}}), "replace that image");
  expect_refused(judge_tag_query(context, {{"repo", "nginx"}, {"tag", "latest"}}), "replace that image");
  // Starting with the project's name is not enough: a slash makes it a registry's or namespace's.
  expect_refused(judge_tag_query(context, {{"repo", "app-registry.example/team/web"}, {"tag", "prod"}}),
                 "no registry or namespace");
  expect_refused(judge_tag_query(context, {{"repo", "app-team/web"}}), "no registry or namespace");
  expect_refused(judge_build_query(context, {{"t", "app-registry.example/team/web:prod"}}), "no registry or namespace");
  expect_refused(judge_tag_query(context, {{"repo", "app-web"}, {"tag", "a/b"}}), "a tag is");
  expect_refused(judge_tag_query(context, {{"repo", "app-web"}, {"tag", std::string(129, 'a')}}), "a tag is");
  expect_refused(judge_tag_query(context, {{"tag", "latest"}}), "must be given");
}

TEST_F(JudgeTest, PullOnly) {
  expect_passed(judge_pull_query(context, {{"fromImage", "nginx"}, {"tag", "1.25"}, {"platform", ""}}));
  expect_refused(judge_pull_query(context, {{"fromSrc", "-"}, {"repo", "app-web"}}), "importing an image");
  expect_refused(judge_pull_query(context, {{"fromImage", "nginx"}, {"changes", "CMD x"}}), "importing an image");
}

TEST_F(JudgeTest, ListsAreScopedToTheProject) {
  const auto filters_of = [](const Query& query) {
    for (const auto& [name, value] : query)
      if (name == "filters") return Json::parse(value);
    return Json();
  };
  auto result = scope_list_query(context, {{"all", "1"}});
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(filters_of(*result), Json::parse(R"({"label": ["com.docker.compose.project=app"]})"));
  EXPECT_EQ(result->front(), (std::pair<std::string, std::string>("all", "1")));

  result = scope_list_query(context,
                            {{"filters", R"({"label": ["com.docker.compose.service=web"], "status": ["running"]})"}});
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(filters_of(*result),
            Json::parse(R"({"label": ["com.docker.compose.service=web", "com.docker.compose.project=app"],
                            "status": ["running"]})"));

  // The older form, as docker-py sends it.
  result = scope_list_query(context, {{"filters", R"({"label": {"com.docker.compose.project=other": true}})"}});
  ASSERT_TRUE(result) << reason(result);
  EXPECT_EQ(filters_of(*result),
            Json::parse(R"({"label": ["com.docker.compose.project=other", "com.docker.compose.project=app"]})"));

  expect_refused(scope_list_query(context, {{"filters", "[1]"}}), "malformed", 400);
  expect_refused(scope_list_query(context, {{"filters", R"({"label": "x"})"}}), "malformed", 400);
  expect_refused(scope_list_query(context, {{"filters", "{}"}, {"filters", R"({"label": ["x"]})"}}), "given twice");
  expect_refused(scope_list_query(context, {{"stream", "1"}}), "unknown parameter");
}

}  // namespace
}  // namespace pgod::dockergate
