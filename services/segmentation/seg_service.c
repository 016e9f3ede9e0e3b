/* seg_service: configuration, wiring and the definitions snapshot of the
 * Segmentation service (seg_service.h).
 *
 * Definitions: every replica holds an immutable snapshot (seg_defs) of all
 * segments with their rules loaded from the stored parsed form. A timer
 * polls cdp:seg:{defs}:version every CDP_SEGMENTATION_RELOAD_MS and reloads
 * when it moved; a replica that wrote a definition reloads at once. */
#include "seg_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "cdp/v1/segmentation.pb-c.h"
#include "cdp_config.h"
#include "cdp_log.h"
#include "cdp_metrics.h"
#include "seg_load.h"

enum {
    SEG_DEFAULT_RELOAD_MS = 1000,
    SEG_DEFAULT_SCHED_MS = 1000,
    SEG_DEFAULT_SCHED_BATCH = 500,
    SEG_DEFAULT_SCHED_LEASE_MS = 30000,
    SEG_DEFAULT_CHANGES_MAXLEN = 1000000,
    SEG_DEFAULT_BF_CHUNK = 200,
    SEG_DEFAULT_BF_LEASE_MS = 10000,
    SEG_DEFAULT_WATCH_BLOCK_MS = 1000,
    SEG_DEFAULT_LOOKUP_MS = 2000,
    SEG_MAX_INTERVAL_MS = 3600000,
    SEG_MIN_LEASE_MS = 100,
    SEG_MAX_BATCH = 100000,
    SEG_MAX_MAXLEN = 1000000000,
};

int seg_config_read(seg_config *c)
{
    if (cdp_env_int("CDP_SEGMENTATION_RELOAD_MS", SEG_DEFAULT_RELOAD_MS, 10, SEG_MAX_INTERVAL_MS,
                    &c->reload_ms) ||
        cdp_env_int("CDP_SEGMENTATION_SCHEDULER_MS", SEG_DEFAULT_SCHED_MS, 10,
                    SEG_MAX_INTERVAL_MS, &c->scheduler_ms) ||
        cdp_env_int("CDP_SEGMENTATION_SCHEDULER_BATCH", SEG_DEFAULT_SCHED_BATCH, 1, SEG_MAX_BATCH,
                    &c->scheduler_batch) ||
        cdp_env_int("CDP_SEGMENTATION_SCHEDULER_LEASE_MS", SEG_DEFAULT_SCHED_LEASE_MS,
                    SEG_MIN_LEASE_MS, SEG_MAX_INTERVAL_MS, &c->scheduler_lease_ms) ||
        cdp_env_int("CDP_SEGMENTATION_CHANGES_MAXLEN", SEG_DEFAULT_CHANGES_MAXLEN, 1,
                    SEG_MAX_MAXLEN, &c->changes_maxlen) ||
        cdp_env_int("CDP_SEGMENTATION_BACKFILL_CHUNK", SEG_DEFAULT_BF_CHUNK, 1, SEG_MAX_BATCH,
                    &c->backfill_chunk) ||
        cdp_env_int("CDP_SEGMENTATION_BACKFILL_LEASE_MS", SEG_DEFAULT_BF_LEASE_MS,
                    SEG_MIN_LEASE_MS, SEG_MAX_INTERVAL_MS, &c->backfill_lease_ms) ||
        cdp_env_int("CDP_SEGMENTATION_WATCH_BLOCK_MS", SEG_DEFAULT_WATCH_BLOCK_MS, 10, 60000,
                    &c->watch_block_ms) ||
        cdp_env_int("CDP_SEGMENTATION_LOOKUP_TIMEOUT_MS", SEG_DEFAULT_LOOKUP_MS, 1, 60000,
                    &c->lookup_timeout_ms) ||
        cdp_env_int("CDP_REDIS_CONNECT_TIMEOUT_MS", 2000, 10, 600000,
                    &c->redis_connect_timeout_ms) ||
        cdp_env_int("CDP_REDIS_COMMAND_TIMEOUT_MS", 5000, 10, 600000,
                    &c->redis_command_timeout_ms))
        return -1;
    c->identity_addr = cdp_env_str("CDP_IDENTITY_ADDR", "127.0.0.1:50052");
    c->redis_addrs = cdp_env_str("CDP_REDIS_ADDR", "127.0.0.1:6379");
    c->clock_file = cdp_env_str("CDP_CLOCK_OFFSET_FILE", NULL);
    return 0;
}

int64_t seg_now(seg_svc *s) { return seg_clock_now(&s->clock); }

void seg_ts_from_ms(Google__Protobuf__Timestamp *ts, int64_t ms)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = ms / 1000;
    ts->nanos = (int32_t)(ms % 1000) * 1000000;
}

/* ------------------------------------------------------------------ reload */

