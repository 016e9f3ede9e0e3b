/* act_intake: the consumer of segmentation's change stream
 * (ACT_CHANGES_KEY, consumer group "activation", docs/activation.md).
 *
 * One batch at a time. After every (re)connect, first this consumer's own
 * pending entries (XREADGROUP ... from 0, paging forward): a process
 * restarted under the same consumer name (the same host, or
 * CDP_ACTIVATION_CONSUMER) takes up at once what it had read before it
 * died. Then a blocking XREADGROUP of new entries on a
 * dedicated Redis connection (so the block never delays the service's
 * other commands), or, every CDP_ACTIVATION_CLAIM_INTERVAL_MS, an
 * XAUTOCLAIM round over entries pending longer than
 * CDP_ACTIVATION_CLAIM_IDLE_MS (a crashed replica's, or this one's failed
 * ones). For each entry, every enabled destination with a matching
 * trigger gets one outbox delivery, with the profile (GetProfile) in its
 * payload; the entry is XACKed only after every enqueue script
 * succeeded. If profile or Redis fails the entry stays pending and comes
 * back with a claim round: a change is never dropped. Enqueue is
 * idempotent (the delivery id is derived from destination and change),
 * so a change read twice makes one delivery. A malformed entry is logged,
 * counted and acknowledged (it can never succeed). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_msg.h"
#include "act_service.h"
#include "cdp/v1/profile.pb-c.h"
#include "cdp_log.h"
#include "cdp_metrics.h"

enum {
    ACT_INTAKE_RETRY_MS = 500,     /* after a failed read */
    ACT_INTAKE_WAIT_MS = 100,      /* while the catalogue is not loaded */
    ACT_CURSOR_MAX = 64,
    ACT_NUM_MAX = 24,
    ACT_MAX_ARGV = 12,
    ACT_PROFILE_TIMELINE = 1,      /* the timeline is dropped anyway */
};

struct act_intake {
    act_svc *as;
    cdp_redis *blk;
    uv_timer_t timer;       /* retry / wait */
    uv_timer_t claim_timer;
    int timers_open;
    int up, group_ready, busy, claim_due, stopping, blk_closed, closing;
    int own_pending;        /* still reading this consumer's pending entries */
    size_t batch_left;      /* entries of the current batch still in work */
    char claim_cursor[ACT_CURSOR_MAX];
    char own_cursor[ACT_CURSOR_MAX];
    void (*done)(void *ud);
    void *done_ud;
};

/* One entry in work. */
typedef struct {
    act_intake *in;
    char *sid;              /* stream entry id */
    act_change c;
    char (*dest_ids)[ACT_ID_MAX + 1];  /* matching destinations */
    size_t n_dests;
    size_t pending;
    int failed;
} act_entry;

static void act__next(act_intake *in);

static void act__changes(const char *result)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    cdp_metrics_inc("cdp_activation_changes_total", labels, 1);
}

static void act__maybe_stopped(act_intake *in);

/* ------------------------------------------------------------------ entries */

static void act__entry_free(act_entry *e)
{
    act_intake *in = e->in;
    act_change_clear(&e->c);
    free(e->sid);
    free(e->dest_ids);
    free(e);
    if (--in->batch_left == 0) {
        if (in->stopping)
            act__maybe_stopped(in);
        else
            act__next(in);
    }
}

static void act__acked(redisReply *reply, const char *err, void *ud)
{
    act_entry *e = ud;
    if (err || !reply || reply->type == REDIS_REPLY_ERROR)
        cdp_log(CDP_LOG_WARN, "cannot acknowledge a change; it will be read again", "{s:s,s:s}",
                "entry", e->sid, "error", err ? err : reply ? reply->str : "no reply");
    act__entry_free(e);
}

static void act__ack(act_entry *e)
{
    const char *argv[] = {"XACK", ACT_CHANGES_KEY, ACT_CHANGES_GROUP, e->sid};
    size_t len[4];
    for (int i = 0; i < 4; i++)
        len[i] = strlen(argv[i]);
    cdp_redis_command(e->in->as->svc->redis, ACT_CHANGES_KEY, strlen(ACT_CHANGES_KEY), act__acked,
                      e, 4, argv, len);
}

