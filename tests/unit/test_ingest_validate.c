/* Unit tests for ingestion's event validation (services/ingestion/ing_validate)
 * and the identifier list it shares with the pipeline (ing_event): every
 * rule, with the values on both sides of each boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cdp_json.h"
#include "ing_event.h"
#include "ing_validate.h"

/* 2024-11-29T12:00:00Z: a fixed server clock. */
#define NOW_MS 1732881600000LL
#define MS 1000LL

typedef struct {
    cdp_ident_config ident;
    ing_limits lim;
    Cdp__V1__Event ev;
    Cdp__V1__ConversationMessage msg;
    Google__Protobuf__Timestamp ts;
    Cdp__V1__Identifier ids[ING_MAX_IDENTIFIERS + 1];
    Cdp__V1__Identifier *idp[ING_MAX_IDENTIFIERS + 1];
    ing_verdict v;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(cdp_ident_config_init(&f->ident, "US", NULL), 0);
    ing_limits_default(&f->lim, &f->ident);
    Cdp__V1__Event ev = CDP__V1__EVENT__INIT;
    f->ev = ev;
    f->ev.message_id = "m-1";
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    f->ev.event = "Order Completed";
    f->ev.user_id = "u-1";
    Cdp__V1__ConversationMessage m = CDP__V1__CONVERSATION_MESSAGE__INIT;
    f->msg = m;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    f->ts = ts;
    for (size_t i = 0; i <= ING_MAX_IDENTIFIERS; i++) {
        Cdp__V1__Identifier id = CDP__V1__IDENTIFIER__INIT;
        f->ids[i] = id;
        f->idp[i] = &f->ids[i];
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static void set_identifiers(fx *f, size_t n)
{
    f->ev.identifiers = f->idp;
    f->ev.n_identifiers = n;
}

static int check(fx *f, const char *prefix)
{
    memset(&f->v, 0, sizeof f->v);
    return ing_validate_event(&f->ev, prefix, &f->lim, NOW_MS, &f->v);
}

/* The event fails with exactly this field and reason. */
static void expect_fail(fx *f, const char *prefix, const char *field, const char *error)
{
    assert_int_equal(check(f, prefix), -1);
    assert_string_equal(f->v.field, field);
    assert_string_equal(f->v.error, error);
}

static void expect_ok(fx *f)
{
    int rc = check(f, "events[0]");
    if (rc != 0)
        fail_msg("unexpected rejection: %s: %s", f->v.field, f->v.error);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------------------ basics */

static void test_valid_track(void **state)
{
    expect_ok(*state);
}

static void test_field_paths_carry_prefix(void **state)
{
    fx *f = *state;
    f->ev.message_id = "";
    expect_fail(f, "events[3]", "events[3].message_id", "required");
    expect_fail(f, "", "message_id", "required");
}

/* ------------------------------------------------------------------ size */

static void test_event_size_boundary(void **state)
{
    fx *f = *state;
    size_t sz = cdp__v1__event__get_packed_size(&f->ev);
    f->lim.max_event_bytes = (int64_t)sz;
    expect_ok(f);
    f->lim.max_event_bytes = (int64_t)sz - 1;
    char want[ING_ERROR_BUFSZ];
    snprintf(want, sizeof want, "event is %zu bytes packed; the limit is %zu", sz, sz - 1);
    expect_fail(f, "events[7]", "events[7]", want);
    expect_fail(f, "", "request", want);
}

static void test_event_size_default_32k(void **state)
{
    fx *f = *state;
    assert_int_equal(f->lim.max_event_bytes, 32768);
    /* A 33000-byte context value pushes the packed event over 32 KiB. */
    char *big = repeat('x', 33000);
    json_t *j = json_pack("{s:s}", "blob", big);
    Google__Protobuf__Struct *ctx = cdp_json_to_struct(j);
    f->ev.context = ctx;
    assert_int_equal(check(f, "events[0]"), -1);
    assert_string_equal(f->v.field, "events[0]");
    cdp_struct_free(ctx);
    json_decref(j);
    free(big);
}

/* ------------------------------------------------------------------ message_id */

static void test_message_id_required(void **state)
{
    fx *f = *state;
    f->ev.message_id = "";
    expect_fail(f, "events[0]", "events[0].message_id", "required");
}

static void test_message_id_length_boundary(void **state)
{
    fx *f = *state;
    char *ok = repeat('a', ING_MAX_MESSAGE_ID_BYTES);
    char *bad = repeat('a', ING_MAX_MESSAGE_ID_BYTES + 1);
    f->ev.message_id = ok;
    expect_ok(f);
    f->ev.message_id = bad;
    expect_fail(f, "events[0]", "events[0].message_id", "longer than 128 bytes");
    free(ok);
    free(bad);
}

/* ------------------------------------------------------------------ type */

static void test_type_unspecified(void **state)
{
    fx *f = *state;
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
    expect_fail(f, "events[0]", "events[0].type", "required");
}

static void test_type_outside_enum(void **state)
{
    fx *f = *state;
    f->ev.type = (Cdp__V1__EventType)8;
    expect_fail(f, "events[0]", "events[0].type", "unknown event type 8");
    f->ev.type = (Cdp__V1__EventType)-1;
    expect_fail(f, "events[0]", "events[0].type", "unknown event type -1");
}

static void test_every_known_type_accepted(void **state)
{
    fx *f = *state;
    f->msg.channel = "whatsapp";
    f->msg.direction = CDP__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
    f->ev.message = &f->msg;
    for (int t = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK; t <= CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE; t++) {
        f->ev.type = (Cdp__V1__EventType)t;
        expect_ok(f);
    }
}

/* ------------------------------------------------------------------ event name */

static void test_track_needs_event_name(void **state)
{
    fx *f = *state;
    f->ev.event = "";
    expect_fail(f, "events[2]", "events[2].event", "required for track events");
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY;
    expect_ok(f);
}

static void test_event_name_length_boundary(void **state)
{
    fx *f = *state;
    char *ok = repeat('e', ING_MAX_EVENT_NAME_BYTES);
    char *bad = repeat('e', ING_MAX_EVENT_NAME_BYTES + 1);
    f->ev.event = ok;
    expect_ok(f);
    f->ev.event = bad;
    expect_fail(f, "events[0]", "events[0].event", "longer than 200 bytes");
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_PAGE;
    expect_fail(f, "events[0]", "events[0].event", "longer than 200 bytes");
    free(ok);
    free(bad);
}

/* ------------------------------------------------------------------ message */

static void test_message_event_rules(void **state)
{
    fx *f = *state;
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE;
    expect_fail(f, "events[0]", "events[0].message", "required for message events");
    f->ev.message = &f->msg;
    expect_fail(f, "events[0]", "events[0].message.channel", "required");
    f->msg.channel = "sms";
    expect_fail(f, "events[0]", "events[0].message.direction", "must be INBOUND or OUTBOUND");
    f->msg.direction = (Cdp__V1__MessageDirection)3;
    expect_fail(f, "events[0]", "events[0].message.direction", "must be INBOUND or OUTBOUND");
    f->msg.direction = CDP__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_OUTBOUND;
    expect_ok(f);
    f->msg.direction = CDP__V1__MESSAGE_DIRECTION__MESSAGE_DIRECTION_INBOUND;
    expect_ok(f);
}

/* ------------------------------------------------------------------ identifiers */

static void test_no_identifier(void **state)
{
    fx *f = *state;
    f->ev.user_id = "";
    expect_fail(f, "events[0]", "events[0].identifiers",
                "no usable identifier (user_id, anonymous_id or identifiers[])");
}

static void test_blocked_values_are_not_usable(void **state)
{
    fx *f = *state;
    f->ev.user_id = "null";
    f->ev.anonymous_id = "Undefined";
    f->ids[0].type = "email";
    f->ids[0].value = "  ";
    set_identifiers(f, 1);
    expect_fail(f, "events[0]", "events[0].identifiers",
                "no usable identifier (user_id, anonymous_id or identifiers[])");
    f->ids[0].value = "Ann@Example.com";
    expect_ok(f);
}

static void test_anonymous_id_alone_is_enough(void **state)
{
    fx *f = *state;
    f->ev.user_id = "";
    f->ev.anonymous_id = "a-9";
    expect_ok(f);
}

static void test_identifier_list_alone_is_enough(void **state)
{
    fx *f = *state;
    f->ev.user_id = "";
    f->ids[0].type = "phone";
    f->ids[0].value = "(415) 555-0100";
    f->ids[1].type = "loyalty.card";
    f->ids[1].value = "LC-1";
    set_identifiers(f, 2);
    expect_ok(f);
}

static void test_bad_identifier_value_names_it(void **state)
{
    fx *f = *state;
    f->ids[0].type = "email";
    f->ids[0].value = "a@b.co";
    f->ids[1].type = "email";
    f->ids[1].value = "not-an-email";
    set_identifiers(f, 2);
    expect_fail(f, "events[4]", "events[4].identifiers[1].value", "not a valid email");
    f->ids[1].type = "phone";
    f->ids[1].value = "12";
    expect_fail(f, "events[4]", "events[4].identifiers[1].value", "not a valid phone number");
}

static void test_bad_identifier_type_names_it(void **state)
{
    fx *f = *state;
    f->ids[0].type = "";
    f->ids[0].value = "x";
    set_identifiers(f, 1);
    expect_fail(f, "events[0]", "events[0].identifiers[0].type", "required");
    f->ids[0].type = "Not A Type";
    expect_fail(f, "events[0]", "events[0].identifiers[0].type", "not a valid identifier type");
}

static void test_user_id_too_long_names_user_id(void **state)
{
    fx *f = *state;
    char *ok = repeat('u', CDP_IDENT_MAX_VALUE);
    char *bad = repeat('u', CDP_IDENT_MAX_VALUE + 1);
    f->ev.user_id = ok;
    expect_ok(f);
    f->ev.user_id = bad;
    expect_fail(f, "events[0]", "events[0].user_id", "too long");
    f->ev.user_id = "u";
    f->ev.anonymous_id = bad;
    expect_fail(f, "events[0]", "events[0].anonymous_id", "too long");
    free(ok);
    free(bad);
}

static void test_identifier_count_boundary(void **state)
{
    fx *f = *state;
    char vals[ING_MAX_IDENTIFIERS + 1][16];
    for (size_t i = 0; i <= ING_MAX_IDENTIFIERS; i++) {
        snprintf(vals[i], sizeof vals[i], "d-%zu", i);
        f->ids[i].type = "device_id";
        f->ids[i].value = vals[i];
    }
    set_identifiers(f, ING_MAX_IDENTIFIERS);
    expect_ok(f);
    set_identifiers(f, ING_MAX_IDENTIFIERS + 1);
    expect_fail(f, "events[0]", "events[0].identifiers", "more than 100 identifiers");
}

static void test_alias_previous_id_counts(void **state)
{
    fx *f = *state;
    f->ev.user_id = "";
    f->ev.previous_id = "anon-7";
    /* Only an alias event's previous_id is an identifier. */
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY;
    assert_int_equal(check(f, ""), -1);
    assert_string_equal(f->v.field, "identifiers");
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_ALIAS;
    expect_ok(f);
}

static void test_event_identifiers_order_and_mapping(void **state)
{
    fx *f = *state;
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_ALIAS;
    f->ev.anonymous_id = "a-1";
    f->ev.previous_id = "p-1";
    f->ids[0].type = "email";
    f->ids[0].value = "x@y.z";
    set_identifiers(f, 1);
    ing_ident_ref refs[8];
    assert_int_equal(ing_event_identifier_count(&f->ev), 4);
    assert_int_equal(ing_event_identifiers(&f->ev, refs, 8), 4);
    assert_string_equal(refs[0].type, "user_id");
    assert_string_equal(refs[0].value, "u-1");
    assert_string_equal(refs[1].type, "anonymous_id");
    assert_string_equal(refs[1].value, "a-1");
    assert_string_equal(refs[2].type, "anonymous_id");
    assert_string_equal(refs[2].value, "p-1");
    assert_string_equal(refs[3].type, "email");
    assert_int_equal(refs[3].index, 0);
    /* A short buffer is filled, never overrun. */
    assert_int_equal(ing_event_identifiers(&f->ev, refs, 2), 2);
    char field[64];
    ing_ident_field(&refs[2], "events[1].", "", field, sizeof field);
    assert_string_equal(field, "events[1].previous_id");
}

/* ------------------------------------------------------------------ timestamp */

static void set_ts_ms(fx *f, int64_t ms)
{
    f->ts.seconds = ms / MS;
    f->ts.nanos = (int32_t)((ms % MS) * 1000000);
    f->ev.timestamp = &f->ts;
}

static void test_timestamp_absent_is_fine(void **state)
{
    fx *f = *state;
    f->ev.timestamp = NULL;
    expect_ok(f);
}

static void test_timestamp_future_boundary(void **state)
{
    fx *f = *state;
    set_ts_ms(f, NOW_MS + 86400 * MS);
    expect_ok(f);
    set_ts_ms(f, NOW_MS + 86400 * MS + 1);
    expect_fail(f, "events[3]", "events[3].timestamp", "more than 24h in the future");
}

static void test_timestamp_future_limit_configurable(void **state)
{
    fx *f = *state;
    f->lim.max_future_s = 300;
    set_ts_ms(f, NOW_MS + 300 * MS);
    expect_ok(f);
    set_ts_ms(f, NOW_MS + 300 * MS + 1);
    expect_fail(f, "", "timestamp", "more than 5m in the future");
}

static void test_timestamp_past_boundary(void **state)
{
    fx *f = *state;
    int64_t ten_years_ms = ING_DEFAULT_MAX_PAST_S * MS;
    set_ts_ms(f, NOW_MS - ten_years_ms);
    expect_ok(f);
    set_ts_ms(f, NOW_MS - ten_years_ms - 1);
    expect_fail(f, "events[0]", "events[0].timestamp", "more than 10y in the past");
}

static void test_timestamp_nanos_range(void **state)
{
    fx *f = *state;
    set_ts_ms(f, NOW_MS);
    f->ts.nanos = 999999999;
    expect_ok(f);
    f->ts.nanos = 1000000000;
    expect_fail(f, "events[0]", "events[0].timestamp", "nanos must be within 0..999999999");
    f->ts.nanos = -1;
    expect_fail(f, "events[0]", "events[0].timestamp", "nanos must be within 0..999999999");
}

static void test_timestamp_year_range(void **state)
{
    fx *f = *state;
    /* Open the clock window wide so only the calendar bounds apply. */
    f->lim.max_future_s = INT64_C(1) << 40;
    f->lim.max_past_s = INT64_C(1) << 40;
    f->ev.timestamp = &f->ts;
    f->ts.seconds = 0;
    expect_ok(f);
    f->ts.seconds = -1;
    expect_fail(f, "events[0]", "events[0].timestamp", "before 1970-01-01T00:00:00Z");
    f->ts.seconds = ING_TS_MAX_SECONDS;
    f->ts.nanos = ING_TS_MAX_NANOS;
    expect_ok(f);
    f->ts.seconds = ING_TS_MAX_SECONDS + 1;
    f->ts.nanos = 0;
    expect_fail(f, "events[0]", "events[0].timestamp", "after 9999-12-31T23:59:59Z");
}

/* ------------------------------------------------------------------ depth */

/* A Struct nested `depth` levels deep ({"a":{"a":...{"k":1}}}). */
static Google__Protobuf__Struct *nested(int depth)
{
    json_t *j = json_pack("{s:i}", "k", 1);
    for (int i = 1; i < depth; i++)
        j = json_pack("{s:o}", "a", j);
    Google__Protobuf__Struct *s = cdp_json_to_struct(j);
    json_decref(j);
    assert_non_null(s);
    return s;
}

static void check_depth_member(fx *f, Google__Protobuf__Struct **slot, const char *field)
{
    Google__Protobuf__Struct *ok = nested(ING_DEFAULT_MAX_DEPTH);
    Google__Protobuf__Struct *bad = nested(ING_DEFAULT_MAX_DEPTH + 1);
    assert_int_equal(cdp_struct_depth(ok), ING_DEFAULT_MAX_DEPTH);
    *slot = ok;
    expect_ok(f);
    *slot = bad;
    expect_fail(f, "events[0]", field, "nested 17 deep; the limit is 16");
    *slot = NULL;
    cdp_struct_free(ok);
    cdp_struct_free(bad);
}

static void test_depth_properties_traits_context(void **state)
{
    fx *f = *state;
    check_depth_member(f, &f->ev.properties, "events[0].properties");
    check_depth_member(f, &f->ev.traits, "events[0].traits");
    check_depth_member(f, &f->ev.context, "events[0].context");
}

/* ------------------------------------------------------------------ consent events */

/* Validates the event as a "Consent Updated" with these properties (JSON). */
static void consent_props(fx *f, const char *json, const char *field, const char *error)
{
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    assert_non_null(j);
    Google__Protobuf__Struct *s = cdp_json_to_struct(j);
    json_decref(j);
    assert_non_null(s);
    f->ev.event = "Consent Updated";
    f->ev.properties = s;
    if (field)
        expect_fail(f, "events[0]", field, error);
    else
        expect_ok(f);
    f->ev.properties = NULL;
    cdp_struct_free(s);
}

static void test_consent_event_shape(void **state)
{
    fx *f = *state;
    const char *bad_status = "must be one of granted, denied, revoked, unset";
    consent_props(f, "{\"purpose\":\"marketing\",\"status\":\"granted\"}", NULL, NULL);
    consent_props(f, "{\"purpose\":\"marketing\",\"status\":\"granted\",\"channel\":\"email\","
                     "\"legal_basis\":\"consent\",\"jurisdiction\":\"gdpr\",\"source\":\"web\"}",
                  NULL, NULL);
    consent_props(f, "{\"status\":\"granted\"}", "events[0].properties.purpose",
                  "a consent event needs a purpose (a string of 1..64 bytes)");
    consent_props(f, "{\"purpose\":\"\",\"status\":\"granted\"}", "events[0].properties.purpose",
                  "a consent event needs a purpose (a string of 1..64 bytes)");
    consent_props(f, "{\"purpose\":\"marketing\",\"status\":\"yes\"}", "events[0].properties.status",
                  bad_status);
    consent_props(f, "{\"purpose\":\"marketing\",\"status\":true}", "events[0].properties.status",
                  bad_status);
    consent_props(f, "{\"purpose\":\"marketing\",\"status\":\"denied\",\"channel\":7}",
                  "events[0].properties.channel", "must be a string of at most 64 bytes");
    consent_props(f,
                  "{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"denied\"},"
                  "{\"purpose\":\"analytics\",\"status\":\"granted\",\"channel\":\"*\"}]}",
                  NULL, NULL);
    consent_props(f, "{\"consents\":[]}", "events[0].properties.consents",
                  "must be a list of 1..100 objects");
    consent_props(f, "{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"denied\"},3]}",
                  "events[0].properties.consents[1]", "must be an object");
    consent_props(f, "{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"maybe\"}]}",
                  "events[0].properties.consents[0].status", bad_status);
    /* Other events with these properties are not consent events. */
    f->ev.event = "Order Completed";
    expect_ok(f);
}

/* ------------------------------------------------------------------ batch */

static void test_batch_limits(void **state)
{
    fx *f = *state;
    size_t n = ING_DEFAULT_MAX_BATCH_EVENTS + 1;
    Cdp__V1__Event **evs = calloc(n, sizeof *evs);
    assert_non_null(evs);
    for (size_t i = 0; i < n; i++)
        evs[i] = &f->ev;
    Cdp__V1__IngestRequest req = CDP__V1__INGEST_REQUEST__INIT;
    req.events = evs;

    req.n_events = 0;
    assert_int_equal(ing_validate_batch(&req, &f->lim, &f->v), -1);
    assert_string_equal(f->v.field, "events");
    assert_string_equal(f->v.error, "at least one event is required");

    req.n_events = ING_DEFAULT_MAX_BATCH_EVENTS;
    assert_int_equal(ing_validate_batch(&req, &f->lim, &f->v), 0);
    req.n_events = ING_DEFAULT_MAX_BATCH_EVENTS + 1;
    assert_int_equal(ing_validate_batch(&req, &f->lim, &f->v), -1);
    assert_string_equal(f->v.field, "events");
    assert_string_equal(f->v.error, "2501 events; the limit is 2500");

    req.n_events = 10;
    size_t sz = cdp__v1__ingest_request__get_packed_size(&req);
    f->lim.max_batch_bytes = (int64_t)sz;
    assert_int_equal(ing_validate_batch(&req, &f->lim, &f->v), 0);
    f->lim.max_batch_bytes = (int64_t)sz - 1;
    assert_int_equal(ing_validate_batch(&req, &f->lim, &f->v), -1);
    assert_string_equal(f->v.field, "events");
    free(evs);
}

static void test_default_batch_bytes_is_4mib(void **state)
{
    fx *f = *state;
    assert_int_equal(f->lim.max_batch_bytes, 4 * 1024 * 1024);
    assert_int_equal(f->lim.max_batch_events, 2500);
}

/* ------------------------------------------------------------------ durations */

static void test_format_duration(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(ing_format_duration(86400, b, sizeof b), "24h");
    assert_string_equal(ing_format_duration(172800, b, sizeof b), "2d");
    assert_string_equal(ing_format_duration(ING_DEFAULT_MAX_PAST_S, b, sizeof b), "10y");
    assert_string_equal(ing_format_duration(5400, b, sizeof b), "90m");
    assert_string_equal(ing_format_duration(90, b, sizeof b), "90s");
    assert_string_equal(ing_format_duration(0, b, sizeof b), "0s");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_track),
        T(test_field_paths_carry_prefix),
        T(test_event_size_boundary),
        T(test_event_size_default_32k),
        T(test_message_id_required),
        T(test_message_id_length_boundary),
        T(test_type_unspecified),
        T(test_type_outside_enum),
        T(test_every_known_type_accepted),
        T(test_track_needs_event_name),
        T(test_event_name_length_boundary),
        T(test_message_event_rules),
        T(test_no_identifier),
        T(test_blocked_values_are_not_usable),
        T(test_anonymous_id_alone_is_enough),
        T(test_identifier_list_alone_is_enough),
        T(test_bad_identifier_value_names_it),
        T(test_bad_identifier_type_names_it),
        T(test_user_id_too_long_names_user_id),
        T(test_identifier_count_boundary),
        T(test_alias_previous_id_counts),
        T(test_event_identifiers_order_and_mapping),
        T(test_timestamp_absent_is_fine),
        T(test_timestamp_future_boundary),
        T(test_timestamp_future_limit_configurable),
        T(test_timestamp_past_boundary),
        T(test_timestamp_nanos_range),
        T(test_timestamp_year_range),
        T(test_depth_properties_traits_context),
        T(test_consent_event_shape),
        T(test_batch_limits),
        T(test_default_batch_bytes_is_4mib),
        T(test_format_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
