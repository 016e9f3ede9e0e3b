/* prf_store: script registration and the one-profile EVAL (see prf_store.h). */
#include "prf_store.h"

#include <stdio.h>
#include <string.h>

#include "prf_lua.h"

int prf_store_init(prf_store *s, cdp_redis *r)
{
    memset(s, 0, sizeof(*s));
    s->redis = r;
    s->apply = cdp_redis_script_add(r, "profile_apply", prf_lua_apply);
    s->tombstone = cdp_redis_script_add(r, "profile_tombstone", prf_lua_tombstone);
    s->fold = cdp_redis_script_add(r, "profile_fold", prf_lua_fold);
    s->strip = cdp_redis_script_add(r, "profile_strip", prf_lua_strip);
    return (s->apply && s->tombstone && s->fold && s->strip) ? 0 : -1;
}

void prf_store_eval(prf_store *s, cdp_redis_script *script, const char *master,
                    const prf_args *args, cdp_redis_cb cb, void *ud)
{
    prf_keys k;
    if (prf_keys_init(&k, master) != PRF_OK) {
        cb(NULL, "out of memory", ud);
        return;
    }
    cdp_redis_eval(s->redis, script, cb, ud, PRF_KEY_COUNT, (const char **)k.v, k.len,
                   args ? (int)args->n : 0, args ? (const char **)args->v : NULL,
                   args ? args->len : NULL);
    prf_keys_free(&k);
}

int prf_store_read_view(prf_store *s, const char *master, size_t timeline_limit,
                        cdp_redis_cb cb, void *const ud[PRF_KEY_COUNT])
{
    prf_keys k;
    if (prf_keys_init(&k, master) != PRF_OK)
        return -1;
    int n = 0;
    for (int key = 0; key < PRF_KEY_COUNT; key++) {
        if (!prf_read_is_view_key(key))
            continue;
        prf_read_cmd c;
        prf_read_cmd_init(&c, &k, key, timeline_limit);
        cdp_redis_command(s->redis, k.v[key], k.len[key], cb, ud[key], c.argc, c.argv, c.len);
        n++;
    }
    prf_keys_free(&k);
    return n;
}


