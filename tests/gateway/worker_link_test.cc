// The gateway's link to a worker, carried by a relay thread: bytes pass both ways whole, the
// event loop's end never carries a descriptor, and a descriptor whose close waits holds the
// relay, never the loop's end.
#include "worker_link.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "pipe_lock_holder.h"
#include "unique_fd.h"

namespace pgod::gateway {
namespace {

using namespace std::chrono_literals;

// A worker's listening socket in a directory of its own, and the link the gateway makes to it.
class WorkerLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // writes into pipes whose reader the relay closed
    char pattern[] = "/tmp/pgod-link-test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/worker.sock";
    listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener_);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
    ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(listen(listener_.get(), 4), 0);
    // The relays of earlier tests end on their own threads, after those tests: counted from
    // none, so that every one counted below is this test's.
    ASSERT_TRUE(relays_drop_to(0)) << WorkerLink::relays_running() << " relays of earlier tests still run";
    relays_before_ = 0;
    link_ = WorkerLink::open(path_, loop_end_);
    ASSERT_NE(link_, nullptr);
    worker_.reset(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(worker_);
  }
  void TearDown() override {
    link_.reset();  // the relay closes the loop's end
    worker_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Sends `bytes` from the worker with `fds` beside them, as Cap'n Proto does.
  void send_with(const std::string& bytes, const std::vector<int>& fds) {
    iovec data{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
      message.msg_control = control.data();
      message.msg_controllen = control.size();
      cmsghdr* part = CMSG_FIRSTHDR(&message);
      part->cmsg_level = SOL_SOCKET;
      part->cmsg_type = SCM_RIGHTS;
      part->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(part), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(sendmsg(worker_.get(), &message, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }

  // What reaches the loop's end within `wait`, read as the event loop reads it, and whether a
  // descriptor came along (none may).
  std::string loop_reads(std::size_t want, std::chrono::milliseconds wait, bool* descriptors = nullptr) {
    std::string got;
    const auto until = std::chrono::steady_clock::now() + wait;
    while (got.size() < want) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd readable{loop_end_, POLLIN, 0};
      if (poll(&readable, 1, static_cast<int>(left.count())) != 1) break;
      std::vector<char> buffer(want - got.size());
      iovec into{buffer.data(), buffer.size()};
      // No room for descriptors, as the event loop reads: the kernel closes any that came, here,
      // and says so with MSG_CTRUNC.
      msghdr message{};
      message.msg_iov = &into;
      message.msg_iovlen = 1;
      const ssize_t n = recvmsg(loop_end_, &message, MSG_DONTWAIT);
      if (n <= 0) break;
      if ((message.msg_flags & MSG_CTRUNC) != 0 && descriptors != nullptr) *descriptors = true;
      got.append(buffer.data(), static_cast<std::size_t>(n));
    }
    return got;
  }

  // Sends each pipe's read end with a message of its own ("m"), lets go of the test's copy, and
  // waits until the loop has read every message; the pipes' inode numbers, in order.
  std::vector<ino_t> send_each(std::vector<PipeEnds>& pipes) {
    std::vector<ino_t> inodes;
    for (auto& pipe : pipes) {
      struct stat status {};
      inodes.push_back(fstat(pipe.read_end.get(), &status) == 0 ? status.st_ino : 0);
      send_with("m", {pipe.read_end.get()});
      pipe.read_end.reset();
    }
    EXPECT_EQ(loop_reads(pipes.size(), 2000ms), std::string(pipes.size(), 'm'));
    return inodes;
  }

  bool relays_drop_to(std::size_t count) {
    for (int tries = 0; tries < 500; ++tries) {
      if (WorkerLink::relays_running() <= count) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::string dir_, path_;
  UniqueFd listener_, worker_;
  int loop_end_ = -1;  // the relay's to close
  std::shared_ptr<WorkerLink> link_;
  std::size_t relays_before_ = 0;
};

ino_t inode_of(int fd) {
  struct stat status {};
  return fstat(fd, &status) == 0 ? status.st_ino : 0;
}

// True once a write into `write_end` finds no reader left: whoever held the read end closed it.
bool reader_closed(int write_end) {
  for (int tries = 0; tries < 200; ++tries) {
    if (write(write_end, "z", 1) < 0 && errno == EPIPE) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

std::string pattern(std::size_t size, char seed) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(seed + i * 7 + i / 4096);
  return bytes;
}

void write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

std::string read_exactly(int fd, std::size_t size) {
  std::string got;
  std::vector<char> buffer(64 * 1024);
  while (got.size() < size) {
    const ssize_t n = read(fd, buffer.data(), std::min(buffer.size(), size - got.size()));
    if (n <= 0) break;
    got.append(buffer.data(), static_cast<std::size_t>(n));
  }
  return got;
}

TEST_F(WorkerLinkTest, BytesPassBothWaysWholeAndInOrderAtTheSameTime) {
  const std::string up = pattern(8 << 20, 'a');
  const std::string down = pattern(8 << 20, 'k');
  std::string got_up, got_down;
  {
    std::thread worker_writes([&]() { write_all(worker_.get(), up); });
    std::thread loop_writes([&]() { write_all(loop_end_, down); });
    std::thread loop_reads_it([&]() { got_up = read_exactly(loop_end_, up.size()); });
    got_down = read_exactly(worker_.get(), down.size());
    worker_writes.join();
    loop_writes.join();
    loop_reads_it.join();
  }
  EXPECT_TRUE(got_up == up) << "worker → loop: " << got_up.size() << " of " << up.size() << " bytes, in order";
  EXPECT_TRUE(got_down == down) << "loop → worker: " << got_down.size() << " of " << down.size();
}

TEST_F(WorkerLinkTest, AMessagesFirstDescriptorIsKeptForTheLoopTheOthersClosedAndTheLoopsEndCarriesNone) {
  PipeEnds first, second;
  UniqueFd null_device(open("/dev/null", O_RDONLY | O_CLOEXEC));
  send_with("hello", {first.read_end.get(), second.read_end.get(), null_device.get()});
  const ino_t first_inode = inode_of(first.read_end.get());
  const ino_t second_inode = inode_of(second.read_end.get());
  first.read_end.reset();
  second.read_end.reset();
  bool descriptors = false;
  EXPECT_EQ(loop_reads(5, 2000ms, &descriptors), "hello");
  EXPECT_FALSE(descriptors) << "the loop's end carries bytes only";
  EXPECT_TRUE(reader_closed(second.write_end.get())) << "a second descriptor is closed by the relay";
  EXPECT_EQ(link_->take(second_inode), nullptr) << "one a message";
  auto held = link_->take(first_inode);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(inode_of(held->fd()), first_inode);
  EXPECT_EQ(link_->take(first_inode), nullptr) << "taken once";
  EXPECT_EQ(write(first.write_end.get(), "x", 1), 1) << "held while taken";
  held.reset();
  EXPECT_TRUE(reader_closed(first.write_end.get())) << "given back, the relay closes it";
}

// Calls may be served in another order than their descriptors came (the loop is busy, a call
// is cancelled): each takes the one its call names, never the next in line.
TEST_F(WorkerLinkTest, EachCallTakesTheDescriptorItNamesWhateverTheOrder) {
  std::vector<PipeEnds> pipes(3);
  const std::vector<ino_t> inodes = send_each(pipes);
  for (std::size_t i : {2, 0, 1}) {
    auto held = link_->take(inodes[i]);
    ASSERT_NE(held, nullptr) << "pipe " << i;
    EXPECT_EQ(inode_of(held->fd()), inodes[i]);
  }
  EXPECT_EQ(link_->take(inodes[0]), nullptr);
  EXPECT_EQ(link_->take(12345), nullptr) << "a number no descriptor has";
}

// Inode numbers are recycled: of two kept descriptors with one number, a call gets the newer,
// its own (kept just before its message reached the loop), never a stale one left by a call
// that never came. Two openings of one FIFO share an inode; their flags tell them apart.
TEST_F(WorkerLinkTest, OfTwoDescriptorsWithOneInodeNumberACallTakesTheNewer) {
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  UniqueFd older(open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  UniqueFd newer(open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(older && newer);
  ASSERT_EQ(fcntl(newer.get(), F_SETFL, O_RDONLY), 0);  // the newer one blocks
  const ino_t inode = inode_of(older.get());
  ASSERT_EQ(inode_of(newer.get()), inode);
  send_with("o", {older.get()});
  send_with("n", {newer.get()});
  EXPECT_EQ(loop_reads(2, 2000ms), "on");
  auto held = link_->take(inode);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(fcntl(held->fd(), F_GETFL) & O_NONBLOCK, 0) << "the newer one";
  auto second = link_->take(inode);
  ASSERT_NE(second, nullptr);
  EXPECT_NE(fcntl(second->fd(), F_GETFL) & O_NONBLOCK, 0) << "then the older";
}

// One worker holds at most kLentAtOnce reader threads per link: past them a call gets none, the
// relay closes the descriptor, and the worker streams through messages; one handed back makes
// room for the next.
TEST_F(WorkerLinkTest, ALinkLendsAtMostFourDescriptorsAtOnceAndTheRelayClosesOneMore) {
  std::vector<PipeEnds> pipes(WorkerLink::kLentAtOnce + 2);
  const std::vector<ino_t> inodes = send_each(pipes);
  std::vector<std::unique_ptr<WorkerLink::Held>> lent;
  for (std::size_t i = 0; i < WorkerLink::kLentAtOnce; ++i) {
    lent.push_back(link_->take(inodes[i]));
    ASSERT_NE(lent.back(), nullptr) << "pipe " << i;
  }
  const std::size_t over = WorkerLink::kLentAtOnce;
  EXPECT_EQ(link_->take(inodes[over]), nullptr) << "one more than a link lends at once";
  EXPECT_TRUE(reader_closed(pipes[over].write_end.get())) << "the relay closed the one it did not lend";
  EXPECT_EQ(write(pipes[0].write_end.get(), "x", 1), 1) << "the lent ones stay open";
  lent.front().reset();  // a reader is done
  EXPECT_TRUE(reader_closed(pipes[0].write_end.get()));
  EXPECT_NE(link_->take(inodes[over + 1]), nullptr) << "room again";
}

// Descriptors whose calls never came are bounded: one past kKeptDescriptors pushes out (and
// closes) the oldest, and the others stay takeable.
TEST_F(WorkerLinkTest, PastTheLimitTheOldestKeptDescriptorIsClosed) {
  std::vector<PipeEnds> pipes(WorkerLink::kKeptDescriptors + 2);
  const std::vector<ino_t> inodes = send_each(pipes);
  EXPECT_TRUE(reader_closed(pipes[0].write_end.get()));
  EXPECT_TRUE(reader_closed(pipes[1].write_end.get()));
  EXPECT_EQ(link_->take(inodes[0]), nullptr);
  for (std::size_t i = 2; i < pipes.size(); ++i) {
    EXPECT_EQ(write(pipes[i].write_end.get(), "x", 1), 1) << "pipe " << i << " is kept";
    EXPECT_NE(link_->take(inodes[i]), nullptr) << "pipe " << i;
  }
}

// More descriptors than the relay has room for in one read: the kernel closes the rest inside
// recvmsg (on the relay's thread too), and the first is still the one kept.
TEST_F(WorkerLinkTest, AMessageWithManyDescriptorsKeepsItsFirstAndClosesEveryOther) {
  std::vector<PipeEnds> pipes(40);
  std::vector<int> read_ends;
  for (auto& pipe : pipes) read_ends.push_back(pipe.read_end.get());
  send_with("many", read_ends);
  const ino_t first_inode = inode_of(pipes[0].read_end.get());
  for (auto& pipe : pipes) pipe.read_end.reset();
  bool descriptors = false;
  EXPECT_EQ(loop_reads(4, 2000ms, &descriptors), "many");
  EXPECT_FALSE(descriptors);
  for (std::size_t i = 1; i < pipes.size(); ++i) EXPECT_TRUE(reader_closed(pipes[i].write_end.get())) << "pipe " << i;
  auto held = link_->take(first_inode);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(inode_of(held->fd()), first_inode);
}

// A descriptor whose last close waits (a pipe whose lock the worker holds, by a write faulting
// on memory userfaultfd leaves unanswered) is closed by the relay, never by the loop: handed
// back, it holds the relay, and the loop's thread goes on. The relay keeps it until it is handed
// back, so the test's own copy is never the last (closed first, it would wait here instead).
// Were the loop's end the worker's socket, a plain read of it would take the descriptor and
// close it there, and take() would find nothing.
TEST_F(WorkerLinkTest, ADescriptorWhoseCloseWaitsHoldsTheRelayNeverTheLoopsEnd) {
  alarm(60);  // a stalled thread: fail instead of hanging
  PipeEnds locked;
  ASSERT_EQ(write(locked.write_end.get(), "abc", 3), 3);
  const ino_t inode = inode_of(locked.read_end.get());
  send_with("first", {locked.read_end.get()});
  EXPECT_EQ(loop_reads(5, 5000ms), "first");
  locked.read_end.reset();  // the relay keeps its own: not the last close
  auto held = link_->take(inode);
  ASSERT_NE(held, nullptr);
  {
    PipeLockHolder holder(locked.write_end.get());
    const auto started = std::chrono::steady_clock::now();
    held.reset();  // given back: the relay's close is the last, and takes the lock
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s) << "the loop's thread did not wait for the lock";
    send_with("second", {});
    EXPECT_EQ(loop_reads(6, 300ms), "") << "the relay waits for the lock (the premise)";
    EXPECT_EQ(holder.release(), 100);
    EXPECT_EQ(loop_reads(6, 5000ms), "second") << "let go, the relay goes on";
  }
  alarm(0);
}

// A relay stuck on a descriptor outlives its link, and says so (the gateway makes no more links
// for a service while two of its relays run): it ends once the worker lets go.
TEST_F(WorkerLinkTest, ARelayStuckClosingAKeptDescriptorOutlivesItsLinkUntilTheWorkerLetsGo) {
  alarm(60);
  PipeEnds locked;
  ASSERT_EQ(write(locked.write_end.get(), "abc", 3), 3);
  PipeLockHolder holder(locked.write_end.get());
  send_with("x", {locked.read_end.get()});
  locked.read_end.reset();
  EXPECT_EQ(loop_reads(1, 2000ms), "x");
  const auto running = link_->relay_running();
  link_.reset();  // the relay closes what it kept: the last close of the pipe, which waits
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(running.expired()) << "stuck on the pipe's lock";
  EXPECT_GT(WorkerLink::relays_running(), relays_before_);
  EXPECT_EQ(holder.release(), 100);
  for (int tries = 0; tries < 500 && !running.expired(); ++tries) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(running.expired()) << "let go, the relay ends";
  EXPECT_TRUE(relays_drop_to(relays_before_));
  alarm(0);
}

TEST_F(WorkerLinkTest, AWorkerThatHangsUpEndsTheLoopsEndAndTheRelayEndsOnceTheLoopLetsGo) {
  PipeEnds pipe;
  const ino_t inode = inode_of(pipe.read_end.get());
  send_with("x", {pipe.read_end.get()});
  pipe.read_end.reset();
  worker_.reset();
  EXPECT_EQ(loop_reads(1, 2000ms), "x");
  pollfd readable{loop_end_, POLLIN, 0};
  ASSERT_EQ(poll(&readable, 1, 2000), 1);
  char byte = 0;
  EXPECT_EQ(read(loop_end_, &byte, 1), 0) << "EOF";
  auto held = link_->take(inode);
  ASSERT_NE(held, nullptr) << "what was taken off stays takeable until the loop lets go";
  EXPECT_EQ(write(pipe.write_end.get(), "y", 1), 1);
  EXPECT_GT(WorkerLink::relays_running(), relays_before_);
  held.reset();
  link_.reset();
  EXPECT_TRUE(reader_closed(pipe.write_end.get()));
  EXPECT_TRUE(relays_drop_to(relays_before_));
}

TEST(WorkerLinkOpenTest, AWorkerSocketThatIsNotThereEndsTheLoopsEnd) {
  int loop_end = -1;
  auto link = WorkerLink::open("/nonexistent-pgod-test/worker.sock", loop_end);
  ASSERT_NE(link, nullptr);
  const auto running = link->relay_running();
  pollfd readable{loop_end, POLLIN, 0};
  ASSERT_EQ(poll(&readable, 1, 5000), 1);
  char byte = 0;
  EXPECT_EQ(read(loop_end, &byte, 1), 0);
  EXPECT_FALSE(running.expired()) << "the relay waits for the loop to let go";
  link.reset();
  for (int tries = 0; tries < 500 && !running.expired(); ++tries) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(running.expired()) << "let go, the relay ends";
}

}  // namespace
}  // namespace pgod::gateway
