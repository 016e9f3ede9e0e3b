/* itest_redis: integration test of common/cdp_redis against real Redis.
 *
 * Needs a Redis at CDP_TEST_REDIS_ADDR (default 127.0.0.1:6390) that it may
 * write to and pause, and redis-server on PATH: for the outage test it
 * starts, kills and restarts its own server on CDP_TEST_REDIS_SPARE_PORT
 * (default 6391). With CDP_TEST_REDIS_CLUSTER (e.g. 127.0.0.1:7200) it also
 * runs against a Redis Cluster, and moves two (emptied) slots between
 * masters to exercise MOVED and ASK.
 *
 * Prints each failed check, ends with "N passed, M failed" and exits 0 only
 * when nothing failed. */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "cdp_log.h"
#include "cdp_redis.h"

#define DEFAULT_ADDR "127.0.0.1:6390"
#define DEFAULT_SPARE_PORT 6391
#define WAKE_MS 10             /* run_until re-checks its condition this often */
#define UP_WAIT_MS 5000
#define REPLY_WAIT_MS 5000
#define PIPELINE_N 2000
#define OUTAGE_N 50
#define CLUSTER_KEYS 1000
#define CLUSTER_MIN_SLOTS 900  /* 1000 random-ish keys cover at least this many slots */
#define TIMEOUT_N 20
#define TIMEOUT_CMD_MS 300
#define TIMEOUT_PAUSE_MS 1500
#define TIMEOUT_SLACK_MS 400   /* a timeout may fire up to a tick late, more under load */
#define LONG_PING_MS 10000     /* keeps PINGs out of the way of CLIENT PAUSE */
#define OUTAGE_PAUSE_MS 10000
#define OUTAGE_SETTLE_MS 200
#define OUTAGE_DOWN_MS 600
#define SERVER_READY_MS 5000
#define SERVER_POLL_US 50000
#define SYNC_TIMEOUT_S 2
#define MAX_FD 1024
#define TEXT_MAX 128
#define NS_PER_MS 1000000u

static int passed, failed;
static uv_loop_t *loop;
static uv_timer_t wake;
static int seq; /* order in which callbacks ran */

#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

static int check(int ok, const char *what, int line)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL line %d: %s\n", line, what);
        fflush(stdout);
    }
    return ok;
}

/* ------------------------------------------------------------ loop helpers */

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until done(arg) holds or timeout_ms pass. Returns done(arg). */
static int run_until(int (*done)(void *), void *arg, int timeout_ms)
{
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)timeout_ms;
    uv_timer_start(&wake, on_wake, WAKE_MS, WAKE_MS);
    while (!done(arg) && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&wake);
    return done(arg);
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

static void run_for(int ms)
{
    run_until(never, NULL, ms);
}

static int is_up(void *arg)
{
    return cdp_redis_is_up(arg);
}

static int is_down(void *arg)
{
    return !cdp_redis_is_up(arg);
}

static int flag_set(void *arg)
{
    return *(int *)arg;
}

/* ------------------------------------------------------------ results */

typedef struct {
    int calls;
    int order;
    uint64_t at;
    char err[TEXT_MAX];
    int type;
    long long integer;
    char str[TEXT_MAX];
    size_t len;
} result;

typedef struct {
    result *res;
    int n;
} results;

static void on_result(redisReply *reply, const char *err, void *ud)
{
    result *res = ud;
    res->calls++;
    res->order = seq++;
    res->at = uv_hrtime() / NS_PER_MS;
    if (err)
        snprintf(res->err, sizeof res->err, "%s", err);
    if (reply) {
        res->type = reply->type;
        res->integer = reply->integer;
        res->len = reply->len;
        if (reply->str)
            memcpy(res->str, reply->str, reply->len < TEXT_MAX ? reply->len : TEXT_MAX - 1);
    }
}

