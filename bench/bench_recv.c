/* bench_recv: see bench_recv.h. One buffer per connection; complete
 * requests are consumed from its front, a partial one waits for more. */
#define _GNU_SOURCE   /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench_recv.h"

enum {
    RECV_HEADER_MAX = 16 * 1024,
    RECV_BODY_MAX = 4 * 1024 * 1024,
    RECV_READ_CHUNK = 64 * 1024,
    RECV_SIGNATURE_MAX = 256,
    RECV_BACKLOG = 128,
};

static const char recv_ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
static const char recv_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";

typedef struct recv_conn {
    uv_tcp_t tcp;
    bench_recv *r;
    struct recv_conn *prev, *next;
    char *buf;
    size_t len, cap;
    int continued, closing;
} recv_conn;

struct bench_recv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bench_recv_fn fn;
    void *ud;
    recv_conn *conns;
    int handles, stopped;
    uint64_t requests, refused;
};

/* What one header block says. */
typedef struct {
    int post, has_length, expect_continue, close;
    size_t length;
    char signature[RECV_SIGNATURE_MAX];
} recv_head;

uint64_t bench_recv_requests(const bench_recv *r) { return r->requests; }
uint64_t bench_recv_refused(const bench_recv *r) { return r->refused; }

/* ------------------------------------------------------------------ handles */

static void recv_maybe_free(bench_recv *r) {
    if (r->stopped && r->handles == 0)
        free(r);
}

static void recv_conn_closed(uv_handle_t *h) {
    recv_conn *c = h->data;
    bench_recv *r = c->r;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->buf);
    free(c);
    r->handles--;
    recv_maybe_free(r);
}

static void recv_conn_close(recv_conn *c) {
    if (c->closing)
        return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, recv_conn_closed);
}

static void recv_listener_closed(uv_handle_t *h) {
    bench_recv *r = h->data;
    r->handles--;
    recv_maybe_free(r);
}

void bench_recv_stop(bench_recv *r) {
    if (!r || r->stopped)
        return;
    r->stopped = 1;
    uv_close((uv_handle_t *)&r->listener, recv_listener_closed);
    for (recv_conn *c = r->conns; c; c = c->next)
        recv_conn_close(c);
}

/* ------------------------------------------------------------------ writing */

static void recv_written(uv_write_t *w, int status) {
    (void)status;
    free(w);
}

/* Queues a constant response (its text outlives the write). */
static void recv_send(recv_conn *c, const char *text, size_t len) {
    uv_write_t *w = malloc(sizeof(*w));
    if (!w) {
        recv_conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)len);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, recv_written) != 0) {
        free(w);
        recv_conn_close(c);
    }
}

static void recv_shut(uv_shutdown_t *s, int status) {
    (void)status;
    recv_conn *c = s->handle->data;
    free(s);
    recv_conn_close(c);
}

/* Answers a request it will not serve and closes once that is written. */
static void recv_refuse(recv_conn *c, const char *response) {
    c->r->refused++;
    recv_send(c, response, strlen(response));
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_shutdown_t *s = malloc(sizeof(*s));
    if (!s || uv_shutdown(s, (uv_stream_t *)&c->tcp, recv_shut) != 0) {
        free(s);
        recv_conn_close(c);
    }
}

/* ------------------------------------------------------------------ parsing */

/* 1 if line [p, p+n) is header `name` (case-insensitive); *value then
 * points at its value (leading blanks skipped) and *vlen its length. */
static int recv_header(const char *p, size_t n, const char *name, const char **value,
                       size_t *vlen) {
    size_t k = strlen(name);
    if (n <= k || p[k] != ':' || strncasecmp(p, name, k) != 0)
        return 0;
    const char *v = p + k + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return 1;
}

static void recv_parse_head(const char *buf, size_t hlen, recv_head *h) {
    memset(h, 0, sizeof(*h));
    h->post = hlen > 5 && memcmp(buf, "POST ", 5) == 0;
    const char *p = memchr(buf, '\n', hlen), *end = buf + hlen;
    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        size_t n = (size_t)(eol - p);
        if (n && p[n - 1] == '\r')
            n--;
        const char *v;
        size_t vl;
        if (recv_header(p, n, "Content-Length", &v, &vl)) {
            char num[24];
            if (vl && vl < sizeof(num) && strspn(v, "0123456789") >= vl) {
                memcpy(num, v, vl);
                num[vl] = '\0';
                h->length = (size_t)strtoull(num, NULL, 10);
                h->has_length = 1;
            }
        } else if (recv_header(p, n, "Expect", &v, &vl)) {
            h->expect_continue = vl == 12 && strncasecmp(v, "100-continue", 12) == 0;
        } else if (recv_header(p, n, "Connection", &v, &vl)) {
            h->close = vl == 5 && strncasecmp(v, "close", 5) == 0;
        } else if (recv_header(p, n, "X-Cdp-Signature", &v, &vl) &&
                   vl < sizeof(h->signature)) {
            memcpy(h->signature, v, vl);
            h->signature[vl] = '\0';
        }
        p = eol;
    }
}

