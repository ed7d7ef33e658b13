// The docker gate's request reader against requests as docker clients send them, and against
// one hostile request per known trick (smuggling, parser differentials, CVE-2024-41110's
// body-after-Content-Length-0). Each refusal is checked for its status and for a reason that
// names the problem.
#include "http_request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgod::dockergate {
namespace {

using namespace std::string_literals;

// What reading a whole request gave: the head, the body, what followed, or the first refusal.
struct Outcome {
  std::optional<RequestHead> head;
  std::string body;
  std::string leftover;
  std::optional<Refusal> refusal;
};

// A source that hands out `piece` bytes per read, to show that where reads split the bytes
// changes nothing.
ReadSome read_in_pieces(std::string bytes, std::size_t piece) {
  auto source = std::make_shared<std::pair<std::string, std::size_t>>(std::move(bytes), 0);
  return [source, piece](char* buffer, std::size_t size) -> long {
    auto& [text, at] = *source;
    const std::size_t take = std::min({size, piece, text.size() - at});
    std::copy_n(text.data() + at, take, buffer);
    at += take;
    return static_cast<long>(take);
  };
}

Outcome read_request(ReadSome source, HttpLimits limits = {}) {
  Outcome outcome;
  RequestReader reader(std::move(source), limits);
  auto head = reader.read_head();
  if (!head) {
    outcome.refusal = head.error();
    return outcome;
  }
  outcome.head = *head;
  auto body = reader.read_whole_body(1 << 20);
  if (!body) {
    outcome.refusal = body.error();
    return outcome;
  }
  outcome.body = *body;
  auto leftover = reader.take_leftover();
  if (!leftover) {
    outcome.refusal = leftover.error();
    return outcome;
  }
  outcome.leftover = *leftover;
  return outcome;
}

Outcome read_request(const std::string& bytes, HttpLimits limits = {}) {
  return read_request(read_from_string(bytes), limits);
}

// The request is refused with `status`, and the reason holds `words`.
// Bytes after the request are seen only if they were read with it: a reader that trickles stops
// at the request's end, and the gate never reads (or forwards) what a non-upgrade client sends
// later. Those tests check whole reads only.
enum class Trickle { kSame, kSkip };

::testing::AssertionResult refused(const std::string& bytes, int status, std::string_view words, HttpLimits limits = {},
                                   Trickle trickle = Trickle::kSame) {
  const Outcome outcome = read_request(bytes, limits);
  if (!outcome.refusal) return ::testing::AssertionFailure() << "accepted: path " << outcome.head->path;
  if (outcome.refusal->status != status)
    return ::testing::AssertionFailure() << "status " << outcome.refusal->status << " (" << outcome.refusal->reason
                                         << "), not " << status;
  if (outcome.refusal->reason.find(words) == std::string::npos)
    return ::testing::AssertionFailure() << "reason \"" << outcome.refusal->reason << "\" does not say \"" << words
                                         << "\"";
  if (trickle == Trickle::kSkip) return ::testing::AssertionSuccess();
  // The same bytes one at a time: the same answer.
  const Outcome trickled = read_request(read_in_pieces(bytes, 1), limits);
  if (!trickled.refusal || trickled.refusal->status != status || trickled.refusal->reason != outcome.refusal->reason)
    return ::testing::AssertionFailure() << "read a byte at a time, the answer differs: "
                                         << (trickled.refusal ? trickled.refusal->reason : "accepted");
  return ::testing::AssertionSuccess();
}

// A head with the usual Go client headers around `middle` (header lines, each ending in CRLF).
std::string go_request(std::string_view request_line, std::string_view middle = "", std::string_view body = "") {
  return std::string(request_line) + "\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/24.0.7 (linux)\r\n" +
         std::string(middle) + "\r\n" + std::string(body);
}

// --- what docker clients send ---------------------------------------------------------------

TEST(RequestReader, GoClientListsContainersWithFilters) {
  const std::string bytes =
      "GET /v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Dapp%22%5D%7D "
      "HTTP/1.1\r\n"
      "Host: api.moby.localhost\r\n"
      "User-Agent: Docker-Client/24.0.7 (linux)\r\n"
      "Accept-Encoding: gzip\r\n"
      "\r\n";
  const Outcome outcome = read_request(bytes);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  const RequestHead& head = *outcome.head;
  EXPECT_EQ(head.method, "GET");
  EXPECT_EQ(head.path, "/v1.41/containers/json");
  ASSERT_EQ(head.query.size(), 2u);
  EXPECT_EQ(head.query_values("all"), std::vector<std::string>{"1"});
  EXPECT_EQ(head.query_values("filters"), std::vector<std::string>{R"({"label":["com.docker.compose.project=app"]})"});
  ASSERT_NE(head.header("host"), nullptr);
  EXPECT_EQ(*head.header("host"), "api.moby.localhost");
  EXPECT_EQ(*head.header("user-agent"), "Docker-Client/24.0.7 (linux)");
  EXPECT_EQ(head.header("Host"), nullptr) << "names are looked up in lower case";
  EXPECT_FALSE(head.content_length);
  EXPECT_FALSE(head.chunked);
  EXPECT_FALSE(head.upgrade);
  EXPECT_EQ(outcome.body, "");
  EXPECT_EQ(outcome.leftover, "");
}

TEST(RequestReader, GoClientCreatesAContainer) {
  const std::string body = R"({"Image":"nginx:1.25","Labels":{"com.docker.compose.project":"app"},"HostConfig":{}})";
  const std::string bytes = go_request("POST /v1.41/containers/create?name=app-web-1 HTTP/1.1",
                                       "Content-Length: " + std::to_string(body.size()) +
                                           "\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n",
                                       body);
  const Outcome outcome = read_request(bytes);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->method, "POST");
  EXPECT_EQ(outcome.head->path, "/v1.41/containers/create");
  EXPECT_EQ(outcome.head->query_values("name"), std::vector<std::string>{"app-web-1"});
  EXPECT_EQ(outcome.head->content_length, body.size());
  EXPECT_EQ(*outcome.head->header("content-type"), "application/json");
  EXPECT_EQ(outcome.body, body);
  EXPECT_EQ(outcome.leftover, "");
}

