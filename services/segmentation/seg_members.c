/* seg_members: ListMembers, GetMemberships and EstimateSize.
 *
 * ListMembers pages the segment's member index (a sorted set of master ids
 * with score 0, so ZRANGEBYLEX gives master-id order; the page token is the
 * last master id of the page) and reads the entered times from the index
 * hash in a second round trip. GetMemberships reads the profile's mem hash
 * (after an identity Lookup through cdp_lookup when asked by identifier).
 * EstimateSize is a ZCARD for a saved segment; for a rule it samples the
 * registry shards in proportion to their sizes (SRANDMEMBER), evaluates the
 * sample and extrapolates to the registry's size. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp/v1/segmentation.pb-c.h"
#include "cdp_lookup.h"
#include "seg_load.h"
#include "seg_service.h"

/* A request in flight: replies are gathered, the first error kept. */
typedef struct {
    seg_svc *s;
    cdp_rpc_call *call;
    int pending;
    grpc_status_code code;
    char msg[SEG_ERR_MAX];
} seg_req;

/* Checks a reply; keeps the first failure. Returns 1 when usable. */
static int seg__req_ok(seg_req *q, redisReply *reply, const char *err)
{
    char msg[SEG_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code != GRPC_STATUS_OK && q->code == GRPC_STATUS_OK) {
        q->code = code;
        snprintf(q->msg, sizeof(q->msg), "%s", msg);
    }
    return code == GRPC_STATUS_OK;
}

/* ------------------------------------------------------------------ ListMembers */

typedef struct {
    seg_req q;
    char *id;
    char *keys[SEG_SKEY_COUNT];
    int32_t page;
    int exists;
    int64_t total;
    char **ids;
    size_t n;
    int more;
    int64_t *entered;
} seg_list;

static void seg__list_free(seg_list *l)
{
    free(l->id);
    for (int k = 0; k < SEG_SKEY_COUNT; k++)
        free(l->keys[k]);
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    free(l->entered);
    free(l);
}

static void seg__list_answer(seg_list *l)
{
    Cdp__V1__Member *m = calloc(l->n ? l->n : 1, sizeof(*m));
    Cdp__V1__Member **ptrs = calloc(l->n ? l->n : 1, sizeof(*ptrs));
    Google__Protobuf__Timestamp *ts = calloc(l->n ? l->n : 1, sizeof(*ts));
    if (!m || !ptrs || !ts) {
        cdp_rpc_fail(l->q.call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < l->n; i++) {
            cdp__v1__member__init(&m[i]);
            m[i].master_id = l->ids[i];
            if (l->entered[i]) {
                seg_ts_from_ms(&ts[i], l->entered[i]);
                m[i].entered_at = &ts[i];
            }
            ptrs[i] = &m[i];
        }
        Cdp__V1__ListMembersResponse r = CDP__V1__LIST_MEMBERS_RESPONSE__INIT;
        r.n_members = l->n;
        r.members = ptrs;
        r.total = l->total;
        r.next_page_token = l->more && l->n ? l->ids[l->n - 1] : "";
        cdp_rpc_reply(l->q.call, &r.base);
    }
    free(m);
    free(ptrs);
    free(ts);
    seg__list_free(l);
}

static void seg__entered_reply(redisReply *reply, const char *err, void *ud)
{
    seg_list *l = ud;
    if (!seg__req_ok(&l->q, reply, err)) {
        cdp_rpc_fail(l->q.call, l->q.code, "%s", l->q.msg);
        seg__list_free(l);
        return;
    }
    for (size_t i = 0; i < l->n && reply->type == REDIS_REPLY_ARRAY && i < reply->elements;
         i++) {
        const redisReply *v = reply->element[i];
        const char *colon = v->type == REDIS_REPLY_STRING ? strchr(v->str, ':') : NULL;
        if (colon)
            cdp_parse_i64(colon + 1, strlen(colon + 1), &l->entered[i]);
    }
    seg__list_answer(l);
}