/* Leaves the entry pending: a later claim round brings it back. */
static void act__entry_fail(act_entry *e, const char *why)
{
    act__changes("failed");
    cdp_log(CDP_LOG_WARN, "change left pending for a retry", "{s:s,s:s,s:s}", "entry", e->sid,
            "change", e->c.cid ? e->c.cid : "", "error", why);
    act__entry_free(e);
}

/* One enqueue (or the issuing hold) is over; the last one acknowledges
 * the entry, or leaves it pending if any failed. */
static void act__settle(act_entry *e)
{
    if (--e->pending > 0)
        return;
    if (e->failed) {
        act__entry_fail(e, "enqueue failed");
        return;
    }
    /* wake the workers of the destinations that got something */
    for (size_t i = 0; i < e->n_dests; i++) {
        act_dest *d = act_dest_find(e->in->as, e->dest_ids[i]);
        if (d)
            act_outbox_kick(d, 0);
    }
    act__changes("enqueued");
    act__ack(e);
}

static void act__enqueued(redisReply *reply, const char *err, void *ud)
{
    act_entry *e = ud;
    char msg[ACT_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        reply->type != REDIS_REPLY_INTEGER) {
        if (!e->failed)
            cdp_log(CDP_LOG_WARN, "cannot enqueue a delivery", "{s:s,s:s}", "change", e->c.cid,
                    "error", msg[0] ? msg : "unexpected reply");
        e->failed = 1;
    } else {
        cdp_metrics_inc("cdp_activation_enqueued_total",
                        reply->integer ? "result=\"new\"" : "result=\"duplicate\"", 1);
    }
    act__settle(e);
}

/* Enqueues one delivery of the entry for destination def. */
static int act__enqueue_one(act_entry *e, const Cdp__V1__Destination *def,
                            const Cdp__V1__ProfileView *profile)
{
    act_svc *as = e->in->as;
    char id[ACT_DELIVERY_ID_MAX];
    if (act_delivery_id(def->id, e->c.cid, id) != 0)
        return -1;
    Cdp__V1__ActivationMessage m = CDP__V1__ACTIVATION_MESSAGE__INIT;
    Google__Protobuf__Timestamp at;
    Cdp__V1__ProfileView pv;
    int64_t now = cdp_now_ms();
    act_ts_set(&at, e->c.at_ms > 0 ? e->c.at_ms : now);
    m.delivery_id = id;
    m.destination_id = def->id;
    m.channel = (char *)act_dest_channel(def);
    m.kind = e->c.kind;
    m.segment_id = e->c.seg;
    m.master_id = e->c.master;
    m.occurred_at = &at;
    m.event_names = e->c.ev;
    m.n_event_names = e->c.n_ev;
    m.change_id = e->c.cid;
    if (profile) {
        pv = *profile;
        pv.n_timeline = 0;
        pv.timeline = NULL;
    } else {
        cdp__v1__profile_view__init(&pv);
        pv.master_id = e->c.master;
    }
    m.profile = &pv;
    size_t blen = protobuf_c_message_get_packed_size(&m.base);
    uint8_t *body = malloc(blen ? blen : 1);
    char *rec = act_record_new(&e->c, now);
    char *keys[ACT_KEY_COUNT];
    size_t klen[ACT_KEY_COUNT];
    if (!body || !rec || act_keys_make(def->id, keys, klen) != 0) {
        free(body);
        free(rec);
        return -1;
    }
    protobuf_c_message_pack(&m.base, body);
    char snow[ACT_NUM_MAX], sret[ACT_NUM_MAX];
    snprintf(snow, sizeof(snow), "%" PRId64, now);
    snprintf(sret, sizeof(sret), "%" PRId64, as->cfg.retention_s * 1000);
    const char *args[] = {id, snow, rec, (const char *)body, sret};
    size_t alen[] = {strlen(id), strlen(snow), strlen(rec), blen, strlen(sret)};
    e->pending++;
    cdp_redis_eval(as->svc->redis, as->s_enqueue, act__enqueued, e, ACT_KEY_COUNT,
                   (const char **)keys, klen, 5, args, alen);
    act_keys_free(keys);
    free(body);
    free(rec);
    return 0;
}

