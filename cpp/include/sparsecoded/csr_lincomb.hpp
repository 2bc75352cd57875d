// Linear combinations of CSR rows: the merge engine shared by the encoder
// (csr_encode.hpp) and by csr_lincomb (decoding of sparse results).
// No pybind11 here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "sparsecoded/csr_common.hpp"

namespace sparsecoded {

// One input row scaled by coef. `sorted` means its indices strictly
// increase (sorted, no repeats), as csr_check reports it.
template <class I, class V>
struct RowSource {
  const I* idx;
  const V* val;
  int64_t len;
  V coef;
  bool sorted;
  // Optional rounding model of the operand (merge_dropping only): each of
  // its entries (r, j) may be off by up to row_scale * col_scale[j] besides
  // its own rounding, e.g. a worker's product rounded against the size of
  // its terms. null: no such term.
  const V* col_scale = nullptr;
  V row_scale = 0;
};

// Merges w scaled source rows into one output row with sorted, distinct
// indices. Indices must already be checked in [0, n_cols). One per thread.
//   count: a single sorted row counts itself; otherwise a stamp marker of
//          n_cols entries counts distinct columns, O(total).
//   fill:  sorted sources go through a tree of two-way merges (log2 w linear
//          passes, ping-ponging between two scratch buffers, the last pass
//          writing the output); any unsorted source switches the row to a
//          dense accumulator, then a sort of the new columns, or a scan of
//          the marker in column order when that is cheaper.
template <class I, class V>
class RowMerger {
 public:
  explicit RowMerger(int64_t n_cols) : n_cols_(n_cols) {}

  int64_t count(const RowSource<I, V>* src, int w) {
    if (w == 0) return 0;
    if (w == 1 && src[0].sorted) return src[0].len;
    ensure_dense();
    const int64_t stamp = ++stamp_;
    int64_t n = 0;
    for (int s = 0; s < w; ++s) {
      const I* idx = src[s].idx;
      for (int64_t p = 0; p < src[s].len; ++p) {
        const int64_t j = static_cast<int64_t>(idx[p]);
        n += mark_[j] != stamp;
        mark_[j] = stamp;
      }
    }
    return n;
  }

  // Merges the row on the dense accumulator and keeps only the entries that
  // are not zero to within the merge's own rounding: |sum_t c_t v_t| >
  // tol * sum_t |c_t v_t| (tol = a few eps). Exact zeros go too; NaN and
  // infinities stay. Writes the kept entries (sorted) to out_idx/out_val
  // when they are not null, never more than cap. Returns the number kept, or
  // -1 past cap. The same inputs give the same answer in both passes: the
  // arithmetic runs in the same order.
  int64_t merge_dropping(const RowSource<I, V>* src, int w, V tol, I* out_idx, V* out_val, int64_t cap) {
    if (w == 0) return 0;
    ensure_dense();
    if (static_cast<int64_t>(acc_.size()) != n_cols_) acc_.assign(static_cast<size_t>(n_cols_), V(0));
    if (static_cast<int64_t>(mag_.size()) != n_cols_) mag_.assign(static_cast<size_t>(n_cols_), V(0));
    const int64_t stamp = ++stamp_;
    cols_.clear();
    for (int s = 0; s < w; ++s) {
      for (int64_t p = 0; p < src[s].len; ++p) {
        const int64_t j = static_cast<int64_t>(src[s].idx[p]);
        const V v = src[s].coef * src[s].val[p];
        V bound = std::abs(v);
        if (src[s].col_scale != nullptr) bound += std::abs(src[s].coef) * src[s].row_scale * src[s].col_scale[j];
        if (mark_[j] != stamp) {
          mark_[j] = stamp;
          acc_[j] = v;
          mag_[j] = bound;
          cols_.push_back(static_cast<I>(j));
        } else {
          acc_[j] += v;
          mag_[j] += bound;
        }
      }
    }
    int64_t kept = 0;
    for (const I j : cols_) kept += keep(acc_[j], mag_[j], tol);
    if (out_idx == nullptr) return kept;
    if (kept > cap) return -1;
    std::sort(cols_.begin(), cols_.end());
    int64_t q = 0;
    for (const I j : cols_) {
      if (!keep(acc_[j], mag_[j], tol)) continue;
      out_idx[q] = j;
      out_val[q] = acc_[j];
      ++q;
    }
    return q;
  }

