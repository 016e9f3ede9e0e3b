/* prf_lua: the Lua scripts that apply events to a profile and fold merged
 * profiles in Redis, one script run per profile (see prf_fold.h for the
 * rules they mirror and prf_codec.h for the key layout).
 *
 * Every script takes the five keys of one profile (prf_keys, all under one
 * hash tag, so one cluster slot) and never touches another profile. Numbers
 * that must stay exact (event times in ms, up to 15 digits) are carried as
 * the strings C wrote and only compared through tonumber(), never formatted
 * by Lua, whose tostring keeps 14 digits. */
#include "prf_lua.h"

/* Helpers every script shares: the key positions, the stamp order, the
 * chunked command and the channel value reader. */
#define PRF_LUA_PRELUDE \
    "-- keys of one profile, all in one hash slot; the main hash holds the\n" \
    "-- scalars and, by field prefix, traits (t:), counts (n:), channels (c:),\n" \
    "-- identifiers (i:) and folded master ids (f:); DAILY holds the per-day\n" \
    "-- buckets n:<day>:<count name> and r:<day>\n" \
    "local MAIN, TRAIT_TS, TIMELINE, SEEN, DAILY = 1, 2, 3, 4, 5\n" \
    "-- arguments per command built with unpack, whose stack is bounded\n" \
    "local CHUNK = 1000\n" \
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
    "-- cmd key [opt] list..., opt a single word or nil, in chunks that keep\n" \
    "-- groups of `width` together; returns the replies of all chunks\n" \
    "-- concatenated (for reads)\n" \
    "local function bulk(cmd, key, opt, list, width)\n" \
    "  if #list <= CHUNK then\n" \
    "    -- the common case: one command, its reply as is\n" \
    "    if opt then return redis.call(cmd, key, opt, unpack(list)) end\n" \
    "    return redis.call(cmd, key, unpack(list))\n" \
    "  end\n" \
    "  local out, step = {}, CHUNK - CHUNK % width\n" \
    "  for i = 1, #list, step do\n" \
    "    local args, na = {}, 0\n" \
    "    if opt then args[1], na = opt, 1 end\n" \
    "    for j = i, math.min(i + step - 1, #list) do args[na + j - i + 1] = list[j] end\n" \
    "    local r = redis.call(cmd, key, unpack(args))\n" \
    "    if type(r) == 'table' then\n" \
    "      for j = 1, #args - na do out[#out + 1] = r[j] end\n" \
    "    end\n" \
    "  end\n" \
    "  return out\n" \
    "end\n" \
    "\n" \
    "-- \"<ts>:<#mid>:<mid><event>\" -> ts, mid\n" \
    "local function channel_stamp(v)\n" \
    "  local p1 = string.find(v, ':', 1, true)\n" \
    "  local p2 = string.find(v, ':', p1 + 1, true)\n" \
    "  local ml = tonumber(string.sub(v, p1 + 1, p2 - 1))\n" \
    "  return string.sub(v, 1, p1 - 1), string.sub(v, p2 + 1, p2 + ml)\n" \
    "end\n" \
    "\n" \
    "-- positions in a main-hash read of these fields first (HEAD below)\n" \
    "local F_INTO, F_TOTAL, F_REVENUE, F_FIRST, F_LAST = 1, 2, 3, 4, 5\n"

/* The daily buckets' retention, as text spliced into the scripts that write
 * them (no per-run closure in the apply script). PRF_LUA_DAY_CUT(t) is
 * prf_daily_cut of the day of event time t (a number), with locals `keep`
 * and `step` in scope; exact, since |t| < 2^53 and floor(t / day) is far
 * from any rounding. PRF_LUA_DAILY_TRIM drops the buckets of the days
 * before local `cut`: one scan of the hash, run only when the cut moved,
 * i.e. once per step of the profile's newest day. Days are only ever
 * formatted by C; the scripts parse them only to compare. */
#define PRF_LUA_DAY_CUT(t) \
    "(math.floor(math.floor(" t " / 86400000) / step) * step - keep + 1)"
