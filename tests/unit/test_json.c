/* test_json: google.protobuf.Struct/Value <-> JSON conversion (cdp_json).
 *
 * Round trips through both representations and through the protobuf wire
 * format, the depth rule used for edge limits, and the number rules
 * (integral doubles within 2^53 print as JSON integers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_json.h"

#define TWO_POW_53 9007199254740992.0

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    assert_non_null(j);
    return j;
}

static const Google__Protobuf__Value *field(const Google__Protobuf__Struct *s, const char *key)
{
    for (size_t i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i]->key, key) == 0)
            return s->fields[i]->value;
    return NULL;
}

/* ------------------------------------------------------------ round trips */

static const char *nested_doc =
    "{\"s\":\"x\",\"n\":1.5,\"i\":42,\"neg\":-7,\"t\":true,\"f\":false,\"z\":null,"
    "\"o\":{\"a\":{\"b\":[1,\"two\",{\"c\":null}]}},"
    "\"l\":[[],[1,[2.25]],{}],\"e\":{},\"u\":\"h\\u00e9\\u2603\"}";

static void test_struct_round_trip(void **state)
{
    (void)state;
    json_t *in = parse(nested_doc);
    Google__Protobuf__Struct *s = cdp_json_to_struct(in);
    assert_non_null(s);
    assert_int_equal(s->n_fields, json_object_size(in));

    const Google__Protobuf__Value *v = field(s, "i");
    assert_non_null(v);
    assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
    assert_true(v->number_value == 42.0);
    v = field(s, "z");
    assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
    v = field(s, "t");
    assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE);
    assert_true(v->bool_value);
    v = field(s, "l");
    assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE);
    assert_int_equal(v->list_value->n_values, 3);
    v = field(s, "s");
    assert_string_equal(v->string_value, "x");

    json_t *out = cdp_struct_to_json(s);
    assert_non_null(out);
    assert_true(json_equal(in, out));
    json_decref(out);
    /* Built part by part with malloc, so protobuf-c's own free works. */
    protobuf_c_message_free_unpacked(&s->base, NULL);
    json_decref(in);
}

static void test_wire_round_trip(void **state)
{
    (void)state;
    json_t *in = parse(nested_doc);
    Google__Protobuf__Struct *s = cdp_json_to_struct(in);
    assert_non_null(s);
    size_t len = google__protobuf__struct__get_packed_size(s);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(google__protobuf__struct__pack(s, buf), len);
    cdp_struct_free(s);

    Google__Protobuf__Struct *back = google__protobuf__struct__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(back);
    json_t *out = cdp_struct_to_json(back);
    assert_true(json_equal(in, out));
    json_decref(out);
    cdp_struct_free(back);
    json_decref(in);
}

static void test_value_round_trip_scalars_and_lists(void **state)
{
    (void)state;
    const char *docs[] = {"null", "true", "false", "0", "-3", "0.125", "\"\"", "\"abc\"",
                          "[]", "[null,[true,[\"deep\"]]]", "{\"k\":[{}]}"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        json_t *in = parse(docs[i]);
        Google__Protobuf__Value *v = cdp_json_to_value(in);
        assert_non_null(v);
        json_t *out = cdp_value_to_json(v);
        assert_non_null(out);
        if (!json_equal(in, out))
            fail_msg("round trip changed %s", docs[i]);
        json_decref(out);
        json_decref(in);
        cdp_value_free(v);
    }
}

static void test_non_object_gives_no_struct(void **state)
{
    (void)state;
    json_t *arr = parse("[1]");
    assert_null(cdp_json_to_struct(arr));
    assert_null(cdp_json_to_struct(NULL));
    assert_null(cdp_json_to_value(NULL));
    json_decref(arr);

    json_t *empty = cdp_struct_to_json(NULL);
    assert_true(json_is_object(empty));
    assert_int_equal(json_object_size(empty), 0);
    json_decref(empty);
    cdp_struct_free(NULL);
    cdp_value_free(NULL);
}

