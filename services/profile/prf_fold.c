/* prf_fold: the profile's fold rules (see prf_fold.h). Pure: no I/O.
 *
 * The arrays are small in practice (tens of traits and channels, a timeline
 * of ~100) so lookups are linear scans; the seen record can be larger, but
 * this code folds it only in tests and when parsing a snapshot. */
#include "prf_fold.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ helpers */

/* Grows *arr (of elements of `size` bytes) so that it holds n + 1 elements. */
static int prf__reserve(void **arr, size_t *cap, size_t n, size_t size)
{
    enum { PRF_INITIAL_CAP = 8 };
    if (n < *cap)
        return PRF_OK;
    size_t ncap = *cap ? *cap * 2 : PRF_INITIAL_CAP;
    void *na = realloc(*arr, ncap * size);
    if (!na)
        return PRF_ENOMEM;
    *arr = na;
    *cap = ncap;
    return PRF_OK;
}

#define PRF_RESERVE(p, field) \
    prf__reserve((void **)&(p)->field, &(p)->cap_##field, (p)->n_##field, sizeof(*(p)->field))

/* Replaces *slot with a copy of s. */
static int prf__set_str(char **slot, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return PRF_ENOMEM;
    free(*slot);
    *slot = copy;
    return PRF_OK;
}

static void prf__free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ============================================================= lifecycle */

void prf_profile_init(prf_profile *p)
{
    memset(p, 0, sizeof(*p));
    p->first_seen = PRF_TS_NONE;
    p->last_seen = PRF_TS_NONE;
}

void prf_profile_clear(prf_profile *p)
{
    for (size_t i = 0; i < p->n_traits; i++) {
        free(p->traits[i].key);
        free(p->traits[i].json);
        free(p->traits[i].message_id);
    }
    free(p->traits);
    for (size_t i = 0; i < p->n_counts; i++)
        free(p->counts[i].name);
    free(p->counts);
    for (size_t i = 0; i < p->n_channels; i++) {
        free(p->channels[i].channel);
        free(p->channels[i].message_id);
        free(p->channels[i].event);
    }
    free(p->channels);
    for (size_t i = 0; i < p->n_timeline; i++)
        free(p->timeline[i].member);
    free(p->timeline);
    prf__free_strs(p->ids, p->n_ids);
    for (size_t i = 0; i < p->n_seen; i++)
        free(p->seen[i].message_id);
    free(p->seen);
    prf__free_strs(p->folded, p->n_folded);
    for (size_t i = 0; i < p->n_day_counts; i++)
        free(p->day_counts[i].name);
    free(p->day_counts);
    free(p->day_revenue);
    free(p->merged_into);
    prf_profile_init(p);
}

/* ============================================================= the rules */

/* Byte order, independent of any locale (strcmp compares unsigned chars). */
int prf_stamp_cmp(int64_t ts_a, const char *mid_a, int64_t ts_b, const char *mid_b)
{
    if (ts_a != ts_b)
        return ts_a < ts_b ? -1 : 1;
    int c = strcmp(mid_a, mid_b);
    return (c > 0) - (c < 0);
}

int prf_tl_cmp(const prf_tl_entry *a, const prf_tl_entry *b)
{
    return prf_stamp_cmp(a->ts, a->member, b->ts, b->member);
}

/* Floor division (C's / truncates toward zero). */
static int64_t prf__floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t prf_day_of(int64_t ts_ms)
{
    return prf__floor_div(ts_ms, PRF_MS_PER_DAY);
}

int64_t prf_daily_cut(int64_t newest_day, int64_t retention_days)
{
    if (retention_days <= 0 || newest_day == PRF_DAY_NONE)
        return PRF_DAY_NONE;
    return prf__floor_div(newest_day, PRF_DAILY_TRIM_STEP_DAYS) * PRF_DAILY_TRIM_STEP_DAYS -
           retention_days + 1;
}

/* Skips [0-9]* and returns how many digits there were. */
static size_t prf__digits(const char **s)
{
    size_t n = 0;
    while (isdigit((unsigned char)**s)) {
        (*s)++;
        n++;
    }
    return n;
}

int prf_revenue_parse_string(const char *s, double *out)
{
    const char *q = s;
    if (*q == '+' || *q == '-')
        q++;
    size_t digits = prf__digits(&q);
    if (*q == '.') {
        q++;
        digits += prf__digits(&q);
    }
    if (digits == 0)
        return 0;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (prf__digits(&q) == 0)
            return 0;
    }
    if (*q != '\0')
        return 0;
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* ============================================================== lookups */

static prf_trait *prf__trait(const prf_profile *p, const char *key)
{
    for (size_t i = 0; i < p->n_traits; i++)
        if (strcmp(p->traits[i].key, key) == 0)
            return &p->traits[i];
    return NULL;
}

const prf_trait *prf_profile_trait(const prf_profile *p, const char *key)
{
    return prf__trait(p, key);
}

static prf_count *prf__count(const prf_profile *p, const char *name)
{
    for (size_t i = 0; i < p->n_counts; i++)
        if (strcmp(p->counts[i].name, name) == 0)
            return &p->counts[i];
    return NULL;
}

int64_t prf_profile_count(const prf_profile *p, const char *name)
{
    const prf_count *c = prf__count(p, name);
    return c ? c->n : 0;
}

static prf_channel *prf__channel(const prf_profile *p, const char *channel)
{
    for (size_t i = 0; i < p->n_channels; i++)
        if (strcmp(p->channels[i].channel, channel) == 0)
            return &p->channels[i];
    return NULL;
}

const prf_channel *prf_profile_channel(const prf_profile *p, const char *channel)
{
    return prf__channel(p, channel);
}

static int prf__has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

int prf_profile_has_id(const prf_profile *p, const char *id)
{
    return prf__has(p->ids, p->n_ids, id);
}

int prf_profile_has_folded(const prf_profile *p, const char *master_id)
{
    return prf__has(p->folded, p->n_folded, master_id);
}

static prf_seen *prf__seen(const prf_profile *p, const char *message_id)
{
    for (size_t i = 0; i < p->n_seen; i++)
        if (strcmp(p->seen[i].message_id, message_id) == 0)
            return &p->seen[i];
    return NULL;
}

const prf_seen *prf_profile_seen(const prf_profile *p, const char *message_id)
{
    return prf__seen(p, message_id);
}

static prf_day_count *prf__day_count(const prf_profile *p, int64_t day, const char *name)
{
    for (size_t i = 0; i < p->n_day_counts; i++)
        if (p->day_counts[i].day == day && strcmp(p->day_counts[i].name, name) == 0)
            return &p->day_counts[i];
    return NULL;
}

int64_t prf_profile_day_count(const prf_profile *p, int64_t day, const char *name)
{
    const prf_day_count *c = prf__day_count(p, day, name);
    return c ? c->n : 0;
}

static prf_day_revenue *prf__day_revenue(const prf_profile *p, int64_t day)
{
    for (size_t i = 0; i < p->n_day_revenue; i++)
        if (p->day_revenue[i].day == day)
            return &p->day_revenue[i];
    return NULL;
}

const prf_day_revenue *prf_profile_day_revenue(const prf_profile *p, int64_t day)
{
    return prf__day_revenue(p, day);
}

/* ============================================================== loading */

int prf_profile_push_trait(prf_profile *p, const char *key, const char *json, int64_t ts,
                           const char *mid)
{
    if (PRF_RESERVE(p, traits))
        return PRF_ENOMEM;
    prf_trait t = { strdup(key), strdup(json), ts, strdup(mid) };
    if (!t.key || !t.json || !t.message_id) {
        free(t.key);
        free(t.json);
        free(t.message_id);
        return PRF_ENOMEM;
    }
    p->traits[p->n_traits++] = t;
    return PRF_OK;
}

int prf_profile_push_count(prf_profile *p, const char *name, int64_t n)
{
    if (PRF_RESERVE(p, counts))
        return PRF_ENOMEM;
    char *copy = strdup(name);
    if (!copy)
        return PRF_ENOMEM;
    p->counts[p->n_counts++] = (prf_count){ copy, n };
    return PRF_OK;
}

int prf_profile_push_channel(prf_profile *p, const char *channel, int64_t ts, const char *mid,
                             const char *event)
{
    if (PRF_RESERVE(p, channels))
        return PRF_ENOMEM;
    prf_channel c = { strdup(channel), ts, strdup(mid), strdup(event) };
    if (!c.channel || !c.message_id || !c.event) {
        free(c.channel);
        free(c.message_id);
        free(c.event);
        return PRF_ENOMEM;
    }
    p->channels[p->n_channels++] = c;
    return PRF_OK;
}

int prf_profile_push_timeline(prf_profile *p, const char *member, int64_t ts)
{
    if (PRF_RESERVE(p, timeline))
        return PRF_ENOMEM;
    char *copy = strdup(member);
    if (!copy)
        return PRF_ENOMEM;
    p->timeline[p->n_timeline++] = (prf_tl_entry){ copy, ts };
    return PRF_OK;
}

/* Appends a copy of s to a string array. */
static int prf__push_str(char ***v, size_t *n, size_t *cap, const char *s)
{
    if (prf__reserve((void **)v, cap, *n, sizeof(**v)))
        return PRF_ENOMEM;
    char *copy = strdup(s);
    if (!copy)
        return PRF_ENOMEM;
    (*v)[(*n)++] = copy;
    return PRF_OK;
}

int prf_profile_push_id(prf_profile *p, const char *id)
{
    return prf__push_str(&p->ids, &p->n_ids, &p->cap_ids, id);
}

int prf_profile_push_seen(prf_profile *p, const char *message_id, int64_t applied_at)
{
    if (PRF_RESERVE(p, seen))
        return PRF_ENOMEM;
    char *copy = strdup(message_id);
    if (!copy)
        return PRF_ENOMEM;
    p->seen[p->n_seen++] = (prf_seen){ copy, applied_at };
    return PRF_OK;
}

int prf_profile_push_folded(prf_profile *p, const char *master_id)
{
    return prf__push_str(&p->folded, &p->n_folded, &p->cap_folded, master_id);
}

int prf_profile_push_day_count(prf_profile *p, int64_t day, const char *name, int64_t n)
{
    if (PRF_RESERVE(p, day_counts))
        return PRF_ENOMEM;
    char *copy = strdup(name);
    if (!copy)
        return PRF_ENOMEM;
    p->day_counts[p->n_day_counts++] = (prf_day_count){ day, copy, n };
    return PRF_OK;
}

int prf_profile_push_day_revenue(prf_profile *p, int64_t day, double revenue)
{
    if (PRF_RESERVE(p, day_revenue))
        return PRF_ENOMEM;
    p->day_revenue[p->n_day_revenue++] = (prf_day_revenue){ day, revenue };
    return PRF_OK;
}

/* ============================================================== setters */

int prf_profile_put_trait(prf_profile *p, const char *key, const char *json,
                          int64_t ts, const char *mid, int *changed)
{
    if (changed)
        *changed = 0;
    prf_trait *t = prf__trait(p, key);
    if (t && prf_stamp_cmp(ts, mid, t->ts, t->message_id) <= 0)
        return PRF_OK;
    if (t) {
        if (prf__set_str(&t->json, json) || prf__set_str(&t->message_id, mid))
            return PRF_ENOMEM;
        t->ts = ts;
    } else if (prf_profile_push_trait(p, key, json, ts, mid)) {
        return PRF_ENOMEM;
    }
    if (changed)
        *changed = 1;
    return PRF_OK;
}

int prf_profile_add_count(prf_profile *p, const char *name, int64_t n)
{
    prf_count *c = prf__count(p, name);
    if (!c)
        return prf_profile_push_count(p, name, n);
    c->n += n;
    return PRF_OK;
}

int prf_profile_put_channel(prf_profile *p, const char *channel, int64_t ts,
                            const char *mid, const char *event)
{
    prf_channel *c = prf__channel(p, channel);
    if (!c)
        return prf_profile_push_channel(p, channel, ts, mid, event);
    if (prf_stamp_cmp(ts, mid, c->ts, c->message_id) <= 0)
        return PRF_OK;
    if (prf__set_str(&c->message_id, mid) || prf__set_str(&c->event, event))
        return PRF_ENOMEM;
    c->ts = ts;
    return PRF_OK;
}

int prf_profile_add_timeline(prf_profile *p, const char *member, int64_t ts)
{
    for (size_t i = 0; i < p->n_timeline; i++)
        if (strcmp(p->timeline[i].member, member) == 0)
            return PRF_OK;
    return prf_profile_push_timeline(p, member, ts);
}

int prf_profile_add_id(prf_profile *p, const char *id)
{
    return prf__has(p->ids, p->n_ids, id) ? PRF_OK : prf_profile_push_id(p, id);
}

int prf_profile_add_seen(prf_profile *p, const char *message_id, int64_t applied_at)
{
    prf_seen *s = prf__seen(p, message_id);
    if (!s)
        return prf_profile_push_seen(p, message_id, applied_at);
    if (applied_at > s->applied_at)
        s->applied_at = applied_at;
    return PRF_OK;
}

int prf_profile_add_folded(prf_profile *p, const char *master_id)
{
    return prf__has(p->folded, p->n_folded, master_id) ? PRF_OK
                                                       : prf_profile_push_folded(p, master_id);
}

int prf_profile_add_day_count(prf_profile *p, int64_t day, const char *name, int64_t n)
{
    prf_day_count *c = prf__day_count(p, day, name);
    if (!c)
        return prf_profile_push_day_count(p, day, name, n);
    c->n += n;
    return PRF_OK;
}

int prf_profile_add_day_revenue(prf_profile *p, int64_t day, double revenue)
{
    prf_day_revenue *r = prf__day_revenue(p, day);
    if (!r)
        return prf_profile_push_day_revenue(p, day, revenue);
    r->revenue += revenue;
    return PRF_OK;
}

void prf_profile_see(prf_profile *p, int64_t ts)
{
    if (p->first_seen == PRF_TS_NONE || ts < p->first_seen)
        p->first_seen = ts;
    if (p->last_seen == PRF_TS_NONE || ts > p->last_seen)
        p->last_seen = ts;
}

int prf_profile_set_merged_into(prf_profile *p, const char *survivor)
{
    return prf__set_str(&p->merged_into, survivor);
}

static int prf__tl_qsort_cmp(const void *a, const void *b)
{
    return prf_tl_cmp(a, b);
}

void prf_profile_trim_timeline(prf_profile *p, size_t len)
{
    if (p->n_timeline > 1) /* an empty profile has no array: qsort wants one */
        qsort(p->timeline, p->n_timeline, sizeof(*p->timeline), prf__tl_qsort_cmp);
    if (p->n_timeline <= len)
        return;
    size_t drop = p->n_timeline - len;
    for (size_t i = 0; i < drop; i++)
        free(p->timeline[i].member);
    memmove(p->timeline, p->timeline + drop, len * sizeof(*p->timeline));
    p->n_timeline = len;
}

void prf_profile_trim_seen(prf_profile *p, int64_t cutoff_ms)
{
    size_t kept = 0;
    for (size_t i = 0; i < p->n_seen; i++) {
        if (p->seen[i].applied_at < cutoff_ms)
            free(p->seen[i].message_id);
        else
            p->seen[kept++] = p->seen[i];
    }
    p->n_seen = kept;
}

void prf_profile_trim_daily(prf_profile *p, int64_t first_day)
{
    size_t kept = 0;
    for (size_t i = 0; i < p->n_day_counts; i++) {
        if (p->day_counts[i].day < first_day)
            free(p->day_counts[i].name);
        else
            p->day_counts[kept++] = p->day_counts[i];
    }
    p->n_day_counts = kept;
    kept = 0;
    for (size_t i = 0; i < p->n_day_revenue; i++)
        if (p->day_revenue[i].day >= first_day)
            p->day_revenue[kept++] = p->day_revenue[i];
    p->n_day_revenue = kept;
}

/* ======================================================== fold and apply */

static int prf__merge_keyed(prf_profile *dst, const prf_profile *src)
{
    for (size_t i = 0; i < src->n_traits; i++) {
        const prf_trait *t = &src->traits[i];
        if (prf_profile_put_trait(dst, t->key, t->json, t->ts, t->message_id, NULL))
            return PRF_ENOMEM;
    }
    for (size_t i = 0; i < src->n_counts; i++)
        if (prf_profile_add_count(dst, src->counts[i].name, src->counts[i].n))
            return PRF_ENOMEM;
    for (size_t i = 0; i < src->n_channels; i++) {
        const prf_channel *c = &src->channels[i];
        if (prf_profile_put_channel(dst, c->channel, c->ts, c->message_id, c->event))
            return PRF_ENOMEM;
    }
    return PRF_OK;
}

static int prf__merge_sets(prf_profile *dst, const prf_profile *src)
{
    for (size_t i = 0; i < src->n_timeline; i++)
        if (prf_profile_add_timeline(dst, src->timeline[i].member, src->timeline[i].ts))
            return PRF_ENOMEM;
    for (size_t i = 0; i < src->n_ids; i++)
        if (prf_profile_add_id(dst, src->ids[i]))
            return PRF_ENOMEM;
    for (size_t i = 0; i < src->n_seen; i++)
        if (prf_profile_add_seen(dst, src->seen[i].message_id, src->seen[i].applied_at))
            return PRF_ENOMEM;
    for (size_t i = 0; i < src->n_folded; i++)
        if (prf_profile_add_folded(dst, src->folded[i]))
            return PRF_ENOMEM;
    return PRF_OK;
}

/* The daily buckets, once dst's last seen includes src's: dst drops the
 * days before the cut, and src's buckets from the cut on are added. */
static int prf__merge_daily(prf_profile *dst, const prf_profile *src, int64_t retention_days)
{
    int64_t newest = dst->last_seen == PRF_TS_NONE ? PRF_DAY_NONE : prf_day_of(dst->last_seen);
    int64_t cut = prf_daily_cut(newest, retention_days);
    prf_profile_trim_daily(dst, cut);
    for (size_t i = 0; i < src->n_day_counts; i++) {
        const prf_day_count *c = &src->day_counts[i];
        if (c->day >= cut && prf_profile_add_day_count(dst, c->day, c->name, c->n))
            return PRF_ENOMEM;
    }
    for (size_t i = 0; i < src->n_day_revenue; i++) {
        const prf_day_revenue *r = &src->day_revenue[i];
        if (r->day >= cut && prf_profile_add_day_revenue(dst, r->day, r->revenue))
            return PRF_ENOMEM;
    }
    return PRF_OK;
}

int prf_profile_merge(prf_profile *dst, const prf_profile *src, size_t timeline_len,
                      int64_t retention_days)
{
    dst->total += src->total;
    dst->revenue += src->revenue;
    if (src->first_seen != PRF_TS_NONE)
        prf_profile_see(dst, src->first_seen);
    if (src->last_seen != PRF_TS_NONE)
        prf_profile_see(dst, src->last_seen);
    if (prf__merge_keyed(dst, src) || prf__merge_sets(dst, src) ||
        prf__merge_daily(dst, src, retention_days))
        return PRF_ENOMEM;
    prf_profile_trim_timeline(dst, timeline_len);
    return PRF_OK;
}

int prf_delta_to_profile(const prf_delta *d, int64_t now_ms, prf_profile *out)
{
    prf_profile_init(out);
    out->total = 1;
    prf_profile_see(out, d->ts);
    if (d->has_revenue)
        out->revenue = d->revenue;
    int rc = prf_profile_add_count(out, d->count_name, 1);
    for (size_t i = 0; rc == PRF_OK && i < d->n_traits; i++)
        rc = prf_profile_put_trait(out, d->traits[i].key, d->traits[i].json, d->ts,
                                   d->message_id, NULL);
    if (rc == PRF_OK && d->channel[0])
        rc = prf_profile_put_channel(out, d->channel, d->ts, d->message_id, d->count_name);
    if (rc == PRF_OK)
        rc = prf_profile_add_timeline(out, d->tl_member, d->ts);
    for (size_t i = 0; rc == PRF_OK && i < d->n_ids; i++)
        rc = prf_profile_add_id(out, d->ids[i]);
    if (rc == PRF_OK)
        rc = prf_profile_add_seen(out, d->message_id, now_ms);
    if (rc == PRF_OK)
        rc = prf_profile_add_day_count(out, prf_day_of(d->ts), d->count_name, 1);
    if (rc == PRF_OK && d->has_revenue)
        rc = prf_profile_add_day_revenue(out, prf_day_of(d->ts), d->revenue);
    if (rc != PRF_OK)
        prf_profile_clear(out);
    return rc;
}

int prf_profile_apply(prf_profile *p, const prf_delta *d, const prf_fold_opts *opts)
{
    const prf_seen *seen = prf__seen(p, d->message_id);
    if (seen && seen->applied_at >= opts->seen_cutoff_ms)
        return PRF_DUPLICATE;
    if (p->merged_into)
        return PRF_REDIRECT;
    prf_profile_trim_seen(p, opts->seen_cutoff_ms);
    prf_profile one;
    if (prf_delta_to_profile(d, opts->now_ms, &one))
        return PRF_ENOMEM;
    int rc = prf_profile_merge(p, &one, opts->timeline_len, opts->daily_retention_days);
    prf_profile_clear(&one);
    return rc == PRF_OK ? PRF_APPLIED : rc;
}

const char *prf_profile_tombstone(prf_profile *p, const char *survivor)
{
    if (!p->merged_into && prf_profile_set_merged_into(p, survivor))
        return NULL;
    return p->merged_into;
}

int prf_profile_fold(prf_profile *survivor, const char *loser_id, const prf_profile *snapshot,
                     const prf_fold_opts *opts)
{
    if (survivor->merged_into)
        return PRF_FOLD_REDIRECT;
    if (prf_profile_has_folded(survivor, loser_id))
        return PRF_FOLD_ALREADY;
    if (prf_profile_merge(survivor, snapshot, opts->timeline_len, opts->daily_retention_days) ||
        prf_profile_add_folded(survivor, loser_id))
        return PRF_ENOMEM;
    prf_profile_trim_seen(survivor, opts->seen_cutoff_ms);
    return PRF_FOLD_DONE;
}

void prf_profile_strip(prf_profile *p)
{
    char *into = p->merged_into;
    p->merged_into = NULL;
    prf_profile_clear(p);
    p->merged_into = into;
}
