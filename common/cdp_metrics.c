/* cdp_metrics: the process-wide Prometheus registry and its HTTP listener.
 *
 * Registry: every series (name + label string) lives in one hash table
 * guarded by one mutex, so the completion-queue thread and the loop can both
 * record. Series of one name form a family (help text, type), kept in first-
 * use order so that the rendered text groups each name under one # HELP and
 * # TYPE header. Updates never fail the caller: when memory runs out an
 * update is dropped, and an update of the wrong kind for an existing name
 * (a gauge set on a counter name) is ignored.
 *
 * Listener: a minimal HTTP/1.1 server on the service's libuv loop. Each
 * connection sends one request, gets one response and is closed
 * (Connection: close). Everything is non-blocking; handles are closed with
 * uv_close and freed in their close callbacks. */
#include "cdp_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"

/* ================================================================ registry */

typedef enum {
    METRIC_UNTYPED = 0, /* help declared, no sample recorded yet */
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
} metric_type;

/* Upper bounds (seconds) of the histogram buckets; +Inf is implicit. */
static const double metric_bucket_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
#define METRIC_BUCKETS (sizeof metric_bucket_bounds / sizeof metric_bucket_bounds[0])

#define METRIC_TABLE_INITIAL 64
#define METRIC_FNV_OFFSET 14695981039346656037ULL
#define METRIC_FNV_PRIME 1099511628211ULL
/* Room for any double in %.17g form plus sign and exponent. */
#define METRIC_NUM_LEN 32

typedef struct metric_family metric_family;
typedef struct metric_series metric_series;

struct metric_family {
    char *name;
    char *help;
    metric_type type;
    metric_series *first, *last; /* series in first-use order */
    metric_family *next;         /* families in first-use order */
};

