/* seg_rule_eval: profiles as rules see them, and rule evaluation
 * (seg_profile_* and seg_rule_eval in seg_rule.h).
 *
 * A profile is built once and evaluated against many rules, so all the work
 * is done while building: trait JSON is parsed into typed values, every name
 * (trait, count name, channel) gets one entry in an open-addressing hash
 * table keyed by the same hash the rule precomputed for its names, and the
 * daily buckets of each count name (and of revenue) are kept sorted by day,
 * so a window sum is a short scan back from the newest bucket. Evaluation
 * allocates nothing and hashes nothing.
 *
 * The profile's memory (string arena, entries, bucket arrays, table) is kept
 * across seg_profile_reset, so building the next profile allocates only when
 * it is bigger than any before. */
#include "seg_rule_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- profiles */

typedef struct {
    int64_t day;
    double v;
} bucket;

typedef struct {
    bucket *b;
    uint32_t n, cap;
} buckets;

typedef struct {
    uint32_t off, len;   /* in the string arena */
} span;

typedef struct {
    uint8_t type;        /* seg__vtype */
    uint8_t b;
    double num;
    span str;            /* STR */
    uint32_t elem, nelem; /* ARRAY: its string elements in p->elems */
} value;

/* Everything the profile knows under one name. */
typedef struct {
    uint64_t hash;
    span name;
    uint8_t has_trait;
    value trait;
    int64_t count;       /* all-time count */
    int64_t channel_ms;  /* last interaction; 0 = never */
    buckets days;        /* daily counts, sorted by day; kept across resets */
} entry;

struct seg_profile {
    char *arena;
    uint32_t alen, acap;
    span *elems;
    uint32_t nelems, capelems;
    entry *ents;
    uint32_t nents, capents;
    uint32_t *slots;     /* entry index + 1; 0 = empty */
    uint32_t nslots;     /* power of two, at least twice nents */
    double revenue;
    buckets rdays;       /* daily revenue, sorted by day */
    int64_t total_events, first_ms, last_ms;
    int oom;             /* a setter ran out of memory: the profile is incomplete */
};

seg_profile *seg_profile_new(void)
{
    return calloc(1, sizeof(seg_profile));
}

void seg_profile_free(seg_profile *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->capents; i++)
        free(p->ents[i].days.b);
    free(p->ents);
    free(p->arena);
    free(p->elems);
    free(p->slots);
    free(p->rdays.b);
    free(p);
}

void seg_profile_reset(seg_profile *p)
{
    p->alen = 0;
    p->nelems = 0;
    p->nents = 0;
    if (p->slots)
        memset(p->slots, 0, p->nslots * sizeof(uint32_t));
    p->revenue = 0;
    p->rdays.n = 0;
    p->total_events = p->first_ms = p->last_ms = 0;
    p->oom = 0;
}

/* Makes room for n more elements of `size` bytes; -1 on out of memory. */
static int reserve(void **v, uint32_t len, uint32_t *cap, uint32_t n, size_t size)
{
    if (len + n <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 16;
    while (ncap < len + n)
        ncap *= 2;
    void *nv = realloc(*v, (size_t)ncap * size);
    if (!nv)
        return -1;
    *v = nv;
    *cap = ncap;
    return 0;
}

/* Copies s into the arena; on out of memory marks the profile. */
static span arena_put(seg_profile *p, const char *s, size_t len)
{
    span sp = {0, 0};
    if (len > UINT32_MAX / 2 || reserve((void **)&p->arena, p->alen, &p->acap, (uint32_t)len + 1, 1) < 0) {
        p->oom = 1;
        return sp;
    }
    memcpy(p->arena + p->alen, s, len);
    p->arena[p->alen + len] = '\0';
    sp.off = p->alen;
    sp.len = (uint32_t)len;
    p->alen += (uint32_t)len + 1;
    return sp;
}

static const entry *lookup(const seg_profile *p, const char *s, size_t len, uint64_t hash)
{
    if (!p->nents)
        return NULL;
    uint32_t mask = p->nslots - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        uint32_t e = p->slots[i];
        if (!e)
            return NULL;
        const entry *en = &p->ents[e - 1];
        if (en->hash == hash && en->name.len == len && memcmp(p->arena + en->name.off, s, len) == 0)
            return en;
    }
}

static void slot_insert(seg_profile *p, uint32_t idx)
{
    uint32_t mask = p->nslots - 1, i = (uint32_t)p->ents[idx].hash & mask;
    while (p->slots[i])
        i = (i + 1) & mask;
    p->slots[i] = idx + 1;
}

