/* test_activation_sign: the webhook signature (act_sign).
 *
 * Known answers come from an independent implementation, OpenSSL 3.0 on the
 * build machine, over the message "<t>." followed by the body; each vector
 * cites the command that produced it. Then verification: OK, STALE on both
 * sides of the window, MISMATCH for an altered body or a wrong secret, and
 * MALFORMED for the many shapes a header value must not have. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "act_sign.h"

#define T0 INT64_C(1700000000)
#define TOL ACT_SIGN_DEFAULT_TOLERANCE_S
#define SECRET "whsec_test"
#define BODY "{\"event\":\"segment.entered\",\"profile\":\"p1\"}"
#define HEX64_ZERO "0000000000000000000000000000000000000000000000000000000000000000"

static int setup(void **state)
{
    (void)state;
    return act_sign_init();
}

/* Signs body with secret at t and checks the header against want. */
static void expect_sign(const void *secret, size_t secretlen, int64_t t, const void *body,
                        size_t bodylen, const char *want)
{
    char out[ACT_SIGN_VALUE_MAX];
    memset(out, 'X', sizeof out);
    assert_int_equal(act_sign(secret, secretlen, t, body, bodylen, out), 0);
    assert_string_equal(out, want);
    assert_int_equal(act_sign_verify(secret, secretlen, out, body, bodylen, t, TOL), ACT_SIGN_OK);
}

/* --------------------------------------------------------------- known answers */

static void test_known_answer_basic(void **state)
{
    (void)state;
    /* printf '%s' '1700000000.{"event":"segment.entered","profile":"p1"}' \
     *   | openssl dgst -sha256 -hmac 'whsec_test' */
    expect_sign(SECRET, strlen(SECRET), T0, BODY, strlen(BODY),
                "t=1700000000,v1=58bddedbbb562446b44fa5c244b4b05d069cda7a9243e00b39c2a721a8b26a96");
}

static void test_known_answer_empty_body_t_zero(void **state)
{
    (void)state;
    /* printf '%s' '0.' | openssl dgst -sha256 -hmac 's3cr3t' */
    const char *want = "t=0,v1=3f9088652f6bbbf5fb267427cb173addd3621d27558a0d18d24ec8285c15944c";
    expect_sign("s3cr3t", 6, 0, "", 0, want);
    expect_sign("s3cr3t", 6, 0, NULL, 0, want); /* no body at all is the empty body */
}

static void test_known_answer_body_with_nul(void **state)
{
    (void)state;
    /* printf '1700000000.a\0b\n' | openssl dgst -sha256 -hmac 'whsec_test' */
    expect_sign(SECRET, strlen(SECRET), T0, "a\0b\n", 4,
                "t=1700000000,v1=7f2458315aea5dae4efe47ac14e65621621e42d4014627d3292eb426418b4701");
}

/* Keys at, just over and well over SHA-256's 64-byte block: HMAC hashes a
 * longer key first, which is where hand-rolled HMACs go wrong. */
static void test_known_answer_long_secrets(void **state)
{
    (void)state;
    char k64[64], k65[65], k100[100];
    memset(k64, 'k', sizeof k64);
    memset(k65, 'k', sizeof k65);
    for (size_t i = 0; i < sizeof k100; i++)
        k100[i] = (char)('0' + i % 10);
    /* K2=$(printf 'k%.0s' $(seq 1 64)); printf '%s' '1700000000.{"a":1}' \
     *   | openssl dgst -sha256 -hmac "$K2" */
    expect_sign(k64, sizeof k64, T0, "{\"a\":1}", 7,
                "t=1700000000,v1=2f4996f4c60949c3c19681a075b1a73aaa775cd8c471999a120d126d53a5263e");
    /* the same with seq 1 65 */
    expect_sign(k65, sizeof k65, T0, "{\"a\":1}", 7,
                "t=1700000000,v1=e523d1c344882be4f96c9e44fb25391c185610636d6545c4eb2979ab61c94ff1");
    /* K=$(printf '0123456789%.0s' 1 2 3 4 5 6 7 8 9 10); printf '%s' '1712345678.hello' \
     *   | openssl dgst -sha256 -hmac "$K" */
    expect_sign(k100, sizeof k100, INT64_C(1712345678), "hello", 5,
                "t=1712345678,v1=523f488146f77e4073bc9a6b4a35986587a1bf204c0a53fb066d014d500e9037");
}

/* A binary secret (bytes 0x00..0x4f, 80 bytes) is used by length, not up to
 * its first NUL. */
static void test_known_answer_binary_secret(void **state)
{
    (void)state;
    unsigned char key[80];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)i;
    /* HK=$(for i in $(seq 0 79); do printf '%02x' $i; done); printf '%s' '1700000000.{}' \
     *   | openssl dgst -sha256 -mac HMAC -macopt hexkey:$HK */
    expect_sign(key, sizeof key, T0, "{}", 2,
                "t=1700000000,v1=be7d860398984d70f8e8236a5d2ad7d31f3617290137f78d00d2fddf07195328");
}

