// CSR times a dense vector, and CSR times a dense row-major matrix.
// The row loops exist in three variants (isa.hpp): generic C++, AVX2 and
// AVX-512, chosen at run time per call. No pybind11 here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "sparsecoded/csr_common.hpp"
#include "sparsecoded/isa.hpp"

namespace sparsecoded {

namespace detail {

// Operands of one SpMV / SpMM call, shared by every variant's row loop.
template <class I, class V>
struct MatvecArgs {
  int64_t n_rows, n_cols, n_vecs, nnz;
  const I* indptr;
  const I* indices;
  const V* data;
  const V* x;  // x[n_cols], or X[n_cols x n_vecs] row-major
  V* y;        // y[n_rows], or Y[n_rows x n_vecs] row-major
};

// ---- generic C++ (any target; the only variant off x86) -------------------

// Rows [r0, r1) of y = A @ x; false after recording a contract breach.
// Four partial sums per row break the add chain.
template <class I, class V>
inline bool spmv_rows_generic(const MatvecArgs<I, V>& a, int64_t r0, int64_t r1, KernelError& err) {
  const I* indices = a.indices;
  const V* data = a.data;
  const V* x = a.x;
  for (int64_t i = r0; i < r1; ++i) {
    int64_t b, e;
    if (!check_row(a.indptr, indices, i, a.nnz, a.n_cols, b, e, err)) return false;
    V s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t p = b;
    for (; p + 4 <= e; p += 4) {
      s0 += data[p] * x[indices[p]];
      s1 += data[p + 1] * x[indices[p + 1]];
      s2 += data[p + 2] * x[indices[p + 2]];
      s3 += data[p + 3] * x[indices[p + 3]];
    }
    for (; p < e; ++p) s0 += data[p] * x[indices[p]];
    a.y[i] = (s0 + s1) + (s2 + s3);
  }
  return true;
}

// Rows [r0, r1) of Y = A @ X. Columns go in tiles held in registers across
// the row's nonzeros, so each Y row is stored once.
template <class I, class V>
inline bool spmm_rows_generic(const MatvecArgs<I, V>& a, int64_t r0, int64_t r1, KernelError& err) {
  constexpr int64_t TILE = 128 / sizeof(V);  // partial sums in 8 of the 16 SSE registers
  const int64_t nv = a.n_vecs;
  for (int64_t i = r0; i < r1; ++i) {
    int64_t b, e;
    if (!check_row(a.indptr, a.indices, i, a.nnz, a.n_cols, b, e, err)) return false;
    V* yrow = a.y + i * nv;
    for (int64_t c0 = 0; c0 < nv; c0 += TILE) {
      const int64_t width = std::min(TILE, nv - c0);
      V acc[TILE] = {};
      if (width == TILE) {
        for (int64_t p = b; p < e; ++p) {
          const V v = a.data[p];
          const V* xrow = a.x + static_cast<int64_t>(a.indices[p]) * nv + c0;
          for (int64_t q = 0; q < TILE; ++q) acc[q] += v * xrow[q];
        }
      } else {
        for (int64_t p = b; p < e; ++p) {
          const V v = a.data[p];
          const V* xrow = a.x + static_cast<int64_t>(a.indices[p]) * nv + c0;
          for (int64_t q = 0; q < width; ++q) acc[q] += v * xrow[q];
        }
      }
      for (int64_t q = 0; q < width; ++q) yrow[c0 + q] = acc[q];
    }
  }
  return true;
}

#if SPARSECODED_X86_SIMD

// Records the first bad index of row i (slow path) and returns false.
template <class I>
inline bool report_bad_index(const I* indices, int64_t i, int64_t b, int64_t e, int64_t n_cols, KernelError& err) {
  err.report(KernelError::bad_index, i, first_bad_index(indices, b, e, n_cols), n_cols);
  return false;
}

// Bytes ahead of the current nonzero at which the row loops prefetch
// indices and values (the stream prefetchers lose track at row ends).
constexpr int64_t kStreamAhead = 1024;

// Nonzeros ahead of the current one whose X rows the SpMM tiles prefetch:
// those rows are scattered, so no hardware prefetcher sees them coming.
#ifdef SPARSECODED_PROBE
inline int64_t kRowsAhead = 8;
#else
constexpr int64_t kRowsAhead = 8;
#endif

// ---- AVX2 -----------------------------------------------------------------

// SpMV, float64: gathers of 4 x entries. The column check is folded into the
// loop: the lanes whose index is outside [0, n_cols) are masked off (never
// read) and flagged; a flagged row reports after its loop.
template <class I>
SPARSECODED_TARGET_AVX2 bool spmv_rows_avx2_f64(const MatvecArgs<I, double>& a, int64_t r0, int64_t r1,
                                                KernelError& err) {
  const I* indices = a.indices;
  const double* data = a.data;
  const double* x = a.x;
  const int64_t last = a.n_cols - 1;
  for (int64_t i = r0; i < r1; ++i) {
    int64_t b, e;
    if (!row_extent(a.indptr, i, a.nnz, b, e)) {
      err.report(KernelError::bad_indptr, i, static_cast<int64_t>(a.indptr[i + 1]), a.nnz,
                 static_cast<int64_t>(a.indptr[i]));
      return false;
    }
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    __m256i bad = _mm256_setzero_si256();  // sign bit set in a lane whose index was out of range
    int64_t p = b;
    if constexpr (sizeof(I) == 4) {
      const __m128i top = _mm_set1_epi32(static_cast<int32_t>(std::min<int64_t>(last, INT32_MAX)));
      for (; p + 8 <= e; p += 8) {
        _mm_prefetch(reinterpret_cast<const char*>(data + p) + kStreamAhead, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(indices + p) + kStreamAhead, _MM_HINT_T0);
        const __m128i j0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(indices + p));
        const __m128i j1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(indices + p + 4));
        // j and last - j both >= 0 exactly when 0 <= j <= last
        const __m128i v0 = _mm_or_si128(j0, _mm_sub_epi32(top, j0));
        const __m128i v1 = _mm_or_si128(j1, _mm_sub_epi32(top, j1));
        const __m256i w0 = _mm256_cvtepi32_epi64(v0), w1 = _mm256_cvtepi32_epi64(v1);
        bad = _mm256_or_si256(bad, _mm256_or_si256(w0, w1));
        // gather where the sign bit of the mask is set: the good lanes
        const __m256d m0 = _mm256_castsi256_pd(_mm256_xor_si256(w0, _mm256_set1_epi64x(-1)));
        const __m256d m1 = _mm256_castsi256_pd(_mm256_xor_si256(w1, _mm256_set1_epi64x(-1)));
        const __m256d x0 = _mm256_mask_i32gather_pd(_mm256_setzero_pd(), x, j0, m0, 8);
        const __m256d x1 = _mm256_mask_i32gather_pd(_mm256_setzero_pd(), x, j1, m1, 8);
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(data + p), x0, s0);
        s1 = _mm256_fmadd_pd(_mm256_loadu_pd(data + p + 4), x1, s1);
      }
    } else {
      const __m256i top = _mm256_set1_epi64x(last);
      for (; p + 8 <= e; p += 8) {
        _mm_prefetch(reinterpret_cast<const char*>(data + p) + kStreamAhead, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(indices + p) + kStreamAhead, _MM_HINT_T0);
        const __m256i j0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(indices + p));
        const __m256i j1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(indices + p + 4));
        const __m256i w0 = _mm256_or_si256(j0, _mm256_sub_epi64(top, j0));
        const __m256i w1 = _mm256_or_si256(j1, _mm256_sub_epi64(top, j1));
        bad = _mm256_or_si256(bad, _mm256_or_si256(w0, w1));
        const __m256d m0 = _mm256_castsi256_pd(_mm256_xor_si256(w0, _mm256_set1_epi64x(-1)));
        const __m256d m1 = _mm256_castsi256_pd(_mm256_xor_si256(w1, _mm256_set1_epi64x(-1)));
        const __m256d x0 = _mm256_mask_i64gather_pd(_mm256_setzero_pd(), x, j0, m0, 8);
        const __m256d x1 = _mm256_mask_i64gather_pd(_mm256_setzero_pd(), x, j1, m1, 8);
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(data + p), x0, s0);
        s1 = _mm256_fmadd_pd(_mm256_loadu_pd(data + p + 4), x1, s1);
      }
    }
    if (_mm256_movemask_pd(_mm256_castsi256_pd(bad)) != 0) return report_bad_index(indices, i, b, e, a.n_cols, err);
    const __m256d s = _mm256_add_pd(s0, s1);
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double t = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; p < e; ++p) {
      const int64_t j = static_cast<int64_t>(indices[p]);
      if (j < 0 || j > last) return report_bad_index(indices, i, b, e, a.n_cols, err);
      t += data[p] * x[j];
    }
    a.y[i] = t;
  }
  return true;
}

