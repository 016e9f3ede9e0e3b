/* Unit tests for the pure parts of ingestion's event log (ing_log: shards,
 * key names, dead-letter ids) and of its pipeline (ing_batch: decoding
 * stream entries, skipping entries another lane holds, building
 * identity/profile requests, resolving in chunks, taking identity's
 * answers, the retry policy). No Redis and no network: Redis replies are
 * built by hand in the shapes hiredis produces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <grpc/status.h>

#include "ing_batch.h"
#include "ing_log.h"

/* ------------------------------------------------------------------ hand-made replies */

typedef struct {
    redisReply r;
    redisReply *kids[8];
} node;

static void str_node(node *n, const char *s, size_t len)
{
    memset(n, 0, sizeof *n);
    n->r.type = REDIS_REPLY_STRING;
    n->r.str = (char *)s;
    n->r.len = len;
}

static void arr_node(node *n, size_t count, node **items)
{
    memset(n, 0, sizeof *n);
    n->r.type = REDIS_REPLY_ARRAY;
    n->r.elements = count;
    n->r.element = n->kids;
    for (size_t i = 0; i < count; i++)
        n->kids[i] = &items[i]->r;
}

static void nil_node(node *n)
{
    memset(n, 0, sizeof *n);
    n->r.type = REDIS_REPLY_NIL;
}

/* One stream entry [id, [mid, <mid>, ev, <bytes>]]; ev omitted when bytes is NULL. */
typedef struct {
    node id, f_mid, v_mid, f_ev, v_ev, fields, entry;
} entry_nodes;

static void make_entry(entry_nodes *e, const char *id, const char *mid, const void *bytes, size_t len)
{
    str_node(&e->id, id, strlen(id));
    str_node(&e->f_mid, "mid", 3);
    str_node(&e->v_mid, mid, strlen(mid));
    str_node(&e->f_ev, "ev", 2);
    str_node(&e->v_ev, bytes, len);
    node *kv[] = {&e->f_mid, &e->v_mid, &e->f_ev, &e->v_ev};
    arr_node(&e->fields, bytes ? 4 : 2, kv);
    node *pair[] = {&e->id, &e->fields};
    arr_node(&e->entry, 2, pair);
}

static size_t pack_event(const Cdp__V1__Event *ev, uint8_t *buf)
{
    return cdp__v1__event__pack(ev, buf);
}

/* ------------------------------------------------------------------ ing_log helpers */

static void test_crc32_check_value(void **state)
{
    (void)state;
    assert_int_equal(ing_crc32("123456789", 9), 0xCBF43926u);
    assert_int_equal(ing_crc32("", 0), 0u);
}

static void test_shard_is_stable_and_in_range(void **state)
{
    (void)state;
    assert_int_equal(ing_log_shard("anything", 1), 0);
    unsigned seen[8] = {0};
    char mid[32];
    for (int i = 0; i < 800; i++) {
        snprintf(mid, sizeof mid, "msg-%d", i);
        unsigned s = ing_log_shard(mid, 8);
        assert_true(s < 8);
        assert_int_equal(s, ing_crc32(mid, strlen(mid)) % 8);
        seen[s]++;
    }
    for (int s = 0; s < 8; s++)
        assert_true(seen[s] > 0); /* every shard gets some */
}

static void test_key_names(void **state)
{
    (void)state;
    char k[ING_LOG_KEY_BUFSZ];
    assert_int_equal(ing_log_key(k, sizeof k, 3, "events"), (int)strlen("cdp:ing:{log:3}:events"));
    assert_string_equal(k, "cdp:ing:{log:3}:events");
    ing_log_dedup_key(k, sizeof k, 0, "m-1");
    assert_string_equal(k, "cdp:ing:{log:0}:dedup:m-1");
    char small[10];
    assert_int_equal(ing_log_key(small, sizeof small, 0, "events"), -1);
    /* The longest message id fits the documented buffer. */
    char mid[129];
    memset(mid, 'x', 128);
    mid[128] = '\0';
    assert_true(ing_log_dedup_key(k, sizeof k, ING_MAX_LOG_SHARDS - 1, mid) > 0);
}

