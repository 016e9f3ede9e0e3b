/* prf_store: the profile's Redis edge. Registers the Lua scripts (prf_lua.h)
 * with the shared client and runs one of them on one profile's keys; what
 * the arguments and replies mean is prf_codec.h's business.
 *
 * Each call is one EVALSHA routed by the profile's hash tag, so calls for
 * different profiles issued in one loop turn leave in one write per node. */
#ifndef PRF_STORE_H
#define PRF_STORE_H

#include "cdp_redis_status.h"
#include <grpc/status.h>
#include "cdp_redis.h"
#include "prf_codec.h"

typedef struct {
    cdp_redis *redis;
    cdp_redis_script *apply;
    cdp_redis_script *tombstone;
    cdp_redis_script *fold;
    cdp_redis_script *strip;
} prf_store;

/* Registers the scripts on r (before cdp_redis_start). Returns 0 or -1. */
int prf_store_init(prf_store *s, cdp_redis *r);

/* Runs `script` on the keys of `master` with `args` (NULL for none). cb is
 * called exactly once, as cdp_redis_cb says (synchronously only when the
 * keys cannot be allocated, with err "out of memory"). */
void prf_store_eval(prf_store *s, cdp_redis_script *script, const char *master,
                    const prf_args *args, cdp_redis_cb cb, void *ud);

/* Issues the read commands of the structures GetProfile needs
 * (prf_read_is_view_key), back to back so they leave in one write (one
 * round trip; all keys share a slot, so one node). The reply to structure
 * `key` comes to cb with ud[key]. Returns the number of commands issued
 * (each calls cb exactly once), or -1 when out of memory (none issued). */
int prf_store_read_view(prf_store *s, const char *master, size_t timeline_limit,
                        cdp_redis_cb cb, void *const ud[PRF_KEY_COUNT]);


#endif
