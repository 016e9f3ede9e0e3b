/* test_consent_policy: the consent policy (cns_policy): the configuration
 * parser and its errors (variable and position), every decision rule, every
 * jurisdiction default of the shipped configuration, the precedence between
 * rules, and the entry stamp order (cns_entry) the change script mirrors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "cns_entry.h"
#include "cns_policy.h"

static cns_policy pol;
static char err[CNS_ERR_MAX];

static int parse(const char *purposes, const char *channels, const char *dj, const char *policy)
{
    err[0] = '\0';
    return cns_policy_parse(&pol, purposes, channels, dj, policy, err, sizeof err);
}

static void test_defaults_parse(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, NULL, NULL, NULL), 0);
    assert_int_equal(pol.n_purposes, 3);
    assert_int_equal(pol.n_channels, 9);
    assert_int_equal(pol.n_jurisdictions, 2);
    assert_string_equal(cns_policy_default_jurisdiction(&pol), "gdpr");
    assert_int_equal(cns_policy_purpose(&pol, "analytics"), 1);
    assert_int_equal(cns_policy_channel(&pol, "whatsapp"), 2);
    assert_int_equal(cns_policy_channel(&pol, "*"), -1);
    assert_true(cns_policy_channel_ok(&pol, "*"));
    assert_false(cns_policy_channel_ok(&pol, "fax"));
    assert_int_equal(cns_policy_jurisdiction(&pol, "ccpa"), 1);
    for (size_t i = 0; i < pol.n_purposes; i++) {
        assert_int_equal(pol.jurisdictions[0].unset[i], CNS_DEFAULT_DENY);
        assert_int_equal(pol.jurisdictions[1].unset[i], CNS_DEFAULT_ALLOW);
    }
}

static void expect_error(const char *purposes, const char *channels, const char *dj,
                         const char *policy, const char *want)
{
    assert_int_equal(parse(purposes, channels, dj, policy), -1);
    if (strcmp(err, want) != 0)
        fail_msg("error \"%s\", want \"%s\"", err, want);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("", NULL, NULL, NULL,
                 "CDP_CONSENT_PURPOSES: at position 1: expected a purpose name ([a-z0-9_-]), got the end");
    expect_error("marketing,,x", NULL, NULL, NULL,
                 "CDP_CONSENT_PURPOSES: at position 11: expected a purpose name ([a-z0-9_-]), got another character");
    expect_error("a,b,a", NULL, NULL, NULL, "CDP_CONSENT_PURPOSES: at position 5: purpose \"a\" listed twice");
    expect_error("Marketing", NULL, NULL, NULL,
                 "CDP_CONSENT_PURPOSES: at position 1: expected a purpose name ([a-z0-9_-]), got another character");
    expect_error("marketing ", NULL, NULL, NULL,
                 "CDP_CONSENT_PURPOSES: at position 10: expected ',' or the end");
    expect_error(NULL, "email,*", NULL, NULL,
                 "CDP_CONSENT_CHANNELS: at position 7: expected a channel name ([a-z0-9_-]), got another character");
    expect_error(NULL, "abcdefghijabcdefghijabcdefghijabc", NULL, NULL,
                 "CDP_CONSENT_CHANNELS: at position 1: channel name longer than 32 characters");
    expect_error(NULL, NULL, NULL, "gdpr:marketing=deny;ccpa:marketin=allow",
                 "CDP_CONSENT_POLICY: at position 26: unknown purpose \"marketin\" (not in CDP_CONSENT_PURPOSES)");
    expect_error(NULL, NULL, NULL, "gdpr:marketing=maybe",
                 "CDP_CONSENT_POLICY: at position 16: expected allow or deny");
    expect_error(NULL, NULL, NULL, "gdpr:marketing=allowed",
                 "CDP_CONSENT_POLICY: at position 16: expected allow or deny");
    expect_error(NULL, NULL, NULL, "gdpr:marketing",
                 "CDP_CONSENT_POLICY: at position 15: expected '=' after \"marketing\"");
    expect_error(NULL, NULL, NULL, "gdpr marketing=deny",
                 "CDP_CONSENT_POLICY: at position 5: expected ':' after \"gdpr\"");
    expect_error(NULL, NULL, NULL, "gdpr:marketing=deny,marketing=allow",
                 "CDP_CONSENT_POLICY: at position 21: purpose \"marketing\" given twice for gdpr");
    expect_error(NULL, NULL, NULL, "gdpr:;gdpr:",
                 "CDP_CONSENT_POLICY: at position 7: jurisdiction \"gdpr\" given twice");
    expect_error(NULL, NULL, NULL, "gdpr:marketing=deny;",
                 "CDP_CONSENT_POLICY: at position 21: expected a jurisdiction name ([a-z0-9_-]), got the end");
    expect_error(NULL, NULL, NULL, "gdpr:marketing=deny|",
                 "CDP_CONSENT_POLICY: at position 20: expected ',', ';' or the end");
    expect_error(NULL, NULL, "lgpd", NULL,
                 "CDP_CONSENT_DEFAULT_JURISDICTION: at position 1: \"lgpd\" is not a jurisdiction of CDP_CONSENT_POLICY");
    /* a jurisdiction without defaults is valid */
    assert_int_equal(parse(NULL, NULL, "none", "gdpr:marketing=deny;none:"), 0);
    assert_int_equal(pol.jurisdictions[1].unset[0], CNS_DEFAULT_NONE);
}

