// Shared pieces of the CSR kernels: contract checks that run inside the
// kernels' own loops, error reporting out of OpenMP regions, and row ranges
// balanced by nonzeros. No pybind11 here.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "sparsecoded/threads.hpp"

namespace sparsecoded {

// First contract breach seen by any thread. Exceptions must not leave an
// OpenMP region, so threads record the breach here, stop early, and the
// kernel throws after the join.
class KernelError {
 public:
  enum Kind : int { none = 0, bad_indptr = 1, bad_index = 2, changed = 3 };

  void report(Kind kind, int64_t row, int64_t value, int64_t limit) noexcept {
    int expected = none;
    if (claim_.compare_exchange_strong(expected, 1)) {
      row_ = row;
      value_ = value;
      limit_ = limit;
      kind_ = kind;
      failed_.store(true, std::memory_order_release);
    }
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }

  // Throws std::invalid_argument (bad indptr) or std::out_of_range (bad
  // column index) naming the operand; call after the parallel region.
  void raise_if_failed(const char* operand) const {
    if (!failed_.load(std::memory_order_acquire)) return;
    const std::string who(operand);
    switch (kind_) {
      case bad_index:
        throw std::out_of_range(who + ": column index " + std::to_string(value_) + " in row " +
                                std::to_string(row_) + " is out of range, expected 0 <= index < " +
                                std::to_string(limit_));
      case bad_indptr:
        throw std::invalid_argument(
            who + ": malformed indptr at row " + std::to_string(row_) +
            ", expected 0 <= indptr[i] <= indptr[i+1] <= nnz = " + std::to_string(limit_) +
            ", found indptr[i+1] = " + std::to_string(value_));
      default:
        throw std::invalid_argument(who + ": structure changed between the size and fill passes at row " +
                                    std::to_string(row_));
    }
  }

 private:
  std::atomic<int> claim_{0};
  std::atomic<bool> failed_{false};
  int64_t row_ = 0, value_ = 0, limit_ = 0;
  int kind_ = none;
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
    err.report(KernelError::bad_indptr, row, static_cast<int64_t>(indptr[row + 1]), nnz);
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
