#include <pybind11/pybind11.h>

#include "sparsecoded/threads.hpp"

namespace py = pybind11;

void bind_runtime(py::module_& m) {
  m.def("openmp_available", &sparsecoded::openmp_available,
        "True when the kernels were compiled with OpenMP.");
  m.def("default_threads", &sparsecoded::default_threads,
        "Threads a kernel uses when n_threads is None.");
}
