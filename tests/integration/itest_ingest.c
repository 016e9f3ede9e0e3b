/* itest_ingest: drives a real cdp-ingestion binary against a real, private
 * Redis on loopback and checks what the service promises: intake results,
 * dedup, validation statuses, the log layout, dead-letter paging and replay,
 * back-pressure of a full log, UNAVAILABLE while Redis is down, the
 * pipeline's patience while identity/profile are unreachable, and a clean
 * SIGTERM. With the identity and profile binaries given as well, it also
 * checks that the pipeline drains the log through them, and that four lanes
 * drain a backlog with merges into exact profile counts, also when every
 * Redis connection is cut in the middle and when the replica is killed in
 * the middle and a new one claims its entries.
 *
 *   itest_ingest [<cdp-ingestion> [<cdp-identity> <cdp-profile>]]
 *
 * Without arguments (as ctest runs it) the binaries are taken from the
 * directory this program lives in (the build directory); identity and
 * profile are used when both are there.
 *
 * Ports: Redis 6421, ingestion 21161 (metrics 21261), identity 21162 (21262),
 * profile 21163 (21263); ITEST_REDIS_PORT, ITEST_GRPC_PORT (ingestion; +1,
 * +2 for identity, profile) and ITEST_METRICS_PORT move them. Prints
 * "N passed, M failed"; exits 1 on any failure. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "cdp/v1/ingestion.pb-c.h"
#include "cdp/v1/profile.pb-c.h"
#include "cdp_rpc.h"
#include "itest_util.h"

#define DEFAULT_REDIS_PORT 6421
#define DEFAULT_GRPC_PORT 21161    /* ingestion; identity +1, profile +2 */
#define DEFAULT_METRICS_PORT 21261  /* likewise */
#define ADDR_BUFSZ 32
#define STREAM "cdp:ing:{log:0}:events"
#define DEAD "cdp:ing:{log:0}:dead"
#define ATTEMPTS "cdp:ing:{log:0}:attempts"
#define CALL_DEADLINE_MS 5000

static uv_loop_t *loop;
static cdp_rpc_channel *chan;
static int redis_port;
static char ing_addr[ADDR_BUFSZ], idn_addr[ADDR_BUFSZ], prf_addr[ADDR_BUFSZ];
static char ing_metrics[ADDR_BUFSZ], idn_metrics[ADDR_BUFSZ], prf_metrics[ADDR_BUFSZ];

#define CHECK ITEST_CHECK /* every check counts in itest_util's tally */

/* ------------------------------------------------------------------ processes */

static int env_port(const char *name, int def)
{
    const char *v = getenv(name);
    int port = v ? atoi(v) : def;
    return port > 0 && port < 65534 ? port : def;
}

static void ports_init(void)
{
    redis_port = env_port("ITEST_REDIS_PORT", DEFAULT_REDIS_PORT);
    int grpc = env_port("ITEST_GRPC_PORT", DEFAULT_GRPC_PORT);
    int metrics = env_port("ITEST_METRICS_PORT", DEFAULT_METRICS_PORT);
    snprintf(ing_addr, sizeof ing_addr, "127.0.0.1:%d", grpc);
    snprintf(idn_addr, sizeof idn_addr, "127.0.0.1:%d", grpc + 1);
    snprintf(prf_addr, sizeof prf_addr, "127.0.0.1:%d", grpc + 2);
    snprintf(ing_metrics, sizeof ing_metrics, "127.0.0.1:%d", metrics);
    snprintf(idn_metrics, sizeof idn_metrics, "127.0.0.1:%d", metrics + 1);
    snprintf(prf_metrics, sizeof prf_metrics, "127.0.0.1:%d", metrics + 2);
}

/* The variables every process gets: Redis and the services' addresses. */
typedef struct {
    char redis[64], grpc[64], metrics[64], identity[64], profile[64];
} peer_env;

static void peer_env_init(peer_env *e, const char *addr, const char *metrics)
{
    snprintf(e->redis, sizeof e->redis, "CDP_REDIS_ADDR=127.0.0.1:%d", redis_port);
    snprintf(e->grpc, sizeof e->grpc, "CDP_GRPC_ADDR=%s", addr);
    snprintf(e->metrics, sizeof e->metrics, "CDP_METRICS_ADDR=%s", metrics);
    snprintf(e->identity, sizeof e->identity, "CDP_IDENTITY_ADDR=%s", idn_addr);
    snprintf(e->profile, sizeof e->profile, "CDP_PROFILE_ADDR=%s", prf_addr);
}

#define MAX_EXTRA_ENV 4

/* Starts ingestion with up to MAX_EXTRA_ENV more variables (NULL-terminated
 * `extra`, may be NULL). */
static pid_t start_ingestion_env(const char *bin, const char *const *extra)
{
    peer_env e;
    peer_env_init(&e, ing_addr, ing_metrics);
    /* consent and segmentation are not started here: their steps are off. */
    char *env[10 + MAX_EXTRA_ENV + 1] = {e.redis, e.grpc, e.metrics, e.identity, e.profile,
                                          "CDP_PIPELINE_CLAIM_INTERVAL_MS=500",
                                          "CDP_PIPELINE_CLAIM_IDLE_MS=1000",
                                          "CDP_PIPELINE_BACKOFF_MAX_MS=500",
                                          "CDP_CONSENT_ADDR=", "CDP_SEGMENTATION_ADDR="};
    for (size_t i = 0; extra && extra[i] && i < MAX_EXTRA_ENV; i++)
        env[10 + i] = (char *)extra[i];
    char *argv[] = {(char *)bin, NULL};
    return itest_spawn(argv, env);
}

static pid_t start_ingestion(const char *bin, const char *extra1, const char *extra2)
{
    const char *extra[] = {extra1, extra1 ? extra2 : NULL, NULL};
    return start_ingestion_env(bin, extra);
}

