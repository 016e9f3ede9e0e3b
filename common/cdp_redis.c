/* cdp_redis: the Redis client of every service (contract in cdp_redis.h).
 *
 * hiredis' async API on the service's libuv loop, plus what the stock
 * adapter lacks. How the pieces fit:
 *
 * - A connection (redis_conn) wraps one redisAsyncContext. Each (re)connect
 *   builds a generation of connections: a seed connection asks CLUSTER INFO;
 *   in cluster mode CLUSTER SLOTS names the masters and the client opens one
 *   connection per master. Every connection first sends SCRIPT LOAD for each
 *   script and a PING ("hello"); the hello's answer marks it ready. The
 *   client is up once the topology is known and every connection is ready.
 * - Any failure of any connection (connect error or timeout, a dropped
 *   socket, a failed or unanswered PING, a failed hello) takes the whole
 *   client down: every context is freed, hiredis hands each pending command
 *   a NULL reply, which is reported as "disconnected", and a retry is
 *   scheduled with exponential backoff.
 * - Every command is a record (redis_cmd) given to hiredis as privdata and
 *   also kept in one list ordered by deadline; a periodic tick fails expired
 *   records with "timeout". A record stays with hiredis until its reply (or
 *   NULL) comes back and is freed then, so a late reply finds it done and is
 *   dropped: a callback never runs twice and nothing leaks.
 * - libuv stops a poll handle on POLLERR and the adapter ignores that status,
 *   so a refused connect or a reset socket would hang forever; the tick sees
 *   the poll handle inactive (or SO_ERROR set) and fails the connection.
 * - hiredis may free a context later than we ask (redisAsyncFree inside its
 *   own callback is deferred), so a redis_conn lives until the adapter's
 *   cleanup hook, which we wrap, and the client until every context and uv
 *   handle is gone. */
#include "cdp_redis.h"

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include "cdp_log.h"
#include "cdp_metrics.h"
#include "cdp_redis_util.h"

#define REDIS_DEFAULT_CONNECT_TIMEOUT_MS 2000
#define REDIS_DEFAULT_COMMAND_TIMEOUT_MS 5000
#define REDIS_DEFAULT_PING_INTERVAL_MS 1000
#define REDIS_DEFAULT_RECONNECT_MIN_MS 100
#define REDIS_DEFAULT_RECONNECT_MAX_MS 5000
/* The tick that expires commands and checks connects runs every quarter of
 * the shortest timeout, so a timeout fires at most 25% late, within bounds
 * that keep it cheap (100 ms) and not busy (5 ms). */
#define REDIS_TICK_DIVISOR 4
#define REDIS_TICK_MIN_MS 5
#define REDIS_TICK_MAX_MS 100
/* MOVED/ASK hops followed per command before the error is returned. */
#define REDIS_MAX_REDIRECTS 5
/* eval builds argv on the stack up to this many arguments. */
#define REDIS_EVAL_STACK_ARGS 16
#define REDIS_EVAL_FIXED_ARGS 3 /* EVALSHA sha numkeys */
#define REDIS_INT_TEXT_MAX 16
#define REDIS_ERR_TEXT_MAX 128
#define REDIS_PORT_TEXT_MAX 8 /* ":65535" and the NUL */
#define REDIS_NAME_MAX (CDP__REDIS_HOST_MAX + REDIS_PORT_TEXT_MAX)
#define REDIS_NO_NODE UINT16_MAX
#define REDIS_NS_PER_MS 1000000u
/* Handles closed one by one by cdp_redis_close: tick, ping, retry, deferred. */
#define REDIS_CLOSED_HANDLES 4

