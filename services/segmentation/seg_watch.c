/* seg_watch: WatchSegment over the change stream cdp:seg:{changes}:log.
 *
 * One reader per replica blocks on the stream (XREAD BLOCK on its OWN
 * Redis client, never the service's shared one) and fans every new entry
 * out to the live watchers. A watcher with a cursor first catches up with
 * XRANGE pages from its cursor on the shared client and goes live once a
 * short page brought it to (or past) the reader's position; a live watcher
 * skips entries at or before its cursor, so nothing is sent twice. A cursor
 * older than what the stream retains simply resumes at the oldest retained
 * entry (trimmed history is gone). A client that cannot keep up (1024
 * messages queued) is finished with RESOURCE_EXHAUSTED naming the cursor
 * to resume from. On shutdown every stream ends with OK. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "cdp/v1/segmentation.pb-c.h"
#include "cdp_log.h"
#include "cdp_metrics.h"
#include "seg_load.h"
#include "seg_service.h"

enum { SEG_WATCH_PAGE = 500, SEG_CURSOR_MAX = 48, SEG_WATCH_RETRY_MS = 500 };

typedef enum { SEG_W_CHECK = 0, SEG_W_WAIT, SEG_W_CATCHUP, SEG_W_LIVE } seg_w_state;

typedef struct seg_watcher seg_watcher;
struct seg_watcher {
    seg_watcher *next;
    seg_svc *s;
    cdp_rpc_call *call;
    char *seg;                 /* NULL: every segment */
    char cursor[SEG_CURSOR_MAX];
    int from_now;              /* empty `after`: start at the reader's position */
    seg_w_state state;
    int inflight;              /* a command of ours is in flight */
    int finished;
};

struct seg_watch_hub {
    seg_watcher *list;
    cdp_redis *blk;
    uv_timer_t retry;
    int have_last;
    char last[SEG_CURSOR_MAX];
    int reading, stopping, count;
};

/* ------------------------------------------------------------------ stream ids */

/* Parses "ms-seq" or "ms" into two numbers. Returns 0 or -1. */
static int seg__id_parse(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    *ms = strtoull(s, &end, 10);
    *seq = 0;
    if (end == s)
        return -1;
    if (*end == '-') {
        const char *p = end + 1;
        if (!*p || *p == '-' || *p == '+')
            return -1;
        *seq = strtoull(p, &end, 10);
    }
    return *end ? -1 : 0;
}

static int seg__id_cmp(const char *a, const char *b)
{
    uint64_t am, as, bm, bs;
    if (seg__id_parse(a, &am, &as) != 0 || seg__id_parse(b, &bm, &bs) != 0)
        return 0;
    if (am != bm)
        return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}

/* ------------------------------------------------------------------ watchers */

static void seg__watcher_maybe_free(seg_watcher *w)
{
    if (w->finished && !w->inflight) {
        free(w->seg);
        free(w);
    }
}

static void seg__watcher_unlink(seg_watcher *w)
{
    seg_watch_hub *h = w->s->watch;
    for (seg_watcher **p = &h->list; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            h->count--;
            cdp_metrics_set("cdp_segmentation_watchers", "", h->count);
            break;
        }
}

/* Finishes the call (once) and forgets the watcher. */
static void seg__watcher_end(seg_watcher *w, grpc_status_code code, const char *msg)
{
    if (w->finished)
        return;
    w->finished = 1;
    seg__watcher_unlink(w);
    cdp_rpc_finish(w->call, code, "%s", msg);
    seg__watcher_maybe_free(w);
}

static void seg__on_cancel(cdp_rpc_call *c, void *ud)
{
    (void)c;
    seg__watcher_end(ud, GRPC_STATUS_CANCELLED, "cancelled");
}

/* Sends one stream entry (id, field/value array) if it is for w. Returns
 * -1 when the watcher was ended. */
