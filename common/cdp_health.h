/* cdp_health: grpc.health.v1.Health (Check and Watch) for a service.
 *
 * Status is kept per service name ("" is the whole server). A Watch stream
 * receives the current status at once and then every change. The service's
 * main wires Redis' state into it: NOT_SERVING while Redis is unreachable,
 * SERVING once it is back. */
#ifndef CDP_HEALTH_H
#define CDP_HEALTH_H

#include "cdp_rpc.h"

typedef struct cdp_health cdp_health;

/* Registers the Health service on s (before cdp_rpc_server_start). Both
 * "" and `service_name` (e.g. "cdp.v1.Ingestion") start NOT_SERVING. */
cdp_health *cdp_health_new(cdp_rpc_server *s, const char *service_name);

/* serving: 1 SERVING, 0 NOT_SERVING; applies to "" and the service name. */
void cdp_health_set(cdp_health *h, int serving);
int cdp_health_get(const cdp_health *h);

/* Ends every Watch stream (at shutdown) and frees h. */
void cdp_health_free(cdp_health *h);

#endif
