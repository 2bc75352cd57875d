#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "sparsecoded/isa.hpp"
#include "sparsecoded/threads.hpp"

namespace py = pybind11;

void bind_runtime(py::module_& m) {
  m.def("openmp_available", &sparsecoded::openmp_available,
        "True when the kernels were compiled with OpenMP.");
  m.def("default_threads", &sparsecoded::default_threads,
        "Threads a kernel uses when n_threads is None.");
  // Instruction-set variants of the SpMV / SpMM row loops (isa.hpp).
  m.def(
      "_isa", [] { return std::string(sparsecoded::isa_name(sparsecoded::active_isa())); },
      "The variant the kernels run now: 'generic', 'avx2' or 'avx512'.");
  m.def(
      "_isa_best", [] { return std::string(sparsecoded::isa_name(sparsecoded::best_isa())); },
      "The variant chosen automatically on this CPU.");
  m.def(
      "_isa_supported",
      [] {
        std::vector<std::string> out;
        for (auto isa : {sparsecoded::Isa::generic, sparsecoded::Isa::avx2, sparsecoded::Isa::avx512})
          if (sparsecoded::isa_supported(isa)) out.emplace_back(sparsecoded::isa_name(isa));
        return out;
      },
      "The variants this CPU and build can run, narrowest first.");
  m.def(
      "_isa_vector_bits", [] { return sparsecoded::isa_vector_bits(sparsecoded::active_isa()); },
      "Vector width in bits of the variant that runs now.");
  m.def("_set_isa", &sparsecoded::set_isa, py::arg("name"),
        "Force a variant ('generic', 'avx2', 'avx512') or return to the automatic one ('auto'). "
        "Raises ValueError for an unknown name or one this CPU cannot run.");
}
