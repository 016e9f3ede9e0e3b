/* cdp-consent: the consent service binary. Everything but the definition
 * below lives in the service core (cns_*.c) and the shared runtime. */
#include "cdp_service.h"
#include "cns_service.h"

/* Metrics listen on 9150 + the service's rank (consent is the fifth). */
enum { CNS_METRICS_PORT = CDP_METRICS_PORT_BASE + 5 };

static const cdp_service_def cns_def = {
    .name = "consent",
    .grpc_service = "cdp.v1.Consent",
    .port = CDP_PORT_CONSENT,
    .metrics_port = CNS_METRICS_PORT,
    .init = cns_service_init,
    .destroy = cns_service_destroy,
};

int main(int argc, char **argv)
{
    return cdp_service_main(&cns_def, argc, argv);
}