#define PRF_LUA_DAILY_TRIM \
    "local del = {}\n" \
    "for _, f in ipairs(redis.call('HKEYS', KEYS[DAILY])) do\n" \
    "  local d = tonumber(string.match(f, '^[nr]:(%-?%d+)'))\n" \
    "  if d and d < cut then del[#del + 1] = f end\n" \
    "end\n" \
    "if #del > 0 then bulk('HDEL', KEYS[DAILY], nil, del, 1) end\n"

/* What the merge scripts add: the merge rule itself and the snapshot
 * reader. The apply script folds in place and leaves this out, since every
 * function defined here is a closure built on each run. */
#define PRF_LUA_MERGE \
    "local function earlier(a, b) return (not b) or tonumber(a) < tonumber(b) end\n" \
    "local function later(a, b) return (not b) or tonumber(a) > tonumber(b) end\n" \
    "\n" \
    "-- main-hash fields read before a merge: these first, at fixed positions,\n" \
    "-- then one per count and channel, whose positions a map gives\n" \
    "local HEAD = { 'merged_into', 'total', 'revenue', 'first_seen', 'last_seen' }\n" \
    "\n" \
    "-- adds field f to the read unless there; at maps field -> position\n" \
    "local function want(fields, at, f)\n" \
    "  if not at[f] then\n" \
    "    fields[#fields + 1] = f\n" \
    "    at[f] = #fields\n" \
    "  end\n" \
    "end\n" \
    "\n" \
    "-- the main-hash fields merge(s) reads, and their positions\n" \
    "local function merge_fields(s)\n" \
    "  local fields, at = { unpack(HEAD) }, {}\n" \
    "  for _, c in ipairs(s.counts) do want(fields, at, 'n:' .. c[1]) end\n" \
    "  for _, c in ipairs(s.channels) do want(fields, at, 'c:' .. c[1]) end\n" \
    "  return fields, at\n" \
    "end\n" \
    "\n" \
    "-- adds s's daily buckets from the cut on (s.keep, s.step: retention);\n" \
    "-- old is this profile's last seen before the merge (false: none)\n" \
    "local function merge_daily(s, old)\n" \
    "  local keep, step, cut = s.keep, s.step, nil\n" \
    "  old = old and tonumber(old)\n" \
    "  local new = old\n" \
    "  if s.last ~= '' and ((not new) or tonumber(s.last) > new) then new = tonumber(s.last) end\n" \
    "  if not new then return end\n" \
    "  if keep > 0 then\n" \
    "    cut = " PRF_LUA_DAY_CUT("new") "\n" \
    "    if old and cut > " PRF_LUA_DAY_CUT("old") " then\n" \
    PRF_LUA_DAILY_TRIM \
    "    end\n" \
    "  end\n" \
    "  local f, v = {}, {}\n" \
    "  for _, c in ipairs(s.dcounts) do\n" \
    "    if not cut or tonumber(c[1]) >= cut then\n" \
    "      f[#f + 1] = 'n:' .. c[1] .. ':' .. c[2]\n" \
    "      v[#v + 1] = tonumber(c[3])\n" \
    "    end\n" \
    "  end\n" \
    "  if #f > 0 then\n" \
    "    local have, w = bulk('HMGET', KEYS[DAILY], nil, f, 1), {}\n" \
    "    for j = 1, #f do\n" \
    "      w[2 * j - 1] = f[j]\n" \
    "      w[2 * j] = string.format('%d', tonumber(have[j] or 0) + v[j])\n" \
    "    end\n" \
    "    bulk('HSET', KEYS[DAILY], nil, w, 2)\n" \
    "  end\n" \
    "  for _, r in ipairs(s.drev) do\n" \
    "    if not cut or tonumber(r[1]) >= cut then\n" \
    "      -- pcall: a sum past a double's range keeps the day's old value\n" \
    "      redis.pcall('HINCRBYFLOAT', KEYS[DAILY], 'r:' .. r[1], r[2])\n" \
    "    end\n" \
    "  end\n" \
    "end\n" \
    "\n" \
    "-- merges s into this profile: cur is the HMGET of at least the fields\n" \
    "-- merge_fields(s) names (false when absent), at their positions; decides\n" \
    "-- in Lua, writes once per structure. s holds total, first, last ('' for\n" \
    "-- none), revenue, traits {k, json, ts, mid}, counts {name, n}, channels\n" \
    "-- {ch, ts, mid, event}, timeline {member, ts}, ids, seen {mid, at},\n" \
    "-- folded, dcounts {day, name, n}, drev {day, revenue}, keep, step;\n" \
    "-- names unique within each list.\n" \
    "local function merge(s, tl_len, cur, at)\n" \
    "  local total = tonumber(cur[F_TOTAL] or 0) + tonumber(s.total)\n" \
    "  local w = { 'total', string.format('%d', total) }\n" \
    "  local rev = tonumber(s.revenue)\n" \
    "  if rev ~= 0 then\n" \
    "    w[#w + 1] = 'revenue'\n" \
    "    w[#w + 1] = string.format('%.17g', tonumber(cur[F_REVENUE] or 0) + rev)\n" \
    "  end\n" \
    "  if s.first ~= '' and earlier(s.first, cur[F_FIRST]) then\n" \
    "    w[#w + 1] = 'first_seen'\n" \
    "    w[#w + 1] = s.first\n" \
    "  end\n" \
    "  if s.last ~= '' and later(s.last, cur[F_LAST]) then\n" \
    "    w[#w + 1] = 'last_seen'\n" \
    "    w[#w + 1] = s.last\n" \
    "  end\n" \
    "  for _, c in ipairs(s.counts) do\n" \
    "    local f = 'n:' .. c[1]\n" \
    "    w[#w + 1] = f\n" \
    "    w[#w + 1] = string.format('%d', tonumber(cur[at[f]] or 0) + tonumber(c[2]))\n" \
    "  end\n" \
    "  for _, c in ipairs(s.channels) do\n" \
    "    local old = cur[at['c:' .. c[1]]]\n" \
    "    local keep = false\n" \
    "    if old then\n" \
    "      local ots, omid = channel_stamp(old)\n" \
    "      keep = not stamp_gt(c[2], c[3], ots, omid)\n" \
    "    end\n" \
    "    if not keep then\n" \
    "      w[#w + 1] = 'c:' .. c[1]\n" \
    "      w[#w + 1] = c[2] .. ':' .. #c[3] .. ':' .. c[3] .. c[4]\n" \
    "    end\n" \
    "  end\n" \
    "  local wts = {}\n" \
    "  if #s.traits > 0 then\n" \
    "    local tkeys = {}\n" \
    "    for t, tr in ipairs(s.traits) do tkeys[t] = tr[1] end\n" \
    "    local stamps = bulk('HMGET', KEYS[TRAIT_TS], nil, tkeys, 1)\n" \
    "    for t, tr in ipairs(s.traits) do\n" \
    "      local old, win = stamps[t], true\n" \
    "      if old then\n" \
    "        local p = string.find(old, ':', 1, true)\n" \
    "        win = stamp_gt(tr[3], tr[4], string.sub(old, 1, p - 1), string.sub(old, p + 1))\n" \
    "      end\n" \
    "      if win then\n" \
    "        w[#w + 1] = 't:' .. tr[1]\n" \
    "        w[#w + 1] = tr[2]\n" \
    "        wts[#wts + 1] = tr[1]\n" \
    "        wts[#wts + 1] = tr[3] .. ':' .. tr[4]\n" \
    "      end\n" \
    "    end\n" \
    "  end\n" \
    "  for _, id in ipairs(s.ids) do\n" \
    "    w[#w + 1] = 'i:' .. id\n" \
    "    w[#w + 1] = '1'\n" \
    "  end\n" \
    "  for _, f in ipairs(s.folded) do\n" \
    "    w[#w + 1] = 'f:' .. f\n" \
    "    w[#w + 1] = '1'\n" \
    "  end\n" \
    "  bulk('HSET', KEYS[MAIN], nil, w, 2)\n" \
    "  if #wts > 0 then bulk('HSET', KEYS[TRAIT_TS], nil, wts, 2) end\n" \
    "  local tl = {}\n" \
    "  for _, e in ipairs(s.timeline) do\n" \
    "    tl[#tl + 1] = e[2]\n" \
    "    tl[#tl + 1] = e[1]\n" \
    "  end\n" \
    "  if #tl > 0 then bulk('ZADD', KEYS[TIMELINE], 'NX', tl, 2) end\n" \
    "  -- every timeline member is an event counted in total, so a profile\n" \
    "  -- whose total fits has nothing to trim\n" \
    "  if total > tl_len then\n" \
    "    redis.call('ZREMRANGEBYRANK', KEYS[TIMELINE], 0, -(tl_len + 1))\n" \
    "  end\n" \
    "  local sn = {}\n" \
    "  for _, e in ipairs(s.seen) do\n" \
    "    sn[#sn + 1] = e[2]\n" \
    "    sn[#sn + 1] = e[1]\n" \
    "  end\n" \
    "  if #sn > 0 then bulk('ZADD', KEYS[SEEN], 'GT', sn, 2) end\n" \
    "  merge_daily(s, cur[F_LAST])\n" \
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
    "end\n"

