/* test_segmentation_rule: the segment rule language (seg_rule.h): parsing
 * every construct, error messages and positions, canonical text and stored
 * JSON round trips, hostile stored forms, evaluation truth tables, windows
 * at day boundaries, next-change times, dependencies and the time-based
 * flag. Pure: no network, no Redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seg_rule.h"

#define DAY INT64_C(86400000)
#define HOUR INT64_C(3600000)
/* 2026-03-01T00:00:00Z, a day boundary: day number D0. */
#define T0 INT64_C(1772323200000)
#define D0 (T0 / DAY)

/* ------------------------------------------------------------- helpers */

static seg_rule *parse_ok(const char *text)
{
    seg_rule_error err;
    memset(&err, 0, sizeof err);
    seg_rule *r = seg_rule_parse(text, &err);
    if (!r)
        fail_msg("'%s' did not parse: line %d, column %d: %s", text, err.line, err.column,
                 err.message);
    return r;
}

/* Parses text that must fail at line/column with exactly `message`
 * (or, when message ends in '*', with a message starting with it). */
static void parse_err(const char *text, int line, int column, const char *message)
{
    seg_rule_error err;
    memset(&err, 0, sizeof err);
    seg_rule *r = seg_rule_parse(text, &err);
    if (r) {
        seg_rule_free(r);
        fail_msg("'%s' parsed but must fail with: %s", text, message);
    }
    size_t n = strlen(message);
    int match = message[n - 1] == '*' ? strncmp(err.message, message, n - 1) == 0
                                      : strcmp(err.message, message) == 0;
    if (!match || err.line != line || err.column != column)
        fail_msg("'%s': got line %d, column %d: %s\nwanted line %d, column %d: %s", text,
                 err.line, err.column, err.message, line, column, message);
}

static char *json_of(const char *text)
{
    seg_rule *r = parse_ok(text);
    char *j = seg_rule_to_json(r);
    assert_non_null(j);
    seg_rule_free(r);
    return j;
}

static void trait(seg_profile *p, const char *name, const char *json)
{
    assert_int_equal(seg_profile_set_trait_json(p, name, json, strlen(json)), 0);
}

/* Evaluates text against p at now; *next (may be NULL) as seg_rule_eval. */
static int eval_at(const char *text, const seg_profile *p, int64_t now, int64_t *next)
{
    seg_rule *r = parse_ok(text);
    int v = seg_rule_eval(r, p, now, next);
    /* The stored form must evaluate the same. */
    char *j = seg_rule_to_json(r);
    seg_rule_error err;
    seg_rule *r2 = seg_rule_from_json(j, &err);
    if (!r2)
        fail_msg("stored form of '%s' did not load: %s (%s)", text, err.message, j);
    int64_t next2;
    assert_int_equal(seg_rule_eval(r2, p, now, &next2), v);
    if (next)
        assert_true(next2 == *next);
    free(j);
    seg_rule_free(r2);
    seg_rule_free(r);
    return v;
}

static int eval1(const char *text, const seg_profile *p)
{
    return eval_at(text, p, T0, NULL);
}

/* A profile with one trait of each kind. */
static seg_profile *trait_profile(void)
{
    seg_profile *p = seg_profile_new();
    assert_non_null(p);
    trait(p, "plan", "\"pro\"");
    trait(p, "age", "42");
    trait(p, "score", "7.5");
    trait(p, "vip", "true");
    trait(p, "off", "false");
    trait(p, "nick", "null");
    trait(p, "tags", "[\"vip\", 3, \"beta\", null]");
    trait(p, "addr", "{\"zip\":\"12345\"}");
    trait(p, "email", "\"ann@example.com\"");
    trait(p, "empty", "\"\"");
    trait(p, "with space", "\"x\"");
    return p;
}

/* ------------------------------------------------------------- parsing */