  // Writes the merged row into out_idx/out_val, which have room for exactly
  // `cap` entries (what count() gave). Returns the entries written, or -1 if
  // the row would not fit (the inputs changed between the passes).
  int64_t fill(const RowSource<I, V>* src, int w, I* out_idx, V* out_val, int64_t cap) {
    if (w == 0) return 0;
    for (int s = 0; s < w; ++s)
      if (!src[s].sorted) return scatter_fill(src, w, out_idx, out_val, cap);
    if (w == 1) {
      if (src[0].len > cap) return -1;
      const RowSource<I, V>& s0 = src[0];
      for (int64_t p = 0; p < s0.len; ++p) {
        out_idx[p] = s0.idx[p];
        out_val[p] = s0.coef * s0.val[p];
      }
      return s0.len;
    }
    return tree_fill(src, w, out_idx, out_val, cap);
  }

 private:
  struct Run {
    const I* idx;
    const V* val;
    int64_t len;
    V coef;
    int buf;  // scratch buffer holding it: 0, 1, or -1 for an input row
  };

  // Two-way merge of strictly increasing runs a and b, scaling as it goes;
  // equal columns are summed. Plain branches: measured here (random rows of
  // ~200 entries) at 5 ns per output against 7 ns for a select-based body,
  // and 2-3x faster inside the encoder. The bound check per step costs
  // another 20 %, so it runs only when the output could pass `cap` (a.len +
  // b.len > cap: the last merge of a row whose runs share columns).
  // Returns the length, or -1 past cap.
  static int64_t merge2(const Run& a, const Run& b, I* oi, V* ov, int64_t cap) {
    return a.len + b.len <= cap ? merge2_loop<false>(a, b, oi, ov, cap) : merge2_loop<true>(a, b, oi, ov, cap);
  }

  template <bool Checked>
  static int64_t merge2_loop(const Run& a, const Run& b, I* oi, V* ov, int64_t cap) {
    int64_t i = 0, j = 0, n = 0;
    while (i < a.len && j < b.len) {
      if (Checked && n >= cap) return -1;  // only on changed input
      const I x = a.idx[i], y = b.idx[j];
      if (x < y) {
        oi[n] = x;
        ov[n] = a.coef * a.val[i++];
      } else if (y < x) {
        oi[n] = y;
        ov[n] = b.coef * b.val[j++];
      } else {
        oi[n] = x;
        ov[n] = a.coef * a.val[i++] + b.coef * b.val[j++];
      }
      ++n;
    }
    if (n + (a.len - i) + (b.len - j) > cap) return -1;
    for (; i < a.len; ++i, ++n) {
      oi[n] = a.idx[i];
      ov[n] = a.coef * a.val[i];
    }
    for (; j < b.len; ++j, ++n) {
      oi[n] = b.idx[j];
      ov[n] = b.coef * b.val[j];
    }
    return n;
  }

  int64_t tree_fill(const RowSource<I, V>* src, int w, I* out_idx, V* out_val, int64_t cap) {
    int64_t total = 0;
    runs_.clear();
    for (int s = 0; s < w; ++s) {
      runs_.push_back({src[s].idx, src[s].val, src[s].len, src[s].coef, -1});
      total += src[s].len;
    }
    if (static_cast<int64_t>(bi_[0].size()) < total) {
      for (int q = 0; q < 2; ++q) {
        bi_[q].resize(static_cast<size_t>(total));
        bv_[q].resize(static_cast<size_t>(total));
      }
    }
    int target = 0;
    while (runs_.size() > 2) {
      next_.clear();
      int64_t off = 0;
      I* ti = bi_[target].data();
      V* tv = bv_[target].data();
      size_t r = 0;
      for (; r + 1 < runs_.size(); r += 2) {
        const int64_t n = merge2(runs_[r], runs_[r + 1], ti + off, tv + off, total - off);
        next_.push_back({ti + off, tv + off, n, V(1), target});
        off += n;
      }
      if (r < runs_.size()) {
        Run last = runs_[r];
        if (last.buf >= 0) {  // the next pass writes into its buffer: move it out first
          for (int64_t p = 0; p < last.len; ++p) {
            ti[off + p] = last.idx[p];
            tv[off + p] = last.coef * last.val[p];
          }
          last = {ti + off, tv + off, last.len, V(1), target};
        }
        next_.push_back(last);
      }
      runs_.swap(next_);
      target ^= 1;
    }
    return merge2(runs_[0], runs_[1], out_idx, out_val, cap);
  }

