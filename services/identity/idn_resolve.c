/* idn_resolve: the resolution state machine of idn_store (see idn_store.h
 * and docs/identity.md).
 *
 * One job per resolution. A round is a sequence of steps; every step issues
 * all its commands in one loop turn (so they leave pipelined) and the next
 * step runs when the last reply is in:
 *
 *   get     GET every identifier key
 *   verify  only when every key holds the same confirmed master: one HMGET
 *           of its merged_into and of this message's merge-record flag;
 *           a root without the flag is the answer (the common case, see
 *           idn_fast.h), anything else goes on to read
 *   read    idn_read every master reached, following merged_into to roots;
 *           merges left half-done by a crash are completed here (then the
 *           round restarts)
 *   plan    idn_plan_compute over the roots (pure)
 *   claim   a new person: SET NX the highest-priority identifier first
 *           (the anchor), so that concurrent first events of one person
 *           agree on one master; then SET NX the rest. Claims are written
 *           pending (id + IDN_PENDING_MARK).
 *           An existing person: per loser idn_loser then idn_absorb, and
 *           SET NX for unmapped identifiers, all at once
 *   add     idn_add the identifiers the survivor's set lacks
 *   confirm (not awaited, SET XX) the claims now in the target's set
 *           become plain ids; keys that led to the survivor through merged
 *           masters are re-pointed to it
 *   deliver only for a delivering request (deliver_merges and a message
 *           id) that saw merges pending delivery: idn_deliver moves the
 *           target's pending merges into this message's record and they
 *           are reported with its own merges
 *
 * A lost claim or a master that changed since it was read sets `restart`:
 * the job finishes the current step and starts a new round, at most
 * store->max_rounds rounds.
 *
 * Pending-reply accounting: every issued command holds one reference on the
 * job (`pending`), and each step holds one more while it issues, so replies
 * that arrive synchronously (a client that is down) cannot advance the job
 * before the step has issued everything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_metrics.h"
#include "idn_fast.h"
#include "idn_store_int.h"

/* Room for a decimal 64-bit integer (a version, a time, a count). */
#define RS_NUM_LEN 24
/* idn_absorb's arguments before its lists (see k_lua_absorb). */
#define RS_ABSORB_FIXED_ARGS 7

/* A master visited during a round. */
typedef struct {
    char id[IDN_MASTER_ID_BUFSZ];
    char into[IDN_MASTER_ID_BUFSZ]; /* "" for a root */
    int done;                       /* its merge was fully absorbed */
    int ours;                       /* merged by this job (or for its message) */
    char ver[RS_NUM_LEN];
    char merged_at[RS_NUM_LEN];
    char *merge_msg;
    idn_strv members;               /* roots, and losers with a pending merge */
    idn_strv merges;                /* a loser's own merge records */
    idn_strv pending;               /* a loser's merges pending delivery */
    int dlv;                        /* its merge was delivered by its message */
    int pm;                         /* a root holding merges pending delivery */
    idn_ident *split;               /* members split for the planner (roots) */
    size_t n_split;
    int view;                       /* index among the planner's masters, or -1 */
} rs_node;

typedef struct rs_job rs_job;
typedef void (*rs_step)(rs_job *j);

struct rs_job {
    idn_store *st;
    idn_resolve_cb cb;
    void *ud;
    int64_t now_ms;
    size_t n;
    idn_ident ids[IDN_MAX_IDENTIFIERS];
    char *member[IDN_MAX_IDENTIFIERS];
    char *ikey[IDN_MAX_IDENTIFIERS];
    char *message_id;
    int deliver;                                /* deliver_merges with a message id */
    int take_pending;                           /* saw merges pending delivery */
    int round;
    int pending;
    rs_step next;
    idn_status status;
    char err[IDN_ERR_LEN];
    int restart;
    int wrote;                                  /* claimed, merged or added */
    int fast;                                   /* answered by the verify step */
    /* per round */
    char owner[IDN_MAX_IDENTIFIERS][IDN_MASTER_ID_BUFSZ];
    unsigned char unconfirmed[IDN_MAX_IDENTIFIERS]; /* owner's claim pending */
    rs_node *nodes;
    size_t n_nodes, cap_nodes;
    int owner_view[IDN_MAX_IDENTIFIERS];
    int view_node[IDN_MAX_IDENTIFIERS];
    idn_master_view views[IDN_MAX_IDENTIFIERS];
    size_t n_views;
    idn_plan plan;
    unsigned char claimed[IDN_MAX_IDENTIFIERS]; /* won a SET NX this round */
    char claim_as[IDN_MASTER_ID_BUFSZ];         /* the master claims named */
    int anchor;
    /* the master identifiers are added to, and hops followed to reach it */
    char target[IDN_MASTER_ID_BUFSZ];
    int target_hops;
    int creating;                               /* target was minted this round */
    char created_id[IDN_MASTER_ID_BUFSZ];
    /* results, across rounds */
    idn_merge *merges;
    size_t n_merges, cap_merges;
};

/* What a reply callback needs: the job and which node or identifier. */
typedef struct {
    rs_job *job;
    int idx;
    int hops;
    char target[IDN_MASTER_ID_BUFSZ];
} rs_ref;

static void rs_new_round(rs_job *j);

/* ------------------------------------------------------------ bookkeeping */

static void rs_fail(rs_job *j, idn_status st, const char *msg) {
    if (j->status != IDN_OK)
        return;
    j->status = st;
    snprintf(j->err, sizeof j->err, "%s", msg);
}

