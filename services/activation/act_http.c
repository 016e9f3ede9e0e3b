/* act_http: outbound POSTs with libcurl's multi interface on a libuv loop
 * (see act_http.h).
 *
 * How the two event systems meet:
 *  - curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION); each
 *    watched socket gets a uv_poll_t (act__sock), attached to curl's socket
 *    with curl_multi_assign so the next call for it finds it again;
 *  - curl tells us when it next needs time (CURLMOPT_TIMERFUNCTION): one
 *    uv_timer_t. A timeout of 0 arms the timer for 0 ms, so curl is called
 *    back from the loop and never from inside its own callback;
 *  - a readable/writable socket or the timer calls curl_multi_socket_action,
 *    then act__drain reads finished transfers (curl_multi_info_read) and
 *    calls their callbacks.
 * User callbacks run only from act__drain or act_http_close, never while
 * curl is on the stack, so a callback may post new requests or close.
 *
 * Connections are kept in the multi handle's cache and reused by later
 * requests to the same host (HTTP keep-alive). curl_global_init is
 * reference counted by curl: each act_http_new takes one reference and the
 * end of act_http_close gives it back. */
#include "act_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cdp_log.h"

#define ACT_HTTP_USER_AGENT "cdp-activation/1"
#define ACT_HTTP_PROTOCOLS "http,https"
#define ACT_HTTP_ERR_ABORTED "aborted"
#define ACT_HTTP_NS_PER_MS 1e6
enum {
    ACT_HTTP_BODY_MAX = 4096, /* response bytes kept; a longer body ends the read */
    ACT_HTTP_ERR_MAX = CURL_ERROR_SIZE + 64,
};

typedef struct act__req act__req;

typedef enum {
    ACT__OPEN,     /* takes requests */
    ACT__ABORTING, /* act_http_close is failing the requests in flight */
    ACT__CLOSED,   /* handles are closing; curl's callbacks are ignored */
} act__state;

struct act_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    act__req *reqs;       /* in flight, doubly linked */
    size_t in_flight;
    act__state state;
    int closes_pending;   /* handles whose close callback has not run yet */
    void (*done)(void *ud);
    void *done_ud;
};

struct act__req {
    act_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *body;           /* our copy: curl reads it during the transfer */
    int timeout_ms;
    uint64_t started_ns;
    act_http_cb cb;
    void *ud;
    act__req *prev, *next;
    int body_capped;      /* the response was longer than ACT_HTTP_BODY_MAX */
    size_t resp_len;
    char resp[ACT_HTTP_BODY_MAX + 1];
    char errbuf[CURL_ERROR_SIZE];
};

/* The uv_poll_t watching one of curl's sockets. */
typedef struct {
    uv_poll_t poll;
    act_http *h;
    curl_socket_t fd;
} act__sock;

/* ------------------------------------------------------------------ handles */

/* Counts down the handles still closing; the last one frees everything:
 * curl closes its cached connections here, after every uv_poll_t on them is
 * gone, then the loop is told we are done. */
static void act__on_handle_closed(uv_handle_t *handle)
{
    act_http *h = handle->data;
    if (handle->type == UV_POLL)
        free(handle); /* the act__sock, whose first member is the poll */
    if (--h->closes_pending > 0 || h->state != ACT__CLOSED)
        return; /* more to come, or just a socket curl stopped using */
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, NULL);
    curl_multi_cleanup(h->multi);
    curl_global_cleanup();
    void (*done)(void *) = h->done;
    void *done_ud = h->done_ud;
    free(h);
    if (done)
        done(done_ud);
}

/* Stops watching a socket now (so its fd number may be watched again at
 * once, even by a new poll) and frees the poll once libuv lets go of it. */
static void act__sock_close(act__sock *s)
{
    curl_multi_assign(s->h->multi, s->fd, NULL);
    uv_poll_stop(&s->poll);
    s->h->closes_pending++;
    uv_close((uv_handle_t *)&s->poll, act__on_handle_closed);
}

/* ------------------------------------------------------------------ completion */