struct metric_series {
    char *labels;
    uint64_t hash;
    metric_family *family;
    double value;                       /* counter or gauge */
    uint64_t buckets[METRIC_BUCKETS];   /* per-bucket, not cumulative */
    uint64_t count;                     /* histogram observations */
    double sum;                         /* histogram sum */
    metric_series *hash_next;
    metric_series *family_next;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static metric_series **metrics_table;
static size_t metrics_table_size;
static size_t metrics_series_count;
static metric_family *metrics_families_first, *metrics_families_last;

/* FNV-1a over name, a NUL separator, and labels. */
static uint64_t metric_hash(const char *name, const char *labels)
{
    uint64_t h = METRIC_FNV_OFFSET;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * METRIC_FNV_PRIME;
    h *= METRIC_FNV_PRIME; /* the separator byte, 0 */
    for (const char *p = labels; *p; p++)
        h = (h ^ (unsigned char)*p) * METRIC_FNV_PRIME;
    return h;
}

/* The family called name, or NULL. Families are few (tens), so a list
 * walk costs less than the series lookup it accompanies on first use only. */
static metric_family *family_find(const char *name)
{
    for (metric_family *f = metrics_families_first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static metric_family *family_get(const char *name)
{
    metric_family *f = family_find(name);
    if (f)
        return f;
    f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        return NULL;
    }
    if (metrics_families_last)
        metrics_families_last->next = f;
    else
        metrics_families_first = f;
    metrics_families_last = f;
    return f;
}

/* Doubles the hash table (or creates it). On allocation failure the table
 * stays as it was: lookups still work, only chains get longer. */
static void table_grow(void)
{
    size_t size = metrics_table_size ? metrics_table_size * 2 : METRIC_TABLE_INITIAL;
    metric_series **t = calloc(size, sizeof *t);
    if (!t)
        return;
    for (size_t i = 0; i < metrics_table_size; i++) {
        metric_series *s = metrics_table[i];
        while (s) {
            metric_series *next = s->hash_next;
            s->hash_next = t[s->hash % size];
            t[s->hash % size] = s;
            s = next;
        }
    }
    free(metrics_table);
    metrics_table = t;
    metrics_table_size = size;
}

static metric_series *series_new(metric_family *f, const char *labels, uint64_t h)
{
    metric_series *s = calloc(1, sizeof *s);
    if (!s || !(s->labels = strdup(labels))) {
        free(s);
        return NULL;
    }
    s->hash = h;
    s->family = f;
    if (f->last)
        f->last->family_next = s;
    else
        f->first = s;
    f->last = s;
    s->hash_next = metrics_table[h % metrics_table_size];
    metrics_table[h % metrics_table_size] = s;
    metrics_series_count++;
    return s;
}

/* The series (name, labels) of the given type, created on first use.
 * NULL when the name already has another type or memory runs out.
 * Caller holds metrics_lock. */
static metric_series *series_get(const char *name, const char *labels, metric_type type)
{
    if (!labels)
        labels = "";
    uint64_t h = metric_hash(name, labels);
    if (metrics_table_size) {
        for (metric_series *s = metrics_table[h % metrics_table_size]; s; s = s->hash_next)
            if (s->hash == h && strcmp(s->family->name, name) == 0 && strcmp(s->labels, labels) == 0)
                return s->family->type == type ? s : NULL;
    }
    if (metrics_series_count >= metrics_table_size)
        table_grow();
    if (!metrics_table_size)
        return NULL;
    metric_family *f = family_get(name);
    if (!f)
        return NULL;
    if (f->type == METRIC_UNTYPED)
        f->type = type;
    if (f->type != type)
        return NULL;
    return series_new(f, labels, h);
}

void cdp_metrics_help(const char *name, const char *help)
{
    if (!name || !help)
        return;
    pthread_mutex_lock(&metrics_lock);
    metric_family *f = family_get(name);
    char *copy = f ? strdup(help) : NULL;
    if (copy) {
        free(f->help);
        f->help = copy;
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* Counters only go up: negative and NaN increments are ignored. */
void cdp_metrics_inc(const char *name, const char *labels, double v)
{
    if (!name || !(v >= 0))
        return;
    pthread_mutex_lock(&metrics_lock);
    metric_series *s = series_get(name, labels, METRIC_COUNTER);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&metrics_lock);
}

void cdp_metrics_set(const char *name, const char *labels, double v)
{
    if (!name)
        return;
    pthread_mutex_lock(&metrics_lock);
    metric_series *s = series_get(name, labels, METRIC_GAUGE);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&metrics_lock);
}

/* A NaN observation is ignored (it would poison _sum forever). Values above
 * the last bound count only in +Inf; negative values in the first bucket. */
void cdp_metrics_observe(const char *name, const char *labels, double seconds)
{
    if (!name || isnan(seconds))
        return;
    pthread_mutex_lock(&metrics_lock);
    metric_series *s = series_get(name, labels, METRIC_HISTOGRAM);
    if (s) {
        for (size_t i = 0; i < METRIC_BUCKETS; i++) {
            if (seconds <= metric_bucket_bounds[i]) {
                s->buckets[i]++;
                break;
            }
        }
        s->count++;
        s->sum += seconds;
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* ================================================================ rendering */

/* A growable string; on allocation failure `failed` is set and further
 * appends are ignored, so callers check once at the end. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} metric_buf;

static void buf_reserve(metric_buf *b, size_t extra)
{
    if (b->failed || b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->buf, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->buf = p;
    b->cap = cap;
}

static void buf_add(metric_buf *b, const char *s)
{
    size_t n = strlen(s);
    buf_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->buf + b->len, s, n + 1);
    b->len += n;
}

static void buf_addf(metric_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_addf(metric_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    buf_reserve(b, (size_t)n);
    if (b->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Formats v as Prometheus expects: +Inf, -Inf, NaN, or the shortest of
 * %.15g / %.17g that reads back as v (so 0.1 prints as 0.1). */
static void format_number(char *out, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        snprintf(out, len, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, len, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, len, "%.17g", v);
    }
}

/* Help text with backslash and newline escaped, as the format requires. */
static void render_help(metric_buf *b, const metric_family *f)
{
    buf_addf(b, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            buf_add(b, "\\\\");
        else if (*p == '\n')
            buf_add(b, "\\n");
        else
            buf_addf(b, "%c", *p);
    }
    buf_add(b, "\n");
}

/* name{labels} value, with braces only when there are labels. */
static void render_sample(metric_buf *b, const char *name, const char *suffix,
                          const char *labels, const char *value)
{
    if (*labels)
        buf_addf(b, "%s%s{%s} %s\n", name, suffix, labels, value);
    else
        buf_addf(b, "%s%s %s\n", name, suffix, value);
}

static void render_histogram(metric_buf *b, const metric_family *f, const metric_series *s)
{
    const char *sep = *s->labels ? "," : "";
    uint64_t cumulative = 0;
    char le[METRIC_NUM_LEN];
    for (size_t i = 0; i < METRIC_BUCKETS; i++) {
        cumulative += s->buckets[i];
        format_number(le, sizeof le, metric_bucket_bounds[i]);
        buf_addf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels, sep, le,
                 (unsigned long long)cumulative);
    }
    buf_addf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels, sep,
             (unsigned long long)s->count);
    char num[METRIC_NUM_LEN];
    format_number(num, sizeof num, s->sum);
    render_sample(b, f->name, "_sum", s->labels, num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)s->count);
    render_sample(b, f->name, "_count", s->labels, num);
}

