/* cdp_redis: the Redis client every service uses. hiredis' async API on the
 * service's libuv loop, with what the stock adapter lacks: connect and
 * command timeouts, reconnection with backoff, a health state driven by
 * periodic PINGs, and Lua scripts loaded on every (re)connect for multi-key
 * atomic changes.
 *
 * It speaks to a single Redis or to a Redis Cluster; which one is detected at
 * connect (CLUSTER INFO). In cluster mode every command is routed by the
 * hash slot of the key the caller names, MOVED refreshes the slot map and
 * retries, ASK is followed once. Commands issued in one loop turn leave in
 * one write per node (hiredis pipelines by itself), so callers should issue
 * independent commands back to back and never wait for one reply before
 * sending an unrelated command.
 *
 * Threading: everything runs on the loop thread that owns the client. */
#ifndef CDP_REDIS_H
#define CDP_REDIS_H

#include <stddef.h>
#include <uv.h>
#include <hiredis/hiredis.h>

typedef struct cdp_redis cdp_redis;
typedef struct cdp_redis_script cdp_redis_script;

typedef struct {
    /* "host:port", or several comma-separated cluster seed nodes. */
    const char *addrs;
    int connect_timeout_ms;   /* default 2000 */
    int command_timeout_ms;   /* default 5000 */
    int ping_interval_ms;     /* default 1000; a failed PING marks the client down */
    int reconnect_min_ms;     /* default 100; doubles per failure ... */
    int reconnect_max_ms;     /* ... up to this, default 5000 */
} cdp_redis_opts;

/* Called exactly once per command, on the loop thread.
 * On success: reply is the server's reply (which may be REDIS_REPLY_ERROR)
 * and err is NULL. On failure (timeout, disconnect, not connected, closing):
 * reply is NULL and err says why. The reply is owned by the client and
 * freed when the callback returns. */
typedef void (*cdp_redis_cb)(redisReply *reply, const char *err, void *ud);

/* Creates a client on `loop`; opts fields left 0 take the defaults.
 * Returns NULL on allocation failure or a malformed addrs. */
cdp_redis *cdp_redis_new(uv_loop_t *loop, const cdp_redis_opts *opts);

/* Registers a Lua script before cdp_redis_start. The client SCRIPT LOADs it
 * on every connection and runs it with EVALSHA (EVAL on NOSCRIPT). The
 * returned handle lives as long as the client. */
cdp_redis_script *cdp_redis_script_add(cdp_redis *r, const char *name, const char *lua);

/* Starts connecting (asynchronously; failures are logged with the address
 * and retried with backoff). Returns 0. */
int cdp_redis_start(cdp_redis *r);

/* Sends argv. `key` (may be NULL: any node) names the key whose slot the
 * command is routed by in cluster mode. Returns 0 if queued; -1 if the
 * client is down or closing, in which case cb is still called (on a later
 * loop turn) with an error, so callers handle one path only. */
int cdp_redis_command(cdp_redis *r, const char *key, size_t keylen,
                      cdp_redis_cb cb, void *ud,
                      int argc, const char **argv, const size_t *argvlen);

/* printf-style, as redisAsyncCommand; routed by `key` (NUL-terminated). */
int cdp_redis_commandf(cdp_redis *r, const char *key, cdp_redis_cb cb, void *ud,
                       const char *fmt, ...);

/* Runs a registered script with numkeys keys then nargs args; routed by
 * keys[0]. Same contract as cdp_redis_command. */
int cdp_redis_eval(cdp_redis *r, cdp_redis_script *s, cdp_redis_cb cb, void *ud,
                   int numkeys, const char **keys, const size_t *keylens,
                   int nargs, const char **args, const size_t *arglens);

/* 1 when every node is connected, scripts are loaded and the last PING
 * succeeded; 0 otherwise. */
int cdp_redis_is_up(const cdp_redis *r);
int cdp_redis_is_cluster(const cdp_redis *r);

/* Called on the loop thread whenever is_up changes. One listener. */
void cdp_redis_on_state(cdp_redis *r, void (*fn)(int up, void *ud), void *ud);

/* Hash slot of a key (CRC16 of its hash tag, mod 16384), as Redis computes. */
unsigned cdp_redis_key_slot(const char *key, size_t keylen);

/* Fails every pending command with "closing", closes connections and
 * timers, and frees the client once all its handles are closed; then calls
 * done (may be NULL). */
void cdp_redis_close(cdp_redis *r, void (*done)(void *ud), void *ud);

#endif
