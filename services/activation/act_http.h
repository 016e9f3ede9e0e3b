/* act_http: outbound HTTP POSTs on a libuv loop with libcurl's multi
 * interface (curl_multi_socket_action driven by uv_poll and a uv_timer).
 *
 * Many requests run at once on one loop without threads; each has its own
 * timeout, so one slow receiver never delays another's requests. Redirects
 * are not followed; only http and https are allowed. */
#ifndef ACT_HTTP_H
#define ACT_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct act_http act_http;

typedef struct {
    /* Transport outcome: 0 when an HTTP status was received, else nonzero
     * and err says why ("timeout after 10000 ms", "connection refused",
     * ...). */
    int failed;
    long status;             /* HTTP status when !failed */
    const char *err;         /* when failed */
    const char *body;        /* response body (at most 4 KiB kept; NUL-terminated) */
    size_t body_len;
    double total_ms;         /* time the request took */
} act_http_result;

/* Called exactly once per request, on the loop thread; result is valid only
 * during the call. */
typedef void (*act_http_cb)(const act_http_result *result, void *ud);

/* One client per loop. Also takes a reference on libcurl's global state
 * (curl_global_init; curl counts them and act_http_close gives it back), so
 * no separate init call is needed. Returns NULL on failure (logged). */
act_http *act_http_new(uv_loop_t *loop);

/* POSTs body (copied) to url with the NULL-terminated "Name: value" header
 * lines (copied; headers may be NULL). timeout_ms bounds the whole request
 * (connect included). Sends User-Agent "cdp-activation/1" and no
 * "Expect: 100-continue"; without a Content-Type line curl sends
 * application/x-www-form-urlencoded, so callers set it. Connections to the
 * same host are kept alive and reused. A response body longer than 4 KiB
 * ends the read at 4 KiB: the status still counts (failed=0).
 * Returns 0 if started; -1 if it could not start (cb is then not called):
 * bad arguments (timeout_ms <= 0, a header line without ':' or with CR/LF),
 * out of memory, or the client is closing. */
int act_http_post(act_http *h, const char *url, const char *const *headers, const char *body,
                  size_t body_len, int timeout_ms, act_http_cb cb, void *ud);

/* Requests in flight. */
size_t act_http_in_flight(const act_http *h);

/* Aborts requests in flight (their callbacks run with failed=1, err
 * "aborted", before act_http_close returns), closes the handles, and calls
 * done(ud) on the loop once everything is freed (in a later loop turn; done
 * may be NULL). May be called from inside a request callback; a second
 * call is ignored. h is freed just before done runs: do not use it after
 * this call. */
void act_http_close(act_http *h, void (*done)(void *ud), void *ud);

#endif