static int all_called(void *arg)
{
    results *rs = arg;
    for (int i = 0; i < rs->n; i++)
        if (rs->res[i].calls == 0)
            return 0;
    return 1;
}

static int one_called(void *arg)
{
    return ((result *)arg)->calls > 0;
}

/* Runs a printf-style command and waits for it. */
static result call(cdp_redis *r, const char *key, const char *fmt, const char *a, const char *b)
{
    result res = {0};
    cdp_redis_commandf(r, key, on_result, &res, fmt, a, b);
    run_until(one_called, &res, REPLY_WAIT_MS);
    return res;
}

/* ------------------------------------------------------------ clients */

typedef struct {
    int ups, downs;
} watch;

static void on_state(int up, void *ud)
{
    watch *w = ud;
    if (up)
        w->ups++;
    else
        w->downs++;
}

static cdp_redis *client_new(const char *addrs, int cmd_timeout_ms, int ping_ms, watch *w)
{
    cdp_redis_opts o = {
        .addrs = addrs,
        .connect_timeout_ms = 500,
        .command_timeout_ms = cmd_timeout_ms,
        .ping_interval_ms = ping_ms,
        .reconnect_min_ms = 50,
        .reconnect_max_ms = 400,
    };
    cdp_redis *r = cdp_redis_new(loop, &o);
    if (r && w)
        cdp_redis_on_state(r, on_state, w);
    return r;
}

static void on_closed(void *ud)
{
    (*(int *)ud)++;
}

static void client_close(cdp_redis *r)
{
    int closed = 0;
    cdp_redis_close(r, on_closed, &closed);
    CHECK(run_until(flag_set, &closed, REPLY_WAIT_MS));
    CHECK(closed == 1);
}

/* ------------------------------------------------------------ sync helpers */

static void split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
    if (n >= hostlen)
        n = hostlen - 1;
    memcpy(host, addr, n);
    host[n] = '\0';
    *port = colon ? atoi(colon + 1) : 0;
}

static redisContext *sync_connect(const char *host, int port)
{
    struct timeval tv = {SYNC_TIMEOUT_S, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Runs a command on a sync connection; returns 1 when the reply is not an
 * error (and, if want is set, is a string or status equal to want). */
static int sync_ok(redisContext *c, const char *want, const char *fmt, ...)
{
    if (!c)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (ok && want)
        ok = rep->str && strcmp(rep->str, want) == 0;
    if (rep && !ok)
        printf("  sync reply: type %d %s\n", rep->type, rep->str ? rep->str : "");
    freeReplyObject(rep);
    return ok;
}

/* ------------------------------------------------------------ a server of our own */

static pid_t server_spawn(int port)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
        dup2(devnull, STDOUT_FILENO);
        dup2(devnull, STDERR_FILENO);
    }
    for (int fd = STDERR_FILENO + 1; fd < MAX_FD; fd++)
        close(fd);
    char p[TEXT_MAX];
    snprintf(p, sizeof p, "%d", port);
    execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
    _exit(127);
}

static int server_ready(int port)
{
    for (int waited = 0; waited < SERVER_READY_MS * 1000; waited += SERVER_POLL_US) {
        redisContext *c = sync_connect("127.0.0.1", port);
        int ok = sync_ok(c, "PONG", "PING");
        if (c)
            redisFree(c);
        if (ok)
            return 1;
        usleep(SERVER_POLL_US);
    }
    return 0;
}

static void server_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ------------------------------------------------------------ tests */

