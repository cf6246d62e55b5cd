/* fq_hist.h: a bounded log-linear (HDR-style) latency histogram over integer nanoseconds.
 *
 * Layout (K = 8, "2 significant figures"):
 *   - values 0..255 each have their own bucket (index = value);
 *   - each octave [2^m, 2^(m+1)), m >= 8, is split into 128 equal sub-buckets of width
 *     2^(m-7), so a bucket's width is at most 2^-7 (0.78%) of its lowest value.
 *   index(v) = ((m - 7) << 7) + (v >> (m - 7)), with m = 63 - clz(v | 255): one clz, one
 *   shift, no branch (for v < 256, m = 7 and the formula gives v).
 * Values go up to `highest` (at most 2^40 ns, ~18.3 minutes); a larger value is clamped to
 * `highest` and counted in `overflow` as well. The counts are one uint64 array of
 * index(highest) + 1 buckets, allocated once by fq_hist_init (4,352 buckets = 34,816 bytes
 * for highest = 1099.5 s; at most 4,353 = 34,824 bytes).
 *
 * Concurrency: fq_hist_record is lock-free (GCC/Clang __atomic builtins, relaxed): one add on
 * the bucket, one on the sum, and a CAS loop on min/max only when the value is a new extreme
 * (a batch adds to the buckets one by one and publishes its sum, min and max once).
 * Readers load the counts relaxed; fq_hist_drain swaps each counter with 0, so a value
 * recorded concurrently is counted by exactly one drain (its bucket and its sum may land in
 * consecutive drains: the totals over all drains are exact).
 *
 * Plain C, no Python: the caller converts and validates.
 */
#ifndef FQ_HIST_H
#define FQ_HIST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define FQ_HIST_SUB_BITS 7                          /* 128 sub-buckets per octave */
#define FQ_HIST_EXACT 256u                          /* values below this are exact */
#define FQ_HIST_MAX_NS ((uint64_t)1 << 40)          /* the largest `highest` */

#define FQ_HIST_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define FQ_HIST_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define FQ_HIST_SWAP(p, v) __atomic_exchange_n((p), (v), __ATOMIC_RELAXED)

typedef struct {
    uint64_t *counts;   /* n buckets, owned */
    uint32_t n;         /* index(highest) + 1 */
    uint64_t highest;   /* ns; larger values are clamped to it */
    uint64_t sum;       /* ns, atomic */
    uint64_t min;       /* ns, atomic; UINT64_MAX when nothing was recorded */
    uint64_t max;       /* ns, atomic; 0 when nothing was recorded */
    uint64_t overflow;  /* values clamped to highest, atomic */
} fq_hist;

/* Statistics of a counts array (fq_hist_stats fills it). */
typedef struct {
    uint64_t count, sum, min, max, overflow;
} fq_hist_totals;

static inline uint32_t fq_hist_index(uint64_t v) {
    unsigned m = 63u - (unsigned)__builtin_clzll(v | (FQ_HIST_EXACT - 1));
    unsigned shift = m - FQ_HIST_SUB_BITS;
    return (uint32_t)(((uint64_t)shift << FQ_HIST_SUB_BITS) + (v >> shift));
}

/* The lowest value that lands in bucket i. */
static inline uint64_t fq_hist_lowest(uint32_t i) {
    if (i < FQ_HIST_EXACT) return i;
    unsigned shift = (i >> FQ_HIST_SUB_BITS) - 1u;                  /* m - 7 */
    uint64_t sub = (i & ((1u << FQ_HIST_SUB_BITS) - 1u)) | (1u << FQ_HIST_SUB_BITS);
    return sub << shift;
}

/* The highest value that lands in bucket i (HDR's "highest equivalent value"). */
static inline uint64_t fq_hist_highest_equiv(uint32_t i) {
    if (i < FQ_HIST_EXACT) return i;
    unsigned shift = (i >> FQ_HIST_SUB_BITS) - 1u;
    return fq_hist_lowest(i) + (((uint64_t)1 << shift) - 1u);
}

/* 0 on success, -1 if highest is out of 1..2^40 or the allocation fails. */
static inline int fq_hist_init(fq_hist *h, uint64_t highest) {
    memset(h, 0, sizeof(*h));
    if (highest < 1 || highest > FQ_HIST_MAX_NS) return -1;
    h->n = fq_hist_index(highest) + 1u;
    h->counts = (uint64_t *)calloc(h->n, sizeof(uint64_t));
    if (h->counts == NULL) return -1;
    h->highest = highest;
    h->min = UINT64_MAX;
    return 0;
}

static inline void fq_hist_free(fq_hist *h) {
    free(h->counts);
    h->counts = NULL;
}

static inline size_t fq_hist_bytes(const fq_hist *h) { return (size_t)h->n * sizeof(uint64_t); }
static inline uint64_t fq_hist_sum(fq_hist *h) { return FQ_HIST_LOAD(&h->sum); }
static inline uint64_t fq_hist_overflow(fq_hist *h) { return FQ_HIST_LOAD(&h->overflow); }

