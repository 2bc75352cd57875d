// Thread-count plumbing shared by every kernel. No pybind11 here.
#pragma once

#ifdef SPARSECODED_HAVE_OPENMP
#include <omp.h>
#endif

namespace sparsecoded {

inline bool openmp_available() {
#ifdef SPARSECODED_HAVE_OPENMP
  return true;
#else
  return false;
#endif
}

// Number of threads a kernel uses when the caller passes n_threads <= 0.
inline int default_threads() {
#ifdef SPARSECODED_HAVE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int resolve_threads(int n_threads) {
  if (n_threads <= 0) return default_threads();
#ifdef SPARSECODED_HAVE_OPENMP
  return n_threads;
#else
  return 1;
#endif
}

}  // namespace sparsecoded
