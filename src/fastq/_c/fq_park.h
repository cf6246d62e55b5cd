/* fq_park.h - park a thread until a 32-bit epoch word changes (an "eventcount").
 *
 *   uint32_t e = fq_parker_epoch(&p);   // 1. read the epoch
 *   ...register as a waiter, re-check the condition...
 *   fq_parker_wait(&p, e, deadline);    // 2. sleeps only while the epoch is still e
 *
 *   fq_parker_wake(&p, all);            // waker: bump the epoch, then wake 1 or all
 *
 * Linux: futex(FUTEX_WAIT_PRIVATE). Windows: WaitOnAddress. Elsewhere (macOS, BSD):
 * a mutex + condition variable, waiting in slices so signals get a look-in.
 * All functions may be called without the GIL. Deadlines are CLOCK_MONOTONIC nanoseconds,
 * FQ_NO_DEADLINE for "forever".
 */
#ifndef FQ_PARK_H
#define FQ_PARK_H

#include <stdint.h>
#include <errno.h>
#include <time.h>
#include "fq_atomic.h"

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

/* deadline (ns since CLOCK_MONOTONIC epoch) for a timeout in seconds; <0 means none */
static inline int64_t fq_deadline_after(double seconds) {
    if (!(seconds >= 0)) return FQ_NO_DEADLINE;            /* negative/NaN: caller validated */
    if (seconds > 9.0e9) return FQ_NO_DEADLINE;              /* ~285 years: treat as forever */
    return fq_now_ns() + (int64_t)(seconds * 1e9);
}

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
static inline void fq_parker_wake(fq_parker *p, int all) {
    fq_add32(&p->epoch, 1, FQ_SEQ_CST);
    syscall(SYS_futex, (uint32_t *)&p->epoch, FUTEX_WAKE_PRIVATE, all ? INT32_MAX : 1, NULL, NULL, 0);
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
static inline void fq_parker_wake(fq_parker *p, int all) {
    fq_add32(&p->epoch, 1, FQ_SEQ_CST);
    if (all) WakeByAddressAll((PVOID)&p->epoch); else WakeByAddressSingle((PVOID)&p->epoch);
}
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
static inline void fq_parker_wake(fq_parker *p, int all) {
    fq_add32(&p->epoch, 1, FQ_SEQ_CST);
    pthread_mutex_lock(&p->mu);
    if (all) pthread_cond_broadcast(&p->cv); else pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
#endif

static inline uint32_t fq_parker_epoch(fq_parker *p) { return fq_load32(&p->epoch, FQ_ACQUIRE); }

#endif /* FQ_PARK_H */
