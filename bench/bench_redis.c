/* bench_redis: where Redis' time goes, per command and per Lua script.
 *
 * Redis runs every command on one thread, so its busy time per event bounds
 * the whole pipeline's rate. INFO commandstats sums the commands a script
 * runs inside it but not the script itself by caller; SLOWLOG, with its
 * threshold at 0, records every top-level command with its duration and
 * arguments, so an EVALSHA is attributed to its script (first 8 hex digits
 * of its sha) and the key it touches (hash tag elided: "cdp:prf:{}:main").
 * Commands a script runs are logged too (client "?:0"): they are shown as
 * "lua>cmd" groups and left out of the total, which their script's
 * duration already includes.
 *
 *   cdp-bench redisprof --redis H:P --phase start     threshold 0, log cleared
 *   ... run the load to profile ...
 *   cdp-bench redisprof --redis H:P --phase report --events N
 *
 * report prints one "REDIS" line per group (top REDIS_TOP by total time)
 * and a RESULT line, then restores Redis' defaults. Logging every command
 * costs Redis time itself: use it on a separate pass, not while measuring.
 * Synchronous hiredis: this mode runs no loop. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <hiredis/hiredis.h>

#include "bench_modes.h"
#include "cdp_config.h"

enum {
    REDIS_HOST_MAX = 256,
    REDIS_CONNECT_TIMEOUT_S = 2,
    REDIS_GROUPS_MAX = 128,
    REDIS_KEY_SHAPE = 64,
    REDIS_GROUP_NAME = REDIS_KEY_SHAPE + 32,
    REDIS_TOP = 20,
    REDIS_SLOWLOG_CAPTURE = 4000000,   /* entries kept while profiling */
    REDIS_SLOWLOG_DEFAULT_LEN = 128,   /* Redis' defaults, restored after */
    REDIS_SLOWLOG_DEFAULT_US = 10000,
    SLOWLOG_DURATION = 2,              /* fields of one SLOWLOG GET entry */
    SLOWLOG_ARGS = 3,
    SLOWLOG_CLIENT = 4,
};
#define LUA_CLIENT_ADDR "?:0"
#define LUA_PREFIX "lua>"
#define US_PER_MS 1000.0

typedef struct {
    char name[REDIS_GROUP_NAME];
    unsigned long long calls, us;
} redis_group;

