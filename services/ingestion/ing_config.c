/* ing_config: ingestion's configuration from the environment (see
 * ing_config.h; every variable is documented in docs/ingestion.md). */
#include "ing_config.h"

#include <stdlib.h>
#include <string.h>

#include "cdp_config.h"
#include "cdp_log.h"

#define ING_MAX_BYTES_LIMIT (64LL * 1024 * 1024)
#define ING_MAX_SECONDS_LIMIT (1000LL * ING_SECONDS_PER_YEAR)
#define ING_MAX_DEPTH_LIMIT 100
#define ING_MAX_MS_LIMIT 3600000LL
#define ING_MAX_LOG_MAXLEN 1000000000LL
#define ING_MIN_BYTES_LIMIT 1024
#define ING_MAX_BATCH_EVENTS_LIMIT 100000
#define ING_MIN_MS_LIMIT 10
/* The same bounds cdp_service applies to the Redis timeouts. */
#define ING_MAX_REDIS_TIMEOUT_MS 600000
#define ING_MAX_ATTEMPTS_LIMIT 1000
#define ING_DEFAULT_REDIS_CONNECT_MS 2000
#define ING_DEFAULT_REDIS_COMMAND_MS 5000

typedef struct {
    const char *name;
    int64_t def, min, max;
    int64_t *out;
} ing__int_var;

static int ing__read_ints(const ing__int_var *vars, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cdp_env_int(vars[i].name, vars[i].def, vars[i].min, vars[i].max, vars[i].out) != 0)
            return -1;
    return 0;
}

static int ing__read_limits(ing_config *cfg)
{
    ing_limits *l = &cfg->limits;
    ing_limits_default(l, &cfg->ident);
    const ing__int_var vars[] = {
        {"CDP_INGEST_MAX_EVENT_BYTES", ING_DEFAULT_MAX_EVENT_BYTES, ING_MIN_BYTES_LIMIT, ING_MAX_BYTES_LIMIT,
         &l->max_event_bytes},
        {"CDP_INGEST_MAX_BATCH_EVENTS", ING_DEFAULT_MAX_BATCH_EVENTS, 1, ING_MAX_BATCH_EVENTS_LIMIT, &l->max_batch_events},
        {"CDP_INGEST_MAX_BATCH_BYTES", ING_DEFAULT_MAX_BATCH_BYTES, ING_MIN_BYTES_LIMIT, ING_MAX_BYTES_LIMIT,
         &l->max_batch_bytes},
        {"CDP_INGEST_MAX_FUTURE_S", ING_DEFAULT_MAX_FUTURE_S, 0, ING_MAX_SECONDS_LIMIT,
         &l->max_future_s},
        {"CDP_INGEST_MAX_PAST_S", ING_DEFAULT_MAX_PAST_S, 0, ING_MAX_SECONDS_LIMIT, &l->max_past_s},
        {"CDP_INGEST_MAX_DEPTH", ING_DEFAULT_MAX_DEPTH, 1, ING_MAX_DEPTH_LIMIT, &l->max_depth},
    };
    return ing__read_ints(vars, sizeof vars / sizeof vars[0]);
}

static int ing__read_log(ing_config *cfg)
{
    int64_t shards, window, maxlen;
    const ing__int_var vars[] = {
        {"CDP_INGEST_LOG_SHARDS", ING_DEFAULT_LOG_SHARDS, 1, ING_MAX_LOG_SHARDS, &shards},
        {"CDP_INGEST_DEDUP_WINDOW_S", ING_DEFAULT_DEDUP_WINDOW_S, 1, ING_MAX_SECONDS_LIMIT, &window},
        {"CDP_INGEST_LOG_MAXLEN", ING_DEFAULT_LOG_MAXLEN, 1, ING_MAX_LOG_MAXLEN, &maxlen},
    };
    if (ing__read_ints(vars, sizeof vars / sizeof vars[0]) != 0)
        return -1;
    cfg->log.shards = (unsigned)shards;
    cfg->log.dedup_window_s = window;
    cfg->log.maxlen = maxlen;
    return 0;
}

