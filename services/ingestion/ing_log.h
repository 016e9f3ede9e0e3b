/* ing_log: the durable event log in Redis, and its dead-letter streams.
 *
 * The log is CDP_INGEST_LOG_SHARDS Redis streams. An event goes to shard
 * crc32(message_id) mod shards, so a message id always meets its own dedup
 * marker. Every key of a shard carries the hash tag {log:<n>} and so lives
 * in one Redis Cluster slot, which lets one Lua script touch them together:
 *
 *   cdp:ing:{log:<n>}:events            stream: mid=<message_id> ev=<Event bytes>
 *   cdp:ing:{log:<n>}:dedup:<message_id> marker, value = received_at ms, TTL = window
 *   cdp:ing:{log:<n>}:dead              dead-letter stream
 *   cdp:ing:{log:<n>}:attempts          hash: events stream id -> failed attempts
 *
 * Appending (ing_log_append) runs one script per shard per request that, per
 * event, either reports a duplicate or appends the event and sets its marker,
 * so dedup and append cannot be separated by a crash. When the script's reply
 * arrives the events are in the stream: that is what "acknowledged" means.
 *
 * The pipeline's bookkeeping (ing_log_finish) and the dead-letter RPCs
 * (ing_log_replay, ing_log_dead_range) are scripts and commands over the
 * same keys. The pure helpers (shard, key names, dead-letter ids) are
 * tested without Redis. */
#ifndef ING_LOG_H
#define ING_LOG_H

#include <stddef.h>
#include <stdint.h>
#include "cdp_redis.h"

#define ING_DEFAULT_LOG_SHARDS 1
#define ING_MAX_LOG_SHARDS 1024
#define ING_DEFAULT_DEDUP_WINDOW_S 86400
#define ING_DEFAULT_LOG_MAXLEN 1000000
/* The consumer group every ingestion replica's pipeline reads with. */
#define ING_LOG_GROUP "pipeline"
/* Longest key: prefix, shard number, ":dedup:" and a 128-byte message id. */
#define ING_LOG_KEY_BUFSZ 192
/* "<shard>/<stream id>": 4 digits, '/', 20+1+20 digits, NUL. */
#define ING_DEAD_ID_BUFSZ 48
/* Error prefix the append script uses when the log is full. */
#define ING_LOG_FULL_ERR "CDPFULL"

/* ------------------------------------------------------------------ pure helpers */

/* CRC-32 (IEEE 802.3, as zlib's crc32) of len bytes. */
uint32_t ing_crc32(const void *data, size_t len);

/* The shard of a message id: crc32(message_id) mod shards (shards >= 1). */
unsigned ing_log_shard(const char *message_id, unsigned shards);

/* Writes "cdp:ing:{log:<shard>}:<suffix>" (suffix: "events", "dead",
 * "attempts") into out. Returns the length, or -1 if it does not fit. */
int ing_log_key(char *out, size_t outlen, unsigned shard, const char *suffix);

/* Writes "cdp:ing:{log:<shard>}:dedup:<message_id>". Returns the length or -1. */
int ing_log_dedup_key(char *out, size_t outlen, unsigned shard, const char *message_id);

/* Dead-letter ids as the API shows them: "<shard>/<stream id>". */
int ing_dead_id_format(char *out, size_t outlen, unsigned shard, const char *stream_id);

/* Parses a dead-letter id. A bare stream id means shard 0. The stream id
 * must look like "<ms>-<seq>" (digits). Returns 0, or -1 if malformed or the
 * shard is >= shards. */
int ing_dead_id_parse(const char *id, unsigned shards, unsigned *shard, char *stream_id,
                      size_t stream_id_len);

/* ------------------------------------------------------------------ the log */

typedef struct {
    unsigned shards;          /* CDP_INGEST_LOG_SHARDS */
    int64_t dedup_window_s;   /* CDP_INGEST_DEDUP_WINDOW_S */
    int64_t maxlen;           /* CDP_INGEST_LOG_MAXLEN: appends refused beyond it */
} ing_log_config;

typedef struct {
    cdp_redis *redis;
    ing_log_config cfg;
    cdp_redis_script *append;
    cdp_redis_script *finish;
    cdp_redis_script *replay;
} ing_log;

/* Registers the log's scripts on r (before cdp_redis_start). Returns 0 or -1. */
int ing_log_init(ing_log *log, cdp_redis *r, const ing_log_config *cfg);

/* Outcome of a call against the log. */
typedef enum {
    ING_LOG_OK = 0,
    ING_LOG_EUNAVAILABLE = -1, /* Redis unreachable, timed out, or answered an error */
    ING_LOG_EFULL = -2,        /* the shard's stream holds maxlen entries */
} ing_log_rc;

/* ------------------------------------------------------------------ append */

typedef struct {
    const char *message_id;
    const uint8_t *data;      /* packed Event, received_at already set */
    size_t len;
} ing_log_item;

typedef struct {
    int duplicate;            /* 1: the message id was accepted before */
    int64_t received_ms;      /* this request's, or the original's for a duplicate */
} ing_log_outcome;

/* Called once, on the loop. err is NULL for ING_LOG_OK. */
typedef void (*ing_log_cb)(ing_log_rc rc, const char *err, void *ud);

/* Appends n items (all of shard `shard`) in one script run; fills
 * outcomes[0..n) before calling cb with ING_LOG_OK. items, their bytes and
 * outcomes must stay valid until cb runs. */
void ing_log_append(ing_log *log, unsigned shard, const ing_log_item *items, size_t n,
                    int64_t received_ms, ing_log_outcome *outcomes, ing_log_cb cb, void *ud);

/* ------------------------------------------------------------------ pipeline bookkeeping */

typedef struct {
    const char *stream_id;    /* id in the events stream */
    const char *message_id;   /* may be "" for an unreadable entry */
    const char *reason;       /* why it failed */
    const uint8_t *data;      /* the entry's ev bytes (may be empty) */
    size_t len;
    int force;                /* 1: dead-letter now, whatever the attempts */
} ing_log_failure;

typedef struct {
    long long acked;          /* done entries acknowledged and deleted */
    long long retrying;       /* failures left pending for another attempt */
    long long dead;           /* failures moved to the dead-letter stream */
} ing_log_finish_result;

/* In one script run on shard `shard`: XACK + XDEL the done ids (and forget
 * their attempt counts); count one attempt for each failure and move those
 * that reached max_attempts (or are forced) to the dead-letter stream with
 * reason, attempts and failed_at = now_ms, acking and deleting them from the
 * events stream. Failures below the limit stay pending and are retried when
 * the claim loop picks them up. Arrays must stay valid until cb runs. */
void ing_log_finish(ing_log *log, unsigned shard, const char *const *done_ids, size_t n_done,
                    const ing_log_failure *failures, size_t n_failures, int max_attempts,
                    int64_t now_ms, ing_log_finish_result *result, ing_log_cb cb, void *ud);

/* ------------------------------------------------------------------ dead letters */

/* Replays dead letters of one shard back into its events stream (no dedup:
 * they were accepted once) and deletes them from the dead-letter stream.
 * With n_ids == 0 replays up to `chunk` of the oldest. *replayed gets the
 * count actually moved (ids that do not exist are skipped). */
void ing_log_replay(ing_log *log, unsigned shard, const char *const *stream_ids, size_t n_ids,
                    int chunk, long long *replayed, ing_log_cb cb, void *ud);

#endif
