/* fq_crc32c.h - CRC-32C (Castagnoli), written from its definition: reflected polynomial
 * 0x82F63B78, initial value and final XOR 0xFFFFFFFF (as iSCSI / RFC 3720, ext4, Kafka).
 *
 *   fq_crc32c(crc, data, n)     continue a CRC (start with crc = 0): fastest available path
 *   fq_crc32c_sw(crc, data, n)  the portable path (slicing-by-8 tables), always available
 *
 * x86-64 uses the SSE4.2 `crc32` instruction and Linux/aarch64 the ARMv8 `crc32c*`
 * instructions when the CPU has them (checked once at run time); everything else uses the
 * tables. Both are tested bit-exact against the `crc32c` package.
 * No GIL needed. */
#ifndef FQ_CRC32C_H
#define FQ_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fq_endian.h"

#define FQ_CRC32C_POLY 0x82F63B78u   /* 0x1EDC6F41 bit-reversed */

static uint32_t fq_crc32c_table[8][256];

/* Table k maps a byte to its CRC contribution k bytes further down the stream. */
static void fq_crc32c_init_tables(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++) c = (c >> 1) ^ (FQ_CRC32C_POLY & (0u - (c & 1u)));
        fq_crc32c_table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            fq_crc32c_table[k][b] = (fq_crc32c_table[k - 1][b] >> 8)
                                    ^ fq_crc32c_table[0][fq_crc32c_table[k - 1][b] & 0xFFu];
}

static uint32_t fq_crc32c_sw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    /* the tables are filled by the module at import (fq_crc32c_setup); never lazily here,
     * so concurrent callers cannot race on them */
    while (n && ((uintptr_t)p & 7)) { c = (c >> 8) ^ fq_crc32c_table[0][(c ^ *p++) & 0xFFu]; n--; }
    while (n >= 8) {
        uint64_t w = fq_ld64(p) ^ c;
        c = fq_crc32c_table[7][w & 0xFF] ^ fq_crc32c_table[6][(w >> 8) & 0xFF]
          ^ fq_crc32c_table[5][(w >> 16) & 0xFF] ^ fq_crc32c_table[4][(w >> 24) & 0xFF]
          ^ fq_crc32c_table[3][(w >> 32) & 0xFF] ^ fq_crc32c_table[2][(w >> 40) & 0xFF]
          ^ fq_crc32c_table[1][(w >> 48) & 0xFF] ^ fq_crc32c_table[0][w >> 56];
        p += 8; n -= 8;
    }
    while (n--) c = (c >> 8) ^ fq_crc32c_table[0][(c ^ *p++) & 0xFFu];
    return ~c;
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#  include <nmmintrin.h>
#  define FQ_CRC32C_HAVE_HW 1
__attribute__((target("sse4.2")))
static uint32_t fq_crc32c_hw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = (uint32_t)~crc;
    while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    while (n >= 8) { c = _mm_crc32_u64(c, fq_ld64(p)); p += 8; n -= 8; }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
static int fq_crc32c_use_hw;
static void fq_crc32c_setup(void) {
    fq_crc32c_init_tables();
    __builtin_cpu_init();
    fq_crc32c_use_hw = __builtin_cpu_supports("sse4.2");
}
#elif defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
/* ARMv8 CRC extension: crc32c{b,d} instructions (optional in ARMv8.0, so probed at run time) */
#  include <sys/auxv.h>
#  ifndef HWCAP_CRC32
#    define HWCAP_CRC32 (1 << 7)
#  endif
#  define FQ_CRC32C_HAVE_HW 1
__attribute__((target("+crc")))
static uint32_t fq_crc32c_hw(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_aarch64_crc32cb(c, *p++); n--; }
    while (n >= 8) { c = __builtin_aarch64_crc32cx(c, fq_ld64(p)); p += 8; n -= 8; }
    while (n--) c = __builtin_aarch64_crc32cb(c, *p++);
    return ~c;
}
static int fq_crc32c_use_hw;
static void fq_crc32c_setup(void) {
    fq_crc32c_init_tables();
    fq_crc32c_use_hw = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
}
#else
#  define FQ_CRC32C_HAVE_HW 0
static const int fq_crc32c_use_hw = 0;
static uint32_t fq_crc32c_hw(uint32_t crc, const void *data, size_t n) { return fq_crc32c_sw(crc, data, n); }
static void fq_crc32c_setup(void) { fq_crc32c_init_tables(); }
#endif

static inline uint32_t fq_crc32c(uint32_t crc, const void *data, size_t n) {
    return fq_crc32c_use_hw ? fq_crc32c_hw(crc, data, n) : fq_crc32c_sw(crc, data, n);
}

#endif /* FQ_CRC32C_H */
