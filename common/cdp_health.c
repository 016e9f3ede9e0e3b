/* cdp_health: grpc.health.v1.Health over the RPC bridge.
 *
 * Two names are known: "" (the whole server) and the service's own name;
 * both share one status. Check answers NOT_FOUND for other names, as the
 * protocol asks; Watch answers SERVICE_UNKNOWN for them and keeps the stream
 * open. Watchers live in a list on the loop and get every change. */
#include <stdlib.h>
#include <string.h>

#include "cdp_health.h"
#include "cdp_log.h"
#include "grpc/health/v1/health.pb-c.h"

typedef struct health_watch {
    struct health_watch *prev, *next;
    cdp_rpc_call *call;
    cdp_health *h;
    int known;
} health_watch;

struct cdp_health {
    char *service_name;
    int serving;
    health_watch *watchers;
};

static int health_known(const cdp_health *h, const char *name) {
    return name[0] == 0 || strcmp(name, h->service_name) == 0;
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus health_status(const cdp_health *h,
                                                                          int known) {
    if (!known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void health_check(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud) {
    cdp_health *h = ud;
    const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)req;
    if (!health_known(h, r->service)) {
        cdp_rpc_fail(call, GRPC_STATUS_NOT_FOUND, "unknown service: %s", r->service);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = health_status(h, 1);
    cdp_rpc_reply(call, &resp.base);
}

static void watch_send(health_watch *w) {
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = health_status(w->h, w->known);
    if (cdp_rpc_stream_send(w->call, &resp.base) != 0)
        cdp_log(CDP_LOG_DEBUG, "health watcher too slow or gone", NULL);
}

static void watch_remove(health_watch *w) {
    if (w->prev) w->prev->next = w->next;
    else w->h->watchers = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
}

/* The client went away or the server is stopping: end the stream. */
static void watch_cancelled(cdp_rpc_call *call, void *ud) {
    health_watch *w = ud;
    cdp_rpc_finish(call, GRPC_STATUS_CANCELLED, "watch ended");
    watch_remove(w);
}

static void health_watch_start(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud) {
    cdp_health *h = ud;
    const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)req;
    health_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        cdp_rpc_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = call;
    w->h = h;
    w->known = health_known(h, r->service);
    w->next = h->watchers;
    if (h->watchers) h->watchers->prev = w;
    h->watchers = w;
    cdp_rpc_call_on_cancel(call, watch_cancelled, w);
    watch_send(w);
}

cdp_health *cdp_health_new(cdp_rpc_server *s, const char *service_name) {
    cdp_health *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    h->service_name = strdup(service_name);
    static const cdp_rpc_binding bindings[] = {
        {"Check", health_check, 0},
        {"Watch", health_watch_start, 1},
    };
    if (cdp_rpc_server_add_service(s, &grpc__health__v1__health__descriptor, bindings, 2, h) != 0) {
        free(h->service_name);
        free(h);
        return NULL;
    }
    return h;
}

void cdp_health_set(cdp_health *h, int serving) {
    serving = serving ? 1 : 0;
    if (h->serving == serving)
        return;
    h->serving = serving;
    for (health_watch *w = h->watchers; w; w = w->next)
        if (w->known)
            watch_send(w);
}

int cdp_health_get(const cdp_health *h) { return h->serving; }

void cdp_health_free(cdp_health *h) {
    if (!h) return;
    while (h->watchers) {
        health_watch *w = h->watchers;
        cdp_rpc_finish(w->call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
        watch_remove(w);
    }
    free(h->service_name);
    free(h);
}
