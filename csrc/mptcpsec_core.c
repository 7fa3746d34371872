/* mptcpsec C core: see mptcpsec_core.h for the contract. */
#include "mptcpsec_core.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

struct mps_aead {
    EVP_CIPHER_CTX *evp;
    uint8_t iv[MPS_IV_LEN];
    uint64_t counter;
    int encrypt;
    int failed;
};

size_t mps_key_len(int alg)
{
    switch (alg) {
    case MPS_AES_128_GCM: return 16;
    case MPS_AES_256_GCM: return 32;
    case MPS_CHACHA20_POLY1305: return 32;
    default: return 0;
    }
}

static const EVP_CIPHER *cipher_for(int alg)
{
    switch (alg) {
    case MPS_AES_128_GCM: return EVP_aes_128_gcm();
    case MPS_AES_256_GCM: return EVP_aes_256_gcm();
    case MPS_CHACHA20_POLY1305: return EVP_chacha20_poly1305();
    default: return NULL;
    }
}

mps_aead *mps_aead_new(int alg, const uint8_t *key, size_t key_len,
                       const uint8_t *iv, size_t iv_len, int encrypt, int *err)
{
    int dummy;
    mps_aead *ctx;
    const EVP_CIPHER *cipher = cipher_for(alg);

    if (err == NULL)
        err = &dummy;
    if (cipher == NULL) { *err = MPS_ERR_ALG; return NULL; }
    if (key == NULL || key_len != mps_key_len(alg)) { *err = MPS_ERR_KEYLEN; return NULL; }
    if (iv == NULL || iv_len != MPS_IV_LEN) { *err = MPS_ERR_IVLEN; return NULL; }

    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL) { *err = MPS_ERR_NOMEM; return NULL; }
    ctx->evp = EVP_CIPHER_CTX_new();
    if (ctx->evp == NULL) { OPENSSL_free(ctx); *err = MPS_ERR_NOMEM; return NULL; }
    ctx->encrypt = encrypt ? 1 : 0;
    memcpy(ctx->iv, iv, MPS_IV_LEN);
    /* Keyed once; every record then sets only its nonce. 12 bytes is the default
     * IV length of all three ciphers, so no SET_IVLEN control is needed. */
    if (EVP_CipherInit_ex(ctx->evp, cipher, NULL, key, NULL, ctx->encrypt) != 1) {
        mps_aead_free(ctx);
        *err = MPS_ERR_CRYPTO;
        return NULL;
    }
    *err = MPS_OK;
    return ctx;
}

void mps_aead_free(mps_aead *ctx)
{
    if (ctx == NULL)
        return;
    EVP_CIPHER_CTX_free(ctx->evp); /* cleanses the expanded key */
    OPENSSL_clear_free(ctx, sizeof(*ctx));
}

uint64_t mps_aead_counter(const mps_aead *ctx) { return ctx ? ctx->counter : 0; }
int mps_aead_failed(const mps_aead *ctx) { return ctx ? ctx->failed : 1; }

int mps_aead_set_counter(mps_aead *ctx, uint64_t counter)
{
    if (ctx == NULL) return MPS_ERR_ARG;
    ctx->counter = counter;
    return MPS_OK;
}

static void make_nonce(const mps_aead *ctx, uint64_t counter, uint8_t nonce[MPS_IV_LEN])
{
    int i;
    memcpy(nonce, ctx->iv, MPS_IV_LEN);
    for (i = 0; i < 8; i++)
        nonce[MPS_IV_LEN - 1 - i] ^= (uint8_t)(counter >> (8 * i));
}

/* Seal one record body; lengths already checked by the caller (pt_len <= INT_MAX). */
static int seal_one(mps_aead *ctx, uint64_t counter, const uint8_t *ad, size_t ad_len,
                    const uint8_t *pt, size_t pt_len, uint8_t *out)
{
    uint8_t nonce[MPS_IV_LEN];
    int n = 0, fin = 0;

    make_nonce(ctx, counter, nonce);
    if (EVP_EncryptInit_ex(ctx->evp, NULL, NULL, NULL, nonce) != 1) return MPS_ERR_CRYPTO;
    if (ad_len && EVP_EncryptUpdate(ctx->evp, NULL, &n, ad, (int)ad_len) != 1)
        return MPS_ERR_CRYPTO;
    if (pt_len && EVP_EncryptUpdate(ctx->evp, out, &n, pt, (int)pt_len) != 1)
        return MPS_ERR_CRYPTO;
    if (EVP_EncryptFinal_ex(ctx->evp, out + n, &fin) != 1) return MPS_ERR_CRYPTO;
    if (EVP_CIPHER_CTX_ctrl(ctx->evp, EVP_CTRL_AEAD_GET_TAG, MPS_TAG_LEN, out + pt_len) != 1)
        return MPS_ERR_CRYPTO;
    return MPS_OK;
}

