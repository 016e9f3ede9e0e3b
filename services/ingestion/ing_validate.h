/* ing_validate: the rules an event must pass before ingestion accepts it.
 *
 * Pure functions over the generated protobuf-c structs: no I/O, no clock
 * (the caller passes the server time in), no allocation. ing_service calls
 * them on every Ingest and Track request; the unit tests call them directly.
 *
 * A failed rule yields an ing_verdict naming the offending field path (e.g.
 * "events[3].timestamp") and a short reason ("more than 24h in the future"),
 * which the RPC answers verbatim. Rules are checked in a fixed order and the
 * first failure is reported: size, message_id, type, event name, message,
 * identifiers, timestamp, the shape of a consent event, nesting depth
 * (docs/ingestion.md). */
#ifndef ING_VALIDATE_H
#define ING_VALIDATE_H

#include <stddef.h>
#include <stdint.h>
#include "cdp/v1/event.pb-c.h"
#include "cdp/v1/ingestion.pb-c.h"
#include "cdp_ident.h"

/* Defaults of the configurable limits (environment names in ing_config.h). */
#define ING_DEFAULT_MAX_EVENT_BYTES (32 * 1024)
#define ING_DEFAULT_MAX_BATCH_EVENTS 2500
#define ING_DEFAULT_MAX_BATCH_BYTES (4 * 1024 * 1024)
#define ING_DEFAULT_MAX_FUTURE_S 86400
/* Ten Julian years (365.25 days each): older events are almost surely a
 * client clock or unit bug (seconds sent as milliseconds, or zero). */
#define ING_DEFAULT_MAX_PAST_S (10 * ING_SECONDS_PER_YEAR)
#define ING_DEFAULT_MAX_DEPTH 16

/* Fixed limits (part of the contract, not configuration). */
#define ING_MAX_MESSAGE_ID_BYTES 128
#define ING_MAX_EVENT_NAME_BYTES 200
/* An event naming more identifiers than this is almost surely a bug, and it
 * would make identity merge that many ids in one step. */
#define ING_MAX_IDENTIFIERS 100

/* The event name of consent changes (docs/consent.md). */
#define ING_CONSENT_EVENT_NAME "Consent Updated"

#define ING_SECONDS_PER_YEAR 31557600LL  /* 365.25 days */
/* google.protobuf.Timestamp range accepted here: 1970-01-01T00:00:00Z to
 * 9999-12-31T23:59:59.999999999Z. */
#define ING_TS_MIN_SECONDS 0LL
#define ING_TS_MAX_SECONDS 253402300799LL
#define ING_TS_MAX_NANOS 999999999

/* Room for "events[2499].identifiers[99].value" and for the reasons. */
#define ING_FIELD_BUFSZ 64
#define ING_ERROR_BUFSZ 128

typedef struct {
    int64_t max_event_bytes;    /* packed size of one event */
    int64_t max_batch_events;   /* events in one Ingest request */
    int64_t max_batch_bytes;    /* packed size of one Ingest request */
    int64_t max_future_s;       /* timestamp may be at most this far ahead */
    int64_t max_past_s;         /* ... and at most this far behind */
    int64_t max_depth;          /* nesting of properties, traits, context */
    const cdp_ident_config *ident; /* identifier normalization (required) */
} ing_limits;

typedef struct {
    char field[ING_FIELD_BUFSZ];   /* path of the offending field */
    char error[ING_ERROR_BUFSZ];   /* why it is wrong */
} ing_verdict;

/* Fills `lim` with the defaults above and the given identifier config. */
void ing_limits_default(ing_limits *lim, const cdp_ident_config *ident);

/* Validates one event. `prefix` is prepended to field paths ("events[3]."
 * for a batch, "" for Track). now_ms is the server's wall clock. The event's
 * received_at is ignored (the server overwrites it). Returns 0 if the event
 * is acceptable; -1 with *out filled otherwise. */
int ing_validate_event(const Cdp__V1__Event *ev, const char *prefix,
                       const ing_limits *lim, int64_t now_ms, ing_verdict *out);

/* Checks the whole-request limits of an Ingest request: at least one event,
 * at most max_batch_events, at most max_batch_bytes packed. Returns 0, or -1
 * with *out naming "events". Events are validated one by one separately. */
int ing_validate_batch(const Cdp__V1__IngestRequest *req, const ing_limits *lim,
                       ing_verdict *out);

/* Writes a duration in the largest whole unit that divides it: "24h", "10y",
 * "90m", "45s" (y = 365.25 days, d only from two days up so that one day
 * reads "24h"). Always NUL-terminates; returns out. */
char *ing_format_duration(int64_t seconds, char *out, size_t outlen);

#endif
