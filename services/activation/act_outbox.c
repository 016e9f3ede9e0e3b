/* act_outbox: the delivery worker of each destination (see act_service.h).
 *
 * Every replica runs one worker per destination: a timer that claims due
 * deliveries with the claim script, which moves their score to now +
 * lease (timeout + RPC timeout + CDP_ACTIVATION_LEASE_MARGIN_MS), so that
 * another replica, or this one after a restart, takes them again only
 * once the lease has run out (at least once). At most max_in_flight of a
 * destination are in flight per replica; a slow or failing destination
 * holds only its own slots and timer, never another's.
 *
 * One delivery attempt (a job): CheckConsent (the purpose and channel of
 * the destination, the denial recorded in the audit trail) -> a signed
 * webhook POST, or a message on a gateway stream awaiting its Ack ->
 * the finish script with the outcome. Consent denied: BLOCKED, not sent.
 * Consent unavailable: retried after the backoff without using an
 * attempt. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act_msg.h"
#include "act_service.h"
#include "act_sign.h"
#include "cdp/v1/consent.pb-c.h"
#include "cdp_log.h"
#include "cdp_metrics.h"

enum {
    ACT_LABELS_BUFSZ = 192,
    ACT_NUM_BUFSZ = 24,
    ACT_HEADER_BUFSZ = 160,
    ACT_ACTOR_BUFSZ = ACT_ID_MAX + 16,
    ACT_HTTP_ERR_BODY = 200,      /* response bytes kept in last_error */
    ACT_N_HEADERS = 6,
};

#define ACT_MS_PER_S 1000

/* ------------------------------------------------------------------ metrics */

static void act__count(const char *dest, const char *result)
{
    char labels[ACT_LABELS_BUFSZ];
    snprintf(labels, sizeof(labels), "destination=\"%s\",result=\"%s\"", dest, result);
    cdp_metrics_inc("cdp_activation_deliveries_total", labels, 1);
}

static void act__dest_labels(const char *dest, char *out, size_t outlen)
{
    snprintf(out, outlen, "destination=\"%s\"", dest);
}

/* ------------------------------------------------------------------ finish */

void act_outbox_finish(act_svc *as, const char *dest_id, const char *id, const char *token,
                       const char *outcome, int64_t next_at, const char *error,
                       const char *reason, int max_attempts, cdp_redis_cb cb, void *ud)
{
    char *keys[ACT_KEY_COUNT];
    size_t klen[ACT_KEY_COUNT];
    if (act_keys_make(dest_id, keys, klen) != 0) {
        cb(NULL, "out of memory", ud);
        return;
    }
    char now[ACT_NUM_BUFSZ], nxt[ACT_NUM_BUFSZ], max[ACT_NUM_BUFSZ];
    snprintf(now, sizeof(now), "%" PRId64, cdp_now_ms());
    snprintf(nxt, sizeof(nxt), "%" PRId64, next_at);
    snprintf(max, sizeof(max), "%d", max_attempts);
    const char *args[] = {id, token, outcome, now, nxt, error ? error : "", reason ? reason : "",
                          max};
    size_t alen[8];
    for (int i = 0; i < 8; i++)
        alen[i] = strlen(args[i]);
    cdp_redis_eval(as->svc->redis, as->s_finish, cb, ud, ACT_KEY_COUNT, (const char **)keys, klen,
                   8, args, alen);
    act_keys_free(keys);
}

int64_t act_job_retry_at(const act_job *j)
{
    const act_config *c = &j->d->as->cfg;
    return cdp_now_ms() +
           act_backoff_ms(j->msg ? j->msg->attempt : 1, c->backoff_base_ms, c->backoff_max_ms,
                          act_random());
}

static void act__job_closed(uv_handle_t *h)
{
    act_job *j = h->data;
    act_dest *d = j->d;
    act_svc *as = d->as;
    if (j->msg)
        protobuf_c_message_free_unpacked(&j->msg->base, NULL);
    free(j);
    d->in_flight--;
    if (d->gone)
        act_dest_release_if_gone(d);
    else
        act_outbox_kick(d, 0);
    act_service_maybe_stopped(as);
}

static void act__job_free(act_job *j)
{
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, act__job_closed);
}

