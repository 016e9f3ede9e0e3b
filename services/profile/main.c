/* cdp-profile: the profile service binary. Everything but the definition
 * below lives in the service core (prf_*.c) and the shared runtime. */
#include "cdp_service.h"
#include "prf_service.h"

/* Metrics listen on 9150 + the service's rank (profile is the third). */
enum { PRF_METRICS_PORT = CDP_METRICS_PORT_BASE + 3 };

static const cdp_service_def prf_def = {
    .name = "profile",
    .grpc_service = "cdp.v1.Profile",
    .port = CDP_PORT_PROFILE,
    .metrics_port = PRF_METRICS_PORT,
    .init = prf_service_init,
    .destroy = prf_service_destroy,
};

int main(int argc, char **argv)
{
    return cdp_service_main(&prf_def, argc, argv);
}
