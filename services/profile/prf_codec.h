/* prf_codec: what goes to and comes back from the profile's Lua scripts
 * (prf_lua.h): key names, argument vectors, and reply parsing. Pure: it
 * builds and reads hiredis structures but does no I/O, so the same code
 * serves the service (through cdp_redis) and the checks that run the
 * scripts against a real Redis with a synchronous client.
 *
 * Key layout of one profile (docs/profile.md); {p:<master>} is the hash tag:
 *   cdp:prf:{p:<m>}            hash: total, first_seen, last_seen, revenue,
 *                              merged_into (the tombstone), and by prefix
 *                              t:<trait> -> JSON value
 *                              n:<event name> -> count
 *                              c:<channel> -> "<ts>:<len(mid)>:<mid><event>"
 *                              i:<encoded identifier> -> "1"
 *                              f:<master id folded into this one> -> "1"
 *   cdp:prf:{p:<m>}:trait_ts   hash: trait -> "<ts>:<message_id>"
 *   cdp:prf:{p:<m>}:timeline   zset: member (prf_event.h, starts with the
 *                              event time) scored by event time
 *   cdp:prf:{p:<m>}:seen       zset: message_id scored by applied-at
 *   cdp:prf:{p:<m>}:daily      hash, per UTC day <d> = prf_day_of(ts) in
 *                              decimal (a contract with segmentation):
 *                              n:<d>:<count name> -> count
 *                              r:<d> -> revenue sum as HINCRBYFLOAT writes it
 *
 * Everything a view shows lives in the main hash and the timeline, so
 * GetProfile reads two structures (not the daily buckets): measured, the number of commands per
 * read is what bounds its rate (docs/profile.md). */
#ifndef PRF_CODEC_H
#define PRF_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include "prf_fold.h"

/* ------------------------------------------------------------------ keys */

enum {
    PRF_KEY_MAIN = 0,
    PRF_KEY_TRAIT_TS,
    PRF_KEY_TIMELINE,
    PRF_KEY_SEEN,
    PRF_KEY_DAILY,
    PRF_KEY_COUNT
};

typedef struct {
    char *v[PRF_KEY_COUNT];
    size_t len[PRF_KEY_COUNT];
} prf_keys;

/* Builds the keys of `master` (one allocation for all of them). Returns 0
 * or PRF_ENOMEM (nothing to free). */
int prf_keys_init(prf_keys *k, const char *master);
void prf_keys_free(prf_keys *k);

/* ------------------------------------------------------------- arguments */

/* A growable argument vector that owns its strings. The strings live in
 * a chain of blocks that never move (one allocation per block, not per
 * argument), so v[i] stays valid until prf_args_free. */
typedef struct prf_args_block prf_args_block;
typedef struct {
    char **v;
    size_t *len;
    size_t n, cap;
    prf_args_block *blocks;  /* newest first; the first one is filled next */
} prf_args;

void prf_args_init(prf_args *a);
void prf_args_free(prf_args *a);
/* Appends a copy of s (len bytes). Returns 0 or PRF_ENOMEM. */
int prf_args_addn(prf_args *a, const char *s, size_t len);
int prf_args_add(prf_args *a, const char *s);
int prf_args_add_i64(prf_args *a, int64_t v);
/* Bytes an int64 in decimal needs, with sign and NUL: "-9223372036854775808". */
enum { PRF_I64_BUF = 21 };
/* Writes v in decimal (as "%" PRId64 would) into buf, NUL-terminated, and
 * returns its length. No locale, no allocation. */
size_t prf_i64_format(int64_t v, char buf[PRF_I64_BUF]);
/* A double that round-trips ("%.17g"). */
int prf_args_add_double(prf_args *a, double v);

/* The apply script's header: now, cutoff, timeline length, event count,
 * daily retention and trim step (from o). */
int prf_args_apply_header(prf_args *a, const prf_fold_opts *o, size_t n_events);
/* One event of the apply script (with its day, prf_day_of). */
int prf_args_add_delta(prf_args *a, const prf_delta *d);
/* The fold script's arguments: loser, cutoff, timeline length, daily
 * retention and trim step (from o), snapshot. */
int prf_args_fold(prf_args *a, const char *loser, const prf_fold_opts *o,
                  const prf_profile *snapshot);
/* A profile in the snapshot layout the fold script reads. */
int prf_args_add_profile(prf_args *a, const prf_profile *p);

/* ----------------------------------------------------------------- reads
 * A profile is read one command per structure, in key order; pipelined,
 * that is one write and one round trip. The tombstone script returns the
 * same replies in the same order, so one loader serves both. */

enum { PRF_READ_ARGC_MAX = 5, PRF_READ_NUM_CHARS = 24 };

typedef struct {
    const char *argv[PRF_READ_ARGC_MAX];
    size_t len[PRF_READ_ARGC_MAX];
    int argc;
    char stop[PRF_READ_NUM_CHARS];
} prf_read_cmd;

/* The command that reads structure `key` (PRF_KEY_*): HGETALL for the
 * hashes (main, trait stamps, daily), ZREVRANGE 0 <tl_limit - 1> for the timeline (newest first, all
 * of it when tl_limit is 0; members carry their time, so no scores), ZRANGE
 * 0 -1 WITHSCORES for seen. argv borrows k's strings. */
void prf_read_cmd_init(prf_read_cmd *c, const prf_keys *k, int key, size_t tl_limit);

/* 1 for the structures a view needs: the main hash and the timeline. */
int prf_read_is_view_key(int key);

/* Loads the reply to structure `key`'s read command into p (which
 * prf_profile_init prepared). Stamps from trait_ts are matched to the
 * traits of the main hash loaded before; traits read without stamps have
 * ts PRF_TS_NONE. Returns 0, or -1 when the reply is malformed or memory
 * ran out. */
int prf_profile_load(prf_profile *p, int key, const redisReply *r);

/* --------------------------------------------------------------- replies */

typedef enum {
    PRF_REPLY_OK = 0,
    PRF_REPLY_REDIRECT = 1,   /* the profile is a tombstone */
    PRF_REPLY_ALREADY = 2,    /* fold: loser folded before */
} prf_reply_status;

/* Parses the tombstone script's reply: {"ok", survivor, one reply per key}.
 * Fills *out (initialized by the callee; the caller clears it), whose
 * merged_into is the survivor the loser names. Returns 0, or -1 with err
 * filled when the reply is not of that shape. */
int prf_reply_snapshot(const redisReply *r, prf_profile *out, char *err, size_t errlen);

/* Parses the reply of an apply of n_events events. On PRF_REPLY_OK sets
 * *applied and *duplicates. On PRF_REPLY_REDIRECT sets *into (malloc'd),
 * dup_flags[i] (n_events of them) to 1 for an event the tombstone had seen
 * and 0 for one to re-issue to the survivor, and *duplicates to the number
 * of 1s. */
int prf_reply_apply(const redisReply *r, size_t n_events, prf_reply_status *status,
                    long long *applied, long long *duplicates, unsigned char *dup_flags,
                    char **into, char *err, size_t errlen);

/* Parses a fold reply: status OK (folded), ALREADY or REDIRECT (*into). */
int prf_reply_fold(const redisReply *r, prf_reply_status *status, char **into, char *err,
                   size_t errlen);

#endif