/* Serves every complete request at the front of c's buffer. */
static void recv_process(recv_conn *c, uint64_t now) {
    while (!c->closing) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) {
            if (c->len > RECV_HEADER_MAX)
                recv_refuse(c, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        size_t hlen = (size_t)(end - c->buf) + 4;
        recv_head h;
        recv_parse_head(c->buf, hlen, &h);
        if (!h.post || !h.has_length || h.length > RECV_BODY_MAX) {
            recv_refuse(c, !h.post ? "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n"
                                     "Connection: close\r\n\r\n"
                           : !h.has_length ? "HTTP/1.1 411 Length Required\r\nContent-Length: "
                                             "0\r\nConnection: close\r\n\r\n"
                                           : "HTTP/1.1 413 Content Too Large\r\nContent-Length: "
                                             "0\r\nConnection: close\r\n\r\n");
            return;
        }
        size_t total = hlen + h.length;
        if (c->len < total) {
            if (h.expect_continue && !c->continued) {
                c->continued = 1;
                recv_send(c, recv_continue, sizeof(recv_continue) - 1);
            }
            return;
        }
        /* The buffer always keeps one spare byte (recv_alloc): NUL-terminate
         * the body in place and restore what follows it. */
        char saved = c->buf[total];
        c->buf[total] = '\0';
        c->r->requests++;
        c->r->fn(c->r->ud, c->buf + hlen, h.length, h.signature, now);
        c->buf[total] = saved;
        recv_send(c, recv_ok, sizeof(recv_ok) - 1);
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
        c->continued = 0;
        if (h.close) {
            recv_conn_close(c);
            return;
        }
    }
}

/* ------------------------------------------------------------------ reading */

static void recv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    (void)suggested;
    recv_conn *c = h->data;
    size_t want = c->len + RECV_READ_CHUNK + 1;
    if (c->cap < want) {
        char *b = realloc(c->buf, want);
        if (!b) {
            *out = uv_buf_init(NULL, 0);
            return;
        }
        c->buf = b;
        c->cap = want;
    }
    *out = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len - 1));
}

static void recv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    recv_conn *c = s->data;
    uint64_t now = uv_hrtime();
    if (nread < 0) {
        recv_conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    if (c->len > RECV_HEADER_MAX + RECV_BODY_MAX) {
        recv_refuse(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n");
        return;
    }
    recv_process(c, now);
}

static void recv_accept(uv_stream_t *server, int status) {
    bench_recv *r = server->data;
    if (status < 0 || r->stopped)
        return;
    recv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->r = r;
    uv_tcp_init(r->loop, &c->tcp);
    c->tcp.data = c;
    c->next = r->conns;
    if (r->conns)
        r->conns->prev = c;
    r->conns = c;
    r->handles++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, recv_alloc, recv_read) != 0) {
        recv_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
}

/* ------------------------------------------------------------------ start */

bench_recv *bench_recv_start(uv_loop_t *loop, const char *host, int port, bench_recv_fn fn,
                             void *ud) {
    struct sockaddr_in addr;
    if (uv_ip4_addr(host, port, &addr) != 0) {
        fprintf(stderr, "cdp-bench: receiver: bad address %s:%d\n", host, port);
        return NULL;
    }
    bench_recv *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->loop = loop;
    r->fn = fn;
    r->ud = ud;
    uv_tcp_init(loop, &r->listener);
    r->listener.data = r;
    r->handles = 1;
    int rc = uv_tcp_bind(&r->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&r->listener, RECV_BACKLOG, recv_accept);
    if (rc != 0) {
        fprintf(stderr, "cdp-bench: receiver: cannot listen on %s:%d: %s\n", host, port,
                uv_strerror(rc));
        bench_recv_stop(r);
        return NULL;
    }
    return r;
}
