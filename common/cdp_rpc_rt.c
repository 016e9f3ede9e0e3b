/* cdp_rpc_rt: the process-wide half of the RPC bridge: gRPC start and stop,
 * the completion-queue thread, and the hand-over of new work to the loop.
 *
 * The hand-over is a mutex-protected singly linked list plus uv_async_send;
 * the loop drains the whole list per wake-up, so a burst of completions costs
 * one wake-up, not one per completion (uv_async_send coalesces). */
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"
#include "cdp_rpc.h"
#include "cdp_rpc_rt.h"

typedef struct cdp__work {
    struct cdp__work *next;
    void (*fn)(void *arg);
    void *arg;
} cdp__work;

static struct {
    uv_loop_t *loop;
    grpc_completion_queue *cq;
    uv_thread_t thread;
    uv_async_t async;
    pthread_mutex_t mu;
    cdp__work *head, *tail;
    int started;
} rt = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------------ memory */

void *cdp__xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        cdp_log(CDP_LOG_ERROR, "out of memory", "{s:I}", "bytes", (json_int_t)n);
        abort();
    }
    return p;
}

void *cdp__xcalloc(size_t n, size_t m) {
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) {
        cdp_log(CDP_LOG_ERROR, "out of memory", "{s:I}", "bytes", (json_int_t)(n * m));
        abort();
    }
    return p;
}

/* ------------------------------------------------------------------ hand-over */

void cdp__post(void (*fn)(void *arg), void *arg) {
    cdp__work *w = cdp__xmalloc(sizeof(*w));
    w->next = NULL;
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&rt.mu);
    if (rt.tail)
        rt.tail->next = w;
    else
        rt.head = w;
    rt.tail = w;
    pthread_mutex_unlock(&rt.mu);
    uv_async_send(&rt.async);
}

/* Loop side: takes the whole list at once, then runs it in order. */
static void rt_drain(uv_async_t *a) {
    (void)a;
    pthread_mutex_lock(&rt.mu);
    cdp__work *w = rt.head;
    rt.head = rt.tail = NULL;
    pthread_mutex_unlock(&rt.mu);
    while (w) {
        cdp__work *next = w->next;
        w->fn(w->arg);
        free(w);
        w = next;
    }
}

/* The completion-queue thread: every tag decides itself whether the loop
 * must see the event. */
static void rt_cq_thread(void *arg) {
    (void)arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(rt.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        cdp__tag *t = ev.tag;
        t->on_cq(t, ev.success);
    }
}

int cdp_rpc_init(uv_loop_t *loop) {
    if (rt.started)
        return 0;
    grpc_init();
    rt.loop = loop;
    rt.cq = grpc_completion_queue_create_for_next(NULL);
    if (uv_async_init(loop, &rt.async, rt_drain) != 0)
        return -1;
    if (uv_thread_create(&rt.thread, rt_cq_thread, NULL) != 0) {
        cdp_log(CDP_LOG_ERROR, "cannot start the completion-queue thread", NULL);
        return -1;
    }
    rt.started = 1;
    return 0;
}

void cdp_rpc_shutdown(void) {
    if (!rt.started)
        return;
    grpc_completion_queue_shutdown(rt.cq);
    uv_thread_join(&rt.thread);
    grpc_completion_queue_destroy(rt.cq);
    rt_drain(&rt.async);
    uv_close((uv_handle_t *)&rt.async, NULL);
    grpc_shutdown();
    rt.started = 0;
}

grpc_completion_queue *cdp__cq(void) { return rt.cq; }
uv_loop_t *cdp__loop(void) { return rt.loop; }

/* ------------------------------------------------------------------ framing */

grpc_byte_buffer *cdp__pack(const ProtobufCMessage *msg) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

ProtobufCMessage *cdp__unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb) {
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
                                                    GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

const ProtobufCMethodDescriptor *cdp__find_method(const ProtobufCServiceDescriptor *d,
                                                  const char *name) {
    for (unsigned i = 0; i < d->n_methods; i++)
        if (strcmp(d->methods[i].name, name) == 0)
            return &d->methods[i];
    return NULL;
}

void cdp__method_path(const ProtobufCServiceDescriptor *d, const ProtobufCMethodDescriptor *m,
                      char *buf, size_t len) {
    /* d->name is the fully qualified "<package>.<Service>". */
    snprintf(buf, len, "/%s/%s", d->name, m->name);
}

int64_t cdp__remaining_ms(gpr_timespec deadline) {
    if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec d = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
    return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

const char *cdp__status_name(grpc_status_code code) {
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    };
    if ((unsigned)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "UNKNOWN";
}