static void test_sign_largest_t_fits(void **state)
{
    (void)state;
    char out[ACT_SIGN_VALUE_MAX];
    assert_int_equal(act_sign(SECRET, strlen(SECRET), INT64_MAX, "x", 1, out), 0);
    assert_true(strncmp(out, "t=9223372036854775807,v1=", 25) == 0);
    assert_int_equal(strlen(out), 25 + 64);
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), out, "x", 1, INT64_MAX, TOL),
                     ACT_SIGN_OK);
}

static void test_sign_bad_arguments(void **state)
{
    (void)state;
    char out[ACT_SIGN_VALUE_MAX];
    assert_int_equal(act_sign(NULL, 3, T0, "x", 1, out), -1);
    assert_int_equal(act_sign(SECRET, 0, T0, "x", 1, out), -1); /* empty secret */
    assert_int_equal(act_sign(SECRET, strlen(SECRET), -1, "x", 1, out), -1);
    assert_int_equal(act_sign(SECRET, strlen(SECRET), T0, NULL, 1, out), -1);
    assert_int_equal(act_sign(SECRET, strlen(SECRET), T0, "x", 1, NULL), -1);
}

/* ------------------------------------------------------------------ verify */

static void sign(int64_t t, char out[ACT_SIGN_VALUE_MAX])
{
    assert_int_equal(act_sign(SECRET, strlen(SECRET), t, BODY, strlen(BODY), out), 0);
}

static act_sign_result verify(const char *header, int64_t now)
{
    return act_sign_verify(SECRET, strlen(SECRET), header, BODY, strlen(BODY), now, TOL);
}

static void test_verify_window(void **state)
{
    (void)state;
    char h[ACT_SIGN_VALUE_MAX];
    sign(T0, h);
    assert_int_equal(verify(h, T0), ACT_SIGN_OK);
    assert_int_equal(verify(h, T0 + TOL), ACT_SIGN_OK);      /* edges are inside */
    assert_int_equal(verify(h, T0 - TOL), ACT_SIGN_OK);
    assert_int_equal(verify(h, T0 + TOL + 1), ACT_SIGN_STALE); /* too old: a replay */
    assert_int_equal(verify(h, T0 - TOL - 1), ACT_SIGN_STALE); /* from the future */
    assert_int_equal(verify(h, INT64_MIN), ACT_SIGN_STALE);    /* no overflow */
    assert_int_equal(verify(h, INT64_MAX), ACT_SIGN_STALE);
    /* a tolerance of 0 means the same second; a negative one counts as 0 */
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), h, BODY, strlen(BODY), T0, 0),
                     ACT_SIGN_OK);
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), h, BODY, strlen(BODY), T0 + 1, 0),
                     ACT_SIGN_STALE);
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), h, BODY, strlen(BODY), T0 + 1, -5),
                     ACT_SIGN_STALE);
}

static void test_verify_mismatch(void **state)
{
    (void)state;
    char h[ACT_SIGN_VALUE_MAX];
    sign(T0, h);
    char altered[] = BODY;
    altered[3] ^= 1;
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), h, altered, strlen(altered), T0, TOL),
                     ACT_SIGN_MISMATCH);
    /* truncated and extended bodies */
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), h, BODY, strlen(BODY) - 1, T0, TOL),
                     ACT_SIGN_MISMATCH);
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET), h, BODY "\n", strlen(BODY) + 1, T0,
                                     TOL),
                     ACT_SIGN_MISMATCH);
    assert_int_equal(act_sign_verify("whsec_tesT", 10, h, BODY, strlen(BODY), T0, TOL),
                     ACT_SIGN_MISMATCH);
    assert_int_equal(act_sign_verify(SECRET, strlen(SECRET) - 1, h, BODY, strlen(BODY), T0, TOL),
                     ACT_SIGN_MISMATCH); /* a prefix of the secret */
    assert_int_equal(act_sign_verify(SECRET, 0, h, BODY, strlen(BODY), T0, TOL),
                     ACT_SIGN_MISMATCH); /* nothing verifies against an empty secret */
    assert_int_equal(act_sign_verify(NULL, 0, h, BODY, strlen(BODY), T0, TOL), ACT_SIGN_MISMATCH);

    /* t is covered by the MAC: moving it (even within the window) breaks it */
    char moved[ACT_SIGN_VALUE_MAX];
    snprintf(moved, sizeof moved, "t=%lld%s", (long long)(T0 + 1), h + strlen("t=1700000000"));
    assert_int_equal(verify(moved, T0), ACT_SIGN_MISMATCH);

    /* every single flipped hex digit of v1 is caught */
    for (size_t i = strlen(h) - 64; i < strlen(h); i++) {
        char c[ACT_SIGN_VALUE_MAX];
        memcpy(c, h, sizeof c);
        c[i] = c[i] == '0' ? '1' : '0';
        assert_int_equal(verify(c, T0), ACT_SIGN_MISMATCH);
    }
}

