/* fq_log.h - the SegmentLog format (docs/log-format.md, version 1): pure functions that encode,
 * validate and scan segments in memory, plus the few file primitives the log needs.
 *
 * The decoder side (fq_seg_header_check, fq_rec_check, fq_seg_scan) reads only the bytes it is
 * given, never trusts a length before checking it against the limit, and keeps no state: it is
 * the function the corruption fuzzers drive. No GIL needed anywhere in this file. */
#ifndef FQ_LOG_H
#define FQ_LOG_H

#include "fq_atomic.h"          /* first: it sets _GNU_SOURCE before any system header */
#include "fq_crc32c.h"
#include "fq_endian.h"
#include "fq_park.h"
#include <errno.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FQ_SEG_VERSION      1u
#define FQ_SEG_HEADER_BYTES 256u          /* the static header, CRC'd, never rewritten */
#define FQ_SEG_META_AT      4096u         /* the mutable page: checkpoints + published hint */
#define FQ_SEG_DATA_AT      8192u         /* first record */
#define FQ_SEG_MIN_BYTES    16384u
#define FQ_SEG_MAX_BYTES    (1ull << 32)
#define FQ_REC_HEADER       32u
#define FQ_REC_MAGIC        0x5146u
#define FQ_REC_VERSION      1u
#define FQ_REC_CRC_XOR      0x46515243u
#define FQ_NO_KEY           0xFFFFFFFFu
#define FQ_REC_DATA         0u
#define FQ_REC_GAP          1u
#define FQ_INDEX_EVERY      4096u         /* one sparse-index entry per this many bytes */
#define FQ_HINT_SEALED      (1ull << 63)

/* wall-clock nanoseconds since the epoch: the default record timestamp */
static inline int64_t fq_wall_ns(void) {
#if defined(_WIN32)
    FILETIME ft; GetSystemTimePreciseAsFileTime(&ft);
    uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;   /* 100 ns since 1601 */
    return (int64_t)((t - 116444736000000000ull) * 100u);
#else
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
}

static const unsigned char fq_seg_magic[8] = {'F', 'Q', 'L', 'O', 'G', 'S', 'E', 'G'};

static inline uint64_t fq_rec_size(uint64_t key_len, uint64_t value_len) {
    return (FQ_REC_HEADER + key_len + value_len + 7u) & ~(uint64_t)7u;
}

/* ---- segment header ---- */
static void fq_seg_header_write(unsigned char *h, uint64_t base_offset, uint64_t seg_bytes,
                                int64_t created_ns) {
    memset(h, 0, FQ_SEG_HEADER_BYTES);
    memcpy(h, fq_seg_magic, 8);
    fq_st32(h + 8, FQ_SEG_VERSION);
    fq_st32(h + 12, FQ_SEG_HEADER_BYTES);
    fq_st64(h + 16, base_offset);
    fq_st64(h + 24, seg_bytes);
    fq_st64(h + 32, (uint64_t)created_ns);
    fq_st32(h + 40, 0);
    fq_st32(h + 44, fq_crc32c(0, h, 44));
}

enum {
    FQ_HDR_OK = 0, FQ_HDR_SHORT, FQ_HDR_MAGIC, FQ_HDR_CRC, FQ_HDR_VERSION, FQ_HDR_SIZE,
    FQ_HDR_BYTES
};

/* Validate a segment header in the first `len` bytes of a file. On success sets the base
 * offset and the declared segment size. The version is checked after the CRC, so a newer
 * version is reported only for a header that is intact. */
static int fq_seg_header_check(const unsigned char *h, uint64_t len, uint64_t *base_offset,
                               uint64_t *seg_bytes, uint32_t *version) {
    if (len < FQ_SEG_HEADER_BYTES) return FQ_HDR_SHORT;
    if (memcmp(h, fq_seg_magic, 8) != 0) return FQ_HDR_MAGIC;
    if (fq_ld32(h + 44) != fq_crc32c(0, h, 44)) return FQ_HDR_CRC;
    *version = fq_ld32(h + 8);
    if (*version != FQ_SEG_VERSION) return FQ_HDR_VERSION;
    if (fq_ld32(h + 12) != FQ_SEG_HEADER_BYTES) return FQ_HDR_SIZE;
    *base_offset = fq_ld64(h + 16);
    *seg_bytes = fq_ld64(h + 24);
    if (*seg_bytes < FQ_SEG_MIN_BYTES || *seg_bytes > FQ_SEG_MAX_BYTES || (*seg_bytes & 7u))
        return FQ_HDR_BYTES;
    return FQ_HDR_OK;
}

