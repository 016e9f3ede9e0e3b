/* cdp_redis_util: the pure parts of the Redis client (common/cdp_redis.c).
 *
 * Address lists, cluster redirect replies and CLUSTER SLOTS maps, the
 * reconnect backoff, and the rewrite of a formatted EVALSHA into EVAL for
 * the NOSCRIPT fallback. No I/O and no loop, so the unit tests cover them
 * without a server. Internal to the client: services use cdp_redis.h. */
#ifndef CDP_REDIS_UTIL_H
#define CDP_REDIS_UTIL_H

#include <stddef.h>
#include <hiredis/hiredis.h>

/* Redis Cluster's fixed number of hash slots. */
#define CDP__REDIS_SLOTS 16384
/* Longest host name or address kept (DNS names are at most 253 bytes). */
#define CDP__REDIS_HOST_MAX 256
/* Length of a script's SHA1 in hex, as SCRIPT LOAD returns it. */
#define CDP__REDIS_SHA_LEN 40

typedef struct {
    char host[CDP__REDIS_HOST_MAX];
    int port;
} cdp__redis_addr;

/* Parses "host:port" (s is len bytes, not NUL-terminated). The port follows
 * the last ':', so "[::1]:6379" and "::1:6379" both give host "::1". The host
 * may be empty (cluster redirects use that for "the node that answered").
 * Returns 0, or -1 when the port is missing, not 1..65535, or the host is
 * too long. */
int cdp__redis_addr_parse(const char *s, size_t len, cdp__redis_addr *out);

/* Parses a comma-separated list of "host:port" (blanks around items are
 * ignored; empty hosts are rejected). On success *out is a malloc'd array
 * the caller frees and the count (>= 1) is returned; -1 when the list is
 * empty or malformed, or on allocation failure. */
int cdp__redis_addr_list_parse(const char *s, cdp__redis_addr **out);

typedef enum {
    CDP__REDIS_MOVED = 1,
    CDP__REDIS_ASK = 2,
} cdp__redis_redirect_kind;

typedef struct {
    cdp__redis_redirect_kind kind;
    unsigned slot;
    cdp__redis_addr addr; /* host may be empty: same host as the answering node */
} cdp__redis_redirect;

/* Parses the text of an error reply "MOVED 3999 127.0.0.1:6381" or
 * "ASK 3999 127.0.0.1:6381". Returns 0 when it is a well-formed redirect,
 * -1 for any other error text. */
int cdp__redis_redirect_parse(const char *s, size_t len, cdp__redis_redirect *out);

/* The reconnect delay that follows `cur_ms`: min_ms when cur_ms is 0 or
 * below min_ms, else twice cur_ms, never above max_ms (a max below min is
 * taken as min). */
int cdp__redis_backoff_next(int cur_ms, int min_ms, int max_ms);

/* Rewrites a RESP-formatted "EVALSHA <sha> <numkeys> ..." command (as
 * redisFormatCommandArgv builds it) into "EVAL <lua> <numkeys> ...", keeping
 * every other argument byte for byte. On success *out is malloc'd (free with
 * free) and 0 is returned; -1 if cmd is not such an EVALSHA or on allocation
 * failure. */
int cdp__redis_evalsha_to_eval(const char *cmd, size_t len, const char *lua, size_t lualen,
                               char **out, size_t *outlen);

typedef struct {
    unsigned first, last; /* inclusive slot range */
    cdp__redis_addr addr; /* its master; host "" when the node did not say */
} cdp__redis_slot_range;

/* Parses a CLUSTER SLOTS reply into the master of each slot range (replicas
 * are ignored). A host given as "?" or nil is returned as "". On success
 * *out is malloc'd (NULL when there are no ranges) and the number of ranges
 * is returned; -1 when the reply is malformed or on allocation failure. */
int cdp__redis_slots_parse(const redisReply *reply, cdp__redis_slot_range **out);

#endif
