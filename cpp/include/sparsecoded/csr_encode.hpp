// Encoding: coded row blocks sum_j E[i, j] * A_j of a CSR matrix.
// No pybind11 here.
#pragma once

#include <cstdint>
#include <vector>

#include "sparsecoded/csr_common.hpp"
#include "sparsecoded/csr_lincomb.hpp"

namespace sparsecoded {

// csr_encode_size / csr_encode_fill: the n coded blocks of A, stacked.
//   A: m x c CSR (indptr[m + 1], indices[nnz], data[nnz]), checked by
//      csr_check first, which filled row_sorted[m]. Indices may be unsorted
//      or repeat.
//   A is cut into k row blocks of b rows (b * k >= m; block j holds rows
//   j*b .. j*b+b-1, rows past m are empty). E: n x k, row-major, finite.
//   Output: one CSR of n*b rows x c, block i in rows i*b .. i*b+b-1, equal
//   to sum_j E[i, j] * A_j over the j with E[i, j] != 0; sorted, distinct
//   indices (entries that cancel to 0 stay stored).
//   out_indptr[n*b + 1] (int64): the caller allocates, the size pass fills
//   it and returns the total nnz; the caller then allocates out_indices and
//   out_data of that length for the fill pass.
// Cost: sum over blocks i of nnz(sum of its w_i blocks) * log w_i, plus a
//   sort for rows with unsorted input. Parallel over output rows.
template <class I, class V>
struct EncodePlan {
  // supports[i]: the blocks j with E[i, j] != 0, and their coefficients.
  std::vector<std::vector<int64_t>> blocks;
  std::vector<std::vector<V>> coefs;

  EncodePlan(int64_t n, int64_t k, const V* E) : blocks(n), coefs(n) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j)
        if (E[i * k + j] != V(0)) {
          blocks[i].push_back(j);
          coefs[i].push_back(E[i * k + j]);
        }
  }

  // Input entries all coded blocks read: sum_i w_i * nnz(A) / k, about.
  int64_t work(const I* indptr, int64_t m, int64_t k) const {
    int64_t w = 0;
    for (const auto& J : blocks) w += static_cast<int64_t>(J.size());
    return w * static_cast<int64_t>(indptr[m]) / k;
  }

  // Sources of output row r of coded block i: row j*b + r of A per block j.
  int gather(int64_t i, int64_t r, int64_t m, int64_t b, const I* indptr, const I* indices,
             const V* data, const uint8_t* row_sorted, RowSource<I, V>* src) const {
    int w = 0;
    const std::vector<int64_t>& J = blocks[i];
    for (size_t q = 0; q < J.size(); ++q) {
      const int64_t row = J[q] * b + r;
      if (row >= m) continue;
      const int64_t lo = indptr[row], hi = indptr[row + 1];
      if (hi > lo) src[w++] = {indices + lo, data + lo, hi - lo, coefs[i][q], row_sorted[row] != 0};
    }
    return w;
  }
};

template <class I, class V>
int64_t csr_encode_size(int64_t m, int64_t c, const I* indptr, const I* indices, const V* data,
                        const uint8_t* row_sorted, int64_t k, int64_t b, int64_t n, const V* E,
                        int64_t* out_indptr, int n_threads) {
  const EncodePlan<I, V> plan(n, k, E);
  const int64_t rows = n * b;
  KernelError err;
  const int T = threads_for(plan.work(indptr, m, k) + rows, n_threads);
#pragma omp parallel num_threads(T)
  {
    // RowMerger's buffers grow inside count/fill: any exception (bad_alloc)
    // is recorded and rethrown after the join, never out of the region
    RowMerger<I, V> merger(c);
    std::vector<RowSource<I, V>> src;
    err.guard(-1, [&] { src.resize(static_cast<size_t>(k)); });
#pragma omp for schedule(dynamic, 128)
    for (int64_t R = 0; R < rows; ++R) {
      if (err.failed()) continue;
      const int64_t i = R / b, r = R % b;
      const int w = plan.gather(i, r, m, b, indptr, indices, data, row_sorted, src.data());
      err.guard(R, [&] { out_indptr[R + 1] = merger.count(src.data(), w); });
    }
  }
  err.raise_if_failed("A");
  return counts_to_indptr(out_indptr, rows);
}

template <class I, class V>
void csr_encode_fill(int64_t m, int64_t c, const I* indptr, const I* indices, const V* data,
                     const uint8_t* row_sorted, int64_t k, int64_t b, int64_t n, const V* E,
                     const int64_t* out_indptr, I* out_indices, V* out_data, int n_threads) {
  const EncodePlan<I, V> plan(n, k, E);
  const int64_t rows = n * b;
  KernelError err;
  const int T = threads_for(plan.work(indptr, m, k) + rows, n_threads);
#pragma omp parallel num_threads(T)
  {
    // as in csr_encode_size: exceptions are recorded, not thrown
    RowMerger<I, V> merger(c);
    std::vector<RowSource<I, V>> src;
    err.guard(-1, [&] { src.resize(static_cast<size_t>(k)); });
#pragma omp for schedule(dynamic, 128)
    for (int64_t R = 0; R < rows; ++R) {
      if (err.failed()) continue;
      const int64_t i = R / b, r = R % b;
      const int w = plan.gather(i, r, m, b, indptr, indices, data, row_sorted, src.data());
      const int64_t cap = out_indptr[R + 1] - out_indptr[R];
      err.guard(R, [&] {
        const int64_t got =
            merger.fill(src.data(), w, out_indices + out_indptr[R], out_data + out_indptr[R], cap);
        if (got != cap) err.report(KernelError::changed, R, got, cap);
      });
    }
  }
  err.raise_if_failed("A");
}

}  // namespace sparsecoded
