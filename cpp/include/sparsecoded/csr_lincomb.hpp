// Linear combinations of CSR rows: the merge engine shared by the encoder
// (csr_encode.hpp) and by csr_lincomb (decoding of sparse results).
// No pybind11 here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sparsecoded/csr_common.hpp"

namespace sparsecoded {

// One input row scaled by coef. `sorted` means its indices are nondecreasing.
template <class I, class V>
struct RowSource {
  const I* idx;
  const V* val;
  int64_t len;
  V coef;
  bool sorted;
};

// Merges w source rows into one output row with sorted, distinct indices.
// Sorted sources take a heap merge (O(total log w), no scratch of width
// n_cols); any unsorted source switches the row to a dense accumulator plus
// a sort. Indices must already be checked in [0, n_cols). One per thread.
template <class I, class V>
class RowMerger {
 public:
  explicit RowMerger(int64_t n_cols) : n_cols_(n_cols) {}

  // Number of distinct columns of the merged row.
  int64_t count(const RowSource<I, V>* src, int w) {
    if (w == 0) return 0;
    if (w == 1 && src[0].sorted) return count_one(src[0]);
    if (!all_sorted(src, w)) return scatter(src, w, nullptr);
    int64_t n = 0;
    int64_t last = -1;
    heap_merge(src, w, [&](int64_t col, int, int64_t) {
      n += col != last;
      last = col;
    });
    return n;
  }

  // Writes the merged row into out_idx/out_val (room for exactly `cap`
  // entries, the value count() gave). Returns the entries written, or -1
  // if the row no longer fits (inputs changed between passes).
  int64_t fill(const RowSource<I, V>* src, int w, I* out_idx, V* out_val, int64_t cap) {
    if (w == 0) return 0;
    if (w == 1 && src[0].sorted) return fill_one(src[0], out_idx, out_val, cap);
    if (!all_sorted(src, w)) return scatter_fill(src, w, out_idx, out_val, cap);
    int64_t n = 0;
    int64_t last = -1;
    bool overflow = false;
    heap_merge(src, w, [&](int64_t col, int s, int64_t p) {
      const V v = src[s].coef * src[s].val[p];
      if (col == last) {
        out_val[n - 1] += v;
      } else if (n < cap) {
        out_idx[n] = static_cast<I>(col);
        out_val[n] = v;
        ++n;
        last = col;
      } else {
        overflow = true;
      }
    });
    return overflow ? -1 : n;
  }

 private:
  static bool all_sorted(const RowSource<I, V>* src, int w) {
    for (int s = 0; s < w; ++s)
      if (!src[s].sorted) return false;
    return true;
  }

  // A single sorted row: distinct count in one pass.
  static int64_t count_one(const RowSource<I, V>& s) {
    int64_t n = s.len > 0;
    for (int64_t p = 1; p < s.len; ++p) n += s.idx[p] != s.idx[p - 1];
    return n;
  }

  static int64_t fill_one(const RowSource<I, V>& s, I* out_idx, V* out_val, int64_t cap) {
    int64_t n = 0;
    for (int64_t p = 0; p < s.len; ++p) {
      const V v = s.coef * s.val[p];
      if (n > 0 && out_idx[n - 1] == s.idx[p]) {
        out_val[n - 1] += v;
      } else {
        if (n >= cap) return -1;
        out_idx[n] = s.idx[p];
        out_val[n] = v;
        ++n;
      }
    }
    return n;
  }

  // Calls emit(col, source, position) for every entry of the w sorted
  // sources in nondecreasing column order. Min-heap of source cursors.
  template <class Emit>
  void heap_merge(const RowSource<I, V>* src, int w, Emit&& emit) {
    key_.resize(w);
    who_.resize(w);
    pos_.assign(w, 0);
    int h = 0;
    for (int s = 0; s < w; ++s) {
      if (src[s].len == 0) continue;
      key_[h] = static_cast<int64_t>(src[s].idx[0]);
      who_[h] = s;
      ++h;
    }
    for (int i = h / 2 - 1; i >= 0; --i) sift_down(i, h);
    while (h > 0) {
      const int s = who_[0];
      const int64_t p = pos_[s];
      emit(key_[0], s, p);
      if (p + 1 < src[s].len) {
        pos_[s] = p + 1;
        key_[0] = static_cast<int64_t>(src[s].idx[p + 1]);
      } else {
        --h;
        key_[0] = key_[h];
        who_[0] = who_[h];
      }
      sift_down(0, h);
    }
  }

  void sift_down(int i, int h) {
    const int64_t k = key_[i];
    const int s = who_[i];
    for (;;) {
      int c = 2 * i + 1;
      if (c >= h) break;
      if (c + 1 < h && key_[c + 1] < key_[c]) ++c;
      if (key_[c] >= k) break;
      key_[i] = key_[c];
      who_[i] = who_[c];
      i = c;
    }
    key_[i] = k;
    who_[i] = s;
  }

  void ensure_dense() {
    if (static_cast<int64_t>(mark_.size()) != n_cols_) {
      mark_.assign(static_cast<size_t>(n_cols_), -1);
      acc_.assign(static_cast<size_t>(n_cols_), V(0));
    }
  }

