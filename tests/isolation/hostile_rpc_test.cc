// Item 9: the worker's and the supervisor's Cap'n Proto servers (proto/rpc_listener.cc) against
// a peer that is allowed to connect (root) but sends what no client should: garbage, segment
// tables claiming huge sizes, messages over the size, traversal and nesting limits, unknown
// message types, calls to capabilities and questions that do not exist, answers to questions
// never asked, a second bootstrap under the same id, garbage disembargos, truncated messages,
// and many such connections at once. Messages are built with capnp's own rpc.capnp schema, or
// word by word where the schema cannot express them.
//
// After each, the server must have ended (at most) that one connection: the supervisor and the
// worker keep their PIDs, the worker was not restarted, and a well-behaved client gets the
// correct answer. Where a limit applies, the test shows it applies at pgod's values (8 MiB,
// nesting 16, 256 connections), which are below capnp's defaults (64 MiB, 64): the over-limit
// message is refused (an Abort naming the limit, then the connection closed) and never
// processed, while a message just within the limit is answered.
//
// Labelled integration: tests/run.sh runs these again against ASan+UBSan builds of pgod and
// pgod-worker.
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fd_passing.h"
#include "pgod_harness.h"
#include "rpc_peers.h"
#include "supervisor.capnp.h"
#include "worker.capnp.h"

namespace pgod::isolation {
namespace {

using namespace std::chrono_literals;
using test::PgodHarness;

// proto/rpc_listener.cc's limits, and capnp's defaults, which the over-limit cases stay under.
constexpr std::size_t kTraversalLimitWords = 1 << 20;  // 8 MiB
constexpr int kNestingLimit = 16;
constexpr std::size_t kMaxConnections = 256;
constexpr std::size_t kCapnpDefaultTraversalWords = 8 * 1024 * 1024;
constexpr int kCapnpDefaultNesting = 64;

// A union discriminant no version of rpc.capnp uses.
constexpr uint16_t kUnknownMessageType = 0x7777;

Words bootstrap(uint32_t question) {
  capnp::MallocMessageBuilder message;
  message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(question);
  return to_words(message);
}

Words finish(uint32_t question) {
  capnp::MallocMessageBuilder message;
  message.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(question);
  return to_words(message);
}

// A call with empty parameters, to the answer of question `on_answer` (pipelined on the
// bootstrap) or, when `import_id` is set, to that import.
Words call(uint32_t question, uint64_t interface, uint16_t method, uint32_t on_answer,
           std::optional<uint32_t> import_id = std::nullopt) {
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  if (import_id) {
    call.initTarget().setImportedCap(*import_id);
  } else {
    call.initTarget().initPromisedAnswer().setQuestionId(on_answer);
  }
  call.setInterfaceId(interface);
  call.setMethodId(method);
  call.initParams().getContent().initAsAnyStruct(0, 0);
  return to_words(message);
}

// rpc::Message with an unknown type: the root pointer, the data word holding the union's
// discriminant, then the struct's one pointer and what it leads to.
Words unknown_message(const Words& pointer_and_body) {
  Words words = {struct_pointer(0, 1, 1), kUnknownMessageType};
  words.insert(words.end(), pointer_and_body.begin(), pointer_and_body.end());
  return single_segment(words);
}

// An unknown message whose pointer holds a chain of `depth` structs, each pointing to the next.
Words nested(int depth) {
  Words words;
  for (int level = 0; level < depth; ++level) words.push_back(struct_pointer(0, 0, 1));
  words.push_back(0);  // the last struct's pointer: null
  return unknown_message(words);
}

// An unknown message whose pointer holds a list of `count` pointers, all to one blob of
// `blob_words` words: small on the wire, count * blob_words words for whoever walks it.
Words amplified(uint32_t count, uint32_t blob_words) {
  Words words = {list_pointer(0, 6, count)};  // element size 6: pointers
  for (uint32_t i = 0; i < count; ++i) {
    // From element i (at i + 1 after the list pointer) to the blob, after the last element.
    words.push_back(list_pointer(static_cast<int32_t>(count - i - 1), 2, blob_words * 8));  // bytes
  }
  for (uint32_t i = 0; i < blob_words; ++i) words.push_back(0x5a5a5a5a5a5a5a5aull + i);
  return unknown_message(words);
}

// A bootstrap in a message of `total_words` words: the padding is a second, unreferenced
// segment, which counts against the size limit and is never traversed.
Words padded_bootstrap(std::size_t total_words) {
  capnp::MallocMessageBuilder message;
  message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
  const auto first = message.getSegmentsForOutput();
  if (first.size() != 1) throw std::logic_error("a bootstrap takes one segment");
  auto padding = kj::heapArray<capnp::word>(total_words - first[0].size());
  std::memset(static_cast<void*>(padding.begin()), 0, padding.size() * sizeof(capnp::word));
  const kj::ArrayPtr<const capnp::word> segments[] = {first[0], padding};
  return to_words(kj::arrayPtr(segments, 2));
}

// A segment table as its 32-bit fields (segment count - 1, then each size), padded to a word.
Words table(std::vector<uint32_t> fields) {
  if (fields.size() % 2 != 0) fields.push_back(0);
  Words words(fields.size() / 2);
  std::memcpy(words.data(), fields.data(), fields.size() * sizeof(uint32_t));
  return words;
}

enum class Target { kWorker, kSupervisor };

class HostileRpcTest : public ::testing::TestWithParam<Target> {
 protected:
  static void SetUpTestSuite() { signal(SIGPIPE, SIG_IGN); }

