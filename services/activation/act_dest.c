/* act_dest: destination CRUD and the catalogue (see act_service.h).
 *
 * Definitions live in one Redis hash (ACT_KEY_DEFS: id -> packed
 * Destination, secret included: the webhook signature needs it) with a
 * version counter bumped by every write (act_lua dest_put / dest_del).
 * Every replica polls the counter every CDP_ACTIVATION_RELOAD_MS and
 * re-reads the hash when it moved, and at once after its own writes, so
 * the delivery workers of all replicas follow the catalogue within about
 * a second. Answers never carry the secret: secret "" and secret_set. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "act_msg.h"
#include "act_service.h"
#include "cdp_log.h"
#include "cdp_metrics.h"

enum {
    ACT_LIST_DEFAULT = 100,
    ACT_LIST_MAX = 1000,
    ACT_GEN_ID_BYTES = 8,
    ACT_LABELS_MAX = 160,
};

/* ------------------------------------------------------------------ helpers */


int act_keys_make(const char *id, char *keys[ACT_KEY_COUNT], size_t lens[ACT_KEY_COUNT])
{
    static const char *const names[ACT_KEY_COUNT] = {"due", "rec", "body", "log", "dead"};
    for (int k = 0; k < ACT_KEY_COUNT; k++) {
        int n = snprintf(NULL, 0, "cdp:act:{d:%s}:%s", id, names[k]);
        keys[k] = malloc((size_t)n + 1);
        if (!keys[k]) {
            act_keys_free(keys);
            return -1;
        }
        snprintf(keys[k], (size_t)n + 1, "cdp:act:{d:%s}:%s", id, names[k]);
        lens[k] = (size_t)n;
    }
    return 0;
}

void act_keys_free(char *keys[ACT_KEY_COUNT])
{
    for (int k = 0; k < ACT_KEY_COUNT; k++) {
        free(keys[k]);
        keys[k] = NULL;
    }
}

static Cdp__V1__Destination *act__unpack(const void *data, size_t len)
{
    return (Cdp__V1__Destination *)protobuf_c_message_unpack(&cdp__v1__destination__descriptor,
                                                             NULL, len, data);
}

static void act__dest_msg_free(Cdp__V1__Destination *d)
{
    if (d)
        protobuf_c_message_free_unpacked(&d->base, NULL);
}

