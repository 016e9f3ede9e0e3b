/* prf_fold: the profile's domain rules as pure functions over plain structs.
 *
 * A profile is a fold of the events applied to it. This module states every
 * rule of that fold once, in C, without Redis or the network:
 *
 *   - traits: last write wins by event time; each trait keeps the stamp
 *     (event time, message id) that set it, and a write wins only when its
 *     stamp is greater (time first, then message id compared byte by byte),
 *     so replays in any order converge;
 *   - counts per event name and the total are summed;
 *   - first seen is the least event time, last seen the greatest;
 *   - the last interaction per channel is the one with the greatest stamp;
 *   - revenue is summed;
 *   - the timeline keeps the `timeline_len` entries with the greatest
 *     (event time, member) pairs;
 *   - identifiers, seen message ids (the idempotency record, keyed by
 *     message id with the time it was applied) and folded master ids are
 *     unioned (seen keeps the later applied-at);
 *   - daily buckets: per UTC day (prf_day_of) the count of events per count
 *     name and the revenue sum, summed like the totals; with a retention of
 *     R days the profile holds exactly the buckets of the days from
 *     prf_daily_cut(newest day, R) on, where the newest day is the day of
 *     last seen (older buckets are dropped and older events add none).
 *
 * Applying one event is merging a one-event profile into the profile after
 * a dedup check; folding a merged-away (loser) profile is merging its
 * snapshot once, guarded by the survivor's `folded` set. prf_store.c's Lua
 * mirrors exactly these rules against Redis; tests/unit/test_profile_fold.c
 * checks both.
 *
 * Ownership: a prf_profile owns every string in it (malloc'd copies);
 * prf_delta only borrows. Functions returning int give 0 on success and
 * PRF_ENOMEM when an allocation failed (the profile is then still valid but
 * the change may be partial). */
#ifndef PRF_FOLD_H
#define PRF_FOLD_H

#include <stddef.h>
#include <stdint.h>

/* An event time no event can have: "first/last seen not set". */
#define PRF_TS_NONE INT64_MIN

/* A daily bucket is one UTC day: floor(event time / PRF_MS_PER_DAY). */
#define PRF_MS_PER_DAY INT64_C(86400000)
/* "No day is dropped" (retention disabled, or no event yet). */
#define PRF_DAY_NONE INT64_MIN
/* Retention trims in steps of this many days (prf_daily_cut): the cut moves
 * at most once per step, so the scripts scan the daily hash at most once per
 * step of the newest day, at the price of keeping up to step - 1 days more
 * than the retention. */
enum { PRF_DAILY_TRIM_STEP_DAYS = 16 };

enum { PRF_OK = 0, PRF_ENOMEM = -1 };

/* -------------------------------------------------------------- the model */

typedef struct {
    char *key;
    char *json;          /* the value as compact JSON text */
    int64_t ts;          /* event time (ms since the epoch) that set it */
    char *message_id;    /* message that set it: the tie-break */
} prf_trait;

typedef struct {
    char *name;
    int64_t n;
} prf_count;

typedef struct {
    char *channel;
    int64_t ts;
    char *message_id;
    char *event;         /* the count name of the last interaction */
} prf_channel;

typedef struct {
    char *member;        /* encoded entry (prf_event.h), unique per message */
    int64_t ts;          /* event time: the order */
} prf_tl_entry;

typedef struct {
    char *message_id;
    int64_t applied_at;  /* ms since the epoch, wall clock of the apply */
} prf_seen;

/* Events with one count name on one day. */
typedef struct {
    int64_t day;         /* prf_day_of(event time) */
    char *name;          /* the count name (as in prf_count) */
    int64_t n;
} prf_day_count;

/* Revenue of one day: present once an event of that day carried revenue
 * (even when the sum is 0). */
typedef struct {
    int64_t day;
    double revenue;
} prf_day_revenue;

typedef struct {
    int64_t total;
    int64_t first_seen;  /* PRF_TS_NONE when no event */
    int64_t last_seen;
    double revenue;
    char *merged_into;   /* tombstone: non-NULL once folded into another */

    prf_trait *traits;       size_t n_traits, cap_traits;
    prf_count *counts;       size_t n_counts, cap_counts;
    prf_channel *channels;   size_t n_channels, cap_channels;
    prf_tl_entry *timeline;  size_t n_timeline, cap_timeline;
    char **ids;              size_t n_ids, cap_ids;
    prf_seen *seen;          size_t n_seen, cap_seen;
    char **folded;           size_t n_folded, cap_folded;
    prf_day_count *day_counts;      size_t n_day_counts, cap_day_counts;
    prf_day_revenue *day_revenue;   size_t n_day_revenue, cap_day_revenue;
} prf_profile;

/* One trait assignment carried by an event; borrowed strings. */
typedef struct {
    const char *key;
    const char *json;
} prf_trait_set;

