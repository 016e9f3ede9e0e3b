/* itest_rpc: the RPC bridge end to end on loopback, in one process: the
 * null Echo service and grpc.health.v1 served by cdp_rpc_server, called by
 * cdp_rpc_client. Checks replies, status codes for deadlines, oversized and
 * unknown methods, retries across a server that comes up late, health, and
 * graceful shutdown letting an in-flight call finish. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cdp/v1/echo.pb-c.h"
#include "cdp/v1/identity.pb-c.h"
#include "cdp_echo.h"
#include "cdp_health.h"
#include "cdp_log.h"
#include "cdp_rpc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "itest_util.h"

enum { MAX_RECV = 64 * 1024, WAIT_LIMIT_MS = 15000 };

static uv_loop_t *loop;

#define CHECK ITEST_CHECK /* every check counts in itest_util's tally */

typedef struct {
    int done;
    grpc_status_code code;
    char details[256];
    size_t payload_len;
    int health_status;
} result;

static void on_done(grpc_status_code code, const char *details, const ProtobufCMessage *resp,
                    void *ud) {
    result *r = ud;
    r->done = 1;
    r->code = code;
    snprintf(r->details, sizeof(r->details), "%s", details ? details : "");
    if (resp && resp->descriptor == &cdp__v1__echo_reply__descriptor)
        r->payload_len = ((const Cdp__V1__EchoReply *)resp)->payload.len;
    if (resp && resp->descriptor == &grpc__health__v1__health_check_response__descriptor)
        r->health_status = ((const Grpc__Health__V1__HealthCheckResponse *)resp)->status;
}

/* Runs the loop until every result is done or the limit passes. */
static void wait_all(result *rs, int n) {
    uint64_t until = uv_hrtime() / 1000000 + WAIT_LIMIT_MS;
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++) all &= rs[i].done;
        if (all || uv_hrtime() / 1000000 > until) return;
        uv_run(loop, UV_RUN_ONCE);
    }
}

static void echo_call(cdp_rpc_channel *ch, size_t len, int delay_ms, int deadline_ms, result *r) {
    Cdp__V1__EchoRequest req = CDP__V1__ECHO_REQUEST__INIT;
    uint8_t *buf = calloc(1, len ? len : 1);
    req.payload.data = buf;
    req.payload.len = len;
    req.delay_ms = delay_ms;
    memset(r, 0, sizeof(*r));
    cdp_rpc_unary(ch, &cdp__v1__echo__descriptor, "Echo", &req.base, deadline_ms, on_done, r);
    free(buf);  /* packed at call time */
}

static void shutdown_done(void *ud) { *(int *)ud = 1; }

/* A loopback port nothing listens on (bound, read, released). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct {
    uv_timer_t timer;
    char addr[64];
    cdp_rpc_server *srv;
} late_server;

static void late_start(uv_timer_t *t) {
    late_server *l = t->data;
    cdp_rpc_server_opts o = {.addr = l->addr};
    l->srv = cdp_rpc_server_new(loop, &o);
    cdp_echo_register(l->srv, loop);
    cdp_rpc_server_start(l->srv);
}

/* Keeps the loop alive (and turning) while calls are only in gRPC's hands. */
static void tick(uv_timer_t *t) { (void)t; }