/* Every construct parses, and prints as the canonical text given. */
static void test_parse_constructs(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"true", "true"},
        {"false", "false"},
        {"trait.plan = \"pro\"", NULL},
        {"trait.plan != \"pro\"", NULL},
        {"trait.age < 30", NULL},
        {"trait.age <= 30", NULL},
        {"trait.age > 30", NULL},
        {"trait.age >= 30.25", NULL},
        {"trait.vip = true", NULL},
        {"trait.vip != false", NULL},
        {"trait.nick = null", NULL},
        {"trait(\"first name\") = \"Ann\"", NULL},
        {"trait(\"plan\") = \"pro\"", "trait.plan = \"pro\""},
        {"trait.tags contains \"vip\"", NULL},
        {"trait.email starts_with \"ann@\"", NULL},
        {"trait.country in [\"US\", \"DE\", 3, true, null]", NULL},
        {"trait.country in[\"US\"]", "trait.country in [\"US\"]"},
        {"trait.plan exists", NULL},
        {"count(\"Order Completed\") >= 3", NULL},
        {"count(\"Order Completed\", 30d) >= 3", NULL},
        {"count(\"Order Completed\", 2w) > 0", NULL},
        {"count(\"x\", 14d) > 0", "count(\"x\", 2w) > 0"},
        {"sum(revenue) > 100", "revenue > 100"},
        {"sum(revenue, 30d) > 99.5", NULL},
        {"revenue >= 1000", NULL},
        {"total_events != 0", NULL},
        {"first_seen within 30d", NULL},
        {"last_seen within 15m", NULL},
        {"last_seen within 120m", "last_seen within 2h"},
        {"last_seen before 48h", "last_seen before 2d"},
        {"last_seen before 1w", NULL},
        {"last_interaction(\"sms\") within 7d", "last_interaction(\"sms\") within 1w"},
        {"last_interaction(\"email\") exists", NULL},
        {"first_seen < \"2026-01-01\"", NULL},
        {"first_seen >= \"2026-01-01T10:00:00Z\"", NULL},
        {"first_seen > \"2026-01-01T10:00:00.250Z\"", NULL},
        {"first_seen > \"2026-01-01T12:00:00+02:00\"", "first_seen > \"2026-01-01T10:00:00Z\""},
        {"first_seen = \"2026-01-01T00:00:00-00:30\"", "first_seen = \"2026-01-01T00:30:00Z\""},
        {"last_seen exists", NULL},
        {"not trait.vip = true", NULL},
        {"not not true", NULL},
        {"true and false and true", NULL},
        {"true or false or true", NULL},
        {"true and false or true", NULL},
        {"true and (false or true)", NULL},
        {"(true and false) or true", "true and false or true"},
        {"((((true))))", "true"},
        {"(true or false) or true", "(true or false) or true"},
        {"not (true or false)", NULL},
        {"  trait.plan\n=\t\"pro\"  ", "trait.plan = \"pro\""},
        {"trait.s = \"a\\\"b\\\\c\\nd\\te\"", NULL},
        {"trait.s = \"héllo ✓\"", NULL},
        {"trait.n = -12", NULL},
        {"trait.n = 1e3", "trait.n = 1000"},
        {"trait.n = 2.5E-3", "trait.n = 0.0025"},
        {"trait.n = -0.5e+2", "trait.n = -50"},
        {"trait.and = 1", NULL},
        {"trait._x9 = 1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        seg_rule *r = parse_ok(cases[i][0]);
        char *t = seg_rule_to_text(r);
        const char *want = cases[i][1] ? cases[i][1] : cases[i][0];
        if (strcmp(t, want) != 0)
            fail_msg("'%s' printed as '%s', wanted '%s'", cases[i][0], t, want);
        free(t);
        seg_rule_free(r);
    }
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int line, column;
        const char *message;    /* a final '*' matches any rest */
    } cases[] = {
        {"trait.plan >= abc", 1, 15,
         "expected a value (string, number, true, false or null) after '>=', found 'abc'"},
        {"count(\"x\") >= abc", 1, 15, "expected a number after '>=', found 'abc'"},
        {"revenue > \"5\"", 1, 11, "expected a number after '>', found '\"5\"'"},
        {"", 1, 1, "the rule is empty: expected a condition such as trait.plan = \"pro\""},
        {"  \n ", 2, 2, "the rule is empty*"},
        {"foo = 1", 1, 1,
         "unknown keyword 'foo'; expected a condition (trait, count, sum, revenue, "
         "total_events, first_seen, last_seen, last_interaction, true, false, not or '(')"},
        {"TRUE", 1, 1, "unknown keyword 'TRUE' (keywords are lower case); expected*"},
        {"true AND false", 1, 6,
         "expected 'and', 'or' or end of input, found 'AND' (keywords are lower case)"},
        {"5", 1, 1, "expected a condition (trait, *"},
        {"trait.plan = \"pro", 1, 14, "unterminated string: missing closing '\"'"},
        {"trait.plan = \"pro\nx\"", 1, 14, "unterminated string: missing closing '\"'"},
        {"trait.plan = \"a\\qb\"", 1, 16, "bad escape '\\q' in string: use \\\", \\\\, \\n or \\t"},
        {"trait.plan = \"a\\", 1, 14, "unterminated string: missing closing '\"'"},
        {"(true and\n  (false or true)", 2, 18,
         "expected ')' to close the '(' at line 1, column 1, found end of input"},
        {"(true false)", 1, 7, "expected ')' to close the '(' at line 1, column 1, found 'false'"},
        {"trait.plan = \"pro\" xyz", 1, 20, "expected 'and', 'or' or end of input, found 'xyz'"},
        {"true)", 1, 5, "expected 'and', 'or' or end of input, found ')'"},
        {"last_seen within 30x", 1, 18, "bad duration unit in '30x': use m, h, d or w"},
        {"last_seen within 30", 1, 18,
         "expected a duration such as 30d after 'within', found '30' (a number without a unit)"},
        {"last_seen within 1.5d", 1, 18,
         "expected a duration such as 30d after 'within', found '1.5d'"},
        {"last_seen within 0d", 1, 18, "duration out of range: '0d' must be at least 1d"},
        {"last_seen within 3661d", 1, 18,
         "duration out of range: '3661d' is more than 3660 days"},
        {"last_seen before 99999999999999999999w", 1, 18, "duration out of range: *"},
        {"count(\"x\", 12h) > 1", 1, 12,
         "a count or sum window must be whole days (d or w), found '12h'"},
        {"sum(revenue, 30m) > 1", 1, 14,
         "a count or sum window must be whole days (d or w), found '30m'"},
        {"count(\"x\", 523w) > 1", 1, 12, "duration out of range: '523w' is more than 3660 days"},
        {"revenue > 1e999", 1, 11, "number out of range: '1e999'"},
        {"trait.n = -1e400", 1, 11, "number out of range: '-1e400'"},
        {"trait.n = nan", 1, 11,
         "expected a value (string, number, true, false or null) after '=', found 'nan'"},
        {"revenue > inf", 1, 11, "expected a number after '>', found 'inf'"},
        {"trait.x in []", 1, 13, "'in' needs at least one value, found ']'"},
        {"trait.x in \"a\"", 1, 12, "expected '[' after 'in', found '\"a\"'"},
        {"trait.x in [\"a\" \"b\"]", 1, 17, "expected ',' or ']' in the 'in' list, found '\"b\"'"},
        {"trait.x in [\"a\",]", 1, 17,
         "expected a value (string, number, true, false or null) after ',', found ']'"},
        {"trait.x contains 5", 1, 18, "expected a string after 'contains', found '5'"},
        {"trait.x starts_with true", 1, 21, "expected a string after 'starts_with', found 'true'"},
        {"trait.plan \"x\"", 1, 12,
         "expected a comparison operator, 'contains', 'starts_with', 'in' or 'exists' after "
         "trait.plan, found '\"x\"'"},
        {"trait(\"a b\")", 1, 13,
         "expected a comparison operator, 'contains', 'starts_with', 'in' or 'exists' after "
         "trait(\"a b\"), found end of input"},
        {"count(\"x\") 3", 1, 12, "expected a comparison operator after count(...), found '3'"},
        {"total_events", 1, 13, "expected a comparison operator after total_events, found end of input"},
        {"last_seen", 1, 10,
         "expected 'within', 'before', 'exists' or a comparison operator after last_seen, found end of input"},
        {"trait.x < true", 1, 11,
         "'<' cannot compare with 'true': booleans and null only support = and !="},
        {"trait.x >= null", 1, 12, "'>=' cannot compare with 'null'*"},
        {"trait.x ! 1", 1, 9, "unexpected character '!' (did you mean '!='?)"},
        {"trait.x = 1 # c", 1, 13, "unexpected character '#'"},
        {"trait.x = 1 &\x01", 1, 13, "unexpected character '&'"},
        {"trait", 1, 6, "expected '.' or '(' after 'trait', found end of input"},
        {"trait.5 = 1", 1, 7, "expected a trait name after 'trait.', found '5'"},
        {"trait(\"\") = 1", 1, 7, "a trait name string after 'trait(' must not be empty"},
        {"trait(plan) = 1", 1, 7, "expected a trait name string after 'trait(', found 'plan'"},
        {"count(x) > 1", 1, 7, "expected a count name string after 'count(', found 'x'"},
        {"count(\"x\" 30d) > 1", 1, 11, "expected ',' or ')' after the count name, found '30d'"},
        {"sum(\"revenue\") > 1", 1, 5, "expected 'revenue' after 'sum(', found '\"revenue\"'"},
        {"last_interaction(sms) exists", 1, 18,
         "expected a channel string after 'last_interaction(', found 'sms'"},
        {"first_seen < 2026", 1, 14,
         "expected a timestamp such as \"2026-01-01\" or \"2026-01-01T10:00:00Z\" after '<', found '2026'"},
        {"first_seen < \"2026-13-01\"", 1, 14,
         "invalid timestamp '\"2026-13-01\"': month out of range (01..12)"},
        {"first_seen < \"2025-02-29\"", 1, 14,
         "invalid timestamp '\"2025-02-29\"': day out of range for the month"},
        {"first_seen < \"2026-01-01T24:00:00Z\"", 1, 14,
         "invalid timestamp '\"2026-01-01T24:00:00Z\"': time of day out of range"},
        {"first_seen < \"2026-01-01T10:00:00\"", 1, 14,
         "invalid timestamp '\"2026-01-01T10:00:00\"': expected an offset Z, +hh:mm or -hh:mm"},
        {"first_seen < \"2026-1-01\"", 1, 14, "invalid timestamp '\"2026-1-01\"': expected \"YYYY-MM-DD\"*"},
        {"first_seen < \"1969-12-31\"", 1, 14, "invalid timestamp '\"1969-12-31\"': year before 1970"},
        {"trait.s = \"\xff\"", 1, 11, "invalid UTF-8 in string"},
        {"trait.s = \"a\rb\"", 1, 11, "control character in string (only \\n and \\t are allowed)"},
        {"trait.x = 1\n  and\n  trait.y ~ 2", 3, 11, "unexpected character '~'"},
        {"not", 1, 4, "expected a condition (trait, *"},
        {"trait.x = \"0123456789012345678901234567890123456789\" x", 1, 54,
         "expected 'and', 'or' or end of input, found 'x'"},
        {"trait.x = 1 0123456789012345678901234567890123456789", 1, 13,
         "expected 'and', 'or' or end of input, found '01234567890123456789012345678901...'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        parse_err(cases[i].text, cases[i].line, cases[i].column, cases[i].message);
}

/* The offset field is the 0-based byte offset of the same place. */
static void test_parse_error_offset(void **state)
{
    (void)state;
    seg_rule_error err;
    assert_null(seg_rule_parse("true and\n\n   foo", &err));
    assert_int_equal(err.offset, 13);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.column, 4);
}

