/* ing_validate: the rules an event must pass before ingestion accepts it
 * (see ing_validate.h for the contract and docs/ingestion.md for the table
 * of limits). Each rule is one small function returning 0 or -1 after
 * filling the verdict; ing_validate_event runs them in order. */
#include "ing_validate.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cdp_json.h"
#include "ing_event.h"

#define ING_MS_PER_S 1000LL
#define ING_NS_PER_MS 1000000LL
#define ING_SECONDS_PER_MINUTE 60LL
#define ING_SECONDS_PER_HOUR 3600LL
#define ING_SECONDS_PER_DAY 86400LL

/* ------------------------------------------------------------------ helpers */

void ing_limits_default(ing_limits *lim, const cdp_ident_config *ident)
{
    lim->max_event_bytes = ING_DEFAULT_MAX_EVENT_BYTES;
    lim->max_batch_events = ING_DEFAULT_MAX_BATCH_EVENTS;
    lim->max_batch_bytes = ING_DEFAULT_MAX_BATCH_BYTES;
    lim->max_future_s = ING_DEFAULT_MAX_FUTURE_S;
    lim->max_past_s = ING_DEFAULT_MAX_PAST_S;
    lim->max_depth = ING_DEFAULT_MAX_DEPTH;
    lim->ident = ident;
}

char *ing_format_duration(int64_t seconds, char *out, size_t outlen)
{
    static const struct {
        int64_t unit;
        int64_t min_units;   /* smallest count for which this unit is used */
        const char *suffix;
    } units[] = {
        {ING_SECONDS_PER_YEAR, 1, "y"},
        {ING_SECONDS_PER_DAY, 2, "d"},
        {ING_SECONDS_PER_HOUR, 1, "h"},
        {ING_SECONDS_PER_MINUTE, 1, "m"},
    };
    if (seconds > 0) {
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (seconds % units[i].unit == 0 && seconds / units[i].unit >= units[i].min_units) {
                snprintf(out, outlen, "%" PRId64 "%s", seconds / units[i].unit, units[i].suffix);
                return out;
            }
        }
    }
    snprintf(out, outlen, "%" PRId64 "s", seconds);
    return out;
}

/* Fills the verdict: field = path + "." + member (or just path, or just
 * member, whichever are non-empty), error = the formatted reason. */