int main(void) {
    cdp_log_init("itest_rpc");
    loop = uv_default_loop();
    cdp_rpc_init(loop);
    uv_timer_t ticker;
    uv_timer_init(loop, &ticker);
    uv_timer_start(&ticker, tick, 5, 5);

    cdp_rpc_server_opts so = {.addr = "127.0.0.1:0", .max_recv_bytes = MAX_RECV, .grace_ms = 2000};
    cdp_rpc_server *srv = cdp_rpc_server_new(loop, &so);
    cdp_health *h = cdp_health_new(srv, "cdp.v1.Echo");
    CHECK(cdp_echo_register(srv, loop) == 0, "echo registers");
    int port = cdp_rpc_server_start(srv);
    CHECK(port > 0, "server binds a port");
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    cdp_rpc_channel *ch = cdp_rpc_channel_new(loop, target, NULL);

    /* A reply carries the payload back. */
    result r[4];
    echo_call(ch, 1000, 0, 5000, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].done && r[0].code == GRPC_STATUS_OK, "echo answers OK");
    CHECK(r[0].payload_len == 1000, "echo returns the payload");

    /* Many concurrent calls all complete. */
    enum { N = 200 };
    result many[N];
    for (int i = 0; i < N; i++) echo_call(ch, (size_t)i, 0, 5000, &many[i]);
    wait_all(many, N);
    int ok = 0;
    for (int i = 0; i < N; i++) ok += many[i].code == GRPC_STATUS_OK && many[i].payload_len == (size_t)i;
    CHECK(ok == N, "200 concurrent calls all answered correctly");

    /* A handler slower than the deadline: DEADLINE_EXCEEDED, not a hang. */
    echo_call(ch, 10, 1000, 200, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded is reported");

    /* A request over the server's limit: RESOURCE_EXHAUSTED. */
    echo_call(ch, MAX_RECV + 1024, 0, 5000, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_RESOURCE_EXHAUSTED, "oversized request is refused");

    /* A method the server does not serve: UNIMPLEMENTED. */
    Cdp__V1__LookupRequest lr = CDP__V1__LOOKUP_REQUEST__INIT;
    memset(&r[0], 0, sizeof(r[0]));
    cdp_rpc_unary(ch, &cdp__v1__identity__descriptor, "Lookup", &lr.base, 2000, on_done, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_UNIMPLEMENTED, "unknown method is UNIMPLEMENTED");
    if (r[0].code != GRPC_STATUS_UNIMPLEMENTED) fprintf(stderr, "got %d %s\n", r[0].code, r[0].details);
    CHECK(cdp_rpc_unary(ch, &cdp__v1__echo__descriptor, "Nope", &lr.base, 100, on_done, &r[0]) == -1,
          "client refuses a method the descriptor lacks");

    /* Health: NOT_SERVING until set, then SERVING; unknown names NOT_FOUND. */
    Grpc__Health__V1__HealthCheckRequest hr = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    memset(r, 0, sizeof(r));
    cdp_rpc_unary(ch, &grpc__health__v1__health__descriptor, "Check", &hr.base, 2000, on_done, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_OK && r[0].health_status == 2, "health starts NOT_SERVING");
    cdp_health_set(h, 1);
    hr.service = "cdp.v1.Echo";
    cdp_rpc_unary(ch, &grpc__health__v1__health__descriptor, "Check", &hr.base, 2000, on_done, &r[1]);
    hr.service = "cdp.v1.Other";
    cdp_rpc_unary(ch, &grpc__health__v1__health__descriptor, "Check", &hr.base, 2000, on_done, &r[2]);
    wait_all(r + 1, 2);
    CHECK(r[1].code == GRPC_STATUS_OK && r[1].health_status == 1, "health SERVING after set");
    CHECK(r[2].code == GRPC_STATUS_NOT_FOUND, "unknown health service is NOT_FOUND");

    /* Retries: a channel to a port with no server yet gets UNAVAILABLE after
     * its attempts; with a longer budget it succeeds once the server starts. */
    cdp_rpc_channel_opts co = {.max_attempts = 3, .backoff_initial_ms = 20, .backoff_max_ms = 50};
    cdp_rpc_channel *dead = cdp_rpc_channel_new(loop, "127.0.0.1:1", &co);
    echo_call(dead, 1, 0, 3000, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_UNAVAILABLE, "no server: UNAVAILABLE after bounded retries");
    cdp_rpc_channel_close(dead);

    /* A server that comes up while the client backs off: the retried call
     * must carry the whole request (the reply echoes its payload). */
    late_server late;
    snprintf(late.addr, sizeof(late.addr), "127.0.0.1:%d", free_port());
    cdp_rpc_channel_opts lo = {.max_attempts = 40, .backoff_initial_ms = 20, .backoff_max_ms = 50};
    cdp_rpc_channel *lch = cdp_rpc_channel_new(loop, late.addr, &lo);
    uv_timer_init(loop, &late.timer);
    late.timer.data = &late;
    uv_timer_start(&late.timer, late_start, 300, 0);
    echo_call(lch, 777, 0, 8000, &r[0]);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_OK && r[0].payload_len == 777,
          "a retried call reaches a late server with its full request");
    int late_down = 0;
    cdp_rpc_server_shutdown(late.srv, shutdown_done, &late_down);
    while (!late_down) uv_run(loop, UV_RUN_ONCE);
    cdp_rpc_server_free(late.srv);
    uv_close((uv_handle_t *)&late.timer, NULL);
    cdp_rpc_channel_close(lch);

    /* Graceful shutdown: an in-flight call (300 ms) still gets its reply;
     * a call started after the shutdown began is refused. */
    echo_call(ch, 5, 400, 5000, &r[0]);
    uint64_t settle = uv_hrtime() / 1000000 + 150;  /* let the call reach the handler */
    while (uv_hrtime() / 1000000 < settle) uv_run(loop, UV_RUN_ONCE);
    int down = 0;
    uint64_t t0 = uv_hrtime();
    cdp_rpc_server_shutdown(srv, shutdown_done, &down);
    wait_all(r, 1);
    CHECK(r[0].code == GRPC_STATUS_OK, "in-flight call completes during graceful shutdown");
    if (r[0].code) fprintf(stderr, "got %d %s\n", r[0].code, r[0].details);
    echo_call(ch, 5, 0, 1000, &r[1]);
    wait_all(r + 1, 1);
    CHECK(r[1].code != GRPC_STATUS_OK, "calls after shutdown are refused");
    while (!down) uv_run(loop, UV_RUN_ONCE);
    CHECK((uv_hrtime() - t0) / 1000000 < 2000, "shutdown finishes before the grace period");

    cdp_health_free(h);
    cdp_rpc_channel_close(ch);
    for (int i = 0; i < 20; i++) uv_run(loop, UV_RUN_NOWAIT);
    cdp_rpc_server_free(srv);
    uv_close((uv_handle_t *)&ticker, NULL);
    cdp_rpc_shutdown();
    uv_run(loop, UV_RUN_DEFAULT);
    printf("%d passed, %d failed\n", itest_passed, itest_failed);
    return itest_failed ? 1 : 0;
}