  void SetUp() override {
    pgod.write_config(PgodHarness::service_toml("a", test::service_user_a().name, pgod.upstream("a").path()));
    pgod.start();
    ASSERT_TRUE(pgod.wait_ready({"a"})) << pgod.log();
    pgod_pid = pgod.pid();
    worker_pid = pgod.worker_pid("a");
    ASSERT_GT(worker_pid, 0);
    ASSERT_NO_FATAL_FAILURE(expect_alive_and_serving("at the start"));
  }

  std::string socket() const {
    return GetParam() == Target::kWorker ? pgod.rundir() + "/workers/a.sock" : pgod.rundir() + "/supervisor.sock";
  }
  uint64_t interface() const {
    return GetParam() == Target::kWorker ? capnp::typeId<rpc::Worker>() : capnp::typeId<rpc::Supervisor>();
  }
  // worker: status(); supervisor: listServices(). Both take no parameters.
  uint16_t harmless_method() const { return GetParam() == Target::kWorker ? 1 : 0; }

  // A fresh connection: `messages` sent in order, then what came back.
  std::vector<std::string> exchange(const std::vector<Words>& messages, std::chrono::milliseconds quiet = 2s) {
    RawRpcPeer peer(socket());
    for (const auto& message : messages)
      if (!peer.send_words(message)) break;  // the server closed: what it said still counts
    return peer.replies(quiet);
  }

  // Both servers: same PIDs, no worker restart, correct answers to well-behaved clients.
  void expect_alive_and_serving(const std::string& after) {
    EXPECT_EQ(kill(pgod_pid, 0), 0) << "pgod is gone " << after;
    EXPECT_FALSE(test::proc_status(pgod_pid)["State"].starts_with("Z")) << "pgod exited " << after;
    EXPECT_EQ(supervisor_services(pgod.rundir() + "/supervisor.sock"), "a:running:" + std::to_string(worker_pid))
        << "the supervisor, " << after << "\n"
        << pgod.log();
    EXPECT_EQ(worker_status(pgod.rundir() + "/workers/a.sock"), "state=ok hash=" + pgod.upstream("a").head())
        << "the worker, " << after << "\n"
        << pgod.log();
    const auto row = pgod.worker("a");
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(row->restarts, 0u) << after;
    EXPECT_EQ(row->last_exit, "") << after;
  }

  // An aborted connection: an Abort whose reason names `reason`, then closed; nothing answered.
  static void expect_aborted(const std::vector<std::string>& replies, const std::string& reason,
                             const std::string& what) {
    ASSERT_FALSE(replies.empty()) << what;
    EXPECT_EQ(replies.back(), "closed") << what << ": " << joined(replies);
    EXPECT_TRUE(has_reply_starting(replies, "abort: ")) << what << ": " << joined(replies);
    bool named = false;
    for (const auto& reply : replies)
      named = named || (reply.starts_with("abort: ") && reply.find(reason) != std::string::npos);
    EXPECT_TRUE(named) << what << ": no abort naming \"" << reason << "\": " << joined(replies);
    EXPECT_FALSE(has_reply_starting(replies, "return ")) << what << ": processed: " << joined(replies);
    EXPECT_FALSE(has_reply_starting(replies, "unimplemented")) << what << ": processed: " << joined(replies);
  }