static const char *type_name(metric_type t)
{
    switch (t) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_HISTOGRAM: return "histogram";
    default: return "untyped";
    }
}

/* One family: its header lines, then every series. A family with help but
 * no samples yet is skipped. */
static void render_family(metric_buf *b, const metric_family *f)
{
    if (!f->first)
        return;
    if (f->help)
        render_help(b, f);
    buf_addf(b, "# TYPE %s %s\n", f->name, type_name(f->type));
    for (const metric_series *s = f->first; s; s = s->family_next) {
        if (f->type == METRIC_HISTOGRAM) {
            render_histogram(b, f, s);
        } else {
            char num[METRIC_NUM_LEN];
            format_number(num, sizeof num, s->value);
            render_sample(b, f->name, "", s->labels, num);
        }
    }
}

char *cdp_metrics_render(void)
{
    metric_buf b = {0};
    buf_reserve(&b, 0);
    pthread_mutex_lock(&metrics_lock);
    for (const metric_family *f = metrics_families_first; f; f = f->next)
        render_family(&b, f);
    pthread_mutex_unlock(&metrics_lock);
    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

/* ================================================================ HTTP listener */

#define HTTP_MAX_REQUEST 8192          /* request line + headers */
#define HTTP_MAX_CONNECTIONS 64        /* beyond this, new connections are closed */
#define HTTP_REQUEST_TIMEOUT_MS 10000  /* a request must be complete by then */
#define HTTP_LINGER_MS 2000            /* wait for the client's close after a response */
#define HTTP_BACKLOG 128
#define HTTP_HEADER_MAX 256            /* our status line and headers */
#define HTTP_VERSION_PREFIX "HTTP/1."
#define HTTP_HEAD_END "\r\n\r\n"       /* ends a request head */

typedef struct http_conn http_conn;

struct cdp_metrics_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;     /* listener close callback not yet run */
    int stopping;
    http_conn *conns;      /* open connections, doubly linked */
    size_t n_conns;
};

struct http_conn {
    cdp_metrics_http *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    int open_handles;      /* tcp + timer until their close callbacks run */
    int responded;
    char *response;        /* malloc'd until the write completes */
    size_t req_len;
    char req[HTTP_MAX_REQUEST + 1];
    http_conn *prev, *next;
};

/* The answer chosen for one request (see http_route). */
typedef struct {
    int status;
    const char *reason;
    const char *content_type;
    char *body;            /* malloc'd */
    const char *extra_header;
} http_response;

#define HTTP_JSON "application/json"
#define HTTP_TEXT "text/plain; charset=utf-8"
#define HTTP_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