// SpMM, float64: a tile of up to 32 columns in NY (1..8) ymm accumulators;
// the last vector of a narrower tile is masked.
template <int NY, class I>
SPARSECODED_TARGET_AVX2 inline void spmm_tile_avx2_f64(const MatvecArgs<I, double>& a, int64_t b, int64_t e,
                                                       int64_t c0, __m256i tail, double* yrow) {
  const int64_t nv = a.n_vecs;
  __m256d acc[NY];
  for (int q = 0; q < NY; ++q) acc[q] = _mm256_setzero_pd();
  for (int64_t p = b; p < e; ++p) {
    if (p + kRowsAhead < e) {
      const char* f = reinterpret_cast<const char*>(a.x + static_cast<int64_t>(a.indices[p + kRowsAhead]) * nv + c0);
      for (int q = 0; q < NY; q += 2) _mm_prefetch(f + 32 * q, _MM_HINT_T0);
    }
    const __m256d v = _mm256_broadcast_sd(a.data + p);
    const double* xrow = a.x + static_cast<int64_t>(a.indices[p]) * nv + c0;
    for (int q = 0; q + 1 < NY; ++q) acc[q] = _mm256_fmadd_pd(v, _mm256_loadu_pd(xrow + 4 * q), acc[q]);
    acc[NY - 1] = _mm256_fmadd_pd(v, _mm256_maskload_pd(xrow + 4 * (NY - 1), tail), acc[NY - 1]);
  }
  for (int q = 0; q + 1 < NY; ++q) _mm256_storeu_pd(yrow + c0 + 4 * q, acc[q]);
  _mm256_maskstore_pd(yrow + c0 + 4 * (NY - 1), tail, acc[NY - 1]);
}

