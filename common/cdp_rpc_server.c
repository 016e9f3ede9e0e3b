/* cdp_rpc_server: serves protobuf-c services over gRPC core.
 *
 * Life of a call:
 *   1. An armed request completes on the CQ thread; it is re-armed there and
 *      the new call is posted to the loop (the only hand-over per unary call).
 *   2. On the loop: auth hook, deadline check, unpack, RECV_CLOSE_ON_SERVER
 *      armed (to learn of cancellation), handler invoked.
 *   3. The handler answers (now or later); the reply batch is started on the
 *      loop. Its completion and the close completion are finished on the CQ
 *      thread, which drops references; the last one frees the call.
 * Every batch of a call is started on the loop thread, so batches on one
 * call are never started concurrently. Reference counts are atomic because
 * the CQ thread drops them. */
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_rpc.h"
#include "cdp_rpc_rt.h"

enum {
    RPC_DEFAULT_MAX_MSG = 8 * 1024 * 1024,
    RPC_DEFAULT_GRACE_MS = 5000,
    RPC_DEFAULT_ARMED = 8,
    RPC_STREAM_QUEUE_MAX = 1024,
    RPC_STATUS_MSG_MAX = 1024,
    RPC_PATH_MAX = 256,
};

typedef struct rpc_method {
    cdp_rpc_server *srv;
    const ProtobufCMethodDescriptor *desc;
    cdp_rpc_handler handler;
    void *ud;
    int streaming;
    void *reg;                      /* grpc registered-method handle */
    char path[RPC_PATH_MAX];
    char labels[RPC_PATH_MAX];      /* metrics labels: service, method */
    struct rpc_method *next;
} rpc_method;

/* One armed grpc_server_request_registered_call. */
typedef struct rpc_request {
    cdp__tag tag;
    rpc_method *m;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
} rpc_request;

typedef struct rpc_send {
    struct rpc_send *next;
    grpc_byte_buffer *bb;
} rpc_send;

/* A batch tag bound to its call. */
typedef struct {
    cdp__tag tag;
    cdp_rpc_call *call;
} rpc_call_tag;

struct cdp_rpc_call {
    rpc_method *m;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    ProtobufCMessage *req;
    uint64_t start_ns;
    atomic_int refs;
    atomic_int cancelled;           /* set on the CQ thread */
    int finished;                   /* loop: status queued or sent */
    int status_sent;                /* loop: SEND_STATUS started */
    int initial_md_sent;
    int dead;                       /* a send failed: the peer is gone */
    int close_cancelled;            /* RECV_CLOSE_ON_SERVER's out-param */
    grpc_status_code final_code;
    char *final_msg;
    /* server streaming */
    rpc_send *q_head, *q_tail;
    int q_len;
    int in_flight;
    void (*on_cancel)(cdp_rpc_call *c, void *ud);
    void *on_cancel_ud;
    void *data;
    /* live streaming calls, for shutdown */
    cdp_rpc_call *live_prev, *live_next;
    int is_live;
    rpc_call_tag close_tag, send_tag, status_tag;
    grpc_slice status_slice;
    grpc_byte_buffer *unary_bb;
};

/* An armed request for methods nobody registered: answered with
 * GRPC_STATUS_UNIMPLEMENTED on the CQ thread (no logic, and no other thread
 * ever sees the call). */
typedef struct rpc_generic {
    cdp__tag tag;
    cdp_rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    int answered;
    int cancelled;
    grpc_slice msg;
} rpc_generic;

struct cdp_rpc_server {
    uv_loop_t *loop;
    grpc_server *srv;
    cdp_rpc_server_opts opts;
    char *addr;
    rpc_method *methods;
    cdp_rpc_auth_fn auth;
    void *auth_ud;
    int started, shutting_down;
    cdp_rpc_call *live;             /* streaming calls (loop thread) */
    cdp__tag shutdown_tag;
    uv_timer_t grace_timer;
    int grace_timer_init;
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    atomic_int armed;               /* outstanding requests */
};

