/* act_service: configuration, wiring, start and graceful stop of the
 * Activation service (see act_service.h).
 *
 * Stop (SIGTERM): the intake stops reading (its blocked read is closed),
 * no destination claims any more, gateway streams end with OK and their
 * unacknowledged deliveries go back to due; webhook POSTs in flight may
 * finish for up to CDP_ACTIVATION_STOP_WAIT_MS, after which they are
 * aborted (and retried later, by this or another replica). Once nothing
 * is in flight the HTTP client and every timer close and the runtime goes
 * on with the gRPC server's shutdown. */
#include "act_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "act_sign.h"
#include "cdp_config.h"
#include "cdp_log.h"
#include "cdp_metrics.h"

enum {
    ACT_DEFAULT_BACKOFF_BASE_MS = 500,
    ACT_DEFAULT_BACKOFF_MAX_MS = 60000,
    ACT_DEFAULT_POLL_MS = 250,
    ACT_DEFAULT_LEASE_MARGIN_MS = 5000,
    ACT_DEFAULT_RELOAD_MS = 1000,
    ACT_DEFAULT_BATCH = 100,
    ACT_MAX_BATCH = 10000,
    ACT_DEFAULT_BLOCK_MS = 1000,
    ACT_DEFAULT_CLAIM_INTERVAL_MS = 5000,
    ACT_DEFAULT_CLAIM_IDLE_MS = 30000,
    ACT_DEFAULT_RPC_TIMEOUT_MS = 2000,
    ACT_DEFAULT_RETENTION_S = 7 * 24 * 3600,
    ACT_DEFAULT_STOP_WAIT_MS = 10000,
    ACT_DEFAULT_REDIS_CONNECT_MS = 2000,
    ACT_DEFAULT_REDIS_COMMAND_MS = 5000,
    ACT_MAX_MS = 3600 * 1000,
    ACT_MAX_RETENTION_S = 365 * 24 * 3600,
    ACT_HOST_MAX = 64,
};

