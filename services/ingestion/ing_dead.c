/* ing_dead: the dead-letter methods of cdp.v1.Ingestion.
 *
 * Dead letters live in one stream per log shard. ListDeadLetters pages
 * through the shards in order (shard 0 oldest first, then shard 1, ...);
 * a page token and a DeadLetter id are both "<shard>/<stream id>", the last
 * entry returned. ReplayDeadLetters moves entries back into their shard's
 * events stream with ing_log_replay, bypassing dedup (they were accepted
 * once), and deletes them from the dead-letter stream. */
#include <stdlib.h>
#include <string.h>

#include "cdp/v1/ingestion.pb-c.h"
#include <jansson.h>

#include "cdp_log.h"
#include "ing_service.h"

#define ING_PAGE_DEFAULT 100
#define ING_PAGE_MAX 1000
#define ING_REPLAY_CHUNK 500
#define ING_REPLAY_MAX_IDS 10000
#define ING_STREAM_ID_BUFSZ 48
#define ING_MS_PER_S 1000
#define ING_NS_PER_MS 1000000
#define ING_ERR_BUFSZ 256
#define ING_NUM_BUFSZ 24

/* ------------------------------------------------------------------ list */

typedef struct {
    ing_state *st;
    cdp_rpc_call *call;
    size_t want;                     /* page size */
    unsigned shard;                  /* shard being read */
    char start[ING_STREAM_ID_BUFSZ + 1]; /* XRANGE start: "-" or "(<id>" */
    Cdp__V1__DeadLetter **items;     /* collected so far */
    size_t n;
    char token[ING_DEAD_ID_BUFSZ];
} ing__list;

static void ing__dead_letter_free(Cdp__V1__DeadLetter *d)
{
    if (!d)
        return;
    free(d->id);
    free(d->message_id);
    free(d->reason);
    free(d->failed_at);
    if (d->event)
        cdp__v1__event__free_unpacked(d->event, NULL);
    free(d);
}

static void ing__list_free(ing__list *l)
{
    for (size_t i = 0; i < l->n; i++)
        ing__dead_letter_free(l->items[i]);
    free(l->items);
    free(l);
}

static char *ing__dup_bulk(const redisReply *r)
{
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
        return strdup("");
    char *s = malloc(r->len + 1);
    if (s) {
        memcpy(s, r->str, r->len);
        s[r->len] = '\0';
    }
    return s;
}

/* Builds a DeadLetter from one XRANGE entry [id, [field, value, ...]]. */
static Cdp__V1__DeadLetter *ing__dead_letter_from(unsigned shard, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    Cdp__V1__DeadLetter *d = calloc(1, sizeof *d);
    Google__Protobuf__Timestamp *ts = calloc(1, sizeof *ts);
    char id[ING_DEAD_ID_BUFSZ];
    if (!d || !ts) {
        free(d);
        free(ts);
        return NULL;
    }
    cdp__v1__dead_letter__init(d);
    /* Every string is malloc'd here (init points them at a static ""). */
    d->message_id = d->reason = NULL;
    google__protobuf__timestamp__init(ts);
    d->failed_at = ts;
    ing_dead_id_format(id, sizeof id, shard, e->element[0]->str);
    d->id = strdup(id);
    const redisReply *kv = e->element[1];
    for (size_t j = 0; kv->type == REDIS_REPLY_ARRAY && j + 1 < kv->elements; j += 2) {
        const char *f = kv->element[j]->str ? kv->element[j]->str : "";
        const redisReply *v = kv->element[j + 1];
        if (strcmp(f, "mid") == 0) {
            free(d->message_id);
            d->message_id = ing__dup_bulk(v);
        } else if (strcmp(f, "reason") == 0) {
            free(d->reason);
            d->reason = ing__dup_bulk(v);
        } else if (strcmp(f, "attempts") == 0 && v->str) {
            d->attempts = (int32_t)strtol(v->str, NULL, 10);
        } else if (strcmp(f, "failed_at") == 0 && v->str) {
            long long ms = strtoll(v->str, NULL, 10);
            ts->seconds = ms / ING_MS_PER_S;
            ts->nanos = (int32_t)((ms % ING_MS_PER_S) * ING_NS_PER_MS);
        } else if (strcmp(f, "ev") == 0 && v->type == REDIS_REPLY_STRING && !d->event) {
            d->event = cdp__v1__event__unpack(NULL, v->len, (const uint8_t *)v->str);
        }
    }
    if (!d->message_id)
        d->message_id = strdup("");
    if (!d->reason)
        d->reason = strdup("");
    if (!d->id || !d->message_id || !d->reason) {
        ing__dead_letter_free(d);
        return NULL;
    }
    return d;
}

