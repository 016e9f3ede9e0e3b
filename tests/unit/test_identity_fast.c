/* Unit tests for services/identity/idn_fast: which events are in the common
 * case, and that the plan the fast path answers with is the one the planner
 * would compute, over randomized rules and profiles (including profiles
 * already above a lowered limit). Also shows why unconfirmed (pending)
 * claims are excluded: the planner can drop such an identifier. And how
 * the fast path reads its HMGET (merged_into, pm, e:<message>...): a
 * pipeline request (deliver_merges) leaves it when merges are pending
 * delivery, any other request does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idn_fast.h"
#include "idn_rules.h"
#include "idn_store_int.h"

#define RANDOM_ROUNDS 2000
#define MAX_EVENT_IDS 6
#define MAX_EXTRA_MEMBERS 8
#define VALUE_LEN 16

static const char *const k_types[] = {"user_id", "email", "phone", "device_id", "cookie_id",
                                      "anonymous_id", "crm_id"};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

/* ------------------------------------------------------------ candidates */

static void test_candidate(void **state) {
    (void)state;
    const char *m = "m018c2e4a1b2f0123456789", *o = "m018c2e4a1b2f0000000000";
    const char *same[3] = {m, m, m};
    unsigned char none[3] = {0, 0, 0}, one[3] = {0, 1, 0};
    assert_int_equal(idn_fast_candidate(same, none, 3), 1);
    assert_int_equal(idn_fast_candidate(same, one, 3), 0); /* a pending claim */
    const char *mixed[3] = {m, o, m};
    assert_int_equal(idn_fast_candidate(mixed, none, 3), 0);
    const char *unmapped[3] = {m, "", m};
    assert_int_equal(idn_fast_candidate(unmapped, none, 3), 0);
    const char *first_unmapped[2] = {"", ""};
    assert_int_equal(idn_fast_candidate(first_unmapped, none, 2), 0);
    assert_int_equal(idn_fast_candidate(same, none, 0), 0);
    assert_int_equal(idn_fast_candidate(same, none, 1), 1);
}

static void test_same_idents(void **state) {
    (void)state;
    const idn_ident a[] = {{"user_id", "u1"}, {"email", "a@x.io"}};
    const idn_ident b[] = {{"user_id", "u1"}, {"email", "a@x.io"}};
    const idn_ident swapped[] = {{"email", "a@x.io"}, {"user_id", "u1"}};
    const idn_ident other[] = {{"user_id", "u1"}, {"email", "b@x.io"}};
    assert_int_equal(idn_fast_same_idents(a, 2, b, 2), 1);
    assert_int_equal(idn_fast_same_idents(a, 2, swapped, 2), 0); /* order ranks */
    assert_int_equal(idn_fast_same_idents(a, 2, other, 2), 0);
    assert_int_equal(idn_fast_same_idents(a, 1, b, 2), 0);
}

/* ------------------------------------------------- the planner agrees */

/* A small deterministic generator (xorshift), so failures reproduce. */
static uint32_t next_rand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

typedef struct {
    idn_ident ids[MAX_EVENT_IDS + MAX_EXTRA_MEMBERS];
    char vals[MAX_EVENT_IDS + MAX_EXTRA_MEMBERS][VALUE_LEN];
    size_t n;
} ident_set;

/* Adds a (type, value) not yet in s. */
static void add_ident(ident_set *s, const char *type, uint32_t v) {
    char val[VALUE_LEN];
    snprintf(val, sizeof val, "v%u", (unsigned)v);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i].type, type) == 0 && strcmp(s->ids[i].value, val) == 0)
            return;
    snprintf(s->vals[s->n], VALUE_LEN, "%s", val);
    s->ids[s->n] = (idn_ident){type, s->vals[s->n]};
    s->n++;
}

/* Random rules: a limit of 1..3 on a few types, sometimes none. */
static void random_rules(idn_rules *r, uint32_t *seed) {
    char limits[256] = "";
    size_t len = 0;
    for (size_t t = 0; t < N_TYPES; t++) {
        if (next_rand(seed) % 3 != 0)
            continue;
        len += (size_t)snprintf(limits + len, sizeof limits - len, "%s%s=%u", len ? "," : "",
                                k_types[t], 1 + next_rand(seed) % 3);
    }
    const char *why = NULL;
    assert_int_equal(idn_rules_init(r, NULL, len ? limits : NULL, &why), 0);
}

/* Every event identifier maps to master 0, whose set holds them all plus
 * random others (possibly more values of a limited type than its limit, as
 * after the limit was lowered): the planner keeps all, merges nothing, and
 * master 0 survives, which is idn_fast_plan. */
