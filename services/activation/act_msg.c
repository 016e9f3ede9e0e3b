/* act_msg: the webhook body and the delivery record (see act_msg.h). */
#include "act_msg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdp_json.h"

#define ACT_MS_PER_S 1000
#define ACT_NS_PER_MS 1000000
#define ACT_TS_BUFSZ 40
#define ACT_INT_BUFSZ 24

void act_rfc3339(int64_t ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / ACT_MS_PER_S);
    int frac = (int)(ms % ACT_MS_PER_S);
    if (frac < 0) {
        frac += ACT_MS_PER_S;
        s--;
    }
    struct tm tm;
    gmtime_r(&s, &tm);
    char date[ACT_TS_BUFSZ];
    size_t n = strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%.*s.%03dZ", (int)n, date, frac % ACT_MS_PER_S);
}

int64_t act_ts_ms(const Google__Protobuf__Timestamp *ts)
{
    if (!ts)
        return 0;
    return ts->seconds * ACT_MS_PER_S + ts->nanos / ACT_NS_PER_MS;
}

void act_ts_set(Google__Protobuf__Timestamp *ts, int64_t ms)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = ms / ACT_MS_PER_S;
    ts->nanos = (int32_t)(ms % ACT_MS_PER_S) * ACT_NS_PER_MS;
}

/* ------------------------------------------------------------------ JSON body */

static json_t *act__ts_json(const Google__Protobuf__Timestamp *ts)
{
    char buf[ACT_TS_BUFSZ];
    act_rfc3339(act_ts_ms(ts), buf, sizeof(buf));
    return json_string(buf);
}

/* proto3 JSON renders int64 as a decimal string. */
static json_t *act__i64_json(int64_t v)
{
    char buf[ACT_INT_BUFSZ];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

static json_t *act__strings_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

json_t *act_profile_json(const Cdp__V1__ProfileView *v)
{
    json_t *o = json_object();
    if (!o || !v)
        return o;
    json_object_set_new(o, "masterId", json_string(v->master_id));
    json_t *ids = json_array();
    for (size_t i = 0; i < v->n_identifiers; i++)
        json_array_append_new(ids, json_pack("{s:s,s:s}", "type", v->identifiers[i]->type,
                                             "value", v->identifiers[i]->value));
    json_object_set_new(o, "identifiers", ids);
    json_object_set_new(o, "traits", cdp_struct_to_json(v->traits));
    json_t *counts = json_object();
    for (size_t i = 0; i < v->n_event_counts; i++)
        json_object_set_new(counts, v->event_counts[i]->key,
                            act__i64_json(v->event_counts[i]->value));
    json_object_set_new(o, "eventCounts", counts);
    json_object_set_new(o, "totalEvents", act__i64_json(v->total_events));
    if (v->first_seen)
        json_object_set_new(o, "firstSeen", act__ts_json(v->first_seen));
    if (v->last_seen)
        json_object_set_new(o, "lastSeen", act__ts_json(v->last_seen));
    json_t *ch = json_array();
    for (size_t i = 0; i < v->n_channels; i++) {
        const Cdp__V1__ChannelInteraction *c = v->channels[i];
        json_t *e = json_pack("{s:s,s:s}", "channel", c->channel, "lastEvent", c->last_event);
        if (e && c->last_at)
            json_object_set_new(e, "lastAt", act__ts_json(c->last_at));
        json_array_append_new(ch, e);
    }
    json_object_set_new(o, "channels", ch);
    json_object_set_new(o, "revenue", json_real(v->revenue));
    json_object_set_new(o, "mergedIds", act__strings_json(v->merged_ids, v->n_merged_ids));
    return o;
}

static const char *act__kind_name(Cdp__V1__ChangeKind k)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cdp__v1__change_kind__descriptor, (int)k);
    return v ? v->name : "CHANGE_KIND_UNSPECIFIED";
}