/* The three reads answered: read the entered times of the page. */
static void seg__list_step(seg_list *l)
{
    if (--l->q.pending > 0)
        return;
    if (l->q.code != GRPC_STATUS_OK) {
        cdp_rpc_fail(l->q.call, l->q.code, "%s", l->q.msg);
        seg__list_free(l);
        return;
    }
    if (!l->exists) {
        cdp_rpc_fail(l->q.call, GRPC_STATUS_NOT_FOUND, "segment not found: %s", l->id);
        seg__list_free(l);
        return;
    }
    if (l->n == 0) {
        seg__list_answer(l);
        return;
    }
    size_t argc = l->n + 2;
    const char **argv = calloc(argc, sizeof(char *));
    size_t *len = calloc(argc, sizeof(size_t));
    if (!argv || !len) {
        free(argv);
        free(len);
        cdp_rpc_fail(l->q.call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__list_free(l);
        return;
    }
    argv[0] = "HMGET";
    argv[1] = l->keys[SEG_SKEY_IDX];
    for (size_t i = 0; i < l->n; i++)
        argv[i + 2] = l->ids[i];
    for (size_t i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    cdp_redis_command(l->q.s->redis, argv[1], len[1], seg__entered_reply, l, (int)argc, argv,
                      len);
    free(argv);
    free(len);
}

static void seg__list_exists(redisReply *reply, const char *err, void *ud)
{
    seg_list *l = ud;
    if (seg__req_ok(&l->q, reply, err))
        l->exists = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
    seg__list_step(l);
}

static void seg__list_total(redisReply *reply, const char *err, void *ud)
{
    seg_list *l = ud;
    if (seg__req_ok(&l->q, reply, err) && reply->type == REDIS_REPLY_INTEGER)
        l->total = reply->integer;
    seg__list_step(l);
}

static void seg__list_range(redisReply *reply, const char *err, void *ud)
{
    seg_list *l = ud;
    if (seg__req_ok(&l->q, reply, err) && reply->type == REDIS_REPLY_ARRAY) {
        size_t n = reply->elements;
        if (n > (size_t)l->page) {
            l->more = 1;
            n = (size_t)l->page;
        }
        l->ids = calloc(n ? n : 1, sizeof(char *));
        l->entered = calloc(n ? n : 1, sizeof(int64_t));
        for (size_t i = 0; l->ids && l->entered && i < n; i++)
            if (reply->element[i]->type == REDIS_REPLY_STRING &&
                (l->ids[l->n] = strdup(reply->element[i]->str)))
                l->n++;
    }
    seg__list_step(l);
}

void seg_list_members(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ListMembersRequest *req = (const Cdp__V1__ListMembersRequest *)msg;
    seg_svc *s = ud;
    if (!req->segment_id[0] || !seg_id_valid(req->segment_id)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment_id: %s",
                     req->segment_id[0] ? "malformed" : "required");
        return;
    }
    if (req->page_size < 0 || req->page_size > SEG_PAGE_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must be 0 to %d",
                     SEG_PAGE_MAX);
        return;
    }
    if (strlen(req->page_token) > SEG_MASTER_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_token: malformed");
        return;
    }
    seg_list *l = calloc(1, sizeof(*l));
    int ok = l && (l->id = strdup(req->segment_id));
    for (int k = 0; ok && k < SEG_SKEY_COUNT; k++)
        ok = (l->keys[k] = seg_skey(req->segment_id, k)) != NULL;
    size_t toklen = strlen(req->page_token);
    char *start = ok ? malloc(toklen + 2) : NULL;
    if (!ok || !start) {
        if (l)
            seg__list_free(l);
        free(start);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    l->q.s = s;
    l->q.call = call;
    l->page = req->page_size ? req->page_size : SEG_PAGE_DEFAULT;
    /* "(" + token: strictly after the last id of the previous page */
    if (toklen) {
        start[0] = '(';
        memcpy(start + 1, req->page_token, toklen + 1);
    } else {
        strcpy(start, "-");
    }
    char limit[32];
    snprintf(limit, sizeof(limit), "%d", l->page + 1);
    const char *range[] = { "ZRANGEBYLEX", l->keys[SEG_SKEY_MEMBERS], start, "+", "LIMIT", "0",
                            limit };
    size_t rlen[7];
    for (int i = 0; i < 7; i++)
        rlen[i] = strlen(range[i]);
    l->q.pending = 3;
    cdp_redis_commandf(s->redis, SEG_KEY_DEFS, seg__list_exists, l, "HEXISTS %s %s",
                       SEG_KEY_DEFS, l->id);
    cdp_redis_commandf(s->redis, l->keys[SEG_SKEY_MEMBERS], seg__list_total, l, "ZCARD %s",
                       l->keys[SEG_SKEY_MEMBERS]);
    cdp_redis_command(s->redis, range[1], rlen[1], seg__list_range, l, 7, range, rlen);
    free(start);
}

/* ------------------------------------------------------------------ GetMemberships */

typedef struct {
    seg_req q;
    char *master;
    int include_exited;
} seg_mships;

static void seg__mships_free(seg_mships *m)
{
    free(m->master);
    free(m);
}

static void seg__mem_reply(redisReply *reply, const char *err, void *ud)
{
    seg_mships *m = ud;
    if (!seg__req_ok(&m->q, reply, err) || reply->type != REDIS_REPLY_ARRAY) {
        cdp_rpc_fail(m->q.call, m->q.code ? m->q.code : GRPC_STATUS_INTERNAL, "%s",
                     m->q.code ? m->q.msg : "malformed membership reply");
        seg__mships_free(m);
        return;
    }
    size_t n = reply->elements / 2, k = 0;
    Cdp__V1__Membership *ms = calloc(n ? n : 1, sizeof(*ms));
    Cdp__V1__Membership **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    Google__Protobuf__Timestamp *ts = calloc(2 * (n ? n : 1), sizeof(*ts));
    if (!ms || !ptrs || !ts) {
        cdp_rpc_fail(m->q.call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        const seg_defs *defs = m->q.s->defs;
        for (size_t i = 0; i < n; i++) {
            const redisReply *f = reply->element[2 * i], *v = reply->element[2 * i + 1];
            seg_mem_state st;
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
                seg_mem_parse(v->str, v->len, &st) != 0)
                continue;
            long d = seg_defs_find(defs, f->str);
            /* deleted segments and older incarnations of an id are not shown */
            if (d < 0 || seg_defs_at(defs, (size_t)d)->created_ms != st.created_ms)
                continue;
            if (!st.in && !m->include_exited)
                continue;
            cdp__v1__membership__init(&ms[k]);
            ms[k].segment_id = f->str;
            ms[k].member = st.in;
            if (st.entered_ms) {
                seg_ts_from_ms(&ts[2 * k], st.entered_ms);
                ms[k].entered_at = &ts[2 * k];
            }
            if (!st.in && st.exited_ms) {
                seg_ts_from_ms(&ts[2 * k + 1], st.exited_ms);
                ms[k].exited_at = &ts[2 * k + 1];
            }
            ptrs[k] = &ms[k];
            k++;
        }
        Cdp__V1__GetMembershipsResponse r = CDP__V1__GET_MEMBERSHIPS_RESPONSE__INIT;
        r.master_id = m->master;
        r.n_memberships = k;
        r.memberships = ptrs;
        cdp_rpc_reply(m->q.call, &r.base);
    }
    free(ms);
    free(ptrs);
    free(ts);
    seg__mships_free(m);
}

static void seg__mships_read(seg_mships *m)
{
    char *key = seg_pkey(m->master, SEG_PKEY_MEM);
    if (!key) {
        cdp_rpc_fail(m->q.call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        seg__mships_free(m);
        return;
    }
    cdp_redis_commandf(m->q.s->redis, key, seg__mem_reply, m, "HGETALL %s", key);
    free(key);
}

static void seg__lookup_done(grpc_status_code code, const char *master, const char *details,
                             void *ud)
{
    seg_mships *m = ud;
    if (code != GRPC_STATUS_OK) {
        cdp_rpc_fail(m->q.call, code, "%s", details);
    } else if (!(m->master = strdup(master))) {
        cdp_rpc_fail(m->q.call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        seg__mships_read(m);
        return;
    }
    seg__mships_free(m);
}

void seg_get_memberships(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetMembershipsRequest *req = (const Cdp__V1__GetMembershipsRequest *)msg;
    seg_svc *s = ud;
    int by_id = req->master_id[0] != '\0', by_ident = req->identifier != NULL;
    if (by_id == by_ident) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "master_id, identifier: exactly one is required");
        return;
    }
    if (by_id && strlen(req->master_id) > SEG_MASTER_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "master_id: at most %d bytes",
                     SEG_MASTER_MAX);
        return;
    }
    if (by_ident && (!req->identifier->type[0] || !req->identifier->value[0])) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "identifier.%s: required",
                     req->identifier->type[0] ? "value" : "type");
        return;
    }
    if (!s->defs_loaded) {
        cdp_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "segment definitions not loaded yet");
        return;
    }
    seg_mships *m = calloc(1, sizeof(*m));
    if (!m || (by_id && !(m->master = strdup(req->master_id)))) {
        free(m);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    m->q.s = s;
    m->q.call = call;
    m->include_exited = req->include_exited;
    if (by_id) {
        seg__mships_read(m);
        return;
    }
    cdp_lookup(s->identity, call, req->identifier, s->cfg.lookup_timeout_ms, seg__lookup_done,
               m);
}

