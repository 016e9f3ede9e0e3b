/* ing_pipeline: the log consumer (see ing_pipeline.h for the contract).
 *
 * Each shard runs a small state machine on the loop with at most one
 * asynchronous step in flight (`busy`): a Redis read, an identity or profile
 * call (or a set of one-event calls), or the finishing script. A batch stays
 * in memory until it is finished or abandoned, so a whole-batch failure
 * simply waits out the backoff and processes the same batch again.
 *
 * Where a batch comes from, in order of preference:
 *   1. this consumer's own pending entries (XREADGROUP ... <cursor> from 0),
 *      once after every (re)connect: a restart under the same name resumes;
 *   2. entries idle longer than CDP_PIPELINE_CLAIM_IDLE_MS in any consumer
 *      (XAUTOCLAIM), when the claim timer has made a round due: this is how
 *      a crashed replica's batch and this replica's failed events come back;
 *   3. new entries (XREADGROUP ... >, BLOCK) on the shard's own connection,
 *      so that blocking never delays the service's other Redis commands.
 *
 * Entries that fail by themselves are left pending; the claim round brings
 * them back after the idle time, which is the per-event retry delay. */
#include "ing_pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdp/v1/identity.pb-c.h"
#include "cdp/v1/profile.pb-c.h"
#include <jansson.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_rpc.h"
#include "cdp_service.h"
#include "ing_batch.h"

#define ING_CONSUMER_BUFSZ 128
#define ING_HOST_BUFSZ 64
#define ING_LABELS_BUFSZ 32
#define ING_NUM_BUFSZ 24
#define ING_ERR_BUFSZ 512
#define ING_MS_PER_S 1000.0
/* Most arguments of a command the pipeline sends (XREADGROUP ... BLOCK). */
#define ING_MAX_ARGV 16

typedef struct ing_shard ing_shard;

typedef enum {
    ING_STEP_RESOLVE,
    ING_STEP_APPLY,
} ing_step;

struct ing_shard {
    ing_pipeline *p;
    unsigned index;
    char key[ING_LOG_KEY_BUFSZ];
    char labels[ING_LABELS_BUFSZ];    /* shard="<n>" */
    cdp_redis *blk;                   /* blocking reads only */
    int blk_closed;
    uv_timer_t timer;                 /* backoff */
    int busy;                         /* an asynchronous step is in flight */
    int in_backoff;
    int group_ready;
    int own_pending;                  /* still draining our own pending entries */
    char own_cursor[ING_STREAM_ID_BUFSZ];
    int claim_due;
    char claim_cursor[ING_STREAM_ID_BUFSZ];
    int backoff_ms;
    int stale;                        /* Redis came back mid-step: drop the batch */
    ing_batch batch;
    size_t *idx;                      /* entries of the current step */
    size_t n_idx;
    int singles_pending;              /* one-event calls in flight */
    int singles_transient;            /* one of them failed transiently */
    char singles_err[ING_ERR_BUFSZ];
    ing_log_finish_result fin;
    const char **done_ids;
    ing_log_failure *fails;
};

struct ing_pipeline {
    uv_loop_t *loop;
    cdp_redis *redis;
    ing_log *log;
    ing_pipeline_config cfg;
    cdp_rpc_channel *identity;
    cdp_rpc_channel *profile;
    char consumer[ING_CONSUMER_BUFSZ];
    ing_shard *shards;
    unsigned n_shards;
    uv_timer_t claim_timer;
    int claim_timer_started;
    int redis_up;
    int stopping;
    int closing_timers;
    int timers_open;
    void (*stop_done)(void *ud);
    void *stop_ud;
};

/* One one-event call of a step that is looking for the event a service
 * rejected. */
typedef struct {
    ing_shard *sh;
    size_t entry;
    ing_step step;
} ing__single;

static void ing__next(ing_shard *sh);
static void ing__maybe_stopped(ing_pipeline *p);
static void ing__apply_all(ing_shard *sh);
static void ing__finish(ing_shard *sh);
static void ing__on_backoff(uv_timer_t *t);

