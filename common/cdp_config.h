/* cdp_config: configuration from environment variables with documented
 * defaults (docs/configuration.md lists every variable).
 *
 * A malformed value is a startup error, not a silent default: the getters log
 * the variable, the value and the accepted range, and return -1 so main()
 * can exit with a clear message. */
#ifndef CDP_CONFIG_H
#define CDP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* The value of `name`, or `def` when unset or empty. Never NULL unless def is. */
const char *cdp_env_str(const char *name, const char *def);

/* Parses `name` as an integer in [min, max] into *out (def when unset).
 * Returns 0, or -1 after logging why the value is invalid. */
int cdp_env_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out);

/* Parses "host:port" (host may be a name or an IPv4/IPv6 literal in
 * brackets). Returns 0, or -1 if malformed. host is written NUL-terminated. */
int cdp_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

#endif
