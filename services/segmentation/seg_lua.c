/* seg_lua: the scripts (seg_lua.h). Each states its KEYS and ARGV. */
#include "seg_lua.h"

/* KEYS: mem, pending of one profile.
 * ARGV: now, master, ev (JSON array text), mid, n, then n quadruples
 *   (segment id, want, created, ev of this segment or "" for the common
 *   one): want "1"/"0" is the new result, "D" drops
 *   the segment's state (deleted segment) but keeps its transition counter
 *   ("0:0:0:<n>:0"), so that a segment re-created with the same id never
 *   reuses a change id. A stored state whose created stamp differs from
 *   `created` belongs to an older segment of the same id and counts as
 *   "not a member" (its transition counter goes on).
 * Writes each transition to mem and, keyed by its change id, to pending.
 * Returns {entered, exited, cid1, json1, ...}: the new transition counts
 * and every pending transition (new ones and any left by an earlier call). */
static const char seg__lua_apply[] =
    "local now, m, ev, mid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local n = tonumber(ARGV[5])\n"
    "local entered, exited = 0, 0\n"
    "for i = 0, n - 1 do\n"
    "  local seg, want, created = ARGV[6 + 4 * i], ARGV[7 + 4 * i], ARGV[8 + 4 * i]\n"
    "  local sev = ARGV[9 + 4 * i]\n"
    "  if sev == '' then sev = ev end\n"
    "  if want == 'D' then\n"
    "    local cur = redis.call('HGET', KEYS[1], seg)\n"
    "    local d = cur and string.match(cur, '^%d:%-?%d+:%-?%d+:(%d+):%-?%d+$')\n"
    "    if d then redis.call('HSET', KEYS[1], seg, '0:0:0:' .. d .. ':0')\n"
    "    else redis.call('HDEL', KEYS[1], seg) end\n"
    "  else\n"
    "    local cur = redis.call('HGET', KEYS[1], seg)\n"
    "    local inn, ent, ext, cnt = 0, '0', '0', 0\n"
    "    if cur then\n"
    "      local a, b, c, d, e = string.match(cur, '^(%d):(%-?%d+):(%-?%d+):(%d+):(%-?%d+)$')\n"
    "      if a then\n"
    "        cnt = tonumber(d)\n"
    "        if e == created then inn, ent, ext = tonumber(a), b, c end\n"
    "      end\n"
    "    end\n"
    "    local w = tonumber(want)\n"
    "    if w ~= inn then\n"
    "      cnt = cnt + 1\n"
    "      local kind\n"
    "      if w == 1 then\n"
    "        ent, ext, kind = now, '0', 'entered'\n"
    "        entered = entered + 1\n"
    "      else\n"
    "        ext, kind = now, 'exited'\n"
    "        exited = exited + 1\n"
    "      end\n"
    "      redis.call('HSET', KEYS[1], seg, w .. ':' .. ent .. ':' .. ext .. ':' .. cnt .. ':' .. created)\n"
    "      local cid = seg .. ':' .. m .. ':' .. cnt\n"
    "      redis.call('HSET', KEYS[2], cid, cjson.encode({ seg = seg, m = m, n = cnt,\n"
    "        k = kind, at = now, ev = sev, mid = mid, c = created }))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[1], ':seen', 1)\n"
    "local out = { entered, exited }\n"
    "local p = redis.call('HGETALL', KEYS[2])\n"
    "for i = 1, #p do out[#out + 1] = p[i] end\n"
    "return out\n";

/* KEYS: members, idx of one segment. ARGV: master, n, kind, at, created.
 * Applies transition n unless the index already holds n or a later one
 * (replays and concurrent flushes may come in any order). The idx field
 * ":created" names the incarnation of the segment id the index belongs to:
 * a transition of an older incarnation (a replica whose snapshot still has
 * a deleted segment) is ignored, one of a newer incarnation starts the
 * index afresh; created "0" (unknown) skips the check. Returns 1 when
 * applied, 0 when stale. */
static const char seg__lua_index[] =
    "local created = tonumber(ARGV[5])\n"
    "if created and created ~= 0 then\n"
    "  local inc = tonumber(redis.call('HGET', KEYS[2], ':created') or '')\n"
    "  if inc ~= created then\n"
    "    if inc and inc > created then return 0 end\n"
    "    if inc then redis.call('DEL', KEYS[1], KEYS[2]) end\n"
    "    redis.call('HSET', KEYS[2], ':created', ARGV[5])\n"
    "  end\n"
    "end\n"
    "local cur = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "local n = tonumber(ARGV[2])\n"
    "if cur then\n"
    "  local cn = tonumber(string.match(cur, '^(%d+):'))\n"
    "  if cn and cn >= n then return 0 end\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[4])\n"
    "if ARGV[3] == 'entered' then\n"
    "  redis.call('ZADD', KEYS[1], 0, ARGV[1])\n"
    "else\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: the change stream, its change-id index (zset cid -> stream id's ms).
 * ARGV: cid, maxlen, then the entry's field/value pairs.
 * XADDs the transition unless its change id is already indexed (a replay of
 * a pending transition whose first flush reached the stream but not the
 * HDEL, or two calls flushing the same pending entry), so each change id is
 * on the stream once. The index keeps the newest `maxlen` ids, as many as
 * the stream retains at least. Returns 1 when added, 0 when already there. */
