/* seg_load: decoding what segmentation reads from Redis. Pure.
 *
 *  - a profile's main hash and daily hash (docs/profile.md) into a
 *    seg_profile;
 *  - a membership state "<in>:<entered_ms>:<exited_ms>:<n>:<created_ms>"
 *    (the mem hash; created_ms names the incarnation of the segment id);
 *  - a pending transition (the apply script's JSON). */
#ifndef SEG_LOAD_H
#define SEG_LOAD_H

#include "cdp_redis_status.h"
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include "seg_rule.h"

/* Loads an HGETALL reply of cdp:prf:{p:<m>} into p (reset by the caller).
 * *merged_into gets a malloc'd copy of the tombstone's survivor (or NULL);
 * *exists is 1 when the hash has fields. Malformed numbers are skipped.
 * Returns 0, or -1 when the reply is not a flat array or memory ran out. */
int seg_profile_load_main(seg_profile *p, const redisReply *r, char **merged_into, int *exists);
/* Loads an HGETALL reply of cdp:prf:{p:<m>}:daily (n:<day>:<name> counts,
 * r:<day> revenue). Returns 0 or -1 when not a flat array. */
int seg_profile_load_daily(seg_profile *p, const redisReply *r);

typedef struct {
    int in;
    int64_t entered_ms, exited_ms, n, created_ms;
} seg_mem_state;

/* Parses one mem hash value. Returns 0 or -1 when malformed. */
int seg_mem_parse(const char *s, size_t len, seg_mem_state *out);

/* One transition as recorded in a profile's pending hash. */
typedef struct {
    char *cid, *seg, *m, *kind, *ev, *mid;
    int64_t n, at_ms;
    int64_t created_ms;      /* the segment's incarnation; 0 when not recorded */
} seg_change;

/* Parses a pending entry (cid field, JSON value). Returns 0 or -1. */
int seg_change_parse(const char *cid, size_t cidlen, const char *json, size_t len,
                     seg_change *out);
void seg_change_clear(seg_change *c);


#endif

/* A backfill's progress (the cdp:seg:{s:<id>}:bf hash). */
typedef struct {
    int present;
    int64_t version, scanned, total, matched, started_ms, finished_ms, shard;
    char state[16];
    char cursor[32];
    char error[256];
} seg_bf_status;

/* Loads an HGETALL reply of the bf hash. Returns 0 or -1 when not a flat
 * array. An empty hash gives present = 0. */
int seg_bf_status_load(seg_bf_status *b, const redisReply *r);
