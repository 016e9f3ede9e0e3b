/* ing_batch: one pipeline batch and the pure steps over it.
 *
 * The pipeline (ing_pipeline.c) reads up to CDP_PIPELINE_BATCH entries of
 * one log shard into an ing_batch, asks identity to resolve them, asks
 * profile to apply them, and records the outcome of each entry. Everything
 * here is free of I/O: decoding stream entries from a Redis reply, building
 * the ResolveBatch and ApplyEvents requests, taking identity's answers, and
 * the retry backoff. The unit tests drive it without a network.
 *
 * Each entry is LIVE until it is DONE (applied, or nothing to do) or FAILED
 * (by itself: unreadable, no master id, or rejected by profile). Steps work
 * on a list of entry indexes, so the same code serves a whole batch and the
 * one-event requests used to find which event a service rejected. */
#ifndef ING_BATCH_H
#define ING_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include "cdp/v1/event.pb-c.h"
#include "cdp/v1/identity.pb-c.h"
#include "cdp/v1/profile.pb-c.h"

#define ING_STREAM_ID_BUFSZ 48
#define ING_REASON_BUFSZ 256
/* Most requests identity takes in one ResolveBatch (docs/identity.md); a
 * larger batch is resolved in chunks of this size. */
#define ING_RESOLVE_MAX_REQUESTS 1000
/* Most events profile takes in one ApplyEvents (docs/profile.md). */
#define ING_APPLY_MAX_EVENTS 10000

typedef enum {
    ING_ENTRY_LIVE = 0,
    ING_ENTRY_APPLIED,             /* profile applied it; consent and segmentation next */
    ING_ENTRY_DONE,
    ING_ENTRY_FAILED,
} ing_entry_state;

typedef struct {
    char stream_id[ING_STREAM_ID_BUFSZ];
    char *message_id;              /* owned; "" when the entry had none */
    uint8_t *data;                 /* owned copy of the ev field */
    size_t len;
    Cdp__V1__Event *ev;            /* owned, unpacked; NULL if unreadable */
    ing_entry_state state;
    int force;                     /* FAILED for good: dead-letter at once */
    char reason[ING_REASON_BUFSZ]; /* why it FAILED */
    Cdp__V1__ResolveResponse *resolved; /* owned copy of identity's answer */
} ing_entry;

typedef struct {
    ing_entry *e;
    size_t n, cap;
} ing_batch;

void ing_batch_init(ing_batch *b);
/* Frees every entry's contents; the batch is empty and reusable. */
void ing_batch_clear(ing_batch *b);
void ing_batch_free(ing_batch *b);

/* Adds one stream entry. fields is the entry's field/value array, or NULL
 * for an entry that was deleted while pending (it becomes DONE: only its
 * acknowledgement is left). An entry without a readable ev becomes FAILED
 * and forced. Returns 0, or -1 on allocation failure. */
int ing_batch_add(ing_batch *b, const char *stream_id, size_t idlen, const redisReply *fields);

/* Adds every entry of an entries array [[id, [f, v, ...] | nil], ...] as
 * XREADGROUP and XAUTOCLAIM return it. Returns the number added, or -1 if
 * the reply is malformed or memory runs out. */
int ing_batch_add_entries(ing_batch *b, const redisReply *entries);

/* Marks e FAILED with a printf-style reason (kept when already FAILED). */
void ing_entry_fail(ing_entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* As ing_batch_add_entries, but skips every entry whose stream id is already
 * held by one of the n_held batches `held` (b itself may be one of them): a
 * claim must not hand this process a second copy of an entry another of its
 * lanes is working on. Returns the number added, or -1 as above. */
int ing_batch_add_entries_except(ing_batch *b, const redisReply *entries,
                                 const ing_batch *const *held, size_t n_held);

/* 1 if an entry with this stream id is in b, else 0. */
int ing_batch_holds(const ing_batch *b, const char *stream_id, size_t idlen);

/* Writes the indexes of the LIVE entries into idx (room for b->n); returns
 * how many. */
size_t ing_batch_live(const ing_batch *b, size_t *idx);

/* The same for the entries in `state`. */
size_t ing_batch_in_state(const ing_batch *b, ing_entry_state state, size_t *idx);

/* Writes the indexes of at most max LIVE entries that have no identity
 * answer yet into idx, in batch order; returns how many. A batch larger
 * than ING_RESOLVE_MAX_REQUESTS is resolved by calling this until it
 * returns 0. */
size_t ing_batch_unresolved(const ing_batch *b, size_t *idx, size_t max);

/* Puts every FAILED entry that is not forced, and every APPLIED one, back
 * to LIVE and drops identity answers: a whole-batch failure is retried from
 * the start (every step is idempotent). */
void ing_batch_reset(ing_batch *b);

/* The smallest received_at of the readable entries, in ms; 0 if none. */
int64_t ing_batch_oldest_received_ms(const ing_batch *b);

/* ------------------------------------------------------------------ identity */

/* The request and the storage it points into. Borrowed strings point into
 * the batch's events, which must outlive it. */
typedef struct {
    Cdp__V1__ResolveBatchRequest req;
    Cdp__V1__ResolveRequest *reqs;
    Cdp__V1__ResolveRequest **reqp;
    Cdp__V1__Identifier *ids;
    Cdp__V1__Identifier **idp;
} ing_resolve_build;

/* Builds ResolveBatch for entries idx[0..n): per event one ResolveRequest
 * with its message_id and the identifiers of ing_event_identifiers (user_id
 * as type user_id, anonymous_id and an alias' previous_id as anonymous_id,
 * identifiers[] as given). Returns 0 or -1 (allocation). */
int ing_resolve_build_make(ing_resolve_build *out, const ing_batch *b, const size_t *idx, size_t n);
void ing_resolve_build_free(ing_resolve_build *out);

/* Takes identity's answer for entries idx[0..n): an empty master id fails
 * that entry (with identity's drop reasons); otherwise a copy of the answer
 * is kept on the entry. Returns 0, or -1 when the answer does not have one
 * result per request (the whole batch is then retried). */
int ing_batch_take_resolve(ing_batch *b, const size_t *idx, size_t n,
                           const Cdp__V1__ResolveBatchResponse *resp);

/* ------------------------------------------------------------------ profile */

typedef struct {
    Cdp__V1__ApplyEventsRequest req;
    Cdp__V1__ResolvedEvent *evs;
    Cdp__V1__ResolvedEvent **evp;
} ing_apply_build;

/* Builds ApplyEvents for entries idx[0..n), which must be resolved:
 * ResolvedEvent{event, master_id, merges, identifiers}. Returns 0 or -1. */
int ing_apply_build_make(ing_apply_build *out, const ing_batch *b, const size_t *idx, size_t n);
void ing_apply_build_free(ing_apply_build *out);

/* ------------------------------------------------------------------ retry policy */

/* 1 if a failed call's status means "this input is wrong" (the events are
 * then tried one by one to find the culprit), 0 if it means "try again
 * later" (the whole batch is retried after a backoff). */
int ing_status_is_rejection(int grpc_code);

/* The next whole-batch backoff: min_ms first, then doubled, capped at max_ms. */
int ing_backoff_next(int cur_ms, int min_ms, int max_ms);

#endif
