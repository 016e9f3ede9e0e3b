/* test_profile_fold: the profile's fold rules (prf_fold), the conversion of
 * resolved events (prf_event), the script codec (prf_codec), and whether the
 * Lua scripts (prf_lua) agree with the C rules.
 *
 * The agreement tests run the real scripts on a real Redis through a
 * synchronous hiredis client, with the arguments the service builds and the
 * reply parsing it uses, against the C fold as the oracle. They need a Redis
 * at 127.0.0.1:$CDP_TEST_REDIS_PORT (they use database 15 and flush it) and
 * are skipped when that variable is unset. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "prf_codec.h"
#include "prf_event.h"
#include "prf_fold.h"
#include "prf_lua.h"
#include "prf_view.h"

enum { T_TL_LEN = 5, T_NOW = 1700000000000, T_WINDOW = 604800000, T_RETENTION = 30 };
#define T_REVENUE_EPS 1e-6
#define T_DAY PRF_MS_PER_DAY

static const prf_fold_opts t_opts = { T_TL_LEN, T_NOW, T_NOW - T_WINDOW, T_RETENTION };

/* ================================================================ events */

/* An event for the fold, with its own storage. */
typedef struct {
    char mid[48];
    char master[8];
    char name[32];
    char channel[16];
    char *member;
    char tkey[4][16];
    char tjson[4][32];
    prf_trait_set traits[4];
    char idbuf[2][64];
    const char *ids[2];
    prf_delta d;
} t_event;

static void t_event_make(t_event *e, const char *mid, int64_t ts, const char *name,
                         const char *channel)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->mid, sizeof(e->mid), "%s", mid);
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->channel, sizeof(e->channel), "%s", channel);
    e->member = prf_tl_member_encode(e->mid, 1, e->name, e->channel, ts);
    assert_non_null(e->member);
    e->d = (prf_delta){ .message_id = e->mid, .ts = ts, .count_name = e->name,
                        .channel = e->channel, .tl_member = e->member,
                        .traits = e->traits, .ids = e->ids };
}

static void t_event_trait(t_event *e, const char *key, const char *json)
{
    size_t i = e->d.n_traits++;
    snprintf(e->tkey[i], sizeof(e->tkey[i]), "%s", key);
    snprintf(e->tjson[i], sizeof(e->tjson[i]), "%s", json);
    e->traits[i] = (prf_trait_set){ e->tkey[i], e->tjson[i] };
}

static void t_event_id(t_event *e, const char *id)
{
    size_t i = e->d.n_ids++;
    snprintf(e->idbuf[i], sizeof(e->idbuf[i]), "%s", id);
    e->ids[i] = e->idbuf[i];
}

static void t_event_free(t_event *e)
{
    free(e->member);
    e->member = NULL;
}

/* ===================================================== profile comparison */

static int t_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int t_cmp_trait(const void *a, const void *b)
{
    return strcmp(((const prf_trait *)a)->key, ((const prf_trait *)b)->key);
}

static int t_cmp_count(const void *a, const void *b)
{
    return strcmp(((const prf_count *)a)->name, ((const prf_count *)b)->name);
}

static int t_cmp_channel(const void *a, const void *b)
{
    return strcmp(((const prf_channel *)a)->channel, ((const prf_channel *)b)->channel);
}

static int t_cmp_seen(const void *a, const void *b)
{
    return strcmp(((const prf_seen *)a)->message_id, ((const prf_seen *)b)->message_id);
}

static int t_cmp_day_count(const void *a, const void *b)
{
    const prf_day_count *x = a, *y = b;
    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int t_cmp_day_revenue(const void *a, const void *b)
{
    const prf_day_revenue *x = a, *y = b;
    return (x->day > y->day) - (x->day < y->day);
}

/* qsort, which must not be given the NULL array of an empty list. */
static void t_sort(void *v, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(v, n, size, cmp);
}

/* Puts every unordered collection in a canonical order. */
static void t_canon(prf_profile *p)
{
    t_sort(p->traits, p->n_traits, sizeof(*p->traits), t_cmp_trait);
    t_sort(p->counts, p->n_counts, sizeof(*p->counts), t_cmp_count);
    t_sort(p->channels, p->n_channels, sizeof(*p->channels), t_cmp_channel);
    prf_profile_trim_timeline(p, p->n_timeline);
    t_sort(p->ids, p->n_ids, sizeof(*p->ids), t_cmp_str);
    t_sort(p->seen, p->n_seen, sizeof(*p->seen), t_cmp_seen);
    t_sort(p->folded, p->n_folded, sizeof(*p->folded), t_cmp_str);
    t_sort(p->day_counts, p->n_day_counts, sizeof(*p->day_counts), t_cmp_day_count);
    t_sort(p->day_revenue, p->n_day_revenue, sizeof(*p->day_revenue), t_cmp_day_revenue);
}

static void t_assert_same(prf_profile *a, prf_profile *b)
{
    t_canon(a);
    t_canon(b);
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->first_seen, b->first_seen);
    assert_int_equal(a->last_seen, b->last_seen);
    assert_true(fabs(a->revenue - b->revenue) < T_REVENUE_EPS);
    assert_int_equal(a->merged_into == NULL, b->merged_into == NULL);
    if (a->merged_into)
        assert_string_equal(a->merged_into, b->merged_into);
    assert_int_equal(a->n_traits, b->n_traits);
    for (size_t i = 0; i < a->n_traits; i++) {
        assert_string_equal(a->traits[i].key, b->traits[i].key);
        assert_string_equal(a->traits[i].json, b->traits[i].json);
        assert_int_equal(a->traits[i].ts, b->traits[i].ts);
        assert_string_equal(a->traits[i].message_id, b->traits[i].message_id);
    }
    assert_int_equal(a->n_counts, b->n_counts);
    for (size_t i = 0; i < a->n_counts; i++) {
        assert_string_equal(a->counts[i].name, b->counts[i].name);
        assert_int_equal(a->counts[i].n, b->counts[i].n);
    }
    assert_int_equal(a->n_channels, b->n_channels);
    for (size_t i = 0; i < a->n_channels; i++) {
        assert_string_equal(a->channels[i].channel, b->channels[i].channel);
        assert_int_equal(a->channels[i].ts, b->channels[i].ts);
        assert_string_equal(a->channels[i].message_id, b->channels[i].message_id);
        assert_string_equal(a->channels[i].event, b->channels[i].event);
    }
    assert_int_equal(a->n_timeline, b->n_timeline);
    for (size_t i = 0; i < a->n_timeline; i++) {
        assert_string_equal(a->timeline[i].member, b->timeline[i].member);
        assert_int_equal(a->timeline[i].ts, b->timeline[i].ts);
    }
    assert_int_equal(a->n_ids, b->n_ids);
    for (size_t i = 0; i < a->n_ids; i++)
        assert_string_equal(a->ids[i], b->ids[i]);
    assert_int_equal(a->n_seen, b->n_seen);
    for (size_t i = 0; i < a->n_seen; i++) {
        assert_string_equal(a->seen[i].message_id, b->seen[i].message_id);
        assert_int_equal(a->seen[i].applied_at, b->seen[i].applied_at);
    }
    assert_int_equal(a->n_folded, b->n_folded);
    for (size_t i = 0; i < a->n_folded; i++)
        assert_string_equal(a->folded[i], b->folded[i]);
    assert_int_equal(a->n_day_counts, b->n_day_counts);
    for (size_t i = 0; i < a->n_day_counts; i++) {
        assert_int_equal(a->day_counts[i].day, b->day_counts[i].day);
        assert_string_equal(a->day_counts[i].name, b->day_counts[i].name);
        assert_int_equal(a->day_counts[i].n, b->day_counts[i].n);
    }
    assert_int_equal(a->n_day_revenue, b->n_day_revenue);
    for (size_t i = 0; i < a->n_day_revenue; i++) {
        assert_int_equal(a->day_revenue[i].day, b->day_revenue[i].day);
        assert_true(fabs(a->day_revenue[i].revenue - b->day_revenue[i].revenue) < T_REVENUE_EPS);
    }
}

/* A deep copy (merge into an empty profile keeps everything). */
static void t_copy(prf_profile *dst, const prf_profile *src)
{
    prf_profile_init(dst);
    assert_int_equal(prf_profile_merge(dst, src, src->n_timeline + 1, 0), PRF_OK);
    if (src->merged_into)
        assert_int_equal(prf_profile_set_merged_into(dst, src->merged_into), PRF_OK);
}

/* ============================================================ fold rules */

static void test_stamp_order(void **state)
{
    (void)state;
    assert_true(prf_stamp_cmp(1, "z", 2, "a") < 0);
    assert_true(prf_stamp_cmp(2, "a", 1, "z") > 0);
    assert_true(prf_stamp_cmp(5, "a", 5, "b") < 0);
    assert_true(prf_stamp_cmp(5, "ab", 5, "a") > 0);
    assert_int_equal(prf_stamp_cmp(5, "a", 5, "a"), 0);
    /* bytes, not a locale: 0xC3 (UTF-8 lead byte) sorts after 'z' */
    assert_true(prf_stamp_cmp(5, "\xc3\xa9", 5, "z") > 0);
    assert_true(prf_stamp_cmp(-5, "a", 0, "a") < 0);
}

