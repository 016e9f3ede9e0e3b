/* cns_check: CheckConsent and CheckConsentBatch.
 *
 * A single check is a batch of one. Every check runs the same steps, and
 * the checks of a batch run side by side, so each step's commands for the
 * whole batch leave in one write (hiredis pipelines what one loop turn
 * issues):
 *   0. by identifier: identity's Lookup gives the master id (an identifier
 *      identity does not know is still decided: its suppression, then the
 *      defaults, and the reason says so);
 *   1. one round trip: HMGET of the consent hash (jurisdiction and the two
 *      entries that can decide) and HKEYS of the profile's main hash (its
 *      identifiers, and whether it is a merged-away tombstone, which is
 *      followed to its survivor with one more read);
 *   2. one round trip: HMGET of the suppression hash for the identifiers;
 *   then cns_decide. A denial with record_denial adds one XADD to the
 *   profile's audit trail before the answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdp_log.h"
#include "cns_entry.h"
#include "cns_service.h"

#define CNS_NOTE_UNKNOWN_IDENT "(identifier not known to identity)"
#define CNS_NOTE_UNKNOWN_PROFILE "(profile not found)"
#define CNS_IDENT_PREFIX "i:"
#define CNS_LABELS_MAX 96

typedef struct cns_batch cns_batch;

typedef struct {
    cns_batch *b;
    const Cdp__V1__CheckConsentRequest *req;
    char ident_key[CNS_SUPP_FIELD_BUFSZ]; /* the asked identifier's suppression key, or "" */
    char *master;                  /* NULL: no profile to read */
    int hops;
    int pending;                   /* replies of step 1 still to come */
    int read_failed;
    cns_status st_channel, st_all;
    char jur[CNS_NAME_BUFSZ];
    int merged, profile_found, consent_found;
    char **keys;                   /* suppression keys to ask about */
    size_t n_keys;
    const char *note;
    char suppressed[CNS_SUPP_FIELD_BUFSZ];
    char supp_reason[CNS_TEXT_MAX];
    cns_decision d;
} cns_check;

struct cns_batch {
    cns_svc *cs;
    cdp_rpc_call *call;
    int single;                    /* answer a ConsentDecision, not a batch */
    size_t n, pending;
    cns_check *checks;
    grpc_status_code code;
    char msg[CNS_MSG_MAX];
};

static void cns__keys_clear(cns_check *c)
{
    for (size_t i = 0; i < c->n_keys; i++)
        free(c->keys[i]);
    free(c->keys);
    c->keys = NULL;
    c->n_keys = 0;
}

static void cns__batch_free(cns_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->checks[i].master);
        cns__keys_clear(&b->checks[i]);
    }
    free(b->checks);
    free(b);
}

/* ------------------------------------------------------------------ the answer */

static void cns__decision_pb(const cns_check *c, Cdp__V1__ConsentDecision *d)
{
    cdp__v1__consent_decision__init(d);
    d->allowed = c->d.allowed;
    d->rule = (Cdp__V1__DecisionRule)c->d.rule;
    d->reason = (char *)c->d.reason;
    d->master_id = c->master ? c->master : "";
    d->purpose = c->req->purpose;
    d->channel = c->req->channel;
    d->status = (Cdp__V1__ConsentStatus)c->d.status;
    d->jurisdiction = (char *)(c->d.jurisdiction ? c->d.jurisdiction : "");
}

