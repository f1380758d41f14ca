//===- thread_pool.cpp - A persistent pool for parallel loops ------------===//

#include "runtime/src/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>

namespace moert {

/// One parallelFor call. Queue entries share it, so a worker that dequeues
/// it after the loop finished only finds no index left.
struct ThreadPool::Loop {
  const std::function<void(size_t)> *body;
  size_t n;
  std::atomic<size_t> next{0};
  std::atomic<size_t> finished{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::condition_variable done;
  std::exception_ptr error;
};

ThreadPool::ThreadPool(unsigned workers) {
  try {
    for (unsigned i = 0; i < workers; ++i)
      threads_.emplace_back([this] { workerMain(); });
  } catch (...) {
    stop(); // Join the threads that did start.
    throw;
  }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : threads_)
    if (t.joinable())
      t.join();
  threads_.clear();
}

void ThreadPool::workerMain() {
  for (;;) {
    std::shared_ptr<Loop> loop;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return; // stopping
      loop = std::move(queue_.front());
      queue_.pop_front();
    }
    work(*loop);
  }
}

void ThreadPool::work(Loop &loop) {
  size_t mine = 0;
  for (size_t i; (i = loop.next.fetch_add(1)) < loop.n; ++mine) {
    if (loop.failed.load(std::memory_order_relaxed))
      continue;
    try {
      (*loop.body)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(loop.mutex);
      if (!loop.error)
        loop.error = std::current_exception();
      loop.failed = true;
    }
  }
  if (mine && loop.finished.fetch_add(mine) + mine == loop.n) {
    std::lock_guard<std::mutex> lock(loop.mutex); // No lost wake-up.
    loop.done.notify_all();
  }
}

void ThreadPool::parallelFor(size_t n,
                             const std::function<void(size_t)> &body) {
  if (n == 0)
    return;
  auto loop = std::make_shared<Loop>();
  loop->body = &body;
  loop->n = n;
  size_t helpers = std::min<size_t>(n - 1, threads_.size());
  if (helpers) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.insert(queue_.end(), helpers, loop);
    }
    for (size_t i = 0; i < helpers; ++i)
      wake_.notify_one();
  }
  work(*loop);
  {
    std::unique_lock<std::mutex> lock(loop->mutex);
    loop->done.wait(lock, [&] { return loop->finished.load() == n; });
  }
  if (loop->error)
    std::rethrow_exception(loop->error);
}

} // namespace moert
