/* idn_service: cdp.v1.Identity over idn_store (see idn_service.h).
 *
 * Sections: configuration, outcomes and responses, Resolve, ResolveBatch,
 * Lookup, GetIdentities, binding. Handlers validate first, fail fast when
 * the deadline has already passed or Redis is down, and map store statuses
 * to gRPC codes: NOT_FOUND, UNAVAILABLE ("redis unavailable: ..."), ABORTED
 * (the graph kept changing), INTERNAL. */
#include "idn_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp/v1/identity.pb-c.h"
#include "cdp_config.h"
#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_service.h"
#include "idn_batch.h"
#include "idn_fast.h"
#include "idn_request.h"

#define IDN_ENV_EVM_TTL "CDP_IDENTITY_MERGE_RECORD_TTL_S"
#define IDN_ENV_MAX_ROUNDS "CDP_IDENTITY_MAX_ROUNDS"
#define IDN_EVM_TTL_MAX_S (365 * 24 * 3600)
#define IDN_MAX_ROUNDS_MAX 100
#define IDN_MS_PER_S 1000
#define IDN_NS_PER_MS 1000000
/* "requests[i]: " and a store or field error. */
#define IDN_BATCH_ERR_LEN 512
/* Room for type="<well-known name or custom>",reason="<reason>". */
#define IDN_LABELS_LEN 96

/* ----------------------------------------------------------- configuration */

int idn_config_from_env(idn_config *c) {
    memset(c, 0, sizeof *c);
    int rc = cdp_ident_config_from_env(&c->ident);
    if (rc != 0) {
        const char *var = rc == -1 ? CDP_IDENT_ENV_REGION : CDP_IDENT_ENV_BLOCKED;
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s}", "variable", var, "value",
                cdp_env_str(var, ""), "expected",
                rc == -1 ? "an ISO 3166 alpha-2 region in the built-in table"
                         : "at most 32 comma-separated values of at most 64 bytes");
        return -1;
    }
    const char *why = NULL;
    const char *prio = cdp_env_str(IDN_ENV_PRIORITY, NULL);
    const char *limits = cdp_env_str(IDN_ENV_LIMITS, NULL);
    if (idn_rules_init(&c->rules, prio, limits, &why) != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s}", "variable",
                strncmp(why, "priority", 8) == 0 ? IDN_ENV_PRIORITY : IDN_ENV_LIMITS, "value",
                strncmp(why, "priority", 8) == 0 ? (prio ? prio : "") : (limits ? limits : ""),
                "error", why);
        return -1;
    }
    int64_t ttl, rounds;
    if (cdp_env_int(IDN_ENV_EVM_TTL, IDN_DEFAULT_EVM_TTL_S, 1, IDN_EVM_TTL_MAX_S, &ttl) != 0 ||
        cdp_env_int(IDN_ENV_MAX_ROUNDS, IDN_DEFAULT_MAX_ROUNDS, 1, IDN_MAX_ROUNDS_MAX, &rounds) != 0)
        return -1;
    c->store_opts.evm_ttl_s = (int)ttl;
    c->store_opts.max_rounds = (int)rounds;
    return 0;
}

static grpc_status_code status_code(idn_status st) {
    switch (st) {
    case IDN_OK: return GRPC_STATUS_OK;
    case IDN_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
    case IDN_EUNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    case IDN_EABORTED: return GRPC_STATUS_ABORTED;
    case IDN_EINTERNAL: break;
    }
    return GRPC_STATUS_INTERNAL;
}

/* Fails the call at once if its deadline passed or Redis is down. Returns
 * 1 if it did. */
static int fail_fast(idn_service *svc, cdp_rpc_call *call) {
    if (cdp_rpc_call_remaining_ms(call) <= 0) {
        cdp_rpc_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded before processing");
        return 1;
    }
    if (!cdp_redis_is_up(svc->redis)) {
        cdp_rpc_fail(call, GRPC_STATUS_UNAVAILABLE, "redis unavailable: not connected");
        return 1;
    }
    return 0;
}

