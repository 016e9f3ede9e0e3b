/* act_sign: the webhook signature, HMAC-SHA256 with libsodium (see act_sign.h).
 *
 * The header value has exactly one spelling for a given (t, body, secret):
 * "t=" the decimal t without sign or leading zeros, ",v1=" and the MAC as 64
 * lowercase hex digits. The verifier accepts only that spelling, so the
 * text a receiver feeds into the MAC ("<t>.") is the text we signed. */
#include "act_sign.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define ACT_SIGN_T_PREFIX "t="
#define ACT_SIGN_V1_PREFIX ",v1="
enum {
    ACT_SIGN_MAC_HEX = 2 * crypto_auth_hmacsha256_BYTES, /* 64 */
    ACT_SIGN_T_DIGITS_MAX = 19,                          /* INT64_MAX has 19 digits */
    ACT_SIGN_T_TEXT_MAX = ACT_SIGN_T_DIGITS_MAX + 2,     /* digits, '.', NUL */
};

int act_sign_init(void)
{
    return sodium_init() < 0 ? -1 : 0; /* 1 means "already initialised" */
}

/* mac = HMAC-SHA256(secret, "<t>." || body). libsodium's HMAC state takes a
 * key of any length (a key over the 64-byte block is hashed first, as RFC
 * 2104 says). */
static void act__mac(const char *secret, size_t secretlen, int64_t t_s, const void *body,
                     size_t bodylen, unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    char t_text[ACT_SIGN_T_TEXT_MAX];
    int n = snprintf(t_text, sizeof t_text, "%" PRId64 ".", t_s);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, secretlen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)t_text, (unsigned long long)n);
    if (bodylen > 0)
        crypto_auth_hmacsha256_update(&st, body, bodylen);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

/* An empty secret would make the signature a checksum anyone can compute:
 * refuse to sign with one, and let nothing verify against one. */
static int act__args_ok(const char *secret, size_t secretlen, const void *body, size_t bodylen)
{
    return secret != NULL && secretlen > 0 && (body != NULL || bodylen == 0);
}

int act_sign(const char *secret, size_t secretlen, int64_t t_s, const void *body, size_t bodylen,
             char out[ACT_SIGN_VALUE_MAX])
{
    if (out == NULL || t_s < 0 || !act__args_ok(secret, secretlen, body, bodylen))
        return -1;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char hex[ACT_SIGN_MAC_HEX + 1];
    act__mac(secret, secretlen, t_s, body, bodylen, mac);
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac); /* lowercase */
    snprintf(out, ACT_SIGN_VALUE_MAX, ACT_SIGN_T_PREFIX "%" PRId64 ACT_SIGN_V1_PREFIX "%s", t_s,
             hex);
    return 0;
}

/* ------------------------------------------------------------------ parsing */

/* Parses "t=<digits>,v1=<64 lowercase hex>" and nothing else: no spaces,
 * signs, leading zeros, uppercase hex, other versions or trailing bytes.
 * Returns 0 with *t_s and mac set, or -1. */
static int act__parse(const char *header, int64_t *t_s,
                      unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    const char *p = header;
    if (strncmp(p, ACT_SIGN_T_PREFIX, strlen(ACT_SIGN_T_PREFIX)) != 0)
        return -1;
    p += strlen(ACT_SIGN_T_PREFIX);
    int64_t t = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == 1 && t == 0)
            return -1; /* leading zero */
        int d = *p - '0';
        if (t > (INT64_MAX - d) / 10)
            return -1; /* does not fit */
        t = t * 10 + d;
    }
    if (digits == 0 || strncmp(p, ACT_SIGN_V1_PREFIX, strlen(ACT_SIGN_V1_PREFIX)) != 0)
        return -1;
    p += strlen(ACT_SIGN_V1_PREFIX);
    for (int i = 0; i < ACT_SIGN_MAC_HEX; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return -1; /* also stops at the NUL of a short value */
    if (p[ACT_SIGN_MAC_HEX] != '\0')
        return -1;
    size_t maclen = 0;
    if (sodium_hex2bin(mac, crypto_auth_hmacsha256_BYTES, p, ACT_SIGN_MAC_HEX, NULL, &maclen,
                       NULL) != 0 ||
        maclen != crypto_auth_hmacsha256_BYTES)
        return -1;
    *t_s = t;
    return 0;
}

/* |now - t| > tolerance, without overflow for any int64 now and t >= 0. */
static int act__stale(int64_t t_s, int64_t now_s, int tolerance_s)
{
    uint64_t tol = tolerance_s > 0 ? (uint64_t)tolerance_s : 0;
    uint64_t diff = t_s > now_s ? (uint64_t)t_s - (uint64_t)now_s
                                : (uint64_t)now_s - (uint64_t)t_s;
    return diff > tol;
}

/* The MAC is checked before the time: STALE then means "genuine, but
 * outside the window" (a replay or a skewed clock), never a forgery. */
act_sign_result act_sign_verify(const char *secret, size_t secretlen, const char *header,
                                const void *body, size_t bodylen, int64_t now_s,
                                int tolerance_s)
{
    int64_t t_s;
    unsigned char got[crypto_auth_hmacsha256_BYTES], want[crypto_auth_hmacsha256_BYTES];
    if (header == NULL || act__parse(header, &t_s, got) != 0)
        return ACT_SIGN_MALFORMED;
    if (!act__args_ok(secret, secretlen, body, bodylen))
        return ACT_SIGN_MISMATCH;
    act__mac(secret, secretlen, t_s, body, bodylen, want);
    if (crypto_verify_32(got, want) != 0)
        return ACT_SIGN_MISMATCH;
    return act__stale(t_s, now_s, tolerance_s) ? ACT_SIGN_STALE : ACT_SIGN_OK;
}
