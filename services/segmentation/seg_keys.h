/* seg_keys: segmentation's Redis key names and the classification of a
 * Redis outcome into a gRPC status. Pure.
 *
 * Layout (docs/segmentation.md, "Redis key layout"):
 *   cdp:seg:{defs}                    hash  segment id -> definition JSON
 *   cdp:seg:{defs}:version            string, bumped by every definition write
 *   cdp:seg:{s:<id>}:members          zset  master id, score 0 (lex order)
 *   cdp:seg:{s:<id>}:idx              hash  master id -> "<n>:<entered_ms>"
 *   cdp:seg:{s:<id>}:bf               hash  backfill progress
 *   cdp:seg:{s:<id>}:bf:lease         string, the replica running the backfill
 *   cdp:seg:{p:<m>}:mem               hash  segment id -> "<in>:<entered>:<exited>:<n>",
 *                                           ":seen" -> evaluations
 *   cdp:seg:{p:<m>}:pending           hash  change id -> transition JSON
 *   cdp:seg:{known:<k>}               set   master ids (k = 0..15)
 *   cdp:seg:{sched}:due               zset  master id, score = due ms
 *   cdp:seg:{sched}:lease             zset  master id, score = lease expiry ms
 *   cdp:seg:{changes}:log             stream of transitions (the change stream)
 *   cdp:seg:{changes}:cids            zset  change id, score = its stream id's ms
 *                                           (the newest MAXLEN: XADD once per id)
 * and, read only, profile's cdp:prf:{p:<m>} and cdp:prf:{p:<m>}:daily. */
#ifndef SEG_KEYS_H
#define SEG_KEYS_H

#include "cdp_redis_status.h"
#include <stddef.h>
#include <grpc/status.h>
#include <hiredis/hiredis.h>

#define SEG_KEY_DEFS "cdp:seg:{defs}"
#define SEG_KEY_DEFS_VERSION "cdp:seg:{defs}:version"
#define SEG_KEY_SCHED_DUE "cdp:seg:{sched}:due"
#define SEG_KEY_SCHED_LEASE "cdp:seg:{sched}:lease"
#define SEG_KEY_CHANGES "cdp:seg:{changes}:log"
#define SEG_KEY_CHANGE_IDS "cdp:seg:{changes}:cids"
/* The field of a profile's mem hash that says segmentation has seen it. */
#define SEG_MEM_SEEN_FIELD ":seen"

enum {
    SEG_KNOWN_SHARDS = 16,
    SEG_ERR_MAX = 512,
    SEG_ID_MAX = 64,           /* segment ids */
    SEG_MASTER_MAX = 256,      /* master ids we accept */
};

/* Keys of one profile. */
enum { SEG_PKEY_MAIN = 0, SEG_PKEY_DAILY, SEG_PKEY_MEM, SEG_PKEY_PENDING, SEG_PKEY_COUNT };
/* Keys of one segment. */
enum { SEG_SKEY_MEMBERS = 0, SEG_SKEY_IDX, SEG_SKEY_BF, SEG_SKEY_LEASE, SEG_SKEY_COUNT };

/* A malloc'd key of profile `master` (SEG_PKEY_*) or segment `id`
 * (SEG_SKEY_*); NULL when out of memory. */
char *seg_pkey(const char *master, int which);
char *seg_skey(const char *id, int which);
/* The registry shard of a master id and its key. */
unsigned seg_known_shard(const char *master);
char *seg_known_key(unsigned shard);


#endif
