/* fq_ring.h - bounded multi-producer multi-consumer ring of pointers.
 *
 * Algorithm: Dmitry Vyukov's bounded MPMC queue (per-slot sequence numbers), written here
 * from its published description, with three changes:
 *
 *  1. Sequence numbers count in half-steps: slot for position p is FREE when seq == 2p and
 *     FULL when seq == 2p+1; the consumer frees it for the next lap with 2(p+capacity).
 *     This makes capacity 1 legal (plain Vyukov needs capacity >= 2: "full at p" and
 *     "free at p+1" would collide).
 *  2. Positions are 63-bit; bit 63 of the enqueue word is the CLOSED flag. close() sets it
 *     with one atomic OR, so "put succeeded" and "closed" are ordered by the same word:
 *     a taker that sees CLOSED and enq == deq knows no put can still land (no lost item).
 *     2p in 64-bit arithmetic wraps exactly when the 63-bit position wraps.
 *  3. Batch claims (claim_put/claim_get) move the position by k with one CAS, then fill or
 *     drain the k slots, waiting (briefly) on any slot whose previous owner is mid-copy.
 *
 * Blocking: an eventcount per direction (fq_park.h). A waiter arms it (seq_cst RMW setting
 * the SLEEPERS bit), re-checks the positions (seq_cst loads), then parks. A mover does its
 * position CAS (seq_cst) and then loads the eventcount (seq_cst). In the single total order
 * of seq_cst operations one of the two sees the other, so either the waiter sees the move
 * and does not sleep, or the mover sees SLEEPERS and wakes it.
 *
 * Items are opaque pointers; the Python layer stores owned PyObject references. Nothing
 * here touches Python, so it runs without the GIL and is shared verbatim with the pure-C
 * stress harness (tests/native/ring_harness.c).
 */
#ifndef FQ_RING_H
#define FQ_RING_H

#include "fq_atomic.h"          /* first: it sets _GNU_SOURCE before any system header */
#include "fq_park.h"
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define FQ_POS_MASK   UINT64_C(0x7fffffffffffffff)
#define FQ_CLOSED_BIT UINT64_C(0x8000000000000000)
#define FQ_RING_MAX_CAPACITY (UINT64_C(1) << 30)
#ifndef FQ_SPIN
#  define FQ_SPIN 128           /* pause-iterations before parking */
#endif
#define FQ_PAD(n) char _pad##n[64]

/* FQ_SERIALIZED_MOVERS: the extension defines it on GIL builds of CPython, where every call
 * that moves a position (puts, takes, close) holds the GIL. A claim is then a plain atomic
 * store instead of a CAS (the GIL's mutex orders movers among themselves), which saves the two
 * locked instructions of a put/get pair (~9 ns of ~40 measured). Waiters still spin and park
 * without the GIL, but arm the eventcount with it held (fq_ring_arm), so the hand-shake below
 * is ordered by the GIL too. Free-threaded builds and the pure-C harness leave it undefined
 * and get the lock-free CAS version, which is what TSan and the 3.13t suites check. */
#ifdef FQ_SERIALIZED_MOVERS
#  define FQ_CLAIM(word, expected, desired) (fq_store64((word), (desired), FQ_RELAXED), 1)
#else
#  define FQ_CLAIM(word, expected, desired) fq_cas64((word), (expected), (desired))
#endif

typedef struct {
    fq_atomic_u64 seq;          /* 2p: free for position p; 2p+1: holds the item of position p */
    void *item;                 /* written before seq is released, read after it is acquired */
} fq_slot;

typedef struct {
    FQ_PAD(0);
    fq_atomic_u64 enq;          /* next position to put (63 bits) | FQ_CLOSED_BIT */
    FQ_PAD(1);
    fq_atomic_u64 deq;          /* next position to take (63 bits) */
    FQ_PAD(2);
    fq_atomic_u32 ne_async;     /* asyncio waiters for "not empty" (managed by _core.pyx) */
    fq_atomic_u32 nf_async;     /* asyncio waiters for "not full" */
    FQ_PAD(3);
    fq_parker not_empty;
    FQ_PAD(4);
    fq_parker not_full;
    FQ_PAD(5);
    uint64_t capacity;          /* power of two, 1..FQ_RING_MAX_CAPACITY */
    uint64_t mask;              /* capacity - 1 */
    fq_slot *slots;
} fq_ring;

