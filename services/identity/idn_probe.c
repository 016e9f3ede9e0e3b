/* idn_probe: the common case of a whole ResolveBatch at once (see
 * idn_store_probe in idn_store.h and idn_fast.h).
 *
 * Two pipelined steps, each issued in one loop turn:
 *   get    one GET per distinct identifier key of all the requests
 *   verify one HMGET per distinct master that some request's keys all hold
 *          as a confirmed claim: merged_into and the e:<message id> flag of
 *          each such request
 * A request is fast when its master is a root and its flag is unset. The
 * probe writes nothing, so the service may answer any prefix of a group of
 * requests from it: none of them changes what the others read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "idn_fast.h"
#include "idn_store_int.h"

/* FNV-1a, for the string tables below. */
#define PB_FNV_OFFSET 2166136261u
#define PB_FNV_PRIME 16777619u

/* An open-addressing set of strings (borrowed), numbered in insertion
 * order. */
typedef struct {
    const char **keys;
    size_t *index;
    size_t cap, n;
} pb_table;

static int pb_table_init(pb_table *t, size_t max) {
    t->cap = 16;
    while (t->cap < 2 * max)
        t->cap *= 2;
    t->n = 0;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->index = calloc(t->cap, sizeof *t->index);
    return t->keys && t->index ? 0 : -1;
}

static void pb_table_free(pb_table *t) {
    free(t->keys);
    free(t->index);
}

/* The number of s in the table, adding it if new (the table has room for
 * every string it is given, see pb_table_init). */
static size_t pb_table_put(pb_table *t, const char *s) {
    uint32_t h = PB_FNV_OFFSET;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * PB_FNV_PRIME;
    size_t i = h & (t->cap - 1);
    while (t->keys[i] != NULL) {
        if (strcmp(t->keys[i], s) == 0)
            return t->index[i];
        i = (i + 1) & (t->cap - 1);
    }
    t->keys[i] = s;
    t->index[i] = t->n;
    return t->n++;
}

/* One distinct identifier key: what its GET found. */
typedef struct {
    char *key;
    char owner[IDN_MASTER_ID_BUFSZ]; /* "" for none or unusable */
    unsigned char pending;
    unsigned char failed;            /* no usable reply */
} pb_key;

/* One distinct candidate master: its HMGET fields. */
typedef struct {
    const char *id;  /* the owner string of its first key */
    size_t n_msgs;   /* requests with a message id that lead here */
    size_t first;    /* their index range in the probe's msg_reqs */
    int root;
    int pending;     /* holds merges pending delivery (pm) */
} pb_master;

typedef struct {
    idn_store *st;
    const idn_probe_req *reqs;
    size_t n;
    idn_probe_cb cb;
    void *ud;
    int pending_replies;
    int verifying;       /* 0 during the get step, 1 during verify */
    size_t *slot;        /* per request identifier: its pb_key */
    size_t *slot_start;  /* per request: first entry in slot */
    pb_key *keys;
    size_t n_keys;
    long *master_of;     /* per request: candidate master, or -1 */
    long *flag_of;       /* per request: index of its flag in its master's reply, or -1 */
    unsigned char *flagged;
    pb_master *masters;
    size_t n_masters;
    size_t *msg_reqs;    /* requests grouped by master */
    const char **fast;
} pb_probe;

struct idn_probe {
    pb_probe *p;
};

typedef struct {
    pb_probe *p;
    size_t idx;
} pb_ref;

static void pb_free(pb_probe *p) {
    for (size_t i = 0; p->keys && i < p->n_keys; i++)
        free(p->keys[i].key);
    free(p->slot);
    free(p->slot_start);
    free(p->keys);
    free(p->master_of);
    free(p->flag_of);
    free(p->flagged);
    free(p->masters);
    free(p->msg_reqs);
    free(p->fast);
    free(p);
}

static void pb_release(pb_probe *p);

/* Requests with more identifiers than a resolution takes are not probed. */
static size_t pb_n(const idn_probe_req *q) {
    return q->n <= IDN_MAX_IDENTIFIERS ? q->n : 0;
}

static pb_ref *pb_ref_new(pb_probe *p, size_t idx) {
    pb_ref *r = malloc(sizeof *r);
    if (r != NULL) {
        *r = (pb_ref){p, idx};
        p->pending_replies++;
    }
    return r;
}

/* ------------------------------------------------------------------ finish */

