/* Unit tests for common/cdp_ident: type kinds, trimming, blocked values,
 * email and phone normalization, and configuration parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_ident.h"

/* Normalizes with a config for `region` and the default blocked list, and
 * checks the result code and (on success) the output. */
static void expect_norm(const char *region, const char *type, const char *value, int want_rc,
                        const char *want) {
    cdp_ident_config cfg;
    assert_int_equal(cdp_ident_config_init(&cfg, region, NULL), 0);
    char out[CDP_IDENT_VALUE_BUFSZ];
    const char *why = NULL;
    int rc = cdp_ident_normalize(type, value, &cfg, out, sizeof out, &why);
    if (rc != want_rc)
        print_error("%s=%s: rc %d (%s), want %d\n", type, value, rc, why ? why : "-", want_rc);
    assert_int_equal(rc, want_rc);
    if (want_rc == 0)
        assert_string_equal(out, want);
    else
        assert_non_null(why);
}

static void test_kinds(void **state) {
    (void)state;
    assert_int_equal(cdp_ident_kind_of("user_id"), CDP_IDENT_USER_ID);
    assert_int_equal(cdp_ident_kind_of("anonymous_id"), CDP_IDENT_ANONYMOUS_ID);
    assert_int_equal(cdp_ident_kind_of("email"), CDP_IDENT_EMAIL);
    assert_int_equal(cdp_ident_kind_of("phone"), CDP_IDENT_PHONE);
    assert_int_equal(cdp_ident_kind_of("device_id"), CDP_IDENT_DEVICE_ID);
    assert_int_equal(cdp_ident_kind_of("cookie_id"), CDP_IDENT_COOKIE_ID);
    assert_int_equal(cdp_ident_kind_of("loyalty.card-no_2"), CDP_IDENT_CUSTOM);
    assert_int_equal(cdp_ident_kind_of(""), CDP_IDENT_INVALID);
    assert_int_equal(cdp_ident_kind_of(NULL), CDP_IDENT_INVALID);
    assert_int_equal(cdp_ident_kind_of("Email"), CDP_IDENT_INVALID);
    assert_int_equal(cdp_ident_kind_of("has space"), CDP_IDENT_INVALID);
    char longest[CDP_IDENT_MAX_TYPE + 2];
    memset(longest, 'a', CDP_IDENT_MAX_TYPE);
    longest[CDP_IDENT_MAX_TYPE] = '\0';
    assert_int_equal(cdp_ident_kind_of(longest), CDP_IDENT_CUSTOM);
    longest[CDP_IDENT_MAX_TYPE] = 'a';
    longest[CDP_IDENT_MAX_TYPE + 1] = '\0';
    assert_int_equal(cdp_ident_kind_of(longest), CDP_IDENT_INVALID);
    assert_string_equal(cdp_ident_kind_name(CDP_IDENT_PHONE), "phone");
    assert_null(cdp_ident_kind_name(CDP_IDENT_CUSTOM));
    expect_norm("US", "Bad Type", "x", CDP_IDENT_EBADTYPE, NULL);
}

static void test_trim_and_plain(void **state) {
    (void)state;
    expect_norm("US", "user_id", "  u-123\t\n", 0, "u-123");
    expect_norm("US", "device_id", "ABC-def", 0, "ABC-def"); /* case kept */
    expect_norm("US", "crm_id", " 42 ", 0, "42");
    expect_norm("US", "user_id", "   ", CDP_IDENT_EEMPTY, NULL);
    expect_norm("US", "user_id", "", CDP_IDENT_EEMPTY, NULL);
}

static void test_too_long(void **state) {
    (void)state;
    char v[CDP_IDENT_MAX_VALUE + 3];
    memset(v, 'x', CDP_IDENT_MAX_VALUE);
    v[CDP_IDENT_MAX_VALUE] = '\0';
    cdp_ident_config cfg;
    assert_int_equal(cdp_ident_config_init(&cfg, NULL, NULL), 0);
    char out[CDP_IDENT_VALUE_BUFSZ];
    const char *why = NULL;
    assert_int_equal(cdp_ident_normalize("user_id", v, &cfg, out, sizeof out, &why), 0);
    v[CDP_IDENT_MAX_VALUE] = 'x';
    v[CDP_IDENT_MAX_VALUE + 1] = '\0';
    assert_int_equal(cdp_ident_normalize("user_id", v, &cfg, out, sizeof out, &why),
                     CDP_IDENT_ETOOLONG);
    assert_string_equal(why, "too long");
    /* an output buffer that is too small is reported, not overrun */
    char small[4];
    assert_int_equal(cdp_ident_normalize("user_id", "abcd", &cfg, small, sizeof small, &why),
                     CDP_IDENT_ENOSPACE);
}

static void test_blocked_default(void **state) {
    (void)state;
    const char *blocked[] = {"null", "NULL", " Undefined ", "anonymous", "0", "-1", "None", "nil"};
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        expect_norm("US", "user_id", blocked[i], CDP_IDENT_EBLOCKED, NULL);
    expect_norm("US", "email", "null", CDP_IDENT_EBLOCKED, NULL);
    expect_norm("US", "user_id", "nullable", 0, "nullable");
    expect_norm("US", "user_id", "00", 0, "00");
}

