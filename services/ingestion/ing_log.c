/* ing_log: the durable event log in Redis (see ing_log.h for the layout and
 * docs/ingestion.md for what an acknowledged event survives).
 *
 * Three Lua scripts do every multi-key change in one round trip, atomically
 * with respect to other clients: append (dedup + XADD), finish (the
 * pipeline's ack / retry / dead-letter bookkeeping) and replay (dead letters
 * back into the log). The C side builds their arguments and decodes their
 * replies; ownership of everything passed in stays with the caller until
 * the callback. */
#include "ing_log.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"

#define ING_KEY_PREFIX "cdp:ing:{log:"
#define ING_CRC32_POLY 0xEDB88320u
/* Decimal digits of an int64 plus sign and NUL. */
#define ING_NUM_BUFSZ 24

/* ------------------------------------------------------------------ scripts */

/* KEYS[1] events stream, KEYS[2..] one dedup key per event.
 * ARGV[1] dedup TTL s, ARGV[2] maxlen, ARGV[3] received_at ms, ARGV[4] group,
 * then message_id, event bytes per event.
 * Returns per event {1, stream id} or {0, original received_at ms}.
 *
 * The marker is set after the XADD, so an XADD that fails leaves no marker
 * behind that would turn the client's retry into a false duplicate. Trimming
 * only ever removes entries below both the group's oldest pending entry and
 * its last delivered id, i.e. entries the pipeline has finished: nothing
 * unprocessed is trimmed. Instead of evicting, a full log refuses appends. */
static const char ing__lua_append[] =
    "local stream = KEYS[1]\n"
    "local ttl, maxlen, now, group = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]\n"
    "local len = redis.call('XLEN', stream)\n"
    "if len >= maxlen then\n"
    "  return redis.error_reply('" ING_LOG_FULL_ERR " event log shard holds ' .. len .. ' entries')\n"
    "end\n"
    "local trim = nil\n"
    "local groups = redis.pcall('XINFO', 'GROUPS', stream)\n"
    "if type(groups) == 'table' and groups.err == nil then\n"
    "  for _, g in ipairs(groups) do\n"
    "    local info = {}\n"
    "    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end\n"
    "    if info['name'] == group then\n"
    "      local p = redis.call('XPENDING', stream, group)\n"
    "      if tonumber(p[1]) > 0 then trim = p[2] else trim = info['last-delivered-id'] end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for i = 2, #KEYS do\n"
    "  local mid, ev = ARGV[2 * i + 1], ARGV[2 * i + 2]\n"
    "  local prev = redis.call('GET', KEYS[i])\n"
    "  if prev then\n"
    "    out[#out + 1] = {0, prev}\n"
    "  else\n"
    "    local id\n"
    "    if trim then\n"
    "      id = redis.call('XADD', stream, 'MINID', '~', trim, '*', 'mid', mid, 'ev', ev)\n"
    "      trim = nil\n"
    "    else\n"
    "      id = redis.call('XADD', stream, '*', 'mid', mid, 'ev', ev)\n"
    "    end\n"
    "    redis.call('SET', KEYS[i], now, 'EX', ttl)\n"
    "    out[#out + 1] = {1, id}\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS[1] events, KEYS[2] dead, KEYS[3] attempts.
 * ARGV[1] group, ARGV[2] max attempts, ARGV[3] now ms, ARGV[4] n done,
 * then n done stream ids, then per failure: id, mid, reason, ev, force.
 * Returns {acked, retrying, dead}. */
