/* cns_suppress: Suppress, Unsuppress and ListSuppressions.
 *
 * The suppression list is one hash keyed by "<type>:<normalized value>"
 * (cdp_ident normalization, so "Foo@Example.com" and "foo@example.com" are
 * one key), an index for paging, and a list-wide audit stream, all written
 * by one script. When identity knows the identifier, the change is also
 * recorded in that profile's audit trail (a second write in the profile's
 * slot, after the first succeeded: on Redis Cluster the two cannot be one
 * script). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdp_log.h"
#include "cns_entry.h"
#include "cns_service.h"

#define CNS_SUPP_REASON_MAX 256

typedef struct {
    cns_svc *cs;
    cdp_rpc_call *call;
    int suppress;                 /* 1 Suppress, 0 Unsuppress */
    int pending;                  /* script + lookup */
    char key[CNS_SUPP_FIELD_BUFSZ];
    char *json;                   /* the stored record (Suppress) */
    char *master;                 /* the profile identity knows, or NULL */
    int removed;                  /* Unsuppress: there was an entry */
    grpc_status_code code;
    char msg[CNS_MSG_MAX];
    const Cdp__V1__Identifier *id;
    char actor[CNS_ACTOR_MAX + 1], reason[CNS_SUPP_REASON_MAX + 1];
    char channels[CNS_MSG_MAX];   /* "sms,email" for the profile record */
    int64_t now;
} cns_supp;

static void cns__supp_free(cns_supp *s)
{
    free(s->json);
    free(s->master);
    free(s);
}

static void cns__supp_error(cns_supp *s, grpc_status_code code, const char *msg)
{
    if (s->code == GRPC_STATUS_OK) {
        s->code = code;
        snprintf(s->msg, sizeof s->msg, "%s", msg);
    }
}

/* Fills a Suppression from a stored record (strings point into j). */
static void cns__supp_pb(const json_t *j, Cdp__V1__Suppression *out, Cdp__V1__Identifier *id,
                         Google__Protobuf__Timestamp *ts, char **chs, size_t maxch)
{
    cdp__v1__suppression__init(out);
    cdp__v1__identifier__init(id);
    id->type = (char *)(json_string_value(json_object_get(j, "t")) ?: "");
    id->value = (char *)(json_string_value(json_object_get(j, "v")) ?: "");
    out->identifier = id;
    out->reason = (char *)(json_string_value(json_object_get(j, "r")) ?: "");
    out->actor = (char *)(json_string_value(json_object_get(j, "a")) ?: "");
    cns_ms_ts(json_integer_value(json_object_get(j, "at")), ts);
    out->created_at = ts;
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(j, "ch"), i, v)
        if (json_is_string(v) && out->n_channels < maxch)
            chs[out->n_channels++] = (char *)json_string_value(v);
    out->channels = chs;
}

static void cns__supp_answer(cns_supp *s)
{
    if (s->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(s->call, s->code, "%s", s->msg);
    } else if (!s->suppress) {
        Cdp__V1__UnsuppressResponse resp = CDP__V1__UNSUPPRESS_RESPONSE__INIT;
        resp.removed = s->removed;
        cdp_rpc_reply(s->call, &resp.base);
    } else {
        json_t *j = json_loads(s->json, 0, NULL);
        Cdp__V1__Suppression out;
        Cdp__V1__Identifier id;
        Google__Protobuf__Timestamp ts;
        char *chs[CNS_MAX_CHANNELS];
        if (j) {
            cns__supp_pb(j, &out, &id, &ts, chs, CNS_MAX_CHANNELS);
            cdp_rpc_reply(s->call, &out.base);
        } else {
            cdp_rpc_fail(s->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        }
        json_decref(j);
    }
    cns__supp_free(s);
}

static void cns__supp_recorded(redisReply *reply, const char *err, void *ud)
{
    cns_supp *s = ud;
    char msg[CNS_MSG_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof msg) != GRPC_STATUS_OK)
        /* the list changed and its own trail has the record */
        cdp_log(CDP_LOG_ERROR, "cannot record a suppression in the profile's audit trail",
                "{s:s,s:s}", "master_id", s->master, "error", msg);
    cns__supp_answer(s);
}

/* Script and lookup are both in: record in the profile's trail, answer. */
static void cns__supp_release(cns_supp *s)
{
    if (--s->pending > 0)
        return;
    int changed = s->suppress || s->removed;
    if (s->code != GRPC_STATUS_OK || !s->master || !changed) {
        cns__supp_answer(s);
        return;
    }
    char context[CNS_MSG_MAX + CNS_SUPP_FIELD_BUFSZ + 32];
    snprintf(context, sizeof context, "identifier %s%s%s", s->key,
             s->channels[0] ? " channels " : "", s->channels);
    const char *action = s->suppress ? "suppress" : "unsuppress";
    const char *fields[] = { "actor",  s->actor,  "action",  action,
                             "reason", s->reason, "context", context };
    if (cns_audit_add(&s->cs->store, s->master, s->now, fields, sizeof fields / sizeof fields[0],
                      cns__supp_recorded, s) != 0)
        cns__supp_answer(s); /* the profile record is best effort */
}

