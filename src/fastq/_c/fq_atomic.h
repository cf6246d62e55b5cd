/* fq_atomic.h - the only place in fastq where memory orders are spelled.
 *
 * Thin static-inline wrappers over C11 <stdatomic.h> (gcc, clang, and MSVC with
 * /std:c11 /experimental:c11atomics). Cython ships no libc.stdatomic declarations, so
 * _core.pxd declares these functions through `cdef extern from` instead of the types.
 */
#ifndef FQ_ATOMIC_H
#define FQ_ATOMIC_H

/* syscall(), sched_yield() and CLOCK_MONOTONIC under strict -std=c11 (Python.h defines it too;
 * a C file that includes these headers first gets it from here) */
#if !defined(_GNU_SOURCE) && !defined(_WIN32)
#  define _GNU_SOURCE 1
#endif

#include <stdint.h>
#include <stdatomic.h>

typedef _Atomic uint64_t fq_atomic_u64;
typedef _Atomic uint32_t fq_atomic_u32;

#define FQ_RELAXED memory_order_relaxed
#define FQ_ACQUIRE memory_order_acquire
#define FQ_RELEASE memory_order_release
#define FQ_SEQ_CST memory_order_seq_cst

static inline uint64_t fq_load64(fq_atomic_u64 *p, memory_order mo) { return atomic_load_explicit(p, mo); }
static inline void fq_store64(fq_atomic_u64 *p, uint64_t v, memory_order mo) { atomic_store_explicit(p, v, mo); }
static inline uint64_t fq_fetch_or64(fq_atomic_u64 *p, uint64_t v, memory_order mo) { return atomic_fetch_or_explicit(p, v, mo); }
/* Weak CAS: success order is seq_cst (the waiter hand-shake in fq_ring.h relies on it),
 * failure order relaxed. On failure *expected is refreshed with the current value. */
static inline int fq_cas64(fq_atomic_u64 *p, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_weak_explicit(p, expected, desired, FQ_SEQ_CST, FQ_RELAXED);
}

static inline uint32_t fq_load32(fq_atomic_u32 *p, memory_order mo) { return atomic_load_explicit(p, mo); }
static inline void fq_store32(fq_atomic_u32 *p, uint32_t v, memory_order mo) { atomic_store_explicit(p, v, mo); }
static inline uint32_t fq_add32(fq_atomic_u32 *p, uint32_t v, memory_order mo) { return atomic_fetch_add_explicit(p, v, mo); }
static inline uint32_t fq_or32(fq_atomic_u32 *p, uint32_t v, memory_order mo) { return atomic_fetch_or_explicit(p, v, mo); }
static inline int fq_cas32(fq_atomic_u32 *p, uint32_t *expected, uint32_t desired) {
    return atomic_compare_exchange_weak_explicit(p, expected, desired, FQ_SEQ_CST, FQ_RELAXED);
}

/* The hot single-item paths must inline into the Python method wrappers (measured: gcc -O2
 * otherwise keeps them out of line once they grow a slow branch); slow paths must not. */
#if defined(_MSC_VER)
#  define FQ_HOT static __forceinline
#  define FQ_COLD static __declspec(noinline)
#else
#  define FQ_HOT static inline __attribute__((always_inline))
#  define FQ_COLD static __attribute__((noinline, cold))
#endif

/* A hint to the CPU that we are spinning (reduces power and SMT contention). */
#if defined(_WIN32)
#  include <windows.h>
#endif
#if defined(_MSC_VER)
#  define fq_cpu_relax() YieldProcessor()
#elif defined(__x86_64__) || defined(__i386__)
#  define fq_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#  define fq_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#  define fq_cpu_relax() atomic_signal_fence(memory_order_seq_cst)
#endif

/* Bounded spinning for a peer that is mid-copy: pause, and after a while yield the CPU
 * (the peer may have been preempted between its claim and its copy). */
#if defined(_WIN32)
#  define fq_yield() SwitchToThread()
#else
#  include <sched.h>
#  define fq_yield() sched_yield()
#endif
static inline void fq_backoff(unsigned *spins) {
    if (++*spins < 64) fq_cpu_relax(); else fq_yield();
}

#endif /* FQ_ATOMIC_H */
