/* ring_harness.c - pure-C pthread stress harness for src/fastq/_c/fq_ring.h (TESTING.md R6).
 *
 * The header is included verbatim (the same bytes the extension compiles), so what runs
 * here - plain and under -fsanitize=thread - is the ring the Python layer uses.
 *
 *   ring_harness OPS_PER_CONFIG SEED [options]
 *
 * Three parts, all on by default:
 *
 *  stress   For every API mode (single / batch / mixed) and every configuration
 *           {1P1C, 2P2C, 4P4C} x capacity {1, 2, 3->4, 64, 1024}, plus 2P2C cap 64 started
 *           at position 0 (16 per mode; capacity 3 is rounded up by fq_ring_round_capacity
 *           and printed as "3->4"): producers put OPS_PER_CONFIG items in total, then the
 *           main thread closes the ring, and consumers drain until FQ_CLOSED.
 *           A configuration runs as segments of doubling size (2^14, 2^15, ... up to 2^24
 *           items), each a fresh ring; --config-sec caps a configuration's time (the last
 *           segment is sized to fit), so slow rings (capacity 1: one park/wake round trip
 *           per item) stay within a budget. Each segment starts its positions at
 *           2^63 - min(10^6, n/2), so every segment crosses the 63-bit wrap (F16); the
 *           eventcount words start just below 2^32 so their wrap is crossed as well.
 *           API mode single: put_wait/get_wait; batch: claim + fill/take in random order,
 *           fq_ring_wait when full/empty; mixed: per op a random pick of blocking, polling
 *           try_put/try_get, short-deadline waits (retried on FQ_TIMEOUT) and batches.
 *           Items are pointers to {producer, seq, a = seq+13, b = seq-7} structs in
 *           per-producer pools; a consumer checks a and b (a torn or stale slot shows up as
 *           a mismatch: the struct is reused every POOL_SIZE items), records seq in its own
 *           bitmap, and checks that seq strictly increases per (consumer, producer). After
 *           the run the bitmaps are merged: lost = never seen, dup = seen twice. 1P1C also
 *           checks total FIFO (the k-th item received is seq k). The final enq/deq positions
 *           must equal start + ops (mod 2^63) with the closed bit set.
 *  litmus   jcstress-style, 1P1C, N iterations each (--litmus N, default 10^6; half of them
 *           at each of two capacities: MP at 1 and 4, PO at 2 and 4):
 *           MP  - payload written with plain stores before put is seen after get;
 *           PO  - a producer claims two positions and publishes the second before the first
 *                 (fill(p+1) then fill(p), with a random spin between); a polling consumer
 *                 must never observe item p+1 before item p.
 *  close    Threads blocked in get_wait / batch-wait on an empty ring, and in put_wait /
 *           batch-wait on a full ring, must all return FQ_CLOSED within --close-bound-ms of
 *           close(); the full ring then drains its items in order and reports FQ_CLOSED.
 *           Timed waits on an empty/full ring return FQ_TIMEOUT no earlier than the deadline.
 *
 * Delay injection (F18 technique, without touching the header): with probability
 * 1/--spin (default 64) a thread busy-waits a random 0..10 us at the claim/publish points
 * the harness controls: before each put/get, between a batch claim and its fills/takes,
 * and between two fills/takes of a batch.
 *
 * Blocking calls use FQ_NO_DEADLINE, so a lost wake-up is a hang. The main thread watches
 * per-thread progress counters and fails the run (exit 3, with a dump of the ring state)
 * when nothing moves for --stall-sec seconds.
 *
 * Replay: same SEED (the per-thread xorshift streams derive from it; thread interleavings
 * of course do not replay), and --mode/--topo/--cap to run just the failing configuration.
 *
 * Output: one line per configuration
 *   stress mode=batch cfg=2P2C cap=3->4 start=0x7ffff... ops=N segments=K lost=0 dup=0 reorder=0
 *          fifo=0 torn=0 status=0 pos=ok wrap=yes wakes=W seconds=S OK
 * (wakes: eventcount generations, i.e. rounds of parked threads woken - shows parking happened)
 * then "RESULT: PASS" (exit 0) or "RESULT: FAIL" (exit 1). Exit 2: usage error,
 * 3: stall (lost wake-up or deadlock suspected), 4: out of memory.
 *
 * Fault injection, to prove the checker can fail (tests/native/test_ring_harness.py):
 * compile with -DFQ_HARNESS_BREAK=k:
 *   1 loss     consumers silently drop every 1000th item they receive
 *   2 dup      consumers record every 1000th item twice
 *   3 reorder  consumers record every 1000th item after the one that follows it
 *   4 torn     consumers see field b of every 1000th item off by one
 *   5 publish  a real ordering bug: the batch fill is replaced by a harness-local copy that
 *              publishes seq before writing the item pointer (JCTools#71 / F17-F18 shape);
 *              consumers then read NULL/stale pointers, and TSan reports the data race.
 *   6 nowake   producers skip the wake-up call after every 100th put that asked for one
 *              (a lost wake-up): a taker parks forever and the stall watchdog must fire.
 * Modes 1-4 simulate what a broken ring would look like to the checker; modes 5 and 6 break
 * the ring protocol itself (5 through fill: batch and mixed modes, and the PO litmus).
 */
#define _GNU_SOURCE                 /* fq_park.h uses syscall(2) and clock_gettime */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fq_ring.h"

#ifndef FQ_HARNESS_BREAK
#  define FQ_HARNESS_BREAK 0
#endif
#define BREAK_LOSS 1
#define BREAK_DUP 2
#define BREAK_REORDER 3
#define BREAK_TORN 4
#define BREAK_PUBLISH 5
#define BREAK_NOWAKE 6
#define BREAK_EVERY 1000

#define MAX_THREADS 4                       /* per side */
#define POOL_SIZE 4096u                     /* item structs per producer (power of two) */
#define POOL_MASK (POOL_SIZE - 1)
#define MAX_BATCH 16
#define FIRST_SEGMENT (UINT64_C(1) << 14)   /* a configuration runs in segments of doubling size */
#define SEGMENT_OPS (UINT64_C(1) << 24)     /* ... up to this (bounds the checker's bitmap memory) */
#define NEAR_WRAP_DIST UINT64_C(1000000)    /* start = 2^63 - min(10^6, ops/2) */
#define EPOCH_START 0xffffff00u             /* eventcount words start just below their 2^32 wrap */
#define NO_SEQ UINT64_MAX

