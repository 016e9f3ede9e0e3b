/* Unit tests for the identity service's pure helpers: key layout and hash
 * tags (idn_keys), master ids, merge records, batch grouping (idn_batch) and
 * request preparation (idn_request). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cdp_redis.h"
#include "idn_batch.h"
#include "idn_keys.h"
#include "idn_request.h"

/* ------------------------------------------------------------------ keys */

static void test_keys_and_slots(void **state) {
    (void)state;
    char *ik = idn_key_ident("email", "a@x.io");
    char *im = idn_key_ident_of_member("email:a@x.io");
    assert_string_equal(ik, "cdp:idn:{i:email:a@x.io}");
    assert_string_equal(ik, im);
    const char *id = "m018c2e4a1b2f0123456789";
    char *k[5] = {idn_key_master(id), idn_key_master_ids(id), idn_key_master_merges(id),
                  idn_key_master_evm(id, "msg-1"), idn_key_master_pm(id)};
    assert_string_equal(k[0], "cdp:idn:{m:m018c2e4a1b2f0123456789}");
    assert_string_equal(k[3], "cdp:idn:{m:m018c2e4a1b2f0123456789}:evm:msg-1");
    assert_string_equal(k[4], "cdp:idn:{m:m018c2e4a1b2f0123456789}:pm");
    /* every key of a master shares one slot, so one script may touch them
     * (idn_deliver moves pending merges into a message's record atomically) */
    unsigned slot = cdp_redis_key_slot(k[0], strlen(k[0]));
    for (int i = 1; i < 5; i++)
        assert_int_equal(cdp_redis_key_slot(k[i], strlen(k[i])), slot);
    for (int i = 0; i < 5; i++)
        free(k[i]);
    free(ik);
    free(im);
}

