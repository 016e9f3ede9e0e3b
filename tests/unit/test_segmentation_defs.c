/* test_segmentation_defs: segment definitions and the snapshot index
 * (seg_defs.h): rule parsing into a definition, the stored JSON round trip
 * and malformed stored forms, id validation, and which segments a touch
 * selects (traits, events, channels, revenue, any-event dependencies,
 * time-based). Pure: no network, no Redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "seg_defs.h"

/* A loaded definition of id with rule text. */
static seg_def make_def(const char *id, const char *rule, int64_t version)
{
    seg_def d;
    seg_rule_error err;
    memset(&d, 0, sizeof d);
    memset(&err, 0, sizeof err);
    if (seg_def_set_rule(&d, rule, &err) != 0)
        fail_msg("rule '%s' did not parse: %s", rule, err.message);
    d.id = strdup(id);
    d.name = strdup(id);
    d.description = strdup("");
    d.version = version;
    d.created_ms = 1000 + version;
    d.updated_ms = 2000 + version;
    return d;
}

static void test_set_rule(void **state)
{
    (void)state;
    seg_def d = make_def("a", "trait.plan = \"pro\" and count(\"Order Completed\", 30d) >= 2", 1);
    assert_int_equal(d.nreads, 2);
    assert_string_equal(d.reads[0], "trait:plan");
    assert_string_equal(d.reads[1], "event:Order Completed");
    assert_true(d.time_based);
    assert_non_null(d.r);
    assert_non_null(d.canonical);
    assert_non_null(d.parsed);

    /* a bad rule leaves the definition as it was */
    seg_rule_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(seg_def_set_rule(&d, "trait.plan = ", &err), -1);
    assert_int_equal(err.line, 1);
    assert_true(err.column > 1);
    assert_string_equal(d.reads[0], "trait:plan");
    assert_string_equal(d.rule, "trait.plan = \"pro\" and count(\"Order Completed\", 30d) >= 2");

    /* a new rule replaces everything derived from the old one */
    assert_int_equal(seg_def_set_rule(&d, "revenue > 10", &err), 0);
    assert_int_equal(d.nreads, 1);
    assert_string_equal(d.reads[0], "revenue");
    assert_false(d.time_based);
    seg_def_clear(&d);
}

static void test_json_round_trip(void **state)
{
    (void)state;
    seg_def d = make_def("seg.1", "last_seen within 7d or trait(\"first name\") exists", 3);
    free(d.description);
    d.description = strdup("with \"quotes\" and \xc3\xa9");
    char *json = seg_def_to_json(&d);
    assert_non_null(json);
    seg_def back;
    assert_int_equal(seg_def_from_json(&back, json, strlen(json)), 0);
    assert_string_equal(back.id, d.id);
    assert_string_equal(back.description, d.description);
    assert_string_equal(back.rule, d.rule);
    assert_string_equal(back.canonical, d.canonical);
    assert_string_equal(back.parsed, d.parsed);
    assert_int_equal(back.nreads, d.nreads);
    for (size_t i = 0; i < d.nreads; i++)
        assert_string_equal(back.reads[i], d.reads[i]);
    assert_int_equal(back.time_based, 1);
    assert_int_equal(back.version, 3);
    assert_int_equal(back.created_ms, 1003);
    assert_int_equal(back.updated_ms, 2003);
    assert_null(back.r);
    assert_int_equal(seg_def_load_rule(&back), 0);
    assert_non_null(back.r);
    char *canon = seg_rule_to_text(back.r);
    assert_string_equal(canon, d.canonical);
    free(canon);
    free(json);
    seg_def_clear(&back);
    seg_def_clear(&d);
}