/* ---- checkpoint slots (in the mutable page) ---- */
static void fq_ckpt_write(unsigned char *meta, uint64_t seq, uint64_t pos, uint64_t next_offset) {
    unsigned char s[32];
    fq_st64(s, seq); fq_st64(s + 8, pos); fq_st64(s + 16, next_offset); fq_st32(s + 24, 0);
    fq_st32(s + 28, fq_crc32c(0, s, 28));
    memcpy(meta + 32 * (seq & 1u), s, 32);
}

/* The valid slot with the highest seq; returns 0 when neither slot is valid. */
static int fq_ckpt_read(const unsigned char *meta, uint64_t *seq, uint64_t *pos,
                        uint64_t *next_offset) {
    int found = 0;
    for (int i = 0; i < 2; i++) {
        const unsigned char *s = meta + 32 * i;
        uint64_t q = fq_ld64(s);
        if (q == 0 || fq_ld32(s + 24) != 0 || fq_ld32(s + 28) != fq_crc32c(0, s, 28)) continue;
        if (!found || q > *seq) {
            *seq = q; *pos = fq_ld64(s + 8); *next_offset = fq_ld64(s + 16); found = 1;
        }
    }
    return found;
}

/* ---- records ---- */
static inline uint32_t fq_rec_crc(const unsigned char *r, uint64_t body) {
    return fq_crc32c(0, r + 4, (size_t)(FQ_REC_HEADER - 4 + body)) ^ FQ_REC_CRC_XOR;
}

/* Write one record at r (the caller checked it fits). The CRC is computed over the bytes as
 * they landed in r, so a source buffer mutated meanwhile cannot yield a mismatching record.
 * key_len == FQ_NO_KEY means "no key". Returns the record's size including padding. */
static inline uint64_t fq_rec_write(unsigned char *r, uint64_t offset, int64_t ts,
                                    const void *key, uint32_t key_len,
                                    const void *value, uint32_t value_len, unsigned type) {
    uint64_t klen = key_len == FQ_NO_KEY ? 0 : key_len;
    fq_st32(r + 4, value_len);
    fq_st64(r + 8, offset);
    fq_st64(r + 16, (uint64_t)ts);
    fq_st32(r + 24, key_len);
    r[28] = (unsigned char)(FQ_REC_MAGIC & 0xFF); r[29] = (unsigned char)(FQ_REC_MAGIC >> 8);
    r[30] = (unsigned char)type; r[31] = FQ_REC_VERSION;
    if (klen && key) memcpy(r + FQ_REC_HEADER, key, (size_t)klen);
    if (value_len && value) memcpy(r + FQ_REC_HEADER + klen, value, value_len);   /* NULL: already in place */
    uint64_t body = klen + value_len, size = fq_rec_size(klen, value_len);
    for (uint64_t i = FQ_REC_HEADER + body; i < size; i++) r[i] = 0;
    fq_st32(r, fq_rec_crc(r, body));
    return size;
}

typedef struct {
    uint64_t offset;       /* first offset this record covers */
    uint64_t next;         /* offset after it (offset + 1, or offset + count for a gap) */
    int64_t timestamp;
    uint64_t key_at;       /* absolute positions in the segment */
    uint64_t value_at;
    uint32_t key_len;      /* FQ_NO_KEY when absent */
    uint32_t value_len;
    uint64_t size;         /* with padding */
    unsigned type;
} fq_rec;

enum {
    FQ_REC_OK = 0, FQ_REC_ZERO, FQ_REC_SHORT, FQ_REC_BAD_MAGIC, FQ_REC_BAD_VERSION,
    FQ_REC_BAD_TYPE, FQ_REC_BAD_LENGTH, FQ_REC_BAD_CRC, FQ_REC_BAD_OFFSET
};

static const char *fq_rec_reason(int rc) {
    switch (rc) {
    case FQ_REC_ZERO: return "zero-filled record header";
    case FQ_REC_SHORT: return "record header runs past the end of the file";
    case FQ_REC_BAD_MAGIC: return "bad record magic";
    case FQ_REC_BAD_VERSION: return "unknown record version";
    case FQ_REC_BAD_TYPE: return "unknown record type";
    case FQ_REC_BAD_LENGTH: return "record length runs past the end of the segment";
    case FQ_REC_BAD_CRC: return "record CRC mismatch";
    case FQ_REC_BAD_OFFSET: return "record offset is not the expected next offset";
    default: return "valid";
    }
}

