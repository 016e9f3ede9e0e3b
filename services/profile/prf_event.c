/* prf_event: validation and conversion of a ResolvedEvent (see prf_event.h). */
#include "prf_event.h"
#include "prf_codec.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp_event.h"
#include "cdp_json.h"

/* Protobuf's Timestamp range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z. */
#define PRF_TS_MIN_SECONDS INT64_C(-62135596800)
#define PRF_TS_MAX_SECONDS INT64_C(253402300799)
#define PRF_MS_PER_S 1000
#define PRF_NS_PER_MS 1000000
#define PRF_NS_PER_S 1000000000

/* Canonical JSON for stored values: compact, sorted keys, any type. */
#define PRF_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)

/* ============================================================ timestamps */

int prf_ts_from_proto(const Google__Protobuf__Timestamp *t, int64_t *ms)
{
    if (t->seconds < PRF_TS_MIN_SECONDS || t->seconds > PRF_TS_MAX_SECONDS)
        return -1;
    if (t->nanos < 0 || t->nanos >= PRF_NS_PER_S)
        return -1;
    *ms = t->seconds * PRF_MS_PER_S + t->nanos / PRF_NS_PER_MS;
    return 0;
}

void prf_ts_to_proto(int64_t ms, Google__Protobuf__Timestamp *t)
{
    int64_t s = ms / PRF_MS_PER_S;
    int64_t rem = ms % PRF_MS_PER_S;
    if (rem < 0) {
        s--;
        rem += PRF_MS_PER_S;
    }
    t->seconds = s;
    t->nanos = (int32_t)(rem * PRF_NS_PER_MS);
}

/* ================================================================ names */


/* ========================================================== identifiers */

char *prf_id_encode(const char *type, const char *value)
{
    size_t tl = strlen(type), vl = strlen(value);
    char head[PRF_I64_BUF];
    size_t hl = prf_i64_format((int64_t)tl, head);
    char *s = malloc(hl + 1 + tl + vl + 1);
    if (!s)
        return NULL;
    memcpy(s, head, hl);
    s[hl] = ':';
    memcpy(s + hl + 1, type, tl);
    memcpy(s + hl + 1 + tl, value, vl + 1);
    return s;
}

int prf_id_split(const char *enc, const char **type, size_t *type_len, const char **value)
{
    char *end;
    if (!isdigit((unsigned char)enc[0]))
        return -1;
    errno = 0;
    unsigned long long tl = strtoull(enc, &end, 10);
    if (*end != ':' || errno || tl > strlen(end + 1))
        return -1;
    *type = end + 1;
    *type_len = (size_t)tl;
    *value = end + 1 + tl;
    return 0;
}

int prf_id_decode(const char *enc, char **type, char **value)
{
    const char *t, *v;
    size_t tl;
    if (prf_id_split(enc, &t, &tl, &v) != 0)
        return -1;
    *type = strndup(t, tl);
    *value = strdup(v);
    if (!*type || !*value) {
        free(*type);
        free(*value);
        return -1;
    }
    return 0;
}

/* ============================================================= timeline */

/* Appends "<v>:" at p; returns the end. */
static char *prf__put_num(char *p, int64_t v)
{
    p += prf_i64_format(v, p);
    *p++ = ':';
    return p;
}

char *prf_tl_member_encode(const char *message_id, int type, const char *event,
                           const char *channel, int64_t ts)
{
    /* four numbers, each at most PRF_I64_BUF - 1 digits and a colon */
    enum { PRF_TL_HEAD_MAX = 4 * PRF_I64_BUF };
    size_t ml = strlen(message_id), cl = strlen(channel), el = strlen(event);
    char *s = malloc(PRF_TL_HEAD_MAX + ml + cl + el + 1);
    if (!s)
        return NULL;
    char *p = prf__put_num(s, ts);
    p = prf__put_num(p, type);
    p = prf__put_num(p, (int64_t)ml);
    memcpy(p, message_id, ml);
    p = prf__put_num(p + ml, (int64_t)cl);
    memcpy(p, channel, cl);
    memcpy(p + cl, event, el + 1);
    return s;
}

/* Reads "<decimal>:" at *s into *v and moves past it. Returns 0 or -1. */
static int prf__prefix(const char **s, unsigned long long *v)
{
    char *end;
    if (!isdigit((unsigned char)**s))
        return -1;
    errno = 0;
    *v = strtoull(*s, &end, 10);
    if (*end != ':' || errno)
        return -1;
    *s = end + 1;
    return 0;
}

/* Reads the leading "<ts>:" (ts may be negative) and moves past it. */
static int prf__ts_prefix(const char **s, int64_t *ts)
{
    const char *p = *s;
    int neg = *p == '-';
    unsigned long long v;
    p += neg;
    if (prf__prefix(&p, &v) || v > (unsigned long long)INT64_MAX)
        return -1;
    *ts = neg ? -(int64_t)v : (int64_t)v;
    *s = p;
    return 0;
}

