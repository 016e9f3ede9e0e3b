/* act_query: GetDelivery, ListDeliveries, ListDeadLetters and
 * ReplayDeadLetters over one destination's outbox (act_lua.h). Lists are
 * newest first; the page token is the offset of the next page. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_msg.h"
#include "act_service.h"

enum {
    ACT_PAGE_DEFAULT = 50,
    ACT_PAGE_MAX = 1000,
    ACT_OFFSET_MAX = 100000000,
    ACT_REPLAY_MAX_IDS = 1000,
    ACT_NUM_BUFSZ = 24,
};

typedef struct {
    act_svc *as;
    cdp_rpc_call *call;
    char dest[ACT_ID_MAX + 1];
    char id[ACT_DELIVERY_ID_MAX];
    long offset;
    int page;
} act_q;

static act_q *act__q_new(act_svc *as, cdp_rpc_call *call, const char *dest)
{
    act_q *q = calloc(1, sizeof(*q));
    if (!q) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    q->as = as;
    q->call = call;
    snprintf(q->dest, sizeof(q->dest), "%s", dest);
    return q;
}

/* Runs script s over q->dest's outbox keys with args. */
static void act__eval(act_q *q, cdp_redis_script *s, cdp_redis_cb cb, int nargs,
                      const char **args)
{
    char *keys[ACT_KEY_COUNT];
    size_t klen[ACT_KEY_COUNT];
    size_t *alen = calloc(nargs > 0 ? (size_t)nargs : 1, sizeof(size_t));
    if (!alen || act_keys_make(q->dest, keys, klen) != 0) {
        free(alen);
        cb(NULL, "out of memory", q);
        return;
    }
    for (int i = 0; i < nargs; i++)
        alen[i] = strlen(args[i]);
    cdp_redis_eval(q->as->svc->redis, s, cb, q, ACT_KEY_COUNT, (const char **)keys, klen, nargs,
                   args, alen);
    act_keys_free(keys);
    free(alen);
}

/* ------------------------------------------------------------------ GetDelivery */

static void act__got(redisReply *reply, const char *err, void *ud)
{
    act_q *q = ud;
    if (cdp_rpc_fail_redis(q->call, reply, err)) {
        free(q);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        cdp_rpc_fail(q->call, GRPC_STATUS_NOT_FOUND, "delivery not found: %s", q->id);
    } else {
        Cdp__V1__Delivery *d = act_delivery_from_record(q->id, q->dest, reply->str, reply->len);
        if (d)
            cdp_rpc_reply(q->call, &d->base);
        else
            cdp_rpc_fail(q->call, GRPC_STATUS_INTERNAL, "stored delivery %s is malformed", q->id);
        act_delivery_free(d);
    }
    free(q);
}

void act_get_delivery(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetDeliveryRequest *req = (const Cdp__V1__GetDeliveryRequest *)msg;
    char dest[ACT_ID_MAX + 1];
    if (!req->delivery_id[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "delivery_id: required");
        return;
    }
    if (act_delivery_dest(req->delivery_id, dest) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "delivery_id: must be \"<destination id>:<32 hex digits>\"");
        return;
    }
    if (req->destination_id[0] && strcmp(req->destination_id, dest) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                     "destination_id: the delivery belongs to destination %s", dest);
        return;
    }
    act_q *q = act__q_new(ud, call, dest);
    if (!q)
        return;
    snprintf(q->id, sizeof(q->id), "%s", req->delivery_id);
    char *keys[ACT_KEY_COUNT];
    size_t klen[ACT_KEY_COUNT];
    if (act_keys_make(dest, keys, klen) != 0) {
        act__got(NULL, "out of memory", q);
        return;
    }
    const char *argv[] = {"HGET", keys[ACT_KEY_REC], q->id};
    size_t argl[] = {4, klen[ACT_KEY_REC], strlen(q->id)};
    cdp_redis_command(q->as->svc->redis, keys[ACT_KEY_REC], klen[ACT_KEY_REC], act__got, q, 3,
                      argv, argl);
    act_keys_free(keys);
}

/* ------------------------------------------------------------------ lists */

