/* Unit tests of activation's pure rules (services/activation/act_core.h,
 * act_msg.h): validation, trigger matching, the change-stream parser,
 * delivery ids, backoff, HTTP outcomes and the webhook body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "act_core.h"
#include "act_msg.h"

/* ------------------------------------------------------------------ backoff */

static void test_backoff_bounds(void **state)
{
    (void)state;
    /* ceiling = min(cap, base * 2^attempt); rnd chooses within [0, ceiling] */
    assert_int_equal(act_backoff_ms(1, 500, 60000, UINT64_MAX - 0), (int64_t)(UINT64_MAX % 1001));
    assert_int_equal(act_backoff_ms(1, 500, 60000, 1000), 1000);
    assert_int_equal(act_backoff_ms(1, 500, 60000, 1001), 0);
    assert_int_equal(act_backoff_ms(3, 500, 60000, 4000), 4000);
    assert_int_equal(act_backoff_ms(3, 500, 60000, 4001), 0);
    /* capped */
    assert_int_equal(act_backoff_ms(10, 500, 60000, 60000), 60000);
    assert_int_equal(act_backoff_ms(10, 500, 60000, 60001), 0);
    /* huge attempts never overflow */
    for (int a = 0; a < 200; a += 7) {
        int64_t v = act_backoff_ms(a, 500, 60000, (uint64_t)a * 7919u);
        assert_true(v >= 0 && v <= 60000);
    }
    assert_int_equal(act_backoff_ms(5, 0, 60000, 12345), 0);
    assert_int_equal(act_backoff_ms(0, 500, 60000, 500), 500);
}

static void test_backoff_spread(void **state)
{
    (void)state;
    /* full jitter: values cover the whole range, not just the ceiling */
    int low = 0, high = 0;
    for (uint64_t r = 0; r < 4001; r += 13) {
        int64_t v = act_backoff_ms(3, 500, 60000, r);
        assert_true(v >= 0 && v <= 4000);
        low += v < 1000;
        high += v > 3000;
    }
    assert_true(low > 0 && high > 0);
}

static void test_http_classify(void **state)
{
    (void)state;
    assert_int_equal(act_http_classify(0, 200), ACT_HTTP_DELIVERED);
    assert_int_equal(act_http_classify(0, 204), ACT_HTTP_DELIVERED);
    assert_int_equal(act_http_classify(0, 500), ACT_HTTP_RETRY);
    assert_int_equal(act_http_classify(0, 503), ACT_HTTP_RETRY);
    assert_int_equal(act_http_classify(0, 408), ACT_HTTP_RETRY);
    assert_int_equal(act_http_classify(0, 429), ACT_HTTP_RETRY);
    assert_int_equal(act_http_classify(1, 0), ACT_HTTP_RETRY);
    assert_int_equal(act_http_classify(0, 400), ACT_HTTP_PERMANENT);
    assert_int_equal(act_http_classify(0, 404), ACT_HTTP_PERMANENT);
    assert_int_equal(act_http_classify(0, 410), ACT_HTTP_PERMANENT);
}

/* ------------------------------------------------------------------ destinations */

static Cdp__V1__Destination *dest_new(Cdp__V1__DestinationType type, const char *url,
                                      const char *secret, const char *channel, int n_triggers)
{
    Cdp__V1__Destination d = CDP__V1__DESTINATION__INIT;
    Cdp__V1__Trigger t = CDP__V1__TRIGGER__INIT;
    Cdp__V1__Trigger *tp[1] = {&t};
    t.on = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
    t.segment_id = "vip";
    d.type = type;
    d.url = (char *)url;
    d.secret = (char *)secret;
    d.channel = (char *)channel;
    d.triggers = tp;
    d.n_triggers = (size_t)n_triggers;
    /* round trip: an owned message as a request handler would copy it */
    size_t n = protobuf_c_message_get_packed_size(&d.base);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(&d.base, buf);
    Cdp__V1__Destination *out = (Cdp__V1__Destination *)protobuf_c_message_unpack(
        &cdp__v1__destination__descriptor, NULL, n, buf);
    free(buf);
    return out;
}

static void dest_free(Cdp__V1__Destination *d)
{
    protobuf_c_message_free_unpacked(&d->base, NULL);
}

static void expect_invalid(Cdp__V1__Destination *d, const char *want)
{
    char err[ACT_ERR_MAX];
    assert_int_equal(act_dest_validate(d, 0, err, sizeof(err)), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not mention \"%s\"", err, want);
    dest_free(d);
}