/* n times open, then inner, then n times close (malloc'd). */
static char *nest(const char *open, int n, const char *inner, const char *close)
{
    size_t len = (strlen(open) + strlen(close)) * (size_t)n + strlen(inner) + 1;
    char *b = malloc(len);
    assert_non_null(b);
    b[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(b, open);
    strcat(b, inner);
    for (int i = 0; i < n; i++)
        strcat(b, close);
    return b;
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* 64 levels of nesting are fine, 65 are not. */
    char *t = nest("not ", SEG_RULE_MAX_DEPTH, "true", "");
    seg_rule_free(parse_ok(t));
    free(t);
    t = nest("not ", SEG_RULE_MAX_DEPTH + 1, "true", "");
    parse_err(t, 1, 4 * SEG_RULE_MAX_DEPTH + 1, "nesting deeper than 64 levels");
    free(t);
    t = nest("(", SEG_RULE_MAX_DEPTH + 1, "true", "");
    parse_err(t, 1, SEG_RULE_MAX_DEPTH + 1, "nesting deeper than 64 levels");
    free(t);

    /* The deepest text survives both round trips: an AND under an OR needs
     * no parentheses, so 64 levels of "(true or true and (...))" are 64. */
    t = nest("(true or true and ", SEG_RULE_MAX_DEPTH, "true", ")");
    seg_rule *r = parse_ok(t);
    char *json = seg_rule_to_json(r), *text = seg_rule_to_text(r);
    seg_rule_error e2;
    seg_rule *r2 = seg_rule_from_json(json, &e2);
    if (!r2)
        fail_msg("deep stored rule rejected: %s", e2.message);
    seg_rule *r3 = parse_ok(text);
    char *json3 = seg_rule_to_json(r3);
    assert_string_equal(json, json3);
    free(t), free(json), free(text), free(json3);
    seg_rule_free(r), seg_rule_free(r2), seg_rule_free(r3);

    /* 1024 nodes: an AND and 1023 leaves; one more leaf is too many. */
    t = nest("true and ", SEG_RULE_MAX_NODES - 2, "true", "");
    seg_rule_free(parse_ok(t));
    free(t);
    t = nest("true and ", SEG_RULE_MAX_NODES - 1, "true", "");
    parse_err(t, 1, 9 * (SEG_RULE_MAX_NODES - 1) + 1, "rule has more than 1024 nodes");
    free(t);

    /* Text length. */
    t = malloc(SEG_RULE_MAX_TEXT + 2);
    memset(t, ' ', SEG_RULE_MAX_TEXT + 1);
    memcpy(t, "true", 4);
    t[SEG_RULE_MAX_TEXT + 1] = '\0';
    seg_rule_error err;
    assert_null(seg_rule_parse(t, &err));
    assert_string_equal(err.message, "rule is longer than 16384 bytes");
    t[SEG_RULE_MAX_TEXT] = '\0';
    seg_rule_free(parse_ok(t));
    free(t);
}

/* ------------------------------------------------------- round trips */

static const char *const corpus[] = {
    "true",
    "trait.plan = \"pro\" and count(\"Order Completed\", 30d) >= 3",
    "not (last_seen within 7d or first_seen < \"2026-01-01\") or trait(\"a b\") in [1, \"x\", true, null]",
    "sum(revenue, 2w) > 1500 and revenue <= -0.25 and total_events != 0",
    "last_interaction(\"sms\") before 3h and trait.tags contains \"vip\" and trait.email starts_with \"a@\"",
    "trait.x exists and last_seen exists and last_seen >= \"2026-01-01T10:00:00.5+02:00\"",
    "(true or (false and not trait.q != 0.1)) and (trait.s = \"\\\"\\\\\\n\\t\" or false)",
    "((true and false) and true) or ((false or true) or false)",
    "count(\"x\") > 3.14159 or trait.big = 12345678901234567 or trait.tiny = 1e-300",
    "trait.age >= 18 and trait.age < 65 and not trait.country in [\"US\", \"CA\"]",
};

static void test_text_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        seg_rule *r = parse_ok(corpus[i]);
        char *text = seg_rule_to_text(r), *json = seg_rule_to_json(r);
        seg_rule *r2 = parse_ok(text);
        char *text2 = seg_rule_to_text(r2), *json2 = seg_rule_to_json(r2);
        assert_string_equal(json, json2);
        assert_string_equal(text, text2);
        free(text), free(json), free(text2), free(json2);
        seg_rule_free(r);
        seg_rule_free(r2);
    }
}