/* Decode and validate the record at `pos` of a segment whose valid bytes end at `limit`.
 * `expected` is the offset it must carry. Reads nothing outside [pos, limit). */
static int fq_rec_check(const unsigned char *seg, uint64_t pos, uint64_t limit,
                        uint64_t expected, fq_rec *out) {
    if (pos > limit || limit - pos < FQ_REC_HEADER) {
        if (pos < limit) {
            const unsigned char *r = seg + pos;
            for (uint64_t i = 0; i < limit - pos; i++) if (r[i]) return FQ_REC_SHORT;
            return FQ_REC_ZERO;
        }
        return FQ_REC_SHORT;
    }
    const unsigned char *r = seg + pos;
    if (fq_ld16(r + 28) != FQ_REC_MAGIC) {
        for (int i = 0; i < (int)FQ_REC_HEADER; i++) if (r[i]) return FQ_REC_BAD_MAGIC;
        return FQ_REC_ZERO;
    }
    if (r[31] != FQ_REC_VERSION) return FQ_REC_BAD_VERSION;
    unsigned type = r[30];
    if (type != FQ_REC_DATA && type != FQ_REC_GAP) return FQ_REC_BAD_TYPE;
    uint32_t vlen = fq_ld32(r + 4), klen_raw = fq_ld32(r + 24);
    uint64_t klen = klen_raw == FQ_NO_KEY ? 0 : klen_raw;
    uint64_t room = limit - pos - FQ_REC_HEADER;
    if (klen > room || vlen > room - klen) return FQ_REC_BAD_LENGTH;
    if (fq_ld32(r) != fq_rec_crc(r, klen + vlen)) return FQ_REC_BAD_CRC;
    uint64_t off = fq_ld64(r + 8);
    int64_t ts = (int64_t)fq_ld64(r + 16);
    if (off != expected) return FQ_REC_BAD_OFFSET;
    uint64_t next = off + 1;
    if (type == FQ_REC_GAP) {
        if (ts < 0 || klen_raw != FQ_NO_KEY || (uint64_t)ts > UINT64_MAX - off) return FQ_REC_BAD_TYPE;
        next = off + (uint64_t)ts;
    }
    uint64_t size = fq_rec_size(klen, vlen);
    if (size > limit - pos) size = limit - pos;     /* padding cut by the file end: harmless */
    out->offset = off; out->next = next; out->timestamp = ts;
    out->key_at = pos + FQ_REC_HEADER; out->value_at = pos + FQ_REC_HEADER + klen;
    out->key_len = klen_raw; out->value_len = vlen; out->size = size; out->type = type;
    return FQ_REC_OK;
}

/* ---- the sparse index: one entry per FQ_INDEX_EVERY bytes, kept in memory, rebuilt by scan ---- */
typedef struct {
    uint64_t offset;       /* the record starting at pos */
    uint64_t pos;
    int64_t max_ts_before; /* largest timestamp of the segment's records before this one */
} fq_idx_entry;

typedef struct {
    fq_idx_entry *e;
    size_t n, cap;
    int64_t max_ts;        /* largest timestamp in the segment (INT64_MIN when none) */
    uint64_t count;        /* data records */
} fq_index;

static inline void fq_index_init(fq_index *ix) {
    ix->e = NULL; ix->n = ix->cap = 0; ix->max_ts = INT64_MIN; ix->count = 0;
}
static inline void fq_index_free(fq_index *ix) { free(ix->e); fq_index_init(ix); }

/* Note one record (in position order). Returns -1 only when memory runs out. */
static inline int fq_index_note(fq_index *ix, uint64_t offset, uint64_t pos, int64_t ts, int data) {
    if (ix->n == 0 || pos >= ix->e[ix->n - 1].pos + FQ_INDEX_EVERY) {
        if (ix->n == ix->cap) {
            size_t cap = ix->cap ? ix->cap * 2 : 16;
            fq_idx_entry *e = (fq_idx_entry *)realloc(ix->e, cap * sizeof(*e));
            if (!e) return -1;
            ix->e = e; ix->cap = cap;
        }
        fq_idx_entry *x = &ix->e[ix->n++];
        x->offset = offset; x->pos = pos; x->max_ts_before = ix->max_ts;
    }
    if (data) {
        ix->count++;
        if (ts > ix->max_ts) ix->max_ts = ts;
    }
    return 0;
}

