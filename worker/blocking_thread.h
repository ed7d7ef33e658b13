// One thread for blocking library calls (libgit2 fetches can take seconds), so the worker's
// event loop keeps answering ps, logs and status meanwhile. Jobs run one at a time, in order;
// each result comes back to the event loop as a promise.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace pgod::worker {

class BlockingThread {
 public:
  BlockingThread();
  ~BlockingThread();  // finishes the running job, drops the queued ones, joins
  KJ_DISALLOW_COPY(BlockingThread);

  // Runs job() on the thread. If the promise is dropped, the job still finishes (a libgit2
  // call cannot be interrupted) but its result is discarded.
  template <class T>
  kj::Promise<T> run(kj::Function<T()> job) {
    auto pair = kj::newPromiseAndCrossThreadFulfiller<T>();
    post([job = kj::mv(job), fulfiller = kj::mv(pair.fulfiller)]() mutable {
      KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { fulfiller->fulfill(job()); })) {
        fulfiller->reject(kj::mv(*exception));
      }
    });
    return kj::mv(pair.promise);
  }

 private:
  void post(kj::Function<void()> job);
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<kj::Function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pgod::worker
