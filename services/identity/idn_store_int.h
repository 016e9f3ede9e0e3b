/* idn_store_int: internals shared by idn_store.c (queries, scripts) and
 * idn_resolve.c (the resolution state machine). Not part of the API. */
#ifndef IDN_STORE_INT_H
#define IDN_STORE_INT_H

#include <stddef.h>

#include "idn_store.h"

/* Longest merged_into chain followed before the graph is called corrupt;
 * chains only grow through crashes between a merge and its re-pointing. */
#define IDN_MAX_CHAIN 64
/* Most masters one resolution round may visit. */
#define IDN_MAX_NODES 256
#define IDN_ERR_LEN 256
/* Most keys one of our scripts takes. */
#define IDN_MAX_SCRIPT_KEYS 8

struct idn_store {
    cdp_redis *redis;
    const idn_rules *rules;
    int evm_ttl_s;
    int max_rounds;
    size_t n_limited;                /* member prefixes of limited types */
    char limited[IDN_MAX_RULE_TYPES][CDP_IDENT_MAX_TYPE + 2];
    cdp_redis_script *s_read;    /* state of one master */
    cdp_redis_script *s_loser;   /* mark a master merged (loser's slot) */
    cdp_redis_script *s_absorb;  /* take a loser's ids (survivor's slot) */
    cdp_redis_script *s_add;     /* add ids to a master unless merged */
    cdp_redis_script *s_repoint; /* compare-and-set an identifier key */
    cdp_redis_script *s_get;     /* identities and merges of a master */
    cdp_redis_script *s_deliver; /* hand pending merges to one message */
};

/* Classifies a command outcome. Returns 1 if (reply, err) is a usable
 * reply; otherwise 0 with *st and msg (msglen bytes) saying why:
 * IDN_EUNAVAILABLE for transport errors and cluster-down replies,
 * IDN_EINTERNAL for other error replies. */
int idn__reply_ok(const redisReply *reply, const char *err, idn_status *st, char *msg,
                  size_t msglen);

/* The string of a bulk/status reply, NULL for nil or any other type. */
const char *idn__reply_str(const redisReply *r);

/* Element i of an array reply, or NULL if r is not an array that long. */
const redisReply *idn__reply_at(const redisReply *r, size_t i);

/* A growable array of malloc'd strings. */
typedef struct {
    char **v;
    size_t n, cap;
} idn_strv;

int idn__strv_push(idn_strv *sv, const char *s, size_t len);
void idn__strv_clear(idn_strv *sv);
/* Copies the string elements of an array reply. Returns 0 or -1. */
int idn__strv_from_reply(idn_strv *sv, const redisReply *arr);

/* Splits members ("type:value") into idents pointing into the members'
 * storage: each member's ':' is replaced by NUL. Malformed members are
 * skipped. Returns a malloc'd array (*n set), or NULL on ENOMEM (when n>0). */
idn_ident *idn__members_split(idn_strv *members, size_t *n);

/* The fast path's check of a master: HMGET <hash> merged_into pm e:<msg>...
 * for the k message ids msgs (each non-empty). cb is always called exactly
 * once (with err "out of memory" before this returns on allocation failure,
 * then -1 is returned). */
int idn__verify_issue(idn_store *s, const char *master, const char *const *msgs, size_t k,
                      cdp_redis_cb cb, void *ud);
/* On a usable reply to idn__verify_issue: whether the master is a root (no
 * merged_into); whether it holds merges pending delivery; and whether
 * message i's flag is set (or the reply is too short: then the caller takes
 * the full path). */
int idn__verify_root(const redisReply *reply);
int idn__verify_pending(const redisReply *reply);
int idn__verify_flag(const redisReply *reply, size_t i);
/* Whether a request with a message id and deliver set, whose master's
 * verify reply is `reply`, must take the full path to take pending merges. */
int idn__verify_must_deliver(const redisReply *reply, const char *message_id, int deliver);

/* Counts n resolutions by path: "fast", "shared" or "full". */
void idn__count_path(const char *path, double n);

/* What the probe read for identifier i of request r: writes the master id
 * ("" for none) into owner and *pending. Returns 0, or -1 when the key could
 * not be read. */
int idn__probe_owner(const idn_probe *probe, size_t r, size_t i, char *owner, int *pending);
/* The probe's request r. */
const idn_probe_req *idn__probe_req(const idn_probe *probe, size_t r);

/* cdp_redis_eval for NUL-terminated keys (at most IDN_MAX_SCRIPT_KEYS, all
 * in one slot) and
 * args. Same contract: cb is always called exactly once; on allocation
 * failure it is called before this returns, with err "out of memory". */
int idn__eval(idn_store *s, cdp_redis_script *sc, cdp_redis_cb cb, void *ud, int numkeys,
              const char **keys, int nargs, const char **args);

#endif