typedef struct {
    seg_svc *s;
    int64_t version;
    int pending, failed;
    seg_def *defs;
    size_t n;
} seg_reload;

static void seg__reload_finish(seg_reload *rl)
{
    seg_svc *s = rl->s;
    if (!rl->failed) {
        seg_defs *d = seg_defs_new(rl->defs, rl->n, rl->version);
        rl->defs = NULL;
        if (d) {
            seg_defs_unref(s->defs);
            s->defs = d;
            s->defs_loaded = 1;
            cdp_metrics_set("cdp_segmentation_segments", "", (double)rl->n);
            cdp_log(CDP_LOG_DEBUG, "definitions loaded", "{s:I,s:I}", "version",
                    (json_int_t)rl->version, "segments", (json_int_t)rl->n);
        }
    }
    for (size_t i = 0; rl->defs && i < rl->n; i++)
        seg_def_clear(&rl->defs[i]);
    free(rl->defs);
    free(rl);
    s->reload_inflight = 0;
    if (!s->stopping)
        seg_backfills_poll(s);
    if (s->reload_again && !s->stopping) {
        s->reload_again = 0;
        seg_defs_reload(s);
    }
}

static void seg__reload_reply(redisReply *reply, const char *err, void *ud)
{
    seg_reload *rl = ud;
    char msg[SEG_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK) {
        rl->failed = 1;
    } else if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_NIL) {
        if (reply->type == REDIS_REPLY_STRING &&
            cdp_parse_i64(reply->str, reply->len, &rl->version) != 0)
            rl->failed = 1;
    } else if (reply->type == REDIS_REPLY_ARRAY && !rl->defs) {
        size_t n = reply->elements / 2;
        rl->defs = calloc(n ? n : 1, sizeof(seg_def));
        if (!rl->defs)
            rl->failed = 1;
        for (size_t i = 0; rl->defs && i < n; i++) {
            const redisReply *v = reply->element[2 * i + 1];
            seg_def *d = &rl->defs[rl->n];
            if (v->type != REDIS_REPLY_STRING || seg_def_from_json(d, v->str, v->len) != 0 ||
                seg_def_load_rule(d) != 0) {
                cdp_log(CDP_LOG_ERROR, "skipping a malformed stored segment", "{s:s}", "id",
                        reply->element[2 * i]->type == REDIS_REPLY_STRING
                            ? reply->element[2 * i]->str
                            : "?");
                seg_def_clear(d);
                continue;
            }
            rl->n++;
        }
    } else {
        rl->failed = 1;
    }
    if (--rl->pending == 0)
        seg__reload_finish(rl);
}

void seg_defs_reload(seg_svc *s)
{
    if (s->reload_inflight) {
        s->reload_again = 1;
        return;
    }
    seg_reload *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return;
    rl->s = s;
    rl->pending = 2;
    s->reload_inflight = 1;
    /* one slot, one write: the version is read before the hash */
    cdp_redis_commandf(s->redis, SEG_KEY_DEFS_VERSION, seg__reload_reply, rl, "GET %s",
                       SEG_KEY_DEFS_VERSION);
    cdp_redis_commandf(s->redis, SEG_KEY_DEFS, seg__reload_reply, rl, "HGETALL %s", SEG_KEY_DEFS);
}

static void seg__version_reply(redisReply *reply, const char *err, void *ud)
{
    seg_svc *s = ud;
    int64_t v = 0;
    s->reload_inflight = 0;
    if (err || !reply || s->stopping)
        return;
    if (reply->type == REDIS_REPLY_STRING && cdp_parse_i64(reply->str, reply->len, &v) != 0)
        return;
    if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)
        return;
    if (!s->defs_loaded || v != seg_defs_version(s->defs))
        seg_defs_reload(s);
    else
        seg_backfills_poll(s);
}

static void seg__reload_tick(uv_timer_t *t)
{
    seg_svc *s = t->data;
    if (s->reload_inflight || !cdp_redis_is_up(s->redis))
        return;
    s->reload_inflight = 1;
    cdp_redis_commandf(s->redis, SEG_KEY_DEFS_VERSION, seg__version_reply, s, "GET %s",
                       SEG_KEY_DEFS_VERSION);
}

static void seg__sched_timer(uv_timer_t *t)
{
    seg_svc *s = t->data;
    /* before the first load an empty snapshot would drop claimed work */
    if (!s->stopping && s->defs_loaded && cdp_redis_is_up(s->redis))
        seg_sched_tick(s);
}

/* ------------------------------------------------------------------ wiring */

