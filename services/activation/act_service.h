/* act_service: the Activation gRPC service (proto/cdp/v1/activation.proto)
 * on the shared runtime, and the state every act_ module shares.
 *
 *   act_service.c  configuration, wiring, metrics, start and stop
 *   act_dest.c     destination CRUD and the catalogue every replica reloads
 *   act_intake.c   the segmentation change-stream consumer -> outbox
 *   act_outbox.c   per-destination delivery workers: claim, consent, send
 *   act_gateway.c  Subscribe / Ack (channel gateways)
 *   act_query.c    GetDelivery, ListDeliveries, ListDeadLetters, Replay
 *
 * Configuration (docs/activation.md lists defaults and meaning):
 *   CDP_PROFILE_ADDR, CDP_CONSENT_ADDR, CDP_ACTIVATION_BACKOFF_BASE_MS,
 *   CDP_ACTIVATION_BACKOFF_MAX_MS, CDP_ACTIVATION_POLL_MS,
 *   CDP_ACTIVATION_LEASE_MARGIN_MS, CDP_ACTIVATION_RELOAD_MS,
 *   CDP_ACTIVATION_BATCH, CDP_ACTIVATION_BLOCK_MS,
 *   CDP_ACTIVATION_CLAIM_INTERVAL_MS, CDP_ACTIVATION_CLAIM_IDLE_MS,
 *   CDP_ACTIVATION_RPC_TIMEOUT_MS, CDP_ACTIVATION_RETENTION_S,
 *   CDP_ACTIVATION_STOP_WAIT_MS, CDP_ACTIVATION_CONSUMER. */
#ifndef ACT_SERVICE_H
#define ACT_SERVICE_H

#include "cdp_redis_status.h"
#include <stdint.h>
#include <uv.h>

#include "act_core.h"
#include "act_http.h"
#include "act_lua.h"
#include "cdp_redis.h"
#include "cdp_rpc.h"
#include "cdp_service.h"
#include "cdp/v1/activation.pb-c.h"

#define ACT_CHANGES_KEY "cdp:seg:{changes}:log"
#define ACT_CHANGES_GROUP "activation"
#define ACT_KEY_PREFIX_MAX (ACT_ID_MAX + 32)
#define ACT_TOKEN_MAX 96
#define ACT_CONSUMER_MAX 128

typedef struct {
    const char *profile_addr;
    const char *consent_addr;
    const char *redis_addrs;
    const char *consumer;
    int64_t backoff_base_ms, backoff_max_ms;
    int64_t poll_ms, lease_margin_ms, reload_ms;
    int64_t batch, block_ms, claim_interval_ms, claim_idle_ms;
    int64_t rpc_timeout_ms, retention_s, stop_wait_ms;
    int64_t redis_connect_ms, redis_command_ms;
} act_config;

typedef struct act_svc act_svc;
typedef struct act_dest act_dest;
typedef struct act_job act_job;
typedef struct act_sub act_sub;
typedef struct act_intake act_intake;

/* One destination this replica knows, with its delivery worker. Kept
 * across catalogue reloads (def is swapped); a deleted one is marked gone
 * and freed once nothing of it is in flight. */
struct act_dest {
    act_svc *as;
    char id[ACT_ID_MAX + 1];
    Cdp__V1__Destination *def;   /* unpacked, owned */
    char *keys[ACT_KEY_COUNT];
    size_t keylens[ACT_KEY_COUNT];
    uv_timer_t timer;            /* the next claim */
    int claiming;                /* a claim script is outstanding */
    int rekick;                  /* a kick came while claiming: claim again at once */
    int in_flight;               /* jobs claimed and not finished */
    int gone;                    /* deleted: free when idle */
    int seen;                    /* present in the catalogue being loaded */
    int closing;                 /* its timer is closing */
    unsigned rr;                 /* round robin over subscribers */
    char claim_token[ACT_TOKEN_MAX]; /* lease token of the outstanding claim */
    int claim_max;               /* what that claim asked for */
    act_dest *next;
};

/* One delivery attempt in progress (claimed, not yet finished). Its timer
 * is the gateway ack timeout; every job is freed by closing it. */
struct act_job {
    act_dest *d;
    char id[ACT_DELIVERY_ID_MAX];
    char token[ACT_TOKEN_MAX];
    Cdp__V1__ActivationMessage *msg;  /* unpacked body, attempt set */
    int64_t created_ms;
    uv_timer_t timer;
    int timer_on;
    act_sub *sub;                     /* gateway: the stream it went out on */
    int finishing;                    /* the finish script is outstanding */
    void (*ack_cb)(void *ud, int ok); /* Ack waiting for this job's finish */
    void *ack_ud;
    act_job *next;                    /* in as->gw_jobs while awaiting an ack */
};

/* One Subscribe stream. */
struct act_sub {
    act_svc *as;
    cdp_rpc_call *call;
    char *channel;
    char *name;
    int closed;
    act_sub *next;
};