static void test_json_round_trip(void **state)
{
    (void)state;
    seg_profile *p = trait_profile();
    seg_profile_set_seen(p, T0 - 40 * DAY, T0 - 2 * DAY);
    seg_profile_set_revenue(p, 2000);
    seg_profile_add_day_revenue(p, D0 - 3, 1600);
    seg_profile_set_channel(p, "sms", T0 - 5 * HOUR);
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        seg_rule *r = parse_ok(corpus[i]);
        char *json = seg_rule_to_json(r);
        seg_rule_error err;
        seg_rule *r2 = seg_rule_from_json(json, &err);
        if (!r2)
            fail_msg("%s: %s", json, err.message);
        char *json2 = seg_rule_to_json(r2), *t1 = seg_rule_to_text(r), *t2 = seg_rule_to_text(r2);
        assert_string_equal(json, json2);
        assert_string_equal(t1, t2);
        for (int64_t now = T0 - 10 * DAY; now < T0 + 10 * DAY; now += 7 * HOUR) {
            int64_t n1, n2;
            assert_int_equal(seg_rule_eval(r, p, now, &n1), seg_rule_eval(r2, p, now, &n2));
            assert_true(n1 == n2);
        }
        free(json), free(json2), free(t1), free(t2);
        seg_rule_free(r);
        seg_rule_free(r2);
    }
    seg_profile_free(p);
}

/* The stored form is what docs/segmentation-rules.md documents. */
static void test_json_form(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"true", "true"},
        {"not false", "{\"not\":false}"},
        {"true and false", "{\"and\":[true,false]}"},
        {"true or false", "{\"or\":[true,false]}"},
        {"trait.plan = \"pro\"", "{\"trait\":\"plan\",\"op\":\"=\",\"value\":\"pro\"}"},
        {"trait.n < 2.5", "{\"trait\":\"n\",\"op\":\"<\",\"value\":2.5}"},
        {"trait.p in [\"a\", 1, null]", "{\"trait\":\"p\",\"op\":\"in\",\"values\":[\"a\",1,null]}"},
        {"trait.p exists", "{\"trait\":\"p\",\"op\":\"exists\"}"},
        {"count(\"Order\", 30d) >= 3",
         "{\"metric\":\"count\",\"name\":\"Order\",\"days\":30,\"op\":\">=\",\"value\":3}"},
        {"count(\"Order\") >= 3", "{\"metric\":\"count\",\"name\":\"Order\",\"op\":\">=\",\"value\":3}"},
        {"sum(revenue, 1w) > 9.5", "{\"metric\":\"revenue\",\"days\":7,\"op\":\">\",\"value\":9.5}"},
        {"total_events = 0", "{\"metric\":\"total_events\",\"op\":\"=\",\"value\":0}"},
        {"last_seen within 1h", "{\"time\":\"last_seen\",\"op\":\"within\",\"ms\":3600000}"},
        {"first_seen < \"2026-03-01\"", "{\"time\":\"first_seen\",\"op\":\"<\",\"at\":1772323200000}"},
        {"last_interaction(\"sms\") exists", "{\"time\":\"channel\",\"name\":\"sms\",\"op\":\"exists\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *j = json_of(cases[i][0]);
        assert_string_equal(j, cases[i][1]);
        free(j);
    }
}

