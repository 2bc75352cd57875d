// Sparse times sparse (Gustavson): CSR output in two passes, or a dense
// row-major output when the product is nearly full. No pybind11 here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sparsecoded/csr_common.hpp"
#include "sparsecoded/csr_lincomb.hpp"

namespace sparsecoded {

// Shared shapes: A is n_rows x n_inner, B is n_inner x n_cols, both CSR
// with indices possibly unsorted or repeated. A's rows are checked in the
// loop (extent, column < n_inner) before use; B is checked whole by
// csr_check beforehand (so its rows are used many times but checked once).

// csr_matmat_size: fills out_indptr[n_rows + 1] (int64, caller-allocated)
// with the row pointer of C = A @ B and returns nnz(C).
// Cost: O(flops) with a per-thread marker of n_cols int64.
template <class I, class V>
int64_t csr_matmat_size(int64_t n_rows, int64_t n_inner, int64_t n_cols, const I* a_indptr,
                        const I* a_indices, int64_t a_nnz, const I* b_indptr, const I* b_indices,
                        int64_t* out_indptr, int n_threads) {
  KernelError err;
  const int T = threads_for(a_nnz + n_rows + static_cast<int64_t>(b_indptr[n_inner]), n_threads);
#pragma omp parallel num_threads(T)
  {
    // a failed allocation is recorded, never thrown out of the region; the
    // thread still meets the worksharing loop below, and skips every row
    std::vector<int64_t> mark;
    err.guard(-1, [&] { mark.assign(static_cast<size_t>(n_cols), -1); });
#pragma omp for schedule(dynamic, 64)
    for (int64_t i = 0; i < n_rows; ++i) {
      int64_t ab, ae, count = 0;
      if (err.failed() || !check_row(a_indptr, a_indices, i, a_nnz, n_inner, ab, ae, err)) continue;
      for (int64_t p = ab; p < ae; ++p) {
        const int64_t kk = a_indices[p];
        for (int64_t q = b_indptr[kk]; q < b_indptr[kk + 1]; ++q) {
          const int64_t j = b_indices[q];
          if (mark[j] != i) {
            mark[j] = i;
            ++count;
          }
        }
      }
      out_indptr[i + 1] = count;
    }
  }
  err.raise_if_failed("A");
  return counts_to_indptr(out_indptr, n_rows);
}

// csr_matmat_fill: writes C's out_indices / out_data (caller-allocated, of
// length out_indptr[n_rows]); indices distinct per row, in first-touch
// order, NOT sorted (as scipy's product): a sort per row cost more than the
// whole product here. Cost: O(flops).
template <class I, class V>
void csr_matmat_fill(int64_t n_rows, int64_t n_inner, int64_t n_cols, const I* a_indptr,
                     const I* a_indices, const V* a_data, int64_t a_nnz, const I* b_indptr,
                     const I* b_indices, const V* b_data, const int64_t* out_indptr, I* out_indices,
                     V* out_data, int n_threads) {
  KernelError err;
  const int T = threads_for(a_nnz + n_rows + static_cast<int64_t>(b_indptr[n_inner]), n_threads);
#pragma omp parallel num_threads(T)
  {
    // as in csr_matmat_size: an allocation failure is recorded, not thrown
    std::vector<int64_t> mark;
    std::vector<V> acc;
    err.guard(-1, [&] {
      mark.assign(static_cast<size_t>(n_cols), -1);
      acc.resize(static_cast<size_t>(n_cols));
    });
#pragma omp for schedule(dynamic, 64)
    for (int64_t i = 0; i < n_rows; ++i) {
      int64_t ab, ae;
      if (err.failed() || !check_row(a_indptr, a_indices, i, a_nnz, n_inner, ab, ae, err)) continue;
      const int64_t base = out_indptr[i], cap = out_indptr[i + 1] - base;
      I* cols = out_indices + base;
      int64_t count = 0;
      for (int64_t p = ab; p < ae; ++p) {
        const int64_t kk = a_indices[p];
        const V a = a_data[p];
        for (int64_t q = b_indptr[kk]; q < b_indptr[kk + 1]; ++q) {
          const int64_t j = b_indices[q];
          if (mark[j] != i) {
            if (count >= cap) {
              err.report(KernelError::changed, i, count + 1, cap);
              break;
            }
            mark[j] = i;
            acc[j] = a * b_data[q];
            cols[count++] = static_cast<I>(j);
          } else {
            acc[j] += a * b_data[q];
          }
        }
      }
      if (count != cap) {
        err.report(KernelError::changed, i, count, cap);
        continue;
      }
      for (int64_t q = 0; q < count; ++q) out_data[base + q] = acc[static_cast<int64_t>(cols[q])];
    }
  }
  err.raise_if_failed("A");
}

// csr_matmat_dense: C = A @ B written into a dense row-major
// Y[n_rows x n_cols] (caller-allocated; every entry is written).
// Cost: O(n_rows * n_cols + flops); no markers and no sort, which wins
// when C is nearly full.
template <class I, class V>
void csr_matmat_dense(int64_t n_rows, int64_t n_inner, int64_t n_cols, const I* a_indptr,
                      const I* a_indices, const V* a_data, int64_t a_nnz, const I* b_indptr,
                      const I* b_indices, const V* b_data, V* Y, int n_threads) {
  KernelError err;
  const int T = threads_for(a_nnz + n_rows * n_cols + static_cast<int64_t>(b_indptr[n_inner]), n_threads);
#pragma omp parallel for schedule(dynamic, 16) num_threads(T)
  for (int64_t i = 0; i < n_rows; ++i) {
    V* y = Y + i * n_cols;
    std::fill(y, y + n_cols, V(0));
    int64_t ab, ae;
    if (err.failed() || !check_row(a_indptr, a_indices, i, a_nnz, n_inner, ab, ae, err)) continue;
    for (int64_t p = ab; p < ae; ++p) {
      const int64_t kk = a_indices[p];
      const V a = a_data[p];
      const int64_t qb = b_indptr[kk], qe = b_indptr[kk + 1];
      for (int64_t q = qb; q < qe; ++q) y[b_indices[q]] += a * b_data[q];
    }
  }
  err.raise_if_failed("A");
}

}  // namespace sparsecoded