enum { EXIT_PASS = 0, EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_STALL = 3, EXIT_NOMEM = 4 };
enum { MODE_SINGLE, MODE_BATCH, MODE_MIXED, N_MODES };
static const char *const mode_names[N_MODES] = {"single", "batch", "mixed"};

/* ---- options ------------------------------------------------------------------------- */

static struct {
    uint64_t ops;               /* items per stress configuration (the target) */
    int64_t config_ns;          /* time budget per configuration; 0 = none */
    uint64_t seed;
    int modes[N_MODES];         /* which API modes to run */
    unsigned spin_every;        /* 1/N chance of a 0..10 us spin at each injection point; 0 = off */
    uint64_t litmus_iters;
    int close_rounds;
    int64_t close_bound_ns;
    int64_t stall_ns;
    int run_stress, run_litmus, run_close;
    int only_np;                /* --topo P: only configurations with P producers/consumers (0: all) */
    uint64_t only_cap;          /* --cap N: only configurations of requested capacity N (0: all) */
} opt;

/* ---- small utilities ----------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* per-thread xorshift64*, seeded from (SEED, purpose, index) via splitmix64 */
typedef struct { uint64_t s; } rng_t;
static rng_t rng_make(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = opt.seed ^ (a * UINT64_C(0x100000001b3)) ^ (b << 32) ^ c;
    rng_t r = {splitmix64(&x) | 1};
    return r;
}
static uint64_t rng_next(rng_t *r) {
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * UINT64_C(0x2545f4914f6cdd1d);
}
static uint64_t rng_below(rng_t *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

/* F18 delay injection: sometimes busy-wait 0..10 us (not sleep: keep the thread running) */
static void jitter(rng_t *r) {
    if (opt.spin_every == 0 || rng_below(r, opt.spin_every) != 0) return;
    int64_t until = fq_now_ns() + (int64_t)rng_below(r, 10001);
    while (fq_now_ns() < until) fq_cpu_relax();
}

static void sleep_ns(int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    nanosleep(&ts, NULL);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) { fprintf(stderr, "ring_harness: out of memory\n"); exit(EXIT_NOMEM); }
    return p;
}

static fq_ring *new_ring(uint64_t capacity, uint64_t start) {
    fq_ring *r = fq_ring_new(capacity, start);
    if (!r) { fprintf(stderr, "ring_harness: fq_ring_new failed\n"); exit(EXIT_NOMEM); }
    /* exercise the 32-bit eventcount wrap too (only equality is ever compared) */
    fq_store32(&r->not_empty.epoch, EPOCH_START, FQ_RELAXED);
    fq_store32(&r->not_full.epoch, EPOCH_START, FQ_RELAXED);
    return r;
}

/* Wake-up rounds since new_ring(): the eventcount word is (generation << 1) | SLEEPERS and
 * every wake_all that found sleepers starts a new generation (diagnostic only). */
static uint64_t wake_rounds(fq_parker *pk) {
    return (uint32_t)((fq_load32(&pk->epoch, FQ_RELAXED) & ~1u) - EPOCH_START) >> 1;
}

static void dump_ring(const char *what, fq_ring *r) {
    uint64_t e = fq_load64(&r->enq, FQ_SEQ_CST), d = fq_load64(&r->deq, FQ_SEQ_CST);
    fprintf(stderr, "ring_harness: STALL in %s: no progress for %.1f s\n"
            "  enq=0x%016" PRIx64 " (closed=%d) deq=0x%016" PRIx64 " size=%" PRIu64 " cap=%" PRIu64 "\n"
            "  not_empty.epoch=0x%08x not_full.epoch=0x%08x (bit 0: sleepers armed)\n",
            what, (double)opt.stall_ns / 1e9, e & FQ_POS_MASK, (e & FQ_CLOSED_BIT) != 0, d,
            ((e & FQ_POS_MASK) - d) & FQ_POS_MASK, r->capacity,
            fq_load32(&r->not_empty.epoch, FQ_SEQ_CST), fq_load32(&r->not_full.epoch, FQ_SEQ_CST));
    for (uint64_t i = 0; i < r->capacity && i < 8; i++)
        fprintf(stderr, "  slot[%" PRIu64 "].seq=0x%016" PRIx64 "\n", i, fq_load64(&r->slots[i].seq, FQ_SEQ_CST));
}

/* ---- the ring operations, with the caller duties of the header's contract ------------ */

/* Fill claimed position p. FQ_HARNESS_BREAK=5 swaps in a copy with the bug "publish the
 * slot before writing the item", to show the checker (and TSan) catch that shape. */
static void fill(fq_ring *r, uint64_t p, void *item, rng_t *g) {
#if FQ_HARNESS_BREAK == BREAK_PUBLISH
    p &= FQ_POS_MASK;
    fq_slot *s = &r->slots[p & r->mask];
    unsigned spins = 0;
    while (fq_load64(&s->seq, FQ_ACQUIRE) != (p << 1)) fq_backoff(&spins);
    fq_store64(&s->seq, (p << 1) + 1, FQ_RELEASE);           /* BUG: published too early */
    int64_t until = fq_now_ns() + 2000 + (int64_t)rng_below(g, 8000);
    while (fq_now_ns() < until) fq_cpu_relax();
    s->item = item;
#else
    (void)g;
    fq_ring_fill(r, p, item);
#endif
}

/* The put side's wake-up duty. FQ_HARNESS_BREAK=6 "forgets" every 100th one. */
static void wake_takers(fq_ring *r) {
#if FQ_HARNESS_BREAK == BREAK_NOWAKE
    static _Thread_local unsigned calls;
    if (++calls % 100 == 0) return;
#endif
    fq_ring_notify_not_empty(r);
}

/* a full put with the single-item blocking API */
static int put_blocking(fq_ring *r, void *item, int64_t deadline) {
    int wake = 0;
    int rc = fq_ring_put_wait(r, item, deadline, &wake);
    if (rc == FQ_OK && wake) wake_takers(r);
    return rc;
}