  static bool keep(V value, V magnitude, V tol) {
    return !(std::abs(value) <= tol * magnitude) || std::isinf(magnitude);
  }

  void ensure_dense() {
    if (static_cast<int64_t>(mark_.size()) != n_cols_) mark_.assign(static_cast<size_t>(n_cols_), -1);
  }

  int64_t scatter_fill(const RowSource<I, V>* src, int w, I* out_idx, V* out_val, int64_t cap) {
    ensure_dense();
    if (static_cast<int64_t>(acc_.size()) != n_cols_) acc_.assign(static_cast<size_t>(n_cols_), V(0));
    const int64_t stamp = ++stamp_;
    int64_t n = 0;
    for (int s = 0; s < w; ++s) {
      for (int64_t p = 0; p < src[s].len; ++p) {
        const int64_t j = static_cast<int64_t>(src[s].idx[p]);
        const V v = src[s].coef * src[s].val[p];
        if (mark_[j] != stamp) {
          if (n >= cap) return -1;
          mark_[j] = stamp;
          acc_[j] = v;
          out_idx[n++] = static_cast<I>(j);
        } else {
          acc_[j] += v;
        }
      }
    }
    if (n != cap) return n;
    // a scan of n_cols markers beats a sort of n entries when n log n is larger
    int64_t lg = 1;
    while ((int64_t(1) << lg) < n) ++lg;
    if (n * lg * 4 > n_cols_) {
      int64_t q = 0;
      for (int64_t j = 0; j < n_cols_ && q < n; ++j)
        if (mark_[j] == stamp) out_idx[q++] = static_cast<I>(j);
    } else {
      std::sort(out_idx, out_idx + n);
    }
    for (int64_t q = 0; q < n; ++q) out_val[q] = acc_[static_cast<int64_t>(out_idx[q])];
    return n;
  }

