// Bindings of csr_matvec / csr_matvecs. Arrays arrive with exact dtypes and
// C order (the Python wrappers prepare them): every argument is noconvert,
// so pybind11 never hands a kernel a silent copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "sparsecoded/csr_matvec.hpp"

namespace py = pybind11;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

void expect_size(const char* what, py::ssize_t found, int64_t expected) {
  if (found != expected)
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(found) + " entries, expected " +
                                std::to_string(expected));
}

template <class I, class V>
void def_matvec(py::module_& m) {
  m.def(
      "csr_matvec",
      [](int64_t n_rows, int64_t n_cols, const carray<I>& indptr, const carray<I>& indices,
         const carray<V>& data, const carray<V>& x, carray<V>& y, int n_threads) {
        expect_size("indptr", indptr.size(), n_rows + 1);
        expect_size("data", data.size(), indices.size());
        expect_size("x", x.size(), n_cols);
        expect_size("y", y.size(), n_rows);
        const I* ip = indptr.data();
        const I* ix = indices.data();
        const V* d = data.data();
        const V* xp = x.data();
        V* yp = y.mutable_data();
        const int64_t nnz = indices.size();
        {
          // only raw pointers into arrays the caller keeps alive cross this scope
          py::gil_scoped_release nogil;
          sparsecoded::csr_matvec<I, V>(n_rows, n_cols, ip, ix, d, nnz, xp, yp, n_threads);
        }
      },
      py::arg("n_rows"), py::arg("n_cols"), py::arg("indptr").noconvert(), py::arg("indices").noconvert(),
      py::arg("data").noconvert(), py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("n_threads"));

  m.def(
      "csr_matvecs",
      [](int64_t n_rows, int64_t n_cols, int64_t n_vecs, const carray<I>& indptr, const carray<I>& indices,
         const carray<V>& data, const carray<V>& X, carray<V>& Y, int n_threads) {
        expect_size("indptr", indptr.size(), n_rows + 1);
        expect_size("data", data.size(), indices.size());
        expect_size("X", X.size(), n_cols * n_vecs);
        expect_size("Y", Y.size(), n_rows * n_vecs);
        const I* ip = indptr.data();
        const I* ix = indices.data();
        const V* d = data.data();
        const V* xp = X.data();
        V* yp = Y.mutable_data();
        const int64_t nnz = indices.size();
        {
          // only raw pointers into arrays the caller keeps alive cross this scope
          py::gil_scoped_release nogil;
          sparsecoded::csr_matvecs<I, V>(n_rows, n_cols, n_vecs, ip, ix, d, nnz, xp, yp, n_threads);
        }
      },
      py::arg("n_rows"), py::arg("n_cols"), py::arg("n_vecs"), py::arg("indptr").noconvert(),
      py::arg("indices").noconvert(), py::arg("data").noconvert(), py::arg("X").noconvert(),
      py::arg("Y").noconvert(), py::arg("n_threads"));
}

}  // namespace

void bind_matvec(py::module_& m) {
  def_matvec<int32_t, float>(m);
  def_matvec<int32_t, double>(m);
  def_matvec<int64_t, float>(m);
  def_matvec<int64_t, double>(m);
}
