//===- thread_pool.h - A persistent pool for parallel loops ----*- C++ -*-===//
//
// parallelFor() may be called from several threads at once (one layer,
// concurrent forward calls). The caller works on its own loop too, so a loop
// always makes progress even when every worker is busy with another one.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_THREAD_POOL_H
#define MOERT_SRC_THREAD_POOL_H

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace moert {

class ThreadPool {
public:
  /// Starts `workers` threads (0 runs every loop on the caller).
  explicit ThreadPool(unsigned workers);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  unsigned workers() const { return unsigned(threads_.size()); }

  /// Runs body(i) for every i in [0, n) and returns when all are done.
  /// Rethrows the first exception a body threw (the other indices still
  /// run or are skipped; none is left running).
  void parallelFor(size_t n, const std::function<void(size_t)> &body);

private:
  struct Loop;
  void workerMain();
  void stop();
  static void work(Loop &loop);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Loop>> queue_; // one entry per helper wanted
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

} // namespace moert

#endif // MOERT_SRC_THREAD_POOL_H