__attribute__((format(printf, 4, 5)))
static int ing__fail(ing_verdict *out, const char *path, const char *member, const char *fmt, ...)
{
    int has_path = path && path[0], has_member = member && member[0];
    snprintf(out->field, sizeof out->field, "%s%s%s", has_path ? path : "",
             has_path && has_member ? "." : "", has_member ? member : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* The path naming the whole event: "events[3]" in a batch; "request" for
 * Track, whose request is the event. */
static const char *ing__whole(const char *path)
{
    return path && path[0] ? path : "request";
}

/* ------------------------------------------------------------------ rules */

static int ing__check_size(const Cdp__V1__Event *ev, const char *path, const ing_limits *lim,
                           ing_verdict *out)
{
    size_t sz = cdp__v1__event__get_packed_size(ev);
    if ((int64_t)sz > lim->max_event_bytes)
        return ing__fail(out, ing__whole(path), NULL,
                         "event is %zu bytes packed; the limit is %" PRId64, sz,
                         lim->max_event_bytes);
    return 0;
}

static int ing__check_message_id(const Cdp__V1__Event *ev, const char *path, ing_verdict *out)
{
    size_t len = ev->message_id ? strlen(ev->message_id) : 0;
    if (len == 0)
        return ing__fail(out, path, "message_id", "required");
    if (len > ING_MAX_MESSAGE_ID_BYTES)
        return ing__fail(out, path, "message_id", "longer than %d bytes", ING_MAX_MESSAGE_ID_BYTES);
    return 0;
}

static int ing__check_type(const Cdp__V1__Event *ev, const char *path, ing_verdict *out)
{
    if (ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED)
        return ing__fail(out, path, "type", "required");
    if (protobuf_c_enum_descriptor_get_value(&cdp__v1__event_type__descriptor, (int)ev->type) == NULL)
        return ing__fail(out, path, "type", "unknown event type %d", (int)ev->type);
    return 0;
}

static int ing__check_event_name(const Cdp__V1__Event *ev, const char *path, ing_verdict *out)
{
    size_t len = ev->event ? strlen(ev->event) : 0;
    if (len == 0 && ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK)
        return ing__fail(out, path, "event", "required for track events");
    if (len > ING_MAX_EVENT_NAME_BYTES)
        return ing__fail(out, path, "event", "longer than %d bytes", ING_MAX_EVENT_NAME_BYTES);
    return 0;
}

static int ing__check_message(const Cdp__V1__Event *ev, const char *path, ing_verdict *out)
{
    if (ev->type != CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE)
        return 0;
    const Cdp__V1__ConversationMessage *m = ev->message;
    if (m == NULL)
        return ing__fail(out, path, "message", "required for message events");
    if (m->channel == NULL || m->channel[0] == '\0')
        return ing__fail(out, path, "message.channel", "required");
    if (m->direction != CDP__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND &&
        m->direction != CDP__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_OUTBOUND)
        return ing__fail(out, path, "message.direction", "must be INBOUND or OUTBOUND");
    return 0;
}

/* One identifier: 1 if usable, 0 if absent or a blocked value (not an
 * error: SDKs send "null" and "anonymous" routinely), -1 on a bad type or
 * a value that cannot be normalized. */
static int ing__check_identifier(const ing_ident_ref *ref, const char *path,
                                 const cdp_ident_config *cfg, ing_verdict *out)
{
    char field[ING_FIELD_BUFSZ];
    char norm[CDP_IDENT_VALUE_BUFSZ];
    const char *why = NULL;

    if (ref->source == ING_IDENT_FROM_LIST && cdp_ident_kind_of(ref->type) == CDP_IDENT_INVALID) {
        ing_ident_field(ref, "", "type", field, sizeof field);
        return ing__fail(out, path, field, "%s",
                         ref->type && ref->type[0] ? "not a valid identifier type" : "required");
    }
    int rc = cdp_ident_normalize(ref->type, ref->value, cfg, norm, sizeof norm, &why);
    if (rc == CDP_IDENT_OK)
        return 1;
    if (rc == CDP_IDENT_EBLOCKED || rc == CDP_IDENT_EEMPTY)
        return 0;
    ing_ident_field(ref, "", "value", field, sizeof field);
    return ing__fail(out, path, field, "%s", why ? why : "not a valid identifier");
}

static int ing__check_identifiers(const Cdp__V1__Event *ev, const char *path,
                                  const ing_limits *lim, ing_verdict *out)
{
    if (ev->n_identifiers > ING_MAX_IDENTIFIERS)
        return ing__fail(out, path, "identifiers", "more than %d identifiers", ING_MAX_IDENTIFIERS);
    ing_ident_ref refs[ING_MAX_IDENTIFIERS + 3];
    size_t n = ing_event_identifiers(ev, refs, sizeof refs / sizeof refs[0]);
    int usable = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = ing__check_identifier(&refs[i], path, lim->ident, out);
        if (rc < 0)
            return -1;
        usable += rc;
    }
    if (usable == 0)
        return ing__fail(out, path, "identifiers",
                         "no usable identifier (user_id, anonymous_id or identifiers[])");
    return 0;
}

static int ing__check_timestamp(const Cdp__V1__Event *ev, const char *path,
                                const ing_limits *lim, int64_t now_ms, ing_verdict *out)
{
    const Google__Protobuf__Timestamp *ts = ev->timestamp;
    char dur[32];
    if (ts == NULL)
        return 0;
    if (ts->nanos < 0 || ts->nanos > ING_TS_MAX_NANOS)
        return ing__fail(out, path, "timestamp", "nanos must be within 0..%d", ING_TS_MAX_NANOS);
    if (ts->seconds < ING_TS_MIN_SECONDS)
        return ing__fail(out, path, "timestamp", "before 1970-01-01T00:00:00Z");
    if (ts->seconds > ING_TS_MAX_SECONDS)
        return ing__fail(out, path, "timestamp", "after 9999-12-31T23:59:59Z");
    int64_t ts_ms = ts->seconds * ING_MS_PER_S + ts->nanos / ING_NS_PER_MS;
    if (ts_ms - now_ms > lim->max_future_s * ING_MS_PER_S)
        return ing__fail(out, path, "timestamp", "more than %s in the future",
                         ing_format_duration(lim->max_future_s, dur, sizeof dur));
    if (now_ms - ts_ms > lim->max_past_s * ING_MS_PER_S)
        return ing__fail(out, path, "timestamp", "more than %s in the past",
                         ing_format_duration(lim->max_past_s, dur, sizeof dur));
    return 0;
}

static int ing__check_depth(const Google__Protobuf__Struct *s, const char *member,
                            const char *path, const ing_limits *lim, ing_verdict *out)
{
    int depth = cdp_struct_depth(s);
    if (depth > lim->max_depth)
        return ing__fail(out, path, member, "nested %d deep; the limit is %" PRId64, depth,
                         lim->max_depth);
    return 0;
}

/* A "Consent Updated" event's changes (docs/consent.md): properties holds
 * one change, or properties.consents an array of them; each has a purpose
 * and a status string, and optional string channel, legal_basis,
 * jurisdiction and source. Whether the purpose is one consent knows is
 * consent's to say (its configuration); the shape is checked here so that
 * a malformed consent event is refused at the door. */
#define ING_CONSENT_MAX_CHANGES 100
#define ING_CONSENT_MAX_VALUE 64


static int ing__check_consent_change(const Google__Protobuf__Struct *c, const char *path,
                                     const char *at, ing_verdict *out)
{
    static const char *const optional[] = {"channel", "legal_basis", "jurisdiction", "source"};
    static const char *const statuses[] = {"granted", "denied", "revoked", "unset"};
    char member[ING_FIELD_BUFSZ];
    const Google__Protobuf__Value *v = cdp_struct_get(c, "purpose");
    snprintf(member, sizeof member, "%spurpose", at);
    if (!v || v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE || !v->string_value[0] ||
        strlen(v->string_value) > ING_CONSENT_MAX_VALUE)
        return ing__fail(out, path, member, "a consent event needs a purpose (a string of 1..%d bytes)",
                         ING_CONSENT_MAX_VALUE);
    v = cdp_struct_get(c, "status");
    snprintf(member, sizeof member, "%sstatus", at);
    int known = 0;
    for (size_t i = 0; v && v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE &&
                       i < sizeof statuses / sizeof statuses[0];
         i++)
        known |= strcmp(v->string_value, statuses[i]) == 0;
    if (!known)
        return ing__fail(out, path, member, "must be one of granted, denied, revoked, unset");
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        v = cdp_struct_get(c, optional[i]);
        snprintf(member, sizeof member, "%s%s", at, optional[i]);
        if (v && (v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE ||
                  strlen(v->string_value) > ING_CONSENT_MAX_VALUE))
            return ing__fail(out, path, member, "must be a string of at most %d bytes",
                             ING_CONSENT_MAX_VALUE);
    }
    return 0;
}