static inline void fq_hist_min_max(fq_hist *h, uint64_t v) {
    uint64_t cur = FQ_HIST_LOAD(&h->min);
    while (v < cur && !__atomic_compare_exchange_n(&h->min, &cur, v, 1, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {}
    cur = FQ_HIST_LOAD(&h->max);
    while (v > cur && !__atomic_compare_exchange_n(&h->max, &cur, v, 1, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED)) {}
}

/* Record one value in ns (thread-safe, lock-free, no allocation). */
static inline __attribute__((always_inline)) void fq_hist_record(fq_hist *h, uint64_t v) {
    if (__builtin_expect(v > h->highest, 0)) {
        v = h->highest;
        FQ_HIST_ADD(&h->overflow, 1);
    }
    FQ_HIST_ADD(&h->counts[fq_hist_index(v)], 1);
    FQ_HIST_ADD(&h->sum, v);
    if (__builtin_expect(v < FQ_HIST_LOAD(&h->min) || v > FQ_HIST_LOAD(&h->max), 0))
        fq_hist_min_max(h, v);
}

/* Seconds to ns: -1 for NaN or a negative value; +inf and anything >= 2^63 ns saturate
 * (record then clamps them to highest). Rounds to the nearest ns. */
static inline int fq_hist_ns(double s, uint64_t *out) {
    if (!(s >= 0.0)) return -1;
    double x = s * 1e9 + 0.5;
    *out = x < 9.2e18 ? (uint64_t)x : UINT64_MAX;
    return 0;
}

static inline int fq_hist_record_s(fq_hist *h, double s) {
    uint64_t v;
    if (fq_hist_ns(s, &v)) return -1;
    fq_hist_record(h, v);
    return 0;
}

/* Arrays (strided, as a buffer gives them). The checks return the index of the first bad
 * element (NaN/negative), or -1 if all are good; the records assume checked input. */
static inline int64_t fq_hist_check_f64(const char *p, int64_t n, int64_t stride) {
    for (int64_t i = 0; i < n; i++) {
        double s;
        memcpy(&s, p + i * stride, sizeof s);
        if (!(s >= 0.0)) return i;
    }
    return -1;
}

static inline int64_t fq_hist_check_i64(const char *p, int64_t n, int64_t stride) {
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, p + i * stride, sizeof v);
        if (v < 0) return i;
    }
    return -1;
}

/* Batches: the sum, min, max and overflow of a batch are gathered locally and published once
 * at the end. The bucket counts go either straight to the shared buckets (one atomic add per
 * value; local == NULL) or into a caller-provided zeroed array of h->n counts that is added to
 * the shared buckets at the end (one atomic add per bucket used: cheaper for long batches). */
typedef struct { uint64_t sum, min, max, overflow; uint64_t *local; } fq_hist_batch;

static inline void fq_hist_batch_start(fq_hist_batch *b, uint64_t *local) {
    b->sum = 0; b->min = UINT64_MAX; b->max = 0; b->overflow = 0; b->local = local;
}

static inline __attribute__((always_inline)) void fq_hist_batch_add(fq_hist *h, fq_hist_batch *b,
                                                                    uint64_t v) {
    if (__builtin_expect(v > h->highest, 0)) { v = h->highest; b->overflow++; }
    if (b->local) b->local[fq_hist_index(v)]++;
    else FQ_HIST_ADD(&h->counts[fq_hist_index(v)], 1);
    b->sum += v;
    b->min = v < b->min ? v : b->min;
    b->max = v > b->max ? v : b->max;
}

static inline void fq_hist_batch_end(fq_hist *h, const fq_hist_batch *b) {
    if (b->local)
        for (uint32_t i = 0; i < h->n; i++)
            if (b->local[i]) FQ_HIST_ADD(&h->counts[i], b->local[i]);
    if (b->overflow) FQ_HIST_ADD(&h->overflow, b->overflow);
    if (b->sum) FQ_HIST_ADD(&h->sum, b->sum);
    if (b->min != UINT64_MAX) fq_hist_min_max(h, b->min);
    if (b->max) fq_hist_min_max(h, b->max);
}

/* Record checked arrays; local: NULL or a zeroed scratch of h->n counts (see above). */
static inline void fq_hist_record_f64(fq_hist *h, const char *p, int64_t n, int64_t stride,
                                      uint64_t *local) {
    fq_hist_batch b;
    fq_hist_batch_start(&b, local);
    for (int64_t i = 0; i < n; i++) {
        double s;
        uint64_t v;
        memcpy(&s, p + i * stride, sizeof s);
        if (fq_hist_ns(s, &v) == 0) fq_hist_batch_add(h, &b, v);
    }
    fq_hist_batch_end(h, &b);
}