/* The metrics label of a type: well-known names, or "custom" (custom type
 * names come from clients and must not grow the label set). */
static const char *type_label(const char *type) {
    const char *name = cdp_ident_kind_name(cdp_ident_kind_of(type));
    return name ? name : "custom";
}

static void count_drop(const char *type, const char *reason) {
    char labels[IDN_LABELS_LEN];
    snprintf(labels, sizeof labels, "type=\"%s\",reason=\"%s\"", type_label(type), reason);
    cdp_metrics_inc("cdp_identity_dropped_total", labels, 1);
}

/* ------------------------------------------------ outcomes and responses */

/* What a resolution left for one request, kept until the reply is built. */
typedef struct {
    int resolved;
    char master_id[IDN_MASTER_ID_BUFSZ];
    int created;
    unsigned char keep[IDN_MAX_IDENTIFIERS];
    char **reason;   /* n_reason entries, only when something was dropped */
    size_t n_reason;
    size_t n_merges;
    idn_merge *merges;
} idn_outcome;

static void outcome_clear(idn_outcome *o) {
    for (size_t i = 0; i < o->n_reason; i++)
        free(o->reason[i]);
    free(o->reason);
    for (size_t i = 0; i < o->n_merges; i++)
        idn_merge_clear(&o->merges[i]);
    free(o->merges);
    memset(o, 0, sizeof *o);
}

/* Copies a successful result; logs and counts the rules' drops (the type
 * only: values are personal data). Returns 0 or -1 on ENOMEM. */
static int outcome_fill(idn_outcome *o, const idn_request *req, const idn_resolve_result *res) {
    o->resolved = 1;
    snprintf(o->master_id, sizeof o->master_id, "%s", res->master_id);
    o->created = res->created;
    for (size_t k = 0; k < req->n; k++) {
        o->keep[k] = res->plan->keep[k];
        if (o->keep[k])
            continue;
        if (o->reason == NULL) {
            if ((o->reason = calloc(req->n, sizeof *o->reason)) == NULL)
                return -1;
            o->n_reason = req->n;
        }
        cdp_log(CDP_LOG_WARN, "identifier dropped by identity rules", "{s:s,s:s}", "type",
                req->ids[k].type, "reason", res->plan->reason[k]);
        count_drop(req->ids[k].type, "limit");
        if ((o->reason[k] = strdup(res->plan->reason[k])) == NULL)
            return -1;
    }
    if (res->n_merges == 0)
        return 0;
    o->merges = calloc(res->n_merges, sizeof *o->merges);
    if (o->merges == NULL)
        return -1;
    for (size_t i = 0; i < res->n_merges; i++) {
        o->merges[i] = res->merges[i];
        o->merges[i].message_id = strdup(res->merges[i].message_id);
        if (o->merges[i].message_id == NULL)
            return -1;
        o->n_merges++;
    }
    return 0;
}

/* All allocations of one response, freed together after packing. */
typedef struct {
    void **v;
    size_t n, cap;
    int oom;
} arena;

static void *arena_alloc(arena *a, size_t size) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        void **v = realloc(a->v, cap * sizeof *v);
        if (v == NULL) {
            a->oom = 1;
            return NULL;
        }
        a->v = v;
        a->cap = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p == NULL) {
        a->oom = 1;
        return NULL;
    }
    a->v[a->n++] = p;
    return p;
}