/* ------------------------------------------------------------------ EstimateSize */

typedef struct seg_est seg_est;

typedef struct {
    seg_est *e;
    seg_profile *p;
    int got;
    char *merged;
} seg_est_prof;

struct seg_est {
    seg_req q;
    seg_rule *rule;           /* NULL: a saved segment */
    int exists;
    int64_t members, population, shard_size[SEG_KNOWN_SHARDS];
    int64_t sample, sampled, matched;
    seg_est_prof *profs;
    size_t nprofs, cap;
    int64_t now;
};

static void seg__est_free(seg_est *e)
{
    if (e->rule)
        seg_rule_free(e->rule);
    for (size_t i = 0; i < e->nprofs; i++) {
        if (e->profs[i].p)
            seg_profile_free(e->profs[i].p);
        free(e->profs[i].merged);
    }
    free(e->profs);
    free(e);
}

static void seg__est_answer(seg_est *e)
{
    if (e->q.code != GRPC_STATUS_OK) {
        cdp_rpc_fail(e->q.call, e->q.code, "%s", e->q.msg);
    } else {
        Cdp__V1__EstimateSizeResponse r = CDP__V1__ESTIMATE_SIZE_RESPONSE__INIT;
        r.population = e->population;
        if (!e->rule) {
            r.estimate = e->members;
            r.exact = 1;
        } else {
            r.sampled = e->sampled;
            r.matched = e->matched;
            r.estimate = e->sampled
                             ? (int64_t)llround((double)e->matched * (double)e->population /
                                                (double)e->sampled)
                             : 0;
        }
        cdp_rpc_reply(e->q.call, &r.base);
    }
    seg__est_free(e);
}