/* Last entry with offset <= target (index must be non-empty and e[0].offset <= target). */
static inline const fq_idx_entry *fq_index_seek(const fq_index *ix, uint64_t target) {
    size_t lo = 0, hi = ix->n;
    while (hi - lo > 1) { size_t mid = (lo + hi) / 2; if (ix->e[mid].offset <= target) lo = mid; else hi = mid; }
    return &ix->e[lo];
}

/* Last entry whose max_ts_before < ts: every record before it has a smaller timestamp. */
static inline const fq_idx_entry *fq_index_seek_time(const fq_index *ix, int64_t ts) {
    size_t lo = 0, hi = ix->n;
    while (hi - lo > 1) { size_t mid = (lo + hi) / 2; if (ix->e[mid].max_ts_before < ts) lo = mid; else hi = mid; }
    return &ix->e[lo];
}

/* ---- scanning ---- */
typedef struct {
    uint64_t pos;          /* where the valid records end */
    uint64_t next;         /* offset after the last valid record */
    uint64_t records;      /* records (data and gap) scanned */
    int status;            /* FQ_REC_* of the record that stopped the scan (ZERO/SHORT at a clean end) */
} fq_scan;

/* Validate records from `pos` (carrying `expected`) until one fails or `limit` is reached,
 * noting each in `ix` when it is not NULL. Returns -1 when the index runs out of memory. */
static int fq_seg_scan(const unsigned char *seg, uint64_t pos, uint64_t limit, uint64_t expected,
                       fq_index *ix, fq_scan *out) {
    fq_rec rec;
    int rc = FQ_REC_ZERO;
    uint64_t n = 0;
    while (pos < limit) {
        rc = fq_rec_check(seg, pos, limit, expected, &rec);
        if (rc != FQ_REC_OK) break;
        if (ix && fq_index_note(ix, rec.offset, pos, rec.timestamp, rec.type == FQ_REC_DATA)) return -1;
        pos += rec.size; expected = rec.next; n++;
        rc = FQ_REC_ZERO;
    }
    out->pos = pos; out->next = expected; out->records = n; out->status = rc;
    return 0;
}

/* For repair: the first 8-aligned position in (pos, limit) holding a record that validates
 * with an offset in (after, before). Returns limit when there is none. */
static uint64_t fq_seg_resync(const unsigned char *seg, uint64_t pos, uint64_t limit,
                              uint64_t after, uint64_t before, uint64_t *found_offset) {
    fq_rec rec;
    for (pos = (pos + 8) & ~(uint64_t)7; pos + FQ_REC_HEADER <= limit; pos += 8) {
        if (fq_ld16(seg + pos + 28) != FQ_REC_MAGIC) continue;
        uint64_t off = fq_ld64(seg + pos + 8);
        if (off <= after || off >= before) continue;
        if (fq_rec_check(seg, pos, limit, off, &rec) == FQ_REC_OK) { *found_offset = off; return pos; }
    }
    return limit;
}

/* A gap record over [pos, pos + span) (span >= 32, a multiple of 8): it drops `count` offsets
 * starting at `offset` (count 0: pure padding). The body is zeroed. */
static void fq_gap_write(unsigned char *r, uint64_t offset, uint64_t count, uint64_t span) {
    memset(r + FQ_REC_HEADER, 0, (size_t)(span - FQ_REC_HEADER));
    fq_rec_write(r, offset, (int64_t)count, NULL, FQ_NO_KEY, NULL,
                 (uint32_t)(span - FQ_REC_HEADER), FQ_REC_GAP);
}

/* Where padding written at `end` should stop so the next record starts on a fresh page
 * (a page holding durable records is never written again: a torn rewrite could destroy them).
 * Returns end when no padding is needed or none fits (the next append then rolls). */
static inline uint64_t fq_pad_target(uint64_t end, uint64_t seg_bytes) {
    if ((end & 4095u) == 0) return end;
    uint64_t t = (end + 4095u) & ~(uint64_t)4095u;
    if (t - end < FQ_REC_HEADER) t += 4096u;
    if (t > seg_bytes) t = seg_bytes & ~(uint64_t)7u;
    return t >= end + FQ_REC_HEADER ? t : end;
}

/* One past the last non-zero byte in [from, to), or `from` when the range is all zero. */
static uint64_t fq_last_nonzero(const unsigned char *m, uint64_t from, uint64_t to) {
    while (to > from) {
        uint64_t blk = (to - 1) & ~(uint64_t)4095u;
        if (blk < from) blk = from;
        const unsigned char *p = m + blk;
        uint64_t n = to - blk;
        while (n && p[n - 1] == 0) n--;
        if (n) return blk + n;
        to = blk;
    }
    return from;
}

