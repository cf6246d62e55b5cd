/* fq_dedup.h - a time-windowed set of key fingerprints: the engine of fastq.DedupWindow.
 *
 * Entries live in a FIFO ring in insertion order. The TTL is the same for every entry and the
 * clock never moves backwards, so insertion order is also expiry order: expiring and evicting
 * both pop the ring's front. Every entry also has a sequence number (its insertion count), so
 * the ring holds the contiguous run of numbers [head_seq, head_seq + used).
 *
 * The index that finds an entry by fingerprint is a bucketized cuckoo hash table (Pagh &
 * Rodler 2001; 4-way buckets as in Fan et al.'s cuckoo filter, 2014): a key sits in one of two
 * 4-slot buckets picked by its tag, so a lookup reads at most 8 slots with branch-free
 * compares. Each slot is 8 bytes: 32 bits of the fingerprint (the "tag", which picks the
 * buckets, so moving a resident never looks at the ring) and the entry's sequence number.
 * Popping an entry does not touch the index: a slot whose number has left the ring's run is
 * stale, and counts as free when an insert looks for room (lazy deletion, so expiring and
 * evicting cost O(1) each). An insert takes the emptier bucket; when both are full it moves a
 * resident to its other bucket (dropping it if it is stale); the rare entry that still finds no
 * room after FQ_DD_KICKS moves goes to a small stash searched last.
 *
 * Sequence numbers start at 1 (0 marks an empty slot) and never wrap: before the next number
 * would reach 2^32 - 1 the ring and index are rebuilt and renumbered from 1 (once per four
 * billion inserts). So "current" is one unsigned subtraction and compare: s - head_seq < used
 * (stale and empty slots wrap to huge values). A match is still confirmed against the ring
 * entry it points at (live, same 64-bit fingerprint, and in exact mode same bytes).
 *
 * Memory (fingerprint mode): ring 16 B per entry with 1/16 spare for forgotten entries, index
 * 1.67 slots per entry (load <= 0.6): about 30 B per key at max_keys (docs/hashing.md). Exact
 * mode keeps each key's bytes in an arena (4-byte length + bytes) and compares them, so two
 * keys with equal fingerprints are never confused.
 *
 * Pure C, not thread-safe: the Python layer serialises calls. No Python API here. */
#ifndef FQ_DEDUP_H
#define FQ_DEDUP_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fq_crc32c.h"
#include "fq_endian.h"
#include "fq_xxh3.h"
#if defined(__linux__)
#  include <sys/mman.h>
#endif

#define FQ_DD_MAX_KEYS (1u << 30)
#define FQ_DD_DEAD (-INFINITY)              /* `expires` of an entry removed by forget() */
#define FQ_DD_SEQ_LIMIT 0xFFFFFF00u         /* renumber before a sequence number gets here */

typedef struct {
    uint64_t fp;
    double expires;                         /* insertion time + ttl, or FQ_DD_DEAD */
} fq_dd_entry;

#define FQ_DD_WAYS 4                        /* slots per bucket */
#define FQ_DD_AHEAD 12                      /* seen_many prefetches this many keys ahead */
#define FQ_DD_KICKS 500                     /* moves an insert may make before using the stash */

typedef struct {
    uint64_t *slots;                        /* nbuckets * FQ_DD_WAYS, 64-byte aligned */
    void *raw;                              /* what to free */
    uint32_t nbuckets;
    uint64_t *stash;                        /* entries that found no room in their buckets */
    uint32_t stash_n, stash_cap;
} fq_dd_index;

typedef struct {
    double ttl;
    uint64_t max_keys;
    uint64_t fp_mask;                       /* all ones; a test hook narrows it */
    int exact;
    /* the FIFO ring */
    fq_dd_entry *ring;
    uint64_t *koff;                         /* exact: arena offset of each entry's key */
    uint32_t cap, cap_max, head, used;      /* used counts forgotten (dead) entries too */
    uint32_t head_seq;                      /* sequence number of ring[head] */
    uint32_t live;
    fq_dd_index ix;
    uint64_t rng;                           /* xorshift state: which resident an insert moves */
    /* exact: key bytes, logical offsets [a_head, a_tail) stored at arena[off - a_base] */
    unsigned char *arena;
    uint64_t a_cap, a_base, a_head, a_tail;
    double now;                             /* the latest clock reading (never decreases) */
    uint64_t evictions, expiries, inserts, hits;
} fq_dedup;