static void act__profile_done(grpc_status_code code, const char *details,
                              const ProtobufCMessage *resp, void *ud)
{
    act_entry *e = ud;
    const Cdp__V1__ProfileView *pv = (const Cdp__V1__ProfileView *)resp;
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_NOT_FOUND) {
        char why[ACT_ERR_MAX];
        snprintf(why, sizeof(why), "profile unavailable: %s", details ? details : "");
        act__entry_fail(e, why);
        return;
    }
    if (code == GRPC_STATUS_NOT_FOUND)
        cdp_log(CDP_LOG_WARN, "profile not found; delivering the change without it",
                "{s:s,s:s}", "change", e->c.cid, "master_id", e->c.master);
    /* held at 1 while issuing, so early replies cannot finish the entry */
    e->pending = 1;
    for (size_t i = 0; i < e->n_dests; i++) {
        act_dest *d = act_dest_find(e->in->as, e->dest_ids[i]);
        /* a destination deleted meanwhile gets nothing */
        if (d && act__enqueue_one(e, d->def, pv) != 0)
            e->failed = 1;
    }
    act__settle(e);
}

/* Starts the work of one stream entry [id, [field, value, ...]]. */
static void act__entry_start(act_intake *in, const redisReply *entry)
{
    act_svc *as = in->as;
    act_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return;  /* it stays pending */
    e->in = in;
    in->batch_left++;
    const redisReply *fields = entry->element[1];
    e->sid = strndup(entry->element[0]->str, entry->element[0]->len);
    size_t n = fields->type == REDIS_REPLY_ARRAY ? fields->elements : 0;
    char **kv = calloc(n ? n : 1, sizeof(char *));
    size_t *kvlen = calloc(n ? n : 1, sizeof(size_t));
    if (!e->sid || !kv || !kvlen) {
        free(kv);
        free(kvlen);
        act__entry_free(e);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        kv[i] = fields->element[i]->str ? fields->element[i]->str : "";
        kvlen[i] = fields->element[i]->str ? fields->element[i]->len : 0;
    }
    char err[ACT_ERR_MAX];
    int rc = act_change_parse(&e->c, kv, kvlen, n, err, sizeof(err));
    free(kv);
    free(kvlen);
    if (rc != 0) {
        act__changes("malformed");
        cdp_log(CDP_LOG_ERROR, "malformed change entry; acknowledged and skipped",
                "{s:s,s:s}", "entry", e->sid, "error", err);
        act__ack(e);
        return;
    }
    size_t count = 0;
    for (act_dest *d = as->dests; d; d = d->next)
        count++;
    e->dest_ids = calloc(count ? count : 1, sizeof(*e->dest_ids));
    if (!e->dest_ids) {
        act__entry_fail(e, "out of memory");
        return;
    }
    for (act_dest *d = as->dests; d; d = d->next)
        if (!d->gone && act_dest_matches(d->def, e->c.kind, e->c.seg, e->c.ev, e->c.n_ev))
            snprintf(e->dest_ids[e->n_dests++], ACT_ID_MAX + 1, "%s", d->id);
    if (e->n_dests == 0) {
        act__changes("no_trigger");
        act__ack(e);
        return;
    }
    Cdp__V1__GetProfileRequest req = CDP__V1__GET_PROFILE_REQUEST__INIT;
    req.master_id = e->c.master;
    req.timeline_limit = ACT_PROFILE_TIMELINE;
    if (cdp_rpc_unary(as->profile, &cdp__v1__profile__descriptor, "GetProfile", &req.base,
                      (int)as->cfg.rpc_timeout_ms, act__profile_done, e) != 0)
        act__entry_fail(e, "profile GetProfile is not available");
}

/* Takes the entries array [[id, fields], ...] of a read or claim. */
static void act__take(act_intake *in, const redisReply *entries)
{
    /* held at 1 while starting, so entries finishing at once cannot start
     * the next read */
    in->batch_left++;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *en = entries->element[i];
        if (en->type == REDIS_REPLY_ARRAY && en->elements == 2 &&
            en->element[0]->type == REDIS_REPLY_STRING)
            act__entry_start(in, en);
    }
    in->batch_left--;
}

/* ------------------------------------------------------------------ reads */

static void act__on_timer(uv_timer_t *t)
{
    act__next(t->data);
}

static void act__retry_later(act_intake *in, uint64_t ms)
{
    if (!in->stopping)
        uv_timer_start(&in->timer, act__on_timer, ms, 0);
}