static void rs_nodes_clear(rs_job *j) {
    for (size_t i = 0; i < j->n_nodes; i++) {
        rs_node *nd = &j->nodes[i];
        free(nd->merge_msg);
        idn__strv_clear(&nd->members);
        idn__strv_clear(&nd->merges);
        idn__strv_clear(&nd->pending);
        free(nd->split);
    }
    j->n_nodes = 0;
}

static void rs_free(rs_job *j) {
    rs_nodes_clear(j);
    free(j->nodes);
    for (size_t i = 0; i < j->n; i++) {
        free((char *)j->ids[i].type);
        free((char *)j->ids[i].value);
        free(j->member[i]);
        free(j->ikey[i]);
    }
    for (size_t i = 0; i < j->n_merges; i++)
        idn_merge_clear(&j->merges[i]);
    free(j->merges);
    free(j->message_id);
    free(j);
}

static void rs_finish(rs_job *j) {
    idn_resolve_result res = {.status = j->status, .plan = &j->plan, .wrote = j->wrote};
    if (j->status == IDN_OK)
        idn__count_path(j->fast ? "fast" : "full", 1);
    if (j->status == IDN_OK) {
        res.master_id = j->target;
        res.created = j->created_id[0] != '\0' && strcmp(j->created_id, j->target) == 0;
        res.n_merges = j->n_merges;
        res.merges = j->merges;
    } else {
        res.error = j->err;
    }
    j->cb(&res, j->ud);
    rs_free(j);
}

static void rs_hold(rs_job *j) {
    j->pending++;
}

/* Drops one reference; the last one runs the next step (or finishes the job
 * if something failed). */
static void rs_release(rs_job *j) {
    if (--j->pending > 0)
        return;
    rs_step next = j->next;
    j->next = NULL;
    if (j->status != IDN_OK || next == NULL)
        rs_finish(j);
    else
        next(j);
}

static rs_ref *rs_ref_new(rs_job *j, int idx) {
    rs_ref *r = calloc(1, sizeof *r);
    if (r == NULL) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
        return NULL;
    }
    r->job = j;
    r->idx = idx;
    rs_hold(j);
    return r;
}

/* The job of a reply's ref (which the caller frees), after checking the
 * reply: *ok is 1 when it is usable, else the job is marked failed. */
static rs_job *rs_ref_take(void *ud, const redisReply *reply, const char *err, int *ok) {
    rs_ref *r = ud;
    rs_job *j = r->job;
    idn_status st;
    char msg[IDN_ERR_LEN];
    *ok = idn__reply_ok(reply, err, &st, msg, sizeof msg);
    if (!*ok)
        rs_fail(j, st, msg);
    return j;
}

/* Records a merge in the result unless one for the same loser is there. */
static void rs_add_merge(rs_job *j, const idn_merge *m) {
    for (size_t i = 0; i < j->n_merges; i++)
        if (strcmp(j->merges[i].loser, m->loser) == 0)
            return;
    if (j->n_merges == j->cap_merges) {
        size_t cap = j->cap_merges ? j->cap_merges * 2 : 4;
        idn_merge *v = realloc(j->merges, cap * sizeof *v);
        if (v == NULL) {
            rs_fail(j, IDN_EINTERNAL, "out of memory");
            return;
        }
        j->merges = v;
        j->cap_merges = cap;
    }
    idn_merge *dst = &j->merges[j->n_merges];
    *dst = *m;
    dst->message_id = strdup(m->message_id ? m->message_id : "");
    if (dst->message_id == NULL) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
        return;
    }
    j->n_merges++;
}

static int rs_node_find(const rs_job *j, const char *id) {
    for (size_t i = 0; i < j->n_nodes; i++)
        if (strcmp(j->nodes[i].id, id) == 0)
            return (int)i;
    return -1;
}

static int rs_node_add(rs_job *j, const char *id) {
    if (j->n_nodes == IDN_MAX_NODES) {
        rs_fail(j, IDN_EINTERNAL, "identity graph too deep");
        return -1;
    }
    if (j->n_nodes == j->cap_nodes) {
        size_t cap = j->cap_nodes ? j->cap_nodes * 2 : 8;
        rs_node *v = realloc(j->nodes, cap * sizeof *v);
        if (v == NULL) {
            rs_fail(j, IDN_EINTERNAL, "out of memory");
            return -1;
        }
        j->nodes = v;
        j->cap_nodes = cap;
    }
    rs_node *nd = &j->nodes[j->n_nodes];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->id, sizeof nd->id, "%s", id);
    nd->view = -1;
    return (int)j->n_nodes++;
}

static void rs_ignore(redisReply *reply, const char *err, void *ud) {
    (void)reply;
    (void)err;
    (void)ud;
}

/* ---------------------------------------------------------------- step: get */

static void rs_verify(rs_job *j);
static void rs_after_get(rs_job *j);

static void rs_on_get(redisReply *reply, const char *err, void *ud) {
    int ok, i = ((rs_ref *)ud)->idx;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    if (ok) {
        const char *v = idn__reply_str(reply);
        int pending = 0;
        if (v != NULL && idn_ident_value_parse(v, reply->len, j->owner[i], &pending) != 0)
            rs_fail(j, IDN_EINTERNAL, "identity graph corrupt: bad master id");
        j->unconfirmed[i] = (unsigned char)pending;
    }
    rs_release(j);
}

/* Starts round j->round + 1: resets the per-round state. Returns 0, or -1
 * when the rounds are used up (the job is finished, ABORTED). */