static int get_blocking(fq_ring *r, void **out, int64_t deadline) {
    int wake = 0;
    int rc = fq_ring_get_wait(r, out, deadline, &wake);
    if (rc == FQ_OK && wake) fq_ring_notify_not_full(r);
    return rc;
}

/* non-blocking API in a polling loop (pause, then yield: we may be oversubscribed) */
static int put_polling(fq_ring *r, void *item) {
    int wake = 0, rc;
    unsigned spins = 0;
    while ((rc = fq_ring_try_put(r, item, &wake)) == FQ_FULL) fq_backoff(&spins);
    if (rc == FQ_OK && wake) wake_takers(r);
    return rc;
}

static int get_polling(fq_ring *r, void **out) {
    int wake = 0, rc;
    unsigned spins = 0;
    while ((rc = fq_ring_try_get(r, out, &wake)) == FQ_EMPTY) fq_backoff(&spins);
    if (rc == FQ_OK && wake) fq_ring_notify_not_full(r);
    return rc;
}

/* Batch put of up to n items: claim, fill in a random order (the header allows any order),
 * wake takers. Blocks (fq_ring_wait) while full. Returns the count put, 0 if closed. */
static uint64_t put_batch(fq_ring *r, void *const *items, uint64_t n, rng_t *g) {
    for (;;) {
        uint64_t first; int closed;
        uint64_t k = fq_ring_claim_put(r, n, &first, &closed);
        if (closed) return 0;
        if (k == 0) { (void)fq_ring_wait(r, 1, FQ_NO_DEADLINE); continue; }
        unsigned order[MAX_BATCH];
        for (unsigned j = 0; j < k; j++) order[j] = j;
        uint64_t how = rng_below(g, 3);                        /* 0 in order, 1 reverse, 2 shuffled */
        for (unsigned j = 0; j < k; j++) {
            if (how == 1) order[j] = (unsigned)(k - 1 - j);
            else if (how == 2) { unsigned x = (unsigned)rng_below(g, j + 1); order[j] = order[x]; order[x] = j; }
        }
        for (unsigned j = 0; j < k; j++) {
            jitter(g);                                          /* between claim/fills and publish */
            fill(r, first + order[j], items[order[j]], g);
        }
        if (fq_ring_takers_waiting(r)) wake_takers(r);
        return k;
    }
}

/* Batch get of up to n items into out[] (in position order; taken in a random order).
 * Blocks while empty. Returns the count, 0 when closed and drained. */
static uint64_t get_batch(fq_ring *r, void **out, uint64_t n, rng_t *g) {
    for (;;) {
        uint64_t first; int closed;
        uint64_t k = fq_ring_claim_get(r, n, &first, &closed);
        if (k == 0) {
            if (closed) return 0;
            (void)fq_ring_wait(r, 0, FQ_NO_DEADLINE);
            continue;
        }
        int reverse = (int)rng_below(g, 2);
        for (uint64_t j = 0; j < k; j++) {
            uint64_t i = reverse ? k - 1 - j : j;
            jitter(g);
            out[i] = fq_ring_take(r, first + i);
        }
        if (fq_ring_putters_waiting(r)) fq_ring_notify_not_full(r);
        return k;
    }
}

/* ---- stress: shared state ------------------------------------------------------------- */

typedef struct {
    _Atomic uint32_t busy;      /* 1 from production until a consumer has read it (reuse guard) */
    uint32_t producer;
    uint64_t seq, a, b;         /* a = seq + 13, b = seq - 7: a torn/stale read breaks them */
} item_t;

typedef struct run run_t;

typedef struct {
    _Alignas(64) run_t *run;
    int id;
    rng_t rng;
    _Atomic uint64_t progress;  /* items moved, for the stall watchdog */
    uint64_t bad_status;        /* unexpected return codes (e.g. FQ_CLOSED while producing) */
    /* producer */
    uint64_t n, prepared;
    /* consumer */
    uint64_t *bits[MAX_THREADS];/* per-producer bitmap of seqs received by this consumer */
    uint64_t last[MAX_THREADS]; /* last seq received from each producer (NO_SEQ: none) */
    uint64_t received, dup, reorder, fifo, torn;
#if FQ_HARNESS_BREAK == BREAK_REORDER
    int held; uint32_t held_p; uint64_t held_seq;
#endif
    char _pad[64];
} worker_t;

struct run {
    fq_ring *r;
    int np, nc, mode;
    item_t *pool[MAX_THREADS];
    uint64_t n[MAX_THREADS];
    worker_t prod[MAX_THREADS], cons[MAX_THREADS];
    _Atomic int producers_done, consumers_done;
};

/* ---- producer ------------------------------------------------------------------------- */

/* Make item `seq` ready (its pool entry is reused every POOL_SIZE seqs: wait until the
 * consumer of seq - POOL_SIZE has read it). Items are prepared before any claim, never
 * while holding claimed positions, so this wait cannot close a cycle with a taker. */
static item_t *prepare(worker_t *w, uint64_t seq) {
    item_t *it = &w->run->pool[w->id][seq & POOL_MASK];
    if (seq < w->prepared) return it;
    unsigned spins = 0;
    while (atomic_load_explicit(&it->busy, memory_order_acquire)) fq_backoff(&spins);
    it->producer = (uint32_t)w->id;
    it->seq = seq;
    it->a = seq + 13;
    it->b = seq - 7;
    atomic_store_explicit(&it->busy, 1, memory_order_relaxed);
    w->prepared = seq + 1;
    return it;
}

static void *producer_main(void *arg) {
    worker_t *w = arg;
    run_t *run = w->run;
    fq_ring *r = run->r;
    uint64_t seq = 0;
    while (seq < w->n) {
        int op = run->mode == MODE_SINGLE ? 0 : run->mode == MODE_BATCH ? 3 : (int)rng_below(&w->rng, 4);
        int rc = FQ_OK;
        jitter(&w->rng);
        if (op == 3) {                                          /* batch */
            uint64_t want = 1 + rng_below(&w->rng, MAX_BATCH);
            if (want > w->n - seq) want = w->n - seq;
            void *items[MAX_BATCH];
            for (uint64_t j = 0; j < want; j++) items[j] = prepare(w, seq + j);
            uint64_t k = put_batch(r, items, want, &w->rng);
            if (k == 0) rc = FQ_CLOSED;
            seq += k;
        } else {
            void *item = prepare(w, seq);
            if (op == 0) rc = put_blocking(r, item, FQ_NO_DEADLINE);
            else if (op == 1) rc = put_polling(r, item);
            else {                                              /* short deadline, retried */
                while ((rc = put_blocking(r, item, fq_now_ns() + (int64_t)rng_below(&w->rng, 50000))) == FQ_TIMEOUT) {}
            }
            if (rc == FQ_OK) seq++;
        }
        if (rc != FQ_OK) { w->bad_status++; break; }           /* closed before we finished */
        atomic_store_explicit(&w->progress, seq, memory_order_relaxed);
    }
    atomic_fetch_add(&run->producers_done, 1);
    return NULL;
}

