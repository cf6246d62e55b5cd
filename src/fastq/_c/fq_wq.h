/* fq_wq.h - the work-queue state machine: ready lists by priority, a delay heap, a lease
 * table with expiry, attempt counting and dead-lettering (docs/queue.md).
 *
 * Pure C and single-threaded: the caller serialises every call (the GIL, or the queue's lock
 * on free-threaded builds). Messages are opaque pointers whose ownership the caller manages:
 * an entry holds one reference from put until the caller takes it back (ack, purge, or the
 * dead-letter list), never touched here.
 *
 * Entries live in one array indexed by slot (< 2^24). A receipt is (slot << 40) | hand-out
 * number, the number drawn from a per-queue 40-bit counter that starts at a random value: a
 * receipt names exactly one hand-out, so a late ack after the lease expired (or from another
 * queue) cannot match the redelivered copy.
 *
 * Time is the caller's monotonic clock in nanoseconds, clamped so it never runs backwards.
 * Nothing happens by itself: each call first "advances" the queue to now (due delayed
 * messages become ready, expired leases are failed attempts), so a fake clock needs no thread.
 */
#ifndef FQ_WQ_H
#define FQ_WQ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include "fq_log.h"                 /* fq_wall_ns */

#define FQ_WQ_NIL        0xFFFFFFFFu
#define FQ_WQ_MAX_SLOTS  (1u << 24)
#define FQ_WQ_GEN_BITS   40
#define FQ_WQ_GEN_MASK   ((1ull << FQ_WQ_GEN_BITS) - 1)
#define FQ_WQ_NO_DEADLINE INT64_MIN
#define FQ_WQ_CLASSES    4

enum { FQ_WQ_FREE = 0, FQ_WQ_READY = 1, FQ_WQ_DELAYED = 2, FQ_WQ_INFLIGHT = 3 };
/* why a message left for the dead-letter queue */
enum { FQ_WQ_DEAD_DELIVERIES = 1, FQ_WQ_DEAD_EXPIRED = 2, FQ_WQ_DEAD_REJECTED = 3,
       FQ_WQ_DEAD_PERMANENT = 4, FQ_WQ_DEAD_MAX_ATTEMPTS = 5 };
/* results */
enum { FQ_WQ_OK = 0, FQ_WQ_FULL = 1, FQ_WQ_EMPTY = 2, FQ_WQ_STALE = 3, FQ_WQ_NOMEM = 4 };

typedef struct {
    void *msg;                      /* the caller's reference; NULL when free */
    void *err;                      /* the last failure's description (caller's reference) */
    int64_t ready_at;               /* when it became (DELAYED: becomes) visible */
    int64_t lease_deadline;         /* INFLIGHT: when the lease runs out */
    int64_t first_delivery, last_delivery;   /* valid once deliveries > 0; INT64_MIN:
                                                unknown (restored from a durable log) */
    int64_t put_at;                 /* when it was put (for ages) */
    int64_t deadline_wall;          /* the message's own deadline, unix ns; NO_DEADLINE = none */
    int64_t bytes;                  /* payload bytes counted against max_bytes */
    uint64_t gen;                   /* INFLIGHT: the hand-out number in the receipt */
    uint64_t order;                 /* heap tie-break: put sequence (DELAYED) or gen (INFLIGHT) */
    uint64_t tag;                   /* the caller's name for the message (a durable queue: the
                                       log offset of its put record) */
    uint32_t next;                  /* READY: next in its class list; FREE: next free slot */
    uint32_t heap_pos;              /* DELAYED, or INFLIGHT and extended: index in that heap */
    uint32_t deliveries;            /* hand-outs so far */
    uint8_t state, prio;
    uint8_t in_heap;                /* INFLIGHT: the lease was extended, so it is timed by the
                                       leases heap instead of the hand-out FIFO */
} fq_wq_entry;

typedef struct { uint32_t *a; uint32_t n, cap; } fq_wq_heap;

/* Leases in hand-out order. With one visibility timeout and a clock that never runs back,
 * hand-out order is deadline order, so the soonest lease to run out is at the front and an
 * ack costs O(1): its entry just goes stale (the slot left INFLIGHT, or was handed out again
 * under another number) and is dropped when it reaches the front. Extended leases move to
 * the leases heap. Stale entries behind a long-running lease are compacted away once they
 * outnumber the live ones, so memory stays O(in flight). */
