/* cns_read: GetConsent, GetAudit and GetPolicy — the read-only handlers.
 *
 * GetConsent reads the consent hash and the profile's merge mark in one
 * round trip (following a merged-away profile to its survivor). GetAudit
 * pages the profile's audit stream with XRANGE; a page token is the id of
 * the last record returned, read exclusively. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cns_entry.h"
#include "cns_service.h"

#define CNS_STREAM_ID_MAX 41   /* "<20 digits>-<20 digits>" */

/* ------------------------------------------------------------------ ConsentState */

static int cns__entry_cmp(const void *a, const void *b)
{
    const Cdp__V1__ConsentEntry *x = *(Cdp__V1__ConsentEntry *const *)a;
    const Cdp__V1__ConsentEntry *y = *(Cdp__V1__ConsentEntry *const *)b;
    int c = strcmp(x->purpose, y->purpose);
    return c ? c : strcmp(x->channel, y->channel);
}

void cns_state_reply(cdp_rpc_call *call, const cns_svc *cs, const char *master,
                     const redisReply *h)
{
    size_t pairs = h->elements / 2;
    Cdp__V1__ConsentEntry *es = calloc(pairs ? pairs : 1, sizeof(*es));
    Cdp__V1__ConsentEntry **ptrs = calloc(pairs ? pairs : 1, sizeof(*ptrs));
    Google__Protobuf__Timestamp *ts = calloc(pairs ? pairs : 1, sizeof(*ts));
    json_t *arena = json_array();
    Cdp__V1__ConsentState st = CDP__V1__CONSENT_STATE__INIT;
    st.master_id = (char *)master;
    st.jurisdiction = (char *)cns_policy_default_jurisdiction(&cs->policy);
    char jur[CNS_NAME_BUFSZ] = "";
    int ok = es && ptrs && ts && arena;
    for (size_t i = 0; ok && i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (f->len == 1 && f->str[0] == 'j' && v->len < sizeof jur) {
            snprintf(jur, sizeof jur, "%.*s", (int)v->len, v->str);
            st.jurisdiction = jur;
        } else if (f->len > 2 && memcmp(f->str, "e:", 2) == 0 &&
                   cns_entry_json_to_pb(v->str, v->len, arena, &es[st.n_entries],
                                        &ts[st.n_entries]) == 0) {
            ptrs[st.n_entries] = &es[st.n_entries];
            st.n_entries++;
        }
    }
    if (ok) {
        qsort(ptrs, st.n_entries, sizeof(*ptrs), cns__entry_cmp);
        st.entries = ptrs;
        cdp_rpc_reply(call, &st.base);
    } else {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    }
    free(es);
    free(ptrs);
    free(ts);
    json_decref(arena);
}

/* ------------------------------------------------------------------ GetConsent */

/* The two reads go to one node on one connection (same hash tag), so their
 * replies come back in the order sent: the merge mark first, then the
 * consent hash, whose callback answers (the client frees a reply when its
 * callback returns, so the answer is built there). */
typedef struct {
    cns_svc *cs;
    cdp_rpc_call *call;
    char *master;
    int hops;
    int mark_done;           /* the merge mark's reply is in */
    grpc_status_code code;
    char msg[CNS_MSG_MAX];
    char *merged_into;
} cns_get;

static void cns__get_free(void *ud)
{
    cns_get *g = ud;
    free(g->master);
    free(g->merged_into);
    free(g);
}

static void cns__get_read(cns_get *g);

static void cns__get_fail(cns_get *g, grpc_status_code code, const char *msg)
{
    if (g->code == GRPC_STATUS_OK) {
        g->code = code;
        snprintf(g->msg, sizeof g->msg, "%s", msg);
    }
}