/* Back-to-back INCRs are all answered, in order; binary values survive. */
static void test_pipeline(const char *addr)
{
    printf("-- pipeline (%s)\n", addr);
    cdp_redis *r = client_new(addr, 0, 0, NULL);
    if (!CHECK(r != NULL))
        return;
    cdp_redis_start(r);
    if (CHECK(run_until(is_up, r, UP_WAIT_MS))) {
        CHECK(!cdp_redis_is_cluster(r));
        result del = call(r, "itest:ctr", "DEL %s", "itest:ctr", NULL);
        CHECK(del.calls == 1 && del.err[0] == '\0');
        result *res = calloc(PIPELINE_N, sizeof *res);
        int sent = 0;
        for (int i = 0; i < PIPELINE_N; i++) {
            const char *argv[] = {"INCR", "itest:ctr"};
            sent += cdp_redis_command(r, argv[1], strlen(argv[1]), on_result, &res[i], 2, argv,
                                      NULL) == 0;
        }
        CHECK(sent == PIPELINE_N);
        results rs = {res, PIPELINE_N};
        CHECK(run_until(all_called, &rs, REPLY_WAIT_MS));
        int in_order = 1;
        for (int i = 0; i < PIPELINE_N; i++) {
            in_order &= res[i].calls == 1 && res[i].err[0] == '\0' &&
                        res[i].type == REDIS_REPLY_INTEGER && res[i].integer == i + 1;
            if (i)
                in_order &= res[i].order == res[i - 1].order + 1;
        }
        CHECK(in_order);
        free(res);

        const char bin[] = {'a', '\0', 'b', '\r', '\n'};
        const char *argv[] = {"SET", "itest:bin", bin};
        const size_t lens[] = {3, 9, sizeof bin};
        result set = {0}, get = {0};
        CHECK(cdp_redis_command(r, "itest:bin", 9, on_result, &set, 3, argv, lens) == 0);
        const char *gargv[] = {"GET", "itest:bin"};
        CHECK(cdp_redis_command(r, "itest:bin", 9, on_result, &get, 2, gargv, NULL) == 0);
        CHECK(run_until(one_called, &get, REPLY_WAIT_MS));
        CHECK(set.calls == 1 && set.type == REDIS_REPLY_STATUS);
        CHECK(get.calls == 1 && get.len == sizeof bin && memcmp(get.str, bin, sizeof bin) == 0);

        result err = call(r, NULL, "NOSUCHCOMMAND %s", "x", NULL);
        CHECK(err.calls == 1 && err.err[0] == '\0' && err.type == REDIS_REPLY_ERROR);
    }
    client_close(r);
}

static long long eval_calls;

/* Reads cmdstat_eval:calls from INFO commandstats. */
static void on_info(redisReply *reply, const char *err, void *ud)
{
    (void)err;
    static const char key[] = "cmdstat_eval:calls=";
    const char *p = reply && reply->str ? strstr(reply->str, key) : NULL;
    eval_calls = p ? atoll(p + sizeof key - 1) : 0;
    (*(int *)ud)++;
}

static long long read_eval_calls(cdp_redis *r)
{
    int done = 0;
    eval_calls = -1;
    cdp_redis_commandf(r, NULL, on_info, &done, "INFO commandstats");
    run_until(flag_set, &done, REPLY_WAIT_MS);
    return eval_calls;
}

static result run_eval(cdp_redis *r, cdp_redis_script *s, const char *key, const char *arg)
{
    result res = {0};
    const char *keys[] = {key};
    const char *args[] = {arg};
    cdp_redis_eval(r, s, on_result, &res, 1, keys, NULL, 1, args, NULL);
    run_until(one_called, &res, REPLY_WAIT_MS);
    return res;
}

/* Scripts run by SHA; after SCRIPT FLUSH the client falls back to EVAL once
 * (seen in the server's EVAL count) and the caller sees a normal answer. */