typedef struct { uint32_t slot; uint64_t gen; } fq_wq_lref;
typedef struct { fq_wq_lref *a; uint64_t head, tail, mask; } fq_wq_fifo;

typedef struct {                    /* one message leaving for the dead-letter queue */
    void *msg, *err;
    uint64_t tag;
    int64_t first_delivery, last_delivery, put_at;
    uint32_t deliveries;
    int reason;
} fq_wq_dead;

typedef struct {                    /* one hand-out, for the caller to wrap */
    void *msg;
    uint64_t receipt, tag;
    int64_t lease_deadline;
    uint32_t attempt;
} fq_wq_grant;

typedef struct {
    fq_wq_entry *e;
    uint32_t cap, hw, free_head;    /* slots allocated, ever used, free-list head */
    uint32_t head[FQ_WQ_CLASSES], tail[FQ_WQ_CLASSES];
    uint64_t n_ready[FQ_WQ_CLASSES];
    fq_wq_heap delayed, leases;     /* due times; leases: extended leases only */
    fq_wq_fifo lfifo;               /* every other lease, in hand-out (= deadline) order */
    uint64_t n_inflight;
    fq_wq_dead *dead; uint32_t n_dead, cap_dead;
    uint64_t held;                  /* ready + delayed + in flight */
    int64_t bytes;                  /* payload bytes held */
    uint64_t maxsize;               /* UINT64_MAX: unbounded */
    int64_t max_bytes;              /* INT64_MAX: unbounded */
    int64_t vt;                     /* visibility timeout, ns */
    int64_t age_step;               /* priority aging step, ns; 0 = strict priority */
    uint32_t max_deliveries;
    int64_t now;                    /* the latest clock reading (never decreases) */
    int64_t wall_offset;            /* wall = now + wall_offset; INT64_MIN = read the wall clock */
    uint64_t next_gen, next_seq;
    /* totals */
    uint64_t put_total, acked_total, redelivered_total, dead_total, nacked_total, lease_expiries;
    uint64_t released_total;
} fq_wq;

/* ---- heaps of slots keyed by (time, order) ------------------------------------------------ */

static inline int64_t fq_wq_key(const fq_wq *q, uint32_t s) {
    const fq_wq_entry *x = &q->e[s];
    return x->state == FQ_WQ_INFLIGHT ? x->lease_deadline : x->ready_at;
}

static inline int fq_wq_less(const fq_wq *q, uint32_t a, uint32_t b) {
    int64_t ka = fq_wq_key(q, a), kb = fq_wq_key(q, b);
    return ka < kb || (ka == kb && q->e[a].order < q->e[b].order);
}

static inline void fq_wq_heap_set(fq_wq *q, fq_wq_heap *h, uint32_t i, uint32_t s) {
    h->a[i] = s;
    q->e[s].heap_pos = i;
}

static void fq_wq_sift_up(fq_wq *q, fq_wq_heap *h, uint32_t i) {
    uint32_t s = h->a[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!fq_wq_less(q, s, h->a[p])) break;
        fq_wq_heap_set(q, h, i, h->a[p]);
        i = p;
    }
    fq_wq_heap_set(q, h, i, s);
}

static void fq_wq_sift_down(fq_wq *q, fq_wq_heap *h, uint32_t i) {
    uint32_t s = h->a[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && fq_wq_less(q, h->a[c + 1], h->a[c])) c++;
        if (!fq_wq_less(q, h->a[c], s)) break;
        fq_wq_heap_set(q, h, i, h->a[c]);
        i = c;
    }
    fq_wq_heap_set(q, h, i, s);
}

static int fq_wq_heap_push(fq_wq *q, fq_wq_heap *h, uint32_t s) {
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        uint32_t *a = (uint32_t *)realloc(h->a, (size_t)cap * sizeof *a);
        if (!a) return FQ_WQ_NOMEM;
        h->a = a; h->cap = cap;
    }
    h->a[h->n] = s;
    fq_wq_sift_up(q, h, h->n++);
    return FQ_WQ_OK;
}

static void fq_wq_heap_remove(fq_wq *q, fq_wq_heap *h, uint32_t s) {
    uint32_t i = q->e[s].heap_pos, last = h->a[--h->n];
    if (i == h->n) return;
    fq_wq_heap_set(q, h, i, last);
    if (i > 0 && fq_wq_less(q, last, h->a[(i - 1) / 2])) fq_wq_sift_up(q, h, i);
    else fq_wq_sift_down(q, h, i);
}

