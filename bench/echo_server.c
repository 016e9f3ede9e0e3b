/* cdp-echo-server: the null service as a standalone process.
 *
 * It serves cdp.v1.Echo (no logic: the payload goes back) and
 * grpc.health.v1 on the same bridge, loop and build flags as the real
 * services, so that a benchmark can divide every service figure by the
 * figure of this process measured in the same run. No Redis.
 *
 * Environment:
 *   CDP_GRPC_ADDR          listen address, default 127.0.0.1:51430
 *   CDP_METRICS_ADDR       optional: serves GET /healthz and /metrics there
 *   CDP_SHUTDOWN_GRACE_MS  grace for in-flight calls on SIGTERM, default 5000
 *   CDP_MAX_MESSAGE_BYTES  largest request and reply, default 8 MiB
 * SIGTERM or SIGINT shuts down gracefully and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_config.h"
#include "cdp_echo.h"
#include "cdp_health.h"
#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_rpc.h"

#define ECHO_DEFAULT_ADDR "127.0.0.1:51430"

enum {
    ECHO_HOST_MAX = 256,
    ECHO_DEFAULT_GRACE_MS = 5000,
    ECHO_MAX_GRACE_MS = 600000,
    ECHO_DEFAULT_MAX_MSG = 8 * 1024 * 1024,
    ECHO_MIN_MAX_MSG = 4096,
    ECHO_MAX_MAX_MSG = 64 * 1024 * 1024,
};

typedef struct {
    uv_loop_t *loop;
    cdp_rpc_server *server;
    cdp_health *health;
    cdp_metrics_http *metrics;
    uv_signal_t sigterm, sigint;
    int stopping;
} echo_process;

/* ------------------------------------------------------------------ shutdown */

static void echo_server_down(void *ud) {
    echo_process *p = ud;
    cdp_log(CDP_LOG_INFO, "gRPC server stopped", NULL);
    cdp_health_free(p->health);
    p->health = NULL;
    cdp_metrics_http_stop(p->metrics);
    p->metrics = NULL;
    uv_stop(p->loop);
}

static void echo_on_signal(uv_signal_t *s, int signum) {
    echo_process *p = s->data;
    if (p->stopping)
        return;
    p->stopping = 1;
    cdp_log(CDP_LOG_INFO, "shutting down", "{s:i}", "signal", signum);
    uv_signal_stop(&p->sigterm);
    uv_signal_stop(&p->sigint);
    cdp_health_set(p->health, 0);
    cdp_rpc_server_shutdown(p->server, echo_server_down, p);
}

static void echo_walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* ------------------------------------------------------------------ start-up */

/* Starts the optional metrics listener named by CDP_METRICS_ADDR.
 * Returns 0 (also when unset) or -1 after logging why. */
static int echo_start_metrics(echo_process *p) {
    const char *maddr = cdp_env_str("CDP_METRICS_ADDR", NULL);
    if (!maddr)
        return 0;
    char host[ECHO_HOST_MAX];
    int port;
    if (cdp_parse_hostport(maddr, host, sizeof(host), &port) != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s}", "variable",
                "CDP_METRICS_ADDR", "value", maddr, "expected", "host:port");
        return -1;
    }
    int bound = cdp_metrics_http_start(p->loop, host, port, &p->metrics);
    if (bound < 0) {
        cdp_log(CDP_LOG_ERROR, "cannot listen for metrics", "{s:s,s:i,s:s}", "host", host, "port",
                port, "error", uv_strerror(bound));
        return -1;
    }
    return 0;
}

/* Builds and starts the server. Returns the bound port or -1 (logged). */
static int echo_start(echo_process *p, const char *addr) {
    int64_t grace, maxmsg;
    if (cdp_env_int("CDP_SHUTDOWN_GRACE_MS", ECHO_DEFAULT_GRACE_MS, 0, ECHO_MAX_GRACE_MS, &grace) ||
        cdp_env_int("CDP_MAX_MESSAGE_BYTES", ECHO_DEFAULT_MAX_MSG, ECHO_MIN_MAX_MSG,
                    ECHO_MAX_MAX_MSG, &maxmsg))
        return -1;
    cdp_rpc_server_opts so = {
        .addr = addr,
        .max_recv_bytes = (int)maxmsg,
        .max_send_bytes = (int)maxmsg,
        .grace_ms = grace > 0 ? (int)grace : 1,
    };
    if (cdp_rpc_init(p->loop) != 0)
        return -1;
    p->server = cdp_rpc_server_new(p->loop, &so);
    p->health = cdp_health_new(p->server, "cdp.v1.Echo");
    if (!p->health || cdp_echo_register(p->server, p->loop) != 0)
        return -1;
    int port = cdp_rpc_server_start(p->server);
    if (port < 0 || echo_start_metrics(p) != 0)
        return -1;
    cdp_health_set(p->health, 1);
    return port;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    cdp_log_init("echo-server");
    echo_process p;
    memset(&p, 0, sizeof(p));
    p.loop = uv_default_loop();
    const char *addr = cdp_env_str("CDP_GRPC_ADDR", ECHO_DEFAULT_ADDR);
    int port = echo_start(&p, addr);
    if (port < 0) {
        cdp_log(CDP_LOG_ERROR, "echo server failed to start", "{s:s}", "addr", addr);
        return 1;
    }
    uv_signal_init(p.loop, &p.sigterm);
    uv_signal_init(p.loop, &p.sigint);
    p.sigterm.data = p.sigint.data = &p;
    uv_signal_start(&p.sigterm, echo_on_signal, SIGTERM);
    uv_signal_start(&p.sigint, echo_on_signal, SIGINT);
    cdp_log(CDP_LOG_INFO, "listening", "{s:s,s:i}", "grpc_addr", addr, "grpc_port", port);

    uv_run(p.loop, UV_RUN_DEFAULT);

    cdp_rpc_server_free(p.server);
    cdp_rpc_shutdown();
    uv_walk(p.loop, echo_walk_close, NULL);
    uv_run(p.loop, UV_RUN_DEFAULT);
    uv_loop_close(p.loop);
    cdp_log(CDP_LOG_INFO, "stopped", NULL);
    return 0;
}
