/* prf_codec: keys, script arguments and reply parsing (see prf_codec.h). */
#include "prf_codec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRF_KEY_PREFIX "cdp:prf:{p:"

static const char *const prf__key_suffix[PRF_KEY_COUNT] = {
    "}", "}:traits", "}:trait_ts", "}:counts", "}:channels",
    "}:timeline", "}:ids", "}:seen", "}:folded",
};

/* Decimal digits an int64 needs, with sign: "-9223372036854775808". */
enum { PRF_I64_CHARS = 21, PRF_DOUBLE_CHARS = 32 };

/* ================================================================== keys */

int prf_keys_init(prf_keys *k, const char *master)
{
    memset(k, 0, sizeof(*k));
    size_t pl = strlen(PRF_KEY_PREFIX), ml = strlen(master);
    for (int i = 0; i < PRF_KEY_COUNT; i++) {
        size_t sl = strlen(prf__key_suffix[i]);
        k->v[i] = malloc(pl + ml + sl + 1);
        if (!k->v[i]) {
            prf_keys_free(k);
            return PRF_ENOMEM;
        }
        memcpy(k->v[i], PRF_KEY_PREFIX, pl);
        memcpy(k->v[i] + pl, master, ml);
        memcpy(k->v[i] + pl + ml, prf__key_suffix[i], sl + 1);
        k->len[i] = pl + ml + sl;
    }
    return PRF_OK;
}

void prf_keys_free(prf_keys *k)
{
    for (int i = 0; i < PRF_KEY_COUNT; i++)
        free(k->v[i]);
    memset(k, 0, sizeof(*k));
}

/* ============================================================= arguments */

void prf_args_init(prf_args *a)
{
    memset(a, 0, sizeof(*a));
}

void prf_args_free(prf_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    free(a->len);
    prf_args_init(a);
}