static inline void fq_hist_record_i64(fq_hist *h, const char *p, int64_t n, int64_t stride,
                                      uint64_t *local) {
    fq_hist_batch b;
    fq_hist_batch_start(&b, local);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, p + i * stride, sizeof v);
        fq_hist_batch_add(h, &b, (uint64_t)v);
    }
    fq_hist_batch_end(h, &b);
}

static inline void fq_hist_record_u64s(fq_hist *h, const uint64_t *v, int64_t n,
                                       uint64_t *local) {
    fq_hist_batch b;
    fq_hist_batch_start(&b, local);
    for (int64_t i = 0; i < n; i++) fq_hist_batch_add(h, &b, v[i]);
    fq_hist_batch_end(h, &b);
}

/* Copy the counters into out[h->n] (relaxed loads: a view that may include some concurrent
 * records and not others) and the totals; count is the sum of the copied buckets. */
static inline void fq_hist_copy(fq_hist *h, uint64_t *out, fq_hist_totals *t) {
    uint64_t c = 0;
    for (uint32_t i = 0; i < h->n; i++) { out[i] = FQ_HIST_LOAD(&h->counts[i]); c += out[i]; }
    t->count = c;
    t->sum = FQ_HIST_LOAD(&h->sum);
    t->min = FQ_HIST_LOAD(&h->min);
    t->max = FQ_HIST_LOAD(&h->max);
    t->overflow = FQ_HIST_LOAD(&h->overflow);
}

/* Move the counters into out[h->n] (out may be NULL: discard), leaving zeros: each counter is
 * swapped with 0 atomically, so every concurrent record is counted by exactly one drain. */
static inline void fq_hist_drain(fq_hist *h, uint64_t *out, fq_hist_totals *t) {
    uint64_t c = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        uint64_t k = FQ_HIST_LOAD(&h->counts[i]) ? FQ_HIST_SWAP(&h->counts[i], 0) : 0;
        if (out) out[i] = k;
        c += k;
    }
    t->count = c;
    t->sum = FQ_HIST_SWAP(&h->sum, 0);
    t->min = FQ_HIST_SWAP(&h->min, UINT64_MAX);
    t->max = FQ_HIST_SWAP(&h->max, 0);
    t->overflow = FQ_HIST_SWAP(&h->overflow, 0);
}

/* Add another histogram's counters (same bucket layout; buckets beyond ours go to our top
 * bucket and count as overflow). src may be h itself. */
static inline void fq_hist_merge(fq_hist *h, fq_hist *src) {
    uint64_t spill = 0;
    for (uint32_t i = 0; i < src->n; i++) {
        uint64_t k = FQ_HIST_LOAD(&src->counts[i]);
        if (!k) continue;
        if (i < h->n) {
            FQ_HIST_ADD(&h->counts[i], k);
        } else {
            FQ_HIST_ADD(&h->counts[h->n - 1], k);
            spill += k;
        }
    }
    uint64_t mn = FQ_HIST_LOAD(&src->min), mx = FQ_HIST_LOAD(&src->max);
    FQ_HIST_ADD(&h->overflow, FQ_HIST_LOAD(&src->overflow) + spill);
    FQ_HIST_ADD(&h->sum, FQ_HIST_LOAD(&src->sum));
    if (mn != UINT64_MAX) fq_hist_min_max(h, mn > h->highest ? h->highest : mn);
    if (mx) fq_hist_min_max(h, mx > h->highest ? h->highest : mx);
}

/* The value at percentile q (0..100) of counts[n] holding `count` values, in ns: the highest
 * equivalent value of the bucket holding the value of rank ceil(q/100 * count) (at least 1),
 * clamped to max (as HDR does). 0 when count is 0. */
static inline uint64_t fq_hist_value_at(const uint64_t *counts, uint32_t n, uint64_t count,
                                        uint64_t max, double q) {
    if (count == 0) return 0;
    double r = ceil(q / 100.0 * (double)count);      /* as numpy's inverted_cdf rounds it */
    uint64_t rank = r < 1.0 ? 1 : (r >= (double)count ? count : (uint64_t)r);
    uint64_t seen = 0;
    uint32_t i = 0;
    for (; i < n; i++) {
        seen += counts[i];
        if (seen >= rank) break;
    }
    if (i == n) i = n - 1;
    uint64_t v = fq_hist_highest_equiv(i);
    if (v > max && max >= fq_hist_lowest(i)) v = max;
    return v;
}

/* How many of counts[n] are <= bound ns: the buckets whose highest value is <= bound (a bucket
 * that straddles the bound is left out, so values in (bound - 0.78%, bound] may be missed). */
static inline uint64_t fq_hist_count_le(const uint64_t *counts, uint32_t n, uint64_t bound) {
    uint64_t c = 0;
    for (uint32_t i = 0; i < n && fq_hist_highest_equiv(i) <= bound; i++) c += counts[i];
    return c;
}

#endif /* FQ_HIST_H */
