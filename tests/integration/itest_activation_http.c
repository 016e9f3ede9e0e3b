/* itest_activation_http: act_http (and act_sign) against real HTTP receivers
 * on loopback: two node processes running tests/tools/webhook-receiver.js,
 * one answering at once ("fast") and one told to wait ("slow"), plus a port
 * nothing listens on.
 *
 * Checks: a POST arrives with the exact body and headers and a signature the
 * receiver's independent (node crypto) check accepts; statuses are reported
 * as received; sequential requests reuse one connection; the response body
 * is capped at 4 KiB; a timeout fails within about the timeout; a closed
 * port reports "connection refused"; 50 requests to the fast receiver all
 * finish within 1 s while requests to the slow one are pending (isolation);
 * act_http_close with requests in flight, also from inside a callback,
 * calls every callback exactly once; and the loop ends with no handle left.
 *
 * Needs node on PATH: without it the program prints "SKIPPED: node not
 * found" and exits 0. CDP_WEBHOOK_RECEIVER overrides the receiver script's
 * path (default: ../tools/webhook-receiver.js next to this source). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "act_http.h"
#include "act_sign.h"
#include "itest_util.h"

#define CHECK ITEST_CHECK

#define SECRET "whsec_itest"
#define PORT_LO 22000
#define PORT_HI 22999
#define TEXT_MAX 512

enum {
    TIMEOUT_MS = 5000,       /* requests that should succeed */
    WAIT_LIMIT_MS = 15000,   /* any wait for callbacks */
    SLOW_DELAY_MS = 2000,    /* what the slow receiver waits before answering */
    SHORT_TIMEOUT_MS = 400,  /* the request that must time out */
    TIMEOUT_SLACK_MS = 300,  /* how late a timeout may be reported */
    FAST_N = 50,
    SLOW_N = 10,
    FAST_LIMIT_MS = 1000,    /* all fast requests done within this */
    BODY_CAP = 4096,
    BIG_BODY = 10000,
    CLOSE_N = 5,
    SETTLE_MS = 200,         /* lets requests reach the slow receiver */
};

static uv_loop_t *loop;
static uv_timer_t tick; /* keeps uv_run(ONCE) from blocking past a wait's limit */
static char receiver_js[TEXT_MAX];

/* ------------------------------------------------------------------ requests */

typedef struct {
    int calls;          /* callbacks seen: must end at exactly 1 */
    int failed;
    long status;
    char err[TEXT_MAX];
    char body[BODY_CAP + 1];
    size_t body_len;
    double total_ms;
    uint64_t done_ns;
    act_http *post_again; /* when set, the callback tries to post on it */
    int post_again_rc;
    act_http *close_from_cb; /* when set, the callback closes it */
} result;

static int closed_flag;

static void on_closed(void *ud) { (*(int *)ud)++; }

static void on_result(const act_http_result *res, void *ud)
{
    result *r = ud;
    r->calls++;
    r->failed = res->failed;
    r->status = res->status;
    snprintf(r->err, sizeof r->err, "%s", res->err ? res->err : "");
    r->body_len = res->body_len;
    memcpy(r->body, res->body, res->body_len < BODY_CAP ? res->body_len : BODY_CAP);
    r->body[r->body_len < BODY_CAP ? r->body_len : BODY_CAP] = '\0';
    r->total_ms = res->total_ms;
    r->done_ns = uv_hrtime();
    if (r->post_again)
        r->post_again_rc = act_http_post(r->post_again, "http://127.0.0.1:1/", NULL, "", 0,
                                         TIMEOUT_MS, on_result, r);
    if (r->close_from_cb)
        act_http_close(r->close_from_cb, on_closed, &closed_flag);
}

static double ms_since(uint64_t ns) { return (double)(uv_hrtime() - ns) / 1e6; }

static void on_tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until the n results each have a callback, or limit_ms. */
static int wait_results(result *rs, int n, int limit_ms)
{
    uint64_t start = uv_hrtime();
    uv_timer_start(&tick, on_tick, 10, 10);
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += rs[i].calls > 0;
        if (done == n || ms_since(start) > limit_ms) {
            uv_timer_stop(&tick);
            return done == n;
        }
        uv_run(loop, UV_RUN_ONCE);
    }
}

