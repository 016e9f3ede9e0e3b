/* prf_codec: keys, script arguments and reply parsing (see prf_codec.h). */
#include "prf_codec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prf_event.h"

#define PRF_KEY_PREFIX "cdp:prf:{p:"

static const char *const prf__key_suffix[PRF_KEY_COUNT] = {
    "}", "}:trait_ts", "}:timeline", "}:seen", "}:daily",
};

/* Longest decimal int64 text a stamp may carry, and a double that
 * round-trips. */
enum { PRF_I64_CHARS = 21, PRF_DOUBLE_CHARS = 32 };

/* ================================================================== keys */

int prf_keys_init(prf_keys *k, const char *master)
{
    memset(k, 0, sizeof(*k));
    size_t pl = strlen(PRF_KEY_PREFIX), ml = strlen(master), total = 0;
    for (int i = 0; i < PRF_KEY_COUNT; i++)
        total += pl + ml + strlen(prf__key_suffix[i]) + 1;
    char *p = malloc(total);
    if (!p)
        return PRF_ENOMEM;
    for (int i = 0; i < PRF_KEY_COUNT; i++) {
        size_t sl = strlen(prf__key_suffix[i]);
        k->v[i] = p;
        memcpy(p, PRF_KEY_PREFIX, pl);
        memcpy(p + pl, master, ml);
        memcpy(p + pl + ml, prf__key_suffix[i], sl + 1);
        k->len[i] = pl + ml + sl;
        p += k->len[i] + 1;
    }
    return PRF_OK;
}

void prf_keys_free(prf_keys *k)
{
    free(k->v[0]);
    memset(k, 0, sizeof(*k));
}

/* ============================================================= arguments */

/* One block of argument bytes; a string longer than a block gets a block
 * of its own. */
struct prf_args_block {
    prf_args_block *next;
    size_t used, cap;
    char data[];
};

enum { PRF_ARGS_INITIAL = 16, PRF_ARGS_BLOCK_BYTES = 4096 };

void prf_args_init(prf_args *a)
{
    memset(a, 0, sizeof(*a));
}

void prf_args_free(prf_args *a)
{
    for (prf_args_block *b = a->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a->v);
    free(a->len);
    prf_args_init(a);
}

/* Room for `need` bytes in a's current block, starting a new one when it
 * is full. Returns where they go, or NULL when out of memory. */
static char *prf__args_room(prf_args *a, size_t need)
{
    prf_args_block *b = a->blocks;
    if (b && b->cap - b->used >= need) {
        char *at = b->data + b->used;
        b->used += need;
        return at;
    }
    size_t cap = need > PRF_ARGS_BLOCK_BYTES ? need : PRF_ARGS_BLOCK_BYTES;
    prf_args_block *nb = malloc(sizeof(*nb) + cap);
    if (!nb)
        return NULL;
    nb->cap = cap;
    nb->used = need;
    if (b && cap == need && b->cap - b->used > 0) {
        /* an oversized string: keep filling the current block after it */
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        a->blocks = nb;
    }
    return nb->data;
}

int prf_args_addn(prf_args *a, const char *s, size_t len)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : PRF_ARGS_INITIAL;
        char **nv = realloc(a->v, ncap * sizeof(*nv));
        if (!nv)
            return PRF_ENOMEM;
        a->v = nv;
        size_t *nl = realloc(a->len, ncap * sizeof(*nl));
        if (!nl)
            return PRF_ENOMEM;
        a->len = nl;
        a->cap = ncap;
    }
    char *copy = prf__args_room(a, len + 1);
    if (!copy)
        return PRF_ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    a->v[a->n] = copy;
    a->len[a->n] = len;
    a->n++;
    return PRF_OK;
}

int prf_args_add(prf_args *a, const char *s)
{
    return prf_args_addn(a, s, strlen(s));
}

size_t prf_i64_format(int64_t v, char buf[PRF_I64_BUF])
{
    char tmp[PRF_I64_BUF];
    size_t n = 0;
    /* through the unsigned magnitude, so INT64_MIN works too */
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    size_t out = 0;
    if (v < 0)
        buf[out++] = '-';
    while (n)
        buf[out++] = tmp[--n];
    buf[out] = '\0';
    return out;
}

int prf_args_add_i64(prf_args *a, int64_t v)
{
    char buf[PRF_I64_BUF];
    return prf_args_addn(a, buf, prf_i64_format(v, buf));
}

int prf_args_add_double(prf_args *a, double v)
{
    char buf[PRF_DOUBLE_CHARS];
    int n = snprintf(buf, sizeof(buf), "%.17g", v);
    return prf_args_addn(a, buf, (size_t)n);
}

