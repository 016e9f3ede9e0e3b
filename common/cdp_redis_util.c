/* cdp_redis_util: pure helpers of the Redis client: key hash slots, address
 * lists, cluster redirects and slot maps, backoff, EVALSHA -> EVAL.
 *
 * Everything here works on plain buffers and hiredis reply structs, so it is
 * unit-tested without a server (tests/unit/test_redis_slot.c). */
#include "cdp_redis_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_redis.h"

#define REDIS_CRC16_POLY 0x1021u /* CRC16-CCITT (XMODEM), as Redis Cluster uses */
#define REDIS_CRC16_TOP_BIT 0x8000u
#define REDIS_CRC16_MASK 0xFFFFu
#define REDIS_BITS_PER_BYTE 8
#define REDIS_PORT_MAX 65535
#define REDIS_DECIMAL 10
/* Longest decimal number accepted for a port or slot (no overflow in long). */
#define REDIS_UINT_DIGITS_MAX 9
/* Room for "$<len>\r\n" with a size_t length. */
#define REDIS_RESP_BULK_HEADER_MAX 32

/* The fixed middle of a formatted EVALSHA: argument 0 and the header of the
 * 40-byte SHA argument. */
static const char evalsha_prefix[] = "$7\r\nEVALSHA\r\n$40\r\n";
static const char eval_name[] = "$4\r\nEVAL\r\n";
static const char resp_crlf[] = "\r\n";

/* ------------------------------------------------------------ key slots */

/* CRC16-XMODEM (poly 0x1021, init 0, no reflection) of len bytes. */
static unsigned redis_crc16(const unsigned char *p, size_t len)
{
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)p[i] << REDIS_BITS_PER_BYTE;
        for (int b = 0; b < REDIS_BITS_PER_BYTE; b++)
            crc = (crc & REDIS_CRC16_TOP_BIT) ? (crc << 1) ^ REDIS_CRC16_POLY : crc << 1;
        crc &= REDIS_CRC16_MASK;
    }
    return crc;
}

/* Redis hashes only the part between the first '{' and the first '}' after
 * it, when that part is not empty; otherwise the whole key. */
unsigned cdp_redis_key_slot(const char *key, size_t keylen)
{
    const unsigned char *k = (const unsigned char *)key;
    const unsigned char *open = memchr(k, '{', keylen);
    if (open) {
        size_t from = (size_t)(open - k) + 1;
        const unsigned char *close = memchr(k + from, '}', keylen - from);
        if (close && close != k + from)
            return redis_crc16(k + from, (size_t)(close - (k + from))) % CDP__REDIS_SLOTS;
    }
    return redis_crc16(k, keylen) % CDP__REDIS_SLOTS;
}

/* ------------------------------------------------------------ addresses */

/* Parses len digits as a decimal number in [min, max]. Returns 0 or -1. */
static int redis_parse_uint(const char *s, size_t len, long min, long max, long *out)
{
    if (len == 0 || len > REDIS_UINT_DIGITS_MAX)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * REDIS_DECIMAL + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cdp__redis_addr_parse(const char *s, size_t len, cdp__redis_addr *out)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (!colon)
        return -1;
    long port = 0;
    size_t portlen = len - (size_t)(colon - s) - 1;
    if (redis_parse_uint(colon + 1, portlen, 1, REDIS_PORT_MAX, &port) != 0)
        return -1;
    const char *host = s;
    size_t hostlen = (size_t)(colon - s);
    if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']') {
        host++;
        hostlen -= 2;
    }
    if (hostlen >= sizeof out->host)
        return -1;
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    out->port = (int)port;
    return 0;
}