static void cns__supp_script_reply(redisReply *reply, const char *err, void *ud)
{
    cns_supp *s = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code != GRPC_STATUS_OK)
        cns__supp_error(s, code, msg);
    else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
             reply->element[0]->type != REDIS_REPLY_INTEGER)
        cns__supp_error(s, GRPC_STATUS_INTERNAL, "malformed suppression reply");
    else {
        s->removed = !s->suppress && reply->element[0]->integer == 1;
        cns_count("suppressions_total", s->suppress ? "action=\"suppress\"" : "action=\"unsuppress\"",
                  s->suppress || s->removed ? 1 : 0);
    }
    cns__supp_release(s);
}

static void cns__supp_lookup_done(grpc_status_code code, const char *master, const char *details,
                                  void *ud)
{
    cns_supp *s = ud;
    if (code == GRPC_STATUS_OK && !(s->master = strdup(master)))
        cns__supp_error(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else if (code != GRPC_STATUS_OK && code != GRPC_STATUS_NOT_FOUND)
        /* the list is what blocks sends; the profile record is best effort */
        cdp_log(CDP_LOG_WARN, "suppression not recorded in a profile trail: identity unavailable",
                "{s:s}", "error", details ? details : "");
    cns__supp_release(s);
}

/* Validates the common fields; -1 with msg naming the field. */
static int cns__supp_validate(cns_supp *s, const Cdp__V1__Identifier *id, const char *actor,
                              const char *reason, char *msg, size_t msglen)
{
    if (!id) {
        snprintf(msg, msglen, "identifier: required");
        return -1;
    }
    if (cns_check_target(s->cs, "", id, "", s->key, sizeof s->key, msg, msglen) != 0)
        return -1;
    if (!actor[0] || cns_copy(s->actor, sizeof s->actor, actor) != 0) {
        snprintf(msg, msglen, "actor: %s", actor[0] ? "at most 256 bytes" : "required");
        return -1;
    }
    if (cns_copy(s->reason, sizeof s->reason, reason) != 0) {
        snprintf(msg, msglen, "reason: at most %d bytes", CNS_SUPP_REASON_MAX);
        return -1;
    }
    return 0;
}

/* Builds the stored record of a Suppress request into s->json. */
static int cns__supp_record(cns_supp *s, const Cdp__V1__SuppressRequest *r, char *msg,
                            size_t msglen)
{
    const char *colon = strchr(s->key, ':');
    json_t *chs = json_array();
    json_t *j = json_pack("{s:s%,s:s,s:s,s:s,s:I,s:o}", "t", s->key, (size_t)(colon - s->key), "v",
                          colon + 1, "r", s->reason, "a", s->actor, "at", (json_int_t)s->now,
                          "ch", chs);
    if (!j) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < r->n_channels; i++) {
        const char *c = r->channels[i];
        int dup = 0;
        for (size_t k = 0; k < i; k++)
            dup |= strcmp(r->channels[k], c) == 0;
        if (cns_policy_channel(&s->cs->policy, c) < 0 || dup) {
            snprintf(msg, msglen, "channels[%zu]: %s \"%.32s\"", i,
                     dup ? "repeated channel" : "unknown channel", c);
            json_decref(j);
            return -1;
        }
        json_array_append_new(chs, json_string(c));
        int n = snprintf(s->channels + used, sizeof s->channels - used, "%s%s", i ? "," : "", c);
        if (n > 0 && (size_t)n < sizeof s->channels - used)
            used += (size_t)n;
    }
    s->json = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s->json) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    return 0;
}

static void cns__supp_start(cns_supp *s)
{
    const char *keys[] = { CNS_SUPP_KEY, CNS_SUPP_INDEX_KEY, CNS_SUPP_AUDIT_KEY };
    size_t klens[] = { strlen(CNS_SUPP_KEY), strlen(CNS_SUPP_INDEX_KEY),
                       strlen(CNS_SUPP_AUDIT_KEY) };
    char at[24];
    snprintf(at, sizeof at, "%lld", (long long)s->now);
    const char *args[] = { s->key, s->json ? s->json : "", at, s->actor, s->reason,
                           s->suppress ? "suppress" : "unsuppress" };
    size_t alens[6];
    for (size_t i = 0; i < 6; i++)
        alens[i] = strlen(args[i]);
    s->pending = 2;
    cdp_redis_eval(s->cs->store.redis, s->cs->store.suppress, cns__supp_script_reply, s, 3, keys,
                   klens, 6, args, alens);
    cns_lookup(s->cs, s->call, s->id, cns__supp_lookup_done, s);
}

static cns_supp *cns__supp_new(cdp_rpc_call *call, void *ud, int suppress,
                               const Cdp__V1__Identifier *id)
{
    cns_supp *s = calloc(1, sizeof(*s));
    if (!s) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    s->cs = ud;
    s->call = call;
    s->suppress = suppress;
    s->id = id;
    s->now = cdp_now_ms();
    return s;
}

