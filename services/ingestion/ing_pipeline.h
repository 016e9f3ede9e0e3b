/* ing_pipeline: the consumer that moves accepted events from the log to
 * identity and profile. It runs inside every ingestion replica; replicas
 * share the work through the Redis consumer group "pipeline".
 *
 * Per log shard, CDP_PIPELINE_LANES lanes each keep one batch in flight:
 * a lane is a consumer of its own (<host>-<pid>-<lane>) with its own
 * blocking connection, and runs read (a blocking XREADGROUP of new
 * entries), resolve with identity, apply with profile, then acknowledge and
 * delete. Lane 0 also replays: after every (re)connect it reads the pending
 * entries of every lane name (the other lanes wait for it), and it runs the
 * XAUTOCLAIM rounds for entries idle too long in any consumer; what it
 * replays it applies in one call, so that profile folds every merge among
 * them before it applies their events. A failure of a whole call (a
 * service down, a deadline) retries the same batch after a capped
 * exponential backoff and never dead-letters anything; an event that fails
 * by itself counts one attempt and is dead-lettered after
 * CDP_PIPELINE_MAX_ATTEMPTS. docs/ingestion.md describes the guarantees. */
#ifndef ING_PIPELINE_H
#define ING_PIPELINE_H

#include <uv.h>
#include "cdp_redis.h"
#include "ing_config.h"
#include "ing_log.h"

#define ING_PIPELINE_METRIC_EVENTS "cdp_pipeline_events_total"
#define ING_PIPELINE_METRIC_LAG "cdp_pipeline_lag_seconds"

typedef struct ing_pipeline ing_pipeline;

/* Creates the pipeline: opens channels to identity and profile and one
 * blocking Redis client per lane of each shard, and waits for
 * ing_pipeline_set_redis_up.
 * `redis` (the service's client) and `log` must outlive it; cfg is copied.
 * Returns NULL after logging on failure. */
ing_pipeline *ing_pipeline_new(uv_loop_t *loop, cdp_redis *redis, ing_log *log,
                               const ing_pipeline_config *cfg);

/* The service's Redis went up (1: start or resume) or down (0: pause). */
void ing_pipeline_set_redis_up(ing_pipeline *p, int up);

/* Stops reading, abandons the batches in flight in every lane (their
 * entries stay pending in the group and are claimed again later), waits
 * until no lane has a step outstanding, closes channels, every lane's
 * client and timer, then calls done(ud) on the loop. */
void ing_pipeline_stop(ing_pipeline *p, void (*done)(void *ud), void *ud);

/* Frees a stopped (or never started) pipeline; NULL is fine. */
void ing_pipeline_free(ing_pipeline *p);

#endif