static pid_t start_peer(const char *bin, const char *addr, const char *metrics)
{
    peer_env e;
    peer_env_init(&e, addr, metrics);
    char *env[] = {e.redis, e.grpc, e.metrics, e.identity, e.profile, NULL};
    char *argv[] = {(char *)bin, NULL};
    return itest_spawn(argv, env);
}

/* ------------------------------------------------------------------ synchronous calls */

static itest_call_result call_on(cdp_rpc_channel *ch, const ProtobufCServiceDescriptor *svc,
                                 const char *method, const ProtobufCMessage *req)
{
    return itest_call(loop, ch, svc, method, req, CALL_DEADLINE_MS);
}

static itest_call_result call(const char *method, const ProtobufCMessage *req)
{
    return call_on(chan, &cdp__v1__ingestion__descriptor, method, req);
}

static Cdp__V1__EventResult *track(const Cdp__V1__Event *ev, itest_call_result *out)
{
    *out = call("Track", &ev->base);
    return out->resp ? cdp__v1__event_result__unpack(NULL, out->len, out->resp) : NULL;
}

static Cdp__V1__IngestResponse *ingest(Cdp__V1__Event **evs, size_t n, itest_call_result *out)
{
    Cdp__V1__IngestRequest req = CDP__V1__INGEST_REQUEST__INIT;
    req.events = evs;
    req.n_events = n;
    *out = call("Ingest", &req.base);
    return out->resp ? cdp__v1__ingest_response__unpack(NULL, out->len, out->resp) : NULL;
}

static int wait_ready(void)
{
    Cdp__V1__ListDeadLettersRequest req = CDP__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    return itest_wait_ok(loop, chan, &cdp__v1__ingestion__descriptor, "ListDeadLetters",
                         &req.base, CALL_DEADLINE_MS);
}

/* ------------------------------------------------------------------ Redis helpers */

static redisContext *rc;

static long long redis_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

static long long pending_count(void)
{
    redisReply *r = redisCommand(rc, "XPENDING " STREAM " pipeline");
    long long v = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->integer : -1;
    freeReplyObject(r);
    return v;
}

/* ------------------------------------------------------------------ fixtures */

static void event_init(Cdp__V1__Event *ev, const char *mid, const char *user)
{
    cdp__v1__event__init(ev);
    ev->message_id = (char *)mid;
    ev->type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    ev->event = "Order Completed";
    ev->user_id = (char *)user;
}

static char run_tag[32];

static const char *mid(const char *name)
{
    static char buf[8][96];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, 96, "%s-%s", run_tag, name);
    return b;
}

/* ------------------------------------------------------------------ tests */

static void test_track_and_dedup(void)
{
    Cdp__V1__Event ev;
    itest_call_result r;
    event_init(&ev, mid("t1"), "u-1");
    long long before = redis_int("XLEN " STREAM);
    Cdp__V1__EventResult *res = track(&ev, &r);
    CHECK(r.code == GRPC_STATUS_OK, "track: %d %s", r.code, r.details);
    CHECK(res && res->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_ACCEPTED, "track accepted");
    CHECK(res && res->received_at && res->received_at->seconds > 0, "received_at set");
    CHECK(redis_int("XLEN " STREAM) == before + 1, "one entry appended");
    long long ttl = redis_int("TTL cdp:ing:{log:0}:dedup:%s", ev.message_id);
    CHECK(ttl > 86000 && ttl <= 86400, "dedup marker TTL %lld", ttl);

    /* The stream entry holds the packed event with the server's received_at. */
    redisReply *x = redisCommand(rc, "XREVRANGE " STREAM " + - COUNT 1");
    int found = 0;
    if (x && x->type == REDIS_REPLY_ARRAY && x->elements == 1) {
        redisReply *kv = x->element[0]->element[1];
        for (size_t i = 0; i + 1 < kv->elements; i += 2)
            if (strcmp(kv->element[i]->str, "ev") == 0) {
                Cdp__V1__Event *got = cdp__v1__event__unpack(NULL, kv->element[i + 1]->len,
                                                             (uint8_t *)kv->element[i + 1]->str);
                found = got && strcmp(got->message_id, ev.message_id) == 0 && got->received_at &&
                        res && got->received_at->seconds == res->received_at->seconds;
                if (got)
                    cdp__v1__event__free_unpacked(got, NULL);
            }
    }
    freeReplyObject(x);
    CHECK(found, "stream entry carries the event with received_at");

    itest_call_result r2;
    Cdp__V1__EventResult *dup = track(&ev, &r2);
    CHECK(r2.code == GRPC_STATUS_OK, "dup track: %d", r2.code);
    CHECK(dup && dup->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_DUPLICATE, "duplicate");
    CHECK(dup && res && dup->received_at &&
              dup->received_at->seconds == res->received_at->seconds,
          "duplicate reports the original received_at");
    CHECK(redis_int("XLEN " STREAM) == before + 1, "duplicate not appended");
    if (res)
        cdp__v1__event_result__free_unpacked(res, NULL);
    if (dup)
        cdp__v1__event_result__free_unpacked(dup, NULL);
    free(r.resp);
    free(r2.resp);
}

static void test_track_invalid(void)
{
    Cdp__V1__Event ev;
    itest_call_result r;
    event_init(&ev, mid("bad-ts"), "u-1");
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = time(NULL) + 2 * 86400;
    ev.timestamp = &ts;
    track(&ev, &r);
    CHECK(r.code == GRPC_STATUS_INVALID_ARGUMENT, "future timestamp: %d", r.code);
    CHECK(strcmp(r.details, "timestamp: more than 24h in the future") == 0, "details: %s", r.details);
    free(r.resp);

    event_init(&ev, mid("no-id"), "null");
    track(&ev, &r);
    CHECK(r.code == GRPC_STATUS_INVALID_ARGUMENT, "blocked-only identifiers: %d", r.code);
    CHECK(strncmp(r.details, "identifiers: no usable identifier", 33) == 0, "details: %s", r.details);
    free(r.resp);
}