struct act_svc {
    cdp_service *svc;
    act_config cfg;
    cdp_rpc_channel *profile;
    cdp_rpc_channel *consent;
    act_http *http;
    cdp_redis_script *s_put, *s_del, *s_enqueue, *s_claim, *s_finish, *s_replay, *s_list;
    /* catalogue */
    act_dest *dests;
    long long version;           /* loaded catalogue version, -1 before the first */
    long long loading_version;   /* the version being loaded */
    int loaded;                  /* the catalogue was read at least once */
    int loading;
    int reload_again;
    uv_timer_t reload_timer;
    /* intake */
    act_intake *intake;
    /* gateway */
    act_sub *subs;
    act_job *gw_jobs;
    /* lifecycle */
    int redis_up;
    int stopping;
    int handles_open;
    unsigned long long token_seq;
    uv_timer_t stop_timer;
    void (*stop_done)(cdp_service *svc);
    int http_closed;             /* act_http_close finished */
    int stop_forced;             /* act_http_close started */
    int timers_closing;
};

/* ---- act_service.c */
int act_config_read(act_config *c);
int act_service_init(cdp_service *svc);
void act_service_redis_state(cdp_service *svc, int up);
void act_service_stop(cdp_service *svc, void (*done)(cdp_service *svc));
void act_service_destroy(cdp_service *svc);
/* Checks whether stopping can complete (nothing in flight); see stop. */
void act_service_maybe_stopped(act_svc *as);
/* Close callback of a handle counted in handles_open whose data is the
 * act_svc: the last one ends the stop. */
void act_service_handle_closed(uv_handle_t *h);
/* A uniform 64-bit random number (libsodium). */
uint64_t act_random(void);

/* ---- act_dest.c */
void act_create_destination(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_update_destination(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_get_destination(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_list_destinations(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_delete_destination(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
/* Starts the periodic reload (and one at once). */
void act_dest_start(act_svc *as);
/* Reloads now (after this replica's own write). */
void act_dest_reload(act_svc *as);
act_dest *act_dest_find(act_svc *as, const char *id);
/* Validates an id argument named field ([A-Za-z0-9_.-]{1,64}); answers
 * the call with INVALID_ARGUMENT and returns -1 when bad, else 0. */
int act_id_arg(cdp_rpc_call *call, const char *field, const char *id);
/* Frees a deleted destination once nothing of it is in flight. */
void act_dest_release_if_gone(act_dest *d);
/* Frees every destination (after stop, timers closed). */
void act_dest_free_all(act_svc *as);
/* Closes every destination's timer; calls act_service_maybe_stopped as
 * they close. */
void act_dest_close_all(act_svc *as);
/* The outbox key names of destination id into keys/lens (malloc'd; free
 * with act_keys_free). Returns 0 or -1. */
int act_keys_make(const char *id, char *keys[ACT_KEY_COUNT], size_t lens[ACT_KEY_COUNT]);
void act_keys_free(char *keys[ACT_KEY_COUNT]);

/* ---- act_intake.c */
act_intake *act_intake_new(act_svc *as);
void act_intake_set_up(act_intake *in, int up);
void act_intake_stop(act_intake *in, void (*done)(void *ud), void *ud);
void act_intake_free(act_intake *in);

/* ---- act_outbox.c */
/* Arms the destination's claim timer to fire within after_ms. */
void act_outbox_kick(act_dest *d, uint64_t after_ms);
/* Kicks every destination (Redis came back, a subscriber connected). */
void act_outbox_kick_all(act_svc *as);
/* Runs the finish script (act_lua.h) for delivery id of destination
 * dest_id; cb gets the reply. max_attempts decides when a retry turns
 * into a dead letter. */
void act_outbox_finish(act_svc *as, const char *dest_id, const char *id, const char *token,
                       const char *outcome, int64_t next_at, const char *error,
                       const char *reason, int max_attempts, cdp_redis_cb cb, void *ud);
/* Ends a job with an outcome; the job is freed once the script answered
 * (and, when j->ack_cb is set, that is called with whether the delivery
 * was still in flight under the job's lease). */
void act_job_end(act_job *j, const char *outcome, int64_t next_at, const char *error,
                 const char *reason);
/* When a failed attempt of j is retried (backoff with full jitter). */
int64_t act_job_retry_at(const act_job *j);

/* ---- act_gateway.c */
void act_subscribe(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_ack(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
/* Sends j on a subscriber of its destination's channel. Returns 0, or -1
 * when no subscriber could take it (the caller releases it). */
int act_gateway_send(act_svc *as, act_job *j);
/* 1 when a subscriber of channel is connected to this replica. */
int act_gateway_has_sub(act_svc *as, const char *channel);
/* Ends every stream (shutdown) and releases their deliveries. */
void act_gateway_close_all(act_svc *as);

/* ---- act_query.c */
void act_get_delivery(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_list_deliveries(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_list_dead_letters(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);
void act_replay_dead_letters(cdp_rpc_call *call, const ProtobufCMessage *req, void *ud);

#endif