/* The finish script answered {state, created_ms} or {"stale"}. */
static void act__finished(redisReply *reply, const char *err, void *ud)
{
    act_job *j = ud;
    const char *dest = j->d->id;
    int ok = 0;
    char msg[ACT_ERR_MAX];
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        /* the lease runs out and the delivery is taken again */
        cdp_log(CDP_LOG_WARN, "cannot record a delivery outcome", "{s:s,s:s}", "delivery", j->id,
                "error", msg[0] ? msg : "unexpected reply");
    } else if (reply->element[0]->type == REDIS_REPLY_STRING) {
        cdp_log(CDP_LOG_INFO, "delivery no longer held by this attempt", "{s:s}", "delivery",
                j->id);
    } else if (reply->elements >= 2) {
        ok = 1;
        long long state = reply->element[0]->integer, created = reply->element[1]->integer;
        char labels[ACT_LABELS_BUFSZ];
        act__dest_labels(dest, labels, sizeof(labels));
        if (state == CDP__V1__DELIVERY_STATE__DELIVERY_STATE_DELIVERED) {
            act__count(dest, "delivered");
            double s = (double)(cdp_now_ms() - created) / ACT_MS_PER_S;
            cdp_metrics_observe("cdp_activation_delivery_latency_seconds", labels, s < 0 ? 0 : s);
        } else if (state == CDP__V1__DELIVERY_STATE__DELIVERY_STATE_DEAD) {
            cdp_metrics_inc("cdp_activation_dead_letters_total", labels, 1);
            cdp_log(CDP_LOG_WARN, "delivery dead-lettered", "{s:s,s:i}", "delivery", j->id,
                    "attempts", j->msg ? (int)j->msg->attempt : 0);
        }
    }
    if (j->ack_cb)
        j->ack_cb(j->ack_ud, ok);
    act__job_free(j);
}

void act_job_end(act_job *j, const char *outcome, int64_t next_at, const char *error,
                 const char *reason)
{
    act_dest *d = j->d;
    j->finishing = 1;
    int max = d->def ? d->def->max_attempts : ACT_DEFAULT_MAX_ATTEMPTS;
    act_outbox_finish(d->as, d->id, j->id, j->token, outcome, next_at, error, reason, max,
                      act__finished, j);
}

/* ------------------------------------------------------------------ webhook */

static void act__posted(const act_http_result *res, void *ud)
{
    act_job *j = ud;
    char err[ACT_ERR_MAX];
    act_http_outcome o = act_http_classify(res->failed, res->status);
    if (o == ACT_HTTP_DELIVERED) {
        act_job_end(j, "delivered", 0, NULL, NULL);
        return;
    }
    if (res->failed)
        snprintf(err, sizeof(err), "%s", res->err ? res->err : "request failed");
    else
        snprintf(err, sizeof(err), "HTTP %ld: %.*s", res->status, ACT_HTTP_ERR_BODY,
                 res->body ? res->body : "");
    if (o == ACT_HTTP_PERMANENT) {
        act__count(j->d->id, "permanent");
        act_job_end(j, "dead", 0, err, NULL);
    } else {
        act__count(j->d->id, "retry");
        act_job_end(j, "retry", act_job_retry_at(j), err, NULL);
    }
}

static void act__post(act_job *j)
{
    act_svc *as = j->d->as;
    const Cdp__V1__Destination *def = j->d->def;
    size_t len;
    char *body = act_msg_json(j->msg, &len);
    char sig[ACT_SIGN_VALUE_MAX];
    if (!body || act_sign(def->secret, strlen(def->secret), cdp_now_ms() / ACT_MS_PER_S, body, len,
                          sig) != 0) {
        free(body);
        act_job_end(j, "retry", act_job_retry_at(j), "cannot build the request", NULL);
        return;
    }
    char h[ACT_N_HEADERS - 1][ACT_HEADER_BUFSZ];
    snprintf(h[0], sizeof(h[0]), "Content-Type: application/json");
    snprintf(h[1], sizeof(h[1]), "%s: %s", ACT_SIGN_HEADER, sig);
    snprintf(h[2], sizeof(h[2]), "Idempotency-Key: %s", j->id);
    snprintf(h[3], sizeof(h[3]), "X-Cdp-Delivery-Id: %s", j->id);
    snprintf(h[4], sizeof(h[4]), "X-Cdp-Attempt: %d", (int)j->msg->attempt);
    const char *headers[ACT_N_HEADERS] = {h[0], h[1], h[2], h[3], h[4], NULL};
    char labels[ACT_LABELS_BUFSZ];
    act__dest_labels(j->d->id, labels, sizeof(labels));
    cdp_metrics_inc("cdp_activation_attempts_total", labels, 1);
    int rc = as->http ? act_http_post(as->http, def->url, headers, body, len, (int)def->timeout_ms,
                                      act__posted, j)
                      : -1;
    free(body);
    if (rc != 0) {
        act__count(j->d->id, "retry");
        act_job_end(j, "retry", act_job_retry_at(j), "cannot start the request", NULL);
    }
}

