/* test_consent_merge: the rules of folding a merged-away profile's consent
 * into its survivor (cns_merge): the fold order (last write wins by stamp,
 * ties broken by the stored text, equal never wins), the parse of a loser's
 * consent hash (what is taken, what is left out and counted), and, over
 * random profiles fed through that parse, the properties the fold relies
 * on: a re-run changes nothing, a newer survivor value is kept, and a chain
 * A into B into C ends equal on C in either order of the two folds. The
 * fold script (cns_lua "fold") applies this order in Redis; the integration
 * test (test_consent.sh) checks the script against it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cns_merge.h"

static void test_order(void **state)
{
    (void)state;
    assert_true(cns_merge_wins(2, "", "a", 1, "z", "z"));    /* later time */
    assert_false(cns_merge_wins(1, "z", "z", 2, "", "a"));
    assert_true(cns_merge_wins(5, "m2", "a", 5, "m1", "z")); /* same time: message id */
    assert_false(cns_merge_wins(5, "m1", "z", 5, "m2", "a"));
    assert_true(cns_merge_wins(5, "m", "b", 5, "m", "a"));   /* same stamp: text */
    assert_false(cns_merge_wins(5, "m", "a", 5, "m", "b"));
    assert_false(cns_merge_wins(5, "m", "a", 5, "m", "a"));  /* equal: never */
    /* two RPC writes at the same time: the text decides, not "the later
     * call", so the same entry folded again does not win */
    assert_true(cns_stamp_wins(5, "", 5, ""));
    assert_false(cns_merge_wins(5, "", "x", 5, "", "x"));
}

/* ------------------------------------------------------------------ parse */

typedef struct {
    const char *names[16], *vals[16];
    size_t nlen[16], vlen[16], n;
} t_hash;

static void put(t_hash *h, const char *name, const char *val)
{
    assert_true(h->n < sizeof h->names / sizeof h->names[0]);
    h->names[h->n] = name, h->nlen[h->n] = strlen(name);
    h->vals[h->n] = val, h->vlen[h->n] = strlen(val);
    h->n++;
}

static const char entry_mkt_email[] =
    "{\"p\":\"marketing\",\"c\":\"email\",\"s\":\"denied\",\"src\":\"web\",\"ts\":1700000000123,"
    "\"lb\":\"\",\"j\":\"ccpa\",\"a\":\"event:web\",\"m\":\"m-1\"}";
static const char entry_all[] =
    "{\"p\":\"analytics\",\"c\":\"*\",\"s\":\"granted\",\"src\":\"api\",\"ts\":5,"
    "\"lb\":\"consent\",\"j\":\"\",\"a\":\"crm\",\"m\":\"\"}";

