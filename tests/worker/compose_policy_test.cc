#include "compose_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "compose_programs.h"
#include "process.h"

namespace pgod::worker {
namespace {

namespace fs = std::filesystem;
using pgod::test::ComposeProgram;
using pgod::test::debian_codename;
using pgod::test::installed_compose_programs;
using pgod::test::run_process;
using pgod::test::TempDir;

constexpr char kCheckout[] = "/srv/pgo/web";
constexpr char kDataDir[] = "/srv/data/web";

// An imaginary host without symlinks: paths resolve to themselves. Real symlinks are tested
// further down with the default resolver on temporary directories.
PolicyContext fake_context() {
  PolicyContext context;
  context.service = "web";
  context.checkout_dir = kCheckout;
  context.data_dir = kDataDir;
  context.resolve = [](const std::string& path) { return path; };
  return context;
}

// A model as docker-compose 1.29.2 `config` writes it (keys sorted, `version` last): one
// service "web" with `body` (indented four spaces), then the top-level `extra`.
std::string v1(const std::string& body, const std::string& extra = "") {
  return "services:\n  web:\n    image: web-app\n" + body + "version: '3.8'\n" + extra;
}

// The same as `docker compose config` (v2) begins it: a top-level name instead of a version.
std::string v2(const std::string& body, const std::string& extra = "") {
  return "name: web\nservices:\n  web:\n    image: web-app\n" + body + extra;
}

std::vector<Violation> violations_of(const std::string& yaml, const PolicyContext& context = fake_context()) {
  auto result = check_compose_policy(yaml, context);
  EXPECT_TRUE(result.has_value()) << (result.has_value() ? "" : result.error()) << "\nin:\n" << yaml;
  return result.has_value() ? *result : std::vector<Violation>{};
}

std::string describe(const std::vector<Violation>& violations) {
  std::string out;
  for (const auto& violation : violations) out += "  " + violation.to_string() + "\n";
  return out.empty() ? "  (none)\n" : out;
}

// gtest names from the cases' labels.
template <class Case>
std::string test_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name = info.param.label;
  std::replace_if(
      name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return name;
}

// ---------------------------------------------------------------------------------------------
// One row per rule: the model must give exactly one violation, for this service, key and value.

struct RefusedCase {
  std::string label;
  std::string yaml;
  std::string service;  // "" for a top-level key
  std::string key;
  std::string value;   // a part of the violation's value (maps are rendered in flow style)
  std::string reason;  // a part of the reason
  std::vector<std::string> allowed_networks = {};
  std::string data_dir = kDataDir;
};

void PrintTo(const RefusedCase& c, std::ostream* out) { *out << c.label; }

class Refused : public ::testing::TestWithParam<RefusedCase> {};

TEST_P(Refused, NamesServiceKeyAndValue) {
  const auto& c = GetParam();
  auto context = fake_context();
  context.allowed_networks = c.allowed_networks;
  context.data_dir = c.data_dir;
  const auto violations = violations_of(c.yaml, context);
  ASSERT_EQ(violations.size(), 1u) << "got:\n" << describe(violations) << "in:\n" << c.yaml;
  const auto& violation = violations.front();
  EXPECT_EQ(violation.compose_service, c.service) << violation.to_string();
  EXPECT_EQ(violation.key, c.key) << violation.to_string();
  EXPECT_NE(violation.value.find(c.value), std::string::npos) << violation.to_string();
  EXPECT_NE(violation.reason.find(c.reason), std::string::npos) << violation.to_string();
}

const std::vector<std::string> kProxyOnly = {"reverseproxy"};

RefusedCase with_data_dir(const std::string& data_dir, RefusedCase c) {
  c.data_dir = data_dir;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    ServiceKeys, Refused,
    ::testing::Values(
        RefusedCase{"privileged", v1("    privileged: true\n"), "web", "privileged", "true", "privileged"},
        RefusedCase{"privileged odd spelling", v2("    privileged: 'maybe'\n"), "web", "privileged", "maybe",
                    "privileged"},
        RefusedCase{"network_mode host", v1("    network_mode: host\n"), "web", "network_mode", "host", "network_mode"},
        RefusedCase{"network_mode HOST", v1("    network_mode: HOST\n"), "web", "network_mode", "HOST", "network_mode"},
        RefusedCase{"network_mode Host", v2("    network_mode: Host\n"), "web", "network_mode", "Host", "network_mode"},
        RefusedCase{"network_mode hOsT", v2("    network_mode: hOsT\n"), "web", "network_mode", "hOsT", "network_mode"},
        RefusedCase{"network_mode container", v1("    network_mode: container:other\n"), "web", "network_mode",
                    "container:other", "network_mode"},
        RefusedCase{"network_mode bridge", v1("    network_mode: bridge\n"), "web", "network_mode", "bridge", ""},
        RefusedCase{"network_mode service elsewhere", v1("    network_mode: service:db\n"), "web", "network_mode",
                    "service:db", "service of this project"},
        RefusedCase{"ipc host", v1("    ipc: host\n"), "web", "ipc", "host", "IPC"},
        RefusedCase{"ipc shareable", v1("    ipc: shareable\n"), "web", "ipc", "shareable", "IPC"},
        RefusedCase{"pid host", v1("    pid: host\n"), "web", "pid", "host", "PID"},
        RefusedCase{"pid container", v2("    pid: container:other\n"), "web", "pid", "container:other", "PID"},
        RefusedCase{"userns_mode host", v1("    userns_mode: HOST\n"), "web", "userns_mode", "HOST", "user namespace"},
        RefusedCase{"uts host", v2("    uts: host\n"), "web", "uts", "host", "UTS"},
        RefusedCase{"cgroup host", v2("    cgroup: host\n"), "web", "cgroup", "host", "cgroup"},
        RefusedCase{"cgroup_parent", v1("    cgroup_parent: system.slice\n"), "web", "cgroup_parent", "system.slice",
                    ""},
        RefusedCase{"device_cgroup_rules", v1("    device_cgroup_rules:\n    - c 1:3 mr\n"), "web",
                    "device_cgroup_rules", "c 1:3 mr", ""},
        RefusedCase{"runtime", v1("    runtime: runc\n"), "web", "runtime", "runc", "runtime"},
        RefusedCase{"oom_score_adj negative", v1("    oom_score_adj: -500\n"), "web", "oom_score_adj", "-500", ""},
        RefusedCase{"oom_score_adj not a number", v2("    oom_score_adj: lots\n"), "web", "oom_score_adj", "lots", ""},
        RefusedCase{"cap_add", v1("    cap_add:\n    - NET_ADMIN\n"), "web", "cap_add", "NET_ADMIN", "capabilities"},
        RefusedCase{"devices v1", v1("    devices:\n    - /dev/sda:/dev/sda\n"), "web", "devices", "/dev/sda",
                    "devices"},
        RefusedCase{"devices v2",
                    v2("    devices:\n      - source: /dev/sda\n        target: /dev/sda\n"
                       "        permissions: rwm\n"),
                    "web", "devices", "/dev/sda", "devices"},
        RefusedCase{"gpus", v2("    gpus: all\n"), "web", "gpus", "all", "devices"},
        RefusedCase{"storage_opt", v1("    storage_opt:\n      size: 1G\n"), "web", "storage_opt", "1G", "storage"},
        RefusedCase{"ports v1 string", v1("    ports:\n    - 127.0.0.1:9000:9000/udp\n"), "web", "ports",
                    "127.0.0.1:9000:9000/udp", "ports"},
        RefusedCase{"ports v1 long", v1("    ports:\n    - published: 8080\n      target: 80\n"), "web", "ports",
                    "8080", "ports"},
        RefusedCase{"ports v2",
                    v2("    ports:\n      - mode: ingress\n        target: 80\n        published: \"8080\"\n"
                       "        protocol: tcp\n"),
                    "web", "ports", "8080", "ports"},
        RefusedCase{"security_opt two",
                    v1("    security_opt:\n    - no-new-privileges:true\n    - apparmor=docker-default\n"), "web",
                    "security_opt", "no-new-privileges:true", "more than one"},
        RefusedCase{"seccomp equals unconfined", v2("    security_opt:\n      - seccomp=unconfined\n"), "web",
                    "security_opt", "seccomp=unconfined", "seccomp"},
        RefusedCase{"seccomp colon unconfined", v1("    security_opt:\n    - seccomp:unconfined\n"), "web",
                    "security_opt", "seccomp:unconfined", "seccomp"},
        RefusedCase{"seccomp profile", v1("    security_opt:\n    - seccomp=/srv/pgo/web/all.json\n"), "web",
                    "security_opt", "all.json", "custom seccomp"},
        RefusedCase{"apparmor equals unconfined", v1("    security_opt:\n    - apparmor=unconfined\n"), "web",
                    "security_opt", "apparmor=unconfined", "AppArmor"},
        RefusedCase{"apparmor colon unconfined", v2("    security_opt:\n      - apparmor:unconfined\n"), "web",
                    "security_opt", "apparmor:unconfined", "AppArmor"},
        RefusedCase{"label equals disable", v1("    security_opt:\n    - label=disable\n"), "web", "security_opt",
                    "label=disable", "SELinux"},
        RefusedCase{"label colon disable", v2("    security_opt:\n      - label:disable\n"), "web", "security_opt",
                    "label:disable", "SELinux"},
        RefusedCase{"systempaths equals unconfined", v1("    security_opt:\n    - systempaths=unconfined\n"), "web",
                    "security_opt", "systempaths=unconfined", "masked"},
        RefusedCase{"unknown security option", v1("    security_opt:\n    - writable-cgroups=true\n"), "web",
                    "security_opt", "writable-cgroups", "unknown"},
        RefusedCase{"volumes_from container v1", v1("    volumes_from:\n    - container:other:rw\n"), "web",
                    "volumes_from", "container:other:rw", "containers outside"},
        RefusedCase{"volumes_from container v2", v2("    volumes_from:\n      - container:other\n"), "web",
                    "volumes_from", "container:other", "containers outside"},
        RefusedCase{"volumes_from unknown", v2("    volumes_from:\n      - otherproject_db_1\n"), "web", "volumes_from",
                    "otherproject_db_1", "not a service"},
        RefusedCase{"env_file outside v2",
                    v2("    env_file:\n      - path: /srv/pgo/other/.env\n        required: true\n"), "web", "env_file",
                    "/srv/pgo/other/.env", "outside"},
        RefusedCase{"env_file under etc", v2("    env_file:\n      - /etc/environment\n"), "web", "env_file",
                    "/etc/environment", "system directories"},
        RefusedCase{"build context outside", v1("    build:\n      context: /srv/pgo/other\n"), "web", "build.context",
                    "/srv/pgo/other", "outside the checkout"},
        RefusedCase{"build additional context root",
                    v2("    build:\n      context: /srv/pgo/web\n      additional_contexts:\n        h: /\n"), "web",
                    "build.additional_contexts", "/", ""},
        RefusedCase{
            "build additional context list form",
            v2("    build:\n      context: /srv/pgo/web\n      additional_contexts:\n        - h=/srv/pgo/other\n"),
            "web", "build.additional_contexts", "h=/srv/pgo/other", "outside the checkout"},
        RefusedCase{"build ssh", v2("    build:\n      context: /srv/pgo/web\n      ssh:\n        - default\n"), "web",
                    "build.ssh", "", "forwarding ssh keys"},
        RefusedCase{"build context in data dir", v1("    build:\n      context: /srv/data/web/app\n"), "web",
                    "build.context", "/srv/data/web/app", "outside the checkout"},
        RefusedCase{"dockerfile outside",
                    v2("    build:\n      context: /srv/pgo/web/app\n"
                       "      dockerfile: ../../other/Dockerfile\n"),
                    "web", "build.dockerfile", "../../other/Dockerfile", "outside the checkout"},
        RefusedCase{"build network host", v2("    build:\n      context: /srv/pgo/web\n      network: HOST\n"), "web",
                    "build.network", "HOST", "host"},
        RefusedCase{"build privileged", v2("    build:\n      context: /srv/pgo/web\n      privileged: true\n"), "web",
                    "build.privileged", "true", "privileged"},
        RefusedCase{"single network with allowed list v2",
                    v2("    networks:\n      proxy: null\n",
                       "networks:\n  proxy:\n    external: true\n    name: reverseproxy\n"),
                    "web", "networks", "proxy", "at least two", kProxyOnly},
        RefusedCase{"no networks with allowed list v1", v1(""), "web", "networks", "default", "at least two",
                    kProxyOnly},
        RefusedCase{"undeclared network", v1("    networks:\n      backend: null\n      default: null\n"), "web",
                    "networks", "backend", "not declared"}),
    test_name<RefusedCase>);

INSTANTIATE_TEST_SUITE_P(
    Volumes, Refused,
    ::testing::Values(
        RefusedCase{"npipe v2",
                    v2("    volumes:\n      - type: npipe\n        source: //./pipe/docker_engine\n"
                       "        target: //./pipe/docker_engine\n"),
                    "web", "volumes", "npipe", "only volumes of type"},
        RefusedCase{"bind outside v1", v1("    volumes:\n    - /srv/other:/x:rw\n"), "web", "volumes",
                    "/srv/other:/x:rw", "outside"},
        RefusedCase{"bind outside v2",
                    v2("    volumes:\n      - type: bind\n        source: /srv/other\n"
                       "        target: /x\n        bind:\n          create_host_path: true\n"),
                    "web", "volumes", "/srv/other", "outside"},
        RefusedCase{"sibling checkout v1", v1("    volumes:\n    - /srv/pgo/web2:/x:rw\n"), "web", "volumes",
                    "/srv/pgo/web2", "outside"},
        RefusedCase{"sibling data dir v2",
                    v2("    volumes:\n      - type: bind\n        source: /srv/data/web2/db\n"
                       "        target: /x\n"),
                    "web", "volumes", "/srv/data/web2/db", "outside"},
        RefusedCase{"dotdot v1", v1("    volumes:\n    - /srv/pgo/web/../web2:/x:rw\n"), "web", "volumes", "..",
                    "'..'"},
        RefusedCase{"dotdot v2",
                    v2("    volumes:\n      - type: bind\n        source: /srv/data/web/../../../etc\n"
                       "        target: /x\n"),
                    "web", "volumes", "..", "'..'"},
        RefusedCase{"relative dotdot", v2("    volumes:\n      - ../web2:/x\n"), "web", "volumes", "../web2",
                    "absolute"},
        RefusedCase{"home relative", v2("    volumes:\n      - ~/secrets:/x\n"), "web", "volumes", "~/secrets",
                    "absolute"},
        RefusedCase{"etc", v1("    volumes:\n    - /etc:/etc:rw\n"), "web", "volumes", "/etc:/etc:rw", "system"},
        RefusedCase{"root home", v1("    volumes:\n    - /root/.ssh:/x:ro\n"), "web", "volumes", "/root/.ssh",
                    "system"},
        RefusedCase{"docker socket",
                    v2("    volumes:\n      - type: bind\n        source: /var/run/docker.sock\n"
                       "        target: /var/run/docker.sock\n"),
                    "web", "volumes", "docker.sock", "system"},
        with_data_dir("/", RefusedCase{"dev with data_dir slash", v1("    volumes:\n    - /dev/sda:/disk:rw\n"), "web",
                                       "volumes", "/dev/sda", "system"}),
        with_data_dir("/", RefusedCase{"etc with data_dir slash",
                                       v2("    volumes:\n      - type: bind\n        source: /etc/shadow\n"
                                          "        target: /x\n"),
                                       "web", "volumes", "/etc/shadow", "system"}),
        with_data_dir("/", RefusedCase{"slash with data_dir slash", v1("    volumes:\n    - /:/host:rw\n"), "web",
                                       "volumes", "/:/host", "system"}),
        RefusedCase{"undeclared named volume", v1("    volumes:\n    - otherproject_data:/x:rw\n"), "web", "volumes",
                    "otherproject_data", "not declared"},
        RefusedCase{"long form without type", v2("    volumes:\n      - source: /srv/pgo/web\n        target: /x\n"),
                    "web", "volumes", "/srv/pgo/web", "cannot be judged"}),
    test_name<RefusedCase>);

INSTANTIATE_TEST_SUITE_P(
    TopLevel, Refused,
    ::testing::Values(
        RefusedCase{"configs", v1("", "configs:\n  c:\n    file: /srv/pgo/web/c.txt\n"), "", "configs", "c.txt",
                    "configs"},
        RefusedCase{"secrets", v2("", "secrets:\n  s:\n    file: /srv/pgo/web/s.txt\n"), "", "secrets", "s.txt",
                    "secrets"},
        RefusedCase{"include", v2("", "include:\n  - /srv/pgo/other/compose.yaml\n"), "", "include", "other", ""},
        RefusedCase{"external volume v1", v1("", "volumes:\n  ext:\n    external: true\n    name: ext\n"), "",
                    "volumes.ext.external", "true", "external volumes"},
        RefusedCase{"external volume v2", v2("", "volumes:\n  ext:\n    name: otherproject_data\n    external: true\n"),
                    "", "volumes.ext.external", "true", "external volumes"},
        RefusedCase{"volume name v1", v1("", "volumes:\n  data:\n    name: otherproject_data\n"), "",
                    "volumes.data.name", "otherproject_data", "must start with \"web_\""},
        RefusedCase{"volume name v2", v2("", "volumes:\n  data:\n    name: webshop_data\n"), "", "volumes.data.name",
                    "webshop_data", "web_"},
        RefusedCase{"volume driver", v1("", "volumes:\n  data:\n    driver: rexray\n"), "", "volumes.data.driver",
                    "rexray", "local"},
        RefusedCase{"volume bind device etc",
                    v1("",
                       "volumes:\n  data:\n    driver_opts:\n      device: /etc\n"
                       "      o: bind\n      type: none\n"),
                    "", "volumes.data.driver_opts.device", "/etc", "system"},
        RefusedCase{"volume bind device outside v2",
                    v2("",
                       "volumes:\n  data:\n    name: web_data\n    driver: local\n"
                       "    driver_opts:\n      type: none\n      o: rbind,ro\n"
                       "      device: /srv/pgo/other\n"),
                    "", "volumes.data.driver_opts.device", "/srv/pgo/other", "outside"},
        RefusedCase{"volume bind device relative",
                    v1("",
                       "volumes:\n  data:\n    driver_opts:\n      device: srv/x\n"
                       "      o: bind\n      type: none\n"),
                    "", "volumes.data.driver_opts.device", "srv/x", "relative"},
        RefusedCase{"volume block device",
                    v1("",
                       "volumes:\n  data:\n    driver_opts:\n      device: /dev/sda1\n"
                       "      type: none\n      o: bind\n"),
                    "", "volumes.data.driver_opts.device", "/dev/sda1", "system"},
        RefusedCase{"external network not allowed v1",
                    v1("    networks:\n      own: null\n      shared: null\n",
                       "networks:\n  own: {}\n  shared:\n    external: true\n    name: db\n"),
                    "", "networks.shared.external", "db", "allowed networks", kProxyOnly},
        RefusedCase{"external network not allowed v2",
                    v2("    networks:\n      own: null\n      shared: null\n",
                       "networks:\n  own:\n    name: web_own\n  shared:\n    name: db\n    external: true\n"),
                    "", "networks.shared.external", "db", "allowed networks", kProxyOnly},
        RefusedCase{"external host network", v2("", "networks:\n  h:\n    name: host\n    external: true\n"), "",
                    "networks.h.name", "host", "host network"},
        RefusedCase{"external host network by key", v1("", "networks:\n  host:\n    external: true\n"), "",
                    "networks.host.external", "host", "host network"},
        RefusedCase{"network name with allowed list",
                    v2("    networks:\n      own: null\n      shared: null\n",
                       "networks:\n  own:\n    name: otherproject_default\n  shared:\n    name: reverseproxy\n"
                       "    external: true\n"),
                    "", "networks.own.name", "otherproject_default", "web_", kProxyOnly},
        RefusedCase{"network driver macvlan", v1("", "networks:\n  lan:\n    driver: macvlan\n"), "",
                    "networks.lan.driver", "macvlan", "bridge"}),
    test_name<RefusedCase>);

// ---------------------------------------------------------------------------------------------
// Accepted models

struct AcceptedCase {
  std::string label;
  std::string yaml;
  std::vector<std::string> allowed_networks = {};
};

void PrintTo(const AcceptedCase& c, std::ostream* out) { *out << c.label; }

class Accepted : public ::testing::TestWithParam<AcceptedCase> {};

TEST_P(Accepted, HasNoViolations) {
  auto context = fake_context();
  context.allowed_networks = GetParam().allowed_networks;
  const auto violations = violations_of(GetParam().yaml, context);
  EXPECT_TRUE(violations.empty()) << describe(violations) << "in:\n" << GetParam().yaml;
}

// The findings of the attacker's review (each got through the denylist this allowlist replaced).
INSTANTIATE_TEST_SUITE_P(
    Allowlist, Refused,
    ::testing::Values(
        RefusedCase{"procfs volume",
                    v2("",
                       "volumes:\n  p:\n    name: web_p\n    driver_opts:\n      type: none\n      o: bind\n      "
                       "device: /srv/pgo/web/p\n      extra: x\n"),
                    "", "volumes.p.driver_opts.extra", "x", "not reviewed"},
        RefusedCase{"proc type",
                    v2("",
                       "volumes:\n  p:\n    name: web_p\n    driver_opts:\n      type: proc\n      o: bind\n      "
                       "device: /srv/pgo/web/p\n"),
                    "", "volumes.p.driver_opts.type", "proc", "bind form"},
        RefusedCase{"overlay lowerdir",
                    v2("",
                       "volumes:\n  p:\n    name: web_p\n    driver_opts:\n      type: none\n      o: "
                       "bind,lowerdir=/etc\n      device: /srv/pgo/web/p\n"),
                    "", "volumes.p.driver_opts.o", "lowerdir=/etc", "only the options"},
        RefusedCase{"post_start privileged", v2("    post_start:\n      - command: [id]\n        privileged: true\n"),
                    "web", "post_start.privileged", "true", "privileged hooks"},
        RefusedCase{"pre_stop privileged", v2("    pre_stop:\n      - command: [id]\n        privileged: \"true\"\n"),
                    "web", "pre_stop.privileged", "true", "privileged hooks"},
        RefusedCase{"label_file", v2("    label_file: /etc/passwd\n"), "web", "label_file", "/etc/passwd", "system"},
        RefusedCase{"gpu reservation",
                    v2("    deploy:\n      resources:\n        reservations:\n          devices:\n            - "
                       "capabilities: [gpu]\n"),
                    "web", "deploy.resources.reservations.devices", "gpu", "devices"},
        RefusedCase{"use_api_socket", v2("    use_api_socket: true\n"), "web", "use_api_socket", "true",
                    "docker socket"},
        RefusedCase{"provider", v2("    provider:\n      type: model\n"), "web", "provider", "model", "host"},
        RefusedCase{"models", v2("", "models:\n  m:\n    model: ai/x\n"), "", "models", "ai/x", "model"},
        RefusedCase{"unknown service key", v2("    brand_new_key: 1\n"), "web", "brand_new_key", "1", "not reviewed"},
        RefusedCase{"unknown nested key", v2("    healthcheck:\n      test: [CMD, 'true']\n      new_thing: yes\n"),
                    "web", "healthcheck.new_thing", "yes", "not reviewed"},
        RefusedCase{"unknown top-level key", v2("", "brand_new_section: {a: 1}\n"), "", "brand_new_section", "a",
                    "not reviewed"},
        RefusedCase{"windows path",
                    v2("    volumes:\n      - type: bind\n        source: c:/etc\n        target: /x\n"), "web",
                    "volumes", "c:/etc", "absolute"},
        RefusedCase{"built image of another", R"(name: web
services:
  web:
    image: nginx:1.25
    build:
      context: /srv/pgo/web
)",
                    "web", "image", "nginx:1.25", "built image"},
        RefusedCase{"built image with a registry", R"(name: web
services:
  web:
    image: 127.0.0.1:5000/web-app
    build:
      context: /srv/pgo/web
)",
                    "web", "image", "127.0.0.1:5000/web-app", "built image"},
        RefusedCase{"build tags", v2("    build:\n      context: /srv/pgo/web\n      tags: [other-app]\n"), "web",
                    "build.tags", "other-app", "must start"},
        RefusedCase{"volume name of another project", v2("", "volumes:\n  d:\n    name: app_db_data\n"), "",
                    "volumes.d.name", "app_db_data", "must start"},
        RefusedCase{"network name of another project", v2("", "networks:\n  n:\n    name: other_net\n"), "",
                    "networks.n.name", "other_net", "must start"},
        RefusedCase{
            "external network without a list",
            v2("    networks:\n      shared: null\n", "networks:\n  shared:\n    name: anything\n    external: true\n"),
            "", "networks.shared.external", "anything", "allowed networks"},
        RefusedCase{"container_name", v2("    container_name: proxy\n"), "web", "container_name", "proxy",
                    "must start"},
        RefusedCase{"alias on a shared network",
                    v2("    networks:\n      own: null\n      proxy:\n        aliases: [api]\n",
                       "networks:\n  own:\n    name: web_own\n  proxy:\n    name: reverseproxy\n    external: true\n"),
                    "web", "networks.proxy.aliases", "api", "must start", kProxyOnly},
        RefusedCase{"fixed address on a shared network",
                    v2("    networks:\n      own: null\n      proxy:\n        ipv4_address: 172.30.0.2\n",
                       "networks:\n  own:\n    name: web_own\n  proxy:\n    name: reverseproxy\n    external: true\n"),
                    "web", "networks.proxy.ipv4_address", "172.30.0.2", "fixed address", kProxyOnly},
        RefusedCase{"hostname on a shared network",
                    v2("    hostname: api\n    networks:\n      own: null\n      proxy: null\n",
                       "networks:\n  own:\n    name: web_own\n  proxy:\n    name: reverseproxy\n    external: true\n"),
                    "web", "hostname", "api", "must start", kProxyOnly},
        RefusedCase{"oom_kill_disable", v1("    oom_kill_disable: true\n"), "web", "oom_kill_disable", "true", "OOM"},
        RefusedCase{"unlimited memlock", v2("    ulimits:\n      memlock:\n        soft: -1\n        hard: -1\n"),
                    "web", "ulimits.memlock", "-1", "finite"},
        RefusedCase{"huge nofile", v1("    ulimits:\n      nofile: 99999999\n"), "web", "ulimits.nofile", "99999999",
                    "finite"},
        RefusedCase{"rtprio", v1("    ulimits:\n      rtprio: 99\n"), "web", "ulimits.rtprio", "99", "only nofile"},
        RefusedCase{
            "syslog logging",
            v2("    logging:\n      driver: syslog\n      options:\n        syslog-address: tcp://10.0.0.1:514\n"),
            "web", "logging.driver", "syslog", "logging drivers"},
        RefusedCase{"gelf logging", v1("    logging:\n      driver: gelf\n"), "web", "logging.driver", "gelf",
                    "logging drivers"},
        RefusedCase{"compose labels", v2("    labels:\n      com.docker.compose.project: other\n"), "web", "labels",
                    "com.docker.compose.project", "compose's own"},
        RefusedCase{"host sysctl", v2("    sysctls:\n      kernel.core_pattern: '|/x'\n"), "web", "sysctls",
                    "kernel.core_pattern", "namespaced"},
        RefusedCase{"pid of another container", v2("    pid: container:other\n"), "web", "pid", "container:other",
                    "PID"},
        RefusedCase{"annotations", v2("    annotations:\n      a: b\n"), "web", "annotations", "a", "annotations"},
        RefusedCase{"cpu_rt_runtime", v1("    cpu_rt_runtime: 950000\n"), "web", "cpu_rt_runtime", "950000",
                    "real-time"},
        RefusedCase{"external_links", v1("    external_links:\n    - other_db_1:db\n"), "web", "external_links",
                    "other_db_1", "outside"},
        RefusedCase{"links outside", v1("    links:\n    - other_db_1:db\n"), "web", "links", "other_db_1",
                    "services of this project"},
        RefusedCase{"mac_address", v2("    mac_address: 02:42:ac:11:00:02\n"), "web", "mac_address", "02:42", "MAC"},
        RefusedCase{
            "pgod's own image name",
            "name: web\nservices:\n  web:\n    build:\n      context: /srv/pgo/web\n    image: web-pgod-good:s0\n",
            "web", "image", "web-pgod-good", "pgod's own"},
        RefusedCase{"pgod's own build tag",
                    v2("    build:\n      context: /srv/pgo/web\n      tags: [\"web-pgod-good:s1\"]\n"), "web",
                    "build.tags", "web-pgod-good", "pgod's own"},
        RefusedCase{"short bind propagation v1", v1("    volumes:\n    - /srv/pgo/web/x:/x:rw,rshared\n"), "web",
                    "volumes", "/srv/pgo/web/x:/x:rw,rshared", "propagation"},
        RefusedCase{"short volume slave", v1("    volumes:\n    - /srv/pgo/web/x:/x:slave\n"), "web", "volumes",
                    "slave", "propagation"},
        RefusedCase{"short mode unknown", v1("    volumes:\n    - /srv/pgo/web/x:/x:ro,bogus\n"), "web", "volumes",
                    "bogus", "volume option \"bogus\" not reviewed"},
        RefusedCase{"bind propagation",
                    v2("    volumes:\n      - type: bind\n        source: /srv/pgo/web/x\n        target: /x\n        "
                       "bind:\n          propagation: rshared\n"),
                    "web", "volumes.bind.propagation", "rshared", "propagation"},
        RefusedCase{
            "bridge driver_opts",
            v2("",
               "networks:\n  n:\n    name: web_n\n    driver_opts:\n      com.docker.network.bridge.name: docker0\n"),
            "", "networks.n.driver_opts.com.docker.network.bridge.name", "docker0", "MTU"},
        RefusedCase{"build cache_to",
                    v2("    build:\n      context: /srv/pgo/web\n      cache_to: [type=local,dest=/tmp/x]\n"), "web",
                    "build.cache_to", "type=local", "cache"},
        RefusedCase{"build secrets", v2("    build:\n      context: /srv/pgo/web\n      secrets: [s]\n"), "web",
                    "build.secrets", "s", "secrets"},
        RefusedCase{"rw bind of the checkout root", v2("    volumes:\n      - /srv/pgo/web:/app\n"), "web", "volumes",
                    "/srv/pgo/web:/app", "checkout root"},
        RefusedCase{"rw bind holding another bind source",
                    v2("    volumes:\n      - /srv/pgo/web/data:/data\n      - /srv/pgo/web/data/sub:/sub:ro\n"), "web",
                    "volumes", "/srv/pgo/web/data:/data", "holds another bind source"},
        RefusedCase{"rw volume device holding a bind source",
                    v2("    volumes:\n      - /srv/data/web/x/conf:/conf:ro\n",
                       "volumes:\n  d:\n    name: web_d\n    driver_opts:\n      type: none\n      o: bind\n      "
                       "device: /srv/data/web/x\n"),
                    "", "volumes.d.driver_opts", "/srv/data/web/x", "holds another bind source"}),
    test_name<RefusedCase>);

