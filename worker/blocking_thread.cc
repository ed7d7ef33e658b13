#include "blocking_thread.h"

namespace pgod::worker {

BlockingThread::BlockingThread() : thread_([this] { loop(); }) {}

BlockingThread::~BlockingThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    jobs_.clear();
  }
  wake_.notify_one();
  thread_.join();
}

void BlockingThread::post(kj::Function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(kj::mv(job));
  }
  wake_.notify_one();
}

void BlockingThread::loop() {
  for (;;) {
    kj::Function<void()> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = kj::mv(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace pgod::worker