/* The entry for name, created empty if new; NULL on out of memory. */
static entry *entry_for(seg_profile *p, const char *name)
{
    size_t len = strlen(name);
    uint64_t h = seg__hash(name, len);
    const entry *found = lookup(p, name, len, h);
    if (found)
        return (entry *)found;
    if (2 * (p->nents + 1) > p->nslots) {
        uint32_t n = p->nslots ? p->nslots * 2 : 32;
        uint32_t *ns = calloc(n, sizeof(uint32_t));
        if (!ns) {
            p->oom = 1;
            return NULL;
        }
        free(p->slots);
        p->slots = ns;
        p->nslots = n;
        for (uint32_t i = 0; i < p->nents; i++)
            slot_insert(p, i);
    }
    if (p->nents == p->capents) {
        uint32_t old = p->capents;
        if (reserve((void **)&p->ents, p->nents, &p->capents, 1, sizeof(entry)) < 0) {
            p->oom = 1;
            return NULL;
        }
        memset(&p->ents[old], 0, (p->capents - old) * sizeof(entry));
    }
    span sp = arena_put(p, name, len);
    if (p->oom)
        return NULL;
    entry *e = &p->ents[p->nents];
    buckets keep = e->days;   /* a previous profile's bucket array, reused */
    memset(e, 0, sizeof *e);
    e->days = keep;
    e->days.n = 0;
    e->hash = h;
    e->name = sp;
    slot_insert(p, p->nents++);
    return e;
}

/* Adds v to the bucket of `day`, keeping the array sorted by day. Buckets
 * usually arrive in day order, so the insertion point is found from the end. */
static void bucket_add(seg_profile *p, buckets *bs, int64_t day, double v)
{
    uint32_t i = bs->n;
    while (i > 0 && bs->b[i - 1].day > day)
        i--;
    if (i > 0 && bs->b[i - 1].day == day) {
        bs->b[i - 1].v += v;
        return;
    }
    if (reserve((void **)&bs->b, bs->n, &bs->cap, 1, sizeof(bucket)) < 0) {
        p->oom = 1;
        return;
    }
    memmove(&bs->b[i + 1], &bs->b[i], (bs->n - i) * sizeof(bucket));
    bs->b[i] = (bucket){day, v};
    bs->n++;
}