static cns_decision decide(const char *jur, cns_status ch, cns_status all, const char *supp)
{
    cns_check_input in = { .purpose = "marketing", .channel = "sms", .jurisdiction = jur,
                           .channel_status = ch, .all_status = all, .suppressed = supp,
                           .suppression_reason = "legal_hold" };
    cns_decision d;
    cns_decide(&pol, &in, &d);
    return d;
}

static void test_every_rule_and_precedence(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, NULL, NULL, NULL), 0);
    /* 1. suppression beats a granted channel entry */
    cns_decision d = decide("ccpa", CNS_STATUS_GRANTED, CNS_STATUS_GRANTED, "phone:+14155550100");
    assert_false(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_SUPPRESSION);
    assert_int_equal(d.status, CNS_STATUS_UNSET);
    assert_string_equal(d.reason, "phone:+14155550100 is suppressed (legal_hold)");
    /* 2. the channel entry beats the all-channels entry, either way */
    d = decide("gdpr", CNS_STATUS_GRANTED, CNS_STATUS_DENIED, NULL);
    assert_true(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_EXPLICIT_CHANNEL);
    assert_int_equal(d.status, CNS_STATUS_GRANTED);
    assert_string_equal(d.reason, "entry marketing/sms is granted");
    d = decide("ccpa", CNS_STATUS_REVOKED, CNS_STATUS_GRANTED, NULL);
    assert_false(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_EXPLICIT_CHANNEL);
    d = decide("ccpa", CNS_STATUS_DENIED, CNS_STATUS_UNSET, NULL);
    assert_false(d.allowed);
    assert_int_equal(d.status, CNS_STATUS_DENIED);
    /* 3. all channels, when the channel entry is absent or unset */
    d = decide("gdpr", CNS_STATUS_UNSET, CNS_STATUS_GRANTED, NULL);
    assert_true(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_EXPLICIT_ALL_CHANNELS);
    assert_string_equal(d.reason, "entry marketing/* is granted");
    d = decide("ccpa", CNS_STATUS_UNSET, CNS_STATUS_REVOKED, NULL);
    assert_false(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_EXPLICIT_ALL_CHANNELS);
    assert_int_equal(d.status, CNS_STATUS_REVOKED);
    /* 4. the jurisdiction default; unknown or empty jurisdiction: the default one */
    d = decide("gdpr", CNS_STATUS_UNSET, CNS_STATUS_UNSET, NULL);
    assert_false(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_JURISDICTION_DEFAULT);
    assert_string_equal(d.jurisdiction, "gdpr");
    assert_string_equal(d.reason, "gdpr default for marketing is deny (no entry)");
    d = decide("", CNS_STATUS_UNSET, CNS_STATUS_UNSET, NULL);
    assert_string_equal(d.jurisdiction, "gdpr");
    d = decide("mars", CNS_STATUS_UNSET, CNS_STATUS_UNSET, NULL);
    assert_string_equal(d.jurisdiction, "gdpr");
    d = decide(NULL, CNS_STATUS_UNSET, CNS_STATUS_UNSET, NULL);
    assert_string_equal(d.jurisdiction, "gdpr");
    d = decide("ccpa", CNS_STATUS_UNSET, CNS_STATUS_UNSET, NULL);
    assert_true(d.allowed);
    assert_string_equal(d.jurisdiction, "ccpa");
    assert_string_equal(d.reason, "ccpa default for marketing is allow (no entry)");
    /* 5. no default for the purpose: deny */
    assert_int_equal(parse("marketing,profiling", NULL, "ccpa", "ccpa:marketing=allow"), 0);
    cns_check_input in = { .purpose = "profiling", .channel = "email", .jurisdiction = "ccpa",
                           .note = "(profile not found)" };
    cns_decide(&pol, &in, &d);
    assert_false(d.allowed);
    assert_int_equal(d.rule, CNS_RULE_GLOBAL_DEFAULT);
    assert_string_equal(d.reason,
                        "no entry and no ccpa default for profiling: global default is deny "
                        "(profile not found)");
}