static inline uint32_t fq_dd_tag(uint64_t fp) { return (uint32_t)(fp >> 32) ^ (uint32_t)fp; }
static inline uint32_t fq_dd_b1(const fq_dd_index *x, uint32_t tag) {
    return (uint32_t)(((uint64_t)tag * x->nbuckets) >> 32);
}
static inline uint32_t fq_dd_b2(const fq_dd_index *x, uint32_t tag) {
    uint32_t t2 = (uint32_t)(((uint64_t)tag * 0x9E3779B97F4A7C15ull) >> 32);
    return (uint32_t)(((uint64_t)t2 * x->nbuckets) >> 32);
}
static inline uint32_t fq_dd_pos(const fq_dedup *d, uint32_t k) {   /* ring index of the k-th oldest */
    uint64_t p = (uint64_t)d->head + k;
    return (uint32_t)(p >= d->cap ? p - d->cap : p);
}
/* where sequence number s sits in the ring's run (>= used: not in the ring) */
static inline uint32_t fq_dd_seq_off(const fq_dedup *d, uint32_t s) { return s - d->head_seq; }
static inline int fq_dd_current(const fq_dedup *d, uint64_t slot) {  /* not empty, not stale */
    return (uint32_t)slot - d->head_seq < d->used;
}
static inline uint32_t fq_dd_buckets_for(uint32_t n) {               /* load <= 0.6 */
    return (uint32_t)((uint64_t)n * 5 / 12 + 2);
}

static inline const unsigned char *fq_dd_key(const fq_dedup *d, uint32_t idx, uint32_t *len) {
    const unsigned char *p = d->arena + (d->koff[idx] - d->a_base);
    *len = fq_ld32(p);
    return p + 4;
}

/* the ring index of the live entry `slot` points at if it is (fp, key), else -1 */
static inline int64_t fq_dd_match(const fq_dedup *d, uint64_t slot, uint64_t fp, const void *key,
                                  size_t klen) {
    uint32_t n, off = fq_dd_seq_off(d, (uint32_t)slot);
    if (off >= d->used) return -1;                /* empty or stale */
    uint32_t idx = fq_dd_pos(d, off);
    const fq_dd_entry *e = &d->ring[idx];
    if (e->fp != fp || e->expires == FQ_DD_DEAD) return -1;
    if (d->exact) {
        const unsigned char *k = fq_dd_key(d, idx, &n);
        if (n != klen || memcmp(k, key, klen) != 0) return -1;
    }
    return idx;
}

/* Bit w set where bucket slot w holds `tag` / is free (empty or stale): branch-free, with SSE2
 * on x86-64 (a bucket is two 16-byte vectors; a slot's sequence number is its low 32-bit lane,
 * its tag the high one), plain compares elsewhere. */
#if defined(__SSE2__)
#  include <emmintrin.h>
/* one bucket's 32-bit halves packed into a vector in slot order: the tags (high halves) or
 * the sequence numbers (low halves) */
static inline __m128i fq_dd_halves(const uint64_t *b, int high) {
    __m128 x0 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)b));
    __m128 x1 = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(b + 2)));
    return _mm_castps_si128(high ? _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(3, 1, 3, 1))
                                 : _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)));
}
static inline unsigned fq_dd_tagmask(const uint64_t *b, uint32_t tag) {
    __m128i eq = _mm_cmpeq_epi32(fq_dd_halves(b, 1), _mm_set1_epi32((int)tag));
    return (unsigned)_mm_movemask_ps(_mm_castsi128_ps(eq));
}
static inline unsigned fq_dd_freemask(const fq_dedup *d, const uint64_t *b) {
    /* current: (uint32)(seq - head_seq) < used, an unsigned compare done signed after
     * flipping the sign bits; free = not current */
    const __m128i flip = _mm_set1_epi32((int)0x80000000u);
    __m128i off = _mm_sub_epi32(fq_dd_halves(b, 0), _mm_set1_epi32((int)d->head_seq));
    __m128i lt = _mm_cmplt_epi32(_mm_xor_si128(off, flip),
                                 _mm_set1_epi32((int)(d->used ^ 0x80000000u)));
    return ~(unsigned)_mm_movemask_ps(_mm_castsi128_ps(lt)) & 0xFu;
}
#else
static inline unsigned fq_dd_tagmask(const uint64_t *b, uint32_t tag) {
    return (unsigned)((uint32_t)(b[0] >> 32) == tag) | (unsigned)((uint32_t)(b[1] >> 32) == tag) << 1 |
           (unsigned)((uint32_t)(b[2] >> 32) == tag) << 2 | (unsigned)((uint32_t)(b[3] >> 32) == tag) << 3;
}
static inline unsigned fq_dd_freemask(const fq_dedup *d, const uint64_t *b) {
    return (unsigned)!fq_dd_current(d, b[0]) | (unsigned)!fq_dd_current(d, b[1]) << 1 |
           (unsigned)!fq_dd_current(d, b[2]) << 2 | (unsigned)!fq_dd_current(d, b[3]) << 3;
}
#endif
static inline unsigned fq_dd_count4(unsigned m) {          /* bits set in a 4-bit mask */
    return (unsigned)(0x4332322132212110ull >> (4 * m)) & 0xF;
}
/* slot k (0..7) of the bucket pair p1, p2, without a branch on which bucket */
static inline uint64_t *fq_dd_pair_slot(uint64_t *p1, uint64_t *p2, unsigned k) {
    uint64_t *base[2] = {p1, p2 - 4};
    return base[k >> 2] + k;
}
static inline uint64_t *fq_dd_bucket(const fq_dd_index *x, uint32_t b) {
    return x->slots + (size_t)FQ_DD_WAYS * b;
}