static void arena_free(arena *a) {
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

static Cdp__V1__Identifier *mk_ident(arena *a, const char *type, const char *value) {
    Cdp__V1__Identifier *id = arena_alloc(a, sizeof *id);
    if (id != NULL) {
        cdp__v1__identifier__init(id);
        id->type = (char *)type;
        id->value = (char *)value;
    }
    return id;
}

static Cdp__V1__Merge **mk_merges(arena *a, const idn_merge *m, size_t n) {
    Cdp__V1__Merge **out = arena_alloc(a, n * sizeof *out);
    for (size_t i = 0; out != NULL && i < n; i++) {
        Cdp__V1__Merge *g = arena_alloc(a, sizeof *g);
        Google__Protobuf__Timestamp *ts = arena_alloc(a, sizeof *ts);
        if (g == NULL || ts == NULL)
            return NULL;
        cdp__v1__merge__init(g);
        google__protobuf__timestamp__init(ts);
        ts->seconds = m[i].merged_at_ms / IDN_MS_PER_S;
        ts->nanos = (int32_t)(m[i].merged_at_ms % IDN_MS_PER_S) * IDN_NS_PER_MS;
        g->survivor_id = (char *)m[i].survivor;
        g->loser_id = (char *)m[i].loser;
        g->merged_at = ts;
        g->message_id = m[i].message_id;
        out[i] = g;
    }
    return out;
}

static void add_dropped(arena *a, Cdp__V1__ResolveResponse *r, Cdp__V1__Identifier *id,
                        const char *reason) {
    Cdp__V1__DroppedIdentifier *d = arena_alloc(a, sizeof *d);
    if (d == NULL || id == NULL)
        return;
    cdp__v1__dropped_identifier__init(d);
    d->identifier = id;
    d->reason = (char *)reason;
    r->dropped[r->n_dropped++] = d;
}

/* Builds r (strings borrowed from req, o and rq) into arena a. o may be
 * NULL for a request that was not resolved. */
static void build_response(arena *a, Cdp__V1__ResolveResponse *r,
                           const Cdp__V1__ResolveRequest *rq, const idn_request *req,
                           const idn_outcome *o) {
    cdp__v1__resolve_response__init(r);
    size_t cap = rq->n_identifiers;
    r->identifiers = arena_alloc(a, cap * sizeof *r->identifiers);
    r->dropped = arena_alloc(a, cap * sizeof *r->dropped);
    if (r->identifiers == NULL || r->dropped == NULL)
        return;
    for (size_t i = 0; i < req->n_dropped; i++) {
        const Cdp__V1__Identifier *src = rq->identifiers[req->dropped[i].src];
        add_dropped(a, r, mk_ident(a, src ? src->type : "", src ? src->value : ""),
                    req->dropped[i].reason);
    }
    if (o == NULL || !o->resolved)
        return;
    r->master_id = (char *)o->master_id;
    r->created = o->created;
    for (size_t k = 0; k < req->n; k++) {
        Cdp__V1__Identifier *id = mk_ident(a, req->ids[k].type, req->ids[k].value);
        if (o->keep[k] && id != NULL)
            r->identifiers[r->n_identifiers++] = id;
        else if (!o->keep[k])
            add_dropped(a, r, id, o->reason[k]);
    }
    if (o->n_merges > 0 && (r->merges = mk_merges(a, o->merges, o->n_merges)) != NULL)
        r->n_merges = o->n_merges;
}

/* Counts the request-level drops (empty, blocked, invalid). */
static void count_request_drops(const Cdp__V1__ResolveRequest *rq, const idn_request *req) {
    for (size_t i = 0; i < req->n_dropped; i++) {
        const Cdp__V1__Identifier *src = rq->identifiers[req->dropped[i].src];
        const char *reason = req->dropped[i].invalid ? "invalid"
                             : strcmp(req->dropped[i].reason, "empty") == 0 ? "empty"
                                                                             : "blocked";
        count_drop(src && src->type ? src->type : "", reason);
    }
}

/* --------------------------------------------------------------- Resolve */

typedef struct {
    idn_service *svc;
    cdp_rpc_call *call;
    const Cdp__V1__ResolveRequest *rq; /* owned by the call */
    idn_request req;
    idn_outcome out;
} resolve_ctx;

static void resolve_ctx_free(resolve_ctx *x) {
    idn_request_clear(&x->req);
    outcome_clear(&x->out);
    free(x);
}

static void resolve_done(const idn_resolve_result *res, void *ud) {
    resolve_ctx *x = ud;
    if (res->status != IDN_OK) {
        cdp_rpc_fail(x->call, status_code(res->status), "%s", res->error);
    } else if (outcome_fill(&x->out, &x->req, res) != 0) {
        cdp_rpc_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        arena a = {0};
        Cdp__V1__ResolveResponse r;
        build_response(&a, &r, x->rq, &x->req, &x->out);
        if (a.oom)
            cdp_rpc_fail(x->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        else
            cdp_rpc_reply(x->call, &r.base);
        arena_free(&a);
    }
    resolve_ctx_free(x);
}

static void on_resolve(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud) {
    idn_service *svc = ud;
    const Cdp__V1__ResolveRequest *rq = (const Cdp__V1__ResolveRequest *)msg;
    resolve_ctx *x = calloc(1, sizeof *x);
    if (x == NULL) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    *x = (resolve_ctx){.svc = svc, .call = call, .rq = rq};
    int st = idn_request_prepare(&svc->cfg.ident, rq, &x->req);
    if (st < 0) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else if (st != IDN_REQ_OK) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", x->req.error);
    } else if (!fail_fast(svc, call)) {
        count_request_drops(rq, &x->req);
        idn_store_resolve(svc->store, x->req.ids, x->req.n, x->req.message_id, x->req.deliver,
                          cdp_now_ms(),
                          resolve_done, x);
        return;
    }
    resolve_ctx_free(x);
}

/* ----------------------------------------------------------- ResolveBatch */

/* Requests of one batch: groups of requests linked by shared identifiers
 * are resolved one request after the other in batch order; groups run
 * concurrently, so their commands share the pipeline.
 *
 * First the whole batch is probed at once (idn_store_probe: one GET per
 * distinct identifier, one HMGET per distinct master, both pipelined): the
 * leading requests of each group that are in the common case are answered
 * from it. The group's runner resolves the rest in order; a request with
 * exactly the identifiers of a recent request of its group that kept them
 * all, with nothing written by the group since, shares that answer after a
 * one-command check (idn_store_check) that its master is still a root and
 * holds no merge record of its own message. */
typedef struct batch_ctx batch_ctx;

/* Requests a runner remembers for sharing. */
#define IDN_SHARE_RECENT 8

typedef struct {
    batch_ctx *b;
    size_t cur;    /* request being resolved */
    size_t shared; /* the request cur shares the answer of */
    size_t recent[IDN_SHARE_RECENT]; /* requests that kept all, since the */
    size_t n_recent, recent_at;      /* group last wrote (a ring) */
} batch_runner;

struct batch_ctx {
    idn_service *svc;
    cdp_rpc_call *call;
    const Cdp__V1__ResolveBatchRequest *rq;
    size_t n;
    idn_request *reqs;
    int *usable;
    idn_outcome *outs;
    size_t *next;          /* next request of the same group, or n */
    idn_probe_req *probe;  /* per request, for idn_store_probe */
    batch_runner *runners; /* one per group */
    size_t n_groups, running;
    idn_status status;
    char err[IDN_BATCH_ERR_LEN];
};

static void batch_free(batch_ctx *b) {
    for (size_t i = 0; b->reqs && i < b->n; i++)
        idn_request_clear(&b->reqs[i]);
    for (size_t i = 0; b->outs && i < b->n; i++)
        outcome_clear(&b->outs[i]);
    free(b->reqs);
    free(b->usable);
    free(b->outs);
    free(b->next);
    free(b->probe);
    free(b->runners);
    free(b);
}

static void batch_reply(batch_ctx *b) {
    if (b->status != IDN_OK) {
        cdp_rpc_fail(b->call, status_code(b->status), "%s", b->err);
        return;
    }
    if (cdp_rpc_call_cancelled(b->call)) {
        cdp_rpc_fail(b->call, GRPC_STATUS_CANCELLED, "cancelled");
        return;
    }
    arena a = {0};
    Cdp__V1__ResolveBatchResponse r = CDP__V1__RESOLVE_BATCH_RESPONSE__INIT;
    r.results = arena_alloc(&a, b->n * sizeof *r.results);
    for (size_t i = 0; r.results != NULL && i < b->n; i++) {
        Cdp__V1__ResolveResponse *one = arena_alloc(&a, sizeof *one);
        if (one == NULL)
            break;
        build_response(&a, one, b->rq->requests[i], &b->reqs[i], &b->outs[i]);
        r.results[r.n_results++] = one;
    }
    if (a.oom)
        cdp_rpc_fail(b->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else
        cdp_rpc_reply(b->call, &r.base);
    arena_free(&a);
}

/* Records the first failure of the batch. */
static void batch_fail(batch_ctx *b, size_t i, idn_status st, const char *error) {
    if (b->status != IDN_OK)
        return;
    b->status = st;
    snprintf(b->err, sizeof b->err, "requests[%zu]: %s", i, error);
}

/* The answer of a request whose identifiers all stay, on `master`, with no
 * merge, as the common case and a shared answer have. */
static void outcome_keep_all(idn_outcome *o, size_t n, const char *master) {
    char id[IDN_MASTER_ID_BUFSZ]; /* master may be another outcome's */
    snprintf(id, sizeof id, "%s", master);
    o->resolved = 1;
    memcpy(o->master_id, id, sizeof id);
    o->created = 0;
    memset(o->keep, 1, n);
}

static int outcome_kept_all(const idn_outcome *o, size_t n) {
    if (!o->resolved)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (!o->keep[k])
            return 0;
    return 1;
}

static void runner_remember(batch_runner *rn, size_t i) {
    rn->recent[rn->recent_at] = i;
    rn->recent_at = (rn->recent_at + 1) % IDN_SHARE_RECENT;
    if (rn->n_recent < IDN_SHARE_RECENT)
        rn->n_recent++;
}

/* A remembered request with exactly request i's identifiers, or i itself
 * when there is none. */
static size_t runner_find_shared(const batch_runner *rn, size_t i) {
    const idn_request *q = &rn->b->reqs[i];
    for (size_t k = 0; k < rn->n_recent; k++) {
        size_t c = rn->recent[k];
        if (idn_fast_same_idents(rn->b->reqs[c].ids, rn->b->reqs[c].n, q->ids, q->n))
            return c;
    }
    return i;
}

static void batch_resolved(const idn_resolve_result *res, void *ud);
static void batch_checked(idn_status st, const char *error, int ok, void *ud);

static void runner_end(batch_runner *rn) {
    batch_ctx *b = rn->b;
    if (--b->running == 0) {
        batch_reply(b);
        batch_free(b);
    }
}

/* Resolves the runner's requests from index `from` on, in group order:
 * shared answers without a message id at once, the others through the store
 * (whose callbacks continue here). probe, given only for the group's first
 * request that the probe did not answer, saves its first reads. When the group is exhausted (or the
 * batch failed or was cancelled) the runner ends; the last one replies. */
static void runner_start(batch_runner *rn, size_t from, const idn_probe *probe) {
    batch_ctx *b = rn->b;
    for (size_t i = from; i < b->n; i = b->next[i]) {
        if (!b->usable[i])
            continue;
        if (b->status != IDN_OK || cdp_rpc_call_cancelled(b->call))
            break;
        rn->cur = i;
        idn_request *q = &b->reqs[i];
        rn->shared = runner_find_shared(rn, i);
        if (rn->shared == i && probe != NULL) { /* first of the group: probe's reads */
            idn_store_resolve_probed(b->svc->store, probe, i, cdp_now_ms(), batch_resolved, rn);
            return;
        }
        if (rn->shared == i) {
            idn_store_resolve(b->svc->store, q->ids, q->n, q->message_id, q->deliver, cdp_now_ms(),
                              batch_resolved, rn);
            return;
        }
        if (q->message_id && q->message_id[0]) {
            idn_store_check(b->svc->store, b->outs[rn->shared].master_id, q->message_id,
                            q->deliver, batch_checked, rn);
            return;
        }
        outcome_keep_all(&b->outs[i], q->n, b->outs[rn->shared].master_id);
        cdp_metrics_inc("cdp_identity_resolutions_total", "path=\"shared\"", 1);
    }
    runner_end(rn);
}

static void batch_checked(idn_status st, const char *error, int ok, void *ud) {
    batch_runner *rn = ud;
    batch_ctx *b = rn->b;
    size_t i = rn->cur;
    idn_request *q = &b->reqs[i];
    if (st != IDN_OK) {
        batch_fail(b, i, st, error);
    } else if (!ok) { /* merged meanwhile, or a merge record to report */
        idn_store_resolve(b->svc->store, q->ids, q->n, q->message_id, q->deliver, cdp_now_ms(),
                          batch_resolved, rn);
        return;
    } else {
        outcome_keep_all(&b->outs[i], q->n, b->outs[rn->shared].master_id);
        cdp_metrics_inc("cdp_identity_resolutions_total", "path=\"shared\"", 1);
    }
    runner_start(rn, b->next[i], NULL);
}

static void batch_resolved(const idn_resolve_result *res, void *ud) {
    batch_runner *rn = ud;
    batch_ctx *b = rn->b;
    size_t i = rn->cur;
    if (res->status != IDN_OK) {
        batch_fail(b, i, res->status, res->error);
    } else if (outcome_fill(&b->outs[i], &b->reqs[i], res) != 0) {
        batch_fail(b, i, IDN_EINTERNAL, "out of memory");
    } else {
        if (res->wrote)
            rn->n_recent = rn->recent_at = 0;
        if (outcome_kept_all(&b->outs[i], b->reqs[i].n))
            runner_remember(rn, i);
    }
    runner_start(rn, b->next[i], NULL);
}

/* The probe's answer: each group's leading common-case requests are
 * answered from it, then every runner starts at its first other request. */
static void batch_probed(const char *const *fast, const idn_probe *probe, void *ud) {
    batch_ctx *b = ud;
    for (size_t g = 0; g < b->n_groups; g++) {
        batch_runner *rn = &b->runners[g];
        size_t i = rn->cur;
        for (; i < b->n; i = b->next[i]) {
            if (!b->usable[i])
                continue;
            if (fast == NULL || fast[i] == NULL)
                break;
            outcome_keep_all(&b->outs[i], b->reqs[i].n, fast[i]);
            runner_remember(rn, i);
        }
        rn->cur = i;
    }
    /* +1 while starting, so that a runner finishing at once cannot reply */
    b->running = b->n_groups + 1;
    for (size_t g = 0; g < b->n_groups; g++)
        runner_start(&b->runners[g], b->runners[g].cur, probe);
    if (--b->running == 0) {
        batch_reply(b);
        batch_free(b);
    }
}

/* Prepares every request (unusable ones are answered without resolving)
 * and links the requests of each group. Returns 0 or -1 on ENOMEM. */
static int batch_prepare(batch_ctx *b) {
    const char ***members = calloc(b->n, sizeof *members);
    size_t *n_members = calloc(b->n, sizeof *n_members);
    size_t *group = calloc(b->n, sizeof *group);
    int rc = members && n_members && group ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        const Cdp__V1__ResolveRequest *rq = b->rq->requests[i];
        int st = idn_request_prepare(&b->svc->cfg.ident, rq, &b->reqs[i]);
        if (st < 0 || (members[i] = calloc(b->reqs[i].n + 1, sizeof **members)) == NULL) {
            rc = -1;
            break;
        }
        count_request_drops(rq, &b->reqs[i]);
        b->usable[i] = st == IDN_REQ_OK || st == IDN_REQ_INVALID;
        for (size_t k = 0; b->usable[i] && k < b->reqs[i].n; k++) {
            char *m = idn_member(b->reqs[i].ids[k].type, b->reqs[i].ids[k].value);
            if (m == NULL) {
                rc = -1;
                break;
            }
            members[i][n_members[i]++] = m;
        }
    }
    long n_groups = rc == 0 ? idn_batch_group(b->n, (const char *const *const *)members,
                                              n_members, group)
                            : -1;
    if (n_groups >= 0) {
        b->n_groups = (size_t)n_groups;
        b->runners = calloc(b->n_groups ? b->n_groups : 1, sizeof *b->runners);
        size_t *last = calloc(b->n_groups ? b->n_groups : 1, sizeof *last);
        if (b->runners == NULL || last == NULL)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < b->n; i++) {
            size_t g = group[i];
            b->next[i] = b->n;
            if (b->runners[g].b == NULL)
                b->runners[g] = (batch_runner){.b = b, .cur = i};
            else
                b->next[last[g]] = i;
            last[g] = i;
        }
        free(last);
    } else {
        rc = -1;
    }
    for (size_t i = 0; members && i < b->n; i++) {
        for (size_t k = 0; members[i] && k < n_members[i]; k++)
            free((char *)members[i][k]);
        free(members[i]);
    }
    free(members);
    free(n_members);
    free(group);
    return rc;
}