static int rs_begin_round(rs_job *j) {
    if (j->round >= j->st->max_rounds) {
        char msg[IDN_ERR_LEN];
        snprintf(msg, sizeof msg,
                 "identity resolution did not settle after %d rounds of concurrent changes",
                 j->round);
        rs_fail(j, IDN_EABORTED, msg);
        rs_finish(j);
        return -1;
    }
    if (j->round > 0)
        cdp_metrics_inc("cdp_identity_restarts_total", "", 1);
    j->round++;
    rs_nodes_clear(j);
    j->restart = 0;
    j->n_views = 0;
    j->creating = 0;
    j->target[0] = '\0';
    j->target_hops = 0;
    j->take_pending = 0;
    memset(j->claimed, 0, sizeof j->claimed);
    memset(j->unconfirmed, 0, sizeof j->unconfirmed);
    for (size_t i = 0; i < j->n; i++)
        j->owner[i][0] = '\0';
    return 0;
}

static void rs_new_round(rs_job *j) {
    if (rs_begin_round(j) != 0)
        return;
    j->next = rs_verify;
    rs_hold(j);
    for (size_t i = 0; i < j->n; i++) {
        rs_ref *r = rs_ref_new(j, (int)i);
        if (r != NULL)
            cdp_redis_commandf(j->st->redis, j->ikey[i], rs_on_get, r, "GET %s", j->ikey[i]);
    }
    rs_release(j);
}

/* ------------------------------------------------------------- step: verify */

static void rs_after_get(rs_job *j);

static void rs_on_verify(redisReply *reply, const char *err, void *ud) {
    int ok;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    if (ok && idn__verify_root(reply) && !(j->message_id[0] && idn__verify_flag(reply, 0)) &&
        !idn__verify_must_deliver(reply, j->message_id, j->deliver))
        j->fast = 1;
    rs_release(j);
}

static void rs_after_verify(rs_job *j) {
    if (!j->fast) {
        rs_after_get(j);
        return;
    }
    idn_fast_plan(j->n, &j->plan);
    snprintf(j->target, sizeof j->target, "%s", j->owner[0]);
    rs_finish(j);
}

/* The common case: every key holds the same confirmed master. Checks that
 * it is a root holding no merge record of this message; otherwise, and for
 * any other shape, goes on to the read step. */
static void rs_verify(rs_job *j) {
    const char *owners[IDN_MAX_IDENTIFIERS];
    for (size_t i = 0; i < j->n; i++)
        owners[i] = j->owner[i];
    if (!idn_fast_candidate(owners, j->unconfirmed, j->n)) {
        rs_after_get(j);
        return;
    }
    j->next = rs_after_verify;
    rs_hold(j);
    rs_ref *r = rs_ref_new(j, 0);
    const char *msgs[1] = {j->message_id};
    if (r != NULL)
        idn__verify_issue(j->st, j->owner[0], msgs, j->message_id[0] ? 1 : 0, rs_on_verify, r);
    rs_release(j);
}

/* --------------------------------------------------------------- step: read */

static void rs_after_read(rs_job *j);
static void rs_read(rs_job *j, int node);

/* Copies the evm records (merges caused by this message) into the result. */
static void rs_take_evm(rs_job *j, const redisReply *arr) {
    for (size_t k = 0; arr != NULL && arr->type == REDIS_REPLY_ARRAY && k < arr->elements; k++) {
        const redisReply *e = arr->element[k];
        idn_merge m;
        if (e->type == REDIS_REPLY_STRING && idn_merge_decode(e->str, e->len, &m) == 0) {
            rs_add_merge(j, &m);
            idn_merge_clear(&m);
        }
    }
}

/* Fills node from an idn_read reply. Returns 0 or -1 (job failed). */
static int rs_parse_read(rs_job *j, rs_node *nd, const redisReply *reply) {
    const char *into = idn__reply_str(idn__reply_at(reply, 0));
    const char *done = idn__reply_str(idn__reply_at(reply, 1));
    const char *ver = idn__reply_str(idn__reply_at(reply, 2));
    const char *at = idn__reply_str(idn__reply_at(reply, 3));
    const char *msg = idn__reply_str(idn__reply_at(reply, 4));
    if (!into || !done || !ver || !at || !msg) {
        rs_fail(j, IDN_EINTERNAL, "unexpected reply to idn_read");
        return -1;
    }
    if (into[0] != '\0' && (!idn_master_id_valid(into) || strcmp(into, nd->id) >= 0)) {
        rs_fail(j, IDN_EINTERNAL, "identity graph corrupt: bad merged_into");
        return -1;
    }
    snprintf(nd->into, sizeof nd->into, "%s", into);
    snprintf(nd->ver, sizeof nd->ver, "%s", ver);
    snprintf(nd->merged_at, sizeof nd->merged_at, "%s", at);
    nd->done = done[0] != '\0';
    nd->merge_msg = strdup(msg);
    if (nd->merge_msg == NULL || idn__strv_from_reply(&nd->members, idn__reply_at(reply, 5)) ||
        idn__strv_from_reply(&nd->merges, idn__reply_at(reply, 6))) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
        return -1;
    }
    rs_take_evm(j, idn__reply_at(reply, 7));
    const char *dlv = idn__reply_str(idn__reply_at(reply, 8));
    const char *pm = idn__reply_str(idn__reply_at(reply, 10));
    if (!dlv || !pm || idn__strv_from_reply(&nd->pending, idn__reply_at(reply, 9))) {
        rs_fail(j, IDN_EINTERNAL, "unexpected reply to idn_read");
        return -1;
    }
    nd->dlv = dlv[0] == '1';
    nd->pm = pm[0] != '\0';
    /* pending merges reach the target: at a root, by a loser's absorb, or as
     * a half-done merge that was not delivered */
    if (nd->pm || nd->pending.n > 0 || (nd->into[0] != '\0' && !nd->done && !nd->dlv))
        j->take_pending = 1;
    return 0;
}