static const char ing__lua_finish[] =
    "local stream, dead, attempts = KEYS[1], KEYS[2], KEYS[3]\n"
    "local group, maxa, now = ARGV[1], tonumber(ARGV[2]), ARGV[3]\n"
    "local ndone = tonumber(ARGV[4])\n"
    "-- one call per command and chunk, not per entry (unpack's stack is bounded)\n"
    "for lo = 5, 4 + ndone, 512 do\n"
    "  local hi = math.min(lo + 511, 4 + ndone)\n"
    "  redis.call('XACK', stream, group, unpack(ARGV, lo, hi))\n"
    "  redis.call('XDEL', stream, unpack(ARGV, lo, hi))\n"
    "  redis.call('HDEL', attempts, unpack(ARGV, lo, hi))\n"
    "end\n"
    "local retrying, deadn = 0, 0\n"
    "local i = 5 + ndone\n"
    "while i + 4 <= #ARGV do\n"
    "  local id, mid, reason, ev, force = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]\n"
    "  local a = redis.call('HINCRBY', attempts, id, 1)\n"
    "  if force == '1' or a >= maxa then\n"
    "    redis.call('XADD', dead, '*', 'mid', mid, 'ev', ev, 'reason', reason,\n"
    "               'attempts', a, 'failed_at', now, 'src', id)\n"
    "    redis.call('XACK', stream, group, id)\n"
    "    redis.call('XDEL', stream, id)\n"
    "    redis.call('HDEL', attempts, id)\n"
    "    deadn = deadn + 1\n"
    "  else\n"
    "    retrying = retrying + 1\n"
    "  end\n"
    "  i = i + 5\n"
    "end\n"
    "return {ndone, retrying, deadn}\n";

/* KEYS[1] dead, KEYS[2] events. ARGV[1] "all" then ARGV[2] chunk, or
 * ARGV[1] "ids" then stream ids. Returns the number replayed. */
static const char ing__lua_replay[] =
    "local dead, stream = KEYS[1], KEYS[2]\n"
    "local entries = {}\n"
    "if ARGV[1] == 'all' then\n"
    "  entries = redis.call('XRANGE', dead, '-', '+', 'COUNT', tonumber(ARGV[2]))\n"
    "else\n"
    "  for i = 2, #ARGV do\n"
    "    local e = redis.call('XRANGE', dead, ARGV[i], ARGV[i])\n"
    "    if #e > 0 then entries[#entries + 1] = e[1] end\n"
    "  end\n"
    "end\n"
    "local n = 0\n"
    "for _, e in ipairs(entries) do\n"
    "  local f, kv = {}, e[2]\n"
    "  for j = 1, #kv, 2 do f[kv[j]] = kv[j + 1] end\n"
    "  redis.call('XADD', stream, '*', 'mid', f['mid'] or '', 'ev', f['ev'] or '')\n"
    "  redis.call('XDEL', dead, e[1])\n"
    "  n = n + 1\n"
    "end\n"
    "return n\n";

/* ------------------------------------------------------------------ pure helpers */