// Go's client streams a build context with chunked coding; tags repeat as `t`.
std::string chunked_build_request() {
  return go_request(
      "POST /v1.41/build?buildargs=%7B%7D&cachefrom=%5B%5D&dockerfile=Dockerfile&labels=%7B%7D&t=app%3Alatest"
      "&t=registry.example.com%3A5000%2Fapp%3Av1&version=1 HTTP/1.1",
      "Transfer-Encoding: chunked\r\nContent-Type: application/x-tar\r\nX-Registry-Config: e30=\r\n"
      "Accept-Encoding: gzip\r\n",
      "a\r\n0123456789\r\n"
      "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n"
      "0\r\n\r\n");
}

TEST(RequestReader, GoClientStreamsABuildContextChunked) {
  const Outcome outcome = read_request(chunked_build_request());
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_TRUE(outcome.head->chunked);
  EXPECT_FALSE(outcome.head->content_length);
  EXPECT_EQ(outcome.head->path, "/v1.41/build");
  EXPECT_EQ(outcome.head->query_values("t"),
            (std::vector<std::string>{"app:latest", "registry.example.com:5000/app:v1"}));
  EXPECT_EQ(*outcome.head->header("x-registry-config"), "e30=");
  EXPECT_EQ(outcome.body, "0123456789abcdefghijklmnopqrstuvwxyz");
  EXPECT_EQ(outcome.leftover, "");
}

TEST(RequestReader, ChunkedBodyReadAByteAtATimeIsTheSame) {
  const Outcome outcome = read_request(read_in_pieces(chunked_build_request(), 1));
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.body, "0123456789abcdefghijklmnopqrstuvwxyz");
}