static void pb_finish(pb_probe *p) {
    size_t n_fast = 0;
    for (size_t r = 0; r < p->n; r++) {
        long m = p->master_of[r];
        int ok = m >= 0 && p->masters[m].root && !p->flagged[r] &&
                 !(p->reqs[r].deliver && p->flag_of[r] >= 0 && p->masters[m].pending);
        p->fast[r] = ok ? p->masters[m].id : NULL;
        n_fast += (size_t)ok;
    }
    if (n_fast > 0)
        idn__count_path("fast", (double)n_fast);
    idn_probe handle = {p};
    p->cb(p->fast, &handle, p->ud);
    pb_free(p);
}

/* ------------------------------------------------------------ step: verify */

static void pb_on_verify(redisReply *reply, const char *err, void *ud) {
    pb_ref *ref = ud;
    pb_probe *p = ref->p;
    pb_master *m = &p->masters[ref->idx];
    free(ref);
    idn_status st;
    char msg[IDN_ERR_LEN];
    if (idn__reply_ok(reply, err, &st, msg, sizeof msg)) {
        m->root = idn__verify_root(reply);
        m->pending = idn__verify_pending(reply);
        for (size_t k = 0; k < m->n_msgs; k++)
            p->flagged[p->msg_reqs[m->first + k]] = (unsigned char)idn__verify_flag(reply, k);
    }
    pb_release(p);
}

/* Groups the candidate requests by master and issues one HMGET each. */
static void pb_verify(pb_probe *p) {
    pb_table masters;
    if (pb_table_init(&masters, p->n) != 0) {
        pb_table_free(&masters);
        return; /* nothing fast */
    }
    for (size_t r = 0; r < p->n; r++) {
        const idn_probe_req *q = &p->reqs[r];
        const char *owners[IDN_MAX_IDENTIFIERS];
        unsigned char pend[IDN_MAX_IDENTIFIERS];
        for (size_t i = 0; i < pb_n(q); i++) {
            pb_key *k = &p->keys[p->slot[p->slot_start[r] + i]];
            owners[i] = k->owner;
            pend[i] = k->pending;
        }
        if (pb_n(q) == 0 || !idn_fast_candidate(owners, pend, q->n))
            continue;
        size_t m = pb_table_put(&masters, owners[0]);
        if (m == p->n_masters)
            p->masters[p->n_masters++] = (pb_master){.id = owners[0]};
        p->master_of[r] = (long)m;
        if (q->message_id && q->message_id[0])
            p->flag_of[r] = (long)p->masters[m].n_msgs++;
    }
    pb_table_free(&masters);
    /* lay out each master's message requests contiguously, in flag order */
    size_t at = 0;
    for (size_t m = 0; m < p->n_masters; m++) {
        p->masters[m].first = at;
        at += p->masters[m].n_msgs;
    }
    for (size_t r = 0; r < p->n; r++)
        if (p->master_of[r] >= 0 && p->flag_of[r] >= 0)
            p->msg_reqs[p->masters[p->master_of[r]].first + (size_t)p->flag_of[r]] = r;
    for (size_t m = 0; m < p->n_masters; m++) {
        pb_master *pm = &p->masters[m];
        const char **msgs = malloc((pm->n_msgs ? pm->n_msgs : 1) * sizeof *msgs);
        pb_ref *ref = msgs ? pb_ref_new(p, m) : NULL;
        if (ref == NULL) {
            free(msgs);
            continue; /* stays not root: its requests take the full path */
        }
        for (size_t k = 0; k < pm->n_msgs; k++)
            msgs[k] = p->reqs[p->msg_reqs[pm->first + k]].message_id;
        idn__verify_issue(p->st, pm->id, msgs, pm->n_msgs, pb_on_verify, ref);
        free(msgs);
    }
}

/* --------------------------------------------------------------- step: get */

/* Drops one reference; the last one of the get step issues the verify step
 * (holding a reference while it issues, so that replies failing at once
 * cannot finish the probe early), the last one of that step finishes. */
static void pb_release(pb_probe *p) {
    if (--p->pending_replies > 0)
        return;
    if (p->verifying) {
        pb_finish(p);
        return;
    }
    p->verifying = 1;
    p->pending_replies++;
    pb_verify(p);
    pb_release(p);
}

