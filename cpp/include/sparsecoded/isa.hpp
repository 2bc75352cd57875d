// Runtime choice of the instruction set the kernels' inner loops use.
// The default build targets baseline x86-64 (or whatever the compiler's
// default is elsewhere); the AVX2 and AVX-512 variants are compiled with
// function-level target attributes and chosen at run time from what the CPU
// (and the OS, for the wider registers) supports. On non-x86 targets, or
// with another compiler, only the generic C++ variant exists.
// No pybind11 here.
#pragma once

#include <atomic>
#include <stdexcept>
#include <string>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(SPARSECODED_NO_SIMD)
#define SPARSECODED_X86_SIMD 1
#include <immintrin.h>
// AVX2 + FMA (Haswell, Zen 1 and later)
#define SPARSECODED_TARGET_AVX2 __attribute__((target("avx2,fma")))
// AVX-512 F/VL/BW/DQ (Skylake-SP, Zen 4 and later); VL for the 256-bit masked index compares
#define SPARSECODED_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#else
#define SPARSECODED_X86_SIMD 0
#endif

namespace sparsecoded {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "generic";
  }
}

// Width in bits of the vectors the variant computes with (generic: SSE2 on
// x86-64, what the compiler targets elsewhere; 128 is what it says).
inline int isa_vector_bits(Isa isa) {
  switch (isa) {
    case Isa::avx512:
      return 512;
    case Isa::avx2:
      return 256;
    default:
      return 128;
  }
}

// True when this CPU and OS can run the variant. GCC's and Clang's
// __builtin_cpu_supports read CPUID and, for AVX and AVX-512, whether the OS
// saves the wide registers (XCR0).
inline bool isa_supported(Isa isa) {
  if (isa == Isa::generic) return true;
#if SPARSECODED_X86_SIMD
  __builtin_cpu_init();
  if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

// AMD's AVX-512 (Zen 4) runs 512-bit operations as two 256-bit halves and its
// 512-bit gathers are slower than two 256-bit ones: measured on a 2-core Zen 4
// VM, SpMV 200000 x 50000 at 1 % took 139 ms with the AVX-512 variant and 115 ms
// with AVX2 (84 / 63 ms on 2 threads), and sparse x dense (32 columns) 120 / 115 ms.
// So AVX2 is the automatic choice there; elsewhere the widest the CPU has.
inline bool prefer_avx2_over_avx512() {
#if SPARSECODED_X86_SIMD
  return __builtin_cpu_is("amd");
#else
  return false;
#endif
}

inline Isa best_isa() {
  static const Isa best =
      isa_supported(Isa::avx512) && !prefer_avx2_over_avx512() ? Isa::avx512
      : isa_supported(Isa::avx2)                               ? Isa::avx2
                                                               : Isa::generic;
  return best;
}

// -1: automatic (best_isa); otherwise the forced variant (tests and benchmarks).
inline std::atomic<int>& isa_override() {
  static std::atomic<int> value{-1};
  return value;
}

inline Isa active_isa() {
  const int forced = isa_override().load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<Isa>(forced) : best_isa();
}

// Forces a variant by name ("generic", "avx2", "avx512") or returns to the
// automatic choice ("auto" or ""). Throws std::invalid_argument for an
// unknown name or a variant this CPU cannot run.
inline void set_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    isa_override().store(-1);
    return;
  }
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(isa)) {
      if (!isa_supported(isa))
        throw std::invalid_argument(std::string("instruction set '") + name +
                                    "' is not supported by this CPU or build, best is '" +
                                    isa_name(best_isa()) + "'");
      isa_override().store(static_cast<int>(isa));
      return;
    }
  }
  throw std::invalid_argument("unknown instruction set '" + name +
                              "', expected one of 'auto', 'generic', 'avx2', 'avx512'");
}

}  // namespace sparsecoded