/* ------------------------------------------------------------------ consent */

static const char *act__rule_name(Cdp__V1__DecisionRule r)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&cdp__v1__decision_rule__descriptor, (int)r);
    return v ? v->name : "DECISION_RULE_UNSPECIFIED";
}

static void act__send(act_job *j)
{
    act_dest *d = j->d;
    if (d->def->type == CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_GATEWAY) {
        if (act_gateway_send(d->as, j) != 0)
            act_job_end(j, "free", cdp_now_ms(), "no gateway subscriber took it", NULL);
        else {
            char labels[ACT_LABELS_BUFSZ];
            act__dest_labels(d->id, labels, sizeof(labels));
            cdp_metrics_inc("cdp_activation_attempts_total", labels, 1);
        }
        return;
    }
    act__post(j);
}

static void act__consent_done(grpc_status_code code, const char *details,
                              const ProtobufCMessage *resp, void *ud)
{
    act_job *j = ud;
    act_dest *d = j->d;
    char err[ACT_ERR_MAX];
    if (code != GRPC_STATUS_OK) {
        snprintf(err, sizeof(err), "consent unavailable: %s", details ? details : "");
        act__count(d->id, "consent_unavailable");
        act_job_end(j, "free", act_job_retry_at(j), err, NULL);
        return;
    }
    const Cdp__V1__ConsentDecision *dec = (const Cdp__V1__ConsentDecision *)resp;
    if (!dec->allowed || d->as->stopping || d->gone) {
        if (!dec->allowed) {
            char labels[ACT_LABELS_BUFSZ];
            snprintf(labels, sizeof(labels), "destination=\"%s\",rule=\"%s\"", d->id,
                     act__rule_name(dec->rule));
            cdp_metrics_inc("cdp_activation_blocked_total", labels, 1);
            act__count(d->id, "blocked");
            act_job_end(j, "blocked", 0, NULL, dec->reason);
        } else {
            act_job_end(j, "free", cdp_now_ms(), NULL, NULL);
        }
        return;
    }
    act__send(j);
}

static void act__check_consent(act_job *j)
{
    act_dest *d = j->d;
    act_svc *as = d->as;
    char actor[ACT_ACTOR_BUFSZ];
    snprintf(actor, sizeof(actor), "activation/%s", d->id);
    Cdp__V1__CheckConsentRequest req = CDP__V1__CHECK_CONSENT_REQUEST__INIT;
    req.master_id = j->msg->master_id;
    req.purpose = d->def->purpose;
    req.channel = (char *)act_dest_channel(d->def);
    req.actor = actor;
    req.record_denial = 1;
    req.context = j->id;
    if (cdp_rpc_unary(as->consent, &cdp__v1__consent__descriptor, "CheckConsent", &req.base,
                      (int)as->cfg.rpc_timeout_ms, act__consent_done, j) != 0)
        act_job_end(j, "free", act_job_retry_at(j), "consent CheckConsent is not available", NULL);
}

/* ------------------------------------------------------------------ claim */

static act_job *act__job_new(act_dest *d, const redisReply *id, const redisReply *rec,
                             const redisReply *body, const char *token)
{
    act_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->d = d;
    snprintf(j->id, sizeof(j->id), "%.*s", (int)id->len, id->str);
    snprintf(j->token, sizeof(j->token), "%s", token);
    uv_timer_init(d->as->svc->loop, &j->timer);
    j->timer.data = j;
    d->in_flight++;
    json_t *r = json_loadb(rec->str, rec->len, 0, NULL);
    j->created_ms = (int64_t)json_number_value(json_object_get(r, "ca"));
    int attempt = (int)json_number_value(json_object_get(r, "a"));
    json_decref(r);
    j->msg = (Cdp__V1__ActivationMessage *)protobuf_c_message_unpack(
        &cdp__v1__activation_message__descriptor, NULL, body->len, (const uint8_t *)body->str);
    if (j->msg)
        j->msg->attempt = attempt > 0 ? attempt : 1;
    return j;
}