static void test_dead_ids(void **state)
{
    (void)state;
    char id[ING_DEAD_ID_BUFSZ], sid[48];
    unsigned shard = 99;
    ing_dead_id_format(id, sizeof id, 2, "1700000000000-3");
    assert_string_equal(id, "2/1700000000000-3");
    assert_int_equal(ing_dead_id_parse(id, 4, &shard, sid, sizeof sid), 0);
    assert_int_equal(shard, 2);
    assert_string_equal(sid, "1700000000000-3");
    assert_int_equal(ing_dead_id_parse("1700-5", 1, &shard, sid, sizeof sid), 0);
    assert_int_equal(shard, 0);
    assert_string_equal(sid, "1700-5");
    const char *bad[] = {"", "4/1-1", "x/1-1", "/1-1", "1-", "-1", "1-1-1", "1/", "1",
                         "0/1-1 ", "123456789012345678901-1", "0/+1-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(ing_dead_id_parse(bad[i], 4, &shard, sid, sizeof sid), -1);
}

/* ------------------------------------------------------------------ decoding entries */

static void test_entries_decode(void **state)
{
    (void)state;
    Cdp__V1__Event ev = CDP__V1__EVENT__INIT;
    ev.message_id = "m-1";
    ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    ev.event = "Signed Up";
    ev.user_id = "u-1";
    Google__Protobuf__Timestamp rat = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    rat.seconds = 1700000000;
    rat.nanos = 250000000;
    ev.received_at = &rat;
    uint8_t buf[256];
    size_t len = pack_event(&ev, buf);

    entry_nodes good, noev, garbage;
    make_entry(&good, "1-1", "m-1", buf, len);
    make_entry(&noev, "1-2", "m-2", NULL, 0);
    make_entry(&garbage, "1-3", "m-3", "\xff\xff\xff", 3);
    node deleted_id, deleted_nil, deleted;
    str_node(&deleted_id, "1-4", 3);
    nil_node(&deleted_nil);
    node *dpair[] = {&deleted_id, &deleted_nil};
    arr_node(&deleted, 2, dpair);
    node all;
    node *items[] = {&good.entry, &noev.entry, &garbage.entry, &deleted};
    arr_node(&all, 4, items);

    ing_batch b;
    ing_batch_init(&b);
    assert_int_equal(ing_batch_add_entries(&b, &all.r), 4);
    assert_int_equal(b.n, 4);
    assert_int_equal(b.e[0].state, ING_ENTRY_LIVE);
    assert_string_equal(b.e[0].stream_id, "1-1");
    assert_string_equal(b.e[0].message_id, "m-1");
    assert_non_null(b.e[0].ev);
    assert_string_equal(b.e[0].ev->user_id, "u-1");
    assert_int_equal(b.e[1].state, ING_ENTRY_FAILED);
    assert_true(b.e[1].force);
    assert_int_equal(b.e[2].state, ING_ENTRY_FAILED);
    assert_true(b.e[2].force);
    assert_string_equal(b.e[2].reason, "unreadable event in the log");
    assert_int_equal(b.e[3].state, ING_ENTRY_DONE);
    assert_int_equal(ing_batch_oldest_received_ms(&b), 1700000000250LL);

    size_t idx[4];
    assert_int_equal(ing_batch_live(&b, idx), 1);
    assert_int_equal(idx[0], 0);

    /* A reply of the wrong shape is refused. */
    node notarr;
    str_node(&notarr, "x", 1);
    assert_int_equal(ing_batch_add_entries(&b, &notarr.r), -1);
    ing_batch_free(&b);
}

/* A claim that returns entries some lane already holds adds only the
 * others, and an id repeated in one reply is added once. */
static void test_add_entries_except_held(void **state)
{
    (void)state;
    Cdp__V1__Event ev = CDP__V1__EVENT__INIT;
    ev.message_id = "m";
    ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK;
    ev.event = "Signed Up";
    ev.user_id = "u-1";
    uint8_t buf[256];
    size_t len = pack_event(&ev, buf);
    entry_nodes e1, e2, e3, e2again;
    make_entry(&e1, "7-1", "m-1", buf, len);
    make_entry(&e2, "7-2", "m-2", buf, len);
    make_entry(&e3, "7-3", "m-3", buf, len);
    make_entry(&e2again, "7-2", "m-2", buf, len);
    node one, three, all;
    node *one_items[] = {&e1.entry};
    arr_node(&one, 1, one_items);
    node *three_items[] = {&e3.entry};
    arr_node(&three, 1, three_items);
    node *all_items[] = {&e1.entry, &e2.entry, &e3.entry, &e2again.entry};
    arr_node(&all, 4, all_items);

    ing_batch a, b, mine;
    ing_batch_init(&a);
    ing_batch_init(&b);
    ing_batch_init(&mine);
    assert_int_equal(ing_batch_add_entries(&a, &one.r), 1);
    assert_int_equal(ing_batch_add_entries(&b, &three.r), 1);
    assert_true(ing_batch_holds(&a, "7-1", 3));
    assert_false(ing_batch_holds(&a, "7-10", 4));
    assert_false(ing_batch_holds(&a, "7-", 2));

    const ing_batch *held[] = {&a, &b, &mine};
    assert_int_equal(ing_batch_add_entries_except(&mine, &all.r, held, 3), 1);
    assert_int_equal(mine.n, 1);
    assert_string_equal(mine.e[0].stream_id, "7-2");
    assert_string_equal(mine.e[0].message_id, "m-2");

    /* Without held batches every entry is taken, repeats included. */
    ing_batch_clear(&mine);
    assert_int_equal(ing_batch_add_entries_except(&mine, &all.r, NULL, 0), 4);
    ing_batch_free(&a);
    ing_batch_free(&b);
    ing_batch_free(&mine);
}

/* ------------------------------------------------------------------ identity and profile */

typedef struct {
    Cdp__V1__Event ev;
    Cdp__V1__Identifier id;
    Cdp__V1__Identifier *idp[1];
    uint8_t buf[512];
    size_t len;
    entry_nodes en;
    node all;
} alias_fixture;

/* A batch of n copies of an alias event with every kind of identifier. */
static void alias_batch(alias_fixture *f, ing_batch *b, size_t n)
{
    Cdp__V1__Event ev = CDP__V1__EVENT__INIT;
    Cdp__V1__Identifier id = CDP__V1__IDENTIFIER__INIT;
    f->ev = ev;
    f->id = id;
    f->id.type = "email";
    f->id.value = "A@B.co";
    f->idp[0] = &f->id;
    f->ev.message_id = "m-alias";
    f->ev.type = CDP__V1__EVENT_TYPE__EVENT_TYPE_ALIAS;
    f->ev.user_id = "u-9";
    f->ev.anonymous_id = "a-9";
    f->ev.previous_id = "p-9";
    f->ev.identifiers = f->idp;
    f->ev.n_identifiers = 1;
    f->len = pack_event(&f->ev, f->buf);
    make_entry(&f->en, "5-0", "m-alias", f->buf, f->len);
    node *items[] = {&f->en.entry};
    arr_node(&f->all, 1, items);
    ing_batch_init(b);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ing_batch_add_entries(b, &f->all.r), 1);
}