INSTANTIATE_TEST_SUITE_P(
    Models, Accepted,
    ::testing::Values(
        // As docker-compose 1.29.2 wrote it for a checkout at /srv/pgo/web.
        AcceptedCase{"plain web v1", R"(services:
  web:
    build:
      context: /srv/pgo/web/app
      dockerfile: ../Dockerfile.app
    environment:
      A: '1'
    expose:
    - '3000'
    image: web-app
    ports: []
    cap_add: []
    privileged: false
    security_opt:
    - no-new-privileges:true
    tmpfs:
    - /run
    volumes:
    - /srv/pgo/web/html:/usr/share/html:ro
    - data:/data:rw
    - /srv/data/web/db:/db:rw
    - /anonymous
    - source: /srv/pgo/web/conf
      target: /conf
      type: bind
    - source: data
      target: /data2
      type: volume
      volume:
        nocopy: true
  db:
    image: busybox
    network_mode: service:web
    volumes_from:
    - service:web:ro
    oom_score_adj: 100
version: '3.8'
volumes:
  data: {}
  named:
    name: web_named
    driver: local
    driver_opts:
      type: none
      o: bind
      device: /srv/data/web/named
)"},
        // As docker compose v2 writes it: long forms, names spelled out, extensions kept.
        AcceptedCase{"plain web v2", R"(name: web
services:
  web:
    build:
      context: /srv/pgo/web
      dockerfile: Dockerfile
    env_file:
      - path: /srv/pgo/web/web.env
        required: true
      - /srv/data/web/secret.env
    image: web-app
    networks:
      default: null
    volumes:
      - type: bind
        source: /srv/pgo/web/html
        target: /usr/share/html
        read_only: true
        bind:
          create_host_path: true
      - type: volume
        source: data
        target: /data
        volume: {}
      - type: bind
        source: /srv/data/web
        target: /all-data
  worker:
    image: web-worker:1.2
    volumes_from:
      - web:ro
    build: https://github.com/example/worker.git#main
networks:
  default:
    name: web_default
volumes:
  data:
    name: web_data
x-pgo:
  reload: false
)"},
        AcceptedCase{"two networks with allowed external v1", R"(networks:
  back: {}
  proxy:
    external: true
    name: reverseproxy
services:
  web:
    image: busybox
    networks:
      back: null
      proxy:
        aliases:
        - web
  db:
    image: busybox
    networks:
    - back
    - default
version: '3.8'
)",
                     kProxyOnly},
        AcceptedCase{"two networks with allowed external v2", R"(name: web
services:
  web:
    image: busybox
    networks:
      default: null
      proxy: null
  sidecar:
    image: busybox
    network_mode: service:web
networks:
  default:
    name: web_default
  proxy:
    name: reverseproxy
    external: true
)",
                     kProxyOnly},
        AcceptedCase{
            "pid of a sibling",
            "name: web\nservices:\n  db:\n    image: busybox\n  web:\n    image: busybox\n    pid: service:db\n"},
        AcceptedCase{"hooks without privileges",
                     v2("    post_start:\n      - command: [id]\n        user: root\n        privileged: false\n")},
        AcceptedCase{"finite ulimits and namespaced sysctls",
                     v2("    ulimits:\n      nofile:\n        soft: 1024\n        hard: 65536\n      nproc: 512\n    "
                        "sysctls:\n      net.core.somaxconn: '1024'\n")},
        AcceptedCase{"local logging",
                     v1("    logging:\n      driver: json-file\n      options:\n        max-size: 10m\n")},
        AcceptedCase{"read-only binds inside a rw bind's tree, rw elsewhere",
                     v2("    volumes:\n      - /srv/pgo/web/conf:/conf:ro\n      - /srv/pgo/web/conf/site:/site:ro\n   "
                        "   - /srv/data/web/db:/db\n")},
        AcceptedCase{"bind volume of the data dir",
                     v2("",
                        "volumes:\n  d:\n    name: web_d\n    driver: local\n    driver_opts:\n      type: none\n      "
                        "o: bind,ro\n      device: /srv/data/web/d\n")},
        AcceptedCase{
            "aliases and hostname of the project's own on a shared network",
            v2("    hostname: web-api\n    networks:\n      own: null\n      proxy:\n        aliases: [web, web-api]\n",
               "networks:\n  own:\n    name: web_own\n  proxy:\n    name: reverseproxy\n    external: true\n"),
            kProxyOnly},
        AcceptedCase{"deploy and healthcheck",
                     v2("    deploy:\n      replicas: 2\n      resources:\n        limits:\n          cpus: 0.5\n      "
                        "    memory: '104857600'\n        reservations:\n          memory: '1000'\n      "
                        "restart_policy:\n        condition: on-failure\n    healthcheck:\n      test: [CMD, 'true']\n "
                        "     interval: 10s\n      start_period: 5s\n")},
        AcceptedCase{"tmpfs volumes",
                     v1("    volumes:\n    - target: /tmp\n      type: tmpfs\n      tmpfs:\n        size: 1000\n")},
        AcceptedCase{"allowed network by explicit name",
                     v2("    networks:\n      a: null\n      b: null\n",
                        "networks:\n  a:\n    name: reverseproxy\n"
                        "  b:\n    name: web_back\n    driver: bridge\n"),
                     kProxyOnly},
        AcceptedCase{"network_mode none", v1("    network_mode: none\n")},
        AcceptedCase{"security_opt apparmor profile", v1("    security_opt:\n    - apparmor=docker-default\n")},
        AcceptedCase{"seccomp builtin", v2("    security_opt:\n      - seccomp=builtin\n")},
        AcceptedCase{"null values", v1("    privileged: null\n    cap_add: null\n    ipc: null\n")},
        AcceptedCase{"checkout itself read-only", v1("    volumes:\n    - /srv/pgo/web:/src:ro\n")},
        AcceptedCase{"bind inside", v2("    volumes:\n      - /srv/pgo/web/html:/html\n")},
        AcceptedCase{"short modes", v1("    volumes:\n    - /srv/pgo/web/html:/html:ro,z\n"
                                       "    - /srv/pgo/web/cache:/cache:rw,rprivate,delegated\n")},
        AcceptedCase{"remote build contexts", R"(services:
  a:
    build:
      context: git@github.com:example/a.git
      dockerfile: ../../../etc/Dockerfile
  b:
    build:
      context: git://example.org/b.git#main:sub
  c:
    build:
      context: https://example.org/c.tar.gz
version: '3.8'
)"},
        AcceptedCase{"sysctls and ulimits", v1("    sysctls:\n      net.core.somaxconn: '1024'\n    ulimits:\n"
                                               "      nofile: 1024\n")}),
    test_name<AcceptedCase>);