uint32_t ing_crc32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (ING_CRC32_POLY & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

unsigned ing_log_shard(const char *message_id, unsigned shards)
{
    if (shards <= 1)
        return 0;
    return ing_crc32(message_id, strlen(message_id)) % shards;
}

static int ing__fits(int n, size_t outlen)
{
    return n >= 0 && (size_t)n < outlen ? n : -1;
}

int ing_log_key(char *out, size_t outlen, unsigned shard, const char *suffix)
{
    return ing__fits(snprintf(out, outlen, ING_KEY_PREFIX "%u}:%s", shard, suffix), outlen);
}

int ing_log_dedup_key(char *out, size_t outlen, unsigned shard, const char *message_id)
{
    return ing__fits(snprintf(out, outlen, ING_KEY_PREFIX "%u}:dedup:%s", shard, message_id),
                     outlen);
}

int ing_dead_id_format(char *out, size_t outlen, unsigned shard, const char *stream_id)
{
    return ing__fits(snprintf(out, outlen, "%u/%s", shard, stream_id), outlen);
}

/* 1 if s is "<digits>-<digits>" with at most 20 digits each (a uint64). */
static int ing__is_stream_id(const char *s)
{
    const int max_digits = 20;
    int part = 0, digits = 0;
    for (; *s; s++) {
        if (isdigit((unsigned char)*s)) {
            if (++digits > max_digits)
                return 0;
        } else if (*s == '-' && part == 0 && digits > 0) {
            part = 1;
            digits = 0;
        } else {
            return 0;
        }
    }
    return part == 1 && digits > 0;
}

int ing_dead_id_parse(const char *id, unsigned shards, unsigned *shard, char *stream_id,
                      size_t stream_id_len)
{
    const char *slash = strchr(id, '/');
    const char *sid = id;
    unsigned long sh = 0;
    if (slash) {
        char *end = NULL;
        if (slash == id || !isdigit((unsigned char)id[0]))
            return -1;
        sh = strtoul(id, &end, 10);
        if (end != slash || sh >= shards)
            return -1;
        sid = slash + 1;
    }
    if (!ing__is_stream_id(sid) || strlen(sid) >= stream_id_len)
        return -1;
    strcpy(stream_id, sid);
    *shard = (unsigned)sh;
    return 0;
}

/* ------------------------------------------------------------------ setup */

int ing_log_init(ing_log *log, cdp_redis *r, const ing_log_config *cfg)
{
    memset(log, 0, sizeof *log);
    log->redis = r;
    log->cfg = *cfg;
    log->append = cdp_redis_script_add(r, "ing_append", ing__lua_append);
    log->finish = cdp_redis_script_add(r, "ing_finish", ing__lua_finish);
    log->replay = cdp_redis_script_add(r, "ing_replay", ing__lua_replay);
    if (!log->append || !log->finish || !log->replay) {
        cdp_log(CDP_LOG_ERROR, "cannot register event log scripts", NULL);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ script calls */

/* One script call in flight: its argument vectors (kept until the reply,
 * in case the client retries after MOVED) and the caller's callback. */
typedef struct {
    ing_log_cb cb;
    void *ud;
    size_t nkeys, nargs;
    const char **keys;
    size_t *keylens;
    const char **args;
    size_t *arglens;
    char *keybuf;          /* nkeys * ING_LOG_KEY_BUFSZ */
    char (*nums)[ING_NUM_BUFSZ]; /* numeric arguments' text */
    size_t nnums;
    /* where to put the decoded reply */
    ing_log_outcome *outcomes;
    size_t n_outcomes;
    ing_log_finish_result *finish;
    long long *count;
} ing__call;

static void ing__call_free(ing__call *c)
{
    if (!c)
        return;
    free(c->keys);
    free(c->keylens);
    free(c->args);
    free(c->arglens);
    free(c->keybuf);
    free(c->nums);
    free(c);
}

static ing__call *ing__call_new(size_t nkeys, size_t nargs, size_t nnums, ing_log_cb cb, void *ud)
{
    ing__call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cb = cb;
    c->ud = ud;
    c->keys = calloc(nkeys, sizeof *c->keys);
    c->keylens = calloc(nkeys, sizeof *c->keylens);
    c->args = calloc(nargs ? nargs : 1, sizeof *c->args);
    c->arglens = calloc(nargs ? nargs : 1, sizeof *c->arglens);
    c->keybuf = calloc(nkeys, ING_LOG_KEY_BUFSZ);
    c->nums = calloc(nnums ? nnums : 1, sizeof *c->nums);
    if (!c->keys || !c->keylens || !c->args || !c->arglens || !c->keybuf || !c->nums) {
        ing__call_free(c);
        return NULL;
    }
    return c;
}

/* Sets key i; returns -1 if it did not fit. */
static int ing__set_key(ing__call *c, size_t i, int len)
{
    if (len < 0)
        return -1;
    c->keys[i] = c->keybuf + i * ING_LOG_KEY_BUFSZ;
    c->keylens[i] = (size_t)len;
    return 0;
}

static char *ing__key_slot(ing__call *c, size_t i)
{
    return c->keybuf + i * ING_LOG_KEY_BUFSZ;
}

static void ing__arg(ing__call *c, const void *p, size_t len)
{
    c->args[c->nargs] = p;
    c->arglens[c->nargs] = len;
    c->nargs++;
}

static void ing__arg_str(ing__call *c, const char *s)
{
    ing__arg(c, s, strlen(s));
}

static void ing__arg_num(ing__call *c, long long v)
{
    char *buf = c->nums[c->nnums++];
    snprintf(buf, ING_NUM_BUFSZ, "%lld", v);
    ing__arg_str(c, buf);
}

/* Maps a failed reply to a return code and message. */
static ing_log_rc ing__reply_error(const redisReply *reply, const char *err, const char **msg)
{
    if (!reply) {
        *msg = err ? err : "no reply";
        return ING_LOG_EUNAVAILABLE;
    }
    *msg = reply->str ? reply->str : "unexpected reply";
    if (reply->type == REDIS_REPLY_ERROR && reply->str && strstr(reply->str, ING_LOG_FULL_ERR))
        return ING_LOG_EFULL;
    return ING_LOG_EUNAVAILABLE;
}

static void ing__finish_call(ing__call *c, ing_log_rc rc, const char *msg)
{
    ing_log_cb cb = c->cb;
    void *ud = c->ud;
    ing__call_free(c);
    cb(rc, rc == ING_LOG_OK ? NULL : msg, ud);
}

static void ing__eval(ing_log *log, cdp_redis_script *s, ing__call *c, cdp_redis_cb done)
{
    cdp_redis_eval(log->redis, s, done, c, (int)c->nkeys, c->keys, c->keylens, (int)c->nargs,
                   c->args, c->arglens);
}

/* ------------------------------------------------------------------ append */

static long long ing__reply_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static void ing__append_done(redisReply *reply, const char *err, void *ud)
{
    ing__call *c = ud;
    const char *msg = NULL;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != c->n_outcomes) {
        ing_log_rc rc = ing__reply_error(reply, err, &msg);
        ing__finish_call(c, rc, msg);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) {
            ing__finish_call(c, ING_LOG_EUNAVAILABLE, "malformed append reply");
            return;
        }
        c->outcomes[i].duplicate = ing__reply_int(e->element[0]) == 0;
        if (c->outcomes[i].duplicate)
            c->outcomes[i].received_ms = ing__reply_int(e->element[1]);
    }
    ing__finish_call(c, ING_LOG_OK, NULL);
}

void ing_log_append(ing_log *log, unsigned shard, const ing_log_item *items, size_t n,
                    int64_t received_ms, ing_log_outcome *outcomes, ing_log_cb cb, void *ud)
{
    const size_t fixed_args = 4;
    ing__call *c = ing__call_new(n + 1, fixed_args + 2 * n, 3, cb, ud);
    if (!c) {
        cb(ING_LOG_EUNAVAILABLE, "out of memory", ud);
        return;
    }
    c->nkeys = n + 1;
    c->outcomes = outcomes;
    c->n_outcomes = n;
    int bad = ing__set_key(c, 0, ing_log_key(ing__key_slot(c, 0), ING_LOG_KEY_BUFSZ, shard, "events"));
    for (size_t i = 0; i < n && !bad; i++) {
        bad = ing__set_key(c, i + 1, ing_log_dedup_key(ing__key_slot(c, i + 1), ING_LOG_KEY_BUFSZ,
                                                       shard, items[i].message_id));
        outcomes[i].duplicate = 0;
        outcomes[i].received_ms = received_ms;
    }
    if (bad) {
        ing__finish_call(c, ING_LOG_EUNAVAILABLE, "key too long");
        return;
    }
    ing__arg_num(c, log->cfg.dedup_window_s);
    ing__arg_num(c, log->cfg.maxlen);
    ing__arg_num(c, received_ms);
    ing__arg_str(c, ING_LOG_GROUP);
    for (size_t i = 0; i < n; i++) {
        ing__arg_str(c, items[i].message_id);
        ing__arg(c, items[i].data, items[i].len);
    }
    ing__eval(log, log->append, c, ing__append_done);
}

/* ------------------------------------------------------------------ finish */

static void ing__finish_done(redisReply *reply, const char *err, void *ud)
{
    ing__call *c = ud;
    const size_t n_counts = 3;
    const char *msg = NULL;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != n_counts) {
        ing_log_rc rc = ing__reply_error(reply, err, &msg);
        ing__finish_call(c, rc, msg);
        return;
    }
    c->finish->acked = ing__reply_int(reply->element[0]);
    c->finish->retrying = ing__reply_int(reply->element[1]);
    c->finish->dead = ing__reply_int(reply->element[2]);
    ing__finish_call(c, ING_LOG_OK, NULL);
}