static void test_eval(const char *addr)
{
    printf("-- eval and NOSCRIPT (%s)\n", addr);
    cdp_redis *r = client_new(addr, 0, 0, NULL);
    if (!CHECK(r != NULL))
        return;
    cdp_redis_script *s =
        cdp_redis_script_add(r, "incrby", "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    CHECK(s != NULL);
    cdp_redis_start(r);
    if (CHECK(run_until(is_up, r, UP_WAIT_MS))) {
        call(r, "itest:eval", "DEL %s", "itest:eval", NULL);
        long long before = read_eval_calls(r);
        result a = run_eval(r, s, "itest:eval", "5");
        CHECK(a.calls == 1 && a.type == REDIS_REPLY_INTEGER && a.integer == 5);
        CHECK(read_eval_calls(r) == before); /* ran by EVALSHA */

        result flush = call(r, NULL, "SCRIPT FLUSH", NULL, NULL);
        CHECK(flush.calls == 1 && flush.type == REDIS_REPLY_STATUS);
        result b = run_eval(r, s, "itest:eval", "5");
        CHECK(b.calls == 1 && b.err[0] == '\0' && b.type == REDIS_REPLY_INTEGER &&
              b.integer == 10);
        CHECK(read_eval_calls(r) == before + 1); /* NOSCRIPT, then EVAL */

        result c = run_eval(r, s, "itest:eval", "5");
        CHECK(c.calls == 1 && c.integer == 15);
        CHECK(read_eval_calls(r) == before + 1); /* EVAL cached it again */
    }
    client_close(r);
}

/* With the server paused, commands time out after command_timeout_ms; their
 * late replies are dropped, the callbacks ran once, the client stays up. */
static void test_timeout(const char *addr)
{
    printf("-- command timeout (%s)\n", addr);
    char host[TEXT_MAX];
    int port = 0;
    split_addr(addr, host, sizeof host, &port);
    cdp_redis *r = client_new(addr, TIMEOUT_CMD_MS, LONG_PING_MS, NULL);
    if (!CHECK(r != NULL))
        return;
    cdp_redis_start(r);
    redisContext *sc = sync_connect(host, port);
    if (CHECK(run_until(is_up, r, UP_WAIT_MS)) && CHECK(sc != NULL)) {
        /* The loop's cached time goes stale while the thread blocks; a
         * command issued then must still get its full timeout. */
        usleep(2 * TIMEOUT_CMD_MS * 1000);
        result fresh = {0};
        cdp_redis_commandf(r, "itest:t", on_result, &fresh, "GET %s", "itest:t");
        CHECK(run_until(one_called, &fresh, REPLY_WAIT_MS));
        CHECK(fresh.calls == 1 && fresh.err[0] == '\0');

        CHECK(sync_ok(sc, "OK", "CLIENT PAUSE %d", TIMEOUT_PAUSE_MS));
        uint64_t t0 = uv_hrtime() / NS_PER_MS;
        result res[TIMEOUT_N];
        memset(res, 0, sizeof res);
        for (int i = 0; i < TIMEOUT_N; i++)
            cdp_redis_commandf(r, "itest:t", on_result, &res[i], "GET %s", "itest:t");
        results rs = {res, TIMEOUT_N};
        CHECK(run_until(all_called, &rs, TIMEOUT_PAUSE_MS));
        int timed_out = 1;
        for (int i = 0; i < TIMEOUT_N; i++)
            timed_out &= strcmp(res[i].err, "timeout") == 0 && res[i].at >= t0 + TIMEOUT_CMD_MS &&
                         res[i].at <= t0 + TIMEOUT_CMD_MS + TIMEOUT_SLACK_MS;
        CHECK(timed_out);
        /* The pause ends; the late replies arrive and must be dropped. */
        run_for(TIMEOUT_PAUSE_MS);
        int once = 1;
        for (int i = 0; i < TIMEOUT_N; i++)
            once &= res[i].calls == 1;
        CHECK(once);
        CHECK(cdp_redis_is_up(r));
        result ok = call(r, "itest:t", "SET %s %s", "itest:t", "after");
        CHECK(ok.calls == 1 && ok.err[0] == '\0' && ok.type == REDIS_REPLY_STATUS);
    }
    if (sc)
        redisFree(sc);
    client_close(r);
}

/* Redis killed with commands in flight: each callback fires once with
 * "disconnected", the client goes down and refuses commands (callback on a
 * later turn), then comes back up when Redis returns. */
static void test_outage(int port)
{
    printf("-- outage and reconnect (port %d)\n", port);
    pid_t pid = server_spawn(port);
    if (!CHECK(pid > 0 && server_ready(port))) {
        server_kill(pid);
        return;
    }
    char addr[TEXT_MAX];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    watch w = {0};
    cdp_redis *r = client_new(addr, REPLY_WAIT_MS, OUTAGE_SETTLE_MS, &w);
    if (!CHECK(r != NULL)) {
        server_kill(pid);
        return;
    }
    result early = {0};
    CHECK(cdp_redis_command(r, NULL, 0, on_result, &early, 1, (const char *[]){"PING"}, NULL) ==
          -1);
    CHECK(early.calls == 0); /* not called from inside cdp_redis_command */
    cdp_redis_start(r);
    CHECK(run_until(is_up, r, UP_WAIT_MS));
    CHECK(early.calls == 1 && strcmp(early.err, "redis unavailable") == 0);
    CHECK(w.ups == 1 && w.downs == 0);

    redisContext *sc = sync_connect("127.0.0.1", port);
    CHECK(sync_ok(sc, "OK", "CLIENT PAUSE %d", OUTAGE_PAUSE_MS));
    result res[OUTAGE_N];
    memset(res, 0, sizeof res);
    for (int i = 0; i < OUTAGE_N; i++)
        cdp_redis_commandf(r, "itest:o", on_result, &res[i], "SET %s %s", "itest:o", "v");
    run_for(OUTAGE_SETTLE_MS);
    results rs = {res, OUTAGE_N};
    int none = 1;
    for (int i = 0; i < OUTAGE_N; i++)
        none &= res[i].calls == 0;
    CHECK(none);

    server_kill(pid);
    CHECK(run_until(all_called, &rs, REPLY_WAIT_MS));
    int disconnected = 1;
    for (int i = 0; i < OUTAGE_N; i++)
        disconnected &= res[i].calls == 1 && strcmp(res[i].err, "disconnected") == 0;
    CHECK(disconnected);
    CHECK(run_until(is_down, r, REPLY_WAIT_MS));
    CHECK(w.downs == 1);
    if (sc)
        redisFree(sc);

    result down = {0};
    CHECK(cdp_redis_commandf(r, "k", on_result, &down, "GET %s", "k") == -1);
    CHECK(down.calls == 0);
    CHECK(run_until(one_called, &down, REPLY_WAIT_MS));
    CHECK(strcmp(down.err, "redis unavailable") == 0);
    run_for(OUTAGE_DOWN_MS); /* a few refused reconnects */
    CHECK(!cdp_redis_is_up(r) && w.ups == 1);

    pid = server_spawn(port);
    CHECK(pid > 0 && server_ready(port));
    CHECK(run_until(is_up, r, UP_WAIT_MS));
    CHECK(w.ups == 2 && w.downs == 1);
    result set = call(r, "itest:o", "SET %s %s", "itest:o", "back");
    CHECK(set.calls == 1 && set.type == REDIS_REPLY_STATUS);
    int once = 1;
    for (int i = 0; i < OUTAGE_N; i++)
        once &= res[i].calls == 1;
    CHECK(once);
    client_close(r);
    server_kill(pid);
}

static cdp_redis *closing_client;
static result after_close;

static void close_from_callback(redisReply *reply, const char *err, void *ud)
{
    on_result(reply, err, ud);
    cdp_redis_close(closing_client, on_closed, &((result *)ud)[1].calls);
    CHECK(cdp_redis_commandf(closing_client, NULL, on_result, &after_close, "PING") == -1);
}

/* Closing with commands pending fails each once with "closing"; closing
 * from inside a reply callback is safe; closing while connecting too. */
static void test_close(const char *addr, int dead_port)
{
    printf("-- close (%s)\n", addr);
    cdp_redis *r = client_new(addr, 0, 0, NULL);
    cdp_redis_start(r);
    if (CHECK(run_until(is_up, r, UP_WAIT_MS))) {
        result res[OUTAGE_N];
        memset(res, 0, sizeof res);
        for (int i = 0; i < OUTAGE_N; i++)
            cdp_redis_commandf(r, NULL, on_result, &res[i], "PING");
        client_close(r);
        int closing = 1;
        for (int i = 0; i < OUTAGE_N; i++)
            closing &= res[i].calls == 1 && strcmp(res[i].err, "closing") == 0;
        CHECK(closing);
    } else {
        client_close(r);
    }

    closing_client = client_new(addr, 0, 0, NULL);
    cdp_redis_start(closing_client);
    if (CHECK(run_until(is_up, closing_client, UP_WAIT_MS))) {
        result first[2] = {{0}}; /* [1].calls counts the close's done */
        result rest[OUTAGE_N];
        memset(rest, 0, sizeof rest);
        memset(&after_close, 0, sizeof after_close);
        cdp_redis_commandf(closing_client, NULL, close_from_callback, first, "PING");
        for (int i = 0; i < OUTAGE_N; i++)
            cdp_redis_commandf(closing_client, NULL, on_result, &rest[i], "PING");
        CHECK(run_until(flag_set, &first[1].calls, REPLY_WAIT_MS));
        CHECK(first[0].calls == 1 && first[0].type == REDIS_REPLY_STATUS);
        int once = 1;
        for (int i = 0; i < OUTAGE_N; i++)
            once &= rest[i].calls == 1 && strcmp(rest[i].err, "closing") == 0;
        CHECK(once);
        CHECK(after_close.calls == 1 && strcmp(after_close.err, "closing") == 0);
    } else {
        client_close(closing_client);
    }

    /* Never started: the refused command is still answered, once. */
    cdp_redis *idle = client_new(addr, 0, 0, NULL);
    result refused = {0};
    CHECK(cdp_redis_commandf(idle, NULL, on_result, &refused, "PING") == -1);
    client_close(idle);
    CHECK(refused.calls == 1 && refused.err[0] != '\0');

    char dead[TEXT_MAX];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_port);
    cdp_redis *d = client_new(dead, 0, 0, NULL);
    cdp_redis_start(d);
    run_for(OUTAGE_DOWN_MS);
    CHECK(!cdp_redis_is_up(d));
    client_close(d);
}

