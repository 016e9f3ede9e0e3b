/* Unit tests for services/identity/idn_rules: configuration parsing, priority
 * order and the resolution planner (drops, merges, survivor choice). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "idn_rules.h"

/* ------------------------------------------------------------- fixtures */

static idn_rules default_rules(void) {
    idn_rules r;
    const char *why = NULL;
    assert_int_equal(idn_rules_init(&r, NULL, NULL, &why), 0);
    return r;
}

static idn_plan plan_of(const idn_rules *r, const idn_ident *ids, size_t n, const int *owner,
                        const idn_master_view *masters, size_t n_masters) {
    idn_plan_input in = {.idents = ids, .n_idents = n, .owner = owner, .masters = masters,
                         .n_masters = n_masters};
    idn_plan plan;
    assert_int_equal(idn_plan_compute(r, &in, &plan), 0);
    return plan;
}

/* Profiles used across tests: A (oldest) has user_id u1; B has user_id u2. */
static const idn_ident k_a_ids[] = {{"user_id", "u1"}, {"email", "a@x.io"}, {"cookie_id", "ca"}};
static const idn_ident k_b_ids[] = {{"user_id", "u2"}, {"email", "b@x.io"}};
static const idn_ident k_c_ids[] = {{"cookie_id", "cc"}, {"phone", "+15550000001"}};
static const idn_ident k_d_ids[] = {{"device_id", "dd"}};

/* ---------------------------------------------------------------- config */

static void test_config_defaults(void **state) {
    (void)state;
    idn_rules r = default_rules();
    assert_int_equal(r.n_priority, 6);
    assert_string_equal(r.priority[0], "user_id");
    assert_string_equal(r.priority[5], "anonymous_id");
    assert_int_equal(idn_rules_limit(&r, "user_id"), 1);
    assert_int_equal(idn_rules_limit(&r, "email"), IDN_UNLIMITED);
}

static void test_config_limits_and_errors(void **state) {
    (void)state;
    idn_rules r;
    const char *why = NULL;
    assert_int_equal(idn_rules_init(&r, NULL, " email=5 , loyalty_id=2", &why), 0);
    assert_int_equal(idn_rules_limit(&r, "user_id"), 1); /* default kept */
    assert_int_equal(idn_rules_limit(&r, "email"), 5);
    assert_int_equal(idn_rules_limit(&r, "loyalty_id"), 2);
    assert_int_equal(idn_rules_init(&r, NULL, "user_id=unlimited", &why), 0);
    assert_int_equal(idn_rules_limit(&r, "user_id"), IDN_UNLIMITED);

    const char *bad_limits[] = {"email", "email=0", "email=-1", "email=x", "Email=2",
                                "email=100001", "email=5x"};
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
        why = NULL;
        assert_int_equal(idn_rules_init(&r, NULL, bad_limits[i], &why), -1);
        assert_non_null(why);
    }
    assert_int_equal(idn_rules_init(&r, "user_id,email,user_id", NULL, &why), -1);
    assert_int_equal(idn_rules_init(&r, "user_id,E mail", NULL, &why), -1);
}

/* ------------------------------------------------------------- priority */

static void test_priority_ordering(void **state) {
    (void)state;
    idn_rules r = default_rules();
    assert_true(idn_rules_compare(&r, "user_id", 5, "email", 0) < 0);
    assert_true(idn_rules_compare(&r, "anonymous_id", 0, "cookie_id", 3) > 0);
    assert_true(idn_rules_compare(&r, "anonymous_id", 0, "crm_id", 0) < 0); /* custom last */
    assert_true(idn_rules_compare(&r, "a_custom", 9, "b_custom", 0) < 0);   /* by name */
    assert_true(idn_rules_compare(&r, "email", 1, "email", 2) < 0);         /* by position */
    assert_int_equal(idn_rules_compare(&r, "email", 1, "email", 1), 0);

    const char *why;
    assert_int_equal(idn_rules_init(&r, "crm_id, phone", NULL, &why), 0);
    assert_true(idn_rules_compare(&r, "crm_id", 0, "phone", 0) < 0);
    assert_true(idn_rules_compare(&r, "phone", 0, "user_id", 0) < 0); /* unlisted now */
}

/* A configured priority changes which identifier a conflict drops. */
static void test_priority_decides_drop(void **state) {
    (void)state;
    idn_rules r;
    const char *why;
    assert_int_equal(idn_rules_init(&r, "email,user_id", NULL, &why), 0);
    /* event: user_id u2 (new) + email of A (user_id u1) */
    idn_ident ev[] = {{"user_id", "u2"}, {"email", "a@x.io"}};
    int owner[] = {-1, 0};
    idn_master_view m[] = {{"m0001", k_a_ids, 3}};
    idn_plan p = plan_of(&r, ev, 2, owner, m, 1);
    /* email outranks user_id now: the user_id is dropped and A is resolved */
    assert_false(p.keep[0]);
    assert_true(p.keep[1]);
    assert_string_equal(p.reason[0], "limit user_id=1 would be exceeded");
    assert_int_equal(p.survivor, 0);
    assert_int_equal(p.n_merge, 0);
}