static int act__read_failed(act_intake *in, const redisReply *reply, const char *err)
{
    in->busy = 0;
    if (in->stopping) {
        act__maybe_stopped(in);
        return 1;
    }
    if (reply && reply->type != REDIS_REPLY_ERROR)
        return 0;
    const char *why = err ? err : reply ? reply->str : "no reply";
    if (strstr(why, "NOGROUP"))
        in->group_ready = 0;
    cdp_log(CDP_LOG_WARN, "cannot read the change stream", "{s:s}", "error", why);
    uv_timer_start(&in->timer, act__on_timer, ACT_INTAKE_RETRY_MS, 0);
    return 1;
}

/* The entries of an XREADGROUP reply [[key, entries]], or NULL. */
static const redisReply *act__xread_entries(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return NULL;
    const redisReply *s = r->element[0];
    if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 || s->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    return s->element[1];
}

static void act__after_batch(act_intake *in)
{
    if (in->batch_left == 0)
        act__next(in);
}

static void act__on_read(redisReply *reply, const char *err, void *ud)
{
    act_intake *in = ud;
    if (act__read_failed(in, reply, err))
        return;
    const redisReply *entries = act__xread_entries(reply);
    if (entries)
        act__take(in, entries);
    act__after_batch(in);
}

/* Own pending entries: the next page after own_cursor, or the end. */
static void act__on_own(redisReply *reply, const char *err, void *ud)
{
    act_intake *in = ud;
    if (act__read_failed(in, reply, err))
        return;
    const redisReply *entries = act__xread_entries(reply);
    if (!entries || entries->elements == 0) {
        in->own_pending = 0;
    } else {
        const redisReply *last = entries->element[entries->elements - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
            last->element[0]->type == REDIS_REPLY_STRING)
            snprintf(in->own_cursor, sizeof(in->own_cursor), "%s", last->element[0]->str);
        else
            in->own_pending = 0;
        cdp_log(CDP_LOG_INFO, "taking up own pending changes", "{s:i}", "entries",
                (int)entries->elements);
        act__take(in, entries);
    }
    act__after_batch(in);
}

static void act__on_claim(redisReply *reply, const char *err, void *ud)
{
    act_intake *in = ud;
    if (act__read_failed(in, reply, err))
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        in->claim_due = 0;
        act__after_batch(in);
        return;
    }
    snprintf(in->claim_cursor, sizeof(in->claim_cursor), "%s", reply->element[0]->str);
    if (strcmp(in->claim_cursor, "0-0") == 0)
        in->claim_due = 0;
    if (reply->element[1]->elements > 0) {
        cdp_log(CDP_LOG_INFO, "claimed pending changes", "{s:i}", "entries",
                (int)reply->element[1]->elements);
        act__take(in, reply->element[1]);
    }
    act__after_batch(in);
}

static void act__on_group(redisReply *reply, const char *err, void *ud)
{
    act_intake *in = ud;
    in->busy = 0;
    if (in->stopping) {
        act__maybe_stopped(in);
        return;
    }
    if (!reply || (reply->type == REDIS_REPLY_ERROR && !strstr(reply->str, "BUSYGROUP"))) {
        cdp_log(CDP_LOG_WARN, "cannot create the change-stream group", "{s:s}", "error",
                err ? err : reply->str);
        uv_timer_start(&in->timer, act__on_timer, ACT_INTAKE_RETRY_MS, 0);
        return;
    }
    in->group_ready = 1;
    act__next(in);
}

static void act__cmd(act_intake *in, cdp_redis *r, cdp_redis_cb cb, int argc, const char **argv)
{
    size_t len[ACT_MAX_ARGV];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    in->busy = 1;
    cdp_redis_command(r, ACT_CHANGES_KEY, strlen(ACT_CHANGES_KEY), cb, in, argc, argv, len);
}

