/* seg_backfill: evaluating a new or changed segment for every profile
 * segmentation knows (the registry shards cdp:seg:{known:<k>}).
 *
 * After every definitions reload, for each segment whose backfill this
 * replica has not seen finished at the current version, it tries to take
 * the segment's lease (SET NX PX). The holder makes sure a backfill of the
 * current version is recorded (bf_reset; the writer normally did it), reads
 * the progress and, unless it is DONE, continues from the stored shard and
 * SSCAN cursor: CDP_SEGMENTATION_BACKFILL_CHUNK profiles per step, each
 * through the membership path for this one segment (transitions with
 * ev = []), then records progress with bf_step, which also renews the lease
 * and refuses when a newer version started (that aborts this run). A step
 * that fails ends the run; the lease is released and the next poll resumes
 * from the stored cursor. A replica that dies leaves its lease to expire,
 * and another one continues. SSCAN may return a profile twice across steps,
 * so scanned/matched are close to, not exactly, the distinct counts. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "seg_eval.h"
#include "seg_load.h"

typedef enum { SEG_BF_TRYING = 0, SEG_BF_RUNNING, SEG_BF_DONE } seg_bf_local;

typedef struct seg_bf_run seg_bf_run;
struct seg_bf_run {
    seg_bf_run *next;
    seg_svc *s;
    char *id;
    char *keys[SEG_SKEY_COUNT];
    int64_t version, created_ms;  /* the definition (and incarnation) it backfills */
    seg_bf_local local;
    int active;               /* a command or evaluation is in flight */
    seg_bf_status st;
    int pending, failed, step_matched, step_n;
    char next_cursor[32];
};

struct seg_backfills {
    seg_bf_run *runs;
    int running;
};

int seg_backfills_init(seg_svc *s)
{
    s->bf = calloc(1, sizeof(*s->bf));
    return s->bf ? 0 : -1;
}

static void seg__run_free(seg_bf_run *r)
{
    free(r->id);
    for (int k = 0; k < SEG_SKEY_COUNT; k++)
        free(r->keys[k]);
    free(r);
}

