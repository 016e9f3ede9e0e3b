/* cdp_echo: the null service (proto/cdp/v1/echo.proto) mounted on the
 * bridge with no logic. Benchmarks use it as the baseline every figure is
 * divided by; the bridge's tests use it as their peer. */
#ifndef CDP_ECHO_H
#define CDP_ECHO_H

#include "cdp_rpc.h"

/* Registers cdp.v1.Echo on s (before cdp_rpc_server_start). Returns 0/-1. */
int cdp_echo_register(cdp_rpc_server *s, uv_loop_t *loop);

#endif