static void call_unref(cdp_rpc_call *c);

/* ------------------------------------------------------------------ setup */

cdp_rpc_server *cdp_rpc_server_new(uv_loop_t *loop, const cdp_rpc_server_opts *opts) {
    cdp_rpc_server *s = cdp__xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->opts = *opts;
    if (!s->opts.max_recv_bytes) s->opts.max_recv_bytes = RPC_DEFAULT_MAX_MSG;
    if (!s->opts.max_send_bytes) s->opts.max_send_bytes = RPC_DEFAULT_MAX_MSG;
    if (!s->opts.grace_ms) s->opts.grace_ms = RPC_DEFAULT_GRACE_MS;
    if (!s->opts.armed_per_method) s->opts.armed_per_method = RPC_DEFAULT_ARMED;
    s->addr = strdup(opts->addr ? opts->addr : "0.0.0.0:0");

    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = s->opts.max_recv_bytes},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = s->opts.max_send_bytes},
    };
    grpc_channel_args ca = {.num_args = 2, .args = args};
    s->srv = grpc_server_create(&ca, NULL);
    grpc_server_register_completion_queue(s->srv, cdp__cq(), NULL);
    return s;
}

int cdp_rpc_server_add_service(cdp_rpc_server *s, const ProtobufCServiceDescriptor *desc,
                               const cdp_rpc_binding *b, size_t n, void *ud) {
    if (n != desc->n_methods) {
        cdp_log(CDP_LOG_ERROR, "service has unbound methods", "{s:s,s:i,s:i}",
                "service", desc->name, "methods", (int)desc->n_methods, "bound", (int)n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMethodDescriptor *md = cdp__find_method(desc, b[i].method);
        if (!md || !b[i].handler) {
            cdp_log(CDP_LOG_ERROR, "unknown method binding", "{s:s,s:s}", "service",
                    desc->name, "method", b[i].method);
            return -1;
        }
        rpc_method *m = cdp__xcalloc(1, sizeof(*m));
        m->srv = s;
        m->desc = md;
        m->handler = b[i].handler;
        m->ud = ud;
        m->streaming = b[i].server_streaming;
        cdp__method_path(desc, md, m->path, sizeof(m->path));
        snprintf(m->labels, sizeof(m->labels), "service=\"%s\",method=\"%s\"", desc->name, md->name);
        m->reg = grpc_server_register_method(s->srv, m->path, NULL,
                                             GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!m->reg) {
            cdp_log(CDP_LOG_ERROR, "cannot register method", "{s:s}", "path", m->path);
            free(m);
            return -1;
        }
        m->next = s->methods;
        s->methods = m;
    }
    return 0;
}

void cdp_rpc_server_set_auth(cdp_rpc_server *s, cdp_rpc_auth_fn fn, void *ud) {
    s->auth = fn;
    s->auth_ud = ud;
}

/* ------------------------------------------------------------------ arming */

static void request_on_cq(cdp__tag *t, int ok);

/* Arms one request for m. Safe from either thread (server-level API). */
static void request_arm(rpc_method *m) {
    rpc_request *r = cdp__xcalloc(1, sizeof(*r));
    r->tag.on_cq = request_on_cq;
    r->m = m;
    grpc_metadata_array_init(&r->md);
    atomic_fetch_add(&m->srv->armed, 1);
    grpc_call_error e = grpc_server_request_registered_call(
        m->srv->srv, m->reg, &r->call, &r->deadline, &r->md, &r->payload, cdp__cq(), cdp__cq(), r);
    if (e != GRPC_CALL_OK) {
        atomic_fetch_sub(&m->srv->armed, 1);
        grpc_metadata_array_destroy(&r->md);
        free(r);
    }
}

static void generic_on_cq(cdp__tag *t, int ok);

static void generic_arm(cdp_rpc_server *s) {
    rpc_generic *g = cdp__xcalloc(1, sizeof(*g));
    g->tag.on_cq = generic_on_cq;
    g->srv = s;
    g->msg = grpc_empty_slice();
    grpc_call_details_init(&g->details);
    grpc_metadata_array_init(&g->md);
    atomic_fetch_add(&s->armed, 1);
    if (grpc_server_request_call(s->srv, &g->call, &g->details, &g->md, cdp__cq(), cdp__cq(), g) !=
        GRPC_CALL_OK) {
        atomic_fetch_sub(&s->armed, 1);
        grpc_call_details_destroy(&g->details);
        grpc_metadata_array_destroy(&g->md);
        free(g);
    }
}

static void generic_free(rpc_generic *g) {
    if (g->call) grpc_call_unref(g->call);
    grpc_slice_unref(g->msg);
    grpc_call_details_destroy(&g->details);
    grpc_metadata_array_destroy(&g->md);
    free(g);
}

static void generic_on_cq(cdp__tag *t, int ok) {
    rpc_generic *g = (rpc_generic *)t;
    if (g->answered) {  /* the status batch is done */
        generic_free(g);
        return;
    }
    atomic_fetch_sub(&g->srv->armed, 1);
    if (!ok) {
        generic_free(g);
        return;
    }
    generic_arm(g->srv);
    char *path = grpc_slice_to_c_string(g->details.method);
    char buf[RPC_STATUS_MSG_MAX];
    snprintf(buf, sizeof(buf), "unknown method %s", path);
    gpr_free(path);
    g->msg = grpc_slice_from_copied_string(buf);
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
    ops[1].data.send_status_from_server.status_details = &g->msg;
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &g->cancelled;
    g->answered = 1;
    char labels[96];
    snprintf(labels, sizeof(labels), "service=\"\",method=\"unknown\",code=\"%s\"",
             cdp__status_name(GRPC_STATUS_UNIMPLEMENTED));
    cdp_metrics_inc("cdp_rpc_calls_total", labels, 1);
    if (grpc_call_start_batch(g->call, ops, 3, &g->tag, NULL) != GRPC_CALL_OK)
        generic_free(g);
}

int cdp_rpc_server_start(cdp_rpc_server *s) {
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s->srv, s->addr, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) {
        cdp_log(CDP_LOG_ERROR, "cannot listen for gRPC", "{s:s}", "addr", s->addr);
        return -1;
    }
    grpc_server_start(s->srv);
    s->started = 1;
    for (rpc_method *m = s->methods; m; m = m->next)
        for (int i = 0; i < s->opts.armed_per_method; i++)
            request_arm(m);
    generic_arm(s);
    return port;
}

