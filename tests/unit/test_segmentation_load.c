/* test_segmentation_load: decoding what segmentation reads from Redis
 * (seg_load.h) and its key names (seg_keys.h): a profile's main and daily
 * hashes into a seg_profile (checked through seg_rule_eval, the only way a
 * profile is read), malformed fields skipped, the merge tombstone,
 * membership states, pending transitions, backfill progress, decimal
 * parsing, the test clock's offset file, keys and the classification of
 * Redis outcomes. Pure: replies are built by hand, no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "seg_clock.h"
#include "seg_keys.h"
#include "seg_load.h"
#include "seg_rule.h"

#define DAY INT64_C(86400000)
/* 2026-03-01T12:00:00Z: day D0. */
#define T0 INT64_C(1772366400000)
#define D0 (T0 / DAY)

/* ------------------------------------------------------------- replies */

static redisReply *rstr(const char *s)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->len = strlen(s);
    r->str = malloc(r->len + 1);
    memcpy(r->str, s, r->len + 1);
    return r;
}

/* A flat array reply of n NULL-terminated strings. */
static redisReply *rflat(const char *const *items)
{
    size_t n = 0;
    while (items[n])
        n++;
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(redisReply *));
    for (size_t i = 0; i < n; i++)
        r->element[i] = rstr(items[i]);
    return r;
}

static char *fmt(const char *f, long long a)
{
    char *s = malloc(128);
    snprintf(s, 128, f, a);
    return s;
}

/* 1 when rule holds for p at T0. */
static int holds(const seg_profile *p, const char *rule)
{
    seg_rule_error err;
    memset(&err, 0, sizeof err);
    seg_rule *r = seg_rule_parse(rule, &err);
    if (!r)
        fail_msg("rule '%s': %s", rule, err.message);
    int v = seg_rule_eval(r, p, T0, NULL);
    seg_rule_free(r);
    return v;
}

/* ------------------------------------------------------------- profiles */

static void test_load_main(void **state)
{
    (void)state;
    char *first = fmt("%lld", (long long)(T0 - 40 * DAY));
    char *last = fmt("%lld", (long long)(T0 - 3600000));
    char *sms = fmt("%lld:3:m-1Order Completed", (long long)(T0 - 600000));
    const char *items[] = {
        "total", "7",
        "revenue", "12.5",
        "first_seen", first,
        "last_seen", last,
        "t:plan", "\"pro\"",
        "t:age", "42",
        "t:tags", "[\"vip\",\"beta\"]",
        "t:broken", "{not json",
        "t:first name", "\"Ann\"",
        "n:Order Completed", "3",
        "n:a:b", "2",
        "n:bad", "x1",
        "c:sms", sms,
        "c:web", "garbage",
        "i:user_id:u1", "1",
        "f:m-old", "1",
        "x", "ignored",
        NULL,
    };
    redisReply *r = rflat(items);
    seg_profile *p = seg_profile_new();
    char *merged = (char *)"sentinel";
    int exists = -1;
    assert_int_equal(seg_profile_load_main(p, r, &merged, &exists), 0);
    assert_null(merged);
    assert_int_equal(exists, 1);
    assert_true(holds(p, "total_events = 7"));
    assert_true(holds(p, "revenue = 12.5"));
    assert_true(holds(p, "first_seen before 39d and not (first_seen before 41d)"));
    assert_true(holds(p, "last_seen within 2h and not (last_seen within 30m)"));
    assert_true(holds(p, "trait.plan = \"pro\" and trait.age >= 42 and trait.tags contains \"vip\""));
    assert_true(holds(p, "trait(\"first name\") = \"Ann\""));
    assert_false(holds(p, "trait.broken exists"));
    assert_true(holds(p, "count(\"Order Completed\") = 3"));
    assert_true(holds(p, "count(\"a:b\") = 2"));
    assert_true(holds(p, "count(\"bad\") = 0"));
    assert_true(holds(p, "last_interaction(\"sms\") within 11m and not (last_interaction(\"sms\") within 9m)"));
    assert_false(holds(p, "last_interaction(\"web\") exists"));
    seg_profile_free(p);
    freeReplyObject(r);
    free(first);
    free(last);
    free(sms);
}

