/* cdp-bench: load generator for the cdp services and their null baseline.
 *
 *   cdp-bench MODE [options]
 *
 * MODE is echo, ingest, e2e, latency, getprofile, redisprof, consent or
 * webhook (what each
 * measures: bench_modes.h and bench/README.md). Every run is bounded:
 * issuing stops after --duration (or the fixed --events), waiting for
 * profiles stops after --timeout, and a watchdog ends the process past the
 * sum of both.
 * Targets must be loopback addresses: this tool never loads anything else. */
#include <getopt.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_gen.h"
#include "bench_modes.h"
#include "cdp_config.h"
#include "cdp_log.h"
#include "cdp_rpc.h"
#include "cdp_service.h"

#define BENCH_DEFAULT_ECHO "127.0.0.1:51430"
#define BENCH_DEFAULT_INGESTION "127.0.0.1:50051"
#define BENCH_DEFAULT_PROFILE "127.0.0.1:50053"
#define BENCH_DEFAULT_REDIS "127.0.0.1:6379"
#define BENCH_DEFAULT_SEGMENTATION "127.0.0.1:50054"
#define BENCH_DEFAULT_CONSENT "127.0.0.1:50055"
#define BENCH_DEFAULT_ACTIVATION "127.0.0.1:50056"
#define BENCH_DEFAULT_LISTEN "127.0.0.1:51437"

enum {
    DEFAULT_DURATION_S = 5,
    DEFAULT_CONCURRENCY = 64,
    DEFAULT_BATCH = 100,
    DEFAULT_LATENCY_BATCH = 10,
    DEFAULT_PEOPLE = 1000,
    DEFAULT_SAMPLE_EVERY = 50,
    DEFAULT_LATENCY_RATE = 5000,
    DEFAULT_EVENTS = 100000,
    DEFAULT_TIMEOUT_S = 60,
    DEFAULT_POLL_MS = 2,
    DEFAULT_DEADLINE_MS = 10000,
    DEFAULT_CHECKS = 100,
    DEFAULT_WEBHOOK_RATE = 1000,
    DEFAULT_WEBHOOK_SAMPLE_EVERY = 10,
    MAX_CHECKS = 1000,
    MAX_BATCH = 2500,
    MAX_CONCURRENCY = 4096,
    MAX_DURATION_S = 600,
    MAX_PEOPLE = 10000000,
    MAX_RATE = 10000000,
    MAX_EVENTS = 1000000000,
    MAX_PAYLOAD = 4000000,
    MAX_SAMPLE_EVERY = 1000000,
    MAX_POLL_MS = 1000,
    MAX_DEADLINE_MS = 600000,
    WATCHDOG_SLACK_S = 30,
    HOST_MAX = 256,
    RUN_ID_BASE = 36,
    RUN_ID_PID_SPAN = 100000,
    MS_PER_S = 1000,
};

typedef int (*bench_mode_fn)(uv_loop_t *loop, const bench_opts *o);