/* ------------------------------------------------------------ cluster */

/* The port of the master serving slot, from CLUSTER SLOTS; other_port gets
 * another master. Returns 0 or -1. */
static int cluster_owner(redisContext *c, unsigned slot, int *port, int *other_port)
{
    redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
    int rc = -1;
    *other_port = 0;
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        int p = (int)e->element[2]->element[1]->integer;
        if (slot >= e->element[0]->integer && slot <= e->element[1]->integer) {
            *port = p;
            rc = 0;
        }
    }
    for (size_t i = 0; rc == 0 && i < rep->elements; i++) {
        int p = (int)rep->element[i]->element[2]->element[1]->integer;
        if (p != *port)
            *other_port = p;
    }
    freeReplyObject(rep);
    return *other_port ? rc : -1;
}

static void node_id(redisContext *c, char *id, size_t len)
{
    redisReply *rep = redisCommand(c, "CLUSTER MYID");
    snprintf(id, len, "%s", rep && rep->str ? rep->str : "");
    freeReplyObject(rep);
}

/* Moves an empty slot from the master on port `from` to the one on `to`.
 * With finish=0 it stops half-way (migrating/importing), which makes the
 * source answer ASK for keys it does not have. */
static int slot_move(unsigned slot, int from, int to, int finish)
{
    redisContext *a = sync_connect("127.0.0.1", from), *b = sync_connect("127.0.0.1", to);
    char ida[TEXT_MAX], idb[TEXT_MAX];
    int ok = a && b;
    if (ok) {
        node_id(a, ida, sizeof ida);
        node_id(b, idb, sizeof idb);
        ok = sync_ok(b, NULL, "CLUSTER SETSLOT %u IMPORTING %s", slot, ida) &&
             sync_ok(a, NULL, "CLUSTER SETSLOT %u MIGRATING %s", slot, idb);
        if (ok && finish)
            ok = sync_ok(b, NULL, "CLUSTER SETSLOT %u NODE %s", slot, idb) &&
                 sync_ok(a, NULL, "CLUSTER SETSLOT %u NODE %s", slot, idb);
    }
    if (a)
        redisFree(a);
    if (b)
        redisFree(b);
    return ok;
}