static void test_blocked_custom_list(void **state) {
    (void)state;
    cdp_ident_config cfg;
    assert_int_equal(cdp_ident_config_init(&cfg, "US", " test , N/A,,unknown"), 0);
    assert_int_equal(cfg.n_blocked, 3);
    char out[CDP_IDENT_VALUE_BUFSZ];
    const char *why = NULL;
    assert_int_equal(cdp_ident_normalize("user_id", "TEST", &cfg, out, sizeof out, &why),
                     CDP_IDENT_EBLOCKED);
    assert_string_equal(why, "blocked value");
    assert_int_equal(cdp_ident_normalize("user_id", "n/a", &cfg, out, sizeof out, &why),
                     CDP_IDENT_EBLOCKED);
    /* the replaced list no longer blocks the defaults */
    assert_int_equal(cdp_ident_normalize("user_id", "null", &cfg, out, sizeof out, &why), 0);
    /* "" blocks nothing but empty values are still rejected */
    assert_int_equal(cdp_ident_config_init(&cfg, "US", ""), 0);
    assert_int_equal(cfg.n_blocked, 0);
    assert_int_equal(cdp_ident_normalize("user_id", " ", &cfg, out, sizeof out, &why),
                     CDP_IDENT_EEMPTY);
}

static void test_config_errors(void **state) {
    (void)state;
    cdp_ident_config cfg;
    assert_int_equal(cdp_ident_config_init(&cfg, "XX", NULL), -1);
    assert_int_equal(cdp_ident_config_init(&cfg, "USA", NULL), -1);
    assert_int_equal(cdp_ident_config_init(&cfg, "gb", NULL), 0);
    assert_string_equal(cfg.region->iso, "GB");
    char csv[(CDP_IDENT_MAX_BLOCKED + 1) * 3 + 1];
    size_t n = 0;
    for (int i = 0; i <= CDP_IDENT_MAX_BLOCKED; i++)
        n += (size_t)snprintf(csv + n, sizeof csv - n, "%c%c,", 'a' + i % 26, 'a' + i / 26);
    assert_int_equal(cdp_ident_config_init(&cfg, "US", csv), -2);
    char big[CDP_IDENT_MAX_BLOCKED_LEN + 2];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(cdp_ident_config_init(&cfg, "US", big), -2);
}

static void test_config_env(void **state) {
    (void)state;
    cdp_ident_config cfg;
    setenv(CDP_IDENT_ENV_REGION, "de", 1);
    setenv(CDP_IDENT_ENV_BLOCKED, "x,y", 1);
    assert_int_equal(cdp_ident_config_from_env(&cfg), 0);
    assert_string_equal(cfg.region->iso, "DE");
    assert_int_equal(cfg.n_blocked, 2);
    unsetenv(CDP_IDENT_ENV_REGION);
    unsetenv(CDP_IDENT_ENV_BLOCKED);
    assert_int_equal(cdp_ident_config_from_env(&cfg), 0);
    assert_string_equal(cfg.region->iso, CDP_IDENT_DEFAULT_REGION);
    assert_int_equal(cfg.n_blocked, 7);
}

static void test_email(void **state) {
    (void)state;
    expect_norm("US", "email", "  Jane.Doe@Example.COM ", 0, "jane.doe@example.com");
    expect_norm("US", "email", "a+tag@sub.example.co.uk", 0, "a+tag@sub.example.co.uk");
    const char *bad[] = {"jane", "@example.com", "jane@", "jane@example", "a@b@example.com",
                         "jane@.com", "jane@example.", "ja ne@example.com"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_norm("US", "email", bad[i], CDP_IDENT_EEMAIL, NULL);
}

static void test_phone_international(void **state) {
    (void)state;
    expect_norm("US", "phone", "+44 20 7946 0018", 0, "+442079460018");
    expect_norm("US", "phone", "0044 (20) 7946-0018", 0, "+442079460018");
    expect_norm("DE", "phone", "+1 (415) 555.2671", 0, "+14155552671");
    expect_norm("US", "phone", "+234 803 123 4567", 0, "+2348031234567");
}

static void test_phone_national(void **state) {
    (void)state;
    expect_norm("US", "phone", "(415) 555-2671", 0, "+14155552671");
    expect_norm("US", "phone", "1-415-555-2671", 0, "+14155552671");
    expect_norm("GB", "phone", "020 7946 0018", 0, "+442079460018");
    expect_norm("DE", "phone", "030 1234567", 0, "+49301234567");
    expect_norm("FR", "phone", "06 12 34 56 78", 0, "+33612345678");
    expect_norm("IT", "phone", "06 1234 5678", 0, "+390612345678"); /* Italy keeps the 0 */
    expect_norm("ES", "phone", "912 345 678", 0, "+34912345678");
    expect_norm("IN", "phone", "098765 43210", 0, "+919876543210");
    expect_norm("NG", "phone", "0803 123 4567", 0, "+2348031234567");
}

static void test_phone_invalid(void **state) {
    (void)state;
    const char *bad[] = {"555-123", "+1234567", "+1234567890123456", "415 555 2671 ext 9",
                         "+44+2079460018", "4155552671+", "+0123456789", "phone"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_norm("US", "phone", bad[i], CDP_IDENT_EPHONE, NULL);
    expect_norm("US", "phone", "0", CDP_IDENT_EBLOCKED, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_trim_and_plain),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_blocked_default),
        cmocka_unit_test(test_blocked_custom_list),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_env),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_phone_international),
        cmocka_unit_test(test_phone_national),
        cmocka_unit_test(test_phone_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
