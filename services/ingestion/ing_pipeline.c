/* ing_pipeline: the log consumer (see ing_pipeline.h for the contract).
 *
 * Each log shard has CDP_PIPELINE_LANES lanes. A lane is a consumer of the
 * group under its own name and a small state machine on the loop with at
 * most one asynchronous step in flight (`busy`): a Redis read, an identity
 * or profile call (or a set of one-event calls), or the finishing script. A
 * batch stays in its lane until it is finished or abandoned, so a
 * whole-batch failure simply waits out the backoff and processes the same
 * batch again. Lanes share nothing but the shard's key and the recovery
 * flag; Redis hands each new entry to one of them.
 *
 * Where a lane's batch comes from:
 *   - every lane: new entries (XREADGROUP ... >, BLOCK) on the lane's own
 *     connection, so that blocking never delays the service's other Redis
 *     commands, and a waiting lane takes new entries the moment they land;
 *   - lane 0 only, before new entries: the replays. After every
 *     (re)connect, the pending entries of every lane name (XREADGROUP ...
 *     <cursor> from 0, one name after the other), while the other lanes of
 *     the shard wait; and, whenever the claim timer has made a round due,
 *     entries idle longer than CDP_PIPELINE_CLAIM_IDLE_MS in any consumer
 *     (XAUTOCLAIM): a crashed replica's batches and this replica's failed
 *     events come back this way.
 *
 * Replays are collected into one batch (up to lanes x batch entries, and
 * at most what one ApplyEvents takes) and applied in one call. A process
 * that stops uncleanly can leave several batches half done: one applied
 * but not acknowledged, a later one resolved (identity recorded a merge)
 * but not applied. Replayed separately, the first would be resolved to the
 * survivor and applied there before the later batch folds the loser, which
 * already counted it, into the survivor. In one call profile folds every
 * merge first, so the replay is a duplicate (docs/ingestion.md). Own
 * pending entries are all read before the batch is processed; entries a
 * claim round finds are held until a later round finds nothing more, since
 * a dead replica's batches become idle at slightly different times.
 *
 * Entries that fail by themselves are left pending; the claim round brings
 * them back after the idle time, which is the per-event retry delay. */
#include "ing_pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdp/v1/consent.pb-c.h"
#include "cdp/v1/identity.pb-c.h"
#include "cdp/v1/profile.pb-c.h"
#include "cdp/v1/segmentation.pb-c.h"
#include <jansson.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_rpc.h"
#include "cdp_service.h"
#include "ing_batch.h"
#include "ing_touch.h"

#define ING_CONSUMER_BUFSZ 128
/* The process' name, '-' and a lane number. */
#define ING_LANE_CONSUMER_BUFSZ (ING_CONSUMER_BUFSZ + 16)
#define ING_HOST_BUFSZ 64
#define ING_LABELS_BUFSZ 32
#define ING_NUM_BUFSZ 24
#define ING_ERR_BUFSZ 512
#define ING_MS_PER_S 1000.0
/* Most arguments of a command the pipeline sends (XREADGROUP ... BLOCK). */
#define ING_MAX_ARGV 16
/* The lane that replays (own pending entries, claim rounds). */
#define ING_REPLAY_LANE 0

typedef struct ing_lane ing_lane;

/* The steps of a batch, in order. CONSENT and EVALUATE run on the entries
 * profile applied (APPLIED); EVALUATE marks them DONE. */
typedef enum {
    ING_STEP_RESOLVE,
    ING_STEP_APPLY,
    ING_STEP_CONSENT,
    ING_STEP_EVALUATE,
} ing_step;

/* What the lanes of one log shard share. */
typedef struct {
    unsigned index;
    char key[ING_LOG_KEY_BUFSZ];
    char labels[ING_LABELS_BUFSZ];    /* shard="<n>" */
    ing_lane *lanes;                  /* cfg.lanes of them */
    int recovering;                   /* replay lane is replaying own pending entries */
} ing_shard;

struct ing_lane {
    ing_pipeline *p;
    ing_shard *sh;
    unsigned no;                      /* 0..lanes-1 */
    char consumer[ING_LANE_CONSUMER_BUFSZ];
    cdp_redis *blk;                   /* blocking reads only */
    int blk_closed;
    uv_timer_t timer;                 /* backoff */
    int busy;                         /* an asynchronous step is in flight */
    int in_backoff;
    int group_ready;
    int stale;                        /* Redis came back mid-step: drop the batch */
    int backoff_ms;
    /* Replay lane only. */
    int own_pending;                  /* still reading lanes' own pending entries */
    unsigned own_lane;                /* whose (lane number) */
    char own_cursor[ING_STREAM_ID_BUFSZ];
    int claim_due;
    char claim_cursor[ING_STREAM_ID_BUFSZ];
    int claim_found;                  /* the current claim round added entries */
    int claim_hold;                   /* the last round did: wait for one more */
    int replaying;                    /* the batch holds replays (own or claimed) */
    /* The batch and its current step. */
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
    cdp_rpc_channel *consent;         /* NULL when CDP_CONSENT_ADDR is empty */
    cdp_rpc_channel *segmentation;    /* NULL when CDP_SEGMENTATION_ADDR is empty */
    char consumer[ING_CONSUMER_BUFSZ]; /* <host>-<pid>; lanes add -<lane> */
    ing_shard *shards;
    unsigned n_shards;
    ing_lane *lanes;                  /* n_shards x cfg.lanes, shard-major */
    unsigned n_lanes;                 /* all of them */
    size_t replay_cap;                /* most entries of one replay batch */
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
    ing_lane *ln;
    size_t entry;
    ing_step step;
} ing__single;

