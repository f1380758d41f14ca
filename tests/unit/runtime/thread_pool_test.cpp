//===- thread_pool_test.cpp - Parallel loops, failures, concurrent callers ===//

#include "runtime/src/thread_pool.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

using moert::ThreadPool;

TEST_CASE("thread pool: every index runs exactly once", "[thread_pool]") {
  for (unsigned workers : {0u, 1u, 3u, 8u}) {
    ThreadPool pool(workers);
    CHECK(pool.workers() == workers);
    for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(1000)}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallelFor(n, [&](size_t i) { hits[i]++; });
      for (size_t i = 0; i < n; ++i)
        REQUIRE(hits[i] == 1);
    }
  }
}

TEST_CASE("thread pool: the first exception reaches the caller",
          "[thread_pool]") {
  ThreadPool pool(3);
  std::atomic<int> ran{0};
  CHECK_THROWS_WITH(pool.parallelFor(100,
                                     [&](size_t i) {
                                       ++ran;
                                       if (i == 7)
                                         throw std::runtime_error("index 7");
                                     }),
                    "index 7");
  CHECK(ran >= 1);
  // The pool stays usable.
  std::atomic<size_t> sum{0};
  pool.parallelFor(10, [&](size_t i) { sum += i; });
  CHECK(sum == 45);
}

TEST_CASE("thread pool: loops from several threads at once", "[thread_pool]") {
  ThreadPool pool(2);
  std::vector<std::thread> callers;
  std::vector<size_t> sums(8, 0);
  for (size_t c = 0; c < sums.size(); ++c)
    callers.emplace_back([&, c] {
      for (int round = 0; round < 50; ++round) {
        std::atomic<size_t> sum{0};
        pool.parallelFor(64, [&](size_t i) { sum += i + c; });
        if (sum != 64 * 63 / 2 + 64 * c)
          return;
        sums[c] += 1;
      }
    });
  for (std::thread &t : callers)
    t.join();
  for (size_t s : sums)
    CHECK(s == 50);
}