  int64_t n_cols_;
  std::vector<Run> runs_, next_;
  std::vector<I> bi_[2];
  std::vector<V> bv_[2];
  std::vector<int64_t> mark_;
  std::vector<V> acc_, mag_;
  std::vector<I> cols_;
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
  // optional rounding model for drop >= 0 (see RowSource): null for none
  const V* row_scale = nullptr;
  const V* col_scale = nullptr;
};

// csr_lincomb_size / csr_lincomb_fill: C = sum_t coeffs[t] * M_t.
//   M_t: n_rows x n_cols CSR, checked by csr_check (extents, column range)
//        before the size pass; indices may be unsorted or repeat.
//   coeffs[K]; operands with a zero coefficient are skipped.
//   out_indptr[n_rows + 1] (int64): the caller allocates it, the size pass
//        fills it and returns nnz(C). The caller then allocates
//        out_indices[nnz(C)] and out_data[nnz(C)] for the fill pass.
//   C has sorted, distinct indices. drop < 0: entries that cancel to 0 stay
//        stored. drop >= 0: an entry is dropped when |C_ij| <= drop * eps *
//        sum_t |coeffs[t] * M_t[i, j]|, zero to within the rounding of its
//        own sum (drop = a few; 0 drops exact zeros only); both passes then
//        merge on the dense accumulator. An operand with row_scale and
//        col_scale adds |coeffs[t]| * row_scale[i] * col_scale[j] to that
//        sum: the rounding it carried in (a product's error bound).
// Cost: O(total nnz * log K) when rows are sorted, plus a sort per row
// that has unsorted input. Parallel over rows (dynamic chunks).
template <class I, class V>
int64_t csr_lincomb_size(int64_t n_rows, int64_t n_cols, const CsrOperand<I, V>* mats, const V* coeffs,
                         int K, int64_t* out_indptr, int n_threads, double drop = -1.0) {
  const V tol = static_cast<V>(drop) * std::numeric_limits<V>::epsilon();
  std::vector<int> live;
  for (int t = 0; t < K; ++t)
    if (coeffs[t] != V(0)) live.push_back(t);
  int64_t work = n_rows;
  for (int t : live) work += static_cast<int64_t>(mats[t].indptr[n_rows]);
  KernelError err;
  const int T = threads_for(work, n_threads);
#pragma omp parallel num_threads(T)
  {
    // RowMerger's buffers grow inside count/fill: any exception (bad_alloc)
    // is recorded per row and rethrown after the join, never out of the region
    RowMerger<I, V> merger(n_cols);
    std::vector<RowSource<I, V>> src;
    err.guard(-1, [&] { src.resize(live.size()); });
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < n_rows; ++i) {
      if (err.failed()) continue;
      int w = 0;
      for (int t : live) {
        const CsrOperand<I, V>& M = mats[t];
        const int64_t b = M.indptr[i], e = M.indptr[i + 1];
        if (e > b)
          src[w++] = {M.indices + b, M.data + b, e - b, coeffs[t], M.row_sorted[i] != 0, M.col_scale,
                      M.row_scale != nullptr ? M.row_scale[i] : V(0)};
      }
      err.guard(i, [&] {
        out_indptr[i + 1] = drop >= 0 ? merger.merge_dropping(src.data(), w, tol, nullptr, nullptr, 0)
                                      : merger.count(src.data(), w);
      });
    }
  }
  err.raise_if_failed("mats");
  return counts_to_indptr(out_indptr, n_rows);
}

template <class I, class V>
void csr_lincomb_fill(int64_t n_rows, int64_t n_cols, const CsrOperand<I, V>* mats, const V* coeffs, int K,
                      const int64_t* out_indptr, I* out_indices, V* out_data, int n_threads, double drop = -1.0) {
  const V tol = static_cast<V>(drop) * std::numeric_limits<V>::epsilon();
  std::vector<int> live;
  for (int t = 0; t < K; ++t)
    if (coeffs[t] != V(0)) live.push_back(t);
  KernelError err;
  int64_t work = n_rows;
  for (int t : live) work += static_cast<int64_t>(mats[t].indptr[n_rows]);
  const int T = threads_for(work, n_threads);
#pragma omp parallel num_threads(T)
  {
    // as in csr_lincomb_size: exceptions are recorded, not thrown
    RowMerger<I, V> merger(n_cols);
    std::vector<RowSource<I, V>> src;
    err.guard(-1, [&] { src.resize(live.size()); });
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < n_rows; ++i) {
      if (err.failed()) continue;
      int w = 0;
      for (int t : live) {
        const CsrOperand<I, V>& M = mats[t];
        const int64_t b = M.indptr[i], e = M.indptr[i + 1];
        if (e > b)
          src[w++] = {M.indices + b, M.data + b, e - b, coeffs[t], M.row_sorted[i] != 0, M.col_scale,
                      M.row_scale != nullptr ? M.row_scale[i] : V(0)};
      }
      const int64_t cap = out_indptr[i + 1] - out_indptr[i];
      err.guard(i, [&] {
        I* oi = out_indices + out_indptr[i];
        V* ov = out_data + out_indptr[i];
        const int64_t got =
            drop >= 0 ? merger.merge_dropping(src.data(), w, tol, oi, ov, cap) : merger.fill(src.data(), w, oi, ov, cap);
        if (got != cap) err.report(KernelError::changed, i, got, cap);
      });
    }
  }
  err.raise_if_failed("mats");
}

}  // namespace sparsecoded