/* ---- consumer and checker ------------------------------------------------------------- */

static void note(worker_t *c, uint32_t p, uint64_t seq) {
    uint64_t *word = &c->bits[p][seq >> 6], bit = UINT64_C(1) << (seq & 63);
    if (*word & bit) { c->dup++; return; }                   /* this consumer saw it before */
    *word |= bit;
    uint64_t last = c->last[p];
    if (last != NO_SEQ && seq < last) c->reorder++;          /* per-producer FIFO at this consumer */
    if (c->run->np == 1 && c->run->nc == 1 && seq != last + 1) c->fifo++;  /* SPSC: exactly 0,1,2,... (NO_SEQ+1 == 0) */
    c->last[p] = seq;
}

/* Check one received pointer: it must point at an item struct of some producer's pool,
 * whose fields are consistent with each other and with its place in the pool. */
static void consume(worker_t *c, void *ptr) {
    run_t *run = c->run;
    c->received++;
    uint32_t p = 0;
    uintptr_t u = (uintptr_t)ptr, idx = 0;
    for (; p < (uint32_t)run->np; p++) {
        uintptr_t base = (uintptr_t)run->pool[p];
        if (u >= base && u < base + POOL_SIZE * sizeof(item_t) && (u - base) % sizeof(item_t) == 0) {
            idx = (u - base) / sizeof(item_t);
            break;
        }
    }
    if (p == (uint32_t)run->np) { c->torn++; return; }       /* NULL or a wild pointer */
    item_t *it = ptr;
    uint32_t prod = it->producer;
    uint64_t seq = it->seq, a = it->a, b = it->b;
    atomic_store_explicit(&it->busy, 0, memory_order_release);  /* the producer may reuse it */
#if FQ_HARNESS_BREAK == BREAK_TORN
    if (c->received % BREAK_EVERY == 0) b += 1;
#elif FQ_HARNESS_BREAK == BREAK_LOSS
    if (c->received % BREAK_EVERY == 0) return;
#endif
    if (prod != p || seq >= run->n[p] || (seq & POOL_MASK) != idx || a != seq + 13 || b != seq - 7) {
        c->torn++;
        return;
    }
#if FQ_HARNESS_BREAK == BREAK_REORDER
    /* hold this item back until the next one from the same producer has been recorded */
    if (!c->held && c->received % BREAK_EVERY == 0) { c->held = 1; c->held_p = p; c->held_seq = seq; return; }
    note(c, p, seq);
    if (c->held && c->held_p == p) { c->held = 0; note(c, c->held_p, c->held_seq); }
#else
    note(c, p, seq);
#endif
#if FQ_HARNESS_BREAK == BREAK_DUP
    if (c->received % BREAK_EVERY == 0) note(c, p, seq);
#endif
}

static void *consumer_main(void *arg) {
    worker_t *c = arg;
    run_t *run = c->run;
    fq_ring *r = run->r;
    for (;;) {
        int op = run->mode == MODE_SINGLE ? 0 : run->mode == MODE_BATCH ? 3 : (int)rng_below(&c->rng, 4);
        jitter(&c->rng);
        if (op == 3) {
            void *out[MAX_BATCH];
            uint64_t k = get_batch(r, out, 1 + rng_below(&c->rng, MAX_BATCH), &c->rng);
            if (k == 0) break;                                  /* closed and drained */
            for (uint64_t j = 0; j < k; j++) consume(c, out[j]);
        } else {
            void *item = NULL;
            int rc;
            if (op == 0) rc = get_blocking(r, &item, FQ_NO_DEADLINE);
            else if (op == 1) rc = get_polling(r, &item);
            else {
                while ((rc = get_blocking(r, &item, fq_now_ns() + (int64_t)rng_below(&c->rng, 50000))) == FQ_TIMEOUT) {}
            }
            if (rc == FQ_CLOSED) break;
            if (rc != FQ_OK) { c->bad_status++; continue; }
            consume(c, item);
        }
        atomic_store_explicit(&c->progress, c->received, memory_order_relaxed);
    }
#if FQ_HARNESS_BREAK == BREAK_REORDER
    if (c->held) { c->held = 0; note(c, c->held_p, c->held_seq); }
#endif
    atomic_fetch_add(&run->consumers_done, 1);
    return NULL;
}

/* ---- stress: one configuration -------------------------------------------------------- */

typedef struct {
    uint64_t ops, lost, dup, reorder, fifo, torn, status, posfail, wakes;
    int wrapped;
    double seconds;
} totals_t;

/* Wait until *done reaches target, failing the whole program on a stall. */
static void watch(run_t *run, _Atomic int *done, int target, const char *what) {
    uint64_t last = UINT64_MAX;
    int64_t last_change = fq_now_ns();
    while (atomic_load(done) < target) {
        sleep_ns(1000000);
        uint64_t sum = 0;
        for (int i = 0; i < run->np; i++) sum += atomic_load_explicit(&run->prod[i].progress, memory_order_relaxed);
        for (int i = 0; i < run->nc; i++) sum += atomic_load_explicit(&run->cons[i].progress, memory_order_relaxed);
        int64_t now = fq_now_ns();
        if (sum != last) { last = sum; last_change = now; }
        else if (now - last_change > opt.stall_ns) {
            dump_ring(what, run->r);
            printf("RESULT: FAIL (stall in %s)\n", what);
            fflush(stdout);
            exit(EXIT_STALL);
        }
    }
}

