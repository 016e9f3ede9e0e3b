/* test_consent_event: consent events to entries (cns_event): recognition,
 * the single and the list shape, defaults (channel "*", source, actor, time,
 * message id), and the precise field error of every malformed shape. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "cdp_json.h"
#include "cns_event.h"

static cns_policy pol;

static int setup(void **state)
{
    (void)state;
    char err[CNS_ERR_MAX];
    return cns_policy_parse(&pol, NULL, NULL, NULL, NULL, err, sizeof err);
}

typedef struct {
    Cdp__V1__Event ev;
    Google__Protobuf__Timestamp ts, recv;
    cns_entry out[CNS_EVENT_MAX_CHANGES];
    size_t n;
    char field[CNS_FIELD_MAX], err[CNS_EVENT_ERR_MAX];
} t_event;

/* A "Consent Updated" track event with properties from JSON text. */
static void ev_init(t_event *t, const char *props_json)
{
    memset(t, 0, sizeof *t);
    cdp__v1__event__init(&t->ev);
    google__protobuf__timestamp__init(&t->ts);
    t->ev.message_id = "m-1";
    t->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    t->ev.event = "Consent Updated";
    t->ts.seconds = 1700000000;
    t->ts.nanos = 250000000;
    t->ev.timestamp = &t->ts;
    if (props_json) {
        json_t *j = json_loads(props_json, 0, NULL);
        assert_non_null(j);
        t->ev.properties = cdp_json_to_struct(j);
        json_decref(j);
    }
}

static void ev_clear(t_event *t)
{
    cdp_struct_free(t->ev.properties);
}

static int run(t_event *t)
{
    return cns_event_parse(&t->ev, t->out, CNS_EVENT_MAX_CHANGES, &t->n, &pol, t->field,
                           sizeof t->field, t->err, sizeof t->err);
}

static void test_not_consent(void **state)
{
    (void)state;
    t_event t;
    ev_init(&t, "{\"purpose\":\"marketing\",\"status\":\"granted\"}");
    t.ev.event = "Order Completed";
    assert_int_equal(run(&t), 0);
    assert_int_equal(t.n, 0);
    t.ev.event = "consent updated"; /* exactly the name */
    assert_int_equal(run(&t), 0);
    t.ev.event = "Consent Updated";
    t.ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY;
    assert_int_equal(run(&t), 0);
    assert_false(cns_event_is_consent(NULL));
    ev_clear(&t);
}

static void test_single_change_defaults(void **state)
{
    (void)state;
    t_event t;
    ev_init(&t, "{\"purpose\":\"marketing\",\"status\":\"granted\",\"legal_basis\":\"consent\","
                "\"jurisdiction\":\"ccpa\"}");
    t.ev.source = "web";
    assert_int_equal(run(&t), 1);
    assert_int_equal(t.n, 1);
    const cns_entry *e = &t.out[0];
    assert_string_equal(e->purpose, "marketing");
    assert_string_equal(e->channel, "*");
    assert_int_equal(e->status, CNS_STATUS_GRANTED);
    assert_string_equal(e->source, "web");
    assert_string_equal(e->actor, "event:web");
    assert_string_equal(e->legal_basis, "consent");
    assert_string_equal(e->jurisdiction, "ccpa");
    assert_string_equal(e->message_id, "m-1");
    assert_int_equal(e->updated_ms, INT64_C(1700000000250));
    ev_clear(&t);
    /* no event source: "event"; no timestamp: received_at */
    ev_init(&t, "{\"purpose\":\"analytics\",\"channel\":\"sms\",\"status\":\"unset\"}");
    t.ev.timestamp = NULL;
    t.recv.seconds = 1600000000;
    t.ev.received_at = &t.recv;
    assert_int_equal(run(&t), 1);
    assert_string_equal(t.out[0].actor, "event:event");
    assert_string_equal(t.out[0].channel, "sms");
    assert_int_equal(t.out[0].status, CNS_STATUS_UNSET);
    assert_int_equal(t.out[0].updated_ms, INT64_C(1600000000000));
    ev_clear(&t);
}

