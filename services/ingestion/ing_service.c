/* ing_service: the ingestion service's wiring and its intake methods.
 *
 * Ingest and Track share one path: validate every event (ing_validate),
 * stamp the accepted ones with the server's received_at, pack them, group
 * them by log shard and run one append script per shard (ing_log). The call
 * is answered only when every shard's script has answered, so an ACCEPTED
 * result means the event is in the Redis stream. If any shard fails, the
 * whole call fails (UNAVAILABLE, or RESOURCE_EXHAUSTED for a full log) and
 * nothing is reported as accepted; the client's retry is safe because the
 * events that did land come back as DUPLICATE. */
#include "ing_service.h"

#include <stdlib.h>
#include <string.h>

#include "cdp/v1/ingestion.pb-c.h"
#include <jansson.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "ing_pipeline.h"
#include "ing_validate.h"

#define ING_MS_PER_S 1000
#define ING_NS_PER_MS 1000000
/* "events[<any size_t>]" */
#define ING_PREFIX_BUFSZ 32
#define ING_METRIC_EVENTS "cdp_ingest_events_total"
#define ING_LABELS_BUFSZ 32

/* ------------------------------------------------------------------ one intake request */

/* An Ingest or Track call in flight. Everything is allocated per request and
 * freed when the call is answered. */
typedef struct {
    ing_state *st;
    cdp_rpc_call *call;
    int track;                       /* 1: answer a single EventResult */
    Cdp__V1__Event *const *events;   /* borrowed from the request */
    Cdp__V1__Event *single;          /* Track: events points here */
    size_t n;
    int64_t received_ms;
    ing_verdict *verdicts;           /* per event */
    int *rejected;                   /* per event */
    uint8_t **packed;                /* per event, NULL when rejected */
    size_t *packed_len;
    ing_log_item *items;             /* accepted candidates, grouped by shard */
    ing_log_outcome *outcomes;       /* parallel to items */
    size_t *item_event;              /* item -> event index */
    size_t n_items;
    int pending;                     /* shard scripts not answered yet */
    ing_log_rc rc;                   /* first failure */
    char err[ING_ERROR_BUFSZ * 2];
} ing__intake;

static void ing__intake_free(ing__intake *in)
{
    if (!in)
        return;
    for (size_t i = 0; in->packed && i < in->n; i++)
        free(in->packed[i]);
    free(in->packed);
    free(in->packed_len);
    free(in->verdicts);
    free(in->rejected);
    free(in->items);
    free(in->outcomes);
    free(in->item_event);
    free(in);
}

static ing__intake *ing__intake_new(ing_state *st, cdp_rpc_call *call, Cdp__V1__Event *const *events,
                                    size_t n, int track)
{
    ing__intake *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->st = st;
    in->call = call;
    in->track = track;
    in->events = events;
    if (track) {
        in->single = events[0];
        in->events = &in->single;
    }
    in->n = n;
    in->verdicts = calloc(n, sizeof *in->verdicts);
    in->rejected = calloc(n, sizeof *in->rejected);
    in->packed = calloc(n, sizeof *in->packed);
    in->packed_len = calloc(n, sizeof *in->packed_len);
    in->items = calloc(n, sizeof *in->items);
    in->outcomes = calloc(n, sizeof *in->outcomes);
    in->item_event = calloc(n, sizeof *in->item_event);
    if (!in->verdicts || !in->rejected || !in->packed || !in->packed_len || !in->items ||
        !in->outcomes || !in->item_event) {
        ing__intake_free(in);
        return NULL;
    }
    return in;
}

static void ing__ms_to_ts(int64_t ms, Google__Protobuf__Timestamp *ts)
{
    ts->seconds = ms / ING_MS_PER_S;
    ts->nanos = (int32_t)((ms % ING_MS_PER_S) * ING_NS_PER_MS);
}

/* Packs a copy of ev with received_at replaced by the server's. The copy
 * is shallow: only the top-level struct is duplicated. Returns 0 or -1. */