/* An owned deep copy of a request's destination (pack + unpack). */
static Cdp__V1__Destination *act__copy(const Cdp__V1__Destination *d)
{
    size_t n = protobuf_c_message_get_packed_size(&d->base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(&d->base, buf);
    Cdp__V1__Destination *out = act__unpack(buf, n);
    free(buf);
    return out;
}

/* Replies with d without its secret. */
static void act__reply_redacted(cdp_rpc_call *call, Cdp__V1__Destination *d)
{
    char *secret = d->secret;
    protobuf_c_boolean set = d->secret_set;
    d->secret_set = secret[0] != '\0';
    d->secret = (char *)protobuf_c_empty_string;
    cdp_rpc_reply(call, &d->base);
    d->secret = secret;
    d->secret_set = set;
}

static int act__timestamp(Google__Protobuf__Timestamp **slot, int64_t ms)
{
    if (!*slot) {
        *slot = malloc(sizeof(**slot));
        if (!*slot)
            return -1;
    }
    act_ts_set(*slot, ms);
    return 0;
}

/* ------------------------------------------------------------------ writes */

typedef struct {
    act_svc *as;
    cdp_rpc_call *call;
    Cdp__V1__Destination *d;      /* the new definition (owned) */
    int create;
} act_put;

static void act__put_free(act_put *p)
{
    act__dest_msg_free(p->d);
    free(p);
}

static void act__put_done(redisReply *reply, const char *err, void *ud)
{
    act_put *p = ud;
    if (cdp_rpc_fail_redis(p->call, reply, err)) {
        act__put_free(p);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER)
        cdp_rpc_fail(p->call, GRPC_STATUS_INTERNAL, "unexpected reply from the catalogue");
    else if (reply->integer == 0 && p->create)
        cdp_rpc_fail(p->call, GRPC_STATUS_ALREADY_EXISTS, "destination already exists: %s",
                     p->d->id);
    else if (reply->integer == 0)
        cdp_rpc_fail(p->call, GRPC_STATUS_NOT_FOUND, "destination not found: %s", p->d->id);
    else {
        cdp_log(CDP_LOG_INFO, p->create ? "destination created" : "destination updated",
                "{s:s}", "destination", p->d->id);
        act__reply_redacted(p->call, p->d);
        act_dest_reload(p->as);
    }
    act__put_free(p);
}

/* Stores p->d (validated, timestamps set) with dest_put. */
static void act__put(act_put *p)
{
    size_t n = protobuf_c_message_get_packed_size(&p->d->base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        cdp_rpc_fail(p->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        act__put_free(p);
        return;
    }
    protobuf_c_message_pack(&p->d->base, buf);
    const char *keys[] = {ACT_KEY_DEFS, ACT_KEY_VERSION};
    size_t klen[] = {strlen(ACT_KEY_DEFS), strlen(ACT_KEY_VERSION)};
    const char *mode = p->create ? "create" : "update";
    const char *args[] = {p->d->id, (const char *)buf, mode};
    size_t alen[] = {strlen(p->d->id), n, strlen(mode)};
    cdp_redis_eval(p->as->svc->redis, p->as->s_put, act__put_done, p, 2, keys, klen, 3, args,
                   alen);
    free(buf);
}

/* Copies and validates the destination of a create or update; answers
 * the call and returns NULL on failure. */
static act_put *act__put_new(act_svc *as, cdp_rpc_call *call, const Cdp__V1__Destination *in,
                             int create)
{
    char err[ACT_ERR_MAX];
    if (!in) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "destination: required");
        return NULL;
    }
    act_put *p = calloc(1, sizeof(*p));
    if (!p || !(p->d = act__copy(in))) {
        free(p);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    p->as = as;
    p->call = call;
    p->create = create;
    if (!create && !p->d->id[0]) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "destination.id: required");
        act__put_free(p);
        return NULL;
    }
    if (act_dest_validate(p->d, !create, err, sizeof(err)) != 0) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s", err);
        act__put_free(p);
        return NULL;
    }
    return p;
}

void act_create_destination(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__CreateDestinationRequest *req = (const Cdp__V1__CreateDestinationRequest *)msg;
    act_put *p = act__put_new(ud, call, req->destination, 1);
    if (!p)
        return;
    int64_t now = cdp_now_ms();
    int oom = 0;
    if (!p->d->id[0]) {
        unsigned char rnd[ACT_GEN_ID_BYTES];
        char hex[2 * ACT_GEN_ID_BYTES + 1], id[ACT_ID_MAX + 1];
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
        snprintf(id, sizeof(id), "dst_%s", hex);
        oom |= act_str_set(&p->d->id, id);
    }
    p->d->secret_set = p->d->secret[0] != '\0';
    oom |= act__timestamp(&p->d->created_at, now) | act__timestamp(&p->d->updated_at, now);
    if (oom) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        act__put_free(p);
        return;
    }
    act__put(p);
}

/* Update: the stored definition gives created_at and, when the request
 * leaves it empty, the secret. */
