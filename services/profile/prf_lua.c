/* prf_lua: the Lua scripts that apply events, fold merged profiles and read
 * profiles in Redis, one script run per profile (see prf_fold.h for the
 * rules they mirror and docs/profile.md for the key layout).
 *
 * Every script takes the nine keys of one profile (prf_codec.h's prf_keys,
 * all under one hash tag, so one cluster slot) and never touches another
 * profile. Numbers that must stay exact (event times in ms, up to 15
 * digits) are carried as the strings C wrote and only compared through
 * tonumber(), never formatted by Lua, whose tostring keeps 14 digits. */
#include "prf_lua.h"

/* Helpers every script shares: the stamp order, the state accumulated
 * across one run, the per-structure merge rules, and the snapshot
 * reader/writer. */
#define PRF_LUA_PRELUDE \
    "-- keys of one profile, all in one hash slot\n" \
    "local MAIN, TRAITS, TRAIT_TS, COUNTS, CHANNELS, TIMELINE, IDS, SEEN, FOLDED = 1, 2, 3, 4, 5, 6, 7, 8, 9\n" \
    "\n" \
    "-- byte order: Lua's own string compare uses strcoll, which a locale changes\n" \
    "local function bytes_lt(a, b)\n" \
    "  if a == b then return false end\n" \
    "  for i = 1, math.min(#a, #b) do\n" \
    "    local x, y = string.byte(a, i), string.byte(b, i)\n" \
    "    if x ~= y then return x < y end\n" \
    "  end\n" \
    "  return #a < #b\n" \
    "end\n" \
    "\n" \
    "-- stamp (ta, ma) beats (tb, mb): later time, then greater message id\n" \
    "local function stamp_gt(ta, ma, tb, mb)\n" \
    "  ta, tb = tonumber(ta), tonumber(tb)\n" \
    "  if ta ~= tb then return ta > tb end\n" \
    "  return bytes_lt(mb, ma)\n" \
    "end\n" \
    "\n" \
    "-- main-hash scalars and counts are accumulated and written once\n" \
    "local function load_state()\n" \
    "  local fl = redis.call('HMGET', KEYS[MAIN], 'first_seen', 'last_seen')\n" \
    "  return { first = fl[1], last = fl[2], total = 0, revenue = 0, counts = {} }\n" \
    "end\n" \
    "\n" \
    "local function see(st, ts)\n" \
    "  if ts == '' then return end\n" \
    "  if not st.first or tonumber(ts) < tonumber(st.first) then st.first = ts end\n" \
    "  if not st.last or tonumber(ts) > tonumber(st.last) then st.last = ts end\n" \
    "end\n" \
    "\n" \
    "local function put_trait(k, json, ts, mid)\n" \
    "  local cur = redis.call('HGET', KEYS[TRAIT_TS], k)\n" \
    "  if cur then\n" \
    "    local p = string.find(cur, ':', 1, true)\n" \
    "    if not stamp_gt(ts, mid, string.sub(cur, 1, p - 1), string.sub(cur, p + 1)) then return end\n" \
    "  end\n" \
    "  redis.call('HSET', KEYS[TRAITS], k, json)\n" \
    "  redis.call('HSET', KEYS[TRAIT_TS], k, ts .. ':' .. mid)\n" \
    "end\n" \
    "\n" \
    "-- channel value: <ts>:<#mid>:<mid><event>\n" \
    "local function put_channel(ch, ts, mid, ev)\n" \
    "  local cur = redis.call('HGET', KEYS[CHANNELS], ch)\n" \
    "  if cur then\n" \
    "    local p1 = string.find(cur, ':', 1, true)\n" \
    "    local p2 = string.find(cur, ':', p1 + 1, true)\n" \
    "    local ml = tonumber(string.sub(cur, p1 + 1, p2 - 1))\n" \
    "    if not stamp_gt(ts, mid, string.sub(cur, 1, p1 - 1), string.sub(cur, p2 + 1, p2 + ml)) then return end\n" \
    "  end\n" \
    "  redis.call('HSET', KEYS[CHANNELS], ch, ts .. ':' .. #mid .. ':' .. mid .. ev)\n" \
    "end\n" \
    "\n" \
    "-- merges snapshot s (the layout of read_snapshot) into this profile\n" \
    "local function merge_into(st, s)\n" \
    "  st.total = st.total + tonumber(s.total)\n" \
    "  st.revenue = st.revenue + tonumber(s.revenue)\n" \
    "  see(st, s.first)\n" \
    "  see(st, s.last)\n" \
    "  for _, t in ipairs(s.traits) do put_trait(t[1], t[2], t[3], t[4]) end\n" \
    "  for _, c in ipairs(s.counts) do st.counts[c[1]] = (st.counts[c[1]] or 0) + tonumber(c[2]) end\n" \
    "  for _, c in ipairs(s.channels) do put_channel(c[1], c[2], c[3], c[4]) end\n" \
    "  for _, e in ipairs(s.timeline) do redis.call('ZADD', KEYS[TIMELINE], 'NX', e[2], e[1]) end\n" \
    "  for _, id in ipairs(s.ids) do redis.call('SADD', KEYS[IDS], id) end\n" \
    "  for _, e in ipairs(s.seen) do redis.call('ZADD', KEYS[SEEN], 'GT', e[2], e[1]) end\n" \
    "  for _, f in ipairs(s.folded) do redis.call('SADD', KEYS[FOLDED], f) end\n" \
    "end\n" \
    "\n" \
    "local function save_state(st, tl_len)\n" \
    "  redis.call('HINCRBY', KEYS[MAIN], 'total', st.total)\n" \
    "  if st.revenue ~= 0 then\n" \
    "    redis.call('HINCRBYFLOAT', KEYS[MAIN], 'revenue', string.format('%.17g', st.revenue))\n" \
    "  end\n" \
    "  if st.first then redis.call('HSET', KEYS[MAIN], 'first_seen', st.first, 'last_seen', st.last) end\n" \
    "  for name, n in pairs(st.counts) do redis.call('HINCRBY', KEYS[COUNTS], name, n) end\n" \
    "  redis.call('ZREMRANGEBYRANK', KEYS[TIMELINE], 0, -(tl_len + 1))\n" \
    "end\n" \
    "\n" \
    "-- reads n groups of w args from ARGV[i..]; returns the groups and next i\n" \
    "local function groups(i, w)\n" \
    "  local n, out = tonumber(ARGV[i]), {}\n" \
    "  i = i + 1\n" \
    "  for g = 1, n do\n" \
    "    local row = {}\n" \
    "    for j = 1, w do row[j] = ARGV[i + j - 1] end\n" \
    "    out[g] = row\n" \
    "    i = i + w\n" \
    "  end\n" \
    "  return out, i\n" \
    "end\n" \
    "\n" \
    "local function singles(i)\n" \
    "  local rows, ni = groups(i, 1)\n" \
    "  local out = {}\n" \
    "  for g, r in ipairs(rows) do out[g] = r[1] end\n" \
    "  return out, ni\n" \
    "end\n" \
    "\n" \
    "-- the snapshot layout in ARGV (prf_codec.c writes it)\n" \
    "local function parse_snapshot(i)\n" \
    "  local s = { total = ARGV[i], first = ARGV[i + 1], last = ARGV[i + 2], revenue = ARGV[i + 3] }\n" \
    "  i = i + 4\n" \
    "  s.traits, i = groups(i, 4)\n" \
    "  s.counts, i = groups(i, 2)\n" \
    "  s.channels, i = groups(i, 4)\n" \
    "  s.timeline, i = groups(i, 2)\n" \
    "  s.ids, i = singles(i)\n" \
    "  s.seen, i = groups(i, 2)\n" \
    "  s.folded, i = singles(i)\n" \
    "  return s, i\n" \
    "end\n" \
    "\n" \
    "-- the profile as one reply: status, survivor, then each structure\n" \
    "local function read_snapshot(status, into, tl_stop, with_seen)\n" \
    "  local seen = {}\n" \
    "  if with_seen then seen = redis.call('ZRANGE', KEYS[SEEN], 0, -1, 'WITHSCORES') end\n" \
    "  return { status, into or '',\n" \
    "    redis.call('HGETALL', KEYS[MAIN]),\n" \
    "    redis.call('HGETALL', KEYS[TRAITS]),\n" \
    "    redis.call('HGETALL', KEYS[TRAIT_TS]),\n" \
    "    redis.call('HGETALL', KEYS[COUNTS]),\n" \
    "    redis.call('HGETALL', KEYS[CHANNELS]),\n" \
    "    redis.call('ZREVRANGE', KEYS[TIMELINE], 0, tl_stop, 'WITHSCORES'),\n" \
    "    redis.call('SMEMBERS', KEYS[IDS]),\n" \
    "    seen,\n" \
    "    redis.call('SMEMBERS', KEYS[FOLDED]) }\n" \
    "end\n"