static int ing__shard_keys(ing__call *c, unsigned shard, const char *const *suffixes, size_t n)
{
    c->nkeys = n;
    for (size_t i = 0; i < n; i++)
        if (ing__set_key(c, i, ing_log_key(ing__key_slot(c, i), ING_LOG_KEY_BUFSZ, shard,
                                           suffixes[i])) < 0)
            return -1;
    return 0;
}

void ing_log_finish(ing_log *log, unsigned shard, const char *const *done_ids, size_t n_done,
                    const ing_log_failure *failures, size_t n_failures, int max_attempts,
                    int64_t now_ms, ing_log_finish_result *result, ing_log_cb cb, void *ud)
{
    static const char *const suffixes[] = {"events", "dead", "attempts"};
    const size_t fixed_args = 4, per_failure = 5;
    ing__call *c = ing__call_new(3, fixed_args + n_done + per_failure * n_failures, 3, cb, ud);
    if (!c) {
        cb(ING_LOG_EUNAVAILABLE, "out of memory", ud);
        return;
    }
    c->finish = result;
    memset(result, 0, sizeof *result);
    if (ing__shard_keys(c, shard, suffixes, 3) < 0) {
        ing__finish_call(c, ING_LOG_EUNAVAILABLE, "key too long");
        return;
    }
    ing__arg_str(c, ING_LOG_GROUP);
    ing__arg_num(c, max_attempts);
    ing__arg_num(c, now_ms);
    ing__arg_num(c, (long long)n_done);
    for (size_t i = 0; i < n_done; i++)
        ing__arg_str(c, done_ids[i]);
    for (size_t i = 0; i < n_failures; i++) {
        const ing_log_failure *f = &failures[i];
        ing__arg_str(c, f->stream_id);
        ing__arg_str(c, f->message_id ? f->message_id : "");
        ing__arg_str(c, f->reason ? f->reason : "");
        ing__arg(c, f->data ? (const void *)f->data : "", f->data ? f->len : 0);
        ing__arg_str(c, f->force ? "1" : "0");
    }
    ing__eval(log, log->finish, c, ing__finish_done);
}