static void act__update_read(redisReply *reply, const char *err, void *ud)
{
    act_put *p = ud;
    if (cdp_rpc_fail_redis(p->call, reply, err)) {
        act__put_free(p);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        cdp_rpc_fail(p->call, GRPC_STATUS_NOT_FOUND, "destination not found: %s", p->d->id);
        act__put_free(p);
        return;
    }
    Cdp__V1__Destination *old = act__unpack(reply->str, reply->len);
    int bad = !old;
    if (old) {
        if (!p->d->secret[0]) {
            if (p->d->type == CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_WEBHOOK &&
                strlen(old->secret) < ACT_SECRET_MIN) {
                cdp_rpc_fail(p->call, GRPC_STATUS_INVALID_ARGUMENT,
                             "destination.secret: required for a webhook");
                act__dest_msg_free(old);
                act__put_free(p);
                return;
            }
            if (p->d->type == CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_WEBHOOK)
                bad |= act_str_set(&p->d->secret, old->secret);
        }
        int64_t created = old->created_at ? act_ts_ms(old->created_at) : cdp_now_ms();
        bad |= act__timestamp(&p->d->created_at, created) |
               act__timestamp(&p->d->updated_at, cdp_now_ms());
        p->d->secret_set = p->d->secret[0] != '\0';
    }
    act__dest_msg_free(old);
    if (bad) {
        cdp_rpc_fail(p->call, GRPC_STATUS_INTERNAL, "cannot read the stored destination %s",
                     p->d->id);
        act__put_free(p);
        return;
    }
    act__put(p);
}

void act_update_destination(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    act_svc *as = ud;
    act_put *p = act__put_new(as, call, (const Cdp__V1__Destination *)msg, 0);
    if (!p)
        return;
    cdp_redis_commandf(as->svc->redis, ACT_KEY_DEFS, act__update_read, p, "HGET %s %s",
                       ACT_KEY_DEFS, p->d->id);
}

/* ------------------------------------------------------------------ reads */

typedef struct {
    act_svc *as;
    cdp_rpc_call *call;
    char id[ACT_ID_MAX + 1];
    int32_t page_size;
    char after[ACT_ID_MAX + 1];
} act_read;

int act_id_arg(cdp_rpc_call *call, const char *field, const char *id)
{
    if (act_id_valid(id))
        return 0;
    cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", field,
                 id[0] ? "must match [A-Za-z0-9_.-]{1,64}" : "required");
    return -1;
}

static act_read *act__read_new(act_svc *as, cdp_rpc_call *call)
{
    act_read *r = calloc(1, sizeof(*r));
    if (!r)
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    else {
        r->as = as;
        r->call = call;
    }
    return r;
}

/* Validates the "id" argument and starts a read of it; answers the call
 * and returns NULL when bad or out of memory. */
static act_read *act__read_id(act_svc *as, cdp_rpc_call *call, const char *id)
{
    if (act_id_arg(call, "id", id))
        return NULL;
    act_read *r = act__read_new(as, call);
    if (r)
        snprintf(r->id, sizeof(r->id), "%s", id);
    return r;
}

static void act__get_done(redisReply *reply, const char *err, void *ud)
{
    act_read *r = ud;
    if (cdp_rpc_fail_redis(r->call, reply, err)) {
        free(r);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        cdp_rpc_fail(r->call, GRPC_STATUS_NOT_FOUND, "destination not found: %s", r->id);
    } else {
        Cdp__V1__Destination *d = act__unpack(reply->str, reply->len);
        if (d)
            act__reply_redacted(r->call, d);
        else
            cdp_rpc_fail(r->call, GRPC_STATUS_INTERNAL, "stored destination %s is malformed",
                         r->id);
        act__dest_msg_free(d);
    }
    free(r);
}

void act_get_destination(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__GetDestinationRequest *req = (const Cdp__V1__GetDestinationRequest *)msg;
    act_svc *as = ud;
    act_read *r = act__read_id(as, call, req->id);
    if (!r)
        return;
    cdp_redis_commandf(as->svc->redis, ACT_KEY_DEFS, act__get_done, r, "HGET %s %s", ACT_KEY_DEFS,
                       req->id);
}

static int act__by_id(const void *a, const void *b)
{
    const Cdp__V1__Destination *x = *(Cdp__V1__Destination *const *)a;
    const Cdp__V1__Destination *y = *(Cdp__V1__Destination *const *)b;
    return strcmp(x->id, y->id);
}

/* Every stored destination, sorted by id; *n the count. NULL with *n = 0
 * for none; sets *bad when an entry could not be read. */
