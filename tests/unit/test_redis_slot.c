/* Unit tests for the pure parts of the Redis client: key hash slots
 * (common/cdp_redis.h) and the helpers in common/cdp_redis_util.h (address
 * lists, MOVED/ASK parsing, backoff, EVALSHA -> EVAL, CLUSTER SLOTS).
 * Expected slots were taken from a real Redis 7 (CLUSTER KEYSLOT). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cdp_redis.h"
#include "cdp_redis_util.h"

static unsigned slot_of(const char *key)
{
    return cdp_redis_key_slot(key, strlen(key));
}

/* ------------------------------------------------------------ key slots */

static void test_slot_vectors(void **state)
{
    (void)state;
    /* CRC16-XMODEM("123456789") is 0x31C3, the check value Redis documents. */
    assert_int_equal(slot_of("123456789"), 0x31C3 % CDP__REDIS_SLOTS);
    assert_int_equal(slot_of("123456789"), 12739);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of(""), 0);
    assert_int_equal(slot_of("a{b"), 13340);
}

static void test_slot_hash_tags(void **state)
{
    (void)state;
    /* Only the tag is hashed. */
    assert_int_equal(slot_of("{user1000}.following"), 3443);
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("{user1000}.following"));
    assert_int_equal(slot_of("user1000"), 3443);
    /* The first complete tag wins. */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* An empty first tag: the whole key is hashed. */
    assert_int_equal(slot_of("foo{}{bar}"), 8363);
    assert_int_not_equal(slot_of("foo{}{bar}"), slot_of("bar"));
    /* The tag runs from the first '{' to the first '}' after it. */
    assert_int_equal(slot_of("foo{{bar}}zap"), 4015);
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* A '}' before the '{' does not close anything. */
    assert_int_equal(slot_of("}{x}"), slot_of("x"));
    assert_int_equal(slot_of("}{x}"), 16287);
}

static void test_slot_binary_keys(void **state)
{
    (void)state;
    /* Lengths are honoured: bytes after keylen and embedded NULs count. */
    assert_int_equal(cdp_redis_key_slot("123456789XYZ", 9), 12739);
    const char bin[] = {'a', '\0', 'b'};
    assert_int_not_equal(cdp_redis_key_slot(bin, sizeof bin), cdp_redis_key_slot("a", 1));
    assert_true(cdp_redis_key_slot(bin, sizeof bin) < CDP__REDIS_SLOTS);
}

/* ------------------------------------------------------------ addresses */

static int parse_addr(const char *s, cdp__redis_addr *a)
{
    return cdp__redis_addr_parse(s, strlen(s), a);
}

static void test_addr_parse(void **state)
{
    (void)state;
    cdp__redis_addr a;
    assert_int_equal(parse_addr("127.0.0.1:6379", &a), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6379);
    assert_int_equal(parse_addr("[::1]:7000", &a), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7000);
    assert_int_equal(parse_addr("::1:7001", &a), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7001);
    assert_int_equal(parse_addr(":6380", &a), 0);
    assert_string_equal(a.host, "");
    assert_int_equal(a.port, 6380);
    assert_int_equal(parse_addr("localhost:65535", &a), 0);
    assert_int_equal(parse_addr("localhost", &a), -1);
    assert_int_equal(parse_addr("localhost:", &a), -1);
    assert_int_equal(parse_addr("localhost:0", &a), -1);
    assert_int_equal(parse_addr("localhost:65536", &a), -1);
    assert_int_equal(parse_addr("localhost:12a", &a), -1);
    assert_int_equal(parse_addr("localhost:-1", &a), -1);
    char long_host[CDP__REDIS_HOST_MAX + 8];
    memset(long_host, 'h', CDP__REDIS_HOST_MAX);
    strcpy(long_host + CDP__REDIS_HOST_MAX, ":1");
    assert_int_equal(parse_addr(long_host, &a), -1);
}

