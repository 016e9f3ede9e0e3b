/* cdp_log: structured JSON logs on stderr, one object per line.
 *
 * A line is built in memory (jansson object, compact dump) and handed to the
 * kernel with a single write(2), so lines from the loop thread and the
 * completion-queue thread never interleave. Logging never fails the caller:
 * a bad pack format or an invalid UTF-8 message degrades the line (a
 * "log_error" field, replaced bytes) instead of dropping or crashing. */
#include "cdp_log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define CDP_LOG_SERVICE_MAX 64
#define CDP_LOG_TS_LEN 32
#define CDP_LOG_DEFAULT_SERVICE "cdp"
#define CDP_LOG_LEVEL_ENV "CDP_LOG_LEVEL"
#define CDP_LOG_NS_PER_MS 1000000L
/* Written when even building the line failed (out of memory). */
#define CDP_LOG_FALLBACK_LINE "{\"level\":\"error\",\"msg\":\"log line dropped: out of memory\"}\n"

static atomic_int log_min_level = CDP_LOG_INFO;
static char log_service[CDP_LOG_SERVICE_MAX] = CDP_LOG_DEFAULT_SERVICE;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

/* ------------------------------------------------------------ levels */

/* Maps "debug"/"info"/"warn"/"error" (any case; "warning" too) to a level.
 * Returns 0, or -1 when the name is unknown. */
static int log_parse_level(const char *s, cdp_log_level *out)
{
    for (int i = CDP_LOG_DEBUG; i <= CDP_LOG_ERROR; i++) {
        if (strcasecmp(s, log_level_names[i]) == 0) {
            *out = (cdp_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = CDP_LOG_WARN;
        return 0;
    }
    return -1;
}

static const char *log_level_name(cdp_log_level lvl)
{
    if (lvl < CDP_LOG_DEBUG || lvl > CDP_LOG_ERROR)
        return "error";
    return log_level_names[lvl];
}

void cdp_log_set_level(cdp_log_level lvl)
{
    atomic_store(&log_min_level, (int)lvl);
}

int cdp_log_enabled(cdp_log_level lvl)
{
    return (int)lvl >= atomic_load(&log_min_level);
}

/* Call once at startup, before other threads log: the service name is a
 * plain buffer, read without locking afterwards. */
void cdp_log_init(const char *service)
{
    if (service && *service)
        snprintf(log_service, sizeof log_service, "%s", service);

    const char *env = getenv(CDP_LOG_LEVEL_ENV);
    cdp_log_level lvl = CDP_LOG_INFO;
    if (env && *env && log_parse_level(env, &lvl) != 0) {
        cdp_log_set_level(CDP_LOG_INFO);
        cdp_log(CDP_LOG_WARN, "invalid log level, using info", "{s:s,s:s,s:s}",
                "variable", CDP_LOG_LEVEL_ENV, "value", env, "accepted", "debug|info|warn|error");
        return;
    }
    cdp_log_set_level(lvl);
}

/* ------------------------------------------------------------ line building */

/* Formats the current UTC time as RFC 3339 with milliseconds into buf. */
static void log_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / CDP_LOG_NS_PER_MS);
}

/* A JSON string for s. jansson rejects invalid UTF-8, so on failure every
 * byte outside printable ASCII is replaced with '?' and that is used. */
static json_t *log_string(const char *s)
{
    if (!s)
        s = "";
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80 || !isprint((unsigned char)*p))
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

/* Adds the caller's extra fields to line. Core fields (ts, level, service,
 * msg) win over extras of the same name. A pack error becomes "log_error". */
static void log_add_extras(json_t *line, const char *fmt, va_list ap)
{
    json_error_t err;
    json_t *extra = json_vpack_ex(&err, 0, fmt, ap);
    if (!extra) {
        json_object_set_new(line, "log_error", log_string(err.text));
        return;
    }
    if (!json_is_object(extra))
        json_object_set_new(line, "log_error", json_string("log fields are not an object"));
    else
        json_object_update_missing(line, extra);
    json_decref(extra);
}

/* Writes all of buf to stderr; loops only on EINTR or a partial write. */
static void log_write(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

void cdp_log(cdp_log_level lvl, const char *msg, const char *fmt, ...)
{
    if (!cdp_log_enabled(lvl))
        return;

    char ts[CDP_LOG_TS_LEN];
    log_timestamp(ts, sizeof ts);

    json_t *line = json_object();
    if (!line) {
        log_write(CDP_LOG_FALLBACK_LINE, strlen(CDP_LOG_FALLBACK_LINE));
        return;
    }
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(log_level_name(lvl)));
    json_object_set_new(line, "service", log_string(log_service));
    json_object_set_new(line, "msg", log_string(msg));
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        log_add_extras(line, fmt, ap);
        va_end(ap);
    }

    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!text) {
        log_write(CDP_LOG_FALLBACK_LINE, strlen(CDP_LOG_FALLBACK_LINE));
        return;
    }
    size_t len = strlen(text);
    char *buf = malloc(len + 2);
    if (!buf) {
        free(text);
        log_write(CDP_LOG_FALLBACK_LINE, strlen(CDP_LOG_FALLBACK_LINE));
        return;
    }
    memcpy(buf, text, len);
    buf[len] = '\n';
    buf[len + 1] = '\0';
    free(text);
    log_write(buf, len + 1);
    free(buf);
}
