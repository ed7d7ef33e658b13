// Talking to dockerd on its socket: the requests the gate re-emits, and the small questions it
// asks itself (who owns this container?). One connection per request, with `Connection: close`:
// the reply ends when dockerd closes, so the gate never has to find where one reply ends and
// the next begins on a reused connection.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "expected.h"
#include "unique_fd.h"

namespace pgod::dockergate {

using Query = std::vector<std::pair<std::string, std::string>>;

// A request as the gate sends it: built from what was judged, never copied from the client.
struct OutgoingRequest {
  std::string method;
  std::string path;  // with the client's version prefix, IDs resolved, each segment encoded
  Query query;
  std::vector<std::pair<std::string, std::string>> headers;  // only the few the gate passes on
  std::string body;                                          // a judged JSON body (or empty)
  bool json_body = false;                                    // Content-Type: application/json
  bool stream_body = false;  // the body follows chunked, read from the client as it comes
  bool upgrade = false;      // Connection: Upgrade, Upgrade: tcp
};

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string encode_component(std::string_view text);
std::string encode_query(const Query& query);

// The request line and headers (and the JSON body, if any) as bytes on the wire.
std::string render_request(const OutgoingRequest& request);

Expected<UniqueFd, std::string> connect_unix(const std::string& path);

// Writes all of `bytes`, retrying short writes; false on error (errno set).
bool write_all(int fd, std::string_view bytes);

struct DaemonReply {
  int status = 0;
  std::string body;
};

// A GET to dockerd and its whole reply (at most `max_body` bytes of body), parsed with
// http-parser. For the gate's own ownership questions.
Expected<DaemonReply, std::string> ask_daemon(const std::string& socket_path, const std::string& path,
                                              std::size_t max_body = 4 << 20);

// Reads a reply from dockerd on `fd` (after render_request was sent): its status and body,
// chunked coding removed, at most `max_body` bytes.
Expected<DaemonReply, std::string> read_reply(int fd, std::size_t max_body);

}  // namespace pgod::dockergate