TEST(ComposePolicy, RootBypassesEveryRule) {
  auto context = fake_context();
  context.root = true;
  context.allowed_networks = kProxyOnly;
  const auto yaml = v1("    privileged: true\n    network_mode: host\n    volumes:\n    - /etc:/etc:rw\n",
                       "secrets:\n  s:\n    file: /etc/shadow\n");
  const auto violations = violations_of(yaml, context);
  EXPECT_TRUE(violations.empty()) << describe(violations);
  // ... but an unjudgeable file is still refused.
  EXPECT_FALSE(check_compose_policy("services: [web]\n", context).has_value());
}

TEST(ComposePolicy, ReportsEveryViolation) {
  const auto yaml = R"(services:
  web:
    image: busybox
    privileged: true
    cap_add: [SYS_ADMIN]
    ports: ["80:80"]
    security_opt: [seccomp=unconfined, apparmor=unconfined]
    volumes: [/etc:/etc:rw, /srv/pgo/web/ok:/ok:rw, /root:/root:rw]
  db:
    image: busybox
    pid: host
secrets:
  s:
    file: /srv/pgo/web/s
volumes:
  ext:
    external: true
)";
  const auto violations = violations_of(yaml);
  std::vector<std::string> found;
  for (const auto& violation : violations) found.push_back(violation.compose_service + "/" + violation.key);
  std::sort(found.begin(), found.end());
  const std::vector<std::string> expected = {
      "/secrets",         "/volumes.ext.external", "db/pid",           "web/cap_add", "web/ports",  "web/privileged",
      "web/security_opt", "web/security_opt",      "web/security_opt", "web/volumes", "web/volumes"};
  EXPECT_EQ(found, expected) << describe(violations);
}

