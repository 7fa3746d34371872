/*
 * mptcpsec C core: per-record AEAD and option authentication on the hot path.
 *
 * One mps_aead object per (subflow, direction), keyed once; per record only the
 * nonce (IV XOR 64-bit record counter, right-aligned, big-endian) is set.
 * Record layout (papers/SPEC.md):
 *   header (6 bytes: version, type, flags, opt_len, body_len[2] big-endian)
 *   || options (opt_len bytes) || ciphertext || tag (16 bytes)
 * body_len = ciphertext length + 16. AD = header || options.
 */
#ifndef MPTCPSEC_CORE_H
#define MPTCPSEC_CORE_H

#include <stddef.h>
#include <stdint.h>

#define MPS_HEADER_LEN 6
#define MPS_TAG_LEN 16
#define MPS_IV_LEN 12
#define MPS_VERSION 1
#define MPS_MAX_OPT_LEN 255
#define MPS_MAX_BODY_LEN 65535
#define MPS_MAX_PLAINTEXT (MPS_MAX_BODY_LEN - MPS_TAG_LEN)
#define MPS_MAX_SINGLE 0x3fffffff /* single-call seal/open limit (bytes) */
#define MPS_NO_PATCH ((size_t)-1)

enum mps_alg {
    MPS_AES_128_GCM = 1,
    MPS_AES_256_GCM = 2,
    MPS_CHACHA20_POLY1305 = 3
};

enum mps_err {
    MPS_OK = 0,
    MPS_ERR_ARG = -1,       /* NULL pointer or inconsistent argument */
    MPS_ERR_ALG = -2,       /* unknown algorithm */
    MPS_ERR_KEYLEN = -3,    /* key length does not match the algorithm */
    MPS_ERR_IVLEN = -4,     /* IV is not 12 bytes */
    MPS_ERR_NOMEM = -5,     /* allocation failed */
    MPS_ERR_CRYPTO = -6,    /* libcrypto reported an internal failure */
    MPS_ERR_AUTH = -7,      /* tag did not verify */
    MPS_ERR_TOOBIG = -8,    /* a length is over its limit */
    MPS_ERR_SHORT = -9,     /* output buffer too small / input truncated */
    MPS_ERR_VERSION = -10,  /* record header has an unknown version */
    MPS_ERR_TYPE = -11,     /* record type not accepted here */
    MPS_ERR_COUNTER = -12,  /* record counter exhausted */
    MPS_ERR_DIRECTION = -13,/* seal on an opener or open on a sealer */
    MPS_ERR_BODYLEN = -14,  /* body shorter than the tag */
    MPS_ERR_FAILED = -15    /* object refused further use after a failure */
};

typedef struct mps_aead mps_aead;

/* One record to seal: its type and flags, options at opts[opt_off:opt_off+opt_len],
 * plaintext at pt[pt_off:pt_off+pt_len]. 16 bytes, no padding. */
typedef struct {
    uint8_t type;
    uint8_t flags;
    uint16_t opt_len;
    uint32_t opt_off;
    uint32_t pt_off;
    uint32_t pt_len;
} mps_rec_in;

/* One opened record: header offset in the buffer, its fixed fields packed as
 * info = type | flags << 8 | opt_len << 16, and the plaintext length. The plaintext
 * starts at offset + 6 + opt_len. Three 32-bit words, so callers can read the array
 * as a flat word array. */
typedef struct {
    uint32_t offset;
    uint32_t info;
    uint32_t pt_len;
} mps_rec_out;

mps_aead *mps_aead_new(int alg, const uint8_t *key, size_t key_len,
                       const uint8_t *iv, size_t iv_len, int encrypt, int *err);
void mps_aead_free(mps_aead *ctx);
uint64_t mps_aead_counter(const mps_aead *ctx);
int mps_aead_set_counter(mps_aead *ctx, uint64_t counter);
int mps_aead_failed(const mps_aead *ctx);
size_t mps_key_len(int alg);

/* Single record with an explicit counter; returns bytes written or an mps_err. */
long mps_seal(mps_aead *ctx, uint64_t counter, const uint8_t *ad, size_t ad_len,
              const uint8_t *pt, size_t pt_len, uint8_t *out, size_t out_cap);
long mps_open(mps_aead *ctx, uint64_t counter, const uint8_t *ad, size_t ad_len,
              const uint8_t *ct, size_t ct_len, uint8_t *out, size_t out_cap);

/* Seal n records (internal counter, advanced by n) into out; returns n or an mps_err.
 * Every descriptor is checked before anything is written. */
long mps_seal_batch(mps_aead *ctx, const mps_rec_in *recs, size_t n,
                    const uint8_t *opts, size_t opts_len,
                    const uint8_t *pt, size_t pt_len,
                    uint8_t *out, size_t out_cap, size_t *out_len);

/* Cut pt into records of at most chunk bytes, all with the same type, flags and
 * options template. If seq_off != MPS_NO_PATCH, the big-endian u64 at that offset of
 * each record's options is set to seq_base + the record's first byte offset in pt;
 * if len_off != MPS_NO_PATCH, the big-endian u16 there is set to its length.
 * Returns the number of records or an mps_err. */
long mps_seal_chunks(mps_aead *ctx, uint8_t type, uint8_t flags,
                     const uint8_t *opts, size_t opt_len,
                     size_t seq_off, uint64_t seq_base, size_t len_off,
                     const uint8_t *pt, size_t pt_len, size_t chunk,
                     uint8_t *out, size_t out_cap, size_t *out_len);

/* Parse and open every complete record in buf[0:len]. Plaintexts are written in place
 * (out == NULL) or at the same offsets of out (out_cap >= len). Stops at the first
 * failure: *err gets its code and the return value (n records opened) is its index.
 * A record is complete when its whole body is present; a header announcing a body over
 * max_body, an unknown version or a type not in allowed_types (bit t set for type t)
 * fails as soon as its 6 header bytes are present. The batch also ends, without error,
 * after opening a record whose type is in stop_after (its successors may need another
 * key) and before a record whose type is in stop_before (left unopened for the caller,
 * e.g. an unprotected JOIN record). *consumed = end of the last opened record. After a
 * failure the object refuses further use (MPS_ERR_FAILED). */
long mps_open_batch(mps_aead *ctx, uint8_t *buf, size_t len, uint8_t *out, size_t out_cap,
                    size_t max_body, uint32_t allowed_types,
                    uint32_t stop_after, uint32_t stop_before,
                    mps_rec_out *recs, size_t max_recs,
                    size_t *consumed, int *err);

/* HMAC-SHA256 of msg under key, truncated to out_len (1..32) bytes. */
int mps_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t *out, size_t out_len);
/* 1 if equal, 0 if not; time independent of the contents. */
int mps_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);
void mps_wipe(uint8_t *buf, size_t len);

#endif
