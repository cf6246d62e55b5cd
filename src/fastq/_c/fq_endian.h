/* fq_endian.h - little-endian loads and stores at any alignment (every on-disk and hashed
 * format in fastq is little-endian, whatever the host). */
#ifndef FQ_ENDIAN_H
#define FQ_ENDIAN_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#  define FQ_LE16(v) __builtin_bswap16(v)
#  define FQ_LE32(v) __builtin_bswap32(v)
#  define FQ_LE64(v) __builtin_bswap64(v)
#else
#  define FQ_LE16(v) (v)
#  define FQ_LE32(v) (v)
#  define FQ_LE64(v) (v)
#endif

static inline uint16_t fq_ld16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return FQ_LE16(v); }
static inline uint32_t fq_ld32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return FQ_LE32(v); }
static inline uint64_t fq_ld64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return FQ_LE64(v); }
static inline void fq_st32(unsigned char *p, uint32_t v) { v = FQ_LE32(v); memcpy(p, &v, 4); }
static inline void fq_st64(unsigned char *p, uint64_t v) { v = FQ_LE64(v); memcpy(p, &v, 8); }

#endif /* FQ_ENDIAN_H */