static void test_trait_lww_by_event_time(void **state)
{
    (void)state;
    prf_profile p;
    prf_profile_init(&p);
    int changed = 0;
    assert_int_equal(prf_profile_put_trait(&p, "plan", "\"pro\"", 200, "m2", &changed), PRF_OK);
    assert_true(changed);
    /* an older event arriving later does not overwrite */
    assert_int_equal(prf_profile_put_trait(&p, "plan", "\"free\"", 100, "m1", &changed), PRF_OK);
    assert_false(changed);
    assert_string_equal(prf_profile_trait(&p, "plan")->json, "\"pro\"");
    /* equal time: the greater message id wins, whatever the order */
    prf_profile_put_trait(&p, "plan", "\"team\"", 200, "m3", &changed);
    assert_true(changed);
    prf_profile_put_trait(&p, "plan", "\"solo\"", 200, "m0", &changed);
    assert_false(changed);
    assert_string_equal(prf_profile_trait(&p, "plan")->json, "\"team\"");
    assert_int_equal(prf_profile_trait(&p, "plan")->ts, 200);
    assert_string_equal(prf_profile_trait(&p, "plan")->message_id, "m3");
    prf_profile_clear(&p);
}

/* Applies events[order[i]] for every i into p. */
static void t_apply_order(prf_profile *p, t_event *ev, const int *order, size_t n)
{
    prf_profile_init(p);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(prf_profile_apply(p, &ev[order[i]].d, &t_opts), PRF_APPLIED);
}