/* ------------------------------------------------------------------ small helpers */

static void ing__count(const char *result, long long n)
{
    char labels[ING_LABELS_BUFSZ];
    if (n <= 0)
        return;
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    cdp_metrics_inc(ING_PIPELINE_METRIC_EVENTS, labels, (double)n);
}

static const char *ing__reply_err(const redisReply *reply, const char *err)
{
    if (err)
        return err;
    if (reply && reply->type == REDIS_REPLY_ERROR && reply->str)
        return reply->str;
    return "unexpected reply";
}

/* A step failed as a whole: keep the batch, wait, and try it again. */
__attribute__((format(printf, 2, 3)))
static void ing__backoff(ing_shard *sh, const char *fmt, ...)
{
    ing_pipeline *p = sh->p;
    char why[ING_ERR_BUFSZ];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (p->stopping) {
        ing_batch_clear(&sh->batch);
        ing__maybe_stopped(p);
        return;
    }
    sh->backoff_ms = ing_backoff_next(sh->backoff_ms, p->cfg.backoff_min_ms, p->cfg.backoff_max_ms);
    cdp_log(CDP_LOG_WARN, "pipeline step failed; retrying", "{s:i,s:s,s:i,s:i}", "shard",
            (int)sh->index, "error", why, "backoff_ms", sh->backoff_ms, "batch", (int)sh->batch.n);
    ing_batch_reset(&sh->batch);
    sh->in_backoff = 1;
    uv_timer_start(&sh->timer, ing__on_backoff, (uint64_t)sh->backoff_ms, 0);
}

/* ------------------------------------------------------------------ reading */

static void ing__take_entries(ing_shard *sh, const redisReply *entries)
{
    if (ing_batch_add_entries(&sh->batch, entries) < 0) {
        cdp_log(CDP_LOG_ERROR, "malformed stream entries", "{s:i}", "shard", (int)sh->index);
        ing_batch_clear(&sh->batch);
        return;
    }
    int64_t oldest = ing_batch_oldest_received_ms(&sh->batch);
    if (oldest > 0)
        cdp_metrics_set(ING_PIPELINE_METRIC_LAG, sh->labels,
                        (double)(cdp_now_ms() - oldest) / ING_MS_PER_S);
}

/* The entries array of an XREADGROUP reply [[key, entries]], or NULL. */
static const redisReply *ing__xread_entries(const redisReply *reply)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)
        return NULL;
    const redisReply *s = reply->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
        return NULL;
    return s->element[1]->type == REDIS_REPLY_ARRAY ? s->element[1] : NULL;
}

/* Called first by every step's callback: the step is over. Returns 1 when
 * the callback must not go on (stopping, or the batch went stale). */
static int ing__step_done(ing_shard *sh)
{
    sh->busy = 0;
    if (sh->p->stopping) {
        ing_batch_clear(&sh->batch);
        ing__maybe_stopped(sh->p);
        return 1;
    }
    if (sh->stale) {
        sh->stale = 0;
        ing_batch_clear(&sh->batch);
        ing__next(sh);
        return 1;
    }
    return 0;
}

static int ing__read_failed(ing_shard *sh, const redisReply *reply, const char *err)
{
    if (reply && reply->type != REDIS_REPLY_ERROR)
        return 0;
    const char *why = ing__reply_err(reply, err);
    if (strstr(why, "NOGROUP"))
        sh->group_ready = 0;
    ing__backoff(sh, "read: %s", why);
    return 1;
}

static void ing__on_new(redisReply *reply, const char *err, void *ud)
{
    ing_shard *sh = ud;
    if (ing__step_done(sh) || ing__read_failed(sh, reply, err))
        return;
    const redisReply *entries = ing__xread_entries(reply);
    if (entries && entries->elements > 0)
        ing__take_entries(sh, entries);
    else
        cdp_metrics_set(ING_PIPELINE_METRIC_LAG, sh->labels, 0);
    ing__next(sh);
}