static redisContext *redis_connect(const char *addr) {
    char host[REDIS_HOST_MAX];
    int port;
    if (cdp_parse_hostport(addr, host, sizeof(host), &port) != 0)
        return NULL;
    struct timeval tv = {.tv_sec = REDIS_CONNECT_TIMEOUT_S};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c && c->err) {
        fprintf(stderr, "cdp-bench: redis %s: %s\n", addr, c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Runs a command whose reply only matters as success. Returns 0 or -1. */
static int redis_do(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------ grouping */

/* "cdp:prf:{m01..}:main" -> "cdp:prf:{}:main". */
static void redis_key_shape(const char *key, size_t len, char *out, size_t outlen) {
    size_t o = 0;
    int in_tag = 0;
    for (size_t i = 0; i < len && o + 1 < outlen; i++) {
        if (key[i] == '}')
            in_tag = 0;
        if (!in_tag)
            out[o++] = key[i];
        if (key[i] == '{')
            in_tag = 1;
    }
    out[o] = '\0';
}

/* The group of one logged command: its name ("lua>" first when a script
 * ran it), or for EVALSHA the script's sha prefix and its first key's shape. */
static void redis_group_name(const redisReply *args, int in_lua, char *out, size_t outlen) {
    const redisReply *cmd = args->element[0];
    if (args->elements >= 4 && strcasecmp(cmd->str, "evalsha") == 0) {
        char shape[REDIS_KEY_SHAPE];
        const redisReply *key = args->element[3];
        redis_key_shape(key->str, key->len, shape, sizeof(shape));
        snprintf(out, outlen, "evalsha:%.8s:%s", args->element[1]->str, shape);
        return;
    }
    snprintf(out, outlen, "%s%.*s", in_lua ? LUA_PREFIX : "", (int)cmd->len, cmd->str);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
}

/* 1 if a SLOWLOG entry was run by a script. */
static int redis_entry_in_lua(const redisReply *e) {
    const redisReply *client = e->elements > SLOWLOG_CLIENT ? e->element[SLOWLOG_CLIENT] : NULL;
    return client && client->type == REDIS_REPLY_STRING &&
           strcmp(client->str, LUA_CLIENT_ADDR) == 0;
}

static redis_group *redis_group_find(redis_group *g, size_t *n, const char *name) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp(g[i].name, name) == 0)
            return &g[i];
    if (*n == REDIS_GROUPS_MAX)
        return NULL;
    redis_group *ng = &g[(*n)++];
    snprintf(ng->name, sizeof(ng->name), "%s", name);
    return ng;
}

static int redis_group_cmp(const void *a, const void *b) {
    const redis_group *x = a, *y = b;
    return (x->us < y->us) - (x->us > y->us);
}

/* Folds every SLOWLOG entry into groups. Returns the number of groups. */
static size_t redis_collect(const redisReply *log, redis_group *g, unsigned long long *total_us) {
    size_t n = 0;
    char name[REDIS_GROUP_NAME];
    *total_us = 0;
    for (size_t i = 0; i < log->elements; i++) {
        const redisReply *e = log->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements <= SLOWLOG_ARGS ||
            e->element[SLOWLOG_ARGS]->type != REDIS_REPLY_ARRAY ||
            e->element[SLOWLOG_ARGS]->elements == 0)
            continue;
        int in_lua = redis_entry_in_lua(e);
        redis_group_name(e->element[SLOWLOG_ARGS], in_lua, name, sizeof(name));
        if (strcmp(name, "slowlog") == 0 || strcmp(name, "config") == 0)
            continue;
        redis_group *grp = redis_group_find(g, &n, name);
        unsigned long long us = (unsigned long long)e->element[SLOWLOG_DURATION]->integer;
        if (!in_lua)
            *total_us += us;
        if (grp) {
            grp->calls++;
            grp->us += us;
        }
    }
    qsort(g, n, sizeof(*g), redis_group_cmp);
    return n;
}

/* ------------------------------------------------------------------ phases */

static int redis_report(redisContext *c, const bench_opts *o) {
    redis_do(c, "CONFIG SET slowlog-log-slower-than %d", REDIS_SLOWLOG_DEFAULT_US);
    redisReply *log = redisCommand(c, "SLOWLOG GET -1");
    if (!log || log->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(log);
        bench_result("redisprof", "error=\"SLOWLOG GET failed\"");
        return 1;
    }
    static redis_group g[REDIS_GROUPS_MAX];
    unsigned long long total_us;
    size_t n = redis_collect(log, g, &total_us);
    double events = o->events ? (double)o->events : 1;
    for (size_t i = 0; i < n && i < REDIS_TOP; i++)
        printf("REDIS %s calls=%llu usec_per_call=%.1f total_ms=%.0f usec_per_event=%.1f\n",
               g[i].name, g[i].calls, (double)g[i].us / (double)g[i].calls,
               (double)g[i].us / US_PER_MS, (double)g[i].us / events);
    bench_result("redisprof", "entries=%zu total_ms=%.0f events=%llu usec_per_event=%.1f",
                 log->elements, (double)total_us / US_PER_MS, (unsigned long long)o->events,
                 (double)total_us / events);
    freeReplyObject(log);
    redis_do(c, "SLOWLOG RESET");
    redis_do(c, "CONFIG SET slowlog-max-len %d", REDIS_SLOWLOG_DEFAULT_LEN);
    return 0;
}

int bench_mode_redisprof(uv_loop_t *loop, const bench_opts *o) {
    (void)loop;
    redisContext *c = redis_connect(o->redis_target);
    if (!c) {
        bench_result("redisprof", "error=\"cannot connect to %s\"", o->redis_target);
        return 1;
    }
    int rc = 0;
    if (o->phase && strcmp(o->phase, "start") == 0) {
        rc = redis_do(c, "CONFIG SET slowlog-max-len %d", REDIS_SLOWLOG_CAPTURE) ||
             redis_do(c, "SLOWLOG RESET") ||
             redis_do(c, "CONFIG SET slowlog-log-slower-than 0");
    } else {
        rc = redis_report(c, o);
    }
    redisFree(c);
    return rc;
}
