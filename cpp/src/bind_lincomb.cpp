// Bindings of the encoder and of csr_lincomb (csr_encode.hpp,
// csr_lincomb.hpp). Every array argument is noconvert: the Python wrappers
// pass exact dtypes in C order. Inputs are checked by csr_check here, so the
// merge kernels only ever see valid structure.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "sparsecoded/csr_encode.hpp"
#include "sparsecoded/csr_lincomb.hpp"

namespace py = pybind11;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

void expect_size(const std::string& what, py::ssize_t found, int64_t expected) {
  if (found != expected)
    throw std::invalid_argument(what + " has " + std::to_string(found) + " entries, expected " +
                                std::to_string(expected));
}

template <class I, class V>
void def_lincomb(py::module_& m) {
  // Returns (indptr int64[n*b + 1], indices, data) of the n coded blocks, stacked.
  m.def(
      "csr_encode",
      [](int64_t m_rows, int64_t c, const carray<I>& indptr, const carray<I>& indices, const carray<V>& data,
         int64_t k, int64_t b, const carray<V>& E, int n_threads) {
        expect_size("indptr", indptr.size(), m_rows + 1);
        expect_size("data", data.size(), indices.size());
        if (E.ndim() != 2 || E.shape(1) != k)
          throw std::invalid_argument("E must be 2-D with k = " + std::to_string(k) + " columns");
        if (k < 1 || b < 0 || b * k < m_rows)
          throw std::invalid_argument("need k >= 1 and b * k >= m, found k = " + std::to_string(k) +
                                      ", b = " + std::to_string(b) + ", m = " + std::to_string(m_rows));
        const int64_t n = E.shape(0);
        const I* ip = indptr.data();
        const I* ix = indices.data();
        const V* d = data.data();
        const V* ep = E.data();
        const int64_t nnz = indices.size();
        std::vector<uint8_t> row_sorted(static_cast<size_t>(m_rows));
        carray<int64_t> out_indptr(n * b + 1);
        int64_t* op = out_indptr.mutable_data();
        int64_t total;
        {
          // only raw pointers into arrays kept alive by this frame cross this scope
          py::gil_scoped_release nogil;
          sparsecoded::csr_check<I>(m_rows, c, ip, ix, nnz, row_sorted.data(), n_threads, "A");
          total = sparsecoded::csr_encode_size<I, V>(m_rows, c, ip, ix, d, row_sorted.data(), k, b, n, ep, op,
                                                     n_threads);
        }
        carray<I> out_indices(total);
        carray<V> out_data(total);
        I* oix = out_indices.mutable_data();
        V* od = out_data.mutable_data();
        {
          // as above: raw pointers only
          py::gil_scoped_release nogil;
          sparsecoded::csr_encode_fill<I, V>(m_rows, c, ip, ix, d, row_sorted.data(), k, b, n, ep, op, oix, od,
                                             n_threads);
        }
        return py::make_tuple(out_indptr, out_indices, out_data);
      },
      py::arg("m"), py::arg("c"), py::arg("indptr").noconvert(), py::arg("indices").noconvert(),
      py::arg("data").noconvert(), py::arg("k"), py::arg("b"), py::arg("E").noconvert(), py::arg("n_threads"));

  // mats: a list of (indptr, indices, data) tuples of the same shape.
  m.def(
      "csr_lincomb",
      [](int64_t n_rows, int64_t n_cols, const std::vector<std::tuple<carray<I>, carray<I>, carray<V>>>& mats,
         const carray<V>& coeffs, int n_threads, double drop,
         const std::vector<std::tuple<carray<V>, carray<V>>>& scales) {
        const int K = static_cast<int>(mats.size());
        expect_size("coeffs", coeffs.size(), K);
        if (!scales.empty() && static_cast<int>(scales.size()) != K)
          throw std::invalid_argument("scales has " + std::to_string(scales.size()) +
                                      " entries, expected 0 or len(mats) = " + std::to_string(K));
        std::vector<std::vector<uint8_t>> sorted(K);
        std::vector<sparsecoded::CsrOperand<I, V>> ops(K);
        std::vector<int64_t> nnzs(K);
        for (int t = 0; t < K; ++t) {
          const auto& [ip, ix, d] = mats[t];
          const std::string who = "mats[" + std::to_string(t) + "]";
          expect_size(who + ".indptr", ip.size(), n_rows + 1);
          expect_size(who + ".data", d.size(), ix.size());
          sorted[t].resize(static_cast<size_t>(n_rows));
          ops[t] = {ip.data(), ix.data(), d.data(), sorted[t].data()};
          if (!scales.empty()) {
            const auto& [rs, cs] = scales[t];
            expect_size("scales[" + std::to_string(t) + "][0]", rs.size(), n_rows);
            expect_size("scales[" + std::to_string(t) + "][1]", cs.size(), n_cols);
            ops[t].row_scale = rs.data();
            ops[t].col_scale = cs.data();
          }
          nnzs[t] = ix.size();
        }
        const V* cp = coeffs.data();
        carray<int64_t> out_indptr(n_rows + 1);
        int64_t* op = out_indptr.mutable_data();
        int64_t total;
        {
          // only raw pointers into arrays kept alive by `mats` cross this scope
          py::gil_scoped_release nogil;
          for (int t = 0; t < K; ++t) {
            const std::string who = "mats[" + std::to_string(t) + "]";
            sparsecoded::csr_check<I>(n_rows, n_cols, ops[t].indptr, ops[t].indices, nnzs[t], sorted[t].data(),
                                      n_threads, who.c_str());
          }
          total = sparsecoded::csr_lincomb_size<I, V>(n_rows, n_cols, ops.data(), cp, K, op, n_threads, drop);
        }
        carray<I> out_indices(total);
        carray<V> out_data(total);
        I* oix = out_indices.mutable_data();
        V* od = out_data.mutable_data();
        {
          // as above: raw pointers only
          py::gil_scoped_release nogil;
          sparsecoded::csr_lincomb_fill<I, V>(n_rows, n_cols, ops.data(), cp, K, op, oix, od, n_threads, drop);
        }
        return py::make_tuple(out_indptr, out_indices, out_data);
      },
      py::arg("n_rows"), py::arg("n_cols"), py::arg("mats"), py::arg("coeffs").noconvert(), py::arg("n_threads"),
      py::arg("drop") = -1.0, py::arg("scales") = std::vector<std::tuple<carray<V>, carray<V>>>{});
}

}  // namespace

void bind_lincomb(py::module_& m) {
  def_lincomb<int32_t, float>(m);
  def_lincomb<int32_t, double>(m);
  def_lincomb<int64_t, float>(m);
  def_lincomb<int64_t, double>(m);
}