static void ing__list_answer(ing__list *l)
{
    Cdp__V1__ListDeadLettersResponse resp = CDP__V1__LIST_DEAD_LETTERS_RESPONSE__INIT;
    resp.dead_letters = l->items;
    resp.n_dead_letters = l->n;
    resp.next_page_token = l->token;
    cdp_rpc_reply(l->call, &resp.base);
    ing__list_free(l);
}

static void ing__list_next(ing__list *l);

static void ing__list_read(redisReply *reply, const char *err, void *ud)
{
    ing__list *l = ud;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        cdp_rpc_fail(l->call, GRPC_STATUS_UNAVAILABLE, "redis unavailable: %s",
                     err ? err : (reply && reply->str ? reply->str : "unexpected reply"));
        ing__list_free(l);
        return;
    }
    size_t room = l->want - l->n;
    for (size_t i = 0; i < reply->elements && i < room; i++) {
        Cdp__V1__DeadLetter *d = ing__dead_letter_from(l->shard, reply->element[i]);
        if (d)
            l->items[l->n++] = d;
    }
    if (reply->elements > room) {
        /* More in this shard: the page is full and ends at its last entry. */
        if (l->n > 0)
            snprintf(l->token, sizeof l->token, "%s", l->items[l->n - 1]->id);
        ing__list_answer(l);
        return;
    }
    l->shard++;
    strcpy(l->start, "-");
    if (l->shard >= l->st->cfg.log.shards || l->n == l->want) {
        if (l->n == l->want && l->shard < l->st->cfg.log.shards)
            snprintf(l->token, sizeof l->token, "%s", l->items[l->n - 1]->id);
        ing__list_answer(l);
        return;
    }
    ing__list_next(l);
}

static void ing__list_next(ing__list *l)
{
    char key[ING_LOG_KEY_BUFSZ];
    char count[ING_NUM_BUFSZ];
    ing_log_key(key, sizeof key, l->shard, "dead");
    snprintf(count, sizeof count, "%zu", l->want - l->n + 1);
    const char *argv[] = {"XRANGE", key, l->start, "+", "COUNT", count};
    enum { argc = sizeof argv / sizeof argv[0] };
    size_t lens[argc];
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    cdp_redis_command(l->st->svc->redis, key, strlen(key), ing__list_read, l, argc, argv, lens);
}

void ing_dead_list(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    ing_state *st = ud;
    const Cdp__V1__ListDeadLettersRequest *req = (const Cdp__V1__ListDeadLettersRequest *)msg;
    if (req->page_size < 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must not be negative");
        return;
    }
    ing__list *l = calloc(1, sizeof *l);
    if (!l) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    l->st = st;
    l->call = call;
    l->want = req->page_size == 0 ? ING_PAGE_DEFAULT
              : req->page_size > ING_PAGE_MAX ? ING_PAGE_MAX : (size_t)req->page_size;
    strcpy(l->start, "-");
    if (req->page_token && req->page_token[0]) {
        char sid[ING_STREAM_ID_BUFSZ];
        if (ing_dead_id_parse(req->page_token, st->cfg.log.shards, &l->shard, sid, sizeof sid) != 0) {
            free(l);
            cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                         "page_token: not a token from a previous response");
            return;
        }
        snprintf(l->start, sizeof l->start, "(%s", sid);
    }
    l->items = calloc(l->want, sizeof *l->items);
    if (!l->items) {
        free(l);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    ing__list_next(l);
}

/* ------------------------------------------------------------------ replay */

typedef struct {
    ing_state *st;
    cdp_rpc_call *call;
    int all;                   /* replay everything, shard by shard */
    unsigned shard;            /* current shard in "all" mode */
    long long chunk_count;     /* result of the current script */
    long long total;
    int pending;               /* scripts in flight (ids mode) */
    ing_log_rc rc;
    char err[ING_ERR_BUFSZ];
    char (*sids)[ING_STREAM_ID_BUFSZ]; /* ids mode: parsed stream ids */
    const char **ptrs;         /* ids mode: grouped by shard */
    long long *counts;         /* ids mode: per shard */
} ing__replay;

static void ing__replay_free(ing__replay *r)
{
    free(r->sids);
    free(r->ptrs);
    free(r->counts);
    free(r);
}

