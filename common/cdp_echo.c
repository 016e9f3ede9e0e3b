/* cdp_echo: see cdp_echo.h. Delays and stream intervals use loop timers so
 * that deadlines and cancellation can be exercised without blocking. */
#include <stdlib.h>

#include "cdp/v1/echo.pb-c.h"
#include "cdp_echo.h"

typedef struct {
    uv_timer_t timer;
    cdp_rpc_call *call;
    ProtobufCBinaryData payload;
    int streaming, sent, count, interval_ms, cancelled;
} echo_job;

static void echo_job_closed(uv_handle_t *h) { free(h->data); }

static void echo_job_end(echo_job *j) {
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, echo_job_closed);
}

static void echo_tick(uv_timer_t *t) {
    echo_job *j = t->data;
    Cdp__V1__EchoReply r = CDP__V1__ECHO_REPLY__INIT;
    r.payload = j->payload;
    if (j->cancelled) {
        if (j->streaming)
            cdp_rpc_finish(j->call, GRPC_STATUS_CANCELLED, "cancelled");
        else
            cdp_rpc_fail(j->call, GRPC_STATUS_CANCELLED, "cancelled");
        echo_job_end(j);
        return;
    }
    if (!j->streaming) {
        cdp_rpc_reply(j->call, &r.base);
        echo_job_end(j);
        return;
    }
    if (j->sent < j->count) {
        r.seq = j->sent++;
        if (cdp_rpc_stream_send(j->call, &r.base) != 0)
            j->cancelled = 1;
        uv_timer_start(&j->timer, echo_tick, (uint64_t)j->interval_ms, 0);
        return;
    }
    cdp_rpc_finish(j->call, GRPC_STATUS_OK, NULL);
    echo_job_end(j);
}

static void echo_cancel(cdp_rpc_call *c, void *ud) {
    (void)c;
    echo_job *j = ud;
    j->cancelled = 1;
    uv_timer_start(&j->timer, echo_tick, 0, 0);
}

static void echo_start(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud, int streaming) {
    const Cdp__V1__EchoRequest *r = (const Cdp__V1__EchoRequest *)req;
    if (!streaming && r->delay_ms <= 0) {  /* the null path: no timer */
        Cdp__V1__EchoReply out = CDP__V1__ECHO_REPLY__INIT;
        out.payload = r->payload;
        cdp_rpc_reply(call, &out.base);
        return;
    }
    echo_job *j = calloc(1, sizeof(*j));
    if (!j) {
        cdp_rpc_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    uv_timer_init((uv_loop_t *)ud, &j->timer);
    j->timer.data = j;
    j->call = call;
    j->payload = r->payload;  /* the request outlives the job */
    j->streaming = streaming;
    j->count = r->count;
    j->interval_ms = r->interval_ms > 0 ? r->interval_ms : 0;
    cdp_rpc_call_on_cancel(call, echo_cancel, j);
    uv_timer_start(&j->timer, echo_tick, (uint64_t)(r->delay_ms > 0 ? r->delay_ms : 0), 0);
}

static void echo_unary(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud) {
    echo_start(call, req, ud, 0);
}

static void echo_stream(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud) {
    echo_start(call, req, ud, 1);
}

int cdp_echo_register(cdp_rpc_server *s, uv_loop_t *loop) {
    static const cdp_rpc_binding b[] = {
        {"Echo", echo_unary, 0},
        {"EchoStream", echo_stream, 1},
    };
    return cdp_rpc_server_add_service(s, &cdp__v1__echo__descriptor, b, 2, loop);
}