/* An event time, or "" for PRF_TS_NONE (first/last seen of an empty
 * profile). */
static int prf__add_ts(prf_args *a, int64_t ts)
{
    return ts == PRF_TS_NONE ? prf_args_add(a, "") : prf_args_add_i64(a, ts);
}

/* What every script that writes daily buckets needs to compute the cut. */
static int prf__add_daily_opts(prf_args *a, const prf_fold_opts *o)
{
    return prf_args_add_i64(a, o->daily_retention_days) |
           prf_args_add_i64(a, PRF_DAILY_TRIM_STEP_DAYS);
}

int prf_args_apply_header(prf_args *a, const prf_fold_opts *o, size_t n_events)
{
    if (prf_args_add_i64(a, o->now_ms) || prf_args_add_i64(a, o->seen_cutoff_ms) ||
        prf_args_add_i64(a, (int64_t)o->timeline_len) ||
        prf_args_add_i64(a, (int64_t)n_events) || prf__add_daily_opts(a, o))
        return PRF_ENOMEM;
    return PRF_OK;
}

int prf_args_add_delta(prf_args *a, const prf_delta *d)
{
    int rc = prf_args_add(a, d->message_id) | prf_args_add_i64(a, d->ts) |
             prf_args_add(a, d->count_name) | prf_args_add(a, d->channel) |
             prf_args_add(a, d->tl_member);
    rc |= d->has_revenue ? prf_args_add_double(a, d->revenue) : prf_args_add(a, "");
    rc |= prf_args_add_i64(a, prf_day_of(d->ts));
    rc |= prf_args_add_i64(a, (int64_t)d->n_traits);
    for (size_t i = 0; i < d->n_traits; i++)
        rc |= prf_args_add(a, d->traits[i].key) | prf_args_add(a, d->traits[i].json);
    rc |= prf_args_add_i64(a, (int64_t)d->n_ids);
    for (size_t i = 0; i < d->n_ids; i++)
        rc |= prf_args_add(a, d->ids[i]);
    return rc ? PRF_ENOMEM : PRF_OK;
}

static int prf__add_keyed(prf_args *a, const prf_profile *p)
{
    int rc = prf_args_add_i64(a, (int64_t)p->n_traits);
    for (size_t i = 0; i < p->n_traits; i++) {
        const prf_trait *t = &p->traits[i];
        rc |= prf_args_add(a, t->key) | prf_args_add(a, t->json) | prf_args_add_i64(a, t->ts) |
              prf_args_add(a, t->message_id);
    }
    rc |= prf_args_add_i64(a, (int64_t)p->n_counts);
    for (size_t i = 0; i < p->n_counts; i++)
        rc |= prf_args_add(a, p->counts[i].name) | prf_args_add_i64(a, p->counts[i].n);
    rc |= prf_args_add_i64(a, (int64_t)p->n_channels);
    for (size_t i = 0; i < p->n_channels; i++) {
        const prf_channel *c = &p->channels[i];
        rc |= prf_args_add(a, c->channel) | prf_args_add_i64(a, c->ts) |
              prf_args_add(a, c->message_id) | prf_args_add(a, c->event);
    }
    return rc;
}

static int prf__add_sets(prf_args *a, const prf_profile *p)
{
    int rc = prf_args_add_i64(a, (int64_t)p->n_timeline);
    for (size_t i = 0; i < p->n_timeline; i++)
        rc |= prf_args_add(a, p->timeline[i].member) | prf_args_add_i64(a, p->timeline[i].ts);
    rc |= prf_args_add_i64(a, (int64_t)p->n_ids);
    for (size_t i = 0; i < p->n_ids; i++)
        rc |= prf_args_add(a, p->ids[i]);
    rc |= prf_args_add_i64(a, (int64_t)p->n_seen);
    for (size_t i = 0; i < p->n_seen; i++)
        rc |= prf_args_add(a, p->seen[i].message_id) | prf_args_add_i64(a, p->seen[i].applied_at);
    rc |= prf_args_add_i64(a, (int64_t)p->n_folded);
    for (size_t i = 0; i < p->n_folded; i++)
        rc |= prf_args_add(a, p->folded[i]);
    return rc;
}