/* ------------------------------------------------------------------ call lifecycle */

static void call_dispatch(void *arg);

/* CQ thread: a request fired. Re-arm at once so the server keeps accepting,
 * then hand the new call to the loop. */
static void request_on_cq(cdp__tag *t, int ok) {
    rpc_request *r = (rpc_request *)t;
    rpc_method *m = r->m;
    atomic_fetch_sub(&m->srv->armed, 1);
    if (!ok) {  /* server shutting down */
        grpc_metadata_array_destroy(&r->md);
        free(r);
        return;
    }
    request_arm(m);
    cdp__post(call_dispatch, r);
}

static void call_free(cdp_rpc_call *c) {
    if (c->req)
        protobuf_c_message_free_unpacked(c->req, NULL);
    grpc_metadata_array_destroy(&c->md);
    while (c->q_head) {
        rpc_send *n = c->q_head->next;
        grpc_byte_buffer_destroy(c->q_head->bb);
        free(c->q_head);
        c->q_head = n;
    }
    if (c->unary_bb)
        grpc_byte_buffer_destroy(c->unary_bb);
    grpc_slice_unref(c->status_slice);
    free(c->final_msg);
    grpc_call_unref(c->call);
    free(c);
}

static void call_unref(cdp_rpc_call *c) {
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

static void live_remove(cdp_rpc_call *c) {
    if (!c->is_live)
        return;
    if (c->live_prev) c->live_prev->live_next = c->live_next;
    else c->m->srv->live = c->live_next;
    if (c->live_next) c->live_next->live_prev = c->live_prev;
    c->is_live = 0;
}

/* Loop: the call ended before the handler finished it. */
static void call_cancel_on_loop(void *arg) {
    cdp_rpc_call *c = arg;
    if (!c->finished && c->on_cancel) {
        void (*fn)(cdp_rpc_call *, void *) = c->on_cancel;
        c->on_cancel = NULL;
        fn(c, c->on_cancel_ud);
    }
    call_unref(c);
}

/* CQ thread: RECV_CLOSE_ON_SERVER completed: the call is over for gRPC. */
static void close_on_cq(cdp__tag *t, int ok) {
    cdp_rpc_call *c = ((rpc_call_tag *)t)->call;
    if (!ok || c->close_cancelled) {
        atomic_store(&c->cancelled, 1);
        /* The loop may still be waiting on the handler; tell it. The
         * posted closure holds this batch's reference. */
        cdp__post(call_cancel_on_loop, c);
        return;
    }
    call_unref(c);
}

static void record_metrics(cdp_rpc_call *c, grpc_status_code code) {
    char labels[RPC_PATH_MAX + 64];
    snprintf(labels, sizeof(labels), "%s,code=\"%s\"", c->m->labels, cdp__status_name(code));
    cdp_metrics_inc("cdp_rpc_calls_total", labels, 1);
    if (!c->m->streaming) {
        double secs = (double)(uv_hrtime() - c->start_ns) / 1e9;
        cdp_metrics_observe("cdp_rpc_latency_seconds", c->m->labels, secs);
    }
}

/* CQ thread: a reply or status batch completed; nothing left for the loop. */
static void status_on_cq(cdp__tag *t, int ok) {
    (void)ok;
    call_unref(((rpc_call_tag *)t)->call);
}

/* Loop: starts the final batch: [initial metadata] [message] status. */
static void call_send_status(cdp_rpc_call *c) {
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->initial_md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->initial_md_sent = 1;
    }
    if (c->unary_bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->unary_bb;
        n++;
    }
    c->status_slice = grpc_slice_from_copied_string(c->final_msg ? c->final_msg : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = c->final_code;
    ops[n].data.send_status_from_server.status_details = c->final_msg ? &c->status_slice : NULL;
    n++;
    c->status_sent = 1;
    live_remove(c);
    record_metrics(c, c->final_code);
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, ops, n, &c->status_tag, NULL) != GRPC_CALL_OK)
        call_unref(c);
    call_unref(c);  /* the handler's reference */
}