static void seg__est_prof_reply(redisReply *reply, const char *err, void *ud, int daily)
{
    seg_est_prof *ep = ud;
    seg_est *e = ep->e;
    if (seg__req_ok(&e->q, reply, err)) {
        int exists;
        if (daily)
            seg_profile_load_daily(ep->p, reply);
        else
            seg_profile_load_main(ep->p, reply, &ep->merged, &exists);
    }
    if (++ep->got == 2 && !ep->merged) {
        /* tombstones are not people any more */
        e->sampled++;
        e->matched += seg_rule_eval(e->rule, ep->p, e->now, NULL);
    }
    if (--e->q.pending == 0)
        seg__est_answer(e);
}

static void seg__est_main(redisReply *r, const char *err, void *ud)
{
    seg__est_prof_reply(r, err, ud, 0);
}

static void seg__est_daily(redisReply *r, const char *err, void *ud)
{
    seg__est_prof_reply(r, err, ud, 1);
}

static void seg__est_sampled(redisReply *reply, const char *err, void *ud)
{
    seg_est *e = ud;
    if (seg__req_ok(&e->q, reply, err) && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements && e->nprofs < e->cap; i++) {
            const redisReply *m = reply->element[i];
            seg_est_prof *ep = &e->profs[e->nprofs];
            char *km = m->type == REDIS_REPLY_STRING ? seg_pkey(m->str, SEG_PKEY_MAIN) : NULL;
            char *kd = km ? seg_pkey(m->str, SEG_PKEY_DAILY) : NULL;
            ep->e = e;
            ep->p = kd ? seg_profile_new() : NULL;
            if (ep->p) {
                e->nprofs++;
                e->q.pending += 2;
                cdp_redis_commandf(e->q.s->redis, km, seg__est_main, ep, "HGETALL %s", km);
                cdp_redis_commandf(e->q.s->redis, kd, seg__est_daily, ep, "HGETALL %s", kd);
            }
            free(km);
            free(kd);
        }
    }
    if (--e->q.pending == 0)
        seg__est_answer(e);
}

