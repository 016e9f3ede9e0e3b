/* prf_event: turns one cdp.v1.ResolvedEvent into the prf_delta the fold
 * applies, validating it on the way. Pure: no I/O.
 *
 * Decisions made here (docs/profile.md explains them):
 *   - event time: Event.timestamp, else Event.received_at, else invalid;
 *   - traits: identify events only; `context.traits` first, then `traits`
 *     on top (a key in both takes the `traits` value); values are kept as
 *     compact JSON with sorted keys;
 *   - count name: a track event's `event`; other types their type name
 *     ("identify", "page", "screen", "group", "alias", "message");
 *   - channel: message.channel for message events when set, else
 *     Event.channel; "" means no channel interaction;
 *   - revenue: properties.revenue when it is a finite number or a numeric
 *     string (prf_revenue_parse_string); anything else is ignored. */
#ifndef PRF_EVENT_H
#define PRF_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include "prf_fold.h"
#include "cdp/v1/profile.pb-c.h"

/* Bounds on ids, so that keys and the seen record stay sane. */
enum { PRF_ID_MAX_BYTES = 1024 };

enum { PRF_EINVAL = -2 };

/* A validated event. delta's strings point into the request (which must
 * outlive it) or into storage this struct owns. */
typedef struct {
    prf_delta delta;
    const char *master_id;                 /* borrowed from the request */
    const Cdp__V1__ResolvedEvent *source;  /* borrowed: merges live here */
    /* owned storage behind delta */
    char *tl_member;
    prf_trait_set *traits;
    char **trait_keys_json;                /* 2 * n_traits strings */
    char **ids;
} prf_event;

/* Converts events[index]. Returns 0; PRF_EINVAL with a message naming the
 * field ("events[2].master_id: required") in err; or PRF_ENOMEM. On error
 * nothing needs freeing; on success free with prf_event_free. */
int prf_event_from_proto(const Cdp__V1__ResolvedEvent *re, size_t index, prf_event *out,
                         char *err, size_t errlen);
void prf_event_free(prf_event *e);

/* Event time in ms since the epoch of a Timestamp, which must be within
 * the range protobuf allows (years 1..9999) with nanos in [0, 1e9).
 * Returns 0 or -1. */
int prf_ts_from_proto(const Google__Protobuf__Timestamp *t, int64_t *ms);
/* The inverse (milliseconds floor to seconds + nanos). */
void prf_ts_to_proto(int64_t ms, Google__Protobuf__Timestamp *t);


/* Identifier encoding in the ids set: "<len(type)>:<type><value>", which
 * round-trips any type and value. Returns a malloc'd string or NULL. */
char *prf_id_encode(const char *type, const char *value);
/* Splits an encoded id without allocating: the type is the *type_len bytes
 * at *type, the value the rest from *value. Returns 0 or -1 (malformed). */
int prf_id_split(const char *enc, const char **type, size_t *type_len, const char **value);
/* The same into malloc'd *type and *value. Returns 0 or -1 (malformed, or
 * out of memory). */
int prf_id_decode(const char *enc, char **type, char **value);

/* The timeline member of an event:
 * "<ts>:<type>:<len(mid)>:<mid><len(channel)>:<channel><event>", e.g.
 * "1700000000123:1:3:m-17:webOrder Completed". Unique per message id; it
 * carries its own event time (its sorted-set score repeats it, for the
 * order), so a page of them is read without WITHSCORES and decoded without
 * a JSON parser. malloc'd, NULL when out of memory. */
char *prf_tl_member_encode(const char *message_id, int type, const char *event,
                           const char *channel, int64_t ts);

/* The parts of a timeline member, pointing into it (no allocation). */
typedef struct {
    int64_t ts;
    int type;
    const char *message_id;
    size_t message_id_len;
    const char *channel;
    size_t channel_len;
    const char *event;          /* to the end of the member */
} prf_tl_parts;
int prf_tl_member_parse(const char *member, prf_tl_parts *out);

/* Decodes a timeline member; strings are malloc'd. Returns 0 or -1
 * (malformed, or out of memory). */
typedef struct {
    int64_t ts;
    char *message_id;
    int type;
    char *event;
    char *channel;
} prf_tl_decoded;
int prf_tl_member_decode(const char *member, prf_tl_decoded *out);
/* Just the event time of a member. Returns 0 or -1 (malformed). */
int prf_tl_member_ts(const char *member, int64_t *ts);
void prf_tl_decoded_free(prf_tl_decoded *d);

#endif
