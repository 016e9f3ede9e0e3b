/* act_gateway: Subscribe and Ack, the feed of channel gateways.
 *
 * A Subscribe stream registers a subscriber of one channel on this
 * replica; the workers of gateway destinations of that channel claim only
 * while one is connected and hand each delivery to the next subscriber in
 * turn (round robin). A delivery on a stream is in flight until Ack
 * (DELIVERED), Ack with failed (retried after the backoff), or until the
 * destination's timeout_ms passes without one (sent again at once, with
 * one more attempt). A stream that ends (client cancel, shutdown, too
 * slow a reader) gives its unacknowledged deliveries back to the outbox
 * at once, without using an attempt. Ack may reach any replica: one that
 * does not hold the delivery finishes it in Redis if it is still in
 * flight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_service.h"
#include "cdp_log.h"

enum {
    ACT_SUB_NAME_MAX = 128,
    ACT_ACK_MAX_IDS = 1000,
    ACT_ACK_ERROR_MAX = 1024,
};

/* ------------------------------------------------------------------ jobs on streams */

static void act__unlink_job(act_svc *as, act_job *j)
{
    for (act_job **pp = &as->gw_jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    j->next = NULL;
    uv_timer_stop(&j->timer);
}

/* Gives every delivery held by sub back to the outbox. */
static void act__release_sub(act_svc *as, act_sub *sub)
{
    for (act_job *j = as->gw_jobs, *next; j; j = next) {
        next = j->next;
        if (j->sub != sub)
            continue;
        act__unlink_job(as, j);
        j->sub = NULL;
        act_job_end(j, "free", cdp_now_ms(), "gateway stream closed before the ack", NULL);
    }
}

static void act__sub_remove(act_svc *as, act_sub *sub)
{
    for (act_sub **pp = &as->subs; *pp; pp = &(*pp)->next)
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
}

/* Ends a stream with a status and frees the subscriber. */
static void act__sub_close(act_svc *as, act_sub *sub, grpc_status_code code, const char *why)
{
    if (sub->closed)
        return;
    sub->closed = 1;
    act__release_sub(as, sub);
    act__sub_remove(as, sub);
    cdp_log(CDP_LOG_INFO, "gateway unsubscribed", "{s:s,s:s,s:s}", "channel", sub->channel,
            "subscriber", sub->name, "why", why);
    cdp_rpc_finish(sub->call, code, "%s", why);
    free(sub->channel);
    free(sub->name);
    free(sub);
}

static void act__on_ack_timeout(uv_timer_t *t)
{
    act_job *j = t->data;
    act_svc *as = j->d->as;
    char err[ACT_ERR_MAX];
    act__unlink_job(as, j);
    snprintf(err, sizeof(err), "no ack within %d ms", j->d->def ? (int)j->d->def->timeout_ms : 0);
    act_job_end(j, "retry", cdp_now_ms(), err, NULL);
}

int act_gateway_has_sub(act_svc *as, const char *channel)
{
    for (act_sub *s = as->subs; s; s = s->next)
        if (!s->closed && strcmp(s->channel, channel) == 0)
            return 1;
    return 0;
}

int act_gateway_send(act_svc *as, act_job *j)
{
    act_dest *d = j->d;
    const char *channel = d->def->channel;
    for (;;) {
        size_t n = 0;
        for (act_sub *s = as->subs; s; s = s->next)
            if (!s->closed && strcmp(s->channel, channel) == 0)
                n++;
        if (n == 0)
            return -1;
        size_t pick = d->rr++ % n;
        act_sub *sub = as->subs;
        for (;; sub = sub->next)
            if (!sub->closed && strcmp(sub->channel, channel) == 0 && pick-- == 0)
                break;
        if (cdp_rpc_stream_send(sub->call, &j->msg->base) != 0) {
            act__sub_close(as, sub, GRPC_STATUS_RESOURCE_EXHAUSTED,
                           "the subscriber does not keep up");
            continue;
        }
        j->sub = sub;
        j->next = as->gw_jobs;
        as->gw_jobs = j;
        uv_timer_start(&j->timer, act__on_ack_timeout, (uint64_t)d->def->timeout_ms, 0);
        return 0;
    }
}

void act_gateway_close_all(act_svc *as)
{
    while (as->subs)
        act__sub_close(as, as->subs, GRPC_STATUS_OK, "server shutting down");
}

/* ------------------------------------------------------------------ Subscribe */

static void act__on_cancel(cdp_rpc_call *call, void *ud)
{
    (void)call;
    act_sub *sub = ud;
    act__sub_close(sub->as, sub, GRPC_STATUS_CANCELLED, "cancelled");
}

void act_subscribe(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__SubscribeRequest *req = (const Cdp__V1__SubscribeRequest *)msg;
    act_svc *as = ud;
    if (!req->channel[0] || strlen(req->channel) > ACT_CHANNEL_MAX) {
        cdp_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "channel: %s",
                       req->channel[0] ? "at most 64 bytes" : "required");
        return;
    }
    if (strlen(req->subscriber) > ACT_SUB_NAME_MAX) {
        cdp_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "subscriber: at most %d bytes",
                       ACT_SUB_NAME_MAX);
        return;
    }
    if (as->stopping) {
        cdp_rpc_finish(call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        return;
    }
    act_sub *sub = calloc(1, sizeof(*sub));
    if (!sub || !(sub->channel = strdup(req->channel)) ||
        !(sub->name = strdup(req->subscriber[0] ? req->subscriber : "anonymous"))) {
        if (sub)
            free(sub->channel);
        free(sub);
        cdp_rpc_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    sub->as = as;
    sub->call = call;
    sub->next = as->subs;
    as->subs = sub;
    cdp_rpc_call_on_cancel(call, act__on_cancel, sub);
    cdp_log(CDP_LOG_INFO, "gateway subscribed", "{s:s,s:s}", "channel", sub->channel,
            "subscriber", sub->name);
    act_outbox_kick_all(as);
}

/* ------------------------------------------------------------------ Ack */

typedef struct {
    cdp_rpc_call *call;
    size_t pending;
    int32_t acked;
    char **unknown;
    size_t n_unknown;
} act_ack_ctx;

static void act__ack_settle(act_ack_ctx *a)
{
    if (--a->pending > 0)
        return;
    Cdp__V1__AckResponse resp = CDP__V1__ACK_RESPONSE__INIT;
    resp.acked = a->acked;
    resp.unknown = a->unknown;
    resp.n_unknown = a->n_unknown;
    cdp_rpc_reply(a->call, &resp.base);
    for (size_t i = 0; i < a->n_unknown; i++)
        free(a->unknown[i]);
    free(a->unknown);
    free(a);
}

static void act__ack_unknown(act_ack_ctx *a, const char *id)
{
    char *copy = strdup(id);
    if (copy)
        a->unknown[a->n_unknown++] = copy;
}

typedef struct {
    act_ack_ctx *a;
    char id[ACT_DELIVERY_ID_MAX];
} act_ack_one;

static void act__ack_result(act_ack_one *one, int ok)
{
    if (ok)
        one->a->acked++;
    else
        act__ack_unknown(one->a, one->id);
    act_ack_ctx *a = one->a;
    free(one);
    act__ack_settle(a);
}

static void act__ack_job_done(void *ud, int ok)
{
    act__ack_result(ud, ok);
}

static void act__ack_remote_done(redisReply *reply, const char *err, void *ud)
{
    int ok = !err && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
             reply->element[0]->type == REDIS_REPLY_INTEGER;
    act__ack_result(ud, ok);
}

static act_job *act__local_job(act_svc *as, const char *id)
{
    for (act_job *j = as->gw_jobs; j; j = j->next)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

void act_ack(cdp_rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    const Cdp__V1__AckRequest *req = (const Cdp__V1__AckRequest *)msg;
    act_svc *as = ud;
    if (req->n_delivery_ids == 0 || req->n_delivery_ids > ACT_ACK_MAX_IDS) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "delivery_ids: between 1 and %d ids",
                     ACT_ACK_MAX_IDS);
        return;
    }
    if (strlen(req->error) > ACT_ACK_ERROR_MAX) {
        cdp_rpc_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "error: at most %d bytes",
                     ACT_ACK_ERROR_MAX);
        return;
    }
    act_ack_ctx *a = calloc(1, sizeof(*a));
    if (!a || !(a->unknown = calloc(req->n_delivery_ids, sizeof(char *)))) {
        free(a);
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    a->call = call;
    a->pending = 1;
    char err[ACT_ERR_MAX];
    snprintf(err, sizeof(err), "gateway: %s", req->error[0] ? req->error : "delivery failed");
    for (size_t i = 0; i < req->n_delivery_ids; i++) {
        const char *id = req->delivery_ids[i];
        char dest[ACT_ID_MAX + 1];
        act_ack_one *one;
        if (act_delivery_dest(id, dest) != 0 || !(one = calloc(1, sizeof(*one)))) {
            act__ack_unknown(a, id);
            continue;
        }
        one->a = a;
        snprintf(one->id, sizeof(one->id), "%s", id);
        a->pending++;
        act_job *j = act__local_job(as, id);
        if (j) {
            act__unlink_job(as, j);
            j->ack_cb = act__ack_job_done;
            j->ack_ud = one;
            if (req->failed)
                act_job_end(j, "retry", act_job_retry_at(j), err, NULL);
            else
                act_job_end(j, "delivered", 0, NULL, NULL);
            continue;
        }
        act_dest *d = act_dest_find(as, dest);
        int max = d ? d->def->max_attempts : ACT_DEFAULT_MAX_ATTEMPTS;
        int64_t next = cdp_now_ms() + act_backoff_ms(1, as->cfg.backoff_base_ms,
                                                     as->cfg.backoff_max_ms, act_random());
        act_outbox_finish(as, dest, id, "*", req->failed ? "retry" : "delivered", next,
                          req->failed ? err : NULL, NULL, max, act__ack_remote_done, one);
    }
    act__ack_settle(a);
}
