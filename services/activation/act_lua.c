/* act_lua: the scripts (see act_lua.h for keys, arguments and replies).
 * Records are small JSON objects decoded and re-encoded with cjson; the
 * packed ActivationMessage (with the profile) is never decoded here. */
#include "act_lua.h"

const char act_lua_dest_put[] =
    "local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1\n"
    "if (ARGV[3] == 'create') == exists then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('INCR', KEYS[2])\n"
    "return 1\n";

const char act_lua_dest_del[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('INCR', KEYS[2])\n"
    "return 1\n";

const char act_lua_enqueue[] =
    "local id, now = ARGV[1], tonumber(ARGV[2])\n"
    "if redis.call('HSETNX', KEYS[2], id, ARGV[3]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[3], id, ARGV[4])\n"
    "redis.call('ZADD', KEYS[1], now, id)\n"
    "redis.call('ZADD', KEYS[4], now, id)\n"
    "local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[5]),\n"
    "                       'LIMIT', 0, 100)\n"
    "for _, o in ipairs(old) do\n"
    "  local raw = redis.call('HGET', KEYS[2], o)\n"
    "  local st = raw and cjson.decode(raw).s or 0\n"
    "  if st == 3 or st == 5 or not raw then\n"
    "    redis.call('HDEL', KEYS[2], o)\n"
    "    redis.call('HDEL', KEYS[3], o)\n"
    "    redis.call('ZREM', KEYS[4], o)\n"
    "  end\n"
    "end\n"
    "return 1\n";

const char act_lua_claim[] =
    "local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local raw = redis.call('HGET', KEYS[2], id)\n"
    "  local body = redis.call('HGET', KEYS[3], id)\n"
    "  if not raw or not body then\n"
    "    redis.call('ZREM', KEYS[1], id)\n"
    "  else\n"
    "    local r = cjson.decode(raw)\n"
    "    r.a = r.a + 1; r.s = 2; r.l = ARGV[4]; r.ua = now; r.na = lease\n"
    "    raw = cjson.encode(r)\n"
    "    redis.call('HSET', KEYS[2], id, raw)\n"
    "    redis.call('ZADD', KEYS[1], lease, id)\n"
    "    out[#out + 1] = id; out[#out + 1] = raw; out[#out + 1] = body\n"
    "  end\n"
    "end\n"
    "return out\n";

const char act_lua_finish[] =
    "local id, token, outcome = ARGV[1], ARGV[2], ARGV[3]\n"
    "local now, nxt = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local raw = redis.call('HGET', KEYS[2], id)\n"
    "if not raw then return {'stale'} end\n"
    "local r = cjson.decode(raw)\n"
    "if r.s ~= 2 or (token ~= '*' and r.l ~= token) then return {'stale'} end\n"
    "r.l = nil; r.ua = now\n"
    "if ARGV[6] ~= '' then r.e = ARGV[6] end\n"
    "if outcome == 'retry' and r.a >= tonumber(ARGV[8]) then outcome = 'dead' end\n"
    "if outcome == 'delivered' then\n"
    "  r.s = 3; r.da = now; r.na = nil\n"
    "  redis.call('ZREM', KEYS[1], id); redis.call('HDEL', KEYS[3], id)\n"
    "elseif outcome == 'blocked' then\n"
    "  r.s = 5; r.r = ARGV[7]; r.na = nil\n"
    "  redis.call('ZREM', KEYS[1], id); redis.call('HDEL', KEYS[3], id)\n"
    "elseif outcome == 'dead' then\n"
    "  r.s = 4; r.na = nil\n"
    "  redis.call('ZREM', KEYS[1], id); redis.call('ZADD', KEYS[5], now, id)\n"
    "else\n"
    "  if outcome == 'free' and r.a > 0 then r.a = r.a - 1 end\n"
    "  r.s = 1; r.na = nxt\n"
    "  redis.call('ZADD', KEYS[1], nxt, id)\n"
    "end\n"
    "redis.call('HSET', KEYS[2], id, cjson.encode(r))\n"
    "return {r.s, r.ca or 0}\n";

const char act_lua_replay[] =
    "local now = tonumber(ARGV[1])\n"
    "local ids = {}\n"
    "if #ARGV > 1 then\n"
    "  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end\n"
    "else\n"
    "  ids = redis.call('ZRANGE', KEYS[5], 0, -1)\n"
    "end\n"
    "local n = 0\n"
    "for _, id in ipairs(ids) do\n"
    "  local raw = redis.call('HGET', KEYS[2], id)\n"
    "  if raw and redis.call('ZREM', KEYS[5], id) == 1 then\n"
    "    local r = cjson.decode(raw)\n"
    "    r.s = 1; r.a = 0; r.na = now; r.ua = now\n"
    "    redis.call('HSET', KEYS[2], id, cjson.encode(r))\n"
    "    redis.call('ZADD', KEYS[1], now, id)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

const char act_lua_list[] =
    "local z = ARGV[1] == 'dead' and KEYS[5] or KEYS[4]\n"
    "local off, cnt = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local ids = redis.call('ZREVRANGE', z, off, off + cnt - 1)\n"
    "local out = {redis.call('ZCARD', z)}\n"
    "for _, id in ipairs(ids) do\n"
    "  local raw = redis.call('HGET', KEYS[2], id)\n"
    "  if raw then out[#out + 1] = id; out[#out + 1] = raw end\n"
    "end\n"
    "return out\n";
