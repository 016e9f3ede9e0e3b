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
 * the resolution, at most opts.max_rounds times. The common case (every
 * identifier a confirmed claim of one root, nothing new) is answered from
 * plain GETs and one HMGET, alone or for a whole batch (idn_store_probe).
 * docs/identity.md explains the layout, why concurrent resolutions converge
 * and why the common case may skip the rest. */
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
    int wrote;              /* 1 if it claimed, merged or added anything */
} idn_resolve_result;

/* Called exactly once, on the loop; everything in *res is valid only during
 * the call. */
typedef void (*idn_resolve_cb)(const idn_resolve_result *res, void *ud);

/* Resolves n (1..IDN_MAX_IDENTIFIERS) normalized, distinct identifiers.
 * message_id may be NULL or "" (then no per-message record is kept).
 * deliver (the pipeline's deliver_merges, effective only with a message id):
 * merges this resolution causes are delivered by its answer; merges pending
 * delivery at the root (made by requests without deliver) are moved into
 * this message's record and reported with its merges. Without deliver, the
 * merges it causes are also left pending at the survivor. The
 * inputs are copied. cb may run before this returns only on allocation
 * failure. The common case (every identifier a confirmed claim of one root,
 * no merge record for the message) costs one GET per identifier and one
 * HMGET; anything else takes the full path. */
void idn_store_resolve(idn_store *s, const idn_ident *ids, size_t n, const char *message_id,
                       int deliver, int64_t now_ms, idn_resolve_cb cb, void *ud);

/* ------------------------------------------------------ batch fast path */

typedef struct {
    const idn_ident *ids; /* normalized, distinct; n == 0: not probed */
    size_t n;
    const char *message_id; /* may be NULL or "" */
    int deliver;            /* see idn_store_resolve */
} idn_probe_req;

typedef struct idn_probe idn_probe;

/* fast[r] is the root master id request r resolves to in the common case
 * (see idn_store_resolve), or NULL when it needs the full path; fast itself
 * is NULL when no request is fast. probe (NULL when nothing was read) may
 * be passed to idn_store_resolve_probed during the call. Valid only during
 * the call. */
typedef void (*idn_probe_cb)(const char *const *fast, const idn_probe *probe, void *ud);

/* Reads, for n requests at once, what the common case needs: one GET per
 * distinct identifier key of all the requests (one loop turn), then one
 * HMGET per distinct master they lead to. Read-only. A Redis error makes
 * the requests it touched not fast (the full path reports it). cb is called
 * exactly once, possibly before this returns (allocation failure: nothing
 * fast). The requests must stay valid until cb. */
void idn_store_probe(idn_store *s, const idn_probe_req *reqs, size_t n, idn_probe_cb cb,
                     void *ud);

/* idn_store_resolve of the probe's request r (same identifiers), starting
 * from what the probe read instead of reading the keys again: for the first
 * request of a group that the probe could not answer. Reads that are a
 * moment old are safe: claims are SET NX and merges check the loser's
 * version, so a changed graph restarts the resolution. Falls back to
 * idn_store_resolve when the probe could not read one of the keys. Only
 * during the probe's callback. */
void idn_store_resolve_probed(idn_store *s, const idn_probe *probe, size_t r, int64_t now_ms,
                              idn_resolve_cb cb, void *ud);

/* ok: master_id is a root, holds no merge record of message_id and, for a
 * delivering request, no merge pending delivery. */
typedef void (*idn_check_cb)(idn_status st, const char *error, int ok, void *ud);

/* Checks, with one HMGET, that master_id is still a root and holds no merge
 * record of message_id (NULL or "": not checked) and, with deliver (and a
 * message id), no merge pending delivery: what a request sharing an earlier
 * identical request's answer must confirm. cb is called exactly once. */
void idn_store_check(idn_store *s, const char *master_id, const char *message_id, int deliver,
                     idn_check_cb cb, void *ud);

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