static void ing__on_own(redisReply *reply, const char *err, void *ud)
{
    ing_shard *sh = ud;
    if (ing__step_done(sh) || ing__read_failed(sh, reply, err))
        return;
    const redisReply *entries = ing__xread_entries(reply);
    if (!entries || entries->elements == 0) {
        sh->own_pending = 0;
    } else {
        const redisReply *last = entries->element[entries->elements - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements > 0 && last->element[0]->str)
            snprintf(sh->own_cursor, sizeof sh->own_cursor, "%s", last->element[0]->str);
        ing__take_entries(sh, entries);
    }
    ing__next(sh);
}

static void ing__on_claim(redisReply *reply, const char *err, void *ud)
{
    ing_shard *sh = ud;
    if (ing__step_done(sh) || ing__read_failed(sh, reply, err))
        return;
    /* Redis 7: [next cursor, entries, deleted ids]. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        ing__backoff(sh, "claim: unexpected reply");
        return;
    }
    snprintf(sh->claim_cursor, sizeof sh->claim_cursor, "%s", reply->element[0]->str);
    if (strcmp(sh->claim_cursor, "0-0") == 0)
        sh->claim_due = 0;
    if (reply->element[1]->elements > 0) {
        cdp_log(CDP_LOG_INFO, "claimed idle entries", "{s:i,s:i}", "shard", (int)sh->index,
                "entries", (int)reply->element[1]->elements);
        ing__take_entries(sh, reply->element[1]);
    }
    ing__next(sh);
}

static void ing__on_group(redisReply *reply, const char *err, void *ud)
{
    ing_shard *sh = ud;
    if (ing__step_done(sh))
        return;
    if (!reply || (reply->type == REDIS_REPLY_ERROR && !strstr(reply->str, "BUSYGROUP"))) {
        ing__backoff(sh, "create group: %s", ing__reply_err(reply, err));
        return;
    }
    sh->group_ready = 1;
    ing__next(sh);
}

static void ing__cmd(ing_shard *sh, cdp_redis *r, cdp_redis_cb cb, int argc, const char **argv)
{
    size_t lens[ING_MAX_ARGV];
    for (int i = 0; i < argc && i < ING_MAX_ARGV; i++)
        lens[i] = strlen(argv[i]);
    sh->busy = 1;
    cdp_redis_command(r, sh->key, strlen(sh->key), cb, sh, argc, argv, lens);
}

static void ing__create_group(ing_shard *sh)
{
    const char *argv[] = {"XGROUP", "CREATE", sh->key, ING_LOG_GROUP, "0", "MKSTREAM"};
    ing__cmd(sh, sh->p->redis, ing__on_group, 6, argv);
}

static void ing__read_own(ing_shard *sh)
{
    char count[ING_NUM_BUFSZ];
    snprintf(count, sizeof count, "%d", sh->p->cfg.batch);
    const char *argv[] = {"XREADGROUP", "GROUP", ING_LOG_GROUP, sh->p->consumer, "COUNT", count,
                          "STREAMS", sh->key, sh->own_cursor};
    ing__cmd(sh, sh->p->redis, ing__on_own, 9, argv);
}

static void ing__claim(ing_shard *sh)
{
    char count[ING_NUM_BUFSZ], idle[ING_NUM_BUFSZ];
    snprintf(count, sizeof count, "%d", sh->p->cfg.batch);
    snprintf(idle, sizeof idle, "%d", sh->p->cfg.claim_idle_ms);
    const char *argv[] = {"XAUTOCLAIM", sh->key, ING_LOG_GROUP, sh->p->consumer, idle,
                          sh->claim_cursor, "COUNT", count};
    ing__cmd(sh, sh->p->redis, ing__on_claim, 8, argv);
}

static void ing__read_new(ing_shard *sh)
{
    char count[ING_NUM_BUFSZ], block[ING_NUM_BUFSZ];
    snprintf(count, sizeof count, "%d", sh->p->cfg.batch);
    snprintf(block, sizeof block, "%d", sh->p->cfg.block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", ING_LOG_GROUP, sh->p->consumer, "COUNT", count,
                          "BLOCK", block, "STREAMS", sh->key, ">"};
    ing__cmd(sh, sh->blk, ing__on_new, 11, argv);
}

/* ------------------------------------------------------------------ identity and profile */

static const char *ing__step_name(ing_step step)
{
    return step == ING_STEP_RESOLVE ? "identity" : "profile";
}

/* Starts one call of `step` over entries idx[0..n); ud is handed to cb. */
static int ing__call(ing_shard *sh, ing_step step, const size_t *idx, size_t n, cdp_rpc_done cb,
                     void *ud)
{
    ing_pipeline *p = sh->p;
    int rc = -1;
    if (step == ING_STEP_RESOLVE) {
        ing_resolve_build rb;
        if (ing_resolve_build_make(&rb, &sh->batch, idx, n) != 0)
            return -1;
        if (p->identity)
            rc = cdp_rpc_unary(p->identity, &cdp__v1__identity__descriptor, "ResolveBatch",
                               &rb.req.base, p->cfg.rpc_deadline_ms, cb, ud);
        ing_resolve_build_free(&rb);
    } else {
        ing_apply_build ab;
        if (ing_apply_build_make(&ab, &sh->batch, idx, n) != 0)
            return -1;
        if (p->profile)
            rc = cdp_rpc_unary(p->profile, &cdp__v1__profile__descriptor, "ApplyEvents",
                               &ab.req.base, p->cfg.rpc_deadline_ms, cb, ud);
        ing_apply_build_free(&ab);
    }
    return rc;
}

/* The step's answer for one entry that was sent alone. Returns -1 when the
 * answer does not fit the request (treated as a whole-batch failure). */
static int ing__take_one(ing_shard *sh, ing_step step, size_t entry, const ProtobufCMessage *resp)
{
    if (step == ING_STEP_RESOLVE)
        return ing_batch_take_resolve(&sh->batch, &entry, 1,
                                      (const Cdp__V1__ResolveBatchResponse *)resp);
    sh->batch.e[entry].state = ING_ENTRY_DONE;
    return 0;
}

static void ing__after_step(ing_shard *sh, ing_step step)
{
    if (step == ING_STEP_RESOLVE)
        ing__apply_all(sh);
    else
        ing__finish(sh);
}

static void ing__on_single(grpc_status_code code, const char *details,
                           const ProtobufCMessage *resp, void *ud)
{
    ing__single *one = ud;
    ing_shard *sh = one->sh;
    ing_entry *e = &sh->batch.e[one->entry];
    if (!sh->p->stopping) {
        if (code == GRPC_STATUS_OK) {
            if (ing__take_one(sh, one->step, one->entry, resp) != 0 && !sh->singles_transient) {
                sh->singles_transient = 1;
                snprintf(sh->singles_err, sizeof sh->singles_err, "%s: malformed answer",
                         ing__step_name(one->step));
            }
        } else if (ing_status_is_rejection(code)) {
            ing_entry_fail(e, "%s: %s", ing__step_name(one->step), details ? details : "rejected");
        } else if (!sh->singles_transient) {
            sh->singles_transient = 1;
            snprintf(sh->singles_err, sizeof sh->singles_err, "%s: %s", ing__step_name(one->step),
                     details ? details : "failed");
        }
    }
    ing_step step = one->step;
    free(one);
    if (--sh->singles_pending > 0)
        return;
    if (ing__step_done(sh))
        return;
    if (sh->singles_transient) {
        ing__backoff(sh, "%s", sh->singles_err);
        return;
    }
    ing__after_step(sh, step);
}

/* A service rejected the batch: send its events one by one so that only
 * the culprit fails. */
static void ing__singles(ing_shard *sh, ing_step step)
{
    size_t n = sh->n_idx;
    sh->singles_pending = 1; /* held while starting */
    sh->singles_transient = 0;
    sh->busy = 1;
    for (size_t k = 0; k < n; k++) {
        ing__single *one = calloc(1, sizeof *one);
        if (!one) {
            sh->singles_transient = 1;
            snprintf(sh->singles_err, sizeof sh->singles_err, "out of memory");
            break;
        }
        one->sh = sh;
        one->entry = sh->idx[k];
        one->step = step;
        sh->singles_pending++;
        if (ing__call(sh, step, &one->entry, 1, ing__on_single, one) != 0) {
            sh->singles_pending--;
            free(one);
            sh->singles_transient = 1;
            snprintf(sh->singles_err, sizeof sh->singles_err, "%s: call not started",
                     ing__step_name(step));
            break;
        }
    }
    if (--sh->singles_pending > 0)
        return;
    if (ing__step_done(sh))
        return;
    if (sh->singles_transient)
        ing__backoff(sh, "%s", sh->singles_err);
    else
        ing__after_step(sh, step);
}

/* A whole-step answer. OK: take it. A rejection: narrow it down (or fail
 * the lone event). Anything else: retry the batch later. */
static void ing__on_step(ing_shard *sh, ing_step step, grpc_status_code code, const char *details,
                         const ProtobufCMessage *resp)
{
    if (ing__step_done(sh))
        return;
    if (code == GRPC_STATUS_OK) {
        if (step == ING_STEP_RESOLVE &&
            ing_batch_take_resolve(&sh->batch, sh->idx, sh->n_idx,
                                   (const Cdp__V1__ResolveBatchResponse *)resp) != 0) {
            ing__backoff(sh, "identity answered a different number of results");
            return;
        }
        if (step == ING_STEP_APPLY) {
            /* Profile must account for every event it was sent; anything
             * else (a truncated request, a version skew) is not done. */
            const Cdp__V1__ApplyEventsResponse *ar = (const Cdp__V1__ApplyEventsResponse *)resp;
            if ((size_t)ar->applied + (size_t)ar->duplicates != sh->n_idx) {
                ing__backoff(sh, "profile accounted for %d of %zu events",
                             (int)(ar->applied + ar->duplicates), sh->n_idx);
                return;
            }
        }
        if (step == ING_STEP_APPLY)
            for (size_t k = 0; k < sh->n_idx; k++)
                sh->batch.e[sh->idx[k]].state = ING_ENTRY_DONE;
        ing__after_step(sh, step);
        return;
    }
    if (ing_status_is_rejection(code) && sh->n_idx > 1) {
        ing__singles(sh, step);
        return;
    }
    if (ing_status_is_rejection(code)) {
        ing_entry_fail(&sh->batch.e[sh->idx[0]], "%s: %s", ing__step_name(step),
                       details ? details : "rejected");
        ing__after_step(sh, step);
        return;
    }
    ing__backoff(sh, "%s: %s (%d)", ing__step_name(step), details ? details : "", (int)code);
}

static void ing__on_resolved(grpc_status_code code, const char *details,
                             const ProtobufCMessage *resp, void *ud)
{
    ing__on_step(ud, ING_STEP_RESOLVE, code, details, resp);
}

static void ing__on_applied(grpc_status_code code, const char *details,
                            const ProtobufCMessage *resp, void *ud)
{
    ing__on_step(ud, ING_STEP_APPLY, code, details, resp);
}

static void ing__start_step(ing_shard *sh, ing_step step)
{
    sh->n_idx = ing_batch_live(&sh->batch, sh->idx);
    if (sh->n_idx == 0) {
        ing__after_step(sh, step);
        return;
    }
    sh->busy = 1;
    cdp_rpc_done cb = step == ING_STEP_RESOLVE ? ing__on_resolved : ing__on_applied;
    if (ing__call(sh, step, sh->idx, sh->n_idx, cb, sh) != 0) {
        sh->busy = 0;
        ing__backoff(sh, "%s: call not started", ing__step_name(step));
    }
}

static void ing__apply_all(ing_shard *sh)
{
    ing__start_step(sh, ING_STEP_APPLY);
}

static void ing__process(ing_shard *sh)
{
    size_t *idx = realloc(sh->idx, (sh->batch.n ? sh->batch.n : 1) * sizeof *idx);
    if (!idx) {
        ing__backoff(sh, "out of memory");
        return;
    }
    sh->idx = idx;
    ing_batch_reset(&sh->batch);
    ing__start_step(sh, ING_STEP_RESOLVE);
}

/* ------------------------------------------------------------------ finishing */

static void ing__on_finished(ing_log_rc rc, const char *err, void *ud)
{
    ing_shard *sh = ud;
    sh->busy = 0;
    sh->stale = 0; /* the batch is cleared below either way */
    if (rc != ING_LOG_OK) {
        /* Nothing was acknowledged: the entries stay pending and come back
         * through the claim loop; downstream application is idempotent. */
        cdp_log(CDP_LOG_WARN, "cannot finish batch; entries stay pending", "{s:i,s:s}", "shard",
                (int)sh->index, "error", err ? err : "");
        ing_batch_clear(&sh->batch);
        ing__backoff(sh, "finish: %s", err ? err : "");
        return;
    }
    long long applied = 0;
    for (size_t i = 0; i < sh->batch.n; i++)
        if (sh->batch.e[i].state == ING_ENTRY_DONE && sh->batch.e[i].ev)
            applied++;
    ing__count("applied", applied);
    ing__count("retry", sh->fin.retrying);
    ing__count("dead_letter", sh->fin.dead);
    if (sh->fin.dead > 0)
        cdp_log(CDP_LOG_WARN, "events dead-lettered", "{s:i,s:I}", "shard", (int)sh->index,
                "events", (json_int_t)sh->fin.dead);
    for (size_t i = 0; i < sh->batch.n; i++)
        if (sh->batch.e[i].state == ING_ENTRY_FAILED)
            cdp_log(CDP_LOG_INFO, "event failed in the pipeline", "{s:s,s:s,s:s}", "message_id",
                    sh->batch.e[i].message_id, "stream_id", sh->batch.e[i].stream_id, "reason",
                    sh->batch.e[i].reason);
    sh->backoff_ms = 0;
    ing_batch_clear(&sh->batch);
    if (sh->p->stopping) {
        ing__maybe_stopped(sh->p);
        return;
    }
    ing__next(sh);
}

static void ing__finish(ing_shard *sh)
{
    ing_pipeline *p = sh->p;
    size_t n = sh->batch.n, n_done = 0, n_fail = 0;
    const char **done = realloc(sh->done_ids, (n ? n : 1) * sizeof *done);
    if (done)
        sh->done_ids = done;
    ing_log_failure *fails = realloc(sh->fails, (n ? n : 1) * sizeof *fails);
    if (fails)
        sh->fails = fails;
    if (!done || !fails) {
        ing__backoff(sh, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ing_entry *e = &sh->batch.e[i];
        if (e->state == ING_ENTRY_DONE) {
            done[n_done++] = e->stream_id;
        } else if (e->state == ING_ENTRY_FAILED) {
            ing_log_failure *f = &fails[n_fail++];
            f->stream_id = e->stream_id;
            f->message_id = e->message_id;
            f->reason = e->reason;
            f->data = e->data;
            f->len = e->len;
            f->force = e->force;
        }
    }
    sh->busy = 1;
    ing_log_finish(p->log, sh->index, done, n_done, fails, n_fail, p->cfg.max_attempts,
                   cdp_now_ms(), &sh->fin, ing__on_finished, sh);
}

/* ------------------------------------------------------------------ the shard loop */

static void ing__next(ing_shard *sh)
{
    ing_pipeline *p = sh->p;
    if (sh->busy || sh->in_backoff)
        return;
    if (p->stopping) {
        ing_batch_clear(&sh->batch);
        ing__maybe_stopped(p);
        return;
    }
    if (!p->redis_up)
        return;
    if (sh->batch.n > 0)
        ing__process(sh);
    else if (!sh->group_ready)
        ing__create_group(sh);
    else if (sh->own_pending)
        ing__read_own(sh);
    else if (sh->claim_due)
        ing__claim(sh);
    else
        ing__read_new(sh);
}

static void ing__on_backoff(uv_timer_t *t)
{
    ing_shard *sh = t->data;
    sh->in_backoff = 0;
    ing__next(sh);
}

static void ing__on_claim_timer(uv_timer_t *t)
{
    ing_pipeline *p = t->data;
    for (unsigned s = 0; s < p->n_shards; s++) {
        ing_shard *sh = &p->shards[s];
        if (!sh->claim_due) {
            sh->claim_due = 1;
            strcpy(sh->claim_cursor, "0-0");
        }
    }
}

/* ------------------------------------------------------------------ lifecycle */

static void ing__consumer_name(char *out, size_t outlen)
{
    char host[ING_HOST_BUFSZ];
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(out, outlen, "%s-%ld", host, (long)getpid());
}

static int ing__shard_init(ing_pipeline *p, ing_shard *sh, unsigned index)
{
    sh->p = p;
    sh->index = index;
    ing_batch_init(&sh->batch);
    ing_log_key(sh->key, sizeof sh->key, index, "events");
    snprintf(sh->labels, sizeof sh->labels, "shard=\"%u\"", index);
    strcpy(sh->own_cursor, "0");
    strcpy(sh->claim_cursor, "0-0");
    uv_timer_init(p->loop, &sh->timer);
    sh->timer.data = sh;
    p->timers_open++;
    cdp_redis_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.addrs = p->cfg.redis_addrs;
    ro.connect_timeout_ms = p->cfg.redis_connect_timeout_ms;
    /* A blocked read legitimately takes block_ms before it answers. */
    ro.command_timeout_ms = p->cfg.redis_command_timeout_ms + p->cfg.block_ms;
    sh->blk = cdp_redis_new(p->loop, &ro);
    if (!sh->blk) {
        sh->blk_closed = 1;
        return -1;
    }
    cdp_redis_start(sh->blk);
    return 0;
}

ing_pipeline *ing_pipeline_new(uv_loop_t *loop, cdp_redis *redis, ing_log *log,
                               const ing_pipeline_config *cfg)
{
    ing_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->redis = redis;
    p->log = log;
    p->cfg = *cfg;
    p->n_shards = log->cfg.shards;
    ing__consumer_name(p->consumer, sizeof p->consumer);
    uv_timer_init(loop, &p->claim_timer);
    p->claim_timer.data = p;
    p->timers_open = 1;
    p->shards = calloc(p->n_shards, sizeof *p->shards);
    p->identity = cdp_rpc_channel_new(loop, cfg->identity_addr, NULL);
    p->profile = cdp_rpc_channel_new(loop, cfg->profile_addr, NULL);
    if (!p->shards || !p->identity || !p->profile) {
        cdp_log(CDP_LOG_ERROR, "cannot create the pipeline", "{s:s,s:s}", "identity",
                cfg->identity_addr, "profile", cfg->profile_addr);
        return NULL;
    }
    for (unsigned s = 0; s < p->n_shards; s++)
        if (ing__shard_init(p, &p->shards[s], s) != 0) {
            cdp_log(CDP_LOG_ERROR, "cannot create a pipeline Redis client", "{s:s}", "redis",
                    cfg->redis_addrs);
            return NULL;
        }
    cdp_log(CDP_LOG_INFO, "pipeline ready", "{s:s,s:i,s:i,s:i}", "consumer", p->consumer, "shards",
            (int)p->n_shards, "batch", p->cfg.batch, "max_attempts", p->cfg.max_attempts);
    return p;
}

void ing_pipeline_set_redis_up(ing_pipeline *p, int up)
{
    if (p->stopping)
        return;
    p->redis_up = up;
    cdp_log(up ? CDP_LOG_INFO : CDP_LOG_WARN, up ? "pipeline resumed" : "pipeline paused", NULL);
    if (!up)
        return;
    if (!p->claim_timer_started) {
        uv_timer_start(&p->claim_timer, ing__on_claim_timer, (uint64_t)p->cfg.claim_interval_ms,
                       (uint64_t)p->cfg.claim_interval_ms);
        p->claim_timer_started = 1;
    }
    for (unsigned s = 0; s < p->n_shards; s++) {
        ing_shard *sh = &p->shards[s];
        /* After any outage: the group may be gone (a Redis restarted
         * empty), and our own and abandoned entries are worth a look. */
        sh->group_ready = 0;
        sh->own_pending = 1;
        strcpy(sh->own_cursor, "0");
        sh->claim_due = 1;
        strcpy(sh->claim_cursor, "0-0");
        if (sh->in_backoff) {
            uv_timer_stop(&sh->timer);
            sh->in_backoff = 0;
        }
        /* A batch read before the outage is read again from the group (its
         * entries are still pending to us, or gone with a Redis that lost
         * its data): never finish entries Redis may no longer hold. */
        if (sh->busy)
            sh->stale = 1;
        else
            ing_batch_clear(&sh->batch);
        ing__next(sh);
    }
}

static void ing__blk_closed(void *ud)
{
    ing_shard *sh = ud;
    sh->blk_closed = 1;
    sh->blk = NULL;
    ing__maybe_stopped(sh->p);
}

/* Every timer's data is the pipeline once closing starts. */
static void ing__handle_closed(uv_handle_t *h)
{
    ing_pipeline *p = h->data;
    if (--p->timers_open > 0)
        return;
    cdp_log(CDP_LOG_INFO, "pipeline stopped", NULL);
    if (p->stop_done)
        p->stop_done(p->stop_ud);
}

static void ing__maybe_stopped(ing_pipeline *p)
{
    if (!p->stopping || p->closing_timers)
        return;
    for (unsigned s = 0; s < p->n_shards; s++)
        if (p->shards[s].busy || !p->shards[s].blk_closed)
            return;
    p->closing_timers = 1;
    uv_close((uv_handle_t *)&p->claim_timer, ing__handle_closed);
    for (unsigned s = 0; s < p->n_shards; s++) {
        p->shards[s].timer.data = p;
        uv_close((uv_handle_t *)&p->shards[s].timer, ing__handle_closed);
    }
}

void ing_pipeline_stop(ing_pipeline *p, void (*done)(void *ud), void *ud)
{
    p->stopping = 1;
    p->stop_done = done;
    p->stop_ud = ud;
    cdp_log(CDP_LOG_INFO, "pipeline stopping", NULL);
    uv_timer_stop(&p->claim_timer);
    for (unsigned s = 0; s < p->n_shards; s++) {
        uv_timer_stop(&p->shards[s].timer);
        p->shards[s].in_backoff = 0;
    }
    /* In-flight calls finish as CANCELLED, blocked reads as "closing"; their
     * batches are abandoned and stay pending in the group. */
    cdp_rpc_channel_close(p->identity);
    cdp_rpc_channel_close(p->profile);
    p->identity = p->profile = NULL;
    for (unsigned s = 0; s < p->n_shards; s++) {
        ing_shard *sh = &p->shards[s];
        if (sh->blk)
            cdp_redis_close(sh->blk, ing__blk_closed, sh);
        else
            sh->blk_closed = 1;
    }
    ing__maybe_stopped(p);
}

void ing_pipeline_free(ing_pipeline *p)
{
    if (!p)
        return;
    for (unsigned s = 0; p->shards && s < p->n_shards; s++) {
        ing_batch_free(&p->shards[s].batch);
        free(p->shards[s].idx);
        free(p->shards[s].done_ids);
        free(p->shards[s].fails);
    }
    free(p->shards);
    free(p);
}