/* A key's two buckets and their free slots, as a lookup found them (an insert right after the
 * lookup reuses them; popping entries in between only frees more slots, so the masks stay
 * true, if incomplete). */
typedef struct {
    uint64_t *p1, *p2;
    unsigned m1, m2;
} fq_dd_where;

/* The slot holding (fp, key), or NULL; *idx = the ring index of its entry, at->p1/p2 = the
 * key's buckets (for an insert that follows). */
static inline uint64_t *fq_dd_find(const fq_dedup *d, uint64_t fp, const void *key, size_t klen,
                                   uint32_t *idx, fq_dd_where *at) {
    const fq_dd_index *x = &d->ix;
    uint32_t tag = fq_dd_tag(fp), w;
    uint64_t *p1 = fq_dd_bucket(x, fq_dd_b1(x, tag)), *p2 = fq_dd_bucket(x, fq_dd_b2(x, tag));
    unsigned m = fq_dd_tagmask(p1, tag) | fq_dd_tagmask(p2, tag) << 4;
    at->p1 = p1;
    at->p2 = p2;
    int64_t i;
    while (m) {                                   /* candidates: almost always the key itself */
        uint64_t *sp = fq_dd_pair_slot(p1, p2, (unsigned)__builtin_ctz(m));
        if ((i = fq_dd_match(d, *sp, fp, key, klen)) >= 0) { *idx = (uint32_t)i; return sp; }
        m &= m - 1;
    }
    for (w = 0; w < x->stash_n; w++) {
        uint64_t *sp = &x->stash[w];
        if ((uint32_t)(*sp >> 32) == tag && (i = fq_dd_match(d, *sp, fp, key, klen)) >= 0) {
            *idx = (uint32_t)i;
            return sp;
        }
    }
    return NULL;
}

static inline void fq_dd_locate(const fq_dedup *d, const fq_dd_index *x, uint32_t tag,
                                fq_dd_where *w) {
    w->p1 = fq_dd_bucket(x, fq_dd_b1(x, tag));
    w->p2 = fq_dd_bucket(x, fq_dd_b2(x, tag));
    w->m1 = fq_dd_freemask(d, w->p1);
    w->m2 = fq_dd_freemask(d, w->p2);
}

/* Index sequence number seq under tag (d->used already counts it); `at` is the tag's
 * fq_dd_locate result for index x, or NULL. 0, or ENOMEM when the stash had to grow and could
 * not, in which case one current resident lost its slot. */
static int fq_dd_index_kick(fq_dedup *d, fq_dd_index *x, uint32_t tag, uint64_t e);

static inline int fq_dd_index_put(fq_dedup *d, fq_dd_index *x, uint32_t tag, uint32_t seq,
                                  const fq_dd_where *at) {
    uint64_t e = ((uint64_t)tag << 32) | seq;
    fq_dd_where here;
    if (!at) {
        fq_dd_locate(d, x, tag, &here);
        at = &here;
    }
    if (at->m1 | at->m2) {                        /* the emptier bucket, chosen without a branch */
        int first = fq_dd_count4(at->m1) >= fq_dd_count4(at->m2);
        uint64_t *p = first ? at->p1 : at->p2;
        p[__builtin_ctz(first ? at->m1 : at->m2)] = e;
        return 0;
    }
    return fq_dd_index_kick(d, x, tag, e);
}