static void test_load_main_tombstone_and_empty(void **state)
{
    (void)state;
    const char *items[] = { "merged_into", "m-survivor", "total", "3", NULL };
    redisReply *r = rflat(items);
    seg_profile *p = seg_profile_new();
    char *merged = NULL;
    int exists = 0;
    assert_int_equal(seg_profile_load_main(p, r, &merged, &exists), 0);
    assert_string_equal(merged, "m-survivor");
    assert_int_equal(exists, 1);
    free(merged);
    freeReplyObject(r);

    /* an empty merged_into is not a tombstone */
    const char *items2[] = { "merged_into", "", NULL };
    r = rflat(items2);
    seg_profile_reset(p);
    assert_int_equal(seg_profile_load_main(p, r, &merged, &exists), 0);
    assert_null(merged);
    freeReplyObject(r);

    const char *none[] = { NULL };
    r = rflat(none);
    seg_profile_reset(p);
    assert_int_equal(seg_profile_load_main(p, r, &merged, &exists), 0);
    assert_int_equal(exists, 0);
    assert_false(holds(p, "last_seen exists"));
    assert_true(holds(p, "total_events = 0"));
    freeReplyObject(r);

    /* not a flat array of strings: refused */
    const char *odd[] = { "total", NULL };
    r = rflat(odd);
    assert_int_equal(seg_profile_load_main(p, r, &merged, &exists), -1);
    freeReplyObject(r);
    redisReply nil = { .type = REDIS_REPLY_NIL };
    assert_int_equal(seg_profile_load_main(p, &nil, &merged, &exists), -1);
    r = rflat((const char *const[]){ "total", "1", NULL });
    free(r->element[1]->str);
    r->element[1]->str = NULL;
    r->element[1]->type = REDIS_REPLY_INTEGER;
    assert_int_equal(seg_profile_load_main(p, r, &merged, &exists), -1);
    freeReplyObject(r);
    seg_profile_free(p);
}

static void test_load_daily(void **state)
{
    (void)state;
    char *f[8];
    f[0] = fmt("n:%lld:Visit", (long long)D0);
    f[1] = fmt("n:%lld:Visit", (long long)(D0 - 6));
    f[2] = fmt("n:%lld:Visit", (long long)(D0 - 7));
    f[3] = fmt("n:%lld:a:b", (long long)(D0 - 1));
    f[4] = fmt("r:%lld", (long long)D0);
    f[5] = fmt("r:%lld", (long long)(D0 - 20));
    f[6] = fmt("n:%lld:", (long long)D0);
    f[7] = fmt("n:%lld:Visit", (long long)(D0 - 2));
    const char *items[] = {
        f[0], "1", f[1], "2", f[2], "10", f[3], "4",
        f[4], "4.5", f[5], "100",
        f[6], "9",                 /* no name: a count of "" that no rule names */
        f[7], "x",                 /* not a number: skipped */
        "n:abc:Visit", "5",        /* not a day: skipped */
        "n:123", "5",              /* no name separator: skipped */
        "r:abc", "5",              /* not a day: skipped */
        "zz", "1",
        NULL,
    };
    redisReply *r = rflat(items);
    seg_profile *p = seg_profile_new();
    assert_int_equal(seg_profile_load_daily(p, r), 0);
    assert_true(holds(p, "count(\"Visit\", 7d) = 3"));
    assert_true(holds(p, "count(\"Visit\", 8d) = 13"));
    assert_true(holds(p, "count(\"Visit\", 1d) = 1"));
    assert_true(holds(p, "count(\"a:b\", 2d) = 4"));
    assert_true(holds(p, "sum(revenue, 7d) = 4.5"));
    assert_true(holds(p, "sum(revenue, 21d) = 104.5"));
    seg_profile_free(p);
    freeReplyObject(r);
    for (int i = 0; i < 8; i++)
        free(f[i]);
    redisReply nil = { .type = REDIS_REPLY_NIL };
    p = seg_profile_new();
    assert_int_equal(seg_profile_load_daily(p, &nil), -1);
    seg_profile_free(p);
}

/* ------------------------------------------------------------- memberships */