TEST(RequestReader, ReadBodyGivesPiecesNoLargerThanAsked) {
  std::string chunks;
  std::string expected;
  for (int i = 0; i < 10; ++i) {
    const std::string data(1000 + i, static_cast<char>('a' + i));
    char size[16];
    std::snprintf(size, sizeof size, "%zx", data.size());
    chunks += std::string(size) + "\r\n" + data + "\r\n";
    expected += data;
  }
  RequestReader reader(read_from_string(
      go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: chunked\r\n", chunks + "0\r\n\r\n")));
  ASSERT_TRUE(reader.read_head().has_value());
  std::string body;
  std::string piece;
  for (;;) {
    auto more = reader.read_body(piece, 300);
    ASSERT_TRUE(more.has_value()) << more.error().reason;
    if (!*more) break;
    EXPECT_LE(piece.size(), 300u);
    EXPECT_FALSE(piece.empty());
    body += piece;
  }
  EXPECT_TRUE(piece.empty());
  EXPECT_EQ(body, expected);
  auto leftover = reader.take_leftover();
  ASSERT_TRUE(leftover.has_value()) << leftover.error().reason;
  EXPECT_EQ(*leftover, "");
}

// docker exec: the start request carries a JSON body and upgrades; the client's stream follows
// at once. http-parser 2.9.4 reads the body before it reports the upgrade.
TEST(RequestReader, GoClientStartsAnExecWithABodyAndUpgrades) {
  const std::string body = R"({"Detach":false,"Tty":false})";
  const std::string stream = "\x01\x00\x00\x00\x00\x00\x00\x03ls\n"s;
  const std::string bytes = go_request("POST /v1.41/exec/0123abcd/start HTTP/1.1",
                                       "Content-Length: " + std::to_string(body.size()) +
                                           "\r\nConnection: Upgrade\r\nContent-Type: application/json\r\n"
                                           "Upgrade: tcp\r\n",
                                       body + stream);
  for (const std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{1} << 20}) {
    const Outcome outcome = read_request(read_in_pieces(bytes, piece));
    ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
    EXPECT_TRUE(outcome.head->upgrade);
    EXPECT_EQ(outcome.head->path, "/v1.41/exec/0123abcd/start");
    EXPECT_EQ(outcome.body, body);
    EXPECT_EQ(outcome.leftover, stream.substr(0, outcome.leftover.size()));
    if (piece > bytes.size()) {
      EXPECT_EQ(outcome.leftover, stream);
    }
  }
}

// docker attach: no body (Content-Length: 0, as Go writes it for a POST) and an upgrade.
TEST(RequestReader, GoClientAttachesWithoutABody) {
  const std::string bytes =
      go_request("POST /v1.41/containers/app-web-1/attach?stderr=1&stdin=1&stdout=1&stream=1 HTTP/1.1",
                 "Content-Length: 0\r\nConnection: Upgrade\r\nContent-Type: text/plain\r\nUpgrade: tcp\r\n", "input\n");
  const Outcome outcome = read_request(bytes);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_TRUE(outcome.head->upgrade);
  EXPECT_EQ(outcome.head->content_length, 0u);
  EXPECT_EQ(outcome.body, "");
  EXPECT_EQ(outcome.leftover, "input\n");
}

TEST(RequestReader, UpgradeWithAChunkedBodyLeavesTheStream) {
  const std::string bytes = go_request("POST /v1.41/exec/abc/start HTTP/1.1",
                                       "Connection: Upgrade\r\nUpgrade: tcp\r\nTransfer-Encoding: chunked\r\n",
                                       "3\r\n{}\n\r\n0\r\n\r\nSTREAM");
  const Outcome outcome = read_request(bytes);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.body, "{}\n");
  EXPECT_EQ(outcome.leftover, "STREAM");
}

// docker-py (compose v1) through requests and urllib3.
TEST(RequestReader, DockerPyListsContainers) {
  const std::string bytes =
      "GET /v1.41/containers/json?limit=-1&all=1&size=0&trunc_cmd=0&filters=%7B%22label%22%3A+%5B%22com.docker."
      "compose.project%3Dapp%22%5D%7D HTTP/1.1\r\n"
      "Host: localhost\r\n"
      "User-Agent: docker-compose/1.29.2 docker-py/5.0.3 Linux/6.1.0\r\n"
      "Accept-Encoding: gzip, deflate\r\n"
      "Accept: */*\r\n"
      "Connection: keep-alive\r\n"
      "\r\n";
  const Outcome outcome = read_request(bytes);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->query_values("filters"),
            std::vector<std::string>{R"({"label": ["com.docker.compose.project=app"]})"})
      << "'+' in a query is a space";
  EXPECT_EQ(outcome.head->query_values("limit"), std::vector<std::string>{"-1"});
  EXPECT_EQ(*outcome.head->header("connection"), "keep-alive");
  EXPECT_EQ(*outcome.head->header("accept-encoding"), "gzip, deflate");
}

TEST(RequestReader, DockerPyRemovesAContainerWithAnEmptyBody) {
  const std::string bytes =
      "DELETE /v1.41/containers/app_web_1?v=False&link=False&force=True HTTP/1.1\r\n"
      "Host: localhost\r\nUser-Agent: docker-compose/1.29.2 docker-py/5.0.3 Linux/6.1.0\r\n"
      "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
  const Outcome outcome = read_request(bytes);
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->method, "DELETE");
  EXPECT_EQ(outcome.head->path, "/v1.41/containers/app_web_1");
  EXPECT_EQ(outcome.head->query_values("force"), std::vector<std::string>{"True"});
}

TEST(RequestReader, HeadRequestAndPing) {
  const Outcome outcome = read_request(go_request("HEAD /_ping HTTP/1.1"));
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->method, "HEAD");
  EXPECT_EQ(outcome.head->path, "/_ping");
  EXPECT_TRUE(outcome.head->query.empty());
}

TEST(RequestReader, PathAndQueryAreDecodedOnce) {
  const Outcome outcome = read_request(
      go_request("GET /v1.41/images/registry.example.com:5000/app%3Av1+x/json?a=b%2Bc+d&e&=f&&g=h=i HTTP/1.1"));
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->path, "/v1.41/images/registry.example.com:5000/app:v1+x/json") << "'+' in a path is a '+'";
  EXPECT_EQ(outcome.head->query,
            (std::vector<std::pair<std::string, std::string>>{{"a", "b+c d"}, {"e", ""}, {"", "f"}, {"g", "h=i"}}));
}

