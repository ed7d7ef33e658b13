// The docker gate's dispatch table, in the shape of OpenSSH's monitor table: one row per Docker
// API call that compose (v1 and v2) and the docker commands the worker runs need, with what the
// gate does with it and why it is allowed. A call that is not in the table is refused with its
// method and path; so is every API version before 1.24, where `POST /containers/{id}/start`
// still applied a HostConfig body (a judged create could be followed by a privileged start).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "expected.h"
#include "gate_service.h"

namespace pgod::dockergate {

// What the gate does with a request (gate.cc holds one function per value).
enum class Handler {
  kPlain,              // nothing to judge: host facts, pings, registry metadata
  kImageList,          // the list filtered by the gate: no image named only for another project
  kImage,              // {name} may not be an image named only for another project (404)
  kLogin,              // POST /auth: the body re-emitted with known fields only
  kScopedList,         // lists and events: the project's label forced into the filters
  kNetworkList,        // the list filtered by the gate: own networks and pgo.toml's `networks`
  kContainerCreate,    // the body judged (judge_container_create)
  kOwnContainer,       // {id} must be one of the project's containers; sent on by its full ID
  kOwnContainerMount,  // the same, and its bind sources judged again (dockerd mounts them now)
  kRename,             // own container, to one of the project's own names (compose v2's recreate)
  kExecCreate,         // own container, and the body judged (judge_exec_create)
  kOwnExec,            // {id}'s container must be the project's own
  kNetworkCreate,      // judge_network_create
  kNetworkInspect,     // own network or one of pgo.toml's `networks`
  kOwnNetwork,         // own network only (delete)
  kNetworkConnect,     // a network it may join, and the body judged (judge_network_connect)
  kVolumeCreate,       // judge_volume_create
  kOwnVolume,          // own volume only
  kBuild,              // judge_build_query; the context streamed through
  kTag,                // judge_tag_query
  kPull,               // judge_pull_query
};

// What the request may carry.
enum class Body {
  kNone,    // nothing (Content-Length 0 or absent): a start with a HostConfig is refused
  kJson,    // a JSON document, parsed strictly, judged and re-emitted
  kStream,  // a tar stream (build context, archive upload), re-chunked on its way
};

struct Route {
  std::string_view method;
  // Path segments after the version prefix; "{id}" takes one segment, "{name*}" one or more
  // (image names hold slashes), up to the fixed segments after it.
  std::string_view pattern;
  Handler handler;
  Body body;
  // Query keys it may carry, space-separated ("*": the handler's judge decides).
  std::string_view query;
  bool upgrade = false;  // may switch to a raw stream (attach, exec start)
  std::string_view why;  // why it is allowed, shown by --print-table and in SECURITY.md
};

struct RouteMatch {
  const Route* route = nullptr;
  std::vector<std::string> params;  // the {…} segments, in order
  std::string version;              // "/v1.41", or "" when the client sent none
};

// The row for `method` and `path` (the path as decoded by the request reader). Refused: a
// version prefix other than /v1.N with N >= 24 (404 as dockerd would for junk, 400 for old
// versions), a path in no row (403, naming the method and path).
Expected<RouteMatch, Refusal> match_route(std::string_view method, std::string_view path);

// The whole table, for --print-table and tests.
const std::vector<Route>& gate_routes();

// The lowest API version the gate accepts: 1.24.
inline constexpr int kMinimumApiMinor = 24;

}  // namespace pgod::dockergate