static void test_addr_list_parse(void **state)
{
    (void)state;
    cdp__redis_addr *addrs = NULL;
    assert_int_equal(cdp__redis_addr_list_parse(" 127.0.0.1:7200 , 127.0.0.1:7201,h:1", &addrs), 3);
    assert_string_equal(addrs[0].host, "127.0.0.1");
    assert_int_equal(addrs[0].port, 7200);
    assert_int_equal(addrs[1].port, 7201);
    assert_string_equal(addrs[2].host, "h");
    free(addrs);
    assert_int_equal(cdp__redis_addr_list_parse("redis:6379", &addrs), 1);
    free(addrs);
    assert_int_equal(cdp__redis_addr_list_parse("", &addrs), -1);
    assert_int_equal(cdp__redis_addr_list_parse("a:1,,b:2", &addrs), -1);
    assert_int_equal(cdp__redis_addr_list_parse("a:1,", &addrs), -1);
    assert_int_equal(cdp__redis_addr_list_parse(":6379", &addrs), -1);
    assert_int_equal(cdp__redis_addr_list_parse("a:1,b", &addrs), -1);
    assert_int_equal(cdp__redis_addr_list_parse(NULL, &addrs), -1);
}

/* ------------------------------------------------------------ redirects */

static int parse_redirect(const char *s, cdp__redis_redirect *rd)
{
    return cdp__redis_redirect_parse(s, strlen(s), rd);
}

static void test_redirect_parse(void **state)
{
    (void)state;
    cdp__redis_redirect rd;
    assert_int_equal(parse_redirect("MOVED 3999 127.0.0.1:6381", &rd), 0);
    assert_int_equal(rd.kind, CDP__REDIS_MOVED);
    assert_int_equal(rd.slot, 3999);
    assert_string_equal(rd.addr.host, "127.0.0.1");
    assert_int_equal(rd.addr.port, 6381);
    assert_int_equal(parse_redirect("ASK 16383 10.0.0.2:7002", &rd), 0);
    assert_int_equal(rd.kind, CDP__REDIS_ASK);
    assert_int_equal(rd.slot, 16383);
    assert_string_equal(rd.addr.host, "10.0.0.2");
    assert_int_equal(parse_redirect("MOVED 0 :7000", &rd), 0);
    assert_string_equal(rd.addr.host, "");
    assert_int_equal(rd.addr.port, 7000);
    assert_int_equal(parse_redirect("MOVED 16384 h:1", &rd), -1);
    assert_int_equal(parse_redirect("MOVED 3999", &rd), -1);
    assert_int_equal(parse_redirect("MOVED x h:1", &rd), -1);
    assert_int_equal(parse_redirect("MOVED 1 h:1 extra", &rd), -1);
    assert_int_equal(parse_redirect("MOVED", &rd), -1);
    assert_int_equal(parse_redirect("ERR unknown command", &rd), -1);
    assert_int_equal(parse_redirect("NOSCRIPT No matching script", &rd), -1);
    assert_int_equal(parse_redirect("ASKING", &rd), -1);
}

/* ------------------------------------------------------------ backoff */

static void test_backoff(void **state)
{
    (void)state;
    int d = 0;
    const int want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        d = cdp__redis_backoff_next(d, 100, 5000);
        assert_int_equal(d, want[i]);
    }
    assert_int_equal(cdp__redis_backoff_next(30, 100, 5000), 100);
    assert_int_equal(cdp__redis_backoff_next(0, 100, 50), 100);
    assert_int_equal(cdp__redis_backoff_next(100, 100, 50), 100);
    /* No overflow near INT_MAX. */
    assert_int_equal(cdp__redis_backoff_next(2000000000, 1, 2100000000), 2100000000);
}

/* ------------------------------------------------------------ EVALSHA -> EVAL */

static void test_evalsha_to_eval(void **state)
{
    (void)state;
    const char *sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
    const char *lua = "return redis.call('GET', KEYS[1])";
    const char *sha_argv[] = {"EVALSHA", sha, "2", "k1", "{k}2", "arg\r\nwith crlf", ""};
    const char *eval_argv[] = {"EVAL", lua, "2", "k1", "{k}2", "arg\r\nwith crlf", ""};
    const int argc = (int)(sizeof sha_argv / sizeof sha_argv[0]);
    char *evalsha = NULL, *want = NULL, *got = NULL;
    int shalen = redisFormatCommandArgv(&evalsha, argc, sha_argv, NULL);
    int wantlen = redisFormatCommandArgv(&want, argc, eval_argv, NULL);
    assert_true(shalen > 0 && wantlen > 0);
    size_t gotlen = 0;
    assert_int_equal(cdp__redis_evalsha_to_eval(evalsha, (size_t)shalen, lua, strlen(lua), &got,
                                                &gotlen),
                     0);
    assert_int_equal(gotlen, (size_t)wantlen);
    assert_memory_equal(got, want, gotlen);
    free(got);

    /* Not an EVALSHA, or truncated: refused. */
    char *get = NULL;
    const char *get_argv[] = {"GET", "k"};
    int getlen = redisFormatCommandArgv(&get, 2, get_argv, NULL);
    assert_int_equal(
        cdp__redis_evalsha_to_eval(get, (size_t)getlen, lua, strlen(lua), &got, &gotlen), -1);
    assert_int_equal(cdp__redis_evalsha_to_eval(evalsha, 30, lua, strlen(lua), &got, &gotlen), -1);
    assert_int_equal(cdp__redis_evalsha_to_eval("", 0, lua, strlen(lua), &got, &gotlen), -1);
    redisFreeCommand(get);
    redisFreeCommand(evalsha);
    redisFreeCommand(want);
}

