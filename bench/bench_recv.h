/* bench_recv: a minimal HTTP/1.1 receiver for webhook deliveries, on the
 * caller's libuv loop, so that arrivals are timestamped on the same clock
 * (uv_hrtime) as the Ingest acknowledgements they are compared with.
 *
 * It accepts connections on host:port, reads requests with a Content-Length
 * body (keep-alive: several per connection), answers "100 Continue" when a
 * client asks for it, hands every complete POST to on_request with the
 * time its last byte was read, and answers 200 with an empty body. A
 * request it cannot read (no Content-Length, a header block over 16 kB, a
 * body over 4 MB, not a POST) is answered 4xx and its connection closed;
 * those are counted. Not a general server: enough for a benchmark's peer,
 * on loopback. All on the loop thread. */
#ifndef BENCH_RECV_H
#define BENCH_RECV_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bench_recv bench_recv;

/* body is NUL-terminated (len excludes the NUL); signature is the value of
 * the X-Cdp-Signature header ("" when absent). Both are valid during the
 * call only. */
typedef void (*bench_recv_fn)(void *ud, const char *body, size_t len, const char *signature,
                              uint64_t t_arrival_ns);

/* Starts listening. Returns NULL (and logs why on stderr) when it cannot. */
bench_recv *bench_recv_start(uv_loop_t *loop, const char *host, int port, bench_recv_fn fn,
                             void *ud);

/* Closes the listener and every connection; the receiver frees itself once
 * its handles are closed (run the loop). NULL is a no-op. */
void bench_recv_stop(bench_recv *r);

/* Requests handed to on_request, and requests refused. */
uint64_t bench_recv_requests(const bench_recv *r);
uint64_t bench_recv_refused(const bench_recv *r);

#endif