static void on_resolve_batch(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud) {
    idn_service *svc = ud;
    const Cdp__V1__ResolveBatchRequest *rq = (const Cdp__V1__ResolveBatchRequest *)msg;
    if (rq->n_requests == 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "requests: at least one is required");
        return;
    }
    if (rq->n_requests > IDN_MAX_BATCH) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "requests: at most %d are allowed",
                     IDN_MAX_BATCH);
        return;
    }
    if (fail_fast(svc, call))
        return;
    batch_ctx *b = calloc(1, sizeof *b);
    if (b != NULL) {
        *b = (batch_ctx){.svc = svc, .call = call, .rq = rq, .n = rq->n_requests};
        b->reqs = calloc(b->n, sizeof *b->reqs);
        b->usable = calloc(b->n, sizeof *b->usable);
        b->outs = calloc(b->n, sizeof *b->outs);
        b->next = calloc(b->n, sizeof *b->next);
        b->probe = calloc(b->n, sizeof *b->probe);
    }
    if (b == NULL || !b->reqs || !b->usable || !b->outs || !b->next || !b->probe ||
        batch_prepare(b) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        if (b != NULL)
            batch_free(b);
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        b->probe[i] = (idn_probe_req){b->reqs[i].ids, b->usable[i] ? b->reqs[i].n : 0,
                                      b->reqs[i].message_id, b->reqs[i].deliver};
    idn_store_probe(svc->store, b->probe, b->n, batch_probed, b);
}

