/* seg_lua: segmentation's Lua scripts, one per multi-key change. Every
 * script touches keys of one hash tag only (one cluster slot). */
#ifndef SEG_LUA_H
#define SEG_LUA_H

#include "cdp_redis.h"

typedef struct {
    cdp_redis_script *apply;     /* membership transitions of one profile */
    cdp_redis_script *index;     /* one transition into a segment's member index */
    cdp_redis_script *change;    /* one transition onto the change stream, once per change id */
    cdp_redis_script *claim;     /* scheduler: claim due profiles under a lease */
    cdp_redis_script *def_put;   /* create (expected "") or compare-and-set a definition */
    cdp_redis_script *def_del;   /* delete a definition */
    cdp_redis_script *index_reset; /* a new incarnation: empty member index */
    cdp_redis_script *bf_reset;  /* start a backfill for a new version */
    cdp_redis_script *bf_step;   /* record backfill progress while holding the lease */
    cdp_redis_script *release;   /* delete a lease key if we still hold it */
    cdp_redis_script *state;     /* a profile's tombstone, pending count and memberships */
} seg_scripts;

/* Registers every script on r (before cdp_redis_start). Returns 0 or -1. */
int seg_scripts_init(seg_scripts *s, cdp_redis *r);

#endif