static int seg__send_entry(seg_watcher *w, const char *id, const redisReply *fields)
{
    if (seg__id_cmp(id, w->cursor) <= 0)
        return 0;
    const char *f[7] = { 0 };
    static const char *const names[7] = { "cid", "seg", "m", "kind", "at", "ev", "mid" };
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        for (int k = 0; k < 7; k++)
            if (fields->element[i]->type == REDIS_REPLY_STRING &&
                !strcmp(fields->element[i]->str, names[k]))
                f[k] = fields->element[i + 1]->str;
    snprintf(w->cursor, sizeof(w->cursor), "%s", id);
    if (!f[0] || !f[1] || !f[2] || !f[3] || (w->seg && strcmp(w->seg, f[1])))
        return 0;
    Cdp__V1__MembershipChange mc = CDP__V1__MEMBERSHIP_CHANGE__INIT;
    Google__Protobuf__Timestamp at;
    int64_t ms = 0;
    if (f[4])
        cdp_parse_i64(f[4], strlen(f[4]), &ms);
    seg_ts_from_ms(&at, ms);
    mc.change_id = (char *)f[0];
    mc.segment_id = (char *)f[1];
    mc.master_id = (char *)f[2];
    mc.kind = !strcmp(f[3], "entered") ? CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED
                                       : CDP__V1__CHANGE_KIND__CHANGE_KIND_EXITED;
    mc.at = &at;
    mc.message_id = (char *)(f[6] ? f[6] : "");
    mc.cursor = (char *)id;
    json_t *ev = f[5] ? json_loads(f[5], 0, NULL) : NULL;
    size_t nev = json_is_array(ev) ? json_array_size(ev) : 0;
    char **names_ev = calloc(nev ? nev : 1, sizeof(char *));
    for (size_t i = 0; names_ev && i < nev; i++) {
        const char *s = json_string_value(json_array_get(ev, i));
        names_ev[mc.n_event_names++] = (char *)(s ? s : "");
    }
    mc.event_names = names_ev;
    int rc = cdp_rpc_stream_send(w->call, &mc.base);
    free(names_ev);
    json_decref(ev);
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "client too slow; resume with after=%s", id);
        seg__watcher_end(w, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
        return -1;
    }
    return 0;
}

/* Sends every entry of an XRANGE/XREAD entry list to w. Returns -1 when
 * the watcher was ended. */
static int seg__send_entries(seg_watcher *w, const redisReply *entries)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        if (seg__send_entry(w, e->element[0]->str, e->element[1]) != 0)
            return -1;
    }
    return 0;
}

/* The reply to w's command in flight arrived. Returns 1 when it is usable;
 * 0 when the watcher was already finished (it is freed now) or the reply is
 * a failure (the watcher is ended with its status). */
static int seg__watcher_reply(seg_watcher *w, const redisReply *reply, const char *err)
{
    w->inflight = 0;
    if (w->finished) {
        seg__watcher_maybe_free(w);
        return 0;
    }
    char msg[SEG_ERR_MAX];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof(msg));
    if (code != GRPC_STATUS_OK) {
        seg__watcher_end(w, code, msg);
        return 0;
    }
    return 1;
}

static void seg__catchup(seg_watcher *w);

/* Starts w: it waits while the reader does not know its position, goes
 * live at that position when it has no cursor, else catches up. */
static void seg__watcher_start(seg_watcher *w)
{
    seg_watch_hub *h = w->s->watch;
    if (!h->have_last) {
        w->state = SEG_W_WAIT;   /* the reader starts it again once it knows its position */
    } else if (w->from_now) {
        snprintf(w->cursor, sizeof(w->cursor), "%s", h->last);
        w->state = SEG_W_LIVE;
    } else {
        seg__catchup(w);
    }
}

static void seg__range_reply(redisReply *reply, const char *err, void *ud)
{
    seg_watcher *w = ud;
    seg_watch_hub *h = w->s->watch;
    if (!seg__watcher_reply(w, reply, err))
        return;
    if (reply->type != REDIS_REPLY_ARRAY) {
        seg__watcher_end(w, GRPC_STATUS_INTERNAL, "malformed stream reply");
        return;
    }
    if (seg__send_entries(w, reply) != 0)
        return;
    if (reply->elements >= SEG_WATCH_PAGE) {
        seg__catchup(w);
    } else if (!h->have_last) {
        w->state = SEG_W_WAIT;   /* the reader starts it again once it knows its position */
    } else if (seg__id_cmp(w->cursor, h->last) >= 0) {
        w->state = SEG_W_LIVE;
    } else {
        seg__catchup(w);
    }
}

