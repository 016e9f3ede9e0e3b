/* act_core: the pure rules of activation (docs/activation.md), with no I/O,
 * so the unit tests (tests/unit/test_activation_core.c) cover them without
 * a network:
 *
 *   - destination validation and defaults (field-named errors);
 *   - trigger matching of a segment change;
 *   - the change-stream entry parser (the contract with segmentation);
 *   - delivery ids (the idempotency key of one destination x one change);
 *   - the retry backoff (exponential with full jitter);
 *   - what an HTTP answer means for a delivery. */
#ifndef ACT_CORE_H
#define ACT_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "cdp/v1/activation.pb-c.h"

/* Limits of the API and the defaults of a destination. */
enum {
    ACT_ID_MAX = 64,                  /* [A-Za-z0-9_.-]{1,64} */
    ACT_ERR_MAX = 256,                /* status message buffer */
    ACT_SECRET_MIN = 16,              /* bytes of a webhook secret */
    ACT_SECRET_MAX = 1024,
    ACT_URL_MAX = 2048,
    ACT_NAME_MAX = 256,
    ACT_CHANNEL_MAX = 64,
    ACT_PURPOSE_MAX = 64,
    ACT_MAX_TRIGGERS = 64,
    ACT_MAX_EVENT_NAMES = 64,         /* per trigger */
    ACT_EVENT_NAME_MAX = 256,
    ACT_DEFAULT_MAX_ATTEMPTS = 8,
    ACT_MAX_MAX_ATTEMPTS = 100,
    ACT_DEFAULT_TIMEOUT_MS = 10000,
    ACT_MIN_TIMEOUT_MS = 100,
    ACT_MAX_TIMEOUT_MS = 60000,
    ACT_DEFAULT_MAX_IN_FLIGHT = 8,
    ACT_MAX_MAX_IN_FLIGHT = 256,
    /* change stream entries */
    ACT_CHANGE_MAX_EVENTS = 256,
    /* "<destination id>:" + 32 hex digits + NUL */
    ACT_DELIVERY_HASH_HEX = 32,
    ACT_DELIVERY_ID_MAX = ACT_ID_MAX + 1 + ACT_DELIVERY_HASH_HEX + 1,
};

#define ACT_DEFAULT_PURPOSE "marketing"
/* The channel consent is checked for when a webhook names none. */
#define ACT_WEBHOOK_CHANNEL "webhook"

/* 1 when s matches [A-Za-z0-9_.-]{1,64}. */
int act_id_valid(const char *s);

/* Checks a destination as given by CreateDestination or UpdateDestination
 * and fills in the defaults (purpose, max_attempts, timeout_ms,
 * max_in_flight). The id is checked only when not empty (the caller
 * generates one for a create). When keep_secret is set an empty secret is
 * accepted (UpdateDestination keeps the stored one). d must be a message
 * unpacked with protobuf-c's default allocator (the defaults it sets are
 * malloc'd strings that protobuf_c_message_free_unpacked frees). Returns 0,
 * or -1 with err naming the field and the reason (also on out of memory). */
int act_dest_validate(Cdp__V1__Destination *d, int keep_secret, char *err, size_t errlen);

/* Replaces a string field of an unpacked message by a copy of v (the old
 * value is freed unless it is protobuf-c's shared empty string). Returns 0
 * or -1 on out of memory (the field is then unchanged). */
int act_str_set(char **field, const char *v);

/* The consent channel of a destination: its channel, or "webhook". */
const char *act_dest_channel(const Cdp__V1__Destination *d);

/* 1 when the trigger fires for a change of `kind` in `segment` caused by
 * the events ev[0..n_ev): same kind, same segment, and when the trigger
 * names events, at least one of ev among them. */
int act_trigger_matches(const Cdp__V1__Trigger *t, Cdp__V1__ChangeKind kind, const char *segment,
                        char *const *ev, size_t n_ev);

/* 1 when the destination is enabled and one of its triggers matches. */
int act_dest_matches(const Cdp__V1__Destination *d, Cdp__V1__ChangeKind kind,
                     const char *segment, char *const *ev, size_t n_ev);

/* ------------------------------------------------------------------ changes */

/* One entry of the segmentation change stream cdp:seg:{changes}:log. */
typedef struct {
    char *cid;                 /* "<segment>:<master>:<n>" */
    char *seg;
    char *master;
    Cdp__V1__ChangeKind kind;
    int64_t at_ms;
    char *mid;                 /* message id; may be "" */
    char **ev;                 /* event names */
    size_t n_ev;
} act_change;

/* Parses the fields of a stream entry, given as n alternating names and
 * values (the reply layout of XREADGROUP). Required: cid, seg, m, kind
 * ("entered" | "exited"); optional: at (ms; 0 when missing), ev (a JSON
 * array of strings), mid. Returns 0, or -1 with err saying which field is
 * missing or malformed (c is then cleared). */
int act_change_parse(act_change *c, char *const *kv, const size_t *kvlen, size_t n, char *err,
                     size_t errlen);
void act_change_clear(act_change *c);

/* ------------------------------------------------------------------ deliveries */

/* The delivery id of (destination, change): "<destination>:" followed by 32
 * hex digits of a BLAKE2b hash of both. Every replica and every re-read of
 * the change derive the same id; it is the webhook's Idempotency-Key.
 * Returns 0, or -1 if the destination id is not valid. */
int act_delivery_id(const char *dest, const char *change_id, char out[ACT_DELIVERY_ID_MAX]);

/* The destination id a delivery id names. Returns 0, or -1 when the
 * delivery id is malformed. */
int act_delivery_dest(const char *delivery_id, char dest[ACT_ID_MAX + 1]);

/* Retry delay after `attempt` (1 = the first attempt failed): a uniform
 * choice in [0, min(cap_ms, base_ms * 2^attempt)] drawn from rnd ("full
 * jitter"). Overflow-safe for any attempt; base or cap <= 0 give 0. */
int64_t act_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t rnd);

typedef enum {
    ACT_HTTP_DELIVERED = 0,   /* 2xx */
    ACT_HTTP_RETRY,           /* transport error, 408, 429, 5xx (and 1xx/3xx) */
    ACT_HTTP_PERMANENT,       /* any other 4xx: dead letter at once */
} act_http_outcome;

act_http_outcome act_http_classify(int failed, long status);

#endif