/* Runs the loop for ms (timers and sockets keep being served). */
static void run_for(int ms)
{
    uint64_t start = uv_hrtime();
    uv_timer_start(&tick, on_tick, 10, 10);
    while (ms_since(start) < ms)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
}

static int post(act_http *h, const char *url, const char *const *headers, const char *body,
                size_t len, int timeout_ms, result *r)
{
    memset(r, 0, sizeof *r);
    return act_http_post(h, url, headers, body, len, timeout_ms, on_result, r);
}

/* One POST, waited for. */
static result post_wait(act_http *h, const char *url, const char *const *headers,
                        const char *body, int timeout_ms)
{
    result r;
    if (post(h, url, headers, body, strlen(body), timeout_ms, &r) != 0) {
        r.calls = -1;
        snprintf(r.err, sizeof r.err, "act_http_post refused");
        return r;
    }
    wait_results(&r, 1, WAIT_LIMIT_MS);
    return r;
}

static void url_of(char *out, int port, const char *path)
{
    snprintf(out, TEXT_MAX, "http://127.0.0.1:%d%s", port, path);
}

/* Programs a receiver's answers (POST /_control). */
static void control(act_http *h, int port, const char *json)
{
    char url[TEXT_MAX];
    url_of(url, port, "/_control");
    const char *hdr[] = {"Content-Type: application/json", NULL};
    result r = post_wait(h, url, hdr, json, TIMEOUT_MS);
    CHECK(r.calls == 1 && !r.failed && r.status == 200, "control %s: status %ld err %s", json,
          r.status, r.err);
}

/* ------------------------------------------------------------------ receivers */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* A port in PORT_LO..PORT_HI that binds now and is not in used[0..n). */
static int pick_port(const int *used, int n)
{
    int span = PORT_HI - PORT_LO + 1;
    int start = (int)(getpid() % span);
    for (int i = 0; i < span; i++) {
        int port = PORT_LO + (start + i * 7) % span;
        int taken = 0;
        for (int j = 0; j < n; j++)
            taken |= used[j] == port;
        if (taken)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = loopback(port);
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return port;
    }
    return -1;
}

static int accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int node_found(void)
{
    char *argv[] = {"node", "--version", NULL};
    pid_t pid = itest_spawn(argv, NULL);
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

/* Starts the receiver on port, logging to log, and waits until it listens. */
static pid_t start_receiver(int port, const char *log)
{
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[] = {"node", receiver_js, "--port", port_text, "--secret", SECRET,
                    "--log", (char *)log, "--max-seconds", "300", NULL};
    pid_t pid = itest_spawn(argv, NULL);
    int up = 0;
    for (int i = 0; i < ITEST_READY_TIMEOUT_MS / ITEST_POLL_MS && !(up = accepts(port)); i++)
        itest_sleep_ms(ITEST_POLL_MS);
    CHECK(up, "receiver on port %d never listened (%s)", port, receiver_js);
    return pid;
}

/* The receiver's log: one JSON object per line, as an array (new ref). */
static json_t *read_log(const char *path)
{
    json_t *all = json_array();
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *e = json_loads(line, 0, NULL);
        if (e)
            json_array_append_new(all, e);
    }
    free(line);
    if (f)
        fclose(f);
    return all;
}