static void seg__metrics_help(void)
{
    cdp_metrics_help("cdp_segmentation_evaluations_total", "Profile-segment evaluations made.");
    cdp_metrics_help("cdp_segmentation_transitions_total",
                     "Membership transitions recorded, by kind.");
    cdp_metrics_help("cdp_segmentation_scheduler_runs_total", "Scheduler ticks that claimed work.");
    cdp_metrics_help("cdp_segmentation_scheduler_due_total",
                     "Profiles re-evaluated because a time-based segment was due.");
    cdp_metrics_help("cdp_segmentation_backfill_scanned_total", "Profiles scanned by backfills.");
    cdp_metrics_help("cdp_segmentation_backfills_running", "Backfills this replica runs.");
    cdp_metrics_help("cdp_segmentation_watchers", "Open WatchSegment streams.");
    cdp_metrics_help("cdp_segmentation_segments", "Segments in this replica's snapshot.");
}

int seg_service_init(cdp_service *svc)
{
    seg_svc *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->svc = svc;
    s->redis = svc->redis;
    svc->state = s;
    if (seg_config_read(&s->cfg) != 0)
        return -1;
    if (seg_clock_init(&s->clock, s->cfg.clock_file) != 0)
        return -1;
    if (seg_scripts_init(&s->scripts, svc->redis) != 0) {
        cdp_log(CDP_LOG_ERROR, "cannot register segmentation scripts", NULL);
        return -1;
    }
    s->defs = seg_defs_new(NULL, 0, 0);
    if (!s->defs)
        return -1;
    char host[64];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    snprintf(s->token, sizeof(s->token), "%.40s-%ld-%lld", host, (long)getpid(),
             (long long)cdp_now_ms());
    s->identity = cdp_rpc_channel_new(svc->loop, s->cfg.identity_addr, NULL);
    if (!s->identity) {
        cdp_log(CDP_LOG_ERROR, "cannot open identity channel", "{s:s}", "target",
                s->cfg.identity_addr);
        return -1;
    }
    static const cdp_rpc_binding bindings[] = {
        { "CreateSegment", seg_create_segment, 0 },
        { "UpdateSegment", seg_update_segment, 0 },
        { "GetSegment", seg_get_segment, 0 },
        { "ListSegments", seg_list_segments, 0 },
        { "DeleteSegment", seg_delete_segment, 0 },
        { "ValidateRule", seg_validate_rule, 0 },
        { "Evaluate", seg_evaluate, 0 },
        { "GetBackfill", seg_get_backfill, 0 },
        { "ListMembers", seg_list_members, 0 },
        { "GetMemberships", seg_get_memberships, 0 },
        { "EstimateSize", seg_estimate_size, 0 },
        { "WatchSegment", seg_watch_segment, 1 },
    };
    if (cdp_rpc_server_add_service(svc->server, &cdp__v1__segmentation__descriptor, bindings,
                                   sizeof(bindings) / sizeof(bindings[0]), s) != 0)
        return -1;
    if (seg_backfills_init(s) != 0 || seg_watch_init(s) != 0)
        return -1;
    uv_timer_init(svc->loop, &s->reload_timer);
    uv_timer_init(svc->loop, &s->sched_timer);
    s->reload_timer.data = s->sched_timer.data = s;
    /* the first tick finds version 0 != stored: loads at once when Redis is up */
    uv_timer_start(&s->reload_timer, seg__reload_tick, 0, (uint64_t)s->cfg.reload_ms);
    uv_timer_start(&s->sched_timer, seg__sched_timer, (uint64_t)s->cfg.scheduler_ms,
                   (uint64_t)s->cfg.scheduler_ms);
    seg__metrics_help();
    cdp_log(CDP_LOG_INFO, "segmentation configured", "{s:I,s:I,s:I,s:s,s:s}", "reload_ms",
            (json_int_t)s->cfg.reload_ms, "scheduler_ms", (json_int_t)s->cfg.scheduler_ms,
            "changes_maxlen", (json_int_t)s->cfg.changes_maxlen, "identity",
            s->cfg.identity_addr, "clock_offset_file",
            s->cfg.clock_file ? s->cfg.clock_file : "");
    return 0;
}

void seg_service_redis_state(cdp_service *svc, int up)
{
    seg_svc *s = svc->state;
    if (s && up && !s->stopping)
        seg_defs_reload(s);
}

void seg_service_stop(cdp_service *svc, void (*done)(cdp_service *svc))
{
    seg_svc *s = svc->state;
    if (s) {
        s->stopping = 1;
        /* closed here, while the loop still runs, so destroy may free s */
        uv_close((uv_handle_t *)&s->reload_timer, NULL);
        uv_close((uv_handle_t *)&s->sched_timer, NULL);
        seg_backfills_stop(s);
        seg_watch_stop(s);
    }
    done(svc);
}

void seg_service_destroy(cdp_service *svc)
{
    seg_svc *s = svc->state;
    if (!s)
        return;
    seg_watch_free(s);
    seg_backfills_free(s);
    cdp_rpc_channel_close(s->identity);
    seg_defs_unref(s->defs);
    seg_clock_free(&s->clock);
    free(s);
    svc->state = NULL;
}
