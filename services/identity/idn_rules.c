/* idn_rules: configuration of the resolution rules and the pure planner
 * (see idn_rules.h for the algorithm). */
#include "idn_rules.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- configuration */

/* One "type=N" entry: a type name, '=', and a number or "unlimited". */
#define LIMIT_ITEM_LEN (CDP_IDENT_MAX_TYPE + 32)

/* Copies the next comma-separated, whitespace-trimmed item of *p into buf
 * (NUL-terminated) and advances *p past it. Returns the item's length, or
 * -1 if it does not fit in buflen. */
static long next_item(const char **p, char *buf, size_t buflen) {
    const char *s = *p;
    const char *comma = strchr(s, ',');
    size_t n = comma ? (size_t)(comma - s) : strlen(s);
    *p = comma ? comma + 1 : s + n;
    while (n > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= buflen)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return (long)n;
}

static int set_why(const char **why, const char *reason) {
    if (why != NULL)
        *why = reason;
    return -1;
}

static int parse_priority(idn_rules *r, const char *csv, const char **why) {
    r->n_priority = 0;
    const char *p = csv;
    while (*p != '\0') {
        char item[CDP_IDENT_MAX_TYPE + 1];
        long n = next_item(&p, item, sizeof item);
        if (n < 0 || (n > 0 && cdp_ident_kind_of(item) == CDP_IDENT_INVALID))
            return set_why(why, "priority: not a valid identifier type");
        if (n == 0)
            continue;
        for (size_t i = 0; i < r->n_priority; i++)
            if (strcmp(r->priority[i], item) == 0)
                return set_why(why, "priority: duplicate type");
        if (r->n_priority == IDN_MAX_RULE_TYPES)
            return set_why(why, "priority: too many types");
        strcpy(r->priority[r->n_priority++], item);
    }
    return 0;
}