static void test_resolve_request_mapping(void **state)
{
    (void)state;
    alias_fixture f;
    ing_batch b;
    alias_batch(&f, &b, 2);
    size_t idx[] = {1};
    ing_resolve_build rb;
    assert_int_equal(ing_resolve_build_make(&rb, &b, idx, 1), 0);
    assert_int_equal(rb.req.n_requests, 1);
    Cdp__V1__ResolveRequest *r = rb.req.requests[0];
    assert_string_equal(r->message_id, "m-alias");
    assert_true(r->deliver_merges); /* the pipeline carries pending merges to profile */
    assert_int_equal(r->n_identifiers, 4);
    assert_string_equal(r->identifiers[0]->type, "user_id");
    assert_string_equal(r->identifiers[0]->value, "u-9");
    assert_string_equal(r->identifiers[1]->type, "anonymous_id");
    assert_string_equal(r->identifiers[1]->value, "a-9");
    assert_string_equal(r->identifiers[2]->type, "anonymous_id");
    assert_string_equal(r->identifiers[2]->value, "p-9");
    assert_string_equal(r->identifiers[3]->type, "email");
    assert_string_equal(r->identifiers[3]->value, "A@B.co"); /* as given: identity normalizes */
    /* It packs: what goes on the wire is well-formed. */
    assert_true(cdp__v1__resolve_batch_request__get_packed_size(&rb.req) > 0);
    ing_resolve_build_free(&rb);
    ing_batch_free(&b);
}