/* A forged MAC outside the window is a MISMATCH, not STALE: STALE is kept
 * for genuine requests that arrive too late. */
static void test_verify_forgery_beats_staleness(void **state)
{
    (void)state;
    assert_int_equal(verify("t=1700000000,v1=" HEX64_ZERO, T0 + 10 * TOL), ACT_SIGN_MISMATCH);
}

static void test_verify_malformed(void **state)
{
    (void)state;
    char h[ACT_SIGN_VALUE_MAX];
    sign(T0, h);
    const char *mac = strchr(h, ',') + strlen(",v1=");
    char upper[65];
    for (int i = 0; i < 64; i++)
        upper[i] = (char)(mac[i] >= 'a' ? mac[i] - 'a' + 'A' : mac[i]);
    upper[64] = '\0';

    char buf[256];
    const char *fixed[] = {
        "",
        "t=",
        "t=1700000000",
        "t=1700000000,",
        "t=1700000000,v1=",
        "v1=" HEX64_ZERO ",t=1700000000",              /* order */
        "t=,v1=" HEX64_ZERO,                            /* no digits */
        "t=-1700000000,v1=" HEX64_ZERO,                 /* sign */
        "t=+1700000000,v1=" HEX64_ZERO,
        "t=01700000000,v1=" HEX64_ZERO,                 /* leading zero */
        "t=00,v1=" HEX64_ZERO,
        "t=17e8,v1=" HEX64_ZERO,
        "t=1700000000.5,v1=" HEX64_ZERO,
        "t=9223372036854775808,v1=" HEX64_ZERO,         /* INT64_MAX + 1 */
        "t=99999999999999999999999,v1=" HEX64_ZERO,
        " t=1700000000,v1=" HEX64_ZERO,                 /* spaces */
        "t=1700000000, v1=" HEX64_ZERO,
        "t = 1700000000,v1=" HEX64_ZERO,
        "t=1700000000,v1= " HEX64_ZERO,
        "t=1700000000;v1=" HEX64_ZERO,                  /* separator */
        "T=1700000000,V1=" HEX64_ZERO,                  /* case of names */
        "t=1700000000,v0=" HEX64_ZERO,                  /* other versions */
        "t=1700000000,v2=" HEX64_ZERO,
        "t=1700000000,v1=" HEX64_ZERO "0",              /* 65 hex */
        "t=1700000000,v1=" HEX64_ZERO ",v1=" HEX64_ZERO,
        "t=1700000000,v1=0000000000000000000000000000000000000000000000000000000000000g00",
        "t=1700000000,v1=000000000000000000000000000000000000000000000000000000000000000", /* 63 */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (verify(fixed[i], T0) != ACT_SIGN_MALFORMED)
            fail_msg("not MALFORMED: \"%s\"", fixed[i]);
    }
    assert_int_equal(verify(NULL, T0), ACT_SIGN_MALFORMED);

    /* shapes derived from a genuine value, so only the shape is wrong */
    snprintf(buf, sizeof buf, "t=1700000000,v1=%s", upper);
    assert_int_equal(verify(buf, T0), ACT_SIGN_MALFORMED); /* uppercase hex */
    snprintf(buf, sizeof buf, "%s ", h);
    assert_int_equal(verify(buf, T0), ACT_SIGN_MALFORMED); /* trailing space */
    snprintf(buf, sizeof buf, "%s\r\n", h);
    assert_int_equal(verify(buf, T0), ACT_SIGN_MALFORMED);
    snprintf(buf, sizeof buf, "t=01700000000%s", h + strlen("t=1700000000"));
    assert_int_equal(verify(buf, T0), ACT_SIGN_MALFORMED);
    assert_int_equal(verify(h, T0), ACT_SIGN_OK); /* and the genuine one passes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer_basic),
        cmocka_unit_test(test_known_answer_empty_body_t_zero),
        cmocka_unit_test(test_known_answer_body_with_nul),
        cmocka_unit_test(test_known_answer_long_secrets),
        cmocka_unit_test(test_known_answer_binary_secret),
        cmocka_unit_test(test_sign_largest_t_fits),
        cmocka_unit_test(test_sign_bad_arguments),
        cmocka_unit_test(test_verify_window),
        cmocka_unit_test(test_verify_mismatch),
        cmocka_unit_test(test_verify_forgery_beats_staleness),
        cmocka_unit_test(test_verify_malformed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