  PgodHarness pgod;
  pid_t pgod_pid = 0, worker_pid = 0;
};

// ---------------------------------------------------------------------------------------------
// Malformed

TEST_P(HostileRpcTest, GarbageBytesEndOnlyTheirOwnConnection) {
  std::mt19937 random(20240501);
  std::string noise(4096, '\0');
  for (auto& c : noise) c = static_cast<char>(random());
  const std::pair<const char*, std::string> payloads[] = {
      {"random bytes", noise},
      {"0xff bytes", std::string(4096, '\xff')},
      {"zero bytes", std::string(4096, '\0')},
      {"an HTTP request", "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
  };
  for (const auto& [what, bytes] : payloads) {
    RawRpcPeer peer(socket());
    peer.send_bytes(bytes.data(), bytes.size());
    peer.close_writing();
    const auto replies = peer.replies();
    ASSERT_FALSE(replies.empty()) << what;
    EXPECT_EQ(replies.back(), "closed") << what << ": " << joined(replies);
    EXPECT_FALSE(has_reply_starting(replies, "return ")) << what << ": " << joined(replies);
    expect_alive_and_serving(std::string("after ") + what);
  }
}

TEST_P(HostileRpcTest, ASegmentTableClaimingHugeSizesIsRefusedBeforeAnyBodyArrives) {
  // Only the table is sent, and the connection is kept open: a server that believed it would
  // allocate and wait; the refusal comes at once.
  const std::pair<const char*, Words> tables[] = {
      {"one segment of 2^32-1 words", table({0, 0xffffffff})},
      {"two segments of 2^31 words each", table({1, 0x80000000, 0x80000000})},
      {"one segment one word over the limit", table({0, kTraversalLimitWords + 1})},
  };
  for (const auto& [what, words] : tables) {
    RawRpcPeer peer(socket());
    ASSERT_TRUE(peer.send_words(words)) << what;
    expect_aborted(peer.replies(5s), "too large", what);
  }
  // So many segments that their table alone would be large.
  RawRpcPeer peer(socket());
  ASSERT_TRUE(peer.send_words(table({100000, 1}))) << "100001 segments";
  expect_aborted(peer.replies(5s), "segments", "100001 segments");
  expect_alive_and_serving("after the segment tables");
}

TEST_P(HostileRpcTest, AMessageOverEightMibIsRefusedUnreadWhileOneJustUnderIsServed) {
  static_assert(kTraversalLimitWords + 1 < kCapnpDefaultTraversalWords, "between pgod's limit and capnp's");
  {
    RawRpcPeer peer(socket());
    const bool sent = peer.send_words(padded_bootstrap(kTraversalLimitWords + 1));
    const auto replies = peer.replies(5s);
    expect_aborted(replies, "too large", "8 MiB + 1 word");
    // Far more than a socket buffer: had the server read it, the whole message would have gone.
    EXPECT_FALSE(sent) << "the server closed the connection without reading the message";
  }
  expect_alive_and_serving("after an 8 MiB + 1 word message");

  const auto replies = exchange({padded_bootstrap(kTraversalLimitWords - 16)}, 5s);
  EXPECT_TRUE(has_reply_starting(replies, "return 0 results")) << "just under 8 MiB: " << joined(replies);
  EXPECT_FALSE(has_reply_starting(replies, "abort")) << joined(replies);
  expect_alive_and_serving("after a message just under 8 MiB");
}

TEST_P(HostileRpcTest, TraversingMoreThanEightMibOfASmallMessageIsRefused) {
  // 300 pointers to one 32 KiB blob: 35 KiB on the wire, 9.4 MiB to walk (capnp's default
  // limit would allow 64 MiB). The server walks an unknown message to echo it back.
  constexpr uint32_t kBlobWords = 4096;
  static_assert(300ull * kBlobWords > kTraversalLimitWords && 300ull * kBlobWords < kCapnpDefaultTraversalWords);
  expect_aborted(exchange({amplified(300, kBlobWords)}), "traversal limit", "300 pointers to one 32 KiB blob");
  expect_alive_and_serving("after the amplified message");

  // The same shape within the limit is echoed back as unimplemented: it was walked and copied.
  const auto replies = exchange({amplified(16, kBlobWords)});
  EXPECT_TRUE(has_reply_starting(replies, "unimplemented")) << "16 pointers: " << joined(replies);
  EXPECT_FALSE(has_reply_starting(replies, "abort")) << joined(replies);
  expect_alive_and_serving("after the message within the traversal limit");
}

TEST_P(HostileRpcTest, NestingDeeperThanSixteenLevelsIsRefused) {
  static_assert(kNestingLimit + 8 < kCapnpDefaultNesting, "between pgod's limit and capnp's");
  expect_aborted(exchange({nested(kNestingLimit + 8)}), "nested", "24 nested structs");
  expect_alive_and_serving("after the deeply nested message");

  const auto replies = exchange({nested(kNestingLimit - 8)});
  EXPECT_TRUE(has_reply_starting(replies, "unimplemented")) << "8 nested structs: " << joined(replies);
  EXPECT_FALSE(has_reply_starting(replies, "abort")) << joined(replies);
  expect_alive_and_serving("after the shallow message");
}

TEST_P(HostileRpcTest, AnUnknownMessageTypeIsAnsweredUnimplementedAndTheConnectionGoesOn) {
  const auto replies = exchange({unknown_message({0}), bootstrap(0), call(1, interface(), harmless_method(), 0)});
  EXPECT_EQ(replies, (std::vector<std::string>{"unimplemented", "return 0 results", "return 1 results"}))
      << joined(replies);
  expect_alive_and_serving("after an unknown message type");
}

TEST_P(HostileRpcTest, ATruncatedMessageThenCloseEndsOnlyItsConnection) {
  const auto whole = bootstrap(0);
  const auto table_only = table({0, 64});
  const std::pair<const char*, std::string> cut[] = {
      {"a bootstrap without its last word",
       std::string(reinterpret_cast<const char*>(whole.data()), (whole.size() - 1) * sizeof(uint64_t))},
      {"a table announcing 64 words, and nothing else",
       std::string(reinterpret_cast<const char*>(table_only.data()), sizeof(uint64_t))},
      {"half a segment table", std::string(4, '\0')},
  };
  for (const auto& [what, bytes] : cut) {
    RawRpcPeer peer(socket());
    ASSERT_TRUE(peer.send_bytes(bytes.data(), bytes.size())) << what;
    peer.close_writing();
    const auto replies = peer.replies();
    EXPECT_EQ(replies.empty() ? "" : replies.back(), "closed") << what << ": " << joined(replies);
    EXPECT_FALSE(has_reply_starting(replies, "return ")) << what << ": " << joined(replies);
    expect_alive_and_serving(std::string("after ") + what);
  }
}

// ---------------------------------------------------------------------------------------------
// Out of order

TEST_P(HostileRpcTest, CallsToImportsAndQuestionsThatDoNotExistAreRefused) {
  expect_aborted(exchange({call(0, interface(), harmless_method(), 0, 77)}), "export", "a call to import 77");
  expect_alive_and_serving("after a call to an unknown import");
  // Pipelined on a question never asked.
  expect_aborted(exchange({call(0, interface(), harmless_method(), 55)}), "question", "a call on question 55's answer");
  expect_alive_and_serving("after a call on an unknown question");
  // A method the interface does not have: that call fails, the connection goes on.
  const auto replies =
      exchange({bootstrap(0), call(1, interface(), 999, 0), call(2, interface(), harmless_method(), 0)});
  ASSERT_EQ(replies.size(), 3u) << joined(replies);
  EXPECT_EQ(replies[0], "return 0 results");
  EXPECT_TRUE(replies[1].starts_with("return 1 exception: ")) << joined(replies);
  EXPECT_EQ(replies[2], "return 2 results");
  expect_alive_and_serving("after a call to an unknown method");
}

TEST_P(HostileRpcTest, AnswersAndReleasesForWhatWasNeverAskedEndOnlyTheirConnection) {
  capnp::MallocMessageBuilder ret;
  auto answer = ret.initRoot<capnp::rpc::Message>().initReturn();
  answer.setAnswerId(9);
  answer.initResults().getContent().initAsAnyStruct(0, 0);
  expect_aborted(exchange({to_words(ret)}), "question", "a Return for question 9");
  expect_alive_and_serving("after a Return for a question never asked");

  expect_aborted(exchange({finish(9)}), "question", "a Finish for question 9");
  expect_alive_and_serving("after a Finish for a question never asked");

  capnp::MallocMessageBuilder release;
  auto released = release.initRoot<capnp::rpc::Message>().initRelease();
  released.setId(42);
  released.setReferenceCount(1);
  expect_aborted(exchange({to_words(release)}), "export", "a Release of export 42");
  expect_alive_and_serving("after a Release of an export never made");

  capnp::MallocMessageBuilder resolve;
  auto resolved = resolve.initRoot<capnp::rpc::Message>().initResolve();
  resolved.setPromiseId(3);
  resolved.initException().setReason("not a promise of ours");
  // Ignored: the connection goes on.
  EXPECT_EQ(exchange({to_words(resolve), bootstrap(0)}), std::vector<std::string>{"return 0 results"});
  expect_alive_and_serving("after a Resolve of a promise never sent");
}

TEST_P(HostileRpcTest, BootstrapTwiceUnderOneQuestionIdEndsOnlyThatConnection) {
  // The first is answered; the second, while question 0 is still open, ends the connection.
  const auto twice = exchange({bootstrap(0), bootstrap(0)});
  ASSERT_EQ(twice.size(), 3u) << joined(twice);
  EXPECT_EQ(twice[0], "return 0 results");
  EXPECT_TRUE(twice[1].starts_with("abort: ") && twice[1].find("already in use") != std::string::npos) << twice[1];
  EXPECT_EQ(twice[2], "closed");
  expect_alive_and_serving("after a second bootstrap under the same id");
  // Under two ids, both are answered.
  EXPECT_EQ(exchange({bootstrap(0), bootstrap(1)}), (std::vector<std::string>{"return 0 results", "return 1 results"}));
  expect_alive_and_serving("after two bootstraps");
}

TEST_P(HostileRpcTest, GarbageDisembargosEndOnlyTheirConnection) {
  auto disembargo = [](auto set_target, auto set_context) {
    capnp::MallocMessageBuilder message;
    auto body = message.initRoot<capnp::rpc::Message>().initDisembargo();
    set_target(body.initTarget());
    set_context(body.initContext());
    return to_words(message);
  };
  const std::pair<const char*, std::vector<Words>> cases[] = {
      {"a sender loopback to import 5",
       {disembargo([](auto target) { target.setImportedCap(5); }, [](auto context) { context.setSenderLoopback(7); })}},
      {"a receiver loopback never asked for, on the bootstrap",
       {bootstrap(0), disembargo([](auto target) { target.initPromisedAnswer().setQuestionId(0); },
                                 [](auto context) { context.setReceiverLoopback(123); })}},
      {"a sender loopback on the bootstrap (not a promise)",
       {bootstrap(0), disembargo([](auto target) { target.initPromisedAnswer().setQuestionId(0); },
                                 [](auto context) { context.setSenderLoopback(1); })}},
      {"a disembargo with accept",
       {disembargo([](auto target) { target.setImportedCap(0); }, [](auto context) { context.setAccept(); })}},
  };
  for (const auto& [what, messages] : cases) {
    const auto replies = exchange(messages);
    ASSERT_FALSE(replies.empty()) << what;
    EXPECT_EQ(replies.back(), "closed") << what << ": " << joined(replies);
    EXPECT_TRUE(has_reply_starting(replies, "abort: ")) << what << ": " << joined(replies);
    expect_alive_and_serving(std::string("after ") + what);
  }
}

// ---------------------------------------------------------------------------------------------
// Descriptors

// Neither server takes descriptors from its peer (the stdout pipe goes the other way, worker to
// gateway). Where the kernel can (SO_PASSRIGHTS, Linux 6.16), pgod's sockets refuse them at the
// sender, and nothing reaches the server. Elsewhere what a peer sends along is closed, whatever
// it is and however many: nothing asks for it, and no descriptor is left behind. The calls are
// answered either way.
TEST_P(HostileRpcTest, DescriptorsSentAlongWithMessagesAreClosedAndCallsAreAnswered) {
  const bool kernel_refuses = [] {
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return refuse_descriptors(probe.get());
  }();
  const pid_t server = GetParam() == Target::kWorker ? worker_pid : pgod_pid;
  const auto open_descriptors = [server]() {
    std::error_code error;
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(server) + "/fd", error))
      ++count;
    return count;
  };
  const std::size_t before = open_descriptors();
  {
    RawRpcPeer peer(socket());
    for (uint32_t question = 0; question < 20; ++question) {
      int ends[2];
      ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
      UniqueFd read_end(ends[0]), write_end(ends[1]);
      UniqueFd directory(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      const bool sent =
          peer.send_words_with_fds(bootstrap(question), {read_end.get(), write_end.get(), directory.get()});
      if (kernel_refuses) {
        ASSERT_FALSE(sent) << "message " << question << ": the socket took descriptors";
        ASSERT_TRUE(peer.send_words(bootstrap(question))) << "message " << question;
      } else {
        ASSERT_TRUE(sent) << "message " << question;
      }
    }
    const auto replies = peer.replies();
    std::size_t answered = 0;
    for (uint32_t question = 0; question < 20; ++question)
      answered += std::count(replies.begin(), replies.end(), "return " + std::to_string(question) + " results");
    EXPECT_EQ(answered, 20u) << joined(replies);
    // 60 were sent: at most the connection itself is held meanwhile (and a moment's slack).
    EXPECT_LE(open_descriptors(), before + 2) << "descriptors held while the connection is open";
  }
  EXPECT_TRUE(PgodHarness::wait_for([&]() { return open_descriptors() <= before; }))
      << open_descriptors() << " descriptors open, " << before << " before";
  expect_alive_and_serving("after descriptors sent along");
}

// ---------------------------------------------------------------------------------------------
// Many at once

TEST_P(HostileRpcTest, ManyHostileConnectionsAtOnceLeaveTheServerServing) {
  std::vector<Words> kinds;
  kinds.push_back(table({0, 0xffffffff}));
  kinds.push_back(amplified(300, 4096));
  kinds.push_back(nested(40));
  kinds.push_back(unknown_message({0}));
  kinds.push_back(call(0, interface(), harmless_method(), 0, 77));
  kinds.push_back(finish(9));
  kinds.push_back(bootstrap(0));
  kinds.push_back(table({0, 64}));  // then nothing: the server waits for the rest
  std::vector<std::unique_ptr<RawRpcPeer>> peers;
  for (std::size_t i = 0; i < 128; ++i) {
    peers.push_back(std::make_unique<RawRpcPeer>(socket()));
    peers.back()->send_words(kinds[i % kinds.size()]);
  }
  // While all of them are open, a well-behaved client is served.
  expect_alive_and_serving("with 128 hostile connections open");
  for (auto& peer : peers) (void)peer->replies(50ms);
  peers.clear();
  expect_alive_and_serving("after 128 hostile connections");
}

TEST_P(HostileRpcTest, ConnectionsBeyondTwoHundredFiftySixAreClosedAtAccept) {
  std::this_thread::sleep_for(300ms);  // the set-up's own connections have been seen closing
  std::vector<std::unique_ptr<RawRpcPeer>> held;
  for (std::size_t i = 0; i < kMaxConnections; ++i) held.push_back(std::make_unique<RawRpcPeer>(socket()));
  // The last one held is open: the server neither closed it nor answered anything.
  EXPECT_EQ(held.back()->replies(500ms), std::vector<std::string>{}) << "connection 256 is held open";
  for (int extra = 0; extra < 4; ++extra) {
    RawRpcPeer peer(socket());  // the kernel accepts; the server closes it unread
    peer.send_words(bootstrap(0));
    EXPECT_EQ(peer.replies(5s), std::vector<std::string>{"closed"}) << "connection " << kMaxConnections + 1 + extra;
  }
  const std::string what = GetParam() == Target::kWorker ? "worker socket" : "supervisor socket";
  EXPECT_NE(pgod.log().find(what + ": refused a connection: " + std::to_string(kMaxConnections) + " are open already"),
            std::string::npos)
      << pgod.log();
  // Each held connection still works.
  for (auto& peer : {held.front().get(), held.back().get()}) {
    peer->send_words(bootstrap(0));
    EXPECT_EQ(peer->replies(), std::vector<std::string>{"return 0 results"});
  }
  held.clear();
  // The slots come back as the connections close.
  EXPECT_TRUE(PgodHarness::wait_for([&] {
    return GetParam() == Target::kWorker ? worker_status(socket()).starts_with("state=ok")
                                         : supervisor_services(socket()).starts_with("a:running");
  })) << pgod.log();
  expect_alive_and_serving("after the connection limit");
}

INSTANTIATE_TEST_SUITE_P(Servers, HostileRpcTest, ::testing::Values(Target::kWorker, Target::kSupervisor),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return std::string(info.param == Target::kWorker ? "worker" : "supervisor");
                         });

}  // namespace
}  // namespace pgod::isolation