/* Trims blanks from both ends of [*s, *s + *len). */
static void redis_trim(const char **s, size_t *len)
{
    while (*len && isspace((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

int cdp__redis_addr_list_parse(const char *s, cdp__redis_addr **out)
{
    if (!s)
        return -1;
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += (*p == ',');
    cdp__redis_addr *addrs = calloc(n, sizeof *addrs);
    if (!addrs)
        return -1;
    size_t i = 0;
    const char *item = s;
    for (;;) {
        const char *comma = strchr(item, ',');
        size_t len = comma ? (size_t)(comma - item) : strlen(item);
        redis_trim(&item, &len);
        if (cdp__redis_addr_parse(item, len, &addrs[i]) != 0 || addrs[i].host[0] == '\0') {
            free(addrs);
            return -1;
        }
        i++;
        if (!comma)
            break;
        item = comma + 1;
    }
    *out = addrs;
    return (int)i;
}

/* ------------------------------------------------------------ redirects */

int cdp__redis_redirect_parse(const char *s, size_t len, cdp__redis_redirect *out)
{
    static const char moved[] = "MOVED ";
    static const char ask[] = "ASK ";
    size_t skip;
    if (len > sizeof moved - 1 && memcmp(s, moved, sizeof moved - 1) == 0) {
        out->kind = CDP__REDIS_MOVED;
        skip = sizeof moved - 1;
    } else if (len > sizeof ask - 1 && memcmp(s, ask, sizeof ask - 1) == 0) {
        out->kind = CDP__REDIS_ASK;
        skip = sizeof ask - 1;
    } else {
        return -1;
    }
    const char *slot = s + skip;
    const char *end = s + len;
    const char *space = memchr(slot, ' ', (size_t)(end - slot));
    if (!space)
        return -1;
    long v = 0;
    if (redis_parse_uint(slot, (size_t)(space - slot), 0, CDP__REDIS_SLOTS - 1, &v) != 0)
        return -1;
    out->slot = (unsigned)v;
    const char *addr = space + 1;
    if (memchr(addr, ' ', (size_t)(end - addr)))
        return -1;
    return cdp__redis_addr_parse(addr, (size_t)(end - addr), &out->addr);
}

/* ------------------------------------------------------------ backoff */

int cdp__redis_backoff_next(int cur_ms, int min_ms, int max_ms)
{
    if (max_ms < min_ms)
        max_ms = min_ms;
    if (cur_ms < min_ms)
        return min_ms;
    if (cur_ms > max_ms / 2)
        return max_ms;
    return cur_ms * 2;
}

/* ------------------------------------------------------------ scripts */

int cdp__redis_evalsha_to_eval(const char *cmd, size_t len, const char *lua, size_t lualen,
                               char **out, size_t *outlen)
{
    /* "*<argc>\r\n" */
    const char *hdr_end = len > 1 && cmd[0] == '*' ? memchr(cmd, '\n', len) : NULL;
    if (!hdr_end || hdr_end == cmd || hdr_end[-1] != '\r')
        return -1;
    size_t hdrlen = (size_t)(hdr_end - cmd) + 1;
    size_t prefix = sizeof evalsha_prefix - 1;
    size_t rest = hdrlen + prefix + CDP__REDIS_SHA_LEN + sizeof resp_crlf - 1;
    if (len < rest || memcmp(cmd + hdrlen, evalsha_prefix, prefix) != 0 ||
        memcmp(cmd + rest - (sizeof resp_crlf - 1), resp_crlf, sizeof resp_crlf - 1) != 0)
        return -1;
    char bulk[REDIS_RESP_BULK_HEADER_MAX];
    int bulklen = snprintf(bulk, sizeof bulk, "$%zu\r\n", lualen);
    size_t total = hdrlen + (sizeof eval_name - 1) + (size_t)bulklen + lualen +
                   (sizeof resp_crlf - 1) + (len - rest);
    char *buf = malloc(total);
    if (!buf)
        return -1;
    char *p = buf;
    memcpy(p, cmd, hdrlen);
    p += hdrlen;
    memcpy(p, eval_name, sizeof eval_name - 1);
    p += sizeof eval_name - 1;
    memcpy(p, bulk, (size_t)bulklen);
    p += bulklen;
    memcpy(p, lua, lualen);
    p += lualen;
    memcpy(p, resp_crlf, sizeof resp_crlf - 1);
    p += sizeof resp_crlf - 1;
    memcpy(p, cmd + rest, len - rest);
    *out = buf;
    *outlen = total;
    return 0;
}

/* ------------------------------------------------------------ slot maps */

/* Fills r from one CLUSTER SLOTS entry: [first, last, [host, port, ...], ...].
 * Returns 0 or -1 when the entry is malformed. */
static int redis_slot_entry_parse(const redisReply *e, cdp__redis_slot_range *r)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
        return -1;
    const redisReply *first = e->element[0], *last = e->element[1], *node = e->element[2];
    if (first->type != REDIS_REPLY_INTEGER || last->type != REDIS_REPLY_INTEGER ||
        first->integer < 0 || last->integer < first->integer ||
        last->integer >= CDP__REDIS_SLOTS)
        return -1;
    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2)
        return -1;
    const redisReply *host = node->element[0], *port = node->element[1];
    if (port->type != REDIS_REPLY_INTEGER || port->integer < 1 || port->integer > REDIS_PORT_MAX)
        return -1;
    r->addr.host[0] = '\0';
    if (host->type == REDIS_REPLY_STRING) {
        if (host->len >= sizeof r->addr.host)
            return -1;
        if (strcmp(host->str, "?") != 0) {
            memcpy(r->addr.host, host->str, host->len);
            r->addr.host[host->len] = '\0';
        }
    } else if (host->type != REDIS_REPLY_NIL) {
        return -1;
    }
    r->first = (unsigned)first->integer;
    r->last = (unsigned)last->integer;
    r->addr.port = (int)port->integer;
    return 0;
}

int cdp__redis_slots_parse(const redisReply *reply, cdp__redis_slot_range **out)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    *out = NULL;
    if (reply->elements == 0)
        return 0;
    cdp__redis_slot_range *ranges = calloc(reply->elements, sizeof *ranges);
    if (!ranges)
        return -1;
    for (size_t i = 0; i < reply->elements; i++) {
        if (redis_slot_entry_parse(reply->element[i], &ranges[i]) != 0) {
            free(ranges);
            return -1;
        }
    }
    *out = ranges;
    return (int)reply->elements;
}