/* ---- the lease FIFO ------------------------------------------------------------------------ */

static inline int fq_wq_lref_live(const fq_wq *q, fq_wq_lref r) {
    const fq_wq_entry *x = &q->e[r.slot];
    return x->state == FQ_WQ_INFLIGHT && x->gen == r.gen && !x->in_heap;
}

/* Drop stale entries at the front, so the front (if any) is a live lease. */
static inline void fq_wq_fifo_trim(fq_wq *q) {
    fq_wq_fifo *f = &q->lfifo;
    while (f->head != f->tail && !fq_wq_lref_live(q, f->a[f->head & f->mask])) f->head++;
}

static int fq_wq_fifo_push(fq_wq *q, uint32_t s) {
    fq_wq_fifo *f = &q->lfifo;
    uint64_t n = f->tail - f->head, cap = f->a ? f->mask + 1 : 0;
    if (n == cap) {
        /* full: compact if most entries are stale, else grow; either way into a new array */
        uint64_t live = 0, ncap = cap ? cap : 64;
        for (uint64_t i = f->head; i != f->tail; i++)
            live += (uint64_t)fq_wq_lref_live(q, f->a[i & f->mask]);
        while (live + 1 > ncap / 2) ncap *= 2;
        fq_wq_lref *a = (fq_wq_lref *)malloc((size_t)ncap * sizeof *a);
        if (!a) return FQ_WQ_NOMEM;
        uint64_t j = 0;
        for (uint64_t i = f->head; i != f->tail; i++)
            if (fq_wq_lref_live(q, f->a[i & f->mask])) a[j++] = f->a[i & f->mask];
        free(f->a);
        f->a = a; f->head = 0; f->tail = j; f->mask = ncap - 1;
    }
    f->a[f->tail & f->mask].slot = s;
    f->a[f->tail & f->mask].gen = q->e[s].gen;
    f->tail++;
    return FQ_WQ_OK;
}

/* The lease that runs out first (slot; FQ_WQ_NIL if none) and its deadline. */
static inline uint32_t fq_wq_first_lease(const fq_wq *q, int64_t *deadline) {
    uint32_t s = FQ_WQ_NIL;
    int64_t t = INT64_MAX;
    const fq_wq_fifo *f = &q->lfifo;
    if (f->head != f->tail) {
        s = f->a[f->head & f->mask].slot;
        t = q->e[s].lease_deadline;
    }
    if (q->leases.n) {
        uint32_t h = q->leases.a[0];
        int64_t th = q->e[h].lease_deadline;
        if (th < t || (th == t && q->e[h].gen < q->e[s].gen)) { s = h; t = th; }
    }
    *deadline = t;
    return s;
}

/* Slot s's lease ends (settled, failed, or expired): out of the heap, FIFO front tidied. */
static inline void fq_wq_lease_end(fq_wq *q, uint32_t s) {
    fq_wq_entry *x = &q->e[s];
    if (x->in_heap) {
        fq_wq_heap_remove(q, &q->leases, s);
        x->in_heap = 0;
    }
    q->n_inflight--;
}

/* ---- set-up ------------------------------------------------------------------------------- */

static int fq_wq_init(fq_wq *q, uint64_t maxsize, int64_t max_bytes, int64_t vt,
                      uint32_t max_deliveries, int64_t age_step, uint64_t first_gen) {
    memset(q, 0, sizeof *q);
    q->free_head = FQ_WQ_NIL;
    for (int c = 0; c < FQ_WQ_CLASSES; c++) q->head[c] = q->tail[c] = FQ_WQ_NIL;
    q->maxsize = maxsize; q->max_bytes = max_bytes; q->vt = vt;
    q->max_deliveries = max_deliveries; q->age_step = age_step;
    q->next_gen = first_gen & FQ_WQ_GEN_MASK;
    q->now = INT64_MIN;
    q->wall_offset = INT64_MIN;
    return FQ_WQ_OK;
}

static void fq_wq_destroy(fq_wq *q) {              /* the caller released the references */
    free(q->e); free(q->delayed.a); free(q->leases.a); free(q->dead); free(q->lfifo.a);
    memset(q, 0, sizeof *q);
}

static inline int64_t fq_wq_wall(const fq_wq *q) {
    return q->wall_offset == INT64_MIN ? fq_wall_ns() : q->now + q->wall_offset;
}