static void ing__next(ing_lane *ln);
static void ing__maybe_stopped(ing_pipeline *p);
static void ing__start_step(ing_lane *ln, ing_step step);
static void ing__finish(ing_lane *ln);
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

static int ing__is_replay_lane(const ing_lane *ln)
{
    return ln->no == ING_REPLAY_LANE;
}

/* A step failed as a whole: keep the batch, wait, and try it again. */
__attribute__((format(printf, 2, 3)))
static void ing__backoff(ing_lane *ln, const char *fmt, ...)
{
    ing_pipeline *p = ln->p;
    char why[ING_ERR_BUFSZ];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (p->stopping) {
        ing_batch_clear(&ln->batch);
        ing__maybe_stopped(p);
        return;
    }
    ln->backoff_ms = ing_backoff_next(ln->backoff_ms, p->cfg.backoff_min_ms, p->cfg.backoff_max_ms);
    cdp_log(CDP_LOG_WARN, "pipeline step failed; retrying", "{s:i,s:i,s:s,s:i,s:i}", "shard",
            (int)ln->sh->index, "lane", (int)ln->no, "error", why, "backoff_ms", ln->backoff_ms,
            "batch", (int)ln->batch.n);
    ing_batch_reset(&ln->batch);
    ln->in_backoff = 1;
    uv_timer_start(&ln->timer, ing__on_backoff, (uint64_t)ln->backoff_ms, 0);
}

/* ------------------------------------------------------------------ reading */

/* Adds a read's entries to the lane's batch, leaving out those some lane of
 * the shard already holds when `except_held` (claims: an entry a lane has
 * been retrying for longer than the idle time is still that lane's). */
