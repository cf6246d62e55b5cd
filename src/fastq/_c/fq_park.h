/* fq_park.h - park threads until a 32-bit epoch word changes (an "eventcount").
 *
 * The word is (generation << 1) | SLEEPERS. Bit 0 says "someone may be parked here"; it is
 * what movers test on their fast path, so a mover pays a wake-up syscall only once per
 * round of sleeping, not once per item while the woken threads are still getting scheduled.
 *
 *   uint32_t e = fq_parker_arm(&p);     // waiter: set SLEEPERS (seq_cst RMW), get the word
 *   ...re-check the condition (seq_cst loads)...
 *   fq_parker_wait(&p, e, deadline);    // sleeps only while the word is still e
 *
 *   if (fq_parker_armed(&p))            // mover, after its seq_cst CAS
 *       fq_parker_wake_all(&p);         // next generation, SLEEPERS cleared, wake everyone
 *
 * Linux: futex(FUTEX_WAIT_PRIVATE). Windows: WaitOnAddress. Elsewhere (macOS, BSD):
 * a mutex + condition variable, waiting in slices so signals get a look-in.
 * All functions may be called without the GIL. Deadlines are CLOCK_MONOTONIC nanoseconds,
 * FQ_NO_DEADLINE for "forever".
 */
#ifndef FQ_PARK_H
#define FQ_PARK_H

#include "fq_atomic.h"          /* first: it sets _GNU_SOURCE before any system header */
#include <stdint.h>
#include <errno.h>
#include <time.h>

#define FQ_NO_DEADLINE INT64_MAX

/* status codes shared with fq_ring.h (the table lives in _core.pxd as FqStatus) */
enum {
    FQ_OK = 0,        /* success, or "woken: re-check" */
    FQ_EMPTY = 1,     /* nothing to take */
    FQ_FULL = 2,      /* no room */
    FQ_CLOSED = 3,    /* closed (and, for takers, drained) */
    FQ_TIMEOUT = 4,   /* deadline passed */
    FQ_INTR = 5       /* interrupted by a signal: the caller must run signal handlers */
};

#if defined(_WIN32)
#  include <windows.h>
static inline int64_t fq_now_ns(void) {
    static LARGE_INTEGER freq; LARGE_INTEGER c;
    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    return (int64_t)((double)c.QuadPart * 1e9 / (double)freq.QuadPart);
}
#else
static inline int64_t fq_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif

