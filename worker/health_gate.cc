#include "health_gate.h"

#include <fmt/format.h>
#include <time.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "command_grammar.h"

namespace pgod::worker {
namespace {

using Json = nlohmann::json;

std::string text_at(const Json& object, const char* key) {
  const auto found = object.find(key);
  return found != object.end() && found->is_string() ? found->get<std::string>() : std::string();
}

const Json& object_at(const Json& object, const char* key) {
  static const Json kEmpty = Json::object();
  const auto found = object.find(key);
  return found != object.end() && found->is_object() ? *found : kEmpty;
}

// Docker's RFC 3339 times ("2026-12-04T05:00:00.123456789Z"); its zero time and anything
// unreadable are 0.
std::int64_t unix_seconds(const std::string& rfc3339) {
  tm parts{};
  const char* rest = strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%S", &parts);
  if (rest == nullptr || parts.tm_year < 70) return 0;
  return static_cast<std::int64_t>(timegm(&parts));
}

// The last health check's output, on one line and short: it goes into the reason.
std::string last_check_output(const Json& health) {
  const auto log = health.find("Log");
  if (log == health.end() || !log->is_array() || log->empty() || !log->back().is_object()) return "";
  std::string output = text_at(log->back(), "Output");
  for (char& c : output)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  while (!output.empty() && output.back() == ' ') output.pop_back();
  output = printable(output);  // the container writes it: no terminal escapes in status or journal
  constexpr std::size_t kMaxOutput = 200;
  if (output.size() > kMaxOutput) output = output.substr(0, kMaxOutput) + "...";
  return output;
}

std::string describe(const ContainerState& container) {
  return fmt::format("container {} (service \"{}\")", container.name, container.service);
}

}  // namespace

Expected<std::vector<ContainerState>, std::string> parse_inspect(std::string_view json) {
  const Json parsed = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return Unexpected(std::string("docker inspect did not answer with a list"));
  std::vector<ContainerState> containers;
  for (const auto& entry : parsed) {
    if (!entry.is_object()) return Unexpected(std::string("docker inspect listed something not a container"));
    ContainerState container;
    container.id = text_at(entry, "Id");
    container.name = text_at(entry, "Name");
    if (container.name.starts_with('/')) container.name.erase(0, 1);
    container.image_id = text_at(entry, "Image");
    const Json& labels = object_at(object_at(entry, "Config"), "Labels");
    container.service = text_at(labels, "com.docker.compose.service");
    container.one_off = text_at(labels, "com.docker.compose.oneoff") == "True";
    const Json& state = object_at(entry, "State");
    container.status = text_at(state, "Status");
    if (const auto code = state.find("ExitCode"); code != state.end() && code->is_number_integer())
      container.exit_code = code->get<int>();
    container.started_at = unix_seconds(text_at(state, "StartedAt"));
    const Json& health = object_at(state, "Health");
    container.health = text_at(health, "Status");
    container.health_output = last_check_output(health);
    if (container.id.empty() || container.status.empty())
      return Unexpected(std::string("docker inspect gave a container without an id or a state"));
    containers.push_back(std::move(container));
  }
  return containers;
}

Expected<std::vector<ImageNames>, std::string> parse_image_inspect(std::string_view json) {
  const Json parsed = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return Unexpected(std::string("docker image inspect did not answer with a list"));
  std::vector<ImageNames> images;
  for (const auto& entry : parsed) {
    if (!entry.is_object()) return Unexpected(std::string("docker image inspect listed something not an image"));
    ImageNames image;
    image.id = text_at(entry, "Id");
    for (const char* key : {"RepoDigests", "RepoTags"}) {
      const auto list = entry.find(key);
      if (list == entry.end() || !list->is_array()) continue;
      for (const auto& name : *list)
        if (name.is_string()) (key[4] == 'D' ? image.digests : image.tags).push_back(name.get<std::string>());
    }
    images.push_back(std::move(image));
  }
  return images;
}

std::string digest_reference(const ImageNames& image, const std::string& reference) {
  if (image.digests.empty()) return "";
  // "registry:5000/app:1.0" -> "registry:5000/app": the tag is after the last slash's colon.
  std::string repository = reference.substr(0, reference.find('@'));
  const auto slash = repository.rfind('/');
  const auto colon = repository.find(':', slash == std::string::npos ? 0 : slash);
  if (colon != std::string::npos) repository.resize(colon);
  for (const auto& digest : image.digests)
    if (digest.substr(0, digest.find('@')) == repository) return digest;
  return image.digests.front();
}

namespace {

// Writes `node` as it was read: a scalar that was quoted ("1", "yes") stays quoted, since
// Compose v1 reads YAML 1.1, where a plain yes is a boolean and a plain 1 a number.
void emit_as_read(YAML::Emitter& out, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      out << YAML::BeginMap;
      for (const auto& entry : node) {
        out << YAML::Key;
        emit_as_read(out, entry.first);
        out << YAML::Value;
        emit_as_read(out, entry.second);
      }
      out << YAML::EndMap;
      break;
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (const auto& entry : node) emit_as_read(out, entry);
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!") out << YAML::DoubleQuoted;
      out << node.Scalar();
      break;
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      out << YAML::Null;
      break;
  }
}

}  // namespace