/* ------------------------------------------------------------ CLUSTER SLOTS */

/* A tiny builder for hiredis reply trees on the heap, freed with
 * freeReplyObject like a real reply. */
static redisReply *reply_new(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *reply_int(long long v)
{
    redisReply *r = reply_new(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

static redisReply *reply_str(const char *s)
{
    redisReply *r = reply_new(REDIS_REPLY_STRING);
    r->len = strlen(s);
    r->str = strdup(s);
    return r;
}

static redisReply *reply_array(size_t n)
{
    redisReply *r = reply_new(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n, sizeof *r->element);
    return r;
}

/* [first, last, [host, port, id], [replica host, port, id]] */
static redisReply *slot_entry(long long first, long long last, redisReply *host, long long port)
{
    redisReply *e = reply_array(4);
    e->element[0] = reply_int(first);
    e->element[1] = reply_int(last);
    e->element[2] = reply_array(3);
    e->element[2]->element[0] = host;
    e->element[2]->element[1] = reply_int(port);
    e->element[2]->element[2] = reply_str("a94d31f26c46b53985b2d403cb341b2f68e9af44");
    e->element[3] = reply_array(3);
    e->element[3]->element[0] = reply_str("127.0.0.1");
    e->element[3]->element[1] = reply_int(port + 3);
    e->element[3]->element[2] = reply_str("860e46999ba2e4f3129e0e8bafcce0100eb76ab5");
    return e;
}

static void test_slots_parse(void **state)
{
    (void)state;
    redisReply *reply = reply_array(3);
    reply->element[0] = slot_entry(0, 5460, reply_str("127.0.0.1"), 7200);
    reply->element[1] = slot_entry(5461, 10922, reply_str("?"), 7201);
    reply->element[2] = slot_entry(10923, 16383, reply_new(REDIS_REPLY_NIL), 7202);
    cdp__redis_slot_range *ranges = NULL;
    assert_int_equal(cdp__redis_slots_parse(reply, &ranges), 3);
    assert_int_equal(ranges[0].first, 0);
    assert_int_equal(ranges[0].last, 5460);
    assert_string_equal(ranges[0].addr.host, "127.0.0.1");
    assert_int_equal(ranges[0].addr.port, 7200);
    assert_string_equal(ranges[1].addr.host, "");
    assert_int_equal(ranges[1].addr.port, 7201);
    assert_string_equal(ranges[2].addr.host, "");
    assert_int_equal(ranges[2].last, 16383);
    free(ranges);

    /* A range past the last slot, or reversed, is malformed. */
    reply->element[2]->element[1]->integer = CDP__REDIS_SLOTS;
    assert_int_equal(cdp__redis_slots_parse(reply, &ranges), -1);
    reply->element[2]->element[1]->integer = 10000;
    assert_int_equal(cdp__redis_slots_parse(reply, &ranges), -1);
    freeReplyObject(reply);

    redisReply *empty = reply_array(0);
    assert_int_equal(cdp__redis_slots_parse(empty, &ranges), 0);
    assert_null(ranges);
    freeReplyObject(empty);

    redisReply *err = reply_new(REDIS_REPLY_ERROR);
    assert_int_equal(cdp__redis_slots_parse(err, &ranges), -1);
    freeReplyObject(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_vectors),
        cmocka_unit_test(test_slot_hash_tags),
        cmocka_unit_test(test_slot_binary_keys),
        cmocka_unit_test(test_addr_parse),
        cmocka_unit_test(test_addr_list_parse),
        cmocka_unit_test(test_redirect_parse),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_evalsha_to_eval),
        cmocka_unit_test(test_slots_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
