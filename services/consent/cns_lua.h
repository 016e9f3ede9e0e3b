/* cns_lua: the Redis Lua scripts of the consent service (cns_lua.c). Every
 * consent change and its audit records are one script, so a change is never
 * stored without its record nor recorded without being stored.
 *
 * change   KEYS: the 4 keys of one profile (cns_keys order).
 *          ARGV: now_ms, action ("set" | "event"), message id ("" for RPC),
 *                seen_cutoff_ms, jurisdiction ("" none), jurisdiction's
 *                time, its actor, require_profile ("1" | "0"), n, the
 *                default jurisdiction (the "before" of a profile's first
 *                jurisdiction change), then 7
 *                per change: field, purpose, channel, time, message id,
 *                actor, entry JSON.
 *          Reply {"redirect", survivor} (the profile is merged away),
 *                {"notfound"} (require_profile and no profile hash),
 *                {"duplicate"} (message id in the seen record, newer than
 *                the cutoff), or {"ok", changed, HGETALL of the consent hash}.
 *          A change is written (and audited) only when its stamp wins
 *          (cns_stamp_wins, mirrored in Lua).
 * fold     KEYS: the 4 keys of the survivor (cns_keys order).
 *          ARGV: now_ms, actor ("merge:<loser>"), context (the merge's
 *                message id), the default jurisdiction, the loser's
 *                jurisdiction ("" none), its time, its message id, n, then 6
 *                per loser entry: field, purpose, channel, time, message id,
 *                entry JSON (the loser's text as stored).
 *          Reply {"redirect", survivor} (the survivor is merged away) or
 *                {"ok", changed}. Each value is written, with an audit record
 *                of action "merge", only when it wins by the fold order
 *                (cns_merge_wins, mirrored in Lua); so a second run changes
 *                and records nothing.
 * suppress KEYS: suppression hash, index, audit stream.
 *          ARGV: key, JSON, now_ms, actor, reason, "suppress" | "unsuppress".
 *          Reply {1, previous JSON or nil} when stored or removed, {0} when
 *          there was nothing to remove.
 * list     KEYS: suppression hash, index. ARGV: start ("-" or "(<key>"),
 *          count. Reply {keys, values}. */
#ifndef CNS_LUA_H
#define CNS_LUA_H

extern const char cns_lua_change[];
extern const char cns_lua_fold[];
extern const char cns_lua_suppress[];
extern const char cns_lua_list[];

#endif
