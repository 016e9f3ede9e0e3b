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

#include "cdp_redis_status.h"
#include <stddef.h>
#include <stdint.h>
#include <grpc/status.h>

#include "cdp_ident.h"
#include "cdp_redis.h"
#include "cns_entry.h"

/* The profile hash field of a merged-away profile: its survivor's id. */
#define CNS_MERGED_FIELD "merged_into"
/* A suppression list field "<type>:<normalized value>" and its NUL. */
#define CNS_SUPP_FIELD_BUFSZ (CDP_IDENT_MAX_TYPE + CDP_IDENT_VALUE_BUFSZ + 2)

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
    cdp_redis_script *fold;
    cdp_redis_script *suppress;
    cdp_redis_script *list;
} cns_store;

/* Registers the scripts on r (before cdp_redis_start). Returns 0 or -1. */
int cns_store_init(cns_store *s, cdp_redis *r);

/* Most fields (names and values) of one audit record. */
#define CNS_AUDIT_FIELDS_MAX 16

/* Appends a record to master's audit stream: "at" (at_ms) then nfields
 * strings, name and value in turn. Same contract as cdp_redis_command.
 * Returns 0, or -1 when out of memory or past CNS_AUDIT_FIELDS_MAX (cb not
 * called). */
int cns_audit_add(cns_store *s, const char *master, int64_t at_ms, const char *const *fields,
                  size_t nfields, cdp_redis_cb cb, void *ud);

/* ------------------------------------------------------------------ script calls */

/* Room of one formatted argument: a number or an entry field name. */
#define CNS_ARG_BUFSZ CNS_FIELD_BUFSZ

/* The arguments of one script call on a profile's keys, built in place.
 * cns_args_push adds a string the caller keeps alive until cns_args_eval;
 * cns_args_buf adds one of the call's own buffers (CNS_ARG_BUFSZ bytes) and
 * returns it for the caller to write (a number, a field name). */
typedef struct {
    cns_keys keys;
    const char **v;
    size_t n, cap;
    char (*bufs)[CNS_ARG_BUFSZ];
    size_t n_bufs, cap_bufs;
} cns_args;

/* Reserves room for nargs arguments, nbufs of them own buffers, on the
 * keys of master. Returns 0, or -1 when out of memory (nothing to free). */
int cns_args_init(cns_args *a, const char *master, size_t nargs, size_t nbufs);
void cns_args_push(cns_args *a, const char *s);
char *cns_args_buf(cns_args *a);
void cns_args_free(cns_args *a);

/* Runs script with the profile's keys (cns_keys order) and the arguments
 * pushed, then frees a (the command keeps its own copy). Same contract as
 * cdp_redis_eval. Returns 0, or -1 when out of memory (cb not called). */
int cns_args_eval(cns_args *a, cns_store *s, cdp_redis_script *script, cdp_redis_cb cb, void *ud);

/* 1 when r is the string s. */
int cns_reply_is(const redisReply *r, const char *s);

/* Follows a {"redirect", survivor} reply: *into gets a copy of the
 * survivor's id (freed by the caller) and *hops is counted. Returns 0, or
 * -1 with msg set when out of memory or past CNS_MAX_REDIRECTS hops
 * (cns_service.h; a cycle of tombstones). */
int cns_redirect(const redisReply *survivor, int *hops, char **into, char *msg, size_t msglen);


#endif
