/* Unit tests for ing_touch: which entries go to consent, and the
 * ProfileTouch per master id that segmentation re-evaluates with (count
 * names, trait names from identify events only, channels, revenue, merges,
 * the last message id). Batches are built by hand; no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ing_touch.h"

typedef struct {
    Cdp__V1__Event ev;
    Cdp__V1__ResolveResponse rr;
    Google__Protobuf__Struct props, traits, ctx, ctx_traits;
    Google__Protobuf__Struct__FieldsEntry fe[4], *fep[4];
    Google__Protobuf__Value vals[4];
    Cdp__V1__Merge merge, *mergep[1];
    Cdp__V1__ConversationMessage msg;
} fixture_event;

static void fx_init(fixture_event *f, Cdp__V1__EventType type, const char *name, const char *mid,
                    const char *master)
{
    memset(f, 0, sizeof *f);
    cdp__v1__event__init(&f->ev);
    cdp__v1__resolve_response__init(&f->rr);
    f->ev.type = type;
    f->ev.event = (char *)name;
    f->ev.message_id = (char *)mid;
    f->rr.master_id = (char *)master;
}

/* s gets one field `key` holding value v. */
static void fx_struct1(Google__Protobuf__Struct *s, Google__Protobuf__Struct__FieldsEntry *fe,
                       Google__Protobuf__Struct__FieldsEntry **fep, Google__Protobuf__Value *v,
                       const char *key)
{
    google__protobuf__struct__init(s);
    google__protobuf__struct__fields_entry__init(fe);
    fe->key = (char *)key;
    fe->value = v;
    *fep = fe;
    s->fields = fep;
    s->n_fields = 1;
}

static void batch_of(ing_batch *b, ing_entry *e, fixture_event *f, size_t n)
{
    memset(b, 0, sizeof *b);
    memset(e, 0, n * sizeof *e);
    for (size_t i = 0; i < n; i++) {
        e[i].ev = &f[i].ev;
        e[i].resolved = &f[i].rr;
        e[i].state = ING_ENTRY_APPLIED;
    }
    b->e = e;
    b->n = b->cap = n;
}

