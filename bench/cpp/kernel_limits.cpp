// Standalone timing of the SpMV / SpMM row loops against this machine's
// limits: measured read bandwidth (1 GiB streamed) and peak FMA rate per
// instruction set. Variants are interleaved, repetition by repetition, so
// that a noisy neighbour hits all of them alike.
//
// Build and run (see bench/README.md):
//   g++ -O3 -std=c++17 -fopenmp -Icpp/include bench/cpp/kernel_limits.cpp -o kernel_limits
//   ./kernel_limits [m c density reps]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#define SPARSECODED_PROBE 1
#include "sparsecoded/csr_matvec.hpp"

using namespace sparsecoded;
using I = int32_t;
using V = double;

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- ablations of the SpMV row loop -------------------------------------------

// the generic loop with no checks at all: what the checks cost
static void spmv_nocheck(const I* ip, const I* ix, const V* d, const V* x, V* y, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; ++i) {
    V s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t p = ip[i], e = ip[i + 1];
    for (; p + 4 <= e; p += 4) {
      s0 += d[p] * x[ix[p]];
      s1 += d[p + 1] * x[ix[p + 1]];
      s2 += d[p + 2] * x[ix[p + 2]];
      s3 += d[p + 3] * x[ix[p + 3]];
    }
    for (; p < e; ++p) s0 += d[p] * x[ix[p]];
    y[i] = (s0 + s1) + (s2 + s3);
  }
}

// ---- machine limits ------------------------------------------------------------

#if SPARSECODED_X86_SIMD
SPARSECODED_TARGET_AVX512 static double read_sum(const double* a, int64_t n) {
  __m512d s[8];
  for (auto& v : s) v = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int q = 0; q < 8; ++q) s[q] = _mm512_add_pd(s[q], _mm512_loadu_pd(a + i + 8 * q));
  double t = 0;
  for (auto& v : s) t += _mm512_reduce_add_pd(v);
  for (; i < n; ++i) t += a[i];
  return t;
}
#else
static double read_sum(const double* a, int64_t n) {
  double s[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int q = 0; q < 8; ++q) s[q] += a[i + q];
  double t = 0;
  for (double v : s) t += v;
  for (; i < n; ++i) t += a[i];
  return t;
}
#endif

// FMAs (mul + add without FMA hardware in the baseline) on 10 independent
// 2-lane accumulators: the baseline x86-64 (SSE2) peak
typedef double v2d __attribute__((vector_size(16)));
static double fma_loop_generic(int64_t iters) {
  v2d acc[10];
  for (int r = 0; r < 10; ++r) acc[r] = v2d{1.0 + 1e-3 * r, 1.0 - 1e-3 * r};
  const v2d m = {0.999999, 0.999999}, c = {1e-7, 1e-7};
  for (int64_t it = 0; it < iters; ++it)
    for (int r = 0; r < 10; ++r) {
      acc[r] = acc[r] * m + c;
      __asm__ volatile("" : "+x"(acc[r]));
    }
  double t = 0;
  for (int r = 0; r < 10; ++r) t += acc[r][0] + acc[r][1];
  return t;
}
#if SPARSECODED_X86_SIMD
SPARSECODED_TARGET_AVX2 static double fma_loop_avx2(int64_t iters) {
  __m256d acc[10];
  for (int r = 0; r < 10; ++r) acc[r] = _mm256_set1_pd(1.0 + 1e-3 * r);
  const __m256d m = _mm256_set1_pd(0.999999), c = _mm256_set1_pd(1e-7);
  for (int64_t it = 0; it < iters; ++it)
    for (int r = 0; r < 10; ++r) {
      acc[r] = _mm256_fmadd_pd(acc[r], m, c);
      __asm__ volatile("" : "+x"(acc[r]));
    }
  double out[4], t = 0;
  for (int r = 0; r < 10; ++r) {
    _mm256_storeu_pd(out, acc[r]);
    t += out[0] + out[1] + out[2] + out[3];
  }
  return t;
}
SPARSECODED_TARGET_AVX512 static double fma_loop_avx512(int64_t iters) {
  __m512d acc[10];
  for (int r = 0; r < 10; ++r) acc[r] = _mm512_set1_pd(1.0 + 1e-3 * r);
  const __m512d m = _mm512_set1_pd(0.999999), c = _mm512_set1_pd(1e-7);
  for (int64_t it = 0; it < iters; ++it)
    for (int r = 0; r < 10; ++r) {
      acc[r] = _mm512_fmadd_pd(acc[r], m, c);
      __asm__ volatile("" : "+v"(acc[r]));
    }
  double t = 0;
  for (int r = 0; r < 10; ++r) t += _mm512_reduce_add_pd(acc[r]);
  return t;
}
#endif

