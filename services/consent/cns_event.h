/* cns_event: recognizes a consent event and validates its properties into
 * entries. Pure (no Redis, no RPC), so ingestion can call it at the edge to
 * reject a malformed consent event with a precise field error, and the
 * consent service applies exactly what it accepted.
 *
 * A consent event is a track event (EVENT_TYPE_TRACK) named exactly
 * "Consent Updated". Its properties carry one change:
 *   purpose       string, required, a configured purpose
 *   channel       string, optional, a configured channel or "*" (default "*")
 *   status        string, required: granted | denied | revoked | unset
 *   legal_basis   string, optional, one of cns_legal_basis_ok's
 *   jurisdiction  string, optional, a configured jurisdiction (also sets the
 *                 profile's jurisdiction)
 *   source        string, optional (default Event.source, else "event")
 * or several: properties.consents = a list of objects of that shape (then
 * none of the single-change keys above may be at the top level). Each
 * entry's time is Event.timestamp, else Event.received_at; its actor is
 * "event:<source>"; its message id the event's. */
#ifndef CNS_EVENT_H
#define CNS_EVENT_H

#include <stddef.h>

#include "cdp/v1/event.pb-c.h"
#include "cns_entry.h"
#include "cns_policy.h"

#define CNS_EVENT_NAME "Consent Updated"
/* Most changes one event may carry. */
#define CNS_EVENT_MAX_CHANGES 64
/* Buffer sizes that hold any field path and error text it writes. */
#define CNS_FIELD_MAX 64
#define CNS_EVENT_ERR_MAX 160

/* 1 when ev is a consent event (type and name), whatever its properties. */
int cns_event_is_consent(const Cdp__V1__Event *ev);

/* Parses ev. Returns 0 when ev is not a consent event (nothing written),
 * 1 when it is and every change is valid (*n changes in out[0..max)), -1
 * when it is a consent event that cannot be applied: `field` gets the path
 * ("properties.consents[1].status", "timestamp", "message_id") and `err`
 * the reason ("must be granted, denied, revoked or unset"). */
int cns_event_parse(const Cdp__V1__Event *ev, cns_entry *out, size_t max, size_t *n,
                    const cns_policy *pol, char *field, size_t fieldlen, char *err,
                    size_t errlen);

#endif