int act_config_read(act_config *c)
{
    static char consumer[ACT_CONSUMER_MAX];
    struct {
        const char *name;
        int64_t def, min, max;
        int64_t *out;
    } ints[] = {
        {"CDP_ACTIVATION_BACKOFF_BASE_MS", ACT_DEFAULT_BACKOFF_BASE_MS, 1, ACT_MAX_MS, &c->backoff_base_ms},
        {"CDP_ACTIVATION_BACKOFF_MAX_MS", ACT_DEFAULT_BACKOFF_MAX_MS, 1, ACT_MAX_MS, &c->backoff_max_ms},
        {"CDP_ACTIVATION_POLL_MS", ACT_DEFAULT_POLL_MS, 10, ACT_MAX_MS, &c->poll_ms},
        {"CDP_ACTIVATION_LEASE_MARGIN_MS", ACT_DEFAULT_LEASE_MARGIN_MS, 0, ACT_MAX_MS, &c->lease_margin_ms},
        {"CDP_ACTIVATION_RELOAD_MS", ACT_DEFAULT_RELOAD_MS, 10, ACT_MAX_MS, &c->reload_ms},
        {"CDP_ACTIVATION_BATCH", ACT_DEFAULT_BATCH, 1, ACT_MAX_BATCH, &c->batch},
        {"CDP_ACTIVATION_BLOCK_MS", ACT_DEFAULT_BLOCK_MS, 1, ACT_MAX_MS, &c->block_ms},
        {"CDP_ACTIVATION_CLAIM_INTERVAL_MS", ACT_DEFAULT_CLAIM_INTERVAL_MS, 10, ACT_MAX_MS, &c->claim_interval_ms},
        {"CDP_ACTIVATION_CLAIM_IDLE_MS", ACT_DEFAULT_CLAIM_IDLE_MS, 10, ACT_MAX_MS, &c->claim_idle_ms},
        {"CDP_ACTIVATION_RPC_TIMEOUT_MS", ACT_DEFAULT_RPC_TIMEOUT_MS, 10, ACT_MAX_MS, &c->rpc_timeout_ms},
        {"CDP_ACTIVATION_RETENTION_S", ACT_DEFAULT_RETENTION_S, 1, ACT_MAX_RETENTION_S, &c->retention_s},
        {"CDP_ACTIVATION_STOP_WAIT_MS", ACT_DEFAULT_STOP_WAIT_MS, 0, ACT_MAX_MS, &c->stop_wait_ms},
        {"CDP_REDIS_CONNECT_TIMEOUT_MS", ACT_DEFAULT_REDIS_CONNECT_MS, 10, ACT_MAX_MS, &c->redis_connect_ms},
        {"CDP_REDIS_COMMAND_TIMEOUT_MS", ACT_DEFAULT_REDIS_COMMAND_MS, 10, ACT_MAX_MS, &c->redis_command_ms},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if (cdp_env_int(ints[i].name, ints[i].def, ints[i].min, ints[i].max, ints[i].out) != 0)
            return -1;
    c->profile_addr = cdp_env_str("CDP_PROFILE_ADDR", "127.0.0.1:50053");
    c->consent_addr = cdp_env_str("CDP_CONSENT_ADDR", "127.0.0.1:50055");
    c->redis_addrs = cdp_env_str("CDP_REDIS_ADDR", "127.0.0.1:6379");
    char host[ACT_HOST_MAX];
    if (gethostname(host, sizeof(host)) != 0)
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    char def[ACT_CONSUMER_MAX];
    /* The host name: a restarted process (a container restarted in its
     * pod) takes up its own pending changes at once. */
    snprintf(def, sizeof(def), "%s", host);
    snprintf(consumer, sizeof(consumer), "%s", cdp_env_str("CDP_ACTIVATION_CONSUMER", def));
    c->consumer = consumer;
    return 0;
}

uint64_t act_random(void)
{
    uint64_t v;
    randombytes_buf(&v, sizeof(v));
    return v;
}

static void act__metrics_help(void)
{
    cdp_metrics_help("cdp_activation_deliveries_total",
                     "Delivery attempts by destination and result (delivered, retry, dead, "
                     "permanent, blocked).");
    cdp_metrics_help("cdp_activation_attempts_total", "Deliveries sent (webhook POSTs and "
                                                      "gateway stream messages).");
    cdp_metrics_help("cdp_activation_delivery_latency_seconds",
                     "From enqueue to delivered, per destination.");
    cdp_metrics_help("cdp_activation_outbox_depth",
                     "Deliveries pending or in flight in the outbox, per destination.");
    cdp_metrics_help("cdp_activation_blocked_total",
                     "Deliveries blocked by consent at send time, by destination and rule.");
    cdp_metrics_help("cdp_activation_dead_letters_total", "Deliveries moved to the dead letters.");
    cdp_metrics_help("cdp_activation_changes_total",
                     "Segment changes read from the change stream, by result.");
    cdp_metrics_help("cdp_activation_enqueued_total",
                     "Outbox deliveries created (new) or found already there (duplicate).");
}

int act_service_init(cdp_service *svc)
{
    act_svc *as = calloc(1, sizeof(*as));
    if (!as)
        return -1;
    as->svc = svc;
    as->version = -1;
    svc->state = as;
    if (act_config_read(&as->cfg) != 0)
        return -1;
    if (act_sign_init() != 0 || sodium_init() < 0) {
        cdp_log(CDP_LOG_ERROR, "cannot initialise libsodium", NULL);
        return -1;
    }
    cdp_redis *r = svc->redis;
    as->s_put = cdp_redis_script_add(r, "activation_dest_put", act_lua_dest_put);
    as->s_del = cdp_redis_script_add(r, "activation_dest_del", act_lua_dest_del);
    as->s_enqueue = cdp_redis_script_add(r, "activation_enqueue", act_lua_enqueue);
    as->s_claim = cdp_redis_script_add(r, "activation_claim", act_lua_claim);
    as->s_finish = cdp_redis_script_add(r, "activation_finish", act_lua_finish);
    as->s_replay = cdp_redis_script_add(r, "activation_replay", act_lua_replay);
    as->s_list = cdp_redis_script_add(r, "activation_list", act_lua_list);
    if (!as->s_put || !as->s_del || !as->s_enqueue || !as->s_claim || !as->s_finish ||
        !as->s_replay || !as->s_list) {
        cdp_log(CDP_LOG_ERROR, "cannot register activation scripts", NULL);
        return -1;
    }
    as->profile = cdp_rpc_channel_new(svc->loop, as->cfg.profile_addr, NULL);
    as->consent = cdp_rpc_channel_new(svc->loop, as->cfg.consent_addr, NULL);
    as->http = act_http_new(svc->loop);
    if (!as->profile || !as->consent || !as->http) {
        cdp_log(CDP_LOG_ERROR, "cannot open the activation clients", "{s:s,s:s}", "profile",
                as->cfg.profile_addr, "consent", as->cfg.consent_addr);
        return -1;
    }
    uv_timer_init(svc->loop, &as->reload_timer);
    uv_timer_init(svc->loop, &as->stop_timer);
    as->reload_timer.data = as->stop_timer.data = as;
    as->handles_open = 2;
    if (!(as->intake = act_intake_new(as)))
        return -1;
    static const cdp_rpc_binding bindings[] = {
        {"CreateDestination", act_create_destination, 0},
        {"UpdateDestination", act_update_destination, 0},
        {"GetDestination", act_get_destination, 0},
        {"ListDestinations", act_list_destinations, 0},
        {"DeleteDestination", act_delete_destination, 0},
        {"Subscribe", act_subscribe, 1},
        {"Ack", act_ack, 0},
        {"GetDelivery", act_get_delivery, 0},
        {"ListDeliveries", act_list_deliveries, 0},
        {"ListDeadLetters", act_list_dead_letters, 0},
        {"ReplayDeadLetters", act_replay_dead_letters, 0},
    };
    if (cdp_rpc_server_add_service(svc->server, &cdp__v1__activation__descriptor, bindings,
                                   sizeof(bindings) / sizeof(bindings[0]), as) != 0)
        return -1;
    act__metrics_help();
    act_dest_start(as);
    cdp_log(CDP_LOG_INFO, "activation configured", "{s:s,s:s,s:s,s:I,s:I}", "profile",
            as->cfg.profile_addr, "consent", as->cfg.consent_addr, "consumer", as->cfg.consumer,
            "backoff_base_ms", (json_int_t)as->cfg.backoff_base_ms, "backoff_max_ms",
            (json_int_t)as->cfg.backoff_max_ms);
    return 0;
}

void act_service_redis_state(cdp_service *svc, int up)
{
    act_svc *as = svc->state;
    if (!as || as->stopping)
        return;
    as->redis_up = up;
    act_intake_set_up(as->intake, up);
    if (up) {
        act_dest_reload(as);
        act_outbox_kick_all(as);
    }
}

/* ------------------------------------------------------------------ stop */

void act_service_handle_closed(uv_handle_t *h)
{
    act_svc *as = h->data;
    if (--as->handles_open > 0)
        return;
    cdp_log(CDP_LOG_INFO, "activation stopped", NULL);
    if (as->stop_done)
        as->stop_done(as->svc);
}

static void act__http_closed(void *ud)
{
    act_svc *as = ud;
    as->http = NULL;
    as->http_closed = 1;
    act_service_maybe_stopped(as);
}

static int act__busy(const act_svc *as)
{
    if (as->intake || as->loading)
        return 1;
    for (const act_dest *d = as->dests; d; d = d->next)
        if (d->in_flight || d->claiming)
            return 1;
    return 0;
}

static void act__close_http(act_svc *as)
{
    if (as->http && !as->http_closed && !as->stop_forced) {
        as->stop_forced = 1;
        act_http_close(as->http, act__http_closed, as);
    }
}

void act_service_maybe_stopped(act_svc *as)
{
    if (!as->stopping || as->timers_closing || act__busy(as))
        return;
    if (!as->http_closed) {
        act__close_http(as);
        return;
    }
    as->timers_closing = 1;
    uv_timer_stop(&as->stop_timer);
    uv_close((uv_handle_t *)&as->reload_timer, act_service_handle_closed);
    uv_close((uv_handle_t *)&as->stop_timer, act_service_handle_closed);
    act_dest_close_all(as);
}

static void act__on_stop_wait(uv_timer_t *t)
{
    act_svc *as = t->data;
    cdp_log(CDP_LOG_WARN, "aborting webhook requests still in flight", "{s:i}", "requests",
            as->http ? (int)act_http_in_flight(as->http) : 0);
    act__close_http(as);
}

static void act__intake_stopped(void *ud)
{
    act_svc *as = ud;
    act_intake_free(as->intake);
    as->intake = NULL;
    act_service_maybe_stopped(as);
}

void act_service_stop(cdp_service *svc, void (*done)(cdp_service *svc))
{
    act_svc *as = svc->state;
    as->stopping = 1;
    as->stop_done = done;
    cdp_log(CDP_LOG_INFO, "activation stopping", "{s:i}", "webhooks_in_flight",
            as->http ? (int)act_http_in_flight(as->http) : 0);
    uv_timer_stop(&as->reload_timer);
    for (act_dest *d = as->dests; d; d = d->next)
        uv_timer_stop(&d->timer);
    act_gateway_close_all(as);
    uv_timer_start(&as->stop_timer, act__on_stop_wait, (uint64_t)as->cfg.stop_wait_ms, 0);
    act_intake_stop(as->intake, act__intake_stopped, as);
}

void act_service_destroy(cdp_service *svc)
{
    act_svc *as = svc->state;
    if (!as)
        return;
    if (as->profile)
        cdp_rpc_channel_close(as->profile);
    if (as->consent)
        cdp_rpc_channel_close(as->consent);
    act_intake_free(as->intake);
    act_dest_free_all(as);
    free(as);
    svc->state = NULL;
}