/* ApplyEvents, one profile's share of a batch. */
const char prf_lua_apply[] = PRF_LUA_PRELUDE
    "-- apply: ARGV = now, seen cutoff, timeline length, n, then n events of\n"
    "-- mid, ts, count name, channel, timeline member, revenue ('' = none),\n"
    "-- n traits, (key, json)*, n ids, id*\n"
    "local now, cutoff, tl_len, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if into then\n"
    "  -- a tombstone is frozen until folded: what it has seen is a duplicate\n"
    "  -- (the fold hands it over), the rest goes on to the survivor\n"
    "  local dup, i = {}, 5\n"
    "  for e = 1, n do\n"
    "    local sc = redis.call('ZSCORE', KEYS[SEEN], ARGV[i])\n"
    "    dup[e] = (sc and tonumber(sc) >= tonumber(cutoff)) and 1 or 0\n"
    "    local _\n"
    "    _, i = groups(i + 6, 2)\n"
    "    _, i = singles(i)\n"
    "  end\n"
    "  return { 'redirect', into, dup }\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[SEEN], '-inf', '(' .. cutoff)\n"
    "local st = load_state()\n"
    "local applied, dups, i = 0, 0, 5\n"
    "for _ = 1, n do\n"
    "  local mid, ts, name, ch, member, rev = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]\n"
    "  local kv, ids\n"
    "  kv, i = groups(i + 6, 2)\n"
    "  ids, i = singles(i)\n"
    "  if redis.call('ZSCORE', KEYS[SEEN], mid) then\n"
    "    dups = dups + 1\n"
    "  else\n"
    "    local s = { total = 1, first = ts, last = ts, revenue = (rev == '' and 0 or rev),\n"
    "      traits = {}, counts = { { name, 1 } }, channels = {}, timeline = { { member, ts } },\n"
    "      ids = ids, seen = { { mid, now } }, folded = {} }\n"
    "    for t, p in ipairs(kv) do s.traits[t] = { p[1], p[2], ts, mid } end\n"
    "    if ch ~= '' then s.channels[1] = { ch, ts, mid, name } end\n"
    "    merge_into(st, s)\n"
    "    applied = applied + 1\n"
    "  end\n"
    "end\n"
    "save_state(st, tl_len)\n"
    "return { 'ok', applied, dups }\n";