#if defined(__linux__)
#  include <linux/futex.h>
#  include <sys/syscall.h>
#  include <unistd.h>
typedef struct { fq_atomic_u32 epoch; } fq_parker;
static inline int fq_parker_init(fq_parker *p) { fq_store32(&p->epoch, 0, FQ_RELAXED); return 0; }
static inline void fq_parker_destroy(fq_parker *p) { (void)p; }
static inline int fq_parker_wait(fq_parker *p, uint32_t expected, int64_t deadline) {
    struct timespec ts, *tsp = NULL;
    if (deadline != FQ_NO_DEADLINE) {
        int64_t rel = deadline - fq_now_ns();
        if (rel <= 0) return FQ_TIMEOUT;
        ts.tv_sec = (time_t)(rel / 1000000000); ts.tv_nsec = (long)(rel % 1000000000);
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, (uint32_t *)&p->epoch, FUTEX_WAIT_PRIVATE, expected, tsp, NULL, 0);
    if (rc == 0) return FQ_OK;
    if (errno == EINTR) return FQ_INTR;
    if (errno == ETIMEDOUT) return FQ_TIMEOUT;
    return FQ_OK;                                            /* EAGAIN: epoch moved on */
}
static inline void fq_parker_notify_os(fq_parker *p) {
    syscall(SYS_futex, (uint32_t *)&p->epoch, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}
#elif defined(_WIN32)
/* link with Synchronization.lib (setup.py does) */
typedef struct { fq_atomic_u32 epoch; } fq_parker;
static inline int fq_parker_init(fq_parker *p) { fq_store32(&p->epoch, 0, FQ_RELAXED); return 0; }
static inline void fq_parker_destroy(fq_parker *p) { (void)p; }
static inline int fq_parker_wait(fq_parker *p, uint32_t expected, int64_t deadline) {
    DWORD ms = INFINITE;
    if (deadline != FQ_NO_DEADLINE) {
        int64_t rel = deadline - fq_now_ns();
        if (rel <= 0) return FQ_TIMEOUT;
        ms = (DWORD)((rel + 999999) / 1000000);
    }
    if (ms == INFINITE || ms > 50) ms = 50;                  /* slices: let Ctrl-C through */
    WaitOnAddress((volatile VOID *)&p->epoch, &expected, sizeof(expected), ms);
    return FQ_OK;
}
static inline void fq_parker_notify_os(fq_parker *p) { WakeByAddressAll((PVOID)&p->epoch); }
#else
#  include <pthread.h>
#  include <sys/time.h>
typedef struct { fq_atomic_u32 epoch; pthread_mutex_t mu; pthread_cond_t cv; } fq_parker;
static inline int fq_parker_init(fq_parker *p) {
    fq_store32(&p->epoch, 0, FQ_RELAXED);
    if (pthread_mutex_init(&p->mu, NULL)) return -1;
    if (pthread_cond_init(&p->cv, NULL)) { pthread_mutex_destroy(&p->mu); return -1; }
    return 0;
}
static inline void fq_parker_destroy(fq_parker *p) { pthread_cond_destroy(&p->cv); pthread_mutex_destroy(&p->mu); }
static inline int fq_parker_wait(fq_parker *p, uint32_t expected, int64_t deadline) {
    int64_t rel = 50000000;                                  /* 50 ms slices: let signals through */
    if (deadline != FQ_NO_DEADLINE) {
        int64_t left = deadline - fq_now_ns();
        if (left <= 0) return FQ_TIMEOUT;
        if (left < rel) rel = left;
    }
    struct timeval now; struct timespec abs;
    gettimeofday(&now, NULL);
    int64_t ns = (int64_t)now.tv_usec * 1000 + rel;
    abs.tv_sec = now.tv_sec + (time_t)(ns / 1000000000); abs.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&p->mu);
    if (fq_load32(&p->epoch, FQ_ACQUIRE) == expected) pthread_cond_timedwait(&p->cv, &p->mu, &abs);
    pthread_mutex_unlock(&p->mu);
    return FQ_OK;
}
static inline void fq_parker_notify_os(fq_parker *p) {
    pthread_mutex_lock(&p->mu);               /* orders the epoch change before the waiter's check */
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
#endif

#define FQ_SLEEPERS 1u

/* Waiter: announce a sleeper (seq_cst RMW) and return the word to wait on. */
static inline uint32_t fq_parker_arm(fq_parker *p) {
    return fq_or32(&p->epoch, FQ_SLEEPERS, FQ_SEQ_CST) | FQ_SLEEPERS;
}

/* Mover: may anyone be parked? (seq_cst: pairs with fq_parker_arm, see fq_ring.h) */
static inline int fq_parker_armed(fq_parker *p) {
    return (fq_load32(&p->epoch, FQ_SEQ_CST) & FQ_SLEEPERS) != 0;
}

/* Start a new generation with SLEEPERS cleared and wake every parked thread. Only the mover
 * that clears the bit makes the syscall; later movers see it clear and skip it. */
static inline void fq_parker_wake_all(fq_parker *p) {
    uint32_t e = fq_load32(&p->epoch, FQ_SEQ_CST);
    while (e & FQ_SLEEPERS) {
        if (fq_cas32(&p->epoch, &e, (e + 2u) & ~FQ_SLEEPERS)) {
            fq_parker_notify_os(p);
            return;
        }
    }
}

#endif /* FQ_PARK_H */
