/* idn_keys: the identity graph's Redis key layout, master ids and merge
 * records, as pure functions (docs/identity.md documents the layout).
 *
 * Every key carries a hash tag so that it lives in a known slot of a Redis
 * Cluster: one identifier per slot ({i:<type>:<value>}), and everything of one
 * master in its own slot ({m:<id>}), so that each script touches one slot. */
#ifndef IDN_KEYS_H
#define IDN_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* "m" + 12 hex digits of ms since the epoch + 10 random hex digits: string
 * order is creation order (to the millisecond). */
#define IDN_MASTER_ID_LEN 23
#define IDN_MASTER_ID_BUFSZ (IDN_MASTER_ID_LEN + 1)
#define IDN_MASTER_RANDOM_BYTES 5

/* Fields of the master hash. */
#define IDN_F_CREATED "created_ms"
#define IDN_F_MERGED_INTO "merged_into"
/* "e:<message id>": this master holds merge records of that message. */
#define IDN_F_EVM_PREFIX "e:"
/* Set while the master holds merges no pipeline event has carried yet (the
 * list idn_key_master_pm); the fast path reads it in its HMGET. */
#define IDN_F_PENDING_MERGES "pm"

/* An identifier key holds a master id, followed by IDN_PENDING_MARK while
 * the claim is not yet confirmed in that master's set: a plain id promises
 * that the identifier is in the master's set (or was, when the master was
 * merged, and so is in its survivor's). */
#define IDN_PENDING_MARK '~'
#define IDN_IDENT_VALUE_BUFSZ (IDN_MASTER_ID_LEN + 2)

/* Writes a master id for time `ms` and IDN_MASTER_RANDOM_BYTES random bytes
 * into out (IDN_MASTER_ID_BUFSZ bytes). */
void idn_master_id_format(int64_t ms, const unsigned char *rnd, char *out);

/* Mints a new master id from the wall clock and getrandom(2). Returns 0, or
 * -1 if no randomness was available. */
int idn_master_id_new(int64_t now_ms, char *out);

/* 1 if s has the shape of a master id, else 0. */
int idn_master_id_valid(const char *s);

/* Parses the value of an identifier key (len bytes): writes the master id
 * into id (IDN_MASTER_ID_BUFSZ bytes) and whether it is pending into
 * *pending. Returns 0, or -1 if v is not a master id, pending or not. */
int idn_ident_value_parse(const char *v, size_t len, char *id, int *pending);

/* Writes the value of a claim not yet confirmed, id + IDN_PENDING_MARK, into
 * out (IDN_IDENT_VALUE_BUFSZ bytes). */
void idn_ident_value_pending(const char *id, char *out);

/* Key builders: each returns a malloc'd NUL-terminated key (the caller
 * frees), or NULL on allocation failure. */
char *idn_key_ident(const char *type, const char *value);    /* -> master id */
char *idn_key_ident_of_member(const char *member);           /* same, from "type:value" */
char *idn_key_master(const char *id);                        /* hash */
char *idn_key_master_ids(const char *id);                    /* set of members */
char *idn_key_master_merges(const char *id);                 /* list of records */
char *idn_key_master_evm(const char *id, const char *message_id); /* per message */
char *idn_key_master_pm(const char *id);    /* merges pending delivery */
char *idn_field_evm(const char *message_id); /* "e:<message id>" hash field */

/* A set member is "<type>:<value>"; types never contain ':', so the first
 * ':' splits it. idn_member returns a malloc'd member (NULL on ENOMEM);
 * idn_member_split returns the length of the type part, or -1 if m has no
 * ':' or an empty type. */
char *idn_member(const char *type, const char *value);
long idn_member_split(const char *m, size_t len);

/* One merge: `loser` was merged into `survivor`. Strings are owned by the
 * struct's user (see idn_merge_decode). */
typedef struct {
    char survivor[IDN_MASTER_ID_BUFSZ];
    char loser[IDN_MASTER_ID_BUFSZ];
    int64_t merged_at_ms;
    char *message_id; /* malloc'd, "" when none */
} idn_merge;

/* The JSON record stored in merge lists: a malloc'd string, or NULL. */
char *idn_merge_encode(const char *survivor, const char *loser, int64_t merged_at_ms,
                       const char *message_id);

/* Parses a record into *m (m->message_id malloc'd; free with
 * idn_merge_clear). Returns 0 or -1 if the record is malformed. */
int idn_merge_decode(const char *json, size_t len, idn_merge *m);
void idn_merge_clear(idn_merge *m);

#endif