static void test_json_hostile(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "nul", "{", "[]", "1", "\"true\"", "null", "{}",
        "{\"and\":[true]}", "{\"and\":true}", "{\"or\":[]}", "{\"and\":[true,false],\"x\":1}",
        "{\"not\":[true]}", "{\"not\":{}}", "{\"bogus\":1}",
        "{\"trait\":\"p\",\"op\":\"=\"}",
        "{\"trait\":\"p\",\"op\":\"=\",\"value\":\"x\",\"extra\":1}",
        "{\"trait\":\"p\",\"op\":\"==\",\"value\":1}",
        "{\"trait\":\"p\",\"op\":\"within\",\"value\":1}",
        "{\"trait\":\"\",\"op\":\"=\",\"value\":1}",
        "{\"trait\":5,\"op\":\"=\",\"value\":1}",
        "{\"trait\":\"p\",\"op\":\"=\",\"value\":[1]}",
        "{\"trait\":\"p\",\"op\":\"=\",\"value\":{}}",
        "{\"trait\":\"p\",\"op\":\"<\",\"value\":true}",
        "{\"trait\":\"p\",\"op\":\"<\",\"value\":null}",
        "{\"trait\":\"p\",\"op\":\"contains\",\"value\":5}",
        "{\"trait\":\"p\",\"op\":\"in\",\"values\":[]}",
        "{\"trait\":\"p\",\"op\":\"in\",\"values\":\"a\"}",
        "{\"trait\":\"p\",\"op\":\"in\",\"value\":[\"a\"]}",
        "{\"trait\":\"p\",\"op\":\"exists\",\"value\":1}",
        "{\"trait\":\"a\\rb\",\"op\":\"exists\"}",
        "{\"trait\":\"a\\u0000b\",\"op\":\"exists\"}",
        "{\"trait\":\"p\",\"trait\":\"q\",\"op\":\"exists\"}",
        "{\"metric\":\"count\",\"op\":\">\",\"value\":1}",
        "{\"metric\":\"count\",\"name\":\"\",\"op\":\">\",\"value\":1}",
        "{\"metric\":\"bogus\",\"op\":\">\",\"value\":1}",
        "{\"metric\":\"revenue\",\"op\":\"in\",\"value\":1}",
        "{\"metric\":\"revenue\",\"op\":\">\",\"value\":\"1\"}",
        "{\"metric\":\"revenue\",\"days\":0,\"op\":\">\",\"value\":1}",
        "{\"metric\":\"revenue\",\"days\":3661,\"op\":\">\",\"value\":1}",
        "{\"metric\":\"revenue\",\"days\":1.5,\"op\":\">\",\"value\":1}",
        "{\"metric\":\"total_events\",\"days\":3,\"op\":\">\",\"value\":1}",
        "{\"metric\":\"revenue\",\"name\":\"x\",\"op\":\">\",\"value\":1}",
        "{\"time\":\"last_seen\",\"op\":\"within\"}",
        "{\"time\":\"last_seen\",\"op\":\"within\",\"ms\":0}",
        "{\"time\":\"last_seen\",\"op\":\"within\",\"ms\":61000}",
        "{\"time\":\"last_seen\",\"op\":\"within\",\"ms\":-60000}",
        "{\"time\":\"last_seen\",\"op\":\"within\",\"ms\":316310400000000}",
        "{\"time\":\"last_seen\",\"op\":\"<\",\"at\":-1}",
        "{\"time\":\"last_seen\",\"op\":\"<\",\"at\":\"2026-01-01\"}",
        "{\"time\":\"last_seen\",\"op\":\"<\",\"ms\":1}",
        "{\"time\":\"last_seen\",\"op\":\"contains\",\"at\":1}",
        "{\"time\":\"channel\",\"op\":\"exists\"}",
        "{\"time\":\"seen\",\"op\":\"exists\"}",
        "{\"time\":\"last_seen\",\"name\":\"x\",\"op\":\"exists\"}",
        "[true]",
        "{\"and\":[true,false]} trailing",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        seg_rule_error err;
        memset(&err, 0, sizeof err);
        seg_rule *r = seg_rule_from_json(bad[i], &err);
        if (r) {
            seg_rule_free(r);
            fail_msg("hostile stored rule accepted: %s", bad[i]);
        }
        assert_true(strncmp(err.message, "stored rule", 11) == 0);
    }
    /* A specific message names where and what. */
    seg_rule_error err;
    assert_null(seg_rule_from_json("{\"and\":[true,{\"or\":[false,{\"trait\":\"p\",\"op\":\"~\",\"value\":1}]}]}", &err));
    assert_string_equal(err.message, "stored rule $.and[1].or[1]: unknown or misplaced op");

    /* Nesting: as deep as the text parser allows, no deeper. */
    char *doc = nest("{\"not\":", SEG_RULE_MAX_DEPTH, "true", "}");
    seg_rule *r = seg_rule_from_json(doc, &err);
    assert_non_null(r);
    char *text = seg_rule_to_text(r);
    seg_rule_free(parse_ok(text));
    free(text);
    seg_rule_free(r);
    free(doc);
    doc = nest("{\"not\":", SEG_RULE_MAX_DEPTH + 1, "true", "}");
    assert_null(seg_rule_from_json(doc, &err));
    assert_non_null(strstr(err.message, "nesting deeper than 64 levels"));
    free(doc);
    /* Nested and/or count as the parentheses their text needs: an AND in
     * an AND does, so the root and 64 nested ANDs are fine, 65 are not. */
    for (int extra = 0; extra < 2; extra++) {
        int n = SEG_RULE_MAX_DEPTH + 1 + extra;
        doc = nest("{\"and\":[true,", n, "true", "]}");
        r = seg_rule_from_json(doc, &err);
        if (extra) {
            assert_null(r);
            assert_non_null(strstr(err.message, "nesting deeper than 64 levels"));
        } else {
            assert_non_null(r);
            text = seg_rule_to_text(r);
            seg_rule_free(parse_ok(text));
            free(text);
            seg_rule_free(r);
        }
        free(doc);
    }
    /* Node count. */
    char *kids = nest("true,", SEG_RULE_MAX_NODES, "true", "");
    doc = nest("{\"and\":[", 1, kids, "]}");
    assert_null(seg_rule_from_json(doc, &err));
    assert_non_null(strstr(err.message, "more than 1024 nodes"));
    free(kids), free(doc);
    /* Bad JSON syntax reports jansson's position. */
    assert_null(seg_rule_from_json("{\"not\":\n tru}", &err));
    assert_int_equal(err.line, 2);
}

/* ---------------------------------------------------------- evaluation */

static void test_eval_strings(void **state)
{
    (void)state;
    seg_profile *p = trait_profile();
    assert_int_equal(eval1("trait.plan = \"pro\"", p), 1);
    assert_int_equal(eval1("trait.plan = \"Pro\"", p), 0);
    assert_int_equal(eval1("trait.plan = \"pr\"", p), 0);
    assert_int_equal(eval1("trait.plan != \"pro\"", p), 0);
    assert_int_equal(eval1("trait.plan != \"free\"", p), 1);
    assert_int_equal(eval1("trait.plan < \"q\"", p), 1);
    assert_int_equal(eval1("trait.plan < \"pro\"", p), 0);
    assert_int_equal(eval1("trait.plan <= \"pro\"", p), 1);
    assert_int_equal(eval1("trait.plan > \"pr\"", p), 1);     /* longer sorts after its prefix */
    assert_int_equal(eval1("trait.plan >= \"prp\"", p), 0);
    assert_int_equal(eval1("trait.plan in [\"free\", \"pro\"]", p), 1);
    assert_int_equal(eval1("trait.plan in [\"free\", 1, null]", p), 0);
    assert_int_equal(eval1("trait.email contains \"@example\"", p), 1);
    assert_int_equal(eval1("trait.email contains \"@corp\"", p), 0);
    assert_int_equal(eval1("trait.email contains \"\"", p), 1);
    assert_int_equal(eval1("trait.email contains \"ann@example.com!\"", p), 0);
    assert_int_equal(eval1("trait.email starts_with \"ann@\"", p), 1);
    assert_int_equal(eval1("trait.email starts_with \"nn@\"", p), 0);
    assert_int_equal(eval1("trait.empty = \"\"", p), 1);
    assert_int_equal(eval1("trait.empty starts_with \"\"", p), 1);
    assert_int_equal(eval1("trait(\"with space\") = \"x\"", p), 1);
    /* Type mismatch: a string is not a number. */
    assert_int_equal(eval1("trait.plan = 1", p), 0);
    assert_int_equal(eval1("trait.plan > 1", p), 0);
    assert_int_equal(eval1("trait.plan != 1", p), 1);
    assert_int_equal(eval1("trait.plan exists", p), 1);
    seg_profile_free(p);
}