static void act__req_free(act__req *r)
{
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r);
}

/* Takes r out of the multi handle and the in-flight list. r stays valid. */
static void act__req_detach(act__req *r)
{
    act_http *h = r->h;
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    h->in_flight--;
}

static double act__elapsed_ms(const act__req *r)
{
    return (double)(uv_hrtime() - r->started_ns) / ACT_HTTP_NS_PER_MS;
}

/* Turns a finished transfer into its act_http_result text. err is filled
 * when the transfer failed; returns 1 then, 0 when a status was received. */
static int act__outcome(act__req *r, CURLcode code, long status, long os_errno, char *err,
                        size_t errlen)
{
    if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && r->body_capped && status > 0))
        return 0; /* a capped body was cut short on purpose; the status stands */
    if (code == CURLE_OPERATION_TIMEDOUT)
        snprintf(err, errlen, "timeout after %d ms", r->timeout_ms);
    else if (code == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED)
        snprintf(err, errlen, "connection refused");
    else if (r->errbuf[0])
        snprintf(err, errlen, "%s", r->errbuf);
    else
        snprintf(err, errlen, "%s", curl_easy_strerror(code));
    return 1;
}

/* Completes the transfer of r (curl finished it with code): detaches it,
 * calls the callback once, frees it. */
static void act__complete(act__req *r, CURLcode code)
{
    long status = 0, os_errno = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    act__req_detach(r);

    char err[ACT_HTTP_ERR_MAX];
    act_http_result res = {0};
    res.failed = act__outcome(r, code, status, os_errno, err, sizeof err);
    res.status = res.failed ? 0 : status;
    res.err = res.failed ? err : NULL;
    r->resp[r->resp_len] = '\0';
    res.body = r->resp;
    res.body_len = r->resp_len;
    res.total_ms = act__elapsed_ms(r);
    r->cb(&res, r->ud);
    act__req_free(r);
}

/* Completes every transfer curl has finished. Stops when a callback closed
 * the client: act_http_close has then aborted the rest. */
static void act__drain(act_http *h)
{
    CURLMsg *msg;
    int left;
    while (h->state == ACT__OPEN && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &r);
        act__complete((act__req *)r, msg->data.result); /* msg is invalid from here */
    }
}

/* ------------------------------------------------------------------ curl -> uv */

static void act__on_poll(uv_poll_t *poll, int status, int events)
{
    act__sock *s = (act__sock *)poll;
    act_http *h = s->h;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    /* may call act__on_socket with CURL_POLL_REMOVE and close s: do not
     * touch s after this */
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    act__drain(h);
}

static void act__on_timer(uv_timer_t *timer)
{
    act_http *h = timer->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    act__drain(h);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl asks, or stop. Runs
 * inside curl calls; it only changes what the loop watches. */
static int act__on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    act_http *h = userp;
    act__sock *s = socketp;
    if (h->state == ACT__CLOSED)
        return 0; /* act_http_close has closed every poll */
    if (what == CURL_POLL_REMOVE) {
        if (s)
            act__sock_close(s);
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -1; /* curl fails the transfer */
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = h;
        s->h = h;
        s->fd = fd;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, act__on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer; 0 or more (re)arms it. */
static int act__on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    act_http *h = userp;
    if (h->state == ACT__CLOSED)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, act__on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* CURLOPT_WRITEFUNCTION: keeps the first ACT_HTTP_BODY_MAX bytes. One byte
 * more ends the transfer (returning less than given), so an endless body
 * costs neither memory nor time; act__outcome still reports the status. */
static size_t act__on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    act__req *r = ud;
    size_t n = size * nmemb;
    size_t room = ACT_HTTP_BODY_MAX - r->resp_len;
    if (n > room) {
        memcpy(r->resp + r->resp_len, data, room);
        r->resp_len += room;
        r->body_capped = 1;
        return 0;
    }
    memcpy(r->resp + r->resp_len, data, n);
    r->resp_len += n;
    return n;
}

/* ------------------------------------------------------------------ API */

act_http *act_http_new(uv_loop_t *loop)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cdp_log(CDP_LOG_ERROR, "cannot initialise libcurl", NULL);
        return NULL;
    }
    act_http *h = calloc(1, sizeof *h);
    if (h == NULL || (h->multi = curl_multi_init()) == NULL) {
        cdp_log(CDP_LOG_ERROR, "cannot create the HTTP client", NULL);
        free(h);
        curl_global_cleanup();
        return NULL;
    }
    h->loop = loop;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, act__on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, act__on_curl_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