static void run_segment(int mode, int np, int nc, uint64_t capacity, uint64_t start, uint64_t ops,
                        uint64_t salt, totals_t *t) {
    run_t *run = xcalloc(1, sizeof *run);
    run->np = np; run->nc = nc; run->mode = mode;
    run->r = new_ring(capacity, start);
    size_t words[MAX_THREADS];
    for (int p = 0; p < np; p++) {
        run->n[p] = ops / (uint64_t)np + ((uint64_t)p < ops % (uint64_t)np);
        run->pool[p] = xcalloc(POOL_SIZE, sizeof(item_t));
        words[p] = (size_t)(run->n[p] + 63) / 64;
        worker_t *w = &run->prod[p];
        w->run = run; w->id = p; w->n = run->n[p];
        w->rng = rng_make(salt, 1, (uint64_t)p);
    }
    for (int c = 0; c < nc; c++) {
        worker_t *w = &run->cons[c];
        w->run = run; w->id = c;
        w->rng = rng_make(salt, 2, (uint64_t)c);
        for (int p = 0; p < np; p++) { w->bits[p] = xcalloc(words[p], sizeof(uint64_t)); w->last[p] = NO_SEQ; }
    }

    pthread_t pt[MAX_THREADS], ct[MAX_THREADS];
    int64_t t0 = fq_now_ns();
    for (int c = 0; c < nc; c++) if (pthread_create(&ct[c], NULL, consumer_main, &run->cons[c])) exit(EXIT_NOMEM);
    for (int p = 0; p < np; p++) if (pthread_create(&pt[p], NULL, producer_main, &run->prod[p])) exit(EXIT_NOMEM);
    watch(run, &run->producers_done, np, "produce");
    for (int p = 0; p < np; p++) pthread_join(pt[p], NULL);
    fq_ring_close(run->r);
    watch(run, &run->consumers_done, nc, "drain after close");
    for (int c = 0; c < nc; c++) pthread_join(ct[c], NULL);
    t->seconds += (double)(fq_now_ns() - t0) / 1e9;

    /* merge the per-consumer bitmaps: lost = seen by nobody, dup = seen by two or more */
    for (int p = 0; p < np; p++) {
        for (size_t i = 0; i < words[p]; i++) {
            uint64_t seen = 0, multi = 0;
            for (int c = 0; c < nc; c++) { uint64_t x = run->cons[c].bits[p][i]; multi |= seen & x; seen |= x; }
            uint64_t valid = (i + 1 < words[p] || run->n[p] % 64 == 0) ? UINT64_MAX : (UINT64_C(1) << (run->n[p] % 64)) - 1;
            t->lost += (uint64_t)__builtin_popcountll(~seen & valid);
            t->dup += (uint64_t)__builtin_popcountll(multi);
        }
        t->status += run->prod[p].bad_status;
    }
    for (int c = 0; c < nc; c++) {
        worker_t *w = &run->cons[c];
        t->dup += w->dup; t->reorder += w->reorder; t->fifo += w->fifo; t->torn += w->torn;
        t->status += w->bad_status;
    }
    /* the positions moved by exactly ops (mod 2^63) and the ring is closed */
    uint64_t end = (start + ops) & FQ_POS_MASK;
    uint64_t e = fq_load64(&run->r->enq, FQ_RELAXED), d = fq_load64(&run->r->deq, FQ_RELAXED);
    if (e != (end | FQ_CLOSED_BIT) || d != end) t->posfail++;
    if (start + ops > FQ_POS_MASK) t->wrapped = 1;
    t->wakes += wake_rounds(&run->r->not_empty) + wake_rounds(&run->r->not_full);
    t->ops += ops;

    for (int c = 0; c < nc; c++) for (int p = 0; p < np; p++) free(run->cons[c].bits[p]);
    for (int p = 0; p < np; p++) free(run->pool[p]);
    fq_ring_free(run->r);
    free(run);
}

static int run_config(int mode, int np, int nc, uint64_t req_cap, int from_zero, int cfg_index) {
    uint64_t cap = fq_ring_round_capacity(req_cap);
    totals_t t;
    memset(&t, 0, sizeof t);
    uint64_t first_start = 0, seg_n = FIRST_SEGMENT, segments = 0;
    int64_t t0 = fq_now_ns();
    for (uint64_t done = 0; done < opt.ops;) {
        uint64_t n = opt.ops - done < seg_n ? opt.ops - done : seg_n;
        uint64_t dist = n / 2 < NEAR_WRAP_DIST ? n / 2 : NEAR_WRAP_DIST;
        uint64_t start = from_zero ? 0 : (FQ_POS_MASK - dist + 1) & FQ_POS_MASK;
        if (segments++ == 0) first_start = start;
        run_segment(mode, np, nc, cap, start, n, ((uint64_t)cfg_index << 20) ^ (segments << 4) ^ (uint64_t)mode, &t);
        done += n;
        seg_n = seg_n * 2 < SEGMENT_OPS ? seg_n * 2 : SEGMENT_OPS;
        if (opt.config_ns) {
            /* time budget: size the next segment to what fits at the rate seen so far */
            int64_t elapsed = fq_now_ns() - t0, left = opt.config_ns - elapsed;
            double fits = left > 0 ? 0.9 * (double)done * (double)left / (double)elapsed : 0;
            if (fits < (double)(FIRST_SEGMENT / 2)) break;
            if (fits < (double)seg_n) seg_n = (uint64_t)fits;
        }
    }
    int ok = t.lost == 0 && t.dup == 0 && t.reorder == 0 && t.fifo == 0 && t.torn == 0 && t.status == 0 && t.posfail == 0;
    char capstr[48];
    if (cap == req_cap) snprintf(capstr, sizeof capstr, "%" PRIu64, cap);
    else snprintf(capstr, sizeof capstr, "%" PRIu64 "->%" PRIu64, req_cap, cap);  /* rounded up to a power of two */
    printf("stress mode=%s cfg=%dP%dC cap=%s start=0x%016" PRIx64 " ops=%" PRIu64 " segments=%" PRIu64
           " lost=%" PRIu64 " dup=%" PRIu64
           " reorder=%" PRIu64 " fifo=%" PRIu64 " torn=%" PRIu64 " status=%" PRIu64 " pos=%s wrap=%s wakes=%" PRIu64
           " seconds=%.2f %s\n",
           mode_names[mode], np, nc, capstr, first_start, t.ops, segments, t.lost, t.dup, t.reorder, t.fifo, t.torn, t.status,
           t.posfail ? "BAD" : "ok", t.wrapped ? "yes" : "no", t.wakes, t.seconds, ok ? "OK" : "FAIL");
    fflush(stdout);
    return ok;
}

