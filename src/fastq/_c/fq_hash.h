/* fq_hash.h - key hashing and partition routing over arrays: the GIL-free inner loops of
 * hash_many / partition_many / group_by_partition (Python objects are handled in Cython).
 *
 * Contract (docs/hashing.md): a key's hash is XXH3-64 of its bytes; an integer key is its
 * 8 little-endian bytes (two's complement for negatives); an S<n> array element is its bytes
 * without trailing NULs. partition = hash % n ("modulo") or jump consistent hashing of the
 * hash ("jump", Lamping & Veach 2014). Pure C, no Python: fuzzable and testable alone. */
#ifndef FQ_HASH_H
#define FQ_HASH_H

#include <stddef.h>
#include <stdint.h>
#include "fq_endian.h"
#include "fq_xxh3.h"

/* XXH3-64 of the 8 little-endian bytes of v, without going through memory: the 4..8-byte
 * branch of fq_x_len_0to16 with len = 8 (first word = low half, last word = high half). */
static inline uint64_t fq_hash_u64(uint64_t v, uint64_t seed) {
    seed ^= (uint64_t)__builtin_bswap32((uint32_t)seed) << 32;
    uint64_t flip = (fq_ld64(fq_xxh3_secret + 8) ^ fq_ld64(fq_xxh3_secret + 16)) - seed;
    uint64_t in64 = (v >> 32) + (v << 32);               /* last word + (first word << 32) */
    return fq_x_rrmxmx(in64 ^ flip, 8);
}

/* ---- reducing a hash to a partition ------------------------------------------------------ */
enum { FQ_STRATEGY_MODULO = 0, FQ_STRATEGY_JUMP = 1 };

/* h % d for any 64-bit h and 1 <= d < 2^32 without a divide instruction: Lemire, Kaser &
 * Kurz, "Faster remainder by direct computation" (2019), with F = 128 fractional bits:
 * c = ceil(2^128 / d); h % d = ((c * h mod 2^128) * d) >> 128. A power of two is a mask. */
typedef struct {
    uint32_t d;
    uint32_t mask;                    /* d - 1 when d is a power of two, else 0 */
    int pow2;
#if defined(__SIZEOF_INT128__)
    __uint128_t c;
#endif
} fq_divisor;

static inline fq_divisor fq_divisor_new(uint32_t d) {
    fq_divisor r;
    r.d = d;
    r.pow2 = (d & (d - 1)) == 0;
    r.mask = d - 1;
#if defined(__SIZEOF_INT128__)
    r.c = (~(__uint128_t)0) / d + 1;                    /* d >= 2 here when it is used */
#endif
    return r;
}

static inline uint32_t fq_mod(const fq_divisor *dv, uint64_t h) {
    if (dv->pow2) return (uint32_t)(h & dv->mask);
#if defined(__SIZEOF_INT128__)
    __uint128_t low = dv->c * h;                        /* mod 2^128 */
    uint64_t lo = (uint64_t)low, hi = (uint64_t)(low >> 64);
    __uint128_t bottom = ((__uint128_t)lo * dv->d) >> 64;
    __uint128_t top = (__uint128_t)hi * dv->d;
    return (uint32_t)((top + bottom) >> 64);
#else
    return (uint32_t)(h % dv->d);
#endif
}

/* Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash
 * Algorithm", 2014): bucket in [0, n) such that growing n to n+1 moves ~1/(n+1) of keys, all
 * of them to the new bucket. A linear congruential step drives the jumps. */
static inline int32_t fq_jump(uint64_t key, int32_t n) {
    int64_t b = -1, j = 0;
    while (j < n) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (int32_t)b;
}

static inline int32_t fq_reduce(const fq_divisor *dv, int strategy, uint64_t h) {
    return strategy == FQ_STRATEGY_JUMP ? fq_jump(h, (int32_t)dv->d) : (int32_t)fq_mod(dv, h);
}

/* ---- arrays of keys ---------------------------------------------------------------------- *
 * An array is described by its base, byte stride and element kind; the loops take any
 * stride, so a sliced numpy view needs no copy. */
enum {
    FQ_KEYS_U64 = 0,        /* 8-byte integers in host order (uint64 or int64: same bytes) */
    FQ_KEYS_U64_SWAP = 1,   /* 8-byte integers in the opposite byte order */
    FQ_KEYS_FIXED = 2,      /* fixed-width bytes (numpy S<n>): trailing NULs are not hashed */
};