/* ---- internal moves ----------------------------------------------------------------------- */

static inline void fq_wq_ready_push(fq_wq *q, uint32_t s, int64_t ready_at) {
    fq_wq_entry *x = &q->e[s];
    int c = x->prio;
    x->state = FQ_WQ_READY;
    x->ready_at = ready_at;
    x->next = FQ_WQ_NIL;
    if (q->tail[c] == FQ_WQ_NIL) q->head[c] = s; else q->e[q->tail[c]].next = s;
    q->tail[c] = s;
    q->n_ready[c]++;
}

static int fq_wq_dead_push(fq_wq *q, uint32_t s, int reason) {
    fq_wq_entry *x = &q->e[s];
    if (q->n_dead == q->cap_dead) {
        uint32_t cap = q->cap_dead ? q->cap_dead * 2 : 16;
        fq_wq_dead *d = (fq_wq_dead *)realloc(q->dead, (size_t)cap * sizeof *d);
        if (!d) return FQ_WQ_NOMEM;
        q->dead = d; q->cap_dead = cap;
    }
    fq_wq_dead *d = &q->dead[q->n_dead++];
    d->msg = x->msg; d->err = x->err; d->tag = x->tag;
    d->first_delivery = x->first_delivery; d->last_delivery = x->last_delivery;
    d->put_at = x->put_at; d->deliveries = x->deliveries; d->reason = reason;
    return FQ_WQ_OK;
}

/* Give slot s back: its references now belong to whoever took them (dead list / caller). */
static inline void fq_wq_release(fq_wq *q, uint32_t s) {
    fq_wq_entry *x = &q->e[s];
    q->held--;
    q->bytes -= x->bytes;
    x->msg = NULL; x->err = NULL;
    x->state = FQ_WQ_FREE;
    x->next = q->free_head;
    q->free_head = s;
}

/* Slot s (no longer in flight) is visible again at ready_at: delayed until then, or ready. */
static int fq_wq_requeue(fq_wq *q, uint32_t s, int64_t ready_at) {
    fq_wq_entry *x = &q->e[s];
    if (ready_at > q->now) {
        x->state = FQ_WQ_DELAYED;
        x->ready_at = ready_at;
        x->order = q->next_seq++;
        return fq_wq_heap_push(q, &q->delayed, s);
    }
    fq_wq_ready_push(q, s, ready_at);
    return FQ_WQ_OK;
}

/* A failed attempt of in-flight slot s (lease expiry, or nack): dead-letter it at the limit,
 * otherwise make it visible again at ready_at (after delay, if any). */
static int fq_wq_fail(fq_wq *q, uint32_t s, int64_t ready_at, int reason_if_dead) {
    fq_wq_entry *x = &q->e[s];
    if (x->deliveries >= q->max_deliveries) {
        if (fq_wq_dead_push(q, s, reason_if_dead)) return FQ_WQ_NOMEM;
        q->dead_total++;
        fq_wq_release(q, s);
        return FQ_WQ_OK;
    }
    q->redelivered_total++;
    return fq_wq_requeue(q, s, ready_at);
}

/* Bring the queue to time now: due delayed messages become ready (in due order), expired
 * leases count as failed attempts. Returns the clamped now, or -1 on out-of-memory. */
static int fq_wq_advance(fq_wq *q, int64_t now) {
    if (now > q->now) q->now = now;
    now = q->now;
    /* Everything due now fell due after the previous call's now, later than anything already
     * in the ready lists: merging the two heaps by time keeps every class list ordered by
     * ready_at (which aging and the oldest-ready age read from the heads). */
    for (;;) {
        int64_t tl;
        uint32_t sl = fq_wq_first_lease(q, &tl);
        int64_t td = q->delayed.n ? q->e[q->delayed.a[0]].ready_at : INT64_MAX;
        if (tl > now && td > now) break;
        if (tl <= td) {
            fq_wq_lease_end(q, sl);
            if (q->e[sl].state == FQ_WQ_INFLIGHT) q->e[sl].state = FQ_WQ_READY;  /* not live */
            fq_wq_fifo_trim(q);
            q->lease_expiries++;
            if (fq_wq_fail(q, sl, tl, FQ_WQ_DEAD_DELIVERIES)) return FQ_WQ_NOMEM;
        } else {
            uint32_t s = q->delayed.a[0];
            fq_wq_heap_remove(q, &q->delayed, s);
            fq_wq_ready_push(q, s, td);
        }
    }
    return FQ_WQ_OK;
}

