/* idn_store: the store object, its Lua scripts, reply helpers, and the two
 * read-only queries (Lookup, GetIdentities). The resolution state machine is
 * in idn_resolve.c.
 *
 * Every script touches keys of one master only ({m:<id>} hash tag) or one
 * identifier key, so each runs atomically in one slot of a Redis Cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_metrics.h"
#include "idn_store_int.h"

/* Room for path="<fast|shared|full>". */
#define IDN_PATH_LABEL_LEN 32

/* ------------------------------------------------------------------ scripts */

/* READ: KEYS hash, ids, merges, evm, pm; ARGV[1] '1' to read the evm list,
 * ARGV[2] the number n of limited types, ARGV[3..2+n] their member prefixes
 * ("user_id:"), then the event's members.
 * -> {merged_into, merge_done, ver, merged_at, merge_msg, members, merges, evm,
 *     merge_dlv, pending, pm}
 * For a root, members are only what the planner needs: the members of
 * limited types and those of the event's members that the set holds, so a
 * person with thousands of cookies does not ship them on every event. For a
 * loser whose merge is not yet complete, all members, its merge records and
 * its merges pending delivery (the merge still has to be absorbed). merge_dlv
 * is '1' when the merge that made it a loser was delivered by its message;
 * pm is non-empty when merges are pending delivery here. */