/* ------------------------------------------------------------------ replay */

static void ing__replay_done(redisReply *reply, const char *err, void *ud)
{
    ing__call *c = ud;
    const char *msg = NULL;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        ing_log_rc rc = ing__reply_error(reply, err, &msg);
        ing__finish_call(c, rc, msg);
        return;
    }
    *c->count = reply->integer;
    ing__finish_call(c, ING_LOG_OK, NULL);
}

void ing_log_replay(ing_log *log, unsigned shard, const char *const *stream_ids, size_t n_ids,
                    int chunk, long long *replayed, ing_log_cb cb, void *ud)
{
    static const char *const suffixes[] = {"dead", "events"};
    ing__call *c = ing__call_new(2, 2 + n_ids, 1, cb, ud);
    if (!c) {
        cb(ING_LOG_EUNAVAILABLE, "out of memory", ud);
        return;
    }
    c->count = replayed;
    *replayed = 0;
    if (ing__shard_keys(c, shard, suffixes, 2) < 0) {
        ing__finish_call(c, ING_LOG_EUNAVAILABLE, "key too long");
        return;
    }
    if (n_ids == 0) {
        ing__arg_str(c, "all");
        ing__arg_num(c, chunk);
    } else {
        ing__arg_str(c, "ids");
        for (size_t i = 0; i < n_ids; i++)
            ing__arg_str(c, stream_ids[i]);
    }
    ing__eval(log, log->replay, c, ing__replay_done);
}