static int slot_finish(unsigned slot, int from, int to)
{
    redisContext *a = sync_connect("127.0.0.1", from), *b = sync_connect("127.0.0.1", to);
    char idb[TEXT_MAX];
    int ok = a && b;
    if (ok) {
        node_id(b, idb, sizeof idb);
        ok = sync_ok(b, NULL, "CLUSTER SETSLOT %u NODE %s", slot, idb) &&
             sync_ok(a, NULL, "CLUSTER SETSLOT %u NODE %s", slot, idb);
    }
    if (a)
        redisFree(a);
    if (b)
        redisFree(b);
    return ok;
}

static void test_cluster_spread(cdp_redis *r)
{
    result *set = calloc(CLUSTER_KEYS, sizeof *set), *get = calloc(CLUSTER_KEYS, sizeof *get);
    static unsigned char seen[16384];
    memset(seen, 0, sizeof seen);
    char key[TEXT_MAX], val[TEXT_MAX];
    for (int i = 0; i < CLUSTER_KEYS; i++) {
        snprintf(key, sizeof key, "itest:key:%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        seen[cdp_redis_key_slot(key, strlen(key))] = 1;
        cdp_redis_commandf(r, key, on_result, &set[i], "SET %s %s", key, val);
    }
    for (int i = 0; i < CLUSTER_KEYS; i++) {
        snprintf(key, sizeof key, "itest:key:%d", i);
        cdp_redis_commandf(r, key, on_result, &get[i], "GET %s", key);
    }
    results rs = {get, CLUSTER_KEYS};
    CHECK(run_until(all_called, &rs, REPLY_WAIT_MS));
    int slots = 0, ok = 1;
    for (size_t s = 0; s < sizeof seen; s++)
        slots += seen[s];
    for (int i = 0; i < CLUSTER_KEYS; i++) {
        snprintf(val, sizeof val, "value-%d", i);
        ok &= set[i].calls == 1 && set[i].type == REDIS_REPLY_STATUS;
        ok &= get[i].calls == 1 && get[i].type == REDIS_REPLY_STRING &&
              strcmp(get[i].str, val) == 0;
    }
    CHECK(slots >= CLUSTER_MIN_SLOTS);
    CHECK(ok);
    free(set);
    free(get);
}

static void test_cluster_redirects(cdp_redis *r, const char *host, int seed_port)
{
    redisContext *seed = sync_connect(host, seed_port);
    if (!CHECK(seed != NULL))
        return;
    /* MOVED: the client's map still names the old owner. */
    const char *moved_key = "itest:moved";
    unsigned ms = cdp_redis_key_slot(moved_key, strlen(moved_key));
    int from = 0, to = 0;
    CHECK(cluster_owner(seed, ms, &from, &to) == 0);
    redisContext *src = sync_connect(host, from);
    CHECK(sync_ok(src, NULL, "DEL %s", moved_key));
    CHECK(slot_move(ms, from, to, 1));
    result set = call(r, moved_key, "SET %s %s", moved_key, "moved-value");
    CHECK(set.calls == 1 && set.err[0] == '\0' && set.type == REDIS_REPLY_STATUS);
    redisContext *dst = sync_connect(host, to);
    CHECK(sync_ok(dst, "moved-value", "GET %s", moved_key));
    if (src)
        redisFree(src);
    if (dst)
        redisFree(dst);

    /* ASK: the slot is half-way between two masters; the key is new. */
    const char *ask_key = "itest:ask";
    unsigned as = cdp_redis_key_slot(ask_key, strlen(ask_key));
    CHECK(cluster_owner(seed, as, &from, &to) == 0);
    src = sync_connect(host, from);
    CHECK(sync_ok(src, NULL, "DEL %s", ask_key));
    CHECK(slot_move(as, from, to, 0));
    result ask = call(r, ask_key, "SET %s %s", ask_key, "ask-value");
    CHECK(ask.calls == 1 && ask.err[0] == '\0' && ask.type == REDIS_REPLY_STATUS);
    dst = sync_connect(host, to);
    CHECK(sync_ok(dst, "OK", "ASKING") && sync_ok(dst, "ask-value", "GET %s", ask_key));
    CHECK(slot_finish(as, from, to));
    result get = call(r, ask_key, "GET %s", ask_key, NULL);
    CHECK(get.calls == 1 && strcmp(get.str, "ask-value") == 0);
    if (src)
        redisFree(src);
    if (dst)
        redisFree(dst);
    redisFree(seed);
}

/* 1000 keys over all slots, a multi-key script on one hash tag, and the
 * MOVED and ASK redirects. */
static void test_cluster(const char *seed)
{
    printf("-- cluster (%s)\n", seed);
    cdp_redis *r = client_new(seed, 0, 0, NULL);
    if (!CHECK(r != NULL))
        return;
    cdp_redis_script *s = cdp_redis_script_add(
        r, "pair", "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]);"
                   " return redis.call('GET', KEYS[2])");
    cdp_redis_start(r);
    if (CHECK(run_until(is_up, r, UP_WAIT_MS))) {
        CHECK(cdp_redis_is_cluster(r));
        test_cluster_spread(r);

        result res = {0};
        const char *keys[] = {"{user42}.a", "{user42}.b"};
        const char *args[] = {"tagged"};
        CHECK(cdp_redis_eval(r, s, on_result, &res, 2, keys, NULL, 1, args, NULL) == 0);
        CHECK(run_until(one_called, &res, REPLY_WAIT_MS));
        CHECK(res.calls == 1 && res.type == REDIS_REPLY_STRING && strcmp(res.str, "tagged") == 0);
        result b = call(r, keys[1], "GET %s", keys[1], NULL);
        CHECK(b.calls == 1 && strcmp(b.str, "tagged") == 0);

        char host[TEXT_MAX];
        int port = 0;
        split_addr(seed, host, sizeof host, &port);
        test_cluster_redirects(r, host, port);
        CHECK(cdp_redis_is_up(r));
    }
    client_close(r);
}

/* ------------------------------------------------------------ main */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    cdp_log_init("itest_redis");
    const char *addr = getenv("CDP_TEST_REDIS_ADDR");
    if (!addr || !*addr)
        addr = DEFAULT_ADDR;
    const char *spare = getenv("CDP_TEST_REDIS_SPARE_PORT");
    int spare_port = spare && *spare ? atoi(spare) : DEFAULT_SPARE_PORT;
    const char *cluster = getenv("CDP_TEST_REDIS_CLUSTER");

    loop = uv_default_loop();
    uv_timer_init(loop, &wake);

    test_pipeline(addr);
    test_eval(addr);
    test_timeout(addr);
    test_close(addr, spare_port);
    test_outage(spare_port);
    if (cluster && *cluster)
        test_cluster(cluster);
    else
        printf("-- cluster skipped (CDP_TEST_REDIS_CLUSTER not set)\n");

    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(loop) == 0); /* every client closed all its handles */
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