static void test_mem_parse(void **state)
{
    (void)state;
    seg_mem_state st;
    const char *ok = "1:1700000000000:0:3:1690000000000";
    assert_int_equal(seg_mem_parse(ok, strlen(ok), &st), 0);
    assert_int_equal(st.in, 1);
    assert_int_equal(st.entered_ms, INT64_C(1700000000000));
    assert_int_equal(st.exited_ms, 0);
    assert_int_equal(st.n, 3);
    assert_int_equal(st.created_ms, INT64_C(1690000000000));
    const char *tomb = "0:0:0:7:0";
    assert_int_equal(seg_mem_parse(tomb, strlen(tomb), &st), 0);
    assert_int_equal(st.in, 0);
    assert_int_equal(st.n, 7);
    assert_int_equal(st.created_ms, 0);
    /* a parse reads only len bytes */
    assert_int_equal(seg_mem_parse("0:1:2:3:4:5", 9, &st), 0);
    assert_int_equal(st.created_ms, 4);
    static const char *bad[] = { "", "1", "1:2:3:4", "1:2:3:4:5:6", "2:0:0:1:0", "1:a:0:1:0",
                                 "1::0:1:0", "1:0:0:1:", ":0:0:1:0", "1:0:0:1:0:" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(seg_mem_parse(bad[i], strlen(bad[i]), &st), -1);
}

static void test_change_parse(void **state)
{
    (void)state;
    seg_change c;
    const char *cid = "s1:m1:2";
    const char *json = "{\"seg\":\"s1\",\"m\":\"m1\",\"n\":2,\"k\":\"exited\",\"at\":\"1700000000123\","
                       "\"ev\":\"[\\\"Order Completed\\\"]\",\"mid\":\"msg-1\",\"c\":\"1690000000000\"}";
    assert_int_equal(seg_change_parse(cid, strlen(cid), json, strlen(json), &c), 0);
    assert_string_equal(c.cid, cid);
    assert_string_equal(c.seg, "s1");
    assert_string_equal(c.m, "m1");
    assert_string_equal(c.kind, "exited");
    assert_string_equal(c.ev, "[\"Order Completed\"]");
    assert_string_equal(c.mid, "msg-1");
    assert_int_equal(c.n, 2);
    assert_int_equal(c.at_ms, INT64_C(1700000000123));
    assert_int_equal(c.created_ms, INT64_C(1690000000000));
    seg_change_clear(&c);
    assert_null(c.cid);

    /* numbers as Lua's cjson may write them; no incarnation recorded */
    const char *json2 = "{\"seg\":\"s\",\"m\":\"m\",\"n\":\"5\",\"k\":\"entered\",\"at\":1.7e12,"
                        "\"ev\":\"[]\",\"mid\":\"\"}";
    assert_int_equal(seg_change_parse("x", 1, json2, strlen(json2), &c), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.at_ms, INT64_C(1700000000000));
    assert_int_equal(c.created_ms, 0);
    seg_change_clear(&c);

    static const char *bad[] = {
        "", "[]", "{}",
        "{\"seg\":\"s\",\"m\":\"m\",\"n\":1,\"k\":\"entered\",\"at\":1,\"ev\":\"[]\"}",
        "{\"seg\":1,\"m\":\"m\",\"n\":1,\"k\":\"entered\",\"at\":1,\"ev\":\"[]\",\"mid\":\"\"}",
        "{\"seg\":\"s\",\"m\":\"m\",\"n\":\"x\",\"k\":\"entered\",\"at\":1,\"ev\":\"[]\",\"mid\":\"\"}",
        "{\"seg\":\"s\",\"m\":\"m\",\"n\":1,\"k\":\"entered\",\"at\":null,\"ev\":\"[]\",\"mid\":\"\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(seg_change_parse("x", 1, bad[i], strlen(bad[i]), &c), -1);
        assert_null(c.cid);
    }
}

static void test_bf_status_load(void **state)
{
    (void)state;
    const char *items[] = { "version", "3", "state", "RUNNING", "scanned", "120", "total", "400",
                            "matched", "17", "started", "1700000000000", "finished", "0",
                            "shard", "5", "cursor", "1234", "error", "", "other", "x", NULL };
    redisReply *r = rflat(items);
    seg_bf_status b;
    assert_int_equal(seg_bf_status_load(&b, r), 0);
    assert_int_equal(b.present, 1);
    assert_int_equal(b.version, 3);
    assert_string_equal(b.state, "RUNNING");
    assert_int_equal(b.scanned, 120);
    assert_int_equal(b.total, 400);
    assert_int_equal(b.matched, 17);
    assert_int_equal(b.started_ms, INT64_C(1700000000000));
    assert_int_equal(b.finished_ms, 0);
    assert_int_equal(b.shard, 5);
    assert_string_equal(b.cursor, "1234");
    assert_string_equal(b.error, "");
    freeReplyObject(r);
    const char *none[] = { NULL };
    r = rflat(none);
    assert_int_equal(seg_bf_status_load(&b, r), 0);
    assert_int_equal(b.present, 0);
    freeReplyObject(r);
    /* an over-long state is cut, not overflowed */
    const char *lng[] = { "state", "RUNNINGRUNNINGRUNNINGRUNNING", NULL };
    r = rflat(lng);
    assert_int_equal(seg_bf_status_load(&b, r), 0);
    assert_int_equal(strlen(b.state), sizeof(b.state) - 1);
    freeReplyObject(r);
}

static void test_parse_i64_and_clock(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(cdp_parse_i64("-42", 3, &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(cdp_parse_i64("9223372036854775807", 19, &v), 0);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(cdp_parse_i64("9223372036854775808", 19, &v), -1);
    assert_int_equal(cdp_parse_i64("12x", 3, &v), -1);
    assert_int_equal(cdp_parse_i64("", 0, &v), -1);
    assert_int_equal(cdp_parse_i64("123456", 3, &v), 0);
    assert_int_equal(v, 123);

    assert_int_equal(seg_clock_parse("2678400000\n", 11, &v), 0);
    assert_int_equal(v, INT64_C(2678400000));
    assert_int_equal(seg_clock_parse("  -5 ", 5, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(seg_clock_parse("", 0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(seg_clock_parse("1 2", 3, &v), -1);
    assert_int_equal(seg_clock_parse("1d", 2, &v), -1);
}

/* ------------------------------------------------------------- keys */

static void test_keys(void **state)
{
    (void)state;
    static const char *const pk[] = { "cdp:prf:{p:m1}", "cdp:prf:{p:m1}:daily",
                                      "cdp:seg:{p:m1}:mem", "cdp:seg:{p:m1}:pending" };
    for (int k = 0; k < SEG_PKEY_COUNT; k++) {
        char *s = seg_pkey("m1", k);
        assert_string_equal(s, pk[k]);
        free(s);
    }
    static const char *const sk[] = { "cdp:seg:{s:a}:members", "cdp:seg:{s:a}:idx",
                                      "cdp:seg:{s:a}:bf", "cdp:seg:{s:a}:bf:lease" };
    for (int k = 0; k < SEG_SKEY_COUNT; k++) {
        char *s = seg_skey("a", k);
        assert_string_equal(s, sk[k]);
        free(s);
    }
    assert_null(seg_pkey("m", SEG_PKEY_COUNT));
    assert_null(seg_skey("a", -1));
    /* FNV-1a mod 16: stable values, spread over the shards */
    assert_int_equal(seg_known_shard(""), 2166136261u % SEG_KNOWN_SHARDS);
    unsigned used = 0;
    char m[16];
    for (int i = 0; i < 200; i++) {
        snprintf(m, sizeof m, "m%d", i);
        unsigned s = seg_known_shard(m);
        assert_true(s < SEG_KNOWN_SHARDS);
        assert_int_equal(seg_known_shard(m), s);
        used |= 1u << s;
    }
    assert_int_equal(used, 0xffffu);
    char *kk = seg_known_key(15);
    assert_string_equal(kk, "cdp:seg:{known:15}");
    free(kk);
}

static void test_redis_status(void **state)
{
    (void)state;
    char msg[SEG_ERR_MAX];
    redisReply ok = { .type = REDIS_REPLY_NIL };
    assert_int_equal(cdp_redis_status(&ok, NULL, msg, sizeof msg), GRPC_STATUS_OK);
    assert_string_equal(msg, "");
    assert_int_equal(cdp_redis_status(NULL, "connection refused", msg, sizeof msg),
                     GRPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(msg, "connection refused"));
    assert_int_equal(cdp_redis_status(NULL, NULL, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
    static const char *const transient[] = { "LOADING Redis is loading", "BUSY script", "OOM x",
                                             "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN",
                                             "READONLY You can't write", "NOSCRIPT No matching" };
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
        redisReply e = { .type = REDIS_REPLY_ERROR, .str = (char *)transient[i],
                         .len = strlen(transient[i]) };
        assert_int_equal(cdp_redis_status(&e, NULL, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
    }
    redisReply e = { .type = REDIS_REPLY_ERROR, .str = (char *)"WRONGTYPE Operation", .len = 19 };
    assert_int_equal(cdp_redis_status(&e, NULL, msg, sizeof msg), GRPC_STATUS_INTERNAL);
    assert_non_null(strstr(msg, "WRONGTYPE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_main),
        cmocka_unit_test(test_load_main_tombstone_and_empty),
        cmocka_unit_test(test_load_daily),
        cmocka_unit_test(test_mem_parse),
        cmocka_unit_test(test_change_parse),
        cmocka_unit_test(test_bf_status_load),
        cmocka_unit_test(test_parse_i64_and_clock),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_redis_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