static void test_ingest_batch(void)
{
    Cdp__V1__Event a, b, c;
    event_init(&a, mid("b1"), "u-2");
    event_init(&b, mid("b2"), "");
    event_init(&c, mid("b1"), "u-2"); /* same message id as a, same batch */
    Cdp__V1__Event *evs[] = {&a, &b, &c};
    itest_call_result r;
    Cdp__V1__IngestResponse *resp = ingest(evs, 3, &r);
    CHECK(r.code == GRPC_STATUS_OK, "ingest: %d %s", r.code, r.details);
    CHECK(resp && resp->n_results == 3, "three results");
    if (resp && resp->n_results == 3) {
        CHECK(resp->results[0]->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_ACCEPTED, "0 accepted");
        CHECK(resp->results[1]->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_REJECTED, "1 rejected");
        CHECK(strcmp(resp->results[1]->field, "events[1].identifiers") == 0, "field %s",
              resp->results[1]->field);
        CHECK(resp->results[2]->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_DUPLICATE,
              "in-batch duplicate");
        CHECK(resp->results[2]->index == 2, "index");
        CHECK(resp->accepted == 1 && resp->rejected == 1 && resp->duplicates == 1, "counts");
    }
    if (resp)
        cdp__v1__ingest_response__free_unpacked(resp, NULL);
    free(r.resp);

    ingest(evs, 0, &r);
    CHECK(r.code == GRPC_STATUS_INVALID_ARGUMENT, "empty batch: %d", r.code);
    CHECK(strncmp(r.details, "events: ", 8) == 0, "details: %s", r.details);
    free(r.resp);

    size_t n = 2501;
    Cdp__V1__Event **many = calloc(n, sizeof *many);
    for (size_t i = 0; i < n; i++)
        many[i] = &a;
    ingest(many, n, &r);
    CHECK(r.code == GRPC_STATUS_INVALID_ARGUMENT, "2501 events: %d", r.code);
    CHECK(strcmp(r.details, "events: 2501 events; the limit is 2500") == 0, "details: %s", r.details);
    free(r.resp);
    free(many);
}

static void add_dead(const char *m, const char *reason)
{
    Cdp__V1__Event ev;
    event_init(&ev, m, "u-dead");
    Google__Protobuf__Timestamp rat = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    rat.seconds = time(NULL);
    ev.received_at = &rat;
    uint8_t buf[256];
    size_t len = cdp__v1__event__pack(&ev, buf);
    redisReply *r = redisCommand(rc, "XADD " DEAD " * mid %s ev %b reason %s attempts 5 failed_at 1700000000000 src 1-1",
                                 m, buf, len, reason);
    freeReplyObject(r);
}

static Cdp__V1__ListDeadLettersResponse *list_dead(int size, const char *token,
                                                  itest_call_result *r)
{
    Cdp__V1__ListDeadLettersRequest req = CDP__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    req.page_size = size;
    req.page_token = (char *)token;
    *r = call("ListDeadLetters", &req.base);
    return r->resp ? cdp__v1__list_dead_letters_response__unpack(NULL, r->len, r->resp) : NULL;
}

static void test_dead_letters(void)
{
    redis_int("DEL " DEAD);
    add_dead(mid("d1"), "profile: bad");
    add_dead(mid("d2"), "identity returned no master id");
    add_dead(mid("d3"), "profile: worse");
    itest_call_result r;
    Cdp__V1__ListDeadLettersResponse *p1 = list_dead(2, "", &r);
    CHECK(r.code == GRPC_STATUS_OK, "list: %d %s", r.code, r.details);
    CHECK(p1 && p1->n_dead_letters == 2, "page 1 has 2");
    CHECK(p1 && p1->next_page_token[0] != '\0', "page 1 has a token");
    if (p1 && p1->n_dead_letters == 2) {
        CHECK(strcmp(p1->dead_letters[0]->message_id, mid("d1")) == 0, "oldest first");
        CHECK(strcmp(p1->dead_letters[0]->reason, "profile: bad") == 0, "reason");
        CHECK(p1->dead_letters[0]->attempts == 5, "attempts");
        CHECK(p1->dead_letters[0]->failed_at && p1->dead_letters[0]->failed_at->seconds == 1700000000,
              "failed_at");
        CHECK(p1->dead_letters[0]->event &&
                  strcmp(p1->dead_letters[0]->event->user_id, "u-dead") == 0, "event decoded");
        CHECK(strncmp(p1->dead_letters[0]->id, "0/", 2) == 0, "id is shard-qualified: %s",
              p1->dead_letters[0]->id);
    }
    free(r.resp);
    itest_call_result r2;
    Cdp__V1__ListDeadLettersResponse *p2 =
        list_dead(2, p1 ? p1->next_page_token : "", &r2);
    CHECK(p2 && p2->n_dead_letters == 1, "page 2 has 1");
    CHECK(p2 && p2->next_page_token[0] == '\0', "page 2 is the last");
    free(r2.resp);

    list_dead(-1, "", &r);
    CHECK(r.code == GRPC_STATUS_INVALID_ARGUMENT, "negative page size");
    free(r.resp);
    list_dead(10, "garbage", &r);
    CHECK(r.code == GRPC_STATUS_INVALID_ARGUMENT, "bad token: %s", r.details);
    free(r.resp);

    /* Replay one by id, then the rest. */
    long long before = redis_int("XLEN " STREAM);
    Cdp__V1__ReplayDeadLettersRequest rq = CDP__V1__REPLAY_DEAD_LETTERS_REQUEST__INIT;
    char *ids[1] = {p1 && p1->n_dead_letters ? p1->dead_letters[0]->id : "0/1-1"};
    rq.ids = ids;
    rq.n_ids = 1;
    itest_call_result r3 = call("ReplayDeadLetters", &rq.base);
    Cdp__V1__ReplayDeadLettersResponse *rr =
        r3.resp ? cdp__v1__replay_dead_letters_response__unpack(NULL, r3.len, r3.resp) : NULL;
    CHECK(r3.code == GRPC_STATUS_OK && rr && rr->replayed == 1, "replayed one");
    CHECK(redis_int("XLEN " DEAD) == 2, "two left in dead");
    if (rr)
        cdp__v1__replay_dead_letters_response__free_unpacked(rr, NULL);
    free(r3.resp);

    char *bad[1] = {"nope"};
    rq.ids = bad;
    r3 = call("ReplayDeadLetters", &rq.base);
    CHECK(r3.code == GRPC_STATUS_INVALID_ARGUMENT && strcmp(r3.details, "ids[0]: not a dead-letter id") == 0,
          "bad id: %s", r3.details);
    free(r3.resp);

    rq.n_ids = 0;
    r3 = call("ReplayDeadLetters", &rq.base);
    rr = r3.resp ? cdp__v1__replay_dead_letters_response__unpack(NULL, r3.len, r3.resp) : NULL;
    CHECK(r3.code == GRPC_STATUS_OK && rr && rr->replayed == 2, "replayed the rest");
    CHECK(redis_int("XLEN " DEAD) == 0, "dead stream empty");
    CHECK(redis_int("XLEN " STREAM) == before + 3, "replayed into the log");
    if (rr)
        cdp__v1__replay_dead_letters_response__free_unpacked(rr, NULL);
    free(r3.resp);
    if (p1)
        cdp__v1__list_dead_letters_response__free_unpacked(p1, NULL);
    if (p2)
        cdp__v1__list_dead_letters_response__free_unpacked(p2, NULL);
}