TEST(ComposePolicy, ViolationToStringNamesServiceKeyAndValue) {
  const auto violations = violations_of(v1("    privileged: true\n"));
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].to_string(),
            "service \"web\": key \"privileged\": value \"true\": privileged containers are refused");
  const Violation top{"", "configs", "{c: {file: /x}}", "configs are refused"};
  EXPECT_EQ(top.to_string(), "key \"configs\": value \"{c: {file: /x}}\": configs are refused");
  // Attacker-chosen text stays on one line and cannot close the quotes.
  const Violation odd{"we\"b", "volumes", "/a\nb", "r"};
  EXPECT_EQ(odd.to_string(), "service \"we\\\"b\": key \"volumes\": value \"/a\\x0ab\": r");
}

TEST(ComposePolicy, DataDirUnsetAllowsOnlyTheCheckout) {
  auto context = fake_context();
  context.data_dir.clear();
  EXPECT_EQ(violations_of(v1("    volumes:\n    - /srv/data/web/db:/db:rw\n"), context).size(), 1u);
  EXPECT_TRUE(violations_of(v1("    volumes:\n    - /srv/pgo/web/db:/db:rw\n"), context).empty());
}

TEST(ComposePolicy, DataDirSlashStillAllowsOrdinaryDirectories) {
  auto context = fake_context();
  context.data_dir = "/";
  EXPECT_TRUE(violations_of(v1("    volumes:\n    - /srv/shared/web:/x:rw\n"), context).empty());
}

