/* seg_service: the Segmentation gRPC service (proto/cdp/v1/segmentation.proto)
 * on the shared runtime. seg_service.c reads the configuration, wires the
 * handlers and keeps the definitions snapshot fresh; the other modules:
 *   seg_crud.c      CreateSegment .. DeleteSegment, ValidateRule, GetBackfill
 *   seg_eval.c      the membership path every evaluation goes through
 *   seg_evaluate.c  the Evaluate handler
 *   seg_members.c   ListMembers, GetMemberships, EstimateSize
 *   seg_sched.c     scheduled re-evaluation of time-based segments
 *   seg_backfill.c  background backfill of new and changed segments
 *   seg_watch.c     WatchSegment over the change stream
 *
 * Configuration (docs/segmentation.md):
 *   CDP_SEGMENTATION_RELOAD_MS          definitions version poll       1000
 *   CDP_SEGMENTATION_SCHEDULER_MS       scheduler tick                 1000
 *   CDP_SEGMENTATION_SCHEDULER_BATCH    profiles claimed per tick      500
 *   CDP_SEGMENTATION_SCHEDULER_LEASE_MS claim lease                    30000
 *   CDP_SEGMENTATION_CHANGES_MAXLEN     change stream MAXLEN ~         1000000
 *   CDP_SEGMENTATION_BACKFILL_CHUNK     profiles per backfill step     200
 *   CDP_SEGMENTATION_BACKFILL_LEASE_MS  backfill lease                 10000
 *   CDP_SEGMENTATION_WATCH_BLOCK_MS     XREAD BLOCK of the watch reader 1000
 *   CDP_SEGMENTATION_LOOKUP_TIMEOUT_MS  identity Lookup deadline       2000
 *   CDP_IDENTITY_ADDR                   identity service               127.0.0.1:50052
 *   CDP_CLOCK_OFFSET_FILE               test facility (seg_clock.h)    unset */
#ifndef SEG_SERVICE_H
#define SEG_SERVICE_H

#include <stdint.h>
#include <uv.h>

#include "cdp_rpc.h"
#include "cdp_service.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "seg_clock.h"
#include "seg_defs.h"
#include "seg_keys.h"
#include "seg_lua.h"

/* Limits of the API, not configuration. */
enum {
    SEG_PAGE_DEFAULT = 100,
    SEG_PAGE_MAX = 1000,
    SEG_SAMPLE_DEFAULT = 1000,
    SEG_SAMPLE_MAX = 10000,
    SEG_MAX_TOUCHES = 10000,     /* profiles in one Evaluate */
    SEG_TOKEN_MAX = 64,
};

typedef struct {
    int64_t reload_ms, scheduler_ms, scheduler_batch, scheduler_lease_ms;
    int64_t changes_maxlen, backfill_chunk, backfill_lease_ms, watch_block_ms;
    int64_t lookup_timeout_ms;
    int64_t redis_connect_timeout_ms, redis_command_timeout_ms;
    const char *identity_addr, *redis_addrs, *clock_file;
} seg_config;

typedef struct seg_watch_hub seg_watch_hub;
typedef struct seg_backfills seg_backfills;

typedef struct seg_svc {
    cdp_service *svc;
    cdp_redis *redis;
    seg_scripts scripts;
    seg_config cfg;
    seg_clock clock;
    seg_defs *defs;              /* current snapshot (never NULL after init) */
    int defs_loaded;             /* the snapshot was read from Redis at least once */
    int reload_inflight, reload_again;
    uv_timer_t reload_timer, sched_timer;
    int sched_inflight;
    cdp_rpc_channel *identity;
    seg_watch_hub *watch;
    seg_backfills *bf;
    int stopping;
    char token[SEG_TOKEN_MAX];   /* this replica, for leases */
} seg_svc;

int seg_config_read(seg_config *c);

/* cdp_service_def hooks. */
int seg_service_init(cdp_service *svc);
/* Redis came up: (re)loads the definitions at once, without waiting for the
 * next poll (until the first load Evaluate answers UNAVAILABLE). */
void seg_service_redis_state(cdp_service *svc, int up);
void seg_service_stop(cdp_service *svc, void (*done)(cdp_service *svc));
void seg_service_destroy(cdp_service *svc);

/* Reloads the definitions now (after this replica wrote them). */
void seg_defs_reload(seg_svc *s);
/* "now" of the service (seg_clock). */
int64_t seg_now(seg_svc *s);
/* Initialises ts to the instant ms (Unix milliseconds). */
void seg_ts_from_ms(Google__Protobuf__Timestamp *ts, int64_t ms);

/* Handlers; ud is the seg_svc. */
void seg_create_segment(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_update_segment(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_get_segment(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_list_segments(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_delete_segment(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_validate_rule(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_evaluate(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_get_backfill(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_list_members(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_get_memberships(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_estimate_size(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void seg_watch_segment(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);

/* Background workers (seg_sched.c, seg_backfill.c, seg_watch.c). */
void seg_sched_tick(seg_svc *s);
int seg_backfills_init(seg_svc *s);
/* Called after every reload: starts backfills this replica can lease. */
void seg_backfills_poll(seg_svc *s);
void seg_backfills_stop(seg_svc *s);
void seg_backfills_free(seg_svc *s);
int seg_watch_init(seg_svc *s);
/* Ends every watcher cleanly and stops the reader. */
void seg_watch_stop(seg_svc *s);
void seg_watch_free(seg_svc *s);

#endif