static void test_validate_defaults(void **state)
{
    (void)state;
    char err[ACT_ERR_MAX];
    Cdp__V1__Destination *d = dest_new(CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_WEBHOOK,
                                       "https://example.test/hook", "0123456789abcdef", "", 1);
    assert_int_equal(act_dest_validate(d, 0, err, sizeof(err)), 0);
    assert_string_equal(d->purpose, "marketing");
    assert_int_equal(d->max_attempts, 8);
    assert_int_equal(d->timeout_ms, 10000);
    assert_int_equal(d->max_in_flight, 8);
    assert_string_equal(act_dest_channel(d), "webhook");
    dest_free(d);
    d = dest_new(CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_GATEWAY, "", "", "whatsapp", 1);
    assert_int_equal(act_dest_validate(d, 0, err, sizeof(err)), 0);
    assert_string_equal(act_dest_channel(d), "whatsapp");
    dest_free(d);
}

static void test_validate_errors(void **state)
{
    (void)state;
    const Cdp__V1__DestinationType W = CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_WEBHOOK;
    const Cdp__V1__DestinationType G = CDP__V1__DESTINATION_TYPE__DESTINATION_TYPE_GATEWAY;
    const char *sec = "0123456789abcdef";
    expect_invalid(dest_new(0, "https://x.test", sec, "", 1), "destination.type");
    expect_invalid(dest_new(W, "ftp://x.test", sec, "", 1), "destination.url: must start with");
    expect_invalid(dest_new(W, "https:///path", sec, "", 1), "destination.url: must name a host");
    expect_invalid(dest_new(W, "", sec, "", 1), "destination.url: required");
    expect_invalid(dest_new(W, "http://x.test", "", "", 1), "destination.secret: required");
    expect_invalid(dest_new(W, "http://x.test", "short", "", 1), "destination.secret: at least 16");
    expect_invalid(dest_new(G, "", "", "", 1), "destination.channel: required");
    expect_invalid(dest_new(W, "http://x.test", sec, "", 0), "destination.triggers");
    Cdp__V1__Destination *d = dest_new(W, "http://x.test", sec, "", 1);
    d->max_attempts = 101;
    expect_invalid(d, "destination.max_attempts");
    d = dest_new(W, "http://x.test", sec, "", 1);
    d->timeout_ms = 50;
    expect_invalid(d, "destination.timeout_ms");
    d = dest_new(W, "http://x.test", sec, "", 1);
    d->max_in_flight = 257;
    expect_invalid(d, "destination.max_in_flight");
    d = dest_new(W, "http://x.test", sec, "", 1);
    d->triggers[0]->on = CDP__V1__CHANGE_KIND__CHANGE_KIND_UNSPECIFIED;
    expect_invalid(d, "destination.triggers[0].on");
    d = dest_new(W, "http://x.test", sec, "", 1);
    act_str_set(&d->triggers[0]->segment_id, "");
    expect_invalid(d, "destination.triggers[0].segment_id: required");
    d = dest_new(W, "http://x.test", sec, "", 1);
    act_str_set(&d->id, "bad id");
    expect_invalid(d, "destination.id");
    /* update: an empty secret keeps the stored one */
    char err[ACT_ERR_MAX];
    d = dest_new(W, "http://x.test", "", "", 1);
    assert_int_equal(act_dest_validate(d, 1, err, sizeof(err)), 0);
    dest_free(d);
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(act_id_valid("a"));
    assert_true(act_id_valid("A-b_c.9"));
    assert_false(act_id_valid(""));
    assert_false(act_id_valid("a:b"));
    assert_false(act_id_valid("a b"));
    char long_id[ACT_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[ACT_ID_MAX + 1] = '\0';
    assert_false(act_id_valid(long_id));
    long_id[ACT_ID_MAX] = '\0';
    assert_true(act_id_valid(long_id));
}

/* ------------------------------------------------------------------ matching */

static void test_trigger_match(void **state)
{
    (void)state;
    Cdp__V1__Trigger t = CDP__V1__TRIGGER__INIT;
    t.on = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
    t.segment_id = "vip";
    char *ev[] = {"Order Completed", "Page Viewed"};
    const Cdp__V1__ChangeKind EN = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
    const Cdp__V1__ChangeKind EX = CDP__V1__CHANGE_KIND__CHANGE_KIND_EXITED;
    assert_true(act_trigger_matches(&t, EN, "vip", ev, 2));
    assert_true(act_trigger_matches(&t, EN, "vip", NULL, 0));
    assert_false(act_trigger_matches(&t, EX, "vip", ev, 2));
    assert_false(act_trigger_matches(&t, EN, "other", ev, 2));
    char *names[] = {"Order Completed"};
    t.event_names = names;
    t.n_event_names = 1;
    assert_true(act_trigger_matches(&t, EN, "vip", ev, 2));
    assert_false(act_trigger_matches(&t, EN, "vip", ev + 1, 1));
    /* no events (a backfill or time-based change) never matches a filter */
    assert_false(act_trigger_matches(&t, EN, "vip", NULL, 0));

    Cdp__V1__Destination d = CDP__V1__DESTINATION__INIT;
    Cdp__V1__Trigger t2 = CDP__V1__TRIGGER__INIT;
    t2.on = EX;
    t2.segment_id = "churn";
    Cdp__V1__Trigger *tp[] = {&t, &t2};
    d.triggers = tp;
    d.n_triggers = 2;
    assert_true(act_dest_matches(&d, EX, "churn", NULL, 0));
    assert_true(act_dest_matches(&d, EN, "vip", ev, 1));
    assert_false(act_dest_matches(&d, EN, "churn", NULL, 0));
    d.disabled = 1;
    assert_false(act_dest_matches(&d, EX, "churn", NULL, 0));
}

/* ------------------------------------------------------------------ changes */

static int parse(act_change *c, const char *const *kv, size_t n, char *err)
{
    size_t len[16];
    for (size_t i = 0; i < n; i++)
        len[i] = strlen(kv[i]);
    return act_change_parse(c, (char *const *)kv, len, n, err, ACT_ERR_MAX);
}

static void test_change_parse(void **state)
{
    (void)state;
    act_change c;
    char err[ACT_ERR_MAX];
    const char *ok[] = {"cid", "vip:m1:3", "seg", "vip", "m", "m1", "kind", "exited",
                        "at", "1700000000123", "ev", "[\"A\",\"B\"]", "mid", "msg-1"};
    assert_int_equal(parse(&c, ok, 14, err), 0);
    assert_string_equal(c.cid, "vip:m1:3");
    assert_string_equal(c.seg, "vip");
    assert_string_equal(c.master, "m1");
    assert_int_equal(c.kind, CDP__V1__CHANGE_KIND__CHANGE_KIND_EXITED);
    assert_int_equal(c.at_ms, 1700000000123LL);
    assert_int_equal(c.n_ev, 2);
    assert_string_equal(c.ev[1], "B");
    assert_string_equal(c.mid, "msg-1");
    act_change_clear(&c);

    const char *minimal[] = {"cid", "s:m:1", "seg", "s", "m", "m", "kind", "entered"};
    assert_int_equal(parse(&c, minimal, 8, err), 0);
    assert_int_equal(c.n_ev, 0);
    assert_string_equal(c.mid, "");
    act_change_clear(&c);

    const char *no_cid[] = {"seg", "s", "m", "m", "kind", "entered"};
    assert_int_equal(parse(&c, no_cid, 6, err), -1);
    assert_string_equal(err, "cid: required");
    const char *bad_kind[] = {"cid", "x", "seg", "s", "m", "m", "kind", "joined"};
    assert_int_equal(parse(&c, bad_kind, 8, err), -1);
    assert_non_null(strstr(err, "kind"));
    const char *bad_ev[] = {"cid", "x", "seg", "s", "m", "m", "kind", "entered", "ev", "[1]"};
    assert_int_equal(parse(&c, bad_ev, 10, err), -1);
    assert_non_null(strstr(err, "ev[0]"));
    const char *bad_at[] = {"cid", "x", "seg", "s", "m", "m", "kind", "entered", "at", "soon"};
    assert_int_equal(parse(&c, bad_at, 10, err), -1);
    assert_non_null(strstr(err, "at:"));
}

/* ------------------------------------------------------------------ delivery ids */

static void test_delivery_id(void **state)
{
    (void)state;
    char a[ACT_DELIVERY_ID_MAX], b[ACT_DELIVERY_ID_MAX], c[ACT_DELIVERY_ID_MAX];
    char dest[ACT_ID_MAX + 1];
    assert_int_equal(act_delivery_id("hook-1", "vip:m1:1", a), 0);
    assert_int_equal(act_delivery_id("hook-1", "vip:m1:1", b), 0);
    assert_string_equal(a, b);                       /* deterministic */
    assert_int_equal(strncmp(a, "hook-1:", 7), 0);
    assert_int_equal(strlen(a), 7 + ACT_DELIVERY_HASH_HEX);
    assert_int_equal(act_delivery_id("hook-1", "vip:m1:2", c), 0);
    assert_string_not_equal(a, c);                   /* per change */
    assert_int_equal(act_delivery_id("hook-2", "vip:m1:1", c), 0);
    assert_string_not_equal(a + 7, c + 7);           /* per destination */
    assert_int_equal(act_delivery_id("bad id", "x", c), -1);
    assert_int_equal(act_delivery_dest(a, dest), 0);
    assert_string_equal(dest, "hook-1");
    assert_int_equal(act_delivery_dest("hook-1", dest), -1);
    assert_int_equal(act_delivery_dest("hook-1:abc", dest), -1);
    assert_int_equal(act_delivery_dest(":0123456789abcdef0123456789abcdef", dest), -1);
}

/* ------------------------------------------------------------------ messages */

static void test_msg_json(void **state)
{
    (void)state;
    Cdp__V1__ActivationMessage m = CDP__V1__ACTIVATION_MESSAGE__INIT;
    Cdp__V1__ProfileView pv = CDP__V1__PROFILE_VIEW__INIT;
    Google__Protobuf__Timestamp at;
    Cdp__V1__Identifier id = CDP__V1__IDENTIFIER__INIT;
    Cdp__V1__Identifier *ids[] = {&id};
    Cdp__V1__ProfileView__EventCountsEntry ec = CDP__V1__PROFILE_VIEW__EVENT_COUNTS_ENTRY__INIT;
    Cdp__V1__ProfileView__EventCountsEntry *ecs[] = {&ec};
    char *names[] = {"Order Completed"};
    id.type = "email";
    id.value = "a@b.test";
    ec.key = "Order Completed";
    ec.value = 3;
    pv.master_id = "m1";
    pv.identifiers = ids;
    pv.n_identifiers = 1;
    pv.event_counts = ecs;
    pv.n_event_counts = 1;
    pv.total_events = 3;
    act_ts_set(&at, 1700000000123LL);
    m.delivery_id = "d:x";
    m.destination_id = "d";
    m.channel = "webhook";
    m.kind = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
    m.segment_id = "vip";
    m.master_id = "m1";
    m.occurred_at = &at;
    m.event_names = names;
    m.n_event_names = 1;
    m.profile = &pv;
    m.attempt = 2;
    m.change_id = "vip:m1:1";
    size_t len;
    char *s = act_msg_json(&m, &len);
    assert_non_null(s);
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "deliveryId")), "d:x");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "CHANGE_KIND_ENTERED");
    assert_string_equal(json_string_value(json_object_get(j, "occurredAt")),
                        "2023-11-14T22:13:20.123Z");
    assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "eventNames"), 0)),
                        "Order Completed");
    json_t *p = json_object_get(j, "profile");
    assert_string_equal(json_string_value(json_object_get(p, "masterId")), "m1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "eventCounts"),
                                                          "Order Completed")), "3");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(p, "identifiers"), 0), "value")),
                        "a@b.test");
    assert_true(json_is_object(json_object_get(p, "traits")));
    assert_null(json_object_get(p, "timeline"));
    json_decref(j);
    free(s);
}