static void seg__run_unlink(seg_bf_run *r)
{
    seg_backfills *b = r->s->bf;
    for (seg_bf_run **p = &b->runs; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
}

static void seg__running_gauge(seg_svc *s)
{
    cdp_metrics_set("cdp_segmentation_backfills_running", "", s->bf->running);
}

static void seg__release_done(redisReply *reply, const char *err, void *ud)
{
    (void)reply;
    (void)err;
    seg__run_free(ud);
}

/* Ends this replica's run: releases the lease; DONE runs are remembered so
 * the poll does not take the lease again for this version. */
static void seg__run_end(seg_bf_run *r, seg_bf_local local)
{
    seg_svc *s = r->s;
    if (r->local == SEG_BF_RUNNING) {
        s->bf->running--;
        seg__running_gauge(s);
    }
    r->active = 0;
    r->local = local;
    if (local == SEG_BF_DONE && !s->stopping)
        return; /* stays listed; the lease is released below by a copy */
    seg__run_unlink(r);
    const char *keys[1] = { r->keys[SEG_SKEY_LEASE] };
    size_t klen[1] = { strlen(keys[0]) };
    const char *args[1] = { s->token };
    size_t alen[1] = { strlen(s->token) };
    cdp_redis_eval(s->redis, s->scripts.release, seg__release_done, r, 1, keys, klen, 1, args,
                   alen);
}

static void seg__ignore(redisReply *reply, const char *err, void *ud)
{
    (void)reply;
    (void)err;
    (void)ud;
}

/* Releases the lease of a run that stays listed as DONE. */
static void seg__release_only(seg_bf_run *r)
{
    const char *keys[1] = { r->keys[SEG_SKEY_LEASE] };
    size_t klen[1] = { strlen(keys[0]) };
    const char *args[1] = { r->s->token };
    size_t alen[1] = { strlen(r->s->token) };
    cdp_redis_eval(r->s->redis, r->s->scripts.release, seg__ignore, NULL, 1, keys, klen, 1, args, alen);
}

static void seg__finish_done(seg_bf_run *r)
{
    seg__run_end(r, SEG_BF_DONE);
    if (!r->s->stopping)
        seg__release_only(r);
}

static void seg__step(seg_bf_run *r);

/* 1 when this replica's snapshot still holds the definition r backfills
 * (same version of the same incarnation: a segment deleted and re-created
 * with the same id starts again at version 1). */
static int seg__run_current(const seg_bf_run *r)
{
    long i = seg_defs_find(r->s->defs, r->id);
    if (i < 0)
        return 0;
    const seg_def *d = seg_defs_at(r->s->defs, (size_t)i);
    return d->version == r->version && d->created_ms == r->created_ms;
}

static void seg__stepped(redisReply *reply, const char *err, void *ud)
{
    seg_bf_run *r = ud;
    char msg[SEG_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        /* lease lost or a newer version started: stop without touching it */
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    if (!strcmp(r->st.state, "DONE")) {
        cdp_log(CDP_LOG_INFO, "backfill done", "{s:s,s:I,s:I,s:I}", "segment", r->id, "version",
                (json_int_t)r->version, "scanned", (json_int_t)r->st.scanned, "matched",
                (json_int_t)r->st.matched);
        seg__finish_done(r);
        return;
    }
    seg__step(r);
}

/* Records r->st with bf_step (fields in the order the hash holds them). */
static void seg__record(seg_bf_run *r)
{
    seg_svc *s = r->s;
    char ver[32], lease[32], nums[6][32];
    snprintf(ver, sizeof(ver), "%" PRId64, r->version);
    snprintf(lease, sizeof(lease), "%" PRId64, s->cfg.backfill_lease_ms);
    int64_t v[6] = { r->st.scanned, r->st.total, r->st.matched, r->st.started_ms,
                     r->st.finished_ms, r->st.shard };
    for (int i = 0; i < 6; i++)
        snprintf(nums[i], sizeof(nums[i]), "%" PRId64, v[i]);
    const char *args[] = { s->token, ver, lease, "state", r->st.state, "scanned", nums[0], "total",
                           nums[1], "matched", nums[2], "started", nums[3], "finished", nums[4],
                           "shard", nums[5], "cursor", r->st.cursor, "error", r->st.error };
    size_t n = sizeof(args) / sizeof(args[0]), alen[sizeof(args) / sizeof(args[0])];
    for (size_t i = 0; i < n; i++)
        alen[i] = strlen(args[i]);
    const char *keys[2] = { r->keys[SEG_SKEY_BF], r->keys[SEG_SKEY_LEASE] };
    size_t klen[2] = { strlen(keys[0]), strlen(keys[1]) };
    cdp_redis_eval(s->redis, s->scripts.bf_step, seg__stepped, r, 2, keys, klen, (int)n, args,
                   alen);
}

static void seg__evaluated(const seg_eval_result *res, void *ud)
{
    seg_bf_run *r = ud;
    if (res->code != GRPC_STATUS_OK) {
        r->failed++;
        snprintf(r->st.error, sizeof(r->st.error), "%.200s", res->msg);
    } else if (res->matched) {
        r->step_matched++;
    }
    if (--r->pending > 0)
        return;
    if (r->failed) {
        cdp_log(CDP_LOG_WARN, "backfill step failed; it resumes from the stored cursor",
                "{s:s,s:s}", "segment", r->id, "error", r->st.error);
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    r->st.error[0] = '\0';
    r->st.scanned += r->step_n;
    r->st.matched += r->step_matched;
    cdp_metrics_inc("cdp_segmentation_backfill_scanned_total", "", r->step_n);
    snprintf(r->st.cursor, sizeof(r->st.cursor), "%s", r->next_cursor);
    if (!strcmp(r->st.cursor, "0")) {
        r->st.shard++;
        if (r->st.shard >= SEG_KNOWN_SHARDS) {
            snprintf(r->st.state, sizeof(r->st.state), "DONE");
            r->st.finished_ms = seg_now(r->s);
        }
    }
    seg__record(r);
}

static void seg__scanned(redisReply *reply, const char *err, void *ud)
{
    seg_bf_run *r = ud;
    char msg[SEG_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    snprintf(r->next_cursor, sizeof(r->next_cursor), "%s", reply->element[0]->str);
    const redisReply *ms = reply->element[1];
    r->pending = 1;
    r->failed = r->step_matched = 0;
    r->step_n = 0;
    for (size_t i = 0; i < ms->elements; i++) {
        if (ms->element[i]->type != REDIS_REPLY_STRING)
            continue;
        seg_eval_target t = { .master = ms->element[i]->str, .mode = SEG_SEL_ONE,
                              .only = r->id };
        r->pending++;
        r->step_n++;
        seg_eval_profile(r->s, &t, seg__evaluated, r);
    }
    seg_eval_result none = { .code = GRPC_STATUS_OK };
    seg__evaluated(&none, r);
}

/* One step: the next chunk of the current shard. */
static void seg__step(seg_bf_run *r)
{
    seg_svc *s = r->s;
    if (s->stopping || !seg__run_current(r)) {
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    char *key = seg_known_key((unsigned)r->st.shard);
    if (!key) {
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    cdp_redis_commandf(s->redis, key, seg__scanned, r, "SSCAN %s %s COUNT %" PRId64, key,
                       r->st.cursor, s->cfg.backfill_chunk);
    free(key);
}

/* The registry's size when a run starts. */
static void seg__total_reply(redisReply *reply, const char *err, void *ud)
{
    seg_bf_run *r = ud;
    if (!err && reply && reply->type == REDIS_REPLY_INTEGER)
        r->st.total += reply->integer;
    else
        r->failed++;
    if (--r->pending > 0)
        return;
    if (r->failed) {
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    snprintf(r->st.state, sizeof(r->st.state), "RUNNING");
    r->st.started_ms = seg_now(r->s);
    seg__record(r);
}

static void seg__progress_read(redisReply *reply, const char *err, void *ud)
{
    seg_bf_run *r = ud;
    char msg[SEG_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        seg_bf_status_load(&r->st, reply) != 0 || r->st.version != r->version) {
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    if (!strcmp(r->st.state, "DONE") || !strcmp(r->st.state, "FAILED")) {
        seg__finish_done(r);
        return;
    }
    r->local = SEG_BF_RUNNING;
    r->s->bf->running++;
    seg__running_gauge(r->s);
    if (!strcmp(r->st.state, "RUNNING")) {
        cdp_log(CDP_LOG_INFO, "backfill resumed", "{s:s,s:I,s:I}", "segment", r->id, "shard",
                (json_int_t)r->st.shard, "scanned", (json_int_t)r->st.scanned);
        seg__step(r);
        return;
    }
    /* PENDING: count the registry, then start */
    r->st.total = 0;
    r->failed = 0;
    r->pending = SEG_KNOWN_SHARDS;
    for (unsigned k = 0; k < SEG_KNOWN_SHARDS; k++) {
        char *key = seg_known_key(k);
        if (!key) {
            r->failed++;
            if (--r->pending == 0)
                seg__total_reply(NULL, "out of memory", r);
            continue;
        }
        cdp_redis_commandf(r->s->redis, key, seg__total_reply, r, "SCARD %s", key);
        free(key);
    }
}

static void seg__reset_done(redisReply *reply, const char *err, void *ud)
{
    seg_bf_run *r = ud;
    char msg[SEG_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK) {
        seg__run_end(r, SEG_BF_TRYING);
        return;
    }
    cdp_redis_commandf(r->s->redis, r->keys[SEG_SKEY_BF], seg__progress_read, r, "HGETALL %s",
                       r->keys[SEG_SKEY_BF]);
}

static void seg__leased(redisReply *reply, const char *err, void *ud)
{
    seg_bf_run *r = ud;
    if (err || !reply || reply->type != REDIS_REPLY_STATUS) {
        /* someone else holds it (nil) or Redis failed: try again next poll */
        seg__run_unlink(r);
        seg__run_free(r);
        return;
    }
    char ver[32];
    snprintf(ver, sizeof(ver), "%" PRId64, r->version);
    const char *keys[1] = { r->keys[SEG_SKEY_BF] };
    size_t klen[1] = { strlen(keys[0]) };
    const char *args[2] = { ver, "0" };
    size_t alen[2] = { strlen(ver), 1 };
    cdp_redis_eval(r->s->redis, r->s->scripts.bf_reset, seg__reset_done, r, 1, keys, klen, 2,
                   args, alen);
}

static seg_bf_run *seg__run_find(seg_backfills *b, const char *id)
{
    for (seg_bf_run *r = b->runs; r; r = r->next)
        if (!strcmp(r->id, id))
            return r;
    return NULL;
}

/* Tries to take the lease of segment d's backfill. */
static void seg__try(seg_svc *s, const seg_def *d)
{
    seg_bf_run *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->s = s;
    r->version = d->version;
    r->created_ms = d->created_ms;
    r->active = 1;
    int ok = (r->id = strdup(d->id)) != NULL;
    for (int k = 0; ok && k < SEG_SKEY_COUNT; k++)
        ok = (r->keys[k] = seg_skey(d->id, k)) != NULL;
    if (!ok) {
        seg__run_free(r);
        return;
    }
    r->next = s->bf->runs;
    s->bf->runs = r;
    cdp_redis_commandf(s->redis, r->keys[SEG_SKEY_LEASE], seg__leased, r,
                       "SET %s %s NX PX %" PRId64, r->keys[SEG_SKEY_LEASE], s->token,
                       s->cfg.backfill_lease_ms);
}

void seg_backfills_poll(seg_svc *s)
{
    if (s->stopping || !cdp_redis_is_up(s->redis))
        return;
    /* forget finished runs of versions or segments that are gone */
    for (seg_bf_run **p = &s->bf->runs; *p;) {
        seg_bf_run *r = *p;
        if (r->local == SEG_BF_DONE && !seg__run_current(r)) {
            *p = r->next;
            seg__run_free(r);
            continue;
        }
        p = &r->next;
    }
    for (size_t i = 0; i < seg_defs_count(s->defs); i++) {
        const seg_def *d = seg_defs_at(s->defs, i);
        seg_bf_run *r = seg__run_find(s->bf, d->id);
        if (r)
            continue; /* trying, running, or done at this version */
        seg__try(s, d);
    }
}

void seg_backfills_stop(seg_svc *s)
{
    (void)s; /* running steps see s->stopping and end */
}

void seg_backfills_free(seg_svc *s)
{
    if (!s->bf)
        return;
    while (s->bf->runs) {
        seg_bf_run *r = s->bf->runs;
        s->bf->runs = r->next;
        seg__run_free(r);
    }
    free(s->bf);
    s->bf = NULL;
}