/* identity and profile are not running: the batch waits, nothing is
 * counted as a per-event attempt, nothing is dead-lettered. */
static void test_pipeline_waits_for_dependencies(void)
{
    itest_sleep_ms(2500);
    CHECK(pending_count() > 0, "entries pending in the group: %lld", pending_count());
    CHECK(redis_int("HLEN " ATTEMPTS) == 0, "no per-event attempts counted");
    CHECK(redis_int("XLEN " DEAD) == 0, "nothing dead-lettered");
}

static void test_redis_down(pid_t *redis)
{
    itest_stop_process(*redis, 5000);
    itest_sleep_ms(1500);
    Cdp__V1__Event ev;
    itest_call_result r;
    event_init(&ev, mid("down"), "u-3");
    track(&ev, &r);
    CHECK(r.code == GRPC_STATUS_UNAVAILABLE, "redis down: %d %s", r.code, r.details);
    CHECK(strncmp(r.details, "redis unavailable: ", 19) == 0, "details: %s", r.details);
    free(r.resp);
    *redis = itest_start_redis(redis_port);
    redisFree(rc);
    rc = redisConnect("127.0.0.1", redis_port);
    int ok = 0;
    for (int i = 0; i < ITEST_READY_TIMEOUT_MS / ITEST_POLL_MS && !ok; i++) {
        Cdp__V1__EventResult *res = track(&ev, &r);
        ok = r.code == GRPC_STATUS_OK && res &&
             res->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_ACCEPTED;
        if (res)
            cdp__v1__event_result__free_unpacked(res, NULL);
        free(r.resp);
        if (!ok)
            itest_sleep_ms(ITEST_POLL_MS);
    }
    CHECK(ok, "accepted again after Redis came back");
    /* The pipeline re-created its group on the empty Redis. */
    itest_sleep_ms(1500);
    CHECK(pending_count() >= 0, "group exists again");
}

static void test_log_full(const char *bin)
{
    pid_t ing = start_ingestion(bin, "CDP_INGEST_LOG_MAXLEN=3", "CDP_PIPELINE_ENABLED=0");
    CHECK(wait_ready() == 0, "ingestion (maxlen 3) ready");
    redis_int("DEL " STREAM);
    int accepted = 0, exhausted = 0;
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "full-%d", i);
        Cdp__V1__Event ev;
        itest_call_result r;
        event_init(&ev, mid(name), "u-4");
        Cdp__V1__EventResult *res = track(&ev, &r);
        if (r.code == GRPC_STATUS_OK && res && res->status == CDP__V1__EVENT_STATUS__EVENT_STATUS_ACCEPTED)
            accepted++;
        if (r.code == GRPC_STATUS_RESOURCE_EXHAUSTED && strncmp(r.details, "event log full", 14) == 0)
            exhausted++;
        if (res)
            cdp__v1__event_result__free_unpacked(res, NULL);
        free(r.resp);
    }
    CHECK(accepted == 3 && exhausted == 2, "full log refuses: %d accepted, %d refused", accepted,
          exhausted);
    CHECK(redis_int("XLEN " STREAM) == 3, "nothing evicted");
    CHECK(itest_stop_process(ing, 10000) == 0, "clean exit");
}

/* Entries written straight into the log (as a corrupted or foreign writer
 * would): one that does not decode is dead-lettered at once; one that
 * profile rejects (no timestamp and no received_at) fails by itself, is
 * retried through the claim loop and dead-lettered after max attempts. */