static void stream_pump(cdp_rpc_call *c);

/* Loop: a SEND_MESSAGE finished; send the next one or the status. */
static void send_done_on_loop(void *arg) {
    cdp_rpc_call *c = arg;
    c->in_flight = 0;
    stream_pump(c);
    call_unref(c);
}

static void send_on_cq(cdp__tag *t, int ok) {
    cdp_rpc_call *c = ((rpc_call_tag *)t)->call;
    if (!ok)
        c->dead = 1;  /* read only on the loop after the post below */
    cdp__post(send_done_on_loop, c);
}

static void stream_pump(cdp_rpc_call *c) {
    if (c->in_flight || c->status_sent)
        return;
    if (c->q_head && !c->dead) {
        rpc_send *s = c->q_head;
        c->q_head = s->next;
        if (!c->q_head) c->q_tail = NULL;
        c->q_len--;
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof(ops));
        if (!c->initial_md_sent) {
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
            c->initial_md_sent = 1;
        }
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = s->bb;
        n++;
        c->in_flight = 1;
        atomic_fetch_add(&c->refs, 1);
        /* gRPC copies the buffer's slices (takes refs), so ours can go. */
        grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->send_tag, NULL);
        grpc_byte_buffer_destroy(s->bb);
        free(s);
        if (e != GRPC_CALL_OK) {
            c->in_flight = 0;
            c->dead = 1;
            call_unref(c);
        }
        return;
    }
    if (c->finished)
        call_send_status(c);
}