static int prf__add_daily(prf_args *a, const prf_profile *p)
{
    int rc = prf_args_add_i64(a, (int64_t)p->n_day_counts);
    for (size_t i = 0; i < p->n_day_counts; i++) {
        const prf_day_count *c = &p->day_counts[i];
        rc |= prf_args_add_i64(a, c->day) | prf_args_add(a, c->name) | prf_args_add_i64(a, c->n);
    }
    rc |= prf_args_add_i64(a, (int64_t)p->n_day_revenue);
    for (size_t i = 0; i < p->n_day_revenue; i++)
        rc |= prf_args_add_i64(a, p->day_revenue[i].day) |
              prf_args_add_double(a, p->day_revenue[i].revenue);
    return rc;
}

int prf_args_add_profile(prf_args *a, const prf_profile *p)
{
    int rc = prf_args_add_i64(a, p->total) | prf__add_ts(a, p->first_seen) |
             prf__add_ts(a, p->last_seen) | prf_args_add_double(a, p->revenue);
    rc |= prf__add_keyed(a, p) | prf__add_sets(a, p) | prf__add_daily(a, p);
    return rc ? PRF_ENOMEM : PRF_OK;
}

int prf_args_fold(prf_args *a, const char *loser, const prf_fold_opts *o,
                  const prf_profile *snapshot)
{
    if (prf_args_add(a, loser) || prf_args_add_i64(a, o->seen_cutoff_ms) ||
        prf_args_add_i64(a, (int64_t)o->timeline_len) || prf__add_daily_opts(a, o))
        return PRF_ENOMEM;
    return prf_args_add_profile(a, snapshot);
}

/* ================================================================= reads */

void prf_read_cmd_init(prf_read_cmd *c, const prf_keys *k, int key, size_t tl_limit)
{
    memset(c, 0, sizeof(*c));
    const char *key_name = k->v[key];
    size_t key_len = k->len[key];
    switch (key) {
    case PRF_KEY_TIMELINE:
        snprintf(c->stop, sizeof(c->stop), "%lld", (long long)tl_limit - 1);
        c->argc = 4;
        c->argv[0] = "ZREVRANGE";
        c->argv[3] = c->stop;
        break;
    case PRF_KEY_SEEN:
        c->argc = 5;
        c->argv[0] = "ZRANGE";
        c->argv[3] = "-1";
        c->argv[4] = "WITHSCORES";
        break;
    default:
        c->argc = 2;
        c->argv[0] = "HGETALL";
        break;
    }
    if (c->argc > 2)
        c->argv[2] = "0";
    c->argv[1] = key_name;
    for (int i = 0; i < c->argc; i++)
        c->len[i] = i == 1 ? key_len : strlen(c->argv[i]);
}

int prf_read_is_view_key(int key)
{
    return key == PRF_KEY_MAIN || key == PRF_KEY_TIMELINE;
}

static int prf__is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Parses a whole decimal integer, or a score Redis printed as a double. */
static int prf__parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end != s && *end == '\0' && errno == 0) {
        *out = v;
        return 0;
    }
    double d = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(d) || fabs(d) > (double)INT64_MAX)
        return -1;
    *out = (int64_t)llround(d);
    return 0;
}

/* An array of strings, of even length when `pairs`? */
static int prf__is_strings(const redisReply *r, int pairs)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || (pairs && r->elements % 2))
        return 0;
    for (size_t i = 0; i < r->elements; i++)
        if (!prf__is_str(r->element[i]))
            return 0;
    return 1;
}

/* "<ts>:<len(mid)>:<mid><event>" */
static int prf__load_channel(prf_profile *p, const char *ch, const char *v)
{
    char *end;
    errno = 0;
    long long ts = strtoll(v, &end, 10);
    if (end == v || *end != ':' || errno)
        return -1;
    const char *l = end + 1;
    unsigned long long ml = strtoull(l, &end, 10);
    if (end == l || *end != ':' || ml > strlen(end + 1))
        return -1;
    char *mid = strndup(end + 1, (size_t)ml);
    if (!mid)
        return -1;
    int rc = prf_profile_push_channel(p, ch, ts, mid, end + 1 + ml);
    free(mid);
    return rc ? -1 : 0;
}

/* A scalar field of the main hash. Unknown fields are ignored, so that a
 * newer version may add some. */
static int prf__load_scalar(prf_profile *p, const char *f, const char *v)
{
    if (strcmp(f, "total") == 0)
        return prf__parse_i64(v, &p->total);
    if (strcmp(f, "first_seen") == 0)
        return prf__parse_i64(v, &p->first_seen);
    if (strcmp(f, "last_seen") == 0)
        return prf__parse_i64(v, &p->last_seen);
    if (strcmp(f, "revenue") == 0) {
        p->revenue = strtod(v, NULL);
        return 0;
    }
    if (strcmp(f, "merged_into") == 0)
        return prf_profile_set_merged_into(p, v);
    return 0;
}

