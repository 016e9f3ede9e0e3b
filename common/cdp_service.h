/* cdp_service: the main() every service shares.
 *
 * It reads the common configuration, starts logging, the loop, the gRPC
 * bridge, the Redis client, grpc.health.v1 and the metrics listener, calls
 * the service's init to bind its methods, runs the loop, and on SIGTERM or
 * SIGINT shuts down in order: health NOT_SERVING, the service's own stop
 * (background workers), the gRPC server (grace period), Redis, the loop.
 *
 * Common environment (docs/configuration.md):
 *   CDP_GRPC_ADDR        gRPC listen address     default 0.0.0.0:<service port>
 *   CDP_METRICS_ADDR     Prometheus listener     default 0.0.0.0:<metrics port>
 *   CDP_REDIS_ADDR       host:port[,host:port]   default 127.0.0.1:6379
 *   CDP_REDIS_CONNECT_TIMEOUT_MS (2000), CDP_REDIS_COMMAND_TIMEOUT_MS (5000)
 *   CDP_SHUTDOWN_GRACE_MS (5000), CDP_MAX_MESSAGE_BYTES (8388608)
 *   CDP_LOG_LEVEL        debug|info|warn|error   default info
 */
#ifndef CDP_SERVICE_H
#define CDP_SERVICE_H

#include <uv.h>
#include "cdp_rpc.h"
#include "cdp_redis.h"
#include "cdp_health.h"

/* Default ports, so clients and services agree. */
enum {
    CDP_PORT_INGESTION = 50051,
    CDP_PORT_IDENTITY = 50052,
    CDP_PORT_PROFILE = 50053,
    CDP_PORT_SEGMENTATION = 50054,
    CDP_PORT_CONSENT = 50055,
    CDP_PORT_ACTIVATION = 50056,
    /* Prometheus metrics: 9151 (ingestion) ... 9156 (activation). */
    CDP_METRICS_PORT_BASE = 9150,
};

typedef struct cdp_service cdp_service;

typedef struct {
    const char *name;              /* "ingestion": logs, metrics, env */
    const char *grpc_service;      /* "cdp.v1.Ingestion": health service name */
    int port;                      /* default gRPC port */
    int metrics_port;              /* default metrics port */
    /* Binds methods (cdp_rpc_server_add_service on svc->server), registers
     * Redis scripts, opens channels to other services, reads its own
     * configuration. Returns 0, or -1 after logging why (the process exits 1). */
    int (*init)(cdp_service *svc);
    /* Optional: Redis came up (1) or went down (0). Called after health is set. */
    void (*on_redis_state)(cdp_service *svc, int up);
    /* Optional: stop background work, then call done(svc). Called on SIGTERM
     * before the gRPC server's graceful shutdown starts. */
    void (*stop)(cdp_service *svc, void (*done)(cdp_service *svc));
    /* Optional: free what init allocated; after the loop has stopped. */
    void (*destroy)(cdp_service *svc);
} cdp_service_def;

struct cdp_service {
    const cdp_service_def *def;
    uv_loop_t *loop;
    cdp_rpc_server *server;
    cdp_redis *redis;
    cdp_health *health;
    int stopping;                  /* 1 once SIGTERM arrived */
    void *state;                   /* the service's own */
};

/* Runs the service until SIGTERM/SIGINT. Returns the process exit code. */
int cdp_service_main(const cdp_service_def *def, int argc, char **argv);

/* Milliseconds since the Unix epoch (wall clock) and a monotonic clock. */
int64_t cdp_now_ms(void);
uint64_t cdp_mono_ms(void);

#endif