/* ---- batch append: as many records as fit, one after another ---- */
typedef struct { const void *p; int64_t len; } fq_span;    /* len -1: absent (keys only) */

/* Writes records i = 0.. while they fit below `limit`; returns how many. Updates *pos, *next.
 * *oom is set when the index could not grow (the records written so far are complete). */
static uint64_t fq_seg_write_batch(unsigned char *map, uint64_t *pos, uint64_t limit,
                                   uint64_t *next, fq_index *ix, const fq_span *vals,
                                   const fq_span *keys, const int64_t *ts, int64_t ts_default,
                                   uint64_t n, int *oom) {
    uint64_t p = *pos, off = *next, i = 0;
    for (; i < n; i++) {
        int64_t kl = keys ? keys[i].len : -1;
        uint64_t size = fq_rec_size(kl < 0 ? 0 : (uint64_t)kl, (uint64_t)vals[i].len);
        if (size > limit - p) break;
        int64_t t = ts ? ts[i] : ts_default;
        fq_rec_write(map + p, off, t, kl < 0 ? NULL : keys[i].p,
                     kl < 0 ? FQ_NO_KEY : (uint32_t)kl, vals[i].p, (uint32_t)vals[i].len,
                     FQ_REC_DATA);
        if (fq_index_note(ix, off, p, t, 1)) { p += size; off++; i++; *oom = 1; break; }
        p += size; off++;
    }
    *pos = p; *next = off;
    return i;
}

/* ---- the published hint (advisory; other-process readers poll it) ---- */
static inline void fq_hint_store(unsigned char *meta, uint64_t pos, uint64_t next) {
    /* next first, then pos with release: a reader that acquires pos sees a next >= its own */
    fq_store64((fq_atomic_u64 *)(void *)(meta + 72), next, FQ_RELAXED);
    fq_store64((fq_atomic_u64 *)(void *)(meta + 64), pos, FQ_RELEASE);
}
static inline uint64_t fq_hint_pos(const unsigned char *meta) {
    return fq_load64((fq_atomic_u64 *)(void *)(meta + 64), FQ_ACQUIRE);
}

/* Reader pins on a segment (live Records): retention never deletes a pinned segment. GIL
 * builds change them only with the GIL held; free-threaded builds use relaxed atomics (the
 * count is advisory: a pin taken right after the check simply keeps the mapping alive). */
static inline void fq_pin_add(long *p, long d) {
#if defined(FQ_SERIALIZED_MOVERS)
    *p += d;
#else
    __atomic_add_fetch(p, d, __ATOMIC_RELAXED);
#endif
}
static inline long fq_pin_load(long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* parkers live on the heap so extension types can hold them by pointer */
static fq_parker *fq_parker_new(void) {
    fq_parker *p = (fq_parker *)malloc(sizeof(fq_parker));
    if (p && fq_parker_init(p)) { free(p); p = NULL; }
    return p;
}
static void fq_parker_free(fq_parker *p) { if (p) { fq_parker_destroy(p); free(p); } }

/* ---- file primitives: each returns 0 or an errno ---- */
#if !defined(_WIN32)
#  include <fcntl.h>
#  include <sys/file.h>
#  include <sys/mman.h>
#  include <sys/stat.h>
#  include <unistd.h>

static int fq_file_preallocate(int fd, uint64_t size) {
#if defined(__linux__)
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc == 0 || (rc != EINVAL && rc != EOPNOTSUPP)) return rc;
#endif
    /* no fallocate here (or the filesystem refuses it): write zeros, so space is really held */
    struct stat st;
    if (fstat(fd, &st)) return errno;
    static const char zeros[65536];
    for (uint64_t at = (uint64_t)st.st_size; at < size;) {
        size_t n = size - at < sizeof(zeros) ? (size_t)(size - at) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, (off_t)at);
        if (w < 0) { if (errno == EINTR) continue; return errno; }
        if (w == 0) return ENOSPC;
        at += (uint64_t)w;
    }
    return 0;
}