static void test_take_resolve(void **state)
{
    (void)state;
    alias_fixture f;
    ing_batch b;
    alias_batch(&f, &b, 2);
    size_t idx[] = {0, 1};

    Cdp__V1__ResolveResponse ok = CDP__V1__RESOLVE_RESPONSE__INIT;
    Cdp__V1__Merge merge = CDP__V1__MERGE__INIT;
    Cdp__V1__Merge *merges[] = {&merge};
    Cdp__V1__Identifier norm = CDP__V1__IDENTIFIER__INIT;
    Cdp__V1__Identifier *norms[] = {&norm};
    char master[] = "mst-1";
    merge.survivor_id = "mst-1";
    merge.loser_id = "mst-0";
    norm.type = "email";
    norm.value = "a@b.co";
    ok.master_id = master;
    ok.merges = merges;
    ok.n_merges = 1;
    ok.identifiers = norms;
    ok.n_identifiers = 1;
    Cdp__V1__ResolveResponse none = CDP__V1__RESOLVE_RESPONSE__INIT;
    Cdp__V1__DroppedIdentifier drop = CDP__V1__DROPPED_IDENTIFIER__INIT;
    Cdp__V1__DroppedIdentifier *drops[] = {&drop};
    drop.identifier = &norm;
    drop.reason = "blocked value";
    none.dropped = drops;
    none.n_dropped = 1;
    Cdp__V1__ResolveResponse *results[] = {&ok, &none};
    Cdp__V1__ResolveBatchResponse resp = CDP__V1__RESOLVE_BATCH_RESPONSE__INIT;
    resp.results = results;

    resp.n_results = 1; /* one answer for two requests */
    assert_int_equal(ing_batch_take_resolve(&b, idx, 2, &resp), -1);

    resp.n_results = 2;
    assert_int_equal(ing_batch_take_resolve(&b, idx, 2, &resp), 0);
    assert_int_equal(b.e[0].state, ING_ENTRY_LIVE);
    assert_int_equal(b.e[1].state, ING_ENTRY_FAILED);
    assert_false(b.e[1].force);
    assert_string_equal(b.e[1].reason,
                        "identity returned no master id (email dropped: blocked value)");

    /* The kept answer is a copy: the response may go away. */
    master[0] = 'X';
    assert_string_equal(b.e[0].resolved->master_id, "mst-1");

    size_t live[2];
    size_t n = ing_batch_live(&b, live);
    assert_int_equal(n, 1);
    ing_apply_build ab;
    assert_int_equal(ing_apply_build_make(&ab, &b, live, n), 0);
    assert_int_equal(ab.req.n_events, 1);
    Cdp__V1__ResolvedEvent *re = ab.req.events[0];
    assert_ptr_equal(re->event, b.e[0].ev);
    assert_string_equal(re->master_id, "mst-1");
    assert_int_equal(re->n_merges, 1);
    assert_string_equal(re->merges[0]->loser_id, "mst-0");
    assert_int_equal(re->n_identifiers, 1);
    assert_string_equal(re->identifiers[0]->value, "a@b.co");
    ing_apply_build_free(&ab);

    /* A whole-batch retry starts over: the failure is forgotten. */
    ing_batch_reset(&b);
    assert_int_equal(b.e[1].state, ING_ENTRY_LIVE);
    assert_null(b.e[0].resolved);
    ing_batch_free(&b);
}