template <class I>
SPARSECODED_TARGET_AVX2 bool spmm_rows_avx2_f64(const MatvecArgs<I, double>& a, int64_t r0, int64_t r1,
                                                KernelError& err) {
  const int64_t nv = a.n_vecs;
  for (int64_t i = r0; i < r1; ++i) {
    int64_t b, e;
    if (!check_row(a.indptr, a.indices, i, a.nnz, a.n_cols, b, e, err)) return false;
    double* yrow = a.y + i * nv;
    for (int64_t c0 = 0; c0 < nv; c0 += 32) {
      const int64_t width = std::min<int64_t>(32, nv - c0);
      const int ny = static_cast<int>((width + 3) / 4);
      const int64_t lanes = width - 4 * (ny - 1);  // 1..4 live lanes in the last vector
      const __m256i tail = _mm256_cmpgt_epi64(_mm256_set1_epi64x(lanes), _mm256_setr_epi64x(0, 1, 2, 3));
      switch (ny) {
        case 1: spmm_tile_avx2_f64<1>(a, b, e, c0, tail, yrow); break;
        case 2: spmm_tile_avx2_f64<2>(a, b, e, c0, tail, yrow); break;
        case 3: spmm_tile_avx2_f64<3>(a, b, e, c0, tail, yrow); break;
        case 4: spmm_tile_avx2_f64<4>(a, b, e, c0, tail, yrow); break;
        case 5: spmm_tile_avx2_f64<5>(a, b, e, c0, tail, yrow); break;
        case 6: spmm_tile_avx2_f64<6>(a, b, e, c0, tail, yrow); break;
        case 7: spmm_tile_avx2_f64<7>(a, b, e, c0, tail, yrow); break;
        default: spmm_tile_avx2_f64<8>(a, b, e, c0, tail, yrow); break;
      }
    }
  }
  return true;
}

