/* cdp_service: the shared main() of every cdp service. See cdp_service.h
 * for the order of start-up and shutdown and the common configuration. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdp_config.h"
#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_service.h"

enum {
    SVC_ADDR_MAX = 300,
    SVC_DEFAULT_GRACE_MS = 5000,
    SVC_DEFAULT_MAX_MSG = 8 * 1024 * 1024,
    SVC_DEFAULT_REDIS_CONNECT_MS = 2000,
    SVC_DEFAULT_REDIS_COMMAND_MS = 5000,
};

typedef struct {
    cdp_service svc;
    uv_signal_t sigterm, sigint;
    cdp_metrics_http *metrics;
    int exit_code;
} svc_process;

int64_t cdp_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t cdp_mono_ms(void) { return uv_hrtime() / 1000000; }

/* ------------------------------------------------------------------ shutdown */

static void svc_walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void svc_redis_closed(void *ud) {
    svc_process *p = ud;
    uv_stop(p->svc.loop);
}

static void svc_server_down(void *ud) {
    svc_process *p = ud;
    cdp_log(CDP_LOG_INFO, "gRPC server stopped", NULL);
    cdp_health_free(p->svc.health);
    p->svc.health = NULL;
    cdp_metrics_http_stop(p->metrics);
    p->metrics = NULL;
    cdp_redis_close(p->svc.redis, svc_redis_closed, p);
}

static void svc_workers_stopped(cdp_service *svc) {
    svc_process *p = (svc_process *)svc;
    cdp_rpc_server_shutdown(svc->server, svc_server_down, p);
}

static void svc_on_signal(uv_signal_t *s, int signum) {
    svc_process *p = s->data;
    if (p->svc.stopping)
        return;
    p->svc.stopping = 1;
    cdp_log(CDP_LOG_INFO, "shutting down", "{s:i}", "signal", signum);
    uv_signal_stop(&p->sigterm);
    uv_signal_stop(&p->sigint);
    cdp_health_set(p->svc.health, 0);
    if (p->svc.def->stop)
        p->svc.def->stop(&p->svc, svc_workers_stopped);
    else
        svc_workers_stopped(&p->svc);
}

/* ------------------------------------------------------------------ start-up */

static void svc_redis_state(int up, void *ud) {
    svc_process *p = ud;
    if (!p->svc.stopping)
        cdp_health_set(p->svc.health, up);
    cdp_metrics_set("cdp_redis_up", "", up);
    if (p->svc.def->on_redis_state)
        p->svc.def->on_redis_state(&p->svc, up);
}

static int svc_read_config(svc_process *p, char *grpc_addr, char *metrics_host, int *metrics_port,
                           cdp_redis_opts *ro, cdp_rpc_server_opts *so) {
    const cdp_service_def *d = p->svc.def;
    char def_addr[SVC_ADDR_MAX];
    snprintf(def_addr, sizeof(def_addr), "0.0.0.0:%d", d->port);
    snprintf(grpc_addr, SVC_ADDR_MAX, "%s", cdp_env_str("CDP_GRPC_ADDR", def_addr));
    char host[SVC_ADDR_MAX];
    int port;
    if (cdp_parse_hostport(grpc_addr, host, sizeof(host), &port) != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s}", "variable", "CDP_GRPC_ADDR",
                "value", grpc_addr, "expected", "host:port");
        return -1;
    }
    snprintf(def_addr, sizeof(def_addr), "0.0.0.0:%d", d->metrics_port);
    const char *maddr = cdp_env_str("CDP_METRICS_ADDR", def_addr);
    if (cdp_parse_hostport(maddr, metrics_host, SVC_ADDR_MAX, metrics_port) != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s}", "variable",
                "CDP_METRICS_ADDR", "value", maddr, "expected", "host:port");
        return -1;
    }
    int64_t grace, maxmsg, cto, cmdto;
    if (cdp_env_int("CDP_SHUTDOWN_GRACE_MS", SVC_DEFAULT_GRACE_MS, 0, 600000, &grace) ||
        cdp_env_int("CDP_MAX_MESSAGE_BYTES", SVC_DEFAULT_MAX_MSG, 4096, 64 * 1024 * 1024, &maxmsg) ||
        cdp_env_int("CDP_REDIS_CONNECT_TIMEOUT_MS", SVC_DEFAULT_REDIS_CONNECT_MS, 10, 600000, &cto) ||
        cdp_env_int("CDP_REDIS_COMMAND_TIMEOUT_MS", SVC_DEFAULT_REDIS_COMMAND_MS, 10, 600000, &cmdto))
        return -1;
    memset(so, 0, sizeof(*so));
    so->addr = grpc_addr;
    so->grace_ms = grace > 0 ? (int)grace : 1;
    so->max_recv_bytes = (int)maxmsg;
    so->max_send_bytes = (int)maxmsg;
    memset(ro, 0, sizeof(*ro));
    ro->addrs = cdp_env_str("CDP_REDIS_ADDR", "127.0.0.1:6379");
    ro->connect_timeout_ms = (int)cto;
    ro->command_timeout_ms = (int)cmdto;
    return 0;
}