/* Reads the next page after w->cursor. */
static void seg__catchup(seg_watcher *w)
{
    char start[SEG_CURSOR_MAX + 2], count[16];
    snprintf(start, sizeof(start), "(%s", w->cursor);
    snprintf(count, sizeof(count), "%d", SEG_WATCH_PAGE);
    w->state = SEG_W_CATCHUP;
    w->inflight = 1;
    cdp_redis_commandf(w->s->redis, SEG_KEY_CHANGES, seg__range_reply, w,
                       "XRANGE %s %s + COUNT %s", SEG_KEY_CHANGES, start, count);
}

/* The reader knows its position: start watchers that waited for it. */
static void seg__start_waiting(seg_watch_hub *h)
{
    for (seg_watcher *w = h->list, *next; w; w = next) {
        next = w->next;
        if (w->state == SEG_W_WAIT)
            seg__watcher_start(w);
    }
}

/* ------------------------------------------------------------------ the reader */

static void seg__read(seg_svc *s);

static void seg__retry_tick(uv_timer_t *t)
{
    seg__read(t->data);
}

static void seg__read_later(seg_svc *s)
{
    if (!s->watch->stopping)
        uv_timer_start(&s->watch->retry, seg__retry_tick, SEG_WATCH_RETRY_MS, 0);
}

/* Takes the id of the last entry of an XREAD/XREVRANGE entry list (when
 * there is one) as the reader's position. */
static void seg__take_last(seg_watch_hub *h, const redisReply *entries)
{
    if (!entries->elements)
        return;
    const redisReply *e = entries->element[entries->elements - 1];
    if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
        e->element[0]->type == REDIS_REPLY_STRING)
        snprintf(h->last, sizeof(h->last), "%s", e->element[0]->str);
}

static void seg__xread_reply(redisReply *reply, const char *err, void *ud)
{
    seg_svc *s = ud;
    seg_watch_hub *h = s->watch;
    h->reading = 0;
    if (h->stopping)
        return;
    if (err || !reply || reply->type == REDIS_REPLY_ERROR) {
        seg__read_later(s);
        return;
    }
    /* [[key, [[id, fields], ...]]] or nil on timeout */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
        const redisReply *entries = reply->element[0]->element[1];
        for (seg_watcher *w = h->list, *next; w; w = next) {
            next = w->next;
            if (w->state == SEG_W_LIVE)
                seg__send_entries(w, entries);
        }
        seg__take_last(h, entries);
    }
    seg__read(s);
}

static void seg__last_reply(redisReply *reply, const char *err, void *ud)
{
    seg_svc *s = ud;
    seg_watch_hub *h = s->watch;
    h->reading = 0;
    if (h->stopping)
        return;
    if (err || !reply || reply->type != REDIS_REPLY_ARRAY) {
        seg__read_later(s);
        return;
    }
    snprintf(h->last, sizeof(h->last), "0-0"); /* an empty stream */
    seg__take_last(h, reply);                  /* XREVRANGE COUNT 1: the newest entry */
    h->have_last = 1;
    seg__start_waiting(h);
    seg__read(s);
}

static void seg__read(seg_svc *s)
{
    seg_watch_hub *h = s->watch;
    if (h->stopping || h->reading)
        return;
    h->reading = 1;
    if (!h->have_last) {
        cdp_redis_commandf(h->blk, SEG_KEY_CHANGES, seg__last_reply, s,
                           "XREVRANGE %s + - COUNT 1", SEG_KEY_CHANGES);
        return;
    }
    char block[32], count[16];
    snprintf(block, sizeof(block), "%" PRId64, s->cfg.watch_block_ms);
    snprintf(count, sizeof(count), "%d", SEG_WATCH_PAGE);
    const char *argv[] = { "XREAD", "COUNT", count, "BLOCK", block, "STREAMS", SEG_KEY_CHANGES,
                           h->last };
    size_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = strlen(argv[i]);
    cdp_redis_command(h->blk, SEG_KEY_CHANGES, strlen(SEG_KEY_CHANGES), seg__xread_reply, s, 8,
                      argv, len);
}

