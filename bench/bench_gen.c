/* bench_gen: see bench_gen.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gen.h"

enum {
    GEN_ANON_PER_PERSON = 3,   /* devices per person */
    GEN_SKUS = 1000,
    GEN_MAX_QUANTITY = 3,
    GEN_REVENUE_BASE = 10,
    GEN_REVENUE_SPREAD = 90,
    MS_PER_S = 1000,
    NS_PER_MS = 1000000,
};

static const char *const gen_names[] = {"Order Completed", "Product Viewed", "Page Viewed",
                                        "Cart Viewed"};
static const char *const gen_channels[] = {"web", "app", "email", "whatsapp"};
enum {
    GEN_N_NAMES = sizeof(gen_names) / sizeof(gen_names[0]),
    GEN_N_CHANNELS = sizeof(gen_channels) / sizeof(gen_channels[0]),
};

/* splitmix64: spreads consecutive event numbers over persons evenly. */
static uint64_t gen_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void bench_gen_init(bench_gen *g, const char *run, uint32_t people, uint32_t sample_every) {
    snprintf(g->run, sizeof(g->run), "%s", run);
    g->people = people ? people : 1;
    g->sample_every = sample_every;
    g->next_seq = 0;
    g->sample_event = NULL;
}

int bench_batch_init(bench_batch *b, size_t cap) {
    memset(b, 0, sizeof(*b));
    b->ptrs = calloc(cap ? cap : 1, sizeof(*b->ptrs));
    b->slots = calloc(cap ? cap : 1, sizeof(*b->slots));
    if (!b->ptrs || !b->slots) {
        bench_batch_free(b);
        return -1;
    }
    b->cap = cap;
    cdp__v1__ingest_request__init(&b->req);
    return 0;
}

void bench_batch_free(bench_batch *b) {
    free(b->ptrs);
    free(b->slots);
    memset(b, 0, sizeof(*b));
}

int bench_gen_is_sample(const bench_gen *g, uint64_t seq) {
    return g->sample_every && seq % g->sample_every == 0;
}

uint32_t bench_gen_person_of(const bench_gen *g, uint64_t seq) {
    return (uint32_t)(gen_mix(seq) % g->people);
}

void bench_gen_person_user_id(const bench_gen *g, uint32_t p, char *out, size_t len) {
    snprintf(out, len, "u-%s-%u", g->run, p);
}

void bench_gen_sample_user_id(const bench_gen *g, uint64_t seq, char *out, size_t len) {
    snprintf(out, len, "s-%s-%llu", g->run, (unsigned long long)seq);
}

/* ------------------------------------------------------------------ filling */

static void gen_number(bench_event_slot *s, size_t i, const char *key, double v) {
    google__protobuf__struct__fields_entry__init(&s->entries[i]);
    google__protobuf__value__init(&s->values[i]);
    s->entries[i].key = (char *)key;
    s->entries[i].value = &s->values[i];
    s->values[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    s->values[i].number_value = v;
    s->entry_ptrs[i] = &s->entries[i];
}

static void gen_string(bench_event_slot *s, size_t i, const char *key, char *v) {
    gen_number(s, i, key, 0);
    s->values[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    s->values[i].string_value = v;
}

/* The identifiers of event seq: its person's, or its own when sampled. */
static void gen_identifiers(const bench_gen *g, bench_event_slot *s, uint64_t seq) {
    unsigned long long q = (unsigned long long)seq;
    if (bench_gen_is_sample(g, seq)) {
        bench_gen_sample_user_id(g, seq, s->user_id, sizeof(s->user_id));
        snprintf(s->anonymous_id, sizeof(s->anonymous_id), "sa-%s-%llu", g->run, q);
        snprintf(s->email_value, sizeof(s->email_value), "s%llu.%s@bench.example", q, g->run);
    } else {
        uint32_t p = bench_gen_person_of(g, seq);
        bench_gen_person_user_id(g, p, s->user_id, sizeof(s->user_id));
        snprintf(s->anonymous_id, sizeof(s->anonymous_id), "a-%s-%u-%llu", g->run, p,
                 q % GEN_ANON_PER_PERSON);
        snprintf(s->email_value, sizeof(s->email_value), "p%u.%s@bench.example", p, g->run);
    }
    cdp__v1__identifier__init(&s->email);
    s->email.type = "email";
    s->email.value = s->email_value;
    s->idents[0] = &s->email;
    s->ev.user_id = s->user_id;
    s->ev.anonymous_id = s->anonymous_id;
    s->ev.n_identifiers = 1;
    s->ev.identifiers = s->idents;
}

/* Properties: revenue on orders, then currency, sku and quantity. */
static void gen_properties(bench_event_slot *s, uint64_t seq, int order) {
    size_t n = 0;
    if (order)
        gen_number(s, n++, "revenue",
                   GEN_REVENUE_BASE + (double)(seq % GEN_REVENUE_SPREAD) + 0.5);
    gen_string(s, n++, "currency", "EUR");
    snprintf(s->sku, sizeof(s->sku), "sku-%llu", (unsigned long long)(seq % GEN_SKUS));
    gen_string(s, n++, "sku", s->sku);
    gen_number(s, n++, "quantity", (double)(1 + seq % GEN_MAX_QUANTITY));
    google__protobuf__struct__init(&s->props);
    s->props.n_fields = n;
    s->props.fields = s->entry_ptrs;
    s->ev.properties = &s->props;
}

static void gen_event(const bench_gen *g, bench_event_slot *s, uint64_t seq, int64_t now_ms) {
    cdp__v1__event__init(&s->ev);
    snprintf(s->message_id, sizeof(s->message_id), "%s-%llu", g->run, (unsigned long long)seq);
    s->ev.message_id = s->message_id;
    s->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    size_t kind = (size_t)(seq % GEN_N_NAMES);
    s->ev.event = (char *)gen_names[kind];
    if (g->sample_event && bench_gen_is_sample(g, seq))
        s->ev.event = (char *)g->sample_event;
    s->ev.channel = (char *)gen_channels[(seq / GEN_N_NAMES) % GEN_N_CHANNELS];
    s->ev.source = "bench";
    gen_identifiers(g, s, seq);
    gen_properties(s, seq, kind == 0);
    google__protobuf__timestamp__init(&s->ts);
    s->ts.seconds = now_ms / MS_PER_S;
    s->ts.nanos = (int32_t)(now_ms % MS_PER_S) * NS_PER_MS;
    s->ev.timestamp = &s->ts;
}

void bench_gen_fill(bench_gen *g, bench_batch *b, size_t n, int64_t now_ms) {
    if (n > b->cap)
        n = b->cap;
    for (size_t i = 0; i < n; i++) {
        gen_event(g, &b->slots[i], g->next_seq + i, now_ms);
        b->ptrs[i] = &b->slots[i].ev;
    }
    g->next_seq += n;
    b->req.n_events = n;
    b->req.events = b->ptrs;
}
