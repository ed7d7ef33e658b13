// Reading one HTTP/1.1 request from a service's docker socket, with Node's http-parser. Every
// byte is hostile: the head is bounded, header names are checked against what docker clients
// send, a header that may appear once and appears twice is refused, and a body that disagrees
// with its headers is refused. The gate answers one request per connection (it re-emits the
// request to dockerd with `Connection: close`), so nothing after the request is ever read as
// another request: pipelined bytes are an error, except after an upgrade request, where they are
// the client's stream.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "expected.h"
#include "gate_service.h"

namespace pgod::dockergate {

struct HttpLimits {
  std::size_t max_head_bytes = 64 * 1024;  // request line and headers
  std::size_t max_headers = 64;
  std::size_t max_target_bytes = 8 * 1024;
};

struct RequestHead {
  std::string method;  // "GET", "POST", "PUT", "DELETE", "HEAD" (anything else is refused)
  // The target's path, percent-decoded once ("/v1.41/containers/abc/json"). A target that is not
  // origin-form, holds a NUL, a "%2F", "." or ".." segments or "//" is refused.
  std::string path;
  // The query, split on '&' and '=' and percent-decoded ('+' is a space), in order; a key may
  // repeat (filters are one key, tags `t` may repeat).
  std::vector<std::pair<std::string, std::string>> query;
  // Header names in lower case; values with surrounding blanks removed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::size_t> content_length;  // as sent; absent when there is none
  bool chunked = false;                       // Transfer-Encoding: chunked (the only one allowed)
  bool upgrade = false;                       // Connection: Upgrade with Upgrade: tcp (attach, exec)

  // The value of a header (lower-case name), or nullptr.
  const std::string* header(std::string_view lower_name) const;
  // The values of a query key, in order.
  std::vector<std::string> query_values(std::string_view key) const;
};

// Where the bytes come from: read up to `size` bytes into `buffer`; 0 at end of stream, -1 on
// error (errno set). A socket in the gate, a string in tests and the fuzzer.
using ReadSome = std::function<long(char* buffer, std::size_t size)>;

class RequestReader {
 public:
  explicit RequestReader(ReadSome read_some, HttpLimits limits = {});
  ~RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // Reads until the head is complete. A refusal has status 400 (malformed), 413 (too large),
  // 431 (head too large) or 501 (transfer coding), and says what was wrong.
  Expected<RequestHead, Refusal> read_head();

  // The next piece of the decoded body (chunked coding removed) into `out` (replaced), at most
  // `max` bytes; returns false when the body has ended (then `out` is empty). A body is
  // complete only when it ended as its headers said.
  Expected<bool, Refusal> read_body(std::string& out, std::size_t max = 64 * 1024);

  // The whole body, refused with 413 when over `limit` bytes.
  Expected<std::string, Refusal> read_whole_body(std::size_t limit);

  // After the body of an upgrade request: bytes the client already sent past the request (the
  // start of its stream). Refused (400) for a request that is not an upgrade and sent more.
  Expected<std::string, Refusal> take_leftover();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A reader over bytes in memory (tests, the fuzzer).
ReadSome read_from_string(std::string bytes);

}  // namespace pgod::dockergate