static const char *str_at(json_t *obj, const char *path1, const char *path2)
{
    json_t *v = json_object_get(obj, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* ------------------------------------------------------------------ cases */

static int fast_port, slow_port, closed_port;
static char fast_log[TEXT_MAX], slow_log[TEXT_MAX];

static void test_delivery(act_http *h)
{
    char url[TEXT_MAX], sig[ACT_SIGN_VALUE_MAX], sig_header[TEXT_MAX];
    url_of(url, fast_port, "/hook?x=1");
    const char *body = "{\"event\":\"segment.entered\",\"name\":\"J\xc3\xa9r\xc3\xb4me\",\"n\":1}";
    CHECK(act_sign(SECRET, strlen(SECRET), (int64_t)time(NULL), body, strlen(body), sig) == 0,
          "signs");
    snprintf(sig_header, sizeof sig_header, "%s: %s", ACT_SIGN_HEADER, sig);
    const char *hdr[] = {"Content-Type: application/json", "X-Cdp-Delivery-Id: d-123", sig_header,
                         NULL};
    result r = post_wait(h, url, hdr, body, TIMEOUT_MS);
    CHECK(r.calls == 1 && !r.failed && r.status == 200, "delivery: status %ld err %s", r.status,
          r.err);
    CHECK(strcmp(r.body, "{\"status\":200}") == 0 && r.body_len == strlen(r.body),
          "delivery: response body kept: %s", r.body);
    CHECK(r.total_ms > 0 && r.total_ms < TIMEOUT_MS, "delivery: total_ms %.1f", r.total_ms);

    /* the same signature over a body one byte longer */
    char altered[TEXT_MAX];
    snprintf(altered, sizeof altered, "%s ", body);
    r = post_wait(h, url, hdr, altered, TIMEOUT_MS);
    CHECK(r.calls == 1 && r.status == 200, "altered: status %ld err %s", r.status, r.err);
    const char *ct[] = {"Content-Type: application/json", NULL};
    r = post_wait(h, url, ct, "", TIMEOUT_MS);
    CHECK(r.calls == 1 && r.status == 200, "empty body: status %ld err %s", r.status, r.err);

    json_t *log = read_log(fast_log);
    CHECK(json_array_size(log) == 3, "delivery: %zu requests recorded", json_array_size(log));
    json_t *e = json_array_get(log, 0);
    CHECK(strcmp(str_at(e, "method", NULL), "POST") == 0, "method %s", str_at(e, "method", NULL));
    CHECK(strcmp(str_at(e, "path", NULL), "/hook?x=1") == 0, "path %s", str_at(e, "path", NULL));
    CHECK(strcmp(str_at(e, "body", NULL), body) == 0, "exact body, got %s", str_at(e, "body", NULL));
    CHECK(strcmp(str_at(e, "headers", "content-type"), "application/json") == 0, "content-type");
    CHECK(strcmp(str_at(e, "headers", "x-cdp-delivery-id"), "d-123") == 0, "custom header");
    CHECK(strcmp(str_at(e, "headers", "x-cdp-signature"), sig) == 0, "signature header %s",
          str_at(e, "headers", "x-cdp-signature"));
    CHECK(strcmp(str_at(e, "headers", "user-agent"), "cdp-activation/1") == 0, "user-agent %s",
          str_at(e, "headers", "user-agent"));
    CHECK(json_object_get(json_object_get(e, "headers"), "expect") == NULL, "no Expect header");
    CHECK(json_is_true(json_object_get(e, "signature_valid")),
          "node's HMAC check accepts act_sign's signature");
    CHECK(json_is_false(json_object_get(json_array_get(log, 1), "signature_valid")),
          "node's HMAC check refuses it for an altered body");
    json_t *empty = json_array_get(log, 2);
    CHECK(strcmp(str_at(empty, "body", NULL), "") == 0 &&
              strcmp(str_at(empty, "headers", "content-length"), "0") == 0,
          "empty body sent as Content-Length: 0");
    json_decref(log);
}

/* Statuses as the receiver answers them; sequential requests share one
 * kept-alive connection (the receiver sees one client port). */
static void test_statuses_and_reuse(act_http *h)
{
    control(h, fast_port, "{\"respond\":[500,503,200],\"default\":202,\"clear\":true}");
    char url[TEXT_MAX];
    url_of(url, fast_port, "/status");
    const long want[] = {500, 503, 200, 202, 202};
    size_t n = sizeof want / sizeof want[0];
    for (size_t i = 0; i < n; i++) {
        result r = post_wait(h, url, NULL, "{}", TIMEOUT_MS);
        CHECK(r.calls == 1 && !r.failed && r.status == want[i], "status %zu: want %ld got %ld %s",
              i, want[i], r.status, r.err);
    }
    json_t *log = read_log(fast_log);
    size_t total = json_array_size(log);
    CHECK(total >= n, "status requests recorded: %zu", total);
    json_int_t port0 = json_integer_value(json_object_get(json_array_get(log, total - n),
                                                          "remote_port"));
    int same = port0 > 0;
    for (size_t i = total - n; i < total; i++)
        same &= json_integer_value(json_object_get(json_array_get(log, i), "remote_port")) == port0;
    CHECK(same, "sequential requests reused one connection");
    json_decref(log);
    control(h, fast_port, "{\"default\":200}");
}

static void test_body_cap(act_http *h)
{
    char url[TEXT_MAX], json[TEXT_MAX];
    url_of(url, fast_port, "/big");
    snprintf(json, sizeof json, "{\"response_bytes\":%d}", BIG_BODY);
    control(h, fast_port, json);
    result r = post_wait(h, url, NULL, "{}", TIMEOUT_MS);
    int all_x = 1;
    for (size_t i = 0; i < r.body_len && i < BODY_CAP; i++)
        all_x &= r.body[i] == 'x';
    CHECK(r.calls == 1 && !r.failed && r.status == 200 && r.body_len == BODY_CAP && all_x,
          "long body: status %ld, kept %zu bytes, err %s", r.status, r.body_len, r.err);
    snprintf(json, sizeof json, "{\"response_bytes\":%d}", BODY_CAP);
    control(h, fast_port, json);
    r = post_wait(h, url, NULL, "{}", TIMEOUT_MS);
    CHECK(r.calls == 1 && !r.failed && r.status == 200 && r.body_len == BODY_CAP,
          "a body of exactly the cap: status %ld, kept %zu", r.status, r.body_len);
    control(h, fast_port, "{\"response_bytes\":0}");
}

static void test_failures(act_http *h)
{
    char url[TEXT_MAX];
    char json[TEXT_MAX];
    snprintf(json, sizeof json, "{\"delay_ms\":%d}", SLOW_DELAY_MS);
    control(h, slow_port, json);

    url_of(url, slow_port, "/slow");
    result r = post_wait(h, url, NULL, "{}", SHORT_TIMEOUT_MS);
    char want[TEXT_MAX];
    snprintf(want, sizeof want, "timeout after %d ms", SHORT_TIMEOUT_MS);
    CHECK(r.calls == 1 && r.failed && strcmp(r.err, want) == 0, "timeout: failed %d err '%s'",
          r.failed, r.err);
    CHECK(r.total_ms >= SHORT_TIMEOUT_MS - 10 && r.total_ms < SHORT_TIMEOUT_MS + TIMEOUT_SLACK_MS,
          "timeout reported after %.0f ms", r.total_ms);

    url_of(url, closed_port, "/");
    r = post_wait(h, url, NULL, "{}", TIMEOUT_MS);
    CHECK(r.calls == 1 && r.failed && strcmp(r.err, "connection refused") == 0 &&
              r.total_ms < TIMEOUT_MS / 2,
          "closed port: failed %d err '%s' after %.0f ms", r.failed, r.err, r.total_ms);

    snprintf(url, sizeof url, "ftp://127.0.0.1:%d/", fast_port);
    r = post_wait(h, url, NULL, "{}", TIMEOUT_MS);
    CHECK(r.calls == 1 && r.failed && strstr(r.err, "ftp") != NULL,
          "ftp refused: failed %d err '%s'", r.failed, r.err);

    result never;
    url_of(url, fast_port, "/");
    const char *smuggle[] = {"X-A: 1\r\nX-B: 2", NULL};
    CHECK(post(h, url, smuggle, "{}", 2, TIMEOUT_MS, &never) == -1, "header with CRLF refused");
    CHECK(post(h, url, NULL, "{}", 2, 0, &never) == -1, "zero timeout refused");
    CHECK(post(h, url, NULL, NULL, 2, TIMEOUT_MS, &never) == -1, "NULL body with length refused");
    CHECK(never.calls == 0 && act_http_in_flight(h) == 0, "refused posts never call back");
}

/* 50 requests to the fast receiver finish while 10 to the slow one wait. */
static void test_isolation(act_http *h)
{
    static result slow[SLOW_N], fast[FAST_N];
    char slow_url[TEXT_MAX], fast_url[TEXT_MAX];
    url_of(slow_url, slow_port, "/slow");
    url_of(fast_url, fast_port, "/fast");
    size_t recorded_before = 0;
    json_t *log = read_log(fast_log);
    recorded_before = json_array_size(log);
    json_decref(log);

    uint64_t start = uv_hrtime();
    int started = 0;
    for (int i = 0; i < SLOW_N; i++)
        started += post(h, slow_url, NULL, "{}", 2, TIMEOUT_MS, &slow[i]) == 0;
    for (int i = 0; i < FAST_N; i++)
        started += post(h, fast_url, NULL, "{}", 2, TIMEOUT_MS, &fast[i]) == 0;
    CHECK(started == SLOW_N + FAST_N && act_http_in_flight(h) == SLOW_N + FAST_N,
          "all started: %d, in flight %zu", started, act_http_in_flight(h));

    int fast_done = wait_results(fast, FAST_N, FAST_LIMIT_MS);
    double fast_ms = 0;
    int ok = 0;
    for (int i = 0; i < FAST_N; i++) {
        ok += fast[i].calls == 1 && !fast[i].failed && fast[i].status == 200;
        double at = (double)(fast[i].done_ns - start) / 1e6;
        fast_ms = fast[i].calls && at > fast_ms ? at : fast_ms;
    }
    int slow_pending = 0;
    for (int i = 0; i < SLOW_N; i++)
        slow_pending += slow[i].calls == 0;
    CHECK(fast_done && ok == FAST_N, "fast: %d of %d answered 200 within %d ms", ok, FAST_N,
          FAST_LIMIT_MS);
    CHECK(slow_pending == SLOW_N, "slow ones still pending while the fast ones finished (%d)",
          slow_pending);
    printf("-- isolation: %d fast requests done after %.0f ms with %d slow ones pending\n",
           FAST_N, fast_ms, slow_pending);

    CHECK(wait_results(slow, SLOW_N, WAIT_LIMIT_MS), "slow ones finish");
    int slow_ok = 0;
    for (int i = 0; i < SLOW_N; i++)
        slow_ok += slow[i].calls == 1 && slow[i].status == 200 &&
                   slow[i].total_ms >= SLOW_DELAY_MS - 50;
    CHECK(slow_ok == SLOW_N, "slow: %d of %d answered 200 after the delay", slow_ok, SLOW_N);
    log = read_log(fast_log);
    CHECK(json_array_size(log) == recorded_before + FAST_N, "fast receiver recorded %zu",
          json_array_size(log) - recorded_before);
    json_decref(log);
    CHECK(act_http_in_flight(h) == 0, "nothing left in flight");
}

/* Close with requests in flight: each callback runs once with "aborted", a
 * post from inside one is refused, and done comes after. */
static void test_close_in_flight(void)
{
    act_http *h = act_http_new(loop);
    CHECK(h != NULL, "second client");
    if (!h)
        return;
    static result rs[CLOSE_N];
    char url[TEXT_MAX];
    url_of(url, slow_port, "/close");
    for (int i = 0; i < CLOSE_N; i++)
        post(h, url, NULL, "{}", 2, TIMEOUT_MS, &rs[i]);
    rs[0].post_again = h;
    run_for(SETTLE_MS); /* connected and sent; the receiver is waiting */
    CHECK(act_http_in_flight(h) == CLOSE_N, "in flight before close: %zu",
          act_http_in_flight(h));
    int closed = 0;
    act_http_close(h, on_closed, &closed);
    int aborted = 0;
    for (int i = 0; i < CLOSE_N; i++)
        aborted += rs[i].calls == 1 && rs[i].failed && strcmp(rs[i].err, "aborted") == 0;
    CHECK(aborted == CLOSE_N, "every callback ran once with 'aborted': %d", aborted);
    CHECK(rs[0].post_again_rc == -1, "a post while closing is refused");
    CHECK(closed == 0, "done comes from the loop, not from inside close");
    run_for(SETTLE_MS);
    CHECK(closed == 1, "done called once");
    int once = 1;
    for (int i = 0; i < CLOSE_N; i++)
        once &= rs[i].calls == 1;
    CHECK(once, "no callback ran again");
}

/* Close from inside a completion callback, with another request pending. */
static void test_close_from_callback(void)
{
    act_http *h = act_http_new(loop);
    CHECK(h != NULL, "third client");
    if (!h)
        return;
    static result rs[2];
    char fast_url[TEXT_MAX], slow_url[TEXT_MAX];
    url_of(fast_url, fast_port, "/cb");
    url_of(slow_url, slow_port, "/cb");
    post(h, fast_url, NULL, "{}", 2, TIMEOUT_MS, &rs[0]);
    post(h, slow_url, NULL, "{}", 2, TIMEOUT_MS, &rs[1]);
    rs[0].close_from_cb = h;
    closed_flag = 0;
    wait_results(rs, 2, WAIT_LIMIT_MS);
    CHECK(rs[0].calls == 1 && rs[0].status == 200, "first completes: %ld %s", rs[0].status,
          rs[0].err);
    CHECK(rs[1].calls == 1 && strcmp(rs[1].err, "aborted") == 0,
          "the pending one is aborted by the close in the callback: '%s'", rs[1].err);
    run_for(SETTLE_MS);
    CHECK(closed_flag == 1, "done called once: %d", closed_flag);
}

/* ------------------------------------------------------------------ main */

static void locate_receiver(void)
{
    const char *env = getenv("CDP_WEBHOOK_RECEIVER");
    if (env && *env) {
        snprintf(receiver_js, sizeof receiver_js, "%s", env);
        return;
    }
    /* __FILE__ is .../tests/integration/itest_activation_http.c */
    snprintf(receiver_js, sizeof receiver_js, "%s", __FILE__);
    char *slash = strrchr(receiver_js, '/');
    size_t dir = slash ? (size_t)(slash - receiver_js) : 0;
    snprintf(receiver_js + dir, sizeof receiver_js - dir, "%s../tools/webhook-receiver.js",
             slash ? "/" : "");
}

int main(void)
{
    if (!node_found()) {
        printf("SKIPPED: node not found\n");
        return 0;
    }
    locate_receiver();
    if (act_sign_init() != 0) {
        fprintf(stderr, "libsodium did not initialise\n");
        return 1;
    }
    int used[3] = {0, 0, 0};
    used[0] = fast_port = pick_port(used, 0);
    used[1] = slow_port = pick_port(used, 1);
    used[2] = closed_port = pick_port(used, 2);
    if (fast_port < 0 || slow_port < 0 || closed_port < 0) {
        fprintf(stderr, "no free port in %d..%d\n", PORT_LO, PORT_HI);
        return 1;
    }
    snprintf(fast_log, sizeof fast_log, "/tmp/itest_activation_http.%d.fast.jsonl", getpid());
    snprintf(slow_log, sizeof slow_log, "/tmp/itest_activation_http.%d.slow.jsonl", getpid());
    unlink(fast_log);
    unlink(slow_log);
    pid_t fast_pid = start_receiver(fast_port, fast_log);
    pid_t slow_pid = start_receiver(slow_port, slow_log);

    loop = uv_default_loop();
    uv_timer_init(loop, &tick);
    act_http *h = act_http_new(loop);
    CHECK(h != NULL, "client");
    if (h) {
        test_delivery(h);
        test_statuses_and_reuse(h);
        test_body_cap(h);
        test_failures(h);
        test_isolation(h);
        int closed = 0;
        act_http_close(h, on_closed, &closed); /* idle connections still open */
        run_for(SETTLE_MS);
        CHECK(closed == 1, "idle client closes");
    }
    test_close_in_flight();
    test_close_from_callback();

    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(loop) == 0, "every handle closed");
    itest_stop_process(fast_pid, ITEST_READY_TIMEOUT_MS);
    itest_stop_process(slow_pid, ITEST_READY_TIMEOUT_MS);
    if (itest_failed == 0) {
        unlink(fast_log);
        unlink(slow_log);
    } else {
        fprintf(stderr, "receiver logs kept: %s %s\n", fast_log, slow_log);
    }
    printf("%d passed, %d failed\n", itest_passed, itest_failed);
    return itest_failed ? 1 : 0;
}