static void cns__batch_finish(cns_batch *b)
{
    if (b->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(b->call, b->code, "%s", b->msg);
    } else if (b->single) {
        Cdp__V1__ConsentDecision d;
        cns__decision_pb(&b->checks[0], &d);
        cdp_rpc_reply(b->call, &d.base);
    } else {
        Cdp__V1__ConsentDecision *ds = calloc(b->n ? b->n : 1, sizeof(*ds));
        Cdp__V1__ConsentDecision **ptrs = calloc(b->n ? b->n : 1, sizeof(*ptrs));
        if (!ds || !ptrs) {
            cdp_rpc_fail(b->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            Cdp__V1__CheckConsentBatchResponse resp = CDP__V1__CHECK_CONSENT_BATCH_RESPONSE__INIT;
            for (size_t i = 0; i < b->n; i++) {
                cns__decision_pb(&b->checks[i], &ds[i]);
                ptrs[i] = &ds[i];
            }
            resp.n_decisions = b->n;
            resp.decisions = ptrs;
            cdp_rpc_reply(b->call, &resp.base);
        }
        free(ds);
        free(ptrs);
    }
    cns__batch_free(b);
}

static void cns__batch_release(cns_batch *b)
{
    if (--b->pending == 0)
        cns__batch_finish(b);
}

static void cns__check_done(cns_check *c)
{
    cns__batch_release(c->b);
}

/* Records the batch's first failure (prefixed with the check's index in a
 * batch); the answer is then that failure. */
static void cns__check_error(cns_check *c, grpc_status_code code, const char *msg)
{
    cns_batch *b = c->b;
    if (b->code == GRPC_STATUS_OK) {
        b->code = code;
        if (b->single)
            snprintf(b->msg, sizeof b->msg, "%s", msg);
        else
            snprintf(b->msg, sizeof b->msg, "checks[%zu]: %.400s", (size_t)(c - b->checks), msg);
    }
}

/* Records the failure and ends the check. */
static void cns__check_fail(cns_check *c, grpc_status_code code, const char *msg)
{
    cns__check_error(c, code, msg);
    cns__check_done(c);
}

/* When the reply failed, ends the check with its status and returns 1. */
static int cns__check_fail_redis(cns_check *c, const redisReply *reply, const char *err)
{
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code == GRPC_STATUS_OK)
        return 0;
    cns__check_fail(c, code, msg);
    return 1;
}

/* ------------------------------------------------------------------ decide, record */

static void cns__denial_recorded(redisReply *reply, const char *err, void *ud)
{
    cns_check *c = ud;
    char msg[CNS_MSG_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof msg) == GRPC_STATUS_OK)
        cns_count("denials_recorded_total", "", 1);
    else /* the denial stands; only its record is missing */
        cdp_log(CDP_LOG_ERROR, "cannot record a denial", "{s:s,s:s}", "master_id", c->master,
                "error", msg);
    cns__check_done(c);
}

static void cns__decide(cns_check *c)
{
    cns_svc *cs = c->b->cs;
    const Cdp__V1__CheckConsentRequest *r = c->req;
    cns_check_input in = {
        .purpose = r->purpose,
        .channel = r->channel,
        .jurisdiction = c->jur,
        .channel_status = c->st_channel,
        .all_status = c->st_all,
        .suppressed = c->suppressed[0] ? c->suppressed : NULL,
        .suppression_reason = c->supp_reason,
        .note = c->note,
    };
    cns_decide(&cs->policy, &in, &c->d);
    char labels[CNS_LABELS_MAX];
    snprintf(labels, sizeof labels, "result=\"%s\",rule=\"%s\"",
             c->d.allowed ? "allowed" : "denied", cns_rule_name(c->d.rule));
    cns_count("checks_total", labels, 1);
    if (c->d.allowed || !r->record_denial || !c->master) {
        cns__check_done(c);
        return;
    }
    const char *fields[] = { "actor",   r->actor,   "action",  "denied_at_send",
                             "purpose", r->purpose, "channel", r->channel,
                             "reason",  c->d.reason, "context", r->context };
    if (cns_audit_add(&cs->store, c->master, cdp_now_ms(), fields,
                      sizeof fields / sizeof fields[0], cns__denial_recorded, c) != 0)
        cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

/* ------------------------------------------------------------------ step 2: suppression */

/* 1 when the suppression JSON applies to channel (no channels: all). */
static int cns__suppression_applies(const json_t *s, const char *channel)
{
    const json_t *chs = json_object_get(s, "ch");
    if (!json_is_array(chs) || json_array_size(chs) == 0)
        return 1;
    size_t i;
    const json_t *v;
    json_array_foreach(chs, i, v)
        if (json_is_string(v) && strcmp(json_string_value(v), channel) == 0)
            return 1;
    return 0;
}

static void cns__suppression_reply(redisReply *reply, const char *err, void *ud)
{
    cns_check *c = ud;
    if (cns__check_fail_redis(c, reply, err))
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != c->n_keys) {
        cns__check_fail(c, GRPC_STATUS_INTERNAL, "malformed suppression reply");
        return;
    }
    for (size_t i = 0; i < reply->elements && !c->suppressed[0]; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        json_t *s = json_loadb(e->str, e->len, 0, NULL);
        if (s && cns__suppression_applies(s, c->req->channel)) {
            snprintf(c->suppressed, sizeof c->suppressed, "%s", c->keys[i]);
            snprintf(c->supp_reason, sizeof c->supp_reason, "%s",
                     json_string_value(json_object_get(s, "r")) ?: "");
        }
        json_decref(s);
    }
    cns__decide(c);
}