/* both buckets full: move residents to their other buckets, else use the stash */
static int fq_dd_index_kick(fq_dedup *d, fq_dd_index *x, uint32_t tag, uint64_t e) {
    uint32_t b, w;
    b = (d->rng & 1) ? fq_dd_b1(x, tag) : fq_dd_b2(x, tag);
    for (int k = 0; k < FQ_DD_KICKS; k++) {       /* move a resident to its other bucket */
        d->rng ^= d->rng << 13; d->rng ^= d->rng >> 7; d->rng ^= d->rng << 17;
        uint64_t *slot = fq_dd_bucket(x, b) + (d->rng >> 62);
        uint64_t moved = *slot;
        *slot = e;
        e = moved;
        uint32_t t = (uint32_t)(e >> 32), a1 = fq_dd_b1(x, t);
        b = b == a1 ? fq_dd_b2(x, t) : a1;
        uint64_t *p = fq_dd_bucket(x, b);
        unsigned m = fq_dd_freemask(d, p);
        if (m) {
            p[__builtin_ctz(m)] = e;
            return 0;
        }
    }
    for (w = 0; w < x->stash_n; w++)              /* reuse a stale stash slot, else grow */
        if (!fq_dd_current(d, x->stash[w])) { x->stash[w] = e; return 0; }
    if (x->stash_n == x->stash_cap) {
        uint32_t cap = x->stash_cap ? x->stash_cap * 2 : 8;
        uint64_t *st = (uint64_t *)realloc(x->stash, (size_t)cap * 8);
        if (!st) return ENOMEM;
        x->stash = st;
        x->stash_cap = cap;
    }
    x->stash[x->stash_n++] = e;
    return 0;
}

static void fq_dd_index_free(fq_dd_index *x) {
    free(x->raw);
    free(x->stash);
    memset(x, 0, sizeof(*x));
}

/* Memory for the ring and the index. Their accesses are random over the whole window, so a
 * large window asks Linux for transparent huge pages: 2 MiB pages spare the TLB misses that
 * otherwise dominate (1M keys: 11 -> 14 M keys/s measured). free() releases either kind. */
static void *fq_dd_big_alloc(size_t bytes, int zero) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= (4u << 20)) {
        void *p = NULL;
        if (posix_memalign(&p, 2u << 20, bytes) != 0) return NULL;
        madvise(p, bytes, MADV_HUGEPAGE);         /* a hint: failure changes nothing */
        if (zero) memset(p, 0, bytes);
        return p;
    }
#endif
    return zero ? calloc(1, bytes) : malloc(bytes);
}

static int fq_dd_index_new(fq_dd_index *x, uint32_t nbuckets) {
    memset(x, 0, sizeof(*x));
    size_t bytes = (size_t)nbuckets * FQ_DD_WAYS * 8;
    x->raw = fq_dd_big_alloc(bytes + 64, 1);
    if (!x->raw) return ENOMEM;
    x->slots = (uint64_t *)(((uintptr_t)x->raw + 63) & ~(uintptr_t)63);
    x->nbuckets = nbuckets;
    return 0;
}

/* clear the slot at p (in a bucket or in the stash) */
static void fq_dd_unslot(fq_dedup *d, uint64_t *p) {
    fq_dd_index *x = &d->ix;
    if (x->stash_n && p >= x->stash && p < x->stash + x->stash_n) {
        *p = x->stash[--x->stash_n];
    } else {
        *p = 0;
    }
}

/* drop the oldest entry (its index slot goes stale by itself); returns 1 if it was live */
static inline int fq_dd_pop(fq_dedup *d) {
    uint32_t idx = d->head;
    int was_live = d->ring[idx].expires != FQ_DD_DEAD;
    d->live -= (uint32_t)was_live;
    if (d->exact) {
        uint32_t n;
        fq_dd_key(d, idx, &n);
        d->a_head = d->koff[idx] + 4 + n;
    }
    d->head = d->head + 1 == d->cap ? 0 : d->head + 1;
    d->head_seq++;
    d->used--;
    if (d->used == 0 && d->exact) d->a_head = d->a_tail;
    return was_live;
}

/* Move to time `now` (clamped so the clock never goes back) and expire what is due. */
static void fq_dd_advance(fq_dedup *d, double now) {
    if (now > d->now) d->now = now;
    while (d->used) {
        double e = d->ring[d->head].expires;
        if (e > d->now) break;
        if (fq_dd_pop(d)) d->expiries++;
    }
}

/* Rebuild the ring at capacity new_cap (dropping forgotten entries, renumbering from 1) and
 * the index to match. 0, or ENOMEM with nothing changed. */
