/* cdp-identity: the identity service binary (gRPC port 50052, metrics
 * 9152). The shared runtime runs the process; this file only wires the
 * service's configuration, store and handlers into it. */
#include <stdlib.h>

#include "cdp_log.h"
#include "cdp_service.h"
#include "idn_service.h"

static int identity_init(cdp_service *svc) {
    idn_config cfg;
    if (idn_config_from_env(&cfg) != 0)
        return -1;
    idn_service *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    svc->state = s;
    if (idn_service_init(s, &cfg, svc->redis, svc->server) != 0)
        return -1;
    cdp_log(CDP_LOG_INFO, "identity rules", "{s:s,s:i,s:i}", "default_region",
            cfg.ident.region->iso, "priority_types", (int)cfg.rules.n_priority, "limits",
            (int)cfg.rules.n_limits);
    return 0;
}

static void identity_destroy(cdp_service *svc) {
    idn_service *s = svc->state;
    if (s != NULL)
        idn_service_close(s);
    free(s);
    svc->state = NULL;
}

static const cdp_service_def k_identity = {
    .name = "identity",
    .grpc_service = "cdp.v1.Identity",
    .port = CDP_PORT_IDENTITY,
    .metrics_port = CDP_METRICS_PORT_BASE + 2,
    .init = identity_init,
    .destroy = identity_destroy,
};

int main(int argc, char **argv) {
    return cdp_service_main(&k_identity, argc, argv);
}