// float32 and anything else: the generic loops, compiled for AVX2
template <class I, class V>
SPARSECODED_TARGET_AVX2 bool spmv_rows_avx2(const MatvecArgs<I, V>& a, int64_t r0, int64_t r1, KernelError& err) {
  if constexpr (std::is_same<V, double>::value)
    return spmv_rows_avx2_f64<I>(a, r0, r1, err);
  else
    return spmv_rows_generic<I, V>(a, r0, r1, err);
}

template <class I, class V>
SPARSECODED_TARGET_AVX2 bool spmm_rows_avx2(const MatvecArgs<I, V>& a, int64_t r0, int64_t r1, KernelError& err) {
  if constexpr (std::is_same<V, double>::value)
    return spmm_rows_avx2_f64<I>(a, r0, r1, err);
  else
    return spmm_rows_generic<I, V>(a, r0, r1, err);
}

// ---- AVX-512 ----------------------------------------------------------------

// SpMV, float64: masked gathers of 8 x entries; lanes with an index outside
// [0, n_cols) are masked off (never read) and flagged, as in the AVX2 loop.
template <class I>
SPARSECODED_TARGET_AVX512 bool spmv_rows_avx512_f64(const MatvecArgs<I, double>& a, int64_t r0, int64_t r1,
                                                    KernelError& err) {
  const I* indices = a.indices;
  const double* data = a.data;
  const double* x = a.x;
  const __m512d zero = _mm512_setzero_pd();
  for (int64_t i = r0; i < r1; ++i) {
    int64_t b, e;
    if (!row_extent(a.indptr, i, a.nnz, b, e)) {
      err.report(KernelError::bad_indptr, i, static_cast<int64_t>(a.indptr[i + 1]), a.nnz,
                 static_cast<int64_t>(a.indptr[i]));
      return false;
    }
    __m512d s0 = zero, s1 = zero;
    __mmask8 bad = 0;
    int64_t p = b;
    if constexpr (sizeof(I) == 4) {
      // unsigned compare against min(n_cols, 2^31): a negative index is
      // at least 2^31 as unsigned, so it fails whatever n_cols is
      const uint32_t limit = static_cast<uint32_t>(std::min<int64_t>(a.n_cols, int64_t(1) << 31));
      const __m256i top = _mm256_set1_epi32(static_cast<int32_t>(limit));
      for (; p + 16 <= e; p += 16) {
        _mm_prefetch(reinterpret_cast<const char*>(data + p) + kStreamAhead, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(indices + p) + kStreamAhead, _MM_HINT_T0);
        const __m256i j0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(indices + p));
        const __m256i j1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(indices + p + 8));
        const __mmask8 k0 = _mm256_cmplt_epu32_mask(j0, top), k1 = _mm256_cmplt_epu32_mask(j1, top);
        bad |= static_cast<__mmask8>(~(k0 & k1));
        s0 = _mm512_fmadd_pd(_mm512_loadu_pd(data + p), _mm512_mask_i32gather_pd(zero, k0, j0, x, 8), s0);
        s1 = _mm512_fmadd_pd(_mm512_loadu_pd(data + p + 8), _mm512_mask_i32gather_pd(zero, k1, j1, x, 8), s1);
      }
      for (; p < e; p += 8) {
        const __mmask8 live = static_cast<__mmask8>((1u << std::min<int64_t>(8, e - p)) - 1);
        const __m256i j0 = _mm256_maskz_loadu_epi32(live, indices + p);
        const __mmask8 k0 = _mm256_mask_cmplt_epu32_mask(live, j0, top);
        bad |= static_cast<__mmask8>(live & ~k0);
        s0 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(live, data + p), _mm512_mask_i32gather_pd(zero, k0, j0, x, 8),
                             s0);
      }
    } else {
      const __m512i top = _mm512_set1_epi64(a.n_cols);
      for (; p + 16 <= e; p += 16) {
        _mm_prefetch(reinterpret_cast<const char*>(data + p) + kStreamAhead, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(indices + p) + kStreamAhead, _MM_HINT_T0);
        const __m512i j0 = _mm512_loadu_si512(indices + p);
        const __m512i j1 = _mm512_loadu_si512(indices + p + 8);
        const __mmask8 k0 = _mm512_cmplt_epu64_mask(j0, top), k1 = _mm512_cmplt_epu64_mask(j1, top);
        bad |= static_cast<__mmask8>(~(k0 & k1));
        s0 = _mm512_fmadd_pd(_mm512_loadu_pd(data + p), _mm512_mask_i64gather_pd(zero, k0, j0, x, 8), s0);
        s1 = _mm512_fmadd_pd(_mm512_loadu_pd(data + p + 8), _mm512_mask_i64gather_pd(zero, k1, j1, x, 8), s1);
      }
      for (; p < e; p += 8) {
        const __mmask8 live = static_cast<__mmask8>((1u << std::min<int64_t>(8, e - p)) - 1);
        const __m512i j0 = _mm512_maskz_loadu_epi64(live, indices + p);
        const __mmask8 k0 = _mm512_mask_cmplt_epu64_mask(live, j0, top);
        bad |= static_cast<__mmask8>(live & ~k0);
        s0 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(live, data + p), _mm512_mask_i64gather_pd(zero, k0, j0, x, 8),
                             s0);
      }
    }
    if (bad) return report_bad_index(indices, i, b, e, a.n_cols, err);
    a.y[i] = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  }
  return true;
}