/* A batch larger than one ResolveBatch is resolved chunk by chunk: each
 * call takes the next live entries without an answer, in order. */
static void test_unresolved_chunks(void **state)
{
    (void)state;
    alias_fixture f;
    ing_batch b;
    alias_batch(&f, &b, 5);
    ing_entry_fail(&b.e[1], "failed by itself");

    Cdp__V1__ResolveResponse ok = CDP__V1__RESOLVE_RESPONSE__INIT;
    ok.master_id = "mst-1";
    Cdp__V1__ResolveResponse *results[] = {&ok, &ok};
    Cdp__V1__ResolveBatchResponse resp = CDP__V1__RESOLVE_BATCH_RESPONSE__INIT;
    resp.results = results;
    resp.n_results = 2;

    size_t idx[5];
    assert_int_equal(ing_batch_unresolved(&b, idx, 2), 2);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 2);
    assert_int_equal(ing_batch_take_resolve(&b, idx, 2, &resp), 0);
    assert_int_equal(ing_batch_unresolved(&b, idx, 2), 2);
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[1], 4);
    assert_int_equal(ing_batch_take_resolve(&b, idx, 2, &resp), 0);
    assert_int_equal(ing_batch_unresolved(&b, idx, 2), 0);
    assert_int_equal(ing_batch_live(&b, idx), 4);

    /* A whole-batch retry forgets the answers: everything is unresolved. */
    ing_batch_reset(&b);
    assert_int_equal(ing_batch_unresolved(&b, idx, 5), 5);
    assert_int_equal(ing_batch_unresolved(&b, idx, 0), 0);
    ing_batch_free(&b);
}

static void test_reset_keeps_forced_failures(void **state)
{
    (void)state;
    alias_fixture f;
    ing_batch b;
    alias_batch(&f, &b, 1);
    ing_entry_fail(&b.e[0], "first %s", "reason");
    ing_entry_fail(&b.e[0], "second");
    assert_string_equal(b.e[0].reason, "first reason"); /* the first reason sticks */
    b.e[0].force = 1;
    ing_batch_reset(&b);
    assert_int_equal(b.e[0].state, ING_ENTRY_FAILED);
    ing_batch_free(&b);
}

/* ------------------------------------------------------------------ retry policy */

static void test_rejection_codes(void **state)
{
    (void)state;
    assert_true(ing_status_is_rejection(GRPC_STATUS_INVALID_ARGUMENT));
    assert_true(ing_status_is_rejection(GRPC_STATUS_FAILED_PRECONDITION));
    assert_true(ing_status_is_rejection(GRPC_STATUS_OUT_OF_RANGE));
    assert_false(ing_status_is_rejection(GRPC_STATUS_UNAVAILABLE));
    assert_false(ing_status_is_rejection(GRPC_STATUS_DEADLINE_EXCEEDED));
    assert_false(ing_status_is_rejection(GRPC_STATUS_INTERNAL));
    assert_false(ing_status_is_rejection(GRPC_STATUS_CANCELLED));
    assert_false(ing_status_is_rejection(GRPC_STATUS_RESOURCE_EXHAUSTED));
}

static void test_backoff(void **state)
{
    (void)state;
    int ms = 0;
    int want[] = {200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ms = ing_backoff_next(ms, 200, 30000);
        assert_int_equal(ms, want[i]);
    }
    assert_int_equal(ing_backoff_next(0, 500, 100), 500);
    assert_int_equal(ing_backoff_next(500, 500, 100), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_check_value),
        cmocka_unit_test(test_shard_is_stable_and_in_range),
        cmocka_unit_test(test_key_names),
        cmocka_unit_test(test_dead_ids),
        cmocka_unit_test(test_entries_decode),
        cmocka_unit_test(test_add_entries_except_held),
        cmocka_unit_test(test_resolve_request_mapping),
        cmocka_unit_test(test_take_resolve),
        cmocka_unit_test(test_unresolved_chunks),
        cmocka_unit_test(test_reset_keeps_forced_failures),
        cmocka_unit_test(test_rejection_codes),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