TEST(ComposePolicy, ProjectNameWithDotsUsesUnderscores) {
  auto context = fake_context();
  context.service = "web.shop";
  EXPECT_TRUE(violations_of(v1("", "volumes:\n  data:\n    name: web_shop_data\n"), context).empty());
  EXPECT_EQ(violations_of(v1("", "volumes:\n  data:\n    name: web.shop_data\n"), context).size(), 1u);
}

TEST(ComposePolicy, SymlinkSeenByTheResolverIsFollowed) {
  auto context = fake_context();
  context.resolve = [](const std::string& path) {
    const std::string link = "/srv/pgo/web/link";
    return path.rfind(link, 0) == 0 ? "/etc" + path.substr(link.size()) : path;
  };
  const auto violations = violations_of(v1("    volumes:\n    - /srv/pgo/web/link/ssh:/x:rw\n"), context);
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_NE(violations[0].reason.find("/etc/ssh"), std::string::npos) << violations[0].to_string();
}

TEST(ComposePolicy, SecurityOptCountsAndJudgesEachEntry) {
  const auto violations = violations_of(v2("    security_opt:\n      - seccomp:unconfined\n      - label:disable\n"));
  EXPECT_EQ(violations.size(), 3u) << describe(violations);  // both entries, and there are two
}

// ---------------------------------------------------------------------------------------------
// Input that cannot be judged is an error, never a crash and never "no violations".

struct ErrorCase {
  std::string label;
  std::string yaml;
  std::string message;  // a part of the error
};

void PrintTo(const ErrorCase& c, std::ostream* out) { *out << c.label; }

class Unjudgeable : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(Unjudgeable, IsAnError) {
  auto context = fake_context();
  for (const bool root : {false, true}) {
    context.root = root;
    const auto result = check_compose_policy(GetParam().yaml, context);
    ASSERT_FALSE(result.has_value()) << "judged:\n" << GetParam().yaml;
    EXPECT_NE(result.error().find(GetParam().message), std::string::npos) << result.error();
  }
}