  // Dense accumulator: marks the row's columns with a fresh stamp. When
  // out_idx is given, also records new columns there (at most cap).
  int64_t scatter(const RowSource<I, V>* src, int w, I* out_idx, int64_t cap = 0) {
    ensure_dense();
    const int64_t stamp = ++stamp_;
    int64_t n = 0;
    for (int s = 0; s < w; ++s) {
      for (int64_t p = 0; p < src[s].len; ++p) {
        const int64_t j = static_cast<int64_t>(src[s].idx[p]);
        const V v = src[s].coef * src[s].val[p];
        if (mark_[j] != stamp) {
          mark_[j] = stamp;
          acc_[j] = v;
          if (out_idx != nullptr) {
            if (n >= cap) return -1;
            out_idx[n] = static_cast<I>(j);
          }
          ++n;
        } else {
          acc_[j] += v;
        }
      }
    }
    return n;
  }

  int64_t scatter_fill(const RowSource<I, V>* src, int w, I* out_idx, V* out_val, int64_t cap) {
    const int64_t n = scatter(src, w, out_idx, cap);
    if (n < 0) return -1;
    std::sort(out_idx, out_idx + n);
    for (int64_t q = 0; q < n; ++q) out_val[q] = acc_[static_cast<int64_t>(out_idx[q])];
    return n;
  }

  int64_t n_cols_;
  std::vector<int64_t> key_;
  std::vector<int> who_;
  std::vector<int64_t> pos_;
  std::vector<int64_t> mark_;
  std::vector<V> acc_;
  int64_t stamp_ = -1;
};

// Prefix sum of per-row counts stored at out_indptr[1..n_rows]; returns nnz.
inline int64_t counts_to_indptr(int64_t* out_indptr, int64_t n_rows) {
  out_indptr[0] = 0;
  for (int64_t i = 0; i < n_rows; ++i) out_indptr[i + 1] += out_indptr[i];
  return out_indptr[n_rows];
}

// Operands of csr_lincomb: K matrices of the same shape, each already
// passed through csr_check (which filled row_sorted).
template <class I, class V>
struct CsrOperand {
  const I* indptr;
  const I* indices;
  const V* data;
  const uint8_t* row_sorted;
};

// csr_lincomb_size / csr_lincomb_fill: C = sum_t coeffs[t] * M_t.
//   M_t: n_rows x n_cols CSR, checked by csr_check (extents, column range)
//        before the size pass; indices may be unsorted or repeat.
//   coeffs[K]; operands with a zero coefficient are skipped.
//   out_indptr[n_rows + 1] (int64): the caller allocates it, the size pass
//        fills it and returns nnz(C). The caller then allocates
//        out_indices[nnz(C)] and out_data[nnz(C)] for the fill pass.
//   C has sorted, distinct indices; entries that cancel to 0 stay stored.
// Cost: O(total nnz * log K) when rows are sorted, plus a sort per row
// that has unsorted input. Parallel over rows (dynamic chunks).
template <class I, class V>
int64_t csr_lincomb_size(int64_t n_rows, int64_t n_cols, const CsrOperand<I, V>* mats, const V* coeffs,
                         int K, int64_t* out_indptr, int n_threads) {
  std::vector<int> live;
  for (int t = 0; t < K; ++t)
    if (coeffs[t] != V(0)) live.push_back(t);
  const int T = resolve_threads(n_threads);
#pragma omp parallel num_threads(T)
  {
    RowMerger<I, V> merger(n_cols);
    std::vector<RowSource<I, V>> src(live.size());
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < n_rows; ++i) {
      int w = 0;
      for (int t : live) {
        const CsrOperand<I, V>& M = mats[t];
        const int64_t b = M.indptr[i], e = M.indptr[i + 1];
        if (e > b) src[w++] = {M.indices + b, M.data + b, e - b, coeffs[t], M.row_sorted[i] != 0};
      }
      out_indptr[i + 1] = merger.count(src.data(), w);
    }
  }
  return counts_to_indptr(out_indptr, n_rows);
}

template <class I, class V>
void csr_lincomb_fill(int64_t n_rows, int64_t n_cols, const CsrOperand<I, V>* mats, const V* coeffs, int K,
                      const int64_t* out_indptr, I* out_indices, V* out_data, int n_threads) {
  std::vector<int> live;
  for (int t = 0; t < K; ++t)
    if (coeffs[t] != V(0)) live.push_back(t);
  KernelError err;
  const int T = resolve_threads(n_threads);
#pragma omp parallel num_threads(T)
  {
    RowMerger<I, V> merger(n_cols);
    std::vector<RowSource<I, V>> src(live.size());
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < n_rows; ++i) {
      int w = 0;
      for (int t : live) {
        const CsrOperand<I, V>& M = mats[t];
        const int64_t b = M.indptr[i], e = M.indptr[i + 1];
        if (e > b) src[w++] = {M.indices + b, M.data + b, e - b, coeffs[t], M.row_sorted[i] != 0};
      }
      const int64_t cap = out_indptr[i + 1] - out_indptr[i];
      const int64_t got = merger.fill(src.data(), w, out_indices + out_indptr[i], out_data + out_indptr[i], cap);
      if (got != cap) err.report(KernelError::changed, i, got, cap);
    }
  }
  err.raise_if_failed("mats");
}

}  // namespace sparsecoded