static int fq_dd_relayout(fq_dedup *d, uint32_t new_cap) {
    uint32_t live_cap = new_cap < d->max_keys ? new_cap : (uint32_t)d->max_keys;
    uint32_t k, w = 0;
    fq_dedup nd = *d;                             /* the new layout, built beside the old */
    fq_dd_entry *ring = (fq_dd_entry *)fq_dd_big_alloc((size_t)new_cap * sizeof(fq_dd_entry), 0);
    int ix_rc = fq_dd_index_new(&nd.ix, fq_dd_buckets_for(live_cap));
    uint64_t *koff = NULL;
    unsigned char *arena = NULL;
    uint64_t a_cap = 0, a_tail = 0;
    if (d->exact) {
        uint64_t bytes = 0;
        for (k = 0; k < d->used; k++) {
            uint32_t idx = fq_dd_pos(d, k), n;
            if (d->ring[idx].expires == FQ_DD_DEAD) continue;
            fq_dd_key(d, idx, &n);
            bytes += 4 + (uint64_t)n;
        }
        a_cap = bytes * 2 + 256;
        koff = (uint64_t *)malloc((size_t)new_cap * sizeof(uint64_t));
        arena = (unsigned char *)malloc((size_t)a_cap);
    }
    if (!ring || ix_rc || (d->exact && (!koff || !arena))) {
        free(ring); free(koff); free(arena);
        fq_dd_index_free(&nd.ix);
        return ENOMEM;
    }
    nd.ring = ring; nd.koff = koff; nd.arena = arena; nd.cap = new_cap;
    nd.head = 0; nd.used = 0; nd.head_seq = 1;
    nd.a_cap = a_cap; nd.a_base = 0; nd.a_head = 0;
    for (k = 0; k < d->used; k++) {
        uint32_t idx = fq_dd_pos(d, k);
        if (d->ring[idx].expires == FQ_DD_DEAD) continue;
        ring[w] = d->ring[idx];
        if (d->exact) {
            uint32_t n;
            const unsigned char *key = fq_dd_key(d, idx, &n);
            koff[w] = a_tail;
            memcpy(arena + a_tail, key - 4, 4 + (size_t)n);
            a_tail += 4 + n;
        }
        nd.used = ++w;
        if (fq_dd_index_put(&nd, &nd.ix, fq_dd_tag(ring[w - 1].fp), w, NULL)) {
            free(ring); free(koff); free(arena);
            fq_dd_index_free(&nd.ix);
            return ENOMEM;
        }
    }
    nd.a_tail = a_tail;
    free(d->ring); free(d->koff); free(d->arena);
    fq_dd_index_free(&d->ix);
    *d = nd;
    return 0;
}

/* room in the arena for one more key of klen bytes */
static int fq_dd_arena_reserve(fq_dedup *d, size_t klen) {
    uint64_t need = 4 + (uint64_t)klen, live = d->a_tail - d->a_head;
    if (d->a_tail - d->a_base + need <= d->a_cap) return 0;
    if ((live + need) * 2 > d->a_cap) {                  /* grow: keep at least half free */
        uint64_t cap = (live + need) * 2 + 256;
        unsigned char *a = (unsigned char *)malloc((size_t)cap);
        if (!a) return ENOMEM;
        if (live) memcpy(a, d->arena + (d->a_head - d->a_base), (size_t)live);
        free(d->arena);
        d->arena = a; d->a_cap = cap;
    } else if (live) {                                   /* slide the live bytes to the front */
        memmove(d->arena, d->arena + (d->a_head - d->a_base), (size_t)live);
    }
    d->a_base = d->a_head;
    return 0;
}

static int fq_dd_init(fq_dedup *d, double ttl, uint64_t max_keys, int exact, uint64_t fp_mask) {
    memset(d, 0, sizeof(*d));
    d->ttl = ttl;
    d->max_keys = max_keys;
    d->exact = exact;
    d->fp_mask = fp_mask;
    d->cap_max = (uint32_t)(max_keys + max_keys / 16 + 1);
    d->head_seq = 1;
    d->now = -INFINITY;
    d->rng = 0x9E3779B97F4A7C15ull;
    return fq_dd_relayout(d, d->cap_max < 64 ? d->cap_max : 64);
}

static void fq_dd_free(fq_dedup *d) {
    free(d->ring); free(d->koff); free(d->arena);
    fq_dd_index_free(&d->ix);
    d->ring = NULL; d->koff = NULL; d->arena = NULL;
}

static int fq_dd_clear(fq_dedup *d) {
    d->used = 0; d->live = 0; d->head = 0;
    d->a_head = d->a_tail = d->a_base;
    return fq_dd_relayout(d, d->cap_max < 64 ? d->cap_max : 64);
}

/* Append a new entry (the caller checked it is absent; `at`: where the lookup found its
 * buckets, or NULL). 0 or ENOMEM (nothing changed). */