static void test_eval_numbers_bools_null(void **state)
{
    (void)state;
    seg_profile *p = trait_profile();
    assert_int_equal(eval1("trait.age = 42", p), 1);
    assert_int_equal(eval1("trait.age = 42.0", p), 1);
    assert_int_equal(eval1("trait.age = 4.2e1", p), 1);
    assert_int_equal(eval1("trait.age != 42", p), 0);
    assert_int_equal(eval1("trait.age < 42", p), 0);
    assert_int_equal(eval1("trait.age <= 42", p), 1);
    assert_int_equal(eval1("trait.age > 41.9", p), 1);
    assert_int_equal(eval1("trait.age >= 43", p), 0);
    assert_int_equal(eval1("trait.score > 7", p), 1);
    assert_int_equal(eval1("trait.score < -7", p), 0);
    assert_int_equal(eval1("trait.age = \"42\"", p), 0);
    assert_int_equal(eval1("trait.age < \"9\"", p), 0);
    assert_int_equal(eval1("trait.age in [1, 42]", p), 1);
    assert_int_equal(eval1("trait.age in [\"42\"]", p), 0);
    assert_int_equal(eval1("trait.age contains \"4\"", p), 0);
    assert_int_equal(eval1("trait.age starts_with \"4\"", p), 0);
    assert_int_equal(eval1("trait.vip = true", p), 1);
    assert_int_equal(eval1("trait.vip = false", p), 0);
    assert_int_equal(eval1("trait.vip != false", p), 1);
    assert_int_equal(eval1("trait.vip = 1", p), 0);
    assert_int_equal(eval1("trait.vip > 0", p), 0);
    assert_int_equal(eval1("trait.off = false", p), 1);
    assert_int_equal(eval1("trait.off in [true]", p), 0);
    assert_int_equal(eval1("trait.off in [false]", p), 1);
    assert_int_equal(eval1("trait.nick = null", p), 1);
    assert_int_equal(eval1("trait.nick != null", p), 0);
    assert_int_equal(eval1("trait.nick exists", p), 1);
    assert_int_equal(eval1("trait.nick = \"\"", p), 0);
    assert_int_equal(eval1("trait.nick in [null]", p), 1);
    assert_int_equal(eval1("trait.age = null", p), 0);
    assert_int_equal(eval1("trait.age != null", p), 1);
    seg_profile_free(p);
}

static void test_eval_arrays_objects_missing(void **state)
{
    (void)state;
    seg_profile *p = trait_profile();
    assert_int_equal(eval1("trait.tags contains \"vip\"", p), 1);
    assert_int_equal(eval1("trait.tags contains \"beta\"", p), 1);
    assert_int_equal(eval1("trait.tags contains \"vi\"", p), 0);  /* elements, not substrings */
    assert_int_equal(eval1("trait.tags contains \"3\"", p), 0);
    assert_int_equal(eval1("trait.tags = \"vip\"", p), 0);
    assert_int_equal(eval1("trait.tags != \"vip\"", p), 1);
    assert_int_equal(eval1("trait.tags in [\"vip\"]", p), 0);
    assert_int_equal(eval1("trait.tags starts_with \"v\"", p), 0);
    assert_int_equal(eval1("trait.tags exists", p), 1);
    assert_int_equal(eval1("trait.addr exists", p), 1);
    assert_int_equal(eval1("trait.addr = \"12345\"", p), 0);
    assert_int_equal(eval1("trait.addr contains \"12345\"", p), 0);
    assert_int_equal(eval1("trait.addr != null", p), 1);
    /* Missing: every comparison false, != included. */
    static const char *const missing[] = {
        "trait.nope = 1", "trait.nope != 1", "trait.nope < 1", "trait.nope <= 1",
        "trait.nope > 1", "trait.nope >= 1", "trait.nope = null", "trait.nope != null",
        "trait.nope in [1, null]", "trait.nope contains \"a\"", "trait.nope starts_with \"\"",
        "trait.nope exists", "trait.Plan = \"pro\"",
    };
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++)
        if (eval1(missing[i], p) != 0)
            fail_msg("'%s' is true for a missing trait", missing[i]);
    assert_int_equal(eval1("not trait.nope exists", p), 1);
    /* Malformed trait JSON: -1 and the trait is absent. */
    assert_int_equal(seg_profile_set_trait_json(p, "plan", "{bad", 4), -1);
    assert_int_equal(eval1("trait.plan exists", p), 0);
    /* A name set only as a count or channel is not a trait. */
    seg_profile_set_count(p, "orders", 3);
    seg_profile_set_channel(p, "sms", T0);
    assert_int_equal(eval1("trait.orders exists or trait.sms exists", p), 0);
    seg_profile_free(p);
}