int seg_watch_init(seg_svc *s)
{
    seg_watch_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    s->watch = h;
    cdp_redis_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.addrs = s->cfg.redis_addrs;
    ro.connect_timeout_ms = (int)s->cfg.redis_connect_timeout_ms;
    /* a blocked read legitimately takes watch_block_ms before it answers */
    ro.command_timeout_ms = (int)(s->cfg.redis_command_timeout_ms + s->cfg.watch_block_ms);
    h->blk = cdp_redis_new(s->svc->loop, &ro);
    if (!h->blk)
        return -1;
    uv_timer_init(s->svc->loop, &h->retry);
    h->retry.data = s;
    cdp_redis_start(h->blk);
    seg__read(s);
    return 0;
}

/* ------------------------------------------------------------------ handler */

static void seg__exists_reply(redisReply *reply, const char *err, void *ud)
{
    seg_watcher *w = ud;
    if (!seg__watcher_reply(w, reply, err))
        return;
    if (w->seg && (reply->type != REDIS_REPLY_INTEGER || reply->integer == 0)) {
        char msg[SEG_ERR_MAX];
        snprintf(msg, sizeof(msg), "segment not found: %s", w->seg);
        seg__watcher_end(w, GRPC_STATUS_NOT_FOUND, msg);
        return;
    }
    seg__watcher_start(w);
}

void seg_watch_segment(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__WatchSegmentRequest *req = (const Cdp__V1__WatchSegmentRequest *)msg;
    seg_svc *s = ud;
    seg_watch_hub *h = s->watch;
    uint64_t ms, seq;
    if (req->segment_id[0] && !seg_id_valid(req->segment_id)) {
        cdp_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "segment_id: malformed");
        return;
    }
    if (req->after[0] &&
        (strlen(req->after) >= SEG_CURSOR_MAX || seg__id_parse(req->after, &ms, &seq) != 0)) {
        cdp_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "after: must be a cursor from MembershipChange.cursor "
                       "(e.g. 1700000000000-0) or \"0\"");
        return;
    }
    if (s->stopping) {
        cdp_rpc_finish(call, GRPC_STATUS_UNAVAILABLE, "shutting down");
        return;
    }
    seg_watcher *w = calloc(1, sizeof(*w));
    if (!w || (req->segment_id[0] && !(w->seg = strdup(req->segment_id)))) {
        free(w);
        cdp_rpc_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->s = s;
    w->call = call;
    w->from_now = !req->after[0];
    snprintf(w->cursor, sizeof(w->cursor), "%s", req->after[0] ? req->after : "0-0");
    if (!strcmp(w->cursor, "0"))
        snprintf(w->cursor, sizeof(w->cursor), "0-0");
    w->next = h->list;
    h->list = w;
    h->count++;
    cdp_metrics_set("cdp_segmentation_watchers", "", h->count);
    cdp_rpc_call_on_cancel(call, seg__on_cancel, w);
    w->inflight = 1;
    if (w->seg)
        cdp_redis_commandf(s->redis, SEG_KEY_DEFS, seg__exists_reply, w, "HEXISTS %s %s",
                           SEG_KEY_DEFS, w->seg);
    else
        cdp_redis_commandf(s->redis, SEG_KEY_DEFS, seg__exists_reply, w, "EXISTS %s",
                           SEG_KEY_DEFS_VERSION);
}

/* ------------------------------------------------------------------ shutdown */

static void seg__blk_closed(void *ud)
{
    (void)ud;
}

void seg_watch_stop(seg_svc *s)
{
    seg_watch_hub *h = s->watch;
    if (!h || h->stopping)
        return;
    h->stopping = 1;
    while (h->list)
        seg__watcher_end(h->list, GRPC_STATUS_OK, "server shutting down");
    uv_timer_stop(&h->retry);
    uv_close((uv_handle_t *)&h->retry, NULL);
    cdp_redis_close(h->blk, seg__blk_closed, NULL);
    h->blk = NULL;
}

void seg_watch_free(seg_svc *s)
{
    free(s->watch);
    s->watch = NULL;
}