static void http_srv_maybe_free(cdp_metrics_http *srv)
{
    if (srv->stopping && !srv->listener_open && !srv->conns)
        free(srv);
}

static void http_conn_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    cdp_metrics_http *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    free(c->response);
    free(c);
    http_srv_maybe_free(srv);
}

/* Closes both handles of c (once); c is freed when both have closed. */
static void http_conn_close(http_conn *c);

static void http_timeout(uv_timer_t *t)
{
    http_conn_close(t->data);
}

/* Closes both handles of c (once); c is freed when both have closed. */
static void http_conn_close(http_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, http_conn_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, http_conn_closed);
}

/* After our FIN the connection lingers until the client closes its side
 * (EOF in http_read) or the linger timer fires: closing while the client
 * may still be sending would make the kernel answer with a reset, and a
 * reset can destroy the response before the client reads it. */
static void http_shutdown_done(uv_shutdown_t *req, int status)
{
    if (status < 0)
        http_conn_close(req->data);
}

static void http_write_done(uv_write_t *req, int status)
{
    http_conn *c = req->data;
    free(c->response);
    c->response = NULL;
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    /* Shut down our side so the client sees the end of the response before
     * the socket closes. */
    if (status < 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, http_shutdown_done) != 0)
        http_conn_close(c);
}

static http_response http_error(int status, const char *reason, const char *message)
{
    http_response r = {status, reason, HTTP_JSON, NULL, NULL};
    size_t n = strlen(message) + sizeof "{\"error\":\"\"}\n";
    r.body = malloc(n);
    if (r.body)
        snprintf(r.body, n, "{\"error\":\"%s\"}\n", message);
    return r;
}

/* Whether the n bytes at p are exactly the literal lit. */
static int http_span_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncmp(p, lit, n) == 0;
}

/* Chooses the response for a complete request head in `head` (NUL-terminated,
 * ending with the blank line). Only the request line matters:
 * METHOD SP target SP HTTP/1.x; the query string is ignored. */
static http_response http_route(const char *head)
{
    const char *eol = strstr(head, "\r\n");
    const char *sp1 = strchr(head, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp2 > eol || sp1 == head || sp2 == sp1 + 1 ||
        strncmp(sp2 + 1, HTTP_VERSION_PREFIX, strlen(HTTP_VERSION_PREFIX)) != 0)
        return http_error(400, "Bad Request", "bad request");
    if (!http_span_is(head, (size_t)(sp1 - head), "GET")) {
        http_response r = http_error(405, "Method Not Allowed", "method not allowed");
        r.extra_header = "Allow: GET\r\n";
        return r;
    }
    const char *path = sp1 + 1;
    size_t plen = strcspn(path, "? ");
    if (http_span_is(path, plen, "/metrics")) {
        http_response r = {200, "OK", HTTP_METRICS_TYPE, cdp_metrics_render(), NULL};
        if (!r.body)
            return http_error(500, "Internal Server Error", "out of memory");
        return r;
    }
    if (http_span_is(path, plen, "/healthz"))
        return (http_response){200, "OK", HTTP_TEXT, strdup("ok"), NULL};
    return http_error(404, "Not Found", "not found");
}

/* Sends r on c (takes ownership of r.body). Reading goes on, discarding,
 * until the client closes; the timer now bounds that linger. */
static void http_respond(http_conn *c, http_response r)
{
    c->responded = 1;
    c->req_len = 0;
    uv_timer_start(&c->timer, http_timeout, HTTP_LINGER_MS, 0);
    size_t body_len = r.body ? strlen(r.body) : 0;
    c->response = malloc(HTTP_HEADER_MAX + body_len);
    if (!c->response) {
        free(r.body);
        http_conn_close(c);
        return;
    }
    int n = snprintf(c->response, HTTP_HEADER_MAX,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     r.status, r.reason, r.content_type, body_len,
                     r.extra_header ? r.extra_header : "");
    if (body_len)
        memcpy(c->response + n, r.body, body_len);
    free(r.body);
    uv_buf_t buf = uv_buf_init(c->response, (unsigned)((size_t)n + body_len));
    c->write_req.data = c;
    c->shutdown_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, http_write_done) != 0) {
        free(c->response);
        c->response = NULL;
        http_conn_close(c);
    }
}