struct Stat {
  std::vector<double> t;
  double med() { std::sort(t.begin(), t.end()); return t[t.size() / 2]; }
  double lo() { std::sort(t.begin(), t.end()); return t.front(); }
  double hi() { std::sort(t.begin(), t.end()); return t.back(); }
};

int main(int argc, char** argv) {
  const int64_t m = argc > 1 ? atol(argv[1]) : 60000, c = argc > 2 ? atol(argv[2]) : 40000;
  const double dens = argc > 3 ? atof(argv[3]) : 0.005;
  const int reps = argc > 4 ? atoi(argv[4]) : 21;
  const int64_t nvecs = 32;
  const int64_t r = std::max<int64_t>(1, std::llround(dens * c));
  std::mt19937_64 g(20261125);
  std::vector<I> ip(m + 1), ix(m * r);
  std::vector<V> d(m * r), x(c), y(m), yref(m), X(c * nvecs), Y(m * nvecs), Yref(m * nvecs);
  for (int64_t i = 0; i <= m; ++i) ip[i] = static_cast<I>(i * r);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t q = 0; q < r; ++q) ix[i * r + q] = static_cast<I>(g() % c);
    std::sort(ix.begin() + i * r, ix.begin() + (i + 1) * r);
  }
  std::normal_distribution<double> nd;
  for (auto& v : d) v = nd(g);
  for (auto& v : x) v = nd(g);
  for (auto& v : X) v = nd(g);
  const int64_t nnz = m * r;
  std::vector<double> big(int64_t(1) << 27, 1.0);  // 1 GiB
  std::vector<Isa> isas;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    if (isa_supported(isa)) isas.push_back(isa);

  printf("matrix %lld x %lld, %lld nnz (%lld per row), int32 indices, float64; %d interleaved reps\n",
         (long long)m, (long long)c, (long long)nnz, (long long)r, reps);
  const double spmv_bytes = nnz * 12.0 + (m + 1) * 4.0 + m * 8.0 + c * 8.0;
  const double spmm_flops = 2.0 * nnz * nvecs;
  for (int T = 1; T <= 2; ++T) {
    csr_matvec<I, V>(m, c, ip.data(), ix.data(), d.data(), nnz, x.data(), yref.data(), T, Isa::generic);
    csr_matvecs<I, V>(m, c, nvecs, ip.data(), ix.data(), d.data(), nnz, X.data(), Yref.data(), T, Isa::generic);
    const std::vector<int64_t> bounds = balanced_row_ranges(m, ip.data(), T == 1 ? 1 : 4 * T);
    std::vector<std::pair<std::string, std::function<void()>>> cases;
    cases.emplace_back("read 1 GiB", [&] {
      double s = 0;
      const int64_t n = static_cast<int64_t>(big.size());
#pragma omp parallel for reduction(+ : s) num_threads(T) schedule(static, 1)
      for (int t = 0; t < T; ++t) s += read_sum(big.data() + n / T * t, n / T);
      if (s < 0) printf("?");
    });
    for (Isa isa : isas)
      cases.emplace_back(std::string("spmv ") + isa_name(isa), [&, isa] {
        csr_matvec<I, V>(m, c, ip.data(), ix.data(), d.data(), nnz, x.data(), y.data(), T, isa);
      });
    cases.emplace_back("spmv generic, no checks", [&] {
      const int P = static_cast<int>(bounds.size()) - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
      for (int t = 0; t < P; ++t) spmv_nocheck(ip.data(), ix.data(), d.data(), x.data(), y.data(), bounds[t], bounds[t + 1]);
    });
    for (Isa isa : isas)
      cases.emplace_back(std::string("spmm32 ") + isa_name(isa), [&, isa] {
        csr_matvecs<I, V>(m, c, nvecs, ip.data(), ix.data(), d.data(), nnz, X.data(), Y.data(), T, isa);
      });
#if SPARSECODED_X86_SIMD
    if (std::getenv("PROBE_AHEAD") && isa_supported(Isa::avx512))
      for (int64_t ahead : {1, 2, 4, 16, 32})
        cases.emplace_back("spmm32 avx512 ahead " + std::to_string(ahead), [&, ahead] {
          detail::kRowsAhead = ahead;
          csr_matvecs<I, V>(m, c, nvecs, ip.data(), ix.data(), d.data(), nnz, X.data(), Y.data(), T, Isa::avx512);
          detail::kRowsAhead = 8;
        });
#endif
    const int64_t fma_iters = 20000000;
    cases.emplace_back("peak fma generic", [&] {
#pragma omp parallel num_threads(T)
      { volatile double s = fma_loop_generic(fma_iters); (void)s; }
    });
#if SPARSECODED_X86_SIMD
    if (isa_supported(Isa::avx2))
      cases.emplace_back("peak fma avx2", [&] {
#pragma omp parallel num_threads(T)
        { volatile double s = fma_loop_avx2(fma_iters); (void)s; }
      });
    if (isa_supported(Isa::avx512))
      cases.emplace_back("peak fma avx512", [&] {
#pragma omp parallel num_threads(T)
        { volatile double s = fma_loop_avx512(fma_iters); (void)s; }
      });
#endif
    std::vector<Stat> st(cases.size());
    for (int rep = 0; rep < reps; ++rep)
      for (size_t k = 0; k < cases.size(); ++k) {
        const double t0 = now();
        cases[k].second();
        st[k].t.push_back(now() - t0);
        const std::string& nm = cases[k].first;
        if (nm.rfind("spmv", 0) == 0)
          for (int64_t i = 0; i < m; ++i)
            if (std::abs(y[i] - yref[i]) > 1e-9 * (1 + std::abs(yref[i]))) { printf("MISMATCH %s\n", nm.c_str()); break; }
        if (nm.rfind("spmm", 0) == 0)
          for (int64_t i = 0; i < m * nvecs; i += 7)
            if (std::abs(Y[i] - Yref[i]) > 1e-9 * (1 + std::abs(Yref[i]))) { printf("MISMATCH %s\n", nm.c_str()); break; }
      }
    for (size_t k = 0; k < cases.size(); ++k) {
      const std::string& nm = cases[k].first;
      const double med = st[k].med();
      std::string rate;
      char buf[128];
      if (nm.rfind("read", 0) == 0) {
        snprintf(buf, sizeof buf, "%.2f GB/s", big.size() * 8.0 / med / 1e9);
      } else if (nm.rfind("spmv", 0) == 0) {
        snprintf(buf, sizeof buf, "%.2f GB/s", spmv_bytes / med / 1e9);
      } else if (nm.rfind("spmm", 0) == 0) {
        snprintf(buf, sizeof buf, "%.2f GFLOP/s", spmm_flops / med / 1e9);
      } else {
        const int lanes = nm.find("avx512") != std::string::npos ? 8 : nm.find("avx2") != std::string::npos ? 4 : 2;
        snprintf(buf, sizeof buf, "%.2f GFLOP/s", 2.0 * 10 * lanes * fma_iters * T / med / 1e9);
      }
      printf("T=%d %-26s median %9.3f ms  [%9.3f .. %9.3f]  %s\n", T, nm.c_str(), med * 1e3, st[k].lo() * 1e3,
             st[k].hi() * 1e3, buf);
    }
  }
  return 0;
}
