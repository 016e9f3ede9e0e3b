/* cns_merge: the pure rules of folding a merged-away profile's consent into
 * its survivor (docs/consent.md "Merges"). Pure: no Redis, no RPC.
 *
 * The fold is a join: every entry field and the jurisdiction keep the
 * greatest of the two sides by the fold order (cns_merge_wins). That order
 * is last write wins by stamp, exactly as for SetConsent and events, made
 * total by a last tie-break on the stored text, so that
 *   - re-running a fold changes nothing (an equal value never wins),
 *   - folds in any order, and chains (A into B, B into C), end equal,
 *   - a newer survivor entry is never overwritten.
 * The fold script (cns_lua.h "fold") applies the same order in Lua. */
#ifndef CNS_MERGE_H
#define CNS_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "cns_entry.h"

/* One entry of the loser's consent hash, as stored. */
typedef struct {
    cns_entry e;   /* parsed (purpose, channel, stamp) */
    char *json;    /* the stored text, byte for byte (owned) */
} cns_merge_entry;

/* The loser's consent hash, parsed. */
typedef struct {
    char jurisdiction[CNS_NAME_BUFSZ];  /* "" when none was ever set */
    int64_t jurisdiction_ms;            /* its stamp */
    char jurisdiction_mid[CNS_MID_MAX + 1];
    cns_merge_entry *entries;
    size_t n;
    size_t skipped;                     /* malformed fields left out */
} cns_merge_state;

/* The fold order: 1 when a value stamped (ts, mid) with stored text `text`
 * replaces one stamped (old_ts, old_mid) with text `old_text`: a later
 * time; the same time and a greater message id; the same stamp and a
 * greater text (byte order). Equal values never win. Unlike
 * cns_stamp_wins there is no "later call wins" for two RPC writes with the
 * same time: a fold has no call order, so the text decides. */
int cns_merge_wins(int64_t ts, const char *mid, const char *text, int64_t old_ts,
                   const char *old_mid, const char *old_text);

/* Parses the field/value pairs of a consent hash (HGETALL order: names[i],
 * vals[i]; n pairs; not NUL-terminated). Takes "j", "jt", "jm" and every
 * "e:<purpose>:<channel>" whose value is an entry of that purpose and
 * channel; a malformed entry or jurisdiction stamp is left out and counted
 * in skipped, other fields are ignored. Returns 0, or -1 when out of
 * memory (st then holds nothing to free). */
int cns_merge_parse(cns_merge_state *st, size_t n, const char *const *names, const size_t *nlen,
                    const char *const *vals, const size_t *vlen);

void cns_merge_state_free(cns_merge_state *st);

#endif
