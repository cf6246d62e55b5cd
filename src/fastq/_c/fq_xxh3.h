/* fq_xxh3.h - XXH3-64 (xxHash 0.8's XXH3_64bits / XXH3_64bits_withSeed), written from the
 * published algorithm description (xxhash_spec.md). The 192-byte default secret is a constant
 * of that specification. Tested bit-exact against the `xxhash` package (tests/conformance).
 * Portable C: little-endian reads (fq_endian.h); 64x64->128 multiply via __uint128_t where available.
 * No GIL needed. Groundwork for issue 4 (hash64 / partition / dedup windows). */
#ifndef FQ_XXH3_H
#define FQ_XXH3_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fq_endian.h"

#define FQ_P32_1 0x9E3779B1u
#define FQ_P32_2 0x85EBCA77u
#define FQ_P32_3 0xC2B2AE3Du
#define FQ_P64_1 0x9E3779B185EBCA87ull
#define FQ_P64_2 0xC2B2AE3D27D4EB4Full
#define FQ_P64_3 0x165667B19E3779F9ull
#define FQ_P64_4 0x85EBCA77C2B2AE63ull
#define FQ_P64_5 0x27D4EB2F165667C5ull
#define FQ_PMX_1 0x165667919E3779F9ull
#define FQ_PMX_2 0x9FB21C651E98DF25ull
#define FQ_XXH3_SECRET_BYTES 192

static const unsigned char fq_xxh3_secret[FQ_XXH3_SECRET_BYTES] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

static inline uint64_t fq_x_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* the 128-bit product of a and b, its two halves XORed */
static inline uint64_t fq_x_mulfold(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    __uint128_t p = (__uint128_t)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
#else
    uint64_t lo_lo = (a & 0xFFFFFFFFu) * (b & 0xFFFFFFFFu);
    uint64_t hi_lo = (a >> 32) * (b & 0xFFFFFFFFu);
    uint64_t lo_hi = (a & 0xFFFFFFFFu) * (b >> 32);
    uint64_t hi_hi = (a >> 32) * (b >> 32);
    uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
    uint64_t upper = (hi_lo >> 32) + (cross >> 32) + hi_hi;
    uint64_t lower = (cross << 32) | (lo_lo & 0xFFFFFFFFu);
    return lower ^ upper;
#endif
}

static inline uint64_t fq_x_avalanche64(uint64_t h) {      /* XXH64's final mix */
    h ^= h >> 33; h *= FQ_P64_2; h ^= h >> 29; h *= FQ_P64_3; h ^= h >> 32;
    return h;
}
static inline uint64_t fq_x_avalanche(uint64_t h) {        /* XXH3's */
    h ^= h >> 37; h *= FQ_PMX_1; h ^= h >> 32;
    return h;
}
static inline uint64_t fq_x_rrmxmx(uint64_t h, uint64_t len) {
    h ^= fq_x_rotl(h, 49) ^ fq_x_rotl(h, 24);
    h *= FQ_PMX_2; h ^= (h >> 35) + len; h *= FQ_PMX_2;
    return h ^ (h >> 28);
}
static inline uint64_t fq_x_mix16(const unsigned char *in, const unsigned char *sec, uint64_t seed) {
    return fq_x_mulfold(fq_ld64(in) ^ (fq_ld64(sec) + seed),
                        fq_ld64(in + 8) ^ (fq_ld64(sec + 8) - seed));
}

static uint64_t fq_x_len_0to16(const unsigned char *in, size_t len, const unsigned char *sec,
                               uint64_t seed) {
    if (len > 8) {
        uint64_t flip1 = (fq_ld64(sec + 24) ^ fq_ld64(sec + 32)) + seed;
        uint64_t flip2 = (fq_ld64(sec + 40) ^ fq_ld64(sec + 48)) - seed;
        uint64_t lo = fq_ld64(in) ^ flip1, hi = fq_ld64(in + len - 8) ^ flip2;
        return fq_x_avalanche(len + __builtin_bswap64(lo) + hi + fq_x_mulfold(lo, hi));
    }
    if (len >= 4) {
        seed ^= (uint64_t)__builtin_bswap32((uint32_t)seed) << 32;
        uint64_t in1 = fq_ld32(in), in2 = fq_ld32(in + len - 4);
        uint64_t flip = (fq_ld64(sec + 8) ^ fq_ld64(sec + 16)) - seed;
        return fq_x_rrmxmx((in2 + (in1 << 32)) ^ flip, len);
    }
    if (len > 0) {
        uint32_t c1 = in[0], c2 = in[len >> 1], c3 = in[len - 1];
        uint32_t combined = (c1 << 16) | (c2 << 24) | c3 | ((uint32_t)len << 8);
        uint64_t flip = (uint64_t)(fq_ld32(sec) ^ fq_ld32(sec + 4)) + seed;
        return fq_x_avalanche64((uint64_t)combined ^ flip);
    }
    return fq_x_avalanche64(seed ^ (fq_ld64(sec + 56) ^ fq_ld64(sec + 64)));
}