static void test_fast_plan_matches_planner(void **state) {
    (void)state;
    uint32_t seed = 0x9e3779b9u;
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        idn_rules rules;
        random_rules(&rules, &seed);
        ident_set event = {0}, master = {0};
        size_t n_event = 1 + next_rand(&seed) % MAX_EVENT_IDS;
        for (size_t i = 0; i < n_event; i++)
            add_ident(&event, k_types[next_rand(&seed) % N_TYPES], next_rand(&seed) % 5);
        for (size_t i = 0; i < event.n; i++)
            add_ident(&master, event.ids[i].type, (uint32_t)atoi(event.ids[i].value + 1));
        size_t extra = next_rand(&seed) % MAX_EXTRA_MEMBERS;
        for (size_t i = 0; i < extra; i++)
            add_ident(&master, k_types[next_rand(&seed) % N_TYPES], next_rand(&seed) % 9);
        int owner[MAX_EVENT_IDS];
        for (size_t i = 0; i < event.n; i++)
            owner[i] = 0;
        idn_master_view view = {"m018c2e4a1b2f0123456789", master.ids, master.n};
        idn_plan_input in = {.idents = event.ids, .n_idents = event.n, .owner = owner,
                             .masters = &view, .n_masters = 1};
        idn_plan planned, fast;
        assert_int_equal(idn_plan_compute(&rules, &in, &planned), 0);
        idn_fast_plan(event.n, &fast);
        assert_int_equal(planned.n_kept, fast.n_kept);
        assert_memory_equal(planned.keep, fast.keep, event.n);
        assert_int_equal(planned.survivor, fast.survivor);
        assert_int_equal(planned.n_merge, fast.n_merge);
        assert_int_equal(fast.n_kept, event.n);
    }
}

/* A key that names the master while its set lacks the identifier (a claim
 * not yet confirmed) is not the common case: here the planner drops it. */
static void test_unconfirmed_claim_can_be_dropped(void **state) {
    (void)state;
    idn_rules rules;
    const char *why = NULL;
    assert_int_equal(idn_rules_init(&rules, NULL, NULL, &why), 0); /* user_id=1 */
    const idn_ident set[] = {{"user_id", "u1"}, {"email", "a@x.io"}};
    const idn_ident event[] = {{"user_id", "u2"}, {"email", "a@x.io"}};
    int owner[2] = {0, 0};
    idn_master_view view = {"m018c2e4a1b2f0123456789", set, 2};
    idn_plan_input in = {.idents = event, .n_idents = 2, .owner = owner, .masters = &view,
                         .n_masters = 1};
    idn_plan planned;
    assert_int_equal(idn_plan_compute(&rules, &in, &planned), 0);
    assert_int_equal(planned.keep[0], 0);
    assert_string_equal(planned.reason[0], "limit user_id=1 would be exceeded");
}

/* ------------------------------------------------------- verify replies */

/* An HMGET reply of n fields; set[i] non-NULL gives field i a value. */
typedef struct {
    redisReply arr;
    redisReply el[4];
    redisReply *ptr[4];
} hmget_reply;

static void hmget_init(hmget_reply *r, size_t n, const char *const *set) {
    memset(r, 0, sizeof *r);
    r->arr.type = REDIS_REPLY_ARRAY;
    r->arr.elements = n;
    r->arr.element = r->ptr;
    for (size_t i = 0; i < n; i++) {
        r->ptr[i] = &r->el[i];
        r->el[i].type = set[i] ? REDIS_REPLY_STRING : REDIS_REPLY_NIL;
        r->el[i].str = (char *)set[i];
        r->el[i].len = set[i] ? strlen(set[i]) : 0;
    }
}

static void test_verify_pending(void **state) {
    (void)state;
    hmget_reply r;
    const char *pending[3] = {NULL, "1", NULL};
    hmget_init(&r, 3, pending);
    assert_int_equal(idn__verify_root(&r.arr), 1);
    assert_int_equal(idn__verify_pending(&r.arr), 1);
    assert_int_equal(idn__verify_flag(&r.arr, 0), 0);
    assert_int_equal(idn__verify_must_deliver(&r.arr, "m1", 1), 1);
    assert_int_equal(idn__verify_must_deliver(&r.arr, "m1", 0), 0); /* direct call */
    assert_int_equal(idn__verify_must_deliver(&r.arr, "", 1), 0);   /* no message id */
    assert_int_equal(idn__verify_must_deliver(&r.arr, NULL, 1), 0);
    const char *clean[3] = {NULL, NULL, NULL};
    hmget_init(&r, 3, clean);
    assert_int_equal(idn__verify_pending(&r.arr), 0);
    assert_int_equal(idn__verify_must_deliver(&r.arr, "m1", 1), 0);
    const char *flagged[3] = {NULL, NULL, "1"};
    hmget_init(&r, 3, flagged);
    assert_int_equal(idn__verify_flag(&r.arr, 0), 1);
    assert_int_equal(idn__verify_pending(&r.arr), 0);
    const char *merged[2] = {"m018c2e4a1b2f0000000000", NULL};
    hmget_init(&r, 2, merged);
    assert_int_equal(idn__verify_root(&r.arr), 0);
    hmget_init(&r, 1, clean); /* too short: take the full path */
    assert_int_equal(idn__verify_pending(&r.arr), 1);
    assert_int_equal(idn__verify_flag(&r.arr, 0), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_candidate),
        cmocka_unit_test(test_same_idents),
        cmocka_unit_test(test_fast_plan_matches_planner),
        cmocka_unit_test(test_unconfirmed_claim_can_be_dropped),
        cmocka_unit_test(test_verify_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