/* ---- operations --------------------------------------------------------------------------- */

static inline int fq_wq_has_room(const fq_wq *q, int64_t bytes) {
    if (q->held >= q->maxsize || q->held >= FQ_WQ_MAX_SLOTS - 1) return 0;
    /* max_bytes: a message larger than the whole budget still goes into an empty queue */
    if (q->max_bytes != INT64_MAX && q->bytes > 0 && q->bytes + bytes > q->max_bytes) return 0;
    return 1;
}

/* Store msg (one reference, taken over on FQ_WQ_OK). */
static int fq_wq_put(fq_wq *q, void *msg, int prio, int64_t delay, int64_t bytes,
                     int64_t deadline_wall, uint64_t tag, uint32_t deliveries) {
    uint32_t s;
    if (!fq_wq_has_room(q, bytes)) return FQ_WQ_FULL;
    if (q->free_head != FQ_WQ_NIL) {
        s = q->free_head;
        q->free_head = q->e[s].next;
    } else {
        if (q->hw == q->cap) {
            uint32_t cap = q->cap ? q->cap * 2 : 64;
            if (cap > FQ_WQ_MAX_SLOTS) cap = FQ_WQ_MAX_SLOTS;
            fq_wq_entry *e = (fq_wq_entry *)realloc(q->e, (size_t)cap * sizeof *e);
            if (!e) return FQ_WQ_NOMEM;
            q->e = e; q->cap = cap;
        }
        s = q->hw++;
    }
    fq_wq_entry *x = &q->e[s];
    x->msg = msg; x->err = NULL;
    x->put_at = q->now;
    /* a restored message (deliveries > 0) had its delivery times in a previous process */
    x->first_delivery = x->last_delivery = deliveries ? INT64_MIN : 0;
    x->deadline_wall = deadline_wall;
    x->bytes = bytes;
    x->deliveries = deliveries;           /* > 0 only when a durable queue restores it */
    x->tag = tag;
    x->prio = (uint8_t)prio;
    q->held++;
    q->bytes += bytes;
    q->put_total++;
    if (delay > 0) {
        x->state = FQ_WQ_DELAYED;
        x->ready_at = q->now + delay;
        x->order = q->next_seq++;
        if (fq_wq_heap_push(q, &q->delayed, s)) {          /* undo: the caller keeps msg */
            q->put_total--;
            fq_wq_release(q, s);
            return FQ_WQ_NOMEM;
        }
    } else {
        fq_wq_ready_push(q, s, q->now);
    }
    return FQ_WQ_OK;
}

/* The class to serve next: the head with the smallest (effective class, ready_at, class),
 * where a head's effective class is its class less one per age_step it has waited. */
static inline int fq_wq_pick(const fq_wq *q) {
    int best = -1;
    int64_t best_eff = 0, best_at = 0;
    for (int c = 0; c < FQ_WQ_CLASSES; c++) {
        uint32_t h = q->head[c];
        if (h == FQ_WQ_NIL) continue;
        int64_t at = q->e[h].ready_at, eff = c;
        if (q->age_step > 0 && c > 0) {
            int64_t steps = (q->now - at) / q->age_step;
            eff = steps >= c ? 0 : c - steps;
        }
        if (best < 0 || eff < best_eff || (eff == best_eff && at < best_at)) {
            best = c; best_eff = eff; best_at = at;
        }
    }
    return best;
}

/* Hand out the next message (after advance). FQ_WQ_EMPTY if none is ready. Messages past
 * their deadline go to the dead list on the way. */
