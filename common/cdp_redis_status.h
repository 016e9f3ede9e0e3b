/* cdp_redis_status: what a Redis outcome means to a gRPC caller, said the
 * same way by every service.
 *
 *   no reply (timeout, disconnect, client down)   -> UNAVAILABLE "redis unavailable: <why>"
 *   a transient error reply (LOADING, BUSY, OOM,
 *     TRYAGAIN, CLUSTERDOWN, MASTERDOWN, READONLY,
 *     NOSCRIPT)                                  -> UNAVAILABLE "redis unavailable: <error>"
 *   any other error reply                        -> INTERNAL "redis error: <error>"
 *   anything else                                -> OK, msg ""
 *
 * UNAVAILABLE tells clients (and the pipeline) to retry later. */
#ifndef CDP_REDIS_STATUS_H
#define CDP_REDIS_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <grpc/status.h>
#include <hiredis/hiredis.h>
#include "cdp_rpc.h"

/* reply and err as a cdp_redis_cb received them; msg gets the text. */
grpc_status_code cdp_redis_status(const redisReply *reply, const char *err, char *msg,
                                  size_t msglen);

/* When the outcome is not OK, answers the call with its status and text
 * and returns 1; otherwise returns 0 and leaves the call alone. */
int cdp_rpc_fail_redis(cdp_rpc_call *c, const redisReply *reply, const char *err);

/* Parses s[0..len) as a whole base-10 int64 (as Redis writes integers in
 * hashes and replies). Returns 0, or -1 when empty, malformed or out of
 * range. */
int cdp_parse_i64(const char *s, size_t len, int64_t *out);

#endif