/* One event reduced to what the fold needs (prf_event.h builds it from the
 * protobuf). Every pointer is borrowed; every string is non-NULL. */
typedef struct {
    const char *message_id;
    int64_t ts;                  /* event time, ms since the epoch */
    const char *count_name;      /* counts key: track name or type name */
    const char *channel;         /* "" when the event has no channel */
    const char *tl_member;       /* timeline member */
    int has_revenue;
    double revenue;
    const prf_trait_set *traits;
    size_t n_traits;
    const char *const *ids;      /* encoded identifiers (prf_event.h) */
    size_t n_ids;
} prf_delta;

/* What the fold needs to know besides the data. */
typedef struct {
    size_t timeline_len;         /* entries kept; >= 1 */
    int64_t now_ms;              /* applied-at for the seen record */
    int64_t seen_cutoff_ms;      /* seen entries applied before this expire */
    int64_t daily_retention_days; /* daily buckets kept; 0 keeps every day */
} prf_fold_opts;

typedef enum {
    PRF_APPLIED = 0,
    PRF_DUPLICATE = 1,           /* message id already in the seen record */
    PRF_REDIRECT = 2,            /* profile is a tombstone: see merged_into */
} prf_apply_result;

typedef enum {
    PRF_FOLD_DONE = 0,           /* snapshot merged, loser added to folded */
    PRF_FOLD_ALREADY = 1,        /* loser already folded: nothing changed */
    PRF_FOLD_REDIRECT = 2,       /* survivor is itself a tombstone */
} prf_fold_result;

/* ------------------------------------------------------------- lifecycle */

void prf_profile_init(prf_profile *p);
/* Frees everything p owns and leaves it initialized (empty). */
void prf_profile_clear(prf_profile *p);

/* ------------------------------------------------------------- the rules */

/* Orders two stamps: time first, then message id byte by byte (as memcmp on
 * unsigned bytes, so it does not depend on a locale). <0, 0, >0. */
int prf_stamp_cmp(int64_t ts_a, const char *mid_a, int64_t ts_b, const char *mid_b);

/* Orders timeline entries as a Redis sorted set does: score, then member
 * bytes. */
int prf_tl_cmp(const prf_tl_entry *a, const prf_tl_entry *b);

/* 1 when `s` is a plain decimal number (optional sign, digits with an
 * optional fraction, optional exponent: "12.50", "-3", ".5", "1e2"; not "",
 * " 1", "0x10", "inf", "nan", "1,5") whose value is finite, with that value
 * in *out; 0 otherwise. Revenue sent as a string goes through this. */
int prf_revenue_parse_string(const char *s, double *out);

/* The UTC day of an event time: floor(ts_ms / PRF_MS_PER_DAY), also for
 * times before 1970 (day -1 is 1969-12-31). */
int64_t prf_day_of(int64_t ts_ms);

/* The first day a profile whose newest event falls on `newest_day` keeps,
 * with a retention of `retention_days` (> 0):
 *     floor(newest_day / STEP) * STEP - retention_days + 1
 * (STEP = PRF_DAILY_TRIM_STEP_DAYS), so at least the retention_days days up
 * to the newest are kept and at most STEP - 1 more. PRF_DAY_NONE when
 * retention_days is 0 or newest_day is PRF_DAY_NONE. The Lua mirrors this
 * with the same step, which it gets as an argument. */
int64_t prf_daily_cut(int64_t newest_day, int64_t retention_days);

/* ------------------------------------------------------------ lookups */

const prf_trait *prf_profile_trait(const prf_profile *p, const char *key);
int64_t prf_profile_count(const prf_profile *p, const char *name);
const prf_channel *prf_profile_channel(const prf_profile *p, const char *channel);
int prf_profile_has_id(const prf_profile *p, const char *id);
int prf_profile_has_folded(const prf_profile *p, const char *master_id);
/* The seen entry for a message id, or NULL. */
const prf_seen *prf_profile_seen(const prf_profile *p, const char *message_id);
/* The count of `name` on `day` (0 when there is no bucket). */
int64_t prf_profile_day_count(const prf_profile *p, int64_t day, const char *name);
/* The revenue bucket of `day`, or NULL. */
const prf_day_revenue *prf_profile_day_revenue(const prf_profile *p, int64_t day);

/* ------------------------------------------------------------- setters
 * Each applies its field's merge rule (so they serve both parsing a stored
 * profile and folding). */

/* Sets a trait if (ts, mid) beats the stamp it has. *changed (may be NULL)
 * says whether it did. */
int prf_profile_put_trait(prf_profile *p, const char *key, const char *json,
                          int64_t ts, const char *mid, int *changed);
int prf_profile_add_count(prf_profile *p, const char *name, int64_t n);
int prf_profile_put_channel(prf_profile *p, const char *channel, int64_t ts,
                            const char *mid, const char *event);