static void test_eval_logic(void **state)
{
    (void)state;
    seg_profile *p = seg_profile_new();
    static const struct { const char *text; int want; } cases[] = {
        {"true", 1}, {"false", 0}, {"not true", 0}, {"not false", 1}, {"not not true", 1},
        {"true and true", 1}, {"true and false", 0}, {"false and true", 0}, {"false and false", 0},
        {"true or true", 1}, {"true or false", 1}, {"false or true", 1}, {"false or false", 0},
        {"false and false or true", 1}, {"false and (false or true)", 0},
        {"true or true and false", 1}, {"(true or true) and false", 0},
        {"not true or true", 1}, {"not (true or true)", 0},
        {"true and true and true and false", 0}, {"false or false or false or true", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (eval1(cases[i].text, p) != cases[i].want)
            fail_msg("'%s' is not %d", cases[i].text, cases[i].want);
    seg_profile_free(p);
}

static void test_eval_metrics(void **state)
{
    (void)state;
    seg_profile *p = seg_profile_new();
    assert_int_equal(eval1("count(\"Order\") = 0", p), 1);   /* absent counts are 0 */
    assert_int_equal(eval1("count(\"Order\", 30d) = 0", p), 1);
    assert_int_equal(eval1("revenue = 0 and total_events = 0", p), 1);
    seg_profile_set_count(p, "Order", 7);
    seg_profile_set_revenue(p, 250.5);
    seg_profile_set_total_events(p, 99);
    assert_int_equal(eval1("count(\"Order\") = 7", p), 1);
    assert_int_equal(eval1("count(\"Order\") > 7", p), 0);
    assert_int_equal(eval1("count(\"order\") > 0", p), 0);
    assert_int_equal(eval1("revenue > 250", p), 1);
    assert_int_equal(eval1("revenue >= 250.5 and revenue <= 250.5", p), 1);
    assert_int_equal(eval1("sum(revenue) != 250.5", p), 0);
    assert_int_equal(eval1("total_events < 100", p), 1);
    /* Buckets added out of order and twice for one day still sum right. */
    seg_profile_add_day_count(p, "Order", D0, 1);
    seg_profile_add_day_count(p, "Order", D0 - 10, 2);
    seg_profile_add_day_count(p, "Order", D0 - 5, 4);
    seg_profile_add_day_count(p, "Order", D0 - 10, 8);
    assert_int_equal(eval1("count(\"Order\", 1d) = 1", p), 1);
    assert_int_equal(eval1("count(\"Order\", 6d) = 5", p), 1);
    assert_int_equal(eval1("count(\"Order\", 10d) = 5", p), 1);
    assert_int_equal(eval1("count(\"Order\", 11d) = 15", p), 1);
    assert_int_equal(eval1("count(\"Order\", 2w) = 15", p), 1);
    seg_profile_add_day_revenue(p, D0 - 1, 10.25);
    seg_profile_add_day_revenue(p, D0 - 40, 100);
    assert_int_equal(eval1("sum(revenue, 2d) = 10.25", p), 1);
    assert_int_equal(eval1("sum(revenue, 41d) = 110.25", p), 1);
    assert_int_equal(eval1("sum(revenue, 40d) < 11", p), 1);
    seg_profile_free(p);
}

/* count(x, 30d) covers today and the 29 days before: a bucket of day D
 * counts from day D through day D+29 and not on day D+30. */
static void test_eval_window_day_boundary(void **state)
{
    (void)state;
    seg_profile *p = seg_profile_new();
    seg_profile_add_day_count(p, "Order", D0, 1);
    const char *rule = "count(\"Order\", 30d) >= 1";
    int64_t next;
    assert_int_equal(eval_at(rule, p, T0 - 1, &next), 0);               /* the day before */
    assert_true(next == T0);                                             /* bucket enters */
    assert_int_equal(eval_at(rule, p, T0, &next), 1);                   /* day 1 */
    assert_true(next == T0 + 30 * DAY);
    assert_int_equal(eval_at(rule, p, T0 + 29 * DAY, &next), 1);        /* day 30, first ms */
    assert_int_equal(eval_at(rule, p, T0 + 30 * DAY - 1, &next), 1);    /* day 30, last ms */
    assert_true(next == T0 + 30 * DAY);
    assert_int_equal(eval_at(rule, p, T0 + 30 * DAY, &next), 0);        /* day 31 */
    assert_true(next == INT64_MAX);
    /* Same for revenue windows, with weeks. */
    seg_profile_add_day_revenue(p, D0, 5);
    assert_int_equal(eval_at("sum(revenue, 1w) > 0", p, T0 + 7 * DAY - 1, &next), 1);
    assert_true(next == T0 + 7 * DAY);
    assert_int_equal(eval_at("sum(revenue, 1w) > 0", p, T0 + 7 * DAY, &next), 0);
    /* The oldest non-zero bucket decides the next change; zeros do not. */
    seg_profile_add_day_count(p, "Order", D0 - 2, 0);
    seg_profile_add_day_count(p, "Order", D0 + 3, 2);
    assert_int_equal(eval_at("count(\"Order\", 10d) = 3", p, T0 + 5 * DAY, &next), 1);
    assert_true(next == T0 + 10 * DAY);
    assert_int_equal(eval_at("count(\"Order\", 10d) = 3", p, T0 + 10 * DAY, &next), 0);
    assert_true(next == T0 + 13 * DAY);
    seg_profile_free(p);
}

static void test_eval_time(void **state)
{
    (void)state;
    seg_profile *p = seg_profile_new();
    int64_t next;
    /* Never seen: all false, nothing changes without an event. */
    assert_int_equal(eval_at("last_seen within 7d", p, T0, &next), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("last_seen before 7d", p, T0, &next), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("last_seen exists", p, T0, &next), 0);
    assert_int_equal(eval_at("last_seen < \"2030-01-01\"", p, T0, &next), 0);
    assert_int_equal(eval_at("not last_seen within 7d", p, T0, &next), 1);
    assert_true(next == INT64_MAX);

    int64_t last = T0 - 2 * DAY;
    seg_profile_set_seen(p, T0 - 100 * DAY, last);
    /* within: true now, false from last + 7d on. */
    assert_int_equal(eval_at("last_seen within 7d", p, T0, &next), 1);
    assert_true(next == last + 7 * DAY);
    assert_int_equal(eval_at("last_seen within 7d", p, last + 7 * DAY - 1, &next), 1);
    assert_int_equal(eval_at("last_seen within 7d", p, last + 7 * DAY, &next), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("not last_seen within 7d", p, T0, &next), 0);
    assert_true(next == last + 7 * DAY);
    /* before: false now, true from last + 3d on. */
    assert_int_equal(eval_at("last_seen before 3d", p, T0, &next), 0);
    assert_true(next == last + 3 * DAY);
    assert_int_equal(eval_at("last_seen before 3d", p, last + 3 * DAY, &next), 1);
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("last_seen before 36h", p, T0, &next), 1);
    assert_int_equal(eval_at("first_seen within 15m", p, T0, &next), 0);
    assert_int_equal(eval_at("first_seen before 99d", p, T0, &next), 1);
    /* Absolute comparisons never change with time. */
    assert_int_equal(eval_at("first_seen < \"2025-11-22\"", p, T0, &next), 1);  /* T0-100d = 2025-11-21 */
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("first_seen < \"2025-11-21\"", p, T0, &next), 0);
    assert_int_equal(eval_at("first_seen = \"2025-11-21\"", p, T0, &next), 1);
    assert_int_equal(eval_at("first_seen >= \"2025-11-21T00:00:00.001Z\"", p, T0, &next), 0);
    assert_int_equal(eval_at("last_seen > \"2026-02-26T23:59:59+01:00\"", p, T0, &next), 1);
    assert_int_equal(eval_at("last_seen exists and first_seen exists", p, T0, &next), 1);
    assert_true(next == INT64_MAX);
    /* Channels. */
    seg_profile_set_channel(p, "sms", T0 - HOUR);
    assert_int_equal(eval_at("last_interaction(\"sms\") within 2h", p, T0, &next), 1);
    assert_true(next == T0 + HOUR);
    assert_int_equal(eval_at("last_interaction(\"sms\") before 30m", p, T0, &next), 1);
    assert_int_equal(eval_at("last_interaction(\"email\") exists", p, T0, &next), 0);
    assert_int_equal(eval_at("last_interaction(\"sms\") exists", p, T0, &next), 1);
    seg_profile_free(p);
}