/* One field of the main hash: a prefixed entry or a scalar. */
static int prf__load_field(prf_profile *p, const char *f, const char *v)
{
    int64_t n;
    if (f[0] == '\0' || f[1] != ':')
        return prf__load_scalar(p, f, v);
    const char *name = f + 2;
    switch (f[0]) {
    case 't': return prf_profile_push_trait(p, name, v, PRF_TS_NONE, "");
    case 'n': return prf__parse_i64(v, &n) ? -1 : prf_profile_push_count(p, name, n);
    case 'c': return prf__load_channel(p, name, v);
    case 'i': return prf_profile_push_id(p, name);
    case 'f': return prf_profile_push_folded(p, name);
    default: return 0;
    }
}

static int prf__load_main(prf_profile *p, const redisReply *m)
{
    for (size_t i = 0; i < m->elements; i += 2)
        if (prf__load_field(p, m->element[i]->str, m->element[i + 1]->str) != 0)
            return -1;
    return 0;
}

/* "<ts>:<message_id>" */
static int prf__parse_stamp(const char *stamp, int64_t *ts, const char **mid)
{
    char buf[PRF_I64_CHARS + 1];
    const char *colon = strchr(stamp, ':');
    size_t tl = colon ? (size_t)(colon - stamp) : 0;
    if (tl == 0 || tl > PRF_I64_CHARS)
        return -1;
    memcpy(buf, stamp, tl);
    buf[tl] = '\0';
    if (prf__parse_i64(buf, ts) != 0)
        return -1;
    *mid = colon + 1;
    return 0;
}

static int prf__cmp_trait_ptr(const void *a, const void *b)
{
    return strcmp((*(prf_trait *const *)a)->key, (*(prf_trait *const *)b)->key);
}

/* Matches stamps to the traits loaded before (sorted index + bsearch, so a
 * large trait set stays n log n). A stamp without its trait is ignored. */
static int prf__load_trait_ts(prf_profile *p, const redisReply *r)
{
    prf_trait **index = malloc((p->n_traits ? p->n_traits : 1) * sizeof(*index));
    if (!index)
        return -1;
    for (size_t i = 0; i < p->n_traits; i++)
        index[i] = &p->traits[i];
    qsort(index, p->n_traits, sizeof(*index), prf__cmp_trait_ptr);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->elements; i += 2) {
        prf_trait want = { .key = r->element[i]->str };
        prf_trait *wp = &want;
        prf_trait **hit = bsearch(&wp, index, p->n_traits, sizeof(*index), prf__cmp_trait_ptr);
        int64_t ts;
        const char *mid;
        if (prf__parse_stamp(r->element[i + 1]->str, &ts, &mid) != 0)
            rc = -1;
        else if (hit) {
            char *copy = strdup(mid);
            if (!copy) {
                rc = -1;
            } else {
                free((*hit)->message_id);
                (*hit)->message_id = copy;
                (*hit)->ts = ts;
            }
        }
    }
    free(index);
    return rc;
}

/* message id / applied-at pairs */
static int prf__load_seen(prf_profile *p, const redisReply *r)
{
    for (size_t i = 0; i < r->elements; i += 2) {
        int64_t at;
        if (prf__parse_i64(r->element[i + 1]->str, &at) != 0 ||
            prf_profile_push_seen(p, r->element[i]->str, at) != 0)
            return -1;
    }
    return 0;
}

/* "n:<day>:<count name>" -> count, "r:<day>" -> revenue. Other fields are
 * ignored (a newer version may add some). */
static int prf__load_daily_field(prf_profile *p, const char *f, const char *v)
{
    if ((f[0] != 'n' && f[0] != 'r') || f[1] != ':')
        return 0;
    char *end;
    errno = 0;
    long long day = strtoll(f + 2, &end, 10);
    if (end == f + 2 || errno)
        return -1;
    if (f[0] == 'r') {
        double rev = strtod(v, &end);
        if (*end != '\0' || end == v)
            return -1;
        return prf_profile_push_day_revenue(p, day, rev) ? -1 : 0;
    }
    int64_t n;
    if (*end != ':' || prf__parse_i64(v, &n) != 0)
        return -1;
    return prf_profile_push_day_count(p, day, end + 1, n) ? -1 : 0;
}