/* ----------------------------------------------------------------- Lookup */

static void lookup_done(idn_status st, const char *error, const char *master_id, void *ud) {
    cdp_rpc_call *call = ud;
    if (st != IDN_OK) {
        cdp_rpc_fail(call, status_code(st), "%s", error);
        return;
    }
    Cdp__V1__LookupResponse r = CDP__V1__LOOKUP_RESPONSE__INIT;
    r.master_id = (char *)master_id;
    cdp_rpc_reply(call, &r.base);
}

static void on_lookup(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud) {
    idn_service *svc = ud;
    const Cdp__V1__LookupRequest *rq = (const Cdp__V1__LookupRequest *)msg;
    if (rq->identifier == NULL) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "identifier: required");
        return;
    }
    char norm[CDP_IDENT_VALUE_BUFSZ];
    const char *why = NULL;
    int rc = cdp_ident_normalize(rq->identifier->type, rq->identifier->value, &svc->cfg.ident,
                                 norm, sizeof norm, &why);
    if (rc != CDP_IDENT_OK) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "identifier.%s: %s",
                     rc == CDP_IDENT_EBADTYPE ? "type" : "value", why);
        return;
    }
    if (!fail_fast(svc, call))
        idn_store_lookup(svc->store, rq->identifier->type, norm, lookup_done, call);
}