static const char k_lua_read[] =
    "local h = redis.call('HMGET', KEYS[1], 'merged_into', 'merge_done', 'ver', 'merged_at',"
    " 'merge_msg', 'merge_dlv', 'pm')\n"
    "local evm = {}\n"
    "if ARGV[1] == '1' then evm = redis.call('LRANGE', KEYS[4], 0, -1) end\n"
    "local members, merges, pending = {}, {}, {}\n"
    "local lim = tonumber(ARGV[2])\n"
    "local function limited(m)\n"
    "  for i = 3, 2 + lim do\n"
    "    if string.sub(m, 1, #ARGV[i]) == ARGV[i] then return true end\n"
    "  end\n"
    "  return false\n"
    "end\n"
    "if not h[1] then\n"
    "  if lim > 0 then\n"
    "    for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "      if limited(m) then members[#members + 1] = m end\n"
    "    end\n"
    "  end\n"
    "  for i = 3 + lim, #ARGV do\n"
    "    if not limited(ARGV[i]) and redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then\n"
    "      members[#members + 1] = ARGV[i]\n"
    "    end\n"
    "  end\n"
    "elseif not h[2] then\n"
    "  members = redis.call('SMEMBERS', KEYS[2])\n"
    "  merges = redis.call('LRANGE', KEYS[3], 0, -1)\n"
    "  pending = redis.call('LRANGE', KEYS[5], 0, -1)\n"
    "end\n"
    "return {h[1] or '', h[2] or '', h[3] or '0', h[4] or '', h[5] or '', members, merges, evm,"
    " h[6] or '', pending, h[7] or ''}\n";

/* LOSER: KEYS hash, ids, merges, pm; ARGV survivor, expected ver, merged_at,
 * message id, '1' if the merge is delivered by its message ('' if it must
 * wait for a pipeline event, see DELIVER). Marks the master merged only if it
 * is not merged yet and has not changed since it was read; from then on its
 * set and its pending merges are frozen (ADD, ABSORB and DELIVER refuse a
 * merged master), so the snapshot returned is complete.
 * -> {'merged', into} | {'changed'} | {'ok', members, merges, pending} */
static const char k_lua_loser[] =
    "local h = redis.call('HMGET', KEYS[1], 'merged_into', 'ver')\n"
    "if h[1] then return {'merged', h[1]} end\n"
    "if (h[2] or '0') ~= ARGV[2] then return {'changed'} end\n"
    "redis.call('HSET', KEYS[1], 'merged_into', ARGV[1], 'merged_at', ARGV[3], 'merge_msg', ARGV[4])\n"
    "if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'merge_dlv', '1') end\n"
    "return {'ok', redis.call('SMEMBERS', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1),"
    " redis.call('LRANGE', KEYS[4], 0, -1)}\n";

/* ABSORB: KEYS hash, ids, merges, evm, pm; ARGV loser, record, evm ttl (''
 * for none), message id, member count n, '1' if the merge is pending
 * delivery, pending count p, members..., the loser's pending records...,
 * the loser's own merge records... Idempotent: the 'a:<loser>' field guards
 * against a second application. With a ttl, the record also goes to the
 * message's evm list and the hash gets the flag 'e:<message id>' that the
 * fast path checks (the flag has no TTL: one small field per merge-causing
 * message, like a:). The loser's pending merges, then this merge if it is
 * pending, are appended to this master's pending list (oldest first) and
 * its 'pm' field is set: nothing pending at a loser is stranded.
 * -> '1' when applied now, '0' when applied before, or the id this master
 * was itself merged into. */
static const char k_lua_absorb[] =
    "local into = redis.call('HGET', KEYS[1], 'merged_into')\n"
    "if into then return into end\n"
    "if redis.call('HSETNX', KEYS[1], 'a:' .. ARGV[1], '1') == 0 then return '0' end\n"
    "local n, p = tonumber(ARGV[5]), tonumber(ARGV[7])\n"
    "for i = 8, 7 + n, 1000 do\n"
    "  redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, 7 + n)))\n"
    "end\n"
    "for i = 8 + n, 7 + n + p, 1000 do\n"
    "  redis.call('RPUSH', KEYS[5], unpack(ARGV, i, math.min(i + 999, 7 + n + p)))\n"
    "end\n"
    "for i = 8 + n + p, #ARGV, 1000 do\n"
    "  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))\n"
    "end\n"
    "redis.call('RPUSH', KEYS[3], ARGV[2])\n"
    "if ARGV[6] == '1' then redis.call('RPUSH', KEYS[5], ARGV[2]) end\n"
    "if p > 0 or ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'pm', '1') end\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('RPUSH', KEYS[4], ARGV[2])\n"
    "  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[3]))\n"
    "  redis.call('HSET', KEYS[1], 'e:' .. ARGV[4], '1')\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[1], 'ver', 1)\n"
    "return '1'\n";

/* ADD: KEYS hash, ids; ARGV created_ms ('' if not new), members...
 * -> '' when added, or the id this master was merged into. */
static const char k_lua_add[] =
    "local into = redis.call('HGET', KEYS[1], 'merged_into')\n"
    "if into then return into end\n"
    "if ARGV[1] ~= '' then redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[1]) end\n"
    "local added = 0\n"
    "for i = 2, #ARGV, 1000 do\n"
    "  added = added + redis.call('SADD', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))\n"
    "end\n"
    "if added > 0 then redis.call('HINCRBY', KEYS[1], 'ver', 1) end\n"
    "return ''\n";

/* REPOINT: KEYS identifier; ARGV old, new. Compare-and-set. -> 1 | 0 */
static const char k_lua_repoint[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('SET', KEYS[1], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* DELIVER: KEYS hash, pm, evm; ARGV evm ttl, message id. Hands the merges
 * pending delivery at a root to one pipeline message: moves them into the
 * message's evm list (flag 'e:<message id>', as ABSORB does), so a retry of
 * the message reports them again and no other message gets them.
 * -> {into} when the master was merged meanwhile (its pending merges went
 * with it to its survivor), else {'', records} (possibly none). */
static const char k_lua_deliver[] =
    "local into = redis.call('HGET', KEYS[1], 'merged_into')\n"
    "if into then return {into} end\n"
    "local recs = redis.call('LRANGE', KEYS[2], 0, -1)\n"
    "for i = 1, #recs, 1000 do\n"
    "  redis.call('RPUSH', KEYS[3], unpack(recs, i, math.min(i + 999, #recs)))\n"
    "end\n"
    "if #recs > 0 then\n"
    "  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[1]))\n"
    "  redis.call('HSET', KEYS[1], 'e:' .. ARGV[2], '1')\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('HDEL', KEYS[1], 'pm')\n"
    "return {'', recs}\n";

/* GET: KEYS hash, ids, merges -> {into} for a merged master, else
 * {'', created_ms, members, merges} */
static const char k_lua_get[] =
    "local h = redis.call('HMGET', KEYS[1], 'merged_into', 'created_ms')\n"
    "if h[1] then return {h[1]} end\n"
    "return {'', h[2] or '', redis.call('SMEMBERS', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1)}\n";

/* ------------------------------------------------------------------ store */

idn_store *idn_store_new(cdp_redis *r, const idn_rules *rules, const idn_store_opts *opts) {
    idn_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->redis = r;
    s->rules = rules;
    s->evm_ttl_s = opts && opts->evm_ttl_s > 0 ? opts->evm_ttl_s : IDN_DEFAULT_EVM_TTL_S;
    s->max_rounds = opts && opts->max_rounds > 0 ? opts->max_rounds : IDN_DEFAULT_MAX_ROUNDS;
    for (size_t i = 0; i < rules->n_limits; i++)
        if (rules->limits[i].limit != IDN_UNLIMITED)
            snprintf(s->limited[s->n_limited++], sizeof s->limited[0], "%s:",
                     rules->limits[i].type);
    s->s_read = cdp_redis_script_add(r, "idn_read", k_lua_read);
    s->s_loser = cdp_redis_script_add(r, "idn_loser", k_lua_loser);
    s->s_absorb = cdp_redis_script_add(r, "idn_absorb", k_lua_absorb);
    s->s_add = cdp_redis_script_add(r, "idn_add", k_lua_add);
    s->s_repoint = cdp_redis_script_add(r, "idn_repoint", k_lua_repoint);
    s->s_get = cdp_redis_script_add(r, "idn_get", k_lua_get);
    s->s_deliver = cdp_redis_script_add(r, "idn_deliver", k_lua_deliver);
    if (!s->s_read || !s->s_loser || !s->s_absorb || !s->s_add || !s->s_repoint || !s->s_get ||
        !s->s_deliver) {
        free(s);
        return NULL;
    }
    return s;
}

void idn_store_free(idn_store *s) {
    free(s);
}

/* ---------------------------------------------------------------- helpers */

/* Error replies that mean "the cluster cannot serve this right now". */
static int is_transient_error(const char *msg) {
    static const char *const prefixes[] = {"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN",
                                           "BUSY", "READONLY"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(msg, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

int idn__reply_ok(const redisReply *reply, const char *err, idn_status *st, char *msg,
                  size_t msglen) {
    if (reply == NULL) {
        *st = IDN_EUNAVAILABLE;
        snprintf(msg, msglen, "redis unavailable: %s", err ? err : "no reply");
        return 0;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        int transient = is_transient_error(reply->str);
        *st = transient ? IDN_EUNAVAILABLE : IDN_EINTERNAL;
        snprintf(msg, msglen, "redis %s: %s", transient ? "unavailable" : "error", reply->str);
        return 0;
    }
    return 1;
}

const char *idn__reply_str(const redisReply *r) {
    if (r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        return r->str;
    return NULL;
}

const redisReply *idn__reply_at(const redisReply *r, size_t i) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    return r->element[i];
}

int idn__strv_push(idn_strv *sv, const char *s, size_t len) {
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 8;
        char **v = realloc(sv->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        sv->v = v;
        sv->cap = cap;
    }
    char *c = malloc(len + 1);
    if (c == NULL)
        return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    sv->v[sv->n++] = c;
    return 0;
}

void idn__strv_clear(idn_strv *sv) {
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}

int idn__strv_from_reply(idn_strv *sv, const redisReply *arr) {
    if (arr == NULL || arr->type != REDIS_REPLY_ARRAY)
        return arr == NULL ? -1 : 0;
    for (size_t i = 0; i < arr->elements; i++) {
        const redisReply *e = arr->element[i];
        if (e->type == REDIS_REPLY_STRING && idn__strv_push(sv, e->str, e->len) != 0)
            return -1;
    }
    return 0;
}

idn_ident *idn__members_split(idn_strv *members, size_t *n) {
    *n = 0;
    idn_ident *out = malloc((members->n ? members->n : 1) * sizeof *out);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < members->n; i++) {
        char *m = members->v[i];
        long t = idn_member_split(m, strlen(m));
        if (t < 0)
            continue;
        m[t] = '\0';
        out[(*n)++] = (idn_ident){m, m + t + 1};
    }
    return out;
}

int idn__eval(idn_store *s, cdp_redis_script *sc, cdp_redis_cb cb, void *ud, int numkeys,
              const char **keys, int nargs, const char **args) {
    size_t keylens[IDN_MAX_SCRIPT_KEYS];
    size_t *arglens = malloc(((size_t)nargs + 1) * sizeof *arglens);
    if (arglens == NULL || numkeys > (int)(sizeof keylens / sizeof keylens[0])) {
        free(arglens);
        cb(NULL, "out of memory", ud);
        return -1;
    }
    for (int i = 0; i < numkeys; i++)
        keylens[i] = strlen(keys[i]);
    for (int i = 0; i < nargs; i++)
        arglens[i] = strlen(args[i]);
    int rc = cdp_redis_eval(s->redis, sc, cb, ud, numkeys, keys, keylens, nargs, args, arglens);
    free(arglens);
    return rc;
}

/* ------------------------------------------------------------------ verify */

void idn__count_path(const char *path, double n) {
    char labels[IDN_PATH_LABEL_LEN];
    snprintf(labels, sizeof labels, "path=\"%s\"", path);
    cdp_metrics_inc("cdp_identity_resolutions_total", labels, n);
}

int idn__verify_issue(idn_store *s, const char *master, const char *const *msgs, size_t k,
                      cdp_redis_cb cb, void *ud) {
    size_t argc = 4 + k;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    char **fields = calloc(k ? k : 1, sizeof *fields);
    char *key = idn_key_master(master);
    int ok = argv && lens && fields && key;
    for (size_t i = 0; ok && i < k; i++)
        ok = (fields[i] = idn_field_evm(msgs[i])) != NULL;
    if (ok) {
        argv[0] = "HMGET";
        argv[1] = key;
        argv[2] = IDN_F_MERGED_INTO;
        argv[3] = IDN_F_PENDING_MERGES;
        for (size_t i = 0; i < k; i++)
            argv[4 + i] = fields[i];
        for (size_t i = 0; i < argc; i++)
            lens[i] = strlen(argv[i]);
        cdp_redis_command(s->redis, key, lens[1], cb, ud, (int)argc, argv, lens);
    }
    for (size_t i = 0; fields && i < k; i++)
        free(fields[i]);
    free(fields);
    free(key);
    free(lens);
    free(argv);
    if (!ok)
        cb(NULL, "out of memory", ud);
    return ok ? 0 : -1;
}

int idn__verify_root(const redisReply *reply) {
    const redisReply *into = idn__reply_at(reply, 0);
    return into != NULL && into->type == REDIS_REPLY_NIL;
}

int idn__verify_pending(const redisReply *reply) {
    const redisReply *f = idn__reply_at(reply, 1);
    return f == NULL || f->type != REDIS_REPLY_NIL;
}

int idn__verify_flag(const redisReply *reply, size_t i) {
    const redisReply *f = idn__reply_at(reply, 2 + i);
    return f == NULL || f->type != REDIS_REPLY_NIL;
}

int idn__verify_must_deliver(const redisReply *reply, const char *message_id, int deliver) {
    return deliver && message_id != NULL && message_id[0] != '\0' && idn__verify_pending(reply);
}

typedef struct {
    idn_check_cb cb;
    void *ud;
    int with_msg;
    int deliver; /* with_msg and deliver_merges */
} check_job;

static void check_on_reply(redisReply *reply, const char *err, void *ud) {
    check_job *c = ud;
    idn_status st = IDN_OK;
    char msg[IDN_ERR_LEN];
    if (!idn__reply_ok(reply, err, &st, msg, sizeof msg)) {
        c->cb(st, msg, 0, c->ud);
    } else {
        int ok = idn__verify_root(reply) && !(c->with_msg && idn__verify_flag(reply, 0)) &&
                 !(c->deliver && idn__verify_pending(reply));
        c->cb(IDN_OK, NULL, ok, c->ud);
    }
    free(c);
}

void idn_store_check(idn_store *s, const char *master_id, const char *message_id, int deliver,
                     idn_check_cb cb, void *ud) {
    check_job *c = malloc(sizeof *c);
    if (c == NULL) {
        cb(IDN_EINTERNAL, "out of memory", 0, ud);
        return;
    }
    *c = (check_job){.cb = cb, .ud = ud, .with_msg = message_id && message_id[0] != '\0'};
    c->deliver = c->with_msg && deliver;
    const char *msgs[1] = {message_id};
    idn__verify_issue(s, master_id, msgs, c->with_msg ? 1 : 0, check_on_reply, c);
}

/* ------------------------------------------------------------------ lookup */

typedef struct {
    idn_store *st;
    idn_lookup_cb cb;
    void *ud;
    int hops;
    char id[IDN_MASTER_ID_BUFSZ];
} lookup_job;

static void lookup_done(lookup_job *j, idn_status st, const char *err, const char *id) {
    j->cb(st, err, id, j->ud);
    free(j);
}

/* 1 when a lookup step's reply can be read; otherwise finishes (and frees)
 * the job with the transport or server error and returns 0. */
static int lookup_reply_ok(lookup_job *j, redisReply *reply, const char *err) {
    idn_status st;
    char msg[IDN_ERR_LEN];
    if (idn__reply_ok(reply, err, &st, msg, sizeof msg))
        return 1;
    lookup_done(j, st, msg, NULL);
    return 0;
}

static void lookup_on_into(redisReply *reply, const char *err, void *ud);

/* Follows one merged_into link of j->id. */
static void lookup_follow(lookup_job *j) {
    char *key = idn_key_master(j->id);
    if (key == NULL) {
        lookup_done(j, IDN_EINTERNAL, "out of memory", NULL);
        return;
    }
    const char *argv[] = {"HGET", key, IDN_F_MERGED_INTO};
    size_t lens[] = {4, strlen(key), strlen(IDN_F_MERGED_INTO)};
    cdp_redis_command(j->st->redis, key, lens[1], lookup_on_into, j, 3, argv, lens);
    free(key);
}

static void lookup_on_into(redisReply *reply, const char *err, void *ud) {
    lookup_job *j = ud;
    if (!lookup_reply_ok(j, reply, err))
        return;
    const char *into = idn__reply_str(reply);
    if (into == NULL) {
        lookup_done(j, IDN_OK, NULL, j->id);
        return;
    }
    if (!idn_master_id_valid(into) || strcmp(into, j->id) >= 0 || ++j->hops > IDN_MAX_CHAIN) {
        lookup_done(j, IDN_EINTERNAL, "identity graph corrupt: bad merged_into", NULL);
        return;
    }
    memcpy(j->id, into, IDN_MASTER_ID_BUFSZ);
    lookup_follow(j);
}

static void lookup_on_ident(redisReply *reply, const char *err, void *ud) {
    lookup_job *j = ud;
    if (!lookup_reply_ok(j, reply, err))
        return;
    const char *v = idn__reply_str(reply);
    if (v == NULL) {
        lookup_done(j, IDN_ENOTFOUND, "identifier not found", NULL);
        return;
    }
    int pending; /* a claim not yet confirmed still names its master */
    if (idn_ident_value_parse(v, reply->len, j->id, &pending) != 0) {
        lookup_done(j, IDN_EINTERNAL, "identity graph corrupt: bad master id", NULL);
        return;
    }
    lookup_follow(j);
}

void idn_store_lookup(idn_store *s, const char *type, const char *value, idn_lookup_cb cb,
                      void *ud) {
    lookup_job *j = calloc(1, sizeof *j);
    char *key = idn_key_ident(type, value);
    if (j == NULL || key == NULL) {
        free(j);
        free(key);
        cb(IDN_EINTERNAL, "out of memory", NULL, ud);
        return;
    }
    *j = (lookup_job){.st = s, .cb = cb, .ud = ud};
    cdp_redis_commandf(s->redis, key, lookup_on_ident, j, "GET %s", key);
    free(key);
}

/* ---------------------------------------------------------- get identities */

typedef struct {
    idn_store *st;
    idn_identities_cb cb;
    void *ud;
    int hops;
    char id[IDN_MASTER_ID_BUFSZ];
} ids_job;

static void ids_finish(ids_job *j, idn_status st, const char *err) {
    idn_identities_result res = {.status = st, .error = err};
    j->cb(&res, j->ud);
    free(j);
}

static void ids_read(ids_job *j);

/* Answers from a root's {'', created_ms, members, merges} reply. */
static void ids_answer(ids_job *j, const redisReply *reply) {
    idn_strv members = {0}, records = {0};
    const char *created = idn__reply_str(idn__reply_at(reply, 1));
    if (idn__strv_from_reply(&members, idn__reply_at(reply, 2)) != 0 ||
        idn__strv_from_reply(&records, idn__reply_at(reply, 3)) != 0) {
        idn__strv_clear(&members);
        idn__strv_clear(&records);
        ids_finish(j, IDN_EINTERNAL, "unexpected reply to idn_get");
        return;
    }
    if ((created == NULL || created[0] == '\0') && members.n == 0) {
        idn__strv_clear(&members);
        idn__strv_clear(&records);
        ids_finish(j, IDN_ENOTFOUND, "master id not found");
        return;
    }
    size_t n_idents = 0, n_merges = 0;
    idn_ident *idents = idn__members_split(&members, &n_idents);
    idn_merge *merges = calloc(records.n ? records.n : 1, sizeof *merges);
    if (idents == NULL || merges == NULL) {
        free(idents);
        free(merges);
        idn__strv_clear(&members);
        idn__strv_clear(&records);
        ids_finish(j, IDN_EINTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < records.n; i++)
        if (idn_merge_decode(records.v[i], strlen(records.v[i]), &merges[n_merges]) == 0)
            n_merges++;
    idn_identities_result res = {.status = IDN_OK, .master_id = j->id, .n_idents = n_idents,
                                 .idents = idents, .n_merges = n_merges, .merges = merges};
    j->cb(&res, j->ud);
    for (size_t i = 0; i < n_merges; i++)
        idn_merge_clear(&merges[i]);
    free(merges);
    free(idents);
    idn__strv_clear(&members);
    idn__strv_clear(&records);
    free(j);
}

static void ids_on_get(redisReply *reply, const char *err, void *ud) {
    ids_job *j = ud;
    idn_status st;
    char msg[IDN_ERR_LEN];
    if (!idn__reply_ok(reply, err, &st, msg, sizeof msg)) {
        ids_finish(j, st, msg);
        return;
    }
    const char *into = idn__reply_str(idn__reply_at(reply, 0));
    if (into == NULL) {
        ids_finish(j, IDN_EINTERNAL, "unexpected reply to idn_get");
        return;
    }
    if (into[0] == '\0') {
        ids_answer(j, reply);
        return;
    }
    if (!idn_master_id_valid(into) || strcmp(into, j->id) >= 0 || ++j->hops > IDN_MAX_CHAIN) {
        ids_finish(j, IDN_EINTERNAL, "identity graph corrupt: bad merged_into");
        return;
    }
    memcpy(j->id, into, IDN_MASTER_ID_BUFSZ);
    ids_read(j);
}

static void ids_read(ids_job *j) {
    char *k[3] = {idn_key_master(j->id), idn_key_master_ids(j->id), idn_key_master_merges(j->id)};
    if (k[0] && k[1] && k[2]) {
        const char *keys[3] = {k[0], k[1], k[2]};
        idn__eval(j->st, j->st->s_get, ids_on_get, j, 3, keys, 0, NULL);
    }
    int oom = !(k[0] && k[1] && k[2]);
    for (int i = 0; i < 3; i++)
        free(k[i]);
    if (oom)
        ids_finish(j, IDN_EINTERNAL, "out of memory");
}

void idn_store_get_identities(idn_store *s, const char *master_id, idn_identities_cb cb,
                              void *ud) {
    ids_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        idn_identities_result res = {.status = IDN_EINTERNAL, .error = "out of memory"};
        cb(&res, ud);
        return;
    }
    *j = (ids_job){.st = s, .cb = cb, .ud = ud};
    snprintf(j->id, sizeof j->id, "%s", master_id);
    ids_read(j);
}