static int prf__load_daily(prf_profile *p, const redisReply *r)
{
    for (size_t i = 0; i < r->elements; i += 2)
        if (prf__load_daily_field(p, r->element[i]->str, r->element[i + 1]->str) != 0)
            return -1;
    return 0;
}

/* Timeline members carry their event time (prf_event.h). */
static int prf__load_timeline(prf_profile *p, const redisReply *r)
{
    for (size_t i = 0; i < r->elements; i++) {
        int64_t ts;
        if (prf_tl_member_ts(r->element[i]->str, &ts) != 0 ||
            prf_profile_push_timeline(p, r->element[i]->str, ts) != 0)
            return -1;
    }
    return 0;
}

int prf_profile_load(prf_profile *p, int key, const redisReply *r)
{
    if (!prf__is_strings(r, key != PRF_KEY_TIMELINE))
        return -1;
    switch (key) {
    case PRF_KEY_MAIN: return prf__load_main(p, r);
    case PRF_KEY_TRAIT_TS: return prf__load_trait_ts(p, r);
    case PRF_KEY_TIMELINE: return prf__load_timeline(p, r);
    case PRF_KEY_SEEN: return prf__load_seen(p, r);
    case PRF_KEY_DAILY: return prf__load_daily(p, r);
    default: return -1;
    }
}

/* =============================================================== replies */

static int prf__fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "malformed profile reply: %s", what);
    return -1;
}

/* Reads the status word and, on a redirect, the survivor. */
static int prf__status(const redisReply *r, prf_reply_status *status, char **into)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !prf__is_str(r->element[0]))
        return -1;
    const char *s = r->element[0]->str;
    if (strcmp(s, "ok") == 0 || strcmp(s, "folded") == 0)
        *status = PRF_REPLY_OK;
    else if (strcmp(s, "already") == 0)
        *status = PRF_REPLY_ALREADY;
    else if (strcmp(s, "redirect") == 0)
        *status = PRF_REPLY_REDIRECT;
    else
        return -1;
    if (*status != PRF_REPLY_REDIRECT)
        return 0;
    if (r->elements < 2 || !prf__is_str(r->element[1]) || !r->element[1]->str[0])
        return -1;
    *into = strdup(r->element[1]->str);
    return *into ? 0 : -1;
}

int prf_reply_snapshot(const redisReply *r, prf_profile *out, char *err, size_t errlen)
{
    prf_profile_init(out);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 + PRF_KEY_COUNT ||
        !prf__is_str(r->element[0]) || strcmp(r->element[0]->str, "ok") != 0)
        return prf__fail(err, errlen, "snapshot shape");
    for (int k = 0; k < PRF_KEY_COUNT; k++) {
        if (prf_profile_load(out, k, r->element[2 + k]) != 0) {
            prf_profile_clear(out);
            return prf__fail(err, errlen, "snapshot field");
        }
    }
    if (!out->merged_into) {
        prf_profile_clear(out);
        return prf__fail(err, errlen, "snapshot without tombstone");
    }
    return 0;
}

/* The flags of a redirected apply. */
static int prf__dup_flags(const redisReply *f, size_t n, unsigned char *flags, long long *dups)
{
    if (!f || f->type != REDIS_REPLY_ARRAY || f->elements != n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (f->element[i]->type != REDIS_REPLY_INTEGER)
            return -1;
        flags[i] = f->element[i]->integer != 0;
        *dups += flags[i];
    }
    return 0;
}

int prf_reply_apply(const redisReply *r, size_t n_events, prf_reply_status *status,
                    long long *applied, long long *duplicates, unsigned char *dup_flags,
                    char **into, char *err, size_t errlen)
{
    *into = NULL;
    *applied = *duplicates = 0;
    if (prf__status(r, status, into) != 0 ||
        (*status != PRF_REPLY_OK && *status != PRF_REPLY_REDIRECT))
        return prf__fail(err, errlen, "apply status");
    if (*status == PRF_REPLY_REDIRECT) {
        if (r->elements == 3 &&
            prf__dup_flags(r->element[2], n_events, dup_flags, duplicates) == 0)
            return 0;
        free(*into);
        *into = NULL;
        return prf__fail(err, errlen, "apply redirect flags");
    }
    if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER)
        return prf__fail(err, errlen, "apply counts");
    *applied = r->element[1]->integer;
    *duplicates = r->element[2]->integer;
    return 0;
}

int prf_reply_fold(const redisReply *r, prf_reply_status *status, char **into, char *err,
                   size_t errlen)
{
    *into = NULL;
    if (prf__status(r, status, into) != 0)
        return prf__fail(err, errlen, "fold status");
    return 0;
}
