// The docker gate's request reader (dockergate/http_request) and strict JSON on the bytes a
// service's client writes to its docker socket: any bytes are read or refused with a 4xx or 501,
// never a crash. What is accepted keeps the reader's promises (a clean path, one body length, no
// bytes after a plain request); the same bytes split into small reads give the same answer; a
// body that parses strictly parses again, unchanged, from its own dump. Bytes that are not a
// request are given to the JSON parser whole, so one corpus exercises both. Every parsed body
// then goes to each judge, and every accepted query to the query judges: what a judge accepts
// is never privileged, keeps the project's label, and is accepted again unchanged when judged
// a second time (what goes to dockerd is a fixed point of the rules).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "fuzz_check.h"
#include "gate_service.h"
#include "http_request.h"
#include "judge.h"
#include "strict_json.h"

namespace {

using pgod::dockergate::Refusal;
using pgod::dockergate::RequestHead;
using pgod::dockergate::RequestReader;

struct Result {
  bool head_accepted = false;
  RequestHead head;
  Refusal head_refusal;
  bool body_accepted = false;
  std::string body;
  int body_status = 0;
};

// Hands out `piece` bytes per read.
pgod::dockergate::ReadSome in_pieces(std::string_view bytes, std::size_t piece) {
  return [bytes, piece, at = std::size_t{0}](char* buffer, std::size_t size) mutable -> long {
    const std::size_t take = std::min({size, piece, bytes.size() - at});
    bytes.copy(buffer, take, at);
    at += take;
    return static_cast<long>(take);
  };
}

bool refusal_status(int status) { return status == 400 || status == 413 || status == 431 || status == 501; }

Result read(pgod::dockergate::ReadSome source, bool check_leftover) {
  Result result;
  RequestReader reader(std::move(source));
  auto head = reader.read_head();
  if (!head) {
    result.head_refusal = head.error();
    FUZZ_CHECK(refusal_status(head.error().status), "a refused head without a 4xx or 501");
    FUZZ_CHECK(!head.error().reason.empty(), "a refused head without a reason");
    return result;
  }
  result.head_accepted = true;
  result.head = *head;
  const RequestHead& h = *head;
  FUZZ_CHECK(h.method == "GET" || h.method == "POST" || h.method == "PUT" || h.method == "DELETE" || h.method == "HEAD",
             "a method outside the list");
  FUZZ_CHECK(!h.path.empty() && h.path.front() == '/', "a path not from '/'");
  FUZZ_CHECK(h.path.find("//") == std::string::npos, "\"//\" in an accepted path");
  FUZZ_CHECK(h.path.find('\0') == std::string::npos, "NUL in an accepted path");
  FUZZ_CHECK(h.path.find("/./") == std::string::npos && h.path.find("/../") == std::string::npos &&
                 !h.path.ends_with("/.") && !h.path.ends_with("/.."),
             "a dot segment in an accepted path");
  FUZZ_CHECK(!(h.chunked && h.content_length), "both chunked and a Content-Length");
  FUZZ_CHECK(h.header("host") != nullptr, "no Host accepted");

  auto body = reader.read_whole_body(1 << 20);
  if (!body) {
    result.body_status = body.error().status;
    FUZZ_CHECK(refusal_status(body.error().status), "a refused body without a 4xx");
    FUZZ_CHECK(!body.error().reason.empty(), "a refused body without a reason");
    return result;
  }
  result.body_accepted = true;
  result.body = *body;
  if (h.content_length) FUZZ_CHECK(body->size() == *h.content_length, "a body not of its Content-Length");
  if (!h.chunked && !h.content_length) FUZZ_CHECK(body->empty(), "a body without a length");

  auto leftover = reader.take_leftover();
  if (!leftover) {
    FUZZ_CHECK(leftover.error().status == 400, "leftover refused without 400");
    FUZZ_CHECK(!h.upgrade, "an upgrade's stream refused");
  } else if (check_leftover && !h.upgrade) {
    FUZZ_CHECK(leftover->empty(), "bytes after a plain request accepted");
  }
  return result;
}

// The project "fz" owns what is named fz…; bind sources resolve to themselves (no file system).
class FuzzOwner final : public pgod::dockergate::Owner {
 public:
  bool owns_container(const std::string& name) override { return name.starts_with("fz"); }
  bool owns_volume(const std::string& name) override { return name.starts_with("fz"); }
  bool may_join_network(const std::string& name) override { return name.starts_with("fz"); }
};

const pgod::dockergate::GateService& fuzz_service() {
  static const pgod::dockergate::GateService service{"fz", "fz", {"/srv/fz"}, {"fzshared"}, {"other"}};
  return service;
}

template <class Judge>
void check_judge(const pgod::dockergate::Json& body, Judge judge, bool container) {
  auto judged = judge(body);
  if (!judged) {
    FUZZ_CHECK(judged.error().status == 400 || judged.error().status == 403 || judged.error().status == 404,
               "a judge refused without 400, 403 or 404");
    FUZZ_CHECK(!judged.error().reason.empty(), "a judge refused without a reason");
    return;
  }
  if (container) {
    const auto host = judged->find("HostConfig");
    if (host != judged->end() && host->is_object()) {
      const auto privileged = host->find("Privileged");
      FUZZ_CHECK(privileged == host->end() || *privileged != true, "a privileged container accepted");
    }
  }
  auto again = judge(*judged);
  FUZZ_CHECK(again.has_value(), "what a judge accepted is refused when judged again");
  FUZZ_CHECK(*again == *judged, "what a judge accepted changes when judged again");
}

void check_judges(const pgod::dockergate::Json& body) {
  using namespace pgod::dockergate;
  FuzzOwner owner;
  JudgeContext context{fuzz_service(), owner, [](const std::string& path) { return std::optional<std::string>(path); }};
  check_judge(
      body, [&](const Json& b) { return judge_container_create(context, b, "fz-app-1"); }, true);
  check_judge(
      body, [&](const Json& b) { return judge_exec_create(context, b); }, false);
  check_judge(
      body, [&](const Json& b) { return judge_network_create(context, b); }, false);
  check_judge(
      body, [&](const Json& b) { return judge_network_connect(context, b, "fz_default"); }, false);
  check_judge(
      body, [&](const Json& b) { return judge_volume_create(context, b); }, false);
}

void check_query_judges(const pgod::dockergate::Query& query) {
  using namespace pgod::dockergate;
  FuzzOwner owner;
  JudgeContext context{fuzz_service(), owner, [](const std::string& path) { return std::optional<std::string>(path); }};
  for (auto judge : {judge_build_query, judge_tag_query, judge_pull_query, scope_list_query}) {
    auto judged = judge(context, query);
    if (!judged) continue;
    auto again = judge(context, *judged);
    FUZZ_CHECK(again.has_value(), "a query a judge accepted is refused when judged again");
  }
}

void check_json(std::string_view text) {
  auto json = pgod::dockergate::parse_strict_json(text);
  if (!json) {
    FUZZ_CHECK(!json.error().empty(), "refused JSON without a reason");
    return;
  }
  auto again = pgod::dockergate::parse_strict_json(json->dump());
  FUZZ_CHECK(again.has_value(), "the dump of strict JSON is refused");
  FUZZ_CHECK(*again == *json, "the dump of strict JSON parses to another value");
  check_judges(*json);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const Result whole = read(pgod::dockergate::read_from_string(std::string(bytes)), true);
  const Result pieces = read(in_pieces(bytes, 1 + size % 13), false);

  // Where reads split the bytes changes nothing (bytes after the request aside: a small reader
  // stops at the request's end).
  FUZZ_CHECK(whole.head_accepted == pieces.head_accepted, "head accepted in one read, refused in pieces");
  if (!whole.head_accepted) {
    FUZZ_CHECK(whole.head_refusal.status == pieces.head_refusal.status &&
                   whole.head_refusal.reason == pieces.head_refusal.reason,
               "a head refused differently in pieces");
    check_json(bytes);
    return 0;
  }
  FUZZ_CHECK(whole.head.path == pieces.head.path && whole.head.query == pieces.head.query &&
                 whole.head.headers == pieces.head.headers,
             "a head read differently in pieces");
  FUZZ_CHECK(whole.body_accepted == pieces.body_accepted, "a body accepted in one read, refused in pieces");
  if (!whole.body_accepted) {
    FUZZ_CHECK(whole.body_status == pieces.body_status, "a body refused with another status in pieces");
    return 0;
  }
  FUZZ_CHECK(whole.body == pieces.body, "a body read differently in pieces");

  check_query_judges(whole.head.query);
  check_json(whole.body);
  return 0;
}