static void rs_on_read(redisReply *reply, const char *err, void *ud) {
    int ok, node = ((rs_ref *)ud)->idx;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    if (ok && rs_parse_read(j, &j->nodes[node], reply) == 0) {
        char into[IDN_MASTER_ID_BUFSZ];
        memcpy(into, j->nodes[node].into, sizeof into);
        if (into[0] != '\0' && rs_node_find(j, into) < 0) {
            int k = rs_node_add(j, into);
            if (k >= 0)
                rs_read(j, k);
        }
    }
    rs_release(j);
}

/* Issues idn_read for node (its keys, and the evm list of this message),
 * passing the limited types and the event's members. */
static void rs_read(rs_job *j, int node) {
    const char *id = j->nodes[node].id;
    int has_msg = j->message_id[0] != '\0';
    char *k[5] = {idn_key_master(id), idn_key_master_ids(id), idn_key_master_merges(id),
                  has_msg ? idn_key_master_evm(id, j->message_id) : idn_key_master(id),
                  idn_key_master_pm(id)};
    if (k[0] && k[1] && k[2] && k[3] && k[4]) {
        rs_ref *r = rs_ref_new(j, node);
        const char *keys[5] = {k[0], k[1], k[2], k[3], k[4]};
        const char *args[2 + IDN_MAX_RULE_TYPES + IDN_MAX_IDENTIFIERS];
        char n_limited[RS_NUM_LEN];
        snprintf(n_limited, sizeof n_limited, "%zu", j->st->n_limited);
        int nargs = 0;
        args[nargs++] = has_msg ? "1" : "0";
        args[nargs++] = n_limited;
        for (size_t i = 0; i < j->st->n_limited; i++)
            args[nargs++] = j->st->limited[i];
        for (size_t i = 0; i < j->n; i++)
            args[nargs++] = j->member[i];
        if (r != NULL)
            idn__eval(j->st, j->st->s_read, rs_on_read, r, 5, keys, nargs, args);
    } else {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
    }
    for (int i = 0; i < 5; i++)
        free(k[i]);
}

static void rs_after_get(rs_job *j) {
    j->next = rs_after_read;
    rs_hold(j);
    for (size_t i = 0; i < j->n; i++) {
        if (j->owner[i][0] == '\0' || rs_node_find(j, j->owner[i]) >= 0)
            continue;
        int k = rs_node_add(j, j->owner[i]);
        if (k >= 0)
            rs_read(j, k);
    }
    rs_release(j);
}

/* ------------------------------------------------------------ merges (absorb) */

static void rs_absorb(rs_job *j, int node, const char *target, int hops);

/* A loser's merge is complete (applied now by this job, or earlier by
 * another): report it, re-point its identifier keys to
 * the survivor (compare-and-set; only shortens chains) and mark it done. */
static void rs_absorbed(rs_job *j, int node, const char *target, int applied) {
    rs_node *nd = &j->nodes[node];
    if (applied)
        cdp_metrics_inc("cdp_identity_merges_total", "", 1);
    if (nd->ours) {
        idn_merge m = {.merged_at_ms = strtoll(nd->merged_at, NULL, 10),
                       .message_id = nd->merge_msg};
        snprintf(m.survivor, sizeof m.survivor, "%s", nd->into);
        snprintf(m.loser, sizeof m.loser, "%s", nd->id);
        rs_add_merge(j, &m);
    }
    for (size_t i = 0; i < nd->members.n; i++) {
        char *key = idn_key_ident_of_member(nd->members.v[i]);
        if (key == NULL)
            continue;
        const char *keys[1] = {key};
        const char *args[2] = {nd->id, target};
        idn__eval(j->st, j->st->s_repoint, rs_ignore, NULL, 1, keys, 2, args);
        free(key);
    }
    char *hkey = idn_key_master(nd->id);
    if (hkey != NULL)
        cdp_redis_commandf(j->st->redis, hkey, rs_ignore, NULL, "HSET %s merge_done 1", hkey);
    free(hkey);
}

static void rs_on_absorb(redisReply *reply, const char *err, void *ud) {
    rs_ref *r = ud;
    int ok, node = r->idx, hops = r->hops;
    char target[IDN_MASTER_ID_BUFSZ];
    memcpy(target, r->target, sizeof target);
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    const char *moved = ok ? idn__reply_str(reply) : NULL;
    if (ok && moved == NULL) {
        rs_fail(j, IDN_EINTERNAL, "unexpected reply to idn_absorb");
    } else if (ok && (strcmp(moved, "1") == 0 || strcmp(moved, "0") == 0)) {
        rs_absorbed(j, node, target, moved[0] == '1');
    } else if (ok) {
        /* the survivor was merged meanwhile: absorb into its survivor */
        if (!idn_master_id_valid(moved) || strcmp(moved, target) >= 0 || hops >= IDN_MAX_CHAIN)
            rs_fail(j, IDN_EINTERNAL, "identity graph corrupt: bad merged_into");
        else
            rs_absorb(j, node, moved, hops + 1);
    }
    rs_release(j);
}

