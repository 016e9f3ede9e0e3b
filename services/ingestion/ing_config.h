/* ing_config: ingestion's own configuration, read once from the environment
 * at start-up (docs/ingestion.md lists every variable). A malformed value
 * stops the service with a logged reason rather than falling back. */
#ifndef ING_CONFIG_H
#define ING_CONFIG_H

#include <stdint.h>
#include "cdp_ident.h"
#include "ing_log.h"
#include "ing_validate.h"

#define ING_DEFAULT_IDENTITY_ADDR "127.0.0.1:50052"
#define ING_DEFAULT_PROFILE_ADDR "127.0.0.1:50053"
#define ING_DEFAULT_SEGMENTATION_ADDR "127.0.0.1:50054"
#define ING_DEFAULT_CONSENT_ADDR "127.0.0.1:50055"
#define ING_DEFAULT_PIPELINE_BATCH 500
#define ING_MAX_PIPELINE_BATCH 5000
#define ING_DEFAULT_PIPELINE_LANES 4
#define ING_MAX_PIPELINE_LANES 64
#define ING_DEFAULT_PIPELINE_BLOCK_MS 1000
#define ING_DEFAULT_PIPELINE_MAX_ATTEMPTS 5
#define ING_DEFAULT_CLAIM_INTERVAL_MS 5000
#define ING_DEFAULT_CLAIM_IDLE_MS 30000
#define ING_DEFAULT_RPC_DEADLINE_MS 10000
#define ING_DEFAULT_BACKOFF_MIN_MS 200
#define ING_DEFAULT_BACKOFF_MAX_MS 30000

typedef struct {
    int enabled;              /* CDP_PIPELINE_ENABLED: 0 runs intake only */
    const char *identity_addr;
    const char *profile_addr;
    const char *consent_addr;       /* "" switches the consent step off */
    const char *segmentation_addr;  /* "" switches the evaluate step off */
    const char *redis_addrs;  /* CDP_REDIS_ADDR, for the blocking readers */
    int redis_connect_timeout_ms;
    int redis_command_timeout_ms;
    int batch;                /* XREADGROUP COUNT */
    int lanes;                /* batches in flight per shard, one consumer each */
    int block_ms;             /* XREADGROUP BLOCK */
    int max_attempts;         /* per-event failures before dead-lettering */
    int claim_interval_ms;    /* how often XAUTOCLAIM runs */
    int claim_idle_ms;        /* min idle of entries it claims */
    int rpc_deadline_ms;      /* identity and profile calls */
    int backoff_min_ms;       /* whole-batch failure backoff ... */
    int backoff_max_ms;       /* ... doubled up to this */
} ing_pipeline_config;

typedef struct {
    cdp_ident_config ident;
    ing_limits limits;        /* limits.ident points at ident above */
    ing_log_config log;
    ing_pipeline_config pipeline;
} ing_config;

/* Reads the whole configuration. Returns 0, or -1 after logging the
 * offending variable. `cfg` must not move afterwards (limits point into it). */
int ing_config_read(ing_config *cfg);

#endif