/* Open one record body (ct_len includes the tag, >= 16); out may equal ct. */
static int open_one(mps_aead *ctx, uint64_t counter, const uint8_t *ad, size_t ad_len,
                    const uint8_t *ct, size_t ct_len, uint8_t *out)
{
    uint8_t nonce[MPS_IV_LEN];
    uint8_t tag[MPS_TAG_LEN];
    size_t body = ct_len - MPS_TAG_LEN;
    int n = 0, fin = 0;

    memcpy(tag, ct + body, MPS_TAG_LEN); /* in-place decryption must not clobber it */
    make_nonce(ctx, counter, nonce);
    if (EVP_DecryptInit_ex(ctx->evp, NULL, NULL, NULL, nonce) != 1) return MPS_ERR_CRYPTO;
    if (ad_len && EVP_DecryptUpdate(ctx->evp, NULL, &n, ad, (int)ad_len) != 1)
        return MPS_ERR_CRYPTO;
    if (body && EVP_DecryptUpdate(ctx->evp, out, &n, ct, (int)body) != 1)
        return MPS_ERR_CRYPTO;
    if (EVP_CIPHER_CTX_ctrl(ctx->evp, EVP_CTRL_AEAD_SET_TAG, MPS_TAG_LEN, tag) != 1)
        return MPS_ERR_CRYPTO;
    if (EVP_DecryptFinal_ex(ctx->evp, out + n, &fin) != 1) {
        OPENSSL_cleanse(out, body); /* never leave unauthenticated plaintext behind */
        return MPS_ERR_AUTH;
    }
    return MPS_OK;
}

long mps_seal(mps_aead *ctx, uint64_t counter, const uint8_t *ad, size_t ad_len,
              const uint8_t *pt, size_t pt_len, uint8_t *out, size_t out_cap)
{
    int rc;
    if (ctx == NULL || out == NULL || (ad_len && ad == NULL) || (pt_len && pt == NULL))
        return MPS_ERR_ARG;
    if (!ctx->encrypt) return MPS_ERR_DIRECTION;
    if (ctx->failed) return MPS_ERR_FAILED;
    if (pt_len > MPS_MAX_SINGLE || ad_len > MPS_MAX_SINGLE) return MPS_ERR_TOOBIG;
    if (out_cap < pt_len + MPS_TAG_LEN) return MPS_ERR_SHORT;
    rc = seal_one(ctx, counter, ad, ad_len, pt, pt_len, out);
    if (rc != MPS_OK) { ctx->failed = 1; return rc; }
    return (long)(pt_len + MPS_TAG_LEN);
}

long mps_open(mps_aead *ctx, uint64_t counter, const uint8_t *ad, size_t ad_len,
              const uint8_t *ct, size_t ct_len, uint8_t *out, size_t out_cap)
{
    int rc;
    if (ctx == NULL || ct == NULL || (ad_len && ad == NULL)) return MPS_ERR_ARG;
    if (ctx->encrypt) return MPS_ERR_DIRECTION;
    if (ctx->failed) return MPS_ERR_FAILED;
    if (ct_len > MPS_MAX_SINGLE || ad_len > MPS_MAX_SINGLE) return MPS_ERR_TOOBIG;
    if (ct_len < MPS_TAG_LEN) return MPS_ERR_BODYLEN;
    if (out_cap < ct_len - MPS_TAG_LEN || (ct_len > MPS_TAG_LEN && out == NULL))
        return MPS_ERR_SHORT;
    /* A single open with an explicit counter is stateless: a failure does not
     * disable the object, so callers may probe (e.g. trial decryption). */
    rc = open_one(ctx, counter, ad, ad_len, ct, ct_len, out);
    if (rc != MPS_OK) return rc;
    return (long)(ct_len - MPS_TAG_LEN);
}

