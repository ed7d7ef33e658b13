// Test helpers for what workers hand the gateway: a pipe, and a hold on a pipe's lock.
#pragma once

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "unique_fd.h"

namespace pgod::gateway {

struct PipeEnds {
  PipeEnds() {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) std::abort();
    read_end.reset(ends[0]);
    write_end.reset(ends[1]);
  }
  UniqueFd read_end, write_end;
};

// Every read of a pipe first takes the pipe's lock, and the worker shares the pipe: it can hold
// the lock as long as it likes. Here a write from memory whose page fault userfaultfd leaves
// unanswered holds it, as a worker taken over could with memory that is slow to fault in.
class PipeLockHolder {
 public:
  explicit PipeLockHolder(int write_end) {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    faults_.reset(static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC)));
    if (faults_.get() < 0) throw std::system_error(errno, std::generic_category(), "userfaultfd");
    uffdio_api api{};
    api.api = UFFD_API;
    if (ioctl(faults_.get(), UFFDIO_API, &api) != 0)
      throw std::system_error(errno, std::generic_category(), "UFFDIO_API");
    memory_ = mmap(nullptr, page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory_ == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    uffdio_register range{};
    range.range.start = reinterpret_cast<std::uintptr_t>(memory_);
    range.range.len = page_;
    range.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(faults_.get(), UFFDIO_REGISTER, &range) != 0)
      throw std::system_error(errno, std::generic_category(), "UFFDIO_REGISTER");
    writer_ = std::thread([this, write_end]() { written_ = write(write_end, memory_, 100); });
    // Holding: the write has faulted inside the pipe's lock.
    pollfd fault{faults_.get(), POLLIN, 0};
    if (poll(&fault, 1, 10000) != 1) throw std::runtime_error("the write into the pipe did not fault");
    uffd_msg message{};
    if (::read(faults_.get(), &message, sizeof message) != sizeof message || message.event != UFFD_EVENT_PAGEFAULT)
      throw std::runtime_error("no page fault event");
  }
  // Answers the fault: the write finishes with 100 'y' and the lock is free again.
  ssize_t release() {
    if (!writer_.joinable()) return written_;
    std::string source(page_, 'y');
    void* staged = mmap(nullptr, page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    std::memcpy(staged, source.data(), page_);
    uffdio_copy copy{};
    copy.dst = reinterpret_cast<std::uintptr_t>(memory_);
    copy.src = reinterpret_cast<std::uintptr_t>(staged);
    copy.len = page_;
    (void)ioctl(faults_.get(), UFFDIO_COPY, &copy);
    writer_.join();
    munmap(staged, page_);
    return written_;
  }
  ~PipeLockHolder() {
    release();
    munmap(memory_, page_);
  }

 private:
  std::size_t page_ = 0;
  UniqueFd faults_;
  void* memory_ = nullptr;
  std::thread writer_;
  ssize_t written_ = -1;
};

}  // namespace pgod::gateway
