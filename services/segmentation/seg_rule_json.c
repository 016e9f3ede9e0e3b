/* seg_rule_json: the stored form of a parsed rule (seg_rule_to_json and
 * seg_rule_from_json in seg_rule.h), a compact JSON tree:
 *
 *   true | false | {"and":[...]} | {"or":[...]} | {"not":X}
 *   {"trait":"plan","op":"=","value":"pro"}       ops = != < <= > >= contains starts_with
 *   {"trait":"plan","op":"in","values":["a","b"]}
 *   {"trait":"plan","op":"exists"}
 *   {"metric":"count","name":"Order Completed","days":30,"op":">=","value":3}
 *   {"metric":"revenue","days":30,"op":">","value":100}   (days optional)
 *   {"metric":"total_events","op":">","value":10}
 *   {"time":"last_seen","op":"within","ms":604800000}  (also "before")
 *   {"time":"first_seen","op":"<","at":1767225600000}
 *   {"time":"channel","name":"sms","op":"exists"}
 *
 * The loader trusts nothing: every object must have exactly the keys of its
 * form, every value the right type and range, and the same limits as the
 * text parser apply, so a loaded rule satisfies every invariant a parsed one
 * does (and prints to text that parses back). */
#include "seg_rule_int.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Spellings of seg__metric and seg__time values. */
static const char *const metrics[] = {"count", "revenue", "total_events"};
static const char *const times[] = {"first_seen", "last_seen", "channel"};
#define NAMES(a) (a), (int)(sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- writing */

static json_t *lit_json(const seg_rule *r, const seg__lit *l)
{
    switch (l->type) {
    case SEG__V_NULL: return json_null();
    case SEG__V_BOOL: return json_boolean(l->b);
    case SEG__V_STR: return json_stringn(r->strs[l->str].s, r->strs[l->str].len);
    default: break;
    }
    /* Integral values print as integers: "3", not "3.0". */
    if (l->num == floor(l->num) && fabs(l->num) < 9007199254740992.0 &&
        !(l->num == 0 && signbit(l->num)))
        return json_integer((json_int_t)l->num);
    return json_real(l->num);
}

static json_t *node_json(const seg_rule *r, int i);

static json_t *kids_json(const seg_rule *r, int i)
{
    json_t *a = json_array();
    for (int c = i + 1, k = 0; a && k < r->nodes[i].nkids; k++, c += r->nodes[c].size)
        json_array_append_new(a, node_json(r, c));
    return a;
}

static json_t *leaf_json(const seg_rule *r, const seg__node *n)
{
    json_t *o = json_object();
    const char *name = n->name >= 0 ? r->strs[n->name].s : NULL;
    if (n->kind == SEG__K_TRAIT) {
        json_object_set_new(o, "trait", json_string(name));
    } else if (n->kind == SEG__K_METRIC) {
        json_object_set_new(o, "metric", json_string(metrics[n->src]));
        if (name)
            json_object_set_new(o, "name", json_string(name));
        if (n->days)
            json_object_set_new(o, "days", json_integer(n->days));
    } else {
        json_object_set_new(o, "time", json_string(times[n->src]));
        if (name)
            json_object_set_new(o, "name", json_string(name));
    }
    json_object_set_new(o, "op", json_string(seg__op_names[n->op]));
    if (n->kind == SEG__K_TRAIT && n->op == SEG__OP_IN) {
        json_t *a = json_array();
        for (int k = 0; k < n->nlits; k++)
            json_array_append_new(a, lit_json(r, &r->lits[n->lit + k]));
        json_object_set_new(o, "values", a);
    } else if (n->kind == SEG__K_TRAIT && n->op != SEG__OP_EXISTS) {
        json_object_set_new(o, "value", lit_json(r, &r->lits[n->lit]));
    } else if (n->kind == SEG__K_METRIC) {
        seg__lit l = {.type = SEG__V_NUM, .num = n->num};
        json_object_set_new(o, "value", lit_json(r, &l));
    } else if (n->kind == SEG__K_TIME && n->op != SEG__OP_EXISTS) {
        int span = n->op == SEG__OP_WITHIN || n->op == SEG__OP_BEFORE;
        json_object_set_new(o, span ? "ms" : "at", json_integer(n->ms));
    }
    return o;
}

