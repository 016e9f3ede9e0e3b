/* bench_driver: see bench_driver.h. One repeating timer paces an open loop
 * and enforces the duration in both modes; completions refill free slots. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"

enum {
    DRIVE_TICK_MS = 1,
    NS_PER_MS = 1000 * 1000,
    DRIVE_LATE_NS = 2 * NS_PER_MS,   /* started this far behind schedule: late */
};
#define NS_PER_S 1e9

struct bench_driver {
    uv_loop_t *loop;
    cdp_rpc_channel *ch;
    bench_workload w;
    bench_drive_opts o;
    bench_drive_result *res;
    uv_timer_t tick;
    uint64_t t0_ns, stop_ns;
    int inflight, stopped, finished;
};

typedef struct {
    bench_driver *d;
    uint64_t seq, t_start_ns;
} drive_call;

void bench_drive_result_free(bench_drive_result *res) { bench_lat_free(&res->lat); }

double bench_drive_elapsed_s(const bench_drive_result *res) {
    if (res->t_last_ns <= res->t_first_ns)
        return 0;
    return (double)(res->t_last_ns - res->t_first_ns) / NS_PER_S;
}

/* ------------------------------------------------------------------ finish */

static void drive_closed(uv_handle_t *h) { free(h->data); }

static void drive_default_finished(void *ud) { uv_stop(ud); }

/* Stops issuing; once nothing is in flight, reports and frees the driver. */
static void drive_maybe_finish(bench_driver *d) {
    if (!d->stopped || d->inflight > 0 || d->finished)
        return;
    d->finished = 1;
    uv_timer_stop(&d->tick);
    uv_close((uv_handle_t *)&d->tick, drive_closed);
    d->o.on_finished(d->o.finished_ud);
}

/* 1 if another call may start now; marks the driver stopped otherwise. */
static int drive_may_issue(bench_driver *d, uint64_t now) {
    if (!d->stopped && d->o.max_calls && d->res->issued >= d->o.max_calls)
        d->stopped = 1;
    if (!d->stopped && d->o.duration_ms && now >= d->stop_ns)
        d->stopped = 1;
    return !d->stopped;
}

/* ------------------------------------------------------------------ calls */

static void drive_pump(bench_driver *d);

static void drive_record_error(bench_drive_result *res, grpc_status_code code,
                               const char *details) {
    if (res->first_error[0])
        return;
    snprintf(res->first_error, sizeof(res->first_error), "status %d: %s", (int)code,
             details ? details : "");
}

static void drive_on_reply(grpc_status_code code, const char *details,
                           const ProtobufCMessage *resp, void *ud) {
    drive_call *c = ud;
    bench_driver *d = c->d;
    bench_drive_result *res = d->res;
    uint64_t now = uv_hrtime();
    if (code == GRPC_STATUS_OK) {
        res->ok++;
        res->units_ok +=
            d->w.check ? (uint64_t)d->w.check(d->w.ud, c->seq, resp, c->t_start_ns, now) : 1;
    } else {
        res->failed++;
        drive_record_error(res, code, details);
    }
    bench_lat_add_ns(&res->lat, now > c->t_start_ns ? now - c->t_start_ns : 0);
    res->t_last_ns = now;
    free(c);
    d->inflight--;
    drive_pump(d);
    drive_maybe_finish(d);
}

/* Starts the next call; t_sched is when it should have started. */
static void drive_issue(bench_driver *d, uint64_t t_sched, uint64_t now) {
    bench_drive_result *res = d->res;
    uint64_t seq = res->issued++;
    const ProtobufCMessage *req = NULL;
    int units = d->w.make(d->w.ud, seq, &req);
    drive_call *c = malloc(sizeof(*c));
    if (!c || !req) {
        free(c);
        res->failed++;
        drive_record_error(res, GRPC_STATUS_INTERNAL, "cannot build the request");
        return;
    }
    c->d = d;
    c->seq = seq;
    c->t_start_ns = t_sched;
    if (now - t_sched > DRIVE_LATE_NS && t_sched < now)
        res->late++;
    if (!res->t_first_ns)
        res->t_first_ns = now;
    res->units_sent += (uint64_t)units;
    d->inflight++;
    if (cdp_rpc_unary(d->ch, d->w.svc, d->w.method, req, d->o.deadline_ms, drive_on_reply, c)) {
        d->inflight--;
        free(c);
        res->failed++;
        drive_record_error(res, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    }
}

/* Starts every call that is due and has a free slot. */
static void drive_pump(bench_driver *d) {
    uint64_t now = uv_hrtime();
    while (d->inflight < d->o.concurrency && drive_may_issue(d, now)) {
        uint64_t t_sched = now;
        if (d->o.rate > 0) {
            t_sched = d->t0_ns + (uint64_t)((double)d->res->issued * NS_PER_S / d->o.rate);
            if (t_sched > now)
                break;
        }
        drive_issue(d, t_sched, now);
    }
}

static void drive_on_tick(uv_timer_t *t) {
    bench_driver *d = t->data;
    drive_pump(d);
    drive_may_issue(d, uv_hrtime());
    drive_maybe_finish(d);
}

/* ------------------------------------------------------------------ start */

int bench_drive_start(uv_loop_t *loop, cdp_rpc_channel *ch, const bench_workload *w,
                      const bench_drive_opts *o, bench_drive_result *res) {
    memset(res, 0, sizeof(*res));
    bench_lat_init(&res->lat);
    if (o->concurrency < 1 || o->rate < 0 || o->deadline_ms < 1 ||
        (!o->duration_ms && !o->max_calls))
        return -1;
    bench_driver *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    d->loop = loop;
    d->ch = ch;
    d->w = *w;
    d->o = *o;
    if (!d->o.on_finished) {
        d->o.on_finished = drive_default_finished;
        d->o.finished_ud = loop;
    }
    d->res = res;
    d->t0_ns = uv_hrtime();
    d->stop_ns = d->t0_ns + (uint64_t)o->duration_ms * NS_PER_MS;
    uv_timer_init(loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, drive_on_tick, DRIVE_TICK_MS, DRIVE_TICK_MS);
    drive_pump(d);
    return 0;
}