/* Converts a JSON value into v; strings go to the arena. */
static void value_from_json(seg_profile *p, json_t *j, value *v)
{
    memset(v, 0, sizeof *v);
    switch (json_typeof(j)) {
    case JSON_STRING:
        v->type = SEG__V_STR;
        v->str = arena_put(p, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        v->type = SEG__V_NUM;
        v->num = json_number_value(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->type = SEG__V_BOOL;
        v->b = json_is_true(j);
        break;
    case JSON_NULL:
        v->type = SEG__V_NULL;
        break;
    case JSON_OBJECT:
        v->type = SEG__V_OBJECT;
        break;
    case JSON_ARRAY: {
        /* Only string elements matter: `contains` looks for an equal one. */
        v->type = SEG__V_ARRAY;
        v->elem = p->nelems;
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) {
            if (!json_is_string(e))
                continue;
            span sp = arena_put(p, json_string_value(e), json_string_length(e));
            if (reserve((void **)&p->elems, p->nelems, &p->capelems, 1, sizeof(span)) < 0) {
                p->oom = 1;
                return;
            }
            p->elems[p->nelems++] = sp;
            v->nelem++;
        }
        break;
    }
    }
}

int seg_profile_set_trait_json(seg_profile *p, const char *name, const char *json, size_t jsonlen)
{
    entry *e = entry_for(p, name);
    if (!e)
        return -1;
    json_error_t err;
    json_t *j = json_loadb(json, jsonlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j) {
        e->has_trait = 0;
        return -1;
    }
    /* Growing the arena does not move `e`; the value keeps offsets only. */
    value v;
    value_from_json(p, j, &v);
    json_decref(j);
    e->trait = v;
    e->has_trait = 1;
    return 0;
}

void seg_profile_set_count(seg_profile *p, const char *name, int64_t count)
{
    entry *e = entry_for(p, name);
    if (e)
        e->count = count;
}

void seg_profile_add_day_count(seg_profile *p, const char *name, int64_t day, int64_t count)
{
    entry *e = entry_for(p, name);
    if (e)
        bucket_add(p, &e->days, day, (double)count);
}

void seg_profile_set_revenue(seg_profile *p, double total)
{
    p->revenue = total;
}

void seg_profile_add_day_revenue(seg_profile *p, int64_t day, double sum)
{
    bucket_add(p, &p->rdays, day, sum);
}

void seg_profile_set_total_events(seg_profile *p, int64_t total)
{
    p->total_events = total;
}

void seg_profile_set_seen(seg_profile *p, int64_t first_ms, int64_t last_ms)
{
    p->first_ms = first_ms;
    p->last_ms = last_ms;
}

void seg_profile_set_channel(seg_profile *p, const char *channel, int64_t last_ms)
{
    entry *e = entry_for(p, channel);
    if (e)
        e->channel_ms = last_ms;
}

/* ----------------------------------------------------------- evaluation */

typedef struct {
    const seg_rule *r;
    const seg_profile *p;
    int64_t now, today;
    int want_next;
} ctx;

static int cmp_result(int op, int c)
{
    switch (op) {
    case SEG__OP_EQ: return c == 0;
    case SEG__OP_NE: return c != 0;
    case SEG__OP_LT: return c < 0;
    case SEG__OP_LE: return c <= 0;
    case SEG__OP_GT: return c > 0;
    default: return c >= 0;
    }
}

static int num_cmp(double a, double b)
{
    return (a > b) - (a < b);
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* 1 when the trait value equals the literal (same type, same value). */
static int value_eq(const ctx *c, const value *v, const seg__lit *l)
{
    if (v->type != l->type)
        return 0;
    switch (l->type) {
    case SEG__V_NULL: return 1;
    case SEG__V_BOOL: return v->b == l->b;
    case SEG__V_NUM: return v->num == l->num;
    default: {
        const seg__str *s = &c->r->strs[l->str];
        return v->str.len == s->len && memcmp(c->p->arena + v->str.off, s->s, s->len) == 0;
    }
    }
}

/* Substring search without memmem (not in C11). */
static int has_substring(const char *h, size_t hlen, const char *n, size_t nlen)
{
    if (nlen == 0)
        return 1;
    for (const char *end = h + hlen; hlen >= nlen; hlen = (size_t)(end - h)) {
        const char *f = memchr(h, n[0], hlen - nlen + 1);
        if (!f)
            return 0;
        if (memcmp(f, n, nlen) == 0)
            return 1;
        h = f + 1;
    }
    return 0;
}

static int eval_trait(const ctx *c, const seg__node *n)
{
    const seg__str *name = &c->r->strs[n->name];
    const entry *e = lookup(c->p, name->s, name->len, name->hash);
    if (!e || !e->has_trait)
        return 0;
    const value *v = &e->trait;
    const seg__lit *l = n->lit >= 0 ? &c->r->lits[n->lit] : NULL;
    const char *arena = c->p->arena;
    switch (n->op) {
    case SEG__OP_EXISTS:
        return 1;
    case SEG__OP_EQ:
        return value_eq(c, v, l);
    case SEG__OP_NE:
        return !value_eq(c, v, l);
    case SEG__OP_IN:
        for (int i = 0; i < n->nlits; i++)
            if (value_eq(c, v, &l[i]))
                return 1;
        return 0;
    case SEG__OP_CONTAINS: {
        const seg__str *s = &c->r->strs[l->str];
        if (v->type == SEG__V_STR)
            return has_substring(arena + v->str.off, v->str.len, s->s, s->len);
        if (v->type != SEG__V_ARRAY)
            return 0;
        for (uint32_t i = 0; i < v->nelem; i++) {
            const span *el = &c->p->elems[v->elem + i];
            if (el->len == s->len && memcmp(arena + el->off, s->s, s->len) == 0)
                return 1;
        }
        return 0;
    }
    case SEG__OP_STARTS_WITH: {
        const seg__str *s = &c->r->strs[l->str];
        return v->type == SEG__V_STR && v->str.len >= s->len &&
               memcmp(arena + v->str.off, s->s, s->len) == 0;
    }
    default:    /* < <= > >=: numbers with numbers, strings with strings */
        if (v->type != l->type)
            return 0;
        if (v->type == SEG__V_NUM)
            return cmp_result(n->op, num_cmp(v->num, l->num));
        if (v->type == SEG__V_STR) {
            const seg__str *s = &c->r->strs[l->str];
            return cmp_result(n->op, bytes_cmp(arena + v->str.off, v->str.len, s->s, s->len));
        }
        return 0;
    }
}

/* Sum of the buckets of the window [today - days + 1, today]. *next gets
 * when the sum can change with time alone: the start of the day the oldest
 * non-zero bucket in the window leaves it, or the start of the day a
 * (clock-skewed) future bucket enters it. */
static double window_sum(const ctx *c, const buckets *bs, int days, int64_t *next)
{
    int64_t first = c->today - days + 1;
    double sum = 0;
    int64_t oldest = INT64_MAX, future = INT64_MAX;
    uint32_t i = bs->n;
    for (; i > 0 && bs->b[i - 1].day > c->today; i--)
        future = bs->b[i - 1].day;
    for (; i > 0 && bs->b[i - 1].day >= first; i--) {
        if (bs->b[i - 1].v != 0) {
            sum += bs->b[i - 1].v;
            oldest = bs->b[i - 1].day;
        }
    }
    if (oldest != INT64_MAX)
        *next = (oldest + days) * SEG__DAY_MS;
    if (future != INT64_MAX && future * SEG__DAY_MS < *next)
        *next = future * SEG__DAY_MS;
    return sum;
}

static int eval_metric(const ctx *c, const seg__node *n, int64_t *next)
{
    double v;
    if (n->src == SEG__M_COUNT) {
        const seg__str *name = &c->r->strs[n->name];
        const entry *e = lookup(c->p, name->s, name->len, name->hash);
        if (n->days)
            v = e ? window_sum(c, &e->days, n->days, next) : 0;
        else
            v = e ? (double)e->count : 0;
    } else if (n->src == SEG__M_REVENUE) {
        v = n->days ? window_sum(c, &c->p->rdays, n->days, next) : c->p->revenue;
    } else {
        v = (double)c->p->total_events;
    }
    return cmp_result(n->op, num_cmp(v, n->num));
}

static int eval_time(const ctx *c, const seg__node *n, int64_t *next)
{
    int64_t x;
    if (n->src == SEG__T_CHANNEL) {
        const seg__str *name = &c->r->strs[n->name];
        const entry *e = lookup(c->p, name->s, name->len, name->hash);
        x = e ? e->channel_ms : 0;
    } else {
        x = n->src == SEG__T_FIRST_SEEN ? c->p->first_ms : c->p->last_ms;
    }
    if (x == 0)
        return 0;   /* never happened: false, and only an event changes that */
    switch (n->op) {
    case SEG__OP_EXISTS:
        return 1;
    case SEG__OP_WITHIN:
        /* True while now < x + d; it then turns false at x + d. */
        if (c->now - x < n->ms) {
            *next = x + n->ms;
            return 1;
        }
        return 0;
    case SEG__OP_BEFORE:
        if (c->now - x >= n->ms)
            return 1;
        *next = x + n->ms;
        return 0;
    default:
        return cmp_result(n->op, (x > n->ms) - (x < n->ms));
    }
}

/* Evaluates the subtree at n. *next is lowered to when its value could
 * change (only computed when c->want_next). */
static int eval_node(const ctx *c, const seg__node *n, int64_t *next)
{
    switch (n->kind) {
    case SEG__K_TRUE: return 1;
    case SEG__K_FALSE: return 0;
    case SEG__K_TRAIT: return eval_trait(c, n);
    case SEG__K_METRIC: return eval_metric(c, n, next);
    case SEG__K_TIME: return eval_time(c, n, next);
    case SEG__K_NOT: return !eval_node(c, n + 1, next);
    default: break;
    }
    /* AND/OR: a child equal to `decisive` (0 for AND, 1 for OR) decides.
     * If a child that cannot change with time decides, the node cannot
     * either: return at once with no next change. Otherwise the node can
     * change only when one of its timed children does, so when the caller
     * wants the next change every child is looked at (a later untimed one
     * may still pin the result). */
    int decisive = n->kind == SEG__K_OR;
    int result = !decisive;
    int64_t mine = INT64_MAX;
    const seg__node *k = n + 1;
    for (int i = 0; i < n->nkids; i++, k += k->size) {
        if (result == decisive && !c->want_next)
            break;
        int64_t kn = INT64_MAX;
        int v = eval_node(c, k, &kn);
        if (v == decisive) {
            result = decisive;
            if (!k->timed)
                return decisive;
        }
        if (kn < mine)
            mine = kn;
    }
    if (mine < *next)
        *next = mine;
    return result;
}

int seg_rule_eval(const seg_rule *r, const seg_profile *p, int64_t now_ms, int64_t *next_change_ms)
{
    ctx c = {
        .r = r, .p = p, .now = now_ms,
        .today = (now_ms >= 0 ? now_ms : now_ms - SEG__DAY_MS + 1) / SEG__DAY_MS,
        .want_next = next_change_ms != NULL,
    };
    int64_t next = INT64_MAX;
    int v = eval_node(&c, r->nodes, &next);
    if (next_change_ms)
        *next_change_ms = next <= now_ms ? now_ms + 1 : next;
    return v;
}