Expected<std::string, std::string> pin_images(std::string_view validated_yaml,
                                              const std::map<std::string, std::string>& image_by_service) {
  try {
    YAML::Node model = YAML::Load(std::string(validated_yaml));
    YAML::Node services = model["services"];
    if (!services.IsMap()) return Unexpected(std::string("the model has no services"));
    for (const auto& [service, image] : image_by_service) {
      YAML::Node definition = services[service];
      if (!definition.IsMap()) return Unexpected("the model has no service " + service);
      definition["image"] = image;
      definition.remove("build");
    }
    YAML::Emitter out;
    emit_as_read(out, model);
    if (!out.good()) return Unexpected(std::string(out.GetLastError()));
    return std::string(out.c_str()) + "\n";
  } catch (const std::exception& e) {
    return Unexpected(std::string("cannot read the model: ") + e.what());
  }
}

GateVerdict judge_containers(const std::vector<ContainerState>& containers, std::int64_t now,
                             std::chrono::seconds settle) {
  std::vector<std::string> waiting;
  for (const auto& container : containers) {
    if (container.one_off) continue;
    const std::string who = describe(container);
    if (container.status == "exited") {
      if (container.exit_code == 0) continue;  // a one-shot that is done
      return {GateVerdict::Kind::kFailed, fmt::format("{} exited with code {}", who, container.exit_code)};
    }
    if (container.status == "restarting")
      return {GateVerdict::Kind::kFailed,
              fmt::format("{} is restarting (it exited with code {})", who, container.exit_code)};
    if (container.status == "created") {
      waiting.push_back(who + " not started yet");
      continue;
    }
    if (container.status != "running")
      return {GateVerdict::Kind::kFailed, fmt::format("{} is {}", who, container.status)};
    if (container.health == "unhealthy")
      return {GateVerdict::Kind::kFailed,
              fmt::format("{} is unhealthy: its healthcheck says: {}", who,
                          container.health_output.empty() ? "(no output)" : container.health_output)};
    if (container.health == "starting") {
      waiting.push_back(who + " health starting");
      continue;
    }
    if (container.health.empty() && now - container.started_at < settle.count())
      waiting.push_back(fmt::format("{} running for less than {} s", who, settle.count()));
  }
  if (waiting.empty()) return {GateVerdict::Kind::kPassed, ""};
  std::string reason;
  for (const auto& line : waiting) reason += (reason.empty() ? "" : "; ") + line;
  return {GateVerdict::Kind::kWaiting, reason};
}

}  // namespace pgod::worker
