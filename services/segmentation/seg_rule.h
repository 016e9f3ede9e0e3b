/* seg_rule: the segment rule language (docs/segmentation.md).
 *
 * A rule is parsed once into a tree (seg_rule), stored in Redis as JSON
 * (seg_rule_to_json / seg_rule_from_json, so replicas never re-parse the
 * text), and evaluated against a seg_profile many times per second.
 *
 * Grammar (keywords are lower case; whitespace is free):
 *
 *   rule      := or
 *   or        := and { "or" and }
 *   and       := not { "and" not }
 *   not       := "not" not | atom
 *   atom      := "(" or ")" | "true" | "false" | cond
 *   cond      := trait tcond
 *              | metric cmp number
 *              | time "within" duration          -- happened in the last <duration>
 *              | time "before" duration          -- happened, but longer ago than <duration>
 *              | time cmp timestamp              -- absolute: "2026-01-01" or "2026-01-01T10:00:00Z"
 *              | time "exists"
 *   trait     := "trait" "." ident | "trait" "(" string ")"
 *   tcond     := cmp literal | "contains" string | "starts_with" string
 *              | "in" "[" literal { "," literal } "]" | "exists"
 *   metric    := "count" "(" string [ "," window ] ")"     -- events of that count name
 *              | "sum" "(" "revenue" [ "," window ] ")"   -- revenue
 *              | "revenue" | "total_events"                -- all-time totals
 *   time      := "first_seen" | "last_seen"
 *              | "last_interaction" "(" string ")"         -- last event on a channel
 *   window    := duration in whole days: <n>"d" or <n>"w" (1 .. 3660 days)
 *   duration  := <n>("m" | "h" | "d" | "w")
 *   cmp       := "=" | "!=" | "<" | "<=" | ">" | ">="
 *   literal   := string | number | "true" | "false" | "null"
 *   string    := '"' chars with \" \\ \n \t escapes '"'
 *   ident     := [A-Za-z_][A-Za-z0-9_]*
 *
 * Windows count whole UTC days: count("X", 30d) sums the daily buckets of
 * today and the 29 days before (day = floor(ms / 86400000)).
 *
 * Trait semantics: a missing trait makes every comparison false (and
 * "exists" false); "!=" is true only for a present value of the other
 * value; numbers compare with numbers, strings with strings (byte order),
 * booleans and null only with = and !=; "contains" on a string is a
 * substring test, on an array it tests for an element equal to the string;
 * "in" is true when the value equals one list element. */
#ifndef SEG_RULE_H
#define SEG_RULE_H

#include <stddef.h>
#include <stdint.h>

typedef struct seg_rule seg_rule;
typedef struct seg_profile seg_profile;

/* A parse error: 0-based byte offset, 1-based line and column, and a
 * message such as "expected a comparison operator, 'contains', 'starts_with',
 * 'in' or 'exists' after trait.plan, found 'foo'". */
typedef struct {
    int offset;
    int line;
    int column;
    char message[256];
} seg_rule_error;

enum { SEG_RULE_MAX_TEXT = 16384, SEG_RULE_MAX_DEPTH = 64, SEG_RULE_MAX_NODES = 1024 };

/* Parses text (NUL-terminated). Returns NULL and fills err on a syntax
 * error, a rule over the limits above, or out of memory. */
seg_rule *seg_rule_parse(const char *text, seg_rule_error *err);

/* The stored parsed form: a compact JSON tree (malloc'd; caller frees). */
char *seg_rule_to_json(const seg_rule *r);
/* Loads a stored form; NULL and err on a malformed one. */
seg_rule *seg_rule_from_json(const char *json, seg_rule_error *err);
/* Canonical text: parses back to an equal rule (malloc'd; caller frees). */
char *seg_rule_to_text(const seg_rule *r);
void seg_rule_free(seg_rule *r);

/* What a rule reads, for choosing which segments a change affects. */
typedef enum {
    SEG_DEP_TRAIT = 1,      /* name: the trait */
    SEG_DEP_EVENT,          /* name: the count name */
    SEG_DEP_REVENUE,        /* name: NULL */
    SEG_DEP_TOTAL_EVENTS,   /* name: NULL; any event changes it */
    SEG_DEP_FIRST_SEEN,     /* name: NULL; any event may change it */
    SEG_DEP_LAST_SEEN,      /* name: NULL; any event changes it */
    SEG_DEP_CHANNEL,        /* name: the channel */
} seg_dep_kind;

typedef struct {
    seg_dep_kind kind;
    const char *name;       /* owned by the rule */
} seg_dep;

/* The distinct dependencies, in first-appearance order; *out stays valid
 * as long as the rule. */
size_t seg_rule_deps(const seg_rule *r, const seg_dep **out);
/* Formats one dependency as "trait:plan", "event:Order Completed",
 * "revenue", "total_events", "first_seen", "last_seen", "channel:sms". */
int seg_dep_format(const seg_dep *d, char *out, size_t outlen);
/* 1 when the rule's value can change with time alone (a window, "within",
 * "before"). */
int seg_rule_time_based(const seg_rule *r);

/* ------------------------------------------------------------------ profiles */

/* What a rule sees of a profile. Built once per profile, evaluated against
 * many rules. All strings are copied. */
seg_profile *seg_profile_new(void);
void seg_profile_free(seg_profile *p);
/* Forgets everything, keeping the memory for the next profile. */
void seg_profile_reset(seg_profile *p);
/* A trait from its stored compact JSON value. Returns -1 for malformed JSON
 * (the trait is then absent). */
int seg_profile_set_trait_json(seg_profile *p, const char *name, const char *json, size_t jsonlen);
/* All-time count of one count name. */
void seg_profile_set_count(seg_profile *p, const char *name, int64_t count);
/* Count of one count name on one UTC day (days since the epoch). */
void seg_profile_add_day_count(seg_profile *p, const char *name, int64_t day, int64_t count);
void seg_profile_set_revenue(seg_profile *p, double total);
void seg_profile_add_day_revenue(seg_profile *p, int64_t day, double sum);
void seg_profile_set_total_events(seg_profile *p, int64_t total);
/* Milliseconds since the epoch; 0 or unset means never. */
void seg_profile_set_seen(seg_profile *p, int64_t first_ms, int64_t last_ms);
void seg_profile_set_channel(seg_profile *p, const char *channel, int64_t last_ms);

/* ------------------------------------------------------------------ evaluation */

/* Evaluates r against p at now_ms. Returns 1 (member) or 0. When
 * next_change_ms is not NULL it receives the earliest time after now_ms at
 * which the result could change without a new event (a window bucket or a
 * "within"/"before" bound expiring), or INT64_MAX when it cannot. It is
 * conservative: re-evaluating then may find no change. */
int seg_rule_eval(const seg_rule *r, const seg_profile *p, int64_t now_ms, int64_t *next_change_ms);

#endif