static const struct {
    const char *name;
    bench_mode_fn fn;
} bench_mode_table[] = {
    {"echo", bench_mode_echo},       {"ingest", bench_mode_ingest},
    {"e2e", bench_mode_e2e},         {"latency", bench_mode_latency},
    {"getprofile", bench_mode_getprofile}, {"redisprof", bench_mode_redisprof},
    {"consent", bench_mode_consent}, {"webhook", bench_mode_webhook},
};

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: cdp-bench MODE [options]\n"
            "modes: echo | ingest | e2e | latency | getprofile | redisprof | consent | webhook\n"
            "  --target H:P        echo server (echo) or ingestion (others)\n"
            "  --profile H:P       profile service (e2e, latency, getprofile, consent)\n"
            "  --consent H:P       consent service (consent)\n"
            "  --segmentation H:P  segmentation service (webhook)\n"
            "  --activation H:P    activation service (webhook)\n"
            "  --listen H:P        webhook: where the webhook receiver listens (default %s)\n"
            "  --checks N          consent: checks per CheckConsentBatch call (default %d)\n"
            "  --duration S        seconds of load (default %d)\n"
            "  --concurrency N     calls in flight at most (default %d)\n"
            "  --batch N           events per Ingest call (default %d; latency %d)\n"
            "  --people N          distinct persons (default %d)\n"
            "  --rate R            events/s offered (echo: calls/s); 0 = as fast as possible\n"
            "                      (latency default %d, webhook %d)\n"
            "  --events N          e2e/getprofile: events to send (default %d)\n"
            "  --payload N         echo: payload bytes\n"
            "  --like ingest|getprofile  echo: payload sized like that request\n"
            "  --sample-every N    latency, webhook: time every N-th event (default %d, webhook %d)\n"
            "  --poll-ms N         latency: GetProfile poll interval (default %d)\n"
            "  --timeout S         wait for profiles at most (default %d)\n"
            "  --deadline-ms N     per call (default %d)\n"
            "  --run-id ID         prefix of generated ids ([a-z0-9], default random)\n"
            "  --redis H:P         redisprof: the Redis to profile\n"
            "  --phase start|report  redisprof: begin logging, or report and stop\n",
            BENCH_DEFAULT_LISTEN, DEFAULT_CHECKS, DEFAULT_DURATION_S, DEFAULT_CONCURRENCY,
            DEFAULT_BATCH, DEFAULT_LATENCY_BATCH, DEFAULT_PEOPLE, DEFAULT_LATENCY_RATE,
            DEFAULT_WEBHOOK_RATE, DEFAULT_EVENTS, DEFAULT_SAMPLE_EVERY,
            DEFAULT_WEBHOOK_SAMPLE_EVERY, DEFAULT_POLL_MS, DEFAULT_TIMEOUT_S, DEFAULT_DEADLINE_MS);
}

/* ------------------------------------------------------------------ checks */

/* 1 if target is host:port with a loopback host. */
static int bench_is_loopback(const char *target) {
    char host[HOST_MAX];
    int port;
    if (!target || cdp_parse_hostport(target, host, sizeof(host), &port) != 0 || port <= 0)
        return 0;
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0;
}

static int bench_valid_run_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= BENCH_RUN_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* A run id unlikely to repeat: base 36 of the wall clock in ms and the pid. */
static void bench_make_run_id(char *out, size_t len) {
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned long long v = (unsigned long long)cdp_now_ms() * RUN_ID_PID_SPAN +
                           (unsigned long long)getpid() % RUN_ID_PID_SPAN;
    char tmp[BENCH_RUN_ID_MAX];
    size_t n = 0;
    while (v && n < sizeof(tmp) - 1) {
        tmp[n++] = digits[v % RUN_ID_BASE];
        v /= RUN_ID_BASE;
    }
    size_t i = 0;
    out[i++] = 'r';
    while (n && i < len - 1)
        out[i++] = tmp[--n];
    out[i] = '\0';
}

/* ------------------------------------------------------------------ options */

static void bench_defaults(bench_opts *o, const char *mode) {
    memset(o, 0, sizeof(*o));
    o->mode = mode;
    int echo = strcmp(mode, "echo") == 0, latency = strcmp(mode, "latency") == 0;
    int webhook = strcmp(mode, "webhook") == 0;
    o->target = echo ? BENCH_DEFAULT_ECHO : BENCH_DEFAULT_INGESTION;
    o->profile_target = BENCH_DEFAULT_PROFILE;
    o->redis_target = BENCH_DEFAULT_REDIS;
    o->consent_target = BENCH_DEFAULT_CONSENT;
    o->segmentation_target = BENCH_DEFAULT_SEGMENTATION;
    o->activation_target = BENCH_DEFAULT_ACTIVATION;
    o->listen = BENCH_DEFAULT_LISTEN;
    o->checks = DEFAULT_CHECKS;
    o->duration_s = DEFAULT_DURATION_S;
    o->concurrency = DEFAULT_CONCURRENCY;
    o->batch = latency || webhook ? DEFAULT_LATENCY_BATCH : DEFAULT_BATCH;
    o->people = DEFAULT_PEOPLE;
    o->sample_every = webhook ? DEFAULT_WEBHOOK_SAMPLE_EVERY : DEFAULT_SAMPLE_EVERY;
    o->rate = latency ? DEFAULT_LATENCY_RATE : webhook ? DEFAULT_WEBHOOK_RATE : 0;
    o->events = DEFAULT_EVENTS;
    o->timeout_s = DEFAULT_TIMEOUT_S;
    o->poll_ms = DEFAULT_POLL_MS;
    o->deadline_ms = DEFAULT_DEADLINE_MS;
}

