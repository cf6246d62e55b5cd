/* dedup_harness.c - fq_dedup.h without Python, built plain and with ASan + UBSan.
 *
 * Usage: dedup_harness SEED OPS
 *
 * 1. masks: the SSE2 bucket masks (fq_dd_tagmask, fq_dd_freemask) against their scalar
 *    definitions on random buckets, including the lanes that only differ in one half.
 * 2. model: random operations (seen, seen_many, contains, forget, clock steps, clear, snapshot
 *    and restore) on small windows - exact and fingerprint mode, 64-bit and 2-bit fingerprints,
 *    sequence numbers started just below the renumbering point - against a reference kept as a
 *    plain FIFO array searched linearly. Keys are small integers hashed to fingerprints here;
 *    in 2-bit exact mode distinct keys share fingerprints all the time.
 * 3. snapshots: every single-bit flip and every truncation of a snapshot either fails
 *    fq_dd_check or restores without touching memory it should not (the sanitizers watch).
 *
 * Prints "OK <counts>" and exits 0, or prints what diverged and exits 1. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fq_dedup.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}

#define FAIL(...) do { printf("FAIL "); printf(__VA_ARGS__); printf("\n"); exit(1); } while (0)

/* ---- 1. masks ---------------------------------------------------------------------------- */
static unsigned tag_ref(const uint64_t *b, uint32_t tag) {
    unsigned m = 0;
    for (int w = 0; w < 4; w++) m |= (unsigned)((uint32_t)(b[w] >> 32) == tag) << w;
    return m;
}
static unsigned free_ref(const fq_dedup *d, const uint64_t *b) {
    unsigned m = 0;
    for (int w = 0; w < 4; w++) m |= (unsigned)!fq_dd_current(d, b[w]) << w;
    return m;
}
static long check_masks(long n) {
    fq_dedup d;
    memset(&d, 0, sizeof d);
    for (long i = 0; i < n; i++) {
        uint64_t b[4];
        for (int w = 0; w < 4; w++) b[w] = (rnd() >> 60) < 4 ? 0 : rnd();
        uint64_t x = rnd();
        d.head_seq = (uint32_t)x;
        d.used = (uint32_t)(x >> 32) >> ((x >> 40) & 31);
        if ((x >> 50) & 1)      /* a slot whose sequence number is just inside or outside */
            b[(x >> 52) & 3] = (b[0] & 0xFFFFFFFF00000000ull) | (uint32_t)(d.head_seq + d.used - 2 + ((x >> 55) & 3));
        uint32_t tags[3] = {(uint32_t)(b[0] >> 32), (uint32_t)(b[3] >> 32), (uint32_t)rnd()};
        for (int k = 0; k < 3; k++)
            if (fq_dd_tagmask(b, tags[k]) != tag_ref(b, tags[k])) FAIL("tagmask at case %ld", i);
        if (fq_dd_freemask(&d, b) != free_ref(&d, b)) FAIL("freemask at case %ld", i);
    }
    return n;
}

/* ---- 2. the model ------------------------------------------------------------------------ */
#define MAXK 64
typedef struct { uint32_t key; double expires; } ref_entry;
typedef struct { ref_entry e[4 * MAXK]; int n; double now, ttl; int max_keys; } ref_t;

static void ref_advance(ref_t *r, double now) {
    if (now > r->now) r->now = now;
    int drop = 0;
    while (drop < r->n && r->e[drop].expires <= r->now) drop++;
    memmove(r->e, r->e + drop, (size_t)(r->n - drop) * sizeof(ref_entry));
    r->n -= drop;
}
static int ref_find(const ref_t *r, uint32_t key) {
    for (int i = 0; i < r->n; i++) if (r->e[i].key == key) return i;
    return -1;
}
static int ref_seen(ref_t *r, uint32_t key) {
    if (ref_find(r, key) >= 0) return 1;
    if (r->n == r->max_keys) { memmove(r->e, r->e + 1, (size_t)(r->n - 1) * sizeof(ref_entry)); r->n--; }
    r->e[r->n].key = key; r->e[r->n].expires = r->now + r->ttl; r->n++;
    return 0;
}
static int ref_forget(ref_t *r, uint32_t key) {
    int i = ref_find(r, key);
    if (i < 0) return 0;
    memmove(r->e + i, r->e + i + 1, (size_t)(r->n - i - 1) * sizeof(ref_entry));
    r->n--;
    return 1;
}

static uint64_t fp_of(uint32_t key, uint64_t seed) { return fq_xxh3_64(&key, 4, seed); }

