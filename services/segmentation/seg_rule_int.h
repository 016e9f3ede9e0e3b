/* seg_rule_int: the parsed form of a segment rule, shared by the modules
 * that build it (seg_rule_parse.c from text, seg_rule_json.c from the stored
 * form), print it (seg_rule.c) and evaluate it (seg_rule_eval.c). Nothing
 * outside services/segmentation/seg_rule*.c includes this header.
 *
 * A rule is a flat array of nodes in prefix order: a node is followed by its
 * children, and `size` (the node count of its subtree) skips to the next
 * sibling. Evaluation therefore walks one contiguous array with no pointers
 * to chase, and copying a rule is a memcpy. Every string of a rule (names and
 * literal strings) is interned once in `strs` with its hash, so evaluation
 * looks names up in a profile without hashing anything. */
#ifndef SEG_RULE_INT_H
#define SEG_RULE_INT_H

#include <stdint.h>
#include <stddef.h>

#include "seg_rule.h"

#define SEG__DAY_MS INT64_C(86400000)
/* Durations and windows are at most this many days (about ten years). */
#define SEG__MAX_DAYS 3660
/* Values in all `in` lists of one rule together. */
#define SEG__MAX_LITS 4096
/* Timestamps of absolute comparisons: 1970-01-01 .. 9999-12-31. */
#define SEG__MAX_TIME_MS INT64_C(253402300799999)

typedef enum {
    SEG__K_TRUE,
    SEG__K_FALSE,
    SEG__K_AND,
    SEG__K_OR,
    SEG__K_NOT,
    SEG__K_TRAIT,   /* trait <op> lits / exists */
    SEG__K_METRIC,  /* metric <cmp> num */
    SEG__K_TIME,    /* time within/before ms, <cmp> ms, exists */
} seg__kind;

/* Comparison operators first, so `op <= SEG__OP_GE` means "a comparison". */
typedef enum {
    SEG__OP_EQ,
    SEG__OP_NE,
    SEG__OP_LT,
    SEG__OP_LE,
    SEG__OP_GT,
    SEG__OP_GE,
    SEG__OP_IN,
    SEG__OP_CONTAINS,
    SEG__OP_STARTS_WITH,
    SEG__OP_EXISTS,
    SEG__OP_WITHIN,
    SEG__OP_BEFORE,
    SEG__OP_COUNT_
} seg__op;

typedef enum { SEG__M_COUNT, SEG__M_REVENUE, SEG__M_TOTAL_EVENTS } seg__metric;
typedef enum { SEG__T_FIRST_SEEN, SEG__T_LAST_SEEN, SEG__T_CHANNEL } seg__time;

/* Literal and trait value types. ARRAY and OBJECT occur only in profiles. */
typedef enum {
    SEG__V_NULL,
    SEG__V_BOOL,
    SEG__V_NUM,
    SEG__V_STR,
    SEG__V_ARRAY,
    SEG__V_OBJECT,
} seg__vtype;

typedef struct {
    char *s;        /* NUL-terminated, owned by the rule */
    size_t len;
    uint64_t hash;  /* seg__hash(s, len) */
} seg__str;

typedef struct {
    uint8_t type;   /* seg__vtype: NULL, BOOL, NUM or STR */
    uint8_t b;
    int32_t str;    /* index in strs for STR */
    double num;
} seg__lit;

typedef struct {
    uint8_t kind;   /* seg__kind */
    uint8_t op;     /* seg__op */
    uint8_t src;    /* seg__metric or seg__time */
    uint8_t timed;  /* the subtree's value can change with time alone */
    uint16_t size;  /* nodes in this subtree, itself included */
    uint16_t nkids; /* AND/OR: children; NOT: 1 */
    int32_t name;   /* index in strs: trait, count name or channel; -1 */
    int32_t lit;    /* TRAIT: first literal in lits; -1 for exists */
    int32_t nlits;  /* TRAIT: literals (the `in` list, else 1) */
    int32_t days;   /* METRIC: window in days, 0 = all time */
    int64_t ms;     /* TIME: within/before duration, or the absolute time */
    double num;     /* METRIC: the number compared with */
} seg__node;

struct seg_rule {
    seg__node *nodes;
    int nnodes, capnodes;
    seg__lit *lits;
    int nlits, caplits;
    seg__str *strs;
    int nstrs, capstrs;
    seg_dep *deps;
    size_t ndeps;
    int time_based;
};

/* --------------------------------------------------------------- building */

uint64_t seg__hash(const char *s, size_t len);
seg_rule *seg__rule_new(void);
/* Appends a zeroed node (name = lit = -1) and returns its index, or -1 when
 * the rule would exceed SEG_RULE_MAX_NODES or memory runs out. */
int seg__node_add(seg_rule *r);
/* Inserts a zeroed node at index `at`, shifting the nodes after it; -1 as
 * above. Used to wrap an already-built subtree in an AND/OR. */
int seg__node_insert(seg_rule *r, int at);
/* Index of the interned copy of s[0..len); -1 on out of memory. */
int seg__intern(seg_rule *r, const char *s, size_t len);
/* Appends a literal; -1 past SEG__MAX_LITS or on out of memory. */
int seg__lit_add(seg_rule *r, const seg__lit *l);
/* Completes a built tree: timed flags, dependencies, the time_based flag.
 * Returns 0, or -1 on out of memory. */
int seg__rule_finish(seg_rule *r);

/* ------------------------------------------------------ shared validation */

/* NULL when s[0..len) may appear in a rule string (valid UTF-8, no control
 * characters except \n and \t), else why not. */
const char *seg__string_problem(const char *s, size_t len);
/* Parses "YYYY-MM-DD" or RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+hh:mm|-hh:mm)"
 * into ms since the epoch. Returns NULL, or why the text is not one. */
const char *seg__parse_time(const char *s, size_t len, int64_t *out_ms);
/* Canonical form of ms: "YYYY-MM-DD" at midnight, else
 * "YYYY-MM-DDTHH:MM:SS[.fff]Z". out needs 32 bytes. */
void seg__format_time(int64_t ms, char out[32]);
/* Canonical duration text: the largest of w/d/h/m that divides ms. */
void seg__format_duration(int64_t ms, char out[32]);

/* Operator spellings, as in the text and the stored form. */
extern const char *const seg__op_names[SEG__OP_COUNT_];
/* The operator spelled name[0..len), or -1. */
int seg__op_lookup(const char *name, size_t len);

/* 1 when the canonical text puts a node of kind `child` under a node of
 * kind `parent` (-1 for none: the root) in parentheses: an OR anywhere but
 * at the root, an AND under an AND or a NOT. The parser counts each of
 * those toward SEG_RULE_MAX_DEPTH, as it counts each "not". */
int seg__needs_parens(int parent, int child);

/* Fills err (offset/line/column from `offset` into text, or 0s when text is
 * NULL) with a printf-style message. */
void seg__error(seg_rule_error *err, const char *text, int offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
