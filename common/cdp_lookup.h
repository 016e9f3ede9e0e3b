/* cdp_lookup: "which master id is this identifier?" asked of the identity
 * service, as profile, segmentation and consent ask it when a request names
 * a person by an identifier.
 *
 * The call's deadline is the smaller of the caller's remaining time and
 * timeout_ms (at least 1 ms). The answer comes once, on the loop:
 *   OK          master is the id
 *   NOT_FOUND   identity knows no such identifier; details "identifier not found"
 *   other       "identity lookup failed: <why>"; a cancelled lookup (the
 *               channel closing) is reported as UNAVAILABLE, a dependency down
 * master and details are valid only during the callback. */
#ifndef CDP_LOOKUP_H
#define CDP_LOOKUP_H

#include <stdint.h>
#include "cdp/v1/event.pb-c.h"
#include "cdp_rpc.h"

typedef void (*cdp_lookup_cb)(grpc_status_code code, const char *master, const char *details,
                              void *ud);

/* Starts the lookup on `identity` for `call` (the request being served).
 * If it cannot start, cb runs at once with INTERNAL. */
void cdp_lookup(cdp_rpc_channel *identity, cdp_rpc_call *call, const Cdp__V1__Identifier *id,
                int64_t timeout_ms, cdp_lookup_cb cb, void *ud);

#endif