/* Loop: a new call from the CQ thread. */
static void call_dispatch(void *arg) {
    rpc_request *r = arg;
    rpc_method *m = r->m;
    cdp_rpc_server *s = m->srv;
    cdp_rpc_call *c = cdp__xcalloc(1, sizeof(*c));
    c->m = m;
    c->call = r->call;
    c->deadline = r->deadline;
    c->md = r->md;  /* moved */
    c->start_ns = uv_hrtime();
    c->status_slice = grpc_empty_slice();
    c->close_tag = (rpc_call_tag){{close_on_cq}, c};
    c->send_tag = (rpc_call_tag){{send_on_cq}, c};
    c->status_tag = (rpc_call_tag){{status_on_cq}, c};
    /* One reference for the handler (dropped when the status is started),
     * one for the close batch. */
    atomic_init(&c->refs, 2);
    grpc_byte_buffer *payload = r->payload;
    free(r);

    grpc_op close_op;
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->close_tag, NULL) != GRPC_CALL_OK)
        atomic_fetch_sub(&c->refs, 1);

    if (m->streaming) {
        c->live_next = s->live;
        if (s->live) s->live->live_prev = c;
        s->live = c;
        c->is_live = 1;
    }

    char err[RPC_STATUS_MSG_MAX];
    if (s->shutting_down) {
        cdp_rpc_fail(c, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
    } else if (s->auth && (err[0] = 0, s->auth(&c->md, m->path, err, sizeof(err), s->auth_ud))) {
        cdp_rpc_fail(c, GRPC_STATUS_UNAUTHENTICATED, "%s", err[0] ? err : "unauthenticated");
    } else if (cdp__remaining_ms(c->deadline) <= 0) {
        cdp_rpc_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded before the call started");
    } else if (!payload) {
        cdp_rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "request message missing");
    } else if (!(c->req = cdp__unpack(m->desc->input, payload))) {
        cdp_rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "request is not a valid %s message",
                     m->desc->input->name);
    } else {
        m->handler(c, c->req, m->ud);
    }
    if (payload)
        grpc_byte_buffer_destroy(payload);
}

/* ------------------------------------------------------------------ answering */

static void call_finish_v(cdp_rpc_call *c, grpc_status_code code, const char *fmt, va_list ap) {
    if (c->finished) {
        cdp_log(CDP_LOG_ERROR, "call finished twice", "{s:s}", "path", c->m->path);
        return;
    }
    c->finished = 1;
    c->final_code = code;
    if (fmt) {
        char buf[RPC_STATUS_MSG_MAX];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        c->final_msg = strdup(buf);
    }
    if (c->m->streaming)
        stream_pump(c);
    else
        call_send_status(c);
}

void cdp_rpc_reply(cdp_rpc_call *c, const ProtobufCMessage *resp) {
    if (c->m->streaming) {
        cdp_rpc_stream_send(c, resp);
        cdp_rpc_finish(c, GRPC_STATUS_OK, NULL);
        return;
    }
    if (c->finished) {
        cdp_log(CDP_LOG_ERROR, "call finished twice", "{s:s}", "path", c->m->path);
        return;
    }
    c->unary_bb = cdp__pack(resp);
    c->finished = 1;
    c->final_code = GRPC_STATUS_OK;
    call_send_status(c);
}

void cdp_rpc_fail(cdp_rpc_call *c, grpc_status_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    call_finish_v(c, code, fmt, ap);
    va_end(ap);
}

void cdp_rpc_finish(cdp_rpc_call *c, grpc_status_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    call_finish_v(c, code, fmt, ap);
    va_end(ap);
}

