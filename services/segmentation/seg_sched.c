/* seg_sched: scheduled re-evaluation of time-based segments.
 *
 * Whenever a time-based segment is evaluated for a profile, the earliest
 * moment its result could change by time alone goes into the due set
 * (ZADD LT keeps the minimum; seg_eval.c). Every CDP_SEGMENTATION_SCHEDULER_MS
 * a replica claims what is due with one script that moves it to a lease set
 * (so two replicas never take the same profile, and a dead replica's claims
 * return to the due set once their lease expires), then re-evaluates each
 * claimed profile against the time-based segments through the membership
 * path, which records the next due time and releases the lease. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "seg_eval.h"

typedef struct {
    seg_svc *s;
    int pending;
    int failed;
} seg_sched_run;

static void seg__sched_one(const seg_eval_result *r, void *ud)
{
    seg_sched_run *run = ud;
    if (r->code != GRPC_STATUS_OK)
        run->failed++;
    if (--run->pending > 0)
        return;
    if (run->failed)
        cdp_log(CDP_LOG_WARN, "scheduled re-evaluations failed; their leases will expire",
                "{s:i}", "profiles", run->failed);
    run->s->sched_inflight = 0;
    free(run);
}

static void seg__claimed(redisReply *reply, const char *err, void *ud)
{
    seg_sched_run *run = ud;
    seg_svc *s = run->s;
    char msg[SEG_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        reply->type != REDIS_REPLY_ARRAY) {
        if (err == NULL)
            cdp_log(CDP_LOG_WARN, "scheduler claim failed", "{s:s}", "error", msg);
        s->sched_inflight = 0;
        free(run);
        return;
    }
    if (reply->elements) {
        cdp_metrics_inc("cdp_segmentation_scheduler_runs_total", "", 1);
        cdp_metrics_inc("cdp_segmentation_scheduler_due_total", "", (double)reply->elements);
    }
    run->pending = 1;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        seg_eval_target t = { .master = m->str, .mode = SEG_SEL_TIME, .sched_claimed = 1 };
        run->pending++;
        seg_eval_profile(s, &t, seg__sched_one, run);
    }
    seg_eval_result none = { .code = GRPC_STATUS_OK };
    seg__sched_one(&none, run);
}

void seg_sched_tick(seg_svc *s)
{
    if (s->sched_inflight)
        return;
    seg_sched_run *run = calloc(1, sizeof(*run));
    if (!run)
        return;
    run->s = s;
    s->sched_inflight = 1;
    char now[32], lease[32], limit[32];
    snprintf(now, sizeof(now), "%" PRId64, seg_now(s));
    snprintf(lease, sizeof(lease), "%" PRId64, s->cfg.scheduler_lease_ms);
    snprintf(limit, sizeof(limit), "%" PRId64, s->cfg.scheduler_batch);
    const char *keys[2] = { SEG_KEY_SCHED_DUE, SEG_KEY_SCHED_LEASE };
    size_t klen[2] = { strlen(keys[0]), strlen(keys[1]) };
    const char *args[3] = { now, lease, limit };
    size_t alen[3] = { strlen(now), strlen(lease), strlen(limit) };
    cdp_redis_eval(s->redis, s->scripts.claim, seg__claimed, run, 2, keys, klen, 3, args, alen);
}
