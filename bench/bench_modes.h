/* bench_modes: the measurements cdp-bench can make, one function each.
 *
 * Every mode runs on the caller's loop (with cdp_rpc_init done), bounds
 * itself in time, prints one machine-readable line
 *   RESULT mode=<mode> key=value ...
 * on stdout (bench/run parses it) and a readable summary on stderr, and
 * returns 0, or 1 when the measurement could not be made (the RESULT line
 * then carries error=...). */
#ifndef BENCH_MODES_H
#define BENCH_MODES_H

#include <stdint.h>
#include <uv.h>

typedef struct {
    const char *mode;
    const char *target;          /* echo server or ingestion, host:port */
    const char *profile_target;  /* profile, host:port */
    const char *payload_like;    /* echo: "ingest" or "getprofile" sizes */
    const char *run_id;          /* prefix of every generated id */
    const char *redis_target;    /* redisprof: Redis, host:port */
    const char *phase;           /* redisprof: "start" or "report" */
    const char *consent_target;  /* consent, host:port */
    const char *segmentation_target;  /* segmentation, host:port */
    const char *activation_target;    /* activation, host:port */
    const char *listen;          /* webhook: the receiver's host:port */
    int duration_s;
    int concurrency;
    int batch;                   /* events per Ingest call */
    int payload;                 /* echo payload bytes (when no payload_like) */
    uint32_t people;
    uint32_t sample_every;       /* latency: every n-th event is timed */
    double rate;                 /* events/s (calls/s in echo); 0: as fast as possible */
    uint64_t events;             /* e2e: events to send; getprofile: seed events */
    int timeout_s;               /* e2e/getprofile: wait for profiles at most */
    int poll_ms;                 /* latency: GetProfile poll interval */
    int deadline_ms;             /* per call */
    int checks;                  /* consent: checks per CheckConsentBatch call */
} bench_opts;

int bench_mode_echo(uv_loop_t *loop, const bench_opts *o);
int bench_mode_ingest(uv_loop_t *loop, const bench_opts *o);
int bench_mode_e2e(uv_loop_t *loop, const bench_opts *o);
int bench_mode_latency(uv_loop_t *loop, const bench_opts *o);
int bench_mode_getprofile(uv_loop_t *loop, const bench_opts *o);
int bench_mode_redisprof(uv_loop_t *loop, const bench_opts *o);
int bench_mode_consent(uv_loop_t *loop, const bench_opts *o);
int bench_mode_webhook(uv_loop_t *loop, const bench_opts *o);

/* Helpers shared by the modes (bench_throughput.c). */

/* Packed size of one IngestRequest of `batch` generated events. */
size_t bench_ingest_request_size(int batch);
/* Packed size of a GetProfileRequest by master id. */
size_t bench_getprofile_request_size(void);
/* Prints "RESULT mode=... <fmt...>" and the same on stderr. */
void bench_result(const char *mode, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