/* ---------------------------------------------------------- GetIdentities */

static void identities_done(const idn_identities_result *res, void *ud) {
    cdp_rpc_call *call = ud;
    if (res->status != IDN_OK) {
        cdp_rpc_fail(call, status_code(res->status), "%s", res->error);
        return;
    }
    arena a = {0};
    Cdp__V1__GetIdentitiesResponse r = CDP__V1__GET_IDENTITIES_RESPONSE__INIT;
    r.master_id = (char *)res->master_id;
    r.identifiers = arena_alloc(&a, res->n_idents * sizeof *r.identifiers);
    for (size_t i = 0; r.identifiers != NULL && i < res->n_idents; i++) {
        Cdp__V1__Identifier *id = mk_ident(&a, res->idents[i].type, res->idents[i].value);
        if (id != NULL)
            r.identifiers[r.n_identifiers++] = id;
    }
    if (res->n_merges > 0 && (r.merges = mk_merges(&a, res->merges, res->n_merges)) != NULL)
        r.n_merges = res->n_merges;
    if (a.oom)
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else
        cdp_rpc_reply(call, &r.base);
    arena_free(&a);
}

static void on_get_identities(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud) {
    idn_service *svc = ud;
    const Cdp__V1__GetIdentitiesRequest *rq = (const Cdp__V1__GetIdentitiesRequest *)msg;
    if (rq->master_id == NULL || rq->master_id[0] == '\0') {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "master_id: required");
        return;
    }
    if (!idn_master_id_valid(rq->master_id)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "master_id: not a valid master id");
        return;
    }
    if (!fail_fast(svc, call))
        idn_store_get_identities(svc->store, rq->master_id, identities_done, call);
}