static void test_parse(void **state)
{
    (void)state;
    t_hash h = { 0 };
    put(&h, "j", "ccpa");
    put(&h, "jt", "1700000000000");
    put(&h, "jm", "m-0");
    put(&h, "e:marketing:email", entry_mkt_email);
    put(&h, "e:analytics:*", entry_all);
    put(&h, "e:analytics:sms", entry_all); /* name and content disagree */
    put(&h, "e:marketing:sms", "{\"p\":\"marketing\""); /* not JSON */
    put(&h, "x", "ignored");
    cns_merge_state st;
    assert_int_equal(cns_merge_parse(&st, h.n, h.names, h.nlen, h.vals, h.vlen), 0);
    assert_string_equal(st.jurisdiction, "ccpa");
    assert_int_equal(st.jurisdiction_ms, INT64_C(1700000000000));
    assert_string_equal(st.jurisdiction_mid, "m-0");
    assert_int_equal(st.n, 2);
    assert_int_equal(st.skipped, 2);
    assert_string_equal(st.entries[0].json, entry_mkt_email); /* byte for byte */
    assert_string_equal(st.entries[0].e.purpose, "marketing");
    assert_string_equal(st.entries[0].e.channel, "email");
    assert_int_equal(st.entries[0].e.updated_ms, INT64_C(1700000000123));
    assert_string_equal(st.entries[0].e.message_id, "m-1");
    assert_int_equal(st.entries[0].e.status, CNS_STATUS_DENIED);
    assert_string_equal(st.entries[1].e.channel, "*");
    assert_string_equal(st.entries[1].e.message_id, "");
    cns_merge_state_free(&st);

    /* a jurisdiction without a valid stamp is left out, entries still taken */
    const char *bad_jt[] = { "", "-1", "12x", "99999999999999999999" };
    for (size_t i = 0; i < sizeof bad_jt / sizeof bad_jt[0]; i++) {
        t_hash b = { 0 };
        put(&b, "j", "gdpr");
        put(&b, "jt", bad_jt[i]);
        put(&b, "e:analytics:*", entry_all);
        assert_int_equal(cns_merge_parse(&st, b.n, b.names, b.nlen, b.vals, b.vlen), 0);
        assert_string_equal(st.jurisdiction, "");
        assert_int_equal(st.skipped, 1);
        assert_int_equal(st.n, 1);
        cns_merge_state_free(&st);
    }
    t_hash none = { 0 };
    put(&none, "j", "gdpr"); /* no jt at all */
    assert_int_equal(cns_merge_parse(&st, none.n, none.names, none.nlen, none.vals, none.vlen), 0);
    assert_string_equal(st.jurisdiction, "");
    assert_int_equal(st.skipped, 1);
    cns_merge_state_free(&st);
    assert_int_equal(cns_merge_parse(&st, 0, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(st.n + st.skipped, 0);
    cns_merge_state_free(&st);
}

/* ------------------------------------------------------------------ a model of the fold */

/* Fields of the model: 3 purposes x 2 channels. */
enum { NF = 6, ROUNDS = 500 };
static const char *const purposes[] = { "marketing", "analytics", "personalization" };
static const char *const channels[] = { "*", "email" };

typedef struct {
    char *text[NF]; /* stored entry JSON, NULL: none */
    char j[CNS_NAME_BUFSZ], jm[CNS_MID_MAX + 1], jt[24];
} t_prof;

static uint64_t rng = 0x9e3779b97f4a7c15u;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* A random profile with few distinct stamps, so that ties are common. */
static void prof_random(t_prof *p)
{
    static const char *const mids[] = { "", "m1", "m2" };
    static const char *const actors[] = { "crm", "event:web" };
    static const char *const jurs[] = { "gdpr", "ccpa" };
    memset(p, 0, sizeof *p);
    for (int f = 0; f < NF; f++) {
        if (rnd(3) == 0)
            continue;
        cns_entry e = { 0 };
        snprintf(e.purpose, sizeof e.purpose, "%s", purposes[f / 2]);
        snprintf(e.channel, sizeof e.channel, "%s", channels[f % 2]);
        e.status = (cns_status)rnd(4);
        e.updated_ms = 1000 * (1 + rnd(3));
        snprintf(e.message_id, sizeof e.message_id, "%s", mids[rnd(3)]);
        snprintf(e.actor, sizeof e.actor, "%s", actors[rnd(2)]);
        json_t *j = cns_entry_to_json(&e);
        p->text[f] = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    if (rnd(2)) {
        snprintf(p->j, sizeof p->j, "%s", jurs[rnd(2)]);
        snprintf(p->jt, sizeof p->jt, "%u", 1000 * (1 + rnd(3)));
        snprintf(p->jm, sizeof p->jm, "%s", mids[rnd(3)]);
    }
}

static void prof_copy(t_prof *dst, const t_prof *src)
{
    *dst = *src;
    for (int f = 0; f < NF; f++)
        dst->text[f] = src->text[f] ? strdup(src->text[f]) : NULL;
}

static void prof_free(t_prof *p)
{
    for (int f = 0; f < NF; f++)
        free(p->text[f]);
}

static void prof_assert_equal(const t_prof *a, const t_prof *b)
{
    for (int f = 0; f < NF; f++) {
        assert_int_equal(a->text[f] == NULL, b->text[f] == NULL);
        if (a->text[f])
            assert_string_equal(a->text[f], b->text[f]);
    }
    assert_string_equal(a->j, b->j);
    assert_string_equal(a->jt, b->jt);
    assert_string_equal(a->jm, b->jm);
}

/* The field index of an entry. */
static int field_of(const cns_entry *e)
{
    for (int f = 0; f < NF; f++)
        if (strcmp(e->purpose, purposes[f / 2]) == 0 && strcmp(e->channel, channels[f % 2]) == 0)
            return f;
    fail_msg("unexpected field %s/%s", e->purpose, e->channel);
    return -1;
}

/* What the fold script does, over the model: the loser's hash goes
 * through cns_merge_parse, each value lands when it wins by
 * cns_merge_wins. Returns the number of values changed. */
static int fold(const t_prof *loser, t_prof *into)
{
    t_hash h = { 0 };
    char names[NF][40];
    for (int f = 0; f < NF; f++)
        if (loser->text[f]) {
            snprintf(names[f], sizeof names[f], "e:%s:%s", purposes[f / 2], channels[f % 2]);
            put(&h, names[f], loser->text[f]);
        }
    if (loser->j[0]) {
        put(&h, "j", loser->j);
        put(&h, "jt", loser->jt);
        put(&h, "jm", loser->jm);
    }
    cns_merge_state st;
    assert_int_equal(cns_merge_parse(&st, h.n, h.names, h.nlen, h.vals, h.vlen), 0);
    assert_int_equal(st.skipped, 0);
    int changed = 0;
    for (size_t i = 0; i < st.n; i++) {
        int f = field_of(&st.entries[i].e);
        cns_entry old;
        int wins = 1;
        if (into->text[f]) {
            json_t *oj = json_loads(into->text[f], 0, NULL);
            assert_int_equal(cns_entry_from_json(oj, &old), 0);
            json_decref(oj);
            wins = cns_merge_wins(st.entries[i].e.updated_ms, st.entries[i].e.message_id,
                                  st.entries[i].json, old.updated_ms, old.message_id,
                                  into->text[f]);
        }
        if (wins) {
            free(into->text[f]);
            into->text[f] = strdup(st.entries[i].json);
            changed++;
        }
    }
    if (st.jurisdiction[0] &&
        (!into->j[0] || cns_merge_wins(st.jurisdiction_ms, st.jurisdiction_mid, st.jurisdiction,
                                       strtoll(into->jt, NULL, 10), into->jm, into->j))) {
        snprintf(into->j, sizeof into->j, "%s", st.jurisdiction);
        snprintf(into->jt, sizeof into->jt, "%lld", (long long)st.jurisdiction_ms);
        snprintf(into->jm, sizeof into->jm, "%s", st.jurisdiction_mid);
        changed++;
    }
    cns_merge_state_free(&st);
    return changed;
}

static void test_fold_properties(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        t_prof a, b, c, b1, c1, c2;
        prof_random(&a);
        prof_random(&b);
        prof_random(&c);
        /* A into B, then B into C */
        prof_copy(&b1, &b);
        prof_copy(&c1, &c);
        fold(&a, &b1);
        fold(&b1, &c1);
        /* B into C first; A into B then follows B's tombstone to C */
        prof_copy(&c2, &c);
        fold(&b, &c2);
        fold(&a, &c2);
        prof_assert_equal(&c1, &c2);
        /* a re-run of any fold changes nothing */
        assert_int_equal(fold(&a, &c1), 0);
        assert_int_equal(fold(&b, &c1), 0);
        assert_int_equal(fold(&b1, &c1), 0);
        /* nothing the survivor held is replaced by a loser value that is
         * older by stamp */
        for (int f = 0; f < NF; f++)
            if (c.text[f] && c1.text[f] && strcmp(c.text[f], c1.text[f]) != 0) {
                json_t *o = json_loads(c.text[f], 0, NULL), *n = json_loads(c1.text[f], 0, NULL);
                cns_entry eo, en;
                assert_int_equal(cns_entry_from_json(o, &eo), 0);
                assert_int_equal(cns_entry_from_json(n, &en), 0);
                assert_true(cns_merge_wins(en.updated_ms, en.message_id, c1.text[f],
                                           eo.updated_ms, eo.message_id, c.text[f]));
                json_decref(o), json_decref(n);
            }
        prof_free(&a), prof_free(&b), prof_free(&c);
        prof_free(&b1), prof_free(&c1), prof_free(&c2);
    }
}

/* The case of the privacy defect: an opt-out under the loser survives a
 * merge into a survivor with an older grant, and the loser-only entry and
 * jurisdiction arrive; the survivor's newer entry elsewhere stays. */
static void test_newer_opt_out_wins(void **state)
{
    (void)state;
    t_prof loser = { 0 }, surv = { 0 };
    cns_entry e = { .purpose = "marketing", .channel = "email", .status = CNS_STATUS_DENIED,
                    .updated_ms = 2000, .actor = "crm" };
    json_t *j = cns_entry_to_json(&e);
    loser.text[1] = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    e.status = CNS_STATUS_GRANTED, e.updated_ms = 1000;
    j = cns_entry_to_json(&e);
    surv.text[1] = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cns_entry only = { .purpose = "analytics", .channel = "*", .status = CNS_STATUS_GRANTED,
                       .updated_ms = 500, .actor = "crm" };
    j = cns_entry_to_json(&only);
    loser.text[2] = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cns_entry newer = { .purpose = "personalization", .channel = "*",
                        .status = CNS_STATUS_GRANTED, .updated_ms = 9000, .actor = "crm" };
    j = cns_entry_to_json(&newer);
    surv.text[4] = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    newer.status = CNS_STATUS_DENIED, newer.updated_ms = 8000;
    j = cns_entry_to_json(&newer);
    loser.text[4] = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    snprintf(loser.j, sizeof loser.j, "ccpa");
    snprintf(loser.jt, sizeof loser.jt, "2000");
    char *kept = strdup(surv.text[4]);
    assert_int_equal(fold(&loser, &surv), 3); /* the two entries and the jurisdiction */
    assert_string_equal(surv.text[1], loser.text[1]);
    assert_string_equal(surv.text[2], loser.text[2]);
    assert_string_equal(surv.text[4], kept);
    assert_string_equal(surv.j, "ccpa");
    assert_int_equal(fold(&loser, &surv), 0);
    free(kept);
    prof_free(&loser), prof_free(&surv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_fold_properties),
        cmocka_unit_test(test_newer_opt_out_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