static const char seg__lua_change[] =
    "if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end\n"
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))\n"
    "redis.call('ZADD', KEYS[2], tonumber(string.match(id, '^(%d+)')), ARGV[1])\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))\n"
    "return 1\n";

/* KEYS: due, lease. ARGV: now, lease_ms, limit.
 * First returns expired leases to due (their replica died), then moves up
 * to `limit` due profiles to the lease set. Returns their master ids. */
static const char seg__lua_claim[] =
    "local now, limit = tonumber(ARGV[1]), tonumber(ARGV[3])\n"
    "local exp = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)\n"
    "for _, m in ipairs(exp) do\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "  redis.call('ZADD', KEYS[1], 'LT', now, m)\n"
    "end\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)\n"
    "for _, m in ipairs(due) do\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), m)\n"
    "end\n"
    "return due\n";

/* KEYS: defs, version. ARGV: id, expected, json. expected "" creates (the
 * id must be free); otherwise the stored definition must equal expected.
 * Returns the new definitions version, or "EXISTS" / "MISSING" /
 * "CONFLICT". */
static const char seg__lua_def_put[] =
    "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if ARGV[2] == '' then\n"
    "  if cur then return 'EXISTS' end\n"
    "else\n"
    "  if not cur then return 'MISSING' end\n"
    "  if cur ~= ARGV[2] then return 'CONFLICT' end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])\n"
    "return redis.call('INCR', KEYS[2])\n";

/* KEYS: defs, version. ARGV: id. Returns 1 when deleted, 0 when absent. */
static const char seg__lua_def_del[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('INCR', KEYS[2])\n"
    "return 1\n";

/* KEYS: members, idx of one segment. ARGV: created.
 * A new incarnation of the segment id: empties the member index and records
 * the incarnation, so a replica whose snapshot still holds a deleted
 * segment of the same id cannot put members back into it. An index that
 * already belongs to this incarnation (or a newer one) is left alone.
 * Returns 1 when reset, 0 when not. */
static const char seg__lua_index_reset[] =
    "local inc = tonumber(redis.call('HGET', KEYS[2], ':created') or '')\n"
    "if inc and inc >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "redis.call('HSET', KEYS[2], ':created', ARGV[1])\n"
    "return 1\n";

/* KEYS: bf. ARGV: version, total. Starts a PENDING backfill of `version`
 * unless one of the same or a newer version is recorded. Returns 1 or 0. */
static const char seg__lua_bf_reset[] =
    "local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')\n"
    "if cur >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', 'PENDING', 'scanned', 0,\n"
    "  'total', 0, 'matched', 0, 'started', 0, 'finished', 0, 'error', '', 'shard', 0,\n"
    "  'cursor', '0')\n"
    "return 1\n";

/* KEYS: bf, lease. ARGV: token, version, lease_ms, field, value, ...
 * Records progress only while the caller holds the lease and the backfill
 * is still of its version (a newer version aborts an older run); renews the
 * lease. Returns 1, or 0 when the caller must stop. */
static const char seg__lua_bf_step[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
    "for i = 4, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
    "return 1\n";

/* KEYS: lease. ARGV: token. Deletes the lease if it is still ours. */
static const char seg__lua_release[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS: profile main hash, mem, pending of one profile (one slot). ARGV:
 * none. Returns {merged_into or "", HLEN pending, HGETALL mem...}: what an
 * evaluation must know before it decides whether to read the profile. */
static const char seg__lua_state[] =
    "local out = { redis.call('HGET', KEYS[1], 'merged_into') or '',\n"
    "              redis.call('HLEN', KEYS[3]) }\n"
    "local mem = redis.call('HGETALL', KEYS[2])\n"
    "for i = 1, #mem do out[#out + 1] = mem[i] end\n"
    "return out\n";

int seg_scripts_init(seg_scripts *s, cdp_redis *r)
{
    s->apply = cdp_redis_script_add(r, "seg_apply", seg__lua_apply);
    s->index = cdp_redis_script_add(r, "seg_index", seg__lua_index);
    s->change = cdp_redis_script_add(r, "seg_change", seg__lua_change);
    s->claim = cdp_redis_script_add(r, "seg_claim", seg__lua_claim);
    s->def_put = cdp_redis_script_add(r, "seg_def_put", seg__lua_def_put);
    s->def_del = cdp_redis_script_add(r, "seg_def_del", seg__lua_def_del);
    s->bf_reset = cdp_redis_script_add(r, "seg_bf_reset", seg__lua_bf_reset);
    s->index_reset = cdp_redis_script_add(r, "seg_index_reset", seg__lua_index_reset);
    s->bf_step = cdp_redis_script_add(r, "seg_bf_step", seg__lua_bf_step);
    s->release = cdp_redis_script_add(r, "seg_release", seg__lua_release);
    s->state = cdp_redis_script_add(r, "seg_state", seg__lua_state);
    return s->apply && s->index && s->change && s->claim && s->def_put && s->def_del &&
                   s->bf_reset && s->index_reset &&
                   s->bf_step && s->release && s->state
               ? 0
               : -1;
}