static void test_unset_and_invalid_values(void **state)
{
    (void)state;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    json_t *j = cdp_value_to_json(&v);
    assert_true(json_is_null(j));
    json_decref(j);

    char bad[] = {'a', (char)0xff, 'b', 0};
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v.string_value = bad;
    assert_null(cdp_value_to_json(&v));
}

/* ------------------------------------------------------------ depth */

static void assert_depth(const char *doc, int expected)
{
    json_t *j = parse(doc);
    Google__Protobuf__Struct *s = cdp_json_to_struct(j);
    assert_non_null(s);
    int got = cdp_struct_depth(s);
    if (got != expected)
        fail_msg("depth of %s: got %d, expected %d", doc, got, expected);
    cdp_struct_free(s);
    json_decref(j);
}

static void test_depth(void **state)
{
    (void)state;
    assert_int_equal(cdp_struct_depth(NULL), 0);
    assert_depth("{}", 1);
    assert_depth("{\"a\":1,\"b\":\"x\",\"c\":null}", 1);
    assert_depth("{\"a\":{}}", 2);
    assert_depth("{\"a\":{\"b\":1}}", 2);
    assert_depth("{\"a\":[]}", 2);
    assert_depth("{\"a\":[1,2]}", 2);
    assert_depth("{\"a\":[{\"b\":1}]}", 3);
    assert_depth("{\"a\":[[1]]}", 3);
    assert_depth("{\"a\":{\"b\":{\"c\":{}}}}", 4);
    assert_depth("{\"x\":1,\"a\":{\"b\":1},\"c\":[{\"d\":[]}]}", 4);
    assert_depth("{\"a\":1,\"b\":{\"c\":[{\"d\":[]}]}}", 5);
}

/* ------------------------------------------------------------ numbers */

/* Converts a number Value to JSON and returns its compact text. */
static char *number_text(double d)
{
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = d;
    json_t *j = cdp_value_to_json(&v);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    assert_non_null(text);
    return text;
}

static void assert_number_text(double d, const char *expected)
{
    char *text = number_text(d);
    if (strcmp(text, expected) != 0)
        fail_msg("%.17g rendered as %s, expected %s", d, text, expected);
    free(text);
}

static void test_integral_numbers_are_integers(void **state)
{
    (void)state;
    assert_number_text(0.0, "0");
    assert_number_text(-0.0, "0");
    assert_number_text(3.0, "3");
    assert_number_text(-42.0, "-42");
    assert_number_text(1e15, "1000000000000000");
    assert_number_text(TWO_POW_53, "9007199254740992");
    assert_number_text(-TWO_POW_53, "-9007199254740992");
}

static void test_other_numbers_are_reals_or_null(void **state)
{
    (void)state;
    char *text = number_text(TWO_POW_53 + 2.0);
    assert_non_null(strpbrk(text, ".eE")); /* a real, not an integer */
    free(text);
    text = number_text(1e300);
    assert_non_null(strpbrk(text, ".eE"));
    free(text);
    assert_number_text(0.5, "0.5");
    assert_number_text(-2.25, "-2.25");
    assert_number_text(NAN, "null");
    assert_number_text(INFINITY, "null");
    assert_number_text(-INFINITY, "null");
}

static void test_json_integers_become_numbers(void **state)
{
    (void)state;
    json_t *j = json_integer(123456789);
    Google__Protobuf__Value *v = cdp_json_to_value(j);
    assert_non_null(v);
    assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
    assert_true(v->number_value == 123456789.0);
    cdp_value_free(v);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_struct_round_trip),
        cmocka_unit_test(test_wire_round_trip),
        cmocka_unit_test(test_value_round_trip_scalars_and_lists),
        cmocka_unit_test(test_non_object_gives_no_struct),
        cmocka_unit_test(test_unset_and_invalid_values),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_integral_numbers_are_integers),
        cmocka_unit_test(test_other_numbers_are_reals_or_null),
        cmocka_unit_test(test_json_integers_become_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