/* ApplyEvents, one profile's share of a batch. */
const char prf_lua_apply[] = PRF_LUA_PRELUDE
    "-- apply: ARGV = now, seen cutoff, timeline length, n, daily retention\n"
    "-- (days, 0 = off), daily trim step, then n events of mid, ts, count name,\n"
    "-- channel, timeline member, revenue ('' = none), day, n traits,\n"
    "-- (key, json)*, n ids, id*\n"
    "-- Events stay in ARGV (at[e] is the index of event e's message id) and the\n"
    "-- delta lives in a few per-script tables: no table per event.\n"
    "local now, cutoff, tl_len, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local keep, step = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local cutn = tonumber(cutoff)\n"
    "local at, mids, i = {}, {}, 7\n"
    "for e = 1, n do\n"
    "  at[e], mids[e] = i, ARGV[i]\n"
    "  i = i + 8 + 2 * tonumber(ARGV[i + 7])\n"
    "  i = i + 1 + tonumber(ARGV[i])\n"
    "end\n"
    "-- read before any write: a score under the cutoff is what the window drop\n"
    "-- below removes, so it does not count as seen\n"
    "local sc = bulk('ZMSCORE', KEYS[SEEN], nil, mids, 1)\n"
    "local tsn = {}\n"
    "-- event e's stamp beats event f's (times already numbers)\n"
    "local function beats(e, f)\n"
    "  local a, b = tsn[e], tsn[f]\n"
    "  if a ~= b then return a > b end\n"
    "  return bytes_lt(mids[f], mids[e])\n"
    "end\n"
    "-- the fresh events folded into one delta (the rules are order-free); the\n"
    "-- main-hash read gets the tombstone mark and the fresh events' fields\n"
    "local fields, nf = { 'merged_into', 'total', 'revenue', 'first_seen', 'last_seen' }, 5\n"
    "local cnt, npos, names, cbest, cpos, chans = {}, {}, {}, {}, {}, {}\n"
    "local tbest, tev, tkeys, idset, taken = {}, {}, {}, {}, {}\n"
    "local w, nw, tl, nt, fresh, nfresh, dups = {}, 0, {}, 0, {}, 0, 0\n"
    "local rev, first, firstn, last, lastn = 0, nil, 0, nil, 0\n"
    "for e = 1, n do\n"
    "  local k, mid, s = at[e], mids[e], sc[e]\n"
    "  if (s and tonumber(s) >= cutn) or taken[mid] then\n"
    "    dups = dups + 1\n"
    "  else\n"
    "    taken[mid] = true\n"
    "    nfresh = nfresh + 1\n"
    "    fresh[nfresh] = e\n"
    "    local ts, name, ch, r = ARGV[k + 1], ARGV[k + 2], ARGV[k + 3], ARGV[k + 5]\n"
    "    local t = tonumber(ts)\n"
    "    tsn[e] = t\n"
    "    if r ~= '' then rev = rev + tonumber(r) end\n"
    "    if not first or t < firstn then first, firstn = ts, t end\n"
    "    if not last or t > lastn then last, lastn = ts, t end\n"
    "    local c = cnt[name]\n"
    "    if c then\n"
    "      cnt[name] = c + 1\n"
    "    else\n"
    "      cnt[name] = 1\n"
    "      nf = nf + 1\n"
    "      fields[nf] = 'n:' .. name\n"
    "      npos[name] = nf\n"
    "      names[#names + 1] = name\n"
    "    end\n"
    "    if ch ~= '' then\n"
    "      local b = cbest[ch]\n"
    "      if not b then\n"
    "        cbest[ch] = e\n"
    "        nf = nf + 1\n"
    "        fields[nf] = 'c:' .. ch\n"
    "        cpos[ch] = nf\n"
    "        chans[#chans + 1] = ch\n"
    "      elseif beats(e, b) then\n"
    "        cbest[ch] = e\n"
    "      end\n"
    "    end\n"
    "    local kv = k + 8\n"
    "    local kv_end = kv + 2 * tonumber(ARGV[k + 7])\n"
    "    for j = kv, kv_end - 2, 2 do\n"
    "      local key = ARGV[j]\n"
    "      local b = tev[key]\n"
    "      if not b then\n"
    "        tbest[key], tev[key] = j, e\n"
    "        tkeys[#tkeys + 1] = key\n"
    "      elseif beats(e, b) then\n"
    "        tbest[key], tev[key] = j, e\n"
    "      end\n"
    "    end\n"
    "    for j = kv_end + 1, kv_end + tonumber(ARGV[kv_end]) do\n"
    "      local id = ARGV[j]\n"
    "      if not idset[id] then\n"
    "        idset[id] = true\n"
    "        w[nw + 1] = 'i:' .. id\n"
    "        w[nw + 2] = '1'\n"
    "        nw = nw + 2\n"
    "      end\n"
    "    end\n"
    "    tl[nt + 1] = ts\n"
    "    tl[nt + 2] = ARGV[k + 4]\n"
    "    nt = nt + 2\n"
    "  end\n"
    "end\n"
    "local cur = bulk('HMGET', KEYS[MAIN], nil, fields, 1)\n"
    "local into = cur[F_INTO]\n"
    "if into then\n"
    "  -- a tombstone is frozen until folded: what it has seen is a duplicate\n"
    "  -- (the fold hands it over), the rest goes on to the survivor\n"
    "  local dup = {}\n"
    "  for e = 1, n do dup[e] = (sc[e] and tonumber(sc[e]) >= cutn) and 1 or 0 end\n"
    "  return { 'redirect', into, dup }\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[SEEN], '-inf', '(' .. cutoff)\n"
    "local total = tonumber(cur[F_TOTAL] or 0) + nfresh\n"
    "w[nw + 1] = 'total'\n"
    "w[nw + 2] = string.format('%d', total)\n"
    "nw = nw + 2\n"
    "if rev ~= 0 then\n"
    "  w[nw + 1] = 'revenue'\n"
    "  w[nw + 2] = string.format('%.17g', tonumber(cur[F_REVENUE] or 0) + rev)\n"
    "  nw = nw + 2\n"
    "end\n"
    "if first and ((not cur[F_FIRST]) or firstn < tonumber(cur[F_FIRST])) then\n"
    "  w[nw + 1] = 'first_seen'\n"
    "  w[nw + 2] = first\n"
    "  nw = nw + 2\n"
    "end\n"
    "if last and ((not cur[F_LAST]) or lastn > tonumber(cur[F_LAST])) then\n"
    "  w[nw + 1] = 'last_seen'\n"
    "  w[nw + 2] = last\n"
    "  nw = nw + 2\n"
    "end\n"
    "for _, name in ipairs(names) do\n"
    "  local p = npos[name]\n"
    "  w[nw + 1] = fields[p]\n"
    "  w[nw + 2] = string.format('%d', tonumber(cur[p] or 0) + cnt[name])\n"
    "  nw = nw + 2\n"
    "end\n"
    "for _, ch in ipairs(chans) do\n"
    "  local p, e = cpos[ch], cbest[ch]\n"
    "  local k, old, keep = at[e], cur[p], false\n"
    "  if old then\n"
    "    local ots, omid = channel_stamp(old)\n"
    "    keep = not stamp_gt(ARGV[k + 1], mids[e], ots, omid)\n"
    "  end\n"
    "  if not keep then\n"
    "    local mid = mids[e]\n"
    "    w[nw + 1] = fields[p]\n"
    "    w[nw + 2] = ARGV[k + 1] .. ':' .. #mid .. ':' .. mid .. ARGV[k + 2]\n"
    "    nw = nw + 2\n"
    "  end\n"
    "end\n"
    "if #tkeys > 0 then\n"
    "  local stamps, wts, nts = bulk('HMGET', KEYS[TRAIT_TS], nil, tkeys, 1), {}, 0\n"
    "  for t, key in ipairs(tkeys) do\n"
    "    local e = tev[key]\n"
    "    local ts, mid, old, win = ARGV[at[e] + 1], mids[e], stamps[t], true\n"
    "    if old then\n"
    "      local p = string.find(old, ':', 1, true)\n"
    "      win = stamp_gt(ts, mid, string.sub(old, 1, p - 1), string.sub(old, p + 1))\n"
    "    end\n"
    "    if win then\n"
    "      w[nw + 1] = 't:' .. key\n"
    "      w[nw + 2] = ARGV[tbest[key] + 1]\n"
    "      nw = nw + 2\n"
    "      wts[nts + 1] = key\n"
    "      wts[nts + 2] = ts .. ':' .. mid\n"
    "      nts = nts + 2\n"
    "    end\n"
    "  end\n"
    "  if nts > 0 then bulk('HSET', KEYS[TRAIT_TS], nil, wts, 2) end\n"
    "end\n"
    "bulk('HSET', KEYS[MAIN], nil, w, 2)\n"
    "if nt > 0 then\n"
    "  bulk('ZADD', KEYS[TIMELINE], 'NX', tl, 2)\n"
    "end\n"
    "-- every timeline member is an event counted in total, so a profile whose\n"
    "-- total fits has nothing to trim\n"
    "if total > tl_len then\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[TIMELINE], 0, -(tl_len + 1))\n"
    "end\n"
    "if nt > 0 then\n"
    "  -- the same list, now as seen entries: (applied at, message id)\n"
    "  for f = 1, nfresh do\n"
    "    tl[2 * f - 1] = now\n"
    "    tl[2 * f] = mids[fresh[f]]\n"
    "  end\n"
    "  bulk('ZADD', KEYS[SEEN], 'GT', tl, 2)\n"
    "end\n"
    "if nfresh > 0 then\n"
    "  -- daily buckets of the fresh events from the cut on: one HINCRBY per\n"
    "  -- (day, name), one HINCRBYFLOAT per day with revenue (pairs: the\n"
    "  -- increments commute, so their order does not matter)\n"
    "  local cutms\n"
    "  if keep > 0 then\n"
    "    local old = cur[F_LAST] and tonumber(cur[F_LAST])\n"
    "    local cut = " PRF_LUA_DAY_CUT("((old and old > lastn) and old or lastn)") "\n"
    "    -- the cut moves only with the newest event time\n"
    "    if old and lastn > old and cut > " PRF_LUA_DAY_CUT("old") " then\n"
    PRF_LUA_DAILY_TRIM
    "    end\n"
    "    cutms = cut * 86400000\n"
    "  end\n"
    "  local dn, dr = {}, {}\n"
    "  for f = 1, nfresh do\n"
    "    local e = fresh[f]\n"
    "    if not cutms or tsn[e] >= cutms then\n"
    "      local k = at[e]\n"
    "      local day, r = ARGV[k + 6], ARGV[k + 5]\n"
    "      local fld = 'n:' .. day .. ':' .. ARGV[k + 2]\n"
    "      dn[fld] = (dn[fld] or 0) + 1\n"
    "      if r ~= '' then\n"
    "        fld = 'r:' .. day\n"
    "        dr[fld] = (dr[fld] or 0) + tonumber(r)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  for fld, c in pairs(dn) do redis.call('HINCRBY', KEYS[DAILY], fld, c) end\n"
    "  for fld, v in pairs(dr) do\n"
    "    -- pcall: a sum past a double's range keeps the day's old value\n"
    "    redis.pcall('HINCRBYFLOAT', KEYS[DAILY], fld, string.format('%.17g', v))\n"
    "  end\n"
    "end\n"
    "return { 'ok', nfresh, dups }\n";