/* ---- litmus tests --------------------------------------------------------------------- */

typedef struct { uint64_t x, y; } msg_t;           /* plain (non-atomic) payload */

typedef struct {
    fq_ring *r;
    uint64_t iters;
    msg_t *msgs;
    rng_t rng;
    uint64_t violations;
    _Atomic uint64_t progress;
    _Atomic int done;
} litmus_t;

/* MP: producer writes msgs[i] with plain stores, then puts &msgs[i] (single or batch API). */
static void *mp_producer(void *arg) {
    litmus_t *L = arg;
    for (uint64_t i = 0; i < L->iters;) {
        uint64_t n = 1 + rng_below(&L->rng, 4);
        if (n > L->iters - i) n = L->iters - i;
        void *items[4];
        for (uint64_t j = 0; j < n; j++) {
            L->msgs[i + j].x = i + j + 1;
            L->msgs[i + j].y = (i + j + 1) * UINT64_C(0x9e3779b97f4a7c15);
            items[j] = &L->msgs[i + j];
        }
        jitter(&L->rng);
        if (n == 1) {
            if (put_blocking(L->r, items[0], FQ_NO_DEADLINE) != FQ_OK) { L->violations++; break; }
            i += 1;
        } else {
            uint64_t k = put_batch(L->r, items, n, &L->rng);
            if (k == 0) { L->violations++; break; }
            i += k;                                    /* msgs past i + k are rewritten identically */
        }
        atomic_store_explicit(&L->progress, i, memory_order_relaxed);
    }
    return NULL;
}

/* MP consumer: after get, the payload must be the one written before the put. */
static void *mp_consumer(void *arg) {
    litmus_t *L = arg;
    for (uint64_t i = 0; i < L->iters;) {
        void *out[4];
        uint64_t k;
        jitter(&L->rng);
        if (rng_below(&L->rng, 2)) {
            if (get_blocking(L->r, &out[0], FQ_NO_DEADLINE) != FQ_OK) { L->violations++; break; }
            k = 1;
        } else if ((k = get_batch(L->r, out, 1 + rng_below(&L->rng, 4), &L->rng)) == 0) {
            L->violations++;
            break;
        }
        for (uint64_t j = 0; j < k; j++, i++) {
            const msg_t *m = out[j];
            if (m != &L->msgs[i] || m->x != i + 1 || m->y != (i + 1) * UINT64_C(0x9e3779b97f4a7c15)) L->violations++;
        }
        atomic_store_explicit(&L->progress, i, memory_order_relaxed);
    }
    atomic_store(&L->done, 1);
    return NULL;
}

/* PO: claim two positions, publish the second one first. Items are tagged integers. */
static void *po_producer(void *arg) {
    litmus_t *L = arg;
    for (uint64_t i = 0; i < L->iters;) {
        uint64_t first; int closed;
        uint64_t k = fq_ring_claim_put(L->r, L->iters - i >= 2 ? 2 : 1, &first, &closed);
        if (closed) { L->violations++; break; }
        if (k == 0) { (void)fq_ring_wait(L->r, 1, FQ_NO_DEADLINE); continue; }
        for (uint64_t j = k; j-- > 0;) {                     /* p+1 before p */
            fill(L->r, first + j, (void *)(uintptr_t)(i + j + 1), &L->rng);
            if (j) jitter(&L->rng);
        }
        if (fq_ring_takers_waiting(L->r)) wake_takers(L->r);
        i += k;
        atomic_store_explicit(&L->progress, i, memory_order_relaxed);
    }
    return NULL;
}

/* PO consumer: polls try_get; must see 1, 2, 3, ... and never the later item first. */
static void *po_consumer(void *arg) {
    litmus_t *L = arg;
    for (uint64_t i = 0; i < L->iters; i++) {
        void *item;
        if (get_polling(L->r, &item) != FQ_OK) { L->violations++; break; }
        if ((uintptr_t)item != i + 1) L->violations++;
        atomic_store_explicit(&L->progress, i + 1, memory_order_relaxed);
    }
    atomic_store(&L->done, 1);
    return NULL;
}

static int run_litmus(const char *name, void *(*prod)(void *), void *(*cons)(void *), uint64_t cap, int with_msgs,
                      uint64_t iters) {
    litmus_t P, C;
    memset(&P, 0, sizeof P);
    memset(&C, 0, sizeof C);
    uint64_t dist = iters / 2 < NEAR_WRAP_DIST ? iters / 2 : NEAR_WRAP_DIST;
    P.r = C.r = new_ring(cap, (FQ_POS_MASK - dist + 1) & FQ_POS_MASK);
    P.iters = C.iters = iters;
    P.msgs = C.msgs = with_msgs ? xcalloc((size_t)iters, sizeof(msg_t)) : NULL;
    P.rng = rng_make(0x117, cap, 1);
    C.rng = rng_make(0x117, cap, 2);
    pthread_t pt, ct;
    int64_t t0 = fq_now_ns();
    if (pthread_create(&ct, NULL, cons, &C) || pthread_create(&pt, NULL, prod, &P)) exit(EXIT_NOMEM);
    uint64_t last = UINT64_MAX;
    int64_t last_change = t0;
    for (;;) {                                                 /* stall watchdog */
        if (atomic_load(&C.done)) break;
        uint64_t c = atomic_load_explicit(&C.progress, memory_order_relaxed);
        uint64_t sum = c + atomic_load_explicit(&P.progress, memory_order_relaxed);
        int64_t now = fq_now_ns();
        if (sum != last) { last = sum; last_change = now; }
        else if (now - last_change > opt.stall_ns) {
            dump_ring(name, P.r);
            printf("RESULT: FAIL (stall in litmus %s)\n", name);
            fflush(stdout);
            exit(EXIT_STALL);
        }
        sleep_ns(1000000);
    }
    pthread_join(pt, NULL);
    pthread_join(ct, NULL);
    uint64_t v = P.violations + C.violations;
    printf("litmus %s cap=%" PRIu64 " iterations=%" PRIu64 " violations=%" PRIu64 " seconds=%.2f %s\n", name, cap,
           iters, v, (double)(fq_now_ns() - t0) / 1e9, v ? "FAIL" : "OK");
    fflush(stdout);
    free(P.msgs);
    fq_ring_free(P.r);
    return v == 0;
}