std::string deeply_nested(int depth) {
  return "services:\n  web:\n    labels: " + std::string(depth, '[') + std::string(depth, ']') + "\n";
}

// Each level doubles the previous one through aliases: 2^40 nodes if expanded.
std::string alias_bomb() {
  std::string yaml = "x-a0: &a0 [x, x]\n";
  for (int i = 1; i <= 40; ++i) {
    yaml += "x-a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) + ", *a" +
            std::to_string(i - 1) + "]\n";
  }
  return yaml + "services:\n  web:\n    image: busybox\n";
}

INSTANTIATE_TEST_SUITE_P(
    Models, Unjudgeable,
    ::testing::Values(
        ErrorCase{"empty", "", "not a mapping"}, ErrorCase{"not yaml", "services: {web: [\n", "not valid YAML"},
        ErrorCase{"scalar", "just some text\n", "not a mapping"},
        ErrorCase{"sequence", "- services\n- web\n", "not a mapping"},
        ErrorCase{"no services", "version: '3.8'\n", "no services"},
        ErrorCase{"services a list", "services: [web]\n", "no services"},
        ErrorCase{"services empty", "services: {}\n", "no services"},
        ErrorCase{"service null", "services:\n  web:\n", "\"web\" is not a mapping"},
        ErrorCase{"service a list", "services:\n  web: [privileged]\n", "\"web\" is not a mapping"},
        ErrorCase{"volumes a list", "services:\n  web: {image: busybox}\nvolumes: [data]\n",
                  "volumes is not a mapping"},
        ErrorCase{"network a string", "services:\n  web: {image: busybox}\nnetworks:\n  n: host\n",
                  "\"n\" is not a mapping"},
        ErrorCase{"duplicate key", "services:\n  web:\n    privileged: false\n    privileged: true\n", "duplicate key"},
        ErrorCase{"merge key", "x-p: &p {privileged: true}\nservices:\n  web:\n    <<: *p\n    image: busybox\n",
                  "merge key"},
        ErrorCase{"complex key", "services:\n  ? [web]\n  : {image: busybox}\n", "not a string"},
        ErrorCase{"deep nesting", deeply_nested(100), "nested too deeply"},
        ErrorCase{"alias bomb", alias_bomb(), "too large"}),
    test_name<ErrorCase>);

TEST(ComposePolicy, AnUnescapedDollarOutsideEnvironmentCannotBeJudged) {
  auto result = check_compose_policy(v1("    volumes:\n    - /srv/pgo/web/${A-..}:/host:rw\n"), fake_context());
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().find("services.web.volumes[]"), std::string::npos) << result.error();
  result = check_compose_policy(v1("    environment:\n      A: 'ab$cd'\n    command: echo $$HOME\n"), fake_context());
  ASSERT_TRUE(result.has_value()) << result.error();
  EXPECT_TRUE(result->empty()) << describe(*result);
}

TEST(ComposePolicy, OddValueShapesAreRefusedNotCrashed) {
  const auto yaml = R"(services:
  web:
    image: web-app
    volumes: {a: b}
    volumes_from: [[x]]
    security_opt: seccomp=unconfined
    networks: host
    env_file: {path: [x]}
    build: [x]
    network_mode: [host]
    privileged: [true]
    oom_score_adj: {a: 1}
)";
  const auto violations = violations_of(yaml);
  std::vector<std::string> keys;
  for (const auto& violation : violations) keys.push_back(violation.key);
  std::sort(keys.begin(), keys.end());
  const std::vector<std::string> expected = {"build",        "env_file",      "network_mode",
                                             "networks",     "oom_score_adj", "privileged",
                                             "security_opt", "volumes",       "volumes_from"};
  EXPECT_EQ(keys, expected) << describe(violations);
}

TEST(ComposePolicy, AThrowingResolverIsAnError) {
  auto context = fake_context();
  context.resolve = [](const std::string&) -> std::string { throw std::runtime_error("resolver broke"); };
  const auto result = check_compose_policy(v1("    volumes:\n    - /srv/pgo/web/x:/x\n"), context);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().find("resolver broke"), std::string::npos) << result.error();
}

TEST(ComposePolicy, AnUnresolvablePathIsRefused) {
  auto context = fake_context();
  context.resolve = [](const std::string& path) { return path.find("loop") == std::string::npos ? path : ""; };
  const auto violations = violations_of(v1("    volumes:\n    - /srv/pgo/web/loop:/x:rw\n"), context);
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_NE(violations[0].reason.find("cannot be resolved"), std::string::npos) << violations[0].to_string();
}

// ---------------------------------------------------------------------------------------------
// The default resolver, on real directories and symlinks

class RealFilesystem : public ::testing::Test {
 protected:
  RealFilesystem()
      : root_(fs::canonical(temp_.path()).string()), checkout_(root_ + "/pgo/web"), data_(root_ + "/data/web") {
    fs::create_directories(checkout_ + "/html");
    fs::create_directories(data_);
    fs::create_directories(root_ + "/pgo/web2");
  }

  PolicyContext context() const {
    PolicyContext context;
    context.service = "web";
    context.checkout_dir = checkout_;
    context.data_dir = data_;
    return context;  // resolve left empty: the real filesystem
  }

  std::vector<Violation> bind(const std::string& source) const {
    return violations_of(v1("    volumes:\n    - " + source + ":/x:rw\n"), context());
  }

  void link(const std::string& target, const std::string& name) const {
    fs::create_symlink(target, checkout_ + "/" + name);
  }

  TempDir temp_;
  const std::string root_, checkout_, data_;
};

// The host files compose folds into the model, judged from the raw files.
class RawHostFiles : public RealFilesystem {
 protected:
  std::vector<Violation> judge(const std::string& compose) const {
    write("compose.yaml", compose);
    return check_raw_host_files(context(), "compose.yaml");
  }
  void write(const std::string& name, const std::string& text) const { std::ofstream(checkout_ + "/" + name) << text; }
  static std::string keys(const std::vector<Violation>& violations) {
    std::string out;
    for (const auto& violation : violations) out += violation.key + "=" + violation.value + ";";
    return out;
  }
};

TEST_F(RawHostFiles, EnvFileOutsideTheCheckoutIsRefused) {
  EXPECT_EQ(keys(judge("services:\n  web:\n    image: x\n    env_file: /etc/pgo.toml\n")), "env_file=/etc/pgo.toml;");
}

TEST_F(RawHostFiles, EnvFileThroughASymlinkIsRefused) {
  link("/etc/passwd", "app.env");
  EXPECT_EQ(keys(judge("services:\n  web:\n    image: x\n    env_file: [app.env]\n")), "env_file=app.env;");
}

TEST_F(RawHostFiles, EnvFileInAnAnchorMergedLaterIsStillSeen) {
  const auto violations = judge(
      "x-common: &common\n  env_file:\n    - path: /etc/shadow\n      required: false\n"
      "services:\n  web:\n    <<: *common\n    image: x\n");
  EXPECT_EQ(keys(violations), "env_file=/etc/shadow;");
}

TEST_F(RawHostFiles, LabelFileIncludeAndExtendsAreJudged) {
  write("base.yaml", "services:\n  base:\n    image: x\n    env_file: /root/.env\n");
  const auto violations = judge(
      "include:\n  - /etc/compose.yaml\n  - base.yaml\n"
      "services:\n  web:\n    image: x\n    label_file: /etc/passwd\n    extends:\n      file: /srv/other.yaml\n      "
      "service: a\n");
  EXPECT_EQ(keys(violations),
            "include=/etc/compose.yaml;label_file=/etc/passwd;extends.file=/srv/other.yaml;env_file=/root/.env;")
      << describe(violations);
}

TEST_F(RawHostFiles, DotEnvBesideAnIncludedFileOrASubDirectoryComposeFileIsJudged) {
  fs::create_directories(checkout_ + "/sub");
  write("sub/inc.yml", "services:\n  inc:\n    image: x\n    environment:\n      X: ${S}\n");
  fs::create_symlink("/etc/passwd", checkout_ + "/sub/.env");
  EXPECT_EQ(keys(judge("include: [sub/inc.yml]\nservices:\n  web:\n    image: x\n")), ".env=sub/.env;");
  write("sub/compose.yml", "services:\n  web:\n    image: x\n");
  EXPECT_EQ(keys(check_raw_host_files(context(), "sub/compose.yml")), ".env=sub/.env;");
}