/* -------------------------------------------------------------- planner */

static void test_no_conflict_new_person(void **state) {
    (void)state;
    idn_rules r = default_rules();
    idn_ident ev[] = {{"user_id", "u9"}, {"email", "n@x.io"}, {"anonymous_id", "an"}};
    int owner[] = {-1, -1, -1};
    idn_plan p = plan_of(&r, ev, 3, owner, NULL, 0);
    assert_int_equal(p.n_kept, 3);
    assert_int_equal(p.survivor, -1);
    assert_int_equal(p.n_merge, 0);
}

static void test_no_conflict_existing(void **state) {
    (void)state;
    idn_rules r = default_rules();
    /* known email of A plus a new phone: resolves to A, nothing dropped */
    idn_ident ev[] = {{"email", "a@x.io"}, {"phone", "+15550000009"}};
    int owner[] = {0, -1};
    idn_master_view m[] = {{"m0001", k_a_ids, 3}};
    idn_plan p = plan_of(&r, ev, 2, owner, m, 1);
    assert_int_equal(p.n_kept, 2);
    assert_int_equal(p.survivor, 0);
    assert_int_equal(p.n_merge, 0);
}

static void test_simple_merge_oldest_survives(void **state) {
    (void)state;
    idn_rules r = default_rules();
    /* A has user_id; C has none: an event linking them merges C into the older */
    idn_ident ev[] = {{"cookie_id", "cc"}, {"email", "a@x.io"}};
    int owner[] = {0, 1};
    idn_master_view m[] = {{"m0009", k_c_ids, 2}, {"m0001", k_a_ids, 3}};
    idn_plan p = plan_of(&r, ev, 2, owner, m, 2);
    assert_int_equal(p.n_kept, 2);
    assert_int_equal(p.survivor, 1); /* "m0001" is older although listed second */
    assert_int_equal(p.n_merge, 1);
    assert_int_equal(p.merge[0], 0);
}

static void test_user_id_conflict_drops_lower_priority(void **state) {
    (void)state;
    idn_rules r = default_rules();
    /* user_id u2 is new; the email belongs to A whose user_id is u1 */
    idn_ident ev[] = {{"email", "a@x.io"}, {"user_id", "u2"}};
    int owner[] = {0, -1};
    idn_master_view m[] = {{"m0001", k_a_ids, 3}};
    idn_plan p = plan_of(&r, ev, 2, owner, m, 1);
    assert_false(p.keep[0]);
    assert_string_equal(p.reason[0], "limit user_id=1 would be exceeded");
    assert_true(p.keep[1]);
    assert_int_equal(p.n_kept, 1);
    assert_int_equal(p.survivor, -1); /* u2's own, new profile */
    assert_int_equal(p.n_merge, 0);

    /* same with u2 existing as B: resolves to B, A is not merged */
    int owner2[] = {0, 1};
    idn_master_view m2[] = {{"m0001", k_a_ids, 3}, {"m0002", k_b_ids, 2}};
    p = plan_of(&r, ev, 2, owner2, m2, 2);
    assert_false(p.keep[0]);
    assert_int_equal(p.survivor, 1);
    assert_int_equal(p.n_merge, 0);
}

static void test_two_user_ids_in_one_event(void **state) {
    (void)state;
    idn_rules r = default_rules();
    /* a new identifier alone exceeds the limit: the later user_id goes */
    idn_ident ev[] = {{"user_id", "u7"}, {"user_id", "u8"}, {"email", "z@x.io"}};
    int owner[] = {-1, -1, -1};
    idn_plan p = plan_of(&r, ev, 3, owner, NULL, 0);
    assert_true(p.keep[0]);
    assert_false(p.keep[1]);
    assert_true(p.keep[2]);
    assert_int_equal(p.survivor, -1);
}

static void test_new_identifier_exceeds_limit_of_existing(void **state) {
    (void)state;
    idn_rules r;
    const char *why;
    assert_int_equal(idn_rules_init(&r, NULL, "email=1", &why), 0);
    /* A already has an email; the event's user_id matches A and brings a
     * second email, which would exceed email=1 and is dropped */
    idn_ident ev[] = {{"user_id", "u1"}, {"email", "new@x.io"}};
    int owner[] = {0, -1};
    idn_master_view m[] = {{"m0001", k_a_ids, 3}};
    idn_plan p = plan_of(&r, ev, 2, owner, m, 1);
    assert_true(p.keep[0]);
    assert_false(p.keep[1]);
    assert_string_equal(p.reason[1], "limit email=1 would be exceeded");
    assert_int_equal(p.survivor, 0);
}

