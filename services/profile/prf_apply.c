/* prf_apply: the ApplyEvents handler.
 *
 * A batch runs in two phases, each a burst of independent scripts issued in
 * one loop turn (so they leave in one write per Redis node):
 *
 *   1. merges: every distinct loser -> survivor pair the batch carries is
 *      folded, each as three scripts in sequence: tombstone the loser and
 *      snapshot it (loser's slot), fold the snapshot into the survivor
 *      unless already folded (survivor's slot; a tombstoned survivor
 *      redirects to its own survivor), strip the loser (loser's slot);
 *   2. events: grouped by master id, one apply script per master. A
 *      tombstoned master answers which events it had seen (duplicates) and
 *      redirects the rest, which are re-issued to the survivor.
 *
 * Merges go first so that an event is applied after the fold it travels
 * with. Any failure fails the whole call (UNAVAILABLE when Redis is down):
 * the caller retries the batch, and every step above is idempotent. */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "prf_codec.h"
#include "prf_event.h"
#include "prf_service.h"

typedef struct prf_batch prf_batch;

typedef struct {
    prf_batch *b;
    const char *loser;       /* borrowed from the request */
    const char *survivor;    /* the survivor the request names */
    char *target;            /* where the fold goes now (owned) */
    prf_profile snap;
    int hops;
} prf_merge_op;

typedef struct {
    prf_batch *b;
    char *target;            /* master the events go to now (owned) */
    prf_event **evs;         /* into b->events */
    size_t n;
    unsigned char *flags;
    int hops;
} prf_group;

struct prf_batch {
    prf_svc *ps;
    cdp_rpc_call *call;
    prf_event *events;
    size_t n_events;
    prf_fold_opts opts;
    int phase;               /* 1 merges, 2 events */
    int pending;             /* scripts in flight, plus one while issuing */
    grpc_status_code code;
    char msg[PRF_ERR_MAX];
    long long applied, dups;
    char **changed;          /* owned, distinct */
    size_t n_changed, cap_changed;
    prf_merge_op *merges;
    size_t n_merges;
    prf_group *groups;
    size_t n_groups;
};

static void prf__start_events(prf_batch *b);
static void prf__issue_fold(prf_merge_op *op);
static void prf__issue_apply(prf_group *g);

/* ============================================================ bookkeeping */

static void prf__batch_free(prf_batch *b)
{
    for (size_t i = 0; i < b->n_events; i++)
        prf_event_free(&b->events[i]);
    free(b->events);
    for (size_t i = 0; i < b->n_changed; i++)
        free(b->changed[i]);
    free(b->changed);
    for (size_t i = 0; i < b->n_merges; i++) {
        free(b->merges[i].target);
        prf_profile_clear(&b->merges[i].snap);
    }
    free(b->merges);
    for (size_t i = 0; i < b->n_groups; i++) {
        free(b->groups[i].target);
        free(b->groups[i].evs);
        free(b->groups[i].flags);
    }
    free(b->groups);
    free(b);
}

/* Records the first failure; later ones only add to the log. */
static void prf__fail(prf_batch *b, grpc_status_code code, const char *msg)
{
    if (b->code == GRPC_STATUS_OK) {
        b->code = code;
        snprintf(b->msg, sizeof(b->msg), "%s", msg);
    }
}

/* Records master as changed; duplicates are dropped once, at the end
 * (prf__unique_changed), so a batch of n masters costs n log n, not n^2. */