static void act__next(act_intake *in)
{
    act_svc *as = in->as;
    if (in->stopping || !in->up || in->busy || in->batch_left > 0)
        return;
    if (!as->loaded) {
        act__retry_later(in, ACT_INTAKE_WAIT_MS);
        return;
    }
    char count[ACT_NUM_MAX];
    snprintf(count, sizeof(count), "%" PRId64, as->cfg.batch);
    if (!in->group_ready) {
        const char *argv[] = {"XGROUP", "CREATE", ACT_CHANGES_KEY, ACT_CHANGES_GROUP, "0",
                              "MKSTREAM"};
        act__cmd(in, as->svc->redis, act__on_group, 6, argv);
    } else if (in->own_pending) {
        const char *argv[] = {"XREADGROUP", "GROUP", ACT_CHANGES_GROUP, as->cfg.consumer, "COUNT",
                              count, "STREAMS", ACT_CHANGES_KEY, in->own_cursor};
        act__cmd(in, as->svc->redis, act__on_own, 9, argv);
    } else if (in->claim_due) {
        char idle[ACT_NUM_MAX];
        snprintf(idle, sizeof(idle), "%" PRId64, as->cfg.claim_idle_ms);
        const char *argv[] = {"XAUTOCLAIM", ACT_CHANGES_KEY, ACT_CHANGES_GROUP, as->cfg.consumer,
                              idle, in->claim_cursor, "COUNT", count};
        act__cmd(in, as->svc->redis, act__on_claim, 8, argv);
    } else {
        char block[ACT_NUM_MAX];
        snprintf(block, sizeof(block), "%" PRId64, as->cfg.block_ms);
        const char *argv[] = {"XREADGROUP", "GROUP", ACT_CHANGES_GROUP, as->cfg.consumer,
                              "COUNT", count, "BLOCK", block, "STREAMS", ACT_CHANGES_KEY, ">"};
        act__cmd(in, in->blk, act__on_read, 11, argv);
    }
}

static void act__on_claim_timer(uv_timer_t *t)
{
    act_intake *in = t->data;
    if (!in->claim_due) {
        in->claim_due = 1;
        strcpy(in->claim_cursor, "0-0");
    }
    act__next(in);
}

/* ------------------------------------------------------------------ lifecycle */

act_intake *act_intake_new(act_svc *as)
{
    act_intake *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->as = as;
    strcpy(in->claim_cursor, "0-0");
    uv_timer_init(as->svc->loop, &in->timer);
    uv_timer_init(as->svc->loop, &in->claim_timer);
    in->timer.data = in->claim_timer.data = in;
    in->timers_open = 2;
    cdp_redis_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.addrs = as->cfg.redis_addrs;
    ro.connect_timeout_ms = (int)as->cfg.redis_connect_ms;
    /* a blocked read legitimately takes block_ms before it answers */
    ro.command_timeout_ms = (int)(as->cfg.redis_command_ms + as->cfg.block_ms);
    in->blk = cdp_redis_new(as->svc->loop, &ro);
    if (!in->blk) {
        cdp_log(CDP_LOG_ERROR, "cannot create the change-stream Redis client", "{s:s}", "redis",
                as->cfg.redis_addrs);
        in->blk_closed = 1;
        return in;
    }
    cdp_redis_start(in->blk);
    return in;
}

void act_intake_set_up(act_intake *in, int up)
{
    if (!in || in->stopping)
        return;
    in->up = up;
    if (!up)
        return;
    /* after an outage the group may be gone (a Redis restarted empty) */
    in->group_ready = 0;
    in->own_pending = 1;
    strcpy(in->own_cursor, "0");
    in->claim_due = 1;
    strcpy(in->claim_cursor, "0-0");
    if (!uv_is_active((uv_handle_t *)&in->claim_timer))
        uv_timer_start(&in->claim_timer, act__on_claim_timer, (uint64_t)in->as->cfg.claim_interval_ms,
                       (uint64_t)in->as->cfg.claim_interval_ms);
    act__next(in);
}

static void act__timer_closed(uv_handle_t *h)
{
    act_intake *in = h->data;
    if (--in->timers_open == 0 && in->done)
        in->done(in->done_ud);
}

static void act__maybe_stopped(act_intake *in)
{
    if (!in->stopping || in->closing || in->busy || in->batch_left > 0 || !in->blk_closed)
        return;
    in->closing = 1;
    uv_close((uv_handle_t *)&in->timer, act__timer_closed);
    uv_close((uv_handle_t *)&in->claim_timer, act__timer_closed);
}

static void act__blk_closed(void *ud)
{
    act_intake *in = ud;
    in->blk = NULL;
    in->blk_closed = 1;
    act__maybe_stopped(in);
}

void act_intake_stop(act_intake *in, void (*done)(void *ud), void *ud)
{
    in->stopping = 1;
    in->done = done;
    in->done_ud = ud;
    uv_timer_stop(&in->timer);
    uv_timer_stop(&in->claim_timer);
    /* the blocked read fails with "closing"; entries in work finish */
    if (in->blk)
        cdp_redis_close(in->blk, act__blk_closed, in);
    else
        act__maybe_stopped(in);
}

void act_intake_free(act_intake *in)
{
    free(in);
}