/* Issues idn_absorb of node (a loser whose merged_into is set, with its
 * members and merge records loaded) into target. */
static void rs_absorb(rs_job *j, int node, const char *target, int hops) {
    rs_node *nd = &j->nodes[node];
    int has_msg = nd->merge_msg[0] != '\0';
    char *k[5] = {idn_key_master(target), idn_key_master_ids(target),
                  idn_key_master_merges(target),
                  has_msg ? idn_key_master_evm(target, nd->merge_msg) : idn_key_master(target),
                  idn_key_master_pm(target)};
    char *record = idn_merge_encode(nd->into, nd->id, strtoll(nd->merged_at, NULL, 10),
                                    nd->merge_msg);
    size_t nargs = RS_ABSORB_FIXED_ARGS + nd->members.n + nd->pending.n + nd->merges.n;
    const char **args = malloc(nargs * sizeof *args);
    rs_ref *r = NULL;
    if (k[0] && k[1] && k[2] && k[3] && k[4] && record && args &&
        (r = rs_ref_new(j, node)) != NULL) {
        char ttl[RS_NUM_LEN], count[RS_NUM_LEN], n_pending[RS_NUM_LEN];
        snprintf(ttl, sizeof ttl, "%d", j->st->evm_ttl_s);
        snprintf(count, sizeof count, "%zu", nd->members.n);
        snprintf(n_pending, sizeof n_pending, "%zu", nd->pending.n);
        size_t a = 0;
        args[a++] = nd->id;
        args[a++] = record;
        args[a++] = has_msg ? ttl : "";
        args[a++] = nd->merge_msg;
        args[a++] = count;
        args[a++] = nd->dlv ? "" : "1";
        args[a++] = n_pending;
        for (size_t i = 0; i < nd->members.n; i++)
            args[a++] = nd->members.v[i];
        for (size_t i = 0; i < nd->pending.n; i++)
            args[a++] = nd->pending.v[i];
        for (size_t i = 0; i < nd->merges.n; i++)
            args[a++] = nd->merges.v[i];
        j->wrote = 1;
        r->hops = hops;
        snprintf(r->target, sizeof r->target, "%s", target);
        const char *keys[5] = {k[0], k[1], k[2], k[3], k[4]};
        idn__eval(j->st, j->st->s_absorb, rs_on_absorb, r, 5, keys, (int)a, args);
    } else if (r == NULL) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
    }
    free(args);
    free(record);
    for (int i = 0; i < 5; i++)
        free(k[i]);
}

/* ------------------------------------------------------------ step: plan */

static void rs_execute(rs_job *j);

/* The root node of node (every node on the chain was read this round). */
static int rs_root(const rs_job *j, int node) {
    for (int hops = 0; hops <= IDN_MAX_CHAIN && j->nodes[node].into[0] != '\0'; hops++) {
        int next = rs_node_find(j, j->nodes[node].into);
        if (next < 0)
            return -1;
        node = next;
    }
    return j->nodes[node].into[0] == '\0' ? node : -1;
}

/* Builds the planner's view: one master per distinct root. */
static int rs_build_views(rs_job *j) {
    for (size_t i = 0; i < j->n; i++) {
        j->owner_view[i] = -1;
        if (j->owner[i][0] == '\0')
            continue;
        int root = rs_root(j, rs_node_find(j, j->owner[i]));
        if (root < 0)
            return -1;
        rs_node *nd = &j->nodes[root];
        if (nd->view < 0) {
            nd->split = idn__members_split(&nd->members, &nd->n_split);
            if (nd->split == NULL)
                return -1;
            nd->view = (int)j->n_views;
            j->view_node[j->n_views] = root;
            j->views[j->n_views++] = (idn_master_view){nd->id, nd->split, nd->n_split};
        }
        j->owner_view[i] = nd->view;
    }
    return 0;
}

static void rs_after_helpers(rs_job *j) {
    rs_new_round(j);
}

static void rs_after_read(rs_job *j) {
    /* complete merges that a crash (or a concurrent resolver) left half
     * done, then read again */
    int helpers = 0;
    for (size_t k = 0; k < j->n_nodes; k++)
        helpers += j->nodes[k].into[0] != '\0' && !j->nodes[k].done;
    if (helpers > 0) {
        j->next = rs_after_helpers;
        rs_hold(j);
        for (size_t k = 0; k < j->n_nodes; k++) {
            rs_node *nd = &j->nodes[k];
            if (nd->into[0] == '\0' || nd->done)
                continue;
            nd->ours = j->message_id[0] != '\0' && strcmp(nd->merge_msg, j->message_id) == 0;
            rs_absorb(j, (int)k, nd->into, 0);
        }
        rs_release(j);
        return;
    }
    if (rs_build_views(j) != 0) {
        rs_fail(j, IDN_EINTERNAL, "identity graph corrupt or out of memory");
        rs_finish(j);
        return;
    }
    idn_plan_input in = {.idents = j->ids, .n_idents = j->n, .owner = j->owner_view,
                         .masters = j->views, .n_masters = j->n_views};
    if (idn_plan_compute(j->st->rules, &in, &j->plan) != 0) {
        rs_fail(j, IDN_EINTERNAL, "planner failed");
        rs_finish(j);
        return;
    }
    rs_execute(j);
}

/* ------------------------------------------------------------ step: claim */

static void rs_add_step(rs_job *j);