// docker cp: a tar body, and the container path in the query, where "%2F" is an ordinary slash.
TEST(RequestReader, GoClientCopiesIntoAContainer) {
  const std::string tar(1536, '\0');
  const Outcome outcome =
      read_request(go_request("PUT /v1.41/containers/app-web-1/archive?noOverwriteDirNonDir=true&"
                              "path=%2Fusr%2Fshare%2Fnginx HTTP/1.1",
                              "Content-Length: 1536\r\nContent-Type: application/x-tar\r\n", tar));
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->method, "PUT");
  EXPECT_EQ(outcome.head->query_values("path"), std::vector<std::string>{"/usr/share/nginx"});
  EXPECT_EQ(outcome.body, tar);
}

TEST(RequestReader, HeaderValuesLoseSurroundingBlanks) {
  const Outcome outcome = read_request(go_request("GET /_ping HTTP/1.1", "X-Custom: \t spaced value \t\r\n"));
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(*outcome.head->header("x-custom"), "spaced value");
}

TEST(RequestReader, RepeatableHeadersMayRepeat) {
  const Outcome outcome = read_request(go_request("GET /_ping HTTP/1.1", "X-Meta: a\r\nX-Meta: b\r\n"));
  ASSERT_FALSE(outcome.refusal) << outcome.refusal->reason;
  EXPECT_EQ(outcome.head->headers.size(), 4u);
}

// --- the request line ---------------------------------------------------------------------------

TEST(RequestRefused, MethodNotInTheList) {
  EXPECT_TRUE(refused(go_request("PATCH /v1.41/containers/x HTTP/1.1"), 501, "method PATCH"));
  EXPECT_TRUE(refused(go_request("OPTIONS /v1.41/containers/json HTTP/1.1"), 501, "method OPTIONS"));
}

TEST(RequestRefused, ConnectMethod) {
  EXPECT_TRUE(refused(go_request("CONNECT dockerd:2375 HTTP/1.1"), 501, "method CONNECT"));
}

TEST(RequestRefused, LowerCaseMethod) {
  EXPECT_TRUE(refused(go_request("get /_ping HTTP/1.1"), 400, "invalid HTTP method"));
}

TEST(RequestRefused, AbsoluteFormTarget) {
  EXPECT_TRUE(refused(go_request("GET http://dockerd/v1.41/containers/json HTTP/1.1"), 400, "not origin-form"));
}

TEST(RequestRefused, AsteriskTarget) { EXPECT_TRUE(refused(go_request("GET * HTTP/1.1"), 400, "not origin-form")); }

TEST(RequestRefused, NulByteInTheTarget) { EXPECT_TRUE(refused(go_request("GET /_ping\0x HTTP/1.1"s), 400, "NUL")); }

TEST(RequestRefused, EncodedNulInThePath) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/x%00y/json HTTP/1.1"), 400, "NUL"));
}

TEST(RequestRefused, EncodedNulInTheQuery) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/json?filters=%00 HTTP/1.1"), 400, "NUL"));
}

TEST(RequestRefused, EncodedSlashUpperCase) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/..%2F..%2Fimages/json HTTP/1.1"), 400, "encoded slash"));
}

TEST(RequestRefused, EncodedSlashLowerCase) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/a%2fb/json HTTP/1.1"), 400, "encoded slash"));
}

TEST(RequestRefused, DotSegment) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/./containers/json HTTP/1.1"), 400, "\".\" segment"));
}

TEST(RequestRefused, DotDotSegment) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/x/../../build HTTP/1.1", "Content-Length: 0\r\n"), 400,
                      "\"..\" segment"));
}

TEST(RequestRefused, EncodedDotDotSegment) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/%2e%2E/json HTTP/1.1"), 400, "\"..\" segment"));
}

TEST(RequestRefused, TrailingDotDot) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/.. HTTP/1.1"), 400, "\"..\" segment"));
}

TEST(RequestRefused, EmptySegment) {
  EXPECT_TRUE(refused(go_request("GET /v1.41//containers/json HTTP/1.1"), 400, "\"//\""));
  EXPECT_TRUE(refused(go_request("GET //v1.41/containers/json HTTP/1.1"), 400, "\"//\""));
}

TEST(RequestRefused, DoubleEncoding) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/a%252Fb/json HTTP/1.1"), 400, "byte 0x25"));
}

TEST(RequestRefused, EncodedQuestionMarkInThePath) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/x%3Fy/json HTTP/1.1"), 400, "byte 0x3f"));
}

TEST(RequestRefused, EncodedBackslashInThePath) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/x%5C..%5Cy/json HTTP/1.1"), 400, "byte 0x5c"));
}

