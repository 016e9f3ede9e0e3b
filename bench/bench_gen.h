/* bench_gen: the synthetic events the service benchmarks send.
 *
 * Event number `seq` of a run is fully determined by (run id, seq, people):
 * a unique message id "<run>-<seq>", a track event out of a small set of
 * names (every fourth an "Order Completed" with a numeric revenue), a few
 * properties, a channel, and three identifiers of one of `people` persons
 * (user_id, an email, one of three anonymous ids), so that identity links
 * rather than creates after a person's first events. A sampled event
 * instead carries identifiers of a person of its own, used to time one
 * event from intake to its profile (and, when sample_event is set, is a
 * track event of that name, so that only sampled persons enter a segment
 * defined on it).
 *
 * A bench_batch owns the storage of one IngestRequest and is refilled for
 * each call (the RPC client packs the request when the call starts). Pure:
 * no clock (the caller passes the time), no I/O. */
#ifndef BENCH_GEN_H
#define BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "cdp/v1/event.pb-c.h"
#include "cdp/v1/ingestion.pb-c.h"

enum {
    BENCH_RUN_ID_MAX = 24,
    BENCH_ID_MAX = 96,
    BENCH_EVENT_PROPS = 4,
};

typedef struct {
    char run[BENCH_RUN_ID_MAX];   /* prefixes every id: runs never collide */
    uint32_t people;              /* distinct persons events spread over */
    uint32_t sample_every;        /* every n-th event is sampled; 0: none */
    uint64_t next_seq;            /* number of the next event */
    const char *sample_event;     /* name of sampled events; NULL: the usual names */
} bench_gen;

typedef struct {
    Cdp__V1__Event ev;
    Cdp__V1__Identifier email;
    Cdp__V1__Identifier *idents[1];
    Google__Protobuf__Struct props;
    Google__Protobuf__Struct__FieldsEntry entries[BENCH_EVENT_PROPS];
    Google__Protobuf__Struct__FieldsEntry *entry_ptrs[BENCH_EVENT_PROPS];
    Google__Protobuf__Value values[BENCH_EVENT_PROPS];
    Google__Protobuf__Timestamp ts;
    char message_id[BENCH_ID_MAX], user_id[BENCH_ID_MAX];
    char anonymous_id[BENCH_ID_MAX], email_value[BENCH_ID_MAX], sku[BENCH_ID_MAX];
} bench_event_slot;

typedef struct {
    Cdp__V1__IngestRequest req;   /* points into the arrays below */
    Cdp__V1__Event **ptrs;
    bench_event_slot *slots;
    size_t cap;
} bench_batch;

/* run: at most BENCH_RUN_ID_MAX-1 characters of [a-z0-9]. people >= 1. */
void bench_gen_init(bench_gen *g, const char *run, uint32_t people, uint32_t sample_every);

/* Allocates room for cap events. Returns 0 or -1 (out of memory). */
int bench_batch_init(bench_batch *b, size_t cap);
void bench_batch_free(bench_batch *b);

/* Refills b with n <= cap events numbered g->next_seq.. and advances
 * next_seq by n. now_ms stamps their timestamps. */
void bench_gen_fill(bench_gen *g, bench_batch *b, size_t n, int64_t now_ms);

/* 1 if event seq is a sampled one. */
int bench_gen_is_sample(const bench_gen *g, uint64_t seq);

/* The person (0..people-1) of an ordinary event seq. */
uint32_t bench_gen_person_of(const bench_gen *g, uint64_t seq);

/* The user_id of person p, and of the own person of sampled event seq. */
void bench_gen_person_user_id(const bench_gen *g, uint32_t p, char *out, size_t len);
void bench_gen_sample_user_id(const bench_gen *g, uint64_t seq, char *out, size_t len);

#endif
