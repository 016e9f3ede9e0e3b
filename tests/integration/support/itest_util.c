/* itest_util: shared helpers of the integration programs; see itest_util.h. */
#include "itest_util.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#define MS_PER_S 1000
#define NS_PER_MS 1000000L
#define PORT_TEXT_LEN 16
#define EXEC_FAILED 127 /* what a shell reports for a command it cannot run */
#define SIGNAL_STATUS_BASE 128

int itest_passed, itest_failed;

/* ------------------------------------------------------------------ processes */

void itest_sleep_ms(int ms)
{
    struct timespec ts = {ms / MS_PER_S, (long)(ms % MS_PER_S) * NS_PER_MS};
    nanosleep(&ts, NULL);
}

pid_t itest_spawn(char *const argv[], char *const env[])
{
    fflush(stdout); /* or the child's freopen flushes our buffer a second time */
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]);
        if (getenv("ITEST_VERBOSE") == NULL &&
            (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)))
            _exit(EXEC_FAILED);
        execvp(argv[0], argv);
        _exit(EXEC_FAILED);
    }
    return pid;
}

int itest_stop_process(pid_t pid, int timeout_ms)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int waited = 0; waited < timeout_ms; waited += ITEST_POLL_MS) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status)
                                     : SIGNAL_STATUS_BASE + WTERMSIG(status);
        itest_sleep_ms(ITEST_POLL_MS);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

pid_t itest_start_redis(int port)
{
    char port_text[PORT_TEXT_LEN];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[] = {"redis-server", "--port", port_text, "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", NULL};
    pid_t pid = itest_spawn(argv, NULL);
    for (int i = 0; i < ITEST_READY_TIMEOUT_MS / ITEST_POLL_MS; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        int ok = c && !c->err;
        redisFree(c);
        if (ok)
            return pid;
        itest_sleep_ms(ITEST_POLL_MS);
    }
    return pid;
}

/* ------------------------------------------------------------------ calls */

/* Keeps the call's outcome; the response is packed into a copy because
 * cdp_rpc frees it when this callback returns. */
static void on_done(grpc_status_code code, const char *details, const ProtobufCMessage *resp,
                    void *ud)
{
    itest_call_result *r = ud;
    r->code = code;
    snprintf(r->details, sizeof r->details, "%s", details ? details : "");
    if (resp) {
        r->len = protobuf_c_message_get_packed_size(resp);
        r->resp = malloc(r->len ? r->len : 1);
        if (r->resp)
            protobuf_c_message_pack(resp, r->resp);
        else
            r->len = 0;
    }
    r->done = 1;
}

void itest_call_start(cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *svc,
                      const char *method, const ProtobufCMessage *req, int deadline_ms,
                      itest_call_result *r)
{
    memset(r, 0, sizeof *r);
    if (cdp_rpc_unary(ch, svc, method, req, deadline_ms, on_done, r) != 0) {
        r->code = GRPC_STATUS_UNIMPLEMENTED; /* never started: no callback comes */
        snprintf(r->details, sizeof r->details, "%s: not in the service descriptor", method);
        r->done = 1;
    }
}

itest_call_result itest_call(uv_loop_t *loop, cdp_rpc_channel *ch,
                             const ProtobufCServiceDescriptor *svc, const char *method,
                             const ProtobufCMessage *req, int deadline_ms)
{
    itest_call_result r;
    itest_call_start(ch, svc, method, req, deadline_ms, &r);
    while (!r.done)
        uv_run(loop, UV_RUN_ONCE);
    return r;
}

int itest_wait_ok(uv_loop_t *loop, cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *svc,
                  const char *method, const ProtobufCMessage *req, int deadline_ms)
{
    for (int i = 0; i < ITEST_READY_TIMEOUT_MS / ITEST_POLL_MS; i++) {
        itest_call_result r = itest_call(loop, ch, svc, method, req, deadline_ms);
        free(r.resp);
        if (r.code == GRPC_STATUS_OK)
            return 0;
        itest_sleep_ms(ITEST_POLL_MS);
    }
    return -1;
}