static int ing__check_consent(const Cdp__V1__Event *ev, const char *path, ing_verdict *out)
{
    if (ev->type != CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK || strcmp(ev->event, ING_CONSENT_EVENT_NAME) != 0)
        return 0;
    const Google__Protobuf__Value *list = cdp_struct_get(ev->properties, "consents");
    if (!list)
        return ing__check_consent_change(ev->properties, path, "properties.", out);
    const Google__Protobuf__ListValue *l = list->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE
                                               ? list->list_value
                                               : NULL;
    if (!l || l->n_values == 0 || l->n_values > ING_CONSENT_MAX_CHANGES)
        return ing__fail(out, path, "properties.consents", "must be a list of 1..%d objects",
                         ING_CONSENT_MAX_CHANGES);
    for (size_t i = 0; i < l->n_values; i++) {
        char at[ING_FIELD_BUFSZ];
        snprintf(at, sizeof at, "properties.consents[%zu].", i);
        const Google__Protobuf__Value *c = l->values[i];
        if (c->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE) {
            at[strlen(at) - 1] = '\0';
            return ing__fail(out, path, at, "must be an object");
        }
        if (ing__check_consent_change(c->struct_value, path, at, out) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ entry points */

int ing_validate_event(const Cdp__V1__Event *ev, const char *prefix, const ing_limits *lim,
                       int64_t now_ms, ing_verdict *out)
{
    if (ing__check_size(ev, prefix, lim, out) < 0 || ing__check_message_id(ev, prefix, out) < 0 ||
        ing__check_type(ev, prefix, out) < 0 || ing__check_event_name(ev, prefix, out) < 0 ||
        ing__check_message(ev, prefix, out) < 0 || ing__check_identifiers(ev, prefix, lim, out) < 0 ||
        ing__check_timestamp(ev, prefix, lim, now_ms, out) < 0 || ing__check_consent(ev, prefix, out) < 0 ||
        ing__check_depth(ev->properties, "properties", prefix, lim, out) < 0 ||
        ing__check_depth(ev->traits, "traits", prefix, lim, out) < 0 ||
        ing__check_depth(ev->context, "context", prefix, lim, out) < 0)
        return -1;
    return 0;
}

int ing_validate_batch(const Cdp__V1__IngestRequest *req, const ing_limits *lim, ing_verdict *out)
{
    if (req->n_events == 0)
        return ing__fail(out, NULL, "events", "at least one event is required");
    if ((int64_t)req->n_events > lim->max_batch_events)
        return ing__fail(out, NULL, "events", "%zu events; the limit is %" PRId64, req->n_events,
                         lim->max_batch_events);
    size_t sz = cdp__v1__ingest_request__get_packed_size(req);
    if ((int64_t)sz > lim->max_batch_bytes)
        return ing__fail(out, NULL, "events", "request is %zu bytes packed; the limit is %" PRId64,
                         sz, lim->max_batch_bytes);
    return 0;
}