TEST_F(RawHostFiles, AComposeFileSymlinkedOutIsRefused) {
  fs::create_symlink("/etc/hostname", checkout_ + "/compose.yml");
  const auto violations = check_raw_host_files(context(), "compose.yml");
  ASSERT_EQ(violations.size(), 1u) << describe(violations);
  EXPECT_EQ(violations[0].key, "compose file");
}

TEST_F(RawHostFiles, InterpolatedPathsAreRefused) {
  EXPECT_EQ(keys(judge("services:\n  web:\n    image: x\n    env_file: ${ENV_FILE:-app.env}\n")),
            "env_file=${ENV_FILE:-app.env};");
}

TEST_F(RawHostFiles, DotEnvSymlinkedOutIsRefused) {
  link("/etc/pgo.toml", ".env");
  EXPECT_EQ(keys(judge("services:\n  web:\n    image: x\n")), ".env=.env;");
}

TEST_F(RawHostFiles, FilesInsideTheCheckoutAndDataDirAreAccepted) {
  write("app.env", "A=1\n");
  write("other.yaml", "services:\n  o:\n    image: x\n");
  write(".env", "TAG=1\n");
  const auto violations = judge("include: [other.yaml]\nservices:\n  web:\n    image: x\n    env_file: [app.env, " +
                                data_ + "/secret.env]\n");
  EXPECT_TRUE(violations.empty()) << describe(violations);
}

// A commit is judged in a staging tree: an absolute path into the live checkout stands for the
// same path of the commit being judged, symlinks and all.
TEST_F(RealFilesystem, LiveCheckoutPathsAreJudgedInTheStagingTree) {
  const std::string staging = root_ + "/state/staging";
  fs::create_directories(staging);
  fs::create_symlink("/", staging + "/conf");
  auto staged = context();
  staged.checkout_dir = staging;
  staged.live_checkout_dir = checkout_;
  const auto model = v1("    volumes:\n    - " + checkout_ + "/conf:/conf:ro\n");
  auto violations = violations_of(model, staged);
  ASSERT_EQ(violations.size(), 1u) << describe(violations);
  EXPECT_NE(violations[0].reason.find("a system directory"), std::string::npos) << violations[0].to_string();
  fs::remove(staging + "/conf");
  fs::create_directories(staging + "/conf");
  violations = violations_of(model, staged);
  EXPECT_TRUE(violations.empty()) << describe(violations);
}

TEST_F(RealFilesystem, SymlinkToEtcIsRefused) {
  link("/etc", "config");
  const auto violations = bind(checkout_ + "/config");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_NE(violations[0].reason.find("/etc"), std::string::npos) << violations[0].to_string();
  EXPECT_EQ(bind(checkout_ + "/config/ssh").size(), 1u);
}

TEST_F(RealFilesystem, RelativeSymlinkClimbingOutIsRefused) {
  link("../../../../../../../../../../../etc/passwd", "passwd");
  EXPECT_EQ(bind(checkout_ + "/passwd").size(), 1u);
  link("../web2", "sibling");
  EXPECT_EQ(bind(checkout_ + "/sibling").size(), 1u);
}

TEST_F(RealFilesystem, DanglingSymlinkIsJudgedByItsTarget) {
  link("/etc/pgod-test-does-not-exist/x", "dangling");
  EXPECT_EQ(bind(checkout_ + "/dangling").size(), 1u);
  link(data_ + "/not-yet", "later");
  EXPECT_TRUE(bind(checkout_ + "/later").empty());
}

TEST_F(RealFilesystem, SymlinkLoopIsRefused) {
  link("loop-b", "loop-a");
  link("loop-a", "loop-b");
  const auto violations = bind(checkout_ + "/loop-a");
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_NE(violations[0].reason.find("cannot be resolved"), std::string::npos) << violations[0].to_string();
}

TEST_F(RealFilesystem, SymlinksStayingInsideAreAllowed) {
  link("html", "public");
  link(data_, "data");
  EXPECT_TRUE(bind(checkout_ + "/public").empty());
  EXPECT_TRUE(bind(checkout_ + "/data/db").empty());
  EXPECT_TRUE(bind(checkout_ + "/does/not/exist/yet").empty());
}

TEST_F(RealFilesystem, CheckoutReachedThroughASymlinkIsStillTheCheckout) {
  fs::create_directory_symlink(root_ + "/pgo", root_ + "/pgo-link");
  auto linked = context();
  linked.checkout_dir = root_ + "/pgo-link/web";
  EXPECT_TRUE(violations_of(v1("    volumes:\n    - " + checkout_ + "/html:/x:rw\n"), linked).empty());
  EXPECT_TRUE(violations_of(v1("    volumes:\n    - " + linked.checkout_dir + "/html:/x:rw\n"), linked).empty());
  EXPECT_EQ(violations_of(v1("    volumes:\n    - " + root_ + "/pgo/web2:/x:rw\n"), linked).size(), 1u);
}

TEST_F(RealFilesystem, BuildContextSymlinkedOutIsRefused) {
  link(root_ + "/pgo/web2", "app");
  const auto violations = violations_of(v1("    build:\n      context: " + checkout_ + "/app\n"), context());
  ASSERT_EQ(violations.size(), 1u) << describe(violations);
  EXPECT_EQ(violations[0].key, "build.context");
}

// ---------------------------------------------------------------------------------------------
// Real compose normalising raw files, under each program this host has (Compose v2, and v1 on
// Debian 12): what it resolves, the policy must still see.

class RealCompose : public ::testing::TestWithParam<ComposeProgram> {
 protected:
  RealCompose() : checkout_(fs::canonical(temp_.path()).string()) {}

  // Runs `compose config` on the files written so far and returns its output.
  std::string normalise(const std::string& file = "docker-compose.yml") const {
    auto argv = GetParam().argv;
    argv.insert(argv.end(), {"--project-directory", checkout_, "-f", checkout_ + "/" + file, "-p", "web", "config"});
    const auto result = run_process(argv);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  }

  PolicyContext context() const {
    PolicyContext context;
    context.service = "web";
    context.checkout_dir = checkout_;
    return context;
  }