static int ing__pack_received(const Cdp__V1__Event *ev, int64_t received_ms, uint8_t **out,
                              size_t *outlen)
{
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ing__ms_to_ts(received_ms, &ts);
    Cdp__V1__Event copy = *ev;
    copy.received_at = &ts;
    size_t len = cdp__v1__event__get_packed_size(&copy);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    cdp__v1__event__pack(&copy, buf);
    *out = buf;
    *outlen = len;
    return 0;
}

/* Validates and packs every event; returns the number of candidates. */
static size_t ing__intake_prepare(ing__intake *in)
{
    const ing_limits *lim = &in->st->cfg.limits;
    char prefix[ING_PREFIX_BUFSZ];
    size_t ok = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (in->track)
            prefix[0] = '\0';
        else
            snprintf(prefix, sizeof prefix, "events[%zu]", i);
        if (ing_validate_event(in->events[i], prefix, lim, in->received_ms, &in->verdicts[i]) != 0) {
            in->rejected[i] = 1;
            continue;
        }
        if (ing__pack_received(in->events[i], in->received_ms, &in->packed[i], &in->packed_len[i])) {
            in->rejected[i] = 1;
            snprintf(in->verdicts[i].field, sizeof in->verdicts[i].field, "%s", prefix);
            snprintf(in->verdicts[i].error, sizeof in->verdicts[i].error, "out of memory");
            continue;
        }
        ok++;
    }
    return ok;
}

/* ------------------------------------------------------------------ answering */

