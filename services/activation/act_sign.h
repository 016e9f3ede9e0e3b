/* act_sign: the webhook signature (docs/activation.md).
 *
 * Every webhook request carries
 *   X-Cdp-Signature: t=<unix seconds>,v1=<64 lowercase hex chars>
 * where v1 = HMAC-SHA256(key = the destination's secret,
 *                        message = "<t>." followed by the exact body bytes).
 * A receiver recomputes v1 over the body it received, compares in constant
 * time, and refuses a t older (or newer) than its tolerance (we suggest 300 s)
 * so a captured request cannot be replayed later. Computed with libsodium. */
#ifndef ACT_SIGN_H
#define ACT_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define ACT_SIGN_HEADER "X-Cdp-Signature"
/* "t=" + up to 20 digits + ",v1=" + 64 hex + NUL */
enum { ACT_SIGN_VALUE_MAX = 96, ACT_SIGN_DEFAULT_TOLERANCE_S = 300 };

/* Initialises libsodium; call once before the others. Returns 0 or -1. */
int act_sign_init(void);

/* Writes the header value for body signed at unix time t_s into out
 * (ACT_SIGN_VALUE_MAX bytes). Returns 0, or -1 on bad arguments. */
int act_sign(const char *secret, size_t secretlen, int64_t t_s, const void *body, size_t bodylen,
             char out[ACT_SIGN_VALUE_MAX]);

typedef enum {
    ACT_SIGN_OK = 0,
    ACT_SIGN_MALFORMED,   /* header not "t=<digits>,v1=<64 hex>" */
    ACT_SIGN_STALE,       /* |now - t| > tolerance */
    ACT_SIGN_MISMATCH,    /* wrong secret or altered body */
} act_sign_result;

/* Verifies a header value as a receiver would (the tests and receivers
 * written in C use it). */
act_sign_result act_sign_verify(const char *secret, size_t secretlen, const char *header,
                                const void *body, size_t bodylen, int64_t now_s,
                                int tolerance_s);

#endif