static json_t *node_json(const seg_rule *r, int i)
{
    const seg__node *n = &r->nodes[i];
    switch (n->kind) {
    case SEG__K_TRUE: return json_true();
    case SEG__K_FALSE: return json_false();
    case SEG__K_AND: return json_pack("{s:o*}", "and", kids_json(r, i));
    case SEG__K_OR: return json_pack("{s:o*}", "or", kids_json(r, i));
    case SEG__K_NOT: return json_pack("{s:o*}", "not", node_json(r, i + 1));
    default: return leaf_json(r, n);
    }
}

char *seg_rule_to_json(const seg_rule *r)
{
    json_t *j = node_json(r, 0);
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

/* ---------------------------------------------------------------- loading */

typedef struct {
    seg_rule *rule;
    seg_rule_error *err;
    int failed;
    char path[128];     /* where in the document, e.g. $.and[1] */
} loader;

static int bad(loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(loader *l, const char *fmt, ...)
{
    if (l->failed)
        return -1;
    l->failed = 1;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    seg__error(l->err, NULL, 0, "stored rule %s: %s", l->path, msg);
    return -1;
}

/* Checks that o has exactly `n` keys, all of them in `keys`. */
static int keys_exactly(loader *l, json_t *o, const char *const *keys, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (i < n && strcmp(keys[i], k) != 0)
            i++;
        if (i == n)
            return bad(l, "unexpected key \"%.40s\"", k);
    }
    for (size_t i = 0; i < n; i++)
        if (!json_object_get(o, keys[i]))
            return bad(l, "missing key \"%s\"", keys[i]);
    return 0;
}

/* Interns a string value; names (nonempty) or literal strings. */
static int get_string(loader *l, json_t *v, const char *what, int nonempty)
{
    if (!json_is_string(v))
        return bad(l, "%s must be a string", what);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (nonempty && len == 0)
        return bad(l, "%s must not be empty", what);
    const char *why = seg__string_problem(s, len);
    if (why)
        return bad(l, "%s: %s", what, why);
    int i = seg__intern(l->rule, s, len);
    return i < 0 ? bad(l, "out of memory") : i;
}

static int get_int(loader *l, json_t *v, const char *what, int64_t lo, int64_t hi, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bad(l, "%s must be an integer from %lld to %lld", what, (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return 0;
}

static int get_op(loader *l, json_t *v, int lo, int hi)
{
    int op = json_is_string(v) ? seg__op_lookup(json_string_value(v), json_string_length(v)) : -1;
    if (op < lo || op > hi)
        return bad(l, "unknown or misplaced op");
    return op;
}

/* The index of v's string in names[0..n), or -1. */
static int name_index(json_t *v, const char *const *names, int n)
{
    for (int i = 0; json_is_string(v) && i < n; i++)
        if (strcmp(json_string_value(v), names[i]) == 0)
            return i;
    return -1;
}

static int add_lit(loader *l, json_t *v, int op)
{
    seg__lit lit = {.str = -1};
    if (json_is_string(v)) {
        lit.type = SEG__V_STR;
        if ((lit.str = get_string(l, v, "value", 0)) < 0)
            return -1;
    } else if (json_is_number(v)) {
        lit.type = SEG__V_NUM;
        lit.num = json_number_value(v);
    } else if (json_is_boolean(v) || json_is_null(v)) {
        lit.type = json_is_null(v) ? SEG__V_NULL : SEG__V_BOOL;
        lit.b = json_is_true(v);
        if (op >= SEG__OP_LT && op <= SEG__OP_GE)
            return bad(l, "booleans and null only support = and !=");
    } else {
        return bad(l, "value must be a string, number, boolean or null");
    }
    if ((op == SEG__OP_CONTAINS || op == SEG__OP_STARTS_WITH) && lit.type != SEG__V_STR)
        return bad(l, "value of %s must be a string", seg__op_names[op]);
    if (seg__lit_add(l->rule, &lit) < 0)
        return bad(l, "more than %d values", SEG__MAX_LITS);
    return 0;
}

static int load_trait(loader *l, json_t *o, int node)
{
    int op = get_op(l, json_object_get(o, "op"), SEG__OP_EQ, SEG__OP_EXISTS);
    if (op < 0)
        return -1;
    const char *k3 = op == SEG__OP_IN ? "values" : "value";
    const char *keys[] = {"trait", "op", k3};
    if (keys_exactly(l, o, keys, op == SEG__OP_EXISTS ? 2 : 3) < 0)
        return -1;
    int name = get_string(l, json_object_get(o, "trait"), "trait", 1);
    if (name < 0)
        return -1;
    seg__node *n = &l->rule->nodes[node];
    n->name = name;
    n->op = (uint8_t)op;
    if (op == SEG__OP_EXISTS)
        return 0;
    n->lit = l->rule->nlits;
    if (op != SEG__OP_IN) {
        n->nlits = 1;
        return add_lit(l, json_object_get(o, "value"), op);
    }
    json_t *a = json_object_get(o, "values");
    if (!json_is_array(a) || json_array_size(a) == 0)
        return bad(l, "values must be a non-empty array");
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
        if (add_lit(l, v, op) < 0)
            return -1;
    l->rule->nodes[node].nlits = (int32_t)json_array_size(a);
    return 0;
}

static int load_metric(loader *l, json_t *o, int node)
{
    int src = name_index(json_object_get(o, "metric"), NAMES(metrics));
    if (src < 0)
        return bad(l, "metric must be \"count\", \"revenue\" or \"total_events\"");
    int has_days = json_object_get(o, "days") != NULL && src != SEG__M_TOTAL_EVENTS;
    const char *keys[5] = {"metric", "op", "value"};
    size_t n = 3;
    if (src == SEG__M_COUNT)
        keys[n++] = "name";
    if (has_days)
        keys[n++] = "days";
    if (keys_exactly(l, o, keys, n) < 0)
        return -1;
    seg__node *nd = &l->rule->nodes[node];
    nd->src = (uint8_t)src;
    int op = get_op(l, json_object_get(o, "op"), SEG__OP_EQ, SEG__OP_GE);
    json_t *v = json_object_get(o, "value");
    if (op < 0)
        return -1;
    if (!json_is_number(v))
        return bad(l, "value must be a number");
    nd->op = (uint8_t)op;
    nd->num = json_number_value(v);
    int64_t days = 0;
    if (has_days && get_int(l, json_object_get(o, "days"), "days", 1, SEG__MAX_DAYS, &days) < 0)
        return -1;
    nd->days = (int32_t)days;
    if (src == SEG__M_COUNT) {
        int name = get_string(l, json_object_get(o, "name"), "name", 1);
        if (name < 0)
            return -1;
        l->rule->nodes[node].name = name;
    }
    return 0;
}

static int load_time(loader *l, json_t *o, int node)
{
    int src = name_index(json_object_get(o, "time"), NAMES(times));
    if (src < 0)
        return bad(l, "time must be \"first_seen\", \"last_seen\" or \"channel\"");
    int op = get_op(l, json_object_get(o, "op"), SEG__OP_EQ, SEG__OP_BEFORE);
    if (op < 0)
        return -1;
    if (op >= SEG__OP_IN && op <= SEG__OP_STARTS_WITH)
        return bad(l, "unknown or misplaced op");
    int span = op == SEG__OP_WITHIN || op == SEG__OP_BEFORE;
    const char *keys[4] = {"time", "op"};
    size_t n = 2;
    if (src == SEG__T_CHANNEL)
        keys[n++] = "name";
    if (op != SEG__OP_EXISTS)
        keys[n++] = span ? "ms" : "at";
    if (keys_exactly(l, o, keys, n) < 0)
        return -1;
    int64_t ms = 0;
    if (span) {
        if (get_int(l, json_object_get(o, "ms"), "ms", 60000, SEG__MAX_DAYS * SEG__DAY_MS, &ms) < 0)
            return -1;
        if (ms % 60000)
            return bad(l, "ms must be whole minutes");
    } else if (op != SEG__OP_EXISTS &&
               get_int(l, json_object_get(o, "at"), "at", 0, SEG__MAX_TIME_MS, &ms) < 0) {
        return -1;
    }
    seg__node *nd = &l->rule->nodes[node];
    nd->src = (uint8_t)src;
    nd->op = (uint8_t)op;
    nd->ms = ms;
    if (src == SEG__T_CHANNEL) {
        int name = get_string(l, json_object_get(o, "name"), "name", 1);
        if (name < 0)
            return -1;
        l->rule->nodes[node].name = name;
    }
    return 0;
}

static int load_node(loader *l, json_t *j, int depth, int parent);

/* Loads the children of an and/or/not; `path` grows by [k]. */
static int load_kids(loader *l, json_t *a, int node, int depth)
{
    if (!json_is_array(a) || json_array_size(a) < 2)
        return bad(l, "and/or need an array of at least 2 conditions");
    size_t plen = strlen(l->path), i;
    json_t *v;
    json_array_foreach(a, i, v) {
        snprintf(l->path + plen, sizeof l->path - plen, "[%zu]", i);
        if (load_node(l, v, depth, l->rule->nodes[node].kind) < 0)
            return -1;
    }
    l->path[plen] = '\0';
    l->rule->nodes[node].nkids = (uint16_t)json_array_size(a);
    return 0;
}

/* Loads the condition j under a node of kind `parent` (-1 at the root).
 * `depth` counts what the text parser counts as nesting on the way here:
 * each "not" and each parenthesised and/or of the canonical text, so every
 * loaded rule prints as text within the parser's SEG_RULE_MAX_DEPTH. */
static int load_node(loader *l, json_t *j, int depth, int parent)
{
    int single = json_is_object(j) && json_object_size(j) == 1;
    int kind = !single ? -1 : json_object_get(j, "not") ? SEG__K_NOT
             : json_object_get(j, "and") ? SEG__K_AND : json_object_get(j, "or") ? SEG__K_OR : -1;
    if (kind >= 0 && (kind == SEG__K_NOT || seg__needs_parens(parent, kind)) &&
        ++depth > SEG_RULE_MAX_DEPTH)
        return bad(l, "nesting deeper than %d levels", SEG_RULE_MAX_DEPTH);
    int node = seg__node_add(l->rule);
    if (node < 0)
        return bad(l, "more than %d nodes", SEG_RULE_MAX_NODES);
    int rc;
    if (json_is_boolean(j)) {
        l->rule->nodes[node].kind = json_is_true(j) ? SEG__K_TRUE : SEG__K_FALSE;
        rc = 0;
    } else if (!json_is_object(j)) {
        rc = bad(l, "a condition must be true, false or an object");
    } else if (json_object_size(j) == 1 && (json_object_get(j, "and") || json_object_get(j, "or"))) {
        int is_and = json_object_get(j, "and") != NULL;
        l->rule->nodes[node].kind = is_and ? SEG__K_AND : SEG__K_OR;
        size_t plen = strlen(l->path);
        snprintf(l->path + plen, sizeof l->path - plen, is_and ? ".and" : ".or");
        rc = load_kids(l, json_object_get(j, is_and ? "and" : "or"), node, depth);
        if (rc == 0)
            l->path[plen] = '\0';
    } else if (json_object_size(j) == 1 && json_object_get(j, "not")) {
        l->rule->nodes[node].kind = SEG__K_NOT;
        l->rule->nodes[node].nkids = 1;
        size_t plen = strlen(l->path);
        snprintf(l->path + plen, sizeof l->path - plen, ".not");
        rc = load_node(l, json_object_get(j, "not"), depth, SEG__K_NOT);
        if (rc == 0)
            l->path[plen] = '\0';
    } else if (json_object_get(j, "trait")) {
        l->rule->nodes[node].kind = SEG__K_TRAIT;
        rc = load_trait(l, j, node);
    } else if (json_object_get(j, "metric")) {
        l->rule->nodes[node].kind = SEG__K_METRIC;
        rc = load_metric(l, j, node);
    } else if (json_object_get(j, "time")) {
        l->rule->nodes[node].kind = SEG__K_TIME;
        rc = load_time(l, j, node);
    } else {
        rc = bad(l, "unknown condition (expected and, or, not, trait, metric or time)");
    }
    l->rule->nodes[node].size = (uint16_t)(l->rule->nnodes - node);
    return rc;
}

seg_rule *seg_rule_from_json(const char *json, seg_rule_error *err)
{
    json_error_t je;
    json_t *j = json_loads(json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        seg__error(err, NULL, 0, "stored rule: invalid JSON: %s", je.text);
        if (err) {
            err->offset = je.position;
            err->line = je.line;
            err->column = je.column;
        }
        return NULL;
    }
    loader l = {.err = err, .path = "$"};
    if (!(l.rule = seg__rule_new())) {
        json_decref(j);
        seg__error(err, NULL, 0, "out of memory");
        return NULL;
    }
    if (load_node(&l, j, 0, -1) == 0 && seg__rule_finish(l.rule) < 0)
        bad(&l, "out of memory");
    json_decref(j);
    if (l.failed) {
        seg_rule_free(l.rule);
        return NULL;
    }
    return l.rule;
}