/* Phase A answered: the shard sizes (and the saved segment). */
static void seg__est_counted(seg_est *e)
{
    if (e->q.code != GRPC_STATUS_OK || !e->rule) {
        if (e->q.code == GRPC_STATUS_OK && !e->exists) {
            e->q.code = GRPC_STATUS_NOT_FOUND;
            snprintf(e->q.msg, sizeof(e->q.msg), "segment not found");
        }
        seg__est_answer(e);
        return;
    }
    if (e->population == 0) {
        seg__est_answer(e);
        return;
    }
    int64_t want = e->sample < e->population ? e->sample : e->population;
    e->cap = (size_t)want + SEG_KNOWN_SHARDS;
    e->profs = calloc(e->cap, sizeof(seg_est_prof));
    if (!e->profs) {
        e->q.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(e->q.msg, sizeof(e->q.msg), "out of memory");
        seg__est_answer(e);
        return;
    }
    e->now = seg_now(e->q.s);
    e->q.pending = 1;
    for (unsigned k = 0; k < SEG_KNOWN_SHARDS; k++) {
        int64_t n = (want * e->shard_size[k] + e->population - 1) / e->population;
        char *key = n > 0 ? seg_known_key(k) : NULL;
        if (!key)
            continue;
        e->q.pending++;
        cdp_redis_commandf(e->q.s->redis, key, seg__est_sampled, e, "SRANDMEMBER %s %" PRId64,
                           key, n);
        free(key);
    }
    if (--e->q.pending == 0)
        seg__est_answer(e);
}

typedef struct {
    seg_est *e;
    int what;    /* 0..15 a shard, 16 HEXISTS, 17 ZCARD */
} seg_est_slot;

static void seg__est_count_reply(redisReply *reply, const char *err, void *ud)
{
    seg_est_slot *slot = ud;
    seg_est *e = slot->e;
    if (seg__req_ok(&e->q, reply, err) && reply->type == REDIS_REPLY_INTEGER) {
        if (slot->what < SEG_KNOWN_SHARDS) {
            e->shard_size[slot->what] = reply->integer;
            e->population += reply->integer;
        } else if (slot->what == SEG_KNOWN_SHARDS) {
            e->exists = reply->integer > 0;
        } else {
            e->members = reply->integer;
        }
    }
    free(slot);
    if (--e->q.pending == 0)
        seg__est_counted(e);
}

static void seg__est_count(seg_est *e, int what, const char *key, const char *fmt,
                           const char *a1, const char *a2)
{
    seg_est_slot *slot = malloc(sizeof(*slot));
    if (!slot || !key) {
        free(slot);
        e->q.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(e->q.msg, sizeof(e->q.msg), "out of memory");
        return;
    }
    *slot = (seg_est_slot){ e, what };
    e->q.pending++;
    cdp_redis_commandf(e->q.s->redis, key, seg__est_count_reply, slot, fmt, a1, a2);
}

void seg_estimate_size(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__EstimateSizeRequest *req = (const Cdp__V1__EstimateSizeRequest *)msg;
    seg_svc *s = ud;
    int by_id = req->segment_id[0] != '\0', by_rule = req->rule[0] != '\0';
    if (by_id == by_rule) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment_id, rule: exactly one is required");
        return;
    }
    if (by_id && !seg_id_valid(req->segment_id)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "segment_id: malformed");
        return;
    }
    if (req->sample_size < 0 || req->sample_size > SEG_SAMPLE_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "sample_size: must be 0 to %d",
                     SEG_SAMPLE_MAX);
        return;
    }
    if (by_rule && strlen(req->rule) > SEG_RULE_MAX_TEXT) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "rule: at most %d bytes",
                     SEG_RULE_MAX_TEXT);
        return;
    }
    seg_est *e = calloc(1, sizeof(*e));
    if (!e) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    e->q.s = s;
    e->q.call = call;
    e->sample = req->sample_size ? req->sample_size : SEG_SAMPLE_DEFAULT;
    if (by_rule) {
        seg_rule_error err;
        memset(&err, 0, sizeof(err));
        if (!(e->rule = seg_rule_parse(req->rule, &err))) {
            cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "rule: line %d, column %d: %s",
                         err.line, err.column, err.message);
            seg__est_free(e);
            return;
        }
    }
    e->q.pending = 1;
    for (unsigned k = 0; k < SEG_KNOWN_SHARDS; k++) {
        char *key = seg_known_key(k);
        seg__est_count(e, (int)k, key, "SCARD %s", key, NULL);
        free(key);
    }
    if (by_id) {
        char *members = seg_skey(req->segment_id, SEG_SKEY_MEMBERS);
        seg__est_count(e, SEG_KNOWN_SHARDS, SEG_KEY_DEFS, "HEXISTS %s %s", SEG_KEY_DEFS,
                       req->segment_id);
        seg__est_count(e, SEG_KNOWN_SHARDS + 1, members, "ZCARD %s", members, NULL);
        free(members);
    }
    if (--e->q.pending == 0)
        seg__est_counted(e);
}