static void test_poison_events(void)
{
    Cdp__V1__Event ev;
    event_init(&ev, mid("poison-apply"), "u-poison");
    uint8_t buf[256];
    size_t len = cdp__v1__event__pack(&ev, buf);
    freeReplyObject(redisCommand(rc, "XADD " STREAM " * mid %s ev %s", mid("poison-bytes"), "\xff\xff"));
    freeReplyObject(redisCommand(rc, "XADD " STREAM " * mid %s ev %b", mid("poison-apply"), buf, len));
    int settled = 0;
    for (int i = 0; i < 200 && !settled; i++) {
        settled = redis_int("XLEN " DEAD) == 2 && redis_int("XLEN " STREAM) == 0;
        if (!settled)
            itest_sleep_ms(ITEST_POLL_MS);
    }
    CHECK(settled, "both poison entries dead-lettered (dead %lld, log %lld)",
          redis_int("XLEN " DEAD), redis_int("XLEN " STREAM));
    itest_call_result r;
    Cdp__V1__ListDeadLettersResponse *l = list_dead(10, "", &r);
    CHECK(l && l->n_dead_letters == 2, "listed");
    for (size_t i = 0; l && i < l->n_dead_letters; i++) {
        Cdp__V1__DeadLetter *d = l->dead_letters[i];
        if (strcmp(d->message_id, mid("poison-bytes")) == 0) {
            CHECK(strcmp(d->reason, "unreadable event in the log") == 0, "reason: %s", d->reason);
            CHECK(d->attempts == 1, "dead-lettered at once: %d", d->attempts);
        } else {
            CHECK(strcmp(d->message_id, mid("poison-apply")) == 0, "message id %s", d->message_id);
            CHECK(strncmp(d->reason, "profile: ", 9) == 0, "reason: %s", d->reason);
            CHECK(d->attempts == 5, "after max attempts: %d", d->attempts);
            CHECK(d->event && strcmp(d->event->user_id, "u-poison") == 0, "event kept");
        }
    }
    CHECK(redis_int("HLEN " ATTEMPTS) == 0, "attempt counts cleaned up");
    if (l)
        cdp__v1__list_dead_letters_response__free_unpacked(l, NULL);
    free(r.resp);
    redis_int("DEL " DEAD);
}

/* Four shards: events spread over them by message id, dead letters page
 * across them, replay puts each back into its own shard. */
static void test_sharded(const char *bin)
{
    pid_t ing = start_ingestion(bin, "CDP_INGEST_LOG_SHARDS=4", "CDP_PIPELINE_ENABLED=0");
    CHECK(wait_ready() == 0, "ingestion (4 shards) ready");
    for (int s = 0; s < 4; s++)
        redis_int("DEL cdp:ing:{log:%d}:events", s);
    enum { N = 40 };
    Cdp__V1__Event evs[N], *ptrs[N];
    char names[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s-sh-%d", run_tag, i);
        event_init(&evs[i], names[i], "u-sh");
        ptrs[i] = &evs[i];
    }
    itest_call_result r;
    Cdp__V1__IngestResponse *resp = ingest(ptrs, N, &r);
    CHECK(resp && resp->accepted == N, "all accepted across shards");
    long long total = 0;
    int used = 0;
    for (int s = 0; s < 4; s++) {
        long long len = redis_int("XLEN cdp:ing:{log:%d}:events", s);
        total += len;
        used += len > 0;
    }
    CHECK(total == N && used >= 2, "spread over shards: total %lld, shards used %d", total, used);
    if (resp)
        cdp__v1__ingest_response__free_unpacked(resp, NULL);
    free(r.resp);
    resp = ingest(ptrs, N, &r);
    CHECK(resp && resp->duplicates == N, "all duplicates on the second try");
    if (resp)
        cdp__v1__ingest_response__free_unpacked(resp, NULL);
    free(r.resp);

    for (int s = 0; s < 4; s++)
        redis_int("DEL cdp:ing:{log:%d}:dead", s);
    freeReplyObject(redisCommand(rc, "XADD cdp:ing:{log:2}:dead * mid x2 ev x reason r attempts 5 failed_at 1"));
    freeReplyObject(redisCommand(rc, "XADD cdp:ing:{log:0}:dead * mid x0 ev x reason r attempts 5 failed_at 1"));
    Cdp__V1__ListDeadLettersResponse *p1 = list_dead(1, "", &r);
    CHECK(p1 && p1->n_dead_letters == 1 && strcmp(p1->dead_letters[0]->message_id, "x0") == 0,
          "shard 0 first");
    itest_call_result r2;
    Cdp__V1__ListDeadLettersResponse *p2 = list_dead(1, p1 ? p1->next_page_token : "", &r2);
    CHECK(p2 && p2->n_dead_letters == 1 && strncmp(p2->dead_letters[0]->id, "2/", 2) == 0,
          "then shard 2");
    Cdp__V1__ReplayDeadLettersRequest rq = CDP__V1__REPLAY_DEAD_LETTERS_REQUEST__INIT;
    long long before2 = redis_int("XLEN cdp:ing:{log:2}:events");
    itest_call_result r3 = call("ReplayDeadLetters", &rq.base);
    CHECK(r3.code == GRPC_STATUS_OK, "replay all across shards");
    CHECK(redis_int("XLEN cdp:ing:{log:2}:events") == before2 + 1, "replayed into shard 2");
    CHECK(redis_int("XLEN cdp:ing:{log:0}:dead") + redis_int("XLEN cdp:ing:{log:2}:dead") == 0,
          "dead streams empty");
    free(r.resp);
    free(r2.resp);
    free(r3.resp);
    if (p1)
        cdp__v1__list_dead_letters_response__free_unpacked(p1, NULL);
    if (p2)
        cdp__v1__list_dead_letters_response__free_unpacked(p2, NULL);
    for (int s = 0; s < 4; s++)
        redis_int("DEL cdp:ing:{log:%d}:events", s);
    CHECK(itest_stop_process(ing, 10000) == 0, "clean exit");
}

static void test_pipeline_drains(const char *idn_bin, const char *prf_bin)
{
    pid_t idn = start_peer(idn_bin, idn_addr, idn_metrics);
    pid_t prf = start_peer(prf_bin, prf_addr, prf_metrics);
    int drained = 0;
    for (int i = 0; i < 150 && !drained; i++) {
        drained = redis_int("XLEN " STREAM) == 0 && pending_count() == 0;
        if (!drained)
            itest_sleep_ms(ITEST_POLL_MS);
    }
    CHECK(drained, "log drained through identity and profile (len %lld, pending %lld)",
          redis_int("XLEN " STREAM), pending_count());
    CHECK(redis_int("XLEN " DEAD) == 0, "nothing dead-lettered (%lld)", redis_int("XLEN " DEAD));
    test_poison_events();
    CHECK(itest_stop_process(idn, 10000) == 0, "identity exits cleanly");
    CHECK(itest_stop_process(prf, 10000) == 0, "profile exits cleanly");
}