char *act_msg_json(const Cdp__V1__ActivationMessage *m, size_t *len)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "deliveryId", json_string(m->delivery_id));
    json_object_set_new(o, "destinationId", json_string(m->destination_id));
    json_object_set_new(o, "channel", json_string(m->channel));
    json_object_set_new(o, "kind", json_string(act__kind_name(m->kind)));
    json_object_set_new(o, "segmentId", json_string(m->segment_id));
    json_object_set_new(o, "masterId", json_string(m->master_id));
    if (m->occurred_at)
        json_object_set_new(o, "occurredAt", act__ts_json(m->occurred_at));
    json_object_set_new(o, "eventNames", act__strings_json(m->event_names, m->n_event_names));
    json_object_set_new(o, "profile", act_profile_json(m->profile));
    json_object_set_new(o, "attempt", json_integer(m->attempt));
    json_object_set_new(o, "changeId", json_string(m->change_id));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s && len)
        *len = strlen(s);
    return s;
}

/* ------------------------------------------------------------------ records */

char *act_record_new(const act_change *c, int64_t now_ms)
{
    json_t *o = json_pack("{s:i,s:i,s:s,s:s,s:i,s:s,s:I,s:I,s:I}", "s",
                          (int)CDP__V1__DELIVERY_STATE__DELIVERY_STATE_PENDING, "a", 0, "m",
                          c->master, "g", c->seg, "k", (int)c->kind, "c", c->cid, "ca",
                          (json_int_t)now_ms, "ua", (json_int_t)now_ms, "na", (json_int_t)now_ms);
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Lua's cjson writes whole numbers as integers, but be lenient with reals. */
static int64_t act__num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? (int64_t)json_number_value(v) : 0;
}

static char *act__strdup_field(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return strdup(s ? s : "");
}

int act_record_state(const char *rec, size_t reclen)
{
    json_t *o = json_loadb(rec, reclen, 0, NULL);
    int st = json_is_object(o) ? (int)act__num(o, "s") : -1;
    json_decref(o);
    return st;
}

static Google__Protobuf__Timestamp *act__ts_new(int64_t ms)
{
    if (ms <= 0)
        return NULL;
    Google__Protobuf__Timestamp *ts = malloc(sizeof(*ts));
    if (ts)
        act_ts_set(ts, ms);
    return ts;
}

Cdp__V1__Delivery *act_delivery_from_record(const char *delivery_id, const char *dest,
                                            const char *rec, size_t reclen)
{
    json_t *o = json_loadb(rec, reclen, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    Cdp__V1__Delivery *d = malloc(sizeof(*d));
    if (!d) {
        json_decref(o);
        return NULL;
    }
    cdp__v1__delivery__init(d);
    d->delivery_id = strdup(delivery_id);
    d->destination_id = strdup(dest);
    d->state = (Cdp__V1__DeliveryState)act__num(o, "s");
    d->attempts = (int32_t)act__num(o, "a");
    d->last_error = act__strdup_field(o, "e");
    d->consent_reason = act__strdup_field(o, "r");
    d->master_id = act__strdup_field(o, "m");
    d->segment_id = act__strdup_field(o, "g");
    d->kind = (Cdp__V1__ChangeKind)act__num(o, "k");
    d->change_id = act__strdup_field(o, "c");
    d->created_at = act__ts_new(act__num(o, "ca"));
    d->updated_at = act__ts_new(act__num(o, "ua"));
    if (d->state == CDP__V1__DELIVERY_STATE__DELIVERY_STATE_PENDING ||
        d->state == CDP__V1__DELIVERY_STATE__DELIVERY_STATE_IN_FLIGHT)
        d->next_attempt_at = act__ts_new(act__num(o, "na"));
    d->delivered_at = act__ts_new(act__num(o, "da"));
    json_decref(o);
    if (!d->delivery_id || !d->destination_id || !d->last_error || !d->consent_reason ||
        !d->master_id || !d->segment_id || !d->change_id) {
        act_delivery_free(d);
        return NULL;
    }
    return d;
}

void act_delivery_free(Cdp__V1__Delivery *d)
{
    if (!d)
        return;
    free(d->delivery_id);
    free(d->destination_id);
    free(d->last_error);
    free(d->consent_reason);
    free(d->master_id);
    free(d->segment_id);
    free(d->change_id);
    free(d->created_at);
    free(d->updated_at);
    free(d->next_attempt_at);
    free(d->delivered_at);
    free(d);
}