typedef struct {
    const unsigned char *base;
    ptrdiff_t stride;
    size_t n;
    size_t itemsize;
    int kind;
} fq_key_array;

static inline size_t fq_fixed_len(const unsigned char *p, size_t itemsize) {
    while (itemsize > 0 && p[itemsize - 1] == 0) itemsize--;
    return itemsize;
}

/* element i of an integer array, as a host integer */
static inline uint64_t fq_key_array_u64(const fq_key_array *a, size_t i) {
    uint64_t v;
    memcpy(&v, a->base + (ptrdiff_t)i * a->stride, 8);
    return a->kind == FQ_KEYS_U64_SWAP ? __builtin_bswap64(v) : v;
}

/* the hash of element i */
static inline uint64_t fq_key_array_hash(const fq_key_array *a, size_t i, uint64_t seed) {
    const unsigned char *p = a->base + (ptrdiff_t)i * a->stride;
    uint64_t v;
    switch (a->kind) {
    case FQ_KEYS_U64:
        memcpy(&v, p, 8);
        return fq_hash_u64(v, seed);
    case FQ_KEYS_U64_SWAP:
        memcpy(&v, p, 8);
        return fq_hash_u64(__builtin_bswap64(v), seed);
    default:
        return fq_xxh3_64(p, fq_fixed_len(p, a->itemsize), seed);
    }
}

static void fq_hash_array(const fq_key_array *a, uint64_t seed, uint64_t *out) {
    size_t i, n = a->n;
    if (a->kind == FQ_KEYS_U64 && a->stride == 8) {         /* the common case, vectorisable */
        const unsigned char *p = a->base;
        for (i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = fq_hash_u64(v, seed);
        }
        return;
    }
    for (i = 0; i < n; i++) out[i] = fq_key_array_hash(a, i, seed);
}

static void fq_partition_hashes(const uint64_t *h, size_t n, const fq_divisor *dv, int strategy,
                                int32_t *out) {
    size_t i;
    if (strategy == FQ_STRATEGY_JUMP) {
        for (i = 0; i < n; i++) out[i] = fq_jump(h[i], (int32_t)dv->d);
    } else if (dv->pow2) {
        for (i = 0; i < n; i++) out[i] = (int32_t)(h[i] & dv->mask);
    } else {
        for (i = 0; i < n; i++) out[i] = (int32_t)fq_mod(dv, h[i]);
    }
}

/* hash and reduce in one pass (no intermediate array) */
static void fq_partition_array(const fq_key_array *a, const fq_divisor *dv, int strategy,
                               int32_t *out) {
    size_t i, n = a->n;
    if (a->kind == FQ_KEYS_U64 && a->stride == 8 && strategy == FQ_STRATEGY_MODULO) {
        const unsigned char *p = a->base;
        if (dv->pow2) {
            for (i = 0; i < n; i++) {
                uint64_t v;
                memcpy(&v, p + 8 * i, 8);
                out[i] = (int32_t)(fq_hash_u64(v, 0) & dv->mask);
            }
        } else {
            for (i = 0; i < n; i++) {
                uint64_t v;
                memcpy(&v, p + 8 * i, 8);
                out[i] = (int32_t)fq_mod(dv, fq_hash_u64(v, 0));
            }
        }
        return;
    }
    for (i = 0; i < n; i++) out[i] = fq_reduce(dv, strategy, fq_key_array_hash(a, i, 0));
}

/* A stable counting sort of indices by partition: counts[p] = how many keys went to p, and
 * order lists the indices of partition 0's keys (in input order), then partition 1's... */
static void fq_group(const int32_t *part, size_t n, uint32_t n_parts, int64_t *counts,
                     int64_t *order, int64_t *cursor /* n_parts scratch */) {
    size_t i;
    int64_t run = 0;
    memset(counts, 0, (size_t)n_parts * sizeof(int64_t));
    for (i = 0; i < n; i++) counts[part[i]]++;
    for (i = 0; i < n_parts; i++) { cursor[i] = run; run += counts[i]; }
    for (i = 0; i < n; i++) order[cursor[part[i]]++] = (int64_t)i;
}

#endif /* FQ_HASH_H */