static int fq_dd_insert(fq_dedup *d, uint64_t fp, const void *key, size_t klen, double expires,
                        const fq_dd_where *at) {
    if (d->live == d->max_keys) {                        /* full: the oldest live entry goes */
        while (!fq_dd_pop(d)) {}
        d->evictions++;
    }
    if (d->used == d->cap) {                             /* grow, or squeeze out forgotten ones */
        uint64_t want = (uint64_t)d->cap * 2;
        int rc = fq_dd_relayout(d, want < d->cap_max ? (uint32_t)want : d->cap_max);
        if (rc) return rc;
        at = NULL;                                       /* a new index */
    } else if (d->head_seq + d->used >= FQ_DD_SEQ_LIMIT) {  /* renumber from 1 */
        int rc = fq_dd_relayout(d, d->cap);
        if (rc) return rc;
        at = NULL;
    }
    if (d->exact) {
        if (klen > 0xFFFFFFFFu) return EOVERFLOW;
        int rc = fq_dd_arena_reserve(d, klen);
        if (rc) return rc;
    }
    uint32_t idx = fq_dd_pos(d, d->used);
    uint32_t seq = d->head_seq + d->used;
    d->ring[idx].fp = fp;
    d->ring[idx].expires = expires;
    if (d->exact) {
        unsigned char *p = d->arena + (d->a_tail - d->a_base);
        fq_st32(p, (uint32_t)klen);
        memcpy(p + 4, key, klen);
        d->koff[idx] = d->a_tail;
        d->a_tail += 4 + klen;
    }
    d->used++;
    d->live++;
    if (fq_dd_index_put(d, &d->ix, fq_dd_tag(fp), seq, at)) {
        /* Out of memory growing the stash, and a resident lost its slot: forget the new key
         * and re-index the rest from the ring (best effort: this is OOM). */
        d->ring[idx].expires = FQ_DD_DEAD;
        d->live--;
        fq_dd_relayout(d, d->cap);
        return ENOMEM;
    }
    d->inserts++;
    return 0;
}

/* check-and-insert at the current time: 1 = seen within the window, 0 = new (now remembered),
 * negative = -errno (nothing changed) */
static inline int fq_dd_seen(fq_dedup *d, uint64_t fp, const void *key, size_t klen) {
    uint32_t idx;
    fq_dd_where at;
    fp &= d->fp_mask;
    if (fq_dd_find(d, fp, key, klen, &idx, &at)) {
        d->hits++;
        return 1;
    }
    double expires = d->now + d->ttl;
    if (expires != expires || expires == FQ_DD_DEAD) return -EINVAL;   /* no clock reading yet */
    at.m1 = fq_dd_freemask(d, at.p1);
    at.m2 = fq_dd_freemask(d, at.p2);
    int rc = fq_dd_insert(d, fp, key, klen, expires, &at);
    return rc ? -rc : 0;
}

/* fq_dd_seen over a batch (keys only in exact mode: kp/kl may be NULL otherwise), prefetching
 * the index slots a few keys ahead. Returns how many keys were done (n, or the index of the key
 * that failed with *err = errno). */
static size_t fq_dd_seen_many(fq_dedup *d, const uint64_t *fp, const unsigned char *const *kp,
                              const size_t *kl, size_t n, unsigned char *out, int *err) {
    for (size_t i = 0; i < n; i++) {
        if (i + FQ_DD_AHEAD < n) {                /* the buckets this key will probe */
            uint32_t t = fq_dd_tag(fp[i + FQ_DD_AHEAD] & d->fp_mask);
            __builtin_prefetch(fq_dd_bucket(&d->ix, fq_dd_b1(&d->ix, t)));
            __builtin_prefetch(fq_dd_bucket(&d->ix, fq_dd_b2(&d->ix, t)));
        }
        int r = fq_dd_seen(d, fp[i], kp ? kp[i] : NULL, kp ? kl[i] : 0);
        if (r < 0) {
            *err = -r;
            return i;
        }
        out[i] = (unsigned char)r;
    }
    return n;
}

static inline int fq_dd_contains(const fq_dedup *d, uint64_t fp, const void *key, size_t klen) {
    uint32_t idx;
    fq_dd_where at;
    return fq_dd_find(d, fp & d->fp_mask, key, klen, &idx, &at) != NULL;
}

static int fq_dd_forget(fq_dedup *d, uint64_t fp, const void *key, size_t klen) {
    uint32_t idx;
    fq_dd_where at;
    uint64_t *slot = fq_dd_find(d, fp & d->fp_mask, key, klen, &idx, &at);
    if (!slot) return 0;
    fq_dd_unslot(d, slot);
    d->ring[idx].expires = FQ_DD_DEAD;
    d->live--;
    while (d->used && d->ring[d->head].expires == FQ_DD_DEAD) fq_dd_pop(d);
    return 1;
}

