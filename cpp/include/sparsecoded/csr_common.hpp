// Shared pieces of the CSR kernels: contract checks that run inside the
// kernels' own loops, error reporting out of OpenMP regions, and row ranges
// balanced by nonzeros. No pybind11 here.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sparsecoded/threads.hpp"

namespace sparsecoded {

// std::bad_alloc with a message naming the kernel's operand; pybind11
// translates any std::bad_alloc into MemoryError with what() as the text.
class KernelBadAlloc : public std::bad_alloc {
 public:
  explicit KernelBadAlloc(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

// First failure seen by any thread: a contract breach, or an exception
// (std::bad_alloc above all) thrown by a thread's work. Exceptions must not
// leave an OpenMP region (that calls std::terminate), so threads record the
// failure here, stop early, and the kernel throws after the join.
class KernelError {
 public:
  enum Kind : int { none = 0, bad_indptr = 1, bad_index = 2, changed = 3, out_of_memory = 4, exception = 5 };

  // value2: for bad_indptr, indptr[i] (value is indptr[i+1]).
  void report(Kind kind, int64_t row, int64_t value, int64_t limit, int64_t value2 = 0) noexcept {
    int expected = none;
    if (claim_.compare_exchange_strong(expected, 1)) {
      row_ = row;
      value_ = value;
      value2_ = value2;
      limit_ = limit;
      kind_ = kind;
      failed_.store(true, std::memory_order_release);
    }
  }

  // Runs work() inside an OpenMP region: an exception it throws is recorded
  // here (row: where it happened, -1 for a thread's setup before its rows)
  // instead of leaving the region, which would call std::terminate.
  template <class F>
  void guard(int64_t row, F&& work) noexcept {
    try {
      work();
    } catch (const std::bad_alloc&) {
      report(out_of_memory, row, 0, 0);
    } catch (const std::exception& e) {
      record_message(e.what());
      report(exception, row, 0, 0);
    } catch (...) {
      record_message("unknown exception");
      report(exception, row, 0, 0);
    }
  }

  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }

  // Throws std::invalid_argument (bad indptr), std::out_of_range (bad column
  // index), KernelBadAlloc (a std::bad_alloc: MemoryError in Python) or
  // std::runtime_error naming the operand; call after the parallel region.
  void raise_if_failed(const char* operand) const {
    if (!failed_.load(std::memory_order_acquire)) return;
    const std::string who(operand);
    const std::string where = row_ >= 0 ? " at row " + std::to_string(row_) : std::string(" before any row");
    switch (kind_) {
      case bad_index:
        throw std::out_of_range(who + ": column index " + std::to_string(value_) + " in row " +
                                std::to_string(row_) + " is out of range, expected 0 <= index < " +
                                std::to_string(limit_));
      case bad_indptr:
        throw std::invalid_argument(
            who + ": malformed indptr at row " + std::to_string(row_) +
            ", expected 0 <= indptr[i] <= indptr[i+1] <= nnz = " + std::to_string(limit_) +
            ", found indptr[i] = " + std::to_string(value2_) + ", indptr[i+1] = " + std::to_string(value_));
      case out_of_memory:
        throw KernelBadAlloc(who + ": out of memory for the kernel's per-thread work buffers" + where +
                             " (std::bad_alloc in a worker thread)");
      case exception:
        throw std::runtime_error(who + ": kernel failed" + where + ": " + msg_);
      default:
        throw std::invalid_argument(who + ": structure changed between the size and fill passes at row " +
                                    std::to_string(row_));
    }
  }

 private:
  void record_message(const char* what) noexcept {
    int expected = 0;
    if (msg_claim_.compare_exchange_strong(expected, 1)) {
      size_t n = 0;
      for (; what != nullptr && what[n] != '\0' && n + 1 < sizeof(msg_); ++n) msg_[n] = what[n];
      msg_[n] = '\0';
    }
  }

  std::atomic<int> claim_{0};
  std::atomic<int> msg_claim_{0};
  std::atomic<bool> failed_{false};
  int64_t row_ = 0, value_ = 0, value2_ = 0, limit_ = 0;
  int kind_ = none;
  char msg_[256] = {0};
};

// Extent [begin, end) of a row, or false when indptr breaks the CSR contract
// there (negative, decreasing, or past nnz). Check before any access.
template <class I>
inline bool row_extent(const I* indptr, int64_t row, int64_t nnz, int64_t& begin, int64_t& end) {
  begin = static_cast<int64_t>(indptr[row]);
  end = static_cast<int64_t>(indptr[row + 1]);
  return 0 <= begin && begin <= end && end <= nnz;
}

// True when every index in [begin, end) lies in [0, n_cols). j and
// (n_cols - 1 - j) are both nonnegative exactly when j is in range, so
// OR-ing them keeps the sign bit clear; integer OR/SUB only, so the loop
// vectorises on plain SSE2 (unsigned max/compare would not).
template <class I>
inline bool indices_in_range(const I* indices, int64_t begin, int64_t end, int64_t n_cols) {
  static_assert(std::is_signed<I>::value, "index type must be signed");
  const int64_t top = n_cols - 1;  // -1 when n_cols == 0: every index is bad
  const I last = top > static_cast<int64_t>(std::numeric_limits<I>::max()) ? std::numeric_limits<I>::max()
                                                                           : static_cast<I>(top);
  using U = std::make_unsigned_t<I>;  // wrap-around subtraction, no signed overflow
  I acc = 0;
  for (int64_t p = begin; p < end; ++p)
    acc |= static_cast<I>(indices[p] | static_cast<I>(static_cast<U>(last) - static_cast<U>(indices[p])));
  return acc >= 0;
}

// Slow path for the error message: the first offending index of a row.
template <class I>
inline int64_t first_bad_index(const I* indices, int64_t begin, int64_t end, int64_t n_cols) {
  for (int64_t p = begin; p < end; ++p) {
    const int64_t j = static_cast<int64_t>(indices[p]);
    if (j < 0 || j >= n_cols) return j;
  }
  return -1;
}

// Checks one row (extent and column range) and records a breach. Returns
// false when the row must not be touched.
template <class I>
inline bool check_row(const I* indptr, const I* indices, int64_t row, int64_t nnz, int64_t n_cols,
                      int64_t& begin, int64_t& end, KernelError& err) {
  if (!row_extent(indptr, row, nnz, begin, end)) {
    err.report(KernelError::bad_indptr, row, static_cast<int64_t>(indptr[row + 1]), nnz,
               static_cast<int64_t>(indptr[row]));
    return false;
  }
  if (!indices_in_range(indices, begin, end, n_cols)) {
    err.report(KernelError::bad_index, row, first_bad_index(indices, begin, end, n_cols), n_cols);
    return false;
  }
  return true;
}

// Splits rows [0, n_rows) into `parts` contiguous ranges of about equal
// weight nnz + rows (empty rows still cost a store). Boundaries are found by
// binary search on indptr[r] + r; on a malformed indptr the ranges are
// merely unbalanced, never out of [0, n_rows]. Returns parts + 1 boundaries.
template <class I>
inline std::vector<int64_t> balanced_row_ranges(int64_t n_rows, const I* indptr, int parts) {
  std::vector<int64_t> bounds(static_cast<size_t>(parts) + 1, n_rows);
  bounds[0] = 0;
  const int64_t total = static_cast<int64_t>(indptr[n_rows]) + n_rows;
  for (int t = 1; t < parts; ++t) {
    const int64_t target = total / parts * t + (total % parts) * t / parts;
    int64_t lo = bounds[t - 1], hi = n_rows;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (static_cast<int64_t>(indptr[mid]) + mid < target)
        lo = mid + 1;
      else
        hi = mid;
    }
    bounds[t] = lo;
  }
  return bounds;
}

// Threads worth starting for `work` units (about one per 32k nonzeros), so
// tiny products do not pay for waking a team.
inline int threads_for(int64_t work, int n_threads) {
  const int want = resolve_threads(n_threads);
  const int64_t useful = std::max<int64_t>(1, work / 32768);
  return static_cast<int>(std::min<int64_t>(want, useful));
}

// Validates a whole CSR structure (extents and column range) and records,
// per row, whether its indices strictly increase (1: sorted, no repeats)
// or not (0), so merges can take the sorted path. Size: row_sorted[n_rows]. Cost: one read of
// indptr and indices, O(n_rows + nnz), parallel over balanced row ranges.
// Throws std::invalid_argument / std::out_of_range on a breach.
template <class I>
void csr_check(int64_t n_rows, int64_t n_cols, const I* indptr, const I* indices, int64_t nnz,
               uint8_t* row_sorted, int n_threads, const char* operand) {
  KernelError err;
  const int T = threads_for(nnz + n_rows, n_threads);
  const std::vector<int64_t> bounds = balanced_row_ranges(n_rows, indptr, T);
  // one range per iteration: correct even if the runtime grants fewer threads
#pragma omp parallel for schedule(static, 1) num_threads(T)
  for (int t = 0; t < T; ++t) {
    for (int64_t i = bounds[t]; i < bounds[t + 1] && !err.failed(); ++i) {
      int64_t b, e;
      if (!check_row(indptr, indices, i, nnz, n_cols, b, e, err)) break;
      bool sorted = true;
      for (int64_t p = b + 1; p < e; ++p) sorted &= indices[p - 1] < indices[p];
      row_sorted[i] = sorted ? 1 : 0;
    }
  }
  err.raise_if_failed(operand);
}

}  // namespace sparsecoded