static void test_ident_values(void **state) {
    (void)state;
    const char *id = "m018c2e4a1b2f0123456789";
    char out[IDN_MASTER_ID_BUFSZ], pend[IDN_IDENT_VALUE_BUFSZ];
    int pending = -1;
    assert_int_equal(idn_ident_value_parse(id, strlen(id), out, &pending), 0);
    assert_string_equal(out, id);
    assert_int_equal(pending, 0);
    idn_ident_value_pending(id, pend);
    assert_string_equal(pend, "m018c2e4a1b2f0123456789~");
    assert_int_equal(idn_ident_value_parse(pend, strlen(pend), out, &pending), 0);
    assert_string_equal(out, id);
    assert_int_equal(pending, 1);
    const char *bad[] = {"", "m018c2e4a1b2f012345678", "m018c2e4a1b2f0123456789~~",
                         "m018c2e4a1b2f0123456789x", "x018c2e4a1b2f0123456789",
                         "m018c2e4a1b2f012345678Z~"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(idn_ident_value_parse(bad[i], strlen(bad[i]), out, &pending), -1);
    char *f = idn_field_evm("msg-1");
    assert_string_equal(f, "e:msg-1");
    free(f);
    char *k = idn_key_master(id);
    assert_string_equal(k, "cdp:idn:{m:m018c2e4a1b2f0123456789}");
    free(k);
}

static void test_member_split(void **state) {
    (void)state;
    char *m = idn_member("crm_id", "a:b:c");
    assert_string_equal(m, "crm_id:a:b:c");
    assert_int_equal(idn_member_split(m, strlen(m)), 6); /* types have no ':' */
    assert_int_equal(idn_member_split(":x", 2), -1);
    assert_int_equal(idn_member_split("nocolon", 7), -1);
    free(m);
}

static void test_master_ids(void **state) {
    (void)state;
    const unsigned char rnd[IDN_MASTER_RANDOM_BYTES] = {0x01, 0x23, 0x45, 0x67, 0x89};
    char a[IDN_MASTER_ID_BUFSZ], b[IDN_MASTER_ID_BUFSZ];
    idn_master_id_format(0x18c2e4a1b2fLL, rnd, a);
    assert_string_equal(a, "m018c2e4a1b2f0123456789");
    assert_true(idn_master_id_valid(a));
    const unsigned char hi[IDN_MASTER_RANDOM_BYTES] = {0xff, 0xff, 0xff, 0xff, 0xff};
    idn_master_id_format(0x18c2e4a1b30LL, rnd, b);
    assert_true(strcmp(a, b) < 0); /* one ms later sorts later ... */
    idn_master_id_format(0x18c2e4a1b2fLL, hi, b);
    assert_true(strcmp(a, b) < 0); /* ... the random part only breaks ties */
    char n1[IDN_MASTER_ID_BUFSZ], n2[IDN_MASTER_ID_BUFSZ];
    assert_int_equal(idn_master_id_new(1700000000000LL, n1), 0);
    assert_int_equal(idn_master_id_new(1700000000000LL, n2), 0);
    assert_true(idn_master_id_valid(n1));
    assert_string_not_equal(n1, n2);
    assert_false(idn_master_id_valid("m018c2e4a1b2f012345678"));   /* short */
    assert_false(idn_master_id_valid("m018c2e4a1b2f012345678G"));  /* not hex */
    assert_false(idn_master_id_valid("x018c2e4a1b2f0123456789"));
    assert_false(idn_master_id_valid(NULL));
}

static void test_merge_records(void **state) {
    (void)state;
    char *rec = idn_merge_encode("m018c2e4a1b2f0123456789", "m018c2e4a1b300123456789",
                                 1700000000123LL, "msg \"1\"");
    idn_merge m;
    assert_int_equal(idn_merge_decode(rec, strlen(rec), &m), 0);
    assert_string_equal(m.survivor, "m018c2e4a1b2f0123456789");
    assert_string_equal(m.loser, "m018c2e4a1b300123456789");
    assert_int_equal(m.merged_at_ms, 1700000000123LL);
    assert_string_equal(m.message_id, "msg \"1\"");
    idn_merge_clear(&m);
    free(rec);
    const char *bad = "{\"survivor_id\":\"x\",\"loser_id\":\"y\",\"merged_at_ms\":1,"
                      "\"message_id\":\"\"}";
    assert_int_equal(idn_merge_decode(bad, strlen(bad), &m), -1);
    assert_int_equal(idn_merge_decode("not json", 8, &m), -1);
}

/* ----------------------------------------------------------------- batch */

static void test_batch_groups(void **state) {
    (void)state;
    /* r0-r2 chain through shared members, r3 alone, r4 joins r0 directly,
     * r5 has no members */
    const char *m0[] = {"anonymous_id:a"};
    const char *m1[] = {"user_id:u", "device_id:d"};
    const char *m2[] = {"device_id:d", "email:e"};
    const char *m3[] = {"cookie_id:c"};
    const char *m4[] = {"email:e"};
    const char *const *members[] = {m0, m1, m2, m3, m4, NULL};
    size_t n_members[] = {1, 2, 2, 1, 1, 0};
    size_t group[6];
    assert_int_equal(idn_batch_group(6, members, n_members, group), 4);
    /* m0 shares nothing with m1: its own group */
    assert_int_equal(group[0], 0);
    assert_int_equal(group[1], 1);
    assert_int_equal(group[2], 1);
    assert_int_equal(group[3], 2);
    assert_int_equal(group[4], 1);
    assert_int_equal(group[5], 3);
}

static void test_batch_late_link(void **state) {
    (void)state;
    /* r2 links r0 and r1, which were separate until then */
    const char *m0[] = {"a:1"};
    const char *m1[] = {"b:2"};
    const char *m2[] = {"b:2", "a:1"};
    const char *const *members[] = {m0, m1, m2};
    size_t n_members[] = {1, 1, 2};
    size_t group[3];
    assert_int_equal(idn_batch_group(3, members, n_members, group), 1);
    assert_int_equal(group[0], 0);
    assert_int_equal(group[1], 0);
    assert_int_equal(group[2], 0);
}

/* --------------------------------------------------------------- request */

typedef struct {
    Cdp__V1__ResolveRequest req;
    Cdp__V1__Identifier ids[8];
    Cdp__V1__Identifier *ptrs[8];
} req_fixture;

static void fx_add(req_fixture *f, const char *type, const char *value) {
    size_t i = f->req.n_identifiers++;
    cdp__v1__identifier__init(&f->ids[i]);
    f->ids[i].type = (char *)type;
    f->ids[i].value = (char *)value;
    f->ptrs[i] = &f->ids[i];
    f->req.identifiers = f->ptrs;
}

static void test_request_prepare(void **state) {
    (void)state;
    cdp_ident_config cfg;
    assert_int_equal(cdp_ident_config_init(&cfg, "US", NULL), 0);
    req_fixture f;
    memset(&f, 0, sizeof f);
    cdp__v1__resolve_request__init(&f.req);
    fx_add(&f, "email", "A@X.io");
    fx_add(&f, "user_id", "null");
    fx_add(&f, "email", "a@x.IO"); /* duplicate after normalization */
    fx_add(&f, "phone", "(415) 555-2671");
    idn_request r;
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ids[0].value, "a@x.io");
    assert_string_equal(r.ids[1].value, "+14155552671");
    assert_int_equal(r.src[1], 3);
    assert_int_equal(r.n_dropped, 1);
    assert_int_equal(r.dropped[0].src, 1);
    assert_string_equal(r.dropped[0].reason, "blocked value");
    assert_int_equal(r.deliver, 0); /* a direct call unless the pipeline says so */
    idn_request_clear(&r);
    f.req.deliver_merges = 1;
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_OK);
    assert_int_equal(r.deliver, 1);
    idn_request_clear(&r);
    f.req.deliver_merges = 0;

    fx_add(&f, "email", "broken");
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_INVALID);
    assert_string_equal(r.error, "identifiers[4].value: not a valid email");
    assert_int_equal(r.n, 2); /* the valid ones stay usable for a batch */
    idn_request_clear(&r);
}

static void test_request_unusable(void **state) {
    (void)state;
    cdp_ident_config cfg;
    assert_int_equal(cdp_ident_config_init(&cfg, "US", NULL), 0);
    req_fixture f;
    memset(&f, 0, sizeof f);
    cdp__v1__resolve_request__init(&f.req);
    idn_request r;
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_UNUSABLE);
    assert_string_equal(r.error, "identifiers: at least one is required");
    idn_request_clear(&r);
    fx_add(&f, "user_id", "  ");
    fx_add(&f, "cookie_id", "undefined");
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_UNUSABLE);
    assert_int_equal(r.n_dropped, 2);
    idn_request_clear(&r);
    fx_add(&f, "Bad", "x");
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_UNUSABLE);
    assert_string_equal(r.error, "identifiers[2].type: not a valid identifier type");
    idn_request_clear(&r);
    char long_id[IDN_MAX_MESSAGE_ID + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    f.req.message_id = long_id;
    assert_int_equal(idn_request_prepare(&cfg, &f.req, &r), IDN_REQ_UNUSABLE);
    assert_non_null(strstr(r.error, "message_id"));
    idn_request_clear(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_slots),
        cmocka_unit_test(test_ident_values),
        cmocka_unit_test(test_member_split),
        cmocka_unit_test(test_master_ids),
        cmocka_unit_test(test_merge_records),
        cmocka_unit_test(test_batch_groups),
        cmocka_unit_test(test_batch_late_link),
        cmocka_unit_test(test_request_prepare),
        cmocka_unit_test(test_request_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