/* Header lines go out verbatim: one with CR or LF would smuggle in more. */
static int act__header_ok(const char *line)
{
    return strpbrk(line, "\r\n") == NULL && strchr(line, ':') != NULL;
}

/* Builds r's header list: the caller's lines, then "Expect:" so curl never
 * waits for a "100 Continue" before sending the body. */
static int act__headers(act__req *r, const char *const *headers)
{
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *l;
        if (!act__header_ok(headers[i]) || (l = curl_slist_append(r->headers, headers[i])) == NULL)
            return -1;
        r->headers = l;
    }
    struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
    if (l == NULL)
        return -1;
    r->headers = l;
    return 0;
}

/* Sets every option of one request; returns 0 or -1. */
static int act__setopts(act__req *r, const char *url, size_t body_len)
{
    CURL *e = r->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, ACT_HTTP_PROTOCOLS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, ACT_HTTP_USER_AGENT) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, act__on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, r) != CURLE_OK;
    return bad ? -1 : 0;
}

int act_http_post(act_http *h, const char *url, const char *const *headers, const char *body,
                  size_t body_len, int timeout_ms, act_http_cb cb, void *ud)
{
    if (h == NULL || h->state != ACT__OPEN || url == NULL || (body == NULL && body_len > 0) ||
        timeout_ms <= 0 || cb == NULL)
        return -1;
    act__req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -1;
    r->h = h;
    r->cb = cb;
    r->ud = ud;
    r->timeout_ms = timeout_ms;
    r->body = malloc(body_len + 1); /* +1: a non-NULL copy of an empty body */
    r->easy = curl_easy_init();
    if (r->body == NULL || r->easy == NULL || act__headers(r, headers) != 0)
        goto fail;
    if (body_len > 0)
        memcpy(r->body, body, body_len);
    if (act__setopts(r, url, body_len) != 0)
        goto fail;
    r->started_ns = uv_hrtime();
    if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
        goto fail;
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->in_flight++;
    return 0;
fail:
    curl_easy_cleanup(r->easy);
    act__req_free(r);
    return -1;
}

size_t act_http_in_flight(const act_http *h)
{
    return h ? h->in_flight : 0;
}

/* Walks the uv handles of our loop to close the polls that are ours and
 * still open: curl keeps watching the sockets of idle keep-alive
 * connections, and no poll may outlive the client. */
static void act__close_poll_walk(uv_handle_t *handle, void *arg)
{
    act_http *h = arg;
    if (handle->type != UV_POLL || handle->data != h || uv_is_closing(handle))
        return;
    act__sock_close((act__sock *)handle);
}

void act_http_close(act_http *h, void (*done)(void *ud), void *ud)
{
    if (h == NULL || h->state != ACT__OPEN)
        return; /* also a second call from an abort callback */
    h->state = ACT__ABORTING;
    h->done = done;
    h->done_ud = ud;
    /* Removing a transfer may make curl drop sockets (CURL_POLL_REMOVE):
     * those polls close the normal way while the state is ABORTING. */
    while (h->reqs) {
        act__req *r = h->reqs;
        act__req_detach(r);
        act_http_result res = {.failed = 1, .err = ACT_HTTP_ERR_ABORTED, .body = "",
                               .total_ms = act__elapsed_ms(r)};
        r->cb(&res, r->ud);
        act__req_free(r);
    }
    h->state = ACT__CLOSED;
    uv_walk(h->loop, act__close_poll_walk, h);
    h->closes_pending++;
    uv_close((uv_handle_t *)&h->timer, act__on_handle_closed);
}
