// The extension module: only registers the bind_* functions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_runtime(py::module_& m);
void bind_matvec(py::module_& m);
void bind_matmat(py::module_& m);
void bind_lincomb(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "sparsecoded native kernels";
  bind_runtime(m);
  bind_matvec(m);
  bind_matmat(m);
  bind_lincomb(m);
}