static void prf__mark_changed(prf_batch *b, const char *master)
{
    if (b->n_changed == b->cap_changed) {
        size_t ncap = b->cap_changed ? 2 * b->cap_changed : 8;
        char **nc = realloc(b->changed, ncap * sizeof(*nc));
        if (!nc) {
            prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        b->changed = nc;
        b->cap_changed = ncap;
    }
    char *copy = strdup(master);
    if (!copy) {
        prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    b->changed[b->n_changed++] = copy;
}

static int prf__cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Sorts the changed masters and drops the repeats. */
static void prf__unique_changed(prf_batch *b)
{
    if (b->n_changed < 2)
        return;
    qsort(b->changed, b->n_changed, sizeof(*b->changed), prf__cmp_str);
    size_t kept = 1;
    for (size_t i = 1; i < b->n_changed; i++) {
        if (strcmp(b->changed[i], b->changed[kept - 1]) == 0)
            free(b->changed[i]);
        else
            b->changed[kept++] = b->changed[i];
    }
    b->n_changed = kept;
}

static void prf__finish(prf_batch *b)
{
    if (b->code != GRPC_STATUS_OK) {
        cdp_log(CDP_LOG_WARN, "ApplyEvents failed", "{s:s,s:i,s:I,s:I}", "error", b->msg,
                "events", (int)b->n_events, "applied", (json_int_t)b->applied, "duplicates",
                (json_int_t)b->dups);
        cdp_rpc_fail(b->call, b->code, "%s", b->msg);
    } else {
        Cdp__V1__ApplyEventsResponse resp = CDP__V1__APPLY_EVENTS_RESPONSE__INIT;
        prf__unique_changed(b);
        resp.applied = (int32_t)b->applied;
        resp.duplicates = (int32_t)b->dups;
        resp.n_changed_master_ids = b->n_changed;
        resp.changed_master_ids = b->changed;
        cdp_rpc_reply(b->call, &resp.base);
    }
    prf__batch_free(b);
}

static void prf__hold(prf_batch *b)
{
    b->pending++;
}

/* Drops one hold; the last one moves to the next phase or answers. */
static void prf__release(prf_batch *b)
{
    if (--b->pending > 0)
        return;
    if (b->phase == 1 && b->code == GRPC_STATUS_OK)
        prf__start_events(b);
    else
        prf__finish(b);
}

/* Checks a script's outcome; on failure records it and returns -1. */
static int prf__check(prf_batch *b, const redisReply *reply, const char *err)
{
    char msg[PRF_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code == GRPC_STATUS_OK)
        return 0;
    prf__fail(b, code, msg);
    return -1;
}

/* A redirect chain longer than any real one means a cycle of tombstones. */
static int prf__hop(prf_batch *b, int *hops, const char *at)
{
    if (++*hops <= PRF_MAX_REDIRECTS)
        return 0;
    char msg[PRF_ERR_MAX];
    snprintf(msg, sizeof(msg), "merged profile chain too long at %s", at);
    prf__fail(b, GRPC_STATUS_INTERNAL, msg);
    return -1;
}

/* ============================================================ phase 1 */

static void prf__strip_done(redisReply *reply, const char *err, void *ud)
{
    prf_merge_op *op = ud;
    prf__check(op->b, reply, err);
    prf__release(op->b);
}

static void prf__fold_done(redisReply *reply, const char *err, void *ud)
{
    prf_merge_op *op = ud;
    prf_batch *b = op->b;
    prf_reply_status st;
    char *into = NULL, msg[PRF_ERR_MAX];
    if (prf__check(b, reply, err) != 0 || b->code != GRPC_STATUS_OK) {
        prf__release(b);
        return;
    }
    if (prf_reply_fold(reply, &st, &into, msg, sizeof(msg)) != 0) {
        prf__fail(b, GRPC_STATUS_INTERNAL, msg);
        prf__release(b);
        return;
    }
    if (st == PRF_REPLY_REDIRECT) {
        free(op->target);
        op->target = into;
        if (prf__hop(b, &op->hops, into) == 0)
            prf__issue_fold(op);
        else
            prf__release(b);
        return;
    }
    if (st == PRF_REPLY_OK) {
        cdp_metrics_inc("cdp_profile_merges_folded_total", "", 1);
        cdp_log(CDP_LOG_INFO, "profile folded", "{s:s,s:s}", "loser", op->loser, "survivor",
                op->target);
        prf__mark_changed(b, op->target);
        prf__mark_changed(b, op->loser);
    }
    prf_store_eval(&b->ps->store, b->ps->store.strip, op->loser, NULL, prf__strip_done, op);
}

static void prf__issue_fold(prf_merge_op *op)
{
    prf_batch *b = op->b;
    prf_args a;
    prf_args_init(&a);
    if (prf_args_fold(&a, op->loser, &b->opts, &op->snap)) {
        prf_args_free(&a);
        prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf__release(b);
        return;
    }
    prf_store_eval(&b->ps->store, b->ps->store.fold, op->target, &a, prf__fold_done, op);
    prf_args_free(&a);
}

static void prf__tombstone_done(redisReply *reply, const char *err, void *ud)
{
    prf_merge_op *op = ud;
    prf_batch *b = op->b;
    char msg[PRF_ERR_MAX];
    if (prf__check(b, reply, err) != 0 || b->code != GRPC_STATUS_OK) {
        prf__release(b);
        return;
    }
    if (prf_reply_snapshot(reply, &op->snap, msg, sizeof(msg)) != 0) {
        prf__fail(b, GRPC_STATUS_INTERNAL, msg);
        prf__release(b);
        return;
    }
    op->target = strdup(op->snap.merged_into);
    if (!op->target) {
        prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf__release(b);
        return;
    }
    prf__issue_fold(op);
}

/* The distinct loser -> survivor pairs of the batch, in order. Returns 0
 * or PRF_ENOMEM. */
static int prf__collect_merges(prf_batch *b)
{
    size_t total = 0;
    for (size_t i = 0; i < b->n_events; i++)
        total += b->events[i].source->n_merges;
    b->merges = calloc(total ? total : 1, sizeof(*b->merges));
    if (!b->merges)
        return PRF_ENOMEM;
    for (size_t i = 0; i < b->n_events; i++) {
        const Cdp__V1__ResolvedEvent *re = b->events[i].source;
        for (size_t j = 0; j < re->n_merges; j++) {
            const Cdp__V1__Merge *m = re->merges[j];
            size_t k = 0;
            while (k < b->n_merges && (strcmp(b->merges[k].loser, m->loser_id) != 0 ||
                                       strcmp(b->merges[k].survivor, m->survivor_id) != 0))
                k++;
            if (k < b->n_merges)
                continue;
            prf_merge_op *op = &b->merges[b->n_merges++];
            op->b = b;
            op->loser = m->loser_id;
            op->survivor = m->survivor_id;
            prf_profile_init(&op->snap);
        }
    }
    return PRF_OK;
}

static void prf__start_merges(prf_batch *b)
{
    b->phase = 1;
    prf__hold(b);
    for (size_t i = 0; i < b->n_merges; i++) {
        prf_merge_op *op = &b->merges[i];
        prf_args a;
        prf_args_init(&a);
        prf__hold(b);
        if (prf_args_add(&a, op->survivor) != PRF_OK) {
            prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            prf__release(b);
        } else {
            prf_store_eval(&b->ps->store, b->ps->store.tombstone, op->loser, &a,
                           prf__tombstone_done, op);
        }
        prf_args_free(&a);
    }
    prf__release(b);
}

/* ============================================================ phase 2 */

static void prf__apply_done(redisReply *reply, const char *err, void *ud)
{
    prf_group *g = ud;
    prf_batch *b = g->b;
    prf_reply_status st;
    long long applied, dups;
    char *into = NULL, msg[PRF_ERR_MAX];
    if (prf__check(b, reply, err) != 0) {
        prf__release(b);
        return;
    }
    if (prf_reply_apply(reply, g->n, &st, &applied, &dups, g->flags, &into, msg, sizeof(msg))) {
        prf__fail(b, GRPC_STATUS_INTERNAL, msg);
        prf__release(b);
        return;
    }
    b->applied += applied;
    b->dups += dups;
    cdp_metrics_inc("cdp_profile_events_applied_total", "", (double)applied);
    cdp_metrics_inc("cdp_profile_events_duplicate_total", "", (double)dups);
    if (st == PRF_REPLY_OK) {
        if (applied > 0)
            prf__mark_changed(b, g->target);
        prf__release(b);
        return;
    }
    /* a tombstone: what it had not seen goes on to its survivor */
    size_t kept = 0;
    for (size_t i = 0; i < g->n; i++)
        if (!g->flags[i])
            g->evs[kept++] = g->evs[i];
    g->n = kept;
    free(g->target);
    g->target = into;
    if (g->n == 0 || b->code != GRPC_STATUS_OK || prf__hop(b, &g->hops, into) != 0)
        prf__release(b);
    else
        prf__issue_apply(g);
}

static void prf__issue_apply(prf_group *g)
{
    prf_batch *b = g->b;
    prf_args a;
    prf_args_init(&a);
    int rc = prf_args_apply_header(&a, &b->opts, g->n);
    for (size_t i = 0; rc == PRF_OK && i < g->n; i++)
        rc = prf_args_add_delta(&a, &g->evs[i]->delta);
    if (rc != PRF_OK) {
        prf_args_free(&a);
        prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf__release(b);
        return;
    }
    prf_store_eval(&b->ps->store, b->ps->store.apply, g->target, &a, prf__apply_done, g);
    prf_args_free(&a);
}

static int prf__cmp_event_master(const void *x, const void *y)
{
    const prf_event *a = *(const prf_event *const *)x, *b = *(const prf_event *const *)y;
    int c = strcmp(a->master_id, b->master_id);
    return c ? c : (a < b ? -1 : a > b);
}

/* Groups the events by master id, keeping their order within a group.
 * Returns 0 or PRF_ENOMEM. */
static int prf__group(prf_batch *b)
{
    prf_event **order = malloc(b->n_events * sizeof(*order));
    b->groups = calloc(b->n_events, sizeof(*b->groups));
    if (!order || !b->groups) {
        free(order);
        return PRF_ENOMEM;
    }
    for (size_t i = 0; i < b->n_events; i++)
        order[i] = &b->events[i];
    qsort(order, b->n_events, sizeof(*order), prf__cmp_event_master);
    int rc = PRF_OK;
    for (size_t i = 0; rc == PRF_OK && i < b->n_events;) {
        size_t j = i;
        while (j < b->n_events && strcmp(order[j]->master_id, order[i]->master_id) == 0)
            j++;
        prf_group *g = &b->groups[b->n_groups++];
        g->b = b;
        g->n = j - i;
        g->target = strdup(order[i]->master_id);
        g->evs = malloc(g->n * sizeof(*g->evs));
        g->flags = malloc(g->n);
        if (!g->target || !g->evs || !g->flags)
            rc = PRF_ENOMEM;
        else
            memcpy(g->evs, order + i, g->n * sizeof(*g->evs));
        i = j;
    }
    free(order);
    return rc;
}

static void prf__start_events(prf_batch *b)
{
    b->phase = 2;
    if (prf__group(b) != PRF_OK) {
        prf__fail(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf__finish(b);
        return;
    }
    prf__hold(b);
    for (size_t i = 0; i < b->n_groups; i++) {
        prf__hold(b);
        prf__issue_apply(&b->groups[i]);
    }
    prf__release(b);
}

/* ============================================================ handler */

/* Converts every event; on failure answers the call and returns -1. */
static int prf__convert(prf_batch *b, const Cdp__V1__ApplyEventsRequest *req)
{
    char err[PRF_ERR_MAX];
    for (size_t i = 0; i < req->n_events; i++) {
        int rc = prf_event_from_proto(req->events[i], i, &b->events[i], err, sizeof(err));
        if (rc == PRF_EINVAL) {
            cdp_rpc_fail(b->call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
            return -1;
        }
        if (rc != PRF_OK) {
            cdp_rpc_fail(b->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return -1;
        }
        b->n_events = i + 1;
    }
    return 0;
}

void prf_apply_events(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ApplyEventsRequest *req = (const Cdp__V1__ApplyEventsRequest *)msg;
    if (req->n_events > PRF_MAX_BATCH_EVENTS) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "events: at most %d per call, got %zu",
                     PRF_MAX_BATCH_EVENTS, req->n_events);
        return;
    }
    if (req->n_events == 0) {
        Cdp__V1__ApplyEventsResponse resp = CDP__V1__APPLY_EVENTS_RESPONSE__INIT;
        cdp_rpc_reply(call, &resp.base);
        return;
    }
    prf_batch *b = calloc(1, sizeof(*b));
    if (b)
        b->events = calloc(req->n_events, sizeof(*b->events));
    if (!b || !b->events) {
        free(b);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    b->ps = ud;
    b->call = call;
    b->opts = prf_svc_fold_opts(b->ps, cdp_now_ms());
    if (prf__convert(b, req) != 0) {
        prf__batch_free(b);
        return;
    }
    if (prf__collect_merges(b) != PRF_OK) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        prf__batch_free(b);
        return;
    }
    if (b->n_merges > 0)
        prf__start_merges(b);
    else
        prf__start_events(b);
}