// SpMM, float64: a tile of up to 32 columns in NZ (1..4) zmm accumulators,
// two sets (even and odd nonzeros) so that the FMA chains overlap; masked
// loads and stores cover a narrower last tile.
template <int NZ, class I>
SPARSECODED_TARGET_AVX512 inline void spmm_tile_avx512_f64(const MatvecArgs<I, double>& a, int64_t b, int64_t e,
                                                           int64_t c0, __mmask8 tail, double* yrow) {
  const int64_t nv = a.n_vecs;
  __m512d acc[NZ], alt[NZ];
  for (int q = 0; q < NZ; ++q) acc[q] = alt[q] = _mm512_setzero_pd();
  auto mask = [tail](int q) { return q + 1 < NZ ? static_cast<__mmask8>(0xFF) : tail; };
  int64_t p = b;
  for (; p + 2 <= e; p += 2) {
    if (p + kRowsAhead + 1 < e) {
      const char* f0 = reinterpret_cast<const char*>(a.x + static_cast<int64_t>(a.indices[p + kRowsAhead]) * nv + c0);
      const char* f1 = reinterpret_cast<const char*>(a.x + static_cast<int64_t>(a.indices[p + kRowsAhead + 1]) * nv + c0);
      for (int q = 0; q < NZ; ++q) {
        _mm_prefetch(f0 + 64 * q, _MM_HINT_T0);
        _mm_prefetch(f1 + 64 * q, _MM_HINT_T0);
      }
    }
    const __m512d v0 = _mm512_set1_pd(a.data[p]), v1 = _mm512_set1_pd(a.data[p + 1]);
    const double* x0 = a.x + static_cast<int64_t>(a.indices[p]) * nv + c0;
    const double* x1 = a.x + static_cast<int64_t>(a.indices[p + 1]) * nv + c0;
    for (int q = 0; q < NZ; ++q) {
      acc[q] = _mm512_fmadd_pd(v0, _mm512_maskz_loadu_pd(mask(q), x0 + 8 * q), acc[q]);
      alt[q] = _mm512_fmadd_pd(v1, _mm512_maskz_loadu_pd(mask(q), x1 + 8 * q), alt[q]);
    }
  }
  if (p < e) {
    const __m512d v0 = _mm512_set1_pd(a.data[p]);
    const double* x0 = a.x + static_cast<int64_t>(a.indices[p]) * nv + c0;
    for (int q = 0; q < NZ; ++q) acc[q] = _mm512_fmadd_pd(v0, _mm512_maskz_loadu_pd(mask(q), x0 + 8 * q), acc[q]);
  }
  for (int q = 0; q < NZ; ++q) _mm512_mask_storeu_pd(yrow + c0 + 8 * q, mask(q), _mm512_add_pd(acc[q], alt[q]));
}