static int has(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

static void test_consent_entries_only_named_track_events(void **state)
{
    (void)state;
    fixture_event f[4];
    fx_init(&f[0], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "Consent Updated", "m0", "A");
    fx_init(&f[1], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "Order Completed", "m1", "A");
    fx_init(&f[2], CDP__V1__EVENT_TYPE__EVENT_TYPE_PAGE, "Consent Updated", "m2", "A");
    fx_init(&f[3], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "consent updated", "m3", "A");
    ing_batch b;
    ing_entry e[4];
    batch_of(&b, e, f, 4);
    size_t idx[4] = {0, 1, 2, 3}, out[4];
    assert_int_equal(ing_consent_entries(&b, idx, 4, out), 1);
    assert_int_equal(out[0], 0);
    /* Events carrying merges go too, whoever survived. */
    cdp__v1__merge__init(&f[1].merge);
    f[1].merge.survivor_id = "A";
    f[1].merge.loser_id = "L";
    f[1].mergep[0] = &f[1].merge;
    f[1].rr.merges = f[1].mergep;
    f[1].rr.n_merges = 1;
    cdp__v1__merge__init(&f[2].merge);
    f[2].merge.survivor_id = "Z";
    f[2].merge.loser_id = "A";
    f[2].mergep[0] = &f[2].merge;
    f[2].rr.merges = f[2].mergep;
    f[2].rr.n_merges = 1;
    assert_int_equal(ing_consent_entries(&b, idx, 4, out), 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 2);
}

static void test_touch_groups_by_master_and_dedupes(void **state)
{
    (void)state;
    fixture_event f[4];
    fx_init(&f[0], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "Order Completed", "m0", "A");
    fx_init(&f[1], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "Order Completed", "m1", "A");
    fx_init(&f[2], CDP__V1__EVENT_TYPE__EVENT_TYPE_PAGE, "", "m2", "B");
    fx_init(&f[3], CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE, "", "m3", "A");
    f[0].ev.channel = "web";
    f[1].ev.channel = "web";
    cdp__v1__conversation_message__init(&f[3].msg);
    f[3].msg.channel = "whatsapp";
    f[3].ev.message = &f[3].msg;
    f[3].ev.channel = "sms"; /* the message's channel wins */
    /* revenue on the second order */
    google__protobuf__value__init(&f[1].vals[0]);
    f[1].vals[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    f[1].vals[0].number_value = 12.5;
    fx_struct1(&f[1].props, &f[1].fe[0], &f[1].fep[0], &f[1].vals[0], "revenue");
    f[1].ev.properties = &f[1].props;
    ing_batch b;
    ing_entry e[4];
    batch_of(&b, e, f, 4);
    size_t idx[4] = {0, 1, 2, 3};
    ing_touch_build tb;
    assert_int_equal(ing_touch_build_make(&tb, &b, idx, 4), 0);
    assert_int_equal(tb.req.n_profiles, 2);
    Cdp__V1__ProfileTouch *a = tb.req.profiles[0], *bb = tb.req.profiles[1];
    assert_string_equal(a->master_id, "A");
    assert_int_equal(a->n_events, 2);
    assert_true(has(a->events, a->n_events, "Order Completed"));
    assert_true(has(a->events, a->n_events, "message"));
    assert_int_equal(a->n_channels, 2);
    assert_true(has(a->channels, a->n_channels, "web"));
    assert_true(has(a->channels, a->n_channels, "whatsapp"));
    assert_false(has(a->channels, a->n_channels, "sms"));
    assert_true(a->revenue);
    assert_string_equal(a->message_id, "m3");
    assert_string_equal(bb->master_id, "B");
    assert_int_equal(bb->n_events, 1);
    assert_string_equal(bb->events[0], "page");
    assert_false(bb->revenue);
    assert_int_equal(bb->n_channels, 0);
    ing_touch_build_free(&tb);
}

static void test_touch_traits_from_identify_only_and_merges(void **state)
{
    (void)state;
    fixture_event f[2];
    fx_init(&f[0], CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY, "", "m0", "S");
    fx_init(&f[1], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "Signed Up", "m1", "S");
    google__protobuf__value__init(&f[0].vals[0]);
    f[0].vals[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    f[0].vals[0].string_value = "pro";
    fx_struct1(&f[0].traits, &f[0].fe[0], &f[0].fep[0], &f[0].vals[0], "plan");
    f[0].ev.traits = &f[0].traits;
    /* context.traits.country */
    google__protobuf__value__init(&f[0].vals[1]);
    f[0].vals[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    f[0].vals[1].string_value = "DE";
    fx_struct1(&f[0].ctx_traits, &f[0].fe[1], &f[0].fep[1], &f[0].vals[1], "country");
    google__protobuf__value__init(&f[0].vals[2]);
    f[0].vals[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    f[0].vals[2].struct_value = &f[0].ctx_traits;
    fx_struct1(&f[0].ctx, &f[0].fe[2], &f[0].fep[2], &f[0].vals[2], "traits");
    f[0].ev.context = &f[0].ctx;
    /* a track event's traits are not written by profile */
    google__protobuf__value__init(&f[1].vals[0]);
    f[1].vals[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    f[1].vals[0].string_value = "x";
    fx_struct1(&f[1].traits, &f[1].fe[0], &f[1].fep[0], &f[1].vals[0], "ignored");
    f[1].ev.traits = &f[1].traits;
    /* identity merged L into S, and S into T elsewhere (not this survivor) */
    cdp__v1__merge__init(&f[1].merge);
    f[1].merge.survivor_id = "S";
    f[1].merge.loser_id = "L";
    f[1].mergep[0] = &f[1].merge;
    f[1].rr.merges = f[1].mergep;
    f[1].rr.n_merges = 1;
    ing_batch b;
    ing_entry e[2];
    batch_of(&b, e, f, 2);
    size_t idx[2] = {0, 1};
    ing_touch_build tb;
    assert_int_equal(ing_touch_build_make(&tb, &b, idx, 2), 0);
    assert_int_equal(tb.req.n_profiles, 1);
    Cdp__V1__ProfileTouch *t = tb.req.profiles[0];
    assert_int_equal(t->n_traits, 2);
    assert_true(has(t->traits, t->n_traits, "plan"));
    assert_true(has(t->traits, t->n_traits, "country"));
    assert_false(has(t->traits, t->n_traits, "ignored"));
    assert_int_equal(t->n_merged_ids, 1);
    assert_string_equal(t->merged_ids[0], "L");
    assert_true(has(t->events, t->n_events, "identify"));
    assert_true(has(t->events, t->n_events, "Signed Up"));
    ing_touch_build_free(&tb);
}

static void test_touch_skips_unresolved(void **state)
{
    (void)state;
    fixture_event f[1];
    fx_init(&f[0], CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK, "X", "m0", "");
    ing_batch b;
    ing_entry e[1];
    batch_of(&b, e, f, 1);
    size_t idx[1] = {0};
    ing_touch_build tb;
    assert_int_equal(ing_touch_build_make(&tb, &b, idx, 1), 0);
    assert_int_equal(tb.req.n_profiles, 0);
    ing_touch_build_free(&tb);
}

static void test_reset_sends_applied_entries_back(void **state)
{
    (void)state;
    ing_batch b;
    ing_batch_init(&b);
    ing_entry e[3];
    memset(e, 0, sizeof e);
    e[0].state = ING_ENTRY_APPLIED;
    e[1].state = ING_ENTRY_DONE;
    e[2].state = ING_ENTRY_FAILED;
    b.e = e;
    b.n = b.cap = 3;
    ing_batch_reset(&b);
    assert_int_equal(e[0].state, ING_ENTRY_LIVE);
    assert_int_equal(e[1].state, ING_ENTRY_DONE);
    assert_int_equal(e[2].state, ING_ENTRY_LIVE);
    size_t idx[3];
    assert_int_equal(ing_batch_in_state(&b, ING_ENTRY_LIVE, idx), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consent_entries_only_named_track_events),
        cmocka_unit_test(test_touch_groups_by_master_and_dedupes),
        cmocka_unit_test(test_touch_traits_from_identify_only_and_merges),
        cmocka_unit_test(test_touch_skips_unresolved),
        cmocka_unit_test(test_reset_sends_applied_entries_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