/* Four shards with the pipeline on: every shard drains through the real
 * identity and profile. */
static void test_sharded_drain(const char *bin, const char *idn_bin, const char *prf_bin)
{
    pid_t idn = start_peer(idn_bin, idn_addr, idn_metrics);
    pid_t prf = start_peer(prf_bin, prf_addr, prf_metrics);
    pid_t ing = start_ingestion(bin, "CDP_INGEST_LOG_SHARDS=4", NULL);
    CHECK(wait_ready() == 0, "ingestion (4 shards, pipeline) ready");
    enum { N = 40 };
    Cdp__V1__Event evs[N], *ptrs[N];
    char names[N][64], users[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s-shd-%d", run_tag, i);
        snprintf(users[i], sizeof users[i], "u-shd-%d", i % 7);
        event_init(&evs[i], names[i], users[i]);
        ptrs[i] = &evs[i];
    }
    itest_call_result r;
    Cdp__V1__IngestResponse *resp = ingest(ptrs, N, &r);
    CHECK(resp && resp->accepted == N, "accepted");
    if (resp)
        cdp__v1__ingest_response__free_unpacked(resp, NULL);
    free(r.resp);
    int drained = 0;
    for (int i = 0; i < 150 && !drained; i++) {
        long long left = 0;
        for (int s = 0; s < 4; s++)
            left += redis_int("XLEN cdp:ing:{log:%d}:events", s) +
                    redis_int("XLEN cdp:ing:{log:%d}:dead", s);
        drained = left == 0;
        if (!drained)
            itest_sleep_ms(ITEST_POLL_MS);
    }
    CHECK(drained, "every shard drained, nothing dead-lettered");
    CHECK(itest_stop_process(ing, 10000) == 0, "clean exit");
    CHECK(itest_stop_process(idn, 10000) == 0, "identity exits cleanly");
    CHECK(itest_stop_process(prf, 10000) == 0, "profile exits cleanly");
}

/* ------------------------------------------------------------------ lanes */

enum {
    LANE_COUNT = 4,
    LANE_PEOPLE = 40,
    LANE_TRACKS = 10,                        /* per person and phase */
    LANE_PER_PERSON = 3 * LANE_TRACKS + 1,
    LANE_EVENTS = LANE_PEOPLE * LANE_PER_PERSON,
    LANE_INGEST_CALL = 500,                  /* events per Ingest call */
    LANE_DRAIN_POLLS = 600,                  /* x ITEST_POLL_MS: ASan builds included */
    LANE_CUT_POLL_MS = 1,
    LANE_PENDING_TRIES = 2000,               /* x LANE_CUT_POLL_MS: catch a batch in flight */
};
#define LANE_ENV_COUNT "CDP_PIPELINE_LANES=4"
#define LANE_ENV_BATCH "CDP_PIPELINE_BATCH=50" /* many small batches: lanes overlap */
#define LANE_NAME_BUFSZ 80

/* A backlog for the lanes: per person, LANE_TRACKS track events known only
 * by an anonymous id and as many known only by a user id (two masters in
 * identity), one identify carrying both (identity merges the two), and
 * LANE_TRACKS more by user id. Each phase interleaves all persons, so the
 * lanes resolve and apply one person's events concurrently, on both sides
 * of the merge. */
typedef struct {
    Cdp__V1__Event ev[LANE_EVENTS];
    Cdp__V1__Event *ptr[LANE_EVENTS];
    char mids[LANE_EVENTS][LANE_NAME_BUFSZ];
    char users[LANE_PEOPLE][LANE_NAME_BUFSZ];
    char anons[LANE_PEOPLE][LANE_NAME_BUFSZ];
} lane_backlog;

static Cdp__V1__Event *lane_event(lane_backlog *b, size_t i, const char *tag, const char *user,
                                  const char *anon)
{
    snprintf(b->mids[i], sizeof b->mids[i], "%s-%s-%zu", run_tag, tag, i);
    event_init(&b->ev[i], b->mids[i], user);
    b->ev[i].anonymous_id = (char *)anon;
    b->ptr[i] = &b->ev[i];
    return &b->ev[i];
}

static void lane_backlog_make(lane_backlog *b, const char *tag)
{
    size_t n = 0;
    for (int p = 0; p < LANE_PEOPLE; p++) {
        snprintf(b->users[p], sizeof b->users[p], "%s-%s-user-%d", run_tag, tag, p);
        snprintf(b->anons[p], sizeof b->anons[p], "%s-%s-anon-%d", run_tag, tag, p);
    }
    for (int r = 0; r < LANE_TRACKS; r++)
        for (int p = 0; p < LANE_PEOPLE; p++) {
            lane_event(b, n++, tag, "", b->anons[p]);
            lane_event(b, n++, tag, b->users[p], "");
        }
    for (int p = 0; p < LANE_PEOPLE; p++) {
        Cdp__V1__Event *ev = lane_event(b, n++, tag, b->users[p], b->anons[p]);
        ev->type = CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY;
        ev->event = "";
    }
    for (int r = 0; r < LANE_TRACKS; r++)
        for (int p = 0; p < LANE_PEOPLE; p++)
            lane_event(b, n++, tag, b->users[p], "");
}

/* Ingests the whole backlog; returns how many events were accepted. */
static long long lane_ingest(lane_backlog *b)
{
    long long accepted = 0;
    for (size_t at = 0; at < LANE_EVENTS; at += LANE_INGEST_CALL) {
        size_t n = LANE_EVENTS - at < LANE_INGEST_CALL ? LANE_EVENTS - at : LANE_INGEST_CALL;
        itest_call_result r;
        Cdp__V1__IngestResponse *resp = ingest(&b->ptr[at], n, &r);
        if (resp)
            accepted += resp->accepted;
        if (resp)
            cdp__v1__ingest_response__free_unpacked(resp, NULL);
        free(r.resp);
    }
    return accepted;
}