static Cdp__V1__Destination **act__parse_all(const redisReply *reply, size_t *n, int *bad)
{
    *n = 0;
    *bad = 0;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return NULL;
    Cdp__V1__Destination **v = calloc(reply->elements / 2, sizeof(*v));
    if (!v) {
        *bad = 1;
        return NULL;
    }
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *val = reply->element[i + 1];
        Cdp__V1__Destination *d =
            val->type == REDIS_REPLY_STRING ? act__unpack(val->str, val->len) : NULL;
        if (d)
            v[(*n)++] = d;
        else
            *bad = 1;
    }
    qsort(v, *n, sizeof(*v), act__by_id);
    return v;
}

static void act__free_all_msgs(Cdp__V1__Destination **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        act__dest_msg_free(v[i]);
    free(v);
}

static void act__list_done(redisReply *reply, const char *err, void *ud)
{
    act_read *r = ud;
    if (cdp_rpc_fail_redis(r->call, reply, err)) {
        free(r);
        return;
    }
    size_t n;
    int bad;
    Cdp__V1__Destination **all = act__parse_all(reply, &n, &bad);
    Cdp__V1__ListDestinationsResponse resp = CDP__V1__LIST_DESTINATIONS_RESPONSE__INIT;
    Cdp__V1__Destination **page = calloc((size_t)r->page_size, sizeof(*page));
    char **secrets = calloc((size_t)r->page_size, sizeof(*secrets));
    if (!page || !secrets || bad) {
        cdp_rpc_fail(r->call, GRPC_STATUS_INTERNAL, "cannot read the destinations");
        goto out;
    }
    size_t i = 0;
    while (i < n && r->after[0] && strcmp(all[i]->id, r->after) <= 0)
        i++;
    for (; i < n && resp.n_destinations < (size_t)r->page_size; i++) {
        Cdp__V1__Destination *d = all[i];
        d->secret_set = d->secret[0] != '\0';
        secrets[resp.n_destinations] = d->secret;
        d->secret = (char *)protobuf_c_empty_string;
        page[resp.n_destinations++] = d;
    }
    resp.destinations = page;
    if (i < n && resp.n_destinations > 0)
        resp.next_page_token = page[resp.n_destinations - 1]->id;
    cdp_rpc_reply(r->call, &resp.base);
    for (size_t k = 0; k < resp.n_destinations; k++)
        page[k]->secret = secrets[k];
out:
    free(page);
    free(secrets);
    act__free_all_msgs(all, n);
    free(r);
}

void act_list_destinations(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__ListDestinationsRequest *req = (const Cdp__V1__ListDestinationsRequest *)msg;
    act_svc *as = ud;
    if (req->page_size < 0 || req->page_size > ACT_LIST_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_size: must be between 0 and %d",
                     ACT_LIST_MAX);
        return;
    }
    if (req->page_token[0] && !act_id_valid(req->page_token)) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "page_token: malformed");
        return;
    }
    act_read *r = act__read_new(as, call);
    if (!r)
        return;
    r->page_size = req->page_size ? req->page_size : ACT_LIST_DEFAULT;
    snprintf(r->after, sizeof(r->after), "%s", req->page_token);
    cdp_redis_commandf(as->svc->redis, ACT_KEY_DEFS, act__list_done, r, "HGETALL %s",
                       ACT_KEY_DEFS);
}

/* ------------------------------------------------------------------ delete */

static void act__ignore(redisReply *reply, const char *err, void *ud)
{
    (void)reply;
    (void)err;
    (void)ud;
}