static void test_json_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "not json",
        "[]",
        "{\"id\":\"a\"}",
        /* reads not an array */
        "{\"id\":\"a\",\"name\":\"\",\"description\":\"\",\"rule\":\"true\",\"canonical\":\"true\","
        "\"parsed\":\"x\",\"reads\":{},\"time_based\":false,\"version\":1,\"created\":1,\"updated\":1}",
        /* a read that is not a string */
        "{\"id\":\"a\",\"name\":\"\",\"description\":\"\",\"rule\":\"true\",\"canonical\":\"true\","
        "\"parsed\":\"x\",\"reads\":[1],\"time_based\":false,\"version\":1,\"created\":1,\"updated\":1}",
        /* version not an integer */
        "{\"id\":\"a\",\"name\":\"\",\"description\":\"\",\"rule\":\"true\",\"canonical\":\"true\","
        "\"parsed\":\"x\",\"reads\":[],\"time_based\":false,\"version\":\"1\",\"created\":1,\"updated\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        seg_def d;
        assert_int_equal(seg_def_from_json(&d, bad[i], strlen(bad[i])), -1);
        assert_null(d.id);
    }
    /* well-formed JSON whose parsed form is garbage: loads, the rule does not */
    const char *garbage =
        "{\"id\":\"a\",\"name\":\"\",\"description\":\"\",\"rule\":\"true\",\"canonical\":\"true\","
        "\"parsed\":\"{nope\",\"reads\":[],\"time_based\":false,\"version\":1,\"created\":1,"
        "\"updated\":1}";
    seg_def d;
    assert_int_equal(seg_def_from_json(&d, garbage, strlen(garbage)), 0);
    assert_int_equal(seg_def_load_rule(&d), -1);
    assert_null(d.r);
    seg_def_clear(&d);
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(seg_id_valid("a"));
    assert_true(seg_id_valid("Seg_1.x-y"));
    char max[66];
    memset(max, 'a', 65);
    max[64] = '\0';
    assert_true(seg_id_valid(max));
    max[64] = 'a';
    max[65] = '\0';
    assert_false(seg_id_valid(max));
    assert_false(seg_id_valid(""));
    assert_false(seg_id_valid("a b"));
    assert_false(seg_id_valid("a/b"));
    assert_false(seg_id_valid("a:b"));
    assert_false(seg_id_valid("\xc3\xa9"));
}

/* The snapshot used by the selection tests, built from rules in an order
 * that is not sorted by id. */
static seg_defs *make_snapshot(void)
{
    static const char *const rules[][2] = {
        { "e_pro", "trait.plan = \"pro\"" },
        { "a_buy", "count(\"Order Completed\") >= 1" },
        { "d_both", "trait.plan = \"team\" or count(\"Order Completed\", 7d) > 2" },
        { "b_rev", "revenue > 100 and trait.vip = true" },
        { "c_recent", "last_seen within 7d" },
        { "f_sms", "last_interaction(\"sms\") within 2d" },
        { "g_total", "total_events >= 10 and first_seen before 30d" },
        { "h_const", "true" },
    };
    size_t n = sizeof rules / sizeof rules[0];
    seg_def *defs = calloc(n, sizeof *defs);
    assert_non_null(defs);
    for (size_t i = 0; i < n; i++) {
        defs[i] = make_def(rules[i][0], rules[i][1], 1);
        assert_int_equal(seg_def_load_rule(&defs[i]), 0);
    }
    seg_defs *s = seg_defs_new(defs, n, 42);
    assert_non_null(s);
    return s;
}

/* Selects for a touch; returns the selected ids joined by ",". */
static char *select_ids(const seg_defs *s, const seg_touch *t, size_t *marked)
{
    size_t n = seg_defs_count(s);
    unsigned char *sel = calloc(n ? n : 1, 1);
    *marked = seg_defs_select(s, t, sel);
    char *out = calloc(1, 512);
    for (size_t i = 0; i < n; i++)
        if (sel[i]) {
            if (out[0])
                strcat(out, ",");
            strcat(out, seg_defs_at(s, i)->id);
        }
    free(sel);
    return out;
}

static void expect_select(const seg_defs *s, const seg_touch *t, const char *want)
{
    size_t marked;
    char *got = select_ids(s, t, &marked);
    assert_string_equal(got, want);
    size_t commas = 0;
    for (const char *p = want; *p; p++)
        commas += *p == ',';
    assert_int_equal(marked, want[0] ? commas + 1 : 0);
    free(got);
}