static void ing__replay_answer(ing__replay *r)
{
    if (r->rc != ING_LOG_OK) {
        const char *prefix;
        grpc_status_code code = ing_log_status(r->rc, &prefix);
        cdp_rpc_fail(r->call, code, "%s: %s", prefix, r->err);
    } else {
        Cdp__V1__ReplayDeadLettersResponse resp = CDP__V1__REPLAY_DEAD_LETTERS_RESPONSE__INIT;
        resp.replayed = (int32_t)r->total;
        cdp_log(CDP_LOG_INFO, "dead letters replayed", "{s:I}", "replayed", (json_int_t)r->total);
        cdp_rpc_reply(r->call, &resp.base);
    }
    ing__replay_free(r);
}

static void ing__replay_note(ing__replay *r, ing_log_rc rc, const char *err)
{
    if (rc != ING_LOG_OK && r->rc == ING_LOG_OK) {
        r->rc = rc;
        snprintf(r->err, sizeof r->err, "%s", err ? err : "unknown error");
    }
}

static void ing__replay_all_step(ing__replay *r);

static void ing__replay_all_done(ing_log_rc rc, const char *err, void *ud)
{
    ing__replay *r = ud;
    ing__replay_note(r, rc, err);
    if (r->rc != ING_LOG_OK) {
        ing__replay_answer(r);
        return;
    }
    r->total += r->chunk_count;
    if (r->chunk_count < ING_REPLAY_CHUNK)
        r->shard++;
    if (r->shard >= r->st->cfg.log.shards || cdp_rpc_call_cancelled(r->call)) {
        ing__replay_answer(r);
        return;
    }
    ing__replay_all_step(r);
}

static void ing__replay_all_step(ing__replay *r)
{
    ing_log_replay(&r->st->log, r->shard, NULL, 0, ING_REPLAY_CHUNK, &r->chunk_count,
                   ing__replay_all_done, r);
}

static void ing__replay_ids_done(ing_log_rc rc, const char *err, void *ud)
{
    ing__replay *r = ud;
    ing__replay_note(r, rc, err);
    if (--r->pending > 0)
        return;
    for (unsigned s = 0; s < r->st->cfg.log.shards; s++)
        r->total += r->counts[s];
    ing__replay_answer(r);
}

/* Parses the ids and starts one script per shard that has some. */
static void ing__replay_ids(ing__replay *r, const Cdp__V1__ReplayDeadLettersRequest *req)
{
    unsigned shards = r->st->cfg.log.shards;
    unsigned *shard_of = calloc(req->n_ids, sizeof *shard_of);
    size_t *start = calloc(shards + 1, sizeof *start);
    size_t *fill = calloc(shards, sizeof *fill);
    r->sids = calloc(req->n_ids, sizeof *r->sids);
    r->ptrs = calloc(req->n_ids, sizeof *r->ptrs);
    r->counts = calloc(shards, sizeof *r->counts);
    if (!shard_of || !start || !fill || !r->sids || !r->ptrs || !r->counts) {
        cdp_rpc_fail(r->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->n_ids; i++) {
        if (ing_dead_id_parse(req->ids[i], shards, &shard_of[i], r->sids[i], sizeof r->sids[i])) {
            cdp_rpc_fail(r->call, GRPC_STATUS_INVALID_ARGUMENT, "ids[%zu]: not a dead-letter id", i);
            goto out;
        }
        start[shard_of[i] + 1]++;
    }
    for (unsigned s = 0; s < shards; s++)
        start[s + 1] += start[s];
    for (size_t i = 0; i < req->n_ids; i++)
        r->ptrs[start[shard_of[i]] + fill[shard_of[i]]++] = r->sids[i];
    r->pending = 1;
    for (unsigned s = 0; s < shards; s++) {
        size_t cnt = start[s + 1] - start[s];
        if (cnt == 0)
            continue;
        r->pending++;
        ing_log_replay(&r->st->log, s, r->ptrs + start[s], cnt, 0, &r->counts[s],
                       ing__replay_ids_done, r);
    }
    free(shard_of);
    free(start);
    free(fill);
    ing__replay_ids_done(ING_LOG_OK, NULL, r);
    return;
out:
    free(shard_of);
    free(start);
    free(fill);
    ing__replay_free(r);
}

void ing_dead_replay(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    ing_state *st = ud;
    const Cdp__V1__ReplayDeadLettersRequest *req = (const Cdp__V1__ReplayDeadLettersRequest *)msg;
    if (req->n_ids > ING_REPLAY_MAX_IDS) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "ids: more than %d ids", ING_REPLAY_MAX_IDS);
        return;
    }
    ing__replay *r = calloc(1, sizeof *r);
    if (!r) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->st = st;
    r->call = call;
    if (req->n_ids == 0) {
        r->all = 1;
        ing__replay_all_step(r);
        return;
    }
    ing__replay_ids(r, req);
}
