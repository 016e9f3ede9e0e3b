/* cdp-activation: the activation service binary. Everything but the
 * definition below lives in the service core (act_*.c) and the shared
 * runtime. */
#include "act_service.h"
#include "cdp_service.h"

/* Metrics listen on 9150 + the service's rank (activation is the sixth). */
enum { ACT_METRICS_PORT = CDP_METRICS_PORT_BASE + 6 };

static const cdp_service_def act_def = {
    .name = "activation",
    .grpc_service = "cdp.v1.Activation",
    .port = CDP_PORT_ACTIVATION,
    .metrics_port = ACT_METRICS_PORT,
    .init = act_service_init,
    .on_redis_state = act_service_redis_state,
    .stop = act_service_stop,
    .destroy = act_service_destroy,
};

int main(int argc, char **argv)
{
    return cdp_service_main(&act_def, argc, argv);
}