TEST(RequestRefused, BadPercentEscape) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/x%zz/json HTTP/1.1"), 400, "invalid percent escape"));
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/json?all=%4 HTTP/1.1"), 400, "invalid percent escape"));
}

TEST(RequestRefused, FragmentInTheTarget) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/json#x HTTP/1.1"), 400, "byte 0x23"));
}

TEST(RequestRefused, TabInTheTarget) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/x\ty/json HTTP/1.1"), 400, "byte 0x09"));
}

TEST(RequestRefused, NonAsciiInTheTarget) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/\xc3\xa9/json HTTP/1.1"), 400, "byte 0xc3"));
}

TEST(RequestRefused, SemicolonInTheQuery) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/json?all=1;filters=x HTTP/1.1"), 400, "';'"));
}

TEST(RequestRefused, TargetOverTheLimit) {
  const std::string path = "/v1.41/containers/" + std::string(9000, 'a') + "/json";
  EXPECT_TRUE(refused(go_request("GET " + path + " HTTP/1.1"), 431, "request target is over 8192 bytes"));
}

TEST(RequestRefused, TwoSpacesInTheRequestLine) {
  EXPECT_TRUE(refused(go_request("GET  /_ping HTTP/1.1"), 400, "request line"));
}

TEST(RequestRefused, Http10) { EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.0"), 400, "HTTP/1.0")); }

TEST(RequestRefused, Http09WithoutVersion) { EXPECT_TRUE(refused("GET /_ping\r\nHost: x\r\n\r\n", 400, "HTTP/0.9")); }

TEST(RequestRefused, Http2Version) { EXPECT_TRUE(refused(go_request("GET /_ping HTTP/2.0"), 400, "HTTP/2.0")); }

TEST(RequestRefused, EmptyLineBeforeTheRequestLine) {
  EXPECT_TRUE(refused("\r\n" + go_request("GET /_ping HTTP/1.1"), 400, "empty line before the request line"));
}

// --- header framing --------------------------------------------------------------------------

TEST(RequestRefused, ObsFold) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "X-Registry-Auth: abc\r\n def\r\n"), 400, "obs-fold"));
}

TEST(RequestRefused, ObsFoldWithTab) {
  EXPECT_TRUE(
      refused(go_request("POST /build HTTP/1.1", "Transfer-Encoding: identity\r\n\tchunked\r\n"), 400, "obs-fold"));
}

TEST(RequestRefused, BlankBeforeTheFirstHeader) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\n Host: x\r\n\r\n", 400, "a line starting with a blank"));
}

TEST(RequestRefused, SpaceBeforeTheColon) {
  EXPECT_TRUE(refused("POST /build HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
                      "header name \"Transfer-Encoding \": byte 0x20"));
}

TEST(RequestRefused, SpaceBeforeTheColonOfContentLength) {
  EXPECT_TRUE(refused("POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}", 400,
                      "header name \"Content-Length \": byte 0x20"));
}

TEST(RequestRefused, TabBeforeTheColon) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\nHost\t: x\r\n\r\n", 400, "invalid character in header"));
}

TEST(RequestRefused, BareLfLineEnds) { EXPECT_TRUE(refused("GET /_ping HTTP/1.1\nHost: x\n\n", 400, "bare LF")); }

TEST(RequestRefused, BareLfInsideTheHead) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello", 400, "bare LF"));
}

TEST(RequestRefused, BareCrInAValue) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\nHost: x\rContent-Length: 5\r\n\r\nhello", 400, "CR without LF"));
}

TEST(RequestRefused, CrInsteadOfTheLastCrlf) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\nHost: x\r\n\rX\r\n\r\n", 400, "CR without LF"));
}

TEST(RequestRefused, NulInAHeaderValue) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "X-Registry-Auth: a\0b\r\n"s), 400, "NUL"));
}

TEST(RequestRefused, ControlCharacterInAHeaderValue) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1",
                                 "X-Registry-Auth: a\x7f"
                                 "b\r\n"),
                      400, "invalid character"));
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "X-Registry-Auth: a\x1b[0m\r\n"), 400, "invalid character"));
}

TEST(RequestRefused, NonAsciiInAHeaderValue) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "User-Agent2: caf\xc3\xa9\r\n"), 400,
                      "header \"user-agent2\": byte 0xc3"));
}

TEST(RequestRefused, ControlCharacterInAHeaderName) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "X-A\x01: b\r\n"), 400, "invalid character in header"));
}

TEST(RequestRefused, HeaderLineWithoutColon) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "Content-Length 5\r\n"), 400, "invalid character in header"));
}

TEST(RequestRefused, EmptyHeaderName) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", ": value\r\n"), 400, "invalid character in header"));
}

TEST(RequestRefused, HeadOverTheLimit) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", "X-Big: " + std::string(70 * 1024, 'a') + "\r\n"), 431,
                      "request head is over 65536 bytes"));
}

