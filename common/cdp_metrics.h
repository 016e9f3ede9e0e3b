/* cdp_metrics: Prometheus metrics for one process, served as text format
 * 0.0.4 on GET /metrics from an HTTP listener on the service's loop.
 *
 * Metrics are identified by name plus a label string already in Prometheus
 * form (e.g. "method=\"Ingest\",code=\"OK\""; "" for none). Updates are
 * thread-safe (the completion-queue thread and the loop both record), cheap
 * (one mutex, one hash lookup), and never fail: a metric is created on first
 * use. */
#ifndef CDP_METRICS_H
#define CDP_METRICS_H

#include <uv.h>

/* Declares a metric's help text (optional; shown as # HELP). */
void cdp_metrics_help(const char *name, const char *help);

void cdp_metrics_inc(const char *name, const char *labels, double v);   /* counter */
void cdp_metrics_set(const char *name, const char *labels, double v);   /* gauge */
/* Histogram in seconds with fixed buckets from 0.0005 s to 10 s. */
void cdp_metrics_observe(const char *name, const char *labels, double seconds);

/* Renders every metric in text format. Returns a malloc'd NUL-terminated
 * string the caller frees. */
char *cdp_metrics_render(void);

/* Serves GET /metrics (and GET /healthz -> 200 "ok") on host:port from
 * `loop`. Returns the bound port (port 0 picks one) or a negative uv error. */
typedef struct cdp_metrics_http cdp_metrics_http;
int cdp_metrics_http_start(uv_loop_t *loop, const char *host, int port, cdp_metrics_http **out);
/* Closes the listener and every open connection; safe with NULL. */
void cdp_metrics_http_stop(cdp_metrics_http *h);

#endif