static void http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    http_conn *c = h->data;
    /* Reads land directly in the request buffer (reused as a discard area
     * after the response); one spare byte stays for the NUL. */
    *buf = uv_buf_init(c->req + c->req_len, (unsigned)(HTTP_MAX_REQUEST - c->req_len));
}

static void http_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    http_conn *c = stream->data;
    if (nread < 0) {
        http_conn_close(c);
        return;
    }
    if (nread == 0 || c->responded)
        return;
    /* Search only from where the terminator could start in the new data. */
    size_t keep = sizeof HTTP_HEAD_END - 2;
    size_t from = c->req_len >= keep ? c->req_len - keep : 0;
    c->req_len += (size_t)nread;
    c->req[c->req_len] = '\0';
    /* A request with a NUL byte in its head never matches and ends in 431
     * or the timeout, which is the right answer for it. */
    if (strstr(c->req + from, HTTP_HEAD_END))
        http_respond(c, http_route(c->req));
    else if (c->req_len >= HTTP_MAX_REQUEST)
        http_respond(c, http_error(431, "Request Header Fields Too Large", "request too large"));
}

static void http_accept(uv_stream_t *server, int status)
{
    cdp_metrics_http *srv = server->data;
    if (status < 0) {
        cdp_log(CDP_LOG_WARN, "metrics listener accept failed", "{s:s}", "error", uv_strerror(status));
        return;
    }
    http_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || srv->n_conns > HTTP_MAX_CONNECTIONS ||
        uv_read_start((uv_stream_t *)&c->tcp, http_alloc, http_read) != 0 ||
        uv_timer_start(&c->timer, http_timeout, HTTP_REQUEST_TIMEOUT_MS, 0) != 0)
        http_conn_close(c);
}

static void http_listener_closed(uv_handle_t *h)
{
    cdp_metrics_http *srv = h->data;
    srv->listener_open = 0;
    http_srv_maybe_free(srv);
}

/* Fills addr from a numeric IPv4/IPv6 host ("localhost" means 127.0.0.1).
 * Names are not resolved: resolving would block the loop. */
static int http_addr(const char *host, int port, struct sockaddr_storage *addr)
{
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0)
        return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
}

static int http_bound_port(uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len);
    if (rc != 0)
        return rc;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int cdp_metrics_http_start(uv_loop_t *loop, const char *host, int port, cdp_metrics_http **out)
{
    struct sockaddr_storage addr;
    if (!loop || !host || !out)
        return UV_EINVAL;
    int rc = http_addr(host, port, &addr);
    if (rc != 0)
        return rc;
    cdp_metrics_http *srv = calloc(1, sizeof *srv);
    if (!srv)
        return UV_ENOMEM;
    srv->loop = loop;
    rc = uv_tcp_init(loop, &srv->listener);
    if (rc != 0) {
        free(srv);
        return rc;
    }
    srv->listener.data = srv;
    srv->listener_open = 1;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, HTTP_BACKLOG, http_accept);
    if (rc == 0)
        rc = http_bound_port(&srv->listener);
    if (rc < 0) {
        /* Freed by the close callback on the next loop turn. */
        cdp_metrics_http_stop(srv);
        return rc;
    }
    *out = srv;
    return rc;
}

/* The memory is released from close callbacks, so the loop must run (as it
 * does during a service's shutdown) after this returns. */
void cdp_metrics_http_stop(cdp_metrics_http *h)
{
    if (!h || h->stopping)
        return;
    h->stopping = 1;
    uv_close((uv_handle_t *)&h->listener, http_listener_closed);
    for (http_conn *c = h->conns; c; c = c->next)
        http_conn_close(c);
}