static void act__listed(redisReply *reply, const char *err, void *ud)
{
    act_q *q = ud;
    if (cdp_rpc_fail_redis(q->call, reply, err)) {
        free(q);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        cdp_rpc_fail(q->call, GRPC_STATUS_INTERNAL, "unexpected reply listing deliveries");
        free(q);
        return;
    }
    long long total = reply->element[0]->integer;
    size_t n = (reply->elements - 1) / 2, got = 0;
    Cdp__V1__Delivery **v = calloc(n ? n : 1, sizeof(*v));
    Cdp__V1__ListDeliveriesResponse resp = CDP__V1__LIST_DELIVERIES_RESPONSE__INIT;
    char token[ACT_NUM_BUFSZ];
    if (!v) {
        cdp_rpc_fail(q->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        free(q);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = reply->element[1 + 2 * i], *rec = reply->element[2 + 2 * i];
        if (id->type != REDIS_REPLY_STRING || rec->type != REDIS_REPLY_STRING)
            continue;
        char sid[ACT_DELIVERY_ID_MAX];
        snprintf(sid, sizeof(sid), "%.*s", (int)id->len, id->str);
        Cdp__V1__Delivery *d = act_delivery_from_record(sid, q->dest, rec->str, rec->len);
        if (d)
            v[got++] = d;
    }
    resp.deliveries = v;
    resp.n_deliveries = got;
    if (q->offset + q->page < total) {
        snprintf(token, sizeof(token), "%ld", q->offset + q->page);
        resp.next_page_token = token;
    }
    cdp_rpc_reply(q->call, &resp.base);
    for (size_t i = 0; i < got; i++)
        act_delivery_free(v[i]);
    free(v);
    free(q);
}

static void act__list(cdp_rpc_call *call, const Cdp__V1__ListDeliveriesRequest *req, void *ud,
                      const char *which)
{
    if (act_id_arg(call, "destination_id", req->destination_id))
        return;
    if (req->page_size < 0 || req->page_size > ACT_PAGE_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must be between 0 and %d",
                     ACT_PAGE_MAX);
        return;
    }
    long offset = 0;
    if (req->page_token[0]) {
        char *end;
        offset = strtol(req->page_token, &end, 10);
        if (*end || offset < 0 || offset > ACT_OFFSET_MAX) {
            cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_token: malformed");
            return;
        }
    }
    act_q *q = act__q_new(ud, call, req->destination_id);
    if (!q)
        return;
    q->offset = offset;
    q->page = req->page_size ? req->page_size : ACT_PAGE_DEFAULT;
    char soff[ACT_NUM_BUFSZ], scount[ACT_NUM_BUFSZ];
    snprintf(soff, sizeof(soff), "%ld", offset);
    snprintf(scount, sizeof(scount), "%d", q->page);
    const char *args[] = {which, soff, scount};
    act__eval(q, q->as->s_list, act__listed, 3, args);
}

void act_list_deliveries(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    act__list(call, (const Cdp__V1__ListDeliveriesRequest *)msg, ud, "log");
}

void act_list_dead_letters(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    act__list(call, (const Cdp__V1__ListDeliveriesRequest *)msg, ud, "dead");
}

/* ------------------------------------------------------------------ replay */

static void act__replayed(redisReply *reply, const char *err, void *ud)
{
    act_q *q = ud;
    if (cdp_rpc_fail_redis(q->call, reply, err)) {
        free(q);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        cdp_rpc_fail(q->call, GRPC_STATUS_INTERNAL, "unexpected reply replaying dead letters");
    } else {
        Cdp__V1__ReplayDestinationDeadLettersResponse resp =
            CDP__V1__REPLAY_DESTINATION_DEAD_LETTERS_RESPONSE__INIT;
        resp.replayed = (int32_t)reply->integer;
        cdp_rpc_reply(q->call, &resp.base);
        act_dest *d = act_dest_find(q->as, q->dest);
        if (d && reply->integer > 0)
            act_outbox_kick(d, 0);
    }
    free(q);
}

void act_replay_dead_letters(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ReplayDestinationDeadLettersRequest *req =
        (const Cdp__V1__ReplayDestinationDeadLettersRequest *)msg;
    if (act_id_arg(call, "destination_id", req->destination_id))
        return;
    if (req->n_delivery_ids > ACT_REPLAY_MAX_IDS) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "delivery_ids: at most %d",
                     ACT_REPLAY_MAX_IDS);
        return;
    }
    for (size_t i = 0; i < req->n_delivery_ids; i++) {
        char dest[ACT_ID_MAX + 1];
        if (act_delivery_dest(req->delivery_ids[i], dest) != 0 ||
            strcmp(dest, req->destination_id) != 0) {
            cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT,
                         "delivery_ids[%zu]: not a delivery of destination %s", i,
                         req->destination_id);
            return;
        }
    }
    act_q *q = act__q_new(ud, call, req->destination_id);
    if (!q)
        return;
    const char **args = calloc(req->n_delivery_ids + 1, sizeof(char *));
    if (!args) {
        act__replayed(NULL, "out of memory", q);
        return;
    }
    char now[ACT_NUM_BUFSZ];
    snprintf(now, sizeof(now), "%" PRId64, cdp_now_ms());
    args[0] = now;
    for (size_t i = 0; i < req->n_delivery_ids; i++)
        args[i + 1] = req->delivery_ids[i];
    act__eval(q, q->as->s_replay, act__replayed, (int)req->n_delivery_ids + 1, args);
    free(args);
}
