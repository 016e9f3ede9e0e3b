/* cdp_rpc: the bridge between gRPC core and a service's libuv loop.
 *
 * One completion queue per process is drained by a dedicated thread. New
 * work (an incoming call, a client reply, a stream slot freed) is handed to
 * the loop through a queue and one uv_async_send; completions that need no
 * logic (a reply sent, a call ended) are finished on the queue thread.
 * All handler code and all callbacks below run on the loop thread.
 *
 * The server serves any protobuf-c service descriptor on the gRPC paths
 * "/<package>.<Service>/<Method>"; since descriptors do not say which
 * methods stream, each binding says so.
 *
 * A handler must finish every call exactly once: cdp_rpc_reply or
 * cdp_rpc_fail for unary methods, cdp_rpc_finish for server-streaming ones.
 * It may do so later (after Redis or another RPC answers); the call stays
 * valid until then even if the client cancelled or the deadline passed (the
 * answer is then dropped). */
#ifndef CDP_RPC_H
#define CDP_RPC_H

#include <stdint.h>
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

/* ------------------------------------------------------------------ server */

typedef struct cdp_rpc_server cdp_rpc_server;
typedef struct cdp_rpc_call cdp_rpc_call;

/* The request is owned by the call and freed after the call is finished. */
typedef void (*cdp_rpc_handler)(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);

typedef struct {
    const char *method;       /* method name as in the .proto, e.g. "Ingest" */
    cdp_rpc_handler handler;
    int server_streaming;     /* 1 for `returns (stream ...)` */
} cdp_rpc_binding;

typedef struct {
    const char *addr;         /* "0.0.0.0:50051"; port 0 picks a free one */
    int max_recv_bytes;       /* default 8 MiB; larger requests: RESOURCE_EXHAUSTED */
    int max_send_bytes;       /* default 8 MiB */
    int grace_ms;             /* shutdown grace for in-flight calls, default 5000 */
    int armed_per_method;     /* requests kept armed per method, default 8 */
} cdp_rpc_server_opts;

/* Authentication hook: runs on the loop before each handler. Return 0 to
 * allow; nonzero to refuse with UNAUTHENTICATED and the message in err. */
typedef int (*cdp_rpc_auth_fn)(const grpc_metadata_array *md, const char *path,
                               char *err, size_t errlen, void *ud);

cdp_rpc_server *cdp_rpc_server_new(uv_loop_t *loop, const cdp_rpc_server_opts *opts);

/* Binds handlers to the methods of `desc`. Every method of the descriptor
 * must be bound. Before cdp_rpc_server_start. Returns 0 or -1 (logged). */
int cdp_rpc_server_add_service(cdp_rpc_server *s, const ProtobufCServiceDescriptor *desc,
                               const cdp_rpc_binding *bindings, size_t n, void *ud);

void cdp_rpc_server_set_auth(cdp_rpc_server *s, cdp_rpc_auth_fn fn, void *ud);

/* Binds the port and starts serving. Returns the bound port, or -1 (logged). */
int cdp_rpc_server_start(cdp_rpc_server *s);

/* Graceful shutdown: stops accepting, lets in-flight calls finish for
 * grace_ms, cancels the rest, then calls done on the loop thread. Streams
 * are told through their cancel callback. */
void cdp_rpc_server_shutdown(cdp_rpc_server *s, void (*done)(void *ud), void *ud);

/* Frees a server that was shut down (or never started). */
void cdp_rpc_server_free(cdp_rpc_server *s);

/* ------------------------------------------------------------------ calls */

/* Packs resp and answers OK. resp stays the caller's. */
void cdp_rpc_reply(cdp_rpc_call *c, const ProtobufCMessage *resp);

/* Answers a non-OK status with a printf-style message. */
void cdp_rpc_fail(cdp_rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Server streaming: queues one message (packed now; msg stays the
 * caller's). Messages leave in order, one in flight at a time. Returns 0, or
 * -1 if the call is dead or more than 1024 messages are queued (the client
 * is too slow; the caller should finish the call). */
int cdp_rpc_stream_send(cdp_rpc_call *c, const ProtobufCMessage *msg);

/* Ends a stream after the queued messages with the given status. */
void cdp_rpc_finish(cdp_rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Called once on the loop when the client cancels, the deadline passes or
 * the server shuts down, before the call is finished. The handler must still
 * finish the call (which then sends nothing). */
void cdp_rpc_call_on_cancel(cdp_rpc_call *c, void (*fn)(cdp_rpc_call *c, void *ud), void *ud);

int cdp_rpc_call_cancelled(const cdp_rpc_call *c);
/* Milliseconds left before the call's deadline (INT64_MAX without one). */
int64_t cdp_rpc_call_remaining_ms(const cdp_rpc_call *c);
const char *cdp_rpc_call_method(const cdp_rpc_call *c);
/* A slot for the handler's own state. */
void cdp_rpc_call_set_data(cdp_rpc_call *c, void *data);
void *cdp_rpc_call_get_data(const cdp_rpc_call *c);

/* ------------------------------------------------------------------ client */

typedef struct cdp_rpc_channel cdp_rpc_channel;

typedef struct {
    int max_attempts;         /* total attempts on UNAVAILABLE, default 4 */
    int backoff_initial_ms;   /* default 50, doubled per retry with jitter */
    int backoff_max_ms;       /* default 1000 */
    int max_recv_bytes;       /* default 8 MiB */
} cdp_rpc_channel_opts;

/* Called once on the loop. resp is NULL unless code is GRPC_STATUS_OK; it is
 * freed after the callback returns. */
typedef void (*cdp_rpc_done)(grpc_status_code code, const char *details,
                             const ProtobufCMessage *resp, void *ud);

/* A channel to "host:port" that reconnects by itself. */
cdp_rpc_channel *cdp_rpc_channel_new(uv_loop_t *loop, const char *target,
                                     const cdp_rpc_channel_opts *opts);

/* Starts an asynchronous unary call of desc's `method` with a deadline of
 * deadline_ms from now (across all retries). Retries on UNAVAILABLE with
 * backoff while attempts and deadline allow. Returns 0; -1 if the method is
 * unknown (cb not called). */
int cdp_rpc_unary(cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *desc,
                  const char *method, const ProtobufCMessage *req, int deadline_ms,
                  cdp_rpc_done cb, void *ud);

/* Cancels outstanding calls (their callbacks get CANCELLED) and frees the
 * channel once they are done. */
void cdp_rpc_channel_close(cdp_rpc_channel *ch);

/* ------------------------------------------------------------------ process */

/* Starts gRPC and the completion-queue thread for `loop`. Call once, before
 * creating servers or channels. */
int cdp_rpc_init(uv_loop_t *loop);
/* Stops the thread and gRPC after every server and channel is gone. */
void cdp_rpc_shutdown(void);

#endif