static void test_three_way_merge(void **state) {
    (void)state;
    idn_rules r = default_rules();
    /* A (user_id u1), C (cookie, phone) and D (device) all linked by one event */
    idn_ident ev[] = {{"phone", "+15550000001"}, {"device_id", "dd"}, {"user_id", "u1"}};
    int owner[] = {1, 2, 0};
    idn_master_view m[] = {{"m0003", k_a_ids, 3}, {"m0002", k_c_ids, 2}, {"m0005", k_d_ids, 1}};
    idn_plan p = plan_of(&r, ev, 3, owner, m, 3);
    assert_int_equal(p.n_kept, 3);
    assert_int_equal(p.survivor, 1); /* m0002 is the oldest */
    assert_int_equal(p.n_merge, 2);
    assert_int_equal(p.merge[0], 0); /* m0003 before m0005 */
    assert_int_equal(p.merge[1], 2);
}

static void test_three_way_with_conflict(void **state) {
    (void)state;
    idn_rules r = default_rules();
    /* A (u1) and B (u2) cannot merge; C can join whichever the event keeps */
    idn_ident ev[] = {{"user_id", "u2"}, {"cookie_id", "cc"}, {"email", "a@x.io"}};
    int owner[] = {1, 2, 0};
    idn_master_view m[] = {{"m0001", k_a_ids, 3}, {"m0002", k_b_ids, 2}, {"m0000", k_c_ids, 2}};
    idn_plan p = plan_of(&r, ev, 3, owner, m, 3);
    assert_true(p.keep[0]);
    assert_true(p.keep[1]);
    assert_false(p.keep[2]); /* email (links A) ranks below user_id */
    assert_int_equal(p.survivor, 2); /* C's m0000 is older than B */
    assert_int_equal(p.n_merge, 1);
    assert_int_equal(p.merge[0], 1);
}

static void test_custom_type_limit(void **state) {
    (void)state;
    idn_rules r;
    const char *why;
    assert_int_equal(idn_rules_init(&r, NULL, "loyalty_id=1", &why), 0);
    static const idn_ident e_ids[] = {{"loyalty_id", "L1"}, {"email", "e@x.io"}};
    static const idn_ident f_ids[] = {{"loyalty_id", "L2"}, {"cookie_id", "cf"}};
    /* cookie links F (L2), email links E (L1): custom types rank last but the
     * cookie ranks below email, so the cookie is dropped */
    idn_ident ev[] = {{"email", "e@x.io"}, {"cookie_id", "cf"}};
    int owner[] = {0, 1};
    idn_master_view m[] = {{"m0001", e_ids, 2}, {"m0002", f_ids, 2}};
    idn_plan p = plan_of(&r, ev, 2, owner, m, 2);
    assert_true(p.keep[0]);
    assert_false(p.keep[1]);
    assert_string_equal(p.reason[1], "limit loyalty_id=1 would be exceeded");
    assert_int_equal(p.survivor, 0);
    assert_int_equal(p.n_merge, 0);

    /* the event brings its own second loyalty_id for E: that value goes */
    idn_ident ev2[] = {{"email", "e@x.io"}, {"loyalty_id", "L9"}};
    int owner2[] = {0, -1};
    p = plan_of(&r, ev2, 2, owner2, m, 1);
    assert_true(p.keep[0]);
    assert_false(p.keep[1]);
}

static void test_grandfathered_profile_stays_resolvable(void **state) {
    (void)state;
    idn_rules r;
    const char *why;
    /* limit lowered after A collected two emails */
    assert_int_equal(idn_rules_init(&r, NULL, "email=1", &why), 0);
    static const idn_ident a2[] = {{"email", "p@x.io"}, {"email", "q@x.io"}};
    idn_ident ev[] = {{"email", "q@x.io"}};
    int owner[] = {0};
    idn_master_view m[] = {{"m0001", a2, 2}};
    idn_plan p = plan_of(&r, ev, 1, owner, m, 1);
    assert_int_equal(p.n_kept, 1);
    assert_int_equal(p.survivor, 0);
}

static void test_malformed_input(void **state) {
    (void)state;
    idn_rules r = default_rules();
    idn_ident ev[] = {{"email", "q@x.io"}};
    int owner[] = {3};
    idn_plan_input in = {.idents = ev, .n_idents = 1, .owner = owner, .masters = NULL,
                         .n_masters = 0};
    idn_plan plan;
    assert_int_equal(idn_plan_compute(&r, &in, &plan), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_limits_and_errors),
        cmocka_unit_test(test_priority_ordering),
        cmocka_unit_test(test_priority_decides_drop),
        cmocka_unit_test(test_no_conflict_new_person),
        cmocka_unit_test(test_no_conflict_existing),
        cmocka_unit_test(test_simple_merge_oldest_survives),
        cmocka_unit_test(test_user_id_conflict_drops_lower_priority),
        cmocka_unit_test(test_two_user_ids_in_one_event),
        cmocka_unit_test(test_new_identifier_exceeds_limit_of_existing),
        cmocka_unit_test(test_three_way_merge),
        cmocka_unit_test(test_three_way_with_conflict),
        cmocka_unit_test(test_custom_type_limit),
        cmocka_unit_test(test_grandfathered_profile_stays_resolvable),
        cmocka_unit_test(test_malformed_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