/* Merge step 1, on the loser. */
const char prf_lua_tombstone[] = PRF_LUA_PRELUDE
    "-- merge step 1, on the loser: ARGV = survivor. Marks the tombstone unless\n"
    "-- one exists and returns the full snapshot with the survivor it names.\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if not into then\n"
    "  into = ARGV[1]\n"
    "  redis.call('HSET', KEYS[MAIN], 'merged_into', into)\n"
    "end\n"
    "return read_snapshot('ok', into, -1, true)\n";

/* Merge step 2, on the survivor. */
const char prf_lua_fold[] = PRF_LUA_PRELUDE
    "-- merge step 2, on the survivor: ARGV = loser, seen cutoff, timeline\n"
    "-- length, then the loser's snapshot. Exactly once per loser: the folded set\n"
    "-- is checked and extended in the same script as the merge.\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if into then return { 'redirect', into } end\n"
    "if redis.call('SISMEMBER', KEYS[FOLDED], ARGV[1]) == 1 then return { 'already' } end\n"
    "local st = load_state()\n"
    "merge_into(st, (parse_snapshot(4)))\n"
    "redis.call('SADD', KEYS[FOLDED], ARGV[1])\n"
    "save_state(st, tonumber(ARGV[3]))\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[SEEN], '-inf', '(' .. ARGV[2])\n"
    "return { 'folded' }\n";

/* Merge step 3, on the loser. */
const char prf_lua_strip[] = PRF_LUA_PRELUDE
    "-- merge step 3, on the loser: drops its data, keeps the tombstone.\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if not into then return 0 end\n"
    "for k = TRAITS, FOLDED do redis.call('DEL', KEYS[k]) end\n"
    "redis.call('DEL', KEYS[MAIN])\n"
    "redis.call('HSET', KEYS[MAIN], 'merged_into', into)\n"
    "return 1\n";

/* GetProfile's read (read-only). */
const char prf_lua_read[] = PRF_LUA_PRELUDE
    "-- GetProfile: ARGV = last timeline index (-1: all), with seen (0/1).\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if into then return { 'redirect', into } end\n"
    "if redis.call('EXISTS', KEYS[MAIN]) == 0 then return { 'missing' } end\n"
    "return read_snapshot('ok', nil, tonumber(ARGV[1]), ARGV[2] == '1')\n";