static inline uint64_t fq_dd_memory(const fq_dedup *d) {
    return (uint64_t)d->cap * (sizeof(fq_dd_entry) + (d->exact ? 8 : 0)) +
           ((uint64_t)d->ix.nbuckets * FQ_DD_WAYS + d->ix.stash_cap) * 8 + d->a_cap;
}

/* ---- snapshots ------------------------------------------------------------------------------
 * Layout (little-endian, docs/hashing.md): a 96-byte header, `count` entries of
 * (fingerprint u64, remaining lifetime f64), in exact mode `count` keys of (u32 length, bytes),
 * and a CRC-32C of everything before it. Lifetimes are relative, so a snapshot is portable
 * across processes and reboots. */
#define FQ_DD_MAGIC "FQDEDUP\0"
#define FQ_DD_VERSION 1u
#define FQ_DD_HEADER 96u

static inline uint64_t fq_dd_f64_bits(double v) { uint64_t u; memcpy(&u, &v, 8); return u; }
static inline double fq_dd_bits_f64(uint64_t u) { double v; memcpy(&v, &u, 8); return v; }

static uint64_t fq_dd_snapshot_size(const fq_dedup *d) {
    uint64_t n = FQ_DD_HEADER + (uint64_t)d->live * 16 + 4;
    if (d->exact) {
        for (uint32_t k = 0; k < d->used; k++) {
            uint32_t idx = fq_dd_pos(d, k), len;
            if (d->ring[idx].expires == FQ_DD_DEAD) continue;
            fq_dd_key(d, idx, &len);
            n += 4 + (uint64_t)len;
        }
    }
    return n;
}

/* writes exactly fq_dd_snapshot_size(d) bytes */
static void fq_dd_snapshot(const fq_dedup *d, uint64_t seed, int64_t wall_ns, unsigned char *out) {
    unsigned char *p = out;
    memcpy(p, FQ_DD_MAGIC, 8);
    fq_st32(p + 8, FQ_DD_VERSION);
    fq_st32(p + 12, d->exact ? 1u : 0u);
    fq_st64(p + 16, seed);
    fq_st64(p + 24, d->fp_mask);
    fq_st64(p + 32, fq_dd_f64_bits(d->ttl));
    fq_st64(p + 40, d->max_keys);
    fq_st64(p + 48, d->live);
    fq_st64(p + 56, d->evictions);
    fq_st64(p + 64, d->expiries);
    fq_st64(p + 72, d->inserts);
    fq_st64(p + 80, d->hits);
    fq_st64(p + 88, (uint64_t)wall_ns);
    p += FQ_DD_HEADER;
    for (uint32_t k = 0; k < d->used; k++) {
        const fq_dd_entry *e = &d->ring[fq_dd_pos(d, k)];
        if (e->expires == FQ_DD_DEAD) continue;
        double rem = e->expires - d->now;            /* rounding may push it past ttl */
        rem = rem > d->ttl ? d->ttl : rem > 0 ? rem : 0.0;
        fq_st64(p, e->fp);
        fq_st64(p + 8, fq_dd_f64_bits(rem));
        p += 16;
    }
    if (d->exact) {
        for (uint32_t k = 0; k < d->used; k++) {
            uint32_t idx = fq_dd_pos(d, k), len;
            if (d->ring[idx].expires == FQ_DD_DEAD) continue;
            const unsigned char *key = fq_dd_key(d, idx, &len);
            memcpy(p, key - 4, 4 + (size_t)len);
            p += 4 + len;
        }
    }
    fq_st32(p, fq_crc32c(0, out, (size_t)(p - out)));
}

typedef struct {
    uint64_t seed, fp_mask, max_keys, count, evictions, expiries, inserts, hits;
    double ttl;
    int64_t wall_ns;
    int exact;
} fq_dd_header;

/* Validate a snapshot and read its header. 0, or the byte position of the first problem with
 * *why set (the position is >= 0; the snapshot is rejected as a whole). Pure: fuzzable. */