static int ing__read_pipeline(ing_config *cfg)
{
    ing_pipeline_config *p = &cfg->pipeline;
    int64_t v[12];
    const ing__int_var vars[] = {
        {"CDP_PIPELINE_ENABLED", 1, 0, 1, &v[0]},
        {"CDP_PIPELINE_BATCH", ING_DEFAULT_PIPELINE_BATCH, 1, ING_MAX_PIPELINE_BATCH, &v[1]},
        {"CDP_PIPELINE_BLOCK_MS", ING_DEFAULT_PIPELINE_BLOCK_MS, 1, ING_MAX_MS_LIMIT, &v[2]},
        {"CDP_PIPELINE_MAX_ATTEMPTS", ING_DEFAULT_PIPELINE_MAX_ATTEMPTS, 1, ING_MAX_ATTEMPTS_LIMIT,
         &v[3]},
        {"CDP_PIPELINE_CLAIM_INTERVAL_MS", ING_DEFAULT_CLAIM_INTERVAL_MS, ING_MIN_MS_LIMIT, ING_MAX_MS_LIMIT, &v[4]},
        {"CDP_PIPELINE_CLAIM_IDLE_MS", ING_DEFAULT_CLAIM_IDLE_MS, ING_MIN_MS_LIMIT, ING_MAX_MS_LIMIT, &v[5]},
        {"CDP_PIPELINE_RPC_DEADLINE_MS", ING_DEFAULT_RPC_DEADLINE_MS, ING_MIN_MS_LIMIT, ING_MAX_MS_LIMIT, &v[6]},
        {"CDP_PIPELINE_BACKOFF_MIN_MS", ING_DEFAULT_BACKOFF_MIN_MS, 1, ING_MAX_MS_LIMIT, &v[7]},
        {"CDP_PIPELINE_BACKOFF_MAX_MS", ING_DEFAULT_BACKOFF_MAX_MS, 1, ING_MAX_MS_LIMIT, &v[8]},
        {"CDP_REDIS_CONNECT_TIMEOUT_MS", ING_DEFAULT_REDIS_CONNECT_MS, ING_MIN_MS_LIMIT, ING_MAX_REDIS_TIMEOUT_MS, &v[9]},
        {"CDP_REDIS_COMMAND_TIMEOUT_MS", ING_DEFAULT_REDIS_COMMAND_MS, ING_MIN_MS_LIMIT, ING_MAX_REDIS_TIMEOUT_MS, &v[10]},
        {"CDP_PIPELINE_LANES", ING_DEFAULT_PIPELINE_LANES, 1, ING_MAX_PIPELINE_LANES, &v[11]},
    };
    if (ing__read_ints(vars, sizeof vars / sizeof vars[0]) != 0)
        return -1;
    p->enabled = (int)v[0];
    p->batch = (int)v[1];
    p->block_ms = (int)v[2];
    p->max_attempts = (int)v[3];
    p->claim_interval_ms = (int)v[4];
    p->claim_idle_ms = (int)v[5];
    p->rpc_deadline_ms = (int)v[6];
    p->backoff_min_ms = (int)v[7];
    p->backoff_max_ms = v[8] < v[7] ? (int)v[7] : (int)v[8];
    p->redis_connect_timeout_ms = (int)v[9];
    p->redis_command_timeout_ms = (int)v[10];
    p->lanes = (int)v[11];
    p->identity_addr = cdp_env_str("CDP_IDENTITY_ADDR", ING_DEFAULT_IDENTITY_ADDR);
    p->profile_addr = cdp_env_str("CDP_PROFILE_ADDR", ING_DEFAULT_PROFILE_ADDR);
    /* Set but empty switches the step off (tests of the first three
     * services alone); unset takes the default address. */
    const char *addr = getenv("CDP_CONSENT_ADDR");
    p->consent_addr = addr ? addr : ING_DEFAULT_CONSENT_ADDR;
    addr = getenv("CDP_SEGMENTATION_ADDR");
    p->segmentation_addr = addr ? addr : ING_DEFAULT_SEGMENTATION_ADDR;
    p->redis_addrs = cdp_env_str("CDP_REDIS_ADDR", "127.0.0.1:6379");
    return 0;
}

int ing_config_read(ing_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = cdp_ident_config_from_env(&cfg->ident);
    if (rc != 0) {
        cdp_log(CDP_LOG_ERROR, "invalid configuration", "{s:s,s:s,s:s,s:s}", "variable",
                rc == -1 ? CDP_IDENT_ENV_REGION : CDP_IDENT_ENV_BLOCKED, "value",
                cdp_env_str(rc == -1 ? CDP_IDENT_ENV_REGION : CDP_IDENT_ENV_BLOCKED, ""), "reason",
                rc == -1 ? "unknown region" : "too many or too long blocked values", "service",
                "ingestion");
        return -1;
    }
    if (ing__read_limits(cfg) != 0 || ing__read_log(cfg) != 0 || ing__read_pipeline(cfg) != 0)
        return -1;
    return 0;
}
