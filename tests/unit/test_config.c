/* test_config: environment parsing and host:port parsing (cdp_config), and
 * the log lines through which configuration errors are reported (cdp_log).
 *
 * Log lines are captured by pointing stderr at a temporary file for the
 * duration of one call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cdp_config.h"
#include "cdp_log.h"

#define VAR "CDP_TEST_CONFIG_VALUE"
#define CAPTURE_MAX 4096

/* ------------------------------------------------------------ stderr capture */

static int saved_stderr = -1;
static FILE *capture_file;

static void capture_begin(void)
{
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written meanwhile (static buffer). */
static const char *capture_end(void)
{
    static char buf[CAPTURE_MAX];
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    rewind(capture_file);
    size_t n = fread(buf, 1, sizeof buf - 1, capture_file);
    buf[n] = '\0';
    fclose(capture_file);
    return buf;
}

/* Parses one captured line as a JSON object. */
static json_t *parse_line(const char *line)
{
    json_error_t err;
    json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &err);
    if (!j)
        fail_msg("not JSON: %s (%s)", line, err.text);
    assert_true(json_is_object(j));
    return j;
}

static int setup(void **state)
{
    (void)state;
    cdp_log_init("config-test");
    cdp_log_set_level(CDP_LOG_DEBUG);
    unsetenv(VAR);
    return 0;
}

/* ------------------------------------------------------------ cdp_env_str */

static void test_env_str(void **state)
{
    (void)state;
    unsetenv(VAR);
    assert_string_equal(cdp_env_str(VAR, "def"), "def");
    assert_null(cdp_env_str(VAR, NULL));
    setenv(VAR, "", 1);
    assert_string_equal(cdp_env_str(VAR, "def"), "def");
    setenv(VAR, "value", 1);
    assert_string_equal(cdp_env_str(VAR, "def"), "value");
    unsetenv(VAR);
}

/* ------------------------------------------------------------ cdp_env_int */

static int env_int(const char *value, int64_t min, int64_t max, int64_t *out)
{
    if (value)
        setenv(VAR, value, 1);
    else
        unsetenv(VAR);
    capture_begin();
    int rc = cdp_env_int(VAR, 7, min, max, out);
    capture_end();
    unsetenv(VAR);
    return rc;
}

static void test_env_int_valid(void **state)
{
    (void)state;
    int64_t out = 0;
    assert_int_equal(env_int(NULL, 0, 100, &out), 0);
    assert_int_equal(out, 7);
    assert_int_equal(env_int("", 0, 100, &out), 0);
    assert_int_equal(out, 7);
    assert_int_equal(env_int("42", 0, 100, &out), 0);
    assert_int_equal(out, 42);
    assert_int_equal(env_int("+5", 0, 100, &out), 0);
    assert_int_equal(out, 5);
    assert_int_equal(env_int("-3", -10, 10, &out), 0);
    assert_int_equal(out, -3);
    assert_int_equal(env_int("0", 0, 100, &out), 0);
    assert_int_equal(out, 0);
    assert_int_equal(env_int("100", 0, 100, &out), 0);
    assert_int_equal(out, 100);
    assert_int_equal(env_int("-9223372036854775808", INT64_MIN, INT64_MAX, &out), 0);
    assert_true(out == INT64_MIN);
    assert_int_equal(env_int("9223372036854775807", INT64_MIN, INT64_MAX, &out), 0);
    assert_true(out == INT64_MAX);
}