/* ---- lifecycle ---------------------------------------------------------------------- */

static inline uint64_t fq_ring_round_capacity(uint64_t n) {
    uint64_t c = 1;
    while (c < n) c <<= 1;
    return c;
}

/* capacity must be a power of two in 1..FQ_RING_MAX_CAPACITY (the caller checks);
 * `start` is the first position (tests start near the 63-bit wrap). NULL on ENOMEM. */
static inline fq_ring *fq_ring_new(uint64_t capacity, uint64_t start) {
    fq_ring *r = (fq_ring *)calloc(1, sizeof(fq_ring));
    if (!r) return NULL;
    r->slots = (fq_slot *)calloc((size_t)capacity, sizeof(fq_slot));
    if (!r->slots) { free(r); return NULL; }
    if (fq_parker_init(&r->not_empty)) { free(r->slots); free(r); return NULL; }
    if (fq_parker_init(&r->not_full)) { fq_parker_destroy(&r->not_empty); free(r->slots); free(r); return NULL; }
    r->capacity = capacity;
    r->mask = capacity - 1;
    start &= FQ_POS_MASK;
    for (uint64_t i = 0; i < capacity; i++) {
        uint64_t p = (start + ((i - start) & r->mask)) & FQ_POS_MASK;  /* first position using slot i */
        fq_store64(&r->slots[i].seq, p << 1, FQ_RELAXED);
    }
    fq_store64(&r->enq, start, FQ_RELAXED);
    fq_store64(&r->deq, start, FQ_RELAXED);
    return r;                   /* other threads get r through a synchronizing hand-off */
}

static inline void fq_ring_free(fq_ring *r) {
    if (!r) return;
    fq_parker_destroy(&r->not_empty);
    fq_parker_destroy(&r->not_full);
    free(r->slots);
    free(r);
}

/* ---- observers ------------------------------------------------------------------------ */

static inline int fq_ring_closed(fq_ring *r) { return (fq_load64(&r->enq, FQ_ACQUIRE) & FQ_CLOSED_BIT) != 0; }

/* items put and not yet taken (claimed-but-unfinished operations included), 0..capacity */
static inline uint64_t fq_ring_size(fq_ring *r) {
    for (;;) {
        uint64_t d = fq_load64(&r->deq, FQ_ACQUIRE);
        uint64_t e = fq_load64(&r->enq, FQ_ACQUIRE) & FQ_POS_MASK;
        uint64_t n = (e - d) & FQ_POS_MASK;
        if (n <= r->capacity) return n;      /* else deq moved between the loads: retry */
    }
}

/* ---- filling and draining a claimed position -------------------------------------- */

/* Store the item of claimed position p (waits while the slot's previous taker finishes). */
static inline void fq_ring_fill(fq_ring *r, uint64_t p, void *item) {
    p &= FQ_POS_MASK;
    fq_slot *s = &r->slots[p & r->mask];
    unsigned spins = 0;
    while (fq_load64(&s->seq, FQ_ACQUIRE) != (p << 1)) fq_backoff(&spins);
    s->item = item;
    fq_store64(&s->seq, (p << 1) + 1, FQ_RELEASE);
}

/* Take the item of claimed position p (waits while its producer finishes the copy). */
static inline void *fq_ring_take(fq_ring *r, uint64_t p) {
    p &= FQ_POS_MASK;
    fq_slot *s = &r->slots[p & r->mask];
    unsigned spins = 0;
    while (fq_load64(&s->seq, FQ_ACQUIRE) != (p << 1) + 1) fq_backoff(&spins);
    void *item = s->item;
    s->item = NULL;
    fq_store64(&s->seq, ((p + r->capacity) & FQ_POS_MASK) << 1, FQ_RELEASE);
    return item;
}

/* ---- single-item, non-blocking ------------------------------------------------------- */

/* The slot of `pos` is not ready: decide from the positions (see fq_ring_try_put). Returns
 * FQ_OK (put done), FQ_FULL, FQ_CLOSED, or -1 to retry the fast path from a fresh *pos. */