template <class I>
SPARSECODED_TARGET_AVX512 bool spmm_rows_avx512_f64(const MatvecArgs<I, double>& a, int64_t r0, int64_t r1,
                                                    KernelError& err) {
  const int64_t nv = a.n_vecs;
  for (int64_t i = r0; i < r1; ++i) {
    int64_t b, e;
    if (!check_row(a.indptr, a.indices, i, a.nnz, a.n_cols, b, e, err)) return false;
    double* yrow = a.y + i * nv;
    for (int64_t c0 = 0; c0 < nv; c0 += 32) {
      const int64_t width = std::min<int64_t>(32, nv - c0);
      const int nz = static_cast<int>((width + 7) / 8);
      const __mmask8 tail = static_cast<__mmask8>((1u << (width - 8 * (nz - 1))) - 1);
      switch (nz) {
        case 1: spmm_tile_avx512_f64<1>(a, b, e, c0, tail, yrow); break;
        case 2: spmm_tile_avx512_f64<2>(a, b, e, c0, tail, yrow); break;
        case 3: spmm_tile_avx512_f64<3>(a, b, e, c0, tail, yrow); break;
        default: spmm_tile_avx512_f64<4>(a, b, e, c0, tail, yrow); break;
      }
    }
  }
  return true;
}

template <class I, class V>
SPARSECODED_TARGET_AVX512 bool spmv_rows_avx512(const MatvecArgs<I, V>& a, int64_t r0, int64_t r1,
                                                KernelError& err) {
  if constexpr (std::is_same<V, double>::value)
    return spmv_rows_avx512_f64<I>(a, r0, r1, err);
  else
    return spmv_rows_generic<I, V>(a, r0, r1, err);
}

template <class I, class V>
SPARSECODED_TARGET_AVX512 bool spmm_rows_avx512(const MatvecArgs<I, V>& a, int64_t r0, int64_t r1,
                                                KernelError& err) {
  if constexpr (std::is_same<V, double>::value)
    return spmm_rows_avx512_f64<I>(a, r0, r1, err);
  else
    return spmm_rows_generic<I, V>(a, r0, r1, err);
}

#endif  // SPARSECODED_X86_SIMD

template <class I, class V>
inline bool spmv_rows(Isa isa, const MatvecArgs<I, V>& a, int64_t r0, int64_t r1, KernelError& err) {
#if SPARSECODED_X86_SIMD
  if (isa == Isa::avx512) return spmv_rows_avx512<I, V>(a, r0, r1, err);
  if (isa == Isa::avx2) return spmv_rows_avx2<I, V>(a, r0, r1, err);
#endif
  (void)isa;
  return spmv_rows_generic<I, V>(a, r0, r1, err);
}