TEST(RequestRefused, HeadNeverEnds) {
  HttpLimits limits;
  limits.max_head_bytes = 1024;
  EXPECT_TRUE(
      refused("GET /_ping HTTP/1.1\r\n" + std::string(2000, 'a'), 431, "request head is over 1024 bytes", limits));
}

TEST(RequestRefused, TooManyHeaders) {
  std::string many;
  for (int i = 0; i < 70; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1", many), 431, "more than 64 header fields"));
}

TEST(RequestRefused, NoHost) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400, "no Host header"));
}

TEST(RequestRefused, ConnectionClosedInTheHead) {
  EXPECT_TRUE(refused("GET /_ping HTTP/1.1\r\nHost: x\r\n", 400, "closed 30 bytes into the request head"));
}

TEST(RequestRefused, NothingSent) { EXPECT_TRUE(refused("", 400, "closed before a request")); }

// A header docker clients send once, sent twice, under either spelling.
class HeaderTwice : public ::testing::TestWithParam<std::string> {};

TEST_P(HeaderTwice, IsRefused) {
  const std::string name = GetParam();
  std::string value = "x";
  if (name == "Content-Length") value = "0";
  if (name == "Connection") value = "keep-alive";
  const std::string request = "POST /v1.41/containers/create HTTP/1.1\r\nHost: localhost\r\n" + name + ": " + value +
                              "\r\n" + name + ": " + value + "\r\n\r\n";
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_TRUE(refused(request, 400, "header \"" + lower + "\" appears twice"));
  // The second copy in another case is the same header.
  const std::string mixed = "POST /v1.41/containers/create HTTP/1.1\r\nHost: localhost\r\n" + name + ": " + value +
                            "\r\n" + lower + ": " + value + "\r\n\r\n";
  EXPECT_TRUE(refused(mixed, 400, "appears twice"));
}

INSTANTIATE_TEST_SUITE_P(SingleHeaders, HeaderTwice,
                         ::testing::Values("Content-Length", "Content-Type", "Transfer-Encoding", "Connection",
                                           "Upgrade", "X-Registry-Auth", "X-Registry-Config", "Expect", "User-Agent",
                                           "Accept-Encoding", "Authorization", "Trailer"));

TEST(RequestRefused, HostTwice) {
  EXPECT_TRUE(
      refused("GET /_ping HTTP/1.1\r\nHost: localhost\r\nhost: dockerd\r\n\r\n", 400, "header \"host\" appears twice"));
}

// --- the body's length --------------------------------------------------------------------------

TEST(RequestRefused, ContentLengthTwiceWithDifferentValues) {
  EXPECT_TRUE(
      refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2\r\nContent-Length: 30\r\n", "{}"),
              400, "header \"content-length\" appears twice"));
}

TEST(RequestRefused, ContentLengthAsAList) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2, 2\r\n", "{}"), 400,
                      "content-length"));
}

TEST(RequestRefused, ContentLengthWithSign) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: +2\r\n", "{}"), 400,
                      "content-length"));
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: -1\r\n", "{}"), 400,
                      "content-length"));
}

TEST(RequestRefused, ContentLengthOverflow) {
  EXPECT_TRUE(
      refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 18446744073709551617\r\n", "{}"),
              400, "content-length"));
}

TEST(RequestRefused, ContentLengthEmpty) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length:\r\n", "{}"), 400,
                      "content-length"));
}

TEST(RequestRefused, ContentLengthThenTransferEncoding) {
  EXPECT_TRUE(refused(
      go_request("POST /v1.41/build HTTP/1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400,
      "both Content-Length and Transfer-Encoding"));
}

TEST(RequestRefused, TransferEncodingThenContentLength) {
  EXPECT_TRUE(refused(
      go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400,
      "both Content-Length and Transfer-Encoding"));
}

TEST(RequestRefused, TransferEncodingOtherThanChunked) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: gzip\r\n", "abc"), 501,
                      "Transfer-Encoding \"gzip\""));
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: identity\r\n", "abc"), 501,
                      "Transfer-Encoding \"identity\""));
}

TEST(RequestRefused, TransferEncodingListEndingInChunked) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
                      501, "Transfer-Encoding \"gzip, chunked\""));
}

TEST(RequestRefused, TransferEncodingChunkedTwiceInOneValue) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
                      501, "Transfer-Encoding \"chunked, chunked\""));
}

TEST(RequestRefused, TransferEncodingInOtherCase) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: Chunked\r\n", "0\r\n\r\n"), 501,
                      "Transfer-Encoding \"Chunked\""));
}

TEST(RequestRefused, TransferEncodingLookalike) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), 501,
                      "Transfer-Encoding \"xchunked\""));
}

