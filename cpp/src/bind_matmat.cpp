// Bindings of the sparse x sparse kernels (csr_matmat.hpp). Every array
// argument is noconvert: the Python wrapper passes exact dtypes, C order.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "sparsecoded/csr_matmat.hpp"

namespace py = pybind11;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

void expect_size(const char* what, py::ssize_t found, int64_t expected) {
  if (found != expected)
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(found) + " entries, expected " +
                                std::to_string(expected));
}

// B's rows are reused by many rows of A: check them once, up front.
template <class I>
void check_b(int64_t n_inner, int64_t n_cols, const I* indptr, const I* indices, int64_t nnz, int n_threads) {
  std::vector<uint8_t> row_sorted(static_cast<size_t>(n_inner));
  sparsecoded::csr_check<I>(n_inner, n_cols, indptr, indices, nnz, row_sorted.data(), n_threads, "B");
}

template <class I, class V>
void def_matmat(py::module_& m) {
  // Returns (indptr, indices, data) of C = A @ B; B must have passed csr_check.
  m.def(
      "csr_matmat",
      [](int64_t n_rows, int64_t n_inner, int64_t n_cols, const carray<I>& a_indptr,
         const carray<I>& a_indices, const carray<V>& a_data, const carray<I>& b_indptr,
         const carray<I>& b_indices, const carray<V>& b_data, int n_threads) {
        expect_size("A.indptr", a_indptr.size(), n_rows + 1);
        expect_size("A.data", a_data.size(), a_indices.size());
        expect_size("B.indptr", b_indptr.size(), n_inner + 1);
        expect_size("B.data", b_data.size(), b_indices.size());
        const I* aip = a_indptr.data();
        const I* aix = a_indices.data();
        const V* ad = a_data.data();
        const I* bip = b_indptr.data();
        const I* bix = b_indices.data();
        const V* bd = b_data.data();
        const int64_t a_nnz = a_indices.size();
        carray<int64_t> indptr(n_rows + 1);
        int64_t* op = indptr.mutable_data();
        int64_t nnz;
        {
          // only raw pointers into arrays kept alive by this frame cross this scope
          py::gil_scoped_release nogil;
          check_b<I>(n_inner, n_cols, bip, bix, b_indices.size(), n_threads);
          nnz = sparsecoded::csr_matmat_size<I, V>(n_rows, n_inner, n_cols, aip, aix, a_nnz, bip, bix, op,
                                                   n_threads);
        }
        carray<I> indices(nnz);
        carray<V> data(nnz);
        I* oix = indices.mutable_data();
        V* od = data.mutable_data();
        {
          // as above: raw pointers only
          py::gil_scoped_release nogil;
          sparsecoded::csr_matmat_fill<I, V>(n_rows, n_inner, n_cols, aip, aix, ad, a_nnz, bip, bix, bd, op,
                                             oix, od, n_threads);
        }
        return py::make_tuple(indptr, indices, data);
      },
      py::arg("n_rows"), py::arg("n_inner"), py::arg("n_cols"), py::arg("a_indptr").noconvert(),
      py::arg("a_indices").noconvert(), py::arg("a_data").noconvert(), py::arg("b_indptr").noconvert(),
      py::arg("b_indices").noconvert(), py::arg("b_data").noconvert(), py::arg("n_threads"));

  m.def(
      "csr_matmat_dense",
      [](int64_t n_rows, int64_t n_inner, int64_t n_cols, const carray<I>& a_indptr,
         const carray<I>& a_indices, const carray<V>& a_data, const carray<I>& b_indptr,
         const carray<I>& b_indices, const carray<V>& b_data, carray<V>& Y, int n_threads) {
        expect_size("A.indptr", a_indptr.size(), n_rows + 1);
        expect_size("A.data", a_data.size(), a_indices.size());
        expect_size("B.indptr", b_indptr.size(), n_inner + 1);
        expect_size("B.data", b_data.size(), b_indices.size());
        expect_size("Y", Y.size(), n_rows * n_cols);
        const I* aip = a_indptr.data();
        const I* aix = a_indices.data();
        const V* ad = a_data.data();
        const I* bip = b_indptr.data();
        const I* bix = b_indices.data();
        const V* bd = b_data.data();
        V* yp = Y.mutable_data();
        const int64_t a_nnz = a_indices.size();
        {
          // only raw pointers into arrays the caller keeps alive cross this scope
          py::gil_scoped_release nogil;
          check_b<I>(n_inner, n_cols, bip, bix, b_indices.size(), n_threads);
          sparsecoded::csr_matmat_dense<I, V>(n_rows, n_inner, n_cols, aip, aix, ad, a_nnz, bip, bix, bd, yp,
                                              n_threads);
        }
      },
      py::arg("n_rows"), py::arg("n_inner"), py::arg("n_cols"), py::arg("a_indptr").noconvert(),
      py::arg("a_indices").noconvert(), py::arg("a_data").noconvert(), py::arg("b_indptr").noconvert(),
      py::arg("b_indices").noconvert(), py::arg("b_data").noconvert(), py::arg("Y").noconvert(),
      py::arg("n_threads"));
}

}  // namespace

void bind_matmat(py::module_& m) {
  def_matmat<int32_t, float>(m);
  def_matmat<int32_t, double>(m);
  def_matmat<int64_t, float>(m);
  def_matmat<int64_t, double>(m);
}