static void test_record(void **state)
{
    (void)state;
    act_change c = {0};
    c.cid = "vip:m1:1";
    c.seg = "vip";
    c.master = "m1";
    c.kind = CDP__V1__CHANGE_KIND__CHANGE_KIND_ENTERED;
    char *rec = act_record_new(&c, 1700000000000LL);
    assert_non_null(rec);
    assert_int_equal(act_record_state(rec, strlen(rec)),
                     CDP__V1__DELIVERY_STATE__DELIVERY_STATE_PENDING);
    Cdp__V1__Delivery *d = act_delivery_from_record("d:x", "d", rec, strlen(rec));
    assert_non_null(d);
    assert_string_equal(d->change_id, "vip:m1:1");
    assert_string_equal(d->segment_id, "vip");
    assert_int_equal(d->attempts, 0);
    assert_non_null(d->next_attempt_at);
    assert_null(d->delivered_at);
    assert_int_equal(act_ts_ms(d->created_at), 1700000000000LL);
    act_delivery_free(d);
    free(rec);
    /* what the Lua scripts write: a blocked record with a reason */
    const char *blocked = "{\"s\":5,\"a\":1,\"r\":\"gdpr default\",\"m\":\"m1\",\"g\":\"vip\","
                          "\"k\":1,\"c\":\"vip:m1:1\",\"ca\":1,\"ua\":2}";
    d = act_delivery_from_record("d:x", "d", blocked, strlen(blocked));
    assert_int_equal(d->state, CDP__V1__DELIVERY_STATE__DELIVERY_STATE_BLOCKED);
    assert_string_equal(d->consent_reason, "gdpr default");
    assert_null(d->next_attempt_at);
    act_delivery_free(d);
    assert_null(act_delivery_from_record("d:x", "d", "[]", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds),   cmocka_unit_test(test_backoff_spread),
        cmocka_unit_test(test_http_classify),    cmocka_unit_test(test_validate_defaults),
        cmocka_unit_test(test_validate_errors),  cmocka_unit_test(test_ids),
        cmocka_unit_test(test_trigger_match),    cmocka_unit_test(test_change_parse),
        cmocka_unit_test(test_delivery_id),      cmocka_unit_test(test_msg_json),
        cmocka_unit_test(test_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