static int cns__add_key(cns_check *c, const char *key)
{
    for (size_t i = 0; i < c->n_keys; i++)
        if (strcmp(c->keys[i], key) == 0)
            return 0;
    char **nk = realloc(c->keys, (c->n_keys + 1) * sizeof(*nk));
    if (!nk)
        return -1;
    c->keys = nk;
    if (!(c->keys[c->n_keys] = strdup(key)))
        return -1;
    c->n_keys++;
    return 0;
}

static void cns__ask_suppression(cns_check *c)
{
    if (c->n_keys == 0) {
        cns__decide(c);
        return;
    }
    const char **argv = malloc((c->n_keys + 2) * sizeof(*argv));
    size_t *lens = malloc((c->n_keys + 2) * sizeof(*lens));
    if (!argv || !lens) {
        free(argv);
        free(lens);
        cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    argv[0] = "HMGET";
    argv[1] = CNS_SUPP_KEY;
    for (size_t i = 0; i < c->n_keys; i++)
        argv[i + 2] = c->keys[i];
    for (size_t i = 0; i < c->n_keys + 2; i++)
        lens[i] = strlen(argv[i]);
    cdp_redis_command(c->b->cs->store.redis, CNS_SUPP_KEY, strlen(CNS_SUPP_KEY),
                      cns__suppression_reply, c, (int)(c->n_keys + 2), argv, lens);
    free(argv);
    free(lens);
}

/* ------------------------------------------------------------------ step 1: the profile */

static void cns__read(cns_check *c);

/* Field "i:<len(type)>:<type><value>" of the profile hash -> suppression key. */
static int cns__profile_ident(cns_check *c, const char *f, size_t flen)
{
    const char *p = f + strlen(CNS_IDENT_PREFIX), *end = f + flen;
    size_t tlen = 0;
    while (p < end && *p >= '0' && *p <= '9' && tlen < CDP_IDENT_MAX_TYPE + 1)
        tlen = tlen * 10 + (size_t)(*p++ - '0');
    if (p >= end || *p != ':' || tlen == 0 || tlen > CDP_IDENT_MAX_TYPE ||
        (size_t)(end - p - 1) <= tlen)
        return 0; /* not an identifier field we understand: nothing to ask */
    p++;
    char type[CDP_IDENT_MAX_TYPE + 1], value[CDP_IDENT_VALUE_BUFSZ], key[CNS_SUPP_FIELD_BUFSZ];
    size_t vlen = (size_t)(end - p) - tlen;
    if (vlen >= sizeof value)
        return 0;
    memcpy(type, p, tlen);
    type[tlen] = '\0';
    memcpy(value, p + tlen, vlen);
    value[vlen] = '\0';
    const char *why;
    /* stored values are normalized already; normalizing again is a no-op
     * that also covers values stored before a normalization change */
    if (cns_ident_key(c->b->cs, type, value, key, sizeof key, &why) != 0)
        snprintf(key, sizeof key, "%s:%s", type, value);
    return cns__add_key(c, key);
}

static void cns__merged_reply(redisReply *reply, const char *err, void *ud)
{
    cns_check *c = ud;
    if (cns__check_fail_redis(c, reply, err))
        return;
    if (reply->type != REDIS_REPLY_STRING || ++c->hops > CNS_MAX_REDIRECTS) {
        cns__check_fail(c, GRPC_STATUS_INTERNAL, "merged profile chain too long or malformed");
        return;
    }
    char *into = strndup(reply->str, reply->len);
    if (!into) {
        cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    free(c->master);
    c->master = into;
    cns__read(c);
}

/* Both replies of step 1 are in. */
static void cns__read_complete(cns_check *c)
{
    if (c->read_failed) {
        cns__check_done(c); /* the failure is recorded already */
        return;
    }
    if (c->merged) {
        cns_keys k;
        if (cns_keys_init(&k, c->master) != 0) {
            cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        const char *argv[] = { "HGET", k.v[CNS_KEY_PROFILE], CNS_MERGED_FIELD };
        size_t lens[] = { 4, k.len[CNS_KEY_PROFILE], strlen(CNS_MERGED_FIELD) };
        cdp_redis_command(c->b->cs->store.redis, k.v[CNS_KEY_PROFILE], k.len[CNS_KEY_PROFILE],
                          cns__merged_reply, c, 3, argv, lens);
        cns_keys_free(&k);
        return;
    }
    if (!c->profile_found && !c->consent_found)
        c->note = CNS_NOTE_UNKNOWN_PROFILE;
    cns__ask_suppression(c);
}

/* A step 1 reply failed: record it once, finish when both are in. */
static void cns__read_failed(cns_check *c, grpc_status_code code, const char *msg)
{
    if (!c->read_failed) {
        c->read_failed = 1;
        cns__check_error(c, code, msg);
    }
}

static cns_status cns__entry_status(const redisReply *r)
{
    cns_entry e;
    if (r->type != REDIS_REPLY_STRING)
        return CNS_STATUS_UNSET;
    json_t *j = json_loadb(r->str, r->len, 0, NULL);
    int ok = j && cns_entry_from_json(j, &e) == 0;
    json_decref(j);
    return ok ? e.status : CNS_STATUS_UNSET;
}

static void cns__consent_reply(redisReply *reply, const char *err, void *ud)
{
    cns_check *c = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code != GRPC_STATUS_OK) {
        cns__read_failed(c, code, msg);
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        cns__read_failed(c, GRPC_STATUS_INTERNAL, "malformed consent reply");
    } else {
        const redisReply *j = reply->element[0];
        c->jur[0] = '\0';
        if (j->type == REDIS_REPLY_STRING && j->len < sizeof c->jur)
            snprintf(c->jur, sizeof c->jur, "%.*s", (int)j->len, j->str);
        c->st_channel = cns__entry_status(reply->element[1]);
        c->st_all = cns__entry_status(reply->element[2]);
        c->consent_found = j->type == REDIS_REPLY_STRING ||
                           reply->element[1]->type == REDIS_REPLY_STRING ||
                           reply->element[2]->type == REDIS_REPLY_STRING;
    }
    if (--c->pending == 0)
        cns__read_complete(c);
}

static void cns__profile_reply(redisReply *reply, const char *err, void *ud)
{
    cns_check *c = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code != GRPC_STATUS_OK) {
        cns__read_failed(c, code, msg);
    } else if (reply->type != REDIS_REPLY_ARRAY) {
        cns__read_failed(c, GRPC_STATUS_INTERNAL, "malformed profile reply");
    } else {
        c->profile_found = reply->elements > 0;
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *f = reply->element[i];
            if (f->type != REDIS_REPLY_STRING)
                continue;
            if (f->len == strlen(CNS_MERGED_FIELD) && memcmp(f->str, CNS_MERGED_FIELD, f->len) == 0)
                c->merged = 1;
            else if (f->len > strlen(CNS_IDENT_PREFIX) &&
                     memcmp(f->str, CNS_IDENT_PREFIX, strlen(CNS_IDENT_PREFIX)) == 0 &&
                     cns__profile_ident(c, f->str, f->len) != 0) {
                cns__read_failed(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                break;
            }
        }
    }
    if (--c->pending == 0)
        cns__read_complete(c);
}

/* Step 1 for c->master: two commands, one round trip. */
static void cns__read(cns_check *c)
{
    cns_keys k;
    char fch[CNS_FIELD_BUFSZ], fall[CNS_FIELD_BUFSZ];
    if (cns_keys_init(&k, c->master) != 0) {
        cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* a merged-away profile's identifiers were moved to the survivor */
    cns__keys_clear(c);
    c->merged = c->profile_found = c->consent_found = 0;
    if (c->ident_key[0] && cns__add_key(c, c->ident_key) != 0) {
        cns_keys_free(&k);
        cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    cns_entry_field(c->req->purpose, c->req->channel, fch, sizeof fch);
    cns_entry_field(c->req->purpose, CNS_ALL_CHANNELS, fall, sizeof fall);
    const char *a1[] = { "HMGET", k.v[CNS_KEY_CONSENT], "j", fch, fall };
    size_t l1[] = { 5, k.len[CNS_KEY_CONSENT], 1, strlen(fch), strlen(fall) };
    const char *a2[] = { "HKEYS", k.v[CNS_KEY_PROFILE] };
    size_t l2[] = { 5, k.len[CNS_KEY_PROFILE] };
    cdp_redis *r = c->b->cs->store.redis;
    c->pending = 2;
    cdp_redis_command(r, k.v[CNS_KEY_CONSENT], k.len[CNS_KEY_CONSENT], cns__consent_reply, c, 5,
                      a1, l1);
    cdp_redis_command(r, k.v[CNS_KEY_PROFILE], k.len[CNS_KEY_PROFILE], cns__profile_reply, c, 2,
                      a2, l2);
    cns_keys_free(&k);
}

static void cns__lookup_done(grpc_status_code code, const char *master, const char *details,
                             void *ud)
{
    cns_check *c = ud;
    if (code == GRPC_STATUS_NOT_FOUND) {
        c->note = CNS_NOTE_UNKNOWN_IDENT;
        if (cns__add_key(c, c->ident_key) != 0)
            cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        else
            cns__ask_suppression(c);
    } else if (code != GRPC_STATUS_OK) {
        cns__check_fail(c, code, details);
    } else if (!(c->master = strdup(master))) {
        cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        cns__read(c);
    }
}

/* ------------------------------------------------------------------ requests */

/* Validates one check; -1 with msg naming the field (prefix first). */
static int cns__validate(const cns_svc *cs, const Cdp__V1__CheckConsentRequest *r,
                         const char *prefix, cns_check *c, char *msg, size_t msglen)
{
    if (cns_check_target(cs, r->master_id, r->identifier, prefix, c->ident_key,
                         sizeof c->ident_key, msg, msglen) != 0)
        return -1;
    if (!r->purpose[0] || cns_policy_purpose(&cs->policy, r->purpose) < 0) {
        snprintf(msg, msglen, "%spurpose: %s%.32s%s", prefix,
                 r->purpose[0] ? "unknown purpose \"" : "required", r->purpose,
                 r->purpose[0] ? "\"" : "");
        return -1;
    }
    if (!r->channel[0] || cns_policy_channel(&cs->policy, r->channel) < 0) {
        snprintf(msg, msglen, "%schannel: %s%.32s%s", prefix,
                 r->channel[0] ? "unknown channel \"" : "required", r->channel,
                 r->channel[0] ? "\"" : "");
        return -1;
    }
    if (strlen(r->actor) > CNS_ACTOR_MAX || strlen(r->context) > CNS_TEXT_MAX) {
        snprintf(msg, msglen, "%s%s: at most %d bytes", prefix,
                 strlen(r->actor) > CNS_ACTOR_MAX ? "actor" : "context",
                 strlen(r->actor) > CNS_ACTOR_MAX ? CNS_ACTOR_MAX : CNS_TEXT_MAX);
        return -1;
    }
    return 0;
}

static void cns__run(cdp_rpc_call *call, cns_svc *cs, Cdp__V1__CheckConsentRequest *const *reqs,
                     size_t n, int single)
{
    cns_batch *b = calloc(1, sizeof(*b));
    cns_check *checks = calloc(n ? n : 1, sizeof(*checks));
    if (!b || !checks) {
        free(b);
        free(checks);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *b = (cns_batch){ .cs = cs, .call = call, .single = single, .n = n, .checks = checks };
    char msg[CNS_MSG_MAX];
    for (size_t i = 0; i < n; i++) {
        char prefix[32] = "";
        if (!single)
            snprintf(prefix, sizeof prefix, "checks[%zu].", i);
        checks[i].b = b;
        checks[i].req = reqs[i];
        if (cns__validate(cs, reqs[i], prefix, &checks[i], msg, sizeof msg) != 0) {
            cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
            cns__batch_free(b);
            return;
        }
    }
    if (n == 0) {
        cns__batch_finish(b);
        return;
    }
    b->pending = n + 1; /* held while starting, so no check can finish the batch */
    for (size_t i = 0; i < n; i++) {
        cns_check *c = &checks[i];
        if (c->req->identifier) {
            cns_lookup(cs, call, c->req->identifier, cns__lookup_done, c);
        } else if (!(c->master = strdup(c->req->master_id))) {
            cns__check_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            cns__read(c);
        }
    }
    cns__batch_release(b);
}

void cns_check_consent(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    Cdp__V1__CheckConsentRequest *req = (Cdp__V1__CheckConsentRequest *)msg;
    cns__run(call, ud, &req, 1, 1);
}

void cns_check_consent_batch(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__CheckConsentBatchRequest *req = (const Cdp__V1__CheckConsentBatchRequest *)msg;
    if (req->n_checks > CNS_MAX_CHECKS) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "checks: at most %d, got %zu",
                     CNS_MAX_CHECKS, req->n_checks);
        return;
    }
    cns__run(call, ud, req->checks, req->n_checks, 0);
}