typedef enum { NUM_INT, NUM_U32, NUM_U64, NUM_DOUBLE } bench_num_kind;

/* The numeric options: name, accepted range, and where the value goes. */
static const struct {
    const char *name;
    double min, max;
    bench_num_kind kind;
    size_t offset;
} bench_num_opts[] = {
    {"duration", 1, MAX_DURATION_S, NUM_INT, offsetof(bench_opts, duration_s)},
    {"concurrency", 1, MAX_CONCURRENCY, NUM_INT, offsetof(bench_opts, concurrency)},
    {"batch", 1, MAX_BATCH, NUM_INT, offsetof(bench_opts, batch)},
    {"people", 1, MAX_PEOPLE, NUM_U32, offsetof(bench_opts, people)},
    {"rate", 0, MAX_RATE, NUM_DOUBLE, offsetof(bench_opts, rate)},
    {"events", 1, MAX_EVENTS, NUM_U64, offsetof(bench_opts, events)},
    {"payload", 0, MAX_PAYLOAD, NUM_INT, offsetof(bench_opts, payload)},
    {"sample-every", 1, MAX_SAMPLE_EVERY, NUM_U32, offsetof(bench_opts, sample_every)},
    {"poll-ms", 1, MAX_POLL_MS, NUM_INT, offsetof(bench_opts, poll_ms)},
    {"timeout", 1, MAX_DURATION_S, NUM_INT, offsetof(bench_opts, timeout_s)},
    {"deadline-ms", 1, MAX_DEADLINE_MS, NUM_INT, offsetof(bench_opts, deadline_ms)},
    {"checks", 1, MAX_CHECKS, NUM_INT, offsetof(bench_opts, checks)},
};

/* Stores numeric option i parsed from s. Returns 0, or -1 with a message. */
static int bench_set_num(bench_opts *o, size_t i, const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < bench_num_opts[i].min || v > bench_num_opts[i].max) {
        fprintf(stderr, "cdp-bench: --%s %s: expected a number in [%g, %g]\n",
                bench_num_opts[i].name, s, bench_num_opts[i].min, bench_num_opts[i].max);
        return -1;
    }
    char *dst = (char *)o + bench_num_opts[i].offset;
    switch (bench_num_opts[i].kind) {
    case NUM_INT: *(int *)dst = (int)v; break;
    case NUM_U32: *(uint32_t *)dst = (uint32_t)v; break;
    case NUM_U64: *(uint64_t *)dst = (uint64_t)v; break;
    case NUM_DOUBLE: *(double *)dst = v; break;
    }
    return 0;
}

static int bench_apply(bench_opts *o, const char *name, const char *v) {
    if (!strcmp(name, "target")) o->target = v;
    else if (!strcmp(name, "profile")) o->profile_target = v;
    else if (!strcmp(name, "like")) o->payload_like = v;
    else if (!strcmp(name, "run-id")) o->run_id = v;
    else if (!strcmp(name, "redis")) o->redis_target = v;
    else if (!strcmp(name, "phase")) o->phase = v;
    else if (!strcmp(name, "consent")) o->consent_target = v;
    else if (!strcmp(name, "segmentation")) o->segmentation_target = v;
    else if (!strcmp(name, "activation")) o->activation_target = v;
    else if (!strcmp(name, "listen")) o->listen = v;
    else {
        for (size_t i = 0; i < sizeof(bench_num_opts) / sizeof(bench_num_opts[0]); i++)
            if (!strcmp(name, bench_num_opts[i].name))
                return bench_set_num(o, i, v);
        return -1;
    }
    return 0;
}