static void act__delete_done(redisReply *reply, const char *err, void *ud)
{
    act_read *r = ud;
    if (cdp_rpc_fail_redis(r->call, reply, err)) {
        free(r);
        return;
    }
    Cdp__V1__DeleteDestinationResponse resp = CDP__V1__DELETE_DESTINATION_RESPONSE__INIT;
    resp.deleted = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    if (resp.deleted) {
        /* the outbox goes with it (one slot: the destination's tag) */
        char *keys[ACT_KEY_COUNT];
        size_t lens[ACT_KEY_COUNT];
        if (act_keys_make(r->id, keys, lens) == 0) {
            const char *argv[1 + ACT_KEY_COUNT] = {"DEL"};
            size_t argl[1 + ACT_KEY_COUNT] = {3};
            for (int k = 0; k < ACT_KEY_COUNT; k++) {
                argv[1 + k] = keys[k];
                argl[1 + k] = lens[k];
            }
            cdp_redis_command(r->as->svc->redis, keys[0], lens[0], act__ignore, NULL,
                              1 + ACT_KEY_COUNT, argv, argl);
            act_keys_free(keys);
        }
        cdp_log(CDP_LOG_INFO, "destination deleted", "{s:s}", "destination", r->id);
        act_dest_reload(r->as);
    }
    cdp_rpc_reply(r->call, &resp.base);
    free(r);
}

void act_delete_destination(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__DeleteDestinationRequest *req = (const Cdp__V1__DeleteDestinationRequest *)msg;
    act_svc *as = ud;
    act_read *r = act__read_id(as, call, req->id);
    if (!r)
        return;
    const char *keys[] = {ACT_KEY_DEFS, ACT_KEY_VERSION};
    size_t klen[] = {strlen(ACT_KEY_DEFS), strlen(ACT_KEY_VERSION)};
    const char *args[] = {req->id};
    size_t alen[] = {strlen(req->id)};
    cdp_redis_eval(as->svc->redis, as->s_del, act__delete_done, r, 2, keys, klen, 1, args, alen);
}

/* ------------------------------------------------------------------ catalogue */

act_dest *act_dest_find(act_svc *as, const char *id)
{
    for (act_dest *d = as->dests; d; d = d->next)
        if (!d->gone && strcmp(d->id, id) == 0)
            return d;
    return NULL;
}

static void act__dest_free(act_dest *d)
{
    act__dest_msg_free(d->def);
    act_keys_free(d->keys);
    free(d);
}