/* Map `len` bytes of fd shared; returns 0 or an errno. */
static int fq_map_file(int fd, uint64_t len, int writable, unsigned char **out) {
    void *m = mmap(NULL, (size_t)len, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return errno;
    *out = (unsigned char *)m;
    return 0;
}
static void fq_unmap(unsigned char *m, uint64_t len) { if (m) munmap(m, (size_t)len); }

/* Fault in [from, to) of a writable mapping in one call (MADV_POPULATE_WRITE, Linux 5.14+).
 * Taking the page faults of a preallocated (unwritten-extent) file one 4 KiB page at a time
 * costs several times more than populating megabytes at once. Best effort: returns 0 when
 * the kernel cannot do it (the pages then fault in on first write as usual). */
static int fq_populate_ok = 1;
static void fq_map_populate(unsigned char *m, uint64_t from, uint64_t to) {
#if defined(__linux__)
#  ifndef MADV_POPULATE_WRITE
#    define MADV_POPULATE_WRITE 23
#  endif
    if (!fq_populate_ok || to <= from) return;
    uint64_t a = from & ~(uint64_t)4095u;
    if (madvise(m + a, (size_t)(to - a), MADV_POPULATE_WRITE) != 0 && (errno == EINVAL || errno == ENOSYS))
        fq_populate_ok = 0;
#else
    (void)m; (void)from; (void)to;
#endif
}
/* After sealing: the writer's own mapping becomes read-only, so a stray store faults loudly
 * instead of corrupting data (F22). */
static void fq_map_readonly(unsigned char *m, uint64_t len) { if (m) mprotect(m, (size_t)len, PROT_READ); }
static int fq_lock_file(int fd) { return flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno; }
static int fq_pread_all(int fd, unsigned char *buf, uint64_t n, uint64_t at, uint64_t *got) {
    uint64_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, buf + done, (size_t)(n - done), (off_t)(at + done));
        if (r < 0) { if (errno == EINTR) continue; return errno; }
        if (r == 0) break;
        done += (uint64_t)r;
    }
    *got = done;
    return 0;
}
static int fq_file_size(int fd, uint64_t *size) {
    struct stat st;
    if (fstat(fd, &st)) return errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

static int fq_file_sync(int fd) {
#if defined(__APPLE__)
    if (fcntl(fd, F_FULLFSYNC) == 0) return 0;
#endif
    return fsync(fd) == 0 ? 0 : errno;
}

static int fq_dir_sync(const char *dir) {
    int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd < 0) return errno;
    int rc = fq_file_sync(fd);
    close(fd);
    return rc == EINVAL ? 0 : rc;          /* some filesystems cannot sync a directory */
}

/* msync the byte range [from, to) of a mapping (rounded out to pages); on macOS the data only
 * reaches the medium with F_FULLFSYNC on the file, so fd must be given there. */
static int fq_map_sync(unsigned char *map, uint64_t from, uint64_t to, int fd) {
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t a = from & ~(page - 1);
    if (to <= a) return 0;
    if (msync(map + a, (size_t)(to - a), MS_SYNC) != 0) return errno;
#if defined(__APPLE__)
    if (fd >= 0 && fcntl(fd, F_FULLFSYNC) != 0) return errno;
#else
    (void)fd;
#endif
    return 0;
}
#else
/* Windows: the segment log needs mmap/flock equivalents that are not written yet; every
 * primitive reports ENOSYS and SegmentLog raises OSError at open. */
static int fq_file_preallocate(int fd, uint64_t size) { (void)fd; (void)size; return ENOSYS; }
static int fq_map_file(int fd, uint64_t len, int w, unsigned char **out) { (void)fd; (void)len; (void)w; (void)out; return ENOSYS; }
static void fq_map_populate(unsigned char *m, uint64_t from, uint64_t to) { (void)m; (void)from; (void)to; }
static void fq_unmap(unsigned char *m, uint64_t len) { (void)m; (void)len; }
static void fq_map_readonly(unsigned char *m, uint64_t len) { (void)m; (void)len; }
static int fq_lock_file(int fd) { (void)fd; return ENOSYS; }
static int fq_pread_all(int fd, unsigned char *b, uint64_t n, uint64_t at, uint64_t *got) { (void)fd; (void)b; (void)n; (void)at; *got = 0; return ENOSYS; }
static int fq_file_size(int fd, uint64_t *size) { (void)fd; *size = 0; return ENOSYS; }
static int fq_file_sync(int fd) { (void)fd; return ENOSYS; }
static int fq_dir_sync(const char *dir) { (void)dir; return ENOSYS; }
static int fq_map_sync(unsigned char *m, uint64_t a, uint64_t b, int fd) { (void)m; (void)a; (void)b; (void)fd; return ENOSYS; }
#endif

#endif /* FQ_LOG_H */