int cdp_service_main(const cdp_service_def *def, int argc, char **argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    cdp_log_init(def->name);
    svc_process *p = calloc(1, sizeof(*p));
    if (!p) return 1;
    p->svc.def = def;
    p->svc.loop = uv_default_loop();

    char grpc_addr[SVC_ADDR_MAX], metrics_host[SVC_ADDR_MAX];
    int metrics_port;
    cdp_redis_opts ro;
    cdp_rpc_server_opts so;
    if (svc_read_config(p, grpc_addr, metrics_host, &metrics_port, &ro, &so) != 0)
        return 1;
    if (cdp_rpc_init(p->svc.loop) != 0)
        return 1;
    p->svc.redis = cdp_redis_new(p->svc.loop, &ro);
    if (!p->svc.redis) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s}", "variable",
                "CDP_REDIS_ADDR", "value", ro.addrs, "expected", "host:port[,host:port...]");
        return 1;
    }
    p->svc.server = cdp_rpc_server_new(p->svc.loop, &so);
    p->svc.health = cdp_health_new(p->svc.server, def->grpc_service);
    if (!p->svc.health || def->init(&p->svc) != 0) {
        cdp_log(CDP_LOG_ERROR, "service initialisation failed", NULL);
        return 1;
    }
    cdp_redis_on_state(p->svc.redis, svc_redis_state, p);
    int port = cdp_rpc_server_start(p->svc.server);
    if (port < 0)
        return 1;
    int mport = cdp_metrics_http_start(p->svc.loop, metrics_host, metrics_port, &p->metrics);
    if (mport < 0) {
        cdp_log(CDP_LOG_ERROR, "cannot listen for metrics", "{s:s,s:i,s:s}", "host", metrics_host,
                "port", metrics_port, "error", uv_strerror(mport));
        return 1;
    }
    cdp_redis_start(p->svc.redis);

    uv_signal_init(p->svc.loop, &p->sigterm);
    uv_signal_init(p->svc.loop, &p->sigint);
    p->sigterm.data = p->sigint.data = p;
    uv_signal_start(&p->sigterm, svc_on_signal, SIGTERM);
    uv_signal_start(&p->sigint, svc_on_signal, SIGINT);
    cdp_log(CDP_LOG_INFO, "listening", "{s:s,s:i,s:i,s:s}", "grpc_addr", grpc_addr, "grpc_port",
            port, "metrics_port", mport, "redis", ro.addrs);

    uv_run(p->svc.loop, UV_RUN_DEFAULT);

    /* Stopped: release what is left, then let every handle close. */
    if (def->destroy)
        def->destroy(&p->svc);
    cdp_rpc_server_free(p->svc.server);
    cdp_rpc_shutdown();
    uv_walk(p->svc.loop, svc_walk_close, NULL);
    uv_run(p->svc.loop, UV_RUN_DEFAULT);
    uv_loop_close(p->svc.loop);
    cdp_log(CDP_LOG_INFO, "stopped", NULL);
    int code = p->exit_code;
    free(p);
    return code;
}