  std::vector<std::string> refused_keys(const std::string& model) const {
    const auto result = check_compose_policy(model, context());
    EXPECT_TRUE(result.has_value()) << (result.has_value() ? "" : result.error()) << "\nin:\n" << model;
    std::vector<std::string> keys;
    if (result.has_value()) {
      for (const auto& violation : *result) keys.push_back(violation.compose_service + "/" + violation.key);
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  TempDir temp_;
  const std::string checkout_;
};

TEST_P(RealCompose, InterpolationCannotSmuggleSettings) {
  temp_.write(".env", "PRIV=true\nNET=host\nSRC=/etc\n");
  temp_.write("docker-compose.yml",
              "version: '3.8'\nservices:\n  web:\n    image: busybox\n    privileged: ${PRIV}\n"
              "    network_mode: ${NET}\n    volumes: ['${SRC}:/x']\n");
  const std::vector<std::string> expected = {"web/network_mode", "web/privileged", "web/volumes"};
  EXPECT_EQ(refused_keys(normalise()), expected);
}

// docker-compose 1.29's config drops the escape of "$$" in volume and security_opt strings, so
// the saved model would be interpolated again when compose runs it ("${A-..}" becomes ".."):
// a model that still holds an unescaped $ outside environment values cannot be judged. Compose
// v2 keeps the escape, and its model is judged as usual (nothing in it is refused).
TEST_P(RealCompose, AnEscapedDollarCannotBecomeAPathLater) {
  temp_.write("docker-compose.yml",
              "version: '2.4'\nservices:\n  web:\n    image: busybox\n"
              "    security_opt: ['apparmor=$${A-unconfined}']\n"
              "    volumes: ['./$${A-..}/$${B-..}/$${C-..}/$${D-..}/$${E-..}:/host']\n"
              "    environment:\n      PRICE: '$$5'\n");
  const auto model = normalise();
  const auto result = check_compose_policy(model, context());
  if (GetParam().major == 1) {
    ASSERT_FALSE(result.has_value()) << model;
    EXPECT_NE(result.error().find("still holds a $"), std::string::npos) << result.error();
  } else {
    ASSERT_TRUE(result.has_value()) << result.error() << model;
    EXPECT_NE(model.find("$${A-"), std::string::npos) << "v2 keeps the escape:\n" << model;
  }
}

TEST_P(RealCompose, ExtendsCannotSmuggleSettings) {
  temp_.write("base.yml", "services:\n  base:\n    image: busybox\n    privileged: true\n    cap_add: [SYS_ADMIN]\n");
  temp_.write("docker-compose.yml",
              "version: '3.8'\nservices:\n  web:\n    extends: {file: base.yml, service: base}\n");
  const std::vector<std::string> expected = {"web/cap_add", "web/privileged"};
  EXPECT_EQ(refused_keys(normalise()), expected);
}

TEST_P(RealCompose, MergeKeysCannotSmuggleSettings) {
  const std::string raw =
      "version: '3.8'\nx-priv: &priv\n  privileged: true\n  devices: [/dev/sda]\n"
      "services:\n  web:\n    <<: *priv\n    image: busybox\n";
  temp_.write("docker-compose.yml", raw);
  const std::vector<std::string> expected = {"web/devices", "web/privileged"};
  EXPECT_EQ(refused_keys(normalise()), expected);
  // The raw file, which yaml-cpp would read without the merge, is refused as unjudgeable.
  EXPECT_FALSE(check_compose_policy(raw, context()).has_value());
}

TEST_P(RealCompose, ACleanFileIsAccepted) {
  temp_.write("web.env", "A=1\n");
  temp_.write("app/Dockerfile", "FROM busybox\n");
  temp_.write("docker-compose.yml", R"(version: '3.8'
x-pgo:
  reload: false
services:
  web:
    build: ./app
    image: web:latest
    env_file: [web.env]
    expose: ["80"]
    security_opt: ["no-new-privileges:true"]
    volumes:
      - ./html:/html:ro
      - data:/data
      - type: bind
        source: ./conf
        target: /conf
    networks: [back, proxy]
networks:
  back: {}
  proxy:
    external:
      name: reverseproxy
volumes:
  data: {}
)");
  const auto model = normalise();
  auto context = this->context();
  context.allowed_networks = {"reverseproxy"};
  const auto result = check_compose_policy(model, context);
  ASSERT_TRUE(result.has_value()) << result.error();
  EXPECT_TRUE(result->empty()) << describe(*result) << "in:\n" << model;
  if (GetParam().major == 1) {
    // v1 drops extensions, so the reload switch must be read from the raw file.
    EXPECT_EQ(model.find("x-pgo"), std::string::npos) << model;
    EXPECT_TRUE(compose_reload_enabled(model));
    // v1 folds env files into `environment`, so only the raw file names them; it leaves out
    // the default Dockerfile, which is read all the same.
    const std::vector<std::string> from_model = {"app", "app/Dockerfile", "conf", "html"};
    EXPECT_EQ(referenced_checkout_paths(model, checkout_), from_model);
  } else {
    EXPECT_FALSE(compose_reload_enabled(model)) << model;
    const std::vector<std::string> from_model = {"app", "app/Dockerfile", "conf", "html"};
    EXPECT_EQ(referenced_checkout_paths(model, checkout_), from_model);
  }
}

INSTANTIATE_TEST_SUITE_P(Installed, RealCompose, ::testing::ValuesIn(installed_compose_programs()),
                         [](const ::testing::TestParamInfo<ComposeProgram>& info) { return info.param.name; });

// Every release gets its compose: v2 everywhere (Debian 13 packages it; install-deps.sh takes it
// from there for Debian 12), and Debian 12's own docker-compose v1 while that release ships it.
TEST(RealComposePrograms, TheHostHasTheComposeProgramsOfItsRelease) {
  const auto& programs = installed_compose_programs();
  ASSERT_FALSE(programs.empty()) << "no compose program: run deploy/install-deps.sh unit";
  EXPECT_EQ(programs.front().name, "v2") << "no Compose v2: run deploy/install-deps.sh unit";
  if (debian_codename() == "bookworm") {
    ASSERT_EQ(programs.size(), 2u) << "Debian 12's docker-compose (v1) is missing: run deploy/install-deps.sh unit";
    EXPECT_EQ(programs.back().name, "v1");
  }
}

// ---------------------------------------------------------------------------------------------
// x-pgo: reload

TEST(ComposeReload, OnlyAnExplicitFalseDisablesIt) {
  EXPECT_FALSE(compose_reload_enabled("x-pgo:\n  reload: false\nservices: {}\n"));
  EXPECT_FALSE(compose_reload_enabled("x-pgo: {reload: False}\n"));
  EXPECT_TRUE(compose_reload_enabled("x-pgo:\n  reload: true\n"));
  EXPECT_TRUE(compose_reload_enabled("services: {}\n"));
  EXPECT_TRUE(compose_reload_enabled("x-pgo: false\n"));
  EXPECT_TRUE(compose_reload_enabled("x-pgo:\n  reload: [false]\n"));
  EXPECT_TRUE(compose_reload_enabled("x-pgo: {reload: false\n"));  // not YAML
  EXPECT_TRUE(compose_reload_enabled(""));
  EXPECT_TRUE(compose_reload_enabled("- x-pgo\n"));
}

// ---------------------------------------------------------------------------------------------
// Paths inside the checkout that a model references

TEST(ReferencedCheckoutPaths, V1Model) {
  const auto model = R"(services:
  web:
    build:
      context: /srv/pgo/web/app
      dockerfile: ../docker/Dockerfile.web
    image: busybox
    volumes:
    - /srv/pgo/web/html:/html:ro
    - /srv/pgo/web/html:/html2:ro
    - data:/data:rw
    - /srv/data/web/db:/db:rw
    - /srv/pgo/web2/x:/x:rw
    - source: /srv/pgo/web/conf/nginx.conf
      target: /etc/nginx.conf
      type: bind
  remote:
    build:
      context: https://github.com/example/x.git
      dockerfile: Dockerfile
version: '3.8'
)";
  const std::vector<std::string> expected = {"app", "conf/nginx.conf", "docker/Dockerfile.web", "html"};
  EXPECT_EQ(referenced_checkout_paths(model, kCheckout), expected);
}

TEST(ReferencedCheckoutPaths, V2Model) {
  const auto model = R"(name: web
services:
  web:
    build:
      context: /srv/pgo/web
      dockerfile: Dockerfile
    env_file:
      - path: /srv/pgo/web/env/web.env
        required: true
      - path: /srv/data/web/secret.env
        required: false
    volumes:
      - type: bind
        source: /srv/pgo/web
        target: /src
)";
  const std::vector<std::string> expected = {".", "Dockerfile", "env/web.env"};
  EXPECT_EQ(referenced_checkout_paths(model, kCheckout), expected);
}

TEST(ReferencedCheckoutPaths, RawFile) {
  const auto raw = R"(services:
  web:
    build: ./app
    env_file: ./web.env
    extends:
      file: common.yml
      service: base
    volumes:
      - ./html/:/html
      - ../other:/other
      - ./a/../b:/b
      - ~/x:/x
  db:
    env_file: [db.env, /etc/db.env]
)";
  const std::vector<std::string> expected = {"app", "app/Dockerfile", "b", "common.yml", "db.env", "html", "web.env"};
  EXPECT_EQ(referenced_checkout_paths(raw, kCheckout), expected);
}

TEST(ReferencedCheckoutPaths, GarbageGivesNothing) {
  EXPECT_TRUE(referenced_checkout_paths("services: [\n", kCheckout).empty());
  EXPECT_TRUE(referenced_checkout_paths("- a\n", kCheckout).empty());
  EXPECT_TRUE(
      referenced_checkout_paths("services:\n  web: [x]\n  db:\n    volumes: {a: b}\n    build: [x]\n", kCheckout)
          .empty());
}

// docs/SECURITY.md documents the policy with the code's own table: every row, word for word.
TEST(PolicyTable, SecurityMdListsEveryRow) {
  std::ifstream in(std::string(PGOD_SOURCE_DIR) + "/docs/SECURITY.md");
  std::stringstream text;
  text << in.rdbuf();
  std::string expected, missing;
  for (const auto& row : compose_policy_table()) {
    const std::string line = "| `" + row.key + "` | " + row.rule + " | " + row.why + " |";
    expected += line + "\n";
    if (text.str().find(line + "\n") == std::string::npos) missing += "  " + line + "\n";
  }
  EXPECT_TRUE(missing.empty()) << "docs/SECURITY.md lacks these rows:\n"
                               << missing << "\nthe whole table:\n"
                               << expected;
  // And nothing else: the table in the document, from its header to its last row, is exactly
  // the code's (a row the code dropped or changed must not live on in the documentation).
  const std::string header = "| key | rule | why |\n| --- | --- | --- |\n";
  const auto start = text.str().find(header);
  ASSERT_NE(start, std::string::npos) << "docs/SECURITY.md has no policy table";
  std::string documented;
  std::istringstream rows(text.str().substr(start + header.size()));
  for (std::string line; std::getline(rows, line) && line.starts_with("| `");) documented += line + "\n";
  EXPECT_EQ(documented, expected);
}

TEST(PolicyTable, EveryKeyHasAReason) {
  for (const auto& row : compose_policy_table()) EXPECT_FALSE(row.why.empty()) << row.key;
}

}  // namespace
}  // namespace pgod::worker