static void cns__get_mark_reply(redisReply *reply, const char *err, void *ud)
{
    cns_get *g = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    g->mark_done = 1;
    if (code != GRPC_STATUS_OK)
        cns__get_fail(g, code, msg);
    else if (reply->type == REDIS_REPLY_STRING && !(g->merged_into = strndup(reply->str, reply->len)))
        cns__get_fail(g, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
}

static void cns__get_state_reply(redisReply *reply, const char *err, void *ud)
{
    cns_get *g = ud;
    char msg[CNS_MSG_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code != GRPC_STATUS_OK)
        cns__get_fail(g, code, msg);
    else if (reply->type != REDIS_REPLY_ARRAY || !g->mark_done)
        cns__get_fail(g, GRPC_STATUS_INTERNAL, "malformed consent reply");
    if (g->code != GRPC_STATUS_OK) {
        cdp_rpc_fail(g->call, g->code, "%s", g->msg);
    } else if (g->merged_into) {
        if (++g->hops <= CNS_MAX_REDIRECTS) {
            free(g->master);
            g->master = g->merged_into;
            g->merged_into = NULL;
            cns__get_read(g);
            return;
        }
        cdp_rpc_fail(g->call, GRPC_STATUS_INTERNAL, "merged profile chain too long at %s",
                     g->merged_into);
    } else {
        cns_state_reply(g->call, g->cs, g->master, reply);
    }
    cns__get_free(g);
}

static void cns__get_read(cns_get *g)
{
    cns_keys k;
    if (cns_keys_init(&k, g->master) != 0) {
        cdp_rpc_fail(g->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        cns__get_free(g);
        return;
    }
    g->mark_done = 0;
    cdp_redis *r = g->cs->store.redis;
    const char *a1[] = { "HGET", k.v[CNS_KEY_PROFILE], CNS_MERGED_FIELD };
    size_t l1[] = { 4, k.len[CNS_KEY_PROFILE], strlen(CNS_MERGED_FIELD) };
    const char *a2[] = { "HGETALL", k.v[CNS_KEY_CONSENT] };
    size_t l2[] = { 7, k.len[CNS_KEY_CONSENT] };
    cdp_redis_command(r, k.v[CNS_KEY_PROFILE], k.len[CNS_KEY_PROFILE], cns__get_mark_reply, g, 3,
                      a1, l1);
    cdp_redis_command(r, k.v[CNS_KEY_CONSENT], k.len[CNS_KEY_CONSENT], cns__get_state_reply, g, 2,
                      a2, l2);
    cns_keys_free(&k);
}

/* Validates the target, then calls fn(ud, master) or answers the call and
 * calls drop(ud) (cns_resolve). */
static void cns__target_resolve(cns_svc *cs, cdp_rpc_call *call, const char *master_id,
                                const Cdp__V1__Identifier *id, cns_resolved_fn fn,
                                void (*drop)(void *ud), void *ud)
{
    char key[CNS_MSG_MAX], msg[CNS_MSG_MAX];
    if (cns_check_target(cs, master_id, id, "", key, sizeof key, msg, sizeof msg) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
        drop(ud);
        return;
    }
    cns_resolve(cs, call, master_id, id, fn, drop, ud);
}

static void cns__get_start(void *ud, const char *master)
{
    cns_get *g = ud;
    if (!(g->master = strdup(master))) {
        cdp_rpc_fail(g->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        cns__get_free(g);
        return;
    }
    cns__get_read(g);
}

void cns_get_consent(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetConsentRequest *req = (const Cdp__V1__GetConsentRequest *)msg;
    cns_get *g = calloc(1, sizeof(*g));
    if (!g) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    g->cs = ud;
    g->call = call;
    cns__target_resolve(ud, call, req->master_id, req->identifier, cns__get_start, cns__get_free,
                        g);
}

/* ------------------------------------------------------------------ GetAudit */

typedef struct {
    cns_svc *cs;
    cdp_rpc_call *call;
    size_t page;
    char token[CNS_STREAM_ID_MAX + 2]; /* "(" + id, or "-" */
    char *master;
} cns_audit;

static void cns__audit_free(void *ud)
{
    cns_audit *a = ud;
    free(a->master);
    free(a);
}

/* 1 when s is a stream id "<digits>-<digits>". */
static int cns__stream_id_ok(const char *s)
{
    size_t n = strlen(s), i = 0, d1 = 0, d2 = 0;
    if (n == 0 || n > CNS_STREAM_ID_MAX)
        return 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, d1++;
    if (s[i++] != '-')
        return 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, d2++;
    return d1 > 0 && d2 > 0 && s[i] == '\0';
}

/* The value of field name in a flat [f, v, f, v ...] reply, or "". */
static const redisReply *cns__field(const redisReply *kv, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *f = kv->element[i];
        if (f->type == REDIS_REPLY_STRING && f->len == nl && memcmp(f->str, name, nl) == 0)
            return kv->element[i + 1]->type == REDIS_REPLY_STRING ? kv->element[i + 1] : NULL;
    }
    return NULL;
}

/* A field's text (NUL-terminated by hiredis) or "". */
static char *cns__text(const redisReply *kv, const char *name)
{
    const redisReply *v = cns__field(kv, name);
    return v ? v->str : "";
}

typedef struct {
    Cdp__V1__AuditRecord rec;
    Google__Protobuf__Timestamp at, before_ts, after_ts;
    Cdp__V1__ConsentEntry before, after;
} cns__audit_rec;

static void cns__audit_reply(redisReply *reply, const char *err, void *ud)
{
    cns_audit *a = ud;
    if (cdp_rpc_fail_redis(a->call, reply, err)) {
        cns__audit_free(a);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        cdp_rpc_fail(a->call, GRPC_STATUS_INTERNAL, "malformed audit reply");
        cns__audit_free(a);
        return;
    }
    size_t n = reply->elements < a->page ? reply->elements : a->page;
    cns__audit_rec *recs = calloc(n ? n : 1, sizeof(*recs));
    Cdp__V1__AuditRecord **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    json_t *arena = json_array();
    Cdp__V1__GetAuditResponse resp = CDP__V1__GET_AUDIT_RESPONSE__INIT;
    resp.master_id = a->master;
    resp.next_page_token = "";
    int ok = recs && ptrs && arena;
    for (size_t i = 0; ok && i < n; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const redisReply *kv = e->element[1];
        cns__audit_rec *r = &recs[resp.n_records];
        cdp__v1__audit_record__init(&r->rec);
        r->rec.id = e->element[0]->str;
        cns_ms_ts(atoll(cns__text(kv, "at")), &r->at);
        r->rec.at = &r->at;
        r->rec.actor = cns__text(kv, "actor");
        r->rec.action = cns__text(kv, "action");
        r->rec.purpose = cns__text(kv, "purpose");
        r->rec.channel = cns__text(kv, "channel");
        r->rec.reason = cns__text(kv, "reason");
        r->rec.context = cns__text(kv, "context");
        const redisReply *b = cns__field(kv, "before"), *af = cns__field(kv, "after");
        if (b && b->len && cns_entry_json_to_pb(b->str, b->len, arena, &r->before, &r->before_ts) == 0)
            r->rec.before = &r->before;
        if (af && af->len &&
            cns_entry_json_to_pb(af->str, af->len, arena, &r->after, &r->after_ts) == 0)
            r->rec.after = &r->after;
        ptrs[resp.n_records++] = &r->rec;
    }
    if (ok && reply->elements > a->page && resp.n_records > 0)
        resp.next_page_token = ptrs[resp.n_records - 1]->id;
    resp.records = ptrs;
    if (ok)
        cdp_rpc_reply(a->call, &resp.base);
    else
        cdp_rpc_fail(a->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    free(recs);
    free(ptrs);
    json_decref(arena);
    cns__audit_free(a);
}

static void cns__audit_start(void *ud, const char *master)
{
    cns_audit *a = ud;
    cns_keys k;
    if (!(a->master = strdup(master)) || cns_keys_init(&k, master) != 0) {
        cdp_rpc_fail(a->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        cns__audit_free(a);
        return;
    }
    char count[24];
    snprintf(count, sizeof count, "%zu", a->page + 1);
    const char *argv[] = { "XRANGE", k.v[CNS_KEY_AUDIT], a->token, "+", "COUNT", count };
    size_t lens[] = { 6, k.len[CNS_KEY_AUDIT], strlen(a->token), 1, 5, strlen(count) };
    cdp_redis_command(a->cs->store.redis, k.v[CNS_KEY_AUDIT], k.len[CNS_KEY_AUDIT],
                      cns__audit_reply, a, 6, argv, lens);
    cns_keys_free(&k);
}

void cns_get_audit(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetAuditRequest *req = (const Cdp__V1__GetAuditRequest *)msg;
    char err[CNS_MSG_MAX];
    size_t page;
    if (cns_page_size(req->page_size, &page, err, sizeof err) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        return;
    }
    if (req->page_token[0] && !cns__stream_id_ok(req->page_token)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "page_token: not a token returned by GetAudit");
        return;
    }
    cns_audit *a = calloc(1, sizeof(*a));
    if (!a) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    a->cs = ud;
    a->call = call;
    a->page = page;
    if (req->page_token[0])
        snprintf(a->token, sizeof a->token, "(%s", req->page_token);
    else
        snprintf(a->token, sizeof a->token, "-");
    cns__target_resolve(ud, call, req->master_id, req->identifier, cns__audit_start,
                        cns__audit_free, a);
}

/* ------------------------------------------------------------------ GetPolicy */

void cns_get_policy(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    (void)msg;
    const cns_policy *p = &((const cns_svc *)ud)->policy;
    Cdp__V1__Policy pol = CDP__V1__POLICY__INIT;
    char *purposes[CNS_MAX_PURPOSES], *channels[CNS_MAX_CHANNELS];
    Cdp__V1__JurisdictionPolicy jp[CNS_MAX_JURISDICTIONS], *jptrs[CNS_MAX_JURISDICTIONS];
    Cdp__V1__JurisdictionPolicy__UnsetAllowsEntry ua[CNS_MAX_JURISDICTIONS][CNS_MAX_PURPOSES];
    Cdp__V1__JurisdictionPolicy__UnsetAllowsEntry *uap[CNS_MAX_JURISDICTIONS][CNS_MAX_PURPOSES];
    for (size_t i = 0; i < p->n_purposes; i++)
        purposes[i] = (char *)p->purposes[i];
    for (size_t i = 0; i < p->n_channels; i++)
        channels[i] = (char *)p->channels[i];
    for (size_t j = 0; j < p->n_jurisdictions; j++) {
        const cns_jurisdiction *pj = &p->jurisdictions[j];
        cdp__v1__jurisdiction_policy__init(&jp[j]);
        jp[j].jurisdiction = (char *)pj->name;
        for (size_t i = 0; i < p->n_purposes; i++) {
            if (pj->unset[i] == CNS_DEFAULT_NONE)
                continue;
            Cdp__V1__JurisdictionPolicy__UnsetAllowsEntry *e = &ua[j][jp[j].n_unset_allows];
            cdp__v1__jurisdiction_policy__unset_allows_entry__init(e);
            e->key = (char *)p->purposes[i];
            e->value = pj->unset[i] == CNS_DEFAULT_ALLOW;
            uap[j][jp[j].n_unset_allows++] = e;
        }
        jp[j].unset_allows = uap[j];
        jptrs[j] = &jp[j];
    }
    pol.n_purposes = p->n_purposes;
    pol.purposes = purposes;
    pol.n_channels = p->n_channels;
    pol.channels = channels;
    pol.default_jurisdiction = (char *)cns_policy_default_jurisdiction(p);
    pol.n_jurisdictions = p->n_jurisdictions;
    pol.jurisdictions = jptrs;
    cdp_rpc_reply(call, &pol.base);
}