static void rs_on_claim(redisReply *reply, const char *err, void *ud) {
    int ok, i = ((rs_ref *)ud)->idx;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    if (ok) {
        if (reply->type == REDIS_REPLY_NIL)
            j->restart = 1; /* someone claimed it first */
        else
            j->claimed[i] = 1;
    }
    rs_release(j);
}

/* Claims identifier i for j->claim_as, pending until rs_confirm. */
static void rs_claim(rs_job *j, int i) {
    rs_ref *r = rs_ref_new(j, i);
    char value[IDN_IDENT_VALUE_BUFSZ];
    idn_ident_value_pending(j->claim_as, value);
    j->wrote = 1;
    if (r != NULL)
        cdp_redis_commandf(j->st->redis, j->ikey[i], rs_on_claim, r, "SET %s %s NX", j->ikey[i],
                           value);
}

static void rs_claim_rest(rs_job *j) {
    if (j->restart) { /* the anchor was taken: resolve again */
        rs_new_round(j);
        return;
    }
    j->next = rs_add_step;
    rs_hold(j);
    for (size_t i = 0; i < j->n; i++)
        if (j->plan.keep[i] && (int)i != j->anchor)
            rs_claim(j, (int)i);
    rs_release(j);
}

/* A new person: mint a master and claim the anchor alone first. */
static void rs_create(rs_job *j) {
    int anchor = -1;
    for (size_t i = 0; i < j->n; i++)
        if (j->plan.keep[i] && (anchor < 0 || idn_rules_compare(j->st->rules, j->ids[i].type, i,
                                                                 j->ids[anchor].type,
                                                                 (size_t)anchor) < 0))
            anchor = (int)i;
    if (anchor < 0 || idn_master_id_new(j->now_ms, j->target) != 0) {
        rs_fail(j, IDN_EINTERNAL, anchor < 0 ? "planner kept no identifier"
                                             : "no randomness for a master id");
        rs_finish(j);
        return;
    }
    j->anchor = anchor;
    j->creating = 1;
    snprintf(j->claim_as, sizeof j->claim_as, "%s", j->target);
    j->next = rs_claim_rest;
    rs_hold(j);
    rs_claim(j, anchor);
    rs_release(j);
}

static void rs_on_loser(redisReply *reply, const char *err, void *ud) {
    int ok, node = ((rs_ref *)ud)->idx;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    const char *verdict = ok ? idn__reply_str(idn__reply_at(reply, 0)) : NULL;
    if (ok && verdict == NULL) {
        rs_fail(j, IDN_EINTERNAL, "unexpected reply to idn_loser");
    } else if (ok && strcmp(verdict, "ok") == 0) {
        rs_node *nd = &j->nodes[node];
        idn__strv_clear(&nd->members);
        idn__strv_clear(&nd->merges);
        idn__strv_clear(&nd->pending);
        if (idn__strv_from_reply(&nd->members, idn__reply_at(reply, 1)) ||
            idn__strv_from_reply(&nd->merges, idn__reply_at(reply, 2)) ||
            idn__strv_from_reply(&nd->pending, idn__reply_at(reply, 3))) {
            rs_fail(j, IDN_EINTERNAL, "out of memory");
        } else {
            j->take_pending |= nd->pending.n > 0 || !nd->dlv;
            rs_absorb(j, node, nd->into, 0);
        }
    } else if (ok) {
        j->restart = 1; /* merged elsewhere or changed since read */
    }
    rs_release(j);
}

/* Marks one loser merged into the target (its absorb follows its reply). */
static void rs_merge(rs_job *j, int view) {
    int node = j->view_node[view];
    rs_node *nd = &j->nodes[node];
    snprintf(nd->into, sizeof nd->into, "%s", j->target);
    snprintf(nd->merged_at, sizeof nd->merged_at, "%lld", (long long)j->now_ms);
    free(nd->merge_msg);
    nd->merge_msg = strdup(j->message_id);
    nd->ours = 1;
    nd->dlv = j->deliver;
    j->wrote = 1;
    char *k[4] = {idn_key_master(nd->id), idn_key_master_ids(nd->id),
                  idn_key_master_merges(nd->id), idn_key_master_pm(nd->id)};
    rs_ref *r = NULL;
    if (nd->merge_msg && k[0] && k[1] && k[2] && k[3] && (r = rs_ref_new(j, node)) != NULL) {
        const char *keys[4] = {k[0], k[1], k[2], k[3]};
        const char *args[5] = {j->target, nd->ver, nd->merged_at, nd->merge_msg,
                               nd->dlv ? "1" : ""};
        idn__eval(j->st, j->st->s_loser, rs_on_loser, r, 4, keys, 5, args);
    } else if (r == NULL) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
    }
    for (int i = 0; i < 4; i++)
        free(k[i]);
}

/* An existing person: merge the losers and claim the unmapped identifiers,
 * all in one turn. */
static void rs_execute(rs_job *j) {
    if (j->plan.survivor < 0) {
        rs_create(j);
        return;
    }
    snprintf(j->target, sizeof j->target, "%s", j->views[j->plan.survivor].id);
    snprintf(j->claim_as, sizeof j->claim_as, "%s", j->target);
    j->anchor = -1;
    j->next = rs_add_step;
    rs_hold(j);
    for (size_t m = 0; m < j->plan.n_merge; m++)
        rs_merge(j, j->plan.merge[m]);
    for (size_t i = 0; i < j->n; i++)
        if (j->plan.keep[i] && j->owner_view[i] < 0)
            rs_claim(j, (int)i);
    rs_release(j);
}

/* --------------------------------------------------------------- step: add */