static void act__claimed(redisReply *reply, const char *err, void *ud)
{
    act_dest *d = ud;
    act_svc *as = d->as;
    char msg[ACT_ERR_MAX], token[ACT_TOKEN_MAX];
    d->claiming = 0;
    uint64_t again = d->rekick ? 0 : (uint64_t)as->cfg.poll_ms;
    d->rekick = 0;
    snprintf(token, sizeof(token), "%s", d->claim_token);
    if (cdp_redis_status(reply, err, msg, sizeof(msg)) != GRPC_STATUS_OK ||
        reply->type != REDIS_REPLY_ARRAY) {
        if (!as->stopping)
            cdp_log(CDP_LOG_WARN, "cannot claim deliveries", "{s:s,s:s}", "destination", d->id,
                    "error", msg[0] ? msg : "unexpected reply");
        act_outbox_kick(d, again);
        act_dest_release_if_gone(d);
        act_service_maybe_stopped(as);
        return;
    }
    size_t n = reply->elements / 3;
    for (size_t i = 0; i < n; i++) {
        redisReply *const *e = reply->element + 3 * i;
        if (e[0]->type != REDIS_REPLY_STRING || e[1]->type != REDIS_REPLY_STRING ||
            e[2]->type != REDIS_REPLY_STRING)
            continue;
        act_job *j = act__job_new(d, e[0], e[1], e[2], token);
        if (!j)
            continue;  /* the lease runs out and it is claimed again */
        if (!j->msg) {
            cdp_log(CDP_LOG_ERROR, "malformed outbox body; dead-lettered", "{s:s}", "delivery",
                    j->id);
            act_job_end(j, "dead", 0, "malformed outbox entry", NULL);
        } else if (as->stopping || d->gone) {
            act_job_end(j, "free", cdp_now_ms(), NULL, NULL);
        } else {
            act__check_consent(j);
        }
    }
    /* a full claim suggests more are due */
    act_outbox_kick(d, n > 0 && (int)n >= d->claim_max ? 0 : again);
    act_dest_release_if_gone(d);
    act_service_maybe_stopped(as);
}

static void act__claim(act_dest *d)
{
    act_svc *as = d->as;
    const Cdp__V1__Destination *def = d->def;
    if (d->claiming) {
        /* an enqueue or a finished job while a claim is out: its answer
         * may predate the new delivery, so claim again right after it */
        d->rekick = 1;
        return;
    }
    if (d->gone || as->stopping || !as->redis_up)
        return;
    int room = def->max_in_flight - d->in_flight;
    if (room <= 0)
        return;  /* a finishing job kicks again */
    if (def->type == CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_GATEWAY &&
        !act_gateway_has_sub(as, def->channel))
        return;  /* a subscriber connecting kicks again */
    int64_t now = cdp_now_ms();
    int64_t lease = now + def->timeout_ms + as->cfg.rpc_timeout_ms + as->cfg.lease_margin_ms;
    char snow[ACT_NUM_BUFSZ], slease[ACT_NUM_BUFSZ], smax[ACT_NUM_BUFSZ];
    snprintf(snow, sizeof(snow), "%" PRId64, now);
    snprintf(slease, sizeof(slease), "%" PRId64, lease);
    snprintf(smax, sizeof(smax), "%d", room);
    snprintf(d->claim_token, sizeof(d->claim_token), "%s-%llu", as->cfg.consumer,
             ++as->token_seq);
    const char *args[] = {snow, slease, smax, d->claim_token};
    size_t alen[4];
    for (int i = 0; i < 4; i++)
        alen[i] = strlen(args[i]);
    d->claiming = 1;
    d->claim_max = room;
    cdp_redis_eval(as->svc->redis, as->s_claim, act__claimed, d, ACT_KEY_COUNT,
                   (const char **)d->keys, d->keylens, 4, args, alen);
}

static void act__on_timer(uv_timer_t *t)
{
    act__claim(t->data);
}

void act_outbox_kick(act_dest *d, uint64_t after_ms)
{
    if (d->gone || d->closing || d->as->stopping)
        return;
    if (uv_is_active((uv_handle_t *)&d->timer) && uv_timer_get_due_in(&d->timer) <= after_ms)
        return;
    uv_timer_start(&d->timer, act__on_timer, after_ms, 0);
}

void act_outbox_kick_all(act_svc *as)
{
    for (act_dest *d = as->dests; d; d = d->next)
        act_outbox_kick(d, 0);
}