static int bench_parse(int argc, char **argv, bench_opts *o) {
    static const struct option longopts[] = {
        {"target", 1, 0, 0}, {"profile", 1, 0, 0}, {"like", 1, 0, 0}, {"run-id", 1, 0, 0},
        {"duration", 1, 0, 0}, {"concurrency", 1, 0, 0}, {"batch", 1, 0, 0},
        {"people", 1, 0, 0}, {"rate", 1, 0, 0}, {"events", 1, 0, 0}, {"payload", 1, 0, 0},
        {"sample-every", 1, 0, 0}, {"poll-ms", 1, 0, 0}, {"timeout", 1, 0, 0},
        {"deadline-ms", 1, 0, 0}, {"redis", 1, 0, 0}, {"phase", 1, 0, 0},
        {"consent", 1, 0, 0}, {"segmentation", 1, 0, 0}, {"activation", 1, 0, 0},
        {"listen", 1, 0, 0}, {"checks", 1, 0, 0},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    int idx, c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        if (c == 'h') {
            bench_usage(stdout);
            exit(0);
        }
        if (c != 0 || bench_apply(o, longopts[idx].name, optarg) != 0)
            return -1;
    }
    if (optind != argc)
        return -1;
    const char *targets[] = {o->target, o->profile_target, o->redis_target,
                             o->consent_target, o->segmentation_target, o->activation_target,
                             o->listen};
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
        if (!bench_is_loopback(targets[i])) {
            fprintf(stderr, "cdp-bench: targets must be loopback host:port (got %s)\n",
                    targets[i]);
            return -1;
        }
    if (o->payload_like && strcmp(o->payload_like, "ingest") &&
        strcmp(o->payload_like, "getprofile")) {
        fprintf(stderr, "cdp-bench: --like takes ingest or getprofile\n");
        return -1;
    }
    if (o->run_id && !bench_valid_run_id(o->run_id)) {
        fprintf(stderr, "cdp-bench: --run-id takes 1-%d characters of [a-z0-9]\n",
                BENCH_RUN_ID_MAX - 1);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

static void bench_watchdog(uv_timer_t *t) {
    const bench_opts *o = t->data;
    printf("RESULT mode=%s error=\"watchdog: the run exceeded its time bound\"\n", o->mode);
    fflush(stdout);
    _exit(2);
}

static bench_mode_fn bench_find_mode(const char *name) {
    for (size_t i = 0; i < sizeof(bench_mode_table) / sizeof(bench_mode_table[0]); i++)
        if (!strcmp(bench_mode_table[i].name, name))
            return bench_mode_table[i].fn;
    return NULL;
}

static void bench_walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    bench_mode_fn fn = argc >= 2 ? bench_find_mode(argv[1]) : NULL;
    bench_opts o;
    if (!fn) {
        bench_usage(stderr);
        return 2;
    }
    bench_defaults(&o, argv[1]);
    if (bench_parse(argc, argv, &o) != 0) {
        bench_usage(stderr);
        return 2;
    }
    char run_id[BENCH_RUN_ID_MAX];
    if (!o.run_id) {
        bench_make_run_id(run_id, sizeof(run_id));
        o.run_id = run_id;
    }
    cdp_log_init("bench");
    uv_loop_t *loop = uv_default_loop();
    if (cdp_rpc_init(loop) != 0)
        return 1;
    uv_timer_t watchdog;
    uv_timer_init(loop, &watchdog);
    watchdog.data = &o;
    /* The longest mode (consent) seeds (bounded by --timeout twice), sets
     * (--timeout) and measures twice (--duration each). */
    uint64_t bound_s = 2 * (uint64_t)o.duration_s + 3 * (uint64_t)o.timeout_s + WATCHDOG_SLACK_S;
    uv_timer_start(&watchdog, bench_watchdog, bound_s * MS_PER_S, 0);
    uv_unref((uv_handle_t *)&watchdog);

    int rc = fn(loop, &o);

    /* Let closed channels and handles finish before gRPC stops. */
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    cdp_rpc_shutdown();
    uv_walk(loop, bench_walk_close, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return rc;
}
