/* cdp_rpc_client: asynchronous unary calls to other cdp services.
 *
 * A call is started on the loop as one batch of the six unary ops; its
 * completion comes back through the CQ thread to the loop, which either
 * retries (UNAVAILABLE, with jittered exponential backoff, while attempts
 * and the overall deadline allow) or unpacks the reply and calls back.
 * gRPC's channel reconnects by itself; a call made while it is reconnecting
 * fails fast with UNAVAILABLE and is retried here. */
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_rpc.h"
#include "cdp_rpc_rt.h"

enum {
    RPC_CLIENT_DEFAULT_ATTEMPTS = 4,
    RPC_CLIENT_DEFAULT_BACKOFF_MS = 50,
    RPC_CLIENT_DEFAULT_BACKOFF_MAX_MS = 1000,
    RPC_CLIENT_DEFAULT_MAX_MSG = 8 * 1024 * 1024,
    RPC_CLIENT_PATH_MAX = 256,
    RPC_CLIENT_MAX_METHODS = 64,
};

typedef struct {
    const ProtobufCMethodDescriptor *desc;
    void *handle;
} client_method;

typedef struct client_call client_call;

struct cdp_rpc_channel {
    uv_loop_t *loop;
    grpc_channel *ch;
    char *target;
    cdp_rpc_channel_opts opts;
    client_method methods[RPC_CLIENT_MAX_METHODS];
    int n_methods;
    client_call *calls;             /* outstanding (loop thread) */
    int closing;
};

struct client_call {
    cdp__tag tag;
    cdp_rpc_channel *ch;
    client_call *prev, *next;
    client_method *method;
    grpc_byte_buffer *req;          /* kept for retries */
    grpc_byte_buffer *sent;         /* this attempt's copy: gRPC empties what it sends */
    gpr_timespec deadline;          /* overall, monotonic */
    int attempt;
    cdp_rpc_done cb;
    void *ud;
    grpc_call *call;
    grpc_metadata_array md_initial, md_trailing;
    grpc_byte_buffer *resp;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    uv_timer_t retry_timer;
    int timer_init;
};