template <class I, class V>
inline bool spmm_rows(Isa isa, const MatvecArgs<I, V>& a, int64_t r0, int64_t r1, KernelError& err) {
#if SPARSECODED_X86_SIMD
  if (isa == Isa::avx512) return spmm_rows_avx512<I, V>(a, r0, r1, err);
  if (isa == Isa::avx2) return spmm_rows_avx2<I, V>(a, r0, r1, err);
#endif
  (void)isa;
  return spmm_rows_generic<I, V>(a, r0, r1, err);
}

}  // namespace detail

// csr_matvec: y = A @ x.
//   A: n_rows x n_cols CSR (indptr[n_rows + 1], indices[nnz], data[nnz]);
//      indices may be unsorted and may repeat (repeats add up, as in scipy).
//   x[n_cols], y[n_rows]: the caller allocates y; every entry is written.
// Preconditions checked here, in the same loop, before any access:
//   0 <= indptr[i] <= indptr[i+1] <= nnz and 0 <= indices[p] < n_cols.
//   A breach throws std::invalid_argument / std::out_of_range; y is then
//   partly written.
// Cost: O(n_rows + nnz), parallel over row ranges balanced by nnz. Partial
// sums per row (4 in the generic loop, 16 lanes with AVX2 and AVX-512) break
// the floating-point add chain, so rounding may differ from scipy's single
// running sum by a few ulps. isa: the variant of the row loop (isa.hpp).
template <class I, class V>
void csr_matvec(int64_t n_rows, int64_t n_cols, const I* indptr, const I* indices, const V* data, int64_t nnz,
                const V* x, V* y, int n_threads, Isa isa = active_isa()) {
  KernelError err;
  const detail::MatvecArgs<I, V> args{n_rows, n_cols, 1, nnz, indptr, indices, data, x, y};
  const int T = threads_for(nnz + n_rows, n_threads);
  // a few ranges per thread, handed out dynamically: a thread the OS
  // preempts (shared machines) does not hold the whole team at the barrier
  const int P = T == 1 ? 1 : 4 * T;
  const std::vector<int64_t> bounds = balanced_row_ranges(n_rows, indptr, P);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
  for (int t = 0; t < P; ++t) {
    if (!err.failed()) detail::spmv_rows<I, V>(isa, args, bounds[t], bounds[t + 1], err);
  }
  err.raise_if_failed("A");
}

// csr_matvecs: Y = A @ X for a dense X with n_vecs columns.
//   A as in csr_matvec. X: n_cols x n_vecs, Y: n_rows x n_vecs, both
//   row-major (C order); the caller allocates Y; every entry is written.
// Preconditions: as csr_matvec (checked per row before the row is used).
// Cost: O(n_rows * n_vecs + nnz * n_vecs). Columns are processed in tiles
// held in registers across the row's nonzeros (32 columns with AVX2 and
// AVX-512), so each Y row is stored once.
template <class I, class V>
void csr_matvecs(int64_t n_rows, int64_t n_cols, int64_t n_vecs, const I* indptr, const I* indices,
                 const V* data, int64_t nnz, const V* X, V* Y, int n_threads, Isa isa = active_isa()) {
  KernelError err;
  const detail::MatvecArgs<I, V> args{n_rows, n_cols, n_vecs, nnz, indptr, indices, data, X, Y};
  const int T = threads_for((nnz + n_rows) * (n_vecs > 0 ? n_vecs : 1), n_threads);
  const int P = T == 1 ? 1 : 4 * T;
  const std::vector<int64_t> bounds = balanced_row_ranges(n_rows, indptr, P);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
  for (int t = 0; t < P; ++t) {
    if (!err.failed()) detail::spmm_rows<I, V>(isa, args, bounds[t], bounds[t + 1], err);
  }
  err.raise_if_failed("A");
}

}  // namespace sparsecoded