static void act__gone_closed(uv_handle_t *h)
{
    act_dest *d = h->data;
    act_svc *as = d->as;
    for (act_dest **pp = &as->dests; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    act__dest_free(d);
    if (--as->handles_open == 0 && as->stop_done)
        as->stop_done(as->svc);
}

/* A deleted destination is freed once nothing of it is in flight. */
void act_dest_release_if_gone(act_dest *d)
{
    if (!d->gone || d->closing || d->in_flight || d->claiming)
        return;
    d->closing = 1;
    uv_close((uv_handle_t *)&d->timer, act__gone_closed);
}

static act_dest *act__dest_new(act_svc *as, Cdp__V1__Destination *def)
{
    act_dest *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    if (act_keys_make(def->id, d->keys, d->keylens) != 0) {
        free(d);
        return NULL;
    }
    d->as = as;
    snprintf(d->id, sizeof(d->id), "%s", def->id);
    d->def = def;
    uv_timer_init(as->svc->loop, &d->timer);
    d->timer.data = d;
    as->handles_open++;
    d->next = as->dests;
    as->dests = d;
    return d;
}

static void act__depth_done(redisReply *reply, const char *err, void *ud)
{
    const char *labels = ud;
    if (!err && reply && reply->type == REDIS_REPLY_INTEGER)
        cdp_metrics_set("cdp_activation_outbox_depth", labels, (double)reply->integer);
    free(ud);
}

/* The outbox depth gauges, refreshed with every catalogue poll. */
static void act__refresh_depths(act_svc *as)
{
    for (act_dest *d = as->dests; d; d = d->next) {
        if (d->gone)
            continue;
        char *labels = malloc(ACT_LABELS_MAX);
        if (!labels)
            return;
        snprintf(labels, ACT_LABELS_MAX, "destination=\"%s\"", d->id);
        const char *argv[] = {"ZCARD", d->keys[ACT_KEY_DUE]};
        size_t argl[] = {5, d->keylens[ACT_KEY_DUE]};
        cdp_redis_command(as->svc->redis, d->keys[ACT_KEY_DUE], d->keylens[ACT_KEY_DUE],
                          act__depth_done, labels, 2, argv, argl);
    }
}

static void act__load_finished(act_svc *as)
{
    as->loading = 0;
    if (as->stopping) {
        act_service_maybe_stopped(as);
        return;
    }
    if (as->reload_again) {
        as->reload_again = 0;
        act_dest_reload(as);
    }
}

/* Applies a fresh catalogue: new destinations get a worker, changed ones
 * their new definition, missing ones are retired. */
static void act__apply(act_svc *as, Cdp__V1__Destination **all, size_t n)
{
    for (act_dest *d = as->dests; d; d = d->next)
        d->seen = 0;
    for (size_t i = 0; i < n; i++) {
        act_dest *d = act_dest_find(as, all[i]->id);
        if (d) {
            act__dest_msg_free(d->def);
            d->def = all[i];
        } else if (!(d = act__dest_new(as, all[i]))) {
            cdp_log(CDP_LOG_ERROR, "out of memory loading destinations", NULL);
            act__dest_msg_free(all[i]);
            continue;
        }
        all[i] = NULL;
        d->seen = 1;
    }
    for (act_dest *d = as->dests, *next; d; d = next) {
        next = d->next;
        if (!d->seen && !d->gone) {
            d->gone = 1;
            uv_timer_stop(&d->timer);
            act_dest_release_if_gone(d);
        }
    }
    act_outbox_kick_all(as);
}

static void act__defs_read(redisReply *reply, const char *err, void *ud)
{
    act_svc *as = ud;
    char msg[ACT_ERR_MAX];
    long long version = as->loading_version;
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK) {
        cdp_log(CDP_LOG_WARN, "cannot read the destinations", "{s:s}", "error", msg);
    } else if (!as->stopping) {
        size_t n;
        int bad;
        Cdp__V1__Destination **all = act__parse_all(reply, &n, &bad);
        if (bad)
            cdp_log(CDP_LOG_ERROR, "a stored destination is malformed; skipped", NULL);
        act__apply(as, all, n);
        act__free_all_msgs(all, n);
        if (!as->loaded || as->version != version)
            cdp_log(CDP_LOG_INFO, "destinations loaded", "{s:i,s:I}", "count", (int)n, "version",
                    (json_int_t)version);
        as->version = version;
        as->loaded = 1;
    }
    act__load_finished(as);
}

static void act__version_read(redisReply *reply, const char *err, void *ud)
{
    act_svc *as = ud;
    char msg[ACT_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK || as->stopping) {
        act__load_finished(as);
        return;
    }
    long long v = reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0;
    if (as->loaded && v == as->version) {
        act__load_finished(as);
        return;
    }
    as->loading_version = v;
    cdp_redis_commandf(as->svc->redis, ACT_KEY_DEFS, act__defs_read, as, "HGETALL %s",
                       ACT_KEY_DEFS);
}

void act_dest_reload(act_svc *as)
{
    if (as->stopping)
        return;
    if (as->loading) {
        as->reload_again = 1;
        return;
    }
    as->loading = 1;
    cdp_redis_commandf(as->svc->redis, ACT_KEY_VERSION, act__version_read, as, "GET %s",
                       ACT_KEY_VERSION);
}

static void act__on_reload_timer(uv_timer_t *t)
{
    act_svc *as = t->data;
    if (!as->redis_up)
        return;
    act_dest_reload(as);
    act__refresh_depths(as);
}

void act_dest_start(act_svc *as)
{
    uv_timer_start(&as->reload_timer, act__on_reload_timer, 0, (uint64_t)as->cfg.reload_ms);
}

void act_dest_close_all(act_svc *as)
{
    for (act_dest *d = as->dests; d; d = d->next) {
        if (d->closing)
            continue;
        d->closing = 1;
        uv_timer_stop(&d->timer);
        d->timer.data = as;
        uv_close((uv_handle_t *)&d->timer, act_service_handle_closed);
    }
}

void act_dest_free_all(act_svc *as)
{
    while (as->dests) {
        act_dest *d = as->dests;
        as->dests = d->next;
        act__dest_free(d);
    }
}
