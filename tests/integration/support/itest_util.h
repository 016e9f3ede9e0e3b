/* itest_util: the helpers every integration program (tests/integration/
 * itest_*.c) needs and none should copy: check counting, child processes
 * (spawn, stop, a private redis-server) and synchronous unary calls over
 * cdp_rpc that run the loop until the answer is in. Blocking by design: an
 * itest is a single-threaded driver, not a service. */
#ifndef ITEST_UTIL_H
#define ITEST_UTIL_H

#include <stdio.h>
#include <sys/types.h>

#include <uv.h>

#include "cdp_rpc.h"

#define ITEST_POLL_MS 100            /* how often the waits below look again */
#define ITEST_READY_TIMEOUT_MS 10000 /* how long a started server may take */
#define ITEST_DETAILS_LEN 512

/* Checks passed and failed so far; the program prints them at its end. */
extern int itest_passed, itest_failed;

/* Counts one check; on failure prints "FAIL file:line: " and the printf
 * style message to stderr. */
#define ITEST_CHECK(cond, ...)                                                              \
    do {                                                                                    \
        if (cond) {                                                                         \
            itest_passed++;                                                                 \
        } else {                                                                            \
            itest_failed++;                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                            \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fprintf(stderr, "\n");                                                          \
        }                                                                                   \
    } while (0)

/* ------------------------------------------------------------------ processes */

/* Sleeps ms milliseconds (blocking the loop, which is the point). */
void itest_sleep_ms(int ms);

/* Forks and execs argv[0] (looked up on PATH) with the NULL-terminated
 * "NAME=value" strings of env (may be NULL) added to our environment. The
 * child's stdout/stderr go to /dev/null unless ITEST_VERBOSE is set. Our
 * stdio buffers are flushed first so the child cannot write them again.
 * Returns the child's pid, or -1 if fork failed; a failed exec shows as
 * exit status 127. */
pid_t itest_spawn(char *const argv[], char *const env[]);

/* Sends SIGTERM and waits up to timeout_ms for pid to end. Returns its exit
 * status, 128 + the signal if a signal ended it, or -1 if it had to be
 * killed with SIGKILL after the timeout. Reaps the child either way. */
int itest_stop_process(pid_t pid, int timeout_ms);

/* Starts a private redis-server on 127.0.0.1:port without persistence and
 * waits up to ITEST_READY_TIMEOUT_MS until it accepts connections. Returns
 * its pid (also when it never became ready: the caller's first use fails). */
pid_t itest_start_redis(int port);

/* ------------------------------------------------------------------ calls */

/* The outcome of one unary call. resp is the packed response (malloc'd,
 * owned by the caller, who frees it) or NULL when the call failed. */
typedef struct {
    int done;
    grpc_status_code code;
    char details[ITEST_DETAILS_LEN];
    uint8_t *resp;
    size_t len;
} itest_call_result;

/* Starts method of svc on ch with req; r (caller-owned, must outlive the
 * call) is cleared now and filled when the call ends, setting r->done. A
 * method svc lacks ends at once with GRPC_STATUS_UNIMPLEMENTED. */
void itest_call_start(cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *svc,
                      const char *method, const ProtobufCMessage *req, int deadline_ms,
                      itest_call_result *r);

/* Makes the call as itest_call_start does and runs loop until it ends.
 * Returns the result; the caller frees its resp. */
itest_call_result itest_call(uv_loop_t *loop, cdp_rpc_channel *ch,
                             const ProtobufCServiceDescriptor *svc, const char *method,
                             const ProtobufCMessage *req, int deadline_ms);

/* Repeats the call every ITEST_POLL_MS for up to ITEST_READY_TIMEOUT_MS
 * until it answers OK: a server that has just been started is ready.
 * Returns 0 when it did, -1 when it never did. */
int itest_wait_ok(uv_loop_t *loop, cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *svc,
                  const char *method, const ProtobufCMessage *req, int deadline_ms);

#endif
