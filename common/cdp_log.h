/* cdp_log: structured JSON logs on stderr, one object per line.
 *
 * Every line carries ts (RFC 3339, UTC, ms), level, service and msg; callers
 * add fields with a jansson pack format, e.g.
 *
 *   cdp_log(CDP_LOG_ERROR, "cannot reach Redis", "{s:s,s:i}", "host", h, "port", p);
 *
 * Thread-safe: a line is written with one write(2). */
#ifndef CDP_LOG_H
#define CDP_LOG_H

typedef enum {
    CDP_LOG_DEBUG = 0,
    CDP_LOG_INFO = 1,
    CDP_LOG_WARN = 2,
    CDP_LOG_ERROR = 3,
} cdp_log_level;

/* Sets the service name stamped on every line and the minimum level
 * (CDP_LOG_LEVEL: debug|info|warn|error, default info). */
void cdp_log_init(const char *service);
void cdp_log_set_level(cdp_log_level lvl);
int cdp_log_enabled(cdp_log_level lvl);

/* Logs msg with the extra fields described by fmt (a json_pack format that
 * must build an object), or no extra fields when fmt is NULL. */
void cdp_log(cdp_log_level lvl, const char *msg, const char *fmt, ...);

#endif
