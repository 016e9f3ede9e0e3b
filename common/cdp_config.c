/* cdp_config: strict readers for configuration from environment variables.
 *
 * Values are parsed strictly (no trailing garbage, no silent wrap-around, no
 * fallback to the default on a typo): a bad value is logged with the variable,
 * the value and what is accepted, and reported to the caller as -1 so the
 * process exits at startup instead of running misconfigured. */
/* Before cdp_config.h, which uses size_t without including <stddef.h>. */
#include <stddef.h>

#include "cdp_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdp_log.h"

#define CDP_CONFIG_DECIMAL 10
#define CDP_PORT_MAX 65535
#define CDP_PORT_MAX_DIGITS 5

const char *cdp_env_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? v : def;
}

/* Parses s as a whole base-10 integer. Leading whitespace, trailing
 * characters and out-of-range values are errors. Returns 0 or -1. */
static int config_parse_int(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, CDP_CONFIG_DECIMAL);
    if (errno == ERANGE || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int cdp_env_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    long long parsed = 0;
    const char *reason = NULL;
    if (config_parse_int(v, &parsed) != 0)
        reason = "not an integer";
    else if (parsed < min || parsed > max)
        reason = "out of range";
    if (reason) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s,s:I,s:I}",
                "variable", name, "value", v, "reason", reason,
                "min", (json_int_t)min, "max", (json_int_t)max);
        return -1;
    }
    *out = (int64_t)parsed;
    return 0;
}

/* ------------------------------------------------------------ host:port */

/* Parses a port of 1..5 digits in [0, 65535]; 0 means "pick a free port". */
static int config_parse_port(const char *s, int *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > CDP_PORT_MAX_DIGITS)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * CDP_CONFIG_DECIMAL + (s[i] - '0');
    }
    if (v > CDP_PORT_MAX)
        return -1;
    *port = v;
    return 0;
}

/* A host span: non-empty, no brackets, no whitespace or control
 * characters, and no ':' unless allow_colon (inside brackets: IPv6). */
static int config_valid_host(const char *h, size_t len, int allow_colon)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if ((c == ':' && !allow_colon) || c == '[' || c == ']' || isspace(c) || iscntrl(c))
            return 0;
    }
    return 1;
}

/* Splits s into the host span [*h, *h + *hlen) and the port text.
 * Returns a pointer to the port text, or NULL when s is malformed. */
static const char *config_split_hostport(const char *s, const char **h, size_t *hlen)
{
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return NULL;
        *h = s + 1;
        *hlen = (size_t)(close - *h);
        if (!config_valid_host(*h, *hlen, 1))
            return NULL;
        return close + 2;
    }
    const char *colon = strrchr(s, ':');
    if (!colon)
        return NULL;
    *h = s;
    *hlen = (size_t)(colon - s);
    if (!config_valid_host(*h, *hlen, 0))
        return NULL;
    return colon + 1;
}

int cdp_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    if (!s || !host || !port)
        return -1;
    const char *h = NULL;
    size_t hlen = 0;
    const char *p = config_split_hostport(s, &h, &hlen);
    int parsed_port = 0;
    if (!p || config_parse_port(p, &parsed_port) != 0)
        return -1;
    if (hlen + 1 > hostlen)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = parsed_port;
    return 0;
}