static int64_t fq_dd_check(const unsigned char *b, uint64_t len, fq_dd_header *h, const char **why) {
    uint64_t pos, k, need;
    *why = NULL;
    if (len < 8 || memcmp(b, FQ_DD_MAGIC, 8) != 0) { *why = "not a DedupWindow snapshot (bad magic)"; return 0; }
    if (len < FQ_DD_HEADER + 4) { *why = "truncated header"; return (int64_t)len; }
    if (fq_ld32(b + 8) != FQ_DD_VERSION) { *why = "unsupported snapshot version"; return 8; }
    uint32_t flags = fq_ld32(b + 12);
    if (flags > 1) { *why = "unknown flags"; return 12; }
    h->exact = (int)flags;
    h->seed = fq_ld64(b + 16);
    h->fp_mask = fq_ld64(b + 24);
    h->ttl = fq_dd_bits_f64(fq_ld64(b + 32));
    h->max_keys = fq_ld64(b + 40);
    h->count = fq_ld64(b + 48);
    h->evictions = fq_ld64(b + 56);
    h->expiries = fq_ld64(b + 64);
    h->inserts = fq_ld64(b + 72);
    h->hits = fq_ld64(b + 80);
    h->wall_ns = (int64_t)fq_ld64(b + 88);
    if (h->fp_mask == 0 || (h->fp_mask & (h->fp_mask + 1)) != 0) {   /* low k bits, k >= 1 */
        *why = "bad fingerprint mask"; return 24;
    }
    need = FQ_DD_HEADER + h->count * 16 + 4;
    if (h->count > FQ_DD_MAX_KEYS || need > len) {
        *why = "truncated: fewer entries than the header counts"; return (int64_t)(h->count > FQ_DD_MAX_KEYS ? 48 : len);
    }
    if (h->exact) {
        pos = FQ_DD_HEADER + h->count * 16;
        for (k = 0; k < h->count; k++) {
            if (pos + 4 > len - 4) { *why = "truncated key"; return (int64_t)pos; }
            pos += 4 + (uint64_t)fq_ld32(b + pos);
            if (pos > len - 4) { *why = "truncated key"; return (int64_t)(len - 4); }
        }
        need = pos + 4;
    }
    if (need != len) { *why = need < len ? "trailing bytes after the checksum" : "truncated"; return (int64_t)(need < len ? need : len); }
    if (fq_crc32c(0, b, (size_t)(len - 4)) != fq_ld32(b + len - 4)) { *why = "checksum mismatch"; return (int64_t)(len - 4); }
    /* checksummed, so what follows only rejects snapshots no DedupWindow writes */
    if (!(h->ttl > 0)) { *why = "ttl is not positive"; return 32; }
    if (h->max_keys < 1 || h->max_keys > FQ_DD_MAX_KEYS) { *why = "max_keys out of range"; return 40; }
    if (h->count > h->max_keys) { *why = "more entries than max_keys"; return 48; }
    double prev = 0.0;
    for (k = 0, pos = FQ_DD_HEADER; k < h->count; k++, pos += 16) {
        double rem = fq_dd_bits_f64(fq_ld64(b + pos + 8));
        if (!(rem >= prev && rem <= h->ttl)) { *why = "entry lifetime out of order or range"; return (int64_t)(pos + 8); }
        prev = rem;
    }
    return -1;
}

/* Load a checked snapshot into a freshly initialised d (same exact / fp_mask / ttl /
 * max_keys) at time `now`, aging every entry by `elapsed` seconds; entries already past their
 * lifetime are dropped. 0, ENOMEM, or EINVAL with *dup_pos and *why set (two equal keys, or in
 * exact mode a key stored under a fingerprint that is not its own). */
static int fq_dd_restore(fq_dedup *d, const unsigned char *b, const fq_dd_header *h, double now,
                         double elapsed, int64_t *dup_pos, const char **why) {
    uint64_t k, kpos = FQ_DD_HEADER + h->count * 16;
    fq_dd_advance(d, now);
    for (k = 0; k < h->count; k++) {
        const unsigned char *e = b + FQ_DD_HEADER + 16 * k;
        uint64_t fp = fq_ld64(e) & d->fp_mask;
        double rem = fq_dd_bits_f64(fq_ld64(e + 8)) - elapsed;
        const unsigned char *key = NULL;
        uint32_t klen = 0;
        if (h->exact) {
            klen = fq_ld32(b + kpos);
            key = b + kpos + 4;
            kpos += 4 + (uint64_t)klen;
        }
        if (h->exact && fp != (fq_xxh3_64(key, klen, h->seed) & d->fp_mask)) {
            *dup_pos = (int64_t)(FQ_DD_HEADER + 16 * k);      /* a key under a wrong fingerprint */
            *why = "a fingerprint does not match its key";
            return EINVAL;
        }
        if (!(rem > 0)) continue;
        uint32_t found;
        fq_dd_where at;
        if (fq_dd_find(d, fp, key, klen, &found, &at)) {
            *dup_pos = (int64_t)(FQ_DD_HEADER + 16 * k);
            *why = "a key appears twice";
            return EINVAL;
        }
        int rc = fq_dd_insert(d, fp, key, klen, d->now + rem, NULL);
        if (rc) return rc;
    }
    d->inserts = h->inserts;
    d->evictions = h->evictions;
    d->expiries = h->expiries;
    d->hits = h->hits;
    return 0;
}

#endif /* FQ_DEDUP_H */