static int fq_wq_take(fq_wq *q, fq_wq_grant *g) {
    for (;;) {
        int c = fq_wq_pick(q);
        if (c < 0) return FQ_WQ_EMPTY;
        uint32_t s = q->head[c];
        fq_wq_entry *x = &q->e[s];
        q->head[c] = x->next;
        if (q->head[c] == FQ_WQ_NIL) q->tail[c] = FQ_WQ_NIL;
        q->n_ready[c]--;
        if (x->deadline_wall != FQ_WQ_NO_DEADLINE && x->deadline_wall <= fq_wq_wall(q)) {
            if (fq_wq_dead_push(q, s, FQ_WQ_DEAD_EXPIRED)) {
                fq_wq_ready_push(q, s, x->ready_at);      /* keep it; report the failure */
                return FQ_WQ_NOMEM;
            }
            q->dead_total++;
            fq_wq_release(q, s);
            continue;
        }
        x->state = FQ_WQ_INFLIGHT;
        x->gen = q->next_gen;
        q->next_gen = (q->next_gen + 1) & FQ_WQ_GEN_MASK;
        x->order = x->gen;
        if (x->deliveries++ == 0 || x->first_delivery == INT64_MIN) x->first_delivery = q->now;
        x->last_delivery = q->now;
        x->lease_deadline = q->now + q->vt;
        x->in_heap = 0;
        if (fq_wq_fifo_push(q, s)) {
            x->deliveries--;
            fq_wq_ready_push(q, s, x->ready_at);
            return FQ_WQ_NOMEM;
        }
        q->n_inflight++;
        g->msg = x->msg;
        g->receipt = ((uint64_t)s << FQ_WQ_GEN_BITS) | x->gen;
        g->tag = x->tag;
        g->lease_deadline = x->lease_deadline;
        g->attempt = x->deliveries;
        return FQ_WQ_OK;
    }
}

/* The in-flight slot a receipt names, or FQ_WQ_NIL (expired, settled, or foreign). */
static inline uint32_t fq_wq_lookup(const fq_wq *q, uint64_t receipt) {
    uint64_t s = receipt >> FQ_WQ_GEN_BITS;
    if (s >= q->hw) return FQ_WQ_NIL;
    const fq_wq_entry *x = &q->e[s];
    if (x->state != FQ_WQ_INFLIGHT || x->gen != (receipt & FQ_WQ_GEN_MASK)) return FQ_WQ_NIL;
    return (uint32_t)s;
}

/* Ack: the message is done. *msg and *err get the references to release. */
static int fq_wq_ack(fq_wq *q, uint64_t receipt, void **msg, void **err, uint64_t *tag) {
    uint32_t s = fq_wq_lookup(q, receipt);
    if (s == FQ_WQ_NIL) return FQ_WQ_STALE;
    fq_wq_lease_end(q, s);
    *msg = q->e[s].msg; *err = q->e[s].err; *tag = q->e[s].tag;
    q->acked_total++;
    fq_wq_release(q, s);
    fq_wq_fifo_trim(q);
    return FQ_WQ_OK;
}

/* Nack: a failed attempt; visible again after delay, or dead-lettered at the limit.
 * err (a reference the queue takes over; may be NULL) replaces the last error; *old_err gets
 * the reference to release. */
static int fq_wq_nack(fq_wq *q, uint64_t receipt, int64_t delay, void *err, void **old_err,
                      uint64_t *tag) {
    uint32_t s = fq_wq_lookup(q, receipt);
    if (s == FQ_WQ_NIL) return FQ_WQ_STALE;
    fq_wq_entry *x = &q->e[s];
    *tag = x->tag;
    *old_err = NULL;
    if (err) { *old_err = x->err; x->err = err; }
    fq_wq_lease_end(q, s);
    x->state = FQ_WQ_READY;                           /* no longer a live lease */
    fq_wq_fifo_trim(q);
    q->nacked_total++;
    return fq_wq_fail(q, s, q->now + (delay > 0 ? delay : 0), FQ_WQ_DEAD_REJECTED);
}

/* Release: the consumer gives the message back without having tried it (a breaker is open,
 * the pool is stopping): visible again after delay, and the hand-out does not count as an
 * attempt. *attempts gets the attempts the message now has (for the journal). */
static int fq_wq_giveback(fq_wq *q, uint64_t receipt, int64_t delay, uint64_t *tag,
                          uint32_t *attempts) {
    uint32_t s = fq_wq_lookup(q, receipt);
    if (s == FQ_WQ_NIL) return FQ_WQ_STALE;
    fq_wq_entry *x = &q->e[s];
    *tag = x->tag;
    fq_wq_lease_end(q, s);
    x->state = FQ_WQ_READY;
    fq_wq_fifo_trim(q);
    if (x->deliveries) x->deliveries--;
    *attempts = x->deliveries;
    q->released_total++;
    return fq_wq_requeue(q, s, q->now + (delay > 0 ? delay : 0));
}