cdp_rpc_channel *cdp_rpc_channel_new(uv_loop_t *loop, const char *target,
                                     const cdp_rpc_channel_opts *opts) {
    cdp_rpc_channel *ch = cdp__xcalloc(1, sizeof(*ch));
    ch->loop = loop;
    ch->target = strdup(target);
    if (opts) ch->opts = *opts;
    if (!ch->opts.max_attempts) ch->opts.max_attempts = RPC_CLIENT_DEFAULT_ATTEMPTS;
    if (!ch->opts.backoff_initial_ms) ch->opts.backoff_initial_ms = RPC_CLIENT_DEFAULT_BACKOFF_MS;
    if (!ch->opts.backoff_max_ms) ch->opts.backoff_max_ms = RPC_CLIENT_DEFAULT_BACKOFF_MAX_MS;
    if (!ch->opts.max_recv_bytes) ch->opts.max_recv_bytes = RPC_CLIENT_DEFAULT_MAX_MSG;
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = ch->opts.max_recv_bytes},
        /* Reconnect quickly after a peer restarts (default backoff is 1 s
         * growing to 120 s, far too slow inside one cluster). */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
         .value.integer = ch->opts.backoff_max_ms},
    };
    grpc_channel_args ca = {.num_args = 2, .args = args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ch->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

/* The registered-call handle of a method, registered once per channel. */
static client_method *channel_method(cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *d,
                                     const ProtobufCMethodDescriptor *md) {
    for (int i = 0; i < ch->n_methods; i++)
        if (ch->methods[i].desc == md)
            return &ch->methods[i];
    if (ch->n_methods == RPC_CLIENT_MAX_METHODS)
        return NULL;
    char path[RPC_CLIENT_PATH_MAX];
    cdp__method_path(d, md, path, sizeof(path));
    client_method *m = &ch->methods[ch->n_methods++];
    m->desc = md;
    m->handle = grpc_channel_register_call(ch->ch, path, NULL, NULL);
    return m;
}

/* ------------------------------------------------------------------ calls */

static void call_attempt(client_call *c);

static void call_on_cq(cdp__tag *t, int ok);

static void call_timer_closed(uv_handle_t *h) { free(h->data); }

static void call_release(client_call *c) {
    cdp_rpc_channel *ch = c->ch;
    if (c->prev) c->prev->next = c->next;
    else ch->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    grpc_byte_buffer_destroy(c->req);
    if (c->timer_init) {
        c->retry_timer.data = c;
        uv_close((uv_handle_t *)&c->retry_timer, call_timer_closed);
    } else {
        free(c);
    }
    if (ch->closing && !ch->calls) {
        grpc_channel_destroy(ch->ch);
        free(ch->target);
        free(ch);
    }
}

/* Clears the per-attempt state so the call can be retried or released. */
static void call_reset_attempt(client_call *c) {
    grpc_metadata_array_destroy(&c->md_initial);
    grpc_metadata_array_destroy(&c->md_trailing);
    grpc_metadata_array_init(&c->md_initial);
    grpc_metadata_array_init(&c->md_trailing);
    grpc_slice_unref(c->details);
    c->details = grpc_empty_slice();
    if (c->error_string) {
        gpr_free((void *)c->error_string);
        c->error_string = NULL;
    }
    if (c->resp) {
        grpc_byte_buffer_destroy(c->resp);
        c->resp = NULL;
    }
    if (c->call) {
        grpc_call_unref(c->call);
        c->call = NULL;
    }
    if (c->sent) {
        grpc_byte_buffer_destroy(c->sent);
        c->sent = NULL;
    }
}

static void call_complete(client_call *c, grpc_status_code code, const char *details,
                          const ProtobufCMessage *resp) {
    c->cb(code, details, resp, c->ud);
}

static void retry_fire(uv_timer_t *t) { call_attempt(t->data); }

/* Backoff for attempt n (1-based): initial * 2^(n-1), capped, with +-50%
 * jitter so that many clients do not retry in lockstep. */
static int backoff_ms(const cdp_rpc_channel_opts *o, int attempt) {
    long b = o->backoff_initial_ms;
    for (int i = 1; i < attempt && b < o->backoff_max_ms; i++)
        b *= 2;
    if (b > o->backoff_max_ms) b = o->backoff_max_ms;
    long jitter = b / 2 > 0 ? (long)(rand() % (int)(b)) - b / 2 : 0;
    return (int)(b + jitter);
}

/* Loop: one attempt ended. */
static void call_done_on_loop(void *arg) {
    client_call *c = arg;
    cdp_rpc_channel *ch = c->ch;
    grpc_status_code code = c->status;
    int64_t left = cdp__remaining_ms(c->deadline);
    if (code == GRPC_STATUS_UNAVAILABLE && !ch->closing && c->attempt < ch->opts.max_attempts) {
        int wait = backoff_ms(&ch->opts, c->attempt);
        if (left > wait) {
            call_reset_attempt(c);
            if (!c->timer_init) {
                uv_timer_init(ch->loop, &c->retry_timer);
                c->timer_init = 1;
            }
            c->retry_timer.data = c;
            cdp_metrics_inc("cdp_rpc_client_retries_total", "", 1);
            uv_timer_start(&c->retry_timer, retry_fire, (uint64_t)wait, 0);
            return;
        }
    }
    char *details = grpc_slice_to_c_string(c->details);
    if (code == GRPC_STATUS_OK) {
        ProtobufCMessage *resp = c->resp ? cdp__unpack(c->method->desc->output, c->resp) : NULL;
        if (resp) {
            call_complete(c, GRPC_STATUS_OK, details, resp);
            protobuf_c_message_free_unpacked(resp, NULL);
        } else {
            call_complete(c, GRPC_STATUS_INTERNAL, "malformed response message", NULL);
        }
    } else {
        call_complete(c, code, details[0] ? details : cdp__status_name(code), NULL);
    }
    gpr_free(details);
    call_reset_attempt(c);
    call_release(c);
}

static void call_on_cq(cdp__tag *t, int ok) {
    client_call *c = (client_call *)t;
    if (!ok) {
        c->status = GRPC_STATUS_UNAVAILABLE;
        c->details = grpc_slice_from_static_string("call batch failed");
    }
    cdp__post(call_done_on_loop, c);
}

static void call_attempt(client_call *c) {
    cdp_rpc_channel *ch = c->ch;
    c->attempt++;
    c->call = grpc_channel_create_registered_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                  cdp__cq(), c->method->handle, c->deadline, NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    c->sent = grpc_byte_buffer_copy(c->req);
    ops[1].data.send_message.send_message = c->sent;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->md_initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->md_trailing;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;
    if (grpc_call_start_batch(c->call, ops, 6, &c->tag, NULL) != GRPC_CALL_OK) {
        c->status = GRPC_STATUS_INTERNAL;
        c->details = grpc_slice_from_static_string("cannot start call");
        cdp__post(call_done_on_loop, c);
    }
}

int cdp_rpc_unary(cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *desc,
                  const char *method, const ProtobufCMessage *req, int deadline_ms,
                  cdp_rpc_done cb, void *ud) {
    const ProtobufCMethodDescriptor *md = cdp__find_method(desc, method);
    client_method *m = md ? channel_method(ch, desc, md) : NULL;
    if (!m || ch->closing)
        return -1;
    client_call *c = cdp__xcalloc(1, sizeof(*c));
    c->tag.on_cq = call_on_cq;
    c->ch = ch;
    c->method = m;
    c->req = cdp__pack(req);
    c->deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                               gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
    c->cb = cb;
    c->ud = ud;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->md_initial);
    grpc_metadata_array_init(&c->md_trailing);
    c->next = ch->calls;
    if (ch->calls) ch->calls->prev = c;
    ch->calls = c;
    call_attempt(c);
    return 0;
}

void cdp_rpc_channel_close(cdp_rpc_channel *ch) {
    if (!ch) return;
    ch->closing = 1;
    if (!ch->calls) {
        grpc_channel_destroy(ch->ch);
        free(ch->target);
        free(ch);
        return;
    }
    for (client_call *c = ch->calls; c; c = c->next) {
        if (c->call) {
            grpc_call_cancel(c->call, NULL);
        } else if (c->timer_init && uv_is_active((uv_handle_t *)&c->retry_timer)) {
            /* Waiting to retry: finish it now as cancelled. */
            uv_timer_stop(&c->retry_timer);
            c->status = GRPC_STATUS_CANCELLED;
            cdp__post(call_done_on_loop, c);
        }
    }
}
