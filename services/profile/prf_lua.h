/* prf_lua: the Redis Lua scripts of the profile service (prf_lua.c). Each is
 * a complete script for SCRIPT LOAD / EVAL; prf_codec.h builds their keys
 * and arguments and parses their replies. */
#ifndef PRF_LUA_H
#define PRF_LUA_H

/* KEYS: the PRF_KEY_COUNT keys of one profile (prf_keys order) for every
 * script.
 *
 * apply     ARGV: now_ms, seen_cutoff_ms, timeline_len, n, daily retention
 *                 days, daily trim step (prf_args_apply_header), then n
 *                 events (prf_args_add_delta). Reply {"ok", applied, duplicates}
 *                 or, on a tombstone, {"redirect", survivor, flags} where
 *                 flags[i] is 1 when event i is in the tombstone's seen
 *                 record (a duplicate) and 0 when it goes to the survivor.
 * tombstone ARGV: survivor. Reply {"ok", survivor the loser names, then
 *                 one reply per key in key order} (prf_reply_snapshot).
 * fold      ARGV: loser, seen_cutoff_ms, timeline_len, daily retention
 *                 days, daily trim step, snapshot (prf_args_fold). Reply {"folded"}, {"already"} or
 *                 {"redirect", survivor}.
 * strip     ARGV: none. Reply 1 (data dropped) or 0 (not a tombstone).
 *
 * Reads (GetProfile) use plain pipelined commands, not a script
 * (prf_read_cmd_init). */
extern const char prf_lua_apply[];
extern const char prf_lua_tombstone[];
extern const char prf_lua_fold[];
extern const char prf_lua_strip[];

#endif
