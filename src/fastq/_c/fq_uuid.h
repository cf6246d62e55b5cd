/* fq_uuid.h - time-ordered unique message ids: UUID version 7 (RFC 9562 section 5.7).
 *
 *   48 bits  unix time in milliseconds (big-endian, so byte order = time order)
 *    4 bits  version 0b0111
 *   12 bits  sub-millisecond fraction, floor(frac * 4096)   (RFC 9562 section 6.2, method 3)
 *    2 bits  variant 0b10
 *   18 bits  counter: random (top bit 0) when the 60-bit time advances, +1 otherwise (method 1)
 *   44 bits  random
 *
 * Ids from one process are strictly increasing: when the clock does not move forward (same
 * 244 ns tick, or the wall clock stepped back) the previous time is reused and the counter
 * incremented; a counter overflow advances the time by one tick. Randomness comes from the
 * kernel CSPRNG (getrandom, /dev/urandom elsewhere) in 4 KiB refills, and is thrown away in a
 * forked child (pthread_atfork) so parent and child never share a byte.
 *
 * Not thread-safe by itself: the caller serialises fq_uuid7 (the GIL, or a lock on
 * free-threaded builds). fq_uuid_format and fq_uuid_parse are pure functions.
 */
#ifndef FQ_UUID_H
#define FQ_UUID_H

#include "fq_atomic.h"          /* first: it sets _GNU_SOURCE before any system header */
#include "fq_log.h"             /* fq_wall_ns */
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#  include <sys/random.h>
#endif
#include <pthread.h>

#define FQ_UUID_POOL 4096

typedef struct {
    uint64_t last_time;             /* 60-bit time: ms << 12 | sub-ms fraction */
    uint32_t counter;               /* 18-bit counter */
    uint32_t pool_used;             /* bytes of pool consumed; FQ_UUID_POOL = empty */
    int atfork_installed;
    uint8_t pool[FQ_UUID_POOL];
} fq_uuid_gen;

static fq_uuid_gen fq_uuid_state = { 0, 0, FQ_UUID_POOL, 0, {0} };

static void fq_uuid_child_after_fork(void) {
    fq_uuid_state.pool_used = FQ_UUID_POOL;              /* never reuse the parent's bytes */
    memset(fq_uuid_state.pool, 0, sizeof fq_uuid_state.pool);
}

/* Fill buf with n bytes from the kernel CSPRNG. 0 on success, an errno value otherwise. */
static int fq_os_random(uint8_t *buf, size_t n) {
#if defined(__linux__)
    while (n > 0) {
        ssize_t got = getrandom(buf, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOSYS) break;                      /* very old kernel: use the file */
            return errno;
        }
        buf += got; n -= (size_t)got;
    }
    if (n == 0) return 0;
#endif
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    while (n > 0) {
        ssize_t got = read(fd, buf, n);
        if (got < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return e; }
        if (got == 0) { close(fd); return EIO; }
        buf += got; n -= (size_t)got;
    }
    close(fd);
    return 0;
}

/* n (<= 16) random bytes from the pool. 0 on success, an errno value otherwise. */
static inline int fq_uuid_random(fq_uuid_gen *g, uint8_t *out, uint32_t n) {
    if (g->pool_used + n > FQ_UUID_POOL) {
        int rc;
        if (!g->atfork_installed) {
            if (pthread_atfork(NULL, NULL, fq_uuid_child_after_fork) != 0) return ENOMEM;
            g->atfork_installed = 1;
        }
        rc = fq_os_random(g->pool, FQ_UUID_POOL);
        if (rc) return rc;
        g->pool_used = 0;
    }
    memcpy(out, g->pool + g->pool_used, n);
    g->pool_used += n;
    return 0;
}

/* A new id for wall time `now_ns` (unix ns) into out[16]. 0 on success, an errno value if the
 * operating system had no random bytes to give. */
static int fq_uuid7(fq_uuid_gen *g, int64_t now_ns, uint8_t out[16]) {
    uint8_t r[8];
    uint64_t ms, frac, t;
    if (now_ns < 0) now_ns = 0;
    ms = (uint64_t)now_ns / 1000000u;
    frac = ((uint64_t)now_ns % 1000000u) * 4096u / 1000000u;
    t = ((ms & 0xFFFFFFFFFFFFull) << 12) | frac;
    int rc = fq_uuid_random(g, r, 8);
    if (rc) return rc;
    if (t > g->last_time) {
        g->last_time = t;
        g->counter = ((uint32_t)r[0] << 9 | (uint32_t)r[1] << 1 | (r[3] >> 7)) & 0x1FFFFu;
    } else if (++g->counter > 0x3FFFFu) {                /* 2^18 ids in one tick: next tick */
        g->last_time += 1;
        g->counter = ((uint32_t)r[0] << 9 | (uint32_t)r[1] << 1 | (r[3] >> 7)) & 0x1FFFFu;
    }
    t = g->last_time;
    out[0] = (uint8_t)(t >> 52); out[1] = (uint8_t)(t >> 44); out[2] = (uint8_t)(t >> 36);
    out[3] = (uint8_t)(t >> 28); out[4] = (uint8_t)(t >> 20); out[5] = (uint8_t)(t >> 12);
    out[6] = (uint8_t)(0x70 | ((t >> 8) & 0x0F));          /* version 7, frac bits 11..8 */
    out[7] = (uint8_t)(t & 0xFF);                           /* frac bits 7..0 */
    out[8] = (uint8_t)(0x80 | ((g->counter >> 12) & 0x3F)); /* variant 10, counter 17..12 */
    out[9] = (uint8_t)(g->counter >> 4);
    out[10] = (uint8_t)(((g->counter & 0x0F) << 4) | (r[3] & 0x0F));
    out[11] = r[2];                                          /* 4 + 40 random bits */
    memcpy(out + 12, r + 4, 4);
    return 0;
}

/* The canonical text form: 36 lowercase characters 8-4-4-4-12. */
static inline void fq_uuid_format(const uint8_t u[16], char out[36]) {
    static const char hex[] = "0123456789abcdef";
    /* byte i's two digits go to out[pos[i]] (the dashes at 8, 13, 18, 23 are fixed) */
    static const uint8_t pos[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    for (int i = 0; i < 16; i++) {
        out[pos[i]] = hex[u[i] >> 4];
        out[pos[i] + 1] = hex[u[i] & 0x0F];
    }
    out[8] = out[13] = out[18] = out[23] = '-';
}

/* Parse exactly the canonical lowercase form (so formatting the result gives the same text
 * back). 1 on success, 0 otherwise. */
static inline int fq_uuid_parse(const char *s, size_t n, uint8_t out[16]) {
    if (n != 36) return 0;
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) { if (s[j++] != '-') return 0; }
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[j++];
            if (c >= '0' && c <= '9') v = v * 16 + (c - '0');
            else if (c >= 'a' && c <= 'f') v = v * 16 + (c - 'a' + 10);
            else return 0;
        }
        out[i] = (uint8_t)v;
    }
    return 1;
}

#endif
