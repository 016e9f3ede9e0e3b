/* cdp-segmentation: the segmentation service binary. Everything but the
 * definition below lives in the service core (seg_*.c) and the shared
 * runtime. */
#include "cdp_service.h"
#include "seg_service.h"

/* Metrics listen on 9150 + the service's rank (segmentation is the fourth). */
enum { SEG_METRICS_PORT = CDP_METRICS_PORT_BASE + 4 };

static const cdp_service_def seg_service_def = {
    .name = "segmentation",
    .grpc_service = "cdp.v1.Segmentation",
    .port = CDP_PORT_SEGMENTATION,
    .metrics_port = SEG_METRICS_PORT,
    .init = seg_service_init,
    .on_redis_state = seg_service_redis_state,
    .stop = seg_service_stop,
    .destroy = seg_service_destroy,
};

int main(int argc, char **argv)
{
    return cdp_service_main(&seg_service_def, argc, argv);
}
