/* ing_service: the ingestion service as the shared runtime sees it (the
 * cdp_service_def main() runs) and the state its handlers share.
 *
 * ing_service.c binds cdp.v1.Ingestion's methods and handles intake (Ingest,
 * Track); ing_dead.c handles the dead-letter methods; ing_pipeline.c is the
 * consumer that runs in the same process. */
#ifndef ING_SERVICE_H
#define ING_SERVICE_H

#include <grpc/status.h>
#include "cdp_rpc.h"
#include "cdp_service.h"
#include "ing_config.h"
#include "ing_log.h"

typedef struct ing_pipeline ing_pipeline;

typedef struct {
    cdp_service *svc;
    ing_config cfg;
    ing_log log;
    ing_pipeline *pipeline;   /* NULL when CDP_PIPELINE_ENABLED=0 */
} ing_state;

extern const cdp_service_def ing_service_def;

/* Handlers of the dead-letter methods (ing_dead.c); ud is the ing_state. */
void ing_dead_list(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void ing_dead_replay(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);

/* The gRPC status and message prefix for a failed log call. */
grpc_status_code ing_log_status(ing_log_rc rc, const char **prefix);

#endif