static void ing__take_entries(ing_lane *ln, const redisReply *entries, int except_held)
{
    ing_pipeline *p = ln->p;
    const ing_batch *held[ING_MAX_PIPELINE_LANES];
    size_t n_held = 0;
    for (int l = 0; except_held && l < p->cfg.lanes; l++)
        held[n_held++] = &ln->sh->lanes[l].batch;
    if (ing_batch_add_entries_except(&ln->batch, entries, held, n_held) < 0) {
        cdp_log(CDP_LOG_ERROR, "malformed stream entries", "{s:i,s:i}", "shard", (int)ln->sh->index,
                "lane", (int)ln->no);
        ing_batch_clear(&ln->batch);
        return;
    }
    int64_t oldest = ing_batch_oldest_received_ms(&ln->batch);
    if (oldest > 0)
        cdp_metrics_set(ING_PIPELINE_METRIC_LAG, ln->sh->labels,
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
static int ing__step_done(ing_lane *ln)
{
    ln->busy = 0;
    if (ln->p->stopping) {
        ing_batch_clear(&ln->batch);
        ing__maybe_stopped(ln->p);
        return 1;
    }
    if (ln->stale) {
        ln->stale = 0;
        ing_batch_clear(&ln->batch);
        ing__next(ln);
        return 1;
    }
    return 0;
}

static int ing__read_failed(ing_lane *ln, const redisReply *reply, const char *err)
{
    if (reply && reply->type != REDIS_REPLY_ERROR)
        return 0;
    const char *why = ing__reply_err(reply, err);
    if (strstr(why, "NOGROUP"))
        ln->group_ready = 0;
    ing__backoff(ln, "read: %s", why);
    return 1;
}

static void ing__on_new(redisReply *reply, const char *err, void *ud)
{
    ing_lane *ln = ud;
    if (ing__step_done(ln) || ing__read_failed(ln, reply, err))
        return;
    const redisReply *entries = ing__xread_entries(reply);
    if (entries && entries->elements > 0)
        ing__take_entries(ln, entries, 0);
    else
        cdp_metrics_set(ING_PIPELINE_METRIC_LAG, ln->sh->labels, 0);
    ing__next(ln);
}

/* A page of one lane name's pending entries; an empty page moves on to the
 * next lane name, and after the last the own-pending replay is over. */
static void ing__on_own(redisReply *reply, const char *err, void *ud)
{
    ing_lane *ln = ud;
    if (ing__step_done(ln) || ing__read_failed(ln, reply, err))
        return;
    const redisReply *entries = ing__xread_entries(reply);
    if (!entries || entries->elements == 0) {
        strcpy(ln->own_cursor, "0");
        if (++ln->own_lane >= (unsigned)ln->p->cfg.lanes)
            ln->own_pending = 0;
    } else {
        const redisReply *last = entries->element[entries->elements - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements > 0 && last->element[0]->str)
            snprintf(ln->own_cursor, sizeof ln->own_cursor, "%s", last->element[0]->str);
        ing__take_entries(ln, entries, 0);
        ln->replaying = 1;
    }
    ing__next(ln);
}

static void ing__on_claim(redisReply *reply, const char *err, void *ud)
{
    ing_lane *ln = ud;
    if (ing__step_done(ln) || ing__read_failed(ln, reply, err))
        return;
    /* Redis 7: [next cursor, entries, deleted ids]. */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        ing__backoff(ln, "claim: unexpected reply");
        return;
    }
    snprintf(ln->claim_cursor, sizeof ln->claim_cursor, "%s", reply->element[0]->str);
    if (reply->element[1]->elements > 0) {
        cdp_log(CDP_LOG_INFO, "claimed idle entries", "{s:i,s:i}", "shard", (int)ln->sh->index,
                "entries", (int)reply->element[1]->elements);
        size_t before = ln->batch.n;
        ing__take_entries(ln, reply->element[1], 1);
        if (ln->batch.n > before) {
            ln->replaying = 1;
            ln->claim_found = 1;
        }
    }
    if (strcmp(ln->claim_cursor, "0-0") == 0) {
        /* A round that found entries is followed by one more before they
         * are applied (see ing__next_replay_lane); not while recovering,
         * when the other lanes are waiting, nor with a single lane, whose
         * batches never overlap. */
        ln->claim_due = 0;
        ln->claim_hold = ln->claim_found && !ln->sh->recovering && ln->p->cfg.lanes > 1;
        ln->claim_found = 0;
    }
    ing__next(ln);
}

static void ing__on_group(redisReply *reply, const char *err, void *ud)
{
    ing_lane *ln = ud;
    if (ing__step_done(ln))
        return;
    if (!reply || (reply->type == REDIS_REPLY_ERROR && !strstr(reply->str, "BUSYGROUP"))) {
        ing__backoff(ln, "create group: %s", ing__reply_err(reply, err));
        return;
    }
    ln->group_ready = 1;
    ing__next(ln);
}

static void ing__cmd(ing_lane *ln, cdp_redis *r, cdp_redis_cb cb, int argc, const char **argv)
{
    size_t lens[ING_MAX_ARGV];
    for (int i = 0; i < argc && i < ING_MAX_ARGV; i++)
        lens[i] = strlen(argv[i]);
    ln->busy = 1;
    cdp_redis_command(r, ln->sh->key, strlen(ln->sh->key), cb, ln, argc, argv, lens);
}

static void ing__create_group(ing_lane *ln)
{
    const char *argv[] = {"XGROUP", "CREATE", ln->sh->key, ING_LOG_GROUP, "0", "MKSTREAM"};
    ing__cmd(ln, ln->p->redis, ing__on_group, 6, argv);
}

/* COUNT of the next replay read: a page, within what the batch may still take. */
static void ing__replay_count(const ing_lane *ln, char *out, size_t outlen)
{
    size_t room = ln->p->replay_cap - ln->batch.n;
    size_t page = (size_t)ln->p->cfg.batch;
    snprintf(out, outlen, "%zu", room < page ? room : page);
}

static void ing__read_own(ing_lane *ln)
{
    char count[ING_NUM_BUFSZ];
    ing__replay_count(ln, count, sizeof count);
    const char *argv[] = {"XREADGROUP", "GROUP", ING_LOG_GROUP, ln->sh->lanes[ln->own_lane].consumer,
                          "COUNT", count, "STREAMS", ln->sh->key, ln->own_cursor};
    ing__cmd(ln, ln->p->redis, ing__on_own, 9, argv);
}

static void ing__claim(ing_lane *ln)
{
    char count[ING_NUM_BUFSZ], idle[ING_NUM_BUFSZ];
    ing__replay_count(ln, count, sizeof count);
    snprintf(idle, sizeof idle, "%d", ln->p->cfg.claim_idle_ms);
    const char *argv[] = {"XAUTOCLAIM", ln->sh->key, ING_LOG_GROUP, ln->consumer, idle,
                          ln->claim_cursor, "COUNT", count};
    ing__cmd(ln, ln->p->redis, ing__on_claim, 8, argv);
}

static void ing__read_new(ing_lane *ln)
{
    char count[ING_NUM_BUFSZ], block[ING_NUM_BUFSZ];
    snprintf(count, sizeof count, "%d", ln->p->cfg.batch);
    snprintf(block, sizeof block, "%d", ln->p->cfg.block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", ING_LOG_GROUP, ln->consumer, "COUNT", count,
                          "BLOCK", block, "STREAMS", ln->sh->key, ">"};
    ing__cmd(ln, ln->blk, ing__on_new, 11, argv);
}

/* ------------------------------------------------------------------ the services */

static const char *ing__step_name(ing_step step)
{
    static const char *const names[] = {"identity", "profile", "consent", "segmentation"};
    return names[step];
}

/* Starts one call of `step` over entries idx[0..n); ud is handed to cb. */
static int ing__call(ing_lane *ln, ing_step step, const size_t *idx, size_t n, cdp_rpc_done cb,
                     void *ud)
{
    ing_pipeline *p = ln->p;
    int rc = -1;
    if (step == ING_STEP_RESOLVE) {
        ing_resolve_build rb;
        if (ing_resolve_build_make(&rb, &ln->batch, idx, n) != 0)
            return -1;
        if (p->identity)
            rc = cdp_rpc_unary(p->identity, &cdp__v1__identity__descriptor, "ResolveBatch",
                               &rb.req.base, p->cfg.rpc_deadline_ms, cb, ud);
        ing_resolve_build_free(&rb);
    } else if (step == ING_STEP_EVALUATE) {
        ing_touch_build tb;
        if (ing_touch_build_make(&tb, &ln->batch, idx, n) != 0)
            return -1;
        if (p->segmentation)
            rc = cdp_rpc_unary(p->segmentation, &cdp__v1__segmentation__descriptor, "Evaluate",
                               &tb.req.base, p->cfg.rpc_deadline_ms, cb, ud);
        ing_touch_build_free(&tb);
    } else {
        /* Profile and consent take the same request. */
        ing_apply_build ab;
        if (ing_apply_build_make(&ab, &ln->batch, idx, n) != 0)
            return -1;
        if (step == ING_STEP_APPLY && p->profile)
            rc = cdp_rpc_unary(p->profile, &cdp__v1__profile__descriptor, "ApplyEvents",
                               &ab.req.base, p->cfg.rpc_deadline_ms, cb, ud);
        else if (step == ING_STEP_CONSENT && p->consent)
            rc = cdp_rpc_unary(p->consent, &cdp__v1__consent__descriptor, "ApplyConsentEvents",
                               &ab.req.base, p->cfg.rpc_deadline_ms, cb, ud);
        ing_apply_build_free(&ab);
    }
    return rc;
}

/* The step's answer for one entry that was sent alone. Returns -1 when the
 * answer does not fit the request (treated as a whole-batch failure). */
static int ing__take_one(ing_lane *ln, ing_step step, size_t entry, const ProtobufCMessage *resp)
{
    if (step == ING_STEP_RESOLVE)
        return ing_batch_take_resolve(&ln->batch, &entry, 1,
                                      (const Cdp__V1__ResolveBatchResponse *)resp);
    if (step == ING_STEP_APPLY)
        ln->batch.e[entry].state = ING_ENTRY_APPLIED;
    else if (step == ING_STEP_EVALUATE)
        ln->batch.e[entry].state = ING_ENTRY_DONE;
    return 0;
}

/* After a resolve call: the next chunk, or the apply once every entry has
 * an answer. After the apply: consent, then segmentation, then the
 * finishing script. */
static void ing__after_step(ing_lane *ln, ing_step step)
{
    if (step == ING_STEP_RESOLVE)
        ing__start_step(ln, ING_STEP_RESOLVE);
    else if (step == ING_STEP_APPLY)
        ing__start_step(ln, ING_STEP_CONSENT);
    else if (step == ING_STEP_CONSENT)
        ing__start_step(ln, ING_STEP_EVALUATE);
    else
        ing__finish(ln);
}

static void ing__on_single(grpc_status_code code, const char *details,
                           const ProtobufCMessage *resp, void *ud)
{
    ing__single *one = ud;
    ing_lane *ln = one->ln;
    ing_entry *e = &ln->batch.e[one->entry];
    if (!ln->p->stopping) {
        if (code == GRPC_STATUS_OK) {
            if (ing__take_one(ln, one->step, one->entry, resp) != 0 && !ln->singles_transient) {
                ln->singles_transient = 1;
                snprintf(ln->singles_err, sizeof ln->singles_err, "%s: malformed answer",
                         ing__step_name(one->step));
            }
        } else if (ing_status_is_rejection(code)) {
            ing_entry_fail(e, "%s: %s", ing__step_name(one->step), details ? details : "rejected");
        } else if (!ln->singles_transient) {
            ln->singles_transient = 1;
            snprintf(ln->singles_err, sizeof ln->singles_err, "%s: %s", ing__step_name(one->step),
                     details ? details : "failed");
        }
    }
    ing_step step = one->step;
    free(one);
    if (--ln->singles_pending > 0)
        return;
    if (ing__step_done(ln))
        return;
    if (ln->singles_transient) {
        ing__backoff(ln, "%s", ln->singles_err);
        return;
    }
    ing__after_step(ln, step);
}

/* A service rejected the batch: send its events one by one so that only
 * the culprit fails. */
static void ing__singles(ing_lane *ln, ing_step step)
{
    size_t n = ln->n_idx;
    ln->singles_pending = 1; /* held while starting */
    ln->singles_transient = 0;
    ln->busy = 1;
    for (size_t k = 0; k < n; k++) {
        ing__single *one = calloc(1, sizeof *one);
        if (!one) {
            ln->singles_transient = 1;
            snprintf(ln->singles_err, sizeof ln->singles_err, "out of memory");
            break;
        }
        one->ln = ln;
        one->entry = ln->idx[k];
        one->step = step;
        ln->singles_pending++;
        if (ing__call(ln, step, &one->entry, 1, ing__on_single, one) != 0) {
            ln->singles_pending--;
            free(one);
            ln->singles_transient = 1;
            snprintf(ln->singles_err, sizeof ln->singles_err, "%s: call not started",
                     ing__step_name(step));
            break;
        }
    }
    if (--ln->singles_pending > 0)
        return;
    if (ing__step_done(ln))
        return;
    if (ln->singles_transient)
        ing__backoff(ln, "%s", ln->singles_err);
    else
        ing__after_step(ln, step);
}

/* A whole-step answer. OK: take it. A rejection: narrow it down (or fail
 * the lone event). Anything else: retry the batch later. */
static void ing__on_step(ing_lane *ln, ing_step step, grpc_status_code code, const char *details,
                         const ProtobufCMessage *resp)
{
    if (ing__step_done(ln))
        return;
    if (code == GRPC_STATUS_OK) {
        if (step == ING_STEP_RESOLVE &&
            ing_batch_take_resolve(&ln->batch, ln->idx, ln->n_idx,
                                   (const Cdp__V1__ResolveBatchResponse *)resp) != 0) {
            ing__backoff(ln, "identity answered a different number of results");
            return;
        }
        if (step == ING_STEP_APPLY) {
            /* Profile must account for every event it was sent; anything
             * else (a truncated request, a version skew) is not done. */
            const Cdp__V1__ApplyEventsResponse *ar = (const Cdp__V1__ApplyEventsResponse *)resp;
            if ((size_t)ar->applied + (size_t)ar->duplicates != ln->n_idx) {
                ing__backoff(ln, "profile accounted for %d of %zu events",
                             (int)(ar->applied + ar->duplicates), ln->n_idx);
                return;
            }
            for (size_t k = 0; k < ln->n_idx; k++)
                ln->batch.e[ln->idx[k]].state = ING_ENTRY_APPLIED;
        }
        if (step == ING_STEP_EVALUATE)
            for (size_t k = 0; k < ln->n_idx; k++)
                ln->batch.e[ln->idx[k]].state = ING_ENTRY_DONE;
        ing__after_step(ln, step);
        return;
    }
    if (ing_status_is_rejection(code) && ln->n_idx > 1) {
        ing__singles(ln, step);
        return;
    }
    if (ing_status_is_rejection(code)) {
        ing_entry_fail(&ln->batch.e[ln->idx[0]], "%s: %s", ing__step_name(step),
                       details ? details : "rejected");
        ing__after_step(ln, step);
        return;
    }
    ing__backoff(ln, "%s: %s (%d)", ing__step_name(step), details ? details : "", (int)code);
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

static void ing__on_consented(grpc_status_code code, const char *details,
                              const ProtobufCMessage *resp, void *ud)
{
    if (code == GRPC_STATUS_OK) {
        const Cdp__V1__ApplyConsentEventsResponse *cr = (const void *)resp;
        for (size_t i = 0; i < cr->n_errors; i++)
            cdp_log(CDP_LOG_WARN, "consent event ignored", "{s:s}", "error", cr->errors[i]);
    }
    ing__on_step(ud, ING_STEP_CONSENT, code, details, resp);
}

static void ing__on_evaluated(grpc_status_code code, const char *details,
                              const ProtobufCMessage *resp, void *ud)
{
    ing__on_step(ud, ING_STEP_EVALUATE, code, details, resp);
}

/* Entries of a post-apply step: the applied ones (consent events only, for
 * consent). A step whose service is switched off has none; without
 * segmentation the applied entries are done at once. */
static size_t ing__post_entries(ing_lane *ln, ing_step step)
{
    ing_pipeline *p = ln->p;
    size_t n = ing_batch_in_state(&ln->batch, ING_ENTRY_APPLIED, ln->idx);
    if (step == ING_STEP_CONSENT)
        return p->consent ? ing_consent_entries(&ln->batch, ln->idx, n, ln->idx) : 0;
    if (!p->segmentation) {
        for (size_t k = 0; k < n; k++)
            ln->batch.e[ln->idx[k]].state = ING_ENTRY_DONE;
        return 0;
    }
    return n;
}

/* Resolve: the next chunk of entries identity has not answered for (at
 * most what one ResolveBatch takes); when none is left, apply: every live
 * entry in one call; when none is left, finish. */
static void ing__start_step(ing_lane *ln, ing_step step)
{
    if (step == ING_STEP_RESOLVE) {
        ln->n_idx = ing_batch_unresolved(&ln->batch, ln->idx, ING_RESOLVE_MAX_REQUESTS);
        if (ln->n_idx == 0)
            step = ING_STEP_APPLY;
    }
    if (step == ING_STEP_APPLY) {
        ln->n_idx = ing_batch_live(&ln->batch, ln->idx);
        if (ln->n_idx == 0)
            step = ING_STEP_CONSENT;
    }
    if (step == ING_STEP_CONSENT) {
        ln->n_idx = ing__post_entries(ln, step);
        if (ln->n_idx == 0)
            step = ING_STEP_EVALUATE;
    }
    if (step == ING_STEP_EVALUATE) {
        ln->n_idx = ing__post_entries(ln, step);
        if (ln->n_idx == 0) {
            ing__finish(ln);
            return;
        }
    }
    ln->busy = 1;
    static const cdp_rpc_done cbs[] = {ing__on_resolved, ing__on_applied, ing__on_consented,
                                       ing__on_evaluated};
    cdp_rpc_done cb = cbs[step];
    if (ing__call(ln, step, ln->idx, ln->n_idx, cb, ln) != 0) {
        ln->busy = 0;
        ing__backoff(ln, "%s: call not started", ing__step_name(step));
    }
}

static void ing__process(ing_lane *ln)
{
    size_t *idx = realloc(ln->idx, (ln->batch.n ? ln->batch.n : 1) * sizeof *idx);
    if (!idx) {
        ing__backoff(ln, "out of memory");
        return;
    }
    ln->idx = idx;
    ln->claim_hold = 0; /* what was held is in this batch */
    ing_batch_reset(&ln->batch);
    ing__start_step(ln, ING_STEP_RESOLVE);
}

/* ------------------------------------------------------------------ finishing */

static void ing__on_finished(ing_log_rc rc, const char *err, void *ud)
{
    ing_lane *ln = ud;
    ln->busy = 0;
    ln->stale = 0; /* the batch is cleared below either way */
    if (rc != ING_LOG_OK) {
        /* Nothing was acknowledged: the entries stay pending and come back
         * through the claim loop; downstream application is idempotent. */
        cdp_log(CDP_LOG_WARN, "cannot finish batch; entries stay pending", "{s:i,s:i,s:s}", "shard",
                (int)ln->sh->index, "lane", (int)ln->no, "error", err ? err : "");
        ing_batch_clear(&ln->batch);
        ing__backoff(ln, "finish: %s", err ? err : "");
        return;
    }
    long long applied = 0;
    for (size_t i = 0; i < ln->batch.n; i++)
        if (ln->batch.e[i].state == ING_ENTRY_DONE && ln->batch.e[i].ev)
            applied++;
    ing__count("applied", applied);
    ing__count("retry", ln->fin.retrying);
    ing__count("dead_letter", ln->fin.dead);
    if (ln->fin.dead > 0)
        cdp_log(CDP_LOG_WARN, "events dead-lettered", "{s:i,s:I}", "shard", (int)ln->sh->index,
                "events", (json_int_t)ln->fin.dead);
    for (size_t i = 0; i < ln->batch.n; i++)
        if (ln->batch.e[i].state == ING_ENTRY_FAILED)
            cdp_log(CDP_LOG_INFO, "event failed in the pipeline", "{s:s,s:s,s:s}", "message_id",
                    ln->batch.e[i].message_id, "stream_id", ln->batch.e[i].stream_id, "reason",
                    ln->batch.e[i].reason);
    ln->backoff_ms = 0;
    ing_batch_clear(&ln->batch);
    if (ln->p->stopping) {
        ing__maybe_stopped(ln->p);
        return;
    }
    ing__next(ln);
}

static void ing__finish(ing_lane *ln)
{
    ing_pipeline *p = ln->p;
    size_t n = ln->batch.n, n_done = 0, n_fail = 0;
    const char **done = realloc(ln->done_ids, (n ? n : 1) * sizeof *done);
    if (done)
        ln->done_ids = done;
    ing_log_failure *fails = realloc(ln->fails, (n ? n : 1) * sizeof *fails);
    if (fails)
        ln->fails = fails;
    if (!done || !fails) {
        ing__backoff(ln, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ing_entry *e = &ln->batch.e[i];
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
    ln->busy = 1;
    ing_log_finish(p->log, ln->sh->index, done, n_done, fails, n_fail, p->cfg.max_attempts,
                   cdp_now_ms(), &ln->fin, ing__on_finished, ln);
}

/* ------------------------------------------------------------------ the lane loop */

/* 1 while the replay lane should read more replays into its batch of
 * replays before processing it. */
static int ing__collecting(const ing_lane *ln)
{
    return ing__is_replay_lane(ln) && ln->replaying && ln->batch.n < ln->p->replay_cap &&
           (ln->own_pending || ln->claim_due || ln->claim_hold);
}

/* 1 if a lane of the shard other than the replay lane has a step in flight. */
static int ing__others_busy(const ing_shard *sh, int lanes)
{
    for (int l = 0; l < lanes; l++)
        if (l != ING_REPLAY_LANE && sh->lanes[l].busy)
            return 1;
    return 0;
}

/* The replay lane, once its group exists and it holds no batch to process:
 * own pending entries of every lane name (after the other lanes have let go
 * of what they were doing), then a due claim round, then new entries. The
 * other lanes start reading once the own pending entries and the first
 * claim round are replayed.
 *
 * Entries a claim round found are held until a later round finds nothing
 * more (one claim interval): the batches a crashed replica's lanes held
 * become idle at slightly different times, and they are applied together
 * only if they are claimed into one batch (see the header comment). */
static void ing__next_replay_lane(ing_lane *ln)
{
    ing_shard *sh = ln->sh;
    int lanes = ln->p->cfg.lanes;
    if (ln->own_pending) {
        if (!ing__others_busy(sh, lanes))
            ing__read_own(ln);
        return;
    }
    if (ln->claim_due) {
        ing__claim(ln);
        return;
    }
    if (sh->recovering) {
        sh->recovering = 0;
        for (int l = 0; l < lanes; l++)
            if (l != ING_REPLAY_LANE)
                ing__next(&sh->lanes[l]);
    }
    if (ln->claim_hold && ln->batch.n > 0)
        return; /* the claim timer wakes this lane */
    ln->claim_hold = 0;
    ing__read_new(ln);
}

static void ing__next(ing_lane *ln)
{
    ing_pipeline *p = ln->p;
    if (ln->busy || ln->in_backoff)
        return;
    if (p->stopping) {
        ing_batch_clear(&ln->batch);
        ing__maybe_stopped(p);
        return;
    }
    if (!p->redis_up)
        return;
    if (ln->batch.n == 0)
        ln->replaying = 0;
    ing_lane *replay = &ln->sh->lanes[ING_REPLAY_LANE];
    if (ln->batch.n > 0 && !ing__collecting(ln))
        ing__process(ln);
    else if (!ing__is_replay_lane(ln) && ln->sh->recovering)
        ing__next(replay); /* it may have been waiting for this lane */
    else if (!ln->group_ready)
        ing__create_group(ln);
    else if (ing__is_replay_lane(ln))
        ing__next_replay_lane(ln);
    else
        ing__read_new(ln);
}

static void ing__on_backoff(uv_timer_t *t)
{
    ing_lane *ln = t->data;
    ln->in_backoff = 0;
    ing__next(ln);
}

static void ing__on_claim_timer(uv_timer_t *t)
{
    ing_pipeline *p = t->data;
    for (unsigned s = 0; s < p->n_shards; s++) {
        ing_lane *ln = &p->shards[s].lanes[ING_REPLAY_LANE];
        if (!ln->claim_due) {
            ln->claim_due = 1;
            strcpy(ln->claim_cursor, "0-0");
        }
        ing__next(ln); /* it may be holding claimed entries for this round */
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

static int ing__lane_init(ing_pipeline *p, ing_shard *sh, ing_lane *ln, unsigned no)
{
    ln->p = p;
    ln->sh = sh;
    ln->no = no;
    snprintf(ln->consumer, sizeof ln->consumer, "%s-%u", p->consumer, no);
    ing_batch_init(&ln->batch);
    strcpy(ln->own_cursor, "0");
    strcpy(ln->claim_cursor, "0-0");
    uv_timer_init(p->loop, &ln->timer);
    ln->timer.data = ln;
    p->timers_open++;
    cdp_redis_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.addrs = p->cfg.redis_addrs;
    ro.connect_timeout_ms = p->cfg.redis_connect_timeout_ms;
    /* A blocked read legitimately takes block_ms before it answers. */
    ro.command_timeout_ms = p->cfg.redis_command_timeout_ms + p->cfg.block_ms;
    ln->blk = cdp_redis_new(p->loop, &ro);
    if (!ln->blk) {
        ln->blk_closed = 1;
        return -1;
    }
    cdp_redis_start(ln->blk);
    return 0;
}

/* Sets up shard `index` and its lanes; every lane's timer is open and
 * counted even when a lane's Redis client cannot be created. */
static int ing__shard_init(ing_pipeline *p, ing_shard *sh, unsigned index)
{
    sh->index = index;
    ing_log_key(sh->key, sizeof sh->key, index, "events");
    snprintf(sh->labels, sizeof sh->labels, "shard=\"%u\"", index);
    sh->lanes = &p->lanes[(size_t)index * (size_t)p->cfg.lanes];
    int rc = 0;
    for (int l = 0; l < p->cfg.lanes; l++)
        if (ing__lane_init(p, sh, &sh->lanes[l], (unsigned)l) != 0)
            rc = -1;
    return rc;
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
    if (p->cfg.lanes < 1)
        p->cfg.lanes = 1;
    if (p->cfg.lanes > ING_MAX_PIPELINE_LANES)
        p->cfg.lanes = ING_MAX_PIPELINE_LANES;
    p->n_shards = log->cfg.shards;
    p->n_lanes = p->n_shards * (unsigned)p->cfg.lanes;
    size_t cap = (size_t)p->cfg.lanes * (size_t)p->cfg.batch;
    p->replay_cap = cap < ING_APPLY_MAX_EVENTS ? cap : ING_APPLY_MAX_EVENTS;
    ing__consumer_name(p->consumer, sizeof p->consumer);
    uv_timer_init(loop, &p->claim_timer);
    p->claim_timer.data = p;
    p->timers_open = 1;
    p->shards = calloc(p->n_shards, sizeof *p->shards);
    p->lanes = calloc(p->n_lanes, sizeof *p->lanes);
    p->identity = cdp_rpc_channel_new(loop, cfg->identity_addr, NULL);
    p->profile = cdp_rpc_channel_new(loop, cfg->profile_addr, NULL);
    if (cfg->consent_addr[0])
        p->consent = cdp_rpc_channel_new(loop, cfg->consent_addr, NULL);
    if (cfg->segmentation_addr[0])
        p->segmentation = cdp_rpc_channel_new(loop, cfg->segmentation_addr, NULL);
    if (!p->shards || !p->lanes || !p->identity || !p->profile ||
        (cfg->consent_addr[0] && !p->consent) || (cfg->segmentation_addr[0] && !p->segmentation)) {
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
    cdp_log(CDP_LOG_INFO, "pipeline ready", "{s:s,s:i,s:i,s:i,s:i}", "consumer", p->consumer,
            "shards", (int)p->n_shards, "lanes", p->cfg.lanes, "batch", p->cfg.batch,
            "max_attempts", p->cfg.max_attempts);
    return p;
}

/* After any outage: the group may be gone (a Redis restarted empty), and
 * the batches held before it are read again from the group (their entries
 * are still pending, or gone with a Redis that lost its data): never
 * finish entries Redis may no longer hold. */
static void ing__lane_resume(ing_lane *ln)
{
    ln->group_ready = 0;
    if (ln->in_backoff) {
        uv_timer_stop(&ln->timer);
        ln->in_backoff = 0;
    }
    if (ln->busy)
        ln->stale = 1;
    else
        ing_batch_clear(&ln->batch);
    if (ing__is_replay_lane(ln)) {
        ln->own_pending = 1;
        ln->own_lane = 0;
        strcpy(ln->own_cursor, "0");
        ln->claim_due = 1;
        strcpy(ln->claim_cursor, "0-0");
        ln->claim_found = 0;
        ln->claim_hold = 0;
    }
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
        sh->recovering = 1;
        for (int l = 0; l < p->cfg.lanes; l++)
            ing__lane_resume(&sh->lanes[l]);
    }
    for (unsigned i = 0; i < p->n_lanes; i++)
        ing__next(&p->lanes[i]);
}

static void ing__blk_closed(void *ud)
{
    ing_lane *ln = ud;
    ln->blk_closed = 1;
    ln->blk = NULL;
    ing__maybe_stopped(ln->p);
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
    for (unsigned i = 0; i < p->n_lanes; i++)
        if (p->lanes[i].busy || !p->lanes[i].blk_closed)
            return;
    p->closing_timers = 1;
    uv_close((uv_handle_t *)&p->claim_timer, ing__handle_closed);
    for (unsigned i = 0; i < p->n_lanes; i++) {
        p->lanes[i].timer.data = p;
        uv_close((uv_handle_t *)&p->lanes[i].timer, ing__handle_closed);
    }
}

void ing_pipeline_stop(ing_pipeline *p, void (*done)(void *ud), void *ud)
{
    p->stopping = 1;
    p->stop_done = done;
    p->stop_ud = ud;
    cdp_log(CDP_LOG_INFO, "pipeline stopping", NULL);
    uv_timer_stop(&p->claim_timer);
    for (unsigned i = 0; i < p->n_lanes; i++) {
        uv_timer_stop(&p->lanes[i].timer);
        p->lanes[i].in_backoff = 0;
    }
    /* In-flight calls finish as CANCELLED, blocked reads as "closing"; their
     * batches are abandoned and stay pending in the group. */
    cdp_rpc_channel_close(p->identity);
    cdp_rpc_channel_close(p->profile);
    if (p->consent)
        cdp_rpc_channel_close(p->consent);
    if (p->segmentation)
        cdp_rpc_channel_close(p->segmentation);
    p->identity = p->profile = p->consent = p->segmentation = NULL;
    for (unsigned i = 0; i < p->n_lanes; i++) {
        ing_lane *ln = &p->lanes[i];
        if (ln->blk)
            cdp_redis_close(ln->blk, ing__blk_closed, ln);
        else
            ln->blk_closed = 1;
    }
    ing__maybe_stopped(p);
}

void ing_pipeline_free(ing_pipeline *p)
{
    if (!p)
        return;
    for (unsigned i = 0; p->lanes && i < p->n_lanes; i++) {
        ing_batch_free(&p->lanes[i].batch);
        free(p->lanes[i].idx);
        free(p->lanes[i].done_ids);
        free(p->lanes[i].fails);
    }
    free(p->lanes);
    free(p->shards);
    free(p);
}
