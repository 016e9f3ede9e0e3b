/* idn_rules: the identity resolution rules and the pure planner that applies
 * them to one event.
 *
 * The rules are an identifier type priority order and per-type limits on how
 * many distinct values of a type one profile may hold (default: user_id 1,
 * every other type unlimited). Given an event's normalized identifiers, the
 * root master each of them maps to (if any) and those masters' identifier
 * sets, the planner decides which identifiers the event keeps, which it
 * drops and why, which masters merge and which one survives. It does no I/O:
 * idn_store feeds it what Redis says and carries out the plan.
 *
 * Algorithm (as Segment Unify documents it): if the union of the involved
 * masters' identifiers and the event's would put a type over its limit, drop
 * the event's lowest-priority identifier that contributes to the violation
 * (by mapping to a master that holds values of that type, or by being such a
 * value) and recompute, until nothing is violated. The oldest involved master
 * (lexicographically smallest id, ids being time-ordered) survives. */
#ifndef IDN_RULES_H
#define IDN_RULES_H

#include <stddef.h>

#include "cdp_ident.h"

/* Most identifiers one event may carry (ingestion accepts 100 listed ones
 * plus user_id and anonymous_id); the service rejects more. */
#define IDN_MAX_IDENTIFIERS 128
/* Most types the priority list and the limit list may name. */
#define IDN_MAX_RULE_TYPES 32
/* Largest finite per-type limit accepted from configuration. */
#define IDN_LIMIT_MAX 100000
/* 0 as a limit means "no limit". */
#define IDN_UNLIMITED 0u
#define IDN_REASON_LEN 128

#define IDN_ENV_PRIORITY "CDP_IDENTITY_PRIORITY"
#define IDN_ENV_LIMITS "CDP_IDENTITY_LIMITS"
#define IDN_DEFAULT_PRIORITY "user_id,email,phone,device_id,cookie_id,anonymous_id"
#define IDN_DEFAULT_LIMITS "user_id=1"

typedef struct {
    char type[CDP_IDENT_MAX_TYPE + 1];
    unsigned limit; /* IDN_UNLIMITED or 1..IDN_LIMIT_MAX */
} idn_limit;

typedef struct {
    size_t n_priority;
    char priority[IDN_MAX_RULE_TYPES][CDP_IDENT_MAX_TYPE + 1]; /* highest first */
    size_t n_limits;
    idn_limit limits[IDN_MAX_RULE_TYPES];
} idn_rules;

/* Initializes r. priority_csv replaces the default priority list (NULL: the
 * default); types it does not name rank after it, ordered by name.
 * limits_csv ("type=N,..." with N in 1..IDN_LIMIT_MAX or "unlimited") is
 * applied over the default limits (NULL: defaults only). Returns 0, or -1
 * with *why describing the first problem (unknown syntax, invalid or
 * duplicate type, bad number, too many entries). */
int idn_rules_init(idn_rules *r, const char *priority_csv, const char *limits_csv,
                   const char **why);

/* The limit of `type` (IDN_UNLIMITED when none is configured). */
unsigned idn_rules_limit(const idn_rules *r, const char *type);

/* Orders two identifiers by priority: negative if (type_a at position pos_a
 * in the event) outranks (type_b at pos_b), positive if it ranks below.
 * Types rank by the priority list, then unlisted types by name; within one
 * type the earlier identifier of the event ranks higher. */
int idn_rules_compare(const idn_rules *r, const char *type_a, size_t pos_a, const char *type_b,
                      size_t pos_b);

/* A borrowed (type, value) pair, already normalized. */
typedef struct {
    const char *type;
    const char *value;
} idn_ident;

/* A root master as read from the store. */
typedef struct {
    const char *id;          /* time-ordered: smaller = older */
    const idn_ident *idents; /* its current identifier set */
    size_t n_idents;
} idn_master_view;

typedef struct {
    const idn_ident *idents; /* the event's identifiers, distinct, at most
                                IDN_MAX_IDENTIFIERS */
    size_t n_idents;
    const int *owner;        /* per identifier: index into masters, or -1 */
    const idn_master_view *masters;
    size_t n_masters;
} idn_plan_input;

typedef struct {
    unsigned char keep[IDN_MAX_IDENTIFIERS];         /* 1 kept, 0 dropped */
    char reason[IDN_MAX_IDENTIFIERS][IDN_REASON_LEN]; /* why, for dropped ones */
    size_t n_kept;
    int survivor;                                    /* master index, or -1: create */
    size_t n_merge;
    int merge[IDN_MAX_IDENTIFIERS];                  /* master indices merged into
                                                        the survivor, oldest first */
} idn_plan;

/* Plans the resolution of one event. Returns 0 and fills *out, or -1 if the
 * input is malformed (too many identifiers, an owner index out of range). */
int idn_plan_compute(const idn_rules *r, const idn_plan_input *in, idn_plan *out);

#endif