static void put_header(uint8_t *h, uint8_t type, uint8_t flags, size_t opt_len, size_t body_len)
{
    h[0] = MPS_VERSION;
    h[1] = type;
    h[2] = flags;
    h[3] = (uint8_t)opt_len;
    h[4] = (uint8_t)(body_len >> 8);
    h[5] = (uint8_t)body_len;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

long mps_seal_batch(mps_aead *ctx, const mps_rec_in *recs, size_t n,
                    const uint8_t *opts, size_t opts_len,
                    const uint8_t *pt, size_t pt_len,
                    uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t i, total = 0, pos = 0;
    int rc;

    if (ctx == NULL || out_len == NULL || (n && recs == NULL)) return MPS_ERR_ARG;
    *out_len = 0;
    if (!ctx->encrypt) return MPS_ERR_DIRECTION;
    if (ctx->failed) return MPS_ERR_FAILED;
    if (n > UINT64_MAX - ctx->counter) return MPS_ERR_COUNTER;
    for (i = 0; i < n; i++) {
        const mps_rec_in *r = &recs[i];
        if (r->opt_len > MPS_MAX_OPT_LEN || r->pt_len > MPS_MAX_PLAINTEXT) return MPS_ERR_TOOBIG;
        if ((size_t)r->opt_off > opts_len || r->opt_len > opts_len - r->opt_off) return MPS_ERR_ARG;
        if ((size_t)r->pt_off > pt_len || r->pt_len > pt_len - r->pt_off) return MPS_ERR_ARG;
        if ((r->opt_len && opts == NULL) || (r->pt_len && pt == NULL)) return MPS_ERR_ARG;
        total += MPS_HEADER_LEN + r->opt_len + r->pt_len + MPS_TAG_LEN;
    }
    if (out == NULL || out_cap < total) return n ? MPS_ERR_SHORT : 0;
    for (i = 0; i < n; i++) {
        const mps_rec_in *r = &recs[i];
        uint8_t *h = out + pos;
        size_t ad_len = MPS_HEADER_LEN + r->opt_len;
        put_header(h, r->type, r->flags, r->opt_len, r->pt_len + MPS_TAG_LEN);
        if (r->opt_len) memcpy(h + MPS_HEADER_LEN, opts + r->opt_off, r->opt_len);
        rc = seal_one(ctx, ctx->counter, h, ad_len, r->pt_len ? pt + r->pt_off : NULL,
                      r->pt_len, h + ad_len);
        if (rc != MPS_OK) { ctx->failed = 1; return rc; }
        ctx->counter++;
        pos += ad_len + r->pt_len + MPS_TAG_LEN;
    }
    *out_len = pos;
    return (long)n;
}

long mps_seal_chunks(mps_aead *ctx, uint8_t type, uint8_t flags,
                     const uint8_t *opts, size_t opt_len,
                     size_t seq_off, uint64_t seq_base, size_t len_off,
                     const uint8_t *pt, size_t pt_len, size_t chunk,
                     uint8_t *out, size_t out_cap, size_t *out_len)
{
    size_t nrec, total, off, pos = 0, i;
    int rc;

    if (ctx == NULL || out_len == NULL || (opt_len && opts == NULL) || (pt_len && pt == NULL))
        return MPS_ERR_ARG;
    *out_len = 0;
    if (!ctx->encrypt) return MPS_ERR_DIRECTION;
    if (ctx->failed) return MPS_ERR_FAILED;
    if (chunk == 0) return MPS_ERR_ARG;
    if (chunk > MPS_MAX_PLAINTEXT || opt_len > MPS_MAX_OPT_LEN) return MPS_ERR_TOOBIG;
    if (seq_off != MPS_NO_PATCH && (opt_len < 8 || seq_off > opt_len - 8)) return MPS_ERR_ARG;
    if (len_off != MPS_NO_PATCH && (opt_len < 2 || len_off > opt_len - 2)) return MPS_ERR_ARG;
    nrec = pt_len ? (pt_len + chunk - 1) / chunk : 1; /* empty input: one empty record */
    if (nrec > UINT64_MAX - ctx->counter) return MPS_ERR_COUNTER;
    if (nrec > (SIZE_MAX - pt_len) / (MPS_HEADER_LEN + opt_len + MPS_TAG_LEN))
        return MPS_ERR_TOOBIG;
    total = pt_len + nrec * (MPS_HEADER_LEN + opt_len + MPS_TAG_LEN);
    if (out == NULL || out_cap < total) return MPS_ERR_SHORT;
    for (i = 0, off = 0; i < nrec; i++) {
        size_t len = pt_len - off < chunk ? pt_len - off : chunk;
        uint8_t *h = out + pos;
        size_t ad_len = MPS_HEADER_LEN + opt_len;
        put_header(h, type, flags, opt_len, len + MPS_TAG_LEN);
        if (opt_len) memcpy(h + MPS_HEADER_LEN, opts, opt_len);
        if (seq_off != MPS_NO_PATCH) put_be64(h + MPS_HEADER_LEN + seq_off, seq_base + off);
        if (len_off != MPS_NO_PATCH) {
            h[MPS_HEADER_LEN + len_off] = (uint8_t)(len >> 8);
            h[MPS_HEADER_LEN + len_off + 1] = (uint8_t)len;
        }
        rc = seal_one(ctx, ctx->counter, h, ad_len, len ? pt + off : NULL, len, h + ad_len);
        if (rc != MPS_OK) { ctx->failed = 1; return rc; }
        ctx->counter++;
        pos += ad_len + len + MPS_TAG_LEN;
        off += len;
    }
    *out_len = pos;
    return (long)nrec;
}

long mps_open_batch(mps_aead *ctx, uint8_t *buf, size_t len, uint8_t *out, size_t out_cap,
                    size_t max_body, uint32_t allowed_types,
                    uint32_t stop_after, uint32_t stop_before,
                    mps_rec_out *recs, size_t max_recs,
                    size_t *consumed, int *err)
{
    size_t pos = 0, n = 0;
    int dummy;

    if (err == NULL) err = &dummy;
    *err = MPS_OK;
    if (consumed) *consumed = 0;
    if (ctx == NULL || consumed == NULL || (len && buf == NULL) || (max_recs && recs == NULL)) {
        *err = MPS_ERR_ARG;
        return 0;
    }
    if (ctx->encrypt) { *err = MPS_ERR_DIRECTION; return 0; }
    if (ctx->failed) { *err = MPS_ERR_FAILED; return 0; }
    if (out != NULL && out_cap < len) { *err = MPS_ERR_SHORT; return 0; }
    if (max_body > MPS_MAX_BODY_LEN) max_body = MPS_MAX_BODY_LEN;

    while (n < max_recs && len - pos >= MPS_HEADER_LEN) {
        const uint8_t *h = buf + pos;
        size_t opt_len = h[3];
        size_t body_len = ((size_t)h[4] << 8) | h[5];
        size_t ad_len = MPS_HEADER_LEN + opt_len;
        size_t rec_len = ad_len + body_len;
        int rc;

        if (h[0] != MPS_VERSION) { *err = MPS_ERR_VERSION; break; }
        if (h[1] < 32 && (stop_before & (UINT32_C(1) << h[1]))) break; /* for the caller */
        if (h[1] >= 32 || !(allowed_types & (UINT32_C(1) << h[1]))) { *err = MPS_ERR_TYPE; break; }
        if (body_len > max_body) { *err = MPS_ERR_TOOBIG; break; }
        if (body_len < MPS_TAG_LEN) { *err = MPS_ERR_BODYLEN; break; }
        if (len - pos < rec_len) break; /* incomplete: wait for more bytes */
        if (ctx->counter == UINT64_MAX) { *err = MPS_ERR_COUNTER; break; }
        rc = open_one(ctx, ctx->counter, h, ad_len, buf + pos + ad_len, body_len,
                      (out ? out : buf) + pos + ad_len);
        if (rc != MPS_OK) { *err = rc; break; }
        ctx->counter++;
        recs[n].offset = (uint32_t)pos;
        recs[n].info = (uint32_t)h[1] | (uint32_t)h[2] << 8 | (uint32_t)opt_len << 16;
        recs[n].pt_len = (uint32_t)(body_len - MPS_TAG_LEN);
        n++;
        pos += rec_len;
        if (stop_after & (UINT32_C(1) << h[1])) break; /* h[1] < 32: checked above */
        if (pos > UINT32_MAX - (MPS_HEADER_LEN + MPS_MAX_OPT_LEN + MPS_MAX_BODY_LEN)) break;
    }
    if (*err != MPS_OK) ctx->failed = 1;
    *consumed = pos;
    return (long)n;
}

int mps_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                    uint8_t *out, size_t out_len)
{
    uint8_t full[32];
    unsigned int full_len = 0;
    if ((key_len && key == NULL) || (msg_len && msg == NULL) || out == NULL) return MPS_ERR_ARG;
    if (out_len == 0 || out_len > 32) return MPS_ERR_ARG;
    if (key_len > INT_MAX) return MPS_ERR_TOOBIG;
    if (HMAC(EVP_sha256(), key_len ? key : (const uint8_t *)"", (int)key_len,
             msg_len ? msg : (const uint8_t *)"", msg_len, full, &full_len) == NULL)
        return MPS_ERR_CRYPTO;
    memcpy(out, full, out_len);
    OPENSSL_cleanse(full, sizeof(full));
    return MPS_OK;
}

int mps_ct_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    if (len == 0) return 1;
    if (a == NULL || b == NULL) return 0;
    return CRYPTO_memcmp(a, b, len) == 0;
}

void mps_wipe(uint8_t *buf, size_t len)
{
    if (buf != NULL && len) OPENSSL_cleanse(buf, len);
}