/* Parses "unlimited" or an integer in 1..IDN_LIMIT_MAX. Returns 0 or -1. */
static int parse_limit_value(const char *s, unsigned *out) {
    if (strcmp(s, "unlimited") == 0) {
        *out = IDN_UNLIMITED;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > IDN_LIMIT_MAX)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Sets the limit of `type`, replacing an earlier one. Returns 0 or -1 when
 * the table is full. */
static int put_limit(idn_rules *r, const char *type, unsigned limit) {
    for (size_t i = 0; i < r->n_limits; i++) {
        if (strcmp(r->limits[i].type, type) == 0) {
            r->limits[i].limit = limit;
            return 0;
        }
    }
    if (r->n_limits == IDN_MAX_RULE_TYPES)
        return -1;
    strcpy(r->limits[r->n_limits].type, type);
    r->limits[r->n_limits++].limit = limit;
    return 0;
}

static int parse_limits(idn_rules *r, const char *csv, const char **why) {
    const char *p = csv;
    while (*p != '\0') {
        char item[LIMIT_ITEM_LEN];
        long n = next_item(&p, item, sizeof item);
        if (n < 0)
            return set_why(why, "limits: entry too long");
        if (n == 0)
            continue;
        char *eq = strchr(item, '=');
        if (eq == NULL)
            return set_why(why, "limits: expected type=N");
        *eq = '\0';
        unsigned limit;
        if (cdp_ident_kind_of(item) == CDP_IDENT_INVALID)
            return set_why(why, "limits: not a valid identifier type");
        if (parse_limit_value(eq + 1, &limit) != 0)
            return set_why(why, "limits: N must be 1..100000 or unlimited");
        if (put_limit(r, item, limit) != 0)
            return set_why(why, "limits: too many types");
    }
    return 0;
}

int idn_rules_init(idn_rules *r, const char *priority_csv, const char *limits_csv,
                   const char **why) {
    memset(r, 0, sizeof *r);
    if (parse_priority(r, priority_csv ? priority_csv : IDN_DEFAULT_PRIORITY, why) != 0)
        return -1;
    if (parse_limits(r, IDN_DEFAULT_LIMITS, why) != 0)
        return -1;
    if (limits_csv != NULL && parse_limits(r, limits_csv, why) != 0)
        return -1;
    return 0;
}

unsigned idn_rules_limit(const idn_rules *r, const char *type) {
    for (size_t i = 0; i < r->n_limits; i++)
        if (strcmp(r->limits[i].type, type) == 0)
            return r->limits[i].limit;
    return IDN_UNLIMITED;
}

static size_t type_rank(const idn_rules *r, const char *type) {
    for (size_t i = 0; i < r->n_priority; i++)
        if (strcmp(r->priority[i], type) == 0)
            return i;
    return r->n_priority;
}

int idn_rules_compare(const idn_rules *r, const char *type_a, size_t pos_a, const char *type_b,
                      size_t pos_b) {
    size_t ra = type_rank(r, type_a), rb = type_rank(r, type_b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra == r->n_priority) {
        int c = strcmp(type_a, type_b);
        if (c != 0)
            return c < 0 ? -1 : 1;
    }
    if (pos_a != pos_b)
        return pos_a < pos_b ? -1 : 1;
    return 0;
}

/* ----------------------------------------------------------------- planner */

/* The working state of one planning run. */
typedef struct {
    const idn_rules *rules;
    const idn_plan_input *in;
    idn_plan *plan;
    unsigned char involved[IDN_MAX_IDENTIFIERS]; /* per master: reached by a kept identifier */
} planner;

static void mark_involved(planner *p) {
    memset(p->involved, 0, sizeof p->involved);
    for (size_t i = 0; i < p->in->n_idents; i++)
        if (p->plan->keep[i] && p->in->owner[i] >= 0)
            p->involved[p->in->owner[i]] = 1;
}

static size_t master_count(const idn_master_view *m, const char *type) {
    size_t n = 0;
    for (size_t j = 0; j < m->n_idents; j++)
        if (strcmp(m->idents[j].type, type) == 0)
            n++;
    return n;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Distinct values of `type` in the union of the involved masters and the
 * kept event identifiers. Returns the count, or -1 on allocation failure. */
static long union_count(const planner *p, const char *type) {
    size_t cap = p->in->n_idents;
    for (size_t m = 0; m < p->in->n_masters; m++)
        if (p->involved[m])
            cap += p->in->masters[m].n_idents;
    if (cap == 0)
        return 0;
    const char **vals = malloc(cap * sizeof *vals);
    if (vals == NULL)
        return -1;
    size_t n = 0;
    for (size_t m = 0; m < p->in->n_masters; m++) {
        const idn_master_view *mv = &p->in->masters[m];
        for (size_t j = 0; p->involved[m] && j < mv->n_idents; j++)
            if (strcmp(mv->idents[j].type, type) == 0)
                vals[n++] = mv->idents[j].value;
    }
    for (size_t i = 0; i < p->in->n_idents; i++)
        if (p->plan->keep[i] && strcmp(p->in->idents[i].type, type) == 0)
            vals[n++] = p->in->idents[i].value;
    qsort(vals, n, sizeof *vals, cmp_str);
    long distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(vals[i], vals[i - 1]) != 0)
            distinct++;
    free(vals);
    return distinct;
}

/* Whether the union violates the limit of `type`. A master that already
 * holds more values than the limit (the limit was lowered later) is not a
 * violation by itself: only growth beyond max(limit, largest involved
 * master's count) is, so an existing profile always stays resolvable.
 * Returns 1, 0, or -1 on allocation failure. */
static int violates(const planner *p, const char *type, unsigned limit) {
    size_t allowed = limit;
    for (size_t m = 0; m < p->in->n_masters; m++) {
        size_t c = p->involved[m] ? master_count(&p->in->masters[m], type) : 0;
        if (c > allowed)
            allowed = c;
    }
    long n = union_count(p, type);
    if (n < 0)
        return -1;
    return (size_t)n > allowed;
}

/* Whether kept identifier i adds to the count of `type`. */
static int contributes(const planner *p, size_t i, const char *type) {
    if (strcmp(p->in->idents[i].type, type) == 0)
        return 1;
    int o = p->in->owner[i];
    return o >= 0 && master_count(&p->in->masters[o], type) > 0;
}

/* Finds the violated limits; if any, drops the lowest-priority kept
 * identifier contributing to one of them. Returns 1 if it dropped one, 0 if
 * nothing is violated, -1 on allocation failure. */
static int drop_one(planner *p) {
    const idn_rules *r = p->rules;
    int victim = -1;
    const idn_limit *why = NULL;
    for (size_t l = 0; l < r->n_limits; l++) {
        const idn_limit *lim = &r->limits[l];
        if (lim->limit == IDN_UNLIMITED)
            continue;
        int v = violates(p, lim->type, lim->limit);
        if (v < 0)
            return -1;
        for (size_t i = 0; v && i < p->in->n_idents; i++) {
            if (!p->plan->keep[i] || !contributes(p, i, lim->type))
                continue;
            if (victim < 0 || idn_rules_compare(r, p->in->idents[i].type, i,
                                                p->in->idents[victim].type, (size_t)victim) > 0) {
                victim = (int)i;
                why = lim;
            }
        }
    }
    if (victim < 0)
        return 0;
    p->plan->keep[victim] = 0;
    p->plan->n_kept--;
    snprintf(p->plan->reason[victim], IDN_REASON_LEN, "limit %s=%u would be exceeded", why->type,
             why->limit);
    return 1;
}

/* Orders master indices by id (age). */
static int cmp_master_idx(const planner *p, int a, int b) {
    return strcmp(p->in->masters[a].id, p->in->masters[b].id);
}

/* Picks the oldest involved master as survivor and lists the others. */
static void choose_survivor(planner *p) {
    idn_plan *plan = p->plan;
    plan->survivor = -1;
    plan->n_merge = 0;
    for (size_t m = 0; m < p->in->n_masters; m++) {
        if (!p->involved[m])
            continue;
        if (plan->survivor < 0 || strcmp(p->in->masters[m].id, p->in->masters[plan->survivor].id) < 0)
            plan->survivor = (int)m;
    }
    for (size_t m = 0; m < p->in->n_masters; m++)
        if (p->involved[m] && (int)m != plan->survivor)
            plan->merge[plan->n_merge++] = (int)m;
    /* oldest first: insertion sort, the list is short */
    for (size_t i = 1; i < plan->n_merge; i++) {
        for (size_t j = i; j > 0 && cmp_master_idx(p, plan->merge[j - 1], plan->merge[j]) > 0; j--) {
            int t = plan->merge[j];
            plan->merge[j] = plan->merge[j - 1];
            plan->merge[j - 1] = t;
        }
    }
}

int idn_plan_compute(const idn_rules *r, const idn_plan_input *in, idn_plan *out) {
    if (in->n_idents > IDN_MAX_IDENTIFIERS || in->n_masters > IDN_MAX_IDENTIFIERS)
        return -1;
    for (size_t i = 0; i < in->n_idents; i++)
        if (in->owner[i] < -1 || in->owner[i] >= (int)in->n_masters)
            return -1;
    memset(out, 0, sizeof *out);
    memset(out->keep, 1, in->n_idents);
    out->n_kept = in->n_idents;
    planner p = {.rules = r, .in = in, .plan = out};
    for (;;) {
        mark_involved(&p);
        int rc = drop_one(&p);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
    }
    choose_survivor(&p);
    return 0;
}
