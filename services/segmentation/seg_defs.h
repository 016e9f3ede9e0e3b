/* seg_defs: segment definitions. The stored form (one JSON object per
 * segment in the cdp:seg:{defs} hash: the rule as given, its parsed form
 * from seg_rule_to_json, canonical text, reads, version, times), and the
 * in-memory snapshot a replica evaluates against: every definition with its
 * loaded rule, plus an index from what a rule reads to the segments that
 * read it, so a profile touch evaluates only the segments it can affect.
 *
 * A snapshot is immutable and reference counted: evaluations in flight keep
 * the one they started with while a reload installs the next. Pure: no I/O. */
#ifndef SEG_DEFS_H
#define SEG_DEFS_H

#include <stddef.h>
#include <stdint.h>
#include "seg_rule.h"

enum {
    SEG_NAME_MAX = 200,
    SEG_DESCRIPTION_MAX = 2000,
};

typedef struct {
    char *id, *name, *description;
    char *rule;          /* as given */
    char *canonical;     /* seg_rule_to_text */
    char *parsed;        /* seg_rule_to_json */
    char **reads;        /* seg_dep_format of each dependency */
    size_t nreads;
    int time_based;
    int64_t version, created_ms, updated_ms;
    seg_rule *r;         /* loaded from `parsed`; NULL until seg_def_load_rule */
} seg_def;

void seg_def_clear(seg_def *d);

/* Parses rule text into d->rule/canonical/parsed/reads/time_based (and
 * d->r). Returns 0, or -1 with err filled (syntax error or out of memory). */
int seg_def_set_rule(seg_def *d, const char *text, seg_rule_error *err);

/* The stored JSON of d (malloc'd) or NULL when out of memory. */
char *seg_def_to_json(const seg_def *d);
/* Loads a stored definition into d (zeroed first), without loading the
 * rule. Returns 0 or -1 when malformed. */
int seg_def_from_json(seg_def *d, const char *json, size_t len);
/* Loads d->r from d->parsed (never re-parses the text). Returns 0 or -1. */
int seg_def_load_rule(seg_def *d);

/* 1 when id matches [A-Za-z0-9_.-]{1,64}. */
int seg_id_valid(const char *id);

/* What one batch changed about one profile (ProfileTouch without merges). */
typedef struct {
    char **events;
    size_t nevents;
    char **traits;
    size_t ntraits;
    char **channels;
    size_t nchannels;
    int revenue;
} seg_touch;

typedef struct seg_defs seg_defs;

/* A snapshot of n definitions (takes ownership of the array and of every
 * definition's contents; all rules must be loaded), sorted by id, indexed.
 * Returns NULL when out of memory (the definitions are then freed). The
 * snapshot starts with one reference. */
seg_defs *seg_defs_new(seg_def *defs, size_t n, int64_t version);
seg_defs *seg_defs_ref(seg_defs *s);
void seg_defs_unref(seg_defs *s);

size_t seg_defs_count(const seg_defs *s);
int64_t seg_defs_version(const seg_defs *s);
const seg_def *seg_defs_at(const seg_defs *s, size_t i);
/* The index of segment id, or -1. */
long seg_defs_find(const seg_defs *s, const char *id);

/* Marks in sel (seg_defs_count bytes, zeroed by the caller) the segments
 * whose rule reads something t touched: a trait, an event (count name) or
 * a channel it names, revenue when t->revenue, and total_events/first_seen/
 * last_seen when t has any event. Returns how many were marked. */
size_t seg_defs_select(const seg_defs *s, const seg_touch *t, unsigned char *sel);
/* Marks the time-based segments. Returns how many. */
size_t seg_defs_select_time_based(const seg_defs *s, unsigned char *sel);

#endif