static int log_drained(int polls)
{
    for (int i = 0; i < polls; i++) {
        if (redis_int("XLEN " STREAM) == 0 && pending_count() == 0)
            return 1;
        itest_sleep_ms(ITEST_POLL_MS);
    }
    return 0;
}

/* How many of the lane consumers <host>-<pid>-<0..LANE_COUNT-1> the group
 * lists. */
static int lane_consumers(pid_t pid)
{
    char host[64], want[LANE_COUNT][LANE_NAME_BUFSZ];
    if (gethostname(host, sizeof host) != 0)
        return -1;
    host[sizeof host - 1] = '\0';
    for (int l = 0; l < LANE_COUNT; l++)
        snprintf(want[l], sizeof want[l], "%s-%ld-%d", host, (long)pid, l);
    redisReply *r = redisCommand(rc, "XINFO CONSUMERS " STREAM " pipeline");
    int found = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *c = r->element[i];
        for (size_t j = 0; c->type == REDIS_REPLY_ARRAY && j + 1 < c->elements; j += 2)
            if (strcmp(c->element[j]->str, "name") == 0)
                for (int l = 0; l < LANE_COUNT; l++)
                    found += strcmp(c->element[j + 1]->str, want[l]) == 0;
    }
    freeReplyObject(r);
    return found;
}

static int64_t view_count(const Cdp__V1__ProfileView *v, const char *name)
{
    for (size_t i = 0; i < v->n_event_counts; i++)
        if (strcmp(v->event_counts[i]->key, name) == 0)
            return v->event_counts[i]->value;
    return 0;
}

/* GetProfile by one identifier of a person; NULL if the call failed. */
static Cdp__V1__ProfileView *lane_profile(cdp_rpc_channel *prf, const char *type, const char *value)
{
    Cdp__V1__Identifier id = CDP__V1__IDENTIFIER__INIT;
    id.type = (char *)type;
    id.value = (char *)value;
    Cdp__V1__GetProfileRequest req = CDP__V1__GET_PROFILE_REQUEST__INIT;
    req.identifier = &id;
    itest_call_result r = call_on(prf, &cdp__v1__profile__descriptor, "GetProfile", &req.base);
    Cdp__V1__ProfileView *v =
        r.code == GRPC_STATUS_OK && r.resp ? cdp__v1__profile_view__unpack(NULL, r.len, r.resp) : NULL;
    free(r.resp);
    return v;
}

/* Every person's profile holds each of their events exactly once, and
 * both of their ids lead to it. */
static void lane_check_profiles(const lane_backlog *b, cdp_rpc_channel *prf, const char *tag)
{
    int exact = 0;
    for (int p = 0; p < LANE_PEOPLE; p++) {
        Cdp__V1__ProfileView *v = lane_profile(prf, "user_id", b->users[p]);
        Cdp__V1__ProfileView *a = lane_profile(prf, "anonymous_id", b->anons[p]);
        int ok = v && a && strcmp(v->master_id, a->master_id) == 0 &&
                 v->total_events == LANE_PER_PERSON &&
                 view_count(v, "Order Completed") == 3 * LANE_TRACKS &&
                 view_count(v, "identify") == 1;
        if (!ok && exact == p)
            fprintf(stderr, "%s: person %d: total %lld (want %d), tracks %lld, identify %lld, "
                            "masters %s / %s\n",
                    tag, p, v ? (long long)v->total_events : -1LL, LANE_PER_PERSON,
                    v ? (long long)view_count(v, "Order Completed") : -1LL,
                    v ? (long long)view_count(v, "identify") : -1LL, v ? v->master_id : "-",
                    a ? a->master_id : "-");
        exact += ok;
        if (v)
            cdp__v1__profile_view__free_unpacked(v, NULL);
        if (a)
            cdp__v1__profile_view__free_unpacked(a, NULL);
    }
    CHECK(exact == LANE_PEOPLE, "%s: %d of %d profiles have exactly their events", tag, exact,
          LANE_PEOPLE);
}

/* How a lanes case is interrupted in the middle of the drain. */
typedef enum {
    LANE_UNDISTURBED,
    LANE_CUT,   /* every Redis client connection is cut: lanes drop their
                 * batches, lane 0 replays all lanes' pending entries */
    LANE_KILL,  /* ingestion is killed (SIGKILL) and a new one, under new
                 * consumer names, claims the dead lanes' entries */
} lane_disturbance;

/* Waits until the pipeline has worked off a quarter of the backlog; returns
 * the entries still in the log then. */
static long long lane_wait_progress(void)
{
    long long left = LANE_EVENTS;
    for (int i = 0; i < LANE_DRAIN_POLLS * ITEST_POLL_MS / LANE_CUT_POLL_MS; i++) {
        left = redis_int("XLEN " STREAM);
        if (left <= LANE_EVENTS * 3 / 4)
            break;
        itest_sleep_ms(LANE_CUT_POLL_MS);
    }
    return left;
}

/* Interrupts the drain as `how` says; returns the ingestion process that
 * finishes it. */
static pid_t lane_disturb(const char *bin, pid_t ing, lane_disturbance how, const char *tag)
{
    if (how == LANE_UNDISTURBED)
        return ing;
    long long left = lane_wait_progress();
    long long pending = pending_count();
    /* Between two batches nothing is pending; interrupt while one is. */
    for (int i = 0; pending == 0 && left > 0 && i < LANE_PENDING_TRIES; i++) {
        itest_sleep_ms(LANE_CUT_POLL_MS);
        pending = pending_count();
        left = redis_int("XLEN " STREAM);
    }
    if (how == LANE_CUT) {
        freeReplyObject(redisCommand(rc, "CLIENT KILL TYPE normal"));
    } else {
        kill(ing, SIGKILL);
        waitpid(ing, NULL, 0);
        const char *lanes_env[] = {LANE_ENV_COUNT, LANE_ENV_BATCH, NULL};
        ing = start_ingestion_env(bin, lanes_env);
    }
    CHECK(left > 0 && left < LANE_EVENTS && pending > 0,
          "%s: interrupted mid-drain (%lld left, %lld pending)", tag, left, pending);
    return ing;
}