/* Merge step 1, on the loser. */
const char prf_lua_tombstone[] = PRF_LUA_PRELUDE
    "-- merge step 1, on the loser: ARGV = survivor. Marks the tombstone unless\n"
    "-- one exists, and returns the survivor it names and every structure, in\n"
    "-- key order (prf_profile_load reads them).\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if not into then\n"
    "  into = ARGV[1]\n"
    "  redis.call('HSET', KEYS[MAIN], 'merged_into', into)\n"
    "end\n"
    "return { 'ok', into,\n"
    "  redis.call('HGETALL', KEYS[MAIN]),\n"
    "  redis.call('HGETALL', KEYS[TRAIT_TS]),\n"
    "  redis.call('ZRANGE', KEYS[TIMELINE], 0, -1),\n"
    "  redis.call('ZRANGE', KEYS[SEEN], 0, -1, 'WITHSCORES'),\n"
    "  redis.call('HGETALL', KEYS[DAILY]) }\n";

/* Merge step 2, on the survivor. */
const char prf_lua_fold[] = PRF_LUA_PRELUDE PRF_LUA_MERGE
    "-- merge step 2, on the survivor: ARGV = loser, seen cutoff, timeline\n"
    "-- length, daily retention, daily trim step, then the loser's snapshot.\n"
    "-- Exactly once per loser: the folded fields are checked and extended in\n"
    "-- the same script as the merge.\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if into then return { 'redirect', into } end\n"
    "if redis.call('HEXISTS', KEYS[MAIN], 'f:' .. ARGV[1]) == 1 then return { 'already' } end\n"
    "local i = 6\n"
    "local s = { total = ARGV[i], first = ARGV[i + 1], last = ARGV[i + 2], revenue = ARGV[i + 3] }\n"
    "i = i + 4\n"
    "s.traits, i = groups(i, 4)\n"
    "s.counts, i = groups(i, 2)\n"
    "s.channels, i = groups(i, 4)\n"
    "s.timeline, i = groups(i, 2)\n"
    "s.ids, i = singles(i)\n"
    "s.seen, i = groups(i, 2)\n"
    "s.folded, i = singles(i)\n"
    "s.dcounts, i = groups(i, 3)\n"
    "s.drev, i = groups(i, 2)\n"
    "s.keep, s.step = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "s.folded[#s.folded + 1] = ARGV[1]\n"
    "local fields, at = merge_fields(s)\n"
    "merge(s, tonumber(ARGV[3]), bulk('HMGET', KEYS[MAIN], nil, fields, 1), at)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[SEEN], '-inf', '(' .. ARGV[2])\n"
    "return { 'folded' }\n";

/* Merge step 3, on the loser. */
const char prf_lua_strip[] = PRF_LUA_PRELUDE
    "-- merge step 3, on the loser: drops its data, keeps the tombstone.\n"
    "local into = redis.call('HGET', KEYS[MAIN], 'merged_into')\n"
    "if not into then return 0 end\n"
    "for k = MAIN, DAILY do redis.call('DEL', KEYS[k]) end\n"
    "redis.call('HSET', KEYS[MAIN], 'merged_into', into)\n"
    "return 1\n";