static long run_model(long ops, int exact, int bits, uint32_t first_seq) {
    uint64_t seed = rnd(), mask = bits == 64 ? ~0ull : ((1ull << bits) - 1);
    int max_keys = 1 + (int)(rnd() % MAXK);
    double ttl = (rnd() & 1) ? 1.0 + (double)(rnd() % 8) : INFINITY;
    fq_dedup d;
    ref_t r = {.n = 0, .now = -INFINITY, .ttl = ttl, .max_keys = max_keys};
    if (fq_dd_init(&d, ttl, (uint64_t)max_keys, exact, mask)) FAIL("init");
    d.head_seq = first_seq;
    double now = 0.0;
    uint32_t nkeys = 2 + (uint32_t)(rnd() % (3 * MAXK));
    for (long i = 0; i < ops; i++) {
        uint64_t op = rnd() % 100;
        uint32_t key = (uint32_t)(rnd() % nkeys);
        uint64_t fp = fp_of(key, seed);
        if (op < 10) now += (double)(rnd() % 4) * 0.5;
        else if (op < 11) now -= 1.0;                          /* clamped by both */
        fq_dd_advance(&d, now);
        ref_advance(&r, now);
        if (op < 55) {
            int got = fq_dd_seen(&d, fp, &key, 4), want = ref_seen(&r, key);
            if (got != want) FAIL("seen key %u op %ld: got %d want %d", key, i, got, want);
        } else if (op < 65) {
            uint64_t fps[8]; const unsigned char *kp[8]; size_t kl[8]; uint32_t keys[8];
            unsigned char out[8]; int err = 0, n = 1 + (int)(rnd() % 8);
            for (int j = 0; j < n; j++) {
                keys[j] = (uint32_t)(rnd() % nkeys); fps[j] = fp_of(keys[j], seed);
                kp[j] = (const unsigned char *)&keys[j]; kl[j] = 4;
            }
            if (fq_dd_seen_many(&d, fps, exact ? kp : NULL, kl, (size_t)n, out, &err) != (size_t)n) FAIL("seen_many");
            for (int j = 0; j < n; j++)
                if (out[j] != ref_seen(&r, keys[j])) FAIL("seen_many key %u op %ld", keys[j], i);
        } else if (op < 80) {
            if (fq_dd_contains(&d, fp, &key, 4) != (ref_find(&r, key) >= 0)) FAIL("contains %u op %ld", key, i);
        } else if (op < 92) {
            if (fq_dd_forget(&d, fp, &key, 4) != ref_forget(&r, key)) FAIL("forget %u op %ld", key, i);
        } else if (op < 93) {
            if (fq_dd_clear(&d)) FAIL("clear");
            r.n = 0;
        } else {                                                /* snapshot and restore */
            uint64_t size = fq_dd_snapshot_size(&d);
            unsigned char *buf = malloc(size);
            fq_dd_snapshot(&d, seed, 0, buf);
            fq_dd_header h; const char *why; int64_t pos;
            if (fq_dd_check(buf, size, &h, &why) >= 0) FAIL("own snapshot rejected: %s", why);
            fq_dedup nd;
            if (fq_dd_init(&nd, h.ttl, h.max_keys, h.exact, h.fp_mask)) FAIL("init");
            if (fq_dd_restore(&nd, buf, &h, d.now, 0.0, &pos, &why)) FAIL("restore: %s", why);
            fq_dd_free(&d);
            d = nd;
            free(buf);
        }
        if ((int)d.live != r.n) FAIL("len %u vs %d at op %ld", d.live, r.n, i);
    }
    fq_dd_free(&d);
    return ops;
}

/* ---- 3. damaged snapshots ---------------------------------------------------------------- */
static long damage_snapshots(void) {
    long cases = 0;
    for (int exact = 0; exact <= 1; exact++) {
        fq_dedup d;
        uint64_t seed = rnd();
        fq_dd_init(&d, 10.0, 40, exact, ~0ull);
        fq_dd_advance(&d, 1.0);
        for (uint32_t k = 0; k < 30; k++) { uint64_t fp = fp_of(k, seed); fq_dd_seen(&d, fp, &k, 4); }
        uint64_t size = fq_dd_snapshot_size(&d);
        unsigned char *buf = malloc(size), *bad = malloc(size);
        fq_dd_snapshot(&d, seed, 0, buf);
        for (uint64_t cut = 0; cut <= size; cut++) {             /* every truncation (exact size) */
            unsigned char *t = malloc(cut ? cut : 1);
            memcpy(t, buf, cut);
            fq_dd_header h; const char *why;
            int64_t pos = fq_dd_check(t, cut, &h, &why);
            if (cut < size && pos < 0) FAIL("truncated snapshot (%llu bytes) accepted", (unsigned long long)cut);
            free(t);
            cases++;
        }
        for (uint64_t bit = 0; bit < size * 8; bit++) {            /* every single-bit flip */
            memcpy(bad, buf, size);
            bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            fq_dd_header h; const char *why; int64_t pos;
            if (fq_dd_check(bad, size, &h, &why) < 0) FAIL("bit %llu flipped and accepted", (unsigned long long)bit);
            cases++;
        }
        free(buf); free(bad);
        fq_dd_free(&d);
    }
    return cases;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: dedup_harness SEED OPS\n"); return 2; }
    rng_state = strtoull(argv[1], NULL, 10) * 2654435761u + 1;
    long ops = atol(argv[2]);
    fq_crc32c_setup();
    long masks = check_masks(ops);
    long model = 0;
    for (int round = 0; round < 24; round++) {    /* 2-bit fingerprints only where exact */
        int exact = round % 3 != 0, bits = round % 3 == 2 ? 2 : 64;
        uint32_t first = (round & 1) ? FQ_DD_SEQ_LIMIT - 40 : 1;
        model += run_model(ops / 24, exact, bits, first);
    }
    long damaged = damage_snapshots();
    printf("OK masks=%ld model_ops=%ld damaged_snapshots=%ld\n", masks, model, damaged);
    return 0;
}