int cdp_rpc_stream_send(cdp_rpc_call *c, const ProtobufCMessage *msg) {
    if (c->finished || c->dead || atomic_load(&c->cancelled) || c->q_len >= RPC_STREAM_QUEUE_MAX)
        return -1;
    rpc_send *s = cdp__xmalloc(sizeof(*s));
    s->next = NULL;
    s->bb = cdp__pack(msg);
    if (c->q_tail) c->q_tail->next = s;
    else c->q_head = s;
    c->q_tail = s;
    c->q_len++;
    stream_pump(c);
    return 0;
}

void cdp_rpc_call_on_cancel(cdp_rpc_call *c, void (*fn)(cdp_rpc_call *, void *), void *ud) {
    c->on_cancel = fn;
    c->on_cancel_ud = ud;
}

int cdp_rpc_call_cancelled(const cdp_rpc_call *c) {
    return atomic_load(&((cdp_rpc_call *)c)->cancelled) || c->dead;
}

int64_t cdp_rpc_call_remaining_ms(const cdp_rpc_call *c) { return cdp__remaining_ms(c->deadline); }
const char *cdp_rpc_call_method(const cdp_rpc_call *c) { return c->m->desc->name; }
void cdp_rpc_call_set_data(cdp_rpc_call *c, void *data) { c->data = data; }
void *cdp_rpc_call_get_data(const cdp_rpc_call *c) { return c->data; }

/* ------------------------------------------------------------------ shutdown */

static void shutdown_done_on_loop(void *arg) {
    cdp_rpc_server *s = arg;
    if (s->grace_timer_init)
        uv_timer_stop(&s->grace_timer);
    if (s->shutdown_done)
        s->shutdown_done(s->shutdown_ud);
}

static void shutdown_on_cq(cdp__tag *t, int ok) {
    (void)ok;
    cdp_rpc_server *s = (cdp_rpc_server *)((char *)t - offsetof(cdp_rpc_server, shutdown_tag));
    cdp__post(shutdown_done_on_loop, s);
}

static void grace_expired(uv_timer_t *t) {
    cdp_rpc_server *s = t->data;
    cdp_log(CDP_LOG_WARN, "shutdown grace period over; cancelling remaining calls", NULL);
    grpc_server_cancel_all_calls(s->srv);
}

void cdp_rpc_server_shutdown(cdp_rpc_server *s, void (*done)(void *ud), void *ud) {
    s->shutdown_done = done;
    s->shutdown_ud = ud;
    s->shutting_down = 1;
    if (!s->started) {
        if (done) done(ud);
        return;
    }
    s->shutdown_tag.on_cq = shutdown_on_cq;
    grpc_server_shutdown_and_notify(s->srv, cdp__cq(), &s->shutdown_tag);
    /* Streams never end by themselves: tell their handlers now. */
    cdp_rpc_call *c = s->live;
    while (c) {
        cdp_rpc_call *next = c->live_next;
        if (!c->finished && c->on_cancel) {
            void (*fn)(cdp_rpc_call *, void *) = c->on_cancel;
            c->on_cancel = NULL;
            fn(c, c->on_cancel_ud);
        }
        c = next;
    }
    uv_timer_init(s->loop, &s->grace_timer);
    s->grace_timer.data = s;
    s->grace_timer_init = 1;
    uv_timer_start(&s->grace_timer, grace_expired, (uint64_t)s->opts.grace_ms, 0);
}

static void grace_timer_closed(uv_handle_t *h) {
    cdp_rpc_server *s = h->data;
    free(s);
}

void cdp_rpc_server_free(cdp_rpc_server *s) {
    if (!s) return;
    grpc_server_destroy(s->srv);
    rpc_method *m = s->methods;
    while (m) {
        rpc_method *n = m->next;
        free(m);
        m = n;
    }
    free(s->addr);
    if (s->grace_timer_init)
        uv_close((uv_handle_t *)&s->grace_timer, grace_timer_closed);
    else
        free(s);
}