grpc_status_code ing_log_status(ing_log_rc rc, const char **prefix)
{
    if (rc == ING_LOG_EFULL) {
        *prefix = "event log full";
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    *prefix = "redis unavailable";
    return GRPC_STATUS_UNAVAILABLE;
}

static void ing__count(const char *result, size_t n)
{
    char labels[ING_LABELS_BUFSZ];
    if (n == 0)
        return;
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    cdp_metrics_inc(ING_METRIC_EVENTS, labels, (double)n);
}

/* Fills results[i] for every event from the verdicts and outcomes. */
static void ing__fill_results(ing__intake *in, Cdp__V1__EventResult *res, Google__Protobuf__Timestamp *ts,
                              Cdp__V1__IngestResponse *resp)
{
    for (size_t i = 0; i < in->n; i++) {
        Cdp__V1__EventResult r = CDP__V1__EVENT_RESULT__INIT;
        Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        res[i] = r;
        ts[i] = t;
        res[i].index = (int32_t)i;
        res[i].message_id = in->events[i]->message_id;
        if (in->rejected[i]) {
            res[i].status = CDP__V1__EVENT_STATUS__EVENT_STATUS_REJECTED;
            res[i].field = in->verdicts[i].field;
            res[i].error = in->verdicts[i].error;
            resp->rejected++;
        }
    }
    for (size_t k = 0; k < in->n_items; k++) {
        size_t i = in->item_event[k];
        int dup = in->outcomes[k].duplicate;
        res[i].status = dup ? CDP__V1__EVENT_STATUS__EVENT_STATUS_DUPLICATE
                            : CDP__V1__EVENT_STATUS__EVENT_STATUS_ACCEPTED;
        ing__ms_to_ts(in->outcomes[k].received_ms, &ts[i]);
        res[i].received_at = &ts[i];
        if (dup)
            resp->duplicates++;
        else
            resp->accepted++;
    }
}

static void ing__answer_track(ing__intake *in, Cdp__V1__EventResult *res)
{
    if (in->rejected[0])
        cdp_rpc_fail(in->call, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", in->verdicts[0].field,
                     in->verdicts[0].error);
    else
        cdp_rpc_reply(in->call, &res[0].base);
}

/* Answers the call from the outcomes and frees the request. */
static void ing__intake_answer(ing__intake *in)
{
    if (in->rc != ING_LOG_OK) {
        const char *prefix;
        grpc_status_code code = ing_log_status(in->rc, &prefix);
        cdp_log(CDP_LOG_WARN, "events not appended", "{s:s,s:s,s:i}", "reason", in->err, "method",
                in->track ? "Track" : "Ingest", "events", (int)in->n);
        cdp_rpc_fail(in->call, code, "%s: %s", prefix, in->err);
        ing__intake_free(in);
        return;
    }
    Cdp__V1__EventResult *res = calloc(in->n, sizeof *res);
    Cdp__V1__EventResult **ptrs = calloc(in->n, sizeof *ptrs);
    Google__Protobuf__Timestamp *ts = calloc(in->n, sizeof *ts);
    if (!res || !ptrs || !ts) {
        cdp_rpc_fail(in->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        Cdp__V1__IngestResponse resp = CDP__V1__INGEST_RESPONSE__INIT;
        ing__fill_results(in, res, ts, &resp);
        ing__count("accepted", (size_t)resp.accepted);
        ing__count("duplicate", (size_t)resp.duplicates);
        ing__count("rejected", (size_t)resp.rejected);
        if (in->track) {
            ing__answer_track(in, res);
        } else {
            for (size_t i = 0; i < in->n; i++)
                ptrs[i] = &res[i];
            resp.results = ptrs;
            resp.n_results = in->n;
            cdp_rpc_reply(in->call, &resp.base);
        }
    }
    free(res);
    free(ptrs);
    free(ts);
    ing__intake_free(in);
}

static void ing__appended(ing_log_rc rc, const char *err, void *ud)
{
    ing__intake *in = ud;
    if (rc != ING_LOG_OK && in->rc == ING_LOG_OK) {
        in->rc = rc;
        snprintf(in->err, sizeof in->err, "%s", err ? err : "unknown error");
    }
    if (--in->pending == 0)
        ing__intake_answer(in);
}

/* Groups the candidates by shard (a counting sort, so one shard's items are
 * contiguous and keep their request order) and starts one script per shard. */
static void ing__intake_append(ing__intake *in)
{
    ing_state *st = in->st;
    unsigned shards = st->cfg.log.shards;
    size_t *start = calloc(shards + 1, sizeof *start);
    size_t *fill = calloc(shards, sizeof *fill);
    unsigned *shard_of = calloc(in->n, sizeof *shard_of);
    if (!start || !fill || !shard_of) {
        free(start);
        free(fill);
        free(shard_of);
        in->rc = ING_LOG_EUNAVAILABLE;
        snprintf(in->err, sizeof in->err, "out of memory");
        ing__intake_answer(in);
        return;
    }
    for (size_t i = 0; i < in->n; i++) {
        if (in->rejected[i])
            continue;
        shard_of[i] = ing_log_shard(in->events[i]->message_id, shards);
        start[shard_of[i] + 1]++;
    }
    for (unsigned s = 0; s < shards; s++)
        start[s + 1] += start[s];
    for (size_t i = 0; i < in->n; i++) {
        if (in->rejected[i])
            continue;
        size_t k = start[shard_of[i]] + fill[shard_of[i]]++;
        in->items[k].message_id = in->events[i]->message_id;
        in->items[k].data = in->packed[i];
        in->items[k].len = in->packed_len[i];
        in->item_event[k] = i;
    }
    in->n_items = start[shards];
    in->pending = 1; /* held until every shard's script is started */
    for (unsigned s = 0; s < shards; s++) {
        size_t cnt = start[s + 1] - start[s];
        if (cnt == 0)
            continue;
        in->pending++;
        ing_log_append(&st->log, s, in->items + start[s], cnt, in->received_ms,
                       in->outcomes + start[s], ing__appended, in);
    }
    free(start);
    free(fill);
    free(shard_of);
    ing__appended(ING_LOG_OK, NULL, in);
}

static void ing__intake_start(ing_state *st, cdp_rpc_call *call, Cdp__V1__Event *const *events,
                              size_t n, int track)
{
    ing__intake *in = ing__intake_new(st, call, events, n, track);
    if (!in) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    in->received_ms = cdp_now_ms();
    size_t candidates = ing__intake_prepare(in);
    if (candidates > 0 && !cdp_redis_is_up(st->svc->redis)) {
        in->rc = ING_LOG_EUNAVAILABLE;
        snprintf(in->err, sizeof in->err, "not connected");
        ing__intake_answer(in);
        return;
    }
    if (candidates == 0) {
        ing__intake_answer(in);
        return;
    }
    ing__intake_append(in);
}

/* ------------------------------------------------------------------ handlers */

static void ing__ingest(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    ing_state *st = ud;
    const Cdp__V1__IngestRequest *req = (const Cdp__V1__IngestRequest *)msg;
    ing_verdict v;
    if (ing_validate_batch(req, &st->cfg.limits, &v) != 0) {
        ing__count("rejected", req->n_events);
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", v.field, v.error);
        return;
    }
    ing__intake_start(st, call, req->events, req->n_events, 0);
}

static void ing__track(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    Cdp__V1__Event *const *events = (Cdp__V1__Event *const *)&msg;
    ing__intake_start(ud, call, events, 1, 1);
}

/* ------------------------------------------------------------------ lifecycle */

static void ing__metrics_help(void)
{
    cdp_metrics_help(ING_METRIC_EVENTS, "Events received by ingestion, by result "
                                        "(accepted, duplicate, rejected).");
    cdp_metrics_help(ING_PIPELINE_METRIC_EVENTS, "Events finished by the pipeline, by result "
                                                 "(applied, retry, dead_letter).");
    cdp_metrics_help(ING_PIPELINE_METRIC_LAG, "Seconds between receipt and pipeline processing "
                                              "of the oldest event of the last batch.");
}

static int ing__init(cdp_service *svc)
{
    static const cdp_rpc_binding bindings[] = {
        {"Ingest", ing__ingest, 0},
        {"Track", ing__track, 0},
        {"ListDeadLetters", ing_dead_list, 0},
        {"ReplayDeadLetters", ing_dead_replay, 0},
    };
    ing_state *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    svc->state = st;
    st->svc = svc;
    if (ing_config_read(&st->cfg) != 0 || ing_log_init(&st->log, svc->redis, &st->cfg.log) != 0)
        return -1;
    if (cdp_rpc_server_add_service(svc->server, &cdp__v1__ingestion__descriptor, bindings,
                                   sizeof bindings / sizeof bindings[0], st) != 0)
        return -1;
    ing__metrics_help();
    if (st->cfg.pipeline.enabled) {
        st->pipeline = ing_pipeline_new(svc->loop, svc->redis, &st->log, &st->cfg.pipeline);
        if (!st->pipeline)
            return -1;
    }
    cdp_log(CDP_LOG_INFO, "ingestion configured", "{s:i,s:I,s:I,s:b,s:s,s:s,s:s,s:s}",
            "log_shards", (int)st->cfg.log.shards, "dedup_window_s",
            (json_int_t)st->cfg.log.dedup_window_s, "log_maxlen", (json_int_t)st->cfg.log.maxlen,
            "pipeline", st->cfg.pipeline.enabled, "identity", st->cfg.pipeline.identity_addr,
            "profile", st->cfg.pipeline.profile_addr, "consent", st->cfg.pipeline.consent_addr,
            "segmentation", st->cfg.pipeline.segmentation_addr);
    return 0;
}

static void ing__on_redis_state(cdp_service *svc, int up)
{
    ing_state *st = svc->state;
    if (st && st->pipeline)
        ing_pipeline_set_redis_up(st->pipeline, up);
}

typedef struct {
    cdp_service *svc;
    void (*done)(cdp_service *svc);
} ing__stopping;

static void ing__pipeline_stopped(void *ud)
{
    ing__stopping *s = ud;
    cdp_service *svc = s->svc;
    void (*done)(cdp_service *) = s->done;
    free(s);
    done(svc);
}

static void ing__stop(cdp_service *svc, void (*done)(cdp_service *svc))
{
    ing_state *st = svc->state;
    ing__stopping *s = st && st->pipeline ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        done(svc);
        return;
    }
    s->svc = svc;
    s->done = done;
    ing_pipeline_stop(st->pipeline, ing__pipeline_stopped, s);
}

static void ing__destroy(cdp_service *svc)
{
    ing_state *st = svc->state;
    if (!st)
        return;
    ing_pipeline_free(st->pipeline);
    free(st);
    svc->state = NULL;
}

const cdp_service_def ing_service_def = {
    .name = "ingestion",
    .grpc_service = "cdp.v1.Ingestion",
    .port = CDP_PORT_INGESTION,
    .metrics_port = CDP_METRICS_PORT_BASE + 1,
    .init = ing__init,
    .on_redis_state = ing__on_redis_state,
    .stop = ing__stop,
    .destroy = ing__destroy,
};