/* Adds a timeline entry (a member already present keeps its place). */
int prf_profile_add_timeline(prf_profile *p, const char *member, int64_t ts);
int prf_profile_add_id(prf_profile *p, const char *id);
/* Adds or raises a seen entry (keeps the later applied_at). */
int prf_profile_add_seen(prf_profile *p, const char *message_id, int64_t applied_at);
int prf_profile_add_folded(prf_profile *p, const char *master_id);
/* Adds to the daily buckets (creating them at 0 first). */
int prf_profile_add_day_count(prf_profile *p, int64_t day, const char *name, int64_t n);
int prf_profile_add_day_revenue(prf_profile *p, int64_t day, double revenue);
/* Widens first/last seen to include ts. */
void prf_profile_see(prf_profile *p, int64_t ts);
int prf_profile_set_merged_into(prf_profile *p, const char *survivor);

/* ------------------------------------------------------------- loading
 * Appends without looking for an existing entry: for loading stored data
 * whose keys are unique already (a Redis hash, set or sorted set), where
 * the lookups of the setters above would make loading quadratic. */
int prf_profile_push_trait(prf_profile *p, const char *key, const char *json, int64_t ts,
                           const char *mid);
int prf_profile_push_count(prf_profile *p, const char *name, int64_t n);
int prf_profile_push_channel(prf_profile *p, const char *channel, int64_t ts, const char *mid,
                             const char *event);
int prf_profile_push_timeline(prf_profile *p, const char *member, int64_t ts);
int prf_profile_push_id(prf_profile *p, const char *id);
int prf_profile_push_seen(prf_profile *p, const char *message_id, int64_t applied_at);
int prf_profile_push_folded(prf_profile *p, const char *master_id);
int prf_profile_push_day_count(prf_profile *p, int64_t day, const char *name, int64_t n);
int prf_profile_push_day_revenue(prf_profile *p, int64_t day, double revenue);

/* Sorts the timeline by prf_tl_cmp and drops all but the `len` greatest. */
void prf_profile_trim_timeline(prf_profile *p, size_t len);
/* Drops seen entries applied before cutoff_ms. */
void prf_profile_trim_seen(prf_profile *p, int64_t cutoff_ms);
/* Drops the daily buckets of days before `first_day` (PRF_DAY_NONE: none). */
void prf_profile_trim_daily(prf_profile *p, int64_t first_day);

/* --------------------------------------------------------- fold and apply */

/* Merges src into dst by the rules above (dst's merged_into is untouched),
 * then trims dst's timeline to timeline_len. Daily buckets: dst keeps, and
 * takes from src, only the days from prf_daily_cut(day of the merged last
 * seen, retention_days) on (every day when retention_days is 0). */
int prf_profile_merge(prf_profile *dst, const prf_profile *src, size_t timeline_len,
                      int64_t retention_days);

/* Builds the one-event profile of d (seen = {d's message id: now}, one
 * daily count, and a daily revenue when d has revenue). */
int prf_delta_to_profile(const prf_delta *d, int64_t now_ms, prf_profile *out);

/* Applies one event: PRF_DUPLICATE if its message id is in p's seen record
 * (entries applied before opts->seen_cutoff_ms do not count); otherwise
 * PRF_REDIRECT if p is a tombstone (nothing changes: the event belongs to
 * the survivor); otherwise merges it and returns PRF_APPLIED. A live
 * profile drops its expired seen entries first; a tombstone changes
 * nothing, since its data is frozen until it is folded (so the events it
 * has seen, and will hand over in the fold, are duplicates, and the rest go
 * on to the survivor: that is what keeps a replay between merge steps 1
 * and 2 from being counted twice). Returns PRF_ENOMEM on allocation
 * failure. */
int prf_profile_apply(prf_profile *p, const prf_delta *d, const prf_fold_opts *opts);

/* Step 1 of a merge, on the loser: marks it merged into `survivor` unless it
 * already names a survivor. Returns the survivor it names afterwards
 * (borrowed from p), NULL on allocation failure. */
const char *prf_profile_tombstone(prf_profile *p, const char *survivor);

/* Step 2 of a merge, on the survivor: unless it is a tombstone
 * (PRF_FOLD_REDIRECT) or already folded `loser_id` (PRF_FOLD_ALREADY),
 * merges `snapshot` (the loser's data), adds the loser and the loser's own
 * folded ids to the folded set, trims seen and timeline, and returns
 * PRF_FOLD_DONE. Returns PRF_ENOMEM on allocation failure. */
int prf_profile_fold(prf_profile *survivor, const char *loser_id, const prf_profile *snapshot,
                     const prf_fold_opts *opts);

/* Step 3 of a merge, on the loser: drops all data but the tombstone. */
void prf_profile_strip(prf_profile *p);

#endif
