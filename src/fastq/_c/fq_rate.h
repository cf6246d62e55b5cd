/* fq_rate.h: a token bucket (rate tokens per second, at most burst held), in integer ns time.
 *
 * Tokens accrue continuously: at time t the bucket holds min(burst, tokens + (t - last) * rate).
 * Taking n tokens succeeds only if n are there (no debt), so a caller that waits sleeps for
 * wait_ns() and tries again. Pure arithmetic on a caller-owned struct; the caller locks. */
#ifndef FQ_RATE_H
#define FQ_RATE_H

#include <stdint.h>
#include <math.h>

typedef struct {
    double per_ns;      /* tokens per nanosecond; INFINITY: unlimited */
    double burst;       /* the most tokens held */
    double tokens;      /* held at time `last` */
    int64_t last;       /* ns on the bucket's clock */
} fq_rate;

static inline void fq_rate_init(fq_rate *b, double rate, double burst, int64_t now) {
    b->per_ns = rate * 1e-9;
    b->burst = burst;
    b->tokens = burst;
    b->last = now;
}

/* Bring the bucket to time now (a clock that steps back is ignored until it passes last). */
static inline void fq_rate_refill(fq_rate *b, int64_t now) {
    if (now <= b->last) return;
    if (isinf(b->per_ns)) { b->tokens = b->burst; b->last = now; return; }
    double t = b->tokens + (double)(now - b->last) * b->per_ns;
    b->tokens = t < b->burst ? t : b->burst;
    b->last = now;
}

/* Take n tokens if there are n now: 1 taken, 0 not. */
static inline int fq_rate_take(fq_rate *b, double n, int64_t now) {
    fq_rate_refill(b, now);
    if (b->tokens >= n) { b->tokens -= n; return 1; }
    return 0;
}

/* Nanoseconds until n tokens are held (0: now). n > burst never fits: INT64_MAX. */
static inline int64_t fq_rate_wait_ns(fq_rate *b, double n, int64_t now) {
    fq_rate_refill(b, now);
    if (b->tokens >= n) return 0;
    if (n > b->burst) return INT64_MAX;
    double ns = ceil((n - b->tokens) / b->per_ns);
    return ns >= 9.2e18 ? INT64_MAX : (int64_t)ns;
}

/* A new rate from now on: what accrued at the old rate stays. */
static inline void fq_rate_set(fq_rate *b, double rate, int64_t now) {
    fq_rate_refill(b, now);
    b->per_ns = rate * 1e-9;
}

#endif