static void test_snapshot_sorted_and_find(void **state)
{
    (void)state;
    seg_defs *s = make_snapshot();
    assert_int_equal(seg_defs_count(s), 8);
    assert_int_equal(seg_defs_version(s), 42);
    for (size_t i = 1; i < seg_defs_count(s); i++)
        assert_true(strcmp(seg_defs_at(s, i - 1)->id, seg_defs_at(s, i)->id) < 0);
    assert_int_equal(seg_defs_find(s, "a_buy"), 0);
    assert_int_equal(seg_defs_find(s, "h_const"), 7);
    assert_int_equal(seg_defs_find(s, "e_pro"), 4);
    assert_int_equal(seg_defs_find(s, "zzz"), -1);
    assert_int_equal(seg_defs_find(s, ""), -1);
    /* references keep it alive */
    seg_defs *r = seg_defs_ref(s);
    seg_defs_unref(s);
    assert_int_equal(seg_defs_find(r, "b_rev"), 1);
    seg_defs_unref(r);

    seg_defs *empty = seg_defs_new(NULL, 0, 0);
    assert_non_null(empty);
    assert_int_equal(seg_defs_count(empty), 0);
    assert_int_equal(seg_defs_find(empty, "a"), -1);
    seg_touch t = { 0 };
    unsigned char sel[1] = { 0 };
    assert_int_equal(seg_defs_select(empty, &t, sel), 0);
    seg_defs_unref(empty);
}

static void test_select(void **state)
{
    (void)state;
    seg_defs *s = make_snapshot();
    char *plan[] = { "plan" }, *vip[] = { "vip" }, *other[] = { "other" };
    char *oc[] = { "Order Completed" }, *visit[] = { "Visit" }, *sms[] = { "sms" },
         *web[] = { "web" };
    char *two[] = { "plan", "vip" };

    seg_touch none = { 0 };
    expect_select(s, &none, "");
    seg_touch t1 = { .traits = plan, .ntraits = 1 };
    expect_select(s, &t1, "d_both,e_pro");
    seg_touch t2 = { .traits = other, .ntraits = 1 };
    expect_select(s, &t2, "");
    seg_touch t3 = { .traits = two, .ntraits = 2 };
    expect_select(s, &t3, "b_rev,d_both,e_pro");
    seg_touch t4 = { .traits = vip, .ntraits = 1, .revenue = 1 };
    expect_select(s, &t4, "b_rev");
    /* an event: its count readers plus every any-event reader */
    seg_touch t5 = { .events = oc, .nevents = 1 };
    expect_select(s, &t5, "a_buy,c_recent,d_both,g_total");
    seg_touch t6 = { .events = visit, .nevents = 1 };
    expect_select(s, &t6, "c_recent,g_total");
    /* a channel alone (no event) selects its readers only */
    seg_touch t7 = { .channels = sms, .nchannels = 1 };
    expect_select(s, &t7, "f_sms");
    seg_touch t8 = { .channels = web, .nchannels = 1 };
    expect_select(s, &t8, "");
    /* names are case sensitive */
    char *oc_lower[] = { "order completed" };
    seg_touch t9 = { .events = oc_lower, .nevents = 1, .channels = sms, .nchannels = 1 };
    expect_select(s, &t9, "c_recent,f_sms,g_total");
    /* already marked segments are not counted twice */
    size_t n = seg_defs_count(s), marked;
    unsigned char *sel = calloc(n, 1);
    sel[seg_defs_find(s, "e_pro")] = 1;
    marked = seg_defs_select(s, &t1, sel);
    assert_int_equal(marked, 1);
    free(sel);
    /* the constant rule reads nothing: never selected by a touch */
    seg_touch all = { .traits = two, .ntraits = 2, .events = oc, .nevents = 1,
                      .channels = sms, .nchannels = 1, .revenue = 1 };
    expect_select(s, &all, "a_buy,b_rev,c_recent,d_both,e_pro,f_sms,g_total");
    seg_defs_unref(s);
}

static void test_select_time_based(void **state)
{
    (void)state;
    seg_defs *s = make_snapshot();
    size_t n = seg_defs_count(s);
    unsigned char *sel = calloc(n, 1);
    assert_int_equal(seg_defs_select_time_based(s, sel), 4);
    const char *want[] = { "c_recent", "d_both", "f_sms", "g_total" };
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (sel[i])
            assert_string_equal(seg_defs_at(s, i)->id, want[k++]);
    assert_int_equal(seg_defs_select_time_based(s, sel), 0);
    free(sel);
    seg_defs_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_rule),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_snapshot_sorted_and_find),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_select_time_based),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