static void rs_add_issue(rs_job *j, const char **members, size_t n);

/* Whether the survivor's set (as read) already holds identifier i. */
static int rs_survivor_has(const rs_job *j, size_t i) {
    if (j->plan.survivor < 0)
        return 0;
    const idn_master_view *v = &j->views[j->plan.survivor];
    for (size_t k = 0; k < v->n_idents; k++)
        if (strcmp(v->idents[k].type, j->ids[i].type) == 0 &&
            strcmp(v->idents[k].value, j->ids[i].value) == 0)
            return 1;
    return 0;
}

/* Whether the target's set must gain kept identifier i: claimed this
 * round; mapped to the survivor but missing from its set (a crash between a
 * claim and its add); or a pending claim of a loser merged this round
 * (whose set may lack it for the same reason). Other identifiers of losers
 * arrive by absorb. */
static int rs_in_add(const rs_job *j, size_t i) {
    if (!j->plan.keep[i])
        return 0;
    int view = j->owner_view[i];
    if (j->claimed[i])
        return 1;
    if (view >= 0 && view == j->plan.survivor)
        return !rs_survivor_has(j, i);
    return view >= 0 && j->unconfirmed[i] && !j->restart;
}

static size_t rs_to_add(const rs_job *j, const char **out) {
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        if (rs_in_add(j, i))
            out[n++] = j->member[i];
    return n;
}

/* Whether identifier i's key should become the plain target id after a
 * successful round: a pending claim (ours, or read) now in the target's
 * set; or a plain id of a merged master whose chain to the survivor was
 * complete when read, when the target is that survivor. */
static int rs_confirms(const rs_job *j, size_t i) {
    int direct = j->plan.survivor >= 0 && j->target_hops == 0 &&
                 strcmp(j->target, j->views[j->plan.survivor].id) == 0;
    int to_survivor = j->owner_view[i] >= 0 && j->owner_view[i] == j->plan.survivor;
    if (!j->plan.keep[i])
        return 0;
    if (j->claimed[i])
        return 1;
    if (j->unconfirmed[i])
        return rs_in_add(j, i) || (direct && to_survivor);
    return direct && to_survivor && strcmp(j->owner[i], j->target) != 0;
}

/* Confirms and re-points keys with SET XX, not awaited. A blind write is
 * safe here: whatever the key holds meanwhile (the pending claim, its plain
 * id, or a later survivor) names a master of the identifier's tree, and
 * the identifier is in the target's set, which is what a plain value
 * promises (docs/identity.md, invariant 5); at worst a chain gets one hop
 * longer again. A lost write leaves a pending claim, which the next event
 * carrying it confirms, or one more hop to follow. */
static void rs_confirm(rs_job *j) {
    for (size_t i = 0; i < j->n; i++) {
        if (!rs_confirms(j, i))
            continue;
        const char *argv[4] = {"SET", j->ikey[i], j->target, "XX"};
        size_t lens[4] = {3, strlen(j->ikey[i]), strlen(j->target), 2};
        cdp_redis_command(j->st->redis, argv[1], lens[1], rs_ignore, NULL, 4, argv, lens);
    }
}

static void rs_after_deliver(rs_job *j) {
    if (j->restart) {
        rs_new_round(j);
        return;
    }
    rs_finish(j);
}

static void rs_on_deliver(redisReply *reply, const char *err, void *ud) {
    int ok;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    const char *into = ok ? idn__reply_str(idn__reply_at(reply, 0)) : NULL;
    if (ok && into == NULL)
        rs_fail(j, IDN_EINTERNAL, "unexpected reply to idn_deliver");
    else if (ok && into[0] != '\0')
        j->restart = 1; /* merged meanwhile: its pending merges moved on */
    else if (ok)
        rs_take_evm(j, idn__reply_at(reply, 1));
    rs_release(j);
}

/* Moves the target's merges pending delivery into this message's record
 * (idn_deliver) and reports them; a target merged meanwhile restarts the
 * round, which finds its survivor holding them. */
static void rs_deliver(rs_job *j) {
    char *k[3] = {idn_key_master(j->target), idn_key_master_pm(j->target),
                  idn_key_master_evm(j->target, j->message_id)};
    char ttl[RS_NUM_LEN];
    snprintf(ttl, sizeof ttl, "%d", j->st->evm_ttl_s);
    j->next = rs_after_deliver;
    j->wrote = 1;
    rs_hold(j);
    rs_ref *r = NULL;
    if (k[0] && k[1] && k[2] && (r = rs_ref_new(j, -1)) != NULL) {
        const char *keys[3] = {k[0], k[1], k[2]};
        const char *args[2] = {ttl, j->message_id};
        idn__eval(j->st, j->st->s_deliver, rs_on_deliver, r, 3, keys, 2, args);
    } else if (r == NULL) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
    }
    for (int i = 0; i < 3; i++)
        free(k[i]);
    rs_release(j);
}

static void rs_after_add(rs_job *j) {
    if (j->restart) {
        rs_new_round(j);
        return;
    }
    rs_confirm(j);
    if (j->deliver && j->take_pending) {
        rs_deliver(j);
        return;
    }
    rs_finish(j);
}

