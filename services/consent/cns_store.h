/* cns_store: the consent service's Redis edge — key names, the Lua scripts
 * (cns_lua.h) and the classification of replies.
 *
 * Keys (docs/consent.md "Redis key layout"); one profile's share the tag
 * {p:<master>} with the profile service's main hash, so the change script
 * and the check's first read reach them together:
 *   cdp:cns:{p:<m>}            hash   j, jt, jm (jurisdiction and its stamp),
 *                                     e:<purpose>:<channel> -> entry JSON
 *   cdp:cns:{p:<m>}:audit      stream the profile's audit trail
 *   cdp:cns:{p:<m>}:seen       zset   applied event message ids, score = ms
 *   cdp:prf:{p:<m>}            hash   the profile's (read: identifiers,
 *                                     merged_into)
 *   cdp:cns:{suppression}      hash   "<type>:<value>" -> suppression JSON
 *   cdp:cns:{suppression}:index zset  the same keys (score 0), for paging
 *   cdp:cns:{suppression}:audit stream suppress/unsuppress records */
#ifndef CNS_STORE_H
#define CNS_STORE_H

#include <stddef.h>
#include <grpc/status.h>

#include "cdp_redis.h"

#define CNS_SUPP_KEY "cdp:cns:{suppression}"
#define CNS_SUPP_INDEX_KEY "cdp:cns:{suppression}:index"
#define CNS_SUPP_AUDIT_KEY "cdp:cns:{suppression}:audit"

/* The keys of one profile, in the change script's KEYS order. */
enum { CNS_KEY_CONSENT, CNS_KEY_AUDIT, CNS_KEY_PROFILE, CNS_KEY_SEEN, CNS_KEY_COUNT };

typedef struct {
    char *v[CNS_KEY_COUNT]; /* one allocation: v[0] owns it */
    size_t len[CNS_KEY_COUNT];
} cns_keys;

/* Builds the keys of master. Returns 0, or -1 when out of memory. */
int cns_keys_init(cns_keys *k, const char *master);
void cns_keys_free(cns_keys *k);

typedef struct {
    cdp_redis *redis;
    cdp_redis_script *change;
    cdp_redis_script *suppress;
    cdp_redis_script *list;
} cns_store;

/* Registers the scripts on r (before cdp_redis_start). Returns 0 or -1. */
int cns_store_init(cns_store *s, cdp_redis *r);

/* GRPC_STATUS_OK for a non-error reply; UNAVAILABLE ("redis unavailable:
 * ...") when Redis could not be reached or answered a transient error
 * (LOADING, BUSY, OOM, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, READONLY);
 * INTERNAL ("redis error: ...") otherwise. msg gets the message. */
grpc_status_code cns_store_status(const redisReply *reply, const char *err, char *msg,
                                  size_t msglen);

#endif
