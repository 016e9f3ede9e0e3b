/* act_msg: what activation stores and sends, as data.
 *
 *   - the webhook body: an ActivationMessage rendered as proto3 JSON
 *     (lowerCamelCase names, enums by name, int64 as strings, timestamps
 *     in RFC 3339 UTC), the profile's traits as a plain JSON object;
 *   - the delivery record: the small JSON object the outbox scripts read
 *     and update (act_lua.h), and its conversion to a Delivery message.
 *
 * Pure functions (jansson), covered by tests/unit/test_activation_core.c. */
#ifndef ACT_MSG_H
#define ACT_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "act_core.h"
#include "cdp/v1/activation.pb-c.h"

/* Record fields (short: one record per delivery is kept for the retention
 * period). s state (DeliveryState number), a attempts, e last error,
 * r consent reason, m master id, g segment id, k kind (ChangeKind number),
 * c change id, ca created, ua updated, na next attempt, da delivered (ms),
 * l the lease token of the replica holding it in flight. */

/* "2024-05-01T12:00:00.123Z" into out (at least 32 bytes). */
void act_rfc3339(int64_t ms, char *out, size_t outlen);

/* The body of a webhook request: m as proto3 JSON, NUL-terminated,
 * malloc'd (caller frees); *len its length. NULL on out of memory. */
char *act_msg_json(const Cdp__V1__ActivationMessage *m, size_t *len);

/* The profile as proto3 JSON (no timeline). New reference. */
json_t *act_profile_json(const Cdp__V1__ProfileView *v);

/* A new delivery record (PENDING, no attempt yet) as compact JSON,
 * malloc'd. */
char *act_record_new(const act_change *c, int64_t now_ms);

/* A Delivery message from a stored record. Strings and timestamps are
 * malloc'd; free with act_delivery_free. NULL if rec is not a record. */
Cdp__V1__Delivery *act_delivery_from_record(const char *delivery_id, const char *dest,
                                            const char *rec, size_t reclen);
void act_delivery_free(Cdp__V1__Delivery *d);

/* The state number of a record, or -1 when malformed. */
int act_record_state(const char *rec, size_t reclen);

/* Milliseconds <-> google.protobuf.Timestamp. */
int64_t act_ts_ms(const Google__Protobuf__Timestamp *ts);
void act_ts_set(Google__Protobuf__Timestamp *ts, int64_t ms);

#endif