/* ---- close while blocked --------------------------------------------------------------- */

typedef struct {
    fq_ring *r;
    int batch;                  /* use the batch API + fq_ring_wait instead of *_wait */
    int put;                    /* block putting into a full ring (else getting from empty) */
    int rc;
    int64_t returned_at;
    _Atomic int tid;            /* kernel thread id, to see from /proc that it sleeps */
    _Atomic int done;
} blocker_t;

/* Is kernel thread `tid` of this process asleep (state S)? Blocked threads do nothing but
 * park in the futex (the pause/yield back-off keeps a thread runnable, state R). */
static int thread_sleeping(int tid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');                     /* "tid (comm) S ..." */
    return paren && paren[1] == ' ' && paren[2] == 'S';
}

static void *blocker_main(void *arg) {
    blocker_t *b = arg;
    atomic_store(&b->tid, (int)syscall(SYS_gettid));
    rng_t g = rng_make(0xc105e, (uint64_t)b->batch, (uint64_t)b->put);
    static char token;
    void *item = &token;
    if (b->put) {
        if (b->batch) b->rc = put_batch(b->r, &item, 1, &g) ? FQ_OK : FQ_CLOSED;
        else b->rc = put_blocking(b->r, item, FQ_NO_DEADLINE);
    } else {
        if (b->batch) b->rc = get_batch(b->r, &item, 1, &g) ? FQ_OK : FQ_CLOSED;
        else b->rc = get_blocking(b->r, &item, FQ_NO_DEADLINE);
    }
    b->returned_at = fq_now_ns();
    atomic_store(&b->done, 1);
    return NULL;
}

/* One round: K threads block on one side of a ring, then close(); returns 1 if all good. */
static int close_round(rng_t *g, int put_side, int wait_parked, int64_t *worst, int *parked_rounds) {
    enum { K = 4 };
    uint64_t cap = UINT64_C(1) << rng_below(g, 4);
    fq_ring *r = new_ring(cap, (FQ_POS_MASK - rng_below(g, 8)) & FQ_POS_MASK);   /* straddle the wrap */
    int ok = 1, wake;
    if (put_side)
        for (uint64_t i = 0; i < cap; i++) if (fq_ring_try_put(r, (void *)(uintptr_t)(i + 1), &wake) != FQ_OK) ok = 0;
    blocker_t b[K];
    pthread_t th[K];
    for (int i = 0; i < K; i++) {
        memset(&b[i], 0, sizeof b[i]);
        b[i].r = r; b[i].put = put_side; b[i].batch = i & 1;
        if (pthread_create(&th[i], NULL, blocker_main, &b[i])) exit(EXIT_NOMEM);
    }
    if (wait_parked) {                                          /* until all K sleep in the futex */
        fq_parker *pk = put_side ? &r->not_full : &r->not_empty;
        int64_t until = fq_now_ns() + opt.close_bound_ns;
        for (;;) {
            int asleep = 0;
            for (int i = 0; i < K; i++) asleep += atomic_load(&b[i].tid) && thread_sleeping(atomic_load(&b[i].tid));
            if (asleep == K && fq_parker_armed(pk)) { (*parked_rounds)++; break; }
            if (fq_now_ns() > until) break;
            sleep_ns(20000);
        }
    } else {
        sleep_ns((int64_t)rng_below(g, 300000));                /* anywhere in spin/park/start-up */
    }
    int64_t closed_at = fq_now_ns();
    fq_ring_close(r);
    int64_t until = closed_at + opt.close_bound_ns + opt.stall_ns;
    for (int i = 0; i < K; i++) {
        while (!atomic_load(&b[i].done) && fq_now_ns() < until) sleep_ns(50000);
        if (!atomic_load(&b[i].done)) {
            dump_ring(put_side ? "close (blocked putters)" : "close (blocked getters)", r);
            printf("RESULT: FAIL (blocked thread did not return after close)\n");
            fflush(stdout);
            exit(EXIT_STALL);
        }
        pthread_join(th[i], NULL);
        int64_t lat = b[i].returned_at - closed_at;
        if (lat > *worst) *worst = lat;
        if (b[i].rc != FQ_CLOSED || lat > opt.close_bound_ns) ok = 0;
    }
    if (put_side) {                                             /* the items put before close drain, in order */
        for (uint64_t i = 0; i < cap; i++) {
            void *item = NULL;
            if (fq_ring_try_get(r, &item, &wake) != FQ_OK || item != (void *)(uintptr_t)(i + 1)) ok = 0;
        }
    }
    void *item;
    if (fq_ring_try_get(r, &item, &wake) != FQ_CLOSED) ok = 0;
    if (fq_ring_try_put(r, &item, &wake) != FQ_CLOSED) ok = 0;
    fq_ring_free(r);
    return ok;
}

/* Timed waits on an empty / full ring: FQ_TIMEOUT, not before the deadline. */
static int timeout_round(rng_t *g) {
    int ok = 1;
    fq_ring *r = new_ring(1, 0);
    int64_t d = 200000 + (int64_t)rng_below(g, 800000);       /* 0.2 .. 1 ms */
    void *item = NULL;
    int64_t t0 = fq_now_ns();
    int rc = get_blocking(r, &item, t0 + d);
    int64_t t1 = fq_now_ns();
    if (rc != FQ_TIMEOUT || t1 - t0 < d || t1 - t0 > d + opt.close_bound_ns) ok = 0;
    if (put_blocking(r, &item, FQ_NO_DEADLINE) != FQ_OK) ok = 0;
    t0 = fq_now_ns();
    rc = put_blocking(r, &item, t0 + d);
    t1 = fq_now_ns();
    if (rc != FQ_TIMEOUT || t1 - t0 < d || t1 - t0 > d + opt.close_bound_ns) ok = 0;
    fq_ring_free(r);
    return ok;
}