/* ---------------------------------------------------------------- binding */

int idn_service_init(idn_service *svc, const idn_config *cfg, cdp_redis *redis,
                     cdp_rpc_server *server) {
    memset(svc, 0, sizeof *svc);
    svc->cfg = *cfg;
    svc->redis = redis;
    svc->store = idn_store_new(redis, &svc->cfg.rules, &svc->cfg.store_opts);
    if (svc->store == NULL) {
        cdp_log(CDP_LOG_ERROR, "cannot create the identity store", NULL);
        return -1;
    }
    cdp_metrics_help("cdp_identity_dropped_total",
                     "Identifiers dropped by resolution, by type and reason");
    cdp_metrics_help("cdp_identity_merges_total", "Master ids merged into an older one");
    cdp_metrics_help("cdp_identity_restarts_total",
                     "Resolution rounds restarted because the graph changed concurrently");
    cdp_metrics_help("cdp_identity_resolutions_total",
                     "Resolutions by path: fast (the common case), shared (an identical "
                     "request of the same batch), full");
    static const cdp_rpc_binding bindings[] = {
        {"Resolve", on_resolve, 0},
        {"ResolveBatch", on_resolve_batch, 0},
        {"Lookup", on_lookup, 0},
        {"GetIdentities", on_get_identities, 0},
    };
    return cdp_rpc_server_add_service(server, &cdp__v1__identity__descriptor, bindings,
                                      sizeof bindings / sizeof bindings[0], svc);
}

void idn_service_close(idn_service *svc) {
    idn_store_free(svc->store);
    svc->store = NULL;
}