static uint64_t fq_x_len_17to128(const unsigned char *in, size_t len, const unsigned char *sec,
                                 uint64_t seed) {
    uint64_t acc = len * FQ_P64_1;
    if (len > 32) {
        if (len > 64) {
            if (len > 96) {
                acc += fq_x_mix16(in + 48, sec + 96, seed);
                acc += fq_x_mix16(in + len - 64, sec + 112, seed);
            }
            acc += fq_x_mix16(in + 32, sec + 64, seed);
            acc += fq_x_mix16(in + len - 48, sec + 80, seed);
        }
        acc += fq_x_mix16(in + 16, sec + 32, seed);
        acc += fq_x_mix16(in + len - 32, sec + 48, seed);
    }
    acc += fq_x_mix16(in, sec, seed);
    acc += fq_x_mix16(in + len - 16, sec + 16, seed);
    return fq_x_avalanche(acc);
}

static uint64_t fq_x_len_129to240(const unsigned char *in, size_t len, const unsigned char *sec,
                                  uint64_t seed) {
    uint64_t acc = len * FQ_P64_1, end;
    size_t rounds = len / 16, i;
    for (i = 0; i < 8; i++) acc += fq_x_mix16(in + 16 * i, sec + 16 * i, seed);
    end = fq_x_mix16(in + len - 16, sec + 136 - 17, seed);
    acc = fq_x_avalanche(acc);
    for (i = 8; i < rounds; i++) end += fq_x_mix16(in + 16 * i, sec + 16 * (i - 8) + 3, seed);
    return fq_x_avalanche(acc + end);
}

static inline void fq_x_stripe(uint64_t *acc, const unsigned char *in, const unsigned char *sec) {
    for (int i = 0; i < 8; i++) {
        uint64_t v = fq_ld64(in + 8 * i), k = v ^ fq_ld64(sec + 8 * i);
        acc[i ^ 1] += v;
        acc[i] += (uint64_t)(uint32_t)k * (k >> 32);
    }
}
static inline void fq_x_scramble(uint64_t *acc, const unsigned char *sec) {
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47; a ^= fq_ld64(sec + 8 * i); a *= FQ_P32_1;
        acc[i] = a;
    }
}

static uint64_t fq_x_long(const unsigned char *in, size_t len, const unsigned char *sec) {
    uint64_t acc[8] = {FQ_P32_3, FQ_P64_1, FQ_P64_2, FQ_P64_3, FQ_P64_4, FQ_P32_2, FQ_P64_5,
                       FQ_P32_1};
    const size_t per_block = (FQ_XXH3_SECRET_BYTES - 64) / 8;          /* 16 stripes */
    const size_t block = 64 * per_block;
    size_t blocks = (len - 1) / block, b, s;
    for (b = 0; b < blocks; b++) {
        for (s = 0; s < per_block; s++) fq_x_stripe(acc, in + b * block + s * 64, sec + s * 8);
        fq_x_scramble(acc, sec + FQ_XXH3_SECRET_BYTES - 64);
    }
    size_t stripes = ((len - 1) - block * blocks) / 64;
    for (s = 0; s < stripes; s++) fq_x_stripe(acc, in + blocks * block + s * 64, sec + s * 8);
    fq_x_stripe(acc, in + len - 64, sec + FQ_XXH3_SECRET_BYTES - 64 - 7);
    uint64_t r = (uint64_t)len * FQ_P64_1;
    for (int i = 0; i < 4; i++)
        r += fq_x_mulfold(acc[2 * i] ^ fq_ld64(sec + 11 + 16 * i),
                          acc[2 * i + 1] ^ fq_ld64(sec + 11 + 16 * i + 8));
    return fq_x_avalanche(r);
}

/* XXH3-64 of len bytes with a seed (seed 0 is plain XXH3_64bits). */
static uint64_t fq_xxh3_64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *in = (const unsigned char *)data;
    if (len <= 16) return fq_x_len_0to16(in, len, fq_xxh3_secret, seed);
    if (len <= 128) return fq_x_len_17to128(in, len, fq_xxh3_secret, seed);
    if (len <= 240) return fq_x_len_129to240(in, len, fq_xxh3_secret, seed);
    if (seed == 0) return fq_x_long(in, len, fq_xxh3_secret);
    unsigned char custom[FQ_XXH3_SECRET_BYTES];       /* the seed folded into the secret */
    for (int i = 0; i < FQ_XXH3_SECRET_BYTES / 16; i++) {
        fq_st64(custom + 16 * i, fq_ld64(fq_xxh3_secret + 16 * i) + seed);
        fq_st64(custom + 16 * i + 8, fq_ld64(fq_xxh3_secret + 16 * i + 8) - seed);
    }
    return fq_x_long(in, len, custom);
}

#endif /* FQ_XXH3_H */
