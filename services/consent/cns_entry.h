/* cns_entry: one consent entry as the service handles it — a fixed-size
 * struct, the checks every entry passes whether it comes from SetConsent or
 * from a consent event, its stamp order (last write wins), and its JSON
 * form in Redis and in audit records. Pure: no Redis, no RPC.
 *
 * Stored JSON (compact keys, docs/consent.md "Redis key layout"):
 *   {"p":purpose,"c":channel,"s":status,"src":source,"ts":ms,"lb":legal_basis,
 *    "j":jurisdiction,"a":actor,"m":message_id}
 * "ts" is an integer number of milliseconds since the epoch (< 2^53, so Lua's
 * cjson reads it exactly). */
#ifndef CNS_ENTRY_H
#define CNS_ENTRY_H

#include <stdint.h>
#include <jansson.h>

#include "cdp/v1/consent.pb-c.h"
#include "cns_policy.h"

#define CNS_SOURCE_MAX 128
#define CNS_BASIS_MAX 32
#define CNS_ACTOR_MAX 256
#define CNS_MID_MAX 256
/* Holds any entry field name "e:<purpose>:<channel>". */
#define CNS_FIELD_BUFSZ (2 * CNS_NAME_BUFSZ + 4)
/* Latest accepted time: 9999-12-31T23:59:59.999Z in ms. */
#define CNS_TS_MAX_MS INT64_C(253402300799999)

typedef struct {
    char purpose[CNS_NAME_BUFSZ];
    char channel[CNS_NAME_BUFSZ];       /* a configured channel or "*" */
    cns_status status;
    char source[CNS_SOURCE_MAX + 1];
    int64_t updated_ms;                 /* the stamp's time */
    char legal_basis[CNS_BASIS_MAX + 1];
    char jurisdiction[CNS_NAME_BUFSZ];
    char actor[CNS_ACTOR_MAX + 1];
    char message_id[CNS_MID_MAX + 1];   /* the stamp's tie-breaker; "" for RPC sets */
} cns_entry;

/* Copies s into dst (size dstsz) when it fits; returns -1 when too long. */
int cns_copy(char *dst, size_t dstsz, const char *s);

/* 1 when s is "" or one of the legal bases of the contract: consent,
 * contract, legal_obligation, vital_interests, public_task,
 * legitimate_interests. */
int cns_legal_basis_ok(const char *s);

/* Milliseconds of a Timestamp; -1 when it is outside 1970..9999 or its nanos
 * are out of range. */
int64_t cns_ts_ms(const Google__Protobuf__Timestamp *ts);

/* The Timestamp of ms milliseconds since the epoch (ts initialized). */
void cns_ms_ts(int64_t ms, Google__Protobuf__Timestamp *ts);

/* Last write wins: 1 when an entry stamped (ts, mid) replaces one stamped
 * (old_ts, old_mid): a later time, or the same time and a greater message
 * id (byte order); two RPC writes (both ids empty) at the same time: the
 * later call wins. The Lua change script applies the same rule. */
int cns_stamp_wins(int64_t ts, const char *mid, int64_t old_ts, const char *old_mid);

/* The hash field of an entry: "e:<purpose>:<channel>". */
int cns_entry_field(const char *purpose, const char *channel, char *out, size_t outlen);

/* JSON form (new reference) and back. cns_entry_from_json returns 0, or -1
 * when j is not an entry object. */
json_t *cns_entry_to_json(const cns_entry *e);
int cns_entry_from_json(const json_t *j, cns_entry *e);

/* Fills a protobuf entry from the JSON text of a stored entry. Strings point
 * into `arena` (a JSON object kept by the caller until the message is
 * packed) and updated_at into *ts. Returns 0, or -1 when malformed. */
int cns_entry_json_to_pb(const char *text, size_t len, json_t *arena,
                         Cdp__V1__ConsentEntry *pb, Google__Protobuf__Timestamp *ts);

#endif