/* Pre-formatted internal commands (RESP). */
static const char cmd_ping[] = "*1\r\n$4\r\nPING\r\n";
static const char cmd_cluster_info[] = "*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n";
static const char cmd_cluster_slots[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
static const char cmd_asking[] = "*1\r\n$6\r\nASKING\r\n";

typedef enum {
    REDIS_IDLE,       /* created, not started */
    REDIS_CONNECTING, /* building a generation of connections */
    REDIS_UP,
    REDIS_WAIT,       /* down; a retry is scheduled */
    REDIS_CLOSING,
} redis_state;

typedef enum {
    CMD_USER,
    CMD_HELLO, /* PING after the scripts on a new connection */
    CMD_PING,  /* periodic health PING */
    CMD_SCRIPT_LOAD,
    CMD_CLUSTER_INFO,
    CMD_CLUSTER_SLOTS,
} redis_cmd_kind;

struct cdp_redis_script {
    cdp_redis_script *next;
    char *name;
    char *lua;
    size_t lualen;
    char sha[CDP__REDIS_SHA_LEN + 1]; /* "" until a SCRIPT LOAD answered */
};

typedef struct redis_conn {
    cdp_redis *r;
    redisAsyncContext *ac; /* NULL once we or hiredis started freeing it */
    void (*adapter_cleanup)(void *privdata);
    cdp__redis_addr addr;
    char name[REDIS_NAME_MAX]; /* "host:port", for logs */
    uint64_t connect_deadline;
    size_t index;            /* position in r->nodes while attached */
    unsigned attached : 1;   /* in the current generation: its replies count */
    unsigned connected : 1;  /* TCP connect completed */
    unsigned ready : 1;      /* scripts loaded and hello answered */
    unsigned gone : 1;       /* its context is being freed */
    unsigned ping_inflight : 1;
} redis_conn;

typedef struct redis_cmd {
    struct redis_cmd *prev, *next; /* r->pending (by deadline) or r->deferred */
    cdp_redis *r;
    redis_conn *conn;         /* where it was last sent */
    cdp_redis_cb cb;          /* NULL for internal commands */
    void *ud;
    cdp_redis_script *script; /* the eval's script, or the one SCRIPT LOAD loads */
    char *buf;                /* the formatted command, kept only to resend it */
    size_t len;
    const char *err;          /* why a deferred failure fails */
    uint64_t deadline;
    redis_cmd_kind kind;
    unsigned redirects;
    unsigned done : 1;        /* outcome delivered; a late reply is dropped */
    unsigned listed : 1;      /* in r->pending */
    unsigned asked : 1;       /* an ASK was followed */
    unsigned as_eval : 1;     /* sent as EVAL (with the source) */
} redis_cmd;

struct cdp_redis {
    uv_loop_t *loop;
    cdp_redis_opts opts;
    char *addrs_text;
    cdp__redis_addr *seeds;   /* from opts.addrs */
    cdp__redis_addr *learned; /* the masters of the last cluster generation */
    int nseeds, nlearned, seed_next;
    cdp_redis_script *scripts, *scripts_last;
    redis_state state;
    int up, cluster, topology_known, refreshing;
    int backoff_ms;
    redis_conn **nodes;
    size_t nnodes, nodes_cap;
    redis_cmd *pending_head, *pending_tail;
    redis_cmd *deferred_head, *deferred_tail;
    int live_conns, open_handles;
    int fin_started;
    void (*state_fn)(int up, void *ud);
    void *state_ud;
    void (*done_fn)(void *ud);
    void *done_ud;
    uv_timer_t tick, ping, retry;
    uv_idle_t deferred_idle;
    uv_idle_t fin_a, fin_b; /* close sequencing, see maybe_finish */
    uint16_t slot_node[CDP__REDIS_SLOTS]; /* index into nodes, or REDIS_NO_NODE */
};

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void go_down(cdp_redis *r, const char *addr, const char *why);
static void maybe_finish(cdp_redis *r);

/* ------------------------------------------------------------ records */

/* Deadlines use the monotonic clock itself, not uv_now(): the loop's cached
 * time is stale for commands issued before uv_run or after a long callback,
 * which would make them expire at once. */
static uint64_t redis_now_ms(void)
{
    return uv_hrtime() / REDIS_NS_PER_MS;
}

static redis_cmd *cmd_new(cdp_redis *r, redis_cmd_kind kind, cdp_redis_cb cb, void *ud)
{
    redis_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->r = r;
    c->kind = kind;
    c->cb = cb;
    c->ud = ud;
    return c;
}

/* buf comes from redisFormatCommandArgv or cdp__redis_evalsha_to_eval; both
 * allocate with malloc in hiredis 0.14 (redisFreeCommand is free). */
static void cmd_free(redis_cmd *c)
{
    free(c->buf);
    free(c);
}

/* Inserts c into the pending list by deadline. All commands share one
 * timeout, so this almost always appends at the tail. */
static void pending_insert(cdp_redis *r, redis_cmd *c, uint64_t deadline)
{
    c->deadline = deadline;
    redis_cmd *after = r->pending_tail;
    while (after && after->deadline > deadline)
        after = after->prev;
    c->prev = after;
    c->next = after ? after->next : r->pending_head;
    if (c->next)
        c->next->prev = c;
    else
        r->pending_tail = c;
    if (after)
        after->next = c;
    else
        r->pending_head = c;
    c->listed = 1;
}

static void pending_remove(cdp_redis *r, redis_cmd *c)
{
    if (!c->listed)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->pending_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        r->pending_tail = c->prev;
    c->prev = c->next = NULL;
    c->listed = 0;
}

/* Delivers a command's outcome once; later calls do nothing. Does not free
 * c: whoever holds it (hiredis, or the deferred queue) frees it. A slot map
 * request ending in any way allows the next one. */
static void cmd_finish(redis_cmd *c, redisReply *reply, const char *err)
{
    if (c->done)
        return;
    c->done = 1;
    pending_remove(c->r, c);
    if (c->kind == CMD_CLUSTER_SLOTS)
        c->r->refreshing = 0;
    if (err)
        cdp_metrics_inc("cdp_redis_errors_total", "kind=\"transport\"", 1);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        cdp_metrics_inc("cdp_redis_errors_total", "kind=\"reply\"", 1);
    if (c->cb)
        c->cb(reply, err, c->ud);
}

/* ------------------------------------------------------------ deferred failures */

/* Delivers every queued failure; callbacks may queue more, which wait for
 * the next turn. */
static void deferred_drain(cdp_redis *r)
{
    redis_cmd *c = r->deferred_head;
    r->deferred_head = r->deferred_tail = NULL;
    while (c) {
        redis_cmd *next = c->next;
        cmd_finish(c, NULL, c->err);
        cmd_free(c);
        c = next;
    }
}

static void on_deferred(uv_idle_t *h)
{
    cdp_redis *r = h->data;
    deferred_drain(r);
    if (!r->deferred_head)
        uv_idle_stop(h);
}

/* Fails c with err on a later loop turn, so the caller of
 * cdp_redis_command is never re-entered. Takes ownership of c. Once closing,
 * the queue is drained by the last close callback instead. */
static void deferred_push(cdp_redis *r, redis_cmd *c, const char *err)
{
    c->err = err;
    c->next = NULL;
    if (r->deferred_tail)
        r->deferred_tail->next = c;
    else
        r->deferred_head = c;
    r->deferred_tail = c;
    if (r->state != REDIS_CLOSING)
        uv_idle_start(&r->deferred_idle, on_deferred);
}

/* ------------------------------------------------------------ sending */

/* Hands c to hiredis on conn and starts its timeout (kept across resends).
 * Returns 0, or -1 when the connection cannot take commands; c is then
 * still the caller's. */
static int cmd_send(redis_conn *conn, redis_cmd *c, const char *buf, size_t len)
{
    if (!conn->ac || conn->gone)
        return -1;
    if (redisAsyncFormattedCommand(conn->ac, on_reply, c, buf, len) != REDIS_OK)
        return -1;
    c->conn = conn;
    if (!c->listed)
        pending_insert(c->r, c, redis_now_ms() + (uint64_t)c->r->opts.command_timeout_ms);
    return 0;
}

/* Sends an internal command. Returns 0 or -1. */
static int send_internal(redis_conn *conn, redis_cmd_kind kind, cdp_redis_script *s,
                         const char *buf, size_t len)
{
    redis_cmd *c = cmd_new(conn->r, kind, NULL, NULL);
    if (!c)
        return -1;
    c->script = s;
    if (cmd_send(conn, c, buf, len) != 0) {
        cmd_free(c);
        return -1;
    }
    return 0;
}

static int send_script_load(redis_conn *conn, cdp_redis_script *s)
{
    char *buf = NULL;
    int len = redisFormatCommand(&buf, "SCRIPT LOAD %b", s->lua, s->lualen);
    if (len < 0)
        return -1;
    int rc = send_internal(conn, CMD_SCRIPT_LOAD, s, buf, (size_t)len);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ connections */

/* The context is being freed (by hiredis, after an error). Takes the client
 * down if the connection belongs to the current generation. */
static void conn_lost(redis_conn *conn, const char *why)
{
    if (conn->gone)
        return;
    conn->gone = 1;
    conn->ac = NULL;
    if (conn->attached)
        go_down(conn->r, conn->name, why);
}

/* We found the connection broken; going down frees it. */
static void conn_fail(redis_conn *conn, const char *why)
{
    if (conn->attached)
        go_down(conn->r, conn->name, why);
}

/* Frees a connection we no longer want. Its pending commands get NULL
 * replies (now, or when hiredis leaves the callback it is in). */
static void conn_release(redis_conn *conn)
{
    conn->attached = 0;
    if (conn->gone)
        return;
    conn->gone = 1;
    redisAsyncContext *ac = conn->ac;
    conn->ac = NULL;
    redisAsyncFree(ac);
}

static void conn_on_connect(const redisAsyncContext *ac, int status)
{
    redis_conn *conn = ac->data;
    if (status == REDIS_OK)
        conn->connected = 1;
    else
        conn_lost(conn, ac->errstr);
}

/* Wraps the adapter's cleanup, which hiredis calls exactly once per context
 * just before freeing it: the last moment the connection is known. */
static void conn_on_cleanup(void *privdata)
{
    redisLibuvEvents *ev = privdata;
    redisAsyncContext *ac = ev->context;
    redis_conn *conn = ac->data;
    cdp_redis *r = conn->r;
    conn->adapter_cleanup(privdata);
    conn_lost(conn, ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
    ac->data = NULL;
    free(conn);
    r->live_conns--;
    maybe_finish(r);
}

/* Queues what every new connection sends first: CLUSTER INFO (the seed
 * only), SCRIPT LOAD of every script, then the hello PING. hiredis buffers
 * them until the socket connects. Returns 0 or -1. */
static int conn_hello(redis_conn *conn, int ask_cluster)
{
    if (ask_cluster &&
        send_internal(conn, CMD_CLUSTER_INFO, NULL, cmd_cluster_info, sizeof cmd_cluster_info - 1))
        return -1;
    for (cdp_redis_script *s = conn->r->scripts; s; s = s->next)
        if (send_script_load(conn, s) != 0)
            return -1;
    return send_internal(conn, CMD_HELLO, NULL, cmd_ping, sizeof cmd_ping - 1);
}

/* hiredis asks for write readiness on every command; the stock adapter
 * answers with uv_poll_start each time, which libuv turns into epoll_ctl
 * calls even when the handle already watches for writing (measured: about
 * half of identity's CPU under load). Skip the restart when nothing changes. */
static void conn_add_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    if (p->events & UV_WRITABLE)
        return;
    p->events |= UV_WRITABLE;
    uv_poll_start(&p->handle, p->events, redisLibuvPoll);
}

/* Starts connecting to addr. Returns the connection (not yet attached), or
 * NULL with the reason in err. */
static redis_conn *conn_open(cdp_redis *r, const cdp__redis_addr *addr, int ask_cluster,
                             char *err, size_t errlen)
{
    redisAsyncContext *ac = redisAsyncConnect(addr->host, addr->port);
    if (!ac) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (ac->err) {
        snprintf(err, errlen, "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    redis_conn *conn = calloc(1, sizeof *conn);
    if (!conn) {
        redisAsyncFree(ac);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        /* The adapter installs its hooks before it can fail: remove them so
         * freeing the context does not call them without event data. */
        ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = NULL;
        ac->ev.cleanup = NULL;
        redisAsyncFree(ac);
        free(conn);
        snprintf(err, errlen, "cannot watch the socket");
        return NULL;
    }
    conn->r = r;
    conn->ac = ac;
    conn->addr = *addr;
    snprintf(conn->name, sizeof conn->name, "%s:%d", addr->host, addr->port);
    conn->adapter_cleanup = ac->ev.cleanup;
    ac->ev.cleanup = conn_on_cleanup;
    ac->ev.addWrite = conn_add_write;
    ac->data = conn;
    r->live_conns++;
    conn->connect_deadline = redis_now_ms() + (uint64_t)r->opts.connect_timeout_ms;
    redisAsyncSetConnectCallback(ac, conn_on_connect);
    if (conn_hello(conn, ask_cluster) != 0) {
        conn_release(conn);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return conn;
}

/* Appends conn to the current generation. Returns 0 or -1. */
static int node_add(cdp_redis *r, redis_conn *conn)
{
    if (r->nnodes == r->nodes_cap) {
        size_t cap = r->nodes_cap ? r->nodes_cap * 2 : 4;
        redis_conn **nodes = realloc(r->nodes, cap * sizeof *nodes);
        if (!nodes)
            return -1;
        r->nodes = nodes;
        r->nodes_cap = cap;
    }
    conn->index = r->nnodes;
    conn->attached = 1;
    r->nodes[r->nnodes++] = conn;
    return 0;
}

/* Opens and attaches a connection; on failure takes the client down.
 * Returns the connection or NULL. */
static redis_conn *node_open(cdp_redis *r, const cdp__redis_addr *addr, int ask_cluster)
{
    char err[REDIS_ERR_TEXT_MAX];
    redis_conn *conn = conn_open(r, addr, ask_cluster, err, sizeof err);
    if (conn && node_add(r, conn) == 0)
        return conn;
    if (conn) {
        conn_release(conn);
        snprintf(err, sizeof err, "out of memory");
    }
    char name[REDIS_NAME_MAX];
    snprintf(name, sizeof name, "%s:%d", addr->host, addr->port);
    go_down(r, name, err);
    return NULL;
}

/* The connection to addr in the current generation, opened if new. NULL
 * when opening failed (the client is then down). */
static redis_conn *node_get(cdp_redis *r, const cdp__redis_addr *addr)
{
    for (size_t i = 0; i < r->nnodes; i++) {
        redis_conn *n = r->nodes[i];
        if (n->addr.port == addr->port && strcmp(n->addr.host, addr->host) == 0)
            return n;
    }
    return node_open(r, addr, 0);
}

/* Detaches and frees every connection of the current generation. The array
 * is emptied first, since freeing runs callbacks that may re-enter. */
static void nodes_teardown(cdp_redis *r)
{
    redis_conn **nodes = r->nodes;
    size_t n = r->nnodes;
    r->nodes = NULL;
    r->nnodes = r->nodes_cap = 0;
    for (size_t i = 0; i < n; i++)
        nodes[i]->attached = 0;
    for (size_t i = 0; i < n; i++)
        conn_release(nodes[i]);
    free(nodes);
}

static void slots_clear(cdp_redis *r)
{
    for (size_t s = 0; s < CDP__REDIS_SLOTS; s++)
        r->slot_node[s] = REDIS_NO_NODE;
}

/* ------------------------------------------------------------ up and down */

static void set_up(cdp_redis *r, int up)
{
    if (r->up == up)
        return;
    r->up = up;
    if (r->state_fn)
        r->state_fn(up, r->state_ud);
}

static void on_ping(uv_timer_t *t);
static void on_retry(uv_timer_t *t);

/* Remembers the masters as extra seeds, so that the cluster can be found
 * again when every configured seed is down. Best effort. */
static void learn_masters(cdp_redis *r)
{
    cdp__redis_addr *addrs = malloc(r->nnodes * sizeof *addrs);
    if (!addrs)
        return;
    for (size_t i = 0; i < r->nnodes; i++)
        addrs[i] = r->nodes[i]->addr;
    free(r->learned);
    r->learned = addrs;
    r->nlearned = (int)r->nnodes;
}

/* Goes up once the topology is known and every connection is ready. */
static void maybe_up(cdp_redis *r)
{
    if (r->state != REDIS_CONNECTING || !r->topology_known)
        return;
    for (size_t i = 0; i < r->nnodes; i++)
        if (!r->nodes[i]->ready)
            return;
    r->state = REDIS_UP;
    r->backoff_ms = 0;
    if (r->cluster)
        learn_masters(r);
    cdp_log(CDP_LOG_INFO, "redis connected", "{s:s,s:b,s:i}", "addr", r->addrs_text, "cluster",
            r->cluster, "nodes", (int)r->nnodes);
    uv_timer_start(&r->ping, on_ping, (uint64_t)r->opts.ping_interval_ms,
                   (uint64_t)r->opts.ping_interval_ms);
    set_up(r, 1);
}

/* Takes the client down after a failure at addr: logs it, frees every
 * connection (their pending commands fail with "disconnected") and
 * schedules a reconnect after the next backoff delay. Idempotent. */
static void go_down(cdp_redis *r, const char *addr, const char *why)
{
    if (r->state != REDIS_CONNECTING && r->state != REDIS_UP)
        return;
    int was_up = r->state == REDIS_UP;
    r->backoff_ms =
        cdp__redis_backoff_next(r->backoff_ms, r->opts.reconnect_min_ms, r->opts.reconnect_max_ms);
    r->state = REDIS_WAIT;
    /* Logged first: `why` may live in a context freed below. */
    cdp_log(CDP_LOG_ERROR, was_up ? "redis connection lost" : "cannot reach Redis",
            "{s:s,s:s,s:i}", "addr", addr, "error", why && why[0] ? why : "unknown", "retry_ms",
            r->backoff_ms);
    uv_timer_stop(&r->ping);
    r->seed_next = (r->seed_next + 1) % (r->nseeds + r->nlearned);
    r->cluster = r->topology_known = r->refreshing = 0;
    set_up(r, 0);
    if (r->state != REDIS_WAIT) /* the listener closed the client */
        return;
    nodes_teardown(r);
    if (r->state == REDIS_WAIT)
        uv_timer_start(&r->retry, on_retry, (uint64_t)r->backoff_ms, 0);
}

/* Begins a generation with the next seed: the configured ones in turn,
 * then the masters learned from the last slot map. */
static void start_connect(cdp_redis *r)
{
    r->state = REDIS_CONNECTING;
    r->cluster = r->topology_known = r->refreshing = 0;
    slots_clear(r);
    if (r->seed_next >= r->nseeds + r->nlearned)
        r->seed_next = 0;
    int i = r->seed_next;
    node_open(r, i < r->nseeds ? &r->seeds[i] : &r->learned[i - r->nseeds], 1);
}

static void on_retry(uv_timer_t *t)
{
    cdp_redis *r = t->data;
    if (r->state == REDIS_WAIT)
        start_connect(r);
}

/* ------------------------------------------------------------ cluster topology */

/* Asks `via` for the slot map unless a request is already out. */
static void slots_request(cdp_redis *r, redis_conn *via)
{
    if (r->refreshing)
        return;
    if (send_internal(via, CMD_CLUSTER_SLOTS, NULL, cmd_cluster_slots,
                      sizeof cmd_cluster_slots - 1) == 0)
        r->refreshing = 1;
}

static int ranges_name(const cdp__redis_slot_range *ranges, int n, const cdp__redis_addr *a)
{
    for (int i = 0; i < n; i++)
        if (ranges[i].addr.port == a->port && strcmp(ranges[i].addr.host, a->host) == 0)
            return 1;
    return 0;
}

/* Installs a slot map, opening connections to masters not yet known.
 * Returns 0, or -1 if the client went down meanwhile. */
static int slots_apply(cdp_redis *r, const cdp__redis_slot_range *ranges, int n)
{
    slots_clear(r);
    for (int i = 0; i < n; i++) {
        redis_conn *node = node_get(r, &ranges[i].addr);
        if (!node)
            return -1;
        for (unsigned s = ranges[i].first; s <= ranges[i].last; s++)
            r->slot_node[s] = (uint16_t)node->index;
    }
    return 0;
}

/* A CLUSTER SLOTS answer: at connect it completes the topology (the seed is
 * dropped unless it is a master); later it refreshes the map after MOVED. */
static void on_cluster_slots(cdp_redis *r, redis_conn *conn, const redisReply *reply)
{
    cdp__redis_slot_range *ranges = NULL;
    int n = cdp__redis_slots_parse(reply, &ranges);
    if (n <= 0) {
        free(ranges);
        const char *why = n == 0 ? "cluster has no slots" : "bad CLUSTER SLOTS reply";
        if (r->state == REDIS_CONNECTING)
            conn_fail(conn, why);
        else
            cdp_log(CDP_LOG_WARN, "redis slot map refresh failed", "{s:s,s:s}", "addr",
                    conn->name, "error", why);
        return;
    }
    for (int i = 0; i < n; i++)
        if (!ranges[i].addr.host[0])
            memcpy(ranges[i].addr.host, conn->addr.host, sizeof conn->addr.host);
    int connecting = r->state == REDIS_CONNECTING;
    if (connecting && !ranges_name(ranges, n, &conn->addr)) {
        /* The seed is a replica or unlisted: drop it (it is the only node). */
        r->nnodes = 0;
        conn_release(conn);
    }
    int rc = slots_apply(r, ranges, n);
    free(ranges);
    if (rc == 0 && connecting) {
        r->topology_known = 1;
        maybe_up(r);
    }
}

/* CLUSTER INFO on the seed: an error ("cluster support disabled") means a
 * single Redis; an answer means a cluster, whose slot map comes next. */
static void on_cluster_info(cdp_redis *r, redis_conn *conn, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_STRING && strstr(reply->str, "cluster_state:")) {
        r->cluster = 1;
        slots_request(r, conn);
        if (!r->refreshing)
            conn_fail(conn, "cannot send CLUSTER SLOTS");
        return;
    }
    r->cluster = 0;
    r->topology_known = 1;
    maybe_up(r);
}

/* The routing target of a key: the single node, or the master of its slot
 * (the first node when the slot is unmapped or there is no key). */
static redis_conn *route(cdp_redis *r, const char *key, size_t keylen)
{
    if (!r->cluster || !key)
        return r->nodes[0];
    uint16_t idx = r->slot_node[cdp_redis_key_slot(key, keylen)];
    return idx == REDIS_NO_NODE ? r->nodes[0] : r->nodes[idx];
}

/* ------------------------------------------------------------ replies */

static int reply_is_error(const redisReply *reply, const char *prefix)
{
    size_t n = strlen(prefix);
    return reply->type == REDIS_REPLY_ERROR && reply->len >= n &&
           memcmp(reply->str, prefix, n) == 0;
}

static const char *reply_text(const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STATUS)
        return reply->str;
    return "unexpected reply";
}

static void on_script_loaded(redis_conn *conn, redis_cmd *c, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_STRING && reply->len == CDP__REDIS_SHA_LEN) {
        memcpy(c->script->sha, reply->str, CDP__REDIS_SHA_LEN);
        c->script->sha[CDP__REDIS_SHA_LEN] = '\0';
        return;
    }
    cdp_log(CDP_LOG_ERROR, "redis script load failed", "{s:s,s:s,s:s}", "script",
            c->script->name, "addr", conn->name, "error", reply_text(reply));
    conn_fail(conn, "SCRIPT LOAD failed");
}

static int reply_is_pong(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
}

/* Replies to the client's own commands, on a connection of the current
 * generation. */
static void on_internal_reply(cdp_redis *r, redis_conn *conn, redis_cmd *c,
                              const redisReply *reply)
{
    switch (c->kind) {
    case CMD_CLUSTER_INFO:
        on_cluster_info(r, conn, reply);
        break;
    case CMD_CLUSTER_SLOTS:
        on_cluster_slots(r, conn, reply);
        break;
    case CMD_SCRIPT_LOAD:
        on_script_loaded(conn, c, reply);
        break;
    case CMD_HELLO:
        if (!reply_is_pong(reply)) {
            conn_fail(conn, reply_text(reply));
            break;
        }
        conn->ready = 1;
        maybe_up(r);
        break;
    case CMD_PING:
        conn->ping_inflight = 0;
        if (!reply_is_pong(reply))
            conn_fail(conn, reply_text(reply));
        break;
    case CMD_USER:
        break;
    }
}

/* NOSCRIPT: re-sends c as EVAL with the source on the same connection.
 * Returns 0 when c was taken care of (resent, or failed and freed), -1 to
 * deliver the NOSCRIPT error as is. */
static int resend_as_eval(redis_conn *conn, redis_cmd *c)
{
    char *buf = NULL;
    size_t len = 0;
    if (!c->buf ||
        cdp__redis_evalsha_to_eval(c->buf, c->len, c->script->lua, c->script->lualen, &buf,
                                   &len) != 0)
        return -1;
    free(c->buf);
    c->buf = buf;
    c->len = len;
    c->as_eval = 1;
    if (cmd_send(conn, c, buf, len) != 0) {
        cmd_finish(c, NULL, "disconnected");
        cmd_free(c);
    }
    return 0;
}

/* MOVED: patch the slot, refresh the map, resend to the named node. ASK:
 * send ASKING then the command to the named node, once. Returns 0 when c
 * was taken care of, -1 to deliver the redirect error as is. */
static int follow_redirect(cdp_redis *r, redis_conn *from, redis_cmd *c,
                           const cdp__redis_redirect *rd)
{
    if (!c->buf || (rd->kind == CDP__REDIS_ASK && c->asked))
        return -1;
    cdp__redis_addr addr = rd->addr;
    if (!addr.host[0])
        memcpy(addr.host, from->addr.host, sizeof addr.host);
    redis_conn *to = node_get(r, &addr);
    if (!to) {
        cmd_finish(c, NULL, "disconnected");
        cmd_free(c);
        return 0;
    }
    c->redirects++;
    int rc = REDIS_OK;
    if (rd->kind == CDP__REDIS_MOVED) {
        r->slot_node[rd->slot] = (uint16_t)to->index;
        slots_request(r, from);
    } else {
        c->asked = 1;
        rc = to->ac ? redisAsyncFormattedCommand(to->ac, NULL, NULL, cmd_asking,
                                                 sizeof cmd_asking - 1)
                    : REDIS_ERR;
    }
    if (rc != REDIS_OK || cmd_send(to, c, c->buf, c->len) != 0) {
        cmd_finish(c, NULL, "disconnected");
        cmd_free(c);
    }
    return 0;
}

static void on_user_reply(cdp_redis *r, redis_conn *conn, redis_cmd *c, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR && r->state == REDIS_UP) {
        if (c->script && !c->as_eval && reply_is_error(reply, "NOSCRIPT") &&
            resend_as_eval(conn, c) == 0)
            return;
        cdp__redis_redirect rd;
        if (r->cluster && c->redirects < REDIS_MAX_REDIRECTS &&
            cdp__redis_redirect_parse(reply->str, reply->len, &rd) == 0 &&
            follow_redirect(r, conn, c, &rd) == 0)
            return;
    }
    cmd_finish(c, reply, NULL);
    cmd_free(c);
}

/* hiredis' callback for every command. reply is NULL when the context is
 * being freed; hiredis frees a non-NULL reply after we return. */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redis_cmd *c = privdata;
    redis_conn *conn = ac->data;
    cdp_redis *r = c->r;
    redisReply *reply = reply_;
    if (!reply) {
        conn_lost(conn, ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
        cmd_finish(c, NULL, r->state == REDIS_CLOSING ? "closing" : "disconnected");
        cmd_free(c);
        return;
    }
    if (c->done) { /* answered after its timeout */
        cmd_free(c);
        return;
    }
    if (c->kind == CMD_USER) {
        on_user_reply(r, conn, c, reply);
        return;
    }
    cmd_finish(c, NULL, NULL);
    if (conn->attached && (r->state == REDIS_CONNECTING || r->state == REDIS_UP))
        on_internal_reply(r, conn, c, reply);
    cmd_free(c);
}

/* ------------------------------------------------------------ timers */

static const char *timeout_reason(redis_cmd_kind kind)
{
    switch (kind) {
    case CMD_PING:
        return "PING timeout";
    case CMD_HELLO:
    case CMD_SCRIPT_LOAD:
        return "timeout loading scripts";
    case CMD_CLUSTER_INFO:
    case CMD_CLUSTER_SLOTS:
        return "timeout reading the cluster topology";
    case CMD_USER:
        break;
    }
    return "timeout";
}

/* Why conn is broken, or NULL. Catches what the adapter loses: libuv stops
 * the poll handle on POLLERR (refused connect, reset) and the adapter drops
 * that status, so the handle sits inactive while hiredis still wants events. */
static const char *conn_check(const redis_conn *conn, uint64_t now)
{
    if (!conn->ac)
        return NULL;
    const redisLibuvEvents *ev = conn->ac->ev.data;
    int lost = ev && ev->events && !uv_is_active((const uv_handle_t *)&ev->handle);
    if (conn->connected && !lost)
        return NULL;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(conn->ac->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr)
        return strerror(soerr);
    if (lost)
        return "socket error";
    if (!conn->connected && now >= conn->connect_deadline)
        return "connect timeout";
    return NULL;
}

/* Every tick: fail expired commands (an expired internal command fails its
 * connection) and check connections. */
static void on_tick(uv_timer_t *t)
{
    cdp_redis *r = t->data;
    uint64_t now = redis_now_ms();
    redis_cmd *c;
    while ((c = r->pending_head) && c->deadline <= now) {
        if (c->kind == CMD_USER) {
            cmd_finish(c, NULL, "timeout");
            continue;
        }
        cmd_finish(c, NULL, NULL);
        conn_fail(c->conn, timeout_reason(c->kind)); /* may free c */
    }
    for (size_t i = 0; i < r->nnodes; i++) {
        const char *why = conn_check(r->nodes[i], now);
        if (why) {
            conn_fail(r->nodes[i], why);
            break;
        }
    }
}

static void on_ping(uv_timer_t *t)
{
    cdp_redis *r = t->data;
    for (size_t i = 0; r->state == REDIS_UP && i < r->nnodes; i++) {
        redis_conn *conn = r->nodes[i];
        if (conn->ping_inflight || !conn->ready)
            continue;
        if (send_internal(conn, CMD_PING, NULL, cmd_ping, sizeof cmd_ping - 1) != 0) {
            conn_fail(conn, "cannot send PING");
            return;
        }
        conn->ping_inflight = 1;
    }
}

/* ------------------------------------------------------------ closing */

static void client_free(cdp_redis *r)
{
    cdp_redis_script *s = r->scripts;
    while (s) {
        cdp_redis_script *next = s->next;
        free(s->name);
        free(s->lua);
        free(s);
        s = next;
    }
    free(r->nodes);
    free(r->seeds);
    free(r->learned);
    free(r->addrs_text);
    free(r);
}

static void on_fin_b(uv_handle_t *h)
{
    cdp_redis *r = h->data;
    while (r->deferred_head)
        deferred_drain(r);
    void (*done)(void *) = r->done_fn;
    void *ud = r->done_ud;
    client_free(r);
    if (done)
        done(ud);
}

/* Closing fin_b from fin_a's close callback puts it in the next closing
 * pass, after the adapter's poll handles closed in this one. */
static void on_fin_a(uv_handle_t *h)
{
    cdp_redis *r = h->data;
    uv_close((uv_handle_t *)&r->fin_b, on_fin_b);
}

/* Finishes closing once our handles are closed and every hiredis context
 * is gone (some are freed late, when hiredis leaves a callback). */
static void maybe_finish(cdp_redis *r)
{
    if (r->state != REDIS_CLOSING || r->open_handles || r->live_conns || r->fin_started)
        return;
    r->fin_started = 1;
    uv_close((uv_handle_t *)&r->fin_a, on_fin_a);
}

static void on_handle_closed(uv_handle_t *h)
{
    cdp_redis *r = h->data;
    r->open_handles--;
    maybe_finish(r);
}

void cdp_redis_close(cdp_redis *r, void (*done)(void *ud), void *ud)
{
    if (!r) { /* nothing to close: done at once */
        if (done)
            done(ud);
        return;
    }
    if (r->state == REDIS_CLOSING)
        return;
    r->state = REDIS_CLOSING;
    r->done_fn = done;
    r->done_ud = ud;
    /* The listener's owner may be shutting down too: no more calls. */
    r->state_fn = NULL;
    r->up = 0;
    redis_cmd *c;
    while ((c = r->pending_head))
        cmd_finish(c, NULL, c->kind == CMD_USER ? "closing" : NULL);
    nodes_teardown(r);
    r->open_handles = REDIS_CLOSED_HANDLES;
    uv_close((uv_handle_t *)&r->tick, on_handle_closed);
    uv_close((uv_handle_t *)&r->ping, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry, on_handle_closed);
    uv_close((uv_handle_t *)&r->deferred_idle, on_handle_closed);
}

/* ------------------------------------------------------------ public API */

static int opt_or(int v, int def)
{
    return v > 0 ? v : def;
}

static int tick_interval(const cdp_redis_opts *o)
{
    int shortest = o->command_timeout_ms < o->connect_timeout_ms ? o->command_timeout_ms
                                                                 : o->connect_timeout_ms;
    int t = shortest / REDIS_TICK_DIVISOR;
    if (t < REDIS_TICK_MIN_MS)
        return REDIS_TICK_MIN_MS;
    return t > REDIS_TICK_MAX_MS ? REDIS_TICK_MAX_MS : t;
}

/* A write to a socket Redis closed raises SIGPIPE, whose default action
 * kills the process; hiredis uses write(2), so ignore it unless the process
 * chose a handler. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
}

cdp_redis *cdp_redis_new(uv_loop_t *loop, const cdp_redis_opts *opts)
{
    if (!loop || !opts || !opts->addrs)
        return NULL;
    cdp_redis *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->nseeds = cdp__redis_addr_list_parse(opts->addrs, &r->seeds);
    r->addrs_text = strdup(opts->addrs);
    if (r->nseeds <= 0 || !r->addrs_text) {
        free(r->addrs_text);
        if (r->nseeds > 0)
            free(r->seeds);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->opts.connect_timeout_ms = opt_or(opts->connect_timeout_ms, REDIS_DEFAULT_CONNECT_TIMEOUT_MS);
    r->opts.command_timeout_ms = opt_or(opts->command_timeout_ms, REDIS_DEFAULT_COMMAND_TIMEOUT_MS);
    r->opts.ping_interval_ms = opt_or(opts->ping_interval_ms, REDIS_DEFAULT_PING_INTERVAL_MS);
    r->opts.reconnect_min_ms = opt_or(opts->reconnect_min_ms, REDIS_DEFAULT_RECONNECT_MIN_MS);
    r->opts.reconnect_max_ms = opt_or(opts->reconnect_max_ms, REDIS_DEFAULT_RECONNECT_MAX_MS);
    r->opts.addrs = r->addrs_text;
    r->state = REDIS_IDLE;
    slots_clear(r);
    uv_timer_init(loop, &r->tick);
    uv_timer_init(loop, &r->ping);
    uv_timer_init(loop, &r->retry);
    uv_idle_init(loop, &r->deferred_idle);
    uv_idle_init(loop, &r->fin_a);
    uv_idle_init(loop, &r->fin_b);
    r->tick.data = r->ping.data = r->retry.data = r;
    r->deferred_idle.data = r->fin_a.data = r->fin_b.data = r;
    ignore_sigpipe();
    return r;
}

cdp_redis_script *cdp_redis_script_add(cdp_redis *r, const char *name, const char *lua)
{
    if (r->state == REDIS_CLOSING || !name || !lua)
        return NULL;
    cdp_redis_script *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->name = strdup(name);
    s->lua = strdup(lua);
    if (!s->name || !s->lua) {
        free(s->name);
        free(s->lua);
        free(s);
        return NULL;
    }
    s->lualen = strlen(lua);
    if (r->scripts_last)
        r->scripts_last->next = s;
    else
        r->scripts = s;
    r->scripts_last = s;
    return s;
}

int cdp_redis_start(cdp_redis *r)
{
    if (r->state != REDIS_IDLE)
        return 0;
    int tick = tick_interval(&r->opts);
    uv_timer_start(&r->tick, on_tick, (uint64_t)tick, (uint64_t)tick);
    start_connect(r);
    return 0;
}

/* Without memory for a record the failure cannot be deferred: the callback
 * runs at once, the only case where it does. */
static int fail_now(cdp_redis_cb cb, void *ud)
{
    if (cb)
        cb(NULL, "out of memory", ud);
    return -1;
}

static int cmd_reject(cdp_redis *r, redis_cmd *c)
{
    deferred_push(r, c, r->state == REDIS_CLOSING ? "closing" : "redis unavailable");
    return -1;
}

/* Routes and sends a user command. Takes ownership of c and buf. The
 * buffer is kept only when a redirect or NOSCRIPT may need it again. */
static int cmd_submit(cdp_redis *r, redis_cmd *c, const char *key, size_t keylen, char *buf,
                      size_t len)
{
    redis_conn *conn = route(r, key, keylen);
    if (cmd_send(conn, c, buf, len) != 0) {
        free(buf);
        deferred_push(r, c, "disconnected");
        return -1;
    }
    if (r->cluster || c->script) {
        c->buf = buf;
        c->len = len;
    } else {
        free(buf);
    }
    return 0;
}

int cdp_redis_command(cdp_redis *r, const char *key, size_t keylen, cdp_redis_cb cb, void *ud,
                      int argc, const char **argv, const size_t *argvlen)
{
    redis_cmd *c = cmd_new(r, CMD_USER, cb, ud);
    if (!c)
        return fail_now(cb, ud);
    if (r->state != REDIS_UP)
        return cmd_reject(r, c);
    char *buf = NULL;
    int len = argc > 0 ? redisFormatCommandArgv(&buf, argc, argv, argvlen) : -1;
    if (len < 0) {
        deferred_push(r, c, argc > 0 ? "out of memory" : "empty command");
        return -1;
    }
    return cmd_submit(r, c, key, keylen, buf, (size_t)len);
}

int cdp_redis_commandf(cdp_redis *r, const char *key, cdp_redis_cb cb, void *ud,
                       const char *fmt, ...)
{
    redis_cmd *c = cmd_new(r, CMD_USER, cb, ud);
    if (!c)
        return fail_now(cb, ud);
    if (r->state != REDIS_UP)
        return cmd_reject(r, c);
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    if (len < 0) {
        deferred_push(r, c, "bad command format");
        return -1;
    }
    return cmd_submit(r, c, key, key ? strlen(key) : 0, buf, (size_t)len);
}

/* Formats EVALSHA (EVAL while the script's SHA is unknown) of s. Returns the
 * length, or -1 on allocation failure. */
static int format_eval(const cdp_redis_script *s, int numkeys, const char **keys,
                       const size_t *keylens, int nargs, const char **args,
                       const size_t *arglens, char **out)
{
    int argc = REDIS_EVAL_FIXED_ARGS + numkeys + nargs;
    const char *argv_stack[REDIS_EVAL_STACK_ARGS];
    size_t lens_stack[REDIS_EVAL_STACK_ARGS];
    const char **argv = argv_stack;
    size_t *lens = lens_stack;
    if (argc > REDIS_EVAL_STACK_ARGS) {
        argv = malloc((size_t)argc * sizeof *argv);
        lens = malloc((size_t)argc * sizeof *lens);
    }
    int len = -1;
    if (argv && lens) {
        char nk[REDIS_INT_TEXT_MAX];
        int with_sha = s->sha[0] != '\0';
        argv[0] = with_sha ? "EVALSHA" : "EVAL";
        lens[0] = strlen(argv[0]);
        argv[1] = with_sha ? s->sha : s->lua;
        lens[1] = with_sha ? CDP__REDIS_SHA_LEN : s->lualen;
        lens[2] = (size_t)snprintf(nk, sizeof nk, "%d", numkeys);
        argv[2] = nk;
        for (int i = 0; i < numkeys; i++) {
            argv[REDIS_EVAL_FIXED_ARGS + i] = keys[i];
            lens[REDIS_EVAL_FIXED_ARGS + i] = keylens ? keylens[i] : strlen(keys[i]);
        }
        for (int i = 0; i < nargs; i++) {
            argv[REDIS_EVAL_FIXED_ARGS + numkeys + i] = args[i];
            lens[REDIS_EVAL_FIXED_ARGS + numkeys + i] = arglens ? arglens[i] : strlen(args[i]);
        }
        len = redisFormatCommandArgv(out, argc, argv, lens);
    }
    if (argv != argv_stack)
        free(argv);
    if (lens != lens_stack)
        free(lens);
    return len;
}

int cdp_redis_eval(cdp_redis *r, cdp_redis_script *s, cdp_redis_cb cb, void *ud, int numkeys,
                   const char **keys, const size_t *keylens, int nargs, const char **args,
                   const size_t *arglens)
{
    redis_cmd *c = cmd_new(r, CMD_USER, cb, ud);
    if (!c)
        return fail_now(cb, ud);
    if (r->state != REDIS_UP)
        return cmd_reject(r, c);
    if (!s || numkeys < 0 || nargs < 0) {
        deferred_push(r, c, "invalid eval arguments");
        return -1;
    }
    c->script = s;
    c->as_eval = s->sha[0] == '\0';
    char *buf = NULL;
    int len = format_eval(s, numkeys, keys, keylens, nargs, args, arglens, &buf);
    if (len < 0) {
        deferred_push(r, c, "out of memory");
        return -1;
    }
    const char *key = numkeys > 0 ? keys[0] : NULL;
    size_t keylen = key ? (keylens ? keylens[0] : strlen(key)) : 0;
    return cmd_submit(r, c, key, keylen, buf, (size_t)len);
}

int cdp_redis_is_up(const cdp_redis *r)
{
    return r->up;
}

int cdp_redis_is_cluster(const cdp_redis *r)
{
    return r->cluster;
}

void cdp_redis_on_state(cdp_redis *r, void (*fn)(int up, void *ud), void *ud)
{
    r->state_fn = fn;
    r->state_ud = ud;
}
