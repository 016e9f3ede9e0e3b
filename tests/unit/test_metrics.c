/* test_metrics: the Prometheus registry's text output and the HTTP listener
 * (cdp_metrics).
 *
 * The registry is process-wide and has no reset, so every test uses metric
 * names of its own. The HTTP test runs the listener on a real libuv loop on
 * 127.0.0.1 with an ephemeral port; a client thread talks to it over plain
 * blocking sockets and stops it through a uv_async when done. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "cdp_log.h"
#include "cdp_metrics.h"

#define RESPONSE_MAX 65536
#define CLIENT_TIMEOUT_S 5
#define THREADS 4
#define INCS_PER_THREAD 10000

/* Fails unless `expected` appears verbatim in the rendered text. */
static void assert_rendered(const char *expected)
{
    char *text = cdp_metrics_render();
    assert_non_null(text);
    if (!strstr(text, expected))
        fail_msg("missing:\n%s\nin:\n%s", expected, text);
    free(text);
}

static void assert_not_rendered(const char *unexpected)
{
    char *text = cdp_metrics_render();
    assert_non_null(text);
    if (strstr(text, unexpected))
        fail_msg("unexpected:\n%s\nin:\n%s", unexpected, text);
    free(text);
}

/* ------------------------------------------------------------ registry */

static void test_counter_lines_grouped_by_name(void **state)
{
    (void)state;
    cdp_metrics_help("t_req_total", "Requests handled.");
    cdp_metrics_inc("t_req_total", "method=\"A\"", 1);
    cdp_metrics_inc("t_other_total", "", 1);
    cdp_metrics_inc("t_req_total", "method=\"B\"", 1);
    cdp_metrics_inc("t_req_total", "method=\"A\"", 1);
    cdp_metrics_inc("t_req_total", "method=\"A\"", 0.5);
    assert_rendered("# HELP t_req_total Requests handled.\n"
                    "# TYPE t_req_total counter\n"
                    "t_req_total{method=\"A\"} 2.5\n"
                    "t_req_total{method=\"B\"} 1\n");
    assert_rendered("# TYPE t_other_total counter\nt_other_total 1\n");
    assert_not_rendered("# HELP t_other_total");
}

static void test_counter_ignores_decrements(void **state)
{
    (void)state;
    cdp_metrics_inc("t_mono_total", "", 3);
    cdp_metrics_inc("t_mono_total", "", -1);
    assert_rendered("\nt_mono_total 3\n");
}

static void test_gauge_and_type_conflict(void **state)
{
    (void)state;
    cdp_metrics_set("t_gauge", "", 5);
    cdp_metrics_set("t_gauge", "", -1.25);
    cdp_metrics_inc("t_gauge", "", 10);        /* wrong kind: ignored */
    cdp_metrics_observe("t_gauge", "x=\"1\"", 1); /* wrong kind: ignored */
    assert_rendered("# TYPE t_gauge gauge\nt_gauge -1.25\n");
    assert_not_rendered("t_gauge_bucket");
    cdp_metrics_set("t_gauge_small", "", 0.1);
    assert_rendered("\nt_gauge_small 0.1\n");
}

static void test_histogram_lines(void **state)
{
    (void)state;
    const char *l = "method=\"Get\"";
    /* Binary fractions, so the sum prints exactly: 12.758056640625. */
    cdp_metrics_observe("t_lat_seconds", l, 0.000244140625); /* <= 0.0005 */
    cdp_metrics_observe("t_lat_seconds", l, 0.00390625);     /* <= 0.005 */
    cdp_metrics_observe("t_lat_seconds", l, 0.00390625);
    cdp_metrics_observe("t_lat_seconds", l, 0.75);           /* <= 1 */
    cdp_metrics_observe("t_lat_seconds", l, 12);             /* +Inf only */
    assert_rendered("# TYPE t_lat_seconds histogram\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.0005\"} 1\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.001\"} 1\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.0025\"} 1\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.005\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.01\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.025\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.05\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.1\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.25\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"0.5\"} 3\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"1\"} 4\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"2.5\"} 4\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"5\"} 4\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"10\"} 4\n"
                    "t_lat_seconds_bucket{method=\"Get\",le=\"+Inf\"} 5\n"
                    "t_lat_seconds_sum{method=\"Get\"} 12.758056640625\n"
                    "t_lat_seconds_count{method=\"Get\"} 5\n");
}

static void test_histogram_bounds_are_inclusive(void **state)
{
    (void)state;
    cdp_metrics_observe("t_edge_seconds", "", 0.1);
    cdp_metrics_observe("t_edge_seconds", "", 10);
    assert_rendered("t_edge_seconds_bucket{le=\"0.05\"} 0\n"
                    "t_edge_seconds_bucket{le=\"0.1\"} 1\n");
    assert_rendered("t_edge_seconds_bucket{le=\"10\"} 2\n"
                    "t_edge_seconds_bucket{le=\"+Inf\"} 2\n"
                    "t_edge_seconds_sum 10.1\n"
                    "t_edge_seconds_count 2\n");
}

static void test_help_is_escaped(void **state)
{
    (void)state;
    cdp_metrics_help("t_esc", "back\\slash\nnewline");
    cdp_metrics_set("t_esc", "", 1);
    assert_rendered("# HELP t_esc back\\\\slash\\nnewline\n# TYPE t_esc gauge\n");
}

static void *inc_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < INCS_PER_THREAD; i++)
        cdp_metrics_inc("t_threads_total", "", 1);
    return NULL;
}

static void test_concurrent_increments(void **state)
{
    (void)state;
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, inc_many, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    char expected[64];
    snprintf(expected, sizeof expected, "\nt_threads_total %d\n", THREADS * INCS_PER_THREAD);
    assert_rendered(expected);
}