/* How and/or/not combine next-change times. */
static void test_next_change_combined(void **state)
{
    (void)state;
    seg_profile *p = seg_profile_new();
    seg_profile_set_seen(p, T0 - 10 * DAY, T0 - DAY);
    trait(p, "plan", "\"pro\"");
    int64_t next;
    /* Both timed: the earlier. */
    assert_int_equal(eval_at("last_seen within 3d and first_seen before 12d", p, T0, &next), 0);
    assert_true(next == T0 + 2 * DAY);
    assert_int_equal(eval_at("last_seen within 2d or first_seen within 30d", p, T0, &next), 1);
    assert_true(next == T0 + DAY);
    /* An untimed child that decides pins the result. */
    assert_int_equal(eval_at("last_seen within 3d and trait.plan = \"free\"", p, T0, &next), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("trait.plan = \"free\" and last_seen within 3d", p, T0, &next), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(eval_at("last_seen within 3d or trait.plan = \"pro\"", p, T0, &next), 1);
    assert_true(next == INT64_MAX);
    /* An untimed child that does not decide leaves the timed one in charge. */
    assert_int_equal(eval_at("last_seen within 3d and trait.plan = \"pro\"", p, T0, &next), 1);
    assert_true(next == T0 + 2 * DAY);
    assert_int_equal(eval_at("not (last_seen within 3d or trait.plan = \"free\")", p, T0, &next), 0);
    assert_true(next == T0 + 2 * DAY);
    /* No timed condition at all. */
    assert_int_equal(eval_at("trait.plan = \"pro\"", p, T0, &next), 1);
    assert_true(next == INT64_MAX);
    /* NULL next_change is allowed and gives the same value. */
    seg_rule *r = parse_ok("last_seen within 3d or trait.plan = \"free\"");
    assert_int_equal(seg_rule_eval(r, p, T0, NULL), 1);
    seg_rule_free(r);
    seg_profile_free(p);
}

static void test_profile_reset_reuse(void **state)
{
    (void)state;
    seg_profile *p = seg_profile_new();
    char name[32];
    for (int round = 0; round < 3; round++) {
        seg_profile_reset(p);
        /* Enough names to grow the table more than once. */
        for (int i = 0; i < 100; i++) {
            snprintf(name, sizeof name, "t%d", i);
            char json[32];
            int n = snprintf(json, sizeof json, "%d", i + round);
            assert_int_equal(seg_profile_set_trait_json(p, name, json, (size_t)n), 0);
            snprintf(name, sizeof name, "e%d", i);
            seg_profile_add_day_count(p, name, D0 - i % 5, 1);
        }
        assert_int_equal(eval1(round == 1 ? "trait.t99 = 100" : "trait.t99 = 99", p), round < 2);
        assert_int_equal(eval1("count(\"e4\", 1d) = 0 and count(\"e4\", 5d) = 1", p), 1);
        assert_int_equal(eval1("trait.t0 exists", p), 1);
    }
    seg_profile_reset(p);
    assert_int_equal(eval1("trait.t0 exists", p), 0);
    assert_int_equal(eval1("count(\"e4\", 5d) = 0", p), 1);
    seg_profile_free(p);
    seg_profile_free(NULL);
    seg_rule_free(NULL);
}

/* ---------------------------------------------------- deps, time_based */

static void deps_are(const char *text, const char *want)
{
    seg_rule *r = parse_ok(text);
    const seg_dep *d;
    size_t n = seg_rule_deps(r, &d);
    char got[512] = "";
    for (size_t i = 0; i < n; i++) {
        char one[128];
        assert_true(seg_dep_format(&d[i], one, sizeof one) > 0);
        if (i)
            strcat(got, " ");
        strcat(got, one);
    }
    if (strcmp(got, want) != 0)
        fail_msg("deps of '%s': got '%s', wanted '%s'", text, got, want);
    seg_rule_free(r);
}

static void test_deps(void **state)
{
    (void)state;
    deps_are("true", "");
    deps_are("trait.plan = \"pro\"", "trait:plan");
    deps_are("trait(\"first name\") exists", "trait:first name");
    deps_are("count(\"Order Completed\", 30d) > 1", "event:Order Completed");
    deps_are("count(\"Order Completed\") > 1", "event:Order Completed");
    deps_are("sum(revenue, 7d) > 1 or revenue > 2", "revenue");
    deps_are("total_events > 1", "total_events");
    deps_are("first_seen within 1d", "first_seen");
    deps_are("last_seen exists", "last_seen");
    deps_are("last_interaction(\"sms\") within 1d", "channel:sms");
    deps_are("trait.a = 1 and count(\"a\") > 1 and last_interaction(\"a\") exists and trait.a != 2 "
             "and not trait.b in [1] or last_seen before 1d or first_seen < \"2026-01-01\" "
             "or total_events = 0 or revenue = 1 or count(\"a\", 1d) = 1",
             "trait:a event:a channel:a trait:b last_seen first_seen total_events revenue");
    /* A literal equal to a name is not a dependency. */
    deps_are("trait.plan = \"tags\"", "trait:plan");

    seg_dep d = {SEG_DEP_EVENT, "Order"};
    char small[8];
    assert_int_equal(seg_dep_format(&d, small, sizeof small), 11);
    assert_string_equal(small, "event:O");
    d.kind = (seg_dep_kind)99;
    assert_true(seg_dep_format(&d, small, sizeof small) < 0);
}

static void test_time_based(void **state)
{
    (void)state;
    static const struct { const char *text; int want; } cases[] = {
        {"true", 0},
        {"trait.plan = \"pro\"", 0},
        {"count(\"x\") > 1", 0},
        {"count(\"x\", 1d) > 1", 1},
        {"revenue > 1", 0},
        {"sum(revenue, 1d) > 1", 1},
        {"total_events > 1", 0},
        {"last_seen within 1d", 1},
        {"first_seen before 1d", 1},
        {"last_interaction(\"sms\") within 1h", 1},
        {"last_seen < \"2026-01-01\"", 0},
        {"last_seen exists", 0},
        {"trait.a = 1 and (false or not last_seen within 2d)", 1},
        {"trait.a = 1 and (false or not last_seen exists)", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        seg_rule *r = parse_ok(cases[i].text);
        if (seg_rule_time_based(r) != cases[i].want)
            fail_msg("time_based('%s') is not %d", cases[i].text, cases[i].want);
        char *j = seg_rule_to_json(r);
        seg_rule_error err;
        seg_rule *r2 = seg_rule_from_json(j, &err);
        assert_non_null(r2);
        assert_int_equal(seg_rule_time_based(r2), cases[i].want);
        free(j);
        seg_rule_free(r2);
        seg_rule_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_constructs),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_error_offset),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_text_round_trip),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_form),
        cmocka_unit_test(test_json_hostile),
        cmocka_unit_test(test_eval_strings),
        cmocka_unit_test(test_eval_numbers_bools_null),
        cmocka_unit_test(test_eval_arrays_objects_missing),
        cmocka_unit_test(test_eval_logic),
        cmocka_unit_test(test_eval_metrics),
        cmocka_unit_test(test_eval_window_day_boundary),
        cmocka_unit_test(test_eval_time),
        cmocka_unit_test(test_next_change_combined),
        cmocka_unit_test(test_profile_reset_reuse),
        cmocka_unit_test(test_deps),
        cmocka_unit_test(test_time_based),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
