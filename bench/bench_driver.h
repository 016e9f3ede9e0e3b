/* bench_driver: drives unary calls of one workload against one channel on
 * the loop, and counts what came back.
 *
 * Closed loop (rate 0): keeps `concurrency` calls in flight, starting a new
 * one as each completes. Open loop (rate > 0): starts calls on a schedule of
 * `rate` calls/s, at most `concurrency` in flight (a call that finds no free
 * slot waits for one and is counted late); its latency is taken from its
 * scheduled start, so a stalled server is not hidden by a stalled client.
 *
 * Issuing stops at duration_ms or after max_calls; the driver then waits for
 * the calls in flight and calls on_finished once. All on the loop thread. */
#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H

#include <stdint.h>
#include <uv.h>

#include "bench_stats.h"
#include "cdp_rpc.h"

typedef struct {
    const ProtobufCServiceDescriptor *svc;
    const char *method;
    /* Builds call number seq. *req must stay valid until the next make (the
     * client packs it at once). Returns the units (events) it carries. */
    int (*make)(void *ud, uint64_t seq, const ProtobufCMessage **req);
    /* Optional: judges the OK reply of call seq, started at t_start_ns and
     * answered at t_end_ns (uv_hrtime); returns the units that succeeded. */
    int (*check)(void *ud, uint64_t seq, const ProtobufCMessage *resp, uint64_t t_start_ns,
                 uint64_t t_end_ns);
    void *ud;
} bench_workload;

typedef struct {
    int concurrency;          /* calls in flight at most (>= 1) */
    double rate;              /* calls/s offered; 0: closed loop */
    int duration_ms;          /* stop issuing after this; 0: no time limit */
    uint64_t max_calls;       /* stop issuing after this many; 0: no limit */
    int deadline_ms;          /* per call */
    void (*on_finished)(void *ud);   /* default: uv_stop(loop) */
    void *finished_ud;
} bench_drive_opts;

enum { BENCH_ERR_MAX = 160 };

typedef struct {
    uint64_t issued, ok, failed, late;
    uint64_t units_sent, units_ok;
    uint64_t t_first_ns, t_last_ns;   /* first start, last completion */
    bench_lat lat;                    /* per call */
    char first_error[BENCH_ERR_MAX];  /* "" when none */
} bench_drive_result;

typedef struct bench_driver bench_driver;

/* Starts driving w on ch; results accumulate in *res (initialised here,
 * owned by the caller, freed with bench_drive_result_free). The driver
 * frees itself after on_finished returns. Returns 0 or -1 (bad options). */
int bench_drive_start(uv_loop_t *loop, cdp_rpc_channel *ch, const bench_workload *w,
                      const bench_drive_opts *o, bench_drive_result *res);

void bench_drive_result_free(bench_drive_result *res);

/* Seconds from the first start to the last completion (0 if none). */
double bench_drive_elapsed_s(const bench_drive_result *res);

#endif