static void pb_on_get(redisReply *reply, const char *err, void *ud) {
    pb_ref *ref = ud;
    pb_probe *p = ref->p;
    pb_key *k = &p->keys[ref->idx];
    free(ref);
    idn_status st;
    char msg[IDN_ERR_LEN];
    const char *v = idn__reply_ok(reply, err, &st, msg, sizeof msg) ? idn__reply_str(reply) : NULL;
    int pending = 0;
    if (v != NULL && idn_ident_value_parse(v, reply->len, k->owner, &pending) == 0) {
        k->pending = (unsigned char)pending;
    } else {
        k->owner[0] = '\0'; /* unmapped, unusable or failed: not fast */
        k->failed = reply == NULL || reply->type != REDIS_REPLY_NIL;
    }
    pb_release(p);
}

/* Numbers the distinct identifier keys of all requests. Returns 0 or -1. */
static int pb_collect(pb_probe *p, size_t total) {
    pb_table t;
    int rc = pb_table_init(&t, total);
    for (size_t r = 0, at = 0; rc == 0 && r < p->n; r++) {
        p->slot_start[r] = at;
        for (size_t i = 0; rc == 0 && i < pb_n(&p->reqs[r]); i++) {
            char *key = idn_key_ident(p->reqs[r].ids[i].type, p->reqs[r].ids[i].value);
            if (key == NULL) {
                rc = -1;
                break;
            }
            size_t k = pb_table_put(&t, key);
            if (k == p->n_keys) {
                p->keys[p->n_keys++] = (pb_key){.key = key};
            } else {
                free(key);
            }
            p->slot[at++] = k;
        }
    }
    pb_table_free(&t);
    return rc;
}

static pb_probe *pb_new(idn_store *s, const idn_probe_req *reqs, size_t n, idn_probe_cb cb,
                        void *ud, size_t total) {
    pb_probe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    *p = (pb_probe){.st = s, .reqs = reqs, .n = n, .cb = cb, .ud = ud};
    size_t nn = n ? n : 1, tt = total ? total : 1;
    p->slot = malloc(tt * sizeof *p->slot);
    p->slot_start = malloc(nn * sizeof *p->slot_start);
    p->keys = calloc(tt, sizeof *p->keys);
    p->master_of = malloc(nn * sizeof *p->master_of);
    p->flag_of = malloc(nn * sizeof *p->flag_of);
    p->flagged = calloc(nn, 1);
    p->masters = calloc(nn, sizeof *p->masters);
    p->msg_reqs = malloc(nn * sizeof *p->msg_reqs);
    p->fast = calloc(nn, sizeof *p->fast);
    if (!p->slot || !p->slot_start || !p->keys || !p->master_of || !p->flag_of || !p->flagged ||
        !p->masters || !p->msg_reqs || !p->fast) {
        pb_free(p);
        return NULL;
    }
    for (size_t r = 0; r < n; r++)
        p->master_of[r] = p->flag_of[r] = -1;
    return p;
}

void idn_store_probe(idn_store *s, const idn_probe_req *reqs, size_t n, idn_probe_cb cb,
                     void *ud) {
    size_t total = 0;
    for (size_t r = 0; r < n; r++)
        total += pb_n(&reqs[r]);
    pb_probe *p = pb_new(s, reqs, n, cb, ud, total);
    if (p == NULL || pb_collect(p, total) != 0) {
        if (p != NULL)
            pb_free(p);
        cb(NULL, NULL, ud);
        return;
    }
    p->pending_replies = 1; /* held while the get step issues */
    for (size_t k = 0; k < p->n_keys; k++) {
        pb_ref *ref = pb_ref_new(p, k);
        if (ref == NULL) {
            p->keys[k].failed = 1;
            continue;
        }
        const char *argv[2] = {"GET", p->keys[k].key};
        size_t lens[2] = {3, strlen(p->keys[k].key)};
        cdp_redis_command(s->redis, argv[1], lens[1], pb_on_get, ref, 2, argv, lens);
    }
    pb_release(p);
}

/* -------------------------------------------------------------- accessors */

int idn__probe_owner(const idn_probe *probe, size_t r, size_t i, char *owner, int *pending) {
    const pb_probe *p = probe->p;
    if (r >= p->n || i >= pb_n(&p->reqs[r]))
        return -1;
    const pb_key *k = &p->keys[p->slot[p->slot_start[r] + i]];
    if (k->failed)
        return -1;
    memcpy(owner, k->owner, IDN_MASTER_ID_BUFSZ);
    *pending = k->pending;
    return 0;
}

const idn_probe_req *idn__probe_req(const idn_probe *probe, size_t r) {
    return r < probe->p->n ? &probe->p->reqs[r] : NULL;
}