TEST(RequestRefused, ExpectContinue) {
  EXPECT_TRUE(refused(
      go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2\r\nExpect: 100-continue\r\n", "{}"), 400,
      "Expect: \"100-continue\""));
}

TEST(RequestRefused, GetWithABody) {
  EXPECT_TRUE(refused(go_request("GET /v1.41/containers/json HTTP/1.1", "Content-Length: 2\r\n", "{}"), 400,
                      "a GET request with a body"));
}

TEST(RequestRefused, DeleteWithAChunkedBody) {
  EXPECT_TRUE(refused(go_request("DELETE /v1.41/containers/x HTTP/1.1", "Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
                      400, "a DELETE request with a body"));
}

TEST(RequestRefused, HeadWithABody) {
  EXPECT_TRUE(
      refused(go_request("HEAD /_ping HTTP/1.1", "Content-Length: 3\r\n", "abc"), 400, "a HEAD request with a body"));
}

// --- bytes after the request (one request per connection) ---------------------------------------

// CVE-2024-41110: a body behind "Content-Length: 0" that an authorization plugin never saw.
TEST(RequestRefused, BodyAfterContentLengthZero) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 0\r\n",
                                 R"({"Image":"alpine","HostConfig":{"Privileged":true}})"),
                      400, "bytes after the request", {}, Trickle::kSkip));
}

TEST(RequestRefused, BodyWithoutALength) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Type: application/json\r\n",
                                 R"({"Image":"alpine"})"),
                      400, "18 bytes after the request", {}, Trickle::kSkip));
}

TEST(RequestRefused, BodyLongerThanItsLength) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2\r\n", "{}{\"x\":1}"), 400,
                      "bytes after the request", {}, Trickle::kSkip));
}

TEST(RequestRefused, PipelinedSecondRequest) {
  EXPECT_TRUE(refused(go_request("GET /_ping HTTP/1.1") +
                          go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2\r\n", "{}"),
                      400, "bytes after the request", {}, Trickle::kSkip));
}

TEST(RequestRefused, RequestAfterAChunkedBody) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: chunked\r\n",
                                 "0\r\n\r\n" + go_request("GET /_ping HTTP/1.1")),
                      400, "bytes after the request", {}, Trickle::kSkip));
}

TEST(RequestRefused, BodyShorterThanItsLength) {
  EXPECT_TRUE(refused(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 10\r\n", "{}"), 400,
                      "closed 2 bytes into a body of 10"));
}

// --- chunked framing (the Debian library does not check it; ChunkFraming does) -----------------

std::string chunked_post(std::string_view body) {
  return go_request("POST /v1.41/build HTTP/1.1", "Transfer-Encoding: chunked\r\n", body);
}

TEST(RequestRefused, ChunkExtension) {
  EXPECT_TRUE(refused(chunked_post("3;name=value\r\nabc\r\n0\r\n\r\n"), 400, "chunk extension"));
}

// http-parser would read the extension up to the next CR, swallowing "abc" and taking "0\r\n"
// as data: the classic differential.
TEST(RequestRefused, ChunkExtensionWithBareLf) {
  EXPECT_TRUE(refused(chunked_post("3;x\nabc\r\n0\r\n\r\n"), 400, "chunk extension"));
}

TEST(RequestRefused, TrailerFields) {
  EXPECT_TRUE(refused(chunked_post("3\r\nabc\r\n0\r\nX-Registry-Auth: e30=\r\n\r\n"), 400, "trailer fields"));
}

TEST(RequestRefused, ChunkDataNotFollowedByCrlf) {
  EXPECT_TRUE(refused(chunked_post("3\r\nabcXY0\r\n\r\n"), 400, "chunk data not followed by CRLF"));
}

TEST(RequestRefused, ChunkDataLongerThanItsSize) {
  EXPECT_TRUE(refused(chunked_post("3\r\nabcd\r\n0\r\n\r\n"), 400, "chunk data not followed by CRLF"));
}

TEST(RequestRefused, ChunkSizeLineWithBareLf) {
  EXPECT_TRUE(refused(chunked_post("3\nabc\r\n0\r\n\r\n"), 400, "invalid chunk size line"));
}

TEST(RequestRefused, ChunkSizeWithTrailingSpace) {
  EXPECT_TRUE(refused(chunked_post("3 \r\nabc\r\n0\r\n\r\n"), 400, "invalid chunk size line: byte 0x20"));
}

TEST(RequestRefused, ChunkSizeWithHexPrefix) {
  EXPECT_TRUE(refused(chunked_post("0x3\r\nabc\r\n0\r\n\r\n"), 400, "invalid chunk size line: byte 0x78"));
}

TEST(RequestRefused, ChunkSizeEmpty) {
  EXPECT_TRUE(refused(chunked_post("\r\nabc\r\n0\r\n\r\n"), 400, "invalid chunk size line: byte 0x0d"));
}