static void test_env_int_invalid(void **state)
{
    (void)state;
    const char *bad[] = {" 42", "42 ", "4x", "x", "0x10", "1e3", "1.0", "-", "+",
                         "9223372036854775808", "-9223372036854775809",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t out = 0;
        if (env_int(bad[i], INT64_MIN, INT64_MAX, &out) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    int64_t out = 0;
    assert_int_equal(env_int("101", 0, 100, &out), -1);
    assert_int_equal(env_int("-1", 0, 100, &out), -1);
}

static void test_env_int_error_is_logged(void **state)
{
    (void)state;
    setenv(VAR, "12abc", 1);
    int64_t out = 0;
    capture_begin();
    int rc = cdp_env_int(VAR, 7, 1, 65535, &out);
    const char *text = capture_end();
    unsetenv(VAR);
    assert_int_equal(rc, -1);

    json_t *line = parse_line(text);
    assert_string_equal(json_string_value(json_object_get(line, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "invalid configuration");
    assert_string_equal(json_string_value(json_object_get(line, "variable")), VAR);
    assert_string_equal(json_string_value(json_object_get(line, "value")), "12abc");
    assert_int_equal(json_integer_value(json_object_get(line, "min")), 1);
    assert_int_equal(json_integer_value(json_object_get(line, "max")), 65535);
    json_decref(line);
}

/* ------------------------------------------------------------ cdp_parse_hostport */

static void assert_hostport(const char *s, const char *host, int port)
{
    char h[64];
    int p = -1;
    if (cdp_parse_hostport(s, h, sizeof h, &p) != 0)
        fail_msg("rejected \"%s\"", s);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void test_hostport_valid(void **state)
{
    (void)state;
    assert_hostport("127.0.0.1:8080", "127.0.0.1", 8080);
    assert_hostport("localhost:0", "localhost", 0);
    assert_hostport("redis.default.svc:6379", "redis.default.svc", 6379);
    assert_hostport("[::1]:50051", "::1", 50051);
    assert_hostport("[fe80::1%eth0]:1", "fe80::1%eth0", 1);
    assert_hostport("h:65535", "h", 65535);
    assert_hostport("h:00080", "h", 80);
}

static void test_hostport_invalid(void **state)
{
    (void)state;
    const char *bad[] = {"", "host", "host:", ":80", "host:65536", "host:-1", "host:+80",
                         "host:80x", "host:800000", "::1:80", "[::1]", "[::1]80",
                         "[]:80", "[::1:80", "a b:80", "[::1]:", "host: 80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char h[64];
        int p = 0;
        if (cdp_parse_hostport(bad[i], h, sizeof h, &p) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static void test_hostport_buffer_size(void **state)
{
    (void)state;
    char h[4];
    int p = 0;
    assert_int_equal(cdp_parse_hostport("abcd:1", h, sizeof h, &p), -1);
    assert_int_equal(cdp_parse_hostport("abc:1", h, sizeof h, &p), 0);
    assert_string_equal(h, "abc");
}

/* ------------------------------------------------------------ log format */

static void test_log_line_format(void **state)
{
    (void)state;
    capture_begin();
    cdp_log(CDP_LOG_WARN, "cannot reach Redis", "{s:s,s:i}", "host", "10.0.0.1", "port", 6379);
    const char *text = capture_end();

    /* Exactly one line, fields in the documented order. */
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^\\{\"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                             "\\.[0-9]{3}Z\",\"level\":\"warn\",\"service\":\"config-test\","
                             "\"msg\":\"cannot reach Redis\",\"host\":\"10\\.0\\.0\\.1\","
                             "\"port\":6379\\}\n$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int match = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (match != 0)
        fail_msg("unexpected line: %s", text);
}

static void test_log_bad_format_does_not_crash(void **state)
{
    (void)state;
    capture_begin();
    cdp_log(CDP_LOG_ERROR, "with a broken format", "{s:s", "k", "v");
    cdp_log(CDP_LOG_ERROR, "with a null string", "{s:s}", "k", (const char *)NULL);
    cdp_log(CDP_LOG_ERROR, "not an object", "[i]", 1);
    const char *text = capture_end();

    int lines = 0;
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        json_t *line = parse_line(p);
        assert_non_null(json_object_get(line, "msg"));
        assert_true(json_is_string(json_object_get(line, "log_error")));
        json_decref(line);
        lines++;
    }
    assert_int_equal(lines, 3);
}

static void test_log_level_filter(void **state)
{
    (void)state;
    cdp_log_set_level(CDP_LOG_WARN);
    assert_false(cdp_log_enabled(CDP_LOG_INFO));
    assert_true(cdp_log_enabled(CDP_LOG_ERROR));
    capture_begin();
    cdp_log(CDP_LOG_INFO, "hidden", NULL);
    cdp_log(CDP_LOG_ERROR, "shown", NULL);
    const char *text = capture_end();
    assert_null(strstr(text, "hidden"));
    assert_non_null(strstr(text, "\"msg\":\"shown\""));

    setenv("CDP_LOG_LEVEL", "DEBUG", 1);
    cdp_log_init("config-test");
    assert_true(cdp_log_enabled(CDP_LOG_DEBUG));
    setenv("CDP_LOG_LEVEL", "error", 1);
    cdp_log_init("config-test");
    assert_false(cdp_log_enabled(CDP_LOG_WARN));
    setenv("CDP_LOG_LEVEL", "loud", 1);
    capture_begin();
    cdp_log_init("config-test");
    text = capture_end();
    assert_true(cdp_log_enabled(CDP_LOG_INFO));
    assert_false(cdp_log_enabled(CDP_LOG_DEBUG));
    assert_non_null(strstr(text, "\"value\":\"loud\""));
    unsetenv("CDP_LOG_LEVEL");
    cdp_log_set_level(CDP_LOG_DEBUG);
}

static void test_log_invalid_utf8_message(void **state)
{
    (void)state;
    char msg[] = {'b', 'a', 'd', (char)0xc3, '!', 0};
    capture_begin();
    cdp_log(CDP_LOG_INFO, msg, NULL);
    const char *text = capture_end();
    json_t *line = parse_line(text);
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "bad?!");
    json_decref(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_env_str, setup),
        cmocka_unit_test_setup(test_env_int_valid, setup),
        cmocka_unit_test_setup(test_env_int_invalid, setup),
        cmocka_unit_test_setup(test_env_int_error_is_logged, setup),
        cmocka_unit_test_setup(test_hostport_valid, setup),
        cmocka_unit_test_setup(test_hostport_invalid, setup),
        cmocka_unit_test_setup(test_hostport_buffer_size, setup),
        cmocka_unit_test_setup(test_log_line_format, setup),
        cmocka_unit_test_setup(test_log_bad_format_does_not_crash, setup),
        cmocka_unit_test_setup(test_log_level_filter, setup),
        cmocka_unit_test_setup(test_log_invalid_utf8_message, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
