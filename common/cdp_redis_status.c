/* cdp_redis_status: see cdp_redis_status.h. */
#include "cdp_redis_status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDP_UNAVAILABLE_PREFIX "redis unavailable"
/* Longest decimal int64 with sign, and a NUL. */
#define CDP_I64_BUFSZ 24
/* Room for the prefix and a Redis error line. */
#define CDP_REDIS_STATUS_MSG_BUFSZ 512

static int cdp__transient(const char *s)
{
    static const char *const prefixes[] = {"LOADING",     "BUSY",       "OOM",     "TRYAGAIN",
                                           "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOSCRIPT"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

grpc_status_code cdp_redis_status(const redisReply *reply, const char *err, char *msg,
                                  size_t msglen)
{
    if (err || !reply) {
        const char *why = err ? err : "no reply";
        /* the client's own text may already say so */
        if (strncmp(why, CDP_UNAVAILABLE_PREFIX, sizeof CDP_UNAVAILABLE_PREFIX - 1) == 0)
            snprintf(msg, msglen, "%s", why);
        else
            snprintf(msg, msglen, CDP_UNAVAILABLE_PREFIX ": %s", why);
        return GRPC_STATUS_UNAVAILABLE;
    }
    if (reply->type != REDIS_REPLY_ERROR) {
        msg[0] = '\0';
        return GRPC_STATUS_OK;
    }
    if (cdp__transient(reply->str)) {
        snprintf(msg, msglen, CDP_UNAVAILABLE_PREFIX ": %s", reply->str);
        return GRPC_STATUS_UNAVAILABLE;
    }
    snprintf(msg, msglen, "redis error: %s", reply->str);
    return GRPC_STATUS_INTERNAL;
}

int cdp_rpc_fail_redis(cdp_rpc_call *c, const redisReply *reply, const char *err)
{
    char msg[CDP_REDIS_STATUS_MSG_BUFSZ];
    grpc_status_code code = cdp_redis_status(reply, err, msg, sizeof msg);
    if (code == GRPC_STATUS_OK)
        return 0;
    cdp_rpc_fail(c, code, "%s", msg);
    return 1;
}

int cdp_parse_i64(const char *s, size_t len, int64_t *out)
{
    char buf[CDP_I64_BUFSZ];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || end == buf)
        return -1;
    *out = (int64_t)v;
    return 0;
}
