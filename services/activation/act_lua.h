/* act_lua: the Redis Lua scripts of activation (act_lua.c). Every script
 * touches the keys of ONE hash tag: the destination catalogue
 * ({dest}) or one destination's outbox ({d:<id>}), so each is one atomic
 * round trip on a single Redis or a cluster.
 *
 * Catalogue, KEYS: cdp:act:{dest}:defs (hash id -> packed Destination),
 *                  cdp:act:{dest}:version (counter)
 *   dest_put  ARGV: id, packed, mode ("create" | "update"). Reply 1, or 0
 *             when create found the id taken / update found it missing.
 *             Bumps the version on success.
 *   dest_del  ARGV: id. Reply 1 (deleted, version bumped) or 0.
 *
 * Outbox of destination D, KEYS (in this order, act_keys):
 *   1 due   cdp:act:{d:D}:due    zset id -> next attempt ms (pending, and
 *                                in-flight ones until their lease ends)
 *   2 rec   cdp:act:{d:D}:rec    hash id -> record JSON (act_msg.h)
 *   3 body  cdp:act:{d:D}:body   hash id -> packed ActivationMessage
 *   4 log   cdp:act:{d:D}:log    zset id -> created ms (ListDeliveries)
 *   5 dead  cdp:act:{d:D}:dead   zset id -> dead-lettered ms
 *
 *   enqueue ARGV: id, now, record, body, retention_ms. Reply 1 (new) or 0
 *           (the id exists: a re-read change). Also drops up to 100
 *           finished (DELIVERED/BLOCKED) records older than retention_ms.
 *   claim   ARGV: now, lease_until, max, token. Moves up to max due ids to
 *           lease_until, marks them IN_FLIGHT with the token and one more
 *           attempt. Reply a flat array id, record, body per claimed id.
 *   finish  ARGV: id, token ("*": any holder), outcome, now, next_at,
 *           error, reason, max_attempts. Outcomes: delivered, blocked,
 *           dead, retry (attempt used; dead at max_attempts), free (retry
 *           without using the attempt). Reply {state, created_ms} or
 *           {"stale"} when the id is not in flight under that token.
 *   replay  ARGV: now, ids... (none: every dead letter). Reply the count.
 *   list    ARGV: which ("log" | "dead"), offset, count. Reply {total,
 *           id, record, id, record...} newest first. */
#ifndef ACT_LUA_H
#define ACT_LUA_H

enum {
    ACT_KEY_DUE = 0,
    ACT_KEY_REC,
    ACT_KEY_BODY,
    ACT_KEY_LOG,
    ACT_KEY_DEAD,
    ACT_KEY_COUNT,
};

#define ACT_KEY_DEFS "cdp:act:{dest}:defs"
#define ACT_KEY_VERSION "cdp:act:{dest}:version"

extern const char act_lua_dest_put[];
extern const char act_lua_dest_del[];
extern const char act_lua_enqueue[];
extern const char act_lua_claim[];
extern const char act_lua_finish[];
extern const char act_lua_replay[];
extern const char act_lua_list[];

#endif