FQ_COLD int fq_ring_put_unready(fq_ring *r, void *item, uint64_t *pos) {
    uint64_t used = (*pos - fq_load64(&r->deq, FQ_ACQUIRE)) & FQ_POS_MASK;
    if (used == r->capacity) return FQ_FULL;
    if (used < r->capacity && FQ_CLAIM(&r->enq, pos, (*pos + 1) & FQ_POS_MASK)) {
        fq_ring_fill(r, *pos, item);                 /* waits out the taker's copy */
        return FQ_OK;
    }
    *pos = fq_load64(&r->enq, FQ_RELAXED);           /* stale, or lost the CAS: retry */
    return -1;
}

/* Put one item. FQ_OK / FQ_FULL / FQ_CLOSED. *wake is set non-zero when a taker may be
 * waiting (the caller then calls fq_ring_notify_not_empty and/or wakes asyncio waiters).
 *
 * Linearizable: when the slot is not free yet, the positions decide. FQ_FULL only if the
 * ring really holds capacity items; if instead a taker has claimed the slot's previous item
 * but not finished copying it out, we claim the position and wait for that copy (as the
 * batch paths do) rather than report a spurious FQ_FULL. */
FQ_HOT int fq_ring_try_put(fq_ring *r, void *item, int *wake) {
    uint64_t pos = fq_load64(&r->enq, FQ_RELAXED);
    for (;;) {
        if (pos & FQ_CLOSED_BIT) return FQ_CLOSED;
        fq_slot *s = &r->slots[pos & r->mask];
        uint64_t seq = fq_load64(&s->seq, FQ_ACQUIRE);
        int64_t dif = (int64_t)(seq - (pos << 1));
        if (dif == 0) {
            if (FQ_CLAIM(&r->enq, &pos, (pos + 1) & FQ_POS_MASK)) {
                s->item = item;
                fq_store64(&s->seq, (pos << 1) + 1, FQ_RELEASE);
                break;
            }
        } else if (dif < 0) {
            int rc = fq_ring_put_unready(r, item, &pos);
            if (rc == FQ_OK) break;
            if (rc != -1) return rc;
        } else {
            pos = fq_load64(&r->enq, FQ_RELAXED);
        }
    }
    *wake = fq_parker_armed(&r->not_empty) | (fq_load32(&r->ne_async, FQ_SEQ_CST) != 0);
    return FQ_OK;
}

/* The slot of `pos` holds no item yet: FQ_OK (taken), FQ_EMPTY, FQ_CLOSED, or -1 to retry. */
FQ_COLD int fq_ring_get_unready(fq_ring *r, void **out, uint64_t *pos) {
    uint64_t e = fq_load64(&r->enq, FQ_ACQUIRE);
    uint64_t avail = ((e & FQ_POS_MASK) - *pos) & FQ_POS_MASK;
    if (avail == 0) return (e & FQ_CLOSED_BIT) ? FQ_CLOSED : FQ_EMPTY;
    if (avail <= r->capacity && FQ_CLAIM(&r->deq, pos, (*pos + 1) & FQ_POS_MASK)) {
        *out = fq_ring_take(r, *pos);                /* waits out the putter's copy */
        return FQ_OK;
    }
    *pos = fq_load64(&r->deq, FQ_RELAXED);
    return -1;
}

/* Take one item into *out. FQ_OK / FQ_EMPTY / FQ_CLOSED (closed and drained).
 * Linearizable in the same way: FQ_EMPTY only if no put has claimed the position; a put that
 * claimed it but is still copying is waited for. */
FQ_HOT int fq_ring_try_get(fq_ring *r, void **out, int *wake) {
    uint64_t pos = fq_load64(&r->deq, FQ_RELAXED);
    for (;;) {
        fq_slot *s = &r->slots[pos & r->mask];
        uint64_t seq = fq_load64(&s->seq, FQ_ACQUIRE);
        int64_t dif = (int64_t)(seq - ((pos << 1) + 1));
        if (dif == 0) {
            if (FQ_CLAIM(&r->deq, &pos, (pos + 1) & FQ_POS_MASK)) {
                *out = s->item;
                s->item = NULL;
                fq_store64(&s->seq, ((pos + r->capacity) & FQ_POS_MASK) << 1, FQ_RELEASE);
                break;
            }
        } else if (dif < 0) {
            int rc = fq_ring_get_unready(r, out, &pos);
            if (rc == FQ_OK) break;
            if (rc != -1) return rc;
        } else {
            pos = fq_load64(&r->deq, FQ_RELAXED);
        }
    }
    *wake = fq_parker_armed(&r->not_full) | (fq_load32(&r->nf_async, FQ_SEQ_CST) != 0);
    return FQ_OK;
}