void cns_suppress(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__SuppressRequest *r = (const Cdp__V1__SuppressRequest *)msg;
    cns_supp *s = cns__supp_new(call, ud, 1, r->identifier);
    char err[CNS_MSG_MAX];
    if (!s)
        return;
    if (cns__supp_validate(s, r->identifier, r->actor, r->reason, err, sizeof err) != 0 ||
        cns__supp_record(s, r, err, sizeof err) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        cns__supp_free(s);
        return;
    }
    cns__supp_start(s);
}

void cns_unsuppress(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__UnsuppressRequest *r = (const Cdp__V1__UnsuppressRequest *)msg;
    cns_supp *s = cns__supp_new(call, ud, 0, r->identifier);
    char err[CNS_MSG_MAX];
    if (!s)
        return;
    if (cns__supp_validate(s, r->identifier, r->actor, r->reason, err, sizeof err) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        cns__supp_free(s);
        return;
    }
    cns__supp_start(s);
}

/* ------------------------------------------------------------------ ListSuppressions */

typedef struct {
    cdp_rpc_call *call;
    size_t page;
} cns_list;

static void cns__list_reply(redisReply *reply, const char *err, void *ud)
{
    cns_list *l = ud;
    if (cdp_rpc_fail_redis(l->call, reply, err)) {
        free(l);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[1]->type != REDIS_REPLY_ARRAY ||
        reply->element[0]->elements != reply->element[1]->elements) {
        cdp_rpc_fail(l->call, GRPC_STATUS_INTERNAL, "malformed suppression list reply");
        free(l);
        return;
    }
    const redisReply *ks = reply->element[0], *vs = reply->element[1];
    size_t n = ks->elements < l->page ? ks->elements : l->page;
    typedef struct {
        Cdp__V1__Suppression s;
        Cdp__V1__Identifier id;
        Google__Protobuf__Timestamp ts;
        char *chs[CNS_MAX_CHANNELS];
    } item;
    item *items = calloc(n ? n : 1, sizeof(*items));
    Cdp__V1__Suppression **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    json_t *arena = json_array();
    Cdp__V1__ListSuppressionsResponse resp = CDP__V1__LIST_SUPPRESSIONS_RESPONSE__INIT;
    resp.next_page_token = "";
    int ok = items && ptrs && arena;
    for (size_t i = 0; ok && i < n; i++) {
        const redisReply *v = vs->element[i];
        json_t *j = v->type == REDIS_REPLY_STRING ? json_loadb(v->str, v->len, 0, NULL) : NULL;
        if (!j || json_array_append_new(arena, j) != 0)
            continue; /* removed between the two reads, or unreadable */
        cns__supp_pb(j, &items[resp.n_suppressions].s, &items[resp.n_suppressions].id,
                     &items[resp.n_suppressions].ts, items[resp.n_suppressions].chs,
                     CNS_MAX_CHANNELS);
        ptrs[resp.n_suppressions] = &items[resp.n_suppressions].s;
        resp.n_suppressions++;
    }
    if (ok && ks->elements > l->page && n > 0)
        resp.next_page_token = ks->element[n - 1]->str;
    resp.suppressions = ptrs;
    if (ok)
        cdp_rpc_reply(l->call, &resp.base);
    else
        cdp_rpc_fail(l->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    free(items);
    free(ptrs);
    json_decref(arena);
    free(l);
}

void cns_list_suppressions(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ListSuppressionsRequest *r = (const Cdp__V1__ListSuppressionsRequest *)msg;
    cns_svc *cs = ud;
    char err[CNS_MSG_MAX], start[CNS_SUPP_FIELD_BUFSZ + 1], count[24];
    size_t page;
    if (cns_page_size(r->page_size, &page, err, sizeof err) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        return;
    }
    if (strlen(r->page_token) >= CNS_SUPP_FIELD_BUFSZ ||
        (r->page_token[0] && !strchr(r->page_token, ':'))) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "page_token: not a token returned by ListSuppressions");
        return;
    }
    cns_list *l = calloc(1, sizeof(*l));
    if (!l) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    l->call = call;
    l->page = page;
    if (r->page_token[0])
        snprintf(start, sizeof start, "(%s", r->page_token);
    else
        snprintf(start, sizeof start, "-");
    snprintf(count, sizeof count, "%zu", page + 1);
    const char *keys[] = { CNS_SUPP_KEY, CNS_SUPP_INDEX_KEY };
    size_t klens[] = { strlen(CNS_SUPP_KEY), strlen(CNS_SUPP_INDEX_KEY) };
    const char *args[] = { start, count };
    size_t alens[] = { strlen(start), strlen(count) };
    cdp_redis_eval(cs->store.redis, cs->store.list, cns__list_reply, l, 2, keys, klens, 2, args,
                   alens);
}