static void rs_on_add(redisReply *reply, const char *err, void *ud) {
    int ok;
    rs_job *j = rs_ref_take(ud, reply, err, &ok);
    free(ud);
    const char *moved = ok ? idn__reply_str(reply) : NULL;
    if (ok && moved == NULL) {
        rs_fail(j, IDN_EINTERNAL, "unexpected reply to idn_add");
    } else if (moved != NULL && moved[0] != '\0') {
        /* merged meanwhile: add to its survivor instead */
        if (!idn_master_id_valid(moved) || strcmp(moved, j->target) >= 0 ||
            ++j->target_hops > IDN_MAX_CHAIN) {
            rs_fail(j, IDN_EINTERNAL, "identity graph corrupt: bad merged_into");
        } else {
            snprintf(j->target, sizeof j->target, "%s", moved);
            const char *members[IDN_MAX_IDENTIFIERS];
            size_t n = rs_to_add(j, members);
            j->creating = 0;
            rs_add_issue(j, members, n);
        }
    }
    rs_release(j);
}

static void rs_add_issue(rs_job *j, const char **members, size_t n) {
    char *k[2] = {idn_key_master(j->target), idn_key_master_ids(j->target)};
    const char *args[IDN_MAX_IDENTIFIERS + 1];
    char created[RS_NUM_LEN] = "";
    if (j->creating) {
        snprintf(created, sizeof created, "%lld", (long long)j->now_ms);
        snprintf(j->created_id, sizeof j->created_id, "%s", j->target);
    }
    args[0] = created;
    memcpy(args + 1, members, n * sizeof *args);
    j->wrote = 1;
    rs_ref *r = NULL;
    if (k[0] && k[1] && (r = rs_ref_new(j, -1)) != NULL) {
        const char *keys[2] = {k[0], k[1]};
        idn__eval(j->st, j->st->s_add, rs_on_add, r, 2, keys, (int)n + 1, args);
    } else if (r == NULL) {
        rs_fail(j, IDN_EINTERNAL, "out of memory");
    }
    free(k[0]);
    free(k[1]);
}

static void rs_add_step(rs_job *j) {
    const char *members[IDN_MAX_IDENTIFIERS];
    size_t n = rs_to_add(j, members);
    j->next = rs_after_add;
    if (n == 0) {
        rs_after_add(j);
        return;
    }
    rs_hold(j);
    rs_add_issue(j, members, n);
    rs_release(j);
}

/* ------------------------------------------------------------------- entry */

/* A job for n identifiers, inputs copied; NULL after answering cb with
 * the failure (allocation, or a bad identifier count). */
static rs_job *rs_job_new(idn_store *s, const idn_ident *ids, size_t n, const char *message_id,
                          int deliver, int64_t now_ms, idn_resolve_cb cb, void *ud) {
    rs_job *j = calloc(1, sizeof *j);
    int oom = j == NULL || n == 0 || n > IDN_MAX_IDENTIFIERS;
    if (!oom) {
        *j = (rs_job){.st = s, .cb = cb, .ud = ud, .now_ms = now_ms, .anchor = -1};
        j->message_id = strdup(message_id ? message_id : "");
        oom = j->message_id == NULL;
        j->deliver = !oom && deliver && j->message_id[0] != '\0';
        for (size_t i = 0; i < n && !oom; i++) {
            j->ids[i].type = strdup(ids[i].type);
            j->ids[i].value = strdup(ids[i].value);
            j->member[i] = idn_member(ids[i].type, ids[i].value);
            j->ikey[i] = idn_key_ident(ids[i].type, ids[i].value);
            j->n = i + 1;
            oom = !j->ids[i].type || !j->ids[i].value || !j->member[i] || !j->ikey[i];
        }
    }
    if (oom) {
        idn_resolve_result res = {.status = IDN_EINTERNAL,
                                  .error = n == 0 || n > IDN_MAX_IDENTIFIERS
                                               ? "bad identifier count"
                                               : "out of memory"};
        cb(&res, ud);
        if (j != NULL)
            rs_free(j);
        return NULL;
    }
    return j;
}

void idn_store_resolve(idn_store *s, const idn_ident *ids, size_t n, const char *message_id,
                       int deliver, int64_t now_ms, idn_resolve_cb cb, void *ud) {
    rs_job *j = rs_job_new(s, ids, n, message_id, deliver, now_ms, cb, ud);
    if (j != NULL)
        rs_new_round(j);
}

void idn_store_resolve_probed(idn_store *s, const idn_probe *probe, size_t r, int64_t now_ms,
                              idn_resolve_cb cb, void *ud) {
    const idn_probe_req *q = idn__probe_req(probe, r);
    int read_all = q != NULL && q->n > 0 && q->n <= IDN_MAX_IDENTIFIERS;
    char owner[IDN_MAX_IDENTIFIERS][IDN_MASTER_ID_BUFSZ];
    int pending[IDN_MAX_IDENTIFIERS];
    for (size_t i = 0; read_all && i < q->n; i++)
        read_all = idn__probe_owner(probe, r, i, owner[i], &pending[i]) == 0;
    if (q == NULL) {
        idn_resolve_result res = {.status = IDN_EINTERNAL, .error = "no such probed request"};
        cb(&res, ud);
        return;
    }
    rs_job *j = rs_job_new(s, q->ids, q->n, q->message_id, q->deliver, now_ms, cb, ud);
    if (j == NULL)
        return;
    if (!read_all) {
        rs_new_round(j);
        return;
    }
    if (rs_begin_round(j) != 0)
        return;
    for (size_t i = 0; i < j->n; i++) {
        memcpy(j->owner[i], owner[i], IDN_MASTER_ID_BUFSZ);
        j->unconfirmed[i] = (unsigned char)pending[i];
    }
    /* the probe already found it is not the common case: straight to read */
    rs_after_get(j);
}