TEST(RequestRefused, ChunkSizeHuge) {
  EXPECT_TRUE(refused(chunked_post("10000000000000000\r\nabc\r\n0\r\n\r\n"), 400, "more than 15 hex digits"));
}

TEST(RequestRefused, LastChunkWithoutFinalCrlf) {
  EXPECT_TRUE(refused(chunked_post("3\r\nabc\r\n0\r\n\rX"), 400, "trailer fields"));
}

TEST(RequestRefused, ConnectionClosedInAChunkedBody) {
  EXPECT_TRUE(refused(chunked_post("a\r\n01234"), 400, "closed inside a chunked body"));
}

// --- upgrades -----------------------------------------------------------------------------------

TEST(RequestRefused, UpgradeToAnotherProtocol) {
  EXPECT_TRUE(refused(go_request("POST /session HTTP/1.1", "Connection: Upgrade\r\nUpgrade: h2c\r\n"), 400,
                      "Upgrade \"h2c\": only tcp"));
  EXPECT_TRUE(refused(go_request("GET /v1.41/events HTTP/1.1", "Connection: Upgrade\r\nUpgrade: websocket\r\n"), 400,
                      "Upgrade \"websocket\""));
}

TEST(RequestRefused, UpgradeHeaderWithoutConnectionUpgrade) {
  EXPECT_TRUE(
      refused(go_request("POST /v1.41/exec/x/start HTTP/1.1", "Content-Length: 0\r\nUpgrade: tcp\r\n", "STREAM"), 400,
              "come together or not at all"));
}

TEST(RequestRefused, ConnectionUpgradeWithoutUpgradeHeader) {
  EXPECT_TRUE(
      refused(go_request("POST /v1.41/exec/x/start HTTP/1.1", "Content-Length: 0\r\nConnection: Upgrade\r\n", "STREAM"),
              400, "come together or not at all"));
}

// A Connection header naming another header asks a proxy to drop it on the way.
TEST(RequestRefused, ConnectionNamingAHeader) {
  EXPECT_TRUE(
      refused(go_request("POST /v1.41/images/create HTTP/1.1",
                         "Content-Length: 0\r\nConnection: close, X-Registry-Auth\r\nX-Registry-Auth: e30=\r\n"),
              400, "Connection \"close, X-Registry-Auth\""));
}

// --- the reader's own contract ----------------------------------------------------------------

TEST(RequestReader, BodyOverTheLimitByContentLength) {
  RequestReader reader(read_from_string(
      go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2000\r\n", std::string(2000, 'x'))));
  ASSERT_TRUE(reader.read_head().has_value());
  auto body = reader.read_whole_body(1000);
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error().status, 413);
  EXPECT_NE(body.error().reason.find("a body of 2000 bytes is over the limit of 1000"), std::string::npos)
      << body.error().reason;
}

TEST(RequestReader, ChunkedBodyOverTheLimit) {
  RequestReader reader(read_from_string(chunked_post("800\r\n" + std::string(0x800, 'x') + "\r\n0\r\n\r\n")));
  ASSERT_TRUE(reader.read_head().has_value());
  auto body = reader.read_whole_body(1000);
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error().status, 413);
  EXPECT_NE(body.error().reason.find("over the limit of 1000"), std::string::npos) << body.error().reason;
}

TEST(RequestReader, ARefusalIsFinal) {
  RequestReader reader(read_from_string(chunked_post("3;x\r\nabc\r\n0\r\n\r\n")));
  ASSERT_TRUE(reader.read_head().has_value());
  std::string piece;
  auto first = reader.read_body(piece);
  ASSERT_FALSE(first.has_value());
  auto again = reader.read_body(piece);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().reason, first.error().reason);
  auto leftover = reader.take_leftover();
  ASSERT_FALSE(leftover.has_value());
  EXPECT_EQ(leftover.error().reason, first.error().reason);
}

TEST(RequestReader, LeftoverBeforeTheBodyEndedIsACallerError) {
  RequestReader reader(
      read_from_string(go_request("POST /v1.41/containers/create HTTP/1.1", "Content-Length: 2\r\n", "{}")));
  ASSERT_TRUE(reader.read_head().has_value());
  auto leftover = reader.take_leftover();
  ASSERT_FALSE(leftover.has_value());
  EXPECT_EQ(leftover.error().status, 500);
}

TEST(RequestReader, ReadErrorIsReported) {
  RequestReader reader([](char*, std::size_t) -> long {
    errno = ECONNRESET;
    return -1;
  });
  auto head = reader.read_head();
  ASSERT_FALSE(head.has_value());
  EXPECT_EQ(head.error().status, 400);
  EXPECT_NE(head.error().reason.find("reading the request"), std::string::npos) << head.error().reason;
}

}  // namespace
}  // namespace pgod::dockergate
