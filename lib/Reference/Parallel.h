//===- Parallel.h - Heads and rows of the reference on several threads ---===//
//
// The reference's forward loops over heads (and exact attention over rows)
// are independent: each iteration writes only its own slice of the outputs
// and reads shared inputs. parallelFor runs them on a few threads, each a
// contiguous range, so every element is computed by the same code in the same
// order as on one thread: results are bit-identical whatever the thread count.
// MUSE_REF_THREADS caps the threads (1: serial); the default is the hardware
// concurrency. An exception in a worker (std::bad_alloc) is rethrown to the
// caller after every thread has joined.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_REFERENCE_PARALLEL_H
#define MUSE_LIB_REFERENCE_PARALLEL_H

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

namespace muse::ref::detail {

inline int referenceThreads() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
  if (const char *env = std::getenv("MUSE_REF_THREADS"); env && *env) {
    char *end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end && *end == '\0' && v >= 1)
      n = static_cast<int>(std::min<long>(v, 1024));
  }
  return std::max(1, n);
}

/// fn(i) for i in [0, n), split into contiguous ranges over the threads.
/// `minPerThread` keeps tiny loops serial (thread start costs ~10 µs).
template <class F> void parallelFor(int64_t n, int64_t minPerThread, F &&fn) {
  const int64_t threads =
      std::min<int64_t>(referenceThreads(), std::max<int64_t>(1, n / std::max<int64_t>(1, minPerThread)));
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i)
      fn(i);
    return;
  }
  std::vector<std::exception_ptr> errors(threads);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int64_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i)
          fn(i);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  for (std::thread &th : pool)
    th.join();
  for (const std::exception_ptr &e : errors)
    if (e)
      std::rethrow_exception(e);
}

} // namespace muse::ref::detail

#endif // MUSE_LIB_REFERENCE_PARALLEL_H