static void test_list(void **state)
{
    (void)state;
    t_event t;
    ev_init(&t, "{\"consents\":[{\"purpose\":\"marketing\",\"channel\":\"email\",\"status\":\"denied\","
                "\"source\":\"app\"},{\"purpose\":\"marketing\",\"status\":\"revoked\"}]}");
    assert_int_equal(run(&t), 1);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.out[0].actor, "event:app");
    assert_string_equal(t.out[1].channel, "*");
    assert_int_equal(t.out[1].status, CNS_STATUS_REVOKED);
    assert_string_equal(t.out[1].message_id, "m-1");
    ev_clear(&t);
}

/* props must fail on field with an error starting with want. */
static void expect_bad(const char *props, const char *field, const char *want)
{
    t_event t;
    ev_init(&t, props);
    assert_int_equal(run(&t), -1);
    assert_int_equal(t.n, 0);
    assert_string_equal(t.field, field);
    if (strncmp(t.err, want, strlen(want)) != 0)
        fail_msg("%s: error \"%s\", want \"%s\"", field, t.err, want);
    ev_clear(&t);
}

static void test_field_errors(void **state)
{
    (void)state;
    expect_bad(NULL, "properties.purpose", "required");
    expect_bad("{\"status\":\"granted\"}", "properties.purpose", "required");
    expect_bad("{\"purpose\":\"spam\",\"status\":\"granted\"}", "properties.purpose",
               "unknown purpose \"spam\"");
    expect_bad("{\"purpose\":7,\"status\":\"granted\"}", "properties.purpose", "must be a string");
    expect_bad("{\"purpose\":\"marketing\",\"channel\":\"fax\",\"status\":\"granted\"}",
               "properties.channel", "unknown channel");
    expect_bad("{\"purpose\":\"marketing\"}", "properties.status", "required");
    expect_bad("{\"purpose\":\"marketing\",\"status\":\"yes\"}", "properties.status",
               "must be granted, denied, revoked or unset");
    expect_bad("{\"purpose\":\"marketing\",\"status\":\"granted\",\"legal_basis\":\"whim\"}",
               "properties.legal_basis", "must be consent");
    expect_bad("{\"purpose\":\"marketing\",\"status\":\"granted\",\"jurisdiction\":\"mars\"}",
               "properties.jurisdiction", "unknown jurisdiction");
    expect_bad("{\"consents\":{}}", "properties.consents", "must be a list of objects");
    expect_bad("{\"consents\":[]}", "properties.consents", "must not be empty");
    expect_bad("{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"granted\"},3]}",
               "properties.consents[1]", "must be an object");
    expect_bad("{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"granted\"},"
               "{\"purpose\":\"marketing\",\"status\":\"nah\"}]}",
               "properties.consents[1].status", "must be granted");
    expect_bad("{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"granted\"},"
               "{\"purpose\":\"marketing\",\"channel\":\"*\",\"status\":\"denied\"}]}",
               "properties.consents[1].channel", "marketing/* already changed by consents[0]");
    expect_bad("{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"granted\"}],\"status\":\"x\"}",
               "properties.status", "not allowed beside properties.consents");
}

static void test_event_level_errors(void **state)
{
    (void)state;
    t_event t;
    ev_init(&t, "{\"purpose\":\"marketing\",\"status\":\"granted\"}");
    t.ev.message_id = "";
    assert_int_equal(run(&t), -1);
    assert_string_equal(t.field, "message_id");
    t.ev.message_id = "m-1";
    t.ev.timestamp = NULL;
    assert_int_equal(run(&t), -1);
    assert_string_equal(t.field, "received_at");
    assert_string_equal(t.err, "required (timestamp or received_at)");
    t.ev.timestamp = &t.ts;
    t.ts.nanos = -1;
    assert_int_equal(run(&t), -1);
    assert_string_equal(t.field, "timestamp");
    ev_clear(&t);
    /* more changes than the caller has room for */
    ev_init(&t, "{\"consents\":[{\"purpose\":\"marketing\",\"status\":\"granted\"},"
                "{\"purpose\":\"analytics\",\"status\":\"granted\"}]}");
    assert_int_equal(cns_event_parse(&t.ev, t.out, 1, &t.n, &pol, t.field, sizeof t.field, t.err,
                                     sizeof t.err),
                     -1);
    assert_string_equal(t.field, "properties.consents");
    assert_string_equal(t.err, "more than 1 changes");
    ev_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_consent),
        cmocka_unit_test(test_single_change_defaults),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_field_errors),
        cmocka_unit_test(test_event_level_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