/* ---- batches: claim k positions with one CAS, then fill/drain them ------------------- */

/* Claim up to n put positions. Returns k (0 when full) and the first position in *first;
 * returns 0 with *closed=1 when closed. The caller must fq_ring_fill() every claimed
 * position, in any order, promptly. */
static inline uint64_t fq_ring_claim_put(fq_ring *r, uint64_t n, uint64_t *first, int *closed) {
    uint64_t pos = fq_load64(&r->enq, FQ_RELAXED);
    *closed = 0;
    for (;;) {
        if (pos & FQ_CLOSED_BIT) { *closed = 1; return 0; }
        uint64_t d = fq_load64(&r->deq, FQ_ACQUIRE);
        uint64_t used = (pos - d) & FQ_POS_MASK;
        if (used > r->capacity) { pos = fq_load64(&r->enq, FQ_RELAXED); continue; }  /* stale pos */
        uint64_t k = r->capacity - used;
        if (k == 0) return 0;
        if (k > n) k = n;
        if (FQ_CLAIM(&r->enq, &pos, (pos + k) & FQ_POS_MASK)) { *first = pos; return k; }
    }
}

/* Claim up to n take positions. Returns k (0 when empty; *closed=1 when also closed). */
static inline uint64_t fq_ring_claim_get(fq_ring *r, uint64_t n, uint64_t *first, int *closed) {
    uint64_t pos = fq_load64(&r->deq, FQ_RELAXED);
    *closed = 0;
    for (;;) {
        uint64_t e = fq_load64(&r->enq, FQ_ACQUIRE);
        uint64_t k = ((e & FQ_POS_MASK) - pos) & FQ_POS_MASK;
        if (k > r->capacity) { pos = fq_load64(&r->deq, FQ_RELAXED); continue; }  /* stale pos */
        if (k == 0) { *closed = (e & FQ_CLOSED_BIT) != 0; return 0; }
        if (k > n) k = n;
        if (FQ_CLAIM(&r->deq, &pos, (pos + k) & FQ_POS_MASK)) { *first = pos; return k; }
    }
}

/* After a batch: is anyone waiting on the other side? */
static inline int fq_ring_takers_waiting(fq_ring *r) {
    return fq_parker_armed(&r->not_empty) | (fq_load32(&r->ne_async, FQ_SEQ_CST) != 0);
}
static inline int fq_ring_putters_waiting(fq_ring *r) {
    return fq_parker_armed(&r->not_full) | (fq_load32(&r->nf_async, FQ_SEQ_CST) != 0);
}

/* asyncio waiters are kept by _core.pyx; it keeps these counts so movers see them */
static inline void fq_ring_async_add(fq_ring *r, int for_put, int delta) {
    fq_add32(for_put ? &r->nf_async : &r->ne_async, (uint32_t)delta, FQ_SEQ_CST);
}

/* ---- waking and waiting -------------------------------------------------------------- */

/* Wake the threads parked for "not empty" / "not full", if any (one syscall per round of
 * sleeping: the first caller clears SLEEPERS, later callers return at once). Every woken
 * thread re-checks the ring and parks again if it lost the race. */
static inline void fq_ring_notify_not_empty(fq_ring *r) { fq_parker_wake_all(&r->not_empty); }
static inline void fq_ring_notify_not_full(fq_ring *r) { fq_parker_wake_all(&r->not_full); }

/* The re-checks a registered waiter does before parking (seq_cst: see the header comment).
 * "Looks empty" is false when closed, so closing wakes everyone into a re-check. */
static inline int fq_ring_looks_empty(fq_ring *r) {
    uint64_t e = fq_load64(&r->enq, FQ_SEQ_CST);
    if (e & FQ_CLOSED_BIT) return 0;
    return (e & FQ_POS_MASK) == fq_load64(&r->deq, FQ_SEQ_CST);
}
static inline int fq_ring_looks_full(fq_ring *r) {
    uint64_t d = fq_load64(&r->deq, FQ_SEQ_CST);
    uint64_t e = fq_load64(&r->enq, FQ_SEQ_CST);
    if (e & FQ_CLOSED_BIT) return 0;
    return ((e - d) & FQ_POS_MASK) >= r->capacity;
}