/* ------------------------------------------------------------ HTTP */

typedef struct {
    int port;
    uv_async_t done;
    cdp_metrics_http *http;
    char metrics[RESPONSE_MAX];
    char missing[RESPONSE_MAX];
    char health[RESPONSE_MAX];
    char post[RESPONSE_MAX];
    char garbage[RESPONSE_MAX];
    char huge[RESPONSE_MAX];
    char idle[RESPONSE_MAX];
} http_test;

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF, error or timeout into out (NUL-terminated). */
static void client_read_all(int fd, char *out)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, out + len, RESPONSE_MAX - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
}

/* Sends req (len bytes) on a new connection and stores the reply in out. */
static void client_exchange(int port, const char *req, size_t len, char *out)
{
    out[0] = '\0';
    int fd = client_connect(port);
    if (fd < 0)
        return;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, req + off, len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    client_read_all(fd, out);
    close(fd);
}

static void *http_client(void *arg)
{
    http_test *t = arg;
    /* Opened first and left silent: stop() must close it. */
    int idle = client_connect(t->port);

    const char *get_metrics = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    client_exchange(t->port, get_metrics, strlen(get_metrics), t->metrics);
    const char *get_nope = "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    client_exchange(t->port, get_nope, strlen(get_nope), t->missing);
    const char *get_health = "GET /healthz?verbose=1 HTTP/1.0\r\n\r\n";
    client_exchange(t->port, get_health, strlen(get_health), t->health);
    const char *post = "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    client_exchange(t->port, post, strlen(post), t->post);
    const char *garbage = "HELLO\r\n\r\n";
    client_exchange(t->port, garbage, strlen(garbage), t->garbage);

    size_t huge_len = 9000;
    char *huge = malloc(huge_len);
    if (huge) {
        memcpy(huge, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
        memset(huge + 30, 'a', huge_len - 30);
        client_exchange(t->port, huge, huge_len, t->huge);
        free(huge);
    }

    uv_async_send(&t->done);
    if (idle >= 0) {
        client_read_all(idle, t->idle);
        close(idle);
    }
    return NULL;
}

static void http_stop_cb(uv_async_t *a)
{
    http_test *t = a->data;
    cdp_metrics_http_stop(t->http);
    uv_close((uv_handle_t *)a, NULL);
}

static void assert_status(const char *response, const char *status_line)
{
    if (strncmp(response, status_line, strlen(status_line)) != 0)
        fail_msg("expected %s, got: %.200s", status_line, response);
    assert_non_null(strstr(response, "\r\nConnection: close\r\n"));
}

static const char *body_of(const char *response)
{
    const char *p = strstr(response, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_http_endpoints(void **state)
{
    (void)state;
    http_test *t = calloc(1, sizeof *t);
    assert_non_null(t);
    cdp_metrics_inc("t_http_hits_total", "path=\"/x\"", 7);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    t->port = cdp_metrics_http_start(&loop, "127.0.0.1", 0, &t->http);
    assert_true(t->port > 0);
    assert_int_equal(uv_async_init(&loop, &t->done, http_stop_cb), 0);
    t->done.data = t;

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, http_client, t), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    /* Every handle (listener, connections, timers) was closed. */
    assert_int_equal(uv_loop_close(&loop), 0);

    assert_status(t->metrics, "HTTP/1.1 200 OK\r\n");
    assert_non_null(strstr(t->metrics, "\r\nContent-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(body_of(t->metrics), "t_http_hits_total{path=\"/x\"} 7\n"));

    assert_status(t->missing, "HTTP/1.1 404 Not Found\r\n");
    assert_non_null(strstr(t->missing, "\r\nContent-Type: application/json\r\n"));
    assert_string_equal(body_of(t->missing), "{\"error\":\"not found\"}\n");

    assert_status(t->health, "HTTP/1.1 200 OK\r\n");
    assert_string_equal(body_of(t->health), "ok");

    assert_status(t->post, "HTTP/1.1 405 Method Not Allowed\r\n");
    assert_non_null(strstr(t->post, "\r\nAllow: GET\r\n"));
    assert_non_null(strstr(body_of(t->post), "\"error\""));

    assert_status(t->garbage, "HTTP/1.1 400 Bad Request\r\n");
    assert_status(t->huge, "HTTP/1.1 431 ");

    /* The idle connection was closed by stop() without a response. */
    assert_string_equal(t->idle, "");
    free(t);
}

static void test_http_start_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    cdp_metrics_http *h = NULL;
    assert_true(cdp_metrics_http_start(&loop, "not-an-address", 0, &h) < 0);
    assert_null(h);

    int port = cdp_metrics_http_start(&loop, "127.0.0.1", 0, &h);
    assert_true(port > 0);
    cdp_metrics_http *h2 = NULL;
    assert_int_equal(cdp_metrics_http_start(&loop, "127.0.0.1", port, &h2), UV_EADDRINUSE);
    assert_null(h2);
    cdp_metrics_http_stop(h);
    cdp_metrics_http_stop(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    cdp_log_init("metrics-test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_lines_grouped_by_name),
        cmocka_unit_test(test_counter_ignores_decrements),
        cmocka_unit_test(test_gauge_and_type_conflict),
        cmocka_unit_test(test_histogram_lines),
        cmocka_unit_test(test_histogram_bounds_are_inclusive),
        cmocka_unit_test(test_help_is_escaped),
        cmocka_unit_test(test_concurrent_increments),
        cmocka_unit_test(test_http_endpoints),
        cmocka_unit_test(test_http_start_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
