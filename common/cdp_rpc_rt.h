/* cdp_rpc_rt: internals shared by the server and client halves of the RPC
 * bridge (cdp_rpc_server.c, cdp_rpc_client.c, cdp_rpc_rt.c). Not public API.
 *
 * One completion queue per process, drained by one thread. Every tag handed
 * to gRPC is a cdp__tag whose on_cq runs on that thread; it either finishes
 * the work there (nothing for the loop to do) or posts a closure to the loop
 * with cdp__post. */
#ifndef CDP_RPC_RT_H
#define CDP_RPC_RT_H

#include <grpc/grpc.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

typedef struct cdp__tag cdp__tag;
struct cdp__tag {
    /* Runs on the completion-queue thread with the event's success flag. */
    void (*on_cq)(cdp__tag *t, int ok);
};

/* Runs fn(arg) on the loop thread soon. Thread-safe; never fails (aborts
 * on out-of-memory, as every allocation here does). */
void cdp__post(void (*fn)(void *arg), void *arg);

grpc_completion_queue *cdp__cq(void);
uv_loop_t *cdp__loop(void);

/* malloc that aborts with a log line on failure: allocation failure in the
 * bridge leaves no sane way to answer a call. */
void *cdp__xmalloc(size_t n);
void *cdp__xcalloc(size_t n, size_t m);

/* Packs msg into a new byte buffer (caller unrefs with
 * grpc_byte_buffer_destroy). */
grpc_byte_buffer *cdp__pack(const ProtobufCMessage *msg);

/* Unpacks a byte buffer into a new message of `desc` (NULL if malformed).
 * Free with protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *cdp__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

/* Finds a method of a service descriptor by name; NULL if unknown. */
const ProtobufCMethodDescriptor *cdp__find_method(const ProtobufCServiceDescriptor *d,
                                                  const char *name);

/* Writes "/<package>.<Service>/<Method>" into buf. */
void cdp__method_path(const ProtobufCServiceDescriptor *d, const ProtobufCMethodDescriptor *m,
                      char *buf, size_t len);

/* Milliseconds left until a deadline (any clock); INT64_MAX when infinite,
 * negative when passed. */
int64_t cdp__remaining_ms(gpr_timespec deadline);

const char *cdp__status_name(grpc_status_code code);

#endif