static void test_apply_order_independent(void **state)
{
    (void)state;
    t_event ev[4];
    t_event_make(&ev[0], "m1", 1000, "identify", "web");
    t_event_trait(&ev[0], "plan", "\"free\"");
    t_event_trait(&ev[0], "name", "\"Ann\"");
    t_event_make(&ev[1], "m2", 3000, "identify", "app");
    t_event_trait(&ev[1], "plan", "\"pro\"");
    t_event_make(&ev[2], "m3", 3000, "identify", "web");
    t_event_trait(&ev[2], "plan", "\"team\"");
    t_event_id(&ev[2], "5:emaila@x");
    t_event_make(&ev[3], "m4", 2000, "Order Completed", "web");
    ev[3].d.has_revenue = 1;
    ev[3].d.revenue = 19.5;
    static const int orders[][4] = { { 0, 1, 2, 3 }, { 3, 2, 1, 0 }, { 2, 0, 3, 1 }, { 1, 3, 0, 2 } };
    prf_profile ref, p;
    t_apply_order(&ref, ev, orders[0], 4);
    for (size_t o = 1; o < sizeof(orders) / sizeof(orders[0]); o++) {
        t_apply_order(&p, ev, orders[o], 4);
        prf_profile q;
        t_copy(&q, &ref);
        t_assert_same(&p, &q);
        prf_profile_clear(&p);
        prf_profile_clear(&q);
    }
    assert_string_equal(prf_profile_trait(&ref, "plan")->json, "\"team\"");
    assert_string_equal(prf_profile_trait(&ref, "name")->json, "\"Ann\"");
    assert_int_equal(ref.total, 4);
    assert_int_equal(prf_profile_count(&ref, "identify"), 3);
    assert_int_equal(prf_profile_count(&ref, "Order Completed"), 1);
    assert_int_equal(ref.first_seen, 1000);
    assert_int_equal(ref.last_seen, 3000);
    assert_true(fabs(ref.revenue - 19.5) < T_REVENUE_EPS);
    /* web: m3 at 3000 beats m4 at 2000 and m1 at 1000 */
    assert_string_equal(prf_profile_channel(&ref, "web")->message_id, "m3");
    assert_string_equal(prf_profile_channel(&ref, "app")->event, "identify");
    assert_true(prf_profile_has_id(&ref, "5:emaila@x"));
    prf_profile_clear(&ref);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

static void test_apply_is_idempotent(void **state)
{
    (void)state;
    t_event e;
    t_event_make(&e, "m1", 1000, "Order Completed", "web");
    e.d.has_revenue = 1;
    e.d.revenue = 10;
    prf_profile p;
    prf_profile_init(&p);
    assert_int_equal(prf_profile_apply(&p, &e.d, &t_opts), PRF_APPLIED);
    assert_int_equal(prf_profile_apply(&p, &e.d, &t_opts), PRF_DUPLICATE);
    assert_int_equal(p.total, 1);
    assert_int_equal(prf_profile_count(&p, "Order Completed"), 1);
    assert_true(fabs(p.revenue - 10) < T_REVENUE_EPS);
    assert_int_equal(prf_profile_seen(&p, "m1")->applied_at, T_NOW);
    /* once the dedup window has passed, the record is gone */
    prf_fold_opts later = t_opts;
    later.now_ms = T_NOW + T_WINDOW + 1;
    later.seen_cutoff_ms = later.now_ms - T_WINDOW;
    assert_int_equal(prf_profile_apply(&p, &e.d, &later), PRF_APPLIED);
    assert_int_equal(p.total, 2);
    prf_profile_clear(&p);
    t_event_free(&e);
}

static void test_timeline_keeps_latest_by_event_time(void **state)
{
    (void)state;
    prf_profile p;
    prf_profile_init(&p);
    t_event ev[8];
    static const int64_t ts[8] = { 50, 10, 80, 20, 70, 30, 60, 40 };
    for (int i = 0; i < 8; i++) {
        char mid[32];
        snprintf(mid, sizeof(mid), "m%d", i);
        t_event_make(&ev[i], mid, ts[i], "page", "");
        assert_int_equal(prf_profile_apply(&p, &ev[i].d, &t_opts), PRF_APPLIED);
    }
    assert_int_equal(p.n_timeline, T_TL_LEN);
    prf_profile_trim_timeline(&p, T_TL_LEN);
    static const int64_t kept[T_TL_LEN] = { 40, 50, 60, 70, 80 };
    for (int i = 0; i < T_TL_LEN; i++)
        assert_int_equal(p.timeline[i].ts, kept[i]);
    assert_int_equal(p.n_channels, 0);
    assert_int_equal(p.first_seen, 10);
    assert_int_equal(p.last_seen, 80);
    prf_profile_clear(&p);
    for (int i = 0; i < 8; i++)
        t_event_free(&ev[i]);
}

static void test_revenue_strings(void **state)
{
    (void)state;
    double v = 0;
    assert_true(prf_revenue_parse_string("12.50", &v));
    assert_true(fabs(v - 12.5) < T_REVENUE_EPS);
    assert_true(prf_revenue_parse_string("-3", &v));
    assert_true(fabs(v + 3) < T_REVENUE_EPS);
    assert_true(prf_revenue_parse_string(".5", &v));
    assert_true(prf_revenue_parse_string("1e2", &v));
    assert_true(fabs(v - 100) < T_REVENUE_EPS);
    static const char *bad[] = { "", " 1", "1 ", "0x10", "inf", "nan", "1,5", "abc", "1e",
                                 "-", ".", "1e999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(prf_revenue_parse_string(bad[i], &v));
}

/* Two profiles built from disjoint events. */
static void t_two_profiles(prf_profile *a, prf_profile *b, t_event *ev)
{
    prf_profile_init(a);
    prf_profile_init(b);
    t_event_make(&ev[0], "a1", 1000, "identify", "web");
    t_event_trait(&ev[0], "plan", "\"free\"");
    t_event_trait(&ev[0], "city", "\"Oslo\"");
    t_event_id(&ev[0], "7:user_idu1");
    t_event_make(&ev[1], "a2", 5000, "Order Completed", "sms");
    ev[1].d.has_revenue = 1;
    ev[1].d.revenue = 30;
    t_event_make(&ev[2], "b1", 3000, "identify", "web");
    t_event_trait(&ev[2], "plan", "\"pro\"");
    t_event_id(&ev[2], "5:emailx@y");
    t_event_id(&ev[2], "7:user_idu1");
    t_event_make(&ev[3], "b2", 500, "Order Completed", "");
    ev[3].d.has_revenue = 1;
    ev[3].d.revenue = 12.25;
    for (int i = 0; i < 2; i++)
        assert_int_equal(prf_profile_apply(a, &ev[i].d, &t_opts), PRF_APPLIED);
    for (int i = 2; i < 4; i++)
        assert_int_equal(prf_profile_apply(b, &ev[i].d, &t_opts), PRF_APPLIED);
}

static void test_merge_two_snapshots(void **state)
{
    (void)state;
    t_event ev[4];
    prf_profile a, b;
    t_two_profiles(&a, &b, ev);
    prf_profile ab, ba;
    t_copy(&ab, &a);
    t_copy(&ba, &b);
    assert_int_equal(prf_profile_merge(&ab, &b, T_TL_LEN, T_RETENTION), PRF_OK);
    assert_int_equal(prf_profile_merge(&ba, &a, T_TL_LEN, T_RETENTION), PRF_OK);
    assert_int_equal(ab.total, 4);
    assert_int_equal(prf_profile_count(&ab, "Order Completed"), 2);
    assert_int_equal(prf_profile_count(&ab, "identify"), 2);
    assert_int_equal(ab.first_seen, 500);
    assert_int_equal(ab.last_seen, 5000);
    assert_true(fabs(ab.revenue - 42.25) < T_REVENUE_EPS);
    assert_string_equal(prf_profile_trait(&ab, "plan")->json, "\"pro\"");   /* 3000 > 1000 */
    assert_string_equal(prf_profile_trait(&ab, "city")->json, "\"Oslo\"");
    assert_string_equal(prf_profile_channel(&ab, "web")->message_id, "b1");
    assert_string_equal(prf_profile_channel(&ab, "sms")->message_id, "a2");
    assert_int_equal(ab.n_ids, 2);
    assert_int_equal(ab.n_timeline, 4);
    assert_int_equal(ab.n_seen, 4);
    /* merging is commutative */
    t_assert_same(&ab, &ba);
    prf_profile_clear(&a);
    prf_profile_clear(&b);
    prf_profile_clear(&ab);
    prf_profile_clear(&ba);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

static void test_fold_exactly_once(void **state)
{
    (void)state;
    t_event ev[4];
    prf_profile loser, survivor;
    t_two_profiles(&loser, &survivor, ev);
    /* step 1: the tombstone names the first survivor, even when retried
     * with another one */
    assert_string_equal(prf_profile_tombstone(&loser, "S"), "S");
    assert_string_equal(prf_profile_tombstone(&loser, "T"), "S");
    prf_profile snap;
    t_copy(&snap, &loser);
    /* step 2, twice (a retry): the second changes nothing */
    assert_int_equal(prf_profile_fold(&survivor, "L", &snap, &t_opts), PRF_FOLD_DONE);
    prf_profile once;
    t_copy(&once, &survivor);
    assert_int_equal(prf_profile_fold(&survivor, "L", &snap, &t_opts), PRF_FOLD_ALREADY);
    t_assert_same(&survivor, &once);
    assert_int_equal(survivor.total, 4);
    assert_true(prf_profile_has_folded(&survivor, "L"));
    /* step 3 keeps only the tombstone; applying to it redirects */
    prf_profile_strip(&loser);
    assert_int_equal(loser.total, 0);
    assert_int_equal(loser.n_seen, 0);
    assert_string_equal(loser.merged_into, "S");
    assert_int_equal(prf_profile_apply(&loser, &ev[0].d, &t_opts), PRF_REDIRECT);
    /* a replay of the loser's event on the survivor is a duplicate */
    assert_int_equal(prf_profile_apply(&survivor, &ev[1].d, &t_opts), PRF_DUPLICATE);
    assert_int_equal(survivor.total, 4);
    /* a tombstoned survivor redirects the fold */
    prf_profile_tombstone(&survivor, "Z");
    assert_int_equal(prf_profile_fold(&survivor, "Q", &snap, &t_opts), PRF_FOLD_REDIRECT);
    prf_profile_clear(&loser);
    prf_profile_clear(&survivor);
    prf_profile_clear(&snap);
    prf_profile_clear(&once);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

static void test_fold_carries_transitive_folds(void **state)
{
    (void)state;
    t_event ev[4];
    prf_profile b, c;
    t_two_profiles(&b, &c, ev);
    prf_profile_add_folded(&b, "A");      /* A was folded into B earlier */
    prf_profile_tombstone(&b, "C");
    assert_int_equal(prf_profile_fold(&c, "B", &b, &t_opts), PRF_FOLD_DONE);
    /* a late retry of A -> B, redirected to C, finds A already folded */
    prf_profile empty;
    prf_profile_init(&empty);
    assert_int_equal(prf_profile_fold(&c, "A", &empty, &t_opts), PRF_FOLD_ALREADY);
    prf_profile_clear(&b);
    prf_profile_clear(&c);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

/* Days and the retention cut, at their edges. */
static void test_daily_day_and_cut(void **state)
{
    (void)state;
    assert_int_equal(prf_day_of(0), 0);
    assert_int_equal(prf_day_of(T_DAY - 1), 0);
    assert_int_equal(prf_day_of(T_DAY), 1);
    assert_int_equal(prf_day_of(-1), -1);            /* 1969-12-31 */
    assert_int_equal(prf_day_of(-T_DAY), -1);
    assert_int_equal(prf_day_of(-T_DAY - 1), -2);
    assert_int_equal(prf_day_of(INT64_C(1700000000000)), 19675);
    assert_int_equal(PRF_DAILY_TRIM_STEP_DAYS, 16);  /* the values below assume it */
    assert_int_equal(prf_daily_cut(100, 30), 96 - 30 + 1);
    assert_int_equal(prf_daily_cut(95, 30), 80 - 30 + 1);
    assert_int_equal(prf_daily_cut(96, 30), 96 - 30 + 1);
    assert_int_equal(prf_daily_cut(-1, 30), -16 - 30 + 1);
    assert_int_equal(prf_daily_cut(100, 0), PRF_DAY_NONE);
    assert_int_equal(prf_daily_cut(PRF_DAY_NONE, 30), PRF_DAY_NONE);
    /* at least the retention is kept, at most step - 1 days more */
    for (int64_t d = -40; d < 40; d++) {
        assert_true(prf_daily_cut(d, 30) <= d - 30 + 1);
        assert_true(prf_daily_cut(d, 30) >= d - 30 - PRF_DAILY_TRIM_STEP_DAYS + 2);
    }
}

/* Per-day counts and revenue, replays, and the retention cut as the newest
 * day moves (T_RETENTION = 30 days). */
static void test_daily_buckets(void **state)
{
    (void)state;
    t_event ev[7];
    t_event_make(&ev[0], "d1", 100 * T_DAY + 5, "Order Completed", "web");
    ev[0].d.has_revenue = 1;
    ev[0].d.revenue = 10;
    t_event_make(&ev[1], "d2", 100 * T_DAY + 1000, "Order Completed", "");
    ev[1].d.has_revenue = 1;
    ev[1].d.revenue = 2.5;
    t_event_make(&ev[2], "d3", 100 * T_DAY - 1, "page", "");
    t_event_make(&ev[3], "d4", 66 * T_DAY, "page", "");       /* before the cut 67 */
    t_event_make(&ev[4], "d5", 67 * T_DAY, "page", "");       /* the first day kept */
    t_event_make(&ev[5], "d6", 112 * T_DAY, "page", "");      /* cut moves to 83 */
    t_event_make(&ev[6], "d7", 100 * T_DAY + 7, "Signed Up", "");
    ev[6].d.has_revenue = 1;                                  /* 0 still makes a bucket */
    prf_profile p;
    prf_profile_init(&p);
    for (int i = 0; i < 3; i++)
        assert_int_equal(prf_profile_apply(&p, &ev[i].d, &t_opts), PRF_APPLIED);
    assert_int_equal(prf_profile_apply(&p, &ev[0].d, &t_opts), PRF_DUPLICATE);
    assert_int_equal(prf_profile_day_count(&p, 100, "Order Completed"), 2);
    assert_int_equal(prf_profile_day_count(&p, 99, "page"), 1);
    assert_int_equal(prf_profile_day_count(&p, 100, "page"), 0);
    assert_true(fabs(prf_profile_day_revenue(&p, 100)->revenue - 12.5) < T_REVENUE_EPS);
    assert_null(prf_profile_day_revenue(&p, 99));
    assert_int_equal(p.n_day_counts, 2);
    /* an event before the cut counts in the totals, not in the buckets */
    assert_int_equal(prf_profile_apply(&p, &ev[3].d, &t_opts), PRF_APPLIED);
    assert_int_equal(prf_profile_apply(&p, &ev[4].d, &t_opts), PRF_APPLIED);
    assert_int_equal(prf_profile_count(&p, "page"), 3);
    assert_int_equal(prf_profile_day_count(&p, 66, "page"), 0);
    assert_int_equal(prf_profile_day_count(&p, 67, "page"), 1);
    assert_int_equal(prf_profile_apply(&p, &ev[6].d, &t_opts), PRF_APPLIED);
    assert_int_equal(prf_profile_day_count(&p, 100, "Signed Up"), 1);
    assert_true(fabs(prf_profile_day_revenue(&p, 100)->revenue - 12.5) < T_REVENUE_EPS);
    /* the newest day moves to 112: day 67 goes, 99 and 100 stay */
    assert_int_equal(prf_profile_apply(&p, &ev[5].d, &t_opts), PRF_APPLIED);
    assert_int_equal(prf_profile_day_count(&p, 67, "page"), 0);
    assert_int_equal(prf_profile_day_count(&p, 99, "page"), 1);
    assert_int_equal(prf_profile_day_count(&p, 112, "page"), 1);
    assert_int_equal(p.n_day_counts, 4);
    assert_int_equal(p.n_day_revenue, 1);
    /* without retention every day stays */
    prf_fold_opts all = t_opts;
    all.daily_retention_days = 0;
    prf_profile q;
    prf_profile_init(&q);
    for (int i = 0; i < 7; i++)
        assert_int_equal(prf_profile_apply(&q, &ev[i].d, &all), PRF_APPLIED);
    assert_int_equal(prf_profile_day_count(&q, 66, "page"), 1);
    assert_int_equal(prf_profile_day_count(&q, 67, "page"), 1);
    assert_int_equal(q.n_day_counts, 6);
    prf_profile_clear(&p);
    prf_profile_clear(&q);
    for (int i = 0; i < 7; i++)
        t_event_free(&ev[i]);
}

/* A fold sums the loser's buckets into the survivor's, once. */
static void test_daily_fold_sums_once(void **state)
{
    (void)state;
    t_event ev[4];
    prf_profile loser, survivor;
    t_two_profiles(&loser, &survivor, ev);   /* every event on day 0 */
    prf_profile_tombstone(&loser, "S");
    assert_int_equal(prf_profile_fold(&survivor, "L", &loser, &t_opts), PRF_FOLD_DONE);
    assert_int_equal(prf_profile_fold(&survivor, "L", &loser, &t_opts), PRF_FOLD_ALREADY);
    assert_int_equal(prf_profile_day_count(&survivor, 0, "identify"), 2);
    assert_int_equal(prf_profile_day_count(&survivor, 0, "Order Completed"), 2);
    assert_true(fabs(prf_profile_day_revenue(&survivor, 0)->revenue - 42.25) < T_REVENUE_EPS);
    prf_profile_clear(&loser);
    prf_profile_clear(&survivor);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

/* ======================================================= event conversion */

/* A ResolvedEvent built from stack storage. */
typedef struct {
    Cdp__V1__ResolvedEvent re;
    Cdp__V1__Event ev;
    Google__Protobuf__Timestamp ts, rx;
    Google__Protobuf__Struct traits, props, ctx, ctx_traits;
    Google__Protobuf__Struct__FieldsEntry te[2], pe, ce, cte[2];
    Google__Protobuf__Struct__FieldsEntry *tep[2], *pep, *cep, *ctep[2];
    Google__Protobuf__Value tv[2], pv, cv, ctv[2];
    Cdp__V1__Identifier id, *idp;
    Cdp__V1__Merge merge, *mergep;
    Cdp__V1__ConversationMessage msg;
} t_proto;

static void t_proto_init(t_proto *p)
{
    memset(p, 0, sizeof(*p));
    cdp__v1__resolved_event__init(&p->re);
    cdp__v1__event__init(&p->ev);
    google__protobuf__timestamp__init(&p->ts);
    google__protobuf__timestamp__init(&p->rx);
    p->ev.message_id = "m-1";
    p->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    p->ev.event = "Order Completed";
    p->ts.seconds = 1700000000;
    p->ts.nanos = 123456789;
    p->ev.timestamp = &p->ts;
    p->re.event = &p->ev;
    p->re.master_id = "M1";
}

static void t_struct1(Google__Protobuf__Struct *s, Google__Protobuf__Struct__FieldsEntry *e,
                      Google__Protobuf__Struct__FieldsEntry **ep, size_t n)
{
    google__protobuf__struct__init(s);
    for (size_t i = 0; i < n; i++)
        ep[i] = &e[i];
    s->n_fields = n;
    s->fields = ep;
}

static void t_entry(Google__Protobuf__Struct__FieldsEntry *e, Google__Protobuf__Value *v,
                    const char *key)
{
    google__protobuf__struct__fields_entry__init(e);
    google__protobuf__value__init(v);
    e->key = (char *)key;
    e->value = v;
}

static void test_event_track(void **state)
{
    (void)state;
    t_proto p;
    t_proto_init(&p);
    p.ev.channel = "web";
    t_entry(&p.pe, &p.pv, "revenue");
    p.pv.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    p.pv.string_value = "19.99";
    t_struct1(&p.props, &p.pe, &p.pep, 1);
    p.ev.properties = &p.props;
    cdp__v1__identifier__init(&p.id);
    p.id.type = "email";
    p.id.value = "a@b.c";
    p.idp = &p.id;
    p.re.n_identifiers = 1;
    p.re.identifiers = &p.idp;
    prf_event e;
    char err[256];
    assert_int_equal(prf_event_from_proto(&p.re, 0, &e, err, sizeof(err)), PRF_OK);
    assert_string_equal(e.master_id, "M1");
    assert_int_equal(e.delta.ts, INT64_C(1700000000123));
    assert_string_equal(e.delta.count_name, "Order Completed");
    assert_string_equal(e.delta.channel, "web");
    assert_true(e.delta.has_revenue);
    assert_true(fabs(e.delta.revenue - 19.99) < T_REVENUE_EPS);
    assert_int_equal(e.delta.n_traits, 0);      /* not an identify event */
    assert_int_equal(e.delta.n_ids, 1);
    char *type, *value;
    assert_int_equal(prf_id_decode(e.delta.ids[0], &type, &value), 0);
    assert_string_equal(type, "email");
    assert_string_equal(value, "a@b.c");
    free(type);
    free(value);
    prf_tl_decoded tl;
    assert_int_equal(prf_tl_member_decode(e.delta.tl_member, &tl), 0);
    assert_string_equal(tl.message_id, "m-1");
    assert_int_equal(tl.type, CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK);
    assert_string_equal(tl.channel, "web");
    assert_string_equal(tl.event, "Order Completed");
    assert_int_equal(tl.ts, INT64_C(1700000000123));
    prf_tl_decoded_free(&tl);
    prf_event_free(&e);
    /* a non-numeric revenue is ignored */
    p.pv.string_value = "lots";
    assert_int_equal(prf_event_from_proto(&p.re, 0, &e, err, sizeof(err)), PRF_OK);
    assert_false(e.delta.has_revenue);
    prf_event_free(&e);
    p.pv.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    p.pv.number_value = 7;
    assert_int_equal(prf_event_from_proto(&p.re, 0, &e, err, sizeof(err)), PRF_OK);
    assert_true(e.delta.has_revenue);
    assert_true(fabs(e.delta.revenue - 7) < T_REVENUE_EPS);
    prf_event_free(&e);
}

static void test_event_identify_traits(void **state)
{
    (void)state;
    t_proto p;
    t_proto_init(&p);
    p.ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY;
    p.ev.event = "";
    t_entry(&p.te[0], &p.tv[0], "plan");
    p.tv[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    p.tv[0].string_value = "pro";
    t_entry(&p.te[1], &p.tv[1], "age");
    p.tv[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    p.tv[1].number_value = 41;
    t_struct1(&p.traits, p.te, p.tep, 2);
    p.ev.traits = &p.traits;
    /* context.traits: plan (overridden by traits) and city (kept) */
    t_entry(&p.cte[0], &p.ctv[0], "plan");
    p.ctv[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    p.ctv[0].string_value = "free";
    t_entry(&p.cte[1], &p.ctv[1], "city");
    p.ctv[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    p.ctv[1].string_value = "Oslo";
    t_struct1(&p.ctx_traits, p.cte, p.ctep, 2);
    t_entry(&p.ce, &p.cv, "traits");
    p.cv.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    p.cv.struct_value = &p.ctx_traits;
    t_struct1(&p.ctx, &p.ce, &p.cep, 1);
    p.ev.context = &p.ctx;
    /* no timestamp: received_at is the event time */
    p.ev.timestamp = NULL;
    p.rx.seconds = -1;
    p.rx.nanos = 500000000;
    p.ev.received_at = &p.rx;
    prf_event e;
    char err[256];
    assert_int_equal(prf_event_from_proto(&p.re, 3, &e, err, sizeof(err)), PRF_OK);
    assert_int_equal(e.delta.ts, -500);
    assert_string_equal(e.delta.count_name, "identify");
    assert_int_equal(e.delta.n_traits, 3);
    prf_profile prof;
    prf_profile_init(&prof);
    assert_int_equal(prf_profile_apply(&prof, &e.delta, &t_opts), PRF_APPLIED);
    assert_string_equal(prf_profile_trait(&prof, "plan")->json, "\"pro\"");
    assert_string_equal(prf_profile_trait(&prof, "city")->json, "\"Oslo\"");
    assert_non_null(prf_profile_trait(&prof, "age"));
    assert_int_equal(prf_profile_trait(&prof, "age")->ts, -500);
    prf_profile_clear(&prof);
    prf_event_free(&e);
}

static void test_event_message_channel(void **state)
{
    (void)state;
    t_proto p;
    t_proto_init(&p);
    p.ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE;
    p.ev.event = "";
    p.ev.channel = "chat";
    cdp__v1__conversation_message__init(&p.msg);
    p.msg.channel = "whatsapp";
    p.ev.message = &p.msg;
    prf_event e;
    char err[256];
    assert_int_equal(prf_event_from_proto(&p.re, 0, &e, err, sizeof(err)), PRF_OK);
    assert_string_equal(e.delta.channel, "whatsapp");
    assert_string_equal(e.delta.count_name, "message");
    prf_event_free(&e);
    p.msg.channel = "";
    assert_int_equal(prf_event_from_proto(&p.re, 0, &e, err, sizeof(err)), PRF_OK);
    assert_string_equal(e.delta.channel, "chat");
    prf_event_free(&e);
}

/* Expects events[idx] of p to be rejected with a message starting `want`. */
static void t_expect_invalid(t_proto *p, size_t idx, const char *want)
{
    prf_event e;
    char err[256] = "";
    assert_int_equal(prf_event_from_proto(&p->re, idx, &e, err, sizeof(err)), PRF_EINVAL);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want \"%s...\"", err, want);
}

static void test_event_validation(void **state)
{
    (void)state;
    t_proto p;
    t_proto_init(&p);
    p.re.master_id = "";
    t_expect_invalid(&p, 2, "events[2].master_id: required");
    t_proto_init(&p);
    p.ev.message_id = "";
    t_expect_invalid(&p, 0, "events[0].event.message_id: required");
    t_proto_init(&p);
    p.ev.event = "";
    t_expect_invalid(&p, 1, "events[1].event.event: required");
    t_proto_init(&p);
    p.ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
    t_expect_invalid(&p, 0, "events[0].event.type: required");
    t_proto_init(&p);
    p.ev.timestamp = NULL;
    t_expect_invalid(&p, 0, "events[0].event.timestamp: required");
    t_proto_init(&p);
    p.ts.nanos = -1;
    t_expect_invalid(&p, 0, "events[0].event.timestamp: out of range");
    t_proto_init(&p);
    p.re.event = NULL;
    t_expect_invalid(&p, 4, "events[4].event: required");
    t_proto_init(&p);
    cdp__v1__merge__init(&p.merge);
    p.merge.loser_id = "X";
    p.merge.survivor_id = "X";
    p.mergep = &p.merge;
    p.re.n_merges = 1;
    p.re.merges = &p.mergep;
    t_expect_invalid(&p, 0, "events[0].merges[0].loser_id: must differ");
    p.merge.survivor_id = "";
    t_expect_invalid(&p, 0, "events[0].merges[0].survivor_id: required");
    t_proto_init(&p);
    cdp__v1__identifier__init(&p.id);
    p.id.type = "email";
    p.idp = &p.id;
    p.re.n_identifiers = 1;
    p.re.identifiers = &p.idp;
    t_expect_invalid(&p, 0, "events[0].identifiers[0].value: required");
}

static void test_encodings(void **state)
{
    (void)state;
    char *enc = prf_id_encode("we:ird", "va:lue");
    assert_string_equal(enc, "6:we:irdva:lue");
    char *t, *v;
    assert_int_equal(prf_id_decode(enc, &t, &v), 0);
    assert_string_equal(t, "we:ird");
    assert_string_equal(v, "va:lue");
    free(t);
    free(v);
    free(enc);
    assert_int_equal(prf_id_decode("9:ab", &t, &v), -1);
    assert_int_equal(prf_id_decode("x:ab", &t, &v), -1);
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    prf_ts_to_proto(-1500, &ts);
    assert_int_equal(ts.seconds, -2);
    assert_int_equal(ts.nanos, 500000000);
    int64_t ms;
    assert_int_equal(prf_ts_from_proto(&ts, &ms), 0);
    assert_int_equal(ms, -1500);
    prf_keys k;
    assert_int_equal(prf_keys_init(&k, "abc"), PRF_OK);
    assert_string_equal(k.v[PRF_KEY_MAIN], "cdp:prf:{p:abc}");
    assert_string_equal(k.v[PRF_KEY_SEEN], "cdp:prf:{p:abc}:seen");
    assert_string_equal(k.v[PRF_KEY_DAILY], "cdp:prf:{p:abc}:daily");
    /* every key carries the same hash tag */
    for (int i = 0; i < PRF_KEY_COUNT; i++) {
        assert_int_equal(strncmp(k.v[i], "cdp:prf:{p:abc}", strlen("cdp:prf:{p:abc}")), 0);
        assert_int_equal(k.len[i], strlen(k.v[i]));
    }
    prf_keys_free(&k);
}

/* The hand-written number formatting matches printf, edge values included,
 * and argument strings keep their bytes across blocks, oversized ones too. */
static void test_fast_formatting(void **state)
{
    (void)state;
    enum { T_ARGS = 3000, T_BIG_ARG = 10000 };
    const int64_t vals[] = { 0, 7, -7, 10, 1700000000123, -62135596800000, INT64_MAX, INT64_MIN };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        char got[PRF_I64_BUF], want[64];
        snprintf(want, sizeof(want), "%lld", (long long)vals[i]);
        assert_int_equal(prf_i64_format(vals[i], got), strlen(want));
        assert_string_equal(got, want);
    }
    char *m = prf_tl_member_encode("m-17", 3, "Order Completed", "web", -1500);
    assert_string_equal(m, "-1500:3:4:m-173:webOrder Completed");
    free(m);
    char *big = malloc(T_BIG_ARG + 1);
    assert_non_null(big);
    memset(big, 'x', T_BIG_ARG);
    big[T_BIG_ARG] = '\0';
    prf_args a;
    prf_args_init(&a);
    for (int i = 0; i < T_ARGS; i++) {
        if (i == T_ARGS / 2)
            assert_int_equal(prf_args_add(&a, big), PRF_OK);
        assert_int_equal(prf_args_add_i64(&a, i), PRF_OK);
    }
    assert_int_equal(a.n, T_ARGS + 1);
    for (int i = 0, at = 0; i < T_ARGS; i++, at++) {
        if (i == T_ARGS / 2) {
            assert_int_equal(a.len[at], T_BIG_ARG);
            assert_string_equal(a.v[at++], big);
        }
        char want[PRF_I64_BUF];
        prf_i64_format(i, want);
        assert_string_equal(a.v[at], want);
        assert_int_equal(a.len[at], strlen(want));
    }
    prf_args_free(&a);
    free(big);
}

/* ================================================================ view */

static void test_view_build(void **state)
{
    (void)state;
    t_event ev[4];
    prf_profile a, b;
    t_two_profiles(&a, &b, ev);
    assert_int_equal(prf_profile_merge(&a, &b, T_TL_LEN, T_RETENTION), PRF_OK);
    assert_int_equal(prf_profile_add_folded(&a, "zz"), PRF_OK);
    assert_int_equal(prf_profile_add_folded(&a, "B"), PRF_OK);
    Cdp__V1__ProfileView *v = prf_view_build(&a, "A", 3);
    assert_non_null(v);
    assert_string_equal(v->master_id, "A");
    assert_int_equal(v->total_events, 4);
    assert_true(fabs(v->revenue - 42.25) < T_REVENUE_EPS);
    assert_int_equal(v->first_seen->seconds, 0);
    assert_int_equal(v->first_seen->nanos, 500000000);
    assert_int_equal(v->last_seen->seconds, 5);
    /* identifiers decoded and sorted by encoding (type length first) */
    assert_int_equal(v->n_identifiers, 2);
    assert_string_equal(v->identifiers[0]->type, "email");
    assert_string_equal(v->identifiers[0]->value, "x@y");
    assert_string_equal(v->identifiers[1]->type, "user_id");
    /* counts by name; channels newest first */
    assert_int_equal(v->n_event_counts, 2);
    assert_string_equal(v->event_counts[0]->key, "Order Completed");
    assert_int_equal(v->event_counts[0]->value, 2);
    assert_int_equal(v->n_channels, 2);
    assert_string_equal(v->channels[0]->channel, "sms");
    assert_string_equal(v->channels[1]->channel, "web");
    assert_string_equal(v->channels[1]->last_event, "identify");
    /* the 3 newest events, newest first */
    assert_int_equal(v->n_timeline, 3);
    assert_string_equal(v->timeline[0]->message_id, "a2");
    assert_string_equal(v->timeline[1]->message_id, "b1");
    assert_string_equal(v->timeline[2]->message_id, "a1");
    assert_string_equal(v->timeline[0]->channel, "sms");
    assert_int_equal(v->timeline[1]->timestamp->seconds, 3);
    /* traits as a Struct */
    assert_non_null(v->traits);
    assert_int_equal(v->traits->n_fields, 2);
    int seen_plan = 0;
    for (size_t i = 0; i < v->traits->n_fields; i++)
        if (strcmp(v->traits->fields[i]->key, "plan") == 0) {
            seen_plan = 1;
            assert_string_equal(v->traits->fields[i]->value->string_value, "pro");
        }
    assert_true(seen_plan);
    assert_int_equal(v->n_merged_ids, 2);
    assert_string_equal(v->merged_ids[0], "B");
    /* it packs (what GetProfile sends) */
    size_t n = cdp__v1__profile_view__get_packed_size(v);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(cdp__v1__profile_view__pack(v, buf), n);
    Cdp__V1__ProfileView *back = cdp__v1__profile_view__unpack(NULL, n, buf);
    assert_non_null(back);
    assert_int_equal(back->n_timeline, 3);
    cdp__v1__profile_view__free_unpacked(back, NULL);
    free(buf);
    prf_view_free(v);
    prf_profile_clear(&a);
    prf_profile_clear(&b);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

/* ================================================ Lua agreement (Redis) */

enum { T_REDIS_DB = 15 };

static redisContext *t_redis;

static int t_redis_setup(void **state)
{
    (void)state;
    const char *port = getenv("CDP_TEST_REDIS_PORT");
    if (!port || !*port)
        return 0;
    t_redis = redisConnect("127.0.0.1", atoi(port));
    if (!t_redis || t_redis->err) {
        fprintf(stderr, "cannot reach Redis on port %s\n", port);
        return -1;
    }
    redisReply *r = redisCommand(t_redis, "SELECT %d", T_REDIS_DB);
    freeReplyObject(r);
    return 0;
}

static int t_redis_teardown(void **state)
{
    (void)state;
    if (t_redis)
        redisFree(t_redis);
    t_redis = NULL;
    return 0;
}

static void t_need_redis(void)
{
    if (!t_redis)
        skip();
    freeReplyObject(redisCommand(t_redis, "FLUSHDB"));
}

/* EVAL of a script on master's keys with args; the caller frees the reply. */
static redisReply *t_eval(const char *script, const char *master, const prf_args *args)
{
    prf_keys k;
    assert_int_equal(prf_keys_init(&k, master), PRF_OK);
    size_t argc = 3 + PRF_KEY_COUNT + (args ? args->n : 0);
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    assert_non_null(argv);
    assert_non_null(lens);
    char nkeys[16];
    snprintf(nkeys, sizeof(nkeys), "%d", PRF_KEY_COUNT);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nkeys;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < PRF_KEY_COUNT; i++) {
        argv[3 + i] = k.v[i];
        lens[3 + i] = k.len[i];
    }
    for (size_t i = 0; args && i < args->n; i++) {
        argv[3 + PRF_KEY_COUNT + i] = args->v[i];
        lens[3 + PRF_KEY_COUNT + i] = args->len[i];
    }
    redisReply *r = redisCommandArgv(t_redis, (int)argc, argv, lens);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("script error: %s", r->str);
    free(argv);
    free(lens);
    prf_keys_free(&k);
    return r;
}

typedef enum { T_LIVE, T_TOMBSTONE, T_MISSING } t_read_status;

/* Reads a whole profile (trait stamps, timeline and seen included) with the
 * service's read commands, pipelined, and its loader. */
static t_read_status t_read(const char *master, prf_profile *out, char **into)
{
    prf_keys k;
    assert_int_equal(prf_keys_init(&k, master), PRF_OK);
    for (int key = 0; key < PRF_KEY_COUNT; key++) {
        prf_read_cmd c;
        prf_read_cmd_init(&c, &k, key, 0);
        assert_int_equal(redisAppendCommandArgv(t_redis, c.argc, c.argv, c.len), REDIS_OK);
    }
    prf_profile_init(out);
    int exists = 0;
    for (int key = 0; key < PRF_KEY_COUNT; key++) {
        redisReply *r;
        assert_int_equal(redisGetReply(t_redis, (void **)&r), REDIS_OK);
        assert_int_equal(prf_profile_load(out, key, r), 0);
        if (key == PRF_KEY_MAIN)
            exists = r->elements > 0;
        freeReplyObject(r);
    }
    prf_keys_free(&k);
    *into = NULL;
    if (out->merged_into) {
        *into = strdup(out->merged_into);
        prf_profile_clear(out);
        return T_TOMBSTONE;
    }
    return exists ? T_LIVE : T_MISSING;
}

static size_t t_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    fail_msg("no model %s", name);
    return 0;
}

/* Applies events (all of one master) as the service does: one script run,
 * and on a redirect the events the tombstone had not seen go on to the
 * survivor. The C model applies them one by one, following merged_into.
 * Both must agree on the counts. */
static void t_apply_both(prf_profile *models, const char *const *names, size_t nmodels,
                         const char *master, t_event **ev, size_t n, const prf_fold_opts *o)
{
    t_event **cur = malloc(n * sizeof(*cur));
    unsigned char *flags = malloc(n);
    assert_non_null(cur);
    assert_non_null(flags);
    memcpy(cur, ev, n * sizeof(*cur));
    size_t cn = n;
    char *target = strdup(master);
    long long lua_applied = 0, lua_dups = 0;
    while (cn > 0) {
        prf_args a;
        prf_args_init(&a);
        assert_int_equal(prf_args_apply_header(&a, o, cn), PRF_OK);
        for (size_t i = 0; i < cn; i++)
            assert_int_equal(prf_args_add_delta(&a, &cur[i]->d), PRF_OK);
        redisReply *r = t_eval(prf_lua_apply, target, &a);
        prf_args_free(&a);
        prf_reply_status st;
        char *into = NULL, err[128];
        long long ap, du;
        assert_int_equal(prf_reply_apply(r, cn, &st, &ap, &du, flags, &into, err, sizeof(err)),
                         0);
        freeReplyObject(r);
        lua_applied += ap;
        lua_dups += du;
        if (st != PRF_REPLY_REDIRECT)
            break;
        size_t kept = 0;
        for (size_t i = 0; i < cn; i++)
            if (!flags[i])
                cur[kept++] = cur[i];
        cn = kept;
        free(target);
        target = into;
    }
    long long c_applied = 0, c_dups = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = t_index(names, nmodels, master);
        int rc;
        while ((rc = prf_profile_apply(&models[m], &ev[i]->d, o)) == PRF_REDIRECT)
            m = t_index(names, nmodels, models[m].merged_into);
        assert_true(rc == PRF_APPLIED || rc == PRF_DUPLICATE);
        c_applied += rc == PRF_APPLIED;
        c_dups += rc == PRF_DUPLICATE;
    }
    assert_int_equal(lua_applied, c_applied);
    assert_int_equal(lua_dups, c_dups);
    /* every event is accounted for once (the pipeline checks this) */
    assert_int_equal(lua_applied + lua_dups, (long long)n);
    free(target);
    free(cur);
    free(flags);
}

static void test_lua_apply_agrees(void **state)
{
    (void)state;
    t_need_redis();
    t_event ev[6];
    t_event_make(&ev[0], "m1", 2000, "identify", "web");
    t_event_trait(&ev[0], "plan", "\"pro\"");
    t_event_trait(&ev[0], "tags", "[1,{\"a\":null}]");
    t_event_id(&ev[0], "5:emaila@b");
    t_event_make(&ev[1], "m0", 1000, "identify", "web");
    t_event_trait(&ev[1], "plan", "\"free\"");       /* older: loses */
    t_event_make(&ev[2], "m2", 2000, "identify", "app");
    t_event_trait(&ev[2], "plan", "\"team\"");       /* tie: m2 > m1 wins */
    t_event_make(&ev[3], "m3", INT64_C(253402300799999), "Order Completed", "sms");
    ev[3].d.has_revenue = 1;
    ev[3].d.revenue = 0.1;
    t_event_make(&ev[4], "m4", -62135596800000, "Order Completed", "");
    ev[4].d.has_revenue = 1;
    ev[4].d.revenue = 0.2;
    t_event_make(&ev[5], "\xc3\xa9t\xc3\xa9", 2000, "identify", "web");
    t_event_trait(&ev[5], "plan", "\"\\u00e9\"");     /* tie: byte order says it wins */
    const char *names[] = { "P" };
    prf_profile model;
    prf_profile_init(&model);
    t_event *batch1[] = { &ev[0], &ev[1], &ev[0] };
    t_event *batch2[] = { &ev[3], &ev[2], &ev[4], &ev[1], &ev[5] };
    t_apply_both(&model, names, 1, "P", batch1, 3, &t_opts);
    t_apply_both(&model, names, 1, "P", batch2, 5, &t_opts);
    prf_profile stored;
    char *into;
    assert_int_equal(t_read("P", &stored, &into), T_LIVE);
    assert_string_equal(prf_profile_trait(&stored, "plan")->json, "\"\\u00e9\"");
    assert_int_equal(stored.first_seen, -62135596800000);
    assert_int_equal(stored.last_seen, INT64_C(253402300799999));
    t_assert_same(&stored, &model);
    prf_profile_clear(&stored);
    /* the dedup window: past it, a replay applies again, in both */
    prf_fold_opts later = t_opts;
    later.now_ms = T_NOW + T_WINDOW + 1;
    later.seen_cutoff_ms = later.now_ms - T_WINDOW;
    t_event *batch3[] = { &ev[0] };
    t_apply_both(&model, names, 1, "P", batch3, 1, &later);
    assert_int_equal(t_read("P", &stored, &into), T_LIVE);
    assert_int_equal(stored.total, 7);
    t_assert_same(&stored, &model);
    prf_profile_clear(&stored);
    prf_profile_clear(&model);
    assert_int_equal(t_read("nobody", &stored, &into), T_MISSING);
    prf_profile_clear(&stored);
    for (int i = 0; i < 6; i++)
        t_event_free(&ev[i]);
}

/* One batch whose events arrive newest first: the older trait value, the
 * older channel interaction and the order of arrival must not win. */
static void test_lua_batch_out_of_order(void **state)
{
    (void)state;
    t_need_redis();
    t_event ev[4];
    t_event_make(&ev[0], "n1", 3000, "identify", "web");
    t_event_trait(&ev[0], "plan", "\"new\"");
    t_event_make(&ev[1], "n0", 1000, "identify", "web");
    t_event_trait(&ev[1], "plan", "\"old\"");
    t_event_make(&ev[2], "n2", 3000, "identify", "app");
    t_event_trait(&ev[2], "tier", "1");
    t_event_make(&ev[3], "n3", 3000, "identify", "app");   /* tie: n3 > n2 */
    t_event_trait(&ev[3], "tier", "2");
    const char *names[] = { "Q" };
    prf_profile model;
    prf_profile_init(&model);
    t_event *batch[] = { &ev[3], &ev[0], &ev[1], &ev[2] };
    t_apply_both(&model, names, 1, "Q", batch, 4, &t_opts);
    prf_profile stored;
    char *into;
    assert_int_equal(t_read("Q", &stored, &into), T_LIVE);
    assert_string_equal(prf_profile_trait(&stored, "plan")->json, "\"new\"");
    assert_string_equal(prf_profile_trait(&stored, "tier")->json, "2");
    assert_string_equal(prf_profile_channel(&stored, "web")->message_id, "n1");
    assert_string_equal(prf_profile_channel(&stored, "app")->message_id, "n3");
    t_assert_same(&stored, &model);
    prf_profile_clear(&stored);
    prf_profile_clear(&model);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
}

/* ------------------------------------------- merges against the C model */

typedef struct {
    prf_profile *models;
    const char *const *names;
    size_t n;
} t_world;

static prf_profile *t_model(t_world *w, const char *name)
{
    return &w->models[t_index(w->names, w->n, name)];
}

/* The merge protocol, run synchronously in Lua and mirrored in the model.
 * `crash_after` stops after that step (1 or 2) to simulate a crash; 3 runs
 * it all. Returns 1 if step 2 folded. */
static int t_merge(t_world *w, const char *loser, const char *survivor, int crash_after,
                   const prf_fold_opts *o)
{
    prf_args a;
    prf_args_init(&a);
    prf_args_add(&a, survivor);
    redisReply *r = t_eval(prf_lua_tombstone, loser, &a);
    prf_args_free(&a);
    prf_profile snap;
    prf_reply_status st;
    char *into = NULL, err[128];
    assert_int_equal(prf_reply_snapshot(r, &snap, err, sizeof(err)), 0);
    freeReplyObject(r);
    prf_profile *ml = t_model(w, loser);
    const char *mi = prf_profile_tombstone(ml, survivor);
    assert_string_equal(snap.merged_into, mi);
    prf_profile model_snap;
    t_copy(&model_snap, ml);
    t_assert_same(&snap, &model_snap);
    prf_profile_clear(&model_snap);
    int folded = 0;
    char *target = strdup(snap.merged_into);
    while (crash_after >= 2) {
        prf_args_init(&a);
        prf_args_fold(&a, loser, o, &snap);
        r = t_eval(prf_lua_fold, target, &a);
        prf_args_free(&a);
        assert_int_equal(prf_reply_fold(r, &st, &into, err, sizeof(err)), 0);
        freeReplyObject(r);
        int mrc = prf_profile_fold(t_model(w, target), loser, &snap, o);
        assert_int_equal(mrc, st == PRF_REPLY_OK        ? PRF_FOLD_DONE
                              : st == PRF_REPLY_ALREADY ? PRF_FOLD_ALREADY
                                                        : PRF_FOLD_REDIRECT);
        if (st != PRF_REPLY_REDIRECT) {
            folded = st == PRF_REPLY_OK;
            break;
        }
        free(target);
        target = into;
    }
    if (crash_after >= 3) {
        r = t_eval(prf_lua_strip, loser, NULL);
        assert_int_equal(r->integer, 1);
        freeReplyObject(r);
        prf_profile_strip(ml);
    }
    free(target);
    prf_profile_clear(&snap);
    return folded;
}

/* Every profile in Redis equals its model. */
static void t_assert_world(t_world *w)
{
    for (size_t i = 0; i < w->n; i++) {
        prf_profile stored;
        char *into = NULL;
        t_read_status st = t_read(w->names[i], &stored, &into);
        if (w->models[i].merged_into) {
            assert_int_equal(st, T_TOMBSTONE);
            assert_string_equal(into, w->models[i].merged_into);
            free(into);
        } else if (st == T_LIVE) {
            t_assert_same(&stored, &w->models[i]);
        } else {
            assert_int_equal(st, T_MISSING);
            assert_int_equal(w->models[i].total, 0);
        }
        prf_profile_clear(&stored);
    }
}

static void test_lua_fold_exactly_once(void **state)
{
    (void)state;
    t_need_redis();
    const char *names[] = { "L", "S", "T" };
    prf_profile models[3];
    for (int i = 0; i < 3; i++)
        prf_profile_init(&models[i]);
    t_world w = { models, names, 3 };
    t_event ev[4];
    t_event e5;
    prf_profile a, b;
    t_two_profiles(&a, &b, ev);
    prf_profile_clear(&a);
    prf_profile_clear(&b);
    t_event *le[] = { &ev[0], &ev[1] }, *se[] = { &ev[2], &ev[3] };
    t_apply_both(models, names, 3, "L", le, 2, &t_opts);
    t_apply_both(models, names, 3, "S", se, 2, &t_opts);
    /* crash after step 1; events for the loser already go to the survivor */
    assert_int_equal(t_merge(&w, "L", "S", 1, &t_opts), 0);
    t_event_make(&e5, "c1", 9000, "page", "web");
    t_event *ce[] = { &e5, &ev[1] };
    t_apply_both(models, names, 3, "L", ce, 2, &t_opts);
    t_assert_world(&w);
    /* the retry folds; a second retry (after a crash before step 3) does
     * not fold again, whichever survivor it names */
    assert_int_equal(t_merge(&w, "L", "S", 2, &t_opts), 1);
    assert_int_equal(t_merge(&w, "L", "T", 3, &t_opts), 0);
    t_assert_world(&w);
    /* replays of the loser's events are duplicates on the survivor */
    t_apply_both(models, names, 3, "L", le, 2, &t_opts);
    t_apply_both(models, names, 3, "S", le, 2, &t_opts);
    t_assert_world(&w);
    prf_profile stored;
    char *into;
    assert_int_equal(t_read("S", &stored, &into), T_LIVE);
    assert_int_equal(stored.total, 5);
    assert_true(prf_profile_has_folded(&stored, "L"));
    prf_profile_clear(&stored);
    /* chain: S -> T, then a late L -> S retry is redirected to T and finds
     * L folded already (the folded sets travel with the data) */
    assert_int_equal(t_merge(&w, "S", "T", 3, &t_opts), 1);
    assert_int_equal(t_merge(&w, "L", "S", 3, &t_opts), 0);
    t_assert_world(&w);
    assert_int_equal(t_read("T", &stored, &into), T_LIVE);
    assert_int_equal(stored.total, 5);
    assert_int_equal(stored.n_folded, 2);
    prf_profile_clear(&stored);
    for (int i = 0; i < 3; i++)
        prf_profile_clear(&models[i]);
    for (int i = 0; i < 4; i++)
        t_event_free(&ev[i]);
    t_event_free(&e5);
}

/* The same message seen on both sides (applied at different times): the
 * fold keeps the later applied-at, so the dedup window runs from it. */
static void test_lua_fold_seen_keeps_latest(void **state)
{
    (void)state;
    t_need_redis();
    const char *names[] = { "X", "Y" };
    prf_profile models[2];
    for (int i = 0; i < 2; i++)
        prf_profile_init(&models[i]);
    t_world w = { models, names, 2 };
    t_event e;
    t_event_make(&e, "shared", 1000, "page", "web");
    t_event *one[] = { &e };
    prf_fold_opts early = t_opts;
    early.now_ms = T_NOW - 5000;
    t_apply_both(models, names, 2, "X", one, 1, &early);
    t_apply_both(models, names, 2, "Y", one, 1, &t_opts);
    assert_int_equal(t_merge(&w, "X", "Y", 3, &t_opts), 1);
    t_assert_world(&w);
    assert_int_equal(prf_profile_seen(&models[1], "shared")->applied_at, T_NOW);
    for (int i = 0; i < 2; i++)
        prf_profile_clear(&models[i]);
    t_event_free(&e);
}

/* More values than one command takes at once (the scripts send them in
 * chunks): 1200 events in one apply, each with its own identifier, then
 * the whole profile folded. */
enum { T_BIG = 1200 };

static void test_lua_large_batch_and_fold(void **state)
{
    (void)state;
    t_need_redis();
    const char *names[] = { "BIG", "TO" };
    prf_profile models[2];
    for (int i = 0; i < 2; i++)
        prf_profile_init(&models[i]);
    t_world w = { models, names, 2 };
    t_event *ev = calloc(T_BIG, sizeof(*ev));
    t_event **batch = calloc(T_BIG, sizeof(*batch));
    assert_non_null(ev);
    assert_non_null(batch);
    for (int k = 0; k < T_BIG; k++) {
        char mid[32], id[48];
        snprintf(mid, sizeof(mid), "big%04d", k);
        snprintf(id, sizeof(id), "7:user_idb%04d", k);
        t_event_make(&ev[k], mid, 1000 + k % 50, k % 2 ? "page" : "identify", k % 3 ? "web" : "");
        t_event_id(&ev[k], id);
        if (k % 2 == 0)
            t_event_trait(&ev[k], k % 4 ? "plan" : "tier", k % 8 ? "\"a\"" : "\"b\"");
        batch[k] = &ev[k];
    }
    t_apply_both(models, names, 2, "BIG", batch, T_BIG, &t_opts);
    t_apply_both(models, names, 2, "TO", batch, 1, &t_opts);
    t_assert_world(&w);
    assert_int_equal(t_merge(&w, "BIG", "TO", 3, &t_opts), 1);
    t_assert_world(&w);
    assert_int_equal(models[1].total, T_BIG + 1);
    assert_int_equal(models[1].n_seen, T_BIG);
    for (int i = 0; i < 2; i++)
        prf_profile_clear(&models[i]);
    for (int k = 0; k < T_BIG; k++)
        t_event_free(&ev[k]);
    free(ev);
    free(batch);
}

/* The daily hash as the segmentation service reads it: the raw fields
 * (key name, field names, number formats), replays, the retention cut and
 * folds, each also checked against the C model. */
static char *t_daily_get(const char *master, const char *field)
{
    prf_keys k;
    assert_int_equal(prf_keys_init(&k, master), PRF_OK);
    redisReply *r = redisCommand(t_redis, "HGET %s %s", k.v[PRF_KEY_DAILY], field);
    prf_keys_free(&k);
    assert_non_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static void t_daily_expect(const char *master, const char *field, const char *want)
{
    char *v = t_daily_get(master, field);
    if (!want) {
        if (v)
            fail_msg("%s %s: want no field, got %s", master, field, v);
        return;
    }
    if (!v)
        fail_msg("%s %s: want %s, got no field", master, field, want);
    assert_string_equal(v, want);
    free(v);
}

static long long t_daily_len(const char *master)
{
    redisReply *r = redisCommand(t_redis, "HLEN cdp:prf:{p:%s}:daily", master);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

enum { T_D0 = 19675 };   /* the day of T_NOW */

static void test_lua_daily_contract(void **state)
{
    (void)state;
    t_need_redis();
    const char *names[] = { "D", "D2", "D3", "D4", "N" };
    prf_profile models[5];
    for (int i = 0; i < 5; i++)
        prf_profile_init(&models[i]);
    t_world w = { models, names, 5 };
    t_event ev[10];
    t_event_make(&ev[0], "o1", T_D0 * T_DAY + 1000, "Order Completed", "web");
    ev[0].d.has_revenue = 1;
    ev[0].d.revenue = 19.5;
    t_event_make(&ev[1], "o2", T_D0 * T_DAY + 2000, "Order Completed", "");
    ev[1].d.has_revenue = 1;
    ev[1].d.revenue = 0.25;
    t_event_make(&ev[2], "o3", T_D0 * T_DAY - 1, "page", "");
    t_event_make(&ev[3], "o4", T_D0 * T_DAY + 3000, "Order Completed", "");
    ev[3].d.has_revenue = 1;
    ev[3].d.revenue = 0.25;
    t_event_make(&ev[4], "o5", (T_D0 + 40) * T_DAY, "page", "");   /* cut -> 19683 */
    t_event_make(&ev[5], "o6", (T_D0 - 75) * T_DAY, "page", "");   /* before the cut */
    t_event_make(&ev[6], "n1", -1, "page", "");                    /* day -1 */
    t_event_make(&ev[7], "x1", (T_D0 + 40) * T_DAY + 9, "page", "");
    t_event_make(&ev[8], "y1", (T_D0 - 5) * T_DAY, "page", "");
    t_event_make(&ev[9], "y2", (T_D0 + 85) * T_DAY, "Signed Up", "");
    /* one script: two orders the same day fold into one bucket; a repeat
     * in the batch and a replay in the next one add nothing */
    t_event *b1[] = { &ev[0], &ev[1], &ev[2], &ev[0] };
    t_apply_both(models, names, 5, "D", b1, 4, &t_opts);
    t_event *b2[] = { &ev[1], &ev[3] };
    t_apply_both(models, names, 5, "D", b2, 2, &t_opts);
    t_daily_expect("D", "n:19675:Order Completed", "3");
    t_daily_expect("D", "r:19675", "20");              /* 19.5 + 0.25 + 0.25 */
    t_daily_expect("D", "n:19674:page", "1");
    t_daily_expect("D", "r:19674", NULL);
    assert_int_equal(t_daily_len("D"), 3);
    t_event *bn[] = { &ev[6] };
    t_apply_both(models, names, 5, "N", bn, 1, &t_opts);
    t_daily_expect("N", "n:-1:page", "1");
    t_assert_world(&w);
    /* the newest day moves 40 days on: the cut (floor(19715 / 16) * 16 - 29
     * = 19683) drops every bucket so far; an event before it counts in the
     * totals only */
    t_event *b3[] = { &ev[4], &ev[5] };
    t_apply_both(models, names, 5, "D", b3, 2, &t_opts);
    t_daily_expect("D", "n:19675:Order Completed", NULL);
    t_daily_expect("D", "r:19675", NULL);
    t_daily_expect("D", "n:19600:page", NULL);
    t_daily_expect("D", "n:19715:page", "1");
    assert_int_equal(t_daily_len("D"), 1);
    assert_int_equal(models[0].total, 6);
    t_assert_world(&w);
    /* folds: D2 (same day as D) crashes after step 1, then folds once */
    t_event *b4[] = { &ev[7] };
    t_apply_both(models, names, 5, "D2", b4, 1, &t_opts);
    assert_int_equal(t_merge(&w, "D2", "D", 1, &t_opts), 0);
    assert_int_equal(t_merge(&w, "D2", "D", 2, &t_opts), 1);
    assert_int_equal(t_merge(&w, "D2", "D", 3, &t_opts), 0);
    t_daily_expect("D", "n:19715:page", "2");
    t_daily_expect("D2", "n:19715:page", NULL);
    t_assert_world(&w);
    /* D3's bucket of day 19670 is within its own retention but before D's
     * cut: the fold does not carry it */
    t_event *b5[] = { &ev[8] };
    t_apply_both(models, names, 5, "D3", b5, 1, &t_opts);
    t_daily_expect("D3", "n:19670:page", "1");
    assert_int_equal(t_merge(&w, "D3", "D", 3, &t_opts), 1);
    t_daily_expect("D", "n:19670:page", NULL);
    t_daily_expect("D", "n:19715:page", "2");
    /* D4's newest day (19760) moves D's cut to 19731 in the fold: D's
     * 19715 goes */
    t_event *b6[] = { &ev[9] };
    t_apply_both(models, names, 5, "D4", b6, 1, &t_opts);
    assert_int_equal(t_merge(&w, "D4", "D", 3, &t_opts), 1);
    t_daily_expect("D", "n:19715:page", NULL);
    t_daily_expect("D", "n:19760:Signed Up", "1");
    assert_int_equal(t_daily_len("D"), 1);
    t_assert_world(&w);
    for (int i = 0; i < 5; i++)
        prf_profile_clear(&models[i]);
    for (int i = 0; i < 10; i++)
        t_event_free(&ev[i]);
}

/* ---------------------------------------------- randomized agreement */

enum { T_POOL = 120, T_MASTERS = 5, T_STEPS = 60, T_BATCH_MAX = 40 };

static uint64_t t_rng = 0x9e3779b97f4a7c15ull;

static unsigned t_rand(unsigned n)
{
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 7;
    t_rng ^= t_rng << 17;
    return (unsigned)(t_rng % n);
}

static void t_random_event(t_event *e, int k)
{
    static const char *names[] = { "Order Completed", "Signed Up", "identify", "page" };
    static const char *chans[] = { "", "web", "sms", "whatsapp" };
    static const char *tkeys[] = { "plan", "name", "age", "vip" };
    static const char *tvals[] = { "\"a\"", "\"b\"", "3", "true", "null", "{\"x\":[1,2]}" };
    char mid[32];
    snprintf(mid, sizeof(mid), "m%03d", k);
    /* days -20..59: the retention cut (T_RETENTION) moves several times */
    int64_t day = (int64_t)t_rand(80) - 20;
    t_event_make(e, mid, day * T_DAY + 1000 * (int64_t)t_rand(20), names[t_rand(4)],
                 chans[t_rand(4)]);
    snprintf(e->master, sizeof(e->master), "P%u", t_rand(T_MASTERS));
    if (strcmp(e->name, "identify") == 0) {
        unsigned nt = t_rand(4);
        for (unsigned i = 0; i < nt; i++)
            t_event_trait(e, tkeys[(i + k) % 4], tvals[t_rand(6)]);
    }
    if (t_rand(3) == 0) {
        e->d.has_revenue = 1;
        e->d.revenue = (double)t_rand(10000) / 100.0;
    }
    for (unsigned i = t_rand(3); i > 0; i--) {
        char id[48];
        snprintf(id, sizeof(id), "7:user_idu%u", t_rand(6));
        t_event_id(e, id);
    }
}

/* Applies one batch: grouped by master in batch order, one script per
 * master, as the service does. Marks the pool events it used. */
static void t_random_batch(t_world *w, t_event *pool, unsigned char *used)
{
    unsigned n = 1 + t_rand(T_BATCH_MAX);
    t_event *batch[T_BATCH_MAX];
    for (unsigned i = 0; i < n; i++) {
        unsigned k = t_rand(T_POOL);
        batch[i] = &pool[k];
        used[k] = 1;
    }
    for (size_t m = 0; m < w->n; m++) {
        t_event *group[T_BATCH_MAX];
        size_t g = 0;
        for (unsigned i = 0; i < n; i++)
            if (strcmp(batch[i]->master, w->names[m]) == 0)
                group[g++] = batch[i];
        if (g)
            t_apply_both(w->models, w->names, w->n, w->names[m], group, g, &t_opts);
    }
}

static void test_lua_random_agreement(void **state)
{
    (void)state;
    t_need_redis();
    static const char *names[T_MASTERS] = { "P0", "P1", "P2", "P3", "P4" };
    prf_profile models[T_MASTERS];
    for (int i = 0; i < T_MASTERS; i++)
        prf_profile_init(&models[i]);
    t_world w = { models, names, T_MASTERS };
    t_event *pool = calloc(T_POOL, sizeof(*pool));
    unsigned char used[T_POOL] = { 0 };
    assert_non_null(pool);
    for (int k = 0; k < T_POOL; k++)
        t_random_event(&pool[k], k);
    /* merges go from a higher to a lower master (no cycles) and may stop
     * after any step, as a crash would */
    for (int step = 0; step < T_STEPS; step++) {
        t_random_batch(&w, pool, used);
        if (t_rand(6) == 0) {
            unsigned l = 1 + t_rand(T_MASTERS - 1), s = t_rand(l);
            t_merge(&w, names[l], names[s], 1 + (int)t_rand(3), &t_opts);
        }
        t_assert_world(&w);
    }
    /* the retries of unfinished merges complete them */
    for (int i = T_MASTERS - 1; i >= 0; i--)
        if (models[i].merged_into)
            t_merge(&w, names[i], models[i].merged_into, 3, &t_opts);
    t_assert_world(&w);
    /* then every message used is counted exactly once among the live
     * profiles, and seen by exactly one of them */
    int64_t total = 0;
    size_t n_used = 0;
    for (int i = 0; i < T_MASTERS; i++)
        if (!models[i].merged_into)
            total += models[i].total;
    for (int k = 0; k < T_POOL; k++) {
        if (!used[k])
            continue;
        n_used++;
        int holders = 0;
        for (int i = 0; i < T_MASTERS; i++)
            holders += !models[i].merged_into && prf_profile_seen(&models[i], pool[k].mid);
        assert_int_equal(holders, 1);
    }
    assert_int_equal(total, (int64_t)n_used);
    for (int i = 0; i < T_MASTERS; i++)
        prf_profile_clear(&models[i]);
    for (int k = 0; k < T_POOL; k++)
        t_event_free(&pool[k]);
    free(pool);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_stamp_order),
        cmocka_unit_test(test_trait_lww_by_event_time),
        cmocka_unit_test(test_apply_order_independent),
        cmocka_unit_test(test_apply_is_idempotent),
        cmocka_unit_test(test_timeline_keeps_latest_by_event_time),
        cmocka_unit_test(test_revenue_strings),
        cmocka_unit_test(test_merge_two_snapshots),
        cmocka_unit_test(test_fold_exactly_once),
        cmocka_unit_test(test_fold_carries_transitive_folds),
        cmocka_unit_test(test_daily_day_and_cut),
        cmocka_unit_test(test_daily_buckets),
        cmocka_unit_test(test_daily_fold_sums_once),
        cmocka_unit_test(test_event_track),
        cmocka_unit_test(test_event_identify_traits),
        cmocka_unit_test(test_event_message_channel),
        cmocka_unit_test(test_event_validation),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_fast_formatting),
        cmocka_unit_test(test_view_build),
    };
    const struct CMUnitTest lua[] = {
        cmocka_unit_test(test_lua_apply_agrees),
        cmocka_unit_test(test_lua_batch_out_of_order),
        cmocka_unit_test(test_lua_fold_exactly_once),
        cmocka_unit_test(test_lua_fold_seen_keeps_latest),
        cmocka_unit_test(test_lua_large_batch_and_fold),
        cmocka_unit_test(test_lua_daily_contract),
        cmocka_unit_test(test_lua_random_agreement),
    };
    int failed = cmocka_run_group_tests_name("profile_fold", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("profile_lua", lua, t_redis_setup, t_redis_teardown);
    return failed;
}