/* Waiting is three steps, so that a caller holding a lock (the GIL) can drop it for the
 * first and the last:
 *   fq_ring_spin  (no lock)   spin briefly; 1 if the ring stopped looking full/empty
 *   fq_ring_arm   (lock held in FQ_SERIALIZED_MOVERS mode) announce a sleeper; returns the
 *                 word to park on; then re-check with fq_ring_looks_blocked
 *   fq_ring_park  (no lock)   sleep until woken, the deadline, or a signal */
static inline int fq_ring_looks_blocked(fq_ring *r, int for_put) {
    return for_put ? fq_ring_looks_full(r) : fq_ring_looks_empty(r);
}
static inline int fq_ring_spin(fq_ring *r, int for_put) {
    for (int i = 0; i < FQ_SPIN; i++) {
        if (!fq_ring_looks_blocked(r, for_put)) return 1;
        fq_cpu_relax();
    }
    return 0;
}
static inline uint32_t fq_ring_arm(fq_ring *r, int for_put) {
    return fq_parker_arm(for_put ? &r->not_full : &r->not_empty);
}
static inline int fq_ring_park(fq_ring *r, int for_put, uint32_t armed, int64_t deadline) {
    return fq_parker_wait(for_put ? &r->not_full : &r->not_empty, armed, deadline);
}

#ifndef FQ_SERIALIZED_MOVERS
/* Lock-free mode only: the whole wait, and blocking put/get loops, with no lock at all. */

/* Spin briefly, then park until the ring may have changed, or the deadline passes.
 * Returns FQ_OK (re-check), FQ_TIMEOUT or FQ_INTR. */
static inline int fq_ring_wait(fq_ring *r, int for_put, int64_t deadline) {
    if (fq_ring_spin(r, for_put)) return FQ_OK;
    if (deadline != FQ_NO_DEADLINE && fq_now_ns() >= deadline) return FQ_TIMEOUT;
    uint32_t e = fq_ring_arm(r, for_put);
    if (!fq_ring_looks_blocked(r, for_put)) return FQ_OK;
    return fq_ring_park(r, for_put, e, deadline);
}

/* Blocking put/get loops: FQ_OK, FQ_CLOSED, FQ_TIMEOUT or FQ_INTR.
 * On FQ_OK the item moved; the caller still handles *wake. */
static inline int fq_ring_put_wait(fq_ring *r, void *item, int64_t deadline, int *wake) {
    for (;;) {
        int rc = fq_ring_try_put(r, item, wake);
        if (rc != FQ_FULL) return rc;
        rc = fq_ring_wait(r, 1, deadline);
        if (rc == FQ_TIMEOUT) {
            rc = fq_ring_try_put(r, item, wake);             /* one last look */
            return rc == FQ_FULL ? FQ_TIMEOUT : rc;
        }
        if (rc == FQ_INTR) return FQ_INTR;
    }
}

static inline int fq_ring_get_wait(fq_ring *r, void **out, int64_t deadline, int *wake) {
    for (;;) {
        int rc = fq_ring_try_get(r, out, wake);
        if (rc != FQ_EMPTY) return rc;
        rc = fq_ring_wait(r, 0, deadline);
        if (rc == FQ_TIMEOUT) {
            rc = fq_ring_try_get(r, out, wake);
            return rc == FQ_EMPTY ? FQ_TIMEOUT : rc;
        }
        if (rc == FQ_INTR) return FQ_INTR;
    }
}
#endif /* !FQ_SERIALIZED_MOVERS */

/* Close: later puts fail with FQ_CLOSED; takers drain, then get FQ_CLOSED. Wakes every
 * parked thread. Returns 1 if this call closed the ring, 0 if it was already closed. */
static inline int fq_ring_close(fq_ring *r) {
    uint64_t old = fq_fetch_or64(&r->enq, FQ_CLOSED_BIT, FQ_SEQ_CST);
    fq_parker_wake_all(&r->not_empty);
    fq_parker_wake_all(&r->not_full);
    return (old & FQ_CLOSED_BIT) == 0;
}

#endif /* FQ_RING_H */