int prf_args_addn(prf_args *a, const char *s, size_t len)
{
    enum { PRF_ARGS_INITIAL = 16 };
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
    char *copy = malloc(len + 1);
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

int prf_args_add_i64(prf_args *a, int64_t v)
{
    char buf[PRF_I64_CHARS + 1];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    return prf_args_addn(a, buf, (size_t)n);
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

int prf_args_apply_header(prf_args *a, int64_t now_ms, int64_t cutoff_ms, size_t timeline_len,
                          size_t n_events)
{
    if (prf_args_add_i64(a, now_ms) || prf_args_add_i64(a, cutoff_ms) ||
        prf_args_add_i64(a, (int64_t)timeline_len) || prf_args_add_i64(a, (int64_t)n_events))
        return PRF_ENOMEM;
    return PRF_OK;
}

int prf_args_add_delta(prf_args *a, const prf_delta *d)
{
    int rc = prf_args_add(a, d->message_id) | prf_args_add_i64(a, d->ts) |
             prf_args_add(a, d->count_name) | prf_args_add(a, d->channel) |
             prf_args_add(a, d->tl_member);
    rc |= d->has_revenue ? prf_args_add_double(a, d->revenue) : prf_args_add(a, "");
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

int prf_args_add_profile(prf_args *a, const prf_profile *p)
{
    int rc = prf_args_add_i64(a, p->total) | prf__add_ts(a, p->first_seen) |
             prf__add_ts(a, p->last_seen) | prf_args_add_double(a, p->revenue);
    rc |= prf__add_keyed(a, p) | prf__add_sets(a, p);
    return rc ? PRF_ENOMEM : PRF_OK;
}

int prf_args_fold(prf_args *a, const char *loser, int64_t cutoff_ms, size_t timeline_len,
                  const prf_profile *snapshot)
{
    if (prf_args_add(a, loser) || prf_args_add_i64(a, cutoff_ms) ||
        prf_args_add_i64(a, (int64_t)timeline_len))
        return PRF_ENOMEM;
    return prf_args_add_profile(a, snapshot);
}

/* =============================================================== replies */

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

/* A flat [k1, v1, k2, v2, ...] array of strings? */
static int prf__is_pairs(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return 0;
    for (size_t i = 0; i < r->elements; i++)
        if (!prf__is_str(r->element[i]))
            return 0;
    return 1;
}

static int prf__is_strings(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < r->elements; i++)
        if (!prf__is_str(r->element[i]))
            return 0;
    return 1;
}

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
    else if (strcmp(s, "missing") == 0)
        *status = PRF_REPLY_MISSING;
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

static int prf__load_main(const redisReply *m, prf_profile *p)
{
    for (size_t i = 0; i < m->elements; i += 2) {
        const char *f = m->element[i]->str, *v = m->element[i + 1]->str;
        int rc = 0;
        if (strcmp(f, "total") == 0)
            rc = prf__parse_i64(v, &p->total);
        else if (strcmp(f, "first_seen") == 0)
            rc = prf__parse_i64(v, &p->first_seen);
        else if (strcmp(f, "last_seen") == 0)
            rc = prf__parse_i64(v, &p->last_seen);
        else if (strcmp(f, "revenue") == 0)
            p->revenue = strtod(v, NULL);
        else if (strcmp(f, "merged_into") == 0)
            rc = prf_profile_set_merged_into(p, v);
        if (rc)
            return -1;
    }
    return 0;
}

/* The stamp of a trait, from the trait_ts hash (sorted by key for
 * bsearch). A trait without a stamp loses to any write, as in the Lua. */
typedef struct {
    const char *key;
    const char *stamp;
} prf__kv;

static int prf__kv_cmp(const void *a, const void *b)
{
    return strcmp(((const prf__kv *)a)->key, ((const prf__kv *)b)->key);
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

static int prf__load_traits(const redisReply *vals, const redisReply *stamps, prf_profile *p)
{
    size_t ns = stamps->elements / 2;
    prf__kv *kv = malloc((ns ? ns : 1) * sizeof(*kv));
    if (!kv)
        return -1;
    for (size_t i = 0; i < ns; i++)
        kv[i] = (prf__kv){ stamps->element[2 * i]->str, stamps->element[2 * i + 1]->str };
    qsort(kv, ns, sizeof(*kv), prf__kv_cmp);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < vals->elements; i += 2) {
        prf__kv want = { vals->element[i]->str, NULL };
        const prf__kv *hit = bsearch(&want, kv, ns, sizeof(*kv), prf__kv_cmp);
        int64_t ts = PRF_TS_NONE;
        const char *mid = "";
        if (hit && prf__parse_stamp(hit->stamp, &ts, &mid) != 0)
            rc = -1;
        if (rc == 0)
            rc = prf_profile_push_trait(p, want.key, vals->element[i + 1]->str, ts, mid);
    }
    free(kv);
    return rc ? -1 : 0;
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

static int prf__load_rest(const redisReply *const *e, prf_profile *p)
{
    const redisReply *counts = e[0], *chans = e[1], *tl = e[2], *ids = e[3], *seen = e[4],
                     *folded = e[5];
    int64_t n;
    for (size_t i = 0; i < counts->elements; i += 2)
        if (prf__parse_i64(counts->element[i + 1]->str, &n) ||
            prf_profile_push_count(p, counts->element[i]->str, n))
            return -1;
    for (size_t i = 0; i < chans->elements; i += 2)
        if (prf__load_channel(p, chans->element[i]->str, chans->element[i + 1]->str))
            return -1;
    for (size_t i = 0; i < tl->elements; i += 2)
        if (prf__parse_i64(tl->element[i + 1]->str, &n) ||
            prf_profile_push_timeline(p, tl->element[i]->str, n))
            return -1;
    for (size_t i = 0; i < ids->elements; i++)
        if (prf_profile_push_id(p, ids->element[i]->str))
            return -1;
    for (size_t i = 0; i < seen->elements; i += 2)
        if (prf__parse_i64(seen->element[i + 1]->str, &n) ||
            prf_profile_push_seen(p, seen->element[i]->str, n))
            return -1;
    for (size_t i = 0; i < folded->elements; i++)
        if (prf_profile_push_folded(p, folded->element[i]->str))
            return -1;
    return 0;
}

/* Snapshot reply elements after status and survivor. */
enum {
    PRF_SNAP_MAIN = 2, PRF_SNAP_TRAITS, PRF_SNAP_TRAIT_TS, PRF_SNAP_COUNTS, PRF_SNAP_CHANNELS,
    PRF_SNAP_TIMELINE, PRF_SNAP_IDS, PRF_SNAP_SEEN, PRF_SNAP_FOLDED, PRF_SNAP_ELEMENTS
};

static int prf__snapshot_shape(const redisReply *r)
{
    if (r->elements != PRF_SNAP_ELEMENTS)
        return 0;
    for (int i = PRF_SNAP_MAIN; i < PRF_SNAP_ELEMENTS; i++) {
        int sets = i == PRF_SNAP_IDS || i == PRF_SNAP_FOLDED;
        if (sets ? !prf__is_strings(r->element[i]) : !prf__is_pairs(r->element[i]))
            return 0;
    }
    return 1;
}

int prf_reply_snapshot(const redisReply *r, prf_reply_status *status, prf_profile *out,
                       char **into, char *err, size_t errlen)
{
    prf_profile_init(out);
    *into = NULL;
    if (prf__status(r, status, into) != 0 || *status == PRF_REPLY_ALREADY)
        return prf__fail(err, errlen, "status");
    if (*status != PRF_REPLY_OK)
        return 0;
    if (!prf__snapshot_shape(r))
        return prf__fail(err, errlen, "snapshot shape");
    const redisReply *const *e = (const redisReply *const *)r->element;
    if (prf__load_main(e[PRF_SNAP_MAIN], out) ||
        prf__load_traits(e[PRF_SNAP_TRAITS], e[PRF_SNAP_TRAIT_TS], out) ||
        prf__load_rest(e + PRF_SNAP_COUNTS, out)) {
        prf_profile_clear(out);
        return prf__fail(err, errlen, "snapshot field");
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
    if (prf__status(r, status, into) != 0 || *status == PRF_REPLY_MISSING)
        return prf__fail(err, errlen, "fold status");
    return 0;
}