int prf_tl_member_ts(const char *member, int64_t *ts)
{
    return prf__ts_prefix(&member, ts);
}

int prf_tl_member_parse(const char *member, prf_tl_parts *out)
{
    const char *p = member;
    unsigned long long type, ml, cl;
    if (prf__ts_prefix(&p, &out->ts) || prf__prefix(&p, &type) || type > INT32_MAX ||
        prf__prefix(&p, &ml) || ml > strlen(p))
        return -1;
    out->type = (int)type;
    out->message_id = p;
    out->message_id_len = (size_t)ml;
    p += ml;
    if (prf__prefix(&p, &cl) || cl > strlen(p))
        return -1;
    out->channel = p;
    out->channel_len = (size_t)cl;
    out->event = p + cl;
    return 0;
}

int prf_tl_member_decode(const char *member, prf_tl_decoded *out)
{
    memset(out, 0, sizeof(*out));
    prf_tl_parts t;
    if (prf_tl_member_parse(member, &t) != 0)
        return -1;
    out->ts = t.ts;
    out->type = t.type;
    out->message_id = strndup(t.message_id, t.message_id_len);
    out->channel = strndup(t.channel, t.channel_len);
    out->event = strdup(t.event);
    if (!out->message_id || !out->channel || !out->event) {
        prf_tl_decoded_free(out);
        return -1;
    }
    return 0;
}

void prf_tl_decoded_free(prf_tl_decoded *d)
{
    free(d->message_id);
    free(d->event);
    free(d->channel);
    memset(d, 0, sizeof(*d));
}

/* =============================================================== fields */


/* Revenue of an event's properties (see prf_event.h). */
static void prf__revenue(const Cdp__V1__Event *ev, prf_delta *d)
{
    const Google__Protobuf__Value *v = cdp_struct_get(ev->properties, "revenue");
    d->has_revenue = 0;
    if (!v)
        return;
    if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE && isfinite(v->number_value)) {
        d->has_revenue = 1;
        d->revenue = v->number_value;
    } else if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE && v->string_value) {
        d->has_revenue = prf_revenue_parse_string(v->string_value, &d->revenue);
    }
}

/* The merged trait object of an identify event (context.traits under
 * traits), or an empty object for other types. NULL on allocation failure. */
