// CSR times a dense vector, and CSR times a dense row-major matrix.
// No pybind11 here.
#pragma once

#include <cstdint>
#include <vector>

#include "sparsecoded/csr_common.hpp"

namespace sparsecoded {

// csr_matvec: y = A @ x.
//   A: n_rows x n_cols CSR (indptr[n_rows + 1], indices[nnz], data[nnz]);
//      indices may be unsorted and may repeat (repeats add up, as in scipy).
//   x[n_cols], y[n_rows]: the caller allocates y; every entry is written.
// Preconditions checked here, in the same loop, before any access:
//   0 <= indptr[i] <= indptr[i+1] <= nnz and 0 <= indices[p] < n_cols.
//   A breach throws std::invalid_argument / std::out_of_range; y is then
//   partly written.
// Cost: O(n_rows + nnz), parallel over row ranges balanced by nnz. Four
// partial sums per row break the floating-point add chain, so rounding may
// differ from scipy's single running sum by a few ulps.
template <class I, class V>
void csr_matvec(int64_t n_rows, int64_t n_cols, const I* indptr, const I* indices, const V* data,
                int64_t nnz, const V* x, V* y, int n_threads) {
  KernelError err;
  const int T = threads_for(nnz + n_rows, n_threads);
  // a few ranges per thread, handed out dynamically: a thread the OS
  // preempts (shared machines) does not hold the whole team at the barrier
  const int P = T == 1 ? 1 : 4 * T;
  const std::vector<int64_t> bounds = balanced_row_ranges(n_rows, indptr, P);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
  for (int t = 0; t < P; ++t) {
    for (int64_t i = bounds[t]; i < bounds[t + 1]; ++i) {
      int64_t b, e;
      if (!check_row(indptr, indices, i, nnz, n_cols, b, e, err)) break;
      V s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t p = b;
      for (; p + 4 <= e; p += 4) {
        s0 += data[p] * x[indices[p]];
        s1 += data[p + 1] * x[indices[p + 1]];
        s2 += data[p + 2] * x[indices[p + 2]];
        s3 += data[p + 3] * x[indices[p + 3]];
      }
      for (; p < e; ++p) s0 += data[p] * x[indices[p]];
      y[i] = (s0 + s1) + (s2 + s3);
    }
  }
  err.raise_if_failed("A");
}

// csr_matvecs: Y = A @ X for a dense X with n_vecs columns.
//   A as in csr_matvec. X: n_cols x n_vecs, Y: n_rows x n_vecs, both
//   row-major (C order); the caller allocates Y; every entry is written.
// Preconditions: as csr_matvec (checked the same way).
// Cost: O(n_rows * n_vecs + nnz * n_vecs). Columns are processed in tiles
// held in registers across the row's nonzeros, so each Y row is stored once.
template <class I, class V>
void csr_matvecs(int64_t n_rows, int64_t n_cols, int64_t n_vecs, const I* indptr, const I* indices,
                 const V* data, int64_t nnz, const V* X, V* Y, int n_threads) {
  constexpr int64_t TILE = 128 / sizeof(V);  // partial sums in 8 of the 16 SSE registers
  KernelError err;
  const int T = threads_for((nnz + n_rows) * (n_vecs > 0 ? n_vecs : 1), n_threads);
  // a few ranges per thread, handed out dynamically: a thread the OS
  // preempts (shared machines) does not hold the whole team at the barrier
  const int P = T == 1 ? 1 : 4 * T;
  const std::vector<int64_t> bounds = balanced_row_ranges(n_rows, indptr, P);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
  for (int t = 0; t < P; ++t) {
    for (int64_t i = bounds[t]; i < bounds[t + 1]; ++i) {
      int64_t b, e;
      if (!check_row(indptr, indices, i, nnz, n_cols, b, e, err)) break;
      V* yrow = Y + i * n_vecs;
      int64_t c0 = 0;
      for (; c0 + TILE <= n_vecs; c0 += TILE) {
        V acc[TILE] = {};
        for (int64_t p = b; p < e; ++p) {
          const V a = data[p];
          const V* xrow = X + static_cast<int64_t>(indices[p]) * n_vecs + c0;
          for (int64_t q = 0; q < TILE; ++q) acc[q] += a * xrow[q];
        }
        for (int64_t q = 0; q < TILE; ++q) yrow[c0 + q] = acc[q];
      }
      if (c0 < n_vecs) {
        const int64_t rest = n_vecs - c0;
        V acc[TILE] = {};
        for (int64_t p = b; p < e; ++p) {
          const V a = data[p];
          const V* xrow = X + static_cast<int64_t>(indices[p]) * n_vecs + c0;
          for (int64_t q = 0; q < rest; ++q) acc[q] += a * xrow[q];
        }
        for (int64_t q = 0; q < rest; ++q) yrow[c0 + q] = acc[q];
      }
    }
  }
  err.raise_if_failed("A");
}

}  // namespace sparsecoded