/* Dead-letter now (a permanent failure, or the consumer's own attempt limit): err as nack. */
static int fq_wq_reject(fq_wq *q, uint64_t receipt, int reason, void *err, void **old_err,
                        uint64_t *tag) {
    uint32_t s = fq_wq_lookup(q, receipt);
    if (s == FQ_WQ_NIL) return FQ_WQ_STALE;
    fq_wq_entry *x = &q->e[s];
    *tag = x->tag;
    *old_err = NULL;
    if (err) { *old_err = x->err; x->err = err; }
    fq_wq_lease_end(q, s);
    x->state = FQ_WQ_READY;
    fq_wq_fifo_trim(q);
    if (fq_wq_dead_push(q, s, reason)) {              /* no memory: it stays, as a nack */
        if (err) { x->err = *old_err; *old_err = err; }
        q->redelivered_total++;
        fq_wq_ready_push(q, s, q->now);
        return FQ_WQ_NOMEM;
    }
    q->nacked_total++;
    q->dead_total++;
    fq_wq_release(q, s);
    return FQ_WQ_OK;
}

/* Extend (heartbeat): the lease now runs out `seconds` after now. */
static int fq_wq_extend(fq_wq *q, uint64_t receipt, int64_t by, int64_t *deadline) {
    uint32_t s = fq_wq_lookup(q, receipt);
    if (s == FQ_WQ_NIL) return FQ_WQ_STALE;
    fq_wq_entry *x = &q->e[s];
    int64_t old = x->lease_deadline;
    x->lease_deadline = q->now + by;
    if (!x->in_heap) {                                /* leaves the FIFO for the heap */
        x->order = x->gen;
        if (fq_wq_heap_push(q, &q->leases, s)) {
            x->lease_deadline = old;
            return FQ_WQ_NOMEM;
        }
        x->in_heap = 1;
        fq_wq_fifo_trim(q);
    } else if (x->lease_deadline < old) {
        fq_wq_sift_up(q, &q->leases, x->heap_pos);
    } else {
        fq_wq_sift_down(q, &q->leases, x->heap_pos);
    }
    *deadline = x->lease_deadline;
    return FQ_WQ_OK;
}

/* The next time something happens by itself (a delayed message due, a lease running out),
 * or INT64_MAX. */
static inline int64_t fq_wq_next_due(const fq_wq *q) {
    int64_t t;
    fq_wq_first_lease(q, &t);
    if (q->delayed.n && q->e[q->delayed.a[0]].ready_at < t) t = q->e[q->delayed.a[0]].ready_at;
    return t;
}

/* Oldest ready message's ready_at, or INT64_MAX. */
static inline int64_t fq_wq_oldest_ready(const fq_wq *q) {
    int64_t t = INT64_MAX;
    for (int c = 0; c < FQ_WQ_CLASSES; c++)
        if (q->head[c] != FQ_WQ_NIL && q->e[q->head[c]].ready_at < t) t = q->e[q->head[c]].ready_at;
    return t;
}

/* Take the oldest ready message of the most urgent class out (purge). FQ_WQ_EMPTY if none. */
static int fq_wq_pop_ready(fq_wq *q, void **msg, void **err, uint64_t *tag) {
    for (int c = 0; c < FQ_WQ_CLASSES; c++) {
        uint32_t s = q->head[c];
        if (s == FQ_WQ_NIL) continue;
        q->head[c] = q->e[s].next;
        if (q->head[c] == FQ_WQ_NIL) q->tail[c] = FQ_WQ_NIL;
        q->n_ready[c]--;
        *msg = q->e[s].msg; *err = q->e[s].err; *tag = q->e[s].tag;
        fq_wq_release(q, s);
        return FQ_WQ_OK;
    }
    return FQ_WQ_EMPTY;
}

/* The smallest tag held (ready, delayed, in flight, or waiting to be dead-lettered), or
 * UINT64_MAX: what a durable queue must keep of its log. O(slots). */
static inline uint64_t fq_wq_min_tag(const fq_wq *q) {
    uint64_t t = UINT64_MAX;
    for (uint32_t s = 0; s < q->hw; s++)
        if (q->e[s].state != FQ_WQ_FREE && q->e[s].tag < t) t = q->e[s].tag;
    for (uint32_t i = 0; i < q->n_dead; i++)      /* on their way to the dead-letter queue */
        if (q->dead[i].tag < t) t = q->dead[i].tag;
    return t;
}

static inline uint64_t fq_wq_ready(const fq_wq *q) {
    return q->n_ready[0] + q->n_ready[1] + q->n_ready[2] + q->n_ready[3];
}

#endif