/* One lanes case: a backlog appended with the pipeline off, then drained
 * by a replica with four lanes, interrupted as `how` says. */
static void lane_case(const char *bin, cdp_rpc_channel *prf, const char *tag,
                      lane_disturbance how)
{
    lane_backlog *b = calloc(1, sizeof *b);
    if (!b) {
        CHECK(0, "%s: out of memory", tag);
        return;
    }
    lane_backlog_make(b, tag);
    pid_t ing = start_ingestion(bin, "CDP_PIPELINE_ENABLED=0", NULL);
    CHECK(wait_ready() == 0, "%s: ingestion (intake only) ready", tag);
    CHECK(lane_ingest(b) == LANE_EVENTS, "%s: backlog accepted", tag);
    CHECK(itest_stop_process(ing, 10000) == 0, "%s: intake exits cleanly", tag);
    CHECK(redis_int("XLEN " STREAM) == LANE_EVENTS, "%s: backlog in the log", tag);

    const char *lanes_env[] = {LANE_ENV_COUNT, LANE_ENV_BATCH, NULL};
    ing = start_ingestion_env(bin, lanes_env);
    ing = lane_disturb(bin, ing, how, tag);
    CHECK(log_drained(LANE_DRAIN_POLLS), "%s: backlog drained by four lanes (len %lld, pending %lld)",
          tag, redis_int("XLEN " STREAM), pending_count());
    CHECK(redis_int("XLEN " DEAD) == 0, "%s: nothing dead-lettered", tag);
    CHECK(lane_consumers(ing) == LANE_COUNT, "%s: one consumer per lane: %d", tag,
          lane_consumers(ing));
    lane_check_profiles(b, prf, tag);
    CHECK(itest_stop_process(ing, 10000) == 0, "%s: four lanes exit cleanly", tag);
    free(b);
}

static void test_lanes(const char *bin, const char *idn_bin, const char *prf_bin)
{
    pid_t idn = start_peer(idn_bin, idn_addr, idn_metrics);
    pid_t prf = start_peer(prf_bin, prf_addr, prf_metrics);
    cdp_rpc_channel_opts co = {.max_attempts = 1};
    cdp_rpc_channel *prf_chan = cdp_rpc_channel_new(loop, prf_addr, &co);
    lane_case(bin, prf_chan, "lanes", LANE_UNDISTURBED);
    lane_case(bin, prf_chan, "lanes-cut", LANE_CUT);
    lane_case(bin, prf_chan, "lanes-kill", LANE_KILL);
    cdp_rpc_channel_close(prf_chan);
    CHECK(itest_stop_process(idn, 10000) == 0, "identity exits cleanly");
    CHECK(itest_stop_process(prf, 10000) == 0, "profile exits cleanly");
}

/* Fills bins[0..2] with the service binaries next to this program; returns
 * how many of ingestion, identity, profile exist (2 means ingestion only). */
static int find_binaries(char bins[3][PATH_MAX])
{
    static const char *names[] = {"cdp-ingestion", "cdp-identity", "cdp-profile"};
    char self[PATH_MAX / 2]; /* leaves room for "/cdp-ingestion" */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 0;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    int found = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(bins[i], PATH_MAX, "%s/%s", self, names[i]);
        found += access(bins[i], X_OK) == 0;
    }
    if (access(bins[0], X_OK) != 0)
        return 0;
    return found == 3 ? 4 : 2;
}

int main(int argc, char **argv)
{
    static char bins[3][PATH_MAX];
    char *args[4] = {argv[0], NULL, NULL, NULL};
    if (argc == 1) {
        argc = find_binaries(bins);
        for (int i = 0; i < 3; i++)
            args[i + 1] = bins[i];
        argv = args;
    }
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s [<cdp-ingestion> [<cdp-identity> <cdp-profile>]]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ports_init();
    snprintf(run_tag, sizeof run_tag, "it%ld", (long)getpid());
    pid_t redis = itest_start_redis(redis_port);
    rc = redisConnect("127.0.0.1", redis_port);
    if (!rc || rc->err) {
        fprintf(stderr, "cannot start redis on %d\n", redis_port);
        return 1;
    }
    loop = uv_default_loop();
    cdp_rpc_init(loop);
    cdp_rpc_channel_opts co = {.max_attempts = 1};
    chan = cdp_rpc_channel_new(loop, ing_addr, &co);

    pid_t ing = start_ingestion(argv[1], NULL, NULL);
    CHECK(wait_ready() == 0, "ingestion ready");
    test_track_and_dedup();
    test_track_invalid();
    test_ingest_batch();
    test_dead_letters();
    test_pipeline_waits_for_dependencies();
    if (argc == 4)
        test_pipeline_drains(argv[2], argv[3]);
    test_redis_down(&redis);
    CHECK(itest_stop_process(ing, 10000) == 0, "ingestion exits cleanly on SIGTERM");
    test_log_full(argv[1]);
    test_sharded(argv[1]);
    if (argc == 4)
        test_sharded_drain(argv[1], argv[2], argv[3]);
    if (argc == 4)
        test_lanes(argv[1], argv[2], argv[3]);

    cdp_rpc_channel_close(chan);
    uv_run(loop, UV_RUN_NOWAIT);
    redisFree(rc);
    itest_stop_process(redis, 5000);
    printf("%d passed, %d failed\n", itest_passed, itest_failed);
    return itest_failed ? 1 : 0;
}