/* Every purpose of every shipped jurisdiction, through cns_decide. */
static void test_shipped_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse(NULL, NULL, NULL, NULL), 0);
    static const struct { const char *jur, *purpose; int allowed; } want[] = {
        { "gdpr", "marketing", 0 },     { "gdpr", "analytics", 0 }, { "gdpr", "personalization", 0 },
        { "ccpa", "marketing", 1 },     { "ccpa", "analytics", 1 }, { "ccpa", "personalization", 1 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        for (size_t c = 0; c < pol.n_channels; c++) {
            cns_check_input in = { .purpose = want[i].purpose, .channel = pol.channels[c],
                                   .jurisdiction = want[i].jur };
            cns_decision d;
            cns_decide(&pol, &in, &d);
            assert_int_equal(d.allowed, want[i].allowed);
            assert_int_equal(d.rule, CNS_RULE_JURISDICTION_DEFAULT);
        }
}

static void test_names_and_stamps(void **state)
{
    (void)state;
    cns_status s;
    assert_int_equal(cns_status_parse("revoked", &s), 0);
    assert_int_equal(s, CNS_STATUS_REVOKED);
    assert_int_equal(cns_status_parse("Granted", &s), -1);
    assert_int_equal(cns_status_parse(NULL, &s), -1);
    assert_string_equal(cns_status_name(CNS_STATUS_UNSET), "unset");
    assert_string_equal(cns_rule_name(CNS_RULE_EXPLICIT_ALL_CHANNELS), "explicit_all_channels");
    /* later time wins; equal time: greater message id; two RPC writes: the later call */
    assert_true(cns_stamp_wins(2, "a", 1, "z"));
    assert_false(cns_stamp_wins(1, "z", 2, "a"));
    assert_true(cns_stamp_wins(5, "m2", 5, "m1"));
    assert_false(cns_stamp_wins(5, "m1", 5, "m1"));
    assert_false(cns_stamp_wins(5, "", 5, "m1"));
    assert_true(cns_stamp_wins(5, "", 5, ""));
    assert_true(cns_legal_basis_ok("legitimate_interests"));
    assert_true(cns_legal_basis_ok(""));
    assert_false(cns_legal_basis_ok("vibes"));
}

static void test_entry_json_round_trip(void **state)
{
    (void)state;
    cns_entry e = { .purpose = "marketing", .channel = "*", .status = CNS_STATUS_DENIED,
                    .source = "checkout", .updated_ms = INT64_C(1700000000123),
                    .legal_basis = "consent", .jurisdiction = "gdpr", .actor = "event:web",
                    .message_id = "m-1" };
    json_t *j = cns_entry_to_json(&e);
    cns_entry back;
    assert_int_equal(cns_entry_from_json(j, &back), 0);
    assert_memory_equal(&e, &back, sizeof e);
    json_object_set_new(j, "s", json_string("maybe"));
    assert_int_equal(cns_entry_from_json(j, &back), -1);
    json_decref(j);
    char f[80];
    assert_int_equal(cns_entry_field("marketing", "*", f, sizeof f), 0);
    assert_string_equal(f, "e:marketing:*");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_parse),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_every_rule_and_precedence),
        cmocka_unit_test(test_shipped_defaults),
        cmocka_unit_test(test_names_and_stamps),
        cmocka_unit_test(test_entry_json_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
