/* bench_throughput: the two call-rate modes, echo (the null service, the
 * baseline) and ingest (Ingest calls of generated batches), plus the
 * helpers every mode shares: request sizes and the RESULT line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_driver.h"
#include "bench_gen.h"
#include "bench_ingest.h"
#include "bench_modes.h"
#include "cdp/v1/echo.pb-c.h"
#include "cdp/v1/ingestion.pb-c.h"
#include "cdp/v1/profile.pb-c.h"
#include "cdp_service.h"

#define US_PER_S 1e6

/* The shape of a master id as identity mints them ("m" + 22 hex digits). */
#define BENCH_SAMPLE_MASTER_ID "m0191d3a5c7e2f04b8a9c1d"
enum { RESULT_LINE_MAX = 1024, MS_PER_S = 1000, SIZING_PEOPLE = 1000 };

/* ------------------------------------------------------------------ shared */

size_t bench_ingest_request_size(int batch) {
    bench_gen g;
    bench_batch b;
    bench_gen_init(&g, "sizing", SIZING_PEOPLE, 0);
    if (bench_batch_init(&b, (size_t)batch) != 0)
        return 0;
    bench_gen_fill(&g, &b, (size_t)batch, cdp_now_ms());
    size_t n = protobuf_c_message_get_packed_size(&b.req.base);
    bench_batch_free(&b);
    return n;
}

size_t bench_getprofile_request_size(void) {
    Cdp__V1__GetProfileRequest req = CDP__V1__GET_PROFILE_REQUEST__INIT;
    req.master_id = BENCH_SAMPLE_MASTER_ID;
    return protobuf_c_message_get_packed_size(&req.base);
}

void bench_result(const char *mode, const char *fmt, ...) {
    char line[RESULT_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / US_PER_S +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / US_PER_S;
    printf("RESULT mode=%s %s client_cpu_s=%.2f\n", mode, line, cpu);
    fflush(stdout);
    fprintf(stderr, "%-10s %s\n", mode, line);
}

/* Runs the loop until the driver finishes. */
static void throughput_run(uv_loop_t *loop) { uv_run(loop, UV_RUN_DEFAULT); }

/* ------------------------------------------------------------------ echo */

typedef struct {
    Cdp__V1__EchoRequest req;
    size_t len;
} echo_work;

static int echo_make(void *ud, uint64_t seq, const ProtobufCMessage **req) {
    (void)seq;
    echo_work *e = ud;
    *req = &e->req.base;
    return 1;
}

static int echo_check(void *ud, uint64_t seq, const ProtobufCMessage *resp, uint64_t t_start_ns,
                      uint64_t t_end_ns) {
    (void)seq;
    (void)t_start_ns;
    (void)t_end_ns;
    const echo_work *e = ud;
    return ((const Cdp__V1__EchoReply *)resp)->payload.len == e->len;
}

/* The payload size: sized like the workload it is the baseline of. */
static size_t echo_payload_size(const bench_opts *o) {
    if (o->payload_like && strcmp(o->payload_like, "ingest") == 0)
        return bench_ingest_request_size(o->batch);
    if (o->payload_like && strcmp(o->payload_like, "getprofile") == 0)
        return bench_getprofile_request_size();
    return (size_t)o->payload;
}

int bench_mode_echo(uv_loop_t *loop, const bench_opts *o) {
    echo_work e;
    cdp__v1__echo_request__init(&e.req);
    e.len = echo_payload_size(o);
    uint8_t *buf = calloc(1, e.len ? e.len : 1);
    if (!buf)
        return 1;
    e.req.payload.data = buf;
    e.req.payload.len = e.len;
    cdp_rpc_channel *ch = cdp_rpc_channel_new(loop, o->target, NULL);
    bench_workload w = {.svc = &cdp__v1__echo__descriptor, .method = "Echo",
                        .make = echo_make, .check = echo_check, .ud = &e};
    bench_drive_opts d = {.concurrency = o->concurrency, .rate = o->rate,
                          .duration_ms = o->duration_s * MS_PER_S, .deadline_ms = o->deadline_ms};
    bench_drive_result r;
    int rc = bench_drive_start(loop, ch, &w, &d, &r);
    if (rc == 0)
        throughput_run(loop);
    double s = bench_drive_elapsed_s(&r);
    bench_result("echo",
                 "payload=%zu like=%s calls=%llu failed=%llu calls_per_s=%.0f p50_ms=%.3f "
                 "p99_ms=%.3f late=%llu error=\"%s\"",
                 e.len, o->payload_like ? o->payload_like : "-", (unsigned long long)r.units_ok,
                 (unsigned long long)r.failed, s > 0 ? (double)r.units_ok / s : 0,
                 bench_lat_quantile_ms(&r.lat, 0.5), bench_lat_quantile_ms(&r.lat, 0.99),
                 (unsigned long long)r.late, r.first_error);
    rc = rc || r.units_ok == 0 || r.failed > 0;
    bench_drive_result_free(&r);
    cdp_rpc_channel_close(ch);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ ingest */

int bench_mode_ingest(uv_loop_t *loop, const bench_opts *o) {
    bench_ingest in;
    if (bench_ingest_init(&in, o->run_id, o->people, 0, o->batch) != 0)
        return 1;
    cdp_rpc_channel *ch = cdp_rpc_channel_new(loop, o->target, NULL);
    bench_workload w;
    bench_ingest_workload(&in, &w);
    bench_drive_opts d = {.concurrency = o->concurrency,
                          .rate = o->rate > 0 ? o->rate / o->batch : 0,
                          .duration_ms = o->duration_s * MS_PER_S, .deadline_ms = o->deadline_ms};
    bench_drive_result r;
    int rc = bench_drive_start(loop, ch, &w, &d, &r);
    if (rc == 0)
        throughput_run(loop);
    double s = bench_drive_elapsed_s(&r);
    bench_result("ingest",
                 "batch=%d payload=%zu calls=%llu failed=%llu events=%llu rejected=%llu "
                 "duplicates=%llu events_per_s=%.0f calls_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
                 "error=\"%s%s\"",
                 o->batch, bench_ingest_request_size(o->batch), (unsigned long long)r.ok,
                 (unsigned long long)r.failed, (unsigned long long)r.units_ok,
                 (unsigned long long)in.rejected, (unsigned long long)in.duplicates,
                 s > 0 ? (double)r.units_ok / s : 0, s > 0 ? (double)r.ok / s : 0,
                 bench_lat_quantile_ms(&r.lat, 0.5), bench_lat_quantile_ms(&r.lat, 0.99),
                 r.first_error, in.first_reject);
    rc = rc || r.units_ok == 0 || r.failed > 0;
    bench_drive_result_free(&r);
    cdp_rpc_channel_close(ch);
    bench_ingest_free(&in);
    return rc;
}