static int run_close_checks(void) {
    rng_t g = rng_make(0xc105e, 0, 0);
    int failures = 0, parked = 0, rounds = 0;
    int64_t worst = 0, t0 = fq_now_ns();
    for (int i = 0; i < opt.close_rounds; i++) {
        for (int put_side = 0; put_side < 2; put_side++, rounds++)
            if (!close_round(&g, put_side, i & 1, &worst, &parked)) failures++;
        if (!timeout_round(&g)) failures++;
    }
    printf("close rounds=%d parked_rounds=%d failures=%d worst_latency_ms=%.3f bound_ms=%.0f seconds=%.2f %s\n",
           rounds, parked, failures, (double)worst / 1e6, (double)opt.close_bound_ns / 1e6,
           (double)(fq_now_ns() - t0) / 1e9, failures ? "FAIL" : "OK");
    fflush(stdout);
    return failures == 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static int selected(int np, uint64_t cap) {
    return (!opt.only_np || opt.only_np == np) && (!opt.only_cap || opt.only_cap == cap);
}

static void usage(void) {
    fprintf(stderr,
            "usage: ring_harness OPS_PER_CONFIG SEED [options]\n"
            "  --mode single|batch|mixed|all   API mode(s) of the stress part (default all)\n"
            "  --only stress|litmus|close      run one part (default: all three)\n"
            "  --config-sec S    time budget per stress configuration: stop starting new segments\n"
            "                    when the next would overrun it (default 0: run all OPS_PER_CONFIG)\n"
            "  --topo P          only the PxP configurations (1, 2 or 4), e.g. to replay one\n"
            "  --cap N           only the configurations of (requested) capacity N\n"
            "  --spin N          0..10 us spin with probability 1/N at claim/publish points (default 64, 0 off)\n"
            "  --litmus N        iterations per litmus test, split over two capacities (default 1000000)\n"
            "  --close-rounds N  close-while-blocked rounds (default 50)\n"
            "  --close-bound-ms MS  max latency from close() to every blocked thread's return (default 100)\n"
            "  --stall-sec S     fail (exit 3) when nothing moves for S seconds (default 30)\n");
    exit(EXIT_USAGE);
}

static uint64_t parse_u64(const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *end != '\0' || *s == '-') usage();
    return (uint64_t)v;
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    opt.ops = parse_u64(argv[1]);
    opt.seed = parse_u64(argv[2]);
    opt.spin_every = 64;
    opt.litmus_iters = 1000000;
    opt.close_rounds = 50;
    opt.close_bound_ns = 100 * 1000000LL;
    opt.stall_ns = 30 * 1000000000LL;
    opt.run_stress = opt.run_litmus = opt.run_close = 1;
    for (int m = 0; m < N_MODES; m++) opt.modes[m] = 1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(a, "--mode")) {
            int all = !strcmp(v, "all"), found = all;
            for (int m = 0; m < N_MODES; m++) {
                opt.modes[m] = all || !strcmp(v, mode_names[m]);
                found |= opt.modes[m];
            }
            if (!found) usage();
        } else if (!strcmp(a, "--only")) {
            opt.run_stress = !strcmp(v, "stress");
            opt.run_litmus = !strcmp(v, "litmus");
            opt.run_close = !strcmp(v, "close");
            if (!opt.run_stress && !opt.run_litmus && !opt.run_close) usage();
        } else if (!strcmp(a, "--spin")) opt.spin_every = (unsigned)parse_u64(v);
        else if (!strcmp(a, "--config-sec")) {
            char *end;
            double sec = strtod(v, &end);
            if (*end || !(sec >= 0)) usage();
            opt.config_ns = (int64_t)(sec * 1e9);
        } else if (!strcmp(a, "--topo")) opt.only_np = (int)parse_u64(v);
        else if (!strcmp(a, "--cap")) opt.only_cap = parse_u64(v);
        else if (!strcmp(a, "--litmus")) opt.litmus_iters = parse_u64(v);
        else if (!strcmp(a, "--close-rounds")) opt.close_rounds = (int)parse_u64(v);
        else if (!strcmp(a, "--close-bound-ms")) opt.close_bound_ns = (int64_t)parse_u64(v) * 1000000;
        else if (!strcmp(a, "--stall-sec")) opt.stall_ns = (int64_t)parse_u64(v) * 1000000000;
        else usage();
    }
    printf("ring_harness: ops_per_config=%" PRIu64 " config_sec=%.2f seed=%" PRIu64 " spin=1/%u break=%d\n", opt.ops,
           (double)opt.config_ns / 1e9, opt.seed, opt.spin_every, FQ_HARNESS_BREAK);
    fflush(stdout);

    int ok = 1;
    if (opt.run_stress) {
        static const int topo[][2] = {{1, 1}, {2, 2}, {4, 4}};
        static const uint64_t caps[] = {1, 2, 3, 64, 1024};   /* 3 is rounded up to 4 (reported as 3->4) */
        int index = 0;
        for (int m = 0; m < N_MODES; m++) {
            if (!opt.modes[m]) continue;
            for (size_t t = 0; t < sizeof topo / sizeof topo[0]; t++)
                for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++, index++)
                    if (selected(topo[t][0], caps[c])) ok &= run_config(m, topo[t][0], topo[t][1], caps[c], 0, index);
            if (selected(2, 64)) ok &= run_config(m, 2, 2, 64, 1, index);  /* one configuration from position 0 */
            index++;
        }
    }
    if (opt.run_litmus && opt.litmus_iters) {                    /* each test: half at each capacity */
        uint64_t half = opt.litmus_iters / 2, rest = opt.litmus_iters - half;
        ok &= run_litmus("MP", mp_producer, mp_consumer, 1, 1, half);
        ok &= run_litmus("MP", mp_producer, mp_consumer, 4, 1, rest);
        ok &= run_litmus("PO", po_producer, po_consumer, 2, 0, half);
        ok &= run_litmus("PO", po_producer, po_consumer, 4, 0, rest);
    }
    if (opt.run_close && opt.close_rounds) ok &= run_close_checks();
    printf("RESULT: %s\n", ok ? "PASS" : "FAIL");
    return ok ? EXIT_PASS : EXIT_CHECK;
}
