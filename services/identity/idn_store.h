/* idn_store: the identity graph in Redis, reached asynchronously through
 * cdp_redis on the service's loop.
 *
 * Resolution reads the identifier keys (pipelined), follows merged_into
 * chains to the roots, runs the idn_rules planner over what it read, and
 * carries the plan out with single-slot commands and scripts only, so that it
 * is correct on Redis Cluster without cross-slot transactions: claims are
 * SET NX, a merge is a script in the loser's slot (merged_into set once,
 * pointing to an older id) followed by an idempotent script in the
 * survivor's slot. Any step that finds the graph changed under it restarts
 * the resolution, at most opts.max_rounds times. docs/identity.md explains
 * the layout and why concurrent resolutions converge. */
#ifndef IDN_STORE_H
#define IDN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cdp_redis.h"
#include "idn_keys.h"
#include "idn_rules.h"

#define IDN_DEFAULT_EVM_TTL_S (7 * 24 * 3600)
#define IDN_DEFAULT_MAX_ROUNDS 8

typedef enum {
    IDN_OK = 0,
    IDN_ENOTFOUND,    /* Lookup/GetIdentities: no such identifier or master */
    IDN_EUNAVAILABLE, /* Redis unreachable, timed out, or cluster down */
    IDN_EABORTED,     /* the graph kept changing for max_rounds rounds */
    IDN_EINTERNAL,    /* an unexpected Redis reply or allocation failure */
} idn_status;

typedef struct {
    int evm_ttl_s;  /* TTL of per-message merge records; 0: the default */
    int max_rounds; /* resolution restarts allowed; 0: the default */
} idn_store_opts;

typedef struct idn_store idn_store;

/* Creates a store over r and registers its scripts: call before
 * cdp_redis_start. rules must outlive the store. NULL on ENOMEM. */
idn_store *idn_store_new(cdp_redis *r, const idn_rules *rules, const idn_store_opts *opts);
/* Frees the store; no operation may be outstanding. */
void idn_store_free(idn_store *s);

/* ------------------------------------------------------------- resolve */

typedef struct {
    idn_status status;
    const char *error;      /* why, when status != IDN_OK */
    const char *master_id;  /* the root the event resolved to */
    int created;            /* 1 if this resolution created master_id */
    const idn_plan *plan;   /* keep[] and reason[] per input identifier */
    size_t n_merges;        /* merges caused by this message id (including */
    const idn_merge *merges;/* those recorded by an earlier attempt) */
} idn_resolve_result;

/* Called exactly once, on the loop; everything in *res is valid only during
 * the call. */
typedef void (*idn_resolve_cb)(const idn_resolve_result *res, void *ud);

/* Resolves n (1..IDN_MAX_IDENTIFIERS) normalized, distinct identifiers.
 * message_id may be NULL or "" (then no per-message record is kept). The
 * inputs are copied. cb may run before this returns only on allocation
 * failure. */
void idn_store_resolve(idn_store *s, const idn_ident *ids, size_t n, const char *message_id,
                       int64_t now_ms, idn_resolve_cb cb, void *ud);

/* ------------------------------------------------------------- queries */

typedef void (*idn_lookup_cb)(idn_status st, const char *error, const char *master_id, void *ud);

/* The root master id of a normalized identifier, or IDN_ENOTFOUND. */
void idn_store_lookup(idn_store *s, const char *type, const char *value, idn_lookup_cb cb,
                      void *ud);

typedef struct {
    idn_status status;
    const char *error;
    const char *master_id;     /* the root (survivor) */
    size_t n_idents;
    const idn_ident *idents;   /* its identifiers, in no particular order */
    size_t n_merges;
    const idn_merge *merges;   /* its merge history, oldest first */
} idn_identities_result;

typedef void (*idn_identities_cb)(const idn_identities_result *res, void *ud);

/* The identifiers and merges of master_id's root, or IDN_ENOTFOUND. */
void idn_store_get_identities(idn_store *s, const char *master_id, idn_identities_cb cb,
                              void *ud);

#endif