static json_t *prf__traits_json(const Cdp__V1__Event *ev)
{
    if (ev->type != CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY)
        return json_object();
    const Google__Protobuf__Value *ctx = cdp_struct_get(ev->context, "traits");
    json_t *all = (ctx && ctx->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
                      ? cdp_struct_to_json(ctx->struct_value)
                      : json_object();
    json_t *top = ev->traits ? cdp_struct_to_json(ev->traits) : NULL;
    if (all && top && json_object_update(all, top) != 0) {
        json_decref(all);
        all = NULL;
    }
    json_decref(top);
    return all;
}

/* Fills e->traits from the event. Returns 0 or PRF_ENOMEM. */
static int prf__fill_traits(const Cdp__V1__Event *ev, prf_event *e)
{
    if (ev->type != CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY)
        return PRF_OK; /* no traits: nothing to build (delta.traits stays NULL, n 0) */
    json_t *obj = prf__traits_json(ev);
    if (!obj)
        return PRF_ENOMEM;
    size_t n = json_object_size(obj);
    e->traits = calloc(n ? n : 1, sizeof(*e->traits));
    e->trait_keys_json = calloc(2 * n + 1, sizeof(char *));
    if (!e->traits || !e->trait_keys_json) {
        json_decref(obj);
        return PRF_ENOMEM;
    }
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(obj, key, val) {
        char *k = strdup(key);
        char *j = json_dumps(val, PRF_JSON_FLAGS);
        e->trait_keys_json[2 * i] = k;
        e->trait_keys_json[2 * i + 1] = j;
        if (!k || !j) {
            e->delta.n_traits = i + 1;
            json_decref(obj);
            return PRF_ENOMEM;
        }
        e->traits[i] = (prf_trait_set){ k, j };
        i++;
    }
    e->delta.traits = e->traits;
    e->delta.n_traits = i;
    json_decref(obj);
    return PRF_OK;
}

static int prf__fill_ids(const Cdp__V1__ResolvedEvent *re, prf_event *e)
{
    e->ids = calloc(re->n_identifiers ? re->n_identifiers : 1, sizeof(char *));
    if (!e->ids)
        return PRF_ENOMEM;
    for (size_t i = 0; i < re->n_identifiers; i++) {
        e->ids[i] = prf_id_encode(re->identifiers[i]->type, re->identifiers[i]->value);
        e->delta.n_ids = i + 1;
        if (!e->ids[i])
            return PRF_ENOMEM;
    }
    e->delta.ids = (const char *const *)e->ids;
    return PRF_OK;
}

/* ============================================================ validation */

static int prf__bad_id(const char *s)
{
    return !s || !s[0] || strlen(s) > PRF_ID_MAX_BYTES;
}

static int prf__why(char *err, size_t errlen, const char *fmt, size_t i, const char *field,
                    const char *reason)
{
    snprintf(err, errlen, fmt, i, field, reason);
    return PRF_EINVAL;
}

/* Checks the request fields that are not the Event's own. */
static int prf__check_resolved(const Cdp__V1__ResolvedEvent *re, size_t i, char *err,
                               size_t errlen)
{
    static const char id_reason[] = "required, at most 1024 bytes";
    if (prf__bad_id(re->master_id))
        return prf__why(err, errlen, "events[%zu].%s: %s", i, "master_id", id_reason);
    for (size_t j = 0; j < re->n_merges; j++) {
        const Cdp__V1__Merge *m = re->merges[j];
        const char *bad = prf__bad_id(m->loser_id)      ? "loser_id"
                          : prf__bad_id(m->survivor_id) ? "survivor_id"
                          : strcmp(m->loser_id, m->survivor_id) == 0 ? "loser_id"
                                                                       : NULL;
        if (bad) {
            snprintf(err, errlen, "events[%zu].merges[%zu].%s: %s", i, j, bad,
                     prf__bad_id(m->loser_id) || prf__bad_id(m->survivor_id)
                         ? id_reason
                         : "must differ from survivor_id");
            return PRF_EINVAL;
        }
    }
    for (size_t j = 0; j < re->n_identifiers; j++) {
        const Cdp__V1__Identifier *id = re->identifiers[j];
        const char *bad = prf__bad_id(id->type) ? "type" : prf__bad_id(id->value) ? "value" : NULL;
        if (bad) {
            snprintf(err, errlen, "events[%zu].identifiers[%zu].%s: %s", i, j, bad, id_reason);
            return PRF_EINVAL;
        }
    }
    return PRF_OK;
}

/* Checks the Event and fills the scalar parts of the delta. */
static int prf__check_event(const Cdp__V1__Event *ev, size_t i, prf_delta *d, char *err,
                            size_t errlen)
{
    const char *f = "events[%zu].event.%s: %s";
    if (prf__bad_id(ev->message_id))
        return prf__why(err, errlen, f, i, "message_id", "required, at most 1024 bytes");
    const char *tname = cdp_event_type_name(ev->type);
    if (!tname)
        return prf__why(err, errlen, f, i, "type", "required, a known EventType");
    int track = ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    if (track && !ev->event[0])
        return prf__why(err, errlen, f, i, "event", "required for track events");
    const Google__Protobuf__Timestamp *t = ev->timestamp ? ev->timestamp : ev->received_at;
    if (!t)
        return prf__why(err, errlen, f, i, "timestamp", "required when received_at is absent");
    if (prf_ts_from_proto(t, &d->ts) != 0)
        return prf__why(err, errlen, f, i, ev->timestamp ? "timestamp" : "received_at",
                        "out of range");
    d->message_id = ev->message_id;
    d->count_name = track ? ev->event : tname;
    d->channel = ev->channel;
    if (ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE && ev->message &&
        ev->message->channel[0])
        d->channel = ev->message->channel;
    prf__revenue(ev, d);
    return PRF_OK;
}

/* =============================================================== public */

int prf_event_from_proto(const Cdp__V1__ResolvedEvent *re, size_t index, prf_event *out,
                         char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!re->event) {
        snprintf(err, errlen, "events[%zu].event: required", index);
        return PRF_EINVAL;
    }
    int rc = prf__check_resolved(re, index, err, errlen);
    if (rc == PRF_OK)
        rc = prf__check_event(re->event, index, &out->delta, err, errlen);
    if (rc != PRF_OK)
        return rc;
    out->master_id = re->master_id;
    out->source = re;
    const Cdp__V1__Event *ev = re->event;
    out->tl_member = prf_tl_member_encode(ev->message_id, (int)ev->type, ev->event,
                                          out->delta.channel, out->delta.ts);
    out->delta.tl_member = out->tl_member;
    if (!out->tl_member || prf__fill_traits(ev, out) || prf__fill_ids(re, out)) {
        prf_event_free(out);
        return PRF_ENOMEM;
    }
    return PRF_OK;
}

void prf_event_free(prf_event *e)
{
    free(e->tl_member);
    if (e->trait_keys_json)
        for (size_t i = 0; i < 2 * e->delta.n_traits; i++)
            free(e->trait_keys_json[i]);
    free(e->trait_keys_json);
    free(e->traits);
    for (size_t i = 0; e->ids && i < e->delta.n_ids; i++)
        free(e->ids[i]);
    free(e->ids);
    memset(e, 0, sizeof(*e));
}
